//! The transaction loop of a primary shard (Gazette's `consumer/transaction.go`).
//!
//! One primary term runs: recover the store and the last checkpoint, re-append
//! the checkpoint's ACK intents byte for byte, then run transactions until
//! stopped or until something fails. Each transaction:
//!
//! 1. **consumes**: waits for its first committed message, then keeps
//!    reading while messages are ready, for at least `min_txn_duration`
//!    (from the first message) and at most `max_txn_duration` (or until a
//!    stop is requested); while a read
//!    source has a pending (unacknowledged) span it waits for the ACK, unless
//!    `disable_wait_for_ack`. ACK envelopes advance the sequencer but are
//!    never handed to the application;
//! 2. **finalizes**: `finalize_txn`, then the sequencer checkpoint and the ACK
//!    intents of everything published;
//! 3. **commits**, in the background: waits until every message it published
//!    is durably appended, then appends one record (store writes +
//!    checkpoint) to the recovery log. That append is the commit; a fenced
//!    primary's append is rejected. Then its ACKs are appended.
//!
//! Transactions are pipelined: while one commits, the next one consumes. It
//! reads the committing transaction's writes through its store overlay, and
//! its published messages queue behind the committing transaction's ACKs,
//! which are held until the commit is durable (an ACK must reach each journal
//! before the next transaction's messages, or it would roll them back). The
//! next transaction cannot start to commit before its predecessor's commit
//! and ACKs are durable (Gazette's ordering, pitfall 8).
//!
//! A failure anywhere ends the term with an error: nothing of the current
//! transaction was committed, and the supervisor ([`super::shard`]) starts a
//! new term, which recovers from the last commit with a new producer id.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::broker::protocol::{AppendRequest, BrokerError, JournalClient};
use crate::message::{AtomicClock, Envelope, HeldAcks, Publisher, ReadCommitted};
use crate::store::{ShardStore, TxnOverlay, WriteSet};

use super::checkpoint::Checkpoint;

use super::application::{AppError, Application, PublishError, TxnContext, TxnPublisher};
use super::fault::{FaultAction, FaultHook, FaultPoint};
use super::shard::{ShardConfig, ShardError, ShardProgress};
use super::spec::ShardSpec;
use super::txn_metrics::{ShardTxnMetrics, TxnPhase};

/// Why a primary term ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermEnd {
    /// Stop was requested; the last transaction committed and was acknowledged.
    Stopped,
}

/// Everything a blocking application call needs, moved onto a blocking
/// thread and back.
struct TxnWork {
    app: Box<dyn Application>,
    store: TxnOverlay,
    publisher: ShardPublisher,
    shard: Arc<str>,
}

impl TxnWork {
    async fn run<R: Send + 'static>(
        mut self,
        f: impl FnOnce(&mut TxnWork) -> R + Send + 'static,
    ) -> Result<(TxnWork, R), ShardError> {
        tokio::task::spawn_blocking(move || {
            let out = f(&mut self);
            (self, out)
        })
        .await
        .map_err(|err| ShardError::App(AppError::Crashed(format!("application panicked: {err}"))))
    }

    fn context(&mut self) -> (TxnContext<'_>, &mut dyn Application) {
        (
            TxnContext {
                shard: &self.shard,
                store: &mut self.store,
                publisher: &mut self.publisher,
            },
            self.app.as_mut(),
        )
    }
}

/// The shard's [`TxnPublisher`]: uncommitted publishing with per-transaction caps.
struct ShardPublisher {
    publisher: Arc<Publisher>,
    messages: usize,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
}

impl TxnPublisher for ShardPublisher {
    fn publish(&mut self, journal: &str, doc: &[u8]) -> Result<(), PublishError> {
        if self.messages + 1 > self.max_messages {
            return Err(PublishError::LimitExceeded(format!(
                "more than {} messages published in one transaction",
                self.max_messages
            )));
        }
        if self.bytes + doc.len() > self.max_bytes {
            return Err(PublishError::LimitExceeded(format!(
                "more than {} bytes published in one transaction",
                self.max_bytes
            )));
        }
        self.publisher.publish_uncommitted(journal, doc)?;
        self.messages += 1;
        self.bytes += doc.len();
        Ok(())
    }
}

fn check_fault(hook: &Option<FaultHook>, point: FaultPoint) -> Result<(), ShardError> {
    match hook {
        Some(hook) if hook(point) == FaultAction::Crash => Err(ShardError::InjectedCrash(point)),
        _ => Ok(()),
    }
}

