//! Hot standbys: a replica that tails a shard's recovery log into its own
//! local store, ready to take over.
//!
//! A [`Standby`] first backfills (reads the log up to the head it saw when it
//! started), then tails it with a blocking read, applying each chunk as it
//! arrives. [`Standby::promote`] stops tailing at a chunk boundary, reads
//! whatever the log gained since, injects the hand-off that fences the old
//! primary, and returns a [`ShardStore`]: the takeover costs one barrier,
//! the unread tail, and one append, never a replay from the start.
//!
//! Progress is observable without polling: [`Standby::wait_for_offset`]
//! resolves once the standby has applied through an offset, and
//! [`Standby::progress`] reports the phase (Gazette's BACKFILL, then STANDBY).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::StoreConfig;
use super::error::{StoreError, join_error};
use super::player::{self, Replayer};
use super::primary::{self, ShardStore};
use crate::broker::protocol::{JournalClient, ReadRequest};
use crate::consumer::Checkpoint;

/// Where a standby is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StandbyPhase {
    /// Reading the log up to the head it saw at start (Gazette's BACKFILL).
    Backfilling {
        /// The head being read up to.
        head: i64,
    },
    /// Caught up and tailing the log (Gazette's STANDBY): ready to promote.
    Tailing,
    /// Tailing stopped on an error; promoting returns it.
    Failed {
        /// The error.
        reason: String,
    },
}

/// A standby's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyProgress {
    /// Log offset through which the local store has applied the log.
    pub applied_offset: i64,
    /// What the standby is doing.
    pub phase: StandbyPhase,
}

/// A replica tailing a recovery log. Dropping it stops the tailing.
pub struct Standby {
    client: Arc<dyn JournalClient>,
    log: String,
    config: StoreConfig,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Result<Replayer, StoreError>>>,
    progress: watch::Receiver<StandbyProgress>,
}

