//! The read path: search, histogram and field summaries over the partitions' committed
//! segments.
//!
//! Search walks the partitions overlapping the time range newest first (oldest first for a
//! forward search) and, inside each, its segments by their newest (oldest) record time, read
//! from the `time` fast field's column bounds. A bounded heap keeps the best `limit` hits;
//! once it is full, a partition or segment that cannot hold a better time is skipped and the
//! time range of the remaining ones narrows to what could still enter the heap. Only the
//! winners' stored records are read and decoded.
//!
//! A query with a phrase compiles to a superset of its records (the body has no positions;
//! [`LogQuery::needs_verification`]). Search then sorts each segment's candidates best first
//! and decodes them in that order (in batches, each read in document order), keeping those
//! [`LogQuery::matches`] accepts, until no candidate left can enter the heap. Its cost is
//! the candidates decoded: small when the phrase's words mostly occur as the phrase, the
//! whole range when they are common and the phrase rare.
//!
//! The histogram counts every matching record exactly, from the `time` and `severity` fast
//! fields (no stored record is read), or, for a query to verify, by decoding every
//! candidate.
//!
//! A record is read back from the doc store (its stored part) and the columns (time,
//! severity number, source: see `codec`).

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use tantivy::columnar::{BytesColumn, Column};
use tantivy::query::{BooleanQuery, EnableScoring, Query, RangeQuery, Weight};
use tantivy::schema::Value;
use tantivy::{
    DocAddress, Searcher, SegmentReader, TantivyDocument, Term, COLLECT_BLOCK_BUFFER_LEN,
};

use super::codec;
use super::partition::{tv, Partition};
use crate::error::{Result, StoreError};
use crate::logs::model::{LogRecord, Severity};
use crate::logs::query::LogQuery;
use crate::logs::schema::LogSchema;
use crate::logs::{Direction, FieldSummary, HistogramBucket};

/// Most buckets a histogram answers (as Prometheus caps points per series).
pub const MAX_HISTOGRAM_BUCKETS: u64 = 11_000;
/// Records a field summary samples when the request says 0.
pub const DEFAULT_FIELD_SAMPLE: usize = 10_000;
/// Most records a field summary samples.
pub const MAX_FIELD_SAMPLE: usize = 100_000;

/// The inclusive time range of a request, checked.
#[derive(Clone, Copy, Debug)]
pub struct TimeRange {
    pub start: u64,
    pub end: u64,
}

impl TimeRange {
    pub fn new(start: u64, end: u64) -> Result<TimeRange> {
        if start > end {
            return Err(StoreError::BadRequest(format!(
                "start ({start}) is after end ({end})"
            )));
        }
        Ok(TimeRange { start, end })
    }
}

/// Orders hits so that a better hit is greater: for a backward search a later time (then the
/// later partition, segment, document), for a forward search an earlier one. Unique per
/// document.
type Key = (u64, u64, u32, u32);

/// One hit; `rec` is its record when verification already decoded it.
struct Hit {
    key: Key,
    time: u64,
    part: usize,
    addr: (u32, u32),
    rec: Option<LogRecord>,
}

