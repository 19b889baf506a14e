//! Fragments: the files holding a journal's bytes, how they are indexed for
//! reads, scanned on restart, and read with every record verified.
//!
//! A journal is a sequence of contiguous fragments `[begin, end)`. The last
//! one may be the open *spool* that appends go to; the others are closed and
//! never change. Each file is a sequence of [records](super::record); an index
//! entry keeps sparse (offset, file position) marks so a read can start near
//! any offset without scanning the file from its start.
//!
//! **Scanning** (on restart) reads a file record by record and classifies
//! the first invalid bytes it meets:
//! - if no valid record follows them, they are a **torn tail**: an append
//!   that was being written when the process or machine died, never
//!   acknowledged (acknowledged bytes were synced, and synced bytes only
//!   ever precede unsynced ones). Only the spool may have one; it is cut off.
//! - if a valid record follows them, durable data was damaged: **corrupt**.
//!
//! Damage confined to the very last append of the spool cannot be told apart
//! from a torn write by the file alone; it is treated as torn.
//!
//! **Reading** verifies the CRC of every record before serving any of its
//! bytes; a mismatch is reported as corruption at that record's offset.

use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::backend::ReadFile;
use super::record::{HEADER_LEN, Header, Invalid, MAGIC};
use super::spec::LabelSet;

/// A new read mark is recorded once this many file bytes passed the last one.
pub(crate) const MARK_INTERVAL: u64 = 64 << 10;
/// Bytes read from a file at once.
const READ_AHEAD: usize = 256 << 10;

/// One fragment in a journal's read index.
#[derive(Debug, Clone)]
pub(crate) struct Fragment {
    /// Journal offset of the first byte.
    pub begin: i64,
    /// Journal offset after the last committed byte (grows while the
    /// fragment is the spool).
    pub end: i64,
    /// Handle for reads; stays valid when the spool is renamed on close.
    pub file: Arc<dyn ReadFile>,
    /// Ascending (journal offset, file position) of some record starts,
    /// always including the first record.
    pub marks: Vec<(i64, u64)>,
}

impl Fragment {
    /// The file position of the last mark at or before `offset`, and that
    /// mark's offset.
    pub fn mark_for(&self, offset: i64) -> (i64, u64) {
        let index = self.marks.partition_point(|(o, _)| *o <= offset);
        match index.checked_sub(1).and_then(|i| self.marks.get(i)) {
            Some(mark) => *mark,
            None => (self.begin, 0),
        }
    }
}

/// Why fragment bytes could not be served.
#[derive(Debug)]
pub(crate) enum FragmentError {
    /// Stored bytes failed verification at `offset`.
    Corrupt { offset: i64, reason: String },
    /// The file could not be read.
    Io(io::Error),
}

/// The first invalid bytes [`scan`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Damage {
    /// Nothing valid follows `valid_len`: a torn write.
    Torn { reason: String },
    /// Valid records follow invalid ones: durable bytes are damaged from
    /// `offset` on.
    Corrupt { offset: i64, reason: String },
}

/// What [`scan`] found in a fragment file.
#[derive(Debug, Clone)]
pub(crate) struct Scan {
    /// Journal offset after the last whole append.
    pub end: i64,
    /// File bytes holding whole appends.
    pub valid_len: u64,
    /// Read marks of the valid part.
    pub marks: Vec<(i64, u64)>,
    /// The registers of the last append in the file that set them.
    pub registers: Option<LabelSet>,
    /// The first invalid bytes, if any.
    pub damage: Option<Damage>,
}

/// Buffered positional reads of one file.
struct Window {
    file: Arc<dyn ReadFile>,
    start: u64,
    bytes: Bytes,
}

impl Window {
    fn new(file: Arc<dyn ReadFile>) -> Self {
        Window {
            file,
            start: 0,
            bytes: Bytes::new(),
        }
    }

    /// `len` bytes at file position `pos`, or `None` if the file is shorter.
    fn get(&mut self, pos: u64, len: usize) -> io::Result<Option<Bytes>> {
        let end = pos + len as u64;
        if pos < self.start || end > self.start + self.bytes.len() as u64 {
            let file_len = self.file.size()?;
            if end > file_len {
                return Ok(None);
            }
            let n = (file_len - pos).min(len.max(READ_AHEAD) as u64) as usize;
            let mut buf = BytesMut::zeroed(n);
            self.file.read_exact_at(&mut buf, pos)?;
            self.start = pos;
            self.bytes = buf.freeze();
        }
        let from = (pos - self.start) as usize;
        Ok(Some(self.bytes.slice(from..from + len)))
    }

