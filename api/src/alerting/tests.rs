//! The alerting routes through the real router over a real alerter: a metrics store in a
//! temporary directory, a rule evaluated on demand, the dispatcher with a DingTalk receiver
//! nobody listens on (nothing here waits for a delivery).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use alerter::dispatch::config::AlertingConfig;
use alerter::service::{Alerter, AlerterOptions};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use store::config::MetricsStoreOptions;
use store::logs::{
    FieldSummary, FieldsRequest, HistogramBucket, HistogramRequest, LogBatch, LogRecord, LogSearch,
    LogsQuerier,
};
use store::model::{Labels, MetricBatch, Sample, Series};
use store::traces::{SpanKind, StoredSpan, TraceId, TraceQuery, TraceSummary, TracesQuerier};
use store::{MetricsAppender, MetricsStore};

use super::{alerting_router, alerting_router_lazy, AlerterCell};
use crate::tests::{send, send_get};

/// No log records.
struct NoLogs;

impl LogsQuerier for NoLogs {
    fn search(&self, _: &LogSearch) -> store::Result<Vec<LogRecord>> {
        Ok(Vec::new())
    }
    fn histogram(&self, _: &HistogramRequest) -> store::Result<Vec<HistogramBucket>> {
        Ok(Vec::new())
    }
    fn fields(&self, _: &FieldsRequest) -> store::Result<Vec<FieldSummary>> {
        Ok(Vec::new())
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<LogBatch>> {
        tokio::sync::broadcast::channel(1).1
    }
}

/// No traces.
struct NoTraces;

impl TracesQuerier for NoTraces {
    fn trace(&self, _: TraceId) -> store::Result<Vec<StoredSpan>> {
        Ok(Vec::new())
    }
    fn search(&self, _: &TraceQuery) -> store::Result<Vec<TraceSummary>> {
        Ok(Vec::new())
    }
    fn services(&self, _: u64, _: u64) -> store::Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn operations(&self, _: &str, _: u64, _: u64) -> store::Result<Vec<(String, SpanKind)>> {
        Ok(Vec::new())
    }
}

const RULES: &str = "groups:
  - name: api
    interval: 1h
    rules:
      - alert: TempHigh
        expr: temp > 30
        for: 10m
        labels: { severity: warning }
        annotations: { summary: 'room {{ $labels.room }} at {{ $value }}' }
      - record: room:temp:max
        expr: max(temp)
";

const ALERTING: &str = "
route: { receiver: hook, group_wait: 1h }
receivers:
  - name: hook
    dingtalk_configs: [ { url: 'http://127.0.0.1:9/robot/send?access_token=t' } ]
";

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<MetricsStore>,
    alerter: Arc<Alerter>,
    app: axum::Router,
}

fn now_ms() -> i64 {
    alerter::rules::manager::now_ms()
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics_dir = dir.path().join("metrics");
    let store = tokio::task::spawn_blocking(move || {
        MetricsStore::open(MetricsStoreOptions::new(metrics_dir))
    })
    .await
    .expect("open task")
    .expect("metrics store");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, RULES).expect("rule file");
    let alerting: serde_yaml::Value = serde_yaml::from_str(ALERTING).expect("yaml");
    let alerting = AlertingConfig::parse(&alerting).expect("alerting config");
    let alerter = Alerter::start(
        AlerterOptions {
            data_dir: dir.path().join("alerter"),
            external_url: "http://lookout.test".into(),
            external_labels: Default::default(),
            evaluation_interval: Duration::from_secs(3600),
            alerting: Arc::new(alerting),
            engine: Default::default(),
        },
        alerter::rules::file::load_rule_files(&[rules]).expect("rule file"),
        store.clone(),
        store.clone(),
        Arc::new(NoLogs),
        Arc::new(NoTraces),
    )
    .await
    .expect("alerter starts");
    let app = alerting_router(alerter.clone());
    Fixture {
        _dir: dir,
        store,
        alerter,
        app,
    }
}

impl Fixture {
    async fn temp(&self, room: &str, t_ms: i64, value: f64) {
        let batch = MetricBatch {
            series: vec![Series {
                labels: Labels::from_pairs([("__name__", "temp"), ("room", room)]),
                samples: vec![Sample::new(t_ms, value)],
            }],
            metadata: Vec::new(),
        };
        self.store.append(batch).await.expect("append");
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let (status, body) = send_get(self.app.clone(), uri).await;
        let json = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (status, json)
    }

    async fn send(&self, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let (status, body) = send(self.app.clone(), req).await;
        let json = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (status, json)
    }

    async fn close(self) {
        self.alerter.shutdown().await;
        self.store.close().await.expect("close store");
    }
}

