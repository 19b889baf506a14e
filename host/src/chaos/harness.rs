//! The state of a run after setup, and its fault phase: wait for each
//! planned fault (injected by the `faults` module), watching the processes
//! meanwhile. The `end` module finishes the run.
//!
//! While waiting, the harness looks every [`limits::CHAOS_WATCH_MS`]: a
//! server that exits on its own is a failure (and is restarted, so the run
//! goes on); a chunker that exits on its own is a failure that ends the
//! fault phase; shards not all PRIMARY for
//! [`limits::CHAOS_UNHEALTHY_GRACE_MS`] with no fault injected are a
//! failure (a shard that stepped down for no reason is caught when it
//! happens, not at the next fault); and each process incarnation's memory
//! is sampled once it is [`limits::CHAOS_RSS_WARMUP_SECS`] old. At the end
//! each process's memory
//! is compared with the warm sample **of the same incarnation**, so a
//! restart never compares a fresh process with an old one; an incarnation
//! younger than the warm-up at the end is reported, not compared.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::cluster::{Cluster, ClusterError};
use super::probe;
use super::process::{Process, Sig};
use super::report::FaultRecord;
use super::schedule::{Schedule, Target};
use crate::limits;
use crate::protocol::consumer::replica_status::Code;

/// The warm memory sample of one process incarnation.
#[derive(Debug, Clone, Copy)]
pub(super) struct RssStart {
    /// The incarnation sampled.
    pub(super) incarnation: u32,
    /// Its RSS, in KiB.
    pub(super) kib: u64,
    /// Its age at the sample.
    pub(super) age: Duration,
}

/// A run in progress.
pub(super) struct Harness<'a> {
    pub(super) cluster: Cluster,
    pub(super) say: &'a (dyn Fn(&str) + Sync),
    /// The start of the fault phase.
    pub(super) started: Instant,
    pub(super) records: Vec<FaultRecord>,
    pub(super) failures: Vec<String>,
    /// Chunker incarnations started.
    pub(super) chunker_incarnations: u32,
    /// Canary journals written by disk-damage faults so far.
    pub(super) canaries: u32,
    /// Why the chunker failed, if it did.
    pub(super) chunker_failure: Option<String>,
    /// The shards the consumer host must run.
    pub(super) shards: usize,
    /// Warm memory samples, by process name.
    pub(super) rss: HashMap<String, RssStart>,
    /// Since when not every shard has been PRIMARY between faults, and
    /// whether that was reported.
    unhealthy: Option<(Instant, bool)>,
}

impl<'a> Harness<'a> {
    pub(super) fn new(cluster: Cluster, say: &'a (dyn Fn(&str) + Sync), shards: usize) -> Self {
        Harness {
            cluster,
            say,
            started: Instant::now(),
            records: Vec::new(),
            failures: Vec::new(),
            chunker_incarnations: 1,
            canaries: 0,
            chunker_failure: None,
            shards,
            rss: HashMap::new(),
            unhealthy: None,
        }
    }

    /// Prints `text` with the time since the start of the fault phase.
    pub(super) fn note(&self, text: &str) {
        (self.say)(&format!(
            "[{:>6.1} s] {text}",
            self.started.elapsed().as_secs_f64()
        ));
    }

    pub(super) fn fail(&mut self, failure: String) {
        self.note(&format!("FAILURE: {failure}"));
        self.failures.push(failure);
    }

    /// Injects every planned fault at its time, watching the processes in
    /// between, then waits out `duration`.
    pub(super) async fn fault_phase(
        &mut self,
        schedule: &Schedule,
        duration: Duration,
    ) -> Result<(), ClusterError> {
        for planned in &schedule.faults {
            self.watch_until(self.started + planned.at).await?;
            if self.chunker_failure.is_some() {
                self.note("the chunker failed: no more faults");
                return Ok(());
            }
            let record = self.inject(planned).await?;
            // A failed recovery is reported with its fault; a good one
            // starts the health watch afresh.
            self.unhealthy = record.failure.is_some().then(|| (Instant::now(), true));
            self.records.push(record);
        }
        self.watch_until(self.started + duration).await
    }

    /// Watches the processes until `deadline`.
    async fn watch_until(&mut self, deadline: Instant) -> Result<(), ClusterError> {
        loop {
            self.watch().await?;
            let now = Instant::now();
            if now >= deadline || self.chunker_failure.is_some() {
                return Ok(());
            }
            let nap = Duration::from_millis(limits::CHAOS_WATCH_MS).min(deadline - now);
            tokio::time::sleep(nap).await;
        }
    }

