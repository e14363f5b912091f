//! `dingtalk_configs` entries.

use serde::Deserialize;

use crate::model::Secret;
use crate::notify::{default_true, TemplateOverrides};

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
    #[serde(flatten)]
    pub templates: TemplateOverrides,
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
