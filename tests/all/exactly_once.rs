//! Exactly-once under crashes, in process: a shard running the counting
//! application is crashed at every phase of a transaction (while consuming,
//! after finalize, before and after the recovery-log commit, between the log
//! append and the local write, during ACKs). After recovery, every input
//! message must have affected the store exactly once, and every output must be
//! read exactly once by a read-committed reader. The input also holds
//! duplicate appends (at-least-once appends are normal), which must be dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use integration_tests::{CountingApp, create_journal, open_broker};
use weir::broker::protocol::{AppendRequest, JournalClient};
use weir::consumer::{
    AppFactory, FaultAction, FaultPoint, ShardConfig, ShardSpec, ShardStatus, Source, spawn_shard,
};
use weir::message::{AtomicClock, Publisher};
use weir::store::StoreConfig;

const INPUT: &str = "test/input/part-000";
const OUTPUT: &str = "test/output/counts";
const MESSAGES: u64 = 800;
const CRASHES: u32 = 4;
const TAIL: u64 = 10;

fn spec() -> ShardSpec {
    ShardSpec {
        id: "count-000".into(),
        sources: vec![Source {
            journal: INPUT.into(),
            min_offset: 0,
        }],
        recovery_log_prefix: "test/recovery".into(),
        max_txn_duration: Duration::from_millis(50),
        min_txn_duration: Duration::ZERO,
        disable: false,
        hot_standbys: 0,
        disable_wait_for_ack: false,
        ring_buffer_size: 0,
        read_channel_size: 0,
        labels: Default::default(),
    }
}

/// Crashes on every `every`-th visit of `point`, at most `crashes` times.
fn crash_at<P: PartialEq + Send + Sync + 'static>(
    point: P,
    every: u32,
    crashes: u32,
    done: Arc<AtomicU32>,
) -> impl Fn(P) -> bool + Send + Sync + 'static {
    let visits = AtomicU32::new(0);
    move |at: P| {
        if at != point {
            return false;
        }
        let visit = visits.fetch_add(1, Ordering::SeqCst) + 1;
        if visit.is_multiple_of(every) && done.load(Ordering::SeqCst) < crashes {
            done.fetch_add(1, Ordering::SeqCst);
            return true;
        }
        false
    }
}

enum Where {
    Shard(FaultPoint),
    Store(weir::store::FaultPoint),
}

async fn run_scenario(at: Where) {
    integration_tests::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let broker = open_broker(&dir.path().join("broker")).await.unwrap();
    let client: Arc<dyn JournalClient> = Arc::new(broker.clone());
    create_journal(client.as_ref(), INPUT, &[]).await.unwrap();
    create_journal(client.as_ref(), OUTPUT, &[]).await.unwrap();
    create_journal(client.as_ref(), &spec().recovery_log(), &[])
        .await
        .unwrap();

    // Input arrives in bursts while the shard runs (so there are many
    // transactions to crash in), then a duplicate of the first half of the
    // journal's bytes is appended, as a retried append would produce.
    let clock = Arc::new(AtomicClock::now());
    let input = {
        let client = client.clone();
        let clock = clock.clone();
        tokio::spawn(async move {
            let producer = Publisher::new(client.clone(), clock, tokio::runtime::Handle::current());
            for burst in 0..MESSAGES / 10 {
                for n in burst * 10..burst * 10 + 10 {
                    producer
                        .publish_committed(INPUT, format!(r#"{{"n":{n}}}"#).as_bytes())
                        .unwrap();
                }
                producer.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let bytes = integration_tests::read_all(client.as_ref(), INPUT)
                .await
                .unwrap();
            let half = bytes[..bytes.len() / 2]
                .iter()
                .rposition(|&b| b == b'\n')
                .unwrap()
                + 1;
            client
                .append(AppendRequest {
                    journal: INPUT.into(),
                    content: bytes::Bytes::copy_from_slice(&bytes[..half]),
                    ..Default::default()
                })
                .await
                .unwrap();
            // Fresh messages after the duplicates, so that reading through
            // the head needs a committed transaction past them (a run of
            // duplicates alone commits nothing: idle shards write nothing).
            for n in MESSAGES..MESSAGES + TAIL {
                producer
                    .publish_committed(INPUT, format!(r#"{{"n":{n}}}"#).as_bytes())
                    .unwrap();
            }
            producer.flush().await.unwrap();
            client
                .append(AppendRequest {
                    journal: INPUT.into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .end
        })
    };

    let fired = Arc::new(AtomicU32::new(0));
    let mut config = ShardConfig::new(dir.path().join("shards"));
    config.consume_batch = 4;
    config.max_failures = 1000;
    config.backoff = Duration::from_millis(1);
    config.backoff_max = Duration::from_millis(5);
    match at {
        Where::Shard(point) => {
            let crash = crash_at(point, 2, CRASHES, fired.clone());
            config.faults = Some(Arc::new(move |p| {
                if crash(p) {
                    FaultAction::Crash
                } else {
                    FaultAction::Continue
                }
            }));
        }
        Where::Store(point) => {
            let crash = crash_at(point, 2, CRASHES, fired.clone());
            let mut store = StoreConfig::default();
            store.fault_hook = Some(Arc::new(move |p| {
                if crash(p) {
                    weir::store::FaultAction::Crash
                } else {
                    weir::store::FaultAction::Continue
                }
            }));
            config.store = store;
        }
    }
    let output: Arc<str> = Arc::from(OUTPUT);
    let app: AppFactory = Arc::new(move || {
        Ok(Box::new(CountingApp {
            output: output.clone(),
        }) as _)
    });
    let shard = spawn_shard(spec(), client.clone(), app, config, clock.clone());
    let head = input.await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(60),
        shard.wait_read_through(INPUT, head),
    )
    .await
    .expect("the shard reads through its input within 60 s")
    .expect("the shard keeps running");
    assert!(matches!(
        shard.status(),
        ShardStatus::Primary | ShardStatus::Retrying { .. }
    ));
    shard.stop().await;
    assert_eq!(
        fired.load(Ordering::SeqCst),
        CRASHES,
        "every planned crash happened"
    );

    drop(broker);
    integration_tests::verify_counts(
        client,
        &dir.path().join("shards").join("count-000"),
        &spec().recovery_log(),
        OUTPUT,
        MESSAGES + TAIL,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_while_consuming_loses_and_repeats_nothing() {
    run_scenario(Where::Shard(FaultPoint::Consuming)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_finalize_loses_and_repeats_nothing() {
    run_scenario(Where::Shard(FaultPoint::AfterFinalize)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_the_log_commit_loses_and_repeats_nothing() {
    run_scenario(Where::Shard(FaultPoint::BeforeCommit)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_log_append_and_local_write_loses_and_repeats_nothing() {
    run_scenario(Where::Store(weir::store::FaultPoint::AfterLogAppend)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_commit_before_acks_loses_and_repeats_nothing() {
    run_scenario(Where::Shard(FaultPoint::AfterCommit)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_acks_loses_and_repeats_nothing() {
    run_scenario(Where::Shard(FaultPoint::DuringAcks)).await;
}
