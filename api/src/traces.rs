//! Lookout's own trace endpoints: `GET /api/v1/traces/{trace_id}` (every span of a trace) and
//! `GET /api/v1/traces?...` (trace search, answering [`TraceSummary`]s), over a
//! [`TracesQuerier`], in the Prometheus API's envelope (`{"status":"success","data":...}`).
//!
//! Span JSON: ids in lower-case hex, times as Unix nanoseconds in strings (they overflow a
//! JavaScript number), durations as nanosecond numbers, kinds and status codes in their short
//! names (`server`, `error`), attributes as JSON objects in the order they were sent.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use store::logs::LogsQuerier;
use store::promql::Engine;
use store::traces::{
    AttrValue, Attributes, SpanKind, StatusCode, StoredSpan, TraceQuery, TraceSummary,
    TracesQuerier,
};
use store::MetricsQuerier;

use crate::error::{ApiError, ErrorType};
use crate::handlers::{blocking, now_ms};
use crate::logs::TraceLogs;
use crate::params::{invalid_param, Params};
use crate::response::success;
use crate::trace_params::{
    bool_param, nanos_param, parse_trace_id, search_limit, tags_param, Window,
};

/// Traces a search answers when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 20;

/// Shared state of the trace routes (Lookout's and Jaeger's).
pub struct TracesState {
    pub traces: Arc<dyn TracesQuerier>,
    pub metrics: Arc<dyn MetricsQuerier>,
    /// When set, a trace's answer links to its log records.
    pub logs: Option<Arc<dyn LogsQuerier>>,
    pub engine: Engine,
}

pub type TracesAppState = State<Arc<TracesState>>;

/// `data` serialized into the success envelope.
pub fn json_success<T: Serialize>(data: &T) -> Result<Response, ApiError> {
    let text = serde_json::to_string(data)
        .map_err(|e| ApiError::internal(format!("encoding the answer failed: {e}")))?;
    Ok(success(&text, &[]))
}

/// `GET /api/v1/traces/{trace_id}`.
/// `GET /api/v1/status/traces`: the size of each tier of the trace store (hot: spans in
/// memory and the WAL; warm: segments; archive: the Parquet files its manifest names).
pub async fn status(State(state): TracesAppState) -> Result<Response, ApiError> {
    let traces = state.traces.clone();
    let t = blocking(move || {
        traces
            .tiers()
            .ok_or_else(|| ApiError::new(ErrorType::Unavailable, "the trace store is not open yet"))
    })
    .await?;
    json_success(&serde_json::json!({
        "tiers": {
            "hot": {"spans": t.local.head_spans, "bytes": t.local.head_bytes, "walBytes": t.local.wal_bytes},
            "warm": {"segments": t.local.segments, "spans": t.local.segment_spans, "bytes": t.local.segment_bytes},
            "archive": {"files": t.archive_files, "spans": t.archive_spans, "bytes": t.archive_bytes},
        }
    }))
}

pub async fn trace(
    State(state): TracesAppState,
    Path(id_text): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_trace_id(&id_text).map_err(|e| invalid_param("trace_id", e))?;
    let traces = state.traces.clone();
    let spans = blocking(move || Ok(traces.trace(id)?)).await?;
    if spans.is_empty() {
        return Err(ApiError::new(
            ErrorType::NotFound,
            format!("trace {id} not found"),
        ));
    }
    let mut answer = TraceJson::new(&spans);
    if let Some(logs) = state.logs.clone() {
        let start = spans.iter().map(|s| s.span.start_unix_nano).min();
        let end = spans.iter().map(|s| s.span.end_unix_nano).max();
        let link = TraceLogs::new(&answer.trace_id, start.unwrap_or(0), end.unwrap_or(0));
        let counted = link.clone();
        // the trace is answered even when the log store cannot count (still opening)
        let log_count = match blocking(move || counted.count(logs.as_ref())).await {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::debug!(error = %e, trace_id = %id, "counting a trace's log records failed");
                None
            }
        };
        answer.logs = Some(LogsLink {
            logs_url: link.url(),
            log_count,
        });
    }
    json_success(&answer)
}

/// A trace's log records: where to find them and how many there are (`null` when the log
/// store could not count them).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogsLink {
    logs_url: String,
    log_count: Option<u64>,
}

