//! The small storage contracts the rest of Lookout programs against.
//!
//! * [`MetricsAppender`]: ingest protocols decode their input into a [`MetricBatch`] and call
//!   `append`. The call returns only once every accepted sample is durable in the WAL (per the
//!   configured fsync policy). Per-sample rejections (out of order, too old, limits) are not
//!   errors: they come back in the [`AppendReport`] so protocols can answer with partial
//!   success. An `Err` means nothing of the batch was accepted.
//! * [`MetricsQuerier`]: selects series by label matchers over a time range.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{Labels, MetricBatch, MetricMetadata, RawMetricBatch, Sample, Series};

/// Why a series or sample was not stored. Every reason has a stable name used in
/// `/metrics` (`reason` label) and in client-facing messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    /// Older than the newest sample already stored for the series.
    OutOfOrder,
    /// Same timestamp as the newest stored sample, different value.
    DuplicateTimestamp,
    /// Older than `max_sample_age`.
    TooOld,
    /// Further in the future than `max_future`.
    TooFarInFuture,
    /// More labels than `max_labels_per_series`.
    TooManyLabels,
    /// A label name longer than `max_label_name_length`.
    LabelNameTooLong,
    /// A label value longer than `max_label_value_length`.
    LabelValueTooLong,
    /// A label name or metric name that is not valid in Prometheus's data model.
    InvalidLabelName,
    /// A series without a `__name__` label.
    MissingMetricName,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::OutOfOrder => "out_of_order",
            RejectReason::DuplicateTimestamp => "duplicate_timestamp",
            RejectReason::TooOld => "too_old",
            RejectReason::TooFarInFuture => "too_far_in_future",
            RejectReason::TooManyLabels => "too_many_labels",
            RejectReason::LabelNameTooLong => "label_name_too_long",
            RejectReason::LabelValueTooLong => "label_value_too_long",
            RejectReason::InvalidLabelName => "invalid_label_name",
            RejectReason::MissingMetricName => "missing_metric_name",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Outcome of an append: how many samples were stored, how many were rejected and why.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppendReport {
    pub accepted_samples: u64,
    /// Identical re-sends of an already stored sample: silently ignored, as Prometheus does.
    pub duplicate_samples: u64,
    pub rejected_samples: BTreeMap<RejectReason, u64>,
    /// The first rejection in full, naming the series and the limit, for client messages.
    pub first_rejection: Option<String>,
}

impl AppendReport {
    pub fn rejected_total(&self) -> u64 {
        self.rejected_samples.values().sum()
    }

    pub fn reject(&mut self, reason: RejectReason, samples: u64, message: impl FnOnce() -> String) {
        *self.rejected_samples.entry(reason).or_default() += samples;
        if self.first_rejection.is_none() {
            self.first_rejection = Some(message());
        }
    }

    /// Folds another report into this one (e.g. when a request was appended in parts).
    pub fn merge(&mut self, other: AppendReport) {
        self.accepted_samples += other.accepted_samples;
        self.duplicate_samples += other.duplicate_samples;
        for (r, n) in other.rejected_samples {
            *self.rejected_samples.entry(r).or_default() += n;
        }
        if self.first_rejection.is_none() {
            self.first_rejection = other.first_rejection;
        }
    }
}

#[async_trait]
pub trait MetricsAppender: Send + Sync + 'static {
    /// Stores a batch. Returns after the accepted part is durable; see the module docs.
    async fn append(&self, batch: MetricBatch) -> Result<AppendReport>;

    /// Stores a batch in its allocation-light form, with exactly `append`'s semantics and
    /// report. The default converts to a [`MetricBatch`]; stores override it to look series
    /// up without allocating.
    async fn append_raw(&self, batch: RawMetricBatch) -> Result<AppendReport> {
        self.append(batch.into_metric_batch()).await
    }
}

/// Label matcher kinds, as in PromQL selectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    RegexMatch,
    RegexNoMatch,
}

/// One label matcher. Regexes are fully anchored, as in Prometheus.
#[derive(Clone, Debug)]
pub struct LabelMatcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<regex::Regex>,
}

