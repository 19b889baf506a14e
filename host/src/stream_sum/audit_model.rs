//! The stream-sum auditor's model: from the raw lines of the chunk
//! partitions and the sums journal, which messages are committed, what each
//! stream's final sum must be, and every way the committed sums depart from
//! it, named as Jepsen names them.
//!
//! It is pure (no I/O: [`audit`](super::audit) reads the journals, feeds
//! it, and defines the [`AuditReport`] it returns) and deliberately
//! **independent of the code it audits**: it does not use weir's sequencer
//! or read-committed reader, nor the summer's CRC helper. It decodes message
//! UUIDs with [`parse_uuid`] (decoding, not sequencing) and implements
//! Gazette's read-committed rules afresh.
//!
//! # Committed-ness (Gazette's read-committed contract)
//!
//! Per journal and per producer, in journal order, with `last` the clock of
//! the producer's last committed message or ACK (a producer's first message
//! starts `last` just below its own clock) and `max` its highest clock seen:
//!
//! - **OUTSIDE_TXN** commits at once. A pending span of the same producer is
//!   rolled back (Gazette treats mixing modes as a rollback).
//! - **CONTINUE_TXN** is *pending* until an ACK decides it.
//! - **ACK_TXN** with clock `a > last` commits the pending messages with
//!   clock ≤ `a`, in journal order, and rolls back (discards) those with a
//!   larger clock. `a == last` (a recovered primary re-appending the last
//!   ACK) rolls back everything pending. `a < last` also rolls back and
//!   resets `last` to `a`, as Gazette does, but it means a producer's
//!   checkpoint went backwards (Gazette logs "loss of exactly-once"), so it
//!   is a `clock_regression`.
//! - A message whose clock is ≤ `last` (or, for CONTINUE_TXN, ≤ `max`) is
//!   dropped, as Gazette drops it. If the producer already wrote the **same
//!   bytes** with that clock it is a *duplicate delivery* (a retried append)
//!   and no anomaly; a *different* message there means the producer's clocks
//!   did not increase, a `clock_regression` (Gazette would silently drop it).
//! - A message with clock 0 (no UUID clock) commits at once, undeduplicated.
//! - Messages still pending when a journal ends are uncommitted.
//!
//! # Expectations and anomalies
//!
//! Committed chunks of a stream (from any partition) are ordered by SeqNo.
//! The stream is **completed** if they are exactly SeqNo `1..=n` with the
//! final (empty-data) chunk at `n`; its expected sum is SeqNo `n` and the
//! CRC-64/XZ of the data chunks in order. Every committed sum is then
//! checked against its stream:
//!
//! | kind | meaning |
//! |---|---|
//! | `lost` | a completed stream has no committed sum |
//! | `duplicated` | a stream has more than one committed sum (each extra one counts) |
//! | `wrong` | a committed sum's SeqNo or Value is not the completed stream's |
//! | `aborted_read` | G1a: a committed sum of uncommitted chunks: its stream is not completed but its final chunk exists uncommitted, or its value is what reading the uncommitted chunks too gives |
//! | `unknown` | a committed sum of a stream with no chunks at all |
//! | `unfinished` | a committed sum of a stream whose committed chunks are not complete, and no uncommitted chunk explains it |
//! | `clock_regression` | a producer's committed clocks do not increase in journal order (see above) |
//! | `duplicated_chunk` | a second committed chunk with a SeqNo the stream already has |
//! | `malformed` | a line that does not parse (or a gap in a journal's content) |
//!
//! ACK documents carry no data and are only sequenced. Nothing here panics
//! on bad input: every defect is counted and, for the first
//! [`AuditLimits::examples`] of each kind, described.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use base64::Engine as _;
use serde::Deserialize;

use super::audit::{Anomalies, AnomalyExample, AnomalyKind, AuditReport, MessageCounts};
use crate::limits;
use crate::message::uuid::{Flags, ProducerId, parse_uuid};
use crate::stream_sum::sum::{StreamId, hex};

/// CRC-64/XZ (Go's `crc64.ECMA`), digested over a whole stream rather than
/// chained through the summer's helper, so a bug there shows up here.
static CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);

/// Bounds on what the model buffers and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditLimits {
    /// Longest line parsed, in bytes; a longer one is `malformed`.
    pub max_line_bytes: usize,
    /// Examples kept per anomaly kind (the counts cover all of them).
    pub examples: usize,
}

impl Default for AuditLimits {
    fn default() -> Self {
        AuditLimits {
            max_line_bytes: limits::DEFAULT_AUDIT_MAX_LINE_BYTES,
            examples: limits::DEFAULT_AUDIT_EXAMPLES,
        }
    }
}

/// What a journal holds, which decides how its documents parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalRole {
    /// A chunk partition: `{"UUID","ID","SeqNo","Data"}`.
    Chunks,
    /// The sums journal: `{"UUID","ID","SeqNo","Value"}`.
    Sums,
}

/// Where a line is: journal index and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct At {
    journal: u32,
    offset: i64,
}

/// A chunk's content: its stream, SeqNo and data (empty for the final chunk).
#[derive(Debug, Clone)]
struct ChunkDoc {
    id: StreamId,
    seq_no: u64,
    data: Vec<u8>,
}

/// A sum's content.
#[derive(Debug, Clone, Copy)]
struct SumDoc {
    id: StreamId,
    seq_no: u64,
    value: u64,
}

/// A non-ACK document's content, or nothing for ACKs and unparseable bodies.
#[derive(Debug, Clone)]
enum Payload {
    Chunk(ChunkDoc),
    Sum(SumDoc),
    None,
}

/// A sequenced message.
#[derive(Debug, Clone)]
struct Message {
    clock: u64,
    hash: u64,
    at: At,
    payload: Payload,
}

/// A committed sum and where it is.
#[derive(Debug, Clone, Copy)]
struct SumRecord {
    seq_no: u64,
    value: u64,
    at: At,
}

/// The expected final sum of a completed stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Final {
    seq_no: u64,
    value: u64,
    at: At,
}