#[tokio::test]
async fn routes_answer_503_until_the_alerter_runs() {
    let cell: AlerterCell = Arc::new(OnceLock::new());
    let app = alerting_router_lazy(cell);
    for uri in [
        "/api/v1/rules",
        "/api/v1/alerts",
        "/api/v2/alerts",
        "/api/v2/silences",
        "/api/v1/notifications",
    ] {
        let (status, body) = send_get(app.clone(), uri).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}: {body}");
        assert!(body.contains(r#""errorType":"unavailable""#), "{body}");
    }
}

#[tokio::test]
async fn rules_and_alerts_in_prometheus_json() {
    let f = fixture().await;
    let (status, body) = f.get("/api/v1/rules").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "success");
    let group = &body["data"]["groups"][0];
    assert_eq!(group["name"], "api");
    assert_eq!(group["interval"], 3600.0);
    assert_eq!(group["lastEvaluation"], "0001-01-01T00:00:00Z");
    let rule = &group["rules"][0];
    assert_eq!(rule["type"], "alerting");
    assert_eq!(rule["state"], "inactive");
    assert_eq!(rule["health"], "unknown");
    assert_eq!(rule["duration"], 600.0);
    assert_eq!(rule["query"], "temp > 30");
    assert_eq!(group["rules"][1]["type"], "recording");

    let t = now_ms() - 1000;
    f.temp("a", t, 35.0).await;
    f.temp("b", t, 20.0).await;
    f.alerter.rules().evaluate_all_at(now_ms()).await;

    let (_, body) = f.get("/api/v1/rules?type=alert").await;
    let rules = body["data"]["groups"][0]["rules"]
        .as_array()
        .expect("rules");
    assert_eq!(rules.len(), 1, "{body}");
    assert_eq!(rules[0]["state"], "pending", "{body}");
    assert_eq!(rules[0]["health"], "ok", "{body}");
    let alert = &rules[0]["alerts"][0];
    assert_eq!(alert["labels"]["room"], "a");
    assert_eq!(alert["labels"]["severity"], "warning");
    assert_eq!(alert["annotations"]["summary"], "room a at 35");
    assert_eq!(alert["value"], "3.5e+01");
    assert!(alert["activeAt"].as_str().is_some_and(|s| s.ends_with('Z')));

    let (_, body) = f.get("/api/v1/rules?type=record").await;
    let rules = body["data"]["groups"][0]["rules"]
        .as_array()
        .expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["name"], "room:temp:max");

    let (status, body) = f.get("/api/v1/rules?type=bogus").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errorType"], "bad_data");

    let (status, body) = f.get("/api/v1/alerts").await;
    assert_eq!(status, StatusCode::OK);
    let alerts = body["data"]["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 1, "{body}");
    assert_eq!(alerts[0]["state"], "pending");
    f.close().await;
}

#[tokio::test]
async fn v2_alerts_post_and_list() {
    let f = fixture().await;
    let (status, body) = f
        .send(
            "POST",
            "/api/v2/alerts",
            r#"[{"labels":{"alertname":"External","team":"db"},"annotations":{"summary":"s"},"generatorURL":"http://prom/graph"}]"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = f.get("/api/v2/alerts").await;
    assert_eq!(status, StatusCode::OK);
    let list = body.as_array().expect("a bare list");
    let ext = list
        .iter()
        .find(|a| a["labels"]["alertname"] == "External")
        .expect("the posted alert");
    assert_eq!(ext["generatorURL"], "http://prom/graph");
    assert_eq!(ext["fingerprint"].as_str().map(str::len), Some(16));
    assert!(ext["startsAt"].is_string() && ext["endsAt"].is_string());
    assert!(ext["status"]["state"].is_string());

    let (status, groups) = f.get("/api/v2/alerts/groups").await;
    assert_eq!(status, StatusCode::OK, "{groups}");
    let group = groups
        .as_array()
        .and_then(|g| g.first())
        .unwrap_or_else(|| panic!("a group: {groups}"));
    assert_eq!(group["receiver"]["name"], "hook");
    assert_eq!(group["alerts"][0]["labels"]["alertname"], "External");

    let (_, body) = f.get("/api/v2/alerts?filter=team%3D%22web%22").await;
    assert_eq!(body.as_array().map(Vec::len), Some(0), "{body}");
    let (status, _) = f.get("/api/v2/alerts?filter=%3Dbroken").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = f.get("/api/v2/alerts?active=maybe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    for bad in [
        "not json",
        r#"{"labels":{}}"#,
        r#"[{"labels":{}}]"#,
        r#"[{"labels":{"alertname":"X"},"startsAt":"yesterday"}]"#,
    ] {
        let (status, body) = f.send("POST", "/api/v2/alerts", bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    f.close().await;
}

#[tokio::test]
async fn silences_create_get_list_expire() {
    let f = fixture().await;
    let now = now_ms();
    let iso = |ms: i64| alerter::dispatch::api_types::format_rfc3339(ms);
    let body = format!(
        r#"{{"matchers":[{{"name":"alertname","value":"External","isRegex":false}}],"startsAt":"{}","endsAt":"{}","createdBy":"test","comment":"maintenance"}}"#,
        iso(now - 1000),
        iso(now + 3_600_000)
    );
    let (status, created) = f.send("POST", "/api/v2/silences", &body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["silenceID"]
        .as_str()
        .expect("silenceID")
        .to_string();

    let (status, got) = f.get(&format!("/api/v2/silence/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["status"]["state"], "active");
    assert_eq!(got["matchers"][0]["isEqual"], true);

    let (_, list) = f.get("/api/v2/silences").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));

    let (status, _) = f.send("DELETE", &format!("/api/v2/silence/{id}"), "").await;
    assert_eq!(status, StatusCode::OK);
    let (_, got) = f.get(&format!("/api/v2/silence/{id}")).await;
    assert_eq!(got["status"]["state"], "expired");

    let (status, _) = f.get("/api/v2/silence/no-such-id").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = f.send("DELETE", "/api/v2/silence/no-such-id", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = f
        .send("POST", "/api/v2/silences", r#"{"matchers":[]}"#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    f.close().await;
}

#[tokio::test]
async fn notifications_and_receiver_tests() {
    let f = fixture().await;
    let (status, body) = f.get("/api/v1/notifications?receiver=hook&limit=5").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "success");
    assert!(body["data"].is_array(), "{body}");
    let (status, _) = f.get("/api/v1/notifications?limit=-1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = f.send("POST", "/api/v1/receivers/nobody/test", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    f.close().await;
}
