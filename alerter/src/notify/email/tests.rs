//! Email integration against a tiny in-process SMTP server (EHLO, AUTH PLAIN, MAIL, RCPT,
//! DATA, RSET, NOOP, QUIT), and config validation.

use std::net::SocketAddr;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;
use crate::model::{Alert, Evidence, Notification};
use crate::notify::testing::labels;
use crate::template::Language;

/// What the server saw in one mail transaction.
#[derive(Debug, Default)]
struct Received {
    ehlo: String,
    auth: Option<Vec<u8>>,
    mail_from: String,
    rcpt: Vec<String>,
    data: String,
}

/// How the server answers.
#[derive(Clone, Copy)]
struct Script {
    /// Offer `AUTH PLAIN` after EHLO.
    auth: bool,
    /// Answer to each RCPT.
    rcpt: &'static str,
    /// Answer after the message data.
    data: &'static str,
}

const OK: Script = Script {
    auth: false,
    rcpt: "250 2.1.5 ok",
    data: "250 2.0.0 queued",
};

async fn smtp_server(script: Script) -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                let mut got = Received::default();
                let _ = w.write_all(b"220 tiny ESMTP\r\n").await;
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: String = if upper.starts_with("EHLO") {
                        got.ehlo = line[4..].trim().to_string();
                        if script.auth {
                            "250-tiny\r\n250-AUTH PLAIN\r\n250 8BITMIME".into()
                        } else {
                            "250-tiny\r\n250 8BITMIME".into()
                        }
                    } else if upper.starts_with("HELO") {
                        "250 tiny".into()
                    } else if upper.starts_with("AUTH PLAIN ") {
                        got.auth = base64::engine::general_purpose::STANDARD
                            .decode(line[11..].trim())
                            .ok();
                        "235 2.7.0 authenticated".into()
                    } else if upper.starts_with("MAIL FROM:") {
                        got.mail_from = line[10..].trim().to_string();
                        "250 2.1.0 ok".into()
                    } else if upper.starts_with("RCPT TO:") {
                        got.rcpt.push(line[8..].trim().to_string());
                        script.rcpt.into()
                    } else if upper == "DATA" {
                        let _ = w.write_all(b"354 go ahead\r\n").await;
                        let mut data = String::new();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            // Undo dot-stuffing.
                            data.push_str(l.strip_prefix('.').unwrap_or(&l));
                            data.push('\n');
                        }
                        got.data = data;
                        let _ = tx.send(std::mem::take(&mut got));
                        script.data.into()
                    } else if upper == "RSET" || upper == "NOOP" {
                        "250 ok".into()
                    } else if upper == "QUIT" {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        break;
                    } else {
                        "500 unknown command".into()
                    };
                    if w.write_all(format!("{reply}\r\n").as_bytes())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn notification() -> Notification {
    let now = 1_700_000_300_000;
    Notification {
        receiver: "mail".into(),
        group_key: "{}:{alertname=\"HighErrorRate\"}".into(),
        group_labels: labels(&[("alertname", "HighErrorRate")]),
        alerts: vec![Alert {
            labels: labels(&[
                ("alertname", "HighErrorRate"),
                ("severity", "critical"),
                ("service", "payments"),
                ("team", "<db & infra>"),
            ]),
            annotations: labels(&[("summary", "payments 5xx at 3.2/s")]),
            starts_at_ms: now - 300_000,
            ends_at_ms: None,
            updated_at_ms: now,
            generator_url: String::new(),
            evidence: Evidence {
                expr: Some("sum(rate(errors[5m])) > 1".into()),
                value: Some(3.2),
                ..Evidence::default()
            },
        }],
        external_url: "http://lookout.example:9800".into(),
        now_ms: now,
    }
}

fn config(yaml: &str) -> EmailConfig {
    serde_yaml::from_str(yaml).expect("email config")
}

