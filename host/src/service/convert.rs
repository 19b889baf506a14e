//! Conversions between Gazette's `protocol` wire types and weir's broker
//! types, both ways, with the checks the wire needs before weir's own
//! validation. Every error names the field at fault.
//!
//! - **Labels** are sorted and de-duplicated on the way in; selector labels
//!   with `prefix` set are refused (weir's selectors match whole values).
//! - **Journal specs** carry `name`, `replication`, `labels`,
//!   `fragment.length` and `flags` into weir. The other fields
//!   (compression, stores, intervals, path template, `max_append_rate`,
//!   `suspend`) are accepted and ignored, once the codec is known and the
//!   rate not negative: weir keeps
//!   uncompressed fragments on local disk, so going out,
//!   `fragment.compression_codec` is `NONE`. `fragment.length` 0 means the
//!   broker's default, both ways.
//! - **Headers and routes** name the answering process
//!   ([`ProcessIdentity`](super::process::ProcessIdentity)).
//! - **Fragments**: an append's commit carries the SHA1 of the appended
//!   bytes ([`sha1_sum`]), as Gazette's does. Listed and read fragments
//!   carry no `sum`: weir checksums each append (CRC-32C) instead, and a
//!   whole fragment's SHA1 would mean reading it; nothing reads fragments
//!   from a store by URL here, which is what Gazette's sum serves.
//!
//! Errors, server side ([`status_of`]) and back on the client
//! ([`error_of_status`], [`error_of_wire_status`]):
//!
//! | [`BrokerError`] | on the wire |
//! |---|---|
//! | `JournalNotFound` | response status `JOURNAL_NOT_FOUND` |
//! | `NotAllowed` | response status `NOT_ALLOWED` (appends and reads; elsewhere `PERMISSION_DENIED`) |
//! | `RegisterMismatch` | response status `REGISTER_MISMATCH`, with the registers |
//! | `WrongAppendOffset` | response status `WRONG_APPEND_OFFSET`; the write head as a zero-length `commit` (Gazette leaves it unset) |
//! | `OffsetNotYetAvailable` | response status `OFFSET_NOT_YET_AVAILABLE` |
//! | `InvalidArgument` | `INVALID_ARGUMENT` |
//! | `LimitExceeded` | `RESOURCE_EXHAUSTED` |
//! | `Unavailable` | `UNAVAILABLE` (and, client side, any transport failure) |
//! | `Corrupt` | `DATA_LOSS`, journal and offset in the `weir-journal` / `weir-offset` metadata |
//! | `Io` | `INTERNAL` |

use std::error::Error as _;
use std::time::{SystemTime, UNIX_EPOCH};

use sha1::{Digest as _, Sha1};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::broker::revision::ExpectRevision;
use crate::broker::spec::validate_journal_name;
use crate::broker::{
    AppendRequest, BrokerError, FragmentInfo, JournalChange, JournalSpec, Label, LabelSelector,
    LabelSet,
};
use crate::protocol::gazette as wire;

/// Metadata key of a `DATA_LOSS` status naming the damaged journal.
pub const CORRUPT_JOURNAL_KEY: &str = "weir-journal";
/// Metadata key of a `DATA_LOSS` status giving the first damaged offset.
pub const CORRUPT_OFFSET_KEY: &str = "weir-offset";

fn invalid(field: &str, reason: impl std::fmt::Display) -> BrokerError {
    BrokerError::InvalidArgument(format!("{field}: {reason}"))
}

/// A wire label set (absent means empty) as weir's, validated.
pub fn label_set_from_wire(
    set: Option<&wire::LabelSet>,
    field: &str,
) -> Result<LabelSet, BrokerError> {
    let Some(set) = set else {
        return Ok(LabelSet::new());
    };
    if let Some(label) = set.labels.iter().find(|label| label.prefix) {
        return Err(invalid(
            field,
            format!(
                "label {}={}: prefix matching is not supported",
                label.name, label.value
            ),
        ));
    }
    let set: LabelSet = set
        .labels
        .iter()
        .map(|label| Label::new(&label.name, &label.value))
        .collect();
    set.validate().map_err(|err| invalid(field, err))?;
    Ok(set)
}

