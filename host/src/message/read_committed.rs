//! [`ReadCommitted`]: read-committed delivery over a shard's source journals
//! (Gazette's `ReadCommittedIter` plus the consumer's readers).
//!
//! One reader task per source journal reads from its start offset (blocking
//! at the write head), splits the bytes into lines, decodes each into an
//! [`Envelope`] (the content type comes from the journal's `content-type`
//! label; only `application/x-ndjson` is supported, and it is the default),
//! and sends it into one bounded channel shared by the readers. [`ReadCommitted::next`]
//! feeds those envelopes through a [`Sequencer`] and returns the committed
//! ones, in journal order per journal, **including ACK envelopes** (callers
//! skip them with [`Envelope::is_ack`]). When the sequencer needs a replay, a
//! bounded read of `[begin, end)` runs in its own task.
//!
//! Transient broker errors are retried (with back-off) by the reader tasks;
//! anything else (a bad line, a missing journal, an unsupported content
//! type) surfaces from `next` as a [`ReadError`] naming the journal and
//! offset.
//!
//! `next` is **cancel-safe**: it only awaits channel receives, and every
//! state change happens between them, so it may be used in `tokio::select!`
//! and polled once with `now_or_never` without losing an envelope.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::broker::{BrokerError, JournalClient, LabelSelector, LabelSet, ReadRequest};
use crate::consumer::{Checkpoint, SourceCheckpoint};
use crate::limits;

use super::envelope::Envelope;
use super::framing::{Frame, FramingError, LineDecoder, NDJSON, extract_uuid};
use super::sequencer::{Sequencer, SequencerError, Step};
use super::uuid::parse_uuid;

/// Errors of read-committed reading.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A journal holds bytes that are not a valid message.
    #[error("cannot decode {journal}")]
    Decode {
        /// The journal read.
        journal: String,
        /// What was wrong, with the offset.
        #[source]
        source: FramingError,
    },
    /// Reading a journal failed permanently.
    #[error("cannot read {journal}")]
    Broker {
        /// The journal read.
        journal: String,
        /// The broker's error.
        #[source]
        source: BrokerError,
    },
    /// The journal's content type has no message framing here.
    #[error("journal {journal} has unsupported content type {content_type:?}")]
    UnsupportedContentType {
        /// The journal.
        journal: String,
        /// Its `content-type` label.
        content_type: String,
    },
    /// The sequencer was misused or a replay did not match its range.
    #[error(transparent)]
    Sequencer(#[from] SequencerError),
    /// A reader task ended without reporting why (it panicked or was
    /// aborted).
    #[error("reader of {journal} stopped")]
    ReaderStopped {
        /// The journal.
        journal: String,
    },
    /// `ReadCommitted::new` was called outside a tokio runtime.
    #[error("read-committed readers need a tokio runtime")]
    NoRuntime,
}

/// Tunables of the reader tasks; defaults from [`crate::limits`].
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// Longest line accepted, in bytes (the largest document plus its UUID).
    pub max_line_bytes: usize,
    /// First back-off after a transient read failure.
    pub retry_backoff: Duration,
    /// Back-off cap.
    pub retry_backoff_max: Duration,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            max_line_bytes: limits::DEFAULT_MAX_MESSAGE_BYTES + 64,
            retry_backoff: Duration::from_millis(limits::DEFAULT_PUBLISH_RETRY_BACKOFF_MS),
            retry_backoff_max: Duration::from_millis(limits::DEFAULT_PUBLISH_RETRY_BACKOFF_MAX_MS),
        }
    }
}

/// What reader tasks send.
enum Item {
    Envelope(Envelope),
    Error(ReadError),
    /// A bounded read reached its end.
    End,
}

/// Read-committed delivery over a set of journals. See the module docs.
pub struct ReadCommitted {
    client: Arc<dyn JournalClient>,
    config: ReaderConfig,
    sequencer: Sequencer,
    rx: mpsc::Receiver<Item>,
    readers: Vec<JoinHandle<()>>,
    replay: Option<(mpsc::Receiver<Item>, JoinHandle<()>)>,
    replay_channel_size: usize,
}

impl ReadCommitted {
    /// Starts reading `sources` (journal, offset to read from), resuming the
    /// producer states of `checkpoint` (per journal, as a consumer checkpoint
    /// holds them), with a sequencer ring of `ring_size` envelopes and a
    /// channel of `read_channel_size` decoded envelopes. Must be called
    /// within a tokio runtime.
    pub fn new(
        client: Arc<dyn JournalClient>,
        sources: Vec<(String, i64)>,
        checkpoint: &BTreeMap<String, SourceCheckpoint>,
        ring_size: usize,
        read_channel_size: usize,
    ) -> Result<ReadCommitted, ReadError> {
        ReadCommitted::with_config(
            client,
            sources,
            checkpoint,
            ring_size,
            read_channel_size,
            ReaderConfig::default(),
        )
    }

