//! Archived spans as Parquet: one row per span, sorted by service then start time.
//!
//! ```text
//! message lookout_spans {
//!   required binary service (STRING);                 -- the resource's service.name
//!   required fixed_len_byte_array(16) trace_id;       -- with a bloom filter per row group
//!   required fixed_len_byte_array(8) span_id;
//!   optional fixed_len_byte_array(8) parent_span_id;  -- null for a root span
//!   required binary name (STRING);
//!   required binary kind (STRING);                    -- OTLP's name: SPAN_KIND_SERVER, ...
//!   required int64 start_time (TIMESTAMP(NANOS, true));
//!   required int64 end_time (TIMESTAMP(NANOS, true));
//!   required int64 duration_ns;
//!   required binary status_code (STRING);             -- STATUS_CODE_UNSET, _OK, _ERROR
//!   required binary status_message (STRING);
//!   required binary trace_state (STRING);
//!   required binary scope_name (STRING);
//!   required binary scope_version (STRING);
//!   required binary attributes (JSON);  -- OTLP/JSON KeyValue list: [{"key":..,"value":{"intValue":"3"}}]
//!   required binary events (JSON);      -- [{"timeUnixNano":"..","name":..,"attributes":[..]}]
//!   required binary links (JSON);       -- [{"traceId":hex,"spanId":hex,"traceState":..,"attributes":[..]}]
//!   required binary resource (JSON);    -- the resource's attributes, as `attributes`
//!   required int32 dropped_attributes_count;
//!   required int32 dropped_events_count;
//!   required int32 dropped_links_count;
//! }
//! ```
//!
//! Attribute values keep their OTLP type (OTLP/JSON's `AnyValue` form, bytes in base64), so
//! a span reads back exactly as it was stored. Row groups carry min/max statistics (a time
//! range skips row groups) and a bloom filter on `trace_id` (a trace lookup skips the row
//! groups that cannot hold it). See `docs/format/archive.md`.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use parquet::basic::Encoding;
use parquet::data_type::{
    ByteArray, ByteArrayType, FixedLenByteArray, FixedLenByteArrayType, Int32Type, Int64Type,
};
use parquet::file::properties::ReaderProperties;
use parquet::file::reader::{FileReader, RowGroupReader, SerializedFileReader};
use parquet::file::serialized_reader::ReadOptionsBuilder;
use parquet::file::statistics::Statistics;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;
use serde_json::{json, Value};

use super::metrics::WrittenFile;
use super::parquet_io::{check_schema, parquet_err, read_column, writer_properties};
use crate::error::{Result, StoreError};
use crate::traces::model::{
    AttrValue, Attributes, Resource, Span, SpanEvent, SpanId, SpanKind, SpanLink, StatusCode,
    StoredSpan, TraceId,
};

const SCHEMA: &str = "
message lookout_spans {
  required binary service (STRING);
  required fixed_len_byte_array(16) trace_id;
  required fixed_len_byte_array(8) span_id;
  optional fixed_len_byte_array(8) parent_span_id;
  required binary name (STRING);
  required binary kind (STRING);
  required int64 start_time (TIMESTAMP(NANOS, true));
  required int64 end_time (TIMESTAMP(NANOS, true));
  required int64 duration_ns;
  required binary status_code (STRING);
  required binary status_message (STRING);
  required binary trace_state (STRING);
  required binary scope_name (STRING);
  required binary scope_version (STRING);
  required binary attributes (JSON);
  required binary events (JSON);
  required binary links (JSON);
  required binary resource (JSON);
  required int32 dropped_attributes_count;
  required int32 dropped_events_count;
  required int32 dropped_links_count;
}";

pub const SCHEMA_VALUE: &str = "traces/v1";
/// Rows per row group (spans are larger than log lines: about 50 to 100 MB of spans).
pub const ROW_GROUP_ROWS: usize = 128 * 1024;
const ZSTD_LEVEL: i32 = 9;
const TRACE_ID_COLUMN: usize = 1;
const START_COLUMN: usize = 6;
/// Bloom filter false positives per row group a trace lookup decodes for nothing.
const BLOOM_FPP: f64 = 0.01;

