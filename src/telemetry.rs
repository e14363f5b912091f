//! `GET /metrics`: the process-wide `prometheus` registry (collector, WAL and TSDB metrics
//! register there themselves) plus process and build metrics maintained here. Process
//! metrics are read from `/proc` at scrape time, which is cheap and needs no extra crate.

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus::{
    register_gauge, register_int_gauge, register_int_gauge_vec, Encoder, Gauge, IntGauge,
    IntGaugeVec, TextEncoder,
};

static BUILD_INFO: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "lookout_build_info",
        "Always 1; the version as a label.",
        &["version"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_build_info: {e}"))
});

/// 1 once the WAL is replayed and Lookout accepts writes.
pub static READY: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "lookout_ready",
        "1 when the store is open and Lookout serves writes and queries."
    )
    .unwrap_or_else(|e| panic!("registering lookout_ready: {e}"))
});

static CPU: LazyLock<Gauge> = LazyLock::new(|| {
    register_gauge!(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds."
    )
    .unwrap_or_else(|e| panic!("registering process_cpu_seconds_total: {e}"))
});
static RSS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "process_resident_memory_bytes",
        "Resident memory size in bytes."
    )
    .unwrap_or_else(|e| panic!("registering process_resident_memory_bytes: {e}"))
});
static VSZ: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes."
    )
    .unwrap_or_else(|e| panic!("registering process_virtual_memory_bytes: {e}"))
});
static FDS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("process_open_fds", "Number of open file descriptors.")
        .unwrap_or_else(|e| panic!("registering process_open_fds: {e}"))
});
static START: LazyLock<Gauge> = LazyLock::new(|| {
    register_gauge!(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds."
    )
    .unwrap_or_else(|e| panic!("registering process_start_time_seconds: {e}"))
});

/// Registers the metrics owned here; call once at start-up.
pub fn init() {
    BUILD_INFO
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    READY.set(0);
    if let Ok(d) = SystemTime::now().duration_since(UNIX_EPOCH) {
        START.set(d.as_secs_f64());
    }
    update_process();
}

/// Linux clock ticks per second; 100 on every platform Lookout targets.
const CLOCK_TICKS: f64 = 100.0;
const PAGE_SIZE: i64 = 4096;

fn update_process() {
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // fields after the command name, which is in parentheses and may contain spaces
        if let Some((_, rest)) = stat.rsplit_once(')') {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            // utime and stime are fields 14 and 15 of the full line: 11 and 12 here
            CPU.set((num(11) + num(12)) / CLOCK_TICKS);
            VSZ.set(num(20) as i64);
            RSS.set(num(21) as i64 * PAGE_SIZE);
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        FDS.set(dir.count() as i64);
    }
}

/// The `/metrics` handler.
pub async fn metrics() -> Response {
    update_process();
    let families = prometheus::gather();
    let encoder = TextEncoder::new();
    let mut buf = Vec::new();
    match encoder.encode(&families, &mut buf) {
        Ok(()) => {
            let mut resp = (StatusCode::OK, buf).into_response();
            if let Ok(v) = HeaderValue::from_str(encoder.format_type()) {
                resp.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "encoding /metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("encoding metrics failed: {e}\n"),
            )
                .into_response()
        }
    }
}
