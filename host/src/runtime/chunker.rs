//! Running the stream-sum chunker component as a **job**: [`ChunkerModule`]
//! (compiled and linked once), [`ChunkerModule::spawn`] (a run on its own
//! thread) and the host side of the `chunker` world's imports ([`JobData`]).
//!
//! A job is not a consumer: it has no transaction and no per-call deadline
//! (a run with infinite streams never returns unless it fails). Its imports
//! block the job's own thread on the caller's tokio runtime
//! (`Handle::block_on`): listing journals, the write barrier, committed
//! publishing (returning once durable) and read-committed reading with a
//! timeout. The guest thread is a plain OS thread, never a tokio worker.
//!
//! Cancelling ([`ChunkerJob::cancel`], or dropping the job) makes every
//! import return `cancelled` and traps running wasm at the next epoch tick,
//! so a run always ends promptly.
//!
//! ```no_run
//! # async fn demo(client: std::sync::Arc<dyn weir::broker::JournalClient>) -> Result<(), Box<dyn std::error::Error>> {
//! use weir::runtime::{ChunkerConfig, JobLimits, Runtime, RuntimeConfig, guests};
//!
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let chunker = runtime.chunker_module(guests::CHUNKER_WASM)?;
//! let config = ChunkerConfig { streams: 10, chunks: 10, workers: 4, ..ChunkerConfig::default() };
//! let job = chunker.spawn(client, tokio::runtime::Handle::current(), config, JobLimits::default())?;
//! let report = job.wait().await?;
//! println!("{} streams verified, p99 {:?}", report.streams_verified, report.latency_p99);
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};
use wasmtime::component::Resource;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtxView, WasiView};

use super::RuntimeError;
use super::bindings::chunker::weir::guest::{clock, journals, log, types};
use super::bindings::chunker::{self as wit, ChunkerPre};
use super::engine::Runtime;
use super::limits::{GuestLimiter, JobLimits, LogBudget};
use super::loader::ModuleDigest;
use super::reader::{JobReader, NextOutcome, error_chain};
use super::state::{GuestLogLevel, Sandbox};
use super::stderr::GuestOutput;
use crate::broker::{AppendRequest, BrokerError, JournalClient, LabelSelector, LabelSet};
use crate::consumer::PublishError;
use crate::message::{AtomicClock, Envelope, Publisher};

/// A run's parameters (Gazette's `ChunkerConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkerConfig {
    /// Streams per worker; negative means infinite.
    pub streams: i64,
    /// Data chunks per stream.
    pub chunks: u32,
    /// Workers emulated by the guest.
    pub workers: u32,
    /// PRNG seed; `None` seeds from the clock.
    pub seed: Option<u64>,
    /// How long to wait for an expected sum; `None` is Gazette's 40 s.
    pub timeout: Option<Duration>,
}

impl Default for ChunkerConfig {
    /// Gazette's defaults: infinite streams, 100 chunks, 4 workers.
    fn default() -> Self {
        ChunkerConfig {
            streams: -1,
            chunks: 100,
            workers: 4,
            seed: None,
            timeout: None,
        }
    }
}

/// What a successful run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkerReport {
    /// Streams whose sum arrived and matched.
    pub streams_verified: u64,
    /// Chunks published.
    pub chunks_published: u64,
    /// Sums read (ACKs excluded), including other runs' sums.
    pub sums_read: u64,
    /// Sums of streams this run does not know, ignored.
    pub foreign_sums: u64,
    /// Latency samples (one per verified stream): final chunk durable to
    /// sum verified.
    pub latency_samples: u64,
    /// Median latency.
    pub latency_p50: Duration,
    /// 99th-percentile latency.
    pub latency_p99: Duration,
    /// Maximum latency.
    pub latency_max: Duration,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkerError {
    /// The chunker found a failure: a mismatched, duplicate or premature
    /// sum, a timeout, or a journal error.
    #[error("chunker failed: {reason}")]
    Failed {
        /// What went wrong.
        reason: String,
        /// What the run did before it.
        partial: Box<ChunkerReport>,
    },
    /// The guest trapped.
    #[error("chunker crashed: {0}")]
    Crashed(String),
    /// The job was cancelled.
    #[error("chunker cancelled")]
    Cancelled {
        /// What the run did before it was cancelled, if it returned in
        /// time ([`JobLimits::cancel_grace`]) to say so.
        partial: Option<Box<ChunkerReport>>,
    },
    /// The component could not be instantiated.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The job's thread could not be started.
    #[error("cannot start the chunker thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Cancels a job. Clones share the state.
#[derive(Debug, Clone)]
pub struct CancelToken {
    state: Arc<watch::Sender<bool>>,
}

impl Default for CancelToken {
    fn default() -> Self {
        CancelToken {
            state: Arc::new(watch::Sender::new(false)),
        }
    }
}

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Cancels (idempotent).
    pub fn cancel(&self) {
        self.state.send_replace(true);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        *self.state.borrow()
    }

    /// Resolves once cancelled.
    pub async fn cancelled(&self) {
        let mut receiver = self.state.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let _ = receiver.wait_for(|cancelled| *cancelled).await;
    }
}

