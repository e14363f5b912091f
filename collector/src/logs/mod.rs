//! Log ingest: OTLP logs ([`crate::otlp::logs`]: `LogsService/Export` and `POST /v1/logs`)
//! and Loki push ([`crate::loki`]: `POST /loki/api/v1/push`) converted into the store's
//! [`LogRecord`]s and appended through [`LogsAppender`], plus the log-based metric.
//!
//! Write path of a push, whatever the protocol ([`LogIngest::ingest`]):
//! 1. the log-based metric's counters are restored from the metrics store if they are not
//!    yet ([`metrics::LogMetrics::ready`]); until then pushes are refused as unavailable;
//! 2. unless the store says it would refuse the push whole ([`LogsAppender::check_accepting`]:
//!    overloaded, closed), on the blocking pool: inflate, decode and convert (the protocol's converter; the checks
//!    every protocol shares are in [`record`]: limits, ids, severity, invalid UTF-8);
//! 3. [`LogsAppender::append_logs`]: on return the accepted records are durable;
//! 4. the stored records are counted in `lookout_log_records_total` ([`metrics`]);
//! 5. the answer: success, or which records were rejected and why (OTLP partial success;
//!    Loki 400 naming the first problem, the valid rest stored).
//!
//! Mounting (by the binary): build one [`LogIngest`] with [`LogIngest::new`], add
//! [`crate::otlp::logs::grpc_service`] to the gRPC routes, merge
//! [`crate::otlp::logs::router`] into the OTLP/HTTP router and [`crate::loki::router`] into
//! the HTTP router; call [`LogIngest::shutdown`] after the servers stopped.

pub mod metrics;
pub mod record;
pub mod telemetry;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod test_support;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use store::logs::LogsAppender;
use store::{MetricsAppender, MetricsQuerier, StoreError};

pub use metrics::{LogMetrics, LogMetricsConfig};
pub use record::{ConvertedLogs, RejectReason};

use crate::IngestError;

/// Limits of log ingest, checked before anything reaches the store. A record over a
/// per-record limit is rejected alone, with the limit named in the answer.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLimits {
    /// Largest accepted request body (gRPC message), after decompression.
    pub max_request_body_bytes: usize,
    /// Longest record body (a Loki line), in bytes.
    pub max_body_bytes: usize,
    /// Most attributes on a record, and most resource attributes (Loki: structured metadata
    /// pairs, and stream labels).
    pub max_attributes: usize,
    /// Longest attribute (or label) value, in bytes.
    pub max_attribute_value_bytes: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            max_request_body_bytes: crate::IngestLimits::default().max_request_body_bytes,
            max_body_bytes: 256 * 1024,
            max_attributes: 128,
            max_attribute_value_bytes: crate::otlp::traces::TraceLimits::default()
                .max_attribute_value_bytes,
        }
    }
}

/// What became of a push's records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredLogs {
    /// Records stored.
    pub accepted: u64,
    /// Records rejected by the converter or the store.
    pub rejected: u64,
    /// The first rejection, naming the record and the problem.
    pub first_rejection: Option<String>,
}

impl StoredLogs {
    /// The rejections in one message: the first in full, with how many there were.
    pub fn rejection_message(&self) -> Option<String> {
        if self.rejected == 0 {
            return None;
        }
        let first = self
            .first_rejection
            .as_deref()
            .unwrap_or("refused by the log store");
        Some(if self.rejected > 1 {
            format!("{} log records rejected; first: {first}", self.rejected)
        } else {
            first.to_string()
        })
    }
}

/// Log ingest: the log store, the log-based metric and the limits, shared by the OTLP
/// receivers and Loki push.
pub struct LogIngest {
    logs: Arc<dyn LogsAppender>,
    metrics: Arc<LogMetrics>,
    limits: LogLimits,
}

