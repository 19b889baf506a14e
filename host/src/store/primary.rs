//! The primary's store: recovery, hand-off and commits.
//!
//! [`ShardStore::open_primary`] (and [`Standby::promote`](super::Standby::promote))
//! end the same way, in [`take_over`]:
//! 1. a write barrier learns the log's head and registers;
//! 2. the local store replays the log from its position up to that head;
//! 3. a hand-off record is appended, conditional on that head and those
//!    registers, replacing the `author` register with a new id (this fences
//!    the previous primary); if another writer raced it, go back to 1.
//!
//! Then [`ShardStore::commit`] appends each transaction as one record checked
//! against the `author` register. **That append is the commit**: once it
//! returns, the transaction survives any crash, because the record is replayed
//! into whatever local store is opened next. Only after it is the record
//! applied to the local RocksDB (through the replay code itself). A crash
//! between the two leaves the local store one record behind its log, and the
//! next open replays that record, once.
//!
//! Failures that leave the local state or the commit's outcome in doubt
//! poison the store: every later commit fails with
//! [`StoreError::Poisoned`], and the shard recovers by opening the store again.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::config::{FaultAction, FaultPoint, StoreConfig};
use super::error::{StoreError, join_error};
use super::fence;
use super::local::{LocalDb, LogPosition};
use super::overlay::{TxnOverlay, WriteSet};
use super::player::{self, ReplayStats, Replayer};
use super::record::{self, Body, Record};
use crate::broker::protocol::{AppendResponse, BrokerError, JournalClient, ReadChunk, ReadRequest};
use crate::consumer::Checkpoint;

/// What opening or promoting a store did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Log offset the local store had applied through when recovery began.
    pub started_at: i64,
    /// The log's write head when the hand-off was made.
    pub head: i64,
    /// What this recovery replayed (zero for an up-to-date local store).
    pub replayed: ReplayStats,
    /// Hand-off appends tried (1 unless another writer raced).
    pub handoff_attempts: u32,
    /// This primary's author id.
    pub author: u32,
    /// Wall time of the whole recovery.
    pub elapsed: std::time::Duration,
}

/// Where a commit's record landed in the recovery log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitReceipt {
    /// Log offset of the record's first byte.
    pub begin: i64,
    /// Log offset one past its last byte.
    pub end: i64,
}

/// A shard's store while this process is its primary.
pub struct ShardStore {
    client: Arc<dyn JournalClient>,
    replayer: Option<Replayer>,
    db: Arc<LocalDb>,
    log: String,
    author: u32,
    config: StoreConfig,
    recovery: RecoveryReport,
    poisoned: Option<String>,
}

