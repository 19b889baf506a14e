//! Shard specifications (Gazette's `consumer.ShardSpec`), with Gazette's
//! validation rules.
//!
//! A shard reads its `sources` through a read-committed sequencer, runs
//! transactions no shorter than `min_txn_duration` (once its first message
//! arrives) and no longer than `max_txn_duration` of reading, and records its
//! store and checkpoint in the recovery log `{recovery_log_prefix}/{id}`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::broker::spec::LabelSet;
use crate::limits;

/// One journal a shard reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Journal name.
    pub journal: String,
    /// Reading starts at `max(checkpoint read-through, min_offset)`.
    #[serde(default)]
    pub min_offset: i64,
}

/// The desired state of a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSpec {
    /// Shard id: 4–512 characters of letters, digits and `-_+/.`.
    pub id: String,
    /// Source journals, sorted and unique by journal.
    pub sources: Vec<Source>,
    /// Prefix of the recovery log; the log journal is `{prefix}/{id}`.
    pub recovery_log_prefix: String,
    /// Longest time a transaction keeps reading (must be > 0).
    #[serde(with = "duration_ms")]
    pub max_txn_duration: Duration,
    /// Shortest duration of a transaction, from its first message.
    #[serde(with = "duration_ms", default)]
    pub min_txn_duration: Duration,
    /// A disabled shard is not served.
    #[serde(default)]
    pub disable: bool,
    /// Number of hot standbys tailing the recovery log.
    #[serde(default)]
    pub hot_standbys: u32,
    /// Don't hold a transaction open while ACKs of read messages are pending.
    #[serde(default)]
    pub disable_wait_for_ack: bool,
    /// Sequencer ring size; 0 means the default.
    #[serde(default)]
    pub ring_buffer_size: u32,
    /// Capacity of the decoded-message channel; 0 means the default.
    #[serde(default)]
    pub read_channel_size: u32,
    /// Labels of the shard (the label `id` is reserved).
    #[serde(default)]
    pub labels: LabelSet,
}

/// Why a spec is invalid; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid shard spec {shard:?}: {field}: {reason}")]
pub struct SpecError {
    /// The shard id as given.
    pub shard: String,
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl ShardSpec {
    /// The recovery log journal of this shard.
    pub fn recovery_log(&self) -> String {
        format!(
            "{}/{}",
            self.recovery_log_prefix.trim_end_matches('/'),
            self.id
        )
    }

    /// The effective sequencer ring size.
    pub fn ring_size(&self) -> usize {
        match self.ring_buffer_size {
            0 => limits::DEFAULT_RING_BUFFER_SIZE,
            n => n as usize,
        }
    }

    /// The effective read channel capacity.
    pub fn read_channel_capacity(&self) -> usize {
        match self.read_channel_size {
            0 => limits::DEFAULT_READ_CHANNEL_SIZE,
            n => n as usize,
        }
    }

    /// Checks the spec against Gazette's rules.
    pub fn validate(&self) -> Result<(), SpecError> {
        let err = |field, reason: String| SpecError {
            shard: self.id.clone(),
            field,
            reason,
        };
        validate_shard_id(&self.id).map_err(|reason| err("id", reason))?;
        if self.sources.is_empty() {
            return Err(err("sources", "at least one source is required".into()));
        }
        for pair in self.sources.windows(2) {
            if pair[0].journal >= pair[1].journal {
                return Err(err(
                    "sources",
                    format!(
                        "must be sorted and unique by journal ({:?} before {:?})",
                        pair[0].journal, pair[1].journal
                    ),
                ));
            }
        }
        for source in &self.sources {
            crate::broker::spec::validate_journal_name(&source.journal)
                .map_err(|reason| err("sources.journal", reason.to_string()))?;
            if source.min_offset < 0 {
                return Err(err(
                    "sources.min_offset",
                    format!("{} is negative", source.min_offset),
                ));
            }
        }
        if self.recovery_log_prefix.is_empty() {
            return Err(err(
                "recovery_log_prefix",
                "is required (stores live in the log)".into(),
            ));
        }
        crate::broker::spec::validate_journal_name(&self.recovery_log())
            .map_err(|reason| err("recovery_log_prefix", reason.to_string()))?;
        if self.max_txn_duration.is_zero() {
            return Err(err("max_txn_duration", "must be greater than zero".into()));
        }
        if self.min_txn_duration > self.max_txn_duration {
            return Err(err(
                "min_txn_duration",
                "must not exceed max_txn_duration".into(),
            ));
        }
        self.labels
            .validate()
            .map_err(|reason| err("labels", reason.to_string()))?;
        if self.labels.get("id").is_some() {
            return Err(err("labels", "the label `id` is reserved".into()));
        }
        Ok(())
    }
}

/// Shard ids: 4–512 characters of letters, digits and `-_+/.` (Gazette's token rule).
pub fn validate_shard_id(id: &str) -> Result<(), String> {
    if !(4..=512).contains(&id.len()) {
        return Err(format!("length {} is outside 4..=512", id.len()));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_+/.".contains(*c)))
    {
        return Err(format!(
            "character {bad:?} is not a letter, digit or one of -_+/."
        ));
    }
    Ok(())
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn spec() -> ShardSpec {
        ShardSpec {
            id: "chunks-part-000".into(),
            sources: vec![Source {
                journal: "examples/stream-sum/chunks/part-000".into(),
                min_offset: 0,
            }],
            recovery_log_prefix: "examples/stream-sum/recovery-logs".into(),
            max_txn_duration: Duration::from_secs(1),
            min_txn_duration: Duration::ZERO,
            disable: false,
            hot_standbys: 0,
            disable_wait_for_ack: false,
            ring_buffer_size: 0,
            read_channel_size: 0,
            labels: Default::default(),
        }
    }

    #[test]
    fn a_well_formed_spec_validates_and_names_its_log() {
        let spec = spec();
        spec.validate().unwrap();
        assert_eq!(
            spec.recovery_log(),
            "examples/stream-sum/recovery-logs/chunks-part-000"
        );
    }

    #[test]
    fn each_broken_field_is_named_in_the_error() {
        type Mutation = Box<dyn Fn(&mut ShardSpec)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("id", Box::new(|s| s.id = "a#b".into())),
            ("id", Box::new(|s| s.id = "abc".into())),
            ("sources", Box::new(|s| s.sources.clear())),
            (
                "sources",
                Box::new(|s| s.sources.push(s.sources[0].clone())),
            ),
            (
                "sources.min_offset",
                Box::new(|s| s.sources[0].min_offset = -1),
            ),
            (
                "sources.journal",
                Box::new(|s| s.sources[0].journal = "/rooted/name".into()),
            ),
            (
                "recovery_log_prefix",
                Box::new(|s| s.recovery_log_prefix.clear()),
            ),
            (
                "max_txn_duration",
                Box::new(|s| s.max_txn_duration = Duration::ZERO),
            ),
            (
                "min_txn_duration",
                Box::new(|s| s.min_txn_duration = Duration::from_secs(5)),
            ),
            ("labels", Box::new(|s| _ = s.labels.insert("id", "x"))),
        ];
        for (field, mutate) in cases {
            let mut s = spec();
            mutate(&mut s);
            let err = s.validate().expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
    }
}
