//! Message templates (minijinja) with built-in Chinese and English defaults.
//!
//! A message is rendered in pieces: a title, a header, one section per alert and a footer
//! (see [`Rendered`]). The pieces are the split points the chat notifiers use when a
//! message is over the platform's size limit: they cut between sections, never inside one.
//! Each built-in template (`defaults/*.j2`) is rendered once per piece with `part` set to
//! `title`, `header`, `alert` or `footer`; per-alert renders also get `alert`,
//! `notification` and `first` (the first alert of its notification, where a digest puts
//! the group's heading). The context is built in [`context`] and documented in
//! docs/alerting.md ("Templates").
//!
//! Overrides (`title:` / `text:` of a receiver config) replace the built-in title and
//! body; a custom body is one section. Email HTML autoescapes every value.

mod context;
pub mod filters;
mod links;

use minijinja::value::{Serde, Value};
use minijinja::{context, AutoEscape, Environment, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::model::Notification;
use crate::notify::TemplateOverrides;

pub use context::{alert_ctx, AlertCtx, Context};
pub use links::{encode as urlencode, links, service_of, Links};

/// The language of the built-in templates (`language: zh|en` in `alerting:` or per
/// receiver config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Zh,
    #[default]
    En,
}

/// What a message is rendered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// DingTalk `markdown` (title + text): headings, bold, links, lists; no tables.
    DingTalkMarkdown,
    /// WeCom `markdown`: `<font color="warning|info|comment">`, bold, links, quotes.
    WeComMarkdown,
    /// WeCom `text`: plain text with bare URLs.
    WeComText,
    /// The HTML part of an email (every value HTML-escaped).
    EmailHtml,
    /// The plain-text part of an email.
    EmailText,
}

impl Format {
    /// The built-in template rendering this format.
    fn builtin(self) -> &'static str {
        match self {
            Format::DingTalkMarkdown => "dingtalk.md.j2",
            Format::WeComMarkdown => "wecom.md.j2",
            Format::WeComText | Format::EmailText => "text.txt.j2",
            Format::EmailHtml => "email.html.j2",
        }
    }

    /// What separates the pieces of a message in this format.
    fn separator(self) -> &'static str {
        match self {
            Format::EmailHtml => "\n",
            Format::DingTalkMarkdown | Format::WeComMarkdown => "\n\n",
            Format::WeComText | Format::EmailText => "\n\n",
        }
    }

    fn is_html(self) -> bool {
        self == Format::EmailHtml
    }
}

const BUILTINS: [(&str, &str); 4] = [
    ("dingtalk.md.j2", include_str!("defaults/dingtalk.md.j2")),
    ("wecom.md.j2", include_str!("defaults/wecom.md.j2")),
    ("text.txt.j2", include_str!("defaults/text.txt.j2")),
    ("email.html.j2", include_str!("defaults/email.html.j2")),
];

/// A rendered message in pieces. The whole message is `header + sections + footer`
/// concatenated ([`Rendered::text`]); every piece but the last already ends with the
/// format's separator, so any run of sections can be sent between the header and footer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    /// A one-line plain-text title (DingTalk's `title`, the email subject).
    pub title: String,
    /// Empty, or the header with its trailing separator.
    pub header: String,
    /// One per alert (a custom `text:` template: one for the whole body), each ending with
    /// the separator.
    pub sections: Vec<String>,
    /// Empty, or the footer (no trailing separator).
    pub footer: String,
}

impl Rendered {
    /// The whole message.
    pub fn text(&self) -> String {
        self.with_sections(&self.sections)
    }

    /// The header, `sections` (a run of this message's sections) and the footer.
    pub fn with_sections(&self, sections: &[String]) -> String {
        let mut out = self.header.clone();
        for s in sections {
            out.push_str(s);
        }
        out.push_str(&self.footer);
        if self.footer.is_empty() {
            // Without a footer the last section's separator would dangle.
            out.truncate(out.trim_end().len());
        }
        out
    }
}

/// The built-in templates of one default language, ready to render.
#[derive(Clone)]
pub struct Templates {
    language: Language,
    env: Environment<'static>,
    /// Errors compiling the built-in templates (none, as a test proves); reported by
    /// `render` rather than panicking.
    builtin_errors: Vec<String>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("language", &self.language)
            .finish_non_exhaustive()
    }
}