fn ns(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn bad(column: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("archived span {column}: {why}"))
}

// ---- attribute values as OTLP/JSON ---------------------------------------------------

fn any_value(v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => json!({ "stringValue": s }),
        AttrValue::Bool(b) => json!({ "boolValue": b }),
        // OTLP/JSON writes 64-bit integers as strings
        AttrValue::Int(i) => json!({ "intValue": i.to_string() }),
        AttrValue::Double(d) if d.is_finite() => json!({ "doubleValue": d }),
        AttrValue::Double(d) => {
            let text = if d.is_nan() {
                "NaN"
            } else if *d > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            json!({ "doubleValue": text })
        }
        AttrValue::Bytes(b) => {
            json!({ "bytesValue": base64::engine::general_purpose::STANDARD.encode(b) })
        }
        AttrValue::Array(items) => {
            json!({ "arrayValue": { "values": items.iter().map(any_value).collect::<Vec<_>>() } })
        }
        AttrValue::KvList(kvs) => json!({ "kvlistValue": { "values": key_values(kvs) } }),
    }
}

fn key_values(attrs: &Attributes) -> Value {
    Value::Array(
        attrs
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": any_value(v) }))
            .collect(),
    )
}

fn parse_any(v: &Value) -> std::result::Result<AttrValue, String> {
    let obj = v.as_object().ok_or("a value is not an object")?;
    let (kind, inner) = obj.iter().next().ok_or("an empty value")?;
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .ok_or(format!("{kind} is not a string"))
    };
    Ok(match kind.as_str() {
        "stringValue" => AttrValue::Str(text(inner)?),
        "boolValue" => AttrValue::Bool(inner.as_bool().ok_or("boolValue is not a boolean")?),
        "intValue" => AttrValue::Int(text(inner)?.parse().map_err(|e| format!("intValue: {e}"))?),
        "doubleValue" => AttrValue::Double(match inner {
            Value::String(s) => match s.as_str() {
                "NaN" => f64::NAN,
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                other => return Err(format!("doubleValue {other:?}")),
            },
            n => n.as_f64().ok_or("doubleValue is not a number")?,
        }),
        "bytesValue" => AttrValue::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(text(inner)?)
                .map_err(|e| format!("bytesValue: {e}"))?,
        ),
        "arrayValue" => AttrValue::Array(
            values_of(inner)?
                .iter()
                .map(parse_any)
                .collect::<std::result::Result<_, _>>()?,
        ),
        "kvlistValue" => {
            AttrValue::KvList(parse_key_values(&Value::Array(values_of(inner)?.to_vec()))?)
        }
        other => return Err(format!("unknown value kind {other}")),
    })
}

fn values_of(v: &Value) -> std::result::Result<&[Value], String> {
    v.get("values")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| "a list value without values".to_string())
}

fn parse_key_values(v: &Value) -> std::result::Result<Attributes, String> {
    v.as_array()
        .ok_or("attributes are not a list")?
        .iter()
        .map(|kv| {
            let key = kv
                .get("key")
                .and_then(Value::as_str)
                .ok_or("an attribute without a key")?;
            let value = kv.get("value").ok_or("an attribute without a value")?;
            Ok((key.to_string(), parse_any(value)?))
        })
        .collect()
}

fn events_json(events: &[SpanEvent]) -> Value {
    Value::Array(
        events
            .iter()
            .map(|e| {
                json!({
                    "timeUnixNano": e.time_unix_nano.to_string(),
                    "name": e.name,
                    "attributes": key_values(&e.attributes),
                })
            })
            .collect(),
    )
}

fn links_json(links: &[SpanLink]) -> Value {
    Value::Array(
        links
            .iter()
            .map(|l| {
                json!({
                    "traceId": l.trace_id.to_string(),
                    "spanId": l.span_id.to_string(),
                    "traceState": l.trace_state,
                    "attributes": key_values(&l.attributes),
                })
            })
            .collect(),
    )
}

fn field<'a>(v: &'a Value, name: &str) -> std::result::Result<&'a Value, String> {
    v.get(name).ok_or_else(|| format!("missing {name}"))
}

