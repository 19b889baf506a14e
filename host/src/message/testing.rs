//! Test support for the message layer: an in-memory [`JournalClient`] with
//! fault injection, and envelope builders.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

use crate::broker::{
    AppendRequest, AppendResponse, BrokerError, JournalChange, JournalClient, JournalSpec,
    LabelSelector, LabelSet, ReadChunk, ReadRequest, ReadStream,
};

use super::envelope::Envelope;
use super::uuid::{Clock, Flags, ProducerId, build_uuid};

/// What the next append does instead of succeeding.
#[derive(Debug)]
pub enum Fault {
    /// The append does not land and returns the error.
    Fail(BrokerError),
    /// The append lands, but the caller sees the error (so it retries and
    /// the bytes appear twice).
    LandThenFail(BrokerError),
}

/// Journals in memory. Appends are atomic and ordered; reads stream
/// committed bytes in chunks of at most `read_chunk` bytes and may block.
pub struct MemJournals {
    journals: Journals,
    faults: Mutex<VecDeque<Fault>>,
    appends: Mutex<Vec<(String, usize)>>,
    /// Bumped on every append, for blocking reads.
    version: watch::Sender<u64>,
    /// While true, appends wait.
    paused: watch::Sender<bool>,
    /// Appends begun (including paused and failed ones).
    started: watch::Sender<u64>,
    read_chunk: usize,
}

impl MemJournals {
    /// Journals named `names`, labeled `content-type=application/x-ndjson`.
    pub fn with_journals(names: &[&str], read_chunk: usize) -> Arc<MemJournals> {
        let mut journals = HashMap::new();
        for name in names {
            let labels: LabelSet = [("content-type", super::framing::NDJSON)]
                .into_iter()
                .collect();
            let spec = JournalSpec::new(*name).with_labels(labels);
            journals.insert(name.to_string(), (spec, Vec::new()));
        }
        Arc::new(MemJournals {
            journals: Arc::new(Mutex::new(journals)),
            faults: Mutex::new(VecDeque::new()),
            appends: Mutex::new(Vec::new()),
            version: watch::Sender::new(0),
            paused: watch::Sender::new(false),
            started: watch::Sender::new(0),
            read_chunk: read_chunk.max(1),
        })
    }

    /// Queues a fault for a coming append.
    pub fn inject(&self, fault: Fault) {
        self.faults.lock().expect("faults").push_back(fault);
    }

    /// Makes appends wait until [`resume_appends`](Self::resume_appends).
    pub fn pause_appends(&self) {
        self.paused.send_replace(true);
    }

    /// Lets waiting appends proceed.
    pub fn resume_appends(&self) {
        self.paused.send_replace(false);
    }

    /// Waits until `n` appends have begun.
    pub async fn appends_started(&self, n: u64) {
        let _ = self.started.subscribe().wait_for(|s| *s >= n).await;
    }

    /// The content of `journal`.
    pub fn content(&self, journal: &str) -> Vec<u8> {
        self.journals
            .lock()
            .expect("journals")
            .get(journal)
            .map(|j| j.1.clone())
            .unwrap_or_default()
    }

    /// Appends that landed: (journal, bytes).
    pub fn appends(&self) -> Vec<(String, usize)> {
        self.appends.lock().expect("appends").clone()
    }

    /// Writes `bytes` to `journal` directly (no faults, no pause).
    pub fn write(&self, journal: &str, bytes: &[u8]) -> (i64, i64) {
        let range = {
            let mut journals = self.journals.lock().expect("journals");
            let content = &mut journals.get_mut(journal).expect("journal exists").1;
            let begin = content.len() as i64;
            content.extend_from_slice(bytes);
            (begin, content.len() as i64)
        };
        self.version.send_modify(|v| *v += 1);
        range
    }

    /// Sets the `content-type` label of `journal`.
    pub fn set_content_type(&self, journal: &str, content_type: &str) {
        let mut journals = self.journals.lock().expect("journals");
        let spec = &mut journals.get_mut(journal).expect("journal exists").0;
        spec.labels.set("content-type", content_type);
    }
}

#[async_trait]
impl JournalClient for MemJournals {
    async fn list(&self, selector: &LabelSelector) -> Result<Vec<JournalSpec>, BrokerError> {
        let journals = self.journals.lock().expect("journals");
        let mut specs: Vec<JournalSpec> = journals
            .values()
            .filter(|(spec, _)| selector.matches(&spec.labels_with_meta()))
            .map(|(spec, _)| spec.clone())
            .collect();
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(specs)
    }

