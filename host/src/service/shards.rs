//! The shard registry: the shards this process serves, their specs and
//! revisions (what etcd holds for Gazette), and the running shards.
//!
//! Each shard runs the consumer module its label [`MODULE_LABEL`] pins by
//! digest. Specs persist in `<data_dir>/registry.json` with a registry
//! revision that every applied batch of changes bumps; each spec carries the
//! revision that created it and the one that last changed it.
//!
//! Guarantees:
//!
//! - **All or nothing.** [`ShardRegistry::apply`] validates every change
//!   (the spec, its module, its journals, its expected revision) before
//!   changing anything, then persists the whole batch with one atomic file
//!   replace (temporary file, fsync, rename, directory fsync).
//! - **Graceful hand-over.** A changed, disabled or deleted shard is stopped
//!   after its current transaction commits, and only then started again
//!   with its new spec, so two terms of one shard never overlap.
//! - **Hot swap at a transaction boundary.** Changing only a shard's
//!   [`MODULE_LABEL`] is a swap: the old version commits its current
//!   transaction, and the new one starts the next from that checkpoint (each
//!   commit records the digest that made it, `Checkpoint::module`). Rolling
//!   back is a swap to the previous digest.
//! - **A version that cannot start is refused.** Before anything is stopped,
//!   every module an enabled upserted spec pins is instantiated once, with
//!   the limits its shards run under, on a blocking thread; if that fails the
//!   apply fails ([`ShardRegistryError::InvalidSpec`] naming the shard, the
//!   digest and why) and the running version keeps serving, untouched.
//! - **Restart continues.** [`ShardRegistry::open`] starts every enabled
//!   shard; each recovers its store and checkpoint from its recovery log,
//!   so nothing is consumed twice.
//! - Applies are serialized; listing and `stat` never wait for them, and no
//!   call blocks a tokio worker (file I/O and compiling run on blocking
//!   threads, store work inside the shards' tasks).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::broker::protocol::{BrokerError, JournalClient};
use crate::broker::revision::{ExpectRevision, Revisions};
use crate::broker::spec::{LabelSelector, LabelSet, META_NAME};
use crate::consumer::{
    AppError, AppFactory, ShardConfig, ShardHandle, ShardProgress, ShardSpec, ShardStatus,
    SpecError, TxnMetrics, spawn_shard,
};
use crate::message::AtomicClock;
use crate::runtime::{ConsumerModule, GuestLimits, ModuleDigest, RuntimeError};

use super::modules::{ModuleError, ModuleStore};
use super::shard_convert::replica_status;

/// The shard label that pins a shard's module: its 64-hex-digit digest.
pub const MODULE_LABEL: &str = "weir.dev/module";
/// Gazette's meta label carrying a shard's id, for selectors.
pub const META_ID: &str = "id";

const REGISTRY_FILE: &str = "registry.json";
/// Local store directories, `<data_dir>/stores/<shard id>`.
const STORES_DIR: &str = "stores";

/// One change of an [`apply`](ShardRegistry::apply).
#[derive(Debug, Clone)]
pub enum ShardChange {
    /// Create the shard, or replace its spec.
    Upsert {
        /// The desired spec.
        spec: ShardSpec,
        /// The expected current revision.
        expect: ExpectRevision,
    },
    /// Delete the shard (deleting an absent shard with [`ExpectRevision::Any`]
    /// does nothing, as in Gazette).
    Delete {
        /// The shard id.
        id: String,
        /// The expected current revision.
        expect: ExpectRevision,
    },
}

impl ShardChange {
    fn id(&self) -> &str {
        match self {
            ShardChange::Upsert { spec, .. } => &spec.id,
            ShardChange::Delete { id, .. } => id,
        }
    }

    fn expect(&self) -> ExpectRevision {
        match self {
            ShardChange::Upsert { expect, .. } | ShardChange::Delete { expect, .. } => *expect,
        }
    }
}

/// How a listed shard is being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaState {
    /// Running, with this status.
    Serving(ShardStatus),
    /// Not running: disabled, or between a stop and a start.
    Idle,
    /// Enabled but could not be started (its module failed to load).
    NotStarted(String),
}

/// A shard as listed.
#[derive(Debug, Clone)]
pub struct ListedShard {
    /// Its spec.
    pub spec: ShardSpec,
    /// Revisions that created and last changed it.
    pub revisions: Revisions,
    /// How it is served now.
    pub state: ReplicaState,
}

/// A shard's state for metrics ([`ShardRegistry::snapshot`]).
#[derive(Debug, Clone)]
pub struct ShardSnapshot {
    /// The shard id.
    pub id: String,
    /// Gazette's replica status name (`PRIMARY`, `BACKFILL`, `FAILED`, `IDLE`).
    pub status: &'static str,
    /// Transactions committed by the current term.
    pub committed_txns: u64,
    /// Offsets read through by the last commit, per source.
    pub read_through: std::collections::BTreeMap<String, i64>,
}

/// The result of [`ShardRegistry::list`].
#[derive(Debug, Clone)]
pub struct ShardListing {
    /// The registry revision the listing reflects.
    pub revision: i64,
    /// Matching shards, by id.
    pub shards: Vec<ListedShard>,
}

