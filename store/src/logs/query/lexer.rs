//! Splits a query into tokens. Positions are 0-based character offsets, as errors report
//! them.
//!
//! * whitespace separates; `(` and `)` are tokens of their own;
//! * `"..."` is a quoted string (`\"` and `\\` escape; any other backslash is kept);
//! * `AND`, `OR`, `NOT` (upper case, standing alone) are operators;
//! * `-` directly before a term negates it;
//! * any other run of characters up to whitespace, a parenthesis or a quote is a word;
//!   a word that starts with a field name (`[A-Za-z_][A-Za-z0-9_.-]*`) followed by `:`,
//!   `>=`, `>`, `<=` or `<` is a field test, its value the rest of the word or the quoted
//!   string right after the operator.

use super::QueryError;

/// Comparison of a field test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmp {
    /// `:`
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
}

impl Cmp {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Cmp::Eq => ":",
            Cmp::Ge => ">=",
            Cmp::Gt => ">",
            Cmp::Le => "<=",
            Cmp::Lt => "<",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Not,
    Minus,
    /// A bare word or a quoted string (body search).
    Text {
        text: String,
        quoted: bool,
    },
    /// `name<cmp>value`.
    Field {
        name: String,
        cmp: Cmp,
        value: String,
        value_pos: usize,
        quoted: bool,
    },
}

impl Tok {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::And => "`AND`".into(),
            Tok::Or => "`OR`".into(),
            Tok::Not => "`NOT`".into(),
            Tok::Minus => "`-`".into(),
            Tok::Text { text, .. } => format!("`{text}`"),
            Tok::Field { name, cmp, .. } => format!("`{name}{}`", cmp.as_str()),
        }
    }
}

/// A token and the character position it starts at.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Spanned {
    pub(crate) tok: Tok,
    pub(crate) pos: usize,
}

pub(crate) fn lex(text: &str) -> Result<Vec<Spanned>, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let pos = i;
        match c {
            '(' => {
                out.push(Spanned {
                    tok: Tok::LParen,
                    pos,
                });
                i += 1;
            }
            ')' => {
                out.push(Spanned {
                    tok: Tok::RParen,
                    pos,
                });
                i += 1;
            }
            '"' => {
                let (s, next) = quoted(&chars, i)?;
                out.push(Spanned {
                    tok: Tok::Text {
                        text: s,
                        quoted: true,
                    },
                    pos,
                });
                i = next;
            }
            '-' => {
                match chars.get(i + 1) {
                    Some(&n) if !n.is_whitespace() && n != ')' => {}
                    _ => return Err(QueryError::new(pos, "`-` must be followed by a term")),
                }
                out.push(Spanned {
                    tok: Tok::Minus,
                    pos,
                });
                i += 1;
            }
            _ => {
                let end = word_end(&chars, i);
                let word: String = chars[i..end].iter().collect();
                let tok = match word.as_str() {
                    "AND" => Tok::And,
                    "OR" => Tok::Or,
                    "NOT" => Tok::Not,
                    _ => match field_prefix(&chars[i..end]) {
                        Some((name_len, cmp, op_len)) => {
                            let name: String = chars[i..i + name_len].iter().collect();
                            let value_pos = i + name_len + op_len;
                            if value_pos == end && chars.get(end) == Some(&'"') {
                                let (value, next) = quoted(&chars, end)?;
                                out.push(Spanned {
                                    tok: Tok::Field {
                                        name,
                                        cmp,
                                        value,
                                        value_pos,
                                        quoted: true,
                                    },
                                    pos,
                                });
                                i = next;
                                continue;
                            }
                            Tok::Field {
                                name,
                                cmp,
                                value: chars[value_pos..end].iter().collect(),
                                value_pos,
                                quoted: false,
                            }
                        }
                        None => Tok::Text {
                            text: word,
                            quoted: false,
                        },
                    },
                };
                out.push(Spanned { tok, pos });
                i = end;
            }
        }
    }
    Ok(out)
}

fn word_end(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() || matches!(c, '(' | ')' | '"') {
            break;
        }
        i += 1;
    }
    i
}