    /// Decodes and verifies the record at `pos`.
    fn record(&mut self, pos: u64) -> io::Result<Result<Record, Invalid>> {
        let Some(header_bytes) = self.get(pos, HEADER_LEN)? else {
            return Ok(Err(Invalid::Incomplete));
        };
        let header = match Header::decode(&header_bytes) {
            Ok(header) => header,
            Err(invalid) => return Ok(Err(invalid)),
        };
        let Some(body) = self.get(pos + HEADER_LEN as u64, header.body_len())? else {
            return Ok(Err(Invalid::Incomplete));
        };
        Ok(match header.verify(&header_bytes, &body) {
            Ok((registers, content)) => {
                let registers = registers.map(str::to_string);
                let content = body.slice_ref(content);
                Ok(Record {
                    header,
                    registers,
                    content,
                })
            }
            Err(invalid) => Err(invalid),
        })
    }
}

struct Record {
    header: Header,
    registers: Option<String>,
    content: Bytes,
}

/// Scans a fragment file that starts at journal offset `begin` (see the
/// [module docs](self) for how damage is classified).
pub(crate) fn scan(file: Arc<dyn ReadFile>, begin: i64) -> io::Result<Scan> {
    let file_len = file.size()?;
    let mut window = Window::new(file);
    let mut scan = Scan {
        end: begin,
        valid_len: 0,
        marks: Vec::new(),
        registers: None,
        damage: None,
    };
    let (mut pos, mut offset) = (0u64, begin);
    let mut last_mark: Option<u64> = None;
    while pos < file_len {
        let failure = match window.record(pos)? {
            Err(invalid) => Some(invalid),
            Ok(record) if record.header.offset != offset => Some(Invalid::Bad(format!(
                "record claims offset {} where {offset} was expected",
                record.header.offset
            ))),
            Ok(record) => match record.registers.as_deref().map(str::parse::<LabelSet>) {
                Some(Err(err)) => Some(Invalid::Bad(format!("unreadable registers: {err}"))),
                parsed => {
                    if pos == scan.valid_len
                        && last_mark.is_none_or(|mark| pos - mark >= MARK_INTERVAL)
                    {
                        scan.marks.push((offset, pos));
                        last_mark = Some(pos);
                    }
                    pos += record.header.total_len() as u64;
                    offset += record.content.len() as i64;
                    if !record.header.continued() {
                        scan.valid_len = pos;
                        scan.end = offset;
                        if let Some(Ok(registers)) = parsed {
                            scan.registers = Some(registers);
                        }
                    }
                    None
                }
            },
        };
        if let Some(invalid) = failure {
            let reason = match invalid {
                Invalid::Incomplete => "the file ends inside a record".to_string(),
                Invalid::Bad(reason) => reason,
            };
            let at = scan.valid_len;
            scan.damage = Some(if valid_record_after(&mut window, at + 1, file_len)? {
                Damage::Corrupt {
                    offset: scan.end,
                    reason,
                }
            } else {
                Damage::Torn { reason }
            });
            return Ok(scan);
        }
    }
    if pos != scan.valid_len {
        scan.damage = Some(Damage::Torn {
            reason: "the file ends inside an append".into(),
        });
    }
    Ok(scan)
}

/// Whether any valid record starts at or after file position `from`.
fn valid_record_after(window: &mut Window, from: u64, file_len: u64) -> io::Result<bool> {
    let magic = MAGIC.to_le_bytes();
    let mut pos = from;
    while pos + HEADER_LEN as u64 <= file_len {
        let n = (file_len - pos).min(READ_AHEAD as u64) as usize;
        let Some(block) = window.get(pos, n)? else {
            return Ok(false);
        };
        let mut found = None;
        for at in block
            .windows(4)
            .enumerate()
            .filter(|(_, w)| *w == magic)
            .map(|(at, _)| at)
        {
            if window.record(pos + at as u64)?.is_ok() {
                found = Some(at);
                break;
            }
        }
        if found.is_some() {
            return Ok(true);
        }
        // Overlap by three bytes so a magic spanning two blocks is seen.
        pos += (n as u64).saturating_sub(3).max(1);
    }
    Ok(false)
}

