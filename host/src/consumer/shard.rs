//! A shard: the supervisor that keeps one primary term of the transaction
//! loop running, and reports its status (Gazette's `ReplicaStatus`).
//!
//! A term that fails (an application error, an undecodable message, a lost
//! fence, an I/O error) rolled back everything uncommitted; the supervisor
//! waits with exponential back-off and starts a new term, which recovers from
//! the last commit with a fresh producer id and a fresh application instance.
//! After [`ShardConfig::max_failures`] consecutive failures without a commit
//! in between, the shard is [`ShardStatus::Failed`] with the error, and stays
//! so until it is restarted; other shards are unaffected.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::broker::protocol::{BrokerError, JournalClient};
use crate::limits;
use crate::message::{AtomicClock, ReadError};
use crate::store::{ShardStore, Standby, StoreConfig, StoreError};

use super::application::{AppError, Application};
use super::fault::{FaultHook, FaultPoint};
use super::spec::ShardSpec;
use super::transaction::{TermEnd, run_primary};
use super::txn_metrics::TxnMetrics;

/// Creates a fresh application instance for each primary term.
pub type AppFactory = Arc<dyn Fn() -> Result<Box<dyn Application>, AppError> + Send + Sync>;

/// How a shard runs; defaults come from [`crate::limits`].
#[derive(Clone)]
pub struct ShardConfig {
    /// Directory under which each shard keeps its local store (`{dir}/{id}`).
    pub data_dir: PathBuf,
    /// Store settings.
    pub store: StoreConfig,
    /// Most envelopes handed to the application in one call.
    pub consume_batch: usize,
    /// Cap on messages published by one transaction.
    pub max_txn_messages: usize,
    /// Cap on document bytes published by one transaction.
    pub max_txn_bytes: usize,
    /// Producers idle for longer are pruned from checkpoints.
    pub prune_horizon: Duration,
    /// First retry back-off; doubles per consecutive failure.
    pub backoff: Duration,
    /// Retry back-off cap.
    pub backoff_max: Duration,
    /// Consecutive failures before the shard is marked FAILED.
    pub max_failures: u32,
    /// Digest of the application module, recorded in checkpoints.
    pub module_digest: String,
    /// Crash injection for tests; `None` in production.
    pub faults: Option<FaultHook>,
    /// Where transaction-phase durations are recorded, if anywhere.
    pub txn_metrics: Option<TxnMetrics>,
}

impl ShardConfig {
    /// The local store directory of `spec`'s primary.
    pub fn store_dir(&self, spec: &ShardSpec) -> PathBuf {
        self.data_dir.join(&spec.id)
    }

    /// Defaults for shards storing under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ShardConfig {
            data_dir: data_dir.into(),
            store: StoreConfig::default(),
            consume_batch: limits::DEFAULT_CONSUME_BATCH,
            max_txn_messages: limits::DEFAULT_MAX_TXN_MESSAGES,
            max_txn_bytes: limits::DEFAULT_MAX_TXN_BYTES,
            prune_horizon: Duration::from_secs(limits::DEFAULT_PRODUCER_PRUNE_HORIZON_SECS),
            backoff: Duration::from_millis(limits::DEFAULT_SHARD_RETRY_BACKOFF_MS),
            backoff_max: Duration::from_millis(limits::DEFAULT_SHARD_RETRY_BACKOFF_MAX_MS),
            max_failures: limits::DEFAULT_SHARD_MAX_FAILURES,
            module_digest: String::new(),
            faults: None,
            txn_metrics: None,
        }
    }
}

