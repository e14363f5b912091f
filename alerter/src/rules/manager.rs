//! Runs rule groups on their intervals, persists alert state, serves rule status.
//!
//! One tokio task per group. Evaluation times are aligned as Prometheus aligns them: a
//! group's ticks fall at `k * interval + offset`, the offset a hash of the group's key
//! (`file;name`) within the interval, so groups spread over the interval and a restart or
//! reload keeps a group's cadence. The first evaluation comes within one interval of start.
//! A tick that comes too late (the previous evaluation overran) is counted as missed and
//! skipped, never queued.
//!
//! Each evaluation runs on a blocking thread (PromQL and log queries read disk) and writes
//! recording-rule samples and `ALERTS`/`ALERTS_FOR_STATE` through the metrics appender. The
//! group's [`GroupState`] is written to the `rules` tree of the state database after every
//! evaluation and read back at start, so a restart keeps pending `for` clocks and firing
//! alerts, restored at the first evaluation as Prometheus restores them (an outage
//! tolerance and a grace period: [`GroupState::restore_for_state`]); the dispatcher's
//! notification log keeps the restart from paging twice. Alerts the evaluation says to send
//! go to the [`AlertSink`] (the dispatcher), which never blocks.
//!
//! A group's evaluations never overlap: the scheduled one and [`RuleManager::evaluate_all_at`]
//! take the group's evaluation lock. A reload that removes a group, or rules of a group,
//! writes staleness markers for the series they wrote last, as Prometheus does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use prometheus::{
    register_counter_vec, register_gauge_vec, register_int_counter_vec, CounterVec, GaugeVec,
    IntCounterVec,
};
use store::logs::LogsQuerier;
use store::model::MetricBatch;
use store::promql::{Engine, EngineOptions};
use store::traces::TracesQuerier;
use store::{MetricsAppender, MetricsQuerier};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::model::{Alert, AlertSink, LabelSet};
use crate::rules::eval::{eval_group, AlertState, EvalContext, GroupState};
use crate::rules::file::{Rule, RuleGroup};
use crate::state::{StateError, StateTree};