/// Errors of opening the registry and of applying changes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardRegistryError {
    /// A spec is invalid; the error names the field.
    #[error(transparent)]
    InvalidSpec(#[from] SpecError),
    /// The batch of changes is malformed.
    #[error("invalid change: {0}")]
    InvalidChange(String),
    /// A change's expected revision does not hold (Gazette's
    /// ETCD_TRANSACTION_FAILED). Nothing was changed.
    #[error("shard {shard}: expected {}, but {}", describe_expected(*expected), describe_actual(*actual))]
    RevisionMismatch {
        /// The shard.
        shard: String,
        /// What the change expected.
        expected: ExpectRevision,
        /// The shard's current mod revision, if it exists.
        actual: Option<i64>,
    },
    /// Looking up the specs' journals failed.
    #[error("listing journals: {0}")]
    Journals(#[source] BrokerError),
    /// A stored module could not be loaded.
    #[error(transparent)]
    Module(ModuleError),
    /// Reading or writing the registry file failed.
    #[error("shard registry {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The registry file cannot be parsed.
    #[error("shard registry {path} is unreadable: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's report.
        reason: String,
    },
    /// A blocking task of the registry died.
    #[error("shard registry task failed: {0}")]
    Task(String),
    /// [`ShardRegistry::shutdown`] has begun.
    #[error("the shard registry is shutting down")]
    ShuttingDown,
}

fn describe_expected(expected: ExpectRevision) -> String {
    match expected {
        ExpectRevision::Any => "any revision".to_string(),
        ExpectRevision::Absent => "no such shard".to_string(),
        ExpectRevision::Equal(revision) => format!("revision {revision}"),
    }
}

fn describe_actual(actual: Option<i64>) -> String {
    match actual {
        Some(revision) => format!("it is at revision {revision}"),
        None => "it does not exist".to_string(),
    }
}

/// Why a [`stat`](ShardRegistry::stat) did not answer with offsets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatError {
    /// No such shard (Gazette's SHARD_NOT_FOUND).
    #[error("shard {0} not found")]
    NotFound(String),
    /// The shard is not running (Gazette's NO_SHARD_PRIMARY).
    #[error("shard {0} has no primary")]
    NoPrimary(String),
    /// The shard stopped or failed while waited on (Gazette's SHARD_STOPPED).
    #[error("shard {shard} stopped: {status:?}")]
    Stopped {
        /// The shard.
        shard: String,
        /// Its final status.
        status: ShardStatus,
    },
    /// The offsets were not read through in time.
    #[error("shard {shard} did not read through the offsets within {timeout:?}")]
    DeadlineExceeded {
        /// The shard.
        shard: String,
        /// How long it was given.
        timeout: Duration,
    },
}

/// The process's shards. Cheap to clone; clones share the shards.
#[derive(Clone)]
pub struct ShardRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    client: Arc<dyn JournalClient>,
    modules: ModuleStore,
    clock: Arc<AtomicClock>,
    txn_metrics: TxnMetrics,
    /// Serializes applies and shutdown; held across their awaits.
    serial: tokio::sync::Mutex<()>,
    state: Mutex<State>,
}

struct State {
    revision: i64,
    entries: BTreeMap<String, Entry>,
    running: HashMap<String, Replica>,
    closed: bool,
}

enum Replica {
    Serving(ShardHandle),
    NotStarted(String),
}

/// The persisted registry.
#[derive(Serialize, Deserialize)]
struct Persisted {
    revision: i64,
    shards: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    spec: ShardSpec,
    revisions: Revisions,
}

impl ShardRegistry {
    /// Loads the registry persisted in `data_dir` (empty if there is none)
    /// and starts every enabled shard. A shard whose module cannot be loaded
    /// is listed as not started rather than failing the open.
    pub async fn open(
        data_dir: &Path,
        client: Arc<dyn JournalClient>,
        modules: ModuleStore,
    ) -> Result<ShardRegistry, ShardRegistryError> {
        let dir = data_dir.to_path_buf();
        let persisted = blocking(move || load(&dir)).await??;
        let registry = ShardRegistry {
            inner: Arc::new(Inner {
                dir: data_dir.to_path_buf(),
                client,
                modules,
                clock: Arc::new(AtomicClock::now()),
                txn_metrics: TxnMetrics::default(),
                serial: tokio::sync::Mutex::new(()),
                state: Mutex::new(State {
                    revision: persisted.revision,
                    entries: persisted
                        .shards
                        .into_iter()
                        .map(|entry| (entry.spec.id.clone(), entry))
                        .collect(),
                    running: HashMap::new(),
                    closed: false,
                }),
            }),
        };
        let enabled: Vec<ShardSpec> = registry
            .state()
            .entries
            .values()
            .filter(|entry| !entry.spec.disable)
            .map(|entry| entry.spec.clone())
            .collect();
        for spec in enabled {
            let replica = match registry.load_module(&spec).await {
                Ok(module) => Replica::Serving(registry.spawn(spec.clone(), module)),
                Err(err) => {
                    tracing::error!(shard = %spec.id, error = %err, "cannot start shard");
                    Replica::NotStarted(err.to_string())
                }
            };
            registry.state().running.insert(spec.id, replica);
        }
        Ok(registry)
    }

