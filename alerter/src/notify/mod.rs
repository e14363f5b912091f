//! Notifiers: turning a [`Notification`] into messages on DingTalk, WeCom, email or a
//! webhook, and proving they arrived.
//!
//! Each receiver kind is a plug-in in its own folder (`dingtalk/`, `wecom/`, `email/`,
//! `webhook/`): a config struct (serde, `deny_unknown_fields`) with a pure `validate()`, and
//! `build()` into an [`Integration`] that makes exactly one delivery attempt per call.
//! Retries with backoff and jitter, the per-robot rate limiter that merges notifications
//! into a digest instead of dropping them, and the record of every attempt live here, the
//! same for every kind.

pub mod attempts;
pub mod delivery;
pub mod dingtalk;
pub mod email;
pub mod limiter;
pub mod metrics;
pub mod notifier;
mod robot;
pub mod split;
#[cfg(test)]
pub(crate) mod testing;
pub mod webhook;
pub mod wecom;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use store::duration::PromDuration;
use store::error::error_chain;

use crate::model::Notification;
use crate::template::Language;

pub use attempts::{Attempt, Outcome};
pub use delivery::Delivery;
pub use notifier::{Notifier, NotifierOptions};

/// Whether trying again can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Network error, timeout, HTTP 5xx/429, or a platform code that says "later"
    /// (DingTalk 130101 sending too fast, WeCom 45009): retried with backoff.
    Transient,
    /// Bad token or key, missing keyword, IP not allowed, message refused: retrying cannot
    /// help, so it is reported at once.
    Permanent,
}

/// Why one delivery attempt failed, with what the platform said.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{kind:?} failure: {message}")]
pub struct NotifyError {
    pub kind: FailureKind,
    /// HTTP status, when an HTTP answer came.
    pub status: Option<u16>,
    /// The platform's `errcode`, when it sent one.
    pub errcode: Option<i64>,
    /// The platform's `errmsg`, or what went wrong (never containing a secret).
    pub message: String,
}

/// What a successful attempt delivered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delivered {
    /// Messages sent (more than one when a long message was split at alert boundaries).
    pub messages: usize,
}

/// One configured destination (one entry of a receiver's `*_configs` list), built from its
/// validated config.
#[async_trait]
pub trait Integration: Send + Sync {
    /// `dingtalk`, `wecom`, `email` or `webhook`.
    fn kind(&self) -> &'static str;

    /// Whether resolved alerts are notified (`send_resolved`).
    fn send_resolved(&self) -> bool;

    /// Sends one message for `notifications` (one notification; several when the rate
    /// limiter merged them into a digest), split into several messages when too long.
    /// Exactly one attempt: no retries here.
    async fn send(&self, notifications: &[Notification]) -> Result<Delivered, NotifyError>;

    /// Chat robots (DingTalk, WeCom) expose their message-level interface so delivery can
    /// take one rate-limiter slot per message and resume a split message after the last
    /// part that arrived. `None` for integrations that are not rate limited.
    fn chat(&self) -> Option<&dyn ChatRobot> {
        None
    }
}

/// One message a chat robot posts (one part of a possibly split notification).
#[derive(Clone, Debug)]
pub struct ChatMessage {
    /// The (numbered when split) title, e.g. `[FIRING:2] HighErrorRate (1/3)`.
    pub title: String,
    /// The message as the platform shows it (keyword and mentions included).
    pub text: String,
    /// The request body posted.
    pub body: serde_json::Value,
    /// What the message was packed from, so a part the platform finds too long can be
    /// split again at alert boundaries.
    pub(crate) origin: Origin,
}

/// Where a [`ChatMessage`] came from.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    pub doc: std::sync::Arc<split::Doc>,
    /// The sections of this part.
    pub sections: Vec<String>,
    /// The text budget the part was packed under.
    pub budget: usize,
    /// The first part (the one carrying the @mentions).
    pub first: bool,
    /// Who the first part mentions.
    pub mentions: Mentions,
}

/// Who a chat message @mentions.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Mentions {
    pub user_ids: Vec<String>,
    pub mobiles: Vec<String>,
    pub all: bool,
}

/// The message-level interface of a rate-limited chat robot.
#[async_trait]
pub trait ChatRobot: Send + Sync {
    /// The robot's identity for the limiter (its URL with the token or key: never shown).
    fn robot_key(&self) -> String;

    /// The robot's rate limit.
    fn rate_limit(&self) -> RateLimit;

    /// Renders `notifications` into messages within the platform's size limit.
    fn messages(&self, notifications: &[Notification]) -> Result<Vec<ChatMessage>, NotifyError>;

    /// Splits a message the platform refused as too long into smaller ones (at alert
    /// boundaries), or `None` when it cannot get smaller.
    fn shrink(&self, message: &ChatMessage) -> Option<Vec<ChatMessage>>;

    /// Posts one message: exactly one HTTP request.
    async fn post(&self, message: &ChatMessage) -> Result<(), NotifyError>;
}

