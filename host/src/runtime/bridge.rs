//! How a guest call reaches the transaction it runs in.
//!
//! `Application::consume_message` lends the guest adapter a `&mut
//! TxnContext` for the duration of the call, but a wasmtime store's data must
//! be `'static`: it cannot hold that borrow. So the store and publisher
//! imports are `async`, and the call is driven by [`Bridge::drive`], a
//! minimal executor on the calling thread (no tokio): the guest runs on a
//! wasmtime fiber; an import puts its [`Request`] in the bridge's slot and
//! suspends; `drive` sees the call pending, serves the request with the
//! borrowed context, puts the [`Response`] back and resumes the guest. All
//! of it happens on one thread, in order; no unsafe code.
//!
//! Every store or publish failure is also recorded as the call's
//! **failure**: the adapter fails the transaction with it whatever the guest
//! returns, so a guest cannot swallow a store error.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::consumer::{PublishError, TxnContext, TxnStoreError};

/// A store or publish operation asked for by the guest.
#[derive(Debug)]
pub enum Request {
    /// `store.get`
    Get(Vec<u8>),
    /// `store.put`
    Put(Vec<u8>, Vec<u8>),
    /// `store.delete`
    Delete(Vec<u8>),
    /// `store.scan`
    Scan {
        /// First key (inclusive).
        start: Vec<u8>,
        /// Last key (exclusive); empty = unbounded.
        end: Vec<u8>,
        /// Most entries.
        limit: usize,
    },
    /// `publisher.publish`
    Publish {
        /// Target journal.
        journal: String,
        /// The document.
        doc: Vec<u8>,
    },
}

/// Key-value pairs returned by a scan.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The answer to a [`Request`].
#[derive(Debug)]
pub enum Response {
    /// For `Get`.
    Value(Result<Option<Vec<u8>>, TxnStoreError>),
    /// For `Put` and `Delete`.
    Written(Result<(), TxnStoreError>),
    /// For `Scan`.
    Entries(Result<Entries, TxnStoreError>),
    /// For `Publish`.
    Published(Result<(), PublishError>),
}

/// The first store or publish failure of a call.
#[derive(Debug)]
pub enum Failure {
    /// A store operation failed.
    Store(TxnStoreError),
    /// A publish failed.
    Publish(PublishError),
}

/// Why [`Bridge::drive`] could not finish a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stalled {
    /// The guest suspended without a request: something other than a store
    /// or publish import tried to wait (nothing in the consumer world
    /// should).
    WithoutRequest,
}

#[derive(Default)]
struct Slot {
    request: Option<Request>,
    response: Option<Response>,
    /// The first failure of the current call.
    failure: Option<Failure>,
}

/// The request slot shared by a guest store's data (the imports) and the
/// adapter (the executor). Clones share the slot.
#[derive(Clone, Default)]
pub struct Bridge {
    slot: Arc<Mutex<Slot>>,
}

impl Bridge {
    /// Guest side: hands `request` to the executor and waits for its answer.
    pub async fn call(&self, request: Request) -> Response {
        self.lock().request = Some(request);
        std::future::poll_fn(|_cx| match self.lock().response.take() {
            Some(response) => Poll::Ready(response),
            None => Poll::Pending,
        })
        .await
    }

    /// Guest side: records a failure found before a request reached the
    /// context (a limit the import checks itself). The first one wins.
    pub fn fail(&self, failure: Failure) {
        let mut slot = self.lock();
        if slot.failure.is_none() {
            slot.failure = Some(failure);
        }
    }

    /// Host side: runs `future` (a guest call) to completion on this thread,
    /// serving its requests with `txn`. Failed requests are recorded (see
    /// [`take_failure`](Self::take_failure)).
    pub fn drive<F: Future>(
        &self,
        future: F,
        txn: &mut TxnContext<'_>,
    ) -> Result<F::Output, Stalled> {
        let mut future = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return Ok(output);
            }
            let Some(request) = self.lock().request.take() else {
                return Err(Stalled::WithoutRequest);
            };
            let (response, failure) = serve(request, txn);
            if let Some(failure) = failure {
                self.fail(failure);
            }
            self.lock().response = Some(response);
        }
    }

    /// Host side: the first failure of the call, clearing it.
    pub fn take_failure(&self) -> Option<Failure> {
        self.lock().failure.take()
    }

    /// Forgets everything left by an abandoned call.
    pub fn clear(&self) {
        *self.lock() = Slot::default();
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Serves one request; a failed one also yields its [`Failure`].
fn serve(request: Request, txn: &mut TxnContext<'_>) -> (Response, Option<Failure>) {
    let store_failure = |err: &TxnStoreError| Some(Failure::Store(copy_store_error(err)));
    match request {
        Request::Get(key) => {
            let result = txn.store.get(&key);
            let failure = result.as_ref().err().and_then(store_failure);
            (Response::Value(result), failure)
        }
        Request::Put(key, value) => {
            let result = txn.store.put(&key, &value);
            let failure = result.as_ref().err().and_then(store_failure);
            (Response::Written(result), failure)
        }
        Request::Delete(key) => {
            let result = txn.store.delete(&key);
            let failure = result.as_ref().err().and_then(store_failure);
            (Response::Written(result), failure)
        }
        Request::Scan { start, end, limit } => {
            let result = txn.store.scan(&start, &end, limit);
            let failure = result.as_ref().err().and_then(store_failure);
            (Response::Entries(result), failure)
        }
        Request::Publish { journal, doc } => {
            let result = txn.publisher.publish(&journal, &doc);
            let failure = result
                .as_ref()
                .err()
                .map(|err| Failure::Publish(copy_publish_error(err)));
            (Response::Published(result), failure)
        }
    }
}

/// A copy of a store error (the error types are not `Clone`).
pub fn copy_store_error(err: &TxnStoreError) -> TxnStoreError {
    match err {
        TxnStoreError::LimitExceeded(what) => TxnStoreError::LimitExceeded(what.clone()),
        TxnStoreError::Failed(what) => TxnStoreError::Failed(what.clone()),
    }
}

/// A copy of a publish error (the error types are not `Clone`).
pub fn copy_publish_error(err: &PublishError) -> PublishError {
    match err {
        PublishError::InvalidDocument { journal, reason } => PublishError::InvalidDocument {
            journal: journal.clone(),
            reason: reason.clone(),
        },
        PublishError::JournalNotFound(journal) => PublishError::JournalNotFound(journal.clone()),
        PublishError::LimitExceeded(what) => PublishError::LimitExceeded(what.clone()),
    }
}
