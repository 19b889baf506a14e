//! `weir bench swap`: the pause a hot swap puts into a shard's stream of
//! committed transactions, under a steady load.
//!
//! One summer shard runs in a [`ShardRegistry`] over an embedded broker
//! (fsync on) while the stream-sum chunker publishes streams as fast as
//! their sums come back. After a baseline without swaps, the shard's module
//! is swapped `--swaps` times between two versions of the summer (the
//! built-in one, and the same component with a custom section appended: a
//! different digest, the same logic), one every `--interval-ms`, each an
//! [`apply`](ShardRegistry::apply) that changes only the module label.
//!
//! A recorder follows the shard's progress across its terms and stamps
//! every commit. For each swap it reports:
//!
//! - **apply**: the apply call (validation, the instantiation probe,
//!   persisting, stopping the old version after its current transaction
//!   commits, starting the new one);
//! - **to first commit**: from the apply call to the first transaction
//!   committed by the new version (the apply returns once the old version
//!   has stopped, so any later commit is the new version's);
//! - **commit gap**: the longest gap between consecutive commits of the
//!   shard from the apply call to that first new commit, against the
//!   baseline's gaps between commits.
//!
//! The chunker fails on a wrong, late or duplicated sum; the benchmark fails
//! with it, so numbers of a broken run are never printed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use tokio::sync::watch;

use super::chunker::ChunkerArgs;
use super::stream_sum::setup_journals;
use crate::broker::protocol::JournalClient;
use crate::broker::revision::ExpectRevision;
use crate::broker::{Broker, BrokerConfig};
use crate::runtime::{ChunkerError, JobLimits, ModuleDigest, Runtime, RuntimeConfig, guests};
use crate::service::modules::ModuleStore;
use crate::service::shards::{MODULE_LABEL, ShardChange, ShardRegistry};

/// Name of the custom section that makes the second version of the summer.
pub const VERSION_SECTION: &str = "weir-swap-version";
/// Longest wait for the new version's first commit after a swap.
const FIRST_COMMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the benchmark looks for that commit.
const POLL: Duration = Duration::from_millis(1);
/// Seed of the chunker's streams, so that runs are comparable.
const LOAD_SEED: u64 = 7;

/// Hot-swap pause: the gap in committed transactions around a swap.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  weir bench swap
  weir bench swap --swaps 200 --interval-ms 100 --workers 8")]
pub struct BenchSwap {
    /// Swaps to measure.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    swaps: u32,
    /// Time between the new version's first commit and the next swap, in
    /// milliseconds.
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    /// Seconds of load without swaps first, for the baseline commit gaps.
    #[arg(long, default_value_t = 3)]
    baseline_secs: u64,
    /// Chunker workers (the steady load).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    workers: u32,
    /// Data chunks per stream.
    #[arg(long, default_value_t = 30)]
    chunks: u32,
    /// The shard's `max_txn_duration`, in milliseconds (stream-sum's is 1000).
    #[arg(long, default_value_t = 1000)]
    max_txn_ms: u64,
    /// Directory for the benchmark's data (default: a new temporary
    /// directory, removed afterwards).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// `wasm` with a custom section appended (id 0, LEB128 size, LEB128 name
/// length, name, payload). Custom sections may appear anywhere in a
/// component, and runtimes ignore unknown ones: the result is the same
/// component under a different digest.
pub fn with_custom_section(wasm: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(name.len() + payload.len() + 5);
    write_leb128(&mut content, name.len());
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    let mut out = Vec::with_capacity(wasm.len() + content.len() + 6);
    out.extend_from_slice(wasm);
    out.push(0);
    write_leb128(&mut out, content.len());
    out.extend_from_slice(&content);
    out
}

/// Appends `value` as unsigned LEB128 (wasm's length encoding).
pub fn write_leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// One commit the recorder saw.
#[derive(Debug, Clone, Copy)]
struct CommitMark {
    at: Instant,
}

/// Stamps every commit of `shard`, following it from term to term until
/// `stop`.
async fn record_commits(
    registry: ShardRegistry,
    shard: String,
    marks: Arc<Mutex<Vec<CommitMark>>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        // Between terms (a swap in progress) the shard has no receiver.
        let Some(mut progress) = registry.watch_progress(&shard) else {
            tokio::time::sleep(POLL).await;
            continue;
        };
        let mut seen = 0;
        loop {
            let count = progress.borrow_and_update().committed_txns;
            if count > seen {
                let at = Instant::now();
                let mut marks = marks.lock().unwrap_or_else(PoisonError::into_inner);
                marks.extend((seen..count).map(|_| CommitMark { at }));
            }
            // A failed term's retry counts from 0 again.
            seen = count;
            tokio::select! {
                changed = progress.changed() => if changed.is_err() { break },
                _ = stop.changed() => return,
            }
        }
        // The term ended; wait for its successor.
        tokio::time::sleep(POLL).await;
    }
}