/// A compiled, linked chunker component. Cheap to clone.
#[derive(Clone)]
pub struct ChunkerModule {
    runtime: Runtime,
    digest: ModuleDigest,
    pre: ChunkerPre<JobData>,
}

impl std::fmt::Debug for ChunkerModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkerModule")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl ChunkerModule {
    /// Compiles (or fetches from the cache) and links `wasm` against the
    /// `chunker` world.
    pub fn new(runtime: &Runtime, wasm: &[u8]) -> Result<ChunkerModule, RuntimeError> {
        let (digest, component, _) = runtime.compile(wasm)?;
        let link_error = |e: wasmtime::Error| RuntimeError::Link {
            digest,
            world: "chunker",
            reason: format!("{e:#}"),
        };
        let pre = runtime
            .chunker_linker()
            .instantiate_pre(&component)
            .map_err(link_error)?;
        let pre = ChunkerPre::new(pre).map_err(link_error)?;
        Ok(ChunkerModule {
            runtime: runtime.clone(),
            digest,
            pre,
        })
    }

    /// The module's digest.
    pub fn digest(&self) -> ModuleDigest {
        self.digest
    }

    /// Starts a run on a new thread; see [`ChunkerJob`].
    pub fn spawn(
        &self,
        client: Arc<dyn JournalClient>,
        handle: Handle,
        config: ChunkerConfig,
        limits: JobLimits,
    ) -> Result<ChunkerJob, ChunkerError> {
        let cancel = CancelToken::new();
        let (done, result) = oneshot::channel();
        let module = self.clone();
        let token = cancel.clone();
        let thread = std::thread::Builder::new()
            .name("weir-chunker".into())
            .spawn(move || {
                let outcome = module.run(client, &handle, &config, &limits, &token);
                // The receiver may be gone (the job was dropped): fine.
                let _ = done.send(outcome);
            })
            .map_err(ChunkerError::Thread)?;
        Ok(ChunkerJob {
            cancel,
            result: Some(result),
            thread: Some(thread),
        })
    }

    /// Runs the chunker on **this** thread until it returns, fails or is
    /// cancelled. Blocks: call it from a dedicated thread (or
    /// `spawn_blocking`), never from async code.
    pub fn run(
        &self,
        client: Arc<dyn JournalClient>,
        handle: &Handle,
        config: &ChunkerConfig,
        limits: &JobLimits,
        cancel: &CancelToken,
    ) -> Result<ChunkerReport, ChunkerError> {
        let who: Arc<str> = Arc::from(format!("chunker module {}", self.digest.short()));
        let sandbox = Sandbox::new(
            who.clone(),
            GuestLimiter::new(limits.memory_bytes, limits.table_elements),
            LogBudget::new(
                limits.log_burst_bytes,
                limits.max_log_record_bytes,
                limits.log_bytes_per_sec,
            ),
            GuestOutput::new(who.clone(), limits.max_stderr_bytes),
        );
        let clock = Arc::new(AtomicClock::now());
        let data = JobData {
            sandbox,
            publisher: Publisher::new(client.clone(), clock.clone(), handle.clone()),
            clock,
            client,
            handle: handle.clone(),
            cancel: cancel.clone(),
            limits: limits.clone(),
            origin: Instant::now(),
        };
        let mut store = Store::new(self.runtime.engine(), data);
        store.limiter(|data| &mut data.sandbox.limiter);
        let token = cancel.clone();
        // A cancelled run is given a grace period to return its partial
        // report (its journal calls fail with `cancelled`); a run that
        // ignores them is trapped after it.
        let grace_ticks = self.runtime.deadline_ticks(limits.cancel_grace);
        let mut ticks_since_cancel = 0u64;
        store.epoch_deadline_callback(move |_| {
            if token.is_cancelled() {
                ticks_since_cancel += 1;
                if ticks_since_cancel > grace_ticks {
                    return Err(wasmtime::format_err!("the job was cancelled"));
                }
            }
            Ok(UpdateDeadline::Continue(1))
        });
        store.set_epoch_deadline(1);
        if self.runtime.config().fuel {
            store
                .set_fuel(u64::MAX)
                .map_err(|e| ChunkerError::Crashed(format!("{e:#}")))?;
        }
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| RuntimeError::Instantiate {
                digest: self.digest,
                reason: format!("{e:#}"),
            })?;
        let wit_config = wit::Config {
            streams: config.streams,
            chunks: config.chunks,
            workers: config.workers,
            seed: config.seed,
            timeout_ms: config
                .timeout
                .map(|t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX)),
        };
        tracing::info!(guest = %who, ?config, "chunker run starting");
        let outcome = bindings.call_run(&mut store, wit_config);
        match outcome {
            Ok(Err(failure)) if cancel.is_cancelled() => Err(ChunkerError::Cancelled {
                partial: Some(Box::new(host_report(&failure.partial))),
            }),
            _ if cancel.is_cancelled() => Err(ChunkerError::Cancelled { partial: None }),
            Ok(Ok(report)) => Ok(host_report(&report)),
            Ok(Err(failure)) => Err(ChunkerError::Failed {
                reason: failure.reason,
                partial: Box::new(host_report(&failure.partial)),
            }),
            Err(err) => {
                let output = store.data().sandbox.output.tail();
                let what = match err.downcast_ref::<Trap>() {
                    Some(trap) => format!("trap: {trap}"),
                    None => format!("{err:#}"),
                };
                Err(ChunkerError::Crashed(if output.is_empty() {
                    what
                } else {
                    format!("{what}; guest output: {output}")
                }))
            }
        }
    }
}

