//! The `author` register fence on a recovery log.
//!
//! Each primary picks a random non-zero author id. Every commit append checks
//! `author=<its id>` against the log's registers; a new primary's hand-off
//! append replaces the register's value with its own id (subtract the old
//! values, union the new one, in the same append). From then on the old
//! primary's commit appends fail with a register mismatch: it is fenced.
//!
//! The hand-off itself must not race another writer, so it is conditional
//! twice: on the registers the new primary observed and on the write head it
//! read through (`expect_offset`). A commit of the old primary that lands
//! between the new primary's read and its hand-off moves the head, so the
//! hand-off fails and is retried after reading that commit.
//!
//! As in Gazette, an empty register set matches any check: if the broker ever
//! lost a log's registers, the fence would be gone until the next hand-off.
//! Replay still ignores a commit whose author did not make the latest
//! hand-off, so the log's meaning stays unambiguous.

use bytes::Bytes;

use crate::broker::protocol::AppendRequest;
use crate::broker::spec::{LabelSelector, LabelSet};

/// Name of the register that holds the current primary's author id.
pub const AUTHOR_REGISTER: &str = "author";

/// The register value of `author` (fixed-width hex).
pub(crate) fn author_value(author: u32) -> String {
    format!("{author:08x}")
}

/// A new random author id, non-zero and different from `current`.
pub(crate) fn new_author(current: u32) -> u32 {
    loop {
        let author: u32 = rand::random();
        if author != 0 && author != current {
            return author;
        }
    }
}

fn author_set(author: u32) -> LabelSet {
    let mut set = LabelSet::new();
    set.insert(AUTHOR_REGISTER, author_value(author));
    set
}

/// The append of a commit record by `author`, expected at `offset`.
pub(crate) fn commit_request(log: &str, frame: Bytes, author: u32, offset: i64) -> AppendRequest {
    AppendRequest {
        journal: log.to_string(),
        content: frame,
        check_registers: Some(LabelSelector {
            include: author_set(author),
            ..Default::default()
        }),
        union_registers: LabelSet::new(),
        subtract_registers: LabelSet::new(),
        expect_offset: Some(offset),
    }
}

/// The append of a hand-off record making `author` the log's only author,
/// conditional on the `observed` registers and write `head`.
pub(crate) fn handoff_request(
    log: &str,
    frame: Bytes,
    observed: &LabelSet,
    author: u32,
    head: i64,
) -> AppendRequest {
    let previous: LabelSet = observed
        .iter()
        .filter(|label| label.name == AUTHOR_REGISTER)
        .cloned()
        .collect();
    AppendRequest {
        journal: log.to_string(),
        content: frame,
        check_registers: Some(LabelSelector {
            include: observed.clone(),
            ..Default::default()
        }),
        union_registers: author_set(author),
        subtract_registers: previous,
        expect_offset: Some(head),
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_handoff_replaces_every_author_value_and_keeps_other_registers() {
        let mut observed = LabelSet::new();
        observed.insert(AUTHOR_REGISTER, author_value(1));
        observed.insert("other", "x");
        let request = handoff_request("log", Bytes::from_static(b"r"), &observed, 2, 10);
        let after = observed
            .subtract(&request.subtract_registers)
            .union(&request.union_registers);
        let authors: Vec<&str> = after.values(AUTHOR_REGISTER).collect();
        assert_eq!(authors, vec![author_value(2).as_str()]);
        assert_eq!(after.get("other"), Some("x"));
        assert_eq!(request.expect_offset, Some(10));
        let check = request.check_registers.expect("conditional on registers");
        assert!(check.matches(&observed));
        assert!(
            !check.matches(&after),
            "a second identical hand-off must not apply"
        );
    }

    #[test]
    fn a_commit_check_refuses_another_author() {
        let request = commit_request("log", Bytes::from_static(b"r"), 1, 0);
        let check = request.check_registers.expect("fenced");
        let mut registers = LabelSet::new();
        registers.insert(AUTHOR_REGISTER, author_value(1));
        assert!(check.matches(&registers));
        registers.set(AUTHOR_REGISTER, author_value(2));
        assert!(!check.matches(&registers));
    }
}
