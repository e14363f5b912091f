//! The log-based metric: `lookout_log_records_total{service, severity}`, a counter of the log
//! records the log store acknowledged, per service and severity range (`Severity::as_str`),
//! written into the metrics store as an ordinary series so PromQL, dashboards and alert rules
//! use it (`sum by (service) (rate(lookout_log_records_total{severity="error"}[5m]))`).
//!
//! It follows the rules of the metrics derived from spans, and keeps its counters in the same
//! [`Table`] ([`crate::traces::state`], where the rules are spelled out):
//! - every series is written at least once per `heartbeat` (15 s) while it is active, so it
//!   has a value at any time and `rate()` over a quiet service is 0, not nothing;
//! - a pair with no records for `stale_after` (15 min) gets a staleness marker and is no
//!   longer written until records come again, its counter continuing;
//! - the first counts of a series (and those after it went stale or after a restart) are
//!   written with the value before them one millisecond earlier, so `increase()` sees them;
//! - counters are restored from the metrics store at start ([`crate::traces::restore`]), so a
//!   restart does not reset them.
//!
//! Unlike span metrics, a log push does not wait for the flush that stores its counts: the
//! records are durable once the log store acknowledges them, and waiting would add a flush
//! interval to every push and, when the metrics store refuses, make clients resend (and the
//! log store keep twice) records already stored. What that costs: counts of the last
//! `flush_interval` before a crash (`kill -9`) are lost; a graceful stop flushes them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use store::logs::{LogRecord, Severity};
use store::model::{stale_nan, METRIC_NAME_LABEL};
use store::{
    Label, Labels, MetricBatch, MetricMetadata, MetricType, MetricsAppender, MetricsQuerier,
    Sample, Series,
};

use super::telemetry;
use crate::otlp::traces::convert::truncate_utf8;
use crate::traces::flusher::{self, now_ms, timing_errors, Flushed, Flusher};
use crate::traces::restore::Restored;
use crate::traces::state::{FlushClock, Item, Reason, Table};
use crate::IngestError;

/// The metric's name.
pub const LOG_RECORDS_TOTAL: &str = "lookout_log_records_total";

/// How often the flusher wakes without work, to write heartbeats and markers.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Settings of the log-based metric.
#[derive(Clone, Debug, PartialEq)]
pub struct LogMetricsConfig {
    /// Least time between two flushes: a busy series gets at most one sample per interval.
    pub flush_interval: Duration,
    /// Longest time between two samples of a series that is not stale.
    pub heartbeat: Duration,
    /// A pair with no records for this long gets a staleness marker.
    pub stale_after: Duration,
    /// How far back the start-up restore looks for a series' last value.
    pub restore_lookback: Duration,
    /// Most service/severity pairs held; records of new pairs past it are not counted.
    pub max_series: usize,
    /// Service names are cut to this many bytes in the label.
    pub max_label_value_bytes: usize,
}

impl Default for LogMetricsConfig {
    fn default() -> Self {
        LogMetricsConfig {
            flush_interval: Duration::from_secs(1),
            heartbeat: Duration::from_secs(15),
            stale_after: Duration::from_secs(15 * 60),
            restore_lookback: Duration::from_secs(15 * 24 * 3600),
            max_series: 10_000,
            max_label_value_bytes: 1024,
        }
    }
}

impl LogMetricsConfig {
    /// Every problem at once, one per line.
    pub fn validate(&self) -> Result<(), String> {
        let mut errors = timing_errors(
            "log metrics ",
            self.flush_interval,
            self.heartbeat,
            self.stale_after,
        );
        if self.max_label_value_bytes == 0 {
            errors.push("log metrics max_label_value_bytes must be more than 0".to_string());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }
}

/// One series of the metric.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogKey {
    pub service: String,
    pub severity: Severity,
}

impl LogKey {
    fn labels(&self) -> Labels {
        Labels::new(vec![
            Label::new(METRIC_NAME_LABEL, LOG_RECORDS_TOTAL),
            Label::new("service", self.service.as_str()),
            Label::new("severity", self.severity.as_str()),
        ])
    }

    /// The key a stored series holds; `None` for a series this module would not write.
    fn parse(labels: &Labels) -> Option<LogKey> {
        if labels.metric_name() != Some(LOG_RECORDS_TOTAL) || labels.len() != 3 {
            return None;
        }
        let service = labels.get("service")?;
        let severity = labels.get("severity")?;
        let severity = Severity::ALL.into_iter().find(|s| s.as_str() == severity)?;
        Some(LogKey {
            service: service.to_string(),
            severity,
        })
    }
}

