//! Notifiers: turning a [`Notification`] into messages on DingTalk, WeCom, email or a
//! webhook, and proving they arrived.
//!
//! Each receiver kind is a plug-in in its own folder (`dingtalk/`, `wecom/`, `email/`,
//! `webhook/`): a config struct (serde, `deny_unknown_fields`) with a pure `validate()`, and
//! `build()` into an [`Integration`] that makes exactly one delivery attempt per call.
//! Retries with backoff and jitter, the per-robot rate limiter that merges notifications
//! into a digest instead of dropping them, and the record of every attempt live here, the
//! same for every kind.

pub mod attempts;
pub mod delivery;
pub mod dingtalk;
pub mod email;
pub mod limiter;
pub mod metrics;
pub mod notifier;
mod robot;
pub mod split;
#[cfg(test)]
pub(crate) mod testing;
pub mod webhook;
pub mod wecom;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use store::duration::PromDuration;
use store::error::error_chain;

use crate::model::Notification;
use crate::template::Language;

pub use attempts::{Attempt, Outcome};
pub use delivery::Delivery;
pub use notifier::{Notifier, NotifierOptions};

/// Whether trying again can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Network error, timeout, HTTP 5xx/429, or a platform code that says "later"
    /// (DingTalk 130101 sending too fast, WeCom 45009): retried with backoff.
    Transient,
    /// Bad token or key, missing keyword, IP not allowed, message refused: retrying cannot
    /// help, so it is reported at once.
    Permanent,
}

/// Why one delivery attempt failed, with what the platform said.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{kind:?} failure: {message}")]
pub struct NotifyError {
    pub kind: FailureKind,
    /// HTTP status, when an HTTP answer came.
    pub status: Option<u16>,
    /// The platform's `errcode`, when it sent one.
    pub errcode: Option<i64>,
    /// The platform's `errmsg`, or what went wrong: shown in logs, the attempts API and the
    /// UI, so never containing a secret, and [`clean_message`]d (each integration scrubs
    /// its own secrets; delivery cleans every message again).
    pub message: String,
}

/// What a successful attempt delivered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delivered {
    /// Messages sent (more than one when a long message was split at alert boundaries).
    pub messages: usize,
}

/// One configured destination (one entry of a receiver's `*_configs` list), built from its
/// validated config.
#[async_trait]
pub trait Integration: Send + Sync {
    /// `dingtalk`, `wecom`, `email` or `webhook`.
    fn kind(&self) -> &'static str;

    /// Whether resolved alerts are notified (`send_resolved`).
    fn send_resolved(&self) -> bool;

    /// Sends one message for `notifications` (one notification; several when the rate
    /// limiter merged them into a digest), split into several messages when too long.
    /// Exactly one attempt: no retries here.
    async fn send(&self, notifications: &[Notification]) -> Result<Delivered, NotifyError>;

    /// Chat robots (DingTalk, WeCom) expose their message-level interface so delivery can
    /// take one rate-limiter slot per message and resume a split message after the last
    /// part that arrived. `None` for integrations that are not rate limited.
    fn chat(&self) -> Option<&dyn ChatRobot> {
        None
    }
}

/// One message a chat robot posts (one part of a possibly split notification).
#[derive(Clone, Debug)]
pub struct ChatMessage {
    /// The (numbered when split) title, e.g. `[FIRING:2] HighErrorRate (1/3)`.
    pub title: String,
    /// The message as the platform shows it (keyword and mentions included).
    pub text: String,
    /// The request body posted.
    pub body: serde_json::Value,
    /// What the message was packed from, so a part the platform finds too long can be
    /// split again at alert boundaries.
    pub(crate) origin: Origin,
}

/// Where a [`ChatMessage`] came from.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    pub doc: std::sync::Arc<split::Doc>,
    /// The sections of this part.
    pub sections: Vec<String>,
    /// The text budget the part was packed under.
    pub budget: usize,
    /// The first part (the one carrying the @mentions).
    pub first: bool,
    /// Who the first part mentions.
    pub mentions: Mentions,
}

/// Who a chat message @mentions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mentions {
    pub user_ids: Vec<String>,
    pub mobiles: Vec<String>,
    pub all: bool,
}

impl Mentions {
    /// Adds everyone `other` mentions (a digest pings whoever any of its members would).
    pub fn merge(&mut self, other: Mentions) {
        self.user_ids = dedup(
            std::mem::take(&mut self.user_ids)
                .into_iter()
                .chain(other.user_ids),
        );
        self.mobiles = dedup(
            std::mem::take(&mut self.mobiles)
                .into_iter()
                .chain(other.mobiles),
        );
        self.all |= other.all;
    }
}

