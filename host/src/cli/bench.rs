//! `weir bench`: measurements of the host's hot paths, printed as tables.
//! Numbers quoted in the README come from these commands.

use clap::{Args, Subcommand};

use super::{
    bench_guests::BenchGuests, bench_journals::BenchJournals, bench_limits::BenchLimits,
    bench_runtime::BenchRuntime, bench_sequencer::BenchSequencer, bench_store::BenchStore,
    bench_summer::BenchSummer, bench_swap::BenchSwap,
};

/// Measure the host's hot paths.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  weir bench journals\n  weir bench sequencer\n  weir bench store\n  weir bench summer\n  weir bench runtime\n  weir bench swap\n  weir bench limits\n  weir bench guests --guest python=target/guests/python-summer.wasm"
)]
pub struct BenchCommand {
    #[command(subcommand)]
    which: Which,
}

#[derive(Debug, Subcommand)]
enum Which {
    /// Journal appends (small and large, fsync on) and reads.
    Journals(BenchJournals),
    /// Sequencer and framing throughput.
    Sequencer(BenchSequencer),
    /// Store commits, cold log replay and standby takeover.
    Store(BenchStore),
    /// The stream-sum summer as WASM versus native: throughput and latency.
    Summer(BenchSummer),
    /// Guest call costs (per message and batched), instantiation, loading.
    Runtime(BenchRuntime),
    /// Hot-swap pause: the gap in committed transactions around a swap.
    Swap(BenchSwap),
    /// Guest limits: interrupt latency of a runaway guest, fuel, throughput with limits on vs off.
    Limits(BenchLimits),
    /// The summer in every language: size, compile, instantiate, throughput.
    Guests(BenchGuests),
}

impl BenchCommand {
    /// Runs the chosen benchmark.
    pub async fn execute(self) -> anyhow::Result<()> {
        match self.which {
            Which::Journals(cmd) => cmd.execute().await,
            Which::Sequencer(cmd) => cmd.execute().await,
            Which::Store(cmd) => cmd.execute().await,
            Which::Summer(cmd) => cmd.execute().await,
            Which::Runtime(cmd) => cmd.execute().await,
            Which::Swap(cmd) => cmd.execute().await,
            Which::Limits(cmd) => cmd.execute().await,
            Which::Guests(cmd) => cmd.execute().await,
        }
    }
}
