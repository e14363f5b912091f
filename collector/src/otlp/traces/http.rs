//! OTLP/HTTP trace receiver: `POST /v1/traces`.
//!
//! Same wire handling as `/v1/metrics` (the helpers are shared with [`crate::otlp::http`]):
//! `application/x-protobuf` or `application/json` (OTLP/JSON: hex ids, enum names or numbers;
//! see `json.rs`), optionally `Content-Encoding: gzip`, the body read and inflated under a hard
//! cap of `max_request_body_bytes`. Answers follow the OTLP/HTTP spec: 200 with an
//! `ExportTraceServiceResponse` (a partial success when spans were refused) in the request's
//! encoding; errors as a `google.rpc.Status` in that encoding, with `Retry-After` when the
//! client should retry.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use super::{decode_protobuf, outcome, record_refusal, TraceIngest, PROTOCOL_HTTP};
use crate::error::RETRY_AFTER_SECS;
use crate::otlp::http::{
    content_encoding_is_gzip, encode, gunzip, read_body, request_encoding, success_response,
    Encoding,
};
use crate::otlp::status::rpc_status;
use crate::telemetry::TRACE_REQUESTS;
use crate::IngestError;

/// The OTLP/HTTP traces router (`POST /v1/traces`). Auth is layered on by the binary.
pub fn router(ingest: Arc<TraceIngest>) -> Router {
    Router::new()
        .route("/v1/traces", post(export_traces))
        .with_state(ingest)
}

async fn export_traces(
    State(ingest): State<Arc<TraceIngest>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // the answer to a request whose type we do not know is JSON: readable by anyone
    let encoding = match request_encoding(&headers) {
        Ok(e) => e,
        Err(err) => return error_response(err, Encoding::Json),
    };
    match handle(&ingest, &headers, body, encoding).await {
        Ok(resp) => {
            TRACE_REQUESTS
                .with_label_values(&[PROTOCOL_HTTP, outcome(&resp)])
                .inc();
            success_response(&resp, resp.partial_success.is_some(), encoding)
        }
        Err(err) => error_response(err, encoding),
    }
}

async fn handle(
    ingest: &TraceIngest,
    headers: &HeaderMap,
    body: Body,
    encoding: Encoding,
) -> Result<ExportTraceServiceResponse, IngestError> {
    let limit = ingest.limits().max_request_body_bytes;
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
    ingest
        .export(
            move || {
                let payload = if gzip { gunzip(&raw, limit)? } else { raw };
                decode(&payload, encoding)
            },
            PROTOCOL_HTTP,
        )
        .await
}

fn decode(payload: &[u8], encoding: Encoding) -> Result<ExportTraceServiceRequest, IngestError> {
    match encoding {
        Encoding::Protobuf => decode_protobuf(payload),
        Encoding::Json => super::json::decode_request(payload),
    }
}

fn error_response(err: IngestError, encoding: Encoding) -> Response {
    record_refusal(PROTOCOL_HTTP, &err);
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
