//! On-disk framing of WAL segments and records (specified in `docs/format/wal.md`).
//!
//! A segment is `MAGIC` + version (u32 LE), then records of `len u32 LE | crc32 u32 LE |
//! payload`. Decoding never trusts a length before checking it against the bytes that are
//! actually there, so a torn or corrupt file costs a log line, not an allocation or a panic.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::wal::SegmentId;

/// First four bytes of every segment file.
pub const MAGIC: [u8; 4] = *b"LKWL";
/// The only segment version written and read today.
pub const VERSION: u32 = 1;
/// Segment header: magic + version.
pub const SEGMENT_HEADER_LEN: u64 = 8;
/// Record header: length + checksum.
pub const RECORD_HEADER_LEN: u64 = 8;
/// Upper bound on one payload. Anything larger is refused at append and treated as a corrupt
/// length at replay, so a flipped high bit cannot make replay allocate gigabytes.
pub const MAX_RECORD_BYTES: u64 = 64 * 1024 * 1024;

const SEGMENT_SUFFIX: &str = ".wal";
const SEGMENT_DIGITS: usize = 20;

/// The segment header bytes.
pub fn segment_header() -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..4].copy_from_slice(&MAGIC);
    h[4..].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// Appends one framed record to `buf`. The caller has checked the payload size.
pub fn encode_record(buf: &mut Vec<u8>, payload: &[u8]) {
    // The caller bounds payloads by MAX_RECORD_BYTES, well inside u32.
    let len = payload.len() as u32;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Framed size of a record with a payload of `payload_len` bytes.
pub fn framed_len(payload_len: usize) -> u64 {
    RECORD_HEADER_LEN + payload_len as u64
}

/// `00000000000000000007.wal` for segment 7.
pub fn segment_file_name(id: SegmentId) -> String {
    format!("{id:0width$}{SEGMENT_SUFFIX}", width = SEGMENT_DIGITS)
}

pub fn segment_path(dir: &Path, id: SegmentId) -> PathBuf {
    dir.join(segment_file_name(id))
}

/// The id of a segment file name, or None for any other file (temporary files, editors'
/// backups) so a stray file never stops the WAL from opening.
pub fn parse_segment_file_name(name: &str) -> Option<SegmentId> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Why a segment's contents stop being readable at some offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The file ends inside the segment header (a crash while creating the segment).
    ShortHeader,
    /// The header's magic bytes are wrong: not a Lookout WAL segment.
    BadMagic,
    /// The file ends inside a record header.
    ShortRecordHeader,
    /// A record length of zero or above [`MAX_RECORD_BYTES`].
    BadLength(u64),
    /// The file ends inside a record payload.
    ShortRecord { len: u64, available: u64 },
    /// The payload does not match its checksum.
    BadChecksum { stored: u32, computed: u32 },
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::ShortHeader => f.write_str("file ends inside the segment header"),
            Damage::BadMagic => f.write_str("bad segment magic"),
            Damage::ShortRecordHeader => f.write_str("file ends inside a record header"),
            Damage::BadLength(len) => write!(f, "bad record length {len}"),
            Damage::ShortRecord { len, available } => {
                write!(f, "short record: length {len}, only {available} bytes left")
            }
            Damage::BadChecksum { stored, computed } => {
                write!(
                    f,
                    "bad checksum: stored {stored:#010x}, computed {computed:#010x}"
                )
            }
        }
    }
}

/// One step of reading a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A valid record; its payload is in the reader's buffer.
    Record,
    /// Clean end of the segment.
    End,
    /// Unreadable from `offset` on.
    Damaged { offset: u64, damage: Damage },
}

/// Streams the records of one segment, checking framing and checksums.
pub struct SegmentReader<R> {
    inner: R,
    file_len: u64,
    offset: u64,
    payload: Vec<u8>,
}

/// What the segment header says.
#[derive(Debug, PartialEq, Eq)]
pub enum Header {
    Ok,
    /// A well-formed header of a version this build cannot read.
    UnsupportedVersion(u32),
    Damaged(Damage),
}

impl<R: Read> SegmentReader<R> {
    pub fn new(inner: R, file_len: u64) -> Self {
        SegmentReader {
            inner,
            file_len,
            offset: 0,
            payload: Vec::new(),
        }
    }

    /// Reads and checks the segment header; call once, first.
    pub fn read_header(&mut self) -> io::Result<Header> {
        if self.file_len < SEGMENT_HEADER_LEN {
            return Ok(Header::Damaged(Damage::ShortHeader));
        }
        let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
        self.inner.read_exact(&mut h)?;
        self.offset = SEGMENT_HEADER_LEN;
        if h[..4] != MAGIC {
            return Ok(Header::Damaged(Damage::BadMagic));
        }
        let version = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        if version != VERSION {
            return Ok(Header::UnsupportedVersion(version));
        }
        Ok(Header::Ok)
    }

