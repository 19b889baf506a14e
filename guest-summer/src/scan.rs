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
    pub(super) data: Option<&'a str>,
}

/// Reads `doc` if it is a plain chunk document (see the module docs).
pub(super) fn chunk(doc: &[u8]) -> Option<Scanned<'_>> {
    let mut id = None;
    let mut seq_no = None;
    let mut data: Option<Option<&str>> = None;
    object(doc, |key, scanner| {
        match key {
            "ID" if id.is_none() => id = Some(scanner.id()?),
            "SeqNo" if seq_no.is_none() => seq_no = Some(scanner.unsigned(u64::MAX)?),
            "Data" if data.is_none() => {
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
            "ID" if id.is_none() => id = Some(scanner.id()?),
            "SeqNo" if seq_no.is_none() => seq_no = Some(scanner.unsigned(u64::MAX)?),
            "Value" if value.is_none() => value = Some(scanner.unsigned(u64::MAX)?),
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
    mut field: impl FnMut(&'a str, &mut Scanner<'a>) -> Option<()>,
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
        if key == "UUID" && !uuid {
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

    /// A string of printable ASCII without escapes (anything else: `None`).
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        let len = self.doc[start..]
            .iter()
            .position(|&byte| byte == b'"' || byte == b'\\' || !(0x20..0x80).contains(&byte))?;
        self.at = start + len;
        self.expect(b'"')?;
        // Printable ASCII is UTF-8; the check cannot fail.
        std::str::from_utf8(&self.doc[start..start + len]).ok()
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
        self.expect(b'[')?;
        let mut id = [0u8; 16];
        for (index, byte) in id.iter_mut().enumerate() {
            self.skip_whitespace();
            if index > 0 {
                self.expect(b',')?;
                self.skip_whitespace();
            }
            // The bound makes the conversion lossless.
            *byte = u8::try_from(self.unsigned(u64::from(u8::MAX))?).ok()?;
        }
        self.skip_whitespace();
        self.expect(b']')?;
        Some(id)
    }
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
            scanned.data.map(str::to_string),
        ))
    }

    #[test]
    fn reads_the_documents_the_chunker_and_go_write() {
        let scanned = chunk(PLAIN.as_bytes()).expect("plain chunk");
        assert_eq!(scanned.id[15], 255);
        assert_eq!(scanned.seq_no, 7);
        assert_eq!(scanned.data, Some("YmF0dGVyeQ=="));
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
}
