//! The on-disk record format of fragment files.
//!
//! A fragment file is a sequence of records. Each append becomes one record,
//! or several when its content exceeds [`MAX_RECORD_CONTENT`] (all but the
//! last carry [`FLAG_CONTINUED`]), so a reader never has to hold more than one
//! bounded record in memory to verify it. Layout, little-endian:
//!
//! ```text
//! 0   u32  magic "WRJ1"
//! 4   u32  flags: 1 = carries registers, 2 = the append continues in the next record
//! 8   i64  journal offset of the first content byte
//! 16  u32  length of the registers text
//! 20  u32  length of the content
//! 24  u32  CRC-32C of bytes 0..24, the registers text and the content
//! 28  registers text (`a=b,c=d`), then content
//! ```
//!
//! The last record of an append that changed the journal's registers carries
//! the complete new register set, so registers survive a restart with the
//! bytes that changed them. The header's offset lets recovery check that
//! records are contiguous, so a lost or repeated record is detected too.

use crc::{Crc, Table};

/// First four bytes of every record.
pub(crate) const MAGIC: u32 = u32::from_le_bytes(*b"WRJ1");
/// Bytes of the fixed header.
pub(crate) const HEADER_LEN: usize = 28;
/// Largest content of one record, in bytes (1 MiB); longer appends span
/// several records.
pub(crate) const MAX_RECORD_CONTENT: usize = 1 << 20;
/// Longest registers text one record may carry, in bytes (64 KiB).
pub(crate) const MAX_REGISTERS_LEN: usize = 64 << 10;
/// The record carries the journal's new registers.
pub(crate) const FLAG_REGISTERS: u32 = 1;
/// The append continues in the next record.
pub(crate) const FLAG_CONTINUED: u32 = 2;

const CRC32C: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&crc::CRC_32_ISCSI);

/// A decoded, not yet verified, record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub flags: u32,
    pub offset: i64,
    pub registers_len: u32,
    pub content_len: u32,
    pub crc: u32,
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// The bytes end before the header or body does.
    Incomplete,
    /// The header or body is wrong.
    Bad(String),
}

impl Header {
    /// Decodes a header; `Bad` if the magic, flags or lengths are impossible.
    pub fn decode(bytes: &[u8]) -> Result<Header, Invalid> {
        let field = |at: usize| -> Result<[u8; 4], Invalid> {
            bytes
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .ok_or(Invalid::Incomplete)
        };
        let magic = u32::from_le_bytes(field(0)?);
        if magic != MAGIC {
            return Err(Invalid::Bad(format!("bad record magic {magic:#010x}")));
        }
        let flags = u32::from_le_bytes(field(4)?);
        if flags & !(FLAG_REGISTERS | FLAG_CONTINUED) != 0 {
            return Err(Invalid::Bad(format!("unknown record flags {flags:#x}")));
        }
        let mut offset = [0u8; 8];
        offset[..4].copy_from_slice(&field(8)?);
        offset[4..].copy_from_slice(&field(12)?);
        let header = Header {
            flags,
            offset: i64::from_le_bytes(offset),
            registers_len: u32::from_le_bytes(field(16)?),
            content_len: u32::from_le_bytes(field(20)?),
            crc: u32::from_le_bytes(field(24)?),
        };
        if header.content_len as usize > MAX_RECORD_CONTENT
            || header.registers_len as usize > MAX_REGISTERS_LEN
        {
            return Err(Invalid::Bad(format!(
                "impossible record lengths ({} + {})",
                header.registers_len, header.content_len
            )));
        }
        if header.content_len == 0 && flags & FLAG_CONTINUED != 0 {
            return Err(Invalid::Bad("empty continued record".into()));
        }
        Ok(header)
    }

    /// Bytes after the header.
    pub fn body_len(&self) -> usize {
        self.registers_len as usize + self.content_len as usize
    }

    /// Header plus body.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.body_len()
    }

    /// Whether the append continues in the next record.
    pub fn continued(&self) -> bool {
        self.flags & FLAG_CONTINUED != 0
    }

    /// Checks the CRC over `header_bytes` (the 28 header bytes) and `body`,
    /// and returns the registers text (if any) and the content.
    pub fn verify<'a>(
        &self,
        header_bytes: &[u8],
        body: &'a [u8],
    ) -> Result<(Option<&'a str>, &'a [u8]), Invalid> {
        let (fixed, body) = match (header_bytes.get(..24), body.get(..self.body_len())) {
            (Some(fixed), Some(body)) => (fixed, body),
            _ => return Err(Invalid::Incomplete),
        };
        let mut digest = CRC32C.digest();
        digest.update(fixed);
        digest.update(body);
        let actual = digest.finalize();
        if actual != self.crc {
            return Err(Invalid::Bad(format!(
                "checksum mismatch (stored {:#010x}, computed {actual:#010x})",
                self.crc
            )));
        }
        let (registers, content) = body.split_at(self.registers_len as usize);
        let registers = if self.flags & FLAG_REGISTERS != 0 {
            Some(
                std::str::from_utf8(registers)
                    .map_err(|_| Invalid::Bad("registers are not UTF-8".into()))?,
            )
        } else if registers.is_empty() {
            None
        } else {
            return Err(Invalid::Bad(
                "register bytes without the registers flag".into(),
            ));
        };
        Ok((registers, content))
    }
}

