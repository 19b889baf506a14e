//! Journal and shard spec files in gazctl's YAML format, for
//! `weir journals apply -f FILE.yaml` and `weir shards apply -f FILE.yaml`.
//!
//! [`parse_journals`] reads a tree of journal nodes (gazctl's
//! `journalspace.Node`) and [`parse_shards`] a `{common, shards}` set
//! (gazctl's `shardspace.Set`). Both return the changes to apply, in file
//! order; every upserted spec has passed its `validate()`, and nothing is
//! returned unless the whole file is good, so a caller applies all or nothing.
//!
//! # Journal trees
//!
//! A node whose `name` ends in `/` (or is empty, gazctl's root) is a
//! **directory**: it is not a journal; it must have `children`, each named
//! with the directory's name as prefix and listed in strictly increasing
//! name order (as gazctl requires). Any other node is a **journal** and has
//! no children. Journal fields are `name`, `replication`, `labels` (a list of
//! `{name, value}`), `fragment`, `flags` (`O_RDONLY`, `O_WRONLY`, `O_RDWR`,
//! `NOT_SPECIFIED` or the number), `max_append_rate`, `revision`, `delete`,
//! `comment` and `children`.
//!
//! A child inherits every field of its directories that it does not set
//! itself. Labels merge: the child keeps its own labels, and adds each of the
//! parent's labels whose name it does not carry. Unlike gazctl, a field a node
//! (or shard) *sets* wins even when it is zero or `false`: gazctl cannot tell
//! a zero from an absent field, so there `flags: 0` under an `O_RDONLY`
//! directory, or `disable: false` under `common: {disable: true}`, is
//! silently overridden. Files that gazctl writes omit zero fields, so they
//! read the same in both.
//! `delete: true` on a directory deletes every journal under it except those
//! that say `delete: false`, as in gazctl.
//!
//! weir's journals keep only `fragment.length`; the other fragment fields
//! (`compression_codec`, `stores`, `refresh_interval`, `retention`,
//! `flush_interval`, `path_postfix_template`) and `max_append_rate` are
//! checked for type (durations must parse, codecs must be Gazette's names)
//! and then ignored, so Gazette's files apply unchanged.
//!
//! # Shard sets
//!
//! `common` holds shard fields that each shard of `shards` inherits unless it
//! sets them, with labels merged as above. Shard fields are `id`, `sources`
//! (a list of `{journal, min_offset}`, sorted here by journal),
//! `recovery_log_prefix`, `max_txn_duration` and `min_txn_duration` (Go
//! durations: `1s`, `500ms`, `1m30s`, `1.5h`), `disable`, `hot_standbys`,
//! `labels`, `disable_wait_for_ack`, `ring_buffer_size`, `read_channel_size`,
//! `revision`, `delete` and `comment`; `hint_prefix` and `hint_backups` are
//! accepted and ignored (weir keeps no etcd hints). `id`, `revision` and
//! `delete` belong to a shard and may not appear in `common`.
//!
//! # Revisions
//!
//! A journal or shard without `revision` applies whatever its current
//! revision is ([`ANY_REVISION`], -1). With `revision: N` the change applies
//! only if the current mod revision is `N`; `revision: 0` means "must not
//! exist yet", Gazette's rule for creation. Directories have no revision.
//!
//! # Errors
//!
//! Unknown fields are errors (typos are caught), and every error names the
//! node — journal or directory name, shard id, or `shards[i]` when the id is
//! missing — and the field.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use crate::broker::spec::{
    self as journal_spec, JournalSpec, Label, LabelSet, O_RDONLY, O_RDWR, O_WRONLY,
};
use crate::consumer::spec::validate_shard_id;
use crate::consumer::{ShardSpec, Source};

/// `expect_mod_revision` of a change that applies whatever the current
/// revision is: what a node without `revision` gets.
pub const ANY_REVISION: i64 = -1;

/// One change of a journal spec file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalApply {
    /// Create the journal, or replace its spec.
    Upsert {
        /// The full spec; it passed [`JournalSpec::validate`].
        spec: JournalSpec,
        /// The mod revision the journal must have; see the module docs.
        expect_mod_revision: i64,
    },
    /// Delete the journal.
    Delete {
        /// The journal's (valid) name.
        name: String,
        /// The mod revision the journal must have; see the module docs.
        expect_mod_revision: i64,
    },
}

/// One change of a shard spec file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardApply {
    /// Create the shard, or replace its spec.
    Upsert {
        /// The full spec; it passed [`ShardSpec::validate`].
        spec: ShardSpec,
        /// The mod revision the shard must have; see the module docs.
        expect_mod_revision: i64,
    },
    /// Delete the shard.
    Delete {
        /// The shard's (valid) id.
        id: String,
        /// The mod revision the shard must have; see the module docs.
        expect_mod_revision: i64,
    },
}