impl PartialEq for Hit {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Hit {}

impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Hit {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

struct TopK {
    limit: usize,
    direction: Direction,
    heap: BinaryHeap<Reverse<Hit>>,
}

impl TopK {
    fn new(limit: usize, direction: Direction) -> TopK {
        TopK {
            limit,
            direction,
            heap: BinaryHeap::with_capacity(limit.min(16_384) + 1),
        }
    }

    fn full(&self) -> bool {
        self.heap.len() >= self.limit
    }

    /// The time of the worst hit kept, once the heap is full: anything worse is useless.
    fn bound(&self) -> Option<u64> {
        if self.full() {
            self.heap.peek().map(|h| h.0.time)
        } else {
            None
        }
    }

    /// The part of `range` that can still improve the result (ties with the bound included).
    fn narrow(&self, range: TimeRange) -> Option<TimeRange> {
        let Some(b) = self.bound() else {
            return Some(range);
        };
        match self.direction {
            Direction::Backward if b <= range.end => Some(TimeRange {
                start: range.start.max(b),
                end: range.end,
            }),
            Direction::Forward if b >= range.start => Some(TimeRange {
                start: range.start,
                end: range.end.min(b),
            }),
            _ => None,
        }
    }

    fn key(&self, time: u64, part_start: u64, seg: u32, doc: u32) -> Key {
        match self.direction {
            Direction::Backward => (time, part_start, seg, doc),
            Direction::Forward => (!time, !part_start, !seg, !doc),
        }
    }

    /// Whether a hit with `key` would be kept.
    fn wants(&self, key: Key) -> bool {
        !self.full() || self.heap.peek().is_some_and(|w| key > w.0.key)
    }

    fn offer(&mut self, hit: Hit) {
        if !self.wants(hit.key) {
            return;
        }
        if self.full() {
            self.heap.pop();
        }
        self.heap.push(Reverse(hit));
    }

    /// Best first.
    fn into_sorted(self) -> Vec<Hit> {
        let mut v: Vec<Hit> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }
}

/// A segment and the bounds of its `time` column.
struct Seg<'a> {
    ord: u32,
    reader: &'a SegmentReader,
    time: Column<u64>,
    min: u64,
    max: u64,
}

fn segments<'a>(searcher: &'a Searcher, p: &Partition) -> Result<Vec<Seg<'a>>> {
    let mut out = Vec::new();
    for (ord, reader) in searcher.segment_readers().iter().enumerate() {
        if reader.num_docs() == 0 {
            continue;
        }
        let time = reader
            .fast_fields()
            .u64("time")
            .map_err(|e| tv(&p.dir, e))?;
        let (min, max) = (time.min_value(), time.max_value());
        out.push(Seg {
            ord: ord as u32,
            reader,
            time,
            min,
            max,
        });
    }
    Ok(out)
}

/// The weight of `query` for a segment whose times are `[seg_min, seg_max]`, restricted to
/// `range` by a fast-field range clause unless the segment lies inside the range anyway.
fn weight_for(
    query: &dyn Query,
    schema: &LogSchema,
    searcher: &Searcher,
    range: TimeRange,
    seg_min: u64,
    seg_max: u64,
) -> tantivy::Result<Option<Box<dyn Weight>>> {
    if seg_min >= range.start && seg_max <= range.end {
        return Ok(None);
    }
    let time_range = RangeQuery::new(
        Bound::Included(Term::from_field_u64(schema.time, range.start)),
        Bound::Included(Term::from_field_u64(schema.time, range.end)),
    );
    let both = BooleanQuery::intersection(vec![query.box_clone(), Box::new(time_range)]);
    both.weight(EnableScoring::disabled_from_searcher(searcher))
        .map(Some)
}

/// Calls `f(doc, time)` for every live matching document of `seg` with time in `range`.
fn for_each_match(
    weight: &dyn Weight,
    seg: &Seg<'_>,
    range: TimeRange,
    f: &mut dyn FnMut(u32, u64),
) -> tantivy::Result<()> {
    let alive = seg.reader.alive_bitset();
    let mut times = vec![None; COLLECT_BLOCK_BUFFER_LEN];
    weight.for_each_no_score(seg.reader, &mut |docs| {
        let times = &mut times[..docs.len()];
        times.fill(None);
        seg.time.first_vals(docs, times);
        for (doc, t) in docs.iter().zip(times.iter()) {
            let Some(t) = *t else { continue };
            if t < range.start || t > range.end {
                continue;
            }
            if alive.is_some_and(|a| a.is_deleted(*doc)) {
                continue;
            }
            f(*doc, t);
        }
    })
}

/// Partitions overlapping `range`, in the order a search in `direction` reads them.
fn ordered(
    parts: &[Arc<Partition>],
    range: TimeRange,
    direction: Direction,
) -> Vec<Arc<Partition>> {
    let mut v: Vec<Arc<Partition>> = parts
        .iter()
        .filter(|p| p.overlaps(range.start, range.end))
        .cloned()
        .collect();
    match direction {
        Direction::Backward => v.sort_by_key(|p| Reverse((p.end_ns(), p.start_secs))),
        Direction::Forward => v.sort_by_key(|p| (p.start_ns(), p.start_secs)),
    }
    v
}

