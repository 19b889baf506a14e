//! [`GuestApplication`]: a consumer component as a
//! [`consumer::Application`](crate::consumer::Application).
//!
//! A [`ConsumerModule`] is a compiled, pre-linked consumer component (one
//! per module version; cheap to clone). Each shard gets its own
//! [`GuestApplication`]: one wasmtime store and instance, created from the
//! module's `InstancePre` (tens of microseconds).
//!
//! How outcomes map to [`AppError`]:
//!
//! | the guest… | the shard sees | the instance |
//! |---|---|---|
//! | returns `ok` | `Ok` (unless a store/publish call failed: `Store`/`Publish`) | kept |
//! | returns a WIT `error` | `Rejected(message)` (or the store/publish failure) | kept until `reset` |
//! | traps, passes its deadline or fuel, exhausts memory, tries to block | `Crashed(what, and the tail of its stderr)` | discarded |
//!
//! A discarded instance is re-created by [`reset`](GuestApplication::reset)
//! or, failing that, before the next call. `reset` always starts from a
//! fresh instance, so nothing a failed transaction left in guest memory
//! survives into its retry.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::Store;
use wasmtime::Trap;

use super::RuntimeError;
use super::bindings::consumer::weir::guest::types as wit;
use super::bindings::consumer::{Consumer, ConsumerPre};
use super::bridge::{Bridge, Failure, Stalled};
use super::consumer_host::ConsumerData;
use super::engine::Runtime;
use super::limits::{GuestLimiter, GuestLimits, LogBudget};
use super::loader::ModuleDigest;
use super::metrics::{CallEnd, ModuleCallMetrics};
use super::state::Sandbox;
use super::stderr::GuestOutput;
use crate::consumer::{AppError, Application, TxnContext};
use crate::limits;
use crate::message::Envelope;

/// A compiled, linked consumer component. Cheap to clone.
#[derive(Clone)]
pub struct ConsumerModule {
    runtime: Runtime,
    digest: ModuleDigest,
    pre: ConsumerPre<ConsumerData>,
}

impl ConsumerModule {
    /// Compiles (or fetches from the cache) and links `wasm` against the
    /// `consumer` world.
    pub fn new(runtime: &Runtime, wasm: &[u8]) -> Result<ConsumerModule, RuntimeError> {
        let (digest, component, _) = runtime.compile(wasm)?;
        let link_error = |e: wasmtime::Error| RuntimeError::Link {
            digest,
            world: "consumer",
            reason: format!("{e:#}"),
        };
        let pre = runtime
            .consumer_linker()
            .instantiate_pre(&component)
            .map_err(link_error)?;
        let pre = ConsumerPre::new(pre).map_err(link_error)?;
        Ok(ConsumerModule {
            runtime: runtime.clone(),
            digest,
            pre,
        })
    }

    /// The module's digest.
    pub fn digest(&self) -> ModuleDigest {
        self.digest
    }

    /// A new application instance for `shard`, instantiated now (so that a
    /// module that cannot start fails here, not in the first transaction).
    pub fn application(
        &self,
        shard: &str,
        limits: GuestLimits,
    ) -> Result<GuestApplication, RuntimeError> {
        GuestApplication::new(self, shard, limits)
    }
}

impl std::fmt::Debug for ConsumerModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerModule")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// One live instance: its store and its export bindings.
struct Instance {
    store: Store<ConsumerData>,
    bindings: Consumer,
}

/// A consumer component run by one shard. See the module docs.
pub struct GuestApplication {
    module: ConsumerModule,
    who: Arc<str>,
    limits: Arc<GuestLimits>,
    deadline_ticks: u64,
    /// Fuel per call when the engine meters fuel.
    fuel: Option<u64>,
    bridge: Bridge,
    /// `None` after a crash, until re-created.
    instance: Option<Instance>,
    /// Reused buffers of the batch being sent.
    batch: BatchBuffers,
    /// This module's call counters.
    metrics: ModuleCallMetrics,
}

/// The columns of a `consume-messages` batch (see `wit::Batch`), kept
/// between calls so that building a batch does not allocate.
#[derive(Default)]
struct BatchBuffers {
    docs: Vec<u8>,
    doc_ends: Vec<u32>,
    begins: Vec<i64>,
    ends: Vec<i64>,
    producers: Vec<u64>,
    clocks: Vec<u64>,
    uuid_flags: Vec<u16>,
}

impl BatchBuffers {
    fn clear(&mut self) {
        self.docs.clear();
        self.doc_ends.clear();
        self.begins.clear();
        self.ends.clear();
        self.producers.clear();
        self.clocks.clear();
        self.uuid_flags.clear();
    }

