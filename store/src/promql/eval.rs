//! The evaluator. Like Prometheus's, it evaluates every query as a range evaluation over
//! `start..=end` in `step`s (an instant query is a range of one step): each expression
//! yields an [`EvalValue`] covering every step, and [`super::Engine`] turns the result into
//! a scalar, vector or matrix. Selectors read the store once for the whole range; range
//! functions and subqueries cut per-step windows out of what was read.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use rayon::prelude::*;

use promql_parser::parser::{
    AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, SubqueryExpr,
    VectorSelector,
};

use crate::contract::{LabelMatcher, LazySeries, MetricsQuerier, ReadCache, ROLLUP_RESOLUTIONS_MS};
use crate::model::{is_stale_nan, Label, Labels, Sample, Series, METRIC_NAME_LABEL};

use super::aggregate::{self, AggOp, GroupAccumulator, Grouping, Param};
use super::binary::{self, BinOp, Matching, Side};
use super::error::PromqlError;
use super::functions;
use super::selector::{self, duration_ms, TimeShift};

/// A range function reads rollups of a resolution only when its range spans at least this
/// many windows: each step then sees enough points that the partial windows at its edges
/// matter little.
const MIN_WINDOWS_PER_RANGE: i64 = 8;

/// How often (in loop iterations) long loops look at the clock.
const DEADLINE_CHECK_EVERY: usize = 1024;

/// Series decoded and evaluated together (in parallel) before their results are handed on:
/// bounds the raw samples a query holds at once while giving every core enough work.
const SERIES_BATCH: usize = 512;

pub(super) struct Evaluator<'a> {
    pub querier: &'a dyn MetricsQuerier,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Step width; always positive (1 for instant queries).
    pub step_ms: i64,
    /// The query's own start and end, what `@ start()`/`@ end()` mean at any depth of
    /// subqueries.
    pub query_start_ms: i64,
    pub query_end_ms: i64,
    /// The step of a subquery without one (Prometheus's default evaluation interval).
    pub default_step_ms: i64,
    pub lookback_ms: i64,
    pub max_samples: usize,
    /// `None` when the timeout is too large to represent.
    pub deadline: Option<Instant>,
    /// Samples (raw, and values of results) the evaluation holds now, checked against
    /// `max_samples`.
    pub current_samples: usize,
    /// The most `current_samples` has been.
    pub peak_samples: usize,
    /// Raw samples read from storage.
    pub total_samples: usize,
    /// Archive (cold tier) files the selections read.
    pub archive_files: usize,
    /// The coarsest rollup resolution a selection read instead of raw samples.
    pub rollup_resolution_ms: Option<i64>,
    pub ticks: usize,
}

