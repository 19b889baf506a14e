//! The sandbox behind `weir test`: one consumer guest, run on a file of input
//! messages in a throwaway embedded host, and what it committed.
//!
//! A sandboxed run is not a simulation. It opens a real embedded broker in a
//! temporary directory, appends the input as real messages, and serves one
//! real shard over them: real transactions, a real RocksDB store, a real
//! recovery log. What it reports is what a read-committed reader and a
//! recovered store would see:
//!
//! 1. [`input`]: each input line (a JSON object) becomes a message of the
//!    input journal. Lines without a `UUID` get one from a fixed producer
//!    with increasing clocks, so the same file always gives the same bytes.
//! 2. [`run`]: the shard runs until it has committed every deliverable input
//!    message, then stops. Journals the guest publishes to are created on
//!    first use ([`autocreate`]). A guest failure ends the run, naming the
//!    message (journal, offset and input line) that caused it ([`recording`]).
//! 3. [`output`]: the [`Report`] is every message the guest published, per
//!    journal in read-committed order and without UUIDs, then the store as the
//!    recovery log rebuilds it in an empty directory, sorted by key. Rendered
//!    as JSON lines it is byte-identical for the same input and guest.
//! 4. [`crash`] and [`compare`]: with crash injection the shard is crashed
//!    once per N input messages, at a different point of the transaction each
//!    time (while consuming, before and after the recovery-log commit, during
//!    ACKs, ...), and recovers from its recovery log each time; the report
//!    must equal a crash-free run's.
//!
//! ```no_run
//! # async fn example(wasm: &[u8], text: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! use weir::runtime::{Runtime, RuntimeConfig};
//! use weir::runtime::GuestLimits;
//! use weir::sandbox::{AppUnderTest, Input, RunConfig, run};
//!
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let module = runtime.consumer_module(wasm)?;
//! let guest = AppUnderTest::guest(&module, GuestLimits::default());
//! let input = Input::parse(text)?;
//! let outcome = run(&guest, &input, &RunConfig::default()).await?;
//! print!("{}", outcome.report.render());
//! # Ok(()) }
//! ```
//!
//! Guarantees: nothing outlives a run (the directory is removed, the broker
//! shut down, the shard stopped or aborted); a run ends within
//! [`RunConfig::timeout`]; guest and RocksDB calls run on blocking threads.

pub mod autocreate;
pub mod committed;
pub mod compare;
pub mod crash;
pub mod input;
pub mod output;
pub mod recording;
pub mod run;

use std::fmt;

pub use compare::{CrashCheck, CrashComparison, run_with_crashes};
pub use crash::{CrashPlan, CrashPoint};
pub use input::{Input, InputError, InputLine};
pub use output::{Difference, Published, Report, first_difference};
pub use run::{AppUnderTest, RunConfig, RunOutcome, run};

use crate::broker::protocol::BrokerError;
use crate::consumer::SpecError;
use crate::message::ReadError;
use crate::store::StoreError;

/// Where a failing message was: its journal and offset, and the input line
/// it came from when it is an input message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAt {
    /// The journal read.
    pub journal: String,
    /// Offset of the message's first byte.
    pub offset: i64,
    /// Line of the input file (from 1), for messages of the input journal.
    pub line: Option<usize>,
}

impl fmt::Display for MessageAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.journal, self.offset)?;
        if let Some(line) = self.line {
            write!(f, " (input line {line})")?;
        }
        Ok(())
    }
}

/// How the guest failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestFailure {
    /// The message it failed on; `None` when it failed in `finalize-txn`.
    pub at: Option<MessageAt>,
    /// The error (a trap, a WIT error, a limit), as the shard reported it.
    pub error: String,
    /// Set when the failure could not be pinned on one message (a trap in a
    /// batch) and did not happen again when the messages were retried one
    /// at a time: `at` is then the first message of the batch.
    pub flaky: bool,
}

impl fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at {
            Some(at) if self.flaky => write!(
                f,
                "the guest failed in a batch starting at the message at {at}, \
                 then passed when retried one message at a time: {}",
                self.error
            ),
            Some(at) => write!(f, "the guest failed on the message at {at}: {}", self.error),
            None => write!(f, "the guest failed in finalize-txn: {}", self.error),
        }
    }
}

/// Why a sandboxed run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The input file is not JSON lines of objects.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The input journal name makes an invalid shard.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The guest trapped, returned an error or exceeded a limit.
    #[error("{0}")]
    Guest(GuestFailure),
    /// The shard failed outside the guest (its store, its journals).
    #[error("the shard failed: {0}")]
    Shard(String),
    /// The run did not finish in time.
    #[error(
        "the run did not finish within {secs} s: the shard read {journal} through \
         offset {read_through} of {target}"
    )]
    Timeout {
        /// The run's time limit, in seconds.
        secs: u64,
        /// The journal being waited on.
        journal: String,
        /// How far it was read.
        read_through: i64,
        /// How far it had to be read.
        target: i64,
    },
    /// The temporary directory could not be made.
    #[error("creating the sandbox directory: {0}")]
    TempDir(#[source] std::io::Error),
    /// A journal operation failed.
    #[error("{context}: {source}")]
    Broker {
        /// What was being done.
        context: String,
        /// The broker's error.
        #[source]
        source: BrokerError,
    },
    /// Reading a journal read-committed failed.
    #[error("reading {journal}: {source}")]
    Read {
        /// The journal.
        journal: String,
        /// The reader's error.
        #[source]
        source: ReadError,
    },
    /// Rebuilding or scanning the final store failed.
    #[error("reading the final store: {0}")]
    Store(String),
}

impl From<StoreError> for SandboxError {
    fn from(err: StoreError) -> Self {
        SandboxError::Store(err.to_string())
    }
}

/// A [`SandboxError::Broker`] with `context`.
pub(crate) fn broker_error(context: impl Into<String>) -> impl FnOnce(BrokerError) -> SandboxError {
    let context = context.into();
    move |source| SandboxError::Broker { context, source }
}
