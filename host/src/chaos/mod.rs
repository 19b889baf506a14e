//! The chaos harness: stream-sum as separate processes under a seeded
//! schedule of process faults, then an independent audit of everything the
//! processes wrote (`weir chaos`, issue 6).
//!
//! Gazette's promise, and weir's, is that the chunker and the summer are
//! invariant to process failures and restarts. A run checks it end to end:
//!
//! 1. **Setup.** The servers start as children of the current executable —
//!    `weir serve --role broker` and `weir serve --role consumer` (the split
//!    topology, the default) or one `weir serve` (whole) — and the chunker,
//!    `weir stream-sum --streams -1`, which creates the journals, pushes the
//!    summer and applies its shards, then publishes streams of a few chunks
//!    and verifies each sum. Every child logs to `<dir>/logs/<name>.log`.
//!    The executable is copied into the run directory first, so a rebuild
//!    during the run cannot change what a restart runs.
//! 2. **Faults.** A [`Schedule`] drawn up front from the seed (printed
//!    first; the same seed replays the same schedule) kills, stops
//!    gracefully, pauses and restarts the processes, moves the shards to
//!    a new consumer host while the old one is paused, checking that the
//!    old one is fenced rather than trusted, and damages the broker's data
//!    directory while it is down, checking that a torn tail is cut off and a
//!    flipped bit is reported, never served (see the `disk` module). Each
//!    fault's recovery is measured (see the `faults` module).
//! 3. **End.** Every process is made to run again, the chunker is
//!    interrupted (SIGINT) and must exit 0 with its summary, every shard is
//!    drained (`Shard.Stat` reading through the chunk journals' write
//!    heads), and the auditor ([`crate::stream_sum::audit`]) reads every
//!    chunk journal and the sums journal.
//! 4. **Verdict.** A [`ChaosReport`] with the figures; the run fails if the
//!    auditor finds any anomaly, a chunker fails, the worst latency exceeds
//!    [`limits::CHAOS_MAX_LATENCY_MS`], a process's memory more than
//!    doubles within one incarnation, or a process does not recover, fence
//!    or stop cleanly.
//!
//! [`run`] returns an error only when the harness itself cannot work (the
//! schedule cannot be drawn, the first processes do not start); anything the
//! processes do wrong is a failure in the report.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod cluster;
mod disk;
mod end;
mod faults;
mod harness;
pub mod probe;
pub mod process;
pub mod report;
pub mod schedule;

pub use report::ChaosReport;
pub use schedule::{
    Fault, PlannedFault, Schedule, ScheduleConfig, ScheduleError, Target, Topology,
};

use cluster::{Cluster, ClusterConfig, ClusterError};
use harness::Harness;
use report::RecoveryFigures;

use crate::limits;

/// What to run.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// The `weir` executable to run the processes with.
    pub exe: PathBuf,
    /// The run directory (created if missing): data and logs.
    pub dir: PathBuf,
    /// The schedule: seed, duration, spacing, topology, and the chunk
    /// partitions (and summer shards) of the run.
    pub schedule: ScheduleConfig,
    /// Chunker workers.
    pub workers: u32,
    /// Data chunks per stream.
    pub chunks: u32,
}

