//! Derived-metrics tests: span metrics values, service-graph pairing and expiry, bounds,
//! restore, and the flush/ack ordering of the [`Deriver`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind as K;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as S;
use store::traces::{SpanBatch, SpanKind, StatusCode};
use store::MetricsAppender;
use tokio::sync::Semaphore;

use super::series::{Connection, EdgeKey, SpanKey};
use super::state::DeriveState;
use super::test_support::*;
use super::*;
use crate::otlp::traces::convert::{convert_request, TraceLimits};
use crate::telemetry;

fn batch(req: ExportTraceServiceRequest) -> SpanBatch {
    convert_request(req, &TraceLimits::default()).unwrap().batch
}

fn cfg() -> Arc<DeriveConfig> {
    Arc::new(DeriveConfig::default())
}

fn apply(
    state: &mut DeriveState,
    cfg: &DeriveConfig,
    req: ExportTraceServiceRequest,
    now: Instant,
) -> u64 {
    state.apply(prepare::prepare(&batch(req), cfg), now)
}

fn span_key(service: &str, name: &str, kind: SpanKind, status: StatusCode) -> SpanKey {
    SpanKey {
        service: service.into(),
        span_name: name.into(),
        kind,
        status,
    }
}

fn edge(client: &str, server: &str, connection: Connection) -> EdgeKey {
    EdgeKey {
        client: client.into(),
        server: server.into(),
        connection,
    }
}

/// The stored series of a snapshot as `name{labels} value`, sorted.
fn flushed(state: &mut DeriveState, cfg: &DeriveConfig) -> Vec<String> {
    let snap = state.snapshot(1_000);
    let mut out: Vec<String> = snap
        .to_batch(&cfg.span_les(), &cfg.edge_les())
        .series
        .iter()
        .map(|s| format!("{} {}", s.labels, s.samples[0].value))
        .collect();
    out.sort();
    out
}

#[test]
fn span_metrics_count_calls_and_latency_per_key() {
    let cfg = cfg();
    let mut state = DeriveState::new(cfg.clone());
    let failing = with_attrs(
        otlp_span(1, 3, 0, "GET /cart", K::Server, 300),
        vec![kv_int("http.response.status_code", 503)],
    );
    apply(
        &mut state,
        &cfg,
        request(
            "checkout",
            vec![
                otlp_span(1, 1, 0, "GET /cart", K::Server, 1),
                otlp_span(1, 2, 0, "GET /cart", K::Server, 3),
                failing,
                with_status(otlp_span(1, 4, 1, "SELECT", K::Internal, 20), S::Ok),
            ],
        ),
        Instant::now(),
    );
    let ok = state
        .span_values(&span_key(
            "checkout",
            "GET /cart",
            SpanKind::Server,
            StatusCode::Unset,
        ))
        .unwrap();
    assert_eq!(ok.calls, 2.0);
    assert_eq!(ok.latency.count, 2.0);
    assert!((ok.latency.sum - 0.004).abs() < 1e-12);
    // le 0.002 holds the 1 ms span, le 0.004 both
    assert_eq!(&ok.latency.buckets[..3], &[1.0, 2.0, 2.0]);
    assert_eq!(*ok.latency.buckets.last().unwrap(), 2.0);
    let err = state
        .span_values(&span_key(
            "checkout",
            "GET /cart",
            SpanKind::Server,
            StatusCode::Error,
        ))
        .unwrap();
    assert_eq!(err.calls, 1.0);
    assert_eq!(err.latency.buckets[7], 0.0); // le 0.256
    assert_eq!(err.latency.buckets[8], 1.0); // le 0.512
    assert!(state
        .span_values(&span_key(
            "checkout",
            "SELECT",
            SpanKind::Internal,
            StatusCode::Ok
        ))
        .is_some());

    let series = flushed(&mut state, &cfg);
    for want in [
        "traces_spanmetrics_calls_total{service=\"checkout\", span_kind=\"SPAN_KIND_SERVER\", span_name=\"GET /cart\", status_code=\"STATUS_CODE_UNSET\"} 2",
        "traces_spanmetrics_calls_total{service=\"checkout\", span_kind=\"SPAN_KIND_SERVER\", span_name=\"GET /cart\", status_code=\"STATUS_CODE_ERROR\"} 1",
        "traces_spanmetrics_latency_bucket{le=\"0.002\", service=\"checkout\", span_kind=\"SPAN_KIND_SERVER\", span_name=\"GET /cart\", status_code=\"STATUS_CODE_UNSET\"} 1",
        "traces_spanmetrics_latency_bucket{le=\"16.384\", service=\"checkout\", span_kind=\"SPAN_KIND_SERVER\", span_name=\"GET /cart\", status_code=\"STATUS_CODE_ERROR\"} 1",
        "traces_spanmetrics_latency_bucket{le=\"+Inf\", service=\"checkout\", span_kind=\"SPAN_KIND_SERVER\", span_name=\"GET /cart\", status_code=\"STATUS_CODE_UNSET\"} 2",
        "traces_spanmetrics_latency_count{service=\"checkout\", span_kind=\"SPAN_KIND_SERVER\", span_name=\"GET /cart\", status_code=\"STATUS_CODE_ERROR\"} 1",
        "traces_spanmetrics_latency_sum{service=\"checkout\", span_kind=\"SPAN_KIND_SERVER\", span_name=\"GET /cart\", status_code=\"STATUS_CODE_ERROR\"} 0.3",
        "traces_spanmetrics_calls_total{service=\"checkout\", span_kind=\"SPAN_KIND_INTERNAL\", span_name=\"SELECT\", status_code=\"STATUS_CODE_OK\"} 1",
    ] {
        assert!(series.contains(&want.to_string()), "missing {want}\n{series:#?}");
    }
    // 3 keys x (calls + 15 buckets + sum + count), plus the root server spans' user edges
    let span_series = series
        .iter()
        .filter(|s| s.starts_with("traces_spanmetrics"))
        .count();
    assert_eq!(span_series, 3 * 18);
    // nothing changed: the next flush is empty
    assert!(flushed(&mut state, &cfg).is_empty());
}

