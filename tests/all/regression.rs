//! One test per bug found, each opening with the bug it pins down.

use std::sync::Arc;
use std::time::Duration;

use integration_tests::{
    CountingApp, counting_spec, create_journal, open_broker, publish_numbers, verify_counts,
};
use weir::broker::protocol::JournalClient;
use weir::consumer::{AppError, AppFactory, Application, ShardConfig, TxnContext, spawn_shard};
use weir::message::{AtomicClock, Envelope};

/// The counting application, slowed so that every transaction outlives its
/// max duration after its first message.
struct Slow(CountingApp);

impl Application for Slow {
    fn consume_message(
        &mut self,
        txn: &mut TxnContext<'_>,
        env: &Envelope,
    ) -> Result<(), AppError> {
        std::thread::sleep(Duration::from_millis(3));
        self.0.consume_message(txn, env)
    }

    fn finalize_txn(&mut self, txn: &mut TxnContext<'_>) -> Result<(), AppError> {
        self.0.finalize_txn(txn)
    }
}

// Bug (found by the SIGKILL consumer test): once a transaction's max
// duration had passed, the loop still polled the reader once more and
// dropped the envelope it got, although the sequencer had already counted it
// as read: that message was lost. Here every transaction hits that moment
// with messages ready, so a regression loses many of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_past_its_max_duration_loses_no_ready_message() {
    const INPUT: &str = "test/input/part-000";
    const OUTPUT: &str = "test/output/counts";
    const LOG: &str = "test/recovery/count-000";
    const MESSAGES: u64 = 60;
    let dir = tempfile::tempdir().unwrap();
    let broker = open_broker(&dir.path().join("broker")).await.unwrap();
    let client: Arc<dyn JournalClient> = Arc::new(broker.clone());
    for journal in [INPUT, OUTPUT, LOG] {
        create_journal(client.as_ref(), journal, &[]).await.unwrap();
    }
    publish_numbers(client.clone(), INPUT, MESSAGES)
        .await
        .unwrap();
    let head = broker.write_head(INPUT).unwrap();

    let output: Arc<str> = Arc::from(OUTPUT);
    let app: AppFactory = Arc::new(move || {
        Ok(Box::new(Slow(CountingApp {
            output: output.clone(),
        })) as _)
    });
    let mut config = ShardConfig::new(dir.path().join("shards"));
    config.consume_batch = 1;
    let spec = counting_spec("count-000", INPUT, Duration::from_millis(1));
    let shard = spawn_shard(
        spec,
        client.clone(),
        app,
        config,
        Arc::new(AtomicClock::now()),
    );
    tokio::time::timeout(
        Duration::from_secs(30),
        shard.wait_read_through(INPUT, head),
    )
    .await
    .expect("the shard reads through its input")
    .expect("the shard keeps running");
    shard.stop().await;
    verify_counts(
        client,
        &dir.path().join("shards").join("count-000"),
        LOG,
        OUTPUT,
        MESSAGES,
    )
    .await;
}
