//! The embedded broker against real crashes and real damage at rest.
//!
//! - `acknowledged_appends_survive_sigkill`: a child process
//!   (`crash_appender`) appends numbered records from several writers and
//!   prints each append the moment it is acknowledged; it is SIGKILLed at
//!   random moments, over and over, on one data directory. Every printed
//!   append must then be present byte for byte, nothing torn may be served,
//!   and appends must continue. (A SIGKILL keeps the page cache, so this
//!   proves acknowledgement ordering and recovery on a real file system;
//!   losing unsynced bytes is modelled by `SimBackend` in the unit tests.)
//! - `damage_at_rest_is_detected_and_reported`: fragment files are flipped,
//!   cut and removed while the broker is down; the damaged journal must
//!   report `Corrupt` with its name and offset, serve nothing at or past the
//!   damage, and leave other journals working.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir::broker::{
    AppendRequest, Broker, BrokerConfig, BrokerError, JournalChange, JournalClient, JournalSpec,
    ReadRequest,
};

const KILLS: usize = 24;
const WRITERS: u32 = 6;
const JOURNAL: &str = "crash/records";

/// The record `crash_appender` writes as `writer`'s `seq`-th append (keep in
/// step with `tests/src/bin/crash_appender.rs`).
fn record(writer: u32, seq: u64) -> String {
    let len = if seq.is_multiple_of(64) {
        150_000
    } else {
        ((seq * 131 + u64::from(writer) * 17) % 2000) as usize
    };
    let fill = char::from(b'a' + ((seq + u64::from(writer)) % 26) as u8);
    format!("w{writer} s{seq} {}\n", fill.to_string().repeat(len))
}

#[derive(Debug, Clone, Copy)]
struct Ack {
    begin: i64,
    end: i64,
    writer: u32,
    seq: u64,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut fields = line.strip_prefix("ack ")?.split(' ');
    let mut next = || fields.next();
    Some(Ack {
        begin: next()?.parse().ok()?,
        end: next()?.parse().ok()?,
        writer: next()?.parse().ok()?,
        seq: next()?.parse().ok()?,
    })
}

/// Runs the child once, kills it `delay` after its first acknowledgement,
/// and returns every acknowledgement it printed.
fn run_and_kill(dir: &Path, delay: Duration) -> Vec<Ack> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash_appender"))
        .arg(dir)
        .arg(JOURNAL)
        .arg(WRITERS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn crash_appender");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines, received) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let first = received.recv_timeout(Duration::from_secs(30));
    if first.is_ok() {
        std::thread::sleep(delay);
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    reader.join().expect("reader thread");
    let first = first.unwrap_or_else(|_| panic!("the child acknowledged nothing ({status})"));
    std::iter::once(first)
        .chain(received.try_iter())
        .map(|line| parse_ack(&line).unwrap_or_else(|| panic!("unexpected child output {line:?}")))
        .collect()
}

async fn read_all(broker: &Broker, journal: &str) -> Result<Vec<u8>, (Vec<u8>, BrokerError)> {
    let request = ReadRequest {
        journal: journal.into(),
        ..Default::default()
    };
    let mut stream = broker
        .read(request)
        .await
        .map_err(|err| (Vec::new(), err))?;
    let mut out = Vec::new();
    loop {
        match stream.next().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk.content),
            Ok(None) => return Ok(out),
            Err(err) => return Err((out, err)),
        }
    }
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let mut acks = Vec::new();
    for _ in 0..KILLS {
        let delay = Duration::from_millis(rng.random_range(0..120));
        acks.extend(run_and_kill(dir.path(), delay));
    }
    println!(
        "{} acknowledged appends over {KILLS} kills in {:?}",
        acks.len(),
        started.elapsed()
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let broker = Broker::open(dir.path(), BrokerConfig::default())
            .await
            .expect("open");
        let content = read_all(&broker, JOURNAL)
            .await
            .expect("the journal reads cleanly");
        for ack in &acks {
            let stored = content.get(ack.begin as usize..ack.end as usize);
            let expected = record(ack.writer, ack.seq);
            assert!(
                stored == Some(expected.as_bytes()),
                "acknowledged append {ack:?} is missing or different (seed {seed})"
            );
        }
        // Nothing torn: the journal is whole records, and each writer's
        // records are 1, 2, 3, ... (a record lands at most once, and the
        // next one starts only after it was acknowledged).
        let mut next_seq: BTreeMap<u32, u64> = BTreeMap::new();
        let mut at = 0;
        while at < content.len() {
            let line_end = content[at..]
                .iter()
                .position(|b| *b == b'\n')
                .map(|i| at + i + 1);
            let line = &content[at..line_end.unwrap_or_else(|| panic!("torn record at {at}"))];
            let text = std::str::from_utf8(line).expect("utf-8 record");
            let mut fields = text.split(' ');
            let writer: u32 = fields
                .next()
                .and_then(|w| w[1..].parse().ok())
                .expect("writer");
            let seq: u64 = fields
                .next()
                .and_then(|s| s[1..].parse().ok())
                .expect("seq");
            let expected = next_seq.entry(writer).or_insert(1);
            assert_eq!(
                seq, *expected,
                "writer {writer}'s records skip or repeat at offset {at}"
            );
            assert_eq!(
                text,
                record(writer, seq),
                "record at offset {at} is damaged"
            );
            *expected += 1;
            at += line.len();
        }
        let landed: u64 = next_seq.values().map(|next| next - 1).sum();
        println!(
            "{landed} records landed, {} of them acknowledged before a kill",
            acks.len()
        );
        // And the journal keeps taking appends.
        let more = AppendRequest {
            journal: JOURNAL.into(),
            content: Bytes::from_static(b"after the crashes\n"),
            ..Default::default()
        };
        let response = broker.append(more).await.expect("append after recovery");
        assert_eq!(response.begin, content.len() as i64);
        broker.shutdown().await;
    });
}

