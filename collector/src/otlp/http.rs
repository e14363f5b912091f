//! OTLP/HTTP metrics receiver: `POST /v1/metrics`.
//!
//! Accepts `application/x-protobuf` and `application/json` (the OTLP JSON mapping, decoded by
//! opentelemetry-proto's serde support with the fixes in [`super::json`]), optionally `Content-Encoding: gzip`. The body is read
//! with a hard cap of `max_request_body_bytes`, and gzip is inflated under the same cap, so a
//! small compressed bomb cannot grow past the limit. Answers follow the OTLP/HTTP spec: 200
//! with an `ExportMetricsServiceResponse` (partial success when anything was refused) in the
//! request's encoding; errors as a `google.rpc.Status` in that encoding, with `Retry-After`
//! when the client should retry.

use std::io::Read;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;
use store::MetricsAppender;

use super::delta::DeltaAccumulator;
use super::export::{
    append_converted, convert_blocking, decode_protobuf, error_outcome, outcome, shared_delta,
    PROTOCOL_HTTP,
};
use super::status::rpc_status;
use crate::error::RETRY_AFTER_SECS;
use crate::telemetry::REQUESTS;
use crate::{IngestError, IngestLimits};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";
const ACCEPTED_TYPES: &str = "application/x-protobuf or application/json";

/// Wire encoding of a request, and so of its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => PROTOBUF,
            Encoding::Json => JSON,
        }
    }
}

#[derive(Clone)]
struct HttpState {
    sink: Arc<dyn MetricsAppender>,
    limits: IngestLimits,
    delta: Arc<DeltaAccumulator>,
}

/// The OTLP/HTTP metrics router (`POST /v1/metrics`). Auth is layered on by the binary.
pub fn router(sink: Arc<dyn MetricsAppender>, limits: IngestLimits) -> Router {
    let state = HttpState {
        sink,
        limits,
        delta: shared_delta(),
    };
    Router::new()
        .route("/v1/metrics", post(export_metrics))
        .with_state(state)
}

async fn export_metrics(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // the answer to a request whose type we do not know is JSON: readable by anyone
    let encoding = match request_encoding(&headers) {
        Ok(e) => e,
        Err(err) => return error_response(err, Encoding::Json),
    };
    match handle(&state, &headers, body, encoding).await {
        Ok(resp) => {
            REQUESTS
                .with_label_values(&[PROTOCOL_HTTP, outcome(&resp)])
                .inc();
            success_response(&resp, resp.partial_success.is_some(), encoding)
        }
        Err(err) => error_response(err, encoding),
    }
}

async fn handle(
    state: &HttpState,
    headers: &HeaderMap,
    body: Body,
    encoding: Encoding,
) -> Result<ExportMetricsServiceResponse, IngestError> {
    let limit = state.limits.max_request_body_bytes;
    let gzip = content_encoding_is_gzip(headers)?;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(IngestError::BodyTooLarge { limit });
        }
    }
    let raw = read_body(body, limit).await?;
    // inflating, decoding and converting are CPU work proportional to the body: one trip to
    // the blocking pool keeps them off the runtime
    let converted = convert_blocking(
        move || {
            let payload = if gzip { gunzip(&raw, limit)? } else { raw };
            decode(&payload, encoding)
        },
        Arc::clone(&state.delta),
    )
    .await?;
    append_converted(state.sink.as_ref(), &state.delta, converted, PROTOCOL_HTTP).await
}

pub(crate) fn request_encoding(headers: &HeaderMap) -> Result<Encoding, IngestError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let mime = raw
        .as_deref()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match mime.as_str() {
        PROTOBUF => Ok(Encoding::Protobuf),
        JSON => Ok(Encoding::Json),
        _ => Err(IngestError::UnsupportedContentType {
            got: raw.unwrap_or_default(),
            expected: ACCEPTED_TYPES,
        }),
    }
}

pub(crate) fn content_encoding_is_gzip(headers: &HeaderMap) -> Result<bool, IngestError> {
    let Some(v) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(false);
    };
    let v = String::from_utf8_lossy(v.as_bytes())
        .trim()
        .to_ascii_lowercase();
    match v.as_str() {
        "gzip" => Ok(true),
        "" | "identity" => Ok(false),
        other => Err(IngestError::Malformed(format!(
            "unsupported Content-Encoding {other:?}; expected gzip or identity"
        ))),
    }
}

/// Reads the body, failing as soon as it passes `limit` bytes.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, IngestError> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| IngestError::Malformed(format!("failed to read request body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(IngestError::BodyTooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Inflates gzip without ever holding more than `limit + 1` bytes of output.
pub(crate) fn gunzip(raw: &[u8], limit: usize) -> Result<Bytes, IngestError> {
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(limit));
    let decoder = flate2::read::GzDecoder::new(raw);
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            IngestError::Malformed(format!("failed to decompress gzip request body: {e}"))
        })?;
    if out.len() > limit {
        return Err(IngestError::BodyTooLarge { limit });
    }
    Ok(Bytes::from(out))
}

fn decode(payload: &[u8], encoding: Encoding) -> Result<ExportMetricsServiceRequest, IngestError> {
    match encoding {
        Encoding::Protobuf => decode_protobuf(payload),
        Encoding::Json => super::json::decode_request(payload),
    }
}

pub(crate) fn encode<T: Message + serde::Serialize>(msg: &T, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => msg.encode_to_vec(),
        // serialising these plain structs cannot fail; an empty object is still valid OTLP
        Encoding::Json => serde_json::to_vec(msg).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

/// A 200 answer carrying `resp` (an OTLP export response of any signal); `partial_success`
/// says whether its `partial_success` field is set.
pub(crate) fn success_response<T: Message + serde::Serialize>(
    resp: &T,
    partial_success: bool,
    encoding: Encoding,
) -> Response {
    // proto3 JSON omits unset message fields; serde would write `"partialSuccess": null`
    let body = if encoding == Encoding::Json && !partial_success {
        b"{}".to_vec()
    } else {
        encode(resp, encoding)
    };
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        )],
        body,
    )
        .into_response()
}

fn error_response(err: IngestError, encoding: Encoding) -> Response {
    let status = err.status();
    REQUESTS
        .with_label_values(&[PROTOCOL_HTTP, error_outcome(&err)])
        .inc();
    if status.is_server_error() {
        tracing::warn!(protocol = PROTOCOL_HTTP, status = status.as_u16(), error = %err, "otlp export failed");
    } else {
        tracing::debug!(protocol = PROTOCOL_HTTP, status = status.as_u16(), error = %err, "otlp export refused");
    }
    let body = encode(&rpc_status(&err), encoding);
    let mut resp = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        )],
        body,
    )
        .into_response();
    if err.retryable() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
