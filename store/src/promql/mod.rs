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
//! The language is Prometheus 2.42's: [`parse`] refuses what promql-parser accepts but 2.42
//! does not (later functions and aggregations, `or` between matchers) with 2.42's parse error,
//! and accepts 2.42's `holt_winters`, which promql-parser knows only by its 3.x name.

mod aggregate;
mod binary;
mod error;
mod eval;
pub(crate) mod functions;
mod memo;
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
pub use memo::MemoQuerier;
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
#[derive(Clone, Debug, PartialEq)]
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

/// What one query cost, for the API's `stats` parameter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryStats {
    /// Raw samples read from storage (Prometheus's `totalQueryableSamples`, counted per
    /// sample read rather than per step that sees it).
    pub total_samples: u64,
    /// Most samples held in memory at once (what `max_samples` bounds).
    pub peak_samples: u64,
    /// Archive (cold tier) files the query's selections read: non-zero when the query
    /// touched the archive.
    pub archive_files: u64,
    /// The coarsest rollup resolution read instead of raw samples (archived data
    /// downsampled), if any.
    pub rollup_resolution_ms: Option<i64>,
    /// Parsing and checking the query.
    pub prepare_time: Duration,
    /// Evaluating it.
    pub eval_time: Duration,
    /// Sorting the result.
    pub sort_time: Duration,
}

/// A query's answer and what it cost.
#[derive(Clone, Debug)]
pub struct QueryResult {
    pub value: Value,
    pub stats: QueryStats,
}

/// Evaluates PromQL queries. Evaluation is synchronous and CPU/IO bound: async callers run
/// it in `spawn_blocking`.
#[derive(Clone)]
pub struct Engine {
    querier: Arc<dyn MetricsQuerier>,
    options: EngineOptions,
}

/// 2.42's `holt_winters`, which promql-parser 0.11 knows only by its 3.x name: queries are
/// parsed with the one renamed to the other, and the 3.x name is refused as 2.42 refuses it.
const HOLT_WINTERS: &str = "holt_winters";
const PARSER_HOLT_WINTERS: &str = "double_exponential_smoothing";

/// Parses a query, mapping promql-parser's error to [`PromqlError::Parse`].
pub fn parse(query: &str) -> Result<Expr, PromqlError> {
    if let Some(at) = function_calls(query, PARSER_HOLT_WINTERS).first() {
        return Err(PromqlError::Parse(format!(
            "1:{}: parse error: unknown function with name \"{PARSER_HOLT_WINTERS}\"",
            at + 1
        )));
    }
    let renamed = rename_calls(query, HOLT_WINTERS, PARSER_HOLT_WINTERS);
    let expr = parser::parse(&renamed)
        .map_err(|e| PromqlError::Parse(e.replace(PARSER_HOLT_WINTERS, HOLT_WINTERS)))?;
    reject_newer_syntax(query, &expr)?;
    Ok(expr)
}

/// The functions of Prometheus 2.42 (the compliance target). promql-parser also knows later
/// ones (`histogram_avg`, `sort_by_label`, ...), which 2.42 refuses as unknown.
const FUNCTIONS_2_42: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// The aggregations of Prometheus 2.42.
const AGGREGATIONS_2_42: &[&str] = &[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "group",
    "stddev",
    "stdvar",
    "count_values",
    "quantile",
    "topk",
    "bottomk",
];

/// Refuses what promql-parser accepts but 2.42 does not parse, with 2.42's message: later
/// functions and aggregations, and `or` between label matchers.
fn reject_newer_syntax(query: &str, expr: &Expr) -> Result<(), PromqlError> {
    let column = |name: &str| function_calls(query, name).first().map_or(1, |at| at + 1);
    match expr {
        Expr::Call(c) => {
            let name = function_name(c.func.name);
            if !FUNCTIONS_2_42.contains(&name) {
                return Err(PromqlError::Parse(format!(
                    "1:{}: parse error: unknown function with name {name:?}",
                    column(name)
                )));
            }
            c.args
                .args
                .iter()
                .try_for_each(|a| reject_newer_syntax(query, a))
        }
        Expr::Aggregate(a) => {
            let name = a.op.to_string();
            if !AGGREGATIONS_2_42.contains(&name.as_str()) {
                return Err(PromqlError::Parse(format!(
                    "1:{}: parse error: unknown function with name {name:?}",
                    column(&name)
                )));
            }
            if let Some(p) = &a.param {
                reject_newer_syntax(query, p)?;
            }
            reject_newer_syntax(query, &a.expr)
        }
        Expr::VectorSelector(vs) => reject_or_matchers(vs),
        Expr::MatrixSelector(ms) => reject_or_matchers(&ms.vs),
        Expr::Unary(u) => reject_newer_syntax(query, &u.expr),
        Expr::Binary(b) => {
            reject_newer_syntax(query, &b.lhs)?;
            reject_newer_syntax(query, &b.rhs)
        }
        Expr::Paren(p) => reject_newer_syntax(query, &p.expr),
        Expr::Subquery(sq) => reject_newer_syntax(query, &sq.expr),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => Ok(()),
    }
}