    /// Applies `changes` all together or not at all, and returns the new
    /// registry revision (the current one if `changes` is empty). Upserted
    /// shards are (re)started if their spec changed or they had stopped;
    /// deleted and disabled ones are stopped gracefully.
    ///
    /// The work runs in its own task: a caller that gives up (a cancelled
    /// RPC) cannot leave a persisted change half carried out.
    pub async fn apply(&self, changes: Vec<ShardChange>) -> Result<i64, ShardRegistryError> {
        let registry = self.clone();
        tokio::spawn(async move { registry.apply_now(changes).await })
            .await
            .map_err(|err| ShardRegistryError::Task(err.to_string()))?
    }

    async fn apply_now(&self, changes: Vec<ShardChange>) -> Result<i64, ShardRegistryError> {
        let _serial = self.inner.serial.lock().await;
        if self.state().closed {
            return Err(ShardRegistryError::ShuttingDown);
        }
        let modules = self.validate(&changes).await?;
        let (revision, mut entries) = {
            let state = self.state();
            (state.revision, state.entries.clone())
        };
        for change in &changes {
            let current = entries.get(change.id()).map(|entry| entry.revisions);
            if !change.expect().admits(current) {
                return Err(ShardRegistryError::RevisionMismatch {
                    shard: change.id().to_string(),
                    expected: change.expect(),
                    actual: current.map(|revisions| revisions.modify),
                });
            }
        }
        if changes.is_empty() {
            return Ok(revision);
        }
        let next = revision + 1;
        for change in &changes {
            match change {
                ShardChange::Upsert { spec, .. } => {
                    let create = entries
                        .get(&spec.id)
                        .map_or(next, |entry| entry.revisions.create);
                    entries.insert(
                        spec.id.clone(),
                        Entry {
                            spec: spec.clone(),
                            revisions: Revisions {
                                create,
                                modify: next,
                            },
                        },
                    );
                }
                ShardChange::Delete { id, .. } => {
                    entries.remove(id);
                }
            }
        }
        self.persist(next, &entries).await?;

        let (stopping, starting) = {
            let mut state = self.state();
            state.revision = next;
            state.entries = entries;
            reconcile(&mut state.running, &changes)
        };
        futures::future::join_all(stopping.into_iter().map(stop)).await;
        for change in &changes {
            if let ShardChange::Delete { id, .. } = change {
                self.remove_store(id).await;
            }
        }
        let mut state = self.state();
        for spec in starting {
            // Validated above: every upserted spec names a loaded module.
            let replica = match module_digest(&spec).ok().and_then(|d| modules.get(&d)) {
                Some(module) => Replica::Serving(self.spawn(spec.clone(), module.clone())),
                None => Replica::NotStarted("its module is not loaded".into()),
            };
            state.running.insert(spec.id, replica);
        }
        Ok(next)
    }

    /// Shards whose labels, plus the meta label `id`, match `selector`.
    pub fn list(&self, selector: &LabelSelector) -> ShardListing {
        let state = self.state();
        let shards = state
            .entries
            .values()
            .filter(|entry| selector.matches(&labels_with_meta(&entry.spec)))
            .map(|entry| ListedShard {
                spec: entry.spec.clone(),
                revisions: entry.revisions,
                state: match state.running.get(&entry.spec.id) {
                    Some(Replica::Serving(handle)) => ReplicaState::Serving(handle.status()),
                    Some(Replica::NotStarted(error)) => ReplicaState::NotStarted(error.clone()),
                    None => ReplicaState::Idle,
                },
            })
            .collect();
        ShardListing {
            revision: state.revision,
            shards,
        }
    }

    /// Every shard's status code and progress, for metrics.
    pub fn snapshot(&self) -> Vec<ShardSnapshot> {
        let state = self.state();
        state
            .entries
            .values()
            .map(|entry| {
                let (replica, progress) = match state.running.get(&entry.spec.id) {
                    Some(Replica::Serving(handle)) => (
                        ReplicaState::Serving(handle.status()),
                        handle.watch_progress().borrow().clone(),
                    ),
                    Some(Replica::NotStarted(error)) => (
                        ReplicaState::NotStarted(error.clone()),
                        ShardProgress::default(),
                    ),
                    None => (ReplicaState::Idle, ShardProgress::default()),
                };
                let code = replica_status(&replica).code();
                ShardSnapshot {
                    id: entry.spec.id.clone(),
                    status: code.as_str_name(),
                    committed_txns: progress.committed_txns,
                    read_through: progress.read_through,
                }
            })
            .collect()
    }

    /// The registry revision.
    pub fn revision(&self) -> i64 {
        self.state().revision
    }

    /// A receiver of the progress of `shard`'s current term (its
    /// `committed_txns` counts from 0 again in each term), or `None` if it is
    /// not running. The sender closes when the term ends, e.g. when a swap
    /// stops it; the next term has a receiver of its own.
    pub fn watch_progress(&self, shard: &str) -> Option<watch::Receiver<ShardProgress>> {
        match self.state().running.get(shard) {
            Some(Replica::Serving(handle)) => Some(handle.watch_progress()),
            _ => None,
        }
    }

