//! `weir bench summer`: the stream-sum summer as a WASM component versus the
//! same logic compiled natively, each run by real shards on an embedded
//! broker (fsync on), with RocksDB stores and exactly-once commits.
//!
//! **Throughput.** For each summer, fresh chunk partitions are prefilled
//! with the same Gazette-shaped streams (committed publishing through
//! [`Publisher`]); then one shard per partition is started, and the clock
//! runs from the shards' start until every shard has committed a
//! transaction that read through its partition's write head. Both runs
//! include the same store opening, transactions, recovery-log commits and
//! ACKs, so their ratio is the cost of the sandbox in the whole pipeline.
//! Every committed sum is then checked against the generator's (exactly
//! once each), so a benchmark that measured a broken run fails instead.
//!
//! **The summers alone.** The same chunks, as envelopes in memory, fed to
//! each summer directly (batches of [`APP_BATCH`] per call and per
//! transaction, an in-memory store, published sums discarded): the cost per
//! chunk of the application itself, which explains the pipeline ratio.
//!
//! **Latency.** WASM summer shards run while a publisher offers chunks at a
//! fixed rate (`--rate` chunks/s for `--duration` s, paced in
//! 5 ms ticks, each tick's batch flushed). For each stream's final
//! chunk, the latency is from the moment its append is durable (its flush
//! returned) to the moment its sum is read committed from the sums journal
//! ([`ReadCommitted`], so after the summer's commit and ACK).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;

use super::stream_sum::names;
use crate::broker::protocol::{AppendRequest, JournalChange, JournalClient};
use crate::broker::spec::{JournalSpec, LabelSet};
use crate::broker::{Broker, BrokerConfig};
use crate::consumer::{
    AppError, AppFactory, Application, DiscardPublisher, MemoryStore, ShardConfig, ShardHandle,
    ShardSpec, ShardStatus, Source, TxnContext, spawn_shard,
};
use crate::message::{
    AtomicClock, Envelope, Flags, ProducerId, Publisher, ReadCommitted, build_uuid, frame,
    modulo_mapping,
};
use crate::runtime::{ConsumerModule, GuestLimits, Runtime, RuntimeConfig, guests};
use crate::stream_sum::sum::{StreamId, Sum};
use crate::stream_sum::{NativeSummer, SUMS_JOURNAL, StreamGenerator};

/// Chunks published between two flushes while prefilling.
const PREFILL_FLUSH_EVERY: usize = 20_000;
/// Pacing period of the latency phase's publisher.
const PACE_TICK: Duration = Duration::from_millis(5);
/// Chunks per call and per transaction when the summers run alone.
const APP_BATCH: usize = 1024;
/// Longest wait for the last sums of a phase.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// WASM summer versus native summer: throughput and latency.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  weir bench summer
  weir bench summer --chunks-total 500000 --partitions 8 --rounds 3
  weir bench summer --rate 5000 --duration 20
  weir bench summer --rate 0                  # throughput only")]
pub struct BenchSummer {
    #[command(flatten)]
    shape: RunShape,
    /// Throughput rounds; summers alternate which runs first; the median of
    /// the rounds' ratios is reported, and the best round of each.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Run the throughput rounds of this summer only (for profiling one of
    /// them; no ratio is printed).
    #[arg(long, value_enum)]
    only: Option<Summer>,
    /// Offered load of the latency phase, in chunks/s (0 skips the phase).
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// Length of the latency phase, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration: u64,
    /// Seed of the generated streams (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Directory for the benchmark's data (default: a new temporary
    /// directory, removed afterwards).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// The size of a throughput run (shared with `weir bench limits`).
#[derive(Debug, Args)]
pub(super) struct RunShape {
    /// Chunks per throughput run, over all partitions (rounded down to
    /// whole streams).
    #[arg(long, default_value_t = 200_000)]
    chunks_total: u64,
    /// Chunk partitions, one shard each.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub(super) partitions: u32,
    /// Data chunks per stream (each stream also has an empty final chunk).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) chunks: u32,
}

impl RunShape {
    /// Streams per run, chunks per stream (with the final one), and chunks
    /// per run.
    pub(super) fn sizes(&self) -> (u64, u64, u64) {
        let per_stream = u64::from(self.chunks) + 1;
        let streams = (self.chunks_total / per_stream).max(1);
        (streams, per_stream, streams * per_stream)
    }
}

/// Which summer a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Summer {
    Wasm,
    Native,
}

