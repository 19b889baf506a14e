//! Plays a recovery log into a local store.
//!
//! A [`Replayer`] owns the local store and its [`LogPosition`]. It takes log
//! bytes chunk by chunk (a record may straddle chunks), verifies each frame,
//! and applies the records that continue the log's sequence:
//! - a hand-off with the next sequence number makes its author current;
//! - a commit with the next sequence number *and* the current author applies
//!   its writes and checkpoint;
//! - anything else (a duplicate, a fenced writer's record) is skipped.
//!
//! All records of one chunk go into one RocksDB batch together with the new
//! position, so the local store always equals the log up to its position.
//! The primary applies its own commits through this same path, so a primary's
//! state and a replayed state cannot differ.
//!
//! [`catch_up`] reads a log up to a known head, overlapping the read of the
//! next chunk with the (blocking) apply of the current one.

use std::sync::Arc;

use rocksdb::{ColumnFamily, WriteBatch};
use tokio::sync::watch;

use super::error::{StoreError, join_error};
use super::local::{LocalDb, LogPosition};
use super::record::{self, Body, Record, Split, Write};
use crate::broker::protocol::{
    AppendRequest, AppendResponse, JournalClient, ReadChunk, ReadRequest,
};
use crate::consumer::Checkpoint;

/// Counts of what a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Log bytes consumed.
    pub bytes: u64,
    /// Commit records applied.
    pub commits: u64,
    /// Hand-off records applied.
    pub handoffs: u64,
    /// Records skipped (out of sequence or by a fenced author).
    pub skipped: u64,
}

/// A local store being fed from its recovery log.
pub(crate) struct Replayer {
    pub db: Arc<LocalDb>,
    pub log: String,
    pub position: LogPosition,
    /// Checkpoint of the last applied commit.
    pub checkpoint: Checkpoint,
    pub stats: ReplayStats,
    /// Bytes after `position.offset` that do not yet form a whole frame.
    pending: Vec<u8>,
    max_record_bytes: usize,
}

impl Replayer {
    pub fn new(
        db: Arc<LocalDb>,
        log: String,
        position: LogPosition,
        checkpoint: Checkpoint,
        max_record_bytes: usize,
    ) -> Self {
        Replayer {
            db,
            log,
            position,
            checkpoint,
            stats: ReplayStats::default(),
            pending: Vec::new(),
            max_record_bytes,
        }
    }

    /// The log offset the next chunk must start at.
    pub fn read_offset(&self) -> i64 {
        self.position.offset + self.pending.len() as i64
    }

    fn corrupt(&self, offset: i64, reason: String) -> StoreError {
        StoreError::CorruptLog {
            log: self.log.clone(),
            offset,
            reason,
        }
    }

    /// Applies the whole frames that `chunk` completes. Blocks on RocksDB.
    pub fn apply_chunk(&mut self, chunk: &ReadChunk) -> Result<(), StoreError> {
        let expected = self.read_offset();
        if chunk.offset != expected {
            return Err(StoreError::LogGap {
                log: self.log.clone(),
                expected,
                actual: chunk.offset,
            });
        }
        let mut pending = std::mem::take(&mut self.pending);
        let buffered = !pending.is_empty();
        if buffered {
            pending.extend_from_slice(&chunk.content);
        }
        let buf: &[u8] = if buffered { &pending } else { &chunk.content };

        let db = Arc::clone(&self.db);
        let cf = db.data_cf()?;
        let mut batch = WriteBatch::default();
        let mut position = self.position;
        let mut checkpoint = None;
        let mut stats = self.stats;
        let mut consumed = 0;
        loop {
            let split = record::split_frame(&buf[consumed..], self.max_record_bytes)
                .map_err(|reason| self.corrupt(position.offset, reason))?;
            let Split::Frame { payload, len } = split else {
                break;
            };
            let record = record::decode_record(payload)
                .map_err(|reason| self.corrupt(position.offset, reason))?;
            apply_record(
                &mut batch,
                cf,
                &mut position,
                &mut checkpoint,
                &mut stats,
                record,
            );
            position.offset += len as i64;
            stats.bytes += len as u64;
            consumed += len;
        }
        let rest = if buffered {
            pending.drain(..consumed);
            pending
        } else {
            chunk.content[consumed..].to_vec()
        };

        if consumed > 0 {
            self.db
                .stage_meta(&mut batch, &position, checkpoint.as_ref())?;
            self.db.write(batch)?;
            self.position = position;
            if let Some(checkpoint) = checkpoint {
                self.checkpoint = checkpoint;
            }
            self.stats = stats;
        }
        self.pending = rest;
        Ok(())
    }
}

