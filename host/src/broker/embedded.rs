//! The [`Broker`] handle: opens a data directory, recovers its journals, and
//! serves [`JournalClient`] calls against them.
//!
//! Beyond the client contract, the broker answers what a gRPC front end
//! needs: journals with their registry revisions ([`Broker::list_journals`]),
//! Applies conditional on revisions ([`Broker::apply_expecting`]), a
//! notification of registry changes ([`Broker::watch_registry`]), and the
//! fragment index ([`Broker::fragments`], [`Broker::read_position`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::apply::{self, Change};
use super::backend::{Backend, DirLock, FsBackend};
use super::journal::{self, Health, JournalShared, Recovered, lock, read, write};
use super::layout::{JOURNALS_DIR, journal_dir};
use super::protocol::{
    AppendRequest, AppendResponse, BrokerError, JournalChange, JournalClient, ReadRequest,
    ReadStream,
};
use super::reader::JournalReader;
use super::revision::{self, ApplyOutcome, ExpectRevision, Revisions};
use super::spec::{JournalSpec, LabelSelector, LabelSet, validate_journal_name};
use super::writer::{AppendOp, Writer};
use crate::limits;

/// Settings of a [`Broker`]; [`Default`] takes the named defaults of
/// [`limits`] and the local file system.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Largest single append, in bytes.
    pub max_append_size: usize,
    /// Spool roll target of journals whose spec leaves `fragment_length` 0,
    /// in bytes.
    pub fragment_length: u64,
    /// Most content bytes per read chunk.
    pub read_chunk_size: usize,
    /// Appends queued per journal before appenders wait.
    pub append_queue_depth: usize,
    /// How long [`Broker::open`] waits for the data directory's lock.
    pub lock_wait: Duration,
    /// Where the bytes live: [`FsBackend`] for real, or a fault-injecting
    /// [`SimBackend`](super::sim::SimBackend) in tests.
    pub backend: Arc<dyn Backend>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig::with_backend(Arc::new(FsBackend::new()))
    }
}

impl BrokerConfig {
    /// The default limits over `backend`.
    pub fn with_backend(backend: Arc<dyn Backend>) -> Self {
        BrokerConfig {
            max_append_size: limits::DEFAULT_MAX_APPEND_SIZE,
            fragment_length: limits::DEFAULT_FRAGMENT_LENGTH,
            read_chunk_size: limits::DEFAULT_READ_CHUNK_SIZE,
            append_queue_depth: limits::DEFAULT_APPEND_QUEUE_DEPTH,
            lock_wait: Duration::from_millis(limits::DEFAULT_DIR_LOCK_WAIT_MS),
            backend,
        }
    }
}

/// The embedded journal broker: a cheap, cloneable handle. See the
/// [module docs](super) for its guarantees.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    config: BrokerConfig,
    journals: RwLock<BTreeMap<String, Arc<Journal>>>,
    /// Serializes Applies (and Apply against shutdown).
    apply_lock: tokio::sync::Mutex<()>,
    closed: AtomicBool,
    /// Shared with the writers, so the directory stays locked until the
    /// last write is done; taken by shutdown.
    dir_lock: Mutex<Option<Arc<dyn DirLock>>>,
    /// The registry revision. It changes (under the `journals` write lock,
    /// so a List sees journals and revision together) after every Apply,
    /// and is re-sent on shutdown to wake watchers.
    registry: watch::Sender<i64>,
}

struct Journal {
    shared: Arc<JournalShared>,
    appends: mpsc::Sender<AppendOp>,
    writer: Mutex<Option<JoinHandle<()>>>,
    revisions: Mutex<Revisions>,
}

/// A journal as [`Broker::list_journals`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedJournal {
    /// The journal's spec.
    pub spec: JournalSpec,
    /// Its create and mod revisions.
    pub revisions: Revisions,
}

/// The journals matching a selector, sorted by name, and the registry
/// revision they were read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The registry revision.
    pub revision: i64,
    /// The matching journals, sorted by name.
    pub journals: Vec<ListedJournal>,
}

/// One fragment of a journal's index, as [`Broker::fragments`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentInfo {
    /// Journal offset of its first byte.
    pub begin: i64,
    /// Journal offset after its last committed byte.
    pub end: i64,
    /// When its file was last written, if the file system says.
    pub mod_time: Option<SystemTime>,
}

/// Where a read of a journal stands ([`Broker::read_position`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPosition {
    /// The committed write head (for a corrupt journal, where the damage
    /// begins).
    pub write_head: i64,
    /// The `[begin, end)` of the fragment holding the offset asked about,
    /// if one does.
    pub fragment: Option<Range<i64>>,
}

/// What [`open_directory`] found.
struct Opened {
    lock: Box<dyn DirLock>,
    /// The stored registry revision.
    revision: i64,
    journals: Vec<Found>,
}

/// A journal directory found by [`open_directory`].
struct Found {
    spec: JournalSpec,
    dir: PathBuf,
    recovered: Recovered,
    /// `None` for a journal written before revisions existed.
    revisions: Option<Revisions>,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> BrokerError {
    let context = context.into();
    move |source| BrokerError::Io { context, source }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| BrokerError::Unavailable(format!("a blocking task failed: {err}")))
}

impl Broker {
    /// Opens (creating if needed) the data directory `dir`, takes its lock,
    /// completes an interrupted Apply, and recovers every journal in it.
    ///
    /// A damaged journal does not make `open` fail: it is logged and kept in
    /// a state that reports the damage (see [`BrokerError::Corrupt`]). `open`
    /// fails if the directory stays locked by another broker for
    /// [`BrokerConfig::lock_wait`] ([`BrokerError::Unavailable`]) or cannot
    /// be read.
    pub async fn open(dir: impl AsRef<Path>, config: BrokerConfig) -> Result<Broker, BrokerError> {
        let root = dir.as_ref().to_path_buf();
        let backend = config.backend.clone();
        let open_root = root.clone();
        let lock_wait = config.lock_wait;
        let Opened {
            lock: dir_lock,
            revision: stored,
            journals: found,
        } = blocking(move || open_directory(backend.as_ref(), &open_root, lock_wait)).await??;
        // Never below a stored revision, and never 0 (Gazette's "absent").
        let registry = found
            .iter()
            .filter_map(|found| found.revisions.map(|r| r.modify))
            .fold(stored.max(1), i64::max);
        let inner = Arc::new(Inner {
            root,
            config,
            journals: RwLock::new(BTreeMap::new()),
            apply_lock: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
            dir_lock: Mutex::new(Some(Arc::from(dir_lock))),
            registry: watch::Sender::new(registry),
        });
        {
            let mut journals = write(&inner.journals);
            for found in found {
                let name = found.spec.name.clone();
                let revisions = found.revisions.unwrap_or(Revisions {
                    create: registry,
                    modify: registry,
                });
                let journal =
                    inner.start_journal(found.spec, found.dir, found.recovered, revisions)?;
                journals.insert(name, journal);
            }
        }
        Ok(Broker { inner })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.root
    }

    /// The committed write head of `journal`: the offset one past its last
    /// durable byte. A corrupt journal reports its damage instead.
    pub fn write_head(&self, journal: &str) -> Result<i64, BrokerError> {
        let shared = self.inner.journal(journal)?.shared.clone();
        let committed = shared.committed();
        match committed.health {
            Health::Corrupt { .. } | Health::Deleted | Health::ShutDown => Err(committed
                .error(journal)
                .unwrap_or_else(|| BrokerError::Unavailable(journal.into()))),
            Health::Healthy | Health::Failed { .. } => Ok(committed.head),
        }
    }

    /// The current (durable) registers of `journal`.
    pub fn registers(&self, journal: &str) -> Result<LabelSet, BrokerError> {
        let shared = self.inner.journal(journal)?.shared.clone();
        let registers = lock(&shared.registers).clone();
        Ok(registers)
    }

