//! Hot swap of consumer modules at a transaction boundary, on an in-process
//! `weir serve` (broker and consumer host), through its gRPC services and
//! `weir shards swap`'s code.
//!
//! - **A hundred swaps lose and repeat nothing.** While the stream-sum
//!   chunker runs back-to-back jobs (each fails on a wrong, late or
//!   duplicated sum it waits for), each summer shard is swapped 100 times
//!   between two versions of the summer: the built one and the same
//!   component plus a custom section (a different digest, the same logic).
//!   Then the sums journal is audited against the chunk journals: every
//!   completed stream has exactly one committed sum, with the right value
//!   (checked here, and by the stream-sum auditor).
//!   The recovery logs are read back: every commit record names one of the
//!   two digests, each primary term (between two hand-offs) committed with
//!   one version only, and both versions committed on every shard.
//! - **A version that cannot instantiate is refused.** A summer whose linear
//!   memory starts above the guest memory cap compiles and links (so it is
//!   pushed), but cannot be instantiated: swapping to it is refused with
//!   INVALID_ARGUMENT naming the shard, the digest and why, and the running
//!   version keeps serving in the same term. Swapping to a good version
//!   and back (a rollback) then works, and prints old → new.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::cli::bench_swap::write_leb128;

use integration_tests::{open_broker, read_all};
use weir::broker::protocol::JournalClient;
use weir::cli::bench_swap::{VERSION_SECTION, with_custom_section};
use weir::cli::shards::{SwapOutcome, swap};
use weir::cli::stream_sum::{names, setup_journals};
use weir::consumer::ShardSpec;
use weir::protocol::consumer::replica_status::Code as ReplicaCode;
use weir::protocol::consumer::shard_client::ShardClient;
use weir::protocol::consumer::{self as wire, apply_request};
use weir::protocol::weir::PushModuleRequest;
use weir::protocol::weir::modules_client::ModulesClient;
use weir::runtime::guests::{CHUNKER_WASM, SUMMER_WASM};
use weir::runtime::{
    ChunkerConfig, ChunkerModule, ChunkerReport, JobLimits, ModuleDigest, Runtime, RuntimeConfig,
};
use weir::service::journal_client::{GrpcJournalClient, RetryPolicy};
use weir::service::server::{Role, ServeConfig, Server};
use weir::service::shard_convert::spec_to_wire;
use weir::service::shards::MODULE_LABEL;
use weir::stream_sum::audit::audit;
use weir::stream_sum::sum::{Chunk, Progress, StreamId, Sum};

use crate::stream_sum::read_committed;

const PARTITIONS: u32 = 2;
const SWAPS_PER_SHARD: usize = 100;
const SWAP_INTERVAL: Duration = Duration::from_millis(50);
const WORKERS: u32 = 4;
const STREAMS_PER_JOB: i64 = 5;
const CHUNKS: u32 = 10;
/// A sum later than this fails the chunker: far above any swap pause.
const SUM_TIMEOUT: Duration = Duration::from_secs(20);
/// The guest memory cap is 128 MiB; this minimum (256 MiB) is above it.
const BLOATED_PAGES: u64 = 4096;

/// An in-process server and clients of its services.
struct Cluster {
    server: Server,
    addr: String,
    journals: Arc<dyn JournalClient>,
    specs: Vec<ShardSpec>,
    chunker: ChunkerModule,
}

impl Cluster {
    async fn start(dir: &Path, partitions: u32) -> Cluster {
        let server = Server::start(ServeConfig {
            data_dir: dir.to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            role: Role::All,
        })
        .await
        .expect("the server starts");
        let addr = server.local_addr().to_string();
        let journals: Arc<dyn JournalClient> = Arc::new(
            GrpcJournalClient::connect(&addr, RetryPolicy::default())
                .await
                .expect("a journal client connects"),
        );
        let specs = setup_journals(journals.as_ref(), partitions)
            .await
            .expect("stream-sum's journals are created");
        let runtime = Runtime::new(RuntimeConfig::default()).expect("a runtime");
        let chunker = runtime
            .chunker_module(CHUNKER_WASM)
            .expect("the chunker loads");
        Cluster {
            server,
            addr,
            journals,
            specs,
            chunker,
        }
    }

