//! Delta-to-cumulative conversion for monotonic sums and explicit-bucket histograms.
//!
//! Prometheus only understands cumulative counters, so delta points are summed per output
//! series (keyed by the converted label set, `__name__` included). A point continues a stream
//! when its `start_time_unix_nano` equals the previous point's `time_unix_nano` (or is 0,
//! meaning "unknown", which SDKs send for contiguous deltas); any other start time, or changed
//! histogram bounds, resets the stream, which PromQL's `rate()` reads as a counter reset. A
//! point whose time is not after the stream's last time is refused as out of order.
//!
//! Memory is bounded: at most `max_series` streams are kept, streams idle for longer than
//! `idle_timeout` are evicted (swept when the map is full and at most once per sweep
//! interval), and when the map is still full a new stream is refused, so the caller can
//! answer with a partial success that says to configure cumulative temporality.
//!
//! State is advanced at conversion time, before the store acknowledges the batch, and every
//! advance is logged in the request's [`DeltaUndo`]. When the store then refuses the whole
//! request (an `Err` from `append`: nothing of the batch was stored, and the client retries),
//! [`DeltaAccumulator::rollback`] restores the previous states, so the retry continues the
//! streams instead of being refused as out of order and its deltas are counted exactly once.
//! A stream that another request advanced in the meantime is left alone: that request's
//! stored cumulative value already includes the rolled-back delta.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use store::Labels;

/// Default bound on accumulated delta streams.
pub const DEFAULT_MAX_SERIES: usize = 100_000;
/// Default time after which an idle stream is forgotten.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Why a delta point could not be accumulated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    #[error("delta point at {time_ns}ns is not after the previous point at {last_ns}ns")]
    OutOfOrder { time_ns: u64, last_ns: u64 },
    #[error(
        "delta accumulator is full ({max} series); configure the exporter for cumulative temporality"
    )]
    Full { max: usize },
}

#[derive(Clone, Debug, PartialEq)]
struct Stream {
    last_time_ns: u64,
    last_seen: Instant,
    value: Accumulated,
}

/// A running cumulative value.
#[derive(Clone, Debug, PartialEq)]
pub enum Accumulated {
    Sum(f64),
    Histogram(HistogramTotals),
}

/// Cumulative histogram state: per-bucket (non-cumulative) counts, count and sum.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramTotals {
    pub bounds: Vec<f64>,
    pub bucket_counts: Vec<u64>,
    pub count: u64,
    pub sum: Option<f64>,
}

/// The streams one request advanced, with their states before it, so that a request the
/// store refused can be undone. Empty (and allocation-free) for requests without delta points.
#[derive(Debug, Default, PartialEq)]
pub struct DeltaUndo {
    entries: Vec<UndoEntry>,
}

#[derive(Debug, PartialEq)]
struct UndoEntry {
    key: Labels,
    /// The stream before the advance; `None` when the advance created it.
    previous: Option<Stream>,
    /// The time the advance set, to recognise a stream nobody advanced since.
    applied_time_ns: u64,
}

impl DeltaUndo {
    /// Number of logged advances.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Bounded per-series accumulator; shared by all requests of one server.
#[derive(Debug)]
pub struct DeltaAccumulator {
    max_series: usize,
    idle_timeout: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    streams: HashMap<Labels, Stream>,
    last_sweep: Instant,
}

impl Default for DeltaAccumulator {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SERIES, DEFAULT_IDLE_TIMEOUT)
    }
}

