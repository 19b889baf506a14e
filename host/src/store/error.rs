//! Errors of the shard store.
//!
//! Every variant says whether the store is still usable afterwards: after
//! [`StoreError::Fenced`], [`StoreError::CommitUncertain`] or a failed local
//! apply, the [`ShardStore`](super::ShardStore) refuses further commits
//! ([`StoreError::Poisoned`]) and the shard must recover by opening the store
//! again, which replays the recovery log and so learns what really committed.

use crate::broker::protocol::BrokerError;

/// What went wrong in the store, its recovery log or its local RocksDB.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another primary took over the recovery log: its hand-off changed the
    /// `author` register, so this primary's commit append was refused and
    /// nothing of it committed. The shard must stop (never acknowledge).
    #[error("fenced: another primary took over recovery log {log} ({reason})")]
    Fenced {
        /// The recovery log journal.
        log: String,
        /// The broker's report (current registers or write head).
        reason: String,
    },
    /// The commit append failed in a way that does not say whether its bytes
    /// landed. The store is poisoned; reopening it replays the log and
    /// resolves the doubt.
    #[error("commit to recovery log {log} has an unknown outcome; reopen the store")]
    CommitUncertain {
        /// The recovery log journal.
        log: String,
        /// The failed append.
        #[source]
        source: BrokerError,
    },
    /// An earlier failure left this store unable to commit; open it again.
    #[error("store is poisoned by an earlier failure: {0}")]
    Poisoned(String),
    /// A journal call failed (and, for appends, certainly did not land).
    #[error("recovery log {log}: {context}")]
    Broker {
        /// The recovery log journal.
        log: String,
        /// What the store was doing.
        context: &'static str,
        /// The broker's error.
        #[source]
        source: BrokerError,
    },
    /// A recovery-log record failed its framing or checksum, or could not be
    /// decoded. Corrupt records are never applied.
    #[error("corrupt recovery log {log} at offset {offset}: {reason}")]
    CorruptLog {
        /// The recovery log journal.
        log: String,
        /// Offset of the bad record.
        offset: i64,
        /// What was wrong.
        reason: String,
    },
    /// The log skipped over bytes this store never applied (its fragments
    /// were removed): the local state cannot be rebuilt.
    #[error("recovery log {log} jumps from offset {expected} to {actual}: data is missing")]
    LogGap {
        /// The recovery log journal.
        log: String,
        /// The offset the store needed next.
        expected: i64,
        /// The offset the log delivered.
        actual: i64,
    },
    /// The local store has applied more of the log than the log holds: the
    /// log was recreated or truncated. Remove the local directory to rebuild.
    #[error("local store applied {log} through offset {applied}, beyond its head {head}")]
    AheadOfLog {
        /// The recovery log journal.
        log: String,
        /// Offset the local store has applied through.
        applied: i64,
        /// The log's write head.
        head: i64,
    },
    /// The local directory belongs to another recovery log.
    #[error("local store was built from recovery log {found}, not {expected}")]
    WrongLog {
        /// The log asked for.
        expected: String,
        /// The log the directory was built from.
        found: String,
    },
    /// The hand-off kept racing other writers of the log.
    #[error("hand-off on recovery log {log} lost the race {attempts} times")]
    HandoffContended {
        /// The recovery log journal.
        log: String,
        /// How many hand-offs were tried.
        attempts: u32,
    },
    /// RocksDB failed.
    #[error("local store: {context}")]
    Local {
        /// What the store was doing.
        context: &'static str,
        /// RocksDB's error.
        #[source]
        source: rocksdb::Error,
    },
    /// The store's own metadata in RocksDB is unreadable.
    #[error("local store metadata is invalid: {0}")]
    LocalState(String),
    /// A record could not be encoded.
    #[error("cannot encode a recovery-log record: {0}")]
    Encode(#[source] postcard::Error),
    /// A transaction exceeded a size limit of the store.
    #[error("store limit exceeded: {0}")]
    LimitExceeded(String),
    /// A [`FaultHook`](super::FaultHook) stopped the store at this point, as
    /// a crash would.
    #[error("injected crash at {0:?}")]
    InjectedCrash(super::FaultPoint),
    /// A blocking task of the store panicked or was cancelled.
    #[error("store task failed: {0}")]
    TaskFailed(String),
    /// The standby stopped tailing before it was promoted.
    #[error("standby of {log} stopped: {reason}")]
    StandbyStopped {
        /// The recovery log journal.
        log: String,
        /// Why it stopped.
        reason: String,
    },
}

impl StoreError {
    /// Whether retrying the same call on the same object may succeed.
    ///
    /// Errors that poison the store are not transient: the remedy is to open
    /// the store again (which is what a shard's recovery does).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Broker { source, .. } => source.is_transient(),
            StoreError::HandoffContended { .. } => true,
            StoreError::Fenced { .. }
            | StoreError::CommitUncertain { .. }
            | StoreError::Poisoned(_)
            | StoreError::CorruptLog { .. }
            | StoreError::LogGap { .. }
            | StoreError::AheadOfLog { .. }
            | StoreError::WrongLog { .. }
            | StoreError::Local { .. }
            | StoreError::LocalState(_)
            | StoreError::Encode(_)
            | StoreError::LimitExceeded(_)
            | StoreError::InjectedCrash(_)
            | StoreError::TaskFailed(_)
            | StoreError::StandbyStopped { .. } => false,
        }
    }
}

/// Maps a failed `spawn_blocking` join to a store error.
pub(crate) fn join_error(err: tokio::task::JoinError) -> StoreError {
    StoreError::TaskFailed(err.to_string())
}
