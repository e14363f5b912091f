//! One integration of one receiver, delivering notifications reliably: through the robot's
//! rate limiter (chat robots), one [`Integration`] attempt at a time, classifying failures,
//! retrying transient ones with exponential backoff and jitter, recording every attempt
//! (attempts log, `lookout_notifications_total`) and the latency.
//!
//! A robot may be shared by integrations of several receivers. Its limiter only merges
//! notifications of integrations whose messages would be rendered alike (the robot's
//! [`ChatRobot::batch_class`](super::ChatRobot::batch_class)); a digest then mentions
//! everyone any of its members would have mentioned. Every failure's message is cleaned
//! ([`clean_message`](super::clean_message)) before it is logged, recorded or returned.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use tokio::time::Instant;

use super::attempts::{now_ms, rfc3339_ms, Attempt, AttemptLog, Outcome};
use super::limiter::Limiter;
use super::{metrics, ChatMessage, Delivered, FailureKind, Integration, Mentions, NotifyError};
use crate::model::Notification;
use crate::template::Language;

/// When and how often transient failures are retried.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// The wait after the first failure; doubled after each further one.
    pub initial: Duration,
    /// Waits vary by up to this fraction either way, so robots are not hit in lockstep.
    pub jitter: f64,
    /// The longest wait between attempts.
    pub max_delay: Duration,
    /// At most this many attempts per notification.
    pub max_attempts: u32,
    /// No attempt starts later than this after the first.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(500),
            jitter: 0.2,
            max_delay: Duration::from_secs(30),
            max_attempts: 10,
            max_elapsed: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        let base = self
            .initial
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay);
        let factor = if self.jitter > 0.0 {
            1.0 + rand::rng().random_range(-self.jitter..=self.jitter)
        } else {
            1.0
        };
        base.mul_f64(factor).min(self.max_delay)
    }
}

/// What every delivery of a notifier shares.
pub(crate) struct Shared {
    pub attempts: AttemptLog,
    pub retry: RetryPolicy,
}

/// The outcome every notification of a batch gets: delivered (and whether as part of a
/// digest) or the failure.
type BatchOutcome = Result<Delivered, NotifyError>;

/// A chat robot's limiter, batching [`Member`]s.
pub(crate) type RobotLimiter = Limiter<Member, BatchOutcome>;

/// Who delivers: the receiver and integration names an attempt is recorded under.
#[derive(Clone, Debug)]
struct Who {
    receiver: String,
    name: String,
    kind: &'static str,
}

/// A notification waiting in a robot's batch.
pub(crate) struct Member {
    who: Who,
    integration: Arc<dyn Integration>,
    notification: Notification,
    /// The attempts recorded for this notification (for test sends).
    collected: Arc<Mutex<Vec<Attempt>>>,
}

/// One integration of one receiver (`dingtalk[0]` of `oncall`).
pub struct Delivery {
    who: Who,
    integration: Arc<dyn Integration>,
    limiter: Option<Arc<RobotLimiter>>,
    language: Language,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("receiver", &self.who.receiver)
            .field("integration", &self.who.name)
            .field("rate_limited", &self.limiter.is_some())
            .finish()
    }
}

impl Delivery {
    pub(crate) fn new(
        receiver: &str,
        name: String,
        integration: Arc<dyn Integration>,
        limiter: Option<Arc<RobotLimiter>>,
        language: Language,
        shared: Arc<Shared>,
    ) -> Self {
        Delivery {
            who: Who {
                receiver: receiver.to_string(),
                name,
                kind: integration.kind(),
            },
            integration,
            limiter,
            language,
            shared,
        }
    }

    /// The integration within its receiver, e.g. `dingtalk[0]`.
    pub fn name(&self) -> &str {
        &self.who.name
    }

    pub fn receiver(&self) -> &str {
        &self.who.receiver
    }

