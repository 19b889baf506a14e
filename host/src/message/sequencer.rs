//! The read-committed sequencer (Gazette's `message/sequencer.go`): turns the
//! messages of journals, read in order and *uncommitted*, into the committed
//! messages, each exactly once.
//!
//! State is kept per (journal, producer), a *partial*: `min_clock` (everything
//! at or below it was processed or discarded), `max_clock` (highest pending
//! clock) and `begin` (offset of the first pending `CONTINUE_TXN`, or -1).
//! Pending messages wait in a fixed-size ring of envelopes; an `ACK_TXN`
//! commits its producer's pending messages with clocks up to its own and
//! rolls back the rest. Every decision is a [`QueueOutcome`].
//!
//! Usage, one message at a time:
//!
//! 1. [`Sequencer::queue_uncommitted`] the next envelope read from a journal;
//! 2. if it committed something, call [`Sequencer::step`] until it returns
//!    [`Step::Idle`]: each [`Step::Message`] is the next committed envelope,
//!    in journal order, *including the ACK itself* (callers filter ACKs);
//! 3. if the committed run fell out of the ring ([`QueueOutcome::AckCommitReplay`],
//!    always the case right after recovery), `step` returns
//!    [`Step::NeedReplay`]: read the journal over [`Sequencer::replay_range`]
//!    and hand each envelope to [`Sequencer::push_replay`], then `None` at
//!    the end of the range.
//!
//! An envelope returned by `step` counts as processed from then on: a
//! [`Sequencer::checkpoint`] taken afterwards never delivers it again after
//! recovery. Offsets follow Gazette exactly:
//!
//! - a pending `CONTINUE_TXN` advances the journal's read-through offset at
//!   once (`ProducerState::begin` remembers where its span starts);
//! - a committing message does *not* advance it until its whole run has been
//!   dequeued, so a checkpoint taken mid-run re-reads the ACK on recovery and
//!   replays only the unprocessed tail (`last_ack` = clock of the last
//!   processed message, `begin` = where the rest starts).
//!
//! Messages with a zero clock (no UUID) bypass de-duplication and are
//! delivered as committed.
//!
//! ```
//! use std::sync::Arc;
//! use weir::message::{build_uuid, Clock, Envelope, Flags, ProducerId, QueueOutcome};
//! use weir::message::{Sequencer, Step};
//!
//! let mut seq = Sequencer::new(16);
//! let p = ProducerId([1; 6]);
//! let env = |begin: i64, clock: u64, flags| {
//!     let uuid = build_uuid(p, Clock(clock << 4), flags);
//!     Envelope::new(Arc::from("j"), begin, begin + 10, uuid, Default::default())
//! };
//! let outcome = seq.queue_uncommitted(env(0, 1, Flags::ContinueTxn)).unwrap();
//! assert_eq!(outcome, QueueOutcome::ContinueBeginSpan);
//! let outcome = seq.queue_uncommitted(env(10, 2, Flags::AckTxn)).unwrap();
//! assert_eq!(outcome, QueueOutcome::AckCommitRing);
//! let mut out = Vec::new();
//! while let Step::Message(env) = seq.step().unwrap() {
//!     out.push(env.begin);
//! }
//! assert_eq!(out, [0, 10]); // the message, then its ACK
//! ```

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Duration;

use crate::consumer::{ProducerState, SourceCheckpoint};

use super::envelope::Envelope;
use super::uuid::{Clock, Flags, ProducerId};

/// What [`Sequencer::queue_uncommitted`] decided about an envelope.
///
/// "Expected" below means: happens in normal operation of at-least-once
/// journals (retried appends, recoveries), not only after a bug or data loss.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum QueueOutcome {
    /// An `OUTSIDE_TXN` message at or below the producer's last processed
    /// clock: a duplicate, ignored. Expected (a retried append).
    OutsideAlreadyAcked,
    /// An `OUTSIDE_TXN` message that commits itself; dequeue it with `step`.
    /// If the producer had a pending span, it is discarded (mixed use of
    /// committed and uncommitted publishing, logged as an error). Expected.
    OutsideCommit,
    /// A `CONTINUE_TXN` message at or below the last processed clock: a
    /// duplicate, ignored. Expected (a retried append, a re-read after
    /// recovery).
    ContinueAlreadyAcked,
    /// A `CONTINUE_TXN` message not above the span's highest pending clock: a
    /// duplicate within the pending span, ignored. Expected (a retried append).
    ContinueTxnClockLarger,
    /// A `CONTINUE_TXN` message that starts a pending span. Expected.
    ContinueBeginSpan,
    /// A `CONTINUE_TXN` message that extends the pending span. Expected.
    ContinueExtendSpan,
    /// An `ACK_TXN` at or below the last processed clock: the producer rolls
    /// back to it and its pending span is discarded. Equal to the last ACK it
    /// is expected (a duplicate ACK, or a recovered producer re-sending its
    /// last ACK to roll back an abandoned transaction). *Below* it, the
    /// producer recovered an older checkpoint: delivery of its messages in
    /// between regresses to at-least-once; logged as an error.
    AckRollback,
    /// An `ACK_TXN` with nothing pending: dequeue just the ACK. Expected.
    AckEmpty,
    /// An `ACK_TXN` whose committed run is all in the ring: dequeue it.
    /// Expected.
    AckCommitRing,
    /// An `ACK_TXN` whose committed run has (partly) left the ring: `step`
    /// asks for a replay of [`Sequencer::replay_range`] first. Expected, and
    /// always the case for a span that began before a recovery.
    AckCommitReplay,
}

impl QueueOutcome {
    /// Whether the outcome committed messages that `step` will now dequeue.
    pub fn commits(self) -> bool {
        match self {
            QueueOutcome::OutsideCommit
            | QueueOutcome::AckEmpty
            | QueueOutcome::AckCommitRing
            | QueueOutcome::AckCommitReplay => true,
            QueueOutcome::OutsideAlreadyAcked
            | QueueOutcome::ContinueAlreadyAcked
            | QueueOutcome::ContinueTxnClockLarger
            | QueueOutcome::ContinueBeginSpan
            | QueueOutcome::ContinueExtendSpan
            | QueueOutcome::AckRollback => false,
        }
    }
}

/// What [`Sequencer::step`] has next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The next committed envelope. It counts as processed from now on.
    Message(Envelope),
    /// A replay is needed: feed envelopes of [`Sequencer::replay_range`] to
    /// [`Sequencer::push_replay`].
    NeedReplay,
    /// Nothing is left to dequeue: queue the next envelope.
    Idle,
}

/// The journal range a replay must read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayRange {
    /// Journal to read.
    pub journal: Arc<str>,
    /// First offset to read.
    pub begin: i64,
    /// Offset to stop at (exclusive).
    pub end: i64,
}

