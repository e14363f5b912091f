//! Reading the last stored value of every derived series at start-up, so the counters
//! continue rather than restart at zero. A restart at zero would be a counter reset, which
//! PromQL survives, except that a restarted counter climbing back above its old value before
//! the next sample hides the increase (5 before, 7 after a restart reads as +2, not +7).
//!
//! Memory stays bounded whatever the history holds: one `select` reads the last few minutes of
//! all derived series (a busy series has a few thousand samples there); the series not seen in
//! that window are read one at a time, over windows widening back in time (an hour, a day, then
//! up to `restore_lookback`), stopping at the first window that has a sample. Staleness
//! markers and NaNs are skipped.

use std::collections::HashMap;
use std::time::Duration;

use store::{LabelMatcher, Labels, MatchOp, MetricsQuerier, Sample};

/// The `__name__` pattern of every derived series.
const DERIVED_NAMES: &str = "traces_(spanmetrics|service_graph)_.+";

/// Windows read for series missing from the recent one, each back from now.
const WINDOWS: [Duration; 2] = [Duration::from_secs(3600), Duration::from_secs(24 * 3600)];

/// The first window, read for all series at once.
const RECENT: Duration = Duration::from_secs(10 * 60);

/// Derived series may be stamped a little ahead of this clock (a clock step back).
const FUTURE_SLACK_MS: i64 = 3_600_000;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The last value of a series: its last sample that is a number (not a staleness marker).
fn last_value(samples: &[Sample]) -> Option<Sample> {
    samples.iter().rev().find(|s| !s.value.is_nan()).copied()
}

/// The last stored sample of each derived series with samples in the last `lookback`.
pub fn latest_values(
    querier: &dyn MetricsQuerier,
    now_ms: i64,
    lookback: Duration,
) -> store::Result<Vec<(Labels, Sample)>> {
    let name = LabelMatcher::new("__name__", MatchOp::RegexMatch, DERIVED_NAMES)?;
    let maxt = now_ms.saturating_add(FUTURE_SLACK_MS);
    let mint = now_ms.saturating_sub(ms(lookback));
    let all = querier.series(&[vec![name.clone()]], mint, maxt)?;
    let recent_start = now_ms.saturating_sub(ms(RECENT)).max(mint);
    let mut found: HashMap<Labels, Sample> = HashMap::with_capacity(all.len());
    for series in querier.select(std::slice::from_ref(&name), recent_start, maxt)? {
        if let Some(last) = last_value(&series.samples) {
            found.insert(series.labels, last);
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
            if let Some(last) = last {
                found.insert(labels, last);
                break;
            }
            hi = lo.saturating_sub(1);
        }
    }
    Ok(found.into_iter().collect())
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
        q.series.insert(other, vec![Sample::new(NOW, 1.0)]);
        let mut got = latest_values(&q, NOW, Duration::from_secs(15 * 24 * 3600)).unwrap();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let mut want = vec![
            (busy, Sample::new(NOW - 1, 99.0)),
            (quiet, Sample::new(NOW - 2 * HOUR, 7.0)),
            (old, Sample::new(NOW - 2 * 24 * HOUR, 2.5)),
            (stale, Sample::new(NOW - 60_000, 4.0)),
        ];
        want.sort_by(|a, b| a.0.cmp(&b.0));
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
