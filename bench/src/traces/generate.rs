//! The seeded trace generator: OTLP `ExportTraceServiceRequest`s shaped like a small shop's
//! microservices, encoded as protobuf, produced in chunks so ten million spans never sit in
//! memory at once.
//!
//! Shape of one trace:
//! * 5 to 30 spans over 3 to 6 services: a `frontend` server span at the root; each further
//!   service is called (client span, then its server span as the child) from a service already
//!   in the trace, so the call tree is 1 to 5 services deep;
//! * the remaining spans hang off a random service's server span: database calls
//!   (`postgresql`, client spans), cache calls (`redis`), external APIs (`api.stripe.com`,
//!   `peer.service`), and internal spans; the leaf dependencies never send spans themselves,
//!   so they show up as virtual nodes of the service graph;
//! * about 3 % of traces fail: one leaf span is `ERROR` and so is every span on its path to
//!   the root (HTTP 500 on the server spans);
//! * every span has exactly 10 attributes, their values about 50 bytes on average (urls,
//!   statements, user agents, ids: some repeat a lot, some never), each service instance a
//!   resource of 12 attributes.
//!
//! Batching is what SDKs do: every service runs 3 instances, each with its own batch exporter
//! that sends 512 spans per request (the OpenTelemetry SDK default), one resource per request.
//! The spans of one trace therefore arrive in several requests, possibly far apart.
//!
//! Everything comes from one SplitMix64 stream seeded by `--seed`, so a run is reproducible.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde::Serialize;
use std::fmt::Write as _;

/// The entry service, root of every trace.
const FRONTEND: &str = "frontend";
/// Services a trace can call, after the frontend.
const BACKENDS: [&str; 8] = [
    "checkout",
    "cart",
    "catalog",
    "payments",
    "shipping",
    "users",
    "recommendations",
    "inventory",
];
const LANGUAGES: [&str; 4] = ["python", "go", "java", "nodejs"];
const INSTANCES: usize = 3;
const OPERATIONS: [(&str, &str); 4] = [
    ("GET", "items/{id}"),
    ("GET", "search"),
    ("POST", "items"),
    ("PUT", "items/{id}/status"),
];
const INTERNAL_OPS: [&str; 5] = [
    "validate_request",
    "render_response",
    "apply_discounts",
    "serialize_payload",
    "load_feature_flags",
];
const TABLES: [&str; 4] = ["orders", "customers", "line_items", "shipments"];
const SEGMENTS: [&str; 3] = [
    "returning-high-value-eu-mobile-app-ios",
    "new-visitor-mobile-web-campaign-spring",
    "loyalty-gold-tier-member-desktop-web",
];
/// Whole `User-Agent` headers, as browsers send them.
const USER_AGENTS: [&str; 3] = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
];
/// Spans per request: the OpenTelemetry SDK batch exporter's default `maxExportBatchSize`.
pub const DEFAULT_BATCH_SPANS: usize = 512;
/// Per mille of traces that fail.
const ERROR_PER_MILLE: u64 = 30;

pub use crate::rng::Rng;

/// One encoded request and the spans in it.
#[derive(Clone)]
pub struct Request {
    pub body: Bytes,
    pub spans: u32,
}

/// A generated trace, kept for the lookups: its id, its span count and the indexes (in send
/// order) of the first and last requests that carry its spans.
#[derive(Clone, Copy, Debug)]
pub struct TraceRecord {
    pub id: [u8; 16],
    pub spans: u16,
    /// `u32::MAX` until one of its spans went out.
    pub first_request: u32,
    /// `u32::MAX` while some of its spans still wait in a batch.
    pub last_request: u32,
}

