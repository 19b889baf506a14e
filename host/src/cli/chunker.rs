//! `weir chunker --broker ADDR`: the stream-sum chunker component as a job
//! against a running server, and the job-driving loop that `weir
//! stream-sum` shares.
//!
//! The chunker reaches the broker through a retrying gRPC client, so it
//! keeps going through a server that is killed and restarted within its
//! 40 s deadline: an append that may have landed before the failure is sent
//! again, and the sequencer drops the duplicate.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::broker::JournalClient;
use crate::runtime::{
    ChunkerConfig, ChunkerError, ChunkerJob, ChunkerModule, ChunkerReport, JobLimits, Runtime,
    RuntimeConfig, guests,
};
use crate::service::journal_client::{GrpcJournalClient, RetryPolicy};

/// Run the stream-sum chunker against a running server.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  weir chunker --broker 127.0.0.1:8080
  weir chunker --broker 127.0.0.1:8080 --streams -1        # until interrupted (Ctrl-C)")]
pub struct ChunkerCommand {
    /// The server (or broker) address.
    #[arg(long, value_name = "ADDR")]
    pub broker: String,
    /// The run's shape and component.
    #[command(flatten)]
    pub job: ChunkerArgs,
}

/// The chunker's options, shared by `weir chunker` and `weir stream-sum`.
#[derive(Debug, Clone, Args)]
pub struct ChunkerArgs {
    /// Streams per worker; negative runs until interrupted.
    #[arg(long, default_value_t = 100, allow_hyphen_values = true)]
    pub streams: i64,
    /// Data chunks per stream (each stream also has an empty final chunk).
    #[arg(long, default_value_t = 30)]
    pub chunks: u32,
    /// Concurrent chunker workers.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: u32,
    /// Seed of the random streams (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Chunker component (default: the built-in guest-chunker).
    #[arg(long)]
    pub chunker: Option<PathBuf>,
}

impl ChunkerArgs {
    /// The chunker component (given or built in), compiled by `runtime`.
    pub fn load(&self, runtime: &Runtime) -> Result<ChunkerModule> {
        let wasm = read_component(self.chunker.as_ref(), guests::CHUNKER_WASM)?;
        runtime.chunker_module(&wasm).context("loading the chunker")
    }

    /// The run's configuration.
    pub fn config(&self) -> ChunkerConfig {
        ChunkerConfig {
            streams: self.streams,
            chunks: self.chunks,
            workers: self.workers,
            seed: self.seed,
            timeout: None,
        }
    }

    /// "W workers × S streams × C chunks", for the banner.
    pub fn shape(&self) -> String {
        format!(
            "{} workers × {} streams × {} chunks",
            self.workers,
            streams_text(self.streams),
            self.chunks
        )
    }
}

impl ChunkerCommand {
    /// Runs the chunker; fails unless every stream verified (or interrupted).
    pub async fn execute(self) -> Result<()> {
        let client: Arc<dyn JournalClient> = Arc::new(
            GrpcJournalClient::connect(&self.broker, RetryPolicy::default())
                .await
                .with_context(|| format!("connecting to {}", self.broker))?,
        );
        let runtime = Runtime::new(RuntimeConfig::default()).context("starting the runtime")?;
        let module = self.job.load(&runtime)?;
        let started = Instant::now();
        println!("chunker: {} against {}", self.job.shape(), self.broker);
        let job = module.spawn(
            client,
            tokio::runtime::Handle::current(),
            self.job.config(),
            JobLimits::default(),
        )?;
        let end = drive(job, |elapsed| {
            println!("  {:>6.1} s  running", elapsed.as_secs_f64());
            None
        })
        .await;
        finish(end, started.elapsed())
    }
}

/// How a driven job ended.
#[derive(Debug)]
pub enum JobEnd {
    /// The chunker returned (verified every stream) or failed.
    Finished(Result<ChunkerReport, ChunkerError>),
    /// Stopped by Ctrl-C, with the counts so far if the chunker said.
    Interrupted(Option<ChunkerReport>),
    /// Stopped because `tick` reported a failure elsewhere.
    Stopped {
        /// What `tick` reported.
        reason: String,
        /// The chunker's outcome after it was cancelled.
        outcome: Result<ChunkerReport, ChunkerError>,
    },
}

