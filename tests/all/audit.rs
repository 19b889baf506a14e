//! The stream-sum auditor end to end: a clean stream-sum run on an embedded
//! data directory passes `weir audit` with every verified stream completed
//! and no anomaly; one extra committed copy of a sum (what Gazette's chunker
//! would not notice) then fails it with exactly one `duplicated`.

use std::path::Path;
use std::process::{Command, Output};

use integration_tests::{open_broker, read_all};
use weir::broker::protocol::{AppendRequest, JournalClient};
use weir::cli::chunker::ChunkerArgs;
use weir::cli::stream_sum::{StreamSumCommand, StreamSumOutcome, names};
use weir::message::{AtomicClock, Flags, ProducerId, build_uuid};

const PARTITIONS: u32 = 4;
const WORKERS: u32 = 4;
const STREAMS: i64 = 10;
const CHUNKS: u32 = 5;

/// Runs stream-sum on `dir` and returns how many streams the chunker verified.
async fn run_stream_sum(dir: &Path) -> u64 {
    let command = StreamSumCommand {
        partitions: PARTITIONS,
        job: ChunkerArgs {
            streams: STREAMS,
            chunks: CHUNKS,
            workers: WORKERS,
            seed: Some(6),
            chunker: None,
        },
        data_dir: Some(dir.to_path_buf()),
        summer: None,
        broker: None,
        consumer: None,
    };
    match command
        .run()
        .await
        .expect("stream-sum verifies every stream")
    {
        StreamSumOutcome::Verified { report, .. } => report.streams_verified,
        other => panic!("nothing interrupts the run: {other:?}"),
    }
}

/// `weir audit --data-dir DIR --json FILE` as a process: its output and the
/// JSON report it wrote.
fn run_audit(dir: &Path, json: &Path) -> (Output, serde_json::Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_weir_cli"))
        .arg("audit")
        .arg("--data-dir")
        .arg(dir)
        .arg("--json")
        .arg(json)
        .output()
        .expect("weir_cli runs");
    let report = std::fs::read(json).unwrap_or_else(|err| {
        panic!(
            "the audit wrote its JSON report ({err}); stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (
        output,
        serde_json::from_slice(&report).expect("the report is JSON"),
    )
}

fn anomalies_by_kind(report: &serde_json::Value) -> Vec<(String, u64)> {
    report["by_kind"]
        .as_object()
        .expect("anomalies by kind")
        .iter()
        .map(|(kind, list)| (kind.clone(), list["count"].as_u64().expect("a count")))
        .filter(|(_, count)| *count > 0)
        .collect()
}

/// Appends a copy of the sums journal's first sum, committed on its own
/// (OUTSIDE_TXN) under a fresh producer, as a duplicate that slipped past
/// exactly-once would be.
async fn append_duplicate_sum(data_dir: &Path) {
    let broker = open_broker(&data_dir.join("broker"))
        .await
        .expect("the broker reopens");
    let content = read_all(&broker, names::SUMS).await.expect("sums read");
    let first = content
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice::<serde_json::Value>(line).expect("a JSON line"))
        .find(|doc| doc.get("ID").is_some())
        .expect("the run committed sums");
    let mut copy = first.clone();
    let uuid = build_uuid(
        ProducerId::random(),
        AtomicClock::now().tick(),
        Flags::OutsideTxn,
    );
    copy["UUID"] = serde_json::Value::String(uuid.to_string());
    let mut line = serde_json::to_vec(&copy).expect("encodes");
    line.push(b'\n');
    broker
        .append(AppendRequest {
            journal: names::SUMS.into(),
            content: line.into(),
            ..Default::default()
        })
        .await
        .expect("the duplicate appends");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auditor_passes_a_clean_run_and_finds_exactly_one_appended_duplicate_sum() {
    let dir = tempfile::tempdir().unwrap();
    let verified = run_stream_sum(dir.path()).await;
    assert_eq!(verified, u64::from(WORKERS) * STREAMS as u64);

    let json = dir.path().join("audit.json");
    let (output, report) = run_audit(dir.path(), &json);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "a clean run audits clean: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(report["streams_completed"], verified, "{stdout}");
    assert_eq!(report["streams_unfinished"], 0, "{stdout}");
    assert_eq!(report["sums_committed"], verified, "{stdout}");
    assert_eq!(
        report["chunk_messages"]["committed"],
        verified * (u64::from(CHUNKS) + 1),
        "{stdout}"
    );
    assert_eq!(report["journals_read"], u64::from(PARTITIONS) + 1);
    assert_eq!(anomalies_by_kind(&report), vec![], "{stdout}");
    assert!(stdout.contains("valid?          true"), "{stdout}");

    append_duplicate_sum(dir.path()).await;
    std::fs::remove_file(&json).unwrap();
    let (output, report) = run_audit(dir.path(), &json);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a duplicate fails the audit");
    assert_eq!(
        anomalies_by_kind(&report),
        vec![("duplicated".to_string(), 1)]
    );
    assert_eq!(report["sums_committed"], verified + 1);
    assert!(
        stderr.contains("1 anomalies: duplicated 1"),
        "the error names the kind: {stderr}"
    );
}
