//! Binary operators at one evaluation step, as Prometheus 2.42's `VectorBinop`,
//! `VectorAnd/Or/Unless` and `vectorElemBinop`: arithmetic, comparisons (filtering or
//! `bool`), set operators, and vector matching with `on`/`ignoring` and
//! `group_left`/`group_right`.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::{BinModifier, LabelModifier, VectorMatchCardinality};

use crate::model::{Label, Labels, METRIC_NAME_LABEL};

use super::error::PromqlError;
use super::value::project_labels;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl BinOp {
    /// The operator of a parsed token, by its text.
    pub fn parse(token: &str) -> Option<BinOp> {
        Some(match token {
            "+" => BinOp::Add,
            "-" => BinOp::Sub,
            "*" => BinOp::Mul,
            "/" => BinOp::Div,
            "%" => BinOp::Mod,
            "^" => BinOp::Pow,
            "atan2" => BinOp::Atan2,
            "==" => BinOp::Eq,
            "!=" => BinOp::Ne,
            ">" => BinOp::Gt,
            "<" => BinOp::Lt,
            ">=" => BinOp::Ge,
            "<=" => BinOp::Le,
            "and" => BinOp::And,
            "or" => BinOp::Or,
            "unless" => BinOp::Unless,
            _ => return None,
        })
    }

    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le
        )
    }

    pub fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }

    /// Prometheus 2.42's `shouldDropMetricName`: arithmetic except `atan2`.
    pub fn drops_metric_name(self) -> bool {
        matches!(
            self,
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod | BinOp::Pow
        )
    }
}

/// `vectorElemBinop`: the result value and whether a comparison keeps the element.
pub(super) fn apply(op: BinOp, l: f64, r: f64) -> (f64, bool) {
    match op {
        BinOp::Add => (l + r, true),
        BinOp::Sub => (l - r, true),
        BinOp::Mul => (l * r, true),
        BinOp::Div => (l / r, true),
        BinOp::Mod => (l % r, true),
        BinOp::Pow => (l.powf(r), true),
        BinOp::Atan2 => (l.atan2(r), true),
        BinOp::Eq => (l, l == r),
        BinOp::Ne => (l, l != r),
        BinOp::Gt => (l, l > r),
        BinOp::Lt => (l, l < r),
        BinOp::Ge => (l, l >= r),
        BinOp::Le => (l, l <= r),
        // set operators never reach element-wise evaluation
        BinOp::And | BinOp::Or | BinOp::Unless => (l, true),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
    ManyToMany,
}

/// How two vectors' elements are matched.
#[derive(Clone, Debug)]
pub(super) struct Matching {
    pub card: Card,
    /// `on(...)` when true, `ignoring(...)` (or nothing) when false.
    pub on: bool,
    pub names: Vec<String>,
    /// The extra labels of `group_left(...)`/`group_right(...)`.
    pub include: Vec<String>,
    pub return_bool: bool,
}

impl Matching {
    pub fn from_modifier(op: BinOp, m: Option<&BinModifier>) -> Result<Matching, PromqlError> {
        let default_card = if op.is_set() {
            Card::ManyToMany
        } else {
            Card::OneToOne
        };
        let Some(m) = m else {
            return Ok(Matching {
                card: default_card,
                on: false,
                names: Vec::new(),
                include: Vec::new(),
                return_bool: false,
            });
        };
        if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
            return Err(PromqlError::Unsupported("fill modifiers".into()));
        }
        let (card, include) = match &m.card {
            VectorMatchCardinality::OneToOne => (Card::OneToOne, Vec::new()),
            VectorMatchCardinality::ManyToOne(l) => (Card::ManyToOne, l.labels.clone()),
            VectorMatchCardinality::OneToMany(l) => (Card::OneToMany, l.labels.clone()),
            VectorMatchCardinality::ManyToMany => (Card::ManyToMany, Vec::new()),
        };
        let card = if op.is_set() { Card::ManyToMany } else { card };
        let (on, names) = match &m.matching {
            Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
            None => (false, Vec::new()),
        };
        Ok(Matching {
            card,
            on,
            names,
            include,
            return_bool: m.return_bool,
        })
    }

    /// The label set two elements must share to match: only the `on` labels, or all but the
    /// `ignoring` labels and the metric name.
    pub fn signature(&self, labels: &Labels) -> Labels {
        project_labels(labels, &self.names, self.on)
    }

    /// `resultMetric`: the labels of a vector-vector arithmetic/comparison result.
    fn result_metric(&self, op: BinOp, many: &Labels, one: &Labels) -> Labels {
        let mut labels: Vec<Label> = many.as_slice().to_vec();
        if op.drops_metric_name() {
            labels.retain(|l| l.name != METRIC_NAME_LABEL);
        }
        if self.card == Card::OneToOne {
            if self.on {
                labels.retain(|l| self.names.contains(&l.name));
            } else {
                labels.retain(|l| !self.names.contains(&l.name));
            }
        }
        for name in &self.include {
            labels.retain(|l| &l.name != name);
            if let Some(v) = one.get(name) {
                labels.push(Label::new(name.clone(), v));
            }
        }
        Labels::new(labels)
    }
}

