//! `weir audit`: the independent stream-sum auditor
//! ([`stream_sum::audit`](crate::stream_sum::audit)) as a command. It reads
//! every chunk partition and the sums journal of a data directory or a
//! running server, prints the report, optionally writes it as JSON, and
//! fails if the history has any anomaly, naming the kinds.
//!
//! `--data-dir` takes a broker's data directory or a `weir stream-sum
//! --data-dir` directory (whose broker lives in `broker/`). Unlike `weir
//! journals`, it never creates one: auditing an empty path is an error.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::target::Target;
use crate::stream_sum::audit::audit;

/// Audit a stream-sum run: every sum committed once and correct.
#[derive(Debug, Args)]
#[command(
    after_help = "Run it once the run's writers have stopped: sums still in flight count as lost.

Anomalies (Jepsen's terms): lost, duplicated, wrong, aborted_read (G1a), unknown,
unfinished, clock_regression, duplicated_chunk, malformed. The exit status is
non-zero if there is any.

Examples:
  weir stream-sum --data-dir /tmp/ss && weir audit --data-dir /tmp/ss
  weir audit --broker 127.0.0.1:8080 --json audit.json"
)]
pub struct AuditCommand {
    /// A broker's data directory, or a `weir stream-sum` data directory
    /// (its `broker/`); never created.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "broker",
        conflicts_with = "broker"
    )]
    data_dir: Option<PathBuf>,
    /// A running server's address (`weir serve`).
    #[arg(long, value_name = "ADDR")]
    broker: Option<String>,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

impl AuditCommand {
    /// Audits, prints the report, writes the JSON; fails on any anomaly.
    pub async fn execute(self) -> Result<()> {
        // Opened as `weir journals` opens its target, once the directory
        // is known to hold a broker (opening would create one).
        let target = Target {
            data_dir: match (&self.data_dir, &self.broker) {
                (Some(dir), None) => Some(broker_dir(dir)?),
                _ => None,
            },
            broker: self.broker.clone(),
        };
        let journals = target.open().await?;
        let result = audit(journals.client()).await;
        journals.close().await;
        let report = result.context("auditing the stream-sum journals")?;
        print!("{report}");
        if let Some(path) = &self.json {
            let json = serde_json::to_vec_pretty(&report).context("encoding the report")?;
            std::fs::write(path, json)
                .with_context(|| format!("writing the report to {}", path.display()))?;
        }
        let found = report.by_kind.found();
        if !found.is_empty() {
            let kinds: Vec<String> = found
                .iter()
                .map(|(kind, count)| format!("{kind} {count}"))
                .collect();
            bail!(
                "the audit found {} anomalies: {}",
                report.anomalies(),
                kinds.join(", ")
            );
        }
        Ok(())
    }
}

/// The broker directory of `dir`: `dir` itself if it holds journals, else
/// its `broker/` (a `weir stream-sum` data directory).
fn broker_dir(dir: &Path) -> Result<PathBuf> {
    let journals = |dir: &Path| dir.join("journals").is_dir();
    if journals(dir) {
        Ok(dir.to_path_buf())
    } else if journals(&dir.join("broker")) {
        Ok(dir.join("broker"))
    } else {
        bail!(
            "{} holds no broker data (neither journals/ nor broker/journals/)",
            dir.display()
        )
    }
}
