//! The shard store: a RocksDB materialization of a recovery log, with
//! fencing of zombie primaries and hot standbys.
//!
//! # The recovery log is the store
//!
//! Each shard has a recovery log journal. Every committed transaction appends
//! **one record** to it: the transaction's writes and its checkpoint. That
//! append is the commit (Gazette's pitfall 9): a transaction whose record is
//! in the log is committed even if the process died before noticing, and a
//! transaction whose record is not was never committed, whatever RocksDB
//! says. RocksDB is a local materialization of the log: after the append, the
//! record is applied to it in one `WriteBatch` together with the checkpoint
//! and the log offset it has applied through. Opening a store replays only
//! the records after that offset; an empty directory replays the whole log.
//!
//! # Fencing
//!
//! Each primary has a random `author` id. A new primary first appends a
//! hand-off record that replaces the log's `author` register with its own id;
//! every commit append checks that register. So once a new primary has taken
//! over, the old one's commits fail with [`StoreError::Fenced`] and are never
//! acknowledged, and no replica ever applies them (see [`fence`] for how the
//! hand-off itself is made race-free).
//!
//! # Replicas
//!
//! A [`Standby`] tails the log into its own local store and can
//! [`promote`](Standby::promote) itself in the time of one barrier and one
//! append. [`ShardStore::snapshot`] copies a local store so that a new replica
//! starts from it instead of replaying the whole log.
//!
//! # Using it
//!
//! ```no_run
//! # async fn example(client: std::sync::Arc<dyn weir::broker::protocol::JournalClient>)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use weir::consumer::TxnStore;
//! use weir::store::{ShardStore, StoreConfig};
//!
//! let dir = std::path::Path::new("/var/lib/weir/shard-000");
//! let (mut store, mut checkpoint) =
//!     ShardStore::open_primary(client, "recovery/shard-000", dir, StoreConfig::default()).await?;
//! // On a blocking thread: read and write through the transaction's overlay.
//! let mut txn = store.begin_txn();
//! let count = txn.get(b"count")?.map_or(0, |v| v.len());
//! txn.put(b"count", &vec![0; count + 1])?;
//! // Back on the loop: one record, one append, then the local apply.
//! checkpoint.module = "example".to_string();
//! store.commit(txn.into_writes(), &checkpoint).await?;
//! # Ok(())
//! # }
//! ```

pub mod bench;
mod config;
mod error;
pub mod fence;
mod local;
mod overlay;
mod player;
mod primary;
mod record;
mod standby;
#[cfg(test)]
mod testing;

pub use config::{FaultAction, FaultHook, FaultPoint, StoreConfig};
pub use error::StoreError;
pub use local::LogPosition;
pub use overlay::{Mutation, TxnOverlay, WriteSet};
pub use player::ReplayStats;
pub use primary::{CommitReceipt, RecoveryReport, ShardStore};
pub use standby::{Standby, StandbyPhase, StandbyProgress};
