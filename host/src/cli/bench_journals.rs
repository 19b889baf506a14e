//! `weir bench journals`: append and read throughput of the embedded broker
//! on local disk, with every append fsync'd before it is acknowledged.
//!
//! Phases, each on its own journal:
//! 1. small appends from one writer (each waits for its own fsync);
//! 2. small appends from many concurrent writers (group commit shares
//!    fsyncs among the appends queued while one is in flight);
//! 3. large appends from a few writers;
//! 4. reads of the journals written in phases 2 and 3, from offset 0 to the
//!    write head, with checksums verified.
//!
//! With `--grpc` every phase runs twice in the same process, over the same
//! broker: through the embedded client, and through the Journal gRPC
//! service on loopback with [`GrpcJournalClient`].
//!
//! The table reports appends/s, MB/s (10^6 bytes), fsyncs, appends per
//! fsync and append latency percentiles. Run it on the disk you care about:
//! on tmpfs an fsync is free and the numbers mean little.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;

use crate::broker::backend::{Backend, FsBackend};
use crate::broker::{
    AppendRequest, Broker, BrokerConfig, JournalChange, JournalClient, JournalSpec, ReadRequest,
};
use crate::service::journal::JournalService;
use crate::service::journal_client::{GrpcJournalClient, RetryPolicy};

/// Journal append and read throughput (fsync on).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  weir bench journals
  weir bench journals --writers 64 --seconds 5
  weir bench journals --data-dir /mnt/ssd/weir-bench --large-size 4194304
  weir bench journals --grpc                    # embedded and gRPC side by side")]
pub struct BenchJournals {
    /// Directory for the benchmark's data (default: a new temporary
    /// directory, removed afterwards).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Concurrent writers of small appends.
    #[arg(long, default_value_t = 64)]
    writers: usize,
    /// Bytes per small append.
    #[arg(long, default_value_t = 100)]
    small_size: usize,
    /// Concurrent writers of large appends.
    #[arg(long, default_value_t = 4)]
    large_writers: usize,
    /// Bytes per large append.
    #[arg(long, default_value_t = 1 << 20)]
    large_size: usize,
    /// Seconds each append phase runs.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Also run every phase over gRPC on loopback, for comparison.
    #[arg(long)]
    grpc: bool,
}

