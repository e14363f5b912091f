//! OTLP metrics -> Lookout's signal model, per the OpenTelemetry "Prometheus and OpenMetrics
//! compatibility" specification.
//!
//! * Resource: `service.namespace`/`service.name` -> `job` (`ns/name`, or `name`; missing name
//!   -> `unknown_service`), `service.instance.id` -> `instance`; both go on every series. All
//!   other resource attributes go on one `target_info` gauge (value 1) per resource, stamped
//!   with the newest point time of that resource.
//! * Scope: `otel_scope_name` / `otel_scope_version` labels.
//! * Gauge -> gauge; monotonic cumulative sum -> `_total` counter; non-monotonic cumulative
//!   sum -> gauge; monotonic delta sum and delta histogram -> cumulative via
//!   [`DeltaAccumulator`]; non-monotonic delta sums are dropped (spec) and reported.
//! * Histogram -> `_bucket{le}` (cumulative counts, `+Inf` = count), `_sum`, `_count`;
//!   summary -> `{quantile}`, `_sum`, `_count`. Exponential histograms are refused for now.
//! * `NO_RECORDED_VALUE` points become Prometheus stale markers on every derived series.
//!
//! Everything refused is counted per reason, with the first message kept for the client's
//! partial-success answer. Each point's label set is sanitised and sorted once; derived series
//! (buckets, `_sum`, `_count`) only add their name and `le`/`quantile` to it.

use std::collections::{BTreeMap, HashSet};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, DataPointFlags, HistogramDataPoint,
    Metric, NumberDataPoint, SummaryDataPoint,
};
use store::model::{stale_nan, METRIC_NAME_LABEL};
use store::{Label, Labels, MetricBatch, MetricMetadata, MetricType, Sample, Series};

use super::delta::{DeltaAccumulator, DeltaUndo, HistogramTotals};
use super::names::{metric_family_name, prometheus_unit, sanitize_label_name, NameKind};

const SERVICE_NAME: &str = "service.name";
const SERVICE_NAMESPACE: &str = "service.namespace";
const SERVICE_INSTANCE_ID: &str = "service.instance.id";
/// The SDK specification's default when no `service.name` is given.
const UNKNOWN_SERVICE: &str = "unknown_service";
const TARGET_INFO: &str = "target_info";

/// The result of converting one request.
#[derive(Debug, Default, PartialEq)]
pub struct Converted {
    pub batch: MetricBatch,
    /// Data points refused by the converter (not samples: one histogram point is one point).
    pub rejected_points: u64,
    /// Refused points by reason (stable names for `/metrics`).
    pub rejected_by_reason: BTreeMap<&'static str, u64>,
    /// The first refusal in full, naming the metric, for the client.
    pub first_rejection: Option<String>,
    /// How to undo the delta streams this request advanced, should the store refuse the
    /// batch; empty when the request has no delta points.
    pub delta_undo: DeltaUndo,
}

impl Converted {
    fn reject(&mut self, reason: &'static str, points: u64, message: impl FnOnce() -> String) {
        if points == 0 {
            return;
        }
        self.rejected_points += points;
        *self.rejected_by_reason.entry(reason).or_default() += points;
        if self.first_rejection.is_none() {
            self.first_rejection = Some(message());
        }
    }

    fn push(&mut self, labels: Labels, timestamp_ms: i64, value: f64) {
        self.batch.series.push(Series {
            labels,
            samples: vec![Sample::new(timestamp_ms, value)],
        });
    }
}

