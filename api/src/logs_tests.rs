//! Tests of the logs routes through the real router, over [`FakeLogs`]: an in-memory
//! [`LogsQuerier`] that filters with the real query language and records what it was asked,
//! so each parameter's effect on the store request is checked as well as the answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use store::logs::{
    Direction, FieldSummary, FieldsRequest, HistogramBucket, HistogramRequest, LogBatch, LogRecord,
    LogSearch, LogsQuerier, Severity,
};
use store::traces::{SpanId, TraceId};
use store::StoreError;
use tokio::sync::{broadcast, watch};

use crate::logs_router;
use crate::tests::{get_request, respond, send_get};

const SEC: u64 = 1_000_000_000;
/// 2023-11-14T22:13:20Z.
const T0: u64 = 1_700_000_000 * SEC;
const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const SPAN: &str = "b7ad6b7169203331";

/// What [`FakeLogs`] was last asked.
#[derive(Default)]
struct Asked {
    search: Option<LogSearch>,
    histogram: Option<HistogramRequest>,
    fields: Option<FieldsRequest>,
}

/// Records in memory; `fail` makes every read answer that error.
struct FakeLogs {
    records: Vec<LogRecord>,
    fail: Option<fn() -> StoreError>,
    asked: Mutex<Asked>,
    tx: Mutex<broadcast::Sender<Arc<LogBatch>>>,
    /// Appended (sent to subscribers) while the next search runs.
    during_search: Mutex<Option<Arc<LogBatch>>>,
}

impl FakeLogs {
    fn new(records: Vec<LogRecord>) -> Self {
        FakeLogs {
            records,
            fail: None,
            asked: Mutex::new(Asked::default()),
            tx: Mutex::new(broadcast::channel(4).0),
            during_search: Mutex::new(None),
        }
    }

    /// Acknowledges a batch: sends it to the subscribers.
    fn send(&self, batch: Arc<LogBatch>) {
        let sent = lock(&self.tx).send(batch);
        assert!(sent.is_ok(), "no subscriber");
    }

    /// Closes the subscription channel, as a store that closes.
    fn close(&self) {
        *lock(&self.tx) = broadcast::channel(4).0;
    }

    fn failing(fail: fn() -> StoreError) -> Self {
        FakeLogs {
            fail: Some(fail),
            ..FakeLogs::new(Vec::new())
        }
    }

    fn check(&self) -> store::Result<()> {
        match self.fail {
            Some(f) => Err(f()),
            None => Ok(()),
        }
    }

