//! Lookout's collector: ingest protocols decoded into the store's signal model.
//!
//! Every protocol module only decodes its wire format, converts to [`store::MetricBatch`]
//! and calls [`store::MetricsAppender::append`]; it never reaches into store internals.
//! * [`otlp`]: OTLP metrics over gRPC (tonic service) and HTTP (`/v1/metrics`), OTLP
//!   traces ([`otlp::traces`]: `TraceService` and `/v1/traces`) into a
//!   [`store::traces::TracesAppender`], and OTLP logs ([`otlp::logs`]: `LogsService` and
//!   `/v1/logs`); one generic transport per protocol serves all three.
//! * [`logs`]: log ingest shared by OTLP logs and [`loki`] push (limits, severity, invalid
//!   UTF-8) into a [`store::logs::LogsAppender`], and the log-based metric
//!   `lookout_log_records_total`.
//! * [`loki`]: Loki push (`POST /loki/api/v1/push`, JSON and snappy protobuf).
//! * [`traces`]: metrics derived from spans (span metrics, service graph), written through
//!   [`store::MetricsAppender`].
//! * [`remote_write`]: Prometheus remote-write 1.0 (`POST /api/v1/write`).
//! * [`scrape`]: scrape manager pulling Prometheus text-format endpoints.
//! * [`error`]: [`IngestError`] and its one mapping to HTTP status.
//! * [`telemetry`]: the collector's self-metrics.

pub mod error;
pub mod logs;
pub mod loki;
pub mod otlp;
pub mod remote_write;
pub mod scrape;
pub mod telemetry;
pub mod traces;

pub use error::IngestError;

/// Limits applied by the collector before anything reaches the store.
#[derive(Clone, Debug, PartialEq)]
pub struct IngestLimits {
    /// Largest accepted request body, after decompression.
    pub max_request_body_bytes: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_request_body_bytes: 16 * 1024 * 1024,
        }
    }
}
