//! The archive's self-metrics, in the process-wide `prometheus` registry.

use std::sync::LazyLock;

use prometheus::{
    register_int_counter, register_int_counter_vec, register_int_gauge_vec, IntCounter,
    IntCounterVec, IntGaugeVec,
};

use super::Manifest;

fn fail(name: &str, e: prometheus::Error) -> ! {
    panic!("registering {name}: {e}")
}

pub static WRITES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_archive_file_writes_total",
        "Archive files written and read back, by result (ok, error).",
        &["result"]
    )
    .unwrap_or_else(|e| fail("lookout_archive_file_writes_total", e))
});

pub static WRITTEN_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_archive_written_bytes_total",
        "Bytes of archive files written (and verified)."
    )
    .unwrap_or_else(|e| fail("lookout_archive_written_bytes_total", e))
});

pub static READ_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_archive_read_bytes_total",
        "Bytes of archive files fetched for queries (cache misses)."
    )
    .unwrap_or_else(|e| fail("lookout_archive_read_bytes_total", e))
});

pub static ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_archive_errors_total",
        "Failed archive operations by kind (manifest_read, manifest_write, read, move).",
        &["op"]
    )
    .unwrap_or_else(|e| fail("lookout_archive_errors_total", e))
});

pub static MOVES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_archive_moves_total",
        "Local blocks or partitions moved to the archive, by signal.",
        &["signal"]
    )
    .unwrap_or_else(|e| fail("lookout_archive_moves_total", e))
});

pub static FILES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "lookout_archive_files",
        "Files the archive manifest names, by signal.",
        &["signal"]
    )
    .unwrap_or_else(|e| fail("lookout_archive_files", e))
});

pub static BYTES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "lookout_archive_bytes",
        "Bytes of the files the archive manifest names, by signal.",
        &["signal"]
    )
    .unwrap_or_else(|e| fail("lookout_archive_bytes", e))
});

pub static PENDING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "lookout_archive_pending",
        "Local blocks or partitions older than the warm window still waiting to be moved, \
         by signal (they stay local and queryable until the move is confirmed).",
        &["signal"]
    )
    .unwrap_or_else(|e| fail("lookout_archive_pending", e))
});

/// The signals the archive holds files of.
const SIGNALS: &[&str] = &["metrics", "logs", "traces"];

pub fn set_manifest_gauges(m: &Manifest) {
    for &signal in SIGNALS {
        let (files, bytes, _) = m.totals(signal);
        FILES.with_label_values(&[signal]).set(files as i64);
        BYTES.with_label_values(&[signal]).set(bytes as i64);
    }
}

/// Counts a failed or completed move of one local block or partition.
pub fn moved(signal: &str) {
    MOVES.with_label_values(&[signal]).inc();
}

pub fn move_failed() {
    ERRORS.with_label_values(&["move"]).inc();
}

pub fn set_pending(signal: &str, n: usize) {
    PENDING.with_label_values(&[signal]).set(n as i64);
}