fn build(cfg: &EmailConfig) -> Arc<dyn Integration> {
    assert_eq!(cfg.validate("email_configs[0]"), Vec::<String>::new());
    cfg.build(&BuildContext::new(Language::En))
}

use std::sync::Arc;

/// The MIME parts (headers, decoded body) of a multipart message, and its top headers.
fn parse_mime(data: &str) -> (String, Vec<(String, String)>) {
    let (head, body) = data.split_once("\n\n").expect("headers and body");
    let boundary = head
        .split("boundary=")
        .nth(1)
        .expect("a multipart boundary")
        .trim_matches(|c: char| c == '"' || c.is_whitespace())
        .split(['"', ';', '\n'])
        .next()
        .unwrap_or("")
        .to_string();
    let mut parts = Vec::new();
    for chunk in body.split(&format!("--{boundary}")).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        let Some((h, b)) = chunk.trim_start_matches('\n').split_once("\n\n") else {
            continue;
        };
        let h_lower = h.to_ascii_lowercase();
        let decoded = if h_lower.contains("content-transfer-encoding: base64") {
            let joined: String = b.split_whitespace().collect();
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(joined)
                    .expect("base64 part"),
            )
            .expect("utf-8 part")
        } else if h_lower.contains("content-transfer-encoding: quoted-printable") {
            decode_qp(b)
        } else {
            b.to_string()
        };
        parts.push((h.to_string(), decoded));
    }
    (head.to_string(), parts)
}

fn decode_qp(s: &str) -> String {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("utf-8 qp")
}

/// A header's value, unfolded, with RFC 2047 encoded words decoded.
fn header(head: &str, name: &str) -> Option<String> {
    let unfolded = head.replace("\n ", " ").replace("\n\t", " ");
    let line = unfolded.lines().find(|l| {
        l.to_ascii_lowercase()
            .starts_with(&format!("{}:", name.to_ascii_lowercase()))
    })?;
    let value = line[name.len() + 1..].trim();
    // Whitespace between two encoded words is dropped; any other is kept.
    let mut out = String::new();
    let mut prev_encoded = None;
    for word in value.split(' ') {
        let lower = word.to_ascii_lowercase();
        let encoded = lower.starts_with("=?utf-8?b?") && lower.ends_with("?=");
        if prev_encoded.is_some() && !(encoded && prev_encoded == Some(true)) {
            out.push(' ');
        }
        if encoded {
            let b64 = &word[10..word.len() - 2];
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("encoded word");
            out.push_str(&String::from_utf8(bytes).expect("utf-8 word"));
        } else {
            out.push_str(word);
        }
        prev_encoded = Some(encoded);
    }
    Some(out)
}

#[tokio::test]
async fn sends_multipart_text_and_html_to_every_recipient() {
    let (addr, mut rx) = smtp_server(OK).await;
    let cfg = config(&format!(
        r#"
to: "a@example.com, Bob <b@example.com>"
from: "Lookout <lookout@example.com>"
smarthost: "{addr}"
require_tls: false
hello: lookout.test
headers:
  X-Team: "{{{{ common_labels.team }}}}"
send_resolved: true
"#
    ));
    let integration = build(&cfg);
    assert_eq!(integration.kind(), "email");
    assert!(integration.send_resolved());
    let delivered = integration
        .send(&[notification()])
        .await
        .expect("delivered");
    assert_eq!(delivered.messages, 1);

    let got = rx.recv().await.expect("a mail");
    assert_eq!(got.ehlo, "lookout.test");
    assert_eq!(got.mail_from, "<lookout@example.com>");
    assert_eq!(got.rcpt, vec!["<a@example.com>", "<b@example.com>"]);
    let (head, parts) = parse_mime(&got.data);
    assert_eq!(
        header(&head, "Subject").as_deref(),
        Some("[FIRING:1] HighErrorRate")
    );
    assert_eq!(header(&head, "X-Team").as_deref(), Some("<db & infra>"));
    assert!(header(&head, "To").expect("To").contains("b@example.com"));
    let id = header(&head, "Message-ID").expect("Message-ID");
    assert!(id.starts_with('<') && id.ends_with("@example.com>"), "{id}");
    assert!(header(&head, "Date").is_some());
    assert!(head.to_ascii_lowercase().contains("multipart/alternative"));
    assert_eq!(parts.len(), 2, "{}", got.data);
    assert!(parts[0].0.to_ascii_lowercase().contains("text/plain"));
    assert!(parts[1].0.to_ascii_lowercase().contains("text/html"));
    let (text, html) = (&parts[0].1, &parts[1].1);
    assert!(text.contains("payments 5xx at 3.2/s"), "{text}");
    assert!(text.contains("team=<db & infra>"), "{text}");
    assert!(
        text.contains("http://lookout.example:9800/explore?query="),
        "{text}"
    );
    assert!(html.contains("<!DOCTYPE html>"), "{html}");
    assert!(html.contains("team=&lt;db &amp; infra&gt;"), "{html}");
    assert!(html.contains("payments 5xx at 3.2&#x2f;s"), "{html}");
}

