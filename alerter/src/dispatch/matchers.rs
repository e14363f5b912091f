//! Label matchers in Alertmanager's syntax (`name="v"`, `!=`, `=~`, `!~`, unquoted values,
//! `{a="b",c="d"}` lists), as `pkg/labels` parses them in Alertmanager 0.25. Regexes are
//! anchored (`^(?:...)$`) as Alertmanager anchors them; a missing label matches as "".
//! The syntax itself is the `lookout-matchers` crate's, which the UI shares.

use std::fmt;

use regex::Regex;

use crate::model::LabelSet;

pub use label_matchers::MatchType;

/// One compiled matcher.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub value: String,
    pub kind: MatchType,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.value == other.value && self.kind == other.kind
    }
}

impl Eq for Matcher {}

impl Matcher {
    /// A matcher; fails on an invalid regex.
    pub fn new(kind: MatchType, name: &str, value: &str) -> Result<Self, String> {
        let re = if kind.is_regex() {
            Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("invalid regular expression {value:?}: {e}"))?,
            )
        } else {
            None
        };
        Ok(Matcher {
            name: name.to_string(),
            value: value.to_string(),
            kind,
            re,
        })
    }

    /// Whether the value (a missing label is "") matches.
    pub fn matches(&self, v: &str) -> bool {
        match self.kind {
            MatchType::Equal => v == self.value,
            MatchType::NotEqual => v != self.value,
            MatchType::Regexp => self.re.as_ref().is_some_and(|re| re.is_match(v)),
            MatchType::NotRegexp => !self.re.as_ref().is_some_and(|re| re.is_match(v)),
        }
    }

    pub fn matches_labels(&self, labels: &LabelSet) -> bool {
        self.matches(labels.get(&self.name).map_or("", String::as_str))
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        label_matchers::write_matcher(f, &self.name, self.kind, &self.value)
    }
}

/// Whether every matcher matches `labels` (true for no matchers).
pub fn all_match(matchers: &[Matcher], labels: &LabelSet) -> bool {
    matchers.iter().all(|m| m.matches_labels(labels))
}

/// Alertmanager's `Matchers.String()`: `{a="b",c=~"d"}`.
pub fn matchers_string(matchers: &[Matcher]) -> String {
    let parts: Vec<String> = matchers.iter().map(ToString::to_string).collect();
    format!("{{{}}}", parts.join(","))
}

/// A label name as Prometheus accepts it: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses a list of matchers: `{a="b", c!~"d,e"}` or `a=b,c=~"x"` (commas inside quotes
/// belong to the value), as Alertmanager's `labels.ParseMatchers`; fails on a bad regex too.
pub fn parse_matchers(s: &str) -> Result<Vec<Matcher>, String> {
    label_matchers::parse_matchers(s)?
        .into_iter()
        .map(|p| Matcher::new(p.kind, &p.name, &p.value))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::label_set;

    fn parse_matcher(s: &str) -> Result<Matcher, String> {
        let mut all = parse_matchers(s)?;
        assert_eq!(all.len(), 1, "{s}");
        Ok(all.remove(0))
    }

    #[test]
    fn parses_every_operator_quoted_and_unquoted() {
        let m = parse_matchers(r#"{a="b", c!="d,e", f=~"x|y", g!~z.*}"#).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(
            (m[0].name.as_str(), m[0].kind, m[0].value.as_str()),
            ("a", MatchType::Equal, "b")
        );
        assert_eq!(
            (m[1].kind, m[1].value.as_str()),
            (MatchType::NotEqual, "d,e")
        );
        assert_eq!(m[2].kind, MatchType::Regexp);
        assert_eq!(
            (m[3].kind, m[3].value.as_str()),
            (MatchType::NotRegexp, "z.*")
        );
        let one = parse_matcher(r#"severity = "crit\"ical\n""#).unwrap();
        assert_eq!(one.value, "crit\"ical\n");
        assert_eq!(one.to_string(), r#"severity="crit\"ical\n""#);
        assert_eq!(parse_matcher("team=db").unwrap().value, "db");
    }

    #[test]
    fn rejects_bad_matchers() {
        assert!(parse_matcher("1a=b").is_err());
        assert!(parse_matcher("a").is_err());
        assert!(parse_matcher(r#"a="b"#)
            .unwrap_err()
            .contains("missing trailing"));
        assert!(parse_matcher(r#"a="b"c""#)
            .unwrap_err()
            .contains("unescaped"));
        assert!(parse_matcher(r#"a=~"(""#)
            .unwrap_err()
            .contains("regular expression"));
    }

    #[test]
    fn regexes_are_anchored_and_missing_labels_are_empty() {
        let m = parse_matcher(r#"team=~"db|infra""#).unwrap();
        assert!(m.matches_labels(&label_set(&[("team", "db")])));
        assert!(!m.matches_labels(&label_set(&[("team", "dbx")])));
        let ne = parse_matcher(r#"team!="db""#).unwrap();
        assert!(ne.matches_labels(&label_set(&[])));
        let empty = parse_matcher(r#"team="""#).unwrap();
        assert!(empty.matches_labels(&label_set(&[])));
        assert_eq!(
            matchers_string(&parse_matchers("a=b,c=~d").unwrap()),
            r#"{a="b",c=~"d"}"#
        );
    }
}
