//! The summer conformance suite: what any stream-sum summer component must
//! do, run against the Rust (`guest-summer`), Python, JavaScript and C
//! summers (`guests/`) alike, each as a real `weir test` / `weir stream-sum`
//! process.
//!
//! A summer conforms when, compared with the Rust reference:
//! - **exact sums**: on the sandbox fixture and on a generated interleaving of
//!   many streams it commits byte-identical output (published sums, then the
//!   store), with and without a crash and recovery every few messages (state
//!   survives restarts: a fresh instance continues from the store);
//! - **SeqNo errors surface**: a gap, a repeat or a zero SeqNo fails the run
//!   with Gazette's `invalid chunk.SeqNo` error, word for word, located at
//!   the failing message's journal offset;
//! - **ACKs are ignored**: chunks inside producer transactions, committed by
//!   ACK documents (which carry no chunk fields), sum as usual; and ACK
//!   envelopes handed to the component itself (the host's transactions
//!   never do, as Gazette's do not), through either export, are skipped;
//! - **malformed chunks are errors, never traps**: every case of
//!   `tests/fixtures/conformance/expectations.tsv` ends as the table says,
//!   with the error class (`malformed chunk` / `malformed chunk data`) and
//!   the location; the JSON library's own words after the class are only
//!   required of the Rust and C summers, which share serde's;
//! - **stream-sum end to end**: `weir stream-sum --summer GUEST` verifies
//!   every stream.
//!
//! The non-Rust summers are built by `guests/build.sh` (run by `make test`)
//! into `target/guests/`; `WEIR_GUESTS_DIR` points elsewhere. A missing one
//! fails the suite with the command that builds it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use std::sync::Arc;

use weir::consumer::{Application, MemoryStore, PublishError, TxnContext, TxnPublisher};
use weir::message::{Clock, Envelope, Flags, ProducerId, build_uuid};
use weir::runtime::guests::SUMMER_WASM;
use weir::runtime::{GuestLimits, Runtime, RuntimeConfig};
use weir::stream_sum::SUMS_JOURNAL;
use weir::stream_sum::sum::{Chunk, Sum, crc64_update};

const WEIR: &str = env!("CARGO_BIN_EXE_weir_cli");

/// The summers other than Rust's, as `target/guests/<name>.wasm`.
const FOREIGN: [(&str, &str); 3] = [
    ("python", "python-summer"),
    ("js", "js-summer"),
    ("c", "c-summer"),
];

/// A summer under test.
struct Summer {
    lang: &'static str,
    wasm: PathBuf,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Every summer: Rust first (the reference), then the others.
fn summers(dir: &Path) -> Vec<Summer> {
    let rust = dir.join("rust-summer.wasm");
    std::fs::write(&rust, SUMMER_WASM).expect("write the Rust summer");
    let built = std::env::var_os("WEIR_GUESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/guests"));
    let mut summers = vec![Summer {
        lang: "rust",
        wasm: rust,
    }];
    for (lang, name) in FOREIGN {
        let wasm = built.join(format!("{name}.wasm"));
        assert!(
            wasm.is_file(),
            "the {lang} summer {} is not built: run `guests/build.sh` (or `make test`, which \
             installs the toolchains and builds every guest first)",
            wasm.display()
        );
        summers.push(Summer { lang, wasm });
    }
    summers
}

fn fixture(path: &str) -> PathBuf {
    repo().join("tests/fixtures").join(path)
}

fn weir(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(WEIR)
        .args(args)
        .env("WEIR_LOG", "error")
        // Compiled once per build of a guest (Python's takes seconds).
        .env("WEIR_CACHE_DIR", repo().join("target/module-cache"))
        .output()
        .expect("weir runs")
}

