//! Archived log records as Parquet: one row per record, sorted by service then time.
//!
//! ```text
//! message lookout_logs {
//!   required binary service (STRING);
//!   required int64 time (TIMESTAMP(NANOS, true));
//!   required int64 observed_time (TIMESTAMP(NANOS, true));
//!   required int32 severity_number;           -- OTLP, 0 to 24
//!   required binary severity_text (STRING);   -- as sent, "" when none
//!   optional fixed_len_byte_array(16) trace_id;
//!   optional fixed_len_byte_array(8) span_id;
//!   required binary body (STRING);
//!   required binary resource (JSON);          -- {"key": "value", ...} in the order sent
//!   required binary attributes (JSON);
//! }
//! ```
//!
//! `service`, `severity_text`, `resource` and `attributes` are dictionary encoded (they
//! repeat from record to record), the times delta encoded, everything zstd. Sorting by
//! service puts one service's similar lines next to each other, which is most of what
//! compresses them. Row groups carry min/max statistics: a reader skips row groups outside
//! its time range. See `docs/format/archive.md`.

use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::Encoding;
use parquet::data_type::{
    ByteArray, ByteArrayType, FixedLenByteArray, FixedLenByteArrayType, Int32Type, Int64Type,
};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;
use serde::de::{Deserializer, MapAccess, Visitor};

use super::metrics::WrittenFile;
use super::parquet_io::{check_schema, parquet_err, read_column, writer_properties};
use crate::error::{Result, StoreError};
use crate::logs::LogRecord;
use crate::traces::model::{SpanId, TraceId};

const SCHEMA: &str = "
message lookout_logs {
  required binary service (STRING);
  required int64 time (TIMESTAMP(NANOS, true));
  required int64 observed_time (TIMESTAMP(NANOS, true));
  required int32 severity_number;
  required binary severity_text (STRING);
  optional fixed_len_byte_array(16) trace_id;
  optional fixed_len_byte_array(8) span_id;
  required binary body (STRING);
  required binary resource (JSON);
  required binary attributes (JSON);
}";

pub const SCHEMA_VALUE: &str = "logs/v1";
/// Rows per row group: about 40 MB of ~300-byte lines, so a time-range read skips in
/// pieces of that size and the writer's buffers stay small.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Measured on the bench corpus (BENCHMARKS.md): level 9 against 3 makes files about 10 %
/// smaller for 2.5 times the CPU of a move, which runs once per partition in the background.
const ZSTD_LEVEL: i32 = 9;
const TIME_COLUMN: usize = 1;

fn ns_to_i64(ns: u64) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MAX)
}

fn text(s: &str) -> ByteArray {
    ByteArray::from(Bytes::from(s.as_bytes().to_vec()))
}

/// Attributes as a JSON object, keys in the order sent (a repeated key stays repeated).
fn attrs_json(attrs: &[(String, String)]) -> String {
    let mut out = String::with_capacity(2 + attrs.len() * 24);
    out.push('{');
    for (i, (k, v)) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::from(k.as_str()).to_string());
        out.push(':');
        out.push_str(&serde_json::Value::from(v.as_str()).to_string());
    }
    out.push('}');
    out
}

/// The pairs of a JSON object of strings, in file order.
struct Pairs(Vec<(String, String)>);

impl<'de> serde::Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Pairs, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Pairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = m.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(PairsVisitor)
    }
}

fn parse_attrs(column: &str, json: &[u8]) -> Result<Vec<(String, String)>> {
    serde_json::from_slice::<Pairs>(json)
        .map(|p| p.0)
        .map_err(|e| StoreError::Unavailable(format!("archived log {column}: {e}")))
}

