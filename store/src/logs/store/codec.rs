//! The log store's binary encodings (specified in `docs/format/logs.md`).
//!
//! A record is encoded whole into the WAL payload ([`encode_record`]); in a partition it is
//! split between the tantivy document's stored `record` field ([`encode_stored`]) and
//! fast-field columns (time, severity number, and the [`encode_source`] bytes). Records and
//! stored parts start with a version byte so a later build can change the layout and still
//! read old data.
//!
//! Decoding checks every length and count against the bytes that are there, so damaged input
//! costs an error, never a panic or an outsized allocation.

use std::ops::Range;

use crate::logs::model::LogRecord;
use crate::traces::model::{SpanId, TraceId};
use crate::tsdb::wal_records::{put_str, put_uvarint, put_varint, Reader, RecordError};

/// Version byte of an encoded record.
pub const RECORD_VERSION: u8 = 1;
/// Version byte of a record in the doc store ([`encode_stored`]).
pub const STORED_VERSION: u8 = 2;
/// Version byte of a WAL payload.
pub const PAYLOAD_VERSION: u8 = 1;
/// Bytes before the first record of a payload: version, sequence number, record count.
pub const PAYLOAD_HEADER_LEN: usize = 1 + 8 + 4;

const FLAG_TRACE_ID: u8 = 1;
const FLAG_SPAN_ID: u8 = 2;

fn put_attrs(buf: &mut Vec<u8>, attrs: &[(String, String)]) {
    put_uvarint(buf, attrs.len() as u64);
    for (k, v) in attrs {
        put_str(buf, k);
        put_str(buf, v);
    }
}

fn attrs(r: &mut Reader<'_>) -> Result<Vec<(String, String)>, RecordError> {
    let n = r.count()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let k = r.str()?.to_owned();
        let v = r.str()?.to_owned();
        out.push((k, v));
    }
    Ok(out)
}

/// Appends the encoding of one record.
pub fn encode_record(buf: &mut Vec<u8>, rec: &LogRecord) {
    buf.push(RECORD_VERSION);
    put_uvarint(buf, rec.time_unix_nano);
    put_observed(buf, rec);
    buf.push(rec.severity_number);
    put_str(buf, &rec.severity_text);
    put_str(buf, &rec.service);
    put_ids(buf, rec);
    put_str(buf, &rec.body);
    put_attrs(buf, &rec.resource);
    put_attrs(buf, &rec.attributes);
}

/// Appends the doc store's part of one record (version [`STORED_VERSION`]). The rest lives
/// in fast-field columns, where it costs next to nothing: the time and the severity number
/// (`time`, `severity`), the service and resource ([`encode_source`], in `source`). In the
/// doc store the times alone cost about 2 % of the raw line bytes (zstd finds no pattern in
/// them) and the repeated resource of every line about as much again.
pub fn encode_stored(buf: &mut Vec<u8>, rec: &LogRecord) {
    buf.push(STORED_VERSION);
    put_observed(buf, rec);
    put_str(buf, &rec.severity_text);
    put_ids(buf, rec);
    put_str(buf, &rec.body);
    put_attrs(buf, &rec.attributes);
}

/// Appends the record's source: its service and resource attributes, the same for every
/// record a process sends (so the `source` column's dictionary holds each once).
pub fn encode_source(buf: &mut Vec<u8>, rec: &LogRecord) {
    put_str(buf, &rec.service);
    put_attrs(buf, &rec.resource);
}

fn put_observed(buf: &mut Vec<u8>, rec: &LogRecord) {
    // usually a small positive difference; wrapping so any pair round-trips
    put_varint(
        buf,
        rec.observed_unix_nano.wrapping_sub(rec.time_unix_nano) as i64,
    );
}

fn put_ids(buf: &mut Vec<u8>, rec: &LogRecord) {
    let flags = if rec.trace_id.is_some() {
        FLAG_TRACE_ID
    } else {
        0
    } | if rec.span_id.is_some() {
        FLAG_SPAN_ID
    } else {
        0
    };
    buf.push(flags);
    if let Some(t) = &rec.trace_id {
        buf.extend_from_slice(&t.0);
    }
    if let Some(s) = &rec.span_id {
        buf.extend_from_slice(&s.0);
    }
}

fn ids(r: &mut Reader<'_>) -> Result<(Option<TraceId>, Option<SpanId>), RecordError> {
    let flags = r.u8()?;
    if flags & !(FLAG_TRACE_ID | FLAG_SPAN_ID) != 0 {
        return Err(r.err("unknown log record flags"));
    }
    let trace_id = if flags & FLAG_TRACE_ID != 0 {
        let mut id = [0u8; 16];
        id.copy_from_slice(r.bytes(16)?);
        Some(TraceId(id))
    } else {
        None
    };
    let span_id = if flags & FLAG_SPAN_ID != 0 {
        let mut id = [0u8; 8];
        id.copy_from_slice(r.bytes(8)?);
        Some(SpanId(id))
    } else {
        None
    };
    Ok((trace_id, span_id))
}

/// An upper bound of [`encode_record`]'s output length, for sizing buffers and chunks.
pub fn encoded_len_hint(rec: &LogRecord) -> usize {
    let attrs: usize = rec
        .resource
        .iter()
        .chain(&rec.attributes)
        .map(|(k, v)| k.len() + v.len() + 20)
        .sum();
    64 + rec.severity_text.len() + rec.service.len() + rec.body.len() + attrs
}

