//! Generic webhook notifier: POSTs Alertmanager's webhook JSON (version 4) so receivers
//! written for Alertmanager work unchanged.
//!
//! A 2xx answer is success; 5xx, 429 and network errors are transient (retried); any other
//! answer is permanent. Webhooks are not rate limited, so a digest never reaches here; a
//! slice of several notifications is still handled, one POST each, in order.

mod config;
#[cfg(test)]
mod tests;

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::{LabelSet, Notification};
use crate::notify::{url_secrets, BuildContext, Delivered, FailureKind, Integration, NotifyError};
use crate::template::filters::rfc3339;

pub use config::WebhookConfig;

/// Alertmanager's `endsAt` of an alert that has not ended (Go's zero time).
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The body Alertmanager posts to a webhook (`version: "4"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookMessage {
    pub version: String,
    pub group_key: String,
    /// How many alerts `max_alerts` left out.
    pub truncated_alerts: usize,
    /// `firing` when any alert of the group fires, else `resolved`.
    pub status: String,
    pub receiver: String,
    pub group_labels: LabelSet,
    pub common_labels: LabelSet,
    pub common_annotations: LabelSet,
    #[serde(rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<WebhookAlert>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert {
    pub status: String,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339; [`ZERO_TIME`] while firing.
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

fn status(firing: bool) -> String {
    if firing { "firing" } else { "resolved" }.to_string()
}

/// The webhook body for `n`, keeping at most `max_alerts` alerts (0: all). Status and the
/// common labels cover every alert, truncated or not, as Alertmanager's do.
pub fn message(n: &Notification, max_alerts: usize) -> WebhookMessage {
    let keep = if max_alerts == 0 {
        n.alerts.len()
    } else {
        max_alerts.min(n.alerts.len())
    };
    let alerts = n.alerts[..keep]
        .iter()
        .map(|a| {
            let resolved = a.is_resolved_at(n.now_ms);
            WebhookAlert {
                status: status(!resolved),
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: rfc3339(a.starts_at_ms),
                ends_at: match a.ends_at_ms {
                    Some(end) if resolved => rfc3339(end),
                    _ => ZERO_TIME.to_string(),
                },
                generator_url: a.generator_url.clone(),
                fingerprint: a.fingerprint().to_string(),
            }
        })
        .collect();
    WebhookMessage {
        version: "4".into(),
        group_key: n.group_key.clone(),
        truncated_alerts: n.alerts.len() - keep,
        status: status(n.is_firing()),
        receiver: n.receiver.clone(),
        group_labels: n.group_labels.clone(),
        common_labels: n.common_labels(),
        common_annotations: n.common_annotations(),
        external_url: n.external_url.trim_end_matches('/').to_string(),
        alerts,
    }
}

/// A webhook integration built from its config.
pub struct Webhook {
    cfg: WebhookConfig,
    http: reqwest::Client,
    /// What of the URL may be a token, scrubbed from every error message (an endpoint may
    /// echo the request line in its answer).
    secrets: Vec<String>,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &crate::notify::redact_url(self.cfg.url.expose()))
            .field("max_alerts", &self.cfg.max_alerts)
            .finish()
    }
}

/// At most this much of an error answer's body goes into the failure message.
const BODY_SNIPPET: usize = 200;

fn snippet(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(BODY_SNIPPET) {
        Some((i, _)) => format!("{}...", &body[..i]),
        None => body.to_string(),
    }
}

impl Webhook {
    pub fn new(cfg: WebhookConfig, ctx: &BuildContext) -> Self {
        Webhook {
            secrets: url_secrets(cfg.url.expose()),
            cfg,
            http: ctx.http.clone(),
        }
    }

    /// Posts `body`: exactly one request, its error message cleaned (no URL secrets, no
    /// control characters, bounded length), since it ends up in logs, the API and the UI.
    async fn post(&self, body: &WebhookMessage) -> Result<(), NotifyError> {
        self.try_post(body)
            .await
            .map_err(|e| e.cleaned(&self.secrets))
    }

    async fn try_post(&self, body: &WebhookMessage) -> Result<(), NotifyError> {
        let resp = self
            .http
            .post(self.cfg.url.expose())
            .json(body)
            .send()
            .await
            .map_err(NotifyError::from_http)?;
        let code = resp.status();
        if code.is_success() {
            return Ok(());
        }
        let kind = if code.is_server_error() || code.as_u16() == 429 {
            FailureKind::Transient
        } else {
            FailureKind::Permanent
        };
        let text = resp.text().await.unwrap_or_default();
        let mut message = format!("HTTP {}", code.as_u16());
        let text = snippet(&text);
        if !text.is_empty() {
            message.push_str(": ");
            message.push_str(&text);
        }
        Err(NotifyError {
            kind,
            status: Some(code.as_u16()),
            errcode: None,
            message,
        })
    }
}

#[async_trait]
impl Integration for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn send_resolved(&self) -> bool {
        self.cfg.send_resolved
    }

    async fn send(&self, notifications: &[Notification]) -> Result<Delivered, NotifyError> {
        if notifications.is_empty() {
            return Err(NotifyError::permanent("nothing to send: no notifications"));
        }
        for n in notifications {
            self.post(&message(n, self.cfg.max_alerts)).await?;
        }
        Ok(Delivered {
            messages: notifications.len(),
        })
    }
}