/// weir's label set on the wire.
pub fn label_set_to_wire(set: &LabelSet) -> wire::LabelSet {
    wire::LabelSet {
        labels: set
            .iter()
            .map(|label| wire::Label {
                name: label.name.clone(),
                value: label.value.clone(),
                prefix: false,
            })
            .collect(),
    }
}

/// A wire selector (absent means "everything") as weir's, validated
/// (including that `prefix` meta-label values end in `/`).
pub fn selector_from_wire(
    selector: Option<&wire::LabelSelector>,
    field: &str,
) -> Result<LabelSelector, BrokerError> {
    let Some(selector) = selector else {
        return Ok(LabelSelector::all());
    };
    let selector = LabelSelector {
        include: label_set_from_wire(selector.include.as_ref(), &format!("{field}.include"))?,
        exclude: label_set_from_wire(selector.exclude.as_ref(), &format!("{field}.exclude"))?,
    };
    selector.validate().map_err(|err| invalid(field, err))?;
    Ok(selector)
}

/// weir's selector on the wire.
pub fn selector_to_wire(selector: &LabelSelector) -> wire::LabelSelector {
    wire::LabelSelector {
        include: Some(label_set_to_wire(&selector.include)),
        exclude: Some(label_set_to_wire(&selector.exclude)),
    }
}

/// A wire journal spec as weir's, validated (see the [module docs](self)
/// for which fields weir keeps).
pub fn spec_from_wire(spec: wire::JournalSpec) -> Result<JournalSpec, BrokerError> {
    let field = |name: &str| format!("spec {:?}: {name}", spec.name);
    let replication = u32::try_from(spec.replication).map_err(|_| {
        invalid(
            &field("replication"),
            format!("{} is negative", spec.replication),
        )
    })?;
    let fragment = spec.fragment.clone().unwrap_or_default();
    let fragment_length = u64::try_from(fragment.length).map_err(|_| {
        invalid(
            &field("fragment.length"),
            format!("{} is negative", fragment.length),
        )
    })?;
    if wire::CompressionCodec::try_from(fragment.compression_codec).is_err() {
        return Err(invalid(
            &field("fragment.compression_codec"),
            format!("{} is not a codec", fragment.compression_codec),
        ));
    }
    if spec.max_append_rate < 0 {
        return Err(invalid(
            &field("max_append_rate"),
            format!("{} is negative", spec.max_append_rate),
        ));
    }
    let labels = label_set_from_wire(spec.labels.as_ref(), &field("labels"))?;
    let spec = JournalSpec {
        name: spec.name,
        labels,
        replication,
        fragment_length,
        flags: spec.flags,
    };
    spec.validate()?;
    Ok(spec)
}

/// weir's journal spec on the wire.
pub fn spec_to_wire(spec: &JournalSpec) -> wire::JournalSpec {
    wire::JournalSpec {
        name: spec.name.clone(),
        // Both are validated far below the wire types' ranges.
        replication: i32::try_from(spec.replication).unwrap_or(i32::MAX),
        labels: Some(label_set_to_wire(&spec.labels)),
        fragment: Some(wire::journal_spec::Fragment {
            length: i64::try_from(spec.fragment_length).unwrap_or(i64::MAX),
            compression_codec: wire::CompressionCodec::None as i32,
            ..Default::default()
        }),
        flags: spec.flags,
        max_append_rate: 0,
        suspend: None,
    }
}