impl Evaluator<'_> {
    fn steps(&self) -> impl Iterator<Item = i64> + '_ {
        // step_ms > 0 is guaranteed by the engine, so this terminates
        let mut t = self.start_ms;
        std::iter::from_fn(move || {
            if t > self.end_ms {
                return None;
            }
            let now = t;
            t = t.saturating_add(self.step_ms);
            if t == now {
                t = i64::MAX;
            }
            Some(now)
        })
    }

    fn check_deadline(&mut self) -> Result<(), PromqlError> {
        self.ticks += 1;
        if self.ticks.is_multiple_of(DEADLINE_CHECK_EVERY)
            && self.deadline.is_some_and(|d| Instant::now() >= d)
        {
            return Err(PromqlError::Timeout("expression evaluation"));
        }
        Ok(())
    }

    fn check_deadline_now(&self) -> Result<(), PromqlError> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(PromqlError::Timeout("expression evaluation"));
        }
        Ok(())
    }

    fn add_samples(&mut self, n: usize) -> Result<(), PromqlError> {
        self.current_samples = self.current_samples.saturating_add(n);
        self.peak_samples = self.peak_samples.max(self.current_samples);
        if self.current_samples > self.max_samples {
            return Err(PromqlError::TooManySamples("query execution"));
        }
        Ok(())
    }

    fn release_samples(&mut self, n: usize) {
        self.current_samples = self.current_samples.saturating_sub(n);
    }

    /// Evaluates `expr` over every step. What the operands held is released once the result
    /// exists; the result's samples stay counted until its consumer finishes.
    pub fn eval(&mut self, expr: &Expr) -> Result<EvalValue, PromqlError> {
        self.check_deadline_now()?;
        let held_before = self.current_samples;
        let value = self.eval_node(expr)?;
        self.current_samples = held_before;
        self.add_samples(value.sample_count())?;
        Ok(value)
    }

    fn eval_node(&mut self, expr: &Expr) -> Result<EvalValue, PromqlError> {
        match expr {
            Expr::NumberLiteral(n) => self.eval_number(n.val),
            Expr::StringLiteral(s) => Ok(EvalValue::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::VectorSelector(vs) => self.eval_vector_selector(vs),
            Expr::MatrixSelector(ms) => self.eval_matrix_selector(ms),
            Expr::Aggregate(a) => self.eval_aggregate(a),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                EvalValue::Scalar(v) => Ok(EvalValue::Scalar(v.into_iter().map(|x| -x).collect())),
                EvalValue::Vector(series) => {
                    let mut out = Collector::new(self.step_count());
                    for s in series {
                        let labels = s.labels.without(&[METRIC_NAME_LABEL]);
                        for (i, v) in s.values.iter().enumerate() {
                            if let Some(v) = v {
                                out.push(&labels, i, -v)?;
                            }
                        }
                    }
                    Ok(EvalValue::Vector(out.finish()))
                }
                _ => Err(PromqlError::BadQuery(
                    "unary minus only applies to scalars and instant vectors".into(),
                )),
            },
            Expr::Binary(b) => self.eval_binary(b),
            Expr::Subquery(sq) => self.eval_subquery(sq),
            Expr::Call(c) => self.eval_call(c),
            Expr::Extension(_) => Err(PromqlError::Unsupported("extension expression".into())),
        }
    }

    /// The evaluation time of every step.
    pub fn step_times(&self) -> Vec<i64> {
        self.steps().collect()
    }

    fn step_count(&self) -> usize {
        self.steps().count()
    }

    fn eval_number(&mut self, value: f64) -> Result<EvalValue, PromqlError> {
        Ok(EvalValue::Scalar(vec![value; self.step_count()]))
    }

    fn eval_scalar(&mut self, expr: &Expr) -> Result<Vec<f64>, PromqlError> {
        match self.eval(expr)? {
            EvalValue::Scalar(v) => Ok(v),
            other => Err(PromqlError::BadQuery(format!(
                "expected a scalar, got {}",
                other.type_name()
            ))),
        }
    }

    fn eval_vector(&mut self, expr: &Expr) -> Result<Vec<StepSeries>, PromqlError> {
        match self.eval(expr)? {
            EvalValue::Vector(v) => Ok(v),
            other => Err(PromqlError::BadQuery(format!(
                "expected an instant vector, got {}",
                other.type_name()
            ))),
        }
    }

    fn eval_binary(&mut self, b: &BinaryExpr) -> Result<EvalValue, PromqlError> {
        let op_text = b.op.to_string();
        let op = BinOp::parse(&op_text)
            .ok_or_else(|| PromqlError::Unsupported(format!("binary operator {op_text:?}")))?;
        let matching = Matching::from_modifier(op, b.modifier.as_ref())?;
        let lhs = self.eval(&b.lhs)?;
        let rhs = self.eval(&b.rhs)?;
        let n = self.step_count();
        match (lhs, rhs) {
            (EvalValue::Scalar(l), EvalValue::Scalar(r)) => Ok(EvalValue::Scalar(
                l.iter()
                    .zip(&r)
                    .map(|(&a, &b)| {
                        let (v, keep) = binary::apply(op, a, b);
                        if op.is_comparison() {
                            if keep {
                                1.0
                            } else {
                                0.0
                            }
                        } else {
                            v
                        }
                    })
                    .collect(),
            )),
            (EvalValue::Vector(v), EvalValue::Scalar(s)) => {
                self.vector_scalar(op, &matching, v, &s, false)
            }
            (EvalValue::Scalar(s), EvalValue::Vector(v)) => {
                self.vector_scalar(op, &matching, v, &s, true)
            }
            (EvalValue::Vector(l), EvalValue::Vector(r)) => {
                let lsigs: Vec<Labels> = l.iter().map(|s| matching.signature(&s.labels)).collect();
                let rsigs: Vec<Labels> = r.iter().map(|s| matching.signature(&s.labels)).collect();
                let llabels: Vec<Labels> = l.iter().map(|s| s.labels.clone()).collect();
                let rlabels: Vec<Labels> = r.iter().map(|s| s.labels.clone()).collect();
                let mut out = Collector::new(n);
                let mut step_out = Vec::new();
                for i in 0..n {
                    self.check_deadline()?;
                    let lp = present_at(&l, i);
                    let rp = present_at(&r, i);
                    step_out.clear();
                    binary::vector_binop(
                        op,
                        &matching,
                        &Side {
                            labels: &llabels,
                            sigs: &lsigs,
                            present: &lp,
                        },
                        &Side {
                            labels: &rlabels,
                            sigs: &rsigs,
                            present: &rp,
                        },
                        &mut step_out,
                    )?;
                    for (labels, v) in step_out.drain(..) {
                        out.push(&labels, i, v)?;
                    }
                }
                Ok(EvalValue::Vector(out.finish()))
            }
            (l, r) => Err(PromqlError::BadQuery(format!(
                "binary expression must contain only scalar and instant vector types, got {} and {}",
                l.type_name(),
                r.type_name()
            ))),
        }
    }

    /// A vector and a scalar operand (`swap` when the scalar is on the left).
    fn vector_scalar(
        &mut self,
        op: BinOp,
        matching: &Matching,
        series: Vec<StepSeries>,
        scalar: &[f64],
        swap: bool,
    ) -> Result<EvalValue, PromqlError> {
        if op.is_set() {
            return Err(PromqlError::BadQuery(format!(
                "set operator {op:?} not allowed in binary scalar expression"
            )));
        }
        let mut out = Collector::new(self.step_count());
        for s in series {
            self.check_deadline()?;
            let labels = if op.drops_metric_name() || matching.return_bool {
                s.labels.without(&[METRIC_NAME_LABEL])
            } else {
                s.labels
            };
            for (i, v) in s.values.iter().enumerate() {
                let (Some(v), Some(&sv)) = (v, scalar.get(i)) else {
                    continue;
                };
                let (l, r) = if swap { (sv, *v) } else { (*v, sv) };
                let (mut value, keep) = binary::apply(op, l, r);
                if op.is_comparison() && swap {
                    value = *v;
                }
                if matching.return_bool {
                    value = if keep { 1.0 } else { 0.0 };
                } else if !keep {
                    continue;
                }
                out.push(&labels, i, value)?;
            }
        }
        Ok(EvalValue::Vector(out.finish()))
    }

    fn eval_aggregate(&mut self, a: &AggregateExpr) -> Result<EvalValue, PromqlError> {
        let op_text = a.op.to_string();
        let op = AggOp::parse(&op_text)
            .ok_or_else(|| PromqlError::Unsupported(format!("aggregation {op_text:?}")))?;
        let grouping = match &a.modifier {
            Some(LabelModifier::Include(l)) => Grouping {
                without: false,
                names: l.labels.clone(),
            },
            Some(LabelModifier::Exclude(l)) => Grouping {
                without: true,
                names: l.labels.clone(),
            },
            None => Grouping {
                without: false,
                names: Vec::new(),
            },
        };
        let n = self.step_count();
        let mut label_param: Option<String> = None;
        let mut number_param: Option<Vec<f64>> = None;
        if let Some(p) = &a.param {
            if op == AggOp::CountValues {
                match self.eval(p)? {
                    EvalValue::String(s) => label_param = Some(s),
                    other => {
                        return Err(PromqlError::BadQuery(format!(
                            "expected a string parameter, got {}",
                            other.type_name()
                        )))
                    }
                }
            } else {
                number_param = Some(self.eval_scalar(p)?);
            }
        }
        if GroupAccumulator::handles(op) {
            let mut acc = GroupAccumulator::new(op, grouping, n);
            let streamed = collision_free(&a.expr)
                && self.stream(&a.expr, &mut |batch| {
                    acc.fold(batch);
                    Ok(())
                })?;
            if !streamed {
                let input = self.eval_vector(&a.expr)?;
                acc.fold(input);
            }
            return Ok(EvalValue::Vector(acc.finish()));
        }
        let input = self.eval_vector(&a.expr)?;
        let mut out = Collector::new(n);
        let mut step_out = Vec::new();
        for i in 0..n {
            self.check_deadline()?;
            let elements: Vec<(&Labels, f64)> = input
                .iter()
                .filter_map(|s| s.values.get(i).copied().flatten().map(|v| (&s.labels, v)))
                .collect();
            if elements.is_empty() {
                continue;
            }
            let param = match (&label_param, &number_param) {
                (Some(l), _) => Param::Label(l),
                (_, Some(v)) => Param::Number(v.get(i).copied().unwrap_or(f64::NAN)),
                _ => Param::None,
            };
            step_out.clear();
            aggregate::aggregate(op, &grouping, &param, &elements, &mut step_out)?;
            for (labels, v) in step_out.drain(..) {
                out.push(&labels, i, v)?;
            }
        }
        Ok(EvalValue::Vector(out.finish()))
    }

    /// `expr[range:step]`: evaluates `expr` once at every multiple of the step that any
    /// outer step's window can reach, and hands the result on as a range, as Prometheus.
    fn eval_subquery(&mut self, sq: &SubqueryExpr) -> Result<EvalValue, PromqlError> {
        let range_ms = duration_ms(sq.range);
        let step_ms = sq.step.map_or(self.default_step_ms, duration_ms);
        if step_ms <= 0 {
            return Err(PromqlError::BadQuery(
                "zero or negative subquery step widths are not accepted".into(),
            ));
        }
        let shift = TimeShift::new(
            sq.at.as_ref(),
            sq.offset.as_ref(),
            self.query_start_ms,
            self.query_end_ms,
        );
        let (_, min, max) = self.read_times(shift);
        // the first multiple of the step at or after the earliest window start
        let from = min.saturating_sub(range_ms);
        let mut start = from.div_euclid(step_ms).saturating_mul(step_ms);
        if start < from {
            start = start.saturating_add(step_ms);
        }
        let steps = max.saturating_sub(start) / step_ms;
        if usize::try_from(steps).map_or(true, |n| n > self.max_samples) {
            return Err(PromqlError::TooManySamples("subquery evaluation"));
        }
        let mut inner = Evaluator {
            querier: self.querier,
            start_ms: start,
            end_ms: max,
            step_ms,
            query_start_ms: self.query_start_ms,
            query_end_ms: self.query_end_ms,
            default_step_ms: self.default_step_ms,
            lookback_ms: self.lookback_ms,
            max_samples: self.max_samples,
            deadline: self.deadline,
            current_samples: self.current_samples,
            peak_samples: self.peak_samples,
            total_samples: self.total_samples,
            archive_files: self.archive_files,
            rollup_resolution_ms: self.rollup_resolution_ms,
            ticks: self.ticks,
        };
        let result = inner.eval(&sq.expr);
        self.current_samples = inner.current_samples;
        self.peak_samples = inner.peak_samples;
        self.total_samples = inner.total_samples;
        self.archive_files = inner.archive_files;
        self.rollup_resolution_ms = inner.rollup_resolution_ms;
        self.ticks = inner.ticks;
        let times = inner.step_times();
        let series = match result? {
            EvalValue::Vector(v) => v
                .into_iter()
                .map(|s| Series {
                    samples: times
                        .iter()
                        .zip(&s.values)
                        .filter_map(|(&t, v)| v.map(|v| Sample::new(t, v)))
                        .collect(),
                    labels: s.labels,
                })
                .filter(|s| !s.samples.is_empty())
                .map(LazySeries::loaded)
                .collect(),
            other => {
                return Err(PromqlError::BadQuery(format!(
                    "subquery is only allowed on instant vector, got {} instead",
                    other.type_name()
                )))
            }
        };
        Ok(EvalValue::Range(RangeValue {
            series,
            range_ms,
            shift,
        }))
    }

    fn eval_call(&mut self, c: &Call) -> Result<EvalValue, PromqlError> {
        let name = super::function_name(c.func.name);
        let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
        let n = self.step_count();
        if functions::is_range_function(name) {
            return self.eval_range_call(name, &args);
        }
        if functions::is_elementwise_function(name) {
            let input = match args.first() {
                Some(e) => self.eval_vector(e)?,
                // the date functions default to vector(time())
                None => vec![StepSeries {
                    labels: Labels::default(),
                    values: self
                        .step_times()
                        .iter()
                        .map(|&t| Some(t as f64 / 1000.0))
                        .collect(),
                }],
            };
            let mut scalars = Vec::new();
            for e in args.iter().skip(1) {
                scalars.push(self.eval_scalar(e)?);
            }
            let drop = functions::drops_metric_name(name);
            let mut out = Collector::new(n);
            let mut step_args = Vec::with_capacity(scalars.len());
            for s in input {
                self.check_deadline()?;
                let labels = if drop {
                    s.labels.without(&[METRIC_NAME_LABEL])
                } else {
                    s.labels
                };
                for (i, v) in s.values.iter().enumerate() {
                    let Some(v) = v else { continue };
                    step_args.clear();
                    step_args.extend(
                        scalars
                            .iter()
                            .map(|a| a.get(i).copied().unwrap_or(f64::NAN)),
                    );
                    if let Some(r) = functions::eval_elementwise(name, *v, &step_args) {
                        out.push(&labels, i, r)?;
                    }
                }
            }
            return Ok(EvalValue::Vector(out.finish()));
        }
        let arg = |i: usize| {
            args.get(i)
                .copied()
                .ok_or_else(|| PromqlError::BadQuery(format!("missing argument {i} of {name}")))
        };
        match name {
            "time" => Ok(EvalValue::Scalar(
                self.step_times()
                    .iter()
                    .map(|&t| t as f64 / 1000.0)
                    .collect(),
            )),
            "pi" => Ok(EvalValue::Scalar(vec![
                std::f64::consts::PI;
                self.step_times().len()
            ])),
            "vector" => {
                let v = self.eval_scalar(arg(0)?)?;
                Ok(EvalValue::Vector(vec![StepSeries {
                    labels: Labels::default(),
                    values: v.into_iter().map(Some).collect(),
                }]))
            }
            "scalar" => {
                let input = self.eval_vector(arg(0)?)?;
                Ok(EvalValue::Scalar(
                    (0..n)
                        .map(|i| {
                            let p = present_at(&input, i);
                            match p.as_slice() {
                                [(_, v)] => *v,
                                _ => f64::NAN,
                            }
                        })
                        .collect(),
                ))
            }
            "timestamp" => self.eval_timestamp(arg(0)?),
            "absent" => {
                let input = self.eval_vector(arg(0)?)?;
                let labels = absent_labels(arg(0)?);
                let mut out = Collector::new(n);
                for i in 0..n {
                    if present_at(&input, i).is_empty() {
                        out.push(&labels, i, 1.0)?;
                    }
                }
                Ok(EvalValue::Vector(out.finish()))
            }
            "absent_over_time" => {
                let range = match self.eval(arg(0)?)? {
                    EvalValue::Range(r) => r,
                    _ => {
                        return Err(PromqlError::BadQuery(
                            "absent_over_time needs a range vector argument".into(),
                        ))
                    }
                };
                let labels = absent_labels(arg(0)?);
                let times = self.step_times();
                let mut present = vec![false; times.len()];
                let mut cache = ReadCache::new();
                let mut buf = Vec::new();
                for s in &range.series {
                    self.check_deadline_now()?;
                    let samples = self.load_range_samples(s, &mut cache, &mut buf)?;
                    for (i, &t) in times.iter().enumerate() {
                        if !range.window(&samples, t).0.is_empty() {
                            if let Some(p) = present.get_mut(i) {
                                *p = true;
                            }
                        }
                    }
                    self.release_samples(samples.len());
                }
                let mut out = Collector::new(n);
                for (i, p) in present.iter().enumerate() {
                    if !p {
                        out.push(&labels, i, 1.0)?;
                    }
                }
                Ok(EvalValue::Vector(out.finish()))
            }
            "sort" | "sort_desc" => {
                let mut input = self.eval_vector(arg(0)?)?;
                if n == 1 {
                    let desc = name == "sort_desc";
                    // 2.42 sorts with the reverse of a heap order that puts NaN first, so
                    // NaN ends up last in both directions
                    input.sort_by(|a, b| {
                        let (x, y) = (
                            a.values.first().copied().flatten().unwrap_or(f64::NAN),
                            b.values.first().copied().flatten().unwrap_or(f64::NAN),
                        );
                        match (x.is_nan(), y.is_nan()) {
                            (true, false) => std::cmp::Ordering::Greater,
                            (false, true) => std::cmp::Ordering::Less,
                            _ if desc => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
                            _ => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                        }
                    });
                }
                Ok(EvalValue::Vector(input))
            }
            "label_replace" => {
                let input = self.eval_vector(arg(0)?)?;
                let dst = string_arg(arg(1)?)?;
                let repl = string_arg(arg(2)?)?;
                let src = string_arg(arg(3)?)?;
                let re = string_arg(arg(4)?)?;
                let mut out = Collector::new(n);
                for s in input {
                    let labels = functions::label_replace(&s.labels, &dst, &repl, &src, &re)?;
                    push_series(&mut out, &labels, &s.values)?;
                }
                Ok(EvalValue::Vector(out.finish()))
            }
            "label_join" => {
                let input = self.eval_vector(arg(0)?)?;
                let dst = string_arg(arg(1)?)?;
                let sep = string_arg(arg(2)?)?;
                let mut srcs = Vec::new();
                for e in args.iter().skip(3) {
                    srcs.push(string_arg(e)?);
                }
                let srcs: Vec<&str> = srcs.iter().map(String::as_str).collect();
                functions::validate_label_join(&dst, &srcs)?;
                let mut out = Collector::new(n);
                for s in input {
                    let labels = functions::label_join(&s.labels, &dst, &sep, &srcs)?;
                    push_series(&mut out, &labels, &s.values)?;
                }
                Ok(EvalValue::Vector(out.finish()))
            }
            "histogram_quantile" => {
                let q = self.eval_scalar(arg(0)?)?;
                let input = self.eval_vector(arg(1)?)?;
                // group by labels without `le` and the metric name
                let mut groups: Vec<(Labels, Vec<(f64, usize)>)> = Vec::new();
                let mut index: HashMap<Labels, usize> = HashMap::new();
                // 2.42 groups buckets by all labels but `le`, the metric name included, and
                // drops the name from the result: two histograms differing only in name
                // collide there ("same labelset"), as here through the collector
                for (j, s) in input.iter().enumerate() {
                    let Some(le) = s.labels.get("le").and_then(parse_go_float) else {
                        continue;
                    };
                    let key = s.labels.without(&["le"]);
                    let gi = *index.entry(key.clone()).or_insert_with(|| {
                        groups.push((key, Vec::new()));
                        groups.len() - 1
                    });
                    if let Some(g) = groups.get_mut(gi) {
                        g.1.push((le, j));
                    }
                }
                let mut out = Collector::new(n);
                let mut buckets = Vec::new();
                for (labels, members) in &groups {
                    for i in 0..n {
                        self.check_deadline()?;
                        buckets.clear();
                        for &(le, j) in members {
                            if let Some(v) = input
                                .get(j)
                                .and_then(|s| s.values.get(i))
                                .copied()
                                .flatten()
                            {
                                buckets.push((le, v));
                            }
                        }
                        if buckets.is_empty() {
                            continue;
                        }
                        let qv = q.get(i).copied().unwrap_or(f64::NAN);
                        out.push(
                            &labels.without(&[METRIC_NAME_LABEL]),
                            i,
                            functions::histogram_quantile(qv, &mut buckets),
                        )?;
                    }
                }
                Ok(EvalValue::Vector(out.finish()))
            }
            // native-histogram functions: Lookout stores no native histograms, and 2.42
            // answers them with nothing for float series
            "histogram_count" | "histogram_sum" | "histogram_fraction" => {
                for a in &args {
                    self.eval(a)?;
                }
                Ok(EvalValue::Vector(Vec::new()))
            }
            _ => Err(PromqlError::Unsupported(format!("function {name:?}"))),
        }
    }

    /// A range-vector function: per series and step, over the window of the range argument.
    fn eval_range_call(&mut self, name: &str, args: &[&Expr]) -> Result<EvalValue, PromqlError> {
        let mut out = Collector::new(self.step_count());
        self.range_call_batches(name, args, &mut |batch| {
            for s in batch {
                out.push_series(s)?;
            }
            Ok(())
        })?;
        Ok(EvalValue::Vector(out.finish()))
    }

    /// Evaluates a range function series by series, handing `sink` the results a batch at a
    /// time, in series order.
    fn range_call_batches(
        &mut self,
        name: &str,
        args: &[&Expr],
        sink: &mut dyn FnMut(Vec<StepSeries>) -> Result<(), PromqlError>,
    ) -> Result<(), PromqlError> {
        let mut name = name;
        let mut range: Option<RangeValue> = None;
        let mut scalars: Vec<Vec<f64>> = Vec::new();
        for e in args {
            if let Some((downsampled, applied)) = self.rollup_range(name, e)? {
                range = Some(downsampled);
                name = applied;
                continue;
            }
            match self.eval(e)? {
                EvalValue::Range(r) => range = Some(r),
                EvalValue::Scalar(v) => scalars.push(v),
                other => {
                    return Err(PromqlError::BadQuery(format!(
                        "unexpected {} argument to {name}",
                        other.type_name()
                    )))
                }
            }
        }
        let Some(range) = range else {
            return Err(PromqlError::BadQuery(format!(
                "{name} needs a range vector argument"
            )));
        };
        let times = self.step_times();
        // the scalar arguments at each step, checked once (Prometheus checks them only when
        // there is a series to apply them to)
        let step_args: Vec<Vec<f64>> = (0..times.len())
            .map(|i| {
                scalars
                    .iter()
                    .map(|a| a.get(i).copied().unwrap_or(f64::NAN))
                    .collect()
            })
            .collect();
        if !range.series.is_empty() {
            for a in &step_args {
                functions::validate_range_args(name, a).map_err(PromqlError::Execution)?;
            }
        }
        let drop = functions::drops_metric_name(name);
        let with_resets = functions::uses_counter_resets(name);
        // avg_over_time sums four windows side by side (the same results in about half the
        // time); every other function goes step by step
        let interleaved_avg = name == "avg_over_time";
        let per_series = |samples: &[Sample], labels: &Labels| -> Option<StepSeries> {
            let mut values = vec![None; times.len()];
            if interleaved_avg {
                let windows: Vec<std::ops::Range<usize>> = range
                    .window_walk(samples, &times)
                    .map(|(positions, _, _)| positions)
                    .collect();
                functions::avg_over_time_windows(samples, &windows, &mut values);
            } else {
                // found once for all the steps' overlapping windows
                let resets = if with_resets {
                    functions::counter_resets(samples)
                } else {
                    Vec::new()
                };
                let windows = range.window_walk(samples, &times);
                for ((slot, (positions, start, end)), a) in
                    values.iter_mut().zip(windows).zip(&step_args)
                {
                    let window = samples.get(positions.clone()).unwrap_or(&[]);
                    if window.is_empty() {
                        continue;
                    }
                    // the resets between two samples of the window: after its first sample
                    let lo = resets.partition_point(|r| r.index <= positions.start);
                    let hi = resets.partition_point(|r| r.index < positions.end);
                    let input = functions::RangeArgs {
                        samples: window,
                        range_start_ms: start,
                        range_end_ms: end,
                        args: a,
                        resets: with_resets.then(|| resets.get(lo..hi).unwrap_or(&[])),
                    };
                    *slot = functions::eval_range_function(name, &input);
                }
            }
            let any = values.iter().any(Option::is_some);
            any.then(|| StepSeries {
                labels: if drop {
                    labels.without(&[METRIC_NAME_LABEL])
                } else {
                    labels.clone()
                },
                values,
            })
        };
        self.series_batches(&range.series, true, &per_series, sink)
    }

    /// The range argument `e` of range function `name` read from downsampled data, and the
    /// function to apply to it, when the query is coarse enough: its step is at least a
    /// rollup window and the range spans at least [`MIN_WINDOWS_PER_RANGE`] of them (the
    /// coarsest resolution that fits is used). `None` (read raw samples) otherwise, or when
    /// the store has no rollups for the range: data not archived is always read raw.
    fn rollup_range(
        &mut self,
        name: &str,
        e: &Expr,
    ) -> Result<Option<(RangeValue, &'static str)>, PromqlError> {
        let (Expr::MatrixSelector(ms), Some((agg, applied))) =
            (unwrap_parens(e), functions::rollup_use(name))
        else {
            return Ok(None);
        };
        let range_ms = duration_ms(ms.range);
        let Some(&resolution) = ROLLUP_RESOLUTIONS_MS
            .iter()
            .rev()
            .find(|&&r| self.step_ms >= r && range_ms >= MIN_WINDOWS_PER_RANGE * r)
        else {
            return Ok(None);
        };
        let vs = &ms.vs;
        let sets = selector::matcher_sets(vs)?;
        let [set] = sets.as_slice() else {
            return Ok(None);
        };
        let shift = self.selector_shift(vs);
        let (_, min, max) = self.read_times(shift);
        let mint = min.saturating_sub(range_ms);
        let Some(found) =
            self.querier
                .select_rollup(set as &[LabelMatcher], mint, max, resolution, agg)?
        else {
            return Ok(None);
        };
        self.check_deadline_now()?;
        self.archive_files += found.files;
        self.rollup_resolution_ms = self.rollup_resolution_ms.max(Some(resolution));
        Ok(Some((
            RangeValue {
                series: found.series,
                range_ms,
                shift,
            },
            applied,
        )))
    }

    /// Loads `series` a batch at a time, computes `per_series` for each on all cores, and
    /// hands each batch's results to `sink` in series order. `strip_stale` drops staleness
    /// markers first (range windows never see them). Raw samples count against
    /// `max_samples` while their batch is held.
    fn series_batches(
        &mut self,
        series: &[LazySeries],
        strip_stale: bool,
        per_series: &(dyn Fn(&[Sample], &Labels) -> Option<StepSeries> + Sync),
        sink: &mut dyn FnMut(Vec<StepSeries>) -> Result<(), PromqlError>,
    ) -> Result<(), PromqlError> {
        for batch in series.chunks(SERIES_BATCH) {
            self.check_deadline_now()?;
            let deadline = self.deadline;
            let results: Vec<Result<(Option<StepSeries>, usize), PromqlError>> = batch
                .par_iter()
                .map_init(
                    || (ReadCache::new(), Vec::new()),
                    |(cache, buf), s| {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            return Err(PromqlError::Timeout("expression evaluation"));
                        }
                        let samples = s.load(cache, buf)?;
                        let loaded = samples.len();
                        if strip_stale && samples.iter().any(|p| is_stale_nan(p.value)) {
                            let kept: Vec<Sample> = samples
                                .iter()
                                .filter(|p| !is_stale_nan(p.value))
                                .copied()
                                .collect();
                            return Ok((per_series(&kept, &s.labels), loaded));
                        }
                        Ok((per_series(samples, &s.labels), loaded))
                    },
                )
                .collect();
            let mut out = Vec::with_capacity(batch.len());
            let mut loaded = 0usize;
            for r in results {
                let (s, n) = r?;
                loaded += n;
                out.extend(s);
            }
            let produced: usize = out.iter().map(StepSeries::present).sum();
            self.total_samples = self.total_samples.saturating_add(loaded);
            self.add_samples(loaded + produced)?;
            self.release_samples(loaded + produced);
            sink(out)?;
        }
        Ok(())
    }

    /// Evaluates an instant-vector `expr` whose series are independent of each other (a
    /// selector, a range function over a selector) batch by batch into `sink`, so no more
    /// than a batch of its series is held at once. `Ok(false)` when `expr` is not of that
    /// kind: nothing was evaluated.
    fn stream(
        &mut self,
        expr: &Expr,
        sink: &mut dyn FnMut(Vec<StepSeries>) -> Result<(), PromqlError>,
    ) -> Result<bool, PromqlError> {
        match unwrap_parens(expr) {
            Expr::VectorSelector(vs) => {
                self.vector_selector_batches(vs, sink)?;
                Ok(true)
            }
            Expr::Call(c) if functions::is_range_function(super::function_name(c.func.name)) => {
                let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
                self.range_call_batches(super::function_name(c.func.name), &args, sink)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The samples of a range's series with staleness markers removed, counted as held
    /// (the caller releases them).
    fn load_range_samples(
        &mut self,
        s: &LazySeries,
        cache: &mut ReadCache,
        buf: &mut Vec<Sample>,
    ) -> Result<Vec<Sample>, PromqlError> {
        let samples = s.load(cache, buf)?;
        let kept: Vec<Sample> = samples
            .iter()
            .filter(|p| !is_stale_nan(p.value))
            .copied()
            .collect();
        self.total_samples = self.total_samples.saturating_add(samples.len());
        self.add_samples(kept.len())?;
        Ok(kept)
    }

    /// A range value at one instant, as a matrix (an instant query of a range selector or
    /// subquery).
    pub fn matrix_at(&mut self, range: &RangeValue, t: i64) -> Result<Vec<Series>, PromqlError> {
        let mut cache = ReadCache::new();
        let mut buf = Vec::new();
        let mut out = Vec::with_capacity(range.series.len());
        for s in &range.series {
            self.check_deadline_now()?;
            let samples = self.load_range_samples(s, &mut cache, &mut buf)?;
            let window = range.window(&samples, t).0;
            if !window.is_empty() {
                out.push(Series {
                    labels: s.labels.clone(),
                    samples: window.to_vec(),
                });
            }
        }
        Ok(out)
    }

    /// `timestamp()`: of a plain selector, the time of the sample each step reads (as
    /// Prometheus); otherwise the step's time.
    fn eval_timestamp(&mut self, arg: &Expr) -> Result<EvalValue, PromqlError> {
        let n = self.step_count();
        let mut out = Collector::new(n);
        if let Expr::VectorSelector(vs) = unwrap_parens(arg) {
            let mut shift = self.selector_shift(vs);
            // Observed of 2.42 (the compliance file pins both): with `@`, a positive offset
            // moves the read back as anywhere else, but a negative one is ignored here.
            if shift.at_ms.is_some() && shift.offset_ms < 0 {
                shift.offset_ms = 0;
            }
            let (times, min, max) = self.read_times(shift);
            let series = self.select(vs, min.saturating_sub(self.lookback_ms), max)?;
            for s in series {
                let labels = s.labels.without(&[METRIC_NAME_LABEL]);
                for (i, &(_, read_at)) in times.iter().enumerate() {
                    self.check_deadline()?;
                    if selector::value_at(&s.samples, read_at, self.lookback_ms).is_none() {
                        continue;
                    }
                    let end = s.samples.partition_point(|p| p.timestamp_ms <= read_at);
                    if let Some(p) = end.checked_sub(1).and_then(|e| s.samples.get(e)) {
                        out.push(&labels, i, p.timestamp_ms as f64 / 1000.0)?;
                    }
                }
            }
            return Ok(EvalValue::Vector(out.finish()));
        }
        let input = self.eval_vector(arg)?;
        let times = self.step_times();
        for s in input {
            let labels = s.labels.without(&[METRIC_NAME_LABEL]);
            for (i, v) in s.values.iter().enumerate() {
                if let (Some(_), Some(&t)) = (v, times.get(i)) {
                    out.push(&labels, i, t as f64 / 1000.0)?;
                }
            }
        }
        Ok(EvalValue::Vector(out.finish()))
    }

    /// [`Evaluator::select`] with samples read on demand.
    fn select_lazy(
        &mut self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<LazySeries>, PromqlError> {
        let sets = selector::matcher_sets(vs)?;
        self.archive_files += self.querier.archive_files(mint, maxt);
        if let [set] = sets.as_slice() {
            let found = self
                .querier
                .select_lazy(set as &[LabelMatcher], mint, maxt)?;
            self.check_deadline_now()?;
            return Ok(found);
        }
        let mut merged: BTreeMap<Labels, LazySeries> = BTreeMap::new();
        for set in &sets {
            for s in self
                .querier
                .select_lazy(set as &[LabelMatcher], mint, maxt)?
            {
                merged.entry(s.labels.clone()).or_insert(s);
            }
        }
        self.check_deadline_now()?;
        Ok(merged.into_values().collect())
    }

    /// Fetches every series of `vs` with samples in `[mint, maxt]`, merging the matcher
    /// sets of an `or` selector.
    fn select(
        &mut self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, PromqlError> {
        let sets = selector::matcher_sets(vs)?;
        self.archive_files += self.querier.archive_files(mint, maxt);
        let mut merged: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        let single = sets.len() == 1;
        for set in &sets {
            let found = self.querier.select(set as &[LabelMatcher], mint, maxt)?;
            if single {
                self.check_deadline_now()?;
                return Ok(found);
            }
            for s in found {
                merged.entry(s.labels).or_insert(s.samples);
            }
        }
        self.check_deadline_now()?;
        Ok(merged
            .into_iter()
            .map(|(labels, samples)| Series { labels, samples })
            .collect())
    }

    /// The `@` and `offset` of a selector, resolved against the query's start and end.
    fn selector_shift(&self, vs: &VectorSelector) -> TimeShift {
        TimeShift::new(
            vs.at.as_ref(),
            vs.offset.as_ref(),
            self.query_start_ms,
            self.query_end_ms,
        )
    }

    /// The read times of every step, and their bounds.
    fn read_times(&self, shift: TimeShift) -> (Vec<(i64, i64)>, i64, i64) {
        let times: Vec<(i64, i64)> = self.steps().map(|t| (t, shift.apply(t))).collect();
        let min = times.iter().map(|&(_, r)| r).min().unwrap_or(self.start_ms);
        let max = times.iter().map(|&(_, r)| r).max().unwrap_or(self.end_ms);
        (times, min, max)
    }

    fn eval_vector_selector(&mut self, vs: &VectorSelector) -> Result<EvalValue, PromqlError> {
        let mut out = Vec::new();
        self.vector_selector_batches(vs, &mut |batch| {
            out.extend(batch);
            Ok(())
        })?;
        Ok(EvalValue::Vector(out))
    }

    /// An instant-vector selector's series with their value at each step, a batch at a time.
    fn vector_selector_batches(
        &mut self,
        vs: &VectorSelector,
        sink: &mut dyn FnMut(Vec<StepSeries>) -> Result<(), PromqlError>,
    ) -> Result<(), PromqlError> {
        let shift = self.selector_shift(vs);
        let (times, min, max) = self.read_times(shift);
        let series = self.select_lazy(vs, min.saturating_sub(self.lookback_ms), max)?;
        let lookback = self.lookback_ms;
        let per_series = |samples: &[Sample], labels: &Labels| -> Option<StepSeries> {
            let values: Vec<Option<f64>> = times
                .iter()
                .map(|&(_, read_at)| selector::value_at(samples, read_at, lookback))
                .collect();
            values.iter().any(Option::is_some).then(|| StepSeries {
                labels: labels.clone(),
                values,
            })
        };
        self.series_batches(&series, false, &per_series, sink)
    }

    /// Selects a range selector's series once for every step; windows are cut per step by
    /// whoever consumes the range.
    fn eval_matrix_selector(&mut self, ms: &MatrixSelector) -> Result<EvalValue, PromqlError> {
        let vs = &ms.vs;
        let range_ms = duration_ms(ms.range);
        let shift = self.selector_shift(vs);
        let (_, min, max) = self.read_times(shift);
        // read by the consumer, a batch of series at a time
        let series = self.select_lazy(vs, min.saturating_sub(range_ms), max)?;
        Ok(EvalValue::Range(RangeValue {
            series,
            range_ms,
            shift,
        }))
    }
}

/// A range selector's or subquery's series, selected once for all steps (a selector's are
/// read when consumed).
pub(super) struct RangeValue {
    pub series: Vec<LazySeries>,
    pub range_ms: i64,
    pub shift: TimeShift,
}

impl RangeValue {
    /// The part of a series' `samples` (staleness markers removed) in the window of the step
    /// at `t`, `[t - range, t]` after `@`/`offset`, and the window bounds.
    pub fn window<'a>(&self, samples: &'a [Sample], t: i64) -> (&'a [Sample], i64, i64) {
        let (positions, from, read_at) = self.window_positions(samples, t);
        (samples.get(positions).unwrap_or(&[]), from, read_at)
    }

    /// [`RangeValue::window`] as positions in `samples`.
    pub fn window_positions(
        &self,
        samples: &[Sample],
        t: i64,
    ) -> (std::ops::Range<usize>, i64, i64) {
        let read_at = self.shift.apply(t);
        let from = read_at.saturating_sub(self.range_ms);
        let start = samples.partition_point(|s| s.timestamp_ms < from);
        let end = samples.partition_point(|s| s.timestamp_ms <= read_at);
        (start..end.max(start), from, read_at)
    }

    /// [`RangeValue::window_positions`] for every step time in `times` (ascending, as a
    /// range query's steps are): the windows only move forward, so two cursors walk the
    /// samples once instead of two binary searches per step.
    pub fn window_walk<'a>(
        &'a self,
        samples: &'a [Sample],
        times: &'a [i64],
    ) -> impl Iterator<Item = (std::ops::Range<usize>, i64, i64)> + 'a {
        let (mut start, mut end, mut last_read) = (0usize, 0usize, i64::MIN);
        times.iter().map(move |&t| {
            let read_at = self.shift.apply(t);
            if read_at < last_read {
                // not ascending after all: start the walk over
                (start, end) = (0, 0);
            }
            last_read = read_at;
            let from = read_at.saturating_sub(self.range_ms);
            while samples.get(start).is_some_and(|s| s.timestamp_ms < from) {
                start += 1;
            }
            end = end.max(start);
            while samples.get(end).is_some_and(|s| s.timestamp_ms <= read_at) {
                end += 1;
            }
            (start..end, from, read_at)
        })
    }
}

/// A series of an instant-vector expression: its value at each step, if any.
#[derive(Clone, Debug)]
pub(super) struct StepSeries {
    pub labels: Labels,
    pub values: Vec<Option<f64>>,
}

impl StepSeries {
    /// Steps with a value.
    fn present(&self) -> usize {
        self.values.iter().filter(|v| v.is_some()).count()
    }
}

/// What an expression evaluates to over all steps.
pub(super) enum EvalValue {
    /// One value per step.
    Scalar(Vec<f64>),
    /// Series in evaluation order, each with a value per step where present.
    Vector(Vec<StepSeries>),
    Range(RangeValue),
    String(String),
}

impl EvalValue {
    /// Values held in memory (a range's series are read lazily and counted as they load).
    fn sample_count(&self) -> usize {
        match self {
            EvalValue::Scalar(v) => v.len(),
            EvalValue::Vector(series) => series.iter().map(StepSeries::present).sum(),
            EvalValue::Range(_) | EvalValue::String(_) => 0,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            EvalValue::Scalar(_) => "scalar",
            EvalValue::Vector(_) => "instant vector",
            EvalValue::Range(_) => "range vector",
            EvalValue::String(_) => "string",
        }
    }
}

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

fn string_arg(e: &Expr) -> Result<String, PromqlError> {
    match unwrap_parens(e) {
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        other => Err(PromqlError::BadQuery(format!(
            "expected a string, got {other}"
        ))),
    }
}

/// Go's `strconv.ParseFloat` for `le` values (accepts `+Inf`, `Inf`, `NaN`).
fn parse_go_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        // no trimming: Go's ParseFloat refuses surrounding spaces
        _ => s.parse().ok(),
    }
}

