//! Faults of the broker's data directory between restarts (issue 6: "a
//! truncated fragment tail is repaired; a corrupted byte is detected and
//! reported, never served"): the `damage-broker` fault and the file surgery
//! it does while the broker is down.
//!
//! A [`Fault::DiskDamage`](super::schedule::Fault::DiskDamage) runs in five
//! steps:
//! 1. **Canary.** A canary journal `chaos/canary-<n>` with the smallest
//!    fragment length ([`limits::CHAOS_CANARY_FRAGMENT_LENGTH`]) is created
//!    over gRPC and [`limits::CHAOS_CANARY_LINES`] lines are appended to it,
//!    one acknowledged append each, so it has closed fragments.
//! 2. **Kill.** The broker is SIGKILLed.
//! 3. **Surgery**, while it is down:
//!    - [`tear_spool`] appends a *real* torn write to the open spool of the
//!      scheduled chunk partition: a prefix of a correctly framed record
//!      (the broker's own encoder) holding a plausible chunk message at the
//!      offset the next append would have had, cut where the schedule says;
//!    - [`flip_bit`] flips the scheduled bit of a closed fragment of the
//!      canary and works out which record, at which journal offset, it
//!      damaged.
//! 4. **Restart** on the same data directory and port, and every shard
//!    PRIMARY again (the recovery times, as for a kill).
//! 5. **Checks**; each one that fails fails the fault, and the run:
//!    - *the torn tail was cut*: once appends to the partition have moved
//!      its write head far enough past the old end that new records must
//!      cover every torn byte, a scan of the file ([`check_torn_cut`]) finds
//!      valid records from its start to past the torn bytes and to the write
//!      head, and no damage but an append in flight at its very end;
//!    - *the flip is reported and never served*: a read of the canary from
//!      0 serves exactly the canary's bytes below the damaged record and
//!      then fails with DATA_LOSS ([`BrokerError::Corrupt`]) at that
//!      record's offset, and an append to it is refused the same way.
//!
//! The canaries carry no message-type label, so the auditor (which reads
//! the stream-sum journals, selected by that label) never reads them; the
//! consumer host never reads them either.

use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::cluster::ClusterError;
use super::harness::Harness;
use super::probe;
use super::report::{DiskDamageRecord, FaultRecord};
use crate::broker::backend::{Backend, FsBackend};
use crate::broker::fragment::{self, Damage};
use crate::broker::layout::{self, FragmentFile};
use crate::broker::record::{Header, encode_append};
use crate::broker::{
    AppendRequest, BrokerError, JournalChange, JournalClient, JournalSpec, ReadRequest,
};
use crate::cli::stream_sum::names;
use crate::limits;
use crate::message::{Clock, Flags, ProducerId, build_uuid, frame};
use crate::service::journal_client::{GrpcJournalClient, RetryPolicy};
use crate::stream_sum::sum::Chunk;

/// Name prefix of the canary journals.
pub const CANARY_PREFIX: &str = "chaos/canary-";

/// The parameters of one disk-damage fault, as scheduled.
#[derive(Debug, Clone, Copy)]
pub(super) struct DiskPlan {
    pub(super) restart_after: Duration,
    pub(super) partition: u32,
    pub(super) tear_permille: u16,
    pub(super) flip_permille: u16,
    pub(super) flip_bit: u8,
}

/// A torn write added to a spool, and what the file held before it.
#[derive(Debug, Clone)]
pub(crate) struct Torn {
    /// The journal's directory.
    pub dir: PathBuf,
    /// The spool's file name.
    pub file: String,
    /// Journal offset the spool begins at.
    pub spool_begin: i64,
    /// The spool's length before the torn write.
    pub len_before: u64,
    /// Its bytes holding whole appends before the torn write (less than
    /// `len_before` if the kill itself tore an append).
    pub valid_before: u64,
    /// Journal offset after its last whole append: where the torn record
    /// claims to start.
    pub end_before: i64,
    /// Bytes of the torn write.
    pub torn_bytes: u64,
    /// Bytes of the whole record it is a prefix of.
    pub record_len: u64,
}

