//! `weir bench limits`: how soon the guest limits stop a runaway guest, and
//! what they cost a guest that behaves.
//!
//! **Interrupt latency.** The hostile guest (`tests/guests/hostile`) spins
//! forever on the message `loop`. For each per-call deadline
//! (`--deadlines-ms`), `--runs` calls are made, each timed from just before
//! the call (which arms its deadline) to:
//!
//! - **trap seen**: the call returning [`AppError::Crashed`] for its
//!   deadline (the epoch ticker interrupted the guest, wasmtime unwound it
//!   and the host dropped the instance);
//! - **ready**: a fresh instance made by [`Application::reset`], which is
//!   what a shard's retry starts from.
//!
//! Both are reported as the overshoot past the deadline (p50, p99, max). A
//! deadline is armed in whole epoch ticks ([`Runtime::deadline_ticks`]), so
//! it expires between the deadline and one tick later by design
//! (`--tick-ms`, default the runtime's). Each call starts after a random
//! pause of up to one tick, as a message arrives at any point of a tick:
//! back-to-back calls would all start just after the tick that interrupted
//! the previous one, and all overshoot by a whole tick.
//!
//! **Fuel exhaustion.** The same loop on a second runtime that meters fuel
//! (an engine-wide setting the default runtime leaves off), under each
//! per-call budget of `--fuel`: the time to the out-of-fuel trap and to a
//! fresh instance, and the fuel the loop burns per microsecond.
//!
//! Every crash must name the expected limit and a no-op call must then
//! succeed on the fresh instance; anything else fails the benchmark, so the
//! numbers of a run that measured something else are never printed.
//!
//! **Throughput with limits on versus off.** `weir bench summer`'s
//! throughput run (prefilled partitions, one shard each, RocksDB,
//! exactly-once commits, every committed sum checked) of the WASM summer
//! under each [`Setting`], in an order that rotates across `--rounds`, best
//! round of each; and the summer alone (in memory, as in `weir bench
//! summer`), where the guest's time is all there is, so that ratio is the
//! cost of the limits to the guest itself.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;

use super::bench_summer::{Bench, RunShape, Summer, alone_envelopes, time_alone};
use crate::consumer::{AppError, Application, DiscardPublisher, MemoryStore, TxnContext};
use crate::limits;
use crate::message::{Clock, Envelope, Flags, ProducerId, build_uuid};
use crate::runtime::guests::{SUMMER_WASM, test_guests::HOSTILE_WASM};
use crate::runtime::{ConsumerModule, GuestApplication, GuestLimits, Runtime, RuntimeConfig};

/// What a deadline crash says (see `GuestApplication`'s crash reasons).
const DEADLINE_CRASH: &str = "deadline of";
/// What an out-of-fuel crash says.
const FUEL_CRASH: &str = "fuel budget of";

/// Interrupt latency, fuel exhaustion, and throughput with limits on and off.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  weir bench limits
  weir bench limits --runs 200 --deadlines-ms 10,100,1000 --tick-ms 1
  weir bench limits --fuel 1000000,100000000 --rounds 0   # no throughput part
  weir bench limits --runs 1 --rounds 5 --chunks-total 500000")]