static LAST_DURATION: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "lookout_rule_group_last_duration_seconds",
        "The duration of the last evaluation of the rule group.",
        &["rule_group"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_rule_group_last_duration_seconds: {e}"))
});
static INTERVAL: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "lookout_rule_group_interval_seconds",
        "The interval of the rule group.",
        &["rule_group"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_rule_group_interval_seconds: {e}"))
});
static LAST_EVALUATION: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "lookout_rule_group_last_evaluation_timestamp_seconds",
        "The timestamp of the last evaluation of the rule group.",
        &["rule_group"]
    )
    .unwrap_or_else(|e| {
        panic!("registering lookout_rule_group_last_evaluation_timestamp_seconds: {e}")
    })
});
static EVALUATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_rule_evaluations_total",
        "Rule evaluations, one per rule per group evaluation.",
        &["rule_group"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_rule_evaluations_total: {e}"))
});
static FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_rule_evaluation_failures_total",
        "Rule evaluations that failed.",
        &["rule_group"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_rule_evaluation_failures_total: {e}"))
});
static MISSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_rule_group_iterations_missed_total",
        "Group evaluations skipped because the previous one ran past its next tick.",
        &["rule_group"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_rule_group_iterations_missed_total: {e}"))
});
static EVAL_SECONDS: LazyLock<CounterVec> = LazyLock::new(|| {
    register_counter_vec!(
        "lookout_rule_group_evaluation_seconds_total",
        "Time spent evaluating the rule group.",
        &["rule_group"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_rule_group_evaluation_seconds_total: {e}"))
});

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What rules are evaluated against and where their results go.
#[derive(Clone)]
pub struct RuleSources {
    pub metrics: Arc<dyn MetricsQuerier>,
    pub appender: Arc<dyn MetricsAppender>,
    pub logs: Option<Arc<dyn LogsQuerier>>,
    pub traces: Option<Arc<dyn TracesQuerier>>,
    /// The dispatcher.
    pub sink: Arc<dyn AlertSink>,
}

/// Settings that apply to every group and may change on reload.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSettings {
    pub external_labels: LabelSet,
    /// Base URL of the UI for templates' `$externalURL` and links, without trailing `/`.
    pub external_url: String,
    /// The interval of groups that set none (`global.evaluation_interval`).
    pub evaluation_interval: Duration,
}

/// Status of one group, for `/api/v1/rules`.
#[derive(Clone, Debug)]
pub struct GroupStatus {
    pub name: String,
    pub file: PathBuf,
    pub interval: Duration,
    pub limit: usize,
    pub rules: Vec<RuleStatus>,
    /// How long the last evaluation took.
    pub evaluation_time: Duration,
    /// When the group was last evaluated (the evaluation timestamp), Unix ms.
    pub last_evaluation_ms: Option<i64>,
}

/// Status of one rule.
#[derive(Clone, Debug)]
pub struct RuleStatus {
    pub rule: Rule,
    /// `ok`, `err` or `unknown` (not evaluated yet).
    pub health: &'static str,
    /// Empty when the last evaluation succeeded.
    pub last_error: String,
    pub evaluation_time: Duration,
    pub last_evaluation_ms: Option<i64>,
    /// `inactive`, `pending` or `firing`: the most severe of its alerts'.
    pub state: &'static str,
    /// Pending and firing alerts.
    pub alerts: Vec<AlertStatus>,
}

/// One pending or firing alert of a rule.
#[derive(Clone, Debug)]
pub struct AlertStatus {
    pub labels: LabelSet,
    pub annotations: LabelSet,
    /// `pending` or `firing`.
    pub state: &'static str,
    pub active_at_ms: i64,
    pub value: f64,
    pub keep_firing_since_ms: Option<i64>,
}

/// One running group.
struct GroupRun {
    key: String,
    group: Arc<RuleGroup>,
    interval: Duration,
    state: Mutex<GroupState>,
    /// Held for a whole evaluation (state, writes, hand-over to the sink), so a scheduled
    /// and a manual evaluation never interleave.
    eval_lock: tokio::sync::Mutex<()>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    sources: RuleSources,
    engine: Engine,
    tree: StateTree,
    settings: RwLock<RuleSettings>,
}

/// Runs every rule group; see the module docs.
pub struct RuleManager {
    inner: Arc<Inner>,
    /// Groups in rule-file order.
    groups: RwLock<Vec<Arc<GroupRun>>>,
    /// Serialises reloads and shutdown.
    update_lock: tokio::sync::Mutex<()>,
}

/// Where in the interval a group's ticks fall: a hash of its key (FNV-1a, stable across
/// restarts) modulo the interval.
fn offset_ms(key: &str, interval_ms: i64) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % interval_ms.max(1) as u64) as i64
}

/// The first tick strictly after `now_ms`: at most one interval away.
fn first_tick_ms(now_ms: i64, interval_ms: i64, offset_ms: i64) -> i64 {
    let adjusted = now_ms - offset_ms;
    adjusted - adjusted.rem_euclid(interval_ms) + offset_ms + interval_ms
}

/// The tick after `done_ms` following `tick_ms`, and how many ticks were missed in between.
fn next_tick_ms(tick_ms: i64, done_ms: i64, interval_ms: i64) -> (i64, u64) {
    let next = tick_ms + interval_ms;
    if next > done_ms {
        return (next, 0);
    }
    let missed = (done_ms - next) / interval_ms + 1;
    (next + missed * interval_ms, missed as u64)
}