/// `(name length, comparison, operator length)` when `word` starts with a field test.
fn field_prefix(word: &[char]) -> Option<(usize, Cmp, usize)> {
    let first = *word.first()?;
    if !(first.is_ascii_alphabetic() || first == '_') {
        return None;
    }
    let n = word
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))?;
    let next = word.get(n + 1).copied();
    let (cmp, len) = match (word[n], next) {
        (':', _) => (Cmp::Eq, 1),
        ('>', Some('=')) => (Cmp::Ge, 2),
        ('>', _) => (Cmp::Gt, 1),
        ('<', Some('=')) => (Cmp::Le, 2),
        ('<', _) => (Cmp::Lt, 1),
        _ => return None,
    };
    Some((n, cmp, len))
}

/// Reads the quoted string whose opening quote is at `start`; returns it and the index
/// after the closing quote.
fn quoted(chars: &[char], start: usize) -> Result<(String, usize), QueryError> {
    let mut s = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '"' => return Ok((s, i + 1)),
            '\\' if matches!(chars.get(i + 1), Some('"' | '\\')) => {
                s.push(chars[i + 1]);
                i += 2;
            }
            c => {
                s.push(c);
                i += 1;
            }
        }
    }
    Err(QueryError::new(start, "unclosed quote"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(q: &str) -> Vec<(Tok, usize)> {
        lex(q)
            .unwrap()
            .into_iter()
            .map(|s| (s.tok, s.pos))
            .collect()
    }

    fn text(t: &str) -> Tok {
        Tok::Text {
            text: t.into(),
            quoted: false,
        }
    }

    #[test]
    fn words_operators_and_parentheses() {
        assert_eq!(
            toks("a AND (b OR NOT c) -d"),
            [
                (text("a"), 0),
                (Tok::And, 2),
                (Tok::LParen, 6),
                (text("b"), 7),
                (Tok::Or, 9),
                (Tok::Not, 12),
                (text("c"), 16),
                (Tok::RParen, 17),
                (Tok::Minus, 19),
                (text("d"), 20),
            ]
        );
        assert_eq!(toks("NOTICE and"), [(text("NOTICE"), 0), (text("and"), 7)]);
    }

    #[test]
    fn fields_with_quoted_values_and_comparisons() {
        assert_eq!(
            toks(r#"service:"my \"svc\"" severity>=warn attr.http.route:/api/*"#),
            [
                (
                    Tok::Field {
                        name: "service".into(),
                        cmp: Cmp::Eq,
                        value: "my \"svc\"".into(),
                        value_pos: 8,
                        quoted: true
                    },
                    0
                ),
                (
                    Tok::Field {
                        name: "severity".into(),
                        cmp: Cmp::Ge,
                        value: "warn".into(),
                        value_pos: 31,
                        quoted: false
                    },
                    21
                ),
                (
                    Tok::Field {
                        name: "attr.http.route".into(),
                        cmp: Cmp::Eq,
                        value: "/api/*".into(),
                        value_pos: 52,
                        quoted: false
                    },
                    36
                ),
            ]
        );
        // Not field tests: a leading digit or slash, no operator.
        assert_eq!(toks("12:30:45"), [(text("12:30:45"), 0)]);
        assert_eq!(toks("/a:b"), [(text("/a:b"), 0)]);
    }

    #[test]
    fn positions_count_characters() {
        assert_eq!(toks("数据 x"), [(text("数据"), 0), (text("x"), 3)]);
        let e = lex("数据 \"abc").unwrap_err();
        assert_eq!(e.position, 3);
    }

    #[test]
    fn lexical_errors() {
        assert_eq!(lex("a \"b").unwrap_err().position, 2);
        assert_eq!(lex("a - b").unwrap_err().position, 2);
        assert_eq!(lex("(a -)").unwrap_err().position, 3);
        assert_eq!(lex("a -").unwrap_err().position, 2);
        assert_eq!(lex(r#""a\""#).unwrap_err().position, 0);
    }
}
