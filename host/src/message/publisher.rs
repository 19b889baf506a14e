//! [`Publisher`]: writes framed, UUID-stamped messages to journals (Gazette's
//! `message.Publisher`).
//!
//! - [`Publisher::publish_committed`] writes an `OUTSIDE_TXN` message: read
//!   committed as soon as it is read. Safe to call concurrently.
//! - [`Publisher::publish_uncommitted`] writes a `CONTINUE_TXN` message that
//!   stays invisible to read-committed readers until an ACK commits it; the
//!   first such publish to a journal records an *ACK intent* for it.
//! - [`Publisher::build_ack_intents`] turns the recorded intents into ACK
//!   documents (one per journal, clocks taken now, so after every message of
//!   the transaction and before any of the next). The consumer checkpoints
//!   them and appends them only once the checkpoint is durable.
//! - [`Publisher::flush`] waits until every message published so far is
//!   durably appended: the commit barrier.
//!
//! Guarantees:
//!
//! - **UUIDs in journal order.** Each journal has one queue; the UUID is
//!   assigned (the shared clock ticked) under the queue's lock, while the
//!   message is framed into the queue's buffer, and one flusher task appends
//!   buffers in order. So a producer's clocks increase in journal order,
//!   which readers rely on to drop duplicates (Gazette bug GH-259).
//! - **Group commit.** Everything framed while an append is in flight goes
//!   out in the next append.
//! - **At-least-once appends.** A transient append failure is retried with
//!   the same bytes (back-off 50 ms doubling to 5 s); a failed append may
//!   still have landed, and the duplicate is dropped by readers. A permanent
//!   failure stops the journal's queue: [`flush`](Publisher::flush) returns
//!   it, and later publishes to that journal are refused when the error says
//!   why ([`PublishError::JournalNotFound`]) or else buffered and never
//!   appended (the next `flush` fails).
//!
//! Publishing itself never blocks on I/O, so it may be called from blocking
//! threads and from async code alike; `flush` is async.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::sync::{Notify, watch};

use crate::broker::{AppendRequest, BrokerError, JournalClient};
use crate::consumer::PublishError;
use crate::limits;

use super::framing::{FramingError, ack_document, frame_with_limit};
use super::uuid::{AtomicClock, Flags, ProducerId, build_uuid};

/// Tunables of a [`Publisher`]; defaults from [`crate::limits`].
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Largest document accepted, in bytes.
    pub max_doc_bytes: usize,
    /// Most bytes per append; a larger backlog is split at message boundaries.
    pub max_append_bytes: usize,
    /// First retry back-off after a transient append failure.
    pub retry_backoff: Duration,
    /// Back-off cap.
    pub retry_backoff_max: Duration,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        PublisherConfig {
            max_doc_bytes: limits::DEFAULT_MAX_MESSAGE_BYTES,
            max_append_bytes: limits::DEFAULT_PUBLISH_APPEND_BYTES,
            retry_backoff: Duration::from_millis(limits::DEFAULT_PUBLISH_RETRY_BACKOFF_MS),
            retry_backoff_max: Duration::from_millis(limits::DEFAULT_PUBLISH_RETRY_BACKOFF_MAX_MS),
        }
    }
}

/// An acknowledgement to append to `journal` once the transaction that
/// published there is durable: `bytes` is a framed ACK document, appended
/// byte for byte (also after recovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckIntent {
    /// The journal to acknowledge.
    pub journal: String,
    /// The ACK document, `{"UUID":"…"}\n`.
    pub bytes: Vec<u8>,
}

/// Publishes messages under one fresh [`ProducerId`]. See the module docs.
pub struct Publisher {
    producer: ProducerId,
    clock: Arc<AtomicClock>,
    client: Arc<dyn JournalClient>,
    handle: Handle,
    config: PublisherConfig,
    queues: Mutex<HashMap<String, Arc<JournalQueue>>>,
    /// Journals published to uncommitted since the last `build_ack_intents`,
    /// in first-publish order.
    intents: Mutex<Vec<String>>,
}

/// The append queue of one journal.
struct JournalQueue {
    journal: String,
    state: Mutex<QueueState>,
    /// Wakes the flusher.
    wake: Notify,
    progress: watch::Sender<Progress>,
}

