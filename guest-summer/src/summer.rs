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

use std::collections::HashMap;
use std::collections::hash_map::Entry;

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
        chunk
            .decode_data_into(&mut self.data)
            .map_err(SummerError::Rejected)?;
        let sum = match self.cache.entry(chunk.id) {
            Entry::Occupied(cached) => cached.into_mut(),
            Entry::Vacant(missing) => missing.insert(load(host, &chunk.id)?),
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

/// The stored sum of a stream, or a fresh one.
fn load<H: SummerHost>(host: &mut H, id: &StreamId) -> Result<Sum, SummerError<H::Error>> {
    let stored = host.get(id).map_err(|error| SummerError::Host {
        action: HostAction::Loading,
        stream: *id,
        error,
    })?;
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
    }

    impl SummerHost for MemHost {
        type Error = &'static str;
        fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
            if self.fail {
                return Err("down");
            }
            Ok(self.store.get(key).cloned())
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
}
