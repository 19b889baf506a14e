//! Injectable crash points of the transaction lifecycle.
//!
//! Exactly-once must hold whatever instant a process dies at. Tests prove it
//! by crashing a shard at each named [`FaultPoint`]: the shard then abandons
//! everything in flight, exactly as a killed process would (what it already
//! appended stays appended; nothing else happens), and a new primary recovers.
//! Production shards run with no hook, which costs one `Option` check per
//! point.

use std::fmt;
use std::sync::Arc;

/// A point in a transaction's life where a crash can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    /// After the application consumed a batch of messages, before the
    /// transaction finalizes.
    Consuming,
    /// After `finalize_txn`, before the published messages are flushed.
    AfterFinalize,
    /// After the published messages are durable, before the recovery-log
    /// commit.
    BeforeCommit,
    /// After the recovery-log commit, before the first ACK is appended.
    AfterCommit,
    /// After the first ACK append of a transaction, before the rest.
    DuringAcks,
}

impl FaultPoint {
    /// Every point, in lifecycle order.
    pub const ALL: [FaultPoint; 5] = [
        FaultPoint::Consuming,
        FaultPoint::AfterFinalize,
        FaultPoint::BeforeCommit,
        FaultPoint::AfterCommit,
        FaultPoint::DuringAcks,
    ];
}

impl fmt::Display for FaultPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What the hook decides at a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Carry on.
    Continue,
    /// Die here, abandoning all in-flight work.
    Crash,
}

/// A hook consulted at every [`FaultPoint`].
pub type FaultHook = Arc<dyn Fn(FaultPoint) -> FaultAction + Send + Sync>;
