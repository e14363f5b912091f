//! The collector's self-metrics, registered in the process-wide `prometheus` registry that
//! `GET /metrics` exposes.

use std::sync::LazyLock;

use prometheus::{register_int_counter_vec, IntCounterVec};
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