/// Counters of what was generated, for the report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GenStats {
    pub traces: u64,
    pub spans: u64,
    pub requests: u64,
    pub protobuf_bytes: u64,
    pub error_traces: u64,
    pub error_spans: u64,
    pub server_spans: u64,
    pub client_spans: u64,
    pub internal_spans: u64,
    /// Sum of span attribute key and value bytes (string values; ints count 8).
    pub attr_key_bytes: u64,
    pub attr_value_bytes: u64,
    pub attrs: u64,
    pub generate_secs: f64,
}

impl GenStats {
    pub fn bytes_per_span(&self) -> f64 {
        self.protobuf_bytes as f64 / self.spans.max(1) as f64
    }
    pub fn mean_attr_value_bytes(&self) -> f64 {
        self.attr_value_bytes as f64 / self.attrs.max(1) as f64
    }
    pub fn mean_attr_key_bytes(&self) -> f64 {
        self.attr_key_bytes as f64 / self.attrs.max(1) as f64
    }
}

/// One service instance's batch exporter.
struct Exporter {
    resource: Resource,
    scope: InstrumentationScope,
    spans: Vec<Span>,
    /// The trace (index into `records`) of each buffered span.
    traces: Vec<u32>,
}

/// A span under construction: which service sent it, and its parent's index in the trace.
struct Node {
    service: usize,
    parent: Option<usize>,
    span: Span,
}

pub struct Generator {
    rng: Rng,
    batch_spans: usize,
    /// `[service][instance]`; service 0 is the frontend, `1 + i` is `BACKENDS[i]`.
    exporters: Vec<Vec<Exporter>>,
    /// Start of the next trace (Unix ns) and the gap between trace starts.
    next_start: u64,
    gap_nanos: u64,
    requests_made: u32,
    pub records: Vec<TraceRecord>,
    pub stats: GenStats,
}

fn kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

fn service_name(service: usize) -> &'static str {
    if service == 0 {
        FRONTEND
    } else {
        BACKENDS[service - 1]
    }
}

fn resource(rng: &mut Rng, service: usize, instance: usize) -> Resource {
    let name = service_name(service);
    let pod = format!("{name}-7d9f8b6c5-{:05x}", rng.below(1 << 20));
    let attrs = vec![
        kv("service.name", name.into()),
        kv("service.namespace", "shop".into()),
        kv(
            "service.version",
            format!("2.{}.{}", service % 5, instance + 3),
        ),
        kv(
            "service.instance.id",
            format!(
                "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                rng.next_u64() as u32,
                rng.below(1 << 16),
                rng.below(1 << 12),
                rng.below(1 << 12),
                rng.next_u64() & 0xffff_ffff_ffff
            ),
        ),
        kv("host.name", pod.clone()),
        kv("k8s.pod.name", pod),
        kv("k8s.namespace.name", "shop-production".into()),
        kv(
            "k8s.node.name",
            format!("ip-10-0-{}-{}.ec2.internal", rng.below(8), rng.below(250)),
        ),
        kv("deployment.environment", "production".into()),
        kv("telemetry.sdk.name", "opentelemetry".into()),
        kv(
            "telemetry.sdk.language",
            LANGUAGES[service % LANGUAGES.len()].into(),
        ),
        kv("telemetry.sdk.version", "1.27.0".into()),
    ];
    Resource {
        attributes: attrs,
        ..Default::default()
    }
}

/// What a leaf span under a server span does.
#[derive(Clone, Copy)]
enum Leaf {
    Database,
    Cache,
    External,
    Internal,
}

impl Generator {
    /// A generator whose traces start at `start_unix_nano`, `gap_nanos` apart.
    pub fn new(seed: u64, batch_spans: usize, start_unix_nano: u64, gap_nanos: u64) -> Self {
        let mut rng = Rng::new(seed);
        let exporters = (0..=BACKENDS.len())
            .map(|service| {
                (0..INSTANCES)
                    .map(|instance| Exporter {
                        resource: resource(&mut rng, service, instance),
                        scope: InstrumentationScope {
                            name: format!(
                                "opentelemetry.instrumentation.{}",
                                LANGUAGES[service % LANGUAGES.len()]
                            ),
                            version: "0.48b0".into(),
                            ..Default::default()
                        },
                        spans: Vec::with_capacity(batch_spans),
                        traces: Vec::with_capacity(batch_spans),
                    })
                    .collect()
            })
            .collect();
        Generator {
            rng,
            batch_spans: batch_spans.max(1),
            exporters,
            next_start: start_unix_nano,
            gap_nanos,
            requests_made: 0,
            records: Vec::new(),
            stats: GenStats::default(),
        }
    }

