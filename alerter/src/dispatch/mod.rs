//! Alertmanager semantics: routes, groups, inhibition, silences, notification log.
//!
//! Write path: alerts arrive through [`AlertSink::put`] (rule evaluation) or
//! [`Dispatcher::post_alerts`] (`POST /api/v2/alerts`), are merged into the alert store by
//! fingerprint as Alertmanager merges them, and are routed ([`route`]) into aggregation
//! groups ([`group`]) per (route, group labels). Each group runs in its own task: it waits
//! `group_wait`, then flushes every `group_interval`; a flush drops silenced ([`silence`])
//! and inhibited ([`inhibit`]) alerts, consults the notification log ([`nflog`]) per
//! integration, and hands the rest to the receiver's integrations. Each such delivery runs
//! in its own task, exclusive per notification-log key and awaited at shutdown
//! ([`inflight`]).
//!
//! Read path: [`Dispatcher::alerts`] and [`Dispatcher::silences`] answer the v2 API in
//! Alertmanager's JSON ([`api_types`]).

pub mod api_types;
pub mod config;
pub(crate) mod group;
mod inflight;
pub mod inhibit;
pub mod matchers;
pub mod nflog;
pub mod route;
pub mod silence;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use prometheus::{register_int_counter, register_int_gauge_vec, IntCounter, IntGaugeVec};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::api_types::{
    AlertFilter, AlertGroup, AlertState, AlertStatus, GettableAlert, PostableAlert, Receiver,
    Timestamp,
};
use self::config::AlertingConfig;
use self::group::{AggrGroup, RouteOpts};
use self::inflight::Deliveries;
use self::inhibit::Inhibitor;
use self::matchers::all_match;
use self::nflog::NotificationLog;
pub use self::silence::{SilenceError, Silences};
use crate::model::{Alert, AlertSink, Evidence, Fingerprint};
use crate::notify::{Delivered, NotifyError};
use crate::state::{StateDb, StateError};

fn fail(name: &str, e: prometheus::Error) -> ! {
    panic!("registering {name}: {e}")
}

static ALERTS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "lookout_alerts",
        "Alerts the dispatcher holds that are not resolved, by state (active, suppressed).",
        &["state"]
    )
    .unwrap_or_else(|e| fail("lookout_alerts", e))
});

static ALERTS_RECEIVED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "lookout_alerts_received_total",
        "Alerts received by the dispatcher (from rule evaluation and POST /api/v2/alerts)."
    )
    .unwrap_or_else(|e| fail("lookout_alerts_received_total", e))
});

static SILENCES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "lookout_silences",
        "Silences by state (active, pending, expired).",
        &["state"]
    )
    .unwrap_or_else(|e| fail("lookout_silences", e))
});

/// How often silences, the notification log and resolved alerts are garbage-collected and
/// the gauges refreshed.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(5);

/// How long shutdown waits for deliveries in flight before it flushes the state without
/// them: long enough for a webhook or robot call with a retry, short enough for an
/// orchestrator's termination grace period (30 s by default in Kubernetes).
const SHUTDOWN_DELIVERY_WAIT: Duration = Duration::from_secs(10);

/// Go's zero `time.Time` (`0001-01-01T00:00:00Z`) in Unix milliseconds.
const GO_ZERO_TIME_MS: i64 = -62_135_596_800_000;

/// The dispatcher's notion of now, in Unix milliseconds. Tests run on tokio's paused clock.
#[derive(Clone, Debug)]
pub enum Clock {
    /// The system's wall clock.
    System,
    /// `base_ms` at `base`, advancing with tokio's clock (which tests can pause).
    Tokio {
        base_ms: i64,
        base: tokio::time::Instant,
    },
    /// A clock that never moves (tests).
    Fixed(i64),
}

impl Clock {
    /// A clock following tokio's (pausable) time, starting at `base_ms` now.
    pub fn tokio_at(base_ms: i64) -> Self {
        Clock::Tokio {
            base_ms,
            base: tokio::time::Instant::now(),
        }
    }

    pub fn fixed(ms: i64) -> Self {
        Clock::Fixed(ms)
    }

    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            Clock::Tokio { base_ms, base } => base_ms + base.elapsed().as_millis() as i64,
            Clock::Fixed(ms) => *ms,
        }
    }
}

