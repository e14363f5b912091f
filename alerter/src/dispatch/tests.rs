//! Dispatcher tests on tokio's paused clock, with fake integrations in place of notifiers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::api_types::{
    AlertFilter, AlertState, Matcher, PostableAlert, PostableSilence, Timestamp,
};
use super::config::AlertingConfig;
use super::{Clock, Deliver, Dispatcher, Integrations};
use crate::model::{label_set, Alert, AlertSink, Evidence, LabelSet, Notification};
use crate::notify::{Delivered, FailureKind, NotifyError};
use crate::state::StateDb;

const BASE_MS: i64 = 1_700_000_000_000;

struct Fake {
    name: String,
    send_resolved: bool,
    sent: Mutex<Vec<Notification>>,
    /// Fail this many deliveries first.
    failures: AtomicUsize,
    delay: Duration,
}

impl Fake {
    fn new(name: &str, send_resolved: bool) -> Arc<Self> {
        Arc::new(Fake {
            name: name.into(),
            send_resolved,
            sent: Mutex::new(Vec::new()),
            failures: AtomicUsize::new(0),
            delay: Duration::ZERO,
        })
    }

    /// An integration whose every delivery takes `delay`.
    fn slow(name: &str, delay: Duration) -> Arc<Self> {
        Arc::new(Fake {
            name: name.into(),
            send_resolved: true,
            sent: Mutex::new(Vec::new()),
            failures: AtomicUsize::new(0),
            delay,
        })
    }

    fn count(&self) -> usize {
        self.sent.lock().len()
    }

    /// Alert names of notification `i`, firing ones plain and resolved ones with `-`.
    fn names(&self, i: usize) -> Vec<String> {
        let sent = self.sent.lock();
        let n = &sent[i];
        n.alerts
            .iter()
            .map(|a| {
                let name = a.labels.get("alertname").cloned().unwrap_or_default();
                if a.is_resolved_at(n.now_ms) {
                    format!("-{name}")
                } else {
                    name
                }
            })
            .collect()
    }
}

#[async_trait]
impl Deliver for Fake {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn send_resolved(&self) -> bool {
        self.send_resolved
    }

    async fn deliver(&self, n: &Notification) -> Result<Delivered, NotifyError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(NotifyError {
                kind: FailureKind::Permanent,
                status: Some(200),
                errcode: Some(310000),
                message: "keywords not in content".into(),
            });
        }
        self.sent.lock().push(n.clone());
        Ok(Delivered { messages: 1 })
    }
}

#[derive(Default)]
struct FakeNotifier(HashMap<String, Vec<Arc<Fake>>>);

impl FakeNotifier {
    fn with(mut self, receiver: &str, fakes: &[&Arc<Fake>]) -> Self {
        self.0.insert(
            receiver.into(),
            fakes.iter().map(|f| Arc::clone(f)).collect(),
        );
        self
    }
}

impl Integrations for FakeNotifier {
    fn integrations(&self, receiver: &str) -> Option<Vec<Arc<dyn Deliver>>> {
        self.0
            .get(receiver)
            .map(|v| v.iter().map(|f| f.clone() as Arc<dyn Deliver>).collect())
    }
}

fn config(yaml: &str) -> Arc<AlertingConfig> {
    let v: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    Arc::new(AlertingConfig::parse(&v).unwrap_or_else(|e| panic!("{e:?}")))
}

const RECEIVERS: &str = r#"
receivers:
  - name: default
    webhook_configs: [ { url: "http://127.0.0.1:1/hook" } ]
  - name: db
    webhook_configs: [ { url: "http://127.0.0.1:1/hook" } ]
  - name: db2
    webhook_configs: [ { url: "http://127.0.0.1:1/hook" } ]
"#;

fn simple_config(extra_route: &str, extra: &str) -> Arc<AlertingConfig> {
    config(&format!(
        "route:\n  receiver: default\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 10s\n{extra_route}{RECEIVERS}{extra}"
    ))
}

