//! Jaeger's HTTP query API (what Jaeger UI and Grafana's Jaeger data source call), in Jaeger's
//! JSON shapes (`model/json` of jaegertracing/jaeger) and with Jaeger's parameters:
//!
//! * `GET /api/services`, `GET /api/services/{service}/operations`,
//!   `GET /api/operations?service=&spanKind=`;
//! * `GET /api/traces/{traceID}`, `GET /api/traces?service=&operation=&tags=<JSON>&tag=k:v
//!   &start=<µs>&end=<µs>&minDuration=&maxDuration=&limit=&traceID=`;
//! * `GET /api/dependencies?endTs=<ms>&lookback=<ms>` from the service-graph series.
//!
//! Every answer is `{"data":...,"total":N,"limit":0,"offset":0,"errors":null}`; errors are
//! `{"data":null,...,"errors":[{"code":400,"msg":...}]}`. Spans become Jaeger spans as
//! Jaeger's own OTLP receiver converts them: the span kind goes into the `span.kind` tag,
//! status into `otel.status_code` (+ `error=true`, `otel.status_description`), the scope into
//! `otel.scope.name`/`otel.scope.version`, trace state into `w3c.tracestate`, events into logs
//! (the name as the `event` field), links into `FOLLOWS_FROM` references. Each distinct
//! resource is a process (`p1`, `p2`, ... in order of first use) whose tags are the resource
//! attributes but `service.name`.
//!
//! Differences: trace ids are always 32 hex characters (Jaeger drops the leading zeros of a
//! 64-bit high half); Jaeger's adjusters (clock skew, tag sorting) are not applied; services
//! and operations are those of the spans kept, not a separate index.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode as HttpStatus};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use store::traces::model::SERVICE_NAME_ATTR;
use store::traces::{
    AttrValue, Attributes, Resource, SpanKind, StatusCode, StoredSpan, TraceId, TraceQuery,
};
use store::StoreError;

use crate::error::ApiError;
use crate::handlers::{blocking, now_ms};
use crate::params::Params;
use crate::red::edge_counts;
use crate::trace_params::{parse_jaeger_trace_id, parse_nanos, MAX_SEARCH_LIMIT};
use crate::traces::TracesAppState;

/// Jaeger's default search limit.
const DEFAULT_LIMIT: usize = 100;
/// Jaeger's default search window when `start` is absent: two days.
const DEFAULT_LOOKBACK_US: i64 = 2 * 24 * 3600 * 1_000_000;
/// Jaeger's default `/api/dependencies` lookback: a day.
const DEFAULT_DEPENDENCY_LOOKBACK_MS: i64 = 24 * 3600 * 1000;
/// Largest integer a JavaScript number holds exactly; larger int64 tags are strings, as Jaeger.
const JS_MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;
/// All of time, for services and operations (Jaeger lists them without a window).
const ALL_TIME_END_NANOS: u64 = i64::MAX as u64;

/// A Jaeger API error: `{"data":null,...,"errors":[{"code":N,"msg":...}]}` with that status.
#[derive(Debug)]
pub struct JaegerError {
    code: u16,
    msg: String,
}

impl JaegerError {
    fn bad_request(msg: impl Into<String>) -> Self {
        JaegerError {
            code: 400,
            msg: msg.into(),
        }
    }

    /// Jaeger's `unable to parse param 'name': ...`.
    fn param(name: &str, msg: impl std::fmt::Display) -> Self {
        Self::bad_request(format!("unable to parse param '{name}': {msg}"))
    }
}

impl From<ApiError> for JaegerError {
    fn from(e: ApiError) -> Self {
        JaegerError {
            code: e.error_type.status().as_u16(),
            msg: e.message,
        }
    }
}

impl From<StoreError> for JaegerError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for JaegerError {
    fn into_response(self) -> Response {
        if self.code >= 500 {
            tracing::warn!(error = %self.msg, "jaeger api error");
        }
        let body = Envelope::<()> {
            data: None,
            total: 0,
            limit: 0,
            offset: 0,
            errors: Some(vec![ErrorJson {
                code: Some(self.code),
                msg: self.msg,
                trace_id: None,
            }]),
        };
        let status = HttpStatus::from_u16(self.code).unwrap_or(HttpStatus::INTERNAL_SERVER_ERROR);
        json_response(status, &body)
    }
}

