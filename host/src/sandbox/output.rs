//! What a sandboxed run committed, as deterministic JSON lines, and how two
//! renderings differ.
//!
//! A [`Report`] renders as one JSON object per line: first every published
//! message, journal by journal (sorted by name), each journal's in
//! read-committed order, with the document's `UUID` removed (UUIDs carry a
//! random producer id and a wall clock, so they differ from run to run):
//!
//! ```text
//! {"journal":"examples/stream-sum/sums","doc":{"ID":[1,0,…],"SeqNo":4,"Value":123}}
//! ```
//!
//! then every store entry, sorted by key. Keys and values that are printable
//! UTF-8 are shown as text (`key`, `value`), others as lower-case hex
//! (`key_hex`, `value_hex`):
//!
//! ```text
//! {"key_hex":"0100…","value":"{\"ID\":[1,0,…],\"SeqNo\":4,\"Value\":123}"}
//! ```
//!
//! The same report always renders to the same bytes, so a rendering can be
//! saved and compared with a later run's ([`first_difference`]).

use std::fmt;

/// One message the guest published and that committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The journal it was published to.
    pub journal: String,
    /// The document without its `UUID` field.
    pub doc: Vec<u8>,
}

/// What a run committed. See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Published messages, journal by journal (sorted), each journal's in
    /// read-committed order.
    pub published: Vec<Published>,
    /// The final store, sorted by key.
    pub store: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Report {
    /// The report as JSON lines, each ending in `\n`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for message in &self.published {
            out.push_str("{\"journal\":");
            out.push_str(&json_string(&message.journal));
            out.push_str(",\"doc\":");
            // Published documents are JSON objects (the publisher validated
            // them), so they embed as they are.
            out.push_str(&String::from_utf8_lossy(&message.doc));
            out.push_str("}\n");
        }
        for (key, value) in &self.store {
            out.push('{');
            push_bytes(&mut out, "key", key);
            out.push(',');
            push_bytes(&mut out, "value", value);
            out.push_str("}\n");
        }
        out
    }
}

/// `doc` (a framed document, `{"UUID":"…",…}`) without its top-level `UUID`.
pub fn strip_uuid(doc: &[u8]) -> Vec<u8> {
    // The publisher writes the UUID first: `{"UUID":"` + 36 + `"`.
    const PREFIX: &[u8] = b"{\"UUID\":\"";
    let end = PREFIX.len() + 36;
    if doc.starts_with(PREFIX) && doc.get(end) == Some(&b'"') {
        let rest = &doc[end + 1..];
        if let Some(fields) = rest.strip_prefix(b",") {
            let mut out = Vec::with_capacity(fields.len() + 1);
            out.push(b'{');
            out.extend_from_slice(fields);
            return out;
        }
        if rest.trim_ascii() == b"}" {
            return b"{}".to_vec();
        }
    }
    // Not as the publisher frames it (an input document with a UUID of its
    // own, published back): remove the field from the parsed object.
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(doc) {
        Ok(mut object) => {
            object.remove("UUID");
            serde_json::to_vec(&object).unwrap_or_else(|_| doc.to_vec())
        }
        Err(_) => doc.to_vec(),
    }
}

fn json_string(text: &str) -> String {
    // Serializing a string cannot fail.
    serde_json::to_string(text).unwrap_or_default()
}

/// Appends `"name":"text"` for printable UTF-8, else `"name_hex":"…"`.
fn push_bytes(out: &mut String, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(char::is_control) => {
            out.push_str(&json_string(name));
            out.push(':');
            out.push_str(&json_string(text));
        }
        _ => {
            out.push_str(&json_string(&format!("{name}_hex")));
            out.push_str(":\"");
            for byte in bytes {
                out.push_str(&format!("{byte:02x}"));
            }
            out.push('"');
        }
    }
}

