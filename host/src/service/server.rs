//! [`Server`]: one `weir serve` process — the journal broker, the consumer
//! host, or both — behind one gRPC endpoint, with server reflection and
//! Prometheus `/metrics` on the same port (HTTP/1.1 for `/metrics`).
//!
//! Roles:
//! - [`Role::All`] (the default): the embedded broker and the consumer host
//!   in one process; shards reach the broker in process.
//! - [`Role::Broker`]: journals only (`protocol.Journal`).
//! - [`Role::Consumer`]: shards and modules (`consumer.Shard`,
//!   `weir.Modules`), reaching a broker over gRPC with retries.
//!
//! Guarantees: [`Server::shutdown`] stops accepting calls, stops every shard
//! gracefully (its current transaction commits and is acknowledged), and
//! shuts the broker down (every acknowledged append is durable). A process
//! killed instead loses nothing acknowledged: a restart on the same data
//! directory recovers every journal and shard.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;

use super::journal::JournalService;
use super::journal_client::{GrpcJournalClient, RetryPolicy};
use super::metrics::{JournalMetrics, Metrics};
use super::modules::{ModuleStore, ModulesService};
use super::process::ProcessIdentity;
use super::shard_service::ShardService;
use super::shards::ShardRegistry;
use crate::broker::{Broker, BrokerConfig, BrokerError, JournalClient};
use crate::limits;
use crate::protocol;
use crate::runtime::{Runtime, RuntimeConfig};

/// What a server process runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Broker and consumer host together.
    All,
    /// The journal broker only.
    Broker,
    /// The consumer host only, using the broker at this address.
    Consumer {
        /// The broker's address (`host:port` or `http://host:port`).
        broker: String,
    },
}

/// How to start a [`Server`].
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Data directory: `broker/` holds journals, `consumer/` shards and
    /// modules.
    pub data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// What this process runs.
    pub role: Role,
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The broker could not be opened or reached.
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
    /// The consumer host could not start.
    #[error("consumer host: {0}")]
    Consumer(String),
}

/// A running server. See the module docs.
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    broker: Option<Broker>,
    shards: Option<ShardRegistry>,
}

impl Server {
    /// Opens the data directory, starts the role's components and serves.
    pub async fn start(config: ServeConfig) -> Result<Server, ServeError> {
        let mut routes = Routes::builder();
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServeError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
        let identity = ProcessIdentity::for_listen(addr);
        let journal_metrics = JournalMetrics::default();
        let (broker, client): (Option<Broker>, Arc<dyn JournalClient>) = match &config.role {
            Role::All | Role::Broker => {
                let broker =
                    Broker::open(config.data_dir.join("broker"), BrokerConfig::default()).await?;
                let service = JournalService::new(broker.clone())
                    .with_identity(identity.clone())
                    .with_metrics(journal_metrics.clone());
                routes.add_service(service.into_server());
                (Some(broker.clone()), Arc::new(broker))
            }
            Role::Consumer { broker } => {
                let client = GrpcJournalClient::connect(broker, RetryPolicy::default()).await?;
                (None, Arc::new(client))
            }
        };
        let (shards, runtime_metrics) = match &config.role {
            Role::Broker => (None, None),
            Role::All | Role::Consumer { .. } => {
                let (registry, modules, runtime) =
                    open_consumer(&config.data_dir.join("consumer"), client).await?;
                let service = ShardService::new(registry.clone()).with_identity(identity.clone());
                routes.add_service(service.into_server());
                routes.add_service(ModulesService::new(modules).into_server());
                (Some(registry), Some(runtime.metrics().clone()))
            }
        };
        let metrics = Arc::new(Metrics::new(
            journal_metrics,
            runtime_metrics.as_ref(),
            shards.as_ref().map(ShardRegistry::txn_metrics),
        ));
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(protocol::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|err| ServeError::Consumer(format!("server reflection: {err}")))?;
        routes.add_service(reflection);

        let mut routes = routes.routes();
        metrics.attach(broker.clone(), shards.clone());
        let scrape = metrics.clone();
        let router = std::mem::take(routes.axum_router_mut()).route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = scrape.clone();
                async move { metrics.render().await }
            }),
        );
        *routes.axum_router_mut() = router;

        let (stop, stopped) = oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .accept_http1(true)
            .concurrency_limit_per_connection(limits::DEFAULT_GRPC_CONCURRENCY_PER_CONNECTION)
            .max_concurrent_streams(limits::DEFAULT_GRPC_MAX_CONCURRENT_STREAMS)
            .add_routes(routes);
        // Accepted sockets need TCP_NODELAY themselves (the builder's
        // setting applies only to listeners it binds): without it a small
        // streamed read response can wait ~40 ms on Nagle and delayed ACKs.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let task = tokio::spawn(server.serve_with_incoming_shutdown(incoming, async move {
            let _ = stopped.await;
        }));
        tracing::info!(%addr, role = ?config.role, data_dir = %config.data_dir.display(), "weir serving");
        Ok(Server {
            addr,
            stop: Some(stop),
            task: Some(task),
            broker,
            shards,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops gracefully: no new calls, shards finish their transactions,
    /// the broker shuts down.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(shards) = self.shards.take() {
            shards.shutdown().await;
        }
        // The broker stops before the gRPC server is awaited: that ends the
        // streams that would otherwise never end (blocking reads at the
        // write head, List watches) with UNAVAILABLE, which clients retry
        // against the restarted server. Queued appends finish first.
        if let Some(broker) = self.broker.take() {
            broker.shutdown().await;
        }
        if let Some(task) = self.task.take() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::warn!(error = %err, "the gRPC server ended with an error"),
                Err(err) => tracing::warn!(error = %err, "the gRPC server task failed"),
            }
        }
    }
}