#[tokio::test]
async fn authenticates_and_renders_chinese_with_overrides() {
    let (addr, mut rx) = smtp_server(Script { auth: true, ..OK }).await;
    let cfg = config(&format!(
        r#"
to: ops@example.com
from: lookout@example.com
smarthost: "{addr}"
require_tls: false
auth_username: lookout
auth_password: hunter2
language: zh
headers:
  Subject: "告警 {{{{ alerts|length }}}} 条: {{{{ common_labels.alertname }}}}"
html: "<p>{{{{ alerts[0].summary }}}}</p>"
"#
    ));
    assert!(!format!("{cfg:?}").contains("hunter2"));
    let integration = build(&cfg);
    assert!(!integration.send_resolved());
    integration
        .send(&[notification()])
        .await
        .expect("delivered");
    let got = rx.recv().await.expect("a mail");
    assert_eq!(got.auth.as_deref(), Some(&b"\0lookout\0hunter2"[..]));
    let (head, parts) = parse_mime(&got.data);
    assert_eq!(
        header(&head, "Subject").as_deref(),
        Some("告警 1 条: HighErrorRate")
    );
    assert!(
        parts[0].1.contains("摘要: payments 5xx at 3.2/s"),
        "{}",
        parts[0].1
    );
    assert!(parts[0].1.contains("持续 5m"), "{}", parts[0].1);
    assert_eq!(parts[1].1.trim(), "<p>payments 5xx at 3.2&#x2f;s</p>");
}

#[tokio::test]
async fn smtp_answers_map_to_transient_and_permanent_failures() {
    let (addr, _rx) = smtp_server(Script {
        rcpt: "550 5.1.1 no such user",
        ..OK
    })
    .await;
    let yaml = |addr: String| {
        config(&format!(
            "{{to: a@example.com, from: l@example.com, smarthost: \"{addr}\", require_tls: false}}"
        ))
    };
    let err = build(&yaml(addr.to_string()))
        .send(&[notification()])
        .await
        .expect_err("550");
    assert_eq!(err.kind, FailureKind::Permanent, "{err:?}");
    assert_eq!(err.status, Some(550));
    assert!(err.message.contains("no such user"), "{err:?}");

    let (addr, _rx) = smtp_server(Script {
        data: "451 4.3.0 try later",
        ..OK
    })
    .await;
    let err = build(&yaml(addr.to_string()))
        .send(&[notification()])
        .await
        .expect_err("451");
    assert_eq!(err.kind, FailureKind::Transient, "{err:?}");
    assert_eq!(err.status, Some(451));

    // Nobody listening: a transient connection error.
    let free = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let err = build(&yaml(free.to_string()))
        .send(&[notification()])
        .await
        .expect_err("refused");
    assert_eq!(err.kind, FailureKind::Transient, "{err:?}");
    assert_eq!(err.status, None);
}