    /// Stops accepting calls, lets every queued append finish (durably),
    /// ends blocked reads with [`BrokerError::Unavailable`], and releases
    /// the data directory. Later calls fail with `Unavailable`.
    pub async fn shutdown(&self) {
        let _apply = self.inner.apply_lock.lock().await;
        self.inner.closed.store(true, Ordering::SeqCst);
        let journals = std::mem::take(&mut *write(&self.inner.journals));
        let mut stopping = Vec::new();
        for (_, journal) in journals {
            let writer = lock(&journal.writer).take();
            stopping.push((journal.shared.clone(), writer));
            // Dropping the journal drops its queue's sender: the writer
            // drains the queue and exits.
            drop(journal);
        }
        for (shared, writer) in stopping {
            if let Some(writer) = writer
                && let Err(err) = writer.await
            {
                tracing::error!(journal = shared.name.as_str(), error = %err, "writer task failed");
            }
            shared.set_health(Health::ShutDown);
        }
        lock(&self.inner.dir_lock).take();
        // Watchers wake, list, and learn that the broker is gone.
        self.inner.registry.send_modify(|_| {});
    }

    /// The journals matching `selector`, sorted by name, with their
    /// revisions and the registry revision.
    pub fn list_journals(&self, selector: &LabelSelector) -> Result<Listing, BrokerError> {
        self.inner.check_open()?;
        selector.validate()?;
        let journals = read(&self.inner.journals);
        let revision = *self.inner.registry.borrow();
        let journals = journals
            .values()
            .map(|journal| ListedJournal {
                spec: read(&journal.shared.spec).clone(),
                revisions: *lock(&journal.revisions),
            })
            .filter(|listed| selector.matches(&listed.spec.labels_with_meta()))
            .collect();
        Ok(Listing { revision, journals })
    }

    /// A receiver of the registry revision: it sees a change after every
    /// Apply, and once more at shutdown (when listing then fails with
    /// [`BrokerError::Unavailable`]).
    pub fn watch_registry(&self) -> watch::Receiver<i64> {
        self.inner.registry.subscribe()
    }

    /// Applies `changes` atomically if every journal's mod revision meets
    /// its change's expectation; otherwise applies nothing and says which
    /// journal did not. Validation errors come before revision checks, and
    /// those before [`BrokerError::JournalNotFound`] for a deleted journal
    /// that does not exist.
    pub async fn apply_expecting(
        &self,
        changes: Vec<(JournalChange, ExpectRevision)>,
    ) -> Result<ApplyOutcome, BrokerError> {
        self.inner.apply(changes).await
    }

    /// The write head of `journal` and the fragment holding `offset`. Unlike
    /// [`Broker::write_head`], a corrupt journal answers too: it is readable
    /// below its damage.
    pub fn read_position(&self, journal: &str, offset: i64) -> Result<ReadPosition, BrokerError> {
        let shared = self.inner.journal(journal)?.shared.clone();
        let committed = shared.committed();
        if let Health::Deleted | Health::ShutDown = committed.health {
            return Err(committed
                .error(journal)
                .unwrap_or_else(|| BrokerError::Unavailable(journal.into())));
        }
        Ok(ReadPosition {
            write_head: committed.head,
            fragment: shared.locate(offset).map(|f| f.begin..f.end),
        })
    }

    /// The fragments of `journal`'s index in offset order, with the time
    /// each file was last written (one `fstat` per fragment).
    pub async fn fragments(&self, journal: &str) -> Result<Vec<FragmentInfo>, BrokerError> {
        let shared = self.inner.journal(journal)?.shared.clone();
        let index: Vec<_> = read(&shared.fragments)
            .iter()
            .map(|f| (f.begin, f.end, f.file.clone()))
            .collect();
        blocking(move || {
            index
                .into_iter()
                .map(|(begin, end, file)| FragmentInfo {
                    begin,
                    end,
                    mod_time: file.modified().ok(),
                })
                .collect()
        })
        .await
    }
}

impl Drop for Inner {
    /// The last handle is gone: blocked readers end with `Unavailable`
    /// (writers finish their queues and exit as their senders drop).
    fn drop(&mut self) {
        for journal in read(&self.journals).values() {
            journal.shared.set_health(Health::ShutDown);
        }
    }
}

impl Inner {
    fn check_open(&self) -> Result<(), BrokerError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(BrokerError::Unavailable("the broker shut down".into()));
        }
        Ok(())
    }

    fn journal(&self, name: &str) -> Result<Arc<Journal>, BrokerError> {
        self.check_open()?;
        read(&self.journals)
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::JournalNotFound(name.to_string()))
    }

    /// See [`Broker::apply_expecting`].
    async fn apply(
        &self,
        changes: Vec<(JournalChange, ExpectRevision)>,
    ) -> Result<ApplyOutcome, BrokerError> {
        let _apply = self.apply_lock.lock().await;
        self.check_open()?;
        let mut names = BTreeSet::new();
        let mut recorded = Vec::with_capacity(changes.len());
        let mut expectations = Vec::with_capacity(changes.len());
        for (change, expect) in changes {
            let change = match change {
                JournalChange::Upsert(spec) => {
                    spec.validate()?;
                    Change::Upsert(spec)
                }
                JournalChange::Delete(name) => {
                    validate_journal_name(&name)?;
                    Change::Delete(name)
                }
            };
            let name = match &change {
                Change::Upsert(spec) => spec.name.clone(),
                Change::Delete(name) => name.clone(),
            };
            if !names.insert(name.clone()) {
                return Err(BrokerError::InvalidArgument(format!(
                    "journal {name} appears twice in one Apply"
                )));
            }
            expectations.push((name, expect));
            recorded.push(change);
        }
        {
            let journals = read(&self.journals);
            for (journal, expected) in expectations {
                let current = journals.get(&journal).map(|j| *lock(&j.revisions));
                if !expected.admits(current) {
                    return Ok(ApplyOutcome::RevisionMismatch {
                        journal,
                        expected,
                        actual: current.map(|r| r.modify),
                    });
                }
            }
            for change in &recorded {
                if let Change::Delete(name) = change
                    && !journals.contains_key(name)
                {
                    return Err(BrokerError::JournalNotFound(name.clone()));
                }
            }
        }
        let revision = *self.registry.borrow();
        if recorded.is_empty() {
            return Ok(ApplyOutcome::Applied { revision });
        }
        let revision = revision + 1;

        let (backend, root) = (self.config.backend.clone(), self.root.clone());
        let pending = recorded.clone();
        blocking(move || -> io::Result<()> {
            for change in &pending {
                if let Change::Upsert(spec) = change {
                    apply::check_directory(backend.as_ref(), &root, &spec.name)?;
                }
            }
            // Stored before the Apply is recorded, so a redo reuses it.
            revision::write_registry(backend.as_ref(), &root, revision)?;
            apply::record_pending(backend.as_ref(), &root, &pending)
        })
        .await?
        .map_err(|err| match err.kind() {
            io::ErrorKind::AlreadyExists => BrokerError::InvalidArgument(err.to_string()),
            _ => BrokerError::Io {
                context: "recording an Apply".into(),
                source: err,
            },
        })?;

        // Deleted journals stop before their files go: appends fail with
        // JournalNotFound, readers are woken, and the writer finishes.
        for change in &recorded {
            if let Change::Delete(name) = change {
                let journal = write(&self.journals).remove(name);
                if let Some(journal) = journal {
                    journal.shared.set_health(Health::Deleted);
                    let writer = lock(&journal.writer).take();
                    drop(journal);
                    if let Some(writer) = writer {
                        let _ = writer.await;
                    }
                }
            }
        }

        let (backend, root) = (self.config.backend.clone(), self.root.clone());
        let work = recorded.clone();
        let carried = blocking(move || {
            apply::carry_out(backend.as_ref(), &root, &work, revision)?;
            apply::clear_pending(backend.as_ref(), &root)
        })
        .await?
        .map_err(io_error(
            "applying journal changes (they complete on the next open)",
        ));

        // Upserts become visible together, with the new revision; the
        // deletions already took effect, so the revision moves even if
        // carrying out failed.
        let mut journals = write(&self.journals);
        self.registry.send_replace(revision);
        carried?;
        for change in recorded {
            if let Change::Upsert(spec) = change {
                match journals.get(&spec.name) {
                    Some(journal) => {
                        *write(&journal.shared.spec) = spec;
                        lock(&journal.revisions).modify = revision;
                    }
                    None => {
                        let dir = journal_dir(&self.root, &spec.name);
                        let name = spec.name.clone();
                        let revisions = Revisions {
                            create: revision,
                            modify: revision,
                        };
                        let journal =
                            self.start_journal(spec, dir, Recovered::empty(), revisions)?;
                        journals.insert(name, journal);
                    }
                }
            }
        }
        Ok(ApplyOutcome::Applied { revision })
    }

    fn start_journal(
        &self,
        spec: JournalSpec,
        dir: PathBuf,
        mut recovered: Recovered,
        revisions: Revisions,
    ) -> Result<Arc<Journal>, BrokerError> {
        let dir_lock = lock(&self.dir_lock)
            .clone()
            .ok_or_else(|| BrokerError::Unavailable("the broker shut down".into()))?;
        let spool = recovered.spool.take();
        let shared = Arc::new(JournalShared::new(spec, dir, &mut recovered));
        let (appends, queue) = mpsc::channel(self.config.append_queue_depth.max(1));
        let writer = Writer::new(
            shared.clone(),
            self.config.backend.clone(),
            self.config.fragment_length,
            spool,
            dir_lock,
        );
        let writer = tokio::spawn(writer.run(queue));
        Ok(Arc::new(Journal {
            shared,
            appends,
            writer: Mutex::new(Some(writer)),
            revisions: Mutex::new(revisions),
        }))
    }
}