#[derive(Default)]
struct QueueState {
    /// Framed messages not yet handed to the flusher.
    buf: Vec<u8>,
    /// Messages framed so far.
    framed: u64,
    /// Set when the queue stopped on a permanent error.
    failed: Option<FailedKind>,
    /// The publisher is gone: the flusher exits once the buffer is empty.
    closed: bool,
    /// Held ACKs of committing transactions, in buffer order: bytes from a
    /// gate's position on wait until the gate is released.
    gates: VecDeque<Gate>,
}

/// A held position in a journal queue's buffer (see [`Publisher::hold_acks`]).
struct Gate {
    /// Offset in `QueueState::buf` of the held ACK.
    at: usize,
    /// Messages framed before the ACK.
    framed: u64,
    open: watch::Receiver<GateState>,
}

/// The state of the ACKs of a committing transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GateState {
    /// The commit is not yet durable: the ACKs and every later message wait.
    Held,
    /// The commit is durable: the ACKs may be appended.
    Released,
    /// The commit failed: the ACKs must never be appended, and neither may
    /// later messages (they belong to a term that is ending).
    Aborted,
}

/// The ACKs of one transaction, queued in each journal ahead of the next
/// transaction's messages but held until the transaction's commit is
/// durable (Gazette's append dependencies on the commit barrier). Dropping it
/// unreleased aborts: the ACKs are never appended.
pub struct HeldAcks {
    gate: watch::Sender<GateState>,
    /// Per journal queue: messages framed before its ACK.
    targets: Vec<(Arc<JournalQueue>, u64)>,
}

impl HeldAcks {
    /// Waits until every message published before the ACKs is durably
    /// appended (the commit barrier), or returns a queue's permanent error.
    pub async fn flush(&self) -> Result<(), BrokerError> {
        for (queue, target) in &self.targets {
            wait_appended(queue, *target).await?;
        }
        Ok(())
    }

    /// Lets the ACKs (and the messages queued behind them) be appended.
    pub fn release(&self) {
        self.gate.send_replace(GateState::Released);
    }

    /// Waits until every ACK is durably appended.
    pub async fn acknowledged(&self) -> Result<(), BrokerError> {
        for (queue, target) in &self.targets {
            wait_appended(queue, *target + 1).await?;
        }
        Ok(())
    }
}

impl Drop for HeldAcks {
    fn drop(&mut self) {
        self.gate.send_if_modified(|state| {
            if *state == GateState::Held {
                *state = GateState::Aborted;
                true
            } else {
                false
            }
        });
        for (queue, _) in &self.targets {
            queue.wake.notify_one();
        }
    }
}

