//! Evaluating one rule group at one time, as Prometheus 2.42's `rules/alerting.go`,
//! `recording.go` and `manager.go` do.
//!
//! * Rules run in order; a recording rule's output is written at once (through `write`), so
//!   later rules of the group see it.
//! * Alerting rules keep one [`ActiveAlert`] per output label set (keyed by fingerprint):
//!   pending when first seen, firing once it has been active for `for`, kept firing for
//!   `keep_firing_for` after it disappears, then inactive (resolved) and kept 15 minutes so
//!   the resolution is re-sent. Each evaluation writes `ALERTS` and `ALERTS_FOR_STATE` for
//!   the pending and firing ones.
//! * Firing and resolved alerts are handed back for sending when new or when not sent for
//!   `RESEND_DELAY`, with Prometheus's `ends_at`.
//! * Series a rule wrote at the previous evaluation and not at this one get a staleness
//!   marker, so they end at once instead of lingering for the lookback window.
//! * A failing rule (query error, limit, duplicate label sets) reports `health: err` and its
//!   error; the other rules still run.
//!
//! Evaluation is synchronous (the PromQL engine is); the manager runs it on a blocking
//! thread. [`GroupState`] is what the manager persists between evaluations and restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use store::logs::{HistogramRequest, LogQuery, LogsQuerier};
use store::model::{stale_nan, Label, Labels, MetricBatch, Sample, Series, METRIC_NAME_LABEL};
use store::promql::{Engine, Value};
use store::traces::{TraceQuery, TracesQuerier};

use super::file::{AlertCondition, AlertingRule, RecordingRule, Rule, RuleGroup};
use super::template;
use crate::model::{Alert, Evidence, Fingerprint, LabelSet};

/// How long a resolved alert is kept (and re-sent), as Prometheus's `resolvedRetention`.
pub const RESOLVED_RETENTION: Duration = Duration::from_secs(15 * 60);
/// Minimum time between two sends of the same firing alert (Prometheus's `--rules.alert.resend-delay`).
pub const RESEND_DELAY: Duration = Duration::from_secs(60);
/// How far back failing traces are looked for, before the alert became active.
pub const TRACE_LOOKBEHIND: Duration = Duration::from_secs(15 * 60);
/// Most example trace ids an alert carries.
pub const MAX_TRACE_IDS: usize = 3;

pub const ALERTS_METRIC: &str = "ALERTS";
pub const ALERTS_FOR_STATE_METRIC: &str = "ALERTS_FOR_STATE";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    #[default]
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of an alerting rule, as Prometheus's `rules.Alert`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    pub labels: LabelSet,
    pub annotations: LabelSet,
    pub state: AlertState,
    /// The value at the last evaluation that returned the alert.
    #[serde(with = "float_text")]
    pub value: f64,
    /// When the condition first held (the `for` clock starts here).
    pub active_at_ms: i64,
    #[serde(default)]
    pub fired_at_ms: Option<i64>,
    #[serde(default)]
    pub resolved_at_ms: Option<i64>,
    #[serde(default)]
    pub last_sent_at_ms: Option<i64>,
    #[serde(default)]
    pub valid_until_ms: Option<i64>,
    #[serde(default)]
    pub keep_firing_since_ms: Option<i64>,
    #[serde(default)]
    pub evidence: Evidence,
}

impl ActiveAlert {
    fn needs_sending(&self, t_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        let last_sent = self.last_sent_at_ms.unwrap_or(i64::MIN);
        // resolved since the last send: send the resolution now
        if self.resolved_at_ms.is_some_and(|r| r > last_sent) {
            return true;
        }
        last_sent.saturating_add(ms(RESEND_DELAY)) < t_ms
    }
}

/// `ok`, `err` or `unknown` (never evaluated), as `/api/v1/rules` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    #[default]
    Unknown,
    Ok,
    Err,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

/// A rule's health after its last evaluation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleHealth {
    pub health: Health,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub eval_duration: Duration,
    #[serde(default)]
    pub last_evaluation_ms: Option<i64>,
}

/// What is kept of one rule between evaluations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// [`Rule::identity`] of the rule this state belongs to.
    pub identity: String,
    /// Alerts by fingerprint (16 hex digits) of their labels; alerting rules only.
    #[serde(default)]
    pub active: BTreeMap<String, ActiveAlert>,
    /// Series written at the last successful evaluation (staleness markers for the ones
    /// that disappear).
    #[serde(default)]
    pub previous_series: Vec<LabelSet>,
    #[serde(default)]
    pub health: RuleHealth,
}