/// Converts a whole export request. Never fails: what cannot be converted is counted in
/// [`Converted::rejected_points`].
pub fn convert(req: &ExportMetricsServiceRequest, delta: &DeltaAccumulator) -> Converted {
    let mut out = Converted::default();
    let mut families_seen: HashSet<String> = HashSet::new();
    for rm in &req.resource_metrics {
        let resource_attrs: &[KeyValue] = rm
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let identity = ResourceIdentity::from_attributes(resource_attrs);
        let series_before = out.batch.series.len();
        let mut newest_ms: Option<i64> = None;
        for sm in &rm.scope_metrics {
            let mut scope_labels = identity.labels.clone();
            if let Some(scope) = &sm.scope {
                scope_labels.push(Label::new("otel_scope_name", scope.name.as_str()));
                scope_labels.push(Label::new("otel_scope_version", scope.version.as_str()));
            }
            for metric in &sm.metrics {
                convert_metric(metric, &scope_labels, delta, &mut out, &mut families_seen);
            }
        }
        for s in &out.batch.series[series_before..] {
            for sample in &s.samples {
                newest_ms =
                    Some(newest_ms.map_or(sample.timestamp_ms, |n| n.max(sample.timestamp_ms)));
            }
        }
        if let Some(ts) = newest_ms {
            if let Some(labels) = target_info_labels(resource_attrs, &identity) {
                out.push(labels, ts, 1.0);
                if families_seen.insert(TARGET_INFO.to_string()) {
                    out.batch.metadata.push(MetricMetadata {
                        metric_family: TARGET_INFO.to_string(),
                        metric_type: MetricType::Gauge,
                        help: "Target metadata".to_string(),
                        unit: String::new(),
                    });
                }
            }
        }
    }
    out
}

/// `job` and `instance` of one resource, as labels to put on each of its series.
struct ResourceIdentity {
    labels: Vec<Label>,
}

impl ResourceIdentity {
    fn from_attributes(attrs: &[KeyValue]) -> Self {
        let mut name = None;
        let mut namespace = None;
        let mut instance = None;
        for kv in attrs {
            match kv.key.as_str() {
                SERVICE_NAME => name = Some(any_value_string(kv.value.as_ref())),
                SERVICE_NAMESPACE => namespace = Some(any_value_string(kv.value.as_ref())),
                SERVICE_INSTANCE_ID => instance = Some(any_value_string(kv.value.as_ref())),
                _ => {}
            }
        }
        let name = name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| UNKNOWN_SERVICE.to_string());
        let job = match namespace.filter(|n| !n.is_empty()) {
            Some(ns) => format!("{ns}/{name}"),
            None => name,
        };
        let mut labels = vec![Label::new("job", job)];
        if let Some(instance) = instance.filter(|i| !i.is_empty()) {
            labels.push(Label::new("instance", instance));
        }
        ResourceIdentity { labels }
    }
}

/// The `target_info` label set, or `None` when the resource has nothing beyond its identity.
fn target_info_labels(attrs: &[KeyValue], identity: &ResourceIdentity) -> Option<Labels> {
    let others = attrs.iter().filter(|kv| {
        !matches!(
            kv.key.as_str(),
            SERVICE_NAME | SERVICE_NAMESPACE | SERVICE_INSTANCE_ID
        )
    });
    let mut labels = sanitize_attributes(others);
    if labels.is_empty() {
        return None;
    }
    labels.extend(identity.labels.iter().cloned());
    labels.push(Label::new(METRIC_NAME_LABEL, TARGET_INFO));
    Some(Labels::new(labels))
}

/// Sanitises attribute keys into label names; keys that collide after sanitising get their
/// values joined with `;` in the lexicographic order of the original keys (spec).
fn sanitize_attributes<'a>(attrs: impl Iterator<Item = &'a KeyValue>) -> Vec<Label> {
    let mut pairs: Vec<(String, &'a str, String)> = attrs
        .filter_map(|kv| {
            let name = sanitize_label_name(&kv.key)?;
            Some((name, kv.key.as_str(), any_value_string(kv.value.as_ref())))
        })
        .collect();
    if pairs.len() > 1 {
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    }
    let mut out: Vec<Label> = Vec::with_capacity(pairs.len());
    for (name, _, value) in pairs {
        match out.last_mut() {
            Some(prev) if prev.name == name => {
                if !value.is_empty() {
                    if !prev.value.is_empty() {
                        prev.value.push(';');
                    }
                    prev.value.push_str(&value);
                }
            }
            _ => out.push(Label { name, value }),
        }
    }
    out
}

/// Attribute values as label values: strings as they are, other scalars in their plain text
/// form, arrays and maps as JSON, bytes as base64 (the attribute specification's mapping).
fn any_value_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => format_float(*d),
        Some(any_value::Value::BytesValue(b)) => base64(b),
        Some(any_value::Value::StringValueStrindex(_)) => String::new(),
        Some(other) => any_value_json(other).to_string(),
    }
}

