//! Inhibition as Alertmanager's `inhibit.Inhibitor.Mutes`: an alert matching a rule's target
//! matchers is muted while some firing alert matches the source matchers and has the same
//! values of the `equal` labels (a label missing on both sides counts as equal). An alert
//! that matches both sides never inhibits another that also matches both, so an alert
//! cannot inhibit itself.
//!
//! Checking every alert against every other one is O(rules x alerts²), and the dispatcher
//! does it under its core lock (each flush, each `/api/v2/alerts` call). [`Inhibitor`]
//! instead indexes, once per call and per rule, the firing source alerts by their `equal`
//! label values, so checking a target is one hash lookup per rule.

use std::cell::OnceCell;
use std::collections::HashMap;

use super::matchers::{all_match, Matcher};
use crate::model::{Alert, Fingerprint, LabelSet};

#[derive(Clone, Debug)]
pub struct InhibitRule {
    pub source: Vec<Matcher>,
    pub target: Vec<Matcher>,
    pub equal: Vec<String>,
}

impl InhibitRule {
    /// The values of the `equal` labels of `labels`, `None` for a missing one (so missing
    /// equals missing, and differs from any value).
    fn equal_values<'a>(&self, labels: &'a LabelSet) -> Vec<Option<&'a str>> {
        self.equal
            .iter()
            .map(|n| labels.get(n).map(String::as_str))
            .collect()
    }
}

/// The firing sources of one rule sharing one set of `equal` label values.
struct Sources {
    /// The first source, in the order the alerts were given.
    first: Fingerprint,
    /// The first source that does not also match the target matchers: the only kind that
    /// may inhibit a target which matches both sides.
    first_one_sided: Option<Fingerprint>,
}

/// One rule's firing sources by their `equal` label values.
type RuleIndex<'a> = HashMap<Vec<Option<&'a str>>, Sources>;

/// Inhibition over one snapshot of the alerts, for checking many alerts against it. Each
/// rule's index is built the first time an alert matches that rule's target, so a check
/// that no rule targets costs nothing beyond the target matchers.
pub struct Inhibitor<'a, I> {
    rules: &'a [InhibitRule],
    alerts: I,
    now_ms: i64,
    index: Vec<OnceCell<RuleIndex<'a>>>,
}

