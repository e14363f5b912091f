//! The data a template sees (documented in docs/alerting.md, "Templates"): one
//! notification's (or a digest's) status, labels and alerts, with every alert's summary,
//! value, times and UI links worked out here so templates stay declarative.

use serde::Serialize;

use crate::model::{Alert, LabelSet, Notification};
use crate::template::links::{links, Links};
use crate::template::Language;

/// One alert as templates see it. Times are Unix milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct AlertCtx {
    /// `firing` or `resolved` (at the notification's time).
    pub status: &'static str,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    pub starts_at: i64,
    /// When it resolved; none while firing.
    pub ends_at: Option<i64>,
    /// How long it has been firing (firing) or fired (resolved), in milliseconds.
    pub duration: i64,
    /// The value that made the condition true (`evidence.value`), none when unknown.
    pub value: Option<f64>,
    pub alertname: String,
    /// Annotation `summary`, else `description`, else the alert name.
    pub summary: String,
    /// Label `severity`, or "".
    pub severity: String,
    pub fingerprint: String,
    pub generator_url: String,
    /// The rule's PromQL expression or log query, when known.
    pub expr: Option<String>,
    pub logs_query: Option<String>,
    pub links: Links,
}

/// One notification (one aggregation group at one flush).
#[derive(Clone, Debug, Serialize)]
pub struct NotificationCtx {
    pub status: &'static str,
    pub receiver: String,
    pub group_key: String,
    pub group_labels: LabelSet,
    pub common_labels: LabelSet,
    pub common_annotations: LabelSet,
    pub alerts: Vec<AlertCtx>,
    pub firing_count: usize,
    pub resolved_count: usize,
    pub external_url: String,
    /// A short name for the group: its group label values, else the common alert name.
    pub subject: String,
}

/// The whole render context. For one notification the top-level fields are that
/// notification's; for a digest they cover all its notifications.
#[derive(Clone, Debug, Serialize)]
pub struct Context {
    pub status: &'static str,
    pub receiver: String,
    pub group_labels: LabelSet,
    pub common_labels: LabelSet,
    pub common_annotations: LabelSet,
    pub alerts: Vec<AlertCtx>,
    pub firing_count: usize,
    pub resolved_count: usize,
    pub external_url: String,
    pub subject: String,
    pub notifications: Vec<NotificationCtx>,
    /// More than one notification merged into this message by the rate limiter.
    pub digest: bool,
    /// The digest explanation in the message's language (empty unless `digest`).
    pub digest_note: String,
    pub language: Language,
    /// When the message was made (the latest notification's flush time).
    pub now: i64,
    /// The built-in templates' words in the message's language.
    pub t: &'static Words,
}

/// Words of the built-in templates.
#[derive(Debug, Serialize)]
pub struct Words {
    pub firing: &'static str,
    pub resolved: &'static str,
    pub severity: &'static str,
    pub summary: &'static str,
    pub value: &'static str,
    pub since: &'static str,
    #[serde(rename = "for")]
    pub for_: &'static str,
    pub resolved_at: &'static str,
    pub labels: &'static str,
    pub links: &'static str,
    pub query: &'static str,
    pub trace: &'static str,
    pub failing_traces: &'static str,
    pub logs: &'static str,
    pub all_alerts: &'static str,
    pub group: &'static str,
    pub alerts: &'static str,
}

static EN: Words = Words {
    firing: "FIRING",
    resolved: "RESOLVED",
    severity: "Severity",
    summary: "Summary",
    value: "Value",
    since: "Since",
    for_: "for",
    resolved_at: "Resolved at",
    labels: "Labels",
    links: "Links",
    query: "Query",
    trace: "Trace",
    failing_traces: "Failing traces",
    logs: "Logs",
    all_alerts: "All alerts",
    group: "Group",
    alerts: "alerts",
};

static ZH: Words = Words {
    firing: "告警",
    resolved: "恢复",
    severity: "级别",
    summary: "摘要",
    value: "当前值",
    since: "开始时间",
    for_: "持续",
    resolved_at: "恢复时间",
    labels: "标签",
    links: "链接",
    query: "查询",
    trace: "链路",
    failing_traces: "失败链路",
    logs: "日志",
    all_alerts: "全部告警",
    group: "分组",
    alerts: "告警数",
};

pub fn words(language: Language) -> &'static Words {
    match language {
        Language::En => &EN,
        Language::Zh => &ZH,
    }
}

fn digest_note(language: Language, n: usize) -> String {
    match language {
        Language::En => format!(
            "{n} notifications were merged into this message because of the robot's rate limit."
        ),
        Language::Zh => format!("因机器人发送频率限制，本消息合并了 {n} 条通知。"),
    }
}

fn status(firing: bool) -> &'static str {
    if firing {
        "firing"
    } else {
        "resolved"
    }
}