fn any_value_json(v: &any_value::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        any_value::Value::StringValue(s) => J::String(s.clone()),
        any_value::Value::BoolValue(b) => J::Bool(*b),
        any_value::Value::IntValue(i) => J::from(*i),
        any_value::Value::DoubleValue(d) => serde_json::Number::from_f64(*d)
            .map(J::Number)
            .unwrap_or_else(|| J::String(format_float(*d))),
        any_value::Value::BytesValue(b) => J::String(base64(b)),
        any_value::Value::StringValueStrindex(_) => J::Null,
        any_value::Value::ArrayValue(a) => J::Array(
            a.values
                .iter()
                .map(|v| v.value.as_ref().map_or(J::Null, any_value_json))
                .collect(),
        ),
        any_value::Value::KvlistValue(kv) => J::Object(
            kv.values
                .iter()
                .map(|kv| {
                    let val = kv.value.as_ref().and_then(|v| v.value.as_ref());
                    (kv.key.clone(), val.map_or(J::Null, any_value_json))
                })
                .collect(),
        ),
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Floats as Prometheus label values: shortest round-trip decimal, `+Inf`/`-Inf`/`NaN`.
fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_string()
    } else if f == f64::INFINITY {
        "+Inf".to_string()
    } else if f == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{f}")
    }
}

fn nanos_to_ms(ns: u64) -> i64 {
    // u64::MAX / 1e6 fits comfortably in i64
    (ns / 1_000_000) as i64
}

fn is_no_recorded_value(flags: u32) -> bool {
    flags & (DataPointFlags::NoRecordedValueMask as u32) != 0
}

/// A point's labels (attributes + scope + resource identity), sorted once.
fn point_labels(attrs: &[KeyValue], scope_labels: &[Label]) -> Vec<Label> {
    let mut labels = sanitize_attributes(attrs.iter());
    // scope and identity come after attributes so that they win over same-named attributes
    labels.extend(scope_labels.iter().cloned());
    Labels::new(labels).into_vec()
}

/// `base` plus `__name__` (and one more label, e.g. `le`), as a sorted label set. `base` is
/// already sorted and unique, so this is a copy plus two ordered inserts.
fn series_labels(base: &[Label], name: &str, extra: Option<(&str, String)>) -> Labels {
    let mut v: Vec<Label> = Vec::with_capacity(base.len() + 2);
    v.extend(
        base.iter()
            .filter(|l| {
                l.name != METRIC_NAME_LABEL && extra.as_ref().is_none_or(|(n, _)| l.name != *n)
            })
            .cloned(),
    );
    v.push(Label::new(METRIC_NAME_LABEL, name));
    if let Some((n, value)) = extra {
        v.push(Label::new(n, value));
    }
    Labels::new(v)
}

