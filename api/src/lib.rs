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
//!
//! [`traces_router`] serves the trace APIs over a [`TracesQuerier`] and the derived series:
//! * `traces`: `/api/v1/traces/{trace_id}` and trace search `/api/v1/traces`;
//! * `red`: `/api/v1/services`, `/api/v1/services/{service}/operations` and
//!   `/api/v1/service-graph`, PromQL over the series derived from spans at ingest;
//! * `jaeger`: Jaeger's query API (`/api/services`, `/api/operations`, `/api/traces`, ...) in
//!   Jaeger's JSON, for Jaeger UI and Grafana's Jaeger data source;
//! * `trace_params`: trace ids, span durations, logfmt tags, time windows.
//!
//! The answer for one trace links to its log records (`logsUrl`, `logCount`) when the
//! router is given a [`LogsQuerier`].
//!
//! [`alerting_router`] serves the alerting APIs over a running alerter (`alerting`):
//! Prometheus's `/api/v1/rules` and `/api/v1/alerts`, Alertmanager's v2 alerts and
//! silences, the delivery record `/api/v1/notifications` and receiver test-sends.
//!
//! [`logs_router`] serves the logs APIs over a [`LogsQuerier`] (`logs`):
//! `/api/v1/logs/query`, `/api/v1/logs/histogram`, `/api/v1/logs/tail` (server-sent events)
//! and `/api/v1/logs/fields`; records with a trace id link to the trace (`trace_url`).

pub mod alerting;
pub mod error;
mod handlers;
mod jaeger;
mod logs;
mod params;
mod red;
pub mod response;
mod trace_params;
mod traces;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use store::logs::LogsQuerier;
use store::promql::{Engine, EngineOptions};
use store::traces::TracesQuerier;
use store::MetricsQuerier;
use tokio::sync::watch;

pub use alerting::{alerting_router, alerting_router_lazy, AlerterCell};
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
        .route("/api/v1/status/tsdb", get(handlers::tsdb_status))
        .with_state(state)
}

/// The trace API routes (Lookout's and Jaeger's), ready to be merged beside [`router`]:
/// traces and searches come from `traces`, request rates, success rates, latencies and the
/// service graph from PromQL over the derived series in `metrics`. With `logs`, the answer
/// for one trace links to (and counts) the log records carrying its id.
pub fn traces_router(
    traces: Arc<dyn TracesQuerier>,
    metrics: Arc<dyn MetricsQuerier>,
    logs: Option<Arc<dyn LogsQuerier>>,
    opts: ApiOptions,
) -> Router {
    let engine = Engine::new(metrics.clone(), opts.engine);
    let state = Arc::new(traces::TracesState {
        traces,
        metrics,
        logs,
        engine,
    });
    Router::new()
        .route("/api/v1/status/traces", get(traces::status))
        .route("/api/v1/traces", get(traces::search))
        .route("/api/v1/traces/{trace_id}", get(traces::trace))
        .route("/api/v1/services", get(red::services))
        .route(
            "/api/v1/services/{service}/operations",
            get(red::operations),
        )
        .route("/api/v1/service-graph", get(red::graph))
        .route("/api/services", get(jaeger::services))
        .route(
            "/api/services/{service}/operations",
            get(jaeger::service_operations),
        )
        .route("/api/operations", get(jaeger::operations))
        .route("/api/traces", get(jaeger::search))
        .route("/api/traces/{trace_id}", get(jaeger::trace))
        .route("/api/dependencies", get(jaeger::dependencies))
        .with_state(state)
}

/// The logs API routes, ready to be merged beside [`router`]. Live tails end when
/// `shutdown` turns `true`, so a graceful shutdown is not held up by open streams.
pub fn logs_router(logs: Arc<dyn LogsQuerier>, shutdown: watch::Receiver<bool>) -> Router {
    let state = Arc::new(logs::LogsState { logs, shutdown });
    Router::new()
        .route("/api/v1/status/logs", get(logs::status))
        .route("/api/v1/logs/query", get(logs::query))
        .route("/api/v1/logs/histogram", get(logs::histogram))
        .route("/api/v1/logs/tail", get(logs::tail))
        .route("/api/v1/logs/fields", get(logs::fields))
        .with_state(state)
}

#[cfg(test)]
mod logs_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod traces_tests;
