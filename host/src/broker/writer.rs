//! A journal's writer task: appends are serialized, written, made durable
//! with one fsync per group, and only then acknowledged.
//!
//! Each journal has one writer task and a queue of appends. The task takes
//! every append waiting in the queue (a *group*), checks each in order
//! against the state the earlier ones leave (`expect_offset`,
//! `check_registers`), encodes the accepted ones as records, and hands the
//! group to a blocking thread, which writes it to the spool and calls
//! `sync_data` (fdatasync) **once**. Appends that arrive while that fsync is
//! in flight wait in the queue and share the next one: this is group commit,
//! and it is what makes small appends from many writers cheap when an fsync
//! costs milliseconds.
//!
//! Only after the fsync (and, when the group created or renamed a file, the
//! directory sync) returned does the task extend the read index, publish the
//! new write head to readers and acknowledge the group's appends. So:
//! **an acknowledged append is durable**, and readers never see bytes that
//! are not.
//!
//! Failures:
//! - a failed write (e.g. a full disk) in a group that did not roll the spool
//!   is undone by cutting the spool back; that group's appends fail and the
//!   journal carries on. A spool holding committed bytes is then closed, so
//!   no byte position is ever written twice (a reader may have buffered the
//!   failed bytes);
//! - a failed fsync, directory sync, rename or file creation is fatal for the
//!   journal: after a failed fsync the kernel may have dropped the dirty
//!   pages, and retrying would report success for lost bytes. The journal
//!   then refuses appends, while its committed bytes stay readable.
//!
//! The spool rolls, at the start of an append, once it holds at least the
//! spec's `fragment_length`: it is synced, renamed to its closed name
//! `<begin>-<end>.frag`, and a new spool starts. Fragments hold whole appends.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::backend::{AppendFile, Backend, DirLock, ReadFile};
use super::fragment::{Fragment, MARK_INTERVAL};
use super::journal::{Health, JournalShared, lock, read, write};
use super::layout::FragmentFile;
use super::protocol::{AppendRequest, AppendResponse, BrokerError};
use super::record::{MAX_REGISTERS_LEN, encode_append};
use super::spec::LabelSet;

/// Most appends committed by one fsync.
const MAX_GROUP_APPENDS: usize = 4096;
/// Most content bytes committed by one fsync (a group may exceed it by one
/// append).
const MAX_GROUP_BYTES: usize = 64 << 20;

/// An append waiting for its writer.
pub(crate) struct AppendOp {
    pub request: AppendRequest,
    pub reply: oneshot::Sender<Result<AppendResponse, BrokerError>>,
}

/// The open fragment appends go to.
pub(crate) struct Spool {
    begin: i64,
    /// Journal offset after the last byte encoded into the file (or into
    /// the group being written).
    end: i64,
    path: PathBuf,
    file: Box<dyn AppendFile>,
    reader: Arc<dyn ReadFile>,
    /// Whether the read index has an entry for this spool.
    indexed: bool,
    /// Whether the spool's directory entry is durable.
    entry_synced: bool,
    last_mark: Option<u64>,
    new_marks: Vec<(i64, u64)>,
}

impl Spool {
    /// A spool found on disk by recovery.
    pub fn reopened(
        begin: i64,
        end: i64,
        path: PathBuf,
        file: Box<dyn AppendFile>,
        reader: Arc<dyn ReadFile>,
        indexed: bool,
        last_mark: Option<u64>,
    ) -> Self {
        Spool {
            begin,
            end,
            path,
            file,
            reader,
            indexed,
            entry_synced: true,
            last_mark,
            new_marks: Vec::new(),
        }
    }

    fn delta(&mut self) -> IndexDelta {
        let new_file = (!self.indexed).then(|| self.reader.clone());
        self.indexed = true;
        IndexDelta {
            begin: self.begin,
            end: self.end,
            new_file,
            marks: std::mem::take(&mut self.new_marks),
        }
    }
}

/// A change to the read index made by a committed group.
struct IndexDelta {
    begin: i64,
    end: i64,
    /// Set when the fragment is not in the index yet.
    new_file: Option<Arc<dyn ReadFile>>,
    marks: Vec<(i64, u64)>,
}

/// One append's bytes, as planned for a group.
struct PlannedWrite {
    begin: i64,
    content: Bytes,
    registers: Option<String>,
}

/// An append that passed its checks, waiting for its group's fsync.
struct Accepted {
    reply: oneshot::Sender<Result<AppendResponse, BrokerError>>,
    response: AppendResponse,
}

enum GroupError {
    /// Nothing of the group remains; the journal may continue.
    Undone(io::Error),
    /// The journal must stop accepting appends.
    Fatal(io::Error),
}

/// The writer task's state.
pub(crate) struct Writer {
    shared: Arc<JournalShared>,
    backend: Arc<dyn Backend>,
    default_fragment_length: u64,
    spool: Option<Spool>,
    head: i64,
    registers: LabelSet,
    /// Keeps the data directory locked until the last write is done.
    _dir_lock: Arc<dyn DirLock>,
}

