//! The text syntax of label matchers, Alertmanager's (`pkg/labels` in 0.25): `name="v"`,
//! `!=`, `=~`, `!~`, unquoted values, and `{a="b", c!~"d,e"}` lists where commas inside
//! quotes belong to the value. Parsing only: matching (and compiling regexes, anchored as
//! `^(?:...)$`) is each user's, the alerter with `regex`, the browser with `regex-lite`.
//!
//! Shared by the alerter (routes, inhibit rules, silences, API filters) and the UI (alert
//! filter box, silence form), so what the page accepts the API accepts too.

use std::fmt;

/// The operator of a matcher.
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

    /// From the API's `isRegex` / `isEqual` pair.
    pub fn from_flags(is_regex: bool, is_equal: bool) -> Self {
        match (is_regex, is_equal) {
            (false, true) => MatchType::Equal,
            (false, false) => MatchType::NotEqual,
            (true, true) => MatchType::Regexp,
            (true, false) => MatchType::NotRegexp,
        }
    }
}

/// One matcher as written: name, operator, unescaped value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub name: String,
    pub kind: MatchType,
    pub value: String,
}

/// Writes `name<op>"value"` with the value escaped (`\\`, `\"`, `\n`): the form `parse`
/// reads back.
pub fn write_matcher(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    kind: MatchType,
    value: &str,
) -> fmt::Result {
    write!(f, "{name}{}\"", kind.as_str())?;
    for c in value.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '"' => f.write_str("\\\"")?,
            '\n' => f.write_str("\\n")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// A matcher's label name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_matcher_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses a list of matchers: `{a="b", c!~"d,e"}` or `a=b,c=~"x"`; blank is none.
pub fn parse_matchers(s: &str) -> Result<Vec<Parsed>, String> {
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
            '"' if escaped => escaped = false,
            '"' => inside_quotes = !inside_quotes,
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
pub fn parse_matcher(s: &str) -> Result<Parsed, String> {
    let bad = || format!("bad matcher format: {s}");
    let t = s.trim();
    let name_len = t
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == ':'))
        .map_or(t.len(), |(i, _)| i);
    let name = &t[..name_len];
    if !is_valid_matcher_name(name) {
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
            '"' if expect_trailing_quote && last => expect_trailing_quote = false,
            '"' => {
                return Err(format!(
                    "bad matcher {t}: the value contains an unescaped double quote"
                ))
            }
            c => value.push(c),
        }
    }
    if expect_trailing_quote {
        return Err(format!("bad matcher {t}: missing trailing double quote"));
    }
    Ok(Parsed {
        name: name.to_string(),
        kind,
        value,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    struct Show<'a>(&'a Parsed);
    impl fmt::Display for Show<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_matcher(f, &self.0.name, self.0.kind, &self.0.value)
        }
    }

    #[test]
    fn every_operator_quoted_and_unquoted_with_commas_in_quotes() {
        let m = parse_matchers(r#"{a="b", c!="d,e", f=~"x|y", g!~z.*}"#).unwrap();
        let got: Vec<(&str, MatchType, &str)> = m
            .iter()
            .map(|p| (p.name.as_str(), p.kind, p.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", MatchType::Equal, "b"),
                ("c", MatchType::NotEqual, "d,e"),
                ("f", MatchType::Regexp, "x|y"),
                ("g", MatchType::NotRegexp, "z.*"),
            ]
        );
        assert!(parse_matchers("").unwrap().is_empty());
        assert!(parse_matchers("{}").unwrap().is_empty());
        assert_eq!(parse_matchers("a=b,").unwrap().len(), 1);
    }

    #[test]
    fn escapes_round_trip_through_write_matcher() {
        let p = Parsed {
            name: "msg".into(),
            kind: MatchType::Equal,
            value: "say \"hi\"\\n\nnext".into(),
        };
        let text = Show(&p).to_string();
        assert_eq!(text, r#"msg="say \"hi\"\\n\nnext""#);
        assert_eq!(parse_matcher(&text).unwrap(), p);
    }

    #[test]
    fn bad_matchers_name_the_input() {
        for bad in [
            "a", "=b", "1a=b", "a==\"b", "a=\"b", "a=b\"c\"", "a~b", "a=b,,c=d",
        ] {
            let e = parse_matchers(bad).unwrap_err();
            assert!(e.starts_with("bad matcher"), "{bad}: {e}");
        }
        assert_eq!(
            parse_matcher("a=\"b").unwrap_err(),
            "bad matcher a=\"b: missing trailing double quote"
        );
    }
}
