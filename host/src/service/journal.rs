//! Gazette's `protocol.Journal` gRPC service over weir's embedded
//! [`Broker`].
//!
//! | RPC | behaviour |
//! |---|---|
//! | `List` | journals matching a selector, sorted by name, at most [`DEFAULT_LIST_RESPONSE_JOURNALS`](limits::DEFAULT_LIST_RESPONSE_JOURNALS) per message; with `watch`, each snapshot ends with an empty message, and a new snapshot follows whenever the matching set or one of its specs changes, until the client goes away |
//! | `Apply` | changes applied atomically, each conditional on `expect_mod_revision`; a mismatch is `ETCD_TRANSACTION_FAILED` and changes nothing |
//! | `Read` | see the `journal_read` module |
//! | `Append` | see the `journal_append` module |
//! | `ListFragments` | the fragment index, `page_limit` at a time |
//!
//! Malformed requests get `INVALID_ARGUMENT` naming the field; Gazette's
//! statuses (`JOURNAL_NOT_FOUND`, …) travel in responses; the rest of the
//! error mapping is in the `convert` module. Nothing here panics on input.
//!
//! weir has one broker and no etcd: headers carry the registry revision,
//! routes have no members, and `do_not_proxy`, `min_etcd_revision`,
//! `begin_mod_time` (of reads) and `signatureTTL` are accepted and ignored.

use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{self, status_of};
use super::metrics::JournalMetrics;
use super::process::ProcessIdentity;
use super::{journal_append, journal_read};
use crate::broker::{ApplyOutcome, Broker, BrokerError, LabelSelector, Listing};
use crate::limits;
use crate::protocol::gazette::journal_server::{Journal, JournalServer};
use crate::protocol::gazette::{self as wire, Status as WireStatus};

/// Gazette's largest `page_limit` of ListFragments.
pub const MAX_FRAGMENTS_PAGE_LIMIT: i32 = 10_000;
/// Snapshot messages buffered ahead of a slow List watcher.
const LIST_WATCH_BUFFER: usize = 4;

/// Limits of a [`JournalService`]; [`Default`] takes the named defaults of
/// [`limits`].
#[derive(Debug, Clone)]
pub struct JournalServiceConfig {
    /// Largest append, in bytes.
    pub max_append_size: usize,
    /// Slowest an append stream may send after its burst, in bytes per
    /// second; 0 disables the check.
    pub min_append_rate: u64,
    /// How far an append stream may fall behind `min_append_rate`.
    pub append_burst: Duration,
    /// Most content bytes per Read response.
    pub read_chunk_size: usize,
    /// Largest message received, in bytes.
    pub max_recv_size: usize,
    /// Largest message sent, in bytes.
    pub max_send_size: usize,
}

impl Default for JournalServiceConfig {
    fn default() -> Self {
        JournalServiceConfig {
            max_append_size: limits::DEFAULT_MAX_APPEND_SIZE,
            min_append_rate: limits::DEFAULT_MIN_APPEND_RATE,
            append_burst: Duration::from_millis(limits::DEFAULT_APPEND_BURST_MS),
            read_chunk_size: limits::DEFAULT_READ_CHUNK_SIZE,
            max_recv_size: limits::DEFAULT_GRPC_MAX_RECV_SIZE,
            max_send_size: limits::DEFAULT_GRPC_MAX_SEND_SIZE,
        }
    }
}

/// The Journal service: a cheap, cloneable handle on a [`Broker`].
#[derive(Debug, Clone)]
pub struct JournalService {
    broker: Broker,
    config: JournalServiceConfig,
    identity: ProcessIdentity,
    metrics: JournalMetrics,
}

impl JournalService {
    /// The service over `broker`, with the default limits.
    pub fn new(broker: Broker) -> JournalService {
        JournalService::with_config(broker, JournalServiceConfig::default())
    }

    /// The service over `broker` with `config`. A read chunk size of 0 is
    /// taken as 1.
    pub fn with_config(broker: Broker, config: JournalServiceConfig) -> JournalService {
        JournalService {
            broker,
            config,
            identity: ProcessIdentity::unbound(),
            metrics: JournalMetrics::default(),
        }
    }

    /// This service counting appends and reads into `metrics`.
    pub fn with_metrics(mut self, metrics: JournalMetrics) -> JournalService {
        self.metrics = metrics;
        self
    }

    /// This service answering as `identity` (its headers and routes).
    pub fn with_identity(mut self, identity: ProcessIdentity) -> JournalService {
        self.identity = identity;
        self
    }

    /// The tonic server of this service, with its message size limits set.
    pub fn into_server(self) -> JournalServer<JournalService> {
        let (recv, send) = (self.config.max_recv_size, self.config.max_send_size);
        JournalServer::new(self)
            .max_decoding_message_size(recv)
            .max_encoding_message_size(send)
    }

    fn revision(&self) -> i64 {
        *self.broker.watch_registry().borrow()
    }
}

