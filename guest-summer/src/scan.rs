//! A fast path for reading the summer's two documents in one pass over the
//! bytes, for the shapes Go's encoder and this crate write: chunks, e.g.
//! `{"UUID":"…","ID":[1,2,…,16],"SeqNo":3,"Data":"YmF0dGVyeQ=="}`, and
//! stored sums, e.g. `{"ID":[1,2,…,16],"SeqNo":3,"Value":42}`.
//!
//! Why: most of the summer's work is reading a chunk, then reading and
//! writing its stream's stored sum (a transaction touches many streams once
//! each); serde_json's generic path (a visitor per field, a sequence visitor
//! per `ID` byte) costs more than the CRC it feeds, and twice as much again
//! compiled to WebAssembly. This scanner reads the known fields in any
//! order, with any JSON whitespace.
//!
//! Guarantee: [`chunk`] and [`sum`] return `Some` only for documents that
//! serde_json's derived parse of [`Chunk`](super::Chunk) / [`Sum`](super::Sum)
//! accepts, and with the same values. Anything they do not fully understand
//! — an escape or a non-ASCII byte in a string, an unknown or repeated key, a
//! `UUID` that is not a string, a number with a sign, fraction, exponent or
//! leading zero, an out-of-range number, trailing bytes — gives `None`, and
//! the caller parses with serde_json, so unusual documents and every error
//! behave exactly as serde_json decides.

/// The fields of a chunk document.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Scanned<'a> {
    /// `ID`.
    pub(super) id: [u8; 16],
    /// `SeqNo`.
    pub(super) seq_no: u64,
    /// `Data`: `None` if absent or `null`.
    pub(super) data: Option<&'a [u8]>,
}

/// Reads `doc` if it is a plain chunk document (see the module docs).
pub(super) fn chunk(doc: &[u8]) -> Option<Scanned<'_>> {
    chunk_as_written(doc).or_else(|| chunk_in_any_order(doc))
}

/// The one layout the chunker and Go's encoder write, compact and in field
/// order: `{"UUID":"…","ID":[…],"SeqNo":n,"Data":"…"}` (or `"Data":null`,
/// or no `Data`). Read with fixed literals instead of a loop over keys;
/// anything else is `None` and [`chunk_in_any_order`] decides, so both
/// agree by construction (this accepts a subset of what that accepts).
fn chunk_as_written(doc: &[u8]) -> Option<Scanned<'_>> {
    let rest = doc.strip_prefix(br#"{"UUID":""#)?;
    let rest = rest.get(plain_ascii_len(rest)..)?;
    let rest = rest.strip_prefix(br#"","ID":"#)?;
    let (id, len) = compact_id(rest)?;
    let rest = rest.get(len..)?.strip_prefix(br#","SeqNo":"#)?;
    let mut scanner = Scanner { doc: rest, at: 0 };
    let seq_no = scanner.unsigned(u64::MAX)?;
    let rest = &rest[scanner.at..];
    let (data, rest) = if let Some(text) = rest.strip_prefix(br#","Data":""#) {
        let len = plain_ascii_len(text);
        (Some(&text[..len]), text[len..].strip_prefix(b"\"")?)
    } else if let Some(rest) = rest.strip_prefix(br#","Data":null"#) {
        (None, rest)
    } else {
        (None, rest)
    };
    (rest == b"}").then_some(Scanned { id, seq_no, data })
}

/// [`chunk`] for any field order and whitespace.
fn chunk_in_any_order(doc: &[u8]) -> Option<Scanned<'_>> {
    let mut id = None;
    let mut seq_no = None;
    let mut data: Option<Option<&[u8]>> = None;
    object(doc, |key, scanner| {
        match key {
            b"ID" if id.is_none() => id = Some(scanner.id()?),
            b"SeqNo" if seq_no.is_none() => seq_no = Some(scanner.unsigned(u64::MAX)?),
            b"Data" if data.is_none() => {
                data = Some(if scanner.literal(b"null") {
                    None
                } else {
                    Some(scanner.string()?)
                });
            }
            _ => return None,
        }
        Some(())
    })?;
    Some(Scanned {
        id: id?,
        seq_no: seq_no?,
        data: data.flatten(),
    })
}

/// Reads `doc` if it is a plain sum document (see the module docs):
/// `(ID, SeqNo, Value)`. A sum read back from the sums journal carries its
/// UUID, which is skipped.
pub(super) fn sum(doc: &[u8]) -> Option<([u8; 16], u64, u64)> {
    let (mut id, mut seq_no, mut value) = (None, None, None);
    object(doc, |key, scanner| {
        match key {
            b"ID" if id.is_none() => id = Some(scanner.id()?),
            b"SeqNo" if seq_no.is_none() => seq_no = Some(scanner.unsigned(u64::MAX)?),
            b"Value" if value.is_none() => value = Some(scanner.unsigned(u64::MAX)?),
            _ => return None,
        }
        Some(())
    })?;
    Some((id?, seq_no?, value?))
}

/// Walks `doc` as one JSON object with nothing after it: a `UUID` string
/// (once) is skipped; every other key is handed to `field` with the
/// scanner at its value, which `field` must read (or return `None`).
fn object<'a>(
    doc: &'a [u8],
    mut field: impl FnMut(&'a [u8], &mut Scanner<'a>) -> Option<()>,
) -> Option<()> {
    let mut scanner = Scanner { doc, at: 0 };
    scanner.skip_whitespace();
    scanner.expect(b'{')?;
    let mut uuid = false;
    loop {
        scanner.skip_whitespace();
        let key = scanner.string()?;
        scanner.skip_whitespace();
        scanner.expect(b':')?;
        scanner.skip_whitespace();
        if key == b"UUID" && !uuid {
            scanner.string()?;
            uuid = true;
        } else {
            field(key, &mut scanner)?;
        }
        scanner.skip_whitespace();
        match scanner.next()? {
            b',' => continue,
            b'}' => break,
            _ => return None,
        }
    }
    scanner.skip_whitespace();
    (scanner.at == doc.len()).then_some(())
}

