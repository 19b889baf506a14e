//! The chunker's main loop (Gazette's `GenerateAndVerifyStreams`), written
//! against the [`Host`] trait so that it runs unchanged in the component and
//! in native unit tests with a simulated broker and clock.
//!
//! 1. List the chunk partitions (`app.gazette.dev/message-type=
//!    stream_sum.Chunk`), sorted by name, for the modulo mapping.
//! 2. Write barrier on `examples/stream-sum/sums`; read sums from its head,
//!    so only sums produced after the start are seen.
//! 3. Each round, every worker that is not waiting emits one chunk; the
//!    round's chunks are published committed in one batch. A worker that
//!    emitted a final chunk then waits for that stream's sum.
//! 4. Sums are read (blocking only when no worker can emit) and matched to
//!    waiting workers by stream id. A wait walks the deadline ladder.
//!
//! Failures (the run stops): a sum whose SeqNo or Value differs from the
//! expected one; beyond Gazette, a second sum of a stream already verified
//! or a sum of one of this run's streams before its final chunk; a wait past
//! the timeout; any host error.

use std::collections::{HashSet, VecDeque};

use crate::ladder::{DEFAULT_TIMEOUT_MS, Ladder, Rung};
use crate::latency::{Latencies, Summary};
use crate::mapping::ModuloMapping;
use crate::prng::Prng;
use crate::sum::{StreamId, Sum, hex};
use crate::worker::{Waiting, Worker};

/// The journal the summers publish final sums to.
pub const SUMS_JOURNAL: &str = "examples/stream-sum/sums";
/// The label selecting chunk partitions: name.
pub const MESSAGE_TYPE_LABEL: &str = "app.gazette.dev/message-type";
/// The label selecting chunk partitions: value.
pub const CHUNK_MESSAGE_TYPE: &str = "stream_sum.Chunk";
/// The UUID flag of acknowledgements.
const ACK_TXN: u16 = 0x2;
/// How many verified streams are remembered to catch duplicate sums (an
/// infinite run forgets the oldest).
const REMEMBERED_STREAMS: usize = 1 << 20;

/// Severity of a log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Progress.
    Info,
    /// A deadline passed.
    Warn,
}

/// A message read from the sums journal.
#[derive(Debug, Clone)]
pub struct SumMessage {
    /// UUID flags.
    pub flags: u16,
    /// Offset of the message in the sums journal.
    pub begin: i64,
    /// The document.
    pub doc: Vec<u8>,
}

/// What the chunker needs from its host. Errors are already described.
pub trait Host {
    /// Names of the chunk partitions.
    fn list_chunk_partitions(&mut self) -> Result<Vec<String>, String>;
    /// A write barrier on `journal`: its write head.
    fn write_barrier(&mut self, journal: &str) -> Result<i64, String>;
    /// Publishes `(journal, doc)` pairs committed; returns once durable.
    fn publish(&mut self, batch: Vec<(String, Vec<u8>)>) -> Result<(), String>;
    /// Opens the read-committed reader of the sums journal at `offset`.
    fn open_sums(&mut self, offset: i64) -> Result<(), String>;
    /// The next message of the sums journal, waiting up to `timeout_ms`.
    fn next_sum(&mut self, timeout_ms: u32) -> Result<Option<SumMessage>, String>;
    /// Monotonic nanoseconds.
    fn now_ns(&mut self) -> u64;
    /// A seed for the PRNG when the config has none.
    fn seed(&mut self) -> u64;
    /// Logs a record.
    fn log(&mut self, level: Level, message: &str);
}

/// The run's parameters.
#[derive(Debug, Clone)]
pub struct Config {
    /// Streams per worker; negative means infinite.
    pub streams: i64,
    /// Data chunks per stream.
    pub chunks: u32,
    /// Workers.
    pub workers: u32,
    /// PRNG seed; `None` asks the host.
    pub seed: Option<u64>,
    /// Final deadline; `None` means 40 s.
    pub timeout_ms: Option<u32>,
}

/// What a run did (all of it, or up to its failure).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Streams whose sum arrived and matched.
    pub streams_verified: u64,
    /// Chunks published.
    pub chunks_published: u64,
    /// Sums read (ACKs excluded), including foreign ones.
    pub sums_read: u64,
    /// Sums of streams this run does not know.
    pub foreign_sums: u64,
    /// Final-chunk-to-verified-sum latency.
    pub latency: Summary,
}

