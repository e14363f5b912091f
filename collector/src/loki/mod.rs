//! Loki push: `POST /loki/api/v1/push`, so promtail, Grafana Alloy, Vector and Fluent Bit
//! ship logs to Lookout unchanged.
//!
//! Encodings, as Loki reads them: `Content-Type: application/json` is the JSON form
//! ([`json`]); `application/x-protobuf` (or no content type) is a snappy block compressed
//! `logproto.PushRequest` ([`proto`]). Either may also be `Content-Encoding: gzip`
//! (`snappy` is accepted as a no-op for protobuf, which is snappy anyway). The body is read
//! and inflated under `max_request_body_bytes`.
//!
//! Streams become records as [`convert`] says (service and severity from the labels, the
//! structured metadata or the line) and go through [`LogIngest::ingest`]. Answers, as Loki
//! gives them: 204 when every entry was stored; 400 with a plain-text message naming the
//! problem for a body that does not decode, or when entries were rejected (a line over
//! `max_body_bytes`, a bad timestamp, bad labels, or the store refused them): the valid rest
//! is stored all the same, as Loki does; 413 / 415 for a body over the limit / an unknown
//! type; 429 / 503 with `Retry-After` when the store is overloaded / unavailable.

pub mod convert;
pub mod json;
pub mod labels;
pub mod proto;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use crate::logs::{telemetry, ConvertedLogs, LogIngest, StoredLogs};
use crate::otlp::http::{check_content_length, gunzip, read_body};
use crate::IngestError;

/// The push endpoint.
pub const PUSH_PATH: &str = "/loki/api/v1/push";
/// Protocol label of Loki push in self-metrics.
pub const PROTOCOL_LOKI: &str = "loki";

const ACCEPTED_TYPES: &str = "application/json or application/x-protobuf (snappy)";

/// The push body's encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    /// Snappy block compressed protobuf.
    Protobuf,
}

/// The Loki push router (`POST /loki/api/v1/push`). Auth is layered on by the binary.
pub fn router(ingest: Arc<LogIngest>) -> Router {
    Router::new()
        .route(PUSH_PATH, post(push))
        .with_state(ingest)
}

async fn push(State(ingest): State<Arc<LogIngest>>, headers: HeaderMap, body: Body) -> Response {
    match handle(&ingest, &headers, body).await {
        Ok(stored) => match stored.rejection_message() {
            None => {
                record("ok");
                StatusCode::NO_CONTENT.into_response()
            }
            Some(message) => {
                record("partial");
                tracing::debug!(
                    protocol = PROTOCOL_LOKI,
                    accepted = stored.accepted,
                    rejected = stored.rejected,
                    error = %message,
                    "loki push partly rejected"
                );
                (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
            }
        },
        Err(err) => {
            let server = err.status().is_server_error();
            record(if server { "5xx" } else { "4xx" });
            if server {
                tracing::warn!(protocol = PROTOCOL_LOKI, error = %err, "loki push failed");
            } else {
                tracing::debug!(protocol = PROTOCOL_LOKI, error = %err, "loki push refused");
            }
            err.into_response()
        }
    }
}

fn record(outcome: &str) {
    telemetry::REQUESTS
        .with_label_values(&[PROTOCOL_LOKI, outcome])
        .inc();
}

async fn handle(
    ingest: &LogIngest,
    headers: &HeaderMap,
    body: Body,
) -> Result<StoredLogs, IngestError> {
    let format = request_format(headers)?;
    let gzip = content_encoding_is_gzip(headers, format)?;
    let limit = ingest.limits().max_request_body_bytes;
    check_content_length(headers, limit)?;
    let raw = read_body(body, limit).await?;
    ingest
        .ingest(
            move |limits, now| {
                let mut out = ConvertedLogs::default();
                let payload = if gzip { gunzip(&raw, limit)? } else { raw };
                let streams = match format {
                    Format::Json => json::decode(&payload, &mut out.invalid_utf8)?,
                    Format::Protobuf => {
                        let inflated = proto::unsnappy(&payload, limit)?;
                        proto::decode(&inflated, &mut out.invalid_utf8)?
                    }
                };
                convert::convert_streams(streams, limits, now, &mut out);
                Ok(out)
            },
            PROTOCOL_LOKI,
        )
        .await
}

/// JSON or protobuf, from `Content-Type` (none is protobuf, as Loki reads it).
pub fn request_format(headers: &HeaderMap) -> Result<Format, IngestError> {
    let Some(raw) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Format::Protobuf);
    };
    let raw = String::from_utf8_lossy(raw.as_bytes()).into_owned();
    let mime = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(Format::Json),
        "application/x-protobuf" | "" => Ok(Format::Protobuf),
        _ => Err(IngestError::UnsupportedContentType {
            got: raw,
            expected: ACCEPTED_TYPES,
        }),
    }
}

/// Whether the body is gzip; `snappy` is accepted for protobuf (it is snappy anyway).
fn content_encoding_is_gzip(headers: &HeaderMap, format: Format) -> Result<bool, IngestError> {
    let Some(v) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(false);
    };
    let v = String::from_utf8_lossy(v.as_bytes())
        .trim()
        .to_ascii_lowercase();
    match (v.as_str(), format) {
        ("gzip", _) => Ok(true),
        ("" | "identity", _) | ("snappy", Format::Protobuf) => Ok(false),
        (other, _) => Err(IngestError::Malformed(format!(
            "unsupported Content-Encoding {other:?}; expected gzip or identity"
        ))),
    }
}
