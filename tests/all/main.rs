//! weir's integration tests, one binary (as wasmtime's `tests/all`).

mod audit;
mod broker;
mod chaos;
mod conformance;
mod consumer_kill;
mod exactly_once;
mod hostile;
mod native_summer;
mod regression;
mod sandbox;
mod serve;
mod shard_recovery;
mod stream_sum;
mod swap;
mod templates;