    /// The payload of the record last returned as [`Next::Record`].
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Reads the next record. I/O errors are returned as such; damage is a value.
    pub fn next_record(&mut self) -> io::Result<Next> {
        let start = self.offset;
        let remaining = self.file_len.saturating_sub(start);
        if remaining == 0 {
            return Ok(Next::End);
        }
        let damaged = |damage| {
            Ok(Next::Damaged {
                offset: start,
                damage,
            })
        };
        if remaining < RECORD_HEADER_LEN {
            return damaged(Damage::ShortRecordHeader);
        }
        let mut h = [0u8; RECORD_HEADER_LEN as usize];
        self.inner.read_exact(&mut h)?;
        let len = u64::from(u32::from_le_bytes([h[0], h[1], h[2], h[3]]));
        let stored = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        // Zero-filled tails (a file extended but never written) would otherwise parse as
        // empty records with a matching checksum; empty payloads are never written.
        if len == 0 || len > MAX_RECORD_BYTES {
            return damaged(Damage::BadLength(len));
        }
        let available = remaining - RECORD_HEADER_LEN;
        if len > available {
            return damaged(Damage::ShortRecord { len, available });
        }
        // len <= MAX_RECORD_BYTES, which fits in usize on every supported target.
        self.payload.resize(len as usize, 0);
        self.inner.read_exact(&mut self.payload)?;
        let computed = crc32fast::hash(&self.payload);
        if computed != stored {
            return damaged(Damage::BadChecksum { stored, computed });
        }
        self.offset = start + RECORD_HEADER_LEN + len;
        Ok(Next::Record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = segment_header().to_vec();
        for p in payloads {
            encode_record(&mut buf, p);
        }
        buf
    }

    fn read_all(bytes: &[u8]) -> (Vec<Vec<u8>>, Next) {
        let mut r = SegmentReader::new(bytes, bytes.len() as u64);
        assert_eq!(r.read_header().ok(), Some(Header::Ok));
        let mut out = Vec::new();
        loop {
            match r.next_record() {
                Ok(Next::Record) => out.push(r.payload().to_vec()),
                Ok(other) => return (out, other),
                Err(e) => panic!("reading an in-memory segment failed: {e}"),
            }
        }
    }

    #[test]
    fn file_names_round_trip_and_reject_strangers() {
        assert_eq!(segment_file_name(7), "00000000000000000007.wal");
        assert_eq!(parse_segment_file_name("00000000000000000007.wal"), Some(7));
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_file_name("7.wal"), None);
        assert_eq!(parse_segment_file_name("0000000000000000000a.wal"), None);
        assert_eq!(
            parse_segment_file_name("00000000000000000007.wal.tmp"),
            None
        );
        // 20 digits but beyond u64.
        assert_eq!(parse_segment_file_name("99999999999999999999.wal"), None);
    }

    #[test]
    fn records_round_trip() {
        let bytes = segment(&[b"a", b"hello", &[0u8; 1000]]);
        let (records, end) = read_all(&bytes);
        assert_eq!(
            records,
            vec![b"a".to_vec(), b"hello".to_vec(), vec![0u8; 1000]]
        );
        assert_eq!(end, Next::End);
    }

    #[test]
    fn every_truncation_point_is_detected_not_misread() {
        let bytes = segment(&[b"first", b"second record"]);
        let first_end = SEGMENT_HEADER_LEN + framed_len(5);
        for cut in SEGMENT_HEADER_LEN as usize..bytes.len() {
            let (records, end) = read_all(&bytes[..cut]);
            if (cut as u64) < first_end {
                assert!(records.is_empty(), "cut at {cut}");
            } else {
                assert_eq!(records, vec![b"first".to_vec()], "cut at {cut}");
            }
            match end {
                Next::End => assert!(cut as u64 == SEGMENT_HEADER_LEN || cut as u64 == first_end),
                Next::Damaged { offset, .. } => {
                    assert!(offset == SEGMENT_HEADER_LEN || offset == first_end)
                }
                Next::Record => unreachable!("read_all only returns non-record steps"),
            }
        }
    }

    #[test]
    fn flipped_byte_and_zero_fill_are_damage() {
        let mut bytes = segment(&[b"first", b"second"]);
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        let (records, end) = read_all(&bytes);
        assert_eq!(records, vec![b"first".to_vec()]);
        assert!(matches!(
            end,
            Next::Damaged {
                damage: Damage::BadChecksum { .. },
                ..
            }
        ));

        let mut zeroed = segment(&[b"first"]);
        zeroed.extend_from_slice(&[0u8; 64]);
        let (records, end) = read_all(&zeroed);
        assert_eq!(records, vec![b"first".to_vec()]);
        assert!(matches!(
            end,
            Next::Damaged {
                damage: Damage::BadLength(0),
                ..
            }
        ));
    }

    #[test]
    fn huge_length_is_bad_length_without_allocating() {
        let mut bytes = segment_header().to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        let (records, end) = read_all(&bytes);
        assert!(records.is_empty());
        assert!(matches!(
            end,
            Next::Damaged {
                damage: Damage::BadLength(_),
                ..
            }
        ));
    }

    #[test]
    fn header_checks() {
        let mut r = SegmentReader::new(&b"LKW"[..], 3);
        assert_eq!(
            r.read_header().ok(),
            Some(Header::Damaged(Damage::ShortHeader))
        );
        let mut r = SegmentReader::new(&b"XXXX\x01\0\0\0"[..], 8);
        assert_eq!(
            r.read_header().ok(),
            Some(Header::Damaged(Damage::BadMagic))
        );
        let mut r = SegmentReader::new(&b"LKWL\x02\0\0\0"[..], 8);
        assert_eq!(r.read_header().ok(), Some(Header::UnsupportedVersion(2)));
    }
}