/// Misuse of the sequencer, or a replay that does not match its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SequencerError {
    /// `queue_uncommitted` was called while committed messages remain to
    /// dequeue.
    #[error("committed messages remain to dequeue")]
    NotDrained,
    /// `push_replay` was called when no replay envelope was asked for.
    #[error("no replay is waiting for an envelope")]
    NotReplaying,
    /// One sequencer reads at most 65536 journals.
    #[error("too many journals for one sequencer (at most {max})")]
    TooManyJournals {
        /// The limit.
        max: usize,
    },
    /// A replayed envelope came from another journal.
    #[error("replay of journal {got}, expected {expected}")]
    ReplayWrongJournal {
        /// The journal being replayed.
        expected: Arc<str>,
        /// The envelope's journal.
        got: Arc<str>,
    },
    /// A replayed envelope lies outside the replay range.
    #[error(
        "replayed envelope [{begin}, {end}) of {journal} is outside [{range_begin}, {range_end})"
    )]
    ReplayOutOfRange {
        /// The journal being replayed.
        journal: Arc<str>,
        /// The envelope's begin.
        begin: i64,
        /// The envelope's end.
        end: i64,
        /// The range's begin.
        range_begin: i64,
        /// The range's end.
        range_end: i64,
    },
}

const NIL: usize = usize::MAX;
const MAX_JOURNALS: usize = 1 << 16;

/// Partials are keyed by `journal index << 48 | producer` (see
/// [`ProducerId::as_u64`]), hashed with one multiply.
type PartialKey = u64;

fn partial_key(journal: u16, producer: ProducerId) -> PartialKey {
    u64::from(journal) << 48 | producer.as_u64()
}

fn key_producer(key: PartialKey) -> ProducerId {
    let b = key.to_be_bytes();
    ProducerId([b[2], b[3], b[4], b[5], b[6], b[7]])
}

#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing; the map uses the high bits of the result.
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Partials = HashMap<PartialKey, Partial, BuildHasherDefault<KeyHasher>>;

/// Sequencing state of one (journal, producer).
#[derive(Clone, Copy, Debug)]
struct Partial {
    /// Exclusive lower bound: clocks at or below it are processed or discarded.
    min_clock: Clock,
    /// Highest pending clock (or, while a run is dequeued, the committing clock).
    max_clock: Clock,
    /// Offset where the pending span (or the unprocessed rest of a committed
    /// run) begins, or -1.
    begin: i64,
    /// Ring index of the span's oldest entry still in the ring, or NIL.
    ring_start: usize,
    /// Ring index of the span's newest entry, or NIL.
    ring_stop: usize,
}

impl Partial {
    fn idle(clock: Clock, begin: i64) -> Partial {
        Partial {
            min_clock: clock,
            max_clock: clock,
            begin,
            ring_start: NIL,
            ring_stop: NIL,
        }
    }
}

/// One ring entry. `env` is taken when the entry is dequeued.
struct Slot {
    env: Option<Envelope>,
    /// Owning partial, or None for a zero-clock envelope.
    key: Option<PartialKey>,
    begin: i64,
    clock: Clock,
    /// Next ring entry of the same partial, or NIL.
    next: usize,
    /// Whether the slot still holds an entry that eviction must account for.
    live: bool,
}

struct JournalState {
    name: Arc<str>,
    /// Read-through offset.
    offset: i64,
    /// `offset` as of the last checkpoint (for `has_pending`).
    checkpointed: i64,
}

/// The committed run being dequeued.
struct Emit {
    journal: u16,
    /// The owning partial, or None for a zero-clock envelope (whose partial
    /// lives in `zero`, as it is never indexed).
    key: Option<PartialKey>,
    zero: Partial,
    /// End of the committing envelope: the read-through offset once drained.
    commit_end: i64,
    replay: Replay,
}

enum Replay {
    /// Dequeue from the ring.
    Off,
    /// `step` asked for the next replayed envelope.
    Waiting,
    /// `push_replay` gave one.
    Ready(Envelope),
    /// The replay ended; continue with the ring.
    Finished,
}

/// Read-committed sequencing of one shard's source journals. See the module
/// docs.
pub struct Sequencer {
    journals: Vec<JournalState>,
    journal_index: HashMap<Arc<str>, u16>,
    /// The journal of the last envelope (readers reuse one `Arc` per journal).
    last_journal: Option<(Arc<str>, u16)>,
    partials: Partials,
    ring: Ring,
    emit: Option<Emit>,
}

/// The fixed-size ring of envelopes, filled in order and overwritten oldest
/// first.
struct Ring {
    slots: Vec<Slot>,
    size: usize,
    /// Next index to write.
    head: usize,
}

impl Sequencer {
    /// An empty sequencer with a ring of `ring_size` envelopes (at least 1).
    pub fn new(ring_size: usize) -> Sequencer {
        let ring_size = ring_size.max(1);
        Sequencer {
            journals: Vec::new(),
            journal_index: HashMap::new(),
            last_journal: None,
            partials: Partials::default(),
            ring: Ring {
                slots: Vec::with_capacity(ring_size),
                size: ring_size,
                head: 0,
            },
            emit: None,
        }
    }

    /// A sequencer resuming from a checkpoint: `offsets` are the journals'
    /// read-through offsets (where reading resumes), `sources` the
    /// checkpointed producer states. A journal only in `sources` resumes at
    /// its checkpointed `read_through`.
    pub fn recover(
        ring_size: usize,
        offsets: impl IntoIterator<Item = (Arc<str>, i64)>,
        sources: &BTreeMap<String, SourceCheckpoint>,
    ) -> Result<Sequencer, SequencerError> {
        let mut seq = Sequencer::new(ring_size);
        for (journal, offset) in offsets {
            let index = seq.journal(&journal, offset)?;
            let state = &mut seq.journals[usize::from(index)];
            state.offset = offset;
            state.checkpointed = offset;
        }
        for (journal, source) in sources {
            let index = seq.journal(&Arc::from(journal.as_str()), source.read_through)?;
            for state in &source.producers {
                let key = partial_key(index, ProducerId(state.producer));
                seq.partials
                    .insert(key, Partial::idle(Clock(state.last_ack), state.begin));
            }
        }
        Ok(seq)
    }

    /// The index of `journal`, registering it (read through `offset`) if new.
    fn journal(&mut self, journal: &Arc<str>, offset: i64) -> Result<u16, SequencerError> {
        if let Some((name, index)) = &self.last_journal
            && (Arc::ptr_eq(name, journal) || **name == **journal)
        {
            return Ok(*index);
        }
        let index = match self.journal_index.get(journal) {
            Some(&index) => index,
            None => {
                let index = u16::try_from(self.journals.len())
                    .map_err(|_| SequencerError::TooManyJournals { max: MAX_JOURNALS })?;
                self.journals.push(JournalState {
                    name: journal.clone(),
                    offset,
                    checkpointed: offset,
                });
                self.journal_index.insert(journal.clone(), index);
                index
            }
        };
        self.last_journal = Some((journal.clone(), index));
        Ok(index)
    }

