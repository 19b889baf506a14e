//! An in-memory [`Backend`] that models what survives a crash, for tests
//! (after redb's `CrashBackend` and RocksDB's `FaultInjectionTestFS`).
//!
//! Every file remembers how much of it has been synced. [`SimBackend::crash`]
//! returns the disk as a power loss would leave it:
//! - a file keeps its synced bytes, plus (with [`CrashMode::TearUnsynced`]) a
//!   random prefix of its unsynced bytes, some of them zeroed, as a torn write;
//! - a created, renamed or removed entry survives only if its directory was
//!   synced afterwards.
//!
//! Faults: [`SimBackend::fail_sync_after`] makes a later `sync_data` fail
//! with `EIO`; [`SimBackend::fail_appends`] makes writes fail half-way with
//! `ENOSPC`; [`SimBackend::corrupt`] flips a byte at rest; counters in
//! [`Backend::stats`] count syncs (so tests can see group commit at work).
//!
//! Simplifications, stated so tests do not lean on them: truncation is
//! durable at once, and directories are durable once created and gone once
//! removed.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::backend::{AppendFile, Backend, BackendStats, DirLock, ReadFile};

/// How [`SimBackend::crash`] treats bytes that were written but not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced byte is lost.
    DropUnsynced,
    /// A random prefix of the unsynced bytes survives, part of it zeroed
    /// (a torn write), chosen by `seed`.
    TearUnsynced {
        /// Seed of the random choices.
        seed: u64,
    },
}

#[derive(Debug, Default)]
struct SimFile {
    data: Vec<u8>,
    synced: usize,
    /// When `data` last changed; `None` until it first does.
    modified: Option<SystemTime>,
}

type FileRef = Arc<Mutex<SimFile>>;

#[derive(Debug, Default)]
struct State {
    dirs: BTreeSet<PathBuf>,
    /// The names a reader sees now.
    live: BTreeMap<PathBuf, FileRef>,
    /// The names that survive a crash.
    durable: BTreeMap<PathBuf, FileRef>,
    locks: BTreeSet<PathBuf>,
    /// Number of successful `sync_data` calls after which they fail.
    fail_sync_after: Option<u64>,
    /// How long each `sync_data` takes.
    sync_delay: Duration,
    /// Whether appends fail (after writing half their bytes, as a full disk).
    fail_appends: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    data_syncs: AtomicU64,
    dir_syncs: AtomicU64,
}

/// The crash-modelling in-memory backend (see the [module docs](self)).
/// Clones share one disk.
#[derive(Debug, Clone, Default)]
pub struct SimBackend {
    shared: Arc<Shared>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

impl SimBackend {
    /// An empty disk.
    pub fn new() -> Self {
        SimBackend::default()
    }

    /// The disk a crash right now would leave behind, as a new backend (this
    /// one keeps running, so a test can reopen the copy while the old broker
    /// is simply dropped).
    pub fn crash(&self, mode: CrashMode) -> SimBackend {
        let state = lock(&self.shared.state);
        let mut rng = match mode {
            CrashMode::DropUnsynced => None,
            CrashMode::TearUnsynced { seed } => Some(StdRng::seed_from_u64(seed)),
        };
        let mut durable = BTreeMap::new();
        for (path, file) in &state.durable {
            let file = lock(file);
            let mut data = file.data[..file.synced].to_vec();
            if let Some(rng) = rng.as_mut() {
                let unsynced = &file.data[file.synced..];
                let kept = rng.random_range(0..=unsynced.len());
                let mut tail = unsynced[..kept].to_vec();
                if !tail.is_empty() && rng.random_bool(0.5) {
                    let from = rng.random_range(0..tail.len());
                    tail[from..].fill(0);
                }
                data.extend_from_slice(&tail);
            }
            let synced = data.len();
            let modified = file.modified;
            let copy = SimFile {
                data,
                synced,
                modified,
            };
            durable.insert(path.clone(), Arc::new(Mutex::new(copy)));
        }
        let state = State {
            dirs: state.dirs.clone(),
            live: durable.clone(),
            durable,
            ..State::default()
        };
        SimBackend {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                ..Shared::default()
            }),
        }
    }

    /// Makes `sync_data` fail with `EIO` once `successes` more calls have
    /// succeeded (0: the next call fails), and every call after that.
    pub fn fail_sync_after(&self, successes: u64) {
        lock(&self.shared.state).fail_sync_after = Some(successes);
    }

    /// Makes every `sync_data` take `delay` (as a real fsync takes
    /// milliseconds), widening the window in which bytes are written but not
    /// yet durable.
    pub fn set_sync_delay(&self, delay: Duration) {
        lock(&self.shared.state).sync_delay = delay;
    }

    /// Makes every `append` fail with "no space left on device" after
    /// writing half of its bytes (a partial write), or stops doing so.
    pub fn fail_appends(&self, fail: bool) {
        lock(&self.shared.state).fail_appends = fail;
    }

    /// Flips every bit of the byte at `offset` of `path` (damage at rest).
    pub fn corrupt(&self, path: &Path, offset: u64) -> io::Result<()> {
        let file = self.file(path)?;
        let mut file = lock(&file);
        let byte = usize::try_from(offset)
            .ok()
            .and_then(|at| file.data.get_mut(at))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset past the end"))?;
        *byte = !*byte;
        Ok(())
    }

    /// Cuts `path` to `len` bytes (damage at rest).
    pub fn cut(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = self.file(path)?;
        let mut file = lock(&file);
        let len = usize::try_from(len)
            .map_err(io::Error::other)?
            .min(file.data.len());
        file.data.truncate(len);
        file.synced = file.synced.min(len);
        Ok(())
    }

    /// Every live file path, in order.
    pub fn files(&self) -> Vec<PathBuf> {
        lock(&self.shared.state).live.keys().cloned().collect()
    }

    /// The length of a live file.
    pub fn file_len(&self, path: &Path) -> io::Result<u64> {
        let file = self.file(path)?;
        let len = lock(&file).data.len() as u64;
        Ok(len)
    }

    fn file(&self, path: &Path) -> io::Result<FileRef> {
        lock(&self.shared.state)
            .live
            .get(path)
            .cloned()
            .ok_or_else(|| not_found(path))
    }

    fn check_parent(state: &State, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(parent) if !state.dirs.contains(parent) => Err(not_found(parent)),
            _ => Ok(()),
        }
    }
}

