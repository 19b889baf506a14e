//! Exactly-once with real process deaths: a child process running the
//! counting shard (broker embedded) is SIGKILLed at random moments, many
//! times, and restarted on the same data directory. When a final run has read
//! through the input, every message affected the store exactly once and
//! every output is read exactly once.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use integration_tests::{create_journal, open_broker, publish_numbers, verify_counts};
use rand::Rng;
use weir::broker::protocol::JournalClient;

const INPUT: &str = "test/input/part-000";
const OUTPUT: &str = "test/output/counts";
const MESSAGES: u64 = 50_000;
const KILLS: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_consumer_processes_lose_and_repeat_nothing() {
    let mut dir = tempfile::tempdir().unwrap();
    // Set WEIR_TEST_KEEP to keep the data directory for a post-mortem.
    if std::env::var_os("WEIR_TEST_KEEP").is_some() {
        eprintln!("keeping {}", dir.path().display());
        dir.disable_cleanup(true);
    }
    let head = {
        let broker = open_broker(&dir.path().join("broker")).await.unwrap();
        let client: Arc<dyn JournalClient> = Arc::new(broker.clone());
        create_journal(client.as_ref(), INPUT, &[]).await.unwrap();
        create_journal(client.as_ref(), OUTPUT, &[]).await.unwrap();
        create_journal(client.as_ref(), "test/recovery/count-000", &[])
            .await
            .unwrap();
        publish_numbers(client.clone(), INPUT, MESSAGES)
            .await
            .unwrap();
        let head = broker.write_head(INPUT).unwrap();
        broker.shutdown().await;
        head
    };
    let exe = env!("CARGO_BIN_EXE_count_consumer");
    let spawn = || {
        Command::new(exe)
            .args([
                dir.path().to_str().unwrap(),
                INPUT,
                OUTPUT,
                &head.to_string(),
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("the child starts")
    };
    let pauses: Vec<u64> = {
        let mut rng = rand::rng();
        (0..KILLS).map(|_| rng.random_range(5..60)).collect()
    };
    let mut killed_before_done = 0;
    for pause in pauses {
        let mut child = spawn();
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if child.try_wait().unwrap().is_none() {
            killed_before_done += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let started = std::time::Instant::now();
    let status = spawn().wait().unwrap();
    eprintln!(
        "final run took {:?}; {killed_before_done} of {KILLS} kills hit a running consumer",
        started.elapsed()
    );
    assert!(status.success(), "the final run finishes: {status}");
    assert!(
        killed_before_done >= KILLS / 2,
        "most kills hit a running consumer"
    );

    let broker = open_broker(&dir.path().join("broker")).await.unwrap();
    let client: Arc<dyn JournalClient> = Arc::new(broker.clone());
    verify_counts(
        client,
        &dir.path().join("shards").join("count-000"),
        "test/recovery/count-000",
        OUTPUT,
        MESSAGES,
    )
    .await;
}