    /// Applies the next envelope read (uncommitted, in journal order) from
    /// its journal. See [`QueueOutcome`] for the decisions.
    pub fn queue_uncommitted(&mut self, env: Envelope) -> Result<QueueOutcome, SequencerError> {
        if self.emit.is_some() {
            return Err(SequencerError::NotDrained);
        }
        let journal = self.journal(&env.journal, env.begin)?;
        self.ring.evict_head(&mut self.partials);

        if env.clock.is_zero() {
            // No UUID: committed at once, never indexed. A synthetic clock of
            // 1 lets it pass the dequeue bounds.
            let mut zero = Partial::idle(Clock::ZERO, env.begin);
            zero.max_clock = Clock(1);
            let commit_end = env.end;
            self.ring.add(env, None, &mut zero);
            self.emit = Some(Emit {
                journal,
                key: None,
                zero,
                commit_end,
                replay: Replay::Off,
            });
            return Ok(QueueOutcome::OutsideCommit);
        }

        let key = partial_key(journal, env.producer);
        let clock = env.clock;
        let partial = self
            .partials
            .entry(key)
            .or_insert_with(|| Partial::idle(Clock(clock.0 - 1), -1));

        // Decide first; mutate below.
        let outcome = match env.flags {
            Flags::OutsideTxn if clock <= partial.min_clock => QueueOutcome::OutsideAlreadyAcked,
            Flags::OutsideTxn => {
                if partial.begin != -1 {
                    log_error(
                        &env,
                        partial,
                        "OUTSIDE_TXN after a pending CONTINUE_TXN (mixed committed and uncommitted publishing?); discarding the pending span",
                    );
                }
                QueueOutcome::OutsideCommit
            }
            Flags::ContinueTxn if clock <= partial.min_clock => QueueOutcome::ContinueAlreadyAcked,
            Flags::ContinueTxn if clock <= partial.max_clock => {
                QueueOutcome::ContinueTxnClockLarger
            }
            Flags::ContinueTxn if partial.begin == -1 => QueueOutcome::ContinueBeginSpan,
            Flags::ContinueTxn => QueueOutcome::ContinueExtendSpan,
            Flags::AckTxn if clock < partial.min_clock => {
                log_error(
                    &env,
                    partial,
                    "ACK_TXN below the last ACK (the producer recovered an older checkpoint): loss of exactly-once",
                );
                QueueOutcome::AckRollback
            }
            Flags::AckTxn if clock == partial.min_clock => QueueOutcome::AckRollback,
            Flags::AckTxn if partial.begin == -1 => QueueOutcome::AckEmpty,
            // The whole span is in the ring iff its oldest in-ring entry is
            // where the span begins.
            Flags::AckTxn
                if self
                    .ring
                    .slots
                    .get(partial.ring_start)
                    .map(|slot| slot.begin)
                    == Some(partial.begin) =>
            {
                QueueOutcome::AckCommitRing
            }
            Flags::AckTxn => QueueOutcome::AckCommitReplay,
        };

        let journal_state = &mut self.journals[usize::from(journal)];
        match outcome {
            QueueOutcome::OutsideAlreadyAcked
            | QueueOutcome::ContinueAlreadyAcked
            | QueueOutcome::ContinueTxnClockLarger => {
                journal_state.offset = env.end;
            }
            QueueOutcome::AckRollback => {
                journal_state.offset = env.end;
                *partial = Partial::idle(clock, -1);
            }
            QueueOutcome::ContinueBeginSpan | QueueOutcome::ContinueExtendSpan => {
                journal_state.offset = env.end;
                if outcome == QueueOutcome::ContinueBeginSpan {
                    partial.begin = env.begin;
                }
                partial.max_clock = clock;
                self.ring.add(env, Some(key), partial);
            }
            QueueOutcome::OutsideCommit
            | QueueOutcome::AckEmpty
            | QueueOutcome::AckCommitRing
            | QueueOutcome::AckCommitReplay => {
                // The read-through offset stays put until the run is drained,
                // so that a checkpoint taken meanwhile re-reads this envelope.
                let commit_end = env.end;
                let begin = env.begin;
                self.ring.add(env, Some(key), partial);
                match outcome {
                    QueueOutcome::AckEmpty => partial.begin = begin,
                    QueueOutcome::OutsideCommit => {
                        // Clobber any pending span: this envelope is the run.
                        partial.begin = begin;
                        partial.ring_start = partial.ring_stop;
                    }
                    _ => {}
                }
                // Commit through `clock`, which may be below the span's
                // highest clock: those above it are rolled back.
                partial.max_clock = clock;
                let replay = if outcome == QueueOutcome::AckCommitReplay {
                    Replay::Waiting
                } else {
                    Replay::Off
                };
                self.emit = Some(Emit {
                    journal,
                    key: Some(key),
                    zero: Partial::idle(Clock::ZERO, -1),
                    commit_end,
                    replay,
                });
            }
        }
        Ok(outcome)
    }

    /// The next committed envelope, a request for replayed envelopes, or
    /// `Idle`. See [`Step`].
    pub fn step(&mut self) -> Result<Step, SequencerError> {
        loop {
            let Some(emit) = self.emit.as_mut() else {
                return Ok(Step::Idle);
            };
            match std::mem::replace(&mut emit.replay, Replay::Off) {
                Replay::Waiting => {
                    emit.replay = Replay::Waiting;
                    return Ok(Step::NeedReplay);
                }
                Replay::Ready(env) => {
                    emit.replay = Replay::Waiting;
                    if let Some(env) = self.accept_replayed(env)? {
                        return Ok(Step::Message(env));
                    }
                }
                Replay::Finished | Replay::Off => return Ok(self.step_ring()),
            }
        }
    }

    /// Hands `step` the next envelope of the replay range, or `None` at its
    /// end. Only valid after `step` returned [`Step::NeedReplay`].
    pub fn push_replay(&mut self, env: Option<Envelope>) -> Result<(), SequencerError> {
        match self.emit.as_mut() {
            Some(emit) if matches!(emit.replay, Replay::Waiting) => {
                emit.replay = match env {
                    Some(env) => Replay::Ready(env),
                    None => Replay::Finished,
                };
                Ok(())
            }
            _ => Err(SequencerError::NotReplaying),
        }
    }