#[test]
fn client_and_server_pair_within_one_request() {
    let cfg = cfg();
    let mut state = DeriveState::new(cfg.clone());
    let req = requests(&[
        (
            "frontend",
            vec![otlp_span(1, 2, 1, "GET /checkout", K::Client, 120)],
        ),
        (
            "checkout",
            vec![otlp_span(1, 3, 2, "/checkout", K::Server, 100)],
        ),
    ]);
    apply(&mut state, &cfg, req, Instant::now());
    let e = state
        .edge_values(&edge("frontend", "checkout", Connection::Direct))
        .unwrap();
    assert_eq!((e.total, e.failed), (1.0, 0.0));
    assert!((e.server.sum - 0.1).abs() < 1e-12);
    assert!((e.client.sum - 0.12).abs() < 1e-12);
    assert_eq!(e.server.buckets[0], 1.0); // le 0.1 holds the 100 ms server span
    assert_eq!(e.client.buckets[0], 0.0);
    assert_eq!(e.client.buckets[1], 1.0);
    assert_eq!(state.pending_edges(), 0);
    let series = flushed(&mut state, &cfg);
    assert!(series.contains(
        &"traces_service_graph_request_total{client=\"frontend\", server=\"checkout\"} 1"
            .to_string()
    ));
    assert!(series.contains(
        &"traces_service_graph_request_failed_total{client=\"frontend\", server=\"checkout\"} 0"
            .to_string()
    ));
    assert!(series.contains(
        &"traces_service_graph_request_server_seconds_bucket{client=\"frontend\", le=\"0.1\", server=\"checkout\"} 1"
            .to_string()
    ));
    assert!(series.contains(
        &"traces_service_graph_request_client_seconds_count{client=\"frontend\", server=\"checkout\"} 1"
            .to_string()
    ));
}