fn field_str<'a>(v: &'a Value, name: &str) -> std::result::Result<&'a str, String> {
    field(v, name)?
        .as_str()
        .ok_or_else(|| format!("{name} is not a string"))
}

fn parse_events(v: &Value) -> std::result::Result<Vec<SpanEvent>, String> {
    v.as_array()
        .ok_or("events are not a list")?
        .iter()
        .map(|e| {
            Ok(SpanEvent {
                time_unix_nano: field_str(e, "timeUnixNano")?
                    .parse()
                    .map_err(|err| format!("timeUnixNano: {err}"))?,
                name: field_str(e, "name")?.to_string(),
                attributes: parse_key_values(field(e, "attributes")?)?,
            })
        })
        .collect()
}

fn parse_links(v: &Value) -> std::result::Result<Vec<SpanLink>, String> {
    v.as_array()
        .ok_or("links are not a list")?
        .iter()
        .map(|l| {
            Ok(SpanLink {
                trace_id: TraceId::from_hex(field_str(l, "traceId")?)?,
                span_id: SpanId::from_hex(field_str(l, "spanId")?)?,
                trace_state: field_str(l, "traceState")?.to_string(),
                attributes: parse_key_values(field(l, "attributes")?)?,
            })
        })
        .collect()
}

fn status_code(text: &str) -> Option<StatusCode> {
    [StatusCode::Unset, StatusCode::Ok, StatusCode::Error]
        .into_iter()
        .find(|c| c.otlp_name() == text)
}

// ---- writing ------------------------------------------------------------------------

/// One column's values for a row group, in schema order.
enum ColumnValues {
    Text(Vec<ByteArray>),
    Int64(Vec<i64>),
    Int32(Vec<i32>),
    /// Values of the rows that have one, and a definition level per row (all 1 for a
    /// required column).
    Fixed(Vec<FixedLenByteArray>, Option<Vec<i16>>),
}

fn text(s: &str) -> ByteArray {
    ByteArray::from(Bytes::from(s.as_bytes().to_vec()))
}

fn fixed(b: &[u8]) -> FixedLenByteArray {
    FixedLenByteArray::from(ByteArray::from(b.to_vec()))
}

fn columns_of(group: &[StoredSpan]) -> Vec<ColumnValues> {
    use ColumnValues::{Fixed, Int32, Int64, Text};
    let texts =
        |f: &dyn Fn(&StoredSpan) -> String| Text(group.iter().map(|s| text(&f(s))).collect());
    let count = |f: &dyn Fn(&Span) -> u32| {
        Int32(
            group
                .iter()
                .map(|s| i32::try_from(f(&s.span)).unwrap_or(i32::MAX))
                .collect(),
        )
    };
    // resources are shared by many spans: encoded once each
    let mut resources: HashMap<*const Resource, ByteArray> = HashMap::new();
    let resource = group
        .iter()
        .map(|s| {
            resources
                .entry(Arc::as_ptr(&s.resource))
                .or_insert_with(|| text(&key_values(&s.resource.attributes).to_string()))
                .clone()
        })
        .collect();
    vec![
        texts(&|s| s.resource.service_name.clone()),
        Fixed(
            group.iter().map(|s| fixed(&s.span.trace_id.0)).collect(),
            None,
        ),
        Fixed(
            group.iter().map(|s| fixed(&s.span.span_id.0)).collect(),
            None,
        ),
        Fixed(
            group
                .iter()
                .filter_map(|s| s.span.parent_span_id.map(|p| fixed(&p.0)))
                .collect(),
            Some(
                group
                    .iter()
                    .map(|s| i16::from(s.span.parent_span_id.is_some()))
                    .collect(),
            ),
        ),
        texts(&|s| s.span.name.clone()),
        texts(&|s| s.span.kind.otlp_name().to_string()),
        Int64(group.iter().map(|s| ns(s.span.start_unix_nano)).collect()),
        Int64(group.iter().map(|s| ns(s.span.end_unix_nano)).collect()),
        Int64(group.iter().map(|s| ns(s.span.duration_nanos())).collect()),
        texts(&|s| s.span.status_code.otlp_name().to_string()),
        texts(&|s| s.span.status_message.clone()),
        texts(&|s| s.span.trace_state.clone()),
        texts(&|s| s.span.scope_name.clone()),
        texts(&|s| s.span.scope_version.clone()),
        texts(&|s| key_values(&s.span.attributes).to_string()),
        texts(&|s| events_json(&s.span.events).to_string()),
        texts(&|s| links_json(&s.span.links).to_string()),
        Text(resource),
        count(&|s| s.dropped_attributes_count),
        count(&|s| s.dropped_events_count),
        count(&|s| s.dropped_links_count),
    ]
}