/// `weir test GUEST --input INPUT EXTRA…`.
fn weir_test(summer: &Summer, input: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "test".as_ref(),
        summer.wasm.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
    ];
    args.extend(extra.iter().map(|arg| std::ffi::OsStr::new(*arg)));
    weir(&args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(summer: &Summer, what: &str, output: &Output) -> String {
    format!(
        "{} summer, {what}: {}\nstdout:\n{}\nstderr:\n{}",
        summer.lang,
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// Runs `input` with `--expect expected` plain and with crashes every
/// `crash_every` messages; both must exit 0.
fn assert_same_output(summer: &Summer, input: &Path, expected: &Path, crash_every: u32) {
    let expected = expected.to_str().expect("utf-8 path");
    for extra in [
        vec!["--expect", expected],
        vec![
            "--expect",
            expected,
            "--crash-every",
            &crash_every.to_string(),
        ],
    ] {
        let output = weir_test(summer, input, &extra);
        assert!(
            output.status.success(),
            "{}",
            describe(summer, &format!("{} {extra:?}", input.display()), &output)
        );
    }
}

/// Runs the reference summer on `input` and returns the file of what it
/// committed (`<dir of input>/<name>.expected.jsonl`).
fn reference_output(reference: &Summer, input: &Path, name: &str) -> PathBuf {
    let path = input.with_file_name(format!("{name}.expected.jsonl"));
    let output = weir_test(reference, input, &["--output", path.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        describe(reference, "reference", &output)
    );
    path
}

/// A deterministic interleaving of `streams` streams of `chunks` data chunks
/// each (plus the final empty chunk), as chunk documents without UUIDs.
fn interleaved(streams: u8, chunks: u64) -> String {
    // A fixed LCG: the fixture must be the same on every run.
    let mut state: u64 = 0x5eed_c0de;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    let mut progress: BTreeMap<u8, u64> = (0..streams).map(|stream| (stream, 0)).collect();
    let mut lines = String::new();
    while !progress.is_empty() {
        let open: Vec<u8> = progress.keys().copied().collect();
        let stream = open[next() as usize % open.len()];
        let seq_no = progress[&stream] + 1;
        let mut id = [0u8; 16];
        id[0] = stream;
        id[15] = 0xa5;
        let data: Vec<u8> = if seq_no > chunks {
            Vec::new()
        } else {
            (0..1 + next() % 48).map(|_| next() as u8).collect()
        };
        lines.push_str(&text(&Chunk::to_json(&id, seq_no, &data)));
        lines.push('\n');
        if data.is_empty() {
            progress.remove(&stream);
        } else {
            progress.insert(stream, seq_no);
        }
    }
    lines
}

#[test]
fn every_summer_commits_exactly_the_reference_sums_through_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let summers = summers(dir.path());
    let input = dir.path().join("interleaved.jsonl");
    std::fs::write(&input, interleaved(40, 12)).unwrap();
    let reference = reference_output(&summers[0], &input, "interleaved");
    let committed = std::fs::read_to_string(&reference).unwrap();
    assert_eq!(
        committed
            .lines()
            .filter(|l| l.contains("\"journal\""))
            .count(),
        40,
        "the reference publishes one sum per stream:\n{committed}"
    );
    for summer in &summers {
        assert_same_output(
            summer,
            &fixture("sandbox/chunks.jsonl"),
            &fixture("sandbox/chunks.expected.jsonl"),
            3,
        );
        assert_same_output(summer, &input, &reference, 7);
    }
}

/// A chunk document with an explicit UUID of `producer`.
fn with_uuid(doc: &str, producer: u8, clock: u64, flags: Flags) -> String {
    let uuid = build_uuid(
        ProducerId([producer, 2, 3, 4, 5, 6]),
        Clock(Clock::from_unix(std::time::Duration::from_secs(1_800_000_000)).0 + clock * 16),
        flags,
    );
    insert_uuid(doc, &uuid)
}

/// `doc` (a JSON object) with `"UUID"` as its first field.
fn insert_uuid(doc: &str, uuid: &impl std::fmt::Display) -> String {
    let body = doc.strip_prefix('{').expect("an object");
    if body == "}" {
        format!("{{\"UUID\":\"{uuid}\"}}")
    } else {
        format!("{{\"UUID\":\"{uuid}\",{body}")
    }
}

#[test]
fn every_summer_ignores_acks_of_transactional_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let summers = summers(dir.path());
    // The sandbox fixture's chunks, published in transactions of two
    // producers (a stream's chunks all by one, so they stay in order), each
    // committed by an ACK: a document with only a UUID, which a summer that
    // read it as a chunk would fail on.
    let chunks = std::fs::read_to_string(fixture("sandbox/chunks.jsonl")).unwrap();
    let mut lines = Vec::new();
    let mut clocks = [0u64; 2];
    for (n, chunk) in chunks.lines().enumerate() {
        let id = Chunk::parse(chunk.as_bytes()).unwrap().id;
        let producer = usize::from(id[0] % 2);
        clocks[producer] += 1;
        lines.push(with_uuid(
            chunk,
            producer as u8 + 1,
            clocks[producer],
            Flags::ContinueTxn,
        ));
        if n % 5 == 4 {
            clocks[producer] += 1;
            lines.push(with_uuid(
                "{}",
                producer as u8 + 1,
                clocks[producer],
                Flags::AckTxn,
            ));
        }
    }
    for (p, clock) in clocks.iter_mut().enumerate() {
        *clock += 1;
        lines.push(with_uuid("{}", p as u8 + 1, *clock, Flags::AckTxn));
    }
    let input = dir.path().join("transactional.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();

    // The reference commits the plain fixture's sums and store (sums in the
    // order the transactions delivered their final chunks).
    let reference = reference_output(&summers[0], &input, "transactional");
    let sorted = |text: String| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(
        sorted(std::fs::read_to_string(&reference).unwrap()),
        sorted(std::fs::read_to_string(fixture("sandbox/chunks.expected.jsonl")).unwrap()),
        "ACKs changed what the reference committed"
    );
    for summer in &summers {
        assert_same_output(summer, &input, &reference, 4);
    }
}

/// A publisher that keeps what it is given.
#[derive(Default)]
struct Recorder(Vec<(String, Vec<u8>)>);

impl TxnPublisher for Recorder {
    fn publish(&mut self, journal: &str, doc: &[u8]) -> Result<(), PublishError> {
        self.0.push((journal.to_string(), doc.to_vec()));
        Ok(())
    }
}

#[test]
fn every_summer_skips_ack_envelopes_given_to_either_export() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(repo().join("target/module-cache")),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let id = [0x42u8; 16];
    let journal: Arc<str> = Arc::from("conformance/chunks");
    let producer = ProducerId([1, 2, 3, 4, 5, 6]);
    let mut envelopes = Vec::new();
    let mut begin = 0i64;
    for (n, data) in [&b"battery"[..], b" horse", b""].into_iter().enumerate() {
        let n = n as u64;
        let chunk = String::from_utf8(Chunk::to_json(&id, n + 1, data)).unwrap();
        for (clock, flags, doc) in [
            (2 * n + 1, Flags::ContinueTxn, chunk),
            (2 * n + 2, Flags::AckTxn, "{}".to_string()),
        ] {
            let uuid = build_uuid(producer, Clock(clock << 4), flags);
            let doc = insert_uuid(&doc, &uuid);
            let end = begin + doc.len() as i64 + 1;
            envelopes.push(Envelope::new(journal.clone(), begin, end, uuid, doc.into()));
            begin = end;
        }
    }
    let expected = Sum {
        id,
        seq_no: 3,
        value: crc64_update(0, b"battery horse"),
    };
    for summer in summers(dir.path()) {
        let wasm = std::fs::read(&summer.wasm).unwrap();
        let module = runtime.consumer_module(&wasm).unwrap();
        for batched in [true, false] {
            let what = format!(
                "{} summer, {}",
                summer.lang,
                if batched {
                    "consume-messages"
                } else {
                    "consume-message"
                }
            );
            let mut app = module
                .application("conformance", GuestLimits::default())
                .unwrap();
            let (mut store, mut published) = (MemoryStore::default(), Recorder::default());
            let mut txn = TxnContext {
                shard: "conformance",
                store: &mut store,
                publisher: &mut published,
            };
            if batched {
                app.consume_messages(&mut txn, &envelopes)
                    .unwrap_or_else(|(index, err)| panic!("{what}: message {index}: {err}"));
            } else {
                for envelope in &envelopes {
                    app.consume_message(&mut txn, envelope)
                        .unwrap_or_else(|err| panic!("{what}: {err}"));
                }
            }
            app.finalize_txn(&mut txn)
                .unwrap_or_else(|err| panic!("{what}: finalize: {err}"));
            assert_eq!(
                published.0,
                vec![(SUMS_JOURNAL.to_string(), expected.to_json())],
                "{what}"
            );
            assert_eq!(
                store.data.into_iter().collect::<Vec<_>>(),
                vec![(id.to_vec(), expected.to_json())],
                "{what}"
            );
        }
    }
}

/// One row of `expectations.tsv`.
struct Case {
    name: String,
    outcome: String,
    message: String,
}

fn cases() -> Vec<Case> {
    std::fs::read_to_string(fixture("conformance/expectations.tsv"))
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let mut fields = line.splitn(3, '\t');
            let mut field = || fields.next().unwrap_or_default().to_string();
            Case {
                name: field(),
                outcome: field(),
                message: field(),
            }
        })
        .collect()
}

