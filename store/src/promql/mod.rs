//! PromQL evaluation over a [`MetricsQuerier`].
//!
//! * [`Engine`]: parses a query with `promql-parser` and evaluates it at one instant or over
//!   a range of steps, within a sample budget and a timeout.
//! * `eval`: the evaluator. Every query runs as a range evaluation over all steps at once,
//!   as in Prometheus: an expression yields a scalar (a value per step), an instant vector
//!   (series with an optional value per step), a range (series selected once, windowed per
//!   step by whoever consumes it) or a string. Each selector reads the store once.
//! * `binary`: operators, vector matching; `aggregate`: aggregation operators; `functions`:
//!   function bodies over one series' window or one value.
//! * `selector`: vector and range selectors: matchers, `offset`, `@`, the lookback window
//!   and staleness.
//! * [`value`]: the result types (scalar, string, vector, matrix).
//! * [`error`]: [`PromqlError`], with its Prometheus `errorType` class.
//!
//! Not evaluated (fail with [`PromqlError::Unsupported`]): native-histogram functions,
//! functions and aggregations Prometheus 2.42 does not have (`limitk`, `sort_by_label`,
//! `info`, ...) and `fill` modifiers.

mod aggregate;
mod binary;
mod error;
mod eval;
pub(crate) mod functions;
mod selector;
pub mod value;

use std::sync::Arc;
use std::time::{Duration, Instant};

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr};

use crate::contract::MetricsQuerier;
use crate::model::{Labels, Sample, Series};
use eval::EvalValue;

pub use error::{PromqlError, PromqlErrorKind};
/// The matcher sets of a parsed selector (one per `or` alternative), with the metric name
/// added; used by the series and label APIs for `match[]`.
pub use selector::matcher_sets as selector_matcher_sets;
pub use value::{InstantSample, Matrix, Scalar, StringValue, Value, Vector};

/// Most steps a range query may have, as Prometheus (`query_range` refuses more).
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// Prometheus's message for a range query over [`MAX_POINTS_PER_SERIES`].
pub const TOO_MANY_POINTS: &str = "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)";

/// The step of a subquery that names none: Prometheus's default evaluation interval (1m).
const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// Engine-wide limits and defaults.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How far back an instant-vector selector looks for a series' latest sample.
    pub lookback_delta: Duration,
    /// Most samples one query may hold in memory at once.
    pub max_samples: usize,
    /// Default query timeout (a request may ask for a shorter one).
    pub timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta: Duration::from_secs(300),
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Evaluates PromQL queries. Evaluation is synchronous and CPU/IO bound: async callers run
/// it in `spawn_blocking`.
#[derive(Clone)]
pub struct Engine {
    querier: Arc<dyn MetricsQuerier>,
    options: EngineOptions,
}

/// Parses a query, mapping promql-parser's error to [`PromqlError::Parse`].
pub fn parse(query: &str) -> Result<Expr, PromqlError> {
    parser::parse(query).map_err(PromqlError::Parse)
}

