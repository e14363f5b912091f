//! The WAL's self-metrics, in the process-wide `prometheus` registry that `GET /metrics`
//! exposes. Every series carries a `wal` label so the WALs of different signals (metrics
//! today, logs and traces later) are told apart.

use std::path::Path;
use std::sync::LazyLock;

use prometheus::{
    register_histogram_vec, register_int_counter_vec, register_int_gauge_vec, Histogram,
    HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
};

static APPENDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_wal_appends_total",
        "Records appended to the write-ahead log.",
        &["wal"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_wal_appends_total: {e}"))
});

static FSYNCS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_wal_fsyncs_total",
        "fsync calls on write-ahead log segments.",
        &["wal"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_wal_fsyncs_total: {e}"))
});

static BYTES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "lookout_wal_bytes",
        "Bytes of all write-ahead log segment files on disk.",
        &["wal"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_wal_bytes: {e}"))
});

static CORRUPTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_wal_corruptions_total",
        "Torn or corrupt write-ahead log segments found at replay.",
        &["wal"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_wal_corruptions_total: {e}"))
});

static FSYNC_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "lookout_wal_fsync_duration_seconds",
        "Duration of fsync calls on write-ahead log segments.",
        &["wal"],
        vec![0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]
    )
    .unwrap_or_else(|e| panic!("registering lookout_wal_fsync_duration_seconds: {e}"))
});

/// The metric handles of one WAL, resolved once.
#[derive(Clone)]
pub struct WalMetrics {
    pub appends: IntCounter,
    pub fsyncs: IntCounter,
    pub bytes: IntGauge,
    pub corruptions: IntCounter,
    pub fsync_seconds: Histogram,
}

impl WalMetrics {
    pub fn new(name: &str) -> Self {
        WalMetrics {
            appends: APPENDS.with_label_values(&[name]),
            fsyncs: FSYNCS.with_label_values(&[name]),
            bytes: BYTES.with_label_values(&[name]),
            corruptions: CORRUPTIONS.with_label_values(&[name]),
            fsync_seconds: FSYNC_SECONDS.with_label_values(&[name]),
        }
    }
}

/// The `wal` label for a WAL in `dir`: the directory's name, or its parent's when the
/// directory is just called `wal` (`data/metrics/wal` -> `metrics`), which is how every
/// signal lays out its WAL.
pub fn wal_name(dir: &Path) -> String {
    let last = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    match last(dir) {
        Some(n) if n == "wal" => dir.parent().and_then(last).unwrap_or(n),
        Some(n) => n,
        None => "wal".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_directory() {
        assert_eq!(wal_name(Path::new("data/metrics/wal")), "metrics");
        assert_eq!(wal_name(Path::new("/var/lib/lookout/logs-wal")), "logs-wal");
        assert_eq!(wal_name(Path::new("wal")), "wal");
        assert_eq!(wal_name(Path::new("/")), "wal");
    }
}
