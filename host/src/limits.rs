//! Every named limit and default of the host, with its unit, in one place.
//!
//! Modules take these as defaults of their config structs; nothing else
//! hard-codes a limit.

// --- consumer ---

/// Sequencer ring size (envelopes) when a shard spec leaves it 0 (Gazette's default).
pub const DEFAULT_RING_BUFFER_SIZE: usize = 8192;
/// Decoded-message channel capacity (envelopes) when a shard spec leaves it 0.
pub const DEFAULT_READ_CHANNEL_SIZE: usize = 8192;
/// Most envelopes handed to the application in one blocking call.
pub const DEFAULT_CONSUME_BATCH: usize = 1024;
/// First back-off after a failed transaction (milliseconds); doubles per failure.
pub const DEFAULT_SHARD_RETRY_BACKOFF_MS: u64 = 100;
/// Back-off cap after repeated failures (milliseconds).
pub const DEFAULT_SHARD_RETRY_BACKOFF_MAX_MS: u64 = 30_000;
/// Consecutive failures after which a shard is marked FAILED and stops retrying.
pub const DEFAULT_SHARD_MAX_FAILURES: u32 = 5;
/// Producers idle longer than this are pruned from checkpoints (Gazette: 24 h).
pub const DEFAULT_PRODUCER_PRUNE_HORIZON_SECS: u64 = 24 * 3600;
/// Most messages one transaction may publish.
pub const DEFAULT_MAX_TXN_MESSAGES: usize = 100_000;
/// Most document bytes one transaction may publish.
pub const DEFAULT_MAX_TXN_BYTES: usize = 64 << 20;
/// Longest a `Shard.Stat` waits for a shard to read through the requested
/// offsets before it answers DEADLINE_EXCEEDED, in milliseconds.
pub const DEFAULT_SHARD_STAT_TIMEOUT_MS: u64 = 30_000;
/// Largest consumer component `Modules.Push` accepts, in bytes (Python
/// components are tens of MiB).
pub const DEFAULT_MAX_MODULE_BYTES: usize = 128 << 20;

// --- store ---

/// Largest store key a transaction may write, in bytes.
pub const DEFAULT_STORE_MAX_KEY_BYTES: usize = 4 * 1024;
/// Largest store value a transaction may write, in bytes.
pub const DEFAULT_STORE_MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Largest total of key and value bytes one transaction may write, in bytes
/// (it becomes one recovery-log record).
pub const DEFAULT_STORE_MAX_TXN_BYTES: usize = 64 * 1024 * 1024;
/// Most entries one store `scan` (and keys one guest `get-many`) may ask
/// for, in entries.
pub const DEFAULT_STORE_MAX_SCAN_ENTRIES: usize = 100_000;
/// Largest recovery-log record a reader accepts, in bytes (a bound on the
/// memory a damaged length field can make a reader allocate).
pub const DEFAULT_STORE_MAX_RECORD_BYTES: usize = 256 * 1024 * 1024;
/// How many times a new primary tries its hand-off when other writers race
/// it, in attempts.
pub const DEFAULT_STORE_HANDOFF_ATTEMPTS: u32 = 16;
/// Back-off between retries of transient recovery-log failures, in
/// milliseconds.
pub const DEFAULT_STORE_RETRY_BACKOFF_MS: u64 = 100;

// --- message ---

/// Largest document (bytes, before framing) a publisher accepts, and so the
/// longest line (bytes, without its newline) readers accept.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Most bytes a publisher sends in one append; a larger backlog is split at
/// message boundaries.
pub const DEFAULT_PUBLISH_APPEND_BYTES: usize = 16 << 20;
/// First back-off (milliseconds) after a transient append failure; doubles per retry.
pub const DEFAULT_PUBLISH_RETRY_BACKOFF_MS: u64 = 50;
/// Back-off cap (milliseconds) between append retries (Gazette's 5 s).
pub const DEFAULT_PUBLISH_RETRY_BACKOFF_MAX_MS: u64 = 5_000;

// --- runtime ---

