//! The deadline ladder of a wait for an expected sum (Gazette's chunker):
//! warnings at 100 ms, 250 ms, 500 ms, 1, 2, 4, 6, 8, 10, 15, 20, 25, 30 and
//! 35 s, failure at 40 s. Gazette's reasoning for 40 s: a 20 s etcd lease,
//! up to ~10 s of client back-off, and 10 s of headroom.

/// Gazette's final deadline, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u32 = 40_000;

/// Gazette's warning deadlines, in milliseconds.
const WARNINGS_MS: [u64; 14] = [
    100, 250, 500, 1_000, 2_000, 4_000, 6_000, 8_000, 10_000, 15_000, 20_000, 25_000, 30_000,
    35_000,
];

/// Where a wait stands on the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rung {
    /// No new deadline passed.
    Waiting,
    /// A warning deadline passed: log it (the value is its offset in ms).
    Warn(u64),
    /// The final deadline passed: the run fails.
    TimedOut,
}

/// The ladder for one run.
#[derive(Debug, Clone)]
pub struct Ladder {
    warnings_ns: Vec<u64>,
    timeout_ns: u64,
}

impl Ladder {
    /// The ladder failing at `timeout_ms`, with Gazette's warnings below it.
    pub fn new(timeout_ms: u32) -> Ladder {
        let timeout_ms = u64::from(timeout_ms);
        let warnings_ns = WARNINGS_MS
            .iter()
            .filter(|ms| **ms < timeout_ms)
            .map(|ms| ms * 1_000_000)
            .collect();
        Ladder {
            warnings_ns,
            timeout_ns: timeout_ms * 1_000_000,
        }
    }

    /// The next rung passed after `elapsed_ns`, given `warned` warnings
    /// already logged. Call until it returns [`Rung::Waiting`], bumping
    /// `warned` on each warning.
    pub fn check(&self, elapsed_ns: u64, warned: usize) -> Rung {
        if elapsed_ns >= self.timeout_ns {
            return Rung::TimedOut;
        }
        match self.warnings_ns.get(warned) {
            Some(deadline) if elapsed_ns >= *deadline => Rung::Warn(deadline / 1_000_000),
            _ => Rung::Waiting,
        }
    }

    /// Nanoseconds from `elapsed_ns` to the next rung.
    pub fn until_next(&self, elapsed_ns: u64, warned: usize) -> u64 {
        let next = self
            .warnings_ns
            .get(warned)
            .copied()
            .unwrap_or(self.timeout_ns);
        next.min(self.timeout_ns).saturating_sub(elapsed_ns)
    }

    /// The final deadline in nanoseconds.
    pub fn timeout_ns(&self) -> u64 {
        self.timeout_ns
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn the_default_ladder_warns_fourteen_times_then_times_out_at_forty_seconds() {
        let ladder = Ladder::new(DEFAULT_TIMEOUT_MS);
        let mut warned = 0;
        let mut warnings = Vec::new();
        let mut elapsed = 0;
        loop {
            match ladder.check(elapsed, warned) {
                Rung::Waiting => elapsed += ladder.until_next(elapsed, warned),
                Rung::Warn(ms) => {
                    warnings.push(ms);
                    warned += 1;
                }
                Rung::TimedOut => break,
            }
        }
        assert_eq!(warnings, WARNINGS_MS.to_vec());
        assert_eq!(elapsed, 40_000 * MS);
    }

    #[test]
    fn a_shorter_timeout_keeps_only_the_warnings_below_it() {
        let ladder = Ladder::new(600);
        assert_eq!(ladder.check(99 * MS, 0), Rung::Waiting);
        assert_eq!(ladder.until_next(99 * MS, 0), MS);
        assert_eq!(ladder.check(520 * MS, 2), Rung::Warn(500));
        assert_eq!(ladder.until_next(520 * MS, 3), 80 * MS);
        assert_eq!(ladder.check(600 * MS, 3), Rung::TimedOut);
    }
}
