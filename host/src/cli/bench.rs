//! `weir bench`: measurements of the host's hot paths, printed as tables.
//! Numbers quoted in the README come from these commands.

use clap::{Args, Subcommand};

use super::{bench_journals::BenchJournals, bench_sequencer::BenchSequencer, bench_store::BenchStore};

/// Measure the host's hot paths.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  weir bench journals\n  weir bench sequencer\n  weir bench store")]
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
}

impl BenchCommand {
    /// Runs the chosen benchmark.
    pub async fn execute(self) -> anyhow::Result<()> {
        match self.which {
            Which::Journals(cmd) => cmd.execute().await,
            Which::Sequencer(cmd) => cmd.execute().await,
            Which::Store(cmd) => cmd.execute().await,
        }
    }
}