/// One integration as the dispatcher uses it: `notify::Delivery` (retries, limiter and
/// attempt records inside) implements it; tests plug in fakes.
#[async_trait]
pub trait Deliver: Send + Sync {
    /// `dingtalk[0]`: the integration's name within its receiver (the nflog key).
    fn name(&self) -> String;
    fn send_resolved(&self) -> bool;
    async fn deliver(&self, n: &crate::model::Notification) -> Result<Delivered, NotifyError>;
}

/// Where the integrations of a receiver come from: `notify::Notifier`, or a test fake.
pub trait Integrations: Send + Sync {
    /// `None` for an unknown receiver.
    fn integrations(&self, receiver: &str) -> Option<Vec<Arc<dyn Deliver>>>;
}

/// A stored alert; `timeout` when its end was filled in from `resolve_timeout`.
#[derive(Clone, Debug)]
struct Stored {
    alert: Alert,
    timeout: bool,
}

type GroupId = (String, Fingerprint);

#[derive(Default)]
struct Core {
    alerts: HashMap<Fingerprint, Stored>,
    groups: HashMap<GroupId, Arc<AggrGroup>>,
}

/// Inhibition over the alerts in [`Core`].
type CoreInhibitor<'a> = Inhibitor<
    'a,
    std::iter::Map<
        std::collections::hash_map::Values<'a, Fingerprint, Stored>,
        fn(&'a Stored) -> &'a Alert,
    >,
>;

impl Core {
    /// Inhibition by the stored alerts now under `cfg`'s inhibit rules: build it once per
    /// call and check every alert of that call against it.
    fn inhibitor<'a>(&'a self, cfg: &'a AlertingConfig, now: i64) -> CoreInhibitor<'a> {
        let alert: fn(&'a Stored) -> &'a Alert = |s| &s.alert;
        Inhibitor::new(&cfg.inhibit_rules, self.alerts.values().map(alert), now)
    }
}

pub(crate) struct Inner {
    config: RwLock<Arc<AlertingConfig>>,
    notifier: Arc<dyn Integrations>,
    nflog: Arc<NotificationLog>,
    /// The deliveries under way: per-key exclusion and what shutdown waits for.
    deliveries: Arc<Deliveries>,
    silences: Silences,
    core: Mutex<Core>,
    external_url: String,
    clock: Clock,
    runtime: tokio::runtime::Handle,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    db: StateDb,
}

/// Alertmanager inside Lookout.
pub struct Dispatcher {
    inner: Arc<Inner>,
}

impl Dispatcher {
    /// Starts the dispatcher (inside a tokio runtime, else an error): loads silences and
    /// the notification log from `state`.
    pub fn start<N: Integrations + 'static>(
        config: Arc<AlertingConfig>,
        notifier: Arc<N>,
        state: StateDb,
        external_url: impl Into<String>,
    ) -> Result<Arc<Dispatcher>, StateError> {
        Self::start_with_clock(config, notifier, state, external_url, Clock::System)
    }

    /// [`Dispatcher::start`] with a chosen clock (tests use [`Clock::tokio_at`]).
    pub fn start_with_clock<N: Integrations + 'static>(
        config: Arc<AlertingConfig>,
        notifier: Arc<N>,
        state: StateDb,
        external_url: impl Into<String>,
        clock: Clock,
    ) -> Result<Arc<Dispatcher>, StateError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| StateError {
            what: "starting the dispatcher".into(),
            message: format!("not inside a tokio runtime: {e}"),
        })?;
        let nflog = NotificationLog::open(&state, config.max_repeat_interval() * 2)?;
        let silences = Silences::open(&state, clock.clone())?;
        let (tx, _) = watch::channel(false);
        let notifier: Arc<dyn Integrations> = notifier;
        let inner = Arc::new(Inner {
            config: RwLock::new(config),
            notifier,
            nflog: Arc::new(nflog),
            deliveries: Arc::default(),
            silences,
            core: Mutex::new(Core::default()),
            external_url: external_url.into().trim_end_matches('/').to_string(),
            clock,
            runtime,
            shutdown: tx,
            tasks: Mutex::new(Vec::new()),
            db: state,
        });
        let maint = inner
            .runtime
            .spawn(maintenance(inner.clone(), inner.shutdown.subscribe()));
        inner.tasks.lock().push(maint);
        inner.update_gauges();
        Ok(Arc::new(Dispatcher { inner }))
    }

    /// The configuration in use.
    pub fn config(&self) -> Arc<AlertingConfig> {
        self.inner.config.read().clone()
    }

    /// Switches to a new configuration, as Alertmanager's reload: groups are rebuilt from
    /// the alerts held (each waits `group_wait` again; the notification log keeps them
    /// from notifying twice); alerts, silences and the log stay.
    pub fn apply_config(&self, config: Arc<AlertingConfig>) {
        self.inner
            .nflog
            .set_retention(config.max_repeat_interval() * 2);
        *self.inner.config.write() = config.clone();
        let now = self.inner.clock.now_ms();
        let mut core = self.inner.core.lock();
        for (_, g) in core.groups.drain() {
            g.stop();
        }
        let alerts: Vec<Alert> = core.alerts.values().map(|s| s.alert.clone()).collect();
        for a in alerts {
            self.inner.route_alert(&mut core, &config, a, now);
        }
    }

    /// `POST /api/v2/alerts`: fills in missing start and end times as Alertmanager does,
    /// stores the valid alerts, and reports the invalid ones (all of them, by index).
    pub fn post_alerts(&self, alerts: Vec<PostableAlert>) -> Result<(), String> {
        let now = self.inner.clock.now_ms();
        let mut ok = Vec::new();
        let mut errs = Vec::new();
        // Go clients send the zero time (0001-01-01T00:00:00Z) for "not set".
        let set = |t: Option<Timestamp>| t.filter(|t| t.0 != GO_ZERO_TIME_MS);
        for (i, mut p) in alerts.into_iter().enumerate() {
            p.starts_at = set(p.starts_at);
            p.ends_at = set(p.ends_at);
            let starts = match (p.starts_at, p.ends_at) {
                (Some(s), _) => s.0,
                (None, Some(e)) => e.0,
                (None, None) => now,
            };
            let checked = PostableAlert {
                starts_at: Some(Timestamp(starts)),
                ..p
            };
            if let Err(e) = checked.validate() {
                errs.push(format!("alert {i}: {e}"));
                continue;
            }
            ok.push(Alert {
                labels: checked.labels,
                annotations: checked.annotations,
                starts_at_ms: starts,
                ends_at_ms: checked.ends_at.map(|t| t.0),
                updated_at_ms: now,
                generator_url: checked.generator_url,
                evidence: Evidence::default(),
            });
        }
        self.put(ok);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }

    /// `GET /api/v2/alerts`: the unresolved alerts passing `filter`, by fingerprint.
    pub fn alerts(&self, filter: &AlertFilter) -> Vec<GettableAlert> {
        let now = self.inner.clock.now_ms();
        let cfg = self.config();
        let core = self.inner.core.lock();
        let inh = core.inhibitor(&cfg, now);
        let mut out: Vec<GettableAlert> = core
            .alerts
            .values()
            .filter_map(|s| self.inner.gettable(&inh, &cfg, &s.alert, filter, now))
            .collect();
        out.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        out
    }

    /// `GET /api/v2/alerts/groups`: the aggregation groups with their alerts passing
    /// `filter` (groups left without alerts are not shown), by receiver then labels.
    pub fn groups(&self, filter: &AlertFilter) -> Vec<AlertGroup> {
        let now = self.inner.clock.now_ms();
        let cfg = self.config();
        let core = self.inner.core.lock();
        let inh = core.inhibitor(&cfg, now);
        let mut out = Vec::new();
        for g in core.groups.values() {
            if let Some(re) = &filter.receiver {
                if !re.is_match(&g.opts.receiver) {
                    continue;
                }
            }
            let held: Vec<Alert> = g.state.lock().alerts.values().cloned().collect();
            let mut alerts: Vec<GettableAlert> = held
                .iter()
                .filter_map(|a| {
                    let current = core.alerts.get(&a.fingerprint()).map_or(a, |s| &s.alert);
                    let unfiltered = AlertFilter {
                        receiver: None,
                        ..filter.clone()
                    };
                    self.inner.gettable(&inh, &cfg, current, &unfiltered, now)
                })
                .collect();
            if alerts.is_empty() {
                continue;
            }
            alerts.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
            out.push(AlertGroup {
                labels: g.labels.clone(),
                receiver: Receiver {
                    name: g.opts.receiver.clone(),
                },
                alerts,
            });
        }
        out.sort_by(|a, b| {
            a.receiver
                .name
                .cmp(&b.receiver.name)
                .then_with(|| a.labels.cmp(&b.labels))
        });
        out
    }

    pub fn silences(&self) -> &Silences {
        &self.inner.silences
    }

    /// Stops every group and background task, waits for the deliveries in flight (up to
    /// 10 s) so that what they sent is logged, and makes the state durable.
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.inner.tasks.lock());
        for t in tasks {
            let _ = t.await;
        }
        // The group tasks have ended, so no new delivery starts; those already spawned
        // run on their own and log when they finish.
        let abandoned = self
            .inner
            .deliveries
            .wait_idle(SHUTDOWN_DELIVERY_WAIT)
            .await;
        for what in &abandoned {
            tracing::warn!(delivery = %what, wait = ?SHUTDOWN_DELIVERY_WAIT,
                "delivery still in flight at shutdown; abandoned, it may be sent again after the restart");
        }
        {
            let mut core = self.inner.core.lock();
            for (_, g) in core.groups.drain() {
                g.stop();
            }
        }
        let db = self.inner.db.clone();
        match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "flushing the alerter state at shutdown failed")
            }
            Err(e) => tracing::error!(error = %e, "the alerter state flush task failed"),
        }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        // Background tasks hold the inner state; without this they would run forever.
        let _ = self.inner.shutdown.send(true);
    }
}