    fn asked(&self) -> std::sync::MutexGuard<'_, Asked> {
        lock(&self.asked)
    }

    fn matching<'a>(
        &'a self,
        query: &'a store::logs::LogQuery,
        start: u64,
        end: u64,
    ) -> impl Iterator<Item = &'a LogRecord> + 'a {
        self.records
            .iter()
            .filter(move |r| (start..=end).contains(&r.time_unix_nano) && query.matches(r))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LogsQuerier for FakeLogs {
    fn tiers(&self) -> Option<store::logs::LogTiers> {
        Some(store::logs::LogTiers {
            warm: store::logs::LogStoreStats {
                partitions: 2,
                records: self.records.len() as u64,
                disk_bytes: 4096,
                wal_bytes: 17,
                ..Default::default()
            },
            archive_files: 3,
            archive_bytes: 999,
            archive_records: 40,
        })
    }

    fn search(&self, s: &LogSearch) -> store::Result<Vec<LogRecord>> {
        self.check()?;
        self.asked().search = Some(s.clone());
        if let Some(batch) = lock(&self.during_search).take() {
            self.send(batch);
        }
        let mut out: Vec<LogRecord> = self
            .matching(&s.query, s.start_unix_nano, s.end_unix_nano)
            .cloned()
            .collect();
        out.sort_by_key(|r| r.time_unix_nano);
        if s.direction == Direction::Backward {
            out.reverse();
        }
        out.truncate(s.limit);
        Ok(out)
    }

    fn histogram(&self, h: &HistogramRequest) -> store::Result<Vec<HistogramBucket>> {
        self.check()?;
        self.asked().histogram = Some(h.clone());
        let n = (h.end_unix_nano - h.start_unix_nano) / h.step_nanos + 1;
        let mut buckets: Vec<HistogramBucket> = (0..n)
            .map(|i| HistogramBucket {
                start_unix_nano: h.start_unix_nano + i * h.step_nanos,
                ..HistogramBucket::default()
            })
            .collect();
        for r in self.matching(&h.query, h.start_unix_nano, h.end_unix_nano) {
            let i = ((r.time_unix_nano - h.start_unix_nano) / h.step_nanos) as usize;
            let sev = Severity::from_number(r.severity_number);
            let b = &mut buckets[i];
            b.count += 1;
            if let Some(k) = Severity::ALL.iter().position(|s| *s == sev) {
                b.by_severity[k] += 1;
            }
        }
        Ok(buckets)
    }

    fn fields(&self, f: &FieldsRequest) -> store::Result<Vec<FieldSummary>> {
        self.check()?;
        self.asked().fields = Some(f.clone());
        let mut services: Vec<(String, u64)> = Vec::new();
        let mut records = 0;
        for r in self.matching(&f.query, f.start_unix_nano, f.end_unix_nano) {
            records += 1;
            match services.iter_mut().find(|(s, _)| *s == r.service) {
                Some((_, n)) => *n += 1,
                None => services.push((r.service.clone(), 1)),
            }
        }
        services.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let distinct = services.len() as u64;
        services.truncate(f.top_values);
        Ok(vec![FieldSummary {
            name: "service".into(),
            records,
            distinct_values: distinct,
            top: services,
        }])
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<LogBatch>> {
        lock(&self.tx).subscribe()
    }
}

fn record(secs_after_t0: u64, service: &str, severity: u8, body: &str) -> LogRecord {
    LogRecord {
        time_unix_nano: T0 + secs_after_t0 * SEC,
        observed_unix_nano: T0 + secs_after_t0 * SEC + 5,
        severity_number: severity,
        severity_text: Severity::from_number(severity).as_str().to_uppercase(),
        service: service.into(),
        body: body.into(),
        resource: vec![("service.name".into(), service.into())],
        ..LogRecord::default()
    }
}

/// Six records over two minutes, newest last; one carries a trace and attributes.
fn records() -> Vec<LogRecord> {
    let mut traced = record(30, "checkout", 17, "payment failed: card declined");
    traced.trace_id = TraceId::from_hex(TRACE).ok();
    traced.span_id = SpanId::from_hex(SPAN).ok();
    traced.attributes = vec![
        ("http.route".into(), "/api/pay".into()),
        ("attempt".into(), "2".into()),
    ];
    vec![
        record(0, "checkout", 9, "order placed"),
        record(10, "payments", 13, "slow upstream"),
        traced,
        record(70, "checkout", 9, "order shipped"),
        record(80, "payments", 21, "disk full"),
        record(90, "checkout", 0, "no level here"),
    ]
}

fn app_over(logs: Arc<FakeLogs>) -> (axum::Router, watch::Sender<bool>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    (logs_router(logs, stop_rx), stop_tx)
}

/// GETs `uri` over [`records`]; returns the status, the parsed body and the fake.
async fn get(uri: &str) -> (StatusCode, Value, Arc<FakeLogs>) {
    let logs = Arc::new(FakeLogs::new(records()));
    let (app, _stop) = app_over(logs.clone());
    let (status, body) = send_get(app, uri).await;
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{uri}: {e}: {body}"));
    (status, value, logs)
}

async fn get_ok(uri: &str) -> (Value, Arc<FakeLogs>) {
    let (status, value, logs) = get(uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {value}");
    assert_eq!(value["status"], "success", "{value}");
    (value["data"].clone(), logs)
}

/// Expects a Prometheus-shaped 400 and returns the error text.
async fn bad(uri: &str) -> Value {
    let (status, value, _) = get(uri).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {value}");
    assert_eq!(value["status"], "error", "{value}");
    assert_eq!(value["errorType"], "bad_data", "{value}");
    value
}

/// Expects each `(uri, error)` to be a 400 with exactly that error, and no query position.
async fn assert_errors(cases: &[(&str, &str)]) {
    for (uri, want) in cases {
        let v = bad(uri).await;
        assert_eq!(v["error"], *want, "{uri}");
        assert!(v.get("position").is_none(), "{v}");
    }
}

fn bodies(data: &Value) -> Vec<&str> {
    data["records"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["body"].as_str()).collect())
        .unwrap_or_default()
}

const WINDOW: &str = "start=1700000000&end=1700000100";

// ---- /api/v1/logs/query ----

#[tokio::test]
async fn query_answers_records_newest_first_in_the_documented_shape() {
    let (data, logs) = get_ok(&format!("/api/v1/logs/query?{WINDOW}")).await;
    assert_eq!(
        bodies(&data),
        [
            "no level here",
            "disk full",
            "order shipped",
            "payment failed: card declined",
            "slow upstream",
            "order placed"
        ]
    );
    let traced = &data["records"][3];
    assert_eq!(
        traced,
        &json!({
            "time": "2023-11-14T22:13:50.000000000Z",
            "time_unix_nano": "1700000030000000000",
            "observed_unix_nano": "1700000030000000005",
            "severity": "error",
            "severity_number": 17,
            "severity_text": "ERROR",
            "service": "checkout",
            "trace_id": TRACE,
            "span_id": SPAN,
            "body": "payment failed: card declined",
            "attributes": {"http.route": "/api/pay", "attempt": "2"},
            "resource": {"service.name": "checkout"},
            "trace_url": format!("/api/v1/traces/{TRACE}"),
        })
    );
    // attribute order is kept (serde_json's Value sorts keys: look at the text)
    let (app, _stop) = app_over(Arc::new(FakeLogs::new(records())));
    let (_, text) = send_get(app, &format!("/api/v1/logs/query?{WINDOW}")).await;
    assert!(
        text.contains(r#""attributes":{"http.route":"/api/pay","attempt":"2"}"#),
        "{text}"
    );
    // no trace: null ids and no trace_url
    let plain = &data["records"][0];
    assert_eq!(plain["trace_id"], Value::Null);
    assert_eq!(plain["span_id"], Value::Null);
    assert!(plain.get("trace_url").is_none(), "{plain}");
    assert_eq!(plain["severity"], "unspecified");
    let asked = logs.asked();
    let s = asked.search.as_ref().expect("searched");
    assert_eq!((s.start_unix_nano, s.end_unix_nano), (T0, T0 + 100 * SEC));
    assert_eq!(s.limit, 100);
    assert_eq!(s.direction, Direction::Backward);
}

#[tokio::test]
async fn query_filters_with_the_query_language() {
    let (data, _) = get_ok(&format!(
        "/api/v1/logs/query?{WINDOW}&query=service:payments"
    ))
    .await;
    assert_eq!(bodies(&data), ["disk full", "slow upstream"]);
    let (data, _) = get_ok(&format!(
        "/api/v1/logs/query?{WINDOW}&query=severity%3E%3Dwarn%20AND%20NOT%20service:payments"
    ))
    .await;
    assert_eq!(bodies(&data), ["payment failed: card declined"]);
    let (data, _) = get_ok(&format!(
        "/api/v1/logs/query?{WINDOW}&query=trace_id:{TRACE}"
    ))
    .await;
    assert_eq!(bodies(&data), ["payment failed: card declined"]);
    let (data, _) = get_ok(&format!("/api/v1/logs/query?{WINDOW}&query=order")).await;
    assert_eq!(bodies(&data), ["order shipped", "order placed"]);
}

#[tokio::test]
async fn query_limit_direction_and_window() {
    let (data, logs) = get_ok(&format!(
        "/api/v1/logs/query?{WINDOW}&limit=2&direction=forward"
    ))
    .await;
    assert_eq!(bodies(&data), ["order placed", "slow upstream"]);
    {
        let asked = logs.asked();
        let s = asked.search.as_ref().expect("searched");
        assert_eq!((s.limit, s.direction), (2, Direction::Forward));
    }
    // RFC 3339 with nanoseconds, both ends inclusive
    let (data, _) =
        get_ok("/api/v1/logs/query?start=2023-11-14T22:13:30.000000000Z&end=2023-11-14T22:14:40Z")
            .await;
    assert_eq!(
        bodies(&data),
        [
            "disk full",
            "order shipped",
            "payment failed: card declined",
            "slow upstream"
        ]
    );
    // one nanosecond past a record excludes it
    let (data, _) = get_ok("/api/v1/logs/query?start=1700000010.000000001&end=1700000080").await;
    assert_eq!(
        bodies(&data),
        [
            "disk full",
            "order shipped",
            "payment failed: card declined"
        ]
    );
}

#[tokio::test]
async fn query_defaults_to_the_last_hour() {
    let (data, logs) = get_ok("/api/v1/logs/query").await;
    assert_eq!(
        bodies(&data),
        Vec::<&str>::new(),
        "the records are from 2023"
    );
    let asked = logs.asked();
    let s = asked.search.as_ref().expect("searched");
    assert_eq!(s.end_unix_nano - s.start_unix_nano, 3600 * SEC);
    let now = crate::logs::json::rfc3339_nanos(s.end_unix_nano);
    assert!(now.as_str() > "2024", "end defaults to now: {now}");
}

#[tokio::test]
async fn query_parameter_errors_are_400s_naming_the_parameter() {
    assert_errors(&[
        (
            "/api/v1/logs/query?start=soon",
            "invalid parameter \"start\": cannot parse \"soon\" to a valid timestamp",
        ),
        (
            "/api/v1/logs/query?end=2023-13-01T00:00:00Z",
            "invalid parameter \"end\": cannot parse \"2023-13-01T00:00:00Z\" to a valid timestamp",
        ),
        (
            "/api/v1/logs/query?start=20&end=10",
            "invalid parameter \"end\": end time must not be before start time",
        ),
        (
            "/api/v1/logs/query?limit=0",
            "invalid parameter \"limit\": \"0\" is not a whole number from 1 to 5000",
        ),
        (
            "/api/v1/logs/query?limit=5001",
            "invalid parameter \"limit\": \"5001\" is not a whole number from 1 to 5000",
        ),
        (
            "/api/v1/logs/query?limit=many",
            "invalid parameter \"limit\": \"many\" is not a whole number from 1 to 5000",
        ),
        (
            "/api/v1/logs/query?direction=sideways",
            "invalid parameter \"direction\": \"sideways\" is not a direction (backward or forward)",
        ),
    ])
    .await;
}

#[tokio::test]
async fn malformed_queries_are_400s_with_the_position() {
    for (query, position) in [("(error", 6usize), ("error%20AND", 9), ("nosuchfield:x", 0)] {
        for path in ["query", "histogram", "fields", "tail"] {
            let uri = format!("/api/v1/logs/{path}?query={query}");
            let v = bad(&uri).await;
            let text = v["error"].as_str().unwrap_or_default();
            assert!(
                text.starts_with("invalid parameter \"query\": "),
                "{uri}: {text}"
            );
            let at = v["position"].as_u64().map(|p| p as usize);
            assert!(at.is_some(), "{uri}: no position in {v}");
            assert!(
                text.ends_with(&format!("at position {}", at.unwrap_or_default())),
                "{uri}: {text}"
            );
            // the position points at (or just past) the problem
            assert!(
                at.unwrap_or_default().abs_diff(position) <= 6,
                "{uri}: position {at:?}, expected about {position}"
            );
        }
    }
}

#[tokio::test]
async fn store_errors_map_to_their_status() {
    for (fail, status, error_type) in [
        (
            (|| StoreError::Unavailable("lookout is starting".into())) as fn() -> StoreError,
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
        ),
        (
            || StoreError::BadRequest("too broad".into()),
            StatusCode::BAD_REQUEST,
            "bad_data",
        ),
    ] {
        for path in ["query", "histogram", "fields", "tail"] {
            let (app, _stop) = app_over(Arc::new(FakeLogs::failing(fail)));
            let (got, body) = send_get(app, &format!("/api/v1/logs/{path}")).await;
            assert_eq!(got, status, "{path}: {body}");
            let v: Value = serde_json::from_str(&body).unwrap_or_default();
            assert_eq!(v["errorType"], error_type, "{path}: {body}");
        }
    }
}

// ---- /api/v1/logs/histogram ----

#[tokio::test]
async fn histogram_counts_per_step_and_per_severity() {
    let (data, logs) = get_ok(&format!(
        "/api/v1/logs/histogram?{WINDOW}&step=1m&by=severity"
    ))
    .await;
    assert_eq!(
        data,
        json!({
            "step_seconds": 60,
            "buckets": [
                {
                    "time": "2023-11-14T22:13:20.000000000Z",
                    "time_unix_nano": "1700000000000000000",
                    "count": 3,
                    "by_severity": {"info": 1, "warn": 1, "error": 1},
                },
                {
                    "time": "2023-11-14T22:14:20.000000000Z",
                    "time_unix_nano": "1700000060000000000",
                    "count": 3,
                    "by_severity": {"unspecified": 1, "info": 1, "fatal": 1},
                },
            ]
        })
    );
    let asked = logs.asked();
    let h = asked.histogram.as_ref().expect("asked");
    assert_eq!(h.step_nanos, 60 * SEC);
    assert_eq!((h.start_unix_nano, h.end_unix_nano), (T0, T0 + 100 * SEC));
}

#[tokio::test]
async fn histogram_without_by_has_no_severity_split_and_a_default_step() {
    let (data, logs) =
        get_ok("/api/v1/logs/histogram?start=1700000000&end=1700000600&query=service:checkout")
            .await;
    // 600 s / 60 = 10 s buckets
    assert_eq!(data["step_seconds"], 10);
    let buckets = data["buckets"].as_array().cloned().unwrap_or_default();
    assert_eq!(buckets.len(), 61);
    assert!(buckets.iter().all(|b| b.get("by_severity").is_none()));
    let counts: u64 = buckets.iter().filter_map(|b| b["count"].as_u64()).sum();
    assert_eq!(counts, 4);
    assert_eq!(buckets[3]["count"], 1, "the record at +30 s");
    assert_eq!(
        logs.asked().histogram.as_ref().map(|h| h.step_nanos),
        Some(10 * SEC)
    );
    // short windows get one-second steps; fractional steps are written as such
    let (data, _) = get_ok("/api/v1/logs/histogram?start=1700000000&end=1700000010").await;
    assert_eq!(data["step_seconds"], 1);
    let (data, _) = get_ok("/api/v1/logs/histogram?start=1700000000&end=1700000010&step=1.5").await;
    assert_eq!(data["step_seconds"], 1.5);
}

#[tokio::test]
async fn histogram_parameter_errors() {
    assert_errors(&[
        (
            "/api/v1/logs/histogram?step=0",
            "invalid parameter \"step\": zero or negative histogram steps are not accepted. Try a positive duration such as 1m",
        ),
        (
            "/api/v1/logs/histogram?step=often",
            "invalid parameter \"step\": cannot parse \"often\" to a valid duration",
        ),
        (
            "/api/v1/logs/histogram?start=0&end=86400&step=1",
            "invalid parameter \"step\": exceeded maximum resolution of 11000 buckets. Try a larger step (at least 8s)",
        ),
        (
            "/api/v1/logs/histogram?by=service",
            "invalid parameter \"by\": cannot group by \"service\" (only \"severity\")",
        ),
        (
            "/api/v1/logs/histogram?start=x",
            "invalid parameter \"start\": cannot parse \"x\" to a valid timestamp",
        ),
    ])
    .await;
}

// ---- /api/v1/logs/fields ----

#[tokio::test]
async fn fields_list_names_and_top_values() {
    let (data, logs) = get_ok(&format!("/api/v1/logs/fields?{WINDOW}&top=1")).await;
    assert_eq!(
        data,
        json!({"fields": [{
            "name": "service",
            "records": 6,
            "distinct_values": 2,
            "top": [{"value": "checkout", "count": 4}],
        }]})
    );
    {
        let asked = logs.asked();
        let f = asked.fields.as_ref().expect("asked");
        assert_eq!(f.top_values, 1);
        assert_eq!((f.start_unix_nano, f.end_unix_nano), (T0, T0 + 100 * SEC));
    }
    let (data, logs) = get_ok(&format!("/api/v1/logs/fields?{WINDOW}&query=disk")).await;
    assert_eq!(data["fields"][0]["records"], 1);
    assert_eq!(logs.asked().fields.as_ref().map(|f| f.top_values), Some(10));
    assert_errors(&[
        (
            "/api/v1/logs/fields?top=0",
            "invalid parameter \"top\": \"0\" is not a whole number from 1 to 1000",
        ),
        (
            "/api/v1/logs/fields?end=never",
            "invalid parameter \"end\": cannot parse \"never\" to a valid timestamp",
        ),
    ])
    .await;
}

// ---- /api/v1/logs/tail ----

/// An open SSE response body, read frame by frame.
struct Events {
    body: Body,
    buf: String,
}

impl Events {
    /// The next complete event (the text up to a blank line), or `None` at the end of the
    /// stream.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.buf.find("\n\n") {
                let event = self.buf[..at].to_string();
                self.buf.drain(..at + 2);
                return Some(event);
            }
            let frame = tokio::time::timeout(Duration::from_secs(20), self.body.frame())
                .await
                .expect("an event within 20 s")?;
            let frame = frame.expect("a body frame");
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }

    /// The next event's name and data.
    async fn next_event(&mut self) -> (String, Value) {
        let text = self.next().await.expect("an event, not the end");
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("event: "))
            .unwrap_or_default()
            .to_string();
        let data = text
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap_or_default();
        let value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {text}"));
        (name, value)
    }
}

