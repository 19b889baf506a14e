//! `weir stream-sum`: Gazette's stream-sum acceptance test as one process —
//! an embedded broker, one summer shard per chunk partition running the
//! summer component, and the chunker component as a job that publishes
//! streams of chunks and verifies every sum.
//!
//! Journals and shards are created if missing, so running it again on the
//! same `--data-dir` continues where the last run left off: shards recover
//! from their recovery logs and the new run's streams are verified.
//!
//! With `--broker ADDR` it uses a running `weir serve` instead: it creates
//! the journals, pushes the summer module and applies the summer shards
//! there if missing, then runs the chunker against it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::chunker::{self, ChunkerArgs, JobEnd};
use crate::broker::protocol::{JournalChange, JournalClient};
use crate::broker::spec::{JournalSpec, LabelSet};
use crate::broker::{Broker, BrokerConfig};
use crate::consumer::{
    AppFactory, ShardConfig, ShardHandle, ShardSpec, ShardStatus, Source, spawn_shard,
};
use crate::message::AtomicClock;
use crate::runtime::{ChunkerReport, GuestLimits, JobLimits, Runtime, RuntimeConfig, guests};

/// Gazette's stream-sum journal and shard names.
pub mod names {
    /// Prefix of the chunk partitions (`{CHUNKS}/part-NNN`).
    pub const CHUNKS: &str = "examples/stream-sum/chunks";
    /// The sums journal.
    pub const SUMS: &str = "examples/stream-sum/sums";
    /// Prefix of the summer shards' recovery logs.
    pub const RECOVERY_LOGS: &str = "examples/stream-sum/recovery-logs";
    /// Message-type label of chunk partitions.
    pub const CHUNK_TYPE: &str = "stream_sum.Chunk";
    /// Message-type label of the sums journal.
    pub const SUM_TYPE: &str = "stream_sum.Sum";
    /// The message-type label name.
    pub const MESSAGE_TYPE: &str = "app.gazette.dev/message-type";
    /// The content-type label name.
    pub const CONTENT_TYPE: &str = "content-type";
    /// JSON lines.
    pub const NDJSON: &str = "application/x-ndjson";
    /// Content type of recovery logs.
    pub const RECOVERY_LOG: &str = "application/x-weir-recoverylog";
}

/// Run stream-sum on an embedded host.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    weir stream-sum                                  # defaults: 8 partitions, 4 workers\n  \
    weir stream-sum --streams 200 --chunks 100\n  \
    weir stream-sum --data-dir /tmp/ss               # run again to continue on the same data\n  \
    weir stream-sum --streams -1                     # until interrupted (Ctrl-C)\n  \
    weir stream-sum --broker 127.0.0.1:8080          # against a running `weir serve`")]
pub struct StreamSumCommand {
    /// Chunk partitions (and summer shards).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub partitions: u32,
    /// The chunker's run: streams, chunks, workers, seed, component.
    #[command(flatten)]
    pub job: ChunkerArgs,
    /// Data directory (default: a temporary directory removed at exit).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Summer component (default: the built-in guest-summer).
    #[arg(long)]
    pub summer: Option<PathBuf>,
    /// Use this running server instead of an embedded host.
    #[arg(long, value_name = "ADDR", conflicts_with = "data_dir")]
    pub broker: Option<String>,
    /// With `--broker`: the consumer host's address, if it is not the
    /// broker's (`weir serve --role consumer`).
    #[arg(long, value_name = "ADDR", requires = "broker")]
    pub consumer: Option<String>,
}

/// How a run of stream-sum that did not fail ended.
#[derive(Debug, Clone)]
pub enum StreamSumOutcome {
    /// The chunker verified every stream it published.
    Verified {
        /// The chunker's report.
        report: ChunkerReport,
        /// From the chunker's start to its end.
        elapsed: Duration,
    },
    /// Interrupted (Ctrl-C) before the chunker finished.
    Interrupted {
        /// What the chunker did before it stopped, if it said.
        partial: Option<ChunkerReport>,
        /// From the chunker's start to the interruption.
        elapsed: Duration,
    },
}

impl StreamSumCommand {
    /// Runs stream-sum and prints its summary; fails unless every stream verified.
    pub async fn execute(self) -> Result<()> {
        if let Some(broker) = self.broker.clone() {
            return super::stream_sum_remote::run(self, &broker).await;
        }
        match self.run().await? {
            StreamSumOutcome::Verified { report, elapsed } => {
                chunker::finish(JobEnd::Finished(Ok(report)), elapsed)
            }
            StreamSumOutcome::Interrupted { partial, elapsed } => {
                chunker::finish(JobEnd::Interrupted(partial), elapsed)
            }
        }
    }