    /// Transaction-phase durations of every shard this registry runs.
    pub fn txn_metrics(&self) -> &TxnMetrics {
        &self.inner.txn_metrics
    }

    /// Waits until `shard` is serving and its last committed transaction
    /// read through `read_through` (offsets of journals it does not read,
    /// and zero offsets, are ignored, as in Gazette), at most `timeout`;
    /// returns its read-through offsets per source.
    pub async fn stat(
        &self,
        shard: &str,
        read_through: &HashMap<String, i64>,
        timeout: Duration,
    ) -> Result<BTreeMap<String, i64>, StatError> {
        let (sources, status, progress) = {
            let state = self.state();
            if !state.entries.contains_key(shard) {
                return Err(StatError::NotFound(shard.to_string()));
            }
            match state.running.get(shard) {
                Some(Replica::Serving(handle)) => (
                    handle
                        .spec
                        .sources
                        .iter()
                        .map(|source| source.journal.clone())
                        .collect::<BTreeSet<_>>(),
                    handle.watch_status(),
                    handle.watch_progress(),
                ),
                _ => return Err(StatError::NoPrimary(shard.to_string())),
            }
        };
        let wanted: Vec<(String, i64)> = read_through
            .iter()
            .filter(|(journal, offset)| **offset != 0 && sources.contains(*journal))
            .map(|(journal, offset)| (journal.clone(), *offset))
            .collect();
        match tokio::time::timeout(timeout, wait_read_through(status, progress, &wanted)).await {
            Ok(Ok(read_through)) => Ok(read_through),
            Ok(Err(status)) => Err(StatError::Stopped {
                shard: shard.to_string(),
                status,
            }),
            Err(_) => Err(StatError::DeadlineExceeded {
                shard: shard.to_string(),
                timeout,
            }),
        }
    }

    /// Stops every shard gracefully (each commits its current transaction);
    /// later applies fail with [`ShardRegistryError::ShuttingDown`].
    pub async fn shutdown(self) {
        let _serial = self.inner.serial.lock().await;
        let stopping: Vec<ShardHandle> = {
            let mut state = self.state();
            state.closed = true;
            state
                .running
                .drain()
                .filter_map(|(_, replica)| match replica {
                    Replica::Serving(handle) => Some(handle),
                    Replica::NotStarted(_) => None,
                })
                .collect()
        };
        futures::future::join_all(stopping.into_iter().map(stop)).await;
    }

    /// Checks everything about `changes` but revisions; returns the modules
    /// of the upserted specs.
    async fn validate(
        &self,
        changes: &[ShardChange],
    ) -> Result<HashMap<ModuleDigest, ConsumerModule>, ShardRegistryError> {
        let mut ids = HashSet::new();
        for change in changes {
            if !ids.insert(change.id()) {
                return Err(ShardRegistryError::InvalidChange(format!(
                    "shard {} is changed more than once",
                    change.id()
                )));
            }
            match change {
                ShardChange::Upsert { spec, .. } => {
                    spec.validate()?;
                    module_digest(spec)?;
                    shard_guest_limits(spec)?;
                }
                ShardChange::Delete {
                    id,
                    expect: ExpectRevision::Absent,
                } => {
                    return Err(ShardRegistryError::InvalidChange(format!(
                        "deleting shard {id} expects it to be absent (use -1 or its revision)"
                    )));
                }
                ShardChange::Delete { .. } => {}
            }
        }
        let specs: Vec<&ShardSpec> = changes
            .iter()
            .filter_map(|change| match change {
                ShardChange::Upsert { spec, .. } => Some(spec),
                ShardChange::Delete { .. } => None,
            })
            .collect();
        let mut modules = HashMap::new();
        for spec in &specs {
            let module = self.load_module(spec).await?;
            modules.insert(module.digest(), module);
        }
        self.check_journals(&specs).await?;
        probe_instantiation(&specs, &modules).await?;
        Ok(modules)
    }

    /// The module `spec` pins, loaded (compiled on a blocking thread).
    async fn load_module(&self, spec: &ShardSpec) -> Result<ConsumerModule, ShardRegistryError> {
        let digest = module_digest(spec)?;
        let modules = self.inner.modules.clone();
        match blocking(move || modules.get(&digest)).await? {
            Ok(module) => Ok(module),
            Err(ModuleError::NotFound(_)) => Err(SpecError {
                shard: spec.id.clone(),
                field: "labels",
                reason: format!(
                    "{MODULE_LABEL}={digest} names a module that is not stored (push it first)"
                ),
            }
            .into()),
            Err(err) => Err(ShardRegistryError::Module(err)),
        }
    }