impl RuleState {
    fn new(identity: String) -> Self {
        RuleState {
            identity,
            ..RuleState::default()
        }
    }

    /// Pending and firing alerts (resolved ones kept for re-sending are not listed, as
    /// Prometheus's `ActiveAlerts`).
    pub fn alerts(&self) -> impl Iterator<Item = &ActiveAlert> {
        self.active
            .values()
            .filter(|a| a.state != AlertState::Inactive)
    }

    /// The rule's state: the most severe of its alerts'.
    pub fn state(&self) -> AlertState {
        self.alerts()
            .map(|a| a.state)
            .max()
            .unwrap_or(AlertState::Inactive)
    }
}

/// What is kept of one group between evaluations (and persisted across restarts).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    /// One per rule of the group, in order.
    pub rules: Vec<RuleState>,
    #[serde(default)]
    pub last_evaluation_ms: Option<i64>,
    #[serde(default)]
    pub evaluation_duration: Duration,
}

impl GroupState {
    /// A fresh state for `group`: every rule inactive, health unknown.
    pub fn new(group: &RuleGroup) -> Self {
        GroupState {
            rules: group
                .rules
                .iter()
                .map(|r| RuleState::new(r.identity()))
                .collect(),
            last_evaluation_ms: None,
            evaluation_duration: Duration::ZERO,
        }
    }

    /// The state for `new_group` after a reload (or a restart with edited rule files):
    /// each rule takes the state of the first not yet taken rule of `old` with the same
    /// identity (kind, name and labels, as Prometheus's `CopyState`), so pending `for`
    /// clocks and firing alerts survive. `old_group` is the group `old` belonged to; the
    /// state's own identities are used, so a state from disk works without it.
    pub fn carry_over(old: &GroupState, _old_group: &RuleGroup, new_group: &RuleGroup) -> Self {
        let mut fresh = GroupState::new(new_group);
        fresh.align_from(old);
        fresh
    }

    /// Makes `rules` match `group` one to one, taking matching states from what is there.
    fn align(&mut self, group: &RuleGroup) {
        let aligned = self.rules.len() == group.rules.len()
            && self
                .rules
                .iter()
                .zip(&group.rules)
                .all(|(s, r)| s.identity == r.identity());
        if !aligned {
            let old = std::mem::take(self);
            *self = GroupState::new(group);
            self.align_from(&old);
        }
    }

    fn align_from(&mut self, old: &GroupState) {
        self.last_evaluation_ms = old.last_evaluation_ms;
        self.evaluation_duration = old.evaluation_duration;
        let mut taken = vec![false; old.rules.len()];
        for rs in &mut self.rules {
            if let Some(i) =
                (0..old.rules.len()).find(|&i| !taken[i] && old.rules[i].identity == rs.identity)
            {
                taken[i] = true;
                let identity = std::mem::take(&mut rs.identity);
                *rs = old.rules[i].clone();
                rs.identity = identity;
            }
        }
    }
}

/// What evaluation needs besides the group and its state.
pub struct EvalContext<'a> {
    pub engine: &'a Engine,
    pub logs: Option<&'a dyn LogsQuerier>,
    pub traces: Option<&'a dyn TracesQuerier>,
    pub external_labels: &'a LabelSet,
    /// Base URL of the UI (links, `$externalURL`), without a trailing `/`.
    pub external_url: &'a str,
    /// The group's evaluation interval (sets how long a sent alert stays valid).
    pub interval: Duration,
}

/// The result of one group evaluation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupEvalOutcome {
    /// Alerts to hand to the dispatcher now.
    pub alerts_to_send: Vec<Alert>,
    /// Each rule's health, in rule order.
    pub rules: Vec<RuleHealth>,
    /// The whole group's evaluation time.
    pub duration: Duration,
    /// Rules that failed.
    pub failures: usize,
}