    /// Appends `envelope`'s document and metadata, unless the batch's
    /// documents would pass `u32::MAX` bytes (unreachable with the batch
    /// limit and the message size limit, but a wrong offset must never
    /// reach the guest).
    fn push(&mut self, envelope: &Envelope) -> Result<(), AppError> {
        let Some(doc_end) = self
            .docs
            .len()
            .checked_add(envelope.doc.len())
            .and_then(|end| u32::try_from(end).ok())
        else {
            return Err(AppError::Rejected(format!(
                "a document of {} bytes at {}@{} does not fit a guest batch",
                envelope.doc.len(),
                envelope.journal,
                envelope.begin
            )));
        };
        self.docs.extend_from_slice(&envelope.doc);
        self.doc_ends.push(doc_end);
        self.begins.push(envelope.begin);
        self.ends.push(envelope.end);
        self.producers.push(envelope.producer.as_u64());
        self.clocks.push(envelope.clock.0);
        self.uuid_flags.push(envelope.flags.bits());
        Ok(())
    }
}

impl GuestApplication {
    /// See [`ConsumerModule::application`].
    pub fn new(
        module: &ConsumerModule,
        shard: &str,
        limits: GuestLimits,
    ) -> Result<GuestApplication, RuntimeError> {
        let runtime = &module.runtime;
        let fuel = match (runtime.config().fuel, limits.fuel_per_call) {
            (true, budget) => Some(budget.unwrap_or(u64::MAX)),
            (false, None) => None,
            (false, Some(_)) => {
                return Err(RuntimeError::Config(
                    "a fuel budget needs a runtime created with `fuel: true`".into(),
                ));
            }
        };
        let mut app = GuestApplication {
            module: module.clone(),
            who: Arc::from(format!("shard {shard} module {}", module.digest.short())),
            deadline_ticks: runtime.deadline_ticks(limits.call_deadline),
            limits: Arc::new(limits),
            fuel,
            bridge: Bridge::default(),
            instance: None,
            batch: BatchBuffers::default(),
            metrics: runtime.metrics().module(&module.digest),
        };
        let instance = app
            .instantiate()
            .map_err(|reason| RuntimeError::Instantiate {
                digest: module.digest,
                reason,
            })?;
        app.instance = Some(instance);
        Ok(app)
    }

    /// The module this application runs.
    pub fn digest(&self) -> ModuleDigest {
        self.module.digest
    }

    fn instantiate(&self) -> Result<Instance, String> {
        let limits = &self.limits;
        let sandbox = Sandbox::new(
            self.who.clone(),
            GuestLimiter::new(limits.memory_bytes, limits.table_elements),
            LogBudget::new(
                limits.max_log_bytes_per_call,
                limits.max_log_record_bytes,
                0,
            ),
            GuestOutput::new(self.who.clone(), limits.max_stderr_bytes_per_call),
        );
        self.bridge.clear();
        let data = ConsumerData::new(sandbox, self.bridge.clone(), self.limits.clone());
        let mut store = Store::new(self.module.runtime.engine(), data);
        store.limiter(|data| &mut data.sandbox.limiter);
        self.arm(&mut store)?;
        let instantiated = {
            let future = self.module.pre.instantiate_async(&mut store);
            poll_without_requests(future)
        };
        match instantiated {
            Ok(Ok(bindings)) => Ok(Instance { store, bindings }),
            Ok(Err(err)) => Err(format!("{err:#}")),
            Err(Stalled::WithoutRequest) => Err("instantiation suspended".to_string()),
        }
    }

    /// Sets the deadline and fuel of the next call.
    fn arm(&self, store: &mut Store<ConsumerData>) -> Result<(), String> {
        store.set_epoch_deadline(self.deadline_ticks);
        if let Some(fuel) = self.fuel {
            store.set_fuel(fuel).map_err(|e| format!("{e:#}"))?;
        }
        store.data_mut().sandbox.start_call();
        Ok(())
    }

    /// The live instance, armed for a call (re-created if a crash dropped it).
    fn checkout(&mut self) -> Result<Instance, AppError> {
        let mut instance = match self.instance.take() {
            Some(instance) => instance,
            None => self.instantiate().map_err(|reason| {
                AppError::Crashed(format!("{}: cannot instantiate: {reason}", self.who))
            })?,
        };
        self.arm(&mut instance.store).map_err(AppError::Crashed)?;
        Ok(instance)
    }

    /// Turns the outcome of a call into the application's result, keeping
    /// the instance unless it crashed.
    fn settle<R>(
        &mut self,
        mut instance: Instance,
        started: Instant,
        outcome: Result<wasmtime::Result<R>, Stalled>,
    ) -> Result<R, AppError> {
        let crash = match outcome {
            Ok(Ok(returned)) => {
                self.metrics.record(started.elapsed(), CallEnd::Returned);
                self.instance = Some(instance);
                return Ok(returned);
            }
            Ok(Err(err)) => self.describe_crash(&mut instance, &err, started),
            Err(Stalled::WithoutRequest) => format!(
                "{}: the guest suspended on an operation the consumer world does not support",
                self.who
            ),
        };
        self.metrics.record(started.elapsed(), CallEnd::Crashed);
        // The instance is poisoned (or mid-call): drop it.
        drop(instance);
        self.bridge.clear();
        tracing::warn!(guest = %self.who, crash = %crash, "guest crashed; its instance is discarded");
        Err(AppError::Crashed(crash))
    }