/// Writes `spans` (in the order given: the caller sorts them by service, then start time)
/// into one Parquet file in memory. `None` for no spans. Blocking (compresses).
pub fn write_spans(spans: &[StoredSpan]) -> Result<Option<WrittenFile>> {
    if spans.is_empty() {
        return Ok(None);
    }
    let what = "writing an archive span file";
    let schema =
        Arc::new(parse_message_type(SCHEMA).map_err(|e| parquet_err("archive span schema", e))?);
    let trace_id = ColumnPath::from("trace_id");
    let mut props = writer_properties(SCHEMA_VALUE, ZSTD_LEVEL, ROW_GROUP_ROWS)?
        .set_column_bloom_filter_enabled(trace_id.clone(), true)
        .set_column_bloom_filter_fpp(trace_id.clone(), BLOOM_FPP)
        .set_column_bloom_filter_max_ndv(trace_id, spans.len().min(ROW_GROUP_ROWS) as u64);
    for name in ["start_time", "end_time", "duration_ns"] {
        let path = ColumnPath::from(name);
        props = props
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
    }
    for name in [
        "trace_id",
        "span_id",
        "parent_span_id",
        "attributes",
        "events",
    ] {
        props = props.set_column_dictionary_enabled(ColumnPath::from(name), false);
    }
    let mut writer = SerializedFileWriter::new(Vec::new(), schema, Arc::new(props.build()))
        .map_err(|e| parquet_err(what, e))?;
    for group in spans.chunks(ROW_GROUP_ROWS) {
        let mut columns = columns_of(group).into_iter();
        let mut rg = writer.next_row_group().map_err(|e| parquet_err(what, e))?;
        while let Some(mut col) = rg.next_column().map_err(|e| parquet_err(what, e))? {
            let written = match columns.next() {
                Some(ColumnValues::Text(v)) => {
                    col.typed::<ByteArrayType>().write_batch(&v, None, None)
                }
                Some(ColumnValues::Int64(v)) => {
                    col.typed::<Int64Type>().write_batch(&v, None, None)
                }
                Some(ColumnValues::Int32(v)) => {
                    col.typed::<Int32Type>().write_batch(&v, None, None)
                }
                Some(ColumnValues::Fixed(v, levels)) => col
                    .typed::<FixedLenByteArrayType>()
                    .write_batch(&v, levels.as_deref(), None),
                None => {
                    return Err(StoreError::Unavailable(format!(
                        "{what}: more columns than values"
                    )))
                }
            };
            written.map_err(|e| parquet_err(what, e))?;
            col.close().map_err(|e| parquet_err(what, e))?;
        }
        rg.close().map_err(|e| parquet_err(what, e))?;
    }
    let bytes = writer.into_inner().map_err(|e| parquet_err(what, e))?;
    let min = spans
        .iter()
        .map(|s| s.span.start_unix_nano)
        .min()
        .unwrap_or(0);
    let max = spans
        .iter()
        .map(|s| s.span.start_unix_nano)
        .max()
        .unwrap_or(0);
    let (min_ms, max_ms) = super::ms_range(min, max);
    Ok(Some(WrittenFile {
        bytes: Bytes::from(bytes),
        rows: spans.len() as u64,
        series: 0,
        // the manifest's times are milliseconds of span starts, rounded outwards
        min_time: min_ms,
        max_time: max_ms,
    }))
}

// ---- reading ------------------------------------------------------------------------