/// Evaluates every rule of `group` at `t_ms`, updating `state`; series (recording rules,
/// `ALERTS`, `ALERTS_FOR_STATE`, staleness markers) go through `write`, one batch per rule.
pub fn eval_group(
    group: &RuleGroup,
    state: &mut GroupState,
    ctx: &EvalContext<'_>,
    t_ms: i64,
    write: &mut dyn FnMut(MetricBatch) -> Result<(), String>,
) -> GroupEvalOutcome {
    let started = Instant::now();
    state.align(group);
    let mut outcome = GroupEvalOutcome::default();
    for (rule, rs) in group.rules.iter().zip(state.rules.iter_mut()) {
        let rule_started = Instant::now();
        let result = match rule {
            Rule::Alerting(r) => eval_alerting(r, rs, ctx, group.limit, t_ms),
            Rule::Recording(r) => eval_recording(r, ctx, group.limit, t_ms),
        };
        match result {
            Ok(series) => {
                rs.health.health = Health::Ok;
                rs.health.last_error = None;
                if let Rule::Alerting(r) = rule {
                    outcome
                        .alerts_to_send
                        .extend(alerts_to_send(r, rs, ctx, t_ms));
                }
                let batch = with_stale_markers(series, rs, t_ms);
                if !batch.series.is_empty() {
                    if let Err(e) = write(batch) {
                        // as Prometheus: an append failure is logged, the rule stays healthy
                        tracing::warn!(rule = rule.name(), error = %e, "rule evaluation result discarded");
                    }
                }
            }
            Err(e) => {
                outcome.failures += 1;
                rs.health.health = Health::Err;
                rs.health.last_error = Some(e);
            }
        }
        rs.health.eval_duration = rule_started.elapsed();
        rs.health.last_evaluation_ms = Some(t_ms);
        outcome.rules.push(rs.health.clone());
    }
    outcome.duration = started.elapsed();
    state.last_evaluation_ms = Some(t_ms);
    state.evaluation_duration = outcome.duration;
    outcome
}

/// Adds staleness markers for the series written last time and not now, and remembers
/// what was written.
fn with_stale_markers(series: Vec<Series>, rs: &mut RuleState, t_ms: i64) -> MetricBatch {
    let now: Vec<LabelSet> = series.iter().map(|s| to_label_set(&s.labels)).collect();
    let now_set: BTreeSet<&LabelSet> = now.iter().collect();
    let mut out = series;
    for old in &rs.previous_series {
        if !now_set.contains(old) {
            out.push(Series {
                labels: to_labels(old),
                samples: vec![Sample::new(t_ms, stale_nan())],
            });
        }
    }
    rs.previous_series = now;
    MetricBatch {
        series: out,
        metadata: Vec::new(),
    }
}

/// One query result element: series labels (with `__name__`) and value.
struct Point {
    labels: Labels,
    value: f64,
}

fn query_vector(engine: &Engine, expr: &str, t_ms: i64) -> Result<Vec<Point>, String> {
    match engine.instant(expr, t_ms).map_err(|e| e.to_string())? {
        Value::Vector(v) => Ok(v
            .into_iter()
            .map(|s| Point {
                labels: s.labels,
                value: s.value,
            })
            .collect()),
        Value::Scalar(s) => Ok(vec![Point {
            labels: Labels::default(),
            value: s.value,
        }]),
        _ => Err("rule result is not a vector or scalar".into()),
    }
}

/// Matching log records in `[t - window, t]`.
fn count_logs(
    logs: Option<&dyn LogsQuerier>,
    query: &str,
    window: Duration,
    t_ms: i64,
) -> Result<f64, String> {
    let logs = logs.ok_or("log rules need the log store, which is not available")?;
    let query = LogQuery::parse(query).map_err(|e| e.to_string())?;
    let end = (t_ms.max(0) as u64).saturating_mul(1_000_000);
    let window_ns = window.as_nanos().min(u128::from(u64::MAX)) as u64;
    let start = end.saturating_sub(window_ns);
    let buckets = logs
        .histogram(&HistogramRequest {
            query,
            start_unix_nano: start,
            end_unix_nano: end,
            // one bucket: [start, end] with the end included
            step_nanos: window_ns.saturating_add(1).max(1),
        })
        .map_err(|e| e.to_string())?;
    Ok(buckets.iter().map(|b| b.count).sum::<u64>() as f64)
}