    async fn push(&self, component: Vec<u8>) -> String {
        let mut modules = ModulesClient::connect(self.url())
            .await
            .expect("the modules client connects")
            .max_encoding_message_size(component.len() + 1024);
        modules
            .push(PushModuleRequest { component })
            .await
            .expect("the module is pushed")
            .into_inner()
            .digest
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates every shard, pinned to `module`, and waits until each serves.
    async fn create_shards(&self, module: &str) {
        let changes = self
            .specs
            .iter()
            .map(|spec| {
                let mut spec = spec.clone();
                spec.labels.set(MODULE_LABEL, module);
                apply_request::Change {
                    expect_mod_revision: 0,
                    upsert: Some(spec_to_wire(&spec)),
                    delete: String::new(),
                }
            })
            .collect();
        let applied = ShardClient::connect(self.url())
            .await
            .expect("the shard client connects")
            .apply(wire::ApplyRequest {
                changes,
                extension: Vec::new(),
            })
            .await
            .expect("the shards apply")
            .into_inner();
        assert_eq!(applied.status, wire::Status::Ok as i32);
        self.wait_all_primary().await;
    }

    async fn list(&self) -> Vec<wire::list_response::Shard> {
        ShardClient::connect(self.url())
            .await
            .expect("the shard client connects")
            .list(wire::ListRequest::default())
            .await
            .expect("shards list")
            .into_inner()
            .shards
    }

    async fn wait_all_primary(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let shards = self.list().await;
            let primary = |shard: &wire::list_response::Shard| {
                shard.status[0].code == ReplicaCode::Primary as i32
            };
            if shards.iter().all(primary) {
                return;
            }
            assert!(Instant::now() < deadline, "shards not primary: {shards:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// One chunker job that must verify every stream it publishes.
    async fn run_chunker(&self, seed: u64, workers: u32, streams: i64) -> ChunkerReport {
        let job = self
            .chunker
            .spawn(
                self.journals.clone(),
                tokio::runtime::Handle::current(),
                ChunkerConfig {
                    streams,
                    chunks: CHUNKS,
                    workers,
                    seed: Some(seed),
                    timeout: Some(SUM_TIMEOUT),
                },
                JobLimits::default(),
            )
            .expect("the chunker starts");
        let report = job
            .wait()
            .await
            .unwrap_or_else(|err| panic!("chunker job {seed}: {err:#}"));
        assert_eq!(report.streams_verified, workers as u64 * streams as u64);
        report
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_swaps_during_stream_sum_lose_and_repeat_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), PARTITIONS).await;
    let versions = [
        cluster.push(SUMMER_WASM.to_vec()).await,
        cluster
            .push(with_custom_section(SUMMER_WASM, VERSION_SECTION, b"2"))
            .await,
    ];
    assert_ne!(versions[0], versions[1]);
    cluster.create_shards(&versions[0]).await;

    let started = Instant::now();
    let ids: Vec<String> = cluster.specs.iter().map(|spec| spec.id.clone()).collect();
    let swapper = {
        let addr = cluster.addr.clone();
        let versions = versions.clone();
        tokio::spawn(async move {
            for round in 0..SWAPS_PER_SHARD {
                let (old, new) = (&versions[round % 2], &versions[(round + 1) % 2]);
                for id in &ids {
                    let outcome = swap(&addr, id, new)
                        .await
                        .unwrap_or_else(|err| panic!("swap {round} of {id}: {err:#}"));
                    assert!(
                        matches!(&outcome, SwapOutcome::Swapped { old: Some(was), new: now, .. }
                            if was == old && now == new),
                        "swap {round} of {id}: {outcome:?}"
                    );
                }
                tokio::time::sleep(SWAP_INTERVAL).await;
            }
        })
    };

    // Back-to-back chunker jobs for as long as the swaps go on.
    let mut streams = 0;
    let mut seed = 1;
    loop {
        let swapping = !swapper.is_finished();
        streams += cluster
            .run_chunker(seed, WORKERS, STREAMS_PER_JOB)
            .await
            .streams_verified;
        seed += 1;
        if !swapping {
            break;
        }
    }
    swapper.await.expect("every swap applies");
    let elapsed = started.elapsed();

    // Nothing failed or is retrying after 200 swaps.
    for shard in cluster.list().await {
        let status = &shard.status[0];
        assert_eq!(status.code, ReplicaCode::Primary as i32, "{shard:?}");
        assert!(status.errors.is_empty(), "{shard:?}");
    }
    audit_sums(&cluster.journals, PARTITIONS, streams).await;
    let report = audit(cluster.journals.as_ref())
        .await
        .expect("the auditor reads the journals");
    assert_eq!(report.anomalies(), 0, "{report}");
    assert_eq!(
        (report.streams_completed, report.sums_committed),
        (streams, streams),
        "{report}"
    );
    let logs: Vec<String> = cluster.specs.iter().map(ShardSpec::recovery_log).collect();
    cluster.server.shutdown().await;

    let broker = open_broker(&dir.path().join("broker")).await.unwrap();
    for log in &logs {
        let terms = read_terms(&broker, log).await;
        // One hand-off per term: the first, then one per swap (a failed
        // and retried term would add one).
        assert_eq!(terms.len(), SWAPS_PER_SHARD + 1, "{log}: terms");
        let mut committed_by: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, term) in terms.iter().enumerate() {
            // Term k runs the version the k-th swap applied, alone.
            let applied = &versions[index % 2];
            for digest in term {
                assert!(
                    versions.contains(digest),
                    "{log}: a commit names module {digest}, which was never applied"
                );
                assert_eq!(
                    digest, applied,
                    "{log}: term {index} committed with a version it did not run"
                );
                *committed_by.entry(digest.as_str()).or_default() += 1;
            }
        }
        assert_eq!(
            committed_by.len(),
            2,
            "{log}: both versions committed transactions: {committed_by:?}"
        );
        eprintln!(
            "{log}: {} terms, commits per version {committed_by:?}",
            terms.len()
        );
    }
    broker.shutdown().await;
    eprintln!(
        "{} swaps per shard on {PARTITIONS} shards, {streams} streams verified, in {elapsed:.1?}",
        SWAPS_PER_SHARD
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_that_cannot_instantiate_is_refused_and_the_running_one_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1).await;
    let good = cluster.push(SUMMER_WASM.to_vec()).await;
    let other = cluster
        .push(with_custom_section(SUMMER_WASM, VERSION_SECTION, b"2"))
        .await;
    // It compiles and links against the consumer world, so push stores it.
    let bloated = cluster
        .push(with_memory_minimum(SUMMER_WASM, BLOATED_PAGES))
        .await;
    cluster.create_shards(&good).await;
    let id = cluster.specs[0].id.clone();
    cluster.run_chunker(1, 2, 3).await;
    let before = cluster.list().await.remove(0);

    let err = swap(&cluster.addr, &id, &bloated)
        .await
        .expect_err("a module that cannot instantiate is refused");
    let message = format!("{err:#}");
    eprintln!("refused: {message}");
    for named in [
        id.as_str(),
        bloated.as_str(),
        "cannot instantiate",
        "memory",
    ] {
        assert!(message.contains(named), "{named:?} in: {message}");
    }
    // The same refusal over the wire is INVALID_ARGUMENT.
    let mut spec = cluster.specs[0].clone();
    spec.labels.set(MODULE_LABEL, &bloated);
    let status = ShardClient::connect(cluster.url())
        .await
        .expect("the shard client connects")
        .apply(wire::ApplyRequest {
            changes: vec![apply_request::Change {
                expect_mod_revision: before.mod_revision,
                upsert: Some(spec_to_wire(&spec)),
                delete: String::new(),
            }],
            extension: Vec::new(),
        })
        .await
        .expect_err("refused");
    assert_eq!(format!("{:?}", status.code()), "InvalidArgument");

    // Untouched: same spec, same revision, still primary, still summing.
    let after = cluster.list().await.remove(0);
    assert_eq!(after.spec, before.spec);
    assert_eq!(after.mod_revision, before.mod_revision);
    assert_eq!(after.status[0].code, ReplicaCode::Primary as i32);
    cluster.run_chunker(2, 2, 3).await;

    // A good version swaps in, and rolling back is a swap to the old digest.
    let swapped = swap(&cluster.addr, &id, &other).await.unwrap();
    assert!(
        matches!(&swapped, SwapOutcome::Swapped { old: Some(old), new, .. }
            if *old == good && *new == other),
        "{swapped:?}"
    );
    cluster.run_chunker(3, 2, 3).await;
    let rolled_back = swap(&cluster.addr, &id, &good).await.unwrap();
    assert!(
        matches!(&rolled_back, SwapOutcome::Swapped { old: Some(old), new, .. }
            if *old == other && *new == good),
        "{rolled_back:?}"
    );
    assert_eq!(
        swap(&cluster.addr, &id, &good).await.unwrap(),
        SwapOutcome::Unchanged {
            module: good.clone()
        }
    );
    cluster.run_chunker(4, 2, 3).await;
    let log = cluster.specs[0].recovery_log();
    cluster.server.shutdown().await;

    // Three terms: the refused swap restarted nothing.
    let broker = open_broker(&dir.path().join("broker")).await.unwrap();
    let terms = read_terms(&broker, &log).await;
    let versions: Vec<BTreeSet<&String>> = terms.iter().map(|term| term.iter().collect()).collect();
    assert_eq!(
        versions,
        vec![
            BTreeSet::from([&good]),
            BTreeSet::from([&other]),
            BTreeSet::from([&good]),
        ]
    );
    broker.shutdown().await;
}

/// Every stream whose final chunk is committed in the chunk partitions has
/// exactly one committed sum, with the value its chunks fold to, and no
/// other sum is committed; `streams` streams in all.
async fn audit_sums(client: &Arc<dyn JournalClient>, partitions: u32, streams: u64) {
    let mut expected: HashMap<StreamId, Sum> = HashMap::new();
    let mut completed: HashMap<StreamId, u64> = HashMap::new();
    for index in 0..partitions {
        let partition = format!("{}/part-{index:03}", names::CHUNKS);
        for env in read_committed(client.clone(), &partition).await {
            let chunk = Chunk::parse(&env.doc).expect("a committed chunk parses");
            let data = chunk.decode_data().expect("chunk data decodes");
            let sum = expected
                .entry(chunk.id)
                .or_insert_with(|| Sum::new(chunk.id));
            let progress = sum
                .update(&chunk.id, chunk.seq_no, &data)
                .expect("each chunk committed once, in order");
            if progress == Progress::Done {
                completed.insert(chunk.id, sum.value);
            }
        }
    }
    assert_eq!(completed.len() as u64, streams, "every stream completed");
    let mut summed: HashMap<StreamId, Vec<u64>> = HashMap::new();
    for env in read_committed(client.clone(), names::SUMS).await {
        let sum = Sum::parse(&env.doc).expect("a committed sum parses");
        summed.entry(sum.id).or_default().push(sum.value);
    }
    for (id, value) in &completed {
        assert_eq!(
            summed.get(id),
            Some(&vec![*value]),
            "stream {id:02x?}: exactly one committed sum, with the right value"
        );
    }
    assert_eq!(summed.len(), completed.len(), "no sum of an unknown stream");
}

/// The recovery log `log`'s terms, in order: for each hand-off, the module
/// digest of each commit record after it (before the next hand-off).
///
/// Frames are as `weir::store` documents them (`wrl1`, payload length and
/// CRC-32C, little-endian, then the postcard payload). The payload starts
/// with the author and sequence varints and the body's variant (0 hand-off,
/// 1 commit); a commit's checkpoint ends with `module`, a string, so a
/// commit payload ends with the digest's length (64) and its hex digits.
async fn read_terms(client: &dyn JournalClient, log: &str) -> Vec<Vec<String>> {
    const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let bytes = read_all(client, log).await.expect("the log reads");
    let mut terms: Vec<Vec<String>> = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = &bytes[at..at + 12];
        assert_eq!(&header[..4], b"wrl1", "{log}: a frame at {at}");
        let len = u32::from_le_bytes(header[4..8].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(header[8..12].try_into().unwrap());
        let payload = &bytes[at + 12..at + 12 + len];
        assert_eq!(CRC32C.checksum(payload), crc, "{log}: frame at {at}");
        at += 12 + len;
        let mut pos = 0;
        let _author = varint(payload, &mut pos);
        let _seq = varint(payload, &mut pos);
        match varint(payload, &mut pos) {
            0 => terms.push(Vec::new()),
            1 => {
                let split = payload.len() - 65;
                assert_eq!(payload[split], 64, "{log}: a commit ends with its module");
                let digest = std::str::from_utf8(&payload[split + 1..]).unwrap();
                let digest: ModuleDigest = digest.parse().expect("a module digest");
                terms
                    .last_mut()
                    .expect("a commit follows a hand-off")
                    .push(digest.to_string());
            }
            other => panic!("{log}: unknown record body {other}"),
        }
    }
    terms
}

fn varint(bytes: &[u8], pos: &mut usize) -> u64 {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = bytes[*pos];
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return value;
        }
        shift += 7;
    }
}

