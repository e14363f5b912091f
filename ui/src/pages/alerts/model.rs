//! What the alerts page reads, in the APIs' JSON: Prometheus's `/api/v1/rules` (groups,
//! rules, their pending and firing alerts), Alertmanager's `/api/v2/alerts` and
//! `/api/v2/silences`, and Lookout's delivery record `/api/v1/notifications`; and the pure
//! logic over them: one alert list merged from the rules' alerts and Alertmanager's (which
//! knows what is silenced or inhibited, and holds alerts posted by other Prometheus
//! servers), relative times, and the query behind an alert.
//!
//! The types serialize back to the same JSON, because the page's resources travel to the
//! browser inside the server-rendered HTML.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::matchers::Matcher;
use crate::promql::parse_value;
use crate::time::parse_time;

pub type Labels = BTreeMap<String, String>;

/// One group of `/api/v1/rules`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleGroup {
    pub name: String,
    #[serde(default)]
    pub file: String,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub interval: f64,
    #[serde(default)]
    pub evaluation_time: f64,
    #[serde(default)]
    pub last_evaluation: String,
}

/// One rule of a group: alerting (`type: alerting`) or recording.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub name: String,
    #[serde(default)]
    pub query: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `inactive`, `pending` or `firing` (alerting rules only).
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub health: String,
    #[serde(default)]
    pub last_error: String,
    #[serde(default)]
    pub evaluation_time: f64,
    #[serde(default)]
    pub last_evaluation: String,
    /// `for`, seconds.
    #[serde(default)]
    pub duration: f64,
    #[serde(default)]
    pub keep_firing_for: f64,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub annotations: Labels,
    #[serde(default)]
    pub alerts: Vec<RuleAlert>,
    /// Lookout's log rules.
    #[serde(default)]
    pub logs_expr: Option<LogsExpr>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogsExpr {
    pub query: String,
    pub window: f64,
    pub threshold: f64,
}

/// A pending or firing alert of a rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleAlert {
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub annotations: Labels,
    pub state: String,
    pub active_at: String,
    #[serde(default)]
    pub value: String,
}

/// `data` of `/api/v1/rules`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RulesData {
    pub groups: Vec<RuleGroup>,
}

/// One alert of Alertmanager's `GET /api/v2/alerts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmAlert {
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub annotations: Labels,
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: String,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    #[serde(default)]
    pub fingerprint: String,
    #[serde(default)]
    pub receivers: Vec<Named>,
    pub status: AmStatus,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Named {
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmStatus {
    /// `active`, `suppressed` or `unprocessed`.
    pub state: String,
    #[serde(default)]
    pub silenced_by: Vec<String>,
    #[serde(default)]
    pub inhibited_by: Vec<String>,
}

/// One silence of `GET /api/v2/silences`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Silence {
    pub id: String,
    pub status: SilenceStatus,
    #[serde(default)]
    pub updated_at: String,
    pub matchers: Vec<Matcher>,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SilenceStatus {
    /// `active`, `pending` or `expired`.
    pub state: String,
}

/// The body of `POST /api/v2/silences`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSilence {
    pub matchers: Vec<Matcher>,
    pub starts_at: String,
    pub ends_at: String,
    pub created_by: String,
    pub comment: String,
}

/// The answer of `POST /api/v2/silences`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SilenceCreated {
    #[serde(rename = "silenceID")]
    pub silence_id: String,
}

/// One delivery attempt of `/api/v1/notifications`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub receiver: String,
    /// `dingtalk[0]`, `webhook[1]`, ...
    pub integration: String,
    #[serde(default)]
    pub kind: String,
    pub time: String,
    /// `success`, `retrying` or `failed`.
    pub outcome: String,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub status_code: Option<u16>,
    /// The platform's `errcode` (DingTalk, WeCom).
    #[serde(default)]
    pub errcode: Option<i64>,
    #[serde(default)]
    pub errmsg: Option<String>,
    #[serde(default)]
    pub group_key: String,
    #[serde(default)]
    pub alerts: usize,
    #[serde(default)]
    pub messages: usize,
    #[serde(default)]
    pub digest: bool,
}

/// Where an alert's condition can be looked at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Condition {
    PromQl(String),
    Logs(String),
}