fn eval_alerting(
    rule: &AlertingRule,
    rs: &mut RuleState,
    ctx: &EvalContext<'_>,
    limit: usize,
    t_ms: i64,
) -> Result<Vec<Series>, String> {
    let points = match &rule.condition {
        AlertCondition::PromQl(expr) => query_vector(ctx.engine, expr, t_ms)?,
        AlertCondition::Logs(c) => {
            let count = count_logs(ctx.logs, &c.query, c.window, t_ms)?;
            if count > c.threshold {
                vec![Point {
                    labels: Labels::default(),
                    value: count,
                }]
            } else {
                Vec::new()
            }
        }
    };
    let expand = |text: &str, tmpl_labels: &LabelSet, value: f64| -> String {
        template::expand(
            text,
            tmpl_labels,
            value,
            ctx.external_labels,
            ctx.external_url,
        )
        .unwrap_or_else(|e| {
            tracing::warn!(rule = rule.name.as_str(), error = %e, "expanding alert template failed");
            format!("<error expanding template: {e}>")
        })
    };
    let mut current: BTreeMap<String, ActiveAlert> = BTreeMap::new();
    for p in points {
        let tmpl_labels = to_label_set(&p.labels);
        let mut labels: LabelSet = tmpl_labels.clone();
        labels.remove(METRIC_NAME_LABEL);
        for (k, v) in &rule.labels {
            let value = expand(v, &tmpl_labels, p.value);
            if value.is_empty() {
                labels.remove(k);
            } else {
                labels.insert(k.clone(), value);
            }
        }
        labels.insert("alertname".into(), rule.name.clone());
        let annotations: LabelSet = rule
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), expand(v, &tmpl_labels, p.value)))
            .collect();
        let fp = Fingerprint::of(&labels).to_string();
        if current.contains_key(&fp) {
            return Err(
                "vector contains metrics with the same labelset after applying alert labels"
                    .into(),
            );
        }
        current.insert(
            fp,
            ActiveAlert {
                labels,
                annotations,
                state: AlertState::Pending,
                value: p.value,
                active_at_ms: t_ms,
                fired_at_ms: None,
                resolved_at_ms: None,
                last_sent_at_ms: None,
                valid_until_ms: None,
                keep_firing_since_ms: None,
                evidence: Evidence::default(),
            },
        );
    }
    let returned: BTreeSet<String> = current.keys().cloned().collect();
    for (fp, a) in current {
        match rs.active.get_mut(&fp) {
            Some(existing) if existing.state != AlertState::Inactive => {
                existing.value = a.value;
                existing.annotations = a.annotations;
            }
            _ => {
                rs.active.insert(fp, a);
            }
        }
    }
    let hold = ms(rule.for_);
    let keep_for = ms(rule.keep_firing_for);
    let retention = ms(RESOLVED_RETENTION);
    let mut series = Vec::new();
    let mut active_pending = 0usize;
    let mut remove = Vec::new();
    for (fp, a) in rs.active.iter_mut() {
        if !returned.contains(fp) {
            let mut keep_firing = false;
            if a.state == AlertState::Firing && keep_for > 0 {
                let since = *a.keep_firing_since_ms.get_or_insert(t_ms);
                keep_firing = t_ms - since < keep_for;
            }
            if a.state == AlertState::Pending
                || a.resolved_at_ms.is_some_and(|r| t_ms - r > retention)
            {
                remove.push(fp.clone());
            }
            if a.state != AlertState::Inactive && !keep_firing {
                a.state = AlertState::Inactive;
                a.resolved_at_ms = Some(t_ms);
            }
            if !keep_firing {
                continue;
            }
        } else {
            a.keep_firing_since_ms = None;
        }
        active_pending += 1;
        if a.state == AlertState::Pending && t_ms - a.active_at_ms >= hold {
            a.state = AlertState::Firing;
            a.fired_at_ms = Some(t_ms);
            a.evidence = evidence(rule, a, ctx, t_ms);
        }
        if returned.contains(fp) {
            a.evidence.value = Some(a.value);
        }
        series.push(alert_series(ALERTS_METRIC, a, Some(a.state), 1.0, t_ms));
        series.push(alert_series(
            ALERTS_FOR_STATE_METRIC,
            a,
            None,
            a.active_at_ms.div_euclid(1000) as f64,
            t_ms,
        ));
    }
    for fp in remove {
        rs.active.remove(&fp);
    }
    if limit > 0 && active_pending > limit {
        rs.active.clear();
        return Err(format!(
            "exceeded limit of {limit} with {active_pending} alerts"
        ));
    }
    Ok(series)
}

/// The evidence attached when an alert starts firing: the query and value, and a few
/// failing traces of its service (looked up once, so evaluation stays cheap).
fn evidence(rule: &AlertingRule, a: &ActiveAlert, ctx: &EvalContext<'_>, t_ms: i64) -> Evidence {
    let mut ev = Evidence {
        value: Some(a.value),
        ..Evidence::default()
    };
    match &rule.condition {
        AlertCondition::PromQl(e) => ev.expr = Some(e.clone()),
        AlertCondition::Logs(l) => ev.logs_query = Some(l.query.clone()),
    }
    let service = a
        .labels
        .get("service")
        .or_else(|| a.labels.get("service_name"));
    if let (Some(traces), Some(service)) = (ctx.traces, service) {
        let from_ms = a.active_at_ms - ms(TRACE_LOOKBEHIND);
        let q = TraceQuery {
            start_unix_nano: (from_ms.max(0) as u64).saturating_mul(1_000_000),
            end_unix_nano: (t_ms.max(0) as u64).saturating_mul(1_000_000),
            service: Some(service.clone()),
            error: Some(true),
            limit: MAX_TRACE_IDS,
            ..TraceQuery::default()
        };
        match traces.search(&q) {
            Ok(found) => {
                ev.trace_ids = found
                    .iter()
                    .take(MAX_TRACE_IDS)
                    .map(|t| t.trace_id.to_string())
                    .collect();
            }
            Err(e) => {
                tracing::warn!(rule = rule.name.as_str(), error = %e, "looking up failing traces for an alert failed")
            }
        }
    }
    ev
}

