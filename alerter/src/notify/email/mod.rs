//! Email notifier (SMTP via lettre): one multipart/alternative message (plain text + HTML)
//! per notification (or per digest), subject from the rendered title or `headers.Subject`.
//!
//! Transport: port 465 speaks TLS from the first byte; otherwise STARTTLS, required when
//! `require_tls` (the default) and used when offered otherwise. SMTP 4xx answers and
//! connection problems are transient (retried), 5xx answers are permanent.

mod config;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::model::Notification;
use crate::notify::{
    BuildContext, Delivered, FailureKind, Integration, NotifyError, TemplateOverrides,
};
use crate::template::{Format, Templates};

pub use config::EmailConfig;
use config::{parse_recipients, split_smarthost};

/// How long one SMTP conversation step may take before the attempt is a transient failure.
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

/// An email integration built from a validated [`EmailConfig`].
pub struct Email {
    cfg: EmailConfig,
    templates: Templates,
    /// `Err` only for a config that skipped validation: every send then fails permanently.
    transport: Result<Transport, String>,
    /// The AUTH password, scrubbed from every error message (a server's answer could
    /// quote what it was sent).
    secrets: Vec<String>,
}

struct Transport {
    smtp: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Email")
            .field("smarthost", &self.cfg.smarthost)
            .field("to", &self.cfg.to)
            .field("require_tls", &self.cfg.require_tls)
            .finish_non_exhaustive()
    }
}

fn transport(cfg: &EmailConfig) -> Result<Transport, String> {
    let (host, port) = split_smarthost(&cfg.smarthost)
        .ok_or_else(|| format!("smarthost {:?} must be host:port", cfg.smarthost))?;
    let params = TlsParameters::new(host.clone())
        .map_err(|e| format!("TLS parameters for {host:?}: {e}"))?;
    let tls = if port == 465 {
        Tls::Wrapper(params)
    } else if cfg.require_tls {
        Tls::Required(params)
    } else {
        Tls::Opportunistic(params)
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .tls(tls)
        .timeout(Some(SMTP_TIMEOUT));
    if let Some(hello) = &cfg.hello {
        b = b.hello_name(ClientId::Domain(hello.clone()));
    }
    if let Some(user) = cfg.auth_username.as_ref().filter(|u| !u.is_empty()) {
        let password = cfg
            .auth_password
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default();
        b = b.credentials(Credentials::new(user.clone(), password));
    }
    let from = cfg
        .from
        .trim()
        .parse::<Mailbox>()
        .map_err(|e| format!("from {:?}: {e}", cfg.from))?;
    let to = parse_recipients(&cfg.to).map_err(|e| format!("to: {}", e.join("; ")))?;
    Ok(Transport {
        smtp: b.build(),
        from,
        to,
    })
}

/// An SMTP error as a delivery failure: 4xx transient, 5xx permanent, connection and
/// timeout problems transient; lettre's own refusals (no STARTTLS offered while TLS is
/// required, no usable AUTH mechanism) cannot get better by retrying.
fn classify(e: &lettre::transport::smtp::Error) -> NotifyError {
    let status = e.status().map(|c| {
        let s = c.to_string();
        s.parse::<u16>().unwrap_or(0)
    });
    let kind = if e.is_permanent() {
        FailureKind::Permanent
    } else if e.is_transient() {
        FailureKind::Transient
    } else if e.is_client() {
        FailureKind::Permanent
    } else {
        FailureKind::Transient
    };
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        // lettre's own message often already quotes its source (the server's answer)
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    NotifyError {
        kind,
        status,
        errcode: None,
        message: format!("smtp: {message}"),
    }
}

/// A unique `Message-ID` in the sender's domain (lettre's default would say `localhost`).
fn message_id(from: &Mailbox, notifications: &[Notification]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for n in notifications {
        n.group_key.hash(&mut h);
        n.now_ms.hash(&mut h);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("<{nanos:x}.{:016x}@{}>", h.finish(), from.email.domain())
}

impl Email {
    pub fn new(cfg: EmailConfig, ctx: &BuildContext) -> Self {
        Email {
            templates: Templates::new(cfg.templates.language.unwrap_or(ctx.language)),
            transport: transport(&cfg),
            secrets: cfg
                .auth_password
                .iter()
                .map(|p| p.expose().to_string())
                .collect(),
            cfg,
        }
    }

    /// The message for `notifications`, ready to send.
    pub fn message(&self, notifications: &[Notification]) -> Result<Message, NotifyError> {
        let t = self
            .transport
            .as_ref()
            .map_err(|e| NotifyError::permanent(format!("email config: {e}")))?;
        let render_err = |e: String| NotifyError::permanent(format!("rendering the email: {e}"));
        let text = self
            .templates
            .render(Format::EmailText, notifications, &self.cfg.templates)
            .map_err(render_err)?;
        let html_overrides = TemplateOverrides {
            language: self.cfg.templates.language,
            title: None,
            text: self.cfg.html.clone(),
        };
        let html = self
            .templates
            .render(Format::EmailHtml, notifications, &html_overrides)
            .map_err(render_err)?;

        let mut subject = text.title.clone();
        let mut extra = Vec::new();
        for (name, source) in &self.cfg.headers {
            let value = self
                .templates
                .render_source(source, notifications, self.cfg.templates.language)
                .map_err(|e| render_err(format!("header {name}: {e}")))?;
            // Rendered values may carry label values: keep them on one line.
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            if name.eq_ignore_ascii_case("subject") {
                subject = value;
                continue;
            }
            let header = HeaderName::new_from_ascii(name.clone())
                .map_err(|e| NotifyError::permanent(format!("header {name:?}: {e}")))?;
            extra.push(HeaderValue::new(header, value));
        }

        let mut b = Message::builder()
            .message_id(Some(message_id(&t.from, notifications)))
            .from(t.from.clone())
            .subject(subject);
        for to in &t.to {
            b = b.to(to.clone());
        }
        for h in extra {
            b = b.raw_header(h);
        }
        b.multipart(MultiPart::alternative_plain_html(text.text(), html.text()))
            .map_err(|e| NotifyError::permanent(format!("building the email: {e}")))
    }
}

#[async_trait]
impl Integration for Email {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn send_resolved(&self) -> bool {
        self.cfg.send_resolved
    }

    /// One SMTP conversation; the error's message is cleaned (no password, no control
    /// characters from multi-line SMTP answers, bounded length).
    async fn send(&self, notifications: &[Notification]) -> Result<Delivered, NotifyError> {
        let send = async {
            let message = self.message(notifications)?;
            let t = self
                .transport
                .as_ref()
                .map_err(|e| NotifyError::permanent(format!("email config: {e}")))?;
            t.smtp.send(message).await.map_err(|e| classify(&e))?;
            Ok(Delivered { messages: 1 })
        };
        send.await
            .map_err(|e: NotifyError| e.cleaned(&self.secrets))
    }
}
