//! The `Read` RPC: committed bytes of one journal as a stream of
//! Gazette-shaped responses.
//!
//! - A **metadata** response comes first: status `OK`, the header, the
//!   effective `offset` (`-1` resolved to the write head), `write_head`, and
//!   the `fragment` holding the offset if one does yet. Another metadata
//!   response (no header) precedes the first content of each later
//!   fragment.
//! - **Content** responses carry only `offset` and `content`, at most the
//!   configured chunk size (32 KiB − 32 bytes by default) each.
//! - A blocking read waits at the write head for appends; `end_offset`
//!   (exclusive) ends the stream there. A non-blocking read that reaches
//!   the write head first ends with a response of status
//!   `OFFSET_NOT_YET_AVAILABLE` (offset and write head set).
//! - An unknown (or meanwhile deleted) journal is a response of status
//!   `JOURNAL_NOT_FOUND`; a write-only one (flags `O_WRONLY`), `NOT_ALLOWED`. Damaged content ends the stream with `DATA_LOSS`
//!   naming the journal and offset: damaged bytes are never sent.
//! - `metadata_only` sends the metadata response alone.
//!
//! The stream is produced by a task that stops as soon as the client goes
//! away, even while blocked at the write head.

use std::ops::Range;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::convert::{self, status_of};
use super::metrics::JournalMetrics;
use crate::broker::spec::validate_journal_name;
use crate::broker::{Broker, BrokerError, JournalClient, ReadChunk, ReadRequest, ReadStream};
use crate::protocol::gazette::{self as wire, Status as WireStatus};

/// Responses buffered ahead of a slow reader.
const READ_BUFFER: usize = 8;

type Responses = ReceiverStream<Result<wire::ReadResponse, Status>>;

fn validate(request: &wire::ReadRequest) -> Result<(), Status> {
    validate_journal_name(&request.journal)
        .map_err(|err| Status::invalid_argument(format!("journal: {err}")))?;
    if request.offset < -1 {
        return Err(Status::invalid_argument(format!(
            "offset: {} is neither -1 (the write head) nor an offset",
            request.offset
        )));
    }
    if request.end_offset < 0 {
        return Err(Status::invalid_argument(format!(
            "end_offset: {} is negative",
            request.end_offset
        )));
    }
    if request.offset >= 0 && request.end_offset != 0 && request.end_offset < request.offset {
        return Err(Status::invalid_argument(format!(
            "end_offset: {} is before offset {}",
            request.end_offset, request.offset
        )));
    }
    Ok(())
}

/// A stream of just `response`.
fn only(response: wire::ReadResponse) -> Responses {
    let (out, responses) = mpsc::channel(1);
    // A fresh channel of capacity 1 has room for one message.
    let _ = out.try_send(Ok(response));
    ReceiverStream::new(responses)
}

fn not_found(header: wire::Header) -> Responses {
    only(wire::ReadResponse {
        status: WireStatus::JournalNotFound as i32,
        header: Some(header),
        ..Default::default()
    })
}

fn metadata(
    journal: &str,
    offset: i64,
    write_head: i64,
    fragment: Option<&Range<i64>>,
) -> wire::ReadResponse {
    wire::ReadResponse {
        status: WireStatus::Ok as i32,
        offset,
        write_head,
        fragment: fragment.map(|f| convert::fragment_to_wire(journal, f.start, f.end, None)),
        ..Default::default()
    }
}

/// Starts serving `request`; see the [module docs](self).
pub(super) async fn read(
    broker: Broker,
    request: wire::ReadRequest,
    header: wire::Header,
    chunk_size: usize,
    metrics: JournalMetrics,
) -> Result<Responses, Status> {
    validate(&request)?;
    let journal = request.journal.clone();
    let position = match broker.read_position(&journal, request.offset.max(0)) {
        Ok(position) => position,
        Err(BrokerError::JournalNotFound(_)) => return Ok(not_found(header)),
        Err(err) => return Err(status_of(&err)),
    };
    let (offset, position) = match request.offset {
        -1 => {
            let head = position.write_head;
            match broker.read_position(&journal, head) {
                Ok(position) => (head, position),
                Err(BrokerError::JournalNotFound(_)) => return Ok(not_found(header)),
                Err(err) => return Err(status_of(&err)),
            }
        }
        offset => (offset, position),
    };
    let stream = broker
        .read(ReadRequest {
            journal: journal.clone(),
            offset,
            block: request.block,
            end_offset: request.end_offset,
        })
        .await;
    let stream = match stream {
        Ok(stream) => stream,
        Err(BrokerError::JournalNotFound(_)) => return Ok(not_found(header)),
        Err(BrokerError::NotAllowed { .. }) => {
            return Ok(only(wire::ReadResponse {
                status: WireStatus::NotAllowed as i32,
                header: Some(header),
                ..Default::default()
            }));
        }
        Err(err) => return Err(status_of(&err)),
    };
    let mut first = metadata(
        &journal,
        offset,
        position.write_head,
        position.fragment.as_ref(),
    );
    first.header = Some(header);
    if request.metadata_only {
        return Ok(only(first));
    }
    metrics.read_opened(&journal);
    let (out, responses) = mpsc::channel(READ_BUFFER);
    let serve = Serve {
        broker,
        metrics,
        journal,
        end_offset: request.end_offset,
        chunk_size,
        fragment: position.fragment,
        offset,
        out,
    };
    tokio::spawn(serve.run(first, stream));
    Ok(ReceiverStream::new(responses))
}

