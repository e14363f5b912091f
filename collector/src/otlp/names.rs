//! Name translation from OpenTelemetry to Prometheus, as the OpenTelemetry "Prometheus and
//! OpenMetrics compatibility" specification describes it: metric names are sanitised to
//! `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names to `[a-zA-Z_][a-zA-Z0-9_]*`, runs of `_` collapse to
//! one, and UCUM units become Prometheus unit words appended as a suffix (before `_total`).

/// What kind of Prometheus family a metric becomes; only the suffix rules depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    Counter,
    Gauge,
    /// Histograms and summaries: `_bucket`/`_sum`/`_count` are added by the converter.
    Other,
}

/// Replaces every character outside `allowed` with `_` and collapses runs of `_`.
fn sanitize_with(raw: &str, allowed: impl Fn(char) -> bool, out: &mut String) {
    let mut prev_underscore = out.ends_with('_');
    for c in raw.chars() {
        let c = if allowed(c) { c } else { '_' };
        if c == '_' {
            if prev_underscore {
                continue;
            }
            prev_underscore = true;
        } else {
            prev_underscore = false;
        }
        out.push(c);
    }
}

fn is_metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Sanitises an attribute key into a Prometheus label name. A leading digit gets a `key_`
/// prefix (as the OpenTelemetry Collector does), since `_1` alone would read as reserved-ish
/// noise. Returns `None` for keys with nothing usable in them.
pub fn sanitize_label_name(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len() + 4);
    if raw.starts_with(|c: char| c.is_ascii_digit()) {
        out.push_str("key_");
    }
    sanitize_with(raw, is_label_char, &mut out);
    if out.is_empty() || out == "_" {
        return None;
    }
    Some(out)
}

/// Converts a UCUM unit as OpenTelemetry uses it into the Prometheus unit word(s), or `None`
/// when the unit adds no suffix (empty, only `{annotations}`, or `1` on a non-gauge).
pub fn prometheus_unit(unit: &str, kind: NameKind) -> Option<String> {
    let stripped = strip_annotations(unit);
    let stripped = stripped.trim();
    if stripped.is_empty() {
        return None;
    }
    if stripped == "1" {
        return (kind == NameKind::Gauge).then(|| "ratio".to_string());
    }
    let (main, per) = match stripped.split_once('/') {
        Some((m, p)) => (m.trim(), Some(p.trim())),
        None => (stripped, None),
    };
    let mut out = String::new();
    if !main.is_empty() && main != "1" {
        sanitize_with(
            main_unit_word(main).unwrap_or(main),
            is_metric_char,
            &mut out,
        );
    }
    if let Some(per) = per.filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push('_');
        }
        out.push_str("per_");
        sanitize_with(per_unit_word(per).unwrap_or(per), is_metric_char, &mut out);
    }
    let out = out.trim_matches('_').to_string();
    (!out.is_empty()).then_some(out)
}