impl Writer {
    /// A writer continuing from the recovered `spool`, `head` and
    /// `registers`.
    pub fn new(
        shared: Arc<JournalShared>,
        backend: Arc<dyn Backend>,
        default_fragment_length: u64,
        spool: Option<Spool>,
        dir_lock: Arc<dyn DirLock>,
    ) -> Self {
        let committed = shared.committed();
        let registers = lock(&shared.registers).clone();
        Writer {
            shared,
            backend,
            default_fragment_length,
            spool,
            head: committed.head,
            registers,
            _dir_lock: dir_lock,
        }
    }

    /// Commits groups until every sender of `queue` is gone.
    pub async fn run(mut self, mut queue: mpsc::Receiver<AppendOp>) {
        while let Some(op) = queue.recv().await {
            let mut bytes = op.request.content.len();
            let mut group = vec![op];
            while group.len() < MAX_GROUP_APPENDS && bytes < MAX_GROUP_BYTES {
                match queue.try_recv() {
                    Ok(op) => {
                        bytes += op.request.content.len();
                        group.push(op);
                    }
                    Err(_) => break,
                }
            }
            self.commit(group).await;
        }
    }

    async fn commit(&mut self, group: Vec<AppendOp>) {
        let journal = self.shared.name.clone();
        if self.shared.committed().health != Health::Healthy {
            for op in group {
                let err = self.shared.committed().error(&journal);
                let err = err.unwrap_or_else(|| BrokerError::Unavailable(journal.clone()));
                let _ = op.reply.send(Err(err));
            }
            return;
        }
        let spec = read(&self.shared.spec).clone();
        let roll_at = match spec.fragment_length {
            0 => self.default_fragment_length,
            length => length,
        };

        let mut head = self.head;
        let mut registers = self.registers.clone();
        let mut accepted = Vec::with_capacity(group.len());
        let mut writes = Vec::new();
        for AppendOp { request, reply } in group {
            match plan(&journal, spec.may_append(), &request, head, &registers) {
                Err(err) => {
                    let _ = reply.send(Err(err));
                }
                Ok(None) => accepted.push(Accepted {
                    reply,
                    response: AppendResponse {
                        begin: head,
                        end: head,
                        registers: registers.clone(),
                    },
                }),
                Ok(Some((updated, text))) => {
                    let end = head + request.content.len() as i64;
                    writes.push(PlannedWrite {
                        begin: head,
                        content: request.content,
                        registers: text,
                    });
                    registers = updated;
                    accepted.push(Accepted {
                        reply,
                        response: AppendResponse {
                            begin: head,
                            end,
                            registers: registers.clone(),
                        },
                    });
                    head = end;
                }
            }
        }
        if writes.is_empty() {
            // Only barriers: everything before them is already durable.
            for Accepted { reply, response } in accepted {
                let _ = reply.send(Ok(response));
            }
            return;
        }

        let spool = self.spool.take();
        let backend = self.backend.clone();
        let dir = self.shared.dir.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            write_group(backend.as_ref(), &dir, spool, &writes, roll_at)
        })
        .await;
        let failure = match outcome {
            Ok((spool, Ok(deltas))) => {
                self.spool = spool;
                self.publish(deltas, head, registers);
                for Accepted { reply, response } in accepted {
                    let _ = reply.send(Ok(response));
                }
                return;
            }
            Ok((spool, Err(GroupError::Undone(err)))) => {
                self.spool = spool;
                tracing::warn!(journal, error = %err, "append failed and was undone");
                err
            }
            Ok((_, Err(GroupError::Fatal(err)))) => {
                self.fail(&err);
                err
            }
            Err(panicked) => {
                let err = io::Error::other(format!("the write thread failed: {panicked}"));
                self.fail(&err);
                err
            }
        };
        for Accepted { reply, .. } in accepted {
            let _ = reply.send(Err(BrokerError::Io {
                context: format!("append to {journal}"),
                source: io::Error::new(failure.kind(), failure.to_string()),
            }));
        }
    }

    fn publish(&mut self, deltas: Vec<IndexDelta>, head: i64, registers: LabelSet) {
        {
            let mut fragments = write(&self.shared.fragments);
            for delta in deltas {
                match delta.new_file {
                    Some(file) => fragments.push(Fragment {
                        begin: delta.begin,
                        end: delta.end,
                        file,
                        marks: delta.marks,
                    }),
                    None => {
                        if let Some(last) = fragments.last_mut().filter(|f| f.begin == delta.begin)
                        {
                            last.end = delta.end;
                            last.marks.extend(delta.marks);
                        }
                    }
                }
            }
        }
        *lock(&self.shared.registers) = registers.clone();
        self.registers = registers;
        self.head = head;
        self.shared
            .committed
            .send_modify(|committed| committed.head = head);
    }

    fn fail(&mut self, err: &io::Error) {
        tracing::error!(
            journal = self.shared.name.as_str(),
            error = %err,
            "journal stopped: a write, fsync or rename failed and is never retried"
        );
        self.spool = None;
        self.shared.set_health(Health::Failed {
            kind: err.kind(),
            reason: err.to_string(),
        });
    }
}