/// Why a run stopped early, and what it had done by then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong (or `the job was cancelled`).
    pub reason: String,
    /// The counts and latencies up to the failure.
    pub partial: Report,
}

/// Runs the chunker to completion (never, for infinite streams, unless it
/// fails or is cancelled).
pub fn run(host: &mut impl Host, config: &Config) -> Result<Report, Failure> {
    let no_partial = |reason: String| Failure {
        reason,
        partial: Report::default(),
    };
    if config.workers == 0 {
        return Err(no_partial(
            "the chunker needs at least one worker".to_string(),
        ));
    }
    let partitions = host.list_chunk_partitions().map_err(no_partial)?;
    let mapping = ModuloMapping::new(partitions).ok_or_else(|| {
        no_partial(format!(
            "no chunk partitions: no journal is labeled {MESSAGE_TYPE_LABEL}={CHUNK_MESSAGE_TYPE}"
        ))
    })?;
    let head = host.write_barrier(SUMS_JOURNAL).map_err(no_partial)?;
    host.open_sums(head).map_err(no_partial)?;
    let seed = match config.seed {
        Some(seed) => seed,
        None => host.seed(),
    };
    host.log(
        Level::Info,
        &format!(
            "chunker starting: {} workers, {} streams per worker, {} chunks per stream, \
             {} partitions, sums from offset {head}, seed {seed}",
            config.workers,
            config.streams,
            config.chunks,
            mapping.partitions().len()
        ),
    );

    let mut run = Run {
        workers: (0..config.workers)
            .map(|_| Worker::new(config.streams))
            .collect(),
        prng: Prng::new(seed),
        ladder: Ladder::new(config.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)),
        verified: Remembered::default(),
        latencies: Latencies::default(),
        report: Report::default(),
    };
    let outcome = loop {
        if let Err(reason) = run.emit_round(host, &mapping, config.chunks) {
            break Err(reason);
        }
        let waiting = run.workers.iter().any(|w| w.waiting.is_some());
        if !waiting {
            if run.workers.iter().all(Worker::is_done) {
                break Ok(());
            }
            continue;
        }
        if let Err(reason) = run.read_sums(host) {
            break Err(reason);
        }
    };
    run.report.latency = run.latencies.summary();
    match outcome {
        Ok(()) => {
            host.log(Level::Info, &format!("chunker done: {:?}", run.report));
            Ok(run.report)
        }
        Err(reason) => Err(Failure {
            reason,
            partial: run.report,
        }),
    }
}

/// The state of one run.
struct Run {
    workers: Vec<Worker>,
    prng: Prng,
    ladder: Ladder,
    verified: Remembered,
    latencies: Latencies,
    report: Report,
}

/// What reading one sum did.
enum Matched {
    /// A waiting worker's sum verified: it may emit again.
    Unblocked,
    /// An ACK or a foreign sum.
    Ignored,
}

