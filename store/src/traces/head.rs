//! The in-memory head: spans acknowledged since the last flush.
//!
//! The head keeps each WAL payload as it was logged (one shared buffer per append) and, per
//! span, a fixed-size [`HeadSpan`] pointing into it with the fields search filters on. So an
//! append costs one copy of the payload and a few vector pushes, with no per-span string or
//! attribute allocations; spans are decoded only when read. Resources are interned by their
//! encoded bytes and span names and services by text.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::traces::codec;
use crate::traces::model::{Resource, SpanKind, StatusCode, StoredSpan, TraceId};
use crate::traces::payload;
use crate::traces::query::{Candidates, Filter, Partial};
use crate::tsdb::index::{FxHashMap, FxHasher};
use crate::tsdb::wal_records::RecordError;

/// Interned strings (services, span names).
#[derive(Default)]
pub struct Syms {
    names: Vec<Arc<str>>,
    ids: FxHashMap<Arc<str>, u32>,
}

impl Syms {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        let a: Arc<str> = Arc::from(s);
        self.names.push(a.clone());
        self.ids.insert(a, id);
        id
    }

    pub fn lookup(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    pub fn get(&self, id: u32) -> &str {
        self.names.get(id as usize).map(|s| &**s).unwrap_or("")
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }
}

/// One span of the head: where its bytes are and what search filters on.
#[derive(Clone, Copy, Debug)]
pub struct HeadSpan {
    pub trace_id: TraceId,
    pub start: u64,
    pub end: u64,
    pub payload: u32,
    pub offset: u32,
    pub len: u32,
    pub resource: u32,
    pub name: u32,
    pub kind: SpanKind,
    pub status: StatusCode,
    pub root: bool,
}

