//! The input of a sandboxed run: a JSON-lines file, one message per line,
//! framed exactly as the journal will hold it.
//!
//! Each non-blank line must be one JSON object. A line without a top-level
//! `UUID` gets one from the sandbox's fixed [`INPUT_PRODUCER`], with a clock
//! that starts at [`INPUT_CLOCK_START`] and ticks once per message, flagged
//! `OUTSIDE_TXN` (committed on its own): the same file always frames to the
//! same bytes, so runs are deterministic. A line that has a `UUID` keeps it
//! and is appended as written, which lets an input exercise duplicates or
//! transactions of its own. Blank lines are skipped; line numbers count
//! every line of the file, from 1, so errors point into the file.
//!
//! ```
//! use weir::sandbox::Input;
//!
//! let input = Input::parse(b"{\"n\":1}\n\n{\"n\":2}\n").unwrap();
//! assert_eq!(input.lines().len(), 2);
//! assert_eq!(input.lines()[1].number, 3);
//! let err = Input::parse(b"{\"n\":1}\n[2]\n").unwrap_err();
//! assert!(err.to_string().starts_with("input line 2:"), "{err}");
//! ```

use std::time::Duration;

use crate::message::{Clock, Flags, FramingError, ProducerId, build_uuid, extract_uuid, frame};

/// The producer of every UUID the sandbox assigns (`01:77:65:69:72:74`,
/// "\x01weirt", with the multicast bit RFC 4122 asks of non-MAC ids).
pub const INPUT_PRODUCER: ProducerId = ProducerId([0x01, b'w', b'e', b'i', b'r', b't']);

/// The clock before the first assigned UUID: 2024-01-01T00:00:00Z.
pub const INPUT_CLOCK_START: Duration = Duration::from_secs(1_704_067_200);

/// A line of the input that is not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("input line {line}: {reason}")]
pub struct InputError {
    /// The line, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// One input message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputLine {
    /// Its line in the file, from 1.
    pub number: usize,
    /// The message as appended: the document with its `UUID` first, and `\n`.
    pub framed: Vec<u8>,
}

/// The messages of an input file, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Input {
    lines: Vec<InputLine>,
}

impl Input {
    /// Parses and frames a JSON-lines file. See the module docs.
    pub fn parse(text: &[u8]) -> Result<Input, InputError> {
        let mut clock = Clock::from_unix(INPUT_CLOCK_START);
        let mut lines = Vec::new();
        for (index, line) in text.split(|&b| b == b'\n').enumerate() {
            let number = index + 1;
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            let fail = |reason: String| InputError {
                line: number,
                reason,
            };
            let next = clock.tick();
            let uuid = build_uuid(INPUT_PRODUCER, next, Flags::OutsideTxn);
            let mut framed = Vec::with_capacity(line.len() + 48);
            match frame(line, &uuid, &mut framed) {
                Ok(()) => clock = next,
                Err(FramingError::HasUuid) => {
                    extract_uuid(line, 0).map_err(|err| match err {
                        FramingError::BadLine { reason, .. } => {
                            fail(format!("its \"UUID\" is unusable: {reason}"))
                        }
                        other => fail(other.to_string()),
                    })?;
                    framed.extend_from_slice(line);
                    framed.push(b'\n');
                }
                Err(FramingError::NotAnObject(reason)) => {
                    return Err(fail(format!("not a JSON object: {reason}")));
                }
                Err(other) => return Err(fail(other.to_string())),
            }
            lines.push(InputLine { number, framed });
        }
        Ok(Input { lines })
    }

    /// The messages, in file order.
    pub fn lines(&self) -> &[InputLine] {
        &self.lines
    }

    /// The messages in runs of at most `size` (one run of all of them for
    /// `None`); always at least one run, which may be empty.
    pub fn rounds(&self, size: Option<usize>) -> Vec<&[InputLine]> {
        match size {
            Some(size) if size > 0 && !self.lines.is_empty() => self.lines.chunks(size).collect(),
            _ => vec![&self.lines[..]],
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::message::parse_uuid;

    fn uuid_of(line: &InputLine) -> uuid::Uuid {
        extract_uuid(&line.framed[..line.framed.len() - 1], 0).unwrap()
    }

    #[test]
    fn assigned_uuids_come_from_the_fixed_producer_with_increasing_clocks() {
        let input = Input::parse(b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n").unwrap();
        let clocks: Vec<Clock> = input
            .lines()
            .iter()
            .map(|line| {
                let (producer, clock, flags) = parse_uuid(&uuid_of(line));
                assert_eq!((producer, flags), (INPUT_PRODUCER, Flags::OutsideTxn));
                clock
            })
            .collect();
        assert!(clocks.windows(2).all(|w| w[0] < w[1]), "{clocks:?}");
        assert!(clocks[0] > Clock::from_unix(INPUT_CLOCK_START));
    }

    #[test]
    fn the_same_text_frames_to_the_same_bytes() {
        let text = b"{\"a\":1}\n{\"b\":[1,2]}\n";
        assert_eq!(Input::parse(text).unwrap(), Input::parse(text).unwrap());
        let input = Input::parse(text).unwrap();
        let first = &input.lines()[0].framed;
        assert!(first.starts_with(b"{\"UUID\":\""), "{first:?}");
        assert!(first.ends_with(b",\"a\":1}\n"), "{first:?}");
    }

    #[test]
    fn a_document_with_a_uuid_keeps_it_and_takes_no_clock() {
        let given = "{\"UUID\":\"9f2952f3-c6a3-11ea-8802-080607050309\",\"a\":1}";
        let text = format!("{{\"a\":0}}\n{given}\n{{\"a\":2}}\n");
        let input = Input::parse(text.as_bytes()).unwrap();
        assert_eq!(input.lines()[1].framed, format!("{given}\n").into_bytes());
        let (_, first, _) = parse_uuid(&uuid_of(&input.lines()[0]));
        let (_, third, _) = parse_uuid(&uuid_of(&input.lines()[2]));
        assert_eq!(third, first.tick());
    }

    #[test]
    fn errors_name_the_line_counting_blank_ones() {
        let err = Input::parse(b"{\"a\":1}\n\n  \nnot json\n").unwrap_err();
        assert_eq!(err.line, 4);
        assert!(err.reason.starts_with("not a JSON object"), "{err}");
        let err = Input::parse(b"\"text\"\n").unwrap_err();
        assert_eq!(err.line, 1);
        let err = Input::parse(b"{\"UUID\":\"nope\"}\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.reason.contains("UUID"), "{err}");
    }

    #[test]
    fn rounds_split_the_messages_in_order() {
        let input = Input::parse(b"{}\n{}\n{}\n{}\n{}\n").unwrap();
        let sizes: Vec<usize> = input.rounds(Some(2)).iter().map(|r| r.len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert_eq!(input.rounds(None).len(), 1);
        assert_eq!(Input::default().rounds(Some(3)).len(), 1);
    }
}
