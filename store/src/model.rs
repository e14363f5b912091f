//! The metric signal model: what every ingest protocol is converted into, once, at the edge.
//!
//! Series are identified by their full, sorted label set; the metric name is the `__name__`
//! label, as in Prometheus. Timestamps are milliseconds since the Unix epoch.

use std::fmt;

/// The label that carries a series' metric name.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// Prometheus's staleness marker: a NaN with this exact bit pattern ends a series.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is the staleness marker (and not an ordinary NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A label set, always sorted by name with unique names and no empty values
/// (an empty value means "label absent", as in Prometheus).
///
/// Shared: a clone is a reference count, not a copy. A query hands the same series' labels
/// from the store to the selector, the function and the aggregation, and a rule group's
/// queries share their selections, so label sets are cloned far more often than built.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(std::sync::Arc<[Label]>);

impl Labels {
    /// Builds a label set: sorts by name, drops empty values, and for a repeated name keeps
    /// the last value given.
    pub fn new(mut labels: Vec<Label>) -> Self {
        labels.retain(|l| !l.value.is_empty());
        // stable sort keeps input order among equal names, so the last one given wins below
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out: Vec<Label> = Vec::with_capacity(labels.len());
        for l in labels {
            match out.last_mut() {
                Some(prev) if prev.name == l.name => *prev = l,
                _ => out.push(l),
            }
        }
        Labels(out.into())
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self::new(pairs.into_iter().map(|(n, v)| Label::new(n, v)).collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    /// The metric name (`__name__`), if any.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME_LABEL)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// The labels as a vector of their own (a copy).
    pub fn into_vec(self) -> Vec<Label> {
        self.0.to_vec()
    }

    /// A copy without the given label names.
    pub fn without(&self, names: &[&str]) -> Labels {
        if !self.0.iter().any(|l| names.contains(&l.name.as_str())) {
            return self.clone();
        }
        Labels(
            self.0
                .iter()
                .filter(|l| !names.contains(&l.name.as_str()))
                .cloned()
                .collect(),
        )
    }
}

impl fmt::Display for Labels {
    /// Prometheus's notation: `name{a="b", c="d"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.metric_name() {
            f.write_str(name)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for l in self.0.iter().filter(|l| l.name != METRIC_NAME_LABEL) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub value: f64,
}

impl Sample {
    pub fn new(timestamp_ms: i64, value: f64) -> Self {
        Self {
            timestamp_ms,
            value,
        }
    }
}

/// One series and some of its samples, in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// Kind of a metric family, as Prometheus's metadata API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }
}

/// Metadata of a metric family (`/api/v1/metadata`).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricMetadata {
    pub metric_family: String,
    pub metric_type: MetricType,
    pub help: String,
    pub unit: String,
}

/// What the collector hands to the store: series with samples, plus any metadata seen.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricBatch {
    pub series: Vec<Series>,
    pub metadata: Vec<MetricMetadata>,
}

impl MetricBatch {
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
}

/// Why a series could not be added to a [`RawMetricBatch`]; `label` counts the series'
/// labels in the order they were pushed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RawLabelError {
    #[error("name of label {label} is not valid UTF-8")]
    NameNotUtf8 { label: usize },
    #[error("value of label {label} is not valid UTF-8")]
    ValueNotUtf8 { label: usize },
    #[error("batch label text exceeds 4 GiB")]
    TooLarge,
}

/// Offsets of one label in [`RawMetricBatch::text`]: name `[n0, n1)`, value `[v0, v1)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RawLabel {
    n0: u32,
    n1: u32,
    v0: u32,
    v1: u32,
}

/// One series of a [`RawMetricBatch`]: index ranges into its labels and samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RawSeries {
    labels: (u32, u32),
    samples: (u32, u32),
}

/// An allocation-light form of [`MetricBatch`]: every label string of the batch lives in one
/// text buffer and every sample in one vector, so decoding a request costs a few
/// allocations instead of two per label. Protocols whose wire format carries label bytes
/// (remote write) build it with [`RawMetricBatch::push_label`] / [`RawMetricBatch::push_sample`]
/// / [`RawMetricBatch::finish_series`], which checks the series' label text is UTF-8 in one
/// pass; the store looks known series up from the borrowed
/// labels and allocates only for new ones.
///
/// Each finished series' labels follow [`Labels::new`]: sorted by name, empty values
/// dropped, and for a repeated name the last value given kept. Series without samples are
/// dropped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawMetricBatch {
    text: String,
    /// Label bytes of the series being built, validated once when it is finished.
    pending: Vec<u8>,
    labels: Vec<RawLabel>,
    series: Vec<RawSeries>,
    samples: Vec<Sample>,
    /// Start of the unfinished series in `labels` / `samples`.
    open_labels: usize,
    open_samples: usize,
    pub metadata: Vec<MetricMetadata>,
}

/// A borrowed view of one series of a [`RawMetricBatch`].
#[derive(Clone, Copy, Debug)]
pub struct RawSeriesRef<'a> {
    text: &'a str,
    labels: &'a [RawLabel],
    pub samples: &'a [Sample],
}

