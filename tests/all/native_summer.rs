//! The native summer (the guest's own `sum` logic compiled into the host) on
//! real journals, a real shard and RocksDB store: every stream's committed
//! sum equals its expected CRC-64/XZ, and each is committed exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use integration_tests::{open_broker, read_committed_through_barrier};
use weir::broker::protocol::JournalClient;
use weir::cli::stream_sum::{names, setup_journals};
use weir::consumer::{AppFactory, ShardConfig, spawn_shard};
use weir::message::{AtomicClock, Publisher};
use weir::stream_sum::sum::{StreamId, Sum};
use weir::stream_sum::{NativeSummer, StreamGenerator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_summer_commits_every_expected_sum_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_broker(&dir.path().join("broker")).await.unwrap();
    let client: Arc<dyn JournalClient> = Arc::new(broker.clone());
    let spec = setup_journals(client.as_ref(), 1).await.unwrap().remove(0);
    let partition = spec.sources[0].journal.clone();

    // 300 interleaved streams of 10 data chunks and a final one.
    let clock = Arc::new(AtomicClock::now());
    let publisher = Publisher::new(
        client.clone(),
        clock.clone(),
        tokio::runtime::Handle::current(),
    );
    let mut expected: HashMap<StreamId, Sum> = HashMap::new();
    for chunk in StreamGenerator::new(7, 300, 10) {
        publisher.publish_committed(&partition, &chunk.doc).unwrap();
        if let Some(sum) = chunk.final_sum {
            expected.insert(chunk.id, sum);
        }
    }
    publisher.flush().await.unwrap();
    assert_eq!(expected.len(), 300);
    let head = broker.write_head(&partition).unwrap();

    let app: AppFactory = Arc::new(|| Ok(Box::new(NativeSummer::new()) as _));
    let shard = spawn_shard(
        spec,
        client.clone(),
        app,
        ShardConfig::new(dir.path().join("shards")),
        clock,
    );
    tokio::time::timeout(
        Duration::from_secs(60),
        shard.wait_read_through(&partition, head),
    )
    .await
    .expect("the summer reads through its partition")
    .expect("the summer keeps running");
    shard.stop().await;

    // Audit the sums journal read-committed, through a barrier.
    let mut seen: HashMap<StreamId, Sum> = HashMap::new();
    for env in read_committed_through_barrier(client.clone(), names::SUMS).await {
        let sum = Sum::parse(&env.doc).unwrap();
        assert_eq!(
            Some(&sum),
            expected.get(&sum.id),
            "a committed sum matches its stream"
        );
        assert!(
            seen.insert(sum.id, sum).is_none(),
            "a stream's sum was committed twice"
        );
    }
    assert_eq!(
        seen.len(),
        expected.len(),
        "every stream's sum was committed"
    );
}
