//! The protocol-independent half of an OTLP metrics export ([`MetricsExport`], the metrics
//! [`OtlpSignal`]): convert, append, and build the partial-success answer, recording
//! self-metrics on the way. Conversion is CPU work over a request of up to
//! `max_request_body_bytes`, so it runs on the blocking pool.

use std::sync::{Arc, LazyLock};

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prometheus::IntCounterVec;
use prost::Message;
use store::MetricsAppender;

use super::convert::{convert, Converted};
use super::delta::DeltaAccumulator;
use super::signal::{Decode, Decoder, OtlpSignal};
use crate::telemetry::{record_append, record_rejected, REQUESTS};
use crate::{IngestError, IngestLimits};

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

/// OTLP metrics export: the metrics store, the shared delta accumulator and the limits.
pub struct MetricsExport {
    sink: Arc<dyn MetricsAppender>,
    delta: Arc<DeltaAccumulator>,
    limits: IngestLimits,
}

impl MetricsExport {
    pub fn new(sink: Arc<dyn MetricsAppender>, limits: IngestLimits) -> Self {
        MetricsExport {
            sink,
            delta: shared_delta(),
            limits,
        }
    }
}

impl OtlpSignal for MetricsExport {
    type Request = ExportMetricsServiceRequest;
    type Response = ExportMetricsServiceResponse;

    const SIGNAL: &'static str = "metrics";
    const GRPC_SERVICE: &'static str = super::grpc::SERVICE_NAME;
    const GRPC_PATH: &'static str = super::grpc::EXPORT_PATH;
    const HTTP_PATH: &'static str = "/v1/metrics";
    const DECODE_PROTOBUF: Decoder<Self::Request> = decode_protobuf;
    const DECODE_JSON: Decoder<Self::Request> = super::json::decode_request;

    fn max_request_body_bytes(&self) -> usize {
        self.limits.max_request_body_bytes
    }

    /// Decodes and converts on the blocking pool, then appends.
    async fn export(
        self: Arc<Self>,
        decode: impl Decode<Self::Request>,
        protocol: &'static str,
    ) -> Result<Self::Response, IngestError> {
        let converted = convert_blocking(decode, Arc::clone(&self.delta)).await?;
        append_converted(self.sink.as_ref(), &self.delta, converted, protocol).await
    }

    fn requests() -> &'static IntCounterVec {
        &REQUESTS
    }
}

/// Decodes a protobuf `ExportMetricsServiceRequest`; a payload that does not decode is the
/// client's fault.
pub(crate) fn decode_protobuf(payload: &[u8]) -> Result<ExportMetricsServiceRequest, IngestError> {
    ExportMetricsServiceRequest::decode(payload).map_err(|e| {
        IngestError::Malformed(format!(
            "failed to decode protobuf ExportMetricsServiceRequest: {e}"
        ))
    })
}

/// Runs `decode` (inflating and decoding the body, CPU work proportional to it) and the
/// conversion in one trip to the blocking pool, off the runtime's workers.
pub(crate) async fn convert_blocking<F>(
    decode: F,
    delta: Arc<DeltaAccumulator>,
) -> Result<Converted, IngestError>
where
    F: FnOnce() -> Result<ExportMetricsServiceRequest, IngestError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || decode().map(|req| convert(&req, &delta)))
        .await
        .map_err(|e| {
            IngestError::Store(store::StoreError::Unavailable(format!(
                "otlp decoding task failed: {e}"
            )))
        })?
}