/// The host's report of the guest's.
fn host_report(report: &wit::Report) -> ChunkerReport {
    ChunkerReport {
        streams_verified: report.streams_verified,
        chunks_published: report.chunks_published,
        sums_read: report.sums_read,
        foreign_sums: report.foreign_sums,
        latency_samples: report.latency.samples,
        latency_p50: Duration::from_micros(report.latency.p50_us),
        latency_p99: Duration::from_micros(report.latency.p99_us),
        latency_max: Duration::from_micros(report.latency.max_us),
    }
}

/// A chunker run on its own thread. Dropping it cancels the run.
pub struct ChunkerJob {
    cancel: CancelToken,
    result: Option<oneshot::Receiver<Result<ChunkerReport, ChunkerError>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ChunkerJob {
    /// Asks the run to stop; [`wait`](Self::wait) then returns
    /// [`ChunkerError::Cancelled`] (with the run's partial report if it
    /// returned within its grace period).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The job's cancel token.
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Waits for the run's outcome (async; does not block the reactor).
    pub async fn wait(mut self) -> Result<ChunkerReport, ChunkerError> {
        let Some(result) = self.result.take() else {
            return Err(ChunkerError::Cancelled { partial: None });
        };
        let outcome = result
            .await
            .unwrap_or_else(|_| Err(ChunkerError::Crashed("the chunker thread panicked".into())));
        // The thread has sent its result and is exiting.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        outcome
    }
}

impl Drop for ChunkerJob {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.cancel.cancel();
        }
    }
}

/// A chunker guest's store data: the sandbox plus what its imports use.
pub struct JobData {
    /// WASI, limits, log and output capture.
    pub sandbox: Sandbox,
    client: Arc<dyn JournalClient>,
    publisher: Publisher,
    clock: Arc<AtomicClock>,
    handle: Handle,
    cancel: CancelToken,
    limits: JobLimits,
    origin: Instant,
}