/// Runs one primary term of `spec` over a recovered store, until `stop`
/// turns true or a failure.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_primary(
    spec: &ShardSpec,
    client: Arc<dyn JournalClient>,
    app: Box<dyn Application>,
    config: &ShardConfig,
    clock: Arc<AtomicClock>,
    mut stop: watch::Receiver<bool>,
    progress: &watch::Sender<ShardProgress>,
    recovered: (ShardStore, Checkpoint),
) -> Result<TermEnd, ShardError> {
    let (store, checkpoint) = recovered;

    // Re-append the last commit's ACKs verbatim (pitfall 3): this commits its
    // outputs if they were never acknowledged, and rolls back whatever a dead
    // primary published after it.
    for (journal, bytes) in &checkpoint.ack_intents {
        append_ack(client.as_ref(), journal, bytes).await?;
    }

    let publisher = Arc::new(Publisher::new(
        client.clone(),
        clock.clone(),
        tokio::runtime::Handle::current(),
    ));
    let sources: Vec<(String, i64)> = spec
        .sources
        .iter()
        .map(|source| {
            let read_through = checkpoint
                .sources
                .get(&source.journal)
                .map_or(0, |cp| cp.read_through);
            (source.journal.clone(), read_through.max(source.min_offset))
        })
        .collect();
    // A recovered shard has read through its checkpoint already, even before
    // its first transaction commits (an idle shard never commits).
    let recovered_through: std::collections::BTreeMap<String, i64> =
        sources.iter().cloned().collect();
    progress.send_modify(|p| p.read_through = recovered_through);
    let mut reader = ReadCommitted::new(
        client.clone(),
        sources,
        &checkpoint.sources,
        spec.ring_size(),
        spec.read_channel_capacity(),
    )
    .map_err(ShardError::Read)?;

    let mut work = TxnWork {
        app,
        store: store.begin_txn(),
        publisher: ShardPublisher {
            publisher: publisher.clone(),
            messages: 0,
            bytes: 0,
            max_messages: config.max_txn_messages,
            max_bytes: config.max_txn_bytes,
        },
        shard: Arc::from(spec.id.as_str()),
    };
    let phases = config.txn_metrics.as_ref().map(|m| m.shard(&spec.id));
    // The store is `None` while a commit task owns it.
    let mut store = Some(store);
    let mut prev: Option<JoinHandle<Result<Committed, ShardError>>> = None;
    let mut committed_txns: u64 = 0;
    let mut land = |result: Result<Result<Committed, ShardError>, tokio::task::JoinError>,
                    store: &mut Option<ShardStore>|
     -> Result<(), ShardError> {
        let committed = result.map_err(|err| ShardError::Crashed(err.to_string()))??;
        *store = Some(committed.store);
        committed_txns += 1;
        progress.send_modify(|p| {
            p.committed_txns = committed_txns;
            p.read_through = committed.read_through;
        });
        Ok(())
    };

    loop {
        // --- Wait for the transaction's first message (or a stop). ---
        let first = loop {
            if *stop.borrow() {
                if let Some(handle) = prev.take() {
                    land(handle.await, &mut store)?;
                }
                return Ok(TermEnd::Stopped);
            }
            tokio::select! {
                env = reader.next() => {
                    let env = env.map_err(ShardError::Read)?;
                    if env.is_ack() { continue; }
                    break env;
                }
                result = wait_prev(&mut prev), if prev.is_some() => land(result, &mut store)?,
                _ = stop.changed() => {}
            }
        };
        let began = Instant::now();
        let min_until = began + spec.min_txn_duration;
        let max_until = began + spec.max_txn_duration;
        let mut reading = true;
        let mut batch: Vec<Envelope> = Vec::with_capacity(config.consume_batch);
        batch.push(first);

        loop {
            // Take everything that is ready now, up to a batch.
            while reading && batch.len() < config.consume_batch {
                match reader.next().now_or_never() {
                    Some(env) => {
                        let env = env.map_err(ShardError::Read)?;
                        if !env.is_ack() {
                            batch.push(env);
                        }
                    }
                    None => break,
                }
            }
            if !batch.is_empty() {
                let envelopes = std::mem::take(&mut batch);
                let (back, (envelopes, result)) = work
                    .run(move |work| {
                        let (mut txn, app) = work.context();
                        let result = app.consume_messages(&mut txn, &envelopes);
                        (envelopes, result)
                    })
                    .await?;
                work = back;
                if let Err((index, err)) = result {
                    let env = &envelopes[index];
                    return Err(ShardError::Message {
                        journal: env.journal.to_string(),
                        offset: env.begin,
                        source: err,
                    });
                }
                batch = envelopes;
                batch.clear();
                check_fault(&config.faults, FaultPoint::Consuming)?;
            }

            let now = Instant::now();
            // A stop (a swap, a spec change, shutdown) ends reading as the
            // max duration would: the transaction commits what it has, so
            // a hand-over waits for one commit, not for a busy input to
            // pause.
            if reading && (now >= max_until || *stop.borrow()) {
                reading = false;
            }
            let blocks = prev.is_some()
                || now < min_until
                || (!spec.disable_wait_for_ack && reading && reader.has_pending());
            if !blocks {
                // Poll only while reading: an envelope taken from the reader
                // has advanced the sequencer, so dropping it would lose it.
                if !reading {
                    break;
                }
                match reader.next().now_or_never() {
                    Some(env) => {
                        let env = env.map_err(ShardError::Read)?;
                        if !env.is_ack() {
                            batch.push(env);
                        }
                        continue;
                    }
                    None => break,
                }
            }
            let wake = if now < min_until {
                min_until
            } else {
                max_until
            };
            tokio::select! {
                env = reader.next(), if reading => {
                    let env = env.map_err(ShardError::Read)?;
                    if !env.is_ack() { batch.push(env); }
                }
                _ = tokio::time::sleep_until(wake), if reading || now < min_until => {}
                result = wait_prev(&mut prev), if prev.is_some() => land(result, &mut store)?,
                _ = stop.changed(), if reading => {}
            }
        }

        // --- Finalize. ---
        let finalizing = Instant::now();
        observe(&phases, TxnPhase::Consume, finalizing - began);
        let (back, result) = work
            .run(|work| {
                let (mut txn, app) = work.context();
                app.finalize_txn(&mut txn)
            })
            .await?;
        work = back;
        result.map_err(ShardError::App)?;
        observe(&phases, TxnPhase::Finalize, finalizing.elapsed());
        check_fault(&config.faults, FaultPoint::AfterFinalize)?;

        let mut checkpoint = reader.checkpoint(config.prune_horizon);
        let (intents, held) = publisher.hold_acks();
        checkpoint.ack_intents = intents
            .into_iter()
            .map(|intent| (intent.journal, intent.bytes))
            .collect();
        checkpoint.module = config.module_digest.clone();

        // --- Commit in the background; the next transaction consumes over
        // this one's pending writes meanwhile, and its messages queue behind
        // this one's held ACKs. ---
        let home = store.take().ok_or_else(|| {
            ShardError::Crashed("the store is owned by a commit in flight".into())
        })?;
        let own = std::mem::replace(&mut work.store, home.begin_txn());
        let writes = Arc::new(own.into_writes());
        work.store = home.begin_txn_over(writes.clone());
        work.publisher.messages = 0;
        work.publisher.bytes = 0;
        prev = Some(tokio::spawn(commit_txn(
            home,
            held,
            writes,
            checkpoint,
            config.faults.clone(),
            phases.clone(),
        )));
    }
}

