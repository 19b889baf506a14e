//! Measurements of the runtime's hot paths: component loading, instance
//! creation, and the cost of a guest call, one message per call
//! (`consume-message`) versus a batch per call (`consume-messages`).
//!
//! [`measure`] runs them against the embedded guests with in-memory stores
//! and returns the numbers; `weir bench runtime` (or the ignored test at
//! the bottom, `cargo test --release -p weir --lib runtime::bench --
//! --ignored --nocapture`) prints them.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;

use super::guests::SUMMER_WASM;
use super::{GuestApplication, GuestLimits, Runtime, RuntimeConfig, RuntimeError};
use crate::consumer::{AppError, Application, DiscardPublisher, MemoryStore, TxnContext};
use crate::message::{Clock, Envelope, Flags, ProducerId, build_uuid};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Messages per measured run.
    pub messages: usize,
    /// Messages per `consume-messages` call (and per transaction).
    pub batch: usize,
    /// Instances created for the instantiation figure.
    pub instances: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            messages: 200_000,
            batch: 1024,
            instances: 2_000,
        }
    }
}

/// The measured figures.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Size of the summer component.
    pub summer_bytes: usize,
    /// Compiling the summer with Cranelift.
    pub compile: Duration,
    /// Loading the summer from the on-disk cache (deserialize).
    pub load_cached: Duration,
    /// Creating one instance from the pre-linked component (median).
    pub instantiate: Duration,
    /// Summer, one message per call: time per message.
    pub summer_single: Duration,
    /// Summer, `batch` messages per call: time per message.
    pub summer_batch: Duration,
    /// ACK envelopes (the guest returns at once), one per call: the cost of
    /// crossing the boundary.
    pub ack_single: Duration,
    /// ACK envelopes, `batch` per call.
    pub ack_batch: Duration,
    /// Messages per batch.
    pub batch: usize,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "summer component           {:>10} bytes",
            self.summer_bytes
        )?;
        writeln!(
            f,
            "compile (cranelift)        {:>10.2} ms",
            ms(self.compile)
        )?;
        writeln!(
            f,
            "load from disk cache       {:>10.3} ms",
            ms(self.load_cached)
        )?;
        writeln!(
            f,
            "instantiate (median)       {:>10.1} µs",
            us(self.instantiate)
        )?;
        writeln!(
            f,
            "consume-message            {:>10.3} µs/message",
            us(self.summer_single)
        )?;
        writeln!(
            f,
            "consume-messages ({:>4})    {:>10.3} µs/message ({:.2}x)",
            self.batch,
            us(self.summer_batch),
            self.summer_single.as_secs_f64() / self.summer_batch.as_secs_f64().max(1e-12)
        )?;
        writeln!(
            f,
            "empty call (ACK)           {:>10.3} µs/message",
            us(self.ack_single)
        )?;
        writeln!(
            f,
            "empty batch (ACK, {:>4})    {:>10.3} µs/message ({:.2}x)",
            self.batch,
            us(self.ack_batch),
            self.ack_single.as_secs_f64() / self.ack_batch.as_secs_f64().max(1e-12)
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Runs every measurement (a few seconds).
pub fn measure(config: &BenchConfig) -> Result<BenchReport, RuntimeError> {
    let cache = tempfile::tempdir().map_err(|source| RuntimeError::Cache {
        path: std::env::temp_dir(),
        source,
    })?;
    let cached = RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    };

    let started = Instant::now();
    Runtime::new(cached.clone())?.consumer_module(SUMMER_WASM)?;
    let compile = started.elapsed();
    let runtime = Runtime::new(cached)?;
    let started = Instant::now();
    let module = runtime.consumer_module(SUMMER_WASM)?;
    let load_cached = started.elapsed();

    let mut app = module.application("bench", GuestLimits::default())?;
    let mut samples = Vec::with_capacity(config.instances);
    for _ in 0..config.instances {
        let started = Instant::now();
        app.reset();
        samples.push(started.elapsed());
    }
    samples.sort();
    let instantiate = samples.get(samples.len() / 2).copied().unwrap_or_default();

    let envelopes = chunks(config.messages);
    let batch = config.batch.max(1);
    let single = run(&mut app, &envelopes, batch, Mode::Single).map_err(bench_error)?;
    let batched = run(&mut app, &envelopes, batch, Mode::Batch).map_err(bench_error)?;
    let acks = acks(config.messages);
    let ack_single = run(&mut app, &acks, batch, Mode::Single).map_err(bench_error)?;
    let ack_batch = run(&mut app, &acks, batch, Mode::Batch).map_err(bench_error)?;
    let per = |total: Duration| total / u32::try_from(envelopes.len().max(1)).unwrap_or(u32::MAX);
    Ok(BenchReport {
        summer_bytes: SUMMER_WASM.len(),
        compile,
        load_cached,
        instantiate,
        summer_single: per(single),
        summer_batch: per(batched),
        ack_single: per(ack_single),
        ack_batch: per(ack_batch),
        batch,
    })
}