#[test]
fn halves_pair_across_requests_in_either_order() {
    let cfg = cfg();
    let mut state = DeriveState::new(cfg.clone());
    let t0 = Instant::now();
    // client first
    apply(
        &mut state,
        &cfg,
        request("frontend", vec![otlp_span(1, 2, 1, "c", K::Client, 5)]),
        t0,
    );
    assert_eq!(state.pending_edges(), 1);
    assert!(state
        .edge_values(&edge("frontend", "checkout", Connection::Direct))
        .is_none());
    let epoch_before = state.snapshot(1).epoch;
    let epoch = apply(
        &mut state,
        &cfg,
        request("checkout", vec![otlp_span(1, 3, 2, "s", K::Server, 4)]),
        t0 + Duration::from_secs(3),
    );
    assert!(
        epoch > epoch_before,
        "a later pairing is flushed by a later epoch"
    );
    // server first
    apply(
        &mut state,
        &cfg,
        request("payments", vec![otlp_span(2, 5, 4, "s", K::Server, 4)]),
        t0,
    );
    apply(
        &mut state,
        &cfg,
        request("checkout", vec![otlp_span(2, 4, 3, "c", K::Client, 5)]),
        t0,
    );
    assert_eq!(
        state
            .edge_values(&edge("frontend", "checkout", Connection::Direct))
            .unwrap()
            .total,
        1.0
    );
    assert_eq!(
        state
            .edge_values(&edge("checkout", "payments", Connection::Direct))
            .unwrap()
            .total,
        1.0
    );
    assert_eq!(state.pending_edges(), 0);
}

#[test]
fn database_spans_are_edges_at_once() {
    let cfg = cfg();
    let mut state = DeriveState::new(cfg.clone());
    let db = with_attrs(
        otlp_span(1, 4, 3, "SELECT orders", K::Client, 30),
        vec![
            kv_str("db.system", "postgresql"),
            kv_str("server.address", "db-1"),
        ],
    );
    let redis = with_attrs(
        otlp_span(1, 5, 3, "GET", K::Client, 1),
        vec![
            kv_str("db.system.name", "redis"),
            kv_str("peer.service", "sessions"),
        ],
    );
    apply(
        &mut state,
        &cfg,
        request("payments", vec![db, redis]),
        Instant::now(),
    );
    assert_eq!(state.pending_edges(), 0);
    let e = state
        .edge_values(&edge("payments", "postgresql", Connection::Database))
        .unwrap();
    assert_eq!(e.total, 1.0);
    assert!((e.server.sum - 0.03).abs() < 1e-12 && (e.client.sum - 0.03).abs() < 1e-12);
    assert!(state
        .edge_values(&edge("payments", "sessions", Connection::Database))
        .is_some());
    let series = flushed(&mut state, &cfg);
    assert!(series.contains(
        &"traces_service_graph_request_total{client=\"payments\", connection_type=\"database\", server=\"postgresql\"} 1"
            .to_string()
    ));
}

#[test]
fn expired_client_halves_become_edges_to_the_peer_they_name() {
    let cfg = cfg();
    let mut state = DeriveState::new(cfg.clone());
    let t0 = Instant::now();
    let before_virtual = telemetry::SERVICE_GRAPH_EXPIRED_EDGES
        .with_label_values(&["client", "virtual_node"])
        .get();
    let before_unpaired = telemetry::SERVICE_GRAPH_EXPIRED_EDGES
        .with_label_values(&["client", "unpaired"])
        .get();
    let before_server = telemetry::SERVICE_GRAPH_EXPIRED_EDGES
        .with_label_values(&["server", "unpaired"])
        .get();
    let spans = vec![
        with_attrs(
            otlp_span(1, 2, 1, "charge", K::Client, 200),
            vec![
                kv_str("peer.service", "stripe"),
                kv_str("server.address", "api.stripe.com"),
            ],
        ),
        with_attrs(
            otlp_span(1, 3, 1, "GET", K::Client, 50),
            vec![kv_str("server.address", "api.example.com")],
        ),
        with_status(
            with_attrs(
                otlp_span(1, 4, 1, "publish", K::Producer, 2),
                vec![kv_str("peer.service", "kafka")],
            ),
            S::Error,
        ),
        otlp_span(1, 5, 1, "nameless", K::Client, 2),
        otlp_span(1, 6, 9, "orphan", K::Server, 2),
    ];
    apply(&mut state, &cfg, request("checkout", spans), t0);
    assert_eq!(state.pending_edges(), 5);
    state.expire(t0 + Duration::from_secs(9));
    assert_eq!(state.pending_edges(), 5, "nothing expires before edge_wait");
    state.expire(t0 + cfg.edge_wait);
    assert_eq!(state.pending_edges(), 0);
    let stripe = state
        .edge_values(&edge("checkout", "stripe", Connection::VirtualNode))
        .unwrap();
    assert_eq!(stripe.total, 1.0);
    assert!((stripe.server.sum - 0.2).abs() < 1e-12);
    assert!(state
        .edge_values(&edge(
            "checkout",
            "api.example.com",
            Connection::VirtualNode
        ))
        .is_some());
    let kafka = state
        .edge_values(&edge("checkout", "kafka", Connection::MessagingSystem))
        .unwrap();
    assert_eq!((kafka.total, kafka.failed), (1.0, 1.0));
    assert_eq!(
        telemetry::SERVICE_GRAPH_EXPIRED_EDGES
            .with_label_values(&["client", "virtual_node"])
            .get()
            - before_virtual,
        3
    );
    assert!(
        telemetry::SERVICE_GRAPH_EXPIRED_EDGES
            .with_label_values(&["client", "unpaired"])
            .get()
            > before_unpaired
    );
    assert!(
        telemetry::SERVICE_GRAPH_EXPIRED_EDGES
            .with_label_values(&["server", "unpaired"])
            .get()
            > before_server
    );
    let series = flushed(&mut state, &cfg);
    assert!(series.contains(
        &"traces_service_graph_request_total{client=\"checkout\", connection_type=\"virtual_node\", server=\"stripe\"} 1"
            .to_string()
    ));
    // the orphan server half and the client naming no peer make no edge
    let edges: Vec<&String> = series
        .iter()
        .filter(|s| s.starts_with("traces_service_graph_request_total"))
        .collect();
    assert_eq!(edges.len(), 3, "{edges:#?}");
}

