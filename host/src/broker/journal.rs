//! One journal's shared state, and its recovery from disk on open.
//!
//! [`JournalShared`] is what appenders, readers and the journal's writer task
//! share: the spec, the read index of fragments, the committed registers and
//! a `watch` of the committed write head and health. The writer is the only
//! one that changes the index, registers and head, and it publishes a new
//! head only after the bytes below it are durable, so a reader that sees a
//! head may read everything below it.
//!
//! [`recover`] rebuilds that state from a journal directory: it scans every
//! fragment (verifying every record), cuts a torn tail off the spool, and
//! leaves a journal whose durable bytes are damaged in the
//! [`Health::Corrupt`] state, readable below the damage and refusing
//! everything else.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use tokio::sync::watch;

use super::backend::Backend;
use super::fragment::{self, Damage, Fragment};
use super::layout::FragmentFile;
use super::protocol::BrokerError;
use super::spec::{JournalSpec, LabelSet};
use super::writer::Spool;

/// A journal's health as appenders and readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Health {
    /// Serving appends and reads.
    Healthy,
    /// Durable bytes are damaged from `offset` on: reads below it work; reads
    /// at or after it, and appends, fail.
    Corrupt { offset: i64, reason: String },
    /// A write or fsync failed: appends fail (an fsync is never retried);
    /// committed bytes stay readable.
    Failed { kind: io::ErrorKind, reason: String },
    /// The journal was deleted.
    Deleted,
    /// The broker shut down.
    ShutDown,
}

/// The committed write head and the health, published together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Committed {
    /// Offset one past the last durable, acknowledged byte.
    pub head: i64,
    /// See [`Health`].
    pub health: Health,
}

impl Committed {
    /// The error an append or a read at the head gets from an unhealthy
    /// journal, if any.
    pub fn error(&self, journal: &str) -> Option<BrokerError> {
        match &self.health {
            Health::Healthy => None,
            Health::Corrupt { offset, reason } => Some(BrokerError::Corrupt {
                journal: journal.to_string(),
                offset: *offset,
                reason: reason.clone(),
            }),
            Health::Failed { kind, reason } => Some(BrokerError::Io {
                context: format!("journal {journal} stopped after a failed write"),
                source: io::Error::new(*kind, reason.clone()),
            }),
            Health::Deleted => Some(BrokerError::JournalNotFound(journal.to_string())),
            Health::ShutDown => Some(BrokerError::Unavailable("the broker shut down".into())),
        }
    }
}

