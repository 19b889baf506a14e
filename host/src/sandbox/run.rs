//! One sandboxed run: a throwaway embedded host, one shard of the guest over
//! the input, and the [`Report`] of what it committed.
//!
//! The run, in order:
//!
//! 1. opens an embedded broker in a new temporary directory and creates the
//!    input journal (JSON lines) and the shard's recovery log;
//! 2. starts one shard ([`SHARD_ID`]) of the guest over the input journal,
//!    with a RocksDB store under the same directory;
//! 3. appends the input, in one round or (with crashes) in rounds of N
//!    messages, and after each round waits until the shard has committed
//!    every message of it that a read-committed reader delivers (its
//!    checkpoint's read-through offset reaches that message's end);
//! 4. stops the shard, reads every journal the guest published to with an
//!    independent read-committed reader, and rebuilds the store from the
//!    recovery log alone, in an empty directory, to list its contents.
//!
//! A guest failure ends the run at once with [`SandboxError::Guest`]; a run
//! that does not finish within [`RunConfig::timeout`] ends with
//! [`SandboxError::Timeout`]. Either way the shard is aborted, the broker
//! shut down and the directory removed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::broker::protocol::{AppendRequest, JournalChange, JournalClient};
use crate::broker::spec::{JournalSpec, LabelSet};
use crate::broker::{Broker, BrokerConfig};
use crate::consumer::application::KeyValue;
use crate::consumer::{
    AppError, AppFactory, ShardConfig, ShardHandle, ShardSpec, ShardStatus, Source, TxnStore,
    spawn_shard,
};
use crate::limits;
use crate::message::{AtomicClock, NDJSON};
use crate::runtime::{ConsumerModule, GuestLimits};
use crate::store::{ShardStore, StoreConfig, TxnOverlay};

use super::autocreate::{AutoCreateClient, CONTENT_TYPE_LABEL};
use super::committed::CommittedReader;
use super::crash::{CrashPlan, CrashPoint};
use super::input::{Input, InputLine};
use super::output::{Published, Report, strip_uuid};
use super::recording::{Failures, Recorded, RecordingApp};
use super::{GuestFailure, MessageAt, SandboxError, broker_error};

/// The sandboxed shard's id.
pub const SHARD_ID: &str = "sandbox";
/// Prefix of the sandboxed shard's recovery log.
pub const RECOVERY_LOG_PREFIX: &str = "weir-test/recovery";
/// Content type of recovery logs.
const RECOVERY_LOG_CONTENT_TYPE: &str = "application/x-weir-recoverylog";

/// How to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The input journal.
    pub journal: String,
    /// Crash the shard once per this many input messages; `None` for none.
    pub crash_every: Option<usize>,
    /// Longest the run may take.
    pub timeout: Duration,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            journal: limits::SANDBOX_DEFAULT_INPUT_JOURNAL.to_string(),
            crash_every: None,
            timeout: Duration::from_secs(limits::SANDBOX_RUN_TIMEOUT_SECS),
        }
    }
}

/// What a run committed, and the crashes it survived.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Published messages and the final store.
    pub report: Report,
    /// Injected crashes, in order (none without `crash_every`).
    pub crashes: Vec<CrashPoint>,
}

/// The application a run serves: a consumer guest, or native code (tests).
#[derive(Clone)]
pub struct AppUnderTest {
    factory: AppFactory,
    digest: String,
}

impl AppUnderTest {
    /// Instances of `module`, each with `limits`.
    pub fn guest(module: &ConsumerModule, limits: GuestLimits) -> AppUnderTest {
        let instances = module.clone();
        AppUnderTest {
            factory: Arc::new(move || {
                let app = instances
                    .application(SHARD_ID, limits.clone())
                    .map_err(|err| AppError::Crashed(err.to_string()))?;
                Ok(Box::new(app) as _)
            }),
            digest: module.digest().to_string(),
        }
    }

    /// Instances made by `factory`.
    pub fn native(factory: AppFactory) -> AppUnderTest {
        AppUnderTest {
            factory,
            digest: String::new(),
        }
    }

    /// The factory of the shard's instances: this one's, each instance
    /// recording its failures into `failures`.
    fn recording(&self, failures: Arc<Failures>) -> AppFactory {
        let factory = self.factory.clone();
        Arc::new(move || {
            let app = factory()?;
            Ok(Box::new(RecordingApp::new(app, failures.clone())) as _)
        })
    }
}