impl LabelMatcher {
    /// Builds a matcher; a regex that does not compile is a [`crate::StoreError::BadRequest`].
    pub fn new(name: impl Into<String>, op: MatchOp, value: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let value = value.into();
        let regex = match op {
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => {
                Some(regex::Regex::new(&format!("^(?s:{value})$")).map_err(|e| {
                    crate::StoreError::BadRequest(format!(
                        "invalid regular expression {value:?} for label {name:?}: {e}"
                    ))
                })?)
            }
            _ => None,
        };
        Ok(Self {
            name,
            op,
            value,
            regex,
        })
    }

    /// Whether a label value (empty when the label is absent) matches.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::RegexMatch => self.regex.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::RegexNoMatch => !self.regex.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }

    /// Whether the matcher matches a series that lacks the label (matches the empty string).
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get(&self.name).unwrap_or(""))
    }
}

/// Read access to stored metrics. Time bounds are inclusive milliseconds.
/// The window widths archived metrics are downsampled to, finest first.
pub const ROLLUP_RESOLUTIONS_MS: [i64; 2] = [5 * 60_000, 60 * 60_000];

/// Which aggregate of downsampled windows a query reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollupAggregate {
    /// The reset-free running total of a counter (for `rate`, `increase`).
    Counter,
    Min,
    Max,
    Sum,
    Count,
    Last,
    /// `sum / count` of each window.
    Mean,
}

/// What [`MetricsQuerier::select_rollup`] read.
#[derive(Default)]
pub struct RollupSelection {
    /// Each series' synthetic samples, read when loaded.
    pub series: Vec<LazySeries>,
    /// Rollup files read, for query stats.
    pub files: usize,
}

pub trait MetricsQuerier: Send + Sync {
    /// Every series matching all `matchers` that has samples in `[mint, maxt]`, with those
    /// samples in time order (staleness markers included), sorted by labels.
    fn select(&self, matchers: &[LabelMatcher], mint: i64, maxt: i64) -> Result<Vec<Series>>;