/// Nanoseconds since the Unix epoch now: the observed time of records that carry none.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl LogIngest {
    /// Builds log ingest and starts the log-metric flusher (so: call inside a Tokio runtime).
    /// `metrics` receives `lookout_log_records_total`; `querier` reads its last values back at
    /// start. An invalid `metrics_config` is an error naming every problem.
    pub fn new(
        logs: Arc<dyn LogsAppender>,
        metrics: Arc<dyn MetricsAppender>,
        querier: Arc<dyn MetricsQuerier>,
        limits: LogLimits,
        metrics_config: LogMetricsConfig,
    ) -> Result<Arc<Self>, String> {
        let metrics = LogMetrics::start(metrics_config, metrics, querier)?;
        Ok(Arc::new(LogIngest {
            logs,
            metrics,
            limits,
        }))
    }

    pub fn limits(&self) -> &LogLimits {
        &self.limits
    }

    pub fn metrics(&self) -> &Arc<LogMetrics> {
        &self.metrics
    }

    /// Flushes the counters and stops their flusher; call after the servers stopped.
    pub async fn shutdown(&self) {
        self.metrics.shutdown().await;
    }

    /// One push: `convert` (decoding included) runs on the blocking pool and gets the limits
    /// and the receive time (ns); see the module docs for the rest. `protocol` labels the
    /// self-metrics.
    pub async fn ingest<F>(
        &self,
        convert: F,
        protocol: &'static str,
    ) -> Result<StoredLogs, IngestError>
    where
        F: FnOnce(&LogLimits, u64) -> Result<ConvertedLogs, IngestError> + Send + 'static,
    {
        self.metrics.ready().await?;
        // a push the store would refuse whole is refused before it is decoded: under
        // overload, refused pushes would otherwise cost as much CPU as accepted ones
        self.logs.check_accepting()?;
        let limits = self.limits.clone();
        let converted = tokio::task::spawn_blocking(move || convert(&limits, now_ns()))
            .await
            .map_err(|e| {
                IngestError::Store(StoreError::Unavailable(format!(
                    "log decoding task failed: {e}"
                )))
            })??;
        self.store(converted, protocol).await
    }

    /// Appends what a converter produced and counts it (steps 3-5 of the module docs): for
    /// callers that convert by themselves (benchmarks, other transports).
    pub async fn store(
        &self,
        converted: ConvertedLogs,
        protocol: &'static str,
    ) -> Result<StoredLogs, IngestError> {
        // counts may only be added once the stored counters are loaded (a no-op after that)
        self.metrics.ready().await?;
        let ConvertedLogs {
            batch,
            mut rejected,
            rejected_by_reason,
            mut first_rejection,
            invalid_utf8,
        } = converted;
        if invalid_utf8 > 0 {
            telemetry::INVALID_UTF8
                .with_label_values(&[protocol])
                .inc_by(invalid_utf8);
        }
        for (reason, n) in &rejected_by_reason {
            telemetry::RECORDS_REJECTED
                .with_label_values(&[protocol, reason.as_str()])
                .inc_by(*n);
        }
        let mut accepted = 0;
        if !batch.records.is_empty() {
            let records = batch.records.len() as u64;
            // counted before the batch moves into the store
            let counts =
                metrics::count_records(&batch.records, self.metrics.config().max_label_value_bytes);
            let report = self.logs.append_logs(batch).await?;
            accepted = report.accepted_records;
            if report.rejected_records > 0 {
                telemetry::RECORDS_REJECTED
                    .with_label_values(&[protocol, RejectReason::Store.as_str()])
                    .inc_by(report.rejected_records);
                rejected += report.rejected_records;
                if first_rejection.is_none() {
                    first_rejection = report.first_rejection;
                }
            }
            telemetry::RECORDS_RECEIVED
                .with_label_values(&[protocol])
                .inc_by(accepted);
            // The report says how many records the store refused, not which: when it kept
            // some and refused others (a batch straddling the retention edge) every record
            // of the batch is counted, as derived span metrics count spans the trace store
            // refused; a batch it refused whole is not counted.
            if accepted > 0 {
                self.metrics.add_counts(counts);
            }
            tracing::debug!(
                protocol,
                records,
                accepted,
                rejected = report.rejected_records,
                "log records stored"
            );
        }
        Ok(StoredLogs {
            accepted,
            rejected,
            first_rejection,
        })
    }
}