impl std::fmt::Debug for AppUnderTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppUnderTest")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// Runs `app` over `input`. See the module docs.
pub async fn run(
    app: &AppUnderTest,
    input: &Input,
    config: &RunConfig,
) -> Result<RunOutcome, SandboxError> {
    let dir = tempfile::Builder::new()
        .prefix("weir-test-")
        .tempdir()
        .map_err(SandboxError::TempDir)?;
    let broker = Broker::open(dir.path().join("broker"), BrokerConfig::default())
        .await
        .map_err(broker_error("opening the sandbox's broker"))?;
    let result = run_on(app, input, config, &broker, dir.path()).await;
    broker.shutdown().await;
    result
}

async fn run_on(
    app: &AppUnderTest,
    input: &Input,
    config: &RunConfig,
    broker: &Broker,
    dir: &std::path::Path,
) -> Result<RunOutcome, SandboxError> {
    let deadline = Instant::now() + config.timeout;
    let client = Arc::new(AutoCreateClient::new(Arc::new(broker.clone())));
    let spec = shard_spec(&config.journal)?;
    create_journals(client.as_ref(), &spec).await?;

    let failures = Arc::new(Failures::default());
    let plan = config.crash_every.map(|_| CrashPlan::new());
    let mut shard_config = ShardConfig::new(dir.join("shards"));
    shard_config.module_digest = app.digest.clone();
    shard_config.backoff = Duration::from_millis(limits::SANDBOX_RETRY_BACKOFF_MS);
    shard_config.backoff_max = shard_config.backoff;
    // The run, not the supervisor, decides when failures end it.
    shard_config.max_failures = u32::MAX;
    if let Some(plan) = &plan {
        shard_config.faults = Some(plan.shard_hook());
        shard_config.store.fault_hook = Some(plan.store_hook());
    }
    let shard = spawn_shard(
        spec.clone(),
        client.clone(),
        app.recording(failures.clone()),
        shard_config,
        Arc::new(AtomicClock::now()),
    );

    let mut driver = Driver {
        client: client.clone(),
        journal: config.journal.clone(),
        lines: BTreeMap::new(),
        failures,
        deadline,
        timeout: config.timeout,
    };
    let fed = driver
        .feed(&shard, input, config.crash_every, plan.as_deref())
        .await;
    match fed {
        Ok(()) => shard.stop().await,
        Err(err) => {
            shard.abort().await;
            return Err(err);
        }
    }

    let mut published = Vec::new();
    for journal in client.created() {
        let barrier = client
            .append(AppendRequest {
                journal: journal.clone(),
                ..Default::default()
            })
            .await
            .map_err(broker_error(format!("a write barrier on {journal}")))?;
        let mut reader = CommittedReader::open(client.clone(), &journal)?;
        for envelope in reader
            .read_to(barrier.end, deadline, config.timeout)
            .await?
        {
            published.push(Published {
                journal: journal.clone(),
                doc: strip_uuid(&envelope.doc),
            });
        }
    }
    let store = dump_store(client.clone(), &spec.recovery_log(), &dir.join("rebuilt")).await?;
    Ok(RunOutcome {
        report: Report { published, store },
        crashes: plan.map(|plan| plan.fired()).unwrap_or_default(),
    })
}

/// The sandboxed shard's spec.
fn shard_spec(journal: &str) -> Result<ShardSpec, SandboxError> {
    let spec = ShardSpec {
        id: SHARD_ID.into(),
        sources: vec![Source {
            journal: journal.to_string(),
            min_offset: 0,
        }],
        recovery_log_prefix: RECOVERY_LOG_PREFIX.into(),
        max_txn_duration: Duration::from_millis(limits::SANDBOX_MAX_TXN_MS),
        min_txn_duration: Duration::ZERO,
        disable: false,
        hot_standbys: 0,
        disable_wait_for_ack: false,
        ring_buffer_size: 0,
        read_channel_size: 0,
        labels: Default::default(),
    };
    spec.validate()?;
    if spec.recovery_log() == journal {
        return Err(SandboxError::Shard(format!(
            "the input journal {journal} is the shard's recovery log"
        )));
    }
    Ok(spec)
}

