//! [`Summer`]: Gazette's stream-sum summer as plain Rust, over any
//! [`SummerHost`] (a transactional store and a publisher).
//!
//! The component (`lib.rs`) runs it against the WIT imports; the host links
//! it natively (`weir::stream_sum::NativeSummer`) against the transaction's
//! store and publisher. One implementation, so the benchmark that compares
//! the two measures the runtime, not two versions of the logic.
//!
//! State: the sums touched by the current transaction live in a cache,
//! loaded from the store on a miss (key = the 16 raw stream-id bytes, value =
//! the sum's JSON) and written back by [`Summer::finalize`], so the sums
//! commit together with the shard's checkpoint. [`Summer::reset`] forgets the
//! cache after a rollback.
//!
//! Guarantees: a lost, repeated or reordered chunk (a SeqNo that is not the
//! next one), a malformed chunk or a stored sum under the wrong id is
//! [`SummerError::Rejected`]; it is never skipped. A host failure is
//! [`SummerError::Host`], with what the summer was doing.
//!
//! [`Summer::consume_batch`] folds a run of chunks exactly as
//! [`Summer::consume`] would one by one (same order, same errors at the same
//! chunk), but first loads every uncached stream of the run with one
//! [`SummerHost::get_many`]: for a guest, one crossing to the host per run
//! instead of one per stream.

use std::collections::hash_map::Entry;

// SipHash (std's default) cost more than the rest of a chunk's work in
// wasm; a stream id is a fixed 16 bytes, and a guest's maps live one
// transaction.
use foldhash::{HashMap, HashSet};

use crate::SUMS_JOURNAL;
use crate::sum::{self, Chunk, Progress, StreamId, Sum};

/// What the summer needs from its host: the transaction's store and
/// publisher. `Error` is the host's own failure type, handed back untouched
/// in [`SummerError::Host`].
pub trait SummerHost {
    /// A failure of the store or the publisher.
    type Error;

    /// The stored value of `key`, if any.
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;

    /// The stored values of `keys`, in order. A host whose calls cost little
    /// keeps this default (one [`get`](Self::get) per key); a guest's host
    /// answers all of them in one crossing.
    fn get_many(&mut self, keys: &[StreamId]) -> Result<Vec<Option<Vec<u8>>>, Self::Error> {
        keys.iter().map(|key| self.get(key)).collect()
    }

    /// Stores `value` under `key` in the current transaction.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Self::Error>;

    /// Publishes `doc` to `journal` as part of the current transaction.
    fn publish(&mut self, journal: &str, doc: &[u8]) -> Result<(), Self::Error>;
}

/// What the summer was doing when its host failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAction {
    /// Reading a stream's stored sum.
    Loading,
    /// Writing a stream's sum back in `finalize`.
    Storing,
    /// Publishing a stream's final sum.
    Publishing,
}

impl std::fmt::Display for HostAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HostAction::Loading => "loading",
            HostAction::Storing => "storing",
            HostAction::Publishing => "publishing",
        })
    }
}

/// Why a chunk or a transaction failed.
#[derive(Debug, PartialEq, Eq)]
pub enum SummerError<E> {
    /// The input is wrong (malformed chunk, SeqNo gap or repeat, stored sum
    /// of another stream): the transaction must fail loudly.
    Rejected(String),
    /// The host's store or publisher failed.
    Host {
        /// What the summer was doing.
        action: HostAction,
        /// The stream concerned.
        stream: StreamId,
        /// The host's error.
        error: E,
    },
}

/// The summer's state. See the module docs.
#[derive(Debug, Default)]
pub struct Summer {
    /// Sums read or updated by the current transaction.
    cache: HashMap<StreamId, Sum>,
    /// Reused buffer for a chunk's decoded data.
    data: Vec<u8>,
}

impl Summer {
    /// A summer with an empty cache.
    pub fn new() -> Summer {
        Summer::default()
    }

    /// Folds one chunk document (not an ACK) into its stream's sum, and
    /// publishes the sum if this was the stream's final chunk. On error the
    /// sum is left unchanged.
    pub fn consume<H: SummerHost>(
        &mut self,
        host: &mut H,
        doc: &[u8],
    ) -> Result<(), SummerError<H::Error>> {
        let chunk = Chunk::parse(doc).map_err(SummerError::Rejected)?;
        self.fold(host, &chunk, &mut Prefetched::default())
    }