/// An environment with Lookout's filters and whitespace rules, autoescaping templates
/// whose name ends in `.html` or `.html.j2`.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") || name.ends_with(".html.j2") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.add_filter("humanize", humanize_filter);
    env.add_filter("duration", duration_filter);
    env.add_filter("time", time_filter);
    env
}

fn number(v: &Value) -> Option<f64> {
    if let Some(s) = v.as_str() {
        return s.trim().parse().ok();
    }
    f64::try_from(v.clone()).ok()
}

/// `{{ value|humanize }}`: SI-prefixed number; none prints as "".
fn humanize_filter(v: Value) -> String {
    if v.is_none() || v.is_undefined() {
        return String::new();
    }
    number(&v).map_or_else(|| v.to_string(), filters::humanize)
}

/// `{{ ms|duration }}`: `5m`, `1h30m`.
fn duration_filter(v: Value) -> String {
    #[allow(clippy::cast_possible_truncation)]
    number(&v).map_or_else(String::new, |ms| filters::duration(ms as i64))
}

/// `{{ ms|time }}`: `2006-01-02 15:04:05 UTC`.
fn time_filter(v: Value) -> String {
    #[allow(clippy::cast_possible_truncation)]
    number(&v).map_or_else(String::new, |ms| filters::time(ms as i64))
}

fn describe(err: &minijinja::Error) -> String {
    let what = match err.kind() {
        ErrorKind::SyntaxError => "syntax error",
        ErrorKind::UnknownFilter => "unknown filter",
        ErrorKind::UnknownTest => "unknown test",
        ErrorKind::UnknownFunction => "unknown function",
        ErrorKind::UnknownMethod => "unknown method",
        ErrorKind::UndefinedError => "undefined value",
        ErrorKind::InvalidOperation => "invalid operation",
        ErrorKind::BadEscape => "bad string escape",
        _ => "template error",
    };
    let mut msg = what.to_string();
    if let Some(detail) = err.detail() {
        msg.push_str(": ");
        msg.push_str(detail);
    }
    if let Some(line) = err.line() {
        msg.push_str(&format!(" (template line {line})"));
    }
    msg
}

/// Name of an override template: HTML overrides autoescape.
fn override_name(format: Format, piece: &str) -> String {
    if format.is_html() && piece == "text" {
        "override.html".into()
    } else {
        format!("override-{piece}.txt")
    }
}

impl Templates {
    pub fn new(language: Language) -> Templates {
        let mut env = environment();
        let mut builtin_errors = Vec::new();
        for (name, src) in BUILTINS {
            if let Err(e) = env.add_template(name, src) {
                builtin_errors.push(format!("built-in template {name}: {}", describe(&e)));
            }
        }
        Templates {
            language,
            env,
            builtin_errors,
        }
    }

    /// The default language (an integration's `language:` overrides it per render).
    pub fn language(&self) -> Language {
        self.language
    }

