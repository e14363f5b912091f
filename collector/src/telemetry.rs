//! The collector's self-metrics, registered in the process-wide `prometheus` registry that
//! `GET /metrics` exposes.

use std::sync::LazyLock;

use prometheus::{
    register_histogram, register_int_counter, register_int_counter_vec, register_int_gauge,
    Histogram, IntCounter, IntCounterVec, IntGauge,
};
use store::AppendReport;

/// Requests per protocol and outcome (`ok`, `partial`, or the HTTP status class of the error).
pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_ingest_requests_total",
        "Ingest requests received, by protocol and outcome.",
        &["protocol", "outcome"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_ingest_requests_total: {e}"))
});

/// Samples stored per protocol.
pub static SAMPLES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_ingest_samples_total",
        "Samples accepted and stored, by protocol.",
        &["protocol"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_ingest_samples_total: {e}"))
});

/// Samples rejected per protocol and reason.
pub static REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_ingest_rejected_samples_total",
        "Samples or data points rejected, by protocol and reason.",
        &["protocol", "reason"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_ingest_rejected_samples_total: {e}"))
});

/// Records a store append outcome under `protocol`.
pub fn record_append(protocol: &str, report: &AppendReport) {
    SAMPLES
        .with_label_values(&[protocol])
        .inc_by(report.accepted_samples);
    for (reason, n) in &report.rejected_samples {
        REJECTED
            .with_label_values(&[protocol, reason.as_str()])
            .inc_by(*n);
    }
}

/// Records points the collector itself rejected before reaching the store.
pub fn record_rejected(protocol: &str, reason: &str, n: u64) {
    REJECTED.with_label_values(&[protocol, reason]).inc_by(n);
}

// ---- traces: OTLP trace ingest and the metrics derived from spans ----

/// Trace export requests per protocol and outcome (`ok`, `partial`, `4xx`, `5xx`).
pub static TRACE_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_traces_requests_total",
        "OTLP trace export requests, by protocol and outcome.",
        &["protocol", "outcome"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_traces_requests_total: {e}"))
});

/// Spans in decoded trace requests, accepted or not.
pub static SPANS_RECEIVED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_traces_spans_received_total",
        "Spans received in decoded OTLP trace requests, by protocol.",
        &["protocol"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_traces_spans_received_total: {e}"))
});

/// Spans refused, by protocol and reason (the converter's reasons, or `store`).
pub static SPANS_REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_traces_spans_rejected_total",
        "Spans rejected, by protocol and reason.",
        &["protocol", "reason"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_traces_spans_rejected_total: {e}"))
});

/// Spans stored after normalisation, by what was normalised.
pub static SPANS_NORMALIZED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_traces_spans_normalized_total",
        "Spans accepted after normalisation, by reason.",
        &["reason"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_traces_spans_normalized_total: {e}"))
});

/// Attribute values cut to `max_attribute_value_bytes`.
pub static ATTRIBUTE_VALUES_TRUNCATED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_traces_attribute_values_truncated_total",
        "Span, event, link and resource attribute values truncated to max_attribute_value_bytes."
    )
    .unwrap_or_else(|e| panic!("registering lookout_traces_attribute_values_truncated_total: {e}"))
});

/// Time to append one flush of derived series.
pub static DERIVED_FLUSH_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "lookout_traces_derived_flush_duration_seconds",
        "Time to store one flush of metrics derived from spans.",
        vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]
    )
    .unwrap_or_else(|e| panic!("registering lookout_traces_derived_flush_duration_seconds: {e}"))
});

/// Flushes of derived series the metrics store refused (retried).
pub static DERIVED_FLUSH_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_traces_derived_flush_failures_total",
        "Flushes of derived trace metrics the metrics store refused; they are retried."
    )
    .unwrap_or_else(|e| panic!("registering lookout_traces_derived_flush_failures_total: {e}"))
});

/// Derived samples stored.
pub static DERIVED_SAMPLES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_traces_derived_samples_total",
        "Samples of metrics derived from spans stored in the metrics store."
    )
    .unwrap_or_else(|e| panic!("registering lookout_traces_derived_samples_total: {e}"))
});

/// Derived samples the metrics store rejected, by reason.
pub static DERIVED_REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_traces_derived_rejected_samples_total",
        "Samples of metrics derived from spans rejected by the metrics store, by reason.",
        &["reason"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_traces_derived_rejected_samples_total: {e}"))
});

/// Observations not derived because `max_series` was reached.
pub static DERIVED_SERIES_DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_traces_derived_series_dropped_total",
        "Span and edge observations not derived because max_series keys are held."
    )
    .unwrap_or_else(|e| panic!("registering lookout_traces_derived_series_dropped_total: {e}"))
});

/// Derived keys held (span-metrics keys and service-graph edges).
pub static DERIVED_SERIES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "lookout_traces_derived_series",
        "Span-metrics keys and service-graph edges held in memory."
    )
    .unwrap_or_else(|e| panic!("registering lookout_traces_derived_series: {e}"))
});

/// Service-graph halves that expired without a partner, by side and what became of them.
pub static SERVICE_GRAPH_EXPIRED_EDGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_traces_service_graph_expired_edges_total",
        "Service-graph halves that found no partner in time, by side (client, server) and \
         outcome (virtual_node: an edge to the peer the client span names; unpaired: dropped).",
        &["side", "outcome"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_traces_service_graph_expired_edges_total: {e}"))
});

/// Halves dropped because `max_pending_edges` were waiting.
pub static SERVICE_GRAPH_DROPPED_SPANS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_traces_service_graph_dropped_spans_total",
        "Client/server spans not paired because max_pending_edges halves were waiting."
    )
    .unwrap_or_else(|e| panic!("registering lookout_traces_service_graph_dropped_spans_total: {e}"))
});

/// Halves waiting for a partner.
pub static SERVICE_GRAPH_PENDING: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "lookout_traces_service_graph_pending_edges",
        "Service-graph halves waiting for their partner."
    )
    .unwrap_or_else(|e| panic!("registering lookout_traces_service_graph_pending_edges: {e}"))
});
