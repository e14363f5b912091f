//! The tantivy schema of one log partition.
//!
//! Every record is one document. The whole record is kept in the stored `record` field in
//! the store's own encoding (tantivy's doc store compresses it); the other fields exist to
//! find and count records and are not stored.
//!
//! | field | type | what is indexed |
//! | --- | --- | --- |
//! | `time` | u64, indexed + fast | `time_unix_nano` |
//! | `severity` | u64, indexed + fast | the severity number (0-24) |
//! | `severity_text` | raw string | severity text as sent, lower-cased |
//! | `service` | raw string, fast | the service name as sent |
//! | `trace_id`, `span_id` | raw string | lower-case hex |
//! | `body` | text, [`BODY_TOKENIZER`], positions | the body |
//! | `attr` | raw string, multi-valued | `key=value` for every resource and record attribute |
//! | `record` | bytes, stored | the encoded [`LogRecord`](super::LogRecord) |

use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, FAST, STORED,
    STRING,
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
    pub record: Field,
}

impl LogSchema {
    pub fn new() -> LogSchema {
        let mut b = Schema::builder();
        let indexed_fast = NumericOptions::default().set_indexed().set_fast();
        let time = b.add_u64_field("time", indexed_fast.clone());
        let severity = b.add_u64_field("severity", indexed_fast);
        let severity_text = b.add_text_field("severity_text", STRING);
        let service = b.add_text_field("service", STRING | FAST);
        let trace_id = b.add_text_field("trace_id", STRING);
        let span_id = b.add_text_field("span_id", STRING);
        let body = b.add_text_field(
            "body",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(BODY_TOKENIZER)
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            ),
        );
        let attr = b.add_text_field("attr", STRING);
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
            record,
        }
    }
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
