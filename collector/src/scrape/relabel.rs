//! Relabelling with Prometheus's semantics: fully anchored regexes, `$1`/`${1}`/`$name`
//! expansion (Go's rules: `$1x` names group `1x`), empty results delete the target label, and
//! `hashmod` on the MD5 of the joined source values so targets shard the same way as in
//! Prometheus.

use md5::{Digest, Md5};
use regex::Regex;

use super::config::{RelabelAction, RelabelConfig};
use super::parse::is_label_name;

/// A relabel rule with its regex compiled.
#[derive(Clone, Debug)]
pub struct Rule {
    source_labels: Vec<String>,
    separator: String,
    target_label: String,
    regex: Regex,
    modulus: u64,
    replacement: String,
    action: RelabelAction,
}

/// Compiles a list of rules, collecting every problem (`what` prefixes each message, e.g.
/// `relabel_configs`).
pub fn compile_all(configs: &[RelabelConfig], what: &str) -> Result<Vec<Rule>, Vec<String>> {
    let mut rules = Vec::with_capacity(configs.len());
    let mut errors = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        match Rule::compile(c) {
            Ok(r) => rules.push(r),
            Err(errs) => errors.extend(errs.into_iter().map(|e| format!("{what}[{i}]: {e}"))),
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

impl Rule {
    /// Compiles one rule, or returns every problem with it.
    pub fn compile(c: &RelabelConfig) -> Result<Rule, Vec<String>> {
        let mut errors = Vec::new();
        let regex = match Regex::new(&format!("^(?s:{})$", c.regex)) {
            Ok(r) => Some(r),
            Err(e) => {
                errors.push(format!("invalid regex {:?}: {e}", c.regex));
                None
            }
        };
        let target = c.target_label.clone().unwrap_or_default();
        let needs_target = matches!(
            c.action,
            RelabelAction::Replace
                | RelabelAction::Hashmod
                | RelabelAction::Lowercase
                | RelabelAction::Uppercase
        );
        if needs_target && target.is_empty() {
            errors.push(format!(
                "action {} requires target_label",
                action_name(c.action)
            ));
        }
        let templated = c.action == RelabelAction::Replace && target.contains('$');
        if needs_target && !target.is_empty() && !templated && !is_label_name(&target) {
            errors.push(format!("invalid target_label {target:?}"));
        }
        if c.action == RelabelAction::Hashmod && c.modulus.unwrap_or(0) == 0 {
            errors.push("action hashmod requires a modulus greater than 0".to_string());
        }
        if matches!(
            c.action,
            RelabelAction::Labeldrop | RelabelAction::Labelkeep
        ) && (!c.source_labels.is_empty() || c.target_label.is_some())
        {
            errors.push(format!(
                "action {} takes only regex (source_labels and target_label must not be set)",
                action_name(c.action)
            ));
        }
        for name in &c.source_labels {
            if !is_label_name(name) {
                errors.push(format!("invalid source label name {name:?}"));
            }
        }
        match regex {
            Some(regex) if errors.is_empty() => Ok(Rule {
                source_labels: c.source_labels.clone(),
                separator: c.separator.clone(),
                target_label: target,
                regex,
                modulus: c.modulus.unwrap_or(0),
                replacement: c.replacement.clone(),
                action: c.action,
            }),
            _ => Err(errors),
        }
    }

    /// Applies the rule; `false` means the label set is dropped (keep/drop).
    fn apply(&self, labels: &mut Vec<(String, String)>) -> bool {
        let value = || {
            let mut v = String::new();
            for (i, name) in self.source_labels.iter().enumerate() {
                if i > 0 {
                    v.push_str(&self.separator);
                }
                v.push_str(get(labels, name).unwrap_or(""));
            }
            v
        };
        match self.action {
            RelabelAction::Keep => return self.regex.is_match(&value()),
            RelabelAction::Drop => return !self.regex.is_match(&value()),
            RelabelAction::Replace => {
                let v = value();
                if let Some(caps) = self.regex.captures(&v) {
                    let mut target = String::new();
                    caps.expand(&self.target_label, &mut target);
                    if !is_label_name(&target) {
                        return true;
                    }
                    let mut result = String::new();
                    caps.expand(&self.replacement, &mut result);
                    set(labels, &target, result);
                }
            }
            RelabelAction::Lowercase => {
                let v = value().to_lowercase();
                set(labels, &self.target_label, v);
            }
            RelabelAction::Uppercase => {
                let v = value().to_uppercase();
                set(labels, &self.target_label, v);
            }
            RelabelAction::Hashmod => {
                let digest = Md5::digest(value().as_bytes());
                let mut low = [0u8; 8];
                low.copy_from_slice(&digest[8..16]);
                let m = u64::from_be_bytes(low) % self.modulus.max(1);
                set(labels, &self.target_label, m.to_string());
            }
            RelabelAction::Labelmap => {
                let mut added = Vec::new();
                for (name, value) in labels.iter() {
                    if let Some(caps) = self.regex.captures(name) {
                        let mut new_name = String::new();
                        caps.expand(&self.replacement, &mut new_name);
                        added.push((new_name, value.clone()));
                    }
                }
                for (name, value) in added {
                    set(labels, &name, value);
                }
            }
            RelabelAction::Labeldrop => labels.retain(|(n, _)| !self.regex.is_match(n)),
            RelabelAction::Labelkeep => labels.retain(|(n, _)| self.regex.is_match(n)),
        }
        true
    }
}

/// Runs `rules` in order; `None` when a keep/drop rule discarded the label set. Labels with
/// empty values count as absent afterwards and are removed.
pub fn process(rules: &[Rule], mut labels: Vec<(String, String)>) -> Option<Vec<(String, String)>> {
    for rule in rules {
        if !rule.apply(&mut labels) {
            return None;
        }
    }
    labels.retain(|(_, v)| !v.is_empty());
    Some(labels)
}

fn get<'a>(labels: &'a [(String, String)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Sets (or with an empty value, deletes) a label, as Prometheus's label builder does.
fn set(labels: &mut Vec<(String, String)>, name: &str, value: String) {
    if value.is_empty() {
        labels.retain(|(n, _)| n != name);
        return;
    }
    match labels.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => slot.1 = value,
        None => labels.push((name.to_string(), value)),
    }
}

pub(crate) fn action_name(a: RelabelAction) -> &'static str {
    match a {
        RelabelAction::Replace => "replace",
        RelabelAction::Keep => "keep",
        RelabelAction::Drop => "drop",
        RelabelAction::Labeldrop => "labeldrop",
        RelabelAction::Labelkeep => "labelkeep",
        RelabelAction::Labelmap => "labelmap",
        RelabelAction::Hashmod => "hashmod",
        RelabelAction::Lowercase => "lowercase",
        RelabelAction::Uppercase => "uppercase",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn cfg(yaml: &str) -> RelabelConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn run(yamls: &[&str], labels: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        let rules: Vec<Rule> = yamls
            .iter()
            .map(|y| Rule::compile(&cfg(y)).unwrap())
            .collect();
        let labels = labels
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        process(&rules, labels).map(|mut l| {
            l.sort();
            l
        })
    }

    fn owned(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        let mut v: Vec<(String, String)> = pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        v.sort();
        Some(v)
    }

    #[test]
    fn replace_with_groups_and_defaults() {
        let labels = [("__address__", "10.0.0.1:9100"), ("env", "prod")];
        assert_eq!(
            run(
                &["{source_labels: [__address__], regex: '(.*):(\\d+)', target_label: host, replacement: '${1}'}"],
                &labels
            ),
            owned(&[("__address__", "10.0.0.1:9100"), ("env", "prod"), ("host", "10.0.0.1")])
        );
        // default regex (.*) and replacement $1 copy the joined sources
        assert_eq!(
            run(
                &["{source_labels: [env, __address__], separator: '/', target_label: x}"],
                &labels
            ),
            owned(&[
                ("__address__", "10.0.0.1:9100"),
                ("env", "prod"),
                ("x", "prod/10.0.0.1:9100")
            ])
        );
        // $1x names group "1x", which does not exist: expands to nothing, label deleted
        assert_eq!(
            run(&["{source_labels: [env], regex: '(p)rod', target_label: env, replacement: '$1x'}"], &labels),
            owned(&[("__address__", "10.0.0.1:9100")])
        );
        // named group and target label from a group
        assert_eq!(
            run(
                &["{source_labels: [env], regex: '(?P<e>p)(.*)', target_label: 'l_$2', replacement: '$e'}"],
                &labels
            ),
            owned(&[("__address__", "10.0.0.1:9100"), ("env", "prod"), ("l_rod", "p")])
        );
    }

    #[test]
    fn regex_is_anchored() {
        let labels = [("env", "production")];
        // "prod" alone would match inside "production" if unanchored
        assert_eq!(
            run(
                &["{source_labels: [env], regex: prod, target_label: m, replacement: yes}"],
                &labels
            ),
            owned(&[("env", "production")])
        );
        assert_eq!(
            run(
                &["{source_labels: [env], regex: prod, action: keep}"],
                &labels
            ),
            None
        );
        assert_eq!(
            run(
                &["{source_labels: [env], regex: 'prod.*', action: keep}"],
                &labels
            ),
            owned(&[("env", "production")])
        );
    }

    #[test]
    fn keep_and_drop() {
        let labels = [("job", "api"), ("team", "a")];
        assert_eq!(
            run(
                &["{source_labels: [job], regex: api, action: drop}"],
                &labels
            ),
            None
        );
        assert_eq!(
            run(
                &["{source_labels: [job], regex: web, action: drop}"],
                &labels
            ),
            owned(&labels)
        );
        assert_eq!(
            run(
                &["{source_labels: [job], regex: web|api, action: keep}"],
                &labels
            ),
            owned(&labels)
        );
        // a missing source label joins as the empty string
        assert_eq!(
            run(
                &["{source_labels: [nope], regex: '', action: drop}"],
                &labels
            ),
            None
        );
    }

    #[test]
    fn labeldrop_labelkeep_labelmap() {
        let labels = [
            ("__meta_k8s_label_app", "web"),
            ("__meta_k8s_label_tier", "fe"),
            ("job", "x"),
        ];
        assert_eq!(
            run(
                &["{regex: '__meta_k8s_label_(.+)', action: labelmap}"],
                &labels
            ),
            owned(&[
                ("__meta_k8s_label_app", "web"),
                ("__meta_k8s_label_tier", "fe"),
                ("app", "web"),
                ("job", "x"),
                ("tier", "fe")
            ])
        );
        assert_eq!(
            run(&["{regex: '__meta_.*', action: labeldrop}"], &labels),
            owned(&[("job", "x")])
        );
        assert_eq!(
            run(
                &["{regex: '__meta_k8s_label_app|job', action: labelkeep}"],
                &labels
            ),
            owned(&[("__meta_k8s_label_app", "web"), ("job", "x")])
        );
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // any value lands in [0, modulus)
        let out = run(
            &["{source_labels: [__address__], modulus: 8, target_label: shard, action: hashmod}"],
            &[("__address__", "10.0.0.1:9100")],
        )
        .unwrap();
        let shard: u64 = out
            .iter()
            .find(|(n, _)| n == "shard")
            .unwrap()
            .1
            .parse()
            .unwrap();
        assert!(shard < 8);
        // Prometheus takes the low 8 bytes of the MD5, big-endian; md5("") is the known
        // vector d41d8cd98f00b204_e9800998ecf8427e
        let empty = run(
            &["{source_labels: [none], modulus: 1000, target_label: s, action: hashmod}"],
            &[],
        )
        .unwrap();
        assert_eq!(
            empty,
            owned(&[("s", &(0xe980_0998_ecf8_427e_u64 % 1000).to_string())]).unwrap()
        );
    }

    #[test]
    fn lowercase_uppercase() {
        let labels = [("env", "Prod")];
        assert_eq!(
            run(
                &["{source_labels: [env], target_label: lo, action: lowercase}"],
                &labels
            ),
            owned(&[("env", "Prod"), ("lo", "prod")])
        );
        assert_eq!(
            run(
                &["{source_labels: [env], target_label: env, action: uppercase}"],
                &labels
            ),
            owned(&[("env", "PROD")])
        );
    }

    #[test]
    fn compile_reports_every_problem() {
        let errs = compile_all(
            &[
                cfg("{regex: '(', source_labels: [a], target_label: x}"),
                cfg("{action: replace, source_labels: [a]}"),
                cfg("{action: hashmod, source_labels: [a], target_label: s}"),
                cfg("{action: labeldrop, source_labels: [a], regex: x}"),
                cfg("{action: replace, source_labels: [a], target_label: '1bad'}"),
            ],
            "relabel_configs",
        )
        .unwrap_err();
        assert_eq!(errs.len(), 5, "{errs:?}");
        assert!(
            errs[0].starts_with("relabel_configs[0]: invalid regex \"(\""),
            "{errs:?}"
        );
        assert!(
            errs[1].contains("[1]: action replace requires target_label"),
            "{errs:?}"
        );
        assert!(
            errs[2].contains("[2]: action hashmod requires a modulus"),
            "{errs:?}"
        );
        assert!(
            errs[3].contains("[3]: action labeldrop takes only regex"),
            "{errs:?}"
        );
        assert!(
            errs[4].contains("[4]: invalid target_label \"1bad\""),
            "{errs:?}"
        );
    }
}