async fn wait_appended(queue: &JournalQueue, target: u64) -> Result<(), BrokerError> {
    let mut progress = queue.progress.subscribe();
    let reached = progress
        .wait_for(|p| p.appended >= target || p.failed.is_some())
        .await
        .map_err(|_| BrokerError::Unavailable("publisher flusher stopped".to_string()))?;
    match &reached.failed {
        Some(err) if reached.appended < target => Err(replicate(&queue.journal, err)),
        _ => Ok(()),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FailedKind {
    JournalNotFound,
    Other,
}

/// What the flusher reports to `flush`.
#[derive(Default)]
struct Progress {
    /// Messages durably appended (a count comparable to `QueueState::framed`).
    appended: u64,
    /// The permanent error that stopped the queue.
    failed: Option<Arc<BrokerError>>,
}

impl Publisher {
    /// A publisher with a fresh random producer id, appending through
    /// `client` from tasks spawned on `handle`, stamping clocks from `clock`.
    pub fn new(client: Arc<dyn JournalClient>, clock: Arc<AtomicClock>, handle: Handle) -> Self {
        Publisher::with_config(client, clock, handle, PublisherConfig::default())
    }

    /// [`Publisher::new`] with explicit tunables.
    pub fn with_config(
        client: Arc<dyn JournalClient>,
        clock: Arc<AtomicClock>,
        handle: Handle,
        config: PublisherConfig,
    ) -> Self {
        Publisher {
            producer: ProducerId::random(),
            clock,
            client,
            handle,
            config,
            queues: Mutex::new(HashMap::new()),
            intents: Mutex::new(Vec::new()),
        }
    }

    /// This publisher's producer id.
    pub fn producer(&self) -> ProducerId {
        self.producer
    }

    /// Publishes `doc` (a one-line JSON object without `"UUID"`) to
    /// `journal` as `OUTSIDE_TXN`: committed on its own. Safe to call
    /// concurrently from any thread.
    pub fn publish_committed(&self, journal: &str, doc: &[u8]) -> Result<(), PublishError> {
        self.publish(journal, doc, Flags::OutsideTxn)
    }

    /// Publishes `doc` to `journal` as `CONTINUE_TXN`: pending until the ACK
    /// built by the next [`build_ack_intents`](Self::build_ack_intents) is
    /// appended. Calls of one transaction must not race with
    /// `build_ack_intents`.
    pub fn publish_uncommitted(&self, journal: &str, doc: &[u8]) -> Result<(), PublishError> {
        self.publish(journal, doc, Flags::ContinueTxn)?;
        let mut intents = lock(&self.intents);
        if !intents.iter().any(|j| j == journal) {
            intents.push(journal.to_string());
        }
        Ok(())
    }

    /// ACK documents for every journal published to uncommitted since the
    /// last call, in first-publish order; clears the list. Each ACK's clock
    /// is ticked now, so it is above every message published before and
    /// below every message published after.
    pub fn build_ack_intents(&self) -> Vec<AckIntent> {
        let journals = std::mem::take(&mut *lock(&self.intents));
        journals
            .into_iter()
            .map(|journal| {
                let uuid = build_uuid(self.producer, self.clock.tick(), Flags::AckTxn);
                AckIntent {
                    journal,
                    bytes: ack_document(&uuid),
                }
            })
            .collect()
    }

    /// Like [`build_ack_intents`](Self::build_ack_intents), and also queues
    /// each ACK in its journal's queue right away, held: messages published
    /// after this call line up behind the ACK, so they can never reach the
    /// journal before it (an ACK rolls back its producer's pending messages
    /// with larger clocks). [`HeldAcks::release`] lets them go once the
    /// transaction's commit is durable. This is what lets the next
    /// transaction publish while this one commits.
    pub fn hold_acks(&self) -> (Vec<AckIntent>, HeldAcks) {
        let journals = std::mem::take(&mut *lock(&self.intents));
        let (gate, open) = watch::channel(GateState::Held);
        let mut intents = Vec::with_capacity(journals.len());
        let mut targets = Vec::with_capacity(journals.len());
        for journal in journals {
            let queue = self.queue(&journal);
            let bytes = {
                let mut state = lock(&queue.state);
                // Tick under the queue's lock: clock order is journal order.
                let uuid = build_uuid(self.producer, self.clock.tick(), Flags::AckTxn);
                let bytes = ack_document(&uuid);
                let at = state.buf.len();
                let framed = state.framed;
                state.gates.push_back(Gate {
                    at,
                    framed,
                    open: open.clone(),
                });
                state.buf.extend_from_slice(&bytes);
                state.framed += 1;
                targets.push((queue.clone(), framed));
                bytes
            };
            queue.wake.notify_one();
            intents.push(AckIntent { journal, bytes });
        }
        (intents, HeldAcks { gate, targets })
    }

    /// Waits until every message published before the call is durably
    /// appended, or returns the permanent error that stopped a journal's
    /// queue. Transient failures are retried meanwhile, so this may wait
    /// as long as the broker is unavailable. Cancel-safe.
    pub async fn flush(&self) -> Result<(), BrokerError> {
        let targets: Vec<(Arc<JournalQueue>, u64)> = lock(&self.queues)
            .values()
            .map(|queue| (queue.clone(), lock(&queue.state).framed))
            .collect();
        for (queue, target) in targets {
            let mut progress = queue.progress.subscribe();
            let reached = progress
                .wait_for(|p| p.appended >= target || p.failed.is_some())
                .await
                .map_err(|_| BrokerError::Unavailable("publisher flusher stopped".to_string()))?;
            if let Some(err) = &reached.failed {
                return Err(replicate(&queue.journal, err));
            }
        }
        Ok(())
    }

    fn publish(&self, journal: &str, doc: &[u8], flags: Flags) -> Result<(), PublishError> {
        let queue = self.queue(journal);
        {
            let mut state = lock(&queue.state);
            if state.failed == Some(FailedKind::JournalNotFound) {
                return Err(PublishError::JournalNotFound(journal.to_string()));
            }
            // Tick under the queue's lock: clock order is journal order.
            let uuid = build_uuid(self.producer, self.clock.tick(), flags);
            frame_with_limit(doc, &uuid, &mut state.buf, self.config.max_doc_bytes).map_err(
                |err| match err {
                    FramingError::TooLarge { len, max } => PublishError::LimitExceeded(format!(
                        "document of {len} bytes for {journal} exceeds {max} bytes"
                    )),
                    other => PublishError::InvalidDocument {
                        journal: journal.to_string(),
                        reason: other.to_string(),
                    },
                },
            )?;
            state.framed += 1;
        }
        queue.wake.notify_one();
        Ok(())
    }

    /// The queue of `journal`, created (with its flusher task) on first use.
    fn queue(&self, journal: &str) -> Arc<JournalQueue> {
        let mut queues = lock(&self.queues);
        if let Some(queue) = queues.get(journal) {
            return queue.clone();
        }
        let queue = Arc::new(JournalQueue {
            journal: journal.to_string(),
            state: Mutex::new(QueueState::default()),
            wake: Notify::new(),
            progress: watch::Sender::new(Progress::default()),
        });
        queues.insert(journal.to_string(), queue.clone());
        self.handle.spawn(run_flusher(
            queue.clone(),
            self.client.clone(),
            self.config.clone(),
        ));
        queue
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // Flushers finish what was published, then exit.
        for queue in lock(&self.queues).values() {
            lock(&queue.state).closed = true;
            queue.wake.notify_one();
        }
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("producer", &self.producer)
            .finish_non_exhaustive()
    }
}

/// Appends the queue's buffer, in order, until the publisher is dropped or
/// an append fails permanently.
async fn run_flusher(
    queue: Arc<JournalQueue>,
    client: Arc<dyn JournalClient>,
    config: PublisherConfig,
) {
    loop {
        let next = {
            let mut state = lock(&queue.state);
            next_batch(&mut state)
        };
        let (buf, framed) = match next {
            Next::Append(buf, framed) => (buf, framed),
            Next::Idle { closed: true } => return,
            Next::Idle { closed: false } => {
                queue.wake.notified().await;
                continue;
            }
            Next::Held(mut open) => {
                tokio::select! {
                    _ = open.changed() => {}
                    _ = queue.wake.notified() => {}
                }
                continue;
            }
            Next::Aborted => {
                let err = BrokerError::Unavailable(
                    "a held acknowledgement was aborted: its commit failed".to_string(),
                );
                lock(&queue.state).failed = Some(FailedKind::Other);
                queue
                    .progress
                    .send_modify(|p| p.failed = Some(Arc::new(err)));
                return;
            }
        };
        match append_all(client.as_ref(), &queue.journal, buf, &config).await {
            Ok(()) => queue.progress.send_modify(|p| p.appended = framed),
            Err(err) => {
                tracing::error!(journal = %queue.journal, error = %err, "publisher append failed permanently");
                lock(&queue.state).failed = Some(match err {
                    BrokerError::JournalNotFound(_) => FailedKind::JournalNotFound,
                    _ => FailedKind::Other,
                });
                queue
                    .progress
                    .send_modify(|p| p.failed = Some(Arc::new(err)));
                return;
            }
        }
    }
}

/// What the flusher does next.
enum Next {
    /// Append these bytes; afterwards this many messages are appended.
    Append(Vec<u8>, u64),
    /// Nothing to append (and, if `closed`, nothing ever will be).
    Idle { closed: bool },
    /// The buffer starts with a held ACK: wait for its gate.
    Held(watch::Receiver<GateState>),
    /// The buffer starts with an aborted ACK: stop.
    Aborted,
}

/// Takes the next appendable prefix of the buffer: everything up to the
/// first held gate.
fn next_batch(state: &mut QueueState) -> Next {
    loop {
        let Some(front) = state.gates.front() else {
            if state.buf.is_empty() {
                return Next::Idle {
                    closed: state.closed,
                };
            }
            return Next::Append(std::mem::take(&mut state.buf), state.framed);
        };
        if front.at > 0 {
            let at = front.at;
            let framed = front.framed;
            let rest = state.buf.split_off(at);
            let head = std::mem::replace(&mut state.buf, rest);
            for gate in state.gates.iter_mut() {
                gate.at -= at;
            }
            return Next::Append(head, framed);
        }
        let open = *front.open.borrow();
        match open {
            GateState::Held => return Next::Held(front.open.clone()),
            GateState::Aborted => return Next::Aborted,
            // The ACK is at the front now: appendable with what follows it.
            GateState::Released => {
                state.gates.pop_front();
            }
        }
    }
}

/// Appends `buf` (whole frames) in pieces of at most `max_append_bytes`,
/// cut at newlines, retrying transient failures.
async fn append_all(
    client: &dyn JournalClient,
    journal: &str,
    buf: Vec<u8>,
    config: &PublisherConfig,
) -> Result<(), BrokerError> {
    let mut rest = Bytes::from(buf);
    while !rest.is_empty() {
        let cut = if rest.len() <= config.max_append_bytes {
            rest.len()
        } else {
            // A frame is never longer than the limit (documents are capped
            // well below it), but cut after the first frame if one were.
            let window = &rest[..config.max_append_bytes];
            match window.iter().rposition(|&b| b == b'\n') {
                Some(pos) => pos + 1,
                None => rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |pos| pos + 1),
            }
        };
        let content = rest.split_to(cut);
        append_with_retry(client, journal, content, config).await?;
    }
    Ok(())
}

async fn append_with_retry(
    client: &dyn JournalClient,
    journal: &str,
    content: Bytes,
    config: &PublisherConfig,
) -> Result<(), BrokerError> {
    let mut backoff = config.retry_backoff;
    loop {
        let request = AppendRequest {
            journal: journal.to_string(),
            content: content.clone(),
            ..Default::default()
        };
        match client.append(request).await {
            Ok(_) => return Ok(()),
            Err(err) if err.is_transient() => {
                tracing::warn!(journal, error = %err, ?backoff, "append failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.retry_backoff_max);
            }
            Err(err) => return Err(err),
        }
    }
}

/// A copy of a stored permanent error for a caller of `flush` (the broker
/// error type is not `Clone`); variants without a faithful copy become a
/// permanent `Io` error carrying the original message.
fn replicate(journal: &str, err: &BrokerError) -> BrokerError {
    match err {
        BrokerError::JournalNotFound(j) => BrokerError::JournalNotFound(j.clone()),
        BrokerError::InvalidArgument(s) => BrokerError::InvalidArgument(s.clone()),
        BrokerError::LimitExceeded(s) => BrokerError::LimitExceeded(s.clone()),
        other => BrokerError::Io {
            context: format!("append to {journal}"),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent state (each
    // critical section is a single push or swap), so poisoning is ignored.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::message::framing::extract_uuid;
    use crate::message::testing::{Fault, MemJournals};
    use crate::message::uuid::{Clock, parse_uuid};
    use futures::FutureExt;

    fn fast_config() -> PublisherConfig {
        PublisherConfig {
            retry_backoff: Duration::from_millis(1),
            retry_backoff_max: Duration::from_millis(2),
            ..PublisherConfig::default()
        }
    }

    fn publisher_for(journals: &Arc<MemJournals>) -> Publisher {
        publisher(journals)
    }

    fn publisher(journals: &Arc<MemJournals>) -> Publisher {
        Publisher::with_config(
            journals.clone(),
            Arc::new(AtomicClock::now()),
            Handle::current(),
            fast_config(),
        )
    }

    /// (producer, clock, flags, doc) of each line of `journal`.
    fn lines(journals: &MemJournals, journal: &str) -> Vec<(ProducerId, Clock, Flags, String)> {
        let content = journals.content(journal);
        content
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                let uuid = extract_uuid(line, 0).expect("valid line");
                let (p, c, f) = parse_uuid(&uuid);
                (p, c, f, String::from_utf8(line.to_vec()).expect("utf-8"))
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_publishers_stamp_clocks_in_journal_order() {
        let journals = MemJournals::with_journals(&["j"], 1024);
        let publisher = Arc::new(publisher(&journals));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let publisher = publisher.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        let doc = format!(r#"{{"t":{t},"i":{i}}}"#);
                        publisher
                            .publish_committed("j", doc.as_bytes())
                            .expect("publish");
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("publisher thread");
        }
        publisher.flush().await.expect("flush");

        let lines = lines(&journals, "j");
        assert_eq!(lines.len(), 2000);
        for pair in lines.windows(2) {
            assert!(
                pair[0].1 < pair[1].1,
                "clocks out of journal order: {pair:?}"
            );
        }
        assert!(
            lines
                .iter()
                .all(|l| l.0 == publisher.producer() && l.2 == Flags::OutsideTxn)
        );
        assert!(lines[0].3.starts_with("{\"UUID\":\""));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn held_acks_precede_later_messages_and_wait_for_release() {
        let journals = MemJournals::with_journals(&["a"], 1024);
        let publisher = publisher(&journals);
        publisher
            .publish_uncommitted("a", b"{\"n\":1}")
            .expect("publish");
        let (intents, held) = publisher.hold_acks();
        assert_eq!(intents.len(), 1);
        // The next transaction publishes while the first one commits.
        publisher
            .publish_uncommitted("a", b"{\"n\":2}")
            .expect("publish");
        held.flush()
            .await
            .expect("the first transaction's message is appended");
        let docs = |journals: &MemJournals| -> Vec<String> {
            lines(journals, "a")
                .into_iter()
                .map(|(_, _, flags, doc)| format!("{flags:?} {doc}"))
                .collect()
        };
        assert_eq!(
            docs(&journals).len(),
            1,
            "nothing passes a held ACK: {:?}",
            docs(&journals)
        );
        held.release();
        held.acknowledged().await.expect("the ACK is appended");
        publisher.flush().await.expect("flush");
        let appended = docs(&journals);
        assert_eq!(appended.len(), 3, "{appended:?}");
        assert!(
            appended[1].starts_with("AckTxn"),
            "the ACK comes before the next message: {appended:?}"
        );
        assert!(appended[2].contains("\"n\":2"), "{appended:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_aborted_held_ack_is_never_appended() {
        let journals = MemJournals::with_journals(&["a"], 1024);
        let publisher = publisher(&journals);
        publisher
            .publish_uncommitted("a", b"{\"n\":1}")
            .expect("publish");
        let (_intents, held) = publisher.hold_acks();
        publisher
            .publish_uncommitted("a", b"{\"n\":2}")
            .expect("publish");
        held.flush().await.expect("flush before the gate");
        drop(held); // the commit failed
        assert!(
            publisher.flush().await.is_err(),
            "later messages of a dying term fail"
        );
        let appended = lines(&journals, "a");
        assert_eq!(
            appended.len(),
            1,
            "only the message before the aborted ACK: {appended:?}"
        );
    }

    #[tokio::test]
    async fn ack_intents_cover_each_journal_once_in_first_publish_order() {
        let journals = MemJournals::with_journals(&["a", "b", "c"], 1024);
        let publisher = publisher(&journals);
        publisher
            .publish_uncommitted("b", b"{\"n\":1}")
            .expect("publish");
        publisher
            .publish_uncommitted("a", b"{\"n\":2}")
            .expect("publish");
        publisher
            .publish_uncommitted("b", b"{\"n\":3}")
            .expect("publish");
        publisher.publish_committed("c", b"{}").expect("publish");
        let intents = publisher.build_ack_intents();
        assert_eq!(
            intents
                .iter()
                .map(|i| i.journal.as_str())
                .collect::<Vec<_>>(),
            ["b", "a"]
        );
        publisher
            .publish_uncommitted("a", b"{\"n\":4}")
            .expect("publish");
        publisher.flush().await.expect("flush");

        let published: Vec<_> = ["a", "b"]
            .iter()
            .flat_map(|j| lines(&journals, j))
            .collect();
        let acks: Vec<Clock> = intents
            .iter()
            .map(|intent| {
                assert_eq!(intent.bytes.last(), Some(&b'\n'));
                let line = &intent.bytes[..intent.bytes.len() - 1];
                let (p, c, f) = parse_uuid(&extract_uuid(line, 0).expect("ack line"));
                assert_eq!((p, f), (publisher.producer(), Flags::AckTxn));
                assert_eq!(line.len(), 47, "an ACK is just the UUID");
                c
            })
            .collect();
        // ACK clocks lie above the transaction's messages and below the next one's.
        for (_, clock, flags, doc) in &published {
            assert_eq!(*flags, Flags::ContinueTxn);
            if doc.contains("\"n\":4") {
                assert!(acks.iter().all(|ack| ack < clock));
            } else {
                assert!(acks.iter().all(|ack| ack > clock));
            }
        }
        assert!(
            publisher
                .build_ack_intents()
                .iter()
                .map(|i| &i.journal)
                .eq(["a"].iter())
        );
        assert!(publisher.build_ack_intents().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_published_during_an_append_go_out_together() {
        let journals = MemJournals::with_journals(&["j"], 1024);
        let publisher = publisher(&journals);
        journals.pause_appends();
        publisher
            .publish_committed("j", b"{\"first\":true}")
            .expect("publish");
        journals.appends_started(1).await;
        for i in 0..99 {
            publisher
                .publish_committed("j", format!("{{\"i\":{i}}}").as_bytes())
                .expect("publish");
        }
        // Nothing is durable while the append hangs.
        assert!(publisher.flush().now_or_never().is_none());
        journals.resume_appends();
        publisher.flush().await.expect("flush");
        let appends = journals.appends();
        assert_eq!(appends.len(), 2, "group commit: {appends:?}");
        assert_eq!(lines(&journals, "j").len(), 100);
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_and_its_landed_duplicate_kept() {
        let journals = MemJournals::with_journals(&["j"], 1024);
        let publisher = publisher(&journals);
        journals.inject(Fault::LandThenFail(BrokerError::Unavailable(
            "lost reply".into(),
        )));
        journals.inject(Fault::Fail(BrokerError::Unavailable("down".into())));
        publisher
            .publish_committed("j", b"{\"x\":1}")
            .expect("publish");
        publisher.flush().await.expect("flush");
        let lines = lines(&journals, "j");
        assert_eq!(lines.len(), 2, "the retried bytes landed twice");
        assert_eq!(lines[0], lines[1]);
        assert_eq!(journals.appends().len(), 2);
    }

    #[tokio::test]
    async fn a_permanent_failure_fails_flush_and_later_publishes() {
        let journals = MemJournals::with_journals(&["j"], 1024);
        let publisher = publisher(&journals);
        publisher.publish_committed("j", b"{}").expect("publish");
        publisher.flush().await.expect("flush");
        publisher
            .publish_committed("missing", b"{}")
            .expect("publish is buffered");
        let err = publisher.flush().await.expect_err("missing journal");
        assert!(
            matches!(err, BrokerError::JournalNotFound(ref j) if j == "missing"),
            "{err:?}"
        );
        // Again, for every later flush.
        assert!(matches!(
            publisher.flush().await,
            Err(BrokerError::JournalNotFound(_))
        ));
        assert!(matches!(
            publisher.publish_committed("missing", b"{}"),
            Err(PublishError::JournalNotFound(_))
        ));
        // Other permanent errors are reported too.
        let journals = MemJournals::with_journals(&["j"], 1024);
        journals.inject(Fault::Fail(BrokerError::LimitExceeded("too big".into())));
        let other = publisher_for(&journals);
        other.publish_committed("j", b"{}").expect("publish");
        assert!(matches!(
            other.flush().await,
            Err(BrokerError::LimitExceeded(_))
        ));
        assert!(journals.content("j").is_empty());
    }

    #[tokio::test]
    async fn invalid_documents_are_refused_without_an_intent() {
        let journals = MemJournals::with_journals(&["j"], 1024);
        let config = PublisherConfig {
            max_doc_bytes: 16,
            ..fast_config()
        };
        let publisher = Publisher::with_config(
            journals.clone(),
            Arc::new(AtomicClock::now()),
            Handle::current(),
            config,
        );
        assert!(matches!(
            publisher.publish_uncommitted("j", b"[1,2]"),
            Err(PublishError::InvalidDocument { .. })
        ));
        assert!(matches!(
            publisher.publish_uncommitted("j", br#"{"UUID":"x"}"#),
            Err(PublishError::InvalidDocument { .. })
        ));
        assert!(matches!(
            publisher.publish_committed("j", br#"{"long":"0123456789"}"#),
            Err(PublishError::LimitExceeded(_))
        ));
        assert!(publisher.build_ack_intents().is_empty());
        publisher.flush().await.expect("flush");
        assert!(journals.content("j").is_empty());
    }

    #[tokio::test]
    async fn every_publisher_gets_its_own_producer_id() {
        let journals = MemJournals::with_journals(&["j"], 1024);
        let ids: std::collections::HashSet<ProducerId> =
            (0..50).map(|_| publisher(&journals).producer()).collect();
        assert_eq!(ids.len(), 50);
    }
}
