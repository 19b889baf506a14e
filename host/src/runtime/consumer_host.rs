//! The host side of the `consumer` world's imports: [`ConsumerData`], a
//! consumer guest's store data, and its `store`, `publisher` and `log`
//! implementations.
//!
//! Limits the import can check alone (key, value and document sizes, scan
//! size, messages and bytes per transaction) are checked here, before the
//! request crosses the [`Bridge`]; a refusal is both returned to the guest
//! as a WIT error and recorded as the call's failure, so the transaction
//! fails even if the guest ignores the error.
//!
//! `put` and `delete` do not suspend the guest: they are buffered in the
//! [`Bridge`] (applied before the next read or publish, at the end of the
//! call, or when [`limits::GUEST_WRITE_BUFFER_BYTES`] fill up).

use std::sync::Arc;

use wasmtime_wasi::{WasiCtxView, WasiView};

use super::bindings::consumer::weir::guest::{log, publisher, store, types};
use super::bridge::{Bridge, Failure, Request, Response, Write};
use super::limits::GuestLimits;
use super::state::{GuestLogLevel, Sandbox};
use crate::consumer::{PublishError, TxnStoreError};
use crate::limits;

/// A consumer guest's store data.
pub struct ConsumerData {
    /// WASI, limits, log and output capture.
    pub sandbox: Sandbox,
    /// The way to the transaction's store and publisher.
    pub bridge: Bridge,
    limits: Arc<GuestLimits>,
    /// Messages published in the current transaction.
    txn_messages: usize,
    /// Document bytes published in the current transaction.
    txn_bytes: usize,
}

impl ConsumerData {
    /// Store data for one instance.
    pub fn new(sandbox: Sandbox, bridge: Bridge, limits: Arc<GuestLimits>) -> ConsumerData {
        ConsumerData {
            sandbox,
            bridge,
            limits,
            txn_messages: 0,
            txn_bytes: 0,
        }
    }

    /// Ends the transaction: the per-transaction publish counters restart.
    pub fn end_txn(&mut self) {
        self.txn_messages = 0;
        self.txn_bytes = 0;
    }

    fn refuse_store(&self, reason: String) -> store::StoreError {
        self.bridge
            .fail(Failure::Store(TxnStoreError::LimitExceeded(reason.clone())));
        store::StoreError::LimitExceeded(reason)
    }

    fn check_key(&self, key: &[u8]) -> Result<(), store::StoreError> {
        if key.len() > self.limits.max_key_bytes {
            return Err(self.refuse_store(format!(
                "store key of {} bytes exceeds {} bytes",
                key.len(),
                self.limits.max_key_bytes
            )));
        }
        Ok(())
    }

    /// Buffers `write`, applying the buffer if it is full.
    async fn write(&mut self, write: Write) -> Result<(), store::StoreError> {
        if self.bridge.buffer(write) < limits::GUEST_WRITE_BUFFER_BYTES {
            return Ok(());
        }
        match self.bridge.call(Request::Flush).await {
            Response::Written(result) => result.map_err(wit_store_error),
            _ => Err(store::StoreError::Failed(self.mismatched())),
        }
    }

    /// A response that does not match its request: a bug in the bridge;
    /// fail the transaction rather than guess.
    fn mismatched(&self) -> String {
        let reason = "internal error: mismatched bridge response".to_string();
        self.bridge
            .fail(Failure::Store(TxnStoreError::Failed(reason.clone())));
        reason
    }
}

impl WasiView for ConsumerData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.sandbox.wasi_view()
    }
}

fn wit_store_error(err: TxnStoreError) -> store::StoreError {
    match err {
        TxnStoreError::LimitExceeded(what) => store::StoreError::LimitExceeded(what),
        TxnStoreError::Failed(what) => store::StoreError::Failed(what),
    }
}

fn wit_publish_error(err: PublishError) -> publisher::PublishError {
    match err {
        PublishError::InvalidDocument { journal, reason } => {
            publisher::PublishError::InvalidDocument(format!("{journal}: {reason}"))
        }
        PublishError::JournalNotFound(journal) => publisher::PublishError::JournalNotFound(journal),
        PublishError::LimitExceeded(what) => publisher::PublishError::LimitExceeded(what),
    }
}

