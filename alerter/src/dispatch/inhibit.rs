//! Inhibition as Alertmanager's `inhibit.Inhibitor.Mutes`: an alert matching a rule's target
//! matchers is muted while some firing alert matches the source matchers and has the same
//! values of the `equal` labels (a label missing on both sides counts as equal). An alert
//! that matches both sides never inhibits another that also matches both, so an alert
//! cannot inhibit itself.

use super::matchers::{all_match, Matcher};
use crate::model::{Alert, Fingerprint, LabelSet};

#[derive(Clone, Debug)]
pub struct InhibitRule {
    pub source: Vec<Matcher>,
    pub target: Vec<Matcher>,
    pub equal: Vec<String>,
}

impl InhibitRule {
    /// The fingerprint of an alert among `alerts` that inhibits `labels` through this
    /// rule, if any.
    fn inhibited_by<'a>(
        &self,
        labels: &LabelSet,
        alerts: impl Iterator<Item = &'a Alert>,
        now_ms: i64,
    ) -> Option<Fingerprint> {
        if !all_match(&self.target, labels) {
            return None;
        }
        let two_sided = all_match(&self.source, labels);
        for a in alerts {
            if a.is_resolved_at(now_ms) || !all_match(&self.source, &a.labels) {
                continue;
            }
            if self.equal.iter().any(|n| a.labels.get(n) != labels.get(n)) {
                continue;
            }
            if two_sided && all_match(&self.target, &a.labels) {
                continue;
            }
            return Some(a.fingerprint());
        }
        None
    }
}

/// The fingerprints of the alerts inhibiting `labels` under `rules` (the first per rule,
/// empty when not inhibited), among the alerts the dispatcher holds.
pub fn inhibited_by<'a>(
    rules: &[InhibitRule],
    labels: &LabelSet,
    alerts: impl Iterator<Item = &'a Alert> + Clone,
    now_ms: i64,
) -> Vec<Fingerprint> {
    let mut out: Vec<Fingerprint> = rules
        .iter()
        .filter_map(|r| r.inhibited_by(labels, alerts.clone(), now_ms))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::matchers::parse_matchers;
    use crate::model::{label_set, Evidence};

    fn alert(pairs: &[(&str, &str)], ends: Option<i64>) -> Alert {
        Alert {
            labels: label_set(pairs),
            annotations: LabelSet::new(),
            starts_at_ms: 0,
            ends_at_ms: ends,
            updated_at_ms: 0,
            generator_url: String::new(),
            evidence: Evidence::default(),
        }
    }

    fn rule(src: &str, tgt: &str, equal: &[&str]) -> InhibitRule {
        InhibitRule {
            source: parse_matchers(src).unwrap(),
            target: parse_matchers(tgt).unwrap(),
            equal: equal.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn firing_source_with_equal_labels_inhibits_target() {
        let rules = [rule("severity=critical", "severity=warning", &["service"])];
        let crit = alert(
            &[
                ("alertname", "Down"),
                ("severity", "critical"),
                ("service", "api"),
            ],
            None,
        );
        let warn = alert(
            &[
                ("alertname", "Slow"),
                ("severity", "warning"),
                ("service", "api"),
            ],
            None,
        );
        let other = alert(
            &[
                ("alertname", "Slow"),
                ("severity", "warning"),
                ("service", "db"),
            ],
            None,
        );
        let nosvc = alert(&[("alertname", "Slow"), ("severity", "warning")], None);
        let all = [crit.clone(), warn.clone(), other.clone()];
        assert_eq!(
            inhibited_by(&rules, &warn.labels, all.iter(), 10),
            vec![crit.fingerprint()]
        );
        assert!(inhibited_by(&rules, &other.labels, all.iter(), 10).is_empty());
        assert!(inhibited_by(&rules, &crit.labels, all.iter(), 10).is_empty());
        // Missing on both sides counts as equal.
        let crit_nosvc = alert(&[("alertname", "Down"), ("severity", "critical")], None);
        assert_eq!(
            inhibited_by(&rules, &nosvc.labels, [crit_nosvc.clone()].iter(), 10).len(),
            1
        );
        // A resolved source inhibits nothing.
        let resolved = alert(&[("severity", "critical"), ("service", "api")], Some(5));
        assert!(inhibited_by(&rules, &warn.labels, [resolved].iter(), 10).is_empty());
    }

    #[test]
    fn an_alert_matching_both_sides_does_not_inhibit_itself() {
        let rules = [rule("team=db", "team=db", &[])];
        let a = alert(&[("alertname", "A"), ("team", "db")], None);
        let b = alert(&[("alertname", "B"), ("team", "db")], None);
        assert!(inhibited_by(&rules, &a.labels, [a.clone(), b.clone()].iter(), 0).is_empty());
    }
}
