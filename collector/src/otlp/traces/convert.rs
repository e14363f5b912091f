//! OTLP `ExportTraceServiceRequest` -> [`SpanBatch`]: validation and normalisation, once, at
//! the edge. What happens to each kind of bad or odd input:
//!
//! - **More than `max_spans_per_request` spans**: the whole request is refused (400 /
//!   `INVALID_ARGUMENT`) with a message naming the limit; nothing is stored.
//! - **Trace id** not exactly 16 bytes, or all zero: the span is rejected (reason
//!   `invalid_trace_id`), counted in the partial success and named in its message.
//! - **Span id** not exactly 8 bytes, or all zero: rejected (`invalid_span_id`).
//! - **Parent span id** empty: a root span. Eight zero bytes: also a root span (some
//!   converters from other formats write zeros for "no parent"). Any other length: rejected
//!   (`invalid_parent_span_id`).
//! - **Start time** 0 (unset, which OTLP says must not happen): rejected
//!   (`missing_start_time`); a 1970 start would make every duration meaningless.
//! - **End before start** (including an unset end of 0): normalised, not rejected: the end
//!   becomes the start (a zero-length span, the way Tempo's metrics treat negative
//!   durations) and the original end is kept in the span attribute
//!   `lookout.original_end_time_unix_nano`, so nothing the client sent is lost. Counted in
//!   `lookout_traces_spans_normalized_total{reason="end_before_start"}`.
//! - **Missing `service.name`** (absent or empty): the service is `unknown_service`, as the
//!   OpenTelemetry resource conventions say; the resource attributes are kept as sent. A
//!   non-string `service.name` is used in its text form.
//! - **Attribute values longer than `max_attribute_value_bytes`** (strings and bytes, at any
//!   depth of arrays and maps, on resources, spans, events and links): truncated to the
//!   limit, on a UTF-8 character boundary for strings, and counted
//!   (`lookout_traces_attribute_values_truncated_total`); the answer carries a warning in the
//!   partial success message with zero rejected spans, as the OTLP spec allows. The span is
//!   kept: a long SQL statement should not cost the whole span.
//! - **Duplicate attribute keys**: the last value wins, at the position of the first.
//! - **Links** with an invalid trace or span id: the link is dropped and counted in the
//!   span's `dropped_links_count`.
//! - Unknown span kind / status numbers are `UNSPECIFIED` / `UNSET`, as the spec asks.
//!   Instrumentation scope attributes are not kept (the model has no place for them).
//!
//! Nothing here panics on any input: every length is checked before it is used.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1 as otlp;
use store::traces::{
    AttrValue, Attributes, Resource, ResourceSpans, Span, SpanBatch, SpanEvent, SpanId, SpanKind,
    SpanLink, StatusCode, TraceId,
};

use crate::error::count_reason;
use crate::IngestError;

/// The span attribute that keeps the end time a client sent when it was before the start.
pub const ORIGINAL_END_ATTR: &str = "lookout.original_end_time_unix_nano";

/// Limits of OTLP trace ingest, checked before anything reaches the store.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceLimits {
    /// Largest accepted request body (gRPC message), after decompression.
    pub max_request_body_bytes: usize,
    /// More spans than this in one request refuse the whole request.
    pub max_spans_per_request: usize,
    /// Longer string/bytes attribute values are truncated to this many bytes.
    pub max_attribute_value_bytes: usize,
}

impl Default for TraceLimits {
    fn default() -> Self {
        TraceLimits {
            max_request_body_bytes: 16 * 1024 * 1024,
            max_spans_per_request: 20_000,
            max_attribute_value_bytes: 64 * 1024,
        }
    }
}

/// Why a span was rejected; the names are the `reason` label of
/// `lookout_traces_spans_rejected_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpanRejectReason {
    InvalidTraceId,
    InvalidSpanId,
    InvalidParentSpanId,
    MissingStartTime,
}

impl SpanRejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanRejectReason::InvalidTraceId => "invalid_trace_id",
            SpanRejectReason::InvalidSpanId => "invalid_span_id",
            SpanRejectReason::InvalidParentSpanId => "invalid_parent_span_id",
            SpanRejectReason::MissingStartTime => "missing_start_time",
        }
    }
}

/// What the converter made of a request.
#[derive(Debug, Default)]
pub struct ConvertedSpans {
    pub batch: SpanBatch,
    /// Spans in the request, accepted or not.
    pub received_spans: u64,
    pub rejected_spans: u64,
    pub rejected_by_reason: Vec<(SpanRejectReason, u64)>,
    /// The first rejection in full, naming the span, for the partial-success message.
    pub first_rejection: Option<String>,
    /// Attribute values cut to `max_attribute_value_bytes`.
    pub truncated_values: u64,
    /// Spans whose end was before their start (end set to start).
    pub end_before_start: u64,
}

