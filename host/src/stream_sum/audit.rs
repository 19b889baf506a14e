//! The stream-sum auditor: an independent check, at the end of a (chaos)
//! run, that every completed stream has exactly one committed sum and that
//! it is right.
//!
//! Gazette's chunker only checks the sums it waits for, so it misses a
//! second committed sum of a stream it already verified. [`audit`] reads
//! **every** chunk partition (the journals labelled
//! `app.gazette.dev/message-type=stream_sum.Chunk`) and the sums journal
//! ([`SUMS_JOURNAL`]) in full, as raw bytes from offset 0 to the write head,
//! and hands them to the [`audit_model`](super::audit_model), which decides
//! committed-ness on its own (not through weir's sequencer) and reports
//! anomalies in Jepsen's terms: lost, duplicated, wrong, aborted read (G1a),
//! sums of unknown or unfinished streams, and producer clock regressions.
//!
//! The [`AuditReport`] counts what was read (journals, bytes, chunk and sum
//! messages committed, uncommitted or delivered twice, streams completed or
//! not) and every anomaly by kind with its first few examples (stream, journal,
//! offset, expected vs found). It serializes to JSON and prints as a summary.
//!
//! ```no_run
//! # async fn demo(client: &dyn weir::broker::JournalClient) -> Result<(), weir::stream_sum::audit::AuditError> {
//! let report = weir::stream_sum::audit::audit(client).await?;
//! print!("{report}");
//! assert_eq!(report.anomalies(), 0, "the history is not exactly-once");
//! # Ok(()) }
//! ```
//!
//! The audit reads what is committed *now*: run it once writers have
//! stopped (and summers have drained), or sums still in flight count as
//! lost. Reads are non-blocking, so it ends at each journal's write head.

use std::fmt;

use serde::Serialize;

use super::SUMS_JOURNAL;
pub use super::audit_model::AuditLimits;
use super::audit_model::{AuditModel, JournalRole};
use crate::broker::protocol::{BrokerError, JournalClient, ReadRequest};
use crate::broker::spec::{LabelSelector, LabelSet};

/// The label that marks a journal's message type (Gazette's).
pub const MESSAGE_TYPE_LABEL: &str = "app.gazette.dev/message-type";
/// The message type of stream-sum's chunk partitions.
pub const CHUNK_MESSAGE_TYPE: &str = "stream_sum.Chunk";

/// Why an audit could not run to the end (anomalies are not errors: they
/// are in the report).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Listing the chunk partitions failed.
    #[error("listing the chunk journals ({MESSAGE_TYPE_LABEL}={CHUNK_MESSAGE_TYPE})")]
    List(#[source] BrokerError),
    /// Reading a journal failed.
    #[error("reading journal {journal}")]
    Read {
        /// The journal.
        journal: String,
        /// The broker's error.
        #[source]
        source: BrokerError,
    },
    /// The model's final pass stopped (it panicked on its blocking thread).
    #[error("the audit's final pass did not complete: {0}")]
    Aborted(String),
}

impl AuditError {
    /// Whether running the audit again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            AuditError::List(source) | AuditError::Read { source, .. } => source.is_transient(),
            AuditError::Aborted(_) => false,
        }
    }
}

/// The kinds of anomaly the auditor reports (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnomalyKind {
    /// A completed stream without a committed sum.
    Lost,
    /// An extra committed sum of a stream.
    Duplicated,
    /// A committed sum that is not the completed stream's.
    Wrong,
    /// A committed sum of uncommitted chunks (G1a).
    AbortedRead,
    /// A committed sum of a stream without chunks.
    Unknown,
    /// A committed sum of a stream whose committed chunks are incomplete.
    Unfinished,
    /// A producer's committed clocks that do not increase.
    ClockRegression,
    /// A second committed chunk for a SeqNo.
    DuplicatedChunk,
    /// A line that does not parse, or a gap in a journal.
    Malformed,
}

impl AnomalyKind {
    /// Every kind, in report order.
    pub const ALL: [AnomalyKind; 9] = [
        AnomalyKind::Lost,
        AnomalyKind::Duplicated,
        AnomalyKind::Wrong,
        AnomalyKind::AbortedRead,
        AnomalyKind::Unknown,
        AnomalyKind::Unfinished,
        AnomalyKind::ClockRegression,
        AnomalyKind::DuplicatedChunk,
        AnomalyKind::Malformed,
    ];