async fn open_tail(app: axum::Router, uri: &str) -> Events {
    let resp = respond(app, get_request(uri)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    Events {
        body: resp.into_body(),
        buf: String::new(),
    }
}

fn batch(records: Vec<LogRecord>) -> Arc<LogBatch> {
    Arc::new(LogBatch { records })
}

#[tokio::test]
async fn tail_streams_matching_records_acknowledged_after_connecting() {
    let logs = Arc::new(FakeLogs::new(records()));
    let (app, stop) = app_over(logs.clone());
    let mut events = open_tail(app, "/api/v1/logs/tail?query=service:checkout").await;
    // the stored records are not replayed without `start`
    logs.send(batch(vec![
        record(200, "payments", 9, "not this one"),
        record(201, "checkout", 17, "live one"),
    ]));
    logs.send(batch(vec![record(202, "checkout", 9, "live two")]));
    let (name, first) = events.next_event().await;
    assert_eq!(name, "log");
    assert_eq!(first["body"], "live one");
    assert_eq!(first["severity"], "error");
    assert_eq!(first["time_unix_nano"], (T0 + 201 * SEC).to_string());
    assert_eq!(events.next_event().await.1["body"], "live two");
    // the stream ends when the server shuts down
    stop.send(true).expect("the router holds a receiver");
    assert_eq!(events.next().await, None);
}

#[tokio::test]
async fn tail_frames_are_server_sent_events() {
    let logs = Arc::new(FakeLogs::new(Vec::new()));
    let (app, _stop) = app_over(logs.clone());
    let mut events = open_tail(app, "/api/v1/logs/tail").await;
    let mut r = record(1, "web", 13, "line one\nline two\r\nend");
    r.trace_id = TraceId::from_hex(TRACE).ok();
    logs.send(batch(vec![r]));
    let text = events.next().await.expect("an event");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "one event line and one data line: {text:?}");
    assert_eq!(lines[0], "event: log");
    let data = lines[1].strip_prefix("data: ").expect("a data line");
    let v: Value = serde_json::from_str(data).expect("JSON data");
    assert_eq!(v["body"], "line one\nline two\r\nend");
    assert_eq!(v["trace_url"], format!("/api/v1/traces/{TRACE}"));
}