    /// Generates traces of at least `spans` spans in all and returns the requests that
    /// filled up meanwhile (spans left in batches go out with a later chunk or [`finish`]).
    ///
    /// [`finish`]: Generator::finish
    pub fn chunk(&mut self, spans: u64) -> Vec<Request> {
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        let target = self.stats.spans + spans;
        while self.stats.spans < target {
            self.trace(&mut out);
        }
        self.stats.generate_secs += started.elapsed().as_secs_f64();
        out
    }

    /// Sends every batch still waiting (the end of the load, as SDKs do at shutdown).
    pub fn finish(&mut self) -> Vec<Request> {
        let mut out = Vec::new();
        for service in 0..self.exporters.len() {
            for instance in 0..INSTANCES {
                if !self.exporters[service][instance].spans.is_empty() {
                    self.export(service, instance, &mut out);
                }
            }
        }
        out
    }

    /// Start and end inside `[start, end]`, covering 10-80 % of it.
    fn within(&mut self, start: u64, end: u64) -> (u64, u64) {
        let total = end.saturating_sub(start).max(10);
        let dur = total * (10 + self.rng.below(71)) / 100;
        let offset = self.rng.below(total - dur + 1);
        (start + offset, start + offset + dur)
    }

    fn span_ids(&mut self) -> Vec<u8> {
        // never all zero: the low bit is set
        (self.rng.next_u64() | 1).to_be_bytes().to_vec()
    }