impl std::fmt::Debug for ShardStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardStore")
            .field("log", &self.log)
            .field("author", &self.author)
            .field("position", &self.replayer.as_ref().map(|r| r.position))
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl ShardStore {
    /// Opens the local store in `dir` (creating an empty one if needed),
    /// replays `log_journal` past what it has applied, fences any previous
    /// primary with a hand-off, and returns the last committed checkpoint
    /// (the default one for a new shard).
    pub async fn open_primary(
        client: Arc<dyn JournalClient>,
        log_journal: &str,
        dir: &Path,
        config: StoreConfig,
    ) -> Result<(ShardStore, Checkpoint), StoreError> {
        let started = Instant::now();
        let replayer = open_replayer(log_journal, dir, &config).await?;
        take_over(client, replayer, config, started).await
    }

    /// Starts a transaction over the committed state.
    pub fn begin_txn(&self) -> TxnOverlay {
        TxnOverlay::new(Arc::clone(&self.db), self.config.clone())
    }

    /// Starts a transaction over the committed state plus `pending`, the
    /// writes of a previous transaction that is still committing, so that a
    /// transaction can consume while its predecessor commits. The caller
    /// must not commit it before the predecessor's commit succeeded.
    pub fn begin_txn_over(&self, pending: Arc<WriteSet>) -> TxnOverlay {
        TxnOverlay::new(Arc::clone(&self.db), self.config.clone()).over(pending)
    }

    /// The recovery log journal.
    pub fn log(&self) -> &str {
        &self.log
    }

    /// This primary's author id (the value of its `author` register).
    pub fn author(&self) -> u32 {
        self.author
    }

    /// What opening (or promotion) did.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// How far the local store has applied the log.
    pub fn position(&self) -> Option<LogPosition> {
        self.replayer.as_ref().map(|replayer| replayer.position)
    }

    /// Commits `writes` and `checkpoint` as one record of the recovery log,
    /// then applies them locally. When this returns `Ok`, the transaction is
    /// durable and its writes are visible to new transactions.
    ///
    /// [`StoreError::Fenced`] means another primary took over: nothing of this
    /// transaction committed, and it must not be acknowledged.
    pub async fn commit(
        &mut self,
        writes: impl std::borrow::Borrow<WriteSet>,
        checkpoint: &Checkpoint,
    ) -> Result<CommitReceipt, StoreError> {
        let writes: &WriteSet = writes.borrow();
        if let Some(reason) = &self.poisoned {
            return Err(StoreError::Poisoned(reason.clone()));
        }
        if writes.bytes() > self.config.max_txn_bytes {
            return Err(StoreError::LimitExceeded(format!(
                "transaction writes {} bytes, more than the maximum of {}",
                writes.bytes(),
                self.config.max_txn_bytes
            )));
        }
        let replayer = self.replayer.take().ok_or_else(|| {
            StoreError::Poisoned("an earlier commit was cancelled mid-way".to_string())
        })?;
        // Until the commit finishes, the replayer is out of `self`: a commit
        // future dropped mid-way leaves the store refusing further commits.
        let (result, replayer) = self.commit_with(replayer, writes, checkpoint).await;
        self.replayer = replayer;
        if let Err(err) = &result
            && self.poisoned.is_none()
            && self.replayer.is_none()
        {
            self.poisoned = Some(err.to_string());
        }
        result
    }

    async fn commit_with(
        &mut self,
        replayer: Replayer,
        writes: &WriteSet,
        checkpoint: &Checkpoint,
    ) -> (Result<CommitReceipt, StoreError>, Option<Replayer>) {
        let position = replayer.position;
        let record = Record {
            author: self.author,
            seq: position.next_seq,
            body: Body::Commit {
                writes: writes.as_records(),
                checkpoint: Cow::Borrowed(checkpoint),
            },
        };
        let frame = match record::encode_frame(&record) {
            Ok(frame) => Bytes::from(frame),
            Err(err) => return (Err(StoreError::Encode(err)), Some(replayer)),
        };
        drop(record);
        if let Err(err) = self.fault(FaultPoint::BeforeLogAppend) {
            return (Err(err), None);
        }

        let request = fence::commit_request(&self.log, frame.clone(), self.author, position.offset);
        let response = match self.client.append(request).await {
            Ok(response) => response,
            Err(source) => match self.landed_before(&source, position.offset, &frame).await {
                Some(response) => response,
                None => {
                    let (err, keep) = self.classify_append_failure(source);
                    return (Err(err), keep.then_some(replayer));
                }
            },
        };
        if response.begin != position.offset {
            let err = StoreError::Fenced {
                log: self.log.clone(),
                reason: format!(
                    "record landed at {} instead of the expected {}",
                    response.begin, position.offset
                ),
            };
            self.poisoned = Some(err.to_string());
            return (Err(err), None);
        }
        if let Err(err) = self.fault(FaultPoint::AfterLogAppend) {
            return (Err(err), None);
        }

        // Committed. Apply exactly the logged bytes, through the replay path.
        let chunk = ReadChunk {
            offset: response.begin,
            content: frame,
        };
        let replayer = match player::apply_blocking(replayer, chunk).await {
            Ok(replayer) => replayer,
            Err(err) => {
                self.poisoned = Some(format!("the local apply failed: {err}"));
                return (Err(err), None);
            }
        };
        if replayer.position.offset != response.end
            || replayer.position.next_seq != position.next_seq + 1
        {
            let err = StoreError::LocalState(format!(
                "own commit at {}..{} did not apply (position {:?})",
                response.begin, response.end, replayer.position
            ));
            self.poisoned = Some(err.to_string());
            return (Err(err), None);
        }
        if let Err(err) = self.fault(FaultPoint::AfterLocalApply) {
            return (Err(err), None);
        }
        (
            Ok(CommitReceipt {
                begin: response.begin,
                end: response.end,
            }),
            Some(replayer),
        )
    }

    /// Whether a commit refused with a wrong offset had in fact landed: a
    /// client that resends an append whose first attempt succeeded but whose
    /// answer was lost (a broker killed after its fsync) sees the head moved
    /// by exactly that append. If the log holds exactly `frame` at `offset`,
    /// the commit is ours (the frame names this primary's author and
    /// sequence number, so no other writer produces these bytes); anything
    /// else is left to [`classify_append_failure`](Self::classify_append_failure).
    async fn landed_before(
        &self,
        source: &BrokerError,
        offset: i64,
        frame: &Bytes,
    ) -> Option<AppendResponse> {
        let BrokerError::WrongAppendOffset {
            expected,
            write_head,
            ..
        } = source
        else {
            return None;
        };
        let end = offset.checked_add(i64::try_from(frame.len()).ok()?)?;
        if *expected != offset || *write_head != end {
            return None;
        }
        let request = ReadRequest {
            journal: self.log.clone(),
            offset,
            block: false,
            end_offset: end,
        };
        let mut stream = self.client.read(request).await.ok()?;
        let mut logged = Vec::with_capacity(frame.len());
        while let Ok(Some(chunk)) = stream.next().await {
            logged.extend_from_slice(&chunk.content);
            if logged.len() >= frame.len() {
                break;
            }
        }
        if logged != frame.as_ref() {
            return None;
        }
        tracing::info!(log = %self.log, offset, "a resent commit had landed before; keeping it");
        Some(AppendResponse {
            begin: offset,
            end,
            registers: Default::default(),
        })
    }

    /// Maps a failed commit append to an error, and says whether the store
    /// stays usable (the append certainly did not land).
    fn classify_append_failure(&mut self, source: BrokerError) -> (StoreError, bool) {
        let log = self.log.clone();
        match source {
            BrokerError::RegisterMismatch { registers, .. } => {
                let err = StoreError::Fenced {
                    log,
                    reason: format!("registers are {registers}"),
                };
                self.poisoned = Some(err.to_string());
                (err, false)
            }
            BrokerError::WrongAppendOffset {
                write_head,
                expected,
                ..
            } => {
                let err = StoreError::Fenced {
                    log,
                    reason: format!(
                        "another writer moved the head from {expected} to {write_head}"
                    ),
                };
                self.poisoned = Some(err.to_string());
                (err, false)
            }
            // Refused before anything was written: nothing committed.
            source @ (BrokerError::InvalidArgument(_)
            | BrokerError::JournalNotFound(_)
            | BrokerError::NotAllowed { .. }
            | BrokerError::LimitExceeded(_)
            | BrokerError::OffsetNotYetAvailable { .. }) => (
                StoreError::Broker {
                    log,
                    context: "commit append",
                    source,
                },
                true,
            ),
            source @ (BrokerError::Unavailable(_)
            | BrokerError::Corrupt { .. }
            | BrokerError::Io { .. }) => {
                let err = StoreError::CommitUncertain { log, source };
                self.poisoned = Some(err.to_string());
                (err, false)
            }
        }
    }

    fn fault(&mut self, point: FaultPoint) -> Result<(), StoreError> {
        match self.config.fault(point) {
            FaultAction::Continue => Ok(()),
            FaultAction::Crash => {
                self.poisoned = Some(format!("injected crash at {point:?}"));
                Err(StoreError::InjectedCrash(point))
            }
        }
    }

    /// Persists the local store and closes it on a blocking thread. (Dropping
    /// a `ShardStore` also persists it, but on the dropping thread.) Open
    /// [`TxnOverlay`]s keep the database open until they are dropped.
    pub async fn close(self) -> Result<(), StoreError> {
        let ShardStore { db, replayer, .. } = self;
        drop(replayer);
        tokio::task::spawn_blocking(move || {
            let flushed = db.flush();
            drop(db);
            flushed
        })
        .await
        .map_err(join_error)?
    }

    /// Writes a consistent copy of the local store to `dest` (which must not
    /// exist). A store opened from the copy replays only the log written
    /// after it: this bounds the replay of a new replica.
    pub async fn snapshot(&self, dest: &Path) -> Result<(), StoreError> {
        let db = Arc::clone(&self.db);
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || db.snapshot(&dest))
            .await
            .map_err(join_error)?
    }
}