    /// [`ReadCommitted::new`] with explicit reader tunables.
    pub fn with_config(
        client: Arc<dyn JournalClient>,
        sources: Vec<(String, i64)>,
        checkpoint: &BTreeMap<String, SourceCheckpoint>,
        ring_size: usize,
        read_channel_size: usize,
        config: ReaderConfig,
    ) -> Result<ReadCommitted, ReadError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| ReadError::NoRuntime)?;
        let sources: Vec<(Arc<str>, i64)> = sources
            .into_iter()
            .map(|(journal, offset)| (Arc::from(journal), offset))
            .collect();
        // Only the sources' producer states matter; others would be noise.
        let states: BTreeMap<String, SourceCheckpoint> = checkpoint
            .iter()
            .filter(|(journal, _)| sources.iter().any(|(j, _)| **j == ***journal))
            .map(|(journal, source)| (journal.clone(), source.clone()))
            .collect();
        let sequencer = Sequencer::recover(ring_size, sources.iter().cloned(), &states)?;
        let channel_size = read_channel_size.max(1);
        let (tx, rx) = mpsc::channel(channel_size);
        let readers = sources
            .into_iter()
            .map(|(journal, offset)| {
                let read = Read {
                    journal,
                    begin: offset,
                    end: None,
                };
                handle.spawn(pump(client.clone(), read, config.clone(), tx.clone()))
            })
            .collect();
        Ok(ReadCommitted {
            client,
            config,
            sequencer,
            rx,
            readers,
            replay: None,
            replay_channel_size: channel_size,
        })
    }

    /// The next committed envelope (ACKs included). Cancel-safe.
    pub async fn next(&mut self) -> Result<Envelope, ReadError> {
        loop {
            match self.sequencer.step()? {
                Step::Message(env) => return Ok(env),
                Step::NeedReplay => {
                    let replay = match &mut self.replay {
                        Some((rx, _)) => rx,
                        None => {
                            let Some(range) = self.sequencer.replay_range() else {
                                return Err(SequencerError::NotReplaying.into());
                            };
                            let (tx, rx) = mpsc::channel(self.replay_channel_size);
                            let read = Read {
                                journal: range.journal,
                                begin: range.begin,
                                end: Some(range.end),
                            };
                            let task = tokio::spawn(pump(
                                self.client.clone(),
                                read,
                                self.config.clone(),
                                tx,
                            ));
                            &mut self.replay.insert((rx, task)).0
                        }
                    };
                    match replay.recv().await {
                        Some(Item::Envelope(env)) => self.sequencer.push_replay(Some(env))?,
                        Some(Item::End) => {
                            self.replay = None;
                            self.sequencer.push_replay(None)?;
                        }
                        Some(Item::Error(err)) => return Err(err),
                        None => {
                            let journal = self
                                .sequencer
                                .replay_range()
                                .map(|r| r.journal.to_string())
                                .unwrap_or_default();
                            return Err(ReadError::ReaderStopped { journal });
                        }
                    }
                }
                Step::Idle if self.readers.is_empty() => std::future::pending::<()>().await,
                Step::Idle => match self.rx.recv().await {
                    Some(Item::Envelope(env)) => {
                        self.sequencer.queue_uncommitted(env)?;
                    }
                    Some(Item::Error(err)) => return Err(err),
                    Some(Item::End) | None => {
                        // Source readers never end on their own; they were
                        // aborted or panicked.
                        let journal = "a source journal".to_string();
                        return Err(ReadError::ReaderStopped { journal });
                    }
                },
            }
        }
    }

    /// Whether an uncommitted span began since the last checkpoint (an ACK
    /// is likely on its way). See [`Sequencer::has_pending`].
    pub fn has_pending(&self) -> bool {
        self.sequencer.has_pending()
    }

    /// A checkpoint of the sources (read-through offsets and producer
    /// states); its ACK intents and module are left empty for the caller.
    /// See [`Sequencer::checkpoint`].
    pub fn checkpoint(&mut self, prune_horizon: Duration) -> Checkpoint {
        Checkpoint {
            sources: self.sequencer.checkpoint(prune_horizon),
            ..Checkpoint::default()
        }
    }

    /// The sequencer (for inspection).
    pub fn sequencer(&self) -> &Sequencer {
        &self.sequencer
    }
}

