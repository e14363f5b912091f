//! DingTalk custom robot notifier: `markdown` messages (title + text), @mentions by mobile
//! or user id (from the config and the alerts' labels), an optional keyword, and optional
//! signing (`timestamp` + HMAC-SHA256 `sign` query parameters).
//!
//! DingTalk answers HTTP 200 with a JSON `errcode`; only 0 is success. 310000 (signature,
//! keyword or IP refused), 300001 (no such token), 90030 (quota used up for the day) and
//! 130101 (too fast: the robot is now muted for ten minutes, longer than retries last) are
//! permanent; 460101 (too long) makes delivery split the message smaller once.

mod config;

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::json;
use sha2::Sha256;

pub(crate) use config::is_mobile;
pub use config::{DingTalkConfig, MIN_MAX_BYTES, PLATFORM_MAX_BYTES};

use super::robot::{self, post_json, query_secrets};
use super::split::{self, json_len, Doc};
use super::{
    dedup, label_values, BuildContext, ChatMessage, ChatRobot, Delivered, FailureKind, Integration,
    Mentions, NotifyError, Origin, RateLimit,
};
use crate::model::Notification;
use crate::template::{Format, Templates};

/// The errcode DingTalk answers for a message over its size limit.
pub const TOO_LONG: i64 = 460_101;

/// A DingTalk robot built from its config.
pub struct DingTalk {
    cfg: DingTalkConfig,
    http: reqwest::Client,
    templates: Templates,
    /// Token and signing secret, scrubbed from error messages.
    secrets: Vec<String>,
}

impl fmt::Debug for DingTalk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DingTalk")
            .field("url", &super::redact_url(self.cfg.url.expose()))
            .field("signed", &self.cfg.secret.is_some())
            .field("keyword", &self.cfg.keyword)
            .finish()
    }
}

/// The `@...` line DingTalk needs in the text for a mention to show.
fn mention_line(m: &Mentions) -> String {
    m.mobiles
        .iter()
        .chain(&m.user_ids)
        .map(|m| format!("@{m}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `sign` for `timestamp_ms`: base64(HMAC-SHA256(key = secret, timestamp + "\n" + secret)),
/// URL-encoded.
pub fn sign(secret: &str, timestamp_ms: i64) -> String {
    // HMAC takes keys of any length: this never fails
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    utf8_percent_encode(&b64, NON_ALPHANUMERIC).to_string()
}

fn classify(errcode: i64) -> FailureKind {
    // Every DingTalk code but success is permanent: 130101 mutes the robot for ten
    // minutes (retries would only fail), 90030 lasts the day, 310000/300001 are config.
    let _ = errcode;
    FailureKind::Permanent
}

impl DingTalk {
    pub fn new(cfg: DingTalkConfig, ctx: &BuildContext) -> Self {
        let mut secrets = query_secrets(cfg.url.expose());
        if let Some(s) = &cfg.secret {
            secrets.push(s.expose().to_string());
        }
        DingTalk {
            templates: Templates::new(ctx.language),
            http: ctx.http.clone(),
            cfg,
            secrets,
        }
    }

    fn mentions(&self, notifications: &[Notification]) -> Mentions {
        let mobiles = self.cfg.at_mobiles.iter().cloned().chain(
            label_values(notifications, &self.cfg.at_mobiles_label)
                .into_iter()
                .filter(|m| config::is_mobile(m)),
        );
        let user_ids = self.cfg.at_user_ids.iter().cloned().chain(
            label_values(notifications, &self.cfg.at_user_ids_label)
                .into_iter()
                .filter(|u| !u.contains(char::is_whitespace)),
        );
        Mentions {
            mobiles: dedup(mobiles),
            user_ids: dedup(user_ids),
            all: self.cfg.is_at_all,
        }
    }

    fn with_keyword(&self, s: &str, sep: &str) -> String {
        match &self.cfg.keyword {
            Some(k) if !s.contains(k.as_str()) => format!("{k}{sep}{s}"),
            _ => s.to_string(),
        }
    }

    fn body(title: &str, text: &str, m: &Mentions) -> serde_json::Value {
        json!({
            "msgtype": "markdown",
            "markdown": { "title": title, "text": text },
            "at": { "atMobiles": m.mobiles, "atUserIds": m.user_ids, "isAtAll": m.all },
        })
    }

    /// The text budget for parts of `doc`: the body limit minus everything around the text.
    fn budget(&self, doc: &Doc, m: &Mentions) -> usize {
        let title = self.with_keyword(&format!("{} (999/999)", doc.title), " ");
        let skeleton = Self::body(&title, "", m).to_string().len();
        let keyword = self.cfg.keyword.as_deref().map_or(0, |k| json_len(k) + 4);
        let mention = json_len(&mention_line(m)) + 4;
        self.cfg
            .max_message_bytes
            .saturating_sub(skeleton + keyword + mention + 16)
            .max(200)
    }

    /// Parts of `doc` (`sections` of it) as messages; the first carries the mentions when
    /// `first`.
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
        split::pack(&sub, budget, &json_len)
            .into_iter()
            .enumerate()
            .map(|(i, part)| {
                let first = first && i == 0;
                let none = Mentions::default();
                let mentions = if first { m } else { &none };
                let title = self.with_keyword(&part.title, " ");
                let mut text = self.with_keyword(&part.text, "\n\n");
                let line = mention_line(mentions);
                if !line.is_empty() {
                    text.push_str("\n\n");
                    text.push_str(&line);
                }
                ChatMessage {
                    body: Self::body(&title, &text, mentions),
                    title,
                    text,
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

    /// The URL to post to, signed when a secret is set.
    fn signed_url(&self) -> String {
        let url = self.cfg.url.expose();
        match &self.cfg.secret {
            Some(secret) => {
                let ts = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                let sep = if url.contains('?') { '&' } else { '?' };
                format!(
                    "{url}{sep}timestamp={ts}&sign={}",
                    sign(secret.expose(), ts)
                )
            }
            None => url.to_string(),
        }
    }
}

#[async_trait]
impl ChatRobot for DingTalk {
    fn robot_key(&self) -> String {
        self.cfg.url.expose().to_string()
    }

    fn rate_limit(&self) -> RateLimit {
        self.cfg.rate_limit
    }

    fn messages(&self, notifications: &[Notification]) -> Result<Vec<ChatMessage>, NotifyError> {
        let r = self
            .templates
            .render(Format::DingTalkMarkdown, notifications, &self.cfg.templates)
            .map_err(|e| NotifyError::permanent(format!("rendering the message: {e}")))?;
        let doc = Arc::new(Doc {
            title: r.title,
            header: r.header,
            sections: Vec::new(),
            footer: r.footer,
        });
        let m = self.mentions(notifications);
        let budget = self.budget(&doc, &m);
        Ok(self.pack(&doc, r.sections, budget, true, &m))
    }

    fn shrink(&self, message: &ChatMessage) -> Option<Vec<ChatMessage>> {
        let o = &message.origin;
        let budget = o.budget / 2;
        if budget < 200 {
            return None;
        }
        Some(self.pack(&o.doc, o.sections.clone(), budget, o.first, &o.mentions))
    }

    async fn post(&self, message: &ChatMessage) -> Result<(), NotifyError> {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        post_json(
            &self.http,
            &self.signed_url(),
            &message.body,
            classify,
            &secrets,
        )
        .await
    }
}

#[async_trait]
impl Integration for DingTalk {
    fn kind(&self) -> &'static str {
        "dingtalk"
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