/// What every summer's error must contain for `message`: our own SeqNo
/// wording in full; for a malformed chunk its class, up to the JSON
/// library's words.
fn required_of_all(message: &str) -> &str {
    if message.starts_with("invalid chunk.SeqNo") {
        return message;
    }
    message.split(':').next().unwrap_or(message)
}

/// The ` at JOURNAL@OFFSET` location the reference gave.
fn location(stderr: &str) -> Option<String> {
    let at = stderr.rfind(" at test/input@")?;
    let rest = &stderr[at..];
    let end = rest
        .char_indices()
        .skip(" at test/input@".len())
        .find(|(_, c)| !c.is_ascii_digit())
        .map_or(rest.len(), |(i, _)| i);
    Some(rest[..end].to_string())
}

#[test]
fn every_summer_fails_malformed_and_out_of_order_chunks_like_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let summers = summers(dir.path());
    let cases = cases();
    assert!(cases.len() >= 40, "the table has every case");
    let gap = Case {
        name: "../sandbox/chunks-gap".into(),
        outcome: "guest-error".into(),
        message: "invalid chunk.SeqNo of stream".into(),
    };
    for case in cases.iter().chain([&gap]) {
        let input = fixture(&format!("conformance/{}.jsonl", case.name));
        let mut reference_location = None;
        for summer in &summers {
            let what = format!("case {} ({})", case.name, case.outcome);
            match case.outcome.as_str() {
                "ok" => {
                    let expected = fixture(&format!("conformance/{}.expected.jsonl", case.name));
                    assert_same_output(summer, &input, &expected, 1);
                }
                "guest-error" => {
                    let output = weir_test(summer, &input, &[]);
                    let stderr = text(&output.stderr);
                    assert_eq!(
                        output.status.code(),
                        Some(1),
                        "{}",
                        describe(summer, &what, &output)
                    );
                    let required = if matches!(summer.lang, "rust" | "c") {
                        case.message.as_str()
                    } else {
                        required_of_all(&case.message)
                    };
                    assert!(
                        stderr.contains(required),
                        "{}\nmissing: {required}",
                        describe(summer, &what, &output)
                    );
                    assert!(
                        !stderr.contains("trap") && !stderr.contains("crashed"),
                        "a malformed chunk must be an error, not a crash: {}",
                        describe(summer, &what, &output)
                    );
                    let found = location(&stderr);
                    assert!(found.is_some(), "{}", describe(summer, &what, &output));
                    match &reference_location {
                        None => reference_location = found,
                        Some(reference) => assert_eq!(
                            found.as_ref(),
                            Some(reference),
                            "{}",
                            describe(summer, &what, &output)
                        ),
                    }
                }
                "input-rejected" => {
                    let output = weir_test(summer, &input, &[]);
                    assert_eq!(
                        output.status.code(),
                        Some(1),
                        "{}",
                        describe(summer, &what, &output)
                    );
                    assert!(
                        text(&output.stderr).contains("not a JSON object"),
                        "{}",
                        describe(summer, &what, &output)
                    );
                }
                other => panic!("unknown outcome {other} of case {}", case.name),
            }
        }
    }
}

#[test]
fn every_summer_runs_stream_sum_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    for summer in summers(dir.path()) {
        let output = weir(&[
            "stream-sum".as_ref(),
            "--summer".as_ref(),
            summer.wasm.as_os_str(),
            "--partitions".as_ref(),
            "4".as_ref(),
            "--workers".as_ref(),
            "4".as_ref(),
            "--streams".as_ref(),
            "25".as_ref(),
            "--chunks".as_ref(),
            "10".as_ref(),
            "--seed".as_ref(),
            "7".as_ref(),
        ]);
        let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert!(
            output.status.success(),
            "{}",
            describe(&summer, "stream-sum", &output)
        );
        assert!(
            all.contains("every stream verified")
                && all
                    .lines()
                    .any(|line| line.split_whitespace().eq(["streams", "verified", "100"])),
            "{}",
            describe(&summer, "stream-sum summary", &output)
        );
    }
}
