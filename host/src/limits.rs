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
/// Most entries one store `scan` may ask for, in entries.
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
