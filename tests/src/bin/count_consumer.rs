//! A child process for the SIGKILL test (`tests/all/consumer_kill.rs`): runs
//! the counting shard on an embedded broker in `DIR` until it has read
//! through `HEAD` of its input, then stops cleanly and exits 0. The test
//! kills it at random moments and starts it again.
//!
//! Usage: `count_consumer DIR INPUT OUTPUT HEAD`

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use integration_tests::{CountingApp, counting_spec, open_broker};
use weir::broker::protocol::JournalClient;
use weir::consumer::{AppFactory, ShardConfig, spawn_shard};
use weir::message::AtomicClock;

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("WEIR_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, input, output, head] = args.as_slice() else {
        bail!("usage: count_consumer DIR INPUT OUTPUT HEAD");
    };
    let dir = std::path::PathBuf::from(dir);
    let head: i64 = head.parse().context("HEAD must be an offset")?;
    let broker = open_broker(&dir.join("broker")).await?;
    let client: Arc<dyn JournalClient> = Arc::new(broker.clone());
    let output: Arc<str> = Arc::from(output.as_str());
    let app: AppFactory = Arc::new(move || {
        Ok(Box::new(CountingApp {
            output: output.clone(),
        }) as _)
    });
    let mut config = ShardConfig::new(dir.join("shards"));
    config.max_failures = 1000;
    config.backoff = Duration::from_millis(1);
    // Small transactions, so that kills land in every phase of many of them.
    config.consume_batch = 16;
    let spec = counting_spec("count-000", input, Duration::from_millis(2));
    let shard = spawn_shard(spec, client, app, config, Arc::new(AtomicClock::now()));
    if let Err(status) = shard.wait_read_through(input, head).await {
        bail!("shard ended: {status:?}");
    }
    shard.stop().await;
    broker.shutdown().await;
    Ok(())
}
