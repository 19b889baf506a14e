//! Compiling components once: [`ModuleDigest`] and the component cache.
//!
//! A module is named by the SHA-256 of its wasm bytes. Compiling is slow
//! (~30 ms for a small Rust guest, seconds for Python), deserializing a
//! precompiled artifact is fast (~0.1 ms), so each component is compiled
//! once per process (an in-memory map from digest to `Component`) and, if a
//! cache folder is configured, once per machine: the artifact of
//! `Engine::precompile_component` is stored as `<key>.cwasm`.
//!
//! The on-disk key covers everything an artifact depends on: the wasm
//! digest, wasmtime's version and engine configuration
//! (`Engine::precompile_compatibility_hash`), and the cargo features of the
//! host's wasmtime build ([`ENGINE_BUILD`]). Each file starts with the
//! SHA-256 of its payload, checked before the payload is deserialized, so a
//! truncated or damaged file is recompiled instead of loaded. Files are
//! written to a temporary name and renamed, so readers never see a partial
//! one.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::RuntimeError;

/// Part of the cache key: what `precompile_compatibility_hash` does not
/// cover. Bump it when the workspace changes wasmtime's cargo features.
pub const ENGINE_BUILD: &str = concat!(
    "weir ",
    env!("CARGO_PKG_VERSION"),
    "; wasmtime features: cranelift runtime std component-model pooling-allocator ",
    "parallel-compilation anyhow backtrace addr2line async(via wasmtime-wasi)"
);

/// The SHA-256 of a module's wasm bytes: its identity (a shard is pinned to
/// one). Displayed and parsed as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleDigest(pub [u8; 32]);

impl ModuleDigest {
    /// The digest of `wasm`.
    pub fn of(wasm: &[u8]) -> ModuleDigest {
        ModuleDigest(Sha256::digest(wasm).into())
    }

    /// The first 12 hex digits, for logs.
    pub fn short(&self) -> String {
        self.to_string()[..12].to_string()
    }
}

impl fmt::Display for ModuleDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ModuleDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModuleDigest({self})")
    }
}

/// A string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid module digest {0:?}: expected 64 hex digits")]
pub struct DigestParseError(pub String);

impl FromStr for ModuleDigest {
    type Err = DigestParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || DigestParseError(text.to_string());
        if text.len() != 64 || !text.is_ascii() {
            return Err(invalid());
        }
        let mut digest = [0u8; 32];
        for (index, byte) in digest.iter_mut().enumerate() {
            *byte =
                u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).map_err(|_| invalid())?;
        }
        Ok(ModuleDigest(digest))
    }
}

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Already compiled in this process.
    Memory,
    /// Deserialized from the cache folder.
    Disk,
    /// Compiled now (and stored, if there is a cache folder).
    Compiled,
}

/// Compiled components by digest, in memory and optionally on disk.
pub struct ComponentCache {
    memory: Mutex<HashMap<ModuleDigest, Component>>,
    dir: Option<PathBuf>,
    /// Hash of everything besides the wasm that an artifact depends on.
    engine_key: [u8; 32],
}

impl ComponentCache {
    /// A cache for `engine`, persisting artifacts in `dir` if given (created
    /// if missing).
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Result<ComponentCache, RuntimeError> {
        if let Some(dir) = &dir {
            fs::create_dir_all(dir).map_err(|source| RuntimeError::Cache {
                path: dir.clone(),
                source,
            })?;
        }
        let mut hasher = Sha256Hasher(Sha256::new());
        ENGINE_BUILD.hash(&mut hasher);
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hasher.0.finalize().into();
        Ok(ComponentCache {
            memory: Mutex::new(HashMap::new()),
            dir,
            engine_key,
        })
    }

