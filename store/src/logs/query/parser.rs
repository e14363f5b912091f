//! Recursive descent over the lexer's tokens, and the meaning of each field test.
//!
//! ```text
//! query   = [ or ] ;
//! or      = and { "OR" and } ;
//! and     = unary { [ "AND" ] unary } ;          (* adjacency is AND *)
//! unary   = ( "NOT" | "-" ) unary | primary ;
//! primary = "(" or ")" | field | phrase | word ;
//! ```
//! Nesting (parentheses and stacked `NOT`s) is limited to [`MAX_DEPTH`] so no input can
//! exhaust the stack.

use tantivy::query::RegexQuery;
use tantivy::schema::Field;

use super::ast::{has_wildcard, ExactField, Glob, Node, Pattern};
use super::lexer::{lex, Cmp, Spanned, Tok};
use super::QueryError;
use crate::logs::model::Severity;
use crate::logs::schema::attr_term;
use crate::logs::tokenizer;

/// Deepest nesting of parentheses and negations.
pub(crate) const MAX_DEPTH: usize = 64;

/// Longest query, in characters.
pub(crate) const MAX_QUERY_CHARS: usize = 16 * 1024;

const KNOWN_FIELDS: &str =
    "service, severity (or level), severity_text, trace_id, span_id, body, attr.<key>";

pub(crate) fn parse(text: &str) -> Result<Node, QueryError> {
    if text.chars().nth(MAX_QUERY_CHARS).is_some() {
        return Err(QueryError::new(
            MAX_QUERY_CHARS,
            format!("query is longer than {MAX_QUERY_CHARS} characters"),
        ));
    }
    let toks = lex(text)?;
    let mut p = Parser { toks, i: 0 };
    if p.toks.is_empty() {
        return Ok(Node::All);
    }
    let node = p.or(0)?;
    if let Some(t) = p.peek() {
        // `or` only stops early at a `)` without its `(`.
        return Err(QueryError::new(
            t.pos,
            format!("unexpected {} (no matching `(`)", t.tok.describe()),
        ));
    }
    Ok(node)
}

struct Parser {
    toks: Vec<Spanned>,
    i: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Spanned> {
        self.toks.get(self.i)
    }

    fn next(&mut self) -> Option<Spanned> {
        let t = self.toks.get(self.i).cloned();
        self.i += 1;
        t
    }

    /// True when the next token can start a term.
    fn at_term(&self) -> bool {
        matches!(
            self.peek().map(|t| &t.tok),
            Some(Tok::LParen | Tok::Not | Tok::Minus | Tok::Text { .. } | Tok::Field { .. })
        )
    }

    fn or(&mut self, depth: usize) -> Result<Node, QueryError> {
        let mut alts = vec![self.and(depth)?];
        while let Some(t) = self.peek() {
            if t.tok != Tok::Or {
                break;
            }
            let pos = t.pos;
            self.i += 1;
            if !self.at_term() {
                return Err(QueryError::new(pos, "`OR` needs a term on both sides"));
            }
            alts.push(self.and(depth)?);
        }
        Ok(Node::or(alts))
    }

    fn and(&mut self, depth: usize) -> Result<Node, QueryError> {
        let mut all = vec![self.unary(depth)?];
        loop {
            match self.peek() {
                Some(t) if t.tok == Tok::And => {
                    let pos = t.pos;
                    self.i += 1;
                    if !self.at_term() {
                        return Err(QueryError::new(pos, "`AND` needs a term on both sides"));
                    }
                }
                Some(_) if self.at_term() => {}
                _ => break,
            }
            all.push(self.unary(depth)?);
        }
        Ok(Node::and(all))
    }

    fn unary(&mut self, depth: usize) -> Result<Node, QueryError> {
        let Some(t) = self.peek() else {
            // Callers check `at_term` first; an empty remainder is a dangling operator.
            let pos = self.toks.last().map_or(0, |t| t.pos);
            return Err(QueryError::new(pos, "expected a term"));
        };
        let pos = t.pos;
        match t.tok {
            Tok::Not | Tok::Minus => {
                let what = t.tok.describe();
                if depth >= MAX_DEPTH {
                    return Err(too_deep(pos));
                }
                self.i += 1;
                if !self.at_term() {
                    return Err(QueryError::new(
                        pos,
                        format!("{what} needs a term after it"),
                    ));
                }
                Ok(Node::not(self.unary(depth + 1)?))
            }
            _ => self.primary(depth),
        }
    }