/// A transaction that committed and was acknowledged.
struct Committed {
    store: ShardStore,
    read_through: std::collections::BTreeMap<String, i64>,
}

/// Waits for the commit in flight (callers guard on `prev.is_some()`).
async fn wait_prev(
    prev: &mut Option<JoinHandle<Result<Committed, ShardError>>>,
) -> Result<Result<Committed, ShardError>, tokio::task::JoinError> {
    match prev.as_mut() {
        Some(handle) => {
            let result = handle.await;
            *prev = None;
            result
        }
        None => std::future::pending().await,
    }
}

/// Commits one transaction: its published messages durable first, then its
/// recovery-log record (the commit), then its held ACKs are released and
/// awaited. Returning early (an error, an injected crash) drops the held
/// ACKs unreleased, so they are never appended.
async fn commit_txn(
    mut store: ShardStore,
    held: HeldAcks,
    writes: Arc<WriteSet>,
    checkpoint: Checkpoint,
    faults: Option<FaultHook>,
    phases: Option<ShardTxnMetrics>,
) -> Result<Committed, ShardError> {
    let mut phase = Instant::now();
    let mut lap = |name: TxnPhase| {
        let now = Instant::now();
        observe(&phases, name, now - phase);
        phase = now;
    };
    held.flush().await.map_err(ShardError::Publish)?;
    lap(TxnPhase::Flush);
    check_fault(&faults, FaultPoint::BeforeCommit)?;
    store.commit(&*writes, &checkpoint).await?;
    lap(TxnPhase::Commit);
    check_fault(&faults, FaultPoint::AfterCommit)?;
    held.release();
    check_fault(&faults, FaultPoint::DuringAcks)?;
    held.acknowledged().await.map_err(ShardError::Ack)?;
    lap(TxnPhase::Ack);
    let read_through = checkpoint
        .sources
        .iter()
        .map(|(journal, cp)| (journal.clone(), cp.read_through))
        .collect();
    Ok(Committed {
        store,
        read_through,
    })
}

fn observe(phases: &Option<ShardTxnMetrics>, phase: TxnPhase, took: Duration) {
    if let Some(phases) = phases {
        phases.observe(phase, took);
    }
}

/// Appends an ACK intent, retrying transient failures. A journal deleted
/// since the intent was recorded is skipped (Gazette tolerates
/// JOURNAL_NOT_FOUND only here).
async fn append_ack(
    client: &dyn JournalClient,
    journal: &str,
    bytes: &[u8],
) -> Result<(), ShardError> {
    let mut backoff = Duration::from_millis(50);
    loop {
        let request = AppendRequest {
            journal: journal.to_string(),
            content: bytes::Bytes::copy_from_slice(bytes),
            ..Default::default()
        };
        match client.append(request).await {
            Ok(_) | Err(BrokerError::JournalNotFound(_)) => return Ok(()),
            Err(err) if err.is_transient() => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(ShardError::Ack(err)),
        }
    }
}