/// One change of an `ApplyRequest` as weir's, with Gazette's rules for
/// `expect_mod_revision`: an upsert takes `-1` (any), `0` (must not exist)
/// or a positive revision; a delete takes `-1` or a positive revision.
pub fn change_from_wire(
    change: wire::apply_request::Change,
) -> Result<(JournalChange, ExpectRevision), BrokerError> {
    let expectation = ExpectRevision::from_wire(change.expect_mod_revision)
        .map_err(|reason| invalid("expect_mod_revision", reason))?;
    match (change.upsert, change.delete.is_empty()) {
        (Some(_), false) => Err(invalid(
            "change",
            "both upsert and delete are set (expected exactly one)",
        )),
        (None, true) => Err(invalid(
            "change",
            "neither upsert nor delete is set (expected exactly one)",
        )),
        (Some(spec), true) => Ok((JournalChange::Upsert(spec_from_wire(spec)?), expectation)),
        (None, false) => {
            validate_journal_name(&change.delete).map_err(|err| invalid("delete", err))?;
            if expectation == ExpectRevision::Absent {
                return Err(invalid(
                    "expect_mod_revision",
                    "a delete expects -1 or the journal's revision, not 0",
                ));
            }
            Ok((JournalChange::Delete(change.delete), expectation))
        }
    }
}

/// A weir change on the wire, expecting `expect`.
pub fn change_to_wire(
    change: &JournalChange,
    expect: ExpectRevision,
) -> wire::apply_request::Change {
    let expect_mod_revision = expect.to_wire();
    match change {
        JournalChange::Upsert(spec) => wire::apply_request::Change {
            expect_mod_revision,
            upsert: Some(spec_to_wire(spec)),
            delete: String::new(),
        },
        JournalChange::Delete(name) => wire::apply_request::Change {
            expect_mod_revision,
            upsert: None,
            delete: name.clone(),
        },
    }
}

/// The parameters of an append (its first message) as a weir request
/// without content. Offset 0 means "at the write head", as in Gazette,
/// unless weir's `weir_expect_empty` extension asks for a head of 0.
pub fn append_from_wire(first: &wire::AppendRequest) -> Result<AppendRequest, BrokerError> {
    validate_journal_name(&first.journal).map_err(|err| invalid("journal", err))?;
    let expect_offset = match first.offset {
        0 if first.weir_expect_empty => Some(0),
        0 => None,
        offset if offset > 0 => Some(offset),
        offset => return Err(invalid("offset", format!("{offset} is negative"))),
    };
    let check_registers = first
        .check_registers
        .as_ref()
        .map(|selector| selector_from_wire(Some(selector), "check_registers"))
        .transpose()?;
    Ok(AppendRequest {
        journal: first.journal.clone(),
        content: bytes::Bytes::new(),
        check_registers,
        union_registers: label_set_from_wire(first.union_registers.as_ref(), "union_registers")?,
        subtract_registers: label_set_from_wire(
            first.subtract_registers.as_ref(),
            "subtract_registers",
        )?,
        expect_offset,
    })
}

/// The first message of an append of `request`, without content.
///
/// `expect_offset: Some(0)` is sent as offset 0 with weir's
/// `weir_expect_empty` extension (on Gazette's wire offset 0 alone means
/// "at the write head, unchecked"); a weir server keeps the check, and a
/// Gazette broker, which ignores the extension, would not.
pub fn append_to_wire(request: &AppendRequest) -> Result<wire::AppendRequest, BrokerError> {
    let offset = match request.expect_offset {
        None | Some(0) => 0,
        Some(offset) if offset > 0 => offset,
        Some(offset) => {
            return Err(invalid(
                "expect_offset",
                format!(
                    "{offset} cannot be checked over Gazette's protocol (only offsets above 0 can)"
                ),
            ));
        }
    };
    Ok(wire::AppendRequest {
        journal: request.journal.clone(),
        offset,
        check_registers: request.check_registers.as_ref().map(selector_to_wire),
        union_registers: Some(label_set_to_wire(&request.union_registers)),
        subtract_registers: Some(label_set_to_wire(&request.subtract_registers)),
        weir_expect_empty: request.expect_offset == Some(0),
        ..Default::default()
    })
}

