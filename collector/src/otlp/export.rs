//! The protocol-independent half of an OTLP metrics export: convert, append, and build the
//! partial-success answer, recording self-metrics on the way. Conversion is CPU work over a
//! request of up to `max_request_body_bytes`, so it runs on the blocking pool.

use std::sync::{Arc, LazyLock};

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use store::MetricsAppender;

use super::convert::{convert, Converted};
use super::delta::DeltaAccumulator;
use crate::telemetry::{record_append, record_rejected};
use crate::IngestError;

/// Protocol label of OTLP/gRPC in self-metrics.
pub const PROTOCOL_GRPC: &str = "otlp_grpc";
/// Protocol label of OTLP/HTTP in self-metrics.
pub const PROTOCOL_HTTP: &str = "otlp_http";

/// One delta accumulator for the whole process, so a client that switches between OTLP/gRPC
/// and OTLP/HTTP keeps one cumulative stream per series.
static DELTA: LazyLock<Arc<DeltaAccumulator>> =
    LazyLock::new(|| Arc::new(DeltaAccumulator::default()));

pub(crate) fn shared_delta() -> Arc<DeltaAccumulator> {
    Arc::clone(&DELTA)
}

/// Converts on the blocking pool.
pub(crate) async fn convert_blocking(
    req: ExportMetricsServiceRequest,
    delta: Arc<DeltaAccumulator>,
) -> Result<Converted, IngestError> {
    tokio::task::spawn_blocking(move || convert(&req, &delta))
        .await
        .map_err(|e| {
            IngestError::Store(store::StoreError::Unavailable(format!(
                "otlp conversion task failed: {e}"
            )))
        })
}

/// Appends what the converter produced and returns the response, with a partial success
/// when the converter or the store refused anything. The store counts samples, not OTLP
/// points, so a refused histogram point counts once per refused bucket/sum/count sample:
/// the count can overstate points but never hides a refusal.
pub(crate) async fn append_converted(
    sink: &dyn MetricsAppender,
    converted: Converted,
    protocol: &str,
) -> Result<ExportMetricsServiceResponse, IngestError> {
    for (reason, n) in &converted.rejected_by_reason {
        record_rejected(protocol, reason, *n);
    }
    let mut rejected = converted.rejected_points;
    let mut message = converted.first_rejection;
    if !converted.batch.series.is_empty() {
        let samples = converted.batch.sample_count();
        let report = sink.append(converted.batch).await?;
        record_append(protocol, &report);
        let store_rejected = report.rejected_total();
        tracing::debug!(
            protocol,
            samples,
            accepted = report.accepted_samples,
            rejected = store_rejected,
            "otlp metrics appended"
        );
        rejected += store_rejected;
        if message.is_none() {
            message = report.first_rejection;
        }
    }
    let partial_success = (rejected > 0).then(|| ExportMetricsPartialSuccess {
        rejected_data_points: i64::try_from(rejected).unwrap_or(i64::MAX),
        error_message: message.unwrap_or_default(),
    });
    Ok(ExportMetricsServiceResponse { partial_success })
}

/// Outcome label for [`crate::telemetry::REQUESTS`].
pub(crate) fn outcome(resp: &ExportMetricsServiceResponse) -> &'static str {
    if resp.partial_success.is_some() {
        "partial"
    } else {
        "ok"
    }
}

/// Outcome label of an error: the HTTP status class, as the other protocols report it.
pub(crate) fn error_outcome(err: &IngestError) -> &'static str {
    if err.status().is_server_error() {
        "5xx"
    } else {
        "4xx"
    }
}
