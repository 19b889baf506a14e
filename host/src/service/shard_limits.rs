//! Per-shard guest limits, set by shard labels.
//!
//! A shard's guest runs under [`GuestLimits::default`] (the defaults of
//! [`crate::limits`]) except where one of these labels of its spec says
//! otherwise. Each value is a whole number in the label's unit:
//!
//! | label | unit | default | allowed |
//! |---|---|---|---|
//! | `weir.dev/limit.call-deadline-ms` | milliseconds | 5 000 | 1 – 600 000 |
//! | `weir.dev/limit.fuel-per-call` | fuel (≈ wasm instructions) | none (unmetered) | 1 – 2⁵⁰, only if the host's runtime meters fuel |
//! | `weir.dev/limit.memory-bytes` | bytes | 128 MiB | 64 KiB – 4 GiB |
//! | `weir.dev/limit.txn-messages` | messages | 100 000 | 1 – 100 000 |
//! | `weir.dev/limit.txn-bytes` | bytes | 64 MiB | 1 – 64 MiB |
//! | `weir.dev/limit.doc-bytes` | bytes | 4 MiB | 1 – 4 MiB |
//! | `weir.dev/limit.key-bytes` | bytes | 4 KiB | 1 – 4 KiB |
//! | `weir.dev/limit.value-bytes` | bytes | 1 MiB | 1 – 1 MiB |
//! | `weir.dev/limit.log-bytes-per-call` | bytes | 64 KiB | 1 – 16 MiB |
//!
//! The last five can only lower a limit: the transaction, the publisher and
//! the store enforce the host-wide value again, so a higher guest limit
//! would only move the failure elsewhere.
//!
//! Guarantees:
//!
//! - **Refused, not ignored.** A value that is not a whole number, is zero,
//!   or lies outside its range, a label given twice, and an unknown
//!   `weir.dev/limit.` name (a typo) are each a [`SpecError`] on `labels`
//!   naming the label and its allowed range, so the apply fails with
//!   INVALID_ARGUMENT and nothing changes.
//! - **Fuel needs a metering runtime.** `weir serve` runs its guests
//!   without fuel metering (it costs every call); a fuel label then fails
//!   the apply's instantiation probe, which the registry reports naming the
//!   label, instead of running unmetered.
//! - **No restart.** Limits are part of the spec, so changing them is a
//!   spec change: the registry's hand-over stops the shard after its
//!   current transaction and starts the next one under the new limits.

use std::time::Duration;

use crate::broker::spec::LabelSet;
use crate::consumer::{ShardSpec, SpecError};
use crate::limits;
use crate::runtime::GuestLimits;

/// The prefix of every limit label.
pub const LIMIT_LABEL_PREFIX: &str = "weir.dev/limit.";
/// The label of the per-call deadline, in milliseconds.
pub const CALL_DEADLINE_LABEL: &str = "weir.dev/limit.call-deadline-ms";
/// The label of the per-call fuel budget.
pub const FUEL_LABEL: &str = "weir.dev/limit.fuel-per-call";
/// The label of the linear-memory cap, in bytes.
pub const MEMORY_LABEL: &str = "weir.dev/limit.memory-bytes";
/// The label of the messages a transaction may publish.
pub const TXN_MESSAGES_LABEL: &str = "weir.dev/limit.txn-messages";
/// The label of the document bytes a transaction may publish.
pub const TXN_BYTES_LABEL: &str = "weir.dev/limit.txn-bytes";
/// The label of the largest published document, in bytes.
pub const DOC_BYTES_LABEL: &str = "weir.dev/limit.doc-bytes";
/// The label of the largest store key, in bytes.
pub const KEY_BYTES_LABEL: &str = "weir.dev/limit.key-bytes";
/// The label of the largest store value, in bytes.
pub const VALUE_BYTES_LABEL: &str = "weir.dev/limit.value-bytes";
/// The label of the guest's log output per call, in bytes.
pub const LOG_BYTES_LABEL: &str = "weir.dev/limit.log-bytes-per-call";

/// One settable limit: its label, unit, range and where it goes.
#[derive(Debug, Clone, Copy)]
pub struct LimitLabel {
    /// The full label name.
    pub name: &'static str,
    /// The unit of its value, for messages.
    pub unit: &'static str,
    /// Smallest allowed value.
    pub min: u64,
    /// Largest allowed value.
    pub max: u64,
    set: fn(&mut GuestLimits, u64),
}

