//! Label matchers in Alertmanager's syntax (`name="v"`, `!=`, `=~`, `!~`, unquoted values,
//! `{a="b",c="d"}` lists), as `pkg/labels` parses them in Alertmanager 0.25. Regexes are
//! anchored (`^(?:...)$`) as Alertmanager anchors them; a missing label matches as "".

use std::fmt;

use regex::Regex;

use crate::model::LabelSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchType {
    Equal,
    NotEqual,
    Regexp,
    NotRegexp,
}

impl MatchType {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regexp => "=~",
            MatchType::NotRegexp => "!~",
        }
    }

    pub fn is_regex(self) -> bool {
        matches!(self, MatchType::Regexp | MatchType::NotRegexp)
    }

    pub fn is_equal(self) -> bool {
        matches!(self, MatchType::Equal | MatchType::Regexp)
    }

    pub fn from_flags(is_regex: bool, is_equal: bool) -> Self {
        match (is_regex, is_equal) {
            (false, true) => MatchType::Equal,
            (false, false) => MatchType::NotEqual,
            (true, true) => MatchType::Regexp,
            (true, false) => MatchType::NotRegexp,
        }
    }
}

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
        write!(f, "{}{}\"", self.name, self.kind.as_str())?;
        for c in self.value.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
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

fn is_valid_matcher_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses a list of matchers: `{a="b", c!~"d,e"}` or `a=b,c=~"x"` (commas inside quotes
/// belong to the value), as Alertmanager's `labels.ParseMatchers`.
pub fn parse_matchers(s: &str) -> Result<Vec<Matcher>, String> {
    let s = s.trim();
    let s = s.strip_prefix('{').unwrap_or(s);
    let s = s.strip_suffix('}').unwrap_or(s);
    let mut tokens = Vec::new();
    let mut token = String::new();
    let (mut inside_quotes, mut escaped) = (false, false);
    for c in s.chars() {
        match c {
            ',' if !inside_quotes => {
                tokens.push(std::mem::take(&mut token));
                continue;
            }
            ',' => escaped = false,
            '"' => {
                if escaped {
                    escaped = false;
                } else {
                    inside_quotes = !inside_quotes;
                }
            }
            '\\' => escaped = !escaped,
            _ => escaped = false,
        }
        token.push(c);
    }
    if !token.trim().is_empty() {
        tokens.push(token);
    }
    tokens.iter().map(|t| parse_matcher(t)).collect()
}

/// Parses one matcher `name<op>value`, the value quoted (with `\"`, `\\`, `\n` escapes) or not.
pub fn parse_matcher(s: &str) -> Result<Matcher, String> {
    let bad = || format!("bad matcher format: {s}");
    let t = s.trim();
    let name_len = t
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == ':'))
        .map_or(t.len(), |(i, _)| i);
    let name = &t[..name_len];
    if name.is_empty() || !is_valid_matcher_name(name) {
        return Err(bad());
    }
    let rest = t[name_len..].trim_start();
    let (kind, rest) = if let Some(r) = rest.strip_prefix("=~") {
        (MatchType::Regexp, r)
    } else if let Some(r) = rest.strip_prefix("!=") {
        (MatchType::NotEqual, r)
    } else if let Some(r) = rest.strip_prefix("!~") {
        (MatchType::NotRegexp, r)
    } else if let Some(r) = rest.strip_prefix('=') {
        (MatchType::Equal, r)
    } else {
        return Err(bad());
    };
    let raw = rest.trim();
    let (raw, mut expect_trailing_quote) = match raw.strip_prefix('"') {
        Some(r) => (r, true),
        None => (raw, false),
    };
    let mut value = String::new();
    let mut escaped = false;
    let n = raw.len();
    for (i, c) in raw.char_indices() {
        if escaped {
            escaped = false;
            match c {
                'n' => value.push('\n'),
                '"' | '\\' => value.push(c),
                c => {
                    value.push('\\');
                    value.push(c);
                }
            }
            continue;
        }
        let last = i + c.len_utf8() == n;
        match c {
            '\\' if !last => escaped = true,
            '\\' => value.push('\\'),
            '"' => {
                if !expect_trailing_quote || !last {
                    return Err(format!(
                        "matcher value contains unescaped double quote: {}",
                        rest.trim()
                    ));
                }
                expect_trailing_quote = false;
            }
            c => value.push(c),
        }
    }
    if expect_trailing_quote {
        return Err(format!("missing trailing double quote: {}", rest.trim()));
    }
    Matcher::new(kind, name, &value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::label_set;

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