/// Opens (or creates) the local store of `log` in `dir` on a blocking thread.
pub(crate) async fn open_replayer(
    log: &str,
    dir: &Path,
    config: &StoreConfig,
) -> Result<Replayer, StoreError> {
    let dir = dir.to_path_buf();
    let log = log.to_string();
    let max_record_bytes = config.max_record_bytes;
    tokio::task::spawn_blocking(move || {
        let opened = LocalDb::open(&dir, &log)?;
        Ok(Replayer::new(
            Arc::new(opened.db),
            log,
            opened.position,
            opened.checkpoint,
            max_record_bytes,
        ))
    })
    .await
    .map_err(join_error)?
}

/// Replays `replayer` to the log's head and injects a hand-off (see the
/// module docs), making this process the primary.
pub(crate) async fn take_over(
    client: Arc<dyn JournalClient>,
    mut replayer: Replayer,
    config: StoreConfig,
    started: Instant,
) -> Result<(ShardStore, Checkpoint), StoreError> {
    let log = replayer.log.clone();
    let started_at = replayer.position.offset;
    let before = replayer.stats;
    let author = fence::new_author(replayer.position.author);
    let mut attempts = 0;
    let head = loop {
        if attempts >= config.handoff_attempts {
            return Err(StoreError::HandoffContended { log, attempts });
        }
        attempts += 1;
        let observed = match player::barrier(client.as_ref(), &log).await {
            Ok(observed) => observed,
            Err(err) if err.is_transient() => {
                tokio::time::sleep(config.retry_backoff).await;
                continue;
            }
            Err(err) => return Err(err),
        };
        replayer =
            player::catch_up(client.as_ref(), replayer, observed.end, None, &mut |_| {}).await?;

        let record = Record {
            author,
            seq: replayer.position.next_seq,
            body: Body::Handoff,
        };
        let frame = Bytes::from(record::encode_frame(&record).map_err(StoreError::Encode)?);
        let request = fence::handoff_request(
            &log,
            frame.clone(),
            &observed.registers,
            author,
            observed.end,
        );
        match client.append(request).await {
            Ok(response) => {
                let chunk = ReadChunk {
                    offset: response.begin,
                    content: frame,
                };
                replayer = player::apply_blocking(replayer, chunk).await?;
                if replayer.position.author != author {
                    return Err(StoreError::LocalState(format!(
                        "own hand-off at {} did not apply",
                        response.begin
                    )));
                }
                break observed.end;
            }
            // Another writer got there first: read what it wrote, then retry.
            Err(BrokerError::WrongAppendOffset { .. } | BrokerError::RegisterMismatch { .. }) => {}
            // A hand-off of unknown outcome is harmless: the next attempt
            // reads it (if it landed) and hands off again.
            Err(source) if source.is_transient() => tokio::time::sleep(config.retry_backoff).await,
            Err(source) => {
                return Err(StoreError::Broker {
                    log,
                    context: "hand-off append",
                    source,
                });
            }
        }
    };

    let replayed = ReplayStats {
        bytes: replayer.stats.bytes - before.bytes,
        commits: replayer.stats.commits - before.commits,
        // The own hand-off is not part of the replay.
        handoffs: replayer.stats.handoffs - before.handoffs - 1,
        skipped: replayer.stats.skipped - before.skipped,
    };
    let recovery = RecoveryReport {
        started_at,
        head,
        replayed: ReplayStats {
            bytes: replayed
                .bytes
                .saturating_sub((replayer.position.offset - head) as u64),
            ..replayed
        },
        handoff_attempts: attempts,
        author,
        elapsed: started.elapsed(),
    };
    let checkpoint = replayer.checkpoint.clone();
    let store = ShardStore {
        client,
        db: Arc::clone(&replayer.db),
        replayer: Some(replayer),
        log,
        author,
        config,
        recovery,
        poisoned: None,
    };
    Ok((store, checkpoint))
}

