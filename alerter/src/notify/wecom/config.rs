//! `wecom_configs` entries.

use serde::Deserialize;

use crate::model::Secret;
use crate::notify::{default_true, TemplateOverrides};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeComMsgType {
    /// At most 4,096 bytes; no @mentions by the platform's rules.
    #[default]
    Markdown,
    /// At most 2,048 bytes, with `mentioned_list` / `mentioned_mobile_list`.
    Text,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeComConfig {
    /// `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...` (secret: holds the key).
    pub url: Secret,
    #[serde(default)]
    pub msg_type: WeComMsgType,
    /// User ids to mention (`@all` for everyone); text messages only.
    #[serde(default)]
    pub mentioned_list: Vec<String>,
    /// Mobiles to mention; text messages only.
    #[serde(default)]
    pub mentioned_mobile_list: Vec<String>,
    /// Alert label whose comma-separated value adds user ids to mention.
    #[serde(default = "default_list_label")]
    pub mentioned_list_label: String,
    /// Alert label whose comma-separated value adds mobiles to mention.
    #[serde(default = "default_mobile_label")]
    pub mentioned_mobile_list_label: String,
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    #[serde(flatten)]
    pub templates: TemplateOverrides,
}

fn default_list_label() -> String {
    "wecom_mentioned_list".into()
}

fn default_mobile_label() -> String {
    "wecom_mentioned_mobile_list".into()
}
