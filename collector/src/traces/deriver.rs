//! [`Deriver`]: the derived-metrics engine as ingest uses it, with its group-commit flusher.
//!
//! An ingest request, once its spans are durable in the trace store, merges its observations
//! under a short lock ([`Deriver::apply`]), which tells it the flush epoch its changes belong
//! to, and signals the flusher. The flusher waits until `flush_interval` has passed since its
//! previous flush (so requests arriving together share one append, and a busy series gets at
//! most one sample per interval), snapshots the changed series and appends them to the
//! metrics store in one batch stamped with one timestamp, strictly later than the previous
//! flush's. The request is answered only after a flush covering its epoch was stored
//! ([`Deriver::wait_flushed`]): an acknowledged request's derived samples are durable, like
//! its spans.
//!
//! When a flush fails (the metrics store is overloaded or unavailable) its series are put back
//! and the flusher tries again on its next round; waiting requests keep waiting until
//! `ack_timeout`, then answer with the store's error (retryable: 429/503). Edges that complete
//! later (a partner in a later request, or expiry to a virtual node) go out with a later flush.
//!
//! Unchanged series are written again every `heartbeat`, and idle keys get staleness markers
//! after `stale_after` ([`super::state`]): the flusher also wakes when the state says a key is
//! due, and those writes go through the same flushes (same timestamps, same retries).
//!
//! Counters continue across restarts: before the first request is served (and, without
//! requests, as soon as the flusher can), [`Deriver::ready`] reads the last stored value of
//! every derived series ([`super::restore`]) and starts from there. Until the metrics store
//! can answer, requests are refused as unavailable and clients retry.
//!
//! What is not durable: halves waiting for their partner live in memory only, so a crash loses
//! edges that were still waiting (at most `edge_wait` of them). A request refused after its
//! spans were stored (flush timeout) has its derived counts applied anyway and counts them
//! again when the client retries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use store::traces::SpanBatch;
use store::{ErrorKind, MetricsAppender, MetricsQuerier, StoreError};
use tokio::sync::watch;

use super::flusher::{self, now_ms, Flushed, Flusher};
use super::prepare::{prepare, Prepared};
use super::restore::{Restored, DERIVED_NAMES};
use super::state::{DeriveState, Reason};
use super::DeriveConfig;
use crate::telemetry;
use crate::IngestError;

/// How often the flusher wakes without work, to expire waiting halves (sooner when a
/// heartbeat or a staleness marker is due).
const IDLE_TICK: Duration = Duration::from_millis(500);

/// Where flushing stands, watched by waiting requests.
#[derive(Clone, Debug, Default)]
struct FlushStatus {
    /// Every change of epochs `<= flushed` is stored.
    flushed: u64,
    /// The last failed flush: the error's kind and message.
    failure: Option<(ErrorKind, String)>,
    /// The flusher has stopped; nothing more will be flushed.
    closed: bool,
}

/// The derived-metrics engine (see the module docs).
pub struct Deriver {
    cfg: Arc<DeriveConfig>,
    span_les: Vec<String>,
    edge_les: Vec<String>,
    state: Mutex<DeriveState>,
    metrics: Arc<dyn MetricsAppender>,
    flusher: Flusher,
    status: watch::Sender<FlushStatus>,
}

fn store_error(kind: ErrorKind, message: &str) -> IngestError {
    IngestError::Store(match kind {
        ErrorKind::Overloaded => StoreError::Overloaded(message.to_string()),
        _ => StoreError::Unavailable(message.to_string()),
    })
}

impl Deriver {
    /// Validates `cfg` and starts the flusher task (so: call inside a Tokio runtime). The task
    /// ends after [`Deriver::shutdown`], or once the last `Arc` is dropped.
    pub fn start(
        cfg: DeriveConfig,
        metrics: Arc<dyn MetricsAppender>,
        querier: Arc<dyn MetricsQuerier>,
    ) -> Result<Arc<Self>, String> {
        cfg.validate()?;
        let cfg = Arc::new(cfg);
        let deriver = Arc::new(Deriver {
            span_les: cfg.span_les(),
            edge_les: cfg.edge_les(),
            state: Mutex::new(DeriveState::new(cfg.clone())),
            flusher: Flusher::new::<Self>(cfg.flush_interval, cfg.restore_lookback, querier),
            status: watch::channel(FlushStatus::default()).0,
            metrics,
            cfg,
        });
        flusher::spawn(&deriver);
        Ok(deriver)
    }

    pub fn config(&self) -> &DeriveConfig {
        &self.cfg
    }

    /// Restores the counters from the metrics store, once; until that succeeds, every call
    /// fails with the store's error (unavailable while it replays its WAL).
    pub async fn ready(&self) -> Result<(), IngestError> {
        self.flusher.ready(|stored| self.load(stored)).await
    }

    /// A batch's observations; CPU work without locks, for the blocking pool.
    pub fn prepare(&self, batch: &SpanBatch) -> Prepared {
        prepare(batch, &self.cfg)
    }