/// Checks one append against the state the earlier appends of its group
/// leave. `Ok(None)` is a barrier; `Ok(Some((registers, text)))` an append
/// that leaves `registers`, with `text` set when they changed.
fn plan(
    journal: &str,
    may_append: bool,
    request: &AppendRequest,
    head: i64,
    registers: &LabelSet,
) -> Result<Option<(LabelSet, Option<String>)>, BrokerError> {
    if !may_append {
        return Err(BrokerError::NotAllowed {
            journal: journal.to_string(),
            reason: "the journal is read-only (flags O_RDONLY): appends are refused".into(),
        });
    }
    if let Some(expected) = request.expect_offset
        && expected != head
    {
        return Err(BrokerError::WrongAppendOffset {
            journal: journal.to_string(),
            expected,
            write_head: head,
        });
    }
    if let Some(selector) = &request.check_registers
        && !registers.is_empty()
        && !selector.matches(registers)
    {
        return Err(BrokerError::RegisterMismatch {
            journal: journal.to_string(),
            registers: registers.clone(),
        });
    }
    if request.content.is_empty() {
        return Ok(None);
    }
    let updated = request
        .union_registers
        .union(&registers.subtract(&request.subtract_registers));
    if updated == *registers {
        return Ok(Some((updated, None)));
    }
    let text = updated.to_string();
    if text.len() > MAX_REGISTERS_LEN {
        return Err(BrokerError::LimitExceeded(format!(
            "registers of {journal} would take {} bytes (limit {MAX_REGISTERS_LEN})",
            text.len()
        )));
    }
    Ok(Some((updated, Some(text))))
}

/// Writes a group and makes it durable (runs on a blocking thread).
fn write_group(
    backend: &dyn Backend,
    dir: &Path,
    mut spool: Option<Spool>,
    writes: &[PlannedWrite],
    roll_at: u64,
) -> (Option<Spool>, Result<Vec<IndexDelta>, GroupError>) {
    let undo = spool.as_ref().map(|s| (s.file.len(), s.end, s.last_mark));
    let mut deltas = Vec::new();
    let mut buf = Vec::new();
    let mut dir_dirty = false;
    let mut rolled = false;
    macro_rules! fatal {
        ($result:expr) => {
            match $result {
                Ok(value) => value,
                Err(err) => return (None, Err(GroupError::Fatal(err))),
            }
        };
    }
    for write in writes {
        if let Some(mut full) =
            spool.take_if(|s| s.end > s.begin && s.file.len() + buf.len() as u64 >= roll_at)
        {
            fatal!(full.file.append(&buf));
            buf.clear();
            fatal!(full.file.sync_data());
            let closed = FragmentFile::Closed {
                begin: full.begin,
                end: full.end,
            };
            fatal!(backend.rename(&full.path, &dir.join(closed.file_name())));
            deltas.push(full.delta());
            dir_dirty = true;
            rolled = true;
        }
        let current = match spool.as_mut() {
            Some(current) => current,
            None => {
                let path = dir.join(FragmentFile::Spool { begin: write.begin }.file_name());
                let file = fatal!(backend.create_append(&path));
                let reader = fatal!(backend.open_read(&path));
                let created =
                    Spool::reopened(write.begin, write.begin, path, file, reader, false, None);
                spool.insert(Spool {
                    entry_synced: false,
                    ..created
                })
            }
        };
        dir_dirty |= !current.entry_synced;
        let flushed = current.file.len();
        let (last_mark, new_marks) = (&mut current.last_mark, &mut current.new_marks);
        encode_append(
            &mut buf,
            write.begin,
            &write.content,
            write.registers.as_deref(),
            |pos, offset| {
                let file_pos = flushed + pos as u64;
                if last_mark.is_none_or(|mark| file_pos - mark >= MARK_INTERVAL) {
                    new_marks.push((offset, file_pos));
                    *last_mark = Some(file_pos);
                }
            },
        );
        current.end = write.begin + write.content.len() as i64;
    }
    let Some(current) = spool.as_mut() else {
        return (
            None,
            Err(GroupError::Fatal(io::Error::other(
                "no spool after a group",
            ))),
        );
    };
    if let Err(err) = current.file.append(&buf) {
        if rolled {
            return (None, Err(GroupError::Fatal(err)));
        }
        let (len, end, last_mark) = undo.unwrap_or((0, current.begin, None));
        fatal!(current.file.truncate(len));
        current.end = end;
        current.last_mark = last_mark;
        current.new_marks.clear();
        if current.end > current.begin {
            // Readers may hold the failed bytes in their buffers: close this
            // spool at its committed end and never write these positions again.
            fatal!(current.file.sync_data());
            let closed = FragmentFile::Closed {
                begin: current.begin,
                end: current.end,
            };
            fatal!(backend.rename(&current.path, &dir.join(closed.file_name())));
            fatal!(backend.sync_dir(dir));
            return (None, Err(GroupError::Undone(err)));
        }
        return (spool, Err(GroupError::Undone(err)));
    }
    fatal!(current.file.sync_data());
    if dir_dirty {
        fatal!(backend.sync_dir(dir));
        current.entry_synced = true;
    }
    deltas.push(current.delta());
    (spool, Ok(deltas))
}