    fn describe_crash(
        &self,
        instance: &mut Instance,
        err: &wasmtime::Error,
        started: Instant,
    ) -> String {
        let denied = instance
            .store
            .data_mut()
            .sandbox
            .limiter
            .take_denied_memory();
        let output = instance.store.data().sandbox.output.tail();
        let what = match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => format!(
                "deadline of {:?} exceeded (interrupted after {:?})",
                self.limits.call_deadline,
                started.elapsed()
            ),
            Some(Trap::OutOfFuel) => {
                format!("fuel budget of {} exhausted", self.fuel.unwrap_or_default())
            }
            Some(trap) => match denied {
                Some(asked) => format!(
                    "memory limit of {} bytes exceeded (asked for {asked} bytes), then: {trap}",
                    self.limits.memory_bytes
                ),
                None => format!("trap: {trap}"),
            },
            None => format!("{err:#}"),
        };
        tracing::debug!(guest = %self.who, error = ?err, "guest crash details");
        if output.is_empty() {
            format!("{}: {what}", self.who)
        } else {
            format!("{}: {what}; guest output: {output}", self.who)
        }
    }

    /// The call's store or publish failure, which overrides what the guest
    /// returned.
    fn failure(&self) -> Option<AppError> {
        self.bridge.take_failure().map(|failure| match failure {
            Failure::Store(err) => AppError::Store(err),
            Failure::Publish(err) => AppError::Publish(err),
        })
    }
}

impl GuestApplication {
    /// One `consume-messages` call with `run`: messages of one journal,
    /// their documents within [`limits::GUEST_BATCH_MAX_DOC_BYTES`] (or a
    /// single message).
    fn consume_batch(
        &mut self,
        txn: &mut TxnContext<'_>,
        run: &[Envelope],
    ) -> Result<(), (usize, AppError)> {
        let Some(first) = run.first() else {
            return Ok(());
        };
        let last = run.len() - 1;
        let mut buffers = std::mem::take(&mut self.batch);
        buffers.clear();
        for (index, envelope) in run.iter().enumerate() {
            if let Err(err) = buffers.push(envelope) {
                self.batch = buffers;
                return Err((index, err));
            }
        }
        let batch = wit::Batch {
            journal: &first.journal,
            content_type: &first.content_type,
            docs: &buffers.docs,
            doc_ends: &buffers.doc_ends,
            begins: &buffers.begins,
            ends: &buffers.ends,
            producers: &buffers.producers,
            clocks: &buffers.clocks,
            uuid_flags: &buffers.uuid_flags,
        };
        // A crash cannot be pinned on one message: report the first.
        let outcome = match self.checkout() {
            Ok(mut instance) => {
                let started = Instant::now();
                let outcome = {
                    let Instance { store, bindings } = &mut instance;
                    self.bridge
                        .drive(bindings.call_consume_messages(store, batch), txn)
                };
                self.settle(instance, started, outcome)
            }
            Err(err) => Err(err),
        };
        self.batch = buffers;
        let returned = outcome.map_err(|err| (0, err))?;
        let index = match &returned {
            Ok(()) => 0,
            Err(failed) => usize::try_from(failed.index).unwrap_or(last).min(last),
        };
        if let Some(failure) = self.failure() {
            return Err((index, failure));
        }
        returned.map_err(|failed| (index, AppError::Rejected(failed.message)))
    }
}

/// The end of the batch that starts at `start`: the longest run of messages
/// of one journal whose documents fit in
/// [`limits::GUEST_BATCH_MAX_DOC_BYTES`], and at least one message.
fn batch_end(envelopes: &[Envelope], start: usize) -> usize {
    let first = &envelopes[start];
    let mut bytes = first.doc.len();
    let mut end = start + 1;
    while let Some(next) = envelopes.get(end) {
        bytes += next.doc.len();
        // `Arc`'s equality compares pointers first.
        let same_journal = next.journal == first.journal && next.content_type == first.content_type;
        if !same_journal || bytes > limits::GUEST_BATCH_MAX_DOC_BYTES {
            break;
        }
        end += 1;
    }
    end
}

/// The WIT envelope of `envelope`, borrowing its journal name and document.
fn wit_envelope(envelope: &Envelope) -> wit::Envelope<'_> {
    wit::Envelope {
        journal: &envelope.journal,
        begin: envelope.begin,
        end: envelope.end,
        producer: envelope.producer.as_u64(),
        clock: envelope.clock.0,
        uuid_flags: envelope.flags.bits(),
        content_type: &envelope.content_type,
        doc: &envelope.doc,
    }
}

/// Drives a future that must not need the transaction (instantiation).
fn poll_without_requests<F: std::future::Future>(future: F) -> Result<F::Output, Stalled> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => Ok(output),
        std::task::Poll::Pending => Err(Stalled::WithoutRequest),
    }
}

impl Application for GuestApplication {
    fn consume_message(
        &mut self,
        txn: &mut TxnContext<'_>,
        envelope: &Envelope,
    ) -> Result<(), AppError> {
        let envelope = wit_envelope(envelope);
        let mut instance = self.checkout()?;
        let started = Instant::now();
        let outcome = {
            let Instance { store, bindings } = &mut instance;
            self.bridge
                .drive(bindings.call_consume_message(store, envelope), txn)
        };
        let returned = self.settle(instance, started, outcome)?;
        if let Some(failure) = self.failure() {
            return Err(failure);
        }
        returned.map_err(AppError::Rejected)
    }