#[tokio::test]
async fn tail_sends_the_backlog_since_start_first_oldest_first() {
    let logs = Arc::new(FakeLogs::new(records()));
    let (app, _stop) = app_over(logs.clone());
    let mut events = open_tail(
        app,
        "/api/v1/logs/tail?query=service:checkout&start=1700000000&limit=3",
    )
    .await;
    // the newest three matches since start, oldest first
    for want in [
        "payment failed: card declined",
        "order shipped",
        "no level here",
    ] {
        let (name, v) = events.next_event().await;
        assert_eq!((name.as_str(), v["body"].as_str()), ("log", Some(want)));
    }
    {
        let asked = logs.asked();
        let s = asked.search.as_ref().expect("searched");
        assert_eq!(s.start_unix_nano, T0);
        assert_eq!(s.limit, 3);
    }
    logs.send(batch(vec![record(300, "checkout", 9, "after the backlog")]));
    assert_eq!(events.next_event().await.1["body"], "after the backlog");
}

#[tokio::test]
async fn tail_does_not_repeat_backlog_records_queued_while_it_was_read() {
    let logs = Arc::new(FakeLogs::new(records()));
    // acknowledged after the tail subscribed and already stored when its backlog is read:
    // the newest stored record comes once, the new one too
    let stored = records().pop().expect("records");
    *lock(&logs.during_search) = Some(batch(vec![stored, record(301, "checkout", 9, "brand new")]));
    let (app, _stop) = app_over(logs.clone());
    let mut events = open_tail(
        app,
        "/api/v1/logs/tail?start=1700000085&query=service:checkout",
    )
    .await;
    assert_eq!(events.next_event().await.1["body"], "no level here");
    assert_eq!(events.next_event().await.1["body"], "brand new");
    // later batches are not deduplicated: a re-sent line is a new line
    logs.send(batch(records().split_off(5)));
    assert_eq!(events.next_event().await.1["body"], "no level here");
}

