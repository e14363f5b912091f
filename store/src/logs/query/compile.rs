//! Compiles a query to a tantivy query over one partition, and says what the store must
//! index for it to be right.
//!
//! # What the store indexes per record ([`index_fields`] does exactly this)
//!
//! | field | value written | when |
//! | --- | --- | --- |
//! | `time` | `time_unix_nano` (a fast field only) | always |
//! | `severity` | `severity_number` (a fast field only) | always |
//! | `severity_text` | `severity_text.to_lowercase()` (Unicode lower case) | text not empty |
//! | `service` | `service`, as sent (an empty name is the empty term) | always |
//! | `trace_id` | lower-case hex (`TraceId`'s `Display`) | `Some` |
//! | `span_id` | lower-case hex (`SpanId`'s `Display`) | `Some` |
//! | `body` | `body`, doc ids only (tokenized by [`BODY_TOKENIZER`](crate::logs::schema::BODY_TOKENIZER), which must be registered with [`tokenizer::register`](crate::logs::tokenizer::register)) | always |
//! | `attr` | [`attr_term`]`(key, value)` for every resource attribute, then every record attribute | one value each |
//!
//! [`LogQuery::matches`](super::LogQuery::matches) reads records the same way, so live tail
//! and search agree; the `record` stored field is the store's own business.
//!
//! # What each query node becomes
//! The body is indexed without positions (or frequencies), so the index alone cannot tell
//! a phrase from its words scattered over the line. A query with a phrase (several body
//! tokens: a quoted phrase, an IP, a path, a CJK word) is compiled to a *superset* of its
//! records and [`needs_verification`] says so: the store then checks every candidate with
//! [`LogQuery::matches`](super::LogQuery::matches) on the decoded record. Every other query
//! compiles to exactly its records.
//!
//! * body term: `TermQuery`; wildcard term: `RegexQuery`;
//! * phrase: the conjunction (`BooleanQuery` of `Must`) of its distinct tokens, each a
//!   `TermQuery` or a `RegexQuery`; under a `NOT` (where a superset would drop records) it
//!   is approximated from the other side, by nothing, so `NOT "a b"` selects every record
//!   and verification keeps the right ones;
//! * exact fields: `TermQuery` or `RegexQuery` on the raw field;
//! * severity: `RangeQuery` on the `severity` u64 fast field (a column scan; the field is
//!   not in the inverted index);
//! * AND / OR / NOT: `BooleanQuery` (`Must` / `Should` / `MustNot`); a clause list with
//!   only negations gets an `AllQuery` `Must` clause, since tantivy matches nothing for pure
//!   negation. Clauses that are trivially everything or nothing are simplified away.

use std::ops::Bound;

use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, Occur, Query, RangeQuery, RegexQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{TantivyDocument, Term};

use super::ast::{ExactField, Glob, Node, Pattern};
use crate::logs::schema::{attr_term, LogSchema};
use crate::logs::LogRecord;

/// Adds every searchable field of `record` to `doc` as the query language expects (see the
/// module documentation). The caller adds the stored `record` field.
pub fn index_fields(schema: &LogSchema, record: &LogRecord, doc: &mut TantivyDocument) {
    doc.add_u64(schema.time, record.time_unix_nano);
    doc.add_u64(schema.severity, u64::from(record.severity_number));
    if !record.severity_text.is_empty() {
        doc.add_text(schema.severity_text, record.severity_text.to_lowercase());
    }
    doc.add_text(schema.service, &record.service);
    if let Some(id) = record.trace_id {
        doc.add_text(schema.trace_id, id.to_string());
    }
    if let Some(id) = record.span_id {
        doc.add_text(schema.span_id, id.to_string());
    }
    doc.add_text(schema.body, &record.body);
    for (k, v) in record.resource.iter().chain(&record.attributes) {
        doc.add_text(schema.attr, attr_term(k, v));
    }
}

/// True when the compiled query can select records the query does not match, so the store
/// must check candidates with [`LogQuery::matches`](super::LogQuery::matches): the body has
/// no positions, so a phrase (several body tokens) is compiled to the conjunction of its
/// tokens.
pub(crate) fn needs_verification(node: &Node) -> bool {
    match node {
        Node::Body(parts) => parts.len() > 1,
        Node::And(v) | Node::Or(v) => v.iter().any(needs_verification),
        Node::Not(n) => needs_verification(n),
        Node::All | Node::Never | Node::BodyAny | Node::Exact(..) | Node::Severity { .. } => false,
    }
}

/// The tantivy query for `node`: exactly its records when [`needs_verification`] is false,
/// else a superset of them.
pub(crate) fn compile(node: &Node, s: &LogSchema) -> Box<dyn Query> {
    match approx(node, s, Side::Superset) {
        Approx::All => Box::new(AllQuery),
        Approx::Empty => Box::new(EmptyQuery),
        Approx::Query(q) => q,
    }
}