/// A data directory with journals `damage/a` and `damage/b`, 1 KiB
/// fragments, and 100 records in each.
async fn damaged_fixture(dir: &Path) {
    let broker = Broker::open(dir, BrokerConfig::default())
        .await
        .expect("open");
    for name in ["damage/a", "damage/b"] {
        let spec = JournalSpec {
            fragment_length: 1024,
            ..JournalSpec::new(name)
        };
        broker
            .apply(vec![JournalChange::Upsert(spec)])
            .await
            .expect("create");
        for i in 0..100 {
            let request = AppendRequest {
                journal: name.into(),
                content: Bytes::from(format!("{name} record {i:03} ........................\n")),
                ..Default::default()
            };
            broker.append(request).await.expect("append");
        }
    }
    broker.shutdown().await;
}

/// Fragment files of a journal, in offset order (journal `a/b` lives in
/// `journals/a%2Fb`).
fn fragments(dir: &Path, journal: &str) -> Vec<PathBuf> {
    let journal_dir = dir.join("journals").join(journal.replace('/', "%2F"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(journal_dir)
        .expect("journal dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "frag" || e == "spool"))
        .collect();
    files.sort();
    files
}

fn begin_of(path: &Path) -> i64 {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("file name");
    i64::from_str_radix(&name[..16], 16).expect("hex begin")
}

#[test]
fn damage_at_rest_is_detected_and_reported() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    /// Damages the files and returns the offset the damage must be reported at.
    type Damage = fn(&[PathBuf]) -> i64;
    let damages: [(&str, Damage); 4] = [
        ("flipped byte in a closed fragment", |files| {
            let mut bytes = std::fs::read(&files[2]).expect("read");
            let at = bytes.len() / 2;
            bytes[at] ^= 0x20;
            std::fs::write(&files[2], bytes).expect("write");
            begin_of(&files[2])
        }),
        ("cut closed fragment", |files| {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&files[1])
                .expect("open");
            let len = file.metadata().expect("len").len();
            file.set_len(len - 7).expect("cut");
            begin_of(&files[1])
        }),
        ("missing fragment", |files| {
            std::fs::remove_file(&files[3]).expect("remove");
            begin_of(&files[3])
        }),
        ("flipped byte early in the spool", |files| {
            let spool = files.last().expect("spool");
            let mut bytes = std::fs::read(spool).expect("read");
            assert!(bytes.len() > 200, "the spool holds several records");
            bytes[40] ^= 0x01;
            std::fs::write(spool, bytes).expect("write");
            begin_of(spool)
        }),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir().expect("tempdir");
        runtime.block_on(damaged_fixture(dir.path()));
        let files = fragments(dir.path(), "damage/a");
        assert!(files.len() >= 5, "{what}: {files:?}");
        let fragment_begin = damage(&files);

        runtime.block_on(async {
            let broker = Broker::open(dir.path(), BrokerConfig::default())
                .await
                .unwrap_or_else(|err| {
                    panic!("{what}: open must survive one damaged journal: {err}")
                });
            let reported = match broker.write_head("damage/a") {
                Err(BrokerError::Corrupt {
                    journal, offset, ..
                }) => {
                    assert_eq!(journal, "damage/a", "{what}");
                    offset
                }
                other => panic!("{what}: expected Corrupt, got {other:?}"),
            };
            assert!(
                reported >= fragment_begin,
                "{what}: damage reported at {reported}"
            );
            match read_all(&broker, "damage/a").await {
                Err((served, BrokerError::Corrupt { offset, .. })) => {
                    assert_eq!(offset, reported, "{what}");
                    assert_eq!(
                        served.len() as i64,
                        reported,
                        "{what}: served past the damage"
                    );
                    let text = String::from_utf8(served).expect("utf-8");
                    assert!(
                        text.lines().all(|l| l.starts_with("damage/a record")),
                        "{what}"
                    );
                }
                other => panic!("{what}: expected a Corrupt read, got {other:?}"),
            }
            let refused = broker
                .append(AppendRequest {
                    journal: "damage/a".into(),
                    content: Bytes::from_static(b"x\n"),
                    ..Default::default()
                })
                .await;
            assert!(
                matches!(refused, Err(BrokerError::Corrupt { .. })),
                "{what}: {refused:?}"
            );

            let healthy = read_all(&broker, "damage/b")
                .await
                .expect("the other journal is fine");
            assert_eq!(
                healthy.iter().filter(|b| **b == b'\n').count(),
                100,
                "{what}"
            );
            let more = AppendRequest {
                journal: "damage/b".into(),
                content: Bytes::from_static(b"still appending\n"),
                ..Default::default()
            };
            let response = broker
                .append(more)
                .await
                .expect("append to the healthy journal");
            assert_eq!(response.begin, healthy.len() as i64);
            broker.shutdown().await;
        });
    }
}