/// Jaeger's `structuredResponse`.
#[derive(Serialize)]
struct Envelope<T> {
    data: Option<T>,
    total: usize,
    limit: usize,
    offset: usize,
    errors: Option<Vec<ErrorJson>>,
}

/// Jaeger's `structuredError`.
#[derive(Serialize)]
struct ErrorJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
    msg: String,
    #[serde(rename = "traceID", skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
}

fn json_response<T: Serialize>(status: HttpStatus, body: &T) -> Response {
    match serde_json::to_string(body) {
        Ok(text) => {
            let mut resp = (status, text).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => (
            HttpStatus::INTERNAL_SERVER_ERROR,
            format!("encoding the answer failed: {e}"),
        )
            .into_response(),
    }
}

fn ok<T: Serialize>(data: T, total: usize, errors: Option<Vec<ErrorJson>>) -> Response {
    json_response(
        HttpStatus::OK,
        &Envelope {
            data: Some(data),
            total,
            limit: 0,
            offset: 0,
            errors,
        },
    )
}

/// `GET /api/services`.
pub async fn services(State(state): TracesAppState) -> Result<Response, JaegerError> {
    let traces = state.traces.clone();
    let names = blocking(move || Ok(traces.services(0, ALL_TIME_END_NANOS)?)).await?;
    let n = names.len();
    Ok(ok(names, n, None))
}

/// The `(name, kind)` pairs of a service's spans, over all time.
async fn operations_of(
    state: &TracesAppState,
    service: String,
) -> Result<Vec<(String, SpanKind)>, JaegerError> {
    let traces = state.traces.clone();
    Ok(blocking(move || Ok(traces.operations(&service, 0, ALL_TIME_END_NANOS)?)).await?)
}

/// `GET /api/services/{service}/operations`: the distinct span names.
pub async fn service_operations(
    state: TracesAppState,
    Path(service): Path<String>,
) -> Result<Response, JaegerError> {
    let mut names: Vec<String> = operations_of(&state, service)
        .await?
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    names.sort();
    names.dedup();
    let n = names.len();
    Ok(ok(names, n, None))
}

/// Jaeger's spelling of a span kind: the OpenTracing `span.kind` value; empty for
/// unspecified.
fn jaeger_kind(kind: SpanKind) -> &'static str {
    match kind {
        SpanKind::Unspecified => "",
        other => other.as_str(),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OperationJson {
    name: String,
    span_kind: &'static str,
}

/// `GET /api/operations?service=&spanKind=`.
pub async fn operations(state: TracesAppState, params: Params) -> Result<Response, JaegerError> {
    let Some(service) = params.get("service").map(str::to_string) else {
        return Err(JaegerError::bad_request("parameter 'service' is required"));
    };
    let want = match params.get("spanKind") {
        None => None,
        Some(text) => Some(SpanKind::parse(text).ok_or_else(|| {
            JaegerError::param(
                "spanKind",
                format!("unknown span kind {text:?} (one of internal, server, client, producer, consumer)"),
            )
        })?),
    };
    let data: Vec<OperationJson> = operations_of(&state, service)
        .await?
        .into_iter()
        .filter(|(_, kind)| want.is_none_or(|w| w == *kind))
        .map(|(name, kind)| OperationJson {
            name,
            span_kind: jaeger_kind(kind),
        })
        .collect();
    let n = data.len();
    Ok(ok(data, n, None))
}

/// `GET /api/traces/{traceID}`.
pub async fn trace(
    State(state): TracesAppState,
    Path(id_text): Path<String>,
) -> Result<Response, JaegerError> {
    let id = parse_jaeger_trace_id(&id_text).map_err(|e| JaegerError::param("traceID", e))?;
    let traces = state.traces.clone();
    let spans = blocking(move || Ok(traces.trace(id)?)).await?;
    if spans.is_empty() {
        return Err(JaegerError {
            code: 404,
            msg: "trace not found".into(),
        });
    }
    Ok(ok(vec![TraceJson::new(id, &spans)], 1, None))
}

/// A time in Unix microseconds (Jaeger's `start`/`end`), as Unix nanoseconds.
fn micros_param(params: &Params, name: &str) -> Result<Option<i64>, JaegerError> {
    params
        .get(name)
        .map(|text| {
            text.parse::<i64>()
                .map_err(|e| JaegerError::param(name, format!("{text:?}: {e}")))
        })
        .transpose()
}

fn micros_to_nanos(us: i64) -> u64 {
    u64::try_from(us).unwrap_or(0).saturating_mul(1_000)
}

/// Jaeger's `tag=key:value` (repeatable) and `tags={"key":"value"}` (JSON object of strings).
fn jaeger_tags(params: &Params) -> Result<Vec<(String, String)>, JaegerError> {
    let mut tags = Vec::new();
    for tag in params.all("tag") {
        match tag.split_once(':') {
            Some((k, v)) => tags.push((k.to_string(), v.to_string())),
            None => {
                return Err(JaegerError::bad_request(format!(
                    "malformed 'tag' parameter, expecting key:value, received: {tag}"
                )))
            }
        }
    }
    for text in params.all("tags") {
        if text.is_empty() {
            continue;
        }
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| {
                JaegerError::bad_request(format!(
                    "malformed 'tags' parameter, cannot unmarshal JSON: {e}"
                ))
            })?;
        for (k, v) in map {
            let serde_json::Value::String(v) = v else {
                return Err(JaegerError::bad_request(format!(
                    "malformed 'tags' parameter, the value of {k:?} must be a string"
                )));
            };
            tags.push((k, v));
        }
    }
    Ok(tags)
}

/// The search of a `/api/traces` request, or the ids it names with `traceID`.
enum Search {
    Query(TraceQuery),
    Ids(Vec<TraceId>),
}

fn search_params(params: &Params, now_us: i64) -> Result<Search, JaegerError> {
    let ids = params
        .all("traceID")
        .into_iter()
        .map(|t| parse_jaeger_trace_id(t).map_err(|e| JaegerError::param("traceID", e)))
        .collect::<Result<Vec<_>, _>>()?;
    if !ids.is_empty() {
        return Ok(Search::Ids(ids));
    }
    let Some(service) = params.get("service") else {
        return Err(JaegerError::bad_request("parameter 'service' is required"));
    };
    let end_us = micros_param(params, "end")?.unwrap_or(now_us);
    let start_us =
        micros_param(params, "start")?.unwrap_or(end_us.saturating_sub(DEFAULT_LOOKBACK_US));
    if end_us < start_us {
        return Err(JaegerError::bad_request("'end' must not be before 'start'"));
    }
    let duration = |name: &str| {
        params
            .get(name)
            .map(|t| parse_nanos(t).map_err(|e| JaegerError::param(name, e)))
            .transpose()
    };
    let min = duration("minDuration")?;
    let max = duration("maxDuration")?;
    if let (Some(min), Some(max)) = (min, max) {
        if max < min {
            return Err(JaegerError::bad_request(
                "'maxDuration' should be greater than 'minDuration'",
            ));
        }
    }
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(0) => DEFAULT_LIMIT,
            Ok(n) if n <= MAX_SEARCH_LIMIT => n,
            _ => {
                return Err(JaegerError::param(
                    "limit",
                    format!("{text:?} is not a whole number from 0 to {MAX_SEARCH_LIMIT}"),
                ))
            }
        },
    };
    Ok(Search::Query(TraceQuery {
        start_unix_nano: micros_to_nanos(start_us),
        end_unix_nano: micros_to_nanos(end_us),
        service: Some(service.to_string()),
        operation: params.get("operation").map(str::to_string),
        kind: None,
        error: None,
        min_duration_nanos: min,
        max_duration_nanos: max,
        tags: jaeger_tags(params)?,
        limit,
    }))
}