impl Engine {
    pub fn new(querier: Arc<dyn MetricsQuerier>, options: EngineOptions) -> Self {
        Engine { querier, options }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Evaluates `query` at `time_ms`.
    pub fn instant(&self, query: &str, time_ms: i64) -> Result<Value, PromqlError> {
        self.instant_with_timeout(query, time_ms, None)
    }

    /// Evaluates `query` at `time_ms`, with a timeout shorter than the engine's if given.
    pub fn instant_with_timeout(
        &self,
        query: &str,
        time_ms: i64,
        timeout: Option<Duration>,
    ) -> Result<Value, PromqlError> {
        let expr = parse(query)?;
        let mut ev = self.evaluator(time_ms, time_ms, 1, timeout);
        Ok(match ev.eval(&expr)? {
            EvalValue::String(value) => Value::String(StringValue {
                timestamp_ms: time_ms,
                value,
            }),
            EvalValue::Scalar(v) => Value::Scalar(Scalar {
                timestamp_ms: time_ms,
                value: v.first().copied().unwrap_or(f64::NAN),
            }),
            // evaluation order is kept: it is what `sort`/`sort_desc`/`topk` produce
            EvalValue::Vector(series) => Value::Vector(
                series
                    .into_iter()
                    .filter_map(|s| {
                        s.values
                            .first()
                            .copied()
                            .flatten()
                            .map(|value| InstantSample {
                                labels: s.labels,
                                timestamp_ms: time_ms,
                                value,
                            })
                    })
                    .collect(),
            ),
            EvalValue::Range(r) => {
                let mut out = Vec::with_capacity(r.series.len());
                for s in &r.series {
                    let (samples, _, _) = r.window(s, time_ms);
                    if !samples.is_empty() {
                        out.push(Series {
                            labels: s.labels.clone(),
                            samples,
                        });
                    }
                }
                Value::Matrix(out)
            }
        })
    }

    /// Evaluates `query` at every `step_ms` from `start_ms` to `end_ms` (inclusive); the
    /// result is always a matrix.
    pub fn range(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Value, PromqlError> {
        self.range_with_timeout(query, start_ms, end_ms, step_ms, None)
    }

    /// [`Engine::range`] with a timeout shorter than the engine's if given.
    pub fn range_with_timeout(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        timeout: Option<Duration>,
    ) -> Result<Value, PromqlError> {
        if step_ms <= 0 {
            return Err(PromqlError::BadQuery(
                "zero or negative query resolution step widths are not accepted. Try a positive integer"
                    .into(),
            ));
        }
        if end_ms < start_ms {
            return Err(PromqlError::BadQuery(
                "end timestamp must not be before start time".into(),
            ));
        }
        // Checked here as well as in the HTTP API: every caller (rules, the UI) gets the bound,
        // and a span that overflows i64 counts as too many points instead of wrapping.
        let too_many = end_ms
            .checked_sub(start_ms)
            .is_none_or(|span| span / step_ms > MAX_POINTS_PER_SERIES);
        if too_many {
            return Err(PromqlError::BadQuery(TOO_MANY_POINTS.into()));
        }
        let expr = parse(query)?;
        match expr.value_type() {
            ValueType::Scalar | ValueType::Vector => {}
            other => {
                let name = if other == ValueType::Matrix {
                    "range vector"
                } else {
                    "string"
                };
                return Err(PromqlError::BadQuery(format!(
                    "invalid expression type \"{name}\" for range query, must be Scalar or instant Vector"
                )));
            }
        }
        let mut ev = self.evaluator(start_ms, end_ms, step_ms, timeout);
        let times: Vec<i64> = ev.step_times();
        let to_samples = |values: &[Option<f64>]| -> Vec<Sample> {
            times
                .iter()
                .zip(values)
                .filter_map(|(&t, v)| v.map(|v| Sample::new(t, v)))
                .collect()
        };
        match ev.eval(&expr)? {
            EvalValue::Scalar(v) => {
                let values: Vec<Option<f64>> = v.into_iter().map(Some).collect();
                Ok(Value::Matrix(vec![Series {
                    labels: Labels::default(),
                    samples: to_samples(&values),
                }]))
            }
            EvalValue::Vector(series) => {
                let mut m: Matrix = series
                    .into_iter()
                    .map(|s| Series {
                        samples: to_samples(&s.values),
                        labels: s.labels,
                    })
                    .filter(|s| !s.samples.is_empty())
                    .collect();
                m.sort_by(|a, b| a.labels.cmp(&b.labels));
                Ok(Value::Matrix(m))
            }
            other => Err(PromqlError::BadQuery(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                other.type_name()
            ))),
        }
    }

    fn evaluator(
        &self,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        timeout: Option<Duration>,
    ) -> eval::Evaluator<'_> {
        let timeout = timeout.map_or(self.options.timeout, |t| t.min(self.options.timeout));
        let now = Instant::now();
        eval::Evaluator {
            querier: self.querier.as_ref(),
            start_ms,
            end_ms,
            step_ms,
            query_start_ms: start_ms,
            query_end_ms: end_ms,
            default_step_ms: DEFAULT_SUBQUERY_STEP_MS,
            lookback_ms: selector::duration_ms(self.options.lookback_delta),
            max_samples: self.options.max_samples,
            deadline: now.checked_add(timeout),
            current_samples: 0,
            ticks: 0,
        }
    }
}
