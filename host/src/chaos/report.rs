//! The figures of a chaos run: the JSON report (`--report`) and its
//! readable summary, plus the parser of the chunker's printed summary.
//!
//! The report is the run's verdict: [`ChaosReport::failures`] lists every
//! reason the run failed (an anomaly, a failed chunker, a latency or memory
//! figure over its limit, a process that did not recover or stop cleanly),
//! and [`ChaosReport::passed`] is true only when it is empty. The auditor's
//! own report is embedded as it serializes itself, so this module does not
//! depend on its shape.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::schedule::{PlannedFault, Topology};

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    /// The seed of the schedule (and of the chunkers' streams).
    pub seed: u64,
    /// How the servers were laid out.
    pub topology: Topology,
    /// The fault-injection phase's requested length, in milliseconds.
    pub duration_ms: u64,
    /// The whole run's wall time, setup to audit, in milliseconds.
    pub elapsed_ms: u64,
    /// Chunk partitions (and summer shards).
    pub partitions: u32,
    /// Chunker workers.
    pub workers: u32,
    /// Data chunks per stream.
    pub chunks: u32,
    /// The run directory (data and logs).
    pub dir: String,
    /// Faults injected, by name (`kill-consumer`, …).
    pub faults_by_kind: BTreeMap<String, u64>,
    /// SIGKILLs of a process hosting the consumer host.
    pub consumer_kills: u64,
    /// SIGKILLs of a process hosting the broker.
    pub broker_kills: u64,
    /// Every fault as injected, with its recovery.
    pub faults: Vec<FaultRecord>,
    /// The chunkers' figures.
    pub chunker: ChunkerFigures,
    /// Recovery figures per fault name: count, median and worst.
    pub recovery: BTreeMap<String, RecoveryFigures>,
    /// Resident memory of each process.
    pub rss: Vec<RssRecord>,
    /// Time the shards took to read through the chunk journals' heads at
    /// the end, in milliseconds.
    pub drain_ms: Option<u64>,
    /// The auditor's report, as it serializes itself.
    pub audit: Option<serde_json::Value>,
    /// The auditor's total of anomalies.
    pub anomalies: Option<u64>,
    /// The auditor's readable report.
    #[serde(skip)]
    pub audit_text: Option<String>,
    /// Why the run failed; empty if it passed.
    pub failures: Vec<String>,
    /// Whether the run passed.
    pub passed: bool,
}

/// One injected fault and what followed.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// The fault as planned (time from the start of the run, kind, target,
    /// parameters).
    pub planned: PlannedFault,
    /// When it was injected, from the start of the run, in milliseconds
    /// (later than planned if the previous fault's recovery ran over).
    pub at_ms: u64,
    /// What the recovery took.
    pub recovery: Recovery,
    /// What was observed along the way (a takeover's fencing, an exit
    /// status).
    pub notes: Vec<String>,
    /// Why this fault failed the run, if it did.
    pub failure: Option<String>,
    /// What a disk-damage fault did to the data directory and what the
    /// broker made of it (other faults: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskDamageRecord>,
}

/// The file surgery of one disk-damage fault and the outcome of its checks
/// (see the `disk` module); a figure is `None` if its step did not happen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiskDamageRecord {
    /// The chunk partition whose spool got a torn write.
    pub torn_journal: String,
    /// The spool's length before the torn write, in bytes.
    pub spool_len_before: Option<u64>,
    /// Bytes of the torn write.
    pub torn_bytes: Option<u64>,
    /// Whether the restart cut the torn write off (new records were found
    /// in its place).
    pub torn_cut: bool,
    /// The canary journal written before the kill.
    pub canary: String,
    /// Bytes appended to the canary, every one acknowledged.
    pub canary_bytes: Option<u64>,
    /// The closed fragment file with the flipped bit.
    pub flipped_file: Option<String>,
    /// The flipped byte's position in that file.
    pub flipped_position: Option<u64>,
    /// Journal offset of the record holding the flipped byte: where the
    /// damage must be reported.
    pub damaged_offset: Option<i64>,
    /// Where a read of the canary from 0 reported corruption.
    pub reported_offset: Option<i64>,
    /// Bytes that read served before the error.
    pub served_bytes: Option<u64>,
    /// Whether an append to the canary was refused as corrupt.
    pub append_refused: bool,
    /// Whether every check of the flipped bit held: reported at the damaged
    /// record, nothing from there served, the canary's bytes before it, and
    /// appends refused.
    pub flip_reported: bool,
}