#[tokio::test]
async fn a_server_quoting_the_password_does_not_put_it_in_the_error() {
    let (addr, _rx) = smtp_server(Script {
        auth: true,
        rcpt: "550 5.7.1 relay denied for lookout/hunter2-pw \x1b[31mgo away",
        ..OK
    })
    .await;
    let cfg = config(&format!(
        "{{to: a@example.com, from: l@example.com, smarthost: \"{addr}\", require_tls: false, auth_username: lookout, auth_password: hunter2-pw}}"
    ));
    let err = build(&cfg).send(&[notification()]).await.expect_err("550");
    assert_eq!(err.status, Some(550), "{err:?}");
    assert!(
        err.message.contains("relay denied for lookout/<secret>"),
        "{err:?}"
    );
    assert!(!err.message.contains("hunter2"), "{err:?}");
    assert!(!err.message.contains('\x1b'), "{err:?}");
}

#[tokio::test]
async fn required_tls_is_not_skipped_when_the_server_lacks_starttls() {
    let (addr, mut rx) = smtp_server(OK).await;
    let cfg = config(&format!(
        "{{to: a@example.com, from: l@example.com, smarthost: \"{addr}\"}}"
    ));
    assert!(cfg.require_tls);
    let err = build(&cfg)
        .send(&[notification()])
        .await
        .expect_err("no STARTTLS");
    assert_eq!(err.kind, FailureKind::Permanent, "{err:?}");
    assert!(
        err.message.to_ascii_lowercase().contains("starttls"),
        "{err:?}"
    );
    assert!(rx.try_recv().is_err(), "no mail may go out in plain text");
}

#[test]
fn validation_names_every_problem() {
    let cfg = config(
        r#"
to: "ok@example.com, not an address"
from: ""
smarthost: "smtp.example.com"
auth_password: secret
headers:
  From: x@example.com
  "Bad Name": x
  X-Multi: "a\nb"
  X-Tmpl: "{{ oops"
html: "{% if %}"
title: "{{ status|nope }}"
"#,
    );
    let errors = cfg.validate("alerting.receivers[0].email_configs[0]");
    let p = "alerting.receivers[0].email_configs[0]";
    let expect = [
        format!("{p}.to: address 2"),
        format!("{p}.from: missing sender"),
        format!("{p}.smarthost:"),
        format!("{p}.auth_password: needs auth_username"),
        format!("{p}.headers.From: set by the notifier"),
        format!("{p}.headers.Bad Name: not a valid header name"),
        format!("{p}.headers.X-Multi: must be one line"),
        format!("{p}.headers.X-Tmpl: syntax error"),
        format!("{p}.html: syntax error"),
        format!("{p}.title: unknown filter"),
    ];
    for e in &expect {
        assert!(
            errors.iter().any(|got| got.starts_with(e.as_str())),
            "missing {e:?} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expect.len(), "{errors:#?}");
    assert!(!errors.iter().any(|e| e.contains("secret")), "{errors:#?}");

    let good = config(
        "{to: a@x.org, from: b@x.org, smarthost: 'smtp.x.org:587', auth_username: u, auth_password: p}",
    );
    assert_eq!(good.validate("e"), Vec::<String>::new());
    assert_eq!(split_smarthost("[::1]:25"), Some(("::1".into(), 25)));
    assert_eq!(split_smarthost("host:0"), None);
    assert_eq!(split_smarthost("host:x"), None);
}

#[test]
fn unknown_fields_are_rejected() {
    let err = serde_yaml::from_str::<EmailConfig>(
        "{to: a@x.org, from: b@x.org, smarthost: 'h:25', smtp_password: p}",
    )
    .expect_err("unknown field");
    assert!(err.to_string().contains("smtp_password"), "{err}");
}