pub struct BenchLimits {
    /// Runaway calls per deadline and per fuel budget.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    runs: u32,
    /// Per-call deadlines to interrupt the runaway guest at, in
    /// milliseconds, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [10u64, 50, 100],
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    deadlines_ms: Vec<u64>,
    /// Period of the epoch ticker for the deadline runs, in milliseconds
    /// (the granularity of deadlines).
    #[arg(long, default_value_t = limits::DEFAULT_EPOCH_TICK_MS,
          value_parser = clap::value_parser!(u64).range(1..=1_000))]
    tick_ms: u64,
    /// Per-call fuel budgets for the fuel runs, comma-separated; each must
    /// run out within the default call deadline.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000_000u64, 100_000_000, 1_000_000_000],
          value_parser = clap::value_parser!(u64).range(1..=limits::SHARD_LIMIT_MAX_FUEL_PER_CALL))]
    fuel: Vec<u64>,
    /// Throughput rounds; settings rotate which runs first, and the best
    /// round of each is reported (0 skips the throughput part).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=100))]
    rounds: u32,
    #[command(flatten)]
    shape: RunShape,
    /// Seed of the generated streams (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Directory for the benchmark's data (default: a new temporary
    /// directory, removed afterwards).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl BenchLimits {
    /// Runs the three parts and prints their tables.
    pub async fn execute(self) -> Result<()> {
        let tick = Duration::from_millis(self.tick_ms);
        println!(
            "interrupt: hostile guest `loop` (spins forever), epoch tick {} ms, {} runs per \
             deadline; overshoot past the deadline",
            self.tick_ms, self.runs
        );
        println!(
            "  {:>14}  {:>32}  {:>32}",
            "deadline", "trap seen p50 / p99 / max", "instance ready p50 / p99 / max"
        );
        let deadlines = self.deadlines_ms.iter().map(|ms| {
            let deadline = Duration::from_millis(*ms);
            Runaway {
                what: format!("{ms} ms"),
                limits: GuestLimits {
                    call_deadline: deadline,
                    ..GuestLimits::default()
                },
                from: deadline,
                phase: tick,
                expect: DEADLINE_CRASH,
            }
        });
        let config = RuntimeConfig {
            epoch_tick: tick,
            ..RuntimeConfig::default()
        };
        runaway_table(config, deadlines.collect(), self.runs, |_, _| String::new()).await?;

        println!(
            "fuel: the same loop on a fuel-metering runtime, {} runs per budget; time from the \
             call",
            self.runs
        );
        println!(
            "  {:>14}  {:>32}  {:>32}  {:>8}",
            "budget", "exhausted p50 / p99 / max", "instance ready p50 / p99 / max", "fuel/µs"
        );
        let budgets = self.fuel.iter().map(|budget| Runaway {
            what: budget.to_string(),
            limits: GuestLimits {
                fuel_per_call: Some(*budget),
                ..GuestLimits::default()
            },
            from: Duration::ZERO,
            phase: Duration::ZERO,
            expect: FUEL_CRASH,
        });
        let config = RuntimeConfig {
            fuel: true,
            ..RuntimeConfig::default()
        };
        runaway_table(config, budgets.collect(), self.runs, |runaway, times| {
            let budget = runaway.limits.fuel_per_call.unwrap_or_default();
            let micros = times.trap.value_at_quantile(0.5).max(1);
            format!("  {:>8.0}", budget as f64 / micros as f64)
        })
        .await?;

        if self.rounds > 0 {
            self.throughput().await?;
        }
        Ok(())
    }

    /// The throughput part; see the module docs.
    async fn throughput(&self) -> Result<()> {
        let seed = self.seed.unwrap_or_else(rand::random);
        let (dir, _temp) = super::data_dir_or_temp(self.data_dir.as_deref(), "weir-bench-limits-")?;
        let mut bench = Bench::open(dir, self.shape.partitions).await?;
        let result = self.compare(&mut bench, seed).await;
        bench.shutdown().await;
        result
    }

    /// Runs and prints the throughput comparison on `bench`.
    async fn compare(&self, bench: &mut Bench, seed: u64) -> Result<()> {
        let (streams, per_stream, chunks) = self.shape.sizes();
        // Fuel needs its own engine; its compiled code differs, so it is
        // kept in memory rather than in the default runtime's disk cache.
        let fueled = Runtime::new(RuntimeConfig {
            fuel: true,
            ..RuntimeConfig::default()
        })
        .context("starting the fuel-metering runtime")?
        .consumer_module(SUMMER_WASM)
        .context("loading the summer on the fuel-metering runtime")?;
        let modules = [bench.module.clone(), bench.module.clone(), fueled];
        println!(
            "throughput: wasm summer, {} partitions, {chunks} chunks per run ({streams} streams \
             of {per_stream} chunks), RocksDB stores, exactly-once commits, seed {seed}",
            self.shape.partitions
        );
        for setting in Setting::ALL {
            println!("  {:<8} {}", setting.name(), setting.describe());
        }

        let alone = self
            .alone(&modules, seed, streams)
            .await
            .context("the summers alone")?;
        let mut best = [Duration::MAX; 3];
        let mut order = Setting::ALL;
        for round in 0..self.rounds {
            for setting in order {
                bench.module = modules[setting as usize].clone();
                bench.limits = setting.limits();
                let name = format!("limits-r{round}-{}", setting.name());
                let (stats, _) = bench
                    .throughput(Summer::Wasm, &name, seed, streams, self.shape.chunks)
                    .await
                    .with_context(|| format!("the summer under {} limits", setting.name()))?;
                println!(
                    "  round {}  {:<8} {chunks} chunks in {:.2} s = {:>8.0} chunks/s, {} \
                     transactions",
                    round + 1,
                    setting.name(),
                    stats.elapsed.as_secs_f64(),
                    stats.rate(chunks),
                    stats.transactions,
                );
                let slot = &mut best[setting as usize];
                *slot = (*slot).min(stats.elapsed);
            }
            order.rotate_left(1);
        }

        println!(
            "  best of {} round{}:",
            self.rounds,
            if self.rounds == 1 { "" } else { "s" }
        );
        println!(
            "  {:<8} {:>12} {:>11}   {:>14} {:>11}",
            "limits", "chunks/s", "vs default", "alone µs/chunk", "vs default"
        );
        let rate = |elapsed: Duration| chunks as f64 / elapsed.as_secs_f64().max(1e-9);
        let default = Setting::Default as usize;
        for setting in Setting::ALL {
            let at = setting as usize;
            println!(
                "  {:<8} {:>12.0} {:>11.2}   {:>14.3} {:>11.2}",
                setting.name(),
                rate(best[at]),
                rate(best[at]) / rate(best[default]),
                alone[at].as_secs_f64() * 1e6 / chunks as f64,
                alone[default].as_secs_f64() / alone[at].as_secs_f64().max(1e-12),
            );
        }
        println!("  (vs default: speed relative to the default limits; above 1 is faster)");
        Ok(())
    }

    /// The best time of each setting's summer alone over the same chunks,
    /// over `--rounds` rounds in rotating order.
    async fn alone(
        &self,
        modules: &[ConsumerModule; 3],
        seed: u64,
        streams: u64,
    ) -> Result<[Duration; 3]> {
        let envelopes = alone_envelopes(seed, streams, self.shape.chunks)?;
        let mut apps = Vec::with_capacity(modules.len());
        for setting in Setting::ALL {
            apps.push(modules[setting as usize].application("alone", setting.limits())?);
        }
        let rounds = self.rounds;
        tokio::task::spawn_blocking(move || {
            let mut best = [Duration::MAX; 3];
            let mut order = Setting::ALL;
            for _ in 0..rounds {
                for setting in order {
                    let at = setting as usize;
                    let took = time_alone(&mut apps[at], &envelopes)
                        .with_context(|| format!("under {} limits", setting.name()))?;
                    best[at] = best[at].min(took);
                }
                order.rotate_left(1);
            }
            Ok(best)
        })
        .await
        .context("the benchmark thread died")?
    }
}