/// A firing alert as rule evaluation sends it, started `started_ago` before `now`, ending
/// at `now + ends_in`.
fn alert(clock: &Clock, pairs: &[(&str, &str)], started_ago_ms: i64, ends_in_ms: i64) -> Alert {
    let now = clock.now_ms();
    Alert {
        labels: label_set(pairs),
        annotations: LabelSet::new(),
        starts_at_ms: now - started_ago_ms,
        ends_at_ms: Some(now + ends_in_ms),
        updated_at_ms: now,
        generator_url: String::new(),
        evidence: Evidence::default(),
    }
}

/// A firing alert that starts now and ends in an hour.
fn firing(clock: &Clock, pairs: &[(&str, &str)]) -> Alert {
    alert(clock, pairs, 0, 3_600_000)
}

async fn at(clock: &Clock, ms: i64) {
    let now = clock.now_ms() - BASE_MS;
    assert!(ms >= now, "time goes forward: at {ms} ms, now {now} ms");
    tokio::time::sleep(Duration::from_millis((ms - now) as u64)).await;
}

fn start(cfg: Arc<AlertingConfig>, n: FakeNotifier, db: StateDb, clock: &Clock) -> Arc<Dispatcher> {
    Dispatcher::start_with_clock(cfg, Arc::new(n), db, "http://lookout:9800/", clock.clone())
        .unwrap()
}

/// A dispatcher on a temporary state store, its clock at `BASE_MS`.
fn start_fresh(cfg: Arc<AlertingConfig>, n: FakeNotifier) -> (Clock, Arc<Dispatcher>) {
    let clock = Clock::tokio_at(BASE_MS);
    let d = start(cfg, n, StateDb::temporary().unwrap(), &clock);
    (clock, d)
}