/// The message-level interface of a rate-limited chat robot.
#[async_trait]
pub trait ChatRobot: Send + Sync {
    /// The robot's identity for the limiter (its URL with the token or key: never shown).
    fn robot_key(&self) -> String;

    /// The robot's rate limit.
    fn rate_limit(&self) -> RateLimit;

    /// Everything that shapes a message besides its mentions (kind, signing secret,
    /// keyword, message type, language, templates, size limit), as an opaque key:
    /// notifications of integrations sharing a robot are merged into one digest only when
    /// their keys are equal, since one rendering would be wrong (or refused) for the
    /// other. Holds no secret in the clear.
    fn batch_class(&self) -> &str;

    /// Who a message for `notifications` mentions by this integration's config: its own
    /// list and the users the alerts' labels name.
    fn mentions(&self, notifications: &[Notification]) -> Mentions;

    /// Renders `notifications` into messages within the platform's size limit, the first
    /// one mentioning `mentions`.
    fn messages(
        &self,
        notifications: &[Notification],
        mentions: &Mentions,
    ) -> Result<Vec<ChatMessage>, NotifyError>;

    /// Splits a message the platform refused as too long into smaller ones (at alert
    /// boundaries), or `None` when it cannot get smaller.
    fn shrink(&self, message: &ChatMessage) -> Option<Vec<ChatMessage>>;

    /// Posts one message: exactly one HTTP request.
    async fn post(&self, message: &ChatMessage) -> Result<(), NotifyError>;
}

impl NotifyError {
    pub fn transient(message: impl Into<String>) -> Self {
        NotifyError {
            kind: FailureKind::Transient,
            status: None,
            errcode: None,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        NotifyError {
            kind: FailureKind::Permanent,
            status: None,
            errcode: None,
            message: message.into(),
        }
    }

    /// This error with its message fit to show: see [`clean_message`].
    pub fn cleaned(mut self, secrets: &[String]) -> Self {
        self.message = clean_message(&self.message, secrets);
        self
    }

    /// A reqwest error as a transient failure, with the URL (and so the token) removed.
    pub fn from_http(e: reqwest::Error) -> Self {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        let e = e.without_url();
        NotifyError::transient(format!("{what}: {}", error_chain(&e)))
    }
}

/// `rate_limit: { messages: N, per: DURATION }` of a chat robot: at most `messages` in any
/// rolling `per` (the platforms' own limit is 20 a minute, and DingTalk mutes a robot for
/// ten minutes when it is exceeded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    #[serde(default = "default_messages")]
    pub messages: u32,
    #[serde(default = "default_per")]
    pub per: PromDuration,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            messages: default_messages(),
            per: default_per(),
        }
    }
}

fn default_messages() -> u32 {
    20
}

fn default_per() -> PromDuration {
    PromDuration::from_secs(60)
}

impl RateLimit {
    /// Config errors of a `rate_limit` at `path`: at least one message, a positive window,
    /// and no faster than the platforms' 20 messages a minute.
    pub fn validate(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        if self.messages == 0 {
            errors.push(format!("{path}.messages: must be at least 1"));
        }
        let per: Duration = self.per.into();
        if per.is_zero() {
            errors.push(format!("{path}.per: must be longer than 0s"));
        } else if f64::from(self.messages) / per.as_secs_f64() > 20.0 / 60.0 + 1e-9 {
            errors.push(format!(
                "{path}: {} messages per {} is faster than the platform's limit of 20 per minute",
                self.messages, self.per
            ));
        }
        errors
    }

    /// The stricter of two limits (robots shared by several integrations).
    pub fn stricter(self, other: RateLimit) -> RateLimit {
        let rate = |r: &RateLimit| f64::from(r.messages) / Duration::from(r.per).as_secs_f64();
        if rate(&other) < rate(&self) {
            other
        } else {
            self
        }
    }
}

/// What building an integration from its config may use.
#[derive(Clone)]
pub struct BuildContext {
    /// `alerting.language`: the built-in templates' language unless the integration sets
    /// its own.
    pub language: Language,
    /// The HTTP client every HTTP integration shares (timeouts set).
    pub http: reqwest::Client,
}