impl Torn {
    /// The write head past which new appends to the journal must have
    /// overwritten every byte the broker had to drop: each new record holds
    /// its content plus a header, so new content of at least the dropped
    /// length fills more file bytes than were dropped.
    pub fn covering_head(&self) -> i64 {
        let dropped = self.len_before - self.valid_before + self.torn_bytes;
        self.end_before + dropped as i64
    }
}

/// A flipped bit in a closed fragment.
#[derive(Debug, Clone)]
pub(crate) struct Flip {
    /// The fragment's file name.
    pub file: String,
    /// Journal offset the fragment begins at.
    pub fragment_begin: i64,
    /// File position of the damaged byte.
    pub position: u64,
    /// The bit flipped in it.
    pub bit: u8,
    /// Journal offset of the record holding it: where the broker must
    /// report the damage.
    pub damaged_offset: i64,
}

/// The fragment files of the journal directory `dir`, in journal order.
fn fragment_files(dir: &Path) -> Result<Vec<FragmentFile>, String> {
    let names = FsBackend::new()
        .list_dir(dir)
        .map_err(|err| format!("listing {}: {err}", dir.display()))?;
    let mut files: Vec<FragmentFile> = names
        .iter()
        .filter_map(|name| FragmentFile::parse(name))
        .collect();
    files.sort();
    Ok(files)
}

/// A framed chunk message of a stream no chunker runs, as a chunker would
/// append it: one JSON line with its UUID first.
fn torn_message(seed: u64) -> Vec<u8> {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&seed.to_le_bytes());
    id[8..].copy_from_slice(&(!seed).to_le_bytes());
    let data: Vec<u8> = (0..24).map(|i| (seed >> (i % 8 * 8)) as u8 ^ i).collect();
    let doc = Chunk::to_json(&id, 1, &data);
    let producer = ProducerId([0x01, 0xc4, 0xa0, 0x5d, 0x15, 0x4b]);
    let uuid = build_uuid(producer, Clock(seed | 1), Flags::ContinueTxn);
    let mut out = Vec::new();
    // A chunk document is a one-line JSON object without a UUID of its own.
    if frame(&doc, &uuid, &mut out).is_err() {
        out = doc;
        out.push(b'\n');
    }
    out
}

/// Appends a torn write to the open spool of `journal` under the broker
/// data directory `data_dir` (the broker must be down): the first
/// `tear_permille` thousandths (at least one byte, never all) of a record
/// of [`torn_message`] at the spool's next offset, synced.
pub(crate) fn tear_spool(
    data_dir: &Path,
    journal: &str,
    tear_permille: u16,
    seed: u64,
) -> Result<Torn, String> {
    let dir = layout::journal_dir(data_dir, journal);
    let files = fragment_files(&dir)?;
    let Some(spool @ FragmentFile::Spool { .. }) = files.last().copied() else {
        return Err(format!("{} has no open spool", dir.display()));
    };
    let path = dir.join(spool.file_name());
    let at = |what: &str, err: std::io::Error| format!("{what} {}: {err}", path.display());
    let reader = FsBackend::new()
        .open_read(&path)
        .map_err(|err| at("opening", err))?;
    let before =
        fragment::scan(reader.clone(), spool.begin()).map_err(|err| at("scanning", err))?;
    if let Some(Damage::Corrupt { offset, reason }) = &before.damage {
        return Err(format!(
            "{} was damaged at offset {offset} before the tear: {reason}",
            path.display()
        ));
    }
    let len_before = reader.size().map_err(|err| at("sizing", err))?;

    let mut record = Vec::new();
    encode_append(
        &mut record,
        before.end,
        &torn_message(seed),
        None,
        |_, _| {},
    );
    let cut = (record.len() * usize::from(tear_permille) / 1000).clamp(1, record.len() - 1);
    let mut file = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|err| at("opening", err))?;
    file.write_all(&record[..cut])
        .and_then(|()| file.sync_data())
        .map_err(|err| at("tearing", err))?;
    Ok(Torn {
        dir,
        file: spool.file_name(),
        spool_begin: spool.begin(),
        len_before,
        valid_before: before.valid_len,
        end_before: before.end,
        torn_bytes: cut as u64,
        record_len: record.len() as u64,
    })
}