/// The columns that complete a segment's stored records, and the sources decoded so far
/// (a segment holds a handful: one per process that sent logs).
struct SegColumns {
    severity: Column<u64>,
    source: BytesColumn,
    sources: HashMap<u64, codec::Source>,
}

/// Reads whole records of one partition back: the stored part from the doc store; time,
/// severity number and source from the columns.
#[derive(Default)]
struct Records {
    segs: HashMap<u32, SegColumns>,
}

impl Records {
    fn load(
        &mut self,
        searcher: &Searcher,
        schema: &LogSchema,
        p: &Partition,
        addr: (u32, u32),
        time: u64,
    ) -> Result<LogRecord> {
        let corrupt = |reason: String| StoreError::Corrupt {
            path: p.dir.clone(),
            reason,
        };
        let (seg, doc) = addr;
        let stored: TantivyDocument = searcher
            .doc(DocAddress::new(seg, doc))
            .map_err(|e| tv(&p.dir, e))?;
        let bytes = stored
            .get_first(schema.record)
            .and_then(|v| v.as_bytes())
            .ok_or_else(|| corrupt("log document without its stored record".to_string()))?;
        let cols = match self.segs.entry(seg) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let ff = searcher.segment_reader(seg).fast_fields();
                let severity = ff.u64("severity").map_err(|e| tv(&p.dir, e))?;
                let source = ff
                    .bytes("source")
                    .map_err(|e| tv(&p.dir, e))?
                    .ok_or_else(|| corrupt("log segment without a source column".to_string()))?;
                e.insert(SegColumns {
                    severity,
                    source,
                    sources: HashMap::new(),
                })
            }
        };
        let severity = cols
            .severity
            .first(doc)
            .and_then(|s| u8::try_from(s).ok())
            .ok_or_else(|| corrupt(format!("log document {doc} has no valid severity")))?;
        let ord = cols
            .source
            .ords()
            .first(doc)
            .ok_or_else(|| corrupt(format!("log document {doc} has no source")))?;
        let source = match cols.sources.entry(ord) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let mut buf = Vec::new();
                cols.source
                    .ord_to_bytes(ord, &mut buf)
                    .map_err(|e| StoreError::io(&p.dir, e))?;
                let source = codec::decode_source(&buf)
                    .map_err(|e| corrupt(format!("log record source does not decode: {e}")))?;
                e.insert(source)
            }
        };
        codec::decode_stored(bytes, time, severity, source)
            .map_err(|e| corrupt(format!("stored log record does not decode: {e}")))
    }
}