impl Summer {
    fn name(self) -> &'static str {
        match self {
            Summer::Wasm => "wasm",
            Summer::Native => "native",
        }
    }
}

/// One throughput run.
pub(super) struct RunStats {
    pub(super) elapsed: Duration,
    pub(super) transactions: u64,
    /// CPU time of the whole process during the run (every thread: shards,
    /// broker, RocksDB), which tells a CPU-bound run from one that waits.
    pub(super) cpu: Duration,
}

impl RunStats {
    pub(super) fn rate(&self, chunks: u64) -> f64 {
        chunks as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// CPU time per chunk, in µs.
    pub(super) fn cpu_per_chunk(&self, chunks: u64) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / chunks.max(1) as f64
    }
}

/// CPU time used by this process so far, all threads.
pub(super) fn process_cpu_time() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(time.tv_sec).unwrap_or(0),
        u32::try_from(time.tv_nsec).unwrap_or(0),
    )
}

/// A set of chunk partitions with their shard specs.
struct Partitions {
    /// `bench/summer/{name}`: prefix of the journals and of the shards' data.
    name: String,
    journals: Vec<String>,
    specs: Vec<ShardSpec>,
}

/// What the benchmark shares between phases (and `weir bench limits`
/// with it).
pub(super) struct Bench {
    dir: PathBuf,
    broker: Broker,
    client: Arc<dyn JournalClient>,
    clock: Arc<AtomicClock>,
    /// The WASM summer.
    pub(super) module: ConsumerModule,
    /// The limits its instances run under.
    pub(super) limits: GuestLimits,
    partitions: u32,
}

impl BenchSummer {
    /// Runs both phases and prints the figures.
    pub async fn execute(self) -> Result<()> {
        let (dir, _temp) = super::data_dir_or_temp(self.data_dir.as_deref(), "weir-bench-summer-")?;
        let bench = Bench::open(dir, self.shape.partitions).await?;
        let seed = self.seed.unwrap_or_else(rand::random);
        let result = self.phases(&bench, seed).await;
        bench.shutdown().await;
        result
    }