    /// `dingtalk`, `wecom`, `email` or `webhook`.
    pub fn kind(&self) -> &'static str {
        self.who.kind
    }

    pub fn send_resolved(&self) -> bool {
        self.integration.send_resolved()
    }

    /// The language of this integration's built-in templates.
    pub fn language(&self) -> Language {
        self.language
    }

    /// Delivers `notification`: waits for the robot's rate limit (merging into a digest
    /// with whatever else waits), retries transient failures, records every attempt.
    /// `Ok` once the platform accepted every message.
    pub async fn deliver(&self, notification: &Notification) -> Result<Delivered, NotifyError> {
        self.deliver_collecting(notification).await.0
    }

    /// [`Delivery::deliver`], also returning the attempts it recorded.
    pub(crate) async fn deliver_collecting(
        &self,
        notification: &Notification,
    ) -> (Result<Delivered, NotifyError>, Vec<Attempt>) {
        let start = Instant::now();
        let member = Member {
            who: self.who.clone(),
            integration: Arc::clone(&self.integration),
            notification: notification.clone(),
            collected: Arc::default(),
        };
        let collected = Arc::clone(&member.collected);
        let result = match (&self.limiter, self.integration.chat()) {
            (Some(limiter), Some(robot)) => {
                let (shared, l) = (Arc::clone(&self.shared), Arc::clone(limiter));
                limiter
                    .submit(member, robot.batch_class(), move |members| {
                        run_chat_batch(shared, l, members)
                    })
                    .await
                    .unwrap_or_else(|| {
                        Err(NotifyError::transient(
                            "the robot's delivery task ended without an outcome",
                        ))
                    })
            }
            _ => run_plain(&self.shared, &member).await,
        };
        metrics::LATENCY.observe(start.elapsed().as_secs_f64());
        let attempts = collected.lock().clone();
        (result, attempts)
    }
}

/// Records one attempt of `m` (log, metrics, the member's own list).
fn record(
    shared: &Shared,
    m: &Member,
    attempt: u32,
    outcome: Outcome,
    err: Option<&NotifyError>,
    messages: usize,
    digest: bool,
) {
    let ms = now_ms();
    let a = Attempt {
        receiver: m.who.receiver.clone(),
        integration: m.who.name.clone(),
        kind: m.who.kind.to_string(),
        time: rfc3339_ms(ms),
        time_ms: Some(ms),
        outcome,
        attempt,
        status_code: err.map_or(Some(200), |e| e.status).filter(|_| {
            // email has no HTTP status
            m.who.kind != "email"
        }),
        // a chat robot's success is its answer `errcode: 0`
        errcode: match err {
            Some(e) => e.errcode,
            None => m.integration.chat().map(|_| 0),
        },
        errmsg: err.map(|e| e.message.clone()),
        group_key: m.notification.group_key.clone(),
        alerts: m.notification.alerts.len(),
        messages,
        digest,
    };
    metrics::NOTIFICATIONS
        .with_label_values(&[&m.who.receiver, &m.who.name, outcome.as_str()])
        .inc();
    m.collected.lock().push(a.clone());
    shared.attempts.record(a);
}

fn log_failure(m: &Member, e: &NotifyError, attempt: u32, gave_up: bool) {
    if gave_up || e.kind == FailureKind::Permanent {
        tracing::error!(
            receiver = %m.who.receiver,
            integration = %m.who.name,
            status = ?e.status,
            errcode = ?e.errcode,
            attempt,
            error = %e.message,
            kind = ?e.kind,
            "notification failed"
        );
    } else {
        tracing::warn!(
            receiver = %m.who.receiver,
            integration = %m.who.name,
            status = ?e.status,
            errcode = ?e.errcode,
            attempt,
            error = %e.message,
            "notification attempt failed; retrying"
        );
    }
}

/// Whether another attempt may follow failed attempt `attempt` after waiting `delay`.
fn may_retry(
    policy: &RetryPolicy,
    e: &NotifyError,
    attempt: u32,
    start: Instant,
    delay: Duration,
) -> bool {
    e.kind == FailureKind::Transient
        && attempt < policy.max_attempts
        && start.elapsed() + delay <= policy.max_elapsed
}

