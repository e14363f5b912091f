//! OTLP trace ingest over gRPC and HTTP.
//!
//! Write path: the OTLP receivers ([`grpc_service`]:
//! `opentelemetry.proto.collector.trace.v1.TraceService/Export`, gzip; [`router`]:
//! `POST /v1/traces`, protobuf or JSON with hex ids, gzip; both the generic
//! [`crate::otlp::signal`] transports) hand the raw payload to [`TraceIngest`]'s export:
//! 1. the derived counters are restored from the metrics store if they are not yet
//!    ([`crate::traces::Deriver::ready`]);
//! 2. on the blocking pool: decode, [`convert`] to a [`store::traces::SpanBatch`] (validation
//!    and normalisation, documented there) and prepare the derived observations;
//! 3. [`TracesAppender::append_spans`]: on return the spans are durable;
//! 4. the derived observations are merged and the request waits for the flush that stores
//!    them ([`crate::traces::deriver`]);
//! 5. the answer: OK, with a partial success naming the first rejected span when the
//!    converter or the store refused some (or a warning when attribute values were truncated).
//!
//! Errors follow the OTLP spec: a payload that does not decode, or more spans than
//! `max_spans_per_request`, is 400 / `INVALID_ARGUMENT`; an overloaded store is 429 /
//! `RESOURCE_EXHAUSTED`, an unavailable one 503 / `UNAVAILABLE`, both with a retry hint. A
//! refused request stored nothing and derived nothing, except when the derived flush times out
//! after the spans were stored (see [`crate::traces::deriver`]).
//!
//! Mounting (by the binary): build one [`TraceIngest`] with [`TraceIngest::new`], merge
//! [`router`] into the OTLP/HTTP router and add [`grpc_service`] to the gRPC routes; call
//! [`TraceIngest::shutdown`] after the servers stopped.

pub mod convert;
mod json;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prometheus::IntCounterVec;
use prost::Message;
use store::traces::TracesAppender;
use store::{MetricsAppender, MetricsQuerier, StoreError};

pub use convert::TraceLimits;

use crate::otlp::grpc::OtlpGrpcService;
use crate::otlp::signal::{Decode, Decoder, OtlpSignal};
use crate::telemetry;
use crate::traces::{DeriveConfig, Deriver, Prepared};
use crate::IngestError;
use convert::{convert_request, ConvertedSpans};

/// The OTLP trace gRPC service over a [`TraceIngest`] (`grpc_service`) and the OTLP/HTTP
/// traces router (`router`, `POST /v1/traces`): the generic transports.
pub use crate::otlp::{grpc::grpc_service, http::export_router as router};
pub use crate::otlp::{PROTOCOL_GRPC, PROTOCOL_HTTP};

/// The gRPC service name, as in the generated server.
pub const SERVICE_NAME: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
/// The one method this service serves.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The OTLP trace gRPC service (a tower `Service` with a `NamedService` name), ready to add to
/// a `tonic::transport::Server` or `tonic::service::Routes`.
pub type TracesGrpcService = OtlpGrpcService<TraceIngest>;

/// The reason label of spans the trace store refused.
const STORE_REASON: &str = "store";

/// OTLP trace ingest: the trace store, the derived-metrics engine and the limits, shared by the
/// gRPC service and the HTTP router.
pub struct TraceIngest {
    traces: Arc<dyn TracesAppender>,
    deriver: Arc<Deriver>,
    limits: TraceLimits,
}

impl TraceIngest {
    /// Builds trace ingest and starts the derived-metrics flusher (so: call inside a Tokio
    /// runtime). `metrics` receives the derived series; `querier` reads their last values
    /// back at start (see [`crate::traces::restore`]). An invalid `derive` config is an error
    /// naming every problem.
    pub fn new(
        traces: Arc<dyn TracesAppender>,
        metrics: Arc<dyn MetricsAppender>,
        querier: Arc<dyn MetricsQuerier>,
        limits: TraceLimits,
        derive: DeriveConfig,
    ) -> Result<Arc<Self>, String> {
        let deriver = Deriver::start(derive, metrics, querier)?;
        Ok(Arc::new(TraceIngest {
            traces,
            deriver,
            limits,
        }))
    }

    pub fn limits(&self) -> &TraceLimits {
        &self.limits
    }

    pub fn deriver(&self) -> &Arc<Deriver> {
        &self.deriver
    }

    /// Flushes what was derived and stops the flusher; requests after this are refused as
    /// unavailable.
    pub async fn shutdown(&self) {
        self.deriver.shutdown().await;
    }

    /// An export of a protobuf `ExportTraceServiceRequest`, as the gRPC service does it
    /// without the transport (benchmarks; other transports). Counted as `otlp_grpc`.
    pub async fn export_protobuf(
        &self,
        payload: Bytes,
    ) -> Result<ExportTraceServiceResponse, IngestError> {
        self.run_export(move || decode_protobuf(&payload), PROTOCOL_GRPC)
            .await
    }

