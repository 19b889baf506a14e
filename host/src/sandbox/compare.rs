//! `--crash-every N`: exactly-once, checked on the user's own guest.
//!
//! [`run_with_crashes`] runs the guest twice over the same input: once
//! without crashes (the input in one round), then with a crash per round of
//! N messages ([`super::crash`]). Whatever the crashes rolled back was
//! retried by a recovered shard, so if the guest keeps no state outside its
//! store, the two runs committed the same messages and the same store: their
//! rendered [`Report`](super::Report)s are byte-identical. A guest that
//! remembers something in memory across transactions, or whose effects
//! depend on how its input is split into transactions, shows up here as a
//! [`CrashCheck::Different`] with the first differing line.

use super::SandboxError;
use super::crash::CrashPoint;
use super::input::Input;
use super::output::{Difference, first_difference};
use super::run::{AppUnderTest, RunConfig, RunOutcome, run};

/// Whether the crashed run committed what the crash-free one did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrashCheck {
    /// Byte-identical reports: every crash was recovered from exactly once.
    Equal,
    /// The reports differ (expected is the crash-free run's).
    Different(Difference),
}

/// Both runs and their comparison.
#[derive(Debug, Clone)]
pub struct CrashComparison {
    /// The run without crashes.
    pub crash_free: RunOutcome,
    /// The run with a crash every N messages.
    pub crashed: RunOutcome,
    /// How they compare.
    pub check: CrashCheck,
}

impl CrashComparison {
    /// The crashes of the crashed run.
    pub fn crashes(&self) -> &[CrashPoint] {
        &self.crashed.crashes
    }
}

/// Runs `app` over `input` without crashes, then crashing once every
/// `every` messages, and compares what they committed. A failure of either
/// run (a guest failure, a timeout) is an error, not a difference.
pub async fn run_with_crashes(
    app: &AppUnderTest,
    input: &Input,
    config: &RunConfig,
    every: usize,
) -> Result<CrashComparison, SandboxError> {
    let crash_free = run(
        app,
        input,
        &RunConfig {
            crash_every: None,
            ..config.clone()
        },
    )
    .await?;
    let crashed = run(
        app,
        input,
        &RunConfig {
            crash_every: Some(every.max(1)),
            ..config.clone()
        },
    )
    .await?;
    let check = match first_difference(&crash_free.report.render(), &crashed.report.render()) {
        None => CrashCheck::Equal,
        Some(difference) => CrashCheck::Different(difference),
    };
    Ok(CrashComparison {
        crash_free,
        crashed,
        check,
    })
}