async fn create_journals(client: &dyn JournalClient, spec: &ShardSpec) -> Result<(), SandboxError> {
    let labeled = |name: &str, content_type: &str| {
        let mut labels = LabelSet::new();
        labels.insert(CONTENT_TYPE_LABEL, content_type);
        JournalChange::Upsert(JournalSpec::new(name).with_labels(labels))
    };
    let mut changes = vec![labeled(&spec.recovery_log(), RECOVERY_LOG_CONTENT_TYPE)];
    for source in &spec.sources {
        changes.push(labeled(&source.journal, NDJSON));
    }
    client.apply(changes).await.map_err(broker_error(
        "creating the input journal and the recovery log",
    ))
}

/// Appends the input and waits for the shard to commit it.
struct Driver {
    client: Arc<AutoCreateClient>,
    journal: String,
    /// Input line of each appended message, by offset.
    lines: BTreeMap<i64, usize>,
    failures: Arc<Failures>,
    deadline: Instant,
    timeout: Duration,
}

impl Driver {
    async fn feed(
        &mut self,
        shard: &ShardHandle,
        input: &Input,
        crash_every: Option<usize>,
        plan: Option<&CrashPlan>,
    ) -> Result<(), SandboxError> {
        // An independent reader says which input messages are deliverable:
        // the shard is done with a round once it has committed the last.
        let mut deliverable = CommittedReader::open(self.client.clone(), &self.journal)?;
        for round in input.rounds(crash_every) {
            if let Some(plan) = plan {
                plan.arm_next();
            }
            let head = self.append(round).await?;
            let delivered = deliverable
                .read_to(head, self.deadline, self.timeout)
                .await?;
            if let Some(last) = delivered.last() {
                self.wait_committed(shard, last.end).await?;
            }
            if let Some(plan) = plan {
                plan.disarm();
            }
        }
        // A failure that passed when retried still fails the run.
        match self.failures.recorded().first() {
            Some(failure) => Err(self.guest_failure(failure.clone(), true)),
            None => Ok(()),
        }
    }

    /// Appends `lines` in appends of at most
    /// [`DEFAULT_PUBLISH_APPEND_BYTES`](limits::DEFAULT_PUBLISH_APPEND_BYTES);
    /// returns the write head.
    async fn append(&mut self, lines: &[InputLine]) -> Result<i64, SandboxError> {
        let mut head = 0;
        let mut start = 0;
        while start < lines.len() {
            let mut end = start + 1;
            let mut bytes = lines[start].framed.len();
            while let Some(next) = lines.get(end) {
                if bytes + next.framed.len() > limits::DEFAULT_PUBLISH_APPEND_BYTES {
                    break;
                }
                bytes += next.framed.len();
                end += 1;
            }
            let mut content = Vec::with_capacity(bytes);
            let mut offsets = Vec::with_capacity(end - start);
            for line in &lines[start..end] {
                offsets.push((content.len() as i64, line.number));
                content.extend_from_slice(&line.framed);
            }
            let response = self
                .client
                .append(AppendRequest {
                    journal: self.journal.clone(),
                    content: content.into(),
                    ..Default::default()
                })
                .await
                .map_err(broker_error(format!(
                    "appending the input to {}",
                    self.journal
                )))?;
            for (offset, number) in offsets {
                self.lines.insert(response.begin + offset, number);
            }
            head = response.end;
            start = end;
        }
        if lines.is_empty() {
            let barrier = self
                .client
                .append(AppendRequest {
                    journal: self.journal.clone(),
                    ..Default::default()
                })
                .await
                .map_err(broker_error(format!("a write barrier on {}", self.journal)))?;
            head = barrier.end;
        }
        Ok(head)
    }

