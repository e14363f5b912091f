//! OTLP/HTTP receivers: one handler, generic over the signal ([`OtlpSignal`]), serves
//! `POST /v1/metrics`, `/v1/traces` and `/v1/logs` ([`export_router`]).
//!
//! Accepts `application/x-protobuf` and `application/json` (the OTLP JSON mapping: each
//! signal decodes it with opentelemetry-proto's serde support and its own fixes), optionally
//! `Content-Encoding: gzip`. The body is read with a hard cap of `max_request_body_bytes`, and
//! gzip is inflated under the same cap, so a small compressed bomb cannot grow past the limit.
//! Answers follow the OTLP/HTTP spec: 200 with the export response (partial success when
//! anything was refused) in the request's encoding; errors as a `google.rpc.Status` in that
//! encoding, with `Retry-After` when the client should retry.

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
use prost::Message;
use store::MetricsAppender;

use super::export::{MetricsExport, PROTOCOL_HTTP};
pub use super::signal::Encoding;
use super::signal::{record_answer, record_refusal, OtlpSignal, JSON, PROTOBUF};
use super::status::rpc_status;
use crate::error::RETRY_AFTER_SECS;
use crate::{IngestError, IngestLimits};

const ACCEPTED_TYPES: &str = "application/x-protobuf or application/json";

/// The OTLP/HTTP metrics router (`POST /v1/metrics`). Auth is layered on by the binary.
pub fn router(sink: Arc<dyn MetricsAppender>, limits: IngestLimits) -> Router {
    export_router(Arc::new(MetricsExport::new(sink, limits)))
}

/// The OTLP/HTTP router of a signal: `POST S::HTTP_PATH` with `signal`'s export. Auth is
/// layered on by the binary.
pub fn export_router<S: OtlpSignal>(signal: Arc<S>) -> Router {
    Router::new()
        .route(S::HTTP_PATH, post(export::<S>))
        .with_state(signal)
}

async fn export<S: OtlpSignal>(
    State(signal): State<Arc<S>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // the answer to a request whose type we do not know is JSON: readable by anyone
    let encoding = match request_encoding(&headers) {
        Ok(e) => e,
        Err(err) => return error_response::<S>(err, Encoding::Json),
    };
    match handle(signal, &headers, body, encoding).await {
        Ok(resp) => {
            record_answer::<S>(PROTOCOL_HTTP, &resp);
            success_response(&resp, S::has_partial_success(&resp), encoding)
        }
        Err(err) => error_response::<S>(err, encoding),
    }
}

async fn handle<S: OtlpSignal>(
    signal: Arc<S>,
    headers: &HeaderMap,
    body: Body,
    encoding: Encoding,
) -> Result<S::Response, IngestError> {
    let limit = signal.max_request_body_bytes();
    let gzip = content_encoding_is_gzip(headers)?;
    check_content_length(headers, limit)?;
    let raw = read_body(body, limit).await?;
    // inflating, decoding and converting are CPU work proportional to the body: the signal
    // runs this on the blocking pool with its conversion
    let decode = move || {
        let payload = if gzip { gunzip(&raw, limit)? } else { raw };
        S::decode(payload, encoding)
    };
    signal.export(decode, PROTOCOL_HTTP).await
}

/// Refuses a request whose declared length is over `limit` before reading it.
pub(crate) fn check_content_length(headers: &HeaderMap, limit: usize) -> Result<(), IngestError> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(IngestError::BodyTooLarge { limit });
        }
    }
    Ok(())
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

fn error_response<S: OtlpSignal>(err: IngestError, encoding: Encoding) -> Response {
    record_refusal::<S>(PROTOCOL_HTTP, &err);
    let body = encode(&rpc_status(&err), encoding);
    let mut resp = (
        err.status(),
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
