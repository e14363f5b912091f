//! OTLP/gRPC metrics receiver: `opentelemetry.proto.collector.metrics.v1.MetricsService`.
//!
//! The service is served by hand rather than through the generated `MetricsServiceServer`, so
//! that refusals of the payload itself are the client's fault, as a 400 is over HTTP:
//! - a payload that does not decode is answered `INVALID_ARGUMENT` with prost's message
//!   (tonic's `ProstCodec` answers `INTERNAL`, which clients retry). The codec hands the raw
//!   message over and the handler decodes it on the blocking pool with the conversion, the
//!   same step OTLP/HTTP uses;
//! - a gRPC frame longer than `max_request_body_bytes` is refused with `INVALID_ARGUMENT`
//!   naming the limit as soon as its 5-byte header arrives, before tonic buffers it (tonic
//!   itself answers `OUT_OF_RANGE`, which OTLP clients retry forever). A gzip frame that
//!   inflates past the limit is tonic's `RESOURCE_EXHAUSTED`, without a `RetryInfo`, so it is
//!   not retried either.
//!
//! gzip is accepted and sent. The shared export path converts and appends. Errors from it
//! become `INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED` (overloaded) or `UNAVAILABLE`, retryable
//! ones with a "retry after" message and a `google.rpc.RetryInfo` detail. Auth is layered on by
//! the binary.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use store::MetricsAppender;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings};
use tonic::codegen::{BoxFuture, StdError};

use super::delta::DeltaAccumulator;
use super::export::{
    append_converted, convert_blocking, decode_protobuf, error_outcome, outcome, shared_delta,
    PROTOCOL_GRPC,
};
use super::status::tonic_status;
use crate::telemetry::REQUESTS;
use crate::{IngestError, IngestLimits};

/// The gRPC service name, as in the generated server.
pub const SERVICE_NAME: &str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
/// The one method this service serves.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// Length of a gRPC message frame header: compression flag and big-endian u32 length.
const FRAME_HEADER_LEN: usize = 5;

/// The export handler behind [`MetricsGrpcService`].
pub struct OtlpMetricsService {
    sink: Arc<dyn MetricsAppender>,
    delta: Arc<DeltaAccumulator>,
}

/// The OTLP metrics gRPC service (a tower `Service` with a `NamedService` name), ready to add
/// to a `tonic::transport::Server` or `tonic::service::Routes`.
#[derive(Clone)]
pub struct MetricsGrpcService {
    inner: Arc<OtlpMetricsService>,
    max_message_bytes: usize,
}

/// The OTLP metrics gRPC service.
pub fn metrics_service(sink: Arc<dyn MetricsAppender>, limits: IngestLimits) -> MetricsGrpcService {
    MetricsGrpcService {
        inner: Arc::new(OtlpMetricsService {
            sink,
            delta: shared_delta(),
        }),
        max_message_bytes: limits.max_request_body_bytes,
    }
}

impl tonic::server::NamedService for MetricsGrpcService {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> tonic::codegen::Service<http::Request<B>> for MetricsGrpcService
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
        let limit = self.max_message_bytes;
        let method = ExportSvc(Arc::clone(&self.inner));
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

/// The answer to a path this service does not serve: gRPC `UNIMPLEMENTED`.
pub(crate) fn unimplemented_response() -> http::Response<tonic::body::Body> {
    let mut response = http::Response::new(tonic::body::Body::default());
    let headers = response.headers_mut();
    headers.insert(
        tonic::Status::GRPC_STATUS,
        (tonic::Code::Unimplemented as i32).into(),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        tonic::metadata::GRPC_CONTENT_TYPE,
    );
    response
}

/// The unary method, as the generated server wraps it.
struct ExportSvc(Arc<OtlpMetricsService>);

impl tonic::server::UnaryService<Bytes> for ExportSvc {
    type Response = ExportMetricsServiceResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let inner = Arc::clone(&self.0);
        Box::pin(async move { inner.export(request.into_inner()).await })
    }
}

