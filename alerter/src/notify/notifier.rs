//! The [`Notifier`]: every receiver's integrations built from the config, the per-robot
//! limiters (kept across reloads, keyed by robot), the attempts log, and test sends.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::attempts::{now_ms, Attempt, AttemptLog};
use super::delivery::{Delivery, RetryPolicy, RobotLimiter, Shared};
use super::limiter::Limiter;
use super::{BuildContext, Integration, RateLimit, ReceiverConfig};
use crate::model::{Alert, Evidence, LabelSet, Notification};
use crate::state::StateDb;
use crate::template::Language;

/// What a [`Notifier`] is built with.
#[derive(Clone)]
pub struct NotifierOptions {
    /// Base URL of the Lookout UI (`server.external_url`), for test notifications' links.
    pub external_url: String,
    /// `alerting.language`: the built-in templates' default language.
    pub language: Language,
    /// Where the attempts log persists.
    pub state: StateDb,
}

/// Delivers notifications to the configured receivers.
pub struct Notifier {
    external_url: String,
    shared: Arc<Shared>,
    http: reqwest::Client,
    receivers: RwLock<HashMap<String, Vec<Arc<Delivery>>>>,
    /// One limiter per robot (by URL), kept across reloads so a reload cannot reset the
    /// window and burst past the platform's limit.
    limiters: Mutex<HashMap<String, Arc<RobotLimiter>>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let receivers = self.receivers.read();
        let mut names: Vec<&String> = receivers.keys().collect();
        names.sort();
        f.debug_struct("Notifier")
            .field("receivers", &names)
            .finish()
    }
}

impl Notifier {
    /// Validates and builds every receiver. Errors name the config path
    /// (`alerting.receivers[0].dingtalk_configs[0].url: ...`).
    pub fn new(
        receivers: &[ReceiverConfig],
        opts: NotifierOptions,
    ) -> Result<Arc<Notifier>, Vec<String>> {
        Self::with_retry_policy(receivers, opts, RetryPolicy::default())
    }

    /// [`Notifier::new`] with another retry policy (tests).
    pub fn with_retry_policy(
        receivers: &[ReceiverConfig],
        opts: NotifierOptions,
        retry: RetryPolicy,
    ) -> Result<Arc<Notifier>, Vec<String>> {
        let attempts = AttemptLog::open(&opts.state)
            .map_err(|e| vec![format!("opening the notification attempts: {e}")])?;
        let notifier = Notifier {
            external_url: opts.external_url.trim_end_matches('/').to_string(),
            shared: Arc::new(Shared { attempts, retry }),
            http: super::http_client(),
            receivers: RwLock::new(HashMap::new()),
            limiters: Mutex::new(HashMap::new()),
        };
        notifier.reconfigure(receivers, opts.language)?;
        Ok(Arc::new(notifier))
    }

    /// Replaces the receivers (config reload). On errors nothing changes. Robots keep their
    /// limiter (window and waiting batch).
    pub fn reconfigure(
        &self,
        receivers: &[ReceiverConfig],
        language: Language,
    ) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, r) in receivers.iter().enumerate() {
            let path = format!("alerting.receivers[{i}]");
            if r.name.is_empty() {
                errors.push(format!("{path}.name: must not be empty"));
            } else if !seen.insert(r.name.as_str()) {
                errors.push(format!("{path}.name: duplicate receiver name {:?}", r.name));
            }
            errors.extend(validate_receiver(r, &path));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let ctx = BuildContext {
            language,
            http: self.http.clone(),
        };
        // the strictest limit of every integration sharing a robot
        let mut built: Vec<(String, Vec<Built>)> = Vec::new();
        let mut limits: HashMap<String, RateLimit> = HashMap::new();
        for r in receivers {
            let integrations = build_receiver(r, &ctx);
            for (_, integration, _) in &integrations {
                if let Some(robot) = integration.chat() {
                    let limit = robot.rate_limit();
                    limits
                        .entry(robot.robot_key())
                        .and_modify(|l| *l = l.stricter(limit))
                        .or_insert(limit);
                }
            }
            built.push((r.name.clone(), integrations));
        }
        let mut limiters = self.limiters.lock();
        for (key, limit) in &limits {
            match limiters.get(key) {
                Some(l) => l.set_limit(*limit),
                None => {
                    limiters.insert(key.clone(), Limiter::new(*limit));
                }
            }
        }
        let mut map = HashMap::new();
        for (receiver, integrations) in built {
            let deliveries = integrations
                .into_iter()
                .map(|(name, integration, lang)| {
                    let limiter = integration
                        .chat()
                        .and_then(|robot| limiters.get(&robot.robot_key()).cloned());
                    Arc::new(Delivery::new(
                        &receiver,
                        name,
                        integration,
                        limiter,
                        lang,
                        Arc::clone(&self.shared),
                    ))
                })
                .collect();
            map.insert(receiver, deliveries);
        }
        drop(limiters);
        *self.receivers.write() = map;
        Ok(())
    }

    /// The integrations of `receiver`, in config order (dingtalk, wecom, email, webhook);
    /// `None` for an unknown receiver.
    pub fn integrations(&self, receiver: &str) -> Option<Vec<Arc<Delivery>>> {
        self.receivers.read().get(receiver).cloned()
    }

    /// Receiver names, sorted.
    pub fn receivers(&self) -> Vec<String> {
        let mut names: Vec<String> = self.receivers.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// The newest `limit` attempts (of `receiver` when given), newest first.
    pub fn attempts(&self, receiver: Option<&str>, limit: usize) -> Vec<Attempt> {
        self.shared.attempts.list(receiver, limit)
    }

    /// Sends a synthetic test alert through every integration of `name` now (no grouping;
    /// retries and the limiter apply) and returns the attempts made; `None` for an unknown
    /// receiver.
    pub async fn test_receiver(&self, name: &str) -> Option<Vec<Attempt>> {
        let deliveries = self.integrations(name)?;
        let sends = deliveries.iter().map(|d| {
            let n = test_notification(name, d.language(), &self.external_url);
            async move { d.deliver_collecting(&n).await.1 }
        });
        Some(
            futures::future::join_all(sends)
                .await
                .into_iter()
                .flatten()
                .collect(),
        )
    }
}

