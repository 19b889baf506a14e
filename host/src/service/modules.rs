//! The module store: consumer components kept on disk by content digest,
//! and weir's `Modules` gRPC service that pushes and lists them.
//!
//! A module is the bytes of a WebAssembly component for the `consumer`
//! world, named by the SHA-256 of those bytes ([`ModuleDigest`]) and stored
//! as `<dir>/<hex digest>.wasm`. Shards pin a module by that digest, so a
//! stored module never changes under a running shard.
//!
//! Guarantees:
//!
//! - **Only valid modules are stored.** [`ModuleStore::push`] compiles the
//!   component and links it against the consumer world before writing it;
//!   a bad component is refused with wasmtime's explanation (a missing
//!   export, an import the host does not provide, malformed bytes).
//! - **Atomic and durable.** A module is written to a temporary file,
//!   fsynced, renamed into place and the directory fsynced: readers see a
//!   whole module or none, and a stored module survives a crash.
//! - **Checked on load.** [`ModuleStore::get`] re-hashes the bytes it reads,
//!   so a damaged file is reported, never run.
//! - **Compiled once.** Loaded modules are cached in memory by digest.
//!
//! Compiling and file I/O block: call the store from a blocking thread
//! (the service does, with `spawn_blocking`).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tonic::{Request, Response, Status};

use crate::limits;
use crate::protocol::weir::modules_server::{Modules, ModulesServer};
use crate::protocol::weir::{
    ListModulesRequest, ListModulesResponse, ModuleInfo, PushModuleRequest, PushModuleResponse,
};
use crate::runtime::{ConsumerModule, ModuleDigest, Runtime, RuntimeError};

/// Whether a push stored new bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// The module was written now.
    Created,
    /// A module with this digest was already stored.
    AlreadyStored,
}

/// A stored module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredModule {
    /// Its digest.
    pub digest: ModuleDigest,
    /// Size of its component, in bytes.
    pub size_bytes: u64,
}

/// Errors of the module store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModuleError {
    /// The bytes are not a component for the consumer world.
    #[error("invalid consumer component: {0}")]
    Invalid(RuntimeError),
    /// The component exceeds [`limits::DEFAULT_MAX_MODULE_BYTES`].
    #[error("the component is {size} bytes, above the limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// No module with this digest is stored.
    #[error("module {0} is not stored")]
    NotFound(ModuleDigest),
    /// The stored file's bytes no longer hash to its name.
    #[error("stored module {digest} is damaged: its bytes hash to {actual}")]
    Damaged {
        /// The module.
        digest: ModuleDigest,
        /// What its bytes hash to now.
        actual: ModuleDigest,
    },
    /// A stored module that hashes correctly no longer compiles (e.g. the
    /// host's consumer world changed since it was pushed).
    #[error("stored module {digest} cannot be loaded: {source}")]
    Unloadable {
        /// The module.
        digest: ModuleDigest,
        /// Why.
        source: RuntimeError,
    },
    /// Reading or writing the store's directory failed.
    #[error("module store {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// Consumer modules on disk, by digest. Cheap to clone.
#[derive(Clone)]
pub struct ModuleStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    runtime: Runtime,
    loaded: Mutex<HashMap<ModuleDigest, ConsumerModule>>,
}

