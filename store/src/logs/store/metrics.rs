//! The log store's self-metrics, in the process-wide `prometheus` registry. (The collector
//! counts what it received and rejected per protocol; these count what the store did.)

use std::sync::LazyLock;

use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge,
    HistogramVec, IntCounter, IntCounterVec, IntGauge,
};

fn fail(name: &str, e: prometheus::Error) -> ! {
    panic!("registering {name}: {e}")
}

pub static RECORDS_APPENDED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_logs_store_appended_records_total",
        "Log records written to the log WAL (acknowledged)."
    )
    .unwrap_or_else(|e| fail("lookout_logs_store_appended_records_total", e))
});

pub static BYTES_APPENDED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_logs_store_appended_bytes_total",
        "Encoded bytes of the log records written to the log WAL."
    )
    .unwrap_or_else(|e| fail("lookout_logs_store_appended_bytes_total", e))
});

pub static RECORDS_REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_logs_store_rejected_records_total",
        "Log records the store refused, by reason (severity, too_old, too_far_in_future, too_large).",
        &["reason"]
    )
    .unwrap_or_else(|e| fail("lookout_logs_store_rejected_records_total", e))
});

pub static RECORDS_INDEXED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_logs_indexed_records_total",
        "Log records added to a partition index (including WAL replay)."
    )
    .unwrap_or_else(|e| fail("lookout_logs_indexed_records_total", e))
});

pub static RECORDS_EXPIRED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_logs_expired_records_total",
        "Acknowledged log records not indexed because retention had already expired their partition."
    )
    .unwrap_or_else(|e| fail("lookout_logs_expired_records_total", e))
});

pub static OVERLOADED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_logs_appends_overloaded_total",
        "Log appends refused because the indexer queue was full."
    )
    .unwrap_or_else(|e| fail("lookout_logs_appends_overloaded_total", e))
});

pub static QUEUE_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "lookout_logs_indexer_queue_bytes",
        "Bytes of acknowledged log records waiting for the indexer."
    )
    .unwrap_or_else(|e| fail("lookout_logs_indexer_queue_bytes", e))
});

pub static PARTITIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "lookout_logs_partitions",
        "Log partitions (indexes) on disk."
    )
    .unwrap_or_else(|e| fail("lookout_logs_partitions", e))
});

pub static OPEN_WRITERS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "lookout_logs_open_writers",
        "Log partitions with an open index writer."
    )
    .unwrap_or_else(|e| fail("lookout_logs_open_writers", e))
});

pub static RECORDS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "lookout_logs_records",
        "Log records committed in all partitions (searchable)."
    )
    .unwrap_or_else(|e| fail("lookout_logs_records", e))
});

pub static DISK_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "lookout_logs_disk_bytes",
        "Bytes of all log partition files (index and document store, WAL excluded)."
    )
    .unwrap_or_else(|e| fail("lookout_logs_disk_bytes", e))
});

pub static COMMITS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_logs_commits_total",
        "Partition index commits by result (ok, error).",
        &["result"]
    )
    .unwrap_or_else(|e| fail("lookout_logs_commits_total", e))
});

pub static PARTITIONS_DELETED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_logs_partitions_deleted_total",
        "Log partitions deleted by retention."
    )
    .unwrap_or_else(|e| fail("lookout_logs_partitions_deleted_total", e))
});

pub static WAL_RECORDS_SKIPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_logs_wal_records_skipped_total",
        "Log WAL records (or records in them) that passed their checksum but could not be decoded at replay."
    )
    .unwrap_or_else(|e| fail("lookout_logs_wal_records_skipped_total", e))
});

pub static DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "lookout_logs_operation_duration_seconds",
        "Time of log store operations (append, commit, search, histogram, fields, merge, retention, wal_truncate).",
        &["operation"],
        vec![0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0]
    )
    .unwrap_or_else(|e| fail("lookout_logs_operation_duration_seconds", e))
});