#[tokio::test(start_paused = true)]
async fn group_wait_then_group_interval_then_repeat_interval() {
    let f = Fake::new("webhook[0]", true);
    let (clock, d) = start_fresh(
        simple_config("", ""),
        FakeNotifier::default().with("default", &[&f]),
    );
    d.put(vec![firing(&clock, &[("alertname", "A"), ("i", "1")])]);
    at(&clock, 900).await;
    assert_eq!(f.count(), 0, "nothing before group_wait");
    at(&clock, 1100).await;
    assert_eq!(f.count(), 1);
    assert_eq!(f.names(0), ["A"]);
    {
        let sent = f.sent.lock();
        assert_eq!(sent[0].group_key, r#"{}:{alertname="A"}"#);
        assert_eq!(sent[0].group_labels, label_set(&[("alertname", "A")]));
        assert_eq!(sent[0].external_url, "http://lookout:9800");
    }
    // A second alert of the group waits for the next group_interval tick (t = 3 s).
    at(&clock, 1500).await;
    d.put(vec![firing(&clock, &[("alertname", "A"), ("i", "2")])]);
    at(&clock, 2900).await;
    assert_eq!(f.count(), 1);
    at(&clock, 3100).await;
    assert_eq!(f.count(), 2);
    assert_eq!(f.names(1), ["A", "A"]);
    // Nothing new: the ticks at 5, 7, 9, 11 s send nothing; at 13 s repeat_interval (10 s
    // after the last notification) has passed.
    at(&clock, 12_900).await;
    assert_eq!(f.count(), 2);
    at(&clock, 13_100).await;
    assert_eq!(f.count(), 3);
    // Re-sending the same firing alerts (as rules do each evaluation) changes nothing.
    d.put(vec![alert(
        &clock,
        &[("alertname", "A"), ("i", "1")],
        13_000,
        3_600_000,
    )]);
    at(&clock, 22_900).await;
    assert_eq!(f.count(), 3);
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_alert_older_than_group_wait_flushes_a_new_group_at_once() {
    let f = Fake::new("webhook[0]", true);
    let (clock, d) = start_fresh(
        simple_config("", ""),
        FakeNotifier::default().with("default", &[&f]),
    );
    d.put(vec![alert(
        &clock,
        &[("alertname", "Old")],
        60_000,
        3_600_000,
    )]);
    at(&clock, 50).await;
    assert_eq!(f.count(), 1);
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn resolved_alerts_go_only_to_send_resolved_integrations() {
    let sr = Fake::new("webhook[0]", true);
    let nsr = Fake::new("email[0]", false);
    let (clock, d) = start_fresh(
        simple_config("", ""),
        FakeNotifier::default().with("default", &[&sr, &nsr]),
    );
    d.put(vec![
        firing(&clock, &[("alertname", "A"), ("i", "1")]),
        alert(&clock, &[("alertname", "A"), ("i", "2")], 0, 2_500),
    ]);
    at(&clock, 1100).await;
    assert_eq!((sr.count(), nsr.count()), (1, 1));
    assert_eq!(nsr.names(0), ["A", "A"]);
    // i=2 resolved at 2.5 s: the 3 s flush tells the send_resolved integration only.
    at(&clock, 3100).await;
    assert_eq!((sr.count(), nsr.count()), (2, 1));
    assert_eq!(sr.names(1), ["A", "-A"]);
    // The resolved alert left the group after it was notified.
    at(&clock, 5100).await;
    assert_eq!(sr.count(), 2);
    // Now the last one resolves: both are told (the other one with nothing to send, only
    // its log entry cleared), and the group ends.
    d.put(vec![alert(
        &clock,
        &[("alertname", "A"), ("i", "1")],
        5_000,
        0,
    )]);
    at(&clock, 7100).await;
    assert_eq!((sr.count(), nsr.count()), (3, 1));
    assert_eq!(sr.names(2), ["-A"]);
    at(&clock, 20_000).await;
    assert_eq!((sr.count(), nsr.count()), (3, 1));
    assert!(d.alerts(&AlertFilter::default()).is_empty());
    assert!(d.inner.core.lock().groups.is_empty(), "empty groups end");
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn continue_sends_to_every_matching_route() {
    let (def, db, db2) = (
        Fake::new("webhook[0]", true),
        Fake::new("webhook[0]", true),
        Fake::new("webhook[0]", true),
    );
    let routes = "  routes:\n    - { receiver: db, matchers: ['team=\"db\"'], continue: true }\n    - { receiver: db2, matchers: ['team=~\"db|infra\"'] }\n";
    let n = FakeNotifier::default()
        .with("default", &[&def])
        .with("db", &[&db])
        .with("db2", &[&db2]);
    let (clock, d) = start_fresh(simple_config(routes, ""), n);
    d.put(vec![
        firing(&clock, &[("alertname", "A"), ("team", "db")]),
        firing(&clock, &[("alertname", "B"), ("team", "infra")]),
        firing(&clock, &[("alertname", "C"), ("team", "web")]),
    ]);
    at(&clock, 1100).await;
    assert_eq!((db.count(), db2.count(), def.count()), (1, 2, 1));
    assert_eq!(db.names(0), ["A"]);
    assert_eq!(def.names(0), ["C"]);
    let listed = d.alerts(&AlertFilter::default());
    let a = listed
        .iter()
        .find(|a| a.labels["alertname"] == "A")
        .unwrap();
    let names: Vec<&str> = a.receivers.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["db", "db2"]);
    let only_db2 = AlertFilter::parse(&[], Some("db2")).unwrap();
    assert_eq!(d.alerts(&only_db2).len(), 2);
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn inhibited_alerts_are_not_notified_and_listed_as_suppressed() {
    let f = Fake::new("webhook[0]", true);
    let inhibit = "inhibit_rules:\n  - source_matchers: ['severity=\"critical\"']\n    target_matchers: ['severity=\"warning\"']\n    equal: [service]\n";
    let cfg = config(&format!(
        "route:\n  receiver: default\n  group_by: ['...']\n  group_wait: 1s\n  group_interval: 2s\n{RECEIVERS}{inhibit}"
    ));
    let (clock, d) = start_fresh(cfg, FakeNotifier::default().with("default", &[&f]));
    let crit = firing(
        &clock,
        &[
            ("alertname", "Down"),
            ("severity", "critical"),
            ("service", "api"),
        ],
    );
    d.put(vec![
        crit.clone(),
        firing(
            &clock,
            &[
                ("alertname", "Slow"),
                ("severity", "warning"),
                ("service", "api"),
            ],
        ),
        firing(
            &clock,
            &[
                ("alertname", "Slow"),
                ("severity", "warning"),
                ("service", "db"),
            ],
        ),
    ]);
    at(&clock, 1100).await;
    let mut sent: Vec<String> = f
        .sent
        .lock()
        .iter()
        .map(|n| {
            format!(
                "{}/{}",
                n.alerts[0].labels["alertname"], n.alerts[0].labels["service"]
            )
        })
        .collect();
    sent.sort();
    assert_eq!(sent, ["Down/api", "Slow/db"]);
    let all = d.alerts(&AlertFilter::default());
    let slow_api = all
        .iter()
        .find(|a| a.labels["alertname"] == "Slow" && a.labels["service"] == "api")
        .unwrap();
    assert_eq!(slow_api.status.state, AlertState::Suppressed);
    assert_eq!(
        slow_api.status.inhibited_by,
        [crit.fingerprint().to_string()]
    );
    let not_inhibited = AlertFilter {
        inhibited: false,
        ..AlertFilter::default()
    };
    assert_eq!(d.alerts(&not_inhibited).len(), 2);
    // The source resolves: the target is notified at its group's next tick.
    d.put(vec![Alert {
        ends_at_ms: Some(clock.now_ms()),
        ..crit
    }]);
    at(&clock, 3100).await;
    let slow_api_sent = f.sent.lock().iter().any(|n| {
        n.alerts[0].labels["alertname"] == "Slow" && n.alerts[0].labels["service"] == "api"
    });
    assert!(slow_api_sent);
    d.shutdown().await;
}

fn silence(name: &str, value: &str, start: i64, end: i64) -> PostableSilence {
    PostableSilence {
        id: None,
        matchers: vec![Matcher {
            name: name.into(),
            value: value.into(),
            is_regex: false,
            is_equal: true,
        }],
        starts_at: Timestamp(start),
        ends_at: Timestamp(end),
        created_by: "ops".into(),
        comment: "maintenance".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn silenced_alerts_are_held_back_until_the_silence_expires() {
    let f = Fake::new("webhook[0]", true);
    let (clock, d) = start_fresh(
        simple_config("", ""),
        FakeNotifier::default().with("default", &[&f]),
    );
    let now = clock.now_ms();
    let id = d
        .silences()
        .upsert(silence("alertname", "A", now, now + 3_600_000))
        .unwrap();
    d.put(vec![
        firing(&clock, &[("alertname", "A")]),
        firing(&clock, &[("alertname", "B")]),
    ]);
    at(&clock, 1100).await;
    assert_eq!(f.count(), 1);
    assert_eq!(f.names(0), ["B"]);
    let a = d
        .alerts(&AlertFilter::default())
        .into_iter()
        .find(|a| a.labels["alertname"] == "A")
        .unwrap();
    assert_eq!(a.status.silenced_by, vec![id.clone()]);
    let unsilenced = AlertFilter {
        silenced: false,
        ..AlertFilter::default()
    };
    assert_eq!(d.alerts(&unsilenced).len(), 1);
    d.silences().expire(&id).unwrap();
    at(&clock, 3100).await;
    assert_eq!(f.count(), 2);
    assert_eq!(f.names(1), ["A"]);
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_delivery_is_retried_at_the_next_tick_and_a_slow_one_blocks_no_other_group() {
    let flaky = Fake::new("dingtalk[0]", true);
    flaky.failures.store(1, Ordering::SeqCst);
    let slow = Fake::slow("wecom[0]", Duration::from_secs(600));
    let routes = "  routes:\n    - { receiver: db, matchers: ['team=\"db\"'] }\n";
    let n = FakeNotifier::default()
        .with("default", &[&flaky])
        .with("db", &[&slow]);
    let (clock, d) = start_fresh(simple_config(routes, ""), n);
    d.put(vec![
        firing(&clock, &[("alertname", "Slow"), ("team", "db")]),
        firing(&clock, &[("alertname", "A")]),
    ]);
    at(&clock, 1100).await;
    assert_eq!(flaky.count(), 0, "the first attempt failed");
    at(&clock, 3100).await;
    assert_eq!(flaky.count(), 1, "retried at the next group_interval");
    assert_eq!(slow.count(), 0);
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_notification_log_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::tokio_at(BASE_MS);
    let first = Fake::new("webhook[0]", true);
    let a = firing(&clock, &[("alertname", "A")]);
    {
        let db = StateDb::open(dir.path()).unwrap();
        let d = start(
            simple_config("", ""),
            FakeNotifier::default().with("default", &[&first]),
            db,
            &clock,
        );
        d.put(vec![a.clone()]);
        at(&clock, 1100).await;
        assert_eq!(first.count(), 1);
        d.shutdown().await;
    }
    let again = Fake::new("webhook[0]", true);
    let db = StateDb::open(dir.path()).unwrap();
    let d = start(
        simple_config("", ""),
        FakeNotifier::default().with("default", &[&again]),
        db,
        &clock,
    );
    d.put(vec![Alert {
        updated_at_ms: clock.now_ms(),
        ..a
    }]);
    at(&clock, 3000).await;
    assert_eq!(again.count(), 0, "already notified before the restart");
    // repeat_interval (10 s) after the notification at 1 s: the tick at 11.1 s repeats it.
    at(&clock, 11_500).await;
    assert_eq!(again.count(), 1);
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_reload_regroups_without_notifying_twice() {
    let (def, db) = (Fake::new("webhook[0]", true), Fake::new("webhook[0]", true));
    let n = FakeNotifier::default()
        .with("default", &[&def])
        .with("db", &[&db]);
    let (clock, d) = start_fresh(simple_config("", ""), n);
    d.put(vec![firing(&clock, &[("alertname", "A"), ("team", "db")])]);
    at(&clock, 1100).await;
    assert_eq!(def.count(), 1);
    d.apply_config(simple_config("", ""));
    at(&clock, 5000).await;
    assert_eq!(
        def.count(),
        1,
        "same route, same group key: the log holds it back"
    );
    d.apply_config(simple_config(
        "  routes:\n    - { receiver: db, matchers: ['team=\"db\"'] }\n",
        "",
    ));
    at(&clock, 5000 + 1100).await;
    assert_eq!(
        (def.count(), db.count()),
        (1, 1),
        "a new route is a new group"
    );
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_reload_during_a_delivery_waits_for_it_instead_of_sending_it_again() {
    let f = Fake::slow("webhook[0]", Duration::from_secs(5));
    let (clock, d) = start_fresh(
        simple_config("", ""),
        FakeNotifier::default().with("default", &[&f]),
    );
    d.put(vec![firing(&clock, &[("alertname", "A")])]);
    // The first flush (1 s) delivers until 6 s. The reload at 2 s makes a new group for
    // the same key, which flushes at once (its alert is older than group_wait): it must
    // wait for the old delivery and then find it in the log.
    at(&clock, 2000).await;
    assert_eq!(f.count(), 0, "the first delivery is still under way");
    d.apply_config(simple_config("", ""));
    at(&clock, 12_000).await;
    assert_eq!(f.count(), 1, "notified once, not once per group");
    assert_eq!(d.inner.deliveries.locked_keys(), 0, "no lock left behind");
    // The log entry the old group wrote still drives the new group's repeat_interval
    // (10 s after 6 s: the tick at 17 s, delivered at 22 s).
    at(&clock, 22_500).await;
    assert_eq!(f.count(), 2);
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_a_delivery_in_flight_and_logs_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::tokio_at(BASE_MS);
    let a = firing(&clock, &[("alertname", "A")]);
    let slow = Fake::slow("webhook[0]", Duration::from_secs(5));
    {
        let d = start(
            simple_config("", ""),
            FakeNotifier::default().with("default", &[&slow]),
            StateDb::open(dir.path()).unwrap(),
            &clock,
        );
        d.put(vec![a.clone()]);
        // The flush at 1 s delivers until 6 s; shut down in the middle.
        at(&clock, 2000).await;
        let began = tokio::time::Instant::now();
        d.shutdown().await;
        assert_eq!(
            began.elapsed(),
            Duration::from_secs(4),
            "until the delivery ended"
        );
        assert_eq!(slow.count(), 1);
        let logged = d
            .inner
            .nflog
            .get(r#"{}:{alertname="A"}"#, "default", "webhook[0]");
        assert!(logged.is_some(), "the delivery is in the notification log");
    }
    // After a restart the notification is not sent again before repeat_interval.
    let again = Fake::new("webhook[0]", true);
    let d = start(
        simple_config("", ""),
        FakeNotifier::default().with("default", &[&again]),
        StateDb::open(dir.path()).unwrap(),
        &clock,
    );
    d.put(vec![Alert {
        updated_at_ms: clock.now_ms(),
        ..a
    }]);
    at(&clock, 12_000).await;
    assert_eq!(again.count(), 0, "already notified before the restart");
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_abandons_a_delivery_that_outlasts_its_bound() {
    let stuck = Fake::slow("webhook[0]", Duration::from_secs(3600));
    let (clock, d) = start_fresh(
        simple_config("", ""),
        FakeNotifier::default().with("default", &[&stuck]),
    );
    d.put(vec![firing(&clock, &[("alertname", "A")])]);
    at(&clock, 2000).await;
    let began = tokio::time::Instant::now();
    d.shutdown().await;
    assert_eq!(began.elapsed(), super::SHUTDOWN_DELIVERY_WAIT);
    assert_eq!(stuck.count(), 0);
}

#[tokio::test(start_paused = true)]
async fn posted_alerts_get_alertmanager_defaults_and_bad_ones_are_named() {
    let f = Fake::new("webhook[0]", true);
    let cfg = config(&format!(
        "global: {{ resolve_timeout: 1m }}\nroute:\n  receiver: default\n  group_wait: 1s\n  group_interval: 2s\n{RECEIVERS}"
    ));
    let (clock, d) = start_fresh(cfg, FakeNotifier::default().with("default", &[&f]));
    let body = r#"[
        {"labels": {"alertname": "Ext", "job": "x"}, "annotations": {"summary": "s"}, "generatorURL": "http://prom/graph"},
        {"labels": {}},
        {"labels": {"alertname": "Zero", "job": "x"}, "startsAt": "0001-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z"},
        {"labels": {"alertname": "Bad"}, "startsAt": "2030-01-01T00:00:00Z", "endsAt": "2029-01-01T00:00:00Z"}
    ]"#;
    let posted: Vec<PostableAlert> = serde_json::from_str(body).unwrap();
    let err = d.post_alerts(posted).unwrap_err();
    assert!(
        err.contains("alert 1: at least one label pair required"),
        "{err}"
    );
    assert!(
        err.contains("alert 3: start time must be before end time"),
        "{err}"
    );
    let listed = d.alerts(&AlertFilter::default());
    assert_eq!(listed.len(), 2);
    let zero = listed
        .iter()
        .find(|a| a.labels["alertname"] == "Zero")
        .unwrap();
    assert_eq!(
        (zero.starts_at, zero.ends_at),
        (Timestamp(BASE_MS), Timestamp(BASE_MS + 60_000))
    );
    let a = listed
        .iter()
        .find(|a| a.labels["alertname"] == "Ext")
        .unwrap();
    assert_eq!(a.starts_at, Timestamp(BASE_MS));
    assert_eq!(a.ends_at, Timestamp(BASE_MS + 60_000));
    assert_eq!(a.status.state, AlertState::Active);
    assert_eq!(a.generator_url, "http://prom/graph");
    let json = serde_json::to_value(a).unwrap();
    for key in [
        "startsAt",
        "endsAt",
        "updatedAt",
        "generatorURL",
        "fingerprint",
        "receivers",
        "status",
    ] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
    assert_eq!(json["status"]["silencedBy"], serde_json::json!([]));
    let filtered = AlertFilter::parse(&["job=y".into()], None).unwrap();
    assert!(d.alerts(&filtered).is_empty());
    let filtered = AlertFilter::parse(&[r#"{alertname="Ext",job=~"x|y"}"#.into()], None).unwrap();
    assert_eq!(d.alerts(&filtered).len(), 1);
    // Not re-posted: resolved after resolve_timeout, notified as resolved, then gone.
    at(&clock, 1100).await;
    assert_eq!(f.count(), 1);
    assert_eq!(f.names(0), ["Ext", "Zero"]);
    at(&clock, 61_500).await;
    assert!(d.alerts(&AlertFilter::default()).is_empty());
    assert_eq!(f.names(f.count() - 1), ["-Ext", "-Zero"]);
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn without_an_alerting_section_alerts_are_listed_and_nothing_is_sent() {
    let (clock, d) = start_fresh(Arc::new(AlertingConfig::none()), FakeNotifier::default());
    d.put(vec![firing(&clock, &[("alertname", "A")])]);
    at(&clock, 5000).await;
    let listed = d.alerts(&AlertFilter::default());
    assert_eq!(listed.len(), 1);
    assert!(listed[0].receivers.is_empty());
    d.shutdown().await;
}

#[test]
fn merging_keeps_the_earliest_start_and_a_real_end_over_a_timeout() {
    use super::{merge, Stored};
    let base = |start: i64, end: i64, updated: i64| Alert {
        labels: label_set(&[("alertname", "A")]),
        annotations: LabelSet::new(),
        starts_at_ms: start,
        ends_at_ms: Some(end),
        updated_at_ms: updated,
        generator_url: String::new(),
        evidence: Evidence::default(),
    };
    let old = Stored {
        alert: base(100, 1000, 100),
        timeout: false,
    };
    let new = Stored {
        alert: base(200, 900, 200),
        timeout: true,
    };
    let m = merge(&old, new, 300);
    assert_eq!(
        (m.alert.starts_at_ms, m.alert.ends_at_ms),
        (100, Some(1000))
    );
    assert_eq!(m.alert.updated_at_ms, 200);
}

#[tokio::test(start_paused = true)]
async fn groups_list_each_aggregation_group_with_its_receiver() {
    let f = Fake::new("webhook[0]", true);
    let routes = "  routes:\n    - { receiver: db, matchers: ['team=\"db\"'], continue: true }\n";
    let n = FakeNotifier::default()
        .with("default", &[&f])
        .with("db", &[&f]);
    let (clock, d) = start_fresh(simple_config(routes, ""), n);
    d.put(vec![
        firing(&clock, &[("alertname", "A"), ("team", "db")]),
        firing(&clock, &[("alertname", "A"), ("team", "web")]),
        firing(&clock, &[("alertname", "B"), ("team", "web")]),
    ]);
    let groups = d.groups(&AlertFilter::default());
    let shape: Vec<(String, String, usize)> = groups
        .iter()
        .map(|g| {
            (
                g.receiver.name.clone(),
                g.labels["alertname"].clone(),
                g.alerts.len(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("db".to_string(), "A".to_string(), 1),
            ("default".to_string(), "A".to_string(), 1),
            ("default".to_string(), "B".to_string(), 1),
        ]
    );
    let only_db = AlertFilter::parse(&[], Some("db")).unwrap();
    assert_eq!(d.groups(&only_db).len(), 1);
    let json = serde_json::to_value(&groups[0]).unwrap();
    assert_eq!(json["receiver"]["name"], "db");
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn gauges_count_alerts_and_silences_by_state() {
    let (clock, d) = start_fresh(simple_config("", ""), FakeNotifier::default());
    let now = clock.now_ms();
    d.silences()
        .upsert(silence("alertname", "Quiet", now, now + 3_600_000))
        .unwrap();
    d.put(vec![
        firing(&clock, &[("alertname", "Loud")]),
        firing(&clock, &[("alertname", "Quiet")]),
    ]);
    // The gauges are process-wide (tests run in parallel): check what sets them.
    assert_eq!(d.inner.alert_counts(), (1, 1));
    let counts = d.silences().counts(clock.now_ms());
    assert_eq!(counts.map(|(_, n)| n), [1, 0, 0]);
    d.inner.update_gauges();
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&prometheus::gather())
        .unwrap();
    assert!(
        text.contains("lookout_alerts{state=\"suppressed\"}"),
        "{text}"
    );
    assert!(
        text.contains("lookout_silences{state=\"active\"}"),
        "{text}"
    );
    let before = super::ALERTS_RECEIVED.get();
    d.put(vec![firing(&clock, &[("alertname", "Loud")])]);
    assert!(super::ALERTS_RECEIVED.get() > before);
    d.shutdown().await;
}

#[test]
fn starting_outside_a_runtime_is_an_error_not_a_panic() {
    let r = Dispatcher::start(
        Arc::new(AlertingConfig::none()),
        Arc::new(FakeNotifier::default()),
        StateDb::temporary().unwrap(),
        "http://x",
    );
    let err = r.err().expect("an error");
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}