    /// Checks a user template (`title:`, `text:`, `html:` of a receiver): syntax, and
    /// filters, tests and functions that do not exist (found by rendering it once over a
    /// sample notification). Errors name the line.
    pub fn check_source(source: &str) -> Result<(), String> {
        let env = environment();
        let tmpl = env
            .template_from_named_str("check.txt", source)
            .map_err(|e| describe(&e))?;
        let sample = sample_notification();
        let ctx = context::build(std::slice::from_ref(&sample), Language::En);
        match tmpl.render(Value::from(Serde(&ctx))) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::SyntaxError
                        | ErrorKind::UnknownFilter
                        | ErrorKind::UnknownTest
                        | ErrorKind::UnknownFunction
                        | ErrorKind::UnknownBlock
                        | ErrorKind::TemplateNotFound
                ) =>
            {
                Err(describe(&e))
            }
            // Anything else depends on the data (e.g. an index past the end): not
            // something to reject a config for.
            Err(_) => Ok(()),
        }
    }

    /// Renders `notifications` (one; several when merged into a digest) for `format`.
    pub fn render(
        &self,
        format: Format,
        notifications: &[Notification],
        overrides: &TemplateOverrides,
    ) -> Result<Rendered, String> {
        if let Some(e) = self.builtin_errors.first() {
            return Err(e.clone());
        }
        if notifications.is_empty() {
            return Err("nothing to render: no notifications".into());
        }
        let language = overrides.language.unwrap_or(self.language);
        let ctx = context::build(notifications, language);
        let base = Value::from(Serde(&ctx));
        let sep = format.separator();
        let finish = |s: String, with_sep: bool| -> String {
            let s = s.trim().to_string();
            if s.is_empty() || !with_sep {
                s
            } else {
                s + sep
            }
        };

        let title = match overrides.title.as_deref() {
            Some(src) => self.render_str(&override_name(format, "title"), src, &base)?,
            None => {
                // The HTML template escapes; a subject must not carry `&amp;`.
                let name = if format.is_html() {
                    Format::EmailText.builtin()
                } else {
                    format.builtin()
                };
                self.render_part(name, context! { part => "title", ..base.clone() })?
            }
        };
        // One line: subjects and chat titles cannot hold newlines.
        let title = title.split_whitespace().collect::<Vec<_>>().join(" ");

        if let Some(src) = overrides.text.as_deref() {
            let body = self.render_str(&override_name(format, "text"), src, &base)?;
            return Ok(Rendered {
                title,
                header: String::new(),
                sections: vec![finish(body, false)],
                footer: String::new(),
            });
        }

        let name = format.builtin();
        let header = finish(
            self.render_part(name, context! { part => "header", ..base.clone() })?,
            true,
        );
        let mut sections = Vec::with_capacity(ctx.alerts.len());
        for n in &ctx.notifications {
            let nv = Value::from(Serde(n));
            for (i, a) in n.alerts.iter().enumerate() {
                let part = self.render_part(
                    name,
                    context! {
                        part => "alert",
                        alert => Value::from(Serde(a)),
                        notification => nv.clone(),
                        first => i == 0,
                        ..base.clone()
                    },
                )?;
                sections.push(finish(part, true));
            }
        }
        let footer = finish(
            self.render_part(name, context! { part => "footer", ..base.clone() })?,
            false,
        );
        Ok(Rendered {
            title,
            header,
            sections,
            footer,
        })
    }

    /// Renders a one-off template `source` (e.g. an email header value) over
    /// `notifications`, without escaping, in `language` (else the default one).
    pub fn render_source(
        &self,
        source: &str,
        notifications: &[Notification],
        language: Option<Language>,
    ) -> Result<String, String> {
        if notifications.is_empty() {
            return Err("nothing to render: no notifications".into());
        }
        let ctx = context::build(notifications, language.unwrap_or(self.language));
        self.render_str("source.txt", source, &Value::from(Serde(&ctx)))
    }

    fn render_part(&self, name: &str, ctx: Value) -> Result<String, String> {
        let tmpl = self.env.get_template(name).map_err(|e| describe(&e))?;
        tmpl.render(ctx)
            .map_err(|e| format!("built-in template {name}: {}", describe(&e)))
    }

    fn render_str(&self, name: &str, src: &str, ctx: &Value) -> Result<String, String> {
        let tmpl = self
            .env
            .template_from_named_str(name, src)
            .map_err(|e| describe(&e))?;
        tmpl.render(ctx.clone()).map_err(|e| describe(&e))
    }
}

/// A notification with one firing alert, to try user templates on.
fn sample_notification() -> Notification {
    use crate::model::{Alert, Evidence, LabelSet};
    let labels: LabelSet = [
        ("alertname", "Sample"),
        ("severity", "warning"),
        ("service", "sample"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let annotations: LabelSet = [("summary", "sample alert")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Notification {
        receiver: "sample".into(),
        group_key: "{}:{alertname=\"Sample\"}".into(),
        group_labels: labels
            .iter()
            .filter(|(k, _)| *k == "alertname")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        alerts: vec![Alert {
            labels,
            annotations,
            starts_at_ms: 1_700_000_000_000,
            ends_at_ms: None,
            updated_at_ms: 1_700_000_300_000,
            generator_url: String::new(),
            evidence: Evidence {
                expr: Some("up == 0".into()),
                value: Some(1.0),
                ..Evidence::default()
            },
        }],
        external_url: "http://localhost:9800".into(),
        now_ms: 1_700_000_300_000,
    }
}

#[cfg(test)]
mod tests;