    /// Every source journal and recovery log of `specs` must exist.
    async fn check_journals(&self, specs: &[&ShardSpec]) -> Result<(), ShardRegistryError> {
        let mut names = LabelSet::new();
        for spec in specs {
            for source in &spec.sources {
                names.insert(META_NAME, &source.journal);
            }
            names.insert(META_NAME, spec.recovery_log());
        }
        if names.is_empty() {
            return Ok(());
        }
        let selector = LabelSelector {
            include: names,
            exclude: LabelSet::new(),
        };
        let existing: HashSet<String> = self
            .inner
            .client
            .list(&selector)
            .await
            .map_err(ShardRegistryError::Journals)?
            .into_iter()
            .map(|journal| journal.name)
            .collect();
        for spec in specs {
            let missing = |field, reason| SpecError {
                shard: spec.id.clone(),
                field,
                reason,
            };
            if let Some(source) = spec
                .sources
                .iter()
                .find(|source| !existing.contains(&source.journal))
            {
                return Err(missing(
                    "sources.journal",
                    format!("journal {} does not exist", source.journal),
                )
                .into());
            }
            if !existing.contains(&spec.recovery_log()) {
                return Err(missing(
                    "recovery_log_prefix",
                    format!(
                        "recovery log journal {} does not exist",
                        spec.recovery_log()
                    ),
                )
                .into());
            }
        }
        Ok(())
    }

    fn spawn(&self, spec: ShardSpec, module: ConsumerModule) -> ShardHandle {
        tracing::info!(shard = %spec.id, module = %module.digest().short(), "starting shard");
        let mut config = ShardConfig::new(self.inner.dir.join(STORES_DIR));
        config.module_digest = module.digest().to_string();
        config.txn_metrics = Some(self.inner.txn_metrics.clone());
        let id = spec.id.clone();
        // Validated at apply; an error here (a registry file edited by hand)
        // fails each term, so the shard ends FAILED with the reason.
        let limits = shard_guest_limits(&spec).map_err(|err| err.to_string());
        let app: AppFactory = Arc::new(move || {
            let limits = limits.clone().map_err(AppError::Crashed)?;
            let app = module
                .application(&id, limits)
                .map_err(|err| AppError::Crashed(err.to_string()))?;
            Ok(Box::new(app) as _)
        });
        spawn_shard(
            spec,
            self.inner.client.clone(),
            app,
            config,
            self.inner.clock.clone(),
        )
    }

    /// Removes a deleted shard's local store; its recovery log (which the
    /// user owns) stays, so re-creating the shard recovers from it.
    async fn remove_store(&self, id: &str) {
        let dir = self.inner.dir.join(STORES_DIR).join(id);
        let error = match blocking(move || std::fs::remove_dir_all(&dir)).await {
            Ok(Ok(())) => return,
            Ok(Err(err)) if err.kind() == io::ErrorKind::NotFound => return,
            Ok(Err(err)) => err.to_string(),
            Err(err) => err.to_string(),
        };
        tracing::warn!(shard = %id, %error, "cannot remove a deleted shard's store");
    }

