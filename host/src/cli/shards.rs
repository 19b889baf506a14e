//! `weir shards`: apply shard specs (gazctl's YAML), list shards with their
//! status and errors, stat a shard, and hot-swap a shard's module, on a
//! running server.
//!
//! `swap` is Gazette's read-modify-write of a spec: it lists the shard,
//! changes its module label, and applies the spec with `expect_mod_revision`
//! set to the listed revision, so a change made by someone else in between
//! is refused rather than overwritten. The server then swaps at a
//! transaction boundary (see [`crate::service::shards`]).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tonic::transport::Channel;

use super::specs_yaml::{ShardApply, parse_shards};
use crate::broker::{LabelSelector, LabelSet};
use crate::protocol::consumer as wire;
use crate::runtime::ModuleDigest;
use crate::service::convert::selector_to_wire;
use crate::service::endpoint::endpoint_url;
use crate::service::shard_convert::{spec_from_wire, spec_to_wire};
use crate::service::shards::{META_ID, MODULE_LABEL};

/// Apply, list and stat shards on a server.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  weir shards apply --broker 127.0.0.1:8080 -f shards.yaml
  weir shards list --broker 127.0.0.1:8080
  weir shards stat --broker 127.0.0.1:8080 chunks-part-000 \\
      --read-through examples/stream-sum/chunks/part-000=4096
  weir shards swap --broker 127.0.0.1:8080 chunks-part-000 --module <DIGEST>")]
pub struct ShardsCommand {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Server {
    /// The consumer host's address (`weir serve`).
    #[arg(long, value_name = "ADDR")]
    broker: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply shard specs from a gazctl YAML file (`common:` + `shards:`), atomically.
    Apply {
        #[command(flatten)]
        server: Server,
        /// The YAML file.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
    },
    /// List shards with their status.
    List {
        #[command(flatten)]
        server: Server,
        /// Label selector over shard labels (and the `id` meta-label).
        #[arg(long, default_value = "")]
        selector: String,
    },
    /// Wait until a shard has read through offsets, and print its progress.
    Stat {
        #[command(flatten)]
        server: Server,
        /// The shard id.
        shard: String,
        /// JOURNAL=OFFSET the shard must have read through (repeatable).
        #[arg(long = "read-through", value_name = "JOURNAL=OFFSET")]
        read_through: Vec<String>,
    },
    /// Hot-swap a shard's module at a transaction boundary.
    ///
    /// The running version commits its current transaction and the new one
    /// (pushed first with `weir modules push`) starts the next. A version
    /// that cannot be instantiated is refused and the old one keeps
    /// running. Rolling back is a swap to the previous digest, which this
    /// command prints.
    #[command(after_help = "Examples:
  weir shards swap --broker 127.0.0.1:8080 chunks-part-000 --module 3f5a…(64 hex digits)
  # roll back: swap to the digest printed as the old one
  weir shards swap --broker 127.0.0.1:8080 chunks-part-000 --module 9c0e…")]
    Swap {
        #[command(flatten)]
        server: Server,
        /// The shard id.
        shard: String,
        /// Digest of the module to run (64 hex digits, as `weir modules push` prints).
        #[arg(long, value_name = "DIGEST")]
        module: String,
    },
}

/// What [`swap`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapOutcome {
    /// The spec now pins the new module; the server swaps at the shard's
    /// next transaction boundary.
    Swapped {
        /// The digest the shard ran before (absent if its spec pinned none).
        old: Option<String>,
        /// The digest it runs now.
        new: String,
        /// The shard's new mod revision.
        revision: i64,
    },
    /// The shard already pins this module; nothing was applied.
    Unchanged {
        /// The module.
        module: String,
    },
}

async fn connect(server: &Server) -> Result<wire::shard_client::ShardClient<Channel>> {
    wire::shard_client::ShardClient::connect(endpoint_url(&server.broker)?)
        .await
        .with_context(|| format!("connecting to {}", server.broker))
}

fn grpc(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", status.code(), status.message())
}

impl ShardsCommand {
    /// Runs the chosen subcommand.
    pub async fn execute(self) -> Result<()> {
        match self.command {
            Command::Apply { server, file } => apply(&server, &file).await,
            Command::List { server, selector } => list(&server, &selector).await,
            Command::Stat {
                server,
                shard,
                read_through,
            } => stat(&server, shard, &read_through).await,
            Command::Swap {
                server,
                shard,
                module,
            } => {
                match swap(&server.broker, &shard, &module).await? {
                    SwapOutcome::Swapped { old, new, revision } => {
                        let old = old.as_deref().unwrap_or("(none)");
                        println!("shard {shard}: module {old} → {new} (revision {revision})");
                        println!(
                            "  the old version committed its current transaction and the new \
                             one runs the next; roll back with --module {old}"
                        );
                    }
                    SwapOutcome::Unchanged { module } => {
                        println!("shard {shard} already runs module {module}; nothing applied");
                    }
                }
                Ok(())
            }
        }
    }
}

