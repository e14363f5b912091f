//! `email_configs` entries, with Alertmanager's field names.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::model::Secret;
use crate::notify::TemplateOverrides;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Recipients, comma-separated.
    pub to: String,
    pub from: String,
    /// `host:port`; port 465 means TLS from the first byte, otherwise STARTTLS when
    /// `require_tls` (the default) or offered.
    pub smarthost: String,
    #[serde(default)]
    pub hello: Option<String>,
    #[serde(default)]
    pub auth_username: Option<String>,
    #[serde(default)]
    pub auth_password: Option<Secret>,
    #[serde(default = "default_require_tls")]
    pub require_tls: bool,
    /// Extra headers; `Subject` overrides the rendered title.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// minijinja source of the HTML body, replacing the built-in one.
    #[serde(default)]
    pub html: Option<String>,
    #[serde(default)]
    pub send_resolved: bool,
    #[serde(flatten)]
    pub templates: TemplateOverrides,
}

fn default_require_tls() -> bool {
    true
}
