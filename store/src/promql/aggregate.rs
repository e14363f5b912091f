//! Aggregation operators, as Prometheus 2.42's `aggregation`: sum avg min max count group
//! stddev stdvar count_values quantile topk bottomk, grouped `by` or `without` labels.
//! [`GroupAccumulator`] folds whole series for the operators with a running value;
//! [`aggregate`] does one step's elements for the others.

use std::collections::HashMap;

use crate::model::{Label, Labels};

use super::error::PromqlError;
use super::eval::StepSeries;
use super::functions;
use super::value::project_labels;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Group,
    Stddev,
    Stdvar,
    CountValues,
    Quantile,
    Topk,
    Bottomk,
}

impl AggOp {
    pub fn parse(token: &str) -> Option<AggOp> {
        Some(match token {
            "sum" => AggOp::Sum,
            "avg" => AggOp::Avg,
            "min" => AggOp::Min,
            "max" => AggOp::Max,
            "count" => AggOp::Count,
            "group" => AggOp::Group,
            "stddev" => AggOp::Stddev,
            "stdvar" => AggOp::Stdvar,
            "count_values" => AggOp::CountValues,
            "quantile" => AggOp::Quantile,
            "topk" => AggOp::Topk,
            "bottomk" => AggOp::Bottomk,
            _ => return None,
        })
    }
}

/// The `by`/`without` clause.
#[derive(Clone, Debug)]
pub(super) struct Grouping {
    pub without: bool,
    pub names: Vec<String>,
}

impl Grouping {
    /// The labels of the group an element belongs to (and of its result).
    pub fn group_labels(&self, labels: &Labels) -> Labels {
        project_labels(labels, &self.names, !self.without)
    }
}