/// Why a spec file was rejected. `node` names the journal, directory or
/// shard (or its position when it has no name), `field` the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecsError {
    /// The text is not YAML.
    #[error("not a valid YAML document: {reason}")]
    Yaml {
        /// The parser's message, with line and column.
        reason: String,
    },
    /// A node is not a mapping, or has a field no node may have.
    #[error("{node}: {reason}")]
    Node {
        /// The node.
        node: String,
        /// What is wrong, e.g. ``unknown field `replicaton` ``.
        reason: String,
    },
    /// A field is missing, mistyped or out of place.
    #[error("{node}: field `{field}`: {reason}")]
    Field {
        /// The node.
        node: String,
        /// The field, e.g. `fragment.length` or `sources`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A journal's flattened spec fails validation.
    #[error("{node}: {reason}")]
    Journal {
        /// The journal.
        node: String,
        /// The validation error, which names the field.
        reason: journal_spec::SpecError,
    },
    /// A shard's flattened spec fails validation (the error names the shard
    /// and the field).
    #[error(transparent)]
    Shard(#[from] crate::consumer::SpecError),
}

/// Parses a gazctl journal tree into the changes it asks for, in file order.
pub fn parse_journals(yaml: &str) -> Result<Vec<JournalApply>, SpecsError> {
    let root = load(yaml)?;
    let mut walk = JournalWalk {
        out: Vec::new(),
        seen: HashSet::new(),
    };
    walk.node(
        root,
        "the root node".into(),
        None,
        &JournalFields::default(),
    )?;
    Ok(walk.out)
}

/// Parses a gazctl shard set (`common` and `shards`) into the changes it asks
/// for, in file order.
pub fn parse_shards(yaml: &str) -> Result<Vec<ShardApply>, SpecsError> {
    const FILE: &str = "the shard file";
    let file = load(yaml)?;
    if !file.is_mapping() {
        return Err(SpecsError::Node {
            node: FILE.into(),
            reason: format!(
                "expected a mapping with `common` and `shards` (gazctl's format), found {}",
                kind(&file)
            ),
        });
    }
    let file: RawShardFile = from_mapping(FILE, file)?;
    let common = match file.common {
        Some(value) => {
            let (own, fields) = split_shard(COMMON, from_mapping(COMMON, value)?)?;
            for (field, set) in [
                ("id", own.id.is_some()),
                ("revision", own.revision.is_some()),
                ("delete", own.delete.is_some()),
            ] {
                if set {
                    return Err(field_error(
                        COMMON,
                        field,
                        "belongs to a shard and cannot be set in `common`",
                    ));
                }
            }
            fields
        }
        None => ShardFields::default(),
    };
    let Some(shards) = typed::<Vec<Value>>(FILE, "shards", file.shards)? else {
        return Err(field_error(FILE, "shards", "is required"));
    };

    let mut out = Vec::with_capacity(shards.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, value) in shards.into_iter().enumerate() {
        let at = match value.get("id").and_then(Value::as_str) {
            Some(id) => format!("shard {id:?}"),
            None => format!("shards[{index}]"),
        };
        let (own, fields) = split_shard(&at, from_mapping(&at, value)?)?;
        let Some(id) = typed::<String>(&at, "id", own.id)? else {
            return Err(field_error(&at, "id", "is required"));
        };
        if let Some(first) = seen.insert(id.clone(), index) {
            return Err(field_error(
                &at,
                "id",
                format!("is also the id of shards[{first}]"),
            ));
        }
        let _comment: Option<String> = typed(&at, "comment", own.comment)?;
        let expect_mod_revision = typed(&at, "revision", own.revision)?.unwrap_or(ANY_REVISION);
        let delete: Option<bool> = typed(&at, "delete", own.delete)?;
        if delete == Some(true) {
            validate_shard_id(&id).map_err(|reason| field_error(&at, "id", reason))?;
            out.push(ShardApply::Delete {
                id,
                expect_mod_revision,
            });
            continue;
        }
        let spec = fields.inherit(&common).into_spec(id);
        spec.validate()?;
        out.push(ShardApply::Upsert {
            spec,
            expect_mod_revision,
        });
    }
    Ok(out)
}

/// Parses a Go duration (`time.ParseDuration`): a sequence of decimal
/// numbers, each with an optional fraction and a unit (`ns`, `us`/`µs`,
/// `ms`, `s`, `m`, `h`), e.g. `1m30s`, `1.5h`, `500ms`; or the bare `0`.
/// Negative durations and durations beyond Go's range (about 292 years)
/// are rejected. The error says why.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    // Go's limit, so that every file gazctl accepts reads the same here.
    const MAX_NANOS: u128 = i64::MAX as u128;
    // Fraction digits past this cannot change the result by a nanosecond.
    const MAX_FRACTION_DIGITS: usize = 18;

    let invalid = |why: &str| format!("invalid duration {text:?}: {why}");
    let mut rest = match text.strip_prefix('+') {
        Some(rest) => rest,
        None if text.starts_with('-') => return Err(invalid("must not be negative")),
        None => text,
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid("expected a number and a unit, e.g. `1s`"));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after) = rest.split_at(int_len);
        rest = after;
        let mut fraction = "";
        if let Some(after) = rest.strip_prefix('.') {
            let len = after.bytes().take_while(u8::is_ascii_digit).count();
            (fraction, rest) = after.split_at(len);
        }
        if int_digits.is_empty() && fraction.is_empty() {
            return Err(invalid("expected a number"));
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (unit, after) = rest.split_at(unit_len);
        rest = after;
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(invalid("missing unit (ns, us, ms, s, m or h)")),
            other => {
                return Err(invalid(&format!(
                    "unknown unit {other:?} (expected ns, us, ms, s, m or h)"
                )));
            }
        };
        let out_of_range = || invalid("out of range");
        let whole = match int_digits {
            "" => 0,
            digits => digits.parse::<u128>().map_err(|_| out_of_range())?,
        };
        let fraction = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
        let fraction_nanos = match fraction {
            "" => 0,
            digits => {
                let value = digits.parse::<u128>().map_err(|_| out_of_range())?;
                value * scale / 10u128.pow(digits.len() as u32)
            }
        };
        total = whole
            .checked_mul(scale)
            .and_then(|nanos| nanos.checked_add(fraction_nanos))
            .and_then(|nanos| nanos.checked_add(total))
            .filter(|nanos| *nanos <= MAX_NANOS)
            .ok_or_else(out_of_range)?;
    }
    Ok(Duration::from_nanos(total as u64))
}