/// Records per key in a batch, before they are merged.
pub fn count_records<'a>(
    records: impl IntoIterator<Item = &'a LogRecord>,
    max_label_value_bytes: usize,
) -> HashMap<LogKey, u64> {
    let mut out: HashMap<LogKey, u64> = HashMap::new();
    // records of one push mostly share a service: look it up once per run
    let mut last: Option<(&str, Severity, LogKey)> = None;
    for r in records {
        let severity = Severity::from_number(r.severity_number);
        let key = match &last {
            Some((service, s, key)) if *service == r.service && *s == severity => key.clone(),
            _ => {
                let mut service = r.service.clone();
                truncate_utf8(&mut service, max_label_value_bytes);
                let key = LogKey { service, severity };
                last = Some((r.service.as_str(), severity, key.clone()));
                key
            }
        };
        *out.entry(key).or_default() += 1;
    }
    out
}

/// The counters and the flush bookkeeping, behind one lock.
pub struct LogCountState {
    cfg: Arc<LogMetricsConfig>,
    table: Table<LogKey, f64>,
    clock: FlushClock,
}

/// The keys of one flush, with their values at the snapshot.
pub struct Snapshot {
    pub timestamp_ms: i64,
    items: Vec<Item<LogKey, f64>>,
    with_metadata: bool,
}

impl Snapshot {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The metric batch to append.
    pub fn to_batch(&self) -> MetricBatch {
        let ts = self.timestamp_ms;
        let series = self
            .items
            .iter()
            .map(|item| {
                let samples = match (item.reason, &item.prior) {
                    (Reason::Stale, _) => vec![Sample::new(ts, stale_nan())],
                    (_, Some(prior)) => vec![
                        Sample::new(ts.saturating_sub(1), *prior),
                        Sample::new(ts, item.values),
                    ],
                    (_, None) => vec![Sample::new(ts, item.values)],
                };
                Series {
                    labels: item.key.labels(),
                    samples,
                }
            })
            .collect();
        let metadata = if self.with_metadata {
            vec![MetricMetadata {
                metric_family: LOG_RECORDS_TOTAL.to_string(),
                metric_type: MetricType::Counter,
                help: "Log records stored, by service and severity range.".to_string(),
                unit: String::new(),
            }]
        } else {
            Vec::new()
        };
        MetricBatch { series, metadata }
    }
}

impl LogCountState {
    pub fn new(cfg: Arc<LogMetricsConfig>) -> Self {
        let clock = FlushClock::new(cfg.flush_interval, cfg.heartbeat, cfg.stale_after);
        LogCountState {
            cfg,
            table: Table::new(),
            clock,
        }
    }

    pub fn series_count(&self) -> usize {
        self.table.len()
    }

    /// Adds a batch's counts; returns the records not counted for want of room.
    pub fn add(&mut self, counts: HashMap<LogKey, u64>) -> u64 {
        let mut dropped = 0;
        for (key, n) in counts {
            let room = self.table.len() < self.cfg.max_series;
            match self.table.entry(key, room, || 0.0) {
                Some(i) => {
                    if let Some(v) = self.table.change(i) {
                        *v += n as f64;
                    }
                }
                None => dropped += n,
            }
        }
        dropped
    }

    /// The value of a key (tests and debugging).
    pub fn value(&self, key: &LogKey) -> Option<f64> {
        self.table.get(key).copied()
    }

    pub fn next_sweep_ms(&self) -> i64 {
        self.clock.next_sweep_ms()
    }

    /// The changed keys and those due at `now_ms`, with a timestamp later than any before.
    pub fn snapshot(&mut self, now_ms: i64) -> Snapshot {
        let timestamp_ms = self.clock.timestamp(now_ms, self.table.any_prior());
        let mut items = self.table.take_changed();
        self.clock
            .sweep_if_due(timestamp_ms, |ts, heartbeat, stale_after| {
                let sweep = self.table.sweep(ts, heartbeat, stale_after);
                items.extend(sweep.items);
                sweep.next_due_ms
            });
        let with_metadata = self.clock.with_metadata(!items.is_empty());
        Snapshot {
            timestamp_ms,
            items,
            with_metadata,
        }
    }

    /// The snapshot was stored.
    pub fn stored(&mut self, snapshot: &Snapshot) {
        let ts = snapshot.timestamp_ms;
        self.clock
            .stored(snapshot.with_metadata, |heartbeat, stale_after| {
                self.table
                    .stored(&snapshot.items, ts, heartbeat, stale_after)
            });
    }

    /// The snapshot was not stored: its changes go with the next one, its due keys are due
    /// again shortly.
    pub fn requeue(&mut self, snapshot: &Snapshot) {
        self.table.requeue(&snapshot.items);
        let had_due = snapshot.items.iter().any(|i| i.reason != Reason::Changed);
        self.clock.requeued(snapshot.timestamp_ms, had_due);
    }

