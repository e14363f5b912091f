//! OTLP logs ingest over gRPC and HTTP: [`grpc_service`]
//! (`opentelemetry.proto.collector.logs.v1.LogsService/Export`, gzip) and [`router`]
//! (`POST /v1/logs`, protobuf or JSON, gzip), both the generic [`crate::otlp::signal`]
//! transports over [`LogIngest`].
//!
//! Decoding: protobuf strictly first; when that fails and the lenient mirror ([`lenient`],
//! strings as bytes) decodes with invalid UTF-8 replaced, the push is kept and the
//! replacements counted. JSON: see [`json`]. Conversion: see [`convert`]. The answer: OK, with
//! a partial success counting the rejected records and naming the first (a record over a
//! limit names the limit); 400 / `INVALID_ARGUMENT` for a payload that does not decode; 429 /
//! `RESOURCE_EXHAUSTED` or 503 / `UNAVAILABLE` with a retry hint when the store says so.

pub mod convert;
mod json;
pub mod lenient;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prometheus::IntCounterVec;
use prost::Message;

use crate::logs::{telemetry, ConvertedLogs, LogIngest};
use crate::otlp::grpc::OtlpGrpcService;
use crate::otlp::signal::{Decode, Decoder, OtlpSignal};
use crate::IngestError;

/// The OTLP logs gRPC service over a [`LogIngest`] (`grpc_service`) and the OTLP/HTTP logs
/// router (`router`, `POST /v1/logs`): the generic transports.
pub use crate::otlp::{grpc::grpc_service, http::export_router as router};
pub use crate::otlp::{PROTOCOL_GRPC, PROTOCOL_HTTP};

/// The gRPC service name, as in the generated server.
pub const SERVICE_NAME: &str = "opentelemetry.proto.collector.logs.v1.LogsService";
/// The one method this service serves.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// The OTLP logs gRPC service (a tower `Service` with a `NamedService` name), ready to add to
/// a `tonic::transport::Server` or `tonic::service::Routes`.
pub type LogsGrpcService = OtlpGrpcService<LogIngest>;

/// A decoded request and the strings in it whose invalid UTF-8 was replaced.
#[derive(Debug)]
pub struct DecodedLogs {
    pub request: ExportLogsServiceRequest,
    pub invalid_utf8: u64,
}

/// Decodes a protobuf `ExportLogsServiceRequest`, through the lenient mirror when the strict
/// decoding fails and the mirror finds invalid UTF-8 (see the module docs).
pub fn decode_protobuf(payload: &[u8]) -> Result<DecodedLogs, IngestError> {
    let strict = match ExportLogsServiceRequest::decode(payload) {
        Ok(request) => {
            return Ok(DecodedLogs {
                request,
                invalid_utf8: 0,
            })
        }
        Err(e) => e,
    };
    if let Ok(lenient) = lenient::Request::decode(payload) {
        let mut invalid_utf8 = 0;
        let request = lenient.into_strict(&mut invalid_utf8);
        // the strict failure was the UTF-8; anything else fails both ways
        if invalid_utf8 > 0 {
            return Ok(DecodedLogs {
                request,
                invalid_utf8,
            });
        }
    }
    Err(IngestError::Malformed(format!(
        "failed to decode protobuf ExportLogsServiceRequest: {strict}"
    )))
}

impl OtlpSignal for LogIngest {
    type Request = DecodedLogs;
    type Response = ExportLogsServiceResponse;

    const SIGNAL: &'static str = "logs";
    const GRPC_SERVICE: &'static str = SERVICE_NAME;
    const GRPC_PATH: &'static str = EXPORT_PATH;
    const HTTP_PATH: &'static str = "/v1/logs";
    const DECODE_PROTOBUF: Decoder<Self::Request> = decode_protobuf;
    const DECODE_JSON: Decoder<Self::Request> = json::decode_request;

    fn max_request_body_bytes(&self) -> usize {
        self.limits().max_request_body_bytes
    }

    async fn export(
        self: Arc<Self>,
        decode: impl Decode<Self::Request>,
        protocol: &'static str,
    ) -> Result<Self::Response, IngestError> {
        let stored = self
            .ingest(
                move |limits, now| {
                    let decoded = decode()?;
                    let mut out = ConvertedLogs {
                        invalid_utf8: decoded.invalid_utf8,
                        ..Default::default()
                    };
                    convert::convert_request(decoded.request, limits, now, &mut out);
                    Ok(out)
                },
                protocol,
            )
            .await?;
        let partial_success =
            stored
                .rejection_message()
                .map(|error_message| ExportLogsPartialSuccess {
                    rejected_log_records: i64::try_from(stored.rejected).unwrap_or(i64::MAX),
                    error_message,
                });
        Ok(ExportLogsServiceResponse { partial_success })
    }

    fn requests() -> &'static IntCounterVec {
        &telemetry::REQUESTS
    }
}
