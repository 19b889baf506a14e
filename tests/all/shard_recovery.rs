//! Shard recovery beyond crashes of one primary: a zombie primary is fenced
//! by its successor, a hot standby takes over without replaying the log from
//! its start, and a primary whose local store is gone recovers from the
//! recovery log alone. In each case every input affects the store exactly
//! once and every output is read exactly once.

use std::sync::Arc;
use std::time::Duration;

use integration_tests::{
    CountingApp, counting_spec, create_journal, open_broker, publish_numbers, verify_counts,
};
use weir::broker::protocol::JournalClient;
use weir::consumer::{AppFactory, ShardConfig, ShardStatus, spawn_shard, spawn_shard_from_standby};
use weir::message::AtomicClock;
use weir::store::{Standby, StoreConfig};

const INPUT: &str = "test/input/part-000";
const OUTPUT: &str = "test/output/counts";
const LOG: &str = "test/recovery/count-000";

struct Fixture {
    dir: tempfile::TempDir,
    broker: weir::broker::Broker,
    client: Arc<dyn JournalClient>,
    clock: Arc<AtomicClock>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_broker(&dir.path().join("broker")).await.unwrap();
    let client: Arc<dyn JournalClient> = Arc::new(broker.clone());
    for journal in [INPUT, OUTPUT, LOG] {
        create_journal(client.as_ref(), journal, &[]).await.unwrap();
    }
    Fixture {
        dir,
        broker,
        client,
        clock: Arc::new(AtomicClock::now()),
    }
}

fn app() -> AppFactory {
    let output: Arc<str> = Arc::from(OUTPUT);
    Arc::new(move || {
        Ok(Box::new(CountingApp {
            output: output.clone(),
        }) as _)
    })
}

fn config(dir: &std::path::Path) -> ShardConfig {
    let mut config = ShardConfig::new(dir);
    config.backoff = Duration::from_millis(1);
    config
}

async fn publish_more(f: &Fixture, from: u64, to: u64) -> i64 {
    // Numbers from..to, as `publish_numbers` does for 0..n.
    let producer = weir::message::Publisher::new(
        f.client.clone(),
        f.clock.clone(),
        tokio::runtime::Handle::current(),
    );
    for n in from..to {
        producer
            .publish_committed(INPUT, format!(r#"{{"n":{n}}}"#).as_bytes())
            .unwrap();
    }
    producer.flush().await.unwrap();
    f.broker.write_head(INPUT).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_primary_is_fenced_and_its_output_never_commits() {
    let f = fixture().await;
    publish_numbers(f.client.clone(), INPUT, 200).await.unwrap();
    let spec = counting_spec("count-000", INPUT, Duration::from_millis(20));
    let zombie = spawn_shard(
        spec.clone(),
        f.client.clone(),
        app(),
        config(&f.dir.path().join("a")),
        f.clock.clone(),
    );
    zombie
        .wait_read_through(INPUT, f.broker.write_head(INPUT).unwrap())
        .await
        .unwrap();

    // A second primary of the same shard (another host's directory) takes
    // over; the first keeps running, unaware.
    let successor = spawn_shard(
        spec.clone(),
        f.client.clone(),
        app(),
        config(&f.dir.path().join("b")),
        f.clock.clone(),
    );
    let mut status = successor.watch_status();
    status
        .wait_for(|s| *s == ShardStatus::Primary)
        .await
        .unwrap();

    // New input reaches both. Only the successor can commit it.
    let head = publish_more(&f, 200, 400).await;
    successor.wait_read_through(INPUT, head).await.unwrap();
    let mut zombie_status = zombie.watch_status();
    tokio::time::timeout(
        Duration::from_secs(30),
        zombie_status.wait_for(|s| matches!(s, ShardStatus::Fenced { .. })),
    )
    .await
    .expect("the zombie learns it is fenced")
    .unwrap();
    zombie.abort().await;
    successor.stop().await;

    verify_counts(
        f.client.clone(),
        &f.dir.path().join("b").join("count-000"),
        LOG,
        OUTPUT,
        400,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_standby_takes_over_where_the_primary_left_off() {
    let f = fixture().await;
    publish_numbers(f.client.clone(), INPUT, 300).await.unwrap();
    let spec = counting_spec("count-000", INPUT, Duration::from_millis(20));
    let primary = spawn_shard(
        spec.clone(),
        f.client.clone(),
        app(),
        config(&f.dir.path().join("a")),
        f.clock.clone(),
    );
    primary
        .wait_read_through(INPUT, f.broker.write_head(INPUT).unwrap())
        .await
        .unwrap();

    let standby_config = config(&f.dir.path().join("b"));
    let standby = Standby::start(
        f.client.clone(),
        LOG,
        &standby_config.store_dir(&spec),
        StoreConfig::default(),
    )
    .await
    .unwrap();
    // The primary dies (as a killed process: in-flight work abandoned).
    primary.abort().await;
    let log_head = f.broker.write_head(LOG).unwrap();
    standby.wait_for_offset(log_head).await.unwrap();

    let head = publish_more(&f, 300, 600).await;
    let successor = spawn_shard_from_standby(
        spec,
        f.client.clone(),
        app(),
        standby_config,
        f.clock.clone(),
        standby,
    );
    successor.wait_read_through(INPUT, head).await.unwrap();
    successor.stop().await;

    verify_counts(
        f.client.clone(),
        &f.dir.path().join("b").join("count-000"),
        LOG,
        OUTPUT,
        600,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_with_an_empty_data_directory_recovers_from_the_log_alone() {
    let f = fixture().await;
    publish_numbers(f.client.clone(), INPUT, 300).await.unwrap();
    let spec = counting_spec("count-000", INPUT, Duration::from_millis(20));
    let first = spawn_shard(
        spec.clone(),
        f.client.clone(),
        app(),
        config(&f.dir.path().join("a")),
        f.clock.clone(),
    );
    first
        .wait_read_through(INPUT, f.broker.write_head(INPUT).unwrap())
        .await
        .unwrap();
    first.stop().await;
    std::fs::remove_dir_all(f.dir.path().join("a")).unwrap();

    let head = publish_more(&f, 300, 500).await;
    let second = spawn_shard(
        spec,
        f.client.clone(),
        app(),
        config(&f.dir.path().join("a")),
        f.clock.clone(),
    );
    second.wait_read_through(INPUT, head).await.unwrap();
    second.stop().await;

    verify_counts(
        f.client.clone(),
        &f.dir.path().join("a").join("count-000"),
        LOG,
        OUTPUT,
        500,
    )
    .await;
}
