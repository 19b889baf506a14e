//! The gRPC services and their clients, and the server that hosts them.
//!
//! | module | what |
//! |---|---|
//! | [`journal`], [`convert`] | Gazette's `protocol.Journal` over the embedded broker |
//! | [`journal_client`] | a retrying gRPC [`JournalClient`](crate::broker::JournalClient) |
//! | [`shards`], [`shard_service`], [`shard_convert`] | the shard registry and Gazette's `consumer.Shard` |
//! | [`shard_limits`] | per-shard guest limits from `weir.dev/limit.*` labels, validated at apply |
//! | [`modules`] | consumer components by digest and weir's `weir.Modules` |
//! | [`server`], [`metrics`] | `weir serve`: roles, reflection, `/metrics`, graceful shutdown |

pub mod convert;
pub mod endpoint;
pub mod journal;
mod journal_append;
pub mod journal_client;
mod journal_read;
pub mod metrics;
pub mod modules;
pub mod process;
pub mod server;
pub mod shard_convert;
pub mod shard_limits;
pub mod shard_service;
pub mod shards;