    fn primary(&mut self, depth: usize) -> Result<Node, QueryError> {
        let Some(Spanned { tok, pos }) = self.next() else {
            return Err(QueryError::new(0, "expected a term"));
        };
        match tok {
            Tok::LParen => {
                if depth >= MAX_DEPTH {
                    return Err(too_deep(pos));
                }
                match self.peek() {
                    Some(t) if t.tok == Tok::RParen => {
                        return Err(QueryError::new(pos, "empty parentheses"));
                    }
                    None => return Err(QueryError::new(pos, "unclosed `(`")),
                    _ => {}
                }
                let inner = self.or(depth + 1)?;
                match self.next() {
                    Some(t) if t.tok == Tok::RParen => Ok(inner),
                    _ => Err(QueryError::new(pos, "unclosed `(`")),
                }
            }
            Tok::RParen => Err(QueryError::new(pos, "unexpected `)` (no matching `(`)")),
            Tok::And | Tok::Or => Err(QueryError::new(
                pos,
                format!("{} needs a term on both sides", tok.describe()),
            )),
            Tok::Text { text, quoted } => body(&text, quoted, pos, false),
            Tok::Field {
                name,
                cmp,
                value,
                value_pos,
                quoted,
            } => field(&name, pos, cmp, &value, value_pos, quoted),
            // `unary` consumes these.
            Tok::Not | Tok::Minus => Err(QueryError::new(pos, "expected a term")),
        }
    }
}

fn too_deep(pos: usize) -> QueryError {
    QueryError::new(
        pos,
        format!("query nests too deeply (more than {MAX_DEPTH} levels)"),
    )
}

/// A body search: tokenized as the index tokenizes bodies. Quoted text is literal; in a bare
/// word `*` and `?` are wildcards inside a token, and a token that is only `*` at either end
/// is dropped (it asks for nothing), in the middle it skips one position.
fn body(text: &str, quoted: bool, pos: usize, field: bool) -> Result<Node, QueryError> {
    if quoted {
        let toks = tokenizer::tokens(text);
        if toks.is_empty() {
            return Err(nothing_to_search(text, pos));
        }
        return Ok(Node::Body(
            toks.into_iter()
                .enumerate()
                .map(|(i, t)| (i, Pattern::Exact(t)))
                .collect(),
        ));
    }
    let mut toks = tokenizer::pattern_tokens(text);
    let star_only = |t: &String| t.bytes().all(|b| b == b'*');
    let lead = toks.iter().take_while(|t| star_only(t)).count();
    toks.drain(..lead);
    while toks.last().is_some_and(star_only) {
        toks.pop();
    }
    if toks.is_empty() {
        if text.contains('*') {
            // `*` alone: everything; `body:*`: records with a non-empty body.
            return Ok(if field { Node::BodyAny } else { Node::All });
        }
        return Err(nothing_to_search(text, pos));
    }
    let mut parts = Vec::with_capacity(toks.len());
    for (offset, mut t) in toks.into_iter().enumerate() {
        if star_only(&t) {
            continue;
        }
        let pattern = if has_wildcard(&t) {
            glob(t, pos)?
        } else {
            tokenizer::cut(&mut t);
            Pattern::Exact(t)
        };
        parts.push((offset, pattern));
    }
    Ok(Node::Body(parts))
}

fn nothing_to_search(text: &str, pos: usize) -> QueryError {
    QueryError::new(
        pos,
        format!("nothing to search for in `{text}`: words are made of letters, digits and `_`"),
    )
}

/// Builds a wildcard pattern, checking now that its automaton compiles (a pattern with
/// many `?` after a `*` can exceed the automaton's size limit) so compiling to tantivy
/// cannot fail later.
fn glob(pattern: String, pos: usize) -> Result<Pattern, QueryError> {
    let glob = Glob::new(pattern);
    if RegexQuery::from_pattern(&glob.regex, Field::from_field_id(0)).is_err() {
        return Err(QueryError::new(
            pos,
            format!("wildcard pattern `{}` is too complex", glob.glob),
        ));
    }
    Ok(Pattern::Glob(glob))
}

/// A value of an exact field: a glob when unquoted with wildcards, else exact.
fn exact_value(value: String, quoted: bool, pos: usize) -> Result<Pattern, QueryError> {
    if !quoted && has_wildcard(&value) {
        glob(value, pos)
    } else {
        Ok(Pattern::Exact(value))
    }
}

fn field(
    name: &str,
    name_pos: usize,
    cmp: Cmp,
    value: &str,
    value_pos: usize,
    quoted: bool,
) -> Result<Node, QueryError> {
    let lower = name.to_ascii_lowercase();
    let is_severity = matches!(lower.as_str(), "severity" | "level");
    let known = is_severity
        || lower.starts_with("attr.")
        || matches!(
            lower.as_str(),
            "service" | "severity_text" | "trace_id" | "span_id" | "body"
        );
    if !known {
        return Err(QueryError::new(
            name_pos,
            format!(
                "unknown field `{name}` (fields: {KNOWN_FIELDS}); put text with `:` in quotes \
                 to search for it"
            ),
        ));
    }
    if cmp != Cmp::Eq && !is_severity {
        return Err(QueryError::new(
            name_pos + name.chars().count(),
            format!("`{}` only applies to severity; use `{name}:`", cmp.as_str()),
        ));
    }
    if value.is_empty() {
        return Err(QueryError::new(
            value_pos,
            format!("empty value for `{name}`"),
        ));
    }
    if is_severity {
        return severity(cmp, value, value_pos);
    }
    match lower.as_str() {
        "service" => Ok(Node::Exact(
            ExactField::Service,
            exact_value(value.to_string(), quoted, value_pos)?,
        )),
        "severity_text" => Ok(Node::Exact(
            ExactField::SeverityText,
            exact_value(value.to_lowercase(), quoted, value_pos)?,
        )),
        "trace_id" => hex_id(
            ExactField::TraceId,
            "trace_id",
            32,
            value,
            value_pos,
            quoted,
        ),
        "span_id" => hex_id(ExactField::SpanId, "span_id", 16, value, value_pos, quoted),
        "body" => body(value, quoted, value_pos, true),
        _ => {
            // `attr.<key>`: the key keeps its case.
            let key = &name["attr.".len()..];
            if key.is_empty() {
                return Err(QueryError::new(
                    name_pos,
                    "`attr.` needs a key: `attr.<key>:<value>`",
                ));
            }
            let pattern = if !quoted && has_wildcard(value) {
                glob(format!("{key}={value}"), value_pos)?
            } else {
                Pattern::Exact(attr_term(key, value))
            };
            Ok(Node::Exact(ExactField::Attr, pattern))
        }
    }
}