/// Why a primary term failed. Nothing of the transaction in flight committed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// The application failed on a message.
    #[error("{source} (message at {journal}:{offset})")]
    Message {
        /// Journal of the message.
        journal: String,
        /// Offset of the message.
        offset: i64,
        /// The application's error.
        #[source]
        source: AppError,
    },
    /// The application failed outside a message (finalize, instantiate).
    #[error(transparent)]
    App(AppError),
    /// Reading the sources failed (including an undecodable message).
    #[error("reading sources: {0}")]
    Read(#[source] ReadError),
    /// Published messages could not be appended.
    #[error("publishing: {0}")]
    Publish(#[source] BrokerError),
    /// ACK intents could not be appended.
    #[error("appending acknowledgements: {0}")]
    Ack(#[source] BrokerError),
    /// The store failed, or another primary fenced this one.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An injected crash (tests only).
    #[error("injected crash at {0}")]
    InjectedCrash(FaultPoint),
    /// A task of the shard died unexpectedly.
    #[error("shard task crashed: {0}")]
    Crashed(String),
}

/// A shard's status (Gazette's `ReplicaStatus` codes in the comments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardStatus {
    /// Recovering the store (BACKFILL, 100).
    Recovering,
    /// Running transactions (PRIMARY, 300).
    Primary,
    /// The last term failed; retrying after a back-off (PRIMARY, 300, with errors).
    Retrying {
        /// Consecutive failures so far.
        failures: u32,
        /// The last error.
        error: String,
    },
    /// Gave up after repeated failures (FAILED, 400).
    Failed {
        /// The last error.
        error: String,
    },
    /// Another primary took over the recovery log and fenced this one; it
    /// stepped down without retrying, since retrying would fence the new
    /// primary in turn (the assignment has moved; FAILED, 400, with the reason).
    Fenced {
        /// The store's report.
        error: String,
    },
    /// Stopped on request (IDLE, 0).
    Stopped,
}

/// Progress of a shard, for `Stat`-style waits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardProgress {
    /// Transactions committed by the current term.
    pub committed_txns: u64,
    /// Offsets read through by the last committed transaction, per source.
    pub read_through: BTreeMap<String, i64>,
}