pub fn alert_ctx(alert: &Alert, external_url: &str, now_ms: i64) -> AlertCtx {
    let resolved = alert.is_resolved_at(now_ms);
    let ends_at = if resolved { alert.ends_at_ms } else { None };
    let end = ends_at.unwrap_or(now_ms);
    let summary = ["summary", "description"]
        .iter()
        .filter_map(|k| alert.annotations.get(*k))
        .find(|s| !s.trim().is_empty())
        .cloned()
        .unwrap_or_else(|| alert.name().to_string());
    AlertCtx {
        status: status(!resolved),
        labels: alert.labels.clone(),
        annotations: alert.annotations.clone(),
        starts_at: alert.starts_at_ms,
        ends_at,
        duration: end.saturating_sub(alert.starts_at_ms).max(0),
        value: alert.evidence.value,
        alertname: alert.name().to_string(),
        summary,
        severity: alert.labels.get("severity").cloned().unwrap_or_default(),
        fingerprint: alert.fingerprint().to_string(),
        generator_url: alert.generator_url.clone(),
        expr: alert.evidence.expr.clone(),
        logs_query: alert.evidence.logs_query.clone(),
        links: links(alert, external_url, now_ms),
    }
}

fn subject(group_labels: &LabelSet, common_labels: &LabelSet, receiver: &str) -> String {
    let values: Vec<&str> = group_labels
        .values()
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .collect();
    if !values.is_empty() {
        return values.join(" ");
    }
    common_labels
        .get("alertname")
        .cloned()
        .unwrap_or_else(|| receiver.to_string())
}

fn notification_ctx(n: &Notification) -> NotificationCtx {
    let base = n.external_url.trim_end_matches('/');
    let alerts: Vec<AlertCtx> = n
        .alerts
        .iter()
        .map(|a| alert_ctx(a, base, n.now_ms))
        .collect();
    let firing_count = alerts.iter().filter(|a| a.status == "firing").count();
    let common_labels = n.common_labels();
    NotificationCtx {
        status: status(firing_count > 0),
        receiver: n.receiver.clone(),
        group_key: n.group_key.clone(),
        subject: subject(&n.group_labels, &common_labels, &n.receiver),
        group_labels: n.group_labels.clone(),
        common_labels,
        common_annotations: n.common_annotations(),
        resolved_count: alerts.len() - firing_count,
        firing_count,
        alerts,
        external_url: base.to_string(),
    }
}

fn common(sets: &[&LabelSet]) -> LabelSet {
    let Some((first, rest)) = sets.split_first() else {
        return LabelSet::new();
    };
    let mut out = (*first).clone();
    for set in rest {
        out.retain(|k, v| set.get(k) == Some(v));
    }
    out
}

/// How many groups a digest's subject names before `+N`.
const DIGEST_SUBJECTS: usize = 3;

/// The context of a message for `notifications` (one, or several merged into a digest).
pub fn build(notifications: &[Notification], language: Language) -> Context {
    let ns: Vec<NotificationCtx> = notifications.iter().map(notification_ctx).collect();
    let alerts: Vec<AlertCtx> = ns.iter().flat_map(|n| n.alerts.iter().cloned()).collect();
    let firing_count = alerts.iter().filter(|a| a.status == "firing").count();
    let digest = ns.len() > 1;
    let group_labels = common(&ns.iter().map(|n| &n.group_labels).collect::<Vec<_>>());
    let common_labels = common(&alerts.iter().map(|a| &a.labels).collect::<Vec<_>>());
    let common_annotations = common(&alerts.iter().map(|a| &a.annotations).collect::<Vec<_>>());
    let receiver = ns.first().map(|n| n.receiver.clone()).unwrap_or_default();
    let subject = if digest {
        // Titles and subjects stay short: the first few groups, then how many more.
        let mut subjects: Vec<&str> = Vec::new();
        for n in &ns {
            if !subjects.contains(&n.subject.as_str()) {
                subjects.push(&n.subject);
            }
        }
        let more = subjects.len().saturating_sub(DIGEST_SUBJECTS);
        subjects.truncate(DIGEST_SUBJECTS);
        let mut s = subjects.join(", ");
        if more > 0 {
            s.push_str(&format!(" +{more}"));
        }
        s
    } else {
        ns.first().map(|n| n.subject.clone()).unwrap_or_default()
    };
    Context {
        status: status(firing_count > 0),
        external_url: ns
            .first()
            .map(|n| n.external_url.clone())
            .unwrap_or_default(),
        receiver,
        group_labels,
        common_labels,
        common_annotations,
        resolved_count: alerts.len() - firing_count,
        firing_count,
        alerts,
        subject,
        digest,
        digest_note: if digest {
            digest_note(language, ns.len())
        } else {
            String::new()
        },
        notifications: ns,
        language,
        now: notifications.iter().map(|n| n.now_ms).max().unwrap_or(0),
        t: words(language),
    }
}
