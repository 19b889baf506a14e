//! `weir bench guests`: the summer in every language it is written in, side
//! by side in one run — the embedded Rust component, each component given
//! with `--guest NAME=FILE` (e.g. the Python, JavaScript and C summers of
//! `guests/`), and the same logic compiled natively into the host.
//!
//! For each component: its size; the time to compile it (Cranelift, no
//! cache); the time to instantiate it (median of `--instances` fresh
//! applications, which is what a shard pays on start and after a crash);
//! and its throughput alone: the same generated chunks, as envelopes in
//! memory, fed in batches of 1024 per call and per transaction to an
//! in-memory store (as `weir bench summer`'s "summers alone"). The
//! published sums of every summer are the same by the conformance suite;
//! here only time is measured.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use clap::Args;

use super::bench_summer::{alone_envelopes, time_alone};
use crate::runtime::{GuestLimits, Runtime, RuntimeConfig, guests};
use crate::stream_sum::NativeSummer;

/// Compare the summer's languages: size, compile, instantiate, throughput.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    weir bench guests\n  \
    weir bench guests --guest python=target/guests/python-summer.wasm \\\n    \
    --guest js=target/guests/js-summer.wasm --guest c=target/guests/c-summer.wasm")]
pub struct BenchGuests {
    /// Another summer component, as NAME=FILE (repeatable).
    #[arg(long = "guest", value_name = "NAME=FILE", value_parser = parse_guest)]
    guests: Vec<(String, PathBuf)>,
    /// Streams to generate.
    #[arg(long, default_value_t = 1_000)]
    streams: u64,
    /// Data chunks per stream (each stream also has an empty final chunk).
    #[arg(long, default_value_t = 30)]
    chunks: u32,
    /// Fresh instances timed per component.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    instances: u32,
    /// Seed of the generated streams.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_guest(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => {
            Ok((name.to_string(), PathBuf::from(file)))
        }
        _ => Err(format!("expected NAME=FILE, got {text:?}")),
    }
}

impl BenchGuests {
    /// Runs the benchmark and prints a table.
    pub async fn execute(self) -> Result<()> {
        let mut components = vec![("rust".to_string(), guests::SUMMER_WASM.to_vec())];
        for (name, file) in &self.guests {
            let wasm = std::fs::read(file)
                .with_context(|| format!("reading the {name} summer {}", file.display()))?;
            components.push((name.clone(), wasm));
        }
        let (streams, chunks, seed, instances) =
            (self.streams, self.chunks, self.seed, self.instances);
        tokio::task::spawn_blocking(move || run(components, streams, chunks, seed, instances))
            .await
            .context("the benchmark thread died")?
    }
}

fn run(
    components: Vec<(String, Vec<u8>)>,
    streams: u64,
    chunks: u32,
    seed: u64,
    instances: u32,
) -> Result<()> {
    let envelopes = alone_envelopes(seed, streams, chunks)?;
    let total = envelopes.len() as f64;
    let rate = |elapsed: Duration| total / elapsed.as_secs_f64().max(1e-9);
    let runtime = Runtime::new(RuntimeConfig::default()).context("starting the wasm runtime")?;
    println!(
        "guests: {} chunks ({streams} streams of {} chunks), batches of 1024, in-memory store",
        envelopes.len(),
        chunks + 1
    );
    println!(
        "  {:<10} {:>12} {:>12} {:>14} {:>14} {:>10}",
        "summer", "size", "compile", "instantiate", "chunks/s", "vs native"
    );
    let native = rate(time_alone(&mut NativeSummer::new(), &envelopes)?);
    for (name, wasm) in components {
        let started = Instant::now();
        let module = runtime
            .consumer_module(&wasm)
            .map_err(|err| anyhow!("the {name} summer: {err}"))?;
        let compile = started.elapsed();
        let mut times = Vec::with_capacity(instances as usize);
        for _ in 0..instances {
            let started = Instant::now();
            let app = module.application("bench", GuestLimits::default())?;
            times.push(started.elapsed());
            drop(app);
        }
        times.sort();
        let instantiate = times[times.len() / 2];
        let mut app = module.application("bench", GuestLimits::default())?;
        let throughput = rate(time_alone(&mut app, &envelopes)?);
        println!(
            "  {name:<10} {:>9} KiB {:>9.0} ms {:>11.3} ms {:>14.0} {:>9.3}x",
            wasm.len() / 1024,
            compile.as_secs_f64() * 1e3,
            instantiate.as_secs_f64() * 1e3,
            throughput,
            throughput / native
        );
    }
    println!(
        "  {:<10} {:>12} {:>12} {:>14} {:>14.0} {:>9.3}x",
        "native", "-", "-", "-", native, 1.0
    );
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn guests_are_named_files() {
        assert_eq!(
            parse_guest("py=a/b.wasm"),
            Ok(("py".to_string(), PathBuf::from("a/b.wasm")))
        );
        for bad in ["py", "=x.wasm", "py=", ""] {
            assert!(parse_guest(bad).is_err(), "{bad}");
        }
    }
}
