//! Conversions between Gazette's `consumer` wire types and weir's shard
//! types, with the checks the wire needs before weir's own validation.
//! Labels, selectors and headers convert as for journals (see
//! [`convert`](super::convert)).
//!
//! - Durations must be non-negative, normalized (`nanos` in `0..1e9`) and
//!   within Go's `time.Duration` (about 292 years), as Gazette's are.
//! - `hint_prefix` and `hint_backups` are accepted and ignored: weir's
//!   stores need no recovery hints.
//! - Errors are `field: reason`.

use std::time::Duration;

use crate::broker::BrokerError;
use crate::consumer::{ShardSpec, ShardStatus, Source};
use crate::protocol::consumer::{self as wire, replica_status::Code};

use super::convert::{label_set_from_wire, label_set_to_wire};
use super::shards::ReplicaState;

/// Go's `time.Duration` holds at most `i64::MAX` nanoseconds.
const MAX_DURATION: Duration = Duration::from_nanos(i64::MAX as u64);

/// A wire spec as weir's (checked for the wire's rules only; the registry
/// validates the rest). The error is `field: reason`.
pub fn spec_from_wire(spec: wire::ShardSpec) -> Result<ShardSpec, String> {
    if spec.hint_backups < 0 {
        return Err(format!("hint_backups: {} is negative", spec.hint_backups));
    }
    let duration = |field: &str, duration: Option<&prost_types::Duration>| {
        duration_from_wire(duration).map_err(|reason| format!("{field}: {reason}"))
    };
    let max_txn_duration = duration("max_txn_duration", spec.max_txn_duration.as_ref())?;
    let min_txn_duration = duration("min_txn_duration", spec.min_txn_duration.as_ref())?;
    let labels = label_set_from_wire(spec.labels.as_ref(), "labels").map_err(message)?;
    Ok(ShardSpec {
        sources: spec
            .sources
            .into_iter()
            .map(|source| Source {
                journal: source.journal,
                min_offset: source.min_offset,
            })
            .collect(),
        id: spec.id,
        recovery_log_prefix: spec.recovery_log_prefix,
        max_txn_duration,
        min_txn_duration,
        disable: spec.disable,
        hot_standbys: spec.hot_standbys,
        disable_wait_for_ack: spec.disable_wait_for_ack,
        ring_buffer_size: spec.ring_buffer_size,
        read_channel_size: spec.read_channel_size,
        labels,
    })
}

/// weir's spec on the wire.
pub fn spec_to_wire(spec: &ShardSpec) -> wire::ShardSpec {
    wire::ShardSpec {
        id: spec.id.clone(),
        sources: spec
            .sources
            .iter()
            .map(|source| wire::shard_spec::Source {
                journal: source.journal.clone(),
                min_offset: source.min_offset,
            })
            .collect(),
        recovery_log_prefix: spec.recovery_log_prefix.clone(),
        hint_prefix: String::new(),
        hint_backups: 0,
        max_txn_duration: Some(duration_to_wire(spec.max_txn_duration)),
        min_txn_duration: Some(duration_to_wire(spec.min_txn_duration)),
        disable: spec.disable,
        hot_standbys: spec.hot_standbys,
        labels: Some(label_set_to_wire(&spec.labels)),
        disable_wait_for_ack: spec.disable_wait_for_ack,
        ring_buffer_size: spec.ring_buffer_size,
        read_channel_size: spec.read_channel_size,
    }
}

/// Gazette's `ReplicaStatus` of a listed shard. A retrying shard is still
/// the primary; its last error is reported with it.
pub fn replica_status(state: &ReplicaState) -> wire::ReplicaStatus {
    let status = |code: Code, errors: Vec<String>| wire::ReplicaStatus {
        code: code as i32,
        errors,
    };
    match state {
        ReplicaState::Serving(ShardStatus::Recovering) => status(Code::Backfill, vec![]),
        ReplicaState::Serving(ShardStatus::Primary) => status(Code::Primary, vec![]),
        // Gazette's clients accept errors only with FAILED: a shard that
        // is retrying after a failed term is reported FAILED with its error
        // until a new term recovers (BACKFILL) and serves (PRIMARY).
        ReplicaState::Serving(
            ShardStatus::Retrying { error, .. } | ShardStatus::Failed { error },
        )
        | ReplicaState::NotStarted(error) => status(Code::Failed, vec![error.clone()]),
        ReplicaState::Serving(ShardStatus::Fenced { .. } | ShardStatus::Stopped)
        | ReplicaState::Idle => status(Code::Idle, vec![]),
    }
}

/// The `field: reason` of a conversion error.
fn message(err: BrokerError) -> String {
    match err {
        BrokerError::InvalidArgument(message) => message,
        other => other.to_string(),
    }
}

fn duration_from_wire(duration: Option<&prost_types::Duration>) -> Result<Duration, String> {
    let Some(duration) = duration else {
        return Ok(Duration::ZERO);
    };
    let (Ok(seconds), Ok(nanos)) = (
        u64::try_from(duration.seconds),
        u32::try_from(duration.nanos),
    ) else {
        return Err(format!(
            "{} s {} ns is negative",
            duration.seconds, duration.nanos
        ));
    };
    if nanos >= 1_000_000_000 {
        return Err(format!("nanos {nanos} is not below one second"));
    }
    let duration = Duration::new(seconds, nanos);
    if duration > MAX_DURATION {
        return Err(format!(
            "{duration:?} exceeds the longest duration, {MAX_DURATION:?}"
        ));
    }
    Ok(duration)
}