/// Appends the records of one append of `content` at journal `offset` to
/// `out`; the last record carries `registers` if given. Returns the file
/// positions (relative to `out`'s start length) and offsets of each record.
pub(crate) fn encode_append(
    out: &mut Vec<u8>,
    offset: i64,
    content: &[u8],
    registers: Option<&str>,
    mut on_record: impl FnMut(usize, i64),
) {
    let mut chunks = content.chunks(MAX_RECORD_CONTENT).peekable();
    let mut offset = offset;
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let registers = if last { registers } else { None };
        on_record(out.len(), offset);
        encode_record(out, offset, chunk, registers, !last);
        offset += chunk.len() as i64;
    }
}

fn encode_record(
    out: &mut Vec<u8>,
    offset: i64,
    content: &[u8],
    registers: Option<&str>,
    continued: bool,
) {
    let mut flags = 0;
    if registers.is_some() {
        flags |= FLAG_REGISTERS;
    }
    if continued {
        flags |= FLAG_CONTINUED;
    }
    let registers = registers.unwrap_or("").as_bytes();
    let start = out.len();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    // Both lengths are bounded by MAX_RECORD_CONTENT (chunks) and the
    // registers limit, far below u32::MAX.
    out.extend_from_slice(&(registers.len() as u32).to_le_bytes());
    out.extend_from_slice(&(content.len() as u32).to_le_bytes());
    let mut digest = CRC32C.digest();
    digest.update(&out[start..]);
    digest.update(registers);
    digest.update(content);
    out.extend_from_slice(&digest.finalize().to_le_bytes());
    out.extend_from_slice(registers);
    out.extend_from_slice(content);
}

#[cfg(test)]
mod test {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Vec<(i64, Option<String>, Vec<u8>, bool)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let header = Header::decode(&bytes[at..]).expect("header");
            let (registers, content) = header
                .verify(&bytes[at..at + HEADER_LEN], &bytes[at + HEADER_LEN..])
                .expect("valid record");
            out.push((
                header.offset,
                registers.map(String::from),
                content.to_vec(),
                header.continued(),
            ));
            at += header.total_len();
        }
        out
    }

    #[test]
    fn records_round_trip_with_and_without_registers() {
        let mut out = Vec::new();
        encode_append(&mut out, 10, b"hello", None, |_, _| {});
        encode_append(&mut out, 15, b"world", Some("author=x"), |_, _| {});
        assert_eq!(
            decode_all(&out),
            [
                (10, None, b"hello".to_vec(), false),
                (15, Some("author=x".into()), b"world".to_vec(), false)
            ]
        );
    }

    #[test]
    fn long_appends_split_into_continued_records_with_registers_on_the_last() {
        let content = vec![9u8; MAX_RECORD_CONTENT * 2 + 5];
        let mut out = Vec::new();
        let mut starts = Vec::new();
        encode_append(&mut out, 0, &content, Some("a=b"), |pos, offset| {
            starts.push((pos, offset))
        });
        let records = decode_all(&out);
        assert_eq!(records.len(), 3);
        assert_eq!(
            records.iter().map(|r| r.3).collect::<Vec<_>>(),
            [true, true, false]
        );
        assert_eq!(records[2].1.as_deref(), Some("a=b"));
        assert_eq!(records[1].0, MAX_RECORD_CONTENT as i64);
        assert_eq!(
            starts[1],
            (HEADER_LEN + MAX_RECORD_CONTENT, MAX_RECORD_CONTENT as i64)
        );
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut out = Vec::new();
        encode_append(&mut out, 42, b"some content", Some("k1=v"), |_, _| {});
        for byte in 0..out.len() {
            for bit in 0..8 {
                let mut damaged = out.clone();
                damaged[byte] ^= 1 << bit;
                let verdict = Header::decode(&damaged).and_then(|h| {
                    h.verify(&damaged[..HEADER_LEN], &damaged[HEADER_LEN..])
                        .map(|_| h)
                });
                match verdict {
                    Err(_) => {}
                    Ok(h) => panic!("flip of bit {bit} of byte {byte} went unnoticed: {h:?}"),
                }
            }
        }
    }

    #[test]
    fn truncated_records_are_incomplete_not_bad() {
        let mut out = Vec::new();
        encode_append(&mut out, 0, b"content", None, |_, _| {});
        assert_eq!(Header::decode(&out[..10]), Err(Invalid::Incomplete));
        let header = Header::decode(&out).expect("header");
        assert_eq!(
            header.verify(&out[..HEADER_LEN], &out[HEADER_LEN..out.len() - 1]),
            Err(Invalid::Incomplete)
        );
    }
}
