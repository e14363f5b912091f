//! Archived metric samples as Parquet: one row per sample, sorted by series then time.
//!
//! ```text
//! message lookout_metrics {
//!   required binary metric (STRING);     -- the __name__ label ("" when absent)
//!   required binary labels (STRING);     -- every other label, a JSON object, names sorted
//!   required int64 timestamp (TIMESTAMP(MILLIS, true));
//!   required double value;               -- bit-exact, staleness markers included
//! }
//! ```
//!
//! `metric` and `labels` are dictionary encoded (a series' text is stored once per row
//! group, then one small index per row), `timestamp` is delta encoded (regular scrapes cost
//! almost nothing), all zstd. Row groups hold up to [`ROW_GROUP_ROWS`] rows and carry min/max
//! statistics, so a reader skips row groups by time or by metric name. See
//! `docs/format/archive.md`.
//!
//! Rollup files (`lookout_metrics_rollup`, [`super::rollup`]) share the layout: the same
//! `metric`, `labels` and `timestamp`, then `count` and six doubles per window instead of
//! `value`. One writer and one reader serve both ([`Layout`]).

use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::Encoding;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::metadata::RowGroupMetaData;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;

use crate::contract::{LabelMatcher, MatchOp, RollupAggregate};
use crate::error::{Result, StoreError};
use crate::model::{Label, Labels, Sample};

use super::parquet_io::{check_schema, parquet_err, read_column, writer_properties};
use super::rollup::Rollup;

const SCHEMA: &str = "
message lookout_metrics {
  required binary metric (STRING);
  required binary labels (STRING);
  required int64 timestamp (TIMESTAMP(MILLIS, true));
  required double value;
}";

/// A rollup file: one row per series and window, at the time of the window's last sample.
/// See [`super::rollup`].
const ROLLUP_SCHEMA: &str = "
message lookout_metrics_rollup {
  required binary metric (STRING);
  required binary labels (STRING);
  required int64 timestamp (TIMESTAMP(MILLIS, true));
  required int64 count;
  required double sum;
  required double min;
  required double max;
  required double first;
  required double last;
  required double increase;
}";

pub const SCHEMA_VALUE: &str = "metrics/v1";
pub const ROLLUP_SCHEMA_VALUE: &str = "metrics-rollup/v1";
/// Rows per row group: large enough for good compression and few footer entries, small
/// enough that a reader's buffers stay in the tens of megabytes.
pub const ROW_GROUP_ROWS: usize = 1 << 20;
const ZSTD_LEVEL: i32 = 9;

/// What a finished file holds.
#[derive(Clone, Debug)]
pub struct WrittenFile {
    pub bytes: Bytes,
    pub rows: u64,
    pub series: u64,
    pub min_time: i64,
    pub max_time: i64,
}

/// The two file layouts: raw samples, or rollups. Both start with `metric`, `labels` and
/// `timestamp`; then come the integer columns, then the doubles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Samples,
    Rollups,
}

impl Layout {
    fn schema(self) -> (&'static str, &'static str) {
        match self {
            Layout::Samples => (SCHEMA, SCHEMA_VALUE),
            Layout::Rollups => (ROLLUP_SCHEMA, ROLLUP_SCHEMA_VALUE),
        }
    }

    /// Integer columns after `labels` (the first is `timestamp`).
    fn int_columns(self) -> &'static [&'static str] {
        match self {
            Layout::Samples => &["timestamp"],
            Layout::Rollups => &["timestamp", "count"],
        }
    }

    fn double_columns(self) -> &'static [&'static str] {
        match self {
            Layout::Samples => &["value"],
            Layout::Rollups => &["sum", "min", "max", "first", "last", "increase"],
        }
    }
}

/// Writes series (in label order, rows in time order) into one Parquet file in memory:
/// [`MetricsFileWriter::new`] for samples, [`MetricsFileWriter::rollups`] for rollups.
pub struct MetricsFileWriter {
    layout: Layout,
    writer: SerializedFileWriter<Vec<u8>>,
    metric: Vec<ByteArray>,
    labels: Vec<ByteArray>,
    /// One buffer per integer column, `timestamp` first.
    ints: Vec<Vec<i64>>,
    doubles: Vec<Vec<f64>>,
    rows: u64,
    series: u64,
    min_time: i64,
    max_time: i64,
}

impl MetricsFileWriter {
    pub fn new() -> Result<MetricsFileWriter> {
        Self::with_layout(Layout::Samples)
    }

