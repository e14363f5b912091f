//! One handler per endpoint. Each parses its parameters, runs the engine or the querier on
//! a blocking thread (both are synchronous and may read disk), and answers in Prometheus's
//! shapes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::response::Response;
use store::promql::{Engine, QueryResult};
use store::MetricsQuerier;

use crate::error::ApiError;
use crate::params::{
    invalid_param, limit_param, match_params, parse_duration_ms, parse_time, time_param,
    timeout_param, Params, MAX_TIME_MS, MIN_TIME_MS,
};
use crate::response::{json_string, labels_array, query_success, string_array, success};

/// Shared state of the API handlers.
pub struct ApiState {
    pub querier: Arc<dyn MetricsQuerier>,
    pub engine: Engine,
}

type AppState = State<Arc<ApiState>>;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Runs blocking store or engine work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("query task failed: {e}")))?
}

fn query_param(params: &Params) -> Result<String, ApiError> {
    // Prometheus hands an absent query to the parser, which reports it
    Ok(params.get("query").unwrap_or_default().to_string())
}

/// A query's answer, with `stats` when the request asked (any non-empty `stats` parameter,
/// as Prometheus). Evaluated and written on the blocking pool: a range answer can be
/// megabytes of JSON, no work for an async worker.
fn answer(
    params: &Params,
    evaluate: impl FnOnce() -> Result<QueryResult, ApiError> + Send + 'static,
) -> impl std::future::Future<Output = Result<Response, ApiError>> {
    let with_stats = params.get("stats").is_some_and(|s| !s.is_empty());
    blocking(move || {
        let result = evaluate()?;
        Ok(query_success(
            &result.value,
            with_stats.then_some(&result.stats),
        ))
    })
}

pub async fn query(State(state): AppState, params: Params) -> Result<Response, ApiError> {
    let timeout = timeout_param(&params)?;
    let time = time_param(&params, "time", now_ms())?;
    let query = query_param(&params)?;
    let engine = state.engine.clone();
    answer(&params, move || {
        Ok(engine.instant_query(&query, time, timeout)?)
    })
    .await
}

/// `/api/v1/format_query`: the query pretty-printed as Prometheus's `Pretty` prints it.
pub async fn format_query(params: Params) -> Result<Response, ApiError> {
    let query = query_param(&params)?;
    Ok(success(&json_string(&store::promql::format(&query)?), &[]))
}