fn convert_metric(
    metric: &Metric,
    scope_labels: &[Label],
    delta: &DeltaAccumulator,
    out: &mut Converted,
    families_seen: &mut HashSet<String>,
) {
    let Some(data) = &metric.data else {
        return;
    };
    if metric.name.is_empty() {
        let points = data_point_count(data);
        out.reject("missing_metric_name", points, || {
            "a metric without a name was dropped".to_string()
        });
        return;
    }
    // gauges and sums differ only in family kind, metadata type and delta handling
    let numbers = |points: &[NumberDataPoint],
                   kind: NameKind,
                   metric_type: MetricType,
                   accumulate: Option<&DeltaAccumulator>,
                   out: &mut Converted,
                   families_seen: &mut HashSet<String>| {
        let family = metric_family_name(&metric.name, &metric.unit, kind);
        add_metadata(out, families_seen, &family, metric_type, metric, kind);
        for p in points {
            number_point(p, &family, scope_labels, accumulate, &metric.name, out);
        }
    };
    match data {
        Data::Gauge(g) => numbers(
            &g.data_points,
            NameKind::Gauge,
            MetricType::Gauge,
            None,
            out,
            families_seen,
        ),
        Data::Sum(s) => {
            let temporality = AggregationTemporality::try_from(s.aggregation_temporality)
                .unwrap_or(AggregationTemporality::Unspecified);
            match (temporality, s.is_monotonic) {
                (AggregationTemporality::Cumulative, true) => numbers(
                    &s.data_points,
                    NameKind::Counter,
                    MetricType::Counter,
                    None,
                    out,
                    families_seen,
                ),
                // a non-monotonic sum can go down: Prometheus models it as a gauge
                (AggregationTemporality::Cumulative, false) => numbers(
                    &s.data_points,
                    NameKind::Other,
                    MetricType::Gauge,
                    None,
                    out,
                    families_seen,
                ),
                (AggregationTemporality::Delta, true) => numbers(
                    &s.data_points,
                    NameKind::Counter,
                    MetricType::Counter,
                    Some(delta),
                    out,
                    families_seen,
                ),
                (AggregationTemporality::Delta, false) => {
                    out.reject(
                        "unsupported_temporality",
                        s.data_points.len() as u64,
                        || {
                            format!(
                                "non-monotonic delta sum {:?} cannot be converted to a Prometheus \
                             series; configure the exporter for cumulative temporality",
                                metric.name
                            )
                        },
                    );
                }
                (AggregationTemporality::Unspecified, _) => {
                    out.reject(
                        "unsupported_temporality",
                        s.data_points.len() as u64,
                        || {
                            format!(
                                "sum {:?} has unspecified aggregation temporality",
                                metric.name
                            )
                        },
                    );
                }
            }
        }
        Data::Histogram(h) => {
            let temporality = AggregationTemporality::try_from(h.aggregation_temporality)
                .unwrap_or(AggregationTemporality::Unspecified);
            let accumulate = match temporality {
                AggregationTemporality::Cumulative => None,
                AggregationTemporality::Delta => Some(delta),
                AggregationTemporality::Unspecified => {
                    out.reject(
                        "unsupported_temporality",
                        h.data_points.len() as u64,
                        || {
                            format!(
                                "histogram {:?} has unspecified aggregation temporality",
                                metric.name
                            )
                        },
                    );
                    return;
                }
            };
            let family = metric_family_name(&metric.name, &metric.unit, NameKind::Other);
            add_metadata(
                out,
                families_seen,
                &family,
                MetricType::Histogram,
                metric,
                NameKind::Other,
            );
            for p in &h.data_points {
                histogram_point(p, &family, scope_labels, accumulate, &metric.name, out);
            }
        }
        Data::ExponentialHistogram(e) => {
            out.reject(
                "unsupported_exponential_histogram",
                e.data_points.len() as u64,
                || {
                    format!(
                    "exponential histogram {:?} is not supported yet; configure the exporter to \
                     use explicit-bucket histograms",
                    metric.name
                )
                },
            );
        }
        Data::Summary(s) => {
            let family = metric_family_name(&metric.name, &metric.unit, NameKind::Other);
            add_metadata(
                out,
                families_seen,
                &family,
                MetricType::Summary,
                metric,
                NameKind::Other,
            );
            for p in &s.data_points {
                summary_point(p, &family, scope_labels, &metric.name, out);
            }
        }
    }
}