/// The first line where two renderings differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The line, from 1.
    pub line: usize,
    /// The expected line; `None` if the expected text ended before it.
    pub expected: Option<String>,
    /// The actual line; `None` if the actual text ended before it.
    pub actual: Option<String>,
    /// Lines of each text.
    pub lines: (usize, usize),
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (expected_lines, actual_lines) = self.lines;
        writeln!(
            f,
            "first difference at line {} (expected {expected_lines} lines, got {actual_lines}):",
            self.line
        )?;
        match &self.expected {
            Some(line) => writeln!(f, "  expected: {line}")?,
            None => writeln!(f, "  expected: (end of output)")?,
        }
        match &self.actual {
            Some(line) => write!(f, "  actual:   {line}"),
            None => write!(f, "  actual:   (end of output)"),
        }
    }
}

/// The first line where `actual` differs from `expected`, or `None` if they
/// hold the same lines (a missing final newline, or `\r\n` line ends, do not
/// count as differences).
pub fn first_difference(expected: &str, actual: &str) -> Option<Difference> {
    let lines = |text: &str| -> Vec<String> {
        text.lines()
            .map(|line| line.trim_end_matches('\r').to_string())
            .collect()
    };
    let (expected, actual) = (lines(expected), lines(actual));
    let counts = (expected.len(), actual.len());
    let index = (0..counts.0.max(counts.1)).find(|&i| expected.get(i) != actual.get(i))?;
    Some(Difference {
        line: index + 1,
        expected: expected.get(index).cloned(),
        actual: actual.get(index).cloned(),
        lines: counts,
    })
}

#[cfg(test)]
mod test {
    use super::*;

    const UUID: &str = "9f2952f3-c6a3-11ea-8802-080607050309";

    #[test]
    fn stripping_removes_only_the_leading_uuid_field() {
        let framed = format!("{{\"UUID\":\"{UUID}\",\"a\":1,\"b\":{{\"UUID\":2}}}}");
        assert_eq!(
            strip_uuid(framed.as_bytes()),
            b"{\"a\":1,\"b\":{\"UUID\":2}}"
        );
        let empty = format!("{{\"UUID\":\"{UUID}\"}}");
        assert_eq!(strip_uuid(empty.as_bytes()), b"{}");
        let elsewhere = format!("{{\"a\":1,\"UUID\":\"{UUID}\"}}");
        assert_eq!(strip_uuid(elsewhere.as_bytes()), b"{\"a\":1}");
    }

    #[test]
    fn a_report_renders_messages_then_the_store_with_hex_for_binary() {
        let report = Report {
            published: vec![Published {
                journal: "out/sums".into(),
                doc: b"{\"v\":1}".to_vec(),
            }],
            store: vec![
                (vec![0x01, 0xff], b"plain \"text\"".to_vec()),
                (b"key".to_vec(), vec![0x00, 0x10]),
            ],
        };
        assert_eq!(
            report.render(),
            "{\"journal\":\"out/sums\",\"doc\":{\"v\":1}}\n\
             {\"key_hex\":\"01ff\",\"value\":\"plain \\\"text\\\"\"}\n\
             {\"key\":\"key\",\"value_hex\":\"0010\"}\n"
        );
        for line in report.render().lines() {
            serde_json::from_str::<serde_json::Value>(line).expect("each line is JSON");
        }
    }

    #[test]
    fn the_first_difference_names_the_line_and_both_sides() {
        assert_eq!(first_difference("a\nb\n", "a\nb"), None);
        assert_eq!(first_difference("a\r\nb\r\n", "a\nb\n"), None);
        let diff = first_difference("a\nb\nc\n", "a\nB\nc\n").unwrap();
        assert_eq!(
            (diff.line, diff.expected.as_deref(), diff.actual.as_deref()),
            (2, Some("b"), Some("B"))
        );
        let diff = first_difference("a\n", "a\nmore\n").unwrap();
        assert_eq!(
            (diff.line, diff.expected.as_deref(), diff.lines),
            (2, None, (1, 2))
        );
        let text = diff.to_string();
        assert!(
            text.contains("line 2") && text.contains("(end of output)") && text.contains("more")
        );
    }
}