    /// Merges a request's observations; returns the epoch to wait for, `None` when there was
    /// nothing to derive.
    pub fn apply(&self, prepared: Prepared) -> Option<u64> {
        if prepared.is_empty() {
            return None;
        }
        let epoch = {
            let mut state = self.state.lock();
            let epoch = state.apply(prepared, Instant::now());
            telemetry::DERIVED_SERIES.set(state.series_count() as i64);
            telemetry::SERVICE_GRAPH_PENDING.set(state.pending_edges() as i64);
            epoch
        };
        self.flusher.wake();
        Some(epoch)
    }

    /// Waits until the changes of `epoch` are stored, at most `ack_timeout`.
    pub async fn wait_flushed(&self, epoch: u64) -> Result<(), IngestError> {
        let mut rx = self.status.subscribe();
        let deadline = tokio::time::sleep(self.cfg.ack_timeout);
        tokio::pin!(deadline);
        loop {
            let failure = {
                let status = rx.borrow_and_update();
                if status.flushed >= epoch {
                    return Ok(());
                }
                if status.closed {
                    return Err(IngestError::Store(StoreError::Unavailable(
                        "lookout is shutting down: derived trace metrics were not stored".into(),
                    )));
                }
                status.failure.clone()
            };
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Err(IngestError::Store(StoreError::Unavailable(
                            "the derived metrics flusher stopped".into(),
                        )));
                    }
                }
                _ = &mut deadline => {
                    return Err(match failure {
                        Some((kind, message)) => store_error(kind, &message),
                        None => IngestError::Store(StoreError::Overloaded(format!(
                            "derived trace metrics were not stored within {:?}",
                            self.cfg.ack_timeout
                        ))),
                    });
                }
            }
        }
    }

    /// Stops the flusher after a last flush of everything applied so far. Halves still waiting
    /// for a partner are dropped (logged).
    pub async fn shutdown(&self) {
        self.flusher.shutdown().await;
    }
}

/// The flusher wakes on work, or every [`IDLE_TICK`] to expire halves (see
/// [`super::flusher`]).
impl Flushed for Deriver {
    const WHAT: &'static str = "derived trace metrics";
    const SERIES: &'static str = DERIVED_NAMES;
    const IDLE_TICK: Duration = IDLE_TICK;

    fn flusher(&self) -> &Flusher {
        &self.flusher
    }

    fn load(&self, stored: Vec<Restored>) -> usize {
        self.state.lock().restore(stored)
    }

    fn next_sweep_ms(&self) -> i64 {
        self.state.lock().next_sweep_ms()
    }

    /// One flush: expire waiting halves, snapshot what changed or is due, append it.
    async fn flush_once(&self) {
        let snapshot = {
            let mut state = self.state.lock();
            state.expire(Instant::now());
            telemetry::SERVICE_GRAPH_PENDING.set(state.pending_edges() as i64);
            state.snapshot(now_ms())
        };
        if snapshot.is_empty() {
            self.status
                .send_modify(|s| s.flushed = s.flushed.max(snapshot.epoch));
            return;
        }
        let started = Instant::now();
        let batch = snapshot.to_batch(&self.span_les, &self.edge_les);
        let samples = batch.sample_count();
        let result = self.metrics.append(batch).await;
        telemetry::DERIVED_FLUSH_SECONDS.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(report) => {
                self.state.lock().stored(&snapshot);
                telemetry::DERIVED_SAMPLES.inc_by(report.accepted_samples);
                for (reason, n) in &report.rejected_samples {
                    telemetry::DERIVED_REJECTED
                        .with_label_values(&[reason.as_str()])
                        .inc_by(*n);
                }
                if let Some(first) = &report.first_rejection {
                    tracing::warn!(
                        rejected = report.rejected_total(),
                        first = %first,
                        "the metrics store rejected derived trace samples"
                    );
                }
                tracing::trace!(
                    samples,
                    epoch = snapshot.epoch,
                    heartbeats = snapshot.count(Reason::Heartbeat),
                    stale = snapshot.count(Reason::Stale),
                    "derived trace metrics flushed"
                );
                self.status.send_modify(|s| {
                    s.flushed = s.flushed.max(snapshot.epoch);
                    s.failure = None;
                });
            }
            Err(e) => {
                self.state.lock().requeue(&snapshot);
                telemetry::DERIVED_FLUSH_FAILURES.inc();
                tracing::warn!(error = %e, samples, "storing derived trace metrics failed; retrying");
                let failure = (e.kind(), e.to_string());
                self.status.send_modify(|s| s.failure = Some(failure));
            }
        }
    }

    fn closing(&self) {
        let waiting = self.state.lock().pending_edges();
        if waiting > 0 {
            tracing::info!(
                waiting,
                "dropping service-graph halves still waiting for a partner"
            );
        }
        self.status.send_modify(|s| s.closed = true);
    }
}
