//! # weir
//!
//! A stream-processing host in the style of Gazette: a native host owns
//! **journals** (append-only, durable logs), **consumer transactions** and
//! **stores** (RocksDB); the user's consumer logic is a **WebAssembly
//! component** that the host loads, sandboxes and swaps while running.
//!
//! | module | owns |
//! |---|---|
//! | [`message`] | UUIDs (producer, clock, flags), JSON-lines framing, publisher, sequencer, mappings |
//! | [`broker`] | journals: specs, labels and selectors, fragments on disk, append, read, registers |
//! | [`consumer`] | shard specs, the transaction loop, checkpoints, the `Application` contract |
//! | [`store`] | the RocksDB store, its recovery log, fencing and standbys |
//! | [`runtime`] | wasmtime: component loading and caching, limits, the guest adapter |
//! | [`protocol`] | the gRPC wire types (Gazette's `protocol` and `consumer` packages, weir's `weir`) |
//! | [`service`] | the gRPC services and clients: Journal, Shard, Modules; `weir serve` |
//! | [`cli`] | the `weir` command line |
//!
//! Dependency arrows point down this table; [`limits`] names every default
//! limit in one place.

pub mod broker;
pub mod chaos;
pub mod cli;
pub mod consumer;
pub mod limits;
pub mod message;
pub mod protocol;
pub mod runtime;
pub mod sandbox;
pub mod service;
pub mod store;
pub mod stream_sum;
pub mod template;