/// Swaps `shard`'s module on the server at `broker` to `module` (a digest):
/// lists the shard, changes its [`MODULE_LABEL`], and applies the spec
/// expecting the listed revision. Fails, changing nothing, if the shard
/// does not exist, changed since it was listed, or the server refuses the
/// module (not stored, or it cannot be instantiated: the error says why).
pub async fn swap(broker: &str, shard: &str, module: &str) -> Result<SwapOutcome> {
    let digest: ModuleDigest = module.parse().context("--module")?;
    let digest = digest.to_string();
    let mut client = connect(&Server {
        broker: broker.to_string(),
    })
    .await?;
    let mut include = LabelSet::new();
    include.insert(META_ID, shard);
    let selector = LabelSelector {
        include,
        exclude: LabelSet::new(),
    };
    let listed = client
        .list(wire::ListRequest {
            selector: Some(selector_to_wire(&selector)),
            extension: Vec::new(),
        })
        .await
        .map_err(grpc)?
        .into_inner();
    let Some((spec, revision)) = listed.shards.into_iter().find_map(|listed| {
        listed
            .spec
            .filter(|spec| spec.id == shard)
            .map(|spec| (spec, listed.mod_revision))
    }) else {
        bail!("shard {shard} not found on {broker}");
    };
    let mut spec = spec_from_wire(spec)
        .map_err(|err| anyhow::anyhow!("the server listed an invalid spec of {shard}: {err}"))?;
    let old = spec.labels.values(MODULE_LABEL).next().map(str::to_string);
    if old.as_deref() == Some(digest.as_str()) {
        return Ok(SwapOutcome::Unchanged { module: digest });
    }
    spec.labels.set(MODULE_LABEL, digest.clone());
    let response = client
        .apply(wire::ApplyRequest {
            changes: vec![wire::apply_request::Change {
                expect_mod_revision: revision,
                upsert: Some(spec_to_wire(&spec)),
                delete: String::new(),
            }],
            extension: Vec::new(),
        })
        .await
        .map_err(grpc)?
        .into_inner();
    match wire::Status::try_from(response.status) {
        Ok(wire::Status::Ok) => Ok(SwapOutcome::Swapped {
            old,
            new: digest,
            revision: response
                .header
                .and_then(|header| header.etcd)
                .map_or(revision, |etcd| etcd.revision),
        }),
        Ok(wire::Status::EtcdTransactionFailed) => bail!(
            "nothing applied: shard {shard} changed since it was listed at revision \
             {revision} (someone else applied a change); list it and swap again"
        ),
        other => bail!("nothing applied: status {other:?}"),
    }
}

async fn apply(server: &Server, file: &PathBuf) -> Result<()> {
    let yaml =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let changes: Vec<wire::apply_request::Change> = parse_shards(&yaml)
        .with_context(|| format!("in {}", file.display()))?
        .into_iter()
        .map(|change| match change {
            ShardApply::Upsert {
                spec,
                expect_mod_revision,
            } => wire::apply_request::Change {
                expect_mod_revision,
                upsert: Some(spec_to_wire(&spec)),
                delete: String::new(),
            },
            ShardApply::Delete {
                id,
                expect_mod_revision,
            } => wire::apply_request::Change {
                expect_mod_revision,
                upsert: None,
                delete: id,
            },
        })
        .collect();
    let count = changes.len();
    let response = connect(server)
        .await?
        .apply(wire::ApplyRequest {
            changes,
            extension: Vec::new(),
        })
        .await
        .map_err(grpc)?
        .into_inner();
    match wire::Status::try_from(response.status) {
        Ok(wire::Status::Ok) => {
            println!("applied {count} changes");
            Ok(())
        }
        Ok(wire::Status::EtcdTransactionFailed) => {
            bail!("nothing applied: a shard's revision is not the one expected")
        }
        other => bail!("nothing applied: status {other:?}"),
    }
}

async fn list(server: &Server, selector: &str) -> Result<()> {
    let selector: LabelSelector = selector.parse().context("parsing --selector")?;
    let response = connect(server)
        .await?
        .list(wire::ListRequest {
            selector: Some(selector_to_wire(&selector)),
            extension: Vec::new(),
        })
        .await
        .map_err(grpc)?
        .into_inner();
    let width = response
        .shards
        .iter()
        .filter_map(|shard| shard.spec.as_ref().map(|spec| spec.id.len()))
        .max()
        .unwrap_or(0)
        .max(2);
    println!(
        "{:width$}  {:>8}  {:<8}  ERRORS",
        "ID", "REVISION", "STATUS"
    );
    for shard in response.shards {
        let id = shard.spec.map(|spec| spec.id).unwrap_or_default();
        let (code, errors) = match shard.status.first() {
            Some(status) => (
                wire::replica_status::Code::try_from(status.code).map_or_else(
                    |_| status.code.to_string(),
                    |code| code.as_str_name().to_string(),
                ),
                status.errors.join("; "),
            ),
            None => ("UNKNOWN".to_string(), String::new()),
        };
        println!(
            "{id:width$}  {:>8}  {code:<8}  {errors}",
            shard.mod_revision
        );
    }
    Ok(())
}

async fn stat(server: &Server, shard: String, read_through: &[String]) -> Result<()> {
    let mut offsets = HashMap::new();
    for pair in read_through {
        let Some((journal, offset)) = pair.split_once('=') else {
            bail!("--read-through {pair:?}: expected JOURNAL=OFFSET");
        };
        let offset: i64 = offset
            .parse()
            .with_context(|| format!("--read-through {pair:?}: the offset"))?;
        offsets.insert(journal.to_string(), offset);
    }
    let response = connect(server)
        .await?
        .stat(wire::StatRequest {
            header: None,
            shard: shard.clone(),
            read_through: offsets,
            extension: Vec::new(),
        })
        .await
        .map_err(grpc)?
        .into_inner();
    match wire::Status::try_from(response.status) {
        Ok(wire::Status::Ok) => {}
        other => bail!("shard {shard}: status {other:?}"),
    }
    let mut sources: Vec<_> = response.read_through.into_iter().collect();
    sources.sort();
    println!("shard {shard}");
    for (journal, offset) in sources {
        println!("  read through {journal} {offset}");
    }
    Ok(())
}
