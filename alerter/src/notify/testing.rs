//! Test helpers shared by the notifier's tests (and the templates'): a fake DingTalk/WeCom
//! robot (an axum server on 127.0.0.1:0 that checks signatures, keywords and sizes and
//! answers with the platforms' codes), label sets, alerts and notifications, and notifiers
//! with fast retries.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::model::{Alert, Evidence, Notification};

/// What the fake does with the next request.
#[derive(Clone, Debug)]
pub enum Script {
    /// HTTP status with an empty body.
    Http(u16),
    /// HTTP 200 with this errcode.
    Errcode(i64, &'static str),
}

#[derive(Default)]
pub struct FakeState {
    /// DingTalk signing secret the fake checks.
    pub secret: Option<String>,
    /// A keyword every message must contain.
    pub keyword: Option<String>,
    /// The token (DingTalk) or key (WeCom) the fake accepts.
    pub token: String,
    /// Larger request bodies get DingTalk 460101 / WeCom content over the limit 40058.
    pub max_body: Option<usize>,
    /// Answers for the next requests, in order.
    pub script: VecDeque<Script>,
    /// Accepted messages: (query parameters, body).
    pub accepted: Vec<(HashMap<String, String>, Value)>,
    /// Every request's errcode answered (0 for accepted), or the HTTP status.
    pub answers: Vec<i64>,
}

#[derive(Clone)]
pub struct FakeRobot {
    pub state: Arc<Mutex<FakeState>>,
    pub base: String,
}

impl FakeRobot {
    pub async fn start(token: &str) -> FakeRobot {
        let state = Arc::new(Mutex::new(FakeState {
            token: token.to_string(),
            ..FakeState::default()
        }));
        let app = Router::new()
            .route("/robot/send", post(dingtalk))
            .route("/cgi-bin/webhook/send", post(wecom))
            .route("/hook", post(webhook))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeRobot {
            state,
            base: format!("http://{addr}"),
        }
    }

    pub fn dingtalk_url(&self, token: &str) -> String {
        format!("{}/robot/send?access_token={token}", self.base)
    }

    pub fn wecom_url(&self, key: &str) -> String {
        format!("{}/cgi-bin/webhook/send?key={key}", self.base)
    }

    pub fn accepted(&self) -> Vec<(HashMap<String, String>, Value)> {
        self.state.lock().accepted.clone()
    }

    pub fn answers(&self) -> Vec<i64> {
        self.state.lock().answers.clone()
    }

