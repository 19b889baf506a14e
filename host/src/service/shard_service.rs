//! Gazette's `consumer.Shard` service (Stat, List, Apply) over the
//! [`ShardRegistry`].
//!
//! Outcomes Gazette reports in the response's `status` stay there:
//! SHARD_NOT_FOUND, NO_SHARD_PRIMARY and SHARD_STOPPED from Stat, and
//! ETCD_TRANSACTION_FAILED from an Apply whose expected revision does not
//! hold. A malformed request is an INVALID_ARGUMENT gRPC error naming the
//! field; a Stat whose offsets are not read through within
//! [`limits::DEFAULT_SHARD_STAT_TIMEOUT_MS`] is DEADLINE_EXCEEDED.

use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::consumer::spec::validate_shard_id;
use crate::limits;
use crate::protocol::consumer::replica_status::Code as ReplicaCode;
use crate::protocol::consumer::shard_server::{Shard, ShardServer};
use crate::protocol::consumer::{
    ApplyRequest, ApplyResponse, ListRequest, ListResponse, StatRequest, StatResponse,
    Status as ShardStatusCode, apply_request, list_response,
};

use super::convert::{selector_from_wire, status_of};
use super::process::ProcessIdentity;
use super::shard_convert::{replica_status, spec_from_wire, spec_to_wire};
use super::shards::{ShardChange, ShardRegistry, ShardRegistryError, StatError};
use crate::broker::revision::ExpectRevision;

/// The `Shard` service of a [`ShardRegistry`].
#[derive(Debug, Clone)]
pub struct ShardService {
    registry: ShardRegistry,
    stat_timeout: Duration,
    identity: ProcessIdentity,
}

impl ShardService {
    /// The service of `registry`, with the default Stat timeout.
    pub fn new(registry: ShardRegistry) -> Self {
        ShardService {
            registry,
            stat_timeout: Duration::from_millis(limits::DEFAULT_SHARD_STAT_TIMEOUT_MS),
            identity: ProcessIdentity::unbound(),
        }
    }

    /// This service answering as `identity` (its headers and routes).
    pub fn with_identity(mut self, identity: ProcessIdentity) -> Self {
        self.identity = identity;
        self
    }

    /// This service with Stat waiting at most `timeout` for offsets.
    pub fn with_stat_timeout(mut self, timeout: Duration) -> Self {
        self.stat_timeout = timeout;
        self
    }

    /// The tonic server.
    pub fn into_server(self) -> ShardServer<Self> {
        ShardServer::new(self)
    }
}

#[tonic::async_trait]
impl Shard for ShardService {
    async fn stat(&self, request: Request<StatRequest>) -> Result<Response<StatResponse>, Status> {
        let request = request.into_inner();
        validate_shard_id(&request.shard)
            .map_err(|reason| Status::invalid_argument(format!("shard: {reason}")))?;
        if let Some((journal, offset)) = request.read_through.iter().find(|(_, o)| **o < 0) {
            return Err(Status::invalid_argument(format!(
                "read_through: offset {offset} of {journal} is negative"
            )));
        }
        let result = self
            .registry
            .stat(&request.shard, &request.read_through, self.stat_timeout)
            .await;
        let status = match result {
            Ok(read_through) => {
                return Ok(Response::new(StatResponse {
                    status: ShardStatusCode::Ok as i32,
                    header: Some(self.identity.header(self.registry.revision())),
                    read_through: read_through.into_iter().collect(),
                    ..Default::default()
                }));
            }
            Err(StatError::NotFound(_)) => ShardStatusCode::ShardNotFound,
            Err(StatError::NoPrimary(_)) => ShardStatusCode::NoShardPrimary,
            Err(StatError::Stopped { .. }) => ShardStatusCode::ShardStopped,
            Err(err @ StatError::DeadlineExceeded { .. }) => {
                return Err(Status::deadline_exceeded(err.to_string()));
            }
        };
        Ok(Response::new(StatResponse {
            status: status as i32,
            header: Some(self.identity.header(self.registry.revision())),
            ..Default::default()
        }))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let selector = selector_from_wire(request.get_ref().selector.as_ref(), "selector")
            .map_err(|err| status_of(&err))?;
        let listing = self.registry.list(&selector);
        Ok(Response::new(ListResponse {
            status: ShardStatusCode::Ok as i32,
            header: Some(self.identity.header(listing.revision)),
            shards: listing
                .shards
                .into_iter()
                .map(|shard| {
                    // One route member, this process, with its one status
                    // (Gazette checks they pair up); primary only while
                    // the shard serves.
                    let status = replica_status(&shard.state);
                    let primary = status.code == ReplicaCode::Primary as i32;
                    list_response::Shard {
                        spec: Some(spec_to_wire(&shard.spec)),
                        mod_revision: shard.revisions.modify,
                        route: Some(self.identity.route(primary)),
                        status: vec![status],
                        create_revision: shard.revisions.create,
                    }
                })
                .collect(),
            ..Default::default()
        }))
    }

