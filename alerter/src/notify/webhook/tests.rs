//! The webhook integration against an axum server that records the bodies it gets.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

use super::*;
use crate::model::{Alert, Evidence};
use crate::notify::testing::labels;
use crate::template::Language;

#[derive(Default)]
struct Hook {
    /// Answers to give, in order (then 200).
    answers: Mutex<Vec<(u16, String)>>,
    /// (content type, body) of every request.
    got: Mutex<Vec<(String, serde_json::Value)>>,
}

async fn handler(
    State(hook): State<Arc<Hook>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    hook.got.lock().expect("lock").push((ct, json));
    let mut answers = hook.answers.lock().expect("lock");
    let (code, text) = if answers.is_empty() {
        (200, "ok".to_string())
    } else {
        answers.remove(0)
    };
    (StatusCode::from_u16(code).unwrap_or(StatusCode::OK), text)
}

async fn server(answers: Vec<(u16, &str)>) -> (SocketAddr, Arc<Hook>) {
    let hook = Arc::new(Hook {
        answers: Mutex::new(
            answers
                .into_iter()
                .map(|(c, t)| (c, t.to_string()))
                .collect(),
        ),
        ..Hook::default()
    });
    let app = Router::new()
        .route("/hook", post(handler))
        .with_state(hook.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, hook)
}

const NOW: i64 = 1_136_214_545_000; // 2006-01-02T15:09:05Z

fn alert(name: &str, instance: &str, ends: Option<i64>) -> Alert {
    Alert {
        labels: labels(&[("alertname", name), ("instance", instance), ("team", "db")]),
        annotations: labels(&[("summary", "s")]),
        starts_at_ms: 1_136_214_245_000,
        ends_at_ms: ends,
        updated_at_ms: NOW,
        generator_url: "http://lookout.example:9800/explore?query=up".into(),
        evidence: Evidence::default(),
    }
}

fn notification() -> Notification {
    Notification {
        receiver: "hooks".into(),
        group_key: "{}:{alertname=\"Down\"}".into(),
        group_labels: labels(&[("alertname", "Down")]),
        alerts: vec![
            alert("Down", "a:1", Some(NOW + 60_000)),
            alert("Down", "b:1", None),
            alert("Down", "c:1", Some(NOW - 1_000)),
        ],
        external_url: "http://lookout.example:9800/".into(),
        now_ms: NOW,
    }
}

fn webhook(addr: SocketAddr, extra: &str) -> Arc<dyn Integration> {
    let cfg: WebhookConfig = serde_yaml::from_str(&format!(
        "{{url: 'http://{addr}/hook?token=s3cr3t-token'{extra}}}"
    ))
    .expect("config");
    assert_eq!(cfg.validate("webhook_configs[0]"), Vec::<String>::new());
    assert!(!format!("{cfg:?}").contains("s3cr3t"));
    cfg.build(&BuildContext::new(Language::En))
}

#[tokio::test]
async fn posts_alertmanager_webhook_json_v4() {
    let (addr, hook) = server(vec![]).await;
    let w = webhook(addr, "");
    assert_eq!(w.kind(), "webhook");
    assert!(w.send_resolved());
    let n = notification();
    assert_eq!(
        w.send(std::slice::from_ref(&n)).await,
        Ok(Delivered { messages: 1 })
    );
    let got = hook.got.lock().expect("lock");
    assert_eq!(got.len(), 1);
    assert!(got[0].0.starts_with("application/json"), "{}", got[0].0);
    let fp = |i: usize| n.alerts[i].fingerprint().to_string();
    let expected = serde_json::json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"Down\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "hooks",
        "groupLabels": {"alertname": "Down"},
        "commonLabels": {"alertname": "Down", "team": "db"},
        "commonAnnotations": {"summary": "s"},
        "externalURL": "http://lookout.example:9800",
        "alerts": [
            {"status": "firing", "labels": {"alertname": "Down", "instance": "a:1", "team": "db"},
             "annotations": {"summary": "s"}, "startsAt": "2006-01-02T15:04:05Z",
             "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": "http://lookout.example:9800/explore?query=up", "fingerprint": fp(0)},
            {"status": "firing", "labels": {"alertname": "Down", "instance": "b:1", "team": "db"},
             "annotations": {"summary": "s"}, "startsAt": "2006-01-02T15:04:05Z",
             "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": "http://lookout.example:9800/explore?query=up", "fingerprint": fp(1)},
            {"status": "resolved", "labels": {"alertname": "Down", "instance": "c:1", "team": "db"},
             "annotations": {"summary": "s"}, "startsAt": "2006-01-02T15:04:05Z",
             "endsAt": "2006-01-02T15:09:04Z",
             "generatorURL": "http://lookout.example:9800/explore?query=up", "fingerprint": fp(2)},
        ],
    });
    assert_eq!(got[0].1, expected);
    assert_eq!(fp(0).len(), 16);
}

