//! `GET /api/v1/rules` and `GET /api/v1/alerts` in Prometheus's JSON.
//!
//! Times are Go's `time.Time` JSON (RFC 3339 with the fraction's trailing zeros trimmed;
//! `0001-01-01T00:00:00Z` for a rule never evaluated), durations in seconds, alert values
//! as strings in Go's `%e` form (`1e+00`), as Prometheus 2.42 writes them.

use std::collections::BTreeSet;

use alerter::model::LabelSet;
use alerter::rules::file::{AlertCondition, Rule};
use alerter::rules::manager::{AlertStatus, GroupStatus, RuleStatus};
use axum::response::Response;
use serde::Serialize;

use super::AlertingAppState;
use crate::error::ApiError;
use crate::params::{invalid_param, Params};
use crate::traces::json_success;

/// Go's zero `time.Time`, what Prometheus shows for a rule not evaluated yet.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Go's RFC 3339 with nanoseconds, trailing zeros of the fraction trimmed.
pub fn go_time(ms: i64) -> String {
    let full = alerter::dispatch::api_types::format_rfc3339(ms);
    // `...SS.mmmZ`: drop a zero fraction, trim trailing zeros of the rest
    match full.strip_suffix('Z').and_then(|t| t.rsplit_once('.')) {
        Some((head, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                format!("{head}Z")
            } else {
                format!("{head}.{frac}Z")
            }
        }
        None => full,
    }
}