pub async fn query_range(State(state): AppState, params: Params) -> Result<Response, ApiError> {
    let start = parse_time(params.get("start").unwrap_or_default())
        .map_err(|e| invalid_param("start", e))?;
    let end =
        parse_time(params.get("end").unwrap_or_default()).map_err(|e| invalid_param("end", e))?;
    if end < start {
        return Err(invalid_param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step = parse_duration_ms(params.get("step").unwrap_or_default())
        .map_err(|e| invalid_param("step", e))?;
    if step <= 0 {
        return Err(invalid_param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    // the engine refuses more than MAX_POINTS_PER_SERIES steps, overflow-safe
    let timeout = timeout_param(&params)?;
    let query = query_param(&params)?;
    let engine = state.engine.clone();
    answer(&params, move || {
        Ok(engine.range_query(&query, start, end, step, timeout)?)
    })
    .await
}

/// `start`/`end` of the metadata endpoints, defaulting to all time.
fn time_range(params: &Params) -> Result<(i64, i64), ApiError> {
    let start = time_param(params, "start", MIN_TIME_MS)?;
    let end = time_param(params, "end", MAX_TIME_MS)?;
    Ok((start, end))
}

/// Truncates to `limit`, with Prometheus's warning when something was cut.
fn apply_limit<T>(mut items: Vec<T>, limit: Option<usize>) -> (Vec<T>, Vec<String>) {
    match limit {
        Some(n) if items.len() > n => {
            items.truncate(n);
            (items, vec!["results truncated due to limit".to_string()])
        }
        _ => (items, Vec::new()),
    }
}

pub async fn series(State(state): AppState, params: Params) -> Result<Response, ApiError> {
    if params.all("match[]").is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let (start, end) = time_range(&params)?;
    let limit = limit_param(&params)?;
    let sets = match_params(&params)?;
    let querier = state.querier.clone();
    let found = blocking(move || Ok(querier.series(&sets, start, end)?)).await?;
    let (found, warnings) = apply_limit(found, limit);
    Ok(success(&labels_array(&found), &warnings))
}

pub async fn labels(State(state): AppState, params: Params) -> Result<Response, ApiError> {
    let (start, end) = time_range(&params)?;
    let limit = limit_param(&params)?;
    let sets = match_params(&params)?;
    let querier = state.querier.clone();
    let names = blocking(move || Ok(querier.label_names(&sets, start, end)?)).await?;
    let (names, warnings) = apply_limit(names, limit);
    Ok(success(&string_array(&names), &warnings))
}

/// Whether `name` is a valid (classic) Prometheus label name.
fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub async fn label_values(
    State(state): AppState,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    if !valid_label_name(&name) {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let (start, end) = time_range(&params)?;
    let limit = limit_param(&params)?;
    let sets = match_params(&params)?;
    let querier = state.querier.clone();
    let values = blocking(move || Ok(querier.label_values(&name, &sets, start, end)?)).await?;
    let (values, warnings) = apply_limit(values, limit);
    Ok(success(&string_array(&values), &warnings))
}

pub async fn metadata(State(state): AppState, params: Params) -> Result<Response, ApiError> {
    let limit = limit_param(&params)?;
    let per_metric = match params.get("limit_per_metric") {
        None => None,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n > 0 => Some(n as usize),
            Ok(_) => None,
            Err(_) => {
                return Err(invalid_param(
                    "limit_per_metric",
                    format!("cannot parse {text:?} to a valid limit"),
                ))
            }
        },
    };
    let metric = params.get("metric").map(str::to_string);
    let querier = state.querier.clone();
    let all = blocking(move || Ok(querier.metadata()?)).await?;
    let mut by_family: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in all {
        if metric.as_ref().is_some_and(|want| *want != m.metric_family) {
            continue;
        }
        let entry = format!(
            "{{\"type\":\"{}\",\"help\":{},\"unit\":{}}}",
            m.metric_type.as_str(),
            json_string(&m.help),
            json_string(&m.unit)
        );
        let list = by_family.entry(m.metric_family).or_default();
        if !list.contains(&entry) && per_metric.is_none_or(|n| list.len() < n) {
            list.push(entry);
        }
    }
    let mut out = String::from("{");
    for (i, (family, entries)) in by_family
        .iter()
        .take(limit.unwrap_or(usize::MAX))
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_string(family));
        out.push_str(":[");
        out.push_str(&entries.join(","));
        out.push(']');
    }
    out.push('}');
    Ok(success(&out, &[]))
}

/// `GET /api/v1/status/tsdb`: Prometheus's `headStats`, plus the size of every tier (hot:
/// the in-memory head and its WAL; warm: local blocks; archive: the Parquet files its
/// manifest names). Prometheus's per-label cardinality lists are not computed.
pub async fn tsdb_status(State(state): AppState) -> Result<Response, ApiError> {
    let s = blocking(move || {
        state.querier.storage_stats().ok_or_else(|| {
            ApiError::new(
                crate::error::ErrorType::Unavailable,
                "the metrics store is not open yet",
            )
        })
    })
    .await?;
    let data = format!(
        "{{\"headStats\":{{\"numSeries\":{}}},\"tiers\":{{\"hot\":{{\"series\":{},\"samples\":{},\"bytes\":{},\"walBytes\":{}}},\"warm\":{{\"blocks\":{},\"samples\":{},\"bytes\":{}}},\"archive\":{{\"files\":{},\"samples\":{},\"bytes\":{},\"rollups\":{{\"files\":{},\"bytes\":{}}}}}}}}}",
        s.series,
        s.series,
        s.head_samples,
        s.head_bytes,
        s.wal_bytes,
        s.blocks,
        s.block_samples,
        s.block_bytes,
        s.archive_files,
        s.archive_samples,
        s.archive_bytes,
        s.rollup_files,
        s.rollup_bytes,
    );
    Ok(success(&data, &[]))
}

pub async fn buildinfo() -> Response {
    let data = format!(
        "{{\"version\":{},\"revision\":{},\"branch\":\"\",\"buildUser\":\"\",\"buildDate\":\"\",\"goVersion\":\"\"}}",
        json_string(env!("CARGO_PKG_VERSION")),
        json_string(option_env!("LOOKOUT_GIT_REVISION").unwrap_or("")),
    );
    success(&data, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_are_checked() {
        assert!(valid_label_name("job"));
        assert!(valid_label_name("__name__"));
        assert!(!valid_label_name("1job"));
        assert!(!valid_label_name(""));
        assert!(!valid_label_name("a-b"));
    }

    #[test]
    fn limit_truncates_with_a_warning() {
        let (items, warnings) = apply_limit(vec![1, 2, 3], Some(2));
        assert_eq!(items, vec![1, 2]);
        assert_eq!(warnings, vec!["results truncated due to limit".to_string()]);
        let (items, warnings) = apply_limit(vec![1], Some(2));
        assert_eq!(items, vec![1]);
        assert!(warnings.is_empty());
    }
}
