//! Read streams: committed bytes of one journal from an offset, in chunks,
//! optionally waiting at the write head for more.
//!
//! A reader follows the journal's `watch` of the committed write head; it
//! only ever reads below that head, so it sees whole, durable appends and
//! nothing else. Bytes come from the fragment files through a
//! [`Cursor`](super::fragment::Cursor) that verifies each record's checksum
//! before serving any of its bytes. File reads run on blocking threads.
//!
//! At the write head, a **blocking** read waits for the next append (or for
//! the journal to fail, be deleted or the broker to shut down, which end it
//! with an error). A **non-blocking** read ends the stream there, or fails
//! with `OffsetNotYetAvailable` if it has an `end_offset` not yet reached.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use super::fragment::{Cursor, FragmentError};
use super::journal::{Committed, Health, JournalShared};
use super::protocol::{BrokerError, ReadChunk, ReadStream};

/// A [`ReadStream`] over one journal.
pub(crate) struct JournalReader {
    shared: Arc<JournalShared>,
    committed: watch::Receiver<Committed>,
    offset: i64,
    /// Exclusive end; 0 means unbounded.
    end_offset: i64,
    block: bool,
    chunk_size: usize,
    cursor: Option<Cursor>,
}

impl JournalReader {
    /// A reader from `offset` (already resolved from -1).
    pub fn new(
        shared: Arc<JournalShared>,
        offset: i64,
        end_offset: i64,
        block: bool,
        chunk_size: usize,
    ) -> Self {
        let committed = shared.committed.subscribe();
        JournalReader {
            shared,
            committed,
            offset,
            end_offset,
            block,
            chunk_size,
            cursor: None,
        }
    }

    async fn read_chunk(&mut self, limit: i64) -> Result<ReadChunk, BrokerError> {
        let journal = &self.shared.name;
        let offset = self.offset;
        let corrupt = |offset: i64, reason: String| {
            tracing::error!(
                journal = journal.as_str(),
                offset,
                reason = reason.as_str(),
                "refusing to serve damaged bytes"
            );
            BrokerError::Corrupt {
                journal: journal.clone(),
                offset,
                reason,
            }
        };
        let Some(fragment) = self.shared.locate(offset) else {
            return Err(corrupt(
                offset,
                "no fragment holds this committed offset".into(),
            ));
        };
        let limit = limit.min(fragment.end);
        let mut cursor = match self.cursor.take() {
            Some(cursor)
                if cursor.fragment_begin() == fragment.begin && cursor.can_serve(offset) =>
            {
                cursor
            }
            _ => Cursor::new(&fragment, offset),
        };
        let max = self.chunk_size;
        let (cursor, result) = tokio::task::spawn_blocking(move || {
            let result = cursor.read(offset, limit, max);
            (cursor, result)
        })
        .await
        .map_err(|err| BrokerError::Unavailable(format!("read thread failed: {err}")))?;
        let content = match result {
            Ok(content) => content,
            Err(FragmentError::Corrupt { offset, reason }) => return Err(corrupt(offset, reason)),
            Err(FragmentError::Io(source)) => {
                return Err(BrokerError::Io {
                    context: format!("reading {journal} at {offset}"),
                    source,
                });
            }
        };
        self.cursor = Some(cursor);
        if content.is_empty() {
            return Err(corrupt(offset, "a committed offset holds no bytes".into()));
        }
        self.offset += content.len() as i64;
        Ok(ReadChunk { offset, content })
    }
}

#[async_trait]
impl ReadStream for JournalReader {
    async fn next(&mut self) -> Result<Option<ReadChunk>, BrokerError> {
        loop {
            if self.end_offset != 0 && self.offset >= self.end_offset {
                return Ok(None);
            }
            let committed = self.committed.borrow_and_update().clone();
            match &committed.health {
                Health::Deleted | Health::ShutDown => {
                    return Err(committed
                        .error(&self.shared.name)
                        .unwrap_or_else(|| BrokerError::Unavailable(self.shared.name.clone())));
                }
                Health::Corrupt { offset, .. } if self.offset >= *offset => {
                    return Err(committed
                        .error(&self.shared.name)
                        .unwrap_or_else(|| BrokerError::Unavailable(self.shared.name.clone())));
                }
                _ => {}
            }
            if self.offset < committed.head {
                let limit = match self.end_offset {
                    0 => committed.head,
                    end => end.min(committed.head),
                };
                return self.read_chunk(limit).await.map(Some);
            }
            if !self.block {
                return if self.end_offset != 0 {
                    Err(BrokerError::OffsetNotYetAvailable {
                        journal: self.shared.name.clone(),
                        offset: self.offset,
                    })
                } else {
                    Ok(None)
                };
            }
            if let Some(err) = committed.error(&self.shared.name) {
                // A failed journal takes no more appends: waiting would hang.
                return Err(err);
            }
            if self.committed.changed().await.is_err() {
                return Err(BrokerError::Unavailable("the broker was dropped".into()));
            }
        }
    }
}
