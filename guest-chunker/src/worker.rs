//! One chunker worker as a state machine (Gazette's `generate` + `verify`
//! goroutine pair, in the guest's single thread).
//!
//! A worker keeps a set of open streams. Each step it picks one at random,
//! or opens a new one while it still may (Gazette's `prngInt(N+1)` choice),
//! and emits that stream's next chunk: 32 random data bytes for SeqNo
//! 1..=chunks, then an empty final chunk. After emitting a final chunk the
//! worker **waits** for that stream's sum and emits nothing until it is
//! verified, exactly as Gazette's generator blocks on its unbuffered channel;
//! so one worker's sums can never arrive out of order.

use crate::prng::Prng;
use crate::sum::{Chunk, Progress, StreamId, Sum};

/// Random data bytes per data chunk (Gazette's chunker uses 32).
pub const DATA_BYTES: usize = 32;

/// A worker's wait for the sum of the stream it just finished.
#[derive(Debug, Clone)]
pub struct Waiting {
    /// The sum the summer must publish.
    pub expected: Sum,
    /// The chunk partition of the stream (for warnings).
    pub journal: String,
    /// Monotonic time the final chunk became durable, in nanoseconds.
    pub since_ns: u64,
    /// How many warning deadlines have already been logged.
    pub warned: usize,
}

/// A chunk a worker emitted.
#[derive(Debug, Clone)]
pub struct Emitted {
    /// Its stream.
    pub id: StreamId,
    /// Its JSON document (no UUID).
    pub doc: Vec<u8>,
    /// For a final chunk, the sum the stream must end with.
    pub expected: Option<Sum>,
}

/// One worker.
#[derive(Debug, Clone)]
pub struct Worker {
    /// Streams still to open; negative means infinitely many.
    remaining: i64,
    /// Open streams with their running sums.
    open: Vec<Sum>,
    /// Set while the worker waits for a sum.
    pub waiting: Option<Waiting>,
}

impl Worker {
    /// A worker that will open `streams` streams (negative: infinite).
    pub fn new(streams: i64) -> Worker {
        Worker {
            remaining: streams,
            open: Vec::new(),
            waiting: None,
        }
    }

    /// Whether the worker can emit a chunk now: it is not waiting, and it
    /// has an open stream or may open one.
    pub fn can_emit(&self) -> bool {
        self.waiting.is_none() && (self.remaining != 0 || !self.open.is_empty())
    }

    /// Whether the worker is done: every stream opened, finished and verified.
    pub fn is_done(&self) -> bool {
        self.waiting.is_none() && self.remaining == 0 && self.open.is_empty()
    }

    /// Whether `id` is one of the worker's open (unfinished) streams.
    pub fn has_open(&self, id: &StreamId) -> bool {
        self.open.iter().any(|sum| sum.id == *id)
    }

    /// Emits the next chunk, or `None` if the worker cannot emit now.
    pub fn emit(&mut self, prng: &mut Prng, chunks: u32) -> Result<Option<Emitted>, String> {
        if !self.can_emit() {
            return Ok(None);
        }
        let open = self.open.len();
        let choices = if self.remaining != 0 { open + 1 } else { open };
        let index = prng.below(choices);
        if index == open {
            let mut id = [0u8; 16];
            prng.fill(&mut id);
            self.open.push(Sum::new(id));
            if self.remaining > 0 {
                self.remaining -= 1;
            }
        }
        let sum = &mut self.open[index];
        let id = sum.id;
        let seq_no = sum.seq_no + 1;
        let mut data = Vec::new();
        if seq_no <= u64::from(chunks) {
            data.resize(DATA_BYTES, 0);
            prng.fill(&mut data);
        }
        let progress = sum.update(&id, seq_no, &data)?;
        let doc = Chunk::to_json(&id, seq_no, &data);
        let expected = match progress {
            Progress::Open => None,
            Progress::Done => Some(self.open.swap_remove(index)),
        };
        Ok(Some(Emitted { id, doc, expected }))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_stream_has_chunks_plus_one_chunks_the_last_one_empty() {
        // Gazette's TestGenerate: generate(1, 2) gives exactly 3 chunks.
        let mut worker = Worker::new(1);
        let mut prng = Prng::new(1);
        let mut emitted = Vec::new();
        while let Some(chunk) = worker.emit(&mut prng, 2).unwrap() {
            let done = chunk.expected.is_some();
            emitted.push(chunk);
            if done {
                break;
            }
        }
        assert_eq!(emitted.len(), 3);
        let last = Chunk::parse(&emitted[2].doc).unwrap();
        assert_eq!(last.seq_no, 3);
        assert!(last.data.is_none());
        let expected = emitted[2].expected.clone().unwrap();
        assert_eq!(expected.seq_no, 3);
        let mut check = Sum::new(expected.id);
        for chunk in &emitted {
            let chunk = Chunk::parse(&chunk.doc).unwrap();
            check
                .update(&chunk.id, chunk.seq_no, &chunk.decode_data().unwrap())
                .unwrap();
        }
        assert_eq!(check, expected);
    }

    #[test]
    fn a_waiting_worker_emits_nothing_until_its_sum_is_verified() {
        let mut worker = Worker::new(3);
        let mut prng = Prng::new(2);
        loop {
            let chunk = worker.emit(&mut prng, 1).unwrap().unwrap();
            if let Some(expected) = chunk.expected {
                worker.waiting = Some(Waiting {
                    expected,
                    journal: String::new(),
                    since_ns: 0,
                    warned: 0,
                });
                break;
            }
        }
        assert!(!worker.can_emit());
        assert!(worker.emit(&mut prng, 1).unwrap().is_none());
        worker.waiting = None;
        assert!(worker.emit(&mut prng, 1).unwrap().is_some());
    }

    #[test]
    fn a_finite_worker_finishes_after_all_its_streams() {
        let mut worker = Worker::new(2);
        let mut prng = Prng::new(3);
        let mut finals = 0;
        while let Some(chunk) = worker.emit(&mut prng, 4).unwrap() {
            if chunk.expected.is_some() {
                finals += 1;
            }
        }
        assert_eq!(finals, 2);
        assert!(worker.is_done());
    }
}
