//! A transaction's view of the store: the committed state plus its own
//! uncommitted writes.
//!
//! [`TxnOverlay`] implements [`TxnStore`]: reads go to the overlay first
//! (read-your-writes, deletes included) and fall through to the committed
//! RocksDB state; `scan` merges both in key order. Writes stay in memory
//! until [`TxnOverlay::into_writes`] hands them to
//! [`ShardStore::commit`](super::ShardStore::commit), which makes them one
//! recovery-log record. Key, value and per-transaction sizes are checked as
//! they are written, so an oversized transaction fails at the write that
//! broke the limit, never at commit.
//!
//! The committed state is what the store had applied when the read ran; the
//! transaction loop begins a transaction only after the previous commit
//! returned, so that is always the latest commit. Reads block on RocksDB:
//! run the overlay on a blocking thread.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use rocksdb::ReadOptions;

use super::config::StoreConfig;
use super::error::StoreError;
use super::local::LocalDb;
use super::record::Write;
use crate::consumer::{TxnStore, TxnStoreError};

/// One uncommitted change to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Set the key to this value.
    Put(Vec<u8>),
    /// Remove the key.
    Delete,
}

/// The writes of one transaction, by key (the last write of a key wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSet {
    entries: BTreeMap<Vec<u8>, Mutation>,
    bytes: usize,
}

impl WriteSet {
    /// An empty write set.
    pub fn new() -> Self {
        WriteSet::default()
    }

    /// Number of keys written.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total key and value bytes written.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The mutations in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Mutation)> {
        self.entries
            .iter()
            .map(|(key, mutation)| (key.as_slice(), mutation))
    }

    /// Records a mutation. Limits are the caller's business here
    /// ([`TxnOverlay`] checks them; `commit` checks the total).
    pub fn insert(&mut self, key: Vec<u8>, mutation: Mutation) {
        let key_len = key.len();
        let value_len = mutation_len(&mutation);
        match self.entries.insert(key, mutation) {
            // The key's bytes are already counted; only its value changes.
            Some(old) => self.bytes = self.bytes - mutation_len(&old) + value_len,
            None => self.bytes += key_len + value_len,
        }
    }

    /// The mutation of `key`, if the transaction wrote it.
    pub fn get(&self, key: &[u8]) -> Option<&Mutation> {
        self.entries.get(key)
    }

    /// The writes as recovery-log records.
    pub(crate) fn as_records(&self) -> Vec<Write<'_>> {
        self.entries
            .iter()
            .map(|(key, mutation)| match mutation {
                Mutation::Put(value) => Write::Put { key, value },
                Mutation::Delete => Write::Delete { key },
            })
            .collect()
    }

    fn range(
        &self,
        start: &[u8],
        end: &[u8],
    ) -> std::collections::btree_map::Range<'_, Vec<u8>, Mutation> {
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end)
        };
        self.entries
            .range::<[u8], _>((Bound::Included(start), upper))
    }
}

fn mutation_len(mutation: &Mutation) -> usize {
    match mutation {
        Mutation::Put(value) => value.len(),
        Mutation::Delete => 0,
    }
}

/// A transaction in progress over a [`ShardStore`](super::ShardStore).
pub struct TxnOverlay {
    db: Arc<LocalDb>,
    /// Writes of a predecessor transaction that is still committing: they
    /// shadow RocksDB, and this transaction's own writes shadow them.
    pending: Option<Arc<WriteSet>>,
    writes: WriteSet,
    config: StoreConfig,
}

impl TxnOverlay {
    pub(crate) fn new(db: Arc<LocalDb>, config: StoreConfig) -> Self {
        TxnOverlay {
            db,
            pending: None,
            writes: WriteSet::new(),
            config,
        }
    }

    pub(crate) fn over(mut self, pending: Arc<WriteSet>) -> Self {
        self.pending = Some(pending);
        self
    }

    /// The transaction's writes, to pass to
    /// [`ShardStore::commit`](super::ShardStore::commit).
    pub fn into_writes(self) -> WriteSet {
        self.writes
    }

    /// The writes so far.
    pub fn writes(&self) -> &WriteSet {
        &self.writes
    }

    fn check_key(&self, key: &[u8]) -> Result<(), TxnStoreError> {
        if key.len() > self.config.max_key_bytes {
            return Err(TxnStoreError::LimitExceeded(format!(
                "key of {} bytes exceeds the maximum of {}",
                key.len(),
                self.config.max_key_bytes
            )));
        }
        Ok(())
    }

    fn check_growth(&self, key: &[u8], mutation: &Mutation) -> Result<(), TxnStoreError> {
        let replaced = match self.writes.get(key) {
            Some(old) => key.len() + mutation_len(old),
            None => 0,
        };
        let total = self.writes.bytes() - replaced + key.len() + mutation_len(mutation);
        if total > self.config.max_txn_bytes {
            return Err(TxnStoreError::LimitExceeded(format!(
                "transaction writes {total} bytes, more than the maximum of {}",
                self.config.max_txn_bytes
            )));
        }
        Ok(())
    }
}