    /// Asserts every alert of `alerts` is in exactly one accepted message (a split loses
    /// and repeats none), `text` being where a body holds the message text.
    pub fn assert_each_alert_in_one_message(
        &self,
        alerts: &[Alert],
        text: impl Fn(&Value) -> &str,
    ) {
        let accepted = self.accepted();
        for a in alerts {
            let name = a.name();
            let count = accepted
                .iter()
                .filter(|(_, body)| text(body).contains(name))
                .count();
            assert_eq!(count, 1, "{name} is in {count} messages");
        }
    }
}

fn answer(state: &mut FakeState, code: i64, msg: &str) -> (StatusCode, Json<Value>) {
    state.answers.push(code);
    (
        StatusCode::OK,
        Json(json!({"errcode": code, "errmsg": msg})),
    )
}

fn scripted(state: &mut FakeState) -> Option<(StatusCode, Json<Value>)> {
    match state.script.pop_front()? {
        Script::Http(status) => {
            state.answers.push(i64::from(status));
            Some((
                StatusCode::from_u16(status).unwrap(),
                Json(json!({"error": "scripted"})),
            ))
        }
        Script::Errcode(code, msg) => Some(answer(state, code, msg)),
    }
}

async fn dingtalk(
    State(state): State<Arc<Mutex<FakeState>>>,
    Query(q): Query<HashMap<String, String>>,
    body: String,
) -> (StatusCode, Json<Value>) {
    let mut s = state.lock();
    if let Some(r) = scripted(&mut s) {
        return r;
    }
    if q.get("access_token") != Some(&s.token) {
        return answer(&mut s, 300001, "token is not exist");
    }
    if let Some(secret) = s.secret.clone() {
        let (Some(ts), Some(sign)) = (q.get("timestamp"), q.get("sign")) else {
            return answer(&mut s, 310000, "sign not match");
        };
        let ts_ms: i64 = ts.parse().unwrap_or(0);
        let now = super::attempts::now_ms();
        if (now - ts_ms).abs() > 3_600_000 {
            return answer(&mut s, 310000, "timestamp out of window");
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{ts}\n{secret}").as_bytes());
        let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        if *sign != want {
            return answer(&mut s, 310000, "sign not match");
        }
    }
    if s.max_body.is_some_and(|max| body.len() > max) {
        return answer(&mut s, 460101, "message too long");
    }
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["msgtype"], "markdown");
    let title = v["markdown"]["title"].as_str().unwrap_or("");
    let text = v["markdown"]["text"].as_str().unwrap_or("");
    assert!(!title.is_empty() && !text.is_empty(), "{v}");
    assert!(v["at"]["atMobiles"].is_array() && v["at"]["isAtAll"].is_boolean());
    if let Some(k) = s.keyword.clone() {
        if !text.contains(&k) && !title.contains(&k) {
            return answer(&mut s, 310000, "keywords not in content");
        }
    }
    s.accepted.push((q, v));
    answer(&mut s, 0, "ok")
}

async fn wecom(
    State(state): State<Arc<Mutex<FakeState>>>,
    Query(q): Query<HashMap<String, String>>,
    Json(v): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut s = state.lock();
    if let Some(r) = scripted(&mut s) {
        return r;
    }
    if q.get("key") != Some(&s.token) {
        return answer(&mut s, 93000, "invalid webhook url");
    }
    let (content, max) = match v["msgtype"].as_str() {
        Some("markdown") => (v["markdown"]["content"].as_str().unwrap_or(""), 4096),
        Some("text") => (v["text"]["content"].as_str().unwrap_or(""), 2048),
        _ => return answer(&mut s, 40008, "invalid message type"),
    };
    if content.is_empty() {
        return answer(&mut s, 44004, "empty content");
    }
    if content.len() > max {
        return answer(&mut s, 40058, "content exceed max length");
    }
    s.accepted.push((q, v));
    answer(&mut s, 0, "ok")
}

/// A plain webhook: scripted answers, else 200.
async fn webhook(
    State(state): State<Arc<Mutex<FakeState>>>,
    Json(v): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut s = state.lock();
    if let Some(r) = scripted(&mut s) {
        return r;
    }
    s.accepted.push((HashMap::new(), v));
    s.answers.push(0);
    (StatusCode::OK, Json(json!({})))
}

/// The crate's one label-set test helper, under the name these tests use.
pub(crate) use crate::model::label_set as labels;

pub fn alert(name: &str, extra: &[(&str, &str)], summary: &str) -> Alert {
    let mut l = labels(&[("alertname", name), ("severity", "critical")]);
    l.extend(labels(extra));
    Alert {
        labels: l,
        annotations: labels(&[("summary", summary)]),
        starts_at_ms: 1_700_000_000_000,
        ends_at_ms: None,
        updated_at_ms: 1_700_000_000_000,
        generator_url: String::new(),
        evidence: Evidence {
            expr: Some("rate(errors_total[5m]) > 1".into()),
            value: Some(3.5),
            ..Evidence::default()
        },
    }
}

pub fn notification(receiver: &str, group: &str, alerts: Vec<Alert>) -> Notification {
    Notification {
        receiver: receiver.into(),
        group_key: format!("{{}}:{{alertname=\"{group}\"}}"),
        group_labels: labels(&[("alertname", group)]),
        alerts,
        external_url: "http://lookout.example:9800".into(),
        now_ms: 1_700_000_060_000,
    }
}

/// A notification to `receiver` of one firing alert `A`: for tests of how delivery goes
/// rather than of what the message says.
pub fn one_alert(receiver: &str) -> Notification {
    notification(receiver, "A", vec![alert("A", &[], "s")])
}

/// A fake robot accepting `token`; a notifier (fast retries, at most `max_attempts`) over
/// the one receiver `config` makes for it; and that receiver's first integration.
pub async fn robot_notifier(
    token: &str,
    max_attempts: u32,
    config: impl FnOnce(&FakeRobot) -> super::ReceiverConfig,
) -> (FakeRobot, Arc<super::Notifier>, Arc<super::Delivery>) {
    let robot = FakeRobot::start(token).await;
    let r = config(&robot);
    let n = notifier(std::slice::from_ref(&r), max_attempts);
    let d = n.integrations(&r.name).unwrap().remove(0);
    (robot, n, d)
}

/// The `receivers:` entry parsed from YAML.
pub fn receiver(yaml: &str) -> super::ReceiverConfig {
    serde_yaml::from_str(yaml).unwrap()
}

/// A retry policy fast enough for tests.
pub fn fast_retries(max_attempts: u32) -> super::delivery::RetryPolicy {
    super::delivery::RetryPolicy {
        initial: std::time::Duration::from_millis(20),
        jitter: 0.2,
        max_delay: std::time::Duration::from_millis(100),
        max_attempts,
        max_elapsed: std::time::Duration::from_secs(10),
    }
}

/// A notifier over `receivers` with fast retries and a temporary state database.
pub fn notifier(receivers: &[super::ReceiverConfig], max_attempts: u32) -> Arc<super::Notifier> {
    super::Notifier::with_retry_policy(
        receivers,
        super::NotifierOptions {
            external_url: "http://lookout.example:9800".into(),
            language: crate::template::Language::En,
            state: crate::state::StateDb::temporary().unwrap(),
        },
        fast_retries(max_attempts),
    )
    .unwrap()
}