fn push_series(
    out: &mut Collector,
    labels: &Labels,
    values: &[Option<f64>],
) -> Result<(), PromqlError> {
    for (i, v) in values.iter().enumerate() {
        if let Some(v) = v {
            out.push(labels, i, *v)?;
        }
    }
    Ok(())
}

/// The labels `absent()`/`absent_over_time()` give their result: the argument selector's
/// equality matchers, except names matched more than once or otherwise.
fn absent_labels(arg: &Expr) -> Labels {
    let vs = match unwrap_parens(arg) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::default(),
    };
    let mut set: Vec<Label> = Vec::new();
    let mut dropped: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME_LABEL {
            continue;
        }
        let equal = matches!(m.op, promql_parser::label::MatchOp::Equal);
        if equal && !set.iter().any(|l| l.name == m.name) {
            set.push(Label::new(m.name.clone(), m.value.clone()));
        } else {
            dropped.push(&m.name);
        }
    }
    set.retain(|l| !dropped.contains(&l.name.as_str()));
    Labels::new(set)
}

/// The (series index, value) of every series present at step `i`.
fn present_at(series: &[StepSeries], i: usize) -> Vec<(usize, f64)> {
    series
        .iter()
        .enumerate()
        .filter_map(|(j, s)| s.values.get(i).copied().flatten().map(|v| (j, v)))
        .collect()
}

