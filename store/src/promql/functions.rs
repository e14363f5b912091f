//! PromQL's functions as pure computations over one series' samples or one value, matching
//! Prometheus 2.42's `promql/functions.go` (and Go's `math`/`time` where Prometheus leans on
//! them). The evaluator (`eval`) selects the inputs and calls these per series and step; it
//! owns argument evaluation, output labels and errors that depend on the whole vector.
//!
//! Notes for callers:
//! * Range functions are only called for a series with at least one sample in the window;
//!   an empty window yields `None` here too.
//! * `holt_winters` with a smoothing or trend factor outside (0, 1) is an error in
//!   Prometheus (raised only when a series with samples reaches the function); check
//!   [`validate_range_args`] first. `eval_range_function` returns `None` for such input.
//! * `predict_linear` extrapolates from the evaluation timestamp, not the window end (they
//!   differ under `offset`/`@`): pass it as `args[1]` (milliseconds); without it the window
//!   end is used.
//! * `clamp(v, min, max)` with `min > max` yields no value: `eval_elementwise` returns
//!   `None`, and the evaluator drops the element.
//! * Prometheus reports the label_replace/label_join/holt_winters argument errors with the
//!   `execution` error type (HTTP 422), not `bad_data`.
// The evaluator wires these in function by function.
#![allow(dead_code)]

use std::cmp::Ordering;

use regex::Regex;

use super::error::PromqlError;
use crate::contract::RollupAggregate;
use crate::model::{Label, Labels, Sample, METRIC_NAME_LABEL};
use crate::timefmt::{days_in_month, is_leap_year};

/// A range-vector function's input at one evaluation step: the samples of one series in
/// the window `[range_start_ms, range_end_ms]` (staleness markers already removed, time
/// order), plus the scalar arguments other than the range vector (quantile_over_time's φ;
/// predict_linear's t and optionally the evaluation time in ms; holt_winters' sf, tf).
pub struct RangeArgs<'a> {
    pub samples: &'a [Sample],
    pub range_start_ms: i64,
    pub range_end_ms: i64,
    pub args: &'a [f64],
    /// For `rate`/`increase`, the counter resets between two samples of the window, found
    /// once per series ([`counter_resets`]) instead of by scanning every window; `None`:
    /// scan.
    pub resets: Option<&'a [CounterReset]>,
}

/// A sample lower than the one before it: a counter reset, and the value before it
/// (which `rate` adds back).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CounterReset {
    /// Position of the lower sample in the series.
    pub index: usize,
    pub before: f64,
}

/// Every counter reset of a series' samples, in order.
pub fn counter_resets(samples: &[Sample]) -> Vec<CounterReset> {
    samples
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[1].value < w[0].value)
        .map(|(i, w)| CounterReset {
            index: i + 1,
            before: w[0].value,
        })
        .collect()
}

/// Whether a range function reads [`RangeArgs::resets`].
pub fn uses_counter_resets(name: &str) -> bool {
    matches!(name, "rate" | "increase")
}

const RANGE_FUNCTIONS: &[&str] = &[
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "predict_linear",
    "resets",
    "changes",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "quantile_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "last_over_time",
    "present_over_time",
    "holt_winters",
];

const ELEMENTWISE_FUNCTIONS: &[&str] = &[
    "abs",
    "ceil",
    "floor",
    "round",
    "exp",
    "ln",
    "log2",
    "log10",
    "sqrt",
    "sgn",
    "clamp",
    "clamp_min",
    "clamp_max",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "sinh",
    "cosh",
    "tanh",
    "asinh",
    "acosh",
    "atanh",
    "deg",
    "rad",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "hour",
    "minute",
    "month",
    "year",
];

pub fn is_range_function(name: &str) -> bool {
    RANGE_FUNCTIONS.contains(&name)
}

/// The rollup aggregate a range function can read instead of raw samples (archived metrics
/// are downsampled, see `archive::rollup`), and the function that gives its answer over that
/// aggregate's series: `count_over_time` adds up the windows' counts. `avg_over_time` reads
/// window means: the same answer when the windows hold as many samples each (regular
/// scrapes). Functions not listed here always read raw samples.
pub fn rollup_use(name: &str) -> Option<(RollupAggregate, &'static str)> {
    Some(match name {
        "rate" => (RollupAggregate::Counter, "rate"),
        "increase" => (RollupAggregate::Counter, "increase"),
        "min_over_time" => (RollupAggregate::Min, "min_over_time"),
        "max_over_time" => (RollupAggregate::Max, "max_over_time"),
        "sum_over_time" => (RollupAggregate::Sum, "sum_over_time"),
        "count_over_time" => (RollupAggregate::Count, "sum_over_time"),
        "last_over_time" => (RollupAggregate::Last, "last_over_time"),
        "avg_over_time" => (RollupAggregate::Mean, "avg_over_time"),
        _ => return None,
    })
}

pub fn is_elementwise_function(name: &str) -> bool {
    ELEMENTWISE_FUNCTIONS.contains(&name)
}

/// Checks a range function's scalar arguments as Prometheus does before computing, returning
/// Prometheus's error message (an `execution` error there). Only holt_winters has such checks.
pub fn validate_range_args(name: &str, args: &[f64]) -> Result<(), String> {
    if name != "holt_winters" {
        return Ok(());
    }
    let sf = args.first().copied().unwrap_or(f64::NAN);
    let tf = args.get(1).copied().unwrap_or(f64::NAN);
    // written as Prometheus's `sf <= 0 || sf >= 1`: NaN passes the check there
    if sf <= 0.0 || sf >= 1.0 {
        return Err(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {}",
            go_f(sf)
        ));
    }
    if tf <= 0.0 || tf >= 1.0 {
        return Err(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {}",
            go_f(tf)
        ));
    }
    Ok(())
}

/// Go's `%f` formatting (6 decimals; `NaN`, `+Inf`, `-Inf`).
fn go_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v:.6}")
    }
}

