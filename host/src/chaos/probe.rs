//! The harness's view of the servers over gRPC: list shards and their
//! status, wait until every shard is PRIMARY (or none is), push the summer
//! module and apply shard specs to a new consumer host, learn journal write
//! heads, and wait for shards to read through them.
//!
//! Every call is bounded by [`limits::CHAOS_PROBE_TIMEOUT_MS`] and every
//! wait by the timeout it is given, so a hung or frozen server is reported
//! as such instead of hanging the harness.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use crate::broker::{AppendRequest, JournalClient};
use crate::limits;
use crate::protocol::consumer::replica_status::Code;
use crate::protocol::consumer::{self as wire, shard_client::ShardClient};
use crate::protocol::weir::PushModuleRequest;
use crate::protocol::weir::modules_client::ModulesClient;
use crate::service::endpoint::endpoint_url;
use crate::service::journal_client::GrpcJournalClient;

/// Why a probe failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The server could not be reached.
    #[error("{what}: cannot connect to {addr}: {reason}")]
    Connect {
        /// What was being done.
        what: String,
        /// The server.
        addr: String,
        /// The transport's report.
        reason: String,
    },
    /// The call failed or answered with a non-OK status.
    #[error("{what}: {reason}")]
    Call {
        /// What was being done.
        what: String,
        /// The status.
        reason: String,
    },
    /// A wait ran out; `last` says what was seen last.
    #[error("{what}: not done within {timeout:?} (last seen: {last})")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The wait's bound.
        timeout: Duration,
        /// The last observation.
        last: String,
    },
}

/// A shard as listed by a consumer host.
#[derive(Debug, Clone)]
pub struct ShardView {
    /// Its spec, as the host returns it.
    pub spec: wire::ShardSpec,
    /// Its replica status.
    pub code: Code,
    /// The errors listed with the status.
    pub errors: Vec<String>,
}

fn probe_timeout() -> Duration {
    Duration::from_millis(limits::CHAOS_PROBE_TIMEOUT_MS)
}

/// `call` bounded by the probe timeout.
async fn bounded<T>(
    what: &str,
    call: impl Future<Output = Result<T, ProbeError>>,
) -> Result<T, ProbeError> {
    tokio::time::timeout(probe_timeout(), call)
        .await
        .unwrap_or_else(|_| {
            Err(ProbeError::Call {
                what: what.to_string(),
                reason: format!("no answer within {:?}", probe_timeout()),
            })
        })
}

async fn shard_client(addr: &str, what: &str) -> Result<ShardClient<Channel>, ProbeError> {
    let url = endpoint_url(addr).map_err(|err| ProbeError::Connect {
        what: what.to_string(),
        addr: addr.to_string(),
        reason: err.to_string(),
    })?;
    ShardClient::connect(url)
        .await
        .map_err(|err| ProbeError::Connect {
            what: what.to_string(),
            addr: addr.to_string(),
            reason: err.to_string(),
        })
}

fn call_failed(what: &str, status: tonic::Status) -> ProbeError {
    ProbeError::Call {
        what: what.to_string(),
        reason: format!("{}: {}", status.code(), status.message()),
    }
}

/// The shards of the consumer host at `addr`.
pub async fn list_shards(addr: &str) -> Result<Vec<ShardView>, ProbeError> {
    let what = "listing shards";
    bounded(what, async {
        let response = shard_client(addr, what)
            .await?
            .list(wire::ListRequest {
                selector: None,
                extension: Vec::new(),
            })
            .await
            .map_err(|status| call_failed(what, status))?
            .into_inner();
        Ok(response
            .shards
            .into_iter()
            .map(|shard| {
                let status = shard.status.into_iter().next().unwrap_or_default();
                ShardView {
                    spec: shard.spec.unwrap_or_default(),
                    code: Code::try_from(status.code).unwrap_or(Code::Idle),
                    errors: status.errors,
                }
            })
            .collect())
    })
    .await
}

