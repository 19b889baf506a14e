//! `weir bench sequencer`: throughput of the read-committed sequencer and of
//! JSON-lines framing, in memory (no journals, no I/O).
//!
//! Sequencer mixes (each message is queued, then every committed envelope is
//! stepped out; envelopes are built before timing starts):
//!
//! - `committed`: `OUTSIDE_TXN` messages from several producers;
//! - `transactional`: interleaved producers publishing runs of
//!   `CONTINUE_TXN` messages, each closed by an ACK, plus retried-append
//!   duplicates;
//! - `replay`: as `transactional` with a ring smaller than a run, so every
//!   commit replays its evicted head from an in-memory journal.
//!
//! Framing: `frame` (validate + insert the UUID) and decode
//! (`LineDecoder` + `extract_uuid`) over stream-sum-shaped chunk documents.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;

use crate::message::{
    Clock, Envelope, Flags, Frame, LineDecoder, ProducerId, Sequencer, Step, build_uuid,
    extract_uuid, frame,
};

/// Measure sequencer and framing throughput.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  weir bench sequencer\n  weir bench sequencer --messages 5000000 --txn-size 1000"
)]
pub struct BenchSequencer {
    /// Messages per sequencer mix.
    #[arg(long, default_value_t = 2_000_000)]
    messages: usize,
    /// Concurrent producers in the journal.
    #[arg(long, default_value_t = 4)]
    producers: usize,
    /// Messages per transaction (CONTINUE_TXN messages before each ACK).
    #[arg(long, default_value_t = 100)]
    txn_size: usize,
    /// Sequencer ring size (envelopes) for the committed and transactional mixes.
    #[arg(long, default_value_t = crate::limits::DEFAULT_RING_BUFFER_SIZE)]
    ring_size: usize,
    /// Documents framed and decoded in the framing measurement.
    #[arg(long, default_value_t = 500_000)]
    docs: usize,
}

impl BenchSequencer {
    /// Runs every measurement and prints a table.
    pub async fn execute(self) -> anyhow::Result<()> {
        tokio::task::spawn_blocking(move || self.run())
            .await
            .context("benchmark thread")?
    }

    fn run(self) -> anyhow::Result<()> {
        if self.producers == 0 || self.txn_size == 0 || self.messages == 0 {
            bail!("--messages, --producers and --txn-size must be positive");
        }
        println!(
            "sequencer: {} messages, {} producers, {} per transaction",
            self.messages, self.producers, self.txn_size
        );
        println!(
            "{:<16} {:>10} {:>12} {:>14} {:>10}",
            "mix", "ring", "delivered", "msgs/s", "ns/msg"
        );

        let committed = journal(self.messages, self.producers, 0);
        self.report("committed", self.ring_size, &committed)?;
        let txn = journal(self.messages, self.producers, self.txn_size);
        self.report("transactional", self.ring_size, &txn)?;
        let small_ring = (self.txn_size / 2).max(1);
        self.report("replay", small_ring, &txn)?;

        println!();
        println!("framing: {} stream-sum chunk documents", self.docs);
        let (frame_secs, framed) = bench_frame(self.docs)?;
        let decode_secs = bench_decode(&framed)?;
        let mb = framed.len() as f64 / 1e6;
        println!("{:<16} {:>10} {:>12} {:>14}", "op", "MB", "MB/s", "docs/s");
        for (op, secs) in [("frame", frame_secs), ("decode", decode_secs)] {
            println!(
                "{:<16} {:>10.1} {:>12.1} {:>14.0}",
                op,
                mb,
                mb / secs,
                self.docs as f64 / secs
            );
        }
        Ok(())
    }

    fn report(&self, mix: &str, ring: usize, journal: &[Envelope]) -> anyhow::Result<()> {
        // Warm up once, then keep the best of three runs.
        let mut best = Duration::MAX;
        let mut delivered = 0;
        for _ in 0..4 {
            let (elapsed, count) = sequence(ring, journal)?;
            best = best.min(elapsed);
            delivered = count;
        }
        let secs = best.as_secs_f64();
        println!(
            "{:<16} {:>10} {:>12} {:>14.0} {:>10.1}",
            mix,
            ring,
            delivered,
            journal.len() as f64 / secs,
            secs * 1e9 / journal.len() as f64
        );
        Ok(())
    }
}