/// What committing a chunk did to its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkOutcome {
    /// Folded in, or held until the chunks before it arrive.
    Accepted,
    /// The stream already has a committed chunk with this SeqNo: a second
    /// message carrying it got past de-duplication (the summer would fail).
    Repeated,
}

/// What the chunks say about one stream.
struct StreamState {
    /// Highest SeqNo folded: committed chunks `1..=folded` are in `digest`.
    folded: u64,
    digest: crc::Digest<'static, u64>,
    /// Set once the final chunk was folded.
    last: Option<Final>,
    /// Committed chunks beyond a gap (or after the final chunk), by SeqNo.
    ahead: BTreeMap<u64, (Vec<u8>, At)>,
    committed: u64,
    uncommitted: u64,
    uncommitted_final: bool,
    /// The same fold over every chunk line as read, committed or not: what a
    /// read-uncommitted summer would publish.
    raw_folded: u64,
    raw_digest: crc::Digest<'static, u64>,
    raw_final: Option<(u64, u64)>,
}

impl StreamState {
    fn new() -> StreamState {
        StreamState {
            folded: 0,
            digest: CRC64.digest(),
            last: None,
            ahead: BTreeMap::new(),
            committed: 0,
            uncommitted: 0,
            uncommitted_final: false,
            raw_folded: 0,
            raw_digest: CRC64.digest(),
            raw_final: None,
        }
    }

    /// The expected sum, if the committed chunks are complete.
    fn completed(&self) -> Option<Final> {
        self.last.filter(|_| self.ahead.is_empty())
    }

    /// Folds a committed chunk in, or holds it until the gap before it fills.
    fn commit(&mut self, seq_no: u64, data: Vec<u8>, at: At) -> ChunkOutcome {
        if seq_no <= self.folded || self.ahead.contains_key(&seq_no) {
            return ChunkOutcome::Repeated;
        }
        self.committed += 1;
        if self.last.is_some() || seq_no != self.folded + 1 {
            self.ahead.insert(seq_no, (data, at));
            return ChunkOutcome::Accepted;
        }
        self.fold(seq_no, &data, at);
        while self.last.is_none() {
            match self.ahead.remove(&(self.folded + 1)) {
                Some((next, next_at)) => self.fold(self.folded + 1, &next, next_at),
                None => break,
            }
        }
        ChunkOutcome::Accepted
    }

    fn fold(&mut self, seq_no: u64, data: &[u8], at: At) {
        self.folded = seq_no;
        if data.is_empty() {
            self.last = Some(Final {
                seq_no,
                value: self.digest.clone().finalize(),
                at,
            });
        } else {
            self.digest.update(data);
        }
    }

    fn raw(&mut self, seq_no: u64, data: &[u8]) {
        if self.raw_final.is_some() || seq_no != self.raw_folded + 1 {
            return;
        }
        self.raw_folded = seq_no;
        if data.is_empty() {
            self.raw_final = Some((seq_no, self.raw_digest.clone().finalize()));
        } else {
            self.raw_digest.update(data);
        }
    }
}

/// One producer's read-committed state in one journal.
struct ProducerState {
    /// Clock of the last committed message or ACK.
    last: u64,
    /// Highest clock accepted (pending or committed).
    max: u64,
    /// CONTINUE_TXN messages awaiting an ACK, in journal (and clock) order.
    pending: Vec<Message>,
    /// `(clock, hash of the line)` of every message accepted, by clock: a
    /// stale clock is a duplicate delivery only if its bytes are here.
    seen: Vec<(u64, u64)>,
}

impl ProducerState {
    fn new(first_clock: u64) -> ProducerState {
        let before = first_clock.saturating_sub(1);
        ProducerState {
            last: before,
            max: before,
            pending: Vec::new(),
            seen: Vec::new(),
        }
    }

    fn remember(&mut self, clock: u64, hash: u64) {
        // Accepted clocks increase, so this is almost always a push.
        let at = self.seen.partition_point(|(c, _)| *c <= clock);
        self.seen.insert(at, (clock, hash));
    }

    fn saw(&self, clock: u64, hash: u64) -> bool {
        let from = self.seen.partition_point(|(c, _)| *c < clock);
        self.seen[from..]
            .iter()
            .take_while(|(c, _)| *c == clock)
            .any(|(_, h)| *h == hash)
    }
}

/// The auditor's state across all journals. Feed each journal through
/// [`journal`](Self::journal), in any order, then [`finish`](Self::finish).
pub struct AuditModel {
    limits: AuditLimits,
    journals: Vec<String>,
    bytes: u64,
    chunk_messages: MessageCounts,
    sum_messages: MessageCounts,
    streams: HashMap<StreamId, StreamState>,
    sums: HashMap<StreamId, Vec<SumRecord>>,
    anomalies: Anomalies,
}

impl AuditModel {
    /// An empty model.
    pub fn new(limits: AuditLimits) -> AuditModel {
        AuditModel {
            limits,
            journals: Vec::new(),
            bytes: 0,
            chunk_messages: MessageCounts::default(),
            sum_messages: MessageCounts::default(),
            streams: HashMap::new(),
            sums: HashMap::new(),
            anomalies: Anomalies::default(),
        }
    }

