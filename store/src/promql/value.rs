//! Query results, shaped as Prometheus's four value types.

use crate::model::{Labels, Series, METRIC_NAME_LABEL};

/// A single number at the evaluation time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scalar {
    pub timestamp_ms: i64,
    pub value: f64,
}

/// A string literal at the evaluation time.
#[derive(Clone, Debug, PartialEq)]
pub struct StringValue {
    pub timestamp_ms: i64,
    pub value: String,
}

/// One element of an instant vector: a series' value at the evaluation time.
#[derive(Clone, Debug, PartialEq)]
pub struct InstantSample {
    pub labels: Labels,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// An instant vector, in the order evaluation produced it (what `sort`, `sort_desc`,
/// `topk` and `bottomk` order).
pub type Vector = Vec<InstantSample>;

/// A range vector (or a range query's result): series with points in time order, sorted
/// by labels.
pub type Matrix = Vec<Series>;

/// The result of evaluating a query.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    String(StringValue),
    Vector(Vector),
    Matrix(Matrix),
}

impl Value {
    /// Prometheus's `resultType` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// The label projection shared by `by`/`without` groupings and `on`/`ignoring` matching:
/// with `keep`, only the named labels; otherwise every label but the named ones and the
/// metric name.
pub(super) fn project_labels(labels: &Labels, names: &[String], keep: bool) -> Labels {
    Labels::new(
        labels
            .iter()
            .filter(|l| {
                if keep {
                    names.contains(&l.name)
                } else {
                    l.name != METRIC_NAME_LABEL && !names.contains(&l.name)
                }
            })
            .cloned()
            .collect(),
    )
}