impl ConvertedSpans {
    fn reject(&mut self, reason: SpanRejectReason, message: impl FnOnce() -> String) {
        self.rejected_spans += 1;
        count_reason(&mut self.rejected_by_reason, reason);
        self.first_rejection.get_or_insert_with(message);
    }
}

/// The request's span count, for the limit check before any conversion work.
pub fn span_count(req: &ExportTraceServiceRequest) -> usize {
    req.resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter())
        .map(|ss| ss.spans.len())
        .sum()
}

/// Converts a decoded request (consumed, so strings move rather than copy). Refuses the whole
/// request only for the span-count limit; everything else is per span (see the module docs).
pub fn convert_request(
    req: ExportTraceServiceRequest,
    limits: &TraceLimits,
) -> Result<ConvertedSpans, IngestError> {
    let count = span_count(&req);
    if count > limits.max_spans_per_request {
        return Err(IngestError::Rejected(format!(
            "the request has {count} spans, more than the limit max_spans_per_request={}",
            limits.max_spans_per_request
        )));
    }
    let mut out = ConvertedSpans {
        received_spans: count as u64,
        ..Default::default()
    };
    let mut cx = Cx {
        max_value: limits.max_attribute_value_bytes,
        truncated: 0,
    };
    for rs in req.resource_spans {
        let resource_attrs = rs
            .resource
            .map(|r| cx.attributes(r.attributes))
            .unwrap_or_default();
        let service_name = service_name(&resource_attrs);
        let resource = Arc::new(Resource {
            service_name,
            attributes: resource_attrs,
        });
        let mut spans = Vec::with_capacity(rs.scope_spans.iter().map(|s| s.spans.len()).sum());
        for ss in rs.scope_spans {
            let (scope_name, scope_version) =
                ss.scope.map(|s| (s.name, s.version)).unwrap_or_default();
            for span in ss.spans {
                if let Some(span) = convert_span(
                    span,
                    &resource,
                    &scope_name,
                    &scope_version,
                    &mut cx,
                    &mut out,
                ) {
                    spans.push(span);
                }
            }
        }
        if !spans.is_empty() {
            out.batch
                .resource_spans
                .push(ResourceSpans { resource, spans });
        }
    }
    out.truncated_values = cx.truncated;
    Ok(out)
}

/// `service.name` of a resource, or `unknown_service`.
fn service_name(attrs: &Attributes) -> String {
    match store::traces::model::attr(attrs, store::traces::model::SERVICE_NAME_ATTR) {
        Some(AttrValue::Str(s)) if !s.is_empty() => s.clone(),
        Some(AttrValue::Str(_)) | None => store::traces::model::UNKNOWN_SERVICE.to_string(),
        Some(other) => {
            let text = other.to_text();
            if text.is_empty() {
                store::traces::model::UNKNOWN_SERVICE.to_string()
            } else {
                text
            }
        }
    }
}

/// At most this many characters of a span name in a rejection message.
const MESSAGE_NAME_CHARS: usize = 128;

fn describe(name: &str, service: &str) -> String {
    let short: String = name.chars().take(MESSAGE_NAME_CHARS).collect();
    let ellipsis = if short.len() < name.len() { "..." } else { "" };
    format!("span {short:?}{ellipsis} of service {service:?}")
}