/// Evaluates a range-vector function over one series' window. `None`: no value for this
/// series at this step (too few samples, invalid arguments, unknown function).
pub fn eval_range_function(name: &str, input: &RangeArgs<'_>) -> Option<f64> {
    let s = input.samples;
    let first = s.first()?;
    let last = s.last()?;
    let arg = |i: usize| input.args.get(i).copied();
    match name {
        "rate" => extrapolated_rate(input, true, true),
        "increase" => extrapolated_rate(input, true, false),
        "delta" => extrapolated_rate(input, false, false),
        "irate" => instant_value(s, true),
        "idelta" => instant_value(s, false),
        "deriv" => {
            if s.len() < 2 {
                return None;
            }
            // relative to the first sample's time, to keep the regression numerically sane
            Some(linear_regression(s, first.timestamp_ms).0)
        }
        "predict_linear" => {
            if s.len() < 2 {
                return None;
            }
            let duration = arg(0)?;
            let eval_ts = match arg(1) {
                Some(t) if t.is_finite() => t as i64,
                _ => input.range_end_ms,
            };
            let (slope, intercept) = linear_regression(s, eval_ts);
            Some(slope * duration + intercept)
        }
        "resets" => {
            let mut resets = 0usize;
            let mut prev = first.value;
            for x in &s[1..] {
                if x.value < prev {
                    resets += 1;
                }
                prev = x.value;
            }
            Some(resets as f64)
        }
        "changes" => {
            let mut changes = 0usize;
            let mut prev = first.value;
            for x in &s[1..] {
                let cur = x.value;
                if cur != prev && !(cur.is_nan() && prev.is_nan()) {
                    changes += 1;
                }
                prev = cur;
            }
            Some(changes as f64)
        }
        "avg_over_time" => Some(avg_over_time(s)),
        "min_over_time" => {
            let mut min = first.value;
            for x in s {
                if x.value < min || min.is_nan() {
                    min = x.value;
                }
            }
            Some(min)
        }
        "max_over_time" => {
            let mut max = first.value;
            for x in s {
                if x.value > max || max.is_nan() {
                    max = x.value;
                }
            }
            Some(max)
        }
        "sum_over_time" => {
            let (mut sum, mut c) = (0.0, 0.0);
            for x in s {
                (sum, c) = kahan_sum_inc(x.value, sum, c);
            }
            Some(if sum.is_infinite() { sum } else { sum + c })
        }
        "count_over_time" => Some(s.len() as f64),
        "quantile_over_time" => {
            let q = arg(0)?;
            let mut values: Vec<f64> = s.iter().map(|x| x.value).collect();
            Some(quantile(q, &mut values))
        }
        "stddev_over_time" => Some(stdvar_over_time(s).sqrt()),
        "stdvar_over_time" => Some(stdvar_over_time(s)),
        "last_over_time" => Some(last.value),
        "present_over_time" => Some(1.0),
        "holt_winters" => {
            validate_range_args(name, input.args).ok()?;
            holt_winters(s, arg(0)?, arg(1)?)
        }
        _ => None,
    }
}

/// Neumaier's improved Kahan summation step, as Prometheus's `kahanSumInc`.
#[inline(always)]
fn kahan_sum_inc(inc: f64, sum: f64, mut c: f64) -> (f64, f64) {
    let t = sum + inc;
    if sum.abs() >= inc.abs() {
        c += (sum - t) + inc;
    } else {
        c += (inc - t) + sum;
    }
    (t, c)
}

