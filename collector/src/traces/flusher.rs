//! The flusher task both sets of counters written into the metrics store run: the metrics
//! derived from spans ([`super::Deriver`]) and the log-record counters
//! ([`crate::logs::LogMetrics`]).
//!
//! [`Flusher`] holds what they share: the wake-up and stop signals, the pacing, and the
//! one-time restore of the counters from the metrics store ([`super::restore`]). The task
//! ([`spawn`]) wakes on work, or when a heartbeat or staleness marker is due (at most
//! `idle_tick` apart); keeps `flush_interval` between two flushes, so work arriving together
//! shares one append and a busy series gets at most one sample per interval; restores the
//! counters first while that has not succeeded (so the series of the previous process keep
//! their heartbeats after a quiet restart); and flushes once more before it stops. What a flush
//! does, and what becomes of the work waiting on it, is the owner's ([`Flushed`]).

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use store::{MetricsQuerier, StoreError};
use tokio::sync::{watch, Notify, OnceCell};

use super::restore::{latest_values_of, Restored};
use crate::IngestError;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The checks of the flush timings every flushed config has, each message starting with
/// `prefix`.
pub(crate) fn timing_errors(
    prefix: &str,
    flush_interval: Duration,
    heartbeat: Duration,
    stale_after: Duration,
) -> Vec<String> {
    let mut errors = Vec::new();
    if flush_interval.is_zero() {
        errors.push(format!("{prefix}flush_interval must be more than 0"));
    }
    if heartbeat <= flush_interval {
        errors.push(format!(
            "{prefix}heartbeat must be more than flush_interval"
        ));
    }
    if stale_after <= heartbeat {
        errors.push(format!("{prefix}stale_after must be more than heartbeat"));
    }
    errors
}

/// The flusher's signals and the restore (see the module docs).
pub(crate) struct Flusher {
    /// The counters, in log lines ([`Flushed::WHAT`]).
    what: &'static str,
    /// The `__name__` pattern of the series restored ([`Flushed::SERIES`]).
    series: &'static str,
    idle_tick: Duration,
    /// Least time between two flushes.
    flush_interval: Duration,
    /// How far back the restore looks for a series' last value.
    restore_lookback: Duration,
    querier: Arc<dyn MetricsQuerier>,
    restored: OnceCell<()>,
    work: Notify,
    stop: watch::Sender<bool>,
    /// Set once the last flush is done.
    closed: watch::Sender<bool>,
}

impl Flusher {
    /// The flusher of a `T`.
    pub(crate) fn new<T: Flushed>(
        flush_interval: Duration,
        restore_lookback: Duration,
        querier: Arc<dyn MetricsQuerier>,
    ) -> Self {
        Flusher {
            what: T::WHAT,
            series: T::SERIES,
            idle_tick: T::IDLE_TICK,
            flush_interval,
            restore_lookback,
            querier,
            restored: OnceCell::new(),
            work: Notify::new(),
            stop: watch::channel(false).0,
            closed: watch::channel(false).0,
        }
    }

    /// Restores the counters, once: reads the last stored value of every series (on the
    /// blocking pool) and hands them to `load`, which returns the keys it loaded. Until that
    /// succeeds every call fails with the store's error (unavailable while it replays its WAL).
    pub(crate) async fn ready(
        &self,
        load: impl FnOnce(Vec<Restored>) -> usize + Send,
    ) -> Result<(), IngestError> {
        self.restored
            .get_or_try_init(|| async {
                let querier = Arc::clone(&self.querier);
                let (what, series, lookback) = (self.what, self.series, self.restore_lookback);
                let started = Instant::now();
                let stored = tokio::task::spawn_blocking(move || {
                    latest_values_of(querier.as_ref(), series, now_ms(), lookback)
                })
                .await
                .map_err(|e| {
                    IngestError::Store(StoreError::Unavailable(format!(
                        "restoring {what} failed: {e}"
                    )))
                })??;
                let series = stored.len();
                let keys = load(stored);
                tracing::info!(
                    series,
                    keys,
                    ms = started.elapsed().as_millis() as u64,
                    "{what} restored"
                );
                Ok::<(), IngestError>(())
            })
            .await
            .map(|_| ())
    }

    /// Whether the restore succeeded.
    pub(crate) fn restored(&self) -> bool {
        self.restored.get().is_some()
    }

    /// There is work to flush.
    pub(crate) fn wake(&self) {
        self.work.notify_one();
    }

    /// Stops the task after a last flush, and waits until it is done.
    pub(crate) async fn shutdown(&self) {
        let _ = self.stop.send(true);
        self.work.notify_one();
        let mut rx = self.closed.subscribe();
        let _ = rx.wait_for(|closed| *closed).await;
    }

    /// How long the task may sleep without work: until `next_sweep_ms` (when a heartbeat or
    /// marker is due), at most `idle_tick`.
    fn idle_for(&self, next_sweep_ms: i64) -> Duration {
        let wait = next_sweep_ms.saturating_sub(now_ms()).max(0);
        Duration::from_millis(u64::try_from(wait).unwrap_or(0)).min(self.idle_tick)
    }
}

/// The owner of a [`Flusher`]: what one flush does.
pub(crate) trait Flushed: Send + Sync + 'static {
    /// The counters, in log lines (`derived trace metrics`).
    const WHAT: &'static str;
    /// The `__name__` pattern (a regex) of the series restored at start.
    const SERIES: &'static str;
    /// Longest sleep without work.
    const IDLE_TICK: Duration;

    fn flusher(&self) -> &Flusher;

    /// Loads the restored values of the series into the counters (for [`Flusher::ready`]);
    /// returns the keys loaded.
    fn load(&self, stored: Vec<Restored>) -> usize;

    /// When the next snapshot may have keys due without any change.
    fn next_sweep_ms(&self) -> i64;

    /// One flush: snapshot what changed or is due, append it.
    fn flush_once(&self) -> impl Future<Output = ()> + Send;

    /// After the last flush, before [`Flusher::shutdown`] returns.
    fn closing(&self) {}
}

/// Starts the flusher task of `owner` (so: call inside a Tokio runtime). It ends after
/// [`Flusher::shutdown`], or once the last `Arc` is dropped.
pub(crate) fn spawn<T: Flushed>(owner: &Arc<T>) {
    tokio::spawn(run(Arc::downgrade(owner)));
}

async fn run<T: Flushed>(owner: Weak<T>) {
    let mut next_flush = tokio::time::Instant::now();
    loop {
        let Some(o) = owner.upgrade() else {
            return;
        };
        let f = o.flusher();
        let mut stop = f.stop.subscribe();
        if *stop.borrow_and_update() {
            break;
        }
        if !f.restored() {
            // restored without waiting for a first request, so the series of the previous
            // process keep their heartbeats (and get their markers) after a quiet restart;
            // while the metrics store cannot answer yet this is tried again each round
            let _ = f.ready(|stored| o.load(stored)).await;
        }
        let idle = f.idle_for(o.next_sweep_ms());
        tokio::select! {
            _ = f.work.notified() => {}
            _ = tokio::time::sleep(idle) => {}
            _ = stop.changed() => {}
        }
        if !*f.stop.borrow() {
            // group commit: work arriving until then shares this flush
            tokio::select! {
                _ = tokio::time::sleep_until(next_flush) => {}
                _ = stop.changed() => {}
            }
        }
        next_flush = tokio::time::Instant::now() + f.flush_interval;
        o.flush_once().await;
    }
    if let Some(o) = owner.upgrade() {
        // a last flush for work that came after the loop's
        o.flush_once().await;
        o.closing();
        o.flusher().closed.send_replace(true);
    }
}
