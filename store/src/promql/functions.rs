//! PromQL's functions as pure computations over one series' samples or one value, matching
//! Prometheus 2.42's `promql/functions.go`. The evaluator (`eval`) selects the inputs and
//! calls these per series and step.
// The evaluator wires these in function by function.
#![allow(dead_code)]

use super::error::PromqlError;
use crate::model::{Labels, Sample};

/// A range-vector function's input at one evaluation step.
pub struct RangeArgs<'a> {
    pub samples: &'a [Sample],
    pub range_start_ms: i64,
    pub range_end_ms: i64,
    pub args: &'a [f64],
}

pub fn eval_range_function(_name: &str, _input: &RangeArgs<'_>) -> Option<f64> {
    None
}

pub fn is_range_function(_name: &str) -> bool {
    false
}

pub fn eval_elementwise(_name: &str, _value: f64, _args: &[f64]) -> Option<f64> {
    None
}

pub fn is_elementwise_function(_name: &str) -> bool {
    false
}

pub fn histogram_quantile(_q: f64, _buckets: &mut Vec<(f64, f64)>) -> f64 {
    f64::NAN
}

pub fn label_replace(
    labels: &Labels,
    _dst: &str,
    _replacement: &str,
    _src: &str,
    _regex: &str,
) -> Result<Labels, PromqlError> {
    Ok(labels.clone())
}

pub fn label_join(
    labels: &Labels,
    _dst: &str,
    _sep: &str,
    _srcs: &[&str],
) -> Result<Labels, PromqlError> {
    Ok(labels.clone())
}

pub fn drops_metric_name(_name: &str) -> bool {
    true
}

pub fn quantile(_q: f64, _values: &mut Vec<f64>) -> f64 {
    f64::NAN
}
