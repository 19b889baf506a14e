//! Containment at the shard level: a shard whose guest traps, loops forever
//! or allocates without bound on a message rolls that transaction back
//! (its store writes and published messages never commit), retries with
//! back-off from a fresh instance, and after `max_failures` terms is FAILED
//! with an error naming the message's journal and offset. Meanwhile a
//! summer shard on another partition, in the same process and runtime,
//! keeps running and sums all of its input, exactly once.
//!
//! The hostile component (`tests/guests/hostile`) reads its command from
//! the whole document, while shard messages are JSON objects stamped with a
//! UUID; [`Commands`] hands it the `"do"` field of each message instead, so
//! every call still enters the real component under the real limits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_tests::{create_journal, open_broker};
use weir::broker::Broker;
use weir::broker::protocol::JournalClient;
use weir::consumer::{
    AppError, AppFactory, Application, ShardConfig, ShardHandle, ShardSpec, ShardStatus, Source,
    TxnContext, TxnStore, spawn_shard,
};
use weir::message::{AtomicClock, Envelope, Publisher};
use weir::runtime::guests::SUMMER_WASM;
use weir::runtime::guests::test_guests::HOSTILE_WASM;
use weir::runtime::{GuestApplication, GuestLimits, Runtime, RuntimeConfig};
use weir::store::{ShardStore, StoreConfig};
use weir::stream_sum::sum::{StreamId, Sum};
use weir::stream_sum::{SUMS_JOURNAL, StreamGenerator};

use crate::stream_sum::read_committed;

const HOSTILE_INPUT: &str = "test/hostile/part-000";
const HOSTILE_OUTPUT: &str = "test/hostile/out";
const SUMMER_INPUT: &str = "examples/stream-sum/chunks/part-001";
const RECOVERY: &str = "test/recovery";
const DEADLINE: Duration = Duration::from_millis(200);
const MEMORY_CAP: usize = 16 << 20;
const BACKOFF: Duration = Duration::from_millis(20);
const MAX_FAILURES: u32 = 3;

/// Hands the hostile guest each message's `"do"` field as its document.
struct Commands {
    guest: GuestApplication,
}

impl Application for Commands {
    fn consume_message(
        &mut self,
        txn: &mut TxnContext<'_>,
        envelope: &Envelope,
    ) -> Result<(), AppError> {
        let doc: serde_json::Value = serde_json::from_slice(&envelope.doc)
            .map_err(|err| AppError::Rejected(format!("not JSON: {err}")))?;
        let command = doc["do"]
            .as_str()
            .ok_or_else(|| AppError::Rejected(format!("no \"do\" in {doc}")))?;
        let mut inner = envelope.clone();
        inner.doc = bytes::Bytes::copy_from_slice(command.as_bytes());
        self.guest.consume_message(txn, &inner)
    }

    fn finalize_txn(&mut self, txn: &mut TxnContext<'_>) -> Result<(), AppError> {
        self.guest.finalize_txn(txn)
    }

    fn reset(&mut self) {
        self.guest.reset();
    }
}

fn spec(id: &str, input: &str) -> ShardSpec {
    ShardSpec {
        id: id.into(),
        sources: vec![Source {
            journal: input.into(),
            min_offset: 0,
        }],
        recovery_log_prefix: RECOVERY.into(),
        max_txn_duration: Duration::from_secs(10),
        // Holds a transaction open long enough to take in all of the
        // (already durable) input, so the good messages before the bad one
        // share its transaction, and its fate.
        min_txn_duration: Duration::from_secs(1),
        disable: false,
        hot_standbys: 0,
        disable_wait_for_ack: false,
        ring_buffer_size: 0,
        read_channel_size: 0,
        labels: Default::default(),
    }
}

/// An application factory that records when each primary term started.
fn factory<A: Application>(
    make: impl Fn() -> Result<A, AppError> + Send + Sync + 'static,
) -> (AppFactory, Arc<Mutex<Vec<Instant>>>) {
    let terms = Arc::new(Mutex::new(Vec::new()));
    let recorded = terms.clone();
    let factory: AppFactory = Arc::new(move || {
        recorded.lock().unwrap().push(Instant::now());
        Ok(Box::new(make()?) as Box<dyn Application>)
    });
    (factory, terms)
}

