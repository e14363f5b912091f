//! The alerting API over a running [`Alerter`], as Prometheus and Alertmanager serve it:
//!
//! * `rules`: `GET /api/v1/rules` and `GET /api/v1/alerts` (Prometheus's JSON: rule
//!   groups with health, last error and evaluation times; pending and firing alerts with
//!   their value as a string);
//! * `v2`: Alertmanager's v2 API: `GET`/`POST /api/v2/alerts`, `GET /api/v2/alerts/groups`,
//!   `GET`/`POST /api/v2/silences`, `GET`/`DELETE /api/v2/silence/{id}`;
//! * `notifications`: `GET /api/v1/notifications` (every delivery attempt, newest first)
//!   and `POST /api/v1/receivers/{name}/test`.
//!
//! The routes are built before the alerter starts (it needs the stores, which open after
//! the listeners): until it is set in the [`AlerterCell`] every route answers 503.

mod notifications;
mod rules;
mod v2;

use std::sync::{Arc, OnceLock};

use alerter::service::Alerter;
use axum::routing::{get, post};
use axum::Router;

use crate::error::{ApiError, ErrorType};

/// Where the alerter is put once it runs.
pub type AlerterCell = Arc<OnceLock<Arc<Alerter>>>;

/// Shared state of the alerting routes.
pub struct AlertingState {
    cell: AlerterCell,
}

impl AlertingState {
    /// The running alerter, or 503 while Lookout is starting.
    fn alerter(&self) -> Result<&Arc<Alerter>, ApiError> {
        self.cell.get().ok_or_else(|| {
            ApiError::new(
                ErrorType::Unavailable,
                "lookout is starting: the alerter is not running yet",
            )
        })
    }
}

pub type AlertingAppState = axum::extract::State<Arc<AlertingState>>;

/// The alerting routes over a running alerter.
pub fn alerting_router(alerter: Arc<Alerter>) -> Router {
    let cell: AlerterCell = Arc::new(OnceLock::new());
    let _ = cell.set(alerter);
    alerting_router_lazy(cell)
}

/// The alerting routes over an alerter set in `cell` later; 503 until then.
pub fn alerting_router_lazy(cell: AlerterCell) -> Router {
    let state = Arc::new(AlertingState { cell });
    Router::new()
        .route("/api/v1/rules", get(rules::rules))
        .route("/api/v1/alerts", get(rules::alerts))
        .route("/api/v2/alerts", get(v2::get_alerts).post(v2::post_alerts))
        .route("/api/v2/alerts/groups", get(v2::alert_groups))
        .route(
            "/api/v2/silences",
            get(v2::get_silences).post(v2::post_silence),
        )
        .route(
            "/api/v2/silence/{id}",
            get(v2::get_silence).delete(v2::delete_silence),
        )
        .route("/api/v1/notifications", get(notifications::list))
        .route(
            "/api/v1/receivers/{name}/test",
            post(notifications::test_receiver),
        )
        .with_state(state)
}

#[cfg(test)]
mod tests;