impl Backend for SimBackend {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = lock(&self.shared.state);
        for ancestor in dir.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                state.dirs.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = lock(&self.shared.state);
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let children = state
            .live
            .keys()
            .chain(state.dirs.iter())
            .filter(|p| p.parent() == Some(dir));
        let mut names: Vec<String> = children
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let state = lock(&self.shared.state);
        Ok(state.live.contains_key(path) || state.dirs.contains(path))
    }

    fn create_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let mut state = lock(&self.shared.state);
        Self::check_parent(&state, path)?;
        if state.live.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                path.display().to_string(),
            ));
        }
        let file = FileRef::default();
        state.live.insert(path.to_path_buf(), file.clone());
        Ok(Box::new(SimAppendFile {
            file,
            shared: self.shared.clone(),
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        Ok(Box::new(SimAppendFile {
            file: self.file(path)?,
            shared: self.shared.clone(),
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>> {
        Ok(Arc::new(SimReadFile(self.file(path)?)))
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let file = self.file(path)?;
        let data = lock(&file).data.clone();
        Ok(data)
    }

    fn write_file_synced(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut state = lock(&self.shared.state);
        Self::check_parent(&state, path)?;
        let file = SimFile {
            data: bytes.to_vec(),
            synced: bytes.len(),
            modified: Some(SystemTime::now()),
        };
        state
            .live
            .insert(path.to_path_buf(), Arc::new(Mutex::new(file)));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = lock(&self.shared.state);
        Self::check_parent(&state, to)?;
        let file = state.live.remove(from).ok_or_else(|| not_found(from))?;
        state.live.insert(to.to_path_buf(), file);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.shared.state);
        state
            .live
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = lock(&self.shared.state);
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        state.live.retain(|p, _| !p.starts_with(dir));
        state.durable.retain(|p, _| !p.starts_with(dir));
        state.dirs.retain(|p| !p.starts_with(dir));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = lock(&self.shared.state);
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let state = &mut *state;
        state.durable.retain(|p, _| p.parent() != Some(dir));
        for (path, file) in &state.live {
            if path.parent() == Some(dir) {
                state.durable.insert(path.clone(), file.clone());
            }
        }
        self.shared.dir_syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn DirLock>> {
        let mut state = lock(&self.shared.state);
        if !state.locks.insert(dir.to_path_buf()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked", dir.display()),
            ));
        }
        Ok(Box::new(SimDirLock {
            dir: dir.to_path_buf(),
            shared: self.shared.clone(),
        }))
    }

    fn stats(&self) -> BackendStats {
        BackendStats {
            data_syncs: self.shared.data_syncs.load(Ordering::Relaxed),
            dir_syncs: self.shared.dir_syncs.load(Ordering::Relaxed),
        }
    }
}

struct SimAppendFile {
    file: FileRef,
    shared: Arc<Shared>,
}

impl AppendFile for SimAppendFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let fail = lock(&self.shared.state).fail_appends;
        let mut file = lock(&self.file);
        file.modified = Some(SystemTime::now());
        if fail {
            file.data.extend_from_slice(&bytes[..bytes.len() / 2]);
            return Err(io::Error::from_raw_os_error(28 /* ENOSPC */));
        }
        file.data.extend_from_slice(bytes);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let delay = lock(&self.shared.state).sync_delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        {
            let mut state = lock(&self.shared.state);
            match state.fail_sync_after {
                Some(0) => {
                    return Err(io::Error::from_raw_os_error(5 /* EIO */));
                }
                Some(n) => state.fail_sync_after = Some(n - 1),
                None => {}
            }
        }
        let mut file = lock(&self.file);
        file.synced = file.data.len();
        self.shared.data_syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut file = lock(&self.file);
        let len = usize::try_from(len).map_err(io::Error::other)?;
        file.data.truncate(len);
        file.synced = file.synced.min(len);
        file.modified = Some(SystemTime::now());
        Ok(())
    }

    fn len(&self) -> u64 {
        lock(&self.file).data.len() as u64
    }
}

#[derive(Debug)]
struct SimReadFile(FileRef);

impl ReadFile for SimReadFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let file = lock(&self.0);
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let source = start
            .checked_add(buf.len())
            .and_then(|end| file.data.get(start..end))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(source);
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(lock(&self.0).data.len() as u64)
    }

    fn modified(&self) -> io::Result<SystemTime> {
        lock(&self.0)
            .modified
            .ok_or_else(|| io::Error::other("the file was never written"))
    }
}