fn convert_span(
    span: otlp::Span,
    resource: &Resource,
    scope_name: &str,
    scope_version: &str,
    cx: &mut Cx,
    out: &mut ConvertedSpans,
) -> Option<Span> {
    let service = &resource.service_name;
    let trace_id = match TraceId::from_bytes(&span.trace_id) {
        Ok(id) => id,
        Err(e) => {
            out.reject(SpanRejectReason::InvalidTraceId, || {
                format!("{}: {e}", describe(&span.name, service))
            });
            return None;
        }
    };
    let span_id = match SpanId::from_bytes(&span.span_id) {
        Ok(id) => id,
        Err(e) => {
            out.reject(SpanRejectReason::InvalidSpanId, || {
                format!("{}: {e}", describe(&span.name, service))
            });
            return None;
        }
    };
    let parent_span_id = match span.parent_span_id.len() {
        0 => None,
        8 if span.parent_span_id.iter().all(|&b| b == 0) => None,
        8 => SpanId::from_bytes(&span.parent_span_id).ok(),
        n => {
            out.reject(SpanRejectReason::InvalidParentSpanId, || {
                format!(
                    "{}: parent span id must be empty or 8 bytes, got {n}",
                    describe(&span.name, service)
                )
            });
            return None;
        }
    };
    if span.start_time_unix_nano == 0 {
        out.reject(SpanRejectReason::MissingStartTime, || {
            format!(
                "{}: start_time_unix_nano is not set",
                describe(&span.name, service)
            )
        });
        return None;
    }
    let mut attributes = cx.attributes(span.attributes);
    let start = span.start_time_unix_nano;
    let mut end = span.end_time_unix_nano;
    if end < start {
        out.end_before_start += 1;
        let original = i64::try_from(end).unwrap_or(i64::MAX);
        attributes.push((ORIGINAL_END_ATTR.to_string(), AttrValue::Int(original)));
        end = start;
    }
    let events = span
        .events
        .into_iter()
        .map(|e| SpanEvent {
            time_unix_nano: e.time_unix_nano,
            name: e.name,
            attributes: cx.attributes(e.attributes),
        })
        .collect();
    let mut dropped_links = span.dropped_links_count;
    let mut links = Vec::with_capacity(span.links.len());
    for link in span.links {
        match (
            TraceId::from_bytes(&link.trace_id),
            SpanId::from_bytes(&link.span_id),
        ) {
            (Ok(trace_id), Ok(span_id)) => links.push(SpanLink {
                trace_id,
                span_id,
                trace_state: link.trace_state,
                attributes: cx.attributes(link.attributes),
            }),
            _ => dropped_links = dropped_links.saturating_add(1),
        }
    }
    let (status_code, status_message) = span
        .status
        .map(|s| (StatusCode::from_i32(s.code), s.message))
        .unwrap_or_default();
    let mut out = Span {
        trace_id,
        span_id,
        parent_span_id,
        trace_state: span.trace_state,
        name: span.name,
        kind: SpanKind::from_i32(span.kind),
        start_unix_nano: start,
        end_unix_nano: end,
        attributes,
        events,
        links,
        status_code,
        status_message,
        scope_name: scope_name.to_string(),
        scope_version: scope_version.to_string(),
        dropped_attributes_count: span.dropped_attributes_count,
        dropped_events_count: span.dropped_events_count,
        dropped_links_count: dropped_links,
    };
    // One definition of an error everywhere (DESIGN §4): an UNSET span that the semantic
    // conventions make an error (HTTP 5xx server, HTTP 4xx/5xx or gRPC error client, gRPC
    // server-error codes) is stored as ERROR, so trace search and summaries agree with the
    // derived metrics.
    out.status_code = crate::traces::classify::effective_status(&out);
    Some(out)
}

/// Conversion context: the value limit and what was truncated.
struct Cx {
    max_value: usize,
    truncated: u64,
}

/// Above this many attributes duplicates are found with a map rather than a scan.
const DEDUP_SCAN_MAX: usize = 16;

impl Cx {
    /// OTLP key-values to attributes: values converted and truncated, duplicate keys merged
    /// (last value, first position).
    fn attributes(&mut self, kvs: Vec<KeyValue>) -> Attributes {
        let mut out: Attributes = Vec::with_capacity(kvs.len());
        let mut index: Option<HashMap<String, usize>> = None;
        for kv in kvs {
            let value = self.value(kv.value);
            let existing = if out.len() < DEDUP_SCAN_MAX && index.is_none() {
                out.iter().position(|(k, _)| *k == kv.key)
            } else {
                let map = index.get_or_insert_with(|| {
                    out.iter()
                        .enumerate()
                        .map(|(i, (k, _))| (k.clone(), i))
                        .collect()
                });
                map.get(&kv.key).copied()
            };
            match existing {
                Some(i) => out[i].1 = value,
                None => {
                    if let Some(map) = index.as_mut() {
                        map.insert(kv.key.clone(), out.len());
                    }
                    out.push((kv.key, value));
                }
            }
        }
        out
    }

    fn value(&mut self, v: Option<AnyValue>) -> AttrValue {
        let Some(value) = v.and_then(|v| v.value) else {
            return AttrValue::Str(String::new());
        };
        match value {
            any_value::Value::StringValue(mut s) => {
                if truncate_utf8(&mut s, self.max_value) {
                    self.truncated += 1;
                }
                AttrValue::Str(s)
            }
            any_value::Value::BoolValue(b) => AttrValue::Bool(b),
            any_value::Value::IntValue(i) => AttrValue::Int(i),
            any_value::Value::DoubleValue(d) => AttrValue::Double(d),
            any_value::Value::BytesValue(mut b) => {
                if b.len() > self.max_value {
                    b.truncate(self.max_value);
                    self.truncated += 1;
                }
                AttrValue::Bytes(b)
            }
            any_value::Value::ArrayValue(a) => {
                AttrValue::Array(a.values.into_iter().map(|v| self.value(Some(v))).collect())
            }
            any_value::Value::KvlistValue(kvs) => AttrValue::KvList(
                kvs.values
                    .into_iter()
                    .map(|kv| (kv.key, self.value(kv.value)))
                    .collect(),
            ),
            // an index into a profiles dictionary: traces have none, so there is no value
            any_value::Value::StringValueStrindex(_) => AttrValue::Str(String::new()),
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary; whether it cut.
pub(crate) fn truncate_utf8(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut cut = max;
    while cut > 0 && !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