/// Checks that the broker cut `torn` off: the fragment that began as the
/// torn spool (still the spool, or closed since) holds valid records from
/// its start through every torn byte's position, through `head` (the
/// journal's write head, at least [`Torn::covering_head`]) if it is still
/// the spool or through its end if closed, and no damage but, in the spool,
/// an append in flight at the end. Returns the note to record.
pub(crate) fn check_torn_cut(torn: &Torn, head: i64) -> Result<String, String> {
    // The spool may be closed (renamed) between the listing and the open.
    let mut attempt = 0;
    let (file, path, reader) = loop {
        let files = fragment_files(&torn.dir)?;
        let Some(file) = files.into_iter().find(|f| f.begin() == torn.spool_begin) else {
            return Err(format!(
                "no fragment of {} begins at {} any more",
                torn.dir.display(),
                torn.spool_begin
            ));
        };
        let path = torn.dir.join(file.file_name());
        match FsBackend::new().open_read(&path) {
            Ok(reader) => break (file, path, reader),
            Err(err) if attempt == 0 && err.kind() == std::io::ErrorKind::NotFound => attempt += 1,
            Err(err) => return Err(format!("opening {}: {err}", path.display())),
        }
    };
    let scan = fragment::scan(reader, torn.spool_begin)
        .map_err(|err| format!("scanning {}: {err}", path.display()))?;
    let shown = path.display();
    match (&scan.damage, file) {
        (Some(Damage::Corrupt { offset, reason }), _) => {
            return Err(format!(
                "{shown} is damaged at offset {offset} after the restart ({reason}): \
                 the torn write was not cut off"
            ));
        }
        (Some(Damage::Torn { reason }), FragmentFile::Closed { .. }) => {
            return Err(format!(
                "the closed fragment {shown} ends in a torn write ({reason})"
            ));
        }
        _ => {}
    }
    match file {
        FragmentFile::Spool { .. } => {
            if scan.end < head {
                return Err(format!(
                    "{shown} holds valid records to offset {} only, below the write head {head}",
                    scan.end
                ));
            }
            if scan.valid_len < torn.len_before + torn.torn_bytes {
                return Err(format!(
                    "{shown} holds valid records to byte {} only; the torn bytes were at {}..{}",
                    scan.valid_len,
                    torn.len_before,
                    torn.len_before + torn.torn_bytes
                ));
            }
        }
        FragmentFile::Closed { end, .. } => {
            if scan.end != end {
                return Err(format!(
                    "the closed fragment {shown} holds valid records to offset {} only",
                    scan.end
                ));
            }
        }
    }
    let dropped = torn.len_before - torn.valid_before + torn.torn_bytes;
    Ok(format!(
        "torn tail of {dropped} bytes cut ({} of a {}-byte record at offset {} in {}); \
         valid records now run to byte {} (was {}), offset {}",
        torn.torn_bytes,
        torn.record_len,
        torn.end_before,
        torn.file,
        scan.valid_len,
        torn.len_before,
        scan.end
    ))
}

/// Flips bit `bit` of the byte `flip_permille` thousandths into the closed
/// fragments of `journal` under the broker data directory `data_dir` (the
/// broker must be down), synced; returns where, and which record it
/// damaged.
pub(crate) fn flip_bit(
    data_dir: &Path,
    journal: &str,
    flip_permille: u16,
    bit: u8,
) -> Result<Flip, String> {
    let dir = layout::journal_dir(data_dir, journal);
    let mut closed = Vec::new();
    for file in fragment_files(&dir)? {
        if let FragmentFile::Closed { begin, .. } = file {
            let path = dir.join(file.file_name());
            let len = std::fs::metadata(&path)
                .map_err(|err| format!("sizing {}: {err}", path.display()))?
                .len();
            closed.push((file.file_name(), begin, path, len));
        }
    }
    let total: u64 = closed.iter().map(|(.., len)| len).sum();
    if total == 0 {
        return Err(format!(
            "{} has no closed fragment to damage",
            dir.display()
        ));
    }
    let mut target = total * u64::from(flip_permille.min(999)) / 1000;
    for (file, begin, path, len) in closed {
        if target >= len {
            target -= len;
            continue;
        }
        let at = |what: &str, err: std::io::Error| format!("{what} {}: {err}", path.display());
        let bytes = std::fs::read(&path).map_err(|err| at("reading", err))?;
        let damaged_offset = record_offset_at(&bytes, target).ok_or_else(|| {
            format!(
                "{} is not a sequence of records before the damage",
                path.display()
            )
        })?;
        let handle = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|err| at("opening", err))?;
        let bit = bit % 8;
        let damaged = [bytes[target as usize] ^ (1 << bit)];
        handle
            .write_all_at(&damaged, target)
            .and_then(|()| handle.sync_data())
            .map_err(|err| at("damaging", err))?;
        return Ok(Flip {
            file,
            fragment_begin: begin,
            position: target,
            bit,
            damaged_offset,
        });
    }
    Err(format!(
        "{}: no byte at the planned position",
        dir.display()
    ))
}