/// Recovery times after a fault, in milliseconds, each `None` if that step
/// did not apply or did not happen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Recovery {
    /// From the restart to the process answering (a server serving, the
    /// chunker done with its setup).
    pub answering_ms: Option<u64>,
    /// From the restart (or the SIGCONT) to every shard PRIMARY.
    pub primary_ms: Option<u64>,
    /// From the fault to every shard PRIMARY (or the chunker answering):
    /// the outage as clients see it.
    pub total_ms: Option<u64>,
}

/// Recovery figures of one fault kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryFigures {
    /// Faults with a measured total.
    pub count: u64,
    /// Median total recovery, in milliseconds.
    pub p50_ms: u64,
    /// Worst total recovery, in milliseconds.
    pub max_ms: u64,
}

impl RecoveryFigures {
    /// The figures of `totals` (milliseconds).
    pub fn of(totals: &mut [u64]) -> RecoveryFigures {
        totals.sort_unstable();
        RecoveryFigures {
            count: totals.len() as u64,
            p50_ms: totals.get(totals.len() / 2).copied().unwrap_or(0),
            max_ms: totals.last().copied().unwrap_or(0),
        }
    }
}

/// The chunkers' figures: counts and latencies of the last incarnation's
/// summary (a SIGKILLed chunker prints none; its verified streams are
/// counted by the auditor, not here).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChunkerFigures {
    /// Chunker processes started (1 + restarts after kills).
    pub incarnations: u32,
    /// Whether the last one exited 0 after SIGINT, and no chunker failed.
    pub succeeded: bool,
    /// How the last one ended, in words.
    pub outcome: String,
    /// Its printed summary, if it printed one.
    pub summary: Option<ChunkerSummary>,
}

/// What `weir stream-sum` prints when it stops.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChunkerSummary {
    /// Streams whose sum the chunker verified.
    pub streams_verified: u64,
    /// Chunks it published.
    pub chunks_published: u64,
    /// Median latency, final chunk to verified sum, in milliseconds.
    pub latency_p50_ms: f64,
    /// 99th-percentile latency, in milliseconds.
    pub latency_p99_ms: f64,
    /// Worst latency, in milliseconds.
    pub latency_max_ms: f64,
    /// Latency samples.
    pub latency_samples: u64,
}

impl ChunkerSummary {
    /// Parses the summary lines of `weir stream-sum` (see
    /// `cli::chunker::print_counts`); `None` unless both the streams and the
    /// latency lines are there.
    pub fn parse<S: AsRef<str>>(lines: &[S]) -> Option<ChunkerSummary> {
        let mut summary = ChunkerSummary::default();
        let (mut streams, mut latency) = (false, false);
        for line in lines {
            let line = line.as_ref().trim();
            if let Some(rest) = line.strip_prefix("streams verified") {
                summary.streams_verified = rest.trim().parse().ok()?;
                streams = true;
            } else if let Some(rest) = line.strip_prefix("chunks published") {
                summary.chunks_published = rest.split_whitespace().next()?.parse().ok()?;
            } else if let Some(rest) = line.strip_prefix("latency, final chunk to verified sum:") {
                // "p50 1.0 ms, p99 2.0 ms, max 3.0 ms (4 samples)"
                let words: Vec<&str> = rest
                    .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
                    .filter(|word| !word.is_empty())
                    .collect();
                let after = |key: &str| -> Option<&str> {
                    let at = words.iter().position(|word| *word == key)?;
                    words.get(at + 1).copied()
                };
                summary.latency_p50_ms = after("p50")?.parse().ok()?;
                summary.latency_p99_ms = after("p99")?.parse().ok()?;
                summary.latency_max_ms = after("max")?.parse().ok()?;
                let samples = words.iter().position(|word| *word == "samples")?;
                summary.latency_samples = words.get(samples.checked_sub(1)?)?.parse().ok()?;
                latency = true;
            }
        }
        (streams && latency).then_some(summary)
    }
}