/// The limits the summer runs under in the throughput part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    /// [`GuestLimits::default`] on the default runtime.
    Default = 0,
    /// As loose as the runtime allows.
    Loose = 1,
    /// Default limits on a fuel-metering runtime.
    Fuel = 2,
}

impl Setting {
    const ALL: [Setting; 3] = [Setting::Default, Setting::Loose, Setting::Fuel];

    fn name(self) -> &'static str {
        match self {
            Setting::Default => "default",
            Setting::Loose => "loose",
            Setting::Fuel => "fuel",
        }
    }

    fn describe(self) -> String {
        let defaults = GuestLimits::default();
        match self {
            Setting::Default => format!(
                "the default limits: {:?} deadline per call (epoch ticks), {} MiB memory cap",
                defaults.call_deadline,
                defaults.memory_bytes >> 20
            ),
            // The engine always compiles epoch checks in, so they still run:
            // only the values they compare against change.
            Setting::Loose => "a deadline that never expires, no memory or table cap (epoch \
                               checks stay compiled in: the runtime cannot turn them off)"
                .to_string(),
            Setting::Fuel => format!(
                "the default limits on a fuel-metering runtime, with the largest budget a shard \
                 label allows ({} per call)",
                limits::SHARD_LIMIT_MAX_FUEL_PER_CALL
            ),
        }
    }

    fn limits(self) -> GuestLimits {
        match self {
            Setting::Default => GuestLimits::default(),
            Setting::Loose => GuestLimits {
                // `deadline_ticks` saturates; the epoch never gets there.
                call_deadline: Duration::MAX,
                memory_bytes: usize::MAX,
                table_elements: usize::MAX,
                ..GuestLimits::default()
            },
            Setting::Fuel => GuestLimits {
                fuel_per_call: Some(limits::SHARD_LIMIT_MAX_FUEL_PER_CALL),
                ..GuestLimits::default()
            },
        }
    }
}

