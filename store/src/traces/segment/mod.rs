//! Immutable on-disk segments: one flushed head each (format in `docs/format/traces.md`).
//!
//! A segment is one file, `segments/<id>.lts`:
//! * span pages: zstd-compressed runs of span records, the spans of a trace together, traces
//!   ordered by their first start so pages follow time;
//! * trace index blocks: per trace, sorted by id, where its spans are and its partial
//!   summary (so search summaries need no span decoding);
//! * column blocks: per span, sorted by start, the fields search filters on;
//! * the error-trace list, then the meta section (string table, resources, operations,
//!   section tables, Bloom filter) and a fixed footer pointing at it.
//!
//! Loading reads only the footer and the meta; a trace lookup checks the Bloom filter,
//! binary-searches the in-memory first ids of the index blocks, and decompresses one index
//! block and the page(s) holding the trace. Every section carries a CRC-32; any damage is a
//! `Corrupt` error naming the file.
//!
//! Writing goes to `segments/.tmp-<name>`, is fsynced, renamed into place and the
//! directory fsynced, so a crash leaves a whole segment or a temp file the next open
//! deletes.
//!
//! Files: this module holds the format's shared pieces (names, sections, index entries);
//! `write` builds a segment from a frozen head, `read` serves lookups and searches.

mod read;
mod write;

use std::path::Path;

use crate::error::StoreError;
use crate::traces::model::{SpanKind, TraceId};
use crate::tsdb::wal_records::{put_uvarint, put_varint, Reader, RecordError};

pub use read::{PageCache, Resolved, Segment};
pub use write::write_segment;

pub const MAGIC: [u8; 4] = *b"LKTS";
pub const VERSION: u32 = 1;
const HEADER_LEN: u64 = 8;
const FOOTER_LEN: u64 = 28;
/// A page is cut before the next trace once its raw bytes reach this: small enough that a
/// lookup decompresses little, big enough for zstd to find the redundancy between spans.
const PAGE_RAW_BYTES: usize = 64 * 1024;
/// A page is cut inside a trace past this, so a huge trace never makes one huge page.
const PAGE_RAW_MAX_BYTES: usize = 8 * 1024 * 1024;
const INDEX_BLOCK_TRACES: usize = 128;
const COLUMN_BLOCK_SPANS: usize = 4096;
const ZSTD_LEVEL: i32 = 3;
/// Upper bound on a section's uncompressed size, so a corrupt length cannot make a read
/// allocate gigabytes.
const MAX_SECTION_RAW: u64 = 1 << 30;
const SUFFIX: &str = ".lts";
const TMP_PREFIX: &str = ".tmp-";

/// `00000000000000000007.lts` for segment 7.
pub fn file_name(id: u64) -> String {
    format!("{id:020}{SUFFIX}")
}

/// The id of a segment file name; None for anything else (temp files included).
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether a file is a leftover of an interrupted segment write.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(TMP_PREFIX)
}

fn corrupt(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn rec(path: &Path, what: &str, e: RecordError) -> StoreError {
    corrupt(path, format!("{what}: {e}"))
}

/// Where a compressed section lives.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Section {
    offset: u64,
    clen: u32,
    raw_len: u32,
    crc: u32,
}

fn put_section(buf: &mut Vec<u8>, s: &Section) {
    put_uvarint(buf, s.offset);
    put_uvarint(buf, u64::from(s.clen));
    put_uvarint(buf, u64::from(s.raw_len));
    buf.extend_from_slice(&s.crc.to_le_bytes());
}

fn read_u32v(r: &mut Reader<'_>) -> Result<u32, RecordError> {
    let v = r.uvarint()?;
    u32::try_from(v).map_err(|_| RecordError {
        offset: r.pos,
        what: "value does not fit 32 bits",
    })
}

