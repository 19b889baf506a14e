//! The end of a chaos run: every process running again, the chunker
//! interrupted (SIGINT) for its summary, memory compared with each
//! incarnation's warm sample, every shard drained (reading through the chunk
//! journals' write heads), the audit, and a graceful stop of the servers.
//! Each step adds its figures, and its failures, to the report.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::cluster::ClusterError;
use super::harness::{Harness, stop_gracefully};
use super::probe;
use super::process::Sig;
use super::report::{ChunkerFigures, ChunkerSummary, RssRecord};
use crate::limits;
use crate::service::journal_client::{GrpcJournalClient, RetryPolicy};
use crate::stream_sum::audit::audit;

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

impl Harness<'_> {
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
}
