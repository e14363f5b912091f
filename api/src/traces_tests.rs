//! Tests of the trace routes through the real router: a [`FakeTraces`] querier (an in-memory
//! trace store with real filtering, as the contract describes it) and a
//! [`MemQuerier`] holding hand-made derived series with known counts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Value};
use store::model::Sample;
use store::testing::MemQuerier;
use store::traces::model::attr;
use store::traces::{
    AttrValue, Resource, Span, SpanEvent, SpanId, SpanKind, SpanLink, StatusCode as SpanStatus,
    StoredSpan, TraceId, TraceQuery, TraceSummary, TracesQuerier,
};
use store::Labels;

use crate::tests::send_get;
use crate::{traces_router, ApiOptions};

// ---- an in-memory TracesQuerier ----

/// Spans in memory, searched as [`TracesQuerier`] says: the span conditions hold on one
/// span, `error` on the whole trace, tags on the span's attributes then its resource's.
pub struct FakeTraces {
    pub spans: Vec<StoredSpan>,
}

fn tag_holds(s: &StoredSpan, key: &str, want: &str) -> bool {
    attr(&s.span.attributes, key)
        .or_else(|| attr(&s.resource.attributes, key))
        .is_some_and(|v| v.to_text() == want)
}

fn span_matches(s: &StoredSpan, q: &TraceQuery) -> bool {
    let sp = &s.span;
    let d = sp.duration_nanos();
    sp.start_unix_nano >= q.start_unix_nano
        && (q.end_unix_nano == 0 || sp.start_unix_nano <= q.end_unix_nano)
        && q.service
            .as_ref()
            .is_none_or(|x| *x == s.resource.service_name)
        && q.operation.as_ref().is_none_or(|x| *x == sp.name)
        && q.kind.is_none_or(|k| k == sp.kind)
        && q.min_duration_nanos.is_none_or(|m| d >= m)
        && q.max_duration_nanos.is_none_or(|m| d <= m)
        && q.tags.iter().all(|(k, v)| tag_holds(s, k, v))
}

fn summary(spans: &[&StoredSpan]) -> TraceSummary {
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
    let root = spans
        .iter()
        .filter(|s| s.span.parent_span_id.is_none())
        .min_by_key(|s| s.span.start_unix_nano)
        .or_else(|| spans.iter().min_by_key(|s| s.span.start_unix_nano));
    let services: BTreeSet<String> = spans
        .iter()
        .map(|s| s.resource.service_name.clone())
        .collect();
    TraceSummary {
        trace_id: spans[0].span.trace_id,
        root_service: root
            .map(|s| s.resource.service_name.clone())
            .unwrap_or_default(),
        root_operation: root.map(|s| s.span.name.clone()).unwrap_or_default(),
        start_unix_nano: start,
        duration_nanos: end - start,
        span_count: spans.len() as u64,
        error_count: spans
            .iter()
            .filter(|s| s.span.status_code == SpanStatus::Error)
            .count() as u64,
        services: services.into_iter().collect(),
    }
}

impl TracesQuerier for FakeTraces {
    fn trace(&self, id: TraceId) -> store::Result<Vec<StoredSpan>> {
        let mut out: Vec<StoredSpan> = self
            .spans
            .iter()
            .filter(|s| s.span.trace_id == id)
            .cloned()
            .collect();
        out.sort_by_key(|s| s.span.start_unix_nano);
        Ok(out)
    }

    fn search(&self, q: &TraceQuery) -> store::Result<Vec<TraceSummary>> {
        let mut by_trace: BTreeMap<TraceId, Vec<&StoredSpan>> = BTreeMap::new();
        for s in &self.spans {
            by_trace.entry(s.span.trace_id).or_default().push(s);
        }
        let mut hits: Vec<(u64, TraceSummary)> = by_trace
            .values()
            .filter_map(|spans| {
                let newest = spans
                    .iter()
                    .filter(|s| span_matches(s, q))
                    .map(|s| s.span.start_unix_nano)
                    .max()?;
                let sum = summary(spans);
                let wanted = q.error.is_none_or(|e| e == (sum.error_count > 0));
                wanted.then_some((newest, sum))
            })
            .collect();
        hits.sort_by_key(|h| std::cmp::Reverse(h.0));
        hits.truncate(q.limit);
        let mut out: Vec<TraceSummary> = hits.into_iter().map(|(_, s)| s).collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.start_unix_nano));
        Ok(out)
    }

    fn services(&self, start: u64, end: u64) -> store::Result<Vec<String>> {
        let set: BTreeSet<String> = self
            .spans
            .iter()
            .filter(|s| (start..=end).contains(&s.span.start_unix_nano))
            .map(|s| s.resource.service_name.clone())
            .collect();
        Ok(set.into_iter().collect())
    }

    fn operations(
        &self,
        service: &str,
        start: u64,
        end: u64,
    ) -> store::Result<Vec<(String, SpanKind)>> {
        let set: BTreeSet<(String, SpanKind)> = self
            .spans
            .iter()
            .filter(|s| {
                s.resource.service_name == service
                    && (start..=end).contains(&s.span.start_unix_nano)
            })
            .map(|s| (s.span.name.clone(), s.span.kind))
            .collect();
        Ok(set.into_iter().collect())
    }
}

// ---- fixtures ----

/// 2023-11-14T22:13:20Z in seconds: the start of the test window.
const T0_SECS: i64 = 1_700_000_000;
const T0: u64 = 1_700_000_000_000_000_000;
const MS: u64 = 1_000_000;
/// The window every RED test asks for: ten minutes from T0.
const WINDOW: &str = "start=1700000000&end=1700000600";

const TRACE_A: &str = "0af7651916cd43dd8448eb211c80319c";
const TRACE_B: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACE_C: &str = "000000000000000000000000000000c0";
const TRACE_D: &str = "5bf92f3577b34da6a3ce929d0e0e4736";

fn tid(hex: &str) -> TraceId {
    TraceId::from_hex(hex).expect("test trace id")
}

fn sid(hex: &str) -> SpanId {
    SpanId::from_hex(hex).expect("test span id")
}

fn resource(service: &str, extra: &[(&str, &str)]) -> Arc<Resource> {
    let mut attributes = vec![("service.name".to_string(), AttrValue::Str(service.into()))];
    attributes.extend(
        extra
            .iter()
            .map(|(k, v)| (k.to_string(), AttrValue::Str(v.to_string()))),
    );
    Arc::new(Resource {
        service_name: service.into(),
        attributes,
    })
}

fn span(trace: &str, id: &str, parent: Option<&str>, name: &str, kind: SpanKind) -> Span {
    Span {
        trace_id: tid(trace),
        span_id: sid(id),
        parent_span_id: parent.map(sid),
        name: name.into(),
        kind,
        ..Span::default()
    }
}

fn timed(mut s: Span, start: u64, dur: u64) -> Span {
    s.start_unix_nano = start;
    s.end_unix_nano = start + dur;
    s
}

