//! Prometheus text exposition format 0.0.4, parsed line by line into flat samples.
//!
//! The format already spells histograms and summaries out as `_bucket{le}`, `_sum`, `_count`
//! and `{quantile}` lines, so every sample line becomes one series here; `# TYPE` and
//! `# HELP` become [`MetricMetadata`] per family.
//!
//! Why not `prometheus_parse::Scrape`: its label parser splits on `,` and `=` without honouring
//! quotes or escapes (a value `"a,b"` or `"say \"hi\""` is mangled), its name pattern `\w+`
//! silently drops names with colons (recording-rule names), it folds `_bucket` lines into a
//! `HashMap` and loses their order, and it cannot tell an explicit timestamp from its default,
//! which `honor_timestamps` needs. The tests cross-check this parser against it on input it
//! handles correctly.

use std::collections::HashMap;

use store::{MetricMetadata, MetricType};

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedSample {
    /// The metric name (becomes `__name__`).
    pub name: String,
    /// Labels in exposition order, values unescaped.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Explicit timestamp (milliseconds), when the line has one.
    pub timestamp_ms: Option<i64>,
}

/// A whole exposition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposition {
    pub samples: Vec<ParsedSample>,
    /// One entry per family with a `# TYPE` or `# HELP` line, in first-seen order.
    pub metadata: Vec<MetricMetadata>,
}

/// A line that is not valid text format; the whole scrape fails, as in Prometheus.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}: {text:?}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
    /// The offending line, cut to a readable length.
    pub text: String,
}

/// Parses a text-format body.
pub fn parse(body: &str) -> Result<Exposition, ParseError> {
    let mut out = Exposition::default();
    let mut family_index: HashMap<String, usize> = HashMap::new();
    for (i, raw) in body.lines().enumerate() {
        let line = raw.trim();
        let fail = |reason: String| ParseError {
            line: i + 1,
            reason,
            text: line.chars().take(200).collect(),
        };
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            parse_comment(comment, &mut out.metadata, &mut family_index).map_err(fail)?;
            continue;
        }
        out.samples.push(parse_sample(line).map_err(fail)?);
    }
    Ok(out)
}

fn parse_comment(
    comment: &str,
    metadata: &mut Vec<MetricMetadata>,
    family_index: &mut HashMap<String, usize>,
) -> Result<(), String> {
    let comment = comment.trim_start();
    let (keyword, rest) = match comment.split_once(char::is_whitespace) {
        Some((k, r)) => (k, r.trim_start()),
        None => return Ok(()),
    };
    if keyword != "HELP" && keyword != "TYPE" {
        // any other comment is free text
        return Ok(());
    }
    let (name, text) = match rest.split_once(char::is_whitespace) {
        Some((n, t)) => (n, t.trim_start()),
        None => (rest, ""),
    };
    if !is_metric_name(name) {
        return Err(format!("invalid metric name {name:?} in # {keyword}"));
    }
    let idx = *family_index.entry(name.to_string()).or_insert_with(|| {
        metadata.push(MetricMetadata {
            metric_family: name.to_string(),
            metric_type: MetricType::Unknown,
            help: String::new(),
            unit: String::new(),
        });
        metadata.len() - 1
    });
    let entry = &mut metadata[idx];
    if keyword == "HELP" {
        entry.help = unescape_help(text);
    } else {
        entry.metric_type = match text.trim() {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" => MetricType::Unknown,
            other => return Err(format!("unknown metric type {other:?} for {name}")),
        };
    }
    Ok(())
}

/// HELP text escapes only backslash and newline.
fn unescape_help(text: &str) -> String {
    if !text.contains('\\') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn parse_sample(line: &str) -> Result<ParsedSample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or_else(|| "expected a value after the metric name".to_string())?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = parse_labels(after_brace, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value_text = fields
        .next()
        .ok_or_else(|| "missing sample value".to_string())?;
    let value = parse_value(value_text)?;
    let timestamp_ms = match fields.next() {
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| format!("invalid timestamp {t:?}"))?,
        ),
        None => None,
    };
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected text {extra:?} after the timestamp"));
    }
    Ok(ParsedSample {
        name: name.to_string(),
        labels,
        value,
        timestamp_ms,
    })
}

