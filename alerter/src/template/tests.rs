//! Renders of every format in both languages, escaping, links, digests and overrides.

use super::*;
use crate::model::{Alert, Evidence};
use crate::notify::testing::labels;

const NOW: i64 = 1_136_214_545_000; // 2006-01-02 15:09:05 UTC
const START: i64 = 1_136_214_245_000; // 2006-01-02 15:04:05 UTC

fn firing(name: &str, service: &str) -> Alert {
    Alert {
        labels: labels(&[
            ("alertname", name),
            ("severity", "critical"),
            ("service", service),
        ]),
        annotations: labels(&[("summary", &format!("{service} errors at 1.234k"))]),
        starts_at_ms: START,
        ends_at_ms: Some(NOW + 60_000),
        updated_at_ms: NOW,
        generator_url: String::new(),
        evidence: Evidence {
            expr: Some(r#"sum(rate(errors{code=~"5.."}[5m])) > 1"#.into()),
            logs_query: None,
            value: Some(1234.5),
            trace_ids: vec!["0af7651916cd43dd8448eb211c80319c".into()],
        },
    }
}

fn resolved(name: &str) -> Alert {
    Alert {
        labels: labels(&[("alertname", name), ("severity", "warning")]),
        annotations: labels(&[("description", "disk almost full")]),
        starts_at_ms: START - 3_600_000,
        ends_at_ms: Some(START),
        updated_at_ms: START,
        generator_url: String::new(),
        evidence: Evidence {
            logs_query: Some("service:disk AND severity>=error".into()),
            value: Some(12.0),
            ..Evidence::default()
        },
    }
}

fn notification(alerts: Vec<Alert>) -> Notification {
    Notification {
        receiver: "oncall".into(),
        group_key: "{}:{alertname=\"HighErrorRate\"}".into(),
        group_labels: labels(&[("alertname", "HighErrorRate")]),
        alerts,
        external_url: "http://lookout.example:9800/".into(),
        now_ms: NOW,
    }
}

fn render(lang: Language, format: Format, ns: &[Notification]) -> Rendered {
    Templates::new(lang)
        .render(format, ns, &TemplateOverrides::default())
        .expect("render")
}

const FORMATS: [Format; 5] = [
    Format::DingTalkMarkdown,
    Format::WeComMarkdown,
    Format::WeComText,
    Format::EmailHtml,
    Format::EmailText,
];

/// HTML-escaped text as the email HTML part carries it.
fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;")
}

#[test]
fn builtin_templates_compile() {
    let t = Templates::new(Language::En);
    assert!(t.builtin_errors.is_empty(), "{:?}", t.builtin_errors);
}

#[test]
fn every_format_in_both_languages_carries_every_required_item() {
    let n = notification(vec![
        firing("HighErrorRate", "payments"),
        resolved("DiskFull"),
    ]);
    let l = links(&n.alerts[0], &n.external_url, NOW);
    let logs2 = links(&n.alerts[1], &n.external_url, NOW)
        .logs
        .expect("logs link");
    for lang in [Language::En, Language::Zh] {
        let w = context::words(lang);
        for format in FORMATS {
            let r = render(lang, format, std::slice::from_ref(&n));
            let text = r.text();
            let ctx = format!("{lang:?} {format:?}:\n{text}");
            let esc = |s: &str| {
                if format == Format::EmailHtml {
                    html_escape(s)
                } else {
                    s.to_string()
                }
            };
            assert_eq!(r.sections.len(), 2, "{ctx}");
            assert_eq!(r.title, format!("[{}:1] HighErrorRate", w.firing), "{ctx}");
            // Status of each alert, severity, summary (annotation, then description).
            assert!(r.sections[0].contains(w.firing), "{ctx}");
            assert!(r.sections[1].contains(w.resolved), "{ctx}");
            assert!(r.sections[0].contains("critical"), "{ctx}");
            assert!(r.sections[1].contains("warning"), "{ctx}");
            assert!(r.sections[0].contains("payments errors at 1.234k"), "{ctx}");
            assert!(r.sections[1].contains("disk almost full"), "{ctx}");
            // Labels, humanized value.
            assert!(r.sections[0].contains(&esc("service=payments")), "{ctx}");
            assert!(r.sections[0].contains("1.234k"), "{ctx}");
            assert!(
                r.sections[1].contains(">12<") || r.sections[1].contains(" 12"),
                "{ctx}"
            );
            // Since when and for how long; resolved at.
            assert!(r.sections[0].contains("2006-01-02 15:04:05 UTC"), "{ctx}");
            assert!(r.sections[0].contains(&format!("{} 5m", w.for_)), "{ctx}");
            assert!(r.sections[1].contains("2006-01-02 14:04:05 UTC"), "{ctx}");
            assert!(r.sections[1].contains(&format!("{} 1h", w.for_)), "{ctx}");
            assert!(r.sections[1].contains(w.resolved_at), "{ctx}");
            assert!(!r.sections[0].contains(w.resolved_at), "{ctx}");
            // Links: query, example trace, failing traces, logs, alerts page.
            for url in [
                l.query.as_deref().expect("query link"),
                l.traces[0].as_str(),
                l.failing_traces.as_deref().expect("traces link"),
                l.logs.as_deref().expect("logs link"),
            ] {
                assert!(r.sections[0].contains(&esc(url)), "{url} missing in {ctx}");
            }
            assert!(r.sections[1].contains(&esc(&logs2)), "{ctx}");
            assert!(r
                .text()
                .contains(&esc("http://lookout.example:9800/alerts")));
            assert!(
                !r.header.contains("merged") && !r.header.contains("合并"),
                "{ctx}"
            );
            // The pieces join into the whole message.
            assert_eq!(
                text,
                format!("{}{}{}{}", r.header, r.sections[0], r.sections[1], r.footer)
            );
        }
    }
}