/// The shard registry, module store and wasm runtime under `dir`.
async fn open_consumer(
    dir: &Path,
    client: Arc<dyn JournalClient>,
) -> Result<(ShardRegistry, ModuleStore, Runtime), ServeError> {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.join("module-cache")),
        ..RuntimeConfig::default()
    })
    .map_err(|err| ServeError::Consumer(format!("starting the wasm runtime: {err}")))?;
    let modules = ModuleStore::open(&dir.join("modules"), runtime.clone())
        .map_err(|err| ServeError::Consumer(format!("opening the module store: {err}")))?;
    let registry = ShardRegistry::open(&dir.join("shards"), client, modules.clone())
        .await
        .map_err(|err| ServeError::Consumer(format!("opening the shard registry: {err}")))?;
    Ok((registry, modules, runtime))
}

#[cfg(test)]
mod test {
    use std::time::Duration;

    use super::*;
    use crate::broker::JournalSpec;
    use crate::protocol::gazette::ReadRequest;
    use crate::protocol::gazette::journal_client::JournalClient as WireClient;

    /// Found by `weir chaos`: a SIGTERM'd server waited forever for a
    /// chunker's blocking read of the sums journal.
    #[tokio::test]
    async fn shutdown_ends_blocking_reads_instead_of_waiting_for_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start(ServeConfig {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            role: Role::Broker,
        })
        .await
        .expect("starts");
        let broker = server.broker.clone().expect("a broker role");
        broker
            .apply(vec![crate::broker::JournalChange::Upsert(
                JournalSpec::new("test/blocking"),
            )])
            .await
            .expect("created");
        let mut client = WireClient::connect(format!("http://{}", server.local_addr()))
            .await
            .expect("connects");
        let mut reads = client
            .read(ReadRequest {
                journal: "test/blocking".into(),
                block: true,
                ..Default::default()
            })
            .await
            .expect("read opens")
            .into_inner();
        let metadata = reads.message().await.expect("metadata").expect("first");
        assert_eq!(metadata.write_head, 0);

        tokio::time::timeout(Duration::from_secs(10), server.shutdown())
            .await
            .expect("shutdown does not wait for the blocking read");
        let ended = tokio::time::timeout(Duration::from_secs(5), reads.message())
            .await
            .expect("the read ends");
        assert!(
            !matches!(ended, Ok(Some(ref response)) if !response.content.is_empty()),
            "{ended:?}"
        );
    }
}
