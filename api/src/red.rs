//! Rate, errors and duration from the series derived from spans at ingest (names as Tempo's
//! metrics-generator): `GET /api/v1/services`, `GET /api/v1/services/{service}/operations`
//! and `GET /api/v1/service-graph`.
//!
//! Every number is PromQL over the derived series, evaluated at `end` with the range
//! `end - start`: counts are `increase(...[range])`, rates are counts / range seconds,
//! quantiles are `histogram_quantile` over the `sum by (le, ...)` of bucket increases. So the
//! API, dashboards and alert rules agree. Nothing is rounded; no data (NaN) is `null`.
//!
//! A service's *requests* are its spans of kind SERVER or CONSUMER: the calls it handled, not
//! the calls it made or its internal steps. A span is an error when its `status_code` label is
//! `STATUS_CODE_ERROR` (the collector already folds HTTP 5xx and gRPC codes into it).
//! `errorRate` is errors per second (the E of RED, as Tempo's dashboards show it);
//! `successRate` is `1 - errors / requests`.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Serialize;
use store::promql::{Engine, InstantSample, Value};
use store::traces::SpanKind;
use store::{LabelMatcher, MatchOp};

use crate::error::ApiError;
use crate::handlers::{blocking, now_ms};
use crate::params::Params;
use crate::trace_params::Window;
use crate::traces::{json_success, TracesAppState, TracesState};

pub const CALLS: &str = "traces_spanmetrics_calls_total";
pub const LATENCY_BUCKET: &str = "traces_spanmetrics_latency_bucket";
pub const GRAPH_TOTAL: &str = "traces_service_graph_request_total";
pub const GRAPH_FAILED: &str = "traces_service_graph_request_failed_total";
pub const GRAPH_SERVER_BUCKET: &str = "traces_service_graph_request_server_seconds_bucket";
pub const GRAPH_CLIENT_BUCKET: &str = "traces_service_graph_request_client_seconds_bucket";

/// The span kinds that are a service's requests.
const REQUEST_KINDS: &str = r#"span_kind=~"SPAN_KIND_SERVER|SPAN_KIND_CONSUMER""#;
const ERROR_STATUS: &str = "STATUS_CODE_ERROR";
const QUANTILES: [f64; 3] = [0.5, 0.95, 0.99];

/// A PromQL double-quoted string literal: `\` and `"` escaped, control characters as `\u`
/// escapes (PromQL reads Go's escapes).
pub fn promql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() && (c as u32) <= 0xffff => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\U{:08x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Evaluates an instant query at `at_ms`; every query here yields a vector.
fn vector(engine: &Engine, query: &str, at_ms: i64) -> Result<Vec<InstantSample>, ApiError> {
    match engine.instant(query, at_ms)? {
        Value::Vector(v) => Ok(v),
        other => Err(ApiError::internal(format!(
            "query {query:?} gave a {} instead of a vector",
            other.type_name()
        ))),
    }
}

fn label<'a>(s: &'a InstantSample, name: &str) -> &'a str {
    s.labels.get(name).unwrap_or("")
}

/// Counts and quantiles of one group (a service, an operation, a node, an edge).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Red {
    pub requests: f64,
    pub errors: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Default for Red {
    fn default() -> Self {
        Red {
            requests: 0.0,
            errors: 0.0,
            p50: f64::NAN,
            p95: f64::NAN,
            p99: f64::NAN,
        }
    }
}

impl Red {
    fn set_quantile(&mut self, i: usize, v: f64) {
        match i {
            0 => self.p50 = v,
            1 => self.p95 = v,
            _ => self.p99 = v,
        }
    }
}

