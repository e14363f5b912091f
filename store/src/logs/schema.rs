//! The tantivy schema of one log partition.
//!
//! Every record is one document. The fields that find and count records are indexed or
//! fast (column) fields; the record itself is kept in the store's own encoding, split
//! between the doc store (the stored `record` field: what differs from line to line) and
//! columns (what repeats or is a number).
//!
//! | field | type | holds |
//! | --- | --- | --- |
//! | `time` | u64, fast only | `time_unix_nano` |
//! | `severity` | u64, fast only | the severity number (0-24) |
//! | `severity_text` | raw string, indexed | severity text as sent, lower-cased |
//! | `service` | raw string, indexed | the service name as sent |
//! | `trace_id`, `span_id` | raw string, indexed | lower-case hex |
//! | `body` | text, [`BODY_TOKENIZER`], indexed (doc ids only) | the body |
//! | `attr` | raw string, indexed, multi-valued | `key=value` for every resource and record attribute |
//! | `source` | bytes, fast only | service and resource attributes, in the store's encoding |
//! | `record` | bytes, stored | the rest of the [`LogRecord`](super::LogRecord), in the store's encoding |
//!
//! Size is what shaped it: searches never score, so no field keeps field norms or term
//! frequencies; time and severity are only ever filtered by range, which tantivy answers
//! from the columns, so they are not in the inverted index; the body keeps no positions
//! (they were a fifth of a partition): a phrase is searched as the conjunction of its tokens
//! and the store checks each candidate against the query
//! ([`LogQuery::needs_verification`](super::LogQuery::needs_verification)); and the
//! source, the same for every line of a process, is a dictionary-encoded column instead of
//! a few compressed bytes in every stored record.

use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, FAST, STORED,
};

/// Name under which the body tokenizer ([`super::tokenizer`]) is registered on every index.
pub const BODY_TOKENIZER: &str = "lookout_body";

/// Attribute values longer than this are indexed cut to this many bytes (at a character
/// boundary): the stored record keeps them whole. Exact matches on longer values therefore
/// use the cut value; see the query language.
pub const MAX_INDEXED_ATTR_VALUE_BYTES: usize = 256;

/// The schema and its field handles.
#[derive(Clone, Debug)]
pub struct LogSchema {
    pub schema: Schema,
    pub time: Field,
    pub severity: Field,
    pub severity_text: Field,
    pub service: Field,
    pub trace_id: Field,
    pub span_id: Field,
    pub body: Field,
    pub attr: Field,
    pub source: Field,
    pub record: Field,
}

impl LogSchema {
    pub fn new() -> LogSchema {
        let mut b = Schema::builder();
        let time = b.add_u64_field("time", NumericOptions::default().set_fast());
        let severity = b.add_u64_field("severity", NumericOptions::default().set_fast());
        let severity_text = b.add_text_field("severity_text", raw());
        let service = b.add_text_field("service", raw());
        let trace_id = b.add_text_field("trace_id", raw());
        let span_id = b.add_text_field("span_id", raw());
        let body = b.add_text_field(
            "body",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(BODY_TOKENIZER)
                    .set_index_option(IndexRecordOption::Basic)
                    .set_fieldnorms(false),
            ),
        );
        let attr = b.add_text_field("attr", raw());
        let source = b.add_bytes_field("source", FAST);
        let record = b.add_bytes_field("record", STORED);
        LogSchema {
            schema: b.build(),
            time,
            severity,
            severity_text,
            service,
            trace_id,
            span_id,
            body,
            attr,
            source,
            record,
        }
    }
}

/// An untokenized field: one term per value, no frequencies, positions or field norms.
fn raw() -> TextOptions {
    TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_index_option(IndexRecordOption::Basic)
            .set_fieldnorms(false),
    )
}

impl Default for LogSchema {
    fn default() -> Self {
        LogSchema::new()
    }
}

/// The `attr` term for one attribute: `key=value`, the value cut to
/// [`MAX_INDEXED_ATTR_VALUE_BYTES`] at a character boundary.
pub fn attr_term(key: &str, value: &str) -> String {
    let mut end = value.len().min(MAX_INDEXED_ATTR_VALUE_BYTES);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let mut term = String::with_capacity(key.len() + 1 + end);
    term.push_str(key);
    term.push('=');
    term.push_str(&value[..end]);
    term
}
