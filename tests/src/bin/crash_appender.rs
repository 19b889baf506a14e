//! A child process for the broker crash test (`tests/all/broker.rs`).
//!
//! `crash_appender <data-dir> <journal> <writers>` opens the embedded broker
//! on `data-dir`, finds where each writer's numbered records stopped, and then
//! has `writers` concurrent tasks append their next records forever. Each
//! record is one append of `w<writer> s<seq> <payload>\n` (see [`record`]);
//! the moment an append is acknowledged, the child prints
//! `ack <begin> <end> <writer> <seq>` and flushes stdout. The test kills it
//! with SIGKILL at random moments, so every printed line is a promise the
//! broker must keep: those bytes are durable.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use bytes::Bytes;
use weir::broker::{
    AppendRequest, Broker, BrokerConfig, JournalChange, JournalClient, JournalSpec, ReadRequest,
};

/// The record a writer appends as its `seq`-th: sizes vary, and every 64th
/// record is large, so a kill often lands in the middle of a write.
fn record(writer: u32, seq: u64) -> String {
    let len = if seq.is_multiple_of(64) {
        150_000
    } else {
        ((seq * 131 + u64::from(writer) * 17) % 2000) as usize
    };
    let fill = char::from(b'a' + ((seq + u64::from(writer)) % 26) as u8);
    format!("w{writer} s{seq} {}\n", fill.to_string().repeat(len))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, journal, writers] = args.as_slice() else {
        eprintln!("usage: crash_appender <data-dir> <journal> <writers>");
        return ExitCode::from(2);
    };
    let Ok(writers) = writers.parse::<u32>() else {
        eprintln!("writers must be a number");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(dir, journal, writers)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("crash_appender: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(dir: &str, journal: &str, writers: u32) -> anyhow::Result<()> {
    let broker = Broker::open(dir, BrokerConfig::default()).await?;
    let exists = !broker
        .list(&format!("name={journal}").parse()?)
        .await?
        .is_empty();
    if !exists {
        // Small fragments, so the spool rolls often between kills.
        let spec = JournalSpec {
            fragment_length: 64 << 10,
            ..JournalSpec::new(journal)
        };
        broker.apply(vec![JournalChange::Upsert(spec)]).await?;
    }
    let next = last_sequences(&broker, journal).await?;
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let broker = broker.clone();
            let journal = journal.to_string();
            let mut seq = next.get(&writer).copied().unwrap_or(0) + 1;
            tokio::spawn(async move {
                loop {
                    let request = AppendRequest {
                        journal: journal.clone(),
                        content: Bytes::from(record(writer, seq)),
                        ..Default::default()
                    };
                    let response = broker.append(request).await?;
                    let mut stdout = std::io::stdout().lock();
                    writeln!(
                        stdout,
                        "ack {} {} {writer} {seq}",
                        response.begin, response.end
                    )?;
                    stdout.flush()?;
                    seq += 1;
                }
                #[allow(unreachable_code, reason = "the loop ends only by an error or a kill")]
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// The last sequence number of each writer found in the journal.
async fn last_sequences(broker: &Broker, journal: &str) -> anyhow::Result<BTreeMap<u32, u64>> {
    let request = ReadRequest {
        journal: journal.into(),
        ..Default::default()
    };
    let mut stream = broker.read(request).await?;
    let mut content = Vec::new();
    while let Some(chunk) = stream.next().await? {
        content.extend_from_slice(&chunk.content);
    }
    let mut last = BTreeMap::new();
    for line in content.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let line = std::str::from_utf8(line)?;
        let mut fields = line.split(' ');
        let (Some(w), Some(s)) = (fields.next(), fields.next()) else {
            anyhow::bail!("malformed record {line:?}");
        };
        let writer: u32 = w.trim_start_matches('w').parse()?;
        let seq: u64 = s.trim_start_matches('s').parse()?;
        last.insert(writer, seq);
    }
    Ok(last)
}