/// The journal offset of the record of `bytes` (a fragment file) that holds
/// file position `position`.
fn record_offset_at(bytes: &[u8], position: u64) -> Option<i64> {
    let mut at = 0usize;
    while at < bytes.len() {
        let header = Header::decode(&bytes[at..]).ok()?;
        let end = at + header.total_len();
        if position < end as u64 {
            return Some(header.offset);
        }
        at = end;
    }
    None
}

/// Line `index` of canary `canary`.
fn canary_line(canary: &str, index: usize) -> String {
    format!("{canary} line {index:03}: the quick brown fox jumps over the lazy dog\n")
}

/// Creates `canary` with the smallest fragment length and appends its
/// lines, each at the offset expected (so a retried append cannot land
/// twice unnoticed); returns everything appended.
async fn write_canary(client: &GrpcJournalClient, canary: &str) -> Result<Vec<u8>, BrokerError> {
    client
        .apply(vec![JournalChange::Upsert(JournalSpec {
            fragment_length: limits::CHAOS_CANARY_FRAGMENT_LENGTH,
            ..JournalSpec::new(canary)
        })])
        .await?;
    let mut content = Vec::new();
    for index in 0..limits::CHAOS_CANARY_LINES {
        let line = canary_line(canary, index);
        client
            .append(AppendRequest {
                journal: canary.to_string(),
                content: Bytes::from(line.clone()),
                expect_offset: Some(content.len() as i64),
                ..Default::default()
            })
            .await?;
        content.extend_from_slice(line.as_bytes());
    }
    Ok(content)
}

/// Reads `canary` from 0; returns the bytes served and how the read ended.
async fn read_canary(
    client: &GrpcJournalClient,
    canary: &str,
) -> (Vec<u8>, Result<(), BrokerError>) {
    let mut served = Vec::new();
    let request = ReadRequest {
        journal: canary.to_string(),
        offset: 0,
        block: false,
        end_offset: 0,
    };
    let mut stream = match client.read(request).await {
        Ok(stream) => stream,
        Err(err) => return (served, Err(err)),
    };
    loop {
        match stream.next().await {
            Ok(Some(chunk)) if chunk.offset == served.len() as i64 => {
                served.extend_from_slice(&chunk.content)
            }
            Ok(Some(chunk)) => {
                let reason = format!(
                    "a chunk at offset {} after {} bytes",
                    chunk.offset,
                    served.len()
                );
                return (served, Err(BrokerError::InvalidArgument(reason)));
            }
            Ok(None) => return (served, Ok(())),
            Err(err) => return (served, Err(err)),
        }
    }
}