impl RuleManager {
    /// Starts a task per group, each with the state persisted for it (or fresh state).
    pub fn start(
        groups: Vec<RuleGroup>,
        settings: RuleSettings,
        sources: RuleSources,
        engine: EngineOptions,
        tree: StateTree,
    ) -> Self {
        let inner = Arc::new(Inner {
            engine: Engine::new(sources.metrics.clone(), engine),
            sources,
            tree,
            settings: RwLock::new(settings),
        });
        let mut runs = Vec::with_capacity(groups.len());
        for group in groups {
            let key = group.key();
            let state = inner.restore(&key, &group);
            runs.push(inner.spawn(key, Arc::new(group), state));
        }
        inner.forget_stale(&runs);
        RuleManager {
            inner,
            groups: RwLock::new(runs),
            update_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Applies new rule groups and settings: unchanged groups keep running; changed ones
    /// are stopped, their state carried over rule by rule (as Prometheus: same name and
    /// labels), and restarted; removed ones are stopped and forgotten. The series of removed
    /// rules and groups get staleness markers at the time of the reload.
    ///
    /// Unlike Prometheus, which writes a removed group's markers two intervals later so a
    /// rule moved to another group has written first (the late markers are then rejected as
    /// out of order), the markers are written at once: such a moved series reads as absent
    /// until its new group's first evaluation, at most one interval.
    pub async fn update(&self, groups: Vec<RuleGroup>, settings: RuleSettings) {
        let _guard = self.update_lock.lock().await;
        let reload_ms = now_ms();
        let settings_changed = *self.inner.settings.read() != settings;
        *self.inner.settings.write() = settings;
        let old: BTreeMap<String, Arc<GroupRun>> = self
            .groups
            .read()
            .iter()
            .map(|g| (g.key.clone(), g.clone()))
            .collect();
        let mut kept: BTreeMap<String, bool> = BTreeMap::new();
        let mut runs = Vec::with_capacity(groups.len());
        for group in groups {
            let key = group.key();
            if kept.contains_key(&key) {
                // load_rule_files refuses duplicate group names in a file; skip defensively
                continue;
            }
            let interval = self.inner.interval_of(&group);
            match old.get(&key) {
                Some(run) if *run.group == group && run.interval == interval => {
                    kept.insert(key, true);
                    runs.push(run.clone());
                }
                Some(run) => {
                    run.stop().await;
                    let (state, stale) = {
                        let old = run.state.lock();
                        let state = GroupState::carry_over(&old, &run.group, &group);
                        let stale = old.stale_markers_after(Some(&state), reload_ms);
                        (state, stale)
                    };
                    self.inner.write_stale(&key, stale).await;
                    kept.insert(key.clone(), false);
                    runs.push(self.inner.spawn(key, Arc::new(group), state));
                }
                None => {
                    kept.insert(key.clone(), false);
                    let state = self.inner.restore(&key, &group);
                    runs.push(self.inner.spawn(key, Arc::new(group), state));
                }
            }
        }
        for (key, run) in &old {
            if !kept.contains_key(key) {
                run.stop().await;
                let stale = run.state.lock().stale_markers_after(None, reload_ms);
                self.inner.write_stale(key, stale).await;
                self.inner.forget(key);
            }
        }
        *self.groups.write() = runs;
        tracing::info!(
            groups = kept.len(),
            restarted = kept.values().filter(|unchanged| !**unchanged).count(),
            settings_changed,
            "rule groups applied"
        );
    }

    /// Stops every group, waiting for evaluations under way; their state is already
    /// persisted (after each evaluation).
    pub async fn shutdown(&self) {
        let _guard = self.update_lock.lock().await;
        let runs: Vec<Arc<GroupRun>> = self.groups.read().clone();
        for run in runs {
            run.stop().await;
        }
    }

    /// Evaluates every group once at `t_ms`, now, outside its schedule (tests, here and in
    /// the API crate). Serialised with reloads (so it never evaluates a group a reload is
    /// replacing) and, per group, with the scheduled evaluation (the group's evaluation
    /// lock); stopped groups are skipped.
    pub async fn evaluate_all_at(&self, t_ms: i64) {
        let _guard = self.update_lock.lock().await;
        let runs: Vec<Arc<GroupRun>> = self.groups.read().clone();
        for run in runs {
            if *run.stop.borrow() {
                continue;
            }
            self.inner.clone().evaluate(run, t_ms).await;
        }
    }

    /// Status of every group, in rule-file order.
    pub fn groups(&self) -> Vec<GroupStatus> {
        let runs: Vec<Arc<GroupRun>> = self.groups.read().clone();
        runs.iter().map(|r| r.status()).collect()
    }

    /// Number of groups running.
    pub fn len(&self) -> usize {
        self.groups.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.read().is_empty()
    }
}

impl Inner {
    fn interval_of(&self, group: &RuleGroup) -> Duration {
        group
            .interval
            .filter(|d| !d.is_zero())
            .unwrap_or(self.settings.read().evaluation_interval)
            .max(Duration::from_millis(1))
    }

    /// The persisted state of a group, carried over to its current definition; fresh
    /// state when none was persisted or it does not decode.
    fn restore(&self, key: &str, group: &RuleGroup) -> GroupState {
        match self.tree.get::<GroupState>(key.as_bytes()) {
            Ok(Some(persisted)) => {
                // the rule file may have changed while Lookout was down: rules take the
                // state of the persisted rule with the same identity, as on a reload
                let mut state = GroupState::carry_over(&persisted, group, group);
                // the first evaluation restores the `for` clocks (outage tolerance, grace
                // period) and hands every kept alert to the dispatcher, whose alerts live in
                // memory, as Prometheus (which does not persist when it last sent) does; the
                // notification log keeps that from paging again
                state.restore_pending = true;
                tracing::info!(group = key, "rule group state restored");
                state
            }
            Ok(None) => GroupState::new(group),
            Err(e) => {
                tracing::warn!(group = key, error = %e, "rule group state not restored; starting fresh");
                GroupState::new(group)
            }
        }
    }

    /// Drops persisted state of groups that no longer exist (rule files edited while
    /// Lookout was down).
    fn forget_stale(&self, runs: &[Arc<GroupRun>]) {
        let keys: Vec<Vec<u8>> = match self.tree.entries::<serde_json::Value>() {
            Ok(entries) => entries.into_iter().map(|(k, _)| k).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "listing persisted rule state");
                return;
            }
        };
        for key in keys {
            if !runs.iter().any(|r| r.key.as_bytes() == key.as_slice()) {
                if let Err(e) = self.tree.remove(&key) {
                    tracing::warn!(error = %e, "removing stale rule state");
                }
            }
        }
    }

