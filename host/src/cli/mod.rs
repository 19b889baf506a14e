//! The `weir` command line: one file per subcommand, each a clap struct with
//! an `execute` method; this module only parses and dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod audit;
pub mod bench;
pub mod bench_guests;
pub mod bench_journals;
pub mod bench_limits;
pub mod bench_runtime;
pub mod bench_sequencer;
pub mod bench_store;
pub mod bench_summer;
pub mod bench_swap;
pub mod chaos;
pub mod chunker;
pub mod journals;
pub mod modules;
pub mod new;
pub mod serve;
pub mod shards;
pub mod specs_yaml;
pub mod stream_sum;
pub mod stream_sum_remote;
pub mod target;
pub mod test;

/// weir: a stream-processing host with consumer logic in WebAssembly.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, append to and read journals.
    Journals(journals::JournalsCommand),
    /// Run Gazette's stream-sum (chunker + summers) on an embedded host or a server.
    StreamSum(stream_sum::StreamSumCommand),
    /// Run the broker and/or the consumer host as a gRPC server.
    Serve(serve::ServeCommand),
    /// Apply, list and stat shards on a server.
    Shards(shards::ShardsCommand),
    /// Push and list consumer modules on a server.
    Modules(modules::ModulesCommand),
    /// Run the stream-sum chunker against a server.
    Chunker(chunker::ChunkerCommand),
    /// Measure the host's hot paths.
    Bench(bench::BenchCommand),
    /// Run a consumer guest on input messages in a throwaway host and show what it commits.
    Test(test::TestCommand),
    /// Run stream-sum under seeded process faults and audit the result.
    Chaos(chaos::ChaosCommand),
    /// Audit a stream-sum run: every sum committed once and correct.
    Audit(audit::AuditCommand),
    /// Start a new consumer project from a template (Rust, Python, JavaScript or C).
    New(new::NewCommand),
}

impl Cli {
    /// Runs the parsed command; errors are printed with their causes.
    pub fn run(self) -> ExitCode {
        init_tracing();
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                eprintln!("error: cannot start the async runtime: {err}");
                return ExitCode::FAILURE;
            }
        };
        let result = runtime.block_on(async move {
            match self.command {
                Command::Journals(cmd) => cmd.execute().await,
                Command::StreamSum(cmd) => cmd.execute().await,
                Command::Serve(cmd) => cmd.execute().await,
                Command::Shards(cmd) => cmd.execute().await,
                Command::Modules(cmd) => cmd.execute().await,
                Command::Chunker(cmd) => cmd.execute().await,
                Command::Bench(cmd) => cmd.execute().await,
                Command::Test(cmd) => cmd.execute().await,
                Command::Chaos(cmd) => cmd.execute().await,
                Command::Audit(cmd) => cmd.execute().await,
                Command::New(cmd) => cmd.execute().await,
            }
        });
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        }
    }
}

/// A command's data directory: `given`, or a new temporary directory named
/// with `prefix` that lives as long as the returned guard (and is removed
/// with it).
pub(crate) fn data_dir_or_temp(
    given: Option<&std::path::Path>,
    prefix: &str,
) -> anyhow::Result<(std::path::PathBuf, Option<tempfile::TempDir>)> {
    match given {
        Some(dir) => Ok((dir.to_path_buf(), None)),
        None => {
            let temp = tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .map_err(|err| anyhow::anyhow!("creating a temporary data directory: {err}"))?;
            Ok((temp.path().to_path_buf(), Some(temp)))
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    // A second initialization (tests calling run twice) is harmless.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
