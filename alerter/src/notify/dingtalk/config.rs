//! `dingtalk_configs` entries.

use std::sync::Arc;

use serde::Deserialize;

use crate::model::Secret;
use crate::notify::{
    default_true, validate_http_url, validate_templates, BuildContext, Integration, RateLimit,
    TemplateOverrides,
};

/// DingTalk's own limit on a message, in bytes.
pub const PLATFORM_MAX_BYTES: usize = 20_000;

/// The smallest `max_message_bytes` that still leaves room for an alert after the title,
/// header and mentions.
pub const MIN_MAX_BYTES: usize = 1_000;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DingTalkConfig {
    /// `https://oapi.dingtalk.com/robot/send?access_token=...` (secret: holds the token).
    pub url: Secret,
    /// Signing secret (`SEC...`): HMAC-SHA256 over `timestamp + "\n" + secret`.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// A keyword the robot requires in every message (added when missing).
    #[serde(default)]
    pub keyword: Option<String>,
    #[serde(default)]
    pub at_mobiles: Vec<String>,
    #[serde(default)]
    pub at_user_ids: Vec<String>,
    #[serde(default)]
    pub is_at_all: bool,
    /// Alert label whose comma-separated value adds mobiles to @mention.
    #[serde(default = "default_mobiles_label")]
    pub at_mobiles_label: String,
    /// Alert label whose comma-separated value adds user ids to @mention.
    #[serde(default = "default_user_ids_label")]
    pub at_user_ids_label: String,
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Longest message in bytes before it is split at alert boundaries.
    #[serde(default = "default_max_bytes")]
    pub max_message_bytes: usize,
    /// At most this many messages per rolling window (default 20 per 1m, DingTalk's limit).
    #[serde(default)]
    pub rate_limit: RateLimit,
    #[serde(flatten)]
    pub templates: TemplateOverrides,
}

impl DingTalkConfig {
    /// Every problem with this config, each naming its field under `path`.
    pub fn validate(&self, path: &str) -> Vec<String> {
        let mut errors = validate_http_url(self.url.expose(), &format!("{path}.url"));
        if self.secret.as_ref().is_some_and(Secret::is_empty) {
            errors.push(format!("{path}.secret: must not be empty when set"));
        }
        if self.keyword.as_ref().is_some_and(|k| k.trim().is_empty()) {
            errors.push(format!("{path}.keyword: must not be empty when set"));
        }
        for (i, m) in self.at_mobiles.iter().enumerate() {
            if !is_mobile(m) {
                errors.push(format!(
                    "{path}.at_mobiles[{i}]: {m:?} is not a mobile number (digits, '+' and '-')"
                ));
            }
        }
        for (i, u) in self.at_user_ids.iter().enumerate() {
            if u.trim().is_empty() {
                errors.push(format!("{path}.at_user_ids[{i}]: must not be empty"));
            }
        }
        for (field, label) in [
            ("at_mobiles_label", &self.at_mobiles_label),
            ("at_user_ids_label", &self.at_user_ids_label),
        ] {
            if label.is_empty() {
                errors.push(format!("{path}.{field}: must not be empty"));
            }
        }
        if !(MIN_MAX_BYTES..=PLATFORM_MAX_BYTES).contains(&self.max_message_bytes) {
            errors.push(format!(
                "{path}.max_message_bytes: must be between {MIN_MAX_BYTES} and DingTalk's limit of {PLATFORM_MAX_BYTES}"
            ));
        }
        errors.extend(self.rate_limit.validate(&format!("{path}.rate_limit")));
        errors.extend(validate_templates(&self.templates, path));
        errors
    }

    /// The integration for this (validated) config.
    pub fn build(&self, ctx: &BuildContext) -> Arc<dyn Integration> {
        if self
            .secret
            .as_ref()
            .is_some_and(|s| !s.expose().starts_with("SEC"))
        {
            tracing::warn!(
                "a dingtalk signing secret does not start with SEC: DingTalk's secrets do, check it"
            );
        }
        Arc::new(super::DingTalk::new(self.clone(), ctx))
    }
}

/// A mobile number as DingTalk takes it: digits, `+` and `-`, at least one digit.
pub(crate) fn is_mobile(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b == b'+' || b == b'-')
}

fn default_mobiles_label() -> String {
    "at_mobiles".into()
}

fn default_user_ids_label() -> String {
    "at_user_ids".into()
}

fn default_max_bytes() -> usize {
    20_000
}
