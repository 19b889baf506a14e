//! Shared fixtures for the integration tests (`tests/all`): an embedded
//! broker on a temporary directory, journal helpers, and a small counting
//! application whose effects make lost or repeated messages visible.

use std::sync::Arc;

use anyhow::{Context, Result};
use weir::broker::protocol::{JournalChange, JournalClient, ReadRequest};
use weir::broker::spec::{JournalSpec, LabelSet};
use weir::broker::{Broker, BrokerConfig};
use weir::consumer::{AppError, Application, TxnContext};
use weir::message::Envelope;

/// The content type label every test journal carries.
pub const NDJSON: &str = "application/x-ndjson";

/// Opens an embedded broker on `dir`.
pub async fn open_broker(dir: &std::path::Path) -> Result<Broker> {
    Broker::open(dir, BrokerConfig::default())
        .await
        .context("opening the broker")
}

/// Creates (or updates) an ndjson journal.
pub async fn create_journal(
    client: &dyn JournalClient,
    name: &str,
    labels: &[(&str, &str)],
) -> Result<()> {
    let mut set = LabelSet::default();
    set.insert("content-type", NDJSON);
    for (k, v) in labels {
        set.insert(k, v);
    }
    let spec = JournalSpec::new(name).with_labels(set);
    client
        .apply(vec![JournalChange::Upsert(spec)])
        .await
        .context("creating a journal")?;
    Ok(())
}

/// Reads all committed bytes of `journal` (non-blocking, to the head).
pub async fn read_all(client: &dyn JournalClient, journal: &str) -> Result<Vec<u8>> {
    let mut stream = client
        .read(ReadRequest {
            journal: journal.into(),
            offset: 0,
            block: false,
            end_offset: 0,
        })
        .await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await? {
        out.extend_from_slice(&chunk.content);
    }
    Ok(out)
}

/// A consumer that counts each input `{"n":…}` in its store under `n/{n}`
/// and publishes `{"n":…,"count":…}` to its output journal. If a message's
/// effect were applied twice, a count would exceed 1; if one were lost, a
/// count would be missing.
pub struct CountingApp {
    /// Where outputs go.
    pub output: Arc<str>,
}

