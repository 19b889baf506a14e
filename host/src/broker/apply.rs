//! Journal creation, spec updates and deletion on disk, all-or-nothing
//! across crashes.
//!
//! An Apply is validated as a whole first. Then its registry revision is
//! stored (see the revision module), its changes are recorded in
//! `apply.pending` (written atomically), carried out, and the record is
//! removed. If the process dies in between, [`redo_pending`] (run by
//! `Broker::open` before journals are recovered) carries the recorded
//! changes out again at the stored revision; every step is idempotent, so an
//! Apply is never left half done on disk.
//!
//! A spec is written atomically too (temporary file, fsync, rename, directory
//! fsync), and a new journal directory is made durable by syncing its parent.
//! Every function here blocks.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::backend::{Backend, write_atomic};
use super::layout::{APPLY_PENDING, JOURNALS_DIR, SPEC_FILE, journal_dir};
use super::revision::{self, Revisions};
use super::spec::JournalSpec;

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Change {
    /// Create the journal or replace its spec.
    Upsert(JournalSpec),
    /// Remove the journal and its fragments.
    Delete(String),
}

/// Records `changes` as the Apply in progress.
pub(crate) fn record_pending(
    backend: &dyn Backend,
    root: &Path,
    changes: &[Change],
) -> io::Result<()> {
    let bytes = serde_json::to_vec(changes).map_err(io::Error::other)?;
    write_atomic(backend, &root.join(APPLY_PENDING), &bytes)
}

/// Carries `changes` out on disk, in order, at registry revision `revision`.
pub(crate) fn carry_out(
    backend: &dyn Backend,
    root: &Path,
    changes: &[Change],
    revision: i64,
) -> io::Result<()> {
    let journals = root.join(JOURNALS_DIR);
    for change in changes {
        match change {
            Change::Upsert(spec) => {
                let dir = journal_dir(root, &spec.name);
                let created = !backend.exists(&dir)?;
                backend.create_dir_all(&dir)?;
                let bytes = serde_json::to_vec_pretty(spec).map_err(io::Error::other)?;
                write_atomic(backend, &dir.join(SPEC_FILE), &bytes)?;
                // A redo finds the directory it created: the stored create
                // revision (this one) is kept.
                let create = if created {
                    revision
                } else {
                    revision::read_journal(backend, &dir)?.map_or(revision, |r| r.create)
                };
                let revisions = Revisions {
                    create,
                    modify: revision,
                };
                revision::write_journal(backend, &dir, revisions)?;
                if created {
                    backend.sync_dir(&journals)?;
                }
            }
            Change::Delete(name) => {
                let dir = journal_dir(root, name);
                if backend.exists(&dir)? {
                    backend.remove_dir_all(&dir)?;
                    backend.sync_dir(&journals)?;
                }
            }
        }
    }
    Ok(())
}

/// Removes the record of a completed Apply.
pub(crate) fn clear_pending(backend: &dyn Backend, root: &Path) -> io::Result<()> {
    backend.remove_file(&root.join(APPLY_PENDING))?;
    backend.sync_dir(root)
}

/// Completes an Apply interrupted by a crash, if there is one.
pub(crate) fn redo_pending(backend: &dyn Backend, root: &Path) -> io::Result<()> {
    let path = root.join(APPLY_PENDING);
    if !backend.exists(&path)? {
        return Ok(());
    }
    let bytes = backend.read_file(&path)?;
    let changes: Vec<Change> = serde_json::from_slice(&bytes).map_err(|err| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is unreadable ({err}); inspect and remove it",
                path.display()
            ),
        )
    })?;
    tracing::warn!(
        changes = changes.len(),
        "completing an Apply interrupted by a crash"
    );
    // The interrupted Apply stored its revision before recording itself
    // (one recorded by a weir without revisions finds none: 0, raised to
    // the first revision, as 0 means "absent").
    let revision = revision::read_registry(backend, root)?.max(1);
    carry_out(backend, root, &changes, revision)?;
    clear_pending(backend, root)
}

/// Reads and validates a journal directory's spec.
pub(crate) fn read_spec(backend: &dyn Backend, dir: &Path) -> Result<JournalSpec, String> {
    let bytes = backend
        .read_file(&dir.join(SPEC_FILE))
        .map_err(|err| err.to_string())?;
    let spec: JournalSpec = serde_json::from_slice(&bytes).map_err(|err| err.to_string())?;
    spec.validate().map_err(|err| err.to_string())?;
    Ok(spec)
}

/// Fails if journal `name`'s directory already holds another journal (a
/// CRC-64 collision between two long names).
pub(crate) fn check_directory(backend: &dyn Backend, root: &Path, name: &str) -> io::Result<()> {
    let dir = journal_dir(root, name);
    if !backend.exists(&dir.join(SPEC_FILE))? {
        return Ok(());
    }
    match read_spec(backend, &dir) {
        Ok(spec) if spec.name == name => Ok(()),
        Ok(spec) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "journal {name} maps to the directory of journal {}",
                spec.name
            ),
        )),
        Err(err) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} holds an unreadable spec: {err}", dir.display()),
        )),
    }
}