/// Which spans of a file [`read_spans`] returns.
#[derive(Clone, Copy, Debug)]
pub struct SpanFilter {
    /// Spans starting in `[start_ns, end_ns]`.
    pub start_ns: u64,
    pub end_ns: u64,
    /// Only this trace's spans (row groups its bloom filter rules out are skipped).
    pub trace_id: Option<TraceId>,
}

/// Appends the spans of one file that pass `filter`, in file order.
pub fn read_spans(file: Bytes, filter: SpanFilter, out: &mut Vec<StoredSpan>) -> Result<()> {
    let what = "reading an archive span file";
    let options = ReadOptionsBuilder::new()
        .with_reader_properties(
            ReaderProperties::builder()
                .set_read_bloom_filter(true)
                .build(),
        )
        .build();
    let reader =
        SerializedFileReader::new_with_options(file, options).map_err(|e| parquet_err(what, e))?;
    check_schema(&reader, SCHEMA_VALUE)?;
    let (lo, hi) = (ns(filter.start_ns), ns(filter.end_ns));
    let mut resources: HashMap<Vec<u8>, Arc<Resource>> = HashMap::new();
    for i in 0..reader.num_row_groups() {
        let meta = reader.metadata().row_group(i);
        if let Some(Statistics::Int64(s)) = meta.column(START_COLUMN).statistics() {
            if let (Some(&min), Some(&max)) = (s.min_opt(), s.max_opt()) {
                if max < lo || min > hi {
                    continue;
                }
            }
        }
        let rg = reader.get_row_group(i).map_err(|e| parquet_err(what, e))?;
        if let (Some(id), Some(bloom)) =
            (filter.trace_id, rg.get_column_bloom_filter(TRACE_ID_COLUMN))
        {
            if !bloom.check(&id.0[..]) {
                continue;
            }
        }
        read_row_group(
            &*rg,
            usize::try_from(meta.num_rows()).unwrap_or(0),
            filter,
            &mut resources,
            out,
        )?;
    }
    Ok(())
}

