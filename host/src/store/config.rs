//! Configuration of a shard store: its size limits, its retry policy and an
//! optional fault hook.
//!
//! The fault hook is how crash tests stop a store at a precise point (for
//! example after its commit record reached the log but before RocksDB saw
//! it). Production runs the very same code paths with no hook installed; a
//! hook only turns a point into an early return that leaves the store as a
//! crash would.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::limits;

/// A point in the store's commit path where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// The commit record is encoded; nothing has been appended.
    BeforeLogAppend,
    /// The commit record is durable in the recovery log (so the transaction
    /// committed), but the local RocksDB has not applied it.
    AfterLogAppend,
    /// The commit is in the log and applied to RocksDB.
    AfterLocalApply,
}

/// What a [`FaultHook`] decides at a [`FaultPoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Go on normally.
    Continue,
    /// Stop here as a crash would: the call returns
    /// [`StoreError::InjectedCrash`](super::StoreError::InjectedCrash) and the
    /// store is poisoned.
    Crash,
}

/// Called at every [`FaultPoint`] of every commit.
pub type FaultHook = Arc<dyn Fn(FaultPoint) -> FaultAction + Send + Sync>;

/// Limits and policies of a [`ShardStore`](super::ShardStore) or
/// [`Standby`](super::Standby).
#[derive(Clone)]
pub struct StoreConfig {
    /// Largest key a transaction may write (bytes).
    pub max_key_bytes: usize,
    /// Largest value a transaction may write (bytes).
    pub max_value_bytes: usize,
    /// Largest total of key and value bytes per transaction (bytes).
    pub max_txn_bytes: usize,
    /// Most entries one `scan` may ask for.
    pub max_scan_entries: usize,
    /// Largest recovery-log record a reader accepts (bytes).
    pub max_record_bytes: usize,
    /// Hand-off attempts before giving up with
    /// [`StoreError::HandoffContended`](super::StoreError::HandoffContended).
    pub handoff_attempts: u32,
    /// Back-off between retries of transient log failures.
    pub retry_backoff: Duration,
    /// Optional fault injection (tests); `None` in production.
    pub fault_hook: Option<FaultHook>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_key_bytes: limits::DEFAULT_STORE_MAX_KEY_BYTES,
            max_value_bytes: limits::DEFAULT_STORE_MAX_VALUE_BYTES,
            max_txn_bytes: limits::DEFAULT_STORE_MAX_TXN_BYTES,
            max_scan_entries: limits::DEFAULT_STORE_MAX_SCAN_ENTRIES,
            max_record_bytes: limits::DEFAULT_STORE_MAX_RECORD_BYTES,
            handoff_attempts: limits::DEFAULT_STORE_HANDOFF_ATTEMPTS,
            retry_backoff: Duration::from_millis(limits::DEFAULT_STORE_RETRY_BACKOFF_MS),
            fault_hook: None,
        }
    }
}

impl StoreConfig {
    /// Runs the fault hook, if any, at `point`.
    pub(crate) fn fault(&self, point: FaultPoint) -> FaultAction {
        match &self.fault_hook {
            Some(hook) => hook(point),
            None => FaultAction::Continue,
        }
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("max_key_bytes", &self.max_key_bytes)
            .field("max_value_bytes", &self.max_value_bytes)
            .field("max_txn_bytes", &self.max_txn_bytes)
            .field("max_scan_entries", &self.max_scan_entries)
            .field("max_record_bytes", &self.max_record_bytes)
            .field("handoff_attempts", &self.handoff_attempts)
            .field("retry_backoff", &self.retry_backoff)
            .field("fault_hook", &self.fault_hook.as_ref().map(|_| "installed"))
            .finish()
    }
}