/// Delivery without a rate limiter: one `Integration::send` per attempt.
async fn run_plain(shared: &Shared, m: &Member) -> Result<Delivered, NotifyError> {
    let start = Instant::now();
    let mut attempt = 1;
    loop {
        match m
            .integration
            .send(std::slice::from_ref(&m.notification))
            .await
            .map_err(|e| e.cleaned(&[]))
        {
            Ok(d) => {
                record(
                    shared,
                    m,
                    attempt,
                    Outcome::Success,
                    None,
                    d.messages,
                    false,
                );
                return Ok(d);
            }
            Err(e) => {
                let delay = shared.retry.delay(attempt);
                let retry = may_retry(&shared.retry, &e, attempt, start, delay);
                let outcome = if retry {
                    Outcome::Retrying
                } else {
                    Outcome::Failed
                };
                record(shared, m, attempt, outcome, Some(&e), 0, false);
                log_failure(m, &e, attempt, !retry);
                if !retry {
                    return Err(e);
                }
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

/// The batch's notifications, one per (receiver, group): when a group was flushed again
/// while its earlier notification still waited, the newer state stands for both.
fn distinct_groups(members: &[Member]) -> Vec<Notification> {
    let mut out: Vec<Notification> = Vec::with_capacity(members.len());
    for m in members {
        let n = &m.notification;
        match out
            .iter_mut()
            .find(|o| o.receiver == n.receiver && o.group_key == n.group_key)
        {
            Some(o) if n.now_ms >= o.now_ms => *o = n.clone(),
            Some(_) => {}
            None => out.push(n.clone()),
        }
    }
    out
}

/// Who a batch's message mentions: everyone each member's integration would mention for
/// its group, in the group's newest state (the one the message shows).
fn batch_mentions(members: &[Member], notifications: &[Notification]) -> Mentions {
    let mut all = Mentions::default();
    for m in members {
        let Some(robot) = m.integration.chat() else {
            continue;
        };
        let n = &m.notification;
        let shown = notifications
            .iter()
            .find(|o| o.receiver == n.receiver && o.group_key == n.group_key)
            .unwrap_or(n);
        all.merge(robot.mentions(std::slice::from_ref(shown)));
    }
    all
}

/// Sends one batch of a robot (one notification, or several merged into a digest),
/// rendered by the first member's integration (the limiter batches only integrations
/// that render alike) and mentioning everyone any member would, taking a limiter slot per
/// message posted; a retry resumes after the last part that arrived.
async fn run_chat_batch(
    shared: Arc<Shared>,
    limiter: Arc<RobotLimiter>,
    members: Vec<Member>,
) -> BatchOutcome {
    let Some(leader) = members.first() else {
        return Err(NotifyError::permanent("an empty batch"));
    };
    let integration = Arc::clone(&leader.integration);
    let Some(robot) = integration.chat() else {
        return Err(NotifyError::permanent("not a chat robot"));
    };
    let notifications = distinct_groups(&members);
    let digest = notifications.len() > 1;
    let record_all = |attempt, outcome, err: Option<&NotifyError>, messages| {
        for m in &members {
            record(&shared, m, attempt, outcome, err, messages, digest);
        }
    };
    let mentions = batch_mentions(&members, &notifications);
    let mut messages: Vec<ChatMessage> = match robot.messages(&notifications, &mentions) {
        Ok(m) => m,
        Err(e) => {
            let e = e.cleaned(&[]);
            record_all(1, Outcome::Failed, Some(&e), 0);
            for m in &members {
                log_failure(m, &e, 1, true);
            }
            return Err(e);
        }
    };
    let start = Instant::now();
    let mut attempt = 1;
    let mut next = 0;
    let mut resplit = false;
    loop {
        let mut posted = 0;
        let mut failure = None;
        while next < messages.len() {
            limiter.slot().await;
            let result = robot
                .post(&messages[next])
                .await
                .map_err(|e| e.cleaned(&[]));
            limiter.finish_slot();
            match result {
                Ok(()) => {
                    next += 1;
                    posted += 1;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let Some(e) = failure else {
            record_all(attempt, Outcome::Success, None, posted);
            if digest {
                for m in &members {
                    metrics::DIGESTED
                        .with_label_values(&[&m.who.receiver, &m.who.name])
                        .inc();
                }
            }
            return Ok(Delivered {
                messages: messages.len(),
            });
        };
        // too long for the platform: split that part smaller, once, and go on at once
        if e.errcode == Some(super::dingtalk::TOO_LONG) && !resplit {
            if let Some(smaller) = robot.shrink(&messages[next]) {
                resplit = true;
                record_all(attempt, Outcome::Retrying, Some(&e), posted);
                for m in &members {
                    log_failure(m, &NotifyError::transient(&e.message), attempt, false);
                }
                messages.splice(next..=next, smaller);
                attempt += 1;
                continue;
            }
        }
        let delay = shared.retry.delay(attempt);
        let retry = may_retry(&shared.retry, &e, attempt, start, delay);
        let outcome = if retry {
            Outcome::Retrying
        } else {
            Outcome::Failed
        };
        record_all(attempt, outcome, Some(&e), posted);
        for m in &members {
            log_failure(m, &e, attempt, !retry);
        }
        if !retry {
            return Err(e);
        }
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}
