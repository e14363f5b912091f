//! Metrics derived from spans at ingest (DESIGN.md §4), named as Grafana Tempo's
//! metrics-generator names them so its dashboards and rules carry over, and written into the
//! metrics store as ordinary cumulative series.
//!
//! Path of a request's spans: [`Deriver::prepare`] (no lock: span metrics aggregated per key,
//! error classification in [`classify`], edges that need no partner, halves that do; see
//! [`prepare`]) -> [`Deriver::apply`] (short lock: counters in [`state`], pairing in
//! [`graph`]) -> the flusher appends the changed [`series`] -> [`Deriver::wait_flushed`]
//! before the request is acknowledged. [`restore`] reads the stored counters back at start.
//! See [`deriver`] for the durability promises and what they do not cover. The flusher task
//! (`flusher`), the counter tables and their flush bookkeeping ([`state`]) also serve the
//! log-based metric (`crate::logs::metrics`).
//!
//! Like Tempo's metrics-generator (`collection_interval`), every series is written at least
//! once per `heartbeat` even when unchanged, so it has a value at any time (PromQL looks back
//! 5 minutes) and `rate()` over an idle series is 0, not nothing. A key idle for `stale_after`
//! gets a staleness marker and is no longer written until new spans come; see [`state`] for
//! the exact rules, including the extra sample that makes a series' first counts (or the
//! counts after it went stale) visible to `increase()` and to exact window counts.

pub mod classify;
pub mod deriver;
pub(crate) mod flusher;
pub mod graph;
pub mod prepare;
pub mod restore;
pub mod series;
pub mod state;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod test_support;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::time::Duration;

pub use deriver::Deriver;
pub use prepare::Prepared;

/// Tempo's default span-metrics buckets (seconds): 2 ms doubling 14 times, to 16.384 s.
pub const DEFAULT_SPANMETRICS_BUCKETS: [f64; 14] = [
    0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192,
    16.384,
];

/// Tempo's default service-graph buckets (seconds): 100 ms doubling 8 times, to 12.8 s.
pub const DEFAULT_SERVICE_GRAPH_BUCKETS: [f64; 8] = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8];

/// Settings of the derived metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct DeriveConfig {
    /// Least time between two flushes (group commit): a request waits up to this long for
    /// its derived samples to be stored, and a busy series gets at most one sample per
    /// interval.
    pub flush_interval: Duration,
    /// Longest time between two samples of a series that is not stale: unchanged series are
    /// written again with the same values (Tempo's `collection_interval`, 15 s).
    pub heartbeat: Duration,
    /// A key with no new spans for this long gets a staleness marker and is no longer
    /// written (Tempo's `stale_duration`, 15 min); new spans bring it back, its counters
    /// continuing. It stays in memory (and in `max_series`).
    pub stale_after: Duration,
    /// How long a service-graph half waits for its partner before it expires.
    pub edge_wait: Duration,
    /// Most halves waiting at once; more are dropped and counted.
    pub max_pending_edges: usize,
    /// Most span-metrics keys plus edges held; spans of new keys past it are counted in
    /// `lookout_traces_derived_series_dropped_total` and not derived.
    pub max_series: usize,
    /// Longest a request waits for the flush covering it before it is refused (retryable).
    pub ack_timeout: Duration,
    /// How far back the start-up restore looks for the last value of a derived series.
    pub restore_lookback: Duration,
    /// Label values (service, span and node names) are cut to this many bytes.
    pub max_label_value_bytes: usize,
    /// Upper bounds of `traces_spanmetrics_latency_bucket`, ascending, without `+Inf`.
    pub spanmetrics_buckets: Vec<f64>,
    /// Upper bounds of the service-graph histograms, ascending, without `+Inf`.
    pub service_graph_buckets: Vec<f64>,
}

impl Default for DeriveConfig {
    fn default() -> Self {
        DeriveConfig {
            flush_interval: Duration::from_millis(100),
            heartbeat: Duration::from_secs(15),
            stale_after: Duration::from_secs(15 * 60),
            edge_wait: Duration::from_secs(10),
            max_pending_edges: 100_000,
            max_series: 20_000,
            ack_timeout: Duration::from_secs(10),
            restore_lookback: Duration::from_secs(15 * 24 * 3600),
            max_label_value_bytes: 1024,
            spanmetrics_buckets: DEFAULT_SPANMETRICS_BUCKETS.to_vec(),
            service_graph_buckets: DEFAULT_SERVICE_GRAPH_BUCKETS.to_vec(),
        }
    }
}

impl DeriveConfig {
    /// Every problem at once, one per line.
    pub fn validate(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        for (name, buckets) in [
            ("spanmetrics_buckets", &self.spanmetrics_buckets),
            ("service_graph_buckets", &self.service_graph_buckets),
        ] {
            if buckets.iter().any(|b| !b.is_finite()) {
                errors.push(format!("{name}: bounds must be finite (+Inf is implied)"));
            }
            if buckets.windows(2).any(|w| w[0] >= w[1]) {
                errors.push(format!("{name}: bounds must be strictly ascending"));
            }
        }
        errors.extend(flusher::timing_errors(
            "",
            self.flush_interval,
            self.heartbeat,
            self.stale_after,
        ));
        if self.ack_timeout.is_zero() {
            errors.push("ack_timeout must be more than 0".to_string());
        }
        if self.max_label_value_bytes == 0 {
            errors.push("max_label_value_bytes must be more than 0".to_string());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }

    /// `le` values of the span-metrics buckets, `+Inf` last.
    pub fn span_les(&self) -> Vec<String> {
        les(&self.spanmetrics_buckets)
    }

    /// `le` values of the service-graph buckets, `+Inf` last.
    pub fn edge_les(&self) -> Vec<String> {
        les(&self.service_graph_buckets)
    }
}

fn les(bounds: &[f64]) -> Vec<String> {
    bounds
        .iter()
        .copied()
        .chain([f64::INFINITY])
        .map(series::le_label)
        .collect()
}