/// The search a request asks for (shared with the UI's needs: every condition optional).
fn trace_query(params: &Params, now: i64) -> Result<TraceQuery, ApiError> {
    let window = Window::from_params(params, now, true)?;
    let kind = params
        .get("kind")
        .map(|text| {
            SpanKind::parse(text).ok_or_else(|| {
                invalid_param(
                    "kind",
                    format!(
                        "unknown span kind {text:?} (one of unspecified, internal, server, client, producer, consumer)"
                    ),
                )
            })
        })
        .transpose()?;
    let min = nanos_param(params, "min_duration")?;
    let max = nanos_param(params, "max_duration")?;
    if let (Some(min), Some(max)) = (min, max) {
        if max < min {
            return Err(invalid_param(
                "max_duration",
                "max_duration must not be below min_duration",
            ));
        }
    }
    Ok(TraceQuery {
        start_unix_nano: window.start_nanos(),
        end_unix_nano: window.end_nanos(),
        service: params.get("service").map(str::to_string),
        operation: params.get("operation").map(str::to_string),
        kind,
        error: bool_param(params, "error")?,
        min_duration_nanos: min,
        max_duration_nanos: max,
        tags: tags_param(params)?,
        limit: search_limit(params, "limit", DEFAULT_LIMIT)?,
    })
}

/// `GET /api/v1/traces?service=&operation=&kind=&min_duration=&max_duration=&error=&tags=&start=&end=&limit=`.
pub async fn search(State(state): TracesAppState, params: Params) -> Result<Response, ApiError> {
    let query = trace_query(&params, now_ms())?;
    let traces = state.traces.clone();
    let found = blocking(move || Ok(traces.search(&query)?)).await?;
    let data: Vec<SummaryJson> = found.iter().map(SummaryJson::from).collect();
    json_success(&data)
}

/// One search result.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SummaryJson<'a> {
    trace_id: String,
    root_service: &'a str,
    root_operation: &'a str,
    start_time_unix_nano: String,
    duration_nanos: u64,
    span_count: u64,
    error_count: u64,
    services: &'a [String],
}

impl<'a> From<&'a TraceSummary> for SummaryJson<'a> {
    fn from(s: &'a TraceSummary) -> Self {
        SummaryJson {
            trace_id: s.trace_id.to_string(),
            root_service: &s.root_service,
            root_operation: &s.root_operation,
            start_time_unix_nano: s.start_unix_nano.to_string(),
            duration_nanos: s.duration_nanos,
            span_count: s.span_count,
            error_count: s.error_count,
            services: &s.services,
        }
    }
}

/// A whole trace: its summary (computed from the spans) and the spans in start order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TraceJson<'a> {
    trace_id: String,
    root_service: &'a str,
    root_operation: &'a str,
    start_time_unix_nano: String,
    end_time_unix_nano: String,
    duration_nanos: u64,
    span_count: usize,
    error_count: usize,
    services: Vec<&'a str>,
    spans: Vec<SpanJson<'a>>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    logs: Option<LogsLink>,
}