/// Appends `{"ID":[…],"SeqNo":n,"Value":n}` to `out`: the bytes
/// serde_json's compact encoding of [`Sum`](super::Sum) gives.
pub(super) fn write_sum(out: &mut Vec<u8>, id: &[u8; 16], seq_no: u64, value: u64) {
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(b"{\"ID\":[");
    for (index, byte) in id.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(digits.format(*byte).as_bytes());
    }
    out.extend_from_slice(b"],\"SeqNo\":");
    out.extend_from_slice(digits.format(seq_no).as_bytes());
    out.extend_from_slice(b",\"Value\":");
    out.extend_from_slice(digits.format(value).as_bytes());
    out.push(b'}');
}

/// A cursor over a document.
struct Scanner<'a> {
    doc: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.doc.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    /// JSON's whitespace: space, tab, line feed, carriage return.
    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Consumes `word` if it comes next.
    fn literal(&mut self, word: &[u8]) -> bool {
        let found = self.doc[self.at..].starts_with(word);
        if found {
            self.at += word.len();
        }
        found
    }

    /// A string of printable ASCII without escapes (anything else: `None`),
    /// as bytes: printable ASCII is UTF-8, so callers need no second pass.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.at;
        let len = plain_ascii_len(&self.doc[start..]);
        self.at = start + len;
        self.expect(b'"')?;
        Some(&self.doc[start..start + len])
    }

    /// A non-negative integer up to `max` in JSON's plain form: digits, no
    /// leading zero, not followed by a fraction or an exponent.
    fn unsigned(&mut self, max: u64) -> Option<u64> {
        let start = self.at;
        let mut value: u64 = 0;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            // `checked_mul` on u64 becomes a call to a 128-bit multiply
            // (`__multi3`) in wasm32; bounding first keeps it one i64.mul.
            if value > max / 10 {
                return None;
            }
            value = (value * 10).checked_add(u64::from(digit - b'0'))?;
            self.at += 1;
        }
        let digits = self.at - start;
        let leading_zero = digits > 1 && self.doc[start] == b'0';
        if digits == 0 || leading_zero || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        (value <= max).then_some(value)
    }

    /// `[n, …]`: exactly 16 numbers of 0..=255.
    fn id(&mut self) -> Option<[u8; 16]> {
        if let Some((id, len)) = compact_id(&self.doc[self.at..]) {
            self.at += len;
            return Some(id);
        }
        self.id_byte_by_byte()
    }

    /// [`id`](Self::id) for any spacing (and the reference for the fast
    /// path's tests).
    fn id_byte_by_byte(&mut self) -> Option<[u8; 16]> {
        self.expect(b'[')?;
        let mut id = [0u8; 16];
        for (index, byte) in id.iter_mut().enumerate() {
            if index > 0 {
                self.skip_whitespace();
                self.expect(b',')?;
            }
            self.skip_whitespace();
            // The bound makes the conversion lossless.
            *byte = u8::try_from(self.unsigned(u64::from(u8::MAX))?).ok()?;
        }
        self.skip_whitespace();
        self.expect(b']')?;
        Some(id)
    }
}