    async fn phases(&self, bench: &Bench, seed: u64) -> Result<()> {
        let (streams, per_stream, chunks) = self.shape.sizes();
        println!(
            "summer: {} partitions, {chunks} chunks per run ({streams} streams of {per_stream} \
             chunks), RocksDB stores, exactly-once commits, seed {seed}",
            self.shape.partitions
        );

        let alone = summers_alone(&bench.module, seed, streams, self.shape.chunks).await?;
        println!(
            "  summers alone (in memory, batches of {APP_BATCH}): wasm {:.3} µs/chunk, native \
             {:.3} µs/chunk ({:.2}x)",
            alone.wasm.as_secs_f64() * 1e6 / chunks as f64,
            alone.native.as_secs_f64() * 1e6 / chunks as f64,
            alone.native.as_secs_f64() / alone.wasm.as_secs_f64().max(1e-12),
        );

        let mut best: HashMap<&'static str, RunStats> = HashMap::new();
        // Per round: (wasm rate / native rate, native cpu / wasm cpu). The
        // two runs of a round are back to back, so their ratio drifts less
        // with the machine's load than either rate does.
        let mut pairs: Vec<(f64, f64)> = Vec::new();
        for round in 0..self.rounds {
            let order = if round % 2 == 0 {
                [Summer::Wasm, Summer::Native]
            } else {
                [Summer::Native, Summer::Wasm]
            };
            let mut this_round: HashMap<&'static str, (f64, f64)> = HashMap::new();
            for summer in order {
                if self.only.is_some_and(|only| only != summer) {
                    continue;
                }
                let name = format!("r{round}-{}", summer.name());
                let (stats, prefill) = bench
                    .throughput(summer, &name, seed, streams, self.shape.chunks)
                    .await
                    .with_context(|| format!("the {} summer", summer.name()))?;
                println!(
                    "  {:<6} round {}  {chunks} chunks in {:.2} s = {:>8.0} chunks/s, cpu {:.2} \
                     µs/chunk, {} transactions (prefill {:.0} chunks/s)",
                    summer.name(),
                    round + 1,
                    stats.elapsed.as_secs_f64(),
                    stats.rate(chunks),
                    stats.cpu_per_chunk(chunks),
                    stats.transactions,
                    chunks as f64 / prefill.as_secs_f64().max(1e-9),
                );
                this_round.insert(
                    summer.name(),
                    (stats.rate(chunks), stats.cpu_per_chunk(chunks)),
                );
                let slot = best.entry(summer.name()).or_insert_with(|| RunStats {
                    elapsed: Duration::MAX,
                    transactions: 0,
                    cpu: Duration::ZERO,
                });
                if stats.elapsed < slot.elapsed {
                    *slot = stats;
                }
            }
            if let (Some(wasm), Some(native)) = (
                this_round.get(Summer::Wasm.name()),
                this_round.get(Summer::Native.name()),
            ) {
                pairs.push((wasm.0 / native.0.max(1e-9), native.1 / wasm.1.max(1e-12)));
            }
        }
        if !pairs.is_empty() {
            let rate = |summer: Summer| best.get(summer.name()).map_or(0.0, |s| s.rate(chunks));
            let (wasm, native) = (rate(Summer::Wasm), rate(Summer::Native));
            let rates: Vec<f64> = pairs.iter().map(|pair| pair.0).collect();
            let cpus: Vec<f64> = pairs.iter().map(|pair| pair.1).collect();
            println!(
                "  wasm / native  {:.2} median of {} round{} ({}; target >= 0.90); cpu per chunk \
                 native / wasm {:.2} median; best rounds {wasm:.0} vs {native:.0} chunks/s ({:.2})",
                median(&rates),
                self.rounds,
                if self.rounds == 1 { "" } else { "s" },
                spread(&rates),
                median(&cpus),
                wasm / native.max(1e-9),
            );
        }

        if self.rate > 0 {
            let duration = Duration::from_secs(self.duration);
            let report = bench
                .latency(self.rate, duration, self.shape.chunks, seed.wrapping_add(1))
                .await?;
            report.print(self.rate, duration);
        }
        Ok(())
    }
}

/// The median of `values` (0 when empty).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// `min–max` of `values`, or the one value.
fn spread(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.len() < 2 {
        format!("{min:.2}")
    } else {
        format!("{min:.2}–{max:.2}")
    }
}

fn labels(message_type: &str) -> LabelSet {
    let mut set = LabelSet::new();
    set.insert(names::CONTENT_TYPE, names::NDJSON);
    set.insert(names::MESSAGE_TYPE, message_type);
    set
}