const COMMON: &str = "common";

/// A journal node as written; each field is converted by name, so that a
/// mistyped value is reported with its field. Null counts as absent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Option<Value>,
    comment: Option<Value>,
    replication: Option<Value>,
    labels: Option<Value>,
    fragment: Option<Value>,
    flags: Option<Value>,
    max_append_rate: Option<Value>,
    revision: Option<Value>,
    delete: Option<Value>,
    children: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFragment {
    length: Option<Value>,
    compression_codec: Option<Value>,
    stores: Option<Value>,
    refresh_interval: Option<Value>,
    retention: Option<Value>,
    flush_interval: Option<Value>,
    path_postfix_template: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabel {
    name: String,
    #[serde(default)]
    value: String,
}

/// The journal fields a node sets, or (after [`JournalFields::inherit`])
/// that apply to it.
#[derive(Debug, Clone, Default)]
struct JournalFields {
    replication: Option<u32>,
    labels: LabelSet,
    fragment_length: Option<u64>,
    flags: Option<u32>,
    delete: Option<bool>,
}

impl JournalFields {
    fn inherit(self, parent: &JournalFields) -> JournalFields {
        JournalFields {
            replication: self.replication.or(parent.replication),
            labels: self.labels.union(&parent.labels),
            fragment_length: self.fragment_length.or(parent.fragment_length),
            flags: self.flags.or(parent.flags),
            delete: self.delete.or(parent.delete),
        }
    }
}

struct JournalWalk {
    out: Vec<JournalApply>,
    seen: HashSet<String>,
}

impl JournalWalk {
    /// Flattens the node `value` (described by `fallback` if it has no
    /// name) under the directory `parent`; returns the node's name.
    fn node(
        &mut self,
        value: Value,
        fallback: String,
        parent: Option<&str>,
        inherited: &JournalFields,
    ) -> Result<String, SpecsError> {
        let at = match value.get("name").and_then(Value::as_str) {
            Some(name) => describe_journal(name),
            None => fallback,
        };
        let raw: RawNode = from_mapping(&at, value)?;
        let Some(name) = typed::<String>(&at, "name", raw.name)? else {
            return Err(field_error(&at, "name", "is required"));
        };
        if let Some(parent) = parent
            && !name.starts_with(parent)
        {
            return Err(field_error(
                &at,
                "name",
                format!("must begin with its parent directory's name {parent:?}"),
            ));
        }
        let is_dir = name.is_empty() || name.ends_with('/');
        let _comment: Option<String> = typed(&at, "comment", raw.comment)?;
        let revision: Option<i64> = typed(&at, "revision", raw.revision)?;
        let children: Vec<Value> = typed(&at, "children", raw.children)?.unwrap_or_default();
        let fields = JournalFields {
            replication: typed(&at, "replication", raw.replication)?,
            labels: labels(&at, raw.labels)?,
            fragment_length: fragment_length(&at, raw.fragment)?,
            flags: raw.flags.map(|flags| parse_flags(&at, flags)).transpose()?,
            delete: typed(&at, "delete", raw.delete)?,
        }
        .inherit(inherited);
        if let Some(rate) = typed::<i64>(&at, "max_append_rate", raw.max_append_rate)?
            && rate < 0
        {
            return Err(field_error(&at, "max_append_rate", "must not be negative"));
        }

        if is_dir {
            if revision.is_some() {
                return Err(field_error(
                    &at,
                    "revision",
                    "a directory has no revision; set it on its journals",
                ));
            }
            if children.is_empty() {
                return Err(field_error(
                    &at,
                    "children",
                    "a directory (a name ending in '/') needs one or more children",
                ));
            }
            let mut previous: Option<String> = None;
            for (index, child) in children.into_iter().enumerate() {
                let child_name = self.node(
                    child,
                    format!("{at} children[{index}]"),
                    Some(&name),
                    &fields,
                )?;
                if let Some(previous) = &previous
                    && *previous >= child_name
                {
                    return Err(field_error(
                        &at,
                        "children",
                        format!(
                            "{child_name:?} follows {previous:?}: children must be sorted by name, without repeats"
                        ),
                    ));
                }
                previous = Some(child_name);
            }
            return Ok(name);
        }

        if !children.is_empty() {
            return Err(field_error(
                &at,
                "children",
                "a journal (a name not ending in '/') has no children",
            ));
        }
        if !self.seen.insert(name.clone()) {
            return Err(field_error(
                &at,
                "name",
                "appears more than once in the file",
            ));
        }
        let expect_mod_revision = revision.unwrap_or(ANY_REVISION);
        if fields.delete == Some(true) {
            journal_spec::validate_journal_name(&name).map_err(|reason| SpecsError::Journal {
                node: at.clone(),
                reason,
            })?;
            self.out.push(JournalApply::Delete {
                name: name.clone(),
                expect_mod_revision,
            });
            return Ok(name);
        }
        let mut spec = JournalSpec::new(name.clone()).with_labels(fields.labels);
        if let Some(replication) = fields.replication {
            spec.replication = replication;
        }
        spec.fragment_length = fields.fragment_length.unwrap_or(0);
        spec.flags = fields.flags.unwrap_or(0);
        spec.validate()
            .map_err(|reason| SpecsError::Journal { node: at, reason })?;
        self.out.push(JournalApply::Upsert {
            spec,
            expect_mod_revision,
        });
        Ok(name)
    }
}

fn describe_journal(name: &str) -> String {
    if name.is_empty() || name.ends_with('/') {
        format!("directory {name:?}")
    } else {
        format!("journal {name:?}")
    }
}

/// gazctl writes flags by name; it reads names or numbers. An out-of-range
/// number is left for [`JournalSpec::validate`] to name.
fn parse_flags(at: &str, value: Value) -> Result<u32, SpecsError> {
    match &value {
        Value::Number(number) => number
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| field_error(at, "flags", format!("{number} is not 0, 1, 2 or 4"))),
        Value::String(name) => match name.as_str() {
            "NOT_SPECIFIED" => Ok(0),
            "O_RDONLY" => Ok(O_RDONLY),
            "O_WRONLY" => Ok(O_WRONLY),
            "O_RDWR" => Ok(O_RDWR),
            other => Err(field_error(
                at,
                "flags",
                format!("{other:?} is not O_RDONLY, O_WRONLY, O_RDWR or NOT_SPECIFIED"),
            )),
        },
        other => Err(field_error(
            at,
            "flags",
            format!("expected a flag name or number, found {}", kind(other)),
        )),
    }
}

