//! Gazette's stream-sum end to end, through the library: an embedded broker,
//! four summer shards running the summer component, and the chunker
//! component publishing hundreds of streams and verifying every sum.
//!
//! The chunker checks each sum's value but, like Gazette's, would not notice
//! a sum committed twice. So after each run the sums journal is audited
//! independently with a read-committed reader: exactly one committed sum
//! per stream, every one final. The second run on the same data directory
//! proves continuation: the shards recover from their recovery logs (a shard
//! that re-read its partition from the start would re-publish the first
//! run's sums, which the audit would count twice) and the new streams verify.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use integration_tests::open_broker;
use weir::broker::protocol::{AppendRequest, JournalClient};
use weir::cli::chunker::ChunkerArgs;
use weir::cli::stream_sum::{StreamSumCommand, StreamSumOutcome, names};
use weir::message::{Envelope, ReadCommitted};
use weir::stream_sum::sum::{StreamId, Sum};

const PARTITIONS: u32 = 4;
const WORKERS: u32 = 4;
const STREAMS: i64 = 60;
const CHUNKS: u32 = 10;

fn command(data_dir: &Path, seed: u64) -> StreamSumCommand {
    StreamSumCommand {
        partitions: PARTITIONS,
        job: ChunkerArgs {
            streams: STREAMS,
            chunks: CHUNKS,
            workers: WORKERS,
            seed: Some(seed),
            chunker: None,
        },
        data_dir: Some(data_dir.to_path_buf()),
        summer: None,
        broker: None,
        consumer: None,
    }
}

/// Runs stream-sum and returns how many streams the chunker verified.
async fn run(data_dir: &Path, seed: u64) -> u64 {
    match command(data_dir, seed)
        .run()
        .await
        .expect("stream-sum verifies every stream")
    {
        StreamSumOutcome::Verified { report, .. } => {
            assert_eq!(
                report.chunks_published,
                (WORKERS as u64) * (STREAMS as u64) * (CHUNKS as u64 + 1)
            );
            report.streams_verified
        }
        other => panic!("nothing interrupts the run: {other:?}"),
    }
}

/// Every committed (read-committed) sum in the sums journal, in order.
async fn committed_sums(data_dir: &Path) -> Vec<Sum> {
    let broker = open_broker(&data_dir.join("broker"))
        .await
        .expect("the broker reopens");
    let client: Arc<dyn JournalClient> = Arc::new(broker.clone());
    let sums = read_committed(client, names::SUMS)
        .await
        .iter()
        .map(|env| Sum::parse(&env.doc).expect("a committed sum parses"))
        .collect();
    broker.shutdown().await;
    sums
}

/// The committed messages of `journal` (ACKs left out), in order, as a
/// read-committed reader sees them once it has read through the journal's
/// current write head.
pub(crate) async fn read_committed(client: Arc<dyn JournalClient>, journal: &str) -> Vec<Envelope> {
    let barrier = client
        .append(AppendRequest {
            journal: journal.into(),
            ..Default::default()
        })
        .await
        .expect("a write barrier");
    let mut reader = ReadCommitted::new(
        client.clone(),
        vec![(journal.to_string(), 0)],
        &BTreeMap::new(),
        1024,
        1024,
    )
    .expect("a read-committed reader");
    let mut committed = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        // The read-through offset passes a committed message only once it
        // was delivered; an uncommitted tail is skipped, not waited for.
        let checkpoint = reader.checkpoint(Duration::from_secs(86_400));
        let through = checkpoint
            .sources
            .get(journal)
            .map_or(0, |source| source.read_through);
        if through >= barrier.end {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{journal} is read through {} within 30 s",
            barrier.end
        );
        let env = match tokio::time::timeout(Duration::from_millis(50), reader.next()).await {
            Ok(env) => env.expect("committed messages decode"),
            Err(_) => continue,
        };
        if !env.is_ack() {
            committed.push(env);
        }
    }
    committed
}

/// Exactly one committed sum per stream, `streams` streams, all final.
fn audit(sums: &[Sum], streams: u64) {
    let mut per_stream: HashMap<StreamId, u32> = HashMap::new();
    for sum in sums {
        assert_eq!(
            sum.seq_no,
            u64::from(CHUNKS) + 1,
            "only final sums are published: {sum:?}"
        );
        *per_stream.entry(sum.id).or_default() += 1;
    }
    let twice: Vec<_> = per_stream.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{} streams have more than one committed sum: {twice:?}",
        twice.len()
    );
    assert_eq!(
        per_stream.len() as u64,
        streams,
        "one committed sum per stream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_sum_commits_each_sum_exactly_once_and_continues_on_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let per_run = (WORKERS as u64) * (STREAMS as u64);

    assert_eq!(run(dir.path(), 1).await, per_run);
    let first = committed_sums(dir.path()).await;
    audit(&first, per_run);

    // Again on the same data: the shards recover, new streams are verified.
    assert_eq!(run(dir.path(), 2).await, per_run);
    let both = committed_sums(dir.path()).await;
    assert_eq!(
        both[..first.len()],
        first[..],
        "the first run's sums are still there, unchanged"
    );
    audit(&both, 2 * per_run);
}
