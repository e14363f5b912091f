//! Reading the last stored value of every derived series at start-up, so the counters
//! continue rather than restart at zero. A restart at zero would be a counter reset, which
//! PromQL survives, except that a restarted counter climbing back above its old value before
//! the next sample hides the increase (5 before, 7 after a restart reads as +2, not +7).
//!
//! Memory stays bounded whatever the history holds: one `select` reads the last few minutes of
//! all derived series (a busy series has a few thousand samples there); the series not seen in
//! that window are read one at a time, over windows widening back in time (an hour, a day, then
//! up to `restore_lookback`), stopping at the first window that has a sample. Staleness
//! markers and NaNs are not values; a marker after the last value says the series had gone
//! stale (so it is not written again until new spans come).

use std::collections::HashMap;
use std::time::Duration;

use store::{LabelMatcher, Labels, MatchOp, MetricsQuerier, Sample};

/// The `__name__` pattern of every derived series.
pub(crate) const DERIVED_NAMES: &str = "traces_(spanmetrics|service_graph)_.+";

/// Windows read for series missing from the recent one, each back from now.
const WINDOWS: [Duration; 2] = [Duration::from_secs(3600), Duration::from_secs(24 * 3600)];

/// The first window, read for all series at once.
const RECENT: Duration = Duration::from_secs(10 * 60);

/// Derived series may be stamped a little ahead of this clock (a clock step back).
const FUTURE_SLACK_MS: i64 = 3_600_000;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What is known of a stored derived series at start-up.
#[derive(Clone, Debug, PartialEq)]
pub struct Restored {
    pub labels: Labels,
    /// Its last value (the last sample that is a number).
    pub value: Sample,
    /// The time of its last sample of any kind (a staleness marker may follow the value).
    pub last_ms: i64,
    /// A staleness marker follows the value: the series had gone stale.
    pub stale: bool,
}

/// A marker seen after the last value: its time.
type Marker = Option<i64>;

/// The last value of a series, with the marker after it if any.
fn last_value(samples: &[Sample]) -> Option<(Sample, Marker)> {
    let i = samples.iter().rposition(|s| !s.value.is_nan())?;
    let marker = samples[i + 1..].last().map(|s| s.timestamp_ms);
    Some((samples[i], marker))
}

fn restored(labels: Labels, value: Sample, marker: Marker) -> Restored {
    Restored {
        labels,
        value,
        last_ms: marker.unwrap_or(value.timestamp_ms).max(value.timestamp_ms),
        stale: marker.is_some(),
    }
}

/// The last stored value of each derived series with samples in the last `lookback`.
pub fn latest_values(
    querier: &dyn MetricsQuerier,
    now_ms: i64,
    lookback: Duration,
) -> store::Result<Vec<Restored>> {
    latest_values_of(querier, DERIVED_NAMES, now_ms, lookback)
}

