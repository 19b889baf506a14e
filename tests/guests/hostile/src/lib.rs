//! A hostile consumer component for the runtime's fault tests: each message
//! document names the misbehavior to perform.
//!
//! | doc | behavior |
//! |---|---|
//! | `trap` | panics (a trap: `unreachable`) |
//! | `loop` | spins forever (stopped only by the epoch deadline or fuel) |
//! | `alloc` | allocates and touches 1 MiB blocks without bound (refused at the memory cap) |
//! | `sleep` | sleeps for an hour through `wasi:io/poll` (which the host forbids) |
//! | `swallow` | puts an oversized key, ignores the error and returns success |
//! | `log-flood` | logs 10 000 records of 1 KiB |
//! | `put:<key>=<value>` | stores `value` under `key` |
//! | `get:<key>` | fails with the stored value of `key` as its error text (so tests can read it) |
//! | `publish:<journal>=<doc>` | publishes `doc` to `journal` |
//! | `count` | increments an in-memory counter and fails with its value as the error text |
//! | anything else | succeeds and does nothing |
//!
//! `consume-messages` applies the same to each message of the batch, failing with the
//! index of the first failure.

use std::cell::Cell;

/// The generated canonical-ABI glue, the crate's only unsafe code.
#[allow(
    unsafe_code,
    clippy::too_many_arguments,
    reason = "wit-bindgen's generated canonical-ABI glue"
)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "consumer",
    });

    use super::Hostile;
    export!(Hostile with_types_in self);
}

use bindings::weir::guest::types::Batch;
use bindings::weir::guest::{log, publisher, store};
use bindings::{Envelope, Guest, IndexedError};

thread_local! {
    /// In-memory state that a fresh instance resets.
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

struct Hostile;

impl Guest for Hostile {
    fn consume_message(envelope: Envelope) -> Result<(), String> {
        behave(&envelope.doc)
    }

    fn consume_messages(batch: Batch) -> Result<(), IndexedError> {
        for (index, message) in batch.messages.iter().enumerate() {
            let start = message.doc_offset as usize;
            let doc = &batch.docs[start..start + message.doc_len as usize];
            behave(doc).map_err(|message| IndexedError {
                index: index as u32,
                message,
            })?;
        }
        Ok(())
    }

    fn finalize_txn() -> Result<(), String> {
        Ok(())
    }
}

fn behave(doc: &[u8]) -> Result<(), String> {
    let doc = String::from_utf8_lossy(doc);
    match doc.as_ref() {
        "trap" => panic!("hostile guest: trap requested"),
        "loop" => {
            let mut spins = 0u64;
            loop {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut block = vec![0u8; 1 << 20];
                block[4095] = 1;
                hoard.push(std::hint::black_box(block));
            }
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            Ok(())
        }
        "swallow" => {
            let key = vec![b'k'; 1 << 20];
            let _ignored = store::put(&key, b"v");
            Ok(())
        }
        "log-flood" => {
            let record = "x".repeat(1024);
            for _ in 0..10_000 {
                log::log(log::Level::Info, &record);
            }
            Ok(())
        }
        "count" => {
            let count = COUNT.with(|c| {
                c.set(c.get() + 1);
                c.get()
            });
            Err(count.to_string())
        }
        other => {
            if let Some(rest) = other.strip_prefix("put:") {
                let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
                store::put(key.as_bytes(), value.as_bytes()).map_err(|err| format!("{err:?}"))
            } else if let Some(key) = other.strip_prefix("get:") {
                match store::get(key.as_bytes()).map_err(|err| format!("{err:?}"))? {
                    Some(value) => Err(String::from_utf8_lossy(&value).into_owned()),
                    None => Err("<absent>".to_string()),
                }
            } else if let Some(rest) = other.strip_prefix("publish:") {
                let (journal, doc) = rest.split_once('=').unwrap_or((rest, ""));
                publisher::publish(journal, doc.as_bytes()).map_err(|err| format!("{err:?}"))
            } else {
                Ok(())
            }
        }
    }
}