/// One built integration: its name (`dingtalk[0]`), itself, its template language.
type Built = (String, Arc<dyn Integration>, Language);

/// Every config error of receiver `r` at `path`.
fn validate_receiver(r: &ReceiverConfig, path: &str) -> Vec<String> {
    let mut errors = Vec::new();
    for (j, c) in r.dingtalk_configs.iter().enumerate() {
        errors.extend(c.validate(&format!("{path}.dingtalk_configs[{j}]")));
    }
    for (j, c) in r.wecom_configs.iter().enumerate() {
        errors.extend(c.validate(&format!("{path}.wecom_configs[{j}]")));
    }
    for (j, c) in r.email_configs.iter().enumerate() {
        errors.extend(c.validate(&format!("{path}.email_configs[{j}]")));
    }
    for (j, c) in r.webhook_configs.iter().enumerate() {
        errors.extend(c.validate(&format!("{path}.webhook_configs[{j}]")));
    }
    errors
}

/// The integrations of receiver `r`: name (`dingtalk[0]`), integration, template language.
fn build_receiver(r: &ReceiverConfig, ctx: &BuildContext) -> Vec<Built> {
    let mut out = Vec::new();
    for (j, c) in r.dingtalk_configs.iter().enumerate() {
        let lang = c.templates.language.unwrap_or(ctx.language);
        out.push((format!("dingtalk[{j}]"), c.build(ctx), lang));
    }
    for (j, c) in r.wecom_configs.iter().enumerate() {
        let lang = c.templates.language.unwrap_or(ctx.language);
        out.push((format!("wecom[{j}]"), c.build(ctx), lang));
    }
    for (j, c) in r.email_configs.iter().enumerate() {
        let lang = c.templates.language.unwrap_or(ctx.language);
        out.push((format!("email[{j}]"), c.build(ctx), lang));
    }
    for (j, c) in r.webhook_configs.iter().enumerate() {
        out.push((format!("webhook[{j}]"), c.build(ctx), ctx.language));
    }
    out
}