fn hex_id(
    field: ExactField,
    name: &str,
    digits: usize,
    value: &str,
    value_pos: usize,
    quoted: bool,
) -> Result<Node, QueryError> {
    let lower = value.to_ascii_lowercase();
    let wildcards = !quoted && has_wildcard(&lower);
    if let Some((i, c)) = lower
        .chars()
        .enumerate()
        .find(|&(_, c)| !(c.is_ascii_hexdigit() || (wildcards && (c == '*' || c == '?'))))
    {
        // A quoted value starts after its quote (escapes aside, which hex cannot use).
        return Err(QueryError::new(
            value_pos + usize::from(quoted) + i,
            format!("`{name}` takes hex digits, found `{c}`"),
        ));
    }
    if !wildcards && lower.len() != digits {
        return Err(QueryError::new(
            value_pos,
            format!(
                "`{name}` must be {digits} hex digits, got {} (use `*` to match a prefix)",
                lower.len()
            ),
        ));
    }
    Ok(Node::Exact(field, exact_value(lower, quoted, value_pos)?))
}

/// Severity numbers for a range name or a number, compared with `cmp`. Fatal reaches up to
/// 255, as [`Severity::from_number`] counts numbers above 24 as fatal.
fn severity(cmp: Cmp, value: &str, value_pos: usize) -> Result<Node, QueryError> {
    let (lo, hi): (u8, u8) = if value.bytes().all(|b| b.is_ascii_digit()) {
        match value.parse::<u8>() {
            Ok(n) if n <= 24 => (n, n),
            _ => {
                return Err(QueryError::new(
                    value_pos,
                    format!("severity number `{value}` is out of range 0-24"),
                ));
            }
        }
    } else {
        match Severity::parse(value) {
            Some(Severity::Fatal) => (Severity::Fatal.numbers().0, u8::MAX),
            Some(s) => s.numbers(),
            None => {
                let names: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
                return Err(QueryError::new(
                    value_pos,
                    format!(
                        "unknown severity `{value}` (use {} or a number 0-24)",
                        names.join(", ")
                    ),
                ));
            }
        }
    };
    let (lo, hi) = match cmp {
        Cmp::Eq => (lo, hi),
        Cmp::Ge => (lo, u8::MAX),
        Cmp::Gt => match hi.checked_add(1) {
            Some(l) => (l, u8::MAX),
            None => return Ok(Node::Never),
        },
        Cmp::Le => (0, hi),
        Cmp::Lt => match lo.checked_sub(1) {
            Some(h) => (0, h),
            None => return Ok(Node::Never),
        },
    };
    Ok(Node::Severity { lo, hi })
}

impl Node {
    /// AND of `nodes`, flattened: `All` dropped, `Never` absorbs.
    pub(crate) fn and(nodes: Vec<Node>) -> Node {
        let mut out = Vec::with_capacity(nodes.len());
        for n in nodes {
            match n {
                Node::All => {}
                Node::Never => return Node::Never,
                Node::And(inner) => out.extend(inner),
                n => out.push(n),
            }
        }
        match out.len() {
            0 => Node::All,
            1 => out.pop().unwrap_or(Node::All),
            _ => Node::And(out),
        }
    }

    /// OR of `nodes`, flattened: `Never` dropped, `All` absorbs.
    pub(crate) fn or(nodes: Vec<Node>) -> Node {
        let mut out = Vec::with_capacity(nodes.len());
        for n in nodes {
            match n {
                Node::Never => {}
                Node::All => return Node::All,
                Node::Or(inner) => out.extend(inner),
                n => out.push(n),
            }
        }
        match out.len() {
            0 => Node::Never,
            1 => out.pop().unwrap_or(Node::Never),
            _ => Node::Or(out),
        }
    }

    pub(crate) fn not(node: Node) -> Node {
        match node {
            Node::All => Node::Never,
            Node::Never => Node::All,
            Node::Not(inner) => *inner,
            n => Node::Not(Box::new(n)),
        }
    }
}