    fn consume_messages(
        &mut self,
        txn: &mut TxnContext<'_>,
        envelopes: &[Envelope],
    ) -> Result<(), (usize, AppError)> {
        let mut start = 0;
        while start < envelopes.len() {
            let end = batch_end(envelopes, start);
            self.consume_batch(txn, &envelopes[start..end])
                .map_err(|(index, err)| (start + index, err))?;
            start = end;
        }
        Ok(())
    }

    fn finalize_txn(&mut self, txn: &mut TxnContext<'_>) -> Result<(), AppError> {
        let mut instance = self.checkout()?;
        let started = Instant::now();
        let outcome = {
            let Instance { store, bindings } = &mut instance;
            self.bridge.drive(bindings.call_finalize_txn(store), txn)
        };
        let returned = self.settle(instance, started, outcome);
        if let Some(instance) = &mut self.instance {
            instance.store.data_mut().end_txn();
        }
        let returned = returned?;
        if let Some(failure) = self.failure() {
            return Err(failure);
        }
        returned.map_err(AppError::Rejected)
    }

    fn reset(&mut self) {
        self.instance = None;
        match self.instantiate() {
            Ok(instance) => self.instance = Some(instance),
            // The next call tries again and reports the error.
            Err(reason) => {
                tracing::warn!(guest = %self.who, %reason, "cannot re-create the guest instance")
            }
        }
    }
}

#[cfg(test)]
mod test {
    use std::time::Duration;

    use base64::Engine as _;
    use serde_json::json;

    use super::*;
    use crate::consumer::{PublishError, TxnStoreError};
    use crate::message::Flags;
    use crate::runtime::RuntimeConfig;
    use crate::runtime::guests::SUMMER_WASM;
    use crate::runtime::guests::test_guests::HOSTILE_WASM;
    use crate::runtime::testing::{Txn, envelope, message, runtime};

    const SUMS: &str = "examples/stream-sum/sums";

    fn summer() -> GuestApplication {
        let module = runtime()
            .consumer_module(SUMMER_WASM)
            .expect("summer links");
        module
            .application("part-000", GuestLimits::default())
            .expect("summer instantiates")
    }

    fn hostile(limits: GuestLimits) -> GuestApplication {
        let module = runtime()
            .consumer_module(HOSTILE_WASM)
            .expect("hostile links");
        module
            .application("hostile", limits)
            .expect("hostile instantiates")
    }

    /// A stream-sum chunk envelope; `data: None` is the final chunk.
    fn chunk(id: [u8; 16], seq_no: u64, data: Option<&[u8]>) -> Envelope {
        let data = match data {
            Some(data) => json!(base64::engine::general_purpose::STANDARD.encode(data)),
            None => serde_json::Value::Null,
        };
        let doc = json!({
            "UUID": "7f7e1d9a-1dd2-11b2-8000-010203040506",
            "ID": id,
            "SeqNo": seq_no,
            "Data": data,
        });
        envelope(
            "examples/stream-sum/chunks/part-000",
            seq_no as i64 * 100,
            Flags::OutsideTxn,
            doc.to_string().as_bytes(),
        )
    }

    fn sum_of(doc: &[u8]) -> (Vec<u8>, u64, u64) {
        let sum: serde_json::Value = serde_json::from_slice(doc).expect("a JSON sum");
        assert!(sum.get("UUID").is_none(), "the host assigns UUIDs: {sum}");
        let id: Vec<u8> = serde_json::from_value(sum["ID"].clone()).expect("ID is 16 numbers");
        (
            id,
            sum["SeqNo"].as_u64().expect("SeqNo"),
            sum["Value"].as_u64().expect("Value is a u64"),
        )
    }

    fn consume_all(app: &mut GuestApplication, txn: &mut Txn, envelopes: &[Envelope]) {
        for envelope in envelopes {
            app.consume_message(&mut txn.context(), envelope)
                .expect("consumed");
        }
    }

    #[test]
    fn the_summer_publishes_crc64_xz_sums_for_the_known_vectors() {
        let (horse, digits) = ([7u8; 16], [9u8; 16]);
        let mut app = summer();
        let mut txn = Txn::default();
        consume_all(
            &mut app,
            &mut txn,
            &[
                chunk(horse, 1, Some(b"battery")),
                chunk(digits, 1, Some(b"123456789")),
                chunk(horse, 2, Some(b" horse")),
                chunk(digits, 2, None),
                chunk(horse, 3, None),
            ],
        );
        app.finalize_txn(&mut txn.context()).expect("finalized");

        type Published = Vec<(String, (Vec<u8>, u64, u64))>;
        let published: Published = txn
            .publisher
            .published
            .iter()
            .map(|(journal, doc)| (journal.clone(), sum_of(doc)))
            .collect();
        assert_eq!(
            published,
            vec![
                (
                    SUMS.to_string(),
                    (digits.to_vec(), 2, 0x995d_c9bb_df19_39fa)
                ),
                (SUMS.to_string(), (horse.to_vec(), 3, 0xae76_3109_c119_2ed6)),
            ]
        );
        // Sums are stored under the 16 raw id bytes, as JSON.
        let stored = txn.store.data.get(&horse[..]).expect("stored sum");
        assert_eq!(sum_of(stored), (horse.to_vec(), 3, 0xae76_3109_c119_2ed6));
    }