#[test]
fn root_server_spans_are_called_by_user() {
    let cfg = cfg();
    let mut state = DeriveState::new(cfg.clone());
    apply(
        &mut state,
        &cfg,
        request("frontend", vec![otlp_span(1, 1, 0, "GET /", K::Server, 10)]),
        Instant::now(),
    );
    assert_eq!(state.pending_edges(), 0);
    let e = state
        .edge_values(&edge("user", "frontend", Connection::VirtualNode))
        .unwrap();
    assert_eq!(e.total, 1.0);
}

#[test]
fn producer_and_consumer_pair_as_a_messaging_system() {
    let cfg = cfg();
    let mut state = DeriveState::new(cfg.clone());
    let t0 = Instant::now();
    apply(
        &mut state,
        &cfg,
        request("orders", vec![otlp_span(1, 2, 1, "send", K::Producer, 1)]),
        t0,
    );
    apply(
        &mut state,
        &cfg,
        request("billing", vec![otlp_span(1, 3, 2, "recv", K::Consumer, 1)]),
        t0,
    );
    assert_eq!(
        state
            .edge_values(&edge("orders", "billing", Connection::MessagingSystem))
            .unwrap()
            .total,
        1.0
    );
}

#[test]
fn an_edge_fails_when_either_half_failed() {
    let cfg = cfg();
    let mut state = DeriveState::new(cfg.clone());
    let t0 = Instant::now();
    // server span: status error
    apply(
        &mut state,
        &cfg,
        requests(&[
            ("frontend", vec![otlp_span(1, 2, 1, "c", K::Client, 5)]),
            (
                "checkout",
                vec![with_status(otlp_span(1, 3, 2, "s", K::Server, 4), S::Error)],
            ),
        ]),
        t0,
    );
    // server span unset but HTTP 500
    apply(
        &mut state,
        &cfg,
        requests(&[
            ("frontend", vec![otlp_span(2, 2, 1, "c", K::Client, 5)]),
            (
                "checkout",
                vec![with_attrs(
                    otlp_span(2, 3, 2, "s", K::Server, 4),
                    vec![kv_int("http.status_code", 500)],
                )],
            ),
        ]),
        t0,
    );
    // client span gets a 404: a client error, server fine
    apply(
        &mut state,
        &cfg,
        requests(&[
            (
                "frontend",
                vec![with_attrs(
                    otlp_span(3, 2, 1, "c", K::Client, 5),
                    vec![kv_int("http.response.status_code", 404)],
                )],
            ),
            (
                "checkout",
                vec![with_attrs(
                    otlp_span(3, 3, 2, "s", K::Server, 4),
                    vec![kv_int("http.response.status_code", 404)],
                )],
            ),
        ]),
        t0,
    );
    // and a good one
    apply(
        &mut state,
        &cfg,
        requests(&[
            ("frontend", vec![otlp_span(4, 2, 1, "c", K::Client, 5)]),
            ("checkout", vec![otlp_span(4, 3, 2, "s", K::Server, 4)]),
        ]),
        t0,
    );
    let e = state
        .edge_values(&edge("frontend", "checkout", Connection::Direct))
        .unwrap();
    assert_eq!((e.total, e.failed), (4.0, 3.0));
    // the 404 server span is no server error, the client's is a client error
    assert_eq!(
        state
            .span_values(&span_key(
                "checkout",
                "s",
                SpanKind::Server,
                StatusCode::Error
            ))
            .unwrap()
            .calls,
        2.0
    );
    assert_eq!(
        state
            .span_values(&span_key(
                "frontend",
                "c",
                SpanKind::Client,
                StatusCode::Error
            ))
            .unwrap()
            .calls,
        1.0
    );
}