/// The synthetic alert of a test send: `alertname=LookoutTest`, `severity=info`.
pub fn test_notification(receiver: &str, language: Language, external_url: &str) -> Notification {
    let now = now_ms();
    let labels: LabelSet = [("alertname", "LookoutTest"), ("severity", "info")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let summary = match language {
        Language::Zh => "Lookout 测试通知",
        Language::En => "Lookout test notification",
    };
    let annotations: LabelSet = [("summary".to_string(), summary.to_string())].into();
    Notification {
        receiver: receiver.to_string(),
        group_key: format!("test:{receiver}"),
        group_labels: [("alertname".to_string(), "LookoutTest".to_string())].into(),
        alerts: vec![Alert {
            labels,
            annotations,
            starts_at_ms: now,
            ends_at_ms: None,
            updated_at_ms: now,
            generator_url: String::new(),
            evidence: Evidence::default(),
        }],
        external_url: external_url.to_string(),
        now_ms: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::testing::{notifier, one_alert, receiver, FakeRobot, Script};
    use crate::notify::Outcome;

    #[tokio::test]
    async fn test_sends_go_through_every_integration_in_its_language() {
        let robot = FakeRobot::start("tok").await;
        let r = receiver(&format!(
            "name: ops\ndingtalk_configs: [{{ url: '{}', language: zh }}]\nwecom_configs: [{{ url: '{}' }}]\nwebhook_configs: [{{ url: '{}/hook' }}]",
            robot.dingtalk_url("tok"),
            robot.wecom_url("tok"),
            robot.base
        ));
        let n = notifier(&[r], 3);
        assert_eq!(
            n.integrations("ops")
                .unwrap()
                .iter()
                .map(|d| d.name().to_string())
                .collect::<Vec<_>>(),
            vec!["dingtalk[0]", "wecom[0]", "webhook[0]"]
        );
        let attempts = n.test_receiver("ops").await.unwrap();
        assert_eq!(attempts.len(), 3);
        assert!(
            attempts.iter().all(|a| a.outcome == Outcome::Success),
            "{attempts:?}"
        );
        let bodies: Vec<String> = robot
            .accepted()
            .iter()
            .map(|(_, b)| b.to_string())
            .collect();
        assert_eq!(bodies.len(), 3);
        assert!(bodies.iter().all(|b| b.contains("LookoutTest")));
        assert!(
            bodies.iter().any(|b| b.contains("Lookout 测试通知")),
            "zh for dingtalk"
        );
        assert!(bodies
            .iter()
            .any(|b| b.contains("Lookout test notification")));
        assert!(n.test_receiver("nobody").await.is_none());
        assert_eq!(n.attempts(Some("ops"), 100).len(), 3);
    }

    #[tokio::test]
    async fn a_failing_test_send_returns_its_failed_attempts() {
        let robot = FakeRobot::start("tok").await;
        let r = receiver(&format!(
            "name: ops\nwecom_configs: [{{ url: '{}' }}]",
            robot.wecom_url("bad-key")
        ));
        let n = notifier(&[r], 3);
        let attempts = n.test_receiver("ops").await.unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(
            (attempts[0].outcome, attempts[0].errcode),
            (Outcome::Failed, Some(93000))
        );
    }

    #[tokio::test]
    async fn webhooks_are_retried_without_a_limiter() {
        let robot = FakeRobot::start("tok").await;
        robot.state.lock().script = [Script::Http(500)].into();
        let r = receiver(&format!(
            "name: hook\nwebhook_configs: [{{ url: '{}/hook' }}]",
            robot.base
        ));
        let n = notifier(&[r], 3);
        let d = n.integrations("hook").unwrap().remove(0);
        d.deliver(&one_alert("hook")).await.unwrap();
        let outcomes: Vec<Outcome> = n
            .attempts(None, 10)
            .iter()
            .rev()
            .map(|a| a.outcome)
            .collect();
        assert_eq!(outcomes, vec![Outcome::Retrying, Outcome::Success]);
    }

    #[tokio::test]
    async fn config_errors_are_collected_and_a_bad_reload_changes_nothing() {
        let good = receiver(
            "name: a\nwecom_configs: [{ url: 'http://127.0.0.1:1/cgi-bin/webhook/send?key=k' }]",
        );
        let bad = [
            receiver("name: a\nwecom_configs: [{ url: 'nope' }]"),
            receiver(
                "name: a\ndingtalk_configs: [{ url: 'http://h/robot/send', max_message_bytes: 5 }]",
            ),
        ];
        let errors = Notifier::new(
            &bad,
            NotifierOptions {
                external_url: String::new(),
                language: Language::En,
                state: StateDb::temporary().unwrap(),
            },
        )
        .unwrap_err();
        assert!(errors.contains(
            &"alerting.receivers[0].wecom_configs[0].url: must be an http(s) URL".to_string()
        ));
        assert!(errors
            .contains(&"alerting.receivers[1].name: duplicate receiver name \"a\"".to_string()));
        assert!(
            errors
                .iter()
                .any(|e| e
                    .starts_with("alerting.receivers[1].dingtalk_configs[0].max_message_bytes:"))
        );
        let n = notifier(std::slice::from_ref(&good), 3);
        assert!(n.reconfigure(&bad, Language::En).is_err());
        assert_eq!(n.receivers(), vec!["a".to_string()]);
        assert_eq!(n.integrations("a").unwrap()[0].name(), "wecom[0]");
        n.reconfigure(&[], Language::En).unwrap();
        assert!(n.integrations("a").is_none());
    }
}