/// Checks the whole `fragment` mapping and returns the one field weir uses.
fn fragment_length(at: &str, value: Option<Value>) -> Result<Option<u64>, SpecsError> {
    const CODECS: [&str; 6] = [
        "INVALID",
        "NONE",
        "GZIP",
        "ZSTANDARD",
        "SNAPPY",
        "GZIP_OFFLOAD_DECOMPRESSION",
    ];
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    if !value.is_mapping() {
        return Err(field_error(
            at,
            "fragment",
            format!("expected a mapping of fields, found {}", kind(&value)),
        ));
    }
    let raw: RawFragment = serde_yaml_ng::from_value(value)
        .map_err(|err| field_error(at, "fragment", err.to_string()))?;
    match raw.compression_codec {
        None | Some(Value::Null) => {}
        Some(Value::String(codec)) if CODECS.contains(&codec.as_str()) => {}
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n < CODECS.len() as u64) => {}
        Some(other) => {
            let shown = match &other {
                Value::String(codec) => format!("{codec:?}"),
                Value::Number(n) => n.to_string(),
                other => kind(other).to_string(),
            };
            return Err(field_error(
                at,
                "fragment.compression_codec",
                format!("{shown} is not one of {}", CODECS.join(", ")),
            ));
        }
    }
    let _stores: Option<Vec<String>> = typed(at, "fragment.stores", raw.stores)?;
    let _template: Option<String> = typed(
        at,
        "fragment.path_postfix_template",
        raw.path_postfix_template,
    )?;
    for (field, value) in [
        ("fragment.refresh_interval", raw.refresh_interval),
        ("fragment.retention", raw.retention),
        ("fragment.flush_interval", raw.flush_interval),
    ] {
        duration(at, field, value)?;
    }
    typed(at, "fragment.length", raw.length)
}

