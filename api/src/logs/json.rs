//! The logs API's JSON: records, histogram buckets and field summaries.
//!
//! Times are given twice: RFC 3339 with nine fraction digits for people, and Unix
//! nanoseconds as a decimal string for programs (they overflow a JavaScript number).
//! Attributes are JSON objects in the order they were sent.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use store::logs::{FieldSummary, HistogramBucket, LogRecord, Severity};

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` for Unix nanoseconds.
pub use store::timefmt::format_rfc3339_nanos as rfc3339_nanos;

/// One record as the API answers it.
#[derive(Serialize)]
pub struct RecordJson<'a> {
    time: String,
    time_unix_nano: String,
    observed_unix_nano: String,
    severity: &'static str,
    severity_number: u8,
    severity_text: &'a str,
    service: &'a str,
    trace_id: Option<String>,
    span_id: Option<String>,
    body: &'a str,
    attributes: PairsJson<'a>,
    resource: PairsJson<'a>,
    /// The trace this record belongs to, on the trace API; only with a trace id.
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_url: Option<String>,
}

impl<'a> RecordJson<'a> {
    pub fn new(r: &'a LogRecord) -> Self {
        let trace_id = r.trace_id.map(|t| t.to_string());
        RecordJson {
            time: rfc3339_nanos(r.time_unix_nano),
            time_unix_nano: r.time_unix_nano.to_string(),
            observed_unix_nano: r.observed_unix_nano.to_string(),
            severity: Severity::from_number(r.severity_number).as_str(),
            severity_number: r.severity_number,
            severity_text: &r.severity_text,
            service: &r.service,
            trace_url: trace_id.as_ref().map(|t| format!("/api/v1/traces/{t}")),
            trace_id,
            span_id: r.span_id.map(|s| s.to_string()),
            body: &r.body,
            attributes: PairsJson(&r.attributes),
            resource: PairsJson(&r.resource),
        }
    }
}

/// Key-value pairs as a JSON object, in their order.
struct PairsJson<'a>(&'a [(String, String)]);

impl Serialize for PairsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// `data` of `/api/v1/logs/query`.
#[derive(Serialize)]
pub struct QueryData<'a> {
    pub records: Vec<RecordJson<'a>>,
    pub stats: QueryStatsJson,
}

/// `stats` of `/api/v1/logs/query`: `{"archive":{"filesRead":N}}`.
#[derive(Serialize)]
pub struct QueryStatsJson {
    pub archive: ArchiveStatsJson,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveStatsJson {
    pub files_read: usize,
}

/// `data` of `/api/v1/logs/histogram`.
#[derive(Serialize)]
pub struct HistogramData {
    /// A whole number when the step is whole seconds.
    pub step_seconds: serde_json::Number,
    pub buckets: Vec<BucketJson>,
}

impl HistogramData {
    pub fn new(step_nanos: u64, buckets: &[HistogramBucket], by_severity: bool) -> Self {
        let step_seconds = if step_nanos.is_multiple_of(1_000_000_000) {
            serde_json::Number::from(step_nanos / 1_000_000_000)
        } else {
            // a finite positive float always converts
            serde_json::Number::from_f64(step_nanos as f64 / 1e9)
                .unwrap_or_else(|| serde_json::Number::from(0))
        };
        HistogramData {
            step_seconds,
            buckets: buckets
                .iter()
                .map(|b| BucketJson::new(b, by_severity))
                .collect(),
        }
    }
}

#[derive(Serialize)]
pub struct BucketJson {
    time: String,
    time_unix_nano: String,
    count: u64,
    /// Non-zero counts per severity range; only when asked with `by=severity`.
    #[serde(skip_serializing_if = "Option::is_none")]
    by_severity: Option<SeverityCounts>,
}

impl BucketJson {
    fn new(b: &HistogramBucket, by_severity: bool) -> Self {
        BucketJson {
            time: rfc3339_nanos(b.start_unix_nano),
            time_unix_nano: b.start_unix_nano.to_string(),
            count: b.count,
            by_severity: by_severity.then_some(SeverityCounts(b.by_severity)),
        }
    }
}

/// Counts indexed like [`Severity::ALL`], written as `{"error": n, ...}` without zeros.
struct SeverityCounts([u64; 7]);

impl Serialize for SeverityCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (severity, count) in Severity::ALL.iter().zip(self.0) {
            if count > 0 {
                map.serialize_entry(severity.as_str(), &count)?;
            }
        }
        map.end()
    }
}

/// `data` of `/api/v1/logs/fields`.
#[derive(Serialize)]
pub struct FieldsData<'a> {
    pub fields: Vec<FieldJson<'a>>,
}

#[derive(Serialize)]
pub struct FieldJson<'a> {
    name: &'a str,
    records: u64,
    distinct_values: u64,
    top: Vec<TopValueJson<'a>>,
}

#[derive(Serialize)]
struct TopValueJson<'a> {
    value: &'a str,
    count: u64,
}

impl<'a> FieldJson<'a> {
    pub fn new(f: &'a FieldSummary) -> Self {
        FieldJson {
            name: &f.name,
            records: f.records,
            distinct_values: f.distinct_values,
            top: f
                .top
                .iter()
                .map(|(value, count)| TopValueJson {
                    value,
                    count: *count,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_through_the_parameter_parser() {
        for t in [1u64, 951_782_400_999_999_999, 4_102_444_800_000_000_000] {
            assert_eq!(
                crate::params::parse_time_nanos(&rfc3339_nanos(t)),
                Ok(i128::from(t))
            );
        }
    }
}