    async fn persist(
        &self,
        revision: i64,
        entries: &BTreeMap<String, Entry>,
    ) -> Result<(), ShardRegistryError> {
        let persisted = Persisted {
            revision,
            shards: entries.values().cloned().collect(),
        };
        let dir = self.inner.dir.clone();
        blocking(move || save(&dir, &persisted)).await?
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for ShardRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardRegistry")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// Takes out of `running` the replicas `changes` end, and returns them with
/// the specs to start once they stopped. An upsert leaves a running shard
/// alone if its spec is unchanged and it is still running.
fn reconcile(
    running: &mut HashMap<String, Replica>,
    changes: &[ShardChange],
) -> (Vec<ShardHandle>, Vec<ShardSpec>) {
    let mut stopping = Vec::new();
    let mut starting = Vec::new();
    for change in changes {
        let keep = match (change, running.get(change.id())) {
            (ShardChange::Upsert { spec, .. }, Some(Replica::Serving(handle))) => {
                handle.spec == *spec && !has_ended(&handle.status())
            }
            _ => false,
        };
        if keep {
            continue;
        }
        if let Some(Replica::Serving(handle)) = running.remove(change.id()) {
            stopping.push(handle);
        }
        if let ShardChange::Upsert { spec, .. } = change
            && !spec.disable
        {
            starting.push(spec.clone());
        }
    }
    (stopping, starting)
}

fn has_ended(status: &ShardStatus) -> bool {
    matches!(
        status,
        ShardStatus::Failed { .. } | ShardStatus::Fenced { .. } | ShardStatus::Stopped
    )
}

async fn stop(handle: ShardHandle) {
    let id = handle.spec.id.clone();
    handle.stop().await;
    tracing::info!(shard = %id, "stopped shard");
}

/// Waits until the shard is serving (not recovering) and has read through
/// every `wanted` offset; returns its read-through offsets, or the status
/// it ended in.
async fn wait_read_through(
    mut status: watch::Receiver<ShardStatus>,
    mut progress: watch::Receiver<ShardProgress>,
    wanted: &[(String, i64)],
) -> Result<BTreeMap<String, i64>, ShardStatus> {
    loop {
        let current = status.borrow_and_update().clone();
        if has_ended(&current) {
            return Err(current);
        }
        {
            let progress = progress.borrow_and_update();
            let reached = wanted.iter().all(|(journal, offset)| {
                progress
                    .read_through
                    .get(journal)
                    .is_some_and(|read| read >= offset)
            });
            if current != ShardStatus::Recovering && reached {
                return Ok(progress.read_through.clone());
            }
        }
        // A dropped sender means the shard's task is gone.
        let gone = tokio::select! {
            changed = status.changed() => changed.is_err(),
            changed = progress.changed() => changed.is_err(),
        };
        if gone {
            return Err(ShardStatus::Stopped);
        }
    }
}

/// The limits `spec`'s guest runs under: the defaults with its
/// `weir.dev/limit.*` labels applied (one place, so that validation, the
/// instantiation probe of an apply and the running shard agree).
fn shard_guest_limits(spec: &ShardSpec) -> Result<GuestLimits, SpecError> {
    super::shard_limits::guest_limits(spec)
}

/// Instantiates, once per module, every module that an enabled spec of
/// `specs` pins (all are in `modules`), each on a blocking thread and then
/// dropped. A module that compiles and links can still fail here: a start
/// function that traps, a linear memory whose minimum exceeds the cap.
/// Refusing it now, before any shard is stopped, is what leaves a running
/// version serving when its replacement cannot start.
async fn probe_instantiation(
    specs: &[&ShardSpec],
    modules: &HashMap<ModuleDigest, ConsumerModule>,
) -> Result<(), ShardRegistryError> {
    // Once per module and set of limits: a shard's limits (its memory cap)
    // decide whether the module can start.
    let mut probed: Vec<(ModuleDigest, GuestLimits)> = Vec::new();
    for spec in specs.iter().filter(|spec| !spec.disable) {
        let digest = module_digest(spec)?;
        let limits = shard_guest_limits(spec)?;
        if probed.contains(&(digest, limits.clone())) {
            continue;
        }
        probed.push((digest, limits.clone()));
        let Some(module) = modules.get(&digest).cloned() else {
            continue;
        };
        let id = spec.id.clone();
        let probe_limits = limits.clone();
        let instantiated =
            blocking(move || module.application(&id, probe_limits).map(drop)).await?;
        if let Err(err) = instantiated {
            let why = match err {
                RuntimeError::Instantiate { reason, .. } => reason,
                RuntimeError::Config(_) if limits.fuel_per_call.is_some() => {
                    return Err(SpecError {
                        shard: spec.id.clone(),
                        field: "labels",
                        reason: super::shard_limits::fuel_refusal(),
                    }
                    .into());
                }
                other => other.to_string(),
            };
            return Err(SpecError {
                shard: spec.id.clone(),
                field: "labels",
                reason: format!(
                    "{MODULE_LABEL}={digest}: cannot instantiate the module: {why}; nothing \
                     was changed, so a running shard keeps its current module"
                ),
            }
            .into());
        }
    }
    Ok(())
}

/// The module digest `spec`'s [`MODULE_LABEL`] pins.
pub fn module_digest(spec: &ShardSpec) -> Result<ModuleDigest, SpecError> {
    let invalid = |reason: String| SpecError {
        shard: spec.id.clone(),
        field: "labels",
        reason,
    };
    let mut values = spec.labels.values(MODULE_LABEL);
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(invalid(format!(
            "exactly one label {MODULE_LABEL} is required (the digest of the shard's module)"
        )));
    };
    value
        .parse()
        .map_err(|err| invalid(format!("label {MODULE_LABEL}: {err}")))
}

/// The shard's labels plus Gazette's meta label `id`.
pub fn labels_with_meta(spec: &ShardSpec) -> LabelSet {
    let mut labels = spec.labels.clone();
    labels.insert(META_ID, &spec.id);
    labels
}

/// Runs `f` on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ShardRegistryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|err| ShardRegistryError::Task(err.to_string()))
}

fn load(dir: &Path) -> Result<Persisted, ShardRegistryError> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ShardRegistryError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let path = dir.join(REGISTRY_FILE);
    match std::fs::read(&path) {
        // etcd's revisions start at 1, and Gazette's clients expect them positive.
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Persisted {
            revision: 1,
            shards: Vec::new(),
        }),
        Err(err) => Err(io_error(&path)(err)),
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| ShardRegistryError::Corrupt {
            path,
            reason: err.to_string(),
        }),
    }
}

/// Replaces the registry file atomically and durably.
fn save(dir: &Path, persisted: &Persisted) -> Result<(), ShardRegistryError> {
    let path = dir.join(REGISTRY_FILE);
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ShardRegistryError::Io { path, source }
    };
    let json = serde_json::to_vec_pretty(persisted).map_err(|err| ShardRegistryError::Io {
        path: path.clone(),
        source: io::Error::other(err),
    })?;
    let mut file = tempfile::Builder::new()
        .prefix(".registry-")
        .tempfile_in(dir)
        .map_err(io_error(dir))?;
    file.write_all(&json).map_err(io_error(&path))?;
    file.as_file().sync_all().map_err(io_error(&path))?;
    file.persist(&path)
        .map_err(|err| io_error(&path)(err.error))?;
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(dir))
}

#[cfg(test)]
pub(crate) mod test {
    use std::time::Duration;

    use guest_summer::sum::{Chunk, StreamId, Sum, crc64_update};
    use tempfile::TempDir;

    use super::*;
    use crate::broker::{Broker, BrokerConfig, ReadRequest};
    use crate::cli::stream_sum::{names, setup_journals};
    use crate::message::Publisher;
    use crate::runtime::guests::SUMMER_WASM;
    use crate::runtime::testing::runtime;