    /// Loads the last stored values (see [`crate::traces::state::DeriveState::restore`] for
    /// the rules); returns the keys loaded.
    pub fn restore(&mut self, stored: Vec<Restored>) -> usize {
        let before = self.table.len();
        for r in stored {
            self.clock.restored(r.last_ms);
            let Some(key) = LogKey::parse(&r.labels) else {
                continue;
            };
            let room = self.table.len() < self.cfg.max_series;
            let Some(i) = self.table.entry(key, room, || 0.0) else {
                continue;
            };
            if let Some(value) = self.table.restored(i, &r) {
                *value = r.value.value;
            }
        }
        self.clock.sweep_next();
        self.table.len() - before
    }
}

/// The metric as ingest uses it: counts merged under a short lock, a flusher task appending
/// them (see the module docs).
pub struct LogMetrics {
    cfg: Arc<LogMetricsConfig>,
    state: Mutex<LogCountState>,
    metrics: Arc<dyn MetricsAppender>,
    flusher: Flusher,
}

impl LogMetrics {
    /// Validates `cfg` and starts the flusher task (so: call inside a Tokio runtime). The task
    /// ends after [`LogMetrics::shutdown`], or once the last `Arc` is dropped.
    pub fn start(
        cfg: LogMetricsConfig,
        metrics: Arc<dyn MetricsAppender>,
        querier: Arc<dyn MetricsQuerier>,
    ) -> Result<Arc<Self>, String> {
        cfg.validate()?;
        let cfg = Arc::new(cfg);
        let this = Arc::new(LogMetrics {
            state: Mutex::new(LogCountState::new(cfg.clone())),
            flusher: Flusher::new::<Self>(cfg.flush_interval, cfg.restore_lookback, querier),
            metrics,
            cfg,
        });
        flusher::spawn(&this);
        Ok(this)
    }

    pub fn config(&self) -> &LogMetricsConfig {
        &self.cfg
    }

    /// Restores the counters from the metrics store, once; until that succeeds every call
    /// fails with the store's error (unavailable while it replays its WAL), and log pushes
    /// are refused with it, so no count is lost or counted twice.
    pub async fn ready(&self) -> Result<(), IngestError> {
        self.flusher.ready(|stored| self.load(stored)).await
    }

    /// Adds the counts ([`count_records`]) of records the log store acknowledged.
    pub fn add_counts(&self, counts: HashMap<LogKey, u64>) {
        if counts.is_empty() {
            return;
        }
        let dropped = {
            let mut state = self.state.lock();
            let dropped = state.add(counts);
            telemetry::METRICS_SERIES.set(state.series_count() as i64);
            dropped
        };
        if dropped > 0 {
            telemetry::METRICS_SERIES_DROPPED.inc_by(dropped);
        }
        self.flusher.wake();
    }

    /// The current value of a key (tests and debugging).
    pub fn value(&self, key: &LogKey) -> Option<f64> {
        self.state.lock().value(key)
    }

    /// Stops the flusher after a last flush of everything counted so far.
    pub async fn shutdown(&self) {
        self.flusher.shutdown().await;
    }
}

/// The flusher wakes on work, or when a heartbeat or marker is due (see
/// [`crate::traces::flusher`]).
impl Flushed for LogMetrics {
    const WHAT: &'static str = "log record counters";
    const SERIES: &'static str = LOG_RECORDS_TOTAL;
    const IDLE_TICK: Duration = IDLE_TICK;

    fn flusher(&self) -> &Flusher {
        &self.flusher
    }

    fn load(&self, stored: Vec<Restored>) -> usize {
        let mut state = self.state.lock();
        let keys = state.restore(stored);
        telemetry::METRICS_SERIES.set(state.series_count() as i64);
        keys
    }

    fn next_sweep_ms(&self) -> i64 {
        self.state.lock().next_sweep_ms()
    }

    /// One flush: snapshot what changed or is due, append it.
    async fn flush_once(&self) {
        if !self.flusher.restored() {
            // nothing is counted before the restore, and heartbeats need its values
            return;
        }
        let snapshot = self.state.lock().snapshot(now_ms());
        if snapshot.is_empty() {
            return;
        }
        let started = Instant::now();
        let batch = snapshot.to_batch();
        let samples = batch.sample_count();
        let result = self.metrics.append(batch).await;
        telemetry::METRICS_FLUSH_SECONDS.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(report) => {
                self.state.lock().stored(&snapshot);
                if let Some(first) = &report.first_rejection {
                    tracing::warn!(
                        rejected = report.rejected_total(),
                        first = %first,
                        "the metrics store rejected lookout_log_records_total samples"
                    );
                }
                tracing::trace!(samples, "log record counters flushed");
            }
            Err(e) => {
                self.state.lock().requeue(&snapshot);
                telemetry::METRICS_FLUSH_FAILURES.inc();
                tracing::warn!(error = %e, samples, "storing log record counters failed; retrying");
            }
        }
    }
}
