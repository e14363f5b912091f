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

/// The stored series of a snapshot as `name{labels} value` (the last value written), sorted.
fn flushed(state: &mut DeriveState, cfg: &DeriveConfig) -> Vec<String> {
    let snap = state.snapshot(1_000);
    let mut out: Vec<String> = snap
        .to_batch(&cfg.span_les(), &cfg.edge_les())
        .series
        .iter()
        .filter_map(|s| {
            s.samples
                .last()
                .map(|x| format!("{} {}", s.labels, x.value))
        })
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
    // the clock went back: still strictly later, by two ms since the new key's zeros go
    // first (the failed flush did not store them)
    let s2 = state.snapshot(4_000);
    assert_eq!(s2.timestamp_ms, 5_002);
    let batch = s2.to_batch(&cfg.span_les(), &cfg.edge_les());
    let calls = batch
        .series
        .iter()
        .find(|s| s.labels.metric_name() == Some(series::CALLS_TOTAL))
        .unwrap();
    assert_eq!(
        calls.samples,
        vec![
            store::Sample::new(5_001, 0.0),
            store::Sample::new(5_002, 2.0)
        ]
    );
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
            heartbeat: Duration::from_secs(7200),
            stale_after: Duration::from_secs(3 * 3600),
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

// ---- heartbeats and staleness ----

/// The samples of the calls series in a snapshot's batch, `None` for a staleness marker.
fn calls_samples(snap: &state::Snapshot, cfg: &DeriveConfig) -> Vec<(i64, Option<f64>)> {
    snap.to_batch(&cfg.span_les(), &cfg.edge_les())
        .series
        .iter()
        .filter(|s| s.labels.metric_name() == Some(series::CALLS_TOTAL))
        .flat_map(|s| s.samples.iter())
        .map(|x| {
            let v = if store::model::is_stale_nan(x.value) {
                None
            } else {
                Some(x.value)
            };
            (x.timestamp_ms, v)
        })
        .collect()
}

fn beat_cfg() -> Arc<DeriveConfig> {
    Arc::new(DeriveConfig {
        flush_interval: Duration::from_millis(100),
        heartbeat: Duration::from_secs(15),
        stale_after: Duration::from_secs(60),
        ..Default::default()
    })
}

/// Flushes whenever the state says something is due, until `until`, as the flusher does
/// without traffic; returns the calls samples written.
fn idle_until(state: &mut DeriveState, cfg: &DeriveConfig, until: i64) -> Vec<(i64, Option<f64>)> {
    let mut out = Vec::new();
    loop {
        let t = state.next_sweep_ms();
        if t > until {
            return out;
        }
        let snap = state.snapshot(t);
        out.extend(calls_samples(&snap, cfg));
        state.stored(&snap);
    }
}

#[test]
fn unchanged_series_are_written_every_heartbeat_until_stale() {
    let cfg = beat_cfg();
    let mut state = DeriveState::new(cfg.clone());
    let t = 1_000_000;
    apply(
        &mut state,
        &cfg,
        request("a", vec![otlp_span(1, 1, 0, "op", K::Server, 1)]),
        Instant::now(),
    );
    // a new key: zeros one ms before its first count
    let first = state.snapshot(t);
    assert_eq!(
        calls_samples(&first, &cfg),
        [(t - 1, Some(0.0)), (t, Some(1.0))]
    );
    state.stored(&first);
    // due a flush interval before the heartbeat, so the next flush is never late
    assert_eq!(state.next_sweep_ms(), t + 15_000 - 100);
    assert!(state.snapshot(t + 5_000).is_empty());
    let written = idle_until(&mut state, &cfg, t + 200_000);
    let mut last = t;
    let mut values = Vec::new();
    for (ts, v) in &written {
        assert!(*ts - last <= 15_000, "{last} -> {ts}: {written:?}");
        last = *ts;
        values.push(*v);
    }
    // heartbeats with the same value while active, then one marker 60 s after the change
    let (marker, beats) = values.split_last().unwrap();
    assert_eq!(*marker, None, "{written:?}");
    assert!(
        beats.len() >= 3 && beats.iter().all(|v| *v == Some(1.0)),
        "{written:?}"
    );
    assert_eq!(written.last().unwrap().0, t + 60_000);
    // stale: nothing more is due
    assert_eq!(state.next_sweep_ms(), i64::MAX);
    assert!(state.snapshot(t + 500_000).is_empty());

    // new spans bring it back, the counter continuing after its last value
    apply(
        &mut state,
        &cfg,
        request("a", vec![otlp_span(2, 1, 0, "op", K::Server, 1)]),
        Instant::now(),
    );
    let back = state.snapshot(t + 600_000);
    assert_eq!(
        calls_samples(&back, &cfg),
        [(t + 599_999, Some(1.0)), (t + 600_000, Some(2.0))]
    );
    state.stored(&back);
    let again = idle_until(&mut state, &cfg, t + 620_000);
    assert_eq!(again, [(t + 614_900, Some(2.0))]);
}

#[test]
fn busy_series_get_no_extra_heartbeats_and_edges_beat_too() {
    let cfg = beat_cfg();
    let mut state = DeriveState::new(cfg.clone());
    let t = 1_000_000;
    let mut heartbeats = 0;
    // a change every 10 s: each flush writes it as changed, never as a heartbeat
    for i in 0..10u8 {
        apply(
            &mut state,
            &cfg,
            requests(&[
                ("front", vec![otlp_span(i + 1, 1, 0, "c", K::Client, 1)]),
                ("back", vec![otlp_span(i + 1, 2, 1, "s", K::Server, 1)]),
            ]),
            Instant::now(),
        );
        let snap = state.snapshot(t + i64::from(i) * 10_000);
        heartbeats += snap.count(state::Reason::Heartbeat);
        state.stored(&snap);
    }
    assert_eq!(heartbeats, 0);
    // then idle: the span keys and the edge are all written by the next heartbeat
    let snap = state.snapshot(t + 90_000 + 14_900);
    assert_eq!(
        snap.count(state::Reason::Heartbeat),
        3,
        "2 span keys and 1 edge"
    );
    let batch = snap.to_batch(&cfg.span_les(), &cfg.edge_les());
    let edge_total = batch
        .series
        .iter()
        .find(|s| s.labels.metric_name() == Some(series::REQUEST_TOTAL))
        .unwrap();
    assert_eq!(edge_total.samples, [store::Sample::new(t + 104_900, 10.0)]);
}

#[test]
fn a_failed_heartbeat_is_written_by_a_later_flush() {
    let cfg = beat_cfg();
    let mut state = DeriveState::new(cfg.clone());
    let t = 1_000_000;
    apply(
        &mut state,
        &cfg,
        request("a", vec![otlp_span(1, 1, 0, "op", K::Server, 1)]),
        Instant::now(),
    );
    let s = state.snapshot(t);
    state.stored(&s);
    let beat = state.snapshot(t + 14_900);
    // the span key and its edge from `user`
    assert_eq!(beat.count(state::Reason::Heartbeat), 2);
    state.requeue(&beat);
    assert!(state.next_sweep_ms() <= t + 14_900 + 500);
    let retry = state.snapshot(t + 15_400);
    assert_eq!(calls_samples(&retry, &cfg), [(t + 15_400, Some(1.0))]);
    state.stored(&retry);
    // a failed marker likewise
    let written = idle_until(&mut state, &cfg, t + 59_000);
    assert!(written.iter().all(|(_, v)| *v == Some(1.0)), "{written:?}");
    let marker = state.snapshot(t + 60_000);
    assert_eq!(calls_samples(&marker, &cfg), [(t + 60_000, None)]);
    state.requeue(&marker);
    let marker = state.snapshot(t + 60_500);
    assert_eq!(calls_samples(&marker, &cfg), [(t + 60_500, None)]);
    state.stored(&marker);
    assert!(state.snapshot(t + 200_000).is_empty());
}

#[test]
fn a_change_while_the_marker_is_stored_writes_the_old_value_first() {
    let cfg = beat_cfg();
    let mut state = DeriveState::new(cfg.clone());
    let t = 1_000_000;
    let span = |trace| request("a", vec![otlp_span(trace, 1, 0, "op", K::Server, 1)]);
    apply(&mut state, &cfg, span(1), Instant::now());
    let s = state.snapshot(t);
    state.stored(&s);
    idle_until(&mut state, &cfg, t + 59_999);
    let marker = state.snapshot(t + 60_000);
    // the span key and its edge from `user`
    assert_eq!(marker.count(state::Reason::Stale), 2);
    // spans arrive while the marker's append is under way
    apply(&mut state, &cfg, span(2), Instant::now());
    state.stored(&marker);
    let next = state.snapshot(t + 60_100);
    assert_eq!(
        calls_samples(&next, &cfg),
        [(t + 60_099, Some(1.0)), (t + 60_100, Some(2.0))]
    );
}

#[test]
fn restored_keys_beat_unless_they_had_gone_stale() {
    let cfg = beat_cfg();
    let t = 10_000_000;
    let calls = |service: &str| {
        store::Labels::from_pairs([
            ("__name__", series::CALLS_TOTAL),
            ("service", service),
            ("span_kind", "SPAN_KIND_SERVER"),
            ("span_name", "op"),
            ("status_code", "STATUS_CODE_UNSET"),
        ])
    };
    let restored = |service: &str, at: i64, value: f64, marker: Option<i64>| restore::Restored {
        labels: calls(service),
        value: store::Sample::new(at, value),
        last_ms: marker.unwrap_or(at),
        stale: marker.is_some(),
    };
    let mut state = DeriveState::new(cfg.clone());
    state.restore(vec![
        // written 5 s before the restart: still active
        restored("recent", t - 5_000, 7.0, None),
        // stale-marked by the previous process
        restored("marked", t - 20_000, 3.0, Some(t - 10_000)),
        // no marker, but idle longer than stale_after (the previous process died)
        restored("old", t - 3_600_000, 9.0, None),
    ]);
    let first = state.snapshot(t);
    // nothing yet: the active key is due a heartbeat after its last stored sample
    assert_eq!(calls_samples(&first, &cfg), []);
    state.stored(&first);
    let beat = state.snapshot(t + 9_900);
    assert_eq!(calls_samples(&beat, &cfg), [(t + 9_900, Some(7.0))]);
    state.stored(&beat);
    // the dormant ones come back with their value first, the counter continuing
    let key = span_key("old", "op", SpanKind::Server, StatusCode::Unset);
    assert_eq!(state.span_values(&key).unwrap().calls, 9.0);
    apply(
        &mut state,
        &cfg,
        request("old", vec![otlp_span(1, 1, 0, "op", K::Server, 1)]),
        Instant::now(),
    );
    let back = state.snapshot(t + 10_000);
    assert_eq!(
        calls_samples(&back, &cfg),
        [(t + 9_999, Some(9.0)), (t + 10_000, Some(10.0))]
    );
    // the marked one stays quiet: it was never written by this process
    state.stored(&back);
    let later = idle_until(&mut state, &cfg, t + 40_000);
    assert!(
        later
            .iter()
            .all(|(_, v)| *v == Some(7.0) || *v == Some(10.0)),
        "{later:?}"
    );
}

#[tokio::test]
async fn the_flusher_writes_heartbeats_and_markers_on_its_own() {
    let metrics = MemMetrics::new(Events::default());
    let d = deriver(
        DeriveConfig {
            flush_interval: Duration::from_millis(20),
            heartbeat: Duration::from_millis(200),
            stale_after: Duration::from_millis(900),
            ..Default::default()
        },
        metrics.clone(),
    )
    .await;
    let e = d.apply(d.prepare(&one_span_batch(1))).unwrap();
    d.wait_flushed(e).await.unwrap();
    let name = "traces_spanmetrics_calls_total{service=\"svc\", span_kind=\"SPAN_KIND_INTERNAL\", span_name=\"op\", status_code=\"STATUS_CODE_UNSET\"}";
    let samples = || {
        metrics
            .series
            .lock()
            .iter()
            .find(|(l, _)| l.to_string() == name)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    };
    // wait for the marker (900 ms after the change), at most 5 s
    let deadline = Instant::now() + Duration::from_secs(5);
    while !samples().last().is_some_and(|s| s.value.is_nan()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = samples();
    let (marker, values) = got.split_last().unwrap();
    assert!(store::model::is_stale_nan(marker.value), "{got:?}");
    assert_eq!(values[0].value, 0.0);
    assert!(values[1..].iter().all(|s| s.value == 1.0), "{got:?}");
    // 900 ms of heartbeats every 200 ms at most (timers may run late on a busy machine: the
    // exact cadence is checked without a clock above)
    assert!(values.len() >= 4, "{got:?}");
    for w in got.windows(2) {
        assert!(w[1].timestamp_ms > w[0].timestamp_ms, "{got:?}");
        assert!(w[1].timestamp_ms - w[0].timestamp_ms < 400, "{got:?}");
    }
    // stale: nothing more is written
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(samples().len(), got.len());
    // new spans: the counter continues after its old value
    let e = d.apply(d.prepare(&one_span_batch(2))).unwrap();
    d.wait_flushed(e).await.unwrap();
    let now = samples();
    let tail: Vec<f64> = now[got.len()..].iter().map(|s| s.value).collect();
    assert_eq!(tail, [1.0, 2.0]);
}

#[tokio::test]
async fn after_a_restart_stored_series_beat_without_new_spans() {
    let metrics = MemMetrics::new(Events::default());
    let name = "traces_spanmetrics_calls_total{service=\"svc\", span_kind=\"SPAN_KIND_INTERNAL\", span_name=\"op\", status_code=\"STATUS_CODE_UNSET\"}";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // what the previous process left: one key, written 100 ms ago
    let mut state = DeriveState::new(cfg());
    state.apply(
        prepare::prepare(&one_span_batch(1), &DeriveConfig::default()),
        Instant::now(),
    );
    let snap = state.snapshot(now - 100);
    metrics
        .append(snap.to_batch(&cfg().span_les(), &cfg().edge_les()))
        .await
        .unwrap();
    let stored = metrics.series.lock().get(&parse(name)).unwrap().len();
    let _d = Deriver::start(
        DeriveConfig {
            flush_interval: Duration::from_millis(20),
            heartbeat: Duration::from_millis(200),
            stale_after: Duration::from_secs(60),
            ..Default::default()
        },
        metrics.clone(),
        metrics.clone(),
    )
    .unwrap();
    // no request: the flusher restores on its own and writes the heartbeats
    let deadline = Instant::now() + Duration::from_secs(5);
    let count = || metrics.series.lock().get(&parse(name)).map_or(0, Vec::len);
    while count() < stored + 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let samples = metrics.series.lock().get(&parse(name)).unwrap().clone();
    assert!(samples.len() >= stored + 2, "{samples:?}");
    assert!(
        samples[stored..].iter().all(|s| s.value == 1.0),
        "{samples:?}"
    );
}

/// The labels of a series rendered as `name{a="b", ...}` (test names have no commas in values).
fn parse(rendered: &str) -> store::Labels {
    let (name, rest) = rendered.split_once('{').unwrap();
    let mut pairs = vec![("__name__".to_string(), name.to_string())];
    for part in rest.trim_end_matches('}').split(", ") {
        let (k, v) = part.split_once('=').unwrap();
        pairs.push((k.to_string(), v.trim_matches('"').to_string()));
    }
    store::Labels::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

#[test]
fn heartbeat_and_stale_after_are_checked() {
    let cfg = DeriveConfig {
        flush_interval: Duration::from_secs(1),
        heartbeat: Duration::from_secs(1),
        stale_after: Duration::from_millis(500),
        ..Default::default()
    };
    let err = cfg.validate().unwrap_err();
    assert!(
        err.contains("heartbeat must be more than flush_interval"),
        "{err}"
    );
    assert!(
        err.contains("stale_after must be more than heartbeat"),
        "{err}"
    );
}