/// Resident memory of one process incarnation: its start (sampled once it
/// was warm) and its end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RssRecord {
    /// The process.
    pub process: String,
    /// Its incarnation (1 = never restarted).
    pub incarnation: u32,
    /// RSS when the incarnation was warm, in KiB.
    pub start_kib: Option<u64>,
    /// The incarnation's age at that sample, in seconds.
    pub start_age_s: Option<f64>,
    /// RSS at the end of the run, in KiB.
    pub end_kib: Option<u64>,
    /// `end / start`, when both exist.
    pub growth: Option<f64>,
}

impl ChaosReport {
    /// Marks the verdict from [`failures`](Self::failures).
    pub fn conclude(&mut self) {
        self.passed = self.failures.is_empty();
    }
}

fn ms(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_string(), |ms| format!("{:.1} s", ms as f64 / 1e3))
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "chaos: seed {}, {} topology, {:.0} s of faults planned ({:.0} s in all), {} partitions, {} workers × {} chunks",
            self.seed,
            self.topology,
            self.duration_ms as f64 / 1e3,
            self.elapsed_ms as f64 / 1e3,
            self.partitions,
            self.workers,
            self.chunks
        )?;
        let kinds: Vec<String> = self
            .faults_by_kind
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect();
        writeln!(
            f,
            "  faults            {} ({}); consumer-host kills {}, broker kills {}",
            self.faults.len(),
            kinds.join(", "),
            self.consumer_kills,
            self.broker_kills
        )?;
        for (kind, figures) in &self.recovery {
            writeln!(
                f,
                "  recovery          {kind}: p50 {}, max {} ({} measured)",
                ms(Some(figures.p50_ms)),
                ms(Some(figures.max_ms)),
                figures.count
            )?;
        }
        match &self.chunker.summary {
            Some(summary) => {
                writeln!(
                    f,
                    "  chunker           {} ({} incarnations); streams verified {}, chunks published {}",
                    self.chunker.outcome,
                    self.chunker.incarnations,
                    summary.streams_verified,
                    summary.chunks_published
                )?;
                writeln!(
                    f,
                    "  latency           p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
                    summary.latency_p50_ms,
                    summary.latency_p99_ms,
                    summary.latency_max_ms,
                    summary.latency_samples
                )?;
            }
            None => writeln!(
                f,
                "  chunker           {} ({} incarnations); no summary",
                self.chunker.outcome, self.chunker.incarnations
            )?,
        }
        for rss in &self.rss {
            let kib = |v: Option<u64>| {
                v.map_or("-".to_string(), |k| format!("{:.0} MiB", k as f64 / 1024.0))
            };
            writeln!(
                f,
                "  memory            {} #{}: {} warm, {} at the end{}",
                rss.process,
                rss.incarnation,
                kib(rss.start_kib),
                kib(rss.end_kib),
                rss.growth.map_or(String::new(), |g| format!(" (×{g:.2})"))
            )?;
        }
        writeln!(f, "  drain             {}", ms(self.drain_ms))?;
        match (&self.audit_text, self.anomalies) {
            (Some(text), _) => {
                for line in text.lines() {
                    writeln!(f, "  audit | {line}")?;
                }
            }
            (None, Some(anomalies)) => writeln!(f, "  audit             {anomalies} anomalies")?,
            (None, None) => writeln!(f, "  audit             not run")?,
        }
        if self.passed {
            write!(f, "chaos: PASSED")
        } else {
            writeln!(f, "chaos: FAILED")?;
            for (i, failure) in self.failures.iter().enumerate() {
                if i > 0 {
                    writeln!(f)?;
                }
                write!(f, "  - {failure}")?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod test {
    use std::time::Duration;

    use super::*;
    use crate::chaos::schedule::{Fault, Target};

    const SUMMARY: &[&str] = &[
        "stream-sum: interrupted after 181.2 s; every sum read so far verified",
        "  streams verified   1234",
        "  chunks published   5000 (27 chunks/s)",
        "  sums read          1300 (66 of other runs)",
        "  latency, final chunk to verified sum: p50 512.5 ms, p99 9021.0 ms, max 14000.3 ms (1234 samples)",
    ];

    #[test]
    fn the_chunker_s_summary_is_parsed() {
        let summary = ChunkerSummary::parse(SUMMARY).unwrap();
        assert_eq!(
            summary,
            ChunkerSummary {
                streams_verified: 1234,
                chunks_published: 5000,
                latency_p50_ms: 512.5,
                latency_p99_ms: 9021.0,
                latency_max_ms: 14000.3,
                latency_samples: 1234,
            }
        );
    }

    #[test]
    fn a_summary_without_its_latency_line_is_no_summary() {
        assert_eq!(ChunkerSummary::parse(&SUMMARY[..3]), None);
        assert_eq!(ChunkerSummary::parse(&["  streams verified   x"]), None);
    }

    fn report() -> ChaosReport {
        let planned = PlannedFault {
            at: Duration::from_millis(15_250),
            fault: Fault::Kill {
                target: Target::Consumer,
                restart_after: Duration::from_millis(1_500),
            },
        };
        ChaosReport {
            seed: 7,
            topology: Topology::Split,
            duration_ms: 180_000,
            elapsed_ms: 195_000,
            partitions: 4,
            workers: 4,
            chunks: 3,
            dir: "/tmp/run".into(),
            faults_by_kind: BTreeMap::from([("kill-consumer".to_string(), 1)]),
            consumer_kills: 1,
            broker_kills: 0,
            faults: vec![FaultRecord {
                planned,
                at_ms: 15_300,
                recovery: Recovery {
                    answering_ms: Some(400),
                    primary_ms: Some(2_100),
                    total_ms: Some(3_600),
                },
                notes: vec![],
                failure: None,
                disk: None,
            }],
            chunker: ChunkerFigures {
                incarnations: 1,
                succeeded: true,
                outcome: "interrupted, exit 0".into(),
                summary: ChunkerSummary::parse(SUMMARY),
            },
            recovery: BTreeMap::from([(
                "kill-consumer".to_string(),
                RecoveryFigures::of(&mut [3_600]),
            )]),
            rss: vec![RssRecord {
                process: "consumer".into(),
                incarnation: 2,
                start_kib: Some(100 << 10),
                start_age_s: Some(20.5),
                end_kib: Some(150 << 10),
                growth: Some(1.5),
            }],
            drain_ms: Some(800),
            audit: Some(serde_json::json!({"streams_completed": 1234})),
            anomalies: Some(0),
            audit_text: None,
            failures: vec![],
            passed: true,
        }
    }

    #[test]
    fn the_report_serializes_with_its_figures_in_milliseconds() {
        let json = serde_json::to_value(report()).unwrap();
        assert_eq!(json["seed"], 7);
        assert_eq!(json["topology"], "split");
        assert_eq!(json["consumer_kills"], 1);
        assert_eq!(json["faults"][0]["planned"]["at_ms"], 15_250);
        assert_eq!(json["faults"][0]["planned"]["kind"], "kill");
        assert_eq!(json["faults"][0]["planned"]["target"], "consumer");
        assert_eq!(json["faults"][0]["planned"]["restart_after"], 1_500);
        assert_eq!(json["faults"][0]["recovery"]["total_ms"], 3_600);
        assert_eq!(json["chunker"]["summary"]["latency_max_ms"], 14000.3);
        assert_eq!(json["chunker"]["succeeded"], true);
        assert_eq!(json["audit"]["streams_completed"], 1234);
        assert_eq!(json["anomalies"], 0);
        assert_eq!(json["rss"][0]["growth"], 1.5);
        assert_eq!(json["passed"], true);
        assert!(json.get("audit_text").is_none());
        assert!(
            json["faults"][0].get("disk").is_none(),
            "only disk damage has one"
        );
    }

    #[test]
    fn the_verdict_follows_the_failures_and_the_summary_names_them() {
        let mut failed = report();
        failed.failures.push("2 anomalies".into());
        failed.conclude();
        assert!(!failed.passed);
        let text = failed.to_string();
        assert!(text.contains("chaos: FAILED"), "{text}");
        assert!(text.contains("  - 2 anomalies"), "{text}");
        let mut passed = report();
        passed.conclude();
        let text = passed.to_string();
        assert!(text.contains("seed 7"), "{text}");
        assert!(
            text.contains("kill-consumer: p50 3.6 s, max 3.6 s"),
            "{text}"
        );
        assert!(text.ends_with("chaos: PASSED"), "{text}");
    }

    #[test]
    fn recovery_figures_take_the_median_and_the_worst() {
        assert_eq!(
            RecoveryFigures::of(&mut [5, 1, 3]),
            RecoveryFigures {
                count: 3,
                p50_ms: 3,
                max_ms: 5
            }
        );
        assert_eq!(RecoveryFigures::of(&mut []), RecoveryFigures::default());
    }
}