#[test]
fn memory_is_bounded_and_drops_are_counted() {
    let cfg = Arc::new(DeriveConfig {
        max_pending_edges: 2,
        max_series: 3,
        ..Default::default()
    });
    let mut state = DeriveState::new(cfg.clone());
    let t0 = Instant::now();
    let dropped_halves = telemetry::SERVICE_GRAPH_DROPPED_SPANS.get();
    let dropped_series = telemetry::DERIVED_SERIES_DROPPED.get();
    apply(
        &mut state,
        &cfg,
        request(
            "a",
            vec![
                otlp_span(1, 2, 1, "c", K::Client, 1),
                otlp_span(1, 3, 1, "c", K::Client, 1),
                otlp_span(1, 4, 1, "c", K::Client, 1),
            ],
        ),
        t0,
    );
    assert_eq!(state.pending_edges(), 2);
    assert!(telemetry::SERVICE_GRAPH_DROPPED_SPANS.get() - dropped_halves >= 1);
    // three span-metrics keys fill max_series; a fourth is not derived
    apply(
        &mut state,
        &cfg,
        request(
            "a",
            vec![
                otlp_span(2, 1, 0, "x", K::Internal, 1),
                otlp_span(2, 2, 0, "y", K::Internal, 1),
                otlp_span(2, 3, 0, "z", K::Internal, 1),
            ],
        ),
        t0,
    );
    assert_eq!(state.series_count(), 3);
    let held = ["x", "y", "z"]
        .iter()
        .filter(|n| {
            state
                .span_values(&span_key("a", n, SpanKind::Internal, StatusCode::Unset))
                .is_some()
        })
        .count();
    assert_eq!(held, 2);
    assert!(telemetry::DERIVED_SERIES_DROPPED.get() - dropped_series >= 1);
    // existing keys still count
    apply(
        &mut state,
        &cfg,
        request("a", vec![otlp_span(3, 1, 0, "c", K::Client, 1)]),
        t0,
    );
    assert_eq!(
        state
            .span_values(&span_key("a", "c", SpanKind::Client, StatusCode::Unset))
            .unwrap()
            .calls,
        4.0
    );
}

#[test]
fn long_names_are_cut_to_the_label_limit() {
    let cfg = Arc::new(DeriveConfig {
        max_label_value_bytes: 4,
        ..Default::default()
    });
    let mut state = DeriveState::new(cfg.clone());
    apply(
        &mut state,
        &cfg,
        request(
            "servicé",
            vec![otlp_span(1, 1, 0, "operation", K::Internal, 1)],
        ),
        Instant::now(),
    );
    assert!(state
        .span_values(&span_key(
            "serv",
            "oper",
            SpanKind::Internal,
            StatusCode::Unset
        ))
        .is_some());
}

