//! A lenient mirror of the OTLP logs messages, for payloads whose strings are not valid UTF-8.
//!
//! prost refuses a whole message when one `string` field holds invalid UTF-8, and log lines
//! read from files or ptys carry such bytes often enough that refusing the push (and every
//! good record in it) would be the wrong answer. These messages have the same field numbers
//! with every string declared as `bytes`, so they decode whatever the strings hold; the
//! strings are then replaced lossily (U+FFFD per invalid sequence) and counted, and the
//! records go through the ordinary conversion. Used only after the strict decode failed.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::logs::record::lossy_string;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    #[prost(message, repeated, tag = "1")]
    pub resource_logs: Vec<LResourceLogs>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LResourceLogs {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<LResource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_logs: Vec<LScopeLogs>,
    #[prost(bytes = "vec", tag = "3")]
    pub schema_url: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LResource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<LKeyValue>,
    #[prost(uint32, tag = "2")]
    pub dropped_attributes_count: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LScopeLogs {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<LScope>,
    #[prost(message, repeated, tag = "2")]
    pub log_records: Vec<LLogRecord>,
    #[prost(bytes = "vec", tag = "3")]
    pub schema_url: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LScope {
    #[prost(bytes = "vec", tag = "1")]
    pub name: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub version: Vec<u8>,
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<LKeyValue>,
    #[prost(uint32, tag = "4")]
    pub dropped_attributes_count: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LLogRecord {
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    #[prost(fixed64, tag = "11")]
    pub observed_time_unix_nano: u64,
    #[prost(int32, tag = "2")]
    pub severity_number: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub severity_text: Vec<u8>,
    #[prost(message, optional, tag = "5")]
    pub body: Option<LAnyValue>,
    #[prost(message, repeated, tag = "6")]
    pub attributes: Vec<LKeyValue>,
    #[prost(uint32, tag = "7")]
    pub dropped_attributes_count: u32,
    #[prost(fixed32, tag = "8")]
    pub flags: u32,
    #[prost(bytes = "vec", tag = "9")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "10")]
    pub span_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "12")]
    pub event_name: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LKeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub value: Option<LAnyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LAnyValue {
    #[prost(oneof = "LValue", tags = "1, 2, 3, 4, 5, 6, 7, 8")]
    pub value: Option<LValue>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum LValue {
    #[prost(bytes = "vec", tag = "1")]
    StringValue(Vec<u8>),
    #[prost(bool, tag = "2")]
    BoolValue(bool),
    #[prost(int64, tag = "3")]
    IntValue(i64),
    #[prost(double, tag = "4")]
    DoubleValue(f64),
    #[prost(message, tag = "5")]
    ArrayValue(LArrayValue),
    #[prost(message, tag = "6")]
    KvlistValue(LKeyValueList),
    #[prost(bytes = "vec", tag = "7")]
    BytesValue(Vec<u8>),
    #[prost(int32, tag = "8")]
    StringValueStrindex(i32),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LArrayValue {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<LAnyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LKeyValueList {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<LKeyValue>,
}

impl Request {
    /// The strict message, every string repaired; `invalid` counts the strings that needed it.
    pub fn into_strict(self, invalid: &mut u64) -> ExportLogsServiceRequest {
        let mut s = |b: Vec<u8>| lossy_string(b, invalid);
        ExportLogsServiceRequest {
            resource_logs: self
                .resource_logs
                .into_iter()
                .map(|rl| resource_logs(rl, &mut s))
                .collect(),
        }
    }
}

fn resource_logs(rl: LResourceLogs, s: &mut impl FnMut(Vec<u8>) -> String) -> ResourceLogs {
    ResourceLogs {
        resource: rl.resource.map(|r| Resource {
            attributes: key_values(r.attributes, s),
            dropped_attributes_count: r.dropped_attributes_count,
            entity_refs: Vec::new(),
        }),
        scope_logs: rl
            .scope_logs
            .into_iter()
            .map(|sl| ScopeLogs {
                scope: sl.scope.map(|sc| InstrumentationScope {
                    name: s(sc.name),
                    version: s(sc.version),
                    attributes: key_values(sc.attributes, s),
                    dropped_attributes_count: sc.dropped_attributes_count,
                }),
                log_records: sl
                    .log_records
                    .into_iter()
                    .map(|lr| log_record(lr, s))
                    .collect(),
                schema_url: s(sl.schema_url),
            })
            .collect(),
        schema_url: s(rl.schema_url),
    }
}

fn log_record(lr: LLogRecord, s: &mut impl FnMut(Vec<u8>) -> String) -> LogRecord {
    LogRecord {
        time_unix_nano: lr.time_unix_nano,
        observed_time_unix_nano: lr.observed_time_unix_nano,
        severity_number: lr.severity_number,
        severity_text: s(lr.severity_text),
        body: lr.body.map(|b| any_value(b, s)),
        attributes: key_values(lr.attributes, s),
        dropped_attributes_count: lr.dropped_attributes_count,
        flags: lr.flags,
        trace_id: lr.trace_id,
        span_id: lr.span_id,
        event_name: s(lr.event_name),
    }
}

fn key_values(kvs: Vec<LKeyValue>, s: &mut impl FnMut(Vec<u8>) -> String) -> Vec<KeyValue> {
    kvs.into_iter()
        .map(|kv| KeyValue {
            key: s(kv.key),
            value: kv.value.map(|v| any_value(v, s)),
            ..Default::default()
        })
        .collect()
}

fn any_value(v: LAnyValue, s: &mut impl FnMut(Vec<u8>) -> String) -> AnyValue {
    let value = v.value.map(|v| match v {
        LValue::StringValue(b) => any_value::Value::StringValue(s(b)),
        LValue::BoolValue(b) => any_value::Value::BoolValue(b),
        LValue::IntValue(i) => any_value::Value::IntValue(i),
        LValue::DoubleValue(d) => any_value::Value::DoubleValue(d),
        LValue::ArrayValue(a) => any_value::Value::ArrayValue(ArrayValue {
            values: a.values.into_iter().map(|v| any_value(v, s)).collect(),
        }),
        LValue::KvlistValue(kvs) => any_value::Value::KvlistValue(KeyValueList {
            values: key_values(kvs.values, s),
        }),
        LValue::BytesValue(b) => any_value::Value::BytesValue(b),
        LValue::StringValueStrindex(i) => any_value::Value::StringValueStrindex(i),
    });
    AnyValue { value }
}
