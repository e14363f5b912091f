//! Log ingest's store step and the log-based metric: what is counted, the heartbeat and
//! staleness rules, the restore at start, and refusals.

use std::sync::Arc;
use std::time::Duration;

use store::logs::{LogRecord, Severity};
use store::{Labels, Sample};

use super::metrics::{count_records, LogCountState, LogKey, LOG_RECORDS_TOTAL};
use super::test_support::{setup, test_metrics_config, wait_metric, Mode, RecordingLogs};
use super::*;
use crate::traces::restore::Restored;
use crate::traces::test_support::{Events, MemMetrics, NotReady};

fn rec(service: &str, severity_number: u8, body: &str) -> LogRecord {
    LogRecord {
        time_unix_nano: 1,
        observed_unix_nano: 1,
        severity_number,
        service: service.into(),
        body: body.into(),
        ..Default::default()
    }
}

fn converted(records: Vec<LogRecord>) -> ConvertedLogs {
    let mut out = ConvertedLogs::default();
    out.batch.records = records;
    out
}

fn series(service: &str, severity: &str) -> String {
    format!("{LOG_RECORDS_TOTAL}{{service=\"{service}\", severity=\"{severity}\"}}")
}

fn samples(metrics: &MemMetrics, rendered: &str) -> Vec<Sample> {
    metrics
        .series
        .lock()
        .iter()
        .find(|(l, _)| l.to_string() == rendered)
        .map(|(_, s)| s.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn stored_records_are_counted_per_service_and_severity() {
    let s = setup(Mode::Accept);
    let stored = s
        .ingest
        .store(
            converted(vec![
                rec("a", 17, "e1"),
                rec("a", 19, "e2"),
                rec("a", 9, "i"),
                rec("b", 0, "u"),
            ]),
            "test",
        )
        .await
        .unwrap();
    assert_eq!(
        stored,
        StoredLogs {
            accepted: 4,
            rejected: 0,
            first_rejection: None
        }
    );
    wait_metric(&s.metrics, &series("a", "error"), 2.0).await;
    wait_metric(&s.metrics, &series("a", "info"), 1.0).await;
    wait_metric(&s.metrics, &series("b", "unspecified"), 1.0).await;
    // a new series starts with a zero one millisecond before its first count
    let first = samples(&s.metrics, &series("a", "error"));
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(first[0].value, 0.0);
    assert_eq!(first[0].timestamp_ms + 1, first[1].timestamp_ms);
    let meta = s.metrics.metadata.lock().clone();
    assert_eq!(meta.len(), 1);
    assert_eq!(meta[0].metric_family, LOG_RECORDS_TOTAL);

    s.ingest
        .store(converted(vec![rec("a", 18, "e3")]), "test")
        .await
        .unwrap();
    wait_metric(&s.metrics, &series("a", "error"), 3.0).await;
    assert_eq!(
        s.ingest.metrics().value(&LogKey {
            service: "a".into(),
            severity: Severity::Error
        }),
        Some(3.0)
    );
}

#[tokio::test]
async fn batches_the_store_refused_are_not_counted() {
    let s = setup(Mode::RejectAll);
    let stored = s
        .ingest
        .store(
            converted(vec![rec("a", 17, "x"), rec("a", 17, "y")]),
            "test",
        )
        .await
        .unwrap();
    assert_eq!((stored.accepted, stored.rejected), (0, 2));
    assert_eq!(
        stored.rejection_message().unwrap(),
        "2 log records rejected; first: record too old"
    );
    s.logs.set_mode(Mode::Overloaded);
    let err = s
        .ingest
        .store(converted(vec![rec("a", 17, "z")]), "test")
        .await
        .unwrap_err();
    assert_eq!(err.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
    s.logs.set_mode(Mode::Accept);
    s.ingest
        .store(converted(vec![rec("a", 17, "ok")]), "test")
        .await
        .unwrap();
    wait_metric(&s.metrics, &series("a", "error"), 1.0).await;
}

#[tokio::test]
async fn counters_continue_after_a_restart() {
    let s = setup(Mode::Accept);
    s.ingest
        .store(
            converted(vec![rec("a", 13, "w"), rec("a", 13, "w")]),
            "test",
        )
        .await
        .unwrap();
    // shutdown flushes what was counted
    s.ingest.shutdown().await;
    assert_eq!(s.metrics.last(&series("a", "warn")), Some(2.0));

    let logs = RecordingLogs::new(Mode::Accept);
    let again = LogIngest::new(
        logs,
        s.metrics.clone(),
        s.metrics.clone(),
        LogLimits::default(),
        test_metrics_config(),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    again
        .store(converted(vec![rec("a", 13, "w")]), "test")
        .await
        .unwrap();
    wait_metric(&s.metrics, &series("a", "warn"), 3.0).await;
}

#[tokio::test]
async fn pushes_wait_for_the_restore_and_are_refused_until_it_succeeds() {
    let logs = RecordingLogs::new(Mode::Accept);
    let metrics = MemMetrics::new(Events::default());
    let ingest = LogIngest::new(
        logs.clone(),
        metrics,
        Arc::new(NotReady),
        LogLimits::default(),
        test_metrics_config(),
    )
    .unwrap();
    let err = ingest
        .ingest(|_, _| Ok(converted(vec![rec("a", 9, "x")])), "test")
        .await
        .unwrap_err();
    assert_eq!(err.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(logs.records().is_empty());
}

#[tokio::test]
async fn ingest_converts_on_the_blocking_pool_with_the_limits_and_time() {
    let s = setup(Mode::Accept);
    let stored = s
        .ingest
        .ingest(
            |limits, now| {
                assert_eq!(limits.max_body_bytes, 256 * 1024);
                let mut out = ConvertedLogs::default();
                out.push(rec("a", 9, &"x".repeat(300 * 1024)), limits);
                out.push(rec("a", 9, &format!("at {}", now > 0)), limits);
                Ok(out)
            },
            "test",
        )
        .await
        .unwrap();
    assert_eq!((stored.accepted, stored.rejected), (1, 1));
    assert!(stored
        .rejection_message()
        .unwrap()
        .contains("max_body_bytes=262144"));
    assert_eq!(s.logs.bodies(), vec!["at true"]);
}

#[tokio::test]
async fn an_overloaded_store_refuses_before_the_push_is_decoded() {
    let s = setup(Mode::Overloaded);
    let decoded = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = decoded.clone();
    let err = s
        .ingest
        .ingest(
            move |_, _| {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(converted(vec![rec("a", 9, "x")]))
            },
            "test",
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
    assert!(err.retryable());
    assert!(!decoded.load(std::sync::atomic::Ordering::SeqCst));
    assert!(s.logs.records().is_empty());

    // once the store accepts again, the same push goes through
    s.logs.set_mode(Mode::Accept);
    let stored = s
        .ingest
        .ingest(|_, _| Ok(converted(vec![rec("a", 9, "x")])), "test")
        .await
        .unwrap();
    assert_eq!(stored.accepted, 1);
    assert_eq!(s.logs.bodies(), vec!["x"]);
}

#[test]
fn heartbeats_staleness_and_priors_follow_the_span_metrics_rules() {
    let cfg = Arc::new(LogMetricsConfig {
        flush_interval: Duration::from_secs(1),
        heartbeat: Duration::from_secs(15),
        stale_after: Duration::from_secs(60),
        ..Default::default()
    });
    let mut st = LogCountState::new(cfg);
    let key = LogKey {
        service: "a".into(),
        severity: Severity::Error,
    };
    let t0 = 1_700_000_000_000;
    st.add([(key.clone(), 2)].into_iter().collect());
    let snap = st.snapshot(t0);
    let batch = snap.to_batch();
    assert_eq!(batch.series.len(), 1);
    assert_eq!(
        batch.series[0].samples,
        vec![Sample::new(t0 - 1, 0.0), Sample::new(t0, 2.0)]
    );
    assert_eq!(batch.metadata.len(), 1);
    st.stored(&snap);
    // nothing due before the heartbeat (less one flush interval)
    assert!(st.snapshot(t0 + 5_000).is_empty());
    let hb = st.snapshot(t0 + 14_000);
    let batch = hb.to_batch();
    assert_eq!(batch.series[0].samples, vec![Sample::new(t0 + 14_000, 2.0)]);
    assert!(batch.metadata.is_empty());
    st.stored(&hb);
    // idle for stale_after: a staleness marker, then nothing
    let stale = st.snapshot(t0 + 61_000);
    let batch = stale.to_batch();
    assert_eq!(batch.series.len(), 1);
    assert!(store::model::is_stale_nan(batch.series[0].samples[0].value));
    st.stored(&stale);
    assert!(st.snapshot(t0 + 200_000).is_empty());
    // records again: the value it went quiet with comes first, then the new total
    st.add([(key, 1)].into_iter().collect());
    let snap = st.snapshot(t0 + 300_000);
    assert_eq!(
        snap.to_batch().series[0].samples,
        vec![
            Sample::new(t0 + 299_999, 2.0),
            Sample::new(t0 + 300_000, 3.0)
        ]
    );
}

#[test]
fn a_failed_flush_is_written_by_the_next() {
    let mut st = LogCountState::new(Arc::new(LogMetricsConfig::default()));
    let key = LogKey {
        service: "a".into(),
        severity: Severity::Info,
    };
    st.add([(key.clone(), 1)].into_iter().collect());
    let failed = st.snapshot(1_000);
    st.requeue(&failed);
    st.add([(key, 2)].into_iter().collect());
    let next = st.snapshot(2_000);
    assert_eq!(
        next.to_batch().series[0].samples,
        vec![Sample::new(1_999, 0.0), Sample::new(2_000, 3.0)]
    );
}

#[test]
fn max_series_bounds_the_pairs_and_long_services_are_cut() {
    let mut st = LogCountState::new(Arc::new(LogMetricsConfig {
        max_series: 1,
        ..Default::default()
    }));
    let records = vec![rec("a", 9, ""), rec("a", 9, ""), rec("b", 9, "")];
    let mut counts: Vec<_> = count_records(&records, 1024).into_iter().collect();
    counts.sort();
    assert_eq!(
        counts,
        vec![
            (
                LogKey {
                    service: "a".into(),
                    severity: Severity::Info
                },
                2
            ),
            (
                LogKey {
                    service: "b".into(),
                    severity: Severity::Info
                },
                1
            )
        ]
    );
    let dropped = st.add(counts.into_iter().collect());
    assert_eq!(st.series_count(), 1);
    assert!(dropped == 1 || dropped == 2, "{dropped}");
    let long = count_records(&[rec("é".repeat(10).as_str(), 1, "")], 5);
    let key = long.keys().next().unwrap();
    assert_eq!(key.service, "éé");
    assert_eq!(key.severity, Severity::Trace);
}

#[test]
fn restore_loads_only_series_it_would_write() {
    let mut st = LogCountState::new(Arc::new(LogMetricsConfig::default()));
    let restored = |pairs: &[(&str, &str)], value: f64, stale: bool| Restored {
        labels: Labels::from_pairs(pairs.iter().copied()),
        value: Sample::new(1_000, value),
        last_ms: 1_000 + i64::from(stale),
        stale,
    };
    let loaded = st.restore(vec![
        restored(
            &[
                ("__name__", LOG_RECORDS_TOTAL),
                ("service", "a"),
                ("severity", "warn"),
            ],
            7.0,
            false,
        ),
        restored(
            &[
                ("__name__", LOG_RECORDS_TOTAL),
                ("service", "b"),
                ("severity", "loud"),
            ],
            1.0,
            false,
        ),
        restored(
            &[
                ("__name__", LOG_RECORDS_TOTAL),
                ("service", "c"),
                ("severity", "info"),
                ("extra", "x"),
            ],
            1.0,
            false,
        ),
        restored(
            &[("__name__", "up"), ("service", "a"), ("severity", "warn")],
            1.0,
            false,
        ),
    ]);
    assert_eq!(loaded, 1);
    let key = LogKey {
        service: "a".into(),
        severity: Severity::Warn,
    };
    assert_eq!(st.value(&key), Some(7.0));
    // the next snapshot is later than anything stored, and its first change writes the
    // restored value before the new one
    st.add([(key, 1)].into_iter().collect());
    let snap = st.snapshot(0);
    assert_eq!(
        snap.to_batch().series[0].samples,
        vec![Sample::new(1_001, 7.0), Sample::new(1_002, 8.0)]
    );
}

#[test]
fn config_problems_are_listed_together() {
    let err = LogMetricsConfig {
        flush_interval: Duration::ZERO,
        heartbeat: Duration::ZERO,
        stale_after: Duration::ZERO,
        max_label_value_bytes: 0,
        ..Default::default()
    }
    .validate()
    .unwrap_err();
    assert_eq!(err.lines().count(), 4, "{err}");
    assert!(LogMetricsConfig::default().validate().is_ok());
}

#[test]
fn rejection_messages() {
    let one = StoredLogs {
        accepted: 1,
        rejected: 1,
        first_rejection: Some("too long".into()),
    };
    assert_eq!(one.rejection_message().unwrap(), "too long");
    let unnamed = StoredLogs {
        accepted: 0,
        rejected: 3,
        first_rejection: None,
    };
    assert_eq!(
        unnamed.rejection_message().unwrap(),
        "3 log records rejected; first: refused by the log store"
    );
    assert_eq!(StoredLogs::default().rejection_message(), None);
}