    #[test]
    fn summer_state_survives_a_restart_over_the_same_store() {
        let id = [3u8; 16];
        let mut txn = Txn::default();
        let mut first = summer();
        consume_all(&mut first, &mut txn, &[chunk(id, 1, Some(b"battery"))]);
        first.finalize_txn(&mut txn.context()).expect("finalized");
        drop(first);
        assert_eq!(
            sum_of(&txn.store.data[&id[..]]),
            (id.to_vec(), 1, 0x2be5_5fc6_6a38_1c84)
        );

        let mut second = summer();
        consume_all(
            &mut second,
            &mut txn,
            &[chunk(id, 2, Some(b" horse")), chunk(id, 3, None)],
        );
        second.finalize_txn(&mut txn.context()).expect("finalized");
        assert_eq!(txn.publisher.published.len(), 1);
        assert_eq!(
            sum_of(&txn.publisher.published[0].1),
            (id.to_vec(), 3, 0xae76_3109_c119_2ed6)
        );
    }

    #[test]
    fn a_seqno_gap_or_repeat_fails_the_transaction_loudly() {
        let id = [5u8; 16];
        let mut app = summer();
        let mut txn = Txn::default();
        app.consume_message(&mut txn.context(), &chunk(id, 1, Some(b"a")))
            .expect("first chunk");
        match app.consume_message(&mut txn.context(), &chunk(id, 3, Some(b"c"))) {
            Err(AppError::Rejected(reason)) => {
                assert!(
                    reason.contains("expected 2, got 3 (skipped ahead)"),
                    "{reason}"
                )
            }
            other => panic!("a gap must fail the transaction, got {other:?}"),
        }
        // The failed transaction is rolled back (nothing was finalized);
        // commit the first chunk, then deliver it again.
        app.reset();
        let mut txn = Txn::default();
        app.consume_message(&mut txn.context(), &chunk(id, 1, Some(b"a")))
            .expect("first chunk");
        app.finalize_txn(&mut txn.context()).expect("finalized");
        match app.consume_message(&mut txn.context(), &chunk(id, 1, Some(b"a"))) {
            Err(AppError::Rejected(reason)) => {
                assert!(reason.contains("expected 2, got 1 (repeated)"), "{reason}")
            }
            other => panic!("a repeat must fail the transaction, got {other:?}"),
        }
        assert!(txn.publisher.published.is_empty());
    }

    #[test]
    fn the_summer_ignores_ack_envelopes() {
        let mut app = summer();
        let mut txn = Txn::default();
        let ack = envelope(
            SUMS,
            10,
            Flags::AckTxn,
            br#"{"UUID":"7f7e1d9a-1dd2-11b2-8002-010203040506"}"#,
        );
        app.consume_message(&mut txn.context(), &ack)
            .expect("an ACK is not a chunk, and is skipped");
        app.finalize_txn(&mut txn.context()).expect("finalized");
        assert!(txn.publisher.published.is_empty());
        assert!(txn.store.data.is_empty());
    }

    #[test]
    fn batches_end_at_a_journal_change_or_the_byte_limit() {
        let a = |begin| envelope("test/a", begin, Flags::OutsideTxn, b"x");
        let b = |begin| envelope("test/b", begin, Flags::OutsideTxn, b"x");
        let run = [a(0), a(2), b(0), b(2), a(4)];
        assert_eq!(batch_end(&run, 0), 2);
        assert_eq!(batch_end(&run, 2), 4);
        assert_eq!(batch_end(&run, 4), 5);

        let half = vec![b'x'; limits::GUEST_BATCH_MAX_DOC_BYTES / 2];
        let big = |begin| envelope("test/a", begin, Flags::OutsideTxn, &half);
        let run = [big(0), big(1), big(2)];
        assert_eq!(batch_end(&run, 0), 2, "two halves fit, a third does not");
        let huge = vec![b'x'; limits::GUEST_BATCH_MAX_DOC_BYTES + 1];
        let run = [envelope("test/a", 0, Flags::OutsideTxn, &huge), a(1)];
        assert_eq!(batch_end(&run, 0), 1, "an oversized document goes alone");
    }

    #[test]
    fn messages_of_several_journals_reach_the_guest_with_their_index() {
        let mut app = hostile(GuestLimits::default());
        let mut txn = Txn::default();
        // Two journals make two batches; the failure is in the second, and
        // its index counts from the start of the whole call. The `get` sees
        // the `put` of the batch before: both batches ran, in order.
        let run = [
            envelope("test/a", 0, Flags::OutsideTxn, b"noop"),
            envelope("test/a", 5, Flags::OutsideTxn, b"put:k=from-a"),
            envelope("test/b", 0, Flags::OutsideTxn, b"noop"),
            envelope("test/b", 5, Flags::OutsideTxn, b"get:k"),
        ];
        match app.consume_messages(&mut txn.context(), &run) {
            Err((3, AppError::Rejected(message))) => assert_eq!(message, "from-a"),
            other => panic!("expected message 3 to fail with the stored value, got {other:?}"),
        }
    }