impl JobData {
    /// Runs `future` on the job's runtime, unless the job is cancelled first.
    fn block_on<T>(&self, future: impl Future<Output = T>) -> Option<T> {
        let cancel = &self.cancel;
        self.handle.block_on(async {
            tokio::select! {
                biased;
                () = cancel.cancelled() => None,
                value = future => Some(value),
            }
        })
    }
}

impl WasiView for JobData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.sandbox.wasi_view()
    }
}

fn journal_error(err: &BrokerError) -> journals::JournalError {
    match err {
        BrokerError::InvalidArgument(what) => journals::JournalError::InvalidArgument(what.clone()),
        BrokerError::JournalNotFound(journal) => journals::JournalError::NotFound(journal.clone()),
        BrokerError::LimitExceeded(what) => journals::JournalError::LimitExceeded(what.clone()),
        // Every other variant is classified by the broker's own rule.
        other if other.is_transient() => journals::JournalError::Unavailable(error_chain(other)),
        other => journals::JournalError::Failed(error_chain(other)),
    }
}

fn publish_error(err: PublishError) -> journals::JournalError {
    match err {
        PublishError::InvalidDocument { journal, reason } => {
            journals::JournalError::InvalidArgument(format!("{journal}: {reason}"))
        }
        PublishError::JournalNotFound(journal) => journals::JournalError::NotFound(journal),
        PublishError::LimitExceeded(what) => journals::JournalError::LimitExceeded(what),
    }
}

fn wit_envelope(envelope: Envelope) -> types::Envelope {
    types::Envelope {
        journal: envelope.journal.to_string(),
        begin: envelope.begin,
        end: envelope.end,
        producer: envelope.producer.as_u64(),
        clock: envelope.clock.0,
        uuid_flags: envelope.flags.bits(),
        content_type: envelope.content_type.to_string(),
        doc: Vec::from(envelope.doc),
    }
}

type JournalResult<T> = wasmtime::Result<Result<T, journals::JournalError>>;

impl types::Host for JobData {}

impl journals::Host for JobData {
    fn list_journals(&mut self, selector: journals::LabelSelector) -> JournalResult<Vec<String>> {
        let mut built = LabelSelector::default();
        for (labels, set) in [
            (selector.include, &mut built.include),
            (selector.exclude, &mut built.exclude),
        ] {
            let mut added = LabelSet::new();
            for label in labels {
                added.insert(label.name, label.value);
            }
            *set = added;
        }
        if let Err(err) = built.validate() {
            return Ok(Err(journals::JournalError::InvalidArgument(
                err.to_string(),
            )));
        }
        let client = self.client.clone();
        match self.block_on(async move { client.list(&built).await }) {
            None => Ok(Err(journals::JournalError::Cancelled)),
            Some(Err(err)) => Ok(Err(journal_error(&err))),
            Some(Ok(specs)) => Ok(Ok(specs.into_iter().map(|spec| spec.name).collect())),
        }
    }

    fn write_barrier(&mut self, journal: String) -> JournalResult<i64> {
        let client = self.client.clone();
        let request = AppendRequest {
            journal,
            ..AppendRequest::default()
        };
        match self.block_on(async move { client.append(request).await }) {
            None => Ok(Err(journals::JournalError::Cancelled)),
            Some(Err(err)) => Ok(Err(journal_error(&err))),
            Some(Ok(response)) => Ok(Ok(response.end)),
        }
    }

    fn publish_committed(&mut self, messages: Vec<journals::Outgoing>) -> JournalResult<()> {
        if self.cancel.is_cancelled() {
            return Ok(Err(journals::JournalError::Cancelled));
        }
        if messages.len() > self.limits.max_publish_batch {
            return Ok(Err(journals::JournalError::LimitExceeded(format!(
                "{} documents in one call exceed {}",
                messages.len(),
                self.limits.max_publish_batch
            ))));
        }
        if let Some(large) = messages
            .iter()
            .find(|m| m.doc.len() > self.limits.max_doc_bytes)
        {
            return Ok(Err(journals::JournalError::LimitExceeded(format!(
                "a document of {} bytes for {} exceeds {} bytes",
                large.doc.len(),
                large.journal,
                self.limits.max_doc_bytes
            ))));
        }
        self.clock.update(SystemTime::now());
        for message in &messages {
            if let Err(err) = self
                .publisher
                .publish_committed(&message.journal, &message.doc)
            {
                return Ok(Err(publish_error(err)));
            }
        }
        let publisher = &self.publisher;
        match self.block_on(publisher.flush()) {
            None => Ok(Err(journals::JournalError::Cancelled)),
            Some(Err(err)) => Ok(Err(journal_error(&err))),
            Some(Ok(())) => Ok(Ok(())),
        }
    }
}