/// Wall-clock deadline of one guest call (`consume-message`,
/// `consume-messages`, `finalize-txn`), in milliseconds; the guest is
/// interrupted at most one epoch tick after it.
pub const DEFAULT_GUEST_CALL_DEADLINE_MS: u64 = 5_000;
/// Period of the engine's epoch ticker, in milliseconds: the granularity of
/// guest deadlines and job cancellation.
pub const DEFAULT_EPOCH_TICK_MS: u64 = 10;
/// Most document bytes in one `consume-messages` batch; a transaction's
/// messages are split into batches below it (a larger single document is
/// sent alone). Keeps a batch well inside the guest's memory.
pub const GUEST_BATCH_MAX_DOC_BYTES: usize = 16 << 20;
/// Key and value bytes of `put`s and `delete`s a guest call buffers before
/// they are applied (they are also applied before any read and when the call
/// returns).
pub const GUEST_WRITE_BUFFER_BYTES: usize = 1 << 20;
/// Largest linear memory of a consumer guest instance, in bytes.
pub const DEFAULT_GUEST_MEMORY_BYTES: usize = 128 << 20;
/// Fuel (roughly wasm instructions) per guest call; `None` = no fuel
/// metering (enabling it costs ~10% per call).
pub const DEFAULT_GUEST_FUEL_PER_CALL: Option<u64> = None;
/// Longest guest log record, in bytes; longer ones are truncated.
pub const DEFAULT_GUEST_LOG_RECORD_BYTES: usize = 4 * 1024;
/// Guest log output allowed per call, in bytes; further records are dropped
/// and counted.
pub const DEFAULT_GUEST_LOG_BYTES_PER_CALL: usize = 64 * 1024;
/// Guest stderr/stdout output captured into the host log per call, in bytes;
/// the rest is dropped and counted.
pub const DEFAULT_GUEST_STDERR_BYTES_PER_CALL: usize = 64 * 1024;
/// Guest stderr kept to explain a crash (the tail of the failed call's
/// output, e.g. a panic message), in bytes.
pub const DEFAULT_GUEST_CRASH_STDERR_BYTES: usize = 2 * 1024;
/// Core wasm instances, tables and memories one component instance may
/// create (a Rust guest needs a handful), in instances / tables / memories.
pub const DEFAULT_GUEST_INSTANCES: usize = 100;
/// See [`DEFAULT_GUEST_INSTANCES`].
pub const DEFAULT_GUEST_TABLES: usize = 100;
/// See [`DEFAULT_GUEST_INSTANCES`].
pub const DEFAULT_GUEST_MEMORIES: usize = 10;
/// Largest table of a guest, in elements.
pub const DEFAULT_GUEST_TABLE_ELEMENTS: usize = 100_000;
/// Time a cancelled job guest has to return its partial report before it
/// is trapped, in milliseconds.
pub const DEFAULT_JOB_CANCEL_GRACE_MS: u64 = 1_000;
/// Largest linear memory of a job guest (the chunker), in bytes.
pub const DEFAULT_JOB_MEMORY_BYTES: usize = 256 << 20;
/// Log output of a job guest, in bytes per second (a token bucket whose
/// burst is [`DEFAULT_GUEST_LOG_BYTES_PER_CALL`]).
pub const DEFAULT_JOB_LOG_BYTES_PER_SEC: usize = 64 * 1024;
/// Most documents in one `publish-committed` call of a job, in messages.
pub const DEFAULT_JOB_PUBLISH_BATCH: usize = 10_000;
/// Envelopes a job's journal reader buffers ahead of the guest, in envelopes.
pub const DEFAULT_JOB_READER_BUFFER: usize = 1024;

// --- broker ---