/// The `limit` best records matching `query` in `range`, best first. With `verify`, `query`
/// may select more than the matching records (see [`LogQuery::needs_verification`]): each
/// candidate is decoded and kept only if `verify` matches it, walking every segment's
/// candidates best first and stopping as soon as none can enter the result.
pub fn search(
    parts: &[Arc<Partition>],
    schema: &LogSchema,
    query: &dyn Query,
    verify: Option<&LogQuery>,
    range: TimeRange,
    limit: usize,
    direction: Direction,
) -> Result<Vec<LogRecord>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let parts = ordered(parts, range, direction);
    let mut top = TopK::new(limit, direction);
    let mut searchers: Vec<Searcher> = Vec::with_capacity(parts.len());
    let mut records: Vec<Records> = Vec::with_capacity(parts.len());
    let mut candidates: Vec<(Key, u32, u64)> = Vec::new();
    let mut batch: Vec<(Key, u32, u64)> = Vec::new();
    for (pi, p) in parts.iter().enumerate() {
        let searcher = p.reader.searcher();
        searchers.push(searcher);
        records.push(Records::default());
        let searcher = &searchers[pi];
        // the partition's possible times, then what can still improve the heap
        let prange = TimeRange {
            start: range.start.max(p.start_ns()),
            end: range.end.min(p.end_ns().saturating_sub(1)),
        };
        if top.narrow(prange).is_none() {
            continue;
        }
        let mut segs = segments(searcher, p)?;
        match direction {
            Direction::Backward => segs.sort_by_key(|s| Reverse(s.max)),
            Direction::Forward => segs.sort_by_key(|s| s.min),
        }
        let plain = query
            .weight(EnableScoring::disabled_from_searcher(searcher))
            .map_err(|e| tv(&p.dir, e))?;
        for seg in &segs {
            let Some(r) = top.narrow(prange) else { break };
            if seg.max < r.start || seg.min > r.end {
                continue;
            }
            let ranged = weight_for(query, schema, searcher, r, seg.min, seg.max)
                .map_err(|e| tv(&p.dir, e))?;
            let w = ranged.as_deref().unwrap_or(plain.as_ref());
            let part_start = p.start_secs;
            let Some(verify) = verify else {
                for_each_match(w, seg, r, &mut |doc, t| {
                    top.offer(Hit {
                        key: top.key(t, part_start, seg.ord, doc),
                        time: t,
                        part: pi,
                        addr: (seg.ord, doc),
                        rec: None,
                    })
                })
                .map_err(|e| tv(&p.dir, e))?;
                continue;
            };
            candidates.clear();
            for_each_match(w, seg, r, &mut |doc, t| {
                candidates.push((top.key(t, part_start, seg.ord, doc), doc, t))
            })
            .map_err(|e| tv(&p.dir, e))?;
            candidates.sort_unstable_by_key(|c| Reverse(c.0));
            // Best first, in batches each read in document order: the doc store
            // decompresses a whole block per read and caches two, and time order need not
            // be document order (a segment holds batches as they arrived). Batches double,
            // so rare phrases cost a few passes over the segment's blocks at most.
            let mut next = 0;
            let mut size = limit.clamp(64, 4096);
            while next < candidates.len() && top.wants(candidates[next].0) {
                let end = candidates.len().min(next + size);
                batch.clear();
                batch.extend_from_slice(&candidates[next..end]);
                batch.sort_unstable_by_key(|c| c.1);
                for &(key, doc, t) in &batch {
                    if !top.wants(key) {
                        continue;
                    }
                    let rec = records[pi].load(searcher, schema, p, (seg.ord, doc), t)?;
                    if verify.matches(&rec) {
                        top.offer(Hit {
                            key,
                            time: t,
                            part: pi,
                            addr: (seg.ord, doc),
                            rec: Some(rec),
                        });
                    }
                }
                next = end;
                size = size.saturating_mul(2);
            }
        }
    }
    // read the winners in document order (see above), answer them best first
    let mut hits = top.into_sorted();
    let mut order: Vec<usize> = (0..hits.len()).collect();
    order.sort_unstable_by_key(|&i| (hits[i].part, hits[i].addr));
    let mut out: Vec<Option<LogRecord>> = (0..hits.len()).map(|_| None).collect();
    for i in order {
        let h = &mut hits[i];
        out[i] = Some(match h.rec.take() {
            Some(rec) => rec,
            None => {
                records[h.part].load(&searchers[h.part], schema, &parts[h.part], h.addr, h.time)?
            }
        });
    }
    Ok(out.into_iter().flatten().collect())
}

/// Number of buckets of a histogram over `range` by `step`.
pub fn bucket_count(range: TimeRange, step: u64) -> Result<u64> {
    if step == 0 {
        return Err(StoreError::BadRequest(
            "histogram step must be positive".to_string(),
        ));
    }
    let n = (range.end - range.start) / step + 1;
    if n > MAX_HISTOGRAM_BUCKETS {
        return Err(StoreError::BadRequest(format!(
            "a histogram of {n} buckets exceeds the limit of {MAX_HISTOGRAM_BUCKETS}; use a larger step"
        )));
    }
    Ok(n)
}