/// Takes the lock of `root`, waiting up to `wait` for its holder to let go
/// (see [`limits::DEFAULT_DIR_LOCK_WAIT_MS`] for why a released lock can
/// linger). Runs on a blocking thread, so it may sleep.
fn lock_directory(
    backend: &dyn Backend,
    root: &Path,
    wait: Duration,
) -> Result<Box<dyn DirLock>, BrokerError> {
    const POLL: Duration = Duration::from_millis(10);
    let deadline = Instant::now() + wait;
    loop {
        match backend.lock_dir(root) {
            Ok(lock) => return Ok(lock),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(BrokerError::Unavailable(format!(
                        "{err} (waited {wait:?}): stop the weir process using this data \
                         directory, or give this one another data directory"
                    )));
                }
                std::thread::sleep(POLL.min(deadline - now));
            }
            Err(err) => {
                return Err(BrokerError::Io {
                    context: format!("locking {}", root.display()),
                    source: err,
                });
            }
        }
    }
}

/// Blocking part of [`Broker::open`].
fn open_directory(
    backend: &dyn Backend,
    root: &Path,
    lock_wait: Duration,
) -> Result<Opened, BrokerError> {
    let journals_dir = root.join(JOURNALS_DIR);
    backend
        .create_dir_all(&journals_dir)
        .map_err(io_error(format!("creating {}", journals_dir.display())))?;
    backend
        .sync_dir(root)
        .map_err(io_error(format!("syncing {}", root.display())))?;
    let dir_lock = lock_directory(backend, root, lock_wait)?;
    apply::redo_pending(backend, root).map_err(io_error("completing an interrupted Apply"))?;
    let stored = revision::read_registry(backend, root)
        .map_err(io_error("reading the registry revision (inspect the file)"))?;
    let mut names = backend
        .list_dir(&journals_dir)
        .map_err(io_error(format!("listing {}", journals_dir.display())))?;
    names.sort();
    let mut found = Vec::new();
    for dir_name in names {
        let dir = journals_dir.join(&dir_name);
        let spec = match apply::read_spec(backend, &dir) {
            Ok(spec) => spec,
            Err(err) => {
                tracing::error!(dir = %dir.display(), error = err.as_str(), "skipping a journal directory without a readable spec");
                continue;
            }
        };
        if journal_dir(root, &spec.name) != dir {
            tracing::error!(dir = %dir.display(), journal = spec.name.as_str(), "skipping a spec found in another journal's directory");
            continue;
        }
        let recovered = journal::recover(backend, &dir, &spec.name).unwrap_or_else(|err| {
            tracing::error!(journal = spec.name.as_str(), error = %err, "cannot recover journal");
            Recovered {
                health: Health::Failed {
                    kind: err.kind(),
                    reason: err.to_string(),
                },
                ..Recovered::empty()
            }
        });
        let revisions = revision::read_journal(backend, &dir).unwrap_or_else(|err| {
            tracing::error!(journal = spec.name.as_str(), error = %err, "unreadable revisions: the journal gets the registry revision");
            None
        });
        found.push(Found {
            spec,
            dir,
            recovered,
            revisions,
        });
    }
    Ok(Opened {
        lock: dir_lock,
        revision: stored,
        journals: found,
    })
}

#[async_trait]
impl JournalClient for Broker {
    async fn list(&self, selector: &LabelSelector) -> Result<Vec<JournalSpec>, BrokerError> {
        let listing = self.list_journals(selector)?;
        Ok(listing.journals.into_iter().map(|j| j.spec).collect())
    }

    async fn apply(&self, changes: Vec<JournalChange>) -> Result<(), BrokerError> {
        let changes = changes
            .into_iter()
            .map(|change| (change, ExpectRevision::Any))
            .collect();
        match self.inner.apply(changes).await? {
            ApplyOutcome::Applied { .. } => Ok(()),
            // `Any` admits every revision; kept total rather than assumed.
            ApplyOutcome::RevisionMismatch { journal, .. } => Err(BrokerError::InvalidArgument(
                format!("journal {journal} changed its revision during the Apply"),
            )),
        }
    }

    async fn append(&self, request: AppendRequest) -> Result<AppendResponse, BrokerError> {
        let journal = self.inner.journal(&request.journal)?;
        let max = self.inner.config.max_append_size;
        if request.content.len() > max {
            return Err(BrokerError::LimitExceeded(format!(
                "append of {} bytes to {} exceeds the {max}-byte limit",
                request.content.len(),
                request.journal
            )));
        }
        if request.content.is_empty()
            && !(request.union_registers.is_empty() && request.subtract_registers.is_empty())
        {
            return Err(BrokerError::InvalidArgument(
                "registers may change only with an append of at least one byte".into(),
            ));
        }
        if let Some(offset) = request.expect_offset
            && offset < 0
        {
            return Err(BrokerError::InvalidArgument(format!(
                "expect_offset {offset} is negative"
            )));
        }
        request.union_registers.validate()?;
        request.subtract_registers.validate()?;
        if let Some(selector) = &request.check_registers {
            selector.validate()?;
        }
        let (reply, response) = oneshot::channel();
        let name = request.journal.clone();
        journal
            .appends
            .send(AppendOp { request, reply })
            .await
            .map_err(|_| BrokerError::Unavailable(format!("journal {name} stopped")))?;
        drop(journal);
        response
            .await
            .map_err(|_| BrokerError::Unavailable(format!("journal {name} stopped")))?
    }

