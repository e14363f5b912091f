//! The trace store's self-metrics, in the process-wide `prometheus` registry.

use std::sync::LazyLock;

use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge,
    HistogramVec, IntCounter, IntCounterVec, IntGauge,
};

fn fail(name: &str, e: prometheus::Error) -> ! {
    panic!("registering {name}: {e}")
}

pub static SPANS_APPENDED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_traces_spans_appended_total",
        "Spans written to the trace WAL and the head."
    )
    .unwrap_or_else(|e| fail("lookout_traces_spans_appended_total", e))
});

pub static SPANS_REJECTED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_traces_store_rejected_spans_total",
        "Spans the trace store refused (all-zero trace or span id, span too large)."
    )
    .unwrap_or_else(|e| fail("lookout_traces_store_rejected_spans_total", e))
});

pub static HEAD_SPANS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "lookout_traces_head_spans",
        "Spans in memory not yet in a segment (the head and any head being flushed)."
    )
    .unwrap_or_else(|e| fail("lookout_traces_head_spans", e))
});

pub static HEAD_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "lookout_traces_head_bytes",
        "Approximate memory of the spans not yet in a segment."
    )
    .unwrap_or_else(|e| fail("lookout_traces_head_bytes", e))
});

pub static SEGMENTS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("lookout_traces_segments", "Trace segments on disk.")
        .unwrap_or_else(|e| fail("lookout_traces_segments", e))
});

pub static SEGMENT_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "lookout_traces_segment_bytes",
        "Bytes of all trace segment files."
    )
    .unwrap_or_else(|e| fail("lookout_traces_segment_bytes", e))
});

pub static SEGMENT_SPANS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "lookout_traces_segment_spans",
        "Spans in all trace segments."
    )
    .unwrap_or_else(|e| fail("lookout_traces_segment_spans", e))
});

pub static FLUSHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_traces_flushes_total",
        "Head flushes to segments by result (ok, empty, error).",
        &["result"]
    )
    .unwrap_or_else(|e| fail("lookout_traces_flushes_total", e))
});

pub static SEGMENTS_DELETED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_traces_segments_deleted_total",
        "Trace segments deleted by retention."
    )
    .unwrap_or_else(|e| fail("lookout_traces_segments_deleted_total", e))
});

pub static WAL_RECORDS_SKIPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_traces_wal_records_skipped_total",
        "Trace WAL records that passed their checksum but could not be decoded at replay."
    )
    .unwrap_or_else(|e| fail("lookout_traces_wal_records_skipped_total", e))
});

pub static OVERLOADED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_traces_appends_overloaded_total",
        "Appends refused because too much is waiting in memory for a flush."
    )
    .unwrap_or_else(|e| fail("lookout_traces_appends_overloaded_total", e))
});

pub static DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "lookout_traces_operation_duration_seconds",
        "Time of trace store operations (append, flush, trace, search, retention).",
        &["operation"],
        vec![0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0]
    )
    .unwrap_or_else(|e| fail("lookout_traces_operation_duration_seconds", e))
});