impl DeltaAccumulator {
    pub fn new(max_series: usize, idle_timeout: Duration) -> Self {
        DeltaAccumulator {
            max_series,
            idle_timeout,
            inner: Mutex::new(Inner {
                streams: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }

    /// Number of streams currently held.
    pub fn len(&self) -> usize {
        self.inner.lock().streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a delta sum and returns the cumulative value to store; the advance is logged in
    /// `undo`.
    pub fn add_sum(
        &self,
        key: &Labels,
        start_ns: u64,
        time_ns: u64,
        delta: f64,
        undo: &mut DeltaUndo,
    ) -> Result<f64, DeltaError> {
        let out = self.update(
            key,
            start_ns,
            time_ns,
            undo,
            |prev| match prev {
                Some(Accumulated::Sum(total)) => Some(Accumulated::Sum(total + delta)),
                _ => None,
            },
            || Accumulated::Sum(delta),
        )?;
        match out {
            Accumulated::Sum(v) => Ok(v),
            // update() only ever stores what the closures above produced
            Accumulated::Histogram(_) => Ok(delta),
        }
    }

    /// Adds a delta histogram and returns the cumulative totals to store; the advance is
    /// logged in `undo`.
    pub fn add_histogram(
        &self,
        key: &Labels,
        start_ns: u64,
        time_ns: u64,
        delta: HistogramTotals,
        undo: &mut DeltaUndo,
    ) -> Result<HistogramTotals, DeltaError> {
        let fresh = delta.clone();
        let out = self.update(
            key,
            start_ns,
            time_ns,
            undo,
            |prev| match prev {
                Some(Accumulated::Histogram(h))
                    if h.bounds == delta.bounds
                        && h.bucket_counts.len() == delta.bucket_counts.len() =>
                {
                    Some(Accumulated::Histogram(HistogramTotals {
                        bounds: delta.bounds.clone(),
                        bucket_counts: h
                            .bucket_counts
                            .iter()
                            .zip(&delta.bucket_counts)
                            .map(|(a, b)| a.saturating_add(*b))
                            .collect(),
                        count: h.count.saturating_add(delta.count),
                        sum: match (h.sum, delta.sum) {
                            (Some(a), Some(b)) => Some(a + b),
                            _ => None,
                        },
                    }))
                }
                _ => None,
            },
            || Accumulated::Histogram(fresh),
        )?;
        match out {
            Accumulated::Histogram(h) => Ok(h),
            Accumulated::Sum(_) => Ok(delta),
        }
    }

    /// Core update: `merge` continues an existing stream (returning `None` when the state is
    /// incompatible, which resets), `fresh` starts one.
    fn update(
        &self,
        key: &Labels,
        start_ns: u64,
        time_ns: u64,
        undo: &mut DeltaUndo,
        merge: impl FnOnce(Option<&Accumulated>) -> Option<Accumulated>,
        fresh: impl FnOnce() -> Accumulated,
    ) -> Result<Accumulated, DeltaError> {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        if let Some(stream) = inner.streams.get_mut(key) {
            if time_ns <= stream.last_time_ns {
                return Err(DeltaError::OutOfOrder {
                    time_ns,
                    last_ns: stream.last_time_ns,
                });
            }
            let contiguous = start_ns == 0 || start_ns == stream.last_time_ns;
            let next = if contiguous {
                merge(Some(&stream.value))
            } else {
                None
            };
            let previous = Stream {
                last_time_ns: stream.last_time_ns,
                last_seen: stream.last_seen,
                value: std::mem::replace(&mut stream.value, next.unwrap_or_else(fresh)),
            };
            stream.last_time_ns = time_ns;
            stream.last_seen = now;
            let value = stream.value.clone();
            undo.entries.push(UndoEntry {
                key: key.clone(),
                previous: Some(previous),
                applied_time_ns: time_ns,
            });
            return Ok(value);
        }
        if inner.streams.len() >= self.max_series {
            self.sweep(&mut inner, now);
            if inner.streams.len() >= self.max_series {
                return Err(DeltaError::Full {
                    max: self.max_series,
                });
            }
        }
        let value = fresh();
        inner.streams.insert(
            key.clone(),
            Stream {
                last_time_ns: time_ns,
                last_seen: now,
                value: value.clone(),
            },
        );
        undo.entries.push(UndoEntry {
            key: key.clone(),
            previous: None,
            applied_time_ns: time_ns,
        });
        Ok(value)
    }

    /// Undoes the advances of a request whose batch the store refused, newest first. A
    /// stream advanced since by another request (or evicted) is left as it is.
    pub fn rollback(&self, undo: DeltaUndo) {
        if undo.entries.is_empty() {
            return;
        }
        let mut inner = self.inner.lock();
        for entry in undo.entries.into_iter().rev() {
            let unchanged = inner
                .streams
                .get(&entry.key)
                .is_some_and(|s| s.last_time_ns == entry.applied_time_ns);
            if !unchanged {
                continue;
            }
            match entry.previous {
                Some(previous) => {
                    inner.streams.insert(entry.key, previous);
                }
                None => {
                    inner.streams.remove(&entry.key);
                }
            }
        }
    }

    /// Drops idle streams; throttled so a full map of live streams is not rescanned per point.
    fn sweep(&self, inner: &mut Inner, now: Instant) {
        let min_gap = (self.idle_timeout / 10).max(Duration::from_secs(1));
        if now.duration_since(inner.last_sweep) < min_gap {
            return;
        }
        inner.last_sweep = now;
        let timeout = self.idle_timeout;
        let before = inner.streams.len();
        inner
            .streams
            .retain(|_, s| now.duration_since(s.last_seen) < timeout);
        let evicted = before - inner.streams.len();
        if evicted > 0 {
            tracing::debug!(
                evicted,
                remaining = inner.streams.len(),
                "evicted idle delta streams"
            );
        }
    }

    #[cfg(test)]
    fn age_all(&self, by: Duration) {
        let mut inner = self.inner.lock();
        for s in inner.streams.values_mut() {
            s.last_seen = s.last_seen.checked_sub(by).unwrap_or(s.last_seen);
        }
        inner.last_sweep = inner.last_sweep.checked_sub(by).unwrap_or(inner.last_sweep);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(name: &str) -> Labels {
        Labels::from_pairs([("__name__", name)])
    }

    #[test]
    fn contiguous_deltas_accumulate() {
        let acc = DeltaAccumulator::default();
        let k = key("a_total");
        assert_eq!(
            acc.add_sum(&k, 100, 200, 3.0, &mut DeltaUndo::default()),
            Ok(3.0)
        );
        assert_eq!(
            acc.add_sum(&k, 200, 300, 2.0, &mut DeltaUndo::default()),
            Ok(5.0)
        );
        // start 0 = unknown, treated as contiguous
        assert_eq!(
            acc.add_sum(&k, 0, 400, 1.0, &mut DeltaUndo::default()),
            Ok(6.0)
        );
    }

    #[test]
    fn a_gap_in_start_time_resets_the_stream() {
        let acc = DeltaAccumulator::default();
        let k = key("a_total");
        assert_eq!(
            acc.add_sum(&k, 100, 200, 3.0, &mut DeltaUndo::default()),
            Ok(3.0)
        );
        assert_eq!(
            acc.add_sum(&k, 250, 300, 2.0, &mut DeltaUndo::default()),
            Ok(2.0)
        );
    }

    #[test]
    fn out_of_order_and_repeated_points_are_refused() {
        let acc = DeltaAccumulator::default();
        let k = key("a_total");
        assert_eq!(
            acc.add_sum(&k, 100, 200, 3.0, &mut DeltaUndo::default()),
            Ok(3.0)
        );
        assert_eq!(
            acc.add_sum(&k, 100, 200, 3.0, &mut DeltaUndo::default()),
            Err(DeltaError::OutOfOrder {
                time_ns: 200,
                last_ns: 200
            })
        );
        assert_eq!(
            acc.add_sum(&k, 200, 300, 1.0, &mut DeltaUndo::default()),
            Ok(4.0)
        );
    }

    #[test]
    fn histograms_accumulate_and_reset_on_new_bounds() {
        let acc = DeltaAccumulator::default();
        let k = key("h");
        let h = |bounds: Vec<f64>, counts: Vec<u64>, sum: f64| HistogramTotals {
            count: counts.iter().sum(),
            bounds,
            bucket_counts: counts,
            sum: Some(sum),
        };
        acc.add_histogram(
            &k,
            1,
            2,
            h(vec![1.0], vec![1, 2], 5.0),
            &mut DeltaUndo::default(),
        )
        .unwrap();
        let got = acc
            .add_histogram(
                &k,
                2,
                3,
                h(vec![1.0], vec![3, 0], 1.5),
                &mut DeltaUndo::default(),
            )
            .unwrap();
        assert_eq!(got, h(vec![1.0], vec![4, 2], 6.5));
        let got = acc
            .add_histogram(
                &k,
                3,
                4,
                h(vec![2.0], vec![1, 1], 2.0),
                &mut DeltaUndo::default(),
            )
            .unwrap();
        assert_eq!(got, h(vec![2.0], vec![1, 1], 2.0));
    }

    #[test]
    fn bounded_with_idle_eviction() {
        let acc = DeltaAccumulator::new(2, Duration::from_secs(60));
        acc.add_sum(&key("a"), 1, 2, 1.0, &mut DeltaUndo::default())
            .unwrap();
        acc.add_sum(&key("b"), 1, 2, 1.0, &mut DeltaUndo::default())
            .unwrap();
        assert_eq!(
            acc.add_sum(&key("c"), 1, 2, 1.0, &mut DeltaUndo::default()),
            Err(DeltaError::Full { max: 2 })
        );
        // existing streams still advance while full
        assert_eq!(
            acc.add_sum(&key("a"), 2, 3, 1.0, &mut DeltaUndo::default()),
            Ok(2.0)
        );
        acc.age_all(Duration::from_secs(120));
        assert_eq!(
            acc.add_sum(&key("c"), 1, 2, 1.0, &mut DeltaUndo::default()),
            Ok(1.0)
        );
        assert_eq!(acc.len(), 1);
    }

    #[test]
    fn rollback_restores_the_streams_a_request_advanced() {
        let acc = DeltaAccumulator::default();
        let (a, b) = (key("a_total"), key("b_total"));
        acc.add_sum(&a, 100, 200, 3.0, &mut DeltaUndo::default())
            .unwrap();
        let mut undo = DeltaUndo::default();
        assert_eq!(acc.add_sum(&a, 200, 300, 2.0, &mut undo), Ok(5.0));
        assert_eq!(acc.add_sum(&a, 300, 400, 1.0, &mut undo), Ok(6.0));
        assert_eq!(acc.add_sum(&b, 100, 200, 7.0, &mut undo), Ok(7.0));
        assert_eq!(undo.len(), 3);
        acc.rollback(undo);
        // `a` is back at 200 (total 3), `b` is forgotten: the retry continues both
        assert_eq!(acc.len(), 1);
        let mut retry = DeltaUndo::default();
        assert_eq!(acc.add_sum(&a, 200, 300, 2.0, &mut retry), Ok(5.0));
        assert_eq!(acc.add_sum(&a, 300, 400, 1.0, &mut retry), Ok(6.0));
        assert_eq!(acc.add_sum(&b, 100, 200, 7.0, &mut retry), Ok(7.0));
    }

    #[test]
    fn rollback_leaves_a_stream_advanced_by_another_request() {
        let acc = DeltaAccumulator::default();
        let k = key("a_total");
        let mut failed = DeltaUndo::default();
        acc.add_sum(&k, 100, 200, 3.0, &mut failed).unwrap();
        acc.add_sum(&k, 200, 300, 2.0, &mut DeltaUndo::default())
            .unwrap();
        acc.rollback(failed);
        assert_eq!(
            acc.add_sum(&k, 300, 400, 1.0, &mut DeltaUndo::default()),
            Ok(6.0)
        );
    }

    #[test]
    fn refused_points_log_nothing() {
        let acc = DeltaAccumulator::new(1, Duration::from_secs(60));
        let k = key("a_total");
        acc.add_sum(&k, 100, 200, 3.0, &mut DeltaUndo::default())
            .unwrap();
        let mut undo = DeltaUndo::default();
        assert!(acc.add_sum(&k, 100, 200, 3.0, &mut undo).is_err());
        assert!(acc.add_sum(&key("b"), 1, 2, 1.0, &mut undo).is_err());
        assert!(undo.is_empty());
    }
}
