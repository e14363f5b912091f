//! WeCom (企业微信) group robot notifier: `markdown` (at most 4,096 bytes of content) or
//! `text` (at most 2,048 bytes, with `mentioned_list` / `mentioned_mobile_list`).
//!
//! Markdown messages cannot carry mention lists, but WeCom renders `<@userid>` in their
//! content as a mention, so mentioned users are written there. Success is HTTP 200 with
//! `errcode == 0`; 45009 (over the rate limit) is transient, 93000 (invalid key) and every
//! other code permanent.

mod config;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

pub use config::{WeComConfig, WeComMsgType};

use super::robot::{self, ChatPlatform, Poster, MIN_BUDGET};
use super::split::{utf8_len, Doc};
use super::{
    dedup, label_values, url_secrets, BuildContext, ChatMessage, ChatRobot, FailureKind, Mentions,
    NotifyError, RateLimit,
};
use crate::model::Notification;
use crate::template::{Format, Templates};

/// A WeCom robot built from its config.
pub struct WeCom {
    cfg: WeComConfig,
    templates: Templates,
    /// Posts with the key scrubbed from error messages.
    poster: Poster,
    /// [`ChatRobot::batch_class`].
    class: String,
}

impl fmt::Debug for WeCom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeCom")
            .field("url", &super::redact_url(self.cfg.url.expose()))
            .field("msg_type", &self.cfg.msg_type)
            .finish()
    }
}

fn classify(errcode: i64) -> FailureKind {
    if errcode == 45009 {
        FailureKind::Transient
    } else {
        FailureKind::Permanent
    }
}

impl WeCom {
    pub fn new(cfg: WeComConfig, ctx: &BuildContext) -> Self {
        // the mentions and their labels stay out: a digest carries every member's
        let t = &cfg.templates;
        let class = format!(
            "{:?}",
            (
                Self::KIND,
                cfg.msg_type,
                t.language.unwrap_or(ctx.language),
                &t.title,
                &t.text,
            )
        );
        WeCom {
            poster: Poster::new(ctx.http.clone(), classify, url_secrets(cfg.url.expose())),
            templates: Templates::new(ctx.language),
            class,
            cfg,
        }
    }

    fn format(&self) -> Format {
        match self.cfg.msg_type {
            WeComMsgType::Markdown => Format::WeComMarkdown,
            WeComMsgType::Text => Format::WeComText,
        }
    }

    /// The `<@userid>` line of a markdown message.
    fn markdown_mentions(m: &Mentions) -> String {
        m.user_ids
            .iter()
            .map(|u| format!("<@{u}>"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn body(&self, text: &str, m: &Mentions) -> (String, serde_json::Value) {
        match self.cfg.msg_type {
            WeComMsgType::Markdown => {
                let line = Self::markdown_mentions(m);
                let content = if line.is_empty() {
                    text.to_string()
                } else {
                    format!("{text}\n\n{line}")
                };
                let body = json!({ "msgtype": "markdown", "markdown": { "content": content } });
                (content, body)
            }
            WeComMsgType::Text => {
                let body = json!({
                    "msgtype": "text",
                    "text": {
                        "content": text,
                        "mentioned_list": m.user_ids,
                        "mentioned_mobile_list": m.mobiles,
                    },
                });
                (text.to_string(), body)
            }
        }
    }
}

#[async_trait]
impl ChatRobot for WeCom {
    fn robot_key(&self) -> String {
        self.cfg.url.expose().to_string()
    }

    fn rate_limit(&self) -> RateLimit {
        self.cfg.rate_limit
    }

    fn batch_class(&self) -> &str {
        &self.class
    }

    fn mentions(&self, notifications: &[Notification]) -> Mentions {
        let users = self.cfg.mentioned_list.iter().cloned().chain(
            label_values(notifications, &self.cfg.mentioned_list_label)
                .into_iter()
                .filter(|u| !u.contains(char::is_whitespace) && !u.contains(['<', '>'])),
        );
        let mobiles = self.cfg.mentioned_mobile_list.iter().cloned().chain(
            label_values(notifications, &self.cfg.mentioned_mobile_list_label)
                .into_iter()
                .filter(|m| crate::notify::dingtalk::is_mobile(m)),
        );
        Mentions {
            user_ids: dedup(users),
            mobiles: dedup(mobiles),
            all: false,
        }
    }

    fn messages(
        &self,
        notifications: &[Notification],
        mentions: &Mentions,
    ) -> Result<Vec<ChatMessage>, NotifyError> {
        let r = self
            .templates
            .render(self.format(), notifications, &self.cfg.templates)
            .map_err(|e| NotifyError::permanent(format!("rendering the message: {e}")))?;
        // a custom text without a header still names what it is about
        let header = if r.header.trim().is_empty() {
            r.title.clone()
        } else {
            r.header
        };
        let doc = Arc::new(Doc {
            title: r.title,
            header,
            sections: Vec::new(),
            footer: r.footer,
        });
        let m = mentions;
        let mention_room = match self.cfg.msg_type {
            WeComMsgType::Markdown => Self::markdown_mentions(m).len() + 2,
            WeComMsgType::Text => 0,
        };
        let budget = self
            .cfg
            .msg_type
            .max_bytes()
            .saturating_sub(mention_room)
            .max(MIN_BUDGET);
        Ok(robot::pack(self, &doc, r.sections, budget, true, m))
    }

    fn shrink(&self, message: &ChatMessage) -> Option<Vec<ChatMessage>> {
        robot::shrink(self, message)
    }

    async fn post(&self, message: &ChatMessage) -> Result<(), NotifyError> {
        self.poster.post(self.cfg.url.expose(), &message.body).await
    }
}

impl ChatPlatform for WeCom {
    const KIND: &'static str = "wecom";

    fn notify_resolved(&self) -> bool {
        self.cfg.send_resolved
    }

    fn cost(text: &str) -> usize {
        utf8_len(text)
    }

    fn render(
        &self,
        title: &str,
        text: &str,
        mentions: &Mentions,
    ) -> (String, String, serde_json::Value) {
        let (text, body) = self.body(text, mentions);
        (title.to_string(), text, body)
    }
}

#[cfg(test)]
mod tests;