    /// The kind's name in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::Lost => "lost",
            AnomalyKind::Duplicated => "duplicated",
            AnomalyKind::Wrong => "wrong",
            AnomalyKind::AbortedRead => "aborted_read",
            AnomalyKind::Unknown => "unknown",
            AnomalyKind::Unfinished => "unfinished",
            AnomalyKind::ClockRegression => "clock_regression",
            AnomalyKind::DuplicatedChunk => "duplicated_chunk",
            AnomalyKind::Malformed => "malformed",
        }
    }

    /// What the kind means, in Jepsen's words where Jepsen has them.
    pub fn meaning(self) -> &'static str {
        match self {
            AnomalyKind::Lost => "lost writes: completed streams with no committed sum",
            AnomalyKind::Duplicated => "duplicates: extra committed sums of one stream",
            AnomalyKind::Wrong => "wrong values: sums unlike the committed chunks' CRC-64",
            AnomalyKind::AbortedRead => "aborted reads (G1a): sums of uncommitted chunks",
            AnomalyKind::Unknown => "sums of streams no chunk mentions",
            AnomalyKind::Unfinished => "sums of streams whose committed chunks are incomplete",
            AnomalyKind::ClockRegression => "nonmonotonic producer clocks",
            AnomalyKind::DuplicatedChunk => "a SeqNo committed twice in one stream",
            AnomalyKind::Malformed => "unparseable lines or gaps in a journal",
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One described anomaly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnomalyExample {
    /// The stream, as hex, if the anomaly concerns one.
    pub stream: Option<String>,
    /// The journal where it shows.
    pub journal: String,
    /// The offset of the line concerned.
    pub offset: i64,
    /// What a correct history has there.
    pub expected: String,
    /// What was found.
    pub found: String,
}

/// The count of one kind of anomaly and its first examples.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AnomalyList {
    /// How many were found.
    pub count: u64,
    /// The first few, in the order found.
    pub examples: Vec<AnomalyExample>,
}

/// Anomalies by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Anomalies {
    /// See [`AnomalyKind::Lost`].
    pub lost: AnomalyList,
    /// See [`AnomalyKind::Duplicated`].
    pub duplicated: AnomalyList,
    /// See [`AnomalyKind::Wrong`].
    pub wrong: AnomalyList,
    /// See [`AnomalyKind::AbortedRead`].
    pub aborted_read: AnomalyList,
    /// See [`AnomalyKind::Unknown`].
    pub unknown: AnomalyList,
    /// See [`AnomalyKind::Unfinished`].
    pub unfinished: AnomalyList,
    /// See [`AnomalyKind::ClockRegression`].
    pub clock_regression: AnomalyList,
    /// See [`AnomalyKind::DuplicatedChunk`].
    pub duplicated_chunk: AnomalyList,
    /// See [`AnomalyKind::Malformed`].
    pub malformed: AnomalyList,
}

impl Anomalies {
    /// The list of one kind.
    pub fn get(&self, kind: AnomalyKind) -> &AnomalyList {
        match kind {
            AnomalyKind::Lost => &self.lost,
            AnomalyKind::Duplicated => &self.duplicated,
            AnomalyKind::Wrong => &self.wrong,
            AnomalyKind::AbortedRead => &self.aborted_read,
            AnomalyKind::Unknown => &self.unknown,
            AnomalyKind::Unfinished => &self.unfinished,
            AnomalyKind::ClockRegression => &self.clock_regression,
            AnomalyKind::DuplicatedChunk => &self.duplicated_chunk,
            AnomalyKind::Malformed => &self.malformed,
        }
    }

    pub(super) fn get_mut(&mut self, kind: AnomalyKind) -> &mut AnomalyList {
        match kind {
            AnomalyKind::Lost => &mut self.lost,
            AnomalyKind::Duplicated => &mut self.duplicated,
            AnomalyKind::Wrong => &mut self.wrong,
            AnomalyKind::AbortedRead => &mut self.aborted_read,
            AnomalyKind::Unknown => &mut self.unknown,
            AnomalyKind::Unfinished => &mut self.unfinished,
            AnomalyKind::ClockRegression => &mut self.clock_regression,
            AnomalyKind::DuplicatedChunk => &mut self.duplicated_chunk,
            AnomalyKind::Malformed => &mut self.malformed,
        }
    }

    /// Anomalies of every kind together.
    pub fn total(&self) -> u64 {
        AnomalyKind::ALL.iter().map(|k| self.get(*k).count).sum()
    }

    /// The kinds found, with their counts, in report order.
    pub fn found(&self) -> Vec<(AnomalyKind, u64)> {
        AnomalyKind::ALL
            .iter()
            .map(|k| (*k, self.get(*k).count))
            .filter(|(_, count)| *count > 0)
            .collect()
    }
}