struct Fixture {
    dir: tempfile::TempDir,
    broker: Broker,
    client: Arc<dyn JournalClient>,
    clock: Arc<AtomicClock>,
    runtime: Runtime,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_broker(&dir.path().join("broker")).await.unwrap();
    let client: Arc<dyn JournalClient> = Arc::new(broker.clone());
    for journal in [HOSTILE_INPUT, HOSTILE_OUTPUT, SUMMER_INPUT, SUMS_JOURNAL] {
        create_journal(client.as_ref(), journal, &[]).await.unwrap();
    }
    for id in ["hostile-000", "summer-001"] {
        create_journal(client.as_ref(), &format!("{RECOVERY}/{id}"), &[])
            .await
            .unwrap();
    }
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    Fixture {
        dir,
        broker,
        client,
        clock: Arc::new(AtomicClock::now()),
        runtime,
    }
}

impl Fixture {
    fn config(&self) -> ShardConfig {
        let mut config = ShardConfig::new(self.dir.path().join("shards"));
        config.backoff = BACKOFF;
        config.max_failures = MAX_FAILURES;
        config
    }

    async fn publish(&self, journal: &str, docs: impl IntoIterator<Item = Vec<u8>>) -> i64 {
        let publisher = Publisher::new(
            self.client.clone(),
            self.clock.clone(),
            tokio::runtime::Handle::current(),
        );
        for doc in docs {
            publisher.publish_committed(journal, &doc).unwrap();
        }
        publisher.flush().await.unwrap();
        self.broker.write_head(journal).unwrap()
    }
}