    async fn apply(
        &self,
        request: Request<ApplyRequest>,
    ) -> Result<Response<ApplyResponse>, Status> {
        let changes = request
            .into_inner()
            .changes
            .into_iter()
            .enumerate()
            .map(|(index, change)| {
                change_from_wire(change).map_err(|e| format!("changes[{index}]{e}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(Status::invalid_argument)?;
        let status = match self.registry.apply(changes).await {
            Ok(revision) => {
                return Ok(Response::new(ApplyResponse {
                    status: ShardStatusCode::Ok as i32,
                    header: Some(self.identity.header(revision)),
                    ..Default::default()
                }));
            }
            Err(ShardRegistryError::RevisionMismatch { .. }) => {
                ShardStatusCode::EtcdTransactionFailed
            }
            Err(err) => return Err(registry_status(err)),
        };
        Ok(Response::new(ApplyResponse {
            status: status as i32,
            header: Some(self.identity.header(self.registry.revision())),
            ..Default::default()
        }))
    }
}

/// One wire change; the error starts with the path below `changes[i]`.
fn change_from_wire(change: apply_request::Change) -> Result<ShardChange, String> {
    let expect = ExpectRevision::from_wire(change.expect_mod_revision)
        .map_err(|reason| format!(".expect_mod_revision: {reason}"))?;
    match (change.upsert, change.delete.is_empty()) {
        (Some(_), false) => Err(": both upsert and delete are set (expected exactly one)".into()),
        (None, true) => Err(": neither upsert nor delete is set (expected exactly one)".into()),
        (Some(spec), true) => Ok(ShardChange::Upsert {
            spec: spec_from_wire(spec).map_err(|err| format!(".upsert.{err}"))?,
            expect,
        }),
        (None, false) => {
            validate_shard_id(&change.delete).map_err(|reason| format!(".delete: {reason}"))?;
            Ok(ShardChange::Delete {
                id: change.delete,
                expect,
            })
        }
    }
}

fn registry_status(err: ShardRegistryError) -> Status {
    let message = err.to_string();
    match err {
        ShardRegistryError::InvalidSpec(_) | ShardRegistryError::InvalidChange(_) => {
            Status::invalid_argument(message)
        }
        ShardRegistryError::Journals(err) if err.is_transient() => Status::unavailable(message),
        ShardRegistryError::ShuttingDown => Status::unavailable(message),
        _ => Status::internal(message),
    }
}

#[cfg(test)]
mod test {
    use std::collections::HashMap;

    use tokio::net::TcpListener;
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::Code;
    use tonic::transport::{Channel, Server};

    use super::*;
    use crate::consumer::ShardSpec;
    use crate::protocol::consumer::ShardSpec as WireSpec;
    use crate::protocol::consumer::replica_status::Code as ReplicaCode;
    use crate::protocol::consumer::shard_client::ShardClient;
    use crate::service::shards::MODULE_LABEL;
    use crate::service::shards::test::Fixture;

    async fn serve(service: ShardService) -> ShardClient<Channel> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            Server::builder()
                .add_service(service.into_server())
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        ShardClient::connect(format!("http://{addr}"))
            .await
            .unwrap()
    }

    fn upsert(spec: WireSpec, expect_mod_revision: i64) -> apply_request::Change {
        apply_request::Change {
            expect_mod_revision,
            upsert: Some(spec),
            delete: String::new(),
        }
    }

    fn delete(id: &str, expect_mod_revision: i64) -> apply_request::Change {
        apply_request::Change {
            expect_mod_revision,
            upsert: None,
            delete: id.into(),
        }
    }

    async fn apply(
        client: &mut ShardClient<Channel>,
        changes: Vec<apply_request::Change>,
    ) -> Result<ApplyResponse, Status> {
        client
            .apply(ApplyRequest {
                changes,
                ..Default::default()
            })
            .await
            .map(Response::into_inner)
    }

    async fn list(client: &mut ShardClient<Channel>) -> Vec<list_response::Shard> {
        client
            .list(ListRequest::default())
            .await
            .unwrap()
            .into_inner()
            .shards
    }

    async fn stat(
        client: &mut ShardClient<Channel>,
        shard: &str,
        read_through: HashMap<String, i64>,
    ) -> Result<StatResponse, Status> {
        client
            .stat(StatRequest {
                shard: shard.into(),
                read_through,
                ..Default::default()
            })
            .await
            .map(Response::into_inner)
    }

    /// Lists until every shard is PRIMARY.
    async fn wait_all_primary(client: &mut ShardClient<Channel>) -> Vec<list_response::Shard> {
        for _ in 0..300 {
            let shards = list(client).await;
            if shards
                .iter()
                .all(|shard| shard.status[0].code == ReplicaCode::Primary as i32)
            {
                return shards;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("shards did not become primary: {:?}", list(client).await);
    }

    fn wire(spec: &ShardSpec) -> WireSpec {
        spec_to_wire(spec)
    }

    #[tokio::test]
    async fn shards_apply_run_stat_and_delete_over_grpc() {
        let fixture = Fixture::new(2).await;
        let registry = fixture.registry().await;
        let mut client = serve(ShardService::new(registry.clone())).await;
        let [first, second] = [&fixture.specs[0], &fixture.specs[1]];

        let applied = apply(
            &mut client,
            vec![upsert(wire(first), 0), upsert(wire(second), 0)],
        )
        .await
        .unwrap();
        assert_eq!(applied.status, ShardStatusCode::Ok as i32);
        assert_eq!(applied.header.unwrap().etcd.unwrap().revision, 2);

        let shards = wait_all_primary(&mut client).await;
        assert_eq!(shards.len(), 2);
        for (shard, spec) in shards.iter().zip([first, second]) {
            assert_eq!(shard.spec.as_ref(), Some(&wire(spec)));
            assert_eq!((shard.mod_revision, shard.create_revision), (2, 2));
            // Gazette's client pairs route members with statuses.
            let route = shard.route.as_ref().unwrap();
            assert_eq!((route.members.len(), shard.status.len()), (1, 1));
            assert_eq!(route.primary, 0);
            assert!(shard.status[0].errors.is_empty());
        }

        // Read-your-writes: Stat waits until the summer read the stream.
        let journal = first.sources[0].journal.clone();
        let (head, sum) = fixture
            .publish_stream(&journal, [9; 16], &[b"battery", b" horse"])
            .await;
        let statted = stat(
            &mut client,
            &first.id,
            HashMap::from([(journal.clone(), head)]),
        )
        .await
        .unwrap();
        assert_eq!(statted.status, ShardStatusCode::Ok as i32);
        assert!(statted.read_through[&journal] >= head, "{statted:?}");
        let sums = fixture.sums().await;
        assert_eq!(sums.len(), 1);
        assert_eq!((sums[0].id, sums[0].value), ([9; 16], sum));

        // A stale expectation fails the whole batch, changing nothing.
        let mut changed = second.clone();
        changed.labels.set("team", "blue");
        let stale = apply(
            &mut client,
            vec![upsert(wire(&changed), 2), upsert(wire(first), 1)],
        )
        .await
        .unwrap();
        assert_eq!(stale.status, ShardStatusCode::EtcdTransactionFailed as i32);
        let after = list(&mut client).await;
        assert_eq!(after[1].spec.as_ref(), Some(&wire(second)));
        assert_eq!(after[1].mod_revision, 2);

        // Deleting stops the shard: its local store is gone once the
        // delete returns, and chunks of its journal are no longer summed.
        let store = fixture.dir.path().join("registry/stores").join(&second.id);
        assert!(store.is_dir());
        let deleted = apply(&mut client, vec![delete(&second.id, 2)])
            .await
            .unwrap();
        assert_eq!(deleted.status, ShardStatusCode::Ok as i32);
        assert!(!store.exists());
        let remaining = list(&mut client).await;
        assert_eq!(remaining.len(), 1);
        assert_eq!(remaining[0].spec.as_ref().unwrap().id, first.id);
        let missing = stat(&mut client, &second.id, HashMap::new()).await.unwrap();
        assert_eq!(missing.status, ShardStatusCode::ShardNotFound as i32);
        fixture
            .publish_stream(&second.sources[0].journal, [8; 16], &[b"unsummed"])
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(fixture.sums().await.len(), 1);

        registry.shutdown().await;
        fixture.broker.shutdown().await;
    }

    #[tokio::test]
    async fn bad_requests_are_invalid_arguments_naming_the_field() {
        let fixture = Fixture::new(1).await;
        let registry = fixture.registry().await;
        let mut client = serve(ShardService::new(registry.clone())).await;
        let spec = &fixture.specs[0];

        let mut zero = wire(spec);
        zero.max_txn_duration = Some(prost_types::Duration::default());
        let mut unpinned = spec.clone();
        unpinned.labels.remove(MODULE_LABEL);
        let mut negative = wire(spec);
        negative.min_txn_duration = Some(prost_types::Duration {
            seconds: -1,
            nanos: 0,
        });
        let both = apply_request::Change {
            delete: spec.id.clone(),
            ..upsert(wire(spec), 0)
        };
        let cases = [
            (upsert(zero, 0), "max_txn_duration"),
            (upsert(wire(&unpinned), 0), MODULE_LABEL),
            (upsert(negative, 0), "min_txn_duration"),
            (upsert(wire(spec), -2), "expect_mod_revision"),
            (both, "both upsert and delete"),
            (delete(&spec.id, 0), "expects it to be absent"),
        ];
        for (change, named) in cases {
            let err = apply(&mut client, vec![change]).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
            assert!(err.message().contains(named), "{named}: {}", err.message());
        }
        assert!(list(&mut client).await.is_empty());
        assert_eq!(registry.revision(), 1);

        let bad_shard = stat(&mut client, "no", HashMap::new()).await.unwrap_err();
        assert_eq!(bad_shard.code(), Code::InvalidArgument);
        assert!(bad_shard.message().starts_with("shard:"), "{bad_shard:?}");
        registry.shutdown().await;
    }

    /// A seeded stream of malformed Shard requests (random ids, sources,
    /// durations, labels, revisions and offsets) against every RPC: each
    /// gets an answer (a status in the response or a gRPC status) within a
    /// deadline, nothing panics, and a valid shard keeps being served.
    #[tokio::test]
    async fn generated_malformed_requests_never_panic_hang_or_disturb_a_shard() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};

        let fixture = Fixture::new(1).await;
        let registry = fixture.registry().await;
        let mut client =
            serve(ShardService::new(registry.clone()).with_stat_timeout(Duration::from_millis(50)))
                .await;
        let good = fixture.specs[0].clone();
        apply(&mut client, vec![upsert(wire(&good), 0)])
            .await
            .expect("the valid shard applies");
        wait_all_primary(&mut client).await;

        let mut rng = StdRng::seed_from_u64(0x5_4a2d);
        let pieces = [
            "",
            "a",
            "x/y",
            "../up",
            "id",
            "a b",
            "\u{0}",
            "Ω",
            "-",
            "ok-shard-1",
        ];
        let text = |rng: &mut StdRng| -> String {
            (0..rng.random_range(0..4))
                .map(|_| pieces[rng.random_range(0..pieces.len())])
                .collect::<Vec<_>>()
                .join("/")
        };
        for round in 0..120 {
            let deadline = Duration::from_secs(5);
            let outcome = match round % 3 {
                0 => {
                    let mut spec = wire(&good);
                    spec.id = text(&mut rng);
                    if rng.random_bool(0.5) {
                        spec.sources = (0..rng.random_range(0..3))
                            .map(|_| crate::protocol::consumer::shard_spec::Source {
                                journal: text(&mut rng),
                                min_offset: rng.random_range(-5..5),
                            })
                            .collect();
                    }
                    spec.max_txn_duration = rng.random_bool(0.5).then(|| prost_types::Duration {
                        seconds: rng.random_range(-2..3),
                        nanos: rng.random_range(-2..2_000_000_000),
                    });
                    spec.ring_buffer_size = rng.random();
                    spec.recovery_log_prefix = text(&mut rng);
                    let change = if rng.random_bool(0.8) {
                        upsert(spec, rng.random_range(-3..3))
                    } else {
                        delete(&text(&mut rng), rng.random_range(-3..3))
                    };
                    tokio::time::timeout(deadline, apply(&mut client, vec![change]))
                        .await
                        .map(|answer| answer.map(|_| ()))
                }
                1 => {
                    let read_through = (0..rng.random_range(0..3))
                        .map(|_| (text(&mut rng), rng.random_range(-10..10)))
                        .collect();
                    let shard = if rng.random_bool(0.3) {
                        good.id.clone()
                    } else {
                        text(&mut rng)
                    };
                    tokio::time::timeout(deadline, stat(&mut client, &shard, read_through))
                        .await
                        .map(|answer| answer.map(|_| ()))
                }
                _ => {
                    let selector = crate::protocol::gazette::LabelSelector {
                        include: Some(crate::protocol::gazette::LabelSet {
                            labels: vec![crate::protocol::gazette::Label {
                                name: text(&mut rng),
                                value: text(&mut rng),
                                prefix: rng.random_bool(0.5),
                            }],
                        }),
                        exclude: None,
                    };
                    let listed = client.list(ListRequest {
                        selector: Some(selector),
                        ..Default::default()
                    });
                    tokio::time::timeout(deadline, listed)
                        .await
                        .map(|answer| answer.map(|_| ()))
                }
            };
            match outcome {
                Err(_elapsed) => panic!("round {round}: no answer within {deadline:?}"),
                Ok(Ok(())) => {}
                Ok(Err(status)) => assert!(
                    matches!(
                        status.code(),
                        Code::InvalidArgument | Code::DeadlineExceeded | Code::FailedPrecondition
                    ) && !status.message().is_empty(),
                    "round {round}: {status:?}"
                ),
            }
        }
        // The valid shard was never disturbed.
        let listed = list(&mut client).await;
        let served = listed
            .iter()
            .find(|shard| shard.spec.as_ref().is_some_and(|spec| spec.id == good.id))
            .expect("the valid shard is still listed");
        assert_eq!(served.status[0].code, ReplicaCode::Primary as i32);
        registry.shutdown().await;
    }

    #[tokio::test]
    async fn stat_reports_unknown_shards_and_passed_deadlines() {
        let fixture = Fixture::new(1).await;
        let registry = fixture.registry().await;
        let service =
            ShardService::new(registry.clone()).with_stat_timeout(Duration::from_millis(200));
        let mut client = serve(service).await;
        let spec = &fixture.specs[0];

        let unknown = stat(&mut client, "no-such-shard", HashMap::new())
            .await
            .unwrap();
        assert_eq!(unknown.status, ShardStatusCode::ShardNotFound as i32);

        apply(&mut client, vec![upsert(wire(spec), 0)])
            .await
            .unwrap();
        wait_all_primary(&mut client).await;
        let journal = spec.sources[0].journal.clone();
        let beyond = HashMap::from([(journal, 1 << 40)]);
        let late = stat(&mut client, &spec.id, beyond).await.unwrap_err();
        assert_eq!(late.code(), Code::DeadlineExceeded, "{late:?}");

        // Offsets of journals the shard does not read are ignored.
        let foreign = HashMap::from([("some/other/journal".to_string(), 1 << 40)]);
        let ignored = stat(&mut client, &spec.id, foreign).await.unwrap();
        assert_eq!(ignored.status, ShardStatusCode::Ok as i32);
        registry.shutdown().await;
    }
}