/// Checks that the flip of `flip` in `canary` (which holds `content`) is
/// reported where it is and nothing from there on is served, and that
/// appends are refused; fills `figures` and returns the note to record.
async fn check_canary(
    client: &GrpcJournalClient,
    canary: &str,
    content: &[u8],
    flip: &Flip,
    figures: &mut DiskDamageRecord,
) -> Result<String, String> {
    let (served, ended) = read_canary(client, canary).await;
    figures.served_bytes = Some(served.len() as u64);
    let expected = flip.damaged_offset;
    match ended {
        Ok(()) => {
            return Err(format!(
                "reading {canary} from 0 served {} bytes and ended without an error: \
                 the flipped bit (record at offset {expected}) went unnoticed",
                served.len()
            ));
        }
        Err(BrokerError::Corrupt { offset, .. }) => {
            figures.reported_offset = Some(offset);
            if offset != expected {
                return Err(format!(
                    "{canary}: the damage was reported at offset {offset}, \
                     but the damaged record is at {expected}"
                ));
            }
        }
        Err(err) => {
            return Err(format!(
                "reading {canary} from 0 failed with {err}, not as corrupt at offset {expected}"
            ));
        }
    }
    if served.len() as i64 != expected {
        return Err(format!(
            "{canary}: {} bytes were served before the damage reported at {expected}",
            served.len()
        ));
    }
    if content.get(..served.len()) != Some(&served[..]) {
        return Err(format!(
            "{canary}: the bytes served before the damage are not the canary's lines"
        ));
    }
    let refused = client
        .append(AppendRequest {
            journal: canary.to_string(),
            content: Bytes::from_static(b"after the damage\n"),
            ..Default::default()
        })
        .await;
    match refused {
        Err(BrokerError::Corrupt { .. }) => figures.append_refused = true,
        Ok(response) => {
            return Err(format!(
                "an append to the corrupt {canary} was accepted at offset {}",
                response.begin
            ));
        }
        Err(err) => {
            return Err(format!(
                "an append to the corrupt {canary} failed with {err}, not as corrupt"
            ));
        }
    }
    Ok(format!(
        "flipped byte reported at offset {expected}, nothing past it served \
         (bit {} of byte {} of {}, the fragment from offset {}); appends refused",
        flip.bit, flip.position, flip.file, flip.fragment_begin
    ))
}

/// Runs `work` on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|err| Err(format!("the file surgery panicked: {err}")))
}

/// `call` bounded by `timeout`, or `what` timing out.
async fn bounded<T>(
    what: &str,
    timeout: Duration,
    call: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| Err(format!("{what}: no answer within {timeout:?}")))
}

