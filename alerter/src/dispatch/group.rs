//! Aggregation groups, as Alertmanager's `aggrGroup`: the alerts of one route with the same
//! group labels. A new group flushes after `group_wait` (at once when an alert older than
//! that arrives before the first flush), then every `group_interval`. A flush drops
//! silenced and inhibited alerts, then for each integration of the receiver asks the
//! notification log whether this firing/resolved set is news (or `repeat_interval` has
//! passed), delivers in its own task, and logs what was sent. Resolved alerts leave the
//! group once every integration succeeded; an empty group ends. Each delivery holds its
//! notification-log key from reading the log to writing it, and is counted until it ends
//! ([`super::inflight`]), so a reload cannot send it twice and a shutdown waits for it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio::time::{sleep_until, Instant};

use super::inflight::{Deliveries, Running};
use super::nflog::{Entry, NotificationLog};
use super::route::Route;
use super::{Deliver, Inner};
use crate::model::{Alert, Fingerprint, LabelSet, Notification};

/// The settings of the route a group belongs to.
#[derive(Clone, Debug)]
pub(crate) struct RouteOpts {
    pub receiver: String,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
}

impl RouteOpts {
    pub fn of(r: &Route) -> Self {
        RouteOpts {
            receiver: r.receiver.clone(),
            group_wait: r.group_wait,
            group_interval: r.group_interval,
            repeat_interval: r.repeat_interval,
        }
    }
}

#[derive(Default)]
pub(crate) struct GroupState {
    pub alerts: BTreeMap<Fingerprint, Alert>,
    pub has_flushed: bool,
    pub stopped: bool,
}

pub(crate) struct AggrGroup {
    pub key: String,
    pub labels: LabelSet,
    pub opts: RouteOpts,
    pub state: Mutex<GroupState>,
    /// Woken to flush at once, or to notice `stopped`.
    pub wake: Notify,
}

impl AggrGroup {
    pub fn new(key: String, labels: LabelSet, opts: RouteOpts) -> Self {
        AggrGroup {
            key,
            labels,
            opts,
            state: Mutex::new(GroupState::default()),
            wake: Notify::new(),
        }
    }

    /// Adds or replaces an alert; flushes early when the group has not flushed yet and the
    /// alert is older than `group_wait` (as Alertmanager).
    pub fn insert(&self, alert: Alert, now_ms: i64) {
        let mut st = self.state.lock();
        let early = !st.has_flushed
            && alert.starts_at_ms + self.opts.group_wait.as_millis() as i64 <= now_ms;
        st.alerts.insert(alert.fingerprint(), alert);
        drop(st);
        if early {
            self.wake.notify_one();
        }
    }

    pub fn stop(&self) {
        self.state.lock().stopped = true;
        self.wake.notify_one();
    }

    pub fn is_empty(&self) -> bool {
        self.state.lock().alerts.is_empty()
    }
}