/// Largest single append, in bytes (128 MiB: above the store's 64 MiB
/// transaction cap, which becomes one recovery-log append plus framing).
pub const DEFAULT_MAX_APPEND_SIZE: usize = 128 << 20;
/// Spool roll target of journals whose spec leaves `fragment_length` 0, in
/// bytes (16 MiB, as Gazette's test journals).
pub const DEFAULT_FRAGMENT_LENGTH: u64 = 16 << 20;
/// Most content bytes in one read chunk (Gazette: 32 KiB less 32 bytes).
pub const DEFAULT_READ_CHUNK_SIZE: usize = (32 << 10) - 32;
/// Appends queued per journal before appenders wait, in appends.
pub const DEFAULT_APPEND_QUEUE_DEPTH: usize = 8192;
/// How long opening a data directory waits for its lock, in milliseconds.
/// A lock lives as long as any descriptor of its file: a predecessor that
/// just exited, or a child this process forked at the moment the lock was
/// released (it holds the descriptor until it execs), keeps it a moment
/// longer than the broker that owned it.
pub const DEFAULT_DIR_LOCK_WAIT_MS: u64 = 2_000;

// --- server ---

/// Concurrent calls served per client connection, in calls; more wait.
pub const DEFAULT_GRPC_CONCURRENCY_PER_CONNECTION: usize = 256;
/// Concurrent HTTP/2 streams a client connection may open, in streams.
pub const DEFAULT_GRPC_MAX_CONCURRENT_STREAMS: u32 = 1024;

// --- journal service and client ---

/// Largest gRPC message the Journal service and client accept, in bytes
/// (Gazette's `--broker.max-grpc-recv-size`).
pub const DEFAULT_GRPC_MAX_RECV_SIZE: usize = 4 << 20;
/// Largest gRPC message the Journal service and client send, in bytes.
pub const DEFAULT_GRPC_MAX_SEND_SIZE: usize = 4 << 20;
/// Most journals in one List response message (Gazette's page of 25).
pub const DEFAULT_LIST_RESPONSE_JOURNALS: usize = 25;
/// Fragments per ListFragments page when the request leaves `page_limit` 0
/// (Gazette's default).
pub const DEFAULT_FRAGMENTS_PAGE_LIMIT: usize = 1000;
/// Slowest an append stream may send content, in bytes per second, after
/// its burst allowance; slower streams are aborted (Gazette's
/// `--broker.min-append-rate`).
pub const DEFAULT_MIN_APPEND_RATE: u64 = 64 << 10;
/// Time an append stream may run ahead of [`DEFAULT_MIN_APPEND_RATE`]
/// before it must keep pace, in milliseconds (Gazette's burst credit).
pub const DEFAULT_APPEND_BURST_MS: u64 = 1_000;
/// Content bytes the journal client sends per append message.
pub const DEFAULT_APPEND_CHUNK_SIZE: usize = 1 << 20;
/// Journal client back-off before each retry of a transient failure, by
/// attempt, in milliseconds; the last value repeats (Gazette's
/// RetryReader: 50, 50, 100, 100 ms, 1 s, 1 s, then 5 s).
pub const DEFAULT_RETRY_BACKOFF_MS: [u64; 7] = [50, 50, 100, 100, 1_000, 1_000, 5_000];
/// How long `weir stream-sum --broker` keeps retrying its set-up calls
/// (module push, shard apply) through a server restart, in seconds.
pub const DEFAULT_SETUP_RETRY_SECS: u64 = 60;
/// Time the journal client waits for a TCP connection, in milliseconds.
pub const DEFAULT_GRPC_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Interval of the journal client's HTTP/2 keep-alive pings, which notice
/// a vanished server under a blocked read, in milliseconds.
pub const DEFAULT_GRPC_KEEPALIVE_INTERVAL_MS: u64 = 30_000;
/// Time a keep-alive ping may go unanswered before the connection is
/// dropped, in milliseconds.
pub const DEFAULT_GRPC_KEEPALIVE_TIMEOUT_MS: u64 = 20_000;

// --- chaos harness ---

