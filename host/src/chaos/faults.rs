//! Injecting one planned fault and measuring the recovery that follows.
//!
//! - **Kill / graceful stop** of a server: SIGKILL (or SIGTERM, which must
//!   end in exit status 0 within [`limits::CHAOS_GRACEFUL_STOP_TIMEOUT_MS`]),
//!   the planned wait, a restart on the same data directory and port, then
//!   the times until it serves and until every shard is PRIMARY again.
//! - **Kill of the chunker**: SIGKILL and an immediate restart as a new
//!   producer (new streams); recovery is the time until its setup is done.
//! - **Pause**: SIGSTOP for the planned time, SIGCONT, then the time until
//!   every shard is PRIMARY.
//! - **Takeover** (split topology): the consumer host A is paused; a new
//!   host B (new data directory, new port) gets the summer module and A's
//!   shard specs, recovers the shards from their recovery logs and fences A;
//!   A is resumed and must step every shard down within
//!   [`limits::CHAOS_FENCE_TIMEOUT_MS`] (its next commit is rejected by the
//!   recovery log's author register) instead of being trusted; then A is
//!   stopped and B is the consumer host from then on.
//!
//! - **Disk damage**: a kill of the broker with file surgery on its data
//!   directory before the restart, and checks after it (see the `disk`
//!   module).
//!
//! A recovery that does not finish within
//! [`limits::CHAOS_RECOVERY_TIMEOUT_MS`] fails the run, and the run goes on.

use std::time::{Duration, Instant};

use super::cluster::ClusterError;
use super::disk::DiskPlan;
use super::harness::{Harness, stop_gracefully};
use super::probe;
use super::process::Sig;
use super::report::{FaultRecord, Recovery};
use super::schedule::{Fault, PlannedFault, Target};
use crate::limits;
use crate::runtime::guests;

fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

fn seconds(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".to_string(), |ms| format!("{:.1} s", ms as f64 / 1e3))
}