/// One journal's envelopes. `txn_size == 0`: OUTSIDE_TXN only. Otherwise each
/// producer publishes runs of `txn_size` CONTINUE_TXN messages closed by an
/// ACK; producers interleave round-robin, and every 97th message is followed
/// by a duplicate of itself (a retried append).
fn journal(messages: usize, producers: usize, txn_size: usize) -> Vec<Envelope> {
    let name: Arc<str> = Arc::from("bench/journal");
    let ids: Vec<ProducerId> = (0..producers).map(|_| ProducerId::random()).collect();
    let mut clocks: Vec<u64> =
        vec![Clock::from_unix(Duration::from_secs(1_700_000_000)).0; producers];
    let mut in_txn = vec![0usize; producers];
    let mut out = Vec::with_capacity(messages + messages / 50);
    let mut offset = 0i64;
    let doc = Bytes::from_static(br#"{"UUID":"00000000-0000-0000-0000-000000000000","SeqNo":1}"#);
    let mut push = |out: &mut Vec<Envelope>, uuid| {
        let len = doc.len() as i64 + 1;
        out.push(Envelope::new(
            name.clone(),
            offset,
            offset + len,
            uuid,
            doc.clone(),
        ));
        offset += len;
    };
    let mut i = 0;
    while out.len() < messages {
        let p = i % producers;
        i += 1;
        clocks[p] += Clock::TICK;
        let flags = if txn_size == 0 {
            Flags::OutsideTxn
        } else if in_txn[p] == txn_size {
            in_txn[p] = 0;
            Flags::AckTxn
        } else {
            in_txn[p] += 1;
            Flags::ContinueTxn
        };
        let uuid = build_uuid(ids[p], Clock(clocks[p]), flags);
        push(&mut out, uuid);
        if i % 97 == 0 && flags != Flags::AckTxn {
            push(&mut out, uuid);
        }
    }
    out
}

/// Queues every envelope and steps out every committed one; replays are
/// served from `journal` itself.
fn sequence(ring: usize, journal: &[Envelope]) -> anyhow::Result<(Duration, usize)> {
    let input = journal.to_vec();
    let mut seq = Sequencer::new(ring);
    let mut delivered = 0usize;
    let start = Instant::now();
    for env in input {
        let outcome = seq.queue_uncommitted(env)?;
        if !outcome.commits() {
            continue;
        }
        let mut replay = None;
        loop {
            match seq.step()? {
                Step::Message(_) => delivered += 1,
                Step::Idle => break,
                Step::NeedReplay => {
                    let (next, end) = match &mut replay {
                        Some(state) => state,
                        None => {
                            let range = seq.replay_range().context("replay without a range")?;
                            let first = journal.partition_point(|e| e.begin < range.begin);
                            replay.insert((first, range.end))
                        }
                    };
                    match journal.get(*next) {
                        Some(env) if env.begin < *end => {
                            *next += 1;
                            seq.push_replay(Some(env.clone()))?;
                        }
                        _ => seq.push_replay(None)?,
                    }
                }
            }
        }
    }
    Ok((start.elapsed(), delivered))
}

fn chunk_doc(i: usize) -> Vec<u8> {
    // A stream-sum Chunk without its UUID: 16-number ID, SeqNo, 32 bytes of
    // base64 Data.
    format!(
        r#"{{"ID":[{},2,3,4,5,6,7,8,9,10,11,12,13,14,15,16],"SeqNo":{},"Data":"q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA="}}"#,
        i % 251,
        i
    )
    .into_bytes()
}

fn bench_frame(docs: usize) -> anyhow::Result<(f64, Vec<u8>)> {
    let producer = ProducerId::random();
    let inputs: Vec<Vec<u8>> = (0..docs).map(chunk_doc).collect();
    let mut best = f64::MAX;
    let mut out = Vec::new();
    for _ in 0..3 {
        out = Vec::with_capacity(inputs.iter().map(|d| d.len() + 48).sum());
        let start = Instant::now();
        for (i, doc) in inputs.iter().enumerate() {
            let uuid = build_uuid(producer, Clock((i as u64 + 1) << 4), Flags::OutsideTxn);
            frame(doc, &uuid, &mut out)?;
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok((best, out))
}

fn bench_decode(framed: &[u8]) -> anyhow::Result<f64> {
    // Read chunks of 32 KiB, as a broker read would deliver them.
    let chunks: Vec<Bytes> = framed
        .chunks(32 * 1024)
        .map(Bytes::copy_from_slice)
        .collect();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let mut decoder = LineDecoder::new(0, crate::limits::DEFAULT_MAX_MESSAGE_BYTES);
        let mut frames: Vec<Frame> = Vec::new();
        let mut offset = 0i64;
        let mut count = 0usize;
        let start = Instant::now();
        for chunk in &chunks {
            decoder.decode(offset, chunk, &mut frames)?;
            offset += chunk.len() as i64;
            for f in frames.drain(..) {
                extract_uuid(&f.line, f.begin)?;
                count += 1;
            }
        }
        decoder.finish()?;
        best = best.min(start.elapsed().as_secs_f64());
        if count == 0 {
            bail!("nothing decoded");
        }
    }
    Ok(best)
}
