//! Evaluates a query against one record (live tail), with exactly the index's view of the
//! record: the body through the body tokenizer, the exact fields as
//! [`index_fields`](super::index_fields) writes them.

use std::cell::OnceCell;

use super::ast::{ExactField, Node, Pattern};
use crate::logs::schema::attr_term;
use crate::logs::{tokenizer, LogRecord};

/// The record and its body tokens, tokenized at most once per evaluation.
pub(crate) struct Ctx<'a> {
    record: &'a LogRecord,
    body: OnceCell<Tokens>,
}

/// A body's tokens, in one buffer (the store verifies many records per search: one
/// allocation per token would dominate).
struct Tokens {
    text: String,
    ends: Vec<usize>,
}

impl Tokens {
    fn new(body: &str) -> Tokens {
        let mut t = Tokens {
            text: String::with_capacity(body.len()),
            ends: Vec::new(),
        };
        tokenizer::for_each_token(body, |tok| {
            t.text.push_str(tok);
            t.ends.push(t.text.len());
        });
        t
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(record: &'a LogRecord) -> Self {
        Ctx {
            record,
            body: OnceCell::new(),
        }
    }

    fn body(&self) -> &Tokens {
        self.body.get_or_init(|| Tokens::new(&self.record.body))
    }
}

pub(crate) fn eval(node: &Node, ctx: &Ctx<'_>) -> bool {
    match node {
        Node::All => true,
        Node::Never => false,
        Node::And(all) => all.iter().all(|n| eval(n, ctx)),
        Node::Or(any) => any.iter().any(|n| eval(n, ctx)),
        Node::Not(n) => !eval(n, ctx),
        Node::Body(parts) => phrase(ctx.body(), parts),
        Node::BodyAny => !ctx.body().is_empty(),
        Node::Severity { lo, hi } => (*lo..=*hi).contains(&ctx.record.severity_number),
        Node::Exact(field, pattern) => exact(ctx.record, *field, pattern),
    }
}

/// True when the parts match at some start position (parts at their offsets from it).
fn phrase(tokens: &Tokens, parts: &[(usize, Pattern)]) -> bool {
    let span = parts.last().map_or(0, |(offset, _)| *offset);
    if tokens.len() <= span {
        return false;
    }
    (0..tokens.len() - span).any(|start| {
        parts
            .iter()
            .all(|(offset, p)| p.matches(tokens.get(start + offset)))
    })
}

fn exact(record: &LogRecord, field: ExactField, pattern: &Pattern) -> bool {
    match field {
        ExactField::Service => pattern.matches(&record.service),
        ExactField::SeverityText => {
            !record.severity_text.is_empty()
                && pattern.matches(&record.severity_text.to_lowercase())
        }
        ExactField::TraceId => record
            .trace_id
            .is_some_and(|id| pattern.matches(&id.to_string())),
        ExactField::SpanId => record
            .span_id
            .is_some_and(|id| pattern.matches(&id.to_string())),
        ExactField::Attr => record
            .resource
            .iter()
            .chain(&record.attributes)
            .any(|(k, v)| pattern.matches(&attr_term(k, v))),
    }
}