    /// Waits until the shard's last commit read the input through `offset`,
    /// failing on the guest's first failure. Injected crashes are expected.
    async fn wait_committed(&self, shard: &ShardHandle, offset: i64) -> Result<(), SandboxError> {
        let mut progress = shard.watch_progress();
        let mut status = shard.watch_status();
        loop {
            let through = progress
                .borrow()
                .read_through
                .get(&self.journal)
                .copied()
                .unwrap_or(0);
            if through >= offset {
                return Ok(());
            }
            if let Some(failure) = self.failures.first_precise() {
                return Err(self.guest_failure(failure, false));
            }
            let current = status.borrow().clone();
            match current {
                ShardStatus::Retrying { error, .. } | ShardStatus::Failed { error }
                    if !CrashPoint::is_injected(&error) && self.failures.recorded().is_empty() =>
                {
                    return Err(SandboxError::Shard(error));
                }
                ShardStatus::Failed { error } | ShardStatus::Fenced { error } => {
                    return Err(SandboxError::Shard(error));
                }
                ShardStatus::Stopped => {
                    return Err(SandboxError::Shard("the shard stopped".into()));
                }
                // A crash of a run, not yet pinned on its message: the
                // shard's retry goes one message at a time and will be.
                ShardStatus::Retrying { .. } | ShardStatus::Recovering | ShardStatus::Primary => {}
            }
            tokio::select! {
                _ = progress.changed() => {}
                _ = status.changed() => {}
                _ = tokio::time::sleep_until(self.deadline) => {
                    return Err(SandboxError::Timeout {
                        secs: self.timeout.as_secs(),
                        journal: self.journal.clone(),
                        read_through: through,
                        target: offset,
                    });
                }
            }
        }
    }

    fn guest_failure(&self, failure: Recorded, flaky: bool) -> SandboxError {
        let at = failure.at.map(|(journal, offset)| MessageAt {
            line: (journal == self.journal)
                .then(|| self.lines.get(&offset).copied())
                .flatten(),
            journal,
            offset,
        });
        SandboxError::Guest(GuestFailure {
            at,
            error: failure.error,
            flaky: flaky && !failure.precise,
        })
    }
}

/// The store as the recovery log alone rebuilds it in `dir` (empty), sorted
/// by key.
async fn dump_store(
    client: Arc<dyn JournalClient>,
    log: &str,
    dir: &std::path::Path,
) -> Result<Vec<KeyValue>, SandboxError> {
    let (store, _checkpoint) =
        ShardStore::open_primary(client, log, dir, StoreConfig::default()).await?;
    let txn = store.begin_txn();
    let entries = tokio::task::spawn_blocking(move || scan_all(txn))
        .await
        .map_err(|err| SandboxError::Store(format!("the scan task failed: {err}")))?;
    store.close().await?;
    entries
}