    async fn read(&self, request: ReadRequest) -> Result<Box<dyn ReadStream>, BrokerError> {
        let journal = self.inner.journal(&request.journal)?;
        let shared = journal.shared.clone();
        drop(journal);
        if !read(&shared.spec).may_read() {
            return Err(BrokerError::NotAllowed {
                journal: request.journal.clone(),
                reason: "the journal is write-only (flags O_WRONLY): reads are refused".into(),
            });
        }
        if request.offset < -1 || request.end_offset < 0 {
            return Err(BrokerError::InvalidArgument(format!(
                "offset {} / end_offset {} out of range",
                request.offset, request.end_offset
            )));
        }
        let offset = match request.offset {
            -1 => shared.committed().head,
            offset => offset,
        };
        if request.end_offset != 0 && request.end_offset < offset {
            return Err(BrokerError::InvalidArgument(format!(
                "end_offset {} is before offset {offset}",
                request.end_offset
            )));
        }
        let chunk = self.inner.config.read_chunk_size.max(1);
        Ok(Box::new(JournalReader::new(
            shared,
            offset,
            request.end_offset,
            request.block,
            chunk,
        )))
    }
}

#[cfg(test)]
mod test {
    use std::time::Duration;

    use bytes::Bytes;
    use futures::future::join_all;

    use super::*;
    use crate::broker::layout::journal_dir;
    use crate::broker::sim::{CrashMode, SimBackend};

    const ROOT: &str = "/data";

    fn config(disk: &SimBackend) -> BrokerConfig {
        BrokerConfig {
            fragment_length: 1 << 20,
            ..BrokerConfig::with_backend(Arc::new(disk.clone()))
        }
    }

    async fn open(disk: &SimBackend) -> Broker {
        Broker::open(ROOT, config(disk)).await.expect("open")
    }