fn last_evaluation(ms: Option<i64>) -> String {
    ms.map_or_else(|| GO_ZERO_TIME.to_string(), go_time)
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`: `1e+00`, `1.234e+02`, `5e-01`.
pub fn go_float_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = format!("{v:e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

/// Seconds as Go's JSON writes a float64: `60`, not `60.0`.
#[derive(Clone, Copy)]
struct Seconds(f64);

impl Serialize for Seconds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.fract() == 0.0 && self.0.abs() < 9e15 {
            s.serialize_i64(self.0 as i64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

fn secs(d: std::time::Duration) -> Seconds {
    Seconds(d.as_secs_f64())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertJson<'a> {
    labels: &'a LabelSet,
    annotations: &'a LabelSet,
    state: &'static str,
    active_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_firing_since: Option<String>,
    value: String,
}

impl<'a> AlertJson<'a> {
    fn new(a: &'a AlertStatus) -> Self {
        AlertJson {
            labels: &a.labels,
            annotations: &a.annotations,
            state: a.state,
            active_at: go_time(a.active_at_ms),
            keep_firing_since: a.keep_firing_since_ms.map(go_time),
            value: go_float_e(a.value),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertingRuleJson<'a> {
    state: &'static str,
    name: &'a str,
    query: &'a str,
    duration: Seconds,
    keep_firing_for: Seconds,
    labels: &'a LabelSet,
    annotations: &'a LabelSet,
    alerts: Vec<AlertJson<'a>>,
    health: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    last_error: &'a str,
    evaluation_time: Seconds,
    last_evaluation: String,
    /// Lookout's log rules: the log query, window (seconds) and threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    logs_expr: Option<LogsExprJson<'a>>,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct LogsExprJson<'a> {
    query: &'a str,
    window: Seconds,
    threshold: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordingRuleJson<'a> {
    name: &'a str,
    query: &'a str,
    labels: &'a LabelSet,
    health: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    last_error: &'a str,
    evaluation_time: Seconds,
    last_evaluation: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum RuleJson<'a> {
    Alerting(AlertingRuleJson<'a>),
    Recording(RecordingRuleJson<'a>),
}

impl<'a> RuleJson<'a> {
    fn new(r: &'a RuleStatus) -> Self {
        match &r.rule {
            Rule::Alerting(a) => RuleJson::Alerting(AlertingRuleJson {
                state: r.state,
                name: &a.name,
                query: r.rule.query(),
                duration: secs(a.for_),
                keep_firing_for: secs(a.keep_firing_for),
                labels: &a.labels,
                annotations: &a.annotations,
                alerts: r.alerts.iter().map(AlertJson::new).collect(),
                health: r.health,
                last_error: &r.last_error,
                evaluation_time: secs(r.evaluation_time),
                last_evaluation: last_evaluation(r.last_evaluation_ms),
                logs_expr: match &a.condition {
                    AlertCondition::Logs(l) => Some(LogsExprJson {
                        query: &l.query,
                        window: secs(l.window),
                        threshold: l.threshold,
                    }),
                    AlertCondition::PromQl(_) => None,
                },
                kind: "alerting",
            }),
            Rule::Recording(rec) => RuleJson::Recording(RecordingRuleJson {
                name: &rec.name,
                query: &rec.expr,
                labels: &rec.labels,
                health: r.health,
                last_error: &r.last_error,
                evaluation_time: secs(r.evaluation_time),
                last_evaluation: last_evaluation(r.last_evaluation_ms),
                kind: "recording",
            }),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupJson<'a> {
    name: &'a str,
    file: String,
    rules: Vec<RuleJson<'a>>,
    interval: Seconds,
    limit: usize,
    evaluation_time: Seconds,
    last_evaluation: String,
}

#[derive(Serialize)]
struct RulesData<'a> {
    groups: Vec<GroupJson<'a>>,
}

#[derive(Serialize)]
struct AlertsData<'a> {
    alerts: Vec<AlertJson<'a>>,
}

/// Which rules to show: `type=alert|record`, `rule_name[]`, `rule_group[]`, `file[]`.
struct RuleFilter {
    alerting: bool,
    recording: bool,
    names: BTreeSet<String>,
    groups: BTreeSet<String>,
    files: BTreeSet<String>,
}

impl RuleFilter {
    fn parse(params: &Params) -> Result<Self, ApiError> {
        let (alerting, recording) = match params.get("type").map(str::to_ascii_lowercase) {
            None => (true, true),
            Some(t) if t == "alert" => (true, false),
            Some(t) if t == "record" => (false, true),
            Some(t) => return Err(invalid_param("type", format!("not supported value {t:?}"))),
        };
        let set = |name: &str| -> BTreeSet<String> {
            params.all(name).into_iter().map(str::to_string).collect()
        };
        Ok(RuleFilter {
            alerting,
            recording,
            names: set("rule_name[]"),
            groups: set("rule_group[]"),
            files: set("file[]"),
        })
    }

    fn group(&self, g: &GroupStatus) -> bool {
        (self.groups.is_empty() || self.groups.contains(&g.name))
            && (self.files.is_empty() || self.files.contains(&g.file.display().to_string()))
    }

    fn rule(&self, r: &RuleStatus) -> bool {
        let kind = match r.rule {
            Rule::Alerting(_) => self.alerting,
            Rule::Recording(_) => self.recording,
        };
        kind && (self.names.is_empty() || self.names.contains(r.rule.name()))
    }
}

/// `GET /api/v1/rules`.
pub async fn rules(
    axum::extract::State(state): AlertingAppState,
    params: Params,
) -> Result<Response, ApiError> {
    let filter = RuleFilter::parse(&params)?;
    let groups = state.alerter()?.rules().groups();
    let data = RulesData {
        groups: groups
            .iter()
            .filter(|g| filter.group(g))
            .map(|g| GroupJson {
                name: &g.name,
                file: g.file.display().to_string(),
                rules: g
                    .rules
                    .iter()
                    .filter(|r| filter.rule(r))
                    .map(RuleJson::new)
                    .collect(),
                interval: secs(g.interval),
                limit: g.limit,
                evaluation_time: secs(g.evaluation_time),
                last_evaluation: last_evaluation(g.last_evaluation_ms),
            })
            // a rule-name filter drops groups left without rules, as Prometheus does
            .filter(|g| filter.names.is_empty() || !g.rules.is_empty())
            .collect(),
    };
    json_success(&data)
}

/// `GET /api/v1/alerts`: every pending and firing alert of every alerting rule.
pub async fn alerts(axum::extract::State(state): AlertingAppState) -> Result<Response, ApiError> {
    let groups = state.alerter()?.rules().groups();
    let data = AlertsData {
        alerts: groups
            .iter()
            .flat_map(|g| g.rules.iter())
            .flat_map(|r| r.alerts.iter())
            .map(AlertJson::new)
            .collect(),
    };
    json_success(&data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_formats() {
        assert_eq!(go_float_e(1.0), "1e+00");
        assert_eq!(go_float_e(123.4), "1.234e+02");
        assert_eq!(go_float_e(0.5), "5e-01");
        assert_eq!(go_float_e(1e-300), "1e-300");
        assert_eq!(go_float_e(f64::NAN), "NaN");
        assert_eq!(go_time(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(go_time(1_700_000_000_120), "2023-11-14T22:13:20.12Z");
        assert_eq!(last_evaluation(None), GO_ZERO_TIME);
    }
}