impl Application for CountingApp {
    fn consume_message(
        &mut self,
        txn: &mut TxnContext<'_>,
        envelope: &Envelope,
    ) -> Result<(), AppError> {
        let doc: serde_json::Value = serde_json::from_slice(&envelope.doc)
            .map_err(|err| AppError::Rejected(format!("not JSON: {err}")))?;
        let n = doc["n"]
            .as_u64()
            .ok_or_else(|| AppError::Rejected("no n".into()))?;
        let key = format!("n/{n:08}");
        let count = match txn.store.get(key.as_bytes())? {
            Some(bytes) => u64::from_le_bytes(
                bytes
                    .try_into()
                    .map_err(|_| AppError::Rejected("bad count".into()))?,
            ),
            None => 0,
        } + 1;
        txn.store.put(key.as_bytes(), &count.to_le_bytes())?;
        let out = format!(r#"{{"n":{n},"count":{count}}}"#);
        txn.publisher.publish(&self.output, out.as_bytes())?;
        Ok(())
    }

    fn finalize_txn(&mut self, _txn: &mut TxnContext<'_>) -> Result<(), AppError> {
        Ok(())
    }
}

/// Checks the counting application's exactly-once effects: `output` holds,
/// for read-committed readers, exactly one output per input `0..messages`,
/// each with count 1; and the shard store (recovered from `log` into
/// `store_dir`) counts every input exactly once.
pub async fn verify_counts(
    client: Arc<dyn JournalClient>,
    store_dir: &std::path::Path,
    log: &str,
    output: &str,
    messages: u64,
) {
    use std::collections::BTreeMap;
    use weir::consumer::TxnStore;
    use weir::store::{ShardStore, StoreConfig};

    let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
    for env in read_committed_through_barrier(client.clone(), output).await {
        let doc: serde_json::Value = serde_json::from_slice(&env.doc).expect("outputs are JSON");
        assert_eq!(doc["count"], 1, "a message affected the store twice: {doc}");
        *seen.entry(doc["n"].as_u64().expect("n")).or_default() += 1;
    }
    let missing: Vec<u64> = (0..messages).filter(|n| !seen.contains_key(n)).collect();
    assert!(
        missing.is_empty(),
        "{} inputs have no committed output, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(
        seen.values().all(|&c| c == 1),
        "an output was read twice: {seen:?}"
    );

    let (store, _checkpoint) =
        ShardStore::open_primary(client.clone(), log, store_dir, StoreConfig::default())
            .await
            .expect("the store recovers");
    let mut txn = store.begin_txn();
    for n in 0..messages {
        let value = txn
            .get(format!("n/{n:08}").as_bytes())
            .expect("store reads")
            .expect("every message counted");
        let count = u64::from_le_bytes(value.try_into().expect("a u64 count"));
        assert_eq!(count, 1, "message {n} counted {count} times");
    }
}

/// A shard spec for the counting application reading `input`.
pub fn counting_spec(
    id: &str,
    input: &str,
    max_txn: std::time::Duration,
) -> weir::consumer::ShardSpec {
    weir::consumer::ShardSpec {
        id: id.into(),
        sources: vec![weir::consumer::Source {
            journal: input.into(),
            min_offset: 0,
        }],
        recovery_log_prefix: "test/recovery".into(),
        max_txn_duration: max_txn,
        min_txn_duration: std::time::Duration::ZERO,
        disable: false,
        hot_standbys: 0,
        disable_wait_for_ack: false,
        ring_buffer_size: 0,
        read_channel_size: 0,
        labels: Default::default(),
    }
}

/// Publishes `{"n":0}` … `{"n":messages-1}` committed to `journal`.
pub async fn publish_numbers(
    client: Arc<dyn JournalClient>,
    journal: &str,
    messages: u64,
) -> Result<()> {
    let clock = Arc::new(weir::message::AtomicClock::now());
    let producer = weir::message::Publisher::new(client, clock, tokio::runtime::Handle::current());
    for n in 0..messages {
        producer.publish_committed(journal, format!(r#"{{"n":{n}}}"#).as_bytes())?;
    }
    producer.flush().await?;
    Ok(())
}

/// Logs to stderr at the level in `WEIR_LOG` (e.g. `WEIR_LOG=debug`), for
/// post-mortems of failing tests; silent by default.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("WEIR_LOG"))
        .with_writer(std::io::stderr)
        .with_test_writer()
        .try_init();
}

/// Every committed, non-ACK message of `journal` up to a write barrier,
/// read by an independent read-committed reader. It stops once its
/// read-through offset passes the barrier: a committed message is passed
/// only once delivered, while a dead primary's never-acknowledged tail is
/// skipped rather than waited for.
pub async fn read_committed_through_barrier(
    client: Arc<dyn JournalClient>,
    journal: &str,
) -> Vec<weir::message::Envelope> {
    use std::collections::BTreeMap;
    use std::time::Duration;

    let barrier = client
        .append(weir::broker::protocol::AppendRequest {
            journal: journal.into(),
            ..Default::default()
        })
        .await
        .expect("a write barrier");
    let mut reader = weir::message::ReadCommitted::new(
        client.clone(),
        vec![(journal.to_string(), 0)],
        &BTreeMap::new(),
        1024,
        1024,
    )
    .expect("a reader");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    loop {
        let through = reader
            .checkpoint(Duration::from_secs(86_400))
            .sources
            .get(journal)
            .map_or(0, |s| s.read_through);
        if through >= barrier.end {
            return out;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{journal} is read through {} within 30 s (at {through})",
            barrier.end
        );
        let Ok(env) = tokio::time::timeout(Duration::from_millis(50), reader.next()).await else {
            continue;
        };
        let env = env.expect("messages decode");
        if !env.is_ack() {
            out.push(env);
        }
    }
}