/// `GET /api/traces?service=...`: the full traces of the matches, newest first.
pub async fn search(State(state): TracesAppState, params: Params) -> Result<Response, JaegerError> {
    let search = search_params(&params, now_ms().saturating_mul(1000))?;
    let traces = state.traces.clone();
    let (found, missing) = blocking(move || {
        let ids = match search {
            Search::Ids(ids) => ids,
            Search::Query(q) => traces.search(&q)?.into_iter().map(|s| s.trace_id).collect(),
        };
        let mut found = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            let spans = traces.trace(id)?;
            if spans.is_empty() {
                missing.push(id);
            } else {
                found.push((id, spans));
            }
        }
        Ok((found, missing))
    })
    .await?;
    let data: Vec<TraceJson> = found
        .iter()
        .map(|(id, spans)| TraceJson::new(*id, spans))
        .collect();
    // as Jaeger: ids asked for by traceID and not found are errors beside the data
    let errors = (!missing.is_empty()).then(|| {
        missing
            .iter()
            .map(|id| ErrorJson {
                code: None,
                msg: "trace not found".into(),
                trace_id: Some(id.to_string()),
            })
            .collect()
    });
    // Jaeger leaves `total` at 0 for trace answers
    Ok(ok(data, 0, errors))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DependencyJson<'a> {
    parent: &'a str,
    child: &'a str,
    call_count: u64,
}

