//! The limits a guest runs under, and how each is enforced.
//!
//! | limit | enforced by | when exceeded |
//! |---|---|---|
//! | wall-clock deadline per call | epoch interruption (a ticker thread) | trap → `AppError::Crashed` |
//! | fuel per call (optional) | wasmtime fuel metering | trap → `AppError::Crashed` |
//! | linear memory, tables, instances | [`GuestLimiter`] | `memory.grow` fails (the guest usually aborts) → `Crashed` |
//! | published messages / bytes per transaction, document size | the `publisher` import | WIT error, and the transaction fails (`AppError::Publish`) |
//! | store key / value size, scan entries | the `store` import | WIT error, and the transaction fails (`AppError::Store`) |
//! | log records and output | [`LogBudget`] | truncated / dropped and counted, never an error |
//! | stderr and stdout | `stderr.rs` | dropped and counted, never an error |
//!
//! Defaults live in [`crate::limits`]; nothing here hard-codes a number.

use std::time::{Duration, Instant};

use crate::limits;

/// Limits of a consumer guest (one shard's instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestLimits {
    /// Wall-clock deadline of one call.
    pub call_deadline: Duration,
    /// Fuel per call; needs [`RuntimeConfig::fuel`](super::RuntimeConfig::fuel).
    pub fuel_per_call: Option<u64>,
    /// Largest linear memory, in bytes.
    pub memory_bytes: usize,
    /// Largest table, in elements.
    pub table_elements: usize,
    /// Most messages published per transaction.
    pub max_txn_messages: usize,
    /// Most document bytes published per transaction.
    pub max_txn_bytes: usize,
    /// Largest published document, in bytes.
    pub max_doc_bytes: usize,
    /// Largest store key, in bytes.
    pub max_key_bytes: usize,
    /// Largest store value, in bytes.
    pub max_value_bytes: usize,
    /// Most entries one `scan`, and keys one `get-many`, may ask for.
    pub max_scan_entries: usize,
    /// Longest log record, in bytes.
    pub max_log_record_bytes: usize,
    /// Log output per call, in bytes.
    pub max_log_bytes_per_call: usize,
    /// Captured stderr/stdout per call, in bytes.
    pub max_stderr_bytes_per_call: usize,
}

impl Default for GuestLimits {
    fn default() -> Self {
        GuestLimits {
            call_deadline: Duration::from_millis(limits::DEFAULT_GUEST_CALL_DEADLINE_MS),
            fuel_per_call: limits::DEFAULT_GUEST_FUEL_PER_CALL,
            memory_bytes: limits::DEFAULT_GUEST_MEMORY_BYTES,
            table_elements: limits::DEFAULT_GUEST_TABLE_ELEMENTS,
            max_txn_messages: limits::DEFAULT_MAX_TXN_MESSAGES,
            max_txn_bytes: limits::DEFAULT_MAX_TXN_BYTES,
            max_doc_bytes: limits::DEFAULT_MAX_MESSAGE_BYTES,
            max_key_bytes: limits::DEFAULT_STORE_MAX_KEY_BYTES,
            max_value_bytes: limits::DEFAULT_STORE_MAX_VALUE_BYTES,
            max_scan_entries: limits::DEFAULT_STORE_MAX_SCAN_ENTRIES,
            max_log_record_bytes: limits::DEFAULT_GUEST_LOG_RECORD_BYTES,
            max_log_bytes_per_call: limits::DEFAULT_GUEST_LOG_BYTES_PER_CALL,
            max_stderr_bytes_per_call: limits::DEFAULT_GUEST_STDERR_BYTES_PER_CALL,
        }
    }
}

/// Limits of a job guest (the chunker). A job has no per-call deadline: it
/// runs until it returns or is cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLimits {
    /// Largest linear memory, in bytes.
    pub memory_bytes: usize,
    /// Largest table, in elements.
    pub table_elements: usize,
    /// Largest published document, in bytes.
    pub max_doc_bytes: usize,
    /// Most documents per `publish-committed` call.
    pub max_publish_batch: usize,
    /// Envelopes a reader buffers ahead of the guest.
    pub reader_buffer: usize,
    /// Longest log record, in bytes.
    pub max_log_record_bytes: usize,
    /// Log burst, in bytes.
    pub log_burst_bytes: usize,
    /// Sustained log rate, in bytes per second.
    pub log_bytes_per_sec: usize,
    /// Captured stderr/stdout over the whole job, in bytes.
    pub max_stderr_bytes: usize,
    /// Time a cancelled job has to return before it is trapped.
    pub cancel_grace: Duration,
}

impl Default for JobLimits {
    fn default() -> Self {
        JobLimits {
            memory_bytes: limits::DEFAULT_JOB_MEMORY_BYTES,
            table_elements: limits::DEFAULT_GUEST_TABLE_ELEMENTS,
            max_doc_bytes: limits::DEFAULT_MAX_MESSAGE_BYTES,
            max_publish_batch: limits::DEFAULT_JOB_PUBLISH_BATCH,
            reader_buffer: limits::DEFAULT_JOB_READER_BUFFER,
            max_log_record_bytes: limits::DEFAULT_GUEST_LOG_RECORD_BYTES,
            log_burst_bytes: limits::DEFAULT_GUEST_LOG_BYTES_PER_CALL,
            log_bytes_per_sec: limits::DEFAULT_JOB_LOG_BYTES_PER_SEC,
            max_stderr_bytes: limits::DEFAULT_GUEST_STDERR_BYTES_PER_CALL,
            cancel_grace: Duration::from_millis(limits::DEFAULT_JOB_CANCEL_GRACE_MS),
        }
    }
}