impl types::Host for ConsumerData {}

impl store::Host for ConsumerData {
    async fn get(&mut self, key: Vec<u8>) -> Result<Option<Vec<u8>>, store::StoreError> {
        self.check_key(&key)?;
        match self.bridge.call(Request::Get(key)).await {
            Response::Value(result) => result.map_err(wit_store_error),
            _ => Err(store::StoreError::Failed(self.mismatched())),
        }
    }

    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), store::StoreError> {
        self.check_key(&key)?;
        if value.len() > self.limits.max_value_bytes {
            return Err(self.refuse_store(format!(
                "store value of {} bytes exceeds {} bytes",
                value.len(),
                self.limits.max_value_bytes
            )));
        }
        self.write(Write::Put(key, value)).await
    }

    async fn delete(&mut self, key: Vec<u8>) -> Result<(), store::StoreError> {
        self.check_key(&key)?;
        self.write(Write::Delete(key)).await
    }

    async fn get_many(
        &mut self,
        keys: Vec<Vec<u8>>,
    ) -> Result<Vec<Option<Vec<u8>>>, store::StoreError> {
        if keys.len() > self.limits.max_scan_entries {
            return Err(self.refuse_store(format!(
                "a get-many of {} keys exceeds {} keys",
                keys.len(),
                self.limits.max_scan_entries
            )));
        }
        for key in &keys {
            self.check_key(key)?;
        }
        let max_bytes = self.limits.memory_bytes;
        match self.bridge.call(Request::GetMany { keys, max_bytes }).await {
            Response::Values(result) => result.map_err(wit_store_error),
            _ => Err(store::StoreError::Failed(self.mismatched())),
        }
    }

    async fn scan(
        &mut self,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: u32,
    ) -> Result<Vec<store::Entry>, store::StoreError> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if limit > self.limits.max_scan_entries {
            return Err(self.refuse_store(format!(
                "a scan of {limit} entries exceeds {} entries",
                self.limits.max_scan_entries
            )));
        }
        match self.bridge.call(Request::Scan { start, end, limit }).await {
            Response::Entries(result) => result
                .map(|entries| {
                    entries
                        .into_iter()
                        .map(|(key, value)| store::Entry { key, value })
                        .collect()
                })
                .map_err(wit_store_error),
            _ => Err(store::StoreError::Failed(self.mismatched())),
        }
    }
}

impl publisher::Host for ConsumerData {
    async fn publish(
        &mut self,
        journal: String,
        doc: Vec<u8>,
    ) -> Result<(), publisher::PublishError> {
        let limits = &self.limits;
        let refusal = if doc.len() > limits.max_doc_bytes {
            Some(format!(
                "a document of {} bytes exceeds {} bytes",
                doc.len(),
                limits.max_doc_bytes
            ))
        } else if self.txn_messages >= limits.max_txn_messages {
            Some(format!(
                "the transaction already published {} messages",
                limits.max_txn_messages
            ))
        } else if self.txn_bytes.saturating_add(doc.len()) > limits.max_txn_bytes {
            Some(format!(
                "the transaction's published documents would exceed {} bytes",
                limits.max_txn_bytes
            ))
        } else {
            None
        };
        if let Some(reason) = refusal {
            self.bridge
                .fail(Failure::Publish(PublishError::LimitExceeded(
                    reason.clone(),
                )));
            return Err(publisher::PublishError::LimitExceeded(reason));
        }
        let len = doc.len();
        match self.bridge.call(Request::Publish { journal, doc }).await {
            Response::Published(Ok(())) => {
                self.txn_messages += 1;
                self.txn_bytes += len;
                Ok(())
            }
            Response::Published(Err(err)) => Err(wit_publish_error(err)),
            _ => Err(publisher::PublishError::InvalidDocument(self.mismatched())),
        }
    }
}

impl log::Host for ConsumerData {
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
