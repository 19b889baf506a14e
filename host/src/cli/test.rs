//! `weir test`: run a consumer guest on a file of input messages in a
//! throwaway embedded host and print what it committed (see
//! [`crate::sandbox`]).
//!
//! Exit status: 0 when the run succeeded (and matched `--expect`, and the
//! crashed run matched the crash-free one); 1 on an error, including a guest
//! failure, which names the message that caused it; 2 when the output
//! differs from `--expect` or between the crash-free and the crashed run.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::limits;
use crate::runtime::{GuestLimits, Runtime, RuntimeConfig};
use crate::sandbox::{self, AppUnderTest, CrashCheck, Difference, Input, Report, RunConfig};

/// The exit status of a run whose output differs from what was expected.
pub const EXIT_DIFFERENT: i32 = 2;

/// Run a consumer guest on input messages in a throwaway host.
#[derive(Debug, Args)]
#[command(
    after_help = "Output: JSON lines, first every committed message the guest \
    published ({\"journal\":…,\"doc\":…}, UUIDs removed), then the final store \
    ({\"key\":…,\"value\":…}; binary as key_hex/value_hex). The same input gives the \
    same bytes.\n\n\
    Exit status: 0 ok; 1 error (a guest failure names its message); 2 the output \
    differs from --expect, or the crashed run's from the crash-free run's.\n\n\
    Examples:\n  \
    weir test summer.wasm --input chunks.jsonl\n  \
    weir test summer.wasm --input chunks.jsonl --output expected.jsonl\n  \
    weir test summer.wasm --input chunks.jsonl --expect expected.jsonl\n  \
    weir test summer.wasm --input chunks.jsonl --crash-every 3"
)]
pub struct TestCommand {
    /// The consumer component (`.wasm`).
    pub guest: PathBuf,
    /// Input messages: one JSON object per line (a `UUID` field is
    /// optional; one is assigned deterministically if missing).
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// The input journal, which the guest reads.
    #[arg(long, value_name = "NAME", default_value = limits::SANDBOX_DEFAULT_INPUT_JOURNAL)]
    pub journal: String,
    /// Also run with a crash (and recovery from the recovery log) every N
    /// input messages, and check that it commits what the crash-free run did.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub crash_every: Option<u32>,
    /// Compare the output with this file; exit 2 on a difference.
    #[arg(long, value_name = "FILE")]
    pub expect: Option<PathBuf>,
    /// Write the output here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Where compiled components are kept between runs, by SHA-256 of the
    /// component (compiling a large guest, e.g. Python's, takes seconds).
    /// Default: `$XDG_CACHE_HOME/weir/components` or
    /// `~/.cache/weir/components`.
    #[arg(long, value_name = "DIR", env = "WEIR_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile the component afresh and keep nothing on disk.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
    /// Longest each run may take, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = limits::SANDBOX_RUN_TIMEOUT_SECS)]
    pub timeout: u64,
}

impl TestCommand {
    /// Runs the test, prints the output, and exits 2 on a difference.
    pub async fn execute(self) -> Result<()> {
        let different = self.run().await?;
        if different {
            // Everything is cleaned up by now; only the status is left.
            std::io::stdout().flush().ok();
            std::process::exit(EXIT_DIFFERENT);
        }
        Ok(())
    }

    /// Runs the test and prints the output; `Ok(true)` if it differs from
    /// what was expected.
    async fn run(&self) -> Result<bool> {
        let wasm = std::fs::read(&self.guest)
            .with_context(|| format!("reading the guest {}", self.guest.display()))?;
        let cache_dir = match (&self.cache_dir, self.no_cache) {
            (_, true) => None,
            (Some(dir), false) => Some(dir.clone()),
            (None, false) => default_cache_dir(),
        };
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir,
            ..RuntimeConfig::default()
        })
        .context("starting the wasm runtime")?;
        // Compiling takes a while: off the async workers.
        let module = tokio::task::spawn_blocking(move || runtime.consumer_module(&wasm))
            .await
            .context("the compile task failed")?
            .with_context(|| {
                format!(
                    "{} is not a usable consumer component",
                    self.guest.display()
                )
            })?;
        let text = std::fs::read(&self.input)
            .with_context(|| format!("reading the input {}", self.input.display()))?;
        let input = Input::parse(&text)
            .with_context(|| format!("in the input {}", self.input.display()))?;
        let expected = match &self.expect {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the expectation {}", path.display()))?,
            ),
            None => None,
        };

        let config = RunConfig {
            journal: self.journal.clone(),
            crash_every: None,
            timeout: Duration::from_secs(self.timeout),
        };
        let guest = AppUnderTest::guest(&module, GuestLimits::default());

        let mut different = false;
        let report: Report = match self.crash_every {
            None => sandbox::run(&guest, &input, &config).await?.report,
            Some(every) => {
                let every = usize::try_from(every).unwrap_or(usize::MAX);
                let comparison = sandbox::run_with_crashes(&guest, &input, &config, every).await?;
                let crashes = comparison.crashes();
                let points: Vec<String> = crashes.iter().map(|p| p.to_string()).collect();
                eprintln!(
                    "crashes: {} (one per {every} input messages, at {})",
                    crashes.len(),
                    if points.is_empty() {
                        "no point".to_string()
                    } else {
                        points.join(", ")
                    }
                );
                match &comparison.check {
                    CrashCheck::Equal => {
                        eprintln!("the crashed run committed exactly what the crash-free run did");
                    }
                    CrashCheck::Different(difference) => {
                        different = true;
                        eprintln!(
                            "the crashed run committed something else than the crash-free run \
                             (expected: crash-free, actual: crashed)"
                        );
                        eprintln!("{difference}");
                    }
                }
                comparison.crash_free.report
            }
        };

        let rendered = report.render();
        match &self.output {
            Some(path) => std::fs::write(path, &rendered)
                .with_context(|| format!("writing the output to {}", path.display()))?,
            None => {
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(rendered.as_bytes())
                    .and_then(|()| stdout.flush())
                    .context("writing the output")?;
            }
        }

        if let (Some(expected), Some(path)) = (expected, &self.expect)
            && let Some(difference) = sandbox::first_difference(&expected, &rendered)
        {
            different = true;
            print_expect_difference(path, &difference);
        }
        Ok(different)
    }
}

fn print_expect_difference(path: &std::path::Path, difference: &Difference) {
    eprintln!(
        "the output differs from {} (expected: the file, actual: this run)",
        path.display()
    );
    eprintln!("{difference}");
}

/// The user's cache of compiled components, if a home or cache directory
/// is known (XDG's base-directory rule).
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|dir| !dir.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })?;
    Some(base.join("weir").join("components"))
}