    /// Starts a journal read from offset 0; push its bytes in order, then
    /// [`finish`](JournalFeed::finish) it.
    pub fn journal(&mut self, name: &str, role: JournalRole) -> JournalFeed<'_> {
        let journal = u32::try_from(self.journals.len()).unwrap_or(u32::MAX);
        self.journals.push(name.to_string());
        JournalFeed {
            model: self,
            journal,
            role,
            next_offset: 0,
            line: Vec::new(),
            line_offset: 0,
            overlong: false,
            producers: HashMap::new(),
        }
    }

    /// Feeds a whole journal's content (from offset 0) at once.
    pub fn add_journal(&mut self, name: &str, role: JournalRole, content: &[u8]) {
        let mut feed = self.journal(name, role);
        feed.push(0, content);
        feed.finish();
    }

    fn journal_name(&self, journal: u32) -> String {
        self.journals
            .get(journal as usize)
            .cloned()
            .unwrap_or_default()
    }

    fn anomaly(
        &mut self,
        kind: AnomalyKind,
        stream: Option<&StreamId>,
        at: At,
        expected: String,
        found: String,
    ) {
        let examples = self.limits.examples;
        let journal = self.journal_name(at.journal);
        let list = self.anomalies.get_mut(kind);
        list.count += 1;
        if list.examples.len() < examples {
            list.examples.push(AnomalyExample {
                stream: stream.map(hex),
                journal,
                offset: at.offset,
                expected,
                found,
            });
        }
    }

    fn committed(&mut self, message: Message) {
        match message.payload {
            Payload::Chunk(chunk) => {
                self.chunk_messages.committed += 1;
                let stream = self
                    .streams
                    .entry(chunk.id)
                    .or_insert_with(StreamState::new);
                let outcome = stream.commit(chunk.seq_no, chunk.data, message.at);
                if outcome == ChunkOutcome::Repeated {
                    self.anomaly(
                        AnomalyKind::DuplicatedChunk,
                        Some(&chunk.id),
                        message.at,
                        format!("one committed chunk with SeqNo {}", chunk.seq_no),
                        "another committed chunk with that SeqNo".into(),
                    );
                }
            }
            Payload::Sum(sum) => {
                self.sum_messages.committed += 1;
                self.sums.entry(sum.id).or_default().push(SumRecord {
                    seq_no: sum.seq_no,
                    value: sum.value,
                    at: message.at,
                });
            }
            Payload::None => {}
        }
    }

    fn uncommitted(&mut self, message: Message) {
        match message.payload {
            Payload::Chunk(chunk) => {
                self.chunk_messages.uncommitted += 1;
                let stream = self
                    .streams
                    .entry(chunk.id)
                    .or_insert_with(StreamState::new);
                stream.uncommitted += 1;
                stream.uncommitted_final |= chunk.data.is_empty();
            }
            Payload::Sum(_) => self.sum_messages.uncommitted += 1,
            Payload::None => {}
        }
    }

    fn duplicate(&mut self, message: &Message) {
        match message.payload {
            Payload::Chunk(_) => self.chunk_messages.duplicate_deliveries += 1,
            Payload::Sum(_) => self.sum_messages.duplicate_deliveries += 1,
            Payload::None => {}
        }
    }

    /// Checks every committed sum against its stream and returns the report.
    pub fn finish(mut self) -> AuditReport {
        let mut ids: Vec<StreamId> = self
            .streams
            .keys()
            .chain(self.sums.keys())
            .copied()
            .collect();
        // Sorted so that the report (and its examples) is deterministic.
        ids.sort_unstable();
        ids.dedup();
        let (mut completed, mut unfinished, mut sums_committed) = (0, 0, 0);
        let sums = std::mem::take(&mut self.sums);
        let streams = std::mem::take(&mut self.streams);
        for id in &ids {
            let stream = streams.get(id);
            let expected = stream.and_then(StreamState::completed);
            let sums = sums.get(id).map(Vec::as_slice).unwrap_or_default();
            match (stream, expected) {
                (Some(_), Some(_)) => completed += 1,
                (Some(_), None) => unfinished += 1,
                (None, _) => {}
            }
            if let (Some(expected), true) = (expected, sums.is_empty()) {
                self.anomaly(
                    AnomalyKind::Lost,
                    Some(id),
                    expected.at,
                    format!(
                        "a committed sum (SeqNo {}, Value {:#018x}) for this final chunk",
                        expected.seq_no, expected.value
                    ),
                    "none".into(),
                );
            }
            sums_committed += sums.len() as u64;
            for (index, sum) in sums.iter().enumerate() {
                let found = format!("SeqNo {}, Value {:#018x}", sum.seq_no, sum.value);
                if let Some(first) = sums.first().filter(|_| index > 0) {
                    let expected = format!(
                        "one committed sum (the first at {}:{})",
                        self.journal_name(first.at.journal),
                        first.at.offset
                    );
                    let found = format!("committed sum #{}: {found}", index + 1);
                    self.anomaly(AnomalyKind::Duplicated, Some(id), sum.at, expected, found);
                }
                if let Some((kind, expected)) = classify(stream, sum) {
                    self.anomaly(kind, Some(id), sum.at, expected, found);
                }
            }
        }
        AuditReport {
            journals_read: self.journals.len() as u64,
            bytes_read: self.bytes,
            chunk_messages: self.chunk_messages,
            sum_messages: self.sum_messages,
            streams_completed: completed,
            streams_unfinished: unfinished,
            sums_committed,
            by_kind: self.anomalies,
        }
    }
}

/// What is wrong with a committed sum, if anything, and what was expected.
fn classify(stream: Option<&StreamState>, sum: &SumRecord) -> Option<(AnomalyKind, String)> {
    let Some(stream) = stream else {
        return Some((AnomalyKind::Unknown, "no sum: no chunk has this ID".into()));
    };
    // Reading uncommitted chunks too gives this very sum.
    let read_uncommitted =
        stream.uncommitted > 0 && stream.raw_final == Some((sum.seq_no, sum.value));
    match stream.completed() {
        Some(expected) if (expected.seq_no, expected.value) == (sum.seq_no, sum.value) => None,
        Some(expected) => {
            let expected = format!(
                "SeqNo {}, Value {:#018x} (the committed chunks')",
                expected.seq_no, expected.value
            );
            if read_uncommitted {
                Some((AnomalyKind::AbortedRead, expected))
            } else {
                Some((AnomalyKind::Wrong, expected))
            }
        }
        None if read_uncommitted || stream.uncommitted_final => Some((
            AnomalyKind::AbortedRead,
            format!(
                "no sum: the committed chunks are incomplete and {} ({} uncommitted chunks)",
                if stream.uncommitted_final {
                    "the final chunk is uncommitted"
                } else {
                    "the sum is of uncommitted ones"
                },
                stream.uncommitted
            ),
        )),
        None => Some((
            AnomalyKind::Unfinished,
            format!(
                "no sum: committed chunks 1..={} then {} more beyond a gap, {}",
                stream.folded,
                stream.ahead.len(),
                if stream.last.is_some() {
                    "final chunk committed"
                } else {
                    "no final chunk"
                }
            ),
        )),
    }
}

