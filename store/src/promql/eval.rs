//! The evaluator. Like Prometheus's, it evaluates every query as a range evaluation over
//! `start..=end` in `step`s (an instant query is a range of one step) and produces one
//! series per output label set with a point per step; [`super::Engine`] turns the result
//! back into a scalar or vector for instant queries. Operators, functions and aggregations
//! (the next step) slot in as further arms of [`Evaluator::eval`] working on these
//! per-step series.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use promql_parser::parser::{
    AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, VectorSelector,
};

use crate::contract::{LabelMatcher, MetricsQuerier};
use crate::model::{Labels, Sample, Series, METRIC_NAME_LABEL};

use super::aggregate::{self, AggOp, Grouping, Param};
use super::binary::{self, BinOp, Matching, Side};
use super::error::PromqlError;
use super::selector::{self, duration_ms, TimeShift};

/// How often (in loop iterations) long loops look at the clock.
const DEADLINE_CHECK_EVERY: usize = 1024;

pub(super) struct Evaluator<'a> {
    pub querier: &'a dyn MetricsQuerier,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Step width; always positive (1 for instant queries).
    pub step_ms: i64,
    pub lookback_ms: i64,
    pub max_samples: usize,
    /// `None` when the timeout is too large to represent.
    pub deadline: Option<Instant>,
    /// Samples currently held by the evaluation, checked against `max_samples`.
    pub current_samples: usize,
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
        if self.current_samples > self.max_samples {
            return Err(PromqlError::TooManySamples("query execution"));
        }
        Ok(())
    }

    /// Evaluates `expr` over every step.
    pub fn eval(&mut self, expr: &Expr) -> Result<EvalValue, PromqlError> {
        self.check_deadline_now()?;
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
            Expr::Subquery(_) => Err(PromqlError::Unsupported("subquery".into())),
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
        let n = self.step_count();
        self.add_samples(n)?;
        Ok(EvalValue::Scalar(vec![value; n]))
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

    fn eval_call(&mut self, c: &Call) -> Result<EvalValue, PromqlError> {
        Err(PromqlError::Unsupported(format!(
            "function {:?}",
            c.func.name
        )))
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

    /// The read times of every step, and their bounds.
    fn read_times(&self, shift: TimeShift) -> (Vec<(i64, i64)>, i64, i64) {
        let times: Vec<(i64, i64)> = self.steps().map(|t| (t, shift.apply(t))).collect();
        let min = times.iter().map(|&(_, r)| r).min().unwrap_or(self.start_ms);
        let max = times.iter().map(|&(_, r)| r).max().unwrap_or(self.end_ms);
        (times, min, max)
    }

    fn eval_vector_selector(&mut self, vs: &VectorSelector) -> Result<EvalValue, PromqlError> {
        let shift = TimeShift::new(
            vs.at.as_ref(),
            vs.offset.as_ref(),
            self.start_ms,
            self.end_ms,
        );
        let (times, min, max) = self.read_times(shift);
        let mint = min.saturating_sub(self.lookback_ms);
        let series = self.select(vs, mint, max)?;
        let mut out = Vec::with_capacity(series.len());
        for s in series {
            let mut values = Vec::with_capacity(times.len());
            let mut present = 0;
            for &(_, read_at) in &times {
                self.check_deadline()?;
                let v = selector::value_at(&s.samples, read_at, self.lookback_ms);
                present += usize::from(v.is_some());
                values.push(v);
            }
            if present > 0 {
                self.add_samples(present)?;
                out.push(StepSeries {
                    labels: s.labels,
                    values,
                });
            }
        }
        Ok(EvalValue::Vector(out))
    }

    /// Selects a range selector's series once for every step; windows are cut per step by
    /// whoever consumes the range.
    fn eval_matrix_selector(&mut self, ms: &MatrixSelector) -> Result<EvalValue, PromqlError> {
        let vs = &ms.vs;
        let range_ms = duration_ms(ms.range);
        let shift = TimeShift::new(
            vs.at.as_ref(),
            vs.offset.as_ref(),
            self.start_ms,
            self.end_ms,
        );
        let (_, min, max) = self.read_times(shift);
        let series = self.select(vs, min.saturating_sub(range_ms), max)?;
        let held: usize = series.iter().map(|s| s.samples.len()).sum();
        self.add_samples(held)?;
        Ok(EvalValue::Range(RangeValue {
            series,
            range_ms,
            shift,
        }))
    }
}

/// A range selector's raw series, selected once for all steps.
pub(super) struct RangeValue {
    pub series: Vec<Series>,
    pub range_ms: i64,
    pub shift: TimeShift,
}

impl RangeValue {
    /// The samples of series `s` in the window of the step at `t`, and the window bounds.
    pub fn window(&self, s: &Series, t: i64) -> (Vec<Sample>, i64, i64) {
        let read_at = self.shift.apply(t);
        (
            selector::window(&s.samples, read_at, self.range_ms),
            read_at.saturating_sub(self.range_ms),
            read_at,
        )
    }
}

/// A series of an instant-vector expression: its value at each step, if any.
#[derive(Clone, Debug)]
pub(super) struct StepSeries {
    pub labels: Labels,
    pub values: Vec<Option<f64>>,
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
    pub fn type_name(&self) -> &'static str {
        match self {
            EvalValue::Scalar(_) => "scalar",
            EvalValue::Vector(_) => "instant vector",
            EvalValue::Range(_) => "range vector",
            EvalValue::String(_) => "string",
        }
    }
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
            return Err(PromqlError::BadQuery(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
        *slot = Some(value);
        Ok(())
    }

    pub fn finish(self) -> Vec<StepSeries> {
        self.out
    }
}
