//! [`NativeSummer`]: Gazette's stream-sum summer compiled into the host, as a
//! [`consumer::Application`](crate::consumer::Application).
//!
//! It runs the very code of the `guest-summer` component
//! ([`guest_summer::summer::Summer`], linked natively) against the
//! transaction's store and publisher, so that comparing the two measures the
//! wasm runtime and nothing else:
//!
//! - each chunk folds into its stream's running sum, cached for the
//!   transaction and loaded from the store on a miss;
//! - the stream's final (empty) chunk publishes the final sum to
//!   [`SUMS_JOURNAL`](guest_summer::SUMS_JOURNAL) as part of the transaction;
//! - [`finalize_txn`](NativeSummer::finalize_txn) writes the cached sums
//!   back, so they commit together with the shard's checkpoint;
//! - ACK envelopes are skipped.
//!
//! A chunk whose SeqNo is not exactly the next one (lost, repeated or
//! reordered), a malformed chunk, or a stored sum under the wrong id fails
//! the transaction with [`AppError::Rejected`] naming the stream and the
//! message's `journal@offset`; it is never skipped. Store and publish
//! failures fail it with their own [`AppError`] variants, as they do for the
//! component.

use guest_summer::summer::{Summer, SummerError, SummerHost};

use crate::consumer::{AppError, Application, TxnContext};
use crate::message::Envelope;

/// The stream-sum summer, natively. See the module docs.
#[derive(Debug, Default)]
pub struct NativeSummer {
    summer: Summer,
}

impl NativeSummer {
    /// A summer with an empty cache.
    pub fn new() -> NativeSummer {
        NativeSummer::default()
    }
}

/// The transaction as the summer's host.
struct Host<'t, 'c>(&'t mut TxnContext<'c>);

impl SummerHost for Host<'_, '_> {
    type Error = AppError;

    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, AppError> {
        Ok(self.0.store.get(key)?)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), AppError> {
        Ok(self.0.store.put(key, value)?)
    }

    fn publish(&mut self, journal: &str, doc: &[u8]) -> Result<(), AppError> {
        Ok(self.0.publisher.publish(journal, doc)?)
    }
}

/// The application error of a summer error, located at `at` if rejected.
fn app_error(err: SummerError<AppError>, at: impl FnOnce() -> String) -> AppError {
    match err {
        SummerError::Rejected(what) => AppError::Rejected(format!("{what} at {}", at())),
        SummerError::Host { error, .. } => error,
    }
}

impl Application for NativeSummer {
    fn consume_message(
        &mut self,
        txn: &mut TxnContext<'_>,
        envelope: &Envelope,
    ) -> Result<(), AppError> {
        if envelope.is_ack() {
            return Ok(());
        }
        self.summer
            .consume(&mut Host(txn), &envelope.doc)
            .map_err(|err| app_error(err, || format!("{}@{}", envelope.journal, envelope.begin)))
    }

    /// The chunks of `envelopes` through [`Summer::consume_batch`], as the
    /// component runs them.
    fn consume_messages(
        &mut self,
        txn: &mut TxnContext<'_>,
        envelopes: &[Envelope],
    ) -> Result<(), (usize, AppError)> {
        let (indexes, docs): (Vec<usize>, Vec<&[u8]>) = envelopes
            .iter()
            .enumerate()
            .filter(|(_, envelope)| !envelope.is_ack())
            .map(|(index, envelope)| (index, &envelope.doc[..]))
            .unzip();
        self.summer
            .consume_batch(&mut Host(txn), &docs)
            .map_err(|(at, err)| {
                let envelope = &envelopes[indexes[at]];
                let at_offset = || format!("{}@{}", envelope.journal, envelope.begin);
                (indexes[at], app_error(err, at_offset))
            })
    }

    fn finalize_txn(&mut self, txn: &mut TxnContext<'_>) -> Result<(), AppError> {
        self.summer
            .finalize(&mut Host(txn))
            .map_err(|err| app_error(err, String::new))
    }

    fn reset(&mut self) {
        self.summer.reset();
    }
}

#[cfg(test)]
mod test {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::consumer::TxnStoreError;
    use crate::message::Flags;
    use crate::runtime::GuestLimits;
    use crate::runtime::guests::SUMMER_WASM;
    use crate::runtime::testing::{Txn, envelope, runtime};
    use guest_summer::SUMS_JOURNAL;
    use guest_summer::sum::{self, Chunk, StreamId, Sum};

    const PARTITION: &str = "examples/stream-sum/chunks/part-000";

