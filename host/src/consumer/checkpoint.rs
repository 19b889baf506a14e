//! A shard's checkpoint: everything needed to resume exactly where the last
//! committed transaction left off (Gazette's `consumer.Checkpoint`).
//!
//! It commits atomically with the transaction's store writes. On recovery the
//! shard resumes reading each source at `read_through`, restores each
//! producer's sequencer state (so duplicates stay dropped), and re-appends the
//! ACK intents byte for byte before anything else.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Sequencer state of one producer within one source journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerState {
    /// The producer's 6-byte id.
    pub producer: [u8; 6],
    /// Clock of the last acknowledged (processed) message: messages with a
    /// clock at or below it are duplicates.
    pub last_ack: u64,
    /// Offset where the producer's pending (uncommitted) span begins, or -1.
    pub begin: i64,
}

/// Read progress through one source journal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCheckpoint {
    /// Offset through which the journal has been read.
    pub read_through: i64,
    /// Per-producer sequencer states.
    pub producers: Vec<ProducerState>,
}

/// The checkpoint of a committed transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Progress per source journal.
    pub sources: BTreeMap<String, SourceCheckpoint>,
    /// ACK documents to append (byte for byte) per journal once the
    /// transaction is durable, and again after recovery.
    pub ack_intents: BTreeMap<String, Vec<u8>>,
    /// Digest of the application module that committed the transaction
    /// (empty for native applications).
    pub module: String,
}