#[test]
fn chinese_words_in_chinese_messages() {
    let n = notification(vec![firing("HighErrorRate", "payments")]);
    let r = render(Language::Zh, Format::DingTalkMarkdown, &[n]);
    let text = r.text();
    for word in [
        "告警",
        "级别",
        "摘要",
        "当前值",
        "开始时间",
        "持续 5m",
        "标签",
        "查询",
        "链路",
        "日志",
    ] {
        assert!(text.contains(word), "{word} missing:\n{text}");
    }
    assert!(!text.contains("Severity"));
}

#[test]
fn resolved_only_notification_says_resolved() {
    let n = notification(vec![resolved("DiskFull")]);
    let r = render(Language::Zh, Format::WeComMarkdown, &[n]);
    assert_eq!(r.title, "[恢复] HighErrorRate");
    assert!(
        r.header.contains(r#"<font color="info">恢复</font>"#),
        "{}",
        r.header
    );
    let r = render(
        Language::En,
        Format::WeComMarkdown,
        &[notification(vec![firing("A", "b")])],
    );
    assert!(r.header.contains(r#"<font color="warning">FIRING</font>"#));
}

#[test]
fn html_escapes_label_values_and_summaries() {
    let mut a = firing("X", "payments");
    a.labels
        .insert("evil".into(), "<script>alert(1)</script>".into());
    a.annotations
        .insert("summary".into(), "<img src=x onerror=alert(1)>".into());
    let n = notification(vec![a]);
    let r = render(Language::En, Format::EmailHtml, std::slice::from_ref(&n));
    let html = r.text();
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "{html}"
    );
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    // The text part is not escaped, and neither is the subject.
    let r = render(Language::En, Format::EmailText, &[n]);
    assert!(r.text().contains("evil=<script>alert(1)</script>"));
}

#[test]
fn digest_header_counts_merged_notifications_and_heads_each_group() {
    let mut second = notification(vec![resolved("DiskFull")]);
    second.group_labels = labels(&[("alertname", "DiskFull")]);
    let ns = [
        notification(vec![
            firing("HighErrorRate", "a"),
            firing("HighErrorRate", "b"),
        ]),
        second,
    ];
    let r = render(Language::En, Format::DingTalkMarkdown, &ns);
    assert!(
        r.header.contains("2 notifications were merged"),
        "{}",
        r.header
    );
    assert_eq!(r.sections.len(), 3);
    assert!(r.sections[0].contains("Group: HighErrorRate (alerts: 2)"));
    assert!(!r.sections[1].contains("Group:"));
    assert!(r.sections[2].contains("Group: DiskFull (alerts: 1)"));
    assert_eq!(r.title, "[FIRING:2] HighErrorRate, DiskFull");

    let r = render(Language::Zh, Format::WeComText, &ns);
    assert!(r.header.contains("合并了 2 条通知"), "{}", r.header);

    // Many groups: the title names the first three and counts the rest.
    let many: Vec<Notification> = (0..5)
        .map(|i| {
            let mut n = notification(vec![firing(&format!("A{i}"), "s")]);
            n.group_labels = labels(&[("alertname", &format!("A{i}"))]);
            n
        })
        .collect();
    let r = render(Language::En, Format::DingTalkMarkdown, &many);
    assert_eq!(r.title, "[FIRING:5] A0, A1, A2 +2");
    assert_eq!(r.sections.len(), 5);
}

#[test]
fn overrides_replace_title_and_body_and_language() {
    let n = notification(vec![firing("HighErrorRate", "payments")]);
    let t = Templates::new(Language::En);
    let o = TemplateOverrides {
        language: None,
        title: Some("{{ status|upper }} {{ common_labels.alertname }}".into()),
        text: Some(
            "{% for a in alerts %}{{ a.labels.service }} {{ a.value|humanize }} {{ a.starts_at|time }} {{ a.links.alerts }} {{ 'a b'|urlencode }}{% endfor %}"
                .into(),
        ),
    };
    let r = t
        .render(Format::DingTalkMarkdown, std::slice::from_ref(&n), &o)
        .expect("render");
    assert_eq!(r.title, "FIRING HighErrorRate");
    assert_eq!(
        r.sections,
        vec![
            "payments 1.234k 2006-01-02 15:04:05 UTC http://lookout.example:9800/alerts a%20b"
                .to_string()
        ]
    );
    assert_eq!(r.header, "");
    assert_eq!(r.footer, "");

    // Language only: the built-in templates in Chinese.
    let o = TemplateOverrides {
        language: Some(Language::Zh),
        ..TemplateOverrides::default()
    };
    let r = t
        .render(Format::DingTalkMarkdown, std::slice::from_ref(&n), &o)
        .expect("render");
    assert!(r.title.starts_with("[告警:1]"));

    // A custom HTML body is autoescaped too.
    let mut evil = n.clone();
    evil.alerts[0]
        .labels
        .insert("service".into(), "<b>x</b>".into());
    let o = TemplateOverrides {
        text: Some("<p>{{ alerts[0].labels.service }}</p>".into()),
        ..TemplateOverrides::default()
    };
    let r = t.render(Format::EmailHtml, &[evil], &o).expect("render");
    assert_eq!(r.text(), "<p>&lt;b&gt;x&lt;&#x2f;b&gt;</p>");
}

#[test]
fn runtime_errors_in_custom_templates_are_errors_not_panics() {
    let n = notification(vec![firing("A", "b")]);
    let o = TemplateOverrides {
        text: Some("{{ alerts|nosuchfilter }}".into()),
        ..TemplateOverrides::default()
    };
    let err = Templates::new(Language::En)
        .render(Format::WeComText, &[n], &o)
        .expect_err("unknown filter");
    assert!(err.contains("unknown filter"), "{err}");
    let err = Templates::new(Language::En)
        .render(Format::WeComText, &[], &TemplateOverrides::default())
        .expect_err("empty");
    assert!(err.contains("no notifications"));
}

#[test]
fn check_source_reports_syntax_errors_with_lines_and_unknown_filters() {
    assert_eq!(
        Templates::check_source("{{ status }} {{ alerts|length }}"),
        Ok(())
    );
    assert_eq!(
        Templates::check_source("{% for a in alerts %}{{ a.value|humanize }}{% endfor %}"),
        Ok(())
    );
    let err = Templates::check_source("ok\n{% if status %}\nno end").expect_err("syntax");
    assert!(err.starts_with("syntax error"), "{err}");
    assert!(err.contains("line"), "{err}");
    let err = Templates::check_source("{{ status }\n").expect_err("syntax");
    assert!(err.starts_with("syntax error"), "{err}");
    let err = Templates::check_source("{{ status|nope }}").expect_err("filter");
    assert!(err.starts_with("unknown filter"), "{err}");
    // Data-dependent failures are not config errors.
    assert_eq!(Templates::check_source("{{ alerts[7].labels.x }}"), Ok(()));
}

#[test]
fn digest_note_heads_every_format_in_both_languages() {
    let mut second = notification(vec![resolved("DiskFull")]);
    second.group_labels = labels(&[("alertname", "DiskFull")]);
    let ns = [
        notification(vec![firing("HighErrorRate", "payments")]),
        second,
    ];
    for lang in [Language::En, Language::Zh] {
        let ctx = context::build(&ns, lang);
        assert!(ctx.digest);
        for format in FORMATS {
            let r = render(lang, format, &ns);
            assert_eq!(r.sections.len(), 2, "{lang:?} {format:?}");
            let note = if format == Format::EmailHtml {
                ctx.digest_note.replace('\'', "&#x27;")
            } else {
                ctx.digest_note.clone()
            };
            assert!(
                r.header.contains(&note),
                "{lang:?} {format:?}: {}",
                r.header
            );
            assert!(!r.sections[0].contains(&note), "{lang:?} {format:?}");
            assert!(r.sections[1].contains("DiskFull"), "{lang:?} {format:?}");
        }
    }
}

#[test]
fn sections_never_contain_another_alert() {
    let n = notification(vec![firing("A", "one"), firing("B", "two")]);
    for format in FORMATS {
        let r = render(Language::En, format, std::slice::from_ref(&n));
        assert!(r.sections[0].contains("service=one"), "{format:?}");
        assert!(!r.sections[0].contains("service=two"), "{format:?}");
        assert!(r.sections[1].contains("service=two"), "{format:?}");
        assert!(!r.header.contains("service="), "{format:?}");
    }
}

#[test]
fn one_typical_alert_fits_the_smallest_platform_limits() {
    // WeCom: markdown 4,096 bytes, text 2,048 bytes. One alert with a dozen labels, three
    // traces and every link must fit with its header and footer, so splitting at alert
    // boundaries is always enough for ordinary alerts.
    let mut a = firing("HighErrorRate", "payments-gateway");
    for i in 0..10 {
        a.labels
            .insert(format!("label_{i}"), format!("value-{i}-with-some-length"));
    }
    a.evidence.trace_ids = vec!["0af7651916cd43dd8448eb211c80319c".into(); 3];
    let n = notification(vec![a]);
    for lang in [Language::En, Language::Zh] {
        for (format, limit) in [(Format::WeComText, 2048), (Format::WeComMarkdown, 4096)] {
            let r = render(lang, format, std::slice::from_ref(&n));
            let len = r.text().len();
            assert!(len < limit, "{lang:?} {format:?}: {len} bytes");
        }
    }
}