/// "id: CODE (errors)" of every shard, for messages.
pub fn describe(shards: &[ShardView]) -> String {
    if shards.is_empty() {
        return "no shards".to_string();
    }
    shards
        .iter()
        .map(|shard| {
            let mut text = format!("{} {}", shard.spec.id, shard.code.as_str_name());
            if !shard.errors.is_empty() {
                text.push_str(&format!(" ({})", shard.errors.join("; ")));
            }
            text
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Polls `addr` until `done` accepts its shard listing; returns the time it
/// took, or a timeout naming the last listing (or the last error).
async fn wait_listing(
    addr: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&[ShardView]) -> bool,
) -> Result<Duration, ProbeError> {
    let started = Instant::now();
    loop {
        let last = match list_shards(addr).await {
            Ok(shards) if done(&shards) => return Ok(started.elapsed()),
            Ok(shards) => describe(&shards),
            Err(err) => err.to_string(),
        };
        if started.elapsed() >= timeout {
            return Err(ProbeError::Timeout {
                what: what.to_string(),
                timeout,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(limits::CHAOS_POLL_MS)).await;
    }
}

/// Waits until `addr` lists `expected` shards, all PRIMARY.
pub async fn wait_all_primary(
    addr: &str,
    expected: usize,
    timeout: Duration,
) -> Result<Duration, ProbeError> {
    wait_listing(
        addr,
        &format!("waiting for {expected} PRIMARY shards on {addr}"),
        timeout,
        |shards| shards.len() == expected && shards.iter().all(|s| s.code == Code::Primary),
    )
    .await
}

/// Waits until `addr` lists no PRIMARY shard (a fenced host's shards step
/// down).
pub async fn wait_none_primary(addr: &str, timeout: Duration) -> Result<Duration, ProbeError> {
    wait_listing(
        addr,
        &format!("waiting for the shards on {addr} to step down"),
        timeout,
        |shards| shards.iter().all(|s| s.code != Code::Primary),
    )
    .await
}

/// Pushes `component` to the consumer host at `addr` and applies `specs`
/// (upserts, whatever their current revision) there, as `weir stream-sum`
/// does on setup.
pub async fn push_and_apply(
    addr: &str,
    component: &[u8],
    specs: Vec<wire::ShardSpec>,
) -> Result<(), ProbeError> {
    let what = "pushing the summer module";
    let url = endpoint_url(addr).map_err(|err| ProbeError::Connect {
        what: what.to_string(),
        addr: addr.to_string(),
        reason: err.to_string(),
    })?;
    bounded(what, async {
        let mut modules = ModulesClient::connect(url)
            .await
            .map_err(|err| ProbeError::Connect {
                what: what.to_string(),
                addr: addr.to_string(),
                reason: err.to_string(),
            })?
            .max_encoding_message_size(component.len() + 1024);
        modules
            .push(PushModuleRequest {
                component: component.to_vec(),
            })
            .await
            .map_err(|status| call_failed(what, status))?;
        Ok(())
    })
    .await?;

    let what = "applying the shard specs";
    bounded(what, async {
        let response = shard_client(addr, what)
            .await?
            .apply(wire::ApplyRequest {
                changes: specs
                    .into_iter()
                    .map(|spec| wire::apply_request::Change {
                        expect_mod_revision: -1,
                        upsert: Some(spec),
                        delete: String::new(),
                    })
                    .collect(),
                extension: Vec::new(),
            })
            .await
            .map_err(|status| call_failed(what, status))?
            .into_inner();
        if response.status != wire::Status::Ok as i32 {
            return Err(ProbeError::Call {
                what: what.to_string(),
                reason: format!("status {:?}", wire::Status::try_from(response.status)),
            });
        }
        Ok(())
    })
    .await
}

/// The write head of `journal`, learned with a write barrier (a zero-byte
/// append, which writes nothing).
pub async fn write_head(client: &GrpcJournalClient, journal: &str) -> Result<i64, ProbeError> {
    let what = format!("reading the write head of {journal}");
    bounded(&what, async {
        let response = client
            .append(AppendRequest {
                journal: journal.to_string(),
                ..Default::default()
            })
            .await
            .map_err(|err| ProbeError::Call {
                what: what.clone(),
                reason: err.to_string(),
            })?;
        Ok(response.end)
    })
    .await
}

/// How one `Stat` wait ended.
enum Waited {
    /// The shard read through the offsets.
    Done,
    /// The shard never will (stopped, or unknown).
    Never(wire::Status),
}

/// Waits until shard `shard` on `addr` has read through `offsets` (Gazette's
/// `Stat` with `read_through`), asking again while the server's own Stat
/// deadline expires, up to `timeout`; a stopped or unknown shard fails at
/// once.
pub async fn wait_read_through(
    addr: &str,
    shard: &str,
    offsets: &HashMap<String, i64>,
    timeout: Duration,
) -> Result<Duration, ProbeError> {
    let what = format!("waiting for {shard} to read through {offsets:?}");
    let started = Instant::now();
    loop {
        let attempt = async {
            let mut client = shard_client(addr, &what).await?;
            let response = client
                .stat(wire::StatRequest {
                    header: None,
                    shard: shard.to_string(),
                    read_through: offsets.clone(),
                    extension: Vec::new(),
                })
                .await
                .map_err(|status| call_failed(&what, status))?
                .into_inner();
            match wire::Status::try_from(response.status) {
                Ok(wire::Status::Ok) => Ok(Waited::Done),
                // A stopped or missing shard will not read on: no retry.
                Ok(status @ (wire::Status::ShardStopped | wire::Status::ShardNotFound)) => {
                    Ok(Waited::Never(status))
                }
                other => Err(ProbeError::Call {
                    what: what.clone(),
                    reason: format!("status {other:?}"),
                }),
            }
        };
        // The server answers DEADLINE_EXCEEDED after its own Stat timeout;
        // bound the call a little above it.
        let bound = Duration::from_millis(limits::DEFAULT_SHARD_STAT_TIMEOUT_MS) + probe_timeout();
        let last = match tokio::time::timeout(bound, attempt).await {
            Ok(Ok(Waited::Done)) => return Ok(started.elapsed()),
            Ok(Ok(Waited::Never(status))) => {
                return Err(ProbeError::Call {
                    what,
                    reason: format!("status {}", status.as_str_name()),
                });
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("no answer within {bound:?}"),
        };
        if started.elapsed() >= timeout {
            return Err(ProbeError::Timeout {
                what,
                timeout,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(limits::CHAOS_POLL_MS)).await;
    }
}