/// Runs each of `runaways` on a blocking thread (guest calls never run on a
/// tokio worker) with a runtime made from `config`, and prints a row for
/// each: its name, its times, and what `extra` adds.
async fn runaway_table(
    config: RuntimeConfig,
    runaways: Vec<Runaway>,
    runs: u32,
    extra: fn(&Runaway, &RunawayTimes) -> String,
) -> Result<()> {
    tokio::task::spawn_blocking(move || -> Result<()> {
        let module = Runtime::new(config)?.consumer_module(HOSTILE_WASM)?;
        for runaway in runaways {
            let times = time_runaways(&module, &runaway, runs)
                .with_context(|| format!("the runaway guest under {}", runaway.what))?;
            let early = match times.early {
                0 => String::new(),
                early => format!("  ({early} interrupted before the deadline)"),
            };
            println!(
                "  {:>14}  {}  {}{}{early}",
                runaway.what,
                spread(&times.trap),
                spread(&times.ready),
                extra(&runaway, &times),
            );
        }
        Ok(())
    })
    .await
    .context("the benchmark thread died")?
}

/// How [`time_runaways`] runs the hostile `loop`.
struct Runaway {
    /// The limit, for the table and errors.
    what: String,
    /// The limits of its instance.
    limits: GuestLimits,
    /// What each time is measured past (the deadline, or zero).
    from: Duration,
    /// Each call starts after a random pause shorter than this.
    phase: Duration,
    /// What the crash of each call must say.
    expect: &'static str,
}

/// What [`time_runaways`] measured, in microseconds past `from`.
struct RunawayTimes {
    /// To the call's crash.
    trap: Histogram<u64>,
    /// To a fresh instance after the crash.
    ready: Histogram<u64>,
    /// Calls that crashed before `from` (a deadline that expired early).
    early: u32,
}

/// Makes `runs` calls of the hostile `loop` (see [`Runaway`]), each of
/// which must crash as expected, and times each from the call to its crash
/// and to the fresh instance of `reset`, less `from`.
fn time_runaways(module: &ConsumerModule, runaway: &Runaway, runs: u32) -> Result<RunawayTimes> {
    // Each crash logs a warning; here they are the point, and would bury
    // the table. Only this thread's events are dropped.
    tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
        time_runaways_quietly(module, runaway, runs)
    })
}

