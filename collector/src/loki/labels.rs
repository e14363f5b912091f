//! Loki stream label sets as the protobuf push sends them: Prometheus label-set syntax,
//! `{app="checkout", env="prod"}`.
//!
//! Names are `[a-zA-Z_][a-zA-Z0-9_]*`, or any text in double quotes (Prometheus 3's UTF-8
//! names); values are double-quoted (or back-quoted, as LogQL allows) with Go escapes
//! (`\"`, `\\`, `\n`, `\t`, `\r`, `\u00e9`...). Whitespace around tokens and a trailing comma
//! are allowed; a name given twice is an error, as in Prometheus.

/// Parses a label set; the error says what was expected where.
pub fn parse_labels(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut p = Parser {
        text,
        chars: text.char_indices().peekable(),
    };
    p.skip_ws();
    p.expect('{')?;
    let mut out: Vec<(String, String)> = Vec::new();
    loop {
        p.skip_ws();
        if p.eat('}') {
            break;
        }
        let name = p.name()?;
        p.skip_ws();
        p.expect('=')?;
        p.skip_ws();
        let value = p.quoted("label value")?;
        if out.iter().any(|(n, _)| *n == name) {
            return Err(format!("label {name:?} is given twice"));
        }
        out.push((name, value));
        p.skip_ws();
        if p.eat(',') {
            continue;
        }
        p.expect('}')?;
        break;
    }
    p.skip_ws();
    if let Some((at, c)) = p.chars.next() {
        return Err(format!(
            "unexpected {c:?} after the closing brace at offset {at}"
        ));
    }
    Ok(out)
}

struct Parser<'a> {
    text: &'a str,
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    }

    fn eat(&mut self, want: char) -> bool {
        self.chars.next_if(|(_, c)| *c == want).is_some()
    }

    fn offset(&mut self) -> usize {
        self.chars.peek().map_or(self.text.len(), |(i, _)| *i)
    }

    fn expect(&mut self, want: char) -> Result<(), String> {
        let at = self.offset();
        match self.chars.next() {
            Some((_, c)) if c == want => Ok(()),
            Some((_, c)) => Err(format!("expected {want:?} at offset {at}, found {c:?}")),
            None => Err(format!("expected {want:?} at offset {at}, found the end")),
        }
    }

    fn name(&mut self) -> Result<String, String> {
        if matches!(self.chars.peek(), Some((_, '"'))) {
            let name = self.quoted("label name")?;
            if name.is_empty() {
                return Err("a label name is empty".to_string());
            }
            return Ok(name);
        }
        let at = self.offset();
        let mut name = String::new();
        while let Some((_, c)) = self
            .chars
            .next_if(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
        {
            name.push(c);
        }
        match name.chars().next() {
            None => Err(match self.chars.peek() {
                Some((_, c)) => format!("expected a label name at offset {at}, found {c:?}"),
                None => format!("expected a label name at offset {at}, found the end"),
            }),
            Some(c) if c.is_ascii_digit() => Err(format!(
                "label name {name:?} at offset {at} starts with a digit"
            )),
            Some(_) => Ok(name),
        }
    }

    /// A double- or back-quoted string; `what` names it in errors.
    fn quoted(&mut self, what: &str) -> Result<String, String> {
        let at = self.offset();
        let quote = match self.chars.next() {
            Some((_, q @ ('"' | '`'))) => q,
            Some((_, c)) => {
                return Err(format!(
                    "expected a quoted {what} at offset {at}, found {c:?}"
                ))
            }
            None => {
                return Err(format!(
                    "expected a quoted {what} at offset {at}, found the end"
                ))
            }
        };
        let mut out = String::new();
        loop {
            let Some((i, c)) = self.chars.next() else {
                return Err(format!("the {what} starting at offset {at} is not closed"));
            };
            if c == quote {
                return Ok(out);
            }
            if c != '\\' || quote == '`' {
                out.push(c);
                continue;
            }
            let Some((_, e)) = self.chars.next() else {
                return Err(format!("the {what} starting at offset {at} is not closed"));
            };
            match e {
                '"' | '\\' | '\'' | '`' => out.push(e),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'a' => out.push('\u{7}'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'v' => out.push('\u{b}'),
                'u' | 'U' => {
                    let len = if e == 'u' { 4 } else { 8 };
                    let mut code = 0u32;
                    for _ in 0..len {
                        let digit = self
                            .chars
                            .next()
                            .and_then(|(_, h)| h.to_digit(16))
                            .ok_or_else(|| format!("bad \\{e} escape at offset {i}"))?;
                        code = code * 16 + digit;
                    }
                    let ch = char::from_u32(code)
                        .ok_or_else(|| format!("\\{e} escape at offset {i} is not a character"))?;
                    out.push(ch);
                }
                other => return Err(format!("unknown escape \\{other} at offset {i}")),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn label_sets_parse() {
        assert_eq!(parse_labels("{}").unwrap(), pairs(&[]));
        assert_eq!(
            parse_labels(r#"{app="checkout", env="prod"}"#).unwrap(),
            pairs(&[("app", "checkout"), ("env", "prod")])
        );
        assert_eq!(
            parse_labels(" { job = \"a\\\"b\\\\c\\nd\" , } ").unwrap(),
            pairs(&[("job", "a\"b\\c\nd")])
        );
        assert_eq!(
            parse_labels(r#"{"service.name"="x",path=`C:\dir`,u="caf\u00e9 数据"}"#).unwrap(),
            pairs(&[
                ("service.name", "x"),
                ("path", "C:\\dir"),
                ("u", "café 数据")
            ])
        );
    }

    #[test]
    fn bad_label_sets_say_where() {
        for (text, want) in [
            ("", "expected '{' at offset 0, found the end"),
            ("app=\"x\"", "expected '{' at offset 0"),
            ("{app=\"x\"", "expected '}' at offset 8, found the end"),
            (
                "{app=x}",
                "expected a quoted label value at offset 5, found 'x'",
            ),
            ("{1app=\"x\"}", "starts with a digit"),
            (
                "{app=\"x\" env=\"y\"}",
                "expected '}' at offset 9, found 'e'",
            ),
            ("{app=\"x}", "not closed"),
            ("{a=\"1\",a=\"2\"}", "label \"a\" is given twice"),
            ("{a=\"\\q\"}", "unknown escape \\q"),
            ("{a=\"1\"} x", "unexpected 'x' after the closing brace"),
            ("{=\"1\"}", "expected a label name at offset 1, found '='"),
        ] {
            let err = parse_labels(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