/// How the messages of one type fared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MessageCounts {
    /// Delivered by read-committed readers.
    pub committed: u64,
    /// Rolled back, still pending at the journal's end, or dropped as a
    /// clock regression: never delivered.
    pub uncommitted: u64,
    /// Repeats of a message already read (retried appends), dropped.
    pub duplicate_deliveries: u64,
}

/// What the auditor found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditReport {
    /// Journals read (chunk partitions and the sums journal).
    pub journals_read: u64,
    /// Bytes read from them.
    pub bytes_read: u64,
    /// Chunk messages (documents of the chunk partitions, ACKs aside).
    pub chunk_messages: MessageCounts,
    /// Sum messages (documents of the sums journal, ACKs aside).
    pub sum_messages: MessageCounts,
    /// Streams whose committed chunks are complete.
    pub streams_completed: u64,
    /// Streams with chunks that are not complete (uncommitted ones count).
    pub streams_unfinished: u64,
    /// Committed sums (every one, right or not).
    pub sums_committed: u64,
    /// Every anomaly, by kind.
    pub by_kind: Anomalies,
}

impl AuditReport {
    /// Anomalies of every kind together: 0 for a valid history.
    pub fn anomalies(&self) -> u64 {
        self.by_kind.total()
    }
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = |c: &MessageCounts| {
            format!(
                "{} committed, {} uncommitted, {} duplicate deliveries",
                c.committed, c.uncommitted, c.duplicate_deliveries
            )
        };
        writeln!(
            f,
            "stream-sum audit: {} journals, {} bytes read",
            self.journals_read, self.bytes_read
        )?;
        writeln!(f, "  chunk messages  {}", counts(&self.chunk_messages))?;
        writeln!(f, "  sum messages    {}", counts(&self.sum_messages))?;
        writeln!(
            f,
            "  streams         {} completed, {} unfinished; {} committed sums",
            self.streams_completed, self.streams_unfinished, self.sums_committed
        )?;
        let total = self.anomalies();
        writeln!(
            f,
            "  valid?          {} ({total} anomalies)",
            if total == 0 { "true" } else { "false" }
        )?;
        for kind in AnomalyKind::ALL {
            let list = self.by_kind.get(kind);
            writeln!(
                f,
                "    {:<17} {:>8}  {}",
                kind.name(),
                list.count,
                kind.meaning()
            )?;
        }
        for kind in AnomalyKind::ALL {
            let list = self.by_kind.get(kind);
            if list.examples.is_empty() {
                continue;
            }
            writeln!(
                f,
                "  {kind}: first {} of {}",
                list.examples.len(),
                list.count
            )?;
            for example in &list.examples {
                let stream = example
                    .stream
                    .as_deref()
                    .map(|s| format!("stream {s} "))
                    .unwrap_or_default();
                writeln!(
                    f,
                    "    {stream}at {}:{}: expected {}; found {}",
                    example.journal, example.offset, example.expected, example.found
                )?;
            }
        }
        Ok(())
    }
}
/// Audits the stream-sum journals reachable through `client`: every chunk
/// partition, then the sums journal, each read in full.
pub async fn audit(client: &dyn JournalClient) -> Result<AuditReport, AuditError> {
    audit_with(client, AuditLimits::default()).await
}

/// [`audit`] with explicit limits.
pub async fn audit_with(
    client: &dyn JournalClient,
    limits: AuditLimits,
) -> Result<AuditReport, AuditError> {
    let mut include = LabelSet::new();
    include.insert(MESSAGE_TYPE_LABEL, CHUNK_MESSAGE_TYPE);
    let selector = LabelSelector {
        include,
        exclude: LabelSet::new(),
    };
    let partitions = client.list(&selector).await.map_err(AuditError::List)?;

    let mut model = AuditModel::new(limits);
    for spec in &partitions {
        read_journal(client, &mut model, &spec.name, JournalRole::Chunks).await?;
    }
    read_journal(client, &mut model, SUMS_JOURNAL, JournalRole::Sums).await?;
    // Sorting and checking every stream is CPU work proportional to the
    // run: keep it off the async workers.
    tokio::task::spawn_blocking(move || model.finish())
        .await
        .map_err(|err| AuditError::Aborted(err.to_string()))
}