/// One row of the alert list: a rule's alert with what Alertmanager knows of it, or an alert
/// only Alertmanager has (posted by another Prometheus).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRow {
    pub labels: Labels,
    pub annotations: Labels,
    /// `firing` or `pending`.
    pub state: String,
    /// Active since (Unix seconds): the rule's `activeAt`, else Alertmanager's `startsAt`.
    pub since: Option<f64>,
    /// The value as the API wrote it (`2e+01`), for rules' alerts.
    pub value: Option<String>,
    /// `group / rule` for rules' alerts.
    pub rule: Option<String>,
    pub condition: Option<Condition>,
    pub silenced_by: Vec<String>,
    pub inhibited_by: Vec<String>,
    pub receivers: Vec<String>,
    /// Only in Alertmanager (no Lookout rule behind it).
    pub external: bool,
}

impl AlertRow {
    pub fn alertname(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    pub fn silenced(&self) -> bool {
        !self.silenced_by.is_empty()
    }

    pub fn inhibited(&self) -> bool {
        !self.inhibited_by.is_empty()
    }

    /// The service the alert is about: the `service` label, else `service_name` (as the
    /// alerter's message links pick it).
    pub fn service(&self) -> Option<&str> {
        self.labels
            .get("service")
            .or_else(|| self.labels.get("service_name"))
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// Unix seconds of an API time; `None` for an unreadable one or Go's zero time (a rule never
/// evaluated shows `0001-01-01T00:00:00Z`).
pub fn api_time(s: &str) -> Option<f64> {
    parse_time(s, 0.0).filter(|t| *t > 0.0)
}

/// The alert list: every pending and firing alert of the rules, each joined with the
/// Alertmanager alert that carries its labels (for silences, inhibitions and receivers),
/// then the Alertmanager alerts no rule accounts for and that have not ended by `now`.
/// Firing before pending, then by name and labels.
pub fn merge_alerts(groups: &[RuleGroup], am: &[AmAlert], now: f64) -> Vec<AlertRow> {
    let mut used = vec![false; am.len()];
    let mut rows = Vec::new();
    for g in groups {
        for r in &g.rules {
            let condition = match &r.logs_expr {
                Some(l) => Some(Condition::Logs(l.query.clone())),
                None if !r.query.is_empty() => Some(Condition::PromQl(r.query.clone())),
                None => None,
            };
            for a in &r.alerts {
                // Alertmanager may hold external labels on top of the rule's: a superset
                let found = am.iter().enumerate().position(|(i, m)| {
                    !used[i]
                        && a.labels
                            .iter()
                            .all(|(k, v)| m.labels.get(k).is_some_and(|mv| mv == v))
                });
                let m = found.map(|i| {
                    used[i] = true;
                    &am[i]
                });
                rows.push(AlertRow {
                    labels: a.labels.clone(),
                    annotations: a.annotations.clone(),
                    state: a.state.clone(),
                    since: api_time(&a.active_at),
                    value: Some(a.value.clone()).filter(|v| !v.is_empty()),
                    rule: Some(format!("{} / {}", g.name, r.name)),
                    condition: condition.clone(),
                    silenced_by: m.map(|m| m.status.silenced_by.clone()).unwrap_or_default(),
                    inhibited_by: m.map(|m| m.status.inhibited_by.clone()).unwrap_or_default(),
                    receivers: m
                        .map(|m| m.receivers.iter().map(|r| r.name.clone()).collect())
                        .unwrap_or_default(),
                    external: false,
                });
            }
        }
    }
    for (m, _) in am.iter().zip(&used).filter(|(_, u)| !**u) {
        if api_time(&m.ends_at).is_some_and(|end| end <= now) {
            continue;
        }
        rows.push(AlertRow {
            labels: m.labels.clone(),
            annotations: m.annotations.clone(),
            state: "firing".into(),
            since: api_time(&m.starts_at),
            value: None,
            rule: None,
            condition: condition_of_generator(&m.generator_url),
            silenced_by: m.status.silenced_by.clone(),
            inhibited_by: m.status.inhibited_by.clone(),
            receivers: m.receivers.iter().map(|r| r.name.clone()).collect(),
            external: true,
        });
    }
    rows.sort_by(|a, b| {
        (a.state != "firing", a.alertname(), &a.labels).cmp(&(
            b.state != "firing",
            b.alertname(),
            &b.labels,
        ))
    });
    rows
}

/// The query behind an Alertmanager alert's `generatorURL`: Lookout's own
/// (`.../explore?query=`, `.../logs?query=`) or Prometheus's (`.../graph?g0.expr=`).
pub fn condition_of_generator(url: &str) -> Option<Condition> {
    let (path, query) = url.split_once('?')?;
    let query = query.split('#').next().unwrap_or("");
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| percent_decode(v))
            .filter(|v| !v.is_empty())
    };
    if path.ends_with("/logs") {
        return param("query").map(Condition::Logs);
    }
    param("g0.expr")
        .or_else(|| param("query"))
        .map(Condition::PromQl)
}

/// Decodes a query-string value (`%XX` and `+` for space); bad escapes stay as they are.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A span of seconds in at most two units: `45s`, `5m`, `5m 3s` under 10 minutes,
/// `2h 5m`, `3d 4h`.
pub fn span(secs: f64) -> String {
    if !secs.is_finite() {
        return "-".into();
    }
    let s = secs.abs().floor() as u64;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    let two = |a: u64, ua: &str, b: u64, ub: &str| {
        if b == 0 {
            format!("{a}{ua}")
        } else {
            format!("{a}{ua} {b}{ub}")
        }
    };
    if d > 0 {
        two(d, "d", h, "h")
    } else if h > 0 {
        two(h, "h", m, "m")
    } else if m >= 10 {
        format!("{m}m")
    } else if m > 0 {
        two(m, "m", sec, "s")
    } else {
        format!("{sec}s")
    }
}

/// `t` relative to `now`: the span and whether it is in the past (`5m` ago) or the future
/// (in `5m`). Both sides render it from the data's own `now`, never from a running clock,
/// so the server's HTML and the hydrated page agree.
pub fn relative(t: f64, now: f64) -> (String, bool) {
    (span(now - t), t <= now)
}

/// An alert value as the API writes it (`2e+01`) in a short form (`20`).
pub fn short_value(raw: &str) -> String {
    let v = parse_value(raw);
    if v.is_nan() && raw != "NaN" {
        return raw.to_string();
    }
    if v.is_finite() && v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e15) {
        return format!("{v:e}");
    }
    crate::format::si(v)
}

