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
use weir::broker::{ExpectRevision, LabelSelector};
use weir::consumer::{
    AppError, AppFactory, Application, ShardConfig, ShardHandle, ShardSpec, ShardStatus, Source,
    TxnContext, TxnStore, spawn_shard,
};
use weir::message::{AtomicClock, Envelope, Publisher};
use weir::runtime::guests::SUMMER_WASM;
use weir::runtime::guests::test_guests::HOSTILE_WASM;
use weir::runtime::{GuestApplication, GuestLimits, Runtime, RuntimeConfig};
use weir::service::modules::ModuleStore;
use weir::service::shard_limits::{
    CALL_DEADLINE_LABEL, FUEL_LABEL, MEMORY_LABEL, VALUE_BYTES_LABEL,
};
use weir::service::shards::{
    MODULE_LABEL, ReplicaState, ShardChange, ShardRegistry, ShardRegistryError,
};
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

/// The hostile shard's limits in [`contain`].
fn test_limits() -> GuestLimits {
    GuestLimits {
        call_deadline: DEADLINE,
        memory_bytes: MEMORY_CAP,
        ..GuestLimits::default()
    }
}

/// Runs the scenario where the hostile shard's third message is `bad`, and
/// returns the hostile shard's final error.
async fn contain(bad: &str) -> String {
    contain_under(bad, test_limits()).await
}

