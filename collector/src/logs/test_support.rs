//! Test doubles for log ingest: a recording log store with failure modes, and a
//! [`LogIngest`] over it and an in-memory metrics store.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use store::logs::{LogAppendReport, LogBatch, LogRecord, LogsAppender};

use super::{LogIngest, LogLimits, LogMetricsConfig};
pub use crate::traces::test_support::Mode;
use crate::traces::test_support::{Events, MemMetrics, ModeCell};

/// A log store that records what it was given; [`Mode::RejectOne`] stores all but the first
/// record, reported as too old.
pub struct RecordingLogs {
    mode: ModeCell,
    pub batches: Mutex<Vec<LogBatch>>,
}

impl RecordingLogs {
    pub fn new(mode: Mode) -> Arc<Self> {
        Arc::new(RecordingLogs {
            mode: ModeCell::new(mode),
            batches: Mutex::new(Vec::new()),
        })
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.set(mode);
    }

    /// Every stored record, in order.
    pub fn records(&self) -> Vec<LogRecord> {
        self.batches
            .lock()
            .iter()
            .flat_map(|b| b.records.iter().cloned())
            .collect()
    }

    /// The stored bodies, in order.
    pub fn bodies(&self) -> Vec<String> {
        self.records().into_iter().map(|r| r.body).collect()
    }
}

#[async_trait]
impl LogsAppender for RecordingLogs {
    async fn append_logs(&self, mut batch: LogBatch) -> store::Result<LogAppendReport> {
        let mode = self.mode.get();
        if let Some(e) = mode.error("log wal") {
            return Err(e);
        }
        let mut report = LogAppendReport::default();
        match mode {
            Mode::RejectOne if !batch.records.is_empty() => {
                batch.records.remove(0);
                report.rejected_records = 1;
                report.first_rejection = Some("record time 1 is older than the retention".into());
            }
            Mode::RejectAll => {
                report.rejected_records = batch.records.len() as u64;
                report.first_rejection = Some("record too old".into());
                batch.records.clear();
            }
            _ => {}
        }
        report.accepted_records = batch.records.len() as u64;
        self.batches.lock().push(batch);
        Ok(report)
    }

    /// As the log store: overloaded or unavailable refuses before anything is decoded.
    fn check_accepting(&self) -> store::Result<()> {
        match self.mode.get().error("log wal") {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Log ingest over recording stores.
pub struct Setup {
    pub ingest: Arc<LogIngest>,
    pub logs: Arc<RecordingLogs>,
    pub metrics: Arc<MemMetrics>,
}

/// A fast-flushing metric config for tests.
pub fn test_metrics_config() -> LogMetricsConfig {
    LogMetricsConfig {
        flush_interval: Duration::from_millis(10),
        ..Default::default()
    }
}

pub fn setup_with(mode: Mode, limits: LogLimits) -> Setup {
    let logs = RecordingLogs::new(mode);
    let metrics = MemMetrics::new(Events::default());
    let ingest = LogIngest::new(
        logs.clone(),
        metrics.clone(),
        metrics.clone(),
        limits,
        test_metrics_config(),
    )
    .unwrap();
    Setup {
        ingest,
        logs,
        metrics,
    }
}

pub fn setup(mode: Mode) -> Setup {
    setup_with(mode, LogLimits::default())
}

/// Waits (at most 5 s) until the metrics store holds `rendered` with `value`.
pub async fn wait_metric(metrics: &MemMetrics, rendered: &str, value: f64) {
    for _ in 0..500 {
        if metrics.last(rendered) == Some(value) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{rendered} never reached {value}; stored: {:?}",
        metrics.rendered()
    );
}
