//! `weir bench store`: the shard store on the embedded broker (fsync on):
//! commit latency, cold replay throughput and standby takeover time.
//!
//! See [`crate::store::bench`] for the phases. MB are 10^6 bytes; the cold
//! replay rate is recovery-log bytes replayed per second of `open_primary`
//! on an empty directory, including RocksDB writes and the hand-off.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use crate::broker::{Broker, BrokerConfig};
use crate::store::bench::{self, BenchParams};

/// Shard store commit latency, cold replay and standby takeover.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  weir bench store
  weir bench store --keys 200000 --commits 500
  weir bench store --data-dir /mnt/ssd/weir-bench")]
pub struct BenchStore {
    /// Directory for the benchmark's data (default: a new temporary
    /// directory, removed afterwards).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Transactions of the commit-latency phase.
    #[arg(long, default_value_t = 2_000)]
    commits: usize,
    /// Keys written per transaction of the commit-latency phase.
    #[arg(long, default_value_t = 10)]
    keys_per_commit: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Keys in the store of the replay and takeover phases.
    #[arg(long, default_value_t = 1_000_000)]
    keys: usize,
    /// Keys per transaction when loading that store.
    #[arg(long, default_value_t = 10_000)]
    load_batch: usize,
}

impl BenchStore {
    /// Runs every phase and prints the table.
    pub async fn execute(self) -> anyhow::Result<()> {
        let (dir, _temp) = super::data_dir_or_temp(self.data_dir.as_deref(), "weir-bench-store-")?;
        let broker = Broker::open(dir.join("broker"), BrokerConfig::default())
            .await
            .context("opening the broker")?;
        let params = BenchParams {
            commits: self.commits,
            keys_per_commit: self.keys_per_commit,
            value_size: self.value_size,
            keys: self.keys,
            load_batch: self.load_batch,
        };
        let report = bench::run(Arc::new(broker), &dir.join("stores"), &params)
            .await
            .context("running the store benchmark")?;

        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let latency = &report.commit_latency;
        println!(
            "commit ({} txns x {} keys x {} B): {:.0} ms, {:.0} txn/s; latency p50 {} us, p99 {} us, max {} us, mean {:.0} us",
            self.commits,
            self.keys_per_commit,
            self.value_size,
            ms(report.commit_elapsed),
            self.commits as f64 / report.commit_elapsed.as_secs_f64(),
            latency.value_at_quantile(0.5),
            latency.value_at_quantile(0.99),
            latency.max(),
            latency.mean(),
        );
        let mb = report.log_bytes as f64 / 1e6;
        println!(
            "load ({} keys, {:.1} MB log): {:.0} ms ({:.1} MB/s); standby caught up {:.1} ms later",
            self.keys,
            mb,
            ms(report.load_elapsed),
            mb / report.load_elapsed.as_secs_f64(),
            ms(report.standby_lag),
        );
        println!(
            "takeover (promote a tailing standby of {} keys): {:.2} ms, replayed {} B",
            self.keys,
            ms(report.takeover),
            report.takeover_report.replayed.bytes,
        );
        let replayed = report.cold_report.replayed.bytes as f64 / 1e6;
        println!(
            "cold replay (empty directory): {:.1} MB, {} commits in {:.0} ms = {:.1} MB/s",
            replayed,
            report.cold_report.replayed.commits,
            ms(report.cold_replay),
            replayed / report.cold_replay.as_secs_f64(),
        );
        println!(
            "warm reopen (up-to-date directory): {:.2} ms",
            ms(report.warm_reopen)
        );
        Ok(())
    }
}