    /// A broker with stream-sum's journals, a module store holding the
    /// summer, and summer shard specs pinned to it.
    pub(crate) struct Fixture {
        pub dir: TempDir,
        pub broker: Broker,
        pub client: Arc<dyn JournalClient>,
        pub modules: ModuleStore,
        pub specs: Vec<ShardSpec>,
    }

    impl Fixture {
        pub async fn new(partitions: u32) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let broker = Broker::open(dir.path().join("broker"), BrokerConfig::default())
                .await
                .unwrap();
            let client: Arc<dyn JournalClient> = Arc::new(broker.clone());
            let modules =
                ModuleStore::open(&dir.path().join("modules"), runtime().clone()).unwrap();
            let (digest, _) = modules.push(SUMMER_WASM).unwrap();
            let mut specs = setup_journals(client.as_ref(), partitions).await.unwrap();
            for spec in &mut specs {
                spec.labels.set(MODULE_LABEL, digest.to_string());
                spec.max_txn_duration = Duration::from_millis(100);
            }
            Fixture {
                dir,
                broker,
                client,
                modules,
                specs,
            }
        }

        pub async fn registry(&self) -> ShardRegistry {
            ShardRegistry::open(
                &self.dir.path().join("registry"),
                self.client.clone(),
                self.modules.clone(),
            )
            .await
            .unwrap()
        }

        /// Publishes a whole stream (its chunks, then the final empty one)
        /// to `journal`; returns the write head after it and its sum.
        pub async fn publish_stream(
            &self,
            journal: &str,
            id: StreamId,
            chunks: &[&[u8]],
        ) -> (i64, u64) {
            let publisher = Publisher::new(
                self.client.clone(),
                Arc::new(AtomicClock::now()),
                tokio::runtime::Handle::current(),
            );
            let mut sum = 0;
            for (index, data) in chunks.iter().copied().chain([&b""[..]]).enumerate() {
                publisher
                    .publish_committed(journal, &Chunk::to_json(&id, index as u64 + 1, data))
                    .unwrap();
                sum = crc64_update(sum, data);
            }
            publisher.flush().await.unwrap();
            (self.broker.write_head(journal).unwrap(), sum)
        }

