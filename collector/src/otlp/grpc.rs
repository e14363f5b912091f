//! OTLP/gRPC receivers: one tower service, [`OtlpGrpcService`], generic over the signal
//! ([`OtlpSignal`]), serves `MetricsService`, `TraceService` and `LogsService`.
//!
//! The service is served by hand rather than through the generated servers, so that refusals
//! of the payload itself are the client's fault, as a 400 is over HTTP:
//! - a payload that does not decode is answered `INVALID_ARGUMENT` with prost's message
//!   (tonic's `ProstCodec` answers `INTERNAL`, which clients retry). The codec hands the raw
//!   message over and the signal decodes it on the blocking pool with the conversion, the
//!   same step OTLP/HTTP uses;
//! - a gRPC frame longer than `max_request_body_bytes` is refused with `INVALID_ARGUMENT`
//!   naming the limit as soon as its 5-byte header arrives, before tonic buffers it (tonic
//!   itself answers `OUT_OF_RANGE`, which OTLP clients retry forever). A gzip frame that
//!   inflates past the limit is tonic's `RESOURCE_EXHAUSTED`, without a `RetryInfo`, so it is
//!   not retried either.
//!
//! gzip is accepted and sent. Errors from the export become `INVALID_ARGUMENT`,
//! `RESOURCE_EXHAUSTED` (overloaded) or `UNAVAILABLE`, retryable ones with a "retry after"
//! message and a `google.rpc.RetryInfo` detail. Auth is layered on by the binary.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame};
use store::MetricsAppender;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings};
use tonic::codegen::{BoxFuture, StdError};

use super::export::{MetricsExport, PROTOCOL_GRPC};
use super::signal::{record_answer, record_refusal, Encoding, OtlpSignal};
use super::status::tonic_status;
use crate::{IngestError, IngestLimits};

/// The metrics gRPC service name, as in the generated server.
pub const SERVICE_NAME: &str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
/// The one method the metrics service serves.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// Length of a gRPC message frame header: compression flag and big-endian u32 length.
const FRAME_HEADER_LEN: usize = 5;

/// An OTLP gRPC export service (a tower `Service` with a `NamedService` name), ready to add
/// to a `tonic::transport::Server` or `tonic::service::Routes`.
pub struct OtlpGrpcService<S> {
    signal: Arc<S>,
}

impl<S> Clone for OtlpGrpcService<S> {
    fn clone(&self) -> Self {
        OtlpGrpcService {
            signal: Arc::clone(&self.signal),
        }
    }
}

impl<S: OtlpSignal> OtlpGrpcService<S> {
    pub fn new(signal: Arc<S>) -> Self {
        OtlpGrpcService { signal }
    }
}

/// The OTLP gRPC service of a signal, over `signal`. Auth is layered on by the binary.
pub fn grpc_service<S: OtlpSignal>(signal: Arc<S>) -> OtlpGrpcService<S> {
    OtlpGrpcService::new(signal)
}

/// The OTLP metrics gRPC service.
pub type MetricsGrpcService = OtlpGrpcService<MetricsExport>;

/// The OTLP metrics gRPC service.
pub fn metrics_service(sink: Arc<dyn MetricsAppender>, limits: IngestLimits) -> MetricsGrpcService {
    OtlpGrpcService::new(Arc::new(MetricsExport::new(sink, limits)))
}

impl<S: OtlpSignal> tonic::server::NamedService for OtlpGrpcService<S> {
    const NAME: &'static str = S::GRPC_SERVICE;
}

impl<S, B> tonic::codegen::Service<http::Request<B>> for OtlpGrpcService<S>
where
    S: OtlpSignal,
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
        if req.uri().path() != S::GRPC_PATH {
            return Box::pin(async move { Ok(unimplemented_response()) });
        }
        let limit = self.signal.max_request_body_bytes();
        let method = ExportSvc(Arc::clone(&self.signal));
        let req = req.map(|body| FrameLimitedBody::new(body, limit, refuse::<S>));
        Box::pin(async move {
            let mut gzip = EnabledCompressionEncodings::default();
            gzip.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(ExportCodec::<S::Response>(PhantomData))
                .apply_compression_config(gzip, gzip)
                .apply_max_message_size_config(Some(limit), None);
            Ok(grpc.unary(method, req).await)
        })
    }
}

/// The answer to a path this service does not serve: gRPC `UNIMPLEMENTED`.
fn unimplemented_response() -> http::Response<tonic::body::Body> {
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
struct ExportSvc<S>(Arc<S>);

impl<S: OtlpSignal> tonic::server::UnaryService<Bytes> for ExportSvc<S> {
    type Response = S::Response;
    type Future = BoxFuture<tonic::Response<Self::Response>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let signal = Arc::clone(&self.0);
        Box::pin(async move {
            let message = request.into_inner();
            let decode = move || S::decode(message, Encoding::Protobuf);
            match signal.export(decode, PROTOCOL_GRPC).await {
                Ok(resp) => {
                    record_answer::<S>(PROTOCOL_GRPC, &resp);
                    Ok(tonic::Response::new(resp))
                }
                Err(err) => Err(refuse::<S>(&err)),
            }
        })
    }
}

/// Records and logs a refused export and returns its status.
fn refuse<S: OtlpSignal>(err: &IngestError) -> tonic::Status {
    record_refusal::<S>(PROTOCOL_GRPC, err);
    tonic_status(err)
}

/// Codec for the export method: responses (`T`) are protobuf; a request is handed over as
/// the raw message bytes (already inflated by tonic when gzip), so that decoding it runs with
/// the conversion on the blocking pool rather than on a runtime worker. A payload that does
/// not decode is refused there with `INVALID_ARGUMENT`.
struct ExportCodec<T>(PhantomData<fn() -> T>);

impl<T: prost::Message + Default + Send + 'static> Codec for ExportCodec<T> {
    type Encode = T;
    type Decode = Bytes;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

/// Yields a message's bytes undecoded (a split of tonic's buffer, not a copy).
struct RawDecoder;

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
struct FrameLimitedBody<B> {
    inner: Pin<Box<B>>,
    limit: usize,
    refuse: fn(&IngestError) -> tonic::Status,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    /// Bytes of the current message not yet seen.
    remaining: usize,
}

impl<B> FrameLimitedBody<B> {
    fn new(inner: B, limit: usize, refuse: fn(&IngestError) -> tonic::Status) -> Self {
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
