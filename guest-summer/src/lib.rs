//! Gazette's stream-sum **summer** as a weir consumer component.
//!
//! Each shard reads one chunk partition. For every chunk the summer folds the
//! chunk's data into its stream's running CRC-64/XZ [`Sum`]; when the
//! stream's final (empty) chunk arrives it publishes the final sum to
//! `examples/stream-sum/sums` as part of the transaction.
//!
//! State: sums touched by the current transaction live in a cache, loaded
//! from the store on a miss (key = the 16 raw stream-id bytes, value = the
//! sum's JSON) and written back in `finalize-txn`, so the store and the
//! shard's checkpoint commit together. Nothing survives in memory across
//! transactions that is not in the store: after a rollback the host starts a
//! fresh instance.
//!
//! Guarantees: a lost, repeated or reordered chunk (a SeqNo that is not the
//! next one) or a stored sum under the wrong id fails the transaction with an
//! error naming the stream; it is never skipped. ACK envelopes are ignored.

pub mod sum;

/// Where final sums are published.
pub const SUMS_JOURNAL: &str = "examples/stream-sum/sums";

/// The component's exports and their glue. Only the wasm build has them:
/// built natively (the host links [`sum`] to run the same logic natively),
/// the crate must not define the component's unmangled export symbols.
#[cfg(target_arch = "wasm32")]
mod guest {
    use super::SUMS_JOURNAL;
    use super::sum::{self, Chunk, Progress, StreamId, Sum};

    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::collections::hash_map::Entry;

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

        use super::Summer;
        export!(Summer with_types_in self);
    }

    use bindings::weir::guest::{publisher, store};
    use bindings::{Envelope, Guest, IndexedError};

    /// The UUID flag of acknowledgements (Gazette `message.Flag_ACK_TXN`).
    const ACK_TXN: u16 = 0x2;

    thread_local! {
        /// Sums read or updated in the current transaction, flushed by
        /// `finalize-txn`.
        static CACHE: RefCell<HashMap<StreamId, Sum>> = RefCell::new(HashMap::new());
    }

    struct Summer;

    impl Guest for Summer {
        fn consume_message(envelope: Envelope) -> Result<(), String> {
            consume(&envelope)
        }

        fn consume_messages(envelopes: Vec<Envelope>) -> Result<(), IndexedError> {
            for (index, envelope) in envelopes.iter().enumerate() {
                consume(envelope).map_err(|message| IndexedError {
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    message,
                })?;
            }
            Ok(())
        }

        fn finalize_txn() -> Result<(), String> {
            let sums: Vec<Sum> =
                CACHE.with(|cache| cache.borrow_mut().drain().map(|(_, s)| s).collect());
            for sum in sums {
                store::put(&sum.id, &sum.to_json()).map_err(|err| {
                    format!(
                        "storing the sum of stream {}: {}",
                        sum::hex(&sum.id),
                        describe_store(&err)
                    )
                })?;
            }
            Ok(())
        }
    }

    fn consume(envelope: &Envelope) -> Result<(), String> {
        if envelope.uuid_flags == ACK_TXN {
            return Ok(());
        }
        let at = || format!("{}@{}", envelope.journal, envelope.begin);
        let chunk = Chunk::parse(&envelope.doc).map_err(|err| format!("{err} at {}", at()))?;
        let data = chunk
            .decode_data()
            .map_err(|err| format!("{err} at {}", at()))?;

        let final_doc = CACHE.with(|cache| -> Result<Option<Vec<u8>>, String> {
            let mut cache = cache.borrow_mut();
            let sum = match cache.entry(chunk.id) {
                Entry::Occupied(cached) => cached.into_mut(),
                Entry::Vacant(missing) => missing.insert(load(&chunk.id)?),
            };
            // On error the sum is left unchanged (and the transaction fails).
            let progress = sum
                .update(&chunk.id, chunk.seq_no, &data)
                .map_err(|err| format!("{err} at {}", at()))?;
            Ok((progress == Progress::Done).then(|| sum.to_json()))
        })?;
        match final_doc {
            None => Ok(()),
            Some(doc) => publisher::publish(SUMS_JOURNAL, &doc).map_err(|err| {
                format!(
                    "publishing the sum of stream {}: {}",
                    sum::hex(&chunk.id),
                    describe_publish(&err)
                )
            }),
        }
    }

    /// The stored sum of a stream, or a fresh one.
    fn load(id: &StreamId) -> Result<Sum, String> {
        let stored = store::get(id).map_err(|err| {
            format!(
                "loading the sum of stream {}: {}",
                sum::hex(id),
                describe_store(&err)
            )
        })?;
        let Some(bytes) = stored else {
            return Ok(Sum::new(*id));
        };
        let sum = Sum::parse(&bytes)
            .map_err(|err| format!("stored sum of stream {}: {err}", sum::hex(id)))?;
        if sum.id != *id {
            return Err(format!(
                "invalid chunk.ID: stored sum under key {} is for stream {}",
                sum::hex(id),
                sum::hex(&sum.id)
            ));
        }
        Ok(sum)
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
