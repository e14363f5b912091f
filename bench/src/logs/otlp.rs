//! Corpus chunks as OTLP/HTTP requests: `ExportLogsServiceRequest`s of `batch` consecutive
//! lines (about 1,000, what a collector's batch processor sends), encoded as protobuf before
//! anything is timed. A request groups its lines by pod: one `ResourceLogs` per service
//! instance (`service.name`, `service.instance.id`, `host.name`, `deployment.environment.name`),
//! as a node-level collector tailing many containers sends them. Each record carries the time,
//! an observed time a few milliseconds later, the severity number and text, the trace and span
//! id when the line belongs to a trace, and the whole line as its string body (as the filelog
//! receiver keeps it); no record attributes.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::corpus::{severity_text, Chunk, LineMeta, INSTANCES, SERVICES};

/// One encoded request.
#[derive(Clone)]
pub struct Request {
    pub body: Bytes,
    pub records: u32,
    /// Raw bytes of its lines (with newlines), for the MB/s figures.
    pub raw_bytes: u64,
}

/// Lines per request by default (a collector batch processor's size).
pub const DEFAULT_BATCH: usize = 1_000;
/// How long after its time a line is observed by the collector.
const OBSERVED_DELAY_NANOS: u64 = 3_000_000;

fn kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

fn resource(service: u8, instance: u8) -> Resource {
    let name = SERVICES[service as usize];
    Resource {
        attributes: vec![
            kv("service.name", name.into()),
            kv(
                "service.instance.id",
                format!(
                    "{name}-7d9f8b6c4-{}",
                    ["x2k9p", "m4q7t", "z8w3n"][instance as usize % 3]
                ),
            ),
            kv(
                "host.name",
                format!(
                    "node-{}",
                    (u32::from(service) * 3 + u32::from(instance)) % 7 + 1
                ),
            ),
            kv("deployment.environment.name", "production".into()),
        ],
        ..Default::default()
    }
}

fn record(chunk: &Chunk, m: &LineMeta) -> LogRecord {
    LogRecord {
        time_unix_nano: m.time_unix_nano,
        observed_time_unix_nano: m.time_unix_nano + OBSERVED_DELAY_NANOS,
        severity_number: i32::from(m.severity),
        severity_text: severity_text(m.severity).into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(chunk.line(m).to_string())),
        }),
        trace_id: if m.has_trace() {
            m.trace_id.to_vec()
        } else {
            Vec::new()
        },
        span_id: if m.has_trace() {
            m.span_id.to_vec()
        } else {
            Vec::new()
        },
        flags: if m.has_trace() { 1 } else { 0 },
        ..Default::default()
    }
}

/// The chunk as requests of `batch` lines.
pub fn encode(chunk: &Chunk, batch: usize) -> Vec<Request> {
    let pods = SERVICES.len() * INSTANCES as usize;
    chunk
        .lines
        .chunks(batch.max(1))
        .map(|lines| {
            let mut by_pod: Vec<Vec<LogRecord>> = vec![Vec::new(); pods];
            let mut raw = 0u64;
            for m in lines {
                by_pod[m.service as usize * INSTANCES as usize + m.instance as usize]
                    .push(record(chunk, m));
                raw += u64::from(m.len) + 1;
            }
            let resource_logs = by_pod
                .into_iter()
                .enumerate()
                .filter(|(_, r)| !r.is_empty())
                .map(|(pod, log_records)| ResourceLogs {
                    resource: Some(resource(
                        (pod / INSTANCES as usize) as u8,
                        (pod % INSTANCES as usize) as u8,
                    )),
                    scope_logs: vec![ScopeLogs {
                        log_records,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect();
            let req = ExportLogsServiceRequest { resource_logs };
            Request {
                body: Bytes::from(req.encode_to_vec()),
                records: lines.len() as u32,
                raw_bytes: raw,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::corpus::Generator;
    use super::*;

    #[test]
    fn requests_carry_every_line_once() {
        let mut g = Generator::new(11, 1_763_700_000_000_000_000, 1_000_000, false);
        let c = g.chunk(500_000);
        let reqs = encode(&c, 1_000);
        assert_eq!(reqs.len(), c.lines.len().div_ceil(1_000));
        assert_eq!(
            reqs.iter().map(|r| u64::from(r.records)).sum::<u64>(),
            c.lines.len() as u64
        );
        assert_eq!(reqs.iter().map(|r| r.raw_bytes).sum::<u64>(), c.raw_bytes());
        let mut bodies = Vec::new();
        let mut traced = 0;
        for r in &reqs {
            let d = ExportLogsServiceRequest::decode(r.body.as_ref()).unwrap();
            for rl in &d.resource_logs {
                let attrs = &rl.resource.as_ref().unwrap().attributes;
                assert_eq!(attrs[0].key, "service.name");
                for rec in &rl.scope_logs[0].log_records {
                    match rec.body.as_ref().and_then(|b| b.value.as_ref()) {
                        Some(any_value::Value::StringValue(s)) => bodies.push(s.clone()),
                        other => panic!("body {other:?}"),
                    }
                    assert!(rec.severity_number > 0 && !rec.severity_text.is_empty());
                    assert!(rec.observed_time_unix_nano > rec.time_unix_nano);
                    if !rec.trace_id.is_empty() {
                        assert_eq!((rec.trace_id.len(), rec.span_id.len()), (16, 8));
                        traced += 1;
                    }
                }
            }
        }
        let mut want: Vec<String> = c.lines.iter().map(|m| c.line(m).to_string()).collect();
        want.sort();
        bodies.sort();
        assert_eq!(bodies, want);
        assert_eq!(traced, c.lines.iter().filter(|m| m.has_trace()).count());
    }
}