#[test]
fn snapshots_carry_increasing_timestamps_and_requeue_after_failure() {
    let cfg = cfg();
    let mut state = DeriveState::new(cfg.clone());
    let t0 = Instant::now();
    let e1 = apply(
        &mut state,
        &cfg,
        request("a", vec![otlp_span(1, 1, 0, "op", K::Internal, 1)]),
        t0,
    );
    let s1 = state.snapshot(5_000);
    assert_eq!(s1.epoch, e1);
    assert!(!s1.is_empty());
    // the append failed: the next snapshot writes the series again, with the newer value
    state.requeue(&s1);
    let e2 = apply(
        &mut state,
        &cfg,
        request("a", vec![otlp_span(1, 2, 0, "op", K::Internal, 1)]),
        t0,
    );
    assert!(e2 > e1);
    // the clock went back: still strictly later
    let s2 = state.snapshot(4_000);
    assert_eq!(s2.timestamp_ms, 5_001);
    let batch = s2.to_batch(&cfg.span_les(), &cfg.edge_les());
    let calls = batch
        .series
        .iter()
        .find(|s| s.labels.metric_name() == Some(series::CALLS_TOTAL))
        .unwrap();
    assert_eq!(calls.samples, vec![store::Sample::new(5_001, 2.0)]);
    assert!(
        !batch.metadata.is_empty(),
        "metadata until a flush is stored"
    );
    state.stored(&s2);
    apply(
        &mut state,
        &cfg,
        request("a", vec![otlp_span(1, 3, 0, "op", K::Internal, 1)]),
        t0,
    );
    assert!(state
        .snapshot(6_000)
        .to_batch(&cfg.span_les(), &cfg.edge_les())
        .metadata
        .is_empty());
}

