//! Pure helpers of the logs page: composing queries from clicked values, the page's URLs,
//! severity classes, record times and the histogram's bars. No reactive code here, so all of
//! it is unit-tested.

use std::collections::BTreeMap;

use leptos_router::params::ParamsMap;

use crate::chart::Bar;
use crate::fetch::enc;
use crate::time::query_url;

/// Severity ranges as the API names them, in the order the histogram stacks them bottom-up
/// (the worst at the bottom, where the eye finds it).
pub const SEVERITIES: [&str; 7] = [
    "fatal",
    "error",
    "warn",
    "info",
    "debug",
    "trace",
    "unspecified",
];

/// Records a search answers when the URL names no `limit`; the API's default and maximum.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 5000;

/// The `limit` choices the page offers.
pub const LIMITS: [usize; 5] = [50, 100, 500, 1000, 5000];

/// `limit` of the URL: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent or invalid.
pub fn limit_of(q: &ParamsMap) -> usize {
    q.get("limit")
        .and_then(|l| l.trim().parse::<usize>().ok())
        .filter(|l| (1..=MAX_LIMIT).contains(l))
        .unwrap_or(DEFAULT_LIMIT)
}

/// `direction` of the URL: `forward` (oldest first) or `backward` (newest first, the default).
pub fn forward_of(q: &ParamsMap) -> bool {
    q.get("direction")
        .is_some_and(|d| d.eq_ignore_ascii_case("forward"))
}

/// The log query of the URL, trimmed.
pub fn query_of(q: &ParamsMap) -> String {
    q.get("query")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The CSS class of a severity range (`error` -> `sev-error`); unknown names are unspecified.
pub fn severity_class(severity: &str) -> &'static str {
    match severity.to_ascii_lowercase().as_str() {
        "fatal" => "sev-fatal",
        "error" => "sev-error",
        "warn" | "warning" => "sev-warn",
        "info" => "sev-info",
        "debug" => "sev-debug",
        "trace" => "sev-trace",
        _ => "sev-unspecified",
    }
}

