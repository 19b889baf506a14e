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
//! | `recurse` | recurses without bound (a stack-overflow trap) |
//! | `divide` | divides by a zero it cannot see coming (Rust's check panics: a trap) |
//! | `index` | indexes past the end of a slice (Rust's bounds check panics: a trap) |
//! | `publish-many:<journal>=<n>` | publishes `n` small documents to `journal` |
//! | `publish-big:<journal>=<n>` | publishes one document of `n` bytes to `journal` |
//! | `put-big:<key>=<n>` | stores a value of `n` bytes under `key` |
//! | anything else | succeeds and does nothing |
//!
//! A JSON document (as a shard reads: a message stamped with a UUID) is
//! obeyed through its `"do"` string field instead, so a shard run by the
//! real registry can be told what to do.
//!
//! Safe Rust cannot provoke wasm's own integer-divide or out-of-bounds
//! memory traps (its checks panic first), so `divide` and `index` trap
//! through `unreachable`, as any Rust panic does.
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
        let mut start = 0;
        for (index, &end) in batch.doc_ends.iter().enumerate() {
            let doc = &batch.docs[start..end as usize];
            start = end as usize;
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

/// The command of `doc`: its `"do"` field if it is a JSON object (read
/// without a JSON parser: commands hold no quotes), else all of it.
fn command(doc: &str) -> &str {
    const FIELD: &str = "\"do\":\"";
    if !doc.starts_with('{') {
        return doc;
    }
    match doc.find(FIELD) {
        Some(at) => {
            let rest = &doc[at + FIELD.len()..];
            &rest[..rest.find('"').unwrap_or(rest.len())]
        }
        None => doc,
    }
}

/// Recurses `depth` levels deep with a frame the optimizer cannot drop.
// Unbounded on purpose: the test needs the guest's stack to run out.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 16]);
    frame[(depth % 16) as usize].wrapping_add(recurse(std::hint::black_box(depth + 1)))
}

/// `<name>=<n>` split into `name` and the number `n`.
fn sized(rest: &str) -> Result<(&str, usize), String> {
    let (name, n) = rest.split_once('=').unwrap_or((rest, "0"));
    let n = n.parse().map_err(|_| format!("not a size: {n}"))?;
    Ok((name, n))
}

fn behave(doc: &[u8]) -> Result<(), String> {
    let doc = String::from_utf8_lossy(doc);
    match command(doc.as_ref()) {
        "recurse" => {
            let deepest = recurse(0);
            Err(format!("recursion returned {deepest}"))
        }
        "divide" => {
            let zero = std::hint::black_box(0u32);
            let quotient = std::hint::black_box(7u32) / zero;
            Err(format!("division returned {quotient}"))
        }
        "index" => {
            let items = std::hint::black_box(vec![1u8; 4]);
            let at = std::hint::black_box(10usize);
            Err(format!("indexing returned {}", items[at]))
        }
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
            } else if let Some(rest) = other.strip_prefix("publish-many:") {
                let (journal, n) = sized(rest)?;
                for i in 0..n {
                    publisher::publish(journal, format!("{{\"i\":{i}}}").as_bytes())
                        .map_err(|err| format!("{err:?}"))?;
                }
                Ok(())
            } else if let Some(rest) = other.strip_prefix("publish-big:") {
                let (journal, n) = sized(rest)?;
                let mut doc = vec![b' '; n.max(2)];
                doc[0] = b'{';
                doc[n.max(2) - 1] = b'}';
                publisher::publish(journal, &doc).map_err(|err| format!("{err:?}"))
            } else if let Some(rest) = other.strip_prefix("get-many:") {
                // `get-many:KEY=N`: KEY asked for N times in one call.
                let (key, n) = sized(rest)?;
                let keys = vec![key.as_bytes().to_vec(); n];
                let values = store::get_many(&keys).map_err(|err| format!("{err:?}"))?;
                let found = values.iter().filter(|value| value.is_some()).count();
                Err(format!("{found} of {} found", values.len()))
            } else if let Some(rest) = other.strip_prefix("put-big:") {
                let (key, n) = sized(rest)?;
                store::put(key.as_bytes(), &vec![b'v'; n]).map_err(|err| format!("{err:?}"))
            } else if let Some(rest) = other.strip_prefix("publish:") {
                let (journal, doc) = rest.split_once('=').unwrap_or((rest, ""));
                publisher::publish(journal, doc.as_bytes()).map_err(|err| format!("{err:?}"))
            } else {
                Ok(())
            }
        }
    }
}
