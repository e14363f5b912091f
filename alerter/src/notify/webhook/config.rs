//! `webhook_configs` entries, with Alertmanager's field names.

use std::sync::Arc;

use serde::Deserialize;

use crate::model::Secret;
use crate::notify::{default_true, validate_http_url, BuildContext, Integration};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Secret: webhook URLs often carry tokens.
    pub url: Secret,
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Most alerts in one message; 0 means all.
    #[serde(default)]
    pub max_alerts: usize,
}

impl WebhookConfig {
    /// Every problem with this config, each naming its field under `path` (never showing
    /// the URL: it may hold a token).
    pub fn validate(&self, path: &str) -> Vec<String> {
        validate_http_url(self.url.expose(), &format!("{path}.url"))
    }

    /// The integration for this (validated) config.
    pub fn build(&self, ctx: &BuildContext) -> Arc<dyn Integration> {
        Arc::new(super::Webhook::new(self.clone(), ctx))
    }
}