impl journals::HostReader for JobData {
    fn open(&mut self, journal: String, offset: i64) -> JournalResult<Resource<JobReader>> {
        if self.cancel.is_cancelled() {
            return Ok(Err(journals::JournalError::Cancelled));
        }
        if offset < 0 {
            return Ok(Err(journals::JournalError::InvalidArgument(format!(
                "offset {offset} of {journal}: readers start at a byte offset (use write-barrier for the head)"
            ))));
        }
        let reader = match JobReader::open(
            self.client.clone(),
            &self.handle,
            &journal,
            offset,
            self.limits.reader_buffer,
        ) {
            Ok(reader) => reader,
            Err(err) => return Ok(Err(journals::JournalError::Failed(error_chain(&err)))),
        };
        Ok(Ok(self.sandbox.table().push(reader)?))
    }

    fn next(
        &mut self,
        reader: Resource<JobReader>,
        timeout_ms: u32,
    ) -> JournalResult<Option<types::Envelope>> {
        let handle = self.handle.clone();
        let cancel = self.cancel.clone();
        let reader = self.sandbox.table().get_mut(&reader)?;
        match reader.next(
            &handle,
            Duration::from_millis(u64::from(timeout_ms)),
            &cancel,
        ) {
            NextOutcome::Envelope(envelope) => Ok(Ok(Some(wit_envelope(envelope)))),
            NextOutcome::TimedOut => Ok(Ok(None)),
            NextOutcome::Cancelled => Ok(Err(journals::JournalError::Cancelled)),
            NextOutcome::Failed(reason) => Ok(Err(journals::JournalError::Failed(reason))),
        }
    }

    fn drop(&mut self, reader: Resource<JobReader>) -> wasmtime::Result<()> {
        // Dropping the reader aborts its tasks; it must happen in the runtime.
        let _runtime = self.handle.enter();
        drop(self.sandbox.table().delete(reader)?);
        Ok(())
    }
}

impl clock::Host for JobData {
    fn monotonic_nanos(&mut self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn wall_nanos(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

impl log::Host for JobData {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => GuestLogLevel::Trace,
            log::Level::Debug => GuestLogLevel::Debug,
            log::Level::Info => GuestLogLevel::Info,
            log::Level::Warn => GuestLogLevel::Warn,
            log::Level::Error => GuestLogLevel::Error,
        };
        self.sandbox.log(level, &message);
    }
}

#[cfg(test)]
mod test {
    use std::collections::BTreeMap;

    use futures::FutureExt as _;

    use super::*;
    use crate::broker::{Broker, BrokerConfig, JournalChange, JournalSpec, ReadRequest};
    use crate::consumer::Application;
    use crate::consumer::TxnContext;
    use crate::message::{NDJSON, ReadCommitted};
    use crate::runtime::GuestLimits;
    use crate::runtime::guests::{CHUNKER_WASM, SUMMER_WASM};
    use crate::runtime::testing::{MemStore, Recorder, runtime};

    const SUMS: &str = "examples/stream-sum/sums";

    /// An embedded broker with `partitions` chunk partitions and the sums
    /// journal, labeled as in Gazette's stream-sum.
    struct World {
        rt: tokio::runtime::Runtime,
        _dir: tempfile::TempDir,
        client: Arc<dyn JournalClient>,
        partitions: Vec<String>,
    }

