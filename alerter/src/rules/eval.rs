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
//! * A state read back after a restart has its `for` clocks restored at the first
//!   evaluation as Prometheus's `RestoreForState` restores them ([`OUTAGE_TOLERANCE`],
//!   [`FOR_GRACE_PERIOD`]); see [`GroupState::restore_for_state`].
//!
//! Evaluation is synchronous (the PromQL engine is); the manager runs it on a blocking
//! thread. [`GroupState`] is what the manager persists between evaluations and restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use store::logs::{HistogramRequest, LogQuery, LogsQuerier};
use store::model::{stale_nan, Label, Labels, MetricBatch, Sample, Series, METRIC_NAME_LABEL};
use store::promql::{Engine, MemoQuerier, Value};
use store::traces::{TraceQuery, TracesQuerier};

use super::file::{AlertCondition, AlertingRule, RecordingRule, Rule, RuleGroup};
use super::template::Template;
use crate::model::{Alert, Evidence, Fingerprint, LabelSet};

/// How long a resolved alert is kept (and re-sent), as Prometheus's `resolvedRetention`.
pub const RESOLVED_RETENTION: Duration = Duration::from_secs(15 * 60);
/// Minimum time between two sends of the same firing alert (Prometheus's `--rules.alert.resend-delay`).
pub const RESEND_DELAY: Duration = Duration::from_secs(60);
/// How far back failing traces are looked for, before the alert became active.
pub const TRACE_LOOKBEHIND: Duration = Duration::from_secs(15 * 60);
/// Most example trace ids an alert carries.
pub const MAX_TRACE_IDS: usize = 3;

/// A restored `for` clock only counts if Lookout was down at most this long: after a longer
/// outage every restored pending and firing alert starts over as new. Prometheus's
/// `--rules.alert.for-outage-tolerance`, at its default.
pub const OUTAGE_TOLERANCE: Duration = Duration::from_secs(60 * 60);
/// A restored pending alert fires no sooner than this after the restart (its condition is
/// seen again on fresh data first), for rules whose `for` is at least this long; rules with
/// a shorter `for` go on with the time they had spent pending. Prometheus's
/// `--rules.alert.for-grace-period`, at its default.
pub const FOR_GRACE_PERIOD: Duration = Duration::from_secs(10 * 60);

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
    /// Receivers last heard of this alert firing, before an outage longer than
    /// [`OUTAGE_TOLERANCE`] restarted its `for` clock: if it goes away before it fires
    /// again, its resolution is still sent (instead of the pending alert vanishing).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub firing_before_outage: bool,
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
    /// that disappear). Not persisted, as Prometheus keeps it in memory only: it can be
    /// large (a recording rule's whole output) and the state is written every evaluation.
    #[serde(skip)]
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
    /// Set when the state was read back after a restart: the next evaluation restores the
    /// `for` clocks first ([`GroupState::restore_for_state`]). Not persisted.
    #[serde(skip)]
    pub restore_pending: bool,
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
            restore_pending: false,
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
        self.restore_pending = old.restore_pending;
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

    /// Restores the `for` clocks of a state read back after a restart, at the first
    /// evaluation after it (`t_ms`), as Prometheus 2.42's `Group.RestoreForState`; Lookout
    /// went down at the last evaluation before the restart.
    ///
    /// * Down longer than [`OUTAGE_TOLERANCE`] (or never evaluated): nothing is restored.
    ///   Pending alerts are dropped and come back as new if their condition still holds.
    ///   Firing ones become pending from `t_ms` (flagged [`ActiveAlert::firing_before_outage`]),
    ///   so they fire again only after a whole `for`, and a resolution is still sent if
    ///   they are gone.
    /// * Otherwise firing alerts keep firing from their old start. Prometheus does the same
    ///   when `for` is at least the grace period; for a shorter `for` it lets them go pending
    ///   again, which would resolve and re-page an alert the dispatcher already announced.
    ///   Lookout keeps them firing: the dispatcher gets them again at this evaluation and its
    ///   notification log keeps that from paging twice.
    /// * Pending alerts keep the time they had spent pending before the outage (the downtime
    ///   does not count: their start moves later by it), except that one of a rule whose
    ///   `for` is at least [`FOR_GRACE_PERIOD`] and which would then fire within the grace
    ///   period fires exactly the grace period after `t_ms`. Prometheus forgets the clocks
    ///   of rules with a shorter `for` (they wait their whole `for` again); Lookout keeps
    ///   them, since a restart must not forget a pending `for` clock.
    ///
    /// Every firing or resolved alert kept is handed to the (restarted, empty) dispatcher
    /// again at this evaluation, as Prometheus resends after a restart.
    pub fn restore_for_state(&mut self, group: &RuleGroup, t_ms: i64) {
        self.restore_pending = false;
        let down_at = self
            .last_evaluation_ms
            .filter(|&d| t_ms.saturating_sub(d) <= ms(OUTAGE_TOLERANCE));
        let grace = ms(FOR_GRACE_PERIOD);
        for (rule, rs) in group.rules.iter().zip(self.rules.iter_mut()) {
            let Rule::Alerting(rule) = rule else {
                continue;
            };
            let hold = ms(rule.for_);
            rs.active.retain(|_, a| {
                a.last_sent_at_ms = None;
                let restart_clock = |a: &mut ActiveAlert| {
                    a.state = AlertState::Pending;
                    a.active_at_ms = t_ms;
                    a.keep_firing_since_ms = None;
                };
                match (a.state, down_at) {
                    // resolved, kept for re-sending its resolution
                    (AlertState::Inactive, _) => true,
                    (AlertState::Firing, Some(_)) => true,
                    (AlertState::Firing, None) => {
                        restart_clock(a);
                        a.firing_before_outage = true;
                        true
                    }
                    (AlertState::Pending, Some(down_at)) => {
                        let remaining = hold - (down_at - a.active_at_ms);
                        if remaining <= 0 {
                            // `for` was shortened while Lookout was down: fires now
                        } else if hold >= grace && remaining < grace {
                            a.active_at_ms = t_ms + grace - hold;
                        } else {
                            a.active_at_ms += t_ms.saturating_sub(down_at).max(0);
                        }
                        true
                    }
                    (AlertState::Pending, _) if a.firing_before_outage => {
                        restart_clock(a);
                        true
                    }
                    (AlertState::Pending, _) => false,
                }
            });
        }
    }

    /// Staleness markers at `t_ms` for the series this state's rules wrote at their last
    /// evaluation that no rule of `successor` (the group's state after a reload) still
    /// claims: the output of rules a reload removed, or of every rule when the whole group
    /// was removed (`successor` None). As Prometheus's `staleSeries`, so those series end
    /// at the reload instead of lingering for the lookback window.
    pub fn stale_markers_after(&self, successor: Option<&GroupState>, t_ms: i64) -> MetricBatch {
        let claimed: BTreeSet<&LabelSet> = successor
            .into_iter()
            .flat_map(|s| s.rules.iter())
            .flat_map(|rs| rs.previous_series.iter())
            .collect();
        let mut seen = BTreeSet::new();
        let gone = self
            .rules
            .iter()
            .flat_map(|rs| rs.previous_series.iter())
            .filter(|l| !claimed.contains(l) && seen.insert(*l));
        MetricBatch {
            series: gone.map(|l| stale_series(l, t_ms)).collect(),
            metadata: Vec::new(),
        }
    }
}