/// The task behind one Read stream.
struct Serve {
    broker: Broker,
    metrics: JournalMetrics,
    journal: String,
    end_offset: i64,
    chunk_size: usize,
    /// The fragment the last metadata response described.
    fragment: Option<Range<i64>>,
    /// The next offset to send.
    offset: i64,
    out: mpsc::Sender<Result<wire::ReadResponse, Status>>,
}

/// Whether the stream goes on.
enum Flow {
    Continue,
    Stop,
}

impl Serve {
    async fn send(&self, response: Result<wire::ReadResponse, Status>) -> Flow {
        match self.out.send(response).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    }

    async fn run(mut self, first: wire::ReadResponse, mut stream: Box<dyn ReadStream>) {
        if let Flow::Stop = self.send(Ok(first)).await {
            return;
        }
        loop {
            let next = tokio::select! {
                () = self.out.closed() => return,
                next = stream.next() => next,
            };
            let flow = match next {
                Ok(Some(chunk)) => self.content(chunk).await,
                Ok(None) if self.end_offset != 0 && self.offset >= self.end_offset => return,
                // A non-blocking read reached the write head.
                Ok(None) | Err(BrokerError::OffsetNotYetAvailable { .. }) => {
                    self.end(WireStatus::OffsetNotYetAvailable).await;
                    return;
                }
                Err(BrokerError::JournalNotFound(_)) => {
                    self.end(WireStatus::JournalNotFound).await;
                    return;
                }
                Err(err) => {
                    self.send(Err(status_of(&err))).await;
                    return;
                }
            };
            if let Flow::Stop = flow {
                return;
            }
        }
    }

    /// Sends `chunk`, after a metadata response if it starts a fragment the
    /// client was not told about.
    async fn content(&mut self, chunk: ReadChunk) -> Flow {
        let known = self
            .fragment
            .as_ref()
            .is_some_and(|fragment| fragment.contains(&chunk.offset));
        if !known {
            match self.broker.read_position(&self.journal, chunk.offset) {
                Ok(position) => {
                    let response = metadata(
                        &self.journal,
                        chunk.offset,
                        position.write_head,
                        position.fragment.as_ref(),
                    );
                    self.fragment = position.fragment;
                    if let Flow::Stop = self.send(Ok(response)).await {
                        return Flow::Stop;
                    }
                }
                Err(BrokerError::JournalNotFound(_)) => {
                    self.end(WireStatus::JournalNotFound).await;
                    return Flow::Stop;
                }
                Err(err) => {
                    self.send(Err(status_of(&err))).await;
                    return Flow::Stop;
                }
            }
        }
        let mut offset = chunk.offset;
        for piece in chunk.content.chunks(self.chunk_size) {
            let response = wire::ReadResponse {
                offset,
                content: piece.to_vec(),
                ..Default::default()
            };
            if let Flow::Stop = self.send(Ok(response)).await {
                return Flow::Stop;
            }
            offset += piece.len() as i64;
        }
        self.metrics
            .read_served(&self.journal, chunk.content.len() as u64);
        self.offset = offset;
        Flow::Continue
    }

    /// Ends the stream with a response of `status` at the next offset.
    async fn end(&self, status: WireStatus) {
        let write_head = self
            .broker
            .read_position(&self.journal, self.offset)
            .map_or(self.offset, |position| position.write_head);
        let response = wire::ReadResponse {
            status: status as i32,
            offset: self.offset,
            write_head,
            ..Default::default()
        };
        self.send(Ok(response)).await;
    }
}