/// `GET /api/dependencies?endTs=<ms>&lookback=<ms>`: service-graph edges over the window,
/// with the exact call counts of `/api/v1/service-graph` (whole numbers: Jaeger's type is an
/// integer).
pub async fn dependencies(
    State(state): TracesAppState,
    params: Params,
) -> Result<Response, JaegerError> {
    let end_ms = match params.get("endTs") {
        None => now_ms(),
        Some(t) => t
            .parse::<i64>()
            .map_err(|e| JaegerError::param("endTs", format!("{t:?}: {e}")))?,
    };
    let lookback_ms = match params.get("lookback") {
        None => DEFAULT_DEPENDENCY_LOOKBACK_MS,
        Some(t) => match t.parse::<i64>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(JaegerError::param(
                    "lookback",
                    format!("{t:?} is not a positive number of milliseconds"),
                ))
            }
        },
    };
    let window = crate::trace_params::Window {
        start_ms: end_ms.saturating_sub(lookback_ms),
        end_ms,
    };
    let edges = blocking(move || edge_counts(&state, &window)).await?;
    let mut links: Vec<DependencyJson> = Vec::new();
    for ((client, server, _), red) in &edges {
        let calls = red.requests.round() as u64;
        // the same pair over several connection types is one Jaeger link
        match links.last_mut() {
            Some(l) if l.parent == client && l.child == server => l.call_count += calls,
            _ => links.push(DependencyJson {
                parent: client,
                child: server,
                call_count: calls,
            }),
        }
    }
    Ok(ok(links, 0, None))
}