impl Bench {
    /// Opens a broker in `dir` with the sums journal, and compiles the
    /// summer on a default runtime (its instances run under default limits).
    pub(super) async fn open(dir: PathBuf, partitions: u32) -> Result<Bench> {
        let broker = Broker::open(dir.join("broker"), BrokerConfig::default())
            .await
            .context("opening the broker")?;
        let client: Arc<dyn JournalClient> = Arc::new(broker.clone());
        client
            .apply(vec![JournalChange::Upsert(
                JournalSpec::new(SUMS_JOURNAL).with_labels(labels(names::SUM_TYPE)),
            )])
            .await
            .context("creating the sums journal")?;
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(dir.join("module-cache")),
            ..RuntimeConfig::default()
        })
        .context("starting the wasm runtime")?;
        let module = runtime
            .consumer_module(guests::SUMMER_WASM)
            .context("loading the summer component")?;
        Ok(Bench {
            dir,
            broker,
            client,
            clock: Arc::new(AtomicClock::now()),
            module,
            limits: GuestLimits::default(),
            partitions,
        })
    }

    /// Shuts the broker down.
    pub(super) async fn shutdown(&self) {
        self.broker.shutdown().await;
    }

    /// One throughput run of `summer` over fresh partitions named `name`:
    /// prefill them with `streams` generated streams, time the shards until
    /// they have read through, and check every committed sum. Returns the
    /// run and the time the prefill took.
    pub(super) async fn throughput(
        &self,
        summer: Summer,
        name: &str,
        seed: u64,
        streams: u64,
        chunks: u32,
    ) -> Result<(RunStats, Duration)> {
        let partitions = self.create_partitions(name).await?;
        let started = Instant::now();
        let (heads, expected) = self.prefill(&partitions, seed, streams, chunks).await?;
        let prefill = started.elapsed();
        let sums_from = self.broker.write_head(SUMS_JOURNAL)?;
        let stats = self.run_shards(summer, &partitions, &heads).await?;
        self.check_sums(sums_from, &expected)
            .await
            .context("checking the sums")?;
        Ok((stats, prefill))
    }

    /// Creates the chunk partitions and recovery logs of `bench/summer/{name}`.
    async fn create_partitions(&self, name: &str) -> Result<Partitions> {
        let name = format!("bench/summer/{name}");
        let mut changes = Vec::new();
        let mut journals = Vec::new();
        let mut specs = Vec::new();
        for index in 0..self.partitions {
            let journal = format!("{name}/chunks/part-{index:03}");
            let id = format!("chunks-part-{index:03}");
            let recovery_logs = format!("{name}/recovery-logs");
            let mut log_labels = LabelSet::new();
            log_labels.insert(names::CONTENT_TYPE, names::RECOVERY_LOG);
            changes.push(JournalChange::Upsert(
                JournalSpec::new(&journal).with_labels(labels(names::CHUNK_TYPE)),
            ));
            changes.push(JournalChange::Upsert(
                JournalSpec::new(format!("{recovery_logs}/{id}")).with_labels(log_labels),
            ));
            let spec = ShardSpec {
                id,
                sources: vec![Source {
                    journal: journal.clone(),
                    min_offset: 0,
                }],
                recovery_log_prefix: recovery_logs,
                max_txn_duration: Duration::from_secs(1),
                min_txn_duration: Duration::ZERO,
                disable: false,
                hot_standbys: 0,
                disable_wait_for_ack: false,
                ring_buffer_size: 0,
                read_channel_size: 0,
                labels: Default::default(),
            };
            spec.validate()?;
            journals.push(journal);
            specs.push(spec);
        }
        self.client
            .apply(changes)
            .await
            .with_context(|| format!("creating {name}"))?;
        Ok(Partitions {
            name,
            journals,
            specs,
        })
    }

    /// Publishes `streams` generated streams to `partitions` (FNV-1a modulo
    /// mapping of the stream id, as Gazette's chunker does); returns each
    /// partition's write head and the expected final sums.
    async fn prefill(
        &self,
        partitions: &Partitions,
        seed: u64,
        streams: u64,
        chunks: u32,
    ) -> Result<(Vec<i64>, HashMap<StreamId, Sum>)> {
        let publisher = self.publisher();
        let mut expected = HashMap::new();
        for (index, chunk) in StreamGenerator::new(seed, streams, chunks).enumerate() {
            let journal = modulo_mapping(&chunk.id, &partitions.journals)?;
            publisher.publish_committed(journal, &chunk.doc)?;
            if let Some(sum) = chunk.final_sum {
                expected.insert(sum.id, sum);
            }
            if (index + 1) % PREFILL_FLUSH_EVERY == 0 {
                publisher.flush().await?;
            }
        }
        publisher.flush().await?;
        let heads = partitions
            .journals
            .iter()
            .map(|journal| self.broker.write_head(journal))
            .collect::<Result<Vec<i64>, _>>()?;
        Ok((heads, expected))
    }

    fn publisher(&self) -> Publisher {
        Publisher::new(
            self.client.clone(),
            self.clock.clone(),
            tokio::runtime::Handle::current(),
        )
    }

    /// How shards create `summer` instances.
    fn factory(&self, summer: Summer, shard: &str) -> AppFactory {
        match summer {
            Summer::Native => Arc::new(|| Ok(Box::new(NativeSummer::new()) as _)),
            Summer::Wasm => {
                let module = self.module.clone();
                let limits = self.limits.clone();
                let shard = shard.to_string();
                Arc::new(move || {
                    let app = module
                        .application(&shard, limits.clone())
                        .map_err(|err| AppError::Crashed(err.to_string()))?;
                    Ok(Box::new(app) as _)
                })
            }
        }
    }

    fn spawn(&self, summer: Summer, partitions: &Partitions) -> Vec<ShardHandle> {
        let mut config = ShardConfig::new(self.dir.join("shards").join(&partitions.name));
        if summer == Summer::Wasm {
            config.module_digest = self.module.digest().to_string();
        }
        partitions
            .specs
            .iter()
            .map(|spec| {
                let app = self.factory(summer, &spec.id);
                spawn_shard(
                    spec.clone(),
                    self.client.clone(),
                    app,
                    config.clone(),
                    self.clock.clone(),
                )
            })
            .collect()
    }

    /// Starts one shard per partition and times them until each has read
    /// through its head.
    async fn run_shards(
        &self,
        summer: Summer,
        partitions: &Partitions,
        heads: &[i64],
    ) -> Result<RunStats> {
        let started = Instant::now();
        let cpu_before = process_cpu_time();
        let shards = self.spawn(summer, partitions);
        for ((shard, journal), head) in shards.iter().zip(&partitions.journals).zip(heads) {
            shard
                .wait_read_through(journal, *head)
                .await
                .map_err(|status| {
                    anyhow!(
                        "shard {} of {} ended: {status:?}",
                        shard.spec.id,
                        partitions.name
                    )
                })?;
        }
        let elapsed = started.elapsed();
        let cpu = process_cpu_time().saturating_sub(cpu_before);
        let transactions = shards
            .iter()
            .map(|shard| shard.watch_progress().borrow().committed_txns)
            .sum();
        for shard in shards {
            shard.stop().await;
        }
        Ok(RunStats {
            elapsed,
            transactions,
            cpu,
        })
    }

    /// Reads the sums journal from `from` to its head, committed only, and
    /// checks that it holds exactly the `expected` sums, each once.
    async fn check_sums(&self, from: i64, expected: &HashMap<StreamId, Sum>) -> Result<()> {
        let barrier = self
            .client
            .append(AppendRequest {
                journal: SUMS_JOURNAL.into(),
                ..Default::default()
            })
            .await?;
        let mut reader = ReadCommitted::new(
            self.client.clone(),
            vec![(SUMS_JOURNAL.to_string(), from)],
            &Default::default(),
            crate::limits::DEFAULT_RING_BUFFER_SIZE,
            crate::limits::DEFAULT_READ_CHANNEL_SIZE,
        )?;
        let mut seen: HashMap<StreamId, Sum> = HashMap::with_capacity(expected.len());
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        loop {
            // Read-through passes a committed message only once delivered.
            let checkpoint = reader.checkpoint(Duration::from_secs(86_400));
            let through = checkpoint
                .sources
                .get(SUMS_JOURNAL)
                .map_or(from, |s| s.read_through);
            if through >= barrier.end {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the sums were not read through {} within {DRAIN_TIMEOUT:?}",
                    barrier.end
                );
            }
            let Ok(env) = tokio::time::timeout(Duration::from_millis(50), reader.next()).await
            else {
                continue;
            };
            let env = env?;
            if env.is_ack() {
                continue;
            }
            let sum = Sum::parse(&env.doc).map_err(|err| anyhow!("{err} at {}", env.begin))?;
            if expected.get(&sum.id) != Some(&sum) {
                bail!("unexpected sum {sum:?} at offset {}", env.begin);
            }
            if seen.insert(sum.id, sum).is_some() {
                bail!("a sum was committed twice (offset {})", env.begin);
            }
        }
        if seen.len() != expected.len() {
            bail!("{} of {} sums were committed", seen.len(), expected.len());
        }
        Ok(())
    }

    /// The latency phase; see the module docs.
    async fn latency(
        &self,
        rate: u64,
        duration: Duration,
        chunks: u32,
        seed: u64,
    ) -> Result<LatencyReport> {
        let partitions = self.create_partitions("latency").await?;
        let shards = self.spawn(Summer::Wasm, &partitions);
        for shard in &shards {
            let mut status = shard.watch_status();
            let ready = status
                .wait_for(|s| !matches!(s, ShardStatus::Recovering))
                .await
                .map_err(|_| anyhow!("shard {} vanished", shard.spec.id))?
                .clone();
            if ready != ShardStatus::Primary {
                bail!("shard {} did not start: {ready:?}", shard.spec.id);
            }
        }

        // Committed sums, timestamped as they are read.
        let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(StreamId, Instant)>();
        let mut reader = ReadCommitted::new(
            self.client.clone(),
            vec![(
                SUMS_JOURNAL.to_string(),
                self.broker.write_head(SUMS_JOURNAL)?,
            )],
            &Default::default(),
            crate::limits::DEFAULT_RING_BUFFER_SIZE,
            crate::limits::DEFAULT_READ_CHANNEL_SIZE,
        )?;
        let pump = tokio::spawn(async move {
            loop {
                let env = reader.next().await?;
                if env.is_ack() {
                    continue;
                }
                let sum = Sum::parse(&env.doc).map_err(|err| anyhow!("{err} at {}", env.begin))?;
                if seen_tx.send((sum.id, Instant::now())).is_err() {
                    return Ok::<(), anyhow::Error>(());
                }
            }
        });

        // Paced publishing: at each tick, publish what the rate allows so
        // far, flush, and stamp the final chunks of the batch as durable.
        let publisher = self.publisher();
        let mut generator = StreamGenerator::new(seed, u64::MAX, chunks);
        let mut durable: HashMap<StreamId, Instant> = HashMap::new();
        let mut published = 0u64;
        let mut ticker = tokio::time::interval(PACE_TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let started = Instant::now();
        while started.elapsed() < duration {
            ticker.tick().await;
            let due = (rate as f64 * started.elapsed().as_secs_f64()) as u64;
            let mut finals = Vec::new();
            while published < due {
                let chunk = generator
                    .next()
                    .ok_or_else(|| anyhow!("the generator ran dry"))?;
                let journal = modulo_mapping(&chunk.id, &partitions.journals)?;
                publisher.publish_committed(journal, &chunk.doc)?;
                if chunk.final_sum.is_some() {
                    finals.push(chunk.id);
                }
                published += 1;
            }
            publisher.flush().await?;
            let now = Instant::now();
            durable.extend(finals.into_iter().map(|id| (id, now)));
        }
        let offered_for = started.elapsed();

        let mut latencies = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
        let mut pending = durable.len();
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while pending > 0 {
            let Ok(next) = tokio::time::timeout_at(deadline, seen_rx.recv()).await else {
                bail!("{pending} sums were not committed within {DRAIN_TIMEOUT:?}");
            };
            let Some((id, at)) = next else {
                break;
            };
            if let Some(was_durable) = durable.get(&id) {
                let micros = at.saturating_duration_since(*was_durable).as_micros();
                latencies.saturating_record(u64::try_from(micros).unwrap_or(u64::MAX).max(1));
                pending -= 1;
            }
        }
        pump.abort();
        if let Ok(Err(err)) = pump.await {
            return Err(err.context("reading the sums"));
        }
        if pending > 0 {
            bail!("the sums reader stopped with {pending} sums missing");
        }
        for shard in shards {
            shard.stop().await;
        }
        Ok(LatencyReport {
            published,
            offered_for,
            latencies,
        })
    }
}

