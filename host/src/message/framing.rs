//! JSON-lines framing (`application/x-ndjson`), Gazette's default.
//!
//! A journal of this content type holds one compact JSON object per line,
//! each ending in exactly one `\n`. The message UUID is the object's `"UUID"`
//! field, written first (as Go's encoder writes a struct whose first field is
//! `UUID`).
//!
//! - Writing: [`frame`] validates a document (a single-line JSON object with
//!   no top-level `"UUID"`, which the host assigns) and writes it with the
//!   UUID inserted as its first field; [`ack_document`] is the acknowledgement
//!   message `{"UUID":"…"}`.
//! - Reading: [`LineDecoder`] splits journal bytes into lines with exact
//!   `[begin, end)` offsets, across read chunks; [`extract_uuid`] reads a
//!   line's UUID.
//!
//! Every malformed input is a [`FramingError`] naming the offset; nothing here
//! panics on bad bytes.
//!
//! ```
//! use weir::message::{frame, extract_uuid};
//!
//! let uuid = uuid::Uuid::from_u128(0x0123_4567_89ab_1def_8000_0102_0304_0506);
//! let mut out = Vec::new();
//! frame(br#"{"SeqNo":1}"#, &uuid, &mut out).unwrap();
//! assert_eq!(out, b"{\"UUID\":\"01234567-89ab-1def-8000-010203040506\",\"SeqNo\":1}\n");
//! assert_eq!(extract_uuid(&out[..out.len() - 1], 0).unwrap(), uuid);
//! ```

use std::borrow::Cow;
use std::fmt;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

/// The content type of JSON-lines journals.
pub const NDJSON: &str = "application/x-ndjson";

/// Errors of JSON-lines framing and decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// A document to publish is not one JSON object.
    #[error("document is not a JSON object: {0}")]
    NotAnObject(String),
    /// A document to publish spans more than one line.
    #[error("document contains a newline")]
    MultiLine,
    /// A document to publish already has a top-level `"UUID"` (the host
    /// assigns UUIDs).
    #[error("document already has a top-level \"UUID\" field")]
    HasUuid,
    /// A document or line exceeds the size limit.
    #[error("document of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A journal line is not a JSON object with a valid `"UUID"` string.
    #[error("bad message at offset {offset}: {reason}")]
    BadLine {
        /// Offset of the line's first byte.
        offset: i64,
        /// What was wrong.
        reason: String,
    },
    /// A journal line grew past the limit without a newline.
    #[error("line at offset {offset} exceeds {max} bytes without a newline")]
    LineTooLong {
        /// Offset of the line's first byte.
        offset: i64,
        /// The limit.
        max: usize,
    },
    /// A read ended in the middle of a line (Gazette's `ErrUnexpectedEOF`).
    #[error("read ended inside a line of {len} bytes at offset {offset}")]
    PartialLine {
        /// Offset of the line's first byte.
        offset: i64,
        /// Bytes of the line seen.
        len: usize,
    },
    /// A read chunk started before bytes already decoded.
    #[error("read chunk at offset {got} overlaps decoded bytes (expected {expected})")]
    OffsetRegressed {
        /// Offset the decoder expected.
        expected: i64,
        /// Offset the chunk had.
        got: i64,
    },
}

/// Writes `doc` framed with `uuid` as its first field, plus `\n`, to `out`.
///
/// `doc` must be one JSON object on one line (surrounding whitespace is
/// dropped) without a top-level `"UUID"` key, and at most `max_doc_bytes`
/// long ([`frame_with_limit`]; [`frame`] uses
/// [`DEFAULT_MAX_MESSAGE_BYTES`](crate::limits::DEFAULT_MAX_MESSAGE_BYTES)).
/// On error `out` is unchanged.
pub fn frame(doc: &[u8], uuid: &uuid::Uuid, out: &mut Vec<u8>) -> Result<(), FramingError> {
    frame_with_limit(doc, uuid, out, crate::limits::DEFAULT_MAX_MESSAGE_BYTES)
}

