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

use super::robot::{self, secret_digest, ChatPlatform, Poster, MIN_BUDGET};
use super::split::{json_len, Doc};
use super::{
    dedup, label_values, url_secrets, BuildContext, ChatMessage, ChatRobot, FailureKind, Mentions,
    NotifyError, RateLimit,
};
use crate::model::Notification;
use crate::template::{Format, Templates};

/// The errcode DingTalk answers for a message over its size limit.
pub const TOO_LONG: i64 = 460_101;

/// A DingTalk robot built from its config.
pub struct DingTalk {
    cfg: DingTalkConfig,
    templates: Templates,
    /// Posts with the token and signing secret scrubbed from error messages.
    poster: Poster,
    /// [`ChatRobot::batch_class`].
    class: String,
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
    // -1 is DingTalk's "system busy": try again. Every other code is permanent: 130101
    // mutes the robot for ten minutes (retries would only fail), 90030 lasts the day,
    // 310000/300001 are config.
    if errcode == SYSTEM_BUSY {
        FailureKind::Transient
    } else {
        FailureKind::Permanent
    }
}

/// DingTalk's answer when it is overloaded.
const SYSTEM_BUSY: i64 = -1;

impl DingTalk {
    pub fn new(cfg: DingTalkConfig, ctx: &BuildContext) -> Self {
        let mut secrets = url_secrets(cfg.url.expose());
        if let Some(s) = &cfg.secret {
            secrets.push(s.expose().to_string());
        }
        // the mentions and their labels stay out: a digest carries every member's
        let t = &cfg.templates;
        let class = format!(
            "{:?}",
            (
                Self::KIND,
                secret_digest(cfg.secret.as_ref().map(|s| s.expose())),
                &cfg.keyword,
                t.language.unwrap_or(ctx.language),
                &t.title,
                &t.text,
                cfg.max_message_bytes,
            )
        );
        DingTalk {
            templates: Templates::new(ctx.language),
            poster: Poster::new(ctx.http.clone(), classify, secrets),
            class,
            cfg,
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
            .max(MIN_BUDGET)
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

    fn batch_class(&self) -> &str {
        &self.class
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

    fn messages(
        &self,
        notifications: &[Notification],
        mentions: &Mentions,
    ) -> Result<Vec<ChatMessage>, NotifyError> {
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
        let budget = self.budget(&doc, mentions);
        Ok(robot::pack(self, &doc, r.sections, budget, true, mentions))
    }

    fn shrink(&self, message: &ChatMessage) -> Option<Vec<ChatMessage>> {
        robot::shrink(self, message)
    }

    async fn post(&self, message: &ChatMessage) -> Result<(), NotifyError> {
        self.poster.post(&self.signed_url(), &message.body).await
    }
}

impl ChatPlatform for DingTalk {
    const KIND: &'static str = "dingtalk";

    fn notify_resolved(&self) -> bool {
        self.cfg.send_resolved
    }

    fn cost(text: &str) -> usize {
        json_len(text)
    }

    /// The keyword in title and text (when they lack it), the mention line last.
    fn render(
        &self,
        title: &str,
        text: &str,
        mentions: &Mentions,
    ) -> (String, String, serde_json::Value) {
        let title = self.with_keyword(title, " ");
        let mut text = self.with_keyword(text, "\n\n");
        let line = mention_line(mentions);
        if !line.is_empty() {
            text.push_str("\n\n");
            text.push_str(&line);
        }
        let body = Self::body(&title, &text, mentions);
        (title, text, body)
    }
}

#[cfg(test)]
mod tests;