/// Reads verified content from one fragment, sequentially.
pub(crate) struct Cursor {
    window: Window,
    fragment_begin: i64,
    /// File position of the next record.
    pos: u64,
    /// Journal offset of the next record.
    next_offset: i64,
    /// Verified content not served yet, starting at `pending_offset`.
    pending: Bytes,
    pending_offset: i64,
}

impl Cursor {
    /// A cursor over `fragment`, positioned to read from `offset`.
    pub fn new(fragment: &Fragment, offset: i64) -> Self {
        let (mark_offset, pos) = fragment.mark_for(offset);
        Cursor {
            window: Window::new(fragment.file.clone()),
            fragment_begin: fragment.begin,
            pos,
            next_offset: mark_offset,
            pending: Bytes::new(),
            pending_offset: mark_offset,
        }
    }

    /// The fragment this cursor reads.
    pub fn fragment_begin(&self) -> i64 {
        self.fragment_begin
    }

    /// Whether the cursor can serve `offset` without seeking back.
    pub fn can_serve(&self, offset: i64) -> bool {
        offset >= self.pending_offset
    }

    /// Up to `max` verified bytes from `offset`, stopping before `limit`
    /// (which must not exceed the fragment's committed end).
    pub fn read(&mut self, offset: i64, limit: i64, max: usize) -> Result<Bytes, FragmentError> {
        let mut out = BytesMut::new();
        let mut first: Option<Bytes> = None;
        loop {
            let at = offset + (out.len() + first.as_ref().map_or(0, Bytes::len)) as i64;
            let room = max - out.len() - first.as_ref().map_or(0, Bytes::len);
            if room == 0 || at >= limit {
                break;
            }
            let pending_end = self.pending_offset + self.pending.len() as i64;
            if at >= pending_end {
                if self.next_offset >= limit {
                    break;
                }
                match self.next_record() {
                    Ok(()) => continue,
                    // Serve what was verified; the error repeats on the next call.
                    Err(_) if first.is_some() || !out.is_empty() => break,
                    Err(err) => return Err(err),
                }
            }
            let skip = (at - self.pending_offset) as usize;
            let take = room
                .min(self.pending.len() - skip)
                .min((limit - at) as usize);
            let piece = self.pending.slice(skip..skip + take);
            // A single piece is served without copying.
            match first.take() {
                None if out.is_empty() => first = Some(piece),
                previous => {
                    if let Some(previous) = previous {
                        out.extend_from_slice(&previous);
                    }
                    out.extend_from_slice(&piece);
                }
            }
        }
        Ok(match first {
            Some(piece) => piece,
            None => out.freeze(),
        })
    }

