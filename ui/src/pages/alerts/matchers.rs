//! Label matchers in Alertmanager's syntax (`name="v"`, `!=`, `=~`, `!~`, unquoted values,
//! `{a="b",c="d"}` lists), as the alerts page's filter box and the silence form take them.
//! The syntax is the `lookout-matchers` crate's, the alerter's own (Alertmanager 0.25's
//! `labels.ParseMatchers`), so what the page accepts the API accepts too; regexes are
//! anchored, and a missing label matches as "". It runs the same on the server and in the
//! browser, so a filtered page hydrates to the same rows.

use std::collections::BTreeMap;
use std::fmt;

use label_matchers::MatchType;
use regex_lite::Regex;
use serde::{Deserialize, Serialize};

/// Alertmanager's v2 matcher, as `POST /api/v2/silences` takes it and `GET` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Matcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    #[serde(default = "default_true")]
    pub is_equal: bool,
}

fn default_true() -> bool {
    true
}

impl Matcher {
    fn kind(&self) -> MatchType {
        MatchType::from_flags(self.is_regex, self.is_equal)
    }

    /// An equality matcher.
    pub fn equal(name: &str, value: &str) -> Self {
        Matcher {
            name: name.to_string(),
            value: value.to_string(),
            is_regex: false,
            is_equal: true,
        }
    }
}

impl fmt::Display for Matcher {
    /// `name="value"` with `\`, `"` and newlines escaped, as Alertmanager prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        label_matchers::write_matcher(f, &self.name, self.kind(), &self.value)
    }
}

/// A matcher ready to test labels (its regex compiled once).
#[derive(Clone, Debug)]
pub struct Compiled {
    pub matcher: Matcher,
    re: Option<Regex>,
}

impl Compiled {
    pub fn new(matcher: Matcher) -> Result<Self, String> {
        let re = if matcher.is_regex {
            Some(
                Regex::new(&format!("^(?:{})$", matcher.value))
                    .map_err(|e| format!("invalid regular expression {:?}: {e}", matcher.value))?,
            )
        } else {
            None
        };
        Ok(Compiled { matcher, re })
    }

    /// Whether `labels` match (a missing label is "").
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.matcher.name).map_or("", String::as_str);
        let hit = match &self.re {
            Some(re) => re.is_match(v),
            None => v == self.matcher.value,
        };
        hit == self.matcher.is_equal
    }
}

/// Compiles every matcher of a filter; the first bad one is the error.
pub fn compile(matchers: Vec<Matcher>) -> Result<Vec<Compiled>, String> {
    matchers.into_iter().map(Compiled::new).collect()
}

/// Whether every matcher matches `labels` (true for none).
pub fn all_match(matchers: &[Compiled], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// The equality matchers that select exactly this label set: what a silence made from an
/// alert starts with. Empty values are left out: `name=""` would also match alerts without
/// the label, and an alert never carries an empty one.
pub fn from_labels(labels: &BTreeMap<String, String>) -> Vec<Matcher> {
    labels
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| Matcher::equal(k, v))
        .collect()
}

/// `{a="b", c=~"d"}`: a list as the filter box and a link take it.
pub fn to_filter(matchers: &[Matcher]) -> String {
    let parts: Vec<String> = matchers.iter().map(ToString::to_string).collect();
    format!("{{{}}}", parts.join(", "))
}

/// One matcher per line: how the silence form shows them for editing.
pub fn to_lines(matchers: &[Matcher]) -> String {
    let parts: Vec<String> = matchers.iter().map(ToString::to_string).collect();
    parts.join("\n")
}

/// Parses matchers written one per line or as a list (`{a="b", c!~"d,e"}`, `a=b,c=~"x"`);
/// commas inside quotes belong to the value. Blank input is no matchers.
pub fn parse(s: &str) -> Result<Vec<Matcher>, String> {
    let mut out = Vec::new();
    for line in s.lines() {
        out.extend(
            label_matchers::parse_matchers(line)?
                .into_iter()
                .map(|p| Matcher {
                    is_regex: p.kind.is_regex(),
                    is_equal: p.kind.is_equal(),
                    name: p.name,
                    value: p.value,
                }),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_operator_quoted_and_unquoted() {
        let m = parse(r#"{a="b", c!="d,e", f=~"x|y", g!~z.*}"#).unwrap();
        let got: Vec<(&str, &str, &str)> = m
            .iter()
            .map(|m| (m.name.as_str(), m.kind().as_str(), m.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", "=", "b"),
                ("c", "!=", "d,e"),
                ("f", "=~", "x|y"),
                ("g", "!~", "z.*")
            ]
        );
        // one per line, as the silence form holds them; blank lines are nothing
        let m = parse("alertname=\"HighErrors\"\n\n  service = \"pay\"  \n").unwrap();
        assert_eq!(
            m,
            [
                Matcher::equal("alertname", "HighErrors"),
                Matcher::equal("service", "pay")
            ]
        );
        assert_eq!(parse("").unwrap(), []);
        assert_eq!(parse("{}").unwrap(), []);
    }

    #[test]
    fn escapes_round_trip() {
        let m = Matcher::equal("msg", "say \"hi\"\\n\nnext");
        let text = m.to_string();
        assert_eq!(text, r#"msg="say \"hi\"\\n\nnext""#);
        assert_eq!(parse(&text).unwrap(), std::slice::from_ref(&m));
        assert_eq!(parse(&to_filter(&[m.clone(), m.clone()])).unwrap().len(), 2);
    }

    #[test]
    fn bad_matchers_are_errors_naming_the_input() {
        for bad in ["a", "=b", "1a=b", "a==\"b", "a=\"b", "a=b\"c\"", "a~b"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("matcher"), "{bad}: {e}");
        }
        let e = compile(parse("a=~\"(\"").unwrap()).unwrap_err();
        assert!(e.contains("invalid regular expression"), "{e}");
    }

    #[test]
    fn matching_is_anchored_and_missing_labels_are_empty() {
        let l = labels(&[("service", "payments"), ("severity", "page")]);
        let ok = |f: &str| all_match(&compile(parse(f).unwrap()).unwrap(), &l);
        assert!(ok(r#"service="payments""#));
        assert!(ok(r#"service=~"pay.*", severity!="info""#));
        assert!(!ok(r#"service=~"pay""#), "regexes are anchored");
        assert!(ok(r#"service!~"pay""#));
        assert!(ok(r#"team="""#), "a missing label is empty");
        assert!(!ok(r#"team=~".+""#));
        assert!(ok(""), "no matchers match everything");
    }

    #[test]
    fn matchers_from_labels_select_the_alert() {
        let l = labels(&[
            ("alertname", "HighErrors"),
            ("service", "pay"),
            ("empty", ""),
        ]);
        let m = from_labels(&l);
        assert_eq!(
            m,
            [
                Matcher::equal("alertname", "HighErrors"),
                Matcher::equal("service", "pay")
            ]
        );
        assert_eq!(to_lines(&m), "alertname=\"HighErrors\"\nservice=\"pay\"");
        assert_eq!(to_filter(&m), "{alertname=\"HighErrors\", service=\"pay\"}");
        assert!(all_match(&compile(m).unwrap(), &l));
        let json = serde_json::to_string(&Matcher::equal("a", "b")).unwrap();
        assert_eq!(
            json,
            r#"{"name":"a","value":"b","isRegex":false,"isEqual":true}"#
        );
    }
}