#[derive(Debug)]
struct SimDirLock {
    dir: PathBuf,
    shared: Arc<Shared>,
}

impl DirLock for SimDirLock {}

impl Drop for SimDirLock {
    fn drop(&mut self) {
        lock(&self.shared.state).locks.remove(&self.dir);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_crash_keeps_synced_bytes_and_synced_names_only() {
        let disk = SimBackend::new();
        let dir = Path::new("/d");
        disk.create_dir_all(dir).expect("mkdir");
        let mut a = disk.create_append(&dir.join("a")).expect("create a");
        a.append(b"durable").expect("append");
        a.sync_data().expect("sync");
        disk.sync_dir(dir).expect("sync dir");
        a.append(b" lost").expect("append");
        let mut b = disk.create_append(&dir.join("b")).expect("create b");
        b.append(b"unnamed").expect("append");
        b.sync_data().expect("sync");

        let after = disk.crash(CrashMode::DropUnsynced);
        assert_eq!(
            after.read_file(&dir.join("a")).expect("a survives"),
            b"durable"
        );
        assert!(
            !after.exists(&dir.join("b")).expect("exists"),
            "b's entry was never synced"
        );
        assert_eq!(
            disk.read_file(&dir.join("a")).expect("live a"),
            b"durable lost"
        );
    }

    #[test]
    fn a_torn_crash_keeps_a_prefix_of_the_unsynced_bytes() {
        let disk = SimBackend::new();
        let dir = Path::new("/d");
        disk.create_dir_all(dir).expect("mkdir");
        let mut a = disk.create_append(&dir.join("a")).expect("create");
        a.append(b"synced").expect("append");
        a.sync_data().expect("sync");
        disk.sync_dir(dir).expect("sync dir");
        a.append(&[7u8; 100]).expect("append");
        let mut lengths = BTreeSet::new();
        for seed in 0..50 {
            let data = disk
                .crash(CrashMode::TearUnsynced { seed })
                .read_file(&dir.join("a"));
            let data = data.expect("a survives");
            assert!(data.starts_with(b"synced"));
            assert!(data[6..].iter().all(|b| *b == 7 || *b == 0));
            lengths.insert(data.len());
        }
        assert!(lengths.len() > 5, "tears land at many lengths: {lengths:?}");
    }

    #[test]
    fn syncs_fail_after_the_planned_successes_and_are_counted() {
        let disk = SimBackend::new();
        disk.create_dir_all(Path::new("/d")).expect("mkdir");
        let mut a = disk.create_append(Path::new("/d/a")).expect("create");
        disk.fail_sync_after(1);
        a.sync_data().expect("first sync succeeds");
        assert!(a.sync_data().is_err());
        assert!(
            a.sync_data().is_err(),
            "a failed sync is never retried into success"
        );
        assert_eq!(disk.stats().data_syncs, 1);
    }

    #[test]
    fn a_directory_lock_is_exclusive_until_dropped() {
        let disk = SimBackend::new();
        let held = disk.lock_dir(Path::new("/d")).expect("first lock");
        assert!(disk.lock_dir(Path::new("/d")).is_err());
        drop(held);
        assert!(disk.lock_dir(Path::new("/d")).is_ok());
    }
}
