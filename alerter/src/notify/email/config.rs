//! `email_configs` entries, with Alertmanager's field names, and their validation.

use std::collections::BTreeMap;
use std::sync::Arc;

use lettre::message::header::HeaderName;
use lettre::message::Mailbox;
use serde::Deserialize;

use crate::model::Secret;
use crate::notify::{validate_templates, BuildContext, Integration, TemplateOverrides};
use crate::template::Templates;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Recipients, comma-separated.
    pub to: String,
    pub from: String,
    /// `host:port`; port 465 means TLS from the first byte, otherwise STARTTLS when
    /// `require_tls` (the default) or offered.
    pub smarthost: String,
    /// The name given in EHLO (default: lettre's, the local host name).
    #[serde(default)]
    pub hello: Option<String>,
    #[serde(default)]
    pub auth_username: Option<String>,
    #[serde(default)]
    pub auth_password: Option<Secret>,
    #[serde(default = "default_require_tls")]
    pub require_tls: bool,
    /// Extra headers (values are minijinja templates); `Subject` overrides the rendered
    /// title.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// minijinja source of the HTML body, replacing the built-in one (autoescaped).
    #[serde(default)]
    pub html: Option<String>,
    #[serde(default)]
    pub send_resolved: bool,
    /// `title` (the subject), `text` (the plain-text body) and `language`.
    #[serde(flatten)]
    pub templates: TemplateOverrides,
}

fn default_require_tls() -> bool {
    true
}

/// Headers the message sets from other fields.
const RESERVED_HEADERS: [&str; 8] = [
    "to",
    "from",
    "cc",
    "bcc",
    "content-type",
    "content-transfer-encoding",
    "mime-version",
    "date",
];

/// `smarthost` as (host, port).
pub(crate) fn split_smarthost(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.trim().rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    Some((host.to_string(), port))
}

/// The recipients of `to`: comma-separated addresses, each `a@x` or `Name <a@x>`.
pub(crate) fn parse_recipients(to: &str) -> Result<Vec<Mailbox>, Vec<String>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, addr) in to.split(',').map(str::trim).enumerate() {
        if addr.is_empty() {
            continue;
        }
        match addr.parse::<Mailbox>() {
            Ok(m) => out.push(m),
            Err(e) => errors.push(format!("address {} {addr:?}: {e}", i + 1)),
        }
    }
    if out.is_empty() && errors.is_empty() {
        errors.push("no recipient".into());
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

impl EmailConfig {
    /// Every problem with this config, each naming its field under `path`.
    pub fn validate(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        if let Err(es) = parse_recipients(&self.to) {
            errors.extend(es.into_iter().map(|e| format!("{path}.to: {e}")));
        }
        if self.from.trim().is_empty() {
            errors.push(format!("{path}.from: missing sender"));
        } else if let Err(e) = self.from.trim().parse::<Mailbox>() {
            errors.push(format!("{path}.from: {:?}: {e}", self.from));
        }
        match split_smarthost(&self.smarthost) {
            None => errors.push(format!(
                "{path}.smarthost: {:?} must be host:port",
                self.smarthost
            )),
            Some((host, _)) => {
                // What building the TLS parameters needs: a DNS name or an IP address.
                if lettre::transport::smtp::client::TlsParameters::new(host.clone()).is_err() {
                    errors.push(format!(
                        "{path}.smarthost: {host:?} is not a valid host name"
                    ));
                }
            }
        }
        if let Some(h) = &self.hello {
            if h.trim().is_empty() || h.contains(char::is_whitespace) {
                errors.push(format!("{path}.hello: must be a host name"));
            }
        }
        let has_user = self
            .auth_username
            .as_ref()
            .is_some_and(|u| !u.trim().is_empty());
        if self.auth_password.as_ref().is_some_and(|p| !p.is_empty()) && !has_user {
            errors.push(format!("{path}.auth_password: needs auth_username"));
        }
        if self
            .auth_username
            .as_ref()
            .is_some_and(|u| u.trim().is_empty())
        {
            errors.push(format!("{path}.auth_username: must not be empty when set"));
        }
        for (name, value) in &self.headers {
            let p = format!("{path}.headers.{name}");
            if HeaderName::new_from_ascii(name.clone()).is_err() {
                errors.push(format!("{p}: not a valid header name"));
            } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                errors.push(format!(
                    "{p}: set by the notifier (use `to`/`from` for recipients and sender)"
                ));
            }
            if value.contains(['\r', '\n']) {
                errors.push(format!("{p}: must be one line"));
            }
            if let Err(e) = Templates::check_source(value) {
                errors.push(format!("{p}: {e}"));
            }
        }
        if let Some(html) = &self.html {
            if let Err(e) = Templates::check_source(html) {
                errors.push(format!("{path}.html: {e}"));
            }
        }
        errors.extend(validate_templates(&self.templates, path));
        errors
    }

    /// The integration for this (validated) config.
    pub fn build(&self, ctx: &BuildContext) -> Arc<dyn Integration> {
        Arc::new(super::Email::new(self.clone(), ctx))
    }
}
