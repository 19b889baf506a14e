//! [`GrpcJournalClient`]: the [`JournalClient`] contract over Gazette's
//! Journal gRPC service (weir's `weir serve`, or a Gazette broker).
//!
//! Every call retries **transient** failures (connection refused or reset,
//! a server that went away, `UNAVAILABLE`) with the back-off of a
//! [`RetryPolicy`]; other errors return at once, mapped back to the
//! [`BrokerError`] the broker reported (see the `convert` module).
//!
//! - A **read** that breaks resumes from the next unread offset, so the
//!   caller sees one unbroken stream.
//! - An **append** that fails after it was sent is retried whole. It may
//!   have landed before the failure, so **an append may land twice**: as in
//!   Gazette, writers put de-duplicating message UUIDs in their content (the
//!   message layer drops the duplicates).
//! - An **apply** is retried whole too: an upsert applies the same spec
//!   again; a repeated delete reports [`BrokerError::JournalNotFound`].
//! - `expect_offset: Some(0)` (append only to an empty journal) travels in
//!   weir's `weir_expect_empty` extension of `AppendRequest`, since on
//!   Gazette's wire offset 0 means "at the head, unchecked".

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};

use super::convert::{self, error_of_status, error_of_wire_status};
use crate::broker::revision::ExpectRevision;
use crate::broker::{
    AppendRequest, AppendResponse, BrokerError, JournalChange, JournalClient, JournalSpec,
    LabelSelector, ReadChunk, ReadRequest, ReadStream,
};
use crate::limits;
use crate::protocol::gazette::{self as wire, Status as WireStatus};

type Client = wire::journal_client::JournalClient<Channel>;

/// When and how long a client retries transient failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Back-off before each retry, by attempt; the last value repeats (none:
    /// retry at once).
    pub backoff: Vec<Duration>,
    /// Give up once a run of failures has lasted this long; `None` retries
    /// until success.
    pub max_elapsed: Option<Duration>,
}

impl Default for RetryPolicy {
    /// Gazette's back-off ([`limits::DEFAULT_RETRY_BACKOFF_MS`]), forever.
    fn default() -> Self {
        RetryPolicy {
            backoff: limits::DEFAULT_RETRY_BACKOFF_MS
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
            max_elapsed: None,
        }
    }
}

impl RetryPolicy {
    /// The back-off before retry number `attempt` (from 0).
    pub fn backoff(&self, attempt: usize) -> Duration {
        self.backoff
            .get(attempt)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(Duration::ZERO)
    }
}

/// The retry state of one call (or one stretch of a read).
struct Retry<'p> {
    policy: &'p RetryPolicy,
    attempt: usize,
    /// When the current run of failures began.
    since: Option<Instant>,
}

impl<'p> Retry<'p> {
    fn new(policy: &'p RetryPolicy) -> Self {
        Retry {
            policy,
            attempt: 0,
            since: None,
        }
    }

    /// Progress was made: the next failure starts a new run.
    fn reset(&mut self) {
        self.attempt = 0;
        self.since = None;
    }