/// Runs the scenario where the hostile shard's third message is `bad`, and
/// returns the hostile shard's final error.
async fn contain(bad: &str) -> String {
    let f = fixture().await;

    // The hostile shard's input: a store write and a publish, then `bad`.
    let command = |what: &str| serde_json::json!({ "do": what }).to_string().into_bytes();
    let good = [
        command("put:k=v"),
        command(&format!(r#"publish:{HOSTILE_OUTPUT}={{"a":1}}"#)),
    ];
    let bad_offset = f.publish(HOSTILE_INPUT, good).await;
    f.publish(HOSTILE_INPUT, [command(bad)]).await;

    // The summer's input: half now, half once the hostile shard has failed.
    let chunks: Vec<_> = StreamGenerator::new(7, 40, 5).collect();
    let expected: HashMap<StreamId, Sum> = chunks
        .iter()
        .filter_map(|chunk| chunk.final_sum.clone())
        .map(|sum| (sum.id, sum))
        .collect();
    let (early, late) = chunks.split_at(chunks.len() / 2);
    let early_head = f
        .publish(SUMMER_INPUT, early.iter().map(|chunk| chunk.doc.clone()))
        .await;

    let hostile = f.runtime.consumer_module(HOSTILE_WASM).unwrap();
    let limits = GuestLimits {
        call_deadline: DEADLINE,
        memory_bytes: MEMORY_CAP,
        ..GuestLimits::default()
    };
    let (hostile_app, hostile_terms) = factory(move || {
        let guest = hostile
            .application("hostile-000", limits.clone())
            .map_err(|err| AppError::Crashed(err.to_string()))?;
        Ok(Commands { guest })
    });
    let summer = f.runtime.consumer_module(SUMMER_WASM).unwrap();
    let (summer_app, summer_terms) = factory(move || {
        summer
            .application("summer-001", GuestLimits::default())
            .map_err(|err| AppError::Crashed(err.to_string()))
    });
    let hostile_spec = spec("hostile-000", HOSTILE_INPUT);
    let hostile_dir = f.config().store_dir(&hostile_spec);
    let hostile_shard = spawn_shard(
        hostile_spec,
        f.client.clone(),
        hostile_app,
        f.config(),
        f.clock.clone(),
    );
    let summer_shard = spawn_shard(
        spec("summer-001", SUMMER_INPUT),
        f.client.clone(),
        summer_app,
        f.config(),
        f.clock.clone(),
    );

    summer_shard
        .wait_read_through(SUMMER_INPUT, early_head)
        .await
        .expect("the summer keeps running");
    let error = wait_failed(&hostile_shard).await;
    let late_head = f
        .publish(SUMMER_INPUT, late.iter().map(|chunk| chunk.doc.clone()))
        .await;
    summer_shard
        .wait_read_through(SUMMER_INPUT, late_head)
        .await
        .expect("the summer keeps running");
    assert_eq!(summer_shard.status(), ShardStatus::Primary);
    summer_shard.stop().await;
    hostile_shard.stop().await;

    // The error names the message; every term started from a fresh
    // instance, after a back-off that doubled each time.
    assert!(
        error.contains(&format!("(message at {HOSTILE_INPUT}:{bad_offset})")),
        "{error}"
    );
    assert!(error.contains("application crashed"), "{error}");
    let terms = hostile_terms.lock().unwrap().clone();
    assert_eq!(
        terms.len(),
        MAX_FAILURES as usize,
        "one fresh instance per term"
    );
    for (retry, pair) in terms.windows(2).enumerate() {
        let waited = pair[1] - pair[0];
        assert!(
            waited >= BACKOFF * 2u32.pow(retry as u32),
            "retry {retry} came after only {waited:?}"
        );
    }

    // Nothing of the hostile shard's transaction committed: no checkpoint,
    // no store write, no output visible to read-committed readers.
    let (store, checkpoint) = ShardStore::open_primary(
        f.client.clone(),
        &format!("{RECOVERY}/hostile-000"),
        &hostile_dir,
        StoreConfig::default(),
    )
    .await
    .expect("the hostile shard's store opens");
    assert!(
        checkpoint
            .sources
            .values()
            .all(|source| source.read_through == 0),
        "{checkpoint:?}"
    );
    assert_eq!(
        store.begin_txn().get(b"k").unwrap(),
        None,
        "the put was rolled back"
    );
    assert!(
        read_committed(f.client.clone(), HOSTILE_OUTPUT)
            .await
            .is_empty(),
        "the publish was rolled back"
    );

    // The summer ran one term and committed every final sum exactly once.
    assert_eq!(
        summer_terms.lock().unwrap().len(),
        1,
        "the summer never restarted"
    );
    let mut sums: HashMap<StreamId, Sum> = HashMap::new();
    for env in read_committed(f.client.clone(), SUMS_JOURNAL).await {
        let sum = Sum::parse(&env.doc).unwrap();
        assert!(
            sums.insert(sum.id, sum.clone()).is_none(),
            "a sum committed twice: {sum:?}"
        );
    }
    assert_eq!(sums, expected);
    error
}

async fn wait_failed(shard: &ShardHandle) -> String {
    let mut status = shard.watch_status();
    let failed = tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| {
            matches!(
                s,
                ShardStatus::Failed { .. } | ShardStatus::Stopped | ShardStatus::Fenced { .. }
            )
        }),
    )
    .await
    .expect("the hostile shard gives up within 30 s")
    .unwrap()
    .clone();
    match failed {
        ShardStatus::Failed { error } => error,
        other => panic!("the hostile shard should be FAILED, is {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_guest_fails_its_shard_and_not_its_neighbour() {
    let error = contain("trap").await;
    assert!(error.contains("hostile guest: trap requested"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_guest_is_interrupted_and_fails_its_shard_and_not_its_neighbour() {
    let error = contain("loop").await;
    assert!(error.contains("deadline of 200ms exceeded"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hungry_guest_is_capped_and_fails_its_shard_and_not_its_neighbour() {
    let error = contain("alloc").await;
    assert!(
        error.contains(&format!("memory limit of {MEMORY_CAP} bytes exceeded")),
        "{error}"
    );
}