impl Drop for ReadCommitted {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
        if let Some((_, task)) = &self.replay {
            task.abort();
        }
    }
}

/// A read of one journal from `begin`, to `end` if bounded (a replay) or
/// forever (blocking at the write head).
struct Read {
    journal: Arc<str>,
    begin: i64,
    end: Option<i64>,
}

/// Reads, decodes and sends envelopes until the channel closes, the bounded
/// read ends, or a permanent error (which is sent).
async fn pump(
    client: Arc<dyn JournalClient>,
    read: Read,
    config: ReaderConfig,
    tx: mpsc::Sender<Item>,
) {
    let item = match pump_inner(client.as_ref(), &read, &config, &tx).await {
        Ok(()) => Item::End,
        Err(err) => err.into_item(),
    };
    let _ = tx.send(item).await;
}

/// Why a pump stopped early.
enum Stop {
    /// The receiver is gone; nothing to report.
    Closed,
    Failed(ReadError),
}

impl Stop {
    fn into_item(self) -> Item {
        match self {
            Stop::Closed => Item::End,
            Stop::Failed(err) => Item::Error(err),
        }
    }
}

async fn pump_inner(
    client: &dyn JournalClient,
    read: &Read,
    config: &ReaderConfig,
    tx: &mpsc::Sender<Item>,
) -> Result<(), Stop> {
    let journal = read.journal.to_string();
    let broker = |source: BrokerError| {
        Stop::Failed(ReadError::Broker {
            journal: journal.clone(),
            source,
        })
    };
    let mut backoff = config.retry_backoff;
    let content_type: Arc<str> = loop {
        match content_type(client, &journal).await {
            Ok(content_type) => break Arc::from(content_type),
            Err(err) if err.is_transient() => {
                retry_sleep(&journal, &err, &mut backoff, config).await;
            }
            Err(err) => return Err(broker(err)),
        }
    };
    if &*content_type != NDJSON {
        return Err(Stop::Failed(ReadError::UnsupportedContentType {
            journal: journal.clone(),
            content_type: content_type.to_string(),
        }));
    }
    let decode = |source: FramingError| {
        Stop::Failed(ReadError::Decode {
            journal: journal.clone(),
            source,
        })
    };

    let mut decoder = LineDecoder::new(read.begin, config.max_line_bytes);
    let mut frames: Vec<Frame> = Vec::new();
    loop {
        // (Re)open from the start of the first incomplete line.
        let offset = decoder.line_offset();
        decoder = LineDecoder::new(offset, config.max_line_bytes);
        if read.end.is_some_and(|end| offset >= end) {
            return Ok(());
        }
        let request = ReadRequest {
            journal: journal.clone(),
            offset,
            block: read.end.is_none(),
            end_offset: read.end.unwrap_or(0),
        };
        let mut stream = match client.read(request).await {
            Ok(stream) => stream,
            Err(err) if err.is_transient() => {
                retry_sleep(&journal, &err, &mut backoff, config).await;
                continue;
            }
            Err(err) => return Err(broker(err)),
        };
        loop {
            match stream.next().await {
                Ok(Some(chunk)) => {
                    backoff = config.retry_backoff;
                    decoder
                        .decode(chunk.offset, &chunk.content, &mut frames)
                        .map_err(&decode)?;
                    for frame in frames.drain(..) {
                        let uuid = extract_uuid(&frame.line, frame.begin).map_err(&decode)?;
                        let (producer, clock, flags) = parse_uuid(&uuid);
                        let env = Envelope {
                            journal: read.journal.clone(),
                            begin: frame.begin,
                            end: frame.end,
                            uuid,
                            producer,
                            clock,
                            flags,
                            content_type: content_type.clone(),
                            doc: frame.line,
                        };
                        tx.send(Item::Envelope(env))
                            .await
                            .map_err(|_| Stop::Closed)?;
                    }
                }
                Ok(None) => {
                    if read.end.is_some() {
                        decoder.finish().map_err(&decode)?;
                        return Ok(());
                    }
                    // A blocking read ended (the broker is going away): reopen.
                    retry_sleep(
                        &journal,
                        &BrokerError::Unavailable("read ended".into()),
                        &mut backoff,
                        config,
                    )
                    .await;
                    break;
                }
                Err(err) if err.is_transient() => {
                    retry_sleep(&journal, &err, &mut backoff, config).await;
                    break;
                }
                Err(err) => return Err(broker(err)),
            }
        }
    }
}