/// The last stored value of each series whose name matches `names` (a regex) with samples in
/// the last `lookback` (also used for the log-based metric).
pub fn latest_values_of(
    querier: &dyn MetricsQuerier,
    names: &str,
    now_ms: i64,
    lookback: Duration,
) -> store::Result<Vec<Restored>> {
    let name = LabelMatcher::new("__name__", MatchOp::RegexMatch, names)?;
    let maxt = now_ms.saturating_add(FUTURE_SLACK_MS);
    let mint = now_ms.saturating_sub(ms(lookback));
    let all = querier.series(&[vec![name.clone()]], mint, maxt)?;
    let recent_start = now_ms.saturating_sub(ms(RECENT)).max(mint);
    let mut found: HashMap<Labels, Restored> = HashMap::with_capacity(all.len());
    // series whose recent samples are all markers: the marker, for when the value is found
    let mut markers: HashMap<Labels, i64> = HashMap::new();
    for series in querier.select(std::slice::from_ref(&name), recent_start, maxt)? {
        match last_value(&series.samples) {
            Some((value, marker)) => {
                let r = restored(series.labels.clone(), value, marker);
                found.insert(series.labels, r);
            }
            None => {
                if let Some(last) = series.samples.last() {
                    markers.insert(series.labels, last.timestamp_ms);
                }
            }
        }
    }
    for labels in all {
        if found.contains_key(&labels) {
            continue;
        }
        let matchers = labels
            .iter()
            .map(|l| LabelMatcher::new(l.name.as_str(), MatchOp::Equal, l.value.as_str()))
            .collect::<store::Result<Vec<_>>>()?;
        let mut hi = recent_start.saturating_sub(1);
        let starts = WINDOWS
            .iter()
            .map(|w| now_ms.saturating_sub(ms(*w)).max(mint))
            .chain([mint]);
        for lo in starts {
            if lo > hi {
                continue;
            }
            let last = querier
                .select(&matchers, lo, hi)?
                .into_iter()
                // equality matchers also match series with more labels
                .filter(|s| s.labels == labels)
                .find_map(|s| last_value(&s.samples));
            if let Some((value, marker)) = last {
                let marker = markers.get(&labels).copied().or(marker);
                let r = restored(labels.clone(), value, marker);
                found.insert(labels, r);
                break;
            }
            hi = lo.saturating_sub(1);
        }
    }
    Ok(found.into_values().collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use store::model::stale_nan;
    use store::testing::MemQuerier;

    const NOW: i64 = 1_700_000_000_000;
    const HOUR: i64 = 3_600_000;

    #[test]
    fn the_last_number_of_each_derived_series_over_all_windows() {
        let mut q = MemQuerier::default();
        let busy = Labels::from_pairs([
            ("__name__", "traces_spanmetrics_calls_total"),
            ("service", "a"),
        ]);
        let quiet = Labels::from_pairs([
            ("__name__", "traces_service_graph_request_total"),
            ("client", "a"),
        ]);
        let old = Labels::from_pairs([
            ("__name__", "traces_spanmetrics_latency_sum"),
            ("service", "b"),
        ]);
        let stale = Labels::from_pairs([
            ("__name__", "traces_spanmetrics_latency_count"),
            ("service", "c"),
        ]);
        let other = Labels::from_pairs([("__name__", "up"), ("job", "x")]);
        q.series.insert(
            busy.clone(),
            (0..100)
                .map(|i| Sample::new(NOW - 100 + i, i as f64))
                .collect(),
        );
        q.series
            .insert(quiet.clone(), vec![Sample::new(NOW - 2 * HOUR, 7.0)]);
        q.series.insert(
            old.clone(),
            vec![
                Sample::new(NOW - 3 * 24 * HOUR, 1.5),
                Sample::new(NOW - 2 * 24 * HOUR, 2.5),
            ],
        );
        q.series.insert(
            stale.clone(),
            vec![
                Sample::new(NOW - 60_000, 4.0),
                Sample::new(NOW - 30_000, stale_nan()),
            ],
        );
        // its value hours ago, its marker in the recent window
        let long_stale = Labels::from_pairs([
            ("__name__", "traces_spanmetrics_latency_sum"),
            ("service", "d"),
        ]);
        q.series.insert(
            long_stale.clone(),
            vec![
                Sample::new(NOW - 3 * HOUR, 8.0),
                Sample::new(NOW - 60_000, stale_nan()),
            ],
        );
        q.series.insert(other, vec![Sample::new(NOW, 1.0)]);
        let mut got = latest_values(&q, NOW, Duration::from_secs(15 * 24 * 3600)).unwrap();
        got.sort_by(|a, b| a.labels.cmp(&b.labels));
        let live = |labels: &Labels, t: i64, v: f64| Restored {
            labels: labels.clone(),
            value: Sample::new(t, v),
            last_ms: t,
            stale: false,
        };
        let mut want = vec![
            live(&busy, NOW - 1, 99.0),
            live(&quiet, NOW - 2 * HOUR, 7.0),
            live(&old, NOW - 2 * 24 * HOUR, 2.5),
            Restored {
                labels: stale,
                value: Sample::new(NOW - 60_000, 4.0),
                last_ms: NOW - 30_000,
                stale: true,
            },
            Restored {
                labels: long_stale,
                value: Sample::new(NOW - 3 * HOUR, 8.0),
                last_ms: NOW - 60_000,
                stale: true,
            },
        ];
        want.sort_by(|a, b| a.labels.cmp(&b.labels));
        assert_eq!(got, want);
    }

    #[test]
    fn series_older_than_the_lookback_are_not_read() {
        let mut q = MemQuerier::default();
        let old = Labels::from_pairs([
            ("__name__", "traces_spanmetrics_calls_total"),
            ("service", "b"),
        ]);
        q.series
            .insert(old, vec![Sample::new(NOW - 30 * 24 * HOUR, 3.0)]);
        let got = latest_values(&q, NOW, Duration::from_secs(15 * 24 * 3600)).unwrap();
        assert!(got.is_empty(), "{got:?}");
    }
}
