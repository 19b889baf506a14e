//! The journal client contract: the requests, responses and errors that every
//! way of reaching a broker shares (the embedded [`Broker`](super::Broker)
//! today, a gRPC client later).
//!
//! The shapes follow Gazette's `protocol.Journal` service: an append is atomic
//! and returns the committed `[begin, end)` byte range; a zero-byte append is a
//! write barrier whose `begin == end ==` the write head; a read streams
//! committed bytes from an offset and may block at the write head.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;

use super::spec::{JournalSpec, LabelSelector, LabelSet};

/// An append of `content` to `journal`, applied atomically: all bytes land
/// contiguously, or none do.
#[derive(Debug, Clone, Default)]
pub struct AppendRequest {
    /// Journal to append to.
    pub journal: String,
    /// Bytes to append. Empty means a write barrier (no registers may change).
    pub content: Bytes,
    /// If set, the journal's registers must match this selector, or the append
    /// fails with [`BrokerError::RegisterMismatch`]. An empty register set
    /// matches any selector (Gazette's rule).
    pub check_registers: Option<LabelSelector>,
    /// Labels added to the registers if the append writes at least one byte.
    pub union_registers: LabelSet,
    /// Labels removed from the registers (before the union) if the append
    /// writes at least one byte.
    pub subtract_registers: LabelSet,
    /// If set, the append applies only if the write head equals this offset
    /// (Gazette's `offset` field), else [`BrokerError::WrongAppendOffset`].
    pub expect_offset: Option<i64>,
}

/// The committed result of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResponse {
    /// Journal offset of the first appended byte.
    pub begin: i64,
    /// Journal offset one past the last appended byte (the new write head).
    pub end: i64,
    /// The journal's registers after the append.
    pub registers: LabelSet,
}

/// A read of committed bytes.
#[derive(Debug, Clone, Default)]
pub struct ReadRequest {
    /// Journal to read.
    pub journal: String,
    /// Offset to read from; `-1` means the current write head.
    pub offset: i64,
    /// Wait for new content at the write head instead of ending the stream.
    pub block: bool,
    /// Stop at this offset (exclusive); `0` means unbounded.
    pub end_offset: i64,
}

/// A run of committed bytes starting at `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadChunk {
    /// Journal offset of `content[0]`.
    pub offset: i64,
    /// Committed bytes; never empty.
    pub content: Bytes,
}

/// A change applied by [`JournalClient::apply`]. Changes of one call apply
/// all together or not at all.
#[derive(Debug, Clone)]
pub enum JournalChange {
    /// Create the journal, or replace the spec of an existing one.
    Upsert(JournalSpec),
    /// Delete the journal and its content.
    Delete(String),
}

/// Errors of the journal API. Each maps to one of Gazette's `protocol.Status`
/// codes (or to a gRPC status where Gazette has none).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// A name, label, selector, offset or spec is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The journal does not exist (Gazette `JOURNAL_NOT_FOUND`).
    #[error("journal not found: {0}")]
    JournalNotFound(String),
    /// `check_registers` did not match (Gazette `REGISTER_MISMATCH`).
    #[error("register mismatch on {journal}: registers are {registers}")]
    RegisterMismatch {
        /// The journal appended to.
        journal: String,
        /// The journal's current registers.
        registers: LabelSet,
    },
    /// `expect_offset` was not the write head (Gazette `WRONG_APPEND_OFFSET`).
    #[error("wrong append offset on {journal}: expected {expected}, write head is {write_head}")]
    WrongAppendOffset {
        /// The journal appended to.
        journal: String,
        /// The offset the request expected.
        expected: i64,
        /// The actual write head.
        write_head: i64,
    },
    /// A non-blocking read reached the write head before `end_offset`
    /// (Gazette `OFFSET_NOT_YET_AVAILABLE`).
    #[error("offset {offset} of {journal} is not yet available")]
    OffsetNotYetAvailable {
        /// The journal read.
        journal: String,
        /// The offset asked for.
        offset: i64,
    },
    /// Stored journal content failed its checksum. It is never served.
    #[error("corrupt journal {journal} at offset {offset}: {reason}")]
    Corrupt {
        /// The damaged journal.
        journal: String,
        /// First offset that cannot be served: the start of the damaged
        /// append (everything below it verified and readable).
        offset: i64,
        /// What was wrong.
        reason: String,
    },
    /// The journal's flags forbid the operation (Gazette `NOT_ALLOWED`):
    /// an append to a read-only journal, a read of a write-only one.
    #[error("not allowed on {journal}: {reason}")]
    NotAllowed {
        /// The journal addressed.
        journal: String,
        /// What its flags forbid.
        reason: String,
    },
    /// A request or content exceeded a named limit.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// The broker is shutting down or unreachable; the call may be retried.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// A local I/O failure. After a failed fsync the journal stops accepting
    /// appends (a retried fsync may lie, so nothing is acknowledged).
    #[error("i/o error on {context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl BrokerError {
    /// Whether retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            BrokerError::Unavailable(_) => true,
            BrokerError::InvalidArgument(_)
            | BrokerError::JournalNotFound(_)
            | BrokerError::RegisterMismatch { .. }
            | BrokerError::WrongAppendOffset { .. }
            | BrokerError::OffsetNotYetAvailable { .. }
            | BrokerError::Corrupt { .. }
            | BrokerError::NotAllowed { .. }
            | BrokerError::LimitExceeded(_)
            | BrokerError::Io { .. } => false,
        }
    }
}

/// A stream of committed bytes returned by [`JournalClient::read`].
#[async_trait]
pub trait ReadStream: Send {
    /// The next run of committed bytes, or `None` once `end_offset` is
    /// reached (or, for a non-blocking read, the write head). A blocking read
    /// without an end waits for new appends.
    async fn next(&mut self) -> Result<Option<ReadChunk>, BrokerError>;
}

/// How consumers, publishers and guests reach journals, embedded or remote.
///
/// Invariants every implementation keeps:
/// - an append acknowledged `Ok` is durable (fsync'd) and visible to reads;
/// - appends to one journal are totally ordered and never interleave;
/// - readers only ever see committed bytes.
#[async_trait]
pub trait JournalClient: Send + Sync + 'static {
    /// Journals matching `selector`, sorted by name.
    async fn list(&self, selector: &LabelSelector) -> Result<Vec<JournalSpec>, BrokerError>;
    /// Applies `changes` atomically.
    async fn apply(&self, changes: Vec<JournalChange>) -> Result<(), BrokerError>;
    /// Appends atomically; returns only once the bytes are durable.
    async fn append(&self, request: AppendRequest) -> Result<AppendResponse, BrokerError>;
    /// Opens a read stream.
    async fn read(&self, request: ReadRequest) -> Result<Box<dyn ReadStream>, BrokerError>;
}

impl fmt::Display for ReadChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes at {}", self.content.len(), self.offset)
    }
}
