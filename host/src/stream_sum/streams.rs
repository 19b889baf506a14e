//! [`StreamGenerator`]: interleaved stream-sum streams shaped as Gazette's
//! chunker makes them (`GenerateAndVerifyStreams`'s `generate`), from a seed,
//! for benchmarks and tests that feed summers without the chunker guest.
//!
//! Each step picks one of the N open streams, or (while streams remain to
//! open) a new one as the (N+1)-th choice, uniformly; a new stream gets a
//! random 16-byte id. A stream has `chunks` data chunks of 32 random bytes
//! (SeqNo 1..=chunks) and one empty final chunk (SeqNo chunks+1), after
//! which its expected final [`Sum`] is known. As in Gazette, the number of
//! open streams settles around `chunks`, so chunks of many streams
//! interleave. The same seed gives the same chunks.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use guest_summer::sum::{Chunk, Progress, StreamId, Sum};

/// Bytes of data per data chunk (Gazette's chunker).
pub const CHUNK_DATA_BYTES: usize = 32;

/// One chunk of a generated stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedChunk {
    /// The stream.
    pub id: StreamId,
    /// The chunk's SeqNo, from 1.
    pub seq_no: u64,
    /// The chunk document (Gazette's JSON, without a `UUID`).
    pub doc: Vec<u8>,
    /// For a stream's final chunk: the sum the summer must publish.
    pub final_sum: Option<Sum>,
}

/// Generates streams; see the module docs. An iterator that ends once
/// `streams` streams have all been generated to their final chunk.
#[derive(Debug)]
pub struct StreamGenerator {
    rng: StdRng,
    open: Vec<Sum>,
    /// Streams still to open.
    remaining: u64,
    chunks: u64,
}

impl StreamGenerator {
    /// `streams` streams of `chunks` data chunks each (plus a final chunk),
    /// random from `seed`.
    pub fn new(seed: u64, streams: u64, chunks: u32) -> StreamGenerator {
        StreamGenerator {
            rng: StdRng::seed_from_u64(seed),
            open: Vec::new(),
            remaining: streams,
            chunks: u64::from(chunks),
        }
    }

    /// Streams currently open (begun and not yet final).
    pub fn open_streams(&self) -> usize {
        self.open.len()
    }
}

impl Iterator for StreamGenerator {
    type Item = GeneratedChunk;

    fn next(&mut self) -> Option<GeneratedChunk> {
        let choices = self.open.len() + usize::from(self.remaining > 0);
        if choices == 0 {
            return None;
        }
        let pick = self.rng.random_range(0..choices);
        if pick == self.open.len() {
            self.remaining -= 1;
            self.open.push(Sum::new(self.rng.random()));
        }
        let sum = &mut self.open[pick];
        let seq_no = sum.seq_no + 1;
        let mut data = [0u8; CHUNK_DATA_BYTES];
        let data: &[u8] = if seq_no <= self.chunks {
            self.rng.fill(&mut data);
            &data
        } else {
            &[]
        };
        let id = sum.id;
        let progress = sum
            .update(&id, seq_no, data)
            .expect("the generator feeds each sum its own id and next SeqNo");
        let doc = Chunk::to_json(&id, seq_no, data);
        let final_sum = match progress {
            Progress::Open => None,
            Progress::Done => Some(self.open.swap_remove(pick)),
        };
        Some(GeneratedChunk {
            id,
            seq_no,
            doc,
            final_sum,
        })
    }
}

#[cfg(test)]
mod test {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn every_stream_runs_its_chunks_in_order_and_ends_with_its_sum() {
        let (streams, chunks) = (50u64, 7u32);
        let mut sums: HashMap<StreamId, Sum> = HashMap::new();
        let mut finals = 0;
        let mut max_open = 0;
        let mut generator = StreamGenerator::new(1, streams, chunks);
        while let Some(chunk) = generator.next() {
            max_open = max_open.max(generator.open_streams());
            let parsed = Chunk::parse(&chunk.doc).expect("a chunk document");
            assert_eq!((parsed.id, parsed.seq_no), (chunk.id, chunk.seq_no));
            let data = parsed.decode_data().expect("base64 data");
            let is_final = chunk.seq_no == u64::from(chunks) + 1;
            assert_eq!(data.is_empty(), is_final);
            assert_eq!(chunk.final_sum.is_some(), is_final);
            let sum = sums.entry(chunk.id).or_insert_with(|| Sum::new(chunk.id));
            sum.update(&chunk.id, chunk.seq_no, &data)
                .expect("SeqNo in order");
            if let Some(expected) = chunk.final_sum {
                assert_eq!(*sum, expected);
                finals += 1;
            }
        }
        assert_eq!(finals, streams);
        assert_eq!(sums.len() as u64, streams);
        assert!(max_open > 1, "streams interleave");
    }

    #[test]
    fn the_same_seed_gives_the_same_chunks() {
        let a: Vec<GeneratedChunk> = StreamGenerator::new(9, 20, 3).collect();
        let b: Vec<GeneratedChunk> = StreamGenerator::new(9, 20, 3).collect();
        let c: Vec<GeneratedChunk> = StreamGenerator::new(10, 20, 3).collect();
        assert_eq!(a.len(), 20 * 4);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
