//! Downsampled metrics: per series and fixed window (5 minutes, 1 hour), the aggregates a
//! coarse query needs instead of every sample, as Thanos keeps them.
//!
//! A rollup row stands at the time of its window's last sample and holds `count`, `sum`,
//! `min`, `max`, `first`, `last` and `increase`: the counter increase from the window's first
//! to its last sample, a drop counted as a reset to zero (Prometheus's rule). Staleness
//! markers are left out.
//!
//! A query reads rollups as one *synthetic series* per aggregate ([`synthesize`]): a point
//! per window with that aggregate's value, followed by the raw samples newer than the last
//! window (data not archived yet, each raw sample being its own one-sample window). For
//! counters the synthetic series is the reset-free running total: each window adds the
//! increase from the previous window's last sample to its own first one, then its own
//! `increase`. `rate` and `increase` over it see the same increase the raw samples hold
//! between the same points, whatever resets happened in or between windows.

use crate::contract::RollupAggregate;
use crate::model::{is_stale_nan, Sample};

/// A resolution as people write it: `5m`, `1h`.
pub fn resolution_name(resolution_ms: i64) -> String {
    const HOUR_MS: i64 = 3_600_000;
    if resolution_ms % HOUR_MS == 0 {
        format!("{}h", resolution_ms / HOUR_MS)
    } else {
        format!("{}m", resolution_ms / 60_000)
    }
}

/// The aggregates of one series over one window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rollup {
    /// Time of the window's last sample (so a rollup point is never later than its data).
    pub timestamp_ms: i64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub first: f64,
    pub last: f64,
    /// Counter increase from `first` to `last`, resets counted from zero.
    pub increase: f64,
}

impl Rollup {
    /// The window of one sample: where a window starts, and what a raw sample is when a
    /// query reads it after rollups.
    fn of_sample(s: &Sample) -> Rollup {
        Rollup {
            timestamp_ms: s.timestamp_ms,
            count: 1,
            sum: s.value,
            min: s.value,
            max: s.value,
            first: s.value,
            last: s.value,
            increase: 0.0,
        }
    }
}

/// The counter increase from `prev` to `next`: a drop is a reset, after which the counter
/// counted `next` from zero. NaN contributes nothing.
pub fn counter_step(prev: f64, next: f64) -> f64 {
    if next.is_nan() || prev.is_nan() {
        0.0
    } else if next >= prev {
        next - prev
    } else {
        next
    }
}

/// Prometheus's `min_over_time`/`max_over_time` rule: NaN only when every value is NaN.
fn pick(current: f64, v: f64, better: impl Fn(f64, f64) -> bool) -> f64 {
    if current.is_nan() || better(v, current) {
        v
    } else {
        current
    }
}

/// Appends the rollups of `samples` (one series, in time order) for windows of
/// `resolution_ms` aligned to the Unix epoch.
pub fn compute(samples: &[Sample], resolution_ms: i64, out: &mut Vec<Rollup>) {
    let mut open: Option<(i64, Rollup)> = None;
    for s in samples.iter().filter(|s| !is_stale_nan(s.value)) {
        let window = s.timestamp_ms.div_euclid(resolution_ms);
        match &mut open {
            Some((w, r)) if *w == window => {
                r.timestamp_ms = s.timestamp_ms;
                r.count += 1;
                r.sum += s.value;
                r.min = pick(r.min, s.value, |a, b| a < b);
                r.max = pick(r.max, s.value, |a, b| a > b);
                r.increase += counter_step(r.last, s.value);
                r.last = s.value;
            }
            _ => {
                if let Some((_, done)) = open.take() {
                    out.push(done);
                }
                open = Some((window, Rollup::of_sample(s)));
            }
        }
    }
    out.extend(open.map(|(_, r)| r));
}