// ---- the trace model ----

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TraceJson {
    #[serde(rename = "traceID")]
    trace_id: String,
    spans: Vec<SpanJson>,
    processes: serde_json::Map<String, serde_json::Value>,
    warnings: Option<Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpanJson {
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
    flags: u32,
    operation_name: String,
    references: Vec<ReferenceJson>,
    start_time: u64,
    duration: u64,
    tags: Vec<KeyValueJson>,
    logs: Vec<LogJson>,
    #[serde(rename = "processID")]
    process_id: String,
    warnings: Option<Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReferenceJson {
    ref_type: &'static str,
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
}

#[derive(Serialize)]
struct LogJson {
    timestamp: u64,
    fields: Vec<KeyValueJson>,
}

#[derive(Serialize)]
struct ProcessJson {
    #[serde(rename = "serviceName")]
    service_name: String,
    tags: Vec<KeyValueJson>,
}

/// Jaeger's typed tag: `{"key":...,"type":"string|bool|int64|float64|binary","value":...}`.
#[derive(Serialize, Debug, PartialEq)]
pub struct KeyValueJson {
    key: String,
    #[serde(rename = "type")]
    value_type: &'static str,
    value: serde_json::Value,
}

impl KeyValueJson {
    fn string(key: &str, value: &str) -> Self {
        KeyValueJson {
            key: key.to_string(),
            value_type: "string",
            value: serde_json::Value::String(value.to_string()),
        }
    }

    /// As Jaeger's OTLP translator: strings, bools, ints and doubles keep their type, bytes
    /// are `binary` (base64 in JSON, as Go encodes `[]byte`), arrays and maps are strings
    /// holding their JSON. Ints beyond JavaScript's exact range are strings (Jaeger's
    /// `jsMaxSafeInteger` rule), and so are non-finite doubles, which JSON cannot hold.
    fn from_attr(key: &str, value: &AttrValue) -> Self {
        use serde_json::Value as J;
        let (value_type, value) = match value {
            AttrValue::Str(s) => ("string", J::String(s.clone())),
            AttrValue::Bool(b) => ("bool", J::Bool(*b)),
            AttrValue::Int(i) if (-JS_MAX_SAFE_INTEGER..=JS_MAX_SAFE_INTEGER).contains(i) => {
                ("int64", J::from(*i))
            }
            AttrValue::Int(i) => ("int64", J::String(i.to_string())),
            AttrValue::Double(d) => match serde_json::Number::from_f64(*d) {
                Some(n) => ("float64", J::Number(n)),
                None => ("float64", J::String(crate::response::format_float(*d))),
            },
            AttrValue::Bytes(b) => ("binary", J::String(base64(b))),
            AttrValue::Array(_) | AttrValue::KvList(_) => ("string", J::String(value.to_json())),
        };
        KeyValueJson {
            key: key.to_string(),
            value_type,
            value,
        }
    }
}

fn tags_of(attrs: &Attributes) -> impl Iterator<Item = KeyValueJson> + '_ {
    attrs.iter().map(|(k, v)| KeyValueJson::from_attr(k, v))
}

/// Standard base64 with padding (RFC 4648), as Go's `encoding/json` writes `[]byte`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn span_tags(stored: &StoredSpan) -> Vec<KeyValueJson> {
    let s = &stored.span;
    let mut tags = Vec::with_capacity(s.attributes.len() + 6);
    if !s.scope_name.is_empty() {
        tags.push(KeyValueJson::string("otel.scope.name", &s.scope_name));
    }
    if !s.scope_version.is_empty() {
        tags.push(KeyValueJson::string("otel.scope.version", &s.scope_version));
    }
    tags.extend(tags_of(&s.attributes));
    if s.kind != SpanKind::Unspecified {
        tags.push(KeyValueJson::string("span.kind", s.kind.as_str()));
    }
    match s.status_code {
        StatusCode::Ok => tags.push(KeyValueJson::string("otel.status_code", "OK")),
        StatusCode::Error => {
            tags.push(KeyValueJson::string("otel.status_code", "ERROR"));
            tags.push(KeyValueJson {
                key: "error".into(),
                value_type: "bool",
                value: serde_json::Value::Bool(true),
            });
        }
        StatusCode::Unset => {}
    }
    if !s.status_message.is_empty() {
        tags.push(KeyValueJson::string(
            "otel.status_description",
            &s.status_message,
        ));
    }
    if !s.trace_state.is_empty() {
        tags.push(KeyValueJson::string("w3c.tracestate", &s.trace_state));
    }
    tags
}

/// What the SDK dropped, as span warnings (Jaeger UI shows them on the span).
fn span_warnings(stored: &StoredSpan) -> Option<Vec<String>> {
    let s = &stored.span;
    let mut w = Vec::new();
    for (n, what) in [
        (s.dropped_attributes_count, "attributes"),
        (s.dropped_events_count, "events"),
        (s.dropped_links_count, "links"),
    ] {
        if n > 0 {
            w.push(format!("the SDK dropped {n} {what} of this span"));
        }
    }
    (!w.is_empty()).then_some(w)
}