    fn next_record(&mut self) -> Result<(), FragmentError> {
        let offset = self.next_offset;
        let corrupt = |reason: String| FragmentError::Corrupt { offset, reason };
        let record = match self.window.record(self.pos).map_err(FragmentError::Io)? {
            Ok(record) => record,
            Err(Invalid::Incomplete) => return Err(corrupt("committed bytes are missing".into())),
            Err(Invalid::Bad(reason)) => return Err(corrupt(reason)),
        };
        if record.header.offset != offset {
            return Err(corrupt(format!(
                "record claims offset {} where {offset} was expected",
                record.header.offset
            )));
        }
        self.pos += record.header.total_len() as u64;
        self.next_offset += record.content.len() as i64;
        self.pending_offset = offset;
        self.pending = record.content;
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::broker::backend::Backend;
    use crate::broker::record::encode_append;
    use crate::broker::sim::SimBackend;
    use std::path::Path;

    /// A file of appends "a0", "b11", "c222", ... at offsets from `begin`,
    /// with registers on the second append.
    fn fragment_file(begin: i64, appends: usize) -> (Vec<u8>, Vec<(i64, u64)>) {
        let mut out = Vec::new();
        let mut starts = Vec::new();
        let mut offset = begin;
        for i in 0..appends {
            let content = format!(
                "{}{}",
                (b'a' + i as u8) as char,
                i.to_string().repeat(i + 1)
            );
            let registers = (i == 1).then_some("owner=me");
            let pos = out.len() as u64;
            encode_append(&mut out, offset, content.as_bytes(), registers, |_, _| {});
            starts.push((offset, pos));
            offset += content.len() as i64;
        }
        (out, starts)
    }

    fn file_of(bytes: &[u8]) -> Arc<dyn ReadFile> {
        let disk = SimBackend::new();
        disk.create_dir_all(Path::new("/d")).expect("mkdir");
        disk.write_file_synced(Path::new("/d/f"), bytes)
            .expect("write");
        disk.open_read(Path::new("/d/f")).expect("open")
    }

    #[test]
    fn a_clean_file_scans_whole_with_its_registers() {
        let (bytes, starts) = fragment_file(100, 4);
        let scan = scan(file_of(&bytes), 100).expect("scan");
        assert_eq!(scan.damage, None);
        assert_eq!(scan.valid_len, bytes.len() as u64);
        assert_eq!(scan.end, 100 + 2 + 3 + 4 + 5);
        assert_eq!(
            scan.registers.map(|r| r.to_string()).as_deref(),
            Some("owner=me")
        );
        assert_eq!(scan.marks.first(), Some(&starts[0]));
    }

    #[test]
    fn a_cut_or_zeroed_tail_is_torn() {
        let (bytes, starts) = fragment_file(0, 4);
        for cut in starts[3].1 as usize + 1..bytes.len() {
            let scan = scan(file_of(&bytes[..cut]), 0).expect("scan");
            assert!(
                matches!(scan.damage, Some(Damage::Torn { .. })),
                "cut at {cut}"
            );
            assert_eq!(scan.valid_len, starts[3].1);
            assert_eq!(scan.end, starts[3].0);
        }
        let mut zeroed = bytes.clone();
        zeroed[starts[2].1 as usize + 5..].fill(0);
        let scan = scan(file_of(&zeroed), 0).expect("scan");
        assert!(matches!(scan.damage, Some(Damage::Torn { .. })));
        assert_eq!(scan.end, starts[2].0);
    }

    #[test]
    fn damage_followed_by_valid_records_is_corrupt_at_the_damaged_append() {
        let (mut bytes, starts) = fragment_file(0, 4);
        bytes[starts[1].1 as usize + HEADER_LEN + 1] ^= 0x40;
        let scan = scan(file_of(&bytes), 0).expect("scan");
        assert_eq!(scan.end, starts[1].0);
        match scan.damage {
            Some(Damage::Corrupt { offset, reason }) => {
                assert_eq!(offset, starts[1].0);
                assert!(reason.contains("checksum"), "{reason}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn a_cursor_serves_verified_bytes_from_any_offset() {
        let (bytes, _) = fragment_file(10, 4);
        let fragment = Fragment {
            begin: 10,
            end: 24,
            file: file_of(&bytes),
            marks: vec![(10, 0)],
        };
        let all = b"a0b11c222d3333";
        for from in 10..24 {
            let mut cursor = Cursor::new(&fragment, from);
            let mut got = Vec::new();
            let mut at = from;
            while at < 24 {
                let chunk = cursor
                    .read(at, 24, 3)
                    .map_err(|e| format!("{e:?}"))
                    .expect("read");
                assert!(!chunk.is_empty() && chunk.len() <= 3);
                at += chunk.len() as i64;
                got.extend_from_slice(&chunk);
            }
            assert_eq!(got, &all[(from - 10) as usize..]);
        }
        let mut cursor = Cursor::new(&fragment, 10);
        assert_eq!(
            cursor
                .read(10, 15, 100)
                .map_err(|e| format!("{e:?}"))
                .expect("read"),
            "a0b11"
        );
    }

    #[test]
    fn a_cursor_refuses_a_damaged_record() {
        let (mut bytes, starts) = fragment_file(0, 3);
        bytes[starts[2].1 as usize + HEADER_LEN] ^= 1;
        let fragment = Fragment {
            begin: 0,
            end: 9,
            file: file_of(&bytes),
            marks: vec![(0, 0)],
        };
        let mut cursor = Cursor::new(&fragment, 0);
        let first = cursor
            .read(0, 9, 100)
            .map_err(|e| format!("{e:?}"))
            .expect("undamaged part");
        assert_eq!(first, "a0b11");
        match cursor.read(5, 9, 100) {
            Err(FragmentError::Corrupt { offset, .. }) => assert_eq!(offset, 5),
            other => panic!("expected corruption, got {other:?}"),
        }
    }
}
