//! The state of a run and its phases after setup: the fault phase (wait for
//! each planned fault, watching the processes meanwhile) and the end (every
//! process running, the chunker's summary, the drain, the audit, a graceful
//! stop), each adding its figures and failures to the report.
//!
//! While waiting, the harness watches every [`limits::CHAOS_POLL_MS`]: a
//! server that exits on its own is a failure (and is restarted, so the run
//! goes on); a chunker that exits on its own is a failure that ends the
//! fault phase; shards not all PRIMARY for
//! [`limits::CHAOS_UNHEALTHY_GRACE_MS`] with no fault injected are a
//! failure (a shard that stepped down for no reason is caught when it
//! happens, not at the next fault); and each process incarnation's memory
//! is sampled once it is
//! [`limits::CHAOS_RSS_WARMUP_SECS`] old. At the end each process's memory
//! is compared with the warm sample **of the same incarnation**, so a
//! restart never compares a fresh process with an old one; an incarnation
//! younger than the warm-up at the end is reported, not compared.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::cluster::{Cluster, ClusterError};
use super::probe;
use super::process::{Process, Sig};
use super::report::{ChunkerFigures, ChunkerSummary, FaultRecord, RssRecord};
use super::schedule::{Schedule, Target};
use crate::limits;
use crate::protocol::consumer::replica_status::Code;
use crate::service::journal_client::{GrpcJournalClient, RetryPolicy};
use crate::stream_sum::audit::audit;

/// The warm memory sample of one process incarnation.
#[derive(Debug, Clone, Copy)]
struct RssStart {
    incarnation: u32,
    kib: u64,
    age: Duration,
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
    /// Why the chunker failed, if it did.
    pub(super) chunker_failure: Option<String>,
    /// The shards the consumer host must run.
    pub(super) shards: usize,
    rss: HashMap<String, RssStart>,
    /// Since when not every shard has been PRIMARY between faults, and
    /// whether that was reported.
    unhealthy: Option<(Instant, bool)>,
}

/// What the end of a run measured.
#[derive(Debug, Default)]
pub(super) struct EndFigures {
    pub(super) chunker: ChunkerFigures,
    pub(super) drain_ms: Option<u64>,
    pub(super) rss: Vec<RssRecord>,
    pub(super) audit: Option<serde_json::Value>,
    pub(super) anomalies: Option<u64>,
    pub(super) audit_text: Option<String>,
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
            let nap = Duration::from_millis(limits::CHAOS_POLL_MS * 5).min(deadline - now);
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

    /// The end of the run; see the module docs.
    pub(super) async fn end(&mut self) -> Result<EndFigures, ClusterError> {
        let mut figures = EndFigures::default();
        self.note("end: no more faults; checking that every process runs");
        self.watch().await?;
        let recovery = Duration::from_millis(limits::CHAOS_RECOVERY_TIMEOUT_MS);
        if let Err(err) =
            probe::wait_all_primary(&self.cluster.consumer_addr(), self.shards, recovery).await
        {
            self.fail(format!("at the end: {err}"));
        }

        // Memory at the end of the load, before anything is stopped.
        figures.rss = self.rss_records();
        figures.chunker = self.stop_chunker().await?;
        if let Some(summary) = &figures.chunker.summary
            && summary.latency_max_ms > limits::CHAOS_MAX_LATENCY_MS as f64
        {
            self.fail(format!(
                "the worst latency, final chunk to verified sum, was {:.1} s (limit {} s)",
                summary.latency_max_ms / 1e3,
                limits::CHAOS_MAX_LATENCY_MS / 1000
            ));
        }

        let policy = RetryPolicy {
            max_elapsed: Some(Duration::from_millis(limits::CHAOS_AUDIT_RETRY_MS)),
            ..RetryPolicy::default()
        };
        let broker = self.cluster.broker_addr();
        let client = match GrpcJournalClient::connect(&broker, policy).await {
            Ok(client) => client,
            Err(err) => {
                self.fail(format!(
                    "connecting to the broker {broker} at the end: {err}"
                ));
                return Ok(figures);
            }
        };
        figures.drain_ms = self.drain(&client).await;

        self.note("auditing every chunk journal and the sums journal");
        match audit(&client).await {
            Ok(report) => {
                let anomalies = report.anomalies();
                figures.audit = serde_json::to_value(&report).ok();
                figures.audit_text = Some(report.to_string());
                figures.anomalies = Some(anomalies);
                if anomalies > 0 {
                    self.fail(format!("the auditor found {anomalies} anomalies"));
                }
            }
            Err(err) => self.fail(format!("the audit failed: {err}")),
        }
        self.stop_servers().await?;
        Ok(figures)
    }