    pub fn rollups() -> Result<MetricsFileWriter> {
        Self::with_layout(Layout::Rollups)
    }

    fn with_layout(layout: Layout) -> Result<MetricsFileWriter> {
        let (schema, schema_name) = layout.schema();
        let schema = Arc::new(
            parse_message_type(schema).map_err(|e| parquet_err("archive metrics schema", e))?,
        );
        let mut props = writer_properties(schema_name, ZSTD_LEVEL, ROW_GROUP_ROWS)?;
        // times and counts step regularly: deltas; measurements: byte-stream split
        for name in layout.int_columns() {
            let path = ColumnPath::from(*name);
            props = props
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
        }
        for name in layout.double_columns() {
            let path = ColumnPath::from(*name);
            props = props
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::BYTE_STREAM_SPLIT);
        }
        let writer = SerializedFileWriter::new(Vec::new(), schema, Arc::new(props.build()))
            .map_err(|e| parquet_err("starting an archive file", e))?;
        Ok(MetricsFileWriter {
            layout,
            writer,
            metric: Vec::new(),
            labels: Vec::new(),
            ints: vec![Vec::new(); layout.int_columns().len()],
            doubles: vec![Vec::new(); layout.double_columns().len()],
            rows: 0,
            series: 0,
            min_time: i64::MAX,
            max_time: i64::MIN,
        })
    }

    /// Adds one series' samples. Call in label order; a series must not be added twice.
    pub fn push_series(&mut self, labels: &Labels, samples: &[Sample]) -> Result<()> {
        debug_assert_eq!(self.layout, Layout::Samples);
        self.push_rows(labels, samples, |s| ([s.timestamp_ms, 0], [s.value; 6]))
    }

    /// Adds one series' rollups, in the same order as [`MetricsFileWriter::push_series`].
    pub fn push_rollups(&mut self, labels: &Labels, rollups: &[Rollup]) -> Result<()> {
        debug_assert_eq!(self.layout, Layout::Rollups);
        self.push_rows(labels, rollups, |r| {
            (
                [r.timestamp_ms, r.count as i64],
                [r.sum, r.min, r.max, r.first, r.last, r.increase],
            )
        })
    }

    /// Adds rows of one series; `columns` gives a row's integer and double columns (only as
    /// many as the layout has are kept).
    fn push_rows<R>(
        &mut self,
        labels: &Labels,
        rows: &[R],
        columns: impl Fn(&R) -> ([i64; 2], [f64; 6]),
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let metric = ByteArray::from(Bytes::from(
            labels.metric_name().unwrap_or("").as_bytes().to_vec(),
        ));
        let rest = ByteArray::from(Bytes::from(labels_json(labels).into_bytes()));
        self.series += 1;
        for row in rows {
            let (ints, doubles) = columns(row);
            self.metric.push(metric.clone());
            self.labels.push(rest.clone());
            for (buf, v) in self.ints.iter_mut().zip(ints) {
                buf.push(v);
            }
            for (buf, v) in self.doubles.iter_mut().zip(doubles) {
                buf.push(v);
            }
            self.min_time = self.min_time.min(ints[0]);
            self.max_time = self.max_time.max(ints[0]);
            if self.metric.len() >= ROW_GROUP_ROWS {
                self.flush_row_group()?;
            }
        }
        Ok(())
    }

    fn flush_row_group(&mut self) -> Result<()> {
        if self.metric.is_empty() {
            return Ok(());
        }
        let what = "writing an archive row group";
        let mut rg = self
            .writer
            .next_row_group()
            .map_err(|e| parquet_err(what, e))?;
        let (texts, ints) = (2, 2 + self.ints.len());
        let mut column = 0;
        while let Some(mut col) = rg.next_column().map_err(|e| parquet_err(what, e))? {
            match column {
                0 => col
                    .typed::<ByteArrayType>()
                    .write_batch(&self.metric, None, None),
                1 => col
                    .typed::<ByteArrayType>()
                    .write_batch(&self.labels, None, None),
                c if c < ints => col.typed::<Int64Type>().write_batch(
                    self.ints.get(c - texts).map_or(&[], |v| v.as_slice()),
                    None,
                    None,
                ),
                c => col.typed::<DoubleType>().write_batch(
                    self.doubles.get(c - ints).map_or(&[], |v| v.as_slice()),
                    None,
                    None,
                ),
            }
            .map_err(|e| parquet_err(what, e))?;
            col.close().map_err(|e| parquet_err(what, e))?;
            column += 1;
        }
        rg.close().map_err(|e| parquet_err(what, e))?;
        self.rows += self.metric.len() as u64;
        self.metric.clear();
        self.labels.clear();
        self.ints.iter_mut().for_each(Vec::clear);
        self.doubles.iter_mut().for_each(Vec::clear);
        Ok(())
    }

    /// Writes the last row group and the footer. `None` when no row was added.
    pub fn finish(mut self) -> Result<Option<WrittenFile>> {
        self.flush_row_group()?;
        if self.rows == 0 {
            return Ok(None);
        }
        let bytes = self
            .writer
            .into_inner()
            .map_err(|e| parquet_err("finishing an archive file", e))?;
        Ok(Some(WrittenFile {
            bytes: Bytes::from(bytes),
            rows: self.rows,
            series: self.series,
            min_time: self.min_time,
            max_time: self.max_time,
        }))
    }
}