fn bench_error(err: AppError) -> RuntimeError {
    RuntimeError::Config(format!("the benchmark's guest failed: {err}"))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Single,
    Batch,
}

/// Feeds `envelopes` through a fresh store, `batch` messages per
/// transaction; the time of the guest calls only.
fn run(
    app: &mut GuestApplication,
    envelopes: &[Envelope],
    batch: usize,
    mode: Mode,
) -> Result<Duration, AppError> {
    app.reset();
    let mut store = MemoryStore::default();
    let mut publisher = DiscardPublisher;
    let mut txn = TxnContext {
        shard: "bench",
        store: &mut store,
        publisher: &mut publisher,
    };
    let started = Instant::now();
    for run in envelopes.chunks(batch) {
        match mode {
            Mode::Single => {
                for envelope in run {
                    app.consume_message(&mut txn, envelope)?;
                }
            }
            Mode::Batch => app
                .consume_messages(&mut txn, run)
                .map_err(|(_, err)| err)?,
        }
        app.finalize_txn(&mut txn)?;
    }
    Ok(started.elapsed())
}

/// Stream-sum chunks: streams of 99 data chunks (32 bytes) and a final one,
/// 64 streams interleaved.
fn chunks(count: usize) -> Vec<Envelope> {
    let journal: Arc<str> = Arc::from("examples/stream-sum/chunks/part-000");
    let data = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let mut seq_nos = [0u64; 64];
    let mut generation = [0u8; 64];
    (0..count)
        .map(|index| {
            let lane = index % 64;
            if seq_nos[lane] == 100 {
                seq_nos[lane] = 0;
                generation[lane] = generation[lane].wrapping_add(1);
            }
            seq_nos[lane] += 1;
            let seq_no = seq_nos[lane];
            let mut id = [0u8; 16];
            id[0] = lane as u8;
            id[1] = generation[lane];
            let data = if seq_no < 100 { format!("\"{data}\"") } else { "null".to_string() };
            let ids: Vec<String> = id.iter().map(u8::to_string).collect();
            let doc = format!(
                "{{\"UUID\":\"7f7e1d9a-1dd2-11b2-8000-010203040506\",\"ID\":[{}],\"SeqNo\":{seq_no},\"Data\":{data}}}",
                ids.join(",")
            );
            let begin = index as i64 * 200;
            let uuid = build_uuid(ProducerId([1; 6]), Clock((index as u64 + 1) << 4), Flags::OutsideTxn);
            Envelope::new(journal.clone(), begin, begin + doc.len() as i64 + 1, uuid, Bytes::from(doc))
        })
        .collect()
}

/// Acknowledgements, which a consumer skips at once.
fn acks(count: usize) -> Vec<Envelope> {
    let journal: Arc<str> = Arc::from("examples/stream-sum/chunks/part-000");
    let doc = Bytes::from_static(br#"{"UUID":"7f7e1d9a-1dd2-11b2-8002-010203040506"}"#);
    (0..count)
        .map(|index| {
            let begin = index as i64 * 48;
            let uuid = build_uuid(
                ProducerId([1; 6]),
                Clock((index as u64 + 1) << 4),
                Flags::AckTxn,
            );
            Envelope::new(journal.clone(), begin, begin + 48, uuid, doc.clone())
        })
        .collect()
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn benchmark_chunks_form_valid_streams() {
        let envelopes = chunks(300);
        let mut app = crate::runtime::testing::runtime()
            .consumer_module(SUMMER_WASM)
            .unwrap()
            .application("b", GuestLimits::default())
            .unwrap();
        let mut recorded = crate::runtime::testing::Txn::default();
        app.consume_messages(&mut recorded.context(), &envelopes)
            .expect("no gaps");
        app.finalize_txn(&mut recorded.context()).unwrap();
        // 300 messages over 64 lanes: lanes 0..=43 reach SeqNo 5, none ends.
        assert!(recorded.publisher.published.is_empty());
        let envelopes = chunks(64 * 100);
        app.reset();
        let mut recorded = crate::runtime::testing::Txn::default();
        app.consume_messages(&mut recorded.context(), &envelopes)
            .expect("no gaps");
        assert_eq!(recorded.publisher.published.len(), 64);
    }

    #[test]
    #[ignore = "a benchmark: run with --ignored --nocapture"]
    fn print_runtime_benchmark() {
        let report = measure(&BenchConfig::default()).expect("benchmark");
        println!("{report}");
    }
}
