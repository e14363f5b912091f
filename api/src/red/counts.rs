//! Exact counts over a window `[start, end]` from cumulative series (the derived span
//! metrics), read with [`MetricsQuerier::select_lazy`] and counted in Rust rather than with
//! PromQL's `increase()`, which extrapolates to the window's edges (two samples 1 ms apart
//! read as twice their difference) and misses a series' first count when nothing precedes it.
//!
//! The count of one series is its value at `end` minus its value at `start`, added up across
//! counter resets (a drop restarts from 0, as PromQL reads counters):
//! - the value at `start` is its last sample at or before `start`, no older than the PromQL
//!   lookback (5 min; heartbeats write every active series far more often than that);
//! - a series with no such sample did not exist at `start` when its first sample in the
//!   window is 0 (Lookout's deriver writes a new series' zeros one millisecond before its
//!   first count), or when no earlier value is found either: it counts from 0;
//! - otherwise it had gone quiet (stale, or Lookout was down) and its value at `start` is its
//!   last value before then, looked up series by series a window at a time (1 h, 1 d, 15 d
//!   back). At most [`MAX_LOOKUPS`] series are looked up per request; past that the window's
//!   first sample is taken instead, which for the deriver's series is that same value (it
//!   writes a series' old value again, just before its first new count).
//! - the value at `end` is the last sample at or before `end`: a series that went stale in
//!   the window keeps the value it went quiet with.
//!
//! Staleness markers are not values. Series are read one at a time, so memory holds one
//! series' samples plus the per-group sums.

use std::cell::Cell;
use std::time::Duration;

use store::contract::ReadCache;
use store::{LabelMatcher, Labels, MatchOp, MetricsQuerier, Sample};

use crate::error::ApiError;
use crate::trace_params::Window;

/// Series per request whose value before the window may be looked up (see the module docs).
pub const MAX_LOOKUPS: usize = 1_000;

/// How far back from the lookback's start the value of a quiet series is looked for, one
/// window after another until one has a sample.
const LOOKUP_WINDOWS_MS: [i64; 3] = [3_600_000, 86_400_000, 15 * 86_400_000];

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Counts series over one window.
pub struct Counter<'a> {
    querier: &'a dyn MetricsQuerier,
    start_ms: i64,
    end_ms: i64,
    lookback_ms: i64,
    lookups_left: Cell<usize>,
}

/// What a look-up before the window found.
enum Before {
    Value(f64),
    Nothing,
    OverBudget,
}

impl<'a> Counter<'a> {
    pub fn new(querier: &'a dyn MetricsQuerier, window: &Window, lookback: Duration) -> Self {
        Counter {
            querier,
            start_ms: window.start_ms,
            end_ms: window.end_ms,
            lookback_ms: ms(lookback),
            lookups_left: Cell::new(MAX_LOOKUPS),
        }
    }

    /// Calls `each` with every series matching `matchers` that has a value in the window (or
    /// at its start), and its count over the window.
    pub fn each(
        &self,
        matchers: &[LabelMatcher],
        mut each: impl FnMut(&Labels, f64),
    ) -> Result<(), ApiError> {
        let mint = self.start_ms.saturating_sub(self.lookback_ms);
        let series = self.querier.select_lazy(matchers, mint, self.end_ms)?;
        let mut cache = ReadCache::new();
        let mut buf = Vec::new();
        for s in &series {
            let samples = s.load(&mut cache, &mut buf)?;
            if let Some(n) = self.count(&s.labels, samples)? {
                each(&s.labels, n);
            }
        }
        Ok(())
    }

    /// The count of one series from its samples in `[start - lookback, end]`; `None` when it
    /// has no value there.
    fn count(&self, labels: &Labels, samples: &[Sample]) -> Result<Option<f64>, ApiError> {
        let split = samples.partition_point(|x| x.timestamp_ms <= self.start_ms);
        let (before, inside) = samples.split_at(split);
        let mut inside = inside
            .iter()
            .map(|x| x.value)
            .filter(|v| !v.is_nan())
            .peekable();
        let at_start = before.iter().rev().map(|x| x.value).find(|v| !v.is_nan());
        let base = match at_start {
            Some(v) => v,
            None => {
                let Some(&first) = inside.peek() else {
                    return Ok(None);
                };
                if first == 0.0 {
                    0.0
                } else {
                    match self.value_before(labels)? {
                        Before::Value(v) => v,
                        Before::Nothing => 0.0,
                        Before::OverBudget => first,
                    }
                }
            }
        };
        Ok(Some(increase(base, inside)))
    }