/// Time of each summer over the same chunks, alone.
struct Alone {
    wasm: Duration,
    native: Duration,
}

/// Runs both summers over the generated streams in memory, on a blocking
/// thread (guest calls never run on a tokio worker).
async fn summers_alone(
    module: &ConsumerModule,
    seed: u64,
    streams: u64,
    chunks: u32,
) -> Result<Alone> {
    let envelopes = alone_envelopes(seed, streams, chunks)?;
    let mut wasm = module.application("alone", GuestLimits::default())?;
    tokio::task::spawn_blocking(move || {
        let wasm = time_alone(&mut wasm, &envelopes)?;
        let native = time_alone(&mut NativeSummer::new(), &envelopes)?;
        Ok(Alone { wasm, native })
    })
    .await
    .context("the benchmark thread died")?
}

/// The generated streams' chunks as envelopes in memory, framed as a shard
/// reads them (with a UUID each).
pub(super) fn alone_envelopes(seed: u64, streams: u64, chunks: u32) -> Result<Vec<Envelope>> {
    let journal: Arc<str> = Arc::from("bench/summer/alone/chunks/part-000");
    let producer = ProducerId::random();
    let mut begin = 0i64;
    let mut envelopes = Vec::new();
    for (index, chunk) in StreamGenerator::new(seed, streams, chunks).enumerate() {
        // Framed as a shard reads it: with its UUID.
        let uuid = build_uuid(
            producer,
            crate::message::Clock((index as u64 + 1) << 4),
            Flags::OutsideTxn,
        );
        let mut line = Vec::with_capacity(chunk.doc.len() + 48);
        frame(&chunk.doc, &uuid, &mut line)?;
        let end = begin + line.len() as i64;
        line.pop();
        envelopes.push(Envelope::new(
            journal.clone(),
            begin,
            end,
            uuid,
            line.into(),
        ));
        begin = end;
    }
    Ok(envelopes)
}