async fn retry_sleep(
    journal: &str,
    err: &BrokerError,
    backoff: &mut Duration,
    config: &ReaderConfig,
) {
    tracing::warn!(journal, error = %err, backoff = ?*backoff, "read failed; retrying");
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(config.retry_backoff_max);
}

/// The `content-type` label of `journal` (ndjson if unlabeled).
async fn content_type(client: &dyn JournalClient, journal: &str) -> Result<String, BrokerError> {
    let include: LabelSet = [(crate::broker::spec::META_NAME, journal)]
        .into_iter()
        .collect();
    let selector = LabelSelector {
        include,
        exclude: LabelSet::new(),
    };
    let specs = client.list(&selector).await?;
    let spec = specs
        .into_iter()
        .find(|spec| spec.name == journal)
        .ok_or_else(|| BrokerError::JournalNotFound(journal.to_string()))?;
    Ok(spec
        .labels
        .get("content-type")
        .unwrap_or(NDJSON)
        .to_string())
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::message::publisher::Publisher;
    use crate::message::testing::{Fault, MemJournals};
    use crate::message::uuid::AtomicClock;
    use futures::FutureExt;
    use tokio::runtime::Handle;

    /// Turns a hang (a lost envelope) into a failure.
    async fn guard<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("test hung")
    }

    fn reader(
        journals: &Arc<MemJournals>,
        sources: &[(&str, i64)],
        cp: &Checkpoint,
        ring: usize,
    ) -> ReadCommitted {
        let sources = sources.iter().map(|(j, o)| (j.to_string(), *o)).collect();
        let config = ReaderConfig {
            retry_backoff: Duration::from_millis(1),
            ..ReaderConfig::default()
        };
        ReadCommitted::with_config(journals.clone(), sources, &cp.sources, ring, 16, config)
            .expect("reader")
    }

    fn publisher(journals: &Arc<MemJournals>) -> Publisher {
        Publisher::new(
            journals.clone(),
            Arc::new(AtomicClock::now()),
            Handle::current(),
        )
    }

    /// A short description of an envelope: `n3`, `m1` (from its document's
    /// `n` or `m` field) or `ack`.
    fn show(env: &Envelope) -> String {
        if env.is_ack() {
            return "ack".to_string();
        }
        let doc: serde_json::Value = serde_json::from_slice(&env.doc).expect("json doc");
        match (doc.get("n"), doc.get("m")) {
            (Some(n), _) => format!("n{n}"),
            (_, Some(m)) => format!("m{m}"),
            _ => panic!("unexpected document {doc}"),
        }
    }

    fn acknowledge(journals: &MemJournals, publisher: &Publisher) {
        for intent in publisher.build_ack_intents() {
            journals.write(&intent.journal, &intent.bytes);
        }
    }

    async fn publish(
        p: &Publisher,
        journal: &str,
        field: &str,
        range: std::ops::Range<u32>,
        committed: bool,
    ) {
        for i in range {
            let doc = format!("{{\"{field}\":{i}}}");
            if committed {
                p.publish_committed(journal, doc.as_bytes())
                    .expect("publish");
            } else {
                p.publish_uncommitted(journal, doc.as_bytes())
                    .expect("publish");
            }
        }
        p.flush().await.expect("flush");
    }

    async fn take(reader: &mut ReadCommitted, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(show(&reader.next().await.expect("next")));
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uncommitted_messages_appear_only_once_acknowledged() {
        guard(async {
            let journals = MemJournals::with_journals(&["a", "b"], 7);
            let txn = publisher(&journals);
            let marker = publisher(&journals);
            let mut reader = reader(&journals, &[("a", 0), ("b", 0)], &Checkpoint::default(), 64);

            // A retried append makes the batch land twice.
            journals.inject(Fault::LandThenFail(BrokerError::Unavailable(
                "lost reply".into(),
            )));
            publish(&txn, "a", "n", 0..5, false).await;
            publish(&marker, "a", "m", 0..1, true).await;
            // The committed marker comes first: the messages before it wait.
            assert_eq!(take(&mut reader, 1).await, ["m0"]);
            assert!(reader.has_pending());

            acknowledge(&journals, &txn);
            publish(&marker, "a", "m", 1..2, true).await;
            assert_eq!(
                take(&mut reader, 7).await,
                ["n0", "n1", "n2", "n3", "n4", "ack", "m1"]
            );
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_that_left_the_ring_is_replayed() {
        guard(async {
            let journals = MemJournals::with_journals(&["a"], 5);
            let txn = publisher(&journals);
            let other = publisher(&journals);
            let mut reader = reader(&journals, &[("a", 0)], &Checkpoint::default(), 2);
            publish(&txn, "a", "n", 0..6, false).await;
            publish(&other, "a", "m", 0..3, true).await;
            assert_eq!(take(&mut reader, 3).await, ["m0", "m1", "m2"]);
            acknowledge(&journals, &txn);
            publish(&other, "a", "m", 3..4, true).await;
            assert_eq!(
                take(&mut reader, 8).await,
                ["n0", "n1", "n2", "n3", "n4", "n5", "ack", "m3"]
            );
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resuming_from_a_mid_run_checkpoint_delivers_the_rest_exactly_once() {
        guard(async {
            let journals = MemJournals::with_journals(&["a"], 64);
            let txn = publisher(&journals);
            let other = publisher(&journals);
            publish(&txn, "a", "n", 0..6, false).await;
            acknowledge(&journals, &txn);
            publish(&other, "a", "m", 0..1, true).await;

            let mut first = reader(&journals, &[("a", 0)], &Checkpoint::default(), 64);
            assert_eq!(take(&mut first, 3).await, ["n0", "n1", "n2"]);
            let cp = first.checkpoint(Duration::from_secs(24 * 3600));
            drop(first);

            let offset = cp.sources["a"].read_through;
            let mut second = reader(&journals, &[("a", offset)], &cp, 64);
            assert_eq!(take(&mut second, 5).await, ["n3", "n4", "n5", "ack", "m0"]);
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn next_loses_nothing_when_cancelled() {
        guard(async {
            let journals = MemJournals::with_journals(&["a", "b"], 3);
            let txn = publisher(&journals);
            let other = publisher(&journals);
            // Ring of 2: every transaction is replayed.
            let mut reader = reader(&journals, &[("a", 0), ("b", 0)], &Checkpoint::default(), 2);
            let mut expected = Vec::new();
            for round in 0..5u32 {
                publish(&txn, "a", "n", round * 10..round * 10 + 8, false).await;
                publish(&other, "a", "m", round * 10..round * 10 + 3, true).await;
                acknowledge(&journals, &txn);
                expected.extend((round * 10..round * 10 + 3).map(|m| format!("m{m}")));
                expected.extend((round * 10..round * 10 + 8).map(|n| format!("n{n}")));
                expected.push("ack".to_string());
            }

            let mut got = Vec::new();
            let mut polls = 0u64;
            while got.len() < expected.len() {
                polls += 1;
                // Alternate between polling once and racing a ready branch.
                let env = if polls.is_multiple_of(2) {
                    reader.next().now_or_never()
                } else {
                    tokio::select! {
                        biased;
                        _ = tokio::task::yield_now() => None,
                        env = reader.next() => Some(env),
                    }
                };
                match env {
                    Some(env) => got.push(show(&env.expect("next"))),
                    None => tokio::task::yield_now().await,
                }
            }
            assert_eq!(got, expected);
            assert!(polls > got.len() as u64, "some polls were cancelled");
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_line_that_is_not_a_message_fails_with_its_journal_and_offset() {
        guard(async {
            let journals = MemJournals::with_journals(&["a"], 4);
            let good = "{\"UUID\":\"789abcde-3456-1012-8000-010203040506\",\"n\":1}\n";
            journals.write("a", good.as_bytes());
            journals.write("a", b"not json\n");
            let mut reader = reader(&journals, &[("a", 0)], &Checkpoint::default(), 8);
            assert_eq!(take(&mut reader, 1).await, ["n1"]);
            match reader.next().await {
                Err(ReadError::Decode {
                    journal,
                    source: FramingError::BadLine { offset, .. },
                }) => {
                    assert_eq!((journal.as_str(), offset), ("a", good.len() as i64));
                }
                other => panic!("{other:?}"),
            }
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unsupported_content_types_and_missing_journals_are_errors() {
        guard(async {
            let journals = MemJournals::with_journals(&["a"], 4);
            journals.set_content_type("a", "text/csv");
            let mut r = reader(&journals, &[("a", 0)], &Checkpoint::default(), 8);
            match r.next().await {
                Err(ReadError::UnsupportedContentType {
                    journal,
                    content_type,
                }) => {
                    assert_eq!((journal.as_str(), content_type.as_str()), ("a", "text/csv"));
                }
                other => panic!("{other:?}"),
            }
            let mut r = reader(&journals, &[("nope", 0)], &Checkpoint::default(), 8);
            match r.next().await {
                Err(ReadError::Broker {
                    journal,
                    source: BrokerError::JournalNotFound(_),
                }) => {
                    assert_eq!(journal, "nope");
                }
                other => panic!("{other:?}"),
            }
        })
        .await;
    }
}