    /// The range to replay while `step` asks for one: from where the
    /// committed run's unprocessed part begins, to the first of its envelopes
    /// still in the ring.
    pub fn replay_range(&self) -> Option<ReplayRange> {
        let emit = self.emit.as_ref()?;
        if !matches!(emit.replay, Replay::Waiting | Replay::Ready(_)) {
            return None;
        }
        let partial = self.emit_partial_ref(emit)?;
        let end = self.ring.slots.get(partial.ring_start)?.begin;
        Some(ReplayRange {
            journal: self.journals[usize::from(emit.journal)].name.clone(),
            begin: partial.begin,
            end,
        })
    }

    /// Whether some producer began a pending span at or after the offsets of
    /// the last checkpoint: a hint that an ACK (and so more committed
    /// messages) is on its way.
    pub fn has_pending(&self) -> bool {
        self.partials.iter().any(|(key, partial)| {
            let journal = &self.journals[(key >> 48) as usize];
            partial.begin != -1 && partial.begin >= journal.checkpointed
        })
    }

    /// Read-through offsets and producer states of every journal, for a
    /// consumer checkpoint. Producers whose newest clock is more than
    /// `prune_horizon` older than the newest processed clock of their
    /// journal are dropped (never the one being dequeued); a zero horizon
    /// prunes nothing. Producers are sorted by id.
    pub fn checkpoint(&mut self, prune_horizon: Duration) -> BTreeMap<String, SourceCheckpoint> {
        let horizon = u64::try_from(prune_horizon.as_nanos() / 100).unwrap_or(u64::MAX);
        let horizon = horizon.saturating_mul(16);
        if horizon > 0 {
            let mut newest = vec![Clock::ZERO; self.journals.len()];
            for (key, partial) in &self.partials {
                let n = &mut newest[(key >> 48) as usize];
                *n = (*n).max(partial.min_clock);
            }
            let emitting = self.emit.as_ref().and_then(|emit| emit.key);
            self.partials.retain(|key, partial| {
                let threshold = newest[(key >> 48) as usize].0.saturating_sub(horizon);
                Some(*key) == emitting || partial.max_clock.0 >= threshold
            });
        }

        let mut out: BTreeMap<String, SourceCheckpoint> = self
            .journals
            .iter_mut()
            .map(|journal| {
                journal.checkpointed = journal.offset;
                let source = SourceCheckpoint {
                    read_through: journal.offset,
                    producers: Vec::new(),
                };
                (journal.name.to_string(), source)
            })
            .collect();
        for (key, partial) in &self.partials {
            let name = &self.journals[(key >> 48) as usize].name;
            if let Some(source) = out.get_mut(&**name) {
                source.producers.push(ProducerState {
                    producer: key_producer(*key).0,
                    last_ack: partial.min_clock.0,
                    begin: partial.begin,
                });
            }
        }
        for source in out.values_mut() {
            source.producers.sort_by_key(|state| state.producer);
        }
        out
    }

    /// Dequeues the next deliverable ring entry of the run, and finishes the
    /// run once none is left.
    fn step_ring(&mut self) -> Step {
        let Some(emit) = self.emit.as_mut() else {
            return Step::Idle;
        };
        let partial = match emit.key {
            Some(key) => match self.partials.get_mut(&key) {
                Some(partial) => partial,
                None => {
                    // Unreachable: the emitting partial is never pruned.
                    self.emit = None;
                    return Step::Idle;
                }
            },
            None => &mut emit.zero,
        };
        skip_undeliverable(&mut self.ring.slots, partial);
        let index = partial.ring_start;
        let delivered = match self.ring.slots.get_mut(index) {
            Some(slot) => {
                partial.ring_start = slot.next;
                slot.env.take()
            }
            None => None,
        };
        if let Some(env) = &delivered {
            partial.min_clock = env.clock;
            partial.begin = env.end;
            skip_undeliverable(&mut self.ring.slots, partial);
        }
        if partial.ring_start == NIL {
            // The run is drained (eagerly, so that a checkpoint taken right
            // after its last envelope already reads past it).
            let min_clock = partial.min_clock;
            *partial = Partial::idle(min_clock, -1);
            self.journals[usize::from(emit.journal)].offset = emit.commit_end;
            self.emit = None;
        }
        match delivered {
            Some(env) => Step::Message(env),
            None => Step::Idle,
        }
    }

    /// Checks a replayed envelope against the range and the partial's
    /// bounds; returns it if it is to be delivered.
    fn accept_replayed(&mut self, env: Envelope) -> Result<Option<Envelope>, SequencerError> {
        let Some(emit) = self.emit.as_ref() else {
            return Ok(None);
        };
        let journal = &self.journals[usize::from(emit.journal)].name;
        if env.journal != *journal {
            return Err(SequencerError::ReplayWrongJournal {
                expected: journal.clone(),
                got: env.journal,
            });
        }
        let Some(key) = emit.key else {
            return Ok(None);
        };
        let Some(partial) = self.partials.get_mut(&key) else {
            return Ok(None);
        };
        let range_end = self
            .ring
            .slots
            .get(partial.ring_start)
            .map_or(i64::MAX, |slot| slot.begin);
        if env.begin < partial.begin || env.end > range_end {
            return Err(SequencerError::ReplayOutOfRange {
                journal: journal.clone(),
                begin: env.begin,
                end: env.end,
                range_begin: partial.begin,
                range_end,
            });
        }
        // The range holds other producers' messages and duplicates; skip them.
        if env.producer != key_producer(key)
            || env.clock <= partial.min_clock
            || env.clock > partial.max_clock
        {
            return Ok(None);
        }
        partial.min_clock = env.clock;
        partial.begin = env.end;
        Ok(Some(env))
    }

    fn emit_partial_ref<'a>(&'a self, emit: &'a Emit) -> Option<&'a Partial> {
        match emit.key {
            Some(key) => self.partials.get(&key),
            None => Some(&emit.zero),
        }
    }
}

impl Ring {
    /// Writes `env` at the head and links it after `partial`'s newest entry.
    fn add(&mut self, env: Envelope, key: Option<PartialKey>, partial: &mut Partial) {
        let head = self.head;
        let slot = Slot {
            begin: env.begin,
            clock: env.clock,
            env: Some(env),
            key,
            next: NIL,
            live: true,
        };
        if self.slots.len() < self.size {
            self.slots.push(slot);
        } else {
            self.slots[head] = slot;
        }
        if partial.ring_stop == NIL {
            partial.ring_start = head;
        } else if let Some(prev) = self.slots.get_mut(partial.ring_stop) {
            prev.next = head;
        }
        partial.ring_stop = head;
        self.head = (head + 1) % self.size;
    }