impl BuildContext {
    pub fn new(language: Language) -> Self {
        BuildContext {
            language,
            http: http_client(),
        }
    }
}

/// The shared HTTP client: a 10 s timeout per request so a hung robot becomes a
/// transient failure rather than a stuck delivery.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "building the notifier HTTP client with timeouts failed; using defaults");
            reqwest::Client::new()
        })
}

/// Checks a URL from the config: http(s) with a host.
pub fn validate_http_url(url: &str, path: &str) -> Vec<String> {
    match reqwest::Url::parse(url) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host_str().is_some() => {
            Vec::new()
        }
        _ => vec![format!("{path}: must be an http(s) URL")],
    }
}

/// A URL shown without its secrets: scheme, host, port and path, the query replaced by
/// `<secret>` (DingTalk tokens and WeCom keys live in the query).
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let mut out = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
            if let Some(port) = u.port() {
                out.push_str(&format!(":{port}"));
            }
            out.push_str(u.path());
            if u.query().is_some() {
                out.push_str("?<secret>");
            }
            out
        }
        Err(_) => "<secret>".into(),
    }
}

/// The longest error message kept, in bytes: a failure's message goes to the log, the
/// attempts API (`/api/v1/notifications`) and the UI, and an endpoint's answer can be
/// anything.
pub const MAX_ERROR_BYTES: usize = 512;

/// Shorter values are not scrubbed: replacing `1` or `abc` everywhere would garble
/// messages without protecting anything worth the name.
const MIN_SECRET_CHARS: usize = 4;

/// Whatever of `url` may be a credential, for [`clean_message`]: the query values (DingTalk's
/// `access_token`, WeCom's `key`, a webhook's token), the userinfo (user and password), and
/// path segments that look like tokens (Slack- or Discord-style hook URLs put them there:
/// 16 characters or more, or 8 or more mixing letters and digits), each both as written
/// (percent-encoded, as a server echoing the URL shows it) and decoded. An unparsable URL is
/// a secret as a whole.
pub fn url_secrets(url: &str) -> Vec<String> {
    let Ok(u) = reqwest::Url::parse(url) else {
        return vec![url.to_string()];
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    // as written in the URL; each is also kept decoded below
    let mut raw: Vec<String> = Vec::new();
    let mut out = Vec::new();
    if let Some(q) = u.query() {
        for pair in q.split('&') {
            let value = pair.split_once('=').map_or(pair, |(_, v)| v);
            raw.push(value.to_string());
            // in a query `+` also stands for a space
            out.push(decode(&value.replace('+', " ")));
        }
    }
    raw.push(u.username().to_string());
    raw.extend(u.password().map(String::from));
    let token_like = |seg: &str| {
        let n = seg.chars().count();
        n >= 16
            || (n >= 8
                && seg.chars().any(|c| c.is_ascii_digit())
                && seg.chars().any(|c| c.is_alphabetic()))
    };
    raw.extend(
        u.path_segments()
            .into_iter()
            .flatten()
            .filter(|seg| token_like(seg))
            .map(String::from),
    );
    for s in raw {
        let decoded = decode(&s);
        out.push(s);
        out.push(decoded);
    }
    out.retain(|s| s.chars().count() >= MIN_SECRET_CHARS);
    dedup(out)
}

/// `message` made fit to show wherever a failure is shown: every `secret` (of at least
/// four characters, longest first) replaced by `<secret>`, control characters and bidi
/// overrides (which could forge log lines or reorder what the UI shows) by spaces, and at
/// most [`MAX_ERROR_BYTES`] bytes, cut at a character boundary and ending with `…`.
/// Secrets go before the cut, so no prefix of one survives it. Cleaning twice changes
/// nothing more.
pub fn clean_message(message: &str, secrets: &[String]) -> String {
    let mut secrets: Vec<&str> = secrets
        .iter()
        .map(String::as_str)
        .filter(|s| s.chars().count() >= MIN_SECRET_CHARS)
        .collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = message.to_string();
    for s in secrets {
        out = out.replace(s, "<secret>");
    }
    let out: String = out
        .chars()
        .map(|c| {
            let bidi = matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                ' '
            } else {
                c
            }
        })
        .collect();
    let out = out.trim();
    if out.len() <= MAX_ERROR_BYTES {
        return out.to_string();
    }
    const ELLIPSIS: &str = "…";
    let mut cut = MAX_ERROR_BYTES - ELLIPSIS.len();
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{ELLIPSIS}", &out[..cut])
}