fn alert_series(
    metric: &str,
    a: &ActiveAlert,
    state: Option<AlertState>,
    value: f64,
    t_ms: i64,
) -> Series {
    let mut labels: Vec<Label> = a
        .labels
        .iter()
        .map(|(k, v)| Label::new(k.clone(), v.clone()))
        .collect();
    labels.push(Label::new(METRIC_NAME_LABEL, metric));
    if let Some(s) = state {
        labels.push(Label::new("alertstate", s.as_str()));
    }
    Series {
        labels: Labels::new(labels),
        samples: vec![Sample::new(t_ms, value)],
    }
}

fn alerts_to_send(
    rule: &AlertingRule,
    rs: &mut RuleState,
    ctx: &EvalContext<'_>,
    t_ms: i64,
) -> Vec<Alert> {
    let delta = ms(RESEND_DELAY.max(ctx.interval));
    let generator_url = generator_url(rule, ctx.external_url);
    let mut out = Vec::new();
    for a in rs.active.values_mut() {
        if !a.needs_sending(t_ms) {
            continue;
        }
        a.last_sent_at_ms = Some(t_ms);
        a.valid_until_ms = Some(t_ms + 4 * delta);
        out.push(Alert {
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            starts_at_ms: a.fired_at_ms.unwrap_or(a.active_at_ms),
            ends_at_ms: a.resolved_at_ms.or(a.valid_until_ms),
            updated_at_ms: t_ms,
            generator_url: generator_url.clone(),
            evidence: a.evidence.clone(),
        });
    }
    out
}

/// Where the alert came from, in the UI: the explore page for PromQL, the logs page for
/// log rules.
fn generator_url(rule: &AlertingRule, base: &str) -> String {
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, QUERY).to_string();
    match &rule.condition {
        AlertCondition::PromQl(e) => format!("{base}/explore?query={}", enc(e)),
        AlertCondition::Logs(l) => format!("{base}/logs?query={}", enc(&l.query)),
    }
}

const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn eval_recording(
    rule: &RecordingRule,
    ctx: &EvalContext<'_>,
    limit: usize,
    t_ms: i64,
) -> Result<Vec<Series>, String> {
    let points = query_vector(ctx.engine, &rule.expr, t_ms)?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(points.len());
    for p in points {
        let mut labels = p.labels.into_vec();
        labels.push(Label::new(METRIC_NAME_LABEL, rule.name.clone()));
        for (k, v) in &rule.labels {
            labels.push(Label::new(k.clone(), v.clone()));
        }
        let labels = Labels::new(labels);
        if !seen.insert(labels.clone()) {
            return Err(
                "vector contains metrics with the same labelset after applying rule labels".into(),
            );
        }
        out.push(Series {
            labels,
            samples: vec![Sample::new(t_ms, p.value)],
        });
    }
    if limit > 0 && out.len() > limit {
        return Err(format!(
            "exceeded limit of {limit} with {} series",
            out.len()
        ));
    }
    Ok(out)
}

pub(crate) fn to_label_set(l: &Labels) -> LabelSet {
    l.iter()
        .map(|x| (x.name.clone(), x.value.clone()))
        .collect()
}

pub(crate) fn to_labels(l: &LabelSet) -> Labels {
    Labels::new(
        l.iter()
            .map(|(k, v)| Label::new(k.clone(), v.clone()))
            .collect(),
    )
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Floats as JSON: numbers when finite, `"NaN"`, `"+Inf"`, `"-Inf"` otherwise (JSON has no
/// NaN, and a query may return one).
mod float_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if *v > 0.0 {
            s.serialize_str("+Inf")
        } else {
            s.serialize_str("-Inf")
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Num(f64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Num(v) => Ok(v),
            Repr::Text(t) => match t.as_str() {
                "NaN" => Ok(f64::NAN),
                "+Inf" => Ok(f64::INFINITY),
                "-Inf" => Ok(f64::NEG_INFINITY),
                other => other.parse().map_err(serde::de::Error::custom),
            },
        }
    }
}
