//! Where a `weir journals` command finds its journals: a local data
//! directory (the embedded broker, which takes the directory's lock) or a
//! running server (`--broker ADDR`, through the retrying gRPC client, which
//! gives up after [`CLI_RETRY_SECS`] so a wrong address fails promptly).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::broker::revision::{ApplyOutcome, ExpectRevision};
use crate::broker::{AppendRequest, Broker, BrokerConfig, JournalChange, JournalClient};
use crate::protocol::gazette as wire;
use crate::service::convert::change_to_wire;
use crate::service::endpoint::endpoint_url;
use crate::service::journal_client::{GrpcJournalClient, RetryPolicy};

/// How long a command retries an unreachable server, in seconds.
pub const CLI_RETRY_SECS: u64 = 10;

/// `--data-dir DIR` or `--broker ADDR`.
#[derive(Debug, Args)]
pub struct Target {
    /// The broker's data directory (created if missing).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "broker",
        conflicts_with = "broker"
    )]
    pub data_dir: Option<PathBuf>,
    /// A running server's address (`weir serve`).
    #[arg(long, value_name = "ADDR")]
    pub broker: Option<String>,
}

/// An opened target.
pub enum Journals {
    /// The embedded broker of a data directory.
    Local(Broker),
    /// A server.
    Remote {
        /// Its address.
        addr: String,
        /// The journal client.
        client: Box<GrpcJournalClient>,
    },
}

impl Target {
    /// Opens the data directory or connects to the server.
    pub async fn open(&self) -> Result<Journals> {
        match (&self.data_dir, &self.broker) {
            (_, Some(addr)) => {
                let policy = RetryPolicy {
                    max_elapsed: Some(Duration::from_secs(CLI_RETRY_SECS)),
                    ..RetryPolicy::default()
                };
                let client = GrpcJournalClient::connect(addr, policy)
                    .await
                    .with_context(|| format!("connecting to {addr}"))?;
                Ok(Journals::Remote {
                    addr: addr.clone(),
                    client: Box::new(client),
                })
            }
            (Some(dir), None) => Ok(Journals::Local(
                Broker::open(dir, BrokerConfig::default())
                    .await
                    .with_context(|| format!("opening data directory {}", dir.display()))?,
            )),
            (None, None) => anyhow::bail!("give --data-dir DIR or --broker ADDR"),
        }
    }
}

impl Journals {
    /// The journal client.
    pub fn client(&self) -> &dyn JournalClient {
        match self {
            Journals::Local(broker) => broker,
            Journals::Remote { client, .. } => client.as_ref(),
        }
    }

    /// The write head of `journal`: read locally, or learned remotely with a
    /// write barrier (a zero-byte append, which writes nothing).
    pub async fn write_head(&self, journal: &str) -> Result<i64> {
        match self {
            Journals::Local(broker) => Ok(broker.write_head(journal)?),
            Journals::Remote { client, .. } => {
                let barrier = client
                    .append(AppendRequest {
                        journal: journal.to_string(),
                        ..Default::default()
                    })
                    .await?;
                Ok(barrier.end)
            }
        }
    }

    /// Applies `changes` with their revision expectations, atomically.
    pub async fn apply_expecting(
        &self,
        changes: Vec<(JournalChange, ExpectRevision)>,
    ) -> Result<ApplyOutcome> {
        match self {
            Journals::Local(broker) => Ok(broker.apply_expecting(changes).await?),
            Journals::Remote { addr, .. } => {
                let mut client = wire::journal_client::JournalClient::connect(endpoint_url(addr)?)
                    .await
                    .with_context(|| format!("connecting to {addr}"))?;
                let request = wire::ApplyRequest {
                    changes: changes
                        .iter()
                        .map(|(change, expect)| change_to_wire(change, *expect))
                        .collect(),
                };
                let response = client
                    .apply(request)
                    .await
                    .map_err(|status| anyhow::anyhow!("{}", status.message()))?
                    .into_inner();
                match wire::Status::try_from(response.status) {
                    Ok(wire::Status::Ok) => Ok(ApplyOutcome::Applied {
                        revision: response
                            .header
                            .and_then(|header| header.etcd)
                            .map_or(0, |etcd| etcd.revision),
                    }),
                    Ok(wire::Status::EtcdTransactionFailed) => {
                        anyhow::bail!(
                            "a journal's revision is not the one expected; nothing applied"
                        )
                    }
                    other => anyhow::bail!("applying: status {other:?}"),
                }
            }
        }
    }

    /// Shuts the local broker down (a server is left running).
    pub async fn close(self) {
        if let Journals::Local(broker) = self {
            broker.shutdown().await;
        }
    }
}