#[tokio::test]
async fn tail_reports_dropped_batches_when_lagging() {
    let logs = Arc::new(FakeLogs::new(Vec::new()));
    let (app, _stop) = app_over(logs.clone());
    let mut events = open_tail(app, "/api/v1/logs/tail").await;
    // the channel holds 4 batches: 6 before the first read drops the oldest 2
    for i in 0..6 {
        logs.send(batch(vec![record(i, "web", 9, &format!("line {i}"))]));
    }
    let (name, v) = events.next_event().await;
    assert_eq!(name, "dropped");
    assert_eq!(v, json!({"dropped": 2}));
    for i in 2..6 {
        assert_eq!(events.next_event().await.1["body"], format!("line {i}"));
    }
}

#[tokio::test]
async fn tail_ends_when_the_store_closes() {
    let logs = Arc::new(FakeLogs::new(Vec::new()));
    let (app, _stop) = app_over(logs.clone());
    let mut events = open_tail(app, "/api/v1/logs/tail").await;
    logs.close();
    assert_eq!(events.next().await, None);
}

#[tokio::test(start_paused = true)]
async fn tail_sends_keep_alive_comments() {
    let logs = Arc::new(FakeLogs::new(Vec::new()));
    let (app, _stop) = app_over(logs.clone());
    let mut events = open_tail(app, "/api/v1/logs/tail").await;
    let started = tokio::time::Instant::now();
    let text = events.next().await.expect("a keep-alive");
    assert!(text.starts_with(':'), "a comment: {text:?}");
    assert!(started.elapsed() >= crate::logs::tail::KEEP_ALIVE);
}

