//! Journal specs and their validation (Gazette's `protocol.JournalSpec`).
//!
//! A [`JournalSpec`] names a journal and carries its labels and a few
//! settings. Validation follows Gazette:
//!
//! - **names** are 4–512 bytes of ASCII letters, digits and `-_+/.=%`, and a
//!   clean, non-rooted path: no leading or trailing `/`, no `//`, no `.` or
//!   `..` segment (`examples/stream-sum/chunks/part-000`);
//! - **labels** follow the [`LabelSet`] rules; the meta-labels `name` and
//!   `prefix` are reserved: a spec may not carry them, and
//!   [`JournalSpec::labels_with_meta`] adds them so that List selectors can
//!   say `name=a/b` (exactly that journal) or `prefix=a/` (every journal
//!   under `a/`);
//! - **replication** is 1–5 (one embedded broker stores one copy; the field
//!   is kept for Gazette compatibility);
//! - **fragment_length** is the spool's roll target in bytes: 0 (the broker's
//!   configured default) or 1 KiB–16 GiB;
//! - **flags** is 0 (read-write), [`O_RDONLY`], [`O_WRONLY`] or [`O_RDWR`].
//!
//! Specs serialize with serde (JSON on disk, YAML later); labels as a list of
//! `{name, value}` objects, as in gazctl's YAML.

use serde::{Deserialize, Serialize};

pub use super::label::{
    Label, LabelSelector, LabelSet, MAX_LABEL_NAME_LEN, MAX_LABEL_VALUE_LEN, MIN_LABEL_NAME_LEN,
};

/// Shortest journal name, in bytes.
pub const MIN_JOURNAL_NAME_LEN: usize = 4;
/// Longest journal name, in bytes.
pub const MAX_JOURNAL_NAME_LEN: usize = 512;
/// Smallest non-zero `fragment_length`, in bytes (1 KiB).
pub const MIN_FRAGMENT_LENGTH: u64 = 1 << 10;
/// Largest `fragment_length`, in bytes (16 GiB).
pub const MAX_FRAGMENT_LENGTH: u64 = 16 << 30;
/// Largest replication factor.
pub const MAX_REPLICATION: u32 = 5;

/// Meta-label matching a journal's exact name in List selectors.
pub const META_NAME: &str = "name";
/// Meta-label matching each `/`-terminated prefix of a journal's name.
pub const META_PREFIX: &str = "prefix";

/// The journal may be read but not appended to.
pub const O_RDONLY: u32 = 1;
/// The journal may be appended to but not read.
pub const O_WRONLY: u32 = 2;
/// The journal may be read and appended to (as is 0).
pub const O_RDWR: u32 = 4;

const NAME_SYMBOLS: &str = "-_+/.=%";

/// Errors of names, labels, selectors and specs. Each becomes
/// [`BrokerError::InvalidArgument`](super::BrokerError::InvalidArgument) at
/// the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// A journal name breaks the naming rules.
    #[error("invalid journal name {name:?}: {reason}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A label breaks the alphabet or length rules.
    #[error("invalid label {label:?}: {reason}")]
    InvalidLabel {
        /// The offending label, as `name=value`.
        label: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A selector string does not parse.
    #[error("invalid selector {selector:?}: {reason}")]
    InvalidSelector {
        /// The selector text.
        selector: String,
        /// Where and why parsing stopped.
        reason: String,
    },
    /// A spec field is out of range.
    #[error("invalid spec for {journal:?}: {reason}")]
    InvalidSpec {
        /// The journal.
        journal: String,
        /// Which field, and why.
        reason: String,
    },
}