#[cfg(test)]
mod test {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::broker::protocol::{AppendRequest, JournalChange};
    use crate::broker::spec::JournalSpec;
    use crate::store::fence::AUTHOR_REGISTER;
    use crate::store::testing::{LOG, MemoryJournals, checkpoint_at, commit, contents, pairs};

    async fn open(
        client: &Arc<MemoryJournals>,
        dir: &Path,
        config: StoreConfig,
    ) -> Result<(ShardStore, Checkpoint), StoreError> {
        ShardStore::open_primary(client.clone(), LOG, dir, config).await
    }

    fn crash_at(point: FaultPoint) -> (StoreConfig, Arc<AtomicBool>) {
        let armed = Arc::new(AtomicBool::new(true));
        let hook_armed = Arc::clone(&armed);
        let config = StoreConfig {
            fault_hook: Some(Arc::new(move |at| {
                if at == point && hook_armed.swap(false, Ordering::SeqCst) {
                    FaultAction::Crash
                } else {
                    FaultAction::Continue
                }
            })),
            ..StoreConfig::default()
        };
        (config, armed)
    }

    #[tokio::test]
    async fn a_commit_survives_reopening_the_same_directory_without_replay() {
        let client = MemoryJournals::new(&[LOG], 1 << 20);
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, restored) = open(&client, dir.path(), StoreConfig::default())
            .await
            .expect("open");
        assert_eq!(restored, Checkpoint::default());
        commit(
            &mut store,
            &[("a", Some("1")), ("b", Some("2"))],
            &checkpoint_at(10),
        )
        .await
        .expect("commit");
        commit(
            &mut store,
            &[("a", None), ("c", Some("3"))],
            &checkpoint_at(20),
        )
        .await
        .expect("commit");
        let head = store.position().expect("position").offset;
        store.close().await.expect("close");