/// Feeds `envelopes` to `app` in batches of [`APP_BATCH`] per call and per
/// transaction (in-memory store, sums discarded): the time it took.
pub(super) fn time_alone(app: &mut dyn Application, envelopes: &[Envelope]) -> Result<Duration> {
    let (mut store, mut sink) = (MemoryStore::default(), DiscardPublisher);
    let mut txn = TxnContext {
        shard: "alone",
        store: &mut store,
        publisher: &mut sink,
    };
    let started = Instant::now();
    for batch in envelopes.chunks(APP_BATCH) {
        app.consume_messages(&mut txn, batch)
            .map_err(|(index, err)| anyhow!("chunk {index} of a batch: {err}"))?;
        app.finalize_txn(&mut txn)?;
    }
    Ok(started.elapsed())
}

/// What the latency phase measured.
struct LatencyReport {
    published: u64,
    offered_for: Duration,
    /// Final chunk durable → sum read committed, in microseconds.
    latencies: Histogram<u64>,
}

impl LatencyReport {
    fn print(&self, rate: u64, duration: Duration) {
        let ms = |micros: u64| micros as f64 / 1e3;
        println!(
            "latency: wasm summer, {rate} chunks/s offered for {} s: {} chunks published \
             ({:.0} chunks/s achieved)",
            duration.as_secs(),
            self.published,
            self.published as f64 / self.offered_for.as_secs_f64().max(1e-9),
        );
        println!(
            "  final chunk durable -> sum read committed: p50 {:.2} ms, p99 {:.2} ms, max {:.2} \
             ms ({} streams)",
            ms(self.latencies.value_at_quantile(0.5)),
            ms(self.latencies.value_at_quantile(0.99)),
            ms(self.latencies.max()),
            self.latencies.len(),
        );
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn the_round_ratios_are_summarised_by_their_median_and_range() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[0.8]), 0.8);
        assert_eq!(median(&[0.9, 0.7, 0.8]), 0.8);
        assert_eq!(median(&[0.5, 0.75, 1.0, 1.25]), 0.875);
        assert_eq!(spread(&[0.8]), "0.80");
        assert_eq!(spread(&[0.91, 0.7, 0.8]), "0.70–0.91");
    }
}