    fn hex32(&mut self) -> String {
        format!("{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64())
    }

    /// Ten attributes of an HTTP server span.
    fn server_attrs(&mut self, service: usize, method: &str, route: &str) -> Vec<KeyValue> {
        let name = service_name(service);
        let path = route.replace("{id}", &self.rng.below(1_000_000).to_string());
        vec![
            kv("http.request.method", method.into()),
            kv(
                "url.path",
                format!(
                    "/api/v2/{name}/{path}?page={}&sort=created_at:desc&lang=en-US",
                    self.rng.below(20)
                ),
            ),
            kv("http.route", format!("/api/v2/{name}/{route}")),
            kv_int("http.response.status_code", 200),
            kv(
                "user_agent.original",
                self.rng.pick(&USER_AGENTS).to_string(),
            ),
            kv(
                "http.request.header.x_forwarded_for",
                format!(
                    "203.0.113.{}, 198.51.100.{}, 10.42.{}.{}",
                    self.rng.below(250),
                    self.rng.below(250),
                    self.rng.below(64),
                    self.rng.below(250)
                ),
            ),
            kv(
                "server.address",
                format!("{name}.shop-production.svc.cluster.local"),
            ),
            kv(
                "enduser.id",
                format!(
                    "user-{:08}-{:012x}@customers.shop.example",
                    self.rng.below(100_000),
                    self.rng.next_u64() & 0xffff_ffff_ffff
                ),
            ),
            kv(
                "session.id",
                format!("sess-{}-{:016x}", self.hex32(), self.rng.next_u64()),
            ),
            kv(
                "http.request.header.x_request_id",
                format!("req-{}-eu-west-1a", self.hex32()),
            ),
        ]
    }

    /// Ten attributes of an HTTP client span calling `callee`.
    fn client_attrs(&mut self, callee: usize, method: &str, route: &str) -> Vec<KeyValue> {
        let name = service_name(callee);
        let path = route.replace("{id}", &self.rng.below(1_000_000).to_string());
        vec![
            kv("http.request.method", method.into()),
            kv(
                "url.full",
                format!(
                    "http://{name}.shop-production.svc.cluster.local:8080/api/v2/{name}/{path}?include=prices,stock&currency=EUR"
                ),
            ),
            kv(
                "server.address",
                format!("{name}.shop-production.svc.cluster.local"),
            ),
            kv(
                "http.request.header.traceparent",
                format!("00-{}-{:016x}-01", self.hex32(), self.rng.next_u64()),
            ),
            kv_int("http.response.status_code", 200),
            kv("peer.service", name.into()),
            kv(
                "http.request.header.user_agent",
                "python-requests/2.31.0 opentelemetry-instrumentation-requests/0.48b0".into(),
            ),
            kv(
                "thread.name",
                format!(
                    "http-client-worker-pool-{}-thread-{}",
                    self.rng.below(4),
                    self.rng.below(64)
                ),
            ),
            kv(
                "http.request.header.baggage",
                format!(
                    "userId={},tenant=shop-eu,experiment=checkout-v2",
                    self.rng.below(100_000_000)
                ),
            ),
            kv(
                "http.request.header.x_request_id",
                format!("req-{}-eu-west-1a", self.hex32()),
            ),
        ]
    }

    /// A leaf under a server span: (name, kind, attributes).
    fn leaf_span(&mut self, leaf: Leaf) -> (String, SpanKind, Vec<KeyValue>) {
        let user = self.rng.below(100_000);
        match leaf {
            Leaf::Database => {
                let table = *self.rng.pick(&TABLES);
                let (op, stmt) = match self.rng.below(3) {
                    0 => (
                        "SELECT",
                        format!("SELECT id, customer_id, status, total_cents, currency, created_at, updated_at FROM {table} WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 50"),
                    ),
                    1 => (
                        "UPDATE",
                        format!("UPDATE {table} SET status = $1, updated_at = now(), version = version + 1 WHERE id = $2 AND version = $3"),
                    ),
                    _ => (
                        "INSERT",
                        format!("INSERT INTO {table} (customer_id, status, total_cents, currency, created_at) VALUES ($1, $2, $3, $4, now()) RETURNING id"),
                    ),
                };
                let attrs = vec![
                    kv("db.system", "postgresql".into()),
                    kv("db.namespace", "shop_production_primary".into()),
                    kv("db.query.text", stmt),
                    kv("db.operation.name", op.into()),
                    kv("db.collection.name", format!("public.{table}")),
                    kv(
                        "server.address",
                        "shop-pg-primary.cluster-c9akciq32.eu-west-1.rds.amazonaws.com".into(),
                    ),
                    kv_int("server.port", 5432),
                    kv(
                        "db.connection_string",
                        format!("postgresql://svc_shop_rw_{user}@shop-pg-primary.internal:5432/shop_production?sslmode=require"),
                    ),
                    kv(
                        "thread.name",
                        format!(
                            "db-pool-{}-conn-{} (HikariPool-shop-primary)",
                            self.rng.below(4),
                            self.rng.below(32)
                        ),
                    ),
                    kv(
                        "db.client.connection.pool.name",
                        "HikariPool-shop-production-primary-rw".into(),
                    ),
                ];
                (format!("{op} {table}"), SpanKind::Client, attrs)
            }
            Leaf::Cache => {
                let op = if self.rng.below(4) == 0 { "SET" } else { "GET" };
                let attrs = vec![
                    kv("db.system", "redis".into()),
                    kv(
                        "db.query.text",
                        format!(
                            "{op} shop:cart:v2:{user}:{:016x}:items:eu-west-1",
                            self.rng.next_u64()
                        ),
                    ),
                    kv("db.operation.name", op.into()),
                    kv_int("db.namespace", 0),
                    kv(
                        "server.address",
                        "shop-cache.abc123.ng.0001.euw1.cache.amazonaws.com".into(),
                    ),
                    kv_int("server.port", 6379),
                    kv(
                        "network.peer.address",
                        format!(
                            "10.0.{}.{}:6379 (shop-cache-0001-00{})",
                            self.rng.below(8),
                            self.rng.below(250),
                            1 + self.rng.below(3)
                        ),
                    ),
                    kv(
                        "db.client.connection.pool.name",
                        "redis-pool-shop-cart-sessions-eu-west-1-primary".into(),
                    ),
                    kv(
                        "cache.key_prefix",
                        "shop:cart:v2:session-cart-production-eu-west-1".into(),
                    ),
                    kv(
                        "thread.name",
                        format!(
                            "redis-pool-{}-conn-{} (lettuce-nioEventLoop-4-{})",
                            self.rng.below(4),
                            self.rng.below(32),
                            self.rng.below(8)
                        ),
                    ),
                ];
                (op.to_string(), SpanKind::Client, attrs)
            }
            Leaf::External => {
                let attrs = vec![
                    kv("http.request.method", "POST".into()),
                    kv(
                        "url.full",
                        format!(
                            "https://api.stripe.com/v1/payment_intents/pi_{:024x}/confirm",
                            u128::from(self.rng.next_u64())
                        ),
                    ),
                    kv("server.address", "api.stripe.com".into()),
                    kv_int("server.port", 443),
                    kv_int("http.response.status_code", 200),
                    kv("peer.service", "stripe".into()),
                    kv(
                        "http.request.header.user_agent",
                        "Stripe/v1 PythonBindings/7.9.0 opentelemetry-instrumentation-httpx/0.48b0"
                            .into(),
                    ),
                    kv(
                        "http.request.header.idempotency_key",
                        format!("idem-{}-{user}", self.hex32()),
                    ),
                    kv(
                        "http.response.header.request_id",
                        format!("req_{}", self.hex32()),
                    ),
                    kv(
                        "thread.name",
                        format!(
                            "http-client-worker-pool-{}-thread-{}",
                            self.rng.below(4),
                            self.rng.below(64)
                        ),
                    ),
                ];
                ("POST".to_string(), SpanKind::Client, attrs)
            }
            Leaf::Internal => {
                let op = *self.rng.pick(&INTERNAL_OPS);
                let attrs = vec![
                    kv("code.function", format!("{op}_for_request")),
                    kv(
                        "code.namespace",
                        format!("shop.services.checkout.handlers.{op}_module"),
                    ),
                    kv(
                        "code.filepath",
                        format!("/app/.venv/lib/python3.12/site-packages/shop/handlers/{op}.py"),
                    ),
                    kv_int("code.lineno", 10 + self.rng.below(900) as i64),
                    kv(
                        "thread.name",
                        format!(
                            "ThreadPoolExecutor-{}_{} (asyncio worker)",
                            self.rng.below(4),
                            self.rng.below(64)
                        ),
                    ),
                    kv(
                        "app.tenant",
                        format!(
                            "tenant-{:04}-shop-production-eu-west-1-blue",
                            self.rng.below(500)
                        ),
                    ),
                    kv(
                        "app.feature_flags",
                        "checkout_v2,new_pricing,fast_search,dark_mode,one_click_pay".into(),
                    ),
                    kv("app.cart.id", format!("cart:{}:{user}", self.hex32())),
                    kv("app.customer.segment", (*self.rng.pick(&SEGMENTS)).into()),
                    kv(
                        "app.request.fingerprint",
                        format!("sha256:{}{:016x}", self.hex32(), self.rng.next_u64()),
                    ),
                ];
                (op.to_string(), SpanKind::Internal, attrs)
            }
        }
    }

    fn push(
        &mut self,
        nodes: &mut Vec<Node>,
        service: usize,
        parent: Option<usize>,
        span: Span,
    ) -> usize {
        nodes.push(Node {
            service,
            parent,
            span,
        });
        nodes.len() - 1
    }

    /// Builds one trace and hands its spans to the exporters, which add the requests they
    /// complete to `out`.
    fn trace(&mut self, out: &mut Vec<Request>) {
        let target = 5 + self.rng.below(26) as usize;
        // each service after the frontend costs a client and a server span
        let services = (3 + self.rng.below(4) as usize).min(1 + (target - 1) / 2);
        let failed = self.rng.below(1000) < ERROR_PER_MILLE;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.rng.next_u64().to_be_bytes());
        id[8..].copy_from_slice(&(self.rng.next_u64() | 1).to_be_bytes());
        let start = self.next_start;
        self.next_start += self.gap_nanos;
        let end = start + 20_000_000 + self.rng.below(280_000_000);

        // distinct backends, by a partial Fisher-Yates shuffle
        let mut pool: Vec<usize> = (1..=BACKENDS.len()).collect();
        for i in 0..services - 1 {
            let j = i + self.rng.below((pool.len() - i) as u64) as usize;
            pool.swap(i, j);
        }

        let mut nodes: Vec<Node> = Vec::with_capacity(target);
        let mut servers: Vec<usize> = Vec::with_capacity(services);
        let (method, route) = *self.rng.pick(&OPERATIONS);
        let root = Span {
            span_id: self.span_ids(),
            name: format!("{method} /api/{FRONTEND}/{route}"),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: self.server_attrs(0, method, route),
            ..Default::default()
        };
        let root = self.push(&mut nodes, 0, None, root);
        servers.push(root);
        for &callee in pool.iter().take(services - 1) {
            let caller = servers[self.rng.below(servers.len() as u64) as usize];
            let (cs, ce) = {
                let p = &nodes[caller].span;
                (p.start_time_unix_nano, p.end_time_unix_nano)
            };
            let (method, route) = *self.rng.pick(&OPERATIONS);
            let (s, e) = self.within(cs, ce);
            let client = Span {
                span_id: self.span_ids(),
                parent_span_id: nodes[caller].span.span_id.clone(),
                name: format!("{method} /api/{}/{route}", service_name(callee)),
                kind: SpanKind::Client as i32,
                start_time_unix_nano: s,
                end_time_unix_nano: e,
                attributes: self.client_attrs(callee, method, route),
                ..Default::default()
            };
            let caller_service = nodes[caller].service;
            let client = self.push(&mut nodes, caller_service, Some(caller), client);
            // the server side starts a little after the client and ends a little before
            let margin = (e - s) / 20;
            let server = Span {
                span_id: self.span_ids(),
                parent_span_id: nodes[client].span.span_id.clone(),
                name: format!("{method} /api/{}/{route}", service_name(callee)),
                kind: SpanKind::Server as i32,
                start_time_unix_nano: s + margin,
                end_time_unix_nano: e - margin,
                attributes: self.server_attrs(callee, method, route),
                ..Default::default()
            };
            let server = self.push(&mut nodes, callee, Some(client), server);
            servers.push(server);
        }
        let mut leaves = Vec::new();
        while nodes.len() < target {
            let owner = servers[self.rng.below(servers.len() as u64) as usize];
            let leaf = match self.rng.below(10) {
                0..=3 => Leaf::Database,
                4..=5 => Leaf::Cache,
                6 => Leaf::External,
                _ => Leaf::Internal,
            };
            let (ps, pe) = {
                let p = &nodes[owner].span;
                (p.start_time_unix_nano, p.end_time_unix_nano)
            };
            let (s, e) = self.within(ps, pe);
            let (name, kind, attributes) = self.leaf_span(leaf);
            let span = Span {
                span_id: self.span_ids(),
                parent_span_id: nodes[owner].span.span_id.clone(),
                name,
                kind: kind as i32,
                start_time_unix_nano: s,
                end_time_unix_nano: e,
                attributes,
                ..Default::default()
            };
            let service = nodes[owner].service;
            let leaf_idx = self.push(&mut nodes, service, Some(owner), span);
            if !matches!(leaf, Leaf::Internal) {
                leaves.push(leaf_idx);
            }
        }
        if failed {
            // the failure starts at a dependency call (or the deepest server) and every span
            // on the way up fails too
            let mut at = match leaves.is_empty() {
                false => Some(leaves[self.rng.below(leaves.len() as u64) as usize]),
                true => servers.last().copied(),
            };
            while let Some(i) = at {
                let n = &mut nodes[i];
                n.span.status = Some(Status {
                    code: StatusCode::Error as i32,
                    message: "upstream request failed: connection reset by peer (os error 104)"
                        .into(),
                });
                for a in &mut n.span.attributes {
                    if a.key == "http.response.status_code" {
                        a.value = Some(AnyValue {
                            value: Some(any_value::Value::IntValue(500)),
                        });
                    }
                }
                self.stats.error_spans += 1;
                at = n.parent;
            }
            self.stats.error_traces += 1;
        }

        let trace_index = self.records.len() as u32;
        self.records.push(TraceRecord {
            id,
            spans: nodes.len() as u16,
            first_request: u32::MAX,
            last_request: u32::MAX,
        });
        self.stats.traces += 1;
        for node in nodes {
            let mut span = node.span;
            span.trace_id = id.to_vec();
            self.count(&span);
            let instance = self.rng.below(INSTANCES as u64) as usize;
            let ex = &mut self.exporters[node.service][instance];
            ex.spans.push(span);
            ex.traces.push(trace_index);
            if ex.spans.len() >= self.batch_spans {
                self.export(node.service, instance, out);
            }
        }
    }