/// Fragment `[begin, end)` of `journal` on the wire (uncompressed, local).
pub fn fragment_to_wire(
    journal: &str,
    begin: i64,
    end: i64,
    mod_time: Option<SystemTime>,
) -> wire::Fragment {
    wire::Fragment {
        journal: journal.to_string(),
        begin,
        end,
        sum: None,
        compression_codec: wire::CompressionCodec::None as i32,
        backing_store: String::new(),
        mod_time: mod_time.map_or(0, unix_seconds),
        path_postfix: String::new(),
    }
}

/// Gazette's `SHA1Sum` of `content`: the 20-byte digest split big-endian
/// into 8, 8 and 4 bytes. Empty content has the all-zero sum, as Gazette
/// defines for the empty fragment.
pub fn sha1_sum(content: &[u8]) -> wire::Sha1Sum {
    if content.is_empty() {
        return wire::Sha1Sum::default();
    }
    let digest: [u8; 20] = Sha1::digest(content).into();
    let (part1, rest) = digest.split_at(8);
    let (part2, part3) = rest.split_at(8);
    wire::Sha1Sum {
        part1: u64::from_be_bytes(part1.try_into().unwrap_or_default()),
        part2: u64::from_be_bytes(part2.try_into().unwrap_or_default()),
        part3: u32::from_be_bytes(part3.try_into().unwrap_or_default()),
    }
}

/// A listed fragment of `journal` on the wire.
pub fn fragment_info_to_wire(journal: &str, fragment: &FragmentInfo) -> wire::Fragment {
    fragment_to_wire(journal, fragment.begin, fragment.end, fragment.mod_time)
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
    })
}

/// The gRPC status of an error that is not carried as a response status
/// (see the [module docs](self)).
pub fn status_of(err: &BrokerError) -> Status {
    match err {
        BrokerError::InvalidArgument(message) => Status::invalid_argument(message),
        BrokerError::LimitExceeded(message) => Status::resource_exhausted(message),
        BrokerError::Unavailable(message) => Status::unavailable(message),
        BrokerError::Corrupt {
            journal, offset, ..
        } => {
            let mut status = Status::data_loss(err.to_string());
            if let Ok(value) = MetadataValue::try_from(journal.as_str()) {
                status.metadata_mut().insert(CORRUPT_JOURNAL_KEY, value);
            }
            status
                .metadata_mut()
                .insert(CORRUPT_OFFSET_KEY, MetadataValue::from(*offset));
            status
        }
        BrokerError::Io { context, source } => Status::internal(format!("{context}: {source}")),
        BrokerError::JournalNotFound(_) => Status::not_found(err.to_string()),
        BrokerError::RegisterMismatch { .. } | BrokerError::WrongAppendOffset { .. } => {
            Status::failed_precondition(err.to_string())
        }
        BrokerError::OffsetNotYetAvailable { .. } => Status::out_of_range(err.to_string()),
        BrokerError::NotAllowed { .. } => Status::permission_denied(err.to_string()),
    }
}

