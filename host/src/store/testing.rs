//! An in-memory [`JournalClient`] for the store's tests.
//!
//! It keeps the contract the store relies on: atomic appends, registers
//! checked and updated with an append (an empty register set matches any
//! check), `expect_offset`, zero-byte barriers, and reads that block at the
//! write head. Two knobs make tests sharper: reads deliver content in chunks
//! of `chunk_size` bytes (so records straddle chunks), the next append can
//! be made to land and still report failure (an append of unknown outcome),
//! and reads can be paused (to catch a reader mid-way).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

use crate::broker::protocol::{
    AppendRequest, AppendResponse, BrokerError, JournalChange, JournalClient, ReadChunk,
    ReadRequest, ReadStream,
};
use crate::broker::spec::{JournalSpec, LabelSelector, LabelSet};

struct Journal {
    spec: JournalSpec,
    content: Vec<u8>,
    registers: LabelSet,
    head: watch::Sender<i64>,
}

/// Journals in memory.
pub(crate) struct MemoryJournals {
    journals: Arc<Mutex<HashMap<String, Journal>>>,
    chunk_size: AtomicUsize,
    land_then_fail: AtomicBool,
    land_then_resend: AtomicBool,
    reads_paused: watch::Sender<bool>,
}

impl MemoryJournals {
    /// A client holding `journals`, empty, delivering reads in `chunk_size`
    /// byte chunks.
    pub fn new(journals: &[&str], chunk_size: usize) -> Arc<MemoryJournals> {
        let client = MemoryJournals {
            journals: Arc::new(Mutex::new(HashMap::new())),
            chunk_size: AtomicUsize::new(chunk_size),
            land_then_fail: AtomicBool::new(false),
            land_then_resend: AtomicBool::new(false),
            reads_paused: watch::channel(false).0,
        };
        for name in journals {
            client.create(name);
        }
        Arc::new(client)
    }

    fn create(&self, name: &str) {
        let journal = Journal {
            spec: JournalSpec::new(name),
            content: Vec::new(),
            registers: LabelSet::new(),
            head: watch::channel(0).0,
        };
        self.lock().insert(name.to_string(), journal);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Journal>> {
        lock(&self.journals)
    }

    /// Makes the next non-empty append land, then report `Unavailable`.
    pub fn land_next_append_then_fail(&self) {
        self.land_then_fail.store(true, Ordering::SeqCst);
    }

    /// Makes the next non-empty append land, then answer as its resend
    /// would (a retrying client whose first answer was lost): with
    /// `WrongAppendOffset`, the head having moved by exactly that append.
    pub fn land_next_append_then_resend(&self) {
        self.land_then_resend.store(true, Ordering::SeqCst);
    }

    /// Makes every read wait before delivering its next chunk, until
    /// [`resume_reads`](Self::resume_reads).
    pub fn pause_reads(&self) {
        self.reads_paused.send_replace(true);
    }

    /// Lets paused reads go on.
    pub fn resume_reads(&self) {
        self.reads_paused.send_replace(false);
    }

    /// The registers of `journal`.
    pub fn registers(&self, journal: &str) -> LabelSet {
        self.lock()
            .get(journal)
            .map(|j| j.registers.clone())
            .unwrap_or_default()
    }

    /// The content of `journal`.
    pub fn content(&self, journal: &str) -> Vec<u8> {
        self.lock()
            .get(journal)
            .map(|j| j.content.clone())
            .unwrap_or_default()
    }
}

fn matches(check: &Option<LabelSelector>, registers: &LabelSet) -> bool {
    match check {
        None => true,
        Some(_) if registers.is_empty() => true,
        Some(selector) => selector.matches(registers),
    }
}

#[async_trait]
impl JournalClient for MemoryJournals {
    async fn list(&self, selector: &LabelSelector) -> Result<Vec<JournalSpec>, BrokerError> {
        let mut specs: Vec<JournalSpec> = self
            .lock()
            .values()
            .filter(|j| selector.matches(&j.spec.labels))
            .map(|j| j.spec.clone())
            .collect();
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(specs)
    }

    async fn apply(&self, changes: Vec<JournalChange>) -> Result<(), BrokerError> {
        for change in changes {
            match change {
                JournalChange::Upsert(spec) => self.create(&spec.name),
                JournalChange::Delete(name) => {
                    self.lock().remove(&name);
                }
            }
        }
        Ok(())
    }

    async fn append(&self, request: AppendRequest) -> Result<AppendResponse, BrokerError> {
        let mut journals = self.lock();
        let journal = journals
            .get_mut(&request.journal)
            .ok_or_else(|| BrokerError::JournalNotFound(request.journal.clone()))?;
        let head = journal.content.len() as i64;
        if !matches(&request.check_registers, &journal.registers) {
            return Err(BrokerError::RegisterMismatch {
                journal: request.journal,
                registers: journal.registers.clone(),
            });
        }
        if let Some(expected) = request.expect_offset
            && expected != head
        {
            return Err(BrokerError::WrongAppendOffset {
                journal: request.journal,
                expected,
                write_head: head,
            });
        }
        if request.content.is_empty() {
            return Ok(AppendResponse {
                begin: head,
                end: head,
                registers: journal.registers.clone(),
            });
        }
        journal.registers = journal
            .registers
            .subtract(&request.subtract_registers)
            .union(&request.union_registers);
        journal.content.extend_from_slice(&request.content);
        let end = journal.content.len() as i64;
        journal.head.send_replace(end);
        if let Some(expected) = request.expect_offset
            && self.land_then_resend.swap(false, Ordering::SeqCst)
        {
            return Err(BrokerError::WrongAppendOffset {
                journal: request.journal,
                expected,
                write_head: end,
            });
        }
        if self.land_then_fail.swap(false, Ordering::SeqCst) {
            return Err(BrokerError::Unavailable(
                "connection lost after the append".into(),
            ));
        }
        Ok(AppendResponse {
            begin: head,
            end,
            registers: journal.registers.clone(),
        })
    }

