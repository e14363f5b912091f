//! Links from a message back to the Lookout UI (the routes the UI serves, based at
//! `server.external_url`): the alert's query over its window, example failing traces and
//! the failing-traces search, matching logs, the alert list.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;

use crate::model::Alert;

/// Everything but RFC 3986's unreserved characters is escaped in a query value, so a
/// PromQL `{code=~"5.."}` or a log query `a AND b` survives every chat client.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// How far before the alert started its links look, so the graph shows the lead-up.
const BEFORE_MS: i64 = 30 * 60 * 1000;
/// How far after a resolved alert ended its links look.
const AFTER_MS: i64 = 5 * 60 * 1000;

/// The UI links of one alert. Absent links have no evidence to point at (no expression,
/// no service label, no trace ids).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Links {
    /// `{base}/explore?query=<expr>&start=&end=`: the rule's PromQL over the window.
    pub query: Option<String>,
    /// `{base}/traces/<id>`: up to 3 example failing traces.
    pub traces: Vec<String>,
    /// `{base}/traces?service=<svc>&error=true&start=&end=`.
    pub failing_traces: Option<String>,
    /// `{base}/logs?query=<q>&start=&end=`: the rule's log query, or the service's errors.
    pub logs: Option<String>,
    /// `{base}/alerts`.
    pub alerts: String,
}

/// Percent-encodes one query-string value.
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// The alert's service: the `service` label, else `service_name`.
pub fn service_of(alert: &Alert) -> Option<&str> {
    alert
        .labels
        .get("service")
        .or_else(|| alert.labels.get("service_name"))
        .map(String::as_str)
        .filter(|s| !s.is_empty())
}

/// The links of `alert` as of `now_ms`, under `external_url` (a trailing `/` is ignored).
/// The window runs from 30 minutes before the alert started to now, or, for a resolved
/// alert, to 5 minutes after it ended.
pub fn links(alert: &Alert, external_url: &str, now_ms: i64) -> Links {
    let base = external_url.trim_end_matches('/');
    let start_ms = alert.starts_at_ms.saturating_sub(BEFORE_MS);
    let end_ms = match alert.ends_at_ms {
        Some(end) if end <= now_ms => end.saturating_add(AFTER_MS),
        _ => now_ms,
    }
    .max(start_ms);
    let window = format!(
        "start={}&end={}",
        start_ms.div_euclid(1000),
        // Round the end up so the last sample is inside the window.
        (end_ms + 999).div_euclid(1000)
    );
    let service = service_of(alert);

    let query = alert
        .evidence
        .expr
        .as_deref()
        .filter(|e| !e.is_empty())
        .map(|expr| format!("{base}/explore?query={}&{window}", encode(expr)));
    let traces = alert
        .evidence
        .trace_ids
        .iter()
        .filter(|id| !id.is_empty())
        .take(3)
        .map(|id| format!("{base}/traces/{}", encode(id)))
        .collect();
    let failing_traces =
        service.map(|svc| format!("{base}/traces?service={}&error=true&{window}", encode(svc)));
    let logs_query = match alert.evidence.logs_query.as_deref() {
        Some(q) if !q.is_empty() => Some(q.to_string()),
        _ => service.map(|svc| format!("service:{svc} AND severity>=error")),
    };
    let logs = logs_query.map(|q| format!("{base}/logs?query={}&{window}", encode(&q)));
    Links {
        query,
        traces,
        failing_traces,
        logs,
        alerts: format!("{base}/alerts"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Evidence, LabelSet};

    fn alert(labels: &[(&str, &str)], evidence: Evidence, ends: Option<i64>) -> Alert {
        Alert {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<LabelSet>(),
            annotations: LabelSet::new(),
            starts_at_ms: 10_000_000,
            ends_at_ms: ends,
            updated_at_ms: 0,
            generator_url: String::new(),
            evidence,
        }
    }

    #[test]
    fn firing_alert_links_cover_the_window_up_to_now_and_encode_queries() {
        let a = alert(
            &[("alertname", "HighErrorRate"), ("service", "pay ments")],
            Evidence {
                expr: Some(r#"sum(rate(http_requests_total{code=~"5.."}[5m])) > 1"#.into()),
                value: Some(3.0),
                trace_ids: vec![
                    "a".repeat(32),
                    "b".repeat(32),
                    "c".repeat(32),
                    "d".repeat(32),
                ],
                ..Evidence::default()
            },
            None,
        );
        let l = links(&a, "http://lookout.example:9800/", 12_000_500);
        assert_eq!(
            l.query.as_deref(),
            Some(
                "http://lookout.example:9800/explore?query=sum%28rate%28http_requests_total%7Bcode%3D~%225..%22%7D%5B5m%5D%29%29%20%3E%201&start=8200&end=12001"
            )
        );
        assert_eq!(l.traces.len(), 3);
        assert_eq!(
            l.traces[0],
            format!("http://lookout.example:9800/traces/{}", "a".repeat(32))
        );
        assert_eq!(
            l.failing_traces.as_deref(),
            Some("http://lookout.example:9800/traces?service=pay%20ments&error=true&start=8200&end=12001")
        );
        assert_eq!(
            l.logs.as_deref(),
            Some("http://lookout.example:9800/logs?query=service%3Apay%20ments%20AND%20severity%3E%3Derror&start=8200&end=12001")
        );
        assert_eq!(l.alerts, "http://lookout.example:9800/alerts");
    }

    #[test]
    fn resolved_log_rule_alert_uses_its_query_and_ends_after_resolution() {
        let a = alert(
            &[
                ("alertname", "PaymentErrorLogs"),
                ("service_name", "payments"),
            ],
            Evidence {
                logs_query: Some("service:payments AND severity>=error".into()),
                value: Some(12.0),
                ..Evidence::default()
            },
            Some(11_000_000),
        );
        let l = links(&a, "http://x", 20_000_000);
        assert_eq!(l.query, None);
        assert_eq!(
            l.logs.as_deref(),
            Some("http://x/logs?query=service%3Apayments%20AND%20severity%3E%3Derror&start=8200&end=11300")
        );
        assert!(l.failing_traces.is_some());
        assert!(l.traces.is_empty());
    }

    #[test]
    fn no_service_no_evidence_only_the_alert_list() {
        let a = alert(&[("alertname", "X")], Evidence::default(), None);
        let l = links(&a, "http://x", 20_000_000);
        assert_eq!(
            l,
            Links {
                alerts: "http://x/alerts".into(),
                ..Links::default()
            }
        );
    }
}
