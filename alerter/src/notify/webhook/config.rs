//! `webhook_configs` entries, with Alertmanager's field names.

use serde::Deserialize;

use crate::model::Secret;
use crate::notify::default_true;

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