fn time_runaways_quietly(
    module: &ConsumerModule,
    runaway: &Runaway,
    runs: u32,
) -> Result<RunawayTimes> {
    let Runaway {
        what: _,
        limits,
        from,
        phase,
        expect,
    } = runaway;
    let mut app = module.application("bench-limits", limits.clone())?;
    let (runaway, noop) = (command("loop"), command("noop"));
    let (mut store, mut sink) = (MemoryStore::default(), DiscardPublisher);
    let mut txn = TxnContext {
        shard: "bench-limits",
        store: &mut store,
        publisher: &mut sink,
    };
    let mut times = RunawayTimes {
        trap: Histogram::new_with_bounds(1, 3_600_000_000, 3)?,
        ready: Histogram::new_with_bounds(1, 3_600_000_000, 3)?,
        early: 0,
    };
    let past = |took: Duration| {
        let micros = took.saturating_sub(*from).as_micros();
        u64::try_from(micros).unwrap_or(u64::MAX).max(1)
    };
    let phase_nanos = u64::try_from(phase.as_nanos()).unwrap_or(u64::MAX);
    for run in 0..runs {
        if phase_nanos > 0 {
            std::thread::sleep(Duration::from_nanos(rand::random_range(0..phase_nanos)));
        }
        let started = Instant::now();
        let outcome = app.consume_message(&mut txn, &runaway);
        let trapped = started.elapsed();
        app.reset();
        let ready = started.elapsed();
        match outcome {
            Err(AppError::Crashed(reason)) if reason.contains(*expect) => {}
            Err(err) => bail!("run {run}: the runaway guest failed otherwise: {err}"),
            Ok(()) => bail!("run {run}: the runaway guest returned"),
        }
        check_fresh(&mut app, &mut txn, &noop).with_context(|| format!("run {run}"))?;
        if trapped < *from {
            times.early += 1;
        }
        times.trap.saturating_record(past(trapped));
        times.ready.saturating_record(past(ready));
    }
    Ok(times)
}

/// Fails unless `app` (just reset) takes a no-op call, so that a reset that
/// could not instantiate is not timed as a ready instance.
fn check_fresh(
    app: &mut GuestApplication,
    txn: &mut TxnContext<'_>,
    noop: &Envelope,
) -> Result<()> {
    app.consume_message(txn, noop)
        .map_err(|err| anyhow!("the re-created instance failed a no-op call: {err}"))
}

/// A committed message whose document is the hostile guest's command `doc`.
fn command(doc: &'static str) -> Envelope {
    let uuid = build_uuid(ProducerId([1; 6]), Clock(1 << 4), Flags::OutsideTxn);
    Envelope::new(
        Arc::from("bench/limits/hostile"),
        0,
        doc.len() as i64 + 1,
        uuid,
        Bytes::from_static(doc.as_bytes()),
    )
}

/// `p50 / p99 / max` of microseconds, in milliseconds.
fn spread(micros: &Histogram<u64>) -> String {
    let ms = |value: u64| value as f64 / 1e3;
    format!(
        "{:>8.2} / {:>8.2} / {:>8.2} ms",
        ms(micros.value_at_quantile(0.5)),
        ms(micros.value_at_quantile(0.99)),
        ms(micros.max())
    )
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_runaway_is_timed_past_its_deadline_and_a_wrong_crash_fails_the_measurement() {
        let runtime = crate::runtime::testing::runtime();
        let module = runtime.consumer_module(HOSTILE_WASM).unwrap();
        let deadline = Duration::from_millis(10);
        let limits = GuestLimits {
            call_deadline: deadline,
            ..GuestLimits::default()
        };
        let mut runaway = Runaway {
            what: "10 ms".into(),
            limits,
            from: deadline,
            phase: runtime.config().epoch_tick,
            expect: DEADLINE_CRASH,
        };
        let times = time_runaways(&module, &runaway, 3).unwrap();
        assert_eq!(times.trap.len(), 3);
        assert_eq!(times.ready.len(), 3);

        // A deadline crash where fuel was expected is not measured as fuel.
        runaway.expect = FUEL_CRASH;
        let err = time_runaways(&module, &runaway, 1)
            .err()
            .expect("the wrong limit must fail the measurement");
        assert!(format!("{err:#}").contains("failed otherwise"), "{err:#}");
    }

    #[test]
    fn the_loose_setting_arms_the_longest_deadline_the_runtime_takes() {
        let runtime = crate::runtime::testing::runtime();
        let loose = Setting::Loose.limits();
        assert!(runtime.deadline_ticks(loose.call_deadline) > u64::MAX / 4);
        runtime
            .consumer_module(SUMMER_WASM)
            .unwrap()
            .application("loose", loose)
            .expect("a summer instance under the loose limits");
    }
}