    /// Frees the slot about to be overwritten, unlinking it from the
    /// partial whose oldest in-ring entry it is.
    fn evict_head(&mut self, partials: &mut Partials) {
        if self.slots.len() < self.size {
            return; // Still filling.
        }
        let head = self.head;
        let slot = &mut self.slots[head];
        if !slot.live {
            return;
        }
        let next = slot.next;
        let key = slot.key;
        slot.env = None;
        slot.key = None;
        slot.next = NIL;
        slot.live = false;
        if let Some(partial) = key.and_then(|key| partials.get_mut(&key))
            && partial.ring_start == head
        {
            if next == NIL {
                partial.ring_start = NIL;
                partial.ring_stop = NIL;
            } else {
                partial.ring_start = next;
            }
        }
    }
}

/// Advances `partial.ring_start` past entries that must not be delivered:
/// clocks above the committing one (rolled back), and clocks at or below the
/// last processed one (only possible with malformed input, e.g. a CONTINUE
/// and its ACK sharing a clock).
fn skip_undeliverable(ring: &mut [Slot], partial: &mut Partial) {
    while let Some(slot) = ring.get_mut(partial.ring_start) {
        let clock = slot.clock;
        let stale = !clock.is_zero() && clock <= partial.min_clock;
        if !stale && clock <= partial.max_clock && slot.env.is_some() {
            return;
        }
        partial.ring_start = slot.next;
        slot.env = None;
    }
}