impl<'a> TraceJson<'a> {
    /// `spans` is not empty.
    fn new(spans: &'a [StoredSpan]) -> Self {
        let start = spans
            .iter()
            .map(|s| s.span.start_unix_nano)
            .min()
            .unwrap_or(0);
        let end = spans
            .iter()
            .map(|s| s.span.end_unix_nano)
            .max()
            .unwrap_or(0);
        // the root span; the earliest span while the root has not arrived
        let root = spans
            .iter()
            .filter(|s| s.span.parent_span_id.is_none())
            .min_by_key(|s| s.span.start_unix_nano)
            .or_else(|| spans.iter().min_by_key(|s| s.span.start_unix_nano));
        let mut services: Vec<&str> = spans
            .iter()
            .map(|s| s.resource.service_name.as_str())
            .collect();
        services.sort_unstable();
        services.dedup();
        TraceJson {
            trace_id: spans
                .first()
                .map(|s| s.span.trace_id.to_string())
                .unwrap_or_default(),
            root_service: root.map(|s| s.resource.service_name.as_str()).unwrap_or(""),
            root_operation: root.map(|s| s.span.name.as_str()).unwrap_or(""),
            start_time_unix_nano: start.to_string(),
            end_time_unix_nano: end.to_string(),
            duration_nanos: end.saturating_sub(start),
            span_count: spans.len(),
            error_count: spans
                .iter()
                .filter(|s| s.span.status_code == StatusCode::Error)
                .count(),
            services,
            spans: spans.iter().map(SpanJson::new).collect(),
            logs: None,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpanJson<'a> {
    trace_id: String,
    span_id: String,
    /// `null` for a root span.
    parent_span_id: Option<String>,
    trace_state: &'a str,
    service: &'a str,
    name: &'a str,
    kind: &'static str,
    start_time_unix_nano: String,
    end_time_unix_nano: String,
    duration_nanos: u64,
    status: StatusJson<'a>,
    attributes: AttrsJson<'a>,
    events: Vec<EventJson<'a>>,
    links: Vec<LinkJson<'a>>,
    resource_attributes: AttrsJson<'a>,
    scope: ScopeJson<'a>,
    dropped_attributes_count: u32,
    dropped_events_count: u32,
    dropped_links_count: u32,
}

impl<'a> SpanJson<'a> {
    fn new(stored: &'a StoredSpan) -> Self {
        let s = &stored.span;
        SpanJson {
            trace_id: s.trace_id.to_string(),
            span_id: s.span_id.to_string(),
            parent_span_id: s.parent_span_id.map(|p| p.to_string()),
            trace_state: &s.trace_state,
            service: &stored.resource.service_name,
            name: &s.name,
            kind: s.kind.as_str(),
            start_time_unix_nano: s.start_unix_nano.to_string(),
            end_time_unix_nano: s.end_unix_nano.to_string(),
            duration_nanos: s.duration_nanos(),
            status: StatusJson {
                code: s.status_code.as_str(),
                message: &s.status_message,
            },
            attributes: AttrsJson(&s.attributes),
            events: s
                .events
                .iter()
                .map(|e| EventJson {
                    time_unix_nano: e.time_unix_nano.to_string(),
                    name: &e.name,
                    attributes: AttrsJson(&e.attributes),
                })
                .collect(),
            links: s
                .links
                .iter()
                .map(|l| LinkJson {
                    trace_id: l.trace_id.to_string(),
                    span_id: l.span_id.to_string(),
                    trace_state: &l.trace_state,
                    attributes: AttrsJson(&l.attributes),
                })
                .collect(),
            resource_attributes: AttrsJson(&stored.resource.attributes),
            scope: ScopeJson {
                name: &s.scope_name,
                version: &s.scope_version,
            },
            dropped_attributes_count: s.dropped_attributes_count,
            dropped_events_count: s.dropped_events_count,
            dropped_links_count: s.dropped_links_count,
        }
    }
}

#[derive(Serialize)]
struct StatusJson<'a> {
    code: &'static str,
    message: &'a str,
}

#[derive(Serialize)]
struct ScopeJson<'a> {
    name: &'a str,
    version: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventJson<'a> {
    time_unix_nano: String,
    name: &'a str,
    attributes: AttrsJson<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LinkJson<'a> {
    trace_id: String,
    span_id: String,
    trace_state: &'a str,
    attributes: AttrsJson<'a>,
}

/// Attributes as a JSON object, in the order they were sent.
struct AttrsJson<'a>(&'a Attributes);

impl Serialize for AttrsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, &ValueJson(v))?;
        }
        map.end()
    }
}

/// An attribute value as JSON: strings, booleans and numbers as themselves, bytes as hex (the
/// spelling tag search matches), arrays and key-value lists as arrays and objects. Doubles
/// JSON cannot hold (NaN, ±Inf) are strings in Prometheus's spelling.
struct ValueJson<'a>(&'a AttrValue);

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            AttrValue::Str(s) => serializer.serialize_str(s),
            AttrValue::Bool(b) => serializer.serialize_bool(*b),
            AttrValue::Int(i) => serializer.serialize_i64(*i),
            AttrValue::Double(d) if d.is_finite() => serializer.serialize_f64(*d),
            AttrValue::Double(d) => serializer.serialize_str(&crate::response::format_float(*d)),
            AttrValue::Bytes(_) => serializer.serialize_str(&self.0.to_text()),
            AttrValue::Array(items) => serializer.collect_seq(items.iter().map(ValueJson)),
            AttrValue::KvList(kvs) => {
                let mut map = serializer.serialize_map(Some(kvs.len()))?;
                for (k, v) in kvs {
                    map.serialize_entry(k, &ValueJson(v))?;
                }
                map.end()
            }
        }
    }
}
