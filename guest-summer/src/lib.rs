//! Gazette's stream-sum **summer** as a weir consumer component.
//!
//! Each shard reads one chunk partition. For every chunk the summer folds the
//! chunk's data into its stream's running CRC-64/XZ [`sum::Sum`]; when the
//! stream's final (empty) chunk arrives it publishes the final sum to
//! `examples/stream-sum/sums` as part of the transaction. The logic is
//! [`summer::Summer`] (see its docs for state and guarantees); this crate's
//! wasm build wires it to the component's exports and imports, and the host
//! links the same code natively.
//!
//! Nothing survives in memory across transactions that is not in the store:
//! after a rollback the host starts a fresh instance. ACK envelopes are
//! ignored.

pub mod sum;
pub mod summer;

/// Where final sums are published.
pub const SUMS_JOURNAL: &str = "examples/stream-sum/sums";

/// The component's exports and their glue. Only the wasm build has them:
/// built natively (the host links [`sum`] to run the same logic natively),
/// the crate must not define the component's unmangled export symbols.
#[cfg(target_arch = "wasm32")]
mod guest {
    use super::sum;
    use super::summer::{Summer, SummerError, SummerHost};

    use std::cell::RefCell;

    /// The generated canonical-ABI glue, the crate's only unsafe code.
    #[allow(
        unsafe_code,
        clippy::too_many_arguments,
        reason = "wit-bindgen's generated canonical-ABI glue"
    )]
    mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "consumer",
        });

        use super::Component;
        export!(Component with_types_in self);
    }

    use bindings::weir::guest::types::Batch;
    use bindings::weir::guest::{publisher, store};
    use bindings::{Envelope, Guest, IndexedError};

    /// The UUID flag of acknowledgements (Gazette `message.Flag_ACK_TXN`).
    const ACK_TXN: u16 = 0x2;

    thread_local! {
        /// The instance's summer: its cache holds the current transaction's
        /// sums until `finalize-txn`.
        static SUMMER: RefCell<Summer> = RefCell::new(Summer::new());
    }

    struct Component;

    impl Guest for Component {
        fn consume_message(envelope: Envelope) -> Result<(), String> {
            if envelope.uuid_flags == ACK_TXN {
                return Ok(());
            }
            SUMMER.with(|summer| {
                summer
                    .borrow_mut()
                    .consume(&mut Imports, &envelope.doc)
                    .map_err(|err| describe(err, &envelope.journal, envelope.begin))
            })
        }

        fn consume_messages(batch: Batch) -> Result<(), IndexedError> {
            let fail = |index: usize, message: String| IndexedError {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                message,
            };
            let count = batch.doc_ends.len();
            if batch.uuid_flags.len() != count || batch.begins.len() != count {
                return Err(fail(
                    0,
                    format!(
                        "the host sent a batch whose columns differ in length at {}",
                        batch.journal
                    ),
                ));
            }
            // The chunks (not ACKs) with their message indexes, up to the
            // first document outside the batch (a host bug, reported after
            // the chunks before it are folded, as one at a time would).
            let mut docs = Vec::with_capacity(count);
            let mut indexes = Vec::with_capacity(count);
            let mut outside = None;
            let mut start = 0;
            for (index, (&end, &flags)) in batch.doc_ends.iter().zip(&batch.uuid_flags).enumerate()
            {
                let end = end as usize;
                let Some(doc) = batch.docs.get(start..end) else {
                    outside = Some(index);
                    break;
                };
                start = end;
                if flags != ACK_TXN {
                    docs.push(doc);
                    indexes.push(index);
                }
            }
            SUMMER.with(|summer| {
                summer
                    .borrow_mut()
                    .consume_batch(&mut Imports, &docs)
                    .map_err(|(at, err)| {
                        let index = indexes[at];
                        fail(index, describe(err, &batch.journal, batch.begins[index]))
                    })
            })?;
            match outside {
                Some(index) => Err(fail(
                    index,
                    format!(
                        "the host sent a document outside the batch at {}@{}",
                        batch.journal, batch.begins[index]
                    ),
                )),
                None => Ok(()),
            }
        }

        fn finalize_txn() -> Result<(), String> {
            SUMMER.with(|summer| {
                summer
                    .borrow_mut()
                    .finalize(&mut Imports)
                    .map_err(|err| describe(err, "", -1))
            })
        }
    }

    /// The summer's host: the component's store and publisher imports.
    struct Imports;

    /// A store or publish failure, described for the operator.
    struct ImportError(String);

    impl SummerHost for Imports {
        type Error = ImportError;

        fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ImportError> {
            store::get(key).map_err(|err| ImportError(describe_store(&err)))
        }

        fn get_many(
            &mut self,
            keys: &[sum::StreamId],
        ) -> Result<Vec<Option<Vec<u8>>>, ImportError> {
            let keys: Vec<Vec<u8>> = keys.iter().map(|key| key.to_vec()).collect();
            store::get_many(&keys).map_err(|err| ImportError(describe_store(&err)))
        }

        fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ImportError> {
            store::put(key, value).map_err(|err| ImportError(describe_store(&err)))
        }

        fn publish(&mut self, journal: &str, doc: &[u8]) -> Result<(), ImportError> {
            publisher::publish(journal, doc).map_err(|err| ImportError(describe_publish(&err)))
        }
    }

    /// The error text of `err`, located at `journal@offset` when it concerns
    /// a message (offset -1: it does not).
    fn describe(err: SummerError<ImportError>, journal: &str, offset: i64) -> String {
        match err {
            SummerError::Rejected(what) if offset >= 0 => format!("{what} at {journal}@{offset}"),
            SummerError::Rejected(what) => what,
            SummerError::Host {
                action,
                stream,
                error: ImportError(what),
            } => format!("{action} the sum of stream {}: {what}", sum::hex(&stream)),
        }
    }

    fn describe_store(err: &store::StoreError) -> String {
        match err {
            store::StoreError::LimitExceeded(what) => format!("store limit exceeded: {what}"),
            store::StoreError::Failed(what) => format!("store failed: {what}"),
        }
    }

    fn describe_publish(err: &publisher::PublishError) -> String {
        match err {
            publisher::PublishError::InvalidDocument(what) => format!("invalid document: {what}"),
            publisher::PublishError::JournalNotFound(what) => format!("journal not found: {what}"),
            publisher::PublishError::LimitExceeded(what) => {
                format!("publish limit exceeded: {what}")
            }
        }
    }
}
