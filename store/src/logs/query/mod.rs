//! The log query language: parse (errors carry the character position), evaluate against
//! one record (live tail), compile to a tantivy query (search).
//!
//! * [`lexer`]: characters to tokens (words, quoted strings, field tests, operators);
//! * [`parser`]: tokens to the [`ast`] tree, with each field test's meaning (severity
//!   ranges, hex ids, `attr` terms, body tokenization);
//! * [`matcher`]: the tree against one [`LogRecord`];
//! * [`compile`]: the tree to tantivy (exact, or a superset to verify with the matcher when
//!   the query has a phrase), and [`index_fields`], what the store indexes per record so
//!   both agree.
//!
//! Language (README "Logs" has the user-facing version):
//! ```text
//! query   = [ or ] ;                      (* empty: every record *)
//! or      = and { "OR" and } ;
//! and     = unary { [ "AND" ] unary } ;
//! unary   = ( "NOT" | "-" ) unary | primary ;
//! primary = "(" or ")" | field | '"' phrase '"' | word ;
//! field   = name ( ":" | ">=" | ">" | "<=" | "<" ) ( word | '"' text '"' ) ;
//! name    = "service" | "severity" | "level" | "severity_text" | "trace_id" | "span_id"
//!         | "body" | "attr." key ;
//! ```

mod ast;
mod compile;
mod lexer;
mod matcher;
mod parser;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

pub use compile::index_fields;

use super::schema::LogSchema;
use super::LogRecord;

/// A parsed query. Cheap to clone; compare with `==` (same text, same meaning).
#[derive(Clone, Debug, PartialEq)]
pub struct LogQuery {
    source: String,
    root: ast::Node,
}

/// A query that does not parse: what is wrong and where (0-based character offset into the
/// query text).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position}")]
pub struct QueryError {
    pub position: usize,
    pub message: String,
}

impl QueryError {
    pub(crate) fn new(position: usize, message: impl Into<String>) -> Self {
        QueryError {
            position,
            message: message.into(),
        }
    }
}

impl LogQuery {
    /// Parses `text`. The empty query (or only whitespace, or `*`) matches every record.
    pub fn parse(text: &str) -> Result<LogQuery, QueryError> {
        Ok(LogQuery {
            source: text.to_string(),
            root: parser::parse(text)?,
        })
    }

    /// The query that matches every record.
    pub fn all() -> LogQuery {
        LogQuery {
            source: String::new(),
            root: ast::Node::All,
        }
    }

    /// The text the query was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when the query matches every record (the store can skip the index).
    pub fn is_all(&self) -> bool {
        self.root == ast::Node::All
    }

    /// True when `record` matches: the query's meaning. The index search agrees (given the
    /// store indexes records with [`index_fields`]), after verification when
    /// [`LogQuery::needs_verification`].
    pub fn matches(&self, record: &LogRecord) -> bool {
        matcher::eval(&self.root, &matcher::Ctx::new(record))
    }

    /// True when [`LogQuery::to_tantivy`] selects a superset of the matching records (the
    /// query has a phrase: the body is indexed without positions), so a search must check
    /// each candidate with [`LogQuery::matches`] on the stored record. False for queries of
    /// terms, wildcards, fields and severities, which the index answers exactly.
    pub fn needs_verification(&self) -> bool {
        compile::needs_verification(&self.root)
    }

    /// The tantivy query for one partition built with `schema` (no time restriction: the
    /// store adds its range): exactly the matching records, or a superset of them when
    /// [`LogQuery::needs_verification`]. Infallible: everything that could fail was checked
    /// by [`LogQuery::parse`].
    pub fn to_tantivy(&self, schema: &LogSchema) -> Box<dyn tantivy::query::Query> {
        compile::compile(&self.root, schema)
    }
}

impl Default for LogQuery {
    fn default() -> Self {
        LogQuery::all()
    }
}

impl FromStr for LogQuery {
    type Err = QueryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LogQuery::parse(s)
    }
}

impl fmt::Display for LogQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}
