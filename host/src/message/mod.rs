//! Gazette's message layer: message UUIDs, JSON-lines framing, publishing
//! with transactions, and read-committed reading.
//!
//! Journals are byte logs and appends are at-least-once (a retried append may
//! land twice), yet a consumer processes each message exactly once. This
//! module holds the pieces that make that so:
//!
//! - [`uuid`]: every message carries a v1 UUID packing a [`ProducerId`], a
//!   [`Clock`] and [`Flags`] (`OUTSIDE_TXN`, `CONTINUE_TXN`, `ACK_TXN`). A
//!   producer's clocks increase in journal order.
//! - [`framing`]: JSON lines (`application/x-ndjson`), the UUID as the first
//!   field of each object.
//! - [`publisher`]: [`Publisher`] assigns UUIDs in journal order and appends
//!   in batches.
//! - [`sequencer`]: [`Sequencer`] drops duplicates, holds uncommitted
//!   messages until their ACK, discards rolled-back ones, and replays what
//!   fell out of its ring.
//! - [`read_committed`]: [`ReadCommitted`] reads journals through a
//!   sequencer.
//! - [`mapping`]: pick a journal of a partitioned set for a key.
//!
//! ## Publishing committed messages
//!
//! Outside a transaction (the stream-sum chunker), messages commit
//! themselves:
//!
//! ```ignore
//! let publisher = Publisher::new(client, Arc::new(AtomicClock::now()), Handle::current());
//! publisher.publish_committed("chunks/part-000", br#"{"SeqNo":1}"#)?;
//! publisher.flush().await?; // durable now
//! ```
//!
//! ## Publishing inside a transaction
//!
//! A consumer transaction publishes `CONTINUE_TXN` messages, then commits its
//! checkpoint (with the ACK intents) and only then appends the ACKs:
//!
//! ```ignore
//! publisher.publish_uncommitted("sums", br#"{"SeqNo":11}"#)?;  // invisible for now
//! let intents = publisher.build_ack_intents();  // ACK clocks taken here
//! publisher.flush().await?;                     // every message is durable
//! store.commit(checkpoint_with(intents)).await?;  // the commit point
//! for intent in intents { client.append(intent.journal, intent.bytes).await?; }  // now visible
//! ```
//!
//! After a crash, the recovered checkpoint's intents are appended again byte
//! for byte: that commits the transaction's messages if its ACKs never made
//! it, and rolls back anything a dead primary published after it (its ACK
//! clock equals the readers' last ACK for that producer). Each new primary
//! publishes under a new producer id.
//!
//! ## Reading committed messages
//!
//! ```ignore
//! let mut reader = ReadCommitted::new(client, vec![("chunks/part-000".into(), 0)],
//!     &checkpoint.sources, 8192, 8192)?;
//! loop {
//!     let env = reader.next().await?;     // cancel-safe
//!     if env.is_ack() { continue; }       // ACKs are delivered too
//!     process(&env.doc);
//!     // ... at a transaction boundary:
//!     let checkpoint = reader.checkpoint(Duration::from_secs(24 * 3600));
//! }
//! ```
//!
//! Every envelope `next` returned is counted as processed by the next
//! `checkpoint`: resuming from that checkpoint (a new `ReadCommitted` from its
//! offsets and producer states) delivers every later committed message
//! exactly once.

pub mod envelope;
pub mod framing;
pub mod mapping;
pub mod publisher;
pub mod read_committed;
pub mod sequencer;
pub mod uuid;

#[cfg(test)]
pub(crate) mod testing;

pub use envelope::Envelope;
pub use framing::{
    Frame, FramingError, LineDecoder, NDJSON, ack_document, extract_uuid, frame, frame_with_limit,
};
pub use mapping::{MappingError, fnv1a32, modulo_mapping, rendezvous_mapping};
pub use publisher::{AckIntent, HeldAcks, Publisher, PublisherConfig};
pub use read_committed::{ReadCommitted, ReadError, ReaderConfig};
pub use sequencer::{QueueOutcome, ReplayRange, Sequencer, SequencerError, Step};
pub use uuid::{AtomicClock, Clock, Flags, ProducerId, build_uuid, parse_uuid};
