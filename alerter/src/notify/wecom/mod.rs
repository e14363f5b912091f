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

use super::robot::{self, post_json, query_secrets};
use super::split::{self, utf8_len, Doc};
use super::{
    dedup, label_values, BuildContext, ChatMessage, ChatRobot, Delivered, FailureKind, Integration,
    Mentions, NotifyError, Origin, RateLimit,
};
use crate::model::Notification;
use crate::template::{Format, Templates};

/// A WeCom robot built from its config.
pub struct WeCom {
    cfg: WeComConfig,
    http: reqwest::Client,
    templates: Templates,
    secrets: Vec<String>,
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
        WeCom {
            secrets: query_secrets(cfg.url.expose()),
            templates: Templates::new(ctx.language),
            http: ctx.http.clone(),
            cfg,
        }
    }

    fn format(&self) -> Format {
        match self.cfg.msg_type {
            WeComMsgType::Markdown => Format::WeComMarkdown,
            WeComMsgType::Text => Format::WeComText,
        }
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

    fn pack(
        &self,
        doc: &Arc<Doc>,
        sections: Vec<String>,
        budget: usize,
        first: bool,
        m: &Mentions,
    ) -> Vec<ChatMessage> {
        let sub = Doc {
            title: doc.title.clone(),
            header: doc.header.clone(),
            sections,
            footer: doc.footer.clone(),
        };
        split::pack(&sub, budget, &utf8_len)
            .into_iter()
            .enumerate()
            .map(|(i, part)| {
                let first = first && i == 0;
                let none = Mentions::default();
                let (text, body) = self.body(&part.text, if first { m } else { &none });
                ChatMessage {
                    title: part.title,
                    text,
                    body,
                    origin: Origin {
                        doc: Arc::clone(doc),
                        sections: part.sections,
                        budget,
                        first,
                        mentions: m.clone(),
                    },
                }
            })
            .collect()
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

    fn messages(&self, notifications: &[Notification]) -> Result<Vec<ChatMessage>, NotifyError> {
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
        let m = self.mentions(notifications);
        let mention_room = match self.cfg.msg_type {
            WeComMsgType::Markdown => Self::markdown_mentions(&m).len() + 2,
            WeComMsgType::Text => 0,
        };
        let budget = self
            .cfg
            .msg_type
            .max_bytes()
            .saturating_sub(mention_room)
            .max(200);
        Ok(self.pack(&doc, r.sections, budget, true, &m))
    }

    fn shrink(&self, message: &ChatMessage) -> Option<Vec<ChatMessage>> {
        let o = &message.origin;
        if o.budget / 2 < 200 {
            return None;
        }
        Some(self.pack(
            &o.doc,
            o.sections.clone(),
            o.budget / 2,
            o.first,
            &o.mentions,
        ))
    }

    async fn post(&self, message: &ChatMessage) -> Result<(), NotifyError> {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        post_json(
            &self.http,
            self.cfg.url.expose(),
            &message.body,
            classify,
            &secrets,
        )
        .await
    }
}

#[async_trait]
impl Integration for WeCom {
    fn kind(&self) -> &'static str {
        "wecom"
    }

    fn send_resolved(&self) -> bool {
        self.cfg.send_resolved
    }

    fn robot(&self) -> Option<String> {
        Some(self.robot_key())
    }

    async fn send(&self, notifications: &[Notification]) -> Result<Delivered, NotifyError> {
        robot::send_all(self, notifications).await
    }

    fn chat(&self) -> Option<&dyn ChatRobot> {
        Some(self)
    }
}

#[cfg(test)]
mod tests;