/// Counts of matching records per `step` from `range.start`, every bucket present. Without
/// `verify` only fast fields are read; with it (`query` a superset) every candidate's
/// record is decoded and counted if `verify` matches it.
pub fn histogram(
    parts: &[Arc<Partition>],
    schema: &LogSchema,
    query: &dyn Query,
    verify: Option<&LogQuery>,
    range: TimeRange,
    step: u64,
) -> Result<Vec<HistogramBucket>> {
    let n = bucket_count(range, step)?;
    let mut buckets: Vec<HistogramBucket> = (0..n)
        .map(|i| HistogramBucket {
            start_unix_nano: range.start + i * step,
            ..HistogramBucket::default()
        })
        .collect();
    let mut count = |t: u64, sev: u64| {
        let i = ((t - range.start) / step) as usize;
        let sev = Severity::from_number(u8::try_from(sev).unwrap_or(u8::MAX));
        if let Some(b) = buckets.get_mut(i) {
            b.count += 1;
            b.by_severity[sev as usize] += 1;
        }
    };
    let mut candidates: Vec<(u32, u64)> = Vec::new();
    for p in ordered(parts, range, Direction::Forward) {
        let searcher = p.reader.searcher();
        let mut records = Records::default();
        let plain = query
            .weight(EnableScoring::disabled_from_searcher(&searcher))
            .map_err(|e| tv(&p.dir, e))?;
        for seg in segments(&searcher, &p)? {
            if seg.max < range.start || seg.min > range.end {
                continue;
            }
            let ranged = weight_for(query, schema, &searcher, range, seg.min, seg.max)
                .map_err(|e| tv(&p.dir, e))?;
            let w = ranged.as_deref().unwrap_or(plain.as_ref());
            let Some(verify) = verify else {
                let severity = seg
                    .reader
                    .fast_fields()
                    .u64("severity")
                    .map_err(|e| tv(&p.dir, e))?;
                for_each_match(w, &seg, range, &mut |doc, t| {
                    count(t, severity.first(doc).unwrap_or(0))
                })
                .map_err(|e| tv(&p.dir, e))?;
                continue;
            };
            candidates.clear();
            for_each_match(w, &seg, range, &mut |doc, t| candidates.push((doc, t)))
                .map_err(|e| tv(&p.dir, e))?;
            for &(doc, t) in &candidates {
                let rec = records.load(&searcher, schema, &p, (seg.ord, doc), t)?;
                if verify.matches(&rec) {
                    count(t, u64::from(rec.severity_number));
                }
            }
        }
    }
    Ok(buckets)
}

/// Field summaries of sampled records: every field and attribute with its most frequent
/// values. A record counts once per field and once per value.
pub fn summarize_fields(records: &[LogRecord], top_values: usize) -> Vec<FieldSummary> {
    #[derive(Default)]
    struct Acc {
        records: u64,
        values: HashMap<String, u64>,
    }
    let mut fields: BTreeMap<String, Acc> = BTreeMap::new();
    let mut seen_fields: HashSet<String> = HashSet::new();
    let mut seen_values: HashSet<(String, String)> = HashSet::new();
    for rec in records {
        seen_fields.clear();
        seen_values.clear();
        let mut add = |name: String, value: String| {
            if seen_values.insert((name.clone(), value.clone())) {
                let acc = fields.entry(name.clone()).or_default();
                if seen_fields.insert(name) {
                    acc.records += 1;
                }
                *acc.values.entry(value).or_default() += 1;
            }
        };
        if !rec.service.is_empty() {
            add("service".to_string(), rec.service.clone());
        }
        add(
            "severity".to_string(),
            Severity::from_number(rec.severity_number)
                .as_str()
                .to_string(),
        );
        if !rec.severity_text.is_empty() {
            add("severity_text".to_string(), rec.severity_text.clone());
        }
        if let Some(t) = &rec.trace_id {
            add("trace_id".to_string(), t.to_string());
        }
        if let Some(s) = &rec.span_id {
            add("span_id".to_string(), s.to_string());
        }
        for (k, v) in rec.resource.iter().chain(&rec.attributes) {
            add(format!("attr.{k}"), v.clone());
        }
    }
    fields
        .into_iter()
        .map(|(name, acc)| {
            let distinct_values = acc.values.len() as u64;
            let mut top: Vec<(String, u64)> = acc.values.into_iter().collect();
            top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            top.truncate(top_values);
            FieldSummary {
                name,
                records: acc.records,
                distinct_values,
                top,
            }
        })
        .collect()
}