/// The error a client reports for a failed call: the inverse of
/// [`status_of`]. Transport failures (connection refused or reset, a
/// server that went away mid-stream) become the transient
/// [`BrokerError::Unavailable`].
pub fn error_of_status(status: &Status) -> BrokerError {
    let message = status.message().to_string();
    // A status tonic made from a transport error keeps its source; one sent
    // by the server has none.
    if status.source().is_some() {
        return BrokerError::Unavailable(format!(
            "transport failure ({}): {message}",
            status.code()
        ));
    }
    match status.code() {
        Code::InvalidArgument => BrokerError::InvalidArgument(message),
        Code::ResourceExhausted => BrokerError::LimitExceeded(message),
        Code::Unavailable | Code::Cancelled | Code::Unknown => BrokerError::Unavailable(message),
        Code::DataLoss => {
            let metadata = status.metadata();
            let text = |key| metadata.get(key).and_then(|value| value.to_str().ok());
            let journal = text(CORRUPT_JOURNAL_KEY).unwrap_or_default().to_string();
            let offset = text(CORRUPT_OFFSET_KEY)
                .and_then(|offset| offset.parse().ok())
                .unwrap_or(-1);
            let prefix = format!("corrupt journal {journal} at offset {offset}: ");
            let reason = message
                .strip_prefix(&prefix)
                .unwrap_or(&message)
                .to_string();
            BrokerError::Corrupt {
                journal,
                offset,
                reason,
            }
        }
        code => BrokerError::Io {
            context: format!("the server answered {code:?}: {message}"),
            source: std::io::Error::other(message.clone()),
        },
    }
}

