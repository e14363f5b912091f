//! The TSDB's self-metrics, in the process-wide `prometheus` registry.

use std::sync::LazyLock;

use prometheus::{
    register_histogram, register_int_counter, register_int_counter_vec, register_int_gauge,
    Histogram, IntCounter, IntCounterVec, IntGauge,
};

fn fail(name: &str, e: prometheus::Error) -> ! {
    panic!("registering {name}: {e}")
}

pub static HEAD_SERIES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("lookout_tsdb_head_series", "Series in the in-memory head.")
        .unwrap_or_else(|e| fail("lookout_tsdb_head_series", e))
});

pub static HEAD_SAMPLES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "lookout_tsdb_head_samples",
        "Samples in the head not yet persisted."
    )
    .unwrap_or_else(|e| fail("lookout_tsdb_head_samples", e))
});

pub static WAL_RECORDS_SKIPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_tsdb_wal_records_skipped_total",
        "WAL records skipped at replay: one that passed its checksum but could not be \
         decoded, and every later record of its segment."
    )
    .unwrap_or_else(|e| fail("lookout_tsdb_wal_records_skipped_total", e))
});

pub static HEAD_CHUNKS_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "lookout_tsdb_head_chunks_bytes",
        "Bytes of closed head chunks in chunks_head/ files (written and buffered)."
    )
    .unwrap_or_else(|e| fail("lookout_tsdb_head_chunks_bytes", e))
});

pub static HEAD_CHUNK_WRITE_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_tsdb_head_chunk_write_failures_total",
        "Failed writes or creations of head chunk files; the chunks stay in memory."
    )
    .unwrap_or_else(|e| fail("lookout_tsdb_head_chunk_write_failures_total", e))
});

pub static SAMPLES_APPENDED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_tsdb_samples_appended_total",
        "Samples stored in the head."
    )
    .unwrap_or_else(|e| fail("lookout_tsdb_samples_appended_total", e))
});

pub static OUT_OF_ORDER: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_tsdb_out_of_order_samples_total",
        "Samples rejected as older than, or at the same time as but different from, the newest sample of their series."
    )
    .unwrap_or_else(|e| fail("lookout_tsdb_out_of_order_samples_total", e))
});

pub static DUPLICATES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_tsdb_duplicate_samples_total",
        "Identical re-sends of the newest sample of a series, ignored."
    )
    .unwrap_or_else(|e| fail("lookout_tsdb_duplicate_samples_total", e))
});

pub static BLOCKS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("lookout_tsdb_blocks", "Persisted blocks loaded.")
        .unwrap_or_else(|e| fail("lookout_tsdb_blocks", e))
});

pub static BLOCK_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "lookout_tsdb_block_bytes",
        "Bytes of all persisted blocks on disk."
    )
    .unwrap_or_else(|e| fail("lookout_tsdb_block_bytes", e))
});

pub static FLUSH_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "lookout_tsdb_flush_duration_seconds",
        "Time to persist the head to a block.",
        vec![0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0]
    )
    .unwrap_or_else(|e| fail("lookout_tsdb_flush_duration_seconds", e))
});

pub static FLUSHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_tsdb_flushes_total",
        "Head flushes by result (ok, empty, error).",
        &["result"]
    )
    .unwrap_or_else(|e| fail("lookout_tsdb_flushes_total", e))
});

pub static COMPACTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_tsdb_compactions_total",
        "Block compactions (one merge of several blocks into one) by result (ok, error).",
        &["result"]
    )
    .unwrap_or_else(|e| fail("lookout_tsdb_compactions_total", e))
});

pub static COMPACTION_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "lookout_tsdb_compaction_duration_seconds",
        "Time to merge blocks into one, from planning to the swap of the block list.",
        vec![0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1200.0]
    )
    .unwrap_or_else(|e| fail("lookout_tsdb_compaction_duration_seconds", e))
});