    fn world(partitions: usize) -> World {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio");
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = rt
            .block_on(Broker::open(dir.path(), BrokerConfig::default()))
            .expect("broker");
        let client: Arc<dyn JournalClient> = Arc::new(broker);
        let spec = |name: &str, message_type: &str| {
            let labels: LabelSet = [
                ("app.gazette.dev/message-type", message_type),
                ("content-type", NDJSON),
            ]
            .into_iter()
            .collect();
            JournalSpec::new(name).with_labels(labels)
        };
        let partitions: Vec<String> = (0..partitions)
            .map(|i| format!("examples/stream-sum/chunks/part-{i:03}"))
            .collect();
        let mut changes: Vec<JournalChange> = partitions
            .iter()
            .map(|name| JournalChange::Upsert(spec(name, "stream_sum.Chunk")))
            .collect();
        changes.push(JournalChange::Upsert(spec(SUMS, "stream_sum.Sum")));
        rt.block_on(client.apply(changes))
            .expect("journals created");
        World {
            rt,
            _dir: dir,
            client,
            partitions,
        }
    }

    /// How the test summer misbehaves.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Summer {
        Honest,
        PublishesTwice,
    }

    /// A summer loop over every chunk partition, on its own thread: reads
    /// committed chunks, runs them through the summer component in
    /// "transactions" of whatever is available, and publishes the sums
    /// committed. Stops when `stop` is cancelled.
    fn spawn_summer(
        world: &World,
        behavior: Summer,
        stop: CancelToken,
    ) -> std::thread::JoinHandle<Result<(), String>> {
        let client = world.client.clone();
        let handle = world.rt.handle().clone();
        let sources: Vec<(String, i64)> = world.partitions.iter().map(|p| (p.clone(), 0)).collect();
        std::thread::spawn(move || {
            let module = runtime()
                .consumer_module(SUMMER_WASM)
                .map_err(|e| e.to_string())?;
            let mut app = module
                .application("all-parts", GuestLimits::default())
                .map_err(|e| e.to_string())?;
            let publisher =
                Publisher::new(client.clone(), Arc::new(AtomicClock::now()), handle.clone());
            let mut reader = {
                let _runtime = handle.enter();
                ReadCommitted::new(client, sources, &BTreeMap::new(), 1024, 1024)
                    .map_err(|e| e.to_string())?
            };
            let mut store = MemStore::default();
            loop {
                let first = handle.block_on(async {
                    tokio::select! {
                        () = stop.cancelled() => None,
                        next = reader.next() => Some(next),
                    }
                });
                let Some(first) = first else { return Ok(()) };
                let mut batch = vec![first.map_err(|e| e.to_string())?];
                while let Some(next) = handle.block_on(async { reader.next().now_or_never() }) {
                    batch.push(next.map_err(|e| e.to_string())?);
                }
                let mut recorder = Recorder::default();
                let mut txn = TxnContext {
                    shard: "all-parts",
                    store: &mut store,
                    publisher: &mut recorder,
                };
                for envelope in batch.iter().filter(|e| !e.is_ack()) {
                    app.consume_message(&mut txn, envelope)
                        .map_err(|e| e.to_string())?;
                }
                app.finalize_txn(&mut txn).map_err(|e| e.to_string())?;
                for (journal, doc) in &recorder.published {
                    publisher
                        .publish_committed(journal, doc)
                        .map_err(|e| e.to_string())?;
                    if behavior == Summer::PublishesTwice {
                        publisher
                            .publish_committed(journal, doc)
                            .map_err(|e| e.to_string())?;
                    }
                }
                handle
                    .block_on(publisher.flush())
                    .map_err(|e| e.to_string())?;
            }
        })
    }

    fn chunker() -> ChunkerModule {
        runtime()
            .chunker_module(CHUNKER_WASM)
            .expect("chunker links")
    }