#[tokio::test]
async fn counters_continue_from_the_stored_values_after_a_restart() {
    let events = Events::default();
    let metrics = MemMetrics::new(events.clone());
    let cfg = cfg();
    let mut first = DeriveState::new(cfg.clone());
    let t0 = Instant::now();
    apply(
        &mut first,
        &cfg,
        requests(&[
            ("frontend", vec![otlp_span(1, 2, 1, "c", K::Client, 5)]),
            (
                "checkout",
                vec![
                    otlp_span(1, 3, 2, "s", K::Server, 4),
                    otlp_span(1, 4, 3, "s2", K::Internal, 4),
                ],
            ),
        ]),
        t0,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let snap = first.snapshot(now);
    metrics
        .append(snap.to_batch(&cfg.span_les(), &cfg.edge_les()))
        .await
        .unwrap();
    let stored_before = metrics.rendered();

    // the "restarted" process restores, then counts on
    let mut second = DeriveState::new(cfg.clone());
    let values = restore::latest_values(metrics.as_ref(), now, cfg.restore_lookback).unwrap();
    assert_eq!(values.len(), stored_before.len());
    let keys = second.restore(values);
    assert_eq!(keys, 4); // span keys c, s, s2 and the frontend -> checkout edge
    let client = span_key("frontend", "c", SpanKind::Client, StatusCode::Unset);
    assert_eq!(second.span_values(&client), first.span_values(&client));
    let direct = edge("frontend", "checkout", Connection::Direct);
    assert_eq!(second.edge_values(&direct), first.edge_values(&direct));
    apply(
        &mut second,
        &cfg,
        requests(&[
            ("frontend", vec![otlp_span(2, 2, 1, "c", K::Client, 5)]),
            ("checkout", vec![otlp_span(2, 3, 2, "s", K::Server, 4)]),
        ]),
        t0,
    );
    let snap = second.snapshot(now); // same wall clock: must still be later
    assert!(snap.timestamp_ms > now);
    let report = metrics
        .append(snap.to_batch(&cfg.span_les(), &cfg.edge_les()))
        .await
        .unwrap();
    assert_eq!(report.rejected_total(), 0, "{:?}", report.first_rejection);
    assert_eq!(
        metrics.last("traces_spanmetrics_calls_total{service=\"frontend\", span_kind=\"SPAN_KIND_CLIENT\", span_name=\"c\", status_code=\"STATUS_CODE_UNSET\"}"),
        Some(2.0)
    );
    assert_eq!(
        metrics
            .last("traces_service_graph_request_total{client=\"frontend\", server=\"checkout\"}"),
        Some(2.0)
    );
    assert_eq!(
        metrics.last("traces_service_graph_request_server_seconds_count{client=\"frontend\", server=\"checkout\"}"),
        Some(2.0)
    );
}

/// A started deriver over `metrics`, restored.
async fn deriver(cfg: DeriveConfig, metrics: Arc<MemMetrics>) -> Arc<Deriver> {
    let d = Deriver::start(cfg, metrics.clone(), metrics).unwrap();
    d.ready().await.unwrap();
    d
}

fn one_span_batch(trace: u8) -> SpanBatch {
    batch(request(
        "svc",
        vec![otlp_span(trace, 1, 0, "op", K::Internal, 1)],
    ))
}

#[tokio::test]
async fn a_request_is_acknowledged_only_after_its_derived_samples_are_stored() {
    let events = Events::default();
    let gate = Arc::new(Semaphore::new(0));
    let metrics = MemMetrics::gated(events.clone(), gate.clone());
    let d = deriver(DeriveConfig::default(), metrics.clone()).await;
    let epoch = d.apply(d.prepare(&one_span_batch(1))).unwrap();
    let waiter = {
        let d = d.clone();
        tokio::spawn(async move {
            d.wait_flushed(epoch).await.unwrap();
            d.apply(d.prepare(&one_span_batch(2))) // returns the next epoch
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !waiter.is_finished(),
        "acknowledged before the flush was stored"
    );
    assert!(metrics.appends.lock().is_empty());
    gate.add_permits(1);
    let next = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(next > epoch);
    assert_eq!(metrics.appends.lock().len(), 1);
    assert_eq!(
        metrics.last("traces_spanmetrics_calls_total{service=\"svc\", span_kind=\"SPAN_KIND_INTERNAL\", span_name=\"op\", status_code=\"STATUS_CODE_UNSET\"}"),
        Some(1.0)
    );
    gate.add_permits(100);
    d.wait_flushed(next).await.unwrap();
    assert_eq!(
        metrics.last("traces_spanmetrics_calls_total{service=\"svc\", span_kind=\"SPAN_KIND_INTERNAL\", span_name=\"op\", status_code=\"STATUS_CODE_UNSET\"}"),
        Some(2.0)
    );
}

#[tokio::test]
async fn requests_arriving_together_share_one_flush() {
    let metrics = MemMetrics::new(Events::default());
    let d = deriver(
        DeriveConfig {
            flush_interval: Duration::from_millis(300),
            ..Default::default()
        },
        metrics.clone(),
    )
    .await;
    // a first flush, so the next waits out the interval
    let e = d.apply(d.prepare(&one_span_batch(1))).unwrap();
    d.wait_flushed(e).await.unwrap();
    let appends = metrics.appends.lock().len();
    let epochs: Vec<u64> = (2..12)
        .map(|t| d.apply(d.prepare(&one_span_batch(t))).unwrap())
        .collect();
    for e in &epochs {
        d.wait_flushed(*e).await.unwrap();
    }
    assert_eq!(metrics.appends.lock().len(), appends + 1);
}

#[tokio::test]
async fn a_failed_flush_is_retried_and_waiters_wait_for_it() {
    let metrics = MemMetrics::new(Events::default());
    metrics.set_mode(Mode::Overloaded);
    let d = deriver(
        DeriveConfig {
            flush_interval: Duration::from_millis(50),
            ack_timeout: Duration::from_secs(5),
            ..Default::default()
        },
        metrics.clone(),
    )
    .await;
    let failures = telemetry::DERIVED_FLUSH_FAILURES.get();
    let epoch = d.apply(d.prepare(&one_span_batch(1))).unwrap();
    let waiter = {
        let d = d.clone();
        tokio::spawn(async move { d.wait_flushed(epoch).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());
    assert!(telemetry::DERIVED_FLUSH_FAILURES.get() > failures);
    metrics.set_mode(Mode::Accept);
    waiter.await.unwrap().unwrap();
    assert_eq!(
        metrics.last("traces_spanmetrics_calls_total{service=\"svc\", span_kind=\"SPAN_KIND_INTERNAL\", span_name=\"op\", status_code=\"STATUS_CODE_UNSET\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_flush_that_keeps_failing_refuses_the_request_as_retryable() {
    let metrics = MemMetrics::new(Events::default());
    metrics.set_mode(Mode::Unavailable);
    let d = deriver(
        DeriveConfig {
            flush_interval: Duration::from_millis(20),
            ack_timeout: Duration::from_millis(300),
            ..Default::default()
        },
        metrics.clone(),
    )
    .await;
    let epoch = d.apply(d.prepare(&one_span_batch(1))).unwrap();
    let err = d.wait_flushed(epoch).await.unwrap_err();
    assert!(err.retryable(), "{err}");
    assert_eq!(err.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn ready_fails_until_the_metrics_store_answers() {
    let metrics = MemMetrics::new(Events::default());
    let d = Deriver::start(DeriveConfig::default(), metrics, Arc::new(NotReady)).unwrap();
    let err = d.ready().await.unwrap_err();
    assert_eq!(err.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn expired_edges_are_flushed_in_the_background() {
    let metrics = MemMetrics::new(Events::default());
    let d = deriver(
        DeriveConfig {
            edge_wait: Duration::from_millis(100),
            flush_interval: Duration::from_millis(20),
            ..Default::default()
        },
        metrics.clone(),
    )
    .await;
    let b = batch(request(
        "checkout",
        vec![with_attrs(
            otlp_span(1, 2, 1, "charge", K::Client, 5),
            vec![kv_str("peer.service", "stripe")],
        )],
    ));
    let e = d.apply(d.prepare(&b)).unwrap();
    d.wait_flushed(e).await.unwrap();
    let edge_series = "traces_service_graph_request_total{client=\"checkout\", connection_type=\"virtual_node\", server=\"stripe\"}";
    assert_eq!(metrics.last(edge_series), None);
    let deadline = Instant::now() + Duration::from_secs(5);
    while metrics.last(edge_series).is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metrics.last(edge_series), Some(1.0));
}

#[tokio::test]
async fn shutdown_flushes_and_later_requests_are_refused() {
    let metrics = MemMetrics::new(Events::default());
    let d = deriver(
        DeriveConfig {
            flush_interval: Duration::from_secs(3600),
            ..Default::default()
        },
        metrics.clone(),
    )
    .await;
    // a first flush happens at once; the second would wait an hour
    let e = d.apply(d.prepare(&one_span_batch(1))).unwrap();
    d.wait_flushed(e).await.unwrap();
    let e = d.apply(d.prepare(&one_span_batch(2))).unwrap();
    let waiter = {
        let d = d.clone();
        tokio::spawn(async move { d.wait_flushed(e).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished());
    tokio::time::timeout(Duration::from_secs(5), d.shutdown())
        .await
        .unwrap();
    waiter.await.unwrap().unwrap();
    assert_eq!(
        metrics.last("traces_spanmetrics_calls_total{service=\"svc\", span_kind=\"SPAN_KIND_INTERNAL\", span_name=\"op\", status_code=\"STATUS_CODE_UNSET\"}"),
        Some(2.0)
    );
    let e = d.apply(d.prepare(&one_span_batch(3))).unwrap();
    let err = d.wait_flushed(e).await.unwrap_err();
    assert!(err.to_string().contains("shutting down"), "{err}");
}

#[test]
fn invalid_configs_name_every_problem() {
    let cfg = DeriveConfig {
        spanmetrics_buckets: vec![0.5, 0.1],
        service_graph_buckets: vec![1.0, f64::INFINITY],
        flush_interval: Duration::ZERO,
        ..Default::default()
    };
    let err = cfg.validate().unwrap_err();
    assert!(
        err.contains("spanmetrics_buckets: bounds must be strictly ascending"),
        "{err}"
    );
    assert!(
        err.contains("service_graph_buckets: bounds must be finite"),
        "{err}"
    );
    assert!(err.contains("flush_interval"), "{err}");
    assert!(DeriveConfig::default().validate().is_ok());
    assert_eq!(
        DeriveConfig::default()
            .span_les()
            .first()
            .map(String::as_str),
        Some("0.002")
    );
    assert_eq!(
        DeriveConfig::default().span_les()[13..],
        ["16.384".to_string(), "+Inf".to_string()]
    );
    assert_eq!(
        DeriveConfig::default().edge_les(),
        ["0.1", "0.2", "0.4", "0.8", "1.6", "3.2", "6.4", "12.8", "+Inf"]
    );
}
