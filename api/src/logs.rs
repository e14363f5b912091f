//! The logs query API over a [`LogsQuerier`], in the Prometheus API's envelope:
//!
//! * `GET /api/v1/logs/query?query=&start=&end=&limit=&direction=`: matching records,
//!   newest first (or oldest first with `direction=forward`);
//! * `GET /api/v1/logs/histogram?query=&start=&end=&step=&by=severity`: counts per step;
//! * `GET /api/v1/logs/tail?query=&start=&limit=`: new matching records as server-sent
//!   events (`tail`);
//! * `GET /api/v1/logs/fields?query=&start=&end=&top=`: fields of matching records and their
//!   most frequent values.
//!
//! Parameters are read by `params` (times as the Prometheus API reads them, at nanosecond
//! precision), answers written by `json`. Store calls are synchronous and run on blocking
//! threads. A query that does not parse is a 400 whose body carries the `position` of the
//! problem.

pub(crate) mod json;
mod params;
pub(crate) mod tail;

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use store::logs::{FieldsRequest, HistogramRequest, LogSearch, LogsQuerier};
use tokio::sync::watch;

use crate::error::ApiError;
use crate::handlers::blocking;
use crate::params::Params;
use crate::traces::json_success;
use json::{
    ArchiveStatsJson, FieldJson, FieldsData, HistogramData, QueryData, QueryStatsJson, RecordJson,
};
use params::{
    by_severity_param, direction_param, limit_param, now_nanos, query_param, step_param, top_param,
    Window,
};

/// Shared state of the logs routes.
pub struct LogsState {
    pub logs: Arc<dyn LogsQuerier>,
    /// Turns `true` when the server shuts down: live tails end then, so the server's
    /// graceful shutdown is not held up by streams that never finish.
    pub shutdown: watch::Receiver<bool>,
}

pub type LogsAppState = State<Arc<LogsState>>;

/// `GET /api/v1/logs/query`.
pub async fn query(State(state): LogsAppState, params: Params) -> Result<Response, ApiError> {
    let window = Window::from_params(&params, now_nanos())?;
    let search = LogSearch {
        query: query_param(&params)?,
        start_unix_nano: window.start,
        end_unix_nano: window.end,
        limit: limit_param(&params)?,
        direction: direction_param(&params)?,
    };
    let logs = state.logs.clone();
    let (records, stats) = blocking(move || Ok(logs.search_with_stats(&search)?)).await?;
    json_success(&QueryData {
        records: records.iter().map(RecordJson::new).collect(),
        stats: QueryStatsJson {
            archive: ArchiveStatsJson {
                files_read: stats.archive_files_read,
            },
        },
    })
}

/// `GET /api/v1/logs/histogram`.
pub async fn histogram(State(state): LogsAppState, params: Params) -> Result<Response, ApiError> {
    let window = Window::from_params(&params, now_nanos())?;
    let request = HistogramRequest {
        query: query_param(&params)?,
        start_unix_nano: window.start,
        end_unix_nano: window.end,
        step_nanos: step_param(&params, window)?,
    };
    let by_severity = by_severity_param(&params)?;
    let step = request.step_nanos;
    let logs = state.logs.clone();
    let buckets = blocking(move || Ok(logs.histogram(&request)?)).await?;
    json_success(&HistogramData::new(step, &buckets, by_severity))
}

/// `GET /api/v1/logs/fields`.
pub async fn fields(State(state): LogsAppState, params: Params) -> Result<Response, ApiError> {
    let window = Window::from_params(&params, now_nanos())?;
    let request = FieldsRequest {
        query: query_param(&params)?,
        start_unix_nano: window.start,
        end_unix_nano: window.end,
        top_values: top_param(&params)?,
        sample: 0,
    };
    let logs = state.logs.clone();
    let fields = blocking(move || Ok(logs.fields(&request)?)).await?;
    json_success(&FieldsData {
        fields: fields.iter().map(FieldJson::new).collect(),
    })
}

/// `GET /api/v1/status/logs`: the size of each tier of the log store (warm: the indexed
/// partitions on local disk, and the WAL; archive: the Parquet files its manifest names).
pub async fn status(State(state): LogsAppState) -> Result<Response, ApiError> {
    let logs = state.logs.clone();
    let t = blocking(move || {
        logs.tiers().ok_or_else(|| {
            ApiError::new(
                crate::error::ErrorType::Unavailable,
                "the log store is not open yet",
            )
        })
    })
    .await?;
    json_success(&serde_json::json!({
        "tiers": {
            "warm": {
                "partitions": t.warm.partitions,
                "records": t.warm.records,
                "bytes": t.warm.disk_bytes,
                "walBytes": t.warm.wal_bytes,
            },
            "archive": {"files": t.archive_files, "records": t.archive_records, "bytes": t.archive_bytes},
        }
    }))
}

pub use tail::tail;

/// Seconds before a trace's first span and after its last within which its log records
/// are looked for: services' clocks differ, and a record's time may be set by a collector.
pub const TRACE_LOGS_MARGIN_SECS: u64 = 60;

/// Where a trace's log records are: `trace_id:<id>` over the trace's time, widened by
/// [`TRACE_LOGS_MARGIN_SECS`] and rounded out to whole seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceLogs {
    pub query: String,
    pub start_secs: u64,
    pub end_secs: u64,
}

impl TraceLogs {
    pub fn new(trace_id: &str, start_unix_nano: u64, end_unix_nano: u64) -> Self {
        let nanos = params::NANOS_PER_SEC;
        TraceLogs {
            query: format!("trace_id:{trace_id}"),
            start_secs: (start_unix_nano / nanos).saturating_sub(TRACE_LOGS_MARGIN_SECS),
            end_secs: end_unix_nano
                .div_ceil(nanos)
                .saturating_add(TRACE_LOGS_MARGIN_SECS),
        }
    }

    /// `/api/v1/logs/query?query=trace_id:<id>&start=<s>&end=<s>`.
    pub fn url(&self) -> String {
        format!(
            "/api/v1/logs/query?query={}&start={}&end={}",
            self.query, self.start_secs, self.end_secs
        )
    }

    /// How many records [`TraceLogs::url`] finds (all of them, not only the first page):
    /// one histogram bucket over the window. Blocking.
    pub fn count(&self, logs: &dyn LogsQuerier) -> Result<u64, ApiError> {
        let nanos = params::NANOS_PER_SEC;
        let start = self.start_secs.saturating_mul(nanos);
        let end = self.end_secs.saturating_mul(nanos);
        let query = store::logs::LogQuery::parse(&self.query)
            .map_err(|e| ApiError::internal(format!("the trace's log query: {e}")))?;
        let buckets = logs.histogram(&HistogramRequest {
            query,
            start_unix_nano: start,
            end_unix_nano: end,
            step_nanos: end - start + 1,
        })?;
        Ok(buckets.iter().map(|b| b.count).sum())
    }
}