/// Length of the fault-injection phase of `weir chaos` by default (the
/// short run, sized for CI), in seconds.
pub const CHAOS_DEFAULT_DURATION_SECS: u64 = 180;
/// Shortest gap between two faults by default, in seconds.
pub const CHAOS_DEFAULT_FAULT_GAP_MIN_SECS: u64 = 10;
/// Longest gap between two faults by default, in seconds: with the default
/// duration this leaves room for at least 8 faults, so the mandatory kills
/// always fit.
pub const CHAOS_DEFAULT_FAULT_GAP_MAX_SECS: u64 = 20;
/// Quiet time at the start of the fault phase, before the first gap, in
/// seconds.
pub const CHAOS_FAULT_WARMUP_SECS: u64 = 5;
/// Length of the fault-injection phase of `weir chaos --long` (issue 6's
/// long run: ten minutes or more), in seconds.
pub const CHAOS_LONG_DURATION_SECS: u64 = 600;
/// Shortest gap between two faults of `weir chaos --long`, in seconds.
pub const CHAOS_LONG_FAULT_GAP_MIN_SECS: u64 = 15;
/// Longest gap between two faults of `weir chaos --long`, in seconds.
pub const CHAOS_LONG_FAULT_GAP_MAX_SECS: u64 = 30;
/// SIGKILLs of the consumer host every schedule holds at least.
pub const CHAOS_MIN_CONSUMER_KILLS: u32 = 5;
/// SIGKILLs of the broker every schedule holds at least.
pub const CHAOS_MIN_BROKER_KILLS: u32 = 2;
/// Longest wait between a kill (or a graceful stop) and the restart, in
/// milliseconds; each wait is drawn from 0 to this.
pub const CHAOS_MAX_RESTART_DELAY_MS: u64 = 3_000;
/// Shortest SIGSTOP pause, in milliseconds.
pub const CHAOS_PAUSE_MIN_MS: u64 = 2_000;
/// Longest SIGSTOP pause, in milliseconds.
pub const CHAOS_PAUSE_MAX_MS: u64 = 5_000;
/// Chunk partitions (and summer shards) by default.
pub const CHAOS_DEFAULT_PARTITIONS: u32 = 4;
/// Chunker workers by default.
pub const CHAOS_DEFAULT_WORKERS: u32 = 4;
/// Data chunks per stream (Gazette's crash test runs its chunkers with 3,
/// so that many streams complete between faults).
pub const CHAOS_CHUNKS_PER_STREAM: u32 = 3;
/// Longest a started server may take to serve, or a started chunker to
/// finish its setup, in milliseconds.
pub const CHAOS_START_TIMEOUT_MS: u64 = 60_000;
/// Starts of a server on its old port before giving up (another socket may
/// hold the port for a moment), in attempts.
pub const CHAOS_RESTART_ATTEMPTS: u32 = 5;
/// Longest every shard may take to be PRIMARY again after a fault, in
/// milliseconds; longer fails the run.
pub const CHAOS_RECOVERY_TIMEOUT_MS: u64 = 60_000;
/// Longest not every shard may be PRIMARY between faults before the run
/// fails, in milliseconds.
pub const CHAOS_UNHEALTHY_GRACE_MS: u64 = 10_000;
/// Longest a SIGTERMed server may take to exit, in milliseconds; longer
/// fails the run (and the server is SIGKILLed).
pub const CHAOS_GRACEFUL_STOP_TIMEOUT_MS: u64 = 30_000;
/// Longest the chunker may take to exit after SIGINT, in milliseconds.
pub const CHAOS_CHUNKER_STOP_TIMEOUT_MS: u64 = 30_000;
/// Longest the end-of-run drain (every shard reading through the chunk
/// journals' heads) may take, in milliseconds.
pub const CHAOS_DRAIN_TIMEOUT_MS: u64 = 120_000;
/// Longest a resumed, superseded consumer host may keep a PRIMARY shard
/// before the run fails for trusting it, in milliseconds.
pub const CHAOS_FENCE_TIMEOUT_MS: u64 = 30_000;
/// Worst latency from a stream's final chunk to its verified sum a run may
/// show, in milliseconds (issue 6's figure; the chunker's own hard limit is
/// 40 s).
pub const CHAOS_MAX_LATENCY_MS: u64 = 25_000;
/// Age of a process incarnation at which its starting memory is sampled,
/// in seconds (caches and pools have filled by then).
pub const CHAOS_RSS_WARMUP_SECS: u64 = 20;
/// Largest ratio of a process's memory at the end to its warm start.
pub const CHAOS_MAX_RSS_GROWTH: f64 = 2.0;
/// Period of the harness's polls while it waits for a recovery (shard
/// status), in milliseconds.
pub const CHAOS_POLL_MS: u64 = 100;
/// Period of the harness's look at the processes between faults (exits,
/// shard status, memory), in milliseconds.
pub const CHAOS_WATCH_MS: u64 = 500;
/// Longest one probe call (List, Push, Apply, a write barrier) may take,
/// in milliseconds.
pub const CHAOS_PROBE_TIMEOUT_MS: u64 = 5_000;
/// How long the auditor's journal client retries an unreachable broker,
/// in milliseconds.
pub const CHAOS_AUDIT_RETRY_MS: u64 = 30_000;
/// Fragment length of the canary journal a disk-damage fault writes, in
/// bytes: the smallest a spec may ask for, so that a few lines already
/// close fragments (the flipped byte goes into a closed one).
pub const CHAOS_CANARY_FRAGMENT_LENGTH: u64 = 1 << 10;
/// Lines (one append each) written to a disk-damage fault's canary journal.
pub const CHAOS_CANARY_LINES: usize = 40;
/// Longest a disk-damage fault waits, after the restart, for new appends
/// to the torn chunk partition to cover the torn bytes, in milliseconds.
pub const CHAOS_DISK_CHECK_TIMEOUT_MS: u64 = 30_000;

