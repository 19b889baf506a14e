//! Measurements of the shard store against a real journal client: commit
//! latency, cold replay throughput, and standby takeover time.
//!
//! Phases, each on its own recovery log:
//! 1. **commit**: one primary commits `commits` transactions of
//!    `keys_per_commit` keys each, one after the other (each waits for its
//!    log append, so for an fsync, then applies locally);
//! 2. **load**: a primary writes `keys` keys in transactions of `load_batch`
//!    keys while a standby tails the log into its own directory;
//! 3. **takeover**: the standby, caught up, is promoted (barrier, unread
//!    tail, hand-off append); the old primary's next commit must be fenced;
//! 4. **cold replay**: a primary opens on an empty directory and replays the
//!    whole log; every key is checked afterwards;
//! 5. **warm reopen**: that primary reopens its directory (nothing to replay).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::{RecoveryReport, ShardStore, Standby, StoreConfig, StoreError, WriteSet};
use crate::broker::protocol::{JournalChange, JournalClient};
use crate::broker::spec::JournalSpec;
use crate::consumer::{Checkpoint, SourceCheckpoint, TxnStore};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchParams {
    /// Transactions of the commit phase.
    pub commits: usize,
    /// Keys per transaction of the commit phase.
    pub keys_per_commit: usize,
    /// Bytes per value.
    pub value_size: usize,
    /// Keys in the store of the load, takeover and replay phases.
    pub keys: usize,
    /// Keys per transaction of the load phase.
    pub load_batch: usize,
}

/// What was measured.
#[derive(Debug)]
pub struct BenchReport {
    /// Commit latencies, in microseconds.
    pub commit_latency: Histogram<u64>,
    /// Wall time of the commit phase.
    pub commit_elapsed: Duration,
    /// Bytes of the loaded recovery log.
    pub log_bytes: u64,
    /// Wall time of the load phase.
    pub load_elapsed: Duration,
    /// Time from the last load commit until the standby had applied it.
    pub standby_lag: Duration,
    /// Wall time of `Standby::promote`.
    pub takeover: Duration,
    /// The promoted store's recovery report.
    pub takeover_report: RecoveryReport,
    /// Wall time of opening a primary on an empty directory.
    pub cold_replay: Duration,
    /// The cold primary's recovery report.
    pub cold_report: RecoveryReport,
    /// Wall time of reopening an up-to-date directory.
    pub warm_reopen: Duration,
}

fn failed(reason: String) -> StoreError {
    StoreError::LocalState(format!("benchmark check failed: {reason}"))
}

fn key(n: usize) -> Vec<u8> {
    format!("key/{n:010}").into_bytes()
}

fn value(n: usize, size: usize) -> Vec<u8> {
    let seed = format!("{n:010}");
    seed.bytes().cycle().take(size).collect()
}

fn checkpoint(n: usize) -> Checkpoint {
    let mut checkpoint = Checkpoint::default();
    checkpoint.sources.insert(
        "bench/source".to_string(),
        SourceCheckpoint {
            read_through: n as i64,
            producers: vec![],
        },
    );
    checkpoint
}

async fn create(client: &dyn JournalClient, name: &str) -> Result<(), StoreError> {
    let change = JournalChange::Upsert(JournalSpec::new(name));
    client
        .apply(vec![change])
        .await
        .map_err(|source| StoreError::Broker {
            log: name.to_string(),
            context: "creating the benchmark log",
            source,
        })
}