    #[test]
    fn the_batch_export_sums_like_single_calls_and_names_the_failing_message() {
        let id = [8u8; 16];
        let mut app = summer();
        let mut txn = Txn::default();
        let batch = [
            chunk(id, 1, Some(b"battery")),
            chunk(id, 2, Some(b" horse")),
            chunk(id, 3, None),
        ];
        app.consume_messages(&mut txn.context(), &batch)
            .expect("batch consumed");
        app.finalize_txn(&mut txn.context()).expect("finalized");
        assert_eq!(
            sum_of(&txn.publisher.published[0].1),
            (id.to_vec(), 3, 0xae76_3109_c119_2ed6)
        );

        let other = [4u8; 16];
        let gap = [
            chunk(other, 1, Some(b"x")),
            chunk(other, 2, Some(b"y")),
            chunk(other, 4, Some(b"z")),
        ];
        match app.consume_messages(&mut txn.context(), &gap) {
            Err((2, AppError::Rejected(reason))) => {
                assert!(reason.contains("skipped ahead"), "{reason}")
            }
            other => panic!("the third message should fail, got {other:?}"),
        }
    }

    /// Calls `consume-messages` with `batch` as given: `BatchBuffers` never
    /// builds a malformed one, but a guest must not trust that.
    fn consume_raw_batch(
        app: &mut GuestApplication,
        txn: &mut Txn,
        batch: wit::Batch<'_>,
    ) -> Result<(), wit::IndexedError> {
        let mut instance = app.checkout().expect("an instance");
        let started = Instant::now();
        let outcome = {
            let Instance { store, bindings } = &mut instance;
            app.bridge.drive(
                bindings.call_consume_messages(store, batch),
                &mut txn.context(),
            )
        };
        app.settle(instance, started, outcome)
            .expect("the guest returns, it does not crash")
    }

    #[test]
    fn the_summer_refuses_a_batch_whose_columns_disagree_and_consumes_none_of_it() {
        let doc = chunk([6u8; 16], 1, Some(b"battery")).doc;
        let docs = [&doc[..], &doc[..]].concat();
        let doc_end = u32::try_from(doc.len()).expect("small");
        let mut app = summer();
        let mut txn = Txn::default();
        let doc_ends = [doc_end, 2 * doc_end];
        let whole = wit::Batch {
            journal: "test/input",
            content_type: "application/x-ndjson",
            docs: &docs,
            doc_ends: &doc_ends,
            begins: &[0, 1],
            ends: &[1, 2],
            producers: &[7, 7],
            clocks: &[1, 2],
            uuid_flags: &[0, 0],
        };

        let short = wit::Batch {
            uuid_flags: &[0],
            ..whole
        };
        let err = consume_raw_batch(&mut app, &mut txn, short).expect_err("refused");
        assert_eq!(err.index, 0);
        assert!(
            err.message
                .contains("the host sent a batch whose columns differ in length at test/input"),
            "{}",
            err.message
        );

        // The second document ends past `docs`: the first is consumed, the
        // second named.
        let outside = wit::Batch {
            docs: &docs[..docs.len() - 1],
            ..whole
        };
        let err = consume_raw_batch(&mut app, &mut txn, outside).expect_err("refused");
        assert_eq!(err.index, 1);
        assert!(
            err.message
                .contains("the host sent a document outside the batch at test/input@1"),
            "{}",
            err.message
        );
        app.finalize_txn(&mut txn.context()).expect("finalized");
        let stored = txn.store.data.get(&[6u8; 16][..]).expect("the first chunk");
        assert_eq!(sum_of(stored).1, 1, "only the first chunk was folded");
    }

    #[test]
    fn a_store_failure_fails_the_transaction_even_if_the_guest_ignores_it() {
        let mut app = summer();
        let mut txn = Txn::default();
        txn.store.fail_reads = true;
        match app.consume_message(&mut txn.context(), &chunk([1u8; 16], 1, Some(b"a"))) {
            Err(AppError::Store(TxnStoreError::Failed(reason))) => {
                assert!(reason.contains("injected"))
            }
            other => panic!("expected the store failure, got {other:?}"),
        }

        // The hostile guest puts an oversized key and returns success.
        let mut app = hostile(GuestLimits::default());
        let mut txn = Txn::default();
        match app.consume_message(&mut txn.context(), &message("swallow")) {
            Err(AppError::Store(TxnStoreError::LimitExceeded(reason))) => {
                assert!(reason.contains("exceeds 4096 bytes"), "{reason}")
            }
            other => panic!("a swallowed store error must still fail, got {other:?}"),
        }
        assert!(txn.store.data.is_empty());
    }

