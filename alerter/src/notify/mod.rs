//! Notifiers: turning a [`Notification`] into messages on DingTalk, WeCom, email or a
//! webhook, and proving they arrived.
//!
//! Each receiver kind is a plug-in in its own folder (`dingtalk/`, `wecom/`, `email/`,
//! `webhook/`): a config struct (serde, `deny_unknown_fields`) with a pure `validate()`, and
//! `build()` into an [`Integration`] that makes exactly one delivery attempt per call.
//! Retries with backoff and jitter, the per-robot rate limiter that merges notifications
//! into a digest instead of dropping them, and the record of every attempt live here, the
//! same for every kind.

pub mod dingtalk;
pub mod email;
pub mod webhook;
pub mod wecom;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::Notification;

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

    /// For chat robots, the robot's identity for rate limiting (its URL without query
    /// secrets beyond the key/token that names the robot); `None` when not rate limited.
    fn robot(&self) -> Option<String> {
        None
    }

    /// Sends one message for `notifications` (one notification; several when the rate
    /// limiter merged them into a digest), split into several messages when too long.
    /// Exactly one attempt: no retries here.
    async fn send(&self, notifications: &[Notification]) -> Result<Delivered, NotifyError>;
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
