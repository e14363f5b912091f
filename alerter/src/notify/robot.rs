//! What the chat robots (DingTalk, WeCom) share: posting one JSON message and reading the
//! platform's answer, which is success only for HTTP 200 with `errcode == 0`; packing a
//! rendered document into messages (and halving them when the platform finds one too long);
//! and the [`Integration`] every robot is.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::split::{self, Doc};
use super::{
    ChatMessage, ChatRobot, Delivered, FailureKind, Integration, Mentions, NotifyError, Origin,
};
use crate::model::Notification;

/// The longest excerpt of an unexpected answer body kept in an error.
const EXCERPT: usize = 200;

/// The smallest text budget a message is packed under: a part that would need less cannot
/// be split again.
pub(crate) const MIN_BUDGET: usize = 200;

#[derive(Deserialize)]
struct Answer {
    errcode: Option<i64>,
    #[serde(default)]
    errmsg: String,
}

/// What differs between chat platforms. A robot implementing it (and [`ChatRobot`]) is an
/// [`Integration`] through the one impl below, and packs and shrinks its messages with
/// [`pack`] and [`shrink`].
pub(crate) trait ChatPlatform: ChatRobot {
    /// [`Integration::kind`]: `dingtalk` or `wecom`.
    const KIND: &'static str;

    /// The config's `send_resolved`.
    fn notify_resolved(&self) -> bool;

    /// The size of a text as the platform's limit counts it.
    fn cost(text: &str) -> usize;

    /// One packed part as it is posted: its shown title, shown text and request body, the
    /// text mentioning `mentions` the way the platform needs.
    fn render(
        &self,
        title: &str,
        text: &str,
        mentions: &Mentions,
    ) -> (String, String, serde_json::Value);
}

#[async_trait]
impl<R: ChatPlatform> Integration for R {
    fn kind(&self) -> &'static str {
        R::KIND
    }

    fn send_resolved(&self) -> bool {
        self.notify_resolved()
    }

    /// Renders and posts every message, one request each, no retries and no rate limiting
    /// (delivery adds those).
    async fn send(&self, notifications: &[Notification]) -> Result<Delivered, NotifyError> {
        let messages = self.messages(notifications, &self.mentions(notifications))?;
        for m in &messages {
            self.post(m).await?;
        }
        Ok(Delivered {
            messages: messages.len(),
        })
    }

    fn chat(&self) -> Option<&dyn ChatRobot> {
        Some(self)
    }
}

