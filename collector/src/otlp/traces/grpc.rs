//! OTLP/gRPC trace receiver: `opentelemetry.proto.collector.trace.v1.TraceService`.
//!
//! Served by hand like the metrics service (see [`crate::otlp::grpc`], whose frame limit and
//! raw decoder it shares): the message reaches the handler undecoded, so a payload that does
//! not decode is `INVALID_ARGUMENT` (tonic's codec would answer `INTERNAL`, which clients
//! retry), and a frame over `max_request_body_bytes` is refused from its header with
//! `INVALID_ARGUMENT` naming the limit. gzip is accepted and sent. Overload is
//! `RESOURCE_EXHAUSTED`, unavailability `UNAVAILABLE`, both with a `RetryInfo`. Auth is layered
//! on by the binary.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Body;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use tonic::codec::{Codec, CompressionEncoding, EnabledCompressionEncodings};
use tonic::codegen::{BoxFuture, StdError};

use super::{decode_protobuf, outcome, record_refusal, TraceIngest, PROTOCOL_GRPC};
use crate::otlp::grpc::{unimplemented_response, FrameLimitedBody, RawDecoder};
use crate::otlp::status::tonic_status;
use crate::telemetry::TRACE_REQUESTS;
use crate::IngestError;

/// The gRPC service name, as in the generated server.
pub const SERVICE_NAME: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
/// The one method this service serves.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The OTLP trace gRPC service (a tower `Service` with a `NamedService` name), ready to add to
/// a `tonic::transport::Server` or `tonic::service::Routes`.
#[derive(Clone)]
pub struct TracesGrpcService {
    ingest: Arc<TraceIngest>,
}

/// The OTLP trace gRPC service over `ingest`.
pub fn grpc_service(ingest: Arc<TraceIngest>) -> TracesGrpcService {
    TracesGrpcService { ingest }
}

impl tonic::server::NamedService for TracesGrpcService {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> tonic::codegen::Service<http::Request<B>> for TracesGrpcService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != EXPORT_PATH {
            return Box::pin(async move { Ok(unimplemented_response()) });
        }
        let limit = self.ingest.limits().max_request_body_bytes;
        let method = ExportSvc(Arc::clone(&self.ingest));
        let req = req.map(|body| FrameLimitedBody::new(body, limit, refuse));
        Box::pin(async move {
            let mut gzip = EnabledCompressionEncodings::default();
            gzip.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(ExportCodec)
                .apply_compression_config(gzip, gzip)
                .apply_max_message_size_config(Some(limit), None);
            Ok(grpc.unary(method, req).await)
        })
    }
}

/// The unary method, as the generated server wraps it.
struct ExportSvc(Arc<TraceIngest>);

impl tonic::server::UnaryService<Bytes> for ExportSvc {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let ingest = Arc::clone(&self.0);
        Box::pin(async move {
            let message = request.into_inner();
            match ingest
                .export(move || decode_protobuf(&message), PROTOCOL_GRPC)
                .await
            {
                Ok(resp) => {
                    TRACE_REQUESTS
                        .with_label_values(&[PROTOCOL_GRPC, outcome(&resp)])
                        .inc();
                    Ok(tonic::Response::new(resp))
                }
                Err(err) => Err(refuse(&err)),
            }
        })
    }
}

/// Records and logs a refused export and returns its status.
fn refuse(err: &IngestError) -> tonic::Status {
    record_refusal(PROTOCOL_GRPC, err);
    tonic_status(err)
}

/// Codec for the export method: protobuf responses, raw request bytes (decoded on the
/// blocking pool with the conversion).
struct ExportCodec;

impl Codec for ExportCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = tonic_prost::ProstEncoder<ExportTraceServiceResponse>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}