impl OtlpMetricsService {
    async fn export(
        &self,
        req: Bytes,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        match self.export_inner(req).await {
            Ok(resp) => {
                REQUESTS
                    .with_label_values(&[PROTOCOL_GRPC, outcome(&resp)])
                    .inc();
                Ok(tonic::Response::new(resp))
            }
            Err(err) => Err(refuse(&err)),
        }
    }

    /// Decodes the message and converts it on the blocking pool, as OTLP/HTTP does, then
    /// appends.
    async fn export_inner(
        &self,
        message: Bytes,
    ) -> Result<ExportMetricsServiceResponse, IngestError> {
        let converted =
            convert_blocking(move || decode_protobuf(&message), Arc::clone(&self.delta)).await?;
        append_converted(self.sink.as_ref(), &self.delta, converted, PROTOCOL_GRPC).await
    }
}

/// Records and logs a refused export and returns its status.
fn refuse(err: &IngestError) -> tonic::Status {
    REQUESTS
        .with_label_values(&[PROTOCOL_GRPC, error_outcome(err)])
        .inc();
    if err.status().is_server_error() {
        tracing::warn!(protocol = PROTOCOL_GRPC, error = %err, "otlp export failed");
    } else {
        tracing::debug!(protocol = PROTOCOL_GRPC, error = %err, "otlp export refused");
    }
    tonic_status(err)
}

/// Codec for the export method: responses are protobuf; a request is handed over as the raw
/// message bytes (already inflated by tonic when gzip), so that decoding it runs with the
/// conversion on the blocking pool rather than on a runtime worker. A payload that does not
/// decode is refused there with `INVALID_ARGUMENT`.
struct ExportCodec;

impl Codec for ExportCodec {
    type Encode = ExportMetricsServiceResponse;
    type Decode = Bytes;
    type Encoder = tonic_prost::ProstEncoder<ExportMetricsServiceResponse>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

/// Yields a message's bytes undecoded (a split of tonic's buffer, not a copy).
pub(crate) struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// A request body that fails with `INVALID_ARGUMENT` naming `max_request_body_bytes` as soon
/// as a gRPC frame header announces a message longer than the limit. Tonic receives the
/// error as the body's and answers with it, before it reserves or reads the message.
/// `refuse` records the refusal in the service's self-metrics and builds the status.
pub(crate) struct FrameLimitedBody<B> {
    inner: Pin<Box<B>>,
    limit: usize,
    refuse: fn(&IngestError) -> tonic::Status,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    /// Bytes of the current message not yet seen.
    remaining: usize,
}

impl<B> FrameLimitedBody<B> {
    pub(crate) fn new(inner: B, limit: usize, refuse: fn(&IngestError) -> tonic::Status) -> Self {
        FrameLimitedBody {
            inner: Box::pin(inner),
            limit,
            refuse,
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            remaining: 0,
        }
    }

    /// Follows the frame boundaries through `data`; fails on an oversized frame.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), tonic::Status> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let skip = self.remaining.min(data.len());
                self.remaining -= skip;
                data = &data[skip..];
                continue;
            }
            let take = (FRAME_HEADER_LEN - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
            self.header_len += take;
            data = &data[take..];
            if self.header_len == FRAME_HEADER_LEN {
                self.header_len = 0;
                let [_, a, b, c, d] = self.header;
                let len = u32::from_be_bytes([a, b, c, d]) as usize;
                if len > self.limit {
                    return Err((self.refuse)(&IngestError::BodyTooLarge {
                        limit: self.limit,
                    }));
                }
                self.remaining = len;
            }
        }
        Ok(())
    }
}

impl<B> Body for FrameLimitedBody<B>
where
    B: Body,
    B::Error: Into<StdError>,
{
    type Data = Bytes;
    type Error = StdError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = match self.inner.as_mut().poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        // as contiguous `Bytes` (free for hyper's body, whose data already is `Bytes`)
        let frame = frame.map_data(|mut data| data.copy_to_bytes(data.remaining()));
        if let Some(data) = frame.data_ref() {
            if let Err(status) = self.scan(data) {
                return Poll::Ready(Some(Err(Box::new(status))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