impl AlertSink for Dispatcher {
    fn put(&self, alerts: Vec<Alert>) {
        let now = self.inner.clock.now_ms();
        let cfg = self.config();
        let mut core = self.inner.core.lock();
        for mut a in alerts {
            ALERTS_RECEIVED.inc();
            let mut timeout = false;
            if a.ends_at_ms.is_none() {
                a.ends_at_ms = Some(now + cfg.resolve_timeout.as_millis() as i64);
                timeout = true;
            }
            let fp = a.fingerprint();
            let mut s = Stored { alert: a, timeout };
            if let Some(old) = core.alerts.get(&fp) {
                if overlaps(&old.alert, &s.alert) {
                    s = merge(old, s, now);
                }
            }
            let alert = s.alert.clone();
            core.alerts.insert(fp, s);
            self.inner.route_alert(&mut core, &cfg, alert, now);
        }
    }
}

fn end(a: &Alert) -> i64 {
    a.ends_at_ms.unwrap_or(i64::MAX)
}

/// Alertmanager's provider merges a new alert into the stored one when their activity
/// ranges overlap; otherwise the new one replaces it.
fn overlaps(old: &Alert, new: &Alert) -> bool {
    (end(new) > old.starts_at_ms && end(new) < end(old))
        || (new.starts_at_ms > old.starts_at_ms && new.starts_at_ms < end(old))
}