/// [`contain`] with the hostile shard's guest under `limits`.
async fn contain_under(bad: &str, limits: GuestLimits) -> String {
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
    assert!(error.contains("application crashed"), "{error}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_overflows_the_stack_and_fails_its_shard_and_not_its_neighbour() {
    let error = contain("recurse").await;
    println!("recursion: {error}");
    assert!(error.contains("application crashed"), "{error}");
    // Either wasmtime's native stack guard or the guest's shadow stack
    // running off the bottom of linear memory stops it: both are traps.
    assert!(
        error.contains("call stack exhausted") || error.contains("out of bounds memory access"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_division_by_zero_traps_and_fails_its_shard_and_not_its_neighbour() {
    let error = contain("divide").await;
    assert!(error.contains("application crashed"), "{error}");
    assert!(error.contains("attempt to divide by zero"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_out_of_bounds_traps_and_fails_its_shard_and_not_its_neighbour() {
    let error = contain("index").await;
    assert!(error.contains("application crashed"), "{error}");
    assert!(error.contains("index out of bounds"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_past_the_message_cap_fails_its_shard_and_not_its_neighbour() {
    let limits = GuestLimits {
        max_txn_messages: 50,
        ..test_limits()
    };
    let error = contain_under(&format!("publish-many:{HOSTILE_OUTPUT}=51"), limits).await;
    assert!(
        error.contains("the transaction already published 50 messages"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_past_the_byte_cap_fails_its_shard_and_not_its_neighbour() {
    let limits = GuestLimits {
        max_txn_bytes: 4096,
        ..test_limits()
    };
    let error = contain_under(&format!("publish-many:{HOSTILE_OUTPUT}=1000"), limits).await;
    assert!(
        error.contains("published documents would exceed 4096 bytes"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_past_the_size_cap_fails_its_shard_and_not_its_neighbour() {
    let cap = weir::limits::DEFAULT_MAX_MESSAGE_BYTES;
    let error = contain(&format!("publish-big:{HOSTILE_OUTPUT}={}", cap + 1)).await;
    assert!(
        error.contains(&format!(
            "a document of {} bytes exceeds {cap} bytes",
            cap + 1
        )),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_value_past_the_size_cap_fails_its_shard_and_not_its_neighbour() {
    let cap = weir::limits::DEFAULT_STORE_MAX_VALUE_BYTES;
    let error = contain(&format!("put-big:big={}", cap + 1)).await;
    assert!(
        error.contains(&format!(
            "store value of {} bytes exceeds {cap} bytes",
            cap + 1
        )),
        "{error}"
    );
}

/// A store and publisher that accept everything, for calling a guest
/// outside a shard.
#[derive(Default)]
struct Sink {
    store: weir::consumer::MemoryStore,
    published: usize,
}

impl weir::consumer::TxnPublisher for Sink {
    fn publish(&mut self, _journal: &str, _doc: &[u8]) -> Result<(), weir::consumer::PublishError> {
        self.published += 1;
        Ok(())
    }
}

/// Calls `guest` once with document `doc`; returns the outcome and its time.
fn call(guest: &mut GuestApplication, doc: &str) -> (Result<(), AppError>, Duration) {
    let mut sink = Sink::default();
    let mut store = std::mem::take(&mut sink.store);
    let mut txn = TxnContext {
        shard: "hostile-000",
        store: &mut store,
        publisher: &mut sink,
    };
    let envelope = Envelope::new(
        Arc::from("test/journal"),
        0,
        doc.len() as i64 + 1,
        weir::message::build_uuid(
            weir::message::ProducerId([1, 2, 3, 4, 5, 6]),
            weir::message::Clock(1 << 4),
            weir::message::Flags::OutsideTxn,
        ),
        bytes::Bytes::copy_from_slice(doc.as_bytes()),
    );
    let started = Instant::now();
    let outcome = guest.consume_message(&mut txn, &envelope);
    (outcome, started.elapsed())
}

#[test]
fn a_runaway_loop_is_interrupted_within_its_deadline_plus_one_tick() {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let tick = runtime.config().epoch_tick;
    let module = runtime.consumer_module(HOSTILE_WASM).unwrap();
    for deadline in [Duration::from_millis(50), Duration::from_millis(200)] {
        let limits = GuestLimits {
            call_deadline: deadline,
            ..GuestLimits::default()
        };
        let mut guest = module.application("hostile-000", limits).unwrap();
        let (outcome, elapsed) = call(&mut guest, "loop");
        println!("deadline {deadline:?}: interrupted after {elapsed:?} (tick {tick:?})");
        match outcome {
            Err(AppError::Crashed(reason)) => assert!(
                reason.contains(&format!("deadline of {deadline:?} exceeded")),
                "{reason}"
            ),
            other => panic!("expected a deadline crash, got {other:?}"),
        }
        assert!(elapsed >= deadline, "interrupted early: {elapsed:?}");
        // One tick of rounding, plus slack for a loaded 2-core machine.
        assert!(
            elapsed <= deadline + tick + Duration::from_millis(500),
            "interrupted late: {elapsed:?}"
        );
    }
}

/// A `/proc/self/status` field, in bytes.
fn proc_status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn a_memory_bomb_is_refused_at_the_cap_and_host_memory_stays_bounded() {
    let cap = 64 << 20;
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let module = runtime.consumer_module(HOSTILE_WASM).unwrap();
    let limits = GuestLimits {
        memory_bytes: cap,
        ..GuestLimits::default()
    };
    let mut guest = module.application("hostile-000", limits).unwrap();
    let before = proc_status_bytes("VmRSS:");
    let peak_before = proc_status_bytes("VmHWM:");
    let (outcome, _) = call(&mut guest, "alloc");
    let after = proc_status_bytes("VmRSS:");
    let peak_after = proc_status_bytes("VmHWM:");
    println!(
        "memory bomb under a {cap}-byte cap: RSS {before} -> {after} bytes, peak {peak_before} -> {peak_after}"
    );
    match outcome {
        Err(AppError::Crashed(reason)) => assert!(
            reason.contains(&format!("memory limit of {cap} bytes exceeded")),
            "{reason}"
        ),
        other => panic!("expected a memory crash, got {other:?}"),
    }
    assert!(
        after.saturating_sub(before) < 2 * cap,
        "RSS grew by {} bytes",
        after - before
    );
    assert!(
        peak_after.saturating_sub(peak_before) < 2 * cap,
        "peak RSS grew by {} bytes",
        peak_after - peak_before
    );
    let (outcome, _) = call(&mut guest, "ok");
    outcome.expect("a fresh instance works after the crash");
}

/// A registry over the fixture's broker whose module store holds the
/// hostile guest; returns it with the hostile shard's spec pinned to it.
async fn registry(f: &Fixture) -> (ShardRegistry, ShardSpec) {
    let modules = ModuleStore::open(&f.dir.path().join("modules"), f.runtime.clone()).unwrap();
    let (digest, _) = modules.push(HOSTILE_WASM).unwrap();
    let registry = ShardRegistry::open(&f.dir.path().join("registry"), f.client.clone(), modules)
        .await
        .unwrap();
    let mut spec = spec("hostile-000", HOSTILE_INPUT);
    spec.min_txn_duration = Duration::ZERO;
    spec.labels.set(MODULE_LABEL, digest.to_string());
    (registry, spec)
}

async fn upsert(registry: &ShardRegistry, spec: &ShardSpec) -> Result<i64, ShardRegistryError> {
    registry
        .apply(vec![ShardChange::Upsert {
            spec: spec.clone(),
            expect: ExpectRevision::Any,
        }])
        .await
}

/// The registry's hostile shard's status, once it has ended FAILED.
async fn registry_failure(registry: &ShardRegistry) -> String {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let listing = registry.list(&LabelSelector::default());
        if let Some(ReplicaState::Serving(ShardStatus::Failed { error })) =
            listing.shards.first().map(|shard| shard.state.clone())
        {
            return error;
        }
        assert!(
            Instant::now() < give_up,
            "not FAILED within 60 s: {:?}",
            listing.shards
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_limit_label_is_refused_at_apply_and_changes_nothing() {
    let f = fixture().await;
    let (registry, mut spec) = registry(&f).await;
    spec.disable = true;
    let revision = upsert(&registry, &spec).await.unwrap();
    for (label, value, expected) in [
        (CALL_DEADLINE_LABEL, "fast", "1..=600000 milliseconds"),
        (CALL_DEADLINE_LABEL, "0", "1..=600000 milliseconds"),
        (MEMORY_LABEL, "8589934592", "65536..=4294967296 bytes"),
        (VALUE_BYTES_LABEL, "1048577", "1..=1048576 bytes"),
        ("weir.dev/limit.deadline", "10", "not a known limit"),
    ] {
        let mut bad = spec.clone();
        bad.labels.set(label, value);
        let err = upsert(&registry, &bad).await.unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, ShardRegistryError::InvalidSpec(_)),
            "{label}={value}: {text}"
        );
        assert!(text.contains(label) && text.contains(expected), "{text}");
        assert_eq!(registry.revision(), revision, "nothing changed");
        let listed = registry.list(&LabelSelector::default());
        assert_eq!(listed.shards[0].spec, spec, "the stored spec is untouched");
    }
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fuel_label_is_refused_by_a_host_without_fuel_metering() {
    let f = fixture().await;
    let (registry, mut spec) = registry(&f).await;
    spec.labels.set(FUEL_LABEL, "1000000");
    let err = upsert(&registry, &spec).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ShardRegistryError::InvalidSpec(_)), "{text}");
    assert!(
        text.contains(FUEL_LABEL) && text.contains("fuel metering"),
        "{text}"
    );
    assert!(registry.list(&LabelSelector::default()).shards.is_empty());
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_label_applies_to_its_shard_and_a_change_applies_without_a_restart() {
    let f = fixture().await;
    let command = |what: &str| serde_json::json!({ "do": what }).to_string().into_bytes();
    f.publish(HOSTILE_INPUT, [command("loop")]).await;
    let (registry, mut spec) = registry(&f).await;

    spec.labels.set(CALL_DEADLINE_LABEL, "50");
    upsert(&registry, &spec).await.unwrap();
    let error = registry_failure(&registry).await;
    assert!(error.contains("deadline of 50ms exceeded"), "{error}");

    // The same registry, a new spec: the next term runs under it.
    spec.labels.set(CALL_DEADLINE_LABEL, "120");
    upsert(&registry, &spec).await.unwrap();
    let error = registry_failure(&registry).await;
    assert!(error.contains("deadline of 120ms exceeded"), "{error}");
    registry.shutdown().await;
}