/// State shared by a journal's appenders, readers and writer.
#[derive(Debug)]
pub(crate) struct JournalShared {
    pub name: String,
    pub dir: PathBuf,
    pub spec: RwLock<JournalSpec>,
    pub committed: watch::Sender<Committed>,
    pub fragments: RwLock<Vec<Fragment>>,
    pub registers: Mutex<LabelSet>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl JournalShared {
    /// Shared state for `spec`, from what [`recover`] found.
    pub fn new(spec: JournalSpec, dir: PathBuf, recovered: &mut Recovered) -> Self {
        JournalShared {
            name: spec.name.clone(),
            dir,
            spec: RwLock::new(spec),
            committed: watch::Sender::new(Committed {
                head: recovered.head,
                health: recovered.health.clone(),
            }),
            fragments: RwLock::new(std::mem::take(&mut recovered.fragments)),
            registers: Mutex::new(recovered.registers.clone()),
        }
    }

    /// The committed head and health now.
    pub fn committed(&self) -> Committed {
        self.committed.borrow().clone()
    }

    /// Changes the health (waking blocked readers), unless the journal
    /// already stopped for another reason.
    pub fn set_health(&self, health: Health) {
        self.committed.send_if_modified(|committed| {
            let replace = match (&committed.health, &health) {
                (Health::Healthy, _) => true,
                // Deletion and shutdown end every other state.
                (_, Health::Deleted | Health::ShutDown) => committed.health != health,
                _ => false,
            };
            if replace {
                committed.health = health;
            }
            replace
        });
    }

    /// The fragment holding `offset`, with only the read mark for it.
    pub fn locate(&self, offset: i64) -> Option<Fragment> {
        let fragments = read(&self.fragments);
        let index = fragments
            .partition_point(|f| f.begin <= offset)
            .checked_sub(1)?;
        let fragment = fragments.get(index)?;
        (offset < fragment.end).then(|| Fragment {
            begin: fragment.begin,
            end: fragment.end,
            file: fragment.file.clone(),
            marks: vec![fragment.mark_for(offset)],
        })
    }
}

/// A journal as found on disk.
pub(crate) struct Recovered {
    /// The readable fragments, in order.
    pub fragments: Vec<Fragment>,
    /// The committed write head (for a corrupt journal, where damage begins).
    pub head: i64,
    /// The registers of the last append that set them.
    pub registers: LabelSet,
    /// The spool to keep appending to, if the last fragment is one.
    pub spool: Option<Spool>,
    /// Healthy, or corrupt.
    pub health: Health,
}

impl Recovered {
    /// A new, empty journal.
    pub fn empty() -> Self {
        Recovered {
            fragments: Vec::new(),
            head: 0,
            registers: LabelSet::new(),
            spool: None,
            health: Health::Healthy,
        }
    }
}

/// Rebuilds journal `name` from its directory `dir` (see the
/// [module docs](self)).
pub(crate) fn recover(backend: &dyn Backend, dir: &Path, name: &str) -> io::Result<Recovered> {
    let mut files = Vec::new();
    for file_name in backend.list_dir(dir)? {
        if let Some(file) = FragmentFile::parse(&file_name) {
            files.push(file);
        } else if file_name.ends_with(".tmp") {
            // A temporary file of an interrupted atomic write: never visible.
            backend.remove_file(&dir.join(&file_name))?;
        }
    }
    files.sort();
    let mut recovered = Recovered::empty();
    let mut expected: Option<i64> = None;
    let last = files.len().checked_sub(1);
    for (index, file) in files.iter().enumerate() {
        let path = dir.join(file.file_name());
        let begin = file.begin();
        if let Some(expected) = expected
            && begin != expected
        {
            recovered.health = Health::Corrupt {
                offset: expected,
                reason: format!(
                    "no fragment starts at {expected} (next is {})",
                    file.file_name()
                ),
            };
            break;
        }
        let reader = backend.open_read(&path)?;
        let scan = fragment::scan(reader.clone(), begin)?;
        let mut damage = match (&scan.damage, file) {
            (None, FragmentFile::Closed { end, .. }) if scan.end != *end => Some((
                scan.end,
                format!("{} holds bytes up to {} only", file.file_name(), scan.end),
            )),
            (None, _) => None,
            (Some(Damage::Corrupt { offset, reason }), _) => Some((*offset, reason.clone())),
            (Some(Damage::Torn { reason }), FragmentFile::Spool { .. }) if Some(index) == last => {
                let dropped = reader.size()? - scan.valid_len;
                tracing::warn!(
                    journal = name,
                    file = %path.display(),
                    dropped,
                    reason = reason.as_str(),
                    "cutting a torn tail (an append that was never acknowledged)"
                );
                let mut spool = backend.open_append(&path)?;
                spool.truncate(scan.valid_len)?;
                spool.sync_data()?;
                None
            }
            // Only the open spool may end in a torn write.
            (Some(Damage::Torn { reason }), _) => Some((scan.end, reason.clone())),
        };
        if let Some((offset, reason)) = damage.take() {
            tracing::error!(
                journal = name,
                file = %path.display(),
                offset,
                reason = reason.as_str(),
                "journal is corrupt: it stays readable below the damage and refuses appends"
            );
            recovered.health = Health::Corrupt { offset, reason };
        }
        let last_mark = scan.marks.last().map(|mark| mark.1);
        if let Some(registers) = scan.registers {
            recovered.registers = registers;
        }
        let end = match &recovered.health {
            Health::Corrupt { offset, .. } => *offset,
            _ => scan.end,
        };
        if end > begin {
            recovered.fragments.push(Fragment {
                begin,
                end,
                file: reader.clone(),
                marks: scan.marks,
            });
        }
        expected = Some(end);
        if recovered.health != Health::Healthy {
            break;
        }
        if let (FragmentFile::Spool { .. }, Some(true)) = (file, last.map(|l| l == index)) {
            let mut file = backend.open_append(&path)?;
            // The previous process may have died before syncing what it
            // wrote: make the bytes now served as committed durable.
            file.sync_data()?;
            recovered.spool = Some(Spool::reopened(
                begin,
                scan.end,
                path,
                file,
                reader,
                end > begin,
                last_mark,
            ));
        }
    }
    recovered.head = expected.unwrap_or(0);
    if !files.is_empty() {
        // Renames and creations of a process that died before syncing them
        // become durable before anything is appended after them.
        backend.sync_dir(dir)?;
    }
    Ok(recovered)
}
