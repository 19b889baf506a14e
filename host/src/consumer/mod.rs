//! Consumer shards (Gazette's `consumer` package).
//!
//! A **shard** reads committed messages of its source journals and runs them
//! through an [`Application`] in **transactions**. A transaction's store
//! writes, its checkpoint (read offsets, producer states, ACK intents) and the
//! messages it published commit together or not at all:
//!
//! - published messages are appended uncommitted (CONTINUE_TXN) before the
//!   commit, and become visible to read-committed readers only through the
//!   ACKs appended after it;
//! - the commit is one append to the shard's recovery log, fenced by an
//!   `author` register, so a zombie primary can never commit;
//! - after a crash, the next primary restores the last checkpoint, re-appends
//!   its ACKs byte for byte and publishes under a new producer id.
//!
//! Each input message therefore affects the store exactly once, and each
//! output is read exactly once by read-committed readers, though callbacks
//! may run more than once.
//!
//! Files: [`application`] (the user contract), [`spec`] (shard specs),
//! [`checkpoint`], [`transaction`] (the loop), [`shard`] (supervision and
//! status), [`fault`] (injectable crash points), [`txn_metrics`] (phase
//! timings).

pub mod application;
pub mod checkpoint;
pub mod fault;
pub mod memory;
pub mod shard;
pub mod spec;
pub mod transaction;
pub mod txn_metrics;

pub use application::{
    AppError, Application, PublishError, TxnContext, TxnPublisher, TxnStore, TxnStoreError,
};
pub use checkpoint::{Checkpoint, ProducerState, SourceCheckpoint};
pub use fault::{FaultAction, FaultHook, FaultPoint};
pub use memory::{DiscardPublisher, MemoryStore};
pub use shard::{
    AppFactory, ShardConfig, ShardError, ShardHandle, ShardProgress, ShardStatus, spawn_shard,
    spawn_shard_from_standby,
};
pub use spec::{ShardSpec, Source, SpecError};
pub use txn_metrics::{ShardTxnMetrics, TxnMetrics, TxnPhase};