fn log_error(env: &Envelope, partial: &Partial, message: &str) {
    tracing::error!(
        journal = %env.journal,
        begin = env.begin,
        end = env.end,
        producer = %env.producer,
        clock = env.clock.0,
        flags = %env.flags,
        min_clock = partial.min_clock.0,
        max_clock = partial.max_clock.0,
        partial_begin = partial.begin,
        "{message}"
    );
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::message::testing::envelope;
    use proptest::prelude::*;

    const P: ProducerId = ProducerId([1, 0, 0, 0, 0, 1]);
    const Q: ProducerId = ProducerId([1, 0, 0, 0, 0, 2]);

    /// Builds a journal of 10-byte messages; `add` returns the envelope it
    /// appended.
    struct Journal {
        name: Arc<str>,
        envs: Vec<Envelope>,
    }

    impl Journal {
        fn new(name: &str) -> Journal {
            Journal {
                name: Arc::from(name),
                envs: Vec::new(),
            }
        }
        fn add(&mut self, producer: ProducerId, clock: u64, flags: Flags) -> Envelope {
            let begin = self.envs.len() as i64 * 10;
            let env = envelope(&self.name, begin, begin + 10, producer, clock << 4, flags);
            self.envs.push(env.clone());
            env
        }
        fn range(&self, begin: i64, end: i64) -> Vec<Envelope> {
            self.envs
                .iter()
                .filter(|e| e.begin >= begin && e.end <= end)
                .cloned()
                .collect()
        }
    }

    use Flags::{AckTxn as A, ContinueTxn as C, OutsideTxn as O};

    /// Steps until idle, serving replays from `journal`; returns
    /// (begin, clock >> 4) of each delivered envelope.
    fn drain(seq: &mut Sequencer, journal: &Journal) -> Vec<(i64, u64)> {
        let mut out = Vec::new();
        let mut replay: Option<std::vec::IntoIter<Envelope>> = None;
        loop {
            match seq.step().expect("step") {
                Step::Message(env) => out.push((env.begin, env.clock.0 >> 4)),
                Step::Idle => return out,
                Step::NeedReplay => {
                    let it = replay.get_or_insert_with(|| {
                        let range = seq.replay_range().expect("range");
                        assert_eq!(range.journal, journal.name);
                        journal.range(range.begin, range.end).into_iter()
                    });
                    seq.push_replay(it.next()).expect("push");
                }
            }
        }
    }

    fn queue(seq: &mut Sequencer, env: Envelope) -> QueueOutcome {
        seq.queue_uncommitted(env).expect("queue")
    }

    fn read_through(seq: &mut Sequencer, journal: &str) -> i64 {
        seq.checkpoint(Duration::ZERO)[journal].read_through
    }

    #[test]
    fn outside_messages_commit_once_and_duplicates_are_dropped() {
        let mut j = Journal::new("j");
        let mut seq = Sequencer::new(8);
        let m1 = j.add(P, 1, O);
        assert_eq!(queue(&mut seq, m1.clone()), QueueOutcome::OutsideCommit);
        assert_eq!(drain(&mut seq, &j), vec![(0, 1)]);
        assert_eq!(read_through(&mut seq, "j"), 10);
        // A retried append puts the same message in again.
        let dup = j.add(P, 1, O);
        assert_eq!(queue(&mut seq, dup), QueueOutcome::OutsideAlreadyAcked);
        assert_eq!(drain(&mut seq, &j), vec![]);
        assert_eq!(read_through(&mut seq, "j"), 20);
    }

    #[test]
    fn continue_messages_wait_for_their_ack_and_duplicates_are_dropped() {
        let mut j = Journal::new("j");
        let mut seq = Sequencer::new(8);
        assert_eq!(
            queue(&mut seq, j.add(P, 1, C)),
            QueueOutcome::ContinueBeginSpan
        );
        assert_eq!(
            queue(&mut seq, j.add(P, 2, C)),
            QueueOutcome::ContinueExtendSpan
        );
        assert_eq!(
            queue(&mut seq, j.add(P, 2, C)),
            QueueOutcome::ContinueTxnClockLarger
        );
        assert_eq!(drain(&mut seq, &j), vec![]);
        // Pending messages advance read-through at once.
        assert_eq!(read_through(&mut seq, "j"), 30);
        assert_eq!(queue(&mut seq, j.add(P, 3, A)), QueueOutcome::AckCommitRing);
        // The committing ACK does not, until its run is drained.
        let cp = seq.checkpoint(Duration::ZERO);
        assert_eq!(cp["j"].read_through, 30);
        assert_eq!(drain(&mut seq, &j), vec![(0, 1), (10, 2), (30, 3)]);
        assert_eq!(read_through(&mut seq, "j"), 40);

        // Duplicates of the committed messages and of the ACK.
        assert_eq!(
            queue(&mut seq, j.add(P, 2, C)),
            QueueOutcome::ContinueAlreadyAcked
        );
        assert_eq!(queue(&mut seq, j.add(P, 3, A)), QueueOutcome::AckRollback);
        assert_eq!(queue(&mut seq, j.add(P, 4, A)), QueueOutcome::AckEmpty);
        assert_eq!(drain(&mut seq, &j), vec![(60, 4)]);
    }

    #[test]
    fn a_resent_ack_rolls_back_the_abandoned_transaction() {
        let mut j = Journal::new("j");
        let mut seq = Sequencer::new(8);
        queue(&mut seq, j.add(P, 1, C));
        queue(&mut seq, j.add(P, 2, A));
        assert_eq!(drain(&mut seq, &j), vec![(0, 1), (10, 2)]);
        // The next transaction publishes, then the producer's shard crashes
        // before committing; its successor re-appends the last ACK.
        queue(&mut seq, j.add(P, 3, C));
        queue(&mut seq, j.add(P, 4, C));
        assert_eq!(queue(&mut seq, j.add(P, 2, A)), QueueOutcome::AckRollback);
        assert_eq!(drain(&mut seq, &j), vec![]);
        assert!(
            seq.checkpoint(Duration::ZERO)["j"]
                .producers
                .iter()
                .all(|s| s.begin == -1)
        );
        // A late duplicate of an abandoned message starts a span that no ACK
        // ever commits.
        assert_eq!(
            queue(&mut seq, j.add(P, 4, C)),
            QueueOutcome::ContinueBeginSpan
        );
        assert_eq!(drain(&mut seq, &j), vec![]);
    }

    #[test]
    fn an_ack_below_the_last_ack_is_accepted_as_at_least_once() {
        let mut j = Journal::new("j");
        let mut seq = Sequencer::new(8);
        queue(&mut seq, j.add(P, 1, C));
        queue(&mut seq, j.add(P, 2, A));
        assert_eq!(drain(&mut seq, &j), vec![(0, 1), (10, 2)]);
        queue(&mut seq, j.add(P, 3, C));
        queue(&mut seq, j.add(P, 4, A));
        assert_eq!(drain(&mut seq, &j), vec![(20, 3), (30, 4)]);
        // The producer's shard recovered an older checkpoint and re-sends
        // its ACK: the sequencer regresses to it...
        assert_eq!(queue(&mut seq, j.add(P, 2, A)), QueueOutcome::AckRollback);
        let cp = seq.checkpoint(Duration::ZERO);
        assert_eq!(cp["j"].producers[0].last_ack, 2 << 4);
        // ...so the redone transaction is delivered again.
        queue(&mut seq, j.add(P, 3, C));
        assert_eq!(queue(&mut seq, j.add(P, 4, A)), QueueOutcome::AckCommitRing);
        assert_eq!(drain(&mut seq, &j), vec![(50, 3), (60, 4)]);
    }

    #[test]
    fn interleaved_producers_commit_independently() {
        let mut j = Journal::new("j");
        let mut seq = Sequencer::new(8);
        queue(&mut seq, j.add(P, 1, C));
        queue(&mut seq, j.add(Q, 1, C));
        queue(&mut seq, j.add(P, 2, C));
        queue(&mut seq, j.add(Q, 2, C));
        assert_eq!(queue(&mut seq, j.add(Q, 3, A)), QueueOutcome::AckCommitRing);
        assert_eq!(drain(&mut seq, &j), vec![(10, 1), (30, 2), (40, 3)]);
        assert!(seq.has_pending(), "P's span is still open");
        // Q's commit must not move read-through past P's pending messages'
        // ends either; it is at the last message read.
        assert_eq!(read_through(&mut seq, "j"), 50);
        assert_eq!(queue(&mut seq, j.add(P, 3, A)), QueueOutcome::AckCommitRing);
        assert_eq!(drain(&mut seq, &j), vec![(0, 1), (20, 2), (50, 3)]);
    }

    #[test]
    fn messages_above_the_ack_clock_are_rolled_back() {
        let mut j = Journal::new("j");
        let mut seq = Sequencer::new(8);
        queue(&mut seq, j.add(P, 1, C));
        queue(&mut seq, j.add(P, 3, C));
        queue(&mut seq, j.add(P, 5, C));
        assert_eq!(queue(&mut seq, j.add(P, 4, A)), QueueOutcome::AckCommitRing);
        assert_eq!(drain(&mut seq, &j), vec![(0, 1), (10, 3), (30, 4)]);
        // Clock 5 was rolled back; a duplicate of it may be committed later.
        assert_eq!(
            queue(&mut seq, j.add(P, 5, C)),
            QueueOutcome::ContinueBeginSpan
        );
    }

    #[test]
    fn an_outside_message_clobbers_a_pending_span() {
        let mut j = Journal::new("j");
        let mut seq = Sequencer::new(8);
        queue(&mut seq, j.add(P, 1, C));
        assert_eq!(queue(&mut seq, j.add(P, 2, O)), QueueOutcome::OutsideCommit);
        assert_eq!(drain(&mut seq, &j), vec![(10, 2)]);
        assert_eq!(queue(&mut seq, j.add(P, 3, A)), QueueOutcome::AckEmpty);
        assert_eq!(drain(&mut seq, &j), vec![(20, 3)]);
    }

    #[test]
    fn zero_clock_messages_bypass_deduplication() {
        let mut j = Journal::new("j");
        let mut seq = Sequencer::new(2);
        for i in 0..3 {
            let env = j.add(ProducerId::default(), 0, O);
            assert_eq!(queue(&mut seq, env), QueueOutcome::OutsideCommit);
            assert_eq!(drain(&mut seq, &j), vec![(i * 10, 0)]);
        }
        assert_eq!(read_through(&mut seq, "j"), 30);
        assert!(seq.checkpoint(Duration::ZERO)["j"].producers.is_empty());
    }

    #[test]
    fn a_run_evicted_from_the_ring_is_replayed() {
        let mut j = Journal::new("j");
        let mut seq = Sequencer::new(2);
        queue(&mut seq, j.add(P, 1, C));
        queue(&mut seq, j.add(Q, 1, O));
        assert_eq!(drain(&mut seq, &j), vec![(10, 1)]);
        queue(&mut seq, j.add(P, 2, C));
        queue(&mut seq, j.add(P, 3, C));
        assert_eq!(
            queue(&mut seq, j.add(P, 4, A)),
            QueueOutcome::AckCommitReplay
        );
        assert_eq!(
            seq.replay_range(),
            Some(ReplayRange {
                journal: Arc::from("j"),
                begin: 0,
                end: 30
            })
        );
        // The replay holds Q's message too; it is skipped.
        assert_eq!(drain(&mut seq, &j), vec![(0, 1), (20, 2), (30, 3), (40, 4)]);
        assert_eq!(read_through(&mut seq, "j"), 50);
    }

    #[test]
    fn a_span_begun_before_recovery_is_replayed_after_it() {
        let mut j = Journal::new("j");
        let mut seq = Sequencer::new(8);
        queue(&mut seq, j.add(P, 1, C));
        queue(&mut seq, j.add(P, 2, C));
        let cp = seq.checkpoint(Duration::ZERO);
        assert_eq!(cp["j"].read_through, 20);
        // A new producer starts just below its first clock.
        assert_eq!(
            cp["j"].producers,
            vec![ProducerState {
                producer: P.0,
                last_ack: (1 << 4) - 1,
                begin: 0
            }]
        );

        let mut seq = Sequencer::recover(8, [(Arc::from("j"), 20)], &cp).expect("recover");
        // A retried append duplicates clock 2 after the checkpoint.
        queue(&mut seq, j.add(P, 2, C));
        queue(&mut seq, j.add(P, 3, C));
        assert_eq!(
            queue(&mut seq, j.add(P, 4, A)),
            QueueOutcome::AckCommitReplay
        );
        assert_eq!(seq.replay_range().map(|r| (r.begin, r.end)), Some((0, 20)));
        assert_eq!(drain(&mut seq, &j), vec![(0, 1), (10, 2), (30, 3), (40, 4)]);
    }

    #[test]
    fn a_checkpoint_mid_run_resumes_with_only_the_unprocessed_tail() {
        let mut j = Journal::new("j");
        let mut seq = Sequencer::new(8);
        for clock in 1..=3 {
            queue(&mut seq, j.add(P, clock, C));
        }
        queue(&mut seq, j.add(P, 4, A));
        let mut delivered = Vec::new();
        for _ in 0..2 {
            match seq.step().expect("step") {
                Step::Message(env) => delivered.push(env.begin),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(delivered, vec![0, 10]);
        let cp = seq.checkpoint(Duration::ZERO);
        // The ACK will be re-read; clock 2 was the last processed message and
        // the rest begins after it.
        assert_eq!(cp["j"].read_through, 30);
        assert_eq!(
            cp["j"].producers,
            vec![ProducerState {
                producer: P.0,
                last_ack: 2 << 4,
                begin: 20
            }]
        );

        let mut seq = Sequencer::recover(8, [(Arc::from("j"), 30)], &cp).expect("recover");
        let ack = j.envs[3].clone();
        assert_eq!(queue(&mut seq, ack), QueueOutcome::AckCommitReplay);
        assert_eq!(drain(&mut seq, &j), vec![(20, 3), (30, 4)]);
    }

    #[test]
    fn a_checkpoint_right_after_the_last_envelope_reads_past_the_run() {
        let mut j = Journal::new("j");
        let mut seq = Sequencer::new(8);
        queue(&mut seq, j.add(P, 1, C));
        queue(&mut seq, j.add(P, 2, A));
        assert!(matches!(seq.step(), Ok(Step::Message(_))));
        assert!(matches!(seq.step(), Ok(Step::Message(_))));
        // No further `step` yet: the run is already complete.
        assert_eq!(read_through(&mut seq, "j"), 20);
        assert!(queue(&mut seq, j.add(P, 3, C)) == QueueOutcome::ContinueBeginSpan);
    }

    #[test]
    fn has_pending_reports_spans_begun_since_the_last_checkpoint() {
        let mut j = Journal::new("j");
        let mut seq = Sequencer::new(8);
        assert!(!seq.has_pending());
        queue(&mut seq, j.add(P, 1, C));
        assert!(seq.has_pending());
        seq.checkpoint(Duration::ZERO);
        assert!(!seq.has_pending());
        queue(&mut seq, j.add(Q, 1, C));
        assert!(seq.has_pending());
        queue(&mut seq, j.add(Q, 2, A));
        drain(&mut seq, &j);
        assert!(!seq.has_pending());
    }

    #[test]
    fn checkpoints_prune_producers_idle_beyond_the_horizon() {
        let mut j = Journal::new("j");
        let mut seq = Sequencer::new(8);
        let hour = 3600 * 10_000_000; // 100 ns ticks
        queue(&mut seq, j.add(P, hour, O));
        drain(&mut seq, &j);
        queue(&mut seq, j.add(Q, 30 * hour, O));
        drain(&mut seq, &j);
        let kept = seq.checkpoint(Duration::from_secs(48 * 3600));
        assert_eq!(kept["j"].producers.len(), 2);
        let pruned = seq.checkpoint(Duration::from_secs(24 * 3600));
        assert_eq!(pruned["j"].producers.len(), 1);
        assert_eq!(pruned["j"].producers[0].producer, Q.0);
        // Pruned for good.
        assert_eq!(seq.checkpoint(Duration::ZERO)["j"].producers.len(), 1);
    }

    #[test]
    fn misuse_and_bad_replays_are_errors() {
        let mut j = Journal::new("j");
        let mut seq = Sequencer::new(1);
        assert_eq!(seq.push_replay(None), Err(SequencerError::NotReplaying));
        queue(&mut seq, j.add(P, 1, C));
        queue(&mut seq, j.add(P, 2, C));
        assert_eq!(
            queue(&mut seq, j.add(P, 3, A)),
            QueueOutcome::AckCommitReplay
        );
        assert_eq!(
            seq.queue_uncommitted(j.envs[0].clone()),
            Err(SequencerError::NotDrained)
        );
        assert_eq!(seq.step(), Ok(Step::NeedReplay));

        let other = envelope(&Arc::from("other"), 0, 10, P, 1 << 4, C);
        seq.push_replay(Some(other)).expect("push");
        assert!(matches!(
            seq.step(),
            Err(SequencerError::ReplayWrongJournal { .. })
        ));
        // The range is [0, 20); an envelope ending past it is rejected.
        seq.push_replay(Some(j.envs[2].clone())).expect("push");
        assert!(matches!(
            seq.step(),
            Err(SequencerError::ReplayOutOfRange { .. })
        ));
        // A correct replay still completes the run.
        assert_eq!(drain(&mut seq, &j), vec![(0, 1), (10, 2), (20, 3)]);
    }

    // --- Model-based property test ---------------------------------------

    /// What a producer does next, in its own order.
    #[derive(Clone, Debug)]
    enum Act {
        /// A new message with the next clock.
        Fresh(Flags),
        /// A retried append: its last `n` fresh messages again.
        Retry(usize),
        /// A message without a UUID.
        Zero,
        /// Recovery of its consumer shard: re-send its `k`-th latest ACK
        /// (0 = the last; more = an older checkpoint). The producer is dead
        /// afterwards apart from further re-sends.
        Resend(usize),
    }

    fn act() -> impl Strategy<Value = Act> {
        prop_oneof![
            6 => prop_oneof![Just(O), Just(C), Just(C), Just(C), Just(A)].prop_map(Act::Fresh),
            2 => (1usize..4).prop_map(Act::Retry),
            1 => Just(Act::Zero),
            1 => (0usize..3).prop_map(Act::Resend),
        ]
    }

    /// Builds journals from per-(journal, producer) scripts interleaved by
    /// `order`.
    fn build(scripts: &[Vec<Act>], order: &[usize]) -> Vec<Journal> {
        let mut journals = vec![Journal::new("a"), Journal::new("b")];
        let producers = [P, Q, ProducerId([1, 0, 0, 0, 0, 3])];
        let mut cursor = vec![0usize; scripts.len()];
        let mut clock = vec![0u64; scripts.len()];
        let mut fresh: Vec<Vec<(u64, Flags)>> = vec![Vec::new(); scripts.len()];
        let mut dead = vec![false; scripts.len()];
        let mut pick = order.iter().cycle();
        let mut remaining: usize = scripts.iter().map(Vec::len).sum();
        while remaining > 0 {
            let s = match pick.next() {
                Some(&s) if cursor[s % scripts.len()] < scripts[s % scripts.len()].len() => {
                    s % scripts.len()
                }
                Some(_) => match (0..scripts.len()).find(|&s| cursor[s] < scripts[s].len()) {
                    Some(s) => s,
                    None => break,
                },
                None => break,
            };
            let act = scripts[s][cursor[s]].clone();
            cursor[s] += 1;
            remaining -= 1;
            let (journal, producer) = (&mut journals[s % 2], producers[s / 2]);
            match act {
                Act::Fresh(flags) if !dead[s] => {
                    clock[s] += 1;
                    fresh[s].push((clock[s], flags));
                    journal.add(producer, clock[s], flags);
                }
                Act::Retry(n) if !dead[s] => {
                    let from = fresh[s].len().saturating_sub(n);
                    for &(c, f) in &fresh[s][from..] {
                        journal.add(producer, c, f);
                    }
                }
                Act::Zero => {
                    journal.add(ProducerId::default(), 0, O);
                }
                Act::Resend(k) => {
                    let acks: Vec<u64> = fresh[s]
                        .iter()
                        .filter(|(_, f)| *f == A)
                        .map(|(c, _)| *c)
                        .collect();
                    if let Some(&c) = acks.iter().rev().nth(k) {
                        journal.add(producer, c, A);
                        dead[s] = true;
                    }
                }
                _ => {}
            }
        }
        journals
    }

    /// Read-committed semantics, plainly: per (journal, producer) a last
    /// ACK and a list of pending messages.
    fn model(journal: &Journal) -> Vec<(i64, u64)> {
        struct State {
            min: u64,
            pending: Vec<Envelope>,
        }
        let mut states: HashMap<ProducerId, State> = HashMap::new();
        let mut out = Vec::new();
        for env in &journal.envs {
            let clock = env.clock.0;
            if clock == 0 {
                out.push((env.begin, 0));
                continue;
            }
            let st = states.entry(env.producer).or_insert_with(|| State {
                min: clock - 1,
                pending: Vec::new(),
            });
            let max = st.pending.last().map_or(st.min, |e| e.clock.0);
            match env.flags {
                O if clock > st.min => {
                    st.pending.clear();
                    out.push((env.begin, clock >> 4));
                    st.min = clock;
                }
                C if clock > max => st.pending.push(env.clone()),
                A if clock <= st.min => {
                    st.min = clock;
                    st.pending.clear();
                }
                A => {
                    for p in st.pending.drain(..) {
                        if p.clock.0 <= clock {
                            out.push((p.begin, p.clock.0 >> 4));
                        }
                    }
                    out.push((env.begin, clock >> 4));
                    st.min = clock;
                }
                _ => {}
            }
        }
        out
    }

    /// Runs the sequencer over `journals`, reading them in `order`, and
    /// "crashes" (checkpoint, fresh sequencer from it, re-read from its
    /// offsets) at the operation numbers in `crashes`.
    fn run(
        journals: &[Journal],
        ring: usize,
        order: &[usize],
        crashes: &[usize],
    ) -> Vec<Vec<(i64, u64)>> {
        let names: Vec<Arc<str>> = journals.iter().map(|j| j.name.clone()).collect();
        let mut seq = Sequencer::new(ring);
        let mut out = vec![Vec::new(); journals.len()];
        let mut cursor = vec![0usize; journals.len()];
        let mut op = 0usize;
        let mut pick = order.iter().cycle();
        let crash = |seq: &mut Sequencer, cursor: &mut Vec<usize>| {
            let cp = seq.checkpoint(Duration::ZERO);
            let offsets: Vec<(Arc<str>, i64)> = names
                .iter()
                .map(|n| (n.clone(), cp.get(&**n).map_or(0, |s| s.read_through)))
                .collect();
            for (j, (_, offset)) in offsets.iter().enumerate() {
                cursor[j] = journals[j].envs.partition_point(|e| e.begin < *offset);
            }
            *seq = Sequencer::recover(ring, offsets, &cp).expect("recover");
        };
        loop {
            let base = pick.next().copied().unwrap_or(0);
            let Some(j) = (0..journals.len())
                .map(|k| (base + k) % journals.len())
                .find(|&j| cursor[j] < journals[j].envs.len())
            else {
                break;
            };
            let env = journals[j].envs[cursor[j]].clone();
            cursor[j] += 1;
            seq.queue_uncommitted(env).expect("queue");
            op += 1;
            if crashes.contains(&op) {
                crash(&mut seq, &mut cursor);
                continue;
            }
            let mut replay: Option<std::vec::IntoIter<Envelope>> = None;
            loop {
                match seq.step().expect("step") {
                    Step::Message(env) => {
                        let j = names
                            .iter()
                            .position(|n| *n == env.journal)
                            .expect("journal");
                        out[j].push((env.begin, env.clock.0 >> 4));
                        op += 1;
                        if crashes.contains(&op) {
                            crash(&mut seq, &mut cursor);
                            break;
                        }
                    }
                    Step::Idle => break,
                    Step::NeedReplay => {
                        let it = replay.get_or_insert_with(|| {
                            let range = seq.replay_range().expect("range");
                            let j = names
                                .iter()
                                .position(|n| *n == range.journal)
                                .expect("journal");
                            journals[j].range(range.begin, range.end).into_iter()
                        });
                        seq.push_replay(it.next()).expect("push");
                    }
                }
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn the_ring_sequencer_matches_the_plain_model(
            scripts in proptest::collection::vec(proptest::collection::vec(act(), 0..24), 6),
            order in proptest::collection::vec(0usize..6, 1..40),
            read_order in proptest::collection::vec(0usize..2, 1..10),
            ring in 1usize..10,
            crashes in proptest::collection::vec(0usize..100, 0..5),
        ) {
            let journals = build(&scripts, &order);
            let expected: Vec<Vec<(i64, u64)>> = journals.iter().map(model).collect();
            let got = run(&journals, ring, &read_order, &[]);
            prop_assert_eq!(&got, &expected, "without crashes");
            let got = run(&journals, ring, &read_order, &crashes);
            prop_assert_eq!(&got, &expected, "with crashes at {:?}", crashes);
        }
    }
}