/// One line of either journal: the union of the chunk and sum shapes.
/// Unknown fields are ignored, as Go's decoder ignores them.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "UUID", borrow)]
    uuid: std::borrow::Cow<'a, str>,
    #[serde(rename = "ID", default)]
    id: Option<StreamId>,
    #[serde(rename = "SeqNo", default)]
    seq_no: Option<u64>,
    #[serde(rename = "Data", default, borrow)]
    data: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "Value", default)]
    value: Option<u64>,
}

impl Line<'_> {
    fn chunk(&self) -> Result<ChunkDoc, String> {
        let (Some(id), Some(seq_no)) = (self.id, self.seq_no) else {
            return Err("a chunk without ID or SeqNo".into());
        };
        if seq_no == 0 {
            return Err("a chunk with SeqNo 0 (SeqNos start at 1)".into());
        }
        let data = match &self.data {
            None => Vec::new(),
            Some(text) => base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|err| format!("chunk Data is not base64: {err}"))?,
        };
        Ok(ChunkDoc { id, seq_no, data })
    }

    fn sum(&self) -> Result<SumDoc, String> {
        match (self.id, self.seq_no, self.value) {
            (Some(id), Some(seq_no), Some(value)) => Ok(SumDoc { id, seq_no, value }),
            _ => Err("a sum without ID, SeqNo or Value".into()),
        }
    }
}

/// Reads one journal into an [`AuditModel`]: splits its bytes into lines and
/// runs each producer's read-committed state machine.
pub struct JournalFeed<'m> {
    model: &'m mut AuditModel,
    journal: u32,
    role: JournalRole,
    /// Offset the next pushed byte should have.
    next_offset: i64,
    /// The start of a line split across pushes.
    line: Vec<u8>,
    line_offset: i64,
    /// Skipping the rest of a line already reported too long.
    overlong: bool,
    producers: HashMap<ProducerId, ProducerState>,
}