/// The labels other than `__name__` as a JSON object (names in label order, i.e. sorted).
fn labels_json(labels: &Labels) -> String {
    let mut map = serde_json::Map::new();
    for l in labels.iter().filter(|l| l.name != "__name__") {
        map.insert(l.name.clone(), serde_json::Value::String(l.value.clone()));
    }
    serde_json::Value::Object(map).to_string()
}

fn parse_labels(metric: &[u8], json: &[u8]) -> Result<Labels> {
    let bad = |why: String| StoreError::Unavailable(format!("archived series labels: {why}"));
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::with_capacity(map.len() + 1);
    if !metric.is_empty() {
        let name = std::str::from_utf8(metric).map_err(|e| bad(e.to_string()))?;
        out.push(Label::new("__name__", name));
    }
    for (k, v) in map {
        match v {
            serde_json::Value::String(s) => out.push(Label::new(k, s)),
            other => return Err(bad(format!("label {k} is {other}, not a string"))),
        }
    }
    Ok(Labels::new(out))
}

/// One series read back from archive files.
pub type ArchivedSeries = (Labels, Vec<Sample>);

/// One series' rollups read back from archive files.
pub type ArchivedRollups = (Labels, Vec<Rollup>);

/// Reads the series of one file that match every matcher and have samples in
/// `[mint, maxt]`, appending them to `out` in file order (label order).
pub fn read_series(
    file: Bytes,
    matchers: &[LabelMatcher],
    mint: i64,
    maxt: i64,
    out: &mut Vec<ArchivedSeries>,
) -> Result<()> {
    read_rows(
        Layout::Samples,
        file,
        matchers,
        mint,
        maxt,
        out,
        |rg, rows| {
            let mut times = Vec::with_capacity(rows);
            let mut values = Vec::with_capacity(rows);
            read_column::<Int64Type>(rg, 2, rows, None, &mut times)?;
            read_column::<DoubleType>(rg, 3, rows, None, &mut values)?;
            check_rows(rows, &[times.len(), values.len()])?;
            Ok(SampleColumns { times, values })
        },
    )
}

/// [`read_series`] for a rollup file: the rollups of `[mint, maxt]` of matching series.
/// Only the columns `agg` needs are decoded; the others read as NaN (a count as 0).
pub fn read_rollups(
    file: Bytes,
    matchers: &[LabelMatcher],
    mint: i64,
    maxt: i64,
    agg: RollupAggregate,
    out: &mut Vec<ArchivedRollups>,
) -> Result<()> {
    use RollupAggregate as A;
    // the columns after `timestamp`: count, then sum, min, max, first, last, increase
    let needed: &[usize] = match agg {
        A::Counter => &[7, 8, 9],
        A::Min => &[5],
        A::Max => &[6],
        A::Sum => &[4],
        A::Count => &[3],
        A::Last => &[8],
        A::Mean => &[3, 4],
    };
    read_rows(
        Layout::Rollups,
        file,
        matchers,
        mint,
        maxt,
        out,
        |rg, rows| {
            let mut t = Vec::with_capacity(rows);
            read_column::<Int64Type>(rg, 2, rows, None, &mut t)?;
            let mut count = Vec::new();
            // sum, min, max, first, last, increase: empty when not needed
            let mut doubles: [Vec<f64>; 6] = Default::default();
            for &column in needed {
                match column {
                    3 => read_column::<Int64Type>(rg, 3, rows, None, &mut count)?,
                    c => read_column::<DoubleType>(rg, c, rows, None, &mut doubles[c - 4])?,
                }
            }
            let lengths: Vec<usize> = std::iter::once(t.len())
                .chain((!count.is_empty()).then_some(count.len()))
                .chain(doubles.iter().map(Vec::len).filter(|&l| l > 0))
                .collect();
            check_rows(rows, &lengths)?;
            Ok(RollupColumns {
                times: t,
                count,
                doubles,
            })
        },
    )
}