impl Harness<'_> {
    /// Injects `planned` now and waits for the recovery.
    pub(super) async fn inject(
        &mut self,
        planned: &PlannedFault,
    ) -> Result<FaultRecord, ClusterError> {
        let mut record = FaultRecord {
            planned: *planned,
            at_ms: millis(self.started.elapsed()),
            recovery: Recovery::default(),
            notes: Vec::new(),
            failure: None,
            disk: None,
        };
        match planned.fault {
            Fault::Kill {
                target: Target::Chunker,
                restart_after,
            } => self.kill_chunker(restart_after, &mut record).await?,
            Fault::Kill {
                target,
                restart_after,
            } => {
                self.stop_and_restart(target, Sig::Kill, restart_after, &mut record)
                    .await?
            }
            Fault::Terminate {
                target,
                restart_after,
            } => {
                self.stop_and_restart(target, Sig::Term, restart_after, &mut record)
                    .await?
            }
            Fault::Pause { target, paused_for } => {
                self.pause(target, paused_for, &mut record).await?
            }
            Fault::Takeover => self.takeover(&mut record).await?,
            Fault::DiskDamage {
                restart_after,
                partition,
                tear_permille,
                flip_permille,
                flip_bit,
            } => {
                let plan = DiskPlan {
                    restart_after,
                    partition,
                    tear_permille,
                    flip_permille,
                    flip_bit,
                };
                self.damage_disk(plan, &mut record).await?
            }
        }
        let recovery = &record.recovery;
        self.note(&format!(
            "{}: answering after {}, every shard PRIMARY after {}, outage {}{}",
            planned.fault.name(),
            seconds(recovery.answering_ms),
            seconds(recovery.primary_ms),
            seconds(recovery.total_ms),
            if record.notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", record.notes.join("; "))
            }
        ));
        if let Some(failure) = &record.failure {
            self.fail(format!(
                "{} at {:.1} s: {failure}",
                planned.fault.name(),
                record.at_ms as f64 / 1e3
            ));
        }
        Ok(record)
    }

    /// Waits until every shard is PRIMARY; records the time since `since`
    /// and `fault`, or the failure.
    pub(super) async fn wait_primary(
        &mut self,
        since: Instant,
        fault: Instant,
        record: &mut FaultRecord,
    ) {
        let timeout = Duration::from_millis(limits::CHAOS_RECOVERY_TIMEOUT_MS);
        match probe::wait_all_primary(&self.cluster.consumer_addr(), self.shards, timeout).await {
            Ok(_) => {
                record.recovery.primary_ms = Some(millis(since.elapsed()));
                record.recovery.total_ms = Some(millis(fault.elapsed()));
            }
            Err(err) => record.failure = Some(err.to_string()),
        }
    }

    async fn stop_and_restart(
        &mut self,
        target: Target,
        sig: Sig,
        restart_after: Duration,
        record: &mut FaultRecord,
    ) -> Result<(), ClusterError> {
        let Some(server) = self.cluster.server(target) else {
            return Ok(());
        };
        let name = server.process.name().to_string();
        self.note(&format!(
            "{} {name}; restart after {:.1} s",
            if sig == Sig::Kill {
                "SIGKILL"
            } else {
                "SIGTERM"
            },
            restart_after.as_secs_f64()
        ));
        let fault = Instant::now();
        let Some(server) = self.cluster.server(target) else {
            return Ok(());
        };
        if sig == Sig::Kill {
            server.process.kill().await?;
        } else if let Some(failure) = stop_gracefully(&mut server.process).await? {
            record.failure = Some(failure);
        } else {
            record.notes.push(format!(
                "exited 0 after {:.1} s",
                fault.elapsed().as_secs_f64()
            ));
        }
        tokio::time::sleep(restart_after).await;
        let restart = Instant::now();
        if let Some(server) = self.cluster.server(target) {
            server.restart().await?;
        }
        record.recovery.answering_ms = Some(millis(restart.elapsed()));
        self.wait_primary(restart, fault, record).await;
        Ok(())
    }

    async fn kill_chunker(
        &mut self,
        restart_after: Duration,
        record: &mut FaultRecord,
    ) -> Result<(), ClusterError> {
        self.note(&format!(
            "SIGKILL chunker; a new one after {:.1} s",
            restart_after.as_secs_f64()
        ));
        let fault = Instant::now();
        self.cluster.chunker.kill().await?;
        tokio::time::sleep(restart_after).await;
        let restart = Instant::now();
        self.chunker_incarnations += 1;
        self.cluster.chunker = self
            .cluster
            .start_chunker(self.chunker_incarnations)
            .await?;
        record.recovery.answering_ms = Some(millis(restart.elapsed()));
        record.recovery.total_ms = Some(millis(fault.elapsed()));
        Ok(())
    }

    async fn pause(
        &mut self,
        target: Target,
        paused_for: Duration,
        record: &mut FaultRecord,
    ) -> Result<(), ClusterError> {
        let process = match self.cluster.server(target) {
            Some(server) => &mut server.process,
            None => &mut self.cluster.chunker,
        };
        let name = process.name().to_string();
        let fault = Instant::now();
        process.signal(Sig::Stop)?;
        self.note(&format!(
            "SIGSTOP {name} for {:.1} s",
            paused_for.as_secs_f64()
        ));
        tokio::time::sleep(paused_for).await;
        let process = match self.cluster.server(target) {
            Some(server) => &mut server.process,
            None => &mut self.cluster.chunker,
        };
        process.signal(Sig::Cont)?;
        let resumed = Instant::now();
        self.wait_primary(resumed, fault, record).await;
        Ok(())
    }

    async fn takeover(&mut self, record: &mut FaultRecord) -> Result<(), ClusterError> {
        let Some(old_addr) = self.cluster.consumer.as_ref().map(|c| c.addr.to_string()) else {
            record
                .notes
                .push("skipped: the whole topology has no separate consumer host".into());
            return Ok(());
        };
        let specs = match probe::list_shards(&old_addr).await {
            Ok(shards) => shards
                .into_iter()
                .map(|shard| shard.spec)
                .collect::<Vec<_>>(),
            Err(err) => {
                record.failure = Some(format!("listing the shards to move: {err}"));
                return Ok(());
            }
        };
        let fault = Instant::now();
        if let Some(old) = self.cluster.consumer.as_mut() {
            old.process.signal(Sig::Stop)?;
        }
        self.note(&format!(
            "SIGSTOP consumer host {old_addr}; a new consumer host takes its {} shards over",
            specs.len()
        ));
        let started = Instant::now();
        let mut new = self.cluster.start_new_consumer().await?;
        record.recovery.answering_ms = Some(millis(started.elapsed()));
        let new_addr = new.addr.to_string();
        let timeout = Duration::from_millis(limits::CHAOS_RECOVERY_TIMEOUT_MS);
        let moved = match probe::push_and_apply(&new_addr, guests::SUMMER_WASM, specs).await {
            Ok(()) => probe::wait_all_primary(&new_addr, self.shards, timeout).await,
            Err(err) => Err(err),
        };
        if let Err(err) = moved {
            // The takeover did not happen: resume the old host, drop the new.
            record.failure = Some(format!("the new consumer host {new_addr}: {err}"));
            new.process.kill().await?;
            if let Some(old) = self.cluster.consumer.as_mut() {
                old.process.signal(Sig::Cont)?;
            }
            self.wait_primary(Instant::now(), fault, record).await;
            return Ok(());
        }
        record.recovery.primary_ms = Some(millis(started.elapsed()));
        record.recovery.total_ms = Some(millis(fault.elapsed()));

        let Some(old) = self.cluster.consumer.as_mut() else {
            return Ok(());
        };
        old.process.signal(Sig::Cont)?;
        let fence = Duration::from_millis(limits::CHAOS_FENCE_TIMEOUT_MS);
        match probe::wait_none_primary(&old_addr, fence).await {
            Ok(took) => {
                let states = probe::list_shards(&old_addr)
                    .await
                    .map(|shards| probe::describe(&shards))
                    .unwrap_or_else(|err| err.to_string());
                record.notes.push(format!(
                    "the resumed host stepped down in {:.1} s: {states}",
                    took.as_secs_f64()
                ));
            }
            Err(err) => {
                record.failure = Some(format!(
                    "the resumed consumer host was trusted after another host took over: {err}"
                ));
            }
        }
        if let Some(failure) = stop_gracefully(&mut old.process).await? {
            record.notes.push(failure);
        }
        let retired = std::mem::replace(old, new);
        record.notes.push(format!(
            "{} now serves on {new_addr} (log: {})",
            old.process.name(),
            old.process.log().display()
        ));
        drop(retired);
        // The new host must still hold every shard.
        if let Err(err) = probe::wait_all_primary(&new_addr, self.shards, timeout).await
            && record.failure.is_none()
        {
            record.failure = Some(format!("after the takeover: {err}"));
        }
        Ok(())
    }
}
