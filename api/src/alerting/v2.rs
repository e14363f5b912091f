//! Alertmanager's v2 API: alerts (list, post), silences (list, create or update, get,
//! expire). JSON as Alertmanager 0.25 (camelCase, RFC 3339 times); bad requests are 400
//! with a message naming the problem, in the API's error envelope.

use alerter::dispatch::api_types::{parse_filter, AlertFilter, PostableAlert, PostableSilence};
use alerter::dispatch::silence::SilenceError;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AlertingAppState;
use crate::error::{ApiError, ErrorType};
use crate::params::Params;

/// A bare JSON answer (Alertmanager's v2 API has no `{"status":...}` envelope).
pub(super) fn json<T: Serialize>(status: StatusCode, value: &T) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(value)
        .map_err(|e| ApiError::internal(format!("encoding the answer failed: {e}")))?;
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// A boolean query parameter with Alertmanager's default of `true`.
fn bool_param(params: &Params, name: &str) -> Result<bool, ApiError> {
    match params.get(name) {
        None => Ok(true),
        Some(v) => v.parse::<bool>().map_err(|_| {
            ApiError::bad_data(format!(
                "invalid parameter {name:?}: {v:?} is not a boolean (true or false)"
            ))
        }),
    }
}

fn filters(params: &Params) -> Vec<String> {
    params
        .all("filter")
        .into_iter()
        .chain(params.all("filter[]"))
        .map(str::to_string)
        .collect()
}

/// The alert filter of `GET /api/v2/alerts` and `GET /api/v2/alerts/groups`.
fn alert_filter(params: &Params) -> Result<AlertFilter, ApiError> {
    let mut filter =
        AlertFilter::parse(&filters(params), params.get("receiver")).map_err(ApiError::bad_data)?;
    filter.silenced = bool_param(params, "silenced")?;
    filter.inhibited = bool_param(params, "inhibited")?;
    filter.active = bool_param(params, "active")?;
    filter.unprocessed = bool_param(params, "unprocessed")?;
    Ok(filter)
}

/// `GET /api/v2/alerts/groups`: the aggregation groups and their alerts.
pub async fn alert_groups(
    State(state): AlertingAppState,
    params: Params,
) -> Result<Response, ApiError> {
    let alerter = state.alerter()?;
    let filter = alert_filter(&params)?;
    json(StatusCode::OK, &alerter.dispatcher().groups(&filter))
}

/// `GET /api/v2/alerts?filter=&silenced=&inhibited=&active=&unprocessed=&receiver=`.
pub async fn get_alerts(
    State(state): AlertingAppState,
    params: Params,
) -> Result<Response, ApiError> {
    let alerter = state.alerter()?;
    let filter = alert_filter(&params)?;
    json(StatusCode::OK, &alerter.dispatcher().alerts(&filter))
}

/// `POST /api/v2/alerts`: a JSON list of alerts, as Prometheus sends them.
pub async fn post_alerts(
    State(state): AlertingAppState,
    body: Bytes,
) -> Result<Response, ApiError> {
    let alerter = state.alerter()?;
    let alerts: Vec<PostableAlert> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_data(format!("invalid alerts: {e}")))?;
    alerter
        .dispatcher()
        .post_alerts(alerts)
        .map_err(ApiError::bad_data)?;
    json(StatusCode::OK, &serde_json::Value::Null)
}

/// `GET /api/v2/silences?filter=`.
pub async fn get_silences(
    State(state): AlertingAppState,
    params: Params,
) -> Result<Response, ApiError> {
    let alerter = state.alerter()?;
    let matchers = parse_filter(&filters(&params)).map_err(ApiError::bad_data)?;
    json(
        StatusCode::OK,
        &alerter.dispatcher().silences().list(&matchers),
    )
}

#[derive(Serialize)]
struct SilenceCreated {
    #[serde(rename = "silenceID")]
    silence_id: String,
}

/// `POST /api/v2/silences`: creates a silence, or updates the one named by `id`.
pub async fn post_silence(
    State(state): AlertingAppState,
    body: Bytes,
) -> Result<Response, ApiError> {
    let alerter = state.alerter()?;
    let silence: PostableSilence = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_data(format!("invalid silence: {e}")))?;
    let id = alerter
        .dispatcher()
        .silences()
        .upsert(silence)
        .map_err(ApiError::bad_data)?;
    json(StatusCode::OK, &SilenceCreated { silence_id: id })
}

/// `GET /api/v2/silence/{id}`.
pub async fn get_silence(
    State(state): AlertingAppState,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let alerter = state.alerter()?;
    match alerter.dispatcher().silences().get(&id) {
        Some(s) => json(StatusCode::OK, &s),
        None => Err(ApiError::new(
            ErrorType::NotFound,
            format!("silence {id} not found"),
        )),
    }
}

/// `DELETE /api/v2/silence/{id}`: expires the silence now. An unknown id is a 404; one
/// already expired a 500, as Alertmanager answers.
pub async fn delete_silence(
    State(state): AlertingAppState,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let alerter = state.alerter()?;
    match alerter.dispatcher().silences().expire(&id) {
        Ok(()) => Ok(StatusCode::OK.into_response()),
        Err(SilenceError::NotFound) => Err(ApiError::new(
            ErrorType::NotFound,
            format!("silence {id} not found"),
        )),
        Err(e @ SilenceError::AlreadyExpired) => {
            Err(ApiError::internal(format!("silence {id}: {e}")))
        }
    }
}