/// [`frame`] with an explicit document size limit (bytes).
pub fn frame_with_limit(
    doc: &[u8],
    uuid: &uuid::Uuid,
    out: &mut Vec<u8>,
    max_doc_bytes: usize,
) -> Result<(), FramingError> {
    if doc.len() > max_doc_bytes {
        return Err(FramingError::TooLarge {
            len: doc.len(),
            max: max_doc_bytes,
        });
    }
    let doc = doc.trim_ascii();
    if doc.contains(&b'\n') {
        return Err(FramingError::MultiLine);
    }
    let top = serde_json::from_slice::<TopLevel>(doc)
        .map_err(|err| FramingError::NotAnObject(err.to_string()))?;
    if top.has_uuid {
        return Err(FramingError::HasUuid);
    }
    // Validated: `doc` starts with '{' and ends with '}'.
    let body = &doc[1..];
    out.reserve(doc.len() + UUID_PREFIX_LEN + 3);
    write_uuid_field(uuid, out);
    if !body.trim_ascii_start().starts_with(b"}") {
        out.push(b',');
    }
    out.extend_from_slice(body);
    out.push(b'\n');
    Ok(())
}

/// The acknowledgement document of `uuid`: `{"UUID":"…"}\n`.
pub fn ack_document(uuid: &uuid::Uuid) -> Vec<u8> {
    let mut out = Vec::with_capacity(UUID_PREFIX_LEN + 3);
    write_uuid_field(uuid, &mut out);
    out.extend_from_slice(b"}\n");
    out
}

/// `{"UUID":"` + 36 + `"`.
const UUID_PREFIX_LEN: usize = 9 + 36 + 1;

fn write_uuid_field(uuid: &uuid::Uuid, out: &mut Vec<u8>) {
    let mut buf = uuid::Uuid::encode_buffer();
    out.extend_from_slice(b"{\"UUID\":\"");
    out.extend_from_slice(uuid.hyphenated().encode_lower(&mut buf).as_bytes());
    out.push(b'"');
}

/// Reads the `"UUID"` of one JSON line (without its `\n`) found at `offset`.
/// The whole line is validated as JSON.
pub fn extract_uuid(line: &[u8], offset: i64) -> Result<uuid::Uuid, FramingError> {
    #[derive(Deserialize)]
    struct OnlyUuid<'a> {
        #[serde(rename = "UUID", borrow)]
        uuid: Cow<'a, str>,
    }
    let bad = |reason: String| FramingError::BadLine { offset, reason };
    let parsed: OnlyUuid<'_> = serde_json::from_slice(line).map_err(|err| bad(err.to_string()))?;
    uuid::Uuid::try_parse(&parsed.uuid).map_err(|err| bad(format!("invalid UUID: {err}")))
}

/// One line of a journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Offset of the line's first byte.
    pub begin: i64,
    /// Offset just past its `\n`.
    pub end: i64,
    /// The line without its `\n`.
    pub line: Bytes,
}

/// Splits journal bytes into [`Frame`]s, carrying a partial line from one
/// read chunk to the next. Lines that lie within one chunk are zero-copy
/// slices of it.
#[derive(Debug)]
pub struct LineDecoder {
    /// Offset of the next byte expected (the end of the last chunk).
    next: i64,
    /// Bytes of a line begun but not finished; it starts at `next - partial.len()`.
    partial: BytesMut,
    max_line: usize,
}

impl LineDecoder {
    /// A decoder for a read starting at `offset`, rejecting lines longer than
    /// `max_line` bytes.
    pub fn new(offset: i64, max_line: usize) -> LineDecoder {
        LineDecoder {
            next: offset,
            partial: BytesMut::new(),
            max_line,
        }
    }

    /// Offset where the next (not yet complete) line begins.
    pub fn line_offset(&self) -> i64 {
        self.next - self.partial.len() as i64
    }