    /// A chunk envelope at offset `begin`; empty `data` is the final chunk.
    fn chunk_at(begin: i64, id: StreamId, seq_no: u64, data: &[u8]) -> Envelope {
        envelope(
            PARTITION,
            begin,
            Flags::OutsideTxn,
            &Chunk::to_json(&id, seq_no, data),
        )
    }

    fn chunk(id: StreamId, seq_no: u64, data: &[u8]) -> Envelope {
        chunk_at(seq_no as i64 * 100, id, seq_no, data)
    }

    fn consume_all(app: &mut NativeSummer, txn: &mut Txn, envelopes: &[Envelope]) {
        for envelope in envelopes {
            app.consume_message(&mut txn.context(), envelope)
                .expect("consumed");
        }
    }

    fn published_sums(txn: &Txn) -> Vec<(String, Sum)> {
        txn.publisher
            .published
            .iter()
            .map(|(journal, doc)| (journal.clone(), Sum::parse(doc).expect("a sum document")))
            .collect()
    }

    #[test]
    fn battery_horse_split_in_two_chunks_sums_to_gazettes_vector() {
        let id = [7u8; 16];
        let mut app = NativeSummer::new();
        let mut txn = Txn::default();
        consume_all(
            &mut app,
            &mut txn,
            &[
                chunk(id, 1, b"battery"),
                chunk(id, 2, b" horse"),
                chunk(id, 3, b""),
            ],
        );
        let expected = Sum {
            id,
            seq_no: 3,
            value: 0xae76_3109_c119_2ed6,
        };
        assert_eq!(
            published_sums(&txn),
            vec![(SUMS_JOURNAL.to_string(), expected.clone())]
        );
        // The published document carries no UUID: the host assigns it.
        assert!(
            !txn.publisher.published[0]
                .1
                .windows(4)
                .any(|w| w == b"UUID")
        );

        // Sums reach the store only in finalize, under the raw id bytes.
        assert!(txn.store.data.is_empty());
        app.finalize_txn(&mut txn.context()).expect("finalized");
        let stored = Sum::parse(&txn.store.data[&id[..]]).expect("a stored sum");
        assert_eq!(stored, expected);
    }

    #[test]
    fn a_new_instance_continues_a_stream_from_the_store() {
        let id = [3u8; 16];
        let mut txn = Txn::default();
        let mut first = NativeSummer::new();
        consume_all(&mut first, &mut txn, &[chunk(id, 1, b"battery")]);
        first.finalize_txn(&mut txn.context()).expect("finalized");
        drop(first);
        let stored = Sum::parse(&txn.store.data[&id[..]]).expect("a stored sum");
        assert_eq!(
            stored,
            Sum {
                id,
                seq_no: 1,
                value: 0x2be5_5fc6_6a38_1c84
            }
        );

        let mut second = NativeSummer::new();
        consume_all(
            &mut second,
            &mut txn,
            &[chunk(id, 2, b" horse"), chunk(id, 3, b"")],
        );
        second.finalize_txn(&mut txn.context()).expect("finalized");
        let expected = Sum {
            id,
            seq_no: 3,
            value: 0xae76_3109_c119_2ed6,
        };
        assert_eq!(
            published_sums(&txn),
            vec![(SUMS_JOURNAL.to_string(), expected)]
        );
    }

    #[test]
    fn a_seqno_gap_or_repeat_is_rejected_with_the_stream_and_offset() {
        let id = [5u8; 16];
        let mut app = NativeSummer::new();
        let mut txn = Txn::default();
        consume_all(&mut app, &mut txn, &[chunk(id, 1, b"a")]);
        match app.consume_message(&mut txn.context(), &chunk_at(777, id, 3, b"c")) {
            Err(AppError::Rejected(reason)) => {
                assert!(
                    reason.contains("expected 2, got 3 (skipped ahead)"),
                    "{reason}"
                );
                assert!(reason.contains(&sum::hex(&id)), "{reason}");
                assert!(reason.contains(&format!("{PARTITION}@777")), "{reason}");
            }
            other => panic!("a gap must fail the transaction, got {other:?}"),
        }
        match app.consume_message(&mut txn.context(), &chunk(id, 1, b"a")) {
            Err(AppError::Rejected(reason)) => {
                assert!(reason.contains("expected 2, got 1 (repeated)"), "{reason}")
            }
            other => panic!("a repeat must fail the transaction, got {other:?}"),
        }
        // The refused chunks left the sum as it was: the next one still fits.
        consume_all(&mut app, &mut txn, &[chunk(id, 2, b"")]);
        assert_eq!(published_sums(&txn)[0].1.seq_no, 2);
    }