pub(crate) fn spans() -> Vec<StoredSpan> {
    let frontend = resource("frontend", &[("host.name", "web-1")]);
    let checkout = resource("checkout", &[("k8s.pod.name", "checkout-1")]);
    let mut a1 = timed(
        span(
            TRACE_A,
            "b7ad6b7169203331",
            None,
            "GET /checkout",
            SpanKind::Server,
        ),
        T0 + 1_000 * MS,
        100 * MS,
    );
    a1.attributes = vec![
        ("http.method".into(), AttrValue::Str("GET".into())),
        ("http.status_code".into(), AttrValue::Int(200)),
    ];
    a1.scope_name = "io.opentelemetry.flask".into();
    a1.scope_version = "1.2.0".into();
    let mut a2 = timed(
        span(
            TRACE_A,
            "00f067aa0ba902b7",
            Some("b7ad6b7169203331"),
            "POST /pay",
            SpanKind::Server,
        ),
        T0 + 1_010 * MS,
        50 * MS,
    );
    a2.status_code = SpanStatus::Error;
    a2.status_message = "card declined".into();
    a2.trace_state = "congo=t61rcWkgMzE".into();
    a2.attributes = vec![
        ("http.status_code".into(), AttrValue::Int(500)),
        ("retry".into(), AttrValue::Bool(true)),
        ("ratio".into(), AttrValue::Double(0.5)),
        ("big".into(), AttrValue::Int(1 << 60)),
        ("raw".into(), AttrValue::Bytes(vec![1, 2, 255])),
        (
            "list".into(),
            AttrValue::Array(vec![AttrValue::Int(1), AttrValue::Str("a".into())]),
        ),
    ];
    a2.events = vec![SpanEvent {
        time_unix_nano: T0 + 1_020 * MS + 1_500,
        name: "exception".into(),
        attributes: vec![("exception.type".into(), AttrValue::Str("ValueError".into()))],
    }];
    a2.links = vec![SpanLink {
        trace_id: tid(TRACE_B),
        span_id: sid("0102030405060708"),
        trace_state: "k=v".into(),
        attributes: vec![("link.kind".into(), AttrValue::Str("retry-of".into()))],
    }];
    a2.dropped_attributes_count = 2;
    let mut a3 = timed(
        span(
            TRACE_A,
            "1111111111111111",
            Some("00f067aa0ba902b7"),
            "SELECT",
            SpanKind::Client,
        ),
        T0 + 1_020 * MS,
        10 * MS,
    );
    a3.attributes = vec![("db.system".into(), AttrValue::Str("postgresql".into()))];
    let b1 = timed(
        span(TRACE_B, "2222222222222222", None, "GET /", SpanKind::Server),
        T0 + 200_000 * MS,
        10 * MS,
    );
    let c1 = timed(
        span(
            TRACE_C,
            "3333333333333333",
            Some("4444444444444444"),
            "compute",
            SpanKind::Internal,
        ),
        T0 + 300_000 * MS,
        MS,
    );
    let d1 = timed(
        span(
            TRACE_D,
            "5555555555555555",
            None,
            "tick",
            SpanKind::Internal,
        ),
        T0 + 400_000 * MS,
        2_000 * MS,
    );
    // a3's resource equals a2's but is another allocation: one Jaeger process all the same
    let checkout_copy = Arc::new((*checkout).clone());
    vec![
        StoredSpan {
            resource: frontend.clone(),
            span: a1,
        },
        StoredSpan {
            resource: checkout.clone(),
            span: a2,
        },
        StoredSpan {
            resource: checkout_copy,
            span: a3,
        },
        StoredSpan {
            resource: frontend,
            span: b1,
        },
        StoredSpan {
            resource: checkout,
            span: c1,
        },
        StoredSpan {
            resource: resource("lonely", &[]),
            span: d1,
        },
    ]
}

/// A counter from 0 at the window start to `to` at its end: its increase over the window is
/// exactly `to` (no extrapolation when samples sit on both edges).
fn counter(series: &mut BTreeMap<Labels, Vec<Sample>>, pairs: &[(&str, &str)], to: f64) {
    ramp(series, pairs, 0.0, to);
}

fn ramp(series: &mut BTreeMap<Labels, Vec<Sample>>, pairs: &[(&str, &str)], from: f64, to: f64) {
    let start = T0_SECS * 1000;
    series.insert(
        Labels::from_pairs(pairs.iter().copied()),
        vec![
            Sample::new(start, from),
            Sample::new(start + 300_000, (from + to) / 2.0),
            Sample::new(start + 600_000, to),
        ],
    );
}

fn calls(
    s: &mut BTreeMap<Labels, Vec<Sample>>,
    svc: &str,
    name: &str,
    kind: &str,
    status: &str,
    n: f64,
) {
    counter(
        s,
        &[
            ("__name__", "traces_spanmetrics_calls_total"),
            ("service", svc),
            ("span_name", name),
            ("span_kind", kind),
            ("status_code", status),
        ],
        n,
    );
}

fn bucket(
    s: &mut BTreeMap<Labels, Vec<Sample>>,
    svc: &str,
    name: &str,
    kind: &str,
    status: &str,
    le: &str,
    n: f64,
) {
    counter(
        s,
        &[
            ("__name__", "traces_spanmetrics_latency_bucket"),
            ("service", svc),
            ("span_name", name),
            ("span_kind", kind),
            ("status_code", status),
            ("le", le),
        ],
        n,
    );
}

fn edge(
    s: &mut BTreeMap<Labels, Vec<Sample>>,
    metric: &str,
    client: &str,
    server: &str,
    conn: &str,
    extra: Option<(&str, &str)>,
    n: f64,
) {
    let mut pairs = vec![("__name__", metric), ("client", client), ("server", server)];
    if !conn.is_empty() {
        pairs.push(("connection_type", conn));
    }
    pairs.extend(extra);
    counter(s, &pairs, n);
}

const SERVER: &str = "SPAN_KIND_SERVER";
const CLIENT: &str = "SPAN_KIND_CLIENT";
const UNSET: &str = "STATUS_CODE_UNSET";
const ERROR: &str = "STATUS_CODE_ERROR";
const WEIRD: &str = "we\"ird\\svc";