fn data_point_count(data: &Data) -> u64 {
    (match data {
        Data::Gauge(g) => g.data_points.len(),
        Data::Sum(s) => s.data_points.len(),
        Data::Histogram(h) => h.data_points.len(),
        Data::ExponentialHistogram(e) => e.data_points.len(),
        Data::Summary(s) => s.data_points.len(),
    }) as u64
}

fn add_metadata(
    out: &mut Converted,
    seen: &mut HashSet<String>,
    family: &str,
    metric_type: MetricType,
    metric: &Metric,
    kind: NameKind,
) {
    if seen.contains(family) {
        return;
    }
    seen.insert(family.to_string());
    out.batch.metadata.push(MetricMetadata {
        metric_family: family.to_string(),
        metric_type,
        help: metric.description.clone(),
        unit: prometheus_unit(&metric.unit, kind).unwrap_or_default(),
    });
}

/// Checks the time of a point; `None` (and a counted refusal) when it has none.
fn point_time(time_ns: u64, metric: &str, out: &mut Converted) -> Option<i64> {
    if time_ns == 0 {
        out.reject("missing_timestamp", 1, || {
            format!("a data point of metric {metric:?} has no time_unix_nano")
        });
        return None;
    }
    Some(nanos_to_ms(time_ns))
}

fn number_point(
    p: &NumberDataPoint,
    family: &str,
    scope_labels: &[Label],
    delta: Option<&DeltaAccumulator>,
    metric: &str,
    out: &mut Converted,
) {
    let Some(ts) = point_time(p.time_unix_nano, metric, out) else {
        return;
    };
    // one series per point: build and sort its label set exactly once; later entries win
    // over same-named earlier ones, so scope/identity beat attributes and the name beats all
    let mut labels = sanitize_attributes(p.attributes.iter());
    labels.reserve(scope_labels.len() + 1);
    labels.extend(scope_labels.iter().cloned());
    labels.push(Label::new(METRIC_NAME_LABEL, family));
    let labels = Labels::new(labels);
    if is_no_recorded_value(p.flags) {
        out.push(labels, ts, stale_nan());
        return;
    }
    let value = match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => {
            out.reject("missing_value", 1, || {
                format!("a data point of metric {metric:?} has no value")
            });
            return;
        }
    };
    let value = match delta {
        None => value,
        Some(acc) => match acc.add_sum(
            &labels,
            p.start_time_unix_nano,
            p.time_unix_nano,
            value,
            &mut out.delta_undo,
        ) {
            Ok(v) => v,
            Err(e) => {
                let reason = delta_reason(&e);
                out.reject(reason, 1, || format!("delta sum {metric:?} {labels}: {e}"));
                return;
            }
        },
    };
    out.push(labels, ts, value);
}

fn delta_reason(e: &super::delta::DeltaError) -> &'static str {
    match e {
        super::delta::DeltaError::OutOfOrder { .. } => "delta_out_of_order",
        super::delta::DeltaError::Full { .. } => "delta_accumulator_full",
    }
}

/// A histogram's buckets as the converter reads them, borrowed or accumulated.
struct HistogramView<'a> {
    bounds: &'a [f64],
    bucket_counts: &'a [u64],
    count: u64,
    sum: Option<f64>,
}

fn validate_histogram(p: &HistogramDataPoint) -> Result<(), String> {
    if !p.bucket_counts.is_empty() && p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
        return Err(format!(
            "has {} bucket counts for {} explicit bounds (expected bounds + 1)",
            p.bucket_counts.len(),
            p.explicit_bounds.len()
        ));
    }
    if p.explicit_bounds
        .windows(2)
        .any(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less))
    {
        return Err("has explicit bounds that are not strictly increasing".to_string());
    }
    Ok(())
}

