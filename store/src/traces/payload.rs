//! The trace store's WAL payload: one append's spans, grouped by resource.
//!
//! ```text
//! payload := u8 version (= 1), group*
//! group   := u32 LE resource_len, resource, u32 LE span_count, span_count x (u32 LE span_len, span)
//! ```
//!
//! Lengths are fixed-width so the encoder writes each span once, in place, and patches its
//! length afterwards. A batch larger than [`MAX_PAYLOAD_BYTES`] is split into several
//! payloads (the WAL caps a record at 64 MiB); each repeats the resource of its first group.

use std::ops::Range;

use crate::traces::codec::{self, SpanHead};
use crate::traces::model::SpanBatch;
use crate::tsdb::wal_records::RecordError;

pub const PAYLOAD_VERSION: u8 = 1;

/// A payload is cut once it grows past this.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;

/// A single span encoding larger than this is rejected (it could not fit a WAL record).
pub const MAX_SPAN_BYTES: usize = 32 * 1024 * 1024;

/// The payloads of one batch and what was rejected on the way.
#[derive(Debug, Default)]
pub struct Encoded {
    pub payloads: Vec<Vec<u8>>,
    pub accepted: u64,
    pub rejected: u64,
    pub first_rejection: Option<String>,
}

impl Encoded {
    fn reject(&mut self, msg: impl FnOnce() -> String) {
        self.rejected += 1;
        if self.first_rejection.is_none() {
            self.first_rejection = Some(msg());
        }
    }
}

struct Builder {
    buf: Vec<u8>,
    /// The current group: where it starts, where its span count is patched in, and the
    /// count so far.
    group: Option<(usize, usize, u32)>,
}

impl Builder {
    fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.min(MAX_PAYLOAD_BYTES + 4096));
        buf.push(PAYLOAD_VERSION);
        Builder { buf, group: None }
    }

    fn start_group(&mut self, resource: &[u8]) {
        self.close_group();
        let start = self.buf.len();
        self.buf
            .extend_from_slice(&(resource.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(resource);
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_le_bytes());
        self.group = Some((start, at, 0));
    }

    /// Patches the span count in, or drops the group when all its spans were rejected.
    fn close_group(&mut self) {
        match self.group.take() {
            Some((start, _, 0)) => self.buf.truncate(start),
            Some((_, at, n)) => self.buf[at..at + 4].copy_from_slice(&n.to_le_bytes()),
            None => {}
        }
    }

    fn has_spans(&self) -> bool {
        self.buf.len() > 1
    }

    fn finish(mut self) -> Vec<u8> {
        self.close_group();
        self.buf
    }
}

/// Encodes a batch into WAL payloads, rejecting spans with an all-zero trace or span id and
/// spans too large to log. Resources are written once per group.
pub fn encode_batch(batch: &SpanBatch, size_hint_per_span: usize) -> Encoded {
    let mut out = Encoded::default();
    let total = batch.span_count();
    let mut b = Builder::new(total.saturating_mul(size_hint_per_span) + 256);
    let mut resource = Vec::new();
    for rs in &batch.resource_spans {
        resource.clear();
        codec::encode_resource(&mut resource, &rs.resource);
        let mut in_group = false;
        for span in &rs.spans {
            if !span.trace_id.is_valid() {
                out.reject(|| {
                    format!(
                        "span {} has an all-zero trace id (service {:?})",
                        span.span_id, rs.resource.service_name
                    )
                });
                continue;
            }
            if !span.span_id.is_valid() {
                out.reject(|| {
                    format!(
                        "a span of trace {} has an all-zero span id (service {:?})",
                        span.trace_id, rs.resource.service_name
                    )
                });
                continue;
            }
            if b.buf.len() >= MAX_PAYLOAD_BYTES && b.has_spans() {
                let rest = total.saturating_mul(size_hint_per_span);
                let full = std::mem::replace(&mut b, Builder::new(rest));
                out.payloads.push(full.finish());
                in_group = false;
            }
            if !in_group {
                b.start_group(&resource);
                in_group = true;
            }
            let len_at = b.buf.len();
            b.buf.extend_from_slice(&0u32.to_le_bytes());
            codec::encode_span(&mut b.buf, span);
            let len = b.buf.len() - len_at - 4;
            if len > MAX_SPAN_BYTES {
                b.buf.truncate(len_at);
                out.reject(|| {
                    format!(
                        "span {} of trace {} encodes to {len} bytes, over the limit of {MAX_SPAN_BYTES}",
                        span.span_id, span.trace_id
                    )
                });
                continue;
            }
            b.buf[len_at..len_at + 4].copy_from_slice(&(len as u32).to_le_bytes());
            if let Some((_, _, n)) = b.group.as_mut() {
                *n += 1;
            }
            out.accepted += 1;
        }
    }
    let last = b.finish();
    if last.len() > 1 {
        out.payloads.push(last);
    }
    out
}