/// `[n,n,…,n]` without whitespace, as every encoder writes an ID: the
/// sixteen numbers and the length read, or `None` for anything else (which
/// [`Scanner::id`] then reads byte by byte, so both agree by construction:
/// this only accepts what that would).
///
/// Byte by byte, each number's end is known only once the previous one is
/// read, a chain of dependent loads. Here the 64 bytes after `[` are first
/// classified eight at a time into a bitmap of non-digits (independent
/// words); each number then lies between two set bits, and its digits are
/// read from one 4-byte word.
fn compact_id(bytes: &[u8]) -> Option<([u8; 16], usize)> {
    match bytes.get(..ID_WINDOW) {
        Some(window) => compact_id_in(window),
        None => compact_id_padded(bytes),
    }
}

/// `[` + 16 × 3 digits + 15 commas + `]`: the longest compact ID, and 3
/// bytes of slack for the last number's word.
const ID_WINDOW: usize = 65 + 3;

/// [`compact_id`] of a document shorter than the window (a final chunk of
/// a small ID), padded with zeros: not digits, and they separate nothing.
/// Out of line: zeroing a buffer on every call costs a `memory.fill`.
#[cold]
#[inline(never)]
fn compact_id_padded(bytes: &[u8]) -> Option<([u8; 16], usize)> {
    let mut padded = [0u8; ID_WINDOW];
    padded.get_mut(..bytes.len())?.copy_from_slice(bytes);
    compact_id_in(&padded)
}

/// [`compact_id`] within `bytes`, at least [`ID_WINDOW`] long.
fn compact_id_in(bytes: &[u8]) -> Option<([u8; 16], usize)> {
    if bytes.first() != Some(&b'[') {
        return None;
    }
    let body = bytes.get(1..65)?;
    let mut non_digits: u64 = 0;
    for (lane, word) in body.chunks_exact(8).enumerate() {
        non_digits |= u64::from(non_digit_lanes(word)) << (8 * lane);
    }
    let mut id = [0u8; 16];
    let mut start = 0;
    // Any flaw is collected rather than returned at once: random IDs make
    // per-number branches (how many digits?) unpredictable.
    let mut flawed = false;
    for (index, byte) in id.iter_mut().enumerate() {
        // 64 when no separator is left in the window.
        let end = non_digits.trailing_zeros() as usize;
        if end >= body.len() {
            return None;
        }
        non_digits &= non_digits.wrapping_sub(1);
        let expected = if index == 15 { b']' } else { b',' };
        let (value, plain) = digits_value(&bytes[1 + start..1 + start + 4], end - start);
        flawed |= !plain | (body[end] != expected);
        *byte = value;
        start = end + 1;
    }
    (!flawed).then_some((id, 1 + start))
}

/// The value of the first `digits` bytes of `word` (4 bytes), which are
/// ASCII digits, and whether they are a plain JSON number of 0..=255 (one
/// to three digits, no leading zero). Without branches.
fn digits_value(word: &[u8], digits: usize) -> (u8, bool) {
    let mut le = [0u8; 4];
    le.copy_from_slice(word);
    // Digit lanes become their values; lanes past them are never used.
    let values = u32::from_le_bytes(le).wrapping_sub(u32::from_ne_bytes([b'0'; 4]));
    // Right-align the digits in lanes 0..=2 (hundreds, tens, ones).
    let shift = (3usize.wrapping_sub(digits) & 3) * 8;
    let aligned = values << shift;
    let lane = |at: u32| (aligned >> (8 * at)) & 0xff;
    let value = lane(0) * 100 + lane(1) * 10 + lane(2);
    let leading_zero = digits > 1 && (values & 0xff) == 0;
    let plain = (1..=3).contains(&digits) && !leading_zero && value <= 255;
    (value as u8, plain)
}