impl<'a> RawSeriesRef<'a> {
    /// Label pairs, normalized as [`Labels::new`] would.
    pub fn labels(&self) -> impl ExactSizeIterator<Item = (&'a str, &'a str)> + Clone + 'a {
        let text = self.text;
        self.labels.iter().map(move |l| {
            (
                text.get(l.n0 as usize..l.n1 as usize).unwrap_or(""),
                text.get(l.v0 as usize..l.v1 as usize).unwrap_or(""),
            )
        })
    }

    /// The label names and values concatenated, when they lie contiguously in the batch
    /// (always, unless the labels had to be reordered or had empty values dropped).
    pub fn label_run(&self) -> Option<&'a str> {
        let (first, last) = (self.labels.first()?, self.labels.last()?);
        let contiguous = self.labels.windows(2).all(|w| w[1].n0 == w[0].v1);
        contiguous
            .then(|| self.text.get(first.n0 as usize..last.v1 as usize))
            .flatten()
    }

    /// The labels as an owned [`Labels`] (allocates).
    pub fn to_labels(&self) -> Labels {
        // already normalized: sorted, unique, no empty values
        Labels(self.labels().map(|(n, v)| Label::new(n, v)).collect())
    }
}

impl RawMetricBatch {
    /// An empty batch expecting about `series` series, `samples` samples and `text_bytes`
    /// bytes of label text.
    pub fn with_capacity(series: usize, samples: usize, text_bytes: usize) -> Self {
        RawMetricBatch {
            text: String::with_capacity(text_bytes),
            labels: Vec::with_capacity(series.saturating_mul(8)),
            series: Vec::with_capacity(series),
            samples: Vec::with_capacity(samples),
            ..Default::default()
        }
    }

    /// Adds a label to the series being built; [`RawMetricBatch::finish_series`] checks
    /// that it is UTF-8.
    pub fn push_label(&mut self, name: &[u8], value: &[u8]) -> Result<(), RawLabelError> {
        let base = self.text.len() + self.pending.len();
        let pos = |x: usize| u32::try_from(x).map_err(|_| RawLabelError::TooLarge);
        let n0 = pos(base)?;
        let n1 = pos(base + name.len())?;
        let v1 = pos(base + name.len() + value.len())?;
        self.pending.extend_from_slice(name);
        self.pending.extend_from_slice(value);
        self.labels.push(RawLabel { n0, n1, v0: n1, v1 });
        Ok(())
    }

    /// Adds a label (already UTF-8) to the series being built.
    pub fn push_label_str(&mut self, name: &str, value: &str) -> Result<(), RawLabelError> {
        self.push_label(name.as_bytes(), value.as_bytes())
    }

    /// Adds a sample to the series being built.
    pub fn push_sample(&mut self, sample: Sample) {
        self.samples.push(sample);
    }

    /// Ends the series being built: keeps it if it has samples (normalizing its labels),
    /// drops it otherwise. A series whose label text is not UTF-8 is dropped and named in
    /// the error; the batch stays usable.
    pub fn finish_series(&mut self) -> Result<(), RawLabelError> {
        if self.samples.len() == self.open_samples {
            self.discard_series();
            return Ok(());
        }
        if let Err(e) = self.commit_text() {
            self.discard_series();
            return Err(e);
        }
        let text = &self.text;
        let get = |a: u32, b: u32| text.get(a as usize..b as usize).unwrap_or("");
        let open = &mut self.labels[self.open_labels..];
        let normalized = open
            .windows(2)
            .all(|w| get(w[0].n0, w[0].n1) < get(w[1].n0, w[1].n1))
            && open.iter().all(|l| l.v1 > l.v0);
        if !normalized {
            // the rare path, with exactly Labels::new's semantics
            let mut tmp: Vec<RawLabel> = open.iter().copied().filter(|l| l.v1 > l.v0).collect();
            tmp.sort_by(|a, b| get(a.n0, a.n1).cmp(get(b.n0, b.n1)));
            let mut out: Vec<RawLabel> = Vec::with_capacity(tmp.len());
            for l in tmp {
                match out.last_mut() {
                    Some(prev) if get(prev.n0, prev.n1) == get(l.n0, l.n1) => *prev = l,
                    _ => out.push(l),
                }
            }
            self.labels.truncate(self.open_labels);
            self.labels.extend(out);
        }
        let idx = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
        self.series.push(RawSeries {
            labels: (idx(self.open_labels), idx(self.labels.len())),
            samples: (idx(self.open_samples), idx(self.samples.len())),
        });
        self.open_labels = self.labels.len();
        self.open_samples = self.samples.len();
        Ok(())
    }