    /// One look at the processes: unexpected exits and warm memory samples.
    pub(super) async fn watch(&mut self) -> Result<(), ClusterError> {
        let mut crashed = Vec::new();
        for server in self.cluster.servers() {
            if let Some(status) = server.process.try_exited()? {
                crashed.push((
                    server.process.name().to_string(),
                    status,
                    server.process.log().to_path_buf(),
                ));
                server.restart().await?;
            }
        }
        for (name, status, log) in crashed {
            self.fail(format!(
                "{name} exited on its own ({status}); restarted (log: {})",
                log.display()
            ));
        }
        if self.chunker_failure.is_none()
            && let Some(status) = self.cluster.chunker.try_exited()?
        {
            let tail = tail(&self.cluster.chunker, 5);
            let failure = format!(
                "the chunker exited on its own ({status}): {tail} (log: {})",
                self.cluster.chunker.log().display()
            );
            self.chunker_failure = Some(failure.clone());
            self.fail(failure);
        }
        self.watch_shards().await;
        let warm = Duration::from_secs(limits::CHAOS_RSS_WARMUP_SECS);
        for process in self.cluster.processes() {
            let sampled = self
                .rss
                .get(process.name())
                .is_some_and(|start| start.incarnation == process.incarnation());
            if !sampled
                && process.age() >= warm
                && let Some(kib) = process.rss_kib()
            {
                self.rss.insert(
                    process.name().to_string(),
                    RssStart {
                        incarnation: process.incarnation(),
                        kib,
                        age: process.age(),
                    },
                );
            }
        }
        Ok(())
    }

    /// Fails the run, once per episode, if not every shard has been PRIMARY
    /// for [`limits::CHAOS_UNHEALTHY_GRACE_MS`] between faults (a shard that
    /// stepped down for no reason, or one stuck retrying).
    async fn watch_shards(&mut self) {
        let seen = match probe::list_shards(&self.cluster.consumer_addr()).await {
            Ok(shards)
                if shards.len() == self.shards
                    && shards.iter().all(|shard| shard.code == Code::Primary) =>
            {
                self.unhealthy = None;
                return;
            }
            Ok(shards) => probe::describe(&shards),
            Err(err) => err.to_string(),
        };
        let (since, reported) = *self.unhealthy.get_or_insert((Instant::now(), false));
        let grace = Duration::from_millis(limits::CHAOS_UNHEALTHY_GRACE_MS);
        if !reported && since.elapsed() >= grace {
            self.unhealthy = Some((since, true));
            self.fail(format!(
                "not every shard has been PRIMARY since {:.1} s, with no fault injected: {seen}",
                since.saturating_duration_since(self.started).as_secs_f64()
            ));
        }
    }

    /// Fault counts by name.
    pub(super) fn faults_by_kind(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for record in &self.records {
            *counts.entry(record.planned.fault.name()).or_insert(0) += 1;
        }
        counts
    }

    /// SIGKILLs injected into a process hosting `target`.
    pub(super) fn kills_of(&self, target: Target) -> u64 {
        let schedule = Schedule {
            seed: 0,
            faults: self.records.iter().map(|record| record.planned).collect(),
        };
        schedule.kills_of(target, self.cluster.config().topology) as u64
    }
}

/// SIGTERMs `process` and waits; returns why the stop was not clean.
pub(super) async fn stop_gracefully(process: &mut Process) -> Result<Option<String>, ClusterError> {
    if let Some(status) = process.try_exited()? {
        return Ok(Some(format!(
            "{} had already exited ({status}) when it was to be stopped",
            process.name()
        )));
    }
    process.signal(Sig::Term)?;
    let timeout = Duration::from_millis(limits::CHAOS_GRACEFUL_STOP_TIMEOUT_MS);
    let log = process.log().display().to_string();
    Ok(match process.wait_exit(timeout).await? {
        Some(status) if status.success() => None,
        Some(status) => Some(format!(
            "{} exited with {status} after SIGTERM (log: {log})",
            process.name()
        )),
        None => {
            process.kill().await?;
            Some(format!(
                "{} did not exit within {timeout:?} of SIGTERM; SIGKILLed (log: {log})",
                process.name()
            ))
        }
    })
}

/// The last `count` stdout lines of `process`, joined.
pub(super) fn tail(process: &Process, count: usize) -> String {
    let lines = process.stdout_lines();
    let start = lines.len().saturating_sub(count);
    lines[start..].join(" | ")
}
