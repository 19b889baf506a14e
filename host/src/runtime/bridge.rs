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
//!
//! A suspension is the expensive part of an import, so writes do not take
//! one: `put` and `delete` are [buffered](Bridge::buffer) in the slot and
//! applied, in order, by `drive` before it serves the next request and when
//! the call returns. Reads therefore still see every earlier write.

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
    /// `store.get-many`
    GetMany {
        /// The keys, answered in this order.
        keys: Vec<Vec<u8>>,
        /// Most value bytes in the answer.
        max_bytes: usize,
    },
    /// Apply the buffered writes now (the buffer is full).
    Flush,
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

/// A buffered `store.put` or `store.delete`.
#[derive(Debug)]
pub enum Write {
    /// Set a key to a value.
    Put(Vec<u8>, Vec<u8>),
    /// Delete a key.
    Delete(Vec<u8>),
}

impl Write {
    fn bytes(&self) -> usize {
        match self {
            Write::Put(key, value) => key.len() + value.len(),
            Write::Delete(key) => key.len(),
        }
    }
}

/// Key-value pairs returned by a scan.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The answer to a [`Request`].
#[derive(Debug)]
pub enum Response {
    /// For `Get`.
    Value(Result<Option<Vec<u8>>, TxnStoreError>),
    /// For `GetMany`.
    Values(Result<Vec<Option<Vec<u8>>>, TxnStoreError>),
    /// For `Flush`.
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
    /// Writes not yet applied, in order.
    writes: Vec<Write>,
    /// Key and value bytes of `writes`.
    write_bytes: usize,
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

    /// Guest side: queues `write` without suspending; returns the bytes now
    /// buffered (the caller flushes past its bound).
    pub fn buffer(&self, write: Write) -> usize {
        let mut slot = self.lock();
        slot.write_bytes += write.bytes();
        slot.writes.push(write);
        slot.write_bytes
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
                // A failed write is the call's failure; the output stands.
                let _ = self.apply_writes(txn);
                return Ok(output);
            }
            let Some(request) = self.lock().request.take() else {
                return Err(Stalled::WithoutRequest);
            };
            // A read after a failed write must not look like success.
            let refused = self
                .apply_writes(txn)
                .err()
                .and_then(|err| failed_read(&request, err));
            let (response, failure) = match refused {
                Some(response) => (response, None),
                None => serve(request, txn),
            };
            if let Some(failure) = failure {
                self.fail(failure);
            }
            self.lock().response = Some(response);
        }
    }

    /// Applies the buffered writes in order, stopping at the first failure
    /// (recorded as the call's); the rest are dropped with the transaction.
    fn apply_writes(&self, txn: &mut TxnContext<'_>) -> Result<(), TxnStoreError> {
        let writes = {
            let mut slot = self.lock();
            slot.write_bytes = 0;
            std::mem::take(&mut slot.writes)
        };
        for write in writes {
            let applied = match &write {
                Write::Put(key, value) => txn.store.put(key, value),
                Write::Delete(key) => txn.store.delete(key),
            };
            if let Err(err) = applied {
                self.fail(Failure::Store(copy_store_error(&err)));
                return Err(err);
            }
        }
        Ok(())
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

/// The answer to `request` when an earlier buffered write failed with `err`
/// (already recorded): store requests get that error; a publish is served.
fn failed_read(request: &Request, err: TxnStoreError) -> Option<Response> {
    match request {
        Request::Get(_) => Some(Response::Value(Err(err))),
        Request::GetMany { .. } => Some(Response::Values(Err(err))),
        Request::Scan { .. } => Some(Response::Entries(Err(err))),
        Request::Flush => Some(Response::Written(Err(err))),
        Request::Publish { .. } => None,
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
        Request::GetMany { keys, max_bytes } => {
            let result = get_many(txn, &keys, max_bytes);
            let failure = result.as_ref().err().and_then(store_failure);
            (Response::Values(result), failure)
        }
        // `drive` applied the writes before serving this.
        Request::Flush => (Response::Written(Ok(())), None),
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

/// The values of `keys`, refused once they pass `max_bytes` in total.
fn get_many(
    txn: &mut TxnContext<'_>,
    keys: &[Vec<u8>],
    max_bytes: usize,
) -> Result<Vec<Option<Vec<u8>>>, TxnStoreError> {
    let mut bytes = 0usize;
    let mut values = Vec::with_capacity(keys.len());
    for key in keys {
        let value = txn.store.get(key)?;
        bytes = bytes.saturating_add(value.as_ref().map_or(0, Vec::len));
        if bytes > max_bytes {
            return Err(TxnStoreError::LimitExceeded(format!(
                "the values of a get-many of {} keys exceed {max_bytes} bytes",
                keys.len()
            )));
        }
        values.push(value);
    }
    Ok(values)
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
