//! Where journal bytes live: the small file-system interface the broker
//! writes through, and its real implementation on local disk.
//!
//! The broker only needs a handful of operations: append to a file and make
//! it durable (`sync_data`), read a file at an offset, create, rename and
//! remove files, and make directory changes durable (`sync_dir`). Keeping them
//! behind [`Backend`] lets tests inject durability faults
//! ([`SimBackend`](super::sim::SimBackend) forgets unsynced bytes on a
//! simulated crash and can fail an fsync), and lets closed fragments move to
//! object storage later without touching the append and read paths.
//!
//! # Durability contract
//!
//! What a backend promises, and what the broker relies on:
//! - bytes passed to [`AppendFile::append`] are durable once
//!   [`AppendFile::sync_data`] returns `Ok` (an `fdatasync`);
//! - a created, renamed or removed directory entry is durable once
//!   [`Backend::sync_dir`] of its directory returns `Ok`;
//! - a failed `sync_data` may have lost any unsynced bytes: the caller must
//!   not retry it and hope (after a failed fsync Linux marks the pages clean),
//!   so the broker fails the journal instead.
//!
//! Every method blocks; the broker calls them from blocking threads only.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Counters of durability operations, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Completed [`AppendFile::sync_data`] calls (fdatasync).
    pub data_syncs: u64,
    /// Completed [`Backend::sync_dir`] calls.
    pub dir_syncs: u64,
}

/// A file open for appending.
pub trait AppendFile: Send + Sync {
    /// Appends all of `bytes` at the end of the file.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes every appended byte durable (fdatasync).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes (used to drop a torn tail or a failed
    /// write); durable after the next `sync_data`.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> u64;
    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A file open for positional reads, shareable between readers. A handle
/// stays valid when its file is renamed.
pub trait ReadFile: Send + Sync + fmt::Debug {
    /// Fills `buf` from `offset`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// When the file's content last changed.
    fn modified(&self) -> io::Result<SystemTime>;
}

/// A held exclusive lock; dropping it releases the lock.
pub trait DirLock: Send + Sync + fmt::Debug {}

/// The file-system operations the broker needs. See the [module docs](self)
/// for the durability contract.
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// Creates `dir` and any missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the entries (files and directories) of `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Whether `path` names an existing file or directory.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Creates a new, empty file to append to; fails if it exists.
    fn create_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;
    /// Opens an existing file to append to, positioned at its end.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;
    /// Opens an existing file for positional reads.
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>>;
    /// Reads a whole (small) file.
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Creates or replaces `path` with `bytes` and syncs its data (not its
    /// directory entry).
    fn write_file_synced(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Renames a file, replacing any file at `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything below it.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes the creations, renames and removals of entries of `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive, process-wide lock on `dir` (so that two brokers
    /// never share a data directory); fails with `WouldBlock` if held.
    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn DirLock>>;
    /// Durability counters since the backend was created.
    fn stats(&self) -> BackendStats;
}

/// Writes `bytes` to `path` atomically and durably: write a temporary file,
/// sync it, rename it over `path`, sync the directory.
pub fn write_atomic(backend: &dyn Backend, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent"))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    backend.write_file_synced(tmp, bytes)?;
    backend.rename(tmp, path)?;
    backend.sync_dir(dir)
}

/// The local file system (std::fs, `fdatasync`, `flock`).
#[derive(Debug, Default)]
pub struct FsBackend {
    data_syncs: Arc<AtomicU64>,
    dir_syncs: AtomicU64,
}

impl FsBackend {
    /// A backend over the local file system.
    pub fn new() -> Self {
        FsBackend::default()
    }
}

impl Backend for FsBackend {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            // Names the broker did not write (not UTF-8) are skipped: they
            // cannot be journals or fragments.
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn create_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)?;
        Ok(Box::new(FsAppendFile {
            file,
            len: 0,
            data_syncs: self.data_syncs.clone(),
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let file = OpenOptions::new().append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(Box::new(FsAppendFile {
            file,
            len,
            data_syncs: self.data_syncs.clone(),
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>> {
        Ok(Arc::new(FsReadFile(File::open(path)?)))
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn write_file_synced(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut file = File::create(path)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        self.data_syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()?;
        self.dir_syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn DirLock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(FsDirLock(file))),
            Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked by another process", dir.display()),
            )),
            Err(fs::TryLockError::Error(err)) => Err(err),
        }
    }

    fn stats(&self) -> BackendStats {
        BackendStats {
            data_syncs: self.data_syncs.load(Ordering::Relaxed),
            dir_syncs: self.dir_syncs.load(Ordering::Relaxed),
        }
    }
}

struct FsAppendFile {
    file: File,
    len: u64,
    data_syncs: Arc<AtomicU64>,
}

impl AppendFile for FsAppendFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.data_syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.len = len;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}

#[derive(Debug)]
struct FsReadFile(File);

impl ReadFile for FsReadFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn modified(&self) -> io::Result<SystemTime> {
        self.0.metadata()?.modified()
    }
}

#[derive(Debug)]
struct FsDirLock(#[allow(dead_code, reason = "held for its lock; dropping it unlocks")] File);

impl DirLock for FsDirLock {}