    async fn read(&self, request: ReadRequest) -> Result<Box<dyn ReadStream>, BrokerError> {
        let journals = self.lock();
        let journal = journals
            .get(&request.journal)
            .ok_or_else(|| BrokerError::JournalNotFound(request.journal.clone()))?;
        let offset = if request.offset < 0 {
            journal.content.len() as i64
        } else {
            request.offset
        };
        Ok(Box::new(MemoryRead {
            journals: Arc::clone(&self.journals),
            journal: request.journal,
            offset,
            block: request.block,
            end: request.end_offset,
            head: journal.head.subscribe(),
            chunk_size: self.chunk_size.load(Ordering::SeqCst).max(1),
            paused: self.reads_paused.subscribe(),
        }))
    }
}

type Journals = Arc<Mutex<HashMap<String, Journal>>>;

fn lock(journals: &Journals) -> MutexGuard<'_, HashMap<String, Journal>> {
    journals
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct MemoryRead {
    journals: Journals,
    journal: String,
    offset: i64,
    block: bool,
    end: i64,
    head: watch::Receiver<i64>,
    chunk_size: usize,
    paused: watch::Receiver<bool>,
}

#[async_trait]
impl ReadStream for MemoryRead {
    async fn next(&mut self) -> Result<Option<ReadChunk>, BrokerError> {
        self.paused
            .wait_for(|paused| !*paused)
            .await
            .map_err(|_| BrokerError::Unavailable("client dropped".into()))?;
        loop {
            if self.end > 0 && self.offset >= self.end {
                return Ok(None);
            }
            let available = {
                let journals = lock(&self.journals);
                let journal = journals
                    .get(&self.journal)
                    .ok_or_else(|| BrokerError::JournalNotFound(self.journal.clone()))?;
                let head = journal.content.len() as i64;
                let mut stop = head.min(self.offset + self.chunk_size as i64);
                if self.end > 0 {
                    stop = stop.min(self.end);
                }
                (self.offset < stop)
                    .then(|| journal.content[self.offset as usize..stop as usize].to_vec())
            };
            if let Some(content) = available {
                let chunk = ReadChunk {
                    offset: self.offset,
                    content: Bytes::from(content),
                };
                self.offset += chunk.content.len() as i64;
                return Ok(Some(chunk));
            }
            if !self.block {
                if self.end > 0 {
                    return Err(BrokerError::OffsetNotYetAvailable {
                        journal: self.journal.clone(),
                        offset: self.offset,
                    });
                }
                return Ok(None);
            }
            let offset = self.offset;
            self.head
                .wait_for(|head| *head > offset)
                .await
                .map_err(|_| BrokerError::Unavailable("journal deleted".into()))?;
        }
    }
}

/// The recovery log used by the store's tests.
pub(crate) const LOG: &str = "recovery/shard-000";

/// A checkpoint whose single source has read through `offset`.
pub(crate) fn checkpoint_at(offset: i64) -> crate::consumer::Checkpoint {
    let mut checkpoint = crate::consumer::Checkpoint::default();
    checkpoint.sources.insert(
        "source/part-000".to_string(),
        crate::consumer::SourceCheckpoint {
            read_through: offset,
            producers: vec![],
        },
    );
    checkpoint
        .ack_intents
        .insert("sums".to_string(), format!("ack {offset}\n").into_bytes());
    checkpoint
}

/// Commits `puts` (a `None` value deletes) through a transaction overlay.
pub(crate) async fn commit(
    store: &mut super::ShardStore,
    puts: &[(&str, Option<&str>)],
    checkpoint: &crate::consumer::Checkpoint,
) -> Result<super::CommitReceipt, super::StoreError> {
    use crate::consumer::TxnStore;
    let mut txn = store.begin_txn();
    for (key, value) in puts {
        let result = match value {
            Some(value) => txn.put(key.as_bytes(), value.as_bytes()),
            None => txn.delete(key.as_bytes()),
        };
        result.map_err(|err| super::StoreError::LimitExceeded(err.to_string()))?;
    }
    store.commit(txn.into_writes(), checkpoint).await
}

/// Every committed key and value, as strings.
pub(crate) fn contents(store: &super::ShardStore) -> Vec<(String, String)> {
    use crate::consumer::TxnStore;
    let entries = store.begin_txn().scan(b"", b"", 100_000).expect("scan");
    entries
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect()
}

/// `(key, value)` pairs as owned strings.
pub(crate) fn pairs(entries: &[(&str, &str)]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