        let (store, restored) = open(&client, dir.path(), StoreConfig::default())
            .await
            .expect("reopen");
        assert_eq!(restored, checkpoint_at(20));
        assert_eq!(contents(&store), pairs(&[("b", "2"), ("c", "3")]));
        assert_eq!(store.recovery().started_at, head);
        assert_eq!(store.recovery().replayed, ReplayStats::default());
    }

    #[tokio::test]
    async fn an_empty_directory_recovers_identical_state_from_the_log_alone() {
        // 5-byte chunks: every record straddles several reads.
        let client = MemoryJournals::new(&[LOG], 5);
        let first = tempfile::tempdir().expect("tempdir");
        let (mut store, _) = open(&client, first.path(), StoreConfig::default())
            .await
            .expect("open");
        for round in 0..20 {
            let key = format!("k{:02}", round % 7);
            let value = format!("v{round}");
            let puts = [(key.as_str(), Some(value.as_str())), ("gone", None)];
            commit(&mut store, &puts, &checkpoint_at(round))
                .await
                .expect("commit");
        }
        let expected = contents(&store);
        assert_eq!(expected.len(), 7);
        drop(store);

        let fresh = tempfile::tempdir().expect("tempdir");
        let (store, restored) = open(&client, fresh.path(), StoreConfig::default())
            .await
            .expect("recover");
        assert_eq!(restored, checkpoint_at(19));
        assert_eq!(contents(&store), expected);
        assert_eq!(store.recovery().started_at, 0);
        assert_eq!(store.recovery().replayed.commits, 20);
        assert_eq!(store.recovery().replayed.handoffs, 1);
    }

    #[tokio::test]
    async fn a_crash_between_log_append_and_local_apply_is_replayed_exactly_once() {
        let client = MemoryJournals::new(&[LOG], 1 << 20);
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, _) = crash_at(FaultPoint::AfterLogAppend);
        let (mut store, _) = open(&client, dir.path(), config).await.expect("open");
        let err = commit(&mut store, &[("k", Some("v"))], &checkpoint_at(1))
            .await
            .expect_err("crash");
        assert!(
            matches!(err, StoreError::InjectedCrash(FaultPoint::AfterLogAppend)),
            "{err}"
        );
        // The local store never saw it...
        assert!(contents(&store).is_empty());
        // ...and the crashed store refuses to go on.
        let err = commit(&mut store, &[("x", Some("y"))], &checkpoint_at(2))
            .await
            .expect_err("poisoned");
        assert!(matches!(err, StoreError::Poisoned(_)), "{err}");
        drop(store);

        let (store, restored) = open(&client, dir.path(), StoreConfig::default())
            .await
            .expect("reopen");
        assert_eq!(restored, checkpoint_at(1), "the logged commit is committed");
        assert_eq!(contents(&store), pairs(&[("k", "v")]));
        assert_eq!(store.recovery().replayed.commits, 1);
        drop(store);

        let (store, _) = open(&client, dir.path(), StoreConfig::default())
            .await
            .expect("reopen");
        assert_eq!(
            store.recovery().replayed.commits,
            0,
            "applied once, never again"
        );
    }

    #[tokio::test]
    async fn a_crash_before_the_log_append_commits_nothing() {
        let client = MemoryJournals::new(&[LOG], 1 << 20);
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, _) = crash_at(FaultPoint::BeforeLogAppend);
        let (mut store, _) = open(&client, dir.path(), config).await.expect("open");
        commit(&mut store, &[("k", Some("v"))], &checkpoint_at(1))
            .await
            .expect_err("crash");
        drop(store);
        let fresh = tempfile::tempdir().expect("tempdir");
        let (store, restored) = open(&client, fresh.path(), StoreConfig::default())
            .await
            .expect("recover");
        assert_eq!(restored, Checkpoint::default());
        assert!(contents(&store).is_empty());
    }

    #[tokio::test]
    async fn a_zombie_primary_is_fenced_and_its_commit_is_never_applied() {
        let client = MemoryJournals::new(&[LOG], 1 << 20);
        let (dir_a, dir_b, dir_c) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let (mut a, _) = open(&client, dir_a.path(), StoreConfig::default())
            .await
            .expect("open A");
        commit(&mut a, &[("x", Some("1"))], &checkpoint_at(1))
            .await
            .expect("A commits");

        let (mut b, restored) = open(&client, dir_b.path(), StoreConfig::default())
            .await
            .expect("open B");
        assert_eq!(restored, checkpoint_at(1));
        let authors: Vec<String> = client
            .registers(LOG)
            .values(AUTHOR_REGISTER)
            .map(str::to_string)
            .collect();
        assert_eq!(
            authors,
            vec![fence::author_value(b.author())],
            "exactly B's author"
        );

        let log_before = client.content(LOG);
        let err = commit(&mut a, &[("x", Some("2"))], &checkpoint_at(2))
            .await
            .expect_err("fenced");
        assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
        assert_eq!(
            client.content(LOG),
            log_before,
            "the zombie's record never landed"
        );
        let err = commit(&mut a, &[("x", Some("3"))], &checkpoint_at(3))
            .await
            .expect_err("still out");
        assert!(!err.is_transient());
        assert_eq!(
            contents(&a),
            pairs(&[("x", "1")]),
            "nor did the zombie apply it locally"
        );

        commit(&mut b, &[("y", Some("1"))], &checkpoint_at(4))
            .await
            .expect("B continues");
        let expected = pairs(&[("x", "1"), ("y", "1")]);
        assert_eq!(contents(&b), expected);
        drop((a, b));

        let (c, restored) = open(&client, dir_c.path(), StoreConfig::default())
            .await
            .expect("open C");
        assert_eq!(restored, checkpoint_at(4));
        assert_eq!(contents(&c), expected);
        drop(c);
        let (a, restored) = open(&client, dir_a.path(), StoreConfig::default())
            .await
            .expect("reopen A");
        assert_eq!(restored, checkpoint_at(4));
        assert_eq!(contents(&a), expected);
    }

    #[tokio::test]
    async fn racing_openers_leave_exactly_one_primary_able_to_commit() {
        let client = MemoryJournals::new(&[LOG], 1 << 20);
        let (dir_a, dir_b) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let (a, b) = tokio::join!(
            open(&client, dir_a.path(), StoreConfig::default()),
            open(&client, dir_b.path(), StoreConfig::default()),
        );
        let ((mut a, _), (mut b, _)) = (a.expect("open A"), b.expect("open B"));
        let ra = commit(&mut a, &[("from", Some("a"))], &checkpoint_at(1)).await;
        let rb = commit(&mut b, &[("from", Some("b"))], &checkpoint_at(1)).await;
        assert_eq!(ra.is_ok() as u8 + rb.is_ok() as u8, 1, "{ra:?} {rb:?}");
    }

    #[tokio::test]
    async fn a_record_whose_author_made_no_handoff_is_skipped_on_replay() {
        let client = MemoryJournals::new(&[LOG], 1 << 20);
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, _) = open(&client, dir.path(), StoreConfig::default())
            .await
            .expect("open");
        commit(&mut store, &[("k", Some("1"))], &checkpoint_at(1))
            .await
            .expect("commit");
        let next_seq = store.position().expect("position").next_seq;
        drop(store);
        // A writer that ignores the fence (as if the registers were lost).
        let checkpoint = checkpoint_at(99);
        let rogue = Record {
            author: 12345,
            seq: next_seq,
            body: Body::Commit {
                writes: vec![record::Write::Put {
                    key: b"k",
                    value: b"rogue",
                }],
                checkpoint: Cow::Borrowed(&checkpoint),
            },
        };
        let frame = record::encode_frame(&rogue).expect("encode");
        let request = AppendRequest {
            journal: LOG.into(),
            content: frame.into(),
            ..Default::default()
        };
        client.append(request).await.expect("unfenced append");

        let fresh = tempfile::tempdir().expect("tempdir");
        let (store, restored) = open(&client, fresh.path(), StoreConfig::default())
            .await
            .expect("recover");
        assert_eq!(restored, checkpoint_at(1));
        assert_eq!(contents(&store), pairs(&[("k", "1")]));
        assert_eq!(store.recovery().replayed.skipped, 1);
    }

    #[tokio::test]
    async fn an_append_of_unknown_outcome_poisons_the_store_and_reopening_resolves_it() {
        let client = MemoryJournals::new(&[LOG], 1 << 20);
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, _) = open(&client, dir.path(), StoreConfig::default())
            .await
            .expect("open");
        client.land_next_append_then_fail();
        let err = commit(&mut store, &[("k", Some("v"))], &checkpoint_at(1))
            .await
            .expect_err("doubt");
        assert!(matches!(err, StoreError::CommitUncertain { .. }), "{err}");
        let err = commit(&mut store, &[("k", Some("w"))], &checkpoint_at(2))
            .await
            .expect_err("poisoned");
        assert!(matches!(err, StoreError::Poisoned(_)), "{err}");
        drop(store);
        let (store, restored) = open(&client, dir.path(), StoreConfig::default())
            .await
            .expect("reopen");
        assert_eq!(restored, checkpoint_at(1), "it had landed, so it committed");
        assert_eq!(contents(&store), pairs(&[("k", "v")]));
    }

    /// Found by the chaos harness: a broker killed after its fsync lost the
    /// answer, the gRPC client resent the commit, and the resend's wrong
    /// offset stopped the shard as "fenced" though no one else wrote.
    #[tokio::test]
    async fn a_resent_commit_that_had_landed_is_kept_not_taken_for_a_fence() {
        let client = MemoryJournals::new(&[LOG], 1 << 20);
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, _) = open(&client, dir.path(), StoreConfig::default())
            .await
            .expect("open");
        client.land_next_append_then_resend();
        commit(&mut store, &[("k", Some("v"))], &checkpoint_at(1))
            .await
            .expect("the landed commit is recognized as ours");
        commit(&mut store, &[("k", Some("w"))], &checkpoint_at(2))
            .await
            .expect("the store stays usable");
        drop(store);
        let empty = tempfile::tempdir().expect("tempdir");
        let (store, restored) = open(&client, empty.path(), StoreConfig::default())
            .await
            .expect("recover from the log alone");
        assert_eq!(restored, checkpoint_at(2));
        assert_eq!(contents(&store), pairs(&[("k", "w")]));
    }

    #[tokio::test]
    async fn a_different_record_at_the_expected_offset_is_still_a_fence() {
        let client = MemoryJournals::new(&[LOG], 1 << 20);
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, _) = open(&client, dir.path(), StoreConfig::default())
            .await
            .expect("open");
        let head = store.position().expect("position").offset;
        // Another writer's bytes move the head; our commit's expected offset
        // is now wrong and the log does not hold our frame there.
        client
            .append(AppendRequest {
                journal: LOG.into(),
                content: Bytes::from_static(b"someone else"),
                ..Default::default()
            })
            .await
            .expect("foreign append");
        assert!(client.content(LOG).len() as i64 > head);
        let err = commit(&mut store, &[("k", Some("v"))], &checkpoint_at(1))
            .await
            .expect_err("fenced");
        assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_corrupt_record_is_reported_and_never_applied() {
        let client = MemoryJournals::new(&[LOG], 1 << 20);
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = open(&client, dir.path(), StoreConfig::default())
            .await
            .expect("open");
        let next_seq = store.position().expect("position").next_seq;
        let author = store.author();
        drop(store);
        let checkpoint = checkpoint_at(1);
        let record = Record {
            author,
            seq: next_seq,
            body: Body::Commit {
                writes: vec![record::Write::Put {
                    key: b"k",
                    value: b"v",
                }],
                checkpoint: Cow::Borrowed(&checkpoint),
            },
        };
        let mut frame = record::encode_frame(&record).expect("encode");
        let last = frame.len() - 1;
        frame[last] ^= 0x40;
        let begin = client.content(LOG).len() as i64;
        let request = AppendRequest {
            journal: LOG.into(),
            content: frame.into(),
            ..Default::default()
        };
        client.append(request).await.expect("append");

        let err = open(&client, dir.path(), StoreConfig::default())
            .await
            .expect_err("corrupt");
        match err {
            StoreError::CorruptLog { offset, reason, .. } => {
                assert_eq!(offset, begin);
                assert!(reason.contains("checksum"), "{reason}");
            }
            other => panic!("expected CorruptLog, got {other}"),
        }
    }

    #[tokio::test]
    async fn a_local_store_ahead_of_a_recreated_log_is_refused() {
        let client = MemoryJournals::new(&[LOG], 1 << 20);
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, _) = open(&client, dir.path(), StoreConfig::default())
            .await
            .expect("open");
        commit(&mut store, &[("k", Some("v"))], &checkpoint_at(1))
            .await
            .expect("commit");
        drop(store);
        client
            .apply(vec![
                JournalChange::Delete(LOG.into()),
                JournalChange::Upsert(JournalSpec::new(LOG)),
            ])
            .await
            .expect("recreate");
        let err = open(&client, dir.path(), StoreConfig::default())
            .await
            .expect_err("ahead");
        assert!(
            matches!(err, StoreError::AheadOfLog { head: 0, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_directory_built_from_another_log_is_refused() {
        let other = "recovery/shard-001";
        let client = MemoryJournals::new(&[LOG, other], 1 << 20);
        let dir = tempfile::tempdir().expect("tempdir");
        drop(
            open(&client, dir.path(), StoreConfig::default())
                .await
                .expect("open"),
        );
        let err =
            ShardStore::open_primary(client.clone(), other, dir.path(), StoreConfig::default())
                .await
                .expect_err("wrong log");
        assert!(matches!(err, StoreError::WrongLog { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_snapshot_bounds_the_replay_of_a_new_replica() {
        let client = MemoryJournals::new(&[LOG], 1 << 20);
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, _) = open(&client, dir.path(), StoreConfig::default())
            .await
            .expect("open");
        for n in 0..5 {
            commit(
                &mut store,
                &[("before", Some(&n.to_string()))],
                &checkpoint_at(n),
            )
            .await
            .expect("commit");
        }
        let parent = tempfile::tempdir().expect("tempdir");
        let copy = parent.path().join("snapshot");
        store.snapshot(&copy).await.expect("snapshot");
        commit(&mut store, &[("after", Some("1"))], &checkpoint_at(5))
            .await
            .expect("commit");
        let expected = contents(&store);
        drop(store);

        let (replica, restored) = open(&client, &copy, StoreConfig::default())
            .await
            .expect("open copy");
        assert_eq!(restored, checkpoint_at(5));
        assert_eq!(contents(&replica), expected);
        assert_eq!(
            replica.recovery().replayed.commits,
            1,
            "only the commit after the snapshot"
        );
    }

    #[tokio::test]
    async fn an_oversized_write_set_is_refused_before_it_reaches_the_log() {
        let client = MemoryJournals::new(&[LOG], 1 << 20);
        let dir = tempfile::tempdir().expect("tempdir");
        let config = StoreConfig {
            max_txn_bytes: 8,
            ..StoreConfig::default()
        };
        let (mut store, _) = open(&client, dir.path(), config).await.expect("open");
        let before = client.content(LOG).len();
        let mut writes = WriteSet::new();
        writes.insert(
            b"key".to_vec(),
            super::super::Mutation::Put(b"123456".to_vec()),
        );
        let err = store
            .commit(writes, &checkpoint_at(1))
            .await
            .expect_err("too big");
        assert!(matches!(err, StoreError::LimitExceeded(_)), "{err}");
        assert_eq!(client.content(LOG).len(), before);
        commit(&mut store, &[("k", Some("v"))], &checkpoint_at(1))
            .await
            .expect("still usable");
    }
}