/// Removes `{...}` annotations (UCUM curly-brace comments); unbalanced braces drop the rest.
fn strip_annotations(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    let mut depth = 0usize;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The specification's table of UCUM units to Prometheus words.
fn main_unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

/// Units after `/` read as singular time words (`m/s` -> `meters_per_second`).
fn per_unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// Builds the Prometheus family name for an OpenTelemetry metric: sanitised name, then the
/// unit suffix unless the name already contains it, then `_total` for counters (never twice).
/// Histogram/summary suffixes are added by the caller.
pub fn metric_family_name(name: &str, unit: &str, kind: NameKind) -> String {
    let mut out = String::with_capacity(name.len() + 16);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    sanitize_with(name, is_metric_char, &mut out);
    if kind == NameKind::Counter {
        if let Some(base) = out.strip_suffix("_total") {
            let len = base.len();
            out.truncate(len);
        }
    }
    if let Some(unit) = prometheus_unit(unit, kind) {
        if !contains_token_run(&out, &unit) {
            if !out.ends_with('_') {
                out.push('_');
            }
            out.push_str(&unit);
        }
    }
    if kind == NameKind::Counter {
        if !out.ends_with('_') {
            out.push('_');
        }
        out.push_str("total");
    }
    if out.is_empty() {
        // an empty metric name is rejected by the converter before this matters, but never
        // hand back a name the store would refuse for a different reason
        out.push('_');
    }
    out
}

/// Whether `needle` (one or more `_`-joined words) appears in `name` as whole `_`-separated
/// words, so `request_duration_seconds` already "contains" `seconds`.
fn contains_token_run(name: &str, needle: &str) -> bool {
    name == needle
        || name.starts_with(&format!("{needle}_"))
        || name.ends_with(&format!("_{needle}"))
        || name.contains(&format!("_{needle}_"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_sanitised_and_collapsed() {
        assert_eq!(
            metric_family_name("http.server.request-count", "", NameKind::Gauge),
            "http_server_request_count"
        );
        assert_eq!(metric_family_name("a..b__c", "", NameKind::Gauge), "a_b_c");
        assert_eq!(
            metric_family_name("2xx.responses", "", NameKind::Gauge),
            "_2xx_responses"
        );
        assert_eq!(
            metric_family_name("ns:metric", "", NameKind::Gauge),
            "ns:metric"
        );
        assert_eq!(
            metric_family_name("température", "", NameKind::Gauge),
            "temp_rature"
        );
    }

    #[test]
    fn unit_suffixes_follow_the_spec_table() {
        assert_eq!(
            metric_family_name("http.server.duration", "s", NameKind::Other),
            "http_server_duration_seconds"
        );
        assert_eq!(
            metric_family_name("latency", "ms", NameKind::Gauge),
            "latency_milliseconds"
        );
        assert_eq!(
            metric_family_name("rx", "By", NameKind::Counter),
            "rx_bytes_total"
        );
        assert_eq!(
            metric_family_name("mem", "MiBy", NameKind::Gauge),
            "mem_mebibytes"
        );
        assert_eq!(
            metric_family_name("cpu.utilization", "1", NameKind::Gauge),
            "cpu_utilization_ratio"
        );
        assert_eq!(
            metric_family_name("speed", "m/s", NameKind::Gauge),
            "speed_meters_per_second"
        );
        assert_eq!(
            metric_family_name("throughput", "By/s", NameKind::Gauge),
            "throughput_bytes_per_second"
        );
        assert_eq!(
            metric_family_name("temp", "Cel", NameKind::Gauge),
            "temp_celsius"
        );
        assert_eq!(
            metric_family_name("disk.usage", "%", NameKind::Gauge),
            "disk_usage_percent"
        );
    }

    #[test]
    fn annotations_and_dimensionless_units_add_nothing() {
        assert_eq!(
            metric_family_name("packets", "{packet}", NameKind::Counter),
            "packets_total"
        );
        assert_eq!(
            metric_family_name("requests", "1", NameKind::Counter),
            "requests_total"
        );
        assert_eq!(
            metric_family_name("rate", "{request}/s", NameKind::Gauge),
            "rate_per_second"
        );
        assert_eq!(metric_family_name("things", "", NameKind::Other), "things");
        assert_eq!(
            metric_family_name("odd", "{unclosed", NameKind::Gauge),
            "odd"
        );
    }

    #[test]
    fn suffixes_are_never_doubled() {
        assert_eq!(
            metric_family_name("requests_total", "", NameKind::Counter),
            "requests_total"
        );
        assert_eq!(
            metric_family_name("duration_seconds", "s", NameKind::Other),
            "duration_seconds"
        );
        assert_eq!(
            metric_family_name("sent_bytes_total", "By", NameKind::Counter),
            "sent_bytes_total"
        );
        assert_eq!(
            metric_family_name("io_time", "s", NameKind::Counter),
            "io_time_seconds_total"
        );
        assert_eq!(
            metric_family_name("seconds_left", "s", NameKind::Gauge),
            "seconds_left"
        );
        assert_eq!(
            metric_family_name("x_ratio", "1", NameKind::Gauge),
            "x_ratio"
        );
        // unit inserted before _total
        assert_eq!(
            metric_family_name("io_total", "s", NameKind::Counter),
            "io_seconds_total"
        );
    }

    #[test]
    fn unknown_units_are_sanitised_words() {
        assert_eq!(metric_family_name("x", "req", NameKind::Gauge), "x_req");
        assert_eq!(
            metric_family_name("x", "foo.bar", NameKind::Gauge),
            "x_foo_bar"
        );
    }

    #[test]
    fn label_names_are_sanitised() {
        assert_eq!(
            sanitize_label_name("http.method").as_deref(),
            Some("http_method")
        );
        assert_eq!(sanitize_label_name("a..b").as_deref(), Some("a_b"));
        assert_eq!(sanitize_label_name("1st").as_deref(), Some("key_1st"));
        assert_eq!(sanitize_label_name("__name__").as_deref(), Some("_name_"));
        assert_eq!(sanitize_label_name("").as_deref(), None);
        assert_eq!(sanitize_label_name("..").as_deref(), None);
    }
}