/// rate/increase/delta: the difference between the first and last sample (with counter
/// resets added back for counters), extrapolated towards the window's boundaries.
fn extrapolated_rate(input: &RangeArgs<'_>, is_counter: bool, is_rate: bool) -> Option<f64> {
    let s = input.samples;
    if s.len() < 2 {
        return None;
    }
    let first = s.first()?;
    let last = s.last()?;
    let mut result = last.value - first.value;
    if is_counter {
        // Prometheus compares the first sample with 0, then each with the one before, and
        // adds the value before every drop, in that order (kept, so the sum is bit-identical)
        match input.resets {
            Some(resets) => {
                if first.value < 0.0 {
                    result += 0.0;
                }
                for r in resets {
                    result += r.before;
                }
            }
            None => {
                let mut prev = 0.0;
                for x in s {
                    if x.value < prev {
                        result += prev;
                    }
                    prev = x.value;
                }
            }
        }
    }
    let mut duration_to_start =
        (first.timestamp_ms.wrapping_sub(input.range_start_ms)) as f64 / 1000.0;
    let duration_to_end = (input.range_end_ms.wrapping_sub(last.timestamp_ms)) as f64 / 1000.0;
    let sampled_interval = (last.timestamp_ms.wrapping_sub(first.timestamp_ms)) as f64 / 1000.0;
    let average_between = sampled_interval / (s.len() - 1) as f64;

    if is_counter && result > 0.0 && first.value >= 0.0 {
        // a counter cannot go below zero: do not extrapolate past its zero point
        let duration_to_zero = sampled_interval * (first.value / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    let threshold = average_between * 1.1;
    let mut extrapolate_to = sampled_interval;
    extrapolate_to += if duration_to_start < threshold {
        duration_to_start
    } else {
        average_between / 2.0
    };
    extrapolate_to += if duration_to_end < threshold {
        duration_to_end
    } else {
        average_between / 2.0
    };
    result *= extrapolate_to / sampled_interval;
    if is_rate {
        result /= (input.range_end_ms.wrapping_sub(input.range_start_ms)) as f64 / 1000.0;
    }
    Some(result)
}

/// irate/idelta: from the last two samples.
fn instant_value(s: &[Sample], is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let last = s.last()?;
    let prev = s.get(s.len() - 2)?;
    let mut result = if is_rate && last.value < prev.value {
        // counter reset
        last.value
    } else {
        last.value - prev.value
    };
    let interval = last.timestamp_ms.wrapping_sub(prev.timestamp_ms);
    if interval == 0 {
        return None;
    }
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// Least-squares fit of value over time (seconds relative to `intercept_ms`), as
/// Prometheus's `linearRegression`: (slope, value at `intercept_ms`).
fn linear_regression(s: &[Sample], intercept_ms: i64) -> (f64, f64) {
    let (mut n, mut sum_x, mut c_x, mut sum_y, mut c_y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) = (0.0, 0.0, 0.0, 0.0);
    let init_y = s.first().map_or(f64::NAN, |x| x.value);
    let mut const_y = true;
    for (i, x) in s.iter().enumerate() {
        if const_y && i > 0 && x.value != init_y {
            const_y = false;
        }
        n += 1.0;
        let t = x.timestamp_ms.wrapping_sub(intercept_ms) as f64 / 1e3;
        (sum_x, c_x) = kahan_sum_inc(t, sum_x, c_x);
        (sum_y, c_y) = kahan_sum_inc(x.value, sum_y, c_y);
        (sum_xy, c_xy) = kahan_sum_inc(t * x.value, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_sum_inc(t * t, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// avg_over_time: the mean of a window. A compensated sum divided once is what Prometheus 3 computes and
/// agrees with 2.42's running mean to rounding (2.42 divides twice per sample, which made
/// this function most of an `avg_over_time` range query); when the sum overflows or meets
/// an infinity, 2.42's running mean gives the answer, as it does there.
fn avg_over_time(s: &[Sample]) -> f64 {
    let (mut sum, mut c) = (0.0f64, 0.0f64);
    for x in s {
        (sum, c) = kahan_sum_inc(x.value, sum, c);
    }
    if sum.is_finite() {
        return (sum + c) / s.len() as f64;
    }
    running_mean(s)
}

/// Windows summed side by side in [`avg_over_time_windows`].
const AVG_LANES: usize = 4;

/// `avg_over_time` of one series over many windows (one per step of a range query, mostly
/// overlapping), written to `out[i]` for `windows[i]` (`None` for an empty window).
///
/// A compensated sum is a chain of dependent additions, so one window at a time leaves the
/// CPU waiting on each addition's latency. Here [`AVG_LANES`] windows are summed in
/// interleaved lanes: each lane performs exactly the operations [`avg_over_time`] performs,
/// in the same order, so every result is bit-identical to it, while the CPU overlaps the
/// lanes' chains.
pub fn avg_over_time_windows(
    samples: &[Sample],
    windows: &[std::ops::Range<usize>],
    out: &mut [Option<f64>],
) {
    for (group, out) in windows.chunks(AVG_LANES).zip(out.chunks_mut(AVG_LANES)) {
        let mut lanes: [&[Sample]; AVG_LANES] = [&[]; AVG_LANES];
        for (lane, w) in lanes.iter_mut().zip(group) {
            *lane = samples.get(w.clone()).unwrap_or(&[]);
        }
        // the steps all lanes have: summed side by side (none in a short last group)
        let common = if group.len() == AVG_LANES {
            lanes.iter().map(|l| l.len()).min().unwrap_or(0)
        } else {
            0
        };
        let mut sum = [0.0f64; AVG_LANES];
        let mut c = [0.0f64; AVG_LANES];
        if common > 0 {
            let [l0, l1, l2, l3] = lanes.map(|l| &l[..common]);
            let [mut s0, mut s1, mut s2, mut s3] = sum;
            let [mut c0, mut c1, mut c2, mut c3] = c;
            for (((x0, x1), x2), x3) in l0.iter().zip(l1).zip(l2).zip(l3) {
                (s0, c0) = kahan_sum_inc(x0.value, s0, c0);
                (s1, c1) = kahan_sum_inc(x1.value, s1, c1);
                (s2, c2) = kahan_sum_inc(x2.value, s2, c2);
                (s3, c3) = kahan_sum_inc(x3.value, s3, c3);
            }
            sum = [s0, s1, s2, s3];
            c = [c0, c1, c2, c3];
        }
        for (l, slot) in out.iter_mut().enumerate() {
            let lane = lanes[l];
            if lane.is_empty() {
                *slot = None;
                continue;
            }
            let (mut s, mut comp) = (sum[l], c[l]);
            for x in &lane[common..] {
                (s, comp) = kahan_sum_inc(x.value, s, comp);
            }
            *slot = Some(if s.is_finite() {
                (s + comp) / lane.len() as f64
            } else {
                running_mean(lane)
            });
        }
    }
}

/// Prometheus 2.42's `avg_over_time`: a compensated running mean, which never overflows,
/// keeping an infinite mean once reached (unless a NaN or an infinity of the other sign
/// arrives).
fn running_mean(s: &[Sample]) -> f64 {
    let (mut mean, mut count, mut c) = (0.0f64, 0.0f64, 0.0f64);
    for x in s {
        let v = x.value;
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_sum_inc(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() {
        mean
    } else {
        mean + c
    }
}

/// Population variance by Welford's method with Kahan-compensated mean and sum of squares.
fn stdvar_over_time(s: &[Sample]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for x in s {
        count += 1.0;
        let delta = x.value - (mean + c_mean);
        (mean, c_mean) = kahan_sum_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_sum_inc(delta * (x.value - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// Double exponential smoothing, as Prometheus's `funcHoltWinters`.
fn holt_winters(s: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let mut s0 = 0.0;
    let mut s1 = s.first()?.value;
    let mut b = s.get(1)?.value - s1;
    for (i, x) in s.iter().enumerate().skip(1) {
        let scaled = sf * x.value;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = scaled + y;
    }
    Some(s1)
}

/// Go's `math.Max`: +Inf wins, then NaN, and +0 beats -0.
fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && x == y {
        if x.is_sign_negative() {
            y
        } else {
            x
        }
    } else if x > y {
        x
    } else {
        y
    }
}

/// Go's `math.Min`: -Inf wins, then NaN, and -0 beats +0.
fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && x == y {
        if x.is_sign_negative() {
            x
        } else {
            y
        }
    } else if x < y {
        x
    } else {
        y
    }
}

/// Element-wise math and date functions on one value. `None`: unknown name, or no value
/// (clamp with min > max).
pub fn eval_elementwise(name: &str, v: f64, args: &[f64]) -> Option<f64> {
    let arg = |i: usize| args.get(i).copied().unwrap_or(f64::NAN);
    let out = match name {
        "abs" => v.abs(),
        "ceil" => v.ceil(),
        "floor" => v.floor(),
        "round" => {
            let to_nearest = args.first().copied().unwrap_or(1.0);
            // Prometheus multiplies by the inverse (fewer accuracy issues); ties round up
            let inverse = 1.0 / to_nearest;
            (v * inverse + 0.5).floor() / inverse
        }
        "exp" => v.exp(),
        "ln" => v.ln(),
        "log2" => v.log2(),
        "log10" => v.log10(),
        "sqrt" => v.sqrt(),
        "sgn" => {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        }
        "clamp" => {
            let (min, max) = (arg(0), arg(1));
            if max < min {
                return None;
            }
            go_max(min, go_min(max, v))
        }
        "clamp_min" => go_max(arg(0), v),
        "clamp_max" => go_min(arg(0), v),
        "sin" => v.sin(),
        "cos" => v.cos(),
        "tan" => v.tan(),
        "asin" => v.asin(),
        "acos" => v.acos(),
        "atan" => v.atan(),
        "sinh" => v.sinh(),
        "cosh" => v.cosh(),
        "tanh" => v.tanh(),
        "asinh" => v.asinh(),
        "acosh" => v.acosh(),
        "atanh" => v.atanh(),
        "deg" => v * 180.0 / std::f64::consts::PI,
        "rad" => v * std::f64::consts::PI / 180.0,
        "day_of_month" => GoDate::from_unix_f64(v).day as f64,
        "day_of_week" => GoDate::from_unix_f64(v).weekday as f64,
        "day_of_year" => GoDate::from_unix_f64(v).yday as f64,
        "days_in_month" => GoDate::from_unix_f64(v).days_in_month() as f64,
        "hour" => GoDate::from_unix_f64(v).hour as f64,
        "minute" => GoDate::from_unix_f64(v).minute as f64,
        "month" => GoDate::from_unix_f64(v).month as f64,
        "year" => GoDate::from_unix_f64(v).year as f64,
        _ => return None,
    };
    Some(out)
}

/// A UTC calendar date computed exactly as Go's `time.Unix(int64(v), 0).UTC()` does,
/// including its wrapping arithmetic, so out-of-range values (NaN and ±Inf convert to
/// `i64::MIN` on amd64) give the same odd dates Prometheus 2.42 returns.
struct GoDate {
    year: i64,
    month: u64,
    day: u64,
    yday: u64,
    weekday: u64,
    hour: u64,
    minute: u64,
}

const SECONDS_PER_DAY: u64 = 86_400;
const DAYS_PER_400_YEARS: u64 = 365 * 400 + 97;
const DAYS_PER_100_YEARS: u64 = 365 * 100 + 24;
const DAYS_PER_4_YEARS: u64 = 365 * 4 + 1;
const ABSOLUTE_ZERO_YEAR: i64 = -292_277_022_399;
/// Go's `unixToInternal + internalToAbsolute`: seconds from the absolute zero year to 1970.
const UNIX_TO_ABSOLUTE: i64 = {
    let unix_to_internal: i64 = (1969 * 365 + 1969 / 4 - 1969 / 100 + 1969 / 400) * 86_400;
    // absoluteToInternal = (absoluteZeroYear - 1) * 365.2425 days of 86400 s
    let absolute_to_internal: i64 = (ABSOLUTE_ZERO_YEAR - 1) * 31_556_952;
    unix_to_internal - absolute_to_internal
};
/// Days before the start of each month in a non-leap year (Go's `daysBefore`).
const DAYS_BEFORE: [u64; 13] = [
    0,
    31,
    31 + 28,
    31 + 28 + 31,
    31 + 28 + 31 + 30,
    31 + 28 + 31 + 30 + 31,
    31 + 28 + 31 + 30 + 31 + 30,
    31 + 28 + 31 + 30 + 31 + 30 + 31,
    31 + 28 + 31 + 30 + 31 + 30 + 31 + 31,
    31 + 28 + 31 + 30 + 31 + 30 + 31 + 31 + 30,
    31 + 28 + 31 + 30 + 31 + 30 + 31 + 31 + 30 + 31,
    31 + 28 + 31 + 30 + 31 + 30 + 31 + 31 + 30 + 31 + 30,
    365,
];

/// Go's float64 to int64 conversion on amd64: truncation, and `i64::MIN` for NaN and
/// anything out of range.
fn go_f64_to_i64(v: f64) -> i64 {
    // 2^63, exactly representable
    let limit = i64::MAX as f64;
    if !(-limit..limit).contains(&v) {
        i64::MIN
    } else {
        v as i64
    }
}

impl GoDate {
    fn from_unix_f64(v: f64) -> GoDate {
        GoDate::from_unix(go_f64_to_i64(v))
    }

    fn from_unix(sec: i64) -> GoDate {
        let abs = sec.wrapping_add(UNIX_TO_ABSOLUTE) as u64;
        let mut d = abs / SECONDS_PER_DAY;
        let mut n = d / DAYS_PER_400_YEARS;
        let mut y = 400 * n;
        d -= DAYS_PER_400_YEARS * n;
        n = d / DAYS_PER_100_YEARS;
        n -= n >> 2;
        y += 100 * n;
        d -= DAYS_PER_100_YEARS * n;
        n = d / DAYS_PER_4_YEARS;
        y += 4 * n;
        d -= DAYS_PER_4_YEARS * n;
        n = d / 365;
        n -= n >> 2;
        y += n;
        d -= 365 * n;
        let year = (y as i64).wrapping_add(ABSOLUTE_ZERO_YEAR);
        let yday = d;
        let mut day = yday;
        let (month, day) = 'md: {
            if is_leap_year(year) {
                if day > 31 + 29 - 1 {
                    day -= 1;
                } else if day == 31 + 29 - 1 {
                    break 'md (2, 29);
                }
            }
            let mut month = (day / 31) as usize;
            let end = DAYS_BEFORE.get(month + 1).copied().unwrap_or(365);
            let begin = if day >= end {
                month += 1;
                end
            } else {
                DAYS_BEFORE.get(month).copied().unwrap_or(0)
            };
            (month as u64 + 1, day - begin + 1)
        };
        let weekday = (abs.wrapping_add(SECONDS_PER_DAY) % (7 * SECONDS_PER_DAY)) / SECONDS_PER_DAY;
        GoDate {
            year,
            month,
            day,
            yday: yday + 1,
            weekday,
            hour: (abs % SECONDS_PER_DAY) / 3600,
            minute: (abs % 3600) / 60,
        }
    }

    fn days_in_month(&self) -> u64 {
        // month is 1..=12
        u64::from(days_in_month(self.year, self.month as u32))
    }
}

/// Prometheus's `bucketQuantile` over classic histogram buckets (upper bound, cumulative
/// count), in any order.
pub fn histogram_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
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
    match buckets.last() {
        Some(b) if b.0 == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    coalesce_buckets(buckets);
    ensure_monotonic(buckets);
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    // the first bucket (excluding +Inf) whose count reaches the rank
    let b = buckets[..buckets.len() - 1].partition_point(|x| x.1 < rank);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
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

/// Merges buckets with the same upper bound (sorted input), summing their counts.
fn coalesce_buckets(buckets: &mut Vec<(f64, f64)>) {
    let mut out = 0usize;
    for i in 0..buckets.len() {
        let cur = buckets[i];
        if i > 0 && cur.0 == buckets[out - 1].0 {
            buckets[out - 1].1 += cur.1;
        } else {
            buckets[out] = cur;
            out += 1;
        }
    }
    buckets.truncate(out);
}

/// Raises any count below an earlier bucket's count to it (precision loss in the source).
fn ensure_monotonic(buckets: &mut [(f64, f64)]) {
    let mut max = f64::NEG_INFINITY;
    for b in buckets.iter_mut() {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
}

/// Prometheus's `quantile`: linear interpolation between the closest ranks after sorting
/// (NaN first). Empty input is NaN; φ < 0 is -Inf and φ > 1 is +Inf.
// `&mut Vec` is the interface the evaluator codes against
#[allow(clippy::ptr_arg)]
pub fn quantile(q: f64, values: &mut Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if q.is_nan() {
        return f64::NAN;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    let lo = values.get(lower as usize).copied().unwrap_or(f64::NAN);
    let hi = values.get(upper as usize).copied().unwrap_or(f64::NAN);
    lo * (1.0 - weight) + hi * weight
}

/// Whether `name` is a valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
fn is_valid_label_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_alphabetic() || b == b'_' || (i > 0 && b.is_ascii_digit()))
}

/// label_replace's regex, compiled once per call site: anchored at both ends as Prometheus
/// does. Errors carry Prometheus's messages.
pub struct LabelReplace {
    regex: Regex,
    dst: String,
    replacement: String,
    src: String,
}

impl LabelReplace {
    pub fn new(
        dst: &str,
        replacement: &str,
        src: &str,
        regex: &str,
    ) -> Result<LabelReplace, PromqlError> {
        let compiled = Regex::new(&format!("^(?:{regex})$")).map_err(|_| {
            PromqlError::Execution(format!(
                "invalid regular expression in label_replace(): {regex}"
            ))
        })?;
        if !is_valid_label_name(dst) {
            return Err(PromqlError::Execution(format!(
                "invalid destination label name in label_replace(): {dst}"
            )));
        }
        Ok(LabelReplace {
            regex: compiled,
            dst: dst.to_string(),
            replacement: replacement.to_string(),
            src: src.to_string(),
        })
    }

    /// Applies the replacement to one label set: unchanged when the regex does not match the
    /// source label's value (absent = ""); an empty expansion deletes `dst`.
    pub fn apply(&self, labels: &Labels) -> Labels {
        let src_val = labels.get(&self.src).unwrap_or("");
        let Some(caps) = self.regex.captures(src_val) else {
            return labels.clone();
        };
        let mut res = String::new();
        caps.expand(&self.replacement, &mut res);
        let mut out: Vec<Label> = labels
            .iter()
            .filter(|l| l.name != self.dst)
            .cloned()
            .collect();
        if !res.is_empty() {
            out.push(Label::new(self.dst.clone(), res));
        }
        Labels::new(out)
    }
}

/// label_replace(v, dst, replacement, src, regex) on one label set. Compiles the regex on
/// every call: callers with many series should use [`LabelReplace`].
pub fn label_replace(
    labels: &Labels,
    dst: &str,
    replacement: &str,
    src: &str,
    regex: &str,
) -> Result<Labels, PromqlError> {
    Ok(LabelReplace::new(dst, replacement, src, regex)?.apply(labels))
}

/// Checks label_join's label names as Prometheus does (sources first, then destination).
pub fn validate_label_join(dst: &str, srcs: &[&str]) -> Result<(), PromqlError> {
    if let Some(bad) = srcs.iter().find(|s| !is_valid_label_name(s)) {
        return Err(PromqlError::Execution(format!(
            "invalid source label name in label_join(): {bad}"
        )));
    }
    if !is_valid_label_name(dst) {
        return Err(PromqlError::Execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    Ok(())
}

/// label_join(v, dst, separator, src...) on one label set: `dst` becomes the source values
/// (absent = "") joined by `sep`, or is deleted when that is empty.
pub fn label_join(
    labels: &Labels,
    dst: &str,
    sep: &str,
    srcs: &[&str],
) -> Result<Labels, PromqlError> {
    validate_label_join(dst, srcs)?;
    let mut joined = String::new();
    for (i, src) in srcs.iter().enumerate() {
        if i > 0 {
            joined.push_str(sep);
        }
        joined.push_str(labels.get(src).unwrap_or(""));
    }
    let mut out: Vec<Label> = labels.iter().filter(|l| l.name != dst).cloned().collect();
    if !joined.is_empty() {
        out.push(Label::new(dst, joined));
    }
    Ok(Labels::new(out))
}

/// Whether the function's result drops the metric name (`__name__`), as Prometheus 2.42:
/// every function does except `last_over_time`, `label_replace`, `label_join`, `sort` and
/// `sort_desc` (functions that build new label sets, such as `absent`, `vector`, `scalar`
/// and `time`, have no name to keep).
pub fn drops_metric_name(name: &str) -> bool {
    !matches!(
        name,
        "last_over_time" | "label_replace" | "label_join" | "sort" | "sort_desc"
    )
}

/// The label name functions drop; re-exported here for the evaluator's convenience.
pub const DROPPED_NAME_LABEL: &str = METRIC_NAME_LABEL;

#[cfg(test)]
mod tests {
    //! Expected values come from Debian's Prometheus 2.42 (`promtool test rules`) and
    //! Prometheus's `promql/testdata/functions.test` / `histograms.test`.
    use super::*;

    /// Samples one minute apart starting at 0, values as given.
    fn series(values: &[f64]) -> Vec<Sample> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Sample::new(i as i64 * 60_000, *v))
            .collect()
    }

    /// Evaluated both ways for `rate`/`increase`: scanning the window for counter resets,
    /// and with the resets found beforehand; the two must agree to the bit.
    fn range(name: &str, s: &[Sample], start: i64, end: i64, args: &[f64]) -> Option<f64> {
        let eval = |resets| {
            eval_range_function(
                name,
                &RangeArgs {
                    samples: s,
                    range_start_ms: start,
                    range_end_ms: end,
                    args,
                    resets,
                },
            )
        };
        let scanned = eval(None);
        if uses_counter_resets(name) {
            let found = counter_resets(s);
            assert_eq!(
                eval(Some(&found)).map(f64::to_bits),
                scanned.map(f64::to_bits),
                "{name} over {s:?}"
            );
        }
        scanned
    }

    #[test]
    fn counter_resets_are_the_drops_and_the_value_before_each() {
        let s = series(&[5.0, 1.0, 2.0, f64::NAN, 1.0, 0.5, 7.0, 3.0]);
        let found: Vec<(usize, f64)> = counter_resets(&s)
            .iter()
            .map(|r| (r.index, r.before))
            .collect();
        // NaN is never lower or higher: neither 2 -> NaN nor NaN -> 1 is a reset
        assert_eq!(found, vec![(1, 5.0), (5, 1.0), (7, 7.0)]);
        let got = range("increase", &s, 0, 7 * 60_000, &[]);
        assert!(got.is_some());
    }

    /// `m[10m]` evaluated at 5m.
    fn over(name: &str, values: &[f64], args: &[f64]) -> Option<f64> {
        range(name, &series(values), -300_000, 300_000, args)
    }

    const M: &[f64] = &[1.0, 4.0, 2.0, 8.0, 3.0];

    /// Deterministic uniform numbers in `[0, 1)` (a 64-bit LCG's high bits).
    fn uniform(seed: u64) -> impl FnMut() -> f64 {
        let mut x = seed;
        move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn interleaved_window_means_are_bit_identical_to_one_window_at_a_time() {
        let mut next = uniform(7);
        let mut values: Vec<f64> = (0..500)
            .map(|i| (next() - 0.5) * 10f64.powi(i % 12))
            .collect();
        // an overflowing stretch and an infinity take 2.42's running-mean path
        values[200] = f64::MAX;
        values[201] = f64::MAX;
        values[300] = f64::INFINITY;
        values[400] = f64::NAN;
        let s = series(&values);
        // overlapping windows of uneven lengths, empty ones, and a short last group
        let windows: Vec<std::ops::Range<usize>> = (0..123)
            .map(|i| {
                let start = i * 4;
                let len = [30, 31, 29, 0, 7][i % 5];
                start..(start + len).min(s.len())
            })
            .collect();
        let mut got = vec![Some(0.0); windows.len()];
        avg_over_time_windows(&s, &windows, &mut got);
        for (w, g) in windows.iter().zip(&got) {
            let want = (!w.is_empty()).then(|| avg_over_time(&s[w.clone()]));
            assert_eq!(g.map(f64::to_bits), want.map(f64::to_bits), "window {w:?}");
        }
    }

    #[test]
    fn the_summed_mean_agrees_with_the_running_mean_of_2_42() {
        let mut next = uniform(42);
        for n in 1..200 {
            let scale = 10f64.powi((n % 30) - 10);
            let s = series(&(0..n).map(|_| (next() - 0.3) * scale).collect::<Vec<_>>());
            let (fast, slow) = (avg_over_time(&s), running_mean(&s));
            assert!(
                (fast - slow).abs() <= 1e-12 * fast.abs().max(slow.abs()),
                "{fast} {slow}"
            );
        }
        // overflow and infinities take 2.42's path and answer as it does
        for values in [
            &[f64::INFINITY, 1.0][..],
            &[f64::INFINITY, f64::NEG_INFINITY],
            &[f64::MAX, f64::MAX, 1.0],
            &[1.0, f64::NAN],
        ] {
            let s = series(values);
            let (fast, slow) = (avg_over_time(&s), running_mean(&s));
            assert_eq!(fast.to_bits(), slow.to_bits(), "{values:?}");
        }
    }

    #[test]
    fn over_time_functions_match_prometheus() {
        assert_eq!(over("present_over_time", M, &[]), Some(1.0));
        assert_eq!(over("stddev_over_time", M, &[]), Some(2.4166091947189146));
        assert_eq!(
            over("stdvar_over_time", &[0.1, 0.2, 0.3], &[]),
            Some(6.666666666666664E-03)
        );
        assert_eq!(
            over("avg_over_time", &[0.1, 0.2, 0.3], &[]),
            Some(1.9999999999999998E-01)
        );
        assert_eq!(
            over("avg_over_time", &[1e308, 1e308, 1e308, 5.0, 3.0], &[]),
            Some(6E+307)
        );
        assert_eq!(over("sum_over_time", &[0.1, 0.2, 0.3], &[]), Some(0.6));
        assert_eq!(over("count_over_time", M, &[]), Some(5.0));
        assert_eq!(over("min_over_time", M, &[]), Some(1.0));
        assert_eq!(over("max_over_time", M, &[]), Some(8.0));
        assert_eq!(over("last_over_time", M, &[]), Some(3.0));
        assert_eq!(over("quantile_over_time", M, &[0.3]), Some(2.2));
        assert_eq!(
            over("quantile_over_time", M, &[-1.0]),
            Some(f64::NEG_INFINITY)
        );
        assert!(over("quantile_over_time", M, &[f64::NAN]).is_some_and(f64::is_nan));
        assert_eq!(over("changes", M, &[]), Some(4.0));
        assert_eq!(over("resets", M, &[]), Some(2.0));
        assert_eq!(over("holt_winters", M, &[0.5, 0.5]), Some(6.15625));
        assert_eq!(over("holt_winters", M, &[1.0, 0.5]), None);
        assert_eq!(
            validate_range_args("holt_winters", &[1.0, 0.5]),
            Err("invalid smoothing factor. Expected: 0 < sf < 1, got: 1.000000".to_string())
        );
        assert_eq!(
            validate_range_args("holt_winters", &[0.5, 0.0]),
            Err("invalid trend factor. Expected: 0 < tf < 1, got: 0.000000".to_string())
        );
    }

    #[test]
    fn min_max_over_time_skip_leading_nan() {
        assert_eq!(over("max_over_time", &[f64::NAN, 2.0, 1.0], &[]), Some(2.0));
        assert_eq!(over("min_over_time", &[f64::NAN, 2.0, 1.0], &[]), Some(1.0));
        assert!(over("max_over_time", &[f64::NAN], &[]).is_some_and(f64::is_nan));
    }

    #[test]
    fn changes_treats_nan_to_nan_as_no_change() {
        assert_eq!(
            over("changes", &[f64::NAN, f64::NAN, 1.0, 1.0], &[]),
            Some(1.0)
        );
    }

    #[test]
    fn rate_family_matches_prometheus() {
        // m[3m] at 5m covers the samples at 2m..5m: (2, 8, 3)... window (2m, 5m]
        let s = series(M);
        assert_eq!(range("rate", &s[2..], 120_000, 300_000, &[]), Some(7.5E-02));
        assert_eq!(range("delta", &s[2..], 120_000, 300_000, &[]), Some(1.5));
        assert_eq!(over("increase", M, &[]), Some(1.8500000000000004E+01));
        assert_eq!(over("irate", M, &[]), Some(5E-02));
        assert_eq!(over("idelta", M, &[]), Some(-5.0));
        assert_eq!(
            range("rate", &series(&[1.0, 1.0, 0.0]), 0, 120_000, &[]),
            Some(0.0)
        );
        assert_eq!(over("rate", &[1.0], &[]), None);
        // 2.42 clamps to the counter's zero point before the 1.1x threshold test (newer
        // releases give 2.0 here): samples 1, 2 at 5m, 6m; increase(c[10m]) at 10m
        let late = [Sample::new(300_000, 1.0), Sample::new(360_000, 2.0)];
        assert_eq!(range("increase", &late, 0, 600_000, &[]), Some(2.5));
        assert_eq!(over("irate", &[1.0], &[]), None);
    }

    #[test]
    fn rate_extrapolation_from_functions_test() {
        // http_requests{path="/foo"} 0+10x10 at 10s steps... as functions.test:
        // counter 0+10x10 sampled each 5m, rate(x[50m]) at 50m = 0.03333...
        let s: Vec<Sample> = (0..=10)
            .map(|i| Sample::new(i * 300_000, i as f64 * 10.0))
            .collect();
        let r = range("rate", &s[1..], 0, 3_000_000, &[]).unwrap_or(0.0);
        assert!((r - 100.0 / 3000.0).abs() < 1e-12, "{r}");
        // delta without counter semantics extrapolates to the window start
        let d = range("delta", &s[1..], 0, 3_000_000, &[]).unwrap_or(0.0);
        assert!((d - 100.0).abs() < 1e-9, "{d}");
    }

    #[test]
    fn deriv_and_predict_linear_match_prometheus() {
        let c = series(&[0.1, 0.2, 0.3]);
        assert_eq!(
            range("deriv", &c, -300_000, 300_000, &[]),
            Some(1.6666666666666668E-03)
        );
        // predict_linear uses the evaluation time (5m) even under offset
        assert_eq!(
            range("predict_linear", &c, -360_000, 240_000, &[100.0, 300_000.0]),
            Some(7.666666666666668E-01)
        );
        assert_eq!(
            range("deriv", &series(&[3.0, 3.0]), 0, 60_000, &[]),
            Some(0.0)
        );
        assert!(range(
            "deriv",
            &series(&[f64::INFINITY, f64::INFINITY]),
            0,
            60_000,
            &[]
        )
        .is_some_and(f64::is_nan));
    }

    #[test]
    fn empty_and_degenerate_inputs_do_not_panic() {
        for name in RANGE_FUNCTIONS {
            assert_eq!(range(name, &[], 0, 1000, &[0.5, 0.5]), None, "{name}");
            let one = [Sample::new(5, f64::NAN)];
            let _ = range(name, &one, 0, 1000, &[]);
            let same_ts = [Sample::new(5, 1.0), Sample::new(5, 2.0)];
            let _ = range(name, &same_ts, 0, 0, &[f64::INFINITY, f64::NAN]);
            let huge = [
                Sample::new(i64::MIN, f64::MAX),
                Sample::new(i64::MAX, -f64::MAX),
            ];
            let _ = range(name, &huge, i64::MIN, i64::MAX, &[f64::MAX]);
        }
        for name in ELEMENTWISE_FUNCTIONS {
            for v in [
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::MAX,
                -0.0,
                1e300,
            ] {
                let _ = eval_elementwise(name, v, &[]);
                let _ = eval_elementwise(name, v, &[f64::NAN, f64::NAN]);
            }
        }
    }

    #[test]
    fn elementwise_math() {
        let f = |name: &str, v: f64, args: &[f64]| eval_elementwise(name, v, args);
        assert_eq!(f("round", 2.5, &[0.3]), Some(2.4));
        assert_eq!(f("round", 2.5, &[]), Some(3.0));
        assert_eq!(f("round", -2.5, &[]), Some(-2.0));
        assert_eq!(f("round", 12.34, &[10.0]), Some(10.0));
        assert_eq!(f("clamp", 5.0, &[0.0, 3.0]), Some(3.0));
        assert_eq!(f("clamp", -5.0, &[0.0, 3.0]), Some(0.0));
        assert_eq!(f("clamp", 1.0, &[3.0, 0.0]), None);
        assert!(f("clamp", 1.0, &[f64::NAN, 3.0]).is_some_and(f64::is_nan));
        assert!(f("clamp_max", f64::NAN, &[3.0]).is_some_and(f64::is_nan));
        assert_eq!(f("clamp_min", -1.0, &[0.0]), Some(0.0));
        assert_eq!(f("sgn", -3.0, &[]), Some(-1.0));
        assert_eq!(f("sgn", 0.0, &[]), Some(0.0));
        assert!(f("sgn", f64::NAN, &[]).is_some_and(f64::is_nan));
        assert_eq!(f("deg", std::f64::consts::PI, &[]), Some(180.0));
        assert_eq!(f("rad", 180.0, &[]), Some(std::f64::consts::PI));
        assert_eq!(f("abs", -2.0, &[]), Some(2.0));
        assert_eq!(f("log2", 8.0, &[]), Some(3.0));
        assert!(f("ln", -1.0, &[]).is_some_and(f64::is_nan));
        assert_eq!(f("nope", 1.0, &[]), None);
        assert!(is_elementwise_function("acosh") && !is_elementwise_function("rate"));
        assert!(is_range_function("holt_winters") && !is_range_function("abs"));
    }

    #[test]
    fn date_functions_match_go_time() {
        let f = |name: &str, v: f64| eval_elementwise(name, v, &[]);
        // 2023-11-14T22:13:20Z, a Tuesday
        assert_eq!(f("day_of_week", 1_700_000_000.0), Some(2.0));
        assert_eq!(f("year", 1_700_000_000.0), Some(2023.0));
        assert_eq!(f("month", 1_700_000_000.0), Some(11.0));
        assert_eq!(f("day_of_month", 1_700_000_000.0), Some(14.0));
        assert_eq!(f("hour", 1_700_000_000.0), Some(22.0));
        assert_eq!(f("minute", 1_700_000_000.0), Some(13.0));
        // 2024-02-29T23:59:59Z
        assert_eq!(f("day_of_year", 1_709_251_199.0), Some(60.0));
        assert_eq!(f("days_in_month", 1_709_251_199.0), Some(29.0));
        assert_eq!(f("day_of_month", 1_709_251_199.0), Some(29.0));
        assert_eq!(f("month", 1_709_251_199.0), Some(2.0));
        // 1970-01-01 was a Thursday; days_in_month(Feb 1970) = 28
        assert_eq!(f("day_of_week", 0.0), Some(4.0));
        assert_eq!(f("days_in_month", 2_678_400.0), Some(28.0));
        // before 1970
        assert_eq!(f("year", -1.0), Some(1969.0));
        assert_eq!(f("day_of_year", -1.0), Some(365.0));
        // NaN and out-of-range values: what Go's time.Unix(int64(NaN), 0) gives on amd64
        for v in [f64::NAN, f64::INFINITY, 1e19] {
            assert_eq!(f("year", v), Some(2.92277026596E+11));
            assert_eq!(f("month", v), Some(12.0));
            assert_eq!(f("day_of_month", v), Some(4.0));
            assert_eq!(f("day_of_week", v), Some(0.0));
            assert_eq!(f("day_of_year", v), Some(339.0));
            assert_eq!(f("days_in_month", v), Some(31.0));
            assert_eq!(f("hour", v), Some(15.0));
            assert_eq!(f("minute", v), Some(30.0));
        }
    }

    #[test]
    fn histogram_quantile_matches_prometheus() {
        let h = || vec![(0.1, 10.0), (f64::INFINITY, 30.0), (0.5, 20.0), (1.0, 25.0)];
        assert_eq!(histogram_quantile(0.5, &mut h()), 3.0000000000000004E-01);
        assert_eq!(histogram_quantile(0.9, &mut h()), 1.0);
        assert_eq!(histogram_quantile(0.99, &mut h()), 1.0);
        assert_eq!(histogram_quantile(0.2, &mut h()), 6E-02);
        assert_eq!(histogram_quantile(-0.1, &mut h()), f64::NEG_INFINITY);
        assert_eq!(histogram_quantile(1.1, &mut h()), f64::INFINITY);
        assert!(histogram_quantile(f64::NAN, &mut h()).is_nan());
        // zero observations
        let mut zero = vec![(0.1, 0.0), (f64::INFINITY, 0.0)];
        assert!(histogram_quantile(0.5, &mut zero).is_nan());
        // no +Inf bucket
        assert!(histogram_quantile(0.5, &mut vec![(0.1, 1.0), (1.0, 2.0)]).is_nan());
        // only the +Inf bucket
        assert!(histogram_quantile(0.5, &mut vec![(f64::INFINITY, 2.0)]).is_nan());
        assert!(histogram_quantile(0.5, &mut vec![]).is_nan());
        // non-monotonic counts are fixed up (histograms.test "nonmonotonic_bucket")
        let mut nm = vec![
            (0.1, 0.0),
            (1.0, 10.0),
            (10.0, 8.0),
            (100.0, 10.0),
            (1000.0, 9.0),
            (f64::INFINITY, 10.0),
        ];
        assert_eq!(histogram_quantile(0.5, &mut nm.clone()), 0.55);
        assert_eq!(histogram_quantile(0.99, &mut nm), 0.991);
        // a first bucket with a non-positive bound returns that bound
        let mut neg = vec![(-1.0, 5.0), (0.0, 6.0), (f64::INFINITY, 10.0)];
        assert_eq!(histogram_quantile(0.1, &mut neg), -1.0);
        // duplicate bounds are merged
        let mut dup = vec![(1.0, 1.0), (1.0, 1.0), (2.0, 4.0), (f64::INFINITY, 4.0)];
        assert_eq!(histogram_quantile(0.5, &mut dup), 1.0);
    }

    #[test]
    fn quantile_interpolates_like_prometheus() {
        assert!(quantile(0.5, &mut vec![]).is_nan());
        assert_eq!(quantile(0.5, &mut vec![1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(quantile(0.0, &mut vec![3.0, 1.0, 2.0]), 1.0);
        assert_eq!(quantile(1.0, &mut vec![3.0, 1.0, 2.0]), 3.0);
        assert_eq!(quantile(0.95, &mut vec![0.0, 10.0]), 9.5);
        assert_eq!(quantile(2.0, &mut vec![1.0]), f64::INFINITY);
        // NaN sorts first
        assert!(quantile(0.0, &mut vec![1.0, f64::NAN]).is_nan());
        assert_eq!(quantile(1.0, &mut vec![1.0, f64::NAN]), 1.0);
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn label_replace_as_prometheus() {
        let l = labels(&[
            ("__name__", "up"),
            ("src", "source-value-10"),
            ("dst", "orig"),
        ]);
        let out = label_replace(
            &l,
            "dst",
            "destination-value-$1",
            "src",
            "source-value-(.*)",
        );
        assert_eq!(
            out.ok().as_ref().and_then(|o| o.get("dst")),
            Some("destination-value-10")
        );
        // not anchored match fails: unchanged
        let out = label_replace(&l, "dst", "x", "src", "value-(.*)").ok();
        assert_eq!(out, Some(l.clone()));
        // empty result deletes dst
        let out = label_replace(&l, "dst", "", "src", "(.*)").ok();
        assert_eq!(out.as_ref().and_then(|o| o.get("dst")), None);
        // named groups and ${1}
        let out = label_replace(
            &l,
            "new",
            "${1}-$name",
            "src",
            "(source)-(?P<name>value)-10",
        )
        .ok();
        assert_eq!(
            out.as_ref().and_then(|o| o.get("new")),
            Some("source-value")
        );
        // absent source label matches as ""
        let out = label_replace(&l, "new", "empty", "missing", "").ok();
        assert_eq!(out.as_ref().and_then(|o| o.get("new")), Some("empty"));
        let err = label_replace(&l, "x", "$1", "a", "(")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("invalid regular expression in label_replace(): (")
        );
        let err = label_replace(&l, "1x", "$1", "a", ".*")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("invalid destination label name in label_replace(): 1x")
        );
    }

    #[test]
    fn label_join_as_prometheus() {
        let l = labels(&[
            ("__name__", "up"),
            ("src", "a"),
            ("src1", "b"),
            ("src2", "c"),
        ]);
        let out = label_join(&l, "dst", "-", &["src", "src1", "src2"]).ok();
        assert_eq!(out.as_ref().and_then(|o| o.get("dst")), Some("a-b-c"));
        let out = label_join(&l, "dst", "-", &["missing", "src"]).ok();
        assert_eq!(out.as_ref().and_then(|o| o.get("dst")), Some("-a"));
        let out = label_join(&l, "src", "", &["missing"]).ok();
        assert_eq!(out.as_ref().and_then(|o| o.get("src")), None);
        let err = label_join(&l, "1x", "-", &["a"])
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("invalid destination label name in label_join(): 1x")
        );
        let err = label_join(&l, "x", "-", &["1a"])
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("invalid source label name in label_join(): 1a")
        );
    }

    #[test]
    fn metric_name_dropping() {
        assert!(drops_metric_name("rate"));
        assert!(drops_metric_name("present_over_time"));
        assert!(drops_metric_name("abs"));
        assert!(drops_metric_name("timestamp"));
        assert!(!drops_metric_name("last_over_time"));
        assert!(!drops_metric_name("label_replace"));
        assert!(!drops_metric_name("sort_desc"));
    }
}
