//! Recovery-log records and their framing.
//!
//! Every append to a recovery log is exactly one frame:
//!
//! ```text
//! magic  "wrl1"        4 bytes
//! length u32 LE        4 bytes, of the payload
//! crc    u32 LE        4 bytes, CRC-32C (Castagnoli) of the payload
//! payload              postcard encoding of a `Record`
//! ```
//!
//! A record is either a **commit** (one transaction's writes and its
//! checkpoint) or a **hand-off** (a new primary taking over the log). Each
//! carries its author and a sequence number; a reader applies a record only if
//! it continues the sequence, and a commit only if its author made the latest
//! hand-off. The broker's `author` register already refuses a fenced
//! primary's appends; the sequence and author checks make replay deterministic
//! even if bytes were duplicated or the registers were lost.
//!
//! A frame can straddle read chunks; [`split_frame`] says how many bytes the
//! next frame needs so that the caller can buffer.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::consumer::Checkpoint;

/// First bytes of every frame: a cheap check that a reader is aligned.
pub(crate) const FRAME_MAGIC: [u8; 4] = *b"wrl1";
/// Length of the frame header (magic, length, CRC).
pub(crate) const FRAME_HEADER_LEN: usize = 12;

const CRC32C: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// One record of a recovery log.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record<'a> {
    /// The primary that appended it (a random non-zero id per primary).
    pub author: u32,
    /// Position in the log's sequence of applied records.
    pub seq: u64,
    /// What the record does.
    #[serde(borrow)]
    pub body: Body<'a>,
}

/// What a [`Record`] does.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Body<'a> {
    /// A new primary takes over; later commits must carry its author.
    Handoff,
    /// A committed transaction: its writes and checkpoint, applied together.
    Commit {
        /// The transaction's writes, in key order.
        #[serde(borrow)]
        writes: Vec<Write<'a>>,
        /// The checkpoint committed with them.
        checkpoint: Cow<'a, Checkpoint>,
    },
}

/// One write of a committed transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Write<'a> {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: &'a [u8],
    },
}

/// Encodes `record` as one frame.
pub(crate) fn encode_frame(record: &Record<'_>) -> Result<Vec<u8>, postcard::Error> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + 64);
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    let mut out = postcard::to_extend(record, out)?;
    let payload_len = out.len() - FRAME_HEADER_LEN;
    let len = u32::try_from(payload_len).map_err(|_| postcard::Error::SerializeBufferFull)?;
    let crc = CRC32C.checksum(&out[FRAME_HEADER_LEN..]);
    out[0..4].copy_from_slice(&FRAME_MAGIC);
    out[4..8].copy_from_slice(&len.to_le_bytes());
    out[8..12].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// The result of looking for a frame at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Split<'a> {
    /// A whole, checksum-verified frame: its payload and its total length.
    Frame {
        /// The verified payload.
        payload: &'a [u8],
        /// Header plus payload length.
        len: usize,
    },
    /// The buffer holds only the start of a frame of `needed` bytes (or of
    /// its header, if `needed` is the header length).
    Incomplete {
        /// Bytes the frame needs in total.
        needed: usize,
    },
}

/// Looks for a frame at the start of `buf`, verifying its magic, length
/// bound and checksum. Errors are human-readable reasons.
pub(crate) fn split_frame(buf: &[u8], max_payload: usize) -> Result<Split<'_>, String> {
    let Some(header) = buf.get(..FRAME_HEADER_LEN) else {
        // Check what magic there is, so that garbage fails early.
        let seen = buf.len().min(FRAME_MAGIC.len());
        if buf[..seen] != FRAME_MAGIC[..seen] {
            return Err(bad_magic(buf));
        }
        return Ok(Split::Incomplete {
            needed: FRAME_HEADER_LEN,
        });
    };
    if header[0..4] != FRAME_MAGIC {
        return Err(bad_magic(buf));
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if len > max_payload {
        return Err(format!(
            "record length {len} exceeds the maximum {max_payload}"
        ));
    }
    let total = FRAME_HEADER_LEN + len;
    let Some(payload) = buf.get(FRAME_HEADER_LEN..total) else {
        return Ok(Split::Incomplete { needed: total });
    };
    let actual = CRC32C.checksum(payload);
    if actual != crc {
        return Err(format!(
            "record checksum is {actual:#010x}, header says {crc:#010x}"
        ));
    }
    Ok(Split::Frame {
        payload,
        len: total,
    })
}