    /// Appends staleness markers of a reload (see [`RuleManager::update`]). Rejections are
    /// expected when another rule wrote the series since, as in Prometheus, and not errors.
    async fn write_stale(&self, key: &str, batch: MetricBatch) {
        let markers = batch.series.len();
        if markers == 0 {
            return;
        }
        match self.sources.appender.append(batch).await {
            Ok(report) => {
                tracing::debug!(
                    group = key,
                    markers,
                    rejected = report.rejected_total(),
                    "staleness markers for removed rules written"
                );
            }
            Err(e) => {
                tracing::warn!(group = key, markers, error = %e, "writing staleness markers for removed rules failed");
            }
        }
    }

    fn forget(&self, key: &str) {
        if let Err(e) = self.tree.remove(key.as_bytes()) {
            tracing::warn!(group = key, error = %e, "removing rule group state");
        }
        for m in [&*LAST_DURATION, &*INTERVAL, &*LAST_EVALUATION] {
            let _ = m.remove_label_values(&[key]);
        }
        for m in [&*EVALUATIONS, &*FAILURES, &*MISSED] {
            let _ = m.remove_label_values(&[key]);
        }
        let _ = EVAL_SECONDS.remove_label_values(&[key]);
    }

    fn spawn(
        self: &Arc<Self>,
        key: String,
        group: Arc<RuleGroup>,
        state: GroupState,
    ) -> Arc<GroupRun> {
        let interval = self.interval_of(&group);
        INTERVAL
            .with_label_values(&[key.as_str()])
            .set(interval.as_secs_f64());
        let (stop, stop_rx) = watch::channel(false);
        let run = Arc::new(GroupRun {
            key,
            group,
            interval,
            state: Mutex::new(state),
            eval_lock: tokio::sync::Mutex::new(()),
            stop,
            task: Mutex::new(None),
        });
        let task = tokio::spawn(self.clone().run_group(run.clone(), stop_rx));
        *run.task.lock() = Some(task);
        run
    }

