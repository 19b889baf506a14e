//! `weir stream-sum --broker ADDR`: stream-sum against a running `weir
//! serve`. Creates the journals, pushes the summer module and applies the
//! summer shards on the server if missing (an existing shard is updated to
//! the pushed module), then runs the chunker against it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tonic::transport::Channel;

use super::chunker::{self, read_component};
use super::stream_sum::{StreamSumCommand, setup_journals};
use crate::broker::JournalClient;
use crate::limits;
use crate::protocol::consumer as wire;
use crate::protocol::weir::PushModuleRequest;
use crate::protocol::weir::modules_client::ModulesClient;
use crate::runtime::{JobLimits, Runtime, RuntimeConfig, guests};
use crate::service::convert::error_of_status;
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
    // Lazy channels reconnect on the next call, so a server restarted
    // during set-up is retried rather than fatal.
    let channel = Channel::from_shared(url)
        .with_context(|| format!("the address {consumer:?}"))?
        .connect_lazy();
    let modules =
        ModulesClient::new(channel.clone()).max_encoding_message_size(summer.len() + 1024);
    let pushed = retry_setup("pushing the summer module", || {
        let mut modules = modules.clone();
        let component = summer.clone();
        async move { modules.push(PushModuleRequest { component }).await }
    })
    .await?;

    let shards = wire::shard_client::ShardClient::new(channel);
    let mut changes = Vec::new();
    for spec in &mut specs {
        spec.labels.insert(MODULE_LABEL, &pushed.digest);
        changes.push(wire::apply_request::Change {
            expect_mod_revision: -1,
            upsert: Some(spec_to_wire(spec)),
            delete: String::new(),
        });
    }
    let applied = retry_setup("applying the summer shards", || {
        let mut shards = shards.clone();
        let changes = changes.clone();
        async move {
            shards
                .apply(wire::ApplyRequest {
                    changes,
                    extension: Vec::new(),
                })
                .await
        }
    })
    .await?;
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

/// Runs a set-up call, retrying transport failures and unavailability with
/// the journal client's back-off for up to
/// [`limits::DEFAULT_SETUP_RETRY_SECS`]; other errors end it at once.
async fn retry_setup<T, F, Fut>(what: &str, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let policy = RetryPolicy::default();
    let give_up = Instant::now() + Duration::from_secs(limits::DEFAULT_SETUP_RETRY_SECS);
    let mut attempt = 0;
    loop {
        match call().await {
            Ok(response) => return Ok(response.into_inner()),
            Err(status) if error_of_status(&status).is_transient() && Instant::now() < give_up => {
                tracing::warn!(%status, "{what}: retrying");
                tokio::time::sleep(policy.backoff(attempt)).await;
                attempt += 1;
            }
            Err(status) => return Err(anyhow::Error::new(status).context(what.to_string())),
        }
    }
}
