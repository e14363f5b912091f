//! Reading the servers' own rule-evaluation metrics from their `/metrics` text, per rule
//! group: `prometheus_rule_group_last_duration_seconds` / `lookout_rule_group_last_duration_seconds`
//! (how long the group's last evaluation took) and `..._rule_evaluations_total` (to tell that
//! every group has evaluated again since the previous reading, so one reading is one
//! complete evaluation round).

use std::collections::BTreeMap;

/// The metric names of one server.
#[derive(Clone, Copy, Debug)]
pub struct RuleMetrics {
    pub last_duration: &'static str,
    pub evaluations: &'static str,
}

pub const PROMETHEUS: RuleMetrics = RuleMetrics {
    last_duration: "prometheus_rule_group_last_duration_seconds",
    evaluations: "prometheus_rule_evaluations_total",
};

pub const LOOKOUT: RuleMetrics = RuleMetrics {
    last_duration: "lookout_rule_group_last_duration_seconds",
    evaluations: "lookout_rule_evaluations_total",
};

/// The value of label `label` in a `{a="x",b="y"}` label block, unescaping `\"`, `\\`, `\n`.
fn label_value(block: &str, label: &str) -> Option<String> {
    let mut rest = block;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        let eq = rest.find('=')?;
        let name = rest[..eq].trim();
        let after = rest[eq + 1..].strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        if name == label {
            return Some(value);
        }
        rest = &after[end + 1..];
    }
}

/// `name{...rule_group="G"...} value` lines of `exposition`, summed per rule group (samples
/// of one group with other labels, e.g. Prometheus's per-rule-type counters, add up).
pub fn per_group(exposition: &str, name: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let Some(block) = rest.strip_prefix('{') else {
            continue;
        };
        let Some(close) = block.rfind('}') else {
            continue;
        };
        let Some(group) = label_value(&block[..close], "rule_group") else {
            continue;
        };
        // `value` or `value timestamp`
        let Some(value) = block[close + 1..]
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        *out.entry(group).or_insert(0.0) += value;
    }
    out
}

/// One reading of a server's rule metrics.
#[derive(Clone, Debug, Default)]
pub struct Reading {
    pub durations: BTreeMap<String, f64>,
    pub evaluations: BTreeMap<String, f64>,
}

impl Reading {
    pub fn parse(exposition: &str, m: RuleMetrics) -> Reading {
        Reading {
            durations: per_group(exposition, m.last_duration),
            evaluations: per_group(exposition, m.evaluations),
        }
    }

    /// Sum of every group's last evaluation duration, seconds.
    pub fn total_duration(&self) -> f64 {
        self.durations.values().sum()
    }

    /// Whether every one of `groups` has evaluated since `prev` (its evaluation counter
    /// grew), i.e. this reading's durations all come from evaluations after `prev`.
    pub fn all_advanced_since(&self, prev: &Reading, groups: usize) -> bool {
        self.evaluations.len() >= groups
            && self.durations.len() >= groups
            && self
                .evaluations
                .iter()
                .all(|(g, n)| prev.evaluations.get(g).is_none_or(|p| n > p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROM: &str = r#"# HELP prometheus_rule_group_last_duration_seconds The duration of the last rule group evaluation.
# TYPE prometheus_rule_group_last_duration_seconds gauge
prometheus_rule_group_last_duration_seconds{rule_group="/tmp/rules.yaml;api-gateway"} 0.25
prometheus_rule_group_last_duration_seconds{rule_group="/tmp/rules.yaml;checkout"} 0.5
prometheus_rule_group_last_duration_seconds_other{rule_group="/tmp/rules.yaml;checkout"} 9
prometheus_rule_evaluations_total{rule_group="/tmp/rules.yaml;api-gateway"} 300
prometheus_rule_evaluations_total{rule_group="/tmp/rules.yaml;checkout"} 200
"#;

    #[test]
    fn sums_per_group_and_ignores_other_names() {
        let r = Reading::parse(PROM, PROMETHEUS);
        assert_eq!(r.durations.len(), 2);
        assert_eq!(r.durations["/tmp/rules.yaml;checkout"], 0.5);
        assert_eq!(r.total_duration(), 0.75);
        assert_eq!(r.evaluations["/tmp/rules.yaml;api-gateway"], 300.0);
    }

    #[test]
    fn label_values_with_escapes_and_other_labels() {
        let text = "lookout_rule_group_last_duration_seconds{a=\"x\\\"y\",rule_group=\"f;g \\\"q\\\"\"} 1.5 1700000000000\n";
        let g = per_group(text, LOOKOUT.last_duration);
        assert_eq!(g.get("f;g \"q\""), Some(&1.5), "{g:?}");
        assert!(per_group(
            "lookout_rule_group_last_duration_seconds 3\n",
            LOOKOUT.last_duration
        )
        .is_empty());
    }

    #[test]
    fn a_round_needs_every_group_to_advance() {
        let prev = Reading::parse(PROM, PROMETHEUS);
        let one = Reading::parse(&PROM.replace("} 300", "} 400"), PROMETHEUS);
        assert!(!one.all_advanced_since(&prev, 2));
        let both = Reading::parse(
            &PROM.replace("} 300", "} 400").replace("} 200", "} 300"),
            PROMETHEUS,
        );
        assert!(both.all_advanced_since(&prev, 2));
        // a group missing from the exposition is not a complete round
        assert!(!both.all_advanced_since(&prev, 3));
    }
}