    fn count(&mut self, span: &Span) {
        let st = &mut self.stats;
        st.spans += 1;
        match span.kind {
            k if k == SpanKind::Server as i32 => st.server_spans += 1,
            k if k == SpanKind::Client as i32 => st.client_spans += 1,
            _ => st.internal_spans += 1,
        }
        for a in &span.attributes {
            st.attrs += 1;
            st.attr_key_bytes += a.key.len() as u64;
            st.attr_value_bytes += match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.len() as u64,
                _ => 8,
            };
        }
    }

    /// Encodes one exporter's batch as a request.
    fn export(&mut self, service: usize, instance: usize, out: &mut Vec<Request>) {
        let ex = &mut self.exporters[service][instance];
        let spans = std::mem::replace(&mut ex.spans, Vec::with_capacity(self.batch_spans));
        let n = spans.len();
        let request_index = self.requests_made;
        self.requests_made += 1;
        for t in ex.traces.drain(..) {
            if let Some(r) = self.records.get_mut(t as usize) {
                // requests are made in send order, so the first one seen is the earliest
                r.first_request = r.first_request.min(request_index);
                r.last_request = request_index;
            }
        }
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(ex.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(ex.scope.clone()),
                    spans,
                    schema_url: "https://opentelemetry.io/schemas/1.24.0".into(),
                }],
                schema_url: String::new(),
            }],
        };
        let body = req.encode_to_vec();
        self.stats.requests += 1;
        self.stats.protobuf_bytes += body.len() as u64;
        out.push(Request {
            body: Bytes::from(body),
            spans: n as u32,
        });
    }

    /// Lower-case hex of a trace id, as the APIs take it.
    pub fn hex(id: &[u8; 16]) -> String {
        let mut s = String::with_capacity(32);
        for b in id {
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(r: &Request) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest::decode(r.body.as_ref()).unwrap()
    }

    #[test]
    fn same_seed_same_requests() {
        let mut a = Generator::new(7, 64, 1_700_000_000_000_000_000, 1_000_000);
        let mut b = Generator::new(7, 64, 1_700_000_000_000_000_000, 1_000_000);
        let ra = a.chunk(2_000);
        let rb = b.chunk(2_000);
        assert_eq!(ra.len(), rb.len());
        assert!(ra.iter().zip(&rb).all(|(x, y)| x.body == y.body));
        let mut c = Generator::new(8, 64, 1_700_000_000_000_000_000, 1_000_000);
        assert!(c.chunk(2_000)[0].body != ra[0].body);
    }

    #[test]
    fn shape_of_traces_and_batches() {
        let mut g = Generator::new(42, DEFAULT_BATCH_SPANS, 1_700_000_000_000_000_000, 500_000);
        let mut reqs = g.chunk(200_000);
        reqs.extend(g.finish());
        let total: u64 = reqs.iter().map(|r| u64::from(r.spans)).sum();
        assert_eq!(total, g.stats.spans);
        assert_eq!(
            total,
            g.records.iter().map(|r| u64::from(r.spans)).sum::<u64>()
        );
        // every full batch has 512 spans, one resource and one scope
        let mut per_trace: std::collections::HashMap<Vec<u8>, u32> = Default::default();
        let mut services =
            std::collections::HashMap::<Vec<u8>, std::collections::HashSet<String>>::new();
        for r in &reqs {
            let req = decode(r);
            assert_eq!(req.resource_spans.len(), 1);
            let rs = &req.resource_spans[0];
            let svc = rs.resource.as_ref().unwrap().attributes[0].clone();
            let svc = match svc.value.unwrap().value.unwrap() {
                any_value::Value::StringValue(s) => s,
                _ => panic!("service.name is a string"),
            };
            assert!(r.spans as usize <= DEFAULT_BATCH_SPANS);
            for s in &rs.scope_spans[0].spans {
                assert_eq!(s.attributes.len(), 10, "{}", s.name);
                assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
                *per_trace.entry(s.trace_id.clone()).or_default() += 1;
                services
                    .entry(s.trace_id.clone())
                    .or_default()
                    .insert(svc.clone());
            }
        }
        assert_eq!(per_trace.len() as u64, g.stats.traces);
        for rec in &g.records {
            let n = per_trace[&rec.id.to_vec()];
            assert_eq!(n, u32::from(rec.spans));
            assert!((5..=30).contains(&n), "{n} spans");
            let s = services[&rec.id.to_vec()].len();
            assert!((3..=6).contains(&s), "{s} services");
            assert!(rec.first_request <= rec.last_request);
            assert!((rec.last_request as usize) < reqs.len());
        }
        let error_rate = g.stats.error_traces as f64 / g.stats.traces as f64;
        assert!((0.02..0.04).contains(&error_rate), "{error_rate}");
        let mean = g.stats.mean_attr_value_bytes();
        assert!(
            (40.0..60.0).contains(&mean),
            "mean attribute value {mean} bytes"
        );
        assert!(g.stats.server_spans > 0 && g.stats.client_spans > 0 && g.stats.internal_spans > 0);
    }

    #[test]
    fn records_know_their_last_request() {
        let mut g = Generator::new(1, 16, 1_700_000_000_000_000_000, 1_000);
        let mut reqs = g.chunk(500);
        reqs.extend(g.finish());
        assert!(g.records.iter().all(|r| r.last_request != u32::MAX));
        // a trace's last request really holds one of its spans
        for rec in g.records.iter().take(20) {
            let req = decode(&reqs[rec.last_request as usize]);
            assert!(req.resource_spans[0].scope_spans[0]
                .spans
                .iter()
                .any(|s| s.trace_id == rec.id));
        }
    }

    #[test]
    fn hex_is_lower_case() {
        let mut id = [0u8; 16];
        id[0] = 0xab;
        id[15] = 0x01;
        assert_eq!(Generator::hex(&id), "ab000000000000000000000000000001");
    }
}
