//! Self-metrics of log ingest (OTLP logs, Loki push) and of the log-based metric, in the
//! process-wide `prometheus` registry that `GET /metrics` exposes. (The log store counts
//! what it did under `lookout_logs_store_*`; these count what ingest received.)

use std::sync::LazyLock;

use prometheus::{
    register_histogram, register_int_counter, register_int_counter_vec, register_int_gauge,
    Histogram, IntCounter, IntCounterVec, IntGauge,
};

fn fail(name: &str, e: prometheus::Error) -> ! {
    panic!("registering {name}: {e}")
}

/// Log push requests per protocol and outcome (`ok`, `partial`, `4xx`, `5xx`).
pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_logs_requests_total",
        "Log push requests (OTLP logs, Loki push), by protocol and outcome.",
        &["protocol", "outcome"]
    )
    .unwrap_or_else(|e| fail("lookout_logs_requests_total", e))
});

/// Records accepted and stored, per protocol.
pub static RECORDS_RECEIVED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_logs_received_records_total",
        "Log records accepted and stored, by protocol.",
        &["protocol"]
    )
    .unwrap_or_else(|e| fail("lookout_logs_received_records_total", e))
});

/// Records rejected, per protocol and reason.
pub static RECORDS_REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_logs_rejected_records_total",
        "Log records rejected, by protocol and reason (a limit, an invalid id or timestamp, \
         or store).",
        &["protocol", "reason"]
    )
    .unwrap_or_else(|e| fail("lookout_logs_rejected_records_total", e))
});

/// Strings with invalid UTF-8 replaced, per protocol.
pub static INVALID_UTF8: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_logs_invalid_utf8_total",
        "Invalid UTF-8 in log pushes replaced by U+FFFD (OTLP protobuf and Loki protobuf: \
         strings; JSON: invalid sequences), by protocol.",
        &["protocol"]
    )
    .unwrap_or_else(|e| fail("lookout_logs_invalid_utf8_total", e))
});

/// Time to store one flush of the log-based metric.
pub static METRICS_FLUSH_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "lookout_logs_metrics_flush_duration_seconds",
        "Time to store one flush of lookout_log_records_total.",
        vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]
    )
    .unwrap_or_else(|e| fail("lookout_logs_metrics_flush_duration_seconds", e))
});

/// Flushes of the log-based metric the metrics store refused (retried).
pub static METRICS_FLUSH_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_logs_metrics_flush_failures_total",
        "Flushes of lookout_log_records_total the metrics store refused; they are retried."
    )
    .unwrap_or_else(|e| fail("lookout_logs_metrics_flush_failures_total", e))
});

/// Records not counted because `max_series` keys are held.
pub static METRICS_SERIES_DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_logs_metrics_dropped_records_total",
        "Log records not counted in lookout_log_records_total because its max_series \
         service/severity pairs are held."
    )
    .unwrap_or_else(|e| fail("lookout_logs_metrics_dropped_records_total", e))
});

/// Series of the log-based metric held.
pub static METRICS_SERIES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "lookout_logs_metrics_series",
        "Service/severity pairs of lookout_log_records_total held in memory."
    )
    .unwrap_or_else(|e| fail("lookout_logs_metrics_series", e))
});