/// Parses `name="value",...}` and returns what follows the closing brace.
fn parse_labels<'a>(mut s: &'a str, labels: &mut Vec<(String, String)>) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Ok(after);
        }
        let name_end = s
            .find(|c: char| c == '=' || c.is_whitespace())
            .ok_or_else(|| "unterminated label set".to_string())?;
        let name = &s[..name_end];
        if !is_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        s = s[name_end..].trim_start();
        s = s
            .strip_prefix('=')
            .ok_or_else(|| format!("expected '=' after label {name:?}"))?;
        s = s.trim_start();
        s = s
            .strip_prefix('"')
            .ok_or_else(|| format!("expected a quoted value for label {name:?}"))?;
        let (value, after) = unescape_label_value(s)
            .ok_or_else(|| format!("unterminated value for label {name:?}"))?;
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("duplicate label {name:?}"));
        }
        labels.push((name.to_string(), value));
        s = after.trim_start();
        if let Some(after_comma) = s.strip_prefix(',') {
            s = after_comma;
        } else if !s.starts_with('}') {
            return Err(format!("expected ',' or '}}' after label {name:?}"));
        }
    }
}

/// Reads a label value up to its closing quote, resolving `\\`, `\"` and `\n`.
fn unescape_label_value(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, '"')) => out.push('"'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => return None,
            },
            c => out.push(c),
        }
    }
    None
}

/// Go's `ParseFloat` spellings: `NaN`, `+Inf`, `-Inf`, `Inf` and ordinary numbers.
fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "NaN" | "nan" => Ok(f64::NAN),
        "+Inf" | "Inf" | "+inf" | "inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        _ => text
            .parse::<f64>()
            .map_err(|_| format!("invalid sample value {text:?}")),
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn flat(e: &Exposition) -> Vec<String> {
        e.samples
            .iter()
            .map(|s| {
                let labels: Vec<String> =
                    s.labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
                let ts = s.timestamp_ms.map(|t| format!(" @{t}")).unwrap_or_default();
                format!("{}{{{}}} {}{ts}", s.name, labels.join(","), s.value)
            })
            .collect()
    }

    const EXPOSITION: &str = r#"
# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# A normal comment.
# TYPE temperature gauge
temperature 21.5
# HELP untyped_thing no TYPE line for this one
untyped_thing{a="b"} -7e-3
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320
# HELP rpc_duration_seconds A summary of the RPC duration in seconds.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds{quantile="0.99"} 76656
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
"#;

    #[test]
    fn counter_gauge_untyped_histogram_summary() {
        let e = parse(EXPOSITION).unwrap();
        assert_eq!(
            flat(&e),
            vec![
                r#"http_requests_total{method="post",code="200"} 1027 @1395066363000"#,
                r#"http_requests_total{method="post",code="400"} 3 @1395066363000"#,
                "temperature{} 21.5",
                r#"untyped_thing{a="b"} -0.007"#,
                r#"http_request_duration_seconds_bucket{le="0.05"} 24054"#,
                r#"http_request_duration_seconds_bucket{le="0.1"} 33444"#,
                r#"http_request_duration_seconds_bucket{le="+Inf"} 144320"#,
                "http_request_duration_seconds_sum{} 53423",
                "http_request_duration_seconds_count{} 144320",
                r#"rpc_duration_seconds{quantile="0.5"} 4773"#,
                r#"rpc_duration_seconds{quantile="0.99"} 76656"#,
                "rpc_duration_seconds_sum{} 17560473",
                "rpc_duration_seconds_count{} 2693",
            ]
        );
        let meta: Vec<(&str, MetricType, &str)> = e
            .metadata
            .iter()
            .map(|m| (m.metric_family.as_str(), m.metric_type, m.help.as_str()))
            .collect();
        assert_eq!(
            meta,
            vec![
                (
                    "http_requests_total",
                    MetricType::Counter,
                    "The total number of HTTP requests."
                ),
                ("temperature", MetricType::Gauge, ""),
                (
                    "untyped_thing",
                    MetricType::Unknown,
                    "no TYPE line for this one"
                ),
                (
                    "http_request_duration_seconds",
                    MetricType::Histogram,
                    "A histogram of the request duration."
                ),
                (
                    "rpc_duration_seconds",
                    MetricType::Summary,
                    "A summary of the RPC duration in seconds."
                ),
            ]
        );
    }

    #[test]
    fn escaped_label_values_and_help() {
        let e = parse(
            "# HELP m line one\\nline \\\\two\nm{path=\"C:\\\\dir\",msg=\"say \\\"hi\\\", a=b}\\n\",} 1\n",
        )
        .unwrap();
        assert_eq!(
            e.samples[0].labels,
            vec![
                ("path".to_string(), "C:\\dir".to_string()),
                ("msg".to_string(), "say \"hi\", a=b}\n".to_string())
            ]
        );
        assert_eq!(e.metadata[0].help, "line one\nline \\two");
    }

    #[test]
    fn special_values_timestamps_and_colon_names() {
        let e = parse("job:rate5m{job=\"a\"} NaN\nx +Inf -5\ny -Inf 1700000000123\n").unwrap();
        assert_eq!(e.samples[0].name, "job:rate5m");
        assert!(e.samples[0].value.is_nan());
        assert_eq!(
            (e.samples[1].value, e.samples[1].timestamp_ms),
            (f64::INFINITY, Some(-5))
        );
        assert_eq!(
            (e.samples[2].value, e.samples[2].timestamp_ms),
            (f64::NEG_INFINITY, Some(1_700_000_000_123))
        );
    }

    #[test]
    fn malformed_lines_name_the_line() {
        for (body, want) in [
            ("ok 1\nbad{a=\"b\" 1\n", "line 2"),
            ("m{a=b} 1", "expected a quoted value"),
            ("m 1 2 3", "unexpected text"),
            ("m abc", "invalid sample value"),
            ("m 1 1.5", "invalid timestamp"),
            ("m{a=\"1\",a=\"2\"} 1", "duplicate label"),
            ("m{1a=\"x\"} 1", "invalid label name"),
            ("m", "expected a value"),
            ("# TYPE m histogramm", "unknown metric type"),
        ] {
            let err = parse(body).unwrap_err().to_string();
            assert!(err.contains(want), "{body:?}: {err}");
        }
    }

    #[test]
    fn agrees_with_prometheus_parse_on_simple_input() {
        // prometheus-parse folds histogram/summary lines and reorders them; compare as sets
        // of (name, sorted labels, value) after re-expanding its representation
        let theirs =
            prometheus_parse::Scrape::parse(EXPOSITION.lines().map(|l| Ok(l.to_string()))).unwrap();
        let mut expanded: Vec<String> = Vec::new();
        for s in &theirs.samples {
            let mut base: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            base.sort();
            let fmt = |name: &str, labels: &[(String, String)], v: f64| {
                let mut labels = labels.to_vec();
                labels.sort();
                format!("{name}{labels:?} {v}")
            };
            match &s.value {
                prometheus_parse::Value::Histogram(buckets) => {
                    for b in buckets {
                        let mut l = base.clone();
                        let le = if b.less_than.is_infinite() {
                            "+Inf".to_string()
                        } else {
                            b.less_than.to_string()
                        };
                        l.push(("le".into(), le));
                        expanded.push(fmt(&format!("{}_bucket", s.metric), &l, b.count));
                    }
                }
                prometheus_parse::Value::Summary(qs) => {
                    for q in qs {
                        let mut l = base.clone();
                        l.push(("quantile".into(), q.quantile.to_string()));
                        expanded.push(fmt(&s.metric, &l, q.count));
                    }
                }
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => expanded.push(fmt(&s.metric, &base, *v)),
            }
        }
        let ours: Vec<String> = parse(EXPOSITION)
            .unwrap()
            .samples
            .iter()
            .map(|s| {
                let mut l = s.labels.clone();
                l.sort();
                format!("{}{l:?} {}", s.name, s.value)
            })
            .collect();
        expanded.sort();
        let mut ours_sorted = ours;
        ours_sorted.sort();
        assert_eq!(ours_sorted, expanded);
    }
}