fn labels(at: &str, value: Option<Value>) -> Result<LabelSet, SpecsError> {
    let raw: Vec<RawLabel> = typed(at, "labels", value)?.unwrap_or_default();
    let set: LabelSet = raw
        .into_iter()
        .map(|label| Label::new(label.name, label.value))
        .collect();
    set.validate()
        .map_err(|reason| field_error(at, "labels", reason.to_string()))?;
    Ok(set)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShardFile {
    common: Option<Value>,
    shards: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShard {
    id: Option<Value>,
    comment: Option<Value>,
    revision: Option<Value>,
    delete: Option<Value>,
    sources: Option<Value>,
    recovery_log_prefix: Option<Value>,
    hint_prefix: Option<Value>,
    hint_backups: Option<Value>,
    max_txn_duration: Option<Value>,
    min_txn_duration: Option<Value>,
    disable: Option<Value>,
    hot_standbys: Option<Value>,
    labels: Option<Value>,
    disable_wait_for_ack: Option<Value>,
    ring_buffer_size: Option<Value>,
    read_channel_size: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    journal: String,
    #[serde(default)]
    min_offset: i64,
}

/// The fields that belong to one shard and are never inherited.
struct ShardOwn {
    id: Option<Value>,
    comment: Option<Value>,
    revision: Option<Value>,
    delete: Option<Value>,
}

/// The shard fields a shard (or `common`) sets.
#[derive(Debug, Clone, Default)]
struct ShardFields {
    sources: Option<Vec<Source>>,
    recovery_log_prefix: Option<String>,
    max_txn_duration: Option<Duration>,
    min_txn_duration: Option<Duration>,
    disable: Option<bool>,
    hot_standbys: Option<u32>,
    labels: LabelSet,
    disable_wait_for_ack: Option<bool>,
    ring_buffer_size: Option<u32>,
    read_channel_size: Option<u32>,
}

impl ShardFields {
    fn inherit(self, common: &ShardFields) -> ShardFields {
        ShardFields {
            sources: self.sources.or_else(|| common.sources.clone()),
            recovery_log_prefix: self
                .recovery_log_prefix
                .or_else(|| common.recovery_log_prefix.clone()),
            max_txn_duration: self.max_txn_duration.or(common.max_txn_duration),
            min_txn_duration: self.min_txn_duration.or(common.min_txn_duration),
            disable: self.disable.or(common.disable),
            hot_standbys: self.hot_standbys.or(common.hot_standbys),
            labels: self.labels.union(&common.labels),
            disable_wait_for_ack: self.disable_wait_for_ack.or(common.disable_wait_for_ack),
            ring_buffer_size: self.ring_buffer_size.or(common.ring_buffer_size),
            read_channel_size: self.read_channel_size.or(common.read_channel_size),
        }
    }

    fn into_spec(self, id: String) -> ShardSpec {
        ShardSpec {
            id,
            sources: self.sources.unwrap_or_default(),
            recovery_log_prefix: self.recovery_log_prefix.unwrap_or_default(),
            max_txn_duration: self.max_txn_duration.unwrap_or_default(),
            min_txn_duration: self.min_txn_duration.unwrap_or_default(),
            disable: self.disable.unwrap_or_default(),
            hot_standbys: self.hot_standbys.unwrap_or_default(),
            disable_wait_for_ack: self.disable_wait_for_ack.unwrap_or_default(),
            ring_buffer_size: self.ring_buffer_size.unwrap_or_default(),
            read_channel_size: self.read_channel_size.unwrap_or_default(),
            labels: self.labels,
        }
    }
}

/// Converts the inheritable fields of `raw` and hands back the per-shard rest.
fn split_shard(at: &str, raw: RawShard) -> Result<(ShardOwn, ShardFields), SpecsError> {
    let _hint_prefix: Option<String> = typed(at, "hint_prefix", raw.hint_prefix)?;
    let _hint_backups: Option<u32> = typed(at, "hint_backups", raw.hint_backups)?;
    let sources = typed::<Vec<RawSource>>(at, "sources", raw.sources)?.map(|raw| {
        let mut sources: Vec<Source> = raw
            .into_iter()
            .map(|s| Source {
                journal: s.journal,
                min_offset: s.min_offset,
            })
            .collect();
        // ShardSpec requires journal order; repeats stay for validate() to name.
        sources.sort_by(|a, b| a.journal.cmp(&b.journal));
        sources
    });
    let fields = ShardFields {
        sources,
        recovery_log_prefix: typed(at, "recovery_log_prefix", raw.recovery_log_prefix)?,
        max_txn_duration: duration(at, "max_txn_duration", raw.max_txn_duration)?,
        min_txn_duration: duration(at, "min_txn_duration", raw.min_txn_duration)?,
        disable: typed(at, "disable", raw.disable)?,
        hot_standbys: typed(at, "hot_standbys", raw.hot_standbys)?,
        labels: labels(at, raw.labels)?,
        disable_wait_for_ack: typed(at, "disable_wait_for_ack", raw.disable_wait_for_ack)?,
        ring_buffer_size: typed(at, "ring_buffer_size", raw.ring_buffer_size)?,
        read_channel_size: typed(at, "read_channel_size", raw.read_channel_size)?,
    };
    let own = ShardOwn {
        id: raw.id,
        comment: raw.comment,
        revision: raw.revision,
        delete: raw.delete,
    };
    Ok((own, fields))
}

/// A Go duration string; a bare `0` is allowed, other bare numbers are not
/// (Go would read them as nanoseconds, which is never what was meant).
fn duration(at: &str, field: &str, value: Option<Value>) -> Result<Option<Duration>, SpecsError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => parse_go_duration(&text)
            .map(Some)
            .map_err(|reason| field_error(at, field, reason)),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(Duration::ZERO)),
        Some(other) => Err(field_error(
            at,
            field,
            format!(
                "expected a duration with a unit, e.g. `1s` or `500ms`, found {}",
                kind(&other)
            ),
        )),
    }
}

fn load(yaml: &str) -> Result<Value, SpecsError> {
    let yaml_error = |err: serde_yaml_ng::Error| SpecsError::Yaml {
        reason: err.to_string(),
    };
    let mut value: Value = serde_yaml_ng::from_str(yaml).map_err(yaml_error)?;
    value.apply_merge().map_err(yaml_error)?;
    Ok(value)
}

/// Deserializes a node, which must be a mapping; unknown fields are named.
fn from_mapping<T: DeserializeOwned>(at: &str, value: Value) -> Result<T, SpecsError> {
    if !value.is_mapping() {
        return Err(SpecsError::Node {
            node: at.to_string(),
            reason: format!("expected a mapping of fields, found {}", kind(&value)),
        });
    }
    serde_yaml_ng::from_value(value).map_err(|err| SpecsError::Node {
        node: at.to_string(),
        reason: err.to_string(),
    })
}

/// Converts one field; absent or null is `None`.
fn typed<T: DeserializeOwned>(
    at: &str,
    field: &str,
    value: Option<Value>,
) -> Result<Option<T>, SpecsError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_yaml_ng::from_value(value)
            .map(Some)
            .map_err(|err| field_error(at, field, err.to_string())),
    }
}