/// Alertmanager's `Alert.Merge`: the younger alert wins, with the earliest start and,
/// where it says so, the latest end.
fn merge(old: &Stored, new: Stored, now: i64) -> Stored {
    let (a, o) = if new.alert.updated_at_ms < old.alert.updated_at_ms {
        (new, old.clone())
    } else {
        (old.clone(), new)
    };
    let mut res = o.clone();
    res.alert.starts_at_ms = a.alert.starts_at_ms.min(o.alert.starts_at_ms);
    if o.alert.is_resolved_at(now) {
        if a.alert.is_resolved_at(now) && end(&a.alert) > end(&o.alert) {
            res.alert.ends_at_ms = a.alert.ends_at_ms;
        }
    } else if end(&a.alert) > end(&o.alert) && !a.timeout {
        res.alert.ends_at_ms = a.alert.ends_at_ms;
    }
    res
}

impl Inner {
    /// Puts an alert into the group of every route it matches, creating groups.
    fn route_alert(
        self: &Arc<Self>,
        core: &mut Core,
        cfg: &AlertingConfig,
        alert: Alert,
        now: i64,
    ) {
        let Some(root) = &cfg.route else {
            return;
        };
        for r in root.match_labels(&alert.labels) {
            let labels = r.group_labels(&alert.labels);
            let id = (r.id.clone(), Fingerprint::of(&labels));
            let g = match core.groups.get(&id) {
                Some(g) => g.clone(),
                None => {
                    let key = route::group_key(&r.id, &labels);
                    let g = Arc::new(AggrGroup::new(key, labels, RouteOpts::of(r)));
                    core.groups.insert(id, g.clone());
                    let task = self.runtime.spawn(group::run(
                        self.clone(),
                        g.clone(),
                        self.shutdown.subscribe(),
                    ));
                    let mut tasks = self.tasks.lock();
                    tasks.retain(|t| !t.is_finished());
                    tasks.push(task);
                    g
                }
            };
            g.insert(alert.clone(), now);
        }
    }