/// Feeds `journal` from offset 0 to its current write head into `model`.
async fn read_journal(
    client: &dyn JournalClient,
    model: &mut AuditModel,
    journal: &str,
    role: JournalRole,
) -> Result<(), AuditError> {
    let failed = |source| AuditError::Read {
        journal: journal.to_string(),
        source,
    };
    let mut stream = client
        .read(ReadRequest {
            journal: journal.to_string(),
            offset: 0,
            block: false,
            end_offset: 0,
        })
        .await
        .map_err(failed)?;
    let mut feed = model.journal(journal, role);
    while let Some(chunk) = stream.next().await.map_err(failed)? {
        feed.push(chunk.offset, &chunk.content);
    }
    feed.finish();
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::broker::protocol::{AppendRequest, JournalChange};
    use crate::broker::spec::JournalSpec;
    use crate::broker::{Broker, BrokerConfig};
    use crate::message::uuid::{AtomicClock, Flags, ProducerId, build_uuid};
    use crate::stream_sum::sum::{Chunk, Sum, crc64_update};

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        let mut set = LabelSet::new();
        for (name, value) in pairs {
            set.insert(*name, *value);
        }
        set
    }

    async fn append_docs(broker: &Broker, journal: &str, docs: &[(Flags, Vec<u8>)]) {
        let clock = AtomicClock::now();
        let producer = ProducerId::random();
        let mut content = Vec::new();
        for (flags, doc) in docs {
            let uuid = build_uuid(producer, clock.tick(), *flags);
            crate::message::frame(doc, &uuid, &mut content).unwrap();
        }
        broker
            .append(AppendRequest {
                journal: journal.into(),
                content: content.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn audit_reads_every_labelled_partition_and_the_sums_journal() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(dir.path(), BrokerConfig::default())
            .await
            .unwrap();
        let chunk_labels = labels(&[
            ("content-type", "application/x-ndjson"),
            (MESSAGE_TYPE_LABEL, CHUNK_MESSAGE_TYPE),
        ]);
        broker
            .apply(vec![
                JournalChange::Upsert(
                    JournalSpec::new("chunks/part-000").with_labels(chunk_labels.clone()),
                ),
                JournalChange::Upsert(
                    JournalSpec::new("chunks/part-001").with_labels(chunk_labels),
                ),
                // Not a chunk partition: never read.
                JournalChange::Upsert(JournalSpec::new("other/journal")),
                JournalChange::Upsert(JournalSpec::new(SUMS_JOURNAL)),
            ])
            .await
            .unwrap();
        let (a, b) = ([1u8; 16], [2u8; 16]);
        append_docs(
            &broker,
            "chunks/part-000",
            &[
                (Flags::OutsideTxn, Chunk::to_json(&a, 1, b"battery")),
                (Flags::OutsideTxn, Chunk::to_json(&a, 2, b"")),
            ],
        )
        .await;
        append_docs(
            &broker,
            "chunks/part-001",
            &[(Flags::OutsideTxn, Chunk::to_json(&b, 1, b""))],
        )
        .await;
        broker
            .append(AppendRequest {
                journal: "other/journal".into(),
                content: "not json at all\n".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let sum_a = Sum {
            id: a,
            seq_no: 2,
            value: crc64_update(0, b"battery"),
        };
        // Stream b's sum is published twice, in two committed transactions.
        let sum_b = Sum {
            id: b,
            seq_no: 1,
            value: 0,
        };
        append_docs(
            &broker,
            SUMS_JOURNAL,
            &[
                (Flags::ContinueTxn, sum_a.to_json()),
                (Flags::ContinueTxn, sum_b.to_json()),
                (Flags::AckTxn, b"{}".to_vec()),
            ],
        )
        .await;
        append_docs(
            &broker,
            SUMS_JOURNAL,
            &[(Flags::OutsideTxn, sum_b.to_json())],
        )
        .await;

        let report = audit(&broker).await.unwrap();
        broker.shutdown().await;
        assert_eq!(report.journals_read, 3);
        assert_eq!(report.chunk_messages.committed, 3);
        assert_eq!(report.streams_completed, 2);
        assert_eq!(report.sums_committed, 3);
        assert_eq!(report.by_kind.found(), vec![(AnomalyKind::Duplicated, 1)]);
        assert_eq!(report.anomalies(), 1);
    }

    #[tokio::test]
    async fn a_missing_sums_journal_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(dir.path(), BrokerConfig::default())
            .await
            .unwrap();
        let err = audit(&broker).await.unwrap_err();
        broker.shutdown().await;
        assert!(
            matches!(&err, AuditError::Read { journal, .. } if journal == SUMS_JOURNAL),
            "{err:?}"
        );
        assert!(!err.is_transient());
    }
}
