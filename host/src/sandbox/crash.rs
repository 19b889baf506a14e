//! The crash plan of `weir test --crash-every N`: one injected crash per
//! round of N input messages, at a different point each round.
//!
//! The run appends the input in rounds of N messages and, before each round,
//! [arms](CrashPlan::arm_next) the next [`CrashPoint`] of
//! [`CrashPoint::ROTATION`] (every point of a transaction's life, from
//! consuming to the ACKs, including the store's own: between the recovery-log
//! append and the local RocksDB write). The first transaction that reaches
//! the armed point crashes there, as a killed process would: whatever it had
//! appended stays appended, nothing else happens. The shard then recovers
//! from its recovery log, as a new primary would, and the round goes on.
//!
//! An armed point fires at most once, so the recovered shard always makes
//! progress, and every round's transaction passes every point before the
//! round's input is committed, so each round's crash does happen: a run of M
//! messages crashes ⌈M / N⌉ times.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::consumer::{self, ShardError};
use crate::store::{self, StoreError};

/// A point where the sandbox can crash a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// A point of the shard's transaction loop.
    Shard(consumer::FaultPoint),
    /// A point of the store's commit.
    Store(store::FaultPoint),
}

impl CrashPoint {
    /// Every point, in the order a transaction passes them; rounds take
    /// them in turn.
    pub const ROTATION: [CrashPoint; 8] = [
        CrashPoint::Shard(consumer::FaultPoint::Consuming),
        CrashPoint::Shard(consumer::FaultPoint::AfterFinalize),
        CrashPoint::Shard(consumer::FaultPoint::BeforeCommit),
        CrashPoint::Store(store::FaultPoint::BeforeLogAppend),
        CrashPoint::Store(store::FaultPoint::AfterLogAppend),
        CrashPoint::Store(store::FaultPoint::AfterLocalApply),
        CrashPoint::Shard(consumer::FaultPoint::AfterCommit),
        CrashPoint::Shard(consumer::FaultPoint::DuringAcks),
    ];

    /// The error a shard reports after crashing here: how a run tells its
    /// own crashes from the guest's failures.
    pub fn shard_error(self) -> String {
        match self {
            CrashPoint::Shard(point) => ShardError::InjectedCrash(point).to_string(),
            CrashPoint::Store(point) => {
                ShardError::Store(StoreError::InjectedCrash(point)).to_string()
            }
        }
    }

    /// Whether a shard's error is one of these crashes.
    pub fn is_injected(error: &str) -> bool {
        CrashPoint::ROTATION
            .iter()
            .any(|point| point.shard_error() == error)
    }
}

impl fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrashPoint::Shard(point) => write!(f, "{point:?}"),
            CrashPoint::Store(point) => write!(f, "store {point:?}"),
        }
    }
}

/// See the module docs. Shared by the run and the hooks it installs.
#[derive(Debug, Default)]
pub struct CrashPlan {
    state: Mutex<PlanState>,
}

#[derive(Debug, Default)]
struct PlanState {
    /// The point that crashes at its next visit.
    armed: Option<CrashPoint>,
    /// Rounds armed so far.
    rounds: usize,
    /// Crashes that happened, in order.
    fired: Vec<CrashPoint>,
}

impl CrashPlan {
    /// A plan with nothing armed.
    pub fn new() -> Arc<CrashPlan> {
        Arc::new(CrashPlan::default())
    }

    /// Arms the next point of the rotation (replacing one that did not fire)
    /// and returns it.
    pub fn arm_next(&self) -> CrashPoint {
        let mut state = self.lock();
        let point = CrashPoint::ROTATION[state.rounds % CrashPoint::ROTATION.len()];
        state.rounds += 1;
        state.armed = Some(point);
        point
    }

    /// Disarms; returns whether the armed point had fired.
    pub fn disarm(&self) -> bool {
        self.lock().armed.take().is_none()
    }

    /// The crashes that happened, in order.
    pub fn fired(&self) -> Vec<CrashPoint> {
        self.lock().fired.clone()
    }

    /// The hook for [`ShardConfig::faults`](crate::consumer::ShardConfig::faults).
    pub fn shard_hook(self: &Arc<Self>) -> consumer::FaultHook {
        let plan = self.clone();
        Arc::new(move |point| match plan.visit(CrashPoint::Shard(point)) {
            true => consumer::FaultAction::Crash,
            false => consumer::FaultAction::Continue,
        })
    }

    /// The hook for [`StoreConfig::fault_hook`](crate::store::StoreConfig::fault_hook).
    pub fn store_hook(self: &Arc<Self>) -> store::FaultHook {
        let plan = self.clone();
        Arc::new(move |point| match plan.visit(CrashPoint::Store(point)) {
            true => store::FaultAction::Crash,
            false => store::FaultAction::Continue,
        })
    }

    /// Whether to crash at `point`; fires an armed point once.
    fn visit(&self, point: CrashPoint) -> bool {
        let mut state = self.lock();
        if state.armed != Some(point) {
            return false;
        }
        state.armed = None;
        state.fired.push(point);
        tracing::debug!(%point, crashes = state.fired.len(), "injecting a crash");
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PlanState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn an_armed_point_fires_once_and_others_never() {
        let plan = CrashPlan::new();
        let shard = plan.shard_hook();
        let store = plan.store_hook();
        assert_eq!(
            shard(consumer::FaultPoint::Consuming),
            consumer::FaultAction::Continue
        );

        assert_eq!(plan.arm_next(), CrashPoint::ROTATION[0]);
        assert_eq!(
            shard(consumer::FaultPoint::AfterCommit),
            consumer::FaultAction::Continue
        );
        assert_eq!(
            shard(consumer::FaultPoint::Consuming),
            consumer::FaultAction::Crash
        );
        assert_eq!(
            shard(consumer::FaultPoint::Consuming),
            consumer::FaultAction::Continue
        );
        assert!(plan.disarm());

        for _ in 1..4 {
            plan.arm_next();
        }
        assert_eq!(
            store(store::FaultPoint::BeforeLogAppend),
            store::FaultAction::Crash
        );
        assert!(plan.disarm());
        plan.arm_next();
        assert!(!plan.disarm(), "a point that did not fire is reported");
        assert_eq!(
            plan.fired(),
            [
                CrashPoint::Shard(consumer::FaultPoint::Consuming),
                CrashPoint::Store(store::FaultPoint::BeforeLogAppend)
            ]
        );
    }

    #[test]
    fn the_rotation_wraps_around_every_point() {
        let plan = CrashPlan::new();
        let armed: Vec<CrashPoint> = (0..9).map(|_| plan.arm_next()).collect();
        assert_eq!(&armed[..8], &CrashPoint::ROTATION);
        assert_eq!(armed[8], CrashPoint::ROTATION[0]);
        for point in consumer::FaultPoint::ALL {
            assert!(
                armed.contains(&CrashPoint::Shard(point)),
                "{point} is in the rotation"
            );
        }
    }

    #[test]
    fn injected_crashes_are_told_from_other_errors() {
        for point in CrashPoint::ROTATION {
            assert!(CrashPoint::is_injected(&point.shard_error()), "{point}");
        }
        assert!(!CrashPoint::is_injected(
            "application crashed: wasm trap (message at test/input:0)"
        ));
    }
}