    /// Removes a group that has no alerts left; true when it was removed (or is no longer
    /// the current group for its id, after a reload).
    pub(crate) fn remove_if_empty(&self, g: &Arc<AggrGroup>) -> bool {
        let mut core = self.core.lock();
        if g.state.lock().stopped {
            return true;
        }
        if !g.is_empty() {
            return false;
        }
        core.groups.retain(|_, x| !Arc::ptr_eq(x, g));
        g.state.lock().stopped = true;
        true
    }

    /// Fingerprints of the alerts among `alerts` that are silenced or inhibited now.
    pub(crate) fn muted(&self, alerts: &[Alert], now: i64) -> HashSet<Fingerprint> {
        let cfg = self.config.read().clone();
        let core = self.core.lock();
        let inh = core.inhibitor(&cfg, now);
        alerts
            .iter()
            .filter(|a| {
                !self.silences.silenced_by(&a.labels, now).is_empty()
                    || !inh.inhibited_by(&a.labels).is_empty()
            })
            .map(Alert::fingerprint)
            .collect()
    }

    /// The v2 view of an alert when it passes `filter` (never a resolved one).
    fn gettable(
        &self,
        inh: &CoreInhibitor<'_>,
        cfg: &AlertingConfig,
        a: &Alert,
        filter: &AlertFilter,
        now: i64,
    ) -> Option<GettableAlert> {
        if a.is_resolved_at(now) || !all_match(&filter.matchers, &a.labels) {
            return None;
        }
        let receivers: Vec<Receiver> = cfg
            .route
            .as_ref()
            .map(|r| r.match_labels(&a.labels))
            .unwrap_or_default()
            .into_iter()
            .map(|r| Receiver {
                name: r.receiver.clone(),
            })
            .collect();
        if let Some(re) = &filter.receiver {
            if !receivers.iter().any(|r| re.is_match(&r.name)) {
                return None;
            }
        }
        let status = self.status(inh, a, now);
        let shown = match status.state {
            AlertState::Active => filter.active,
            AlertState::Unprocessed => filter.unprocessed,
            AlertState::Suppressed => {
                (status.silenced_by.is_empty() || filter.silenced)
                    && (status.inhibited_by.is_empty() || filter.inhibited)
            }
        };
        shown.then(|| GettableAlert {
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            starts_at: Timestamp(a.starts_at_ms),
            ends_at: Timestamp(a.ends_at_ms.unwrap_or(0)),
            updated_at: Timestamp(a.updated_at_ms),
            generator_url: a.generator_url.clone(),
            fingerprint: a.fingerprint().to_string(),
            receivers,
            status,
        })
    }

    fn status(&self, inh: &CoreInhibitor<'_>, a: &Alert, now: i64) -> AlertStatus {
        let silenced_by = self.silences.silenced_by(&a.labels, now);
        let inhibited_by: Vec<String> = inh
            .inhibited_by(&a.labels)
            .iter()
            .map(ToString::to_string)
            .collect();
        let state = if silenced_by.is_empty() && inhibited_by.is_empty() {
            AlertState::Active
        } else {
            AlertState::Suppressed
        };
        AlertStatus {
            state,
            silenced_by,
            inhibited_by,
        }
    }

    /// Garbage collection and gauges.
    fn maintain(&self) {
        let now = self.clock.now_ms();
        self.silences.gc(now);
        self.nflog.gc(now);
        let mut core = self.core.lock();
        let held: HashSet<Fingerprint> = core
            .groups
            .values()
            .flat_map(|g| g.state.lock().alerts.keys().copied().collect::<Vec<_>>())
            .collect();
        core.alerts
            .retain(|fp, s| !s.alert.is_resolved_at(now) || held.contains(fp));
        drop(core);
        self.update_gauges();
    }

    /// (active, suppressed) counts of the unresolved alerts held.
    fn alert_counts(&self) -> (i64, i64) {
        let now = self.clock.now_ms();
        let cfg = self.config.read().clone();
        let core = self.core.lock();
        let inh = core.inhibitor(&cfg, now);
        let (mut active, mut suppressed) = (0i64, 0i64);
        for s in core.alerts.values() {
            if s.alert.is_resolved_at(now) {
                continue;
            }
            match self.status(&inh, &s.alert, now).state {
                AlertState::Suppressed => suppressed += 1,
                _ => active += 1,
            }
        }
        (active, suppressed)
    }

    fn update_gauges(&self) {
        let (active, suppressed) = self.alert_counts();
        ALERTS.with_label_values(&["active"]).set(active);
        ALERTS.with_label_values(&["suppressed"]).set(suppressed);
        self.silences.refresh_gauge();
    }
}

async fn maintenance(inner: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => inner.maintain(),
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