    /// Decodes `content`, read at journal `offset`, appending complete lines
    /// to `out`. A chunk that starts past the expected offset (content was
    /// deleted: Gazette's offset jump) drops any partial line and continues.
    pub fn decode(
        &mut self,
        offset: i64,
        content: &Bytes,
        out: &mut Vec<Frame>,
    ) -> Result<(), FramingError> {
        if offset < self.next {
            return Err(FramingError::OffsetRegressed {
                expected: self.next,
                got: offset,
            });
        }
        if offset > self.next {
            tracing::warn!(
                expected = self.next,
                offset,
                dropped = self.partial.len(),
                "offset jump while reading; continuing at the new offset"
            );
            self.partial.clear();
            self.next = offset;
        }

        let mut start = 0;
        while let Some(pos) = content[start..].iter().position(|&b| b == b'\n') {
            let nl = start + pos;
            let frame = if self.partial.is_empty() {
                let begin = offset + start as i64;
                Frame {
                    begin,
                    end: offset + nl as i64 + 1,
                    line: content.slice(start..nl),
                }
            } else {
                let begin = self.line_offset();
                self.partial.extend_from_slice(&content[start..nl]);
                let line = self.partial.split().freeze();
                Frame {
                    begin,
                    end: offset + nl as i64 + 1,
                    line,
                }
            };
            if frame.line.len() > self.max_line {
                return Err(FramingError::LineTooLong {
                    offset: frame.begin,
                    max: self.max_line,
                });
            }
            out.push(frame);
            start = nl + 1;
        }
        let rest = &content[start..];
        if self.partial.len() + rest.len() > self.max_line {
            let begin = if self.partial.is_empty() {
                offset + start as i64
            } else {
                self.line_offset()
            };
            return Err(FramingError::LineTooLong {
                offset: begin,
                max: self.max_line,
            });
        }
        self.partial.extend_from_slice(rest);
        self.next = offset + content.len() as i64;
        Ok(())
    }

    /// Ends the read: an unfinished line is an error, never a frame.
    pub fn finish(&self) -> Result<(), FramingError> {
        if self.partial.is_empty() {
            Ok(())
        } else {
            Err(FramingError::PartialLine {
                offset: self.line_offset(),
                len: self.partial.len(),
            })
        }
    }
}

/// Whether a JSON object has a top-level `"UUID"` key; deserializing it
/// validates the whole document and fails on anything but an object.
struct TopLevel {
    has_uuid: bool,
}

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TopLevelVisitor)
    }
}

struct TopLevelVisitor;

impl<'de> Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
        let mut has_uuid = false;
        while let Some(IsUuid(is)) = map.next_key()? {
            has_uuid |= is;
            map.next_value::<IgnoredAny>()?;
        }
        Ok(TopLevel { has_uuid })
    }
}

/// A map key, reduced to whether it equals `"UUID"` (without allocating).
struct IsUuid(bool);

impl<'de> Deserialize<'de> for IsUuid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = IsUuid;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<IsUuid, E> {
                Ok(IsUuid(key == "UUID"))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;

    const U: uuid::Uuid = uuid::Uuid::from_u128(0x789a_bcde_3456_1012_bc02_0102_0304_0506);
    const U_STR: &str = "789abcde-3456-1012-bc02-010203040506";