/// Why the harness could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChaosError {
    /// No schedule fits the configuration.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// The run directory or the executable's copy could not be made.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The processes could not be set up.
    #[error("setup: {0}")]
    Setup(#[from] ClusterError),
    /// The shards did not all become PRIMARY after setup.
    #[error("setup: {0}")]
    NotPrimary(#[from] probe::ProbeError),
}

/// Runs the harness (see the module docs), telling `say` what happens.
pub async fn run(
    config: ChaosConfig,
    say: &(dyn Fn(&str) + Sync),
) -> Result<ChaosReport, ChaosError> {
    let begun = Instant::now();
    say(&format!("chaos: seed {}", config.schedule.seed));
    let schedule = Schedule::draw(&config.schedule)?;
    for line in plan_lines(&config.schedule, &schedule) {
        say(&line);
    }
    let partitions = config.schedule.partitions;

    std::fs::create_dir_all(&config.dir).map_err(|source| ChaosError::Io {
        what: "creating the run directory",
        path: config.dir.clone(),
        source,
    })?;
    let exe = pin_executable(&config.exe, &config.dir)?;
    say(&format!("chaos: run directory {}", config.dir.display()));

    let cluster = Cluster::start(ClusterConfig {
        exe,
        dir: config.dir.clone(),
        topology: config.schedule.topology,
        partitions,
        workers: config.workers,
        chunks: config.chunks,
        seed: config.schedule.seed,
    })
    .await?;
    let shards = partitions as usize;
    let timeout = Duration::from_millis(limits::CHAOS_RECOVERY_TIMEOUT_MS);
    probe::wait_all_primary(&cluster.consumer_addr(), shards, timeout).await?;
    say(&format!(
        "chaos: broker on {}, consumer host on {}, {shards} shards PRIMARY, chunker running",
        cluster.broker_addr(),
        cluster.consumer_addr()
    ));

    let mut harness = Harness::new(cluster, say, shards);
    let mut end = None;
    let outcome = match harness
        .fault_phase(&schedule, config.schedule.duration)
        .await
    {
        Ok(()) => harness.end().await.map(|figures| end = Some(figures)),
        Err(err) => Err(err),
    };
    if let Err(err) = outcome {
        harness.fail(format!("the harness stopped: {err}"));
    }
    let end = end.unwrap_or_default();

    let consumer_kills = harness.kills_of(Target::Consumer);
    let broker_kills = harness.kills_of(Target::Broker);
    // A run cut short has failed already; the shortfall would only repeat it.
    let cut_short = !harness.failures.is_empty();
    for (what, count, minimum) in [
        (
            "consumer-host",
            consumer_kills,
            config.schedule.min_consumer_kills,
        ),
        ("broker", broker_kills, config.schedule.min_broker_kills),
    ] {
        if !cut_short && count < u64::from(minimum) {
            harness.fail(format!(
                "only {count} {what} kills were injected (at least {minimum} were planned)"
            ));
        }
    }
    let mut report = ChaosReport {
        seed: config.schedule.seed,
        topology: config.schedule.topology,
        duration_ms: config.schedule.duration.as_millis() as u64,
        elapsed_ms: begun.elapsed().as_millis() as u64,
        partitions,
        workers: config.workers,
        chunks: config.chunks,
        dir: config.dir.display().to_string(),
        faults_by_kind: harness.faults_by_kind(),
        consumer_kills,
        broker_kills,
        recovery: recovery_figures(&harness),
        faults: std::mem::take(&mut harness.records),
        chunker: end.chunker,
        rss: end.rss,
        drain_ms: end.drain_ms,
        audit: end.audit,
        anomalies: end.anomalies,
        audit_text: end.audit_text,
        failures: std::mem::take(&mut harness.failures),
        passed: false,
    };
    report.conclude();
    Ok(report)
}

/// The printed schedule of `config`: a heading, one line per fault, and
/// the counts by kind (what `weir chaos --plan` prints).
pub fn plan_lines(config: &ScheduleConfig, schedule: &Schedule) -> Vec<String> {
    let mut lines = vec![format!(
        "chaos: {} topology, {:.0} s, {} faults planned:",
        config.topology,
        config.duration.as_secs_f64(),
        schedule.faults.len()
    )];
    for planned in &schedule.faults {
        lines.push(format!(
            "  {:>6.1} s  {}",
            planned.at.as_secs_f64(),
            describe(&planned.fault)
        ));
    }
    let counts: Vec<String> = schedule
        .counts()
        .iter()
        .map(|(name, count)| format!("{name} {count}"))
        .collect();
    lines.push(format!(
        "chaos: {}; consumer-host kills {}, broker kills {}",
        counts.join(", "),
        schedule.kills_of(Target::Consumer, config.topology),
        schedule.kills_of(Target::Broker, config.topology)
    ));
    lines
}

/// "SIGKILL consumer, restart after 1.2 s", for the printed schedule.
fn describe(fault: &Fault) -> String {
    match fault {
        Fault::Kill {
            target,
            restart_after,
        } => format!(
            "SIGKILL {target}, restart after {:.1} s",
            restart_after.as_secs_f64()
        ),
        Fault::Terminate {
            target,
            restart_after,
        } => format!(
            "SIGTERM {target}, restart after {:.1} s",
            restart_after.as_secs_f64()
        ),
        Fault::Pause { target, paused_for } => {
            format!("SIGSTOP {target} for {:.1} s", paused_for.as_secs_f64())
        }
        Fault::Takeover => "pause the consumer host; another takes over and fences it".to_string(),
        Fault::DiskDamage {
            restart_after,
            partition,
            tear_permille,
            flip_permille,
            flip_bit,
        } => format!(
            "SIGKILL broker, tear part-{partition:03}'s spool tail ({:.1}% of a record), \
             flip bit {flip_bit} at {:.1}% of a canary's closed fragments, restart after {:.1} s",
            f64::from(*tear_permille) / 10.0,
            f64::from(*flip_permille) / 10.0,
            restart_after.as_secs_f64()
        ),
    }
}

fn recovery_figures(harness: &Harness<'_>) -> std::collections::BTreeMap<String, RecoveryFigures> {
    let mut totals: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for record in &harness.records {
        if let Some(total) = record.recovery.total_ms {
            totals
                .entry(record.planned.fault.name())
                .or_default()
                .push(total);
        }
    }
    totals
        .into_iter()
        .map(|(name, mut values)| (name, RecoveryFigures::of(&mut values)))
        .collect()
}

/// Copies `exe` into `<dir>/bin/`, so every (re)start of the run runs the
/// same binary even if the original is rebuilt meanwhile; a hard link is
/// tried first.
fn pin_executable(exe: &Path, dir: &Path) -> Result<PathBuf, ChaosError> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).map_err(|source| ChaosError::Io {
        what: "creating",
        path: bin.clone(),
        source,
    })?;
    let pinned = bin.join("weir");
    let _ = std::fs::remove_file(&pinned);
    if std::fs::hard_link(exe, &pinned).is_err() {
        std::fs::copy(exe, &pinned).map_err(|source| ChaosError::Io {
            what: "copying the executable",
            path: exe.to_path_buf(),
            source,
        })?;
    }
    Ok(pinned)
}