fn check_rows(rows: usize, lengths: &[usize]) -> Result<()> {
    if lengths.iter().any(|&l| l != rows) {
        return Err(StoreError::Unavailable(
            "reading an archive file: a row group has columns of different lengths".into(),
        ));
    }
    Ok(())
}

/// A row group's decoded time and measurement columns.
trait Columns<R> {
    fn time(&self, row: usize) -> i64;
    fn row(&self, row: usize) -> R;
}

struct SampleColumns {
    times: Vec<i64>,
    values: Vec<f64>,
}

impl Columns<Sample> for SampleColumns {
    fn time(&self, row: usize) -> i64 {
        self.times[row]
    }
    fn row(&self, row: usize) -> Sample {
        Sample::new(self.times[row], self.values[row])
    }
}

/// Rollup columns; the ones a query did not ask for are empty.
struct RollupColumns {
    times: Vec<i64>,
    count: Vec<i64>,
    /// sum, min, max, first, last, increase
    doubles: [Vec<f64>; 6],
}

impl Columns<Rollup> for RollupColumns {
    fn time(&self, row: usize) -> i64 {
        self.times[row]
    }
    fn row(&self, row: usize) -> Rollup {
        let d = |c: usize| self.doubles[c].get(row).copied().unwrap_or(f64::NAN);
        Rollup {
            timestamp_ms: self.times[row],
            count: self.count.get(row).map_or(0, |&c| c.max(0) as u64),
            sum: d(0),
            min: d(1),
            max: d(2),
            first: d(3),
            last: d(4),
            increase: d(5),
        }
    }
}

/// Reads the rows of the series matching every matcher with times in `[mint, maxt]`, in
/// file order. `decode` reads a row group's time and measurement columns; it is only called
/// for row groups where a series matches, and rows are only built for matching series.
fn read_rows<R, C: Columns<R>>(
    layout: Layout,
    file: Bytes,
    matchers: &[LabelMatcher],
    mint: i64,
    maxt: i64,
    out: &mut Vec<(Labels, Vec<R>)>,
    decode: impl Fn(&dyn parquet::file::reader::RowGroupReader, usize) -> Result<C>,
) -> Result<()> {
    let what = "reading an archive file";
    let reader = SerializedFileReader::new(file).map_err(|e| parquet_err(what, e))?;
    check_schema(&reader, layout.schema().1)?;
    let name_eq = matchers
        .iter()
        .find(|m| m.name == "__name__" && m.op == MatchOp::Equal)
        .map(|m| m.value.as_bytes().to_vec());
    let start = out.len();
    // (metric, labels) of the series the current rows belong to, and its labels if it matches
    let mut current: Option<(ByteArray, ByteArray, Option<Labels>)> = None;
    for i in 0..reader.num_row_groups() {
        let meta = reader.metadata().row_group(i);
        if !row_group_may_match(meta, name_eq.as_deref(), mint, maxt) {
            current = None;
            continue;
        }
        let rg = reader.get_row_group(i).map_err(|e| parquet_err(what, e))?;
        let rows = meta.num_rows() as usize;
        let metric = read_byte_arrays(&*rg, 0, rows)?;
        let labels = read_byte_arrays(&*rg, 1, rows)?;
        check_rows(rows, &[metric.len(), labels.len()])?;
        // the series of this row group: (first row, labels if it matches)
        let mut runs: Vec<(usize, Option<Labels>)> = Vec::new();
        for r in 0..rows {
            match &current {
                Some((m, l, matched)) if same_text(m, &metric[r]) && same_text(l, &labels[r]) => {
                    if r == 0 {
                        // a series continued from the previous row group
                        runs.push((0, matched.clone()));
                    }
                }
                _ => {
                    let parsed = parse_labels(metric[r].data(), labels[r].data())?;
                    let matched = matchers
                        .iter()
                        .all(|m| m.matches_labels(&parsed))
                        .then_some(parsed);
                    runs.push((r, matched.clone()));
                    current = Some((metric[r].clone(), labels[r].clone(), matched));
                }
            }
        }
        if runs.iter().all(|(_, l)| l.is_none()) {
            continue; // nothing here matches: time and value pages are not decompressed
        }
        let columns = decode(&*rg, rows)?;
        for (k, (first, matched)) in runs.iter().enumerate() {
            let Some(labels) = matched else { continue };
            let end = runs.get(k + 1).map_or(rows, |(next, _)| *next);
            if out[start..].last().is_none_or(|(l, _)| l != labels) {
                out.push((labels.clone(), Vec::new()));
            }
            if let Some((_, rows)) = out.last_mut() {
                let in_range = (*first..end).filter(|&r| (mint..=maxt).contains(&columns.time(r)));
                rows.extend(in_range.map(|r| columns.row(r)));
            }
        }
    }
    // drop series that matched but had no row in range
    let read = out.split_off(start);
    out.extend(read.into_iter().filter(|(_, rows)| !rows.is_empty()));
    Ok(())
}