/// Whether `name` can be written as a field of the query language
/// (`[A-Za-z_][A-Za-z0-9_.-]*`, so `attr.http.route` can and `attr.a/b` cannot).
pub fn field_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A field value as the query language reads it exactly: bare when it is a plain word,
/// else quoted (`\"` and `\\` escaped). Wildcards are quoted too, so `a*` means the text `a*`.
pub fn quote_value(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | '@'))
        && !matches!(v, "AND" | "OR" | "NOT");
    if plain {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The term that selects records whose `field` is `value` (`negate`: that excludes them);
/// `None` for a field name the query language cannot write.
pub fn field_term(field: &str, value: &str, negate: bool) -> Option<String> {
    if !field_name_ok(field) {
        return None;
    }
    let sign = if negate { "-" } else { "" };
    Some(format!("{sign}{field}:{}", quote_value(value)))
}

/// `query` narrowed by `term` (AND). A query with `OR` is put in parentheses first, since
/// `AND` binds tighter (`a OR b x` would be `a OR (b AND x)`); a term already there is not
/// added twice; an empty or `*` query becomes the term.
pub fn add_term(query: &str, term: &str) -> String {
    let q = query.trim();
    if q.is_empty() || q == "*" {
        return term.to_string();
    }
    let has = |t: &str| {
        q == t
            || q.ends_with(&format!(" {t}"))
            || q.starts_with(&format!("{t} "))
            || q.contains(&format!(" {t} "))
    };
    if has(term) {
        return q.to_string();
    }
    if q.split_whitespace()
        .any(|w| w.trim_matches(['(', ')']) == "OR")
    {
        format!("({q}) {term}")
    } else {
        format!("{q} {term}")
    }
}

/// The 0-based character position an API query error names (`... at position 7`).
pub fn error_position(message: &str) -> Option<usize> {
    let i = message.rfind("at position ")?;
    let digits: String = message[i + "at position ".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A caret line under `query` pointing at character `pos` (at the end when past it).
pub fn caret_line(query: &str, pos: usize) -> String {
    let n = pos.min(query.chars().count());
    format!("{}^", " ".repeat(n))
}

/// `2024-05-01 10:00:00.123` for the API's `2024-05-01T10:00:00.123456789Z` (UTC, as the
/// rest of the UI shows times); anything else is shown as it came.
pub fn short_time(rfc3339: &str) -> String {
    let b = rfc3339.as_bytes();
    if b.len() >= 19 && b[10] == b'T' {
        let end = if b.len() >= 23 && b[19] == b'.' {
            23
        } else {
            19
        };
        if rfc3339.is_char_boundary(end) {
            return format!("{} {}", &rfc3339[..10], &rfc3339[11..end]);
        }
    }
    rfc3339.to_string()
}

/// Unix seconds of a decimal nanosecond string.
pub fn nanos_to_secs(nanos: &str) -> Option<f64> {
    nanos.parse::<u64>().ok().map(|n| n as f64 / 1e9)
}

/// One bucket of `/api/v1/logs/histogram?by=severity`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bucket {
    pub time_unix_nano: String,
    pub count: u64,
    #[serde(default)]
    pub by_severity: BTreeMap<String, u64>,
}

/// The histogram's stacked bars: per bucket, its severities in [`SEVERITIES`] order (names
/// the page does not know after them); a bucket counted without severities is one part.
pub fn bars_of(buckets: &[Bucket]) -> Vec<Bar> {
    buckets
        .iter()
        .filter_map(|b| {
            let t = nanos_to_secs(&b.time_unix_nano)?;
            let mut parts: Vec<(String, f64)> = SEVERITIES
                .iter()
                .filter_map(|s| b.by_severity.get(*s).map(|c| (s.to_string(), *c as f64)))
                .collect();
            parts.extend(
                b.by_severity
                    .iter()
                    .filter(|(k, _)| !SEVERITIES.contains(&k.as_str()))
                    .map(|(k, c)| (k.clone(), *c as f64)),
            );
            if parts.is_empty() && b.count > 0 {
                parts.push(("all".to_string(), b.count as f64));
            }
            Some(Bar { t, parts })
        })
        .collect()
}

/// `path` with the query parameters of `q`, `changes` applied (`None` removes a key).
pub fn url_with(path: &str, q: &ParamsMap, changes: &[(&str, Option<String>)]) -> String {
    let mut pairs: Vec<(String, String)> = q
        .clone()
        .into_iter()
        .filter(|(k, _)| !changes.iter().any(|(c, _)| c == k))
        .map(|(k, v)| (k.into_owned(), v))
        .collect();
    for (k, v) in changes {
        if let Some(v) = v {
            pairs.push((k.to_string(), v.clone()));
        }
    }
    query_url(path, &pairs)
}

/// The live-tail stream of `query` (new records only).
pub fn tail_url(query: &str) -> String {
    format!("/api/v1/logs/tail?query={}", enc(query))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> ParamsMap {
        let mut q = ParamsMap::new();
        for (k, v) in pairs {
            q.insert(k.to_string(), v.to_string());
        }
        q
    }

    #[test]
    fn clicked_values_narrow_the_query() {
        assert_eq!(add_term("", "service:checkout"), "service:checkout");
        assert_eq!(add_term(" * ", "service:checkout"), "service:checkout");
        assert_eq!(
            add_term("timeout", "service:checkout"),
            "timeout service:checkout"
        );
        // AND binds tighter than OR: the old query is grouped
        assert_eq!(
            add_term("a OR b", "severity:error"),
            "(a OR b) severity:error"
        );
        assert_eq!(add_term("(a OR b) c", "d"), "((a OR b) c) d");
        // already there: unchanged
        assert_eq!(add_term("x service:a", "service:a"), "x service:a");
        assert_eq!(add_term("service:a x", "service:a"), "service:a x");
        assert_eq!(add_term("service:a", "service:a"), "service:a");
        // a longer term that merely starts the same is not the term
        assert_eq!(add_term("service:ab", "service:a"), "service:ab service:a");
    }

    #[test]
    fn values_are_quoted_when_they_are_not_plain_words() {
        assert_eq!(quote_value("checkout"), "checkout");
        assert_eq!(quote_value("/api/v1/users"), "/api/v1/users");
        assert_eq!(quote_value("my svc"), "\"my svc\"");
        assert_eq!(quote_value("a*"), "\"a*\"");
        assert_eq!(quote_value("say \"hi\" \\o/"), "\"say \\\"hi\\\" \\\\o/\"");
        assert_eq!(quote_value(""), "\"\"");
        assert_eq!(quote_value("OR"), "\"OR\"");
        assert_eq!(quote_value("k:v"), "\"k:v\"");
        assert_eq!(
            field_term("attr.http.route", "/a b", false).as_deref(),
            Some("attr.http.route:\"/a b\"")
        );
        assert_eq!(
            field_term("severity", "error", true).as_deref(),
            Some("-severity:error")
        );
        assert_eq!(field_term("attr.a/b", "x", false), None);
        assert_eq!(field_term("1x", "x", false), None);
    }

    #[test]
    fn severities_map_to_classes() {
        assert_eq!(severity_class("error"), "sev-error");
        assert_eq!(severity_class("FATAL"), "sev-fatal");
        assert_eq!(severity_class("warning"), "sev-warn");
        assert_eq!(severity_class("info"), "sev-info");
        assert_eq!(severity_class("debug"), "sev-debug");
        assert_eq!(severity_class("trace"), "sev-trace");
        assert_eq!(severity_class("unspecified"), "sev-unspecified");
        assert_eq!(severity_class("<b>"), "sev-unspecified");
    }

    #[test]
    fn error_positions_and_carets() {
        let m = "invalid parameter \"query\": `AND` needs a term on both sides at position 7";
        assert_eq!(error_position(m), Some(7));
        assert_eq!(
            error_position("end time must not be before start time"),
            None
        );
        assert_eq!(caret_line("a AND b", 2), "  ^");
        assert_eq!(caret_line("数据 AND", 3), "   ^");
        assert_eq!(caret_line("ab", 9), "  ^");
    }

    #[test]
    fn times_are_shortened_to_milliseconds() {
        assert_eq!(
            short_time("2024-05-01T10:00:00.123456789Z"),
            "2024-05-01 10:00:00.123"
        );
        assert_eq!(short_time("2024-05-01T10:00:00Z"), "2024-05-01 10:00:00");
        assert_eq!(short_time("soon"), "soon");
        assert_eq!(nanos_to_secs("1714557600500000000"), Some(1_714_557_600.5));
        assert_eq!(nanos_to_secs("x"), None);
    }

    #[test]
    fn url_parameters() {
        let q = params(&[("query", "a"), ("limit", "500"), ("direction", "FORWARD")]);
        assert_eq!(limit_of(&q), 500);
        assert!(forward_of(&q));
        assert_eq!(query_of(&q), "a");
        let bad = params(&[("limit", "0"), ("direction", "up")]);
        assert_eq!(limit_of(&bad), DEFAULT_LIMIT);
        assert!(!forward_of(&bad));
        assert_eq!(limit_of(&params(&[("limit", "5001")])), DEFAULT_LIMIT);
        let u = url_with(
            "/logs",
            &params(&[("query", "a"), ("start", "now-1h")]),
            &[("query", Some("a b".into())), ("limit", None)],
        );
        assert_eq!(u, "/logs?start=now-1h&query=a%20b");
        assert_eq!(
            tail_url("service:x severity>=warn"),
            "/api/v1/logs/tail?query=service%3Ax%20severity%3E%3Dwarn"
        );
    }

    #[test]
    fn buckets_become_bars_stacked_worst_first() {
        let b = |t: &str, count: u64, sev: &[(&str, u64)]| Bucket {
            time_unix_nano: t.into(),
            count,
            by_severity: sev.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        };
        let bars = bars_of(&[
            b("60000000000", 5, &[("info", 3), ("error", 2)]),
            b("120000000000", 0, &[]),
            b("bad", 1, &[]),
            b("180000000000", 4, &[]),
        ]);
        assert_eq!(bars.len(), 3);
        assert_eq!(bars[0].t, 60.0);
        assert_eq!(
            bars[0].parts,
            vec![("error".to_string(), 2.0), ("info".to_string(), 3.0)]
        );
        assert!(bars[1].parts.is_empty());
        assert_eq!(bars[2].parts, vec![("all".to_string(), 4.0)]);
    }
}