    async fn run_group(self: Arc<Self>, run: Arc<GroupRun>, mut stop: watch::Receiver<bool>) {
        let interval_ms = (run.interval.as_millis() as i64).max(1);
        let offset = offset_ms(&run.key, interval_ms);
        let mut tick = first_tick_ms(now_ms(), interval_ms, offset);
        loop {
            let wait = Duration::from_millis((tick - now_ms()).max(0) as u64);
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(wait) => {}
            }
            self.clone().evaluate(run.clone(), tick).await;
            let (next, missed) = next_tick_ms(tick, now_ms(), interval_ms);
            if missed > 0 {
                MISSED.with_label_values(&[run.key.as_str()]).inc_by(missed);
                tracing::warn!(group = %run.key, missed, "rule group evaluation ran past its next tick(s); skipped them");
            }
            tick = next;
        }
    }

    /// One evaluation of `run` at `t_ms`: on a blocking thread, then the alerts to the sink,
    /// all under the group's evaluation lock.
    async fn evaluate(self: Arc<Self>, run: Arc<GroupRun>, t_ms: i64) {
        let held = run.clone();
        let _turn = held.eval_lock.lock().await;
        let runtime = tokio::runtime::Handle::current();
        let inner = self.clone();
        let key = run.key.clone();
        let result =
            tokio::task::spawn_blocking(move || inner.evaluate_blocking(&run, t_ms, &runtime))
                .await;
        match result {
            Ok(alerts) if !alerts.is_empty() => self.sources.sink.put(alerts),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(group = %key, error = %e, "rule group evaluation task failed")
            }
        }
    }

    fn evaluate_blocking(
        &self,
        run: &GroupRun,
        t_ms: i64,
        runtime: &tokio::runtime::Handle,
    ) -> Vec<Alert> {
        let settings = self.settings.read().clone();
        let ctx = EvalContext {
            engine: &self.engine,
            logs: self.sources.logs.as_deref(),
            traces: self.sources.traces.as_deref(),
            external_labels: &settings.external_labels,
            external_url: &settings.external_url,
            interval: run.interval,
        };
        let appender = &self.sources.appender;
        let mut write = |batch: MetricBatch| -> Result<(), String> {
            if batch.series.is_empty() {
                return Ok(());
            }
            let report = runtime
                .block_on(appender.append(batch))
                .map_err(|e| e.to_string())?;
            let rejected = report.rejected_total();
            match report.first_rejection {
                Some(first) if rejected > 0 => {
                    Err(format!("{rejected} samples rejected by the store: {first}"))
                }
                _ => Ok(()),
            }
        };
        // evaluate a copy, so status readers never wait on a long evaluation
        let mut state = run.state.lock().clone();
        let started = Instant::now();
        let outcome = eval_group(&run.group, &mut state, &ctx, t_ms, &mut write);
        let took = started.elapsed();

        let key = run.key.as_str();
        let failed = outcome.failures;
        EVALUATIONS
            .with_label_values(&[key])
            .inc_by(outcome.rules.len() as u64);
        FAILURES.with_label_values(&[key]).inc_by(failed as u64);
        LAST_DURATION
            .with_label_values(&[key])
            .set(took.as_secs_f64());
        LAST_EVALUATION
            .with_label_values(&[key])
            .set(t_ms as f64 / 1000.0);
        EVAL_SECONDS
            .with_label_values(&[key])
            .inc_by(took.as_secs_f64());
        if took > run.interval {
            tracing::warn!(
                group = key,
                took_ms = took.as_millis() as u64,
                interval_ms = run.interval.as_millis() as u64,
                "rule group evaluation took longer than its interval"
            );
        }

        if let Err(e) = self.persist(run, &state) {
            tracing::warn!(group = key, error = %e, "persisting rule group state");
        }
        *run.state.lock() = state;
        outcome.alerts_to_send
    }

    fn persist(&self, run: &GroupRun, state: &GroupState) -> Result<(), StateError> {
        self.tree.put(run.key.as_bytes(), state)
    }
}