/// Runs every phase with logs on `client` and local stores under `work_dir`.
pub async fn run(
    client: Arc<dyn JournalClient>,
    work_dir: &Path,
    params: &BenchParams,
) -> Result<BenchReport, StoreError> {
    let config = StoreConfig::default();

    // 1. Commit latency.
    let log = "bench/store/commits";
    create(client.as_ref(), log).await?;
    let (mut store, _) = ShardStore::open_primary(
        Arc::clone(&client),
        log,
        &work_dir.join("commits"),
        config.clone(),
    )
    .await?;
    // Microseconds, up to a minute (`saturating_record` clamps above it).
    let mut commit_latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .map_err(|err| failed(err.to_string()))?;
    let started = Instant::now();
    for txn in 0..params.commits {
        let mut writes = WriteSet::new();
        for k in 0..params.keys_per_commit {
            let n = txn * params.keys_per_commit + k;
            writes.insert(
                key(n % 10_000),
                super::Mutation::Put(value(n, params.value_size)),
            );
        }
        let begin = Instant::now();
        store.commit(writes, &checkpoint(txn)).await?;
        commit_latency.saturating_record(begin.elapsed().as_micros() as u64);
    }
    let commit_elapsed = started.elapsed();
    drop(store);

    // 2. Load, with a standby tailing.
    let log = "bench/store/load";
    create(client.as_ref(), log).await?;
    let (mut primary, _) = ShardStore::open_primary(
        Arc::clone(&client),
        log,
        &work_dir.join("load"),
        config.clone(),
    )
    .await?;
    let standby = Standby::start(
        Arc::clone(&client),
        log,
        &work_dir.join("standby"),
        config.clone(),
    )
    .await?;
    let started = Instant::now();
    let mut last = checkpoint(0);
    let batches = params.keys.div_ceil(params.load_batch.max(1));
    for batch in 0..batches {
        let mut writes = WriteSet::new();
        let first = batch * params.load_batch;
        for n in first..(first + params.load_batch).min(params.keys) {
            writes.insert(key(n), super::Mutation::Put(value(n, params.value_size)));
        }
        last = checkpoint(batch);
        primary.commit(writes, &last).await?;
    }
    let load_elapsed = started.elapsed();
    let head = primary.position().map_or(0, |p| p.offset);
    let started = Instant::now();
    standby.wait_for_offset(head).await?;
    let standby_lag = started.elapsed();

    // 3. Takeover.
    let started = Instant::now();
    let (mut promoted, restored) = standby.promote().await?;
    let takeover = started.elapsed();
    if restored != last {
        return Err(failed(
            "the promoted checkpoint is not the last one".to_string(),
        ));
    }
    let takeover_report = *promoted.recovery();
    match primary.commit(WriteSet::new(), &last).await {
        Err(StoreError::Fenced { .. }) => {}
        other => return Err(failed(format!("the old primary was not fenced: {other:?}"))),
    }
    promoted.commit(WriteSet::new(), &last).await?;
    let log_bytes = promoted.position().map_or(0, |p| p.offset) as u64;
    drop((primary, promoted));

    // 4. Cold replay.
    let cold_dir = work_dir.join("cold");
    let started = Instant::now();
    let (cold, restored) =
        ShardStore::open_primary(Arc::clone(&client), log, &cold_dir, config.clone()).await?;
    let cold_replay = started.elapsed();
    let cold_report = *cold.recovery();
    if restored != last {
        return Err(failed(
            "the replayed checkpoint is not the last one".to_string(),
        ));
    }
    let (keys, value_size) = (params.keys, params.value_size);
    let cold = tokio::task::spawn_blocking(move || verify(cold, keys, value_size))
        .await
        .map_err(super::error::join_error)??;
    drop(cold);

    // 5. Warm reopen.
    let started = Instant::now();
    let (warm, _) = ShardStore::open_primary(client, log, &cold_dir, config).await?;
    let warm_reopen = started.elapsed();
    if warm.recovery().replayed.commits != 0 {
        return Err(failed(
            "an up-to-date directory replayed commits".to_string(),
        ));
    }

    Ok(BenchReport {
        commit_latency,
        commit_elapsed,
        log_bytes,
        load_elapsed,
        standby_lag,
        takeover,
        takeover_report,
        cold_replay,
        cold_report,
        warm_reopen,
    })
}

/// Checks that `store` holds exactly keys `0..keys` with their values.
fn verify(store: ShardStore, keys: usize, value_size: usize) -> Result<ShardStore, StoreError> {
    let mut txn = store.begin_txn();
    let page = StoreConfig::default().max_scan_entries;
    let mut next = 0;
    let mut start = key(0);
    loop {
        let entries = txn
            .scan(&start, b"", page)
            .map_err(|err| failed(err.to_string()))?;
        for (k, v) in &entries {
            if *k != key(next) || *v != value(next, value_size) {
                return Err(failed(format!("entry {next} differs after replay")));
            }
            next += 1;
        }
        match entries.last() {
            Some((last, _)) if entries.len() == page => {
                start = last.clone();
                start.push(0);
            }
            _ => break,
        }
    }
    if next != keys {
        return Err(failed(format!("replay holds {next} keys, not {keys}")));
    }
    Ok(store)
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::broker::{Broker, BrokerConfig};

    #[tokio::test]
    async fn the_benchmark_runs_its_checks_on_a_real_broker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = Broker::open(dir.path().join("broker"), BrokerConfig::default())
            .await
            .expect("broker");
        let params = BenchParams {
            commits: 20,
            keys_per_commit: 3,
            value_size: 50,
            keys: 5_000,
            load_batch: 700,
        };
        let report = run(Arc::new(broker), &dir.path().join("stores"), &params)
            .await
            .expect("bench");
        assert_eq!(report.commit_latency.len(), 20);
        assert_eq!(
            report.cold_report.replayed.commits,
            5_000u64.div_ceil(700) + 1
        );
        assert_eq!(report.takeover_report.replayed.commits, 0);
    }
}