/// Which side an approximation errs on. A phrase is over-approximated by the conjunction
/// of its tokens and under-approximated by nothing; under a `NOT` the side flips.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Superset,
    Subset,
}

impl Side {
    fn flip(self) -> Side {
        match self {
            Side::Superset => Side::Subset,
            Side::Subset => Side::Superset,
        }
    }
}

/// A compiled node, with the trivial cases kept apart so they simplify away instead of
/// becoming `AllQuery` / `EmptyQuery` clauses.
enum Approx {
    All,
    Empty,
    Query(Box<dyn Query>),
}

fn approx(node: &Node, s: &LogSchema, side: Side) -> Approx {
    match node {
        Node::All => Approx::All,
        Node::Never => Approx::Empty,
        Node::And(all) => {
            let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(all.len() + 1);
            for n in all {
                let (negated, q) = match n {
                    Node::Not(inner) => (true, approx(inner, s, side.flip())),
                    n => (false, approx(n, s, side)),
                };
                match (negated, q) {
                    (false, Approx::All) | (true, Approx::Empty) => {}
                    (false, Approx::Empty) | (true, Approx::All) => return Approx::Empty,
                    (false, Approx::Query(q)) => clauses.push((Occur::Must, q)),
                    (true, Approx::Query(q)) => clauses.push((Occur::MustNot, q)),
                }
            }
            if clauses.is_empty() {
                return Approx::All;
            }
            if clauses.iter().all(|(o, _)| *o == Occur::MustNot) {
                // tantivy matches nothing for pure negation
                clauses.push((Occur::Must, Box::new(AllQuery)));
            }
            if let [(Occur::Must, _)] = clauses.as_slice() {
                return clauses.pop().map_or(Approx::All, |(_, q)| Approx::Query(q));
            }
            Approx::Query(Box::new(BooleanQuery::new(clauses)))
        }
        Node::Or(any) => {
            let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(any.len());
            for n in any {
                match approx(n, s, side) {
                    Approx::All => return Approx::All,
                    Approx::Empty => {}
                    Approx::Query(q) => clauses.push((Occur::Should, q)),
                }
            }
            match clauses.len() {
                0 => Approx::Empty,
                1 => clauses
                    .pop()
                    .map_or(Approx::Empty, |(_, q)| Approx::Query(q)),
                _ => Approx::Query(Box::new(BooleanQuery::new(clauses))),
            }
        }
        Node::Not(inner) => match approx(inner, s, side.flip()) {
            Approx::All => Approx::Empty,
            Approx::Empty => Approx::All,
            Approx::Query(q) => Approx::Query(Box::new(BooleanQuery::new(vec![
                (Occur::Must, Box::new(AllQuery)),
                (Occur::MustNot, q),
            ]))),
        },
        Node::Body(parts) => match (parts.as_slice(), side) {
            ([(_, p)], _) => Approx::Query(term(p, s.body)),
            (_, Side::Superset) => Approx::Query(conjunction(parts, s.body)),
            (_, Side::Subset) => Approx::Empty,
        },
        Node::BodyAny => Approx::Query(regex(&Glob::new("*".into()).regex, s.body)),
        Node::Severity { lo, hi } => Approx::Query(Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_u64(s.severity, u64::from(*lo))),
            Bound::Included(Term::from_field_u64(s.severity, u64::from(*hi))),
        ))),
        Node::Exact(field, pattern) => {
            let f = match field {
                ExactField::Service => s.service,
                ExactField::SeverityText => s.severity_text,
                ExactField::TraceId => s.trace_id,
                ExactField::SpanId => s.span_id,
                ExactField::Attr => s.attr,
            };
            Approx::Query(term(pattern, f))
        }
    }
}

fn term(pattern: &Pattern, field: Field) -> Box<dyn Query> {
    match pattern {
        Pattern::Exact(t) => Box::new(TermQuery::new(
            Term::from_field_text(field, t),
            IndexRecordOption::Basic,
        )),
        Pattern::Glob(g) => regex(&g.regex, field),
    }
}

fn regex(pattern: &str, field: Field) -> Box<dyn Query> {
    match RegexQuery::from_pattern(pattern, field) {
        Ok(q) => Box::new(q),
        // Unreachable in practice: the parser compiled this same pattern and rejected the
        // query if it failed. Matching nothing is the safe answer if it ever did.
        Err(_) => Box::new(EmptyQuery),
    }
}

/// Every token of a phrase somewhere in the body, each distinct one once: a superset of
/// the phrase (the body is indexed without positions).
fn conjunction(parts: &[(usize, Pattern)], field: Field) -> Box<dyn Query> {
    let mut seen: Vec<&Pattern> = Vec::with_capacity(parts.len());
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(parts.len());
    for (_, p) in parts {
        if !seen.contains(&p) {
            seen.push(p);
            clauses.push((Occur::Must, term(p, field)));
        }
    }
    Box::new(BooleanQuery::new(clauses))
}