/// Builds an instant-vector result step by step, one series per label set in first-seen
/// order; two values for one label set at one step is Prometheus's "same labelset" error.
pub(super) struct Collector {
    steps: usize,
    index: HashMap<Labels, usize>,
    out: Vec<StepSeries>,
}

impl Collector {
    pub fn new(steps: usize) -> Self {
        Collector {
            steps,
            index: HashMap::new(),
            out: Vec::new(),
        }
    }

    pub fn push(&mut self, labels: &Labels, step: usize, value: f64) -> Result<(), PromqlError> {
        let i = match self.index.get(labels) {
            Some(&i) => i,
            None => {
                self.index.insert(labels.clone(), self.out.len());
                self.out.push(StepSeries {
                    labels: labels.clone(),
                    values: vec![None; self.steps],
                });
                self.out.len() - 1
            }
        };
        let slot = self
            .out
            .get_mut(i)
            .and_then(|s| s.values.get_mut(step))
            .ok_or_else(|| PromqlError::BadQuery("step out of range".into()))?;
        if slot.is_some() {
            return Err(PromqlError::Execution(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
        *slot = Some(value);
        Ok(())
    }

    /// Adds a whole series: one lookup of its labels instead of one per step.
    pub fn push_series(&mut self, series: StepSeries) -> Result<(), PromqlError> {
        match self.index.get(&series.labels) {
            None => {
                self.index.insert(series.labels.clone(), self.out.len());
                let mut series = series;
                series.values.resize(self.steps, None);
                self.out.push(series);
                Ok(())
            }
            Some(_) => {
                for (i, v) in series.values.iter().enumerate() {
                    if let Some(v) = v {
                        self.push(&series.labels, i, *v)?;
                    }
                }
                Ok(())
            }
        }
    }

    pub fn finish(self) -> Vec<StepSeries> {
        self.out
    }
}

/// Whether the series `expr` yields are known to have distinct label sets, so they can be
/// aggregated as they stream by without the duplicate-labelset check. A range function that
/// drops the metric name could map two series onto one label set unless one name is selected.
fn collision_free(expr: &Expr) -> bool {
    match unwrap_parens(expr) {
        Expr::VectorSelector(_) => true,
        Expr::Call(c) if functions::is_range_function(super::function_name(c.func.name)) => {
            if !functions::drops_metric_name(super::function_name(c.func.name)) {
                return true;
            }
            c.args.args.iter().any(|a| match unwrap_parens(a) {
                Expr::MatrixSelector(ms) => single_metric_name(&ms.vs),
                _ => false,
            })
        }
        _ => false,
    }
}

/// Whether `vs` can only select series of one metric name.
fn single_metric_name(vs: &VectorSelector) -> bool {
    if !vs.matchers.or_matchers.is_empty() {
        return false;
    }
    vs.name.is_some()
        || vs.matchers.matchers.iter().any(|m| {
            m.name == METRIC_NAME_LABEL && matches!(m.op, promql_parser::label::MatchOp::Equal)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walking_the_windows_finds_what_searching_each_step_finds() {
        // irregular samples with gaps, a duplicate-free but uneven spacing
        let samples: Vec<Sample> = (0..300i64)
            .filter(|i| i % 17 != 3)
            .map(|i| Sample::new(i * 10_000 + (i * 7919) % 4_000, i as f64))
            .collect();
        let shifts = [
            TimeShift {
                at_ms: None,
                offset_ms: 0,
            },
            TimeShift {
                at_ms: None,
                offset_ms: 300_000,
            },
            TimeShift {
                at_ms: None,
                offset_ms: -120_000,
            },
            TimeShift {
                at_ms: Some(1_500_000),
                offset_ms: 60_000,
            },
        ];
        for shift in shifts {
            for range_ms in [0, 15_000, 60_000, 300_000] {
                let range = RangeValue {
                    series: Vec::new(),
                    range_ms,
                    shift,
                };
                let times: Vec<i64> = (-50..400).map(|i| i * 7_500).collect();
                let walked: Vec<_> = range.window_walk(&samples, &times).collect();
                let searched: Vec<_> = times
                    .iter()
                    .map(|&t| range.window_positions(&samples, t))
                    .collect();
                assert_eq!(walked, searched, "range {range_ms} shift {shift:?}");
            }
        }
    }
}