impl<'a, I> Inhibitor<'a, I>
where
    I: Iterator<Item = &'a Alert> + Clone,
{
    /// `alerts` are all the alerts the dispatcher holds (resolved ones are skipped).
    pub fn new(rules: &'a [InhibitRule], alerts: I, now_ms: i64) -> Self {
        Inhibitor {
            rules,
            alerts,
            now_ms,
            index: rules.iter().map(|_| OnceCell::new()).collect(),
        }
    }

    fn rule_index(&self, i: usize) -> &RuleIndex<'a> {
        self.index[i].get_or_init(|| {
            let rule = &self.rules[i];
            let mut idx = RuleIndex::new();
            for a in self.alerts.clone() {
                if a.is_resolved_at(self.now_ms) || !all_match(&rule.source, &a.labels) {
                    continue;
                }
                let fp = a.fingerprint();
                let one_sided = !all_match(&rule.target, &a.labels);
                let s = idx.entry(rule.equal_values(&a.labels)).or_insert(Sources {
                    first: fp,
                    first_one_sided: None,
                });
                if one_sided && s.first_one_sided.is_none() {
                    s.first_one_sided = Some(fp);
                }
            }
            idx
        })
    }

    /// The fingerprints of the alerts inhibiting `labels` (the first source per rule, in
    /// the order the alerts were given; empty when not inhibited), sorted.
    pub fn inhibited_by(&self, labels: &LabelSet) -> Vec<Fingerprint> {
        let mut out: Vec<Fingerprint> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| all_match(&r.target, labels))
            .filter_map(|(i, r)| {
                let s = self.rule_index(i).get(&r.equal_values(labels))?;
                if all_match(&r.source, labels) {
                    s.first_one_sided
                } else {
                    Some(s.first)
                }
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// The fingerprints of the alerts inhibiting `labels` under `rules` (the first per rule,
/// empty when not inhibited), among the alerts the dispatcher holds. For one check; use
/// an [`Inhibitor`] to check many alerts against the same snapshot.
pub fn inhibited_by<'a>(
    rules: &'a [InhibitRule],
    labels: &LabelSet,
    alerts: impl Iterator<Item = &'a Alert> + Clone,
    now_ms: i64,
) -> Vec<Fingerprint> {
    Inhibitor::new(rules, alerts, now_ms).inhibited_by(labels)
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

    /// The straightforward scan the index replaced: every rule against every alert.
    fn scan(
        rules: &[InhibitRule],
        labels: &LabelSet,
        alerts: &[Alert],
        now: i64,
    ) -> Vec<Fingerprint> {
        let mut out: Vec<Fingerprint> = rules
            .iter()
            .filter(|r| all_match(&r.target, labels))
            .filter_map(|r| {
                let two_sided = all_match(&r.source, labels);
                alerts
                    .iter()
                    .find(|a| {
                        !a.is_resolved_at(now)
                            && all_match(&r.source, &a.labels)
                            && r.equal.iter().all(|n| a.labels.get(n) == labels.get(n))
                            && !(two_sided && all_match(&r.target, &a.labels))
                    })
                    .map(Alert::fingerprint)
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn the_index_agrees_with_the_scan_over_many_alerts() {
        let rules = [
            rule("severity=critical", "severity=warning", &["service"]),
            rule(
                "severity=~critical|warning",
                "severity=~warning|info",
                &["service", "team", "zone"],
            ),
            // Alerts of team db in zone a match both sides.
            rule("team=db", "zone=a", &["service"]),
            rule(
                "alertname=Down",
                "alertname!=Down",
                &["service", "team", "zone"],
            ),
        ];
        // A small deterministic generator: sources are rare and services many, so that
        // every rule sees hits and misses, missing equal labels and two-sided alerts.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut pick = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let alerts: Vec<Alert> = (0..2000)
            .map(|i| {
                let mut pairs: Vec<(String, String)> = vec![
                    ("i".into(), i.to_string()),
                    (
                        "alertname".into(),
                        if pick(20) == 0 { "Down" } else { "Slow" }.into(),
                    ),
                    (
                        "severity".into(),
                        ["critical", "warning", "info", "info"][pick(4) as usize].into(),
                    ),
                ];
                if pick(10) != 0 {
                    pairs.push(("service".into(), format!("s{}", pick(300))));
                }
                if pick(3) != 0 {
                    pairs.push(("team".into(), ["db", "web"][pick(2) as usize].into()));
                }
                if pick(4) != 0 {
                    pairs.push(("zone".into(), ["a", "b"][pick(2) as usize].into()));
                }
                let pairs: Vec<(&str, &str)> = pairs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                alert(&pairs, (pick(10) == 0).then_some(5))
            })
            .collect();
        let inh = Inhibitor::new(&rules, alerts.iter(), 10);
        let mut inhibited = 0;
        for a in &alerts {
            let want = scan(&rules, &a.labels, &alerts, 10);
            assert_eq!(inh.inhibited_by(&a.labels), want, "{:?}", a.labels);
            inhibited += usize::from(!want.is_empty());
        }
        // The comparison means something only if both outcomes occur often.
        assert!(
            inhibited > 200 && inhibited < 1800,
            "{inhibited} of 2000 inhibited"
        );
    }

    #[test]
    fn an_alert_matching_both_sides_does_not_inhibit_itself() {
        let rules = [rule("team=db", "team=db", &[])];
        let a = alert(&[("alertname", "A"), ("team", "db")], None);
        let b = alert(&[("alertname", "B"), ("team", "db")], None);
        assert!(inhibited_by(&rules, &a.labels, [a.clone(), b.clone()].iter(), 0).is_empty());
    }
}
