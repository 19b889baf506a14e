//! An [`Application`] wrapper that records where the guest failed, so that a
//! sandboxed run can name the message that caused a failure.
//!
//! The shard hands the guest runs of messages in one `consume-messages`
//! call. A WIT error names its message, but a trap cannot be pinned on one
//! message of the run (the host reports the first). So after the first
//! failure, every instance the shard re-creates calls the guest one message
//! at a time (still through `consume-messages`, with runs of one); the
//! shard's retry of the transaction then fails on the exact message, which
//! is recorded as [`Recorded::precise`]. Before any failure the guest sees
//! exactly what it would see in production.

use std::slice;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::consumer::{AppError, Application, TxnContext};
use crate::message::Envelope;

/// A failure of the guest, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Journal and offset of the message; `None` for `finalize-txn`.
    pub at: Option<(String, i64)>,
    /// The error.
    pub error: String,
    /// Whether `at` is the message that failed (not just the first of a
    /// run that trapped).
    pub precise: bool,
}

/// The failures of every instance of one run, shared with the run.
#[derive(Debug, Default)]
pub struct Failures {
    recorded: Mutex<Vec<Recorded>>,
    one_at_a_time: AtomicBool,
}

impl Failures {
    /// Everything recorded so far, in order.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.lock().clone()
    }

    /// The first failure pinned on its message (or in `finalize-txn`).
    pub fn first_precise(&self) -> Option<Recorded> {
        self.lock().iter().find(|f| f.precise).cloned()
    }

    fn record(&self, failure: Recorded) {
        tracing::debug!(?failure, "the guest failed");
        self.one_at_a_time.store(true, Ordering::SeqCst);
        self.lock().push(failure);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Recorded>> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// See the module docs.
pub struct RecordingApp {
    inner: Box<dyn Application>,
    failures: Arc<Failures>,
}

impl RecordingApp {
    /// Wraps `inner`, recording into `failures`.
    pub fn new(inner: Box<dyn Application>, failures: Arc<Failures>) -> RecordingApp {
        RecordingApp { inner, failures }
    }

    fn record_message(&self, envelope: &Envelope, err: &AppError, precise: bool) {
        self.failures.record(Recorded {
            at: Some((envelope.journal.to_string(), envelope.begin)),
            error: err.to_string(),
            precise,
        });
    }
}

impl Application for RecordingApp {
    fn consume_message(
        &mut self,
        txn: &mut TxnContext<'_>,
        envelope: &Envelope,
    ) -> Result<(), AppError> {
        self.inner
            .consume_message(txn, envelope)
            .inspect_err(|err| self.record_message(envelope, err, true))
    }

    fn consume_messages(
        &mut self,
        txn: &mut TxnContext<'_>,
        envelopes: &[Envelope],
    ) -> Result<(), (usize, AppError)> {
        if self.failures.one_at_a_time.load(Ordering::SeqCst) {
            for (index, envelope) in envelopes.iter().enumerate() {
                self.inner
                    .consume_messages(txn, slice::from_ref(envelope))
                    .map_err(|(_, err)| {
                        self.record_message(envelope, &err, true);
                        (index, err)
                    })?;
            }
            return Ok(());
        }
        self.inner
            .consume_messages(txn, envelopes)
            .map_err(|(index, err)| {
                // A crash of a run is reported on its first message.
                let precise = envelopes.len() == 1 || !matches!(err, AppError::Crashed(_));
                if let Some(envelope) = envelopes.get(index) {
                    self.record_message(envelope, &err, precise);
                }
                (index, err)
            })
    }

    fn finalize_txn(&mut self, txn: &mut TxnContext<'_>) -> Result<(), AppError> {
        self.inner.finalize_txn(txn).inspect_err(|err| {
            self.failures.record(Recorded {
                at: None,
                error: err.to_string(),
                precise: true,
            })
        })
    }

    fn reset(&mut self) {
        self.inner.reset();
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::consumer::{DiscardPublisher, MemoryStore};

    /// Fails on documents `{"bad":…}`, as a crash (for runs) or a rejection.
    struct Picky {
        crash: bool,
    }

    impl Application for Picky {
        fn consume_message(
            &mut self,
            _txn: &mut TxnContext<'_>,
            envelope: &Envelope,
        ) -> Result<(), AppError> {
            if envelope.doc.starts_with(b"{\"bad\"") {
                let what = "bad document".to_string();
                return Err(if self.crash {
                    AppError::Crashed(what)
                } else {
                    AppError::Rejected(what)
                });
            }
            Ok(())
        }

        fn consume_messages(
            &mut self,
            txn: &mut TxnContext<'_>,
            envelopes: &[Envelope],
        ) -> Result<(), (usize, AppError)> {
            for envelope in envelopes {
                // Like a guest's trap: the failing index is unknown.
                self.consume_message(txn, envelope)
                    .map_err(|err| (0, err))?;
            }
            Ok(())
        }

        fn finalize_txn(&mut self, _txn: &mut TxnContext<'_>) -> Result<(), AppError> {
            Ok(())
        }
    }

    fn envelopes(docs: &[&'static str]) -> Vec<Envelope> {
        docs.iter()
            .enumerate()
            .map(|(i, doc)| {
                Envelope::new(
                    Arc::from("in"),
                    i as i64 * 10,
                    i as i64 * 10 + 10,
                    uuid::Uuid::nil(),
                    bytes::Bytes::from_static(doc.as_bytes()),
                )
            })
            .collect()
    }

    #[test]
    fn a_crash_in_a_run_is_imprecise_until_retried_one_message_at_a_time() {
        let failures = Arc::new(Failures::default());
        let mut store = MemoryStore::default();
        let mut publisher = DiscardPublisher;
        let mut txn = TxnContext {
            shard: "test",
            store: &mut store,
            publisher: &mut publisher,
        };
        let run = envelopes(&["{}", "{}", "{\"bad\":1}", "{}"]);

        let mut first = RecordingApp::new(Box::new(Picky { crash: true }), failures.clone());
        let (index, _) = first.consume_messages(&mut txn, &run).unwrap_err();
        assert_eq!(index, 0);
        assert_eq!(failures.first_precise(), None);
        assert!(!failures.recorded()[0].precise);

        let mut retry = RecordingApp::new(Box::new(Picky { crash: true }), failures.clone());
        let (index, _) = retry.consume_messages(&mut txn, &run).unwrap_err();
        assert_eq!(index, 2);
        let precise = failures
            .first_precise()
            .expect("the retry pins the message");
        assert_eq!(precise.at, Some(("in".to_string(), 20)));
        assert!(precise.error.contains("bad document"), "{precise:?}");
    }

    #[test]
    fn a_rejection_names_its_message_at_once() {
        let failures = Arc::new(Failures::default());
        let mut store = MemoryStore::default();
        let mut publisher = DiscardPublisher;
        let mut txn = TxnContext {
            shard: "test",
            store: &mut store,
            publisher: &mut publisher,
        };
        let mut app = RecordingApp::new(Box::new(Picky { crash: false }), failures.clone());
        app.consume_messages(&mut txn, &envelopes(&["{\"bad\":0}"]))
            .unwrap_err();
        assert_eq!(
            failures.first_precise().map(|f| f.at),
            Some(Some(("in".to_string(), 0)))
        );
    }
}
