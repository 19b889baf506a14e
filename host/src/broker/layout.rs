//! The broker's directory layout, and how journal names map onto it.
//!
//! ```text
//! <data dir>/
//!   LOCK                         held while a broker has the directory open
//!   apply.pending                an Apply being carried out (redone on open)
//!   revision                     the last registry revision (see the revision module)
//!   journals/
//!     <journal dir>/
//!       spec.json                the journal's spec (written atomically)
//!       revision.json            its create and mod revisions (written atomically)
//!       0000000000000000-0000000000100400.frag   closed fragment [begin, end)
//!       0000000000100400.spool                   the open fragment, from begin
//! ```
//!
//! Journal names contain `/` and may be 512 bytes long, longer than a file
//! name may be, so a journal's directory is its name with `%` and `/`
//! percent-escaped (`examples%2Fstream-sum%2Fsums`); names whose escaped
//! form is too long keep an escaped prefix followed by `~` and a CRC-64 of
//! the whole name. The escaped form is unambiguous and `~` never appears in
//! it, so distinct names get distinct directories except on a CRC-64
//! collision between two long names, which journal creation detects (the
//! directory's `spec.json` names another journal). `spec.json` is the source
//! of truth for the name.
//!
//! Fragment file names carry their journal offsets as 16 hex digits, as
//! Gazette's do, so a directory listing sorts in journal order.

use std::path::{Path, PathBuf};

use crc::{CRC_64_XZ, Crc};

/// Subdirectory holding one directory per journal.
pub(crate) const JOURNALS_DIR: &str = "journals";
/// A journal's spec file.
pub(crate) const SPEC_FILE: &str = "spec.json";
/// The redo record of an Apply in progress.
pub(crate) const APPLY_PENDING: &str = "apply.pending";
/// The last registry revision.
pub(crate) const REVISION_FILE: &str = "revision";
/// A journal's create and mod revisions.
pub(crate) const JOURNAL_REVISION_FILE: &str = "revision.json";

const MAX_ESCAPED_LEN: usize = 200;
const LONG_PREFIX_LEN: usize = 160;

/// The directory of journal `name` under the data directory `root`.
pub(crate) fn journal_dir(root: &Path, name: &str) -> PathBuf {
    root.join(JOURNALS_DIR).join(journal_dir_name(name))
}

fn journal_dir_name(name: &str) -> String {
    let mut escaped = String::with_capacity(name.len() + 8);
    let mut cut = None;
    for c in name.chars() {
        if escaped.len() <= LONG_PREFIX_LEN {
            cut = Some(escaped.len());
        }
        match c {
            '%' => escaped.push_str("%25"),
            '/' => escaped.push_str("%2F"),
            c => escaped.push(c),
        }
    }
    if escaped.len() <= MAX_ESCAPED_LEN {
        return escaped;
    }
    let hash = Crc::<u64>::new(&CRC_64_XZ).checksum(name.as_bytes());
    escaped.truncate(cut.unwrap_or(0));
    format!("{escaped}~{hash:016x}")
}

/// What a file in a journal directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum FragmentFile {
    /// A closed fragment holding `[begin, end)`.
    Closed { begin: i64, end: i64 },
    /// The open fragment, starting at `begin`.
    Spool { begin: i64 },
}

impl FragmentFile {
    /// The journal offset the file starts at.
    pub fn begin(&self) -> i64 {
        match *self {
            FragmentFile::Closed { begin, .. } | FragmentFile::Spool { begin } => begin,
        }
    }

    /// The file name.
    pub fn file_name(&self) -> String {
        match *self {
            FragmentFile::Closed { begin, end } => format!("{begin:016x}-{end:016x}.frag"),
            FragmentFile::Spool { begin } => format!("{begin:016x}.spool"),
        }
    }

    /// Parses a file name written by [`FragmentFile::file_name`].
    pub fn parse(file_name: &str) -> Option<FragmentFile> {
        let hex = |s: &str| {
            let ok = s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
            ok.then(|| u64::from_str_radix(s, 16).ok())
                .flatten()
                .and_then(|v| i64::try_from(v).ok())
        };
        if let Some(stem) = file_name.strip_suffix(".frag") {
            let (begin, end) = stem.split_once('-')?;
            let (begin, end) = (hex(begin)?, hex(end)?);
            (begin <= end).then_some(FragmentFile::Closed { begin, end })
        } else if let Some(stem) = file_name.strip_suffix(".spool") {
            Some(FragmentFile::Spool { begin: hex(stem)? })
        } else {
            None
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn short_names_escape_readably_and_long_names_get_a_hash() {
        assert_eq!(
            journal_dir_name("examples/stream-sum/sums"),
            "examples%2Fstream-sum%2Fsums"
        );
        assert_eq!(
            journal_dir_name("a%2Fb"),
            "a%252Fb",
            "escaping is unambiguous"
        );
        assert_ne!(journal_dir_name("a%2Fb"), journal_dir_name("a/b"));
        let long_a = format!("{}/a", "x".repeat(400));
        let long_b = format!("{}/b", "x".repeat(400));
        let (dir_a, dir_b) = (journal_dir_name(&long_a), journal_dir_name(&long_b));
        assert_ne!(dir_a, dir_b);
        assert!(dir_a.len() < 255 && dir_a.contains('~'));
        let slashes = "a/".repeat(255) + "b";
        let dir = journal_dir_name(&slashes);
        assert!(dir.len() < 255, "{}", dir.len());
        assert!(!dir.contains('/'));
    }

    #[test]
    fn fragment_names_round_trip_and_sort_by_offset() {
        let closed = FragmentFile::Closed {
            begin: 0x400,
            end: 0x1000,
        };
        assert_eq!(closed.file_name(), "0000000000000400-0000000000001000.frag");
        assert_eq!(FragmentFile::parse(&closed.file_name()), Some(closed));
        let spool = FragmentFile::Spool { begin: 0x1000 };
        assert_eq!(FragmentFile::parse(&spool.file_name()), Some(spool));
        for junk in [
            "spec.json",
            "00-01.frag",
            "0000000000001000-0000000000000400.frag",
            "zzzzzzzzzzzzzzzz.spool",
            "ffffffffffffffff.spool",
            "0000000000000400-0000000000001000.frag.tmp",
        ] {
            assert_eq!(FragmentFile::parse(junk), None, "{junk}");
        }
    }
}