/// Writes `records` (in the order given: the caller sorts them by service, then time) into
/// one Parquet file in memory. `None` for no records. Blocking (compresses).
pub fn write_logs(records: &[LogRecord]) -> Result<Option<WrittenFile>> {
    if records.is_empty() {
        return Ok(None);
    }
    let schema =
        Arc::new(parse_message_type(SCHEMA).map_err(|e| parquet_err("archive logs schema", e))?);
    let mut props = writer_properties(SCHEMA_VALUE, ZSTD_LEVEL, ROW_GROUP_ROWS)?;
    for name in ["time", "observed_time"] {
        let path = ColumnPath::from(name);
        props = props
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
    }
    for name in ["trace_id", "span_id", "body"] {
        // mostly distinct from row to row: a dictionary would only be dropped again
        props = props.set_column_dictionary_enabled(ColumnPath::from(name), false);
    }
    let what = "writing an archive log file";
    let mut writer = SerializedFileWriter::new(Vec::new(), schema, Arc::new(props.build()))
        .map_err(|e| parquet_err(what, e))?;
    let (mut min_time, mut max_time) = (u64::MAX, 0u64);
    for group in records.chunks(ROW_GROUP_ROWS) {
        let mut rg = writer.next_row_group().map_err(|e| parquet_err(what, e))?;
        let mut column = 0;
        while let Some(mut col) = rg.next_column().map_err(|e| parquet_err(what, e))? {
            let texts =
                |f: &dyn Fn(&LogRecord) -> ByteArray| group.iter().map(f).collect::<Vec<_>>();
            let written = match column {
                0 => col.typed::<ByteArrayType>().write_batch(
                    &texts(&|r| text(&r.service)),
                    None,
                    None,
                ),
                1 | 2 => {
                    let times: Vec<i64> = group
                        .iter()
                        .map(|r| {
                            ns_to_i64(if column == 1 {
                                r.time_unix_nano
                            } else {
                                r.observed_unix_nano
                            })
                        })
                        .collect();
                    col.typed::<Int64Type>().write_batch(&times, None, None)
                }
                3 => {
                    let numbers: Vec<i32> =
                        group.iter().map(|r| i32::from(r.severity_number)).collect();
                    col.typed::<Int32Type>().write_batch(&numbers, None, None)
                }
                4 => col.typed::<ByteArrayType>().write_batch(
                    &texts(&|r| text(&r.severity_text)),
                    None,
                    None,
                ),
                5 | 6 => {
                    let ids: Vec<Option<Vec<u8>>> = group
                        .iter()
                        .map(|r| {
                            if column == 5 {
                                r.trace_id.map(|t| t.0.to_vec())
                            } else {
                                r.span_id.map(|s| s.0.to_vec())
                            }
                        })
                        .collect();
                    let levels: Vec<i16> = ids.iter().map(|i| i16::from(i.is_some())).collect();
                    let values: Vec<FixedLenByteArray> = ids
                        .into_iter()
                        .flatten()
                        .map(|b| FixedLenByteArray::from(ByteArray::from(b)))
                        .collect();
                    col.typed::<FixedLenByteArrayType>()
                        .write_batch(&values, Some(&levels), None)
                }
                7 => {
                    col.typed::<ByteArrayType>()
                        .write_batch(&texts(&|r| text(&r.body)), None, None)
                }
                8 => col.typed::<ByteArrayType>().write_batch(
                    &texts(&|r| text(&attrs_json(&r.resource))),
                    None,
                    None,
                ),
                _ => col.typed::<ByteArrayType>().write_batch(
                    &texts(&|r| text(&attrs_json(&r.attributes))),
                    None,
                    None,
                ),
            };
            written.map_err(|e| parquet_err(what, e))?;
            col.close().map_err(|e| parquet_err(what, e))?;
            column += 1;
        }
        rg.close().map_err(|e| parquet_err(what, e))?;
        for r in group {
            min_time = min_time.min(r.time_unix_nano);
            max_time = max_time.max(r.time_unix_nano);
        }
    }
    let bytes = writer.into_inner().map_err(|e| parquet_err(what, e))?;
    let (min_time, max_time) = super::ms_range(min_time, max_time);
    Ok(Some(WrittenFile {
        bytes: Bytes::from(bytes),
        rows: records.len() as u64,
        series: 0,
        // the manifest's times are milliseconds: rounded outwards
        min_time,
        max_time,
    }))
}