    /// [`MetricsQuerier::select`] without decoding: each series' samples are read when the
    /// caller asks ([`LazySeries::load`]), so a query can hold one series' samples at a time
    /// and decode series on several threads. Same series, same order.
    fn select_lazy(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<LazySeries>> {
        Ok(self
            .select(matchers, mint, maxt)?
            .into_iter()
            .map(LazySeries::loaded)
            .collect())
    }

    /// Label sets of the series matching any of `matcher_sets` (all series when empty) with
    /// samples in `[mint, maxt]`, sorted.
    fn series(
        &self,
        matcher_sets: &[Vec<LabelMatcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>>;

    /// Sorted, unique label names of the series matching any of `matcher_sets`.
    fn label_names(
        &self,
        matcher_sets: &[Vec<LabelMatcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>>;

    /// Sorted, unique values of label `name` among the series matching any of `matcher_sets`.
    fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<LabelMatcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>>;

    /// Metadata per metric family, as last reported by ingest.
    fn metadata(&self) -> Result<Vec<MetricMetadata>>;

    /// The synthetic series of rollup aggregate `agg` at `resolution_ms` (one of
    /// [`ROLLUP_RESOLUTIONS_MS`]) for the series matching `matchers` in `[mint, maxt]`: a
    /// point per archived window, then the raw samples not archived yet (see
    /// `archive::rollup`). `None` when the range reads no archived data or some of it has no
    /// rollups: the caller reads raw samples instead.
    fn select_rollup(
        &self,
        _matchers: &[LabelMatcher],
        _mint: i64,
        _maxt: i64,
        _resolution_ms: i64,
        _agg: RollupAggregate,
    ) -> Result<Option<RollupSelection>> {
        Ok(None)
    }

    /// Archive (cold tier) files a selection of `[mint, maxt]` reads, for query stats.
    fn archive_files(&self, _mint: i64, _maxt: i64) -> usize {
        0
    }

    /// Size of each storage tier, for `/api/v1/status/tsdb`; `None` for a querier that is
    /// not a store.
    fn storage_stats(&self) -> Option<crate::tsdb::StoreStats> {
        None
    }
}

/// Where a [`LazySeries`] reads its samples from.
pub trait SampleSource: Send + Sync {
    /// Appends the series' samples (time order, staleness markers included) to `out`.
    fn load(&self, cache: &mut ReadCache, out: &mut Vec<Sample>) -> Result<()>;
}

/// A selected series whose samples are read on demand.
pub struct LazySeries {
    pub labels: Labels,
    source: LazySource,
}

enum LazySource {
    Loaded(Vec<Sample>),
    /// One series of a selection held in memory and shared (a remembered selection).
    Shared(std::sync::Arc<[Series]>, usize),
    Deferred(Box<dyn SampleSource>),
}

impl LazySeries {
    /// A series whose samples are already in memory.
    pub fn loaded(series: Series) -> Self {
        LazySeries {
            labels: series.labels,
            source: LazySource::Loaded(series.samples),
        }
    }

    /// Series `index` of `all`, which stays shared (only the labels are copied).
    pub fn shared(all: std::sync::Arc<[Series]>, index: usize) -> Self {
        let labels = all.get(index).map(|s| s.labels.clone()).unwrap_or_default();
        LazySeries {
            labels,
            source: LazySource::Shared(all, index),
        }
    }

    pub fn deferred(labels: Labels, source: Box<dyn SampleSource>) -> Self {
        LazySeries {
            labels,
            source: LazySource::Deferred(source),
        }
    }

    /// The series with its samples in memory of their own (see [`LazySeries::load`]).
    pub fn to_series(&self, cache: &mut ReadCache, buf: &mut Vec<Sample>) -> Result<Series> {
        Ok(Series {
            labels: self.labels.clone(),
            samples: self.load(cache, buf)?.to_vec(),
        })
    }

    /// The samples: borrowed when already in memory, else decoded into `buf`.
    pub fn load<'a>(
        &'a self,
        cache: &mut ReadCache,
        buf: &'a mut Vec<Sample>,
    ) -> Result<&'a [Sample]> {
        match &self.source {
            LazySource::Loaded(samples) => Ok(samples),
            LazySource::Shared(all, index) => Ok(all.get(*index).map_or(&[], |s| &s.samples)),
            LazySource::Deferred(source) => {
                buf.clear();
                source.load(cache, buf)?;
                Ok(buf)
            }
        }
    }
}

impl fmt::Debug for LazySeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LazySeries({})", self.labels)
    }
}

/// A decompressed page, keyed by (source, page number).
type CachedPage = ((usize, u32), std::sync::Arc<Vec<u8>>);

/// Decompressed storage pages kept while a reader goes through series in order, so
/// neighbouring series sharing a page decompress it once. One per reading thread; bounded.
#[derive(Default)]
pub struct ReadCache {
    /// (source key, page number) -> page, oldest first.
    pages: std::collections::VecDeque<CachedPage>,
}

impl ReadCache {
    /// Pages kept: enough for the pages one series spans plus its neighbours'.
    const CAPACITY: usize = 16;

    pub fn new() -> Self {
        Self::default()
    }

    /// The page `(key, page)`, read with `read` when not cached.
    pub fn page(
        &mut self,
        key: usize,
        page: u32,
        read: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<std::sync::Arc<Vec<u8>>> {
        if let Some((_, p)) = self.pages.iter().find(|(k, _)| *k == (key, page)) {
            return Ok(p.clone());
        }
        let p = std::sync::Arc::new(read()?);
        if self.pages.len() >= Self::CAPACITY {
            self.pages.pop_front();
        }
        self.pages.push_back(((key, page), p.clone()));
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_matchers_are_anchored() {
        let m = LabelMatcher::new("job", MatchOp::RegexMatch, "api").unwrap();
        assert!(m.matches("api"));
        assert!(!m.matches("api-server"));
        let m = LabelMatcher::new("job", MatchOp::RegexNoMatch, "a.*").unwrap();
        assert!(!m.matches("api"));
        assert!(m.matches(""));
    }

    #[test]
    fn bad_regex_is_a_bad_request() {
        let err = LabelMatcher::new("job", MatchOp::RegexMatch, "(").unwrap_err();
        assert!(err.to_string().contains("invalid regular expression"));
    }
}