impl JournalFeed<'_> {
    /// Feeds the journal's bytes at `offset`. Pushes are expected in order
    /// and contiguous; a jump is reported `malformed` and reading goes on.
    pub fn push(&mut self, offset: i64, bytes: &[u8]) {
        if offset != self.next_offset {
            self.discontinuity(offset);
        }
        self.model.bytes += bytes.len() as u64;
        let max = self.model.limits.max_line_bytes;
        let mut rest = bytes;
        let mut at = offset;
        while !rest.is_empty() {
            let Some(newline) = rest.iter().position(|b| *b == b'\n') else {
                if !self.overlong {
                    if self.line.len() + rest.len() > max {
                        self.too_long();
                        self.overlong = true;
                        self.line.clear();
                    } else {
                        self.line.extend_from_slice(rest);
                    }
                }
                at += rest.len() as i64;
                break;
            };
            let piece = &rest[..newline];
            if self.overlong {
                self.overlong = false;
            } else if self.line.len() + piece.len() > max {
                self.too_long();
                self.line.clear();
            } else if self.line.is_empty() {
                self.line_at(self.line_offset, piece);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(piece);
                self.line_at(self.line_offset, &line);
                line.clear();
                self.line = line;
            }
            at += newline as i64 + 1;
            self.line_offset = at;
            rest = &rest[newline + 1..];
        }
        self.next_offset = at;
    }

    /// Ends the journal: a trailing partial line is malformed and pending
    /// messages are uncommitted.
    pub fn finish(mut self) {
        if !self.line.is_empty() {
            let at = self.at(self.line_offset);
            self.model.anomaly(
                AnomalyKind::Malformed,
                None,
                at,
                "a line ending in a newline".into(),
                format!(
                    "{} bytes without a newline at the journal's end",
                    self.line.len()
                ),
            );
        }
        let producers = std::mem::take(&mut self.producers);
        for (_, state) in producers {
            for message in state.pending {
                self.model.uncommitted(message);
            }
        }
    }

    fn at(&self, offset: i64) -> At {
        At {
            journal: self.journal,
            offset,
        }
    }

    fn discontinuity(&mut self, offset: i64) {
        let at = self.at(self.next_offset);
        let found = if self.line.is_empty() && !self.overlong {
            format!("content resumes at {offset}")
        } else {
            format!("content resumes at {offset}, cutting a line short")
        };
        self.model.anomaly(
            AnomalyKind::Malformed,
            None,
            at,
            format!("contiguous content from {}", self.next_offset),
            found,
        );
        self.line.clear();
        self.overlong = false;
        self.line_offset = offset;
    }

    fn too_long(&mut self) {
        let at = self.at(self.line_offset);
        let max = self.model.limits.max_line_bytes;
        self.model.anomaly(
            AnomalyKind::Malformed,
            None,
            at,
            format!("a line of at most {max} bytes"),
            "a longer line".into(),
        );
    }

    fn malformed(&mut self, offset: i64, expected: &str, found: String) {
        let at = self.at(offset);
        let mut found = found;
        if found.len() > 200 {
            let cut = (0..=200).rev().find(|i| found.is_char_boundary(*i));
            found.truncate(cut.unwrap_or(0));
            found.push('…');
        }
        self.model
            .anomaly(AnomalyKind::Malformed, None, at, expected.into(), found);
    }

    /// Parses a complete line (without its newline) and sequences it.
    fn line_at(&mut self, offset: i64, line: &[u8]) {
        let doc: Line<'_> = match serde_json::from_slice(line) {
            Ok(doc) => doc,
            Err(err) => {
                return self.malformed(offset, "a JSON object with a UUID", err.to_string());
            }
        };
        let uuid = match uuid::Uuid::parse_str(&doc.uuid) {
            Ok(uuid) => uuid,
            Err(err) => return self.malformed(offset, "a UUID", format!("{:?}: {err}", doc.uuid)),
        };
        let (producer, clock, flags) = parse_uuid(&uuid);
        let payload = match (flags, self.role) {
            (Flags::AckTxn, _) => Ok(Payload::None),
            (_, JournalRole::Chunks) => doc.chunk().map(Payload::Chunk),
            (_, JournalRole::Sums) => doc.sum().map(Payload::Sum),
        };
        let payload = payload.unwrap_or_else(|reason| {
            // Still sequenced: its clock and flags affect its producer's state.
            self.malformed(offset, "a well-formed document", reason);
            Payload::None
        });
        if let Payload::Chunk(chunk) = &payload {
            self.model
                .streams
                .entry(chunk.id)
                .or_insert_with(StreamState::new)
                .raw(chunk.seq_no, &chunk.data);
        }
        let mut hasher = DefaultHasher::new();
        line.hash(&mut hasher);
        let message = Message {
            clock: clock.0,
            hash: hasher.finish(),
            at: self.at(offset),
            payload,
        };
        self.sequence(producer, flags, message);
    }

    fn sequence(&mut self, producer: ProducerId, flags: Flags, message: Message) {
        if message.clock == 0 {
            // No UUID clock: committed at once, at-least-once (Gazette).
            if flags != Flags::AckTxn {
                self.model.committed(message);
            }
            return;
        }
        let clock = message.clock;
        let state = self
            .producers
            .entry(producer)
            .or_insert_with(|| ProducerState::new(clock));
        match flags {
            Flags::OutsideTxn => {
                if clock <= state.last {
                    return self.stale(producer, flags, message);
                }
                let rolled_back = std::mem::take(&mut state.pending);
                state.last = clock;
                state.max = clock;
                state.remember(clock, message.hash);
                for pending in rolled_back {
                    self.model.uncommitted(pending);
                }
                self.model.committed(message);
            }
            Flags::ContinueTxn => {
                if clock <= state.max {
                    return self.stale(producer, flags, message);
                }
                state.max = clock;
                state.remember(clock, message.hash);
                state.pending.push(message);
            }
            Flags::AckTxn => {
                if clock <= state.last {
                    let regressed = clock < state.last || !state.saw(clock, message.hash);
                    let last = state.last;
                    let rolled_back = std::mem::take(&mut state.pending);
                    state.last = clock;
                    state.max = clock;
                    for pending in rolled_back {
                        self.model.uncommitted(pending);
                    }
                    if regressed {
                        let expected = if clock < last {
                            format!("an ACK clock ≥ {last:#x}, the producer's last commit")
                        } else {
                            format!("no other message with clock {clock:#x}")
                        };
                        self.regression(producer, flags, &message, expected);
                    }
                    return;
                }
                let pending = std::mem::take(&mut state.pending);
                state.last = clock;
                state.max = clock;
                state.remember(clock, message.hash);
                for pending in pending {
                    if pending.clock <= clock {
                        self.model.committed(pending);
                    } else {
                        self.model.uncommitted(pending);
                    }
                }
            }
        }
    }

    /// A message at or below its producer's clock: a retried append if its
    /// bytes were seen, else a clock regression. Either way it is dropped.
    fn stale(&mut self, producer: ProducerId, flags: Flags, message: Message) {
        let Some(state) = self.producers.get_mut(&producer) else {
            return;
        };
        if state.saw(message.clock, message.hash) {
            self.model.duplicate(&message);
            return;
        }
        state.remember(message.clock, message.hash);
        let expected = format!("a clock above {:#x}", state.max.max(state.last));
        self.regression(producer, flags, &message, expected);
        self.model.uncommitted(message);
    }

    fn regression(
        &mut self,
        producer: ProducerId,
        flags: Flags,
        message: &Message,
        expected: String,
    ) {
        let stream = match &message.payload {
            Payload::Chunk(chunk) => Some(chunk.id),
            Payload::Sum(sum) => Some(sum.id),
            Payload::None => None,
        };
        self.model.anomaly(
            AnomalyKind::ClockRegression,
            stream.as_ref(),
            message.at,
            format!("{expected} from producer {producer}"),
            format!("{flags} with clock {:#x}", message.clock),
        );
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::message::uuid::{Clock, build_uuid};
    use crate::stream_sum::sum::crc64_update;

    const CHUNKS: &str = "examples/stream-sum/chunks/part-000";
    const CHUNKS_1: &str = "examples/stream-sum/chunks/part-001";
    const SUMS: &str = "examples/stream-sum/sums";

    /// A journal line from `producer` (one byte, repeated) at `clock`.
    fn line(producer: u8, clock: u64, flags: Flags, body: &str) -> String {
        let uuid = build_uuid(ProducerId([producer; 6]), Clock(clock << 4), flags);
        if body.is_empty() {
            format!("{{\"UUID\":\"{uuid}\"}}\n")
        } else {
            format!("{{\"UUID\":\"{uuid}\",{body}}}\n")
        }
    }

    fn id(n: u8) -> StreamId {
        [n; 16]
    }

    fn chunk(stream: u8, seq_no: u64, data: &[u8]) -> String {
        let doc = String::from_utf8(crate::stream_sum::sum::Chunk::to_json(
            &id(stream),
            seq_no,
            data,
        ))
        .unwrap();
        doc.trim_start_matches('{')
            .trim_end_matches('}')
            .to_string()
    }

    fn sum(stream: u8, seq_no: u64, value: u64) -> String {
        let ids: Vec<String> = id(stream).iter().map(|b| b.to_string()).collect();
        format!(
            "\"ID\":[{}],\"SeqNo\":{seq_no},\"Value\":{value}",
            ids.join(",")
        )
    }

    /// The summer's value for `data` chunks: chained through its own helper,
    /// so these tests also check the model's whole-stream digest against it.
    fn value(data: &[&[u8]]) -> u64 {
        data.iter().fold(0, |v, d| crc64_update(v, d))
    }

    /// A stream's committed chunks (producer 1, OUTSIDE_TXN from `clock`):
    /// `data` chunks then the final one.
    fn stream_chunks(stream: u8, clock: u64, data: &[&[u8]]) -> String {
        let mut out = String::new();
        for (i, d) in data.iter().enumerate() {
            let seq = i as u64 + 1;
            out += &line(1, clock + seq, Flags::OutsideTxn, &chunk(stream, seq, d));
        }
        let seq = data.len() as u64 + 1;
        out += &line(1, clock + seq, Flags::OutsideTxn, &chunk(stream, seq, b""));
        out
    }

    /// A transaction of producer 9 in the sums journal committing `sums`.
    fn sums_txn(clock: u64, sums: &[(u8, u64, u64)]) -> String {
        let mut out = String::new();
        for (i, (stream, seq, value)) in sums.iter().enumerate() {
            out += &line(
                9,
                clock + i as u64,
                Flags::ContinueTxn,
                &sum(*stream, *seq, *value),
            );
        }
        out + &line(9, clock + sums.len() as u64, Flags::AckTxn, "")
    }

    fn audit(journals: &[(&str, JournalRole, String)]) -> AuditReport {
        let mut model = AuditModel::new(AuditLimits::default());
        for (name, role, content) in journals {
            model.add_journal(name, *role, content.as_bytes());
        }
        model.finish()
    }

    /// Counts of every kind, for exact comparisons.
    fn counts(report: &AuditReport) -> Vec<(&'static str, u64)> {
        report
            .by_kind
            .found()
            .into_iter()
            .map(|(kind, count)| (kind.name(), count))
            .collect()
    }

    fn clean_chunks() -> String {
        stream_chunks(1, 100, &[b"battery", b" horse"]) + &stream_chunks(2, 200, &[b"x"])
    }

    #[test]
    fn a_clean_history_has_no_anomalies_and_exact_counts() {
        let a = value(&[b"battery", b" horse"]);
        assert_eq!(a, 0xae76_3109_c119_2ed6);
        let b = value(&[b"x"]);
        let report = audit(&[
            (CHUNKS, JournalRole::Chunks, clean_chunks()),
            (
                SUMS,
                JournalRole::Sums,
                sums_txn(1000, &[(1, 3, a), (2, 2, b)]),
            ),
        ]);
        assert_eq!(counts(&report), vec![]);
        assert_eq!(report.anomalies(), 0);
        assert_eq!(report.journals_read, 2);
        assert_eq!(
            report.chunk_messages,
            MessageCounts {
                committed: 5,
                uncommitted: 0,
                duplicate_deliveries: 0
            }
        );
        assert_eq!(report.sum_messages.committed, 2);
        assert_eq!(
            (
                report.streams_completed,
                report.streams_unfinished,
                report.sums_committed
            ),
            (2, 0, 2)
        );
        let text = report.to_string();
        assert!(
            text.contains("valid?          true (0 anomalies)"),
            "{text}"
        );
    }

    #[test]
    fn a_second_committed_sum_of_a_stream_is_one_duplicate() {
        let a = value(&[b"battery", b" horse"]);
        let b = value(&[b"x"]);
        // A copy of stream 1's sum, committed by another producer.
        let extra = line(7, 5000, Flags::OutsideTxn, &sum(1, 3, a));
        let report = audit(&[
            (CHUNKS, JournalRole::Chunks, clean_chunks()),
            (
                SUMS,
                JournalRole::Sums,
                sums_txn(1000, &[(1, 3, a), (2, 2, b)]) + &extra,
            ),
        ]);
        assert_eq!(counts(&report), vec![("duplicated", 1)]);
        let example = &report.by_kind.duplicated.examples[0];
        assert_eq!(example.stream.as_deref(), Some(hex(&id(1)).as_str()));
        assert_eq!(example.journal, SUMS);
        assert_eq!(report.sums_committed, 3);
        assert!(
            report
                .to_string()
                .contains("valid?          false (1 anomalies)")
        );
    }

    #[test]
    fn a_wrong_value_and_a_wrong_seq_no_are_each_wrong() {
        let a = value(&[b"battery", b" horse"]);
        let b = value(&[b"x"]);
        let report = audit(&[
            (CHUNKS, JournalRole::Chunks, clean_chunks()),
            (
                SUMS,
                JournalRole::Sums,
                sums_txn(1000, &[(1, 3, a ^ 1), (2, 3, b)]),
            ),
        ]);
        assert_eq!(counts(&report), vec![("wrong", 2)]);
    }

    #[test]
    fn a_completed_stream_without_a_committed_sum_is_lost() {
        let a = value(&[b"battery", b" horse"]);
        // Stream 2's sum was published but its transaction never ACKed.
        let sums = sums_txn(1000, &[(1, 3, a)]) + &line(9, 2000, Flags::ContinueTxn, &sum(2, 2, 0));
        let report = audit(&[
            (CHUNKS, JournalRole::Chunks, clean_chunks()),
            (SUMS, JournalRole::Sums, sums),
        ]);
        assert_eq!(counts(&report), vec![("lost", 1)]);
        assert_eq!(report.sum_messages.uncommitted, 1);
        let example = &report.by_kind.lost.examples[0];
        assert_eq!(example.stream.as_deref(), Some(hex(&id(2)).as_str()));
        assert_eq!(example.journal, CHUNKS);
    }

    #[test]
    fn a_sum_of_a_rolled_back_final_chunk_is_an_aborted_read() {
        // Chunker producer 3 writes stream 5 in a transaction; its ACK rolls
        // the final chunk back (the ACK's clock is below the final chunk's).
        let chunks = line(3, 10, Flags::ContinueTxn, &chunk(5, 1, b"abc"))
            + &line(3, 11, Flags::ContinueTxn, &chunk(5, 2, b""))
            + &line(3, 10, Flags::AckTxn, "");
        // A read-uncommitted summer summed both chunks, and that committed.
        let read = value(&[b"abc"]);
        let report = audit(&[
            (CHUNKS, JournalRole::Chunks, chunks),
            (SUMS, JournalRole::Sums, sums_txn(1000, &[(5, 2, read)])),
        ]);
        assert_eq!(counts(&report), vec![("aborted_read", 1)]);
        assert_eq!(
            report.chunk_messages,
            MessageCounts {
                committed: 1,
                uncommitted: 1,
                duplicate_deliveries: 0
            }
        );
        assert_eq!(
            (report.streams_completed, report.streams_unfinished),
            (0, 1)
        );
    }

    #[test]
    fn a_sum_that_matches_only_uncommitted_data_is_an_aborted_read_not_wrong() {
        // SeqNo 1 is first written in a transaction that rolls back (its
        // producer re-appends its last ACK, as a recovered primary does),
        // then written again (other data) committed; the summer read the
        // first.
        let chunks = line(3, 9, Flags::AckTxn, "")
            + &line(3, 10, Flags::ContinueTxn, &chunk(5, 1, b"rolled back"))
            + &line(3, 11, Flags::ContinueTxn, &chunk(5, 2, b""))
            + &line(3, 9, Flags::AckTxn, "")
            + &line(4, 20, Flags::OutsideTxn, &chunk(5, 1, b"kept"))
            + &line(4, 21, Flags::OutsideTxn, &chunk(5, 2, b""));
        let read = value(&[b"rolled back"]);
        let report = audit(&[
            (CHUNKS, JournalRole::Chunks, chunks),
            (SUMS, JournalRole::Sums, sums_txn(1000, &[(5, 2, read)])),
        ]);
        assert_eq!(counts(&report), vec![("aborted_read", 1)]);
        assert_eq!(report.streams_completed, 1);
    }

    #[test]
    fn a_sum_of_a_stream_without_chunks_is_unknown() {
        let a = value(&[b"battery", b" horse"]);
        let b = value(&[b"x"]);
        let report = audit(&[
            (CHUNKS, JournalRole::Chunks, clean_chunks()),
            (
                SUMS,
                JournalRole::Sums,
                sums_txn(1000, &[(1, 3, a), (2, 2, b), (42, 2, b)]),
            ),
        ]);
        assert_eq!(counts(&report), vec![("unknown", 1)]);
    }

    #[test]
    fn a_sum_of_a_stream_with_a_committed_gap_is_unfinished() {
        // SeqNo 2 of 3 never committed, and nothing uncommitted explains it.
        let chunks = line(1, 10, Flags::OutsideTxn, &chunk(6, 1, b"a"))
            + &line(1, 12, Flags::OutsideTxn, &chunk(6, 3, b""));
        let report = audit(&[
            (CHUNKS, JournalRole::Chunks, chunks),
            (SUMS, JournalRole::Sums, sums_txn(1000, &[(6, 3, 0)])),
        ]);
        assert_eq!(counts(&report), vec![("unfinished", 1)]);
        assert_eq!(report.streams_unfinished, 1);
    }

    #[test]
    fn a_different_message_at_a_stale_clock_is_a_clock_regression_and_is_dropped() {
        let chunks = line(1, 10, Flags::OutsideTxn, &chunk(1, 1, b"a"))
            + &line(1, 11, Flags::OutsideTxn, &chunk(1, 2, b""))
            // Producer 1 goes back in time with a new message.
            + &line(1, 5, Flags::OutsideTxn, &chunk(2, 1, b"b"));
        let report = audit(&[
            (CHUNKS, JournalRole::Chunks, chunks),
            (
                SUMS,
                JournalRole::Sums,
                sums_txn(1000, &[(1, 2, value(&[b"a"]))]),
            ),
        ]);
        assert_eq!(counts(&report), vec![("clock_regression", 1)]);
        assert_eq!(
            report.chunk_messages,
            MessageCounts {
                committed: 2,
                uncommitted: 1,
                duplicate_deliveries: 0
            }
        );
        let example = &report.by_kind.clock_regression.examples[0];
        assert_eq!(example.stream.as_deref(), Some(hex(&id(2)).as_str()));
    }

    #[test]
    fn an_ack_below_the_producers_last_commit_is_a_clock_regression() {
        let a = value(&[b"battery", b" horse"]);
        let sums = sums_txn(1000, &[(1, 3, a)]) + &line(9, 500, Flags::AckTxn, "");
        let report = audit(&[
            (
                CHUNKS,
                JournalRole::Chunks,
                stream_chunks(1, 100, &[b"battery", b" horse"]),
            ),
            (SUMS, JournalRole::Sums, sums),
        ]);
        assert_eq!(counts(&report), vec![("clock_regression", 1)]);
    }

    #[test]
    fn rolled_back_continue_messages_are_not_counted() {
        let a = value(&[b"battery", b" horse"]);
        let b = value(&[b"x"]);
        // T1 commits stream 1's sum (ACK at 1001). T2 publishes stream 2's
        // sum and a bogus one, then dies; the new primary re-appends T1's
        // ACK verbatim, which rolls T2 back. A new producer then commits
        // stream 2's sum.
        let t1 = sums_txn(1000, &[(1, 3, a)]);
        let ack1 = line(9, 1001, Flags::AckTxn, "");
        let sums = t1
            + &line(9, 1002, Flags::ContinueTxn, &sum(2, 2, b))
            + &line(9, 1003, Flags::ContinueTxn, &sum(77, 1, 1))
            + &ack1
            + &line(8, 2000, Flags::ContinueTxn, &sum(2, 2, b))
            + &line(8, 2001, Flags::AckTxn, "");
        let report = audit(&[
            (CHUNKS, JournalRole::Chunks, clean_chunks()),
            (SUMS, JournalRole::Sums, sums),
        ]);
        assert_eq!(counts(&report), vec![]);
        assert_eq!(
            report.sum_messages,
            MessageCounts {
                committed: 2,
                uncommitted: 2,
                duplicate_deliveries: 0
            }
        );
    }

    #[test]
    fn continue_messages_past_the_ack_clock_roll_back_while_earlier_ones_commit() {
        let a = value(&[b"battery", b" horse"]);
        let sums = line(9, 10, Flags::ContinueTxn, &sum(1, 3, a))
            + &line(9, 12, Flags::ContinueTxn, &sum(1, 3, a))
            + &line(9, 11, Flags::AckTxn, "");
        let report = audit(&[
            (
                CHUNKS,
                JournalRole::Chunks,
                stream_chunks(1, 100, &[b"battery", b" horse"]),
            ),
            (SUMS, JournalRole::Sums, sums),
        ]);
        assert_eq!(counts(&report), vec![]);
        assert_eq!(
            (
                report.sum_messages.committed,
                report.sum_messages.uncommitted
            ),
            (1, 1)
        );
    }

    #[test]
    fn retried_appends_of_the_same_message_are_deduplicated() {
        let a = value(&[b"battery", b" horse"]);
        let b = value(&[b"x"]);
        // Every chunk line of stream 1 lands twice (a retried append).
        let once = stream_chunks(1, 100, &[b"battery", b" horse"]);
        let chunks = once.clone() + &once + &stream_chunks(2, 200, &[b"x"]);
        // The sums transaction, ACK included, lands twice as well.
        let txn = sums_txn(1000, &[(1, 3, a), (2, 2, b)]);
        let report = audit(&[
            (CHUNKS, JournalRole::Chunks, chunks),
            (SUMS, JournalRole::Sums, txn.clone() + &txn),
        ]);
        assert_eq!(counts(&report), vec![]);
        assert_eq!(
            report.chunk_messages,
            MessageCounts {
                committed: 5,
                uncommitted: 0,
                duplicate_deliveries: 3
            }
        );
        assert_eq!(report.sum_messages.duplicate_deliveries, 2);
        assert_eq!(report.sums_committed, 2);
    }

    #[test]
    fn a_chunk_committed_twice_under_fresh_clocks_is_a_duplicated_chunk() {
        let chunks =
            stream_chunks(1, 100, &[b"a"]) + &line(2, 50, Flags::OutsideTxn, &chunk(1, 1, b"a"));
        let report = audit(&[
            (CHUNKS, JournalRole::Chunks, chunks),
            (
                SUMS,
                JournalRole::Sums,
                sums_txn(1000, &[(1, 2, value(&[b"a"]))]),
            ),
        ]);
        assert_eq!(counts(&report), vec![("duplicated_chunk", 1)]);
    }

    #[test]
    fn a_stream_spread_over_partitions_out_of_order_completes() {
        let data: [&[u8]; 3] = [b"one", b"two", b"three"];
        let part0 = line(1, 10, Flags::OutsideTxn, &chunk(3, 2, data[1]))
            + &line(1, 11, Flags::OutsideTxn, &chunk(3, 4, b""));
        let part1 = line(1, 12, Flags::OutsideTxn, &chunk(3, 3, data[2]))
            + &line(1, 13, Flags::OutsideTxn, &chunk(3, 1, data[0]));
        let report = audit(&[
            (CHUNKS, JournalRole::Chunks, part0),
            (CHUNKS_1, JournalRole::Chunks, part1),
            (
                SUMS,
                JournalRole::Sums,
                sums_txn(1000, &[(3, 4, value(&data))]),
            ),
        ]);
        assert_eq!(counts(&report), vec![]);
        assert_eq!(report.streams_completed, 1);
    }

    #[test]
    fn malformed_lines_are_reported_with_their_offsets_not_panicked_on() {
        let good = stream_chunks(1, 100, &[b"a"]);
        let bad_json = "{not json\n";
        let no_uuid = format!("{{{}}}\n", chunk(2, 1, b"b"));
        let bad_base64 = line(
            1,
            300,
            Flags::OutsideTxn,
            "\"ID\":[2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2],\"SeqNo\":1,\"Data\":\"!!\"",
        );
        let blank = "\n";
        let partial = "{\"UUID\":";
        let content = good.clone() + bad_json + &no_uuid + &bad_base64 + blank + partial;
        let report = audit(&[
            (CHUNKS, JournalRole::Chunks, content),
            (
                SUMS,
                JournalRole::Sums,
                sums_txn(1000, &[(1, 2, value(&[b"a"]))]),
            ),
        ]);
        assert_eq!(counts(&report), vec![("malformed", 5)]);
        let offsets: Vec<i64> = report
            .by_kind
            .malformed
            .examples
            .iter()
            .map(|e| e.offset)
            .collect();
        let start = good.len() as i64;
        let after_json = start + bad_json.len() as i64;
        let after_uuid = after_json + no_uuid.len() as i64;
        let after_b64 = after_uuid + bad_base64.len() as i64;
        assert_eq!(
            offsets,
            vec![start, after_json, after_uuid, after_b64, after_b64 + 1]
        );
        assert_eq!(report.streams_completed, 1);
    }

    #[test]
    fn lines_split_across_pushes_and_over_long_lines_are_handled() {
        let content = stream_chunks(1, 100, &[b"battery", b" horse"]);
        let mut model = AuditModel::new(AuditLimits {
            max_line_bytes: 200,
            examples: 20,
        });
        let mut feed = model.journal(CHUNKS, JournalRole::Chunks);
        // One byte at a time.
        for (i, byte) in content.bytes().enumerate() {
            feed.push(i as i64, &[byte]);
        }
        let long = format!("{}\n", "x".repeat(500));
        let at = content.len() as i64;
        feed.push(at, &long.as_bytes()[..300]);
        feed.push(at + 300, &long.as_bytes()[300..]);
        // A gap: bytes at the wrong offset.
        feed.push(at + 1000, b"{}\n");
        feed.finish();
        let sums = sums_txn(1000, &[(1, 3, value(&[b"battery", b" horse"]))]);
        model.add_journal(SUMS, JournalRole::Sums, sums.as_bytes());
        let report = model.finish();
        // Too long, the gap, and the "{}" line after it (no UUID).
        assert_eq!(counts(&report), vec![("malformed", 3)]);
        assert_eq!(report.streams_completed, 1);
        assert_eq!(report.chunk_messages.committed, 3);
    }

    #[test]
    fn examples_are_capped_but_counts_are_not() {
        let mut chunks = String::new();
        for stream in 0..25u8 {
            chunks += &stream_chunks(stream, 100 * u64::from(stream) + 100, &[b"d"]);
        }
        let report = audit(&[
            (CHUNKS, JournalRole::Chunks, chunks),
            (SUMS, JournalRole::Sums, String::new()),
        ]);
        assert_eq!(counts(&report), vec![("lost", 25)]);
        assert_eq!(
            report.by_kind.lost.examples.len(),
            limits::DEFAULT_AUDIT_EXAMPLES
        );
    }

    #[test]
    fn the_json_report_names_every_kind() {
        let report = audit(&[(CHUNKS, JournalRole::Chunks, clean_chunks())]);
        let json = serde_json::to_value(&report).unwrap();
        for kind in AnomalyKind::ALL {
            assert!(json["by_kind"][kind.name()]["count"].is_u64(), "{kind}");
        }
        assert_eq!(json["by_kind"]["lost"]["count"], 2);
        assert_eq!(json["streams_completed"], 2);
    }
}
