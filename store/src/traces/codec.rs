//! The compact binary encoding of spans and resources (specified in `docs/format/traces.md`).
//!
//! One encoding serves the WAL payloads and the segment pages, so a span is encoded once at
//! append and its bytes are copied, never re-encoded, when the head is flushed. The fields
//! search needs (ids, parent, kind, status, times, name) come first, so
//! [`decode_span_head`] reads them without touching attributes, events or links.
//!
//! Decoding never trusts a count or length before checking it against the bytes that are
//! there and limits nesting depth, so corrupt input costs an error, not a panic or a huge
//! allocation.

use crate::traces::model::{
    AttrValue, Attributes, Resource, Span, SpanEvent, SpanId, SpanKind, SpanLink, StatusCode,
    TraceId,
};
use crate::tsdb::wal_records::{put_str, put_uvarint, put_varint, Reader, RecordError};

/// Deepest nesting of array / key-value-list attribute values the decoder accepts. OTLP
/// input is bounded far below this by protobuf's recursion limit.
pub const MAX_VALUE_DEPTH: usize = 128;

const VALUE_STR: u8 = 0;
const VALUE_BOOL: u8 = 1;
const VALUE_INT: u8 = 2;
const VALUE_DOUBLE: u8 = 3;
const VALUE_BYTES: u8 = 4;
const VALUE_ARRAY: u8 = 5;
const VALUE_KVLIST: u8 = 6;

const FLAG_HAS_PARENT: u8 = 1;

fn array<const N: usize>(r: &mut Reader<'_>) -> Result<[u8; N], RecordError> {
    let b = r.bytes(N)?;
    let mut out = [0u8; N];
    out.copy_from_slice(b);
    Ok(out)
}

fn string(r: &mut Reader<'_>) -> Result<String, RecordError> {
    r.str().map(str::to_owned)
}

/// Appends the encoding of an attribute value.
pub fn put_value(buf: &mut Vec<u8>, v: &AttrValue) {
    match v {
        AttrValue::Str(s) => {
            buf.push(VALUE_STR);
            put_str(buf, s);
        }
        AttrValue::Bool(b) => {
            buf.push(VALUE_BOOL);
            buf.push(u8::from(*b));
        }
        AttrValue::Int(i) => {
            buf.push(VALUE_INT);
            put_varint(buf, *i);
        }
        AttrValue::Double(d) => {
            buf.push(VALUE_DOUBLE);
            buf.extend_from_slice(&d.to_bits().to_le_bytes());
        }
        AttrValue::Bytes(b) => {
            buf.push(VALUE_BYTES);
            put_uvarint(buf, b.len() as u64);
            buf.extend_from_slice(b);
        }
        AttrValue::Array(items) => {
            buf.push(VALUE_ARRAY);
            put_uvarint(buf, items.len() as u64);
            for item in items {
                put_value(buf, item);
            }
        }
        AttrValue::KvList(kvs) => {
            buf.push(VALUE_KVLIST);
            put_attributes(buf, kvs);
        }
    }
}

/// Appends `count, count x (key, value)`.
pub fn put_attributes(buf: &mut Vec<u8>, attrs: &Attributes) {
    put_uvarint(buf, attrs.len() as u64);
    for (k, v) in attrs {
        put_str(buf, k);
        put_value(buf, v);
    }
}

fn read_value(r: &mut Reader<'_>, depth: usize) -> Result<AttrValue, RecordError> {
    if depth > MAX_VALUE_DEPTH {
        return Err(r.err("attribute values nested too deeply"));
    }
    Ok(match r.u8()? {
        VALUE_STR => AttrValue::Str(string(r)?),
        VALUE_BOOL => match r.u8()? {
            0 => AttrValue::Bool(false),
            1 => AttrValue::Bool(true),
            _ => return Err(r.err("boolean value is neither 0 nor 1")),
        },
        VALUE_INT => AttrValue::Int(r.varint()?),
        VALUE_DOUBLE => AttrValue::Double(f64::from_bits(r.u64_le()?)),
        VALUE_BYTES => {
            let n = r.count()?;
            AttrValue::Bytes(r.bytes(n)?.to_vec())
        }
        VALUE_ARRAY => {
            let n = r.count()?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_value(r, depth + 1)?);
            }
            AttrValue::Array(items)
        }
        VALUE_KVLIST => AttrValue::KvList(read_attributes_at(r, depth + 1)?),
        _ => return Err(r.err("unknown attribute value type")),
    })
}