    #[test]
    fn a_trap_is_a_crash_and_the_next_call_after_reset_works() {
        let mut app = hostile(GuestLimits::default());
        let mut txn = Txn::default();
        match app.consume_message(&mut txn.context(), &message("trap")) {
            Err(AppError::Crashed(reason)) => {
                assert!(reason.contains("trap"), "{reason}");
                assert!(
                    reason.contains("hostile guest: trap requested"),
                    "the panic message: {reason}"
                );
            }
            other => panic!("expected a crash, got {other:?}"),
        }
        app.reset();
        app.consume_message(&mut txn.context(), &message("ok"))
            .expect("a fresh instance works");
    }

    #[test]
    fn an_infinite_loop_is_interrupted_at_its_deadline() {
        let deadline = Duration::from_millis(200);
        let mut app = hostile(GuestLimits {
            call_deadline: deadline,
            ..GuestLimits::default()
        });
        let mut txn = Txn::default();
        let started = Instant::now();
        let outcome = app.consume_message(&mut txn.context(), &message("loop"));
        let elapsed = started.elapsed();
        match outcome {
            Err(AppError::Crashed(reason)) => {
                assert!(reason.contains("deadline of 200ms exceeded"), "{reason}")
            }
            other => panic!("expected a deadline crash, got {other:?}"),
        }
        // Never before the deadline (the tick rounding adds one tick).
        assert!(elapsed >= deadline, "interrupted early: {elapsed:?}");
        // Without interruption this would never return; the bound is loose
        // only to tolerate a loaded machine.
        assert!(
            elapsed < deadline + Duration::from_secs(5),
            "interrupted late: {elapsed:?}"
        );
        app.reset();
        app.consume_message(&mut txn.context(), &message("ok"))
            .expect("a fresh instance works");
    }

    #[test]
    fn a_memory_bomb_is_refused_at_the_cap() {
        let cap = 16 << 20;
        let mut app = hostile(GuestLimits {
            memory_bytes: cap,
            ..GuestLimits::default()
        });
        let mut txn = Txn::default();
        match app.consume_message(&mut txn.context(), &message("alloc")) {
            Err(AppError::Crashed(reason)) => {
                assert!(
                    reason.contains(&format!("memory limit of {cap} bytes exceeded")),
                    "{reason}"
                )
            }
            other => panic!("expected a memory crash, got {other:?}"),
        }
        // The next call, even without an explicit reset, gets a new instance.
        app.consume_message(&mut txn.context(), &message("ok"))
            .expect("a fresh instance works");
    }

    #[test]
    fn a_guest_cannot_block() {
        let mut app = hostile(GuestLimits::default());
        let mut txn = Txn::default();
        match app.consume_message(&mut txn.context(), &message("sleep")) {
            Err(AppError::Crashed(reason)) => {
                assert!(reason.contains("a guest cannot block"), "{reason}")
            }
            other => panic!("expected a crash, got {other:?}"),
        }
    }

    #[test]
    fn guest_memory_lives_until_reset_and_not_after() {
        let mut app = hostile(GuestLimits::default());
        let mut txn = Txn::default();
        let count = |app: &mut GuestApplication, txn: &mut Txn| match app
            .consume_message(&mut txn.context(), &message("count"))
        {
            Err(AppError::Rejected(count)) => count,
            other => panic!("count reports through its error, got {other:?}"),
        };
        assert_eq!(count(&mut app, &mut txn), "1");
        assert_eq!(count(&mut app, &mut txn), "2");
        app.reset();
        assert_eq!(count(&mut app, &mut txn), "1");
    }