/// Appends what the converter produced and returns the response, with a partial success
/// when the converter or the store refused anything. The store counts samples, not OTLP
/// points, so a refused histogram point counts once per refused bucket/sum/count sample:
/// the count can overstate points but never hides a refusal.
///
/// When the store refuses the whole batch (an error: nothing was stored, and the client
/// retries), the delta streams the conversion advanced are rolled back in `delta`, so the
/// retry is accumulated rather than refused as out of order.
pub(crate) async fn append_converted(
    sink: &dyn MetricsAppender,
    delta: &DeltaAccumulator,
    converted: Converted,
    protocol: &str,
) -> Result<ExportMetricsServiceResponse, IngestError> {
    let Converted {
        batch,
        rejected_points,
        rejected_by_reason,
        first_rejection,
        delta_undo,
    } = converted;
    for (reason, n) in &rejected_by_reason {
        record_rejected(protocol, reason, *n);
    }
    let mut rejected = rejected_points;
    let mut message = first_rejection;
    if !batch.series.is_empty() {
        let samples = batch.sample_count();
        let report = match sink.append(batch).await {
            Ok(report) => report,
            Err(e) => {
                delta.rollback(delta_undo);
                return Err(e.into());
            }
        };
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, number_data_point, AggregationTemporality, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum,
    };

    use super::*;
    use crate::otlp::test_support::{gauge_request, RecordingSink, SinkMode, T1};

    const SECOND: u64 = 1_000_000_000;

    /// One delta monotonic counter point `jobs_done_total` covering `start..time`.
    fn delta_counter(start: u64, time: u64, value: f64) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "jobs.done".to_string(),
                        data: Some(Data::Sum(Sum {
                            data_points: vec![NumberDataPoint {
                                start_time_unix_nano: start,
                                time_unix_nano: time,
                                value: Some(number_data_point::Value::AsDouble(value)),
                                ..Default::default()
                            }],
                            aggregation_temporality: AggregationTemporality::Delta as i32,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    async fn export(
        sink: &RecordingSink,
        delta: &Arc<DeltaAccumulator>,
        req: ExportMetricsServiceRequest,
    ) -> Result<ExportMetricsServiceResponse, IngestError> {
        let converted = convert_blocking(move || Ok(req), Arc::clone(delta))
            .await
            .unwrap();
        append_converted(sink, delta, converted, PROTOCOL_HTTP).await
    }

    #[tokio::test]
    async fn a_delta_request_the_store_refused_is_accumulated_on_retry() {
        let first = || delta_counter(T1 - 10 * SECOND, T1, 3.0);
        let second = || delta_counter(T1, T1 + 10 * SECOND, 4.0);

        // what the store holds when every append succeeds at once
        let expected = RecordingSink::new(SinkMode::Accept);
        let fresh = Arc::new(DeltaAccumulator::default());
        export(&expected, &fresh, first()).await.unwrap();
        export(&expected, &fresh, second()).await.unwrap();

        for mode in [SinkMode::Overloaded, SinkMode::Unavailable] {
            let delta = Arc::new(DeltaAccumulator::default());
            let stored = RecordingSink::new(SinkMode::Accept);
            export(&stored, &delta, first()).await.unwrap();
            let refused = RecordingSink::new(mode);
            let err = export(&refused, &delta, second()).await.unwrap_err();
            assert!(err.retryable(), "{mode:?}: {err}");
            // the identical retry continues the stream: no partial success, same total
            let resp = export(&stored, &delta, second()).await.unwrap();
            assert_eq!(resp.partial_success, None, "{mode:?}");
            assert_eq!(stored.rendered(), expected.rendered(), "{mode:?}");
            assert!(
                stored.rendered().iter().any(|s| s.ends_with(" 7")),
                "{:?}",
                stored.rendered()
            );
        }

        // a refused first request (the stream's creation) is undone as well
        let delta = Arc::new(DeltaAccumulator::default());
        let refused = RecordingSink::new(SinkMode::Overloaded);
        export(&refused, &delta, first()).await.unwrap_err();
        assert!(delta.is_empty());
        let stored = RecordingSink::new(SinkMode::Accept);
        export(&stored, &delta, first()).await.unwrap();
        export(&stored, &delta, second()).await.unwrap();
        assert_eq!(stored.rendered(), expected.rendered());
    }

    #[tokio::test]
    async fn a_stored_delta_request_advances_the_stream() {
        let delta = Arc::new(DeltaAccumulator::default());
        let sink = RecordingSink::new(SinkMode::Accept);
        export(&sink, &delta, delta_counter(T1 - 10 * SECOND, T1, 3.0))
            .await
            .unwrap();
        let resp = export(&sink, &delta, delta_counter(T1, T1 + 10 * SECOND, 4.0))
            .await
            .unwrap();
        assert_eq!(resp.partial_success, None);
        // a re-sent stored point is refused, never counted twice
        let resp = export(&sink, &delta, delta_counter(T1, T1 + 10 * SECOND, 4.0))
            .await
            .unwrap();
        assert_eq!(resp.partial_success.unwrap().rejected_data_points, 1);
        // and the stream continues from the stored total
        export(
            &sink,
            &delta,
            delta_counter(T1 + 10 * SECOND, T1 + 20 * SECOND, 1.0),
        )
        .await
        .unwrap();
        let values: Vec<String> = sink
            .rendered()
            .iter()
            .map(|s| s.rsplit(' ').next().unwrap().to_string())
            .collect();
        assert_eq!(values, vec!["3", "7", "8"]);
    }

    #[test]
    fn cumulative_data_logs_no_undo() {
        let delta = DeltaAccumulator::default();
        let converted = convert(&gauge_request("g", 1.0), &delta);
        assert!(converted.delta_undo.is_empty());
        assert!(delta.is_empty());
    }
}