fn duration_to_wire(duration: Duration) -> prost_types::Duration {
    prost_types::Duration {
        // Within MAX_DURATION (checked on the way in), so within i64.
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        nanos: duration.subsec_nanos() as i32,
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::protocol::gazette;

    fn wire_spec() -> wire::ShardSpec {
        wire::ShardSpec {
            id: "shard-000".into(),
            sources: vec![wire::shard_spec::Source {
                journal: "a/journal".into(),
                min_offset: 7,
            }],
            recovery_log_prefix: "recovery/logs".into(),
            hint_prefix: "/hints".into(),
            hint_backups: 2,
            max_txn_duration: Some(prost_types::Duration {
                seconds: 1,
                nanos: 500_000_000,
            }),
            min_txn_duration: None,
            disable: true,
            hot_standbys: 1,
            labels: Some(gazette::LabelSet {
                labels: vec![
                    gazette::Label {
                        name: "zz".into(),
                        value: "last".into(),
                        prefix: false,
                    },
                    gazette::Label {
                        name: "aa".into(),
                        value: "first".into(),
                        prefix: false,
                    },
                ],
            }),
            disable_wait_for_ack: true,
            ring_buffer_size: 16,
            read_channel_size: 32,
        }
    }

    #[test]
    fn specs_round_trip_except_the_ignored_hints() {
        let spec = spec_from_wire(wire_spec()).unwrap();
        assert_eq!(spec.max_txn_duration, Duration::from_millis(1500));
        assert_eq!(spec.min_txn_duration, Duration::ZERO);
        assert_eq!(spec.labels.to_string(), "aa=first,zz=last");
        let back = spec_to_wire(&spec);
        let mut expected = wire_spec();
        expected.hint_prefix.clear();
        expected.hint_backups = 0;
        expected.min_txn_duration = Some(prost_types::Duration::default());
        expected.labels.as_mut().unwrap().labels.reverse();
        assert_eq!(back, expected);
        assert_eq!(spec_from_wire(back).unwrap(), spec);
    }

    #[test]
    fn bad_wire_fields_are_named() {
        type Mutation = Box<dyn Fn(&mut wire::ShardSpec)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "max_txn_duration",
                Box::new(|s| s.max_txn_duration.as_mut().unwrap().seconds = -1),
            ),
            (
                "max_txn_duration",
                Box::new(|s| s.max_txn_duration.as_mut().unwrap().nanos = 1_000_000_000),
            ),
            (
                "min_txn_duration",
                Box::new(|s| {
                    s.min_txn_duration = Some(prost_types::Duration {
                        seconds: i64::MAX,
                        nanos: 0,
                    })
                }),
            ),
            (
                "min_txn_duration",
                Box::new(|s| {
                    s.min_txn_duration = Some(prost_types::Duration {
                        seconds: 0,
                        nanos: -1,
                    })
                }),
            ),
            ("hint_backups", Box::new(|s| s.hint_backups = -1)),
            (
                "labels",
                Box::new(|s| s.labels.as_mut().unwrap().labels[0].prefix = true),
            ),
            (
                "labels",
                Box::new(|s| s.labels.as_mut().unwrap().labels[0].name = "bad name".into()),
            ),
        ];
        for (field, mutate) in cases {
            let mut spec = wire_spec();
            mutate(&mut spec);
            let err = spec_from_wire(spec).expect_err(field);
            assert!(err.starts_with(&format!("{field}: ")), "{field}: {err}");
        }
    }

    #[test]
    fn statuses_map_to_gazette_codes() {
        let code = |state: ReplicaState| {
            let status = replica_status(&state);
            (Code::try_from(status.code).unwrap(), status.errors)
        };
        let err = || "boom".to_string();
        assert_eq!(
            code(ReplicaState::Serving(ShardStatus::Recovering)),
            (Code::Backfill, vec![])
        );
        assert_eq!(
            code(ReplicaState::Serving(ShardStatus::Primary)),
            (Code::Primary, vec![])
        );
        assert_eq!(
            code(ReplicaState::Serving(ShardStatus::Retrying {
                failures: 1,
                error: err()
            })),
            (Code::Failed, vec![err()])
        );
        assert_eq!(
            code(ReplicaState::Serving(ShardStatus::Failed { error: err() })),
            (Code::Failed, vec![err()])
        );
        assert_eq!(
            code(ReplicaState::NotStarted(err())),
            (Code::Failed, vec![err()])
        );
        assert_eq!(
            code(ReplicaState::Serving(ShardStatus::Fenced { error: err() })),
            (Code::Idle, vec![])
        );
        assert_eq!(
            code(ReplicaState::Serving(ShardStatus::Stopped)),
            (Code::Idle, vec![])
        );
        assert_eq!(code(ReplicaState::Idle), (Code::Idle, vec![]));
    }
}
