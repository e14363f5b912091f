//! Trace ingest throughput, in spans per CPU-second: `cargo bench -p lookout-collector --bench
//! traces` (add `-- --quick` for a short run).
//!
//! The workload: traces of 10-30 spans over 3-5 services (a root server span, calls between
//! services as client/server pairs, internal spans, database client spans), every span with 10
//! attributes of about 50 bytes; spans grouped per service into requests of ~500 spans, as SDK
//! batch exporters send them, so client and server halves of an edge usually arrive in
//! different requests. Stages, each on one thread, CPU time from `/proc/thread-self/schedstat`:
//! 1. decode only (protobuf -> OTLP structs): the ceiling;
//! 2. decode + convert (validation, normalisation, the span model);
//! 3. decode + convert + derive (span metrics, service-graph pairing, one flush snapshot per
//!    ~200 ms worth of requests turned into a metric batch).
//!
//! Then 4. the whole export path (`TraceIngest::export_protobuf`: blocking-pool hop, null trace
//! store, derive, group-commit flush to a null metrics store, ack) on a 2-worker runtime with 64
//! requests in flight, CPU time of the whole process from `/proc/self/stat`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use collector::otlp::traces::convert::{convert_request, TraceLimits};
use collector::otlp::traces::TraceIngest;
use collector::traces::state::DeriveState;
use collector::traces::{prepare, DeriveConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use store::traces::{SpanAppendReport, SpanBatch, TracesAppender};
use store::{
    AppendReport, LabelMatcher, Labels, MetricBatch, MetricMetadata, MetricsAppender,
    MetricsQuerier, Series,
};

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes<const N: usize>(&mut self) -> Vec<u8> {
        (0..N).map(|_| (self.next() >> 7) as u8 | 1).collect()
    }

    /// ~50 bytes of printable text.
    fn text(&mut self) -> String {
        (0..50)
            .map(|_| (b'a' + self.below(26) as u8) as char)
            .collect()
    }
}

const SERVICES: [&str; 5] = ["frontend", "checkout", "payments", "inventory", "shipping"];

fn kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

/// Ten attributes of ~50 bytes each (plus the kind-specific ones).
fn attributes(rng: &mut Rng, extra: Vec<KeyValue>) -> Vec<KeyValue> {
    let mut attrs: Vec<KeyValue> = (0..10 - extra.len().min(10))
        .map(|i| kv(&format!("app.attribute.{i}"), rng.text()))
        .collect();
    attrs.extend(extra);
    attrs
}

struct TraceBuilder<'a> {
    rng: &'a mut Rng,
    trace_id: Vec<u8>,
    start: u64,
    /// (service index, span)
    spans: Vec<(usize, Span)>,
}

impl TraceBuilder<'_> {
    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        service: usize,
        parent: &[u8],
        name: String,
        kind: SpanKind,
        offset_ms: u64,
        ms: u64,
        extra: Vec<KeyValue>,
        error: bool,
    ) -> Vec<u8> {
        let id = self.rng.bytes::<8>();
        let attrs = attributes(self.rng, extra);
        let start = self.start + offset_ms * 1_000_000;
        self.spans.push((
            service,
            Span {
                trace_id: self.trace_id.clone(),
                span_id: id.clone(),
                parent_span_id: parent.to_vec(),
                name,
                kind: kind as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: start + ms * 1_000_000 + self.rng.below(1_000_000),
                attributes: attrs,
                status: error.then(|| Status {
                    code: 2,
                    message: "failed".into(),
                }),
                ..Default::default()
            },
        ));
        id
    }

    /// A server span in `service` with internal work and calls to deeper services.
    fn serve(&mut self, service: usize, parent: &[u8], depth: usize, budget: &mut i64) {
        let op = self.rng.below(5);
        let error = self.rng.below(50) == 0;
        let server = self.span(
            service,
            parent,
            format!("{} /api/op{op}", ["GET", "POST"][op as usize % 2]),
            SpanKind::Server,
            depth as u64,
            40,
            vec![kv("http.route", format!("/api/op{op}"))],
            error,
        );
        *budget -= 1;
        for i in 0..1 + self.rng.below(2) {
            if *budget <= 0 {
                break;
            }
            self.span(
                service,
                &server,
                format!("work{i}"),
                SpanKind::Internal,
                1,
                5,
                vec![],
                false,
            );
            *budget -= 1;
        }
        if *budget > 0 && self.rng.below(2) == 0 {
            self.span(
                service,
                &server,
                "SELECT orders".into(),
                SpanKind::Client,
                2,
                3,
                vec![kv("db.system", "postgresql".into())],
                false,
            );
            *budget -= 1;
        }
        while *budget > 2 && depth < 4 && self.rng.below(3) != 0 {
            let callee =
                (service + 1 + self.rng.below(SERVICES.len() as u64 - 1) as usize) % SERVICES.len();
            let client = self.span(
                service,
                &server,
                format!("call {}", SERVICES[callee]),
                SpanKind::Client,
                3,
                30,
                vec![kv("server.address", SERVICES[callee].into())],
                false,
            );
            *budget -= 1;
            self.serve(callee, &client, depth + 1, budget);
        }
    }
}