fn read_row_group(
    rg: &dyn RowGroupReader,
    rows: usize,
    filter: SpanFilter,
    resources: &mut HashMap<Vec<u8>, Arc<Resource>>,
    out: &mut Vec<StoredSpan>,
) -> Result<()> {
    let (lo, hi) = (ns(filter.start_ns), ns(filter.end_ns));
    let ints = |column: usize| -> Result<Vec<i64>> {
        let mut v = Vec::with_capacity(rows);
        read_column::<Int64Type>(rg, column, rows, None, &mut v)?;
        Ok(v)
    };
    let start = ints(START_COLUMN)?;
    let mut trace_ids = Vec::with_capacity(rows);
    read_column::<FixedLenByteArrayType>(rg, TRACE_ID_COLUMN, rows, None, &mut trace_ids)?;
    let wanted: Vec<bool> = (0..rows)
        .map(|r| {
            (lo..=hi).contains(&start[r])
                && filter.trace_id.is_none_or(|id| trace_ids[r].data() == id.0)
        })
        .collect();
    if !wanted.contains(&true) {
        return Ok(());
    }
    let texts = |column: usize| -> Result<Vec<ByteArray>> {
        let mut v = Vec::with_capacity(rows);
        read_column::<ByteArrayType>(rg, column, rows, None, &mut v)?;
        Ok(v)
    };
    let counts = |column: usize| -> Result<Vec<i32>> {
        let mut v = Vec::with_capacity(rows);
        read_column::<Int32Type>(rg, column, rows, None, &mut v)?;
        Ok(v)
    };
    let mut span_ids = Vec::with_capacity(rows);
    read_column::<FixedLenByteArrayType>(rg, 2, rows, None, &mut span_ids)?;
    let (mut parent_levels, mut parent_values) = (Vec::with_capacity(rows), Vec::new());
    read_column::<FixedLenByteArrayType>(
        rg,
        3,
        rows,
        Some(&mut parent_levels),
        &mut parent_values,
    )?;
    let mut parents = parent_values.into_iter();
    let parent_ids: Vec<Option<FixedLenByteArray>> = parent_levels
        .iter()
        .map(|&l| if l > 0 { parents.next() } else { None })
        .collect();
    let service = texts(0)?;
    let name = texts(4)?;
    let kind = texts(5)?;
    let end = ints(7)?;
    let status = texts(9)?;
    let status_message = texts(10)?;
    let trace_state = texts(11)?;
    let scope_name = texts(12)?;
    let scope_version = texts(13)?;
    let attributes = texts(14)?;
    let events = texts(15)?;
    let links = texts(16)?;
    let resource = texts(17)?;
    let dropped = [counts(18)?, counts(19)?, counts(20)?];
    let utf8 = |b: &ByteArray, column: &str| -> Result<String> {
        String::from_utf8(b.data().to_vec()).map_err(|e| bad(column, e))
    };
    let json = |b: &ByteArray, column: &str| -> Result<Value> {
        serde_json::from_slice(b.data()).map_err(|e| bad(column, e))
    };
    for r in (0..rows).filter(|&r| wanted[r]) {
        let res = match resources.get(resource[r].data()) {
            Some(res) => Arc::clone(res),
            None => {
                let res = Arc::new(Resource {
                    service_name: utf8(&service[r], "service")?,
                    attributes: parse_key_values(&json(&resource[r], "resource")?)
                        .map_err(|e| bad("resource", e))?,
                });
                resources.insert(resource[r].data().to_vec(), Arc::clone(&res));
                res
            }
        };
        let kind_text = utf8(&kind[r], "kind")?;
        let status_text = utf8(&status[r], "status_code")?;
        let count = |c: usize| u32::try_from(dropped[c][r]).unwrap_or(0);
        let span = Span {
            trace_id: TraceId::from_bytes(trace_ids[r].data()).map_err(|e| bad("trace_id", e))?,
            span_id: SpanId::from_bytes(span_ids[r].data()).map_err(|e| bad("span_id", e))?,
            parent_span_id: parent_ids[r]
                .as_ref()
                .map(|p| SpanId::from_bytes(p.data()))
                .transpose()
                .map_err(|e| bad("parent_span_id", e))?,
            trace_state: utf8(&trace_state[r], "trace_state")?,
            name: utf8(&name[r], "name")?,
            kind: SpanKind::parse(&kind_text).ok_or_else(|| bad("kind", &kind_text))?,
            start_unix_nano: u64::try_from(start[r]).unwrap_or(0),
            end_unix_nano: u64::try_from(end[r]).unwrap_or(0),
            attributes: parse_key_values(&json(&attributes[r], "attributes")?)
                .map_err(|e| bad("attributes", e))?,
            events: parse_events(&json(&events[r], "events")?).map_err(|e| bad("events", e))?,
            links: parse_links(&json(&links[r], "links")?).map_err(|e| bad("links", e))?,
            status_code: status_code(&status_text)
                .ok_or_else(|| bad("status_code", &status_text))?,
            status_message: utf8(&status_message[r], "status_message")?,
            scope_name: utf8(&scope_name[r], "scope_name")?,
            scope_version: utf8(&scope_version[r], "scope_version")?,
            dropped_attributes_count: count(0),
            dropped_events_count: count(1),
            dropped_links_count: count(2),
        };
        out.push(StoredSpan {
            resource: res,
            span,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_value() -> Attributes {
        vec![
            ("s".into(), AttrValue::Str("text \"q\" 中文".into())),
            ("b".into(), AttrValue::Bool(true)),
            ("i".into(), AttrValue::Int(i64::MIN)),
            ("d".into(), AttrValue::Double(1.0)),
            ("pi".into(), AttrValue::Double(std::f64::consts::PI)),
            ("tiny".into(), AttrValue::Double(5e-324)),
            ("nan".into(), AttrValue::Double(f64::NAN)),
            ("inf".into(), AttrValue::Double(f64::NEG_INFINITY)),
            ("bytes".into(), AttrValue::Bytes(vec![0, 255, 7])),
            (
                "list".into(),
                AttrValue::Array(vec![AttrValue::Int(1), AttrValue::Str("x".into())]),
            ),
            (
                "map".into(),
                AttrValue::KvList(vec![("k".into(), AttrValue::Bool(false))]),
            ),
        ]
    }

    fn span(i: u64, resource: &Arc<Resource>) -> StoredSpan {
        let t = 1_700_000_000_000_000_000 + i * 1_000_003;
        StoredSpan {
            resource: Arc::clone(resource),
            span: Span {
                trace_id: TraceId([(i % 7) as u8 + 1; 16]),
                span_id: SpanId([(i % 200) as u8 + 1; 8]),
                parent_span_id: (!i.is_multiple_of(3)).then_some(SpanId([9; 8])),
                trace_state: if i == 1 { "a=b".into() } else { String::new() },
                name: format!("GET /item/{}", i % 5),
                kind: SpanKind::from_i32((i % 6) as i32),
                start_unix_nano: t,
                end_unix_nano: t + i * 1000,
                attributes: if i == 0 {
                    every_value()
                } else {
                    vec![("n".into(), AttrValue::Int(i as i64))]
                },
                events: vec![SpanEvent {
                    time_unix_nano: t + 5,
                    name: "exception".into(),
                    attributes: vec![("exception.message".into(), AttrValue::Str("boom".into()))],
                }],
                links: if i == 2 {
                    vec![SpanLink {
                        trace_id: TraceId([3; 16]),
                        span_id: SpanId([4; 8]),
                        trace_state: "x=y".into(),
                        attributes: every_value(),
                    }]
                } else {
                    Vec::new()
                },
                status_code: [StatusCode::Unset, StatusCode::Ok, StatusCode::Error]
                    [(i % 3) as usize],
                status_message: if i % 3 == 2 {
                    "failed".into()
                } else {
                    String::new()
                },
                scope_name: "io.opentelemetry.test".into(),
                scope_version: "1.2".into(),
                dropped_attributes_count: (i % 2) as u32,
                dropped_events_count: 0,
                dropped_links_count: 3,
            },
        }
    }

    /// Debug text compares NaN equal to NaN, unlike `PartialEq`.
    fn text_of(spans: &[StoredSpan]) -> String {
        format!("{spans:?}")
    }

    #[test]
    fn every_field_and_attribute_type_round_trips_across_row_groups() {
        let api = Arc::new(Resource {
            service_name: "api".into(),
            attributes: vec![("service.name".into(), AttrValue::Str("api".into()))],
        });
        let db = Arc::new(Resource {
            service_name: "db".into(),
            attributes: vec![
                ("service.name".into(), AttrValue::Str("db".into())),
                ("host.arch".into(), AttrValue::Str("arm64".into())),
            ],
        });
        let spans: Vec<StoredSpan> = (0..(ROW_GROUP_ROWS as u64 + 20))
            .map(|i| span(i, if i % 4 == 0 { &db } else { &api }))
            .collect();
        let file = write_spans(&spans).unwrap().unwrap();
        assert_eq!(file.rows, spans.len() as u64);
        let all = SpanFilter {
            start_ns: 0,
            end_ns: u64::MAX,
            trace_id: None,
        };
        let mut back = Vec::new();
        read_spans(file.bytes.clone(), all, &mut back).unwrap();
        assert_eq!(text_of(&back), text_of(&spans));
        assert!(
            Arc::ptr_eq(&back[4].resource, &back[8].resource),
            "resources are shared"
        );

        let id = TraceId([3; 16]);
        let mut one = Vec::new();
        let (lo, hi) = (
            spans[10].span.start_unix_nano,
            spans[30].span.start_unix_nano,
        );
        read_spans(
            file.bytes.clone(),
            SpanFilter {
                start_ns: lo,
                end_ns: hi,
                trace_id: Some(id),
            },
            &mut one,
        )
        .unwrap();
        let want: Vec<StoredSpan> = spans
            .iter()
            .filter(|s| s.span.trace_id == id && (lo..=hi).contains(&s.span.start_unix_nano))
            .cloned()
            .collect();
        assert!(!want.is_empty());
        assert_eq!(text_of(&one), text_of(&want));

        let mut none = Vec::new();
        read_spans(
            file.bytes,
            SpanFilter {
                trace_id: Some(TraceId([99; 16])),
                ..all
            },
            &mut none,
        )
        .unwrap();
        assert!(none.is_empty());
        assert!(write_spans(&[]).unwrap().is_none());
    }
}
