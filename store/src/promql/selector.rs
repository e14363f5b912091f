//! Vector and matrix selectors: matcher conversion, the time each step reads at (`@` and
//! `offset`), the 5-minute lookback with staleness, and range windows closed on both ends, as Prometheus 2.x
//! evaluates them (3.x made them left-open; the compliance target is 2.42).

use std::time::{SystemTime, UNIX_EPOCH};

use promql_parser::label::{MatchOp as ParserMatchOp, Matcher};
use promql_parser::parser::{AtModifier, Offset, VectorSelector};

use crate::contract::{LabelMatcher, MatchOp};
use crate::model::{is_stale_nan, Sample, METRIC_NAME_LABEL};

use super::error::PromqlError;

/// The matcher sets of a selector: one set normally, several for `{a="x" or b="y"}`; the
/// metric name written before the braces is added to every set.
pub fn matcher_sets(vs: &VectorSelector) -> Result<Vec<Vec<LabelMatcher>>, PromqlError> {
    let mut raw_sets: Vec<&[Matcher]> = Vec::new();
    if !vs.matchers.matchers.is_empty() || vs.matchers.or_matchers.is_empty() {
        raw_sets.push(&vs.matchers.matchers);
    }
    raw_sets.extend(vs.matchers.or_matchers.iter().map(Vec::as_slice));
    raw_sets
        .into_iter()
        .map(|set| {
            let mut out = Vec::with_capacity(set.len() + 1);
            if let Some(name) = &vs.name {
                out.push(LabelMatcher::new(
                    METRIC_NAME_LABEL,
                    MatchOp::Equal,
                    name.as_str(),
                )?);
            }
            for m in set {
                out.push(convert_matcher(m)?);
            }
            Ok(out)
        })
        .collect()
}

fn convert_matcher(m: &Matcher) -> Result<LabelMatcher, PromqlError> {
    let op = match m.op {
        ParserMatchOp::Equal => MatchOp::Equal,
        ParserMatchOp::NotEqual => MatchOp::NotEqual,
        ParserMatchOp::Re(_) => MatchOp::RegexMatch,
        ParserMatchOp::NotRe(_) => MatchOp::RegexNoMatch,
    };
    Ok(LabelMatcher::new(m.name.as_str(), op, m.value.as_str())?)
}

/// Milliseconds since the epoch of a (possibly pre-epoch) time.
pub(super) fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => duration_ms(d),
        Err(e) => -duration_ms(e.duration()),
    }
}

pub(super) use crate::clock::duration_ms;

/// How a selector's `@` and `offset` move each evaluation step's time.
#[derive(Clone, Copy, Debug)]
pub(super) struct TimeShift {
    /// Fixed evaluation time from `@`, already resolved for `start()`/`end()`.
    pub at_ms: Option<i64>,
    /// Positive looks back in time.
    pub offset_ms: i64,
}

impl TimeShift {
    pub fn new(
        at: Option<&AtModifier>,
        offset: Option<&Offset>,
        query_start: i64,
        query_end: i64,
    ) -> Self {
        let at_ms = at.map(|a| match a {
            AtModifier::Start => query_start,
            AtModifier::End => query_end,
            AtModifier::At(t) => system_time_ms(*t),
        });
        let offset_ms = match offset {
            Some(Offset::Pos(d)) => duration_ms(*d),
            Some(Offset::Neg(d)) => -duration_ms(*d),
            None => 0,
        };
        TimeShift { at_ms, offset_ms }
    }

    /// The time a step at `step_ms` reads the series at.
    pub fn apply(&self, step_ms: i64) -> i64 {
        self.at_ms.unwrap_or(step_ms).saturating_sub(self.offset_ms)
    }
}

/// The value a series has at `t`: its newest sample in `[t - lookback, t]`, unless that
/// sample is a staleness marker (the series ended). `samples` is in time order.
pub(super) fn value_at(samples: &[Sample], t: i64, lookback_ms: i64) -> Option<f64> {
    let end = samples.partition_point(|s| s.timestamp_ms <= t);
    let newest = samples[..end].last()?;
    if newest.timestamp_ms < t.saturating_sub(lookback_ms) || is_stale_nan(newest.value) {
        return None;
    }
    Some(newest.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::stale_nan;

    fn samples(points: &[(i64, f64)]) -> Vec<Sample> {
        points.iter().map(|&(t, v)| Sample::new(t, v)).collect()
    }

    #[test]
    fn lookback_includes_its_left_edge() {
        let s = samples(&[(0, 1.0), (60_000, 2.0)]);
        assert_eq!(value_at(&s, 300_000, 300_000), Some(2.0));
        assert_eq!(value_at(&s, 360_000, 300_000), Some(2.0));
        assert_eq!(value_at(&s, 360_001, 300_000), None);
        assert_eq!(value_at(&s, 359_999, 300_000), Some(2.0));
        assert_eq!(value_at(&s, 59_999, 300_000), Some(1.0));
        assert_eq!(value_at(&s, -1, 300_000), None);
    }

    #[test]
    fn stale_marker_hides_the_series() {
        let s = samples(&[(0, 1.0), (60_000, stale_nan()), (120_000, 3.0)]);
        assert_eq!(value_at(&s, 90_000, 300_000), None);
        assert_eq!(value_at(&s, 120_000, 300_000), Some(3.0));
    }

    #[test]
    fn time_shift_applies_at_then_offset() {
        let shift = TimeShift {
            at_ms: Some(1_000_000),
            offset_ms: 60_000,
        };
        assert_eq!(shift.apply(5), 940_000);
        let shift = TimeShift {
            at_ms: None,
            offset_ms: -60_000,
        };
        assert_eq!(shift.apply(5), 60_005);
    }
}
