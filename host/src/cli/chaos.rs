//! `weir chaos`: stream-sum as separate processes under a seeded schedule of
//! process faults, then an audit of everything written (see
//! [`chaos`](crate::chaos)). Prints the seed first and a readable summary
//! last, writes the figures as JSON, and exits non-zero saying why if the
//! run failed. `--plan` prints a seed's schedule without running it;
//! `--long` is issue 6's long run (10 minutes, a fault every 15–30 s).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::chaos::{self, ChaosConfig, Schedule, ScheduleConfig, Topology};
use crate::limits;

/// Run stream-sum under seeded process faults and audit the result.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  weir chaos                                         # the short run (CI): 3 minutes, a fault every 10-20 s
  weir chaos --seed 1234                             # replay the schedule of a printed seed
  weir chaos --long                                  # the long run: 10 minutes, a fault every 15-30 s
  weir chaos --seed 1234 --plan                      # print the schedule only
  weir chaos --whole --dir /tmp/chaos --report /tmp/chaos.json

The short run holds at least 5 SIGKILLs of the consumer host and 2 of the
broker; the rest of the schedule mixes graceful stops, SIGSTOP pauses, chunker
kills, takeovers (a paused consumer host is replaced and must be fenced) and
disk damage (the broker is killed, a chunk partition's spool gets a torn tail
that the restart must cut off, and a canary journal a flipped bit that must be
reported as corrupt and never served). Logs of every process are in
<dir>/logs/.")]
pub struct ChaosCommand {
    /// Seed of the fault schedule and of the chunkers' streams (default:
    /// from the clock). The same seed replays the same schedule.
    #[arg(long)]
    seed: Option<u64>,
    /// Length of the fault phase, e.g. `180s` or `10m` (default: 180s, or
    /// 10m with `--long`).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Gap between faults, drawn uniformly from MIN..MAX, e.g. `15s..30s`
    /// (default: 10s..20s, or 15s..30s with `--long`).
    #[arg(long, value_name = "MIN..MAX", value_parser = parse_gap)]
    fault_every: Option<Gap>,
    /// The long run: 10 minutes of faults, one every 15-30 s (`--duration`
    /// and `--fault-every` still override either).
    #[arg(long)]
    long: bool,
    /// Print the schedule the seed draws (with its counts by kind) and exit
    /// without running anything.
    #[arg(long)]
    plan: bool,
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
    /// Leave disk damage (a torn spool tail and a flipped bit in the
    /// broker's data directory) out of the schedule.
    #[arg(long)]
    no_disk_damage: bool,
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
    /// The schedule configuration the flags ask for.
    fn schedule_config(&self, seed: u64) -> ScheduleConfig {
        let (duration, min_gap, max_gap) = if self.long {
            (
                limits::CHAOS_LONG_DURATION_SECS,
                limits::CHAOS_LONG_FAULT_GAP_MIN_SECS,
                limits::CHAOS_LONG_FAULT_GAP_MAX_SECS,
            )
        } else {
            (
                limits::CHAOS_DEFAULT_DURATION_SECS,
                limits::CHAOS_DEFAULT_FAULT_GAP_MIN_SECS,
                limits::CHAOS_DEFAULT_FAULT_GAP_MAX_SECS,
            )
        };
        let mut schedule =
            ScheduleConfig::new(seed, self.duration.unwrap_or(Duration::from_secs(duration)));
        schedule.every = match self.fault_every {
            Some(gap) => gap.min..=gap.max,
            None => Duration::from_secs(min_gap)..=Duration::from_secs(max_gap),
        };
        schedule.topology = if self.whole {
            Topology::Whole
        } else {
            Topology::Split
        };
        schedule.takeover = !self.no_takeover;
        schedule.disk_damage = !self.no_disk_damage;
        schedule.partitions = self.partitions;
        schedule
    }

    /// Runs the harness (or, with `--plan`, prints its schedule); fails,
    /// saying why, unless the run passed.
    pub async fn execute(self) -> Result<()> {
        let seed = self.seed.unwrap_or_else(clock_seed);
        let schedule = self.schedule_config(seed);
        if self.plan {
            let drawn = Schedule::draw(&schedule)?;
            println!("chaos: seed {seed}");
            for line in chaos::plan_lines(&schedule, &drawn) {
                println!("{line}");
            }
            return Ok(());
        }
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

    #[test]
    fn long_is_ten_minutes_at_a_fault_every_15_to_30_s_unless_overridden() {
        let long = Wrapper::try_parse_from(["weir", "--long"]).unwrap();
        let config = long.chaos.schedule_config(1);
        assert_eq!(config.duration, Duration::from_secs(600));
        assert_eq!(
            config.every,
            Duration::from_secs(15)..=Duration::from_secs(30)
        );
        let short = Wrapper::try_parse_from(["weir"]).unwrap();
        let config = short.chaos.schedule_config(1);
        assert_eq!(config.duration, Duration::from_secs(180));
        assert_eq!(
            config.every,
            Duration::from_secs(10)..=Duration::from_secs(20)
        );
        let overridden =
            Wrapper::try_parse_from(["weir", "--long", "--duration", "20m", "--partitions", "2"])
                .unwrap();
        let config = overridden.chaos.schedule_config(1);
        assert_eq!(config.duration, Duration::from_secs(1200));
        assert_eq!(config.partitions, 2);
        assert!(config.disk_damage);
        let without = Wrapper::try_parse_from(["weir", "--no-disk-damage"]).unwrap();
        assert!(!without.chaos.schedule_config(1).disk_damage);
    }
}
