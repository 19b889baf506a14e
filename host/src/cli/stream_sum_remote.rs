//! `weir stream-sum --broker ADDR`: stream-sum against a running `weir
//! serve`. Creates the journals, pushes the summer module and applies the
//! summer shards on the server if missing (an existing shard is updated to
//! the pushed module), then runs the chunker against it.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::chunker::{self, read_component};
use super::stream_sum::{StreamSumCommand, setup_journals};
use crate::broker::JournalClient;
use crate::protocol::consumer as wire;
use crate::protocol::weir::PushModuleRequest;
use crate::protocol::weir::modules_client::ModulesClient;
use crate::runtime::{JobLimits, Runtime, RuntimeConfig, guests};
use crate::service::endpoint::endpoint_url;
use crate::service::journal_client::{GrpcJournalClient, RetryPolicy};
use crate::service::shard_convert::spec_to_wire;
use crate::service::shards::MODULE_LABEL;

/// Runs stream-sum against the server at `broker`.
pub async fn run(command: StreamSumCommand, broker: &str) -> Result<()> {
    let broker = broker.to_string();
    let broker = broker.as_str();
    let consumer = command.consumer.as_deref().unwrap_or(broker);
    let url = endpoint_url(consumer).with_context(|| format!("the address {consumer:?}"))?;
    let journals = GrpcJournalClient::connect(broker, RetryPolicy::default())
        .await
        .with_context(|| format!("connecting to {broker}"))?;
    let mut specs = setup_journals(&journals, command.partitions).await?;

    let summer = read_component(command.summer.as_ref(), guests::SUMMER_WASM)?;
    let mut modules = ModulesClient::connect(url.clone())
        .await
        .with_context(|| format!("connecting to {consumer}"))?
        .max_encoding_message_size(summer.len() + 1024);
    let pushed = modules
        .push(PushModuleRequest { component: summer })
        .await
        .context("pushing the summer module")?
        .into_inner();

    let mut shards = wire::shard_client::ShardClient::connect(url)
        .await
        .with_context(|| format!("connecting to {consumer}"))?;
    let mut changes = Vec::new();
    for spec in &mut specs {
        spec.labels.insert(MODULE_LABEL, &pushed.digest);
        changes.push(wire::apply_request::Change {
            expect_mod_revision: -1,
            upsert: Some(spec_to_wire(spec)),
            delete: String::new(),
        });
    }
    let applied = shards
        .apply(wire::ApplyRequest {
            changes,
            extension: Vec::new(),
        })
        .await
        .context("applying the summer shards")?
        .into_inner();
    if applied.status != wire::Status::Ok as i32 {
        bail!(
            "applying the summer shards: status {:?}",
            wire::Status::try_from(applied.status)
        );
    }

    let runtime = Runtime::new(RuntimeConfig::default()).context("starting the runtime")?;
    let module = command.job.load(&runtime)?;
    println!(
        "stream-sum: {} partitions on {broker}, {}; summer {}",
        command.partitions,
        command.job.shape(),
        &pushed.digest[..12.min(pushed.digest.len())],
    );
    let client: Arc<dyn JournalClient> = Arc::new(journals);
    let started = Instant::now();
    let job = module.spawn(
        client,
        tokio::runtime::Handle::current(),
        command.job.config(),
        JobLimits::default(),
    )?;
    let end = chunker::drive(job, |elapsed| {
        println!("  {:>6.1} s  running", elapsed.as_secs_f64());
        None
    })
    .await;
    chunker::finish(end, started.elapsed())
}