/// Requests of ~`per_request` spans, each from one service, covering `traces` traces.
fn workload(traces: usize, per_request: usize) -> (Vec<Bytes>, usize) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut per_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES.len()];
    let mut requests = Vec::new();
    let mut total = 0;
    let start = 1_700_000_000_000_000_000u64;
    let flush = |service: usize, spans: Vec<Span>, out: &mut Vec<Bytes>| {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", SERVICES[service].into()),
                        kv("service.instance.id", format!("{}-0", SERVICES[service])),
                        kv("telemetry.sdk.language", "python".into()),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: None,
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        out.push(Bytes::from(req.encode_to_vec()));
    };
    for t in 0..traces {
        let trace_id = rng.bytes::<16>();
        let mut budget = 10 + rng.below(21) as i64;
        let services = 3 + rng.below(3) as usize;
        let mut b = TraceBuilder {
            rng: &mut rng,
            trace_id,
            start: start + t as u64 * 1_000_000,
            spans: Vec::new(),
        };
        b.serve(0, &[], 0, &mut budget);
        for (service, span) in b.spans {
            let service = service % services.max(3);
            total += 1;
            per_service[service].push(span);
            if per_service[service].len() >= per_request {
                flush(
                    service,
                    std::mem::take(&mut per_service[service]),
                    &mut requests,
                );
            }
        }
    }
    for (service, spans) in per_service.into_iter().enumerate() {
        if !spans.is_empty() {
            flush(service, spans, &mut requests);
        }
    }
    (requests, total)
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// CPU time (user + system) of the whole process, in 1/100 s ticks.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // fields after the parenthesised command name; utime and stime are fields 14 and 15
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn report(stage: &str, spans: usize, cpu: Duration, wall: Duration) {
    println!(
        "{stage:<44} {:>10.0} spans/CPU-s   ({spans} spans, {:.2} CPU-s, {:.2} s wall)",
        spans as f64 / cpu.as_secs_f64().max(1e-9),
        cpu.as_secs_f64(),
        wall.as_secs_f64()
    );
}

fn stage(name: &str, requests: &[Bytes], rounds: usize, spans: usize, mut f: impl FnMut(&Bytes)) {
    let cpu0 = thread_cpu();
    let wall0 = Instant::now();
    for _ in 0..rounds {
        for r in requests {
            f(r);
        }
    }
    report(name, spans * rounds, thread_cpu() - cpu0, wall0.elapsed());
}

struct NullTraces;

#[async_trait]
impl TracesAppender for NullTraces {
    async fn append_spans(&self, batch: SpanBatch) -> store::Result<SpanAppendReport> {
        Ok(SpanAppendReport {
            accepted_spans: batch.span_count() as u64,
            ..Default::default()
        })
    }
}

