//! weir's integration tests, one binary (as wasmtime's `tests/all`).

mod broker;
mod consumer_kill;
mod exactly_once;
mod shard_recovery;