/// `2026-11-21T16:40:05.000Z` for Unix seconds (what the v2 API takes).
pub fn rfc3339(secs: f64) -> String {
    let ms = (secs * 1000.0).round() as i64;
    let whole = ms.div_euclid(1000) as f64;
    let frac = ms.rem_euclid(1000);
    format!(
        "{}.{frac:03}Z",
        crate::format::datetime(whole).replace(' ', "T")
    )
}

/// How many alerts each silence silences now.
pub fn silenced_counts(am: &[AmAlert]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for a in am {
        for id in &a.status.silenced_by {
            *out.entry(id.clone()).or_insert(0) += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn am(l: Labels, silenced: &[&str], ends_at: &str, url: &str) -> AmAlert {
        AmAlert {
            labels: l,
            annotations: Labels::new(),
            starts_at: "2026-11-21T16:00:00Z".into(),
            ends_at: ends_at.into(),
            generator_url: url.into(),
            fingerprint: "f".into(),
            receivers: vec![Named {
                name: "oncall".into(),
            }],
            status: AmStatus {
                state: if silenced.is_empty() {
                    "active"
                } else {
                    "suppressed"
                }
                .into(),
                silenced_by: silenced.iter().map(|s| s.to_string()).collect(),
                inhibited_by: vec![],
            },
        }
    }

    #[test]
    fn since_is_relative_to_the_data_time() {
        let now = 1_795_279_205.0;
        assert_eq!(relative(now - 300.0, now), ("5m".to_string(), true));
        assert_eq!(relative(now - 303.0, now), ("5m 3s".to_string(), true));
        assert_eq!(relative(now - 42.9, now), ("42s".to_string(), true));
        assert_eq!(relative(now - 7500.0, now), ("2h 5m".to_string(), true));
        assert_eq!(
            relative(now - 3.0 * 86_400.0 - 4.0 * 3600.0 - 59.0, now).0,
            "3d 4h"
        );
        assert_eq!(relative(now + 7200.0, now), ("2h".to_string(), false));
        assert_eq!(relative(now, now), ("0s".to_string(), true));
        assert_eq!(span(900.0), "15m");
        assert_eq!(span(f64::NAN), "-");
    }

    #[test]
    fn api_times_and_go_zero_time() {
        assert_eq!(api_time("2026-11-21T16:40:05Z"), Some(1_795_279_205.0));
        assert_eq!(api_time("2026-11-21T16:40:05.25Z"), Some(1_795_279_205.25));
        assert_eq!(api_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(api_time(""), None);
        assert_eq!(rfc3339(1_795_279_205.25), "2026-11-21T16:40:05.250Z");
        assert_eq!(api_time(&rfc3339(1_795_279_205.25)), Some(1_795_279_205.25));
    }

    #[test]
    fn rule_alerts_join_alertmanager_and_external_alerts_follow() {
        let rule_labels = labels(&[("alertname", "HighErrors"), ("service", "pay")]);
        let groups = vec![RuleGroup {
            name: "red".into(),
            file: "rules/red.yaml".into(),
            interval: 15.0,
            evaluation_time: 0.01,
            last_evaluation: "2026-11-21T16:40:00Z".into(),
            rules: vec![Rule {
                name: "HighErrors".into(),
                query: "rate(errors[5m]) > 1".into(),
                kind: "alerting".into(),
                state: Some("firing".into()),
                health: "ok".into(),
                last_error: String::new(),
                evaluation_time: 0.01,
                last_evaluation: "2026-11-21T16:40:00Z".into(),
                duration: 60.0,
                keep_firing_for: 0.0,
                labels: Labels::new(),
                annotations: Labels::new(),
                alerts: vec![
                    RuleAlert {
                        labels: rule_labels.clone(),
                        annotations: labels(&[("summary", "pay fails")]),
                        state: "firing".into(),
                        active_at: "2026-11-21T16:30:00Z".into(),
                        value: "2e+01".into(),
                    },
                    RuleAlert {
                        labels: labels(&[("alertname", "HighErrors"), ("service", "cart")]),
                        annotations: Labels::new(),
                        state: "pending".into(),
                        active_at: "2026-11-21T16:39:00Z".into(),
                        value: "3e+00".into(),
                    },
                ],
                logs_expr: None,
            }],
        }];
        let mut with_external = rule_labels.clone();
        with_external.insert("cluster".into(), "eu".into());
        let now = api_time("2026-11-21T16:40:05Z").unwrap();
        let am_alerts = vec![
            am(
                labels(&[("alertname", "DiskFull"), ("instance", "db1")]),
                &[],
                "2026-11-21T17:00:00Z",
                "http://prom:9090/graph?g0.expr=node_filesystem_avail_bytes+%3C+1e9&g0.tab=1",
            ),
            am(with_external, &["s1"], "2026-11-21T17:00:00Z", ""),
            // ended: not shown
            am(
                labels(&[("alertname", "Old")]),
                &[],
                "2026-11-21T16:00:00Z",
                "",
            ),
        ];
        let rows = merge_alerts(&groups, &am_alerts, now);
        let names: Vec<(&str, &str, bool)> = rows
            .iter()
            .map(|r| (r.alertname(), r.state.as_str(), r.external))
            .collect();
        assert_eq!(
            names,
            [
                ("DiskFull", "firing", true),
                ("HighErrors", "firing", false),
                ("HighErrors", "pending", false)
            ]
        );
        let pay = &rows[1];
        assert_eq!(pay.silenced_by, ["s1"]);
        assert!(pay.silenced());
        assert_eq!(pay.service(), Some("pay"));
        assert_eq!(pay.since, api_time("2026-11-21T16:30:00Z"));
        assert_eq!(pay.receivers, ["oncall"]);
        assert_eq!(pay.rule.as_deref(), Some("red / HighErrors"));
        assert_eq!(
            pay.condition,
            Some(Condition::PromQl("rate(errors[5m]) > 1".into()))
        );
        assert!(!rows[2].silenced() && rows[2].receivers.is_empty());
        assert_eq!(
            rows[0].condition,
            Some(Condition::PromQl(
                "node_filesystem_avail_bytes < 1e9".into()
            ))
        );
    }

    #[test]
    fn generator_urls_name_their_query() {
        assert_eq!(
            condition_of_generator("http://l:9800/explore?query=sum%28rate%28x%5B5m%5D%29%29"),
            Some(Condition::PromQl("sum(rate(x[5m]))".into()))
        );
        assert_eq!(
            condition_of_generator("http://l:9800/logs?query=service%3Apay%20AND%20error"),
            Some(Condition::Logs("service:pay AND error".into()))
        );
        assert_eq!(condition_of_generator("http://l:9800/"), None);
        assert_eq!(condition_of_generator(""), None);
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%E6%9C%8D"), "服");
    }

    #[test]
    fn values_are_short() {
        assert_eq!(short_value("2e+01"), "20");
        assert_eq!(short_value("1.234e+02"), "123");
        assert_eq!(short_value("5e-06"), "5e-6");
        assert_eq!(short_value("NaN"), "NaN");
        assert_eq!(short_value("+Inf"), "+Inf");
        assert_eq!(short_value("weird"), "weird");
    }

    #[test]
    fn silences_count_their_alerts() {
        let a = am(labels(&[("a", "1")]), &["s1", "s2"], "", "");
        let b = am(labels(&[("a", "2")]), &["s1"], "", "");
        let c = silenced_counts(&[a, b]);
        assert_eq!(c.get("s1"), Some(&2));
        assert_eq!(c.get("s2"), Some(&1));
    }
}