fn reject_or_matchers(vs: &parser::VectorSelector) -> Result<(), PromqlError> {
    if vs.matchers.or_matchers.is_empty() {
        return Ok(());
    }
    Err(PromqlError::Parse(
        "parse error: unexpected identifier \"or\" in label matching, expected \",\" or \"}\""
            .into(),
    ))
}

/// A query pretty-printed as Prometheus's `/api/v1/format_query` prints it.
pub fn format(query: &str) -> Result<String, PromqlError> {
    Ok(rename_calls(
        &parse(query)?.prettify(),
        PARSER_HOLT_WINTERS,
        HOLT_WINTERS,
    ))
}

/// The name a call is evaluated under (see [`HOLT_WINTERS`]).
pub(crate) fn function_name(name: &'static str) -> &'static str {
    if name == PARSER_HOLT_WINTERS {
        HOLT_WINTERS
    } else {
        name
    }
}

/// Byte offsets of calls of function `name` in `query`: the identifier outside string
/// literals and comments, followed by `(`.
fn function_calls(query: &str, name: &str) -> Vec<usize> {
    let bytes = query.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' | b'\'' | b'`' => {
                // skip the literal; `\` escapes in all but backquoted strings
                i += 1;
                while let Some(&c) = bytes.get(i) {
                    i += 1;
                    if c == b'\\' && b != b'`' {
                        i += 1;
                    } else if c == b {
                        break;
                    }
                }
            }
            b'#' => {
                while bytes.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
            }
            _ if ident(b) => {
                let start = i;
                while bytes.get(i).copied().is_some_and(ident) {
                    i += 1;
                }
                let mut j = i;
                while bytes.get(j).is_some_and(u8::is_ascii_whitespace) {
                    j += 1;
                }
                if query.get(start..i) == Some(name) && bytes.get(j) == Some(&b'(') {
                    out.push(start);
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// `query` with calls of function `from` renamed to `to`.
fn rename_calls(query: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut last = 0;
    for at in function_calls(query, from) {
        out.push_str(query.get(last..at).unwrap_or_default());
        out.push_str(to);
        last = at + from.len();
    }
    out.push_str(query.get(last..).unwrap_or_default());
    out
}

impl Engine {
    pub fn new(querier: Arc<dyn MetricsQuerier>, options: EngineOptions) -> Self {
        Engine { querier, options }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The store this engine reads.
    pub fn querier(&self) -> &Arc<dyn MetricsQuerier> {
        &self.querier
    }

    /// An engine with the same options over another querier (a [`MemoQuerier`] around
    /// this one's, say).
    pub fn with_querier(&self, querier: Arc<dyn MetricsQuerier>) -> Engine {
        Engine::new(querier, self.options.clone())
    }

    /// Evaluates `query` at `time_ms`.
    pub fn instant(&self, query: &str, time_ms: i64) -> Result<Value, PromqlError> {
        Ok(self.instant_query(query, time_ms, None)?.value)
    }

    /// Evaluates `query` at `time_ms`, with a timeout shorter than the engine's if given.
    pub fn instant_query(
        &self,
        query: &str,
        time_ms: i64,
        timeout: Option<Duration>,
    ) -> Result<QueryResult, PromqlError> {
        let started = Instant::now();
        let expr = parse(query)?;
        let mut ev = self.evaluator(time_ms, time_ms, 1, timeout);
        let prepared = Instant::now();
        let value = match ev.eval(&expr)? {
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
            EvalValue::Range(r) => Value::Matrix(ev.matrix_at(&r, time_ms)?),
        };
        let evaluated = Instant::now();
        Ok(QueryResult {
            value,
            stats: stats(&ev, started, prepared, evaluated, evaluated),
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
        Ok(self
            .range_query(query, start_ms, end_ms, step_ms, None)?
            .value)
    }

    /// [`Engine::range`] with a timeout shorter than the engine's if given, and its cost.
    pub fn range_query(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        timeout: Option<Duration>,
    ) -> Result<QueryResult, PromqlError> {
        let started = Instant::now();
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
        let prepared = Instant::now();
        let times: Vec<i64> = ev.step_times();
        let to_samples = |values: &[Option<f64>]| -> Vec<Sample> {
            times
                .iter()
                .zip(values)
                .filter_map(|(&t, v)| v.map(|v| Sample::new(t, v)))
                .collect()
        };
        let (m, evaluated) = match ev.eval(&expr)? {
            EvalValue::Scalar(v) => {
                let values: Vec<Option<f64>> = v.into_iter().map(Some).collect();
                let m = vec![Series {
                    labels: Labels::default(),
                    samples: to_samples(&values),
                }];
                (m, Instant::now())
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
                let evaluated = Instant::now();
                m.sort_by(|a, b| a.labels.cmp(&b.labels));
                (m, evaluated)
            }
            other => {
                return Err(PromqlError::BadQuery(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                other.type_name()
            )))
            }
        };
        Ok(QueryResult {
            value: Value::Matrix(m),
            stats: stats(&ev, started, prepared, evaluated, Instant::now()),
        })
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
            peak_samples: 0,
            total_samples: 0,
            archive_files: 0,
            rollup_resolution_ms: None,
            ticks: 0,
        }
    }
}

fn stats(
    ev: &eval::Evaluator<'_>,
    started: Instant,
    prepared: Instant,
    evaluated: Instant,
    sorted: Instant,
) -> QueryStats {
    QueryStats {
        total_samples: ev.total_samples as u64,
        peak_samples: ev.peak_samples as u64,
        archive_files: ev.archive_files as u64,
        rollup_resolution_ms: ev.rollup_resolution_ms,
        prepare_time: prepared.duration_since(started),
        eval_time: evaluated.duration_since(prepared),
        sort_time: sorted.duration_since(evaluated),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::{Label, Sample};
    use crate::testing::MemQuerier;

    /// `n` counters `m{i="..."}` with a sample every 10 s over 10 minutes.
    fn counters(n: usize) -> Arc<MemQuerier> {
        let mut q = MemQuerier::default();
        for i in 0..n {
            let labels = Labels::new(vec![
                Label::new("__name__", "m"),
                Label::new("i", i.to_string()),
            ]);
            let samples = (0..=60)
                .map(|k| Sample::new(k * 10_000, k as f64))
                .collect();
            q.series.insert(labels, samples);
        }
        Arc::new(q)
    }

    fn engine(q: Arc<MemQuerier>, max_samples: usize) -> Engine {
        Engine::new(
            q,
            EngineOptions {
                max_samples,
                ..EngineOptions::default()
            },
        )
    }

    #[test]
    fn max_samples_bounds_what_is_held_at_once_not_the_total_read() {
        // 2,000 series x 31 samples in a 5m window = 62,000 read, a batch at a time
        let e = engine(counters(2_000), 40_000);
        let r = e.instant_query("sum(rate(m[5m]))", 600_000, None).unwrap();
        match &r.value {
            Value::Vector(v) => assert!((v[0].value - 2_000.0 * 0.1).abs() < 1e-9),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.stats.total_samples, 2_000 * 31);
        assert!(r.stats.peak_samples > 0 && r.stats.peak_samples <= 40_000);
        // a matrix result holds every sample at once: over the budget
        let err = e.instant_query("m[5m]", 600_000, None).unwrap_err();
        assert!(matches!(err, PromqlError::TooManySamples(_)), "{err:?}");
        // and a budget smaller than one batch fails the aggregation too
        let err = engine(counters(2_000), 1_000)
            .instant_query("sum(rate(m[5m]))", 600_000, None)
            .unwrap_err();
        assert!(matches!(err, PromqlError::TooManySamples(_)), "{err:?}");
    }

    #[test]
    fn holt_winters_is_parsed_under_its_2_42_name_only() {
        let e = engine(counters(1), 1_000_000);
        let r = e.instant("holt_winters(m[5m], 0.5, 0.5)", 600_000).unwrap();
        let Value::Vector(v) = r else { panic!("{r:?}") };
        // a straight line smooths to itself
        assert!((v[0].value - 60.0).abs() < 1e-9, "{v:?}");
        let err = e
            .instant("double_exponential_smoothing(m[5m], 0.5, 0.5)", 0)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "1:1: parse error: unknown function with name \"double_exponential_smoothing\""
        );
        // only calls are renamed: not strings, label names, comments or longer names
        assert_eq!(
            rename_calls(
                "holt_winters (x{a=\"holt_winters(\"}[1m], 1, 2) # holt_winters(\n+ holt_winters_total",
                HOLT_WINTERS,
                "hw"
            ),
            "hw (x{a=\"holt_winters(\"}[1m], 1, 2) # holt_winters(\n+ holt_winters_total"
        );
        assert_eq!(
            format("holt_winters(m[5m],0.5,0.5)").unwrap(),
            "holt_winters(m[5m], 0.5, 0.5)"
        );
    }

    #[test]
    fn streamed_and_materialised_aggregation_agree() {
        // `m` names one metric, so its rate streams into the sum; the regex can't (two names
        // could collide once rate drops them) and goes through the full vector
        let e = engine(counters(1_500), 50_000_000);
        let streamed = e.range("sum by (i) (rate(m[1m]))", 60_000, 600_000, 30_000);
        let full = e.range(
            "sum by (i) (rate({__name__=~\"m|other\"}[1m]))",
            60_000,
            600_000,
            30_000,
        );
        let (Ok(Value::Matrix(a)), Ok(Value::Matrix(b))) = (streamed, full) else {
            panic!("both queries must succeed");
        };
        assert_eq!(a.len(), 1_500);
        assert_eq!(a, b);
    }
}