    #[test]
    fn acknowledgements_are_ignored() {
        let mut app = NativeSummer::new();
        let mut txn = Txn::default();
        let ack = envelope(
            PARTITION,
            10,
            Flags::AckTxn,
            br#"{"UUID":"7f7e1d9a-1dd2-11b2-8002-010203040506"}"#,
        );
        app.consume_message(&mut txn.context(), &ack)
            .expect("an ACK is skipped");
        app.finalize_txn(&mut txn.context()).expect("finalized");
        assert!(txn.publisher.published.is_empty());
        assert!(txn.store.data.is_empty());
    }

    #[test]
    fn malformed_chunks_and_foreign_stored_sums_are_rejected_not_panicked_on() {
        let mut app = NativeSummer::new();
        let mut txn = Txn::default();
        let cases: [&[u8]; 4] = [
            b"{\"ID\":[1,2],\"SeqNo\":1}",
            b"not json",
            b"{\"ID\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],\"SeqNo\":1,\"Data\":\"%%%\"}",
            b"{\"ID\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],\"SeqNo\":-1,\"Data\":null}",
        ];
        for doc in cases {
            let bad = envelope(PARTITION, 42, Flags::OutsideTxn, doc);
            match app.consume_message(&mut txn.context(), &bad) {
                Err(AppError::Rejected(reason)) => {
                    assert!(reason.contains(&format!("{PARTITION}@42")), "{reason}")
                }
                other => panic!("malformed {doc:?} must be rejected, got {other:?}"),
            }
        }

        let (key, other) = ([1u8; 16], [2u8; 16]);
        txn.store
            .data
            .insert(key.to_vec(), Sum::new(other).to_json());
        match app.consume_message(&mut txn.context(), &chunk(key, 1, b"x")) {
            Err(AppError::Rejected(reason)) => {
                assert!(reason.contains("invalid chunk.ID"), "{reason}")
            }
            other => panic!("a foreign stored sum must be rejected, got {other:?}"),
        }
        txn.store.fail_reads = true;
        match app.consume_message(&mut txn.context(), &chunk([9u8; 16], 1, b"x")) {
            Err(AppError::Store(TxnStoreError::Failed(reason))) => {
                assert!(reason.contains("injected"))
            }
            other => panic!("a store failure must fail the transaction, got {other:?}"),
        }
        assert!(txn.publisher.published.is_empty());
    }

    #[test]
    fn native_and_wasm_summers_publish_and_store_the_same_bytes() {
        // Interleaved streams, several transactions, random split points.
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let ids: Vec<StreamId> = (0..12).map(|_| rng.random()).collect();
        let mut seq_nos = vec![0u64; ids.len()];
        let mut transactions: Vec<Vec<Envelope>> = vec![Vec::new(); 5];
        let mut begin = 0i64;
        for (lane, id) in ids.iter().enumerate() {
            let chunks = 1 + lane % 6;
            for _ in 0..=chunks {
                seq_nos[lane] += 1;
                let len = if seq_nos[lane] as usize > chunks {
                    0
                } else {
                    rng.random_range(1..64)
                };
                let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                let txn = (seq_nos[lane] as usize * 5 / (chunks + 1)).min(4);
                transactions[txn].push(chunk_at(begin, *id, seq_nos[lane], &data));
                begin += 1000;
            }
        }

        let mut wasm = runtime()
            .consumer_module(SUMMER_WASM)
            .expect("summer links")
            .application("part-000", GuestLimits::default())
            .expect("summer instantiates");
        let mut native = NativeSummer::new();
        let (mut wasm_txn, mut native_txn) = (Txn::default(), Txn::default());
        for envelopes in &transactions {
            wasm.consume_messages(&mut wasm_txn.context(), envelopes)
                .expect("wasm consumed");
            native
                .consume_messages(&mut native_txn.context(), envelopes)
                .expect("native consumed");
            wasm.finalize_txn(&mut wasm_txn.context())
                .expect("wasm finalized");
            native
                .finalize_txn(&mut native_txn.context())
                .expect("native finalized");
        }
        assert_eq!(native_txn.publisher.published.len(), ids.len());
        assert_eq!(native_txn.publisher.published, wasm_txn.publisher.published);
        assert_eq!(native_txn.store.data, wasm_txn.store.data);
        for id in &ids {
            let crc = Sum::parse(&native_txn.store.data[&id[..]]).expect("a stored sum");
            assert_eq!(crc.id, *id);
        }
    }
}
