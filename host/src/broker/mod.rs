//! # The embedded journal broker
//!
//! A **journal** is a named, append-only byte log (Gazette's journal):
//! offsets are byte offsets, content has no record structure (framing is the
//! client's job), and specs carry labels that List selects on. [`Broker`]
//! keeps journals in a local data directory and serves the
//! [`JournalClient`] contract of [`protocol`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), weir::broker::BrokerError> {
//! use weir::broker::{AppendRequest, Broker, BrokerConfig, JournalChange, JournalClient, JournalSpec, ReadRequest};
//!
//! let broker = Broker::open("/var/lib/weir", BrokerConfig::default()).await?;
//! broker.apply(vec![JournalChange::Upsert(JournalSpec::new("examples/greetings"))]).await?;
//! let commit = broker
//!     .append(AppendRequest { journal: "examples/greetings".into(), content: "hello\n".into(), ..Default::default() })
//!     .await?;
//! assert_eq!((commit.begin, commit.end), (0, 6));
//! let mut stream = broker
//!     .read(ReadRequest { journal: "examples/greetings".into(), offset: 0, ..Default::default() })
//!     .await?;
//! while let Some(chunk) = stream.next().await? {
//!     print!("{}", String::from_utf8_lossy(&chunk.content));
//! }
//! broker.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## Guarantees
//!
//! - **Atomic appends.** An append lands whole and contiguous, or not at all.
//!   Appends to one journal are serialized and never interleave.
//! - **Durable before acknowledged.** An append returns `Ok` only after its
//!   bytes were written and `fdatasync`ed (and, when it started a new
//!   fragment file, after the directory was synced too). Appends that queue
//!   up while an fsync is in flight share the next one (*group commit*, see
//!   the writer module), so many small concurrent appends cost few fsyncs.
//! - **Readers see committed bytes only**: bytes below the write head, which
//!   advances only after the fsync.
//! - **A failed fsync is final** for its journal: it stops accepting appends
//!   (its committed bytes stay readable). An fsync is never retried.
//! - **A zero-byte append is a write barrier**: it waits for every earlier
//!   append and returns `begin == end ==` the write head. It may not change
//!   registers.
//! - **Registers**: a small label set per journal, checked
//!   (`check_registers`; an empty register set matches any selector) and
//!   updated (`subtract_registers`, then `union_registers`, only by appends
//!   of at least one byte) atomically with an append, and stored with it, so
//!   they survive restarts.
//! - A failed append may still have landed (e.g. a crash after the fsync and
//!   before the reply): clients design for duplicate bytes, as in Gazette.
//!
//! ## Storage and recovery
//!
//! Each journal is a directory of fragment files (see the layout module): closed
//! fragments named by their 16-hex-digit begin and end offsets, and one open
//! *spool* that rolls once it reaches the spec's `fragment_length`. Every
//! append is stored as records carrying a CRC-32C. Checksums are
//! verified on every read and, at [`Broker::open`], over every fragment:
//!
//! - a **torn tail** (an append being written when the process or machine
//!   died, never acknowledged) is cut off the spool;
//! - **damage anywhere else** makes the journal *corrupt*: it stays readable
//!   below the damage, and reads at or after it, and appends, fail with
//!   [`BrokerError::Corrupt`] naming the journal and offset. Other journals
//!   are unaffected, and `open` succeeds.
//!
//! Files are reached through the [`Backend`](backend::Backend) trait:
//! [`FsBackend`](backend::FsBackend) on local disk, or
//! [`SimBackend`](sim::SimBackend), which simulates crashes (forgetting
//! unsynced bytes, tearing writes) and fsync failures for tests. The same
//! seam lets closed fragments move to object storage later.
//!
//! Blocking file I/O never runs on tokio's worker threads: writes, fsyncs,
//! reads and recovery run on blocking threads.

mod apply;
pub mod backend;
mod embedded;
pub(crate) mod fragment;
mod journal;
pub mod label;
pub(crate) mod layout;
pub mod protocol;
mod reader;
pub(crate) mod record;
pub mod revision;
pub mod sim;
pub mod spec;
mod writer;

pub use embedded::{Broker, BrokerConfig, FragmentInfo, ListedJournal, Listing, ReadPosition};
pub use protocol::{
    AppendRequest, AppendResponse, BrokerError, JournalChange, JournalClient, ReadChunk,
    ReadRequest, ReadStream,
};
pub use revision::{ApplyOutcome, ExpectRevision, Revisions};
pub use spec::{JournalSpec, Label, LabelSelector, LabelSet, SpecError};

impl From<SpecError> for BrokerError {
    fn from(err: SpecError) -> Self {
        BrokerError::InvalidArgument(err.to_string())
    }
}
