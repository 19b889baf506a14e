//! Latency samples of a run: the time from a stream's final chunk being
//! durable to its sum being verified, in microseconds.

/// Samples kept for percentiles; beyond this (an infinite run) only the
/// count and the maximum keep growing.
const MAX_SAMPLES: usize = 1 << 20;

/// Percentiles of the samples, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Samples taken.
    pub samples: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Maximum.
    pub max_us: u64,
}

/// Collected samples.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    kept: Vec<u64>,
    count: u64,
    max_us: u64,
}

impl Latencies {
    /// Records one sample.
    pub fn record(&mut self, micros: u64) {
        self.count += 1;
        self.max_us = self.max_us.max(micros);
        if self.kept.len() < MAX_SAMPLES {
            self.kept.push(micros);
        }
    }

    /// The summary (nearest-rank percentiles over the kept samples).
    pub fn summary(&self) -> Summary {
        let mut sorted = self.kept.clone();
        sorted.sort_unstable();
        let rank = |percent: usize| -> u64 {
            if sorted.is_empty() {
                return 0;
            }
            let index = (sorted.len() * percent).div_ceil(100).saturating_sub(1);
            sorted[index.min(sorted.len() - 1)]
        };
        Summary {
            samples: self.count,
            p50_us: rank(50),
            p99_us: rank(99),
            max_us: self.max_us,
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut latencies = Latencies::default();
        for micros in (1..=100).rev() {
            latencies.record(micros);
        }
        let summary = latencies.summary();
        assert_eq!(
            summary,
            Summary {
                samples: 100,
                p50_us: 50,
                p99_us: 99,
                max_us: 100
            }
        );
        assert_eq!(Latencies::default().summary(), Summary::default());
    }
}
