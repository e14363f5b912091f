//! The collector's error type and its single mapping to HTTP status (gRPC codes are mapped in
//! `otlp::grpc` from the same [`IngestError::class`]), and the per-reason tally converters
//! keep of the items they reject (`count_reason`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use store::{ErrorKind, StoreError};

/// Seconds a client is told to wait when Lookout is overloaded.
pub const RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The payload could not be decoded (truncated protobuf, bad snappy/gzip, bad JSON...).
    #[error("{0}")]
    Malformed(String),
    /// Content-Type is not one this endpoint accepts.
    #[error("unsupported content type {got:?}; expected {expected}")]
    UnsupportedContentType { got: String, expected: &'static str },
    /// The request body exceeds `max_request_body_bytes`.
    #[error("request body exceeds the limit max_request_body_bytes={limit}")]
    BodyTooLarge { limit: usize },
    /// Everything in the request was rejected by a limit or policy; the message names it.
    #[error("{0}")]
    Rejected(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a client should react to an [`IngestError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Do not retry: the request is wrong.
    BadRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    /// Retry later (queues full).
    Overloaded,
    /// Retry later (shutting down, not ready).
    Unavailable,
    Internal,
}

impl IngestError {
    pub fn class(&self) -> ErrorClass {
        match self {
            IngestError::Malformed(_) | IngestError::Rejected(_) => ErrorClass::BadRequest,
            IngestError::UnsupportedContentType { .. } => ErrorClass::UnsupportedMediaType,
            IngestError::BodyTooLarge { .. } => ErrorClass::PayloadTooLarge,
            IngestError::Store(e) => match e.kind() {
                ErrorKind::Overloaded => ErrorClass::Overloaded,
                ErrorKind::Unavailable => ErrorClass::Unavailable,
                ErrorKind::BadRequest | ErrorKind::LimitExceeded => ErrorClass::BadRequest,
                ErrorKind::Internal => ErrorClass::Internal,
            },
        }
    }

    pub fn status(&self) -> StatusCode {
        match self.class() {
            ErrorClass::BadRequest => StatusCode::BAD_REQUEST,
            ErrorClass::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorClass::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorClass::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the client should retry (and so gets a `Retry-After`).
    pub fn retryable(&self) -> bool {
        matches!(
            self.class(),
            ErrorClass::Overloaded | ErrorClass::Unavailable
        )
    }
}

/// Counts one more item rejected for `reason` in a converter's tally, reasons in the order
/// first seen.
pub(crate) fn count_reason<R: PartialEq>(by_reason: &mut Vec<(R, u64)>, reason: R) {
    match by_reason.iter_mut().find(|(r, _)| *r == reason) {
        Some((_, n)) => *n += 1,
        None => by_reason.push((reason, 1)),
    }
}

/// Plain-text error response, as Prometheus's remote-write receiver answers. OTLP/HTTP
/// handlers build their own `google.rpc.Status` body but use [`IngestError::status`].
impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry = self.retryable();
        let mut resp = (status, format!("{self}\n")).into_response();
        if retry {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        resp
    }
}
