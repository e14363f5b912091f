//! The benchmark's rule set: Prometheus rule files over the [`crate::fleet`] series, as a
//! platform team writes them: one group per service (`job`), and for every handler of it
//! twenty rules (recording and alerting) mixing `rate`, `sum by`, `histogram_quantile`,
//! ratios, `offset`, `topk`, `count` and threshold comparisons. 10 jobs x 5 handlers x 20 =
//! 1,000 rules; each selects one job's handler, so a rule reads 100 instances x 1-10 series
//! (a few hundred to a thousand series, 20 samples each over `[5m]` at 15 s).
//!
//! The alert thresholds are set so that a realistic share of the candidates fires or is
//! pending on the fleet's data (request rates log-uniform over 0.1-200/s per handler, 5xx
//! about 2 %, median latencies log-uniform over 5-300 ms): roughly 3-20 % per alert, a few
//! thousand alerts in all. A rule set where nothing matches would not measure the alert
//! bookkeeping, one where everything fires would measure mostly that.

use std::fmt::Write as _;

use crate::fleet::{HANDLERS, JOBS};

/// Rules generated for every (job, handler) pair.
#[cfg(test)]
pub const RULES_PER_HANDLER: usize = TEMPLATES.len();

/// `(kind, name, for, expr)`; `{S}` is replaced by the pair's selector body
/// (`job="..", handler=".."`), `{J}`/`{H}` by the job and handler.
const TEMPLATES: &[(Kind, &str, &str, &str)] = &[
    (Kind::Record, "job_handler:http_requests:rate5m", "", "sum by (job, handler) (rate(http_requests_total{{S}}[5m]))"),
    (Kind::Record, "job_handler_code:http_requests:rate5m", "", "sum by (job, handler, code) (rate(http_requests_total{{S}}[5m]))"),
    (Kind::Record, "instance_handler:http_requests:rate5m", "", "sum by (instance, handler) (rate(http_requests_total{{S}}[5m]))"),
    (Kind::Record, "job_handler:http_errors:ratio_rate5m", "", "sum by (job, handler) (rate(http_requests_total{{S}, code=~\"5..\"}[5m])) / sum by (job, handler) (rate(http_requests_total{{S}}[5m]))"),
    (Kind::Record, "job_handler:http_request_duration_seconds:p50_5m", "", "histogram_quantile(0.5, sum by (job, handler, le) (rate(http_request_duration_seconds_bucket{{S}}[5m])))"),
    (Kind::Record, "job_handler:http_request_duration_seconds:p90_5m", "", "histogram_quantile(0.9, sum by (job, handler, le) (rate(http_request_duration_seconds_bucket{{S}}[5m])))"),
    (Kind::Record, "job_handler:http_request_duration_seconds:p99_5m", "", "histogram_quantile(0.99, sum by (job, handler, le) (rate(http_request_duration_seconds_bucket{{S}}[5m])))"),
    (Kind::Record, "region_handler:http_request_duration_seconds:p99_5m", "", "histogram_quantile(0.99, sum by (job, region, handler, le) (rate(http_request_duration_seconds_bucket{{S}}[5m])))"),
    (Kind::Record, "job_handler:http_request_duration_seconds:mean5m", "", "sum by (job, handler) (rate(http_request_duration_seconds_sum{{S}}[5m])) / sum by (job, handler) (rate(http_request_duration_seconds_count{{S}}[5m]))"),
    (Kind::Record, "job_handler:http_requests:top3_instances", "", "topk(3, sum by (job, handler, instance) (rate(http_requests_total{{S}}[5m])))"),
    (Kind::Record, "job_handler_code:http_requests:series", "", "count by (job, handler, code) (http_requests_total{{S}})"),
    (Kind::Alert, "HighErrorRatio", "5m", "sum by (job, handler, instance) (rate(http_requests_total{{S}, code=~\"5..\"}[5m])) / sum by (job, handler, instance) (rate(http_requests_total{{S}}[5m])) > 0.03"),
    (Kind::Alert, "HighLatencyP99", "10m", "histogram_quantile(0.99, sum by (job, handler, instance, le) (rate(http_request_duration_seconds_bucket{{S}}[5m]))) > 2"),
    (Kind::Alert, "HighLatencyP90", "5m", "histogram_quantile(0.9, sum by (job, handler, instance, le) (rate(http_request_duration_seconds_bucket{{S}}[5m]))) > 1"),
    (Kind::Alert, "LowTraffic", "10m", "sum by (job, handler, instance) (rate(http_requests_total{{S}}[5m])) < 0.2"),
    (Kind::Alert, "Many503", "2m", "sum by (job, handler, instance) (increase(http_requests_total{{S}, code=\"503\"}[5m])) > 150"),
    (Kind::Alert, "MethodBurst", "1m", "sum by (job, handler, instance, method) (rate(http_requests_total{{S}}[1m])) > 120"),
    (Kind::Alert, "NotFoundSpike", "5m", "sum by (job, handler) (rate(http_requests_total{{S}, code=\"404\"}[5m])) > 1.2 * sum by (job, handler) (rate(http_requests_total{{S}, code=\"404\"}[5m] offset 5m))"),
    (Kind::Alert, "SlowMeanLatency", "5m", "max by (job, handler, instance) (rate(http_request_duration_seconds_sum{{S}}[5m]) / rate(http_request_duration_seconds_count{{S}}[5m])) > 0.25"),
    (Kind::Alert, "ErrorRatioRecorded", "0s", "job_handler:http_errors:ratio_rate5m{{S}} > 0.025"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Record,
    Alert,
}

/// What was generated: the YAML text and how many rules of each kind.
#[derive(Clone, Debug)]
pub struct RuleSet {
    pub yaml: String,
    pub groups: usize,
    pub rules: usize,
    pub recording: usize,
    pub alerting: usize,
}

/// YAML single-quoted scalar: the only escape is `''` for `'`.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One rule file: a group per job (the first `jobs` of [`JOBS`]) evaluated every
/// `interval_s` seconds, [`RULES_PER_HANDLER`] rules per handler.
pub fn generate(jobs: usize, interval_s: u64) -> RuleSet {
    let mut yaml = String::from(
        "# generated by lookout-bench rules: one group per job, twenty rules per handler\ngroups:\n",
    );
    let mut set = RuleSet {
        yaml: String::new(),
        groups: 0,
        rules: 0,
        recording: 0,
        alerting: 0,
    };
    for job in JOBS.iter().take(jobs) {
        set.groups += 1;
        let _ = writeln!(
            yaml,
            "  - name: {}\n    interval: {interval_s}s\n    rules:",
            quoted(job)
        );
        for handler in HANDLERS {
            let selector = format!("job=\"{job}\", handler=\"{handler}\"");
            for (kind, name, for_, expr) in TEMPLATES {
                let expr = expr.replace("{S}", &selector);
                set.rules += 1;
                match kind {
                    Kind::Record => {
                        set.recording += 1;
                        let _ = writeln!(
                            yaml,
                            "      - record: {name}\n        expr: {}",
                            quoted(&expr)
                        );
                    }
                    Kind::Alert => {
                        set.alerting += 1;
                        let _ = writeln!(
                            yaml,
                            "      - alert: {name}\n        expr: {}\n        for: {for_}\n        labels: {{ severity: warning, team: {} }}\n        annotations:\n          summary: {}",
                            quoted(&expr),
                            quoted(job),
                            quoted(&format!("{name} on {{{{ $labels.instance }}}} ({handler}): {{{{ $value | humanize }}}}"))
                        );
                    }
                }
            }
        }
    }
    set.yaml = yaml;
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousand_rules_for_the_full_fleet() {
        let s = generate(10, 15);
        assert_eq!(s.groups, 10);
        assert_eq!(s.rules, 1000);
        assert_eq!(s.recording + s.alerting, 1000);
        assert_eq!(s.recording, 10 * 5 * 11);
        assert_eq!(s.yaml.matches("- record:").count(), s.recording);
        assert_eq!(s.yaml.matches("- alert:").count(), s.alerting);
        assert_eq!(s.yaml.matches("    interval: 15s").count(), 10);
    }

    #[test]
    fn every_selector_is_filled_and_the_mix_is_there() {
        let s = generate(2, 15);
        assert_eq!(s.rules, 2 * 5 * RULES_PER_HANDLER);
        assert!(!s.yaml.contains("{S}"), "unreplaced selector");
        for needle in [
            "rate(",
            "sum by (",
            "histogram_quantile(",
            " > ",
            " < ",
            "offset 5m",
            "topk(3",
        ] {
            assert!(s.yaml.contains(needle), "{needle} missing");
        }
        // every expression selects one job's handler (except the recording-rule alert,
        // which selects the recorded series the same way)
        for line in s
            .yaml
            .lines()
            .filter(|l| l.trim_start().starts_with("expr:"))
        {
            assert!(
                line.contains("job=\"api-gateway\"") || line.contains("job=\"checkout\""),
                "{line}"
            );
            assert!(line.contains("handler=\""), "{line}");
        }
    }

    /// Groups run concurrently: two rules (of one group or of two) recording the same series
    /// would collide ("duplicate sample", "out of order sample"). Every recording keeps `job`
    /// (or `instance`, unique per job) and `handler` in its first grouping.
    #[test]
    fn recordings_never_collide() {
        for (kind, name, _, expr) in TEMPLATES {
            if *kind != Kind::Record {
                continue;
            }
            let by = expr
                .split("by (")
                .nth(1)
                .and_then(|rest| rest.split(')').next())
                .unwrap_or_else(|| panic!("{name}: no grouping"));
            let labels: Vec<&str> = by.split(',').map(str::trim).collect();
            assert!(labels.contains(&"handler"), "{name}: by ({by})");
            assert!(
                labels.contains(&"job") || labels.contains(&"instance"),
                "{name}: by ({by})"
            );
        }
    }

    #[test]
    fn quoting_is_yaml_single_quoted() {
        assert_eq!(quoted("a 'b' c"), "'a ''b'' c'");
        let s = generate(1, 15);
        // templates in annotations keep their braces
        assert!(s.yaml.contains("{{ $labels.instance }}"));
        assert!(s.yaml.contains("{{ $value | humanize }}"));
    }
}