fn read_attributes_at(r: &mut Reader<'_>, depth: usize) -> Result<Attributes, RecordError> {
    let n = r.count()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let k = string(r)?;
        let v = read_value(r, depth)?;
        out.push((k, v));
    }
    Ok(out)
}

/// Reads what [`put_attributes`] wrote.
pub fn read_attributes(r: &mut Reader<'_>) -> Result<Attributes, RecordError> {
    read_attributes_at(r, 0)
}

/// Appends a resource: `service_name, attributes`.
pub fn encode_resource(buf: &mut Vec<u8>, res: &Resource) {
    put_str(buf, &res.service_name);
    put_attributes(buf, &res.attributes);
}

/// Decodes a whole buffer written by [`encode_resource`].
pub fn decode_resource(bytes: &[u8]) -> Result<Resource, RecordError> {
    let mut r = Reader::new(bytes);
    let service_name = string(&mut r)?;
    let attributes = read_attributes(&mut r)?;
    if !r.is_empty() {
        return Err(r.err("trailing bytes after the resource"));
    }
    Ok(Resource {
        service_name,
        attributes,
    })
}

/// Appends a span (see the module docs for the field order).
pub fn encode_span(buf: &mut Vec<u8>, s: &Span) {
    buf.extend_from_slice(&s.trace_id.0);
    buf.extend_from_slice(&s.span_id.0);
    match s.parent_span_id {
        Some(p) => {
            buf.push(FLAG_HAS_PARENT);
            buf.extend_from_slice(&p.0);
        }
        None => buf.push(0),
    }
    buf.push(s.kind as u8);
    buf.push(s.status_code as u8);
    put_uvarint(buf, s.start_unix_nano);
    // a wrapping delta round-trips any end, even one before the start
    put_varint(buf, s.end_unix_nano.wrapping_sub(s.start_unix_nano) as i64);
    put_str(buf, &s.name);
    put_str(buf, &s.trace_state);
    put_str(buf, &s.status_message);
    put_str(buf, &s.scope_name);
    put_str(buf, &s.scope_version);
    put_uvarint(buf, u64::from(s.dropped_attributes_count));
    put_uvarint(buf, u64::from(s.dropped_events_count));
    put_uvarint(buf, u64::from(s.dropped_links_count));
    put_attributes(buf, &s.attributes);
    put_uvarint(buf, s.events.len() as u64);
    for e in &s.events {
        put_varint(buf, e.time_unix_nano.wrapping_sub(s.start_unix_nano) as i64);
        put_str(buf, &e.name);
        put_attributes(buf, &e.attributes);
    }
    put_uvarint(buf, s.links.len() as u64);
    for l in &s.links {
        buf.extend_from_slice(&l.trace_id.0);
        buf.extend_from_slice(&l.span_id.0);
        put_str(buf, &l.trace_state);
        put_attributes(buf, &l.attributes);
    }
}

/// The leading fields of an encoded span, read without decoding the rest.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanHead<'a> {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub kind: SpanKind,
    pub status: StatusCode,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub name: &'a str,
}

fn read_head<'a>(r: &mut Reader<'a>) -> Result<SpanHead<'a>, RecordError> {
    let trace_id = TraceId(array::<16>(r)?);
    let span_id = SpanId(array::<8>(r)?);
    let parent_span_id = match r.u8()? {
        0 => None,
        FLAG_HAS_PARENT => Some(SpanId(array::<8>(r)?)),
        _ => return Err(r.err("unknown span flags")),
    };
    let kind = match r.u8()? {
        k @ 0..=5 => SpanKind::from_i32(i32::from(k)),
        _ => return Err(r.err("unknown span kind")),
    };
    let status = match r.u8()? {
        s @ 0..=2 => StatusCode::from_i32(i32::from(s)),
        _ => return Err(r.err("unknown status code")),
    };
    let start_unix_nano = r.uvarint()?;
    let end_unix_nano = start_unix_nano.wrapping_add(r.varint()? as u64);
    let name = r.str()?;
    Ok(SpanHead {
        trace_id,
        span_id,
        parent_span_id,
        kind,
        status,
        start_unix_nano,
        end_unix_nano,
        name,
    })
}