    /// Folds the chunk documents `docs` (no ACKs), in order, as
    /// [`consume`](Self::consume) would one at a time, loading the stored
    /// sums of their uncached streams with one [`SummerHost::get_many`]. On
    /// error, returns the position in `docs` of the chunk that failed; the
    /// chunks before it are folded.
    pub fn consume_batch<H: SummerHost>(
        &mut self,
        host: &mut H,
        docs: &[&[u8]],
    ) -> Result<(), (usize, SummerError<H::Error>)> {
        let mut chunks = Vec::with_capacity(docs.len());
        let mut malformed = None;
        for (at, doc) in docs.iter().enumerate() {
            match Chunk::parse(doc) {
                Ok(chunk) => chunks.push(chunk),
                Err(why) => {
                    malformed = Some((at, SummerError::Rejected(why)));
                    break;
                }
            }
        }
        // Chunks of cached streams before the first load fold first, so a
        // failed load is reported where `consume` would have met it.
        let mut first = chunks.len();
        // Each uncached stream once, in the order of its first chunk: a set
        // beside the list costs less than sorting the list to dedupe it.
        let mut missing: Vec<StreamId> = Vec::new();
        let mut seen = HashSet::default();
        for (at, chunk) in chunks.iter().enumerate() {
            if !self.cache.contains_key(&chunk.id) && seen.insert(chunk.id) {
                first = first.min(at);
                missing.push(chunk.id);
            }
        }
        let mut prefetched = Prefetched::default();
        for (at, chunk) in chunks.iter().enumerate() {
            if at == first {
                let id = chunk.id;
                prefetched =
                    prefetch(host, std::mem::take(&mut missing), id).map_err(|err| (at, err))?;
            }
            self.fold(host, chunk, &mut prefetched)
                .map_err(|err| (at, err))?;
        }
        malformed.map_or(Ok(()), Err)
    }

    /// Folds a parsed chunk: its stream's sum comes from the cache, else
    /// from `prefetched`, else from the store.
    fn fold<H: SummerHost>(
        &mut self,
        host: &mut H,
        chunk: &Chunk<'_>,
        prefetched: &mut Prefetched,
    ) -> Result<(), SummerError<H::Error>> {
        chunk
            .decode_data_into(&mut self.data)
            .map_err(SummerError::Rejected)?;
        let sum = match self.cache.entry(chunk.id) {
            Entry::Occupied(cached) => cached.into_mut(),
            Entry::Vacant(missing) => {
                let stored = match prefetched.remove(&chunk.id) {
                    Some(stored) => stored,
                    None => host.get(&chunk.id).map_err(|error| SummerError::Host {
                        action: HostAction::Loading,
                        stream: chunk.id,
                        error,
                    })?,
                };
                missing.insert(stored_sum(&chunk.id, stored)?)
            }
        };
        let progress = sum
            .update(&chunk.id, chunk.seq_no, &self.data)
            .map_err(SummerError::Rejected)?;
        if progress == Progress::Done {
            host.publish(SUMS_JOURNAL, &sum.to_json())
                .map_err(|error| SummerError::Host {
                    action: HostAction::Publishing,
                    stream: chunk.id,
                    error,
                })?;
        }
        Ok(())
    }

    /// Writes every cached sum back to the store and empties the cache.
    pub fn finalize<H: SummerHost>(&mut self, host: &mut H) -> Result<(), SummerError<H::Error>> {
        for (id, sum) in self.cache.drain() {
            host.put(&id, &sum.to_json())
                .map_err(|error| SummerError::Host {
                    action: HostAction::Storing,
                    stream: id,
                    error,
                })?;
        }
        Ok(())
    }

    /// Forgets the cache (after a rolled-back transaction).
    pub fn reset(&mut self) {
        self.cache.clear();
    }
}

/// Stored values read ahead of their chunks, by stream.
type Prefetched = HashMap<StreamId, Option<Vec<u8>>>;

/// The stored values of the streams `missing` (not in the cache, each
/// once), read with one `get_many`; a failure names `first`, the stream that
/// needed a load first.
fn prefetch<H: SummerHost>(
    host: &mut H,
    missing: Vec<StreamId>,
    first: StreamId,
) -> Result<Prefetched, SummerError<H::Error>> {
    let values = host.get_many(&missing).map_err(|error| SummerError::Host {
        action: HostAction::Loading,
        stream: first,
        error,
    })?;
    if values.len() != missing.len() {
        return Err(SummerError::Rejected(format!(
            "the host answered {} values for {} keys",
            values.len(),
            missing.len()
        )));
    }
    Ok(missing.into_iter().zip(values).collect())
}