/// The error of a response status other than `OK` that has no richer
/// meaning at its call site.
pub fn error_of_wire_status(status: i32, journal: &str) -> BrokerError {
    let status = wire::Status::try_from(status);
    match status {
        Ok(wire::Status::JournalNotFound) => BrokerError::JournalNotFound(journal.to_string()),
        Ok(wire::Status::NotAllowed) => BrokerError::NotAllowed {
            journal: journal.to_string(),
            reason: "the broker answered NOT_ALLOWED: the journal's flags forbid it".into(),
        },
        Ok(
            wire::Status::NoJournalPrimaryBroker
            | wire::Status::NotJournalPrimaryBroker
            | wire::Status::InsufficientJournalBrokers
            | wire::Status::NotJournalBroker
            | wire::Status::WrongRoute
            | wire::Status::ProposalMismatch
            | wire::Status::FragmentStoreUnhealthy,
        ) => BrokerError::Unavailable(format!(
            "{journal}: the broker answered {}",
            status.map_or("?", |s| s.as_str_name())
        )),
        Ok(status) => BrokerError::InvalidArgument(format!(
            "{journal}: the broker answered {}",
            status.as_str_name()
        )),
        Err(_) => BrokerError::InvalidArgument(format!(
            "{journal}: the broker answered an unknown status"
        )),
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn wire_labels(pairs: &[(&str, &str)]) -> wire::LabelSet {
        wire::LabelSet {
            labels: pairs
                .iter()
                .map(|(name, value)| wire::Label {
                    name: name.to_string(),
                    value: value.to_string(),
                    prefix: false,
                })
                .collect(),
        }
    }

    #[test]
    fn sha1_sums_split_the_digest_big_endian_and_empty_is_zero() {
        // SHA1("abc") = a9993e36 4706816a ba3e2571 7850c26c 9cd0d89d.
        let sum = sha1_sum(b"abc");
        assert_eq!(sum.part1, 0xa999_3e36_4706_816a);
        assert_eq!(sum.part2, 0xba3e_2571_7850_c26c);
        assert_eq!(sum.part3, 0x9cd0_d89d);
        assert_eq!(sha1_sum(b""), wire::Sha1Sum::default());
    }

    #[test]
    fn labels_are_sorted_on_the_way_in_and_prefix_labels_refused() {
        let set = label_set_from_wire(Some(&wire_labels(&[("zz", "1"), ("aa", "2")])), "labels")
            .expect("valid");
        assert_eq!(set.to_string(), "aa=2,zz=1");
        assert_eq!(
            label_set_to_wire(&set),
            wire_labels(&[("aa", "2"), ("zz", "1")])
        );
        let mut prefixed = wire_labels(&[("aa", "x")]);
        prefixed.labels[0].prefix = true;
        let err = label_set_from_wire(Some(&prefixed), "labels").expect_err("prefix");
        assert!(err.to_string().contains("prefix matching"), "{err}");
        let err = label_set_from_wire(Some(&wire_labels(&[("a b", "1")])), "union_registers")
            .expect_err("bad name");
        assert!(err.to_string().contains("union_registers"), "{err}");
    }

    #[test]
    fn selectors_round_trip_and_check_meta_prefixes() {
        let selector: LabelSelector = "kind=sum,!retired".parse().expect("selector");
        let back = selector_from_wire(Some(&selector_to_wire(&selector)), "selector");
        assert_eq!(back.expect("round trip"), selector);
        assert_eq!(
            selector_from_wire(None, "selector").expect("absent"),
            LabelSelector::all()
        );
        let unterminated = wire::LabelSelector {
            include: Some(wire_labels(&[("prefix", "a/b")])),
            exclude: None,
        };
        let err = selector_from_wire(Some(&unterminated), "selector").expect_err("prefix");
        assert!(
            err.to_string().starts_with("invalid argument: selector"),
            "{err}"
        );
    }

    #[test]
    fn specs_round_trip_and_bad_fields_are_named() {
        let spec = JournalSpec {
            fragment_length: 4096,
            flags: crate::broker::spec::O_RDONLY,
            replication: 3,
            ..JournalSpec::new("a/b/c/d").with_labels("kind=sum".parse().expect("labels"))
        };
        let wire_spec = spec_to_wire(&spec);
        assert_eq!(
            wire_spec.fragment.as_ref().map(|f| f.compression_codec),
            Some(wire::CompressionCodec::None as i32)
        );
        assert_eq!(spec_from_wire(wire_spec.clone()).expect("round trip"), spec);
        type Breakage = fn(&mut wire::JournalSpec);
        let cases: [(&str, Breakage); 7] = [
            ("replication", |s| s.replication = -1),
            ("replication", |s| s.replication = 9),
            ("fragment.length", |s| {
                s.fragment.as_mut().expect("fragment").length = -5
            }),
            ("fragment_length", |s| {
                s.fragment.as_mut().expect("fragment").length = 7
            }),
            ("compression_codec", |s| {
                s.fragment.as_mut().expect("fragment").compression_codec = 99
            }),
            ("max_append_rate", |s| s.max_append_rate = -1),
            ("journal name", |s| s.name = "no".into()),
        ];
        for (field, break_it) in cases {
            let mut bad = wire_spec.clone();
            break_it(&mut bad);
            let err = spec_from_wire(bad).expect_err(field);
            assert!(
                matches!(&err, BrokerError::InvalidArgument(m) if m.contains(field)),
                "{field}: {err}"
            );
        }
    }

    #[test]
    fn apply_changes_follow_gazettes_revision_rules() {
        let upsert = |expect| wire::apply_request::Change {
            expect_mod_revision: expect,
            upsert: Some(spec_to_wire(&JournalSpec::new("a/b/c"))),
            delete: String::new(),
        };
        let delete = |expect| wire::apply_request::Change {
            expect_mod_revision: expect,
            upsert: None,
            delete: "a/b/c".into(),
        };
        let expect = |change| change_from_wire(change).map(|(_, expect)| expect);
        assert_eq!(expect(upsert(-1)).expect("any"), ExpectRevision::Any);
        assert_eq!(expect(upsert(0)).expect("absent"), ExpectRevision::Absent);
        assert_eq!(expect(upsert(7)).expect("equal"), ExpectRevision::Equal(7));
        assert!(expect(upsert(-2)).is_err());
        assert!(expect(delete(0)).is_err());
        assert_eq!(expect(delete(7)).expect("equal"), ExpectRevision::Equal(7));
        let both = wire::apply_request::Change {
            delete: "a/b/c".into(),
            ..upsert(-1)
        };
        assert!(expect(both).is_err());
        assert!(expect(wire::apply_request::Change::default()).is_err());
        let (change, expectation) = change_from_wire(change_to_wire(
            &JournalChange::Delete("x/y/z".into()),
            ExpectRevision::Equal(3),
        ))
        .expect("round trip");
        assert!(matches!(change, JournalChange::Delete(name) if name == "x/y/z"));
        assert_eq!(expectation, ExpectRevision::Equal(3));
    }

    #[test]
    fn append_parameters_round_trip_except_an_uncheckable_offset() {
        let request = AppendRequest {
            journal: "a/b/c".into(),
            check_registers: Some("author=1".parse().expect("selector")),
            union_registers: "author=2".parse().expect("labels"),
            subtract_registers: "author=1".parse().expect("labels"),
            expect_offset: Some(10),
            ..Default::default()
        };
        let back = append_from_wire(&append_to_wire(&request).expect("to wire")).expect("back");
        assert_eq!(back.expect_offset, Some(10));
        assert_eq!(back.check_registers, request.check_registers);
        assert_eq!(back.union_registers, request.union_registers);
        assert_eq!(back.subtract_registers, request.subtract_registers);
        let unchecked = AppendRequest {
            expect_offset: None,
            ..request.clone()
        };
        let wire_request = append_to_wire(&unchecked).expect("unchecked");
        assert_eq!(wire_request.offset, 0);
        assert_eq!(
            append_from_wire(&wire_request).expect("back").expect_offset,
            None
        );
        let negative_expectation = AppendRequest {
            expect_offset: Some(-1),
            ..request.clone()
        };
        assert!(append_to_wire(&negative_expectation).is_err());
        // An expected empty journal survives the trip in weir's extension.
        let empty = AppendRequest {
            expect_offset: Some(0),
            ..request.clone()
        };
        let on_the_wire = append_to_wire(&empty).expect("expressible");
        assert_eq!(
            (on_the_wire.offset, on_the_wire.weir_expect_empty),
            (0, true)
        );
        assert_eq!(
            append_from_wire(&on_the_wire).expect("back").expect_offset,
            Some(0)
        );
        let negative = wire::AppendRequest {
            journal: "a/b/c".into(),
            offset: -3,
            ..Default::default()
        };
        assert!(append_from_wire(&negative).is_err());
    }

    #[test]
    fn errors_survive_the_trip_through_a_status() {
        let corrupt = BrokerError::Corrupt {
            journal: "a/b/c".into(),
            offset: 42,
            reason: "bad checksum".into(),
        };
        let status = status_of(&corrupt);
        assert_eq!(status.code(), Code::DataLoss);
        match error_of_status(&status) {
            BrokerError::Corrupt {
                journal,
                offset,
                reason,
            } => assert_eq!(
                (journal.as_str(), offset, reason.as_str()),
                ("a/b/c", 42, "bad checksum")
            ),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let cases = [
            (
                BrokerError::InvalidArgument("offset: bad".into()),
                Code::InvalidArgument,
            ),
            (
                BrokerError::LimitExceeded("too big".into()),
                Code::ResourceExhausted,
            ),
            (
                BrokerError::Unavailable("shutting down".into()),
                Code::Unavailable,
            ),
            (
                BrokerError::Io {
                    context: "reading".into(),
                    source: std::io::Error::other("disk"),
                },
                Code::Internal,
            ),
        ];
        for (err, code) in cases {
            let status = status_of(&err);
            assert_eq!(status.code(), code, "{err}");
            let back = error_of_status(&status);
            assert_eq!(back.is_transient(), err.is_transient(), "{err} / {back}");
            if !matches!(err, BrokerError::Io { .. }) {
                assert_eq!(back.to_string(), err.to_string());
            }
        }
        assert!(matches!(
            error_of_wire_status(wire::Status::JournalNotFound as i32, "a/b/c"),
            BrokerError::JournalNotFound(j) if j == "a/b/c"
        ));
        assert!(error_of_wire_status(wire::Status::NotJournalBroker as i32, "j").is_transient());
        assert!(!error_of_wire_status(wire::Status::Suspended as i32, "j").is_transient());
        assert!(!error_of_wire_status(1234, "j").is_transient());
    }
}
