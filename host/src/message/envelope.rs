//! [`Envelope`]: one message read from a journal, with where it was read and
//! what its UUID says.
//!
//! Offsets are byte-exact: `begin` is the offset of the message's first byte
//! and `end` the offset just past its trailing newline, so `end - begin` is the
//! framed length and `end` is where the next message starts. These offsets,
//! not append responses, are how a message is located in its journal.

use std::sync::Arc;

use bytes::Bytes;

use super::framing::NDJSON;
use super::uuid::{Clock, Flags, ProducerId, parse_uuid};

/// A message and its position, as delivered by readers and the sequencer.
///
/// Cloning is cheap: the journal name, content type and document are
/// reference counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The journal the message was read from.
    pub journal: Arc<str>,
    /// Offset of the message's first byte.
    pub begin: i64,
    /// Offset just past the message's last byte (its newline).
    pub end: i64,
    /// The message's UUID (nil for messages without one).
    pub uuid: uuid::Uuid,
    /// The UUID's producer.
    pub producer: ProducerId,
    /// The UUID's clock (0 for messages without a UUID).
    pub clock: Clock,
    /// The UUID's flags.
    pub flags: Flags,
    /// The journal's content type (e.g. `application/x-ndjson`).
    pub content_type: Arc<str>,
    /// The document: the framed line without its trailing `\n`.
    pub doc: Bytes,
}

impl Envelope {
    /// An ndjson envelope for `doc` at `[begin, end)` of `journal`, with the
    /// producer, clock and flags taken from `uuid`.
    pub fn new(journal: Arc<str>, begin: i64, end: i64, uuid: uuid::Uuid, doc: Bytes) -> Envelope {
        let (producer, clock, flags) = parse_uuid(&uuid);
        Envelope {
            journal,
            begin,
            end,
            uuid,
            producer,
            clock,
            flags,
            content_type: Arc::from(NDJSON),
            doc,
        }
    }

    /// Whether this is an acknowledgement (`ACK_TXN`). Read-committed readers
    /// deliver ACKs so that callers can observe commits; applications skip
    /// them.
    pub fn is_ack(&self) -> bool {
        self.flags == Flags::AckTxn
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::message::uuid::build_uuid;

    #[test]
    fn envelope_fields_come_from_its_uuid() {
        let producer = ProducerId([3; 6]);
        let uuid = build_uuid(producer, Clock(4321 << 4), Flags::AckTxn);
        let env = Envelope::new(
            Arc::from("a/journal"),
            10,
            20,
            uuid,
            Bytes::from_static(b"{}"),
        );
        assert_eq!(
            (env.producer, env.clock, env.flags),
            (producer, Clock(4321 << 4), Flags::AckTxn)
        );
        assert!(env.is_ack());

        let uuid = build_uuid(producer, Clock(4322 << 4), Flags::ContinueTxn);
        let env = Envelope::new(
            Arc::from("a/journal"),
            20,
            30,
            uuid,
            Bytes::from_static(b"{}"),
        );
        assert!(!env.is_ack());
        assert_eq!(&*env.content_type, "application/x-ndjson");
    }
}