/// Bit `i` set iff `word[i]` (of 8) is not an ASCII digit; exact in every
/// lane (no carries between lanes).
fn non_digit_lanes(word: &[u8]) -> u8 {
    const LANES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = LANES * 0x80;
    let mut le = [0u8; 8];
    le.copy_from_slice(word);
    let word = u64::from_le_bytes(le);
    // A digit is 0x30..=0x39: high nibble 3, and still 3 after adding 6
    // (to the low 7 bits, so that no lane carries into the next).
    let off = ((word & (LANES * 0xf0)) ^ (LANES * 0x30))
        | ((((word & !HIGHS) + LANES * 6) & (LANES * 0xf0)) ^ (LANES * 0x30));
    // High bit of each lane that is not zero.
    let marks = (((off & !HIGHS) + !HIGHS) | off) & HIGHS;
    // Gather the eight high bits into one byte (bit i from lane i).
    ((marks >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8
}

/// The length of the run of printable ASCII other than `"` and `\` at the
/// start of `bytes`: a JSON string's plain body. Eight bytes at a time
/// (SWAR): byte-at-a-time, this loop was a third of the WASM summer's time.
fn plain_ascii_len(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // High bit set in every byte of `word` that equals zero; only bytes
    // after a true zero may be marked falsely, so the first mark is exact.
    let zero_bytes = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    let mut words = bytes.chunks_exact(8);
    let mut len = 0;
    for word in words.by_ref() {
        let mut le = [0u8; 8];
        le.copy_from_slice(word);
        let word = u64::from_le_bytes(le);
        let special = zero_bytes(word ^ (ONES * u64::from(b'"')))
            | zero_bytes(word ^ (ONES * u64::from(b'\\')))
            // Below 0x20: subtracting 0x20 borrows into the high bit.
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGHS)
            | (word & HIGHS);
        if special != 0 {
            return len + (special.trailing_zeros() / 8) as usize;
        }
        len += 8;
    }
    len + words
        .remainder()
        .iter()
        .position(|&byte| !is_plain(byte))
        .unwrap_or(words.remainder().len())
}

/// Printable ASCII other than `"` and `\`.
fn is_plain(byte: u8) -> bool {
    byte != b'"' && byte != b'\\' && (0x20..0x80).contains(&byte)
}

#[cfg(test)]
mod test {
    use proptest::prelude::*;

    use super::*;
    // `super::super` is the `sum` module in both crates that include it.
    use super::super::{Chunk, Sum};

    const PLAIN: &str = r#"{"UUID":"9f2c9a4e-1d1e-11ef-8000-0123456789ab","ID":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,255],"SeqNo":7,"Data":"YmF0dGVyeQ=="}"#;

    /// What serde_json's derived parse makes of `doc`, in the scanner's terms.
    fn by_serde(doc: &[u8]) -> Option<(StreamIdAndSeq, Option<String>)> {
        #[derive(serde::Deserialize)]
        struct Reference<'a> {
            #[serde(rename = "ID")]
            id: [u8; 16],
            #[serde(rename = "SeqNo")]
            seq_no: u64,
            #[serde(rename = "Data", default, borrow)]
            data: Option<std::borrow::Cow<'a, str>>,
        }
        let parsed: Reference<'_> = serde_json::from_slice(doc).ok()?;
        Some((
            (parsed.id, parsed.seq_no),
            parsed.data.map(|d| d.into_owned()),
        ))
    }

    type StreamIdAndSeq = ([u8; 16], u64);

    fn by_scan(doc: &[u8]) -> Option<(StreamIdAndSeq, Option<String>)> {
        let scanned = chunk(doc)?;
        Some((
            (scanned.id, scanned.seq_no),
            scanned
                .data
                .map(|text| String::from_utf8_lossy(text).into_owned()),
        ))
    }

    #[test]
    fn reads_the_documents_the_chunker_and_go_write() {
        let scanned = chunk(PLAIN.as_bytes()).expect("plain chunk");
        assert_eq!(scanned.id[15], 255);
        assert_eq!(scanned.seq_no, 7);
        assert_eq!(scanned.data, Some(&b"YmF0dGVyeQ=="[..]));
        let id = [200u8; 16];
        for data in [&b""[..], b"horse", &[0u8; 32]] {
            let doc = Chunk::to_json(&id, u64::MAX, data);
            assert_eq!(
                by_scan(&doc),
                by_serde(&doc),
                "{}",
                String::from_utf8_lossy(&doc)
            );
            assert!(chunk(&doc).is_some());
        }
        let spaced =
            " {\n\t\"SeqNo\" : 1 ,\"ID\":[ 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0 ], \"Data\":null }\r\n";
        assert_eq!(by_scan(spaced.as_bytes()), by_serde(spaced.as_bytes()));
        assert!(chunk(spaced.as_bytes()).is_some());
    }

    #[test]
    fn leaves_everything_unusual_to_serde() {
        let unusual = [
            r#"{"ID":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15],"SeqNo":1}"#,
            r#"{"ID":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17],"SeqNo":1}"#,
            r#"{"ID":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,256],"SeqNo":1}"#,
            r#"{"ID":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,01],"SeqNo":1}"#,
            r#"{"ID":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,1000],"SeqNo":1}"#,
            r#"{"ID":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,0255],"SeqNo":1}"#,
            r#"{"ID":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,1.0],"SeqNo":1}"#,
            r#"{"ID":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,2e1],"SeqNo":1}"#,
            r#"{"ID":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,-1],"SeqNo":1}"#,
            r#"{"ID":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,],"SeqNo":1}"#,
            r#"{"ID":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"SeqNo":-1}"#,
            r#"{"ID":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"SeqNo":1.0}"#,
            r#"{"ID":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"SeqNo":1e3}"#,
            r#"{"ID":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"SeqNo":18446744073709551616}"#,
            r#"{"ID":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"SeqNo":1,"SeqNo":2}"#,
            r#"{"ID":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"SeqNo":1,"Extra":2}"#,
            r#"{"ID":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"SeqNo":1,"Data":"YmF\/0"}"#,
            r#"{"ID":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"SeqNo":1,"Data":"é"}"#,
            r#"{"UUID":7,"ID":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"SeqNo":1}"#,
            r#"{"ID":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"SeqNo":1} x"#,
            r#"{"ID":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}"#,
            r#"{"SeqNo":1}"#,
            r#"{}"#,
            r#"{"ID":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"SeqNo":1,}"#,
            "",
            "[]",
        ];
        for doc in unusual {
            assert_eq!(chunk(doc.as_bytes()), None, "{doc}");
        }
    }

    /// Applies generated edits to `doc`: overwrite (0), remove (1) or
    /// insert (2) a byte at a position.
    fn damage(doc: &mut Vec<u8>, edits: Vec<(prop::sample::Index, u8, u8)>) {
        for (at, byte, how) in edits {
            if doc.is_empty() {
                break;
            }
            let at = at.index(doc.len());
            match how {
                0 => doc[at] = byte,
                1 => {
                    doc.remove(at);
                }
                _ => doc.insert(at, byte),
            }
        }
    }

    proptest! {
        /// Whatever the scanner accepts, serde_json accepts with the same
        /// values: damaged documents, arbitrary field values.
        #[test]
        fn never_disagrees_with_serde(
            id in any::<[u8; 16]>(),
            seq_no in any::<u64>(),
            data in proptest::collection::vec(any::<u8>(), 0..40),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..3),
        ) {
            let mut doc = Chunk::to_json(&id, seq_no, &data);
            prop_assert_eq!(by_scan(&doc), by_serde(&doc));
            damage(&mut doc, edits);
            if let Some(scanned) = by_scan(&doc) {
                prop_assert_eq!(Some(scanned), by_serde(&doc), "{}", String::from_utf8_lossy(&doc));
            }
        }

        /// The scanner accepts every document with printable fields.
        #[test]
        fn reads_every_generated_chunk(id in any::<[u8; 16]>(), seq_no in any::<u64>(), data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let doc = Chunk::to_json(&id, seq_no, &data);
            prop_assert!(chunk(&doc).is_some());
        }
    }

    fn sum_by_serde(doc: &[u8]) -> Option<([u8; 16], u64, u64)> {
        let parsed: Sum = serde_json::from_slice(doc).ok()?;
        Some((parsed.id, parsed.seq_no, parsed.value))
    }

    #[test]
    fn reads_and_writes_sums_as_serde_does() {
        let sum = Sum {
            id: [255u8; 16],
            seq_no: u64::MAX,
            value: u64::MAX,
        };
        let mut written = Vec::new();
        write_sum(&mut written, &sum.id, sum.seq_no, sum.value);
        assert_eq!(written, serde_json::to_vec(&sum).unwrap());
        assert_eq!(super::sum(&written), Some((sum.id, sum.seq_no, sum.value)));
        let journaled = format!(
            "{{\"UUID\":\"9f2c9a4e-1d1e-11ef-8000-0123456789ab\",{}",
            String::from_utf8(written[1..].to_vec()).unwrap()
        );
        assert_eq!(
            super::sum(journaled.as_bytes()),
            sum_by_serde(journaled.as_bytes())
        );
        assert!(super::sum(journaled.as_bytes()).is_some());
        for unusual in [
            r#"{"ID":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"SeqNo":1}"#,
            r#"{"ID":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"SeqNo":1,"Value":2,"Value":2}"#,
            r#"{"ID":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"SeqNo":1,"Value":-2}"#,
            r#"{"ID":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"SeqNo":1,"Value":2,"Data":null}"#,
        ] {
            assert_eq!(super::sum(unusual.as_bytes()), None, "{unusual}");
        }
    }

    proptest! {
        /// Sums written here are serde's bytes, read back by the scanner;
        /// whatever the scanner accepts of a damaged sum, serde reads the
        /// same.
        #[test]
        fn sums_never_disagree_with_serde(
            id in any::<[u8; 16]>(),
            seq_no in any::<u64>(),
            value in any::<u64>(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..3),
        ) {
            let mut doc = Vec::new();
            write_sum(&mut doc, &id, seq_no, value);
            prop_assert_eq!(&doc, &serde_json::to_vec(&Sum { id, seq_no, value }).unwrap());
            prop_assert_eq!(super::sum(&doc), Some((id, seq_no, value)));
            damage(&mut doc, edits);
            if let Some(scanned) = super::sum(&doc) {
                prop_assert_eq!(Some(scanned), sum_by_serde(&doc), "{}", String::from_utf8_lossy(&doc));
            }
        }
    }

    #[test]
    fn near_misses_of_the_written_layout_are_left_to_the_general_reader() {
        let zeros = "[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]";
        let near_misses = [
            format!(r#"{{"UUID":"u","ID":{zeros},"SeqNo":1,"Data":"YQ=="}}x"#),
            format!(r#"{{"UUID":"u","ID":{zeros},"SeqNo":1,"Data":"YQ=="}} "#),
            format!(r#"{{"UUID":"x","ID":{zeros},"SeqNo":1}}"#),
            format!(r#"{{"UUID":"u","ID":{zeros},"SeqNo":1,"Data":"Y\Q=="}}"#),
            format!(r#"{{"UUID":"u","ID":{zeros},"SeqNo":01,"Data":null}}"#),
            format!(r#"{{"UUID":"u","ID":{zeros},"SeqNo":1,"Data":nul}}"#),
            format!(r#"{{"UUID":"u","ID":{zeros},"SeqNo":1,"Data":null,"Data":null}}"#),
            format!(r#"{{"UUID":"u","ID":{zeros},"SeqNo":1,"Extra":1}}"#),
            format!(r#"{{"UUID":"u", "ID":{zeros},"SeqNo":1}}"#),
            format!(r#"{{"UUID":"u","SeqNo":1,"ID":{zeros}}}"#),
            format!(r#"{{"UUID":"u","ID":{zeros},"SeqNo":1.5}}"#),
            format!(r#"{{"UUID":"u","ID":{zeros},"SeqNo":1,"Data":"é"}}"#),
        ];
        for doc in near_misses {
            if let Some(fast) = chunk_as_written(doc.as_bytes()) {
                assert_eq!(Some(fast), chunk_in_any_order(doc.as_bytes()), "{doc}");
            }
        }
        // Order and whitespace aside, the general reader still reads them.
        let reordered = format!(r#"{{"UUID":"u","SeqNo":1,"ID":{zeros}}}"#);
        assert!(chunk_as_written(reordered.as_bytes()).is_none());
        assert!(chunk(reordered.as_bytes()).is_some());
    }

    proptest! {
        /// What the fixed-layout reader accepts, the general one reads the
        /// same; and it accepts every chunk the chunker writes.
        #[test]
        fn the_written_layout_reads_as_any_order_does(
            id in any::<[u8; 16]>(),
            seq_no in any::<u64>(),
            data in proptest::collection::vec(any::<u8>(), 0..40),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..3),
        ) {
            let plain = Chunk::to_json(&id, seq_no, &data);
            let mut doc = br#"{"UUID":"9f2c9a4e-1d1e-11ef-8000-0123456789ab","#.to_vec();
            doc.extend_from_slice(&plain[1..]);
            prop_assert!(chunk_as_written(&doc).is_some());
            prop_assert_eq!(chunk_as_written(&doc), chunk_in_any_order(&doc));
            damage(&mut doc, edits);
            if let Some(fast) = chunk_as_written(&doc) {
                prop_assert_eq!(Some(fast), chunk_in_any_order(&doc), "{}", String::from_utf8_lossy(&doc));
            }
        }

        /// Eight bytes at a time finds the same end as one at a time, for
        /// every length and every byte (the word tricks' false marks after
        /// a true one, and bytes ≥ 0x80, included).
        #[test]
        fn plain_runs_end_where_byte_by_byte_says(
            plain in proptest::collection::vec(0x20u8..0x7f, 0..40),
            stop in any::<u8>(),
            tail in proptest::collection::vec(any::<u8>(), 0..12),
        ) {
            let mut bytes: Vec<u8> = plain.into_iter().filter(|&b| is_plain(b)).collect();
            bytes.push(stop);
            bytes.extend(tail);
            let expected = bytes.iter().position(|&b| !is_plain(b)).unwrap_or(bytes.len());
            prop_assert_eq!(plain_ascii_len(&bytes), expected);
        }
    }

    #[test]
    fn plain_runs_stop_at_each_kind_of_special_byte() {
        for special in [b'"', b'\\', 0x00, 0x1f, 0x7f, 0x80, 0xff] {
            for at in 0..20 {
                let mut bytes = vec![b'a'; 20];
                bytes[at] = special;
                let expected = if is_plain(special) { 20 } else { at };
                assert_eq!(plain_ascii_len(&bytes), expected, "{special:#x} at {at}");
            }
        }
        assert_eq!(plain_ascii_len(b""), 0);
    }

    /// The ID the byte-by-byte path reads (the reference for the fast one).
    fn id_slowly(bytes: &[u8]) -> Option<([u8; 16], usize)> {
        let mut scanner = Scanner { doc: bytes, at: 0 };
        let id = scanner.id_byte_by_byte()?;
        Some((id, scanner.at))
    }

    #[test]
    fn compact_ids_of_every_length_read_to_the_window_edge() {
        for id in [[255u8; 16], [0u8; 16], [9u8; 16], [10u8; 16], [100u8; 16]] {
            let doc = format!("{id:?}").replace(' ', "");
            // Nothing after it (padded), and exactly the window's slack.
            for tail in ["", "}", ",\"SeqNo\":1}"] {
                let bytes = format!("{doc}{tail}").into_bytes();
                assert_eq!(compact_id(&bytes), Some((id, doc.len())), "{doc}{tail}");
            }
        }
        let mut long = format!("{:?}", [255u8; 16]).replace(' ', "").into_bytes();
        long.insert(1, b'1');
        assert_eq!(compact_id(&long), None, "1255 is not a byte");
    }

    proptest! {
        /// Whatever the word-at-a-time ID reader accepts, the byte-by-byte
        /// one reads the same, to the same length; and it accepts every
        /// compact ID followed by a little more of the document.
        #[test]
        fn compact_ids_read_as_byte_by_byte(
            id in any::<[u8; 16]>(),
            tail in proptest::collection::vec(any::<u8>(), 0..40),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), prop::sample::select(b"0123456789,] .e-\x00\xff".to_vec()), 0u8..3), 0..3),
        ) {
            let mut doc = format!("{id:?}").replace(' ', "").into_bytes();
            let len = doc.len();
            doc.extend(&tail);
            prop_assert_eq!(id_slowly(&doc), Some((id, len)));
            prop_assert_eq!(compact_id(&doc), Some((id, len)));
            damage(&mut doc, edits);
            if let Some(fast) = compact_id(&doc) {
                prop_assert_eq!(Some(fast), id_slowly(&doc), "{}", String::from_utf8_lossy(&doc));
            }
        }
    }
}