/// The synthetic series of `agg` over `rollups` (in time order) followed by `raw` samples
/// newer than the last rollup (staleness markers are skipped).
pub fn synthesize(rollups: &[Rollup], raw: &[Sample], agg: RollupAggregate) -> Vec<Sample> {
    let raw = raw
        .iter()
        .filter(|s| !is_stale_nan(s.value))
        .map(Rollup::of_sample);
    let mut out = Vec::with_capacity(rollups.len() + raw.size_hint().0);
    // counters: the running total and the last raw value seen
    let mut total: Option<(f64, f64)> = None;
    for r in rollups.iter().copied().chain(raw) {
        let value = match agg {
            RollupAggregate::Counter => {
                let t = match total {
                    None => r.first + r.increase,
                    Some((t, last)) => t + counter_step(last, r.first) + r.increase,
                };
                total = Some((t, r.last));
                t
            }
            RollupAggregate::Min => r.min,
            RollupAggregate::Max => r.max,
            RollupAggregate::Sum => r.sum,
            RollupAggregate::Count => r.count as f64,
            RollupAggregate::Last => r.last,
            RollupAggregate::Mean => r.sum / r.count.max(1) as f64,
        };
        out.push(Sample::new(r.timestamp_ms, value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(points: &[(i64, f64)]) -> Vec<Sample> {
        points.iter().map(|&(t, v)| Sample::new(t, v)).collect()
    }

    #[test]
    fn windows_hold_the_aggregates_of_their_samples() {
        let s = samples(&[
            (0, 5.0),
            (100, 1.0),
            (200, crate::model::stale_nan()),
            (999, 3.0),
            (1000, 7.0),
            (2500, f64::NAN),
        ]);
        let mut out = Vec::new();
        compute(&s, 1000, &mut out);
        assert_eq!(out.len(), 3);
        let w0 = out[0];
        assert_eq!((w0.timestamp_ms, w0.count), (999, 3));
        assert_eq!((w0.sum, w0.min, w0.max), (9.0, 1.0, 5.0));
        assert_eq!((w0.first, w0.last), (5.0, 3.0));
        // 5 -> 1 is a reset (counts 1), 1 -> 3 adds 2
        assert_eq!(w0.increase, 3.0);
        assert_eq!(
            (out[1].timestamp_ms, out[1].count, out[1].sum),
            (1000, 1, 7.0)
        );
        assert!(out[2].min.is_nan() && out[2].max.is_nan());
    }

    #[test]
    fn the_counter_series_keeps_every_increase_across_resets_windows_and_raw_data() {
        // a counter scraped every 100 ms in windows of 500 ms, reset inside window 0 (at
        // 400 ms) and again in the raw samples that continue the rollups (at 1200 ms)
        let values = [
            10.0, 12.0, 15.0, 20.0, 1.0, 4.0, 6.0, 9.0, 11.0, 13.0, 14.0, 16.0, 2.0, 3.0, 5.0,
        ];
        let all: Vec<Sample> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| Sample::new(i as i64 * 100, v))
            .collect();
        let (archived, recent) = all.split_at(12);
        let mut rollups = Vec::new();
        compute(archived, 500, &mut rollups);
        let series = synthesize(&rollups, recent, RollupAggregate::Counter);
        let true_increase: f64 = all
            .windows(2)
            .map(|w| counter_step(w[0].value, w[1].value))
            .sum();
        let first = series.first().unwrap();
        let last = series.last().unwrap();
        // the synthetic series never drops, and from its first point (the last sample of
        // window 0, at 400 ms) to the end it rises by exactly what the counter did
        assert!(series.windows(2).all(|w| w[1].value >= w[0].value));
        assert_eq!(first.timestamp_ms, 400);
        let before_first: f64 = all[..5]
            .windows(2)
            .map(|w| counter_step(w[0].value, w[1].value))
            .sum();
        assert_eq!(last.value - first.value, true_increase - before_first);
        assert_eq!(last.timestamp_ms, 1400);
    }

    #[test]
    fn gauges_read_their_aggregate_and_raw_samples_as_one_sample_windows() {
        let mut rollups = Vec::new();
        compute(&samples(&[(0, 2.0), (10, 4.0)]), 100, &mut rollups);
        let raw = samples(&[(150, 8.0), (160, crate::model::stale_nan())]);
        let v = |agg| -> Vec<f64> {
            synthesize(&rollups, &raw, agg)
                .iter()
                .map(|s| s.value)
                .collect()
        };
        assert_eq!(v(RollupAggregate::Min), vec![2.0, 8.0]);
        assert_eq!(v(RollupAggregate::Max), vec![4.0, 8.0]);
        assert_eq!(v(RollupAggregate::Sum), vec![6.0, 8.0]);
        assert_eq!(v(RollupAggregate::Count), vec![2.0, 1.0]);
        assert_eq!(v(RollupAggregate::Last), vec![4.0, 8.0]);
        assert_eq!(v(RollupAggregate::Mean), vec![3.0, 8.0]);
    }
}
