//! Rate, errors and duration from the series derived from spans at ingest (names as Tempo's
//! metrics-generator): `GET /api/v1/services`, `GET /api/v1/services/{service}/operations`
//! and `GET /api/v1/service-graph` (and Jaeger's `/api/dependencies`).
//!
//! Every count is exact over the window `[start, end]`: per series its value at `end` minus
//! its value at `start` (0 for a series that did not exist then), summed by the group; see
//! [`counts`] for the rules. This is not PromQL's `increase(...[range])`, which extrapolates
//! to the window's edges and misses a series' first count; the series stay ordinary
//! counters, so `increase()` and `rate()` in dashboards and rules work as with Tempo, and
//! agree with these counts when the window's edges fall on samples. Rates are counts / the
//! window's seconds; quantiles are Prometheus's `histogram_quantile` over the exact bucket
//! counts of the window summed by `le` and the group. Nothing is rounded; no data (NaN) is
//! `null`. A group is listed when something of it was counted in the window (or the trace
//! store has spans of it there).
//!
//! A service's *requests* are its spans of kind SERVER or CONSUMER: the calls it handled, not
//! the calls it made or its internal steps. A span is an error when its `status_code` label is
//! `STATUS_CODE_ERROR` (the collector already folds HTTP 5xx and gRPC codes into it).
//! `errorRate` is errors per second (the E of RED, as Tempo's dashboards show it);
//! `successRate` is `1 - errors / requests`.

mod counts;

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Serialize;
use store::traces::SpanKind;
use store::{LabelMatcher, Labels, MatchOp};

use crate::error::ApiError;
use crate::handlers::{blocking, now_ms};
use crate::params::Params;
use crate::trace_params::Window;
use crate::traces::{json_success, TracesAppState, TracesState};
use counts::{bucket_quantile, Counter};

pub const CALLS: &str = "traces_spanmetrics_calls_total";
pub const LATENCY_BUCKET: &str = "traces_spanmetrics_latency_bucket";
pub const GRAPH_TOTAL: &str = "traces_service_graph_request_total";
pub const GRAPH_FAILED: &str = "traces_service_graph_request_failed_total";
pub const GRAPH_SERVER_BUCKET: &str = "traces_service_graph_request_server_seconds_bucket";
pub const GRAPH_CLIENT_BUCKET: &str = "traces_service_graph_request_client_seconds_bucket";

/// The span kinds that are a service's requests (a `span_kind` regex).
const REQUEST_KINDS: &str = "SPAN_KIND_SERVER|SPAN_KIND_CONSUMER";
const ERROR_STATUS: &str = "STATUS_CODE_ERROR";
const QUANTILES: [f64; 3] = [0.5, 0.95, 0.99];

fn label<'a>(labels: &'a Labels, name: &str) -> &'a str {
    labels.get(name).unwrap_or("")
}

fn matcher(name: &str, op: MatchOp, value: &str) -> Result<LabelMatcher, ApiError> {
    Ok(LabelMatcher::new(name, op, value)?)
}

/// The matchers of `metric` and then `more`.
fn selector(metric: &str, more: &[LabelMatcher]) -> Result<Vec<LabelMatcher>, ApiError> {
    let mut out = vec![matcher("__name__", MatchOp::Equal, metric)?];
    out.extend(more.iter().cloned());
    Ok(out)
}

/// The counter of a request's window, with the PromQL lookback as the reach of "the value
/// at start".
fn counter<'a>(state: &'a TracesState, window: &Window) -> Counter<'a> {
    Counter::new(
        state.metrics.as_ref(),
        window,
        state.engine.options().lookback_delta,
    )
}

