//! Gazette's stream-sum **chunker** as a weir job component: the test
//! oracle of stream-sum.
//!
//! It emulates `workers` concurrent chunker workers as state machines in the
//! guest's single thread ([`worker`]), publishes their chunks committed to
//! the chunk partitions ([`mapping`]), and verifies every stream's final sum
//! read from `examples/stream-sum/sums`, with Gazette's deadline ladder
//! ([`ladder`]). The main loop is [`run::run`], written against a small
//! [`run::Host`] trait that this file implements with the component's
//! imports.
//!
//! Beyond Gazette, it also fails on a second sum for a stream it already
//! verified, and on a sum for one of its streams before that stream's final
//! chunk, so exactly-once violations are caught directly rather than only
//! through a timeout.

pub mod ladder;
pub mod latency;
pub mod mapping;
pub mod prng;
pub mod run;
#[path = "../../guest-summer/src/sum.rs"]
pub mod sum;
pub mod worker;

/// The generated canonical-ABI glue, the crate's only unsafe code.
#[allow(unsafe_code, reason = "wit-bindgen's generated canonical-ABI glue")]
mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "chunker",
    });

    use super::Chunker;
    export!(Chunker with_types_in self);
}

use bindings::weir::guest::journals::{self, JournalError, Label, LabelSelector, Outgoing, Reader};
use bindings::weir::guest::{clock, log};
use bindings::{Config, Failure, Guest, Latency, Report};

struct Chunker;

impl Guest for Chunker {
    fn run(config: Config) -> Result<Report, Failure> {
        let config = run::Config {
            streams: config.streams,
            chunks: config.chunks,
            workers: config.workers,
            seed: config.seed,
            timeout_ms: config.timeout_ms,
        };
        match run::run(&mut WasmHost { sums: None }, &config) {
            Ok(report) => Ok(wit_report(report)),
            Err(failure) => Err(Failure {
                reason: failure.reason,
                partial: wit_report(failure.partial),
            }),
        }
    }
}

fn wit_report(report: run::Report) -> Report {
    Report {
        streams_verified: report.streams_verified,
        chunks_published: report.chunks_published,
        sums_read: report.sums_read,
        foreign_sums: report.foreign_sums,
        latency: Latency {
            samples: report.latency.samples,
            p50_us: report.latency.p50_us,
            p99_us: report.latency.p99_us,
            max_us: report.latency.max_us,
        },
    }
}

/// The component's imports as a [`run::Host`].
struct WasmHost {
    sums: Option<Reader>,
}

impl run::Host for WasmHost {
    fn list_chunk_partitions(&mut self) -> Result<Vec<String>, String> {
        let selector = LabelSelector {
            include: vec![Label {
                name: run::MESSAGE_TYPE_LABEL.to_string(),
                value: run::CHUNK_MESSAGE_TYPE.to_string(),
            }],
            exclude: Vec::new(),
        };
        journals::list_journals(&selector).map_err(|err| describe("listing chunk partitions", err))
    }

    fn write_barrier(&mut self, journal: &str) -> Result<i64, String> {
        journals::write_barrier(journal)
            .map_err(|err| describe(&format!("write barrier on {journal}"), err))
    }

    fn publish(&mut self, batch: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        let messages: Vec<Outgoing> = batch
            .into_iter()
            .map(|(journal, doc)| Outgoing { journal, doc })
            .collect();
        journals::publish_committed(&messages).map_err(|err| describe("publishing chunks", err))
    }

    fn open_sums(&mut self, offset: i64) -> Result<(), String> {
        let reader = Reader::open(run::SUMS_JOURNAL, offset)
            .map_err(|err| describe(&format!("opening {}", run::SUMS_JOURNAL), err))?;
        self.sums = Some(reader);
        Ok(())
    }

    fn next_sum(&mut self, timeout_ms: u32) -> Result<Option<run::SumMessage>, String> {
        let Some(reader) = &self.sums else {
            return Err("the sums reader is not open".into());
        };
        let envelope = reader
            .next(timeout_ms)
            .map_err(|err| describe(&format!("reading {}", run::SUMS_JOURNAL), err))?;
        Ok(envelope.map(|envelope| run::SumMessage {
            flags: envelope.uuid_flags,
            begin: envelope.begin,
            doc: envelope.doc,
        }))
    }

    fn now_ns(&mut self) -> u64 {
        clock::monotonic_nanos()
    }

    fn seed(&mut self) -> u64 {
        clock::wall_nanos() ^ clock::monotonic_nanos().rotate_left(32)
    }

    fn log(&mut self, level: run::Level, message: &str) {
        let level = match level {
            run::Level::Info => log::Level::Info,
            run::Level::Warn => log::Level::Warn,
        };
        log::log(level, message);
    }
}

fn describe(context: &str, err: JournalError) -> String {
    let what = match err {
        JournalError::InvalidArgument(what) => format!("invalid argument: {what}"),
        JournalError::NotFound(what) => format!("journal not found: {what}"),
        JournalError::LimitExceeded(what) => format!("limit exceeded: {what}"),
        JournalError::Unavailable(what) => format!("broker unavailable: {what}"),
        JournalError::Failed(what) => format!("failed: {what}"),
        JournalError::Cancelled => "the job was cancelled".to_string(),
    };
    format!("{context}: {what}")
}