    #[test]
    fn the_chunker_verifies_every_stream_summed_by_the_summer_component() {
        let world = world(4);
        let stop = CancelToken::new();
        let summer = spawn_summer(&world, Summer::Honest, stop.clone());
        let config = ChunkerConfig {
            streams: 5,
            chunks: 5,
            workers: 4,
            seed: Some(11),
            timeout: None,
        };
        let job = chunker()
            .spawn(
                world.client.clone(),
                world.rt.handle().clone(),
                config,
                JobLimits::default(),
            )
            .expect("spawned");
        let report = world.rt.block_on(job.wait()).expect("every sum verified");
        stop.cancel();
        summer.join().expect("summer thread").expect("summer loop");

        assert_eq!(report.streams_verified, 20);
        assert_eq!(report.chunks_published, 20 * 6);
        assert_eq!(report.sums_read, 20);
        assert_eq!(report.foreign_sums, 0);
        assert_eq!(report.latency_samples, 20);
        assert!(
            report.latency_p50 <= report.latency_p99 && report.latency_p99 <= report.latency_max
        );
        // Chunks landed on the partitions, sums on the sums journal.
        let head = |journal: &str| {
            let client = world.client.clone();
            let journal = journal.to_string();
            world.rt.block_on(async move {
                client
                    .append(AppendRequest {
                        journal,
                        ..AppendRequest::default()
                    })
                    .await
                    .expect("barrier")
                    .end
            })
        };
        assert!(world.partitions.iter().map(|p| head(p)).sum::<i64>() > 0);
        assert!(head(SUMS) > 0);
    }

    #[test]
    fn a_sum_committed_twice_fails_the_chunker() {
        let world = world(2);
        let stop = CancelToken::new();
        let summer = spawn_summer(&world, Summer::PublishesTwice, stop.clone());
        let config = ChunkerConfig {
            streams: 3,
            chunks: 2,
            workers: 1,
            seed: Some(12),
            timeout: None,
        };
        let job = chunker()
            .spawn(
                world.client.clone(),
                world.rt.handle().clone(),
                config,
                JobLimits::default(),
            )
            .expect("spawned");
        match world.rt.block_on(job.wait()) {
            Err(ChunkerError::Failed { reason, .. }) => {
                assert!(reason.starts_with("duplicate sum!"), "{reason}")
            }
            other => panic!("expected a duplicate-sum failure, got {other:?}"),
        }
        stop.cancel();
        summer.join().expect("summer thread").expect("summer loop");
    }

    #[test]
    fn a_missing_sum_times_out() {
        let world = world(1);
        let config = ChunkerConfig {
            streams: 1,
            chunks: 1,
            workers: 1,
            seed: Some(13),
            timeout: Some(Duration::from_millis(300)),
        };
        let job = chunker()
            .spawn(
                world.client.clone(),
                world.rt.handle().clone(),
                config,
                JobLimits::default(),
            )
            .expect("spawned");
        match world.rt.block_on(job.wait()) {
            Err(ChunkerError::Failed { reason, .. }) => {
                assert!(
                    reason.starts_with("timeout waiting for expected sum"),
                    "{reason}"
                )
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[test]
    fn cancelling_stops_a_blocked_infinite_run() {
        let world = world(1);
        let config = ChunkerConfig {
            streams: -1,
            chunks: 3,
            workers: 2,
            seed: Some(14),
            timeout: None,
        };
        let job = chunker()
            .spawn(
                world.client.clone(),
                world.rt.handle().clone(),
                config,
                JobLimits::default(),
            )
            .expect("spawned");
        // Wait (without sleeping) until the chunker has published a chunk:
        // it is then running, and soon blocked on sums that never come.
        let client = world.client.clone();
        let partition = world.partitions[0].clone();
        world.rt.block_on(async move {
            let request = ReadRequest {
                journal: partition,
                offset: 0,
                block: true,
                end_offset: 0,
            };
            let mut stream = client.read(request).await.expect("read");
            stream.next().await.expect("a chunk").expect("content");
        });
        let started = Instant::now();
        job.cancel();
        match world.rt.block_on(job.wait()) {
            // It returned in its grace period, with what it had done.
            Err(ChunkerError::Cancelled {
                partial: Some(partial),
            }) => assert!(partial.chunks_published > 0, "{partial:?}"),
            other => panic!("expected a cancelled run with its report, got {other:?}"),
        }
        // A blocked run would otherwise wait for its 40 s timeout.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn the_chunker_fails_without_chunk_partitions() {
        let world = world(0);
        let job = chunker()
            .spawn(
                world.client.clone(),
                world.rt.handle().clone(),
                ChunkerConfig::default(),
                JobLimits::default(),
            )
            .expect("spawned");
        match world.rt.block_on(job.wait()) {
            Err(ChunkerError::Failed { reason, .. }) => {
                assert!(reason.contains("no chunk partitions"), "{reason}")
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}