    /// The compiled component of `wasm`, compiling it at most once.
    pub fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> Result<(ModuleDigest, Component, CacheOutcome), RuntimeError> {
        let digest = ModuleDigest::of(wasm);
        if let Some(component) = self.memory_lock().get(&digest) {
            return Ok((digest, component.clone(), CacheOutcome::Memory));
        }
        let path = self
            .dir
            .as_ref()
            .map(|dir| dir.join(format!("{}.cwasm", self.key(&digest))));
        let (component, outcome) = match path.as_deref().and_then(|p| load_artifact(engine, p)) {
            Some(component) => (component, CacheOutcome::Disk),
            None => (
                compile(engine, wasm, &digest, path.as_deref())?,
                CacheOutcome::Compiled,
            ),
        };
        self.memory_lock().insert(digest, component.clone());
        Ok((digest, component, outcome))
    }

    /// The on-disk key of `digest`: SHA-256 of the engine key and the digest.
    fn key(&self, digest: &ModuleDigest) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.engine_key);
        hasher.update(digest.0);
        ModuleDigest(hasher.finalize().into()).to_string()
    }

    fn memory_lock(&self) -> std::sync::MutexGuard<'_, HashMap<ModuleDigest, Component>> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Compiles `wasm`; with a cache path, precompiles and stores the artifact.
fn compile(
    engine: &Engine,
    wasm: &[u8],
    digest: &ModuleDigest,
    path: Option<&Path>,
) -> Result<Component, RuntimeError> {
    let compile_error = |err: wasmtime::Error| RuntimeError::Compile {
        digest: *digest,
        reason: format!("{err:#}"),
    };
    let Some(path) = path else {
        return Component::new(engine, wasm).map_err(compile_error);
    };
    let artifact = engine.precompile_component(wasm).map_err(compile_error)?;
    if let Err(err) = store_artifact(path, &artifact) {
        // The cache is an optimization: run without it.
        tracing::warn!(path = %path.display(), error = %err, "cannot store a compiled component");
    }
    deserialize(engine, &artifact).map_err(compile_error)
}

/// Reads and checks an artifact; `None` (after a warning if it was damaged)
/// means "compile instead".
fn load_artifact(engine: &Engine, path: &Path) -> Option<Component> {
    let bytes = fs::read(path).ok()?;
    let (checksum, payload) = bytes.split_at_checked(32)?;
    if Sha256::digest(payload).as_slice() != checksum {
        tracing::warn!(path = %path.display(), "damaged compiled component in the cache; recompiling");
        return None;
    }
    match deserialize(engine, payload) {
        Ok(component) => Some(component),
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %format!("{err:#}"), "unusable compiled component in the cache; recompiling");
            None
        }
    }
}

/// Writes `<sha256(artifact)><artifact>` to a temporary file, then renames.
fn store_artifact(path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(&Sha256::digest(artifact))?;
    file.write_all(artifact)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

/// Loads a precompiled component.
#[allow(
    unsafe_code,
    reason = "deserializing precompiled code is unsafe by nature; see SAFETY"
)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` trusts its input to be an artifact
    // produced by `Engine::precompile_component` (wasmtime checks the
    // version and engine configuration itself, but not that the code is
    // benign). Every artifact passed here is either the output of
    // `precompile_component` in this process, or a cache file this module
    // wrote and whose SHA-256 checksum matched just before: the cache folder
    // is host-owned, like the host binary itself.
    unsafe { Component::deserialize(engine, artifact) }
}

/// Feeds `Hash` implementations into SHA-256 (deterministic across
/// processes, unlike `DefaultHasher`'s keys).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        // Only the full digest is used.
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn digests_print_and_parse_as_64_hex_digits() {
        let digest = ModuleDigest::of(b"hello");
        let text = digest.to_string();
        assert_eq!(
            text,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(text.parse::<ModuleDigest>().unwrap(), digest);
        assert_eq!(digest.short(), "2cf24dba5fb0");
        assert!("xyz".parse::<ModuleDigest>().is_err());
        assert!(text.replace('2', "g").parse::<ModuleDigest>().is_err());
    }
}