#[tokio::test]
async fn max_alerts_truncates_and_counts_the_rest() {
    let (addr, hook) = server(vec![]).await;
    let w = webhook(addr, ", max_alerts: 2, send_resolved: false");
    assert!(!w.send_resolved());
    w.send(&[notification()]).await.expect("sent");
    let got = hook.got.lock().expect("lock");
    let body = &got[0].1;
    assert_eq!(body["truncatedAlerts"], 1);
    assert_eq!(body["alerts"].as_array().map(Vec::len), Some(2));
    // Status covers the truncated alerts too.
    assert_eq!(body["status"], "firing");
}

#[tokio::test]
async fn several_notifications_post_one_each_in_order() {
    let (addr, hook) = server(vec![]).await;
    let w = webhook(addr, "");
    let mut second = notification();
    second.group_key = "second".into();
    second.alerts = vec![alert("Down", "z:1", Some(NOW - 5))];
    let d = w.send(&[notification(), second]).await.expect("sent");
    assert_eq!(d.messages, 2);
    let got = hook.got.lock().expect("lock");
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].1["groupKey"], "second");
    assert_eq!(got[1].1["status"], "resolved");
}

#[tokio::test]
async fn answers_map_to_transient_and_permanent_failures() {
    let (addr, _hook) = server(vec![
        (500, "boom"),
        (429, "slow down"),
        (503, "token s3cr3t-token unavailable"),
        (400, "bad payload"),
        (404, "no such hook"),
    ])
    .await;
    let w = webhook(addr, "");
    let n = [notification()];
    for (status, kind) in [
        (500, FailureKind::Transient),
        (429, FailureKind::Transient),
        (503, FailureKind::Transient),
        (400, FailureKind::Permanent),
        (404, FailureKind::Permanent),
    ] {
        let err = w.send(&n).await.expect_err("failure");
        assert_eq!(err.kind, kind, "{err:?}");
        assert_eq!(err.status, Some(status), "{err:?}");
        assert!(!err.message.contains("s3cr3t"), "{err:?}");
    }
    assert_eq!(w.send(&n).await, Ok(Delivered { messages: 1 }));

    // Nobody listening: transient, and the URL's token stays out of the message.
    let free = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let err = webhook(free, "").send(&n).await.expect_err("refused");
    assert_eq!(err.kind, FailureKind::Transient, "{err:?}");
    assert!(!err.message.contains("s3cr3t"), "{err:?}");
}

#[tokio::test]
async fn error_messages_are_bounded_printable_and_never_show_the_urls_secrets() {
    // an endpoint echoing the request line (the token as written, percent-encoded, and
    // decoded) and the basic-auth password, with terminal escapes and line breaks
    let echo = "POST /hook?token=s3cr3t%2Btok%2Fen HTTP/1.1\r\nAuthorization: pa55w0rd-xyz\r\ntoken s3cr3t+tok/en\x1b[31m\u{202e}!";
    let long = "🔥".repeat(300);
    let (addr, _hook) = server(vec![
        (500, echo),
        (502, long.as_str()),
        (404, "no such hook"),
    ])
    .await;
    let cfg: WebhookConfig = serde_yaml::from_str(&format!(
        "{{url: 'http://lookout:pa55w0rd-xyz@{addr}/hook?token=s3cr3t%2Btok%2Fen'}}"
    ))
    .expect("config");
    let w = cfg.build(&BuildContext::new(Language::En));
    let n = [notification()];
    let err = w.send(&n).await.expect_err("500");
    let m = &err.message;
    assert_eq!((err.kind, err.status), (FailureKind::Transient, Some(500)));
    assert_eq!(
        m,
        "HTTP 500: POST /hook?token=<secret> HTTP/1.1  Authorization: <secret>  token <secret> [31m !"
    );
    // 800 bytes of answer: cut on a character boundary
    let err = w.send(&n).await.expect_err("502");
    let m = &err.message;
    assert!(
        m.len() <= crate::notify::MAX_ERROR_BYTES,
        "{} bytes",
        m.len()
    );
    assert!(m.starts_with("HTTP 502: 🔥🔥") && m.ends_with("🔥…"), "{m}");
    // short answers are kept as they are
    let err = w.send(&n).await.expect_err("404");
    assert_eq!(err.message, "HTTP 404: no such hook");
}

#[test]
fn validation_rejects_non_http_urls_without_showing_them() {
    let cfg: WebhookConfig =
        serde_yaml::from_str("{url: 'ftp://host/x?token=s3cr3t'}").expect("config");
    let errors = cfg.validate("alerting.receivers[1].webhook_configs[0]");
    assert_eq!(
        errors,
        vec!["alerting.receivers[1].webhook_configs[0].url: must be an http(s) URL".to_string()]
    );
    assert!(serde_yaml::from_str::<WebhookConfig>("{url: 'http://h', extra: 1}").is_err());
}