/// Decodes one record written by [`encode_record`]; trailing bytes are an error.
pub fn decode_record(bytes: &[u8]) -> Result<LogRecord, RecordError> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if version != RECORD_VERSION {
        return Err(r.err("unknown log record version"));
    }
    let time_unix_nano = r.uvarint()?;
    let observed_unix_nano = time_unix_nano.wrapping_add(r.varint()? as u64);
    let severity_number = r.u8()?;
    let severity_text = r.str()?.to_owned();
    let service = r.str()?.to_owned();
    let (trace_id, span_id) = ids(&mut r)?;
    let body = r.str()?.to_owned();
    let resource = attrs(&mut r)?;
    let attributes = attrs(&mut r)?;
    if !r.is_empty() {
        return Err(r.err("trailing bytes after log record"));
    }
    Ok(LogRecord {
        time_unix_nano,
        observed_unix_nano,
        severity_number,
        severity_text,
        service,
        trace_id,
        span_id,
        body,
        resource,
        attributes,
    })
}

/// A record's service and resource attributes ([`encode_source`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub service: String,
    pub resource: Vec<(String, String)>,
}

/// Decodes what [`encode_source`] wrote; trailing bytes are an error.
pub fn decode_source(bytes: &[u8]) -> Result<Source, RecordError> {
    let mut r = Reader::new(bytes);
    let service = r.str()?.to_owned();
    let resource = attrs(&mut r)?;
    if !r.is_empty() {
        return Err(r.err("trailing bytes after log record source"));
    }
    Ok(Source { service, resource })
}

/// Decodes the doc store's part of a record ([`encode_stored`]) and completes it with what
/// the columns hold: its time, severity number and source.
pub fn decode_stored(
    bytes: &[u8],
    time_unix_nano: u64,
    severity_number: u8,
    source: &Source,
) -> Result<LogRecord, RecordError> {
    let mut r = Reader::new(bytes);
    if r.u8()? != STORED_VERSION {
        return Err(r.err("unknown stored log record version"));
    }
    let observed_unix_nano = time_unix_nano.wrapping_add(r.varint()? as u64);
    let severity_text = r.str()?.to_owned();
    let (trace_id, span_id) = ids(&mut r)?;
    let body = r.str()?.to_owned();
    let attributes = attrs(&mut r)?;
    if !r.is_empty() {
        return Err(r.err("trailing bytes after stored log record"));
    }
    Ok(LogRecord {
        time_unix_nano,
        observed_unix_nano,
        severity_number,
        severity_text,
        service: source.service.clone(),
        trace_id,
        span_id,
        body,
        resource: source.resource.clone(),
        attributes,
    })
}

/// The record time, read without decoding the rest (replay routes records by it).
pub fn record_time(bytes: &[u8]) -> Result<u64, RecordError> {
    let mut r = Reader::new(bytes);
    if r.u8()? != RECORD_VERSION {
        return Err(r.err("unknown log record version"));
    }
    r.uvarint()
}

/// Builds one WAL payload: a header with room for the sequence number, which is set last
/// ([`PayloadBuilder::finish`]) so records can be encoded before a number is taken.
pub struct PayloadBuilder {
    buf: Vec<u8>,
    /// Where each record's bytes are in `buf`.
    ranges: Vec<Range<usize>>,
}

impl PayloadBuilder {
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(PAYLOAD_HEADER_LEN + bytes);
        buf.resize(PAYLOAD_HEADER_LEN, 0);
        buf[0] = PAYLOAD_VERSION;
        PayloadBuilder {
            buf,
            ranges: Vec::new(),
        }
    }

    pub fn add(&mut self, rec: &LogRecord) {
        // the length prefix is written after the record, then the two are rotated into place
        let start = self.buf.len();
        encode_record(&mut self.buf, rec);
        let len = self.buf.len() - start;
        let mut prefix = Vec::with_capacity(5);
        put_uvarint(&mut prefix, len as u64);
        self.buf.extend_from_slice(&prefix);
        self.buf[start..].rotate_right(prefix.len());
        let begin = start + prefix.len();
        self.ranges.push(begin..begin + len);
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// The payload with `seq` in its header, and the byte range of each record.
    pub fn finish(mut self, seq: u64) -> (Vec<u8>, Vec<Range<usize>>) {
        self.buf[1..9].copy_from_slice(&seq.to_le_bytes());
        let n = u32::try_from(self.ranges.len()).unwrap_or(u32::MAX);
        self.buf[9..13].copy_from_slice(&n.to_le_bytes());
        (self.buf, self.ranges)
    }
}

/// A decoded WAL payload: its sequence number and its records' encodings.
pub struct Payload<'a> {
    pub seq: u64,
    pub records: Vec<&'a [u8]>,
}

pub fn decode_payload(bytes: &[u8]) -> Result<Payload<'_>, RecordError> {
    let mut r = Reader::new(bytes);
    if r.u8()? != PAYLOAD_VERSION {
        return Err(r.err("unknown log payload version"));
    }
    let seq = r.u64_le()?;
    let mut n = [0u8; 4];
    n.copy_from_slice(r.bytes(4)?);
    let n = u32::from_le_bytes(n) as usize;
    if n > bytes.len() {
        return Err(r.err("record count larger than the payload"));
    }
    let mut records = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.count()?;
        records.push(r.bytes(len)?);
    }
    if !r.is_empty() {
        return Err(r.err("trailing bytes after the last log record"));
    }
    Ok(Payload { seq, records })
}
