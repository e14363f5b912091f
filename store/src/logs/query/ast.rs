//! The parsed query: a small boolean tree over field tests, already normalized to what the
//! index holds (body tokens lower-cased and cut, `attr` terms as `key=value`, hex ids
//! lower-cased), so the record matcher and the tantivy compiler read the same values.

/// A node of the query tree.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    /// Every record (the empty query, `*`).
    All,
    /// No record (e.g. `severity<0`, or `NOT *`).
    Never,
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    /// Body tokens at relative positions: one part is a term, several a phrase. Parts are
    /// sorted by offset, the first at offset 0; offsets may skip positions (`a.*.b`).
    Body(Vec<(usize, Pattern)>),
    /// The body has at least one token (`body:*`).
    BodyAny,
    /// A test on one of the exact (untokenized) fields.
    Exact(ExactField, Pattern),
    /// Severity number in `lo..=hi`.
    Severity {
        lo: u8,
        hi: u8,
    },
}

/// The untokenized fields, each indexed as one term per record (several for `Attr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExactField {
    Service,
    /// Lower-cased severity text.
    SeverityText,
    TraceId,
    SpanId,
    /// `key=value` terms ([`attr_term`](crate::logs::schema::attr_term)).
    Attr,
}

/// What one term must be.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Pattern {
    /// Exactly this term.
    Exact(String),
    /// A wildcard pattern: `*` any characters, `?` one character, the rest literal.
    Glob(Glob),
}

impl Pattern {
    pub(crate) fn matches(&self, term: &str) -> bool {
        match self {
            Pattern::Exact(t) => t == term,
            Pattern::Glob(g) => g.matches(term),
        }
    }
}

/// A wildcard pattern with its regex (for tantivy's `RegexQuery`, which matches whole
/// terms).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Glob {
    pub(crate) glob: String,
    pub(crate) regex: String,
}

impl Glob {
    pub(crate) fn new(glob: String) -> Glob {
        let regex = glob_to_regex(&glob);
        Glob { glob, regex }
    }

    /// Whole-term wildcard match, the same semantics as the regex: `*` is any run of
    /// characters (newlines included), `?` exactly one character.
    pub(crate) fn matches(&self, term: &str) -> bool {
        glob_match(&self.glob, term)
    }
}

/// True when `s` holds a wildcard character.
pub(crate) fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// Everything but `*` and `?` is escaped, so no input can inject regex syntax; `(?s:...)`
/// lets the wildcards cross newlines (exact fields may hold any text).
fn glob_to_regex(glob: &str) -> String {
    let mut re = String::with_capacity(glob.len() + 8);
    let mut literal = String::new();
    let mut buf = [0u8; 4];
    for c in glob.chars() {
        match c {
            '*' | '?' => {
                if !literal.is_empty() {
                    re.push_str(&regex::escape(&literal));
                    literal.clear();
                }
                re.push_str(if c == '*' { "(?s:.*)" } else { "(?s:.)" });
            }
            _ => literal.push_str(c.encode_utf8(&mut buf)),
        }
    }
    if !literal.is_empty() {
        re.push_str(&regex::escape(&literal));
    }
    re
}

/// Iterative wildcard match with single-star backtracking: O(pattern × text) at worst, no
/// recursion, no allocation.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: &[u8] = pattern.as_bytes();
    let t: &[u8] = text.as_bytes();
    // Work on characters: `?` must consume one whole character, so step over UTF-8
    // sequences by their lengths.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            pi += 1;
            star = Some((pi, ti));
            continue;
        }
        if pi < p.len() {
            let tl = utf8_len(t[ti]);
            if p[pi] == b'?' {
                pi += 1;
                ti += tl;
                continue;
            }
            let pl = utf8_len(p[pi]);
            if pl == tl && p.get(pi..pi + pl) == t.get(ti..ti + tl) {
                pi += pl;
                ti += tl;
                continue;
            }
        }
        match star {
            Some((sp, st)) => {
                // Let the last star swallow one more character and retry after it.
                let next = st + utf8_len(t[st]);
                star = Some((sp, next));
                pi = sp;
                ti = next;
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// Length of the UTF-8 sequence starting with `first` (inputs are `str`, so valid).
fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matching() {
        let m = |p: &str, t: &str| glob_match(p, t);
        assert!(m("timeout*", "timeout"));
        assert!(m("timeout*", "timeouts"));
        assert!(!m("timeout*", "time"));
        assert!(m("*out", "timeout"));
        assert!(m("t?me*", "time"));
        assert!(!m("t?me", "tme"));
        assert!(m("*", ""));
        assert!(!m("?", ""));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("数?库", "数据库"));
        assert!(!m("数??库", "数据库"));
        assert!(m("*é", "café"));
        assert!(m("a*", "a\nb"));
        assert!(m("**a**", "xax"));
        assert!(!m("abc", "abcd"));
    }

    #[test]
    fn regexes_escape_everything_but_wildcards() {
        assert_eq!(glob_to_regex("a.b*"), r"a\.b(?s:.*)");
        assert_eq!(glob_to_regex("(x)?"), r"\(x\)(?s:.)");
        assert_eq!(glob_to_regex("[a-z]+$^|{2}"), r"\[a\-z\]\+\$\^\|\{2\}");
    }
}