/// Decodes a verified payload.
pub(crate) fn decode_record(payload: &[u8]) -> Result<Record<'_>, String> {
    postcard::from_bytes(payload).map_err(|err| format!("undecodable record: {err}"))
}

fn bad_magic(buf: &[u8]) -> String {
    let shown = &buf[..buf.len().min(FRAME_MAGIC.len())];
    format!("not a record frame (starts with {shown:02x?})")
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::consumer::SourceCheckpoint;

    fn sample_checkpoint() -> Checkpoint {
        let mut checkpoint = Checkpoint::default();
        checkpoint.sources.insert(
            "a/journal".to_string(),
            SourceCheckpoint {
                read_through: 42,
                producers: vec![],
            },
        );
        checkpoint
            .ack_intents
            .insert("out".to_string(), b"{\"ack\":1}\n".to_vec());
        checkpoint
    }

    fn sample_frame() -> Vec<u8> {
        let checkpoint = sample_checkpoint();
        let record = Record {
            author: 7,
            seq: 3,
            body: Body::Commit {
                writes: vec![
                    Write::Put {
                        key: b"k1",
                        value: b"v1",
                    },
                    Write::Delete { key: b"k2" },
                ],
                checkpoint: Cow::Borrowed(&checkpoint),
            },
        };
        encode_frame(&record).expect("encodes")
    }

    #[test]
    fn a_frame_round_trips_through_split_and_decode() {
        let frame = sample_frame();
        let Ok(Split::Frame { payload, len }) = split_frame(&frame, 1 << 20) else {
            panic!("expected a whole frame");
        };
        assert_eq!(len, frame.len());
        let record = decode_record(payload).expect("decodes");
        assert_eq!(record.author, 7);
        assert_eq!(record.seq, 3);
        let Body::Commit { writes, checkpoint } = record.body else {
            panic!("expected a commit")
        };
        assert_eq!(
            writes,
            vec![
                Write::Put {
                    key: b"k1",
                    value: b"v1"
                },
                Write::Delete { key: b"k2" }
            ]
        );
        assert_eq!(checkpoint.into_owned(), sample_checkpoint());
    }

    #[test]
    fn every_prefix_of_a_frame_is_incomplete_not_an_error() {
        let frame = sample_frame();
        for cut in 0..frame.len() {
            match split_frame(&frame[..cut], 1 << 20) {
                Ok(Split::Incomplete { needed }) => assert!(needed > cut),
                other => panic!("prefix of {cut} bytes gave {other:?}"),
            }
        }
    }

    #[test]
    fn a_flipped_payload_bit_fails_the_checksum() {
        let mut frame = sample_frame();
        let last = frame.len() - 1;
        frame[last] ^= 0x01;
        let err = split_frame(&frame, 1 << 20).expect_err("corruption is detected");
        assert!(err.contains("checksum"), "{err}");
    }

    #[test]
    fn garbage_is_rejected_by_its_magic_even_when_short() {
        assert!(split_frame(b"{\"x\"", 1 << 20).is_err());
        assert!(split_frame(b"{", 1 << 20).is_err());
        assert_eq!(
            split_frame(b"wr", 1 << 20),
            Ok(Split::Incomplete {
                needed: FRAME_HEADER_LEN
            })
        );
    }

    #[test]
    fn an_oversized_length_is_rejected_before_allocating() {
        let frame = sample_frame();
        let err = split_frame(&frame, 4).expect_err("length bound");
        assert!(err.contains("exceeds"), "{err}");
    }

    #[test]
    fn a_payload_that_passes_the_checksum_but_is_not_a_record_fails_to_decode() {
        assert!(decode_record(&[0xff, 0xff, 0xff]).is_err());
    }
}
