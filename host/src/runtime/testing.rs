//! Test fakes for the runtime: the in-memory store (as `MemStore`), a
//! recording [`TxnPublisher`], and envelope builders.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

pub use crate::consumer::MemoryStore as MemStore;
use crate::consumer::{PublishError, TxnContext, TxnPublisher};
use crate::message::{Clock, Envelope, Flags, ProducerId, build_uuid};
use crate::runtime::{Runtime, RuntimeConfig};

/// One runtime shared by the tests (components compile once).
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(RuntimeConfig::default()).expect("runtime"))
}

/// Records published documents.
#[derive(Debug, Default)]
pub struct Recorder {
    /// (journal, document), in order.
    pub published: Vec<(String, Vec<u8>)>,
}

impl TxnPublisher for Recorder {
    fn publish(&mut self, journal: &str, doc: &[u8]) -> Result<(), PublishError> {
        self.published.push((journal.to_string(), doc.to_vec()));
        Ok(())
    }
}

/// A store and a publisher, lent as a [`TxnContext`].
#[derive(Debug, Default)]
pub struct Txn {
    /// The store.
    pub store: MemStore,
    /// The publisher.
    pub publisher: Recorder,
}

impl Txn {
    /// The context for one call.
    pub fn context(&mut self) -> TxnContext<'_> {
        TxnContext {
            shard: "test-shard",
            store: &mut self.store,
            publisher: &mut self.publisher,
        }
    }
}

/// An envelope of `doc` with the given flags, at offset `begin`.
pub fn envelope(journal: &str, begin: i64, flags: Flags, doc: &[u8]) -> Envelope {
    let uuid = build_uuid(
        ProducerId([1, 2, 3, 4, 5, 6]),
        Clock(((begin as u64) + 1) << 4),
        flags,
    );
    let end = begin + doc.len() as i64 + 1;
    Envelope::new(
        Arc::from(journal),
        begin,
        end,
        uuid,
        Bytes::copy_from_slice(doc),
    )
}

/// A committed (`OUTSIDE_TXN`) envelope of `doc`.
pub fn message(doc: &str) -> Envelope {
    envelope("test/journal", 0, Flags::OutsideTxn, doc.as_bytes())
}
