//! `weir bench runtime`: the wasm runtime's hot paths, measured with the
//! summer component against in-memory stores (no broker, no RocksDB):
//! compiling and loading the component, creating an instance, and the cost
//! per message of one `consume-message` call per message versus one
//! `consume-messages` call per batch.
//!
//! See [`crate::runtime::bench`] for what each figure includes.

use anyhow::Context;
use clap::Args;

use crate::runtime::bench::{self, BenchConfig};

/// Guest call costs, instantiation and component loading.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  weir bench runtime
  weir bench runtime --messages 1000000 --batch 256")]
pub struct BenchRuntime {
    /// Messages per measured run.
    #[arg(long, default_value_t = BenchConfig::default().messages)]
    messages: usize,
    /// Messages per `consume-messages` call (and per transaction).
    #[arg(long, default_value_t = BenchConfig::default().batch,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    batch: usize,
    /// Instances created for the instantiation figure.
    #[arg(long, default_value_t = BenchConfig::default().instances)]
    instances: usize,
}

impl BenchRuntime {
    /// Runs the measurements on a blocking thread and prints the report.
    pub async fn execute(self) -> anyhow::Result<()> {
        let config = BenchConfig {
            messages: self.messages,
            batch: self.batch,
            instances: self.instances,
        };
        println!(
            "runtime: summer component, {} messages, batches of {}, {} instances",
            config.messages, config.batch, config.instances
        );
        // Guest calls block their thread, never a tokio worker.
        let report = tokio::task::spawn_blocking(move || bench::measure(&config))
            .await
            .context("the benchmark thread died")?
            .context("measuring the runtime")?;
        print!("{report}");
        Ok(())
    }
}