    async fn apply(&self, changes: Vec<JournalChange>) -> Result<(), BrokerError> {
        let mut journals = self.journals.lock().expect("journals");
        for change in changes {
            match change {
                JournalChange::Upsert(spec) => {
                    let content = journals.remove(&spec.name).map(|j| j.1).unwrap_or_default();
                    journals.insert(spec.name.clone(), (spec, content));
                }
                JournalChange::Delete(name) => {
                    journals.remove(&name);
                }
            }
        }
        Ok(())
    }

    async fn append(&self, request: AppendRequest) -> Result<AppendResponse, BrokerError> {
        self.started.send_modify(|s| *s += 1);
        let mut paused = self.paused.subscribe();
        let _ = paused.wait_for(|p| !*p).await;
        let fault = self.faults.lock().expect("faults").pop_front();
        if let Some(Fault::Fail(err)) = fault {
            return Err(err);
        }
        let (begin, end) = {
            let mut journals = self.journals.lock().expect("journals");
            let Some((_, content)) = journals.get_mut(&request.journal) else {
                return Err(BrokerError::JournalNotFound(request.journal));
            };
            let begin = content.len() as i64;
            content.extend_from_slice(&request.content);
            (begin, content.len() as i64)
        };
        self.appends
            .lock()
            .expect("appends")
            .push((request.journal.clone(), request.content.len()));
        self.version.send_modify(|v| *v += 1);
        match fault {
            Some(Fault::LandThenFail(err)) => Err(err),
            _ => Ok(AppendResponse {
                begin,
                end,
                registers: LabelSet::new(),
            }),
        }
    }

    async fn read(&self, request: ReadRequest) -> Result<Box<dyn ReadStream>, BrokerError> {
        if !self
            .journals
            .lock()
            .expect("journals")
            .contains_key(&request.journal)
        {
            return Err(BrokerError::JournalNotFound(request.journal));
        }
        Ok(Box::new(MemReadStream {
            journals: self.journals.clone(),
            version: self.version.subscribe(),
            journal: request.journal,
            offset: request.offset,
            end: request.end_offset,
            block: request.block,
            chunk: self.read_chunk,
        }))
    }
}

type Journals = Arc<Mutex<HashMap<String, (JournalSpec, Vec<u8>)>>>;

struct MemReadStream {
    journals: Journals,
    version: watch::Receiver<u64>,
    journal: String,
    offset: i64,
    end: i64,
    block: bool,
    chunk: usize,
}

#[async_trait]
impl ReadStream for MemReadStream {
    async fn next(&mut self) -> Result<Option<ReadChunk>, BrokerError> {
        loop {
            if self.end != 0 && self.offset >= self.end {
                return Ok(None);
            }
            let mut max = self.chunk;
            if self.end != 0 {
                max = max.min((self.end - self.offset) as usize);
            }
            self.version.borrow_and_update();
            let content = {
                let journals = self.journals.lock().expect("journals");
                let Some((_, content)) = journals.get(&self.journal) else {
                    return Err(BrokerError::JournalNotFound(self.journal.clone()));
                };
                let from = (self.offset as usize).min(content.len());
                let to = (from + max).min(content.len());
                Bytes::copy_from_slice(&content[from..to])
            };
            if !content.is_empty() {
                let chunk = ReadChunk {
                    offset: self.offset,
                    content,
                };
                self.offset += chunk.content.len() as i64;
                return Ok(Some(chunk));
            }
            if !self.block {
                return Ok(None);
            }
            if self.version.changed().await.is_err() {
                return Err(BrokerError::Unavailable("journals dropped".to_string()));
            }
        }
    }
}

/// An ndjson envelope of `journal` at `[begin, end)` with the given UUID
/// fields; its document is `{"UUID":"…"}`.
pub fn envelope(
    journal: &Arc<str>,
    begin: i64,
    end: i64,
    producer: ProducerId,
    clock: u64,
    flags: Flags,
) -> Envelope {
    let uuid = build_uuid(producer, Clock(clock), flags);
    Envelope::new(journal.clone(), begin, end, uuid, Bytes::new())
}