/// A finite number, or `null`.
fn num(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The JSON numbers of a [`Red`] over a window of `secs` seconds.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct RedJson {
    request_rate: Option<f64>,
    error_rate: Option<f64>,
    success_rate: Option<f64>,
    requests: Option<f64>,
    errors: Option<f64>,
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
}

impl RedJson {
    fn new(r: &Red, secs: f64) -> Self {
        let success = if r.requests > 0.0 {
            1.0 - r.errors / r.requests
        } else {
            f64::NAN
        };
        RedJson {
            request_rate: num(r.requests / secs),
            error_rate: num(r.errors / secs),
            success_rate: num(success),
            requests: num(r.requests),
            errors: num(r.errors),
            p50: num(r.p50),
            p95: num(r.p95),
            p99: num(r.p99),
        }
    }
}

/// Requests, errors and latency quantiles of the spans `selector` picks, grouped by `group`
/// labels (comma-separated). `range` is a PromQL range (`[3600000ms]`).
fn red_by<K: Ord + Clone>(
    engine: &Engine,
    selector: &str,
    group: &str,
    range: &str,
    at_ms: i64,
    key: impl Fn(&InstantSample) -> K,
) -> Result<BTreeMap<K, Red>, ApiError> {
    let mut out: BTreeMap<K, Red> = BTreeMap::new();
    let calls = format!("sum by ({group}, status_code) (increase({CALLS}{{{selector}}}{range}))");
    for s in vector(engine, &calls, at_ms)? {
        let red = out.entry(key(&s)).or_default();
        red.requests += s.value;
        if label(&s, "status_code") == ERROR_STATUS {
            red.errors += s.value;
        }
    }
    for (i, q) in QUANTILES.iter().enumerate() {
        let query = format!(
            "histogram_quantile({q}, sum by (le, {group}) (increase({LATENCY_BUCKET}{{{selector}}}{range})))"
        );
        for s in vector(engine, &query, at_ms)? {
            out.entry(key(&s)).or_default().set_quantile(i, s.value);
        }
    }
    Ok(out)
}

fn range_of(window: &Window) -> String {
    format!("[{}ms]", window.range_ms())
}

fn secs_of(window: &Window) -> f64 {
    window.range_ms() as f64 / 1000.0
}

/// Per service: the RED of its requests, for every service with spans in the window (from
/// the trace store, or any derived series that grew).
fn services_red(state: &TracesState, window: &Window) -> Result<BTreeMap<String, Red>, ApiError> {
    let range = range_of(window);
    let mut out = red_by(
        &state.engine,
        REQUEST_KINDS,
        "service",
        &range,
        window.end_ms,
        |s| label(s, "service").to_string(),
    )?;
    let any = format!("sum by (service) (increase({CALLS}{range})) > 0");
    for s in vector(&state.engine, &any, window.end_ms)? {
        out.entry(label(&s, "service").to_string()).or_default();
    }
    for service in state
        .traces
        .services(window.start_nanos(), window.end_nanos())?
    {
        out.entry(service).or_default();
    }
    Ok(out)
}

#[derive(Serialize)]
struct ServiceJson<'a> {
    service: &'a str,
    #[serde(flatten)]
    red: RedJson,
}

/// `GET /api/v1/services?start=&end=`.
pub async fn services(State(state): TracesAppState, params: Params) -> Result<Response, ApiError> {
    let window = Window::from_params(&params, now_ms(), false)?;
    let all = blocking(move || services_red(&state, &window)).await?;
    let secs = secs_of(&window);
    let data: Vec<ServiceJson> = all
        .iter()
        .map(|(service, red)| ServiceJson {
            service,
            red: RedJson::new(red, secs),
        })
        .collect();
    json_success(&data)
}

#[derive(Serialize)]
struct OperationJson<'a> {
    operation: &'a str,
    kind: &'static str,
    #[serde(flatten)]
    red: RedJson,
}

/// The span kind of a `span_kind` label (`SPAN_KIND_SERVER`).
fn kind_of(s: &InstantSample) -> SpanKind {
    SpanKind::parse(label(s, "span_kind")).unwrap_or_default()
}

