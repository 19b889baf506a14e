//! Stream-sum's data model (Gazette `examples/stream-sum/stream_sum.go`):
//! chunks of a stream fold into a running [`Sum`] with CRC-64/XZ.
//!
//! The JSON shapes are Gazette's (Go's `encoding/json` of untagged structs):
//! `ID` is an array of 16 numbers, `SeqNo` a number starting at 1, `Data`
//! base64 or `null` (null or empty marks the stream's final chunk), `Value`
//! a full `u64`. The `UUID` field is the host's business: it is ignored when
//! reading and never written.
//!
//! This file is shared with the chunker guest (`#[path]`), so that the oracle
//! and the system under test agree on the format by construction.

use std::borrow::Cow;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

#[path = "scan.rs"]
mod scan;

/// A stream's identity: 16 random bytes, the key of its mapping to a chunk
/// partition and of its sum in the store.
pub type StreamId = [u8; 16];

/// CRC-64/XZ: Go's `crc64.MakeTable(crc64.ECMA)` as used by stream-sum.
/// Slice-by-16 tables (32 KiB, built at compile time): a 32-byte chunk
/// takes two steps of independent lookups instead of a 32-long chain.
const CRC64: crc::Crc<u64, crc::Table<16>> = crc::Crc::<u64, crc::Table<16>>::new(&crc::CRC_64_XZ);

/// Continues a CRC-64/XZ from a previous *finalized* value, like Go's
/// `crc64.Update(prev, table, data)`: the final sum of a stream then does not
/// depend on how its data was split into chunks.
pub fn crc64_update(prev: u64, data: &[u8]) -> u64 {
    // The crc crate keeps reflected algorithms' registers bit-reversed and
    // finalizes with `register ^ xorout` (xorout = !0), so the register that
    // continues from `prev` is `!prev`, given to it in unreflected form.
    let mut digest = CRC64.digest_with_initial((!prev).reverse_bits());
    digest.update(data);
    digest.finalize()
}

/// One chunk of a stream, as read from a chunk partition. Its data borrows
/// from the document (base64 has nothing to unescape), so parsing a chunk
/// allocates nothing.
#[derive(Debug, Deserialize)]
pub struct Chunk<'a> {
    /// The stream.
    #[serde(rename = "ID")]
    pub id: StreamId,
    /// Position in the stream, from 1.
    #[serde(rename = "SeqNo")]
    pub seq_no: u64,
    /// Base64 data; `None` or empty for the stream's final chunk.
    #[serde(rename = "Data", default, borrow)]
    pub data: Option<Base64Text<'a>>,
}

/// A chunk's `Data`: base64 text, borrowed from the document unless serde
/// had to unescape it. Kept as bytes: the scanner has checked them to be
/// ASCII, so nothing revalidates them as UTF-8 before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base64Text<'a>(pub Cow<'a, [u8]>);