    /// SIGINTs the chunker and reads its summary.
    async fn stop_chunker(&mut self) -> Result<ChunkerFigures, ClusterError> {
        let failed_before = self.chunker_failure.is_some();
        let chunker = &mut self.cluster.chunker;
        let timeout = Duration::from_millis(limits::CHAOS_CHUNKER_STOP_TIMEOUT_MS);
        let ended: Result<String, String> = if failed_before {
            Err("exited on its own before the end".to_string())
        } else if let Some(status) = chunker.try_exited()? {
            Err(format!("exited on its own before the end ({status})"))
        } else {
            chunker.signal(Sig::Int)?;
            match chunker.wait_exit(timeout).await? {
                Some(status) if status.success() => Ok("stopped by SIGINT, exit 0".to_string()),
                Some(status) => Err(format!("failed after SIGINT ({status})")),
                None => {
                    chunker.kill().await?;
                    Err(format!(
                        "did not exit within {timeout:?} of SIGINT; SIGKILLed"
                    ))
                }
            }
        };
        // The pump may still be copying the last lines after the exit.
        let _ = chunker
            .wait_line(Duration::from_secs(2), |line| {
                line.trim_start().starts_with("latency,").then_some(())
            })
            .await;
        let summary = ChunkerSummary::parse(&chunker.stdout_lines());
        let log = chunker.log().display().to_string();
        let (outcome, succeeded) = match ended {
            Ok(outcome) if summary.is_some() => (outcome, true),
            Ok(outcome) => {
                self.fail(format!("the chunker printed no summary (log: {log})"));
                (format!("{outcome}, no summary"), false)
            }
            Err(outcome) => {
                if !failed_before {
                    self.fail(format!("the chunker {outcome} (log: {log})"));
                }
                (outcome, false)
            }
        };
        self.note(&format!("chunker: {outcome}"));
        Ok(ChunkerFigures {
            incarnations: self.chunker_incarnations,
            succeeded,
            outcome,
            summary,
        })
    }

    /// Waits until every shard has read through its sources' write heads;
    /// returns the time it took.
    async fn drain(&mut self, client: &GrpcJournalClient) -> Option<u64> {
        let consumer = self.cluster.consumer_addr();
        let started = Instant::now();
        let timeout = Duration::from_millis(limits::CHAOS_DRAIN_TIMEOUT_MS);
        let shards = match probe::list_shards(&consumer).await {
            Ok(shards) => shards,
            Err(err) => {
                self.fail(format!("draining: {err}"));
                return None;
            }
        };
        // Every shard is drained even if one fails, so the audit sees as
        // much of the others' output as it can.
        let mut drained = true;
        for shard in shards {
            let mut heads = HashMap::new();
            let mut failure = None;
            for source in &shard.spec.sources {
                match probe::write_head(client, &source.journal).await {
                    Ok(head) => {
                        heads.insert(source.journal.clone(), head);
                    }
                    Err(err) => failure = Some(err),
                }
            }
            if failure.is_none() {
                let left = timeout.saturating_sub(started.elapsed());
                failure = probe::wait_read_through(&consumer, &shard.spec.id, &heads, left)
                    .await
                    .err();
            }
            if let Some(err) = failure {
                self.fail(format!("draining: {err}"));
                drained = false;
            }
        }
        if !drained {
            return None;
        }
        let took = started.elapsed();
        self.note(&format!(
            "drained: every shard read through its chunk journal's head in {:.1} s",
            took.as_secs_f64()
        ));
        Some(took.as_millis() as u64)
    }

    /// The memory of every process now, against its warm sample.
    fn rss_records(&mut self) -> Vec<RssRecord> {
        let mut records = Vec::new();
        let mut over = Vec::new();
        for process in self.cluster.processes() {
            let start = self
                .rss
                .get(process.name())
                .filter(|start| start.incarnation == process.incarnation());
            let end_kib = process.rss_kib();
            let growth = match (start, end_kib) {
                (Some(start), Some(end)) if start.kib > 0 => Some(end as f64 / start.kib as f64),
                _ => None,
            };
            if let Some(growth) = growth
                && growth > limits::CHAOS_MAX_RSS_GROWTH
            {
                over.push(format!(
                    "{} (incarnation {}) grew from {} KiB to {} KiB (×{growth:.2}, limit ×{})",
                    process.name(),
                    process.incarnation(),
                    start.map_or(0, |s| s.kib),
                    end_kib.unwrap_or(0),
                    limits::CHAOS_MAX_RSS_GROWTH
                ));
            }
            records.push(RssRecord {
                process: process.name().to_string(),
                incarnation: process.incarnation(),
                start_kib: start.map(|start| start.kib),
                start_age_s: start.map(|start| start.age.as_secs_f64()),
                end_kib,
                growth,
            });
        }
        for failure in over {
            self.fail(failure);
        }
        records
    }

    /// SIGTERMs the consumer host, then the broker; each must exit 0.
    async fn stop_servers(&mut self) -> Result<(), ClusterError> {
        let mut failures = Vec::new();
        let mut servers = self.cluster.servers();
        servers.reverse();
        for server in servers {
            if let Some(failure) = stop_gracefully(&mut server.process).await? {
                failures.push(failure);
            }
        }
        for failure in failures {
            self.fail(failure);
        }
        Ok(())
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
