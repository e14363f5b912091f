//! The API's error type and its one mapping to Prometheus's `errorType` and HTTP status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use store::promql::{PromqlError, PromqlErrorKind};
use store::StoreError;

use crate::response::json_string;

/// Prometheus's `errorType` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    BadData,
    Execution,
    Timeout,
    Canceled,
    Internal,
    Unavailable,
    NotFound,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Canceled => "canceled",
            ErrorType::Internal => "internal",
            ErrorType::Unavailable => "unavailable",
            ErrorType::NotFound => "not_found",
        }
    }

    /// The HTTP status Prometheus answers with for this error type.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Timeout | ErrorType::Canceled | ErrorType::Unavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

/// An API error: `{"status":"error","errorType":...,"error":...}`, plus `"position":N` for
/// a log query that does not parse (0-based character offset of the problem).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub error_type: ErrorType,
    pub message: String,
    pub position: Option<usize>,
}

impl ApiError {
    pub fn new(error_type: ErrorType, message: impl Into<String>) -> Self {
        ApiError {
            error_type,
            message: message.into(),
            position: None,
        }
    }

    /// The same error, pointing at a character of the query.
    pub fn at_position(mut self, position: usize) -> Self {
        self.position = Some(position);
        self
    }

    pub fn bad_data(message: impl Into<String>) -> Self {
        Self::new(ErrorType::BadData, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorType::Internal, message)
    }
}

impl From<StoreError> for ApiError {
    /// Through [`PromqlError`], which holds the one mapping of store errors to error types.
    fn from(e: StoreError) -> Self {
        ApiError::from(PromqlError::Store(e))
    }
}

impl From<PromqlError> for ApiError {
    fn from(e: PromqlError) -> Self {
        let error_type = match e.kind() {
            PromqlErrorKind::BadData => ErrorType::BadData,
            PromqlErrorKind::Execution => ErrorType::Execution,
            PromqlErrorKind::Timeout => ErrorType::Timeout,
            PromqlErrorKind::Unavailable => ErrorType::Unavailable,
            PromqlErrorKind::Internal => ErrorType::Internal,
        };
        // Prometheus reports parse errors as a bad "query" parameter
        let message = match &e {
            PromqlError::Parse(m) => format!("invalid parameter \"query\": {m}"),
            other => other.to_string(),
        };
        ApiError::new(error_type, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.error_type == ErrorType::Internal {
            tracing::warn!(error = %self.message, "query api internal error");
        }
        let position = self
            .position
            .map(|p| format!(",\"position\":{p}"))
            .unwrap_or_default();
        let body = format!(
            "{{\"status\":\"error\",\"errorType\":\"{}\",\"error\":{}{position}}}",
            self.error_type.as_str(),
            json_string(&self.message)
        );
        let mut resp = (self.error_type.status(), body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}