#[tokio::test]
async fn tail_parameter_errors() {
    assert_errors(&[
        (
            "/api/v1/logs/tail?start=later",
            "invalid parameter \"start\": cannot parse \"later\" to a valid timestamp",
        ),
        (
            "/api/v1/logs/tail?limit=0",
            "invalid parameter \"limit\": \"0\" is not a whole number from 1 to 5000",
        ),
    ])
    .await;
}

// ---- trace links ----

#[tokio::test]
async fn trace_logs_link_and_count() {
    let link = crate::logs::TraceLogs::new(TRACE, T0 + 30 * SEC + 1, T0 + 31 * SEC + 1);
    assert_eq!(
        link.url(),
        format!("/api/v1/logs/query?query=trace_id:{TRACE}&start=1699999970&end=1700000092")
    );
    let logs = FakeLogs::new(records());
    assert_eq!(link.count(&logs).ok(), Some(1));
    // the link finds the record through the API
    let (data, _) = get_ok(&link.url()).await;
    assert_eq!(bodies(&data), ["payment failed: card declined"]);
}

#[tokio::test]
async fn a_trace_links_to_its_log_records() {
    use crate::traces_tests::{derived, spans, FakeTraces};
    let app = |logs: Option<Arc<dyn LogsQuerier>>| {
        crate::traces_router(
            Arc::new(FakeTraces { spans: spans() }),
            Arc::new(derived()),
            logs,
            crate::ApiOptions::default(),
        )
    };
    let uri = format!("/api/v1/traces/{TRACE}");
    // the trace's spans run from T0+1s to T0+1.1s: a minute either side, whole seconds
    let url = format!("/api/v1/logs/query?query=trace_id:{TRACE}&start=1699999941&end=1700000062");
    let (status, body) = send_get(app(Some(Arc::new(FakeLogs::new(records())))), &uri).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(v["data"]["logsUrl"], url.as_str(), "{body}");
    assert_eq!(v["data"]["logCount"], 1, "{body}");
    assert_eq!(
        v["data"]["spanCount"], 3,
        "the trace answer is unchanged otherwise"
    );
    // the log store cannot count yet: the link stays, the count is null
    let failing = FakeLogs::failing(|| StoreError::Unavailable("starting".into()));
    let (status, body) = send_get(app(Some(Arc::new(failing))), &uri).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(v["data"]["logsUrl"], url.as_str(), "{body}");
    assert_eq!(v["data"]["logCount"], Value::Null, "{body}");
    assert!(v["data"].get("logCount").is_some(), "{body}");
    // without a log store, no link
    let (_, body) = send_get(app(None), &uri).await;
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    assert!(v["data"].get("logsUrl").is_none(), "{body}");
    assert!(v["data"].get("logCount").is_none(), "{body}");
    // Jaeger's shape has no such fields
    let (_, body) = send_get(
        app(Some(Arc::new(FakeLogs::new(records())))),
        &format!("/api/traces/{TRACE}"),
    )
    .await;
    assert!(!body.contains("logsUrl"), "{body}");
}

#[tokio::test]
async fn status_reports_the_size_of_each_tier() {
    let (data, logs) = get_ok("/api/v1/status/logs").await;
    assert_eq!(
        data,
        serde_json::json!({"tiers": {
            "warm": {"partitions": 2, "records": logs.records.len(), "bytes": 4096, "walBytes": 17},
            "archive": {"files": 3, "records": 40, "bytes": 999},
        }})
    );
}