/// `GET /api/v1/services/{service}/operations?start=&end=`: every span name of the service,
/// of every kind, one entry per (name, kind).
pub async fn operations(
    State(state): TracesAppState,
    Path(service): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let window = Window::from_params(&params, now_ms(), false)?;
    let svc = service.clone();
    let all = blocking(move || {
        let selector = format!("service={}", promql_string(&svc));
        let range = range_of(&window);
        let mut out = red_by(
            &state.engine,
            &selector,
            "span_name, span_kind",
            &range,
            window.end_ms,
            |s| (label(s, "span_name").to_string(), kind_of(s)),
        )?;
        for (name, kind) in
            state
                .traces
                .operations(&svc, window.start_nanos(), window.end_nanos())?
        {
            out.entry((name, kind)).or_default();
        }
        Ok(out)
    })
    .await?;
    let secs = secs_of(&window);
    let data: Vec<OperationJson> = all
        .iter()
        .map(|((name, kind), red)| OperationJson {
            operation: name,
            kind: kind.as_str(),
            red: RedJson::new(red, secs),
        })
        .collect();
    json_success(&data)
}

/// A service-graph edge key: (client, server, connection type).
pub type EdgeKey = (String, String, String);

fn edge_key(s: &InstantSample) -> EdgeKey {
    (
        label(s, "client").to_string(),
        label(s, "server").to_string(),
        label(s, "connection_type").to_string(),
    )
}

/// Requests and failures per edge over the window, edges without requests left out.
pub fn edge_counts(engine: &Engine, window: &Window) -> Result<BTreeMap<EdgeKey, Red>, ApiError> {
    let range = range_of(window);
    let by = "client, server, connection_type";
    let mut edges: BTreeMap<EdgeKey, Red> = BTreeMap::new();
    let total = format!("sum by ({by}) (increase({GRAPH_TOTAL}{range})) > 0");
    for s in vector(engine, &total, window.end_ms)? {
        edges.entry(edge_key(&s)).or_default().requests = s.value;
    }
    let failed = format!("sum by ({by}) (increase({GRAPH_FAILED}{range}))");
    for s in vector(engine, &failed, window.end_ms)? {
        if let Some(e) = edges.get_mut(&edge_key(&s)) {
            e.errors = s.value;
        }
    }
    Ok(edges)
}

/// The p95 of the server-side latency histogram grouped by `by`, falling back to the
/// client-side one for groups the server side has no number for (an uninstrumented server).
fn p95_by<K: Ord>(
    engine: &Engine,
    window: &Window,
    by: &str,
    key: impl Fn(&InstantSample) -> K,
) -> Result<BTreeMap<K, f64>, ApiError> {
    let range = range_of(window);
    let mut out = BTreeMap::new();
    for bucket in [GRAPH_CLIENT_BUCKET, GRAPH_SERVER_BUCKET] {
        let query =
            format!("histogram_quantile(0.95, sum by (le, {by}) (increase({bucket}{range})))");
        for s in vector(engine, &query, window.end_ms)? {
            if s.value.is_finite() || !out.contains_key(&key(&s)) {
                out.insert(key(&s), s.value);
            }
        }
    }
    Ok(out)
}

/// The numbers of a graph node or edge: [`RedJson`] with p95 as the one latency.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct GraphRedJson {
    request_rate: Option<f64>,
    error_rate: Option<f64>,
    success_rate: Option<f64>,
    requests: Option<f64>,
    errors: Option<f64>,
    p95: Option<f64>,
}

impl GraphRedJson {
    fn new(r: &Red, secs: f64) -> Self {
        let full = RedJson::new(r, secs);
        GraphRedJson {
            request_rate: full.request_rate,
            error_rate: full.error_rate,
            success_rate: full.success_rate,
            requests: full.requests,
            errors: full.errors,
            p95: full.p95,
        }
    }
}

