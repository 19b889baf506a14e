//! Registry revisions: Gazette's etcd revisions for one embedded broker.
//!
//! Every Apply that changes something takes the next **registry revision**
//! (all its changes share it, like one etcd transaction). A journal records
//! the revision of the Apply that created it and of the last one that
//! replaced its spec ([`Revisions`]). An Apply may require a journal's
//! current mod revision ([`ExpectRevision`], Gazette's
//! `expect_mod_revision`), which makes read-modify-write of specs safe
//! against concurrent Applies.
//!
//! Revisions persist, so an expectation taken before a restart is still
//! checked correctly after it:
//! - `<data dir>/revision` holds the last registry revision. An Apply writes
//!   its new revision there *before* recording itself as pending, so a redone
//!   Apply reuses it and the registry revision never goes backwards;
//! - `<journal dir>/revision.json` holds a journal's pair, written with its
//!   spec. A journal created before revisions existed gets the registry
//!   revision at open.
//!
//! Every function here blocks.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::backend::{Backend, write_atomic};
use super::layout::{JOURNAL_REVISION_FILE, REVISION_FILE};

/// A journal's create and mod revisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revisions {
    /// Registry revision of the Apply that created the journal.
    pub create: i64,
    /// Registry revision of the Apply that last wrote its spec.
    pub modify: i64,
}

/// What an Apply change requires of its journal's mod revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectRevision {
    /// Any revision, or none (Gazette's `-1`).
    Any,
    /// The journal must not exist (Gazette's `0`).
    Absent,
    /// The journal must exist with this mod revision.
    Equal(i64),
}

impl ExpectRevision {
    /// Gazette's `expect_mod_revision`: `-1` any, `0` must not exist, a
    /// positive value must equal the current mod revision. Anything else is
    /// refused with the reason.
    pub fn from_wire(value: i64) -> Result<ExpectRevision, String> {
        match value {
            -1 => Ok(ExpectRevision::Any),
            0 => Ok(ExpectRevision::Absent),
            revision if revision > 0 => Ok(ExpectRevision::Equal(revision)),
            other => Err(format!("{other} is neither -1, 0 nor a revision")),
        }
    }

    /// This expectation as Gazette's `expect_mod_revision`.
    pub fn to_wire(self) -> i64 {
        match self {
            ExpectRevision::Any => -1,
            ExpectRevision::Absent => 0,
            ExpectRevision::Equal(revision) => revision,
        }
    }

    /// Whether a journal whose revisions are `current` (`None`: it does not
    /// exist) meets this expectation.
    pub fn admits(self, current: Option<Revisions>) -> bool {
        match (self, current) {
            (ExpectRevision::Any, _) | (ExpectRevision::Absent, None) => true,
            (ExpectRevision::Equal(expected), Some(current)) => current.modify == expected,
            (ExpectRevision::Absent, Some(_)) | (ExpectRevision::Equal(_), None) => false,
        }
    }
}

/// The outcome of an Apply whose changes carry expectations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Every change was applied at registry revision `revision`.
    Applied {
        /// The registry revision after the Apply.
        revision: i64,
    },
    /// A journal's revision did not meet its change's expectation; nothing
    /// was applied (Gazette's `ETCD_TRANSACTION_FAILED`).
    RevisionMismatch {
        /// The first journal whose expectation failed.
        journal: String,
        /// What the change expected.
        expected: ExpectRevision,
        /// The journal's mod revision, or `None` if it does not exist.
        actual: Option<i64>,
    },
}

/// The last registry revision stored under `root` (0 if none was).
pub(crate) fn read_registry(backend: &dyn Backend, root: &Path) -> io::Result<i64> {
    let path = root.join(REVISION_FILE);
    if !backend.exists(&path)? {
        return Ok(0);
    }
    let bytes = backend.read_file(&path)?;
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} does not hold a revision number", path.display()),
            )
        })
}

/// Stores `revision` as the registry revision under `root`, durably.
pub(crate) fn write_registry(backend: &dyn Backend, root: &Path, revision: i64) -> io::Result<()> {
    write_atomic(
        backend,
        &root.join(REVISION_FILE),
        revision.to_string().as_bytes(),
    )
}

/// The revisions stored in journal directory `dir`, if any.
pub(crate) fn read_journal(backend: &dyn Backend, dir: &Path) -> io::Result<Option<Revisions>> {
    let path = dir.join(JOURNAL_REVISION_FILE);
    if !backend.exists(&path)? {
        return Ok(None);
    }
    let bytes = backend.read_file(&path)?;
    serde_json::from_slice(&bytes).map(Some).map_err(|err| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {err}", path.display()),
        )
    })
}

/// Stores a journal's `revisions` in its directory `dir`, durably.
pub(crate) fn write_journal(
    backend: &dyn Backend,
    dir: &Path,
    revisions: Revisions,
) -> io::Result<()> {
    let bytes = serde_json::to_vec(&revisions).map_err(io::Error::other)?;
    write_atomic(backend, &dir.join(JOURNAL_REVISION_FILE), &bytes)
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::broker::sim::SimBackend;

    #[test]
    fn expectations_follow_gazette() {
        let at = |modify| Some(Revisions { create: 1, modify });
        assert!(ExpectRevision::Any.admits(None));
        assert!(ExpectRevision::Any.admits(at(7)));
        assert!(ExpectRevision::Absent.admits(None));
        assert!(!ExpectRevision::Absent.admits(at(7)));
        assert!(ExpectRevision::Equal(7).admits(at(7)));
        assert!(!ExpectRevision::Equal(6).admits(at(7)));
        assert!(!ExpectRevision::Equal(7).admits(None));
    }

    #[test]
    fn revisions_round_trip_through_files() {
        let disk = SimBackend::new();
        let root = Path::new("/data");
        disk.create_dir_all(root).expect("mkdir");
        assert_eq!(read_registry(&disk, root).expect("missing"), 0);
        write_registry(&disk, root, 42).expect("write");
        assert_eq!(read_registry(&disk, root).expect("read"), 42);
        assert_eq!(read_journal(&disk, root).expect("missing"), None);
        let revisions = Revisions {
            create: 3,
            modify: 42,
        };
        write_journal(&disk, root, revisions).expect("write");
        assert_eq!(read_journal(&disk, root).expect("read"), Some(revisions));
        disk.write_file_synced(&root.join(REVISION_FILE), b"garbage")
            .expect("damage");
        assert!(read_registry(&disk, root).is_err());
    }
}