impl ModuleStore {
    /// Opens (creating if missing) the store in `dir`; modules compile with
    /// `runtime`.
    pub fn open(dir: &Path, runtime: Runtime) -> Result<ModuleStore, ModuleError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        Ok(ModuleStore {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                runtime,
                loaded: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Validates `wasm` against the consumer world and stores it. Blocks.
    pub fn push(&self, wasm: &[u8]) -> Result<(ModuleDigest, PushOutcome), ModuleError> {
        let limit = limits::DEFAULT_MAX_MODULE_BYTES;
        if wasm.len() > limit {
            return Err(ModuleError::TooLarge {
                size: wasm.len(),
                limit,
            });
        }
        let module = self
            .inner
            .runtime
            .consumer_module(wasm)
            .map_err(ModuleError::Invalid)?;
        let digest = module.digest();
        let path = self.path(&digest);
        let outcome = match fs::read(&path) {
            Ok(stored) if ModuleDigest::of(&stored) == digest => PushOutcome::AlreadyStored,
            // Missing, or damaged: (re)write it.
            _ => {
                self.write(&path, wasm)?;
                PushOutcome::Created
            }
        };
        self.loaded().insert(digest, module);
        Ok((digest, outcome))
    }

    /// The compiled module `digest`, loaded from disk on first use. Blocks.
    pub fn get(&self, digest: &ModuleDigest) -> Result<ConsumerModule, ModuleError> {
        if let Some(module) = self.loaded().get(digest) {
            return Ok(module.clone());
        }
        let path = self.path(digest);
        let wasm = match fs::read(&path) {
            Ok(wasm) => wasm,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(ModuleError::NotFound(*digest));
            }
            Err(err) => return Err(io_error(&path)(err)),
        };
        let actual = ModuleDigest::of(&wasm);
        if actual != *digest {
            return Err(ModuleError::Damaged {
                digest: *digest,
                actual,
            });
        }
        let module = self
            .inner
            .runtime
            .consumer_module(&wasm)
            .map_err(|source| ModuleError::Unloadable {
                digest: *digest,
                source,
            })?;
        self.loaded().insert(*digest, module.clone());
        Ok(module)
    }

    /// The stored modules, by digest. Blocks.
    pub fn list(&self) -> Result<Vec<StoredModule>, ModuleError> {
        let dir = &self.inner.dir;
        let mut modules = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_error(dir))? {
            let entry = entry.map_err(io_error(dir))?;
            let name = entry.file_name();
            let Some(digest) = name
                .to_str()
                .and_then(|name| name.strip_suffix(".wasm"))
                .and_then(|hex| hex.parse::<ModuleDigest>().ok())
            else {
                // Temporary files of pushes in flight, and strays.
                continue;
            };
            let metadata = entry.metadata().map_err(io_error(&entry.path()))?;
            modules.push(StoredModule {
                digest,
                size_bytes: metadata.len(),
            });
        }
        modules.sort_by_key(|module| module.digest);
        Ok(modules)
    }

    fn path(&self, digest: &ModuleDigest) -> PathBuf {
        self.inner.dir.join(format!("{digest}.wasm"))
    }

    /// Writes `wasm` to `path` atomically and durably.
    fn write(&self, path: &Path, wasm: &[u8]) -> Result<(), ModuleError> {
        let dir = &self.inner.dir;
        let mut file = tempfile::Builder::new()
            .prefix(".push-")
            .tempfile_in(dir)
            .map_err(io_error(dir))?;
        file.write_all(wasm).map_err(io_error(file.path()))?;
        file.as_file().sync_all().map_err(io_error(file.path()))?;
        file.persist(path)
            .map_err(|err| io_error(path)(err.error))?;
        // The rename is durable only once the directory is.
        fs::File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error(dir))
    }

    fn loaded(&self) -> std::sync::MutexGuard<'_, HashMap<ModuleDigest, ConsumerModule>> {
        self.inner
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for ModuleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> ModuleError + '_ {
    move |source| ModuleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// weir's `Modules` service over a [`ModuleStore`].
#[derive(Debug, Clone)]
pub struct ModulesService {
    store: ModuleStore,
}

impl ModulesService {
    /// The service of `store`.
    pub fn new(store: ModuleStore) -> Self {
        ModulesService { store }
    }

    /// The tonic server, accepting requests as large as the largest module.
    pub fn into_server(self) -> ModulesServer<Self> {
        // Room for the request's framing around the component's bytes.
        ModulesServer::new(self).max_decoding_message_size(limits::DEFAULT_MAX_MODULE_BYTES + 1024)
    }
}

impl From<ModuleError> for Status {
    fn from(err: ModuleError) -> Self {
        match err {
            ModuleError::Invalid(_) | ModuleError::TooLarge { .. } => {
                Status::invalid_argument(err.to_string())
            }
            ModuleError::NotFound(_) => Status::not_found(err.to_string()),
            ModuleError::Damaged { .. }
            | ModuleError::Unloadable { .. }
            | ModuleError::Io { .. } => Status::internal(err.to_string()),
        }
    }
}

#[tonic::async_trait]
impl Modules for ModulesService {
    async fn push(
        &self,
        request: Request<PushModuleRequest>,
    ) -> Result<Response<PushModuleResponse>, Status> {
        let wasm = request.into_inner().component;
        let store = self.store.clone();
        let (digest, outcome) = tokio::task::spawn_blocking(move || store.push(&wasm))
            .await
            .map_err(|err| Status::internal(format!("push task failed: {err}")))??;
        Ok(Response::new(PushModuleResponse {
            digest: digest.to_string(),
            created: outcome == PushOutcome::Created,
        }))
    }