fn field_error(at: &str, field: &str, reason: impl Into<String>) -> SpecsError {
    SpecsError::Field {
        node: at.to_string(),
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;

    fn upsert(spec: JournalSpec) -> JournalApply {
        JournalApply::Upsert {
            spec,
            expect_mod_revision: ANY_REVISION,
        }
    }

    fn label_set(text: &str) -> LabelSet {
        text.parse().expect("labels")
    }

    fn field_of(err: &SpecsError) -> (&str, &str) {
        match err {
            SpecsError::Field { node, field, .. } => (node.as_str(), field.as_str()),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    const STREAM_SUM: &str = r#"
# Gazette's stream-sum journals, as a directory tree.
name: examples/stream-sum/
labels:
  - name: content-type
    value: application/x-ndjson
fragment:
  length: 1048576
  compression_codec: SNAPPY
  retention: 720h0m0s
  flush_interval: 10m0s
children:
  - name: examples/stream-sum/chunks/
    replication: 3
    labels:
      - name: app.gazette.dev/message-type
        value: Chunk
    children:
      - name: examples/stream-sum/chunks/part-000
      - name: examples/stream-sum/chunks/part-001
      - name: examples/stream-sum/chunks/part-002
        flags: O_RDONLY
  - name: examples/stream-sum/sums
    labels:
      - name: app.gazette.dev/message-type
        value: Sum
    fragment:
      length: 4096
"#;

    #[test]
    fn the_stream_sum_tree_flattens_into_inheriting_specs() {
        let applies = parse_journals(STREAM_SUM).expect("parse");
        let chunk = |n: u32, flags: u32| JournalSpec {
            name: format!("examples/stream-sum/chunks/part-{n:03}"),
            labels: label_set(
                "app.gazette.dev/message-type=Chunk,content-type=application/x-ndjson",
            ),
            replication: 3,
            fragment_length: 1 << 20,
            flags,
        };
        let sums = JournalSpec {
            name: "examples/stream-sum/sums".into(),
            labels: label_set("app.gazette.dev/message-type=Sum,content-type=application/x-ndjson"),
            replication: 1,
            fragment_length: 4096,
            flags: 0,
        };
        assert_eq!(
            applies,
            vec![
                upsert(chunk(0, 0)),
                upsert(chunk(1, 0)),
                upsert(chunk(2, O_RDONLY)),
                upsert(sums),
            ]
        );
    }

    #[test]
    fn gazettes_own_examples_file_applies_unchanged() {
        let yaml = r#"
name: examples/
replication: 2
labels:
  - name: example-journals
fragment:
  length: 1048576
  stores:
  - s3://examples/fragments/?profile=minio&endpoint=http%3A%2F%2Fminio%3A9000
  refresh_interval: 1m0s
  retention: 720h0m0s
  compression_codec: SNAPPY
  flush_interval: 10m0s
  path_postfix_template: date={{.Spool.FirstAppendTime.Format "2006-01-02"}}
max_append_rate: 0
children:
  - name: examples/foobar
  - name: examples/stream-sum/
    fragment:
      compression_codec: GZIP_OFFLOAD_DECOMPRESSION
    children:
    - name: examples/stream-sum/recovery-logs/
      labels:
        - name: content-type
          value: application/x-gazette-recoverylog
      children:
        - name: examples/stream-sum/recovery-logs/chunks-part-000
"#;
        let applies = parse_journals(yaml).expect("parse");
        let [
            JournalApply::Upsert { spec: foobar, .. },
            JournalApply::Upsert { spec: log, .. },
        ] = applies.as_slice()
        else {
            panic!("expected two upserts, got {applies:?}");
        };
        assert_eq!(foobar.name, "examples/foobar");
        assert_eq!(foobar.labels, label_set("example-journals="));
        assert_eq!((foobar.replication, foobar.fragment_length), (2, 1 << 20));
        assert_eq!(
            log.labels,
            label_set("content-type=application/x-gazette-recoverylog,example-journals=")
        );
        assert_eq!((log.replication, log.fragment_length), (2, 1 << 20));
    }

    #[test]
    fn deletions_cascade_from_directories_unless_a_journal_opts_out() {
        let yaml = r#"
name: old/logs/
delete: true
children:
  - name: old/logs/a
    revision: 7
  - name: old/logs/b
    delete: false
  - name: old/logs/c
"#;
        assert_eq!(
            parse_journals(yaml).expect("parse"),
            vec![
                JournalApply::Delete {
                    name: "old/logs/a".into(),
                    expect_mod_revision: 7,
                },
                upsert(JournalSpec::new("old/logs/b")),
                JournalApply::Delete {
                    name: "old/logs/c".into(),
                    expect_mod_revision: ANY_REVISION,
                },
            ]
        );
    }

    #[test]
    fn revisions_default_to_any_and_zero_means_must_not_exist() {
        let yaml = r#"
name: a/
children:
  - {name: a/absent}
  - {name: a/created, revision: 0}
  - {name: a/updated, revision: 42}
"#;
        let revisions: Vec<i64> = parse_journals(yaml)
            .expect("parse")
            .iter()
            .map(|apply| match apply {
                JournalApply::Upsert {
                    expect_mod_revision,
                    ..
                } => *expect_mod_revision,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(revisions, [ANY_REVISION, 0, 42]);

        let err = parse_journals("{name: a/, revision: 3, children: [{name: a/bcd}]}")
            .expect_err("directory revision");
        assert_eq!(field_of(&err), ("directory \"a/\"", "revision"));
        let err = parse_journals("{name: abcd, revision: latest}").expect_err("text revision");
        assert_eq!(field_of(&err), ("journal \"abcd\"", "revision"));
    }

    #[test]
    fn a_childs_label_replaces_the_parents_label_of_the_same_name() {
        let yaml = r#"
name: t/
labels:
  - {name: content-type, value: application/x-ndjson}
  - {name: owner, value: team-a}
children:
  - name: t/one
    labels: [{name: content-type, value: application/x-protobuf}]
  - name: t/two
"#;
        let specs: Vec<LabelSet> = parse_journals(yaml)
            .expect("parse")
            .into_iter()
            .map(|apply| match apply {
                JournalApply::Upsert { spec, .. } => spec.labels,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            specs,
            [
                label_set("content-type=application/x-protobuf,owner=team-a"),
                label_set("content-type=application/x-ndjson,owner=team-a"),
            ]
        );
    }

    #[test]
    fn a_child_outside_its_parents_name_is_an_error() {
        let yaml = "{name: a/b/, children: [{name: a/c/dddd}]}";
        let err = parse_journals(yaml).expect_err("outside parent");
        assert_eq!(field_of(&err), ("journal \"a/c/dddd\"", "name"));
        assert!(err.to_string().contains("\"a/b/\""), "{err}");
    }

    #[test]
    fn unknown_fields_are_errors_naming_the_field_and_the_node() {
        let err = parse_journals("{name: a/, children: [{name: a/bcd, replicaton: 2}]}")
            .expect_err("typo");
        let text = err.to_string();
        assert!(matches!(err, SpecsError::Node { .. }), "{err:?}");
        assert!(
            text.contains("replicaton") && text.contains("journal \"a/bcd\""),
            "{text}"
        );

        let err = parse_journals("{name: abcd, fragment: {lenght: 2048}}").expect_err("typo");
        assert_eq!(field_of(&err), ("journal \"abcd\"", "fragment"));
        assert!(err.to_string().contains("lenght"), "{err}");

        let err = parse_shards("{shards: [{id: abcd, max_tx_duration: 1s}]}").expect_err("typo");
        let text = err.to_string();
        assert!(
            text.contains("max_tx_duration") && text.contains("shard \"abcd\""),
            "{text}"
        );
        let err = parse_shards("{common: {hot_standby: 1}, shards: []}").expect_err("typo");
        assert!(
            err.to_string()
                .starts_with("common: unknown field `hot_standby`"),
            "{err}"
        );
    }

    #[test]
    fn flags_read_as_names_or_numbers() {
        let flags = |value: &str| {
            parse_journals(&format!("{{name: abcd, flags: {value}}}")).map(|applies| match &applies
                [..]
            {
                [JournalApply::Upsert { spec, .. }] => spec.flags,
                other => panic!("unexpected {other:?}"),
            })
        };
        assert_eq!(flags("O_RDONLY"), Ok(O_RDONLY));
        assert_eq!(flags("O_WRONLY"), Ok(O_WRONLY));
        assert_eq!(flags("O_RDWR"), Ok(O_RDWR));
        assert_eq!(flags("NOT_SPECIFIED"), Ok(0));
        assert_eq!(flags("2"), Ok(O_WRONLY));
        let err = flags("O_APPEND").expect_err("unknown name");
        assert_eq!(field_of(&err), ("journal \"abcd\"", "flags"));
        assert!(matches!(flags("3"), Err(SpecsError::Journal { .. })));
        assert!(flags("-1").is_err());
    }

    #[test]
    fn malformed_trees_are_rejected_with_the_node_and_field() {
        let cases = [
            ("{name: a/}", ("directory \"a/\"", "children")),
            (
                "{name: abcd, children: [{name: abcd/e}]}",
                ("journal \"abcd\"", "children"),
            ),
            (
                "{name: a/, children: [{name: a/zzz}, {name: a/bbb}]}",
                ("directory \"a/\"", "children"),
            ),
            (
                "{name: a/, children: [{name: a/b/, children: [{name: a/b/c}]}, {name: a/b/c}]}",
                ("journal \"a/b/c\"", "name"),
            ),
            (
                "{name: a/, children: [{labels: []}]}",
                ("directory \"a/\" children[0]", "name"),
            ),
            (
                "{name: abcd, labels: [{name: 'a b', value: x}]}",
                ("journal \"abcd\"", "labels"),
            ),
            (
                "{name: abcd, replication: two}",
                ("journal \"abcd\"", "replication"),
            ),
            (
                "{name: abcd, fragment: {retention: 30d}}",
                ("journal \"abcd\"", "fragment.retention"),
            ),
            (
                "{name: abcd, fragment: {compression_codec: LZ4}}",
                ("journal \"abcd\"", "fragment.compression_codec"),
            ),
            (
                "{name: abcd, max_append_rate: -1}",
                ("journal \"abcd\"", "max_append_rate"),
            ),
        ];
        for (yaml, expected) in cases {
            let err = parse_journals(yaml).expect_err(yaml);
            assert_eq!(field_of(&err), expected, "{yaml}: {err}");
        }
        // The flattened spec's own rules: a reserved label, a bad name.
        for yaml in [
            "{name: abcd, labels: [{name: prefix, value: a/}]}",
            "{name: ab}",
            "{name: abcd, replication: 9}",
        ] {
            let err = parse_journals(yaml).expect_err(yaml);
            assert!(matches!(err, SpecsError::Journal { .. }), "{yaml}: {err:?}");
        }
        assert!(matches!(
            parse_journals("name: [unclosed"),
            Err(SpecsError::Yaml { .. })
        ));
        assert!(matches!(parse_journals(""), Err(SpecsError::Node { .. })));
        assert!(matches!(
            parse_journals("- name: abcd"),
            Err(SpecsError::Node { .. })
        ));
    }

    const SHARDS: &str = r#"
# Compare to ShardSpec for field definitions.
common:
  recovery_log_prefix: examples/stream-sum/recovery-logs
  hint_prefix:         /gazette/hints/examples/stream-sum
  hint_backups:        2
  max_txn_duration:    1s
  hot_standbys:        1
  labels:
    - {name: store, value: rocksdb}
    - {name: team, value: sums}
shards:
- id: chunks-part-000
  sources: [journal: examples/stream-sum/chunks/part-000]
- id: chunks-part-001
  revision: 12
  min_txn_duration: 500ms
  disable: true
  sources:
    - journal: examples/stream-sum/chunks/part-009
    - journal: examples/stream-sum/chunks/part-001
      min_offset: 1024
  labels:
    - {name: store, value: sqlite}
"#;

    #[test]
    fn shards_inherit_common_fields_and_parse_go_durations() {
        let applies = parse_shards(SHARDS).expect("parse");
        let base = ShardSpec {
            id: "chunks-part-000".into(),
            sources: vec![Source {
                journal: "examples/stream-sum/chunks/part-000".into(),
                min_offset: 0,
            }],
            recovery_log_prefix: "examples/stream-sum/recovery-logs".into(),
            max_txn_duration: Duration::from_secs(1),
            min_txn_duration: Duration::ZERO,
            disable: false,
            hot_standbys: 1,
            disable_wait_for_ack: false,
            ring_buffer_size: 0,
            read_channel_size: 0,
            labels: label_set("store=rocksdb,team=sums"),
        };
        let second = ShardSpec {
            id: "chunks-part-001".into(),
            sources: vec![
                Source {
                    journal: "examples/stream-sum/chunks/part-001".into(),
                    min_offset: 1024,
                },
                Source {
                    journal: "examples/stream-sum/chunks/part-009".into(),
                    min_offset: 0,
                },
            ],
            min_txn_duration: Duration::from_millis(500),
            disable: true,
            labels: label_set("store=sqlite,team=sums"),
            ..base.clone()
        };
        assert_eq!(
            applies,
            vec![
                ShardApply::Upsert {
                    spec: base,
                    expect_mod_revision: ANY_REVISION,
                },
                ShardApply::Upsert {
                    spec: second,
                    expect_mod_revision: 12,
                },
            ]
        );
    }

    #[test]
    fn a_shard_without_sources_is_an_error_naming_shard_and_field() {
        let yaml = r#"
common: {recovery_log_prefix: logs/here, max_txn_duration: 1s}
shards:
  - {id: good-shard, sources: [journal: a/b/c/d]}
  - {id: no-sources}
"#;
        match parse_shards(yaml) {
            Err(SpecsError::Shard(err)) => {
                assert_eq!((err.shard.as_str(), err.field), ("no-sources", "sources"));
                assert!(err.to_string().contains("no-sources"), "{err}");
            }
            other => panic!("expected a shard spec error, got {other:?}"),
        }
    }

    #[test]
    fn shard_deletions_ids_and_common_are_checked() {
        let yaml = r#"
shards:
  - {id: old-shard, delete: true, revision: 5}
  - {id: older-shard, delete: true}
"#;
        assert_eq!(
            parse_shards(yaml).expect("parse"),
            vec![
                ShardApply::Delete {
                    id: "old-shard".into(),
                    expect_mod_revision: 5,
                },
                ShardApply::Delete {
                    id: "older-shard".into(),
                    expect_mod_revision: ANY_REVISION,
                },
            ]
        );
        let cases = [
            ("{shards: [{sources: []}]}", ("shards[0]", "id")),
            (
                "{shards: [{id: abcd, delete: true}, {id: abcd, delete: true}]}",
                ("shard \"abcd\"", "id"),
            ),
            (
                "{shards: [{id: 'a b c', delete: true}]}",
                ("shard \"a b c\"", "id"),
            ),
            ("{common: {id: abcd}, shards: []}", ("common", "id")),
            (
                "{common: {revision: 3}, shards: []}",
                ("common", "revision"),
            ),
            (
                "{common: {max_txn_duration: 1s}}",
                ("the shard file", "shards"),
            ),
            (
                "{shards: [{id: abcd, max_txn_duration: 1x}]}",
                ("shard \"abcd\"", "max_txn_duration"),
            ),
            (
                "{shards: [{id: abcd, max_txn_duration: 5}]}",
                ("shard \"abcd\"", "max_txn_duration"),
            ),
            (
                "{shards: [{id: abcd, sources: [{journal: a/b/c, offset: 3}]}]}",
                ("shard \"abcd\"", "sources"),
            ),
        ];
        for (yaml, expected) in cases {
            let err = parse_shards(yaml).expect_err(yaml);
            assert_eq!(field_of(&err), expected, "{yaml}: {err}");
        }
        let err = parse_shards("{shards: [{id: abcd, max_txn_duration: 1x}]}").expect_err("1x");
        assert!(err.to_string().contains("\"x\""), "{err}");
        assert!(matches!(parse_shards("{shards: []}"), Ok(v) if v.is_empty()));
        let err = parse_shards("- {id: abcd}").expect_err("a bare list");
        assert!(err.to_string().contains("`common` and `shards`"), "{err}");
    }

    #[test]
    fn go_durations_parse_like_time_parse_duration() {
        let ms = |text: &str| parse_go_duration(text).map(|d| d.as_nanos());
        for (text, nanos) in [
            ("1s", 1_000_000_000),
            ("500ms", 500_000_000),
            ("1m30s", 90_000_000_000),
            ("2h", 7_200_000_000_000),
            ("0s", 0),
            ("0", 0),
            ("+1s", 1_000_000_000),
            ("1.5h", 5_400_000_000_000),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("1h2m3.25s", 3_723_250_000_000),
            ("3us", 3_000),
            ("3µs", 3_000),
            ("7ns", 7),
            ("720h0m0s", 2_592_000_000_000_000),
        ] {
            assert_eq!(ms(text), Ok(nanos), "{text}");
        }
        for bad in [
            "1x",
            "",
            "1",
            "00",
            "-1s",
            ".s",
            "s",
            "1.2.3s",
            "1s2",
            "1 s",
            "2562048h",
            "99999999999999999999999999999999999999999h",
        ] {
            assert!(ms(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(
            parse_go_duration("1x")
                .unwrap_err()
                .contains("unknown unit \"x\"")
        );
    }

    proptest! {
        #[test]
        fn composed_durations_sum_their_parts(
            h in 0u64..10_000, m in 0u64..100, s in 0u64..100, ms in 0u64..1000, ns in 0u64..1000,
        ) {
            let text = format!("{h}h{m}m{s}s{ms}ms{ns}ns");
            let expected = Duration::from_secs(h * 3600 + m * 60 + s)
                + Duration::from_millis(ms)
                + Duration::from_nanos(ns);
            prop_assert_eq!(parse_go_duration(&text), Ok(expected));
        }
    }
}