    /// Runs stream-sum, printing progress; fails unless every stream
    /// verified (or the run was interrupted). The broker is shut down before
    /// it returns, so the data directory can be opened again.
    pub async fn run(&self) -> Result<StreamSumOutcome> {
        let (data_dir, _temp) =
            super::data_dir_or_temp(self.data_dir.as_deref(), "weir-stream-sum-")?;
        let summer_wasm = chunker::read_component(self.summer.as_ref(), guests::SUMMER_WASM)?;

        let broker = Broker::open(data_dir.join("broker"), BrokerConfig::default())
            .await
            .context("opening the journal broker")?;
        let client: Arc<dyn JournalClient> = Arc::new(broker.clone());
        let specs = setup_journals(client.as_ref(), self.partitions).await?;

        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(data_dir.join("module-cache")),
            ..RuntimeConfig::default()
        })
        .context("starting the wasm runtime")?;
        let summer = Arc::new(
            runtime
                .consumer_module(&summer_wasm)
                .context("loading the summer")?,
        );
        let chunker = self.job.load(&runtime)?;

        let clock = Arc::new(AtomicClock::now());
        let mut shards = Vec::new();
        for spec in specs {
            let module = summer.clone();
            let id = spec.id.clone();
            let app: AppFactory = Arc::new(move || {
                let app = module
                    .application(&id, GuestLimits::default())
                    .map_err(|err| crate::consumer::AppError::Crashed(err.to_string()))?;
                Ok(Box::new(app) as _)
            });
            let mut config = ShardConfig::new(data_dir.join("shards"));
            config.module_digest = summer.digest().to_string();
            shards.push(spawn_shard(
                spec,
                client.clone(),
                app,
                config,
                clock.clone(),
            ));
        }

        let started = Instant::now();
        println!(
            "stream-sum: {} partitions, {}; summer {}, data in {}",
            self.partitions,
            self.job.shape(),
            summer.digest().short(),
            data_dir.display(),
        );
        let job = chunker.spawn(
            client.clone(),
            tokio::runtime::Handle::current(),
            self.job.config(),
            JobLimits::default(),
        )?;
        let end = chunker::drive(job, |_| {
            print_progress(started, &broker, &shards);
            failed_shard(&shards)
        })
        .await;
        for shard in shards {
            shard.stop().await;
        }
        broker.shutdown().await;

        let elapsed = started.elapsed();
        match end {
            JobEnd::Finished(Ok(report)) => Ok(StreamSumOutcome::Verified { report, elapsed }),
            JobEnd::Interrupted(partial) => Ok(StreamSumOutcome::Interrupted { partial, elapsed }),
            failed => {
                chunker::finish(failed, elapsed)?;
                bail!("the chunker stopped without verifying every stream")
            }
        }
    }
}

/// Creates the chunk partitions, the sums journal and the recovery logs if
/// missing, and returns the summer shard specs.
pub async fn setup_journals(client: &dyn JournalClient, partitions: u32) -> Result<Vec<ShardSpec>> {
    use names::*;
    let labels = |pairs: &[(&str, &str)]| {
        let mut set = LabelSet::new();
        for (name, value) in pairs {
            set.insert(*name, *value);
        }
        set
    };
    let mut changes = vec![JournalChange::Upsert(
        JournalSpec::new(SUMS)
            .with_labels(labels(&[(CONTENT_TYPE, NDJSON), (MESSAGE_TYPE, SUM_TYPE)])),
    )];
    let mut specs = Vec::new();
    for index in 0..partitions {
        let partition = format!("{CHUNKS}/part-{index:03}");
        let id = format!("chunks-part-{index:03}");
        changes.push(JournalChange::Upsert(
            JournalSpec::new(&partition).with_labels(labels(&[
                (CONTENT_TYPE, NDJSON),
                (MESSAGE_TYPE, CHUNK_TYPE),
            ])),
        ));
        changes.push(JournalChange::Upsert(
            JournalSpec::new(format!("{RECOVERY_LOGS}/{id}"))
                .with_labels(labels(&[(CONTENT_TYPE, RECOVERY_LOG)])),
        ));
        let spec = ShardSpec {
            id,
            sources: vec![Source {
                journal: partition,
                min_offset: 0,
            }],
            recovery_log_prefix: RECOVERY_LOGS.into(),
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
        specs.push(spec);
    }
    client
        .apply(changes)
        .await
        .context("creating the stream-sum journals")?;
    Ok(specs)
}

fn failed_shard(shards: &[ShardHandle]) -> Option<String> {
    shards.iter().find_map(|shard| match shard.status() {
        ShardStatus::Failed { error } => Some(format!("shard {} FAILED: {error}", shard.spec.id)),
        _ => None,
    })
}

fn print_progress(started: Instant, broker: &Broker, shards: &[ShardHandle]) {
    let txns: u64 = shards
        .iter()
        .map(|s| s.watch_progress().borrow().committed_txns)
        .sum();
    let chunks_bytes: i64 = shards
        .iter()
        .filter_map(|s| s.spec.sources.first())
        .filter_map(|source| broker.write_head(&source.journal).ok())
        .sum();
    let sums_bytes = broker.write_head(names::SUMS).unwrap_or(0);
    let job = format!(
        "chunks {:.1} MB, sums {:.1} KB,",
        chunks_bytes as f64 / 1e6,
        sums_bytes as f64 / 1e3
    );
    let retrying = shards
        .iter()
        .filter(|s| matches!(s.status(), ShardStatus::Retrying { .. }))
        .count();
    println!(
        "  {:>6.1} s  {job}  summer transactions {txns}{}",
        started.elapsed().as_secs_f64(),
        if retrying > 0 {
            format!(", {retrying} shards retrying")
        } else {
            String::new()
        },
    );
}
