//! OTLP `ExportLogsServiceRequest` -> [`LogRecord`]s, once, at the edge:
//!
//! - **service**: the resource's `service.name` (its text when not a string), else
//!   `unknown_service`;
//! - **resource** and **record attributes** flattened to text in the order sent: strings as
//!   they are, other `AnyValue`s as their JSON text (`true`, `42`, `1.5`, `[1,"a"]`,
//!   `{"k":"v"}`; bytes as hex); the instrumentation scope's name and version become the record
//!   attributes `otel.scope.name` / `otel.scope.version`, and `event_name` becomes
//!   `event.name`, when set;
//! - **body**: the `AnyValue` as text the same way (a string body as it is);
//! - **time**: `time_unix_nano`, or `observed_time_unix_nano` when unset; the observed time, or
//!   the receive time when unset;
//! - **severity**: `severity_number` when it is one (1-24), else derived from
//!   `severity_text` (`WARN` -> 13); the text is kept as sent;
//! - **trace / span id**: empty or all zero is none; any other length than 16 / 8 bytes
//!   rejects the record (`invalid_trace_id` / `invalid_span_id`);
//! - then the per-record limits ([`crate::logs::record::check_limits`]).

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use store::logs::model::UNKNOWN_SERVICE;
use store::logs::LogRecord;
use store::traces::AttrValue;

use crate::logs::record::{self, ConvertedLogs, RejectReason};
use crate::logs::LogLimits;

/// The resource attribute naming the service.
const SERVICE_NAME_ATTR: &str = "service.name";
/// Record attributes carrying the instrumentation scope and the event name.
pub const SCOPE_NAME_ATTR: &str = "otel.scope.name";
pub const SCOPE_VERSION_ATTR: &str = "otel.scope.version";
pub const EVENT_NAME_ATTR: &str = "event.name";

/// Converts a decoded request (consumed, so strings move rather than copy) into `out`.
/// `now_ns` is the observed time of records that carry none.
pub fn convert_request(
    req: ExportLogsServiceRequest,
    limits: &LogLimits,
    now_ns: u64,
    out: &mut ConvertedLogs,
) {
    for rl in req.resource_logs {
        let resource = rl
            .resource
            .map(|r| flatten(r.attributes))
            .unwrap_or_default();
        let service = resource
            .iter()
            .find(|(k, _)| k == SERVICE_NAME_ATTR)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
            .unwrap_or(UNKNOWN_SERVICE)
            .to_string();
        for sl in rl.scope_logs {
            let (scope_name, scope_version) =
                sl.scope.map(|s| (s.name, s.version)).unwrap_or_default();
            for lr in sl.log_records {
                let trace_id = match record::trace_id(&lr.trace_id) {
                    Ok(id) => id,
                    Err(e) => {
                        out.reject(RejectReason::InvalidTraceId, || {
                            format!("log record of service {service:?}: {e}")
                        });
                        continue;
                    }
                };
                let span_id = match record::span_id(&lr.span_id) {
                    Ok(id) => id,
                    Err(e) => {
                        out.reject(RejectReason::InvalidSpanId, || {
                            format!("log record of service {service:?}: {e}")
                        });
                        continue;
                    }
                };
                let observed = if lr.observed_time_unix_nano == 0 {
                    now_ns
                } else {
                    lr.observed_time_unix_nano
                };
                let time = if lr.time_unix_nano == 0 {
                    observed
                } else {
                    lr.time_unix_nano
                };
                let mut attributes = flatten(lr.attributes);
                if !scope_name.is_empty() {
                    attributes.push((SCOPE_NAME_ATTR.to_string(), scope_name.clone()));
                }
                if !scope_version.is_empty() {
                    attributes.push((SCOPE_VERSION_ATTR.to_string(), scope_version.clone()));
                }
                if !lr.event_name.is_empty() {
                    attributes.push((EVENT_NAME_ATTR.to_string(), lr.event_name));
                }
                let record = LogRecord {
                    time_unix_nano: time,
                    observed_unix_nano: observed,
                    severity_number: record::severity_number(lr.severity_number, &lr.severity_text),
                    severity_text: lr.severity_text,
                    service: service.clone(),
                    trace_id,
                    span_id,
                    body: lr.body.map(any_to_text).unwrap_or_default(),
                    resource: resource.clone(),
                    attributes,
                };
                out.push(record, limits);
            }
        }
    }
}

/// Key-values as text pairs, in order.
fn flatten(kvs: Vec<KeyValue>) -> Vec<(String, String)> {
    kvs.into_iter()
        .map(|kv| (kv.key, kv.value.map(any_to_text).unwrap_or_default()))
        .collect()
}

/// An `AnyValue` as text: a string as it is, anything else as JSON text (bytes as hex, an
/// empty value as the empty string).
pub fn any_to_text(v: AnyValue) -> String {
    match v.value {
        Some(any_value::Value::StringValue(s)) => s,
        None | Some(any_value::Value::StringValueStrindex(_)) => String::new(),
        Some(other) => to_attr(other).to_text(),
    }
}

/// The trace model's value type, whose text and JSON forms the trace APIs already use.
fn to_attr(v: any_value::Value) -> AttrValue {
    let inner = |v: AnyValue| v.value.map_or(AttrValue::Str(String::new()), to_attr);
    match v {
        any_value::Value::StringValue(s) => AttrValue::Str(s),
        any_value::Value::BoolValue(b) => AttrValue::Bool(b),
        any_value::Value::IntValue(i) => AttrValue::Int(i),
        any_value::Value::DoubleValue(d) => AttrValue::Double(d),
        any_value::Value::BytesValue(b) => AttrValue::Bytes(b),
        any_value::Value::ArrayValue(a) => {
            AttrValue::Array(a.values.into_iter().map(inner).collect())
        }
        any_value::Value::KvlistValue(kvs) => AttrValue::KvList(
            kvs.values
                .into_iter()
                .map(|kv| {
                    (
                        kv.key,
                        kv.value.map_or(AttrValue::Str(String::new()), inner),
                    )
                })
                .collect(),
        ),
        any_value::Value::StringValueStrindex(_) => AttrValue::Str(String::new()),
    }
}
