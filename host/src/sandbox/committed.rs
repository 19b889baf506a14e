//! Reading a journal read-committed up to an offset, as an independent
//! reader would: the sandbox's view of what is committed.
//!
//! [`CommittedReader::read_to`] returns the committed, non-ACK messages the
//! reader delivers until it has read through a given offset (a write head).
//! Messages that never commit (a crashed primary's unacknowledged tail,
//! input messages of a transaction without an ACK) are read past, never
//! delivered and never waited for: the reader re-checks how far it has read
//! every [`SANDBOX_READ_POLL_MS`](crate::limits::SANDBOX_READ_POLL_MS) while
//! nothing arrives.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::broker::protocol::JournalClient;
use crate::limits;
use crate::message::{Envelope, ReadCommitted};

use super::SandboxError;

/// A read-committed reader of one journal, from its start. See the module docs.
pub struct CommittedReader {
    journal: String,
    reader: ReadCommitted,
}

impl CommittedReader {
    /// Starts reading `journal` from offset 0.
    pub fn open(
        client: Arc<dyn JournalClient>,
        journal: &str,
    ) -> Result<CommittedReader, SandboxError> {
        let reader = ReadCommitted::new(
            client,
            vec![(journal.to_string(), 0)],
            &BTreeMap::new(),
            limits::DEFAULT_RING_BUFFER_SIZE,
            limits::DEFAULT_READ_CHANNEL_SIZE,
        )
        .map_err(|source| SandboxError::Read {
            journal: journal.to_string(),
            source,
        })?;
        Ok(CommittedReader {
            journal: journal.to_string(),
            reader,
        })
    }

    /// The committed, non-ACK messages delivered until the reader has read
    /// through `offset`; fails with [`SandboxError::Timeout`] at `deadline`
    /// (whose limit, for the message, is `timeout`).
    pub async fn read_to(
        &mut self,
        offset: i64,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Vec<Envelope>, SandboxError> {
        let poll = Duration::from_millis(limits::SANDBOX_READ_POLL_MS);
        let mut delivered = Vec::new();
        loop {
            let through = self.read_through();
            if through >= offset {
                return Ok(delivered);
            }
            if Instant::now() >= deadline {
                return Err(SandboxError::Timeout {
                    secs: timeout.as_secs(),
                    journal: self.journal.clone(),
                    read_through: through,
                    target: offset,
                });
            }
            // `next` is cancel-safe: a timeout loses nothing.
            let Ok(next) = tokio::time::timeout(poll, self.reader.next()).await else {
                continue;
            };
            let envelope = next.map_err(|source| SandboxError::Read {
                journal: self.journal.clone(),
                source,
            })?;
            if !envelope.is_ack() {
                delivered.push(envelope);
            }
        }
    }

    fn read_through(&mut self) -> i64 {
        // No pruning: every producer of the run stays in the checkpoint.
        self.reader
            .checkpoint(Duration::MAX)
            .sources
            .get(&self.journal)
            .map_or(0, |source| source.read_through)
    }
}