/// Byte equality, answered without comparing bytes when both values are the same
/// dictionary entry (dictionary-decoded rows of one series share their bytes).
fn same_text(a: &ByteArray, b: &ByteArray) -> bool {
    let (a, b) = (a.data(), b.data());
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}

fn row_group_may_match(meta: &RowGroupMetaData, name: Option<&[u8]>, mint: i64, maxt: i64) -> bool {
    if let Some(Statistics::Int64(s)) = meta.column(2).statistics() {
        if let (Some(&lo), Some(&hi)) = (s.min_opt(), s.max_opt()) {
            if hi < mint || lo > maxt {
                return false;
            }
        }
    }
    if let (Some(name), Some(Statistics::ByteArray(s))) = (name, meta.column(0).statistics()) {
        if let (Some(lo), Some(hi)) = (s.min_opt(), s.max_opt()) {
            if name < lo.data() || name > hi.data() {
                return false;
            }
        }
    }
    true
}

fn read_byte_arrays(
    rg: &dyn parquet::file::reader::RowGroupReader,
    column: usize,
    rows: usize,
) -> Result<Vec<ByteArray>> {
    let mut out = Vec::with_capacity(rows);
    read_column::<ByteArrayType>(rg, column, rows, None, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn round_trip_with_matchers_ranges_and_row_groups() {
        let a = labels(&[("__name__", "up"), ("job", "api"), ("path", "/a\"b")]);
        let b = labels(&[("__name__", "up"), ("job", "db")]);
        let c = labels(&[("job", "nameless")]);
        let mut series = vec![a.clone(), b.clone(), c.clone()];
        series.sort();
        let mut w = MetricsFileWriter::new().unwrap();
        // a spans more than one row group
        let many: Vec<Sample> = (0..(ROW_GROUP_ROWS as i64 + 10))
            .map(|i| Sample::new(i * 1000, i as f64 * 0.5))
            .collect();
        let stale = Sample::new(5000, crate::model::stale_nan());
        for l in &series {
            let samples = if *l == a {
                many.clone()
            } else {
                vec![Sample::new(1000, 1.0), stale]
            };
            w.push_series(l, &samples).unwrap();
        }
        let file = w.finish().unwrap().unwrap();
        assert_eq!(file.series, 3);
        assert_eq!(file.rows, many.len() as u64 + 4);
        assert_eq!(file.min_time, 0);

        let mut out = Vec::new();
        read_series(file.bytes.clone(), &[], i64::MIN, i64::MAX, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        let got_a = out.iter().find(|(l, _)| *l == a).unwrap();
        assert_eq!(got_a.1, many, "a series across row groups reads back whole");
        let got_b = out.iter().find(|(l, _)| *l == b).unwrap();
        assert_eq!(got_b.1[1].value.to_bits(), stale.value.to_bits());

        let up_db = [
            LabelMatcher::new("__name__", MatchOp::Equal, "up").unwrap(),
            LabelMatcher::new("job", MatchOp::NotEqual, "api").unwrap(),
        ];
        let mut out = Vec::new();
        read_series(file.bytes.clone(), &up_db, 0, 1000, &mut out).unwrap();
        assert_eq!(out, vec![(b.clone(), vec![Sample::new(1000, 1.0)])]);

        let mut out = Vec::new();
        let late = ROW_GROUP_ROWS as i64 * 1000;
        read_series(file.bytes, &[], late, i64::MAX, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.len(), 10);
    }

    #[test]
    fn refuses_a_parquet_file_of_another_schema() {
        let err = read_series(
            Bytes::from_static(b"PAR1 nonsense"),
            &[],
            0,
            1,
            &mut Vec::new(),
        );
        assert!(err.is_err());
    }
}