/// Applies one record's effects to `batch` and `position` (but not its
/// offset, which the caller advances for applied and skipped records alike).
fn apply_record(
    batch: &mut WriteBatch,
    cf: &ColumnFamily,
    position: &mut LogPosition,
    checkpoint: &mut Option<Checkpoint>,
    stats: &mut ReplayStats,
    record: Record<'_>,
) {
    if record.seq != position.next_seq {
        stats.skipped += 1;
        return;
    }
    match record.body {
        Body::Handoff => {
            position.author = record.author;
            stats.handoffs += 1;
        }
        Body::Commit {
            writes,
            checkpoint: committed,
        } => {
            if position.author == 0 || record.author != position.author {
                stats.skipped += 1;
                return;
            }
            for write in writes {
                match write {
                    Write::Put { key, value } => batch.put_cf(cf, key, value),
                    Write::Delete { key } => batch.delete_cf(cf, key),
                }
            }
            *checkpoint = Some(committed.into_owned());
            stats.commits += 1;
        }
    }
    position.next_seq += 1;
}

/// Applies `chunk` on a blocking thread.
pub(crate) async fn apply_blocking(
    mut replayer: Replayer,
    chunk: ReadChunk,
) -> Result<Replayer, StoreError> {
    tokio::task::spawn_blocking(move || replayer.apply_chunk(&chunk).map(|()| replayer))
        .await
        .map_err(join_error)?
}

/// A zero-byte append: returns the log's write head and registers.
pub(crate) async fn barrier(
    client: &dyn JournalClient,
    log: &str,
) -> Result<AppendResponse, StoreError> {
    let request = AppendRequest {
        journal: log.to_string(),
        ..AppendRequest::default()
    };
    client
        .append(request)
        .await
        .map_err(|source| StoreError::Broker {
            log: log.to_string(),
            context: "write barrier",
            source,
        })
}

/// Reads and applies the log from the replayer's offset up to `head`,
/// overlapping the read of chunk N+1 with the blocking apply of chunk N.
///
/// If `stop` turns true first, returns early with what was applied so far
/// (a partial record stays buffered; reading on resumes after it).
pub(crate) async fn catch_up(
    client: &dyn JournalClient,
    mut replayer: Replayer,
    head: i64,
    mut stop: Option<&mut watch::Receiver<bool>>,
    on_progress: &mut (dyn FnMut(&Replayer) + Send),
) -> Result<Replayer, StoreError> {
    let log = replayer.log.clone();
    if replayer.read_offset() > head {
        return Err(StoreError::AheadOfLog {
            log,
            applied: replayer.read_offset(),
            head,
        });
    }
    while replayer.read_offset() < head {
        let start = replayer.read_offset();
        let request = ReadRequest {
            journal: log.clone(),
            offset: start,
            block: false,
            end_offset: head,
        };
        let mut stream = client
            .read(request)
            .await
            .map_err(|source| StoreError::Broker {
                log: log.clone(),
                context: "opening a replay read",
                source,
            })?;
        let mut slot = Slot::Idle(replayer);
        let pass = loop {
            let next = tokio::select! {
                biased;
                () = stopped(stop.as_deref_mut()) => None,
                next = stream.next() => Some(next),
            };
            let ready = slot.settle().await?;
            on_progress(&ready);
            match next {
                None => break Pass::Stopped(ready),
                Some(Ok(Some(chunk))) => {
                    let mut ready = ready;
                    slot = Slot::Applying(tokio::task::spawn_blocking(move || {
                        ready.apply_chunk(&chunk).map(|()| ready)
                    }));
                }
                Some(Ok(None)) => break Pass::Ended(ready),
                Some(Err(source)) => {
                    return Err(StoreError::Broker {
                        log,
                        context: "replaying",
                        source,
                    });
                }
            }
        };
        replayer = match pass {
            Pass::Stopped(replayer) => return Ok(replayer),
            Pass::Ended(replayer) => replayer,
        };
        if replayer.read_offset() == start {
            // The read ended without delivering anything below the head.
            return Err(StoreError::LogGap {
                log,
                expected: start,
                actual: head,
            });
        }
    }
    if replayer.read_offset() != replayer.position.offset {
        let offset = replayer.position.offset;
        return Err(StoreError::CorruptLog {
            log,
            offset,
            reason: format!("a record is cut off by the write head {head}"),
        });
    }
    Ok(replayer)
}

/// Resolves once `stop` turns true (or its sender is gone); never if `None`.
pub(crate) async fn stopped(stop: Option<&mut watch::Receiver<bool>>) {
    match stop {
        Some(stop) => {
            // A dropped sender means nobody can promote or close: stop too.
            let _ = stop.wait_for(|stop| *stop).await;
        }
        None => std::future::pending().await,
    }
}

/// How one read of [`catch_up`] ended.
enum Pass {
    /// The read reached its end offset.
    Ended(Replayer),
    /// The caller asked to stop.
    Stopped(Replayer),
}

/// The replayer, either free or applying a chunk on a blocking thread.
enum Slot {
    Idle(Replayer),
    Applying(tokio::task::JoinHandle<Result<Replayer, StoreError>>),
}

impl Slot {
    /// Waits for any apply in flight and returns the replayer.
    async fn settle(self) -> Result<Replayer, StoreError> {
        match self {
            Slot::Idle(replayer) => Ok(replayer),
            Slot::Applying(task) => task.await.map_err(join_error)?,
        }
    }
}