impl Standby {
    /// Opens (or creates) the local store in `dir` and starts tailing
    /// `log_journal` into it.
    pub async fn start(
        client: Arc<dyn JournalClient>,
        log_journal: &str,
        dir: &Path,
        config: StoreConfig,
    ) -> Result<Standby, StoreError> {
        let replayer = primary::open_replayer(log_journal, dir, &config).await?;
        let head = player::barrier(client.as_ref(), log_journal).await?.end;
        let applied = replayer.position.offset;
        if applied > head {
            return Err(StoreError::AheadOfLog {
                log: log_journal.to_string(),
                applied,
                head,
            });
        }
        let phase = if applied >= head {
            StandbyPhase::Tailing
        } else {
            StandbyPhase::Backfilling { head }
        };
        let (progress_tx, progress) = watch::channel(StandbyProgress {
            applied_offset: applied,
            phase,
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(
            Arc::clone(&client),
            replayer,
            head,
            progress_tx,
            stop_rx,
            config.clone(),
        ));
        Ok(Standby {
            client,
            log: log_journal.to_string(),
            config,
            stop,
            task: Some(task),
            progress,
        })
    }

    /// Log offset through which the local store has applied the log.
    pub fn applied_offset(&self) -> i64 {
        self.progress.borrow().applied_offset
    }

    /// The current progress.
    pub fn progress(&self) -> StandbyProgress {
        self.progress.borrow().clone()
    }

    /// Waits until the standby has applied the log through `offset`.
    pub async fn wait_for_offset(&self, offset: i64) -> Result<StandbyProgress, StoreError> {
        let mut progress = self.progress.clone();
        let reached = progress
            .wait_for(|p| {
                p.applied_offset >= offset || matches!(p.phase, StandbyPhase::Failed { .. })
            })
            .await
            .map(|p| p.clone())
            .map_err(|_| self.stopped("tailing ended"))?;
        match reached.phase {
            StandbyPhase::Failed { reason } => Err(self.stopped(&reason)),
            _ => Ok(reached),
        }
    }

    fn stopped(&self, reason: &str) -> StoreError {
        StoreError::StandbyStopped {
            log: self.log.clone(),
            reason: reason.to_string(),
        }
    }

    /// Stops tailing and takes over as primary: reads the log through its
    /// head, fences the previous primary with a hand-off and returns the
    /// store with the last committed checkpoint.
    pub async fn promote(mut self) -> Result<(ShardStore, Checkpoint), StoreError> {
        let started = Instant::now();
        let replayer = self.halt().await?;
        primary::take_over(
            Arc::clone(&self.client),
            replayer,
            self.config.clone(),
            started,
        )
        .await
    }

    /// Stops tailing, persists the local store and closes it.
    pub async fn close(mut self) -> Result<(), StoreError> {
        let replayer = self.halt().await?;
        tokio::task::spawn_blocking(move || {
            let flushed = replayer.db.flush();
            drop(replayer);
            flushed
        })
        .await
        .map_err(join_error)?
    }

    async fn halt(&mut self) -> Result<Replayer, StoreError> {
        self.stop.send_replace(true);
        let task = self
            .task
            .take()
            .ok_or_else(|| self.stopped("already stopped"))?;
        task.await.map_err(join_error)?
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// The standby's task: backfill, then tail until stopped.
async fn run(
    client: Arc<dyn JournalClient>,
    replayer: Replayer,
    head: i64,
    progress: watch::Sender<StandbyProgress>,
    mut stop: watch::Receiver<bool>,
    config: StoreConfig,
) -> Result<Replayer, StoreError> {
    let result = backfill_then_tail(
        client.as_ref(),
        replayer,
        head,
        &progress,
        &mut stop,
        &config,
    )
    .await;
    if let Err(err) = &result {
        let applied_offset = progress.borrow().applied_offset;
        progress.send_replace(StandbyProgress {
            applied_offset,
            phase: StandbyPhase::Failed {
                reason: err.to_string(),
            },
        });
    }
    result
}

async fn backfill_then_tail(
    client: &dyn JournalClient,
    replayer: Replayer,
    head: i64,
    progress: &watch::Sender<StandbyProgress>,
    stop: &mut watch::Receiver<bool>,
    config: &StoreConfig,
) -> Result<Replayer, StoreError> {
    let report = |replayer: &Replayer| {
        let applied_offset = replayer.position.offset;
        let phase = if applied_offset >= head {
            StandbyPhase::Tailing
        } else {
            StandbyPhase::Backfilling { head }
        };
        progress.send_replace(StandbyProgress {
            applied_offset,
            phase,
        });
    };
    let mut replayer = player::catch_up(
        client,
        replayer,
        head,
        Some(&mut *stop),
        &mut |r: &Replayer| report(r),
    )
    .await?;
    report(&replayer);

    let log = replayer.log.clone();
    loop {
        if *stop.borrow() {
            return Ok(replayer);
        }
        let request = ReadRequest {
            journal: log.clone(),
            offset: replayer.read_offset(),
            block: true,
            end_offset: 0,
        };
        let opened = tokio::select! {
            biased;
            () = player::stopped(Some(&mut *stop)) => return Ok(replayer),
            opened = client.read(request) => opened,
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(source) if source.is_transient() => {
                back_off(stop, config).await;
                continue;
            }
            Err(source) => {
                return Err(StoreError::Broker {
                    log,
                    context: "opening the tail read",
                    source,
                });
            }
        };
        loop {
            // Dropping a pending read on stop is safe: reading resumes from
            // what was applied, not from what the stream had buffered.
            let next = tokio::select! {
                biased;
                () = player::stopped(Some(&mut *stop)) => return Ok(replayer),
                next = stream.next() => next,
            };
            match next {
                Ok(Some(chunk)) => {
                    replayer = player::apply_blocking(replayer, chunk).await?;
                    report(&replayer);
                }
                Ok(None) => break,
                Err(source) if source.is_transient() => {
                    back_off(stop, config).await;
                    break;
                }
                Err(source) => {
                    return Err(StoreError::Broker {
                        log,
                        context: "tailing",
                        source,
                    });
                }
            }
        }
    }
}

/// Sleeps for the retry back-off, or less if stopped meanwhile.
async fn back_off(stop: &mut watch::Receiver<bool>, config: &StoreConfig) {
    tokio::select! {
        () = player::stopped(Some(stop)) => {}
        () = tokio::time::sleep(config.retry_backoff) => {}
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::store::testing::{LOG, MemoryJournals, checkpoint_at, commit, contents};

    async fn primary(client: &Arc<MemoryJournals>, dir: &Path) -> ShardStore {
        ShardStore::open_primary(client.clone(), LOG, dir, StoreConfig::default())
            .await
            .expect("open primary")
            .0
    }

    #[tokio::test]
    async fn a_standby_backfills_tails_and_promotes_without_replaying_from_the_start() {
        let client = MemoryJournals::new(&[LOG], 64);
        let (dir_a, dir_s) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let mut a = primary(&client, dir_a.path()).await;
        for n in 0..10 {
            let value = n.to_string();
            commit(&mut a, &[("count", Some(&value))], &checkpoint_at(n))
                .await
                .expect("commit");
        }

        let standby = Standby::start(client.clone(), LOG, dir_s.path(), StoreConfig::default())
            .await
            .expect("start standby");
        let head = a.position().expect("position").offset;
        let reached = standby.wait_for_offset(head).await.expect("backfill");
        assert_eq!(reached.phase, StandbyPhase::Tailing);

        // While tailing, new commits arrive through the blocking read.
        for n in 10..15 {
            let value = n.to_string();
            commit(
                &mut a,
                &[("count", Some(&value)), (&value, Some("x"))],
                &checkpoint_at(n),
            )
            .await
            .expect("commit");
        }
        let head = a.position().expect("position").offset;
        standby.wait_for_offset(head).await.expect("tail");
        assert_eq!(standby.applied_offset(), head);

        let (mut b, restored) = standby.promote().await.expect("promote");
        assert_eq!(restored, checkpoint_at(14));
        assert_eq!(
            b.recovery().started_at,
            head,
            "promotion started where tailing stopped"
        );
        assert_eq!(
            b.recovery().replayed.commits,
            0,
            "nothing was replayed at promotion"
        );
        assert_eq!(contents(&b), contents(&a));

        let err = commit(&mut a, &[("count", Some("zombie"))], &checkpoint_at(15))
            .await
            .expect_err("the old primary is fenced");
        assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
        commit(&mut b, &[("count", Some("15"))], &checkpoint_at(15))
            .await
            .expect("B commits");
        assert!(contents(&b).contains(&("count".to_string(), "15".to_string())));
    }

    #[tokio::test]
    async fn a_promotion_reads_commits_the_standby_had_not_yet_applied() {
        let client = MemoryJournals::new(&[LOG], 1 << 20);
        let (dir_a, dir_s) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let mut a = primary(&client, dir_a.path()).await;
        let standby = Standby::start(client.clone(), LOG, dir_s.path(), StoreConfig::default())
            .await
            .expect("start standby");
        // Stop tailing first, so the next commits reach the log only.
        let mut standby = standby;
        let replayer = standby.halt().await.expect("halt");
        let standby_offset = replayer.position.offset;
        commit(&mut a, &[("late", Some("1"))], &checkpoint_at(7))
            .await
            .expect("commit");

        let (b, restored) = primary::take_over(
            client.clone(),
            replayer,
            StoreConfig::default(),
            Instant::now(),
        )
        .await
        .expect("promote");
        assert_eq!(restored, checkpoint_at(7));
        assert_eq!(b.recovery().started_at, standby_offset);
        assert_eq!(b.recovery().replayed.commits, 1);
        assert_eq!(contents(&b), contents(&a));
    }

    #[tokio::test]
    async fn a_standby_promoted_during_backfill_stops_it_and_still_reads_through_to_the_head() {
        let client = MemoryJournals::new(&[LOG], 16);
        let (dir_a, dir_s) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let mut a = primary(&client, dir_a.path()).await;
        for n in 0..20 {
            let key = format!("k{n}");
            commit(&mut a, &[(&key, Some("v"))], &checkpoint_at(n))
                .await
                .expect("commit");
        }
        client.pause_reads();
        let standby = Standby::start(client.clone(), LOG, dir_s.path(), StoreConfig::default())
            .await
            .expect("start standby");
        assert!(matches!(
            standby.progress().phase,
            StandbyPhase::Backfilling { .. }
        ));
        // `promote` signals the stop before the reads resume, so the
        // backfill ends with nothing applied and promotion does the reading.
        let (promoted, ()) = tokio::join!(standby.promote(), async { client.resume_reads() });
        let (b, restored) = promoted.expect("promote");
        assert_eq!(b.recovery().started_at, 0);
        assert_eq!(restored, checkpoint_at(19));
        assert_eq!(contents(&b), contents(&a));
    }

    #[tokio::test]
    async fn a_standby_whose_log_is_deleted_reports_failure_through_its_progress() {
        let client = MemoryJournals::new(&[LOG], 1 << 20);
        let dir = tempfile::tempdir().expect("tempdir");
        let standby = Standby::start(client.clone(), LOG, dir.path(), StoreConfig::default())
            .await
            .expect("start standby");
        assert_eq!(
            standby.progress().phase,
            StandbyPhase::Tailing,
            "an empty log is caught up"
        );
        client
            .apply(vec![crate::broker::protocol::JournalChange::Delete(
                LOG.into(),
            )])
            .await
            .expect("delete");
        let err = standby.wait_for_offset(1).await.expect_err("tailing fails");
        assert!(matches!(err, StoreError::StandbyStopped { .. }), "{err}");
        let err = standby.promote().await.expect_err("nothing to promote");
        assert!(!matches!(err, StoreError::Fenced { .. }), "{err}");
    }
}