/// `sections` of `doc` packed into messages of at most `budget` (as the platform counts)
/// each. Only the first part mentions `m`, and only when `first`: one ping per
/// notification.
pub(crate) fn pack<R: ChatPlatform>(
    robot: &R,
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
    split::pack(&sub, budget, &R::cost)
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let first = first && i == 0;
            let none = Mentions::default();
            let (title, text, body) =
                robot.render(&part.title, &part.text, if first { m } else { &none });
            ChatMessage {
                title,
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

/// [`ChatRobot::shrink`]: the message packed again under half its budget, or `None` below
/// [`MIN_BUDGET`].
pub(crate) fn shrink<R: ChatPlatform>(
    robot: &R,
    message: &ChatMessage,
) -> Option<Vec<ChatMessage>> {
    let o = &message.origin;
    let budget = o.budget / 2;
    if budget < MIN_BUDGET {
        return None;
    }
    Some(pack(
        robot,
        &o.doc,
        o.sections.clone(),
        budget,
        o.first,
        &o.mentions,
    ))
}

/// A digest of `secret` for a [`ChatRobot::batch_class`]: equal secrets give equal
/// digests, and the key never holds the secret itself.
pub(crate) fn secret_digest(secret: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    match secret {
        Some(s) => Sha256::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        None => "-".into(),
    }
}

/// How a robot posts: the shared HTTP client, the platform's reading of a non-zero errcode,
/// and the secrets (token, key, signing secret) scrubbed from every error message (which
/// [`clean_message`](super::clean_message) also bounds).
pub(crate) struct Poster {
    http: reqwest::Client,
    classify: fn(i64) -> FailureKind,
    secrets: Vec<String>,
}

impl Poster {
    pub fn new(
        http: reqwest::Client,
        classify: fn(i64) -> FailureKind,
        secrets: Vec<String>,
    ) -> Self {
        Poster {
            http,
            classify,
            secrets,
        }
    }

    /// Posts `body` to `url` and reads the answer: exactly one request.
    async fn try_post(&self, url: &str, body: &serde_json::Value) -> Result<(), NotifyError> {
        let answer = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(NotifyError::from_http)?;
        let status = answer.status().as_u16();
        let text = answer.text().await.map_err(|e| {
            let mut err = NotifyError::from_http(e);
            err.status = Some(status);
            err
        })?;
        read_answer(status, &text, self.classify)
    }

    /// [`Poster::try_post`] with its error message cleaned.
    pub async fn post(&self, url: &str, body: &serde_json::Value) -> Result<(), NotifyError> {
        self.try_post(url, body)
            .await
            .map_err(|e| e.cleaned(&self.secrets))
    }
}

/// The outcome an answer (`status`, body `text`) stands for.
pub(crate) fn read_answer(
    status: u16,
    text: &str,
    classify: fn(i64) -> FailureKind,
) -> Result<(), NotifyError> {
    if status != 200 {
        let kind = if status >= 500 || status == 429 {
            FailureKind::Transient
        } else {
            FailureKind::Permanent
        };
        return Err(NotifyError {
            kind,
            status: Some(status),
            errcode: None,
            message: format!("HTTP {status}: {}", excerpt(text)),
        });
    }
    match serde_json::from_str::<Answer>(text) {
        Ok(Answer {
            errcode: Some(0), ..
        }) => Ok(()),
        Ok(Answer {
            errcode: Some(code),
            errmsg,
        }) => Err(NotifyError {
            kind: classify(code),
            status: Some(status),
            errcode: Some(code),
            message: errmsg,
        }),
        _ => Err(NotifyError {
            kind: FailureKind::Permanent,
            status: Some(status),
            errcode: None,
            message: format!("answer without an errcode: {}", excerpt(text)),
        }),
    }
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(EXCERPT) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{clean_message, url_secrets};

    fn dingtalk(code: i64) -> FailureKind {
        if code == 130101 {
            FailureKind::Transient
        } else {
            FailureKind::Permanent
        }
    }

    #[test]
    fn only_http_200_with_errcode_zero_is_success() {
        assert!(read_answer(200, r#"{"errcode":0,"errmsg":"ok"}"#, dingtalk).is_ok());
        let e = read_answer(
            200,
            r#"{"errcode":310000,"errmsg":"sign not match"}"#,
            dingtalk,
        )
        .unwrap_err();
        assert_eq!(
            (e.kind, e.errcode, e.message.as_str()),
            (FailureKind::Permanent, Some(310000), "sign not match")
        );
        let e =
            read_answer(200, r#"{"errcode":130101,"errmsg":"too fast"}"#, dingtalk).unwrap_err();
        assert_eq!(e.kind, FailureKind::Transient);
        let e = read_answer(200, "<html>ok</html>", dingtalk).unwrap_err();
        assert_eq!((e.kind, e.errcode), (FailureKind::Permanent, None));
        let e = read_answer(201, r#"{"errcode":0}"#, dingtalk).unwrap_err();
        assert_eq!(e.kind, FailureKind::Permanent);
    }

    #[test]
    fn server_errors_and_429_are_transient_other_4xx_permanent() {
        for (status, kind) in [
            (500, FailureKind::Transient),
            (503, FailureKind::Transient),
            (429, FailureKind::Transient),
            (404, FailureKind::Permanent),
            (403, FailureKind::Permanent),
        ] {
            let e = read_answer(status, "nope", dingtalk).unwrap_err();
            assert_eq!((e.kind, e.status), (kind, Some(status)));
        }
    }

    #[test]
    fn secrets_are_scrubbed() {
        let secrets = url_secrets("http://h/robot/send?access_token=abcdef123");
        assert_eq!(
            clean_message("token abcdef123 is not exist", &secrets),
            "token <secret> is not exist"
        );
    }

    #[test]
    fn equal_secrets_share_a_class_key_that_never_shows_them() {
        let a = secret_digest(Some("SECabcdef"));
        assert_eq!(a, secret_digest(Some("SECabcdef")));
        assert_ne!(a, secret_digest(Some("SECabcdeg")));
        assert_ne!(a, secret_digest(None));
        assert!(!a.contains("abcdef"));
    }
}