struct NullMetrics;

#[async_trait]
impl MetricsAppender for NullMetrics {
    async fn append(&self, batch: MetricBatch) -> store::Result<AppendReport> {
        Ok(AppendReport {
            accepted_samples: batch.sample_count() as u64,
            ..Default::default()
        })
    }
}

impl MetricsQuerier for NullMetrics {
    fn select(&self, _: &[LabelMatcher], _: i64, _: i64) -> store::Result<Vec<Series>> {
        Ok(Vec::new())
    }
    fn series(&self, _: &[Vec<LabelMatcher>], _: i64, _: i64) -> store::Result<Vec<Labels>> {
        Ok(Vec::new())
    }
    fn label_names(&self, _: &[Vec<LabelMatcher>], _: i64, _: i64) -> store::Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn label_values(
        &self,
        _: &str,
        _: &[Vec<LabelMatcher>],
        _: i64,
        _: i64,
    ) -> store::Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn metadata(&self) -> store::Result<Vec<MetricMetadata>> {
        Ok(Vec::new())
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (traces, rounds) = if quick { (2_000, 1) } else { (10_000, 3) };
    let (requests, spans) = workload(traces, 500);
    let bytes: usize = requests.iter().map(Bytes::len).sum();
    println!(
        "workload: {traces} traces, {spans} spans in {} requests, {:.0} bytes/span protobuf",
        requests.len(),
        bytes as f64 / spans as f64
    );
    let limits = TraceLimits::default();
    let decode = |r: &Bytes| ExportTraceServiceRequest::decode(r.clone()).unwrap_or_default();

    stage("1. decode (ceiling)", &requests, rounds, spans, |r| {
        std::hint::black_box(decode(r));
    });
    stage("2. decode + convert", &requests, rounds, spans, |r| {
        let c = convert_request(decode(r), &limits);
        std::hint::black_box(c.map(|c| c.batch.span_count()).unwrap_or(0));
    });
    let cfg = Arc::new(DeriveConfig::default());
    let mut state = DeriveState::new(cfg.clone());
    let (span_les, edge_les) = (cfg.span_les(), cfg.edge_les());
    let now = Instant::now();
    let mut n = 0u64;
    stage(
        "3. decode + convert + derive",
        &requests,
        rounds,
        spans,
        |r| {
            let Ok(c) = convert_request(decode(r), &limits) else {
                return;
            };
            let p = prepare::prepare(&c.batch, &cfg);
            std::hint::black_box(c);
            // time advances 10 ms per request: halves expire as they would in 10 s
            n += 1;
            let at = now + Duration::from_millis(10 * n);
            state.apply(p, at);
            if n.is_multiple_of(20) {
                state.expire(at);
                let snap = state.snapshot(n as i64);
                std::hint::black_box(snap.to_batch(&span_les, &edge_les));
            }
        },
    );
    println!(
        "   derived keys held: {}, halves waiting at the end: {}",
        state.series_count(),
        state.pending_edges()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(async {
        let null = Arc::new(NullMetrics);
        let ingest = TraceIngest::new(
            Arc::new(NullTraces),
            null.clone(),
            null,
            limits.clone(),
            DeriveConfig::default(),
        )
        .unwrap_or_else(|e| panic!("ingest: {e}"));
        let requests = Arc::new(requests);
        let cpu0 = process_cpu();
        let wall0 = Instant::now();
        let in_flight = 64;
        let tasks: Vec<_> = (0..in_flight)
            .map(|t| {
                let ingest = ingest.clone();
                let requests = requests.clone();
                tokio::spawn(async move {
                    for _ in 0..rounds {
                        for r in requests.iter().skip(t).step_by(in_flight) {
                            if let Err(e) = ingest.export_protobuf(r.clone()).await {
                                panic!("export failed: {e}");
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
        report(
            "4. full export path (2 workers, 64 in flight)",
            spans * rounds,
            process_cpu() - cpu0,
            wall0.elapsed(),
        );
        ingest.shutdown().await;
    });
}