impl<'de: 'a, 'a> Deserialize<'de> for Base64Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Accepts what `#[serde(borrow)] Cow<str>` does, with its words.
        struct Text;
        impl<'de> serde::de::Visitor<'de> for Text {
            type Value = Base64Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(Base64Text(Cow::Borrowed(v.as_bytes())))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Base64Text(Cow::Owned(v.as_bytes().to_vec())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Base64Text(Cow::Owned(v.into_bytes())))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

impl<'a> Chunk<'a> {
    /// Parses a chunk document (a JSON object, its `UUID` field ignored).
    /// Plain documents take a one-pass scanner; anything else, and every
    /// error, is serde_json's (see `scan`).
    pub fn parse(doc: &'a [u8]) -> Result<Chunk<'a>, String> {
        if let Some(scanned) = scan::chunk(doc) {
            return Ok(Chunk {
                id: scanned.id,
                seq_no: scanned.seq_no,
                data: scanned.data.map(|text| Base64Text(Cow::Borrowed(text))),
            });
        }
        serde_json::from_slice(doc).map_err(|err| format!("malformed chunk: {err}"))
    }

    /// The chunk document for `data` (`"Data":null` when empty, the final
    /// chunk), without a `UUID`.
    pub fn to_json(id: &StreamId, seq_no: u64, data: &[u8]) -> Vec<u8> {
        /// Field order as Go's encoder writes the struct.
        #[derive(Serialize)]
        struct Out<'i> {
            #[serde(rename = "ID")]
            id: &'i StreamId,
            #[serde(rename = "SeqNo")]
            seq_no: u64,
            #[serde(rename = "Data")]
            data: Option<String>,
        }
        let data =
            (!data.is_empty()).then(|| base64::engine::general_purpose::STANDARD.encode(data));
        // Serializing integers and strings cannot fail.
        serde_json::to_vec(&Out { id, seq_no, data }).unwrap_or_default()
    }

    /// The decoded data; empty for a final chunk.
    pub fn decode_data(&self) -> Result<Vec<u8>, String> {
        let mut data = Vec::new();
        self.decode_data_into(&mut data)?;
        Ok(data)
    }

    /// Decodes the data into `out`, replacing its contents (a buffer reused
    /// across chunks spares an allocation per chunk).
    pub fn decode_data_into(&self, out: &mut Vec<u8>) -> Result<(), String> {
        out.clear();
        match &self.data {
            None => Ok(()),
            Some(Base64Text(text)) => base64::engine::general_purpose::STANDARD
                .decode_vec(text, out)
                .map_err(|err| format!("malformed chunk data: {err}")),
        }
    }
}

/// The running sum of a stream: the CRC-64/XZ of its data so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sum {
    /// The stream.
    #[serde(rename = "ID")]
    pub id: StreamId,
    /// SeqNo of the last chunk folded in (0 before the first).
    #[serde(rename = "SeqNo")]
    pub seq_no: u64,
    /// CRC-64/XZ of the data folded in so far.
    #[serde(rename = "Value")]
    pub value: u64,
}

/// Whether a chunk completed its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More chunks will follow.
    Open,
    /// This was the final (empty) chunk: the sum is final and is published.
    Done,
}

impl Sum {
    /// The sum of a stream before its first chunk.
    pub fn new(id: StreamId) -> Sum {
        Sum {
            id,
            seq_no: 0,
            value: 0,
        }
    }

    /// Folds in the next chunk (Gazette's `Sum.Update`). A chunk of another
    /// stream, or one whose SeqNo is not exactly the next, is refused and the
    /// sum is left unchanged: it means a chunk was lost, duplicated or
    /// reordered, which exactly-once processing must never let happen.
    pub fn update(&mut self, id: &StreamId, seq_no: u64, data: &[u8]) -> Result<Progress, String> {
        if *id != self.id {
            return Err(format!(
                "invalid chunk.ID: {} does not match the sum's {}",
                hex(id),
                hex(&self.id)
            ));
        }
        // In u128: a stored SeqNo of u64::MAX (only a forged store holds
        // one) has no next SeqNo, and every chunk is then a repeat.
        let expected = u128::from(self.seq_no) + 1;
        if u128::from(seq_no) != expected {
            let kind = if seq_no <= self.seq_no {
                "repeated"
            } else {
                "skipped ahead"
            };
            return Err(format!(
                "invalid chunk.SeqNo of stream {}: expected {expected}, got {seq_no} ({kind})",
                hex(id)
            ));
        }
        self.seq_no = seq_no;
        self.value = crc64_update(self.value, data);
        Ok(if data.is_empty() {
            Progress::Done
        } else {
            Progress::Open
        })
    }

    /// The sum's JSON document (no `UUID`: the host assigns it), the bytes
    /// serde_json's compact encoding gives (written directly: see `scan`).
    pub fn to_json(&self) -> Vec<u8> {
        let mut doc = Vec::with_capacity(96);
        scan::write_sum(&mut doc, &self.id, self.seq_no, self.value);
        doc
    }