/// Checks the template overrides' sources at `path`.
pub fn validate_templates(t: &TemplateOverrides, path: &str) -> Vec<String> {
    let mut errors = Vec::new();
    for (field, src) in [("title", &t.title), ("text", &t.text)] {
        if let Some(src) = src {
            if let Err(e) = crate::template::Templates::check_source(src) {
                errors.push(format!("{path}.{field}: {e}"));
            }
        }
    }
    errors
}

/// The comma-separated values of label `name` over every alert of `notifications`.
pub(crate) fn label_values(notifications: &[Notification], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for n in notifications {
        for a in &n.alerts {
            if let Some(v) = a.labels.get(name) {
                out.extend(
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                );
            }
        }
    }
    out
}

/// `items` without repeats, first occurrence kept.
pub(crate) fn dedup(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|s| seen.insert(s.clone()))
        .collect()
}

/// One `receivers:` entry of the `alerting:` section, as Alertmanager's.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    pub name: String,
    #[serde(default)]
    pub dingtalk_configs: Vec<dingtalk::DingTalkConfig>,
    #[serde(default)]
    pub wecom_configs: Vec<wecom::WeComConfig>,
    #[serde(default)]
    pub email_configs: Vec<email::EmailConfig>,
    #[serde(default)]
    pub webhook_configs: Vec<webhook::WebhookConfig>,
}

/// Template overrides any integration may carry: minijinja sources replacing the built-in
/// title and body, and the language of the built-in ones.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateOverrides {
    #[serde(default)]
    pub language: Option<crate::template::Language>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
}

pub(crate) fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_secrets_are_the_query_values_userinfo_and_token_like_path_segments() {
        let s = url_secrets(
            "https://bot:p%40ss-word@hooks.example.com/services/T0A1B2C3D/hook/abcdefghijklmnopqrstuvwx?access_token=a%2Bb%2Fcdef&x=1",
        );
        for want in [
            "a%2Bb%2Fcdef",
            "a+b/cdef",
            "p%40ss-word",
            "p@ss-word",
            "T0A1B2C3D",
            "abcdefghijklmnopqrstuvwx",
        ] {
            assert!(s.contains(&want.to_string()), "{want} not in {s:?}");
        }
        // short values, plain words and the host are not secrets
        for not in ["1", "bot", "services", "hook", "hooks.example.com"] {
            assert!(!s.contains(&not.to_string()), "{not} in {s:?}");
        }
        assert_eq!(url_secrets("not a url"), vec!["not a url".to_string()]);
    }

    #[test]
    fn cleaned_messages_hide_secrets_control_characters_and_stop_at_512_bytes() {
        let secrets = vec!["tok3n".to_string(), "tok3n-longer".to_string(), "ab".into()];
        // the longer secret first: no tail of it survives
        assert_eq!(
            clean_message(
                "bad tok3n-longer, tok3n\r\nab\u{1b}[0m\u{202e}x\t",
                &secrets
            ),
            "bad <secret>, <secret>  ab [0m x"
        );
        let long = format!("{}{}", "a".repeat(510), "é".repeat(10));
        let cut = clean_message(&long, &[]);
        assert!(cut.len() <= MAX_ERROR_BYTES && cut.ends_with('…'), "{cut}");
        assert_eq!(cut, format!("{}…", "a".repeat(509)));
        let cjk = "错".repeat(400);
        let cut = clean_message(&cjk, &[]);
        assert_eq!(cut, format!("{}…", "错".repeat(169)));
        assert_eq!(
            clean_message(&cut, &[]),
            cut,
            "cleaning twice changes nothing"
        );
        // a secret straddling the cut is gone before the cut, not half shown
        let straddling = format!("{}tok3n-longer", "a".repeat(505));
        assert!(!clean_message(&straddling, &secrets).contains("tok3"));
    }

    #[test]
    fn a_digest_mentions_the_union_of_its_members() {
        let mut m = Mentions {
            user_ids: vec!["u1".into()],
            mobiles: vec!["1".into(), "2".into()],
            all: false,
        };
        m.merge(Mentions {
            user_ids: vec!["u2".into(), "u1".into()],
            mobiles: vec!["2".into(), "3".into()],
            all: true,
        });
        assert_eq!(
            m,
            Mentions {
                user_ids: vec!["u1".into(), "u2".into()],
                mobiles: vec!["1".into(), "2".into(), "3".into()],
                all: true,
            }
        );
    }
}