fn read_section(r: &mut Reader<'_>) -> Result<Section, RecordError> {
    let offset = r.uvarint()?;
    let clen = read_u32v(r)?;
    let raw_len = read_u32v(r)?;
    let b = r.bytes(4)?;
    Ok(Section {
        offset,
        clen,
        raw_len,
        crc: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
    })
}

fn read_id(r: &mut Reader<'_>) -> Result<TraceId, RecordError> {
    let b = r.bytes(16)?;
    let mut id = [0u8; 16];
    id.copy_from_slice(b);
    Ok(TraceId(id))
}

fn read_count(r: &mut Reader<'_>) -> Result<usize, RecordError> {
    let n = r.uvarint()?;
    if n > r.buf.len().saturating_sub(r.pos) as u64 {
        return Err(RecordError {
            offset: r.pos,
            what: "count larger than the bytes left",
        });
    }
    Ok(n as usize)
}

fn kind_of(b: u8, r: &Reader<'_>) -> Result<SpanKind, RecordError> {
    if b > 5 {
        return Err(RecordError {
            offset: r.pos,
            what: "unknown span kind",
        });
    }
    Ok(SpanKind::from_i32(i32::from(b)))
}

/// A trace's index entry, as written to the index blocks.
struct Entry {
    trace_id: TraceId,
    page: u32,
    offset: u32,
    len: u64,
    partial: SymPartial,
}

/// [`Partial`] with strings as symbol ids.
#[derive(Clone, Debug, Default)]
struct SymPartial {
    span_count: u64,
    error_count: u64,
    min_start: u64,
    max_end: u64,
    /// `(start, service, name)` of the earliest root.
    root: Option<(u64, u32, u32)>,
    /// `(service, name)` of the earliest span (its start is `min_start`).
    earliest: (u32, u32),
    services: Vec<u32>,
}

fn encode_entry(buf: &mut Vec<u8>, e: &Entry) {
    buf.extend_from_slice(&e.trace_id.0);
    put_uvarint(buf, u64::from(e.page));
    put_uvarint(buf, u64::from(e.offset));
    put_uvarint(buf, e.len);
    let p = &e.partial;
    put_uvarint(buf, p.span_count);
    put_uvarint(buf, p.error_count);
    put_uvarint(buf, p.min_start);
    put_varint(buf, p.max_end.wrapping_sub(p.min_start) as i64);
    match p.root {
        Some((start, svc, name)) => {
            buf.push(1);
            put_uvarint(buf, start);
            put_uvarint(buf, u64::from(svc));
            put_uvarint(buf, u64::from(name));
        }
        None => buf.push(0),
    }
    put_uvarint(buf, u64::from(p.earliest.0));
    put_uvarint(buf, u64::from(p.earliest.1));
    put_uvarint(buf, p.services.len() as u64);
    for s in &p.services {
        put_uvarint(buf, u64::from(*s));
    }
}

fn decode_entry(r: &mut Reader<'_>) -> Result<Entry, RecordError> {
    let trace_id = read_id(r)?;
    let page = read_u32v(r)?;
    let offset = read_u32v(r)?;
    let len = r.uvarint()?;
    let span_count = r.uvarint()?;
    let error_count = r.uvarint()?;
    let min_start = r.uvarint()?;
    let max_end = min_start.wrapping_add(r.varint()? as u64);
    let root = match r.u8()? {
        0 => None,
        1 => Some((r.uvarint()?, read_u32v(r)?, read_u32v(r)?)),
        _ => {
            return Err(RecordError {
                offset: r.pos,
                what: "bad root flag",
            })
        }
    };
    let earliest = (read_u32v(r)?, read_u32v(r)?);
    let n = read_count(r)?;
    let mut services = Vec::with_capacity(n);
    for _ in 0..n {
        services.push(read_u32v(r)?);
    }
    Ok(Entry {
        trace_id,
        page,
        offset,
        len,
        partial: SymPartial {
            span_count,
            error_count,
            min_start,
            max_end,
            root,
            earliest,
            services,
        },
    })
}