/// One measured swap.
struct SwapTiming {
    apply: Duration,
    to_first_commit: Duration,
    commit_gap: Duration,
}

impl BenchSwap {
    /// Runs the benchmark and prints its table.
    pub async fn execute(self) -> Result<()> {
        let (dir, _temp) = super::data_dir_or_temp(self.data_dir.as_deref(), "weir-bench-swap-")?;
        let broker = Broker::open(dir.join("broker"), BrokerConfig::default())
            .await
            .context("opening the broker")?;
        let client: Arc<dyn JournalClient> = Arc::new(broker.clone());
        let mut spec = setup_journals(client.as_ref(), 1)
            .await?
            .into_iter()
            .next()
            .context("stream-sum has one shard per partition")?;
        spec.max_txn_duration = Duration::from_millis(self.max_txn_ms);
        let runtime = Runtime::new(RuntimeConfig::default()).context("starting the runtime")?;
        let modules = ModuleStore::open(&dir.join("modules"), runtime.clone())?;
        let second = with_custom_section(guests::SUMMER_WASM, VERSION_SECTION, b"2");
        let versions: [ModuleDigest; 2] = {
            let modules = modules.clone();
            tokio::task::spawn_blocking(move || -> Result<[ModuleDigest; 2]> {
                Ok([
                    modules.push(guests::SUMMER_WASM)?.0,
                    modules.push(&second)?.0,
                ])
            })
            .await??
        };
        let registry = ShardRegistry::open(&dir.join("registry"), client.clone(), modules).await?;
        spec.labels.set(MODULE_LABEL, versions[0].to_string());
        let mut revision = registry
            .apply(vec![ShardChange::Upsert {
                spec: spec.clone(),
                expect: ExpectRevision::Absent,
            }])
            .await?;

        let marks = Arc::new(Mutex::new(Vec::new()));
        let (stop_recorder, stopped) = watch::channel(false);
        let recorder = tokio::spawn(record_commits(
            registry.clone(),
            spec.id.clone(),
            marks.clone(),
            stopped,
        ));
        // Endless streams, cancelled after the last swap.
        let load = ChunkerArgs {
            streams: -1,
            chunks: self.chunks,
            workers: self.workers,
            seed: Some(LOAD_SEED),
            chunker: None,
        };
        let job = load.load(&runtime)?.spawn(
            client.clone(),
            tokio::runtime::Handle::current(),
            load.config(),
            JobLimits::default(),
        )?;
        let cancel = job.cancel_token();
        let job = tokio::spawn(job.wait());
        println!(
            "swap: 1 summer shard (max_txn_duration {} ms), chunker {} workers × {} chunks, \
             {} swaps {} ms apart",
            self.max_txn_ms, self.workers, self.chunks, self.swaps, self.interval_ms
        );
        println!(
            "  versions {} and {} (the same summer plus a custom section)",
            versions[0].short(),
            versions[1].short()
        );

        let baseline_from = Instant::now();
        tokio::time::sleep(Duration::from_secs(self.baseline_secs)).await;
        let baseline = gaps_between(&snapshot(&marks), baseline_from, Instant::now());

        let mut timings = Vec::new();
        let mut failure = None;
        for swap in 0..self.swaps {
            if job.is_finished() {
                break;
            }
            let target = versions[(swap as usize + 1) % 2];
            spec.labels.set(MODULE_LABEL, target.to_string());
            let started = Instant::now();
            let applied = registry
                .apply(vec![ShardChange::Upsert {
                    spec: spec.clone(),
                    expect: ExpectRevision::Equal(revision),
                }])
                .await;
            let returned = Instant::now();
            revision = match applied {
                Ok(revision) => revision,
                Err(err) => {
                    failure = Some(format!("swap {swap} to {}: {err}", target.short()));
                    break;
                }
            };
            let Some(first) = first_commit_after(&marks, returned).await else {
                failure = Some(format!(
                    "swap {swap}: no commit by the new version within {FIRST_COMMIT_TIMEOUT:?}"
                ));
                break;
            };
            let marks = snapshot(&marks);
            let before = marks
                .iter()
                .rev()
                .find(|mark| mark.at <= started)
                .map_or(started, |mark| mark.at);
            let commit_gap = gaps_between(&marks, before, first)
                .into_iter()
                .max()
                .unwrap_or(first - before);
            timings.push(SwapTiming {
                apply: returned - started,
                to_first_commit: first - started,
                commit_gap,
            });
            tokio::time::sleep(Duration::from_millis(self.interval_ms)).await;
        }

        cancel.cancel();
        let outcome = job.await.context("the chunker task")?;
        let _ = stop_recorder.send(true);
        let _ = recorder.await;
        let commits = snapshot(&marks).len();
        registry.shutdown().await;
        broker.shutdown().await;

        let verified = match outcome {
            Err(ChunkerError::Cancelled { partial }) => {
                partial.map_or(0, |report| report.streams_verified)
            }
            Ok(report) => report.streams_verified,
            Err(err) => bail!("the chunker failed during the swaps: {err:#}"),
        };
        if let Some(failure) = failure {
            bail!("{failure}");
        }

        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let row = |name: &str, mut values: Vec<Duration>| {
            values.sort();
            println!(
                "  {name:<36} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  ({} samples)",
                ms(quantile(&values, 0.50)),
                ms(quantile(&values, 0.99)),
                ms(values.last().copied().unwrap_or_default()),
                values.len()
            );
        };
        row("commit gap, baseline (no swap)", baseline);
        row(
            "apply call",
            timings.iter().map(|timing| timing.apply).collect(),
        );
        row(
            "apply → first commit of new version",
            timings
                .iter()
                .map(|timing| timing.to_first_commit)
                .collect(),
        );
        row(
            "longest commit gap around a swap",
            timings.iter().map(|timing| timing.commit_gap).collect(),
        );
        println!(
            "  {} commits recorded; chunker verified {verified} streams, no wrong, late or \
             duplicated sum",
            commits
        );
        Ok(())
    }
}

