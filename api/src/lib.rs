//! Lookout's HTTP query APIs: the Prometheus HTTP API over a [`store::MetricsQuerier`].
//!
//! * [`router`]: the routes (`/api/v1/query`, `/api/v1/query_range`, `/api/v1/series`,
//!   `/api/v1/labels`, `/api/v1/label/{name}/values`, `/api/v1/metadata`,
//!   `/api/v1/status/buildinfo`, `/api/v1/format_query`); query answers carry Prometheus's
//!   `stats` object when asked with `stats=`.
//! * `params`: parameters from the URL and form bodies; times, durations, `match[]`.
//! * `handlers`: one function per endpoint; store and engine work runs in `spawn_blocking`.
//! * [`response`]: Prometheus's JSON shapes and number formatting.
//! * [`error`]: [`ApiError`] and its one mapping to `errorType` and HTTP status.

pub mod error;
mod handlers;
mod params;
pub mod response;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use store::promql::{Engine, EngineOptions};
use store::MetricsQuerier;

pub use error::{ApiError, ErrorType};

/// Options of the query API.
#[derive(Clone, Debug, Default)]
pub struct ApiOptions {
    /// Lookback, sample budget and default timeout of PromQL queries.
    pub engine: EngineOptions,
}

/// The Prometheus HTTP API routes, ready to be merged into the HTTP port's router.
pub fn router(querier: Arc<dyn MetricsQuerier>, opts: ApiOptions) -> Router {
    let engine = Engine::new(querier.clone(), opts.engine);
    let state = Arc::new(handlers::ApiState { querier, engine });
    Router::new()
        .route("/api/v1/query", get(handlers::query).post(handlers::query))
        .route(
            "/api/v1/query_range",
            get(handlers::query_range).post(handlers::query_range),
        )
        .route(
            "/api/v1/series",
            get(handlers::series).post(handlers::series),
        )
        .route(
            "/api/v1/labels",
            get(handlers::labels).post(handlers::labels),
        )
        .route("/api/v1/label/{name}/values", get(handlers::label_values))
        .route("/api/v1/metadata", get(handlers::metadata))
        .route(
            "/api/v1/format_query",
            get(handlers::format_query).post(handlers::format_query),
        )
        .route("/api/v1/status/buildinfo", get(handlers::buildinfo))
        .with_state(state)
}

#[cfg(test)]
mod tests;
