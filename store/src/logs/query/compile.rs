//! Compiles a query to a tantivy query over one partition, and says what the store must
//! index for it to be right.
//!
//! # What the store indexes per record ([`index_fields`] does exactly this)
//!
//! | field | value written | when |
//! | --- | --- | --- |
//! | `time` | `time_unix_nano` | always |
//! | `severity` | `severity_number` | always |
//! | `severity_text` | `severity_text.to_lowercase()` (Unicode lower case) | text not empty |
//! | `service` | `service`, as sent (an empty name is the empty term) | always |
//! | `trace_id` | lower-case hex (`TraceId`'s `Display`) | `Some` |
//! | `span_id` | lower-case hex (`SpanId`'s `Display`) | `Some` |
//! | `body` | `body` (tokenized by [`BODY_TOKENIZER`](crate::logs::schema::BODY_TOKENIZER), which must be registered with [`tokenizer::register`](crate::logs::tokenizer::register)) | always |
//! | `attr` | [`attr_term`]`(key, value)` for every resource attribute, then every record attribute | one value each |
//!
//! [`LogQuery::matches`](super::LogQuery::matches) reads records the same way, so live tail
//! and search agree; the `record` stored field is the store's own business.
//!
//! # What each query node becomes
//! * body term: `TermQuery`; wildcard term: `RegexQuery`; phrase: `PhraseQuery` with
//!   offsets (a `*` token in the middle is a skipped position), or `RegexPhraseQuery` when
//!   a phrase token has a wildcard;
//! * exact fields: `TermQuery` or `RegexQuery` on the raw field;
//! * severity: `RangeQuery` on the `severity` u64 field;
//! * AND / OR / NOT: `BooleanQuery` (`Must` / `Should` / `MustNot`); a clause list with
//!   only negations gets an `AllQuery` `Must` clause, since tantivy matches nothing for pure
//!   negation.

use std::ops::Bound;

use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, Occur, PhraseQuery, Query, RangeQuery, RegexPhraseQuery,
    RegexQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{TantivyDocument, Term};

use super::ast::{ExactField, Glob, Node, Pattern};
use crate::logs::schema::{attr_term, LogSchema};
use crate::logs::LogRecord;

/// How many terms the wildcard tokens of one phrase may expand to per segment (tantivy's
/// default, 16,384, is low for a log vocabulary full of ids).
const MAX_PHRASE_EXPANSIONS: u32 = 1 << 18;

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

pub(crate) fn compile(node: &Node, s: &LogSchema) -> Box<dyn Query> {
    match node {
        Node::All => Box::new(AllQuery),
        Node::Never => Box::new(EmptyQuery),
        Node::And(all) => {
            let mut clauses: Vec<(Occur, Box<dyn Query>)> = all
                .iter()
                .map(|n| match n {
                    Node::Not(inner) => (Occur::MustNot, compile(inner, s)),
                    n => (Occur::Must, compile(n, s)),
                })
                .collect();
            if clauses.iter().all(|(o, _)| *o == Occur::MustNot) {
                clauses.push((Occur::Must, Box::new(AllQuery)));
            }
            Box::new(BooleanQuery::new(clauses))
        }
        Node::Or(any) => Box::new(BooleanQuery::new(
            any.iter().map(|n| (Occur::Should, compile(n, s))).collect(),
        )),
        Node::Not(inner) => Box::new(BooleanQuery::new(vec![
            (Occur::Must, Box::new(AllQuery)),
            (Occur::MustNot, compile(inner, s)),
        ])),
        Node::Body(parts) => body(parts, s.body),
        Node::BodyAny => regex(&Glob::new("*".into()).regex, s.body),
        Node::Severity { lo, hi } => Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_u64(s.severity, u64::from(*lo))),
            Bound::Included(Term::from_field_u64(s.severity, u64::from(*hi))),
        )),
        Node::Exact(field, pattern) => {
            let f = match field {
                ExactField::Service => s.service,
                ExactField::SeverityText => s.severity_text,
                ExactField::TraceId => s.trace_id,
                ExactField::SpanId => s.span_id,
                ExactField::Attr => s.attr,
            };
            term(pattern, f)
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

fn body(parts: &[(usize, Pattern)], field: Field) -> Box<dyn Query> {
    if let [(_, p)] = parts {
        return term(p, field);
    }
    if parts.iter().all(|(_, p)| matches!(p, Pattern::Exact(_))) {
        let terms = parts
            .iter()
            .filter_map(|(offset, p)| match p {
                Pattern::Exact(t) => Some((*offset, Term::from_field_text(field, t))),
                Pattern::Glob(_) => None,
            })
            .collect();
        return Box::new(PhraseQuery::new_with_offset(terms));
    }
    let regexes = parts
        .iter()
        .map(|(offset, p)| {
            let re = match p {
                Pattern::Exact(t) => regex::escape(t),
                Pattern::Glob(g) => g.regex.clone(),
            };
            (*offset, re)
        })
        .collect();
    let mut q = RegexPhraseQuery::new_with_offset(field, regexes);
    q.set_max_expansions(MAX_PHRASE_EXPANSIONS);
    Box::new(q)
}