/// One group of a parsed payload: byte ranges into the payload.
#[derive(Debug)]
pub struct Group {
    pub resource: Range<usize>,
    pub spans: Vec<Range<usize>>,
}

fn fail(offset: usize, what: &'static str) -> RecordError {
    RecordError { offset, what }
}

fn u32_at(buf: &[u8], at: usize) -> Result<usize, RecordError> {
    let b = buf
        .get(at..at + 4)
        .ok_or_else(|| fail(at, "length past end"))?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Splits a payload into its groups without decoding spans or resources.
pub fn parse_payload(buf: &[u8]) -> Result<Vec<Group>, RecordError> {
    match buf.first() {
        Some(&PAYLOAD_VERSION) => {}
        Some(_) => return Err(fail(0, "unsupported trace payload version")),
        None => return Err(fail(0, "empty payload")),
    }
    let mut pos = 1;
    let mut groups = Vec::new();
    while pos < buf.len() {
        let rlen = u32_at(buf, pos)?;
        pos += 4;
        let resource = pos..pos
            .checked_add(rlen)
            .ok_or_else(|| fail(pos, "bad length"))?;
        if resource.end > buf.len() {
            return Err(fail(pos, "resource past end"));
        }
        pos = resource.end;
        let n = u32_at(buf, pos)?;
        pos += 4;
        if n > (buf.len() - pos) / 4 {
            return Err(fail(pos, "span count larger than the bytes left"));
        }
        let mut spans = Vec::with_capacity(n);
        for _ in 0..n {
            let len = u32_at(buf, pos)?;
            pos += 4;
            let end = pos
                .checked_add(len)
                .ok_or_else(|| fail(pos, "bad length"))?;
            if end > buf.len() {
                return Err(fail(pos, "span past end"));
            }
            spans.push(pos..end);
            pos = end;
        }
        groups.push(Group { resource, spans });
    }
    Ok(groups)
}

/// A parsed span's head, with its range in the payload.
pub struct ParsedSpan<'a> {
    pub range: Range<usize>,
    pub head: SpanHead<'a>,
}

/// A parsed group: its resource bytes and its spans' heads.
pub struct ParsedGroup<'a> {
    pub resource: &'a [u8],
    pub spans: Vec<ParsedSpan<'a>>,
}