/// `component` with the minimum of the first linear memory its core
/// modules define raised to `pages` (64 KiB each). Sizes of the memory
/// section and of the enclosing core-module section are re-encoded; nothing
/// else changes, so the result still compiles and links.
fn with_memory_minimum(component: &[u8], pages: u64) -> Vec<u8> {
    let mut out = component[..8].to_vec();
    let mut at = 8;
    let mut patched = false;
    while at < component.len() {
        let id = component[at];
        let mut pos = at + 1;
        let size = varint(component, &mut pos) as usize;
        let body = &component[pos..pos + size];
        at = pos + size;
        let body = match (id, patched) {
            // A core module section.
            (1, false) => match patch_module(body, pages) {
                Some(module) => {
                    patched = true;
                    module
                }
                None => body.to_vec(),
            },
            _ => body.to_vec(),
        };
        out.push(id);
        write_leb128(&mut out, body.len());
        out.extend_from_slice(&body);
    }
    assert!(patched, "the component defines a linear memory");
    out
}

/// A core module with its first defined memory's minimum set to `pages`,
/// or `None` if it defines no memory.
fn patch_module(module: &[u8], pages: u64) -> Option<Vec<u8>> {
    let mut out = module[..8].to_vec();
    let mut at = 8;
    let mut patched = false;
    while at < module.len() {
        let id = module[at];
        let mut pos = at + 1;
        let size = varint(module, &mut pos) as usize;
        let body = &module[pos..pos + size];
        at = pos + size;
        let mut section = body.to_vec();
        if id == 5 && !patched {
            let mut pos = 0;
            let count = varint(body, &mut pos);
            assert!(count >= 1, "a memory section with a memory");
            let flags = body[pos];
            assert_eq!(flags & !1, 0, "a plain 32-bit, unshared memory");
            pos += 1;
            let _minimum = varint(body, &mut pos);
            section.clear();
            write_leb128(&mut section, count as usize);
            section.push(flags);
            write_leb128(&mut section, pages as usize);
            section.extend_from_slice(&body[pos..]);
            patched = true;
        }
        out.push(id);
        write_leb128(&mut out, section.len());
        out.extend_from_slice(&section);
    }
    patched.then_some(out)
}
