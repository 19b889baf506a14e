//! Gazette's stream-sum application on the host side: the data model, a
//! native build of the summer, and a generator of Gazette-shaped streams.
//!
//! The summer normally runs as a WebAssembly component (`guest-summer`,
//! embedded as [`runtime::guests::SUMMER_WASM`](crate::runtime::guests::SUMMER_WASM)).
//! This module links the very same data model natively, from the same
//! source file (`guest-summer/src/sum.rs`, re-exported as [`sum`]), so that:
//!
//! - [`NativeSummer`] runs the summer without a sandbox, as the baseline
//!   that `weir bench summer` compares the component against;
//! - [`StreamGenerator`] writes chunks the summer parses by construction,
//!   and knows the sum each stream must end with.
//!
//! Both summers fold chunks into CRC-64/XZ sums with Gazette's rules
//! ([`sum::Sum::update`]); they differ only in what crosses the boundary to
//! the host.

pub mod audit;
pub mod audit_model;
pub mod native;
pub mod streams;

pub use guest_summer::SUMS_JOURNAL;
pub use guest_summer::sum;
pub use native::NativeSummer;
pub use streams::{GeneratedChunk, StreamGenerator};