/// Parses a payload down to span heads, checking everything the head will rely on.
pub fn parse_heads(buf: &[u8]) -> Result<Vec<ParsedGroup<'_>>, RecordError> {
    let groups = parse_payload(buf)?;
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let mut spans = Vec::with_capacity(g.spans.len());
        for range in g.spans {
            let head = codec::decode_span_head(&buf[range.clone()])
                .map_err(|e| fail(range.start + e.offset, e.what))?;
            spans.push(ParsedSpan { range, head });
        }
        out.push(ParsedGroup {
            resource: &buf[g.resource],
            spans,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::traces::codec::decode_resource;
    use crate::traces::model::{Resource, ResourceSpans, Span, SpanId, TraceId};

    fn span(t: u8, s: u8, attr_len: usize) -> Span {
        Span {
            trace_id: TraceId([t; 16]),
            span_id: SpanId([s; 8]),
            name: "op".into(),
            attributes: vec![(
                "big".into(),
                crate::traces::model::AttrValue::Str("x".repeat(attr_len)),
            )],
            ..Default::default()
        }
    }

    fn batch(groups: Vec<(&str, Vec<Span>)>) -> SpanBatch {
        SpanBatch {
            resource_spans: groups
                .into_iter()
                .map(|(svc, spans)| ResourceSpans {
                    resource: Arc::new(Resource {
                        service_name: svc.into(),
                        attributes: vec![],
                    }),
                    spans,
                })
                .collect(),
        }
    }

    #[test]
    fn batch_round_trips_through_groups() {
        let b = batch(vec![
            ("a", vec![span(1, 1, 3), span(1, 2, 3)]),
            ("b", vec![span(2, 1, 0)]),
        ]);
        let enc = encode_batch(&b, 64);
        assert_eq!(enc.accepted, 3);
        assert_eq!(enc.payloads.len(), 1);
        let groups = parse_heads(&enc.payloads[0]).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(
            decode_resource(groups[1].resource).unwrap().service_name,
            "b"
        );
        assert_eq!(groups[0].spans.len(), 2);
        let p = &enc.payloads[0];
        let s = codec::decode_span(&p[groups[0].spans[1].range.clone()]).unwrap();
        assert_eq!(s, b.resource_spans[0].spans[1]);
    }

    #[test]
    fn invalid_ids_are_rejected_and_empty_trailing_groups_dropped() {
        let mut bad_trace = span(1, 1, 0);
        bad_trace.trace_id = TraceId::default();
        let mut bad_span = span(1, 2, 0);
        bad_span.span_id = SpanId::default();
        let b = batch(vec![
            ("a", vec![span(1, 3, 0)]),
            ("b", vec![bad_trace, bad_span]),
        ]);
        let enc = encode_batch(&b, 64);
        assert_eq!((enc.accepted, enc.rejected), (1, 2));
        assert!(enc.first_rejection.unwrap().contains("all-zero trace id"));
        let groups = parse_payload(&enc.payloads[0]).unwrap();
        assert_eq!(groups.len(), 1);

        let all_bad = batch(vec![("b", vec![span(0, 1, 0)])]);
        let enc = encode_batch(&all_bad, 64);
        assert!(enc.payloads.is_empty());
        assert_eq!(enc.rejected, 1);
    }

    #[test]
    fn large_batches_split_into_several_payloads() {
        let spans: Vec<Span> = (0..40).map(|i| span(1, i + 1, 1024 * 1024)).collect();
        let enc = encode_batch(&batch(vec![("a", spans)]), 64);
        assert_eq!(enc.accepted, 40);
        assert!(enc.payloads.len() >= 2, "{}", enc.payloads.len());
        let mut n = 0;
        for p in &enc.payloads {
            assert!(p.len() <= MAX_PAYLOAD_BYTES + 2 * 1024 * 1024);
            for g in parse_heads(p).unwrap() {
                assert_eq!(decode_resource(g.resource).unwrap().service_name, "a");
                n += g.spans.len();
            }
        }
        assert_eq!(n, 40);
    }

    #[test]
    fn corrupt_payloads_are_errors() {
        let enc = encode_batch(&batch(vec![("a", vec![span(1, 1, 10)])]), 64);
        let p = &enc.payloads[0];
        // the version byte alone is a valid empty payload; any longer cut is damage
        for cut in 2..p.len() {
            assert!(parse_heads(&p[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse_payload(&[]).is_err());
        assert!(parse_payload(&[9, 0, 0]).is_err());
        assert!(parse_payload(&[PAYLOAD_VERSION]).unwrap().is_empty());
    }
}