impl NotifyError {
    pub fn transient(message: impl Into<String>) -> Self {
        NotifyError {
            kind: FailureKind::Transient,
            status: None,
            errcode: None,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        NotifyError {
            kind: FailureKind::Permanent,
            status: None,
            errcode: None,
            message: message.into(),
        }
    }

    /// A reqwest error as a transient failure, with the URL (and so the token) removed.
    pub fn from_http(e: reqwest::Error) -> Self {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        let e = e.without_url();
        NotifyError::transient(format!("{what}: {}", error_chain(&e)))
    }
}

/// `rate_limit: { messages: N, per: DURATION }` of a chat robot: at most `messages` in any
/// rolling `per` (the platforms' own limit is 20 a minute, and DingTalk mutes a robot for
/// ten minutes when it is exceeded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    #[serde(default = "default_messages")]
    pub messages: u32,
    #[serde(default = "default_per")]
    pub per: PromDuration,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            messages: default_messages(),
            per: default_per(),
        }
    }
}

fn default_messages() -> u32 {
    20
}

fn default_per() -> PromDuration {
    PromDuration::from_secs(60)
}

impl RateLimit {
    /// Config errors of a `rate_limit` at `path`: at least one message, a positive window,
    /// and no faster than the platforms' 20 messages a minute.
    pub fn validate(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        if self.messages == 0 {
            errors.push(format!("{path}.messages: must be at least 1"));
        }
        let per: Duration = self.per.into();
        if per.is_zero() {
            errors.push(format!("{path}.per: must be longer than 0s"));
        } else if f64::from(self.messages) / per.as_secs_f64() > 20.0 / 60.0 + 1e-9 {
            errors.push(format!(
                "{path}: {} messages per {} is faster than the platform's limit of 20 per minute",
                self.messages, self.per
            ));
        }
        errors
    }

    /// The stricter of two limits (robots shared by several integrations).
    pub fn stricter(self, other: RateLimit) -> RateLimit {
        let rate = |r: &RateLimit| f64::from(r.messages) / Duration::from(r.per).as_secs_f64();
        if rate(&other) < rate(&self) {
            other
        } else {
            self
        }
    }
}

/// What building an integration from its config may use.
#[derive(Clone)]
pub struct BuildContext {
    /// `alerting.language`: the built-in templates' language unless the integration sets
    /// its own.
    pub language: Language,
    /// The HTTP client every HTTP integration shares (timeouts set).
    pub http: reqwest::Client,
}

impl BuildContext {
    pub fn new(language: Language) -> Self {
        BuildContext {
            language,
            http: http_client(),
        }
    }
}

/// The shared HTTP client: a 10 s timeout per request so a hung robot becomes a
/// transient failure rather than a stuck delivery.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "building the notifier HTTP client with timeouts failed; using defaults");
            reqwest::Client::new()
        })
}

/// Checks a URL from the config: http(s) with a host.
pub fn validate_http_url(url: &str, path: &str) -> Vec<String> {
    match reqwest::Url::parse(url) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host_str().is_some() => {
            Vec::new()
        }
        _ => vec![format!("{path}: must be an http(s) URL")],
    }
}

/// A URL shown without its secrets: scheme, host, port and path, the query replaced by
/// `<secret>` (DingTalk tokens and WeCom keys live in the query).
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let mut out = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
            if let Some(port) = u.port() {
                out.push_str(&format!(":{port}"));
            }
            out.push_str(u.path());
            if u.query().is_some() {
                out.push_str("?<secret>");
            }
            out
        }
        Err(_) => "<secret>".into(),
    }
}

/// Checks the template overrides' sources at `path`.
pub fn validate_templates(t: &TemplateOverrides, path: &str) -> Vec<String> {
    let mut errors = Vec::new();
    for (field, src) in [("title", &t.title), ("text", &t.text)] {
        if let Some(src) = src {
            if let Err(e) = crate::template::Templates::check_source(src) {
                errors.push(format!("{path}.{field}: {e}"));
            }
        }
    }
    errors
}

/// The comma-separated values of label `name` over every alert of `notifications`.
pub(crate) fn label_values(notifications: &[Notification], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for n in notifications {
        for a in &n.alerts {
            if let Some(v) = a.labels.get(name) {
                out.extend(
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                );
            }
        }
    }
    out
}

/// `items` without repeats, first occurrence kept.
pub(crate) fn dedup(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|s| seen.insert(s.clone()))
        .collect()
}

/// One `receivers:` entry of the `alerting:` section, as Alertmanager's.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    pub name: String,
    #[serde(default)]
    pub dingtalk_configs: Vec<dingtalk::DingTalkConfig>,
    #[serde(default)]
    pub wecom_configs: Vec<wecom::WeComConfig>,
    #[serde(default)]
    pub email_configs: Vec<email::EmailConfig>,
    #[serde(default)]
    pub webhook_configs: Vec<webhook::WebhookConfig>,
}

/// Template overrides any integration may carry: minijinja sources replacing the built-in
/// title and body, and the language of the built-in ones.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateOverrides {
    #[serde(default)]
    pub language: Option<crate::template::Language>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
}

pub(crate) fn default_true() -> bool {
    true
}