/// What one append phase measured.
struct Phase {
    label: String,
    appends: u64,
    bytes: u64,
    fsyncs: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

impl BenchJournals {
    /// Runs every phase and prints the table.
    pub async fn execute(self) -> anyhow::Result<()> {
        let (dir, _temp) =
            super::data_dir_or_temp(self.data_dir.as_deref(), "weir-bench-journals-")?;
        let backend = Arc::new(FsBackend::new());
        let config = BrokerConfig::with_backend(backend.clone());
        let broker = Broker::open(&dir, config)
            .await
            .context("opening the data directory")?;
        println!("data directory: {}", dir.display());

        let duration = Duration::from_secs_f64(self.seconds);
        let small = vec![b's'; self.small_size];
        let large = vec![b'L'; self.large_size];
        let mut paths: Vec<(&str, Arc<dyn JournalClient>)> =
            vec![("embedded", Arc::new(broker.clone()))];
        let server = if self.grpc {
            let (server, client) = grpc_loopback(&broker).await?;
            paths.push(("gRPC", Arc::new(client)));
            Some(server)
        } else {
            None
        };
        let mut phases = Vec::new();
        let mut reads = Vec::new();
        for (path, client) in &paths {
            for (journal, writers, content, label) in [
                (
                    "small-1",
                    1,
                    &small,
                    format!("{path}: {} B x 1 writer", self.small_size),
                ),
                (
                    "small-n",
                    self.writers,
                    &small,
                    format!("{path}: {} B x {} writers", self.small_size, self.writers),
                ),
                (
                    "large",
                    self.large_writers,
                    &large,
                    format!(
                        "{path}: {} x {} writers",
                        size(self.large_size),
                        self.large_writers
                    ),
                ),
            ] {
                let content = Bytes::from(content.clone());
                let journal = format!("bench/{}/{journal}", path.to_lowercase());
                let phase = append_phase(
                    client, &backend, &journal, writers, content, duration, label,
                );
                phases.push(phase.await?);
            }
            for (journal, label) in [("small-n", "small appends"), ("large", "large appends")] {
                let journal = format!("bench/{}/{journal}", path.to_lowercase());
                let (bytes, elapsed) = read_phase(client.as_ref(), &journal).await?;
                reads.push((format!("{path}: {label}"), bytes, elapsed));
            }
        }

        println!();
        println!(
            "{:<32} {:>11} {:>9} {:>8} {:>13} {:>8} {:>8} {:>8}",
            "appends", "appends/s", "MB/s", "fsyncs", "appends/fsync", "p50 ms", "p99 ms", "max ms"
        );
        for p in &phases {
            let secs = p.elapsed.as_secs_f64();
            let ms = |q: f64| p.latency.value_at_quantile(q) as f64 / 1000.0;
            println!(
                "{:<32} {:>11.0} {:>9.1} {:>8} {:>13.1} {:>8.2} {:>8.2} {:>8.2}",
                p.label,
                p.appends as f64 / secs,
                p.bytes as f64 / secs / 1e6,
                p.fsyncs,
                p.appends as f64 / p.fsyncs.max(1) as f64,
                ms(0.5),
                ms(0.99),
                p.latency.max() as f64 / 1000.0,
            );
        }
        println!();
        println!("{:<32} {:>11} {:>9}", "reads (from 0)", "bytes", "MB/s");
        for (label, bytes, elapsed) in reads {
            println!(
                "{:<32} {:>11} {:>9.1}",
                label,
                bytes,
                bytes as f64 / elapsed.as_secs_f64() / 1e6
            );
        }
        if let Some(server) = server {
            server.abort();
        }
        broker.shutdown().await;
        Ok(())
    }
}

fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b.is_multiple_of(1 << 20) => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b.is_multiple_of(1 << 10) => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// A Journal gRPC service over `broker` on 127.0.0.1, and a client of it.
async fn grpc_loopback(
    broker: &Broker,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, GrpcJournalClient)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let service = JournalService::new(broker.clone()).into_server();
    let server = tokio::spawn(async move {
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let served = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
        if let Err(err) = served {
            eprintln!("the benchmark's gRPC server failed: {err}");
        }
    });
    let client = GrpcJournalClient::connect(&addr.to_string(), RetryPolicy::default()).await?;
    Ok((server, client))
}

async fn append_phase(
    client: &Arc<dyn JournalClient>,
    backend: &FsBackend,
    journal: &str,
    writers: usize,
    content: Bytes,
    duration: Duration,
    label: String,
) -> anyhow::Result<Phase> {
    client
        .apply(vec![JournalChange::Upsert(JournalSpec::new(journal))])
        .await?;
    let fsyncs_before = backend.stats().data_syncs;
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..writers.max(1))
        .map(|_| {
            let (broker, content, journal) = (client.clone(), content.clone(), journal.to_string());
            tokio::spawn(async move {
                let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
                let (mut appends, mut bytes) = (0u64, 0u64);
                while Instant::now() < deadline {
                    let request = AppendRequest {
                        journal: journal.clone(),
                        content: content.clone(),
                        ..Default::default()
                    };
                    let start = Instant::now();
                    broker.append(request).await?;
                    latency.saturating_record(start.elapsed().as_micros() as u64);
                    appends += 1;
                    bytes += content.len() as u64;
                }
                anyhow::Ok((appends, bytes, latency))
            })
        })
        .collect();
    let mut phase = Phase {
        label,
        appends: 0,
        bytes: 0,
        fsyncs: 0,
        elapsed: Duration::ZERO,
        latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
    };
    for task in tasks {
        let (appends, bytes, latency) = task.await??;
        phase.appends += appends;
        phase.bytes += bytes;
        phase.latency.add(&latency)?;
    }
    phase.elapsed = started.elapsed();
    phase.fsyncs = backend.stats().data_syncs - fsyncs_before;
    Ok(phase)
}

async fn read_phase(broker: &dyn JournalClient, journal: &str) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let request = ReadRequest {
        journal: journal.into(),
        ..Default::default()
    };
    let mut stream = broker.read(request).await?;
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await? {
        bytes += chunk.content.len() as u64;
    }
    Ok((bytes, started.elapsed()))
}
