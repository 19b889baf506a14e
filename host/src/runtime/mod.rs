//! The WebAssembly runtime: wasmtime with the component model, running the
//! user's consumer logic (and jobs such as the stream-sum chunker) as
//! sandboxed components built against `wit/`.
//!
//! # Using it
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use weir::runtime::{GuestLimits, Runtime, RuntimeConfig};
//!
//! let runtime = Runtime::new(RuntimeConfig::default())?;   // one per process
//! let wasm = std::fs::read("guest_summer.wasm")?;
//! let module = runtime.consumer_module(&wasm)?;            // compiled once, cached by digest
//! println!("module {}", module.digest());
//! let app = module.application("shard-000", GuestLimits::default())?;
//! // `app` implements `consumer::Application`: hand it to the shard's
//! // transaction loop, which calls it from a blocking thread.
//! # Ok(()) }
//! ```
//!
//! A job (the chunker) runs on its own thread against a journal client; see
//! [`ChunkerModule::spawn`].
//!
//! # Guarantees
//!
//! - **Compiled once.** Components are cached by the SHA-256 of their bytes
//!   ([`ModuleDigest`]) in memory and, with [`RuntimeConfig::cache_dir`], on
//!   disk (see [`loader`]).
//! - **Sandboxed.** Guests see only the WIT imports and an empty WASI
//!   context: no files, network or environment, and no blocking.
//! - **Bounded.** Every consumer call has a wall-clock deadline (epoch
//!   interruption), a memory cap and optional fuel; publishing, store keys
//!   and values, and log output are capped (see [`limits`]).
//! - **Crashes are contained.** A trap, deadline or limit becomes
//!   `AppError::Crashed`; the instance is discarded and a fresh one is made
//!   from the pre-linked component. A WIT error becomes
//!   `AppError::Rejected`. A store or publish failure fails the transaction
//!   even if the guest ignores it. The host never panics because of a guest.
//! - **Off the reactor.** Guest calls run on the caller's thread (a blocking
//!   thread), never on a tokio worker: the consumer world is driven by a
//!   tiny executor of its own ([`bridge`]), the chunker blocks its own
//!   thread.

pub mod bench;
pub mod bindings;
pub mod bridge;
pub mod chunker;
pub mod consumer_host;
pub mod engine;
pub mod guest_app;
pub mod guests;
pub mod limits;
pub mod loader;
pub mod metrics;
pub mod reader;
pub mod state;
pub mod stderr;
#[cfg(test)]
pub(crate) mod testing;

use std::path::PathBuf;

pub use chunker::{
    CancelToken, ChunkerConfig, ChunkerError, ChunkerJob, ChunkerModule, ChunkerReport,
};
pub use engine::{Runtime, RuntimeConfig};
pub use guest_app::{ConsumerModule, GuestApplication};
pub use limits::{GuestLimits, JobLimits};
pub use loader::{CacheOutcome, DigestParseError, ModuleDigest};
pub use metrics::RuntimeMetrics;

/// Errors of loading, linking and instantiating components.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The runtime or limits configuration is invalid.
    #[error("invalid runtime configuration: {0}")]
    Config(String),
    /// The bytes are not a valid component (or compiling it failed).
    #[error("cannot compile module {digest}: {reason}")]
    Compile {
        /// The module.
        digest: ModuleDigest,
        /// Wasmtime's explanation.
        reason: String,
    },
    /// The component does not fit the world (a missing export, an import
    /// the host does not provide).
    #[error("module {digest} does not implement the {world} world: {reason}")]
    Link {
        /// The module.
        digest: ModuleDigest,
        /// `consumer` or `chunker`.
        world: &'static str,
        /// Wasmtime's explanation.
        reason: String,
    },
    /// Creating an instance failed (a start function trapped, a limit).
    #[error("cannot instantiate module {digest}: {reason}")]
    Instantiate {
        /// The module.
        digest: ModuleDigest,
        /// What went wrong.
        reason: String,
    },
    /// The compiled-component cache folder is unusable.
    #[error("component cache {path}")]
    Cache {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The engine could not be created.
    #[error("cannot create the wasm engine: {0}")]
    Engine(String),
}