/// Go's `labels.Labels.String()`: `{__name__="x", a="b"}`.
pub(super) fn go_labels_string(labels: &Labels) -> String {
    let parts: Vec<String> = labels
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// One operand's elements at a step: labels, their match signature, and value.
pub(super) struct Side<'a> {
    pub labels: &'a [Labels],
    pub sigs: &'a [Labels],
    /// (series index, value) of the series present at this step.
    pub present: &'a [(usize, f64)],
}

/// Evaluates a vector-vector operator at one step, pushing (labels, value) to `out`.
pub(super) fn vector_binop(
    op: BinOp,
    m: &Matching,
    lhs: &Side<'_>,
    rhs: &Side<'_>,
    out: &mut Vec<(Labels, f64)>,
) -> Result<(), PromqlError> {
    match op {
        BinOp::And => {
            let right: HashSet<&Labels> = rhs.present.iter().map(|&(i, _)| &rhs.sigs[i]).collect();
            for &(i, v) in lhs.present {
                if right.contains(&lhs.sigs[i]) {
                    out.push((lhs.labels[i].clone(), v));
                }
            }
            return Ok(());
        }
        BinOp::Or => {
            let mut left: HashSet<&Labels> = HashSet::new();
            for &(i, v) in lhs.present {
                left.insert(&lhs.sigs[i]);
                out.push((lhs.labels[i].clone(), v));
            }
            for &(i, v) in rhs.present {
                if !left.contains(&rhs.sigs[i]) {
                    out.push((rhs.labels[i].clone(), v));
                }
            }
            return Ok(());
        }
        BinOp::Unless => {
            let right: HashSet<&Labels> = rhs.present.iter().map(|&(i, _)| &rhs.sigs[i]).collect();
            for &(i, v) in lhs.present {
                if !right.contains(&lhs.sigs[i]) {
                    out.push((lhs.labels[i].clone(), v));
                }
            }
            return Ok(());
        }
        _ => {}
    }
    if m.card == Card::ManyToMany {
        return Err(PromqlError::Execution(
            "many-to-many only allowed for set operators".into(),
        ));
    }
    let (many, one) = if m.card == Card::OneToMany {
        (rhs, lhs)
    } else {
        (lhs, rhs)
    };
    let mut one_by_sig: HashMap<&Labels, (usize, f64)> = HashMap::new();
    for &(i, v) in one.present {
        if let Some(&(prev, _)) = one_by_sig.get(&one.sigs[i]) {
            let side = if m.card == Card::OneToMany {
                "left"
            } else {
                "right"
            };
            return Err(PromqlError::Execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                go_labels_string(&one.sigs[i]),
                go_labels_string(&one.labels[prev]),
                go_labels_string(&one.labels[i]),
            )));
        }
        one_by_sig.insert(&one.sigs[i], (i, v));
    }
    // per match group: nothing for one-to-one, the result label sets for many-to-one
    let mut matched: HashMap<&Labels, HashSet<Labels>> = HashMap::new();
    for &(i, v) in many.present {
        let sig = &many.sigs[i];
        let Some(&(j, ov)) = one_by_sig.get(sig) else {
            continue;
        };
        let (l, r) = if m.card == Card::OneToMany {
            (ov, v)
        } else {
            (v, ov)
        };
        let (mut value, keep) = apply(op, l, r);
        if m.return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let mut metric = m.result_metric(op, &many.labels[i], &one.labels[j]);
        if m.return_bool {
            metric = metric.without(&[METRIC_NAME_LABEL]);
        }
        match matched.get_mut(sig) {
            Some(_) if m.card == Card::OneToOne => {
                return Err(PromqlError::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                ));
            }
            Some(seen) => {
                if !seen.insert(metric.clone()) {
                    return Err(PromqlError::Execution(
                        "multiple matches for labels: grouping labels must ensure unique matches"
                            .into(),
                    ));
                }
            }
            None => {
                let mut seen = HashSet::new();
                if m.card != Card::OneToOne {
                    seen.insert(metric.clone());
                }
                matched.insert(sig, seen);
            }
        }
        out.push((metric, value));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_keep_the_left_value() {
        assert_eq!(apply(BinOp::Gt, 3.0, 2.0), (3.0, true));
        assert_eq!(apply(BinOp::Gt, 1.0, 2.0), (1.0, false));
        assert!(!apply(BinOp::Eq, f64::NAN, f64::NAN).1);
    }

    #[test]
    fn modulo_follows_the_dividend_sign() {
        assert_eq!(apply(BinOp::Mod, -7.0, 3.0).0, -1.0);
        assert!(apply(BinOp::Mod, 1.0, 0.0).0.is_nan());
    }
}