impl TraceJson {
    fn new(id: TraceId, spans: &[StoredSpan]) -> Self {
        // distinct resources in order of first use: p1, p2, ...
        let mut resources: Vec<&Arc<Resource>> = Vec::new();
        let mut json_spans = Vec::with_capacity(spans.len());
        for stored in spans {
            let index = match resources
                .iter()
                .position(|r| Arc::ptr_eq(r, &stored.resource) || ***r == *stored.resource)
            {
                Some(i) => i,
                None => {
                    resources.push(&stored.resource);
                    resources.len() - 1
                }
            };
            json_spans.push(span_json(stored, format!("p{}", index + 1)));
        }
        let mut processes = serde_json::Map::new();
        for (i, r) in resources.iter().enumerate() {
            let process = ProcessJson {
                service_name: r.service_name.clone(),
                tags: r
                    .attributes
                    .iter()
                    .filter(|(k, _)| k != SERVICE_NAME_ATTR)
                    .map(|(k, v)| KeyValueJson::from_attr(k, v))
                    .collect(),
            };
            // a struct of strings and JSON values always serializes
            let value = serde_json::to_value(process).unwrap_or(serde_json::Value::Null);
            processes.insert(format!("p{}", i + 1), value);
        }
        TraceJson {
            trace_id: id.to_string(),
            spans: json_spans,
            processes,
            warnings: None,
        }
    }
}

fn span_json(stored: &StoredSpan, process_id: String) -> SpanJson {
    let s = &stored.span;
    let mut references = Vec::with_capacity(s.links.len() + 1);
    // the parent first: Jaeger's UI takes the first CHILD_OF reference as the parent
    if let Some(parent) = s.parent_span_id {
        references.push(ReferenceJson {
            ref_type: "CHILD_OF",
            trace_id: s.trace_id.to_string(),
            span_id: parent.to_string(),
        });
    }
    for l in &s.links {
        references.push(ReferenceJson {
            ref_type: "FOLLOWS_FROM",
            trace_id: l.trace_id.to_string(),
            span_id: l.span_id.to_string(),
        });
    }
    SpanJson {
        trace_id: s.trace_id.to_string(),
        span_id: s.span_id.to_string(),
        // only sampled spans are exported, so every stored span is sampled
        flags: 1,
        operation_name: s.name.clone(),
        references,
        start_time: s.start_unix_nano / 1_000,
        duration: s.duration_nanos() / 1_000,
        tags: span_tags(stored),
        logs: s
            .events
            .iter()
            .map(|e| {
                let mut fields = Vec::with_capacity(e.attributes.len() + 1);
                if !e.name.is_empty() {
                    fields.push(KeyValueJson::string("event", &e.name));
                }
                fields.extend(tags_of(&e.attributes));
                LogJson {
                    timestamp: e.time_unix_nano / 1_000,
                    fields,
                }
            })
            .collect(),
        process_id,
        warnings: span_warnings(stored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc, "{raw}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn tag_types_follow_jaeger() {
        let kv = |v: AttrValue| {
            let t = KeyValueJson::from_attr("k", &v);
            (t.value_type, t.value.to_string())
        };
        assert_eq!(kv(AttrValue::Str("x".into())), ("string", "\"x\"".into()));
        assert_eq!(kv(AttrValue::Bool(true)), ("bool", "true".into()));
        assert_eq!(kv(AttrValue::Int(42)), ("int64", "42".into()));
        assert_eq!(
            kv(AttrValue::Int(i64::MAX)),
            ("int64", "\"9223372036854775807\"".into())
        );
        assert_eq!(kv(AttrValue::Double(1.5)), ("float64", "1.5".into()));
        assert_eq!(
            kv(AttrValue::Double(f64::NAN)),
            ("float64", "\"NaN\"".into())
        );
        assert_eq!(
            kv(AttrValue::Bytes(b"foo".to_vec())),
            ("binary", "\"Zm9v\"".into())
        );
        assert_eq!(
            kv(AttrValue::Array(vec![
                AttrValue::Int(1),
                AttrValue::Str("a".into())
            ])),
            ("string", r#""[1,\"a\"]""#.into())
        );
    }
}
