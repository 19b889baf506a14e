//! The local RocksDB materialization of a recovery log.
//!
//! Two column families:
//! - `data` holds the application's keys and values, nothing else;
//! - `default` holds the store's own metadata: the log the directory was built
//!   from, the [`LogPosition`] it has applied through, and the checkpoint of
//!   the last applied commit.
//!
//! Every change to `data` is written in the same RocksDB `WriteBatch` as the
//! new position and checkpoint, so the directory is always a prefix of the
//! log: replaying from its position makes it whole.
//!
//! RocksDB's own write-ahead log is **disabled**: the recovery log already is
//! one. Writes land in memtables, and memtables of both column families are
//! flushed together (`atomic_flush`), so what reaches disk is always a
//! consistent prefix, whatever the crash. A crash loses at most the unflushed
//! memtables, which the next open replays from the recovery log; a clean
//! close (or [`LocalDb::flush`]) persists everything, so an up-to-date
//! directory reopens without replay and without a WAL to re-read.
//!
//! Every method blocks; callers run them on blocking threads.

use std::path::Path;

use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, FlushOptions, Options, WriteBatch, WriteOptions,
};
use serde::{Deserialize, Serialize};

use super::error::StoreError;
use crate::consumer::Checkpoint;

/// Column family of the application's keys.
const DATA_CF: &str = "data";
/// Column family of the store's metadata.
const META_CF: &str = rocksdb::DEFAULT_COLUMN_FAMILY_NAME;

const META_LOG: &[u8] = b"log";
const META_POSITION: &[u8] = b"position";
const META_CHECKPOINT: &[u8] = b"checkpoint";

/// How far through the recovery log a directory has applied, and the state
/// needed to judge the next record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPosition {
    /// Log offset one past the last record applied (or skipped).
    pub offset: i64,
    /// Sequence number the next applicable record must carry.
    pub next_seq: u64,
    /// Author of the latest applied hand-off (0: none yet).
    pub author: u32,
}

/// An open local store.
pub(crate) struct LocalDb {
    db: DB,
}

/// What [`LocalDb::open`] found.
pub(crate) struct Opened {
    pub db: LocalDb,
    pub position: LogPosition,
    pub checkpoint: Checkpoint,
}

impl LocalDb {
    /// Opens (or creates) the store in `dir`, built from recovery log `log`.
    pub fn open(dir: &Path, log: &str) -> Result<Opened, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // Keep the manifest small, as Gazette does: it is rewritten often.
        options.set_max_manifest_file_size(128 * 1024);
        // Without a WAL, only flushing both column families at once keeps
        // data and position consistent on disk.
        options.set_atomic_flush(true);
        let data_options = Options::default();
        let descriptors = vec![
            ColumnFamilyDescriptor::new(META_CF, Options::default()),
            ColumnFamilyDescriptor::new(DATA_CF, data_options),
        ];
        let db = DB::open_cf_descriptors(&options, dir, descriptors).map_err(|source| {
            StoreError::Local {
                context: "opening the local store",
                source,
            }
        })?;
        let db = LocalDb { db };

        match db.meta_get(META_LOG)? {
            Some(found) if found != log.as_bytes() => {
                return Err(StoreError::WrongLog {
                    expected: log.to_string(),
                    found: String::from_utf8_lossy(&found).into_owned(),
                });
            }
            Some(_) => {}
            None => {
                let meta = db.meta_cf()?;
                db.db
                    .put_cf(meta, META_LOG, log.as_bytes())
                    .map_err(|source| StoreError::Local {
                        context: "recording the log",
                        source,
                    })?;
            }
        }
        let position = match db.meta_get(META_POSITION)? {
            Some(bytes) => postcard::from_bytes(&bytes)
                .map_err(|err| StoreError::LocalState(format!("position: {err}")))?,
            None => LogPosition::default(),
        };
        let checkpoint = match db.meta_get(META_CHECKPOINT)? {
            Some(bytes) => postcard::from_bytes(&bytes)
                .map_err(|err| StoreError::LocalState(format!("checkpoint: {err}")))?,
            None => Checkpoint::default(),
        };
        Ok(Opened {
            db,
            position,
            checkpoint,
        })
    }

    /// The application's column family.
    pub fn data_cf(&self) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(DATA_CF)
            .ok_or_else(|| StoreError::LocalState("missing column family `data`".to_string()))
    }

    fn meta_cf(&self) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(META_CF)
            .ok_or_else(|| StoreError::LocalState("missing column family `default`".to_string()))
    }

    fn meta_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db
            .get_cf(self.meta_cf()?, key)
            .map_err(|source| StoreError::Local {
                context: "reading metadata",
                source,
            })
    }

    /// The committed value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self
            .db
            .get_pinned_cf(self.data_cf()?, key)
            .map_err(|source| StoreError::Local {
                context: "reading a key",
                source,
            })?;
        Ok(value.map(|value| value.to_vec()))
    }

    /// The underlying database (for iterators).
    pub fn db(&self) -> &DB {
        &self.db
    }

    /// Adds the new position, and the checkpoint if it changed, to `batch`.
    pub fn stage_meta(
        &self,
        batch: &mut WriteBatch,
        position: &LogPosition,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), StoreError> {
        let meta = self.meta_cf()?;
        let encoded = postcard::to_stdvec(position).map_err(StoreError::Encode)?;
        batch.put_cf(meta, META_POSITION, encoded);
        if let Some(checkpoint) = checkpoint {
            let encoded = postcard::to_stdvec(checkpoint).map_err(StoreError::Encode)?;
            batch.put_cf(meta, META_CHECKPOINT, encoded);
        }
        Ok(())
    }

    /// Writes `batch` atomically (to memtables; see the module docs).
    pub fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut options = WriteOptions::default();
        options.disable_wal(true);
        self.db
            .write_opt(batch, &options)
            .map_err(|source| StoreError::Local {
                context: "applying a batch",
                source,
            })
    }

    /// Persists every memtable (both column families, atomically).
    pub fn flush(&self) -> Result<(), StoreError> {
        let cfs = [self.meta_cf()?, self.data_cf()?];
        self.db
            .flush_cfs_opt(&cfs, &FlushOptions::default())
            .map_err(|source| StoreError::Local {
                context: "flushing",
                source,
            })
    }

    /// Writes a consistent copy of the whole store (data and position) to
    /// `dest`, which must not exist. Files are hard-linked where possible.
    pub fn snapshot(&self, dest: &Path) -> Result<(), StoreError> {
        let checkpoint =
            rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(|source| StoreError::Local {
                context: "preparing a snapshot",
                source,
            })?;
        checkpoint
            .create_checkpoint(dest)
            .map_err(|source| StoreError::Local {
                context: "writing a snapshot",
                source,
            })
    }
}