/// A running shard.
pub struct ShardHandle {
    /// The shard's spec.
    pub spec: ShardSpec,
    status: watch::Receiver<ShardStatus>,
    progress: watch::Receiver<ShardProgress>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ShardHandle {
    /// The current status.
    pub fn status(&self) -> ShardStatus {
        self.status.borrow().clone()
    }

    /// A receiver of status changes.
    pub fn watch_status(&self) -> watch::Receiver<ShardStatus> {
        self.status.clone()
    }

    /// A receiver of progress changes.
    pub fn watch_progress(&self) -> watch::Receiver<ShardProgress> {
        self.progress.clone()
    }

    /// Waits until the last committed transaction read through at least
    /// `offset` of `journal` (Gazette's `Stat` with `read_through`), or the
    /// shard failed/stopped.
    pub async fn wait_read_through(&self, journal: &str, offset: i64) -> Result<(), ShardStatus> {
        let mut progress = self.progress.clone();
        let mut status = self.status.clone();
        loop {
            if progress
                .borrow()
                .read_through
                .get(journal)
                .is_some_and(|&o| o >= offset)
            {
                return Ok(());
            }
            let current = status.borrow().clone();
            if matches!(
                current,
                ShardStatus::Failed { .. } | ShardStatus::Fenced { .. } | ShardStatus::Stopped
            ) {
                return Err(current);
            }
            tokio::select! {
                _ = progress.changed() => {}
                _ = status.changed() => {}
            }
        }
    }

    /// Asks the shard to stop after its current transaction and waits.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Kills the shard's task at once, abandoning all in-flight work (as a
    /// crashed process would).
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Starts serving `spec` as primary, recovering its store from the local
/// directory `{config.data_dir}/{id}` plus the recovery log.
pub fn spawn_shard(
    spec: ShardSpec,
    client: Arc<dyn JournalClient>,
    app: AppFactory,
    config: ShardConfig,
    clock: Arc<AtomicClock>,
) -> ShardHandle {
    spawn_shard_from(spec, client, app, config, clock, None)
}

/// Starts serving `spec` as primary by promoting `standby` (a hot standby
/// that has been tailing the recovery log): the first term starts without
/// replaying the log from its beginning. Later terms (after a failure)
/// recover from the standby's directory, which has become the shard's.
pub fn spawn_shard_from_standby(
    spec: ShardSpec,
    client: Arc<dyn JournalClient>,
    app: AppFactory,
    config: ShardConfig,
    clock: Arc<AtomicClock>,
    standby: Standby,
) -> ShardHandle {
    spawn_shard_from(spec, client, app, config, clock, Some(standby))
}

fn spawn_shard_from(
    spec: ShardSpec,
    client: Arc<dyn JournalClient>,
    app: AppFactory,
    config: ShardConfig,
    clock: Arc<AtomicClock>,
    standby: Option<Standby>,
) -> ShardHandle {
    let (status_tx, status) = watch::channel(ShardStatus::Recovering);
    let (progress_tx, progress) = watch::channel(ShardProgress::default());
    let (stop, stop_rx) = watch::channel(false);
    let task_spec = spec.clone();
    let task = tokio::spawn(async move {
        supervise(
            task_spec,
            client,
            app,
            config,
            clock,
            stop_rx,
            status_tx,
            progress_tx,
            standby,
        )
        .await;
    });
    ShardHandle {
        spec,
        status,
        progress,
        stop,
        task,
    }
}

#[allow(clippy::too_many_arguments)]
async fn supervise(
    spec: ShardSpec,
    client: Arc<dyn JournalClient>,
    app: AppFactory,
    config: ShardConfig,
    clock: Arc<AtomicClock>,
    mut stop: watch::Receiver<bool>,
    status: watch::Sender<ShardStatus>,
    progress: watch::Sender<ShardProgress>,
    mut standby: Option<Standby>,
) {
    let mut failures = 0u32;
    let mut backoff = config.backoff;
    loop {
        let _ = status.send(ShardStatus::Recovering);
        progress.send_modify(|p| p.committed_txns = 0);
        let result = async {
            let instance = app().map_err(ShardError::App)?;
            let recovered = match standby.take() {
                Some(standby) => standby.promote().await?,
                None => {
                    let dir = config.store_dir(&spec);
                    ShardStore::open_primary(
                        client.clone(),
                        &spec.recovery_log(),
                        &dir,
                        config.store.clone(),
                    )
                    .await?
                }
            };
            let _ = status.send(ShardStatus::Primary);
            run_primary(
                &spec,
                client.clone(),
                instance,
                &config,
                clock.clone(),
                stop.clone(),
                &progress,
                recovered,
            )
            .await
        }
        .await;
        match result {
            Ok(TermEnd::Stopped) => {
                let _ = status.send(ShardStatus::Stopped);
                return;
            }
            Err(ShardError::Store(err @ StoreError::Fenced { .. })) => {
                tracing::warn!(shard = %spec.id, error = %err, "shard fenced; stepping down");
                let _ = status.send(ShardStatus::Fenced {
                    error: err.to_string(),
                });
                return;
            }
            Err(err) => {
                if progress.borrow().committed_txns > 0 {
                    // The term made progress: the failure is not a streak.
                    failures = 0;
                    backoff = config.backoff;
                }
                failures += 1;
                let error = err.to_string();
                if matches!(
                    err,
                    ShardError::InjectedCrash(_) | ShardError::Store(StoreError::InjectedCrash(_))
                ) {
                    // Planned by a test or `weir test --crash-every`: no alarm.
                    tracing::info!(shard = %spec.id, failures, %error, "shard term crashed as planned");
                } else {
                    tracing::warn!(shard = %spec.id, failures, %error, "shard term failed");
                }
                if failures >= config.max_failures {
                    let _ = status.send(ShardStatus::Failed { error });
                    return;
                }
                let _ = status.send(ShardStatus::Retrying { failures, error });
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                if *stop.borrow() {
                    let _ = status.send(ShardStatus::Stopped);
                    return;
                }
                backoff = (backoff * 2).min(config.backoff_max);
            }
        }
    }
}