/// Every entry of the store, page by page.
fn scan_all(mut txn: TxnOverlay) -> Result<Vec<KeyValue>, SandboxError> {
    let page = limits::SANDBOX_STORE_SCAN_PAGE;
    let mut entries: Vec<KeyValue> = Vec::new();
    let mut start = Vec::new();
    loop {
        let batch = txn
            .scan(&start, &[], page)
            .map_err(|err| SandboxError::Store(err.to_string()))?;
        let full = batch.len() == page;
        if let Some((last, _)) = batch.last() {
            // The smallest key after `last`.
            start = last.clone();
            start.push(0);
        }
        entries.extend(batch);
        if !full {
            return Ok(entries);
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::consumer::{Application, TxnContext};
    use crate::message::Envelope;
    use crate::sandbox::{CrashCheck, run_with_crashes};

    const OUT: &str = "out/echo";

    /// Counts each `{"n":…}` in the store under `n/…` and publishes the
    /// count; crashes on a document with `"boom"`, blaming the whole run
    /// like a trap does.
    struct Echo;

    impl Application for Echo {
        fn consume_message(
            &mut self,
            txn: &mut TxnContext<'_>,
            envelope: &Envelope,
        ) -> Result<(), AppError> {
            let doc: serde_json::Value = serde_json::from_slice(&envelope.doc)
                .map_err(|err| AppError::Rejected(err.to_string()))?;
            if doc.get("boom").is_some() {
                return Err(AppError::Crashed("boom".into()));
            }
            let key = format!("n/{}", doc["n"]);
            let count = match txn.store.get(key.as_bytes())? {
                Some(bytes) => String::from_utf8_lossy(&bytes).parse::<u64>().unwrap_or(0),
                None => 0,
            } + 1;
            txn.store
                .put(key.as_bytes(), count.to_string().as_bytes())?;
            let out = format!("{{\"n\":{},\"count\":{count}}}", doc["n"]);
            txn.publisher.publish(OUT, out.as_bytes())?;
            Ok(())
        }

        fn consume_messages(
            &mut self,
            txn: &mut TxnContext<'_>,
            envelopes: &[Envelope],
        ) -> Result<(), (usize, AppError)> {
            for envelope in envelopes {
                self.consume_message(txn, envelope)
                    .map_err(|err| (0, err))?;
            }
            Ok(())
        }

        fn finalize_txn(&mut self, _txn: &mut TxnContext<'_>) -> Result<(), AppError> {
            Ok(())
        }
    }

    /// Publishes how many messages this instance has seen: state in memory
    /// that a crash loses.
    struct Forgetful {
        seen: u64,
    }

    impl Application for Forgetful {
        fn consume_message(
            &mut self,
            txn: &mut TxnContext<'_>,
            _envelope: &Envelope,
        ) -> Result<(), AppError> {
            self.seen += 1;
            let out = format!("{{\"seen\":{}}}", self.seen);
            txn.publisher.publish(OUT, out.as_bytes())?;
            Ok(())
        }

        fn finalize_txn(&mut self, _txn: &mut TxnContext<'_>) -> Result<(), AppError> {
            Ok(())
        }
    }

    fn echo() -> AppUnderTest {
        AppUnderTest::native(Arc::new(|| Ok(Box::new(Echo) as _)))
    }

    fn numbers(count: u64) -> Input {
        let text: String = (0..count).map(|n| format!("{{\"n\":{n}}}\n")).collect();
        Input::parse(text.as_bytes()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_reports_each_committed_output_once_and_the_rebuilt_store() {
        let outcome = run(&echo(), &numbers(5), &RunConfig::default())
            .await
            .unwrap();
        let docs: Vec<String> = outcome
            .report
            .published
            .iter()
            .map(|p| {
                assert_eq!(p.journal, OUT);
                String::from_utf8(p.doc.clone()).unwrap()
            })
            .collect();
        let expected: Vec<String> = (0..5)
            .map(|n| format!("{{\"n\":{n},\"count\":1}}"))
            .collect();
        assert_eq!(docs, expected);
        let store: Vec<(String, String)> = outcome
            .report
            .store
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8(k.clone()).unwrap(),
                    String::from_utf8(v.clone()).unwrap(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = (0..5)
            .map(|n| (format!("n/{n}"), "1".to_string()))
            .collect();
        assert_eq!(store, expected);
        assert!(outcome.crashes.is_empty());

        let again = run(&echo(), &numbers(5), &RunConfig::default())
            .await
            .unwrap();
        assert_eq!(again.report.render(), outcome.report.render());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_inside_a_batch_is_pinned_on_its_input_line() {
        let text = "{\"n\":0}\n\n{\"n\":1}\n{\"boom\":true}\n{\"n\":2}\n";
        let input = Input::parse(text.as_bytes()).unwrap();
        let err = run(&echo(), &input, &RunConfig::default())
            .await
            .unwrap_err();
        let SandboxError::Guest(failure) = err else {
            panic!("a guest failure, not {err}");
        };
        let at = failure.at.clone().expect("a message");
        assert_eq!((at.journal.as_str(), at.line), ("test/input", Some(4)));
        assert!(!failure.flaky);
        assert!(failure.error.contains("boom"), "{failure}");
        assert!(failure.to_string().contains("(input line 4)"), "{failure}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crashing_every_n_messages_commits_what_a_crash_free_run_does() {
        let comparison = run_with_crashes(&echo(), &numbers(9), &RunConfig::default(), 2)
            .await
            .unwrap();
        assert_eq!(comparison.check, CrashCheck::Equal);
        assert_eq!(
            comparison.crashes(),
            &CrashPoint::ROTATION[..5],
            "one crash per round of 2 messages, each at the next point"
        );
        assert_eq!(comparison.crash_free.report.published.len(), 9);
        assert_eq!(comparison.crash_free.report.store.len(), 9);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crashes_expose_a_guest_that_keeps_state_in_memory() {
        let forgetful = AppUnderTest::native(Arc::new(|| Ok(Box::new(Forgetful { seen: 0 }) as _)));
        let comparison = run_with_crashes(&forgetful, &numbers(6), &RunConfig::default(), 3)
            .await
            .unwrap();
        let CrashCheck::Different(difference) = comparison.check else {
            panic!("a difference");
        };
        assert!(difference.line > 1, "{difference}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_empty_input_commits_nothing() {
        let outcome = run(&echo(), &Input::default(), &RunConfig::default())
            .await
            .unwrap();
        assert_eq!(outcome.report, Report::default());
    }
}