/// The bucket counts of a histogram family over the window, summed by group (and `le`, which
/// the quantile sums). Series without a number in `le` are left out, as PromQL leaves them.
fn buckets_by<K: Ord>(
    counter: &Counter,
    family_bucket: &str,
    matchers: &[LabelMatcher],
    key: impl Fn(&Labels) -> K,
) -> Result<BTreeMap<K, Vec<(f64, f64)>>, ApiError> {
    let mut out: BTreeMap<K, Vec<(f64, f64)>> = BTreeMap::new();
    counter.each(&selector(family_bucket, matchers)?, |labels, n| {
        if let Some(le) = labels.get("le").and_then(|t| t.parse::<f64>().ok()) {
            out.entry(key(labels)).or_default().push((le, n));
        }
    })?;
    Ok(out)
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

/// Requests, errors and latency quantiles grouped by `key`, of the spans `matchers` pick.
/// A group is listed when it had calls of any kind in the window; only the calls that
/// `requests` matches (all when `None`) are its requests and errors, and only their latency
/// gives its quantiles.
fn red_by<K: Ord + Clone>(
    counter: &Counter,
    matchers: &[LabelMatcher],
    requests: Option<&LabelMatcher>,
    key: impl Fn(&Labels) -> K,
) -> Result<BTreeMap<K, Red>, ApiError> {
    let mut out: BTreeMap<K, Red> = BTreeMap::new();
    counter.each(&selector(CALLS, matchers)?, |labels, n| {
        if n <= 0.0 {
            return;
        }
        let red = out.entry(key(labels)).or_default();
        if requests.is_none_or(|m| m.matches_labels(labels)) {
            red.requests += n;
            if label(labels, "status_code") == ERROR_STATUS {
                red.errors += n;
            }
        }
    })?;
    let mut latency: Vec<LabelMatcher> = matchers.to_vec();
    latency.extend(requests.cloned());
    for (k, mut buckets) in buckets_by(counter, LATENCY_BUCKET, &latency, &key)? {
        if let Some(red) = out.get_mut(&k) {
            for (i, q) in QUANTILES.iter().enumerate() {
                red.set_quantile(i, bucket_quantile(*q, &mut buckets));
            }
        }
    }
    Ok(out)
}

fn secs_of(window: &Window) -> f64 {
    window.range_ms() as f64 / 1000.0
}

/// Per service: the RED of its requests, for every service with spans in the window (from
/// the trace store, or any derived calls counted).
fn services_red(state: &TracesState, window: &Window) -> Result<BTreeMap<String, Red>, ApiError> {
    let kinds = matcher("span_kind", MatchOp::RegexMatch, REQUEST_KINDS)?;
    let mut out = red_by(&counter(state, window), &[], Some(&kinds), |l| {
        label(l, "service").to_string()
    })?;
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
fn kind_of(labels: &Labels) -> SpanKind {
    SpanKind::parse(label(labels, "span_kind")).unwrap_or_default()
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
        let service = matcher("service", MatchOp::Equal, &svc)?;
        let mut out = red_by(&counter(&state, &window), &[service], None, |l| {
            (label(l, "span_name").to_string(), kind_of(l))
        })?;
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

fn edge_key(labels: &Labels) -> EdgeKey {
    (
        label(labels, "client").to_string(),
        label(labels, "server").to_string(),
        label(labels, "connection_type").to_string(),
    )
}

/// Requests and failures per edge over the window, edges without requests left out.
pub fn edge_counts(
    state: &TracesState,
    window: &Window,
) -> Result<BTreeMap<EdgeKey, Red>, ApiError> {
    edges_of(&counter(state, window))
}

fn edges_of(counter: &Counter) -> Result<BTreeMap<EdgeKey, Red>, ApiError> {
    let mut edges: BTreeMap<EdgeKey, Red> = BTreeMap::new();
    counter.each(&selector(GRAPH_TOTAL, &[])?, |labels, n| {
        if n > 0.0 {
            edges.entry(edge_key(labels)).or_default().requests += n;
        }
    })?;
    counter.each(&selector(GRAPH_FAILED, &[])?, |labels, n| {
        if let Some(e) = edges.get_mut(&edge_key(labels)) {
            e.errors += n;
        }
    })?;
    Ok(edges)
}

/// The p95 of the server-side latency histogram grouped by `key`, falling back to the
/// client-side one for groups the server side has no number for (an uninstrumented server).
fn p95_by<K: Ord>(
    counter: &Counter,
    key: impl Fn(&Labels) -> K,
) -> Result<BTreeMap<K, f64>, ApiError> {
    let mut out = BTreeMap::new();
    for bucket in [GRAPH_CLIENT_BUCKET, GRAPH_SERVER_BUCKET] {
        for (k, mut buckets) in buckets_by(counter, bucket, &[], &key)? {
            let p95 = bucket_quantile(0.95, &mut buckets);
            if p95.is_finite() || !out.contains_key(&k) {
                out.insert(k, p95);
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
    let counter = counter(state, window);
    let mut edges = edges_of(&counter)?;
    for (key, p95) in p95_by(&counter, edge_key)? {
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
                virtual_p95 = Some(p95_by(&counter, |l| label(l, "server").to_string())?);
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