    /// The last value of the series before the lookback, when it has one within the lookup
    /// windows and the request has look-ups left.
    fn value_before(&self, labels: &Labels) -> Result<Before, ApiError> {
        let left = self.lookups_left.get();
        if left == 0 {
            return Ok(Before::OverBudget);
        }
        self.lookups_left.set(left - 1);
        let matchers = labels
            .iter()
            .map(|l| LabelMatcher::new(l.name.as_str(), MatchOp::Equal, l.value.as_str()))
            .collect::<store::Result<Vec<_>>>()?;
        let edge = self
            .start_ms
            .saturating_sub(self.lookback_ms)
            .saturating_sub(1);
        let mut hi = edge;
        for back in LOOKUP_WINDOWS_MS {
            let lo = edge.saturating_sub(back);
            if lo > hi {
                continue;
            }
            let last = self
                .querier
                .select(&matchers, lo, hi)?
                .into_iter()
                // equality matchers also match series with more labels
                .filter(|s| s.labels == *labels)
                .find_map(|s| {
                    s.samples
                        .iter()
                        .rev()
                        .map(|x| x.value)
                        .find(|v| !v.is_nan())
                });
            if let Some(v) = last {
                return Ok(Before::Value(v));
            }
            hi = lo.saturating_sub(1);
        }
        Ok(Before::Nothing)
    }
}

/// What a counter gained from `base` through `values`, a drop being a restart from 0.
fn increase(base: f64, values: impl Iterator<Item = f64>) -> f64 {
    let mut prev = base;
    let mut total = 0.0;
    for v in values {
        total += if v >= prev { v - prev } else { v };
        prev = v;
    }
    total
}