/// The aggregation's parameter at this step.
#[derive(Clone, Debug)]
pub(super) enum Param<'a> {
    None,
    Number(f64),
    Label(&'a str),
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

struct Group {
    labels: Labels,
    /// count_values: the count.
    acc: Acc,
    /// quantile: the values.
    values: Vec<f64>,
    /// topk/bottomk: (element labels, value).
    kept: Vec<(Labels, f64)>,
}

/// Whether `a` ranks below `b` for topk (NaN lowest); bottomk reverses the order.
fn ranks_below(top: bool, a: f64, b: f64) -> bool {
    if a.is_nan() {
        return !b.is_nan();
    }
    if b.is_nan() {
        return false;
    }
    if top {
        a < b
    } else {
        a > b
    }
}

/// Aggregates one step's elements (labels, value), pushing the results to `out`.
pub(super) fn aggregate(
    op: AggOp,
    grouping: &Grouping,
    param: &Param<'_>,
    elements: &[(&Labels, f64)],
    out: &mut Vec<(Labels, f64)>,
) -> Result<(), PromqlError> {
    let mut k = 0usize;
    if matches!(op, AggOp::Topk | AggOp::Bottomk) {
        let Param::Number(f) = param else {
            return Err(PromqlError::Execution("topk/bottomk needs a number".into()));
        };
        if !(*f >= i64::MIN as f64 && *f <= i64::MAX as f64) {
            return Err(PromqlError::Execution(format!(
                "Scalar value {} overflows int64",
                format_value(*f)
            )));
        }
        let k64 = *f as i64;
        if k64 < 1 {
            return Ok(());
        }
        k = usize::try_from(k64)
            .unwrap_or(usize::MAX)
            .min(elements.len());
    }
    let mut grouping = grouping.clone();
    let mut value_label: Option<&str> = None;
    if op == AggOp::CountValues {
        let Param::Label(name) = param else {
            return Err(PromqlError::Execution(
                "count_values needs a label name".into(),
            ));
        };
        if !valid_label_name(name) {
            return Err(PromqlError::Execution(format!(
                "invalid label name {name:?}"
            )));
        }
        value_label = Some(name);
        if !grouping.without {
            grouping.names.push((*name).to_string());
        }
    }
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for &(labels, v) in elements {
        let owned;
        let labels = match value_label {
            Some(name) => {
                let mut ls: Vec<Label> = labels.as_slice().to_vec();
                ls.retain(|l| l.name != name);
                ls.push(Label::new(name, format_value(v)));
                owned = Labels::new(ls);
                &owned
            }
            None => labels,
        };
        let key = grouping.group_labels(labels);
        let gi = match index.get(&key) {
            Some(&gi) => gi,
            None => {
                index.insert(key.clone(), groups.len());
                let mut acc = Acc::default();
                add_to(op, &mut acc, v);
                groups.push(Group {
                    labels: key,
                    acc,
                    values: vec![v],
                    kept: Vec::new(),
                });
                let g = groups.len() - 1;
                if let (Some(g), AggOp::Topk | AggOp::Bottomk) = (groups.get_mut(g), op) {
                    g.kept.push((labels.clone(), v));
                }
                continue;
            }
        };
        let Some(g) = groups.get_mut(gi) else {
            continue;
        };
        match op {
            AggOp::Quantile => g.values.push(v),
            AggOp::Topk | AggOp::Bottomk => {
                let top = op == AggOp::Topk;
                if g.kept.len() < k {
                    g.kept.push((labels.clone(), v));
                } else {
                    // replace the lowest-ranked kept element if this one ranks above it
                    let mut low: Option<usize> = None;
                    for (i, (_, kv)) in g.kept.iter().enumerate() {
                        let lower = match low.and_then(|l| g.kept.get(l)) {
                            Some((_, lv)) => ranks_below(top, *kv, *lv),
                            None => true,
                        };
                        if lower {
                            low = Some(i);
                        }
                    }
                    if let Some(slot) = low.and_then(|l| g.kept.get_mut(l)) {
                        // Prometheus replaces a NaN at the top of its heap with anything
                        if slot.1.is_nan() || ranks_below(top, slot.1, v) {
                            *slot = (labels.clone(), v);
                        }
                    }
                }
            }
            _ => add_to(op, &mut g.acc, v),
        }
    }
    for mut g in groups {
        let value = match op {
            AggOp::Quantile => {
                let q = match param {
                    Param::Number(q) => *q,
                    _ => f64::NAN,
                };
                functions::quantile(q, &mut g.values)
            }
            AggOp::Topk | AggOp::Bottomk => {
                let top = op == AggOp::Topk;
                g.kept.sort_by(|a, b| {
                    match (ranks_below(top, a.1, b.1), ranks_below(top, b.1, a.1)) {
                        (true, _) => std::cmp::Ordering::Greater,
                        (_, true) => std::cmp::Ordering::Less,
                        _ => std::cmp::Ordering::Equal,
                    }
                });
                out.extend(g.kept);
                continue;
            }
            _ => g.acc.result(op),
        };
        out.push((g.labels, value));
    }
    Ok(())
}

/// One group's running value at one step.
#[derive(Clone, Copy, Default)]
struct Acc {
    seen: bool,
    value: f64,
    mean: f64,
    count: f64,
}

impl Acc {
    /// The aggregation's value once every element was added.
    fn result(&self, op: AggOp) -> f64 {
        match op {
            AggOp::Avg => self.mean,
            AggOp::Count | AggOp::CountValues => self.count,
            AggOp::Group => 1.0,
            AggOp::Stdvar => self.value / self.count,
            AggOp::Stddev => (self.value / self.count).sqrt(),
            _ => self.value,
        }
    }
}

/// Adds `v` to a group's running value, as Prometheus 2.42's per-step loop does.
fn add_to(op: AggOp, a: &mut Acc, v: f64) {
    if !a.seen {
        *a = Acc {
            seen: true,
            value: if matches!(op, AggOp::Stddev | AggOp::Stdvar) {
                0.0
            } else {
                v
            },
            mean: v,
            count: 1.0,
        };
        return;
    }
    match op {
        AggOp::Sum => a.value += v,
        AggOp::Avg => {
            a.count += 1.0;
            if a.mean.is_infinite() {
                if v.is_infinite() && (a.mean > 0.0) == (v > 0.0) {
                    return;
                }
                if !v.is_infinite() && !v.is_nan() {
                    return;
                }
            }
            a.mean += v / a.count - a.mean / a.count;
        }
        AggOp::Min => {
            if a.value > v || a.value.is_nan() {
                a.value = v;
            }
        }
        AggOp::Max => {
            if a.value < v || a.value.is_nan() {
                a.value = v;
            }
        }
        AggOp::Stddev | AggOp::Stdvar => {
            a.count += 1.0;
            let delta = v - a.mean;
            a.mean += delta / a.count;
            a.value += delta * (v - a.mean);
        }
        _ => a.count += 1.0,
    }
}

/// The aggregations computable with a running value per group and step (all but
/// `count_values`, `quantile`, `topk`, `bottomk`) over whole series: fed series in evaluation
/// order, it adds each value in the same order as Prometheus's per-step loop, so results are
/// identical, while computing each series' group once instead of at every step, and it can
/// take the series a batch at a time.
pub(super) struct GroupAccumulator {
    op: AggOp,
    grouping: Grouping,
    steps: usize,
    index: HashMap<Labels, usize>,
    groups: Vec<(Labels, Vec<Acc>)>,
}

impl GroupAccumulator {
    pub fn handles(op: AggOp) -> bool {
        matches!(
            op,
            AggOp::Sum
                | AggOp::Avg
                | AggOp::Min
                | AggOp::Max
                | AggOp::Count
                | AggOp::Group
                | AggOp::Stddev
                | AggOp::Stdvar
        )
    }

    pub fn new(op: AggOp, grouping: Grouping, steps: usize) -> Self {
        GroupAccumulator {
            op,
            grouping,
            steps,
            index: HashMap::new(),
            groups: Vec::new(),
        }
    }

    pub fn fold(&mut self, batch: Vec<StepSeries>) {
        for s in batch {
            if s.values.iter().all(Option::is_none) {
                continue;
            }
            let key = self.grouping.group_labels(&s.labels);
            let gi = match self.index.get(&key) {
                Some(&gi) => gi,
                None => {
                    self.index.insert(key.clone(), self.groups.len());
                    self.groups.push((key, vec![Acc::default(); self.steps]));
                    self.groups.len() - 1
                }
            };
            let Some((_, accs)) = self.groups.get_mut(gi) else {
                continue;
            };
            for (acc, v) in accs.iter_mut().zip(&s.values) {
                if let Some(v) = *v {
                    add_to(self.op, acc, v);
                }
            }
        }
    }

    pub fn finish(self) -> Vec<StepSeries> {
        let op = self.op;
        self.groups
            .into_iter()
            .map(|(labels, accs)| StepSeries {
                labels,
                values: accs.iter().map(|a| a.seen.then(|| a.result(op))).collect(),
            })
            .collect()
    }
}

/// Prometheus's label name syntax: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(super) fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_values_formats_like_go() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.5), "0.5");
    }
}