/// The messages of one List snapshot: full pages, the first with the
/// header; for a watch, then the empty end-of-snapshot message (which
/// carries the header if the snapshot is empty).
fn snapshot(listing: &Listing, watch: bool, identity: &ProcessIdentity) -> Vec<wire::ListResponse> {
    let mut messages: Vec<wire::ListResponse> = listing
        .journals
        .chunks(limits::DEFAULT_LIST_RESPONSE_JOURNALS.max(1))
        .map(|page| wire::ListResponse {
            journals: page
                .iter()
                .map(|listed| wire::list_response::Journal {
                    spec: Some(convert::spec_to_wire(&listed.spec)),
                    mod_revision: listed.revisions.modify,
                    route: Some(identity.route(true)),
                    create_revision: listed.revisions.create,
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    if watch || messages.is_empty() {
        messages.push(wire::ListResponse::default());
    }
    if let Some(first) = messages.first_mut() {
        first.header = Some(identity.header(listing.revision));
    }
    messages
}

/// What a watcher compares to decide whether to send a new snapshot.
fn fingerprint(listing: &Listing) -> Vec<(String, i64)> {
    listing
        .journals
        .iter()
        .map(|listed| (listed.spec.name.clone(), listed.revisions.modify))
        .collect()
}

/// A List watch: what to match, who answers, and where to resume.
struct Watch {
    broker: Broker,
    selector: LabelSelector,
    identity: ProcessIdentity,
    /// Gazette's `watch_resume`: the client holds the snapshot as of this
    /// registry revision, so the first snapshot waits for a later one.
    resume_after: Option<i64>,
}

/// Streams snapshots of the watch's selector into `out` until the client
/// goes away or the broker shuts down.
async fn watch(
    spec: Watch,
    first: Listing,
    mut changes: tokio::sync::watch::Receiver<i64>,
    out: mpsc::Sender<Result<wire::ListResponse, Status>>,
) {
    // `None` until a snapshot was sent: the first one after a resume goes
    // out whatever it holds, as the client's copy is of an older revision.
    let mut sent = None;
    let mut listing = first;
    loop {
        let resumed = spec
            .resume_after
            .is_none_or(|after| listing.revision > after);
        let now = fingerprint(&listing);
        if resumed && sent.as_ref() != Some(&now) {
            for message in snapshot(&listing, true, &spec.identity) {
                if out.send(Ok(message)).await.is_err() {
                    return;
                }
            }
            sent = Some(now);
        }
        tokio::select! {
            () = out.closed() => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    let _ = out.send(Err(Status::unavailable("the broker shut down"))).await;
                    return;
                }
            }
        }
        listing = match spec.broker.list_journals(&spec.selector) {
            Ok(listing) => listing,
            Err(err) => {
                let _ = out.send(Err(status_of(&err))).await;
                return;
            }
        };
    }
}

/// The validated `page_limit` of a ListFragments request.
fn page_limit(request: &wire::FragmentsRequest) -> Result<usize, Status> {
    match request.page_limit {
        0 => Ok(limits::DEFAULT_FRAGMENTS_PAGE_LIMIT),
        limit @ 1..=MAX_FRAGMENTS_PAGE_LIMIT => Ok(usize::try_from(limit).unwrap_or(1)),
        limit => Err(Status::invalid_argument(format!(
            "page_limit: {limit} is not within 0..={MAX_FRAGMENTS_PAGE_LIMIT}"
        ))),
    }
}

fn validate_fragments_request(request: &wire::FragmentsRequest) -> Result<usize, Status> {
    crate::broker::spec::validate_journal_name(&request.journal)
        .map_err(|err| Status::invalid_argument(format!("journal: {err}")))?;
    if request.end_mod_time != 0 && request.end_mod_time < request.begin_mod_time {
        return Err(Status::invalid_argument(format!(
            "end_mod_time: {} is before begin_mod_time {}",
            request.end_mod_time, request.begin_mod_time
        )));
    }
    if request.next_page_token < 0 {
        return Err(Status::invalid_argument(format!(
            "next_page_token: {} is negative",
            request.next_page_token
        )));
    }
    if let Some(ttl) = &request.signature_ttl
        && (ttl.seconds < 0 || (ttl.seconds == 0 && ttl.nanos <= 0))
    {
        return Err(Status::invalid_argument("signatureTTL: must be positive"));
    }
    page_limit(request)
}

#[tonic::async_trait]
impl Journal for JournalService {
    type ListStream = BoxStream<'static, Result<wire::ListResponse, Status>>;
    type ReadStream = ReceiverStream<Result<wire::ReadResponse, Status>>;

    async fn list(
        &self,
        request: Request<wire::ListRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let request = request.into_inner();
        let selector = convert::selector_from_wire(request.selector.as_ref(), "selector")
            .map_err(|err| status_of(&err))?;
        let resume_after = match (&request.watch_resume, request.watch) {
            (None, _) => None,
            (Some(_), false) => {
                return Err(Status::invalid_argument(
                    "watch_resume: only allowed with watch",
                ));
            }
            (Some(header), true) => Some(header.etcd.as_ref().map_or(0, |etcd| etcd.revision)),
        };
        // Subscribed before listing, so no change can slip in between.
        let changes = self.broker.watch_registry();
        let listing = self
            .broker
            .list_journals(&selector)
            .map_err(|err| status_of(&err))?;
        if !request.watch {
            let messages = snapshot(&listing, false, &self.identity)
                .into_iter()
                .map(Ok);
            return Ok(Response::new(stream::iter(messages).boxed()));
        }
        let (out, messages) = mpsc::channel(LIST_WATCH_BUFFER);
        let spec = Watch {
            broker: self.broker.clone(),
            selector,
            identity: self.identity.clone(),
            resume_after,
        };
        tokio::spawn(watch(spec, listing, changes, out));
        Ok(Response::new(ReceiverStream::new(messages).boxed()))
    }

    async fn apply(
        &self,
        request: Request<wire::ApplyRequest>,
    ) -> Result<Response<wire::ApplyResponse>, Status> {
        let changes = request.into_inner().changes;
        if changes.is_empty() {
            return Err(Status::invalid_argument(
                "changes: expected at least one change",
            ));
        }
        let changes = changes
            .into_iter()
            .enumerate()
            .map(|(index, change)| {
                convert::change_from_wire(change).map_err(|err| {
                    Status::invalid_argument(format!(
                        "changes[{index}]: {}",
                        status_of(&err).message()
                    ))
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let status = match self.broker.apply_expecting(changes).await {
            Ok(ApplyOutcome::Applied { .. }) => WireStatus::Ok,
            Ok(ApplyOutcome::RevisionMismatch {
                journal,
                expected,
                actual,
            }) => {
                tracing::debug!(
                    journal,
                    ?expected,
                    ?actual,
                    "Apply refused: revision mismatch"
                );
                WireStatus::EtcdTransactionFailed
            }
            Err(BrokerError::JournalNotFound(_)) => WireStatus::JournalNotFound,
            Err(err) => return Err(status_of(&err)),
        };
        Ok(Response::new(wire::ApplyResponse {
            status: status as i32,
            header: Some(self.identity.header(self.revision())),
        }))
    }

    async fn read(
        &self,
        request: Request<wire::ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let header = self.identity.header(self.revision());
        let chunk_size = self.config.read_chunk_size.max(1);
        let stream = journal_read::read(
            self.broker.clone(),
            request.into_inner(),
            header,
            chunk_size,
            self.metrics.clone(),
        )
        .await?;
        Ok(Response::new(stream))
    }

    async fn append(
        &self,
        request: Request<Streaming<wire::AppendRequest>>,
    ) -> Result<Response<wire::AppendResponse>, Status> {
        let pace = journal_append::Pace::new(self.config.min_append_rate, self.config.append_burst);
        let mut response = journal_append::append(
            &self.broker,
            request.into_inner(),
            pace,
            self.config.max_append_size,
            &self.metrics,
        )
        .await?;
        response.header = Some(self.identity.header(self.revision()));
        Ok(Response::new(response))
    }

    async fn list_fragments(
        &self,
        request: Request<wire::FragmentsRequest>,
    ) -> Result<Response<wire::FragmentsResponse>, Status> {
        let request = request.into_inner();
        let limit = validate_fragments_request(&request)?;
        let header = Some(self.identity.header(self.revision()));
        let fragments = match self.broker.fragments(&request.journal).await {
            Ok(fragments) => fragments,
            Err(BrokerError::JournalNotFound(_)) => {
                return Ok(Response::new(wire::FragmentsResponse {
                    status: WireStatus::JournalNotFound as i32,
                    header,
                    ..Default::default()
                }));
            }
            Err(err) => return Err(status_of(&err)),
        };
        let mut selected = fragments.iter().filter(|fragment| {
            let mod_time = fragment.mod_time.map_or(0, convert::unix_seconds);
            fragment.begin >= request.next_page_token
                && mod_time >= request.begin_mod_time
                && (request.end_mod_time == 0 || mod_time < request.end_mod_time)
        });
        let page: Vec<wire::fragments_response::Fragment> = selected
            .by_ref()
            .take(limit)
            .map(|fragment| wire::fragments_response::Fragment {
                spec: Some(convert::fragment_info_to_wire(&request.journal, fragment)),
                signed_url: String::new(),
            })
            .collect();
        // The next page starts at the next fragment's begin, which follows
        // at least one listed fragment, so it is never 0 ("no more pages").
        let next_page_token = selected.next().map_or(0, |fragment| fragment.begin);
        Ok(Response::new(wire::FragmentsResponse {
            status: WireStatus::Ok as i32,
            header,
            fragments: page,
            next_page_token,
        }))
    }
}

#[cfg(test)]
pub(crate) mod test {
    use std::future::Future;
    use std::net::SocketAddr;
    use std::sync::Arc;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use tempfile::TempDir;
    use tokio::net::TcpListener;
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::Code;
    use tonic::transport::{Channel, Server};

    use super::*;
    use crate::broker::{BrokerConfig, JournalChange, JournalClient, JournalSpec};

    pub(crate) type WireClient = wire::journal_client::JournalClient<Channel>;

    /// Fails the test instead of hanging it.
    pub(crate) async fn timed<T>(what: &str, future: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), future)
            .await
            .unwrap_or_else(|_| panic!("{what} timed out"))
    }

    /// Serves `broker` on 127.0.0.1 and an ephemeral port, on `listener` if
    /// given, until the runtime ends.
    pub(crate) async fn serve_on(
        listener: TcpListener,
        broker: Broker,
        config: JournalServiceConfig,
    ) -> SocketAddr {
        let addr = listener.local_addr().expect("addr");
        let service = JournalService::with_config(broker, config).into_server();
        tokio::spawn(
            Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        addr
    }

    /// A broker on a temporary directory, served.
    pub(crate) struct Served {
        pub broker: Broker,
        pub addr: SocketAddr,
        pub client: WireClient,
        _dir: TempDir,
    }

    pub(crate) async fn start_with(config: JournalServiceConfig, broker: BrokerConfig) -> Served {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = Broker::open(dir.path(), broker).await.expect("open");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = serve_on(listener, broker.clone(), config).await;
        let client = WireClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        Served {
            broker,
            addr,
            client,
            _dir: dir,
        }
    }

    pub(crate) async fn start() -> Served {
        start_with(JournalServiceConfig::default(), BrokerConfig::default()).await
    }

    pub(crate) async fn create(broker: &Broker, specs: impl IntoIterator<Item = JournalSpec>) {
        let changes = specs.into_iter().map(JournalChange::Upsert).collect();
        broker.apply(changes).await.expect("create");
    }

    fn labeled(name: &str, labels: &str) -> JournalSpec {
        JournalSpec::new(name).with_labels(labels.parse().expect("labels"))
    }

    fn selector(text: &str) -> Option<wire::LabelSelector> {
        let selector: LabelSelector = text.parse().expect("selector");
        Some(convert::selector_to_wire(&selector))
    }

    async fn list_all(
        client: &mut WireClient,
        request: wire::ListRequest,
    ) -> Result<Vec<wire::ListResponse>, Status> {
        let mut responses = client.list(request).await?.into_inner();
        let mut all = Vec::new();
        while let Some(response) = timed("list", responses.message()).await? {
            all.push(response);
        }
        Ok(all)
    }

    fn names(responses: &[wire::ListResponse]) -> Vec<String> {
        responses
            .iter()
            .flat_map(|r| &r.journals)
            .filter_map(|j| j.spec.as_ref().map(|s| s.name.clone()))
            .collect()
    }

    #[tokio::test]
    async fn list_pages_by_25_in_name_order_with_selectors_and_meta_labels() {
        let mut served = start().await;
        let mut specs: Vec<JournalSpec> = (0..27)
            .rev()
            .map(|i| labeled(&format!("test/part-{i:03}"), "kind=chunk"))
            .collect();
        specs.push(labeled("other/sums", "kind=sum"));
        specs.push(JournalSpec::new("other/plain"));
        create(&served.broker, specs).await;

        let all = list_all(&mut served.client, wire::ListRequest::default())
            .await
            .expect("list");
        assert_eq!(all.len(), 2, "29 journals are two messages");
        assert!(all.iter().all(|r| r.journals.len() <= 25));
        assert_eq!(all[0].journals.len(), 25);
        assert!(all[0].header.is_some() && all[1].header.is_none());
        let listed = names(&all);
        let mut sorted = listed.clone();
        sorted.sort();
        assert_eq!(listed, sorted);
        assert_eq!(listed.len(), 29);
        let first = &all[0].journals[0];
        assert!(first.mod_revision > 0 && first.create_revision > 0);

        let list = |text: &str| wire::ListRequest {
            selector: selector(text),
            ..Default::default()
        };
        let chunks = list_all(&mut served.client, list("kind=chunk"))
            .await
            .expect("list");
        assert_eq!(names(&chunks).len(), 27);
        let sums = list_all(&mut served.client, list("kind in (sum),!retired")).await;
        assert_eq!(names(&sums.expect("list")), ["other/sums"]);
        let by_name = list_all(&mut served.client, list("name=test/part-007")).await;
        assert_eq!(names(&by_name.expect("list")), ["test/part-007"]);
        let by_prefix = list_all(&mut served.client, list("prefix=other/")).await;
        assert_eq!(
            names(&by_prefix.expect("list")),
            ["other/plain", "other/sums"]
        );
        let none = list_all(&mut served.client, list("kind=nothing"))
            .await
            .expect("list");
        assert_eq!(
            none.len(),
            1,
            "an empty listing is one message with a header"
        );
        assert!(none[0].journals.is_empty() && none[0].header.is_some());

        let unterminated = wire::ListRequest {
            selector: Some(wire::LabelSelector {
                include: Some(wire::LabelSet {
                    labels: vec![wire::Label {
                        name: "prefix".into(),
                        value: "other".into(),
                        prefix: false,
                    }],
                }),
                exclude: None,
            }),
            ..Default::default()
        };
        let err = list_all(&mut served.client, unterminated)
            .await
            .expect_err("invalid");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("selector"), "{}", err.message());
    }

    /// The next watch snapshot: journal names and mod revisions.
    async fn next_snapshot(responses: &mut Streaming<wire::ListResponse>) -> Vec<(String, i64)> {
        let mut snapshot = Vec::new();
        loop {
            let response = timed("watch", responses.message())
                .await
                .expect("watch")
                .expect("open");
            if response.journals.is_empty() {
                return snapshot;
            }
            snapshot.extend(
                response
                    .journals
                    .into_iter()
                    .map(|j| (j.spec.map(|s| s.name).unwrap_or_default(), j.mod_revision)),
            );
        }
    }

    #[tokio::test]
    async fn a_list_watch_sends_a_new_snapshot_when_its_matching_set_changes() {
        let mut served = start().await;
        create(&served.broker, [JournalSpec::new("watched/a")]).await;
        let request = wire::ListRequest {
            selector: selector("prefix=watched/"),
            watch: true,
            ..Default::default()
        };
        let mut responses = served
            .client
            .list(request)
            .await
            .expect("watch")
            .into_inner();
        let first = next_snapshot(&mut responses).await;
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].0, "watched/a");

        create(&served.broker, [JournalSpec::new("watched/b")]).await;
        let second = next_snapshot(&mut responses).await;
        let names: Vec<&str> = second.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["watched/a", "watched/b"]);

        // A change outside the selector sends nothing; a spec change inside
        // it does.
        create(&served.broker, [JournalSpec::new("elsewhere/x")]).await;
        create(&served.broker, [labeled("watched/a", "kind=new")]).await;
        let third = next_snapshot(&mut responses).await;
        assert_eq!(third[1], second[1]);
        assert!(third[0].1 > second[0].1, "{third:?} after {second:?}");
    }

    async fn apply(
        client: &mut WireClient,
        changes: Vec<wire::apply_request::Change>,
    ) -> Result<wire::ApplyResponse, Status> {
        timed("apply", client.apply(wire::ApplyRequest { changes }))
            .await
            .map(Response::into_inner)
    }

    fn upsert(spec: &JournalSpec, expect_mod_revision: i64) -> wire::apply_request::Change {
        wire::apply_request::Change {
            expect_mod_revision,
            upsert: Some(convert::spec_to_wire(spec)),
            delete: String::new(),
        }
    }

    #[tokio::test]
    async fn apply_is_all_or_nothing_and_checks_expect_mod_revision() {
        let mut served = start().await;
        let (a, b, c) = (
            JournalSpec::new("test/a"),
            JournalSpec::new("test/b"),
            JournalSpec::new("test/c"),
        );
        let created = apply(&mut served.client, vec![upsert(&a, 0), upsert(&b, 0)])
            .await
            .expect("apply");
        assert_eq!(created.status, WireStatus::Ok as i32);
        let revision = created.header.and_then(|h| h.etcd).map(|e| e.revision);
        let revision = revision.expect("revision");
        let again = apply(&mut served.client, vec![upsert(&a, 0)])
            .await
            .expect("apply");
        assert_eq!(again.status, WireStatus::EtcdTransactionFailed as i32);

        // One stale expectation refuses every change.
        let relabeled = labeled("test/a", "kind=x");
        let stale = apply(
            &mut served.client,
            vec![
                upsert(&relabeled, revision),
                upsert(&c, 0),
                upsert(&b, revision - 1),
            ],
        )
        .await
        .expect("apply");
        assert_eq!(stale.status, WireStatus::EtcdTransactionFailed as i32);
        let listed = served
            .broker
            .list(&LabelSelector::all())
            .await
            .expect("list");
        assert_eq!(listed, vec![a.clone(), b.clone()]);

        let current = apply(
            &mut served.client,
            vec![upsert(&relabeled, revision), upsert(&c, -1)],
        )
        .await
        .expect("apply");
        assert_eq!(current.status, WireStatus::Ok as i32);
        let listed = served
            .broker
            .list(&LabelSelector::all())
            .await
            .expect("list");
        assert_eq!(listed, vec![relabeled, b, c]);

        // A malformed change refuses the request, naming the change.
        let bad = JournalSpec {
            replication: 0,
            ..JournalSpec::new("test/d")
        };
        let err = apply(
            &mut served.client,
            vec![upsert(&JournalSpec::new("test/e"), 0), upsert(&bad, 0)],
        )
        .await
        .expect_err("invalid");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("changes[1]") && err.message().contains("replication"));
        assert_eq!(
            served
                .broker
                .list(&LabelSelector::all())
                .await
                .expect("list")
                .len(),
            3
        );
        let empty = apply(&mut served.client, vec![]).await.expect_err("empty");
        assert_eq!(empty.code(), Code::InvalidArgument);

        let delete = |name: &str, expect| wire::apply_request::Change {
            expect_mod_revision: expect,
            upsert: None,
            delete: name.into(),
        };
        let missing = apply(&mut served.client, vec![delete("test/zz", -1)])
            .await
            .expect("apply");
        assert_eq!(missing.status, WireStatus::JournalNotFound as i32);
        let deleted = apply(&mut served.client, vec![delete("test/c", -1)])
            .await
            .expect("apply");
        assert_eq!(deleted.status, WireStatus::Ok as i32);
    }

    async fn read_all(
        client: &mut WireClient,
        request: wire::ReadRequest,
    ) -> Result<Vec<wire::ReadResponse>, Status> {
        let mut responses = timed("read", client.read(request)).await?.into_inner();
        let mut all = Vec::new();
        while let Some(response) = timed("read", responses.message()).await? {
            all.push(response);
        }
        Ok(all)
    }

    fn read_request(journal: &str, offset: i64) -> wire::ReadRequest {
        wire::ReadRequest {
            journal: journal.into(),
            offset,
            ..Default::default()
        }
    }

    async fn append_bytes(broker: &Broker, journal: &str, content: Vec<u8>) -> i64 {
        let request = crate::broker::AppendRequest {
            journal: journal.into(),
            content: content.into(),
            ..Default::default()
        };
        broker.append(request).await.expect("append").end
    }

    #[tokio::test]
    async fn reads_send_metadata_before_content_in_capped_chunks_per_fragment() {
        let broker_config = BrokerConfig {
            fragment_length: 64 << 10,
            // Larger than the service's cap, which must still hold.
            read_chunk_size: 1 << 20,
            ..BrokerConfig::default()
        };
        let mut served = start_with(JournalServiceConfig::default(), broker_config).await;
        create(&served.broker, [JournalSpec::new("test/shape")]).await;
        let mut expected = Vec::new();
        for i in 0..3u8 {
            let content = vec![b'a' + i; 40_000];
            expected.extend_from_slice(&content);
            append_bytes(&served.broker, "test/shape", content).await;
        }
        let head = expected.len() as i64;
        let responses = read_all(&mut served.client, read_request("test/shape", 0))
            .await
            .expect("read");

        let first = &responses[0];
        assert_eq!(first.status, WireStatus::Ok as i32);
        assert!(first.header.is_some() && first.content.is_empty());
        assert_eq!((first.offset, first.write_head), (0, head));
        let fragment = first.fragment.as_ref().expect("fragment");
        assert_eq!(
            (fragment.journal.as_str(), fragment.begin),
            ("test/shape", 0)
        );
        assert_eq!(
            fragment.compression_codec,
            wire::CompressionCodec::None as i32
        );

        let last = responses.last().expect("last");
        assert_eq!(last.status, WireStatus::OffsetNotYetAvailable as i32);
        assert_eq!((last.offset, last.write_head), (head, head));

        let mut content = Vec::new();
        let mut fragments = Vec::new();
        for response in &responses[..responses.len() - 1] {
            if response.content.is_empty() {
                let fragment = response.fragment.as_ref().expect("metadata has a fragment");
                assert_eq!(
                    response.offset,
                    content.len() as i64,
                    "metadata precedes its content"
                );
                assert_eq!(fragment.begin, response.offset);
                fragments.push((fragment.begin, fragment.end));
                continue;
            }
            assert!(response.content.len() <= limits::DEFAULT_READ_CHUNK_SIZE);
            assert!(response.header.is_none() && response.fragment.is_none());
            assert_eq!((response.status, response.write_head), (0, 0));
            assert_eq!(response.offset, content.len() as i64);
            let (begin, end) = *fragments.last().expect("a fragment was described");
            assert!(
                begin <= response.offset
                    && response.offset + (response.content.len() as i64) <= end
            );
            content.extend_from_slice(&response.content);
        }
        assert_eq!(content, expected);
        assert_eq!(fragments, vec![(0, 80_000), (80_000, 120_000)]);
    }

    #[tokio::test]
    async fn reads_resolve_the_head_stop_at_end_offset_and_block_for_appends() {
        let mut served = start().await;
        create(&served.broker, [JournalSpec::new("test/read")]).await;
        append_bytes(&served.broker, "test/read", b"hello world".to_vec()).await;

        let bounded = wire::ReadRequest {
            end_offset: 5,
            ..read_request("test/read", 0)
        };
        let responses = read_all(&mut served.client, bounded).await.expect("read");
        let content: Vec<u8> = responses.iter().flat_map(|r| r.content.clone()).collect();
        assert_eq!(content, b"hello");
        assert!(responses.iter().all(|r| r.status == WireStatus::Ok as i32));

        let at_head = read_all(&mut served.client, read_request("test/read", -1))
            .await
            .expect("read");
        assert_eq!(at_head.len(), 2, "{at_head:?}");
        assert_eq!(
            (at_head[0].offset, at_head[0].status),
            (11, WireStatus::Ok as i32)
        );
        assert_eq!(at_head[1].status, WireStatus::OffsetNotYetAvailable as i32);

        let metadata_only = wire::ReadRequest {
            metadata_only: true,
            ..read_request("test/read", 3)
        };
        let metadata = read_all(&mut served.client, metadata_only)
            .await
            .expect("read");
        assert_eq!(metadata.len(), 1);
        assert_eq!((metadata[0].offset, metadata[0].write_head), (3, 11));

        let missing = read_all(&mut served.client, read_request("test/nothing", 0))
            .await
            .expect("read");
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].status, WireStatus::JournalNotFound as i32);

        let tail = wire::ReadRequest {
            block: true,
            ..read_request("test/read", -1)
        };
        let mut responses = served.client.read(tail).await.expect("read").into_inner();
        let metadata = timed("metadata", responses.message())
            .await
            .expect("ok")
            .expect("open");
        assert_eq!(metadata.offset, 11);
        append_bytes(&served.broker, "test/read", b"!".to_vec()).await;
        let mut woken = Vec::new();
        while woken.is_empty() {
            let response = timed("woken", responses.message())
                .await
                .expect("ok")
                .expect("open");
            woken = response.content;
        }
        assert_eq!(woken, b"!");
    }

    #[tokio::test]
    async fn damaged_content_ends_a_read_with_data_loss_and_is_never_sent() {
        let disk = crate::broker::sim::SimBackend::new();
        let broker_config = BrokerConfig::with_backend(Arc::new(disk.clone()));
        let root = "/data";
        let broker = Broker::open(root, broker_config.clone())
            .await
            .expect("open");
        create(&broker, [JournalSpec::new("test/damaged")]).await;
        append_bytes(&broker, "test/damaged", b"first".to_vec()).await;
        append_bytes(&broker, "test/damaged", b"second".to_vec()).await;
        let spool = disk
            .files()
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "spool"))
            .expect("spool");
        // Two records, each a header and its content: flip a content byte
        // of the second.
        let header = (disk.file_len(&spool).expect("len") - 11) / 2;
        disk.corrupt(&spool, header + 5 + header + 1)
            .expect("corrupt");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = serve_on(listener, broker, JournalServiceConfig::default()).await;
        let mut client = WireClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let mut responses = client
            .read(read_request("test/damaged", 0))
            .await
            .expect("read")
            .into_inner();
        let mut content = Vec::new();
        let status = loop {
            match timed("read", responses.message()).await {
                Ok(Some(response)) => content.extend_from_slice(&response.content),
                Ok(None) => panic!("the stream ended without an error"),
                Err(status) => break status,
            }
        };
        assert_eq!(content, b"first");
        assert_eq!(status.code(), Code::DataLoss);
        assert!(
            status.message().contains("test/damaged"),
            "{}",
            status.message()
        );
        assert_eq!(
            status
                .metadata()
                .get(convert::CORRUPT_OFFSET_KEY)
                .and_then(|v| v.to_str().ok()),
            Some("5")
        );
    }

    fn params(journal: &str) -> wire::AppendRequest {
        wire::AppendRequest {
            journal: journal.into(),
            ..Default::default()
        }
    }

    fn chunk(content: &[u8]) -> wire::AppendRequest {
        wire::AppendRequest {
            content: content.to_vec(),
            ..Default::default()
        }
    }

    async fn append_messages(
        client: &mut WireClient,
        messages: Vec<wire::AppendRequest>,
    ) -> Result<wire::AppendResponse, Status> {
        timed("append", client.append(tokio_stream::iter(messages)))
            .await
            .map(Response::into_inner)
    }

    #[tokio::test]
    async fn appends_commit_on_an_empty_chunk_and_roll_back_without_it() {
        let mut served = start().await;
        create(&served.broker, [JournalSpec::new("test/append")]).await;
        let committed = append_messages(
            &mut served.client,
            vec![
                params("test/append"),
                chunk(b"hello "),
                chunk(b"world"),
                chunk(b""),
            ],
        )
        .await
        .expect("append");
        assert_eq!(committed.status, WireStatus::Ok as i32);
        let commit = committed.commit.expect("commit");
        assert_eq!(
            (commit.journal.as_str(), commit.begin, commit.end),
            ("test/append", 0, 11)
        );
        assert_eq!(committed.total_chunks, 2);
        assert!(committed.header.is_some());
        // The commit's sum is the SHA1 of exactly the appended bytes.
        assert_eq!(commit.sum, Some(convert::sha1_sum(b"hello world")));

        let rolled_back = append_messages(
            &mut served.client,
            vec![params("test/append"), chunk(b"lost")],
        )
        .await
        .expect_err("no final chunk");
        assert_eq!(rolled_back.code(), Code::Aborted);
        assert_eq!(
            served.broker.write_head("test/append").expect("head"),
            11,
            "unchanged"
        );

        let barrier = append_messages(&mut served.client, vec![params("test/append"), chunk(b"")])
            .await
            .expect("barrier");
        let commit = barrier.commit.expect("commit");
        assert_eq!((commit.begin, commit.end), (11, 11));
        assert_eq!(commit.sum, Some(wire::Sha1Sum::default()));

        let mut first = params("test/append");
        first.content = b"early".to_vec();
        let early = append_messages(&mut served.client, vec![first, chunk(b"")]).await;
        let early = early.expect_err("content in the first message");
        assert_eq!(early.code(), Code::InvalidArgument);
        assert!(
            early.message().contains("first message"),
            "{}",
            early.message()
        );

        let trailing = append_messages(
            &mut served.client,
            vec![params("test/append"), chunk(b"x"), chunk(b""), chunk(b"y")],
        )
        .await
        .expect_err("content after the final chunk");
        assert_eq!(trailing.code(), Code::InvalidArgument);
        assert_eq!(served.broker.write_head("test/append").expect("head"), 11);

        let missing = append_messages(
            &mut served.client,
            vec![params("test/none"), chunk(b"x"), chunk(b"")],
        )
        .await
        .expect("answered");
        assert_eq!(missing.status, WireStatus::JournalNotFound as i32);
    }

    #[tokio::test]
    async fn journal_flags_forbid_appends_and_reads_with_not_allowed() {
        let mut served = start().await;
        let flagged = |name: &str, flags| JournalSpec {
            flags,
            ..JournalSpec::new(name)
        };
        create(
            &served.broker,
            [
                flagged("test/read-only", crate::broker::spec::O_RDONLY),
                flagged("test/write-only", crate::broker::spec::O_WRONLY),
            ],
        )
        .await;
        let refused = append_messages(
            &mut served.client,
            vec![params("test/read-only"), chunk(b"x"), chunk(b"")],
        )
        .await
        .expect("answered");
        assert_eq!(refused.status, WireStatus::NotAllowed as i32);
        assert_eq!(served.broker.write_head("test/read-only").expect("head"), 0);

        append_bytes(&served.broker, "test/write-only", b"kept".to_vec()).await;
        let mut responses = served
            .client
            .read(read_request("test/write-only", 0))
            .await
            .expect("read")
            .into_inner();
        let first = responses.message().await.expect("answered").expect("one");
        assert_eq!(first.status, WireStatus::NotAllowed as i32);
        assert!(first.content.is_empty());
        assert!(responses.message().await.expect("ends").is_none());
    }

    #[tokio::test]
    async fn a_resumed_watch_waits_for_a_revision_after_the_one_it_holds() {
        let mut served = start().await;
        create(&served.broker, [JournalSpec::new("watched/a")]).await;
        let request = |resume: Option<wire::Header>| wire::ListRequest {
            selector: selector("prefix=watched/"),
            watch: true,
            watch_resume: resume,
        };
        let mut fresh = served.client.list(request(None)).await.expect("watch");
        let held = fresh.get_mut().message().await.expect("ok").expect("first");
        let header = held
            .header
            .clone()
            .expect("the first response has the header");

        let mut resumed = served
            .client
            .list(request(Some(header.clone())))
            .await
            .expect("resumed watch")
            .into_inner();
        // Nothing is sent while the client's snapshot is current.
        let early = tokio::time::timeout(Duration::from_millis(200), resumed.message()).await;
        assert!(early.is_err(), "a resumed watch sent {early:?}");
        create(&served.broker, [JournalSpec::new("watched/b")]).await;
        let next = next_snapshot(&mut resumed).await;
        let names: Vec<&str> = next.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["watched/a", "watched/b"]);

        // A resume point behind the registry gets a snapshot at once.
        let mut stale = header;
        if let Some(etcd) = stale.etcd.as_mut() {
            etcd.revision -= 1;
        }
        let mut behind = served
            .client
            .list(request(Some(stale)))
            .await
            .expect("resumed watch")
            .into_inner();
        assert_eq!(next_snapshot(&mut behind).await.len(), 2);

        let refused = served
            .client
            .list(wire::ListRequest {
                watch: false,
                ..request(held.header)
            })
            .await
            .expect_err("watch_resume without watch");
        assert_eq!(refused.code(), Code::InvalidArgument);
    }

    #[tokio::test]
    async fn appends_report_register_mismatches_and_wrong_offsets_as_statuses() {
        let mut served = start().await;
        create(&served.broker, [JournalSpec::new("test/fenced")]).await;
        let author = |value: &str| {
            convert::label_set_to_wire(&format!("author={value}").parse().expect("labels"))
        };
        let mut take = params("test/fenced");
        take.union_registers = Some(author("1"));
        let taken = append_messages(&mut served.client, vec![take, chunk(b"a"), chunk(b"")])
            .await
            .expect("append");
        assert_eq!(taken.registers, Some(author("1")));

        let mut fenced = params("test/fenced");
        fenced.check_registers = Some(wire::LabelSelector {
            include: Some(author("2")),
            exclude: None,
        });
        let refused = append_messages(&mut served.client, vec![fenced, chunk(b"b"), chunk(b"")])
            .await
            .expect("answered");
        assert_eq!(refused.status, WireStatus::RegisterMismatch as i32);
        assert_eq!(refused.registers, Some(author("1")));

        let mut wrong = params("test/fenced");
        wrong.offset = 7;
        let refused = append_messages(&mut served.client, vec![wrong, chunk(b"c"), chunk(b"")])
            .await
            .expect("answered");
        assert_eq!(refused.status, WireStatus::WrongAppendOffset as i32);
        assert_eq!(refused.commit.map(|c| (c.begin, c.end)), Some((1, 1)));

        let mut right = params("test/fenced");
        right.offset = 1;
        let accepted = append_messages(&mut served.client, vec![right, chunk(b"d"), chunk(b"")])
            .await
            .expect("append");
        assert_eq!(accepted.commit.map(|c| (c.begin, c.end)), Some((1, 2)));
    }

    #[tokio::test]
    async fn appends_over_the_size_limit_or_below_the_minimum_rate_are_refused() {
        let config = JournalServiceConfig {
            max_append_size: 10,
            min_append_rate: 1_000,
            append_burst: Duration::from_millis(100),
            ..JournalServiceConfig::default()
        };
        let mut served = start_with(config, BrokerConfig::default()).await;
        create(&served.broker, [JournalSpec::new("test/limits")]).await;
        let big = append_messages(
            &mut served.client,
            vec![
                params("test/limits"),
                chunk(b"123456"),
                chunk(b"789012"),
                chunk(b""),
            ],
        )
        .await
        .expect_err("too big");
        assert_eq!(big.code(), Code::ResourceExhausted);

        let (sender, messages) = mpsc::channel(4);
        sender.send(params("test/limits")).await.expect("send");
        sender.send(chunk(b"12")).await.expect("send");
        let stalled = timed(
            "stalled append",
            served.client.append(ReceiverStream::new(messages)),
        )
        .await
        .expect_err("too slow");
        assert_eq!(stalled.code(), Code::ResourceExhausted);
        assert!(
            stalled.message().contains("minimum rate"),
            "{}",
            stalled.message()
        );
        drop(sender);
        assert_eq!(served.broker.write_head("test/limits").expect("head"), 0);
    }

    #[tokio::test]
    async fn list_fragments_pages_through_the_index() {
        let broker_config = BrokerConfig {
            fragment_length: 1024,
            ..BrokerConfig::default()
        };
        let mut served = start_with(JournalServiceConfig::default(), broker_config).await;
        create(&served.broker, [JournalSpec::new("test/fragments")]).await;
        for _ in 0..5 {
            append_bytes(&served.broker, "test/fragments", vec![b'x'; 1500]).await;
        }
        let request = |token, limit| wire::FragmentsRequest {
            journal: "test/fragments".into(),
            next_page_token: token,
            page_limit: limit,
            ..Default::default()
        };
        let mut fragments = Vec::new();
        let mut token = 0;
        let mut pages = 0;
        loop {
            let page = timed("fragments", served.client.list_fragments(request(token, 2)))
                .await
                .expect("page")
                .into_inner();
            assert_eq!(page.status, WireStatus::Ok as i32);
            assert!(page.fragments.len() <= 2);
            fragments.extend(page.fragments.into_iter().filter_map(|f| f.spec));
            pages += 1;
            token = page.next_page_token;
            if token == 0 {
                break;
            }
        }
        assert_eq!(pages, 3);
        let ranges: Vec<(i64, i64)> = fragments.iter().map(|f| (f.begin, f.end)).collect();
        assert_eq!(
            ranges,
            (0..5)
                .map(|i| (i * 1500, (i + 1) * 1500))
                .collect::<Vec<_>>()
        );
        assert!(
            fragments
                .iter()
                .all(|f| f.mod_time > 0 && f.journal == "test/fragments")
        );
        assert!(fragments.iter().all(|f| f.sum.is_none()));

        let all = served
            .client
            .list_fragments(request(0, 0))
            .await
            .expect("all")
            .into_inner();
        assert_eq!((all.fragments.len(), all.next_page_token), (5, 0));
        let future = wire::FragmentsRequest {
            begin_mod_time: i64::MAX - 1,
            ..request(0, 0)
        };
        let none = served
            .client
            .list_fragments(future)
            .await
            .expect("none")
            .into_inner();
        assert!(none.fragments.is_empty());
        let missing = wire::FragmentsRequest {
            journal: "test/none".into(),
            ..request(0, 0)
        };
        let missing = served
            .client
            .list_fragments(missing)
            .await
            .expect("answered")
            .into_inner();
        assert_eq!(missing.status, WireStatus::JournalNotFound as i32);
        for limit in [-1, MAX_FRAGMENTS_PAGE_LIMIT + 1] {
            let err = served
                .client
                .list_fragments(request(0, limit))
                .await
                .expect_err("limit");
            assert_eq!(err.code(), Code::InvalidArgument);
            assert!(err.message().contains("page_limit"));
        }
        let backwards = wire::FragmentsRequest {
            begin_mod_time: 10,
            end_mod_time: 5,
            ..request(0, 0)
        };
        let err = served
            .client
            .list_fragments(backwards)
            .await
            .expect_err("backwards");
        assert!(err.message().contains("end_mod_time"));
    }

    /// Random field values, from valid to absurd.
    struct Garbage(StdRng);

    impl Garbage {
        fn text(&mut self) -> String {
            const PIECES: [&str; 12] = [
                "test/fuzz",
                "a",
                "/",
                "..",
                "prefix",
                "name",
                "=",
                "#",
                "ü",
                ";meta",
                " ",
                "%",
            ];
            let n = self.0.random_range(0..6);
            let mut text: String = (0..n)
                .map(|_| PIECES[self.0.random_range(0..PIECES.len())])
                .collect();
            if self.0.random_bool(0.1) {
                text = "x".repeat(self.0.random_range(500..2000));
            }
            text
        }

        fn offset(&mut self) -> i64 {
            const OFFSETS: [i64; 8] = [i64::MIN, -2, -1, 0, 1, 3, 1 << 40, i64::MAX];
            OFFSETS[self.0.random_range(0..OFFSETS.len())]
        }

        fn labels(&mut self) -> Option<wire::LabelSet> {
            self.0.random_bool(0.7).then(|| wire::LabelSet {
                labels: (0..self.0.random_range(0..4))
                    .map(|_| wire::Label {
                        name: self.text(),
                        value: self.text(),
                        prefix: self.0.random_bool(0.2),
                    })
                    .collect(),
            })
        }

        fn selector(&mut self) -> Option<wire::LabelSelector> {
            self.0.random_bool(0.7).then(|| wire::LabelSelector {
                include: self.labels(),
                exclude: self.labels(),
            })
        }

        fn journal(&mut self) -> String {
            match self.0.random_range(0..3) {
                0 => "test/fuzz".into(),
                _ => self.text(),
            }
        }

        fn spec(&mut self) -> wire::JournalSpec {
            wire::JournalSpec {
                name: self.journal(),
                replication: self.0.random_range(-2..8),
                labels: self.labels(),
                fragment: self
                    .0
                    .random_bool(0.5)
                    .then(|| wire::journal_spec::Fragment {
                        length: self.offset(),
                        compression_codec: self.0.random_range(-1..7),
                        ..Default::default()
                    }),
                flags: self.0.random_range(0..9),
                max_append_rate: self.offset(),
                suspend: None,
            }
        }
    }

    fn assert_refusal(rpc: &str, status: &Status) {
        let expected = [
            Code::InvalidArgument,
            Code::ResourceExhausted,
            Code::Aborted,
            Code::OutOfRange,
        ];
        assert!(
            expected.contains(&status.code()),
            "{rpc}: unexpected {:?}: {}",
            status.code(),
            status.message()
        );
    }

    #[tokio::test]
    async fn malformed_requests_get_a_status_from_every_rpc_and_never_a_hang() {
        let mut served = start().await;
        create(&served.broker, [JournalSpec::new("test/fuzz")]).await;
        append_bytes(&served.broker, "test/fuzz", b"abc".to_vec()).await;
        let mut garbage = Garbage(StdRng::seed_from_u64(0x5eed));
        for round in 0..150 {
            let client = &mut served.client;
            match round % 5 {
                0 => {
                    let request = wire::ListRequest {
                        selector: garbage.selector(),
                        ..Default::default()
                    };
                    if let Err(status) = list_all(client, request).await {
                        assert_refusal("List", &status);
                    }
                }
                1 => {
                    let changes = (0..garbage.0.random_range(0..3))
                        .map(|_| wire::apply_request::Change {
                            expect_mod_revision: garbage.offset(),
                            upsert: garbage.0.random_bool(0.6).then(|| garbage.spec()),
                            delete: if garbage.0.random_bool(0.3) {
                                garbage.journal()
                            } else {
                                String::new()
                            },
                        })
                        .collect();
                    if let Err(status) = apply(client, changes).await {
                        assert_refusal("Apply", &status);
                    }
                }
                2 => {
                    let request = wire::ReadRequest {
                        journal: garbage.journal(),
                        offset: garbage.offset(),
                        block: garbage.0.random_bool(0.5),
                        end_offset: garbage.offset(),
                        metadata_only: garbage.0.random_bool(0.2),
                        ..Default::default()
                    };
                    // A valid blocking read may wait at the head: its first
                    // response (metadata or a status) must come at once.
                    match timed("Read", client.read(request)).await {
                        Ok(responses) => {
                            let mut responses = responses.into_inner();
                            if let Err(status) = timed("Read", responses.message()).await {
                                assert_refusal("Read", &status);
                            }
                        }
                        Err(status) => assert_refusal("Read", &status),
                    }
                }
                3 => {
                    let mut messages = vec![wire::AppendRequest {
                        journal: garbage.journal(),
                        offset: garbage.offset(),
                        check_registers: garbage.selector(),
                        union_registers: garbage.labels(),
                        subtract_registers: garbage.labels(),
                        suspend: garbage.0.random_range(-1..6),
                        content: if garbage.0.random_bool(0.2) {
                            b"early".to_vec()
                        } else {
                            Vec::new()
                        },
                        ..Default::default()
                    }];
                    for _ in 0..garbage.0.random_range(0..3) {
                        messages.push(chunk(garbage.text().as_bytes()));
                    }
                    if garbage.0.random_bool(0.7) {
                        messages.push(chunk(b""));
                    }
                    if let Err(status) = append_messages(client, messages).await {
                        assert_refusal("Append", &status);
                    }
                }
                _ => {
                    let request = wire::FragmentsRequest {
                        journal: garbage.journal(),
                        begin_mod_time: garbage.offset(),
                        end_mod_time: garbage.offset(),
                        next_page_token: garbage.offset(),
                        page_limit: [i32::MIN, -1, 0, 1, 10_000, 10_001, i32::MAX]
                            [garbage.0.random_range(0..7)],
                        ..Default::default()
                    };
                    if let Err(status) =
                        timed("ListFragments", client.list_fragments(request)).await
                    {
                        assert_refusal("ListFragments", &status);
                    }
                }
            }
        }
        // The server is still healthy.
        create(&served.broker, [JournalSpec::new("health/check")]).await;
        let committed = append_messages(
            &mut served.client,
            vec![params("health/check"), chunk(b"ok"), chunk(b"")],
        )
        .await
        .expect("append");
        assert_eq!(committed.status, WireStatus::Ok as i32);
        let responses = read_all(&mut served.client, read_request("health/check", 0))
            .await
            .expect("read");
        let content: Vec<u8> = responses.iter().flat_map(|r| r.content.clone()).collect();
        assert_eq!(content, b"ok");
    }
}
