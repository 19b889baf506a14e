//! `weir chaos`: stream-sum as separate processes under a seeded schedule of
//! process faults, then an audit of everything written (see
//! [`chaos`](crate::chaos)). Prints the seed first and a readable summary
//! last, writes the figures as JSON, and exits non-zero saying why if the
//! run failed.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::chaos::{self, ChaosConfig, ScheduleConfig, Topology};
use crate::limits;

/// Run stream-sum under seeded process faults and audit the result.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  weir chaos                                         # the short run (CI): 3 minutes, a fault every 10-20 s
  weir chaos --seed 1234                             # replay the schedule of a printed seed
  weir chaos --duration 10m --fault-every 15s..30s   # the long run
  weir chaos --whole --dir /tmp/chaos --report /tmp/chaos.json

The short run holds at least 5 SIGKILLs of the consumer host and 2 of the
broker; the rest of the schedule mixes graceful stops, SIGSTOP pauses, chunker
kills and takeovers (a paused consumer host is replaced and must be fenced).
Logs of every process are in <dir>/logs/.")]
pub struct ChaosCommand {
    /// Seed of the fault schedule and of the chunkers' streams (default:
    /// from the clock). The same seed replays the same schedule.
    #[arg(long)]
    seed: Option<u64>,
    /// Length of the fault phase, e.g. `180s` or `10m` (default: 180s).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Gap between faults, drawn uniformly from MIN..MAX, e.g. `15s..30s`
    /// (default: 10s..20s).
    #[arg(long, value_name = "MIN..MAX", value_parser = parse_gap)]
    fault_every: Option<Gap>,
    /// Run the broker and the consumer host as separate processes (the
    /// default).
    #[arg(long, conflicts_with = "whole")]
    split: bool,
    /// Run one `weir serve` holding both.
    #[arg(long)]
    whole: bool,
    /// Leave takeovers (pause, replace and fence a consumer host) out of the
    /// schedule.
    #[arg(long)]
    no_takeover: bool,
    /// Run directory for data and logs (default: a new directory under the
    /// system's temporary directory, kept).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Where to write the JSON report (default: <dir>/report.json).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Chunk partitions (and summer shards).
    #[arg(long, default_value_t = limits::CHAOS_DEFAULT_PARTITIONS,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    partitions: u32,
    /// Chunker workers.
    #[arg(long, default_value_t = limits::CHAOS_DEFAULT_WORKERS,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    workers: u32,
    /// Data chunks per stream.
    #[arg(long, default_value_t = limits::CHAOS_CHUNKS_PER_STREAM)]
    chunks: u32,
}

/// A range of gaps between faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    min: Duration,
    max: Duration,
}

impl ChaosCommand {
    /// Runs the harness; fails, saying why, unless the run passed.
    pub async fn execute(self) -> Result<()> {
        let seed = self.seed.unwrap_or_else(clock_seed);
        let mut schedule = ScheduleConfig::new(
            seed,
            self.duration
                .unwrap_or(Duration::from_secs(limits::CHAOS_DEFAULT_DURATION_SECS)),
        );
        if let Some(gap) = self.fault_every {
            schedule.every = gap.min..=gap.max;
        }
        schedule.topology = if self.whole {
            Topology::Whole
        } else {
            Topology::Split
        };
        schedule.takeover = !self.no_takeover;
        let dir = match self.dir {
            Some(dir) => dir,
            None => std::env::temp_dir().join(format!("weir-chaos-{seed}-{}", unix_secs())),
        };
        let report_path = self.report.unwrap_or_else(|| dir.join("report.json"));
        let exe = std::env::current_exe().context("finding the weir executable")?;
        let config = ChaosConfig {
            exe,
            dir: dir.clone(),
            schedule,
            partitions: self.partitions,
            workers: self.workers,
            chunks: self.chunks,
        };

        let say = |line: &str| println!("{line}");
        // Ctrl-C drops the run: every child is SIGKILLed with its handle.
        let report = tokio::select! {
            report = chaos::run(config, &say) => report?,
            _ = tokio::signal::ctrl_c() => bail!(
                "interrupted; data and logs are in {}", dir.display()
            ),
        };
        let json = serde_json::to_vec_pretty(&report).context("serializing the report")?;
        std::fs::write(&report_path, json)
            .with_context(|| format!("writing the report {}", report_path.display()))?;
        println!("{report}");
        println!("chaos: report in {}", report_path.display());
        if !report.passed {
            bail!(
                "the chaos run with seed {seed} failed: {} (logs in {})",
                report.failures.join("; "),
                dir.join("logs").display()
            );
        }
        Ok(())
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// A seed from the clock, for runs that were given none.
fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

/// Parses `1500ms`, `180s`, `10m`, `1h`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 180s, 10m, 1500ms)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1e3,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("{other:?} is not a unit (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|err| format!("{text:?}: {err}"))
}

/// Parses `MIN..MAX` (or one duration, for a fixed gap).
fn parse_gap(text: &str) -> Result<Gap, String> {
    let (min, max) = match text.split_once("..") {
        Some((min, max)) => (parse_duration(min)?, parse_duration(max)?),
        None => {
            let gap = parse_duration(text)?;
            (gap, gap)
        }
    };
    if min.is_zero() || min > max {
        return Err(format!("{text:?}: expected 0 < MIN <= MAX"));
    }
    Ok(Gap { min, max })
}

#[cfg(test)]
mod test {
    use clap::Parser;

    use super::*;

    #[test]
    fn durations_read_with_their_units() {
        assert_eq!(parse_duration("180s"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn gaps_read_as_a_range_or_one_value() {
        assert_eq!(
            parse_gap("15s..30s"),
            Ok(Gap {
                min: Duration::from_secs(15),
                max: Duration::from_secs(30)
            })
        );
        assert_eq!(
            parse_gap("20s"),
            Ok(Gap {
                min: Duration::from_secs(20),
                max: Duration::from_secs(20)
            })
        );
        assert!(parse_gap("30s..15s").is_err());
        assert!(parse_gap("0s..1s").is_err());
    }

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        chaos: ChaosCommand,
    }

    #[test]
    fn split_and_whole_exclude_each_other() {
        assert!(Wrapper::try_parse_from(["weir", "--split", "--whole"]).is_err());
        let parsed = Wrapper::try_parse_from([
            "weir",
            "--whole",
            "--seed",
            "7",
            "--duration",
            "10m",
            "--fault-every",
            "15s..30s",
        ])
        .unwrap();
        assert!(parsed.chaos.whole);
        assert_eq!(parsed.chaos.seed, Some(7));
        assert_eq!(parsed.chaos.duration, Some(Duration::from_secs(600)));
        assert_eq!(parsed.chaos.partitions, limits::CHAOS_DEFAULT_PARTITIONS);
    }
}