/// Checks a journal name against the rules in the [module docs](self).
pub fn validate_journal_name(name: &str) -> Result<(), SpecError> {
    let invalid = |reason: String| SpecError::InvalidName {
        name: name.to_string(),
        reason,
    };
    if !(MIN_JOURNAL_NAME_LEN..=MAX_JOURNAL_NAME_LEN).contains(&name.len()) {
        return Err(invalid(format!(
            "length {} is not within {MIN_JOURNAL_NAME_LEN}..={MAX_JOURNAL_NAME_LEN}",
            name.len()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || NAME_SYMBOLS.contains(*c)))
    {
        return Err(invalid(format!("invalid character {c:?}")));
    }
    if name.starts_with('/') {
        return Err(invalid("must not begin with '/'".into()));
    }
    if name.ends_with('/') {
        return Err(invalid("must not end with '/'".into()));
    }
    for segment in name.split('/') {
        match segment {
            "" => return Err(invalid("must not contain '//'".into())),
            "." | ".." => return Err(invalid(format!("must not contain a {segment:?} segment"))),
            _ => {}
        }
    }
    Ok(())
}

/// A journal's name, labels and settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSpec {
    /// The journal's name (see [`validate_journal_name`]).
    pub name: String,
    /// Labels, e.g. `content-type=application/x-ndjson`.
    #[serde(default)]
    pub labels: LabelSet,
    /// Replication factor, 1–5.
    #[serde(default = "default_replication")]
    pub replication: u32,
    /// Spool roll target in bytes; 0 means the broker's configured default.
    #[serde(default)]
    pub fragment_length: u64,
    /// 0 or one of [`O_RDONLY`], [`O_WRONLY`], [`O_RDWR`].
    #[serde(default)]
    pub flags: u32,
}

fn default_replication() -> u32 {
    1
}

impl JournalSpec {
    /// A read-write spec with no labels, replication 1 and the broker's
    /// default fragment length.
    pub fn new(name: impl Into<String>) -> Self {
        JournalSpec {
            name: name.into(),
            labels: LabelSet::new(),
            replication: default_replication(),
            fragment_length: 0,
            flags: 0,
        }
    }

    /// This spec with `labels`.
    pub fn with_labels(mut self, labels: LabelSet) -> Self {
        self.labels = labels;
        self
    }

    /// Checks every field (see the [module docs](self)).
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_journal_name(&self.name)?;
        let invalid = |reason: String| SpecError::InvalidSpec {
            journal: self.name.clone(),
            reason,
        };
        self.labels.validate()?;
        for reserved in [META_NAME, META_PREFIX] {
            if self.labels.get(reserved).is_some() {
                return Err(invalid(format!("label {reserved:?} is reserved")));
            }
        }
        if !(1..=MAX_REPLICATION).contains(&self.replication) {
            return Err(invalid(format!(
                "replication {} is not within 1..={MAX_REPLICATION}",
                self.replication
            )));
        }
        if self.fragment_length != 0
            && !(MIN_FRAGMENT_LENGTH..=MAX_FRAGMENT_LENGTH).contains(&self.fragment_length)
        {
            return Err(invalid(format!(
                "fragment_length {} is neither 0 nor within {MIN_FRAGMENT_LENGTH}..={MAX_FRAGMENT_LENGTH}",
                self.fragment_length
            )));
        }
        if ![0, O_RDONLY, O_WRONLY, O_RDWR].contains(&self.flags) {
            return Err(invalid(format!("flags {} is not 0, 1, 2 or 4", self.flags)));
        }
        Ok(())
    }

    /// Whether the flags allow appends.
    pub fn may_append(&self) -> bool {
        self.flags != O_RDONLY
    }

    /// Whether the flags allow reads.
    pub fn may_read(&self) -> bool {
        self.flags != O_WRONLY
    }

    /// The labels plus the meta-labels `name=<name>` and `prefix=<p>` for
    /// each `/`-terminated prefix of the name; List selectors match this set.
    pub fn labels_with_meta(&self) -> LabelSet {
        let mut labels = self.labels.clone();
        labels.insert(META_NAME, self.name.clone());
        for (index, _) in self.name.match_indices('/') {
            labels.insert(META_PREFIX, &self.name[..=index]);
        }
        labels
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn gazette_style_names_are_valid() {
        for good in [
            "examples/stream-sum/chunks/part-000",
            "a/b=c/d%2F+e_f.g",
            "abcd",
            "...a",
            "a..b/c",
        ] {
            assert_eq!(validate_journal_name(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn unclean_or_oddly_spelled_names_are_rejected() {
        let long = "a".repeat(513);
        for bad in [
            "abc",
            long.as_str(),
            "/abs/path",
            "trailing/",
            "a//b",
            "a/./b",
            "a/../b",
            "./ab",
            "../ab",
            "ab/..",
            "has space",
            "semi;colon",
            "hash#tag",
            "ünïcode",
            "tab\there",
        ] {
            assert!(
                validate_journal_name(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert_eq!(validate_journal_name(&"a".repeat(512)), Ok(()));
    }

    #[test]
    fn specs_reject_reserved_labels_and_out_of_range_fields() {
        let ok = JournalSpec::new("a/b/c/d");
        assert_eq!(ok.validate(), Ok(()));
        let mut labels = LabelSet::new();
        labels.insert("name", "x");
        assert!(ok.clone().with_labels(labels).validate().is_err());
        let mut labels = LabelSet::new();
        labels.insert("prefix", "a/");
        assert!(ok.clone().with_labels(labels).validate().is_err());
        for replication in [0, 6] {
            assert!(
                JournalSpec {
                    replication,
                    ..ok.clone()
                }
                .validate()
                .is_err()
            );
        }
        for fragment_length in [1, 1023, (16 << 30) + 1] {
            assert!(
                JournalSpec {
                    fragment_length,
                    ..ok.clone()
                }
                .validate()
                .is_err()
            );
        }
        assert!(
            JournalSpec {
                fragment_length: 1024,
                ..ok.clone()
            }
            .validate()
            .is_ok()
        );
        assert!(
            JournalSpec {
                flags: 3,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            JournalSpec {
                flags: O_WRONLY,
                ..ok.clone()
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn meta_labels_select_by_exact_name_and_by_prefix() {
        let spec = JournalSpec::new("examples/stream-sum/chunks/part-000");
        let meta = spec.labels_with_meta();
        assert_eq!(
            meta.values(META_PREFIX).collect::<Vec<_>>(),
            [
                "examples/",
                "examples/stream-sum/",
                "examples/stream-sum/chunks/"
            ]
        );
        let select = |s: &str| s.parse::<LabelSelector>().expect("selector").matches(&meta);
        assert!(select("name=examples/stream-sum/chunks/part-000"));
        assert!(!select("name=examples/stream-sum/chunks/part-001"));
        assert!(select("prefix=examples/stream-sum/"));
        assert!(!select("prefix=examples/stream-summer/"));
        assert!(!select("prefix=other/"));
    }

    #[test]
    fn specs_serialize_with_labels_as_name_value_objects() {
        let spec = JournalSpec::new("a/b/c/d")
            .with_labels("content-type=application/x-ndjson".parse().expect("labels"));
        let json = serde_json::to_string(&spec).expect("serialize");
        assert!(json.contains(r#"{"name":"content-type","value":"application/x-ndjson"}"#));
        let back: JournalSpec = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, spec);
        let minimal: JournalSpec = serde_json::from_str(r#"{"name":"a/b/c/d"}"#).expect("minimal");
        assert_eq!(minimal, JournalSpec::new("a/b/c/d"));
        let unsorted =
            r#"{"name":"abcd","labels":[{"name":"zz","value":"1"},{"name":"aa","value":"2"}]}"#;
        let parsed: JournalSpec = serde_json::from_str(unsorted).expect("unsorted labels");
        assert_eq!(parsed.labels.to_string(), "aa=2,zz=1");
        let bad = r#"{"name":"abcd","labels":[{"name":"a b","value":"1"}]}"#;
        assert!(serde_json::from_str::<JournalSpec>(bad).is_err());
    }

    /// The naming rules restated over segments, independently of the
    /// validator's control flow.
    fn model_valid(name: &str) -> bool {
        let alphabet = |c: char| c.is_ascii_alphanumeric() || "-_+/.=%".contains(c);
        (4..=512).contains(&name.len())
            && name.chars().all(alphabet)
            && name
                .split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
    }

    proptest! {
        #[test]
        fn the_name_validator_agrees_with_the_model(
            name in "[a-c./=%#; ü-]{0,12}",
        ) {
            prop_assert_eq!(validate_journal_name(&name).is_ok(), model_valid(&name));
        }

        #[test]
        fn valid_names_survive_meta_label_round_trips(
            segments in prop::collection::vec("[a-z0-9_=%+-]{1,6}", 1..5),
        ) {
            let name = segments.join("/");
            prop_assume!(name.len() >= 4);
            prop_assert!(validate_journal_name(&name).is_ok());
            let meta = JournalSpec::new(name.clone()).labels_with_meta();
            prop_assert_eq!(meta.get(META_NAME), Some(name.as_str()));
            prop_assert_eq!(meta.values(META_PREFIX).count(), segments.len() - 1);
            prop_assert!(meta.validate().is_ok());
        }
    }
}