/// `value` as a `usize`; every range below fits one on the 64-bit targets
/// weir supports, and saturating keeps a 32-bit build safe.
fn size(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// Every limit label, in the order of the module table.
pub const LIMIT_LABELS: [LimitLabel; 9] = [
    LimitLabel {
        name: CALL_DEADLINE_LABEL,
        unit: "milliseconds",
        min: 1,
        max: limits::SHARD_LIMIT_MAX_CALL_DEADLINE_MS,
        set: |l, v| l.call_deadline = Duration::from_millis(v),
    },
    LimitLabel {
        name: FUEL_LABEL,
        unit: "fuel units",
        min: 1,
        max: limits::SHARD_LIMIT_MAX_FUEL_PER_CALL,
        set: |l, v| l.fuel_per_call = Some(v),
    },
    LimitLabel {
        name: MEMORY_LABEL,
        unit: "bytes",
        min: limits::SHARD_LIMIT_MIN_MEMORY_BYTES,
        max: limits::SHARD_LIMIT_MAX_MEMORY_BYTES,
        set: |l, v| l.memory_bytes = size(v),
    },
    LimitLabel {
        name: TXN_MESSAGES_LABEL,
        unit: "messages",
        min: 1,
        max: limits::DEFAULT_MAX_TXN_MESSAGES as u64,
        set: |l, v| l.max_txn_messages = size(v),
    },
    LimitLabel {
        name: TXN_BYTES_LABEL,
        unit: "bytes",
        min: 1,
        max: limits::DEFAULT_MAX_TXN_BYTES as u64,
        set: |l, v| l.max_txn_bytes = size(v),
    },
    LimitLabel {
        name: DOC_BYTES_LABEL,
        unit: "bytes",
        min: 1,
        max: limits::DEFAULT_MAX_MESSAGE_BYTES as u64,
        set: |l, v| l.max_doc_bytes = size(v),
    },
    LimitLabel {
        name: KEY_BYTES_LABEL,
        unit: "bytes",
        min: 1,
        max: limits::DEFAULT_STORE_MAX_KEY_BYTES as u64,
        set: |l, v| l.max_key_bytes = size(v),
    },
    LimitLabel {
        name: VALUE_BYTES_LABEL,
        unit: "bytes",
        min: 1,
        max: limits::DEFAULT_STORE_MAX_VALUE_BYTES as u64,
        set: |l, v| l.max_value_bytes = size(v),
    },
    LimitLabel {
        name: LOG_BYTES_LABEL,
        unit: "bytes",
        min: 1,
        max: limits::SHARD_LIMIT_MAX_LOG_BYTES_PER_CALL,
        set: |l, v| l.max_log_bytes_per_call = size(v),
    },
];

/// The limits `spec`'s guest runs under: the defaults, overridden by its
/// limit labels. Fails naming the first bad label.
pub fn guest_limits(spec: &ShardSpec) -> Result<GuestLimits, SpecError> {
    limits_from_labels(&spec.id, &spec.labels)
}

/// [`guest_limits`] of shard `shard` with `labels`.
pub fn limits_from_labels(shard: &str, labels: &LabelSet) -> Result<GuestLimits, SpecError> {
    let invalid = |reason: String| SpecError {
        shard: shard.to_string(),
        field: "labels",
        reason,
    };
    let mut limits = GuestLimits::default();
    let mut seen: Vec<&str> = Vec::new();
    for label in labels.iter() {
        let Some(_) = label.name.strip_prefix(LIMIT_LABEL_PREFIX) else {
            continue;
        };
        let Some(known) = LIMIT_LABELS.iter().find(|known| known.name == label.name) else {
            let names: Vec<&str> = LIMIT_LABELS.iter().map(|known| known.name).collect();
            return Err(invalid(format!(
                "label {} is not a known limit (known: {})",
                label.name,
                names.join(", ")
            )));
        };
        if seen.contains(&known.name) {
            return Err(invalid(format!(
                "label {} is given more than once",
                known.name
            )));
        }
        seen.push(known.name);
        let range = || format!("{}..={} {}", known.min, known.max, known.unit);
        let value: u64 = label.value.parse().map_err(|_| {
            invalid(format!(
                "label {}={:?} is not a whole number; allowed: {}",
                known.name,
                label.value,
                range()
            ))
        })?;
        if !(known.min..=known.max).contains(&value) {
            return Err(invalid(format!(
                "label {}={value} is out of range; allowed: {}",
                known.name,
                range()
            )));
        }
        (known.set)(&mut limits, value);
    }
    Ok(limits)
}

/// Why a fuel label was refused by a runtime that does not meter fuel.
pub fn fuel_refusal() -> String {
    format!(
        "label {FUEL_LABEL} needs fuel metering, which this host's runtime does not \
         enable; remove the label (the call deadline still bounds every call)"
    )
}

#[cfg(test)]
mod test {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs.iter().copied().collect()
    }

    #[test]
    fn no_limit_labels_give_the_defaults() {
        let got = limits_from_labels("s", &labels(&[("weir.dev/module", "ab"), ("x", "1")]));
        assert_eq!(got.unwrap(), GuestLimits::default());
    }

    #[test]
    fn each_label_sets_its_limit() {
        let got = limits_from_labels(
            "s",
            &labels(&[
                (CALL_DEADLINE_LABEL, "250"),
                (FUEL_LABEL, "1000000"),
                (MEMORY_LABEL, "16777216"),
                (TXN_MESSAGES_LABEL, "10"),
                (TXN_BYTES_LABEL, "1000"),
                (DOC_BYTES_LABEL, "100"),
                (KEY_BYTES_LABEL, "16"),
                (VALUE_BYTES_LABEL, "32"),
                (LOG_BYTES_LABEL, "512"),
            ]),
        )
        .unwrap();
        let want = GuestLimits {
            call_deadline: Duration::from_millis(250),
            fuel_per_call: Some(1_000_000),
            memory_bytes: 16 << 20,
            max_txn_messages: 10,
            max_txn_bytes: 1000,
            max_doc_bytes: 100,
            max_key_bytes: 16,
            max_value_bytes: 32,
            max_log_bytes_per_call: 512,
            ..GuestLimits::default()
        };
        assert_eq!(got, want);
    }

    fn refusal(pairs: &[(&str, &str)]) -> String {
        let err = limits_from_labels("shard-1", &labels(pairs)).unwrap_err();
        assert_eq!(err.field, "labels");
        assert_eq!(err.shard, "shard-1");
        err.reason
    }

    #[test]
    fn a_value_that_is_not_a_number_is_refused_naming_the_label_and_range() {
        let reason = refusal(&[(CALL_DEADLINE_LABEL, "fast")]);
        assert!(reason.contains(CALL_DEADLINE_LABEL), "{reason}");
        assert!(reason.contains("1..=600000 milliseconds"), "{reason}");
    }

    #[test]
    fn zero_is_refused() {
        let reason = refusal(&[(TXN_MESSAGES_LABEL, "0")]);
        assert!(reason.contains("out of range"), "{reason}");
        assert!(reason.contains("1..=100000 messages"), "{reason}");
    }

    #[test]
    fn a_value_above_the_maximum_is_refused() {
        let reason = refusal(&[(MEMORY_LABEL, "8589934592")]);
        assert!(reason.contains(MEMORY_LABEL), "{reason}");
        assert!(reason.contains("65536..=4294967296 bytes"), "{reason}");
        let reason = refusal(&[(VALUE_BYTES_LABEL, "1048577")]);
        assert!(reason.contains("1..=1048576 bytes"), "{reason}");
    }

    #[test]
    fn a_label_given_twice_is_refused() {
        let reason = refusal(&[(KEY_BYTES_LABEL, "10"), (KEY_BYTES_LABEL, "20")]);
        assert!(reason.contains("more than once"), "{reason}");
    }

    #[test]
    fn an_unknown_limit_label_is_refused_rather_than_ignored() {
        let reason = refusal(&[("weir.dev/limit.call-deadline", "100")]);
        assert!(reason.contains("not a known limit"), "{reason}");
        assert!(reason.contains(CALL_DEADLINE_LABEL), "{reason}");
    }

    #[test]
    fn every_default_lies_within_its_range() {
        let defaults = GuestLimits::default();
        for label in LIMIT_LABELS {
            let mut limits = GuestLimits::default();
            (label.set)(&mut limits, label.min);
            assert_ne!(limits, defaults, "{} sets nothing", label.name);
            assert!(label.min >= 1 && label.min <= label.max, "{}", label.name);
        }
        let check = |value: u64, label: &str| {
            let found = LIMIT_LABELS.iter().find(|l| l.name == label).unwrap();
            assert!((found.min..=found.max).contains(&value), "{label}");
        };
        check(
            defaults.call_deadline.as_millis() as u64,
            CALL_DEADLINE_LABEL,
        );
        check(defaults.memory_bytes as u64, MEMORY_LABEL);
        check(defaults.max_log_bytes_per_call as u64, LOG_BYTES_LABEL);
        check(defaults.max_value_bytes as u64, VALUE_BYTES_LABEL);
    }
}
