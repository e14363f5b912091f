//! The UI benchmark's data set: seeded OTLP trace and log requests for many services.
//!
//! The trace benchmark's generator has a fixed shop of nine services, the UI needs a wider
//! fleet (its service list and map are what gets slow), so this one builds `n` services in
//! five tiers (gateways, APIs, workers, cache and database proxies; `order-gateway`,
//! `payment-api`, ...). Every service of a tier below the gateways has a caller in an earlier
//! tier, plus a few random extra edges, so the call graph is a DAG where everything is
//! reachable. A trace starts at a gateway and walks down 1 to 4 calls deep (client span in the
//! caller, server span in the callee), about 12 spans; two services fail often (8 %), the rest
//! rarely (0.5 %), and a failure marks its path to the root.
//!
//! Log lines come from the same services over the same window: mostly request lines, some
//! debug, warnings and errors, ~170 bytes each, a third carrying the id of a generated trace.
//! Batching is what SDKs and collectors do: 512 spans per trace request, 1,000 lines per log
//! request, one resource per service in it.
//!
//! Everything comes from one SplitMix64 stream seeded by `--seed`.

use std::collections::BTreeMap;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

const DOMAINS: [&str; 10] = [
    "order", "payment", "cart", "catalog", "search", "user", "review", "shipping", "notify",
    "pricing",
];
const TIERS: [&str; 5] = ["gateway", "api", "worker", "cache-proxy", "db-proxy"];
pub const SPANS_PER_REQUEST: usize = 512;
pub const LINES_PER_REQUEST: usize = 1_000;
const MS: u64 = 1_000_000;

pub use crate::rng::Rng;

/// The service names of a fleet of `n`: tier by tier, domain by domain, numbered past 50.
pub fn service_names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let per_round = DOMAINS.len() * TIERS.len();
            let (round, k) = (i / per_round, i % per_round);
            let name = format!(
                "{}-{}",
                DOMAINS[k % DOMAINS.len()],
                TIERS[k / DOMAINS.len()]
            );
            if round == 0 {
                name
            } else {
                format!("{name}-{round}")
            }
        })
        .collect()
}

/// The call graph: `callees[i]`, every index greater than `i`; every service past the first
/// tier has a caller.
pub fn call_graph(n: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
    let tier = DOMAINS.len().min(n);
    let mut callees = vec![Vec::new(); n];
    for j in tier..n {
        // a caller among the ten services before j
        let lo = j.saturating_sub(tier);
        let i = lo + rng.below((j - lo) as u64) as usize;
        callees[i].push(j);
    }
    for (i, list) in callees.iter_mut().enumerate() {
        let extra = rng.below(2) as usize;
        for _ in 0..extra {
            if i + 1 < n {
                let j = i + 1 + rng.below((n - i - 1).min(15) as u64) as usize;
                if !list.contains(&j) {
                    list.push(j);
                }
            }
        }
        list.sort_unstable();
    }
    callees
}

fn kv(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

fn resource(name: &str, idx: usize) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", name),
            kv("service.namespace", "fleet"),
            kv("service.version", format!("1.{}.{}", idx % 7, idx % 3)),
            kv(
                "service.instance.id",
                format!("{name}-6b8f9c7d5-{:05x}", idx * 7919 % 0xfffff),
            ),
            kv("host.name", format!("node-{}", idx % 12 + 1)),
            kv("deployment.environment", "production"),
        ],
        ..Default::default()
    }
}

/// One encoded trace request.
#[derive(Clone)]
pub struct TraceRequest {
    pub body: Bytes,
    pub spans: u32,
}

/// One encoded log request.
#[derive(Clone)]
pub struct LogRequest {
    pub body: Bytes,
    pub records: u32,
}

/// What the generated traces hold, for the pages' URLs and the checks.
#[derive(Default)]
pub struct TraceSet {
    pub requests: Vec<TraceRequest>,
    pub spans: u64,
    pub traces: u64,
    pub error_traces: u64,
    /// Ids of the traces (hex), in generation order.
    pub trace_ids: Vec<[u8; 16]>,
    /// Services that sent at least one server span (the services list shows these).
    pub with_server_spans: Vec<bool>,
    /// Caller -> callee pairs that carried calls.
    pub edges: u64,
}

struct TraceGen<'a> {
    rng: Rng,
    names: &'a [String],
    callees: &'a [Vec<usize>],
    buffers: Vec<Vec<Span>>,
    set: TraceSet,
    seen_edges: std::collections::BTreeSet<(usize, usize)>,
}