/// Waits for `job`, calling `tick` every 2 s (it may return a reason to stop
/// the job), and cancelling it on Ctrl-C.
pub async fn drive(job: ChunkerJob, mut tick: impl FnMut(Duration) -> Option<String>) -> JobEnd {
    let started = Instant::now();
    let cancel = job.cancel_token();
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    ticker.tick().await;
    let mut job = std::pin::pin!(job.wait());
    let mut stop: Option<String> = None;
    let mut interrupted = false;
    let outcome = loop {
        tokio::select! {
            outcome = &mut job => break outcome,
            _ = ticker.tick() => {
                if stop.is_none()
                    && let Some(reason) = tick(started.elapsed())
                {
                    eprintln!("{reason}; stopping the chunker");
                    stop = Some(reason);
                    cancel.cancel();
                }
            }
            _ = tokio::signal::ctrl_c(), if !interrupted => {
                eprintln!("interrupted; stopping");
                interrupted = true;
                cancel.cancel();
            }
        }
    };
    match (stop, outcome) {
        (Some(reason), outcome) => JobEnd::Stopped { reason, outcome },
        (None, Err(ChunkerError::Cancelled { partial })) if interrupted => {
            JobEnd::Interrupted(partial.map(|report| *report))
        }
        (None, outcome) => JobEnd::Finished(outcome),
    }
}

/// Prints the summary of a driven job; fails unless every stream verified
/// or the run was interrupted.
pub fn finish(end: JobEnd, elapsed: Duration) -> Result<()> {
    let secs = elapsed.as_secs_f64();
    match end {
        JobEnd::Finished(Ok(report)) => {
            println!("stream-sum: every stream verified in {secs:.1} s");
            print_counts(&report, elapsed);
            Ok(())
        }
        JobEnd::Interrupted(partial) => {
            println!("stream-sum: interrupted after {secs:.1} s; every sum read so far verified");
            match partial {
                Some(report) => print_counts(&report, elapsed),
                None => println!("  (the chunker stopped without reporting its counts)"),
            }
            Ok(())
        }
        JobEnd::Finished(Err(err)) => {
            if let ChunkerError::Failed { partial, .. } = &err {
                println!("stream-sum: FAILED after {secs:.1} s");
                print_counts(partial, elapsed);
            }
            Err(err).context("the chunker failed")
        }
        JobEnd::Stopped { reason, outcome } => {
            if let Err(ChunkerError::Cancelled {
                partial: Some(report),
            }) = &outcome
            {
                println!("stream-sum: FAILED after {secs:.1} s");
                print_counts(report, elapsed);
            }
            bail!("{reason}")
        }
    }
}

/// The chunker's counts and latencies (of a whole run or up to its end).
pub fn print_counts(report: &ChunkerReport, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    println!("  streams verified   {}", report.streams_verified);
    println!(
        "  chunks published   {} ({:.0} chunks/s)",
        report.chunks_published,
        report.chunks_published as f64 / secs.max(1e-9)
    );
    println!(
        "  sums read          {} ({} of other runs)",
        report.sums_read, report.foreign_sums
    );
    println!(
        "  latency, final chunk to verified sum: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
        report.latency_p50.as_secs_f64() * 1e3,
        report.latency_p99.as_secs_f64() * 1e3,
        report.latency_max.as_secs_f64() * 1e3,
        report.latency_samples,
    );
}

/// "∞" for a negative stream count.
pub fn streams_text(streams: i64) -> String {
    if streams < 0 {
        "∞".to_string()
    } else {
        streams.to_string()
    }
}

/// The component at `path`, or the built-in one.
pub fn read_component(path: Option<&PathBuf>, builtin: &[u8]) -> Result<Vec<u8>> {
    match path {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("reading component {}", path.display()))
        }
        None => Ok(builtin.to_vec()),
    }
}