fn snapshot(marks: &Mutex<Vec<CommitMark>>) -> Vec<CommitMark> {
    marks.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Waits for the first commit stamped after `after`.
async fn first_commit_after(marks: &Mutex<Vec<CommitMark>>, after: Instant) -> Option<Instant> {
    let deadline = Instant::now() + FIRST_COMMIT_TIMEOUT;
    while Instant::now() < deadline {
        let found = marks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|mark| mark.at > after)
            .map(|mark| mark.at);
        if found.is_some() {
            return found;
        }
        tokio::time::sleep(POLL).await;
    }
    None
}

/// Gaps between consecutive commits stamped within `from..=to`, counting
/// from `from` itself if it is a commit.
fn gaps_between(marks: &[CommitMark], from: Instant, to: Instant) -> Vec<Duration> {
    let stamps: Vec<Instant> = marks
        .iter()
        .map(|mark| mark.at)
        .filter(|at| *at >= from && *at <= to)
        .collect();
    stamps.windows(2).map(|pair| pair[1] - pair[0]).collect()
}

/// The nearest-rank quantile of sorted `values`.
fn quantile(values: &[Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn an_appended_custom_section_keeps_the_summer_a_valid_component_with_another_digest() {
        let second = with_custom_section(guests::SUMMER_WASM, VERSION_SECTION, b"2");
        assert_ne!(
            ModuleDigest::of(&second),
            ModuleDigest::of(guests::SUMMER_WASM)
        );
        let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let module = runtime.consumer_module(&second).unwrap();
        module
            .application("test", crate::runtime::GuestLimits::default())
            .unwrap();
    }

    #[test]
    fn leb128_sizes_span_bytes_as_the_spec_says() {
        let mut out = Vec::new();
        write_leb128(&mut out, 624_485);
        assert_eq!(out, [0xe5, 0x8e, 0x26]);
        out.clear();
        write_leb128(&mut out, 127);
        assert_eq!(out, [0x7f]);
    }
}