impl TraceGen<'_> {
    fn id8(&mut self) -> Vec<u8> {
        self.rng.next_u64().max(1).to_be_bytes().to_vec()
    }

    fn error_rate(&self, svc: usize) -> u64 {
        // per mille: two flaky services, the rest solid
        if svc == 11 || svc == 27 {
            80
        } else {
            5
        }
    }

    fn push(&mut self, svc: usize, span: Span) {
        self.buffers[svc].push(span);
        self.set.spans += 1;
        if self.buffers[svc].len() >= SPANS_PER_REQUEST {
            self.flush(svc);
        }
    }

    fn flush(&mut self, svc: usize) {
        let spans = std::mem::take(&mut self.buffers[svc]);
        if spans.is_empty() {
            return;
        }
        let n = spans.len() as u32;
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource(&self.names[svc], svc)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "bench.ui".into(),
                        version: "1.0.0".into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        self.set.requests.push(TraceRequest {
            body: Bytes::from(req.encode_to_vec()),
            spans: n,
        });
    }

    /// The server span of `svc` starting at `start`, its calls below; returns (end, failed).
    fn server(
        &mut self,
        trace_id: &[u8; 16],
        svc: usize,
        parent: Option<Vec<u8>>,
        start: u64,
        depth: usize,
        budget: &mut usize,
    ) -> (u64, bool) {
        let span_id = self.id8();
        let domain = DOMAINS[svc % DOMAINS.len()];
        let route = match self.rng.below(3) {
            0 => format!("/{domain}s/{{id}}"),
            1 => format!("/{domain}s"),
            _ => format!("/{domain}s/{{id}}/status"),
        };
        let method = if self.rng.below(4) == 0 {
            "POST"
        } else {
            "GET"
        };
        let own = (1 + self.rng.below(8)) * MS;
        let mut t = start + own / 2;
        let mut failed = false;
        let callees = self.callees[svc].clone();
        for callee in callees {
            if depth >= 4 || *budget < 2 || self.rng.below(3) == 0 {
                continue;
            }
            *budget -= 2;
            let client_id = self.id8();
            let (cend, cfailed) = self.server(
                trace_id,
                callee,
                Some(client_id.clone()),
                t + MS / 5,
                depth + 1,
                budget,
            );
            self.seen_edges.insert((svc, callee));
            let cdomain = DOMAINS[callee % DOMAINS.len()];
            let client = Span {
                trace_id: trace_id.to_vec(),
                span_id: client_id,
                parent_span_id: span_id.clone(),
                name: format!("{method} /{cdomain}s"),
                kind: SpanKind::Client as i32,
                start_time_unix_nano: t,
                end_time_unix_nano: cend + MS / 5,
                attributes: vec![
                    kv("http.request.method", method),
                    kv("server.address", self.names[callee].clone()),
                    kv_int("http.response.status_code", if cfailed { 503 } else { 200 }),
                ],
                status: cfailed.then(|| Status {
                    code: StatusCode::Error as i32,
                    message: "upstream 503".into(),
                }),
                ..Default::default()
            };
            self.push(svc, client);
            failed |= cfailed;
            t = cend + MS / 3;
        }
        if !failed && self.rng.chance(self.error_rate(svc)) {
            failed = true;
        }
        let end = t + own / 2;
        let server = Span {
            trace_id: trace_id.to_vec(),
            span_id,
            parent_span_id: parent.unwrap_or_default(),
            name: format!("{method} {route}"),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: vec![
                kv("http.request.method", method),
                kv("http.route", route),
                kv_int("http.response.status_code", if failed { 500 } else { 200 }),
            ],
            status: failed.then(|| Status {
                code: StatusCode::Error as i32,
                message: "internal error".into(),
            }),
            ..Default::default()
        };
        self.set.with_server_spans[svc] = true;
        self.push(svc, server);
        (end, failed)
    }
}

/// `traces` traces over the services, starting evenly over `[start_ns, end_ns)`.
pub fn traces(names: &[String], traces: u64, seed: u64, start_ns: u64, end_ns: u64) -> TraceSet {
    let mut rng = Rng::new(seed);
    let callees = call_graph(names.len(), &mut rng);
    let mut g = TraceGen {
        rng,
        names,
        callees: &callees,
        buffers: vec![Vec::new(); names.len()],
        set: TraceSet {
            with_server_spans: vec![false; names.len()],
            ..Default::default()
        },
        seen_edges: Default::default(),
    };
    let gap = (end_ns - start_ns) / traces.max(1);
    let gateways = DOMAINS.len().min(names.len()) as u64;
    for k in 0..traces {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&g.rng.next_u64().to_be_bytes());
        id[8..].copy_from_slice(&g.rng.next_u64().to_be_bytes());
        let root = g.rng.below(gateways) as usize;
        let mut budget = 24usize;
        let (_, failed) = g.server(&id, root, None, start_ns + k * gap, 0, &mut budget);
        g.set.traces += 1;
        g.set.error_traces += u64::from(failed);
        g.set.trace_ids.push(id);
    }
    for svc in 0..names.len() {
        g.flush(svc);
    }
    g.set.edges = g.seen_edges.len() as u64;
    g.set
}