        /// Every sum in the sums journal (acknowledgements left out).
        pub async fn sums(&self) -> Vec<Sum> {
            let mut stream = self
                .client
                .read(ReadRequest {
                    journal: names::SUMS.into(),
                    offset: 0,
                    ..Default::default()
                })
                .await
                .unwrap();
            let mut content = Vec::new();
            while let Some(chunk) = stream.next().await.unwrap() {
                content.extend_from_slice(&chunk.content);
            }
            content
                .split(|byte| *byte == b'\n')
                .filter(|line| !line.is_empty())
                // Acknowledgements carry only a UUID.
                .filter(|line| {
                    let doc: serde_json::Value = serde_json::from_slice(line).unwrap();
                    doc.get("ID").is_some()
                })
                .map(|line| Sum::parse(line).unwrap())
                .collect()
        }
    }

    fn upsert(spec: &ShardSpec, expect: ExpectRevision) -> ShardChange {
        ShardChange::Upsert {
            spec: spec.clone(),
            expect,
        }
    }

    async fn wait_primary(registry: &ShardRegistry, id: &str) {
        for _ in 0..200 {
            let listing = registry.list(&LabelSelector::all());
            let shard = listing.shards.iter().find(|s| s.spec.id == id).unwrap();
            if shard.state == ReplicaState::Serving(ShardStatus::Primary) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("shard {id} did not become primary");
    }

    #[tokio::test]
    async fn a_batch_with_one_bad_change_changes_nothing() {
        let fixture = Fixture::new(2).await;
        let registry = fixture.registry().await;
        let mut bad = fixture.specs[1].clone();
        bad.sources[0].journal = "examples/stream-sum/chunks/missing".into();
        let err = registry
            .apply(vec![
                upsert(&fixture.specs[0], ExpectRevision::Absent),
                upsert(&bad, ExpectRevision::Absent),
            ])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ShardRegistryError::InvalidSpec(e) if e.field == "sources.journal"),
            "{err}"
        );
        assert!(err.to_string().contains("chunks/missing"), "{err}");
        let listing = registry.list(&LabelSelector::all());
        assert!(listing.shards.is_empty());
        assert_eq!(listing.revision, 1);

        let mut no_module = fixture.specs[0].clone();
        no_module.labels.remove(MODULE_LABEL);
        let err = registry
            .apply(vec![upsert(&no_module, ExpectRevision::Any)])
            .await
            .unwrap_err();
        assert!(err.to_string().contains(MODULE_LABEL), "{err}");

        let mut unknown = fixture.specs[0].clone();
        unknown
            .labels
            .set(MODULE_LABEL, ModuleDigest::of(b"nothing").to_string());
        let err = registry
            .apply(vec![upsert(&unknown, ExpectRevision::Any)])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not stored"), "{err}");
        registry.shutdown().await;
    }

    #[tokio::test]
    async fn selectors_match_labels_and_the_id_meta_label() {
        let fixture = Fixture::new(2).await;
        let registry = fixture.registry().await;
        let mut specs = fixture.specs.clone();
        specs[1].labels.set("team", "blue");
        specs[1].disable = true;
        let revision = registry
            .apply(
                specs
                    .iter()
                    .map(|s| upsert(s, ExpectRevision::Absent))
                    .collect(),
            )
            .await
            .unwrap();
        assert_eq!(revision, 2);
        let ids = |selector: &str| -> Vec<String> {
            registry
                .list(&selector.parse().unwrap())
                .shards
                .into_iter()
                .map(|s| s.spec.id)
                .collect()
        };
        assert_eq!(ids("team=blue"), vec!["chunks-part-001"]);
        assert_eq!(ids("id=chunks-part-000"), vec!["chunks-part-000"]);
        assert_eq!(ids("!team"), vec!["chunks-part-000"]);
        assert_eq!(ids("").len(), 2);
        let disabled = registry.list(&"team=blue".parse().unwrap()).shards;
        assert_eq!(disabled[0].state, ReplicaState::Idle);
        registry.shutdown().await;
    }

    #[tokio::test]
    async fn a_changed_spec_restarts_the_shard_and_disabling_stops_it() {
        let fixture = Fixture::new(1).await;
        let journal = fixture.specs[0].sources[0].journal.clone();
        let id = fixture.specs[0].id.clone();
        let registry = fixture.registry().await;
        registry
            .apply(vec![upsert(&fixture.specs[0], ExpectRevision::Absent)])
            .await
            .unwrap();
        let (head, first) = fixture
            .publish_stream(&journal, [1; 16], &[b"battery"])
            .await;
        let wanted = HashMap::from([(journal.clone(), head)]);
        registry
            .stat(&id, &wanted, Duration::from_secs(10))
            .await
            .unwrap();

        let mut changed = fixture.specs[0].clone();
        changed.labels.set("team", "blue");
        let revision = registry
            .apply(vec![upsert(&changed, ExpectRevision::Equal(2))])
            .await
            .unwrap();
        assert_eq!(revision, 3);
        match registry.state().running.get(&id) {
            Some(Replica::Serving(handle)) => assert_eq!(handle.spec, changed),
            _ => panic!("shard {id} is not running"),
        }
        let (head, second) = fixture.publish_stream(&journal, [2; 16], &[b"horse"]).await;
        let wanted = HashMap::from([(journal.clone(), head)]);
        registry
            .stat(&id, &wanted, Duration::from_secs(10))
            .await
            .unwrap();
        let sums: Vec<(StreamId, u64)> = fixture
            .sums()
            .await
            .into_iter()
            .map(|sum| (sum.id, sum.value))
            .collect();
        assert_eq!(sums, vec![([1; 16], first), ([2; 16], second)]);

        changed.disable = true;
        registry
            .apply(vec![upsert(&changed, ExpectRevision::Equal(3))])
            .await
            .unwrap();
        let listing = registry.list(&LabelSelector::all());
        assert_eq!(listing.shards[0].state, ReplicaState::Idle);
        assert_eq!(
            registry
                .stat(&id, &HashMap::new(), Duration::from_secs(1))
                .await,
            Err(StatError::NoPrimary(id.clone()))
        );
        registry.shutdown().await;
        fixture.broker.shutdown().await;
    }

    #[tokio::test]
    async fn a_reopened_registry_restarts_its_shards_where_they_left_off() {
        let fixture = Fixture::new(1).await;
        let journal = fixture.specs[0].sources[0].journal.clone();
        let id = fixture.specs[0].id.clone();
        let registry = fixture.registry().await;
        registry
            .apply(vec![upsert(&fixture.specs[0], ExpectRevision::Absent)])
            .await
            .unwrap();
        let (head, first) = fixture
            .publish_stream(&journal, [1; 16], &[b"battery", b" horse"])
            .await;
        let wanted = HashMap::from([(journal.clone(), head)]);
        registry
            .stat(&id, &wanted, Duration::from_secs(10))
            .await
            .unwrap();
        registry.shutdown().await;

        // A new module store too: the module is loaded from disk.
        let modules =
            ModuleStore::open(&fixture.dir.path().join("modules"), runtime().clone()).unwrap();
        let reopened = ShardRegistry::open(
            &fixture.dir.path().join("registry"),
            fixture.client.clone(),
            modules,
        )
        .await
        .unwrap();
        let listing = reopened.list(&LabelSelector::all());
        assert_eq!(listing.revision, 2);
        assert_eq!(
            listing.shards[0].revisions,
            Revisions {
                create: 2,
                modify: 2
            }
        );
        wait_primary(&reopened, &id).await;
        let (head, second) = fixture
            .publish_stream(&journal, [2; 16], &[b"staple"])
            .await;
        let wanted = HashMap::from([(journal.clone(), head)]);
        let read = reopened
            .stat(&id, &wanted, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(read.get(&journal), Some(&head));

        // Each stream summed exactly once: nothing was consumed twice.
        let sums: Vec<(StreamId, u64)> = fixture
            .sums()
            .await
            .into_iter()
            .map(|sum| (sum.id, sum.value))
            .collect();
        assert_eq!(sums, vec![([1; 16], first), ([2; 16], second)]);
        reopened.shutdown().await;
        fixture.broker.shutdown().await;
    }
}
