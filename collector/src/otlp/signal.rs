//! What an OTLP signal (metrics, traces, logs) plugs into the one export path that serves
//! them all: the gRPC service ([`super::grpc::OtlpGrpcService`]) and the HTTP handler
//! ([`super::http::export_router`]) are written once, generic over [`OtlpSignal`].
//!
//! The transports own the wire: frame and body limits, gzip, content types, the gRPC codec,
//! status codes, `Retry-After`, request counting and refusal logging. A signal owns its
//! message types, its decoding (run on the blocking pool, inside [`OtlpSignal::export`], so a
//! big body never blocks a runtime worker) and what an export does.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prometheus::IntCounterVec;

use crate::IngestError;

/// Wire encoding of a request, and so of its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => PROTOBUF,
            Encoding::Json => JSON,
        }
    }
}

pub(crate) const PROTOBUF: &str = "application/x-protobuf";
pub(crate) const JSON: &str = "application/json";

/// A decoder of one encoding's payloads (inflated already).
pub type Decoder<R> = fn(&[u8]) -> Result<R, IngestError>;

/// What a transport hands to [`OtlpSignal::export`]: inflating and decoding the body, to run
/// on the blocking pool.
pub trait Decode<R>: FnOnce() -> Result<R, IngestError> + Send + 'static {}

impl<R, F> Decode<R> for F where F: FnOnce() -> Result<R, IngestError> + Send + 'static {}

/// The `partial_success` every OTLP export response has.
pub trait PartialSuccess {
    /// The items it counts as rejected; `None` when it is not set (it may be set with nothing
    /// rejected, to carry a warning).
    fn rejected(&self) -> Option<i64>;
}

macro_rules! partial_success {
    ($($response:ty => $field:ident),* $(,)?) => {$(
        impl PartialSuccess for $response {
            fn rejected(&self) -> Option<i64> {
                self.partial_success.as_ref().map(|p| p.$field)
            }
        }
    )*};
}

partial_success! {
    ExportMetricsServiceResponse => rejected_data_points,
    ExportTraceServiceResponse => rejected_spans,
    ExportLogsServiceResponse => rejected_log_records,
}

/// One OTLP signal's export method.
pub trait OtlpSignal: Send + Sync + 'static {
    /// The decoded request (the OTLP export request, plus whatever decoding noted).
    type Request: Send + 'static;
    /// The OTLP export response.
    type Response: prost::Message + serde::Serialize + Default + PartialSuccess + Send + 'static;

    /// `metrics`, `traces` or `logs`, in log lines.
    const SIGNAL: &'static str;
    /// The gRPC service name, as in the generated server.
    const GRPC_SERVICE: &'static str;
    /// The one gRPC method served.
    const GRPC_PATH: &'static str;
    /// The OTLP/HTTP path served (`/v1/logs`).
    const HTTP_PATH: &'static str;
    /// Decodes a protobuf payload.
    const DECODE_PROTOBUF: Decoder<Self::Request>;
    /// Decodes an OTLP/JSON payload.
    const DECODE_JSON: Decoder<Self::Request>;

    /// Largest request body (gRPC message) accepted, after decompression.
    fn max_request_body_bytes(&self) -> usize;

    /// Decodes a payload (inflated already). Called by `decode` closures handed to
    /// [`OtlpSignal::export`], on the blocking pool.
    fn decode(payload: Bytes, encoding: Encoding) -> Result<Self::Request, IngestError> {
        match encoding {
            Encoding::Protobuf => (Self::DECODE_PROTOBUF)(&payload),
            Encoding::Json => (Self::DECODE_JSON)(&payload),
        }
    }

    /// One export: `decode` must run on the blocking pool (it inflates and decodes a body of
    /// up to `max_request_body_bytes`). `protocol` is the self-metrics label.
    fn export(
        self: Arc<Self>,
        decode: impl Decode<Self::Request>,
        protocol: &'static str,
    ) -> impl Future<Output = Result<Self::Response, IngestError>> + Send;

    /// The outcome label of an answered request: `partial` when anything was rejected, `ok`
    /// otherwise (a warning alone is `ok`).
    fn outcome(resp: &Self::Response) -> &'static str {
        match resp.rejected() {
            Some(n) if n > 0 => "partial",
            _ => "ok",
        }
    }

    /// Whether the response's `partial_success` field is set (it may carry a warning with
    /// nothing rejected).
    fn has_partial_success(resp: &Self::Response) -> bool {
        resp.rejected().is_some()
    }

    /// Requests by protocol and outcome (`ok`, `partial`, `4xx`, `5xx`).
    fn requests() -> &'static IntCounterVec;
}

/// Counts an answered request.
pub(crate) fn record_answer<S: OtlpSignal>(protocol: &'static str, resp: &S::Response) {
    S::requests()
        .with_label_values(&[protocol, S::outcome(resp)])
        .inc();
}

/// Counts and logs a refused request.
pub(crate) fn record_refusal<S: OtlpSignal>(protocol: &'static str, err: &IngestError) {
    let server = err.status().is_server_error();
    S::requests()
        .with_label_values(&[protocol, if server { "5xx" } else { "4xx" }])
        .inc();
    let signal = S::SIGNAL;
    if server {
        tracing::warn!(protocol, signal, error = %err, "otlp export failed");
    } else {
        tracing::debug!(protocol, signal, error = %err, "otlp export refused");
    }
}
