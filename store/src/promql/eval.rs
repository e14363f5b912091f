//! The evaluator. Like Prometheus's, it evaluates every query as a range evaluation over
//! `start..=end` in `step`s (an instant query is a range of one step) and produces one
//! series per output label set with a point per step; [`super::Engine`] turns the result
//! back into a scalar or vector for instant queries. Operators, functions and aggregations
//! (the next step) slot in as further arms of [`Evaluator::eval`] working on these
//! per-step series.

use std::collections::BTreeMap;
use std::time::Instant;

use promql_parser::parser::{Expr, MatrixSelector, VectorSelector};

use crate::contract::{LabelMatcher, MetricsQuerier};
use crate::model::{Labels, Sample, Series};

use super::error::PromqlError;
use super::selector::{self, duration_ms, TimeShift};
use super::value::{Matrix, StringValue, Value};

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

    /// Evaluates `expr` over every step. Scalars and instant vectors come back as a
    /// [`Value::Matrix`] with a point per step (a scalar as one series without labels);
    /// range selectors (instant queries only) as a matrix of raw samples; strings as
    /// [`Value::String`].
    pub fn eval(&mut self, expr: &Expr) -> Result<Value, PromqlError> {
        self.check_deadline_now()?;
        match expr {
            Expr::NumberLiteral(n) => self.eval_number(n.val),
            Expr::StringLiteral(s) => Ok(Value::String(StringValue {
                timestamp_ms: self.start_ms,
                value: s.val.clone(),
            })),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::VectorSelector(vs) => self.eval_vector_selector(vs),
            Expr::MatrixSelector(ms) => self.eval_matrix_selector(ms),
            Expr::Aggregate(a) => Err(PromqlError::Unsupported(format!(
                "aggregation {:?}",
                a.op.to_string()
            ))),
            Expr::Unary(_) => Err(PromqlError::Unsupported("unary minus on a vector".into())),
            Expr::Binary(b) => Err(PromqlError::Unsupported(format!(
                "binary operator {:?}",
                b.op.to_string()
            ))),
            Expr::Subquery(_) => Err(PromqlError::Unsupported("subquery".into())),
            Expr::Call(c) => Err(PromqlError::Unsupported(format!(
                "function {:?}",
                c.func.name
            ))),
            Expr::Extension(_) => Err(PromqlError::Unsupported("extension expression".into())),
        }
    }

    fn eval_number(&mut self, value: f64) -> Result<Value, PromqlError> {
        let samples: Vec<Sample> = self.steps().map(|t| Sample::new(t, value)).collect();
        self.add_samples(samples.len())?;
        Ok(Value::Matrix(vec![Series {
            labels: Labels::default(),
            samples,
        }]))
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

    fn eval_vector_selector(&mut self, vs: &VectorSelector) -> Result<Value, PromqlError> {
        let shift = TimeShift::new(
            vs.at.as_ref(),
            vs.offset.as_ref(),
            self.start_ms,
            self.end_ms,
        );
        let (times, min, max) = self.read_times(shift);
        let mint = min.saturating_sub(self.lookback_ms);
        let series = self.select(vs, mint, max)?;
        let mut out: Matrix = Vec::with_capacity(series.len());
        for s in series {
            let mut points = Vec::new();
            for &(step, read_at) in &times {
                self.check_deadline()?;
                if let Some(v) = selector::value_at(&s.samples, read_at, self.lookback_ms) {
                    points.push(Sample::new(step, v));
                }
            }
            if !points.is_empty() {
                self.add_samples(points.len())?;
                out.push(Series {
                    labels: s.labels,
                    samples: points,
                });
            }
        }
        Ok(Value::Matrix(out))
    }

    /// A range selector is only ever the whole result of an instant query here (functions
    /// over ranges arrive with the next step), so it is evaluated at the single step.
    fn eval_matrix_selector(&mut self, ms: &MatrixSelector) -> Result<Value, PromqlError> {
        if self.start_ms != self.end_ms {
            return Err(PromqlError::BadQuery(
                "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector"
                    .into(),
            ));
        }
        let vs = &ms.vs;
        let range_ms = duration_ms(ms.range);
        let shift = TimeShift::new(
            vs.at.as_ref(),
            vs.offset.as_ref(),
            self.start_ms,
            self.end_ms,
        );
        let read_at = shift.apply(self.start_ms);
        let mint = read_at.saturating_sub(range_ms);
        let series = self.select(vs, mint, read_at)?;
        let mut out: Matrix = Vec::with_capacity(series.len());
        for s in series {
            self.check_deadline()?;
            let samples = selector::window(&s.samples, read_at, range_ms);
            if !samples.is_empty() {
                self.add_samples(samples.len())?;
                out.push(Series {
                    labels: s.labels,
                    samples,
                });
            }
        }
        Ok(Value::Matrix(out))
    }
}