// --- auditor ---

/// Examples the stream-sum auditor keeps per anomaly kind (its counts cover
/// every anomaly).
pub const DEFAULT_AUDIT_EXAMPLES: usize = 20;
/// Longest journal line the stream-sum auditor parses, in bytes: the largest
/// document a publisher accepts plus room for its UUID field. Longer lines
/// are reported malformed rather than buffered.
pub const DEFAULT_AUDIT_MAX_LINE_BYTES: usize = DEFAULT_MAX_MESSAGE_BYTES + 1024;

// --- sandbox (weir test) ---

/// Input journal of a `weir test` run when `--journal` is not given.
pub const SANDBOX_DEFAULT_INPUT_JOURNAL: &str = "test/input";
/// Longest a `weir test` run may take, crash-free and crashed runs each, in
/// seconds; a guest that stalls the shard fails the run instead of hanging it.
pub const SANDBOX_RUN_TIMEOUT_SECS: u64 = 120;
/// Longest a `weir test` transaction keeps reading, in milliseconds (the
/// input is all there, so transactions usually end sooner, when it runs out).
pub const SANDBOX_MAX_TXN_MS: u64 = 1_000;
/// Back-off before a sandboxed shard's next term after a (usually injected)
/// crash, in milliseconds: short, since the crashes are planned.
pub const SANDBOX_RETRY_BACKOFF_MS: u64 = 1;
/// How often a read-committed reader of the sandbox re-checks how far it has
/// read while no message arrives, in milliseconds (a tail that never commits
/// delivers nothing, but is read past).
pub const SANDBOX_READ_POLL_MS: u64 = 20;
/// Store entries read per page when `weir test` dumps the final store, in
/// entries (at most [`DEFAULT_STORE_MAX_SCAN_ENTRIES`]).
pub const SANDBOX_STORE_SCAN_PAGE: usize = 10_000;

// --- per-shard limits (labels `weir.dev/limit.*`, see `service::shard_limits`) ---

/// Longest call deadline a shard label may set, in milliseconds.
pub const SHARD_LIMIT_MAX_CALL_DEADLINE_MS: u64 = 600_000;
/// Largest fuel budget per call a shard label may set, in fuel units
/// (roughly wasm instructions: minutes of work).
pub const SHARD_LIMIT_MAX_FUEL_PER_CALL: u64 = 1 << 50;
/// Smallest linear memory a shard label may set, in bytes (one wasm page;
/// a guest that needs more is refused by the apply's instantiation probe).
pub const SHARD_LIMIT_MIN_MEMORY_BYTES: u64 = 64 << 10;
/// Largest linear memory a shard label may set, in bytes (all of wasm32's
/// address space).
pub const SHARD_LIMIT_MAX_MEMORY_BYTES: u64 = 4 << 30;
/// Largest guest log output per call a shard label may set, in bytes.
pub const SHARD_LIMIT_MAX_LOG_BYTES_PER_CALL: u64 = 16 << 20;