/// Derived series with known counts over the window:
/// * frontend: 90 ok + 10 failed server spans, latency buckets 50 ≤ 0.1s, 80 ≤ 0.25s,
///   100 ≤ 1s; 100 client spans (not requests);
/// * checkout: 40 ok + 20 failed server spans (no latency buckets), 40 client spans;
/// * payments-worker: 30 consumer spans with status OK; batch: 5 internal spans only;
/// * edges: frontend→checkout 60 (20 failed, server p95 from 60 ≤ 0.5s), checkout→postgresql
///   (database) 40 (4 failed, client-side latency only: 40 ≤ 0.01s), user→frontend
///   (virtual_node) 100 (10 failed), frontend→old 5→5 (no requests in the window).
pub(crate) fn derived() -> MemQuerier {
    let mut s = BTreeMap::new();
    calls(&mut s, "frontend", "GET /checkout", SERVER, UNSET, 90.0);
    calls(&mut s, "frontend", "GET /checkout", SERVER, ERROR, 10.0);
    for (le, unset, error) in [
        ("0.1", 45.0, 5.0),
        ("0.25", 72.0, 8.0),
        ("1", 90.0, 10.0),
        ("+Inf", 90.0, 10.0),
    ] {
        bucket(
            &mut s,
            "frontend",
            "GET /checkout",
            SERVER,
            UNSET,
            le,
            unset,
        );
        bucket(
            &mut s,
            "frontend",
            "GET /checkout",
            SERVER,
            ERROR,
            le,
            error,
        );
    }
    calls(&mut s, "frontend", "checkout", CLIENT, UNSET, 100.0);
    calls(&mut s, "checkout", "POST /pay", SERVER, UNSET, 40.0);
    calls(&mut s, "checkout", "POST /pay", SERVER, ERROR, 20.0);
    calls(&mut s, "checkout", "SELECT", CLIENT, UNSET, 40.0);
    calls(
        &mut s,
        "payments-worker",
        "process",
        "SPAN_KIND_CONSUMER",
        "STATUS_CODE_OK",
        30.0,
    );
    calls(&mut s, "batch", "cron", "SPAN_KIND_INTERNAL", UNSET, 5.0);
    calls(&mut s, WEIRD, "op", SERVER, UNSET, 6.0);
    let (total, failed) = (
        "traces_service_graph_request_total",
        "traces_service_graph_request_failed_total",
    );
    let server_b = "traces_service_graph_request_server_seconds_bucket";
    let client_b = "traces_service_graph_request_client_seconds_bucket";
    edge(&mut s, total, "frontend", "checkout", "", None, 60.0);
    edge(&mut s, failed, "frontend", "checkout", "", None, 20.0);
    edge(
        &mut s,
        server_b,
        "frontend",
        "checkout",
        "",
        Some(("le", "0.5")),
        60.0,
    );
    edge(
        &mut s,
        server_b,
        "frontend",
        "checkout",
        "",
        Some(("le", "+Inf")),
        60.0,
    );
    edge(
        &mut s,
        total,
        "checkout",
        "postgresql",
        "database",
        None,
        40.0,
    );
    edge(
        &mut s,
        failed,
        "checkout",
        "postgresql",
        "database",
        None,
        4.0,
    );
    edge(
        &mut s,
        client_b,
        "checkout",
        "postgresql",
        "database",
        Some(("le", "0.01")),
        40.0,
    );
    edge(
        &mut s,
        client_b,
        "checkout",
        "postgresql",
        "database",
        Some(("le", "+Inf")),
        40.0,
    );
    edge(
        &mut s,
        total,
        "user",
        "frontend",
        "virtual_node",
        None,
        100.0,
    );
    edge(
        &mut s,
        failed,
        "user",
        "frontend",
        "virtual_node",
        None,
        10.0,
    );
    ramp(
        &mut s,
        &[
            ("__name__", total),
            ("client", "frontend"),
            ("server", "old"),
        ],
        5.0,
        5.0,
    );
    MemQuerier {
        series: s,
        metadata: Vec::new(),
    }
}

fn app_with(spans: Vec<StoredSpan>, metrics: MemQuerier) -> axum::Router {
    traces_router(
        Arc::new(FakeTraces { spans }),
        Arc::new(metrics),
        None,
        ApiOptions::default(),
    )
}

async fn get(uri: &str) -> (StatusCode, String) {
    send_get(app_with(spans(), derived()), uri).await
}