/// The store's resource limiter: caps each linear memory and table, and
/// remembers a refused growth so that the resulting crash can be explained.
#[derive(Debug, Clone)]
pub struct GuestLimiter {
    memory_bytes: usize,
    table_elements: usize,
    /// The largest memory size a refused `memory.grow` asked for, in bytes.
    denied_memory: Option<usize>,
}

impl GuestLimiter {
    /// A limiter for `memory_bytes` per memory and `table_elements` per table.
    pub fn new(memory_bytes: usize, table_elements: usize) -> GuestLimiter {
        GuestLimiter {
            memory_bytes,
            table_elements,
            denied_memory: None,
        }
    }

    /// The memory size (bytes) of a growth refused since the last call to
    /// this method, if any.
    pub fn take_denied_memory(&mut self) -> Option<usize> {
        self.denied_memory.take()
    }

    /// The memory cap, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }
}

impl wasmtime::ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Refusing (rather than trapping) is what the wasm spec prescribes:
        // `memory.grow` returns -1 and the guest may cope; a Rust guest
        // aborts, which traps.
        if desired > self.memory_bytes || maximum.is_some_and(|max| desired > max) {
            self.denied_memory = Some(self.denied_memory.unwrap_or(0).max(desired));
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements && maximum.is_none_or(|max| desired <= max))
    }

    fn instances(&self) -> usize {
        limits::DEFAULT_GUEST_INSTANCES
    }

    fn tables(&self) -> usize {
        limits::DEFAULT_GUEST_TABLES
    }

    fn memories(&self) -> usize {
        limits::DEFAULT_GUEST_MEMORIES
    }
}

/// Whether a log record may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogAdmission {
    /// Write the record (possibly truncated to `bytes`).
    Write {
        /// Bytes of the record to write.
        bytes: usize,
    },
    /// The budget is spent: drop it (it is counted).
    Drop,
}

/// A token bucket over log bytes: `capacity` bytes of burst, refilled at
/// `refill_per_sec` (jobs) or reset to full at each call (consumers).
#[derive(Debug, Clone)]
pub struct LogBudget {
    capacity: usize,
    available: usize,
    record_max: usize,
    refill_per_sec: usize,
    last_refill: Instant,
    dropped: u64,
}

impl LogBudget {
    /// A budget reset per call (`refill_per_sec` = 0) or refilled over time.
    pub fn new(capacity: usize, record_max: usize, refill_per_sec: usize) -> LogBudget {
        LogBudget {
            capacity,
            available: capacity,
            record_max,
            refill_per_sec,
            last_refill: Instant::now(),
            dropped: 0,
        }
    }

    /// Restores the full budget (the start of a consumer call) and returns
    /// how many records were dropped since the last reset.
    pub fn reset(&mut self) -> u64 {
        self.available = self.capacity;
        std::mem::take(&mut self.dropped)
    }

    /// Admits a record of `len` bytes.
    pub fn admit(&mut self, len: usize) -> LogAdmission {
        if self.refill_per_sec > 0 {
            let now = Instant::now();
            let elapsed = now.duration_since(self.last_refill);
            let refill = (elapsed.as_secs_f64() * self.refill_per_sec as f64) as usize;
            if refill > 0 {
                self.available = self.capacity.min(self.available.saturating_add(refill));
                self.last_refill = now;
            }
        }
        let bytes = len.min(self.record_max);
        if bytes > self.available || self.available == 0 {
            self.dropped += 1;
            return LogAdmission::Drop;
        }
        self.available -= bytes;
        LogAdmission::Write { bytes }
    }

    /// Records dropped since the last [`reset`](Self::reset).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
pub fn truncate_str(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod test {
    use wasmtime::ResourceLimiter;

    use super::*;

    #[test]
    fn the_limiter_refuses_growth_past_the_cap_and_remembers_it() {
        let mut limiter = GuestLimiter::new(1 << 20, 10);
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        assert_eq!(limiter.take_denied_memory(), None);
        assert!(
            !limiter
                .memory_growing(1 << 20, (1 << 20) + 65536, None)
                .unwrap()
        );
        assert_eq!(limiter.take_denied_memory(), Some((1 << 20) + 65536));
        assert_eq!(limiter.take_denied_memory(), None);
        assert!(!limiter.table_growing(0, 11, None).unwrap());
        assert!(limiter.table_growing(0, 10, None).unwrap());
    }

    #[test]
    fn a_per_call_log_budget_truncates_records_and_drops_past_the_budget() {
        let mut budget = LogBudget::new(100, 40, 0);
        assert_eq!(budget.admit(10), LogAdmission::Write { bytes: 10 });
        assert_eq!(budget.admit(1000), LogAdmission::Write { bytes: 40 });
        assert_eq!(budget.admit(40), LogAdmission::Write { bytes: 40 });
        assert_eq!(budget.admit(40), LogAdmission::Drop);
        assert_eq!(budget.admit(11), LogAdmission::Drop);
        assert_eq!(budget.reset(), 2);
        assert_eq!(budget.admit(40), LogAdmission::Write { bytes: 40 });
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate_str("héllo", 2), "h");
        assert_eq!(truncate_str("héllo", 3), "hé");
        assert_eq!(truncate_str("hi", 10), "hi");
    }
}
