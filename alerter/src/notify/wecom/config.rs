//! `wecom_configs` entries.

use std::sync::Arc;

use serde::Deserialize;

use crate::model::Secret;
use crate::notify::{
    default_true, validate_http_url, validate_templates, BuildContext, Integration, RateLimit,
    TemplateOverrides,
};

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
    /// At most this many messages per rolling window (default 20 per 1m, WeCom's limit).
    #[serde(default)]
    pub rate_limit: RateLimit,
    #[serde(flatten)]
    pub templates: TemplateOverrides,
}

impl WeComMsgType {
    /// WeCom's limit on the content of one message, in bytes.
    pub fn max_bytes(self) -> usize {
        match self {
            WeComMsgType::Markdown => 4096,
            WeComMsgType::Text => 2048,
        }
    }
}

impl WeComConfig {
    /// Every problem with this config, each naming its field under `path`.
    pub fn validate(&self, path: &str) -> Vec<String> {
        let mut errors = validate_http_url(self.url.expose(), &format!("{path}.url"));
        for (i, u) in self.mentioned_list.iter().enumerate() {
            if u.trim().is_empty() {
                errors.push(format!("{path}.mentioned_list[{i}]: must not be empty"));
            }
        }
        for (i, m) in self.mentioned_mobile_list.iter().enumerate() {
            if !crate::notify::dingtalk::is_mobile(m) {
                errors.push(format!(
                    "{path}.mentioned_mobile_list[{i}]: {m:?} is not a mobile number (digits, '+' and '-')"
                ));
            }
        }
        if self.msg_type == WeComMsgType::Markdown && !self.mentioned_mobile_list.is_empty() {
            errors.push(format!(
                "{path}.mentioned_mobile_list: WeCom markdown messages cannot mention mobiles; use msg_type: text"
            ));
        }
        errors.extend(self.rate_limit.validate(&format!("{path}.rate_limit")));
        errors.extend(validate_templates(&self.templates, path));
        errors
    }

    /// The integration for this (validated) config.
    pub fn build(&self, ctx: &BuildContext) -> Arc<dyn Integration> {
        Arc::new(super::WeCom::new(self.clone(), ctx))
    }
}

fn default_list_label() -> String {
    "wecom_mentioned_list".into()
}

fn default_mobile_label() -> String {
    "wecom_mentioned_mobile_list".into()
}