/// GETs `uri`, expects 200 and returns the parsed body.
async fn get_json(uri: &str) -> Value {
    let (status, body) = get(uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{uri}: {e}: {body}"))
}

/// GETs `uri`, expects a 400 bad_data naming `param` and containing `needle`.
async fn assert_bad(uri: &str, param: &str, needle: &str) {
    let (status, body) = get(uri).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
    let v: Value = serde_json::from_str(&body).expect("error JSON");
    assert_eq!(v["status"], "error", "{body}");
    assert_eq!(v["errorType"], "bad_data", "{body}");
    let msg = v["error"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with(&format!("invalid parameter \"{param}\"")),
        "{uri}: {msg}"
    );
    assert!(msg.contains(needle), "{uri}: {msg}");
}

// ---- /api/v1/traces/{id} ----

#[tokio::test]
async fn trace_by_id_has_every_span_field() {
    let v = get_json(&format!("/api/v1/traces/{TRACE_A}")).await;
    assert_eq!(v["status"], "success");
    let t = &v["data"];
    assert_eq!(t["traceId"], TRACE_A);
    assert_eq!(t["rootService"], "frontend");
    assert_eq!(t["rootOperation"], "GET /checkout");
    assert_eq!(t["startTimeUnixNano"], "1700000001000000000");
    assert_eq!(t["endTimeUnixNano"], "1700000001100000000");
    assert_eq!(t["durationNanos"], 100_000_000);
    assert_eq!(t["spanCount"], 3);
    assert_eq!(t["errorCount"], 1);
    assert_eq!(t["services"], json!(["checkout", "frontend"]));
    let spans = t["spans"].as_array().expect("spans");
    assert_eq!(spans.len(), 3);
    // ordered by start; the root has a null parent
    assert_eq!(spans[0]["spanId"], "b7ad6b7169203331");
    assert_eq!(spans[0]["parentSpanId"], Value::Null);
    assert_eq!(spans[0]["kind"], "server");
    assert_eq!(
        spans[0]["scope"],
        json!({"name": "io.opentelemetry.flask", "version": "1.2.0"})
    );
    assert_eq!(
        spans[0]["resourceAttributes"],
        json!({"service.name": "frontend", "host.name": "web-1"})
    );
    assert_eq!(spans[2]["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(spans[2]["kind"], "client");
    assert_eq!(
        spans[1],
        json!({
            "traceId": TRACE_A,
            "spanId": "00f067aa0ba902b7",
            "parentSpanId": "b7ad6b7169203331",
            "traceState": "congo=t61rcWkgMzE",
            "service": "checkout",
            "name": "POST /pay",
            "kind": "server",
            "startTimeUnixNano": "1700000001010000000",
            "endTimeUnixNano": "1700000001060000000",
            "durationNanos": 50_000_000,
            "status": {"code": "error", "message": "card declined"},
            "attributes": {
                "http.status_code": 500,
                "retry": true,
                "ratio": 0.5,
                "big": 1_i64 << 60,
                "raw": "0102ff",
                "list": [1, "a"]
            },
            "events": [{
                "timeUnixNano": "1700000001020001500",
                "name": "exception",
                "attributes": {"exception.type": "ValueError"}
            }],
            "links": [{
                "traceId": TRACE_B,
                "spanId": "0102030405060708",
                "traceState": "k=v",
                "attributes": {"link.kind": "retry-of"}
            }],
            "resourceAttributes": {"service.name": "checkout", "k8s.pod.name": "checkout-1"},
            "scope": {"name": "", "version": ""},
            "droppedAttributesCount": 2,
            "droppedEventsCount": 0,
            "droppedLinksCount": 0
        })
    );
}

#[tokio::test]
async fn attributes_keep_the_order_they_were_sent_in() {
    let (_, body) = get(&format!("/api/v1/traces/{TRACE_A}")).await;
    let order = [
        "\"http.status_code\":500",
        "\"retry\"",
        "\"ratio\"",
        "\"big\"",
        "\"raw\"",
        "\"list\"",
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|k| body.find(k).unwrap_or_else(|| panic!("{k} in {body}")))
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}");
}

#[tokio::test]
async fn a_trace_without_its_root_names_the_earliest_span() {
    let v = get_json(&format!("/api/v1/traces/{TRACE_C}")).await;
    assert_eq!(v["data"]["rootService"], "checkout");
    assert_eq!(v["data"]["rootOperation"], "compute");
    assert_eq!(v["data"]["spans"][0]["parentSpanId"], "4444444444444444");
}

#[tokio::test]
async fn unknown_trace_is_404_and_malformed_ids_are_400() {
    let (status, body) = get("/api/v1/traces/1af7651916cd43dd8448eb211c80319c").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        r#"{"status":"error","errorType":"not_found","error":"trace 1af7651916cd43dd8448eb211c80319c not found"}"#
    );
    assert_bad(
        "/api/v1/traces/abc",
        "trace_id",
        "must be 32 hex characters, got 3",
    )
    .await;
    assert_bad(
        "/api/v1/traces/0af7651916cd43dd8448eb211c80319z",
        "trace_id",
        "is not hex: 'z'",
    )
    .await;
    assert_bad(
        "/api/v1/traces/00000000000000000000000000000000",
        "trace_id",
        "must not be all zeros",
    )
    .await;
}

// ---- /api/v1/traces ----

async fn search_ids(query: &str) -> Vec<String> {
    let v = get_json(&format!("/api/v1/traces?{query}")).await;
    v["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|t| t["traceId"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn search_answers_summaries_newest_first() {
    let v = get_json(&format!("/api/v1/traces?{WINDOW}")).await;
    let data = v["data"].as_array().expect("data");
    let ids: Vec<&str> = data.iter().filter_map(|t| t["traceId"].as_str()).collect();
    assert_eq!(ids, [TRACE_D, TRACE_C, TRACE_B, TRACE_A]);
    assert_eq!(
        data[3],
        json!({
            "traceId": TRACE_A,
            "rootService": "frontend",
            "rootOperation": "GET /checkout",
            "startTimeUnixNano": "1700000001000000000",
            "durationNanos": 100_000_000,
            "spanCount": 3,
            "errorCount": 1,
            "services": ["checkout", "frontend"]
        })
    );
}

#[tokio::test]
async fn search_filters() {
    let w = WINDOW;
    assert_eq!(
        search_ids(&format!("{w}&service=checkout")).await,
        [TRACE_C, TRACE_A]
    );
    assert_eq!(
        search_ids(&format!("{w}&operation=GET%20%2F")).await,
        [TRACE_B]
    );
    assert_eq!(search_ids(&format!("{w}&kind=client")).await, [TRACE_A]);
    assert_eq!(
        search_ids(&format!("{w}&kind=SPAN_KIND_CLIENT")).await,
        [TRACE_A]
    );
    assert_eq!(
        search_ids(&format!("{w}&min_duration=60ms")).await,
        [TRACE_D, TRACE_A]
    );
    assert_eq!(
        search_ids(&format!("{w}&min_duration=0.06")).await,
        [TRACE_D, TRACE_A]
    );
    assert_eq!(
        search_ids(&format!("{w}&max_duration=5ms")).await,
        [TRACE_C]
    );
    assert_eq!(
        search_ids(&format!("{w}&min_duration=1.5s&max_duration=2s")).await,
        [TRACE_D]
    );
    assert_eq!(search_ids(&format!("{w}&error=true")).await, [TRACE_A]);
    assert_eq!(
        search_ids(&format!("{w}&error=false")).await,
        [TRACE_D, TRACE_C, TRACE_B]
    );
    // tags: span attributes, then resource attributes; all on one span
    assert_eq!(
        search_ids(&format!("{w}&tags=http.status_code%3D500")).await,
        [TRACE_A]
    );
    assert_eq!(
        search_ids(&format!("{w}&tags=host.name%3Dweb-1")).await,
        [TRACE_B, TRACE_A]
    );
    assert_eq!(
        search_ids(&format!("{w}&tags=host.name%3Dweb-1%20http.method%3DGET")).await,
        [TRACE_A]
    );
    assert_eq!(
        search_ids(&format!(
            "{w}&tags=host.name%3Dweb-1&tags=http.method%3DGET"
        ))
        .await,
        [TRACE_A]
    );
    assert_eq!(
        search_ids(&format!("{w}&tags=k8s.pod.name%3D%22checkout-1%22")).await,
        [TRACE_C, TRACE_A]
    );
    // conditions hold on one span: no checkout span is a server span named GET /
    assert!(
        search_ids(&format!("{w}&service=checkout&operation=GET%20%2F"))
            .await
            .is_empty()
    );
    assert_eq!(
        search_ids("start=1700000250&end=1700000350").await,
        [TRACE_C]
    );
    assert_eq!(
        search_ids("start=2023-11-14T22:17:30Z&end=2023-11-14T22:19:10Z").await,
        [TRACE_C]
    );
    assert_eq!(
        search_ids(&format!("{w}&limit=2")).await,
        [TRACE_D, TRACE_C]
    );
}

#[tokio::test]
async fn search_defaults_to_the_last_hour_and_twenty_traces() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64;
    let fresh = resource("fresh", &[]);
    let mut all = spans();
    for i in 0..25u64 {
        let id = format!("{:032x}", 0x100 + i);
        all.push(StoredSpan {
            resource: fresh.clone(),
            span: timed(
                span(&id, "6666666666666666", None, "op", SpanKind::Server),
                now - (10 + i) * 1_000 * MS,
                MS,
            ),
        });
    }
    let (status, body) = send_get(app_with(all, derived()), "/api/v1/traces").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    let data = v["data"].as_array().expect("data");
    // the fixtures of 2023 are outside the last hour; 20 of the 25 fresh traces, newest first
    assert_eq!(data.len(), 20);
    assert!(data.iter().all(|t| t["rootService"] == "fresh"), "{body}");
    assert_eq!(data[0]["traceId"], format!("{:032x}", 0x100));
}

#[tokio::test]
async fn search_refuses_bad_parameters_by_name() {
    let w = WINDOW;
    assert_bad(
        &format!("{}&kind=sideways", "/api/v1/traces?x=1"),
        "kind",
        "unknown span kind \"sideways\"",
    )
    .await;
    assert_bad(
        "/api/v1/traces?min_duration=fast",
        "min_duration",
        "cannot parse \"fast\"",
    )
    .await;
    assert_bad(
        "/api/v1/traces?max_duration=-1s",
        "max_duration",
        "cannot parse \"-1s\"",
    )
    .await;
    assert_bad(
        "/api/v1/traces?min_duration=2s&max_duration=1s",
        "max_duration",
        "must not be below min_duration",
    )
    .await;
    assert_bad("/api/v1/traces?error=maybe", "error", "as a boolean").await;
    assert_bad("/api/v1/traces?tags=a", "tags", "tag \"a\" has no value").await;
    assert_bad("/api/v1/traces?tags=a%3D%22b", "tags", "unterminated").await;
    assert_bad(
        "/api/v1/traces?start=yesterday",
        "start",
        "cannot parse \"yesterday\"",
    )
    .await;
    assert_bad(
        "/api/v1/traces?end=tomorrow",
        "end",
        "cannot parse \"tomorrow\"",
    )
    .await;
    assert_bad(
        "/api/v1/traces?start=20&end=10",
        "end",
        "must not be before start",
    )
    .await;
    assert_bad(
        &format!("/api/v1/traces?{w}&limit=0"),
        "limit",
        "from 1 to 5000",
    )
    .await;
    assert_bad(&format!("/api/v1/traces?{w}&limit=ten"), "limit", "\"ten\"").await;
    assert_bad(
        &format!("/api/v1/traces?{w}&limit=5001"),
        "limit",
        "from 1 to 5000",
    )
    .await;
}

// ---- /api/v1/services, operations, service graph ----

/// Prometheus's interpolation inside a bucket, to state expected quantiles exactly.
fn interpolate(lower: f64, upper: f64, rank_in_bucket: f64, bucket_count: f64) -> f64 {
    lower + (upper - lower) * (rank_in_bucket / bucket_count)
}

/// JSON number text as the API writes it (serde_json's shortest round-trip form). Numbers
/// are compared as text: serde_json's default parser may be an ULP off, text is exact.
fn num(v: Option<f64>) -> String {
    match v {
        Some(v) => serde_json::to_string(&v).expect("a finite number"),
        None => "null".into(),
    }
}

/// `"name":value` pairs in the API's field order.
fn fields(pairs: &[(&str, Option<f64>)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("\"{k}\":{}", num(*v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The RED fields of a service or operation, in the API's order.
fn red_fields(
    requests: f64,
    errors: f64,
    secs: f64,
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
) -> String {
    let success = (requests > 0.0).then(|| 1.0 - errors / requests);
    fields(&[
        ("requestRate", Some(requests / secs)),
        ("errorRate", Some(errors / secs)),
        ("successRate", success),
        ("requests", Some(requests)),
        ("errors", Some(errors)),
        ("p50", p50),
        ("p95", p95),
        ("p99", p99),
    ])
}

/// The fields of a graph node or edge: no p50/p99.
fn graph_fields(requests: f64, errors: f64, secs: f64, p95: Option<f64>) -> String {
    let success = (requests > 0.0).then(|| 1.0 - errors / requests);
    fields(&[
        ("requestRate", Some(requests / secs)),
        ("errorRate", Some(errors / secs)),
        ("successRate", success),
        ("requests", Some(requests)),
        ("errors", Some(errors)),
        ("p95", p95),
    ])
}

fn assert_has(body: &str, want: &str) {
    assert!(body.contains(want), "missing\n  {want}\nin\n  {body}");
}

/// p50/p95/p99 of frontend's server spans: 50 of 100 at or below 0.1 s (the 50th is the top
/// of the first bucket), ranks 95 and 99 in (0.25, 1] holding 20.
fn frontend_quantiles() -> (Option<f64>, Option<f64>, Option<f64>) {
    (
        Some(interpolate(0.0, 0.1, 50.0, 50.0)),
        Some(interpolate(0.25, 1.0, 95.0 - 80.0, 20.0)),
        Some(interpolate(0.25, 1.0, 99.0 - 80.0, 20.0)),
    )
}

#[tokio::test]
async fn services_have_rate_success_rate_and_quantiles() {
    let (status, body) = get(&format!("/api/v1/services?{WINDOW}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    let names: Vec<&str> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|s| s["service"].as_str())
        .collect();
    // every service with spans: from the span metrics and from the trace store (lonely)
    assert_eq!(
        names,
        [
            "batch",
            "checkout",
            "frontend",
            "lonely",
            "payments-worker",
            WEIRD
        ]
    );
    // 90 + 10 server spans over 600 s; the 100 client spans are not requests
    let (p50, p95, p99) = frontend_quantiles();
    assert_has(
        &body,
        &format!(
            r#"{{"service":"frontend",{}}}"#,
            red_fields(100.0, 10.0, 600.0, p50, p95, p99)
        ),
    );
    assert_has(
        &body,
        &format!(
            r#"{{"service":"checkout",{}}}"#,
            red_fields(60.0, 20.0, 600.0, None, None, None)
        ),
    );
    // consumer spans are requests too
    assert_has(
        &body,
        &format!(
            r#"{{"service":"payments-worker",{}}}"#,
            red_fields(30.0, 0.0, 600.0, None, None, None)
        ),
    );
    // internal spans only (batch), or spans without derived series (lonely): listed, no
    // requests, no success rate
    for quiet in ["batch", "lonely"] {
        assert_has(
            &body,
            &format!(
                r#"{{"service":"{quiet}",{}}}"#,
                red_fields(0.0, 0.0, 600.0, None, None, None)
            ),
        );
    }
    assert_has(&body, r#""successRate":null,"requests":0.0"#);
}

#[tokio::test]
async fn services_agree_with_promql_over_the_same_series() {
    // what a user would type into Grafana gives the same success rate
    let metrics = Arc::new(derived());
    let api = crate::router(metrics.clone(), ApiOptions::default());
    let q = "1 - sum(increase(traces_spanmetrics_calls_total{service=\"checkout\",span_kind=~\"SPAN_KIND_SERVER|SPAN_KIND_CONSUMER\",status_code=\"STATUS_CODE_ERROR\"}[10m])) / sum(increase(traces_spanmetrics_calls_total{service=\"checkout\",span_kind=~\"SPAN_KIND_SERVER|SPAN_KIND_CONSUMER\"}[10m]))";
    let uri = format!(
        "/api/v1/query?time=1700000600&query={}",
        form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
    );
    let (status, body) = send_get(api, &uri).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let promql: Value = serde_json::from_str(&body).expect("JSON");
    // Prometheus writes values as strings: parsed by Rust, exactly
    let promql_rate: f64 = promql["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("a value");
    let (_, body) = get(&format!("/api/v1/services?{WINDOW}")).await;
    assert_has(
        &body,
        &format!(r#""successRate":{}"#, num(Some(promql_rate))),
    );
    assert_has(
        &body,
        &format!(r#""service":"checkout","requestRate":{}"#, num(Some(0.1))),
    );
}

#[tokio::test]
async fn an_empty_store_lists_no_services() {
    let app = app_with(Vec::new(), MemQuerier::default());
    let (status, body) = send_get(app, &format!("/api/v1/services?{WINDOW}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"status":"success","data":[]}"#);
}

#[tokio::test]
async fn operations_of_a_service_by_name_and_kind() {
    let (status, body) = get(&format!("/api/v1/services/checkout/operations?{WINDOW}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // by name then kind; every kind counts per operation, client spans too; compute is in
    // the trace store only: listed with no calls
    let want = [
        format!(
            r#"{{"operation":"POST /pay","kind":"server",{}}}"#,
            red_fields(60.0, 20.0, 600.0, None, None, None)
        ),
        format!(
            r#"{{"operation":"SELECT","kind":"client",{}}}"#,
            red_fields(40.0, 0.0, 600.0, None, None, None)
        ),
        format!(
            r#"{{"operation":"compute","kind":"internal",{}}}"#,
            red_fields(0.0, 0.0, 600.0, None, None, None)
        ),
    ];
    assert_eq!(
        body,
        format!(r#"{{"status":"success","data":[{}]}}"#, want.join(","))
    );
    let (_, body) = get(&format!("/api/v1/services/frontend/operations?{WINDOW}")).await;
    let (p50, p95, p99) = frontend_quantiles();
    assert_has(
        &body,
        &format!(
            r#"{{"operation":"GET /checkout","kind":"server",{}}}"#,
            red_fields(100.0, 10.0, 600.0, p50, p95, p99)
        ),
    );
    assert_has(
        &body,
        &format!(
            r#"{{"operation":"checkout","kind":"client",{}}}"#,
            red_fields(100.0, 0.0, 600.0, None, None, None)
        ),
    );
}

#[tokio::test]
async fn operations_of_a_service_with_quotes_in_its_name() {
    let v = get_json(&format!(
        "/api/v1/services/we%22ird%5Csvc/operations?{WINDOW}"
    ))
    .await;
    assert_eq!(v["data"][0]["operation"], "op");
    assert_eq!(v["data"][0]["requests"], json!(6.0));
    let v = get_json(&format!("/api/v1/services/nobody/operations?{WINDOW}")).await;
    assert_eq!(v["data"], json!([]));
}

#[tokio::test]
async fn service_graph_nodes_and_edges() {
    let (status, body) = get(&format!("/api/v1/service-graph?{WINDOW}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // the edge with no requests in the window (frontend→old) is left out
    let edges = [
        // no server side: the client's latency
        format!(
            r#"{{"source":"checkout","target":"postgresql","connectionType":"database",{}}}"#,
            graph_fields(
                40.0,
                4.0,
                600.0,
                Some(interpolate(0.0, 0.01, 0.95 * 40.0, 40.0))
            )
        ),
        format!(
            r#"{{"source":"frontend","target":"checkout","connectionType":"",{}}}"#,
            graph_fields(
                60.0,
                20.0,
                600.0,
                Some(interpolate(0.0, 0.5, 0.95 * 60.0, 60.0))
            )
        ),
        format!(
            r#"{{"source":"user","target":"frontend","connectionType":"virtual_node",{}}}"#,
            graph_fields(100.0, 10.0, 600.0, None)
        ),
    ];
    assert_has(&body, &format!(r#""edges":[{}]"#, edges.join(",")));
    let v: Value = serde_json::from_str(&body).expect("JSON");
    let ids: Vec<&str> = v["data"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "batch",
            "checkout",
            "frontend",
            "lonely",
            "payments-worker",
            "postgresql",
            "user",
            WEIRD
        ]
    );
    // a real service's numbers are its own requests, as /api/v1/services gives them
    let (_, p95, _) = frontend_quantiles();
    assert_has(
        &body,
        &format!(
            r#"{{"id":"frontend","virtual":false,{}}}"#,
            graph_fields(100.0, 10.0, 600.0, p95)
        ),
    );
    // a virtual node's are those of the edges into it
    assert_has(
        &body,
        &format!(
            r#"{{"id":"postgresql","virtual":true,{}}}"#,
            graph_fields(
                40.0,
                4.0,
                600.0,
                Some(interpolate(0.0, 0.01, 0.95 * 40.0, 40.0))
            )
        ),
    );
    assert_has(
        &body,
        &format!(
            r#"{{"id":"user","virtual":true,{}}}"#,
            graph_fields(0.0, 0.0, 600.0, None)
        ),
    );
    for real in ["checkout", "lonely", "batch"] {
        assert_has(&body, &format!(r#"{{"id":"{real}","virtual":false,"#));
    }
}

#[tokio::test]
async fn red_endpoints_refuse_bad_windows() {
    for path in [
        "/api/v1/services",
        "/api/v1/services/checkout/operations",
        "/api/v1/service-graph",
    ] {
        assert_bad(&format!("{path}?start=x"), "start", "cannot parse \"x\"").await;
        assert_bad(&format!("{path}?end=x"), "end", "cannot parse \"x\"").await;
        assert_bad(
            &format!("{path}?start=20&end=10"),
            "end",
            "must be after start",
        )
        .await;
        assert_bad(
            &format!("{path}?start=10&end=10"),
            "end",
            "must be after start",
        )
        .await;
    }
}

#[tokio::test]
async fn merges_beside_the_prometheus_api() {
    let metrics = Arc::new(derived());
    let app = crate::router(metrics.clone(), ApiOptions::default()).merge(traces_router(
        Arc::new(FakeTraces { spans: spans() }),
        metrics,
        None,
        ApiOptions::default(),
    ));
    let (status, _) = send_get(app.clone(), "/api/v1/labels").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send_get(app, &format!("/api/v1/traces/{TRACE_A}")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn extreme_windows_are_answered_not_panicked_on() {
    for uri in [
        "/api/v1/services?start=-9000000000000000&end=9000000000000000",
        "/api/v1/service-graph?start=-9000000000000000&end=9000000000000000",
        "/api/v1/traces?start=-9000000000000000&end=9000000000000000",
        "/api/traces?service=a&start=-9223372036854775808&end=9223372036854775807",
        "/api/traces?service=a&end=-9223372036854775808",
        "/api/dependencies?endTs=-9223372036854775808&lookback=9223372036854775807",
        "/api/dependencies?endTs=9223372036854775807&lookback=9223372036854775807",
    ] {
        let (status, body) = get(uri).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
            "{uri}: {status} {body}"
        );
    }
}

// ---- exact counts over irregular samples ----

/// A series from `(seconds after T0, value)` pairs (`None`: a staleness marker).
fn raw(
    s: &mut BTreeMap<Labels, Vec<Sample>>,
    pairs: &[(&str, &str)],
    samples: &[(f64, Option<f64>)],
) {
    let t0 = T0_SECS * 1000;
    s.insert(
        Labels::from_pairs(pairs.iter().copied()),
        samples
            .iter()
            .map(|&(secs, v)| {
                Sample::new(
                    t0 + (secs * 1000.0).round() as i64,
                    v.unwrap_or_else(store::model::stale_nan),
                )
            })
            .collect(),
    );
}

fn raw_calls(
    s: &mut BTreeMap<Labels, Vec<Sample>>,
    svc: &str,
    status: &str,
    samples: &[(f64, Option<f64>)],
) {
    raw(
        s,
        &[
            ("__name__", "traces_spanmetrics_calls_total"),
            ("service", svc),
            ("span_name", "op"),
            ("span_kind", SERVER),
            ("status_code", status),
        ],
        samples,
    );
}

/// Series the way the deriver writes them (irregular flush times, heartbeats, zeros before a
/// new series, the old value again before a series comes back from stale), with known
/// counts over [`WINDOW`] (T0 to T0 + 600 s):
/// * `irregular`: 3 ok + 1 error, the last two samples 1 ms apart (PromQL's `increase`
///   extrapolates those to about twice their difference);
/// * `mid`: created at 200 s (zeros first), 5 ok; an error series someone else created at
///   250 s without zeros: it did not exist at the start, so all of its 1 counts;
/// * `broken`: errors only, 3;
/// * `back`: stale since 25 minutes before the window, back at 300 s: 2 (not its 52);
/// * `slow`: 10 ok, of which 8 at most 1 s and none at most 0.1 s in the window (the
///   cumulative buckets say 100 at most 0.1 s: their counts before the window);
/// * edge a → b: 3 requests, 1 failed, the edge revived in the window.
fn irregular() -> MemQuerier {
    let mut s = BTreeMap::new();
    raw_calls(
        &mut s,
        "irregular",
        UNSET,
        &[(-10.0, Some(5.0)), (300.0, Some(6.0)), (300.001, Some(8.0))],
    );
    raw_calls(
        &mut s,
        "irregular",
        ERROR,
        &[(-10.0, Some(1.0)), (300.001, Some(2.0))],
    );
    raw_calls(
        &mut s,
        "mid",
        UNSET,
        &[
            (199.999, Some(0.0)),
            (200.0, Some(2.0)),
            (215.0, Some(2.0)),
            (400.0, Some(5.0)),
        ],
    );
    raw_calls(
        &mut s,
        "mid",
        ERROR,
        &[(250.0, Some(1.0)), (265.0, Some(1.0))],
    );
    raw_calls(
        &mut s,
        "broken",
        ERROR,
        &[(-1.0, Some(10.0)), (100.0, Some(13.0)), (115.0, Some(13.0))],
    );
    raw_calls(
        &mut s,
        "back",
        UNSET,
        &[
            (-2400.0, Some(50.0)),
            (-1500.0, None),
            (299.999, Some(50.0)),
            (300.0, Some(52.0)),
        ],
    );
    raw_calls(
        &mut s,
        "slow",
        UNSET,
        &[(-1.0, Some(100.0)), (300.0, Some(110.0))],
    );
    for (le, before, after) in [
        ("0.1", 100.0, 100.0),
        ("1", 100.0, 108.0),
        ("+Inf", 100.0, 110.0),
    ] {
        raw(
            &mut s,
            &[
                ("__name__", "traces_spanmetrics_latency_bucket"),
                ("service", "slow"),
                ("span_name", "op"),
                ("span_kind", SERVER),
                ("status_code", UNSET),
                ("le", le),
            ],
            &[(-1.0, Some(before)), (300.0, Some(after))],
        );
    }
    let edge = |name| vec![("__name__", name), ("client", "a"), ("server", "b")];
    raw(
        &mut s,
        &edge("traces_service_graph_request_total"),
        &[
            (-3000.0, Some(10.0)),
            (-2000.0, None),
            (0.999, Some(10.0)),
            (1.0, Some(11.0)),
            (1.001, Some(13.0)),
        ],
    );
    raw(
        &mut s,
        &edge("traces_service_graph_request_failed_total"),
        &[
            (-3000.0, Some(2.0)),
            (-2000.0, None),
            (0.999, Some(2.0)),
            (1.001, Some(3.0)),
        ],
    );
    MemQuerier {
        series: s,
        metadata: Vec::new(),
    }
}

async fn get_irregular(uri: &str) -> String {
    let (status, body) = send_get(app_with(Vec::new(), irregular()), uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    body
}

#[tokio::test]
async fn services_count_exactly_over_irregular_samples() {
    let body = get_irregular(&format!("/api/v1/services?{WINDOW}")).await;
    let service = |name: &str, requests: f64, errors: f64| {
        format!(
            r#"{{"service":"{name}",{}}}"#,
            red_fields(requests, errors, 600.0, None, None, None)
        )
    };
    assert_has(&body, &service("irregular", 4.0, 1.0));
    assert_has(&body, r#""successRate":0.75,"requests":4.0,"errors":1.0"#);
    assert_has(&body, &service("mid", 6.0, 1.0));
    assert_has(&body, &service("broken", 3.0, 3.0));
    assert_has(&body, r#""successRate":0.0,"requests":3.0,"errors":3.0"#);
    assert_has(&body, &service("back", 2.0, 0.0));
    // quantiles from the window's bucket counts: 0 at most 0.1 s, 8 at most 1 s, 10 in all
    assert_has(
        &body,
        &format!(
            r#"{{"service":"slow",{}}}"#,
            red_fields(
                10.0,
                0.0,
                600.0,
                Some(interpolate(0.1, 1.0, 5.0, 8.0)),
                Some(1.0),
                Some(1.0)
            )
        ),
    );
}

#[tokio::test]
async fn a_window_with_no_samples_at_its_start_counts_from_zero() {
    // a day back: no series has a value at the start, and none existed before it
    let start = T0_SECS - 86_400;
    let body = get_irregular(&format!(
        "/api/v1/services?start={start}&end={}",
        T0_SECS + 600
    ))
    .await;
    let secs = 86_400.0 + 600.0;
    let service = |name: &str, requests: f64, errors: f64| {
        format!(
            r#"{{"service":"{name}",{}}}"#,
            red_fields(requests, errors, secs, None, None, None)
        )
    };
    // 8 ok + 2 errors: each series' whole value
    assert_has(&body, &service("irregular", 10.0, 2.0));
    assert_has(&body, &service("broken", 13.0, 13.0));
    assert_has(&body, &service("back", 52.0, 0.0));
    // a window ending before anything happened lists nobody
    let body = get_irregular(&format!(
        "/api/v1/services?start={}&end={}",
        T0_SECS - 7200,
        T0_SECS - 3600
    ))
    .await;
    assert_eq!(body, r#"{"status":"success","data":[]}"#);
}

#[tokio::test]
async fn operations_graph_and_dependencies_count_exactly() {
    let body = get_irregular(&format!("/api/v1/services/irregular/operations?{WINDOW}")).await;
    assert_has(
        &body,
        &format!(
            r#"{{"operation":"op","kind":"server",{}}}"#,
            red_fields(4.0, 1.0, 600.0, None, None, None)
        ),
    );
    let body = get_irregular(&format!("/api/v1/service-graph?{WINDOW}")).await;
    assert_has(
        &body,
        &format!(
            r#"{{"source":"a","target":"b","connectionType":"",{}}}"#,
            graph_fields(3.0, 1.0, 600.0, None)
        ),
    );
    let (status, body) = send_get(
        app_with(Vec::new(), irregular()),
        "/api/dependencies?endTs=1700000600000&lookback=600000",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        v,
        jaeger_ok(json!([{"parent": "a", "child": "b", "callCount": 3}]), 0)
    );
}

// ---- Jaeger ----

fn jaeger_ok(data: Value, total: usize) -> Value {
    json!({"data": data, "total": total, "limit": 0, "offset": 0, "errors": null})
}

async fn jaeger_error(uri: &str, code: u16, needle: &str) {
    let (status, body) = get(uri).await;
    assert_eq!(status.as_u16(), code, "{uri}: {body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["data"], Value::Null, "{body}");
    assert_eq!(v["total"], 0);
    assert_eq!(v["limit"], 0);
    assert_eq!(v["offset"], 0);
    assert_eq!(v["errors"][0]["code"], code, "{body}");
    let msg = v["errors"][0]["msg"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "{uri}: {msg}");
}

#[tokio::test]
async fn jaeger_services_and_operations() {
    assert_eq!(
        get_json("/api/services").await,
        jaeger_ok(json!(["checkout", "frontend", "lonely"]), 3)
    );
    assert_eq!(
        get_json("/api/services/checkout/operations").await,
        jaeger_ok(json!(["POST /pay", "SELECT", "compute"]), 3)
    );
    assert_eq!(
        get_json("/api/operations?service=checkout").await,
        jaeger_ok(
            json!([
                {"name": "POST /pay", "spanKind": "server"},
                {"name": "SELECT", "spanKind": "client"},
                {"name": "compute", "spanKind": "internal"},
            ]),
            3
        )
    );
    assert_eq!(
        get_json("/api/operations?service=checkout&spanKind=server").await,
        jaeger_ok(json!([{"name": "POST /pay", "spanKind": "server"}]), 1)
    );
    jaeger_error("/api/operations", 400, "parameter 'service' is required").await;
    jaeger_error(
        "/api/operations?service=checkout&spanKind=upward",
        400,
        "unable to parse param 'spanKind'",
    )
    .await;
}

#[tokio::test]
async fn jaeger_trace_shape_field_by_field() {
    let v = get_json(&format!("/api/traces/{TRACE_A}")).await;
    assert_eq!(v["total"], 1);
    assert_eq!(v["limit"], 0);
    assert_eq!(v["offset"], 0);
    assert_eq!(v["errors"], Value::Null);
    let t = &v["data"][0];
    assert_eq!(t["traceID"], TRACE_A);
    assert_eq!(t["warnings"], Value::Null);
    assert_eq!(
        t["processes"],
        json!({
            "p1": {"serviceName": "frontend", "tags": [{"key": "host.name", "type": "string", "value": "web-1"}]},
            "p2": {"serviceName": "checkout", "tags": [{"key": "k8s.pod.name", "type": "string", "value": "checkout-1"}]},
        })
    );
    let spans = t["spans"].as_array().expect("spans");
    assert_eq!(spans.len(), 3);
    assert_eq!(
        spans[0],
        json!({
            "traceID": TRACE_A,
            "spanID": "b7ad6b7169203331",
            "flags": 1,
            "operationName": "GET /checkout",
            "references": [],
            "startTime": 1_700_000_001_000_000_u64,
            "duration": 100_000,
            "tags": [
                {"key": "otel.scope.name", "type": "string", "value": "io.opentelemetry.flask"},
                {"key": "otel.scope.version", "type": "string", "value": "1.2.0"},
                {"key": "http.method", "type": "string", "value": "GET"},
                {"key": "http.status_code", "type": "int64", "value": 200},
                {"key": "span.kind", "type": "string", "value": "server"},
            ],
            "logs": [],
            "processID": "p1",
            "warnings": null,
        })
    );
    assert_eq!(
        spans[1],
        json!({
            "traceID": TRACE_A,
            "spanID": "00f067aa0ba902b7",
            "flags": 1,
            "operationName": "POST /pay",
            "references": [
                {"refType": "CHILD_OF", "traceID": TRACE_A, "spanID": "b7ad6b7169203331"},
                {"refType": "FOLLOWS_FROM", "traceID": TRACE_B, "spanID": "0102030405060708"},
            ],
            "startTime": 1_700_000_001_010_000_u64,
            "duration": 50_000,
            "tags": [
                {"key": "http.status_code", "type": "int64", "value": 500},
                {"key": "retry", "type": "bool", "value": true},
                {"key": "ratio", "type": "float64", "value": 0.5},
                {"key": "big", "type": "int64", "value": (1_i64 << 60).to_string()},
                {"key": "raw", "type": "binary", "value": "AQL/"},
                {"key": "list", "type": "string", "value": "[1,\"a\"]"},
                {"key": "span.kind", "type": "string", "value": "server"},
                {"key": "otel.status_code", "type": "string", "value": "ERROR"},
                {"key": "error", "type": "bool", "value": true},
                {"key": "otel.status_description", "type": "string", "value": "card declined"},
                {"key": "w3c.tracestate", "type": "string", "value": "congo=t61rcWkgMzE"},
            ],
            "logs": [{
                "timestamp": 1_700_000_001_020_001_u64,
                "fields": [
                    {"key": "event", "type": "string", "value": "exception"},
                    {"key": "exception.type", "type": "string", "value": "ValueError"},
                ],
            }],
            "processID": "p2",
            "warnings": ["the SDK dropped 2 attributes of this span"],
        })
    );
    // another allocation of an equal resource is the same process
    assert_eq!(spans[2]["processID"], "p2");
    assert_eq!(spans[2]["references"][0]["spanID"], "00f067aa0ba902b7");
}

#[tokio::test]
async fn jaeger_trace_errors() {
    let (status, body) = get("/api/traces/1af7651916cd43dd8448eb211c80319c").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        r#"{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":404,"msg":"trace not found"}]}"#
    );
    jaeger_error("/api/traces/xyz", 400, "unable to parse param 'traceID'").await;
    jaeger_error(
        &format!("/api/traces/{}", "a".repeat(33)),
        400,
        "1 to 32 hex",
    )
    .await;
    jaeger_error("/api/traces/0", 400, "all zeros").await;
    // a short id is left-padded, as Jaeger reads 64-bit ids
    let v = get_json("/api/traces/c0").await;
    assert_eq!(v["data"][0]["traceID"], TRACE_C);
}

#[tokio::test]
async fn jaeger_search_returns_full_traces() {
    let (start, end) = ("1700000000000000", "1700000600000000");
    let ids = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|t| t["traceID"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let v = get_json(&format!(
        "/api/traces?service=frontend&start={start}&end={end}&limit=20&lookback=1h"
    ))
    .await;
    assert_eq!(ids(&v), [TRACE_B, TRACE_A]);
    assert_eq!(v["total"], 0);
    assert_eq!(v["errors"], Value::Null);
    assert_eq!(v["data"][1]["spans"].as_array().map(Vec::len), Some(3));
    let tags = form_urlencoded::byte_serialize(br#"{"http.method":"GET"}"#).collect::<String>();
    let v = get_json(&format!(
        "/api/traces?service=frontend&start={start}&end={end}&tags={tags}"
    ))
    .await;
    assert_eq!(ids(&v), [TRACE_A]);
    let v = get_json(&format!(
        "/api/traces?service=checkout&start={start}&end={end}&tag=db.system:postgresql"
    ))
    .await;
    assert_eq!(ids(&v), [TRACE_A]);
    let v = get_json(&format!(
        "/api/traces?service=checkout&operation=compute&start={start}&end={end}"
    ))
    .await;
    assert_eq!(ids(&v), [TRACE_C]);
    let v = get_json(&format!(
        "/api/traces?service=frontend&start={start}&end={end}&minDuration=50ms&maxDuration=1s"
    ))
    .await;
    assert_eq!(ids(&v), [TRACE_A]);
    let v = get_json(&format!(
        "/api/traces?service=frontend&start={start}&end={end}&limit=1"
    ))
    .await;
    assert_eq!(ids(&v), [TRACE_B]);
    // outside Jaeger's default two days back from now
    let v = get_json("/api/traces?service=frontend").await;
    assert_eq!(ids(&v), Vec::<String>::new());
    // by id, with the missing one reported beside the data
    let missing = "1af7651916cd43dd8448eb211c80319c";
    let v = get_json(&format!("/api/traces?traceID={TRACE_B}&traceID={missing}")).await;
    assert_eq!(ids(&v), [TRACE_B]);
    assert_eq!(
        v["errors"],
        json!([{"msg": "trace not found", "traceID": missing}])
    );
}

#[tokio::test]
async fn jaeger_search_errors() {
    jaeger_error("/api/traces", 400, "parameter 'service' is required").await;
    jaeger_error(
        "/api/traces?service=a&start=x",
        400,
        "unable to parse param 'start'",
    )
    .await;
    jaeger_error(
        "/api/traces?service=a&end=1.5",
        400,
        "unable to parse param 'end'",
    )
    .await;
    jaeger_error(
        "/api/traces?service=a&start=20&end=10",
        400,
        "'end' must not be before 'start'",
    )
    .await;
    jaeger_error(
        "/api/traces?service=a&minDuration=soon",
        400,
        "unable to parse param 'minDuration'",
    )
    .await;
    jaeger_error(
        "/api/traces?service=a&minDuration=2s&maxDuration=1s",
        400,
        "'maxDuration' should be greater than 'minDuration'",
    )
    .await;
    jaeger_error(
        "/api/traces?service=a&limit=-1",
        400,
        "unable to parse param 'limit'",
    )
    .await;
    jaeger_error(
        "/api/traces?service=a&tags=%7Bnope",
        400,
        "malformed 'tags' parameter",
    )
    .await;
    jaeger_error(
        "/api/traces?service=a&tags=%7B%22a%22%3A1%7D",
        400,
        "must be a string",
    )
    .await;
    jaeger_error(
        "/api/traces?service=a&tag=novalue",
        400,
        "malformed 'tag' parameter",
    )
    .await;
    jaeger_error(
        "/api/traces?traceID=zz",
        400,
        "unable to parse param 'traceID'",
    )
    .await;
}

#[tokio::test]
async fn jaeger_dependencies_from_the_service_graph() {
    let v = get_json("/api/dependencies?endTs=1700000600000&lookback=600000").await;
    assert_eq!(
        v,
        jaeger_ok(
            json!([
                {"parent": "checkout", "child": "postgresql", "callCount": 40},
                {"parent": "frontend", "child": "checkout", "callCount": 60},
                {"parent": "user", "child": "frontend", "callCount": 100},
            ]),
            0
        )
    );
    jaeger_error(
        "/api/dependencies?endTs=soon",
        400,
        "unable to parse param 'endTs'",
    )
    .await;
    jaeger_error(
        "/api/dependencies?lookback=0",
        400,
        "unable to parse param 'lookback'",
    )
    .await;
}