    #[tokio::test]
    async fn a_lock_released_during_the_wait_is_taken() {
        let disk = SimBackend::new();
        // A lock that outlives its broker by a moment, as a descriptor
        // inherited by a forked child does until the child execs.
        let lingering = disk.lock_dir(Path::new(ROOT)).expect("lock");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(lingering);
        });
        let broker = Broker::open(ROOT, config(&disk)).await.expect("open");
        release.join().expect("release");
        create(&broker, JournalSpec::new("a/bcd")).await;
    }

    async fn create(broker: &Broker, spec: JournalSpec) {
        broker
            .apply(vec![JournalChange::Upsert(spec)])
            .await
            .expect("create");
    }

    fn request(journal: &str, content: &str) -> AppendRequest {
        AppendRequest {
            journal: journal.into(),
            content: Bytes::copy_from_slice(content.as_bytes()),
            ..Default::default()
        }
    }

    async fn append(broker: &Broker, journal: &str, content: &str) -> AppendResponse {
        broker
            .append(request(journal, content))
            .await
            .expect("append")
    }

    fn labels(s: &str) -> LabelSet {
        s.parse().expect("labels")
    }

    /// A non-blocking read from `offset` to its end or first error.
    async fn read_from(
        broker: &Broker,
        journal: &str,
        offset: i64,
    ) -> (Vec<u8>, Option<BrokerError>) {
        let request = ReadRequest {
            journal: journal.into(),
            offset,
            ..Default::default()
        };
        let mut stream = broker.read(request).await.expect("open read");
        let mut out = Vec::new();
        loop {
            match stream.next().await {
                Ok(Some(chunk)) => {
                    assert_eq!(
                        chunk.offset,
                        offset + out.len() as i64,
                        "chunks are contiguous"
                    );
                    assert!(!chunk.content.is_empty());
                    out.extend_from_slice(&chunk.content);
                }
                Ok(None) => return (out, None),
                Err(err) => return (out, Some(err)),
            }
        }
    }

    async fn read_ok(broker: &Broker, journal: &str, offset: i64) -> Vec<u8> {
        let (content, err) = read_from(broker, journal, offset).await;
        assert!(
            err.is_none(),
            "read of {journal} from {offset} failed: {err:?}"
        );
        content
    }

    fn fragment_files(disk: &SimBackend, journal: &str, suffix: &str) -> Vec<PathBuf> {
        let dir = journal_dir(Path::new(ROOT), journal);
        let mut files: Vec<PathBuf> = disk
            .files()
            .into_iter()
            .filter(|p| p.parent() == Some(dir.as_path()))
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .collect();
        files.sort();
        files
    }

    #[tokio::test]
    async fn appends_get_contiguous_ranges_that_reads_return() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        create(&broker, JournalSpec::new("test/basic")).await;
        let mut got = Vec::new();
        for content in ["a", "bb", "ccc"] {
            let response = append(&broker, "test/basic", content).await;
            got.push((response.begin, response.end));
        }
        assert_eq!(got, [(0, 1), (1, 3), (3, 6)]);
        assert_eq!(broker.write_head("test/basic").expect("head"), 6);
        assert_eq!(read_ok(&broker, "test/basic", 0).await, b"abbccc");
        assert_eq!(read_ok(&broker, "test/basic", 2).await, b"bccc");
        assert_eq!(read_ok(&broker, "test/basic", -1).await, b"");
        let missing = broker.append(request("test/missing", "x")).await;
        assert!(matches!(missing, Err(BrokerError::JournalNotFound(j)) if j == "test/missing"));
    }

    #[tokio::test]
    async fn a_zero_byte_append_is_a_barrier_at_the_write_head() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        create(&broker, JournalSpec::new("test/barrier")).await;
        append(&broker, "test/barrier", "hello").await;
        let barrier = append(&broker, "test/barrier", "").await;
        assert_eq!((barrier.begin, barrier.end), (5, 5));
        let changes_registers = AppendRequest {
            union_registers: labels("owner=me"),
            ..request("test/barrier", "")
        };
        assert!(matches!(
            broker.append(changes_registers).await,
            Err(BrokerError::InvalidArgument(_))
        ));
        assert!(
            broker
                .registers("test/barrier")
                .expect("registers")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn expect_offset_must_equal_the_write_head() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        create(&broker, JournalSpec::new("test/offset")).await;
        append(&broker, "test/offset", "abc").await;
        let wrong = AppendRequest {
            expect_offset: Some(2),
            ..request("test/offset", "x")
        };
        match broker.append(wrong).await {
            Err(BrokerError::WrongAppendOffset {
                expected: 2,
                write_head: 3,
                ..
            }) => {}
            other => panic!("expected WrongAppendOffset, got {other:?}"),
        }
        let right = AppendRequest {
            expect_offset: Some(3),
            ..request("test/offset", "x")
        };
        let response = broker.append(right).await.expect("append at the head");
        assert_eq!((response.begin, response.end), (3, 4));
    }

    #[tokio::test]
    async fn registers_are_checked_and_updated_with_appends_and_survive_a_restart() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        let journal = "test/registers";
        create(&broker, JournalSpec::new(journal)).await;
        let fence = |author: &str| -> LabelSelector {
            format!("author={author}").parse().expect("selector")
        };
        // An empty register set matches any selector.
        let first = AppendRequest {
            check_registers: Some(fence("zombie")),
            union_registers: labels("author=a,cookie=1"),
            ..request(journal, "one")
        };
        let response = broker.append(first).await.expect("first append");
        assert_eq!(response.registers, labels("author=a,cookie=1"));
        let zombie = AppendRequest {
            check_registers: Some(fence("zombie")),
            ..request(journal, "two")
        };
        match broker.append(zombie).await {
            Err(BrokerError::RegisterMismatch { registers, .. }) => {
                assert_eq!(registers, labels("author=a,cookie=1"));
            }
            other => panic!("expected RegisterMismatch, got {other:?}"),
        }
        assert_eq!(
            broker.write_head(journal).expect("head"),
            3,
            "a refused append writes nothing"
        );
        let handoff = AppendRequest {
            check_registers: Some(fence("a")),
            subtract_registers: labels("cookie=1"),
            union_registers: labels("author=b"),
            ..request(journal, "three")
        };
        let response = broker.append(handoff).await.expect("hand-off");
        assert_eq!(response.registers, labels("author=b"));

        broker.shutdown().await;
        drop(broker);
        let reopened = open(&disk).await;
        assert_eq!(
            reopened.registers(journal).expect("registers"),
            labels("author=b")
        );
        let stale = AppendRequest {
            check_registers: Some(fence("a")),
            ..request(journal, "x")
        };
        assert!(matches!(
            reopened.append(stale).await,
            Err(BrokerError::RegisterMismatch { .. })
        ));
    }

    #[tokio::test]
    async fn concurrent_appends_share_fsyncs() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        create(&broker, JournalSpec::new("test/group")).await;
        append(&broker, "test/group", "warm-up").await;
        let before = disk.stats().data_syncs;
        let appends = (0..200).map(|i| broker.append(request("test/group", &format!("{i:03}\n"))));
        let mut ranges: Vec<(i64, i64)> = join_all(appends)
            .await
            .into_iter()
            .map(|r| r.map(|r| (r.begin, r.end)).expect("append"))
            .collect();
        let syncs = disk.stats().data_syncs - before;
        ranges.sort();
        let mut head = 7;
        for (begin, end) in ranges {
            assert_eq!(
                (begin, end),
                (head, head + 4),
                "ranges are disjoint and contiguous"
            );
            head = end;
        }
        assert!(syncs <= 10, "200 queued appends took {syncs} fsyncs");
        let (content, _) = read_from(&broker, "test/group", 7).await;
        let mut lines: Vec<&[u8]> = content
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        lines.sort();
        assert_eq!(lines.len(), 200);
        assert!(
            lines
                .iter()
                .enumerate()
                .all(|(i, l)| *l == format!("{i:03}").as_bytes())
        );
    }

    #[tokio::test]
    async fn a_failed_fsync_stops_the_journal_and_is_never_retried() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        create(&broker, JournalSpec::new("test/fsync")).await;
        create(&broker, JournalSpec::new("test/other")).await;
        append(&broker, "test/fsync", "ok").await;
        append(&broker, "test/other", "ok").await;
        disk.fail_sync_after(0);
        let failed = broker.append(request("test/fsync", "lost")).await;
        assert!(matches!(failed, Err(BrokerError::Io { .. })), "{failed:?}");
        let syncs = disk.stats().data_syncs;
        disk.fail_sync_after(u64::MAX);
        let after = broker.append(request("test/fsync", "more")).await;
        assert!(matches!(after, Err(BrokerError::Io { .. })), "{after:?}");
        assert_eq!(disk.stats().data_syncs, syncs, "no fsync after the failure");
        assert_eq!(
            read_ok(&broker, "test/fsync", 0).await,
            b"ok",
            "committed bytes stay"
        );
        assert_eq!(append(&broker, "test/other", "fine").await.begin, 2);
    }

    #[tokio::test]
    async fn a_failed_write_is_undone_and_the_journal_carries_on() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        create(&broker, JournalSpec::new("test/full")).await;
        append(&broker, "test/full", "a").await;
        let tail = ReadRequest {
            journal: "test/full".into(),
            block: true,
            ..Default::default()
        };
        let mut tail = broker.read(tail).await.expect("read");
        assert_eq!(
            tail.next()
                .await
                .expect("chunk")
                .expect("some")
                .content
                .as_ref(),
            b"a"
        );

        disk.fail_appends(true);
        let failed = broker.append(request("test/full", "bbbb")).await;
        assert!(matches!(failed, Err(BrokerError::Io { .. })), "{failed:?}");
        disk.fail_appends(false);
        let next = append(&broker, "test/full", "c").await;
        assert_eq!(
            (next.begin, next.end),
            (1, 2),
            "nothing of the failed append remains"
        );
        let chunk = tail.next().await.expect("chunk").expect("some");
        assert_eq!((chunk.offset, chunk.content.as_ref()), (1, b"c".as_ref()));
        assert_eq!(
            fragment_files(&disk, "test/full", ".frag").len(),
            1,
            "the spool was closed"
        );

        let reopened = open(&disk.crash(CrashMode::DropUnsynced)).await;
        assert_eq!(read_ok(&reopened, "test/full", 0).await, b"ac");
    }

    #[tokio::test]
    async fn a_spool_created_by_a_failed_write_is_made_durable_before_its_first_ack() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        create(&broker, JournalSpec::new("test/entry")).await;
        disk.fail_appends(true);
        assert!(broker.append(request("test/entry", "lost")).await.is_err());
        disk.fail_appends(false);
        append(&broker, "test/entry", "kept").await;
        let reopened = open(&disk.crash(CrashMode::DropUnsynced)).await;
        assert_eq!(read_ok(&reopened, "test/entry", 0).await, b"kept");
    }

    #[tokio::test]
    async fn bytes_found_after_a_process_crash_are_made_durable_before_they_are_served() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        create(&broker, JournalSpec::new("test/restart")).await;
        append(&broker, "test/restart", "a").await;
        disk.fail_sync_after(0);
        assert!(broker.append(request("test/restart", "b")).await.is_err());
        broker.shutdown().await;
        drop(broker);
        disk.fail_sync_after(u64::MAX);

        // The process died, the page cache did not: "b" is there, unsynced.
        let restarted = open(&disk).await;
        assert_eq!(read_ok(&restarted, "test/restart", 0).await, b"ab");
        // A power loss must not take back what a reader was just served.
        let after_power_loss = open(&disk.crash(CrashMode::DropUnsynced)).await;
        assert_eq!(read_ok(&after_power_loss, "test/restart", 0).await, b"ab");
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_off_and_appends_continue() {
        for seed in 0..24 {
            let disk = SimBackend::new();
            let broker = open(&disk).await;
            create(&broker, JournalSpec::new("test/torn")).await;
            append(&broker, "test/torn", "ab").await;
            disk.fail_sync_after(0);
            let big = "c".repeat(3000);
            assert!(broker.append(request("test/torn", &big)).await.is_err());
            let spool = fragment_files(&disk, "test/torn", ".spool");
            assert!(
                disk.file_len(&spool[0]).expect("spool") > 3000,
                "the write reached the file"
            );

            let crashed = disk.crash(CrashMode::TearUnsynced { seed });
            let reopened = open(&crashed).await;
            let head = reopened
                .write_head("test/torn")
                .expect("healthy after a torn write");
            let (content, err) = read_from(&reopened, "test/torn", 0).await;
            assert!(err.is_none());
            // The unacknowledged append is gone or whole, never partial.
            match head {
                2 => assert_eq!(content, b"ab"),
                3002 => assert_eq!(content, format!("ab{big}").as_bytes()),
                other => panic!("head {other} after a torn write (seed {seed})"),
            }
            let next = append(&reopened, "test/torn", "d").await;
            assert_eq!(next.begin, head);
            assert_eq!(read_ok(&reopened, "test/torn", head).await, b"d");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledged_appends_survive_crashes_at_any_moment() {
        let journal = "test/crash";
        for seed in 0..6u64 {
            let disk = SimBackend::new();
            disk.set_sync_delay(Duration::from_micros(500));
            let broker = Broker::open(
                ROOT,
                BrokerConfig {
                    fragment_length: 4 << 10,
                    ..config(&disk)
                },
            )
            .await
            .expect("open");
            create(&broker, JournalSpec::new(journal)).await;
            let (acks, mut acked) = mpsc::unbounded_channel();
            let writers: Vec<_> = (0..8)
                .map(|w| {
                    let (broker, acks) = (broker.clone(), acks.clone());
                    tokio::spawn(async move {
                        for i in 0.. {
                            let text =
                                format!("w{w}-{i}:{}\n", "x".repeat((i * 37 + w * 11) % 300));
                            match broker.append(request(journal, &text)).await {
                                Ok(r) => {
                                    let _ = acks.send((r.begin, r.end, text));
                                }
                                // After the crash appends fail at once: yield,
                                // or `abort` (and the runtime's shutdown) never
                                // gets a chance to stop this loop.
                                Err(_) => tokio::task::yield_now().await,
                            }
                        }
                    })
                })
                .collect();
            let mut seen = Vec::new();
            while seen.len() < 40 + 20 * seed as usize {
                seen.push(acked.recv().await.expect("ack"));
            }
            // Everything acknowledged so far must survive this crash.
            let crashed = disk.crash(CrashMode::TearUnsynced { seed });
            for writer in &writers {
                writer.abort();
            }
            drop(broker);

            let reopened = open(&crashed).await;
            let (content, err) = read_from(&reopened, journal, 0).await;
            assert!(err.is_none(), "{err:?}");
            for (begin, end, text) in &seen {
                let stored = content.get(*begin as usize..*end as usize);
                assert_eq!(
                    stored,
                    Some(text.as_bytes()),
                    "acknowledged append lost (seed {seed})"
                );
            }
            // Nothing torn: the journal is whole appends only.
            let text = String::from_utf8(content.clone()).expect("utf-8");
            assert!(text.is_empty() || text.ends_with('\n'));
            for line in text.lines() {
                let (tag, pad) = line.split_once(':').expect("a whole append");
                assert!(
                    tag.starts_with('w') && pad.bytes().all(|b| b == b'x'),
                    "{line}"
                );
            }
            let next = append(&reopened, journal, "after\n").await;
            assert_eq!(next.begin, content.len() as i64);
        }
    }

    #[tokio::test]
    async fn a_blocking_read_waits_for_the_next_append() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        create(&broker, JournalSpec::new("test/tail")).await;
        append(&broker, "test/tail", "old").await;
        let tail = ReadRequest {
            journal: "test/tail".into(),
            offset: -1,
            block: true,
            end_offset: 0,
        };
        let mut stream = broker.read(tail).await.expect("read");
        let reader = tokio::spawn(async move { stream.next().await });
        append(&broker, "test/tail", "new").await;
        let chunk = reader
            .await
            .expect("reader task")
            .expect("read")
            .expect("a chunk");
        assert_eq!((chunk.offset, chunk.content.as_ref()), (3, b"new".as_ref()));
    }

    #[tokio::test]
    async fn dropping_the_last_handle_ends_blocked_reads() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        create(&broker, JournalSpec::new("test/dropped")).await;
        let tail = ReadRequest {
            journal: "test/dropped".into(),
            block: true,
            ..Default::default()
        };
        let mut stream = broker.read(tail).await.expect("read");
        let reader = tokio::spawn(async move { stream.next().await });
        drop(broker);
        assert!(matches!(
            reader.await.expect("task"),
            Err(BrokerError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn end_offsets_bound_reads_and_early_ends_are_not_yet_available() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        create(&broker, JournalSpec::new("test/end")).await;
        append(&broker, "test/end", "abcdef").await;
        let bounded = |offset, end_offset, block| ReadRequest {
            journal: "test/end".into(),
            offset,
            block,
            end_offset,
        };
        let mut stream = broker.read(bounded(1, 4, false)).await.expect("read");
        let chunk = stream.next().await.expect("chunk").expect("some");
        assert_eq!((chunk.offset, chunk.content.as_ref()), (1, b"bcd".as_ref()));
        assert!(stream.next().await.expect("end").is_none());

        let mut early = broker.read(bounded(4, 10, false)).await.expect("read");
        assert_eq!(
            early
                .next()
                .await
                .expect("chunk")
                .expect("some")
                .content
                .as_ref(),
            b"ef"
        );
        assert!(matches!(
            early.next().await,
            Err(BrokerError::OffsetNotYetAvailable { offset: 6, .. })
        ));

        let mut waiting = broker.read(bounded(6, 8, true)).await.expect("read");
        let reader = tokio::spawn(async move {
            let chunk = waiting.next().await;
            (chunk, waiting.next().await)
        });
        append(&broker, "test/end", "ghij").await;
        let (chunk, end) = reader.await.expect("task");
        assert_eq!(chunk.expect("chunk").expect("some").content.as_ref(), b"gh");
        assert!(end.expect("end").is_none());

        for (offset, end_offset) in [(-2, 0), (0, -1), (5, 3)] {
            assert!(matches!(
                broker.read(bounded(offset, end_offset, false)).await,
                Err(BrokerError::InvalidArgument(_))
            ));
        }
    }

    #[tokio::test]
    async fn reads_come_in_bounded_chunks_across_fragments() {
        let disk = SimBackend::new();
        let config = BrokerConfig {
            read_chunk_size: 100,
            fragment_length: 1000,
            ..config(&disk)
        };
        let broker = Broker::open(ROOT, config).await.expect("open");
        create(&broker, JournalSpec::new("test/chunks")).await;
        let mut expected = Vec::new();
        for i in 0..60 {
            let content = format!("{i:02}").repeat(i + 1);
            append(&broker, "test/chunks", &content).await;
            expected.extend_from_slice(content.as_bytes());
        }
        let closed = fragment_files(&disk, "test/chunks", ".frag");
        assert!(closed.len() >= 3, "the spool rolled: {closed:?}");
        let request = ReadRequest {
            journal: "test/chunks".into(),
            ..Default::default()
        };
        let mut stream = broker.read(request).await.expect("read");
        let mut got = Vec::new();
        while let Some(chunk) = stream.next().await.expect("chunk") {
            assert!(chunk.content.len() <= 100, "{} bytes", chunk.content.len());
            got.extend_from_slice(&chunk.content);
        }
        assert_eq!(got, expected);
        for from in [0, 999, 1000, 1001, 2345] {
            assert_eq!(
                read_ok(&broker, "test/chunks", from).await,
                &expected[from as usize..]
            );
        }
    }

    #[tokio::test]
    async fn appends_larger_than_a_record_read_back_whole() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        create(&broker, JournalSpec::new("test/large")).await;
        let content: String = (0..2_500_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let response = append(&broker, "test/large", &content).await;
        assert_eq!(response.end, 2_500_000);
        assert_eq!(
            read_ok(&broker, "test/large", 1_234_567).await,
            &content.as_bytes()[1_234_567..]
        );
        let small = BrokerConfig {
            max_append_size: 10,
            ..config(&disk)
        };
        broker.shutdown().await;
        drop(broker);
        let limited = Broker::open(ROOT, small).await.expect("reopen");
        assert_eq!(limited.write_head("test/large").expect("head"), 2_500_000);
        assert!(matches!(
            limited.append(request("test/large", "more than ten")).await,
            Err(BrokerError::LimitExceeded(_))
        ));
    }

    #[tokio::test]
    async fn damage_at_rest_is_reported_with_journal_and_offset_and_never_served() {
        let disk = SimBackend::new();
        let config = BrokerConfig {
            fragment_length: 64,
            ..config(&disk)
        };
        let broker = Broker::open(ROOT, config.clone()).await.expect("open");
        create(&broker, JournalSpec::new("test/damaged")).await;
        create(&broker, JournalSpec::new("test/healthy")).await;
        let mut begins = Vec::new();
        for i in 0..20 {
            begins.push(
                append(&broker, "test/damaged", &format!("record {i:02}\n"))
                    .await
                    .begin,
            );
        }
        append(&broker, "test/healthy", "fine").await;
        broker.shutdown().await;
        drop(broker);

        // Flip a content byte of the second record of the second closed fragment.
        let closed = fragment_files(&disk, "test/damaged", ".frag");
        assert!(closed.len() >= 2, "{closed:?}");
        let record_len = (crate::broker::record::HEADER_LEN + 10) as u64;
        disk.corrupt(
            &closed[1],
            record_len + crate::broker::record::HEADER_LEN as u64 + 3,
        )
        .expect("corrupt");
        let name = closed[1]
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name");
        let begin = i64::from_str_radix(&name[..16], 16).expect("hex");
        let damaged_at = begin + 10;
        assert!(begins.contains(&damaged_at));

        let reopened = Broker::open(ROOT, config)
            .await
            .expect("open succeeds despite damage");
        match reopened.write_head("test/damaged") {
            Err(BrokerError::Corrupt {
                journal, offset, ..
            }) => {
                assert_eq!((journal.as_str(), offset), ("test/damaged", damaged_at));
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let (served, err) = read_from(&reopened, "test/damaged", 0).await;
        assert_eq!(
            served.len() as i64,
            damaged_at,
            "everything below the damage is served"
        );
        assert!(matches!(err, Some(BrokerError::Corrupt { offset, .. }) if offset == damaged_at));
        assert!(matches!(
            reopened.append(request("test/damaged", "x")).await,
            Err(BrokerError::Corrupt { .. })
        ));
        assert_eq!(read_ok(&reopened, "test/healthy", 0).await, b"fine");
        assert_eq!(append(&reopened, "test/healthy", "!").await.begin, 4);
    }

    #[tokio::test]
    async fn damage_inside_the_spool_or_a_cut_closed_fragment_is_corruption() {
        for case in ["spool byte", "closed cut"] {
            let disk = SimBackend::new();
            let config = BrokerConfig {
                fragment_length: 200,
                ..config(&disk)
            };
            let broker = Broker::open(ROOT, config.clone()).await.expect("open");
            create(&broker, JournalSpec::new("test/cases")).await;
            for i in 0..12 {
                append(&broker, "test/cases", &format!("entry {i:02}\n")).await;
            }
            broker.shutdown().await;
            drop(broker);
            let header = crate::broker::record::HEADER_LEN as u64;
            let record = header + 9;
            match case {
                "spool byte" => {
                    let spool = &fragment_files(&disk, "test/cases", ".spool")[0];
                    assert!(disk.file_len(spool).expect("len") >= 2 * record);
                    disk.corrupt(spool, header + 2).expect("corrupt");
                }
                _ => {
                    let closed = &fragment_files(&disk, "test/cases", ".frag")[0];
                    disk.cut(closed, disk.file_len(closed).expect("len") - 5)
                        .expect("cut");
                }
            }
            let reopened = Broker::open(ROOT, config).await.expect("open");
            assert!(
                matches!(
                    reopened.write_head("test/cases"),
                    Err(BrokerError::Corrupt { .. })
                ),
                "{case}"
            );
        }
    }

    #[tokio::test]
    async fn checksums_are_verified_on_every_read() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        create(&broker, JournalSpec::new("test/verify")).await;
        append(&broker, "test/verify", "first").await;
        let second = append(&broker, "test/verify", "second").await;
        let spool = &fragment_files(&disk, "test/verify", ".spool")[0];
        let header = crate::broker::record::HEADER_LEN as u64;
        disk.corrupt(spool, header + 5 + header + 1)
            .expect("corrupt");
        let (served, err) = read_from(&broker, "test/verify", 0).await;
        assert_eq!(served, b"first");
        match err {
            Some(BrokerError::Corrupt {
                journal, offset, ..
            }) => {
                assert_eq!((journal.as_str(), offset), ("test/verify", second.begin));
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn list_selects_by_labels_name_and_prefix_in_name_order() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        let chunk = labels("app.gazette.dev/message-type=stream_sum.Chunk");
        broker
            .apply(vec![
                JournalChange::Upsert(JournalSpec::new("sums/all").with_labels(labels("kind=sum"))),
                JournalChange::Upsert(
                    JournalSpec::new("chunks/part-001").with_labels(chunk.clone()),
                ),
                JournalChange::Upsert(JournalSpec::new("chunks/part-000").with_labels(chunk)),
            ])
            .await
            .expect("apply");
        let names = |specs: Vec<JournalSpec>| specs.into_iter().map(|s| s.name).collect::<Vec<_>>();
        let list = |s: &'static str| {
            let broker = broker.clone();
            async move {
                names(
                    broker
                        .list(&s.parse().expect("selector"))
                        .await
                        .expect("list"),
                )
            }
        };
        assert_eq!(
            list("").await,
            ["chunks/part-000", "chunks/part-001", "sums/all"]
        );
        assert_eq!(
            list("app.gazette.dev/message-type=stream_sum.Chunk").await,
            ["chunks/part-000", "chunks/part-001"]
        );
        assert_eq!(
            list("prefix=chunks/").await,
            ["chunks/part-000", "chunks/part-001"]
        );
        assert_eq!(list("name=sums/all").await, ["sums/all"]);
        assert_eq!(list("!kind").await, ["chunks/part-000", "chunks/part-001"]);
        let unterminated = LabelSelector {
            include: labels("prefix=chunks"),
            ..Default::default()
        };
        assert!(matches!(
            broker.list(&unterminated).await,
            Err(BrokerError::InvalidArgument(_))
        ));

        let relabeled = JournalSpec::new("sums/all").with_labels(labels("kind=total"));
        broker
            .apply(vec![JournalChange::Upsert(relabeled)])
            .await
            .expect("update");
        assert_eq!(list("kind=total").await, ["sums/all"]);
        broker.shutdown().await;
        drop(broker);
        let reopened = open(&disk).await;
        let specs = reopened
            .list(&"kind=total".parse().expect("selector"))
            .await
            .expect("list");
        assert_eq!(names(specs), ["sums/all"]);
    }

    #[tokio::test]
    async fn apply_validates_everything_before_changing_anything() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        let bad = JournalSpec {
            replication: 9,
            ..JournalSpec::new("test/bad")
        };
        let result = broker
            .apply(vec![
                JournalChange::Upsert(JournalSpec::new("test/good")),
                JournalChange::Upsert(bad),
            ])
            .await;
        assert!(matches!(result, Err(BrokerError::InvalidArgument(_))));
        let missing = broker
            .apply(vec![JournalChange::Delete("test/none".into())])
            .await;
        assert!(matches!(missing, Err(BrokerError::JournalNotFound(_))));
        let twice = broker
            .apply(vec![
                JournalChange::Upsert(JournalSpec::new("test/twice")),
                JournalChange::Upsert(JournalSpec::new("test/twice")),
            ])
            .await;
        assert!(matches!(twice, Err(BrokerError::InvalidArgument(_))));
        assert!(
            broker
                .list(&LabelSelector::all())
                .await
                .expect("list")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn deleting_a_journal_ends_its_readers_and_removes_its_files() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        create(&broker, JournalSpec::new("test/doomed")).await;
        append(&broker, "test/doomed", "bytes").await;
        let tail = ReadRequest {
            journal: "test/doomed".into(),
            offset: -1,
            block: true,
            end_offset: 0,
        };
        let mut stream = broker.read(tail).await.expect("read");
        let reader = tokio::spawn(async move { stream.next().await });
        broker
            .apply(vec![JournalChange::Delete("test/doomed".into())])
            .await
            .expect("delete");
        assert!(matches!(
            reader.await.expect("task"),
            Err(BrokerError::JournalNotFound(_))
        ));
        assert!(matches!(
            broker.append(request("test/doomed", "x")).await,
            Err(BrokerError::JournalNotFound(_))
        ));
        assert!(fragment_files(&disk, "test/doomed", "").is_empty());
        create(&broker, JournalSpec::new("test/doomed")).await;
        assert_eq!(
            broker.write_head("test/doomed").expect("head"),
            0,
            "a new journal starts empty"
        );
    }

    #[tokio::test]
    async fn an_interrupted_apply_completes_on_open() {
        let disk = SimBackend::new();
        disk.create_dir_all(Path::new(ROOT)).expect("mkdir");
        let changes = [Change::Upsert(JournalSpec::new("test/redo"))];
        apply::record_pending(&disk, Path::new(ROOT), &changes).expect("record");
        let broker = open(&disk).await;
        assert_eq!(
            broker.write_head("test/redo").expect("created by the redo"),
            0
        );
    }

    #[tokio::test]
    async fn flags_forbid_appends_to_read_only_and_reads_of_write_only_journals() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        create(
            &broker,
            JournalSpec {
                flags: crate::broker::spec::O_RDONLY,
                ..JournalSpec::new("test/ro")
            },
        )
        .await;
        create(
            &broker,
            JournalSpec {
                flags: crate::broker::spec::O_WRONLY,
                ..JournalSpec::new("test/wo")
            },
        )
        .await;
        assert!(matches!(
            broker.append(request("test/ro", "x")).await,
            Err(BrokerError::NotAllowed { .. })
        ));
        append(&broker, "test/wo", "x").await;
        let read = broker
            .read(ReadRequest {
                journal: "test/wo".into(),
                ..Default::default()
            })
            .await;
        assert!(matches!(read, Err(BrokerError::NotAllowed { .. })));
    }

    #[tokio::test]
    async fn one_data_directory_serves_one_broker_at_a_time() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        let impatient = BrokerConfig {
            lock_wait: Duration::from_millis(50),
            ..config(&disk)
        };
        let started = Instant::now();
        match Broker::open(ROOT, impatient).await {
            Err(BrokerError::Unavailable(why)) => {
                assert!(why.contains(ROOT) && why.contains("waited 50ms"), "{why}");
            }
            Err(err) => panic!("expected Unavailable, got {err}"),
            Ok(_) => panic!("two brokers opened one directory"),
        }
        assert!(started.elapsed() >= Duration::from_millis(50));
        broker.shutdown().await;
        assert!(matches!(
            broker.write_head("x/yz"),
            Err(BrokerError::Unavailable(_))
        ));
        let second = Broker::open(ROOT, config(&disk)).await;
        assert!(second.is_ok(), "shutdown releases the directory");
    }

    #[tokio::test]
    async fn applies_check_revisions_atomically_and_revisions_persist() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        let upsert = |name: &str, expect| (JournalChange::Upsert(JournalSpec::new(name)), expect);
        let revisions = |broker: &Broker| {
            let listing = broker.list_journals(&LabelSelector::all()).expect("list");
            let journals: Vec<(String, Revisions)> = listing
                .journals
                .into_iter()
                .map(|j| (j.spec.name, j.revisions))
                .collect();
            (listing.revision, journals)
        };
        let applied = |outcome| match outcome {
            ApplyOutcome::Applied { revision } => revision,
            other => panic!("expected Applied, got {other:?}"),
        };
        let r1 = applied(
            broker
                .apply_expecting(vec![upsert("test/a", ExpectRevision::Absent)])
                .await
                .expect("create"),
        );
        let at = |create, modify| Revisions { create, modify };
        assert_eq!(
            revisions(&broker),
            (r1, vec![("test/a".into(), at(r1, r1))])
        );

        let relabeled = JournalSpec::new("test/a").with_labels(labels("kind=x"));
        let r2 = applied(
            broker
                .apply_expecting(vec![
                    (JournalChange::Upsert(relabeled), ExpectRevision::Equal(r1)),
                    upsert("test/b", ExpectRevision::Absent),
                ])
                .await
                .expect("update"),
        );
        assert!(r2 > r1);
        let expected = vec![("test/a".into(), at(r1, r2)), ("test/b".into(), at(r2, r2))];
        assert_eq!(revisions(&broker), (r2, expected.clone()));

        // A stale expectation on one change refuses the whole Apply.
        let stale = broker
            .apply_expecting(vec![
                upsert("test/c", ExpectRevision::Absent),
                upsert("test/a", ExpectRevision::Equal(r1)),
            ])
            .await
            .expect("refused, not failed");
        assert_eq!(
            stale,
            ApplyOutcome::RevisionMismatch {
                journal: "test/a".into(),
                expected: ExpectRevision::Equal(r1),
                actual: Some(r2),
            }
        );
        let exists = broker
            .apply_expecting(vec![upsert("test/b", ExpectRevision::Absent)])
            .await
            .expect("refused");
        assert!(matches!(
            exists,
            ApplyOutcome::RevisionMismatch {
                actual: Some(_),
                ..
            }
        ));
        let missing = broker
            .apply_expecting(vec![(
                JournalChange::Delete("test/zz".into()),
                ExpectRevision::Equal(r2),
            )])
            .await
            .expect("refused");
        assert!(matches!(
            missing,
            ApplyOutcome::RevisionMismatch { actual: None, .. }
        ));
        assert_eq!(revisions(&broker), (r2, expected.clone()));

        broker.shutdown().await;
        drop(broker);
        let reopened = open(&disk).await;
        assert_eq!(
            revisions(&reopened),
            (r2, expected),
            "revisions survive a restart"
        );
        let r3 = applied(
            reopened
                .apply_expecting(vec![(
                    JournalChange::Delete("test/b".into()),
                    ExpectRevision::Equal(r2),
                )])
                .await
                .expect("delete"),
        );
        assert!(r3 > r2);
        assert_eq!(
            revisions(&reopened),
            (r3, vec![("test/a".into(), at(r1, r2))])
        );
    }

    #[tokio::test]
    async fn registry_watchers_wake_on_every_apply_and_at_shutdown() {
        let disk = SimBackend::new();
        let broker = open(&disk).await;
        let mut changes = broker.watch_registry();
        let before = *changes.borrow_and_update();
        create(&broker, JournalSpec::new("test/watched")).await;
        tokio::time::timeout(Duration::from_secs(5), changes.changed())
            .await
            .expect("woken")
            .expect("sender alive");
        assert_eq!(*changes.borrow_and_update(), before + 1);
        broker.shutdown().await;
        tokio::time::timeout(Duration::from_secs(5), changes.changed())
            .await
            .expect("woken at shutdown")
            .expect("sender alive");
        assert!(matches!(
            broker.list_journals(&LabelSelector::all()),
            Err(BrokerError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn fragments_and_read_positions_describe_the_index() {
        let disk = SimBackend::new();
        let config = BrokerConfig {
            fragment_length: 1024,
            ..config(&disk)
        };
        let broker = Broker::open(ROOT, config).await.expect("open");
        create(&broker, JournalSpec::new("test/index")).await;
        for i in 0..40 {
            append(&broker, "test/index", &format!("{i:03}").repeat(30)).await;
        }
        let head = broker.write_head("test/index").expect("head");
        let fragments = broker.fragments("test/index").await.expect("fragments");
        assert!(fragments.len() >= 3, "{fragments:?}");
        assert_eq!(fragments.first().map(|f| f.begin), Some(0));
        assert_eq!(fragments.last().map(|f| f.end), Some(head));
        for pair in fragments.windows(2) {
            assert_eq!(pair[0].end, pair[1].begin, "contiguous");
        }
        assert!(fragments.iter().all(|f| f.mod_time.is_some()));
        let second = &fragments[1];
        let position = broker
            .read_position("test/index", second.begin + 1)
            .expect("position");
        assert_eq!(position.write_head, head);
        assert_eq!(position.fragment, Some(second.begin..second.end));
        assert_eq!(
            broker
                .read_position("test/index", head)
                .expect("at head")
                .fragment,
            None
        );
        assert!(matches!(
            broker.fragments("test/none").await,
            Err(BrokerError::JournalNotFound(_))
        ));
    }
}
