//! [`RuntimeMetrics`]: counters of guest calls per module digest, shared by
//! every application of a module and exported by `weir serve` on
//! `/metrics`.
//!
//! Recording is a few atomic operations per call (a batch of messages is one
//! call), so it stays on in benchmarks and production alike.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use super::loader::ModuleDigest;

/// The label of a module's series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModuleLabels {
    /// The module's hex digest.
    pub module: String,
}

/// A histogram constructor, so that `Family` can make one per module.
pub type HistogramConstructor = fn() -> Histogram;

/// Guest-call families of a runtime, keyed by module. Clones share them.
#[derive(Debug, Clone)]
pub struct RuntimeMetrics {
    /// Guest calls (consume, consume batch, finalize).
    pub calls: Family<ModuleLabels, Counter>,
    /// Calls that crashed: traps, deadlines, fuel, memory.
    pub crashes: Family<ModuleLabels, Counter>,
    /// Wall-clock duration of guest calls, in seconds.
    pub call_seconds: Family<ModuleLabels, Histogram, HistogramConstructor>,
}

fn call_histogram() -> Histogram {
    // 1 µs to ~4 s in steps of 4x.
    Histogram::new(exponential_buckets(1e-6, 4.0, 12))
}

impl Default for RuntimeMetrics {
    fn default() -> Self {
        RuntimeMetrics {
            calls: Family::default(),
            crashes: Family::default(),
            call_seconds: Family::new_with_constructor(call_histogram as HistogramConstructor),
        }
    }
}

impl RuntimeMetrics {
    /// The series of one module, to record its calls without a lookup.
    pub fn module(&self, digest: &ModuleDigest) -> ModuleCallMetrics {
        let labels = ModuleLabels {
            module: digest.to_string(),
        };
        ModuleCallMetrics {
            calls: self.calls.get_or_create_owned(&labels),
            crashes: self.crashes.get_or_create_owned(&labels),
            call_seconds: self.call_seconds.get_or_create_owned(&labels),
        }
    }
}

/// One module's series (clones share the underlying values).
#[derive(Debug, Clone)]
pub struct ModuleCallMetrics {
    calls: Counter,
    crashes: Counter,
    call_seconds: Histogram,
}

/// How a recorded call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEnd {
    /// The guest returned (success or an error it reported).
    Returned,
    /// The guest crashed (trap, deadline, fuel, memory).
    Crashed,
}

impl ModuleCallMetrics {
    /// Records one call.
    pub fn record(&self, elapsed: Duration, end: CallEnd) {
        self.calls.inc();
        self.call_seconds.observe(elapsed.as_secs_f64());
        if end == CallEnd::Crashed {
            self.crashes.inc();
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn calls_are_counted_per_module_and_clones_share_them() {
        let metrics = RuntimeMetrics::default();
        let digest = ModuleDigest::of(b"a module");
        let one = metrics.module(&digest);
        let two = metrics.module(&digest);
        one.record(Duration::from_micros(3), CallEnd::Returned);
        two.record(Duration::from_millis(2), CallEnd::Crashed);
        let labels = ModuleLabels {
            module: digest.to_string(),
        };
        assert_eq!(metrics.calls.get_or_create(&labels).get(), 2);
        assert_eq!(metrics.crashes.get_or_create(&labels).get(), 1);
        let other = ModuleLabels {
            module: ModuleDigest::of(b"another").to_string(),
        };
        assert_eq!(metrics.calls.get_or_create(&other).get(), 0);
    }
}
