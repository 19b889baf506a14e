//! `weir test` as a real process, on the stream-sum summer component: it
//! reports the sums the summer committed and its per-stream store, the same
//! bytes on every run; with `--crash-every` it crashes and recovers the shard
//! and still commits exactly what a crash-free run does; `--expect` shows the
//! first difference and exits 2; a lost chunk (a SeqNo gap) fails the run
//! naming the message; a component of another world is refused.
//!
//! The expected sums are computed here, from the fixture, with the CRC-64/XZ
//! chaining of `guest_summer::sum::crc64_update`, and anchored on Go's value
//! for "battery horse".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use weir::runtime::guests::{CHUNKER_WASM, SUMMER_WASM};
use weir::stream_sum::SUMS_JOURNAL;
use weir::stream_sum::sum::{Chunk, crc64_update};

const WEIR: &str = env!("CARGO_BIN_EXE_weir_cli");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/sandbox")
        .join(name)
}

/// A temporary directory holding `summer.wasm` and `chunker.wasm`.
fn guests() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("summer.wasm"), SUMMER_WASM).unwrap();
    std::fs::write(dir.path().join("chunker.wasm"), CHUNKER_WASM).unwrap();
    dir
}

/// Runs `weir test GUEST --input INPUT ARGS…`.
fn weir_test(guest: &Path, input: &Path, args: &[&str]) -> Output {
    Command::new(WEIR)
        .arg("test")
        .arg(guest)
        .arg("--input")
        .arg(input)
        .args(args)
        .env("WEIR_LOG", "error")
        .output()
        .expect("weir test runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A stream's expected state after the fixture: last SeqNo and sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expected {
    seq_no: u64,
    value: u64,
    done: bool,
}

/// Folds the fixture's chunks per stream; also returns the streams in the
/// order their final chunks arrive (the order of their published sums).
fn expected_sums(input: &Path) -> (BTreeMap<[u8; 16], Expected>, Vec<[u8; 16]>) {
    let mut streams: BTreeMap<[u8; 16], Expected> = BTreeMap::new();
    let mut finished = Vec::new();
    for line in std::fs::read_to_string(input).unwrap().lines() {
        let chunk = Chunk::parse(line.as_bytes()).unwrap();
        let data = chunk.decode_data().unwrap();
        let state = streams.entry(chunk.id).or_insert(Expected {
            seq_no: 0,
            value: 0,
            done: false,
        });
        assert_eq!(chunk.seq_no, state.seq_no + 1, "the fixture has no gaps");
        state.seq_no = chunk.seq_no;
        state.value = crc64_update(state.value, &data);
        if data.is_empty() {
            state.done = true;
            finished.push(chunk.id);
        }
    }
    (streams, finished)
}

fn id_of(doc: &Value) -> [u8; 16] {
    let bytes: Vec<u8> = doc["ID"]
        .as_array()
        .expect("an ID array")
        .iter()
        .map(|b| b.as_u64().expect("a byte") as u8)
        .collect();
    bytes.try_into().expect("16 bytes")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_summer_commits_every_sum_and_its_store_the_same_way_every_run() {
    let dir = guests();
    let summer = dir.path().join("summer.wasm");
    let input = fixture("chunks.jsonl");
    let (streams, finished) = expected_sums(&input);
    let mut first_stream = [0u8; 16];
    first_stream[0] = 1;
    assert_eq!(
        streams[&first_stream].value, 0xae76_3109_c119_2ed6,
        "stream 1 is \"battery horse\", whose CRC-64/XZ Go computes as this"
    );

    let first = weir_test(&summer, &input, &[]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let stdout = text(&first.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON lines"))
        .collect();
    let (published, stored): (Vec<&Value>, Vec<&Value>) =
        lines.iter().partition(|line| line.get("journal").is_some());

    // One sum per finished stream, in the order the streams finished.
    let sums: Vec<[u8; 16]> = published.iter().map(|line| id_of(&line["doc"])).collect();
    assert_eq!(sums, finished);
    for line in &published {
        assert_eq!(line["journal"], SUMS_JOURNAL);
        assert!(
            line["doc"].get("UUID").is_none(),
            "UUIDs are removed: {line}"
        );
        let want = streams[&id_of(&line["doc"])];
        assert_eq!(line["doc"]["SeqNo"], want.seq_no, "{line}");
        assert_eq!(line["doc"]["Value"], want.value, "{line}");
    }

    // The store holds every stream's state, finished or not, by raw id.
    assert_eq!(stored.len(), streams.len());
    assert!(
        streams.values().any(|s| !s.done),
        "the fixture has an open stream"
    );
    for (line, (id, want)) in stored.iter().zip(&streams) {
        assert_eq!(line["key_hex"], hex(id), "{line}");
        let sum: Value = serde_json::from_str(line["value"].as_str().expect("text")).unwrap();
        assert_eq!(id_of(&sum), *id);
        assert_eq!(
            (sum["SeqNo"].as_u64(), sum["Value"].as_u64()),
            (Some(want.seq_no), Some(want.value))
        );
    }

    // Deterministic: a second run prints the same bytes, which are also the
    // checked-in expectation.
    let expected = fixture("chunks.expected.jsonl");
    let second = weir_test(&summer, &input, &["--expect", expected.to_str().unwrap()]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(text(&second.stdout), stdout);
}

#[test]
fn crashing_every_three_messages_commits_the_same_output() {
    let dir = guests();
    let summer = dir.path().join("summer.wasm");
    let input = fixture("chunks.jsonl");
    let crashed = weir_test(&summer, &input, &["--crash-every", "3"]);
    let stderr = text(&crashed.stderr);
    assert!(crashed.status.success(), "{stderr}");
    let crashes: usize = stderr
        .lines()
        .find_map(|line| line.strip_prefix("crashes: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a crash count in: {stderr}"));
    // 12 messages, a crash per round of 3.
    assert_eq!(crashes, 4, "{stderr}");
    assert!(
        stderr.contains("committed exactly what the crash-free run did"),
        "{stderr}"
    );
    let expected = std::fs::read_to_string(fixture("chunks.expected.jsonl")).unwrap();
    assert_eq!(text(&crashed.stdout), expected);
}

#[test]
fn a_wrong_expectation_exits_2_and_shows_the_first_difference() {
    let dir = guests();
    let summer = dir.path().join("summer.wasm");
    let expected = std::fs::read_to_string(fixture("chunks.expected.jsonl")).unwrap();
    let mut lines: Vec<&str> = expected.lines().collect();
    let wrong_line = "{\"journal\":\"examples/stream-sum/sums\",\"doc\":{\"wrong\":true}}";
    lines[1] = wrong_line;
    let wrong = dir.path().join("wrong.jsonl");
    std::fs::write(&wrong, lines.join("\n") + "\n").unwrap();

    let out = weir_test(
        &summer,
        &fixture("chunks.jsonl"),
        &["--expect", wrong.to_str().unwrap()],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("first difference at line 2"), "{stderr}");
    assert!(stderr.contains(wrong_line), "{stderr}");
    assert!(
        stderr.contains(expected.lines().nth(1).unwrap()),
        "{stderr}"
    );
}

#[test]
fn a_seqno_gap_fails_the_run_naming_the_message() {
    let dir = guests();
    let out = weir_test(
        &dir.path().join("summer.wasm"),
        &fixture("chunks-gap.jsonl"),
        &[],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // Line 3 skips from SeqNo 1 to 3; its offset is the two lines before it.
    let gap = std::fs::read_to_string(fixture("chunks-gap.jsonl")).unwrap();
    assert!(gap.lines().nth(2).unwrap().contains("\"SeqNo\":3"));
    assert!(stderr.contains("(input line 3)"), "{stderr}");
    assert!(stderr.contains("test/input:"), "{stderr}");
    assert!(stderr.contains("expected 2, got 3"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing is reported for a failed run"
    );
}

#[test]
fn a_component_of_another_world_is_refused_naming_what_is_missing() {
    let dir = guests();
    let out = weir_test(
        &dir.path().join("chunker.wasm"),
        &fixture("chunks.jsonl"),
        &[],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not a usable consumer component"),
        "{stderr}"
    );
    assert!(stderr.contains("consumer world"), "{stderr}");
    assert!(
        stderr.contains("weir:guest/journals"),
        "the import is named: {stderr}"
    );
}