    /// One export: `decode` runs on the blocking pool with the conversion. See the module docs.
    pub(crate) async fn run_export<F>(
        &self,
        decode: F,
        protocol: &'static str,
    ) -> Result<ExportTraceServiceResponse, IngestError>
    where
        F: FnOnce() -> Result<ExportTraceServiceRequest, IngestError> + Send + 'static,
    {
        self.deriver.ready().await?;
        let limits = self.limits.clone();
        let deriver = Arc::clone(&self.deriver);
        let (converted, prepared) = tokio::task::spawn_blocking(move || {
            let converted = convert_request(decode()?, &limits)?;
            let prepared = deriver.prepare(&converted.batch);
            Ok::<_, IngestError>((converted, prepared))
        })
        .await
        .map_err(|e| {
            IngestError::Store(StoreError::Unavailable(format!(
                "otlp trace decoding task failed: {e}"
            )))
        })??;
        self.store(converted, prepared, protocol).await
    }

    async fn store(
        &self,
        converted: ConvertedSpans,
        prepared: Prepared,
        protocol: &'static str,
    ) -> Result<ExportTraceServiceResponse, IngestError> {
        let ConvertedSpans {
            batch,
            received_spans,
            mut rejected_spans,
            rejected_by_reason,
            first_rejection,
            truncated_values,
            end_before_start,
        } = converted;
        telemetry::SPANS_RECEIVED
            .with_label_values(&[protocol])
            .inc_by(received_spans);
        for (reason, n) in &rejected_by_reason {
            telemetry::SPANS_REJECTED
                .with_label_values(&[protocol, reason.as_str()])
                .inc_by(*n);
        }
        let mut message = first_rejection;
        if !batch.resource_spans.is_empty() {
            let spans = batch.span_count();
            let report = self.traces.append_spans(batch).await?;
            if report.rejected_spans > 0 {
                telemetry::SPANS_REJECTED
                    .with_label_values(&[protocol, STORE_REASON])
                    .inc_by(report.rejected_spans);
                rejected_spans += report.rejected_spans;
                if message.is_none() {
                    message = report.first_rejection;
                }
            }
            // every span that passed conversion was a call that happened, so it is counted even
            // if the store refused to keep it (the client will not send it again)
            if truncated_values > 0 {
                telemetry::ATTRIBUTE_VALUES_TRUNCATED.inc_by(truncated_values);
            }
            if end_before_start > 0 {
                telemetry::SPANS_NORMALIZED
                    .with_label_values(&["end_before_start"])
                    .inc_by(end_before_start);
            }
            let epoch = if prepared.halves.len() > BLOCKING_APPLY_HALVES {
                let deriver = Arc::clone(&self.deriver);
                tokio::task::spawn_blocking(move || deriver.apply(prepared))
                    .await
                    .map_err(|e| {
                        IngestError::Store(StoreError::Unavailable(format!(
                            "deriving trace metrics failed: {e}"
                        )))
                    })?
            } else {
                self.deriver.apply(prepared)
            };
            if let Some(epoch) = epoch {
                self.deriver.wait_flushed(epoch).await?;
            }
            tracing::debug!(
                protocol,
                spans,
                accepted = report.accepted_spans,
                "otlp spans stored"
            );
        }
        let warning = (truncated_values > 0).then(|| {
            format!(
                "{truncated_values} attribute value(s) longer than \
                 max_attribute_value_bytes={} truncated",
                self.limits.max_attribute_value_bytes
            )
        });
        let message = match (message, warning) {
            (Some(m), Some(w)) => Some(format!("{m}; {w}")),
            (m, w) => m.or(w),
        };
        let partial_success = message.map(|mut error_message| {
            if rejected_spans > 1 {
                error_message = format!("{rejected_spans} spans rejected; first: {error_message}");
            }
            ExportTracePartialSuccess {
                rejected_spans: i64::try_from(rejected_spans).unwrap_or(i64::MAX),
                error_message,
            }
        });
        Ok(ExportTraceServiceResponse { partial_success })
    }
}

/// Above this many halves to pair, merging runs on the blocking pool.
const BLOCKING_APPLY_HALVES: usize = 2048;

/// Decodes a protobuf `ExportTraceServiceRequest`; a payload that does not decode is the
/// client's fault.
pub(crate) fn decode_protobuf(payload: &[u8]) -> Result<ExportTraceServiceRequest, IngestError> {
    ExportTraceServiceRequest::decode(payload).map_err(|e| {
        IngestError::Malformed(format!(
            "failed to decode protobuf ExportTraceServiceRequest: {e}"
        ))
    })
}

impl OtlpSignal for TraceIngest {
    type Request = ExportTraceServiceRequest;
    type Response = ExportTraceServiceResponse;

    const SIGNAL: &'static str = "traces";
    const GRPC_SERVICE: &'static str = SERVICE_NAME;
    const GRPC_PATH: &'static str = EXPORT_PATH;
    const HTTP_PATH: &'static str = "/v1/traces";
    const DECODE_PROTOBUF: Decoder<Self::Request> = decode_protobuf;
    const DECODE_JSON: Decoder<Self::Request> = json::decode_request;

    fn max_request_body_bytes(&self) -> usize {
        self.limits.max_request_body_bytes
    }

    async fn export(
        self: Arc<Self>,
        decode: impl Decode<Self::Request>,
        protocol: &'static str,
    ) -> Result<Self::Response, IngestError> {
        self.run_export(decode, protocol).await
    }

    fn requests() -> &'static IntCounterVec {
        &telemetry::TRACE_REQUESTS
    }
}