/// Appends to `out` the records of one file with a time in `[start_ns, end_ns]` that `keep`
/// accepts, in file order. Row groups outside the range are not decompressed.
pub fn read_logs(
    file: Bytes,
    start_ns: u64,
    end_ns: u64,
    keep: &dyn Fn(&LogRecord) -> bool,
    out: &mut Vec<LogRecord>,
) -> Result<()> {
    let what = "reading an archive log file";
    let reader = SerializedFileReader::new(file).map_err(|e| parquet_err(what, e))?;
    check_schema(&reader, SCHEMA_VALUE)?;
    let (lo, hi) = (ns_to_i64(start_ns), ns_to_i64(end_ns));
    for i in 0..reader.num_row_groups() {
        let meta = reader.metadata().row_group(i);
        if let Some(Statistics::Int64(s)) = meta.column(TIME_COLUMN).statistics() {
            if let (Some(&min), Some(&max)) = (s.min_opt(), s.max_opt()) {
                if max < lo || min > hi {
                    continue;
                }
            }
        }
        let rg = reader.get_row_group(i).map_err(|e| parquet_err(what, e))?;
        let rows = usize::try_from(meta.num_rows()).unwrap_or(0);
        let mut time = Vec::with_capacity(rows);
        read_column::<Int64Type>(&*rg, TIME_COLUMN, rows, None, &mut time)?;
        if !time.iter().any(|t| (lo..=hi).contains(t)) {
            continue;
        }
        let texts = |column: usize| -> Result<Vec<ByteArray>> {
            let mut v = Vec::with_capacity(rows);
            read_column::<ByteArrayType>(&*rg, column, rows, None, &mut v)?;
            Ok(v)
        };
        let ids = |column: usize| -> Result<Vec<Option<Vec<u8>>>> {
            let (mut levels, mut values) = (Vec::with_capacity(rows), Vec::new());
            read_column::<FixedLenByteArrayType>(
                &*rg,
                column,
                rows,
                Some(&mut levels),
                &mut values,
            )?;
            let mut values = values.into_iter();
            Ok(levels
                .iter()
                .map(|&l| {
                    if l > 0 {
                        values.next().map(|v| v.data().to_vec())
                    } else {
                        None
                    }
                })
                .collect())
        };
        let service = texts(0)?;
        let mut observed = Vec::with_capacity(rows);
        read_column::<Int64Type>(&*rg, 2, rows, None, &mut observed)?;
        let mut severity = Vec::with_capacity(rows);
        read_column::<Int32Type>(&*rg, 3, rows, None, &mut severity)?;
        let severity_text = texts(4)?;
        let trace_ids = ids(5)?;
        let span_ids = ids(6)?;
        let body = texts(7)?;
        let resource = texts(8)?;
        let attributes = texts(9)?;
        let utf8 = |b: &ByteArray, column: &str| -> Result<String> {
            String::from_utf8(b.data().to_vec())
                .map_err(|e| StoreError::Unavailable(format!("archived log {column}: {e}")))
        };
        for r in 0..rows {
            if !(lo..=hi).contains(&time[r]) {
                continue;
            }
            let rec = LogRecord {
                time_unix_nano: u64::try_from(time[r]).unwrap_or(0),
                observed_unix_nano: u64::try_from(observed[r]).unwrap_or(0),
                severity_number: u8::try_from(severity[r]).unwrap_or(0),
                severity_text: utf8(&severity_text[r], "severity_text")?,
                service: utf8(&service[r], "service")?,
                trace_id: trace_ids[r]
                    .as_deref()
                    .map(TraceId::from_bytes)
                    .transpose()
                    .map_err(|e| StoreError::Unavailable(format!("archived log trace_id: {e}")))?,
                span_id: span_ids[r]
                    .as_deref()
                    .map(SpanId::from_bytes)
                    .transpose()
                    .map_err(|e| StoreError::Unavailable(format!("archived log span_id: {e}")))?,
                body: utf8(&body[r], "body")?,
                resource: parse_attrs("resource", resource[r].data())?,
                attributes: parse_attrs("attributes", attributes[r].data())?,
            };
            if keep(&rec) {
                out.push(rec);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64, service: &str) -> LogRecord {
        LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000 + i * 1_000_000_007,
            observed_unix_nano: 1_700_000_000_000_000_000 + i * 1_000_000_007 + 5,
            severity_number: (i % 25) as u8,
            severity_text: if i.is_multiple_of(2) {
                "WARN".into()
            } else {
                String::new()
            },
            service: service.into(),
            trace_id: i.is_multiple_of(3).then_some(TraceId([i as u8 | 1; 16])),
            span_id: i.is_multiple_of(4).then_some(SpanId([7; 8])),
            body: format!("request {i} took {}ms \"quoted\" 中文", i * 3),
            resource: vec![
                ("service.name".into(), service.into()),
                ("b".into(), "1".into()),
            ],
            attributes: vec![
                ("z".into(), format!("{i}")),
                ("a".into(), "x\ny".into()),
                ("z".into(), "again".into()),
            ],
        }
    }

    #[test]
    fn round_trips_every_field_across_row_groups_and_filters_by_time() {
        let mut records: Vec<LogRecord> = (0..(ROW_GROUP_ROWS as u64 + 50))
            .map(|i| record(i, if i % 5 == 0 { "db" } else { "api" }))
            .collect();
        records.sort_by(|a, b| (&a.service, a.time_unix_nano).cmp(&(&b.service, b.time_unix_nano)));
        let file = write_logs(&records).unwrap().unwrap();
        assert_eq!(file.rows, records.len() as u64);
        assert_eq!(
            file.min_time,
            (records.iter().map(|r| r.time_unix_nano).min().unwrap() / 1_000_000) as i64
        );

        let mut back = Vec::new();
        read_logs(file.bytes.clone(), 0, u64::MAX, &|_| true, &mut back).unwrap();
        assert_eq!(
            back, records,
            "every field reads back as written, in file order"
        );

        // a window in the middle, and a filter
        let (lo, hi) = (records[10].time_unix_nano, records[20].time_unix_nano);
        let mut some = Vec::new();
        read_logs(
            file.bytes.clone(),
            lo,
            hi,
            &|r| r.trace_id.is_some(),
            &mut some,
        )
        .unwrap();
        let want: Vec<LogRecord> = records
            .iter()
            .filter(|r| (lo..=hi).contains(&r.time_unix_nano) && r.trace_id.is_some())
            .cloned()
            .collect();
        assert!(!want.is_empty());
        assert_eq!(some, want);
        assert!(write_logs(&[]).unwrap().is_none());
    }

    #[test]
    fn refuses_a_file_of_another_schema() {
        let mut w = crate::archive::metrics::MetricsFileWriter::new().unwrap();
        let labels = crate::model::Labels::from_pairs([("__name__", "up")]);
        w.push_series(&labels, &[crate::model::Sample::new(1, 1.0)])
            .unwrap();
        let metrics_file = w.finish().unwrap().unwrap();
        let err = read_logs(metrics_file.bytes, 0, u64::MAX, &|_| true, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics/v1"), "{err}");
    }
}