fn failed(err: StoreError) -> TxnStoreError {
    TxnStoreError::Failed(err.to_string())
}

impl TxnStore for TxnOverlay {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, TxnStoreError> {
        match self.writes.get(key) {
            Some(Mutation::Put(value)) => Ok(Some(value.clone())),
            Some(Mutation::Delete) => Ok(None),
            None => match self.pending.as_ref().and_then(|pending| pending.get(key)) {
                Some(Mutation::Put(value)) => Ok(Some(value.clone())),
                Some(Mutation::Delete) => Ok(None),
                None => self.db.get(key).map_err(failed),
            },
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), TxnStoreError> {
        self.check_key(key)?;
        if value.len() > self.config.max_value_bytes {
            return Err(TxnStoreError::LimitExceeded(format!(
                "value of {} bytes exceeds the maximum of {}",
                value.len(),
                self.config.max_value_bytes
            )));
        }
        let mutation = Mutation::Put(value.to_vec());
        self.check_growth(key, &mutation)?;
        self.writes.insert(key.to_vec(), mutation);
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), TxnStoreError> {
        self.check_key(key)?;
        self.check_growth(key, &Mutation::Delete)?;
        self.writes.insert(key.to_vec(), Mutation::Delete);
        Ok(())
    }

    fn scan(
        &mut self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, TxnStoreError> {
        if limit > self.config.max_scan_entries {
            return Err(TxnStoreError::LimitExceeded(format!(
                "scan of {limit} entries exceeds the maximum of {}",
                self.config.max_scan_entries
            )));
        }
        let mut out = Vec::new();
        if limit == 0 || (!end.is_empty() && start >= end) {
            return Ok(out);
        }
        let cf = self.db.data_cf().map_err(failed)?;
        let mut options = ReadOptions::default();
        if !end.is_empty() {
            options.set_iterate_upper_bound(end.to_vec());
        }
        let mut committed = self.db.db().raw_iterator_cf_opt(cf, options);
        committed.seek(start);
        // This transaction's writes over the pending predecessor's.
        let layered: Vec<(&Vec<u8>, &Mutation)> = match &self.pending {
            None => self.writes.range(start, end).collect(),
            Some(pending) => {
                let mut merged: BTreeMap<&Vec<u8>, &Mutation> = pending.range(start, end).collect();
                merged.extend(self.writes.range(start, end));
                merged.into_iter().collect()
            }
        };
        let mut own = layered.into_iter().peekable();

        while out.len() < limit {
            let from_db = committed.key();
            let from_own = own.peek().map(|(key, _)| key.as_slice());
            let take_own = match (from_db, from_own) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(db_key), Some(own_key)) => own_key <= db_key,
            };
            if take_own {
                let Some((key, mutation)) = own.next() else {
                    break;
                };
                // The transaction's write shadows the committed entry.
                if committed.key() == Some(key.as_slice()) {
                    committed.next();
                }
                if let Mutation::Put(value) = mutation {
                    out.push((key.clone(), value.clone()));
                }
            } else {
                if let (Some(key), Some(value)) = (committed.key(), committed.value()) {
                    out.push((key.to_vec(), value.to_vec()));
                }
                committed.next();
            }
        }
        committed.status().map_err(|source| {
            failed(StoreError::Local {
                context: "scanning",
                source,
            })
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod test {
    use rocksdb::WriteBatch;

    use super::*;

    /// A local store holding `committed`, and an overlay over it.
    fn overlay(committed: &[(&str, &str)], config: StoreConfig) -> (tempfile::TempDir, TxnOverlay) {
        let dir = tempfile::tempdir().expect("tempdir");
        let opened = LocalDb::open(dir.path(), "log").expect("open");
        let mut batch = WriteBatch::default();
        let cf = opened.db.data_cf().expect("cf");
        for (key, value) in committed {
            batch.put_cf(cf, key, value);
        }
        opened.db.write(batch).expect("write");
        (dir, TxnOverlay::new(Arc::new(opened.db), config))
    }

    fn strings(entries: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(String, String)> {
        entries
            .into_iter()
            .map(|(k, v)| {
                (
                    String::from_utf8(k).expect("utf8"),
                    String::from_utf8(v).expect("utf8"),
                )
            })
            .collect()
    }

    fn expect(entries: &[(&str, &str)]) -> Vec<(String, String)> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_see_the_transactions_own_puts_and_deletes_over_committed_state() {
        let (_dir, mut txn) = overlay(&[("a", "1"), ("b", "2")], StoreConfig::default());
        assert_eq!(txn.get(b"a").expect("get"), Some(b"1".to_vec()));
        txn.put(b"a", b"10").expect("put");
        txn.delete(b"b").expect("delete");
        txn.put(b"c", b"3").expect("put");
        assert_eq!(txn.get(b"a").expect("get"), Some(b"10".to_vec()));
        assert_eq!(
            txn.get(b"b").expect("get"),
            None,
            "a delete hides the committed value"
        );
        assert_eq!(txn.get(b"c").expect("get"), Some(b"3".to_vec()));
        txn.put(b"b", b"back").expect("put");
        assert_eq!(txn.get(b"b").expect("get"), Some(b"back".to_vec()));
        let writes = txn.into_writes();
        assert_eq!(writes.len(), 3);
        assert_eq!(writes.get(b"b"), Some(&Mutation::Put(b"back".to_vec())));
    }

    #[test]
    fn scan_merges_committed_and_own_writes_in_key_order() {
        let committed = [("a", "1"), ("b", "2"), ("d", "4"), ("f", "6"), ("h", "8")];
        let (_dir, mut txn) = overlay(&committed, StoreConfig::default());
        txn.put(b"b", b"20").expect("put"); // shadows a committed key
        txn.put(b"c", b"3").expect("put"); // new, between committed keys
        txn.delete(b"d").expect("delete"); // hides a committed key
        txn.delete(b"e").expect("delete"); // deletes a key that never existed
        txn.put(b"z", b"26").expect("put"); // after every committed key

        let all = strings(txn.scan(b"", b"", 100).expect("scan"));
        let expected = [
            ("a", "1"),
            ("b", "20"),
            ("c", "3"),
            ("f", "6"),
            ("h", "8"),
            ("z", "26"),
        ];
        assert_eq!(all, expect(&expected));

        let bounded = strings(txn.scan(b"b", b"h", 100).expect("scan"));
        assert_eq!(bounded, expect(&[("b", "20"), ("c", "3"), ("f", "6")]));

        let limited = strings(txn.scan(b"b", b"", 2).expect("scan"));
        assert_eq!(limited, expect(&[("b", "20"), ("c", "3")]));

        assert!(
            txn.scan(b"h", b"b", 10).expect("scan").is_empty(),
            "an inverted range is empty"
        );
        assert!(txn.scan(b"", b"", 0).expect("scan").is_empty());
    }

    #[test]
    fn a_deleted_key_stays_hidden_when_the_scan_limit_is_reached_right_after_it() {
        let (_dir, mut txn) = overlay(
            &[("a", "1"), ("b", "2"), ("c", "3")],
            StoreConfig::default(),
        );
        txn.delete(b"a").expect("delete");
        txn.delete(b"b").expect("delete");
        let first = strings(txn.scan(b"", b"", 1).expect("scan"));
        assert_eq!(first, expect(&[("c", "3")]));
    }

    fn limit<T>(result: Result<T, TxnStoreError>) -> bool {
        matches!(result, Err(TxnStoreError::LimitExceeded(_)))
    }

    #[test]
    fn oversized_keys_values_and_transactions_are_refused_with_limit_errors() {
        let config = StoreConfig {
            max_key_bytes: 4,
            max_value_bytes: 8,
            max_txn_bytes: 20,
            max_scan_entries: 10,
            ..StoreConfig::default()
        };
        let (_dir, mut txn) = overlay(&[], config);
        assert!(limit(txn.put(b"12345", b"v")), "key too long");
        assert!(limit(txn.delete(b"12345")), "key too long for a delete too");
        assert!(limit(txn.put(b"k", b"123456789")), "value too long");
        assert!(
            limit(txn.scan(b"", b"", 11)),
            "scan asks for too many entries"
        );
        txn.put(b"k1", b"12345678").expect("10 bytes");
        txn.put(b"k2", b"12345678").expect("20 bytes");
        assert!(
            limit(txn.put(b"k3", b"1")),
            "23 bytes is over the transaction cap"
        );
        // Overwriting a key counts only the new value.
        txn.put(b"k2", b"1234").expect("16 bytes");
        txn.put(b"k3", b"1").expect("19 bytes");
        assert_eq!(txn.writes().bytes(), 19);
        assert!(txn.get(b"k3").expect("get").is_some());
    }

    #[test]
    fn a_pending_predecessor_shadows_committed_state_and_is_shadowed_by_own_writes() {
        let (_dir, overlay) = overlay(
            &[("a", "1"), ("b", "1"), ("c", "1")],
            StoreConfig::default(),
        );
        let mut pending = WriteSet::new();
        pending.insert(b"b".to_vec(), Mutation::Put(b"2".to_vec()));
        pending.insert(b"c".to_vec(), Mutation::Delete);
        pending.insert(b"d".to_vec(), Mutation::Put(b"2".to_vec()));
        let mut txn = overlay.over(Arc::new(pending));
        txn.put(b"d", b"3").expect("put");
        assert_eq!(txn.get(b"a").expect("get"), Some(b"1".to_vec()));
        assert_eq!(txn.get(b"b").expect("get"), Some(b"2".to_vec()));
        assert_eq!(txn.get(b"c").expect("get"), None);
        assert_eq!(txn.get(b"d").expect("get"), Some(b"3".to_vec()));
        assert_eq!(
            strings(txn.scan(b"", b"", 10).expect("scan")),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "2".into()),
                ("d".into(), "3".into())
            ]
        );
        // Only the transaction's own writes are committed with it.
        assert_eq!(txn.into_writes().len(), 1);
    }
}
