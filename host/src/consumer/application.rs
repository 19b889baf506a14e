//! The contract between a shard's transaction loop and the user's logic.
//!
//! An [`Application`] sees only committed messages of its shard's sources, in
//! journal order, and only inside a transaction:
//!
//! 1. [`Application::consume_message`] once per committed, non-ACK message
//!    (read-committed delivery: duplicates dropped, rolled-back messages never
//!    delivered);
//! 2. [`Application::finalize_txn`] exactly once at the end of the
//!    transaction, after its last message and before it commits.
//!
//! Everything the application writes through the [`TxnContext`] (store writes
//! and published documents) belongs to the transaction: it becomes durable and
//! visible to read-committed readers if and only if the transaction commits.
//! A transaction may be rolled back after any call (an error, a crash, a lost
//! primary assignment); its callbacks then run again for the same messages in
//! a later transaction. So callbacks may run more than once, but their
//! *effects* commit exactly once.
//!
//! Calls are synchronous and may block (guest code, store reads): the shard
//! runs them on a blocking thread, never on a tokio worker.

use crate::message::Envelope;

/// Errors an application reports. Any error rolls the transaction back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The application rejected the message or transaction (for a guest: a
    /// WIT `result` error). The message's journal and offset are added by
    /// the shard.
    #[error("application error: {0}")]
    Rejected(String),
    /// The application crashed (for a guest: a trap, a deadline, a limit).
    /// The instance is discarded and re-created before the retry.
    #[error("application crashed: {0}")]
    Crashed(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] TxnStoreError),
    /// A publish was refused.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// Store errors seen by applications.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TxnStoreError {
    /// A key or value exceeded its size limit.
    #[error("store limit exceeded: {0}")]
    LimitExceeded(String),
    /// The underlying store failed.
    #[error("store failure: {0}")]
    Failed(String),
}

/// Publish errors seen by applications.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The document is not a single-line JSON object.
    #[error("invalid document for {journal}: {reason}")]
    InvalidDocument {
        /// Target journal.
        journal: String,
        /// What was wrong.
        reason: String,
    },
    /// The target journal does not exist.
    #[error("journal not found: {0}")]
    JournalNotFound(String),
    /// A per-transaction cap on published messages or bytes was exceeded.
    #[error("publish limit exceeded: {0}")]
    LimitExceeded(String),
}

/// A transactional key-value view of the shard's store: reads see the
/// committed state plus this transaction's own writes.
pub trait TxnStore {
    /// The value of `key`, or `None`.
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, TxnStoreError>;
    /// Sets `key` to `value` within the transaction.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), TxnStoreError>;
    /// Deletes `key` within the transaction.
    fn delete(&mut self, key: &[u8]) -> Result<(), TxnStoreError>;
    /// Up to `limit` entries with keys in `[start, end)` (an empty `end` means
    /// unbounded), in key order, merged with this transaction's writes.
    fn scan(
        &mut self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, TxnStoreError>;
}

/// A store entry: key and value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Publishes documents as part of the transaction (Gazette's
/// `PublishUncommitted`): they are appended with the CONTINUE_TXN flag before
/// the transaction commits, and acknowledged only after it has.
pub trait TxnPublisher {
    /// Publishes `doc`, a JSON object on one line without a `"UUID"` field
    /// (the host assigns UUIDs), to `journal`.
    fn publish(&mut self, journal: &str, doc: &[u8]) -> Result<(), PublishError>;
}

/// What a callback may touch.
pub struct TxnContext<'a> {
    /// The shard's id.
    pub shard: &'a str,
    /// The transactional store.
    pub store: &'a mut dyn TxnStore,
    /// The transactional publisher.
    pub publisher: &'a mut dyn TxnPublisher,
}

/// User logic run by a shard. See the module docs for the call order.
pub trait Application: Send + 'static {
    /// Called for each committed, non-ACK message of the transaction, in
    /// journal order per source.
    fn consume_message(
        &mut self,
        txn: &mut TxnContext<'_>,
        envelope: &Envelope,
    ) -> Result<(), AppError>;

    /// Called for a run of messages; the default calls
    /// [`consume_message`](Self::consume_message) for each. Implementations
    /// that cross an expensive boundary (a guest) override it. On error, the
    /// index of the failing message is returned with it.
    fn consume_messages(
        &mut self,
        txn: &mut TxnContext<'_>,
        envelopes: &[Envelope],
    ) -> Result<(), (usize, AppError)> {
        for (index, envelope) in envelopes.iter().enumerate() {
            self.consume_message(txn, envelope)
                .map_err(|err| (index, err))?;
        }
        Ok(())
    }

    /// Called once after the transaction's last message, before it commits.
    fn finalize_txn(&mut self, txn: &mut TxnContext<'_>) -> Result<(), AppError>;

    /// Called after any error or crash, before the transaction is retried:
    /// drop in-memory state of the failed transaction (a guest instance is
    /// re-created). The default does nothing.
    fn reset(&mut self) {}
}