/// The sum stored for `id` (`stored`), or a fresh one if there is none.
fn stored_sum<E>(id: &StreamId, stored: Option<Vec<u8>>) -> Result<Sum, SummerError<E>> {
    let Some(bytes) = stored else {
        return Ok(Sum::new(*id));
    };
    let sum = Sum::parse(&bytes).map_err(|err| {
        SummerError::Rejected(format!("stored sum of stream {}: {err}", sum::hex(id)))
    })?;
    if sum.id != *id {
        return Err(SummerError::Rejected(format!(
            "invalid chunk.ID: stored sum under key {} is for stream {}",
            sum::hex(id),
            sum::hex(&sum.id)
        )));
    }
    Ok(sum)
}

#[cfg(test)]
mod test {
    use std::collections::BTreeMap;

    use super::*;

    /// A host in memory that can be told to fail.
    #[derive(Default)]
    struct MemHost {
        store: BTreeMap<Vec<u8>, Vec<u8>>,
        published: Vec<(String, Vec<u8>)>,
        fail: bool,
        /// Calls of `get` and of `get_many`.
        gets: usize,
        get_manys: usize,
    }

    impl SummerHost for MemHost {
        type Error = &'static str;
        fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
            self.gets += 1;
            if self.fail {
                return Err("down");
            }
            Ok(self.store.get(key).cloned())
        }
        fn get_many(&mut self, keys: &[StreamId]) -> Result<Vec<Option<Vec<u8>>>, Self::Error> {
            self.get_manys += 1;
            if self.fail {
                return Err("down");
            }
            Ok(keys
                .iter()
                .map(|key| self.store.get(&key[..]).cloned())
                .collect())
        }
        fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Self::Error> {
            self.store.insert(key.to_vec(), value.to_vec());
            Ok(())
        }
        fn publish(&mut self, journal: &str, doc: &[u8]) -> Result<(), Self::Error> {
            self.published.push((journal.to_string(), doc.to_vec()));
            Ok(())
        }
    }

    #[test]
    fn sums_flush_in_finalize_and_continue_in_a_new_summer() {
        let id = [5u8; 16];
        let mut host = MemHost::default();
        let mut first = Summer::new();
        first
            .consume(&mut host, &Chunk::to_json(&id, 1, b"battery"))
            .unwrap();
        assert!(host.store.is_empty(), "nothing is stored before finalize");
        first.finalize(&mut host).unwrap();

        let mut second = Summer::new();
        second
            .consume(&mut host, &Chunk::to_json(&id, 2, b" horse"))
            .unwrap();
        second
            .consume(&mut host, &Chunk::to_json(&id, 3, b""))
            .unwrap();
        let (journal, doc) = &host.published[0];
        assert_eq!(journal, SUMS_JOURNAL);
        assert_eq!(Sum::parse(doc).unwrap().value, 0xae76_3109_c119_2ed6);
    }

    #[test]
    fn gaps_malformed_chunks_and_host_failures_are_errors() {
        let id = [6u8; 16];
        let mut host = MemHost::default();
        let mut summer = Summer::new();
        let gap = summer.consume(&mut host, &Chunk::to_json(&id, 2, b"x"));
        assert!(matches!(gap, Err(SummerError::Rejected(m)) if m.contains("skipped ahead")));
        let bad = summer.consume(&mut host, b"{\"ID\":1}");
        assert!(matches!(bad, Err(SummerError::Rejected(m)) if m.contains("malformed chunk")));
        host.fail = true;
        let down = summer.consume(&mut host, &Chunk::to_json(&[7u8; 16], 1, b"x"));
        assert_eq!(
            down,
            Err(SummerError::Host {
                action: HostAction::Loading,
                stream: [7u8; 16],
                error: "down"
            })
        );
    }

    #[test]
    fn a_stored_sum_of_another_stream_is_rejected() {
        let mut host = MemHost::default();
        host.store
            .insert([1u8; 16].to_vec(), Sum::new([2u8; 16]).to_json());
        let mut summer = Summer::new();
        let wrong = summer.consume(&mut host, &Chunk::to_json(&[1u8; 16], 1, b"x"));
        assert!(matches!(wrong, Err(SummerError::Rejected(m)) if m.contains("invalid chunk.ID")));
    }

    /// One run of documents through `consume` one by one and through
    /// `consume_batch` must fold, publish, store and fail alike.
    fn assert_batch_agrees(stored: &[(StreamId, Vec<u8>)], docs: &[Vec<u8>]) {
        let host_with = || {
            let mut host = MemHost::default();
            for (id, value) in stored {
                host.store.insert(id.to_vec(), value.clone());
            }
            host
        };
        let mut one = host_with();
        let mut singly = Summer::new();
        let mut expected = Ok(());
        for (at, doc) in docs.iter().enumerate() {
            if let Err(err) = singly.consume(&mut one, doc) {
                expected = Err((at, err));
                break;
            }
        }
        let mut many = host_with();
        let mut batched = Summer::new();
        let refs: Vec<&[u8]> = docs.iter().map(Vec::as_slice).collect();
        let got = batched.consume_batch(&mut many, &refs);
        assert_eq!(
            got,
            expected,
            "{:?}",
            docs.iter()
                .map(|d| String::from_utf8_lossy(d))
                .collect::<Vec<_>>()
        );
        assert_eq!(many.published, one.published);
        if got.is_ok() {
            singly.finalize(&mut one).unwrap();
            batched.finalize(&mut many).unwrap();
            assert_eq!(many.store, one.store);
        }
        assert!(
            many.get_manys <= 1 && many.gets == 0,
            "one get_many per run"
        );
    }

    proptest::proptest! {
        #[test]
        fn a_batch_folds_publishes_and_fails_as_chunks_one_by_one(
            steps in proptest::collection::vec((0u8..4, 0u8..10, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..6)), 0..40),
            stored_seq in proptest::collection::vec(0u64..3, 4),
        ) {
            // Four streams, some with a stored sum; steps are mostly the next
            // chunk of a stream, sometimes a gap, a repeat or malformed JSON.
            let stored: Vec<(StreamId, Vec<u8>)> = stored_seq
                .iter()
                .enumerate()
                .filter(|(_, seq)| **seq > 0)
                .map(|(s, seq)| {
                    let id = [s as u8 + 1; 16];
                    let sum = Sum { id, seq_no: *seq, value: 42 };
                    (id, sum.to_json())
                })
                .collect();
            let mut next: Vec<u64> = stored_seq.iter().map(|seq| seq + 1).collect();
            let mut docs = Vec::new();
            for (stream, kind, data) in steps {
                let s = stream as usize;
                let id = [stream + 1; 16];
                let seq = match kind {
                    0 => next[s] + 1,
                    1 => next[s].saturating_sub(1),
                    2 => {
                        docs.push(b"{\"ID\":[1,2],\"SeqNo\":1}".to_vec());
                        continue;
                    }
                    _ => next[s],
                };
                next[s] = seq + 1;
                docs.push(Chunk::to_json(&id, seq, &data));
            }
            assert_batch_agrees(&stored, &docs);
        }
    }

    #[test]
    fn a_batch_loads_its_new_streams_with_one_get_many_and_none_for_cached_ones() {
        let mut host = MemHost::default();
        let mut summer = Summer::new();
        let docs: Vec<Vec<u8>> = (1..=3u8)
            .flat_map(|s| {
                [
                    Chunk::to_json(&[s; 16], 1, b"a"),
                    Chunk::to_json(&[s; 16], 2, b"b"),
                ]
            })
            .collect();
        let refs: Vec<&[u8]> = docs.iter().map(Vec::as_slice).collect();
        summer.consume_batch(&mut host, &refs).unwrap();
        assert_eq!((host.get_manys, host.gets), (1, 0));
        let more = [Chunk::to_json(&[2; 16], 3, b"c")];
        let refs: Vec<&[u8]> = more.iter().map(Vec::as_slice).collect();
        summer.consume_batch(&mut host, &refs).unwrap();
        assert_eq!((host.get_manys, host.gets), (1, 0), "cached: no load");
    }

    #[test]
    fn a_failed_load_is_pinned_on_the_first_chunk_that_needed_it() {
        let mut host = MemHost::default();
        let mut summer = Summer::new();
        summer
            .consume(&mut host, &Chunk::to_json(&[1; 16], 1, b"a"))
            .unwrap();
        host.fail = true;
        let docs = [
            Chunk::to_json(&[1; 16], 2, b"b"),
            Chunk::to_json(&[9; 16], 1, b"c"),
        ];
        let refs: Vec<&[u8]> = docs.iter().map(Vec::as_slice).collect();
        let failed = summer.consume_batch(&mut host, &refs);
        assert_eq!(
            failed,
            Err((
                1,
                SummerError::Host {
                    action: HostAction::Loading,
                    stream: [9; 16],
                    error: "down"
                }
            ))
        );
    }
}
