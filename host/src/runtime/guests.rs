//! The guest components built by `host/build.rs` (wasm32-wasip2, release),
//! embedded in the host so that `weir stream-sum` and the tests need no
//! separate build step.

/// Gazette's stream-sum summer (`guest-summer`), a `consumer` component.
pub const SUMMER_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/guest_summer.wasm"));

/// Gazette's stream-sum chunker (`guest-chunker`), a `chunker` component.
pub const CHUNKER_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/guest_chunker.wasm"));

/// Misbehaving guests for fault tests, here and in the integration tests.
/// Always compiled: build.rs builds them anyway, they are small, and a
/// feature would make the tests compile this crate a second time.
pub mod test_guests {
    /// `tests/guests/hostile`: a `consumer` component whose every message
    /// names a misbehavior (`trap`, `loop`, `alloc`, `sleep`, `swallow`,
    /// `log-flood`, `count`, `put:k=v`, `get:k`, `publish:j=doc`); see its
    /// source for the list.
    pub const HOSTILE_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/guest_hostile.wasm"));
}