/// What evaluation needs besides the group and its state.
#[derive(Clone, Copy)]
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
    if state.restore_pending {
        state.restore_for_state(group, t_ms);
    }
    // every rule of the group reads through one memo, so a selection several rules share is
    // read and decoded once; what a rule writes is forgotten before the next rule reads
    let memo = Arc::new(MemoQuerier::new(ctx.engine.querier().clone()));
    let engine = ctx.engine.with_querier(memo.clone());
    let ctx = &EvalContext {
        engine: &engine,
        ..*ctx
    };
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
                memo.forget_matching(&batch.series);
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
            out.push(stale_series(old, t_ms));
        }
    }
    rs.previous_series = now;
    MetricBatch {
        series: out,
        metadata: Vec::new(),
    }
}

fn stale_series(labels: &LabelSet, t_ms: i64) -> Series {
    Series {
        labels: to_labels(labels),
        samples: vec![Sample::new(t_ms, stale_nan())],
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
    // each template is parsed once per evaluation, not once per alert
    let parse = |set: &LabelSet| -> Vec<(String, Result<Template, String>)> {
        set.iter()
            .map(|(k, v)| (k.clone(), Template::parse(v)))
            .collect()
    };
    let (label_templates, annotation_templates) = if points.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        (parse(&rule.labels), parse(&rule.annotations))
    };
    let expand = |t: &Result<Template, String>, tmpl_labels: &LabelSet, value: f64| -> String {
        t.as_ref()
            .map_err(String::clone)
            .and_then(|t| {
                t.expand(
                    tmpl_labels,
                    value,
                    ctx.external_labels,
                    ctx.external_url,
                )
            })
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
        for (k, t) in &label_templates {
            let value = expand(t, &tmpl_labels, p.value);
            if value.is_empty() {
                labels.remove(k);
            } else {
                labels.insert(k.clone(), value);
            }
        }
        labels.insert("alertname".into(), rule.name.clone());
        let annotations: LabelSet = annotation_templates
            .iter()
            .map(|(k, t)| (k.clone(), expand(t, &tmpl_labels, p.value)))
            .collect();
        let fp = Fingerprint::of(&labels).to_string();
        if current.contains_key(&fp) {
            return Err(
                "vector contains metrics with the same labelset after applying alert labels".into(),
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
                firing_before_outage: false,
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
            // a pending alert that was firing before an outage resolves (receivers last
            // heard it firing) instead of vanishing
            if (a.state == AlertState::Pending && !a.firing_before_outage)
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
            a.firing_before_outage = false;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use store::logs::{
        FieldSummary, FieldsRequest, HistogramBucket, LogBatch, LogRecord, LogSearch,
    };
    use store::model::is_stale_nan;
    use store::promql::EngineOptions;
    use store::traces::{SpanKind, StoredSpan, TraceId, TraceSummary};

    use super::*;
    use crate::rules::file::parse_rule_file;
    use crate::rules::unittest::SharedStore;

    const MIN: i64 = 60_000;

    fn group(yaml: &str) -> RuleGroup {
        parse_rule_file(Path::new("t.yaml"), yaml)
            .unwrap()
            .remove(0)
    }

    /// A store with `m{job="a"}` = `values[i]` at minute i (None: no sample).
    fn store_with(values: &[Option<f64>]) -> Arc<SharedStore> {
        let s = Arc::new(SharedStore::default());
        let samples = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| Sample::new(i as i64 * MIN, v)))
            .collect();
        append_series(&s, "m", samples);
        s
    }

    /// Appends the series `name{job="a"}` with these samples.
    fn append_series(s: &SharedStore, name: &str, samples: Vec<Sample>) {
        s.append(MetricBatch {
            series: vec![Series {
                labels: Labels::from_pairs([("__name__", name), ("job", "a")]),
                samples,
            }],
            metadata: Vec::new(),
        });
    }

    struct Run {
        store: Arc<SharedStore>,
        engine: Engine,
        group: RuleGroup,
        state: GroupState,
        written: Vec<Series>,
    }

    impl Run {
        fn new(store: Arc<SharedStore>, yaml: &str) -> Run {
            let group = group(yaml);
            Run {
                engine: Engine::new(store.clone(), EngineOptions::default()),
                state: GroupState::new(&group),
                group,
                store,
                written: Vec::new(),
            }
        }

        fn eval_with(
            &mut self,
            t: i64,
            logs: Option<&dyn LogsQuerier>,
            traces: Option<&dyn TracesQuerier>,
        ) -> GroupEvalOutcome {
            let ext = LabelSet::from([("cluster".to_string(), "prod".to_string())]);
            let ctx = EvalContext {
                engine: &self.engine,
                logs,
                traces,
                external_labels: &ext,
                external_url: "http://lookout:9800",
                interval: Duration::from_secs(60),
            };
            self.written.clear();
            let store = self.store.clone();
            let written = &mut self.written;
            let mut write = |b: MetricBatch| -> Result<(), String> {
                written.extend(b.series.iter().cloned());
                store.append(b);
                Ok(())
            };
            eval_group(&self.group, &mut self.state, &ctx, t, &mut write)
        }

        fn eval(&mut self, t: i64) -> GroupEvalOutcome {
            self.eval_with(t, None, None)
        }

        /// A restart: a new run from the state as persisted and read back.
        fn restarted(&self) -> Run {
            let json = serde_json::to_string(&self.state).unwrap();
            let mut state: GroupState = serde_json::from_str(&json).unwrap();
            state.restore_pending = true;
            Run {
                engine: Engine::new(self.store.clone(), EngineOptions::default()),
                group: self.group.clone(),
                state,
                store: self.store.clone(),
                written: Vec::new(),
            }
        }

        /// The only alert of the first rule.
        fn alert(&self) -> &ActiveAlert {
            let mut all = self.state.rules[0].active.values();
            let a = all.next().expect("an alert");
            assert!(all.next().is_none(), "{:?}", self.state.rules[0].active);
            a
        }

        fn alert_states(&self) -> Vec<AlertState> {
            self.state.rules[0]
                .active
                .values()
                .map(|a| a.state)
                .collect()
        }

        /// Written samples of `metric`: (alertstate label, value, stale).
        fn written(&self, metric: &str) -> Vec<(Option<String>, f64)> {
            self.written
                .iter()
                .filter(|s| s.labels.metric_name() == Some(metric))
                .map(|s| {
                    (
                        s.labels.get("alertstate").map(str::to_string),
                        s.samples[0].value,
                    )
                })
                .collect()
        }
    }

    const FOR_2M: &str = r#"
groups:
  - name: g
    rules:
      - alert: High
        expr: m > 5
        for: 2m
        labels: { severity: page, job_copy: "{{ $labels.job }}" }
        annotations: { summary: "{{ $labels.job }} at {{ $value }} in {{ $externalLabels.cluster }}" }
"#;

    #[test]
    fn pending_then_firing_then_resolved_with_alerts_series_and_sends() {
        let values: Vec<Option<f64>> = [1.0, 10.0, 10.0, 12.0, 12.0, 1.0]
            .iter()
            .map(|v| Some(*v))
            .chain(std::iter::repeat_n(Some(1.0), 20))
            .collect();
        let mut r = Run::new(store_with(&values), FOR_2M);
        assert!(r.eval(0).alerts_to_send.is_empty());
        assert!(r.alert_states().is_empty());
        assert_eq!(r.state.rules[0].health.health, Health::Ok);

        // 1m: pending, not sent; ALERTS pending + ALERTS_FOR_STATE = active_at seconds
        let out = r.eval(MIN);
        assert!(out.alerts_to_send.is_empty());
        assert_eq!(r.alert_states(), vec![AlertState::Pending]);
        assert_eq!(
            r.written(ALERTS_METRIC),
            vec![(Some("pending".into()), 1.0)]
        );
        assert_eq!(r.written(ALERTS_FOR_STATE_METRIC), vec![(None, 60.0)]);
        let a = r.state.rules[0].alerts().next().unwrap().clone();
        assert_eq!(a.labels["job_copy"], "a");
        assert_eq!(a.labels["alertname"], "High");
        assert_eq!(a.annotations["summary"], "a at 10 in prod");

        // 2m: still pending (active for 1m < 2m)
        assert!(r.eval(2 * MIN).alerts_to_send.is_empty());
        assert_eq!(r.alert_states(), vec![AlertState::Pending]);

        // 3m: fires, is sent with Prometheus's ends_at, and carries its evidence
        let out = r.eval(3 * MIN);
        assert_eq!(r.alert_states(), vec![AlertState::Firing]);
        assert_eq!(out.alerts_to_send.len(), 1);
        let sent = &out.alerts_to_send[0];
        assert_eq!(sent.starts_at_ms, 3 * MIN);
        assert_eq!(sent.ends_at_ms, Some(3 * MIN + 4 * MIN));
        assert_eq!(sent.evidence.expr.as_deref(), Some("m > 5"));
        assert_eq!(sent.evidence.value, Some(12.0));
        assert_eq!(sent.annotations["summary"], "a at 12 in prod");
        assert!(sent
            .generator_url
            .starts_with("http://lookout:9800/explore?query=m%20%3E%205"));
        // the pending series ends with a staleness marker, as in Prometheus
        let alerts = r.written(ALERTS_METRIC);
        assert_eq!(alerts[0], (Some("firing".into()), 1.0));
        assert_eq!(alerts[1].0.as_deref(), Some("pending"));
        assert!(is_stale_nan(alerts[1].1));
        assert_eq!(r.state.rules[0].state(), AlertState::Firing);

        // 4m: sent 1m ago, not again yet (resend delay 1m, strictly after)
        assert!(r.eval(4 * MIN).alerts_to_send.is_empty());

        // 5m: resolved: sent at once with ends_at = resolution time; ALERTS goes stale
        let out = r.eval(5 * MIN);
        assert_eq!(out.alerts_to_send.len(), 1);
        assert_eq!(out.alerts_to_send[0].ends_at_ms, Some(5 * MIN));
        assert_eq!(r.alert_states(), vec![AlertState::Inactive]);
        assert!(r.state.rules[0].alerts().next().is_none());
        let alerts = r.written(ALERTS_METRIC);
        assert_eq!(alerts.len(), 1);
        assert!(is_stale_nan(alerts[0].1), "{alerts:?}");

        // resent while kept (15 min), every resend delay; then dropped
        assert!(r.eval(6 * MIN).alerts_to_send.is_empty());
        assert_eq!(r.eval(7 * MIN).alerts_to_send.len(), 1);
        assert!(r.eval(20 * MIN).alerts_to_send[0].ends_at_ms == Some(5 * MIN));
        r.eval(21 * MIN);
        assert!(r.state.rules[0].active.is_empty());
    }

    #[test]
    fn a_pending_alert_that_disappears_is_dropped_and_its_clock_restarts() {
        let v = [1.0, 10.0, 1.0, 10.0, 10.0, 10.0];
        let mut r = Run::new(store_with(&v.map(Some)), FOR_2M);
        r.eval(MIN);
        assert_eq!(r.alert_states(), vec![AlertState::Pending]);
        let out = r.eval(2 * MIN);
        assert!(
            out.alerts_to_send.is_empty(),
            "pending alerts are never sent"
        );
        assert!(r.state.rules[0].active.is_empty());
        r.eval(3 * MIN);
        r.eval(4 * MIN);
        assert_eq!(r.alert_states(), vec![AlertState::Pending]);
        r.eval(5 * MIN);
        assert_eq!(r.alert_states(), vec![AlertState::Firing]);
        assert_eq!(
            r.state.rules[0]
                .active
                .values()
                .next()
                .unwrap()
                .active_at_ms,
            3 * MIN
        );
    }

    #[test]
    fn keep_firing_for_holds_a_firing_alert_after_its_series_disappears() {
        let yaml = r#"
groups:
  - name: g
    rules:
      - alert: Flappy
        expr: m > 5
        keep_firing_for: 2m
"#;
        let v = [10.0, 1.0, 1.0, 10.0, 1.0, 1.0, 1.0];
        let mut r = Run::new(store_with(&v.map(Some)), yaml);
        r.eval(0);
        assert_eq!(
            r.alert_states(),
            vec![AlertState::Firing],
            "for: 0 fires at once"
        );
        r.eval(MIN);
        assert_eq!(r.alert_states(), vec![AlertState::Firing]);
        assert_eq!(r.written(ALERTS_METRIC), vec![(Some("firing".into()), 1.0)]);
        // back at 3m: the keep-firing clock resets
        r.eval(3 * MIN);
        r.eval(4 * MIN);
        r.eval(5 * MIN);
        assert_eq!(r.alert_states(), vec![AlertState::Firing]);
        let out = r.eval(6 * MIN);
        assert_eq!(r.alert_states(), vec![AlertState::Inactive]);
        assert_eq!(out.alerts_to_send[0].ends_at_ms, Some(6 * MIN));
    }

    #[test]
    fn the_for_clock_survives_a_persisted_state() {
        let v = [10.0; 6];
        let mut r = Run::new(store_with(&v.map(Some)), FOR_2M);
        r.eval(0);
        r.eval(MIN);
        let json = serde_json::to_string(&r.state).unwrap();
        // a restart: a new run from the persisted state
        let mut r2 = Run::new(r.store.clone(), FOR_2M);
        r2.state = serde_json::from_str(&json).unwrap();
        assert_eq!(r2.state.rules[0].active, r.state.rules[0].active);
        assert!(json.len() < 2_000, "{json}");
        let out = r2.eval(2 * MIN);
        assert_eq!(r2.alert_states(), vec![AlertState::Firing]);
        assert_eq!(out.alerts_to_send.len(), 1);
        // NaN values survive JSON too
        let mut s = r2.state.clone();
        s.rules[0].active.values_mut().next().unwrap().value = f64::NAN;
        let back: GroupState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert!(back.rules[0].active.values().next().unwrap().value.is_nan());
    }

    const FOR_1H: &str = r#"
groups:
  - name: g
    rules:
      - alert: Slow
        expr: m > 5
        for: 1h
"#;

    #[test]
    fn a_restored_pending_clock_skips_the_downtime_and_waits_the_grace_period() {
        let mut r = Run::new(store_with(&[Some(10.0); 200]), FOR_1H);
        r.eval(0);
        r.eval(10 * MIN);
        // down at 10m after 10m pending, back at 30m: 50m left (more than the grace
        // period), counted from the restart: fires at 80m, not 60m
        let mut a = r.restarted();
        a.eval(30 * MIN);
        assert_eq!(
            (a.alert().state, a.alert().active_at_ms),
            (AlertState::Pending, 20 * MIN)
        );
        assert_eq!(a.written(ALERTS_FOR_STATE_METRIC), vec![(None, 1200.0)]);
        a.eval(79 * MIN);
        assert_eq!(a.alert().state, AlertState::Pending);
        assert_eq!(a.eval(80 * MIN).alerts_to_send.len(), 1);
        assert_eq!(a.alert().state, AlertState::Firing);

        // down at 55m, back at 56m: 5m left, less than the grace period: fires the grace
        // period (10m) after the restart
        r.eval(55 * MIN);
        let mut b = r.restarted();
        b.eval(56 * MIN);
        assert_eq!(b.alert().active_at_ms, 56 * MIN + 10 * MIN - 60 * MIN);
        b.eval(65 * MIN);
        assert_eq!(b.alert().state, AlertState::Pending);
        b.eval(66 * MIN);
        assert_eq!(b.alert().state, AlertState::Firing);
    }

    #[test]
    fn after_an_outage_longer_than_the_tolerance_alerts_start_over() {
        let tolerance = ms(OUTAGE_TOLERANCE);
        let mut r = Run::new(store_with(&[Some(10.0); 300]), FOR_1H);
        r.eval(0);
        r.eval(10 * MIN);
        // back exactly the tolerance after going down: restored (10m spent)
        let mut a = r.restarted();
        a.eval(10 * MIN + tolerance);
        assert_eq!(a.alert().active_at_ms, tolerance);
        // a minute later: not restored, pending from the restart
        let mut b = r.restarted();
        b.eval(11 * MIN + tolerance);
        assert_eq!(
            (b.alert().state, b.alert().active_at_ms),
            (AlertState::Pending, 11 * MIN + tolerance)
        );

        // firing before a 2h outage and still true: pending again from the restart, not sent
        // until it fires again a whole `for` later
        assert_eq!(r.eval(60 * MIN).alerts_to_send.len(), 1);
        let mut c = r.restarted();
        assert!(c.eval(180 * MIN).alerts_to_send.is_empty());
        assert_eq!(
            (c.alert().state, c.alert().active_at_ms),
            (AlertState::Pending, 180 * MIN)
        );
        assert_eq!(
            c.written(ALERTS_METRIC),
            vec![(Some("pending".into()), 1.0)]
        );
        assert!(c.eval(239 * MIN).alerts_to_send.is_empty());
        let out = c.eval(240 * MIN);
        assert_eq!(out.alerts_to_send.len(), 1);
        assert_eq!(out.alerts_to_send[0].starts_at_ms, 240 * MIN);
        assert!(!c.alert().firing_before_outage);

        // firing before the outage and gone after it: its resolution is sent (the
        // receivers last heard it firing)
        let mut values = vec![Some(10.0); 61];
        values.resize(300, None);
        let mut r = Run::new(store_with(&values), FOR_1H);
        r.eval(0);
        assert_eq!(r.eval(60 * MIN).alerts_to_send.len(), 1);
        let mut d = r.restarted();
        let out = d.eval(180 * MIN);
        assert_eq!(out.alerts_to_send.len(), 1, "{out:?}");
        assert_eq!(out.alerts_to_send[0].starts_at_ms, 60 * MIN);
        assert_eq!(out.alerts_to_send[0].ends_at_ms, Some(180 * MIN));
        assert_eq!(d.alert().state, AlertState::Inactive);
    }

    #[test]
    fn a_short_for_clock_goes_on_after_a_restart_and_firing_alerts_keep_firing() {
        let mut r = Run::new(store_with(&[Some(10.0); 10]), FOR_2M);
        r.eval(0);
        // `for` (2m) is shorter than the grace period: the minute spent pending before the
        // outage (down at 0, back at 1m) still counts, the downtime does not
        let mut a = r.restarted();
        a.eval(MIN);
        assert_eq!(
            (a.alert().state, a.alert().active_at_ms),
            (AlertState::Pending, MIN)
        );
        assert_eq!(a.eval(3 * MIN).alerts_to_send.len(), 1);
        // pending for 30 s when it went down at 30 s, back at 1m: fires at 2m30s, not 3m
        let mut p = Run::new(store_with(&[Some(10.0); 10]), FOR_2M);
        p.eval(0);
        p.eval(MIN / 2);
        let mut q = p.restarted();
        q.eval(MIN);
        assert_eq!(q.alert().active_at_ms, MIN / 2);
        assert_eq!(q.alert().state, AlertState::Pending);
        assert_eq!(q.eval(5 * MIN / 2).alerts_to_send.len(), 1);
        // a firing alert keeps firing from its old start, and is handed to the dispatcher
        // again at the first evaluation (whose notification log keeps it from paging twice)
        let mut b = a.restarted();
        let out = b.eval(4 * MIN);
        assert_eq!(
            (b.alert().state, b.alert().active_at_ms),
            (AlertState::Firing, MIN)
        );
        assert_eq!(out.alerts_to_send.len(), 1);
        assert_eq!(out.alerts_to_send[0].starts_at_ms, 3 * MIN);
        assert!(b.eval(5 * MIN).alerts_to_send.is_empty());
    }

    #[test]
    fn stale_markers_after_a_reload_cover_only_series_no_rule_claims_any_more() {
        let yaml = r#"
groups:
  - name: g
    rules:
      - record: kept
        expr: m + 0
      - record: removed
        expr: m * 2
"#;
        let mut r = Run::new(store_with(&[Some(1.0)]), yaml);
        r.eval(0);
        let kept_only = group(
            r#"
groups:
  - name: g
    rules:
      - record: kept
        expr: m + 0
"#,
        );
        let names = |b: &MetricBatch| -> Vec<String> {
            assert!(b.series.iter().all(|s| s.samples.len() == 1
                && is_stale_nan(s.samples[0].value)
                && s.samples[0].timestamp_ms == 5));
            b.series
                .iter()
                .map(|s| s.labels.metric_name().unwrap_or_default().to_string())
                .collect()
        };
        let next = GroupState::carry_over(&r.state, &r.group, &kept_only);
        assert_eq!(
            names(&r.state.stale_markers_after(Some(&next), 5)),
            ["removed"]
        );
        assert_eq!(
            names(&r.state.stale_markers_after(None, 5)),
            ["kept", "removed"]
        );
    }

    #[test]
    fn recording_rules_chain_within_a_group_and_reject_duplicates() {
        let yaml = r#"
groups:
  - name: g
    rules:
      - record: job:m:doubled
        expr: m * 2
        labels: { source: rec }
      - record: job:m:plus_one
        expr: job:m:doubled + 1
      - alert: FromRecorded
        expr: job:m:plus_one > 20
      - record: clash
        expr: '{__name__=~"m|n"}'
"#;
        let s = store_with(&[Some(10.0)]);
        append_series(&s, "n", vec![Sample::new(0, 1.0)]);
        let mut r = Run::new(s, yaml);
        let out = r.eval(0);
        assert_eq!(r.written("job:m:doubled"), vec![(None, 20.0)]);
        assert_eq!(r.written("job:m:plus_one"), vec![(None, 21.0)]);
        let rec = r
            .written
            .iter()
            .find(|s| s.labels.metric_name() == Some("job:m:plus_one"))
            .unwrap();
        assert_eq!(rec.labels.get("source"), Some("rec"));
        assert_eq!(rec.labels.get("job"), Some("a"));
        assert_eq!(r.state.rules[2].state(), AlertState::Firing);
        assert_eq!(out.alerts_to_send.len(), 1);
        assert_eq!(out.rules.len(), 4);
        assert_eq!(out.rules[3].health, Health::Err, "{:?}", out.rules[3]);
        assert_eq!(
            out.rules[3].last_error.as_deref(),
            Some("vector contains metrics with the same labelset after applying rule labels")
        );
        assert_eq!(out.failures, 1);
    }

    #[test]
    fn a_selection_read_before_a_recording_rule_writes_is_read_again_after() {
        // the group's queries share their selections; the first rule reads
        // `{__name__=~"m|job:m:tripled"}` before the second writes `job:m:tripled`, and the
        // third reads the same selection again and must see what was written
        let yaml = r#"
groups:
  - name: g
    rules:
      - record: before
        expr: count({__name__=~"m|job:m:tripled"})
      - record: job:m:tripled
        expr: m * 3
      - record: after
        expr: count({__name__=~"m|job:m:tripled"})
      - record: unrelated
        expr: count({__name__=~"m|job:m:tripled"} offset 1m)
"#;
        let s = store_with(&[Some(10.0), Some(10.0)]);
        let mut r = Run::new(s, yaml);
        r.eval(MIN);
        assert_eq!(r.written("before"), vec![(None, 1.0)]);
        assert_eq!(r.written("job:m:tripled"), vec![(None, 30.0)]);
        assert_eq!(r.written("after"), vec![(None, 2.0)]);
        assert_eq!(r.written("unrelated"), vec![(None, 1.0)]);
    }

    #[test]
    fn a_failing_rule_reports_its_error_and_the_others_still_run() {
        let yaml = r#"
groups:
  - name: g
    rules:
      - alert: Bad
        expr: m + on(job) group_left {__name__=~"m|n"}
      - alert: Good
        expr: m > 0
      - alert: Dup
        expr: m > 0 or label_replace(m, "x", "1", "", "")
        labels: { x: fixed }
"#;
        let s = store_with(&[Some(1.0)]);
        append_series(&s, "n", vec![Sample::new(0, 1.0)]);
        let mut r = Run::new(s, yaml);
        let out = r.eval(0);
        assert_eq!(out.rules[0].health, Health::Err);
        assert!(
            out.rules[0].last_error.as_deref().unwrap().contains("many"),
            "{:?}",
            out.rules[0]
        );
        assert_eq!(out.rules[1].health, Health::Ok);
        assert_eq!(r.state.rules[1].state(), AlertState::Firing);
        assert_eq!(
            out.rules[2].last_error.as_deref(),
            Some("vector contains metrics with the same labelset after applying alert labels")
        );
    }

    #[test]
    fn limit_exceeded_is_a_rule_error_without_alerts() {
        let yaml = r#"
groups:
  - name: g
    limit: 1
    rules:
      - alert: Many
        expr: m > 0 or label_replace(m, "job", "b", "", "")
      - record: many
        expr: m or label_replace(m, "job", "b", "", "")
"#;
        let mut r = Run::new(store_with(&[Some(1.0)]), yaml);
        let out = r.eval(0);
        assert_eq!(
            out.rules[0].last_error.as_deref(),
            Some("exceeded limit of 1 with 2 alerts")
        );
        assert!(r.state.rules[0].active.is_empty());
        assert!(out.alerts_to_send.is_empty());
        assert_eq!(
            out.rules[1].last_error.as_deref(),
            Some("exceeded limit of 1 with 2 series")
        );
        assert!(r.written.is_empty());
    }

    struct FakeLogs(Vec<LogRecord>);

    impl LogsQuerier for FakeLogs {
        fn search(&self, _: &LogSearch) -> store::Result<Vec<LogRecord>> {
            Ok(Vec::new())
        }
        fn histogram(&self, r: &HistogramRequest) -> store::Result<Vec<HistogramBucket>> {
            let count = self
                .0
                .iter()
                .filter(|x| {
                    x.time_unix_nano >= r.start_unix_nano
                        && x.time_unix_nano <= r.end_unix_nano
                        && r.query.matches(x)
                })
                .count() as u64;
            Ok(vec![HistogramBucket {
                start_unix_nano: r.start_unix_nano,
                count,
                by_severity: [0; 7],
            }])
        }
        fn fields(&self, _: &FieldsRequest) -> store::Result<Vec<FieldSummary>> {
            Ok(Vec::new())
        }
        fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<LogBatch>> {
            tokio::sync::broadcast::channel(1).1
        }
    }

    struct FakeTraces;

    impl TracesQuerier for FakeTraces {
        fn trace(&self, _: TraceId) -> store::Result<Vec<StoredSpan>> {
            Ok(Vec::new())
        }
        fn search(&self, q: &TraceQuery) -> store::Result<Vec<TraceSummary>> {
            assert_eq!(q.error, Some(true));
            assert_eq!(q.service.as_deref(), Some("payments"));
            Ok((1..=5u8)
                .map(|i| TraceSummary {
                    trace_id: TraceId([i; 16]),
                    root_service: "payments".into(),
                    root_operation: "pay".into(),
                    start_unix_nano: 0,
                    duration_nanos: 1,
                    span_count: 1,
                    error_count: 1,
                    services: vec!["payments".into()],
                })
                .collect())
        }
        fn services(&self, _: u64, _: u64) -> store::Result<Vec<String>> {
            Ok(Vec::new())
        }
        fn operations(&self, _: &str, _: u64, _: u64) -> store::Result<Vec<(String, SpanKind)>> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn log_rules_count_matching_records_in_the_window() {
        let yaml = r#"
groups:
  - name: logs
    rules:
      - alert: PaymentErrorLogs
        logs_expr: { query: 'service:payments AND severity>=error', window: 5m, threshold: 2 }
        labels: { severity: warning, service: payments }
        annotations: { summary: "{{ $value }} error lines in 5m" }
"#;
        let rec = |min: i64, sev: u8| LogRecord {
            time_unix_nano: (min * MIN) as u64 * 1_000_000,
            severity_number: sev,
            service: "payments".into(),
            body: "boom".into(),
            ..LogRecord::default()
        };
        // errors (17) at 1..3m, an info line, and an error of another service
        let mut records = vec![rec(1, 17), rec(2, 17), rec(3, 17), rec(3, 9)];
        records.push(LogRecord {
            service: "other".into(),
            ..rec(3, 17)
        });
        let logs = FakeLogs(records);
        let mut r = Run::new(store_with(&[]), yaml);
        r.eval_with(2 * MIN, Some(&logs), Some(&FakeTraces));
        assert!(r.alert_states().is_empty(), "2 lines is not above 2");
        let out = r.eval_with(3 * MIN, Some(&logs), Some(&FakeTraces));
        assert_eq!(out.alerts_to_send.len(), 1);
        let a = &out.alerts_to_send[0];
        assert_eq!(a.annotations["summary"], "3 error lines in 5m");
        assert_eq!(a.labels["alertname"], "PaymentErrorLogs");
        assert_eq!(a.labels["service"], "payments");
        assert_eq!(a.evidence.value, Some(3.0));
        assert_eq!(
            a.evidence.logs_query.as_deref(),
            Some("service:payments AND severity>=error")
        );
        assert_eq!(a.evidence.trace_ids.len(), MAX_TRACE_IDS);
        assert_eq!(a.evidence.trace_ids[0], "01010101010101010101010101010101");
        assert!(a
            .generator_url
            .starts_with("http://lookout:9800/logs?query="));
        // the window is [t - 5m, t], both ends included: at 6m the 1m line still counts,
        // at 7m it does not (2 left): resolved
        r.eval_with(6 * MIN, Some(&logs), Some(&FakeTraces));
        assert_eq!(r.alert_states(), vec![AlertState::Firing]);
        let out = r.eval_with(7 * MIN, Some(&logs), Some(&FakeTraces));
        assert_eq!(r.alert_states(), vec![AlertState::Inactive]);
        assert_eq!(out.alerts_to_send[0].ends_at_ms, Some(7 * MIN));
        // without a log store the rule reports it
        let out = r.eval(10 * MIN);
        assert_eq!(out.rules[0].health, Health::Err);
    }

    #[test]
    fn carry_over_keeps_state_of_rules_with_the_same_name_and_labels() {
        let old_yaml = r#"
groups:
  - name: g
    rules:
      - alert: A
        expr: m > 5
        for: 10m
      - alert: B
        expr: m > 5
        for: 10m
        labels: { severity: page }
"#;
        let new_yaml = r#"
groups:
  - name: g
    rules:
      - record: new_one
        expr: m
      - alert: B
        expr: m > 5
        for: 10m
        labels: { severity: ticket }
      - alert: A
        expr: m > 6
        for: 10m
"#;
        let mut r = Run::new(store_with(&[Some(10.0), Some(10.0), Some(10.0)]), old_yaml);
        r.eval(0);
        let new_group = group(new_yaml);
        let carried = GroupState::carry_over(&r.state, &r.group, &new_group);
        assert_eq!(carried.rules.len(), 3);
        assert!(carried.rules[0].active.is_empty());
        assert!(
            carried.rules[1].active.is_empty(),
            "B's labels changed: a new rule"
        );
        assert_eq!(carried.rules[2].active.len(), 1, "A kept its pending alert");
        assert_eq!(
            carried.rules[2]
                .active
                .values()
                .next()
                .unwrap()
                .active_at_ms,
            0
        );
        // a state that does not match the group is aligned on evaluation as well
        let mut r2 = Run::new(r.store.clone(), new_yaml);
        r2.state = r.state.clone();
        r2.eval(MIN);
        assert_eq!(
            r2.state.rules[2]
                .active
                .values()
                .next()
                .unwrap()
                .active_at_ms,
            0
        );
        assert_eq!(
            r2.state.rules[1]
                .active
                .values()
                .next()
                .unwrap()
                .active_at_ms,
            MIN
        );
    }
}