const TABLES: [&str; 5] = ["orders", "line_items", "customers", "inventory", "payments"];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Log lines `lines` (numbers) of `total` spread evenly over `window` (Unix ns), in requests
/// of [`LINES_PER_REQUEST`]; a third carry one of `trace_ids`.
pub fn logs(
    names: &[String],
    trace_ids: &[[u8; 16]],
    seed: u64,
    lines: std::ops::Range<u64>,
    total: u64,
    window: (u64, u64),
) -> Vec<LogRequest> {
    let (first, count) = (lines.start, lines.end - lines.start);
    let (start_ns, end_ns) = window;
    let mut rng = Rng::new(seed ^ first.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let step = (end_ns - start_ns) / total.max(1);
    let mut out = Vec::new();
    let mut k = first;
    while k < first + count {
        let n = LINES_PER_REQUEST.min((first + count - k) as usize);
        let mut by_service: BTreeMap<usize, Vec<LogRecord>> = BTreeMap::new();
        for _ in 0..n {
            let svc = rng.below(names.len() as u64) as usize;
            let (sev, text, body) = line(&mut rng, &names[svc], svc, names);
            let trace = (rng.below(3) == 0 && !trace_ids.is_empty())
                .then(|| trace_ids[rng.below(trace_ids.len() as u64) as usize]);
            let t = start_ns + k * step;
            by_service.entry(svc).or_default().push(LogRecord {
                time_unix_nano: t,
                observed_time_unix_nano: t + 2 * MS,
                severity_number: sev,
                severity_text: text.into(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(body)),
                }),
                trace_id: trace.map(|t| t.to_vec()).unwrap_or_default(),
                span_id: if trace.is_some() {
                    rng.next_u64().to_be_bytes().to_vec()
                } else {
                    Vec::new()
                },
                ..Default::default()
            });
            k += 1;
        }
        let req = ExportLogsServiceRequest {
            resource_logs: by_service
                .into_iter()
                .map(|(svc, records)| ResourceLogs {
                    resource: Some(resource(&names[svc], svc)),
                    scope_logs: vec![ScopeLogs {
                        log_records: records,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        };
        out.push(LogRequest {
            body: Bytes::from(req.encode_to_vec()),
            records: n as u32,
        });
    }
    out
}

/// One line of `service`: (severity number, severity text, body).
fn line(rng: &mut Rng, service: &str, svc: usize, names: &[String]) -> (i32, &'static str, String) {
    let domain = DOMAINS[svc % DOMAINS.len()];
    let user = rng.below(50_000);
    let req = hex(&rng.next_u64().to_be_bytes());
    match rng.below(100) {
        0..=69 => {
            let status = if rng.below(50) == 0 { 404 } else { 200 };
            let ms = 2 + rng.below(180);
            (
                9,
                "INFO",
                format!(
                    "{service} handled GET /{domain}s/{} status={status} duration_ms={ms} user_id=u-{user} request_id={req} bytes={}",
                    rng.below(1_000_000),
                    200 + rng.below(40_000)
                ),
            )
        }
        70..=84 => (
            5,
            "DEBUG",
            format!(
                "cache lookup key={domain}:{}:v2 hit={} took_us={} pool_active={} request_id={req}",
                rng.below(100_000),
                rng.below(4) != 0,
                20 + rng.below(900),
                rng.below(64)
            ),
        ),
        85..=96 => (
            13,
            "WARN",
            format!(
                "slow query on {}: {}ms rows={} threshold_ms=200 request_id={req} user_id=u-{user}",
                TABLES[rng.below(TABLES.len() as u64) as usize],
                200 + rng.below(2_000),
                rng.below(10_000)
            ),
        ),
        _ => {
            let peer = &names[rng.below(names.len() as u64) as usize];
            (
                17,
                "ERROR",
                format!(
                    "failed to process {domain} {} for u-{user}: upstream {peer} returned 503 Service Unavailable after 3 retries (request_id={req})",
                    rng.below(10_000_000)
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn names_are_distinct_and_tiered() {
        let names = service_names(120);
        assert_eq!(names.len(), 120);
        assert_eq!(names.iter().collect::<HashSet<_>>().len(), 120);
        assert_eq!(names[0], "order-gateway");
        assert_eq!(names[10], "order-api");
        assert_eq!(names[49], "pricing-db-proxy");
        assert_eq!(names[50], "order-gateway-1");
    }

    #[test]
    fn every_service_past_the_gateways_has_a_caller() {
        let callees = call_graph(50, &mut Rng::new(1));
        let called: HashSet<usize> = callees.iter().flatten().copied().collect();
        for j in 10..50 {
            assert!(called.contains(&j), "{j} has no caller");
        }
        for (i, list) in callees.iter().enumerate() {
            assert!(list.iter().all(|&j| j > i && j < 50));
        }
    }

    #[test]
    fn traces_are_well_formed_trees() {
        let names = service_names(50);
        let set = traces(&names, 2_000, 7, 1_000 * MS, 61_000 * MS);
        assert_eq!(set.traces, 2_000);
        // calls stop at depth 4, so the deepest services of a random graph may never serve;
        // the harness counts those that do, and times the page of service 11
        let serving = set.with_server_spans.iter().filter(|b| **b).count();
        assert!(serving >= 40, "only {serving} of 50 services served");
        assert!(
            set.with_server_spans[11],
            "the service page's service never served"
        );
        let mut spans: Vec<Span> = Vec::new();
        let mut sent = 0u64;
        for r in &set.requests {
            let req = ExportTraceServiceRequest::decode(r.body.clone()).unwrap();
            let n: usize = req.resource_spans[0]
                .scope_spans
                .iter()
                .map(|s| s.spans.len())
                .sum();
            assert_eq!(n as u32, r.spans);
            assert!(n <= SPANS_PER_REQUEST);
            sent += n as u64;
            spans.extend(
                req.resource_spans
                    .into_iter()
                    .flat_map(|rs| rs.scope_spans)
                    .flat_map(|s| s.spans),
            );
        }
        assert_eq!(sent, set.spans);
        let mean = set.spans as f64 / set.traces as f64;
        assert!((4.0..=25.0).contains(&mean), "{mean} spans per trace");
        let ids: HashMap<(Vec<u8>, Vec<u8>), &Span> = spans
            .iter()
            .map(|s| ((s.trace_id.clone(), s.span_id.clone()), s))
            .collect();
        let mut roots = 0;
        for s in &spans {
            assert!(s.end_time_unix_nano > s.start_time_unix_nano);
            if s.parent_span_id.is_empty() {
                roots += 1;
                continue;
            }
            let p = ids[&(s.trace_id.clone(), s.parent_span_id.clone())];
            assert!(p.start_time_unix_nano <= s.start_time_unix_nano);
            assert!(p.end_time_unix_nano >= s.end_time_unix_nano);
        }
        assert_eq!(roots, 2_000);
        let err = set.error_traces as f64 / set.traces as f64;
        assert!((0.01..0.3).contains(&err), "error ratio {err}");
    }

    #[test]
    fn logs_cover_the_range_in_batches() {
        let names = service_names(50);
        let ids = [[7u8; 16]];
        let reqs = logs(&names, &ids, 3, 2_500..5_000, 5_000, (0, 5_000 * MS));
        assert_eq!(reqs.len(), 3);
        assert_eq!(reqs.iter().map(|r| r.records).sum::<u32>(), 2_500);
        let mut with_trace = 0;
        let mut bytes = 0;
        let mut times = Vec::new();
        for r in &reqs {
            let req = ExportLogsServiceRequest::decode(r.body.clone()).unwrap();
            for rl in req.resource_logs {
                for rec in rl.scope_logs.into_iter().flat_map(|s| s.log_records) {
                    with_trace += usize::from(!rec.trace_id.is_empty());
                    if let Some(any_value::Value::StringValue(b)) = rec.body.unwrap().value {
                        bytes += b.len();
                    }
                    times.push(rec.time_unix_nano);
                }
            }
        }
        assert!(
            (600..1_100).contains(&with_trace),
            "{with_trace} lines with a trace"
        );
        let mean = bytes / 2_500;
        assert!((100..250).contains(&mean), "{mean} bytes per line");
        times.sort_unstable();
        assert_eq!(times[0], 2_500 * MS);
        assert_eq!(*times.last().unwrap(), 4_999 * MS);
    }
}
