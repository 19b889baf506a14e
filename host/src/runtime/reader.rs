//! [`JobReader`]: the `journals.reader` resource of the chunker world, a
//! read-committed reader of one journal with a timeout per `next`.
//!
//! It wraps [`ReadCommitted`] (whose `next` is cancel-safe, so a timeout
//! loses nothing: the envelope is delivered by a later call). The reader's
//! tasks run on the job's tokio runtime; the guest's thread blocks on each
//! `next` with `Handle::block_on`. After an error the reader stays failed
//! and repeats the error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;

use super::chunker::CancelToken;
use crate::broker::JournalClient;
use crate::message::{Envelope, ReadCommitted, ReadError};

/// What a `next` call produced.
#[derive(Debug)]
pub enum NextOutcome {
    /// A committed envelope (possibly an ACK).
    Envelope(Envelope),
    /// Nothing arrived within the timeout.
    TimedOut,
    /// The job was cancelled.
    Cancelled,
    /// The reader failed (now or earlier).
    Failed(String),
}

/// A read-committed reader of one journal.
pub struct JobReader {
    journal: String,
    reader: ReadCommitted,
    failed: Option<String>,
}

impl JobReader {
    /// Opens `journal` at `offset` (a byte offset, not -1).
    pub fn open(
        client: Arc<dyn JournalClient>,
        handle: &Handle,
        journal: &str,
        offset: i64,
        buffer: usize,
    ) -> Result<JobReader, ReadError> {
        // ReadCommitted spawns its reader tasks on the current runtime.
        let _runtime = handle.enter();
        let reader = ReadCommitted::new(
            client,
            vec![(journal.to_string(), offset)],
            &BTreeMap::new(),
            buffer.max(16),
            buffer.max(1),
        )?;
        Ok(JobReader {
            journal: journal.to_string(),
            reader,
            failed: None,
        })
    }

    /// The next committed envelope, waiting at most `timeout`.
    pub fn next(
        &mut self,
        handle: &Handle,
        timeout: Duration,
        cancel: &CancelToken,
    ) -> NextOutcome {
        if let Some(failed) = &self.failed {
            return NextOutcome::Failed(failed.clone());
        }
        let reader = &mut self.reader;
        let outcome = handle.block_on(async {
            tokio::select! {
                biased;
                () = cancel.cancelled() => NextOutcome::Cancelled,
                read = tokio::time::timeout(timeout, reader.next()) => match read {
                    Ok(Ok(envelope)) => NextOutcome::Envelope(envelope),
                    Ok(Err(err)) => NextOutcome::Failed(error_chain(&err)),
                    Err(_elapsed) => NextOutcome::TimedOut,
                },
            }
        });
        if let NextOutcome::Failed(reason) = outcome {
            let failed = format!("reading {}: {reason}", self.journal);
            self.failed = Some(failed.clone());
            return NextOutcome::Failed(failed);
        }
        outcome
    }
}

/// `err` and its sources, joined by ": ".
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