    fn framed(doc: &[u8]) -> Result<String, FramingError> {
        let mut out = b"prior;".to_vec();
        frame(doc, &U, &mut out)?;
        Ok(String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn uuid_becomes_the_first_field() {
        assert_eq!(
            framed(br#"{"ID":[1,2],"SeqNo":3}"#).unwrap(),
            format!("prior;{{\"UUID\":\"{U_STR}\",\"ID\":[1,2],\"SeqNo\":3}}\n")
        );
        assert_eq!(
            framed(b"  {}\r\n ").unwrap(),
            format!("prior;{{\"UUID\":\"{U_STR}\"}}\n")
        );
        assert_eq!(
            framed(b"{ }").unwrap(),
            format!("prior;{{\"UUID\":\"{U_STR}\" }}\n")
        );
        // A nested "UUID" is the document's business.
        assert_eq!(
            framed(br#"{"a":{"UUID":1}}"#).unwrap(),
            format!("prior;{{\"UUID\":\"{U_STR}\",\"a\":{{\"UUID\":1}}}}\n")
        );
    }

    #[test]
    fn invalid_documents_are_rejected_and_leave_the_output_alone() {
        type Check = fn(&FramingError) -> bool;
        let cases: [(&[u8], Check); 8] = [
            (b"[1,2]", |e| matches!(e, FramingError::NotAnObject(_))),
            (b"\"x\"", |e| matches!(e, FramingError::NotAnObject(_))),
            (b"{\"a\":", |e| matches!(e, FramingError::NotAnObject(_))),
            (b"{}{}", |e| matches!(e, FramingError::NotAnObject(_))),
            (b"", |e| matches!(e, FramingError::NotAnObject(_))),
            (b"{\"a\":1,\n\"b\":2}", |e| {
                matches!(e, FramingError::MultiLine)
            }),
            (br#"{"a":1,"UUID":"x"}"#, |e| {
                matches!(e, FramingError::HasUuid)
            }),
            (br#"{"\u0055UID":"x"}"#, |e| {
                matches!(e, FramingError::HasUuid)
            }),
        ];
        for (doc, check) in cases {
            let mut out = b"prior".to_vec();
            let err = frame(doc, &U, &mut out).expect_err("must be rejected");
            assert!(check(&err), "{:?}: {err:?}", String::from_utf8_lossy(doc));
            assert_eq!(out, b"prior");
        }
        let mut out = Vec::new();
        let err = frame_with_limit(b"{\"a\":12345}", &U, &mut out, 5).expect_err("too large");
        assert_eq!(err, FramingError::TooLarge { len: 11, max: 5 });
    }

    #[test]
    fn ack_document_is_just_the_uuid() {
        assert_eq!(
            ack_document(&U),
            format!("{{\"UUID\":\"{U_STR}\"}}\n").into_bytes()
        );
        assert_eq!(extract_uuid(&ack_document(&U)[..47], 7), Ok(U));
    }

    #[test]
    fn extract_uuid_reports_bad_lines_with_their_offset() {
        assert_eq!(
            extract_uuid(format!("{{\"x\":1,\"UUID\":\"{U_STR}\"}}").as_bytes(), 0),
            Ok(U)
        );
        // Escaped characters take the slow (owned) path and still parse.
        let escaped = format!("{{\"UUID\":\"\\u0037{}\"}}", &U_STR[1..]);
        assert_eq!(extract_uuid(escaped.as_bytes(), 0), Ok(U));
        for line in [
            &b"not json"[..],
            b"{\"x\":1}",
            b"{\"UUID\":\"nope\"}",
            b"{\"UUID\":12}",
            b"[]",
            b"{\"UUID\":\"789abcde-3456-1012-bc02-010203040506\"",
        ] {
            match extract_uuid(line, 42) {
                Err(FramingError::BadLine { offset: 42, .. }) => {}
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(line)),
            }
        }
    }

    fn decode_all(start: i64, chunks: &[&[u8]]) -> (Vec<Frame>, LineDecoder) {
        let mut decoder = LineDecoder::new(start, 1 << 20);
        let mut frames = Vec::new();
        let mut offset = start;
        for chunk in chunks {
            decoder
                .decode(offset, &Bytes::copy_from_slice(chunk), &mut frames)
                .unwrap();
            offset += chunk.len() as i64;
        }
        (frames, decoder)
    }

    #[test]
    fn lines_split_across_chunks_keep_exact_offsets() {
        let (frames, decoder) = decode_all(100, &[b"ab\ncd", b"e", b"f\n\ngh\n"]);
        let got: Vec<(i64, i64, &[u8])> = frames
            .iter()
            .map(|f| (f.begin, f.end, &f.line[..]))
            .collect();
        assert_eq!(
            got,
            vec![
                (100, 103, &b"ab"[..]),
                (103, 108, b"cdef"),
                (108, 109, b""),
                (109, 112, b"gh")
            ]
        );
        assert_eq!(decoder.finish(), Ok(()));
        assert_eq!(decoder.line_offset(), 112);
    }

    #[test]
    fn a_partial_line_at_the_end_is_reported_not_returned() {
        let (frames, decoder) = decode_all(0, &[b"ab\ncd", b"e"]);
        assert_eq!(frames.len(), 1);
        assert_eq!(
            decoder.finish(),
            Err(FramingError::PartialLine { offset: 3, len: 3 })
        );
    }

    #[test]
    fn an_offset_jump_drops_the_partial_line() {
        let mut decoder = LineDecoder::new(0, 100);
        let mut frames = Vec::new();
        decoder
            .decode(0, &Bytes::from_static(b"a\nbroken"), &mut frames)
            .unwrap();
        decoder
            .decode(50, &Bytes::from_static(b"c\n"), &mut frames)
            .unwrap();
        let got: Vec<(i64, i64)> = frames.iter().map(|f| (f.begin, f.end)).collect();
        assert_eq!(got, vec![(0, 2), (50, 52)]);
        let err = decoder.decode(10, &Bytes::from_static(b"x"), &mut frames);
        assert_eq!(
            err,
            Err(FramingError::OffsetRegressed {
                expected: 52,
                got: 10
            })
        );
    }

    #[test]
    fn lines_over_the_limit_are_errors() {
        let mut decoder = LineDecoder::new(0, 4);
        let mut frames = Vec::new();
        decoder
            .decode(0, &Bytes::from_static(b"ok\n"), &mut frames)
            .unwrap();
        let err = decoder.decode(3, &Bytes::from_static(b"toolong\n"), &mut frames);
        assert_eq!(err, Err(FramingError::LineTooLong { offset: 3, max: 4 }));

        let mut decoder = LineDecoder::new(0, 4);
        decoder
            .decode(0, &Bytes::from_static(b"abc"), &mut frames)
            .unwrap();
        let err = decoder.decode(3, &Bytes::from_static(b"de"), &mut frames);
        assert_eq!(err, Err(FramingError::LineTooLong { offset: 0, max: 4 }));
    }

    proptest! {
        #[test]
        fn any_chunking_yields_the_same_frames(
            lines in proptest::collection::vec("[a-z]{0,12}", 0..20),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let stream: Vec<u8> = lines.iter().flat_map(|l| l.bytes().chain([b'\n'])).collect();
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            points.extend([0, stream.len()]);
            points.sort_unstable();
            let chunks: Vec<&[u8]> = points.windows(2).map(|w| &stream[w[0]..w[1]]).collect();
            let (frames, decoder) = decode_all(7, &chunks);
            prop_assert_eq!(decoder.finish(), Ok(()));
            prop_assert_eq!(frames.len(), lines.len());
            let mut offset = 7;
            for (frame, line) in frames.iter().zip(&lines) {
                prop_assert_eq!(&frame.line[..], line.as_bytes());
                prop_assert_eq!(frame.begin, offset);
                offset += line.len() as i64 + 1;
                prop_assert_eq!(frame.end, offset);
            }
        }

        #[test]
        fn framed_documents_parse_back_to_the_same_object(
            fields in proptest::collection::btree_map("[a-zA-Z]{1,6}", any::<i64>(), 0..6),
        ) {
            prop_assume!(!fields.contains_key("UUID"));
            let doc = serde_json::to_vec(&fields).expect("serializable");
            let mut out = Vec::new();
            frame(&doc, &U, &mut out).expect("valid document");
            prop_assert_eq!(out.last(), Some(&b'\n'));
            let line = &out[..out.len() - 1];
            prop_assert_eq!(extract_uuid(line, 0), Ok(U));
            let mut back: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(line).expect("json");
            prop_assert_eq!(back.remove("UUID"), Some(serde_json::Value::from(U_STR)));
            prop_assert_eq!(serde_json::to_value(&fields).expect("json"), serde_json::Value::Object(back));
        }
    }
}