/// Reads the leading fields of an encoded span.
pub fn decode_span_head(bytes: &[u8]) -> Result<SpanHead<'_>, RecordError> {
    read_head(&mut Reader::new(bytes))
}

fn read_u32(r: &mut Reader<'_>) -> Result<u32, RecordError> {
    let v = r.uvarint()?;
    u32::try_from(v).map_err(|_| r.err("count does not fit 32 bits"))
}

/// Skips the strings and counts between the head and the attributes.
fn skip_to_attributes(r: &mut Reader<'_>) -> Result<(), RecordError> {
    for _ in 0..4 {
        r.str()?;
    }
    for _ in 0..3 {
        read_u32(r)?;
    }
    Ok(())
}

/// The span's own attributes, without decoding events and links (tag search).
pub fn decode_span_attributes(bytes: &[u8]) -> Result<Attributes, RecordError> {
    let mut r = Reader::new(bytes);
    read_head(&mut r)?;
    skip_to_attributes(&mut r)?;
    read_attributes(&mut r)
}

/// Decodes a whole buffer written by [`encode_span`].
pub fn decode_span(bytes: &[u8]) -> Result<Span, RecordError> {
    let mut r = Reader::new(bytes);
    let head = read_head(&mut r)?;
    let trace_state = string(&mut r)?;
    let status_message = string(&mut r)?;
    let scope_name = string(&mut r)?;
    let scope_version = string(&mut r)?;
    let dropped_attributes_count = read_u32(&mut r)?;
    let dropped_events_count = read_u32(&mut r)?;
    let dropped_links_count = read_u32(&mut r)?;
    let attributes = read_attributes(&mut r)?;
    let n = r.count()?;
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        let time_unix_nano = head.start_unix_nano.wrapping_add(r.varint()? as u64);
        let name = string(&mut r)?;
        let attributes = read_attributes(&mut r)?;
        events.push(SpanEvent {
            time_unix_nano,
            name,
            attributes,
        });
    }
    let n = r.count()?;
    let mut links = Vec::with_capacity(n);
    for _ in 0..n {
        let trace_id = TraceId(array::<16>(&mut r)?);
        let span_id = SpanId(array::<8>(&mut r)?);
        let trace_state = string(&mut r)?;
        let attributes = read_attributes(&mut r)?;
        links.push(SpanLink {
            trace_id,
            span_id,
            trace_state,
            attributes,
        });
    }
    if !r.is_empty() {
        return Err(r.err("trailing bytes after the span"));
    }
    Ok(Span {
        trace_id: head.trace_id,
        span_id: head.span_id,
        parent_span_id: head.parent_span_id,
        trace_state,
        name: head.name.to_owned(),
        kind: head.kind,
        start_unix_nano: head.start_unix_nano,
        end_unix_nano: head.end_unix_nano,
        attributes,
        events,
        links,
        status_code: head.status,
        status_message,
        scope_name,
        scope_version,
        dropped_attributes_count,
        dropped_events_count,
        dropped_links_count,
    })
}

/// Whether `v` spelled as [`AttrValue::to_text`] equals `text` (strings compared without
/// allocating).
pub fn value_text_eq(v: &AttrValue, text: &str) -> bool {
    match v {
        AttrValue::Str(s) => s == text,
        other => other.to_text() == text,
    }
}