    /// Moves the open series' label bytes into `text` after checking them: the whole run is
    /// UTF-8 and every name and value starts on a character boundary exactly when each name
    /// and value is UTF-8 on its own.
    fn commit_text(&mut self) -> Result<(), RawLabelError> {
        let base = self.text.len();
        let open = &self.labels[self.open_labels..];
        let checked = std::str::from_utf8(&self.pending).ok().filter(|run| {
            open.iter().all(|l| {
                run.is_char_boundary(l.n0 as usize - base)
                    && run.is_char_boundary(l.v0 as usize - base)
            })
        });
        if let Some(run) = checked {
            self.text.push_str(run);
            self.pending.clear();
            return Ok(());
        }
        let piece = |a: u32, b: u32| self.pending.get(a as usize - base..b as usize - base);
        for (label, l) in open.iter().enumerate() {
            if piece(l.n0, l.n1).is_none_or(|b| std::str::from_utf8(b).is_err()) {
                return Err(RawLabelError::NameNotUtf8 { label });
            }
            if piece(l.v0, l.v1).is_none_or(|b| std::str::from_utf8(b).is_err()) {
                return Err(RawLabelError::ValueNotUtf8 { label });
            }
        }
        // unreachable in practice: every piece is valid, so the run is too
        Err(RawLabelError::NameNotUtf8 { label: 0 })
    }

    /// Drops the series being built.
    pub fn discard_series(&mut self) {
        self.pending.clear();
        self.labels.truncate(self.open_labels);
        self.samples.truncate(self.open_samples);
    }

    /// Number of finished series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    pub fn sample_count(&self) -> usize {
        self.series
            .iter()
            .map(|s| (s.samples.1 - s.samples.0) as usize)
            .sum()
    }

    fn view(&self, s: &RawSeries) -> RawSeriesRef<'_> {
        RawSeriesRef {
            text: &self.text,
            labels: self
                .labels
                .get(s.labels.0 as usize..s.labels.1 as usize)
                .unwrap_or(&[]),
            samples: self
                .samples
                .get(s.samples.0 as usize..s.samples.1 as usize)
                .unwrap_or(&[]),
        }
    }

    /// Series `i`, if finished.
    pub fn get(&self, i: usize) -> Option<RawSeriesRef<'_>> {
        self.series.get(i).map(|s| self.view(s))
    }

    /// Every finished series, in the order given.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RawSeriesRef<'_>> + '_ {
        self.series.iter().map(|s| self.view(s))
    }

    /// The same batch with one owned [`Series`] per series.
    pub fn into_metric_batch(self) -> MetricBatch {
        let series = self
            .iter()
            .map(|s| Series {
                labels: s.to_labels(),
                samples: s.samples.to_vec(),
            })
            .collect();
        MetricBatch {
            series,
            metadata: self.metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sorted_deduped_and_empty_dropped() {
        let l = Labels::new(vec![
            Label::new("b", "1"),
            Label::new("a", "x"),
            Label::new("c", ""),
            Label::new("a", "y"),
        ]);
        assert_eq!(l.as_slice(), &[Label::new("a", "y"), Label::new("b", "1")]);
        assert_eq!(l.get("a"), Some("y"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn display_matches_prometheus_notation() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "node")]);
        assert_eq!(l.to_string(), "up{job=\"node\"}");
    }

    #[test]
    fn raw_batch_normalizes_like_labels_new_and_checks_utf8() {
        let mut b = RawMetricBatch::default();
        let input = [("b", "1"), ("a", "x"), ("c", ""), ("a", "y")];
        for (n, v) in input {
            b.push_label_str(n, v).unwrap();
        }
        b.push_sample(Sample::new(1, 1.0));
        b.finish_series().unwrap();
        // no samples: dropped
        b.push_label_str("a", "1").unwrap();
        b.finish_series().unwrap();
        // a name ending inside a character that its value completes: the run is UTF-8, the
        // name alone is not
        b.push_label(b"ok", b"1").unwrap();
        b.push_label(&[0xc3], &[0xa9]).unwrap();
        b.push_sample(Sample::new(2, 2.0));
        assert_eq!(
            b.finish_series(),
            Err(RawLabelError::NameNotUtf8 { label: 1 })
        );
        b.push_label(b"v", &[b'x', 0xff]).unwrap();
        b.push_sample(Sample::new(3, 3.0));
        assert_eq!(
            b.finish_series(),
            Err(RawLabelError::ValueNotUtf8 { label: 0 })
        );
        // the batch stays usable after a refused series
        b.push_label_str("z", "é").unwrap();
        b.push_label_str("__name__", "m").unwrap();
        b.push_sample(Sample::new(4, 4.0));
        b.finish_series().unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b.sample_count(), 2);
        let batch = b.into_metric_batch();
        assert_eq!(
            batch.series[0].labels,
            Labels::new(input.iter().map(|&(n, v)| Label::new(n, v)).collect())
        );
        assert_eq!(
            batch.series[1].labels,
            Labels::from_pairs([("__name__", "m"), ("z", "é")])
        );
        assert_eq!(batch.series[1].samples, vec![Sample::new(4, 4.0)]);
    }

    #[test]
    fn stale_marker_is_distinct_from_nan() {
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
    }
}
