//! [`ProcessIdentity`]: who a `weir serve` process is on the wire — its
//! Gazette `ProcessSpec.ID` and endpoint — and the headers and routes it
//! answers with.
//!
//! Gazette's clients validate every header and route they receive: a
//! member id needs a zone and a suffix, a route's primary indexes its
//! members, endpoints match members one to one, and a listed shard carries
//! one replica status per route member. weir has no etcd and no allocator:
//! one process serves every journal (and every shard) it holds, so each
//! route names exactly this process, as primary. Headers carry the registry
//! revision as `etcd.revision` with fixed non-zero cluster and member ids,
//! which is all a client compares.

use std::net::SocketAddr;

use crate::protocol::gazette as wire;

/// The zone of every weir process (Gazette's failure domain; weir runs one
/// process per role).
pub const ZONE: &str = "local";

/// This process as Gazette's clients see it. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessIdentity {
    id: wire::process_spec::Id,
    endpoint: String,
}

impl ProcessIdentity {
    /// The identity of a process listening on `addr`: suffix `weir-<ip>-<port>`
    /// (Gazette's token characters only), endpoint `http://<addr>`.
    pub fn for_listen(addr: SocketAddr) -> ProcessIdentity {
        let ip: String = addr
            .ip()
            .to_string()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '.' })
            .collect();
        ProcessIdentity {
            id: wire::process_spec::Id {
                zone: ZONE.to_string(),
                suffix: format!("weir-{ip}-{}", addr.port()),
            },
            endpoint: format!("http://{addr}"),
        }
    }

    /// The identity used when no listen address is known (services built
    /// directly, as in tests and benchmarks).
    pub fn unbound() -> ProcessIdentity {
        ProcessIdentity {
            id: wire::process_spec::Id {
                zone: ZONE.to_string(),
                suffix: "weir".to_string(),
            },
            endpoint: String::new(),
        }
    }

    /// The process id.
    pub fn id(&self) -> &wire::process_spec::Id {
        &self.id
    }

    /// A route whose one member is this process; it is the primary when
    /// `primary` is set (Gazette's primary -1 means none).
    pub fn route(&self, primary: bool) -> wire::Route {
        wire::Route {
            members: vec![self.id.clone()],
            primary: if primary { 0 } else { -1 },
            endpoints: if self.endpoint.is_empty() {
                Vec::new()
            } else {
                vec![self.endpoint.clone()]
            },
        }
    }

    /// A response header at registry `revision`, routed to this process.
    pub fn header(&self, revision: i64) -> wire::Header {
        wire::Header {
            process_id: Some(self.id.clone()),
            route: Some(self.route(true)),
            etcd: Some(wire::header::Etcd {
                cluster_id: 1,
                member_id: 1,
                revision,
                raft_term: 1,
            }),
        }
    }
}

impl Default for ProcessIdentity {
    fn default() -> Self {
        ProcessIdentity::unbound()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gazette's token rule for ids: letters, digits and `-_+/.=%`.
    fn is_token(value: &str) -> bool {
        !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_+/.=%".contains(c))
    }

    #[test]
    fn ids_are_gazette_tokens_for_v4_and_v6_addresses() {
        for addr in ["127.0.0.1:8080", "[::1]:9000", "0.0.0.0:1"] {
            let identity = ProcessIdentity::for_listen(addr.parse().expect("an address"));
            assert!(is_token(&identity.id().zone), "{identity:?}");
            assert!(is_token(&identity.id().suffix), "{identity:?}");
        }
    }

    #[test]
    fn routes_name_this_process_with_one_endpoint_per_member() {
        let identity = ProcessIdentity::for_listen("127.0.0.1:7000".parse().expect("addr"));
        let route = identity.route(true);
        assert_eq!(route.members, vec![identity.id().clone()]);
        assert_eq!(route.primary, 0);
        assert_eq!(route.endpoints, vec!["http://127.0.0.1:7000".to_string()]);
        assert_eq!(identity.route(false).primary, -1);
        let header = identity.header(42);
        assert_eq!(header.process_id.as_ref(), Some(identity.id()));
        assert_eq!(header.etcd.map(|etcd| etcd.revision), Some(42));
        assert!(ProcessIdentity::unbound().route(true).endpoints.is_empty());
    }
}
