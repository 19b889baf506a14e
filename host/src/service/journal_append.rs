//! The `Append` RPC: Gazette's client-streaming append protocol over the
//! broker's atomic append.
//!
//! - The **first message** carries the parameters (journal, offset,
//!   registers) and no content; content there is `INVALID_ARGUMENT`. An
//!   unknown journal is answered at once with `JOURNAL_NOT_FOUND`.
//! - **Content chunks** follow and are buffered: the broker appends all of
//!   them in one atomic append, so a slow client never holds a journal.
//! - An **empty chunk and then end-of-stream** commit. End-of-stream
//!   without the empty chunk **rolls back**: nothing is appended and the
//!   RPC fails with `ABORTED`. Content after the empty chunk is
//!   `INVALID_ARGUMENT`.
//! - A **zero-byte append** (parameters, empty chunk, end) is a write
//!   barrier: its commit is `[head, head)`.
//! - **Limits**: more than `max_append_size` content bytes, or a client
//!   falling behind the minimum rate ([`Pace`]), fail the RPC with
//!   `RESOURCE_EXHAUSTED` at once, without waiting for the rest.
//! - The response carries the commit fragment `[begin, end)` with the
//!   SHA1 of the appended bytes (all zeros for a barrier), the registers
//!   and `total_chunks`; `REGISTER_MISMATCH` (with the registers),
//!   `WRONG_APPEND_OFFSET` (with the write head as a zero-length commit),
//!   `JOURNAL_NOT_FOUND` and `NOT_ALLOWED` (a read-only journal) are
//!   response statuses.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;
use tonic::{Status, Streaming};

use super::convert::{self, status_of};
use super::metrics::JournalMetrics;
use crate::broker::{Broker, BrokerError, JournalClient};
use crate::protocol::gazette::{self as wire, Status as WireStatus};

/// Gazette's minimum append rate: by `burst` plus `received / rate` seconds
/// after the stream started, the next message must have arrived, so a
/// client may stall for the burst and must then keep up with `rate` bytes
/// per second on average.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pace {
    started: Instant,
    /// Bytes per second; 0 disables the check.
    rate: u64,
    burst: Duration,
    received: u64,
}

impl Pace {
    /// A pace starting now.
    pub fn new(rate: u64, burst: Duration) -> Pace {
        Pace {
            started: Instant::now(),
            rate,
            burst,
            received: 0,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        if self.rate == 0 {
            return None;
        }
        let earned = Duration::from_secs_f64(self.received as f64 / self.rate as f64);
        Some(self.started + self.burst + earned)
    }

    /// The next message, or `RESOURCE_EXHAUSTED` if it comes too late.
    async fn receive(
        &self,
        stream: &mut Streaming<wire::AppendRequest>,
    ) -> Result<Option<wire::AppendRequest>, Status> {
        let Some(deadline) = self.deadline() else {
            return stream.message().await;
        };
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Ok(message) => message,
            Err(_) => Err(Status::resource_exhausted(format!(
                "the append stream fell below the minimum rate of {} bytes/s (after {:?} of burst)",
                self.rate, self.burst
            ))),
        }
    }
}

/// Serves one Append stream; see the [module docs](self). The caller adds
/// the header.
pub(super) async fn append(
    broker: &Broker,
    mut stream: Streaming<wire::AppendRequest>,
    mut pace: Pace,
    max_append_size: usize,
    metrics: &JournalMetrics,
) -> Result<wire::AppendResponse, Status> {
    let Some(first) = pace.receive(&mut stream).await? else {
        return Err(Status::invalid_argument(
            "the append stream ended before its first message (the parameters)",
        ));
    };
    if !first.content.is_empty() {
        return Err(Status::invalid_argument(
            "content: the first message carries the parameters only; send content in later messages",
        ));
    }
    let mut request = convert::append_from_wire(&first).map_err(|err| status_of(&err))?;
    match broker.read_position(&request.journal, 0) {
        Ok(_) => {}
        Err(BrokerError::JournalNotFound(_)) => return Ok(response(WireStatus::JournalNotFound)),
        Err(err) => return Err(status_of(&err)),
    }

    let mut content = BytesMut::new();
    let mut chunks = 0i64;
    loop {
        let Some(message) = pace.receive(&mut stream).await? else {
            return Err(Status::aborted(
                "the append stream ended without its final empty chunk: nothing was appended",
            ));
        };
        if message.content.is_empty() {
            break;
        }
        if content.len().saturating_add(message.content.len()) > max_append_size {
            return Err(Status::resource_exhausted(format!(
                "append to {} exceeds the {max_append_size}-byte limit",
                request.journal
            )));
        }
        pace.received += message.content.len() as u64;
        chunks += 1;
        content.extend_from_slice(&message.content);
    }
    if pace.receive(&mut stream).await?.is_some() {
        return Err(Status::invalid_argument(
            "content: the final empty chunk must be followed by the end of the stream",
        ));
    }

    let sum = convert::sha1_sum(&content);
    request.content = Bytes::from(content);
    let journal = request.journal.clone();
    let bytes = request.content.len() as u64;
    match broker.append(request).await {
        Ok(committed) => {
            metrics.appended(&journal, bytes);
            Ok(wire::AppendResponse {
                commit: Some(wire::Fragment {
                    sum: Some(sum),
                    ..convert::fragment_to_wire(&journal, committed.begin, committed.end, None)
                }),
                registers: Some(convert::label_set_to_wire(&committed.registers)),
                total_chunks: chunks,
                ..response(WireStatus::Ok)
            })
        }
        Err(BrokerError::JournalNotFound(_)) => Ok(response(WireStatus::JournalNotFound)),
        Err(BrokerError::NotAllowed { .. }) => Ok(response(WireStatus::NotAllowed)),
        Err(BrokerError::RegisterMismatch { registers, .. }) => Ok(wire::AppendResponse {
            registers: Some(convert::label_set_to_wire(&registers)),
            ..response(WireStatus::RegisterMismatch)
        }),
        Err(BrokerError::WrongAppendOffset { write_head, .. }) => Ok(wire::AppendResponse {
            commit: Some(convert::fragment_to_wire(
                &journal, write_head, write_head, None,
            )),
            ..response(WireStatus::WrongAppendOffset)
        }),
        Err(err) => Err(status_of(&err)),
    }
}

fn response(status: WireStatus) -> wire::AppendResponse {
    wire::AppendResponse {
        status: status as i32,
        ..Default::default()
    }
}