impl HeadSpan {
    pub fn duration(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
}

pub struct HeadResource {
    pub resource: Arc<Resource>,
    /// The resource's encoding (a slice of the payload it first came in).
    pub encoded: Bytes,
    /// Interned service name.
    pub service: u32,
}

/// First and last start of an operation's spans.
pub type OpRange = (u64, u64);

/// The in-memory spans since the last flush.
pub struct Head {
    payloads: Vec<Bytes>,
    pub spans: Vec<HeadSpan>,
    /// Keyed with the standard (seeded) hasher: trace ids come from clients.
    pub traces: HashMap<TraceId, Vec<u32>>,
    pub resources: Vec<HeadResource>,
    resource_ids: FxHashMap<u64, Vec<u32>>,
    pub syms: Syms,
    /// `(service, name, kind)` -> first and last span start.
    pub ops: FxHashMap<(u32, u32, SpanKind), OpRange>,
    /// Traces with at least one span whose status is ERROR.
    pub error_traces: HashSet<TraceId>,
    bytes: u64,
    pub min_start: u64,
    pub max_start: u64,
    pub max_end: u64,
    created: Instant,
}

/// Rough heap cost of a span's index entry and its share of the trace map.
const SPAN_OVERHEAD_BYTES: u64 = std::mem::size_of::<HeadSpan>() as u64 + 8;
const TRACE_OVERHEAD_BYTES: u64 = 64;

fn hash_bytes(b: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = FxHasher::default();
    h.write(b);
    h.write_usize(b.len());
    h.finish()
}

impl Default for Head {
    fn default() -> Self {
        Head::new()
    }
}

impl Head {
    pub fn new() -> Head {
        Head {
            payloads: Vec::new(),
            spans: Vec::new(),
            traces: HashMap::new(),
            resources: Vec::new(),
            resource_ids: FxHashMap::default(),
            syms: Syms::default(),
            ops: FxHashMap::default(),
            error_traces: HashSet::new(),
            bytes: 0,
            min_start: u64::MAX,
            max_start: 0,
            max_end: 0,
            created: Instant::now(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn num_spans(&self) -> usize {
        self.spans.len()
    }

    /// Approximate heap bytes (payloads plus index).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// When the head was created: the age a time-based flush looks at.
    pub fn created(&self) -> Instant {
        self.created
    }

    fn intern_resource(&mut self, payload: &Bytes, bytes: &[u8]) -> Result<u32, RecordError> {
        let h = hash_bytes(bytes);
        if let Some(ids) = self.resource_ids.get(&h) {
            for &id in ids {
                if self.resources[id as usize].encoded == bytes {
                    return Ok(id);
                }
            }
        }
        let resource = codec::decode_resource(bytes)?;
        let service = self.syms.intern(&resource.service_name);
        let id = self.resources.len() as u32;
        self.resources.push(HeadResource {
            resource: Arc::new(resource),
            encoded: payload.slice_ref(bytes),
            service,
        });
        self.resource_ids.entry(h).or_default().push(id);
        Ok(id)
    }

    /// Adds every span of a WAL payload. The payload is checked whole first, so a corrupt
    /// one changes nothing. Returns the number of spans added.
    pub fn insert_payload(&mut self, payload: Bytes) -> Result<usize, RecordError> {
        if u32::try_from(payload.len()).is_err() {
            return Err(RecordError {
                offset: 0,
                what: "payload larger than 4 GiB",
            });
        }
        let groups = payload::parse_heads(&payload)?;
        // decode the resources not seen yet before touching anything
        let mut res_ids = Vec::with_capacity(groups.len());
        for g in &groups {
            res_ids.push(self.intern_resource(&payload, g.resource)?);
        }
        let payload_idx = self.payloads.len() as u32;
        let mut added = 0;
        for (g, &resource) in groups.iter().zip(&res_ids) {
            let service = self.resources[resource as usize].service;
            for s in &g.spans {
                let h = &s.head;
                let name = self.syms.intern(h.name);
                let idx = self.spans.len() as u32;
                self.spans.push(HeadSpan {
                    trace_id: h.trace_id,
                    start: h.start_unix_nano,
                    end: h.end_unix_nano,
                    payload: payload_idx,
                    offset: s.range.start as u32,
                    len: s.range.len() as u32,
                    resource,
                    name,
                    kind: h.kind,
                    status: h.status,
                    root: h.parent_span_id.is_none(),
                });
                let trace = self.traces.entry(h.trace_id).or_default();
                if trace.is_empty() {
                    self.bytes += TRACE_OVERHEAD_BYTES;
                }
                trace.push(idx);
                if h.status == StatusCode::Error {
                    self.error_traces.insert(h.trace_id);
                }
                let op = self
                    .ops
                    .entry((service, name, h.kind))
                    .or_insert((h.start_unix_nano, h.start_unix_nano));
                op.0 = op.0.min(h.start_unix_nano);
                op.1 = op.1.max(h.start_unix_nano);
                self.min_start = self.min_start.min(h.start_unix_nano);
                self.max_start = self.max_start.max(h.start_unix_nano);
                self.max_end = self.max_end.max(h.end_unix_nano);
                added += 1;
            }
        }
        self.bytes += payload.len() as u64 + added as u64 * SPAN_OVERHEAD_BYTES;
        self.payloads.push(payload);
        Ok(added)
    }

    /// The encoded bytes of a span.
    pub fn span_bytes(&self, s: &HeadSpan) -> &[u8] {
        let start = s.offset as usize;
        self.payloads
            .get(s.payload as usize)
            .and_then(|p| p.get(start..start + s.len as usize))
            .unwrap_or(&[])
    }

    pub fn service_of(&self, s: &HeadSpan) -> u32 {
        self.resources[s.resource as usize].service
    }

    /// Every span of a trace, decoded.
    pub fn trace_spans(&self, id: &TraceId, out: &mut Vec<StoredSpan>) -> Result<(), RecordError> {
        let Some(idxs) = self.traces.get(id) else {
            return Ok(());
        };
        for &i in idxs {
            let s = &self.spans[i as usize];
            let span = codec::decode_span(self.span_bytes(s))?;
            out.push(StoredSpan {
                resource: self.resources[s.resource as usize].resource.clone(),
                span,
            });
        }
        Ok(())
    }

    /// The trace's summary fields over the head's spans.
    pub fn partial(&self, id: &TraceId) -> Option<Partial> {
        let idxs = self.traces.get(id)?;
        let mut p = Partial::default();
        for &i in idxs {
            let s = &self.spans[i as usize];
            p.add_span(
                s.start,
                s.end,
                s.root,
                s.status == StatusCode::Error,
                self.syms.get(self.service_of(s)),
                self.syms.get(s.name),
            );
        }
        Some(p)
    }

    /// Adds the traces with a span matching `f` to `out`. `error` is the trace-level error
    /// condition, already resolved by the caller over every source.
    pub fn search(
        &self,
        f: &Filter,
        error_ok: &dyn Fn(&TraceId) -> bool,
        out: &mut Candidates,
    ) -> Result<(), RecordError> {
        if self.spans.is_empty() || !f.overlaps(self.min_start, self.max_start) {
            return Ok(());
        }
        let name = match &f.operation {
            Some(op) => match self.syms.lookup(op) {
                Some(id) => Some(id),
                None => return Ok(()),
            },
            None => None,
        };
        let service = match &f.service {
            Some(svc) => match self.syms.lookup(svc) {
                Some(id) => Some(id),
                None => return Ok(()),
            },
            None => None,
        };
        let possible = self.ops.iter().any(|(&(svc, n, kind), &(lo, hi))| {
            service.is_none_or(|s| s == svc)
                && name.is_none_or(|x| x == n)
                && f.kind.is_none_or(|k| k == kind)
                && f.overlaps(lo, hi)
        });
        if !possible {
            return Ok(());
        }
        for s in &self.spans {
            if !f.plain_match(s.start, s.duration(), s.kind)
                || name.is_some_and(|n| n != s.name)
                || service.is_some_and(|v| v != self.service_of(s))
                || !error_ok(&s.trace_id)
            {
                continue;
            }
            if !f.tags.is_empty() {
                let attrs = codec::decode_span_attributes(self.span_bytes(s))?;
                let res = &self.resources[s.resource as usize].resource;
                if !codec::tags_match(&attrs, res, &f.tags) {
                    continue;
                }
            }
            out.add(s.trace_id, s.start);
        }
        Ok(())
    }

    /// Adds the services with spans starting in `[start, end]` (by operation ranges).
    pub fn services(&self, start: u64, end: u64, out: &mut BTreeSet<String>) {
        for (&(svc, _, _), &(lo, hi)) in &self.ops {
            if lo <= end && hi >= start {
                out.insert(self.syms.get(svc).to_string());
            }
        }
    }

    /// Adds the `(name, kind)` of `service`'s spans starting in `[start, end]`.
    pub fn operations(
        &self,
        service: &str,
        start: u64,
        end: u64,
        out: &mut BTreeSet<(String, SpanKind)>,
    ) {
        let Some(svc) = self.syms.lookup(service) else {
            return;
        };
        for (&(s, name, kind), &(lo, hi)) in &self.ops {
            if s == svc && lo <= end && hi >= start {
                out.insert((self.syms.get(name).to_string(), kind));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces::model::{ResourceSpans, Span, SpanBatch, SpanId};
    use crate::traces::TraceQuery;

    fn batch(service: &str, spans: Vec<Span>) -> SpanBatch {
        SpanBatch {
            resource_spans: vec![ResourceSpans {
                resource: Arc::new(Resource {
                    service_name: service.into(),
                    attributes: vec![],
                }),
                spans,
            }],
        }
    }

    fn span(t: u8, s: u8, start: u64, name: &str) -> Span {
        Span {
            trace_id: TraceId([t; 16]),
            span_id: SpanId([s; 8]),
            parent_span_id: (s > 1).then_some(SpanId([1; 8])),
            name: name.into(),
            start_unix_nano: start,
            end_unix_nano: start + 10,
            status_code: if s == 3 {
                StatusCode::Error
            } else {
                StatusCode::Unset
            },
            ..Default::default()
        }
    }

    fn insert(head: &mut Head, b: &SpanBatch) {
        for p in payload::encode_batch(b, 64).payloads {
            head.insert_payload(Bytes::from(p)).unwrap();
        }
    }

    #[test]
    fn spans_are_indexed_by_trace_and_resources_interned() {
        let mut head = Head::new();
        insert(
            &mut head,
            &batch("a", vec![span(1, 1, 100, "x"), span(2, 1, 50, "y")]),
        );
        insert(&mut head, &batch("a", vec![span(1, 2, 120, "x")]));
        insert(&mut head, &batch("b", vec![span(1, 3, 130, "z")]));
        assert_eq!(head.num_spans(), 4);
        assert_eq!(head.resources.len(), 2);
        assert_eq!(head.traces[&TraceId([1; 16])].len(), 3);
        assert_eq!((head.min_start, head.max_start), (50, 130));
        let mut out = Vec::new();
        head.trace_spans(&TraceId([1; 16]), &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].resource.service_name, "b");
        assert_eq!(out[1].span, span(1, 2, 120, "x"));
        let p = head.partial(&TraceId([1; 16])).unwrap();
        assert_eq!((p.span_count, p.error_count), (3, 1));
        assert!(head.error_traces.contains(&TraceId([1; 16])));
        let mut svcs = BTreeSet::new();
        head.services(0, 60, &mut svcs);
        assert_eq!(svcs.into_iter().collect::<Vec<_>>(), vec!["a"]);
        let mut ops = BTreeSet::new();
        head.operations("a", 0, u64::MAX, &mut ops);
        assert_eq!(ops.len(), 2);
    }

    #[test]
    fn search_filters_on_columns() {
        let mut head = Head::new();
        insert(
            &mut head,
            &batch("a", vec![span(1, 1, 100, "x"), span(2, 2, 200, "y")]),
        );
        let run = |q: TraceQuery| {
            let f = Filter::new(&q).unwrap();
            let mut c = Candidates::default();
            head.search(&f, &|_| true, &mut c).unwrap();
            c.sorted()
        };
        assert_eq!(run(TraceQuery::default()).len(), 2);
        let q = TraceQuery {
            operation: Some("y".into()),
            ..Default::default()
        };
        assert_eq!(run(q), vec![(TraceId([2; 16]), 200)]);
        let q = TraceQuery {
            service: Some("nope".into()),
            ..Default::default()
        };
        assert!(run(q).is_empty());
        let q = TraceQuery {
            start_unix_nano: 150,
            ..Default::default()
        };
        assert_eq!(run(q).len(), 1);
    }

    #[test]
    fn corrupt_payload_changes_nothing() {
        let mut head = Head::new();
        let enc = payload::encode_batch(&batch("a", vec![span(1, 1, 100, "x")]), 64);
        let mut p = enc.payloads[0].clone();
        let n = p.len();
        p.truncate(n - 3);
        assert!(head.insert_payload(Bytes::from(p)).is_err());
        assert!(head.is_empty());
        assert_eq!(head.bytes(), 0);
    }
}