impl GroupRun {
    fn status(&self) -> GroupStatus {
        let state = self.state.lock().clone();
        let rules = self
            .group
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                // the state is aligned to the group at every evaluation; before the first
                // one (or if it is not yet aligned) a rule shows as not evaluated
                let rs = state
                    .rules
                    .get(i)
                    .filter(|rs| rs.identity == rule.identity());
                let health = rs.map(|r| r.health.clone()).unwrap_or_default();
                RuleStatus {
                    rule: rule.clone(),
                    health: health.health.as_str(),
                    last_error: health.last_error.unwrap_or_default(),
                    evaluation_time: health.eval_duration,
                    last_evaluation_ms: health.last_evaluation_ms,
                    state: rs.map_or(AlertState::Inactive, |r| r.state()).as_str(),
                    alerts: rs
                        .map(|r| {
                            let mut alerts: Vec<AlertStatus> = r
                                .alerts()
                                .map(|a| AlertStatus {
                                    labels: a.labels.clone(),
                                    annotations: a.annotations.clone(),
                                    state: a.state.as_str(),
                                    active_at_ms: a.active_at_ms,
                                    value: a.value,
                                    keep_firing_since_ms: a.keep_firing_since_ms,
                                })
                                .collect();
                            alerts.sort_by(|a, b| {
                                (a.active_at_ms, &a.labels).cmp(&(b.active_at_ms, &b.labels))
                            });
                            alerts
                        })
                        .unwrap_or_default(),
                }
            })
            .collect();
        GroupStatus {
            name: self.group.name.clone(),
            file: self.group.file.clone(),
            interval: self.interval,
            limit: self.group.limit,
            rules,
            evaluation_time: state.evaluation_duration,
            last_evaluation_ms: state.last_evaluation_ms,
        }
    }

    /// Stops the group's task and waits for an evaluation under way to finish.
    async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::error!(group = %self.key, error = %e, "rule group task failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::file::parse_rule_file;
    use crate::state::StateDb;
    use async_trait::async_trait;
    use store::testing::MemQuerier;
    use store::AppendReport;

    /// Accepts and counts every batch.
    #[derive(Default)]
    struct Counting(Mutex<usize>);

    #[async_trait]
    impl MetricsAppender for Counting {
        async fn append(&self, batch: MetricBatch) -> store::Result<AppendReport> {
            *self.0.lock() += batch.series.len();
            Ok(AppendReport::default())
        }
    }

    /// Keeps every series appended.
    #[derive(Default)]
    struct Recording(Mutex<Vec<store::model::Series>>);

    #[async_trait]
    impl MetricsAppender for Recording {
        async fn append(&self, batch: MetricBatch) -> store::Result<AppendReport> {
            self.0.lock().extend(batch.series);
            Ok(AppendReport::default())
        }
    }

    /// Takes a while per append and records how many appends ran at once.
    #[derive(Default)]
    struct Slow {
        in_flight: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
        appends: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl MetricsAppender for Slow {
        async fn append(&self, _: MetricBatch) -> store::Result<AppendReport> {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.in_flight.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            // called on the evaluation's blocking thread
            std::thread::sleep(Duration::from_millis(5));
            self.in_flight.fetch_sub(1, SeqCst);
            self.appends.fetch_add(1, SeqCst);
            Ok(AppendReport::default())
        }
    }

    #[derive(Default)]
    struct Collect(Mutex<Vec<Alert>>);

    impl AlertSink for Collect {
        fn put(&self, alerts: Vec<Alert>) {
            self.0.lock().extend(alerts);
        }
    }

    fn groups(text: &str) -> Vec<RuleGroup> {
        parse_rule_file(std::path::Path::new("rules.yaml"), text)
            .unwrap_or_else(|e| panic!("rule file: {e:?}"))
    }

    const ONE: &str = "groups:
  - name: g
    interval: 1h
    rules:
      - alert: Up
        expr: vector(1)
        for: 1h
        labels: { severity: page }
";

    const TWO: &str = "groups:
  - name: g
    interval: 1h
    rules:
      - record: one
        expr: vector(1)
      - alert: Up
        expr: vector(1) > 0
        for: 1h
        labels: { severity: page }
";

    fn settings() -> RuleSettings {
        RuleSettings {
            external_labels: LabelSet::new(),
            external_url: "http://lookout.test".into(),
            evaluation_interval: Duration::from_secs(3600),
        }
    }

    fn start(db: &StateDb, text: &str, sink: Arc<Collect>, appender: Arc<Counting>) -> RuleManager {
        start_with(db, text, sink, appender)
    }

    fn start_with(
        db: &StateDb,
        text: &str,
        sink: Arc<Collect>,
        appender: Arc<dyn MetricsAppender>,
    ) -> RuleManager {
        RuleManager::start(
            groups(text),
            settings(),
            RuleSources {
                metrics: Arc::new(MemQuerier::default()),
                appender,
                logs: None,
                traces: None,
                sink,
            },
            EngineOptions::default(),
            db.tree("rules").unwrap_or_else(|e| panic!("{e}")),
        )
    }

    fn only_alert(m: &RuleManager) -> AlertStatus {
        let status = m.groups();
        let alerts: Vec<AlertStatus> = status
            .iter()
            .flat_map(|g| g.rules.iter())
            .flat_map(|r| r.alerts.iter().cloned())
            .collect();
        assert_eq!(alerts.len(), 1, "{status:?}");
        alerts.into_iter().next().unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn ticks_are_aligned_within_one_interval_and_missed_ones_skipped() {
        let interval = 15_000;
        let offset = offset_ms("f;g", interval);
        assert!((0..interval).contains(&offset));
        assert_eq!(offset, offset_ms("f;g", interval), "stable");
        for now in [0, 1, 14_999, 15_000, 1_700_000_000_123] {
            let first = first_tick_ms(now, interval, offset);
            assert!(first > now && first <= now + interval, "{now} -> {first}");
            assert_eq!((first - offset).rem_euclid(interval), 0);
        }
        assert_eq!(next_tick_ms(0, 5_000, interval), (15_000, 0));
        // an evaluation that ran 40 s from tick 0 skips the ticks at 15 s and 30 s
        assert_eq!(next_tick_ms(0, 40_000, interval), (45_000, 2));
        assert_eq!(next_tick_ms(0, 15_000, interval), (30_000, 1));
    }

    #[tokio::test]
    async fn a_restart_keeps_firing_alerts_and_hands_them_to_the_dispatcher_again() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let t0 = 1_700_000_000_000;
        let sink = Arc::new(Collect::default());
        let appender = Arc::new(Counting::default());
        {
            let db = StateDb::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
            let m = start(&db, ONE, sink.clone(), appender.clone());
            m.evaluate_all_at(t0).await;
            let a = only_alert(&m);
            assert_eq!((a.state, a.active_at_ms), ("pending", t0));
            assert!(*appender.0.lock() > 0, "ALERTS written");
            // fires after `for`, and is sent once
            m.evaluate_all_at(t0 + 3_600_000).await;
            assert_eq!(only_alert(&m).state, "firing");
            assert_eq!(sink.0.lock().len(), 1);
            m.shutdown().await;
            db.flush().unwrap_or_else(|e| panic!("{e}"));
        }
        let db = StateDb::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let m = start(&db, ONE, sink.clone(), appender);
        // restored before any evaluation
        let a = only_alert(&m);
        assert_eq!((a.state, a.active_at_ms), ("firing", t0));
        // still firing from the same start, and handed to the (restarted) dispatcher at
        // the first evaluation; its notification log keeps it from paging again
        m.evaluate_all_at(t0 + 3_610_000).await;
        let a = only_alert(&m);
        assert_eq!((a.state, a.active_at_ms), ("firing", t0));
        assert_eq!(sink.0.lock().len(), 2);
        m.evaluate_all_at(t0 + 3_620_000).await;
        assert_eq!(
            sink.0.lock().len(),
            2,
            "then re-sent after the resend delay only"
        );
        m.shutdown().await;
    }

    #[tokio::test]
    async fn a_pending_clock_survives_a_restart_without_counting_the_downtime() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let t0 = 1_700_000_000_000;
        let sink = Arc::new(Collect::default());
        {
            let db = StateDb::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
            let m = start(&db, ONE, sink.clone(), Arc::default());
            m.evaluate_all_at(t0).await;
            m.shutdown().await;
            db.flush().unwrap_or_else(|e| panic!("{e}"));
        }
        let db = StateDb::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        // restarted with an edited file: the rule keeps its state by identity; the 30 min
        // Lookout was down do not count towards `for` (as Prometheus's RestoreForState)
        let m = start(&db, TWO, sink.clone(), Arc::default());
        m.evaluate_all_at(t0 + 1_800_000).await;
        let a = only_alert(&m);
        assert_eq!((a.state, a.active_at_ms), ("pending", t0 + 1_800_000));
        m.evaluate_all_at(t0 + 3_600_000).await;
        assert_eq!(only_alert(&m).state, "pending");
        m.evaluate_all_at(t0 + 5_400_000).await;
        assert_eq!(only_alert(&m).state, "firing");
        assert_eq!(sink.0.lock().len(), 1);
        m.shutdown().await;
    }

    #[tokio::test]
    async fn after_a_long_outage_a_firing_alert_starts_over() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let t0 = 1_700_000_000_000;
        let hour = 3_600_000;
        let sink = Arc::new(Collect::default());
        {
            let db = StateDb::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
            let m = start(&db, ONE, sink.clone(), Arc::default());
            m.evaluate_all_at(t0).await;
            m.evaluate_all_at(t0 + hour).await;
            assert_eq!(only_alert(&m).state, "firing");
            assert_eq!(sink.0.lock().len(), 1);
            m.shutdown().await;
            db.flush().unwrap_or_else(|e| panic!("{e}"));
        }
        // down for 2 hours, more than the outage tolerance: the `for` clock starts again
        let db = StateDb::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let m = start(&db, ONE, sink.clone(), Arc::default());
        m.evaluate_all_at(t0 + 3 * hour).await;
        let a = only_alert(&m);
        assert_eq!((a.state, a.active_at_ms), ("pending", t0 + 3 * hour));
        assert_eq!(sink.0.lock().len(), 1, "nothing sent while pending");
        m.evaluate_all_at(t0 + 4 * hour).await;
        assert_eq!(only_alert(&m).state, "firing");
        assert_eq!(sink.0.lock().len(), 2);
        m.shutdown().await;
    }

    #[tokio::test]
    async fn a_reload_marks_the_series_of_removed_rules_and_groups_stale() {
        let db = StateDb::temporary().unwrap_or_else(|e| panic!("{e}"));
        let before = "groups:
  - name: g
    interval: 1h
    rules:
      - record: kept
        expr: vector(1)
      - record: removed
        expr: vector(2)
      - alert: RemovedAlert
        expr: vector(1) > 0
        labels: { severity: page }
  - name: h
    interval: 1h
    rules:
      - record: removed_group
        expr: vector(3)
";
        let after = "groups:
  - name: g
    interval: 1h
    rules:
      - record: kept
        expr: vector(1)
";
        let appender = Arc::new(Recording::default());
        let m = start_with(&db, before, Arc::default(), appender.clone());
        m.evaluate_all_at(1_700_000_000_000).await;
        appender.0.lock().clear();
        let from = now_ms();
        m.update(groups(after), settings()).await;
        let to = now_ms();
        let written = std::mem::take(&mut *appender.0.lock());
        let mut stale: Vec<String> = written
            .iter()
            .map(|s| {
                assert_eq!(s.samples.len(), 1, "{s:?}");
                let sample = &s.samples[0];
                assert!(store::model::is_stale_nan(sample.value), "{s:?}");
                assert!((from..=to).contains(&sample.timestamp_ms), "{s:?}");
                let alertname = s.labels.get("alertname").unwrap_or_default();
                format!("{}{alertname}", s.labels.metric_name().unwrap_or_default())
            })
            .collect();
        stale.sort();
        assert_eq!(
            stale,
            [
                "ALERTSRemovedAlert",
                "ALERTS_FOR_STATERemovedAlert",
                "removed",
                "removed_group"
            ]
        );
        m.shutdown().await;
    }

    #[tokio::test]
    async fn manual_and_scheduled_evaluations_of_a_group_never_overlap() {
        let db = StateDb::temporary().unwrap_or_else(|e| panic!("{e}"));
        let fast = "groups:
  - name: fast
    interval: 10ms
    rules:
      - record: one
        expr: vector(1)
";
        let appender = Arc::new(Slow::default());
        let m = start_with(&db, fast, Arc::default(), appender.clone());
        let manual = 40;
        for _ in 0..manual {
            m.evaluate_all_at(now_ms()).await;
        }
        m.shutdown().await;
        use std::sync::atomic::Ordering::SeqCst;
        assert!(
            appender.appends.load(SeqCst) > manual,
            "scheduled evaluations ran too"
        );
        assert_eq!(appender.most.load(SeqCst), 1, "evaluations overlapped");
    }

    #[tokio::test]
    async fn reload_keeps_state_and_removed_groups_are_forgotten() {
        let db = StateDb::temporary().unwrap_or_else(|e| panic!("{e}"));
        let t0 = 1_700_000_000_000;
        let sink = Arc::new(Collect::default());
        let m = start(&db, ONE, sink.clone(), Arc::default());
        m.evaluate_all_at(t0).await;
        m.update(groups(TWO), settings()).await;
        let status = m.groups();
        assert_eq!(status[0].rules.len(), 2);
        let a = only_alert(&m);
        assert_eq!((a.state, a.active_at_ms), ("pending", t0));
        m.evaluate_all_at(t0 + 60_000).await;
        assert_eq!(only_alert(&m).active_at_ms, t0);
        assert_eq!(status[0].rules[0].health, "unknown");

        let tree = db.tree("rules").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tree.len(), 1);
        m.update(Vec::new(), settings()).await;
        assert!(m.is_empty());
        assert_eq!(tree.len(), 0, "state of a removed group is dropped");
        m.shutdown().await;
    }

    #[tokio::test]
    async fn groups_tick_on_their_own() {
        let db = StateDb::temporary().unwrap_or_else(|e| panic!("{e}"));
        let fast = "groups:
  - name: fast
    interval: 100ms
    rules:
      - record: one
        expr: vector(1)
";
        let appender = Arc::new(Counting::default());
        let m = start(&db, fast, Arc::default(), appender.clone());
        let deadline = Instant::now() + Duration::from_secs(5);
        while *appender.0.lock() < 3 {
            assert!(Instant::now() < deadline, "no evaluations");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let g = &m.groups()[0];
        assert_eq!(g.rules[0].health, "ok");
        assert!(g.last_evaluation_ms.is_some());
        m.shutdown().await;
        let after = *appender.0.lock();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(*appender.0.lock(), after, "stopped groups do not evaluate");
    }
}