impl Harness<'_> {
    /// Injects a disk-damage fault (see the module docs).
    pub(super) async fn damage_disk(
        &mut self,
        plan: DiskPlan,
        record: &mut FaultRecord,
    ) -> Result<(), ClusterError> {
        self.canaries += 1;
        let canary = format!("{CANARY_PREFIX}{}", self.canaries);
        let torn_journal = format!("{}/part-{:03}", names::CHUNKS, plan.partition);
        let mut figures = DiskDamageRecord {
            torn_journal: torn_journal.clone(),
            canary: canary.clone(),
            ..DiskDamageRecord::default()
        };
        let mut failures = Vec::new();
        let Some(data_dir) = self.cluster.broker_data_dir() else {
            record.failure = Some("the broker's data directory is not in its command line".into());
            record.disk = Some(figures);
            return Ok(());
        };
        let patience = Duration::from_millis(limits::CHAOS_RECOVERY_TIMEOUT_MS);
        let policy = RetryPolicy {
            max_elapsed: Some(patience),
            ..RetryPolicy::default()
        };
        let broker = self.cluster.broker_addr();
        let client = match GrpcJournalClient::connect(&broker, policy).await {
            Ok(client) => Some(client),
            Err(err) => {
                failures.push(format!("connecting to the broker {broker}: {err}"));
                None
            }
        };

        let mut content = None;
        if let Some(client) = &client {
            let written = bounded(&format!("writing {canary}"), patience, async {
                write_canary(client, &canary)
                    .await
                    .map_err(|err| format!("writing {canary}: {err}"))
            })
            .await;
            match written {
                Ok(bytes) => {
                    figures.canary_bytes = Some(bytes.len() as u64);
                    content = Some(bytes);
                }
                Err(failure) => failures.push(failure),
            }
        }

        self.note(&format!(
            "SIGKILL broker; tear the tail of {torn_journal}'s spool and flip a bit of \
             {canary}; restart after {:.1} s",
            plan.restart_after.as_secs_f64()
        ));
        let fault = Instant::now();
        if let Some(server) = self.cluster.server(super::schedule::Target::Broker) {
            server.process.kill().await?;
        }

        let seed = self.cluster.config().seed ^ u64::from(self.canaries);
        let (dir, journal) = (data_dir.clone(), torn_journal.clone());
        let torn = blocking(move || tear_spool(&dir, &journal, plan.tear_permille, seed)).await;
        let torn = match torn {
            Ok(torn) => {
                figures.spool_len_before = Some(torn.len_before);
                figures.torn_bytes = Some(torn.torn_bytes);
                Some(torn)
            }
            Err(failure) => {
                failures.push(format!("tearing the spool of {torn_journal}: {failure}"));
                None
            }
        };
        let flip = match content {
            Some(_) => {
                let (dir, journal) = (data_dir.clone(), canary.clone());
                let flipped =
                    blocking(move || flip_bit(&dir, &journal, plan.flip_permille, plan.flip_bit))
                        .await;
                match flipped {
                    Ok(flip) => {
                        figures.flipped_file = Some(flip.file.clone());
                        figures.flipped_position = Some(flip.position);
                        figures.damaged_offset = Some(flip.damaged_offset);
                        Some(flip)
                    }
                    Err(failure) => {
                        failures.push(format!("damaging {canary}: {failure}"));
                        None
                    }
                }
            }
            None => None,
        };

        let waited = fault.elapsed();
        tokio::time::sleep(plan.restart_after.saturating_sub(waited)).await;
        let restart = Instant::now();
        if let Some(server) = self.cluster.server(super::schedule::Target::Broker) {
            server.restart().await?;
        }
        record.recovery.answering_ms = Some(restart.elapsed().as_millis() as u64);
        self.wait_primary(restart, fault, record).await;

        if let (Some(client), Some(torn)) = (&client, torn) {
            match self.wait_covered(client, &torn_journal, &torn).await {
                Ok(head) => match blocking(move || check_torn_cut(&torn, head)).await {
                    Ok(note) => {
                        figures.torn_cut = true;
                        record.notes.push(note);
                    }
                    Err(failure) => failures.push(failure),
                },
                Err(failure) => failures.push(failure),
            }
        }
        if let (Some(client), Some(content), Some(flip)) = (&client, &content, &flip) {
            let checked = bounded(&format!("checking {canary}"), patience, async {
                check_canary(client, &canary, content, flip, &mut figures).await
            })
            .await;
            match checked {
                Ok(note) => {
                    figures.flip_reported = true;
                    record.notes.push(note);
                }
                Err(failure) => failures.push(failure),
            }
        }

        if !failures.is_empty() {
            let mut all: Vec<String> = record.failure.take().into_iter().collect();
            all.extend(failures);
            record.failure = Some(all.join("; "));
        }
        record.disk = Some(figures);
        Ok(())
    }

    /// Waits until the write head of `journal` reaches
    /// [`Torn::covering_head`]; returns it.
    async fn wait_covered(
        &self,
        client: &GrpcJournalClient,
        journal: &str,
        torn: &Torn,
    ) -> Result<i64, String> {
        let needed = torn.covering_head();
        let timeout = Duration::from_millis(limits::CHAOS_DISK_CHECK_TIMEOUT_MS);
        let started = Instant::now();
        loop {
            let last = match probe::write_head(client, journal).await {
                Ok(head) if head >= needed => return Ok(head),
                Ok(head) => format!("at {head}"),
                Err(err) => err.to_string(),
            };
            if started.elapsed() >= timeout {
                return Err(format!(
                    "the write head of {journal} did not reach {needed} (new records over \
                     the torn bytes) within {timeout:?}: last {last}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(limits::CHAOS_POLL_MS)).await;
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::broker::{Broker, BrokerConfig};

    async fn append(broker: &Broker, journal: &str, content: &str) {
        broker
            .append(AppendRequest {
                journal: journal.into(),
                content: Bytes::from(content.to_string()),
                ..Default::default()
            })
            .await
            .expect("append");
    }

    /// A broker directory holding `chunks` (one spool) and `canary` (closed
    /// fragments), shut down.
    async fn fixture(dir: &Path) -> Vec<u8> {
        let broker = Broker::open(dir, BrokerConfig::default()).await.unwrap();
        broker
            .apply(vec![
                JournalChange::Upsert(JournalSpec::new("test/chunks")),
                JournalChange::Upsert(JournalSpec {
                    fragment_length: limits::CHAOS_CANARY_FRAGMENT_LENGTH,
                    ..JournalSpec::new("test/canary")
                }),
            ])
            .await
            .unwrap();
        for i in 0..20 {
            append(&broker, "test/chunks", &format!("chunk {i}\n")).await;
        }
        let mut content = Vec::new();
        for i in 0..limits::CHAOS_CANARY_LINES {
            let line = canary_line("test/canary", i);
            append(&broker, "test/canary", &line).await;
            content.extend_from_slice(line.as_bytes());
        }
        broker.shutdown().await;
        content
    }

    #[tokio::test]
    async fn every_torn_write_is_cut_on_open_and_appends_cover_it() {
        for tear_permille in [1, 37, 100, 500, 873, 999] {
            let dir = tempfile::tempdir().unwrap();
            fixture(dir.path()).await;
            let torn = tear_spool(dir.path(), "test/chunks", tear_permille, 7).unwrap();
            assert!(torn.torn_bytes >= 1 && torn.torn_bytes < torn.record_len);
            let spool = torn.dir.join(&torn.file);
            assert_eq!(
                std::fs::metadata(&spool).unwrap().len(),
                torn.len_before + torn.torn_bytes
            );
            // Before the broker repairs it, the check sees the damage.
            assert!(check_torn_cut(&torn, torn.end_before).is_err());

            let broker = Broker::open(dir.path(), BrokerConfig::default())
                .await
                .unwrap();
            assert_eq!(broker.write_head("test/chunks").unwrap(), torn.end_before);
            while broker.write_head("test/chunks").unwrap() < torn.covering_head() {
                append(&broker, "test/chunks", "a new chunk\n").await;
            }
            let head = broker.write_head("test/chunks").unwrap();
            let note = check_torn_cut(&torn, head).unwrap();
            assert!(note.starts_with("torn tail of"), "{note}");
            broker.shutdown().await;
        }
    }

    #[tokio::test]
    async fn a_torn_tail_left_in_place_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path()).await;
        let torn = tear_spool(dir.path(), "test/chunks", 500, 3).unwrap();
        // A broker that kept the torn bytes and appended after them.
        let mut record = Vec::new();
        let next = torn.end_before + 100;
        encode_append(&mut record, next, b"x\n", None, |_, _| {});
        let mut file = OpenOptions::new()
            .append(true)
            .open(torn.dir.join(&torn.file))
            .unwrap();
        file.write_all(&record).unwrap();
        let err = check_torn_cut(&torn, next + 2).unwrap_err();
        assert!(
            err.contains("not cut off") || err.contains("valid records"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_flipped_bit_is_located_and_reported_where_it_is() {
        for (flip_permille, bit) in [(0, 0), (13, 7), (250, 3), (500, 1), (998, 6)] {
            let dir = tempfile::tempdir().unwrap();
            let content = fixture(dir.path()).await;
            let flip = flip_bit(dir.path(), "test/canary", flip_permille, bit).unwrap();
            assert!(flip.damaged_offset >= flip.fragment_begin);
            let broker = Broker::open(dir.path(), BrokerConfig::default())
                .await
                .unwrap();
            match broker.write_head("test/canary") {
                Err(BrokerError::Corrupt { offset, .. }) => {
                    assert_eq!(offset, flip.damaged_offset, "{flip:?}")
                }
                other => panic!("{flip:?}: expected Corrupt, got {other:?}"),
            }
            let mut stream = broker
                .read(ReadRequest {
                    journal: "test/canary".into(),
                    offset: 0,
                    block: false,
                    end_offset: 0,
                })
                .await
                .unwrap();
            let mut served = Vec::new();
            let err = loop {
                match stream.next().await {
                    Ok(Some(chunk)) => served.extend_from_slice(&chunk.content),
                    Ok(None) => panic!("{flip:?}: read to the end"),
                    Err(err) => break err,
                }
            };
            assert!(matches!(err, BrokerError::Corrupt { .. }), "{err:?}");
            assert_eq!(&served[..], &content[..flip.damaged_offset as usize]);
            broker.shutdown().await;
        }
    }

    #[test]
    fn a_journal_without_closed_fragments_or_spool_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(layout::journal_dir(dir.path(), "test/empty")).unwrap();
        assert!(flip_bit(dir.path(), "test/empty", 10, 0).is_err());
        assert!(tear_spool(dir.path(), "test/empty", 10, 0).is_err());
    }

    #[test]
    fn the_torn_message_is_a_framed_chunk_line() {
        let message = torn_message(42);
        assert_eq!(message.last(), Some(&b'\n'));
        assert!(message.starts_with(b"{\"UUID\":"), "{message:?}");
        let doc: serde_json::Value = serde_json::from_slice(&message).unwrap();
        assert_eq!(doc["SeqNo"], 1);
    }
}