    #[test]
    fn publishing_past_the_transaction_cap_fails_and_the_cap_restarts_next_transaction() {
        let mut app = hostile(GuestLimits {
            max_txn_messages: 2,
            ..GuestLimits::default()
        });
        let mut txn = Txn::default();
        let publish = message(r#"publish:out={"a":1}"#);
        app.consume_message(&mut txn.context(), &publish)
            .expect("first");
        app.consume_message(&mut txn.context(), &publish)
            .expect("second");
        match app.consume_message(&mut txn.context(), &publish) {
            Err(AppError::Publish(PublishError::LimitExceeded(reason))) => {
                assert!(reason.contains("already published 2 messages"), "{reason}")
            }
            other => panic!("expected the publish cap, got {other:?}"),
        }
        assert_eq!(txn.publisher.published.len(), 2);
        app.reset();
        app.consume_message(&mut txn.context(), &publish)
            .expect("a new transaction may publish");
        app.finalize_txn(&mut txn.context()).expect("finalized");
        app.consume_message(&mut txn.context(), &publish)
            .expect("and after finalize too");
        app.consume_message(&mut txn.context(), &publish)
            .expect("twice");
        assert_eq!(txn.publisher.published.len(), 5);
    }

    #[test]
    fn store_reads_see_the_transactions_own_writes() {
        let mut app = hostile(GuestLimits::default());
        let mut txn = Txn::default();
        app.consume_message(&mut txn.context(), &message("put:k=v1"))
            .expect("put");
        match app.consume_message(&mut txn.context(), &message("get:k")) {
            Err(AppError::Rejected(value)) => assert_eq!(value, "v1"),
            other => panic!("get reports through its error, got {other:?}"),
        }
    }

    #[test]
    fn buffered_writes_apply_before_a_read_and_when_the_call_returns() {
        let mut app = hostile(GuestLimits::default());
        let mut txn = Txn::default();
        let run = [message("put:a=1"), message("get:a")];
        match app.consume_messages(&mut txn.context(), &run) {
            Err((1, AppError::Rejected(value))) => assert_eq!(value, "1"),
            other => panic!("the get must see the put of the same call, got {other:?}"),
        }
        app.consume_message(&mut txn.context(), &message("put:b=2"))
            .expect("put");
        assert_eq!(
            txn.store.data[&b"b"[..]],
            b"2",
            "applied when the call returned"
        );
    }

    #[test]
    fn a_write_that_fails_when_applied_fails_the_transaction() {
        let mut app = hostile(GuestLimits::default());
        let mut txn = Txn::default();
        txn.store.fail_writes = true;
        // `put` returned ok to the guest; applying it failed.
        match app.consume_message(&mut txn.context(), &message("put:k=v")) {
            Err(AppError::Store(TxnStoreError::Failed(reason))) => {
                assert!(reason.contains("injected write failure"), "{reason}")
            }
            other => panic!("a failed buffered write must fail, got {other:?}"),
        }
        // A read after it fails too, with the write's error.
        let run = [message("put:k=v"), message("get:k")];
        match app.consume_messages(&mut txn.context(), &run) {
            Err((_, AppError::Store(TxnStoreError::Failed(reason)))) => {
                assert!(reason.contains("injected write failure"), "{reason}")
            }
            other => panic!("expected the write failure, got {other:?}"),
        }
    }

    #[test]
    fn get_many_answers_in_order_within_its_caps() {
        let mut app = hostile(GuestLimits {
            max_scan_entries: 10,
            ..GuestLimits::default()
        });
        let mut txn = Txn::default();
        txn.store.data.insert(b"k".to_vec(), vec![b'v'; 1 << 20]);
        match app.consume_message(&mut txn.context(), &message("get-many:k=10")) {
            Err(AppError::Rejected(found)) => assert_eq!(found, "10 of 10 found"),
            other => panic!("expected the guest's count, got {other:?}"),
        }
        match app.consume_message(&mut txn.context(), &message("get-many:absent=3")) {
            Err(AppError::Rejected(found)) => assert_eq!(found, "0 of 3 found"),
            other => panic!("expected the guest's count, got {other:?}"),
        }
        match app.consume_message(&mut txn.context(), &message("get-many:k=11")) {
            Err(AppError::Store(TxnStoreError::LimitExceeded(reason))) => {
                assert_eq!(reason, "a get-many of 11 keys exceeds 10 keys")
            }
            other => panic!("expected the key-count cap, got {other:?}"),
        }
        // Ten 1 MiB values would not fit a 4 MiB guest: refused by the host
        // before anything is copied into the guest.
        let mut app = hostile(GuestLimits {
            memory_bytes: 4 << 20,
            ..GuestLimits::default()
        });
        match app.consume_message(&mut txn.context(), &message("get-many:k=10")) {
            Err(AppError::Store(TxnStoreError::LimitExceeded(reason))) => {
                assert!(reason.contains("exceed 4194304 bytes"), "{reason}")
            }
            other => panic!("expected the value-bytes cap, got {other:?}"),
        }
    }

    #[test]
    fn a_log_flood_is_capped_and_harmless() {
        let mut app = hostile(GuestLimits {
            max_log_bytes_per_call: 4096,
            ..GuestLimits::default()
        });
        let mut txn = Txn::default();
        app.consume_message(&mut txn.context(), &message("log-flood"))
            .expect("logging never fails");
        let dropped = app
            .instance
            .as_mut()
            .map(|i| i.store.data().sandbox.log.dropped());
        assert_eq!(
            dropped,
            Some(10_000 - 4),
            "1 KiB records within a 4 KiB budget"
        );
    }

    #[test]
    fn fuel_limits_need_a_fuel_runtime_and_then_stop_a_loop() {
        let module = runtime().consumer_module(HOSTILE_WASM).expect("links");
        let limits = GuestLimits {
            fuel_per_call: Some(10_000_000),
            ..GuestLimits::default()
        };
        assert!(matches!(
            module.application("x", limits.clone()),
            Err(RuntimeError::Config(_))
        ));

        let fueled = Runtime::new(RuntimeConfig {
            fuel: true,
            ..RuntimeConfig::default()
        })
        .expect("runtime");
        let module = fueled.consumer_module(HOSTILE_WASM).expect("links");
        let mut app = module.application("x", limits).expect("instantiates");
        let mut txn = Txn::default();
        match app.consume_message(&mut txn.context(), &message("loop")) {
            Err(AppError::Crashed(reason)) => assert!(
                reason.contains("fuel budget of 10000000 exhausted"),
                "{reason}"
            ),
            other => panic!("expected a fuel crash, got {other:?}"),
        }
        app.consume_message(&mut txn.context(), &message("ok"))
            .expect("a fresh instance works");
    }
}