/// Prometheus's `histogram_quantile` over classic buckets `(upper bound, cumulative count)`
/// in any order, the same bound appearing more than once being summed (as `sum by (le)`
/// does): NaN without a `+Inf` bucket, with fewer than two buckets or no observations; the
/// rank interpolated linearly inside its bucket, the lowest bucket starting at 0 (unless its
/// bound is not above 0), and the second-highest bound when the rank falls in `+Inf`.
pub fn bucket_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    // one bucket per bound, counts summed
    buckets.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 += later.1;
        }
        same
    });
    match buckets.last() {
        Some(b) if b.0 == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    // counts that fall below an earlier bucket's (float error in the source) are raised to it
    let mut max = f64::NEG_INFINITY;
    for b in buckets.iter_mut() {
        if b.1 > max {
            max = b.1;
        } else {
            b.1 = max;
        }
    }
    let n = buckets.len();
    if n < 2 {
        return f64::NAN;
    }
    let observations = buckets[n - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = buckets[..n - 1].partition_point(|x| x.1 < rank);
    if b == n - 1 {
        return buckets[n - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let bucket_end = buckets[b].0;
    let mut count = buckets[b].1;
    let mut bucket_start = 0.0;
    if b > 0 {
        bucket_start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use store::model::stale_nan;
    use store::testing::MemQuerier;

    const T: i64 = 1_700_000_000_000;
    const MIN: i64 = 60_000;

    fn window(start: i64, end: i64) -> Window {
        Window {
            start_ms: start,
            end_ms: end,
        }
    }

    /// Counts of every series over `[start, end]`, by their `id` label.
    fn counts(q: &MemQuerier, start: i64, end: i64) -> Vec<(String, f64)> {
        let counter = Counter::new(q, &window(start, end), Duration::from_secs(300));
        let name = LabelMatcher::new("__name__", MatchOp::Equal, "c_total").unwrap();
        let mut out = Vec::new();
        counter
            .each(&[name], |l, n| {
                out.push((l.get("id").unwrap_or("").to_string(), n))
            })
            .unwrap();
        out
    }

    fn add(q: &mut MemQuerier, id: &str, samples: &[(i64, f64)]) {
        q.series.insert(
            Labels::from_pairs([("__name__", "c_total"), ("id", id)]),
            samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
        );
    }

    #[test]
    fn a_count_is_the_value_at_end_minus_the_value_at_start() {
        let mut q = MemQuerier::default();
        // samples 1 ms apart: no extrapolation
        add(
            &mut q,
            "a",
            &[(T - 1, 10.0), (T + MIN, 11.0), (T + MIN + 1, 12.0)],
        );
        // its start value 4 min before the window (heartbeats), an increase after the end
        add(
            &mut q,
            "b",
            &[(T - 4 * MIN, 3.0), (T + 2 * MIN, 5.0), (T + 20 * MIN, 9.0)],
        );
        // a reset in the window: 7 -> 2 counts 2, then +1
        add(
            &mut q,
            "c",
            &[
                (T, 5.0),
                (T + MIN, 7.0),
                (T + 2 * MIN, 2.0),
                (T + 3 * MIN, 3.0),
            ],
        );
        // a marker in the window: the value it went stale with
        add(
            &mut q,
            "d",
            &[(T, 1.0), (T + MIN, 4.0), (T + 2 * MIN, stale_nan())],
        );
        // nothing new: 0
        add(&mut q, "e", &[(T - MIN, 6.0), (T + MIN, 6.0)]);
        // only before the lookback: not counted at all
        add(&mut q, "f", &[(T - 10 * MIN, 6.0)]);
        assert_eq!(
            counts(&q, T, T + 10 * MIN),
            [
                ("a".to_string(), 2.0),
                ("b".to_string(), 2.0),
                ("c".to_string(), 5.0),
                ("d".to_string(), 3.0),
                ("e".to_string(), 0.0)
            ]
        );
    }

    #[test]
    fn series_without_a_value_at_start() {
        let mut q = MemQuerier::default();
        // created in the window by Lookout: zeros first
        add(
            &mut q,
            "born",
            &[(T + MIN - 1, 0.0), (T + MIN, 3.0), (T + 2 * MIN, 4.0)],
        );
        // created in the window by someone else: no zeros, counts from 0 (it did not exist)
        add(&mut q, "foreign", &[(T + MIN, 3.0), (T + 2 * MIN, 4.0)]);
        // stale 20 min before the window, back in it: its old value is the start value
        add(
            &mut q,
            "back",
            &[
                (T - 40 * MIN, 50.0),
                (T - 20 * MIN, stale_nan()),
                (T + MIN - 1, 50.0),
                (T + MIN, 51.0),
            ],
        );
        // back after two days, without the old value written again
        add(&mut q, "days", &[(T - 2 * 1440 * MIN, 8.0), (T + MIN, 9.0)]);
        assert_eq!(
            counts(&q, T, T + 10 * MIN),
            [
                ("back".to_string(), 1.0),
                ("born".to_string(), 4.0),
                ("days".to_string(), 1.0),
                ("foreign".to_string(), 4.0)
            ]
        );
    }

    #[test]
    fn past_the_lookup_budget_the_first_sample_is_the_start_value() {
        let mut q = MemQuerier::default();
        for i in 0..MAX_LOOKUPS + 5 {
            add(
                &mut q,
                &format!("s{i:05}"),
                &[(T - 30 * MIN, 7.0), (T + MIN - 1, 7.0), (T + MIN, 8.0)],
            );
        }
        let got = counts(&q, T, T + 10 * MIN);
        assert_eq!(got.len(), MAX_LOOKUPS + 5);
        assert!(got.iter().all(|(_, n)| *n == 1.0));
    }

    #[test]
    fn quantiles_as_prometheus_computes_them() {
        let q = |q: f64, b: &[(f64, f64)]| bucket_quantile(q, &mut b.to_vec());
        let inf = f64::INFINITY;
        let b = [(0.1, 50.0), (0.25, 80.0), (1.0, 100.0), (inf, 100.0)];
        assert_eq!(q(0.5, &b), 0.1);
        assert_eq!(q(0.95, &b), 0.25 + 0.75 * (15.0 / 20.0));
        // in +Inf: the highest finite bound
        assert_eq!(q(0.99, &[(0.1, 1.0), (inf, 2.0)]), 0.1);
        // the same bound twice is summed (two series of a group)
        assert_eq!(
            q(0.5, &[(0.1, 1.0), (inf, 1.0), (0.1, 1.0), (inf, 3.0)]),
            0.1
        );
        assert!(q(0.5, &[(0.1, 0.0), (inf, 0.0)]).is_nan());
        assert!(q(0.5, &[(0.1, 3.0)]).is_nan());
        assert!(q(0.5, &[(inf, 3.0)]).is_nan());
        assert_eq!(q(-1.0, &b), f64::NEG_INFINITY);
        assert_eq!(q(2.0, &b), f64::INFINITY);
        // non-monotonic counts are raised
        assert_eq!(q(0.5, &[(1.0, 10.0), (2.0, 9.0), (inf, 10.0)]), 0.5);
    }
}