fn histogram_point(
    p: &HistogramDataPoint,
    family: &str,
    scope_labels: &[Label],
    delta: Option<&DeltaAccumulator>,
    metric: &str,
    out: &mut Converted,
) {
    let Some(ts) = point_time(p.time_unix_nano, metric, out) else {
        return;
    };
    if let Err(problem) = validate_histogram(p) {
        out.reject("invalid_histogram", 1, || {
            format!("a data point of histogram {metric:?} {problem}")
        });
        return;
    }
    let base = point_labels(&p.attributes, scope_labels);
    let stale = is_no_recorded_value(p.flags);
    let accumulated;
    let view = match delta {
        Some(acc) if !stale => {
            let key = series_labels(&base, family, None);
            let totals = HistogramTotals {
                bounds: p.explicit_bounds.clone(),
                bucket_counts: p.bucket_counts.clone(),
                count: p.count,
                sum: p.sum,
            };
            match acc.add_histogram(
                &key,
                p.start_time_unix_nano,
                p.time_unix_nano,
                totals,
                &mut out.delta_undo,
            ) {
                Ok(t) => {
                    accumulated = t;
                    HistogramView {
                        bounds: &accumulated.bounds,
                        bucket_counts: &accumulated.bucket_counts,
                        count: accumulated.count,
                        sum: accumulated.sum,
                    }
                }
                Err(e) => {
                    let reason = delta_reason(&e);
                    out.reject(reason, 1, || {
                        format!("delta histogram {metric:?} {key}: {e}")
                    });
                    return;
                }
            }
        }
        _ => HistogramView {
            bounds: &p.explicit_bounds,
            bucket_counts: &p.bucket_counts,
            count: p.count,
            sum: p.sum,
        },
    };
    push_histogram(&view, &base, family, ts, stale, out);
}

fn push_histogram(
    h: &HistogramView<'_>,
    base: &[Label],
    family: &str,
    ts: i64,
    stale: bool,
    out: &mut Converted,
) {
    let value = |v: f64| if stale { stale_nan() } else { v };
    let bucket_name = format!("{family}_bucket");
    let mut cumulative: u64 = 0;
    // the last bucket count (overflow) is covered by +Inf = count
    for (bound, n) in h.bounds.iter().zip(h.bucket_counts) {
        cumulative = cumulative.saturating_add(*n);
        let labels = series_labels(base, &bucket_name, Some(("le", format_float(*bound))));
        out.push(labels, ts, value(cumulative as f64));
    }
    let labels = series_labels(base, &bucket_name, Some(("le", "+Inf".to_string())));
    out.push(labels, ts, value(h.count as f64));
    if let Some(sum) = h.sum {
        out.push(
            series_labels(base, &format!("{family}_sum"), None),
            ts,
            value(sum),
        );
    } else if stale {
        out.push(
            series_labels(base, &format!("{family}_sum"), None),
            ts,
            stale_nan(),
        );
    }
    out.push(
        series_labels(base, &format!("{family}_count"), None),
        ts,
        value(h.count as f64),
    );
}

fn summary_point(
    p: &SummaryDataPoint,
    family: &str,
    scope_labels: &[Label],
    metric: &str,
    out: &mut Converted,
) {
    let Some(ts) = point_time(p.time_unix_nano, metric, out) else {
        return;
    };
    let base = point_labels(&p.attributes, scope_labels);
    let stale = is_no_recorded_value(p.flags);
    let value = |v: f64| if stale { stale_nan() } else { v };
    for q in &p.quantile_values {
        let labels = series_labels(&base, family, Some(("quantile", format_float(q.quantile))));
        out.push(labels, ts, value(q.value));
    }
    out.push(
        series_labels(&base, &format!("{family}_sum"), None),
        ts,
        value(p.sum),
    );
    out.push(
        series_labels(&base, &format!("{family}_count"), None),
        ts,
        value(p.count as f64),
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