    /// After `err`: waits out the back-off if the call should be retried,
    /// or gives `err` back.
    async fn pause(&mut self, err: BrokerError) -> Result<(), BrokerError> {
        if !err.is_transient() {
            return Err(err);
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        let delay = self.policy.backoff(self.attempt);
        if let Some(max) = self.policy.max_elapsed
            && since.elapsed() + delay > max
        {
            return Err(err);
        }
        tracing::debug!(attempt = self.attempt, ?delay, error = %err, "retrying a journal call");
        self.attempt += 1;
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

/// `err` and its sources, as one line.
fn describe(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A [`JournalClient`] over gRPC: cheap to clone (clones share one
/// connection, which reconnects by itself).
#[derive(Clone)]
pub struct GrpcJournalClient {
    client: Client,
    policy: Arc<RetryPolicy>,
    url: Arc<str>,
}

impl fmt::Debug for GrpcJournalClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcJournalClient")
            .field("url", &self.url)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl GrpcJournalClient {
    /// Connects to the server at `endpoint` (`host:port` or
    /// `http://host:port`), retrying a refused connection as `policy` says.
    /// A malformed endpoint (or `https`, which weir does not serve) is
    /// [`BrokerError::InvalidArgument`].
    pub async fn connect(
        endpoint: &str,
        policy: RetryPolicy,
    ) -> Result<GrpcJournalClient, BrokerError> {
        let url = super::endpoint::endpoint_url(endpoint)?;
        if url.starts_with("https://") {
            return Err(BrokerError::InvalidArgument(format!(
                "{url}: https is not supported (weir serves plain HTTP/2)"
            )));
        }
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|err| BrokerError::InvalidArgument(format!("{url}: {}", describe(&err))))?
            .connect_timeout(Duration::from_millis(
                limits::DEFAULT_GRPC_CONNECT_TIMEOUT_MS,
            ))
            // Small appends and reads must not wait on Nagle's algorithm.
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_millis(
                limits::DEFAULT_GRPC_KEEPALIVE_INTERVAL_MS,
            ))
            .keep_alive_timeout(Duration::from_millis(
                limits::DEFAULT_GRPC_KEEPALIVE_TIMEOUT_MS,
            ))
            .keep_alive_while_idle(true);
        let mut retry = Retry::new(&policy);
        let channel = loop {
            match endpoint.connect().await {
                Ok(channel) => break channel,
                Err(err) => {
                    let err =
                        BrokerError::Unavailable(format!("cannot reach {url}: {}", describe(&err)));
                    retry.pause(err).await?;
                }
            }
        };
        let client = Client::new(channel)
            .max_decoding_message_size(limits::DEFAULT_GRPC_MAX_RECV_SIZE)
            .max_encoding_message_size(limits::DEFAULT_GRPC_MAX_SEND_SIZE);
        Ok(GrpcJournalClient {
            client,
            policy: Arc::new(policy),
            url: url.into(),
        })
    }

    /// Runs `call` until it succeeds, fails for good, or the policy gives
    /// up.
    async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T, BrokerError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, BrokerError>>,
    {
        let mut retry = Retry::new(&self.policy);
        loop {
            match call(self.client.clone()).await {
                Ok(value) => return Ok(value),
                Err(err) => retry.pause(err).await?,
            }
        }
    }
}

/// The messages of one Append RPC: parameters, content chunks, the final
/// empty chunk.
fn append_messages(first: &wire::AppendRequest, content: &Bytes) -> Vec<wire::AppendRequest> {
    let chunk = limits::DEFAULT_APPEND_CHUNK_SIZE.max(1);
    let mut messages = Vec::with_capacity(content.len() / chunk + 3);
    messages.push(first.clone());
    messages.extend(content.chunks(chunk).map(|piece| wire::AppendRequest {
        content: piece.to_vec(),
        ..Default::default()
    }));
    messages.push(wire::AppendRequest::default());
    messages
}

/// The result of an append of `request` from the server's `response`.
fn append_result(
    request: &AppendRequest,
    response: wire::AppendResponse,
) -> Result<AppendResponse, BrokerError> {
    let journal = &request.journal;
    match WireStatus::try_from(response.status) {
        Ok(WireStatus::Ok) => {
            let commit = response.commit.ok_or_else(|| BrokerError::Io {
                context: format!("append to {journal}"),
                source: std::io::Error::other("the server's response has no commit"),
            })?;
            Ok(AppendResponse {
                begin: commit.begin,
                end: commit.end,
                registers: convert::label_set_from_wire(response.registers.as_ref(), "registers")?,
            })
        }
        Ok(WireStatus::RegisterMismatch) => Err(BrokerError::RegisterMismatch {
            journal: journal.clone(),
            registers: convert::label_set_from_wire(response.registers.as_ref(), "registers")?,
        }),
        Ok(WireStatus::WrongAppendOffset) => Err(BrokerError::WrongAppendOffset {
            journal: journal.clone(),
            expected: request.expect_offset.unwrap_or(0),
            // weir sends the head as a zero-length commit; Gazette does not.
            write_head: response.commit.map_or(-1, |commit| commit.end),
        }),
        _ => Err(error_of_wire_status(response.status, journal)),
    }
}

#[async_trait]
impl JournalClient for GrpcJournalClient {
    async fn list(&self, selector: &LabelSelector) -> Result<Vec<JournalSpec>, BrokerError> {
        let request = wire::ListRequest {
            selector: Some(convert::selector_to_wire(selector)),
            ..Default::default()
        };
        self.retrying(|mut client| {
            let request = request.clone();
            async move {
                let mut responses = client
                    .list(request)
                    .await
                    .map_err(|status| error_of_status(&status))?
                    .into_inner();
                let mut specs = Vec::new();
                while let Some(response) = responses
                    .message()
                    .await
                    .map_err(|status| error_of_status(&status))?
                {
                    if response.status != WireStatus::Ok as i32 {
                        return Err(error_of_wire_status(response.status, "List"));
                    }
                    for journal in response.journals {
                        specs.push(convert::spec_from_wire(journal.spec.unwrap_or_default())?);
                    }
                }
                Ok(specs)
            }
        })
        .await
    }

    async fn apply(&self, changes: Vec<JournalChange>) -> Result<(), BrokerError> {
        if changes.is_empty() {
            return Ok(());
        }
        let deleted: Vec<&str> = changes
            .iter()
            .filter_map(|change| match change {
                JournalChange::Delete(name) => Some(name.as_str()),
                JournalChange::Upsert(_) => None,
            })
            .collect();
        let deleted = deleted.join(", ");
        let request = wire::ApplyRequest {
            changes: changes
                .iter()
                .map(|change| convert::change_to_wire(change, ExpectRevision::Any))
                .collect(),
        };
        self.retrying(|mut client| {
            let request = request.clone();
            let deleted = deleted.clone();
            async move {
                let response = client
                    .apply(request)
                    .await
                    .map_err(|status| error_of_status(&status))?
                    .into_inner();
                match WireStatus::try_from(response.status) {
                    Ok(WireStatus::Ok) => Ok(()),
                    _ => Err(error_of_wire_status(response.status, &deleted)),
                }
            }
        })
        .await
    }

    async fn append(&self, request: AppendRequest) -> Result<AppendResponse, BrokerError> {
        let first = convert::append_to_wire(&request)?;
        self.retrying(|mut client| {
            let messages = append_messages(&first, &request.content);
            let request = &request;
            async move {
                let response = client
                    .append(tokio_stream::iter(messages))
                    .await
                    .map_err(|status| error_of_status(&status))?
                    .into_inner();
                append_result(request, response)
            }
        })
        .await
    }

    async fn read(&self, request: ReadRequest) -> Result<Box<dyn ReadStream>, BrokerError> {
        let mut stream = GrpcReadStream {
            client: self.client.clone(),
            policy: self.policy.clone(),
            journal: request.journal,
            offset: request.offset,
            block: request.block,
            end_offset: request.end_offset,
            responses: None,
            pending: None,
            state: ReadState::Open,
        };
        stream.prime().await?;
        Ok(Box::new(stream))
    }
}

/// Whether a read stream can still yield content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    Open,
    Finished,
}

/// A read over gRPC that reopens at the next unread offset when it breaks.
struct GrpcReadStream {
    client: Client,
    policy: Arc<RetryPolicy>,
    journal: String,
    /// The next offset to read; -1 until the server resolves the head.
    offset: i64,
    block: bool,
    end_offset: i64,
    responses: Option<Streaming<wire::ReadResponse>>,
    /// A response received but not yet handled.
    pending: Option<wire::ReadResponse>,
    state: ReadState,
}

impl GrpcReadStream {
    /// The next response, reopening the stream at `self.offset` across
    /// transient failures.
    async fn receive(&mut self, retry: &mut Retry<'_>) -> Result<wire::ReadResponse, BrokerError> {
        loop {
            if self.responses.is_none() {
                let request = wire::ReadRequest {
                    journal: self.journal.clone(),
                    offset: self.offset,
                    block: self.block,
                    end_offset: self.end_offset,
                    ..Default::default()
                };
                match self.client.clone().read(request).await {
                    Ok(response) => self.responses = Some(response.into_inner()),
                    Err(status) => {
                        retry.pause(error_of_status(&status)).await?;
                        continue;
                    }
                }
            }
            let Some(responses) = self.responses.as_mut() else {
                continue;
            };
            let failure = match responses.message().await {
                Ok(Some(response)) => return Ok(response),
                Ok(None) => BrokerError::Unavailable(format!(
                    "the read of {} ended before its end",
                    self.journal
                )),
                Err(status) => error_of_status(&status),
            };
            self.responses = None;
            retry.pause(failure).await?;
        }
    }

    /// Waits for the first response, so that `read` itself reports an
    /// unknown journal or an invalid request, as the broker's does.
    async fn prime(&mut self) -> Result<(), BrokerError> {
        let policy = self.policy.clone();
        let mut retry = Retry::new(&policy);
        let first = self.receive(&mut retry).await?;
        if first.status == WireStatus::JournalNotFound as i32 {
            return Err(BrokerError::JournalNotFound(self.journal.clone()));
        }
        self.pending = Some(first);
        Ok(())
    }

    /// Applies one response: a chunk of content, or `None` for metadata.
    fn handle(&mut self, response: wire::ReadResponse) -> Result<Option<ReadChunk>, BrokerError> {
        match WireStatus::try_from(response.status) {
            Ok(WireStatus::Ok) => {}
            Ok(WireStatus::OffsetNotYetAvailable) => {
                self.state = ReadState::Finished;
                self.responses = None;
                // As the broker: the end of a non-blocking read, or an error
                // if it has an end not reached.
                return match self.end_offset {
                    0 => Ok(None),
                    _ => Err(BrokerError::OffsetNotYetAvailable {
                        journal: self.journal.clone(),
                        offset: response.offset,
                    }),
                };
            }
            _ => {
                self.state = ReadState::Finished;
                return Err(error_of_wire_status(response.status, &self.journal));
            }
        }
        if response.content.is_empty() {
            if self.offset == -1 {
                self.offset = response.offset;
            }
            return Ok(None);
        }
        let content = Bytes::from(response.content);
        self.offset = response.offset + content.len() as i64;
        Ok(Some(ReadChunk {
            offset: response.offset,
            content,
        }))
    }
}

#[async_trait]
impl ReadStream for GrpcReadStream {
    async fn next(&mut self) -> Result<Option<ReadChunk>, BrokerError> {
        let policy = self.policy.clone();
        let mut retry = Retry::new(&policy);
        loop {
            let ended = self.end_offset != 0 && self.offset >= self.end_offset;
            if self.state == ReadState::Finished || ended {
                return Ok(None);
            }
            let response = match self.pending.take() {
                Some(response) => response,
                None => self.receive(&mut retry).await?,
            };
            retry.reset();
            if let Some(chunk) = self.handle(response)? {
                return Ok(Some(chunk));
            }
        }
    }
}

#[cfg(test)]
mod test {
    use std::net::SocketAddr;
    use std::path::PathBuf;

    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    use super::*;
    use crate::broker::{Broker, BrokerConfig, LabelSet};
    use crate::service::journal::JournalServiceConfig;
    use crate::service::journal::test::{create, serve_on, start, timed};

    fn quick() -> RetryPolicy {
        RetryPolicy {
            backoff: vec![Duration::from_millis(10), Duration::from_millis(50)],
            max_elapsed: Some(Duration::from_secs(8)),
        }
    }

    async fn connect(addr: SocketAddr) -> GrpcJournalClient {
        timed(
            "connect",
            GrpcJournalClient::connect(&addr.to_string(), quick()),
        )
        .await
        .expect("connect")
    }

    fn append_request(journal: &str, content: &'static [u8]) -> AppendRequest {
        AppendRequest {
            journal: journal.into(),
            content: Bytes::from_static(content),
            ..Default::default()
        }
    }

    async fn read_to_end(client: &GrpcJournalClient, request: ReadRequest) -> Vec<u8> {
        let from = request.offset;
        let mut stream = timed("read", client.read(request)).await.expect("read");
        let mut content = Vec::new();
        while let Some(chunk) = timed("next", stream.next()).await.expect("chunk") {
            assert_eq!(chunk.offset, from + content.len() as i64, "contiguous");
            content.extend_from_slice(&chunk.content);
        }
        content
    }

    #[test]
    fn the_default_policy_is_gazettes_back_off_forever() {
        let policy = RetryPolicy::default();
        let ms = |attempt| policy.backoff(attempt).as_millis();
        let sequence: Vec<u128> = (0..9).map(ms).collect();
        assert_eq!(sequence, [50, 50, 100, 100, 1000, 1000, 5000, 5000, 5000]);
        assert_eq!(policy.max_elapsed, None);
        let none = RetryPolicy {
            backoff: Vec::new(),
            max_elapsed: None,
        };
        assert_eq!(none.backoff(3), Duration::ZERO);
    }

    #[tokio::test]
    async fn the_journal_client_contract_holds_over_grpc() {
        let served = start().await;
        let client = connect(served.addr).await;
        let spec =
            JournalSpec::new("test/contract").with_labels("kind=test".parse().expect("labels"));
        client
            .apply(vec![JournalChange::Upsert(spec.clone())])
            .await
            .expect("apply");
        client
            .apply(Vec::new())
            .await
            .expect("an empty apply does nothing");
        let listed = client
            .list(&"kind=test".parse().expect("selector"))
            .await
            .expect("list");
        assert_eq!(listed, vec![spec]);

        let first = client
            .append(append_request("test/contract", b"hello "))
            .await
            .expect("append");
        assert_eq!((first.begin, first.end), (0, 6));
        let large: Vec<u8> = (0..(limits::DEFAULT_APPEND_CHUNK_SIZE * 2 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        let second = client
            .append(AppendRequest {
                content: Bytes::from(large.clone()),
                ..append_request("test/contract", b"")
            })
            .await
            .expect("multi-message append");
        assert_eq!((second.begin, second.end), (6, 6 + large.len() as i64));
        let barrier = client
            .append(append_request("test/contract", b""))
            .await
            .expect("barrier");
        assert_eq!((barrier.begin, barrier.end), (second.end, second.end));

        let content = read_to_end(
            &client,
            ReadRequest {
                journal: "test/contract".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(&content[..6], b"hello ");
        assert_eq!(&content[6..], &large[..]);
        let bounded = read_to_end(
            &client,
            ReadRequest {
                journal: "test/contract".into(),
                offset: 2,
                end_offset: 5,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(bounded, b"llo");

        let mut at_head = timed(
            "read",
            client.read(ReadRequest {
                journal: "test/contract".into(),
                offset: -1,
                ..Default::default()
            }),
        )
        .await
        .expect("read");
        assert!(timed("next", at_head.next()).await.expect("next").is_none());
        let mut unavailable = timed(
            "read",
            client.read(ReadRequest {
                journal: "test/contract".into(),
                offset: second.end,
                end_offset: second.end + 10,
                ..Default::default()
            }),
        )
        .await
        .expect("read");
        assert!(matches!(
            timed("next", unavailable.next()).await,
            Err(BrokerError::OffsetNotYetAvailable { offset, .. }) if offset == second.end
        ));
    }

    #[tokio::test]
    async fn broker_errors_come_back_as_the_same_variants() {
        let served = start().await;
        let client = connect(served.addr).await;
        create(&served.broker, [JournalSpec::new("test/errors")]).await;
        let registers: LabelSet = "author=1".parse().expect("labels");
        client
            .append(AppendRequest {
                union_registers: registers.clone(),
                ..append_request("test/errors", b"a")
            })
            .await
            .expect("append");
        let fenced = client
            .append(AppendRequest {
                check_registers: Some("author=2".parse().expect("selector")),
                ..append_request("test/errors", b"b")
            })
            .await;
        assert!(matches!(
            fenced,
            Err(BrokerError::RegisterMismatch { journal, registers: current })
                if journal == "test/errors" && current == registers
        ));
        let wrong = client
            .append(AppendRequest {
                expect_offset: Some(5),
                ..append_request("test/errors", b"c")
            })
            .await;
        assert!(matches!(
            wrong,
            Err(BrokerError::WrongAppendOffset {
                expected: 5,
                write_head: 1,
                ..
            })
        ));
        // Expecting an empty journal travels in weir's extension, and the
        // server keeps the check.
        let not_empty = client
            .append(AppendRequest {
                expect_offset: Some(0),
                ..append_request("test/errors", b"d")
            })
            .await;
        assert!(
            matches!(
                not_empty,
                Err(BrokerError::WrongAppendOffset { expected: 0, .. })
            ),
            "{not_empty:?}"
        );
        assert!(matches!(
            client.append(append_request("test/missing", b"x")).await,
            Err(BrokerError::JournalNotFound(j)) if j == "test/missing"
        ));
        let read_missing = client
            .read(ReadRequest {
                journal: "test/missing".into(),
                ..Default::default()
            })
            .await;
        assert!(matches!(read_missing, Err(BrokerError::JournalNotFound(_))));
        let bad_offset = client
            .read(ReadRequest {
                journal: "test/errors".into(),
                offset: -7,
                ..Default::default()
            })
            .await;
        assert!(matches!(bad_offset, Err(BrokerError::InvalidArgument(m)) if m.contains("offset")));
        let bad_spec = client
            .apply(vec![JournalChange::Upsert(JournalSpec {
                replication: 0,
                ..JournalSpec::new("test/bad")
            })])
            .await;
        assert!(
            matches!(bad_spec, Err(BrokerError::InvalidArgument(m)) if m.contains("replication"))
        );
        assert!(matches!(
            client
                .apply(vec![JournalChange::Delete("test/missing".into())])
                .await,
            Err(BrokerError::JournalNotFound(_))
        ));
        assert_eq!(served.broker.write_head("test/errors").expect("head"), 1);
    }

    #[tokio::test]
    async fn connecting_refuses_bad_endpoints_and_gives_up_on_a_dead_one() {
        for bad in ["", "no-port", "https://127.0.0.1:1"] {
            assert!(
                matches!(
                    GrpcJournalClient::connect(bad, quick()).await,
                    Err(BrokerError::InvalidArgument(_))
                ),
                "{bad:?}"
            );
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let policy = RetryPolicy {
            max_elapsed: Some(Duration::from_millis(300)),
            ..quick()
        };
        let started = Instant::now();
        let dead = timed(
            "connect",
            GrpcJournalClient::connect(&format!("http://{addr}"), policy),
        )
        .await;
        assert!(matches!(dead, Err(BrokerError::Unavailable(_))), "{dead:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// A broker and server on their own thread and runtime: stopping it
    /// drops every connection, as a process exit would.
    struct ServerProcess {
        stop: oneshot::Sender<()>,
        thread: std::thread::JoinHandle<()>,
    }

    impl ServerProcess {
        fn start(dir: PathBuf, addr: SocketAddr) -> ServerProcess {
            let (stop, stopped) = oneshot::channel::<()>();
            let (ready, is_ready) = std::sync::mpsc::channel();
            let thread = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    let broker = Broker::open(&dir, BrokerConfig::default())
                        .await
                        .expect("open");
                    let listener = TcpListener::bind(addr).await.expect("bind the same port");
                    serve_on(listener, broker.clone(), JournalServiceConfig::default()).await;
                    ready.send(()).expect("ready");
                    let _ = stopped.await;
                    broker.shutdown().await;
                });
                // Dropping the runtime drops the server and its connections.
                drop(runtime);
            });
            is_ready
                .recv_timeout(Duration::from_secs(10))
                .expect("server started");
            ServerProcess { stop, thread }
        }

        fn stop(self) {
            let _ = self.stop.send(());
            self.thread.join().expect("server thread");
        }
    }

    #[tokio::test]
    async fn reads_resume_and_appends_complete_across_a_server_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let server = ServerProcess::start(dir.path().to_path_buf(), addr);
        let client = connect(addr).await;
        client
            .apply(vec![JournalChange::Upsert(JournalSpec::new(
                "test/restart",
            ))])
            .await
            .expect("apply");
        client
            .append(append_request("test/restart", b"one,"))
            .await
            .expect("append");
        let mut tail = timed(
            "read",
            client.read(ReadRequest {
                journal: "test/restart".into(),
                block: true,
                ..Default::default()
            }),
        )
        .await
        .expect("read");
        let chunk = timed("first", tail.next())
            .await
            .expect("next")
            .expect("chunk");
        assert_eq!((chunk.offset, &chunk.content[..]), (0, &b"one,"[..]));

        let stopping = tokio::task::spawn_blocking(move || server.stop());
        timed("stop", stopping).await.expect("stopped");
        let appender = client.clone();
        let append = tokio::spawn(async move {
            appender
                .append(append_request("test/restart", b"two,"))
                .await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let server = ServerProcess::start(dir.path().to_path_buf(), addr);

        let committed = timed("append across the restart", append)
            .await
            .expect("task")
            .expect("append");
        assert_eq!((committed.begin, committed.end), (4, 8));
        let chunk = timed("resumed", tail.next())
            .await
            .expect("next")
            .expect("chunk");
        assert_eq!((chunk.offset, &chunk.content[..]), (4, &b"two,"[..]));
        let listed = client.list(&LabelSelector::all()).await.expect("list");
        assert_eq!(listed.len(), 1);
        drop(tail);
        tokio::task::spawn_blocking(move || server.stop())
            .await
            .expect("stopped");
    }
}
