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