/// The group's life: wait, flush, tick, until it is empty, stopped, or shut down.
pub(crate) async fn run(inner: Arc<Inner>, g: Arc<AggrGroup>, mut shutdown: watch::Receiver<bool>) {
    let mut next = Instant::now() + g.opts.group_wait;
    loop {
        tokio::select! {
            _ = sleep_until(next) => {}
            _ = g.wake.notified() => {
                let (stopped, has_flushed) = {
                    let st = g.state.lock();
                    (st.stopped, st.has_flushed)
                };
                if stopped {
                    return;
                }
                if has_flushed {
                    continue;
                }
            }
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        if g.state.lock().stopped {
            return;
        }
        next = Instant::now() + g.opts.group_interval;
        tokio::select! {
            _ = flush(&inner, &g) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        if inner.remove_if_empty(&g) {
            return;
        }
    }
}

/// Firing first, then resolved; each by start time, then labels.
pub(crate) fn sort_alerts(alerts: &mut [Alert], now_ms: i64) {
    alerts.sort_by(|a, b| {
        a.is_resolved_at(now_ms)
            .cmp(&b.is_resolved_at(now_ms))
            .then(a.starts_at_ms.cmp(&b.starts_at_ms))
            .then_with(|| a.labels.cmp(&b.labels))
    });
}

async fn flush(inner: &Arc<Inner>, g: &Arc<AggrGroup>) {
    let now = inner.clock.now_ms();
    let snapshot: Vec<Alert> = g.state.lock().alerts.values().cloned().collect();
    let muted = inner.muted(&snapshot, now);
    let mut alerts: Vec<Alert> = snapshot
        .iter()
        .filter(|a| !muted.contains(&a.fingerprint()))
        .cloned()
        .collect();
    sort_alerts(&mut alerts, now);
    let ok = if alerts.is_empty() {
        true
    } else {
        match inner.notifier.integrations(&g.opts.receiver) {
            None => {
                tracing::warn!(receiver = %g.opts.receiver, group = %g.key, "no such receiver; nothing notified");
                false
            }
            Some(list) => {
                let alerts = Arc::new(alerts);
                let handles: Vec<_> = list
                    .into_iter()
                    .map(|d| {
                        let running = inner.deliveries.start(format!(
                            "group {} receiver {} integration {}",
                            g.key,
                            g.opts.receiver,
                            d.name()
                        ));
                        let job = Job {
                            deliveries: inner.deliveries.clone(),
                            _running: running,
                            nflog: inner.nflog.clone(),
                            clock: inner.clock.clone(),
                            group: g.clone(),
                            alerts: alerts.clone(),
                            external_url: inner.external_url.clone(),
                            now_ms: now,
                        };
                        inner.runtime.spawn(job.run(d))
                    })
                    .collect();
                let mut all = true;
                for h in handles {
                    // A panicking integration counts as a failure, not a dead group.
                    all &= h.await.unwrap_or(false);
                }
                all
            }
        }
    };
    let mut st = g.state.lock();
    st.has_flushed = true;
    if ok {
        for a in snapshot.iter().filter(|a| a.is_resolved_at(now)) {
            let fp = a.fingerprint();
            if st.alerts.get(&fp) == Some(a) {
                st.alerts.remove(&fp);
            }
        }
    }
}

/// One integration's part of a flush.
struct Job {
    deliveries: Arc<Deliveries>,
    /// Counts this job as in flight for the dispatcher's shutdown until it is dropped.
    _running: Running,
    nflog: Arc<NotificationLog>,
    clock: super::Clock,
    group: Arc<AggrGroup>,
    alerts: Arc<Vec<Alert>>,
    external_url: String,
    now_ms: i64,
}

impl Job {
    async fn run(self, d: Arc<dyn Deliver>) -> bool {
        let g = &self.group;
        let name = d.name();
        let resolved_at = |a: &Alert| a.is_resolved_at(self.now_ms);
        let firing: BTreeSet<u64> = self
            .alerts
            .iter()
            .filter(|a| !resolved_at(a))
            .map(|a| a.fingerprint().0)
            .collect();
        let resolved: BTreeSet<u64> = self
            .alerts
            .iter()
            .filter(|a| resolved_at(a))
            .map(|a| a.fingerprint().0)
            .collect();
        // Held until this job ends: another job for the same key (a reload's new group)
        // reads the log only after this one has written it.
        let _key = self
            .deliveries
            .lock(super::nflog::key(&g.key, &g.opts.receiver, &name))
            .await;
        let prev = self.nflog.get(&g.key, &g.opts.receiver, &name);
        if !Entry::needs_update(
            prev.as_ref(),
            &firing,
            &resolved,
            d.send_resolved(),
            g.opts.repeat_interval,
            self.now_ms,
        ) {
            return true;
        }
        let to_send: Vec<Alert> = if d.send_resolved() {
            self.alerts.to_vec()
        } else {
            self.alerts
                .iter()
                .filter(|a| !resolved_at(a))
                .cloned()
                .collect()
        };
        if !to_send.is_empty() {
            let n = Notification {
                receiver: g.opts.receiver.clone(),
                group_key: g.key.clone(),
                group_labels: g.labels.clone(),
                alerts: to_send,
                external_url: self.external_url.clone(),
                now_ms: self.now_ms,
            };
            if let Err(e) = d.deliver(&n).await {
                tracing::warn!(receiver = %g.opts.receiver, integration = %name, group = %g.key,
                    error = %e, "notification failed; retried at the next group interval");
                return false;
            }
        }
        if let Err(e) = self.nflog.log(
            &g.key,
            &g.opts.receiver,
            &name,
            firing,
            resolved,
            self.clock.now_ms(),
        ) {
            tracing::error!(error = %e, group = %g.key, "writing the notification log failed");
        } else if let Err(e) = self.nflog.flush().await {
            tracing::error!(error = %e, group = %g.key, "flushing the notification log failed");
        }
        true
    }
}
