//! [`TxnMetrics`]: how long each phase of a shard's transactions takes, the
//! series behind `weir_shard_txn_phase_seconds` on `/metrics`.
//!
//! A transaction passes through the phases of [`TxnPhase`] in order
//! (Gazette's consumer exports the same breakdown): consuming messages,
//! the application's finalize, flushing its published messages, the
//! recovery-log commit, and the ACKs. Consume and finalize run on the
//! shard's task; flush, commit and ACKs run in the background while the
//! next transaction consumes, so their sum may exceed a transaction's
//! wall-clock share.
//!
//! Recording is one histogram observation per phase per transaction (a
//! transaction holds many messages), and the handles of a shard are looked
//! up once per term, so it stays on everywhere.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// A phase of a consumer transaction.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum TxnPhase {
    /// From the first message to the end of reading.
    Consume,
    /// The application's `finalize_txn`.
    Finalize,
    /// Waiting until every published message is durably appended.
    Flush,
    /// The recovery-log append of store writes and checkpoint.
    Commit,
    /// Appending and awaiting the ACKs of the published messages.
    Ack,
}

impl TxnPhase {
    /// Every phase, in transaction order.
    pub const ALL: [TxnPhase; 5] = [
        TxnPhase::Consume,
        TxnPhase::Finalize,
        TxnPhase::Flush,
        TxnPhase::Commit,
        TxnPhase::Ack,
    ];
}

/// The labels of one phase series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// The shard's id.
    pub shard: String,
    /// The phase.
    pub phase: TxnPhase,
}

/// A histogram constructor, so that `Family` can make one per series.
pub type PhaseHistogramConstructor = fn() -> Histogram;

fn phase_histogram() -> Histogram {
    // 10 µs to ~42 s in steps of 4x: a commit is milliseconds, a consume
    // phase up to `max_txn_duration`.
    Histogram::new(exponential_buckets(1e-5, 4.0, 12))
}

/// Transaction-phase durations of every shard of a process. Clones share
/// them.
#[derive(Debug, Clone)]
pub struct TxnMetrics {
    /// Seconds spent per phase, per shard.
    pub phase_seconds: Family<PhaseLabels, Histogram, PhaseHistogramConstructor>,
}

impl Default for TxnMetrics {
    fn default() -> Self {
        TxnMetrics {
            phase_seconds: Family::new_with_constructor(
                phase_histogram as PhaseHistogramConstructor,
            ),
        }
    }
}

impl TxnMetrics {
    /// The series of one shard, to record without a lookup per transaction.
    pub fn shard(&self, shard: &str) -> ShardTxnMetrics {
        let series = TxnPhase::ALL.map(|phase| {
            self.phase_seconds.get_or_create_owned(&PhaseLabels {
                shard: shard.to_string(),
                phase,
            })
        });
        ShardTxnMetrics { series }
    }
}

/// One shard's phase histograms.
#[derive(Debug, Clone)]
pub struct ShardTxnMetrics {
    series: [Histogram; 5],
}

impl ShardTxnMetrics {
    /// Records that `phase` of a transaction took `took`.
    pub fn observe(&self, phase: TxnPhase, took: Duration) {
        let index = TxnPhase::ALL
            .iter()
            .position(|p| *p == phase)
            .unwrap_or_default();
        self.series[index].observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    use super::*;

    #[test]
    fn each_phase_is_its_own_series_per_shard() {
        let metrics = TxnMetrics::default();
        let mut registry = Registry::default();
        registry.register("txn_phase_seconds", "test", metrics.phase_seconds.clone());
        let a = metrics.shard("shard-a");
        a.observe(TxnPhase::Commit, Duration::from_millis(2));
        a.observe(TxnPhase::Commit, Duration::from_millis(3));
        metrics
            .shard("shard-b")
            .observe(TxnPhase::Consume, Duration::from_millis(1));
        let mut text = String::new();
        encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains(r#"txn_phase_seconds_count{shard="shard-a",phase="Commit"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"txn_phase_seconds_count{shard="shard-b",phase="Consume"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"txn_phase_seconds_count{shard="shard-a",phase="Ack"} 0"#),
            "{text}"
        );
    }
}