#[derive(Serialize)]
struct NodeJson<'a> {
    id: &'a str,
    #[serde(rename = "virtual")]
    is_virtual: bool,
    #[serde(flatten)]
    red: GraphRedJson,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EdgeJson<'a> {
    source: &'a str,
    target: &'a str,
    connection_type: &'a str,
    #[serde(flatten)]
    red: GraphRedJson,
}

#[derive(Serialize)]
struct GraphJson<'a> {
    nodes: Vec<NodeJson<'a>>,
    edges: Vec<EdgeJson<'a>>,
}

/// The nodes (with their RED) and edges of the service graph.
struct Graph {
    nodes: BTreeMap<String, (bool, Red)>,
    edges: BTreeMap<EdgeKey, Red>,
}

fn service_graph(state: &TracesState, window: &Window) -> Result<Graph, ApiError> {
    let mut edges = edge_counts(&state.engine, window)?;
    for (key, p95) in p95_by(
        &state.engine,
        window,
        "client, server, connection_type",
        edge_key,
    )? {
        if let Some(e) = edges.get_mut(&key) {
            e.p95 = p95;
        }
    }
    // a node is real when it is a `service` of the span metrics; its numbers are its own
    // requests, as /api/v1/services gives them
    let matcher = LabelMatcher::new("__name__", MatchOp::Equal, CALLS)?;
    let services = services_red(state, window)?;
    let mut real: BTreeSet<String> = state
        .metrics
        .label_values("service", &[vec![matcher]], window.start_ms, window.end_ms)?
        .into_iter()
        .collect();
    real.extend(services.keys().cloned());
    let mut nodes: BTreeMap<String, (bool, Red)> = services
        .into_iter()
        .map(|(name, red)| (name, (false, red)))
        .collect();
    // a virtual node (a database, an external API, `user`) has no spans of its own: its
    // numbers are those of the edges into it
    let mut virtual_p95 = None;
    for ((client, server, _), e) in &edges {
        for name in [client, server] {
            nodes
                .entry(name.clone())
                .or_insert_with(|| (!real.contains(name), Red::default()));
        }
        if let Some((true, red)) = nodes.get_mut(server) {
            red.requests += e.requests;
            red.errors += e.errors;
            if virtual_p95.is_none() {
                virtual_p95 = Some(p95_by(&state.engine, window, "server", |s| {
                    label(s, "server").to_string()
                })?);
            }
            if let Some(p) = virtual_p95.as_ref().and_then(|m| m.get(server)) {
                red.p95 = *p;
            }
        }
    }
    Ok(Graph { nodes, edges })
}

/// `GET /api/v1/service-graph?start=&end=`.
pub async fn graph(State(state): TracesAppState, params: Params) -> Result<Response, ApiError> {
    let window = Window::from_params(&params, now_ms(), false)?;
    let g = blocking(move || service_graph(&state, &window)).await?;
    let secs = secs_of(&window);
    let data = GraphJson {
        nodes: g
            .nodes
            .iter()
            .map(|(id, (is_virtual, red))| NodeJson {
                id,
                is_virtual: *is_virtual,
                red: GraphRedJson::new(red, secs),
            })
            .collect(),
        edges: g
            .edges
            .iter()
            .map(|((client, server, conn), red)| EdgeJson {
                source: client,
                target: server,
                connection_type: conn,
                red: GraphRedJson::new(red, secs),
            })
            .collect(),
    };
    json_success(&data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promql_strings_round_trip_through_the_parser() {
        for s in [
            "plain",
            "a\"b",
            "back\\slash",
            "new\nline",
            "tab\t\u{1}",
            "ünï",
            "",
        ] {
            let q = format!("up{{service={}}}", promql_string(s));
            let expr = store::promql::parse(&q).unwrap_or_else(|e| panic!("{q}: {e}"));
            let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
                panic!("{q} is not a selector");
            };
            let m = vs
                .matchers
                .matchers
                .iter()
                .find(|m| m.name == "service")
                .expect("service matcher");
            assert_eq!(m.value, s, "{q}");
        }
    }
}
