//! In-memory stand-ins for a transaction's store and publisher, for
//! benchmarks and tests that drive an [`Application`](super::Application)
//! directly, without shards, journals or RocksDB.
//!
//! Writes apply at once (nothing is transactional here) and published
//! documents are discarded; use them only where commits are not the point.

use std::collections::BTreeMap;

use super::application::{PublishError, TxnPublisher, TxnStore, TxnStoreError};

/// A [`TxnStore`] in a sorted map. `fail_reads` makes every `get` fail, to
/// test how an application handles a store failure.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// The data.
    pub data: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Make `get` fail.
    pub fail_reads: bool,
    /// Make `put` and `delete` fail.
    pub fail_writes: bool,
}

impl TxnStore for MemoryStore {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, TxnStoreError> {
        if self.fail_reads {
            return Err(TxnStoreError::Failed("injected read failure".into()));
        }
        Ok(self.data.get(key).cloned())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), TxnStoreError> {
        if self.fail_writes {
            return Err(TxnStoreError::Failed("injected write failure".into()));
        }
        self.data.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), TxnStoreError> {
        if self.fail_writes {
            return Err(TxnStoreError::Failed("injected write failure".into()));
        }
        self.data.remove(key);
        Ok(())
    }

    fn scan(
        &mut self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, TxnStoreError> {
        Ok(self
            .data
            .range(start.to_vec()..)
            .take_while(|(key, _)| end.is_empty() || key.as_slice() < end)
            .take(limit)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }
}

/// A [`TxnPublisher`] that accepts and discards every document.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiscardPublisher;

impl TxnPublisher for DiscardPublisher {
    fn publish(&mut self, _journal: &str, _doc: &[u8]) -> Result<(), PublishError> {
        Ok(())
    }
}