    /// Parses a sum document: plain ones with the one-pass scanner,
    /// anything else, and every error, with serde_json.
    pub fn parse(doc: &[u8]) -> Result<Sum, String> {
        if let Some((id, seq_no, value)) = scan::sum(doc) {
            return Ok(Sum { id, seq_no, value });
        }
        serde_json::from_slice(doc).map_err(|err| format!("malformed sum: {err}"))
    }
}

/// Lower-case hex of a stream id, for messages.
pub fn hex(id: &StreamId) -> String {
    id.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn crc_chains_through_the_finalized_value_like_go() {
        assert_eq!(crc64_update(0, b"battery horse"), 0xae76_3109_c119_2ed6);
        let first = crc64_update(0, b"battery");
        assert_eq!(first, 0x2be5_5fc6_6a38_1c84);
        assert_eq!(crc64_update(first, b" horse"), 0xae76_3109_c119_2ed6);
        assert_eq!(crc64_update(0, b"123456789"), 0x995d_c9bb_df19_39fa);
    }

    #[test]
    fn update_refuses_gaps_repeats_and_foreign_ids_without_changing_the_sum() {
        let id = [7u8; 16];
        let mut sum = Sum::new(id);
        assert_eq!(sum.update(&id, 1, b"battery"), Ok(Progress::Open));
        let before = sum.clone();
        assert!(
            sum.update(&id, 3, b"x")
                .unwrap_err()
                .contains("skipped ahead")
        );
        assert!(sum.update(&id, 1, b"x").unwrap_err().contains("repeated"));
        assert!(
            sum.update(&[8u8; 16], 2, b"x")
                .unwrap_err()
                .contains("invalid chunk.ID")
        );
        assert_eq!(sum, before);
        assert_eq!(sum.update(&id, 2, b""), Ok(Progress::Done));

        let mut last = Sum {
            id,
            seq_no: u64::MAX,
            value: 1,
        };
        let err = last.update(&id, 0, b"x").unwrap_err();
        assert!(
            err.ends_with("expected 18446744073709551616, got 0 (repeated)"),
            "{err}"
        );
        assert_eq!(last.seq_no, u64::MAX);
    }

    #[test]
    fn sums_use_gazette_field_names_and_full_u64_values() {
        let sum = Sum {
            id: [255u8; 16],
            seq_no: 3,
            value: u64::MAX,
        };
        let json = String::from_utf8(sum.to_json()).unwrap();
        assert_eq!(
            json,
            "{\"ID\":[255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255],\
             \"SeqNo\":3,\"Value\":18446744073709551615}"
        );
        assert_eq!(Sum::parse(json.as_bytes()).unwrap(), sum);
    }

    #[test]
    fn chunks_parse_base64_data_and_null_or_missing_final_data() {
        let chunk = Chunk::parse(
            br#"{"UUID":"9f2c9a4e-1d1e-11ef-8000-0123456789ab","ID":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16],"SeqNo":1,"Data":"YmF0dGVyeQ=="}"#,
        )
        .unwrap();
        assert_eq!(chunk.decode_data().unwrap(), b"battery");
        let last =
            Chunk::parse(br#"{"ID":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"SeqNo":2,"Data":null}"#)
                .unwrap();
        assert!(last.decode_data().unwrap().is_empty());
        assert!(Chunk::parse(br#"{"ID":[1,2],"SeqNo":1}"#).is_err());
    }

    #[test]
    fn chunk_documents_round_trip_and_mark_the_final_chunk_with_null() {
        let id = [9u8; 16];
        let doc = Chunk::to_json(&id, 4, b"horse");
        let chunk = Chunk::parse(&doc).unwrap();
        assert_eq!((chunk.id, chunk.seq_no), (id, 4));
        assert_eq!(chunk.decode_data().unwrap(), b"horse");
        let last = String::from_utf8(Chunk::to_json(&id, 5, b"")).unwrap();
        assert_eq!(
            last,
            r#"{"ID":[9,9,9,9,9,9,9,9,9,9,9,9,9,9,9,9],"SeqNo":5,"Data":null}"#
        );
    }
}
