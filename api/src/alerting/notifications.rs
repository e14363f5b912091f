//! The delivery record: `GET /api/v1/notifications?receiver=&limit=` (every attempt,
//! newest first) and `POST /api/v1/receivers/{name}/test` (a synthetic alert through every
//! integration of a receiver now).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AlertingAppState;
use crate::error::{ApiError, ErrorType};
use crate::params::{invalid_param, Params};
use crate::response::success;
use crate::traces::json_success;

/// Attempts listed when `limit` is not given.
const DEFAULT_LIMIT: usize = 100;

/// `GET /api/v1/notifications`.
pub async fn list(State(state): AlertingAppState, params: Params) -> Result<Response, ApiError> {
    let alerter = state.alerter()?;
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| invalid_param("limit", format!("{v:?} is not a non-negative integer")))?,
    };
    let attempts = alerter.notifier().attempts(params.get("receiver"), limit);
    json_success(&attempts)
}

/// `POST /api/v1/receivers/{name}/test`: 200 with the attempts when every integration
/// delivered, 502 with them when any failed, 404 for an unknown receiver.
pub async fn test_receiver(
    State(state): AlertingAppState,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let alerter = state.alerter()?.clone();
    let Some(attempts) = alerter.notifier().test_receiver(&name).await else {
        return Err(ApiError::new(
            ErrorType::NotFound,
            format!("receiver {name:?} not found"),
        ));
    };
    let failed = attempts
        .iter()
        .any(|a| !matches!(a.outcome, alerter::notify::Outcome::Success));
    if failed {
        #[derive(Serialize)]
        struct Failed<'a, T> {
            status: &'static str,
            #[serde(rename = "errorType")]
            error_type: &'static str,
            error: String,
            data: &'a T,
        }
        let body = serde_json::to_string(&Failed {
            status: "error",
            error_type: "execution",
            error: format!("receiver {name:?}: a test notification was not delivered"),
            data: &attempts,
        })
        .map_err(|e| ApiError::internal(format!("encoding the answer failed: {e}")))?;
        let mut resp = success("null", &[]);
        *resp.status_mut() = StatusCode::BAD_GATEWAY;
        *resp.body_mut() = body.into();
        return Ok(resp.into_response());
    }
    json_success(&attempts)
}