impl Run {
    /// One chunk from every worker that can emit, published in one batch;
    /// workers that emitted a final chunk then wait.
    fn emit_round(
        &mut self,
        host: &mut impl Host,
        mapping: &ModuloMapping,
        chunks: u32,
    ) -> Result<(), String> {
        let mut batch = Vec::new();
        let mut finals = Vec::new();
        for (index, worker) in self.workers.iter_mut().enumerate() {
            if let Some(emitted) = worker.emit(&mut self.prng, chunks)? {
                let journal = mapping.map(&emitted.id).to_string();
                if let Some(expected) = emitted.expected {
                    finals.push((index, expected, journal.clone()));
                }
                batch.push((journal, emitted.doc));
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.report.chunks_published += batch.len() as u64;
        host.publish(batch)?;
        // The wait starts once the final chunk is durable.
        let now = host.now_ns();
        for (index, expected, journal) in finals {
            self.workers[index].waiting = Some(Waiting {
                expected,
                journal,
                since_ns: now,
                warned: 0,
            });
        }
        Ok(())
    }

    /// Reads sums until a waiting worker is unblocked, or (while other
    /// workers can emit) until no sum is immediately available.
    fn read_sums(&mut self, host: &mut impl Host) -> Result<(), String> {
        loop {
            let now = host.now_ns();
            self.check_deadlines(host, now)?;
            let can_emit = self.workers.iter().any(Worker::can_emit);
            let timeout_ms = if can_emit {
                0
            } else {
                self.next_deadline_ms(now)
            };
            match host.next_sum(timeout_ms)? {
                None if can_emit => return Ok(()),
                None => continue,
                Some(message) => {
                    if let Matched::Unblocked = self.match_sum(host, &message)? {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn match_sum(&mut self, host: &mut impl Host, message: &SumMessage) -> Result<Matched, String> {
        if message.flags == ACK_TXN {
            return Ok(Matched::Ignored);
        }
        self.report.sums_read += 1;
        let sum = Sum::parse(&message.doc)
            .map_err(|err| format!("{err} at {SUMS_JOURNAL}@{}", message.begin))?;
        let waiting = self.workers.iter_mut().find(|w| {
            w.waiting
                .as_ref()
                .is_some_and(|wait| wait.expected.id == sum.id)
        });
        if let Some(worker) = waiting {
            let Some(wait) = worker.waiting.take() else {
                return Ok(Matched::Ignored);
            };
            if sum != wait.expected {
                return Err(format!(
                    "mis-matched sum! stream {} at {SUMS_JOURNAL}@{}: expected SeqNo {} Value {}, \
                     got SeqNo {} Value {}",
                    hex(&sum.id),
                    message.begin,
                    wait.expected.seq_no,
                    wait.expected.value,
                    sum.seq_no,
                    sum.value
                ));
            }
            let elapsed_ns = host.now_ns().saturating_sub(wait.since_ns);
            self.latencies.record(elapsed_ns / 1_000);
            self.verified.insert(sum.id);
            self.report.streams_verified += 1;
            if self.report.streams_verified.is_multiple_of(1_000) {
                host.log(
                    Level::Info,
                    &format!("{} streams verified", self.report.streams_verified),
                );
            }
            return Ok(Matched::Unblocked);
        }
        if self.verified.contains(&sum.id) {
            return Err(format!(
                "duplicate sum! stream {} was already verified, and its sum was committed again \
                 at {SUMS_JOURNAL}@{}",
                hex(&sum.id),
                message.begin
            ));
        }
        if self.workers.iter().any(|w| w.has_open(&sum.id)) {
            return Err(format!(
                "premature sum! stream {} has a committed sum at {SUMS_JOURNAL}@{} before its \
                 final chunk was published",
                hex(&sum.id),
                message.begin
            ));
        }
        self.report.foreign_sums += 1;
        Ok(Matched::Ignored)
    }

    /// Logs passed warning deadlines; fails past the final one.
    fn check_deadlines(&mut self, host: &mut impl Host, now: u64) -> Result<(), String> {
        for worker in &mut self.workers {
            let Some(wait) = worker.waiting.as_mut() else {
                continue;
            };
            let elapsed = now.saturating_sub(wait.since_ns);
            loop {
                match self.ladder.check(elapsed, wait.warned) {
                    Rung::Waiting => break,
                    Rung::Warn(ms) => {
                        wait.warned += 1;
                        host.log(
                            Level::Warn,
                            &format!(
                                "delay waiting for expected sum: stream {} on {} (SeqNo {}), \
                                 {ms} ms passed",
                                hex(&wait.expected.id),
                                wait.journal,
                                wait.expected.seq_no
                            ),
                        );
                    }
                    Rung::TimedOut => {
                        return Err(format!(
                            "timeout waiting for expected sum: stream {} on {} (SeqNo {}, Value \
                             {}) after {} ms",
                            hex(&wait.expected.id),
                            wait.journal,
                            wait.expected.seq_no,
                            wait.expected.value,
                            self.ladder.timeout_ns() / 1_000_000
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Milliseconds to the nearest rung of any waiting worker (at least 1).
    fn next_deadline_ms(&self, now: u64) -> u32 {
        let nearest_ns = self
            .workers
            .iter()
            .filter_map(|w| w.waiting.as_ref())
            .map(|wait| {
                self.ladder
                    .until_next(now.saturating_sub(wait.since_ns), wait.warned)
            })
            .min()
            .unwrap_or(0);
        u32::try_from(nearest_ns.div_ceil(1_000_000))
            .unwrap_or(u32::MAX)
            .max(1)
    }
}

/// Stream ids already verified, bounded (oldest forgotten first).
#[derive(Debug, Default)]
struct Remembered {
    set: HashSet<StreamId>,
    order: VecDeque<StreamId>,
}

impl Remembered {
    fn insert(&mut self, id: StreamId) {
        if self.set.insert(id) {
            self.order.push_back(id);
        }
        if self.order.len() > REMEMBERED_STREAMS
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
    }

    fn contains(&self, id: &StreamId) -> bool {
        self.set.contains(id)
    }
}

#[cfg(test)]
mod test {
    use std::collections::HashMap;

    use super::*;
    use crate::sum::{Chunk, Progress};

    /// How the simulated summer misbehaves.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Summer {
        Honest,
        CorruptValue,
        DuplicateSums,
        Silent,
        Premature,
    }

    /// A simulated broker + summer with a simulated clock.
    struct FakeHost {
        summer: Summer,
        partitions: Vec<String>,
        sums: HashMap<StreamId, Sum>,
        /// Partition of each stream's chunks, to check the mapping is stable.
        partition_of: HashMap<StreamId, String>,
        queue: VecDeque<SumMessage>,
        offset: i64,
        now_ns: u64,
        logs: Vec<(Level, String)>,
        published: u64,
        opened_at: Option<i64>,
    }

    impl FakeHost {
        fn new(summer: Summer) -> FakeHost {
            FakeHost {
                summer,
                partitions: vec![
                    "c/part-001".into(),
                    "c/part-000".into(),
                    "c/part-002".into(),
                ],
                sums: HashMap::new(),
                partition_of: HashMap::new(),
                queue: VecDeque::new(),
                offset: 0,
                now_ns: 1_000,
                logs: Vec::new(),
                published: 0,
                opened_at: None,
            }
        }

        fn push_sum(&mut self, flags: u16, doc: Vec<u8>) {
            self.offset += doc.len() as i64 + 1;
            self.queue.push_back(SumMessage {
                flags,
                begin: self.offset,
                doc,
            });
        }
    }

    impl Host for FakeHost {
        fn list_chunk_partitions(&mut self) -> Result<Vec<String>, String> {
            Ok(self.partitions.clone())
        }
        fn write_barrier(&mut self, journal: &str) -> Result<i64, String> {
            assert_eq!(journal, SUMS_JOURNAL);
            Ok(4242)
        }
        fn publish(&mut self, batch: Vec<(String, Vec<u8>)>) -> Result<(), String> {
            self.now_ns += 50_000;
            for (journal, doc) in batch {
                self.published += 1;
                let chunk = Chunk::parse(&doc)?;
                let previous = self.partition_of.insert(chunk.id, journal.clone());
                assert!(
                    previous.is_none_or(|p| p == journal),
                    "a stream changed partition"
                );
                assert!(self.partitions.contains(&journal));
                let sum = self
                    .sums
                    .entry(chunk.id)
                    .or_insert_with(|| Sum::new(chunk.id));
                let progress = sum.update(&chunk.id, chunk.seq_no, &chunk.decode_data()?)?;
                let mut sum = sum.clone();
                match (progress, self.summer) {
                    (Progress::Open, Summer::Premature) if chunk.seq_no == 1 => {
                        self.push_sum(0, sum.to_json())
                    }
                    (Progress::Open, _) | (Progress::Done, Summer::Silent) => {}
                    (Progress::Done, Summer::CorruptValue) => {
                        sum.value ^= 1;
                        self.push_sum(0, sum.to_json());
                    }
                    (Progress::Done, Summer::DuplicateSums) => {
                        self.push_sum(0, sum.to_json());
                        self.push_sum(
                            2,
                            br#"{"ID":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"SeqNo":0,"Value":0}"#
                                .to_vec(),
                        );
                        self.push_sum(0, sum.to_json());
                    }
                    (Progress::Done, _) => {
                        self.push_sum(0, sum.to_json());
                        // An acknowledgement follows every transaction.
                        self.push_sum(
                            2,
                            br#"{"ID":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"SeqNo":0,"Value":0}"#
                                .to_vec(),
                        );
                    }
                }
            }
            Ok(())
        }
        fn open_sums(&mut self, offset: i64) -> Result<(), String> {
            self.opened_at = Some(offset);
            Ok(())
        }
        fn next_sum(&mut self, timeout_ms: u32) -> Result<Option<SumMessage>, String> {
            match self.queue.pop_front() {
                Some(message) => {
                    self.now_ns += 10_000;
                    Ok(Some(message))
                }
                None => {
                    self.now_ns += u64::from(timeout_ms) * 1_000_000;
                    Ok(None)
                }
            }
        }
        fn now_ns(&mut self) -> u64 {
            self.now_ns += 1;
            self.now_ns
        }
        fn seed(&mut self) -> u64 {
            99
        }
        fn log(&mut self, level: Level, message: &str) {
            self.logs.push((level, message.to_string()));
        }
    }

    fn config(streams: i64, chunks: u32, workers: u32) -> Config {
        Config {
            streams,
            chunks,
            workers,
            seed: Some(5),
            timeout_ms: None,
        }
    }

    #[test]
    fn an_honest_summer_verifies_every_stream_of_every_worker() {
        let mut host = FakeHost::new(Summer::Honest);
        // A foreign sum (another chunker's stream) is counted and ignored.
        host.push_sum(
            0,
            Sum {
                id: [0xee; 16],
                seq_no: 3,
                value: 1,
            }
            .to_json(),
        );
        let report = run(&mut host, &config(5, 4, 3)).unwrap();
        assert_eq!(report.streams_verified, 15);
        assert_eq!(report.chunks_published, 15 * 5);
        assert_eq!(host.published, 15 * 5);
        assert_eq!(report.sums_read, 16);
        assert_eq!(report.foreign_sums, 1);
        assert_eq!(report.latency.samples, 15);
        assert!(report.latency.max_us > 0);
        assert_eq!(host.opened_at, Some(4242));
        assert!(
            host.logs.iter().all(|(level, _)| *level == Level::Info),
            "{:?}",
            host.logs
        );
    }

    #[test]
    fn a_mismatched_sum_fails_the_run() {
        let mut host = FakeHost::new(Summer::CorruptValue);
        let err = run(&mut host, &config(2, 3, 2)).unwrap_err().reason;
        assert!(err.starts_with("mis-matched sum!"), "{err}");
    }

    #[test]
    fn a_sum_committed_twice_fails_the_run() {
        let mut host = FakeHost::new(Summer::DuplicateSums);
        let failure = run(&mut host, &config(3, 2, 1)).unwrap_err();
        assert!(
            failure.reason.starts_with("duplicate sum!"),
            "{}",
            failure.reason
        );
        // The failure still reports what the run did before it.
        assert_eq!(failure.partial.streams_verified, 1);
        assert!(failure.partial.chunks_published >= 3);
        assert_eq!(failure.partial.latency.samples, 1);
    }

    #[test]
    fn a_sum_before_the_final_chunk_fails_the_run() {
        let mut host = FakeHost::new(Summer::Premature);
        let err = run(&mut host, &config(3, 4, 1)).unwrap_err().reason;
        assert!(err.starts_with("premature sum!"), "{err}");
    }

    #[test]
    fn a_missing_sum_walks_the_ladder_then_times_out_at_forty_seconds() {
        let mut host = FakeHost::new(Summer::Silent);
        let err = run(&mut host, &config(1, 2, 1)).unwrap_err().reason;
        assert!(err.starts_with("timeout waiting for expected sum"), "{err}");
        assert!(err.contains("after 40000 ms"), "{err}");
        let warnings: Vec<&String> = host
            .logs
            .iter()
            .filter(|(level, _)| *level == Level::Warn)
            .map(|(_, m)| m)
            .collect();
        assert_eq!(warnings.len(), 14);
        assert!(warnings[0].ends_with("100 ms passed"), "{}", warnings[0]);
        assert!(
            warnings[13].ends_with("35000 ms passed"),
            "{}",
            warnings[13]
        );
    }

    #[test]
    fn no_partitions_or_no_workers_is_an_error() {
        let mut host = FakeHost::new(Summer::Honest);
        host.partitions.clear();
        assert!(
            run(&mut host, &config(1, 1, 1))
                .unwrap_err()
                .reason
                .contains("no chunk partitions")
        );
        let mut host = FakeHost::new(Summer::Honest);
        assert!(
            run(&mut host, &config(1, 1, 0))
                .unwrap_err()
                .reason
                .contains("at least one worker")
        );
    }
}