/// Whether every `key=value` tag holds on the span: looked up in the span's attributes
/// first, then in its resource's.
pub fn tags_match(span_attrs: &Attributes, resource: &Resource, tags: &[(String, String)]) -> bool {
    tags.iter().all(|(k, want)| {
        match span_attrs
            .iter()
            .chain(resource.attributes.iter())
            .find(|(key, _)| key == k)
        {
            Some((_, v)) => value_text_eq(v, want),
            None => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_value() -> Vec<(String, AttrValue)> {
        vec![
            ("s".into(), AttrValue::Str("héllo ✓ 世界".into())),
            ("empty".into(), AttrValue::Str(String::new())),
            ("t".into(), AttrValue::Bool(true)),
            ("f".into(), AttrValue::Bool(false)),
            ("i".into(), AttrValue::Int(i64::MIN)),
            ("j".into(), AttrValue::Int(-1)),
            ("d".into(), AttrValue::Double(-0.0)),
            ("nan".into(), AttrValue::Double(f64::NAN)),
            ("inf".into(), AttrValue::Double(f64::INFINITY)),
            ("b".into(), AttrValue::Bytes(vec![0, 255, 7])),
            (
                "a".into(),
                AttrValue::Array(vec![
                    AttrValue::Int(1),
                    AttrValue::Array(vec![AttrValue::Str("x".into())]),
                ]),
            ),
            (
                "kv".into(),
                AttrValue::KvList(vec![(
                    "inner".into(),
                    AttrValue::KvList(vec![("z".into(), AttrValue::Bool(false))]),
                )]),
            ),
        ]
    }

    fn full_span() -> Span {
        Span {
            trace_id: TraceId([7; 16]),
            span_id: SpanId([1, 2, 3, 4, 5, 6, 7, 8]),
            parent_span_id: Some(SpanId([9; 8])),
            trace_state: "k=v,ü=1".into(),
            name: "GET /ünïcode/😀".into(),
            kind: SpanKind::Consumer,
            start_unix_nano: 1_700_000_000_000_000_000,
            end_unix_nano: 1_700_000_000_500_000_000,
            attributes: every_value(),
            events: vec![
                SpanEvent {
                    time_unix_nano: 1_700_000_000_100_000_000,
                    name: "exception".into(),
                    attributes: every_value(),
                },
                // an event before the span started still round-trips
                SpanEvent {
                    time_unix_nano: 5,
                    name: String::new(),
                    attributes: vec![],
                },
            ],
            links: vec![SpanLink {
                trace_id: TraceId([3; 16]),
                span_id: SpanId([4; 8]),
                trace_state: "a=b".into(),
                attributes: every_value(),
            }],
            status_code: StatusCode::Error,
            status_message: "boom 💥".into(),
            scope_name: "io.opentelemetry.http".into(),
            scope_version: "1.2.3".into(),
            dropped_attributes_count: u32::MAX,
            dropped_events_count: 2,
            dropped_links_count: 3,
        }
    }

    fn assert_same_span(a: &Span, b: &Span) {
        // NaN != NaN, so compare the encodings, which are bit-exact
        let (mut x, mut y) = (Vec::new(), Vec::new());
        encode_span(&mut x, a);
        encode_span(&mut y, b);
        assert_eq!(x, y);
        assert_eq!(a.name, b.name);
        assert_eq!(a.events.len(), b.events.len());
    }

    #[test]
    fn span_round_trips_every_field() {
        let s = full_span();
        let mut buf = Vec::new();
        encode_span(&mut buf, &s);
        let back = decode_span(&buf).unwrap();
        assert_same_span(&s, &back);
        let mut no_nan = s.clone();
        no_nan.attributes.retain(|(k, _)| k != "nan");
        no_nan.events.iter_mut().for_each(|e| e.attributes.clear());
        no_nan.links.iter_mut().for_each(|l| l.attributes.clear());
        let mut buf = Vec::new();
        encode_span(&mut buf, &no_nan);
        assert_eq!(decode_span(&buf).unwrap(), no_nan);
    }

    #[test]
    fn root_span_and_end_before_start_round_trip() {
        let s = Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([2; 8]),
            start_unix_nano: 100,
            end_unix_nano: 40,
            ..Default::default()
        };
        let mut buf = Vec::new();
        encode_span(&mut buf, &s);
        assert_eq!(decode_span(&buf).unwrap(), s);
        let head = decode_span_head(&buf).unwrap();
        assert_eq!(head.parent_span_id, None);
        assert_eq!(head.end_unix_nano, 40);
        let s = Span {
            start_unix_nano: u64::MAX,
            end_unix_nano: 0,
            ..s
        };
        let mut buf = Vec::new();
        encode_span(&mut buf, &s);
        assert_eq!(decode_span(&buf).unwrap(), s);
    }

    #[test]
    fn head_and_attributes_read_without_full_decode() {
        let s = full_span();
        let mut buf = Vec::new();
        encode_span(&mut buf, &s);
        let head = decode_span_head(&buf).unwrap();
        assert_eq!(head.trace_id, s.trace_id);
        assert_eq!(head.span_id, s.span_id);
        assert_eq!(head.parent_span_id, s.parent_span_id);
        assert_eq!(head.kind, SpanKind::Consumer);
        assert_eq!(head.status, StatusCode::Error);
        assert_eq!(head.start_unix_nano, s.start_unix_nano);
        assert_eq!(head.end_unix_nano, s.end_unix_nano);
        assert_eq!(head.name, s.name);
        let attrs = decode_span_attributes(&buf).unwrap();
        assert_eq!(attrs.len(), s.attributes.len());
        assert_eq!(attrs[0], s.attributes[0]);
    }

    #[test]
    fn resource_round_trips() {
        let r = Resource {
            service_name: "chéckout".into(),
            attributes: every_value()
                .into_iter()
                .filter(|(k, _)| k != "nan")
                .collect(),
        };
        let mut buf = Vec::new();
        encode_resource(&mut buf, &r);
        assert_eq!(decode_resource(&buf).unwrap(), r);
    }

    #[test]
    fn truncated_or_garbled_input_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        encode_span(&mut buf, &full_span());
        for cut in 0..buf.len() {
            assert!(decode_span(&buf[..cut]).is_err(), "cut at {cut}");
        }
        // flip every byte once: never a panic (some flips still decode, e.g. inside a string)
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0xff;
            let _ = decode_span(&bad);
            let _ = decode_span_attributes(&bad);
        }
        let mut huge_count = vec![VALUE_ARRAY];
        put_uvarint(&mut huge_count, u64::MAX >> 1);
        assert!(read_value(&mut Reader::new(&huge_count), 0).is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut buf = Vec::new();
        for _ in 0..(MAX_VALUE_DEPTH + 5) {
            buf.push(VALUE_ARRAY);
            put_uvarint(&mut buf, 1);
        }
        buf.push(VALUE_INT);
        put_varint(&mut buf, 1);
        let e = read_value(&mut Reader::new(&buf), 0).unwrap_err();
        assert_eq!(e.what, "attribute values nested too deeply");
    }

    #[test]
    fn tags_look_at_span_then_resource() {
        let span_attrs = vec![
            ("http.status_code".to_string(), AttrValue::Int(500)),
            ("region".to_string(), AttrValue::Str("span-level".into())),
        ];
        let res = Resource {
            service_name: "api".into(),
            attributes: vec![
                ("region".into(), AttrValue::Str("eu".into())),
                ("host".into(), AttrValue::Str("h1".into())),
            ],
        };
        let t = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(tags_match(
            &span_attrs,
            &res,
            &t(&[("http.status_code", "500")])
        ));
        assert!(tags_match(&span_attrs, &res, &t(&[("host", "h1")])));
        assert!(tags_match(
            &span_attrs,
            &res,
            &t(&[("region", "span-level")])
        ));
        assert!(!tags_match(&span_attrs, &res, &t(&[("region", "eu")])));
        assert!(!tags_match(&span_attrs, &res, &t(&[("missing", "")])));
        assert!(!tags_match(
            &span_attrs,
            &res,
            &t(&[("host", "h1"), ("http.status_code", "200")])
        ));
        assert!(tags_match(&span_attrs, &res, &[]));
    }
}
