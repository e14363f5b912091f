//! OTLP/gRPC metrics receiver: `opentelemetry.proto.collector.metrics.v1.MetricsService`.
//!
//! tonic decodes (gzip accepted, message size capped at `max_request_body_bytes` after
//! decompression); the shared export path converts and appends. Errors become
//! `INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED` (overloaded) or `UNAVAILABLE`, retryable ones with
//! a "retry after" message and a `google.rpc.RetryInfo` detail. Auth is layered on by the binary.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use store::MetricsAppender;
use tonic::codec::CompressionEncoding;

use super::delta::DeltaAccumulator;
use super::export::{
    append_converted, convert_blocking, error_outcome, outcome, shared_delta, PROTOCOL_GRPC,
};
use super::status::tonic_status;
use crate::telemetry::REQUESTS;
use crate::{IngestError, IngestLimits};

/// The tonic service implementation behind [`metrics_service`].
pub struct OtlpMetricsService {
    sink: Arc<dyn MetricsAppender>,
    delta: Arc<DeltaAccumulator>,
}

/// The OTLP metrics gRPC service, ready to add to a `tonic::transport::Server`.
pub fn metrics_service(
    sink: Arc<dyn MetricsAppender>,
    limits: IngestLimits,
) -> MetricsServiceServer<impl MetricsService> {
    MetricsServiceServer::new(OtlpMetricsService {
        sink,
        delta: shared_delta(),
    })
    .accept_compressed(CompressionEncoding::Gzip)
    .send_compressed(CompressionEncoding::Gzip)
    .max_decoding_message_size(limits.max_request_body_bytes)
}

impl OtlpMetricsService {
    async fn export_inner(
        &self,
        req: ExportMetricsServiceRequest,
    ) -> Result<ExportMetricsServiceResponse, IngestError> {
        let converted = convert_blocking(req, Arc::clone(&self.delta)).await?;
        append_converted(self.sink.as_ref(), converted, PROTOCOL_GRPC).await
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpMetricsService {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        match self.export_inner(request.into_inner()).await {
            Ok(resp) => {
                REQUESTS
                    .with_label_values(&[PROTOCOL_GRPC, outcome(&resp)])
                    .inc();
                Ok(tonic::Response::new(resp))
            }
            Err(err) => {
                REQUESTS
                    .with_label_values(&[PROTOCOL_GRPC, error_outcome(&err)])
                    .inc();
                if err.status().is_server_error() {
                    tracing::warn!(protocol = PROTOCOL_GRPC, error = %err, "otlp export failed");
                } else {
                    tracing::debug!(protocol = PROTOCOL_GRPC, error = %err, "otlp export refused");
                }
                Err(tonic_status(&err))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
