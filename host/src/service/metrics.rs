//! [`Metrics`]: what `weir serve` exports on `/metrics`, in Prometheus'
//! text format.
//!
//! Two kinds of series:
//! - **counted as it happens**: appends, appended bytes, reads and read
//!   bytes per journal (by the Journal service), and guest calls, crashes
//!   and call latency per module digest (by the runtime, see
//!   [`RuntimeMetrics`]), and the duration of each transaction phase per
//!   shard (by the shards, see [`TxnMetrics`]);
//! - **sampled at scrape time** from the live state: each journal's write
//!   head, each shard's committed transactions, read-through offsets and
//!   status.
//!
//! Rendering never blocks the server's workers for long: it reads atomics
//! and in-memory shard state only.

use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::shards::ShardRegistry;
use crate::broker::{Broker, JournalClient, LabelSelector};
use crate::consumer::TxnMetrics;
use crate::runtime::RuntimeMetrics;

/// The label of a journal's series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JournalLabels {
    /// The journal's name.
    pub journal: String,
}

/// The labels of a shard's series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    /// The shard's id.
    pub shard: String,
}

/// The labels of a shard's status series (1 for its current status).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardStatusLabels {
    /// The shard's id.
    pub shard: String,
    /// Gazette's replica status name (PRIMARY, BACKFILL, FAILED, IDLE).
    pub status: String,
}

/// The labels of a shard's per-source series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// The shard's id.
    pub shard: String,
    /// The source journal.
    pub journal: String,
}

/// Per-journal counters recorded by the Journal service. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct JournalMetrics {
    appends: Family<JournalLabels, Counter>,
    append_bytes: Family<JournalLabels, Counter>,
    reads: Family<JournalLabels, Counter>,
    read_bytes: Family<JournalLabels, Counter>,
}

impl JournalMetrics {
    /// Records a committed append of `bytes` bytes (0 for a barrier).
    pub fn appended(&self, journal: &str, bytes: u64) {
        let labels = JournalLabels {
            journal: journal.to_string(),
        };
        self.appends.get_or_create(&labels).inc();
        self.append_bytes.get_or_create(&labels).inc_by(bytes);
    }

    /// Records an opened read.
    pub fn read_opened(&self, journal: &str) {
        self.reads
            .get_or_create(&JournalLabels {
                journal: journal.to_string(),
            })
            .inc();
    }

    /// Records `bytes` bytes served by a read.
    pub fn read_served(&self, journal: &str, bytes: u64) {
        self.read_bytes
            .get_or_create(&JournalLabels {
                journal: journal.to_string(),
            })
            .inc_by(bytes);
    }
}

/// The live state sampled at scrape time.
#[derive(Default)]
struct Sources {
    broker: Option<Broker>,
    shards: Option<ShardRegistry>,
}

/// A server's metrics. See the module docs.
pub struct Metrics {
    registry: Registry,
    write_head: Family<JournalLabels, Gauge>,
    shard_txns: Family<ShardLabels, Gauge>,
    shard_status: Family<ShardStatusLabels, Gauge>,
    shard_read_through: Family<SourceLabels, Gauge>,
    sources: Mutex<Sources>,
}

impl Metrics {
    /// Registers every series: `journals` are the counters the Journal
    /// service records into; `runtime` and `txns` add the guest-call and
    /// transaction-phase series of a consumer host.
    pub fn new(
        journals: JournalMetrics,
        runtime: Option<&RuntimeMetrics>,
        txns: Option<&TxnMetrics>,
    ) -> Metrics {
        let mut registry = Registry::with_prefix("weir");
        registry.register(
            "journal_appends",
            "Committed appends (including write barriers)",
            journals.appends.clone(),
        );
        registry.register(
            "journal_append_bytes",
            "Bytes committed by appends",
            journals.append_bytes.clone(),
        );
        registry.register("journal_reads", "Reads opened", journals.reads.clone());
        registry.register(
            "journal_read_bytes",
            "Bytes served by reads",
            journals.read_bytes.clone(),
        );
        let write_head = Family::<JournalLabels, Gauge>::default();
        registry.register(
            "journal_write_head_bytes",
            "The journal's write head (its length in bytes)",
            write_head.clone(),
        );
        let shard_txns = Family::<ShardLabels, Gauge>::default();
        registry.register(
            "shard_committed_transactions",
            "Transactions the shard committed since it started (monotonic while it runs)",
            shard_txns.clone(),
        );
        let shard_status = Family::<ShardStatusLabels, Gauge>::default();
        registry.register(
            "shard_status",
            "1 for the shard's current replica status",
            shard_status.clone(),
        );
        let shard_read_through = Family::<SourceLabels, Gauge>::default();
        registry.register(
            "shard_read_through_offset",
            "Offset of a source journal the shard has committed through",
            shard_read_through.clone(),
        );
        if let Some(runtime) = runtime {
            registry.register(
                "guest_calls",
                "Guest calls (consume, consume batch, finalize)",
                runtime.calls.clone(),
            );
            registry.register(
                "guest_crashes",
                "Guest calls that crashed (trap, deadline, fuel, memory)",
                runtime.crashes.clone(),
            );
            registry.register(
                "guest_call_seconds",
                "Wall-clock duration of guest calls",
                runtime.call_seconds.clone(),
            );
        }
        if let Some(txns) = txns {
            registry.register(
                "shard_txn_phase_seconds",
                "Duration of each phase of a shard's transactions \
                 (Consume, Finalize, Flush, Commit, Ack)",
                txns.phase_seconds.clone(),
            );
        }
        Metrics {
            registry,
            write_head,
            shard_txns,
            shard_status,
            shard_read_through,
            sources: Mutex::default(),
        }
    }

    /// Sets the live state to sample at scrape time.
    pub fn attach(&self, broker: Option<Broker>, shards: Option<ShardRegistry>) {
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        *sources = Sources { broker, shards };
    }

    /// The Prometheus text of every series, sampled now.
    pub async fn render(&self) -> String {
        let (broker, shards) = {
            let sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
            (sources.broker.clone(), sources.shards.clone())
        };
        if let Some(broker) = broker {
            self.sample_journals(&broker).await;
        }
        if let Some(shards) = shards {
            self.sample_shards(&shards);
        }
        let mut text = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            return format!("# encoding the metrics failed: {err}\n");
        }
        text
    }

    async fn sample_journals(&self, broker: &Broker) {
        let Ok(specs) = broker.list(&LabelSelector::default()).await else {
            return;
        };
        self.write_head.clear();
        for spec in specs {
            if let Ok(head) = broker.write_head(&spec.name) {
                self.write_head
                    .get_or_create(&JournalLabels { journal: spec.name })
                    .set(head);
            }
        }
    }

    fn sample_shards(&self, shards: &ShardRegistry) {
        self.shard_txns.clear();
        self.shard_status.clear();
        self.shard_read_through.clear();
        for shard in shards.snapshot() {
            let committed = i64::try_from(shard.committed_txns).unwrap_or(i64::MAX);
            self.shard_txns
                .get_or_create(&ShardLabels {
                    shard: shard.id.clone(),
                })
                .set(committed);
            self.shard_status
                .get_or_create(&ShardStatusLabels {
                    shard: shard.id.clone(),
                    status: shard.status.to_string(),
                })
                .set(1);
            for (journal, offset) in shard.read_through {
                self.shard_read_through
                    .get_or_create(&SourceLabels {
                        shard: shard.id.clone(),
                        journal,
                    })
                    .set(offset);
            }
        }
    }
}