    async fn list(
        &self,
        _request: Request<ListModulesRequest>,
    ) -> Result<Response<ListModulesResponse>, Status> {
        let store = self.store.clone();
        let modules = tokio::task::spawn_blocking(move || store.list())
            .await
            .map_err(|err| Status::internal(format!("list task failed: {err}")))??;
        Ok(Response::new(ListModulesResponse {
            modules: modules
                .into_iter()
                .map(|module| ModuleInfo {
                    digest: module.digest.to_string(),
                    size_bytes: module.size_bytes,
                })
                .collect(),
        }))
    }
}

#[cfg(test)]
mod test {
    use tokio::net::TcpListener;
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::Code;
    use tonic::transport::{Channel, Server};

    use super::*;
    use crate::protocol::weir::modules_client::ModulesClient;
    use crate::runtime::guests::{CHUNKER_WASM, SUMMER_WASM};
    use crate::runtime::testing::runtime;

    async fn serve(store: ModuleStore) -> ModulesClient<Channel> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            Server::builder()
                .add_service(ModulesService::new(store).into_server())
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        ModulesClient::connect(format!("http://{addr}"))
            .await
            .unwrap()
            .max_encoding_message_size(limits::DEFAULT_MAX_MODULE_BYTES)
    }

    fn push(component: &[u8]) -> PushModuleRequest {
        PushModuleRequest {
            component: component.to_vec(),
        }
    }

    #[tokio::test]
    async fn a_pushed_module_is_stored_once_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path(), runtime().clone()).unwrap();
        let mut client = serve(store).await;

        let first = client.push(push(SUMMER_WASM)).await.unwrap().into_inner();
        let digest = ModuleDigest::of(SUMMER_WASM).to_string();
        assert_eq!(first.digest, digest);
        assert!(first.created);
        assert!(dir.path().join(format!("{digest}.wasm")).is_file());

        let again = client.push(push(SUMMER_WASM)).await.unwrap().into_inner();
        assert_eq!(again.digest, digest);
        assert!(!again.created);

        let listed = client
            .list(ListModulesRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            listed.modules,
            vec![ModuleInfo {
                digest,
                size_bytes: SUMMER_WASM.len() as u64,
            }]
        );
    }

    #[tokio::test]
    async fn garbage_and_components_of_another_world_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path(), runtime().clone()).unwrap();
        let mut client = serve(store).await;

        let garbage = client.push(push(b"not a component")).await.unwrap_err();
        assert_eq!(garbage.code(), Code::InvalidArgument);
        assert!(
            garbage.message().contains("cannot compile"),
            "{}",
            garbage.message()
        );

        let chunker = client.push(push(CHUNKER_WASM)).await.unwrap_err();
        assert_eq!(chunker.code(), Code::InvalidArgument);
        let message = chunker.message();
        assert!(
            message.contains("does not implement the consumer world"),
            "{message}"
        );
        // wasmtime's explanation names the offending import or export.
        assert!(message.contains("weir:guest/"), "{message}");

        let listed = client
            .list(ListModulesRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(listed.modules.is_empty(), "{listed:?}");
    }

    #[test]
    fn modules_load_from_disk_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (digest, outcome) = ModuleStore::open(dir.path(), runtime().clone())
            .unwrap()
            .push(SUMMER_WASM)
            .unwrap();
        assert_eq!(outcome, PushOutcome::Created);

        let reopened = ModuleStore::open(dir.path(), runtime().clone()).unwrap();
        assert_eq!(reopened.get(&digest).unwrap().digest(), digest);
        let unknown = ModuleDigest::of(b"unknown");
        assert!(matches!(
            reopened.get(&unknown),
            Err(ModuleError::NotFound(d)) if d == unknown
        ));

        let path = dir.path().join(format!("{digest}.wasm"));
        let mut bytes = fs::read(&path).unwrap();
        bytes[100] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let fresh = ModuleStore::open(dir.path(), runtime().clone()).unwrap();
        assert!(matches!(
            fresh.get(&digest),
            Err(ModuleError::Damaged { digest: d, .. }) if d == digest
        ));
        // Pushing the module again repairs it.
        assert_eq!(fresh.push(SUMMER_WASM).unwrap().1, PushOutcome::Created);
        assert_eq!(fs::read(&path).unwrap(), SUMMER_WASM);
    }
}
