//! Trace store throughput and lookup latency. Plain `Instant` timing; run with
//! `cargo bench -p lookout-store --bench traces`.
//!
//! 1. Append: `LOOKOUT_BENCH_SPANS` (default 1,000,000) realistic spans (10 attributes of
//!    about 50 bytes, traces of 10 spans over 5 services, SDK-sized batches of 500 spans)
//!    generated up front, then appended by 8 concurrent tasks with `fsync: always` and the
//!    background flush running. Reports spans per wall second and per CPU-second of the
//!    whole process (append, WAL, flushes to segments, all threads).
//! 2. Fill: more spans (generated on the fly, `fsync: never`) until
//!    `LOOKOUT_BENCH_STORED` (default 10,000,000) are stored.
//! 3. Lookup: trace-by-id latency over random stored traces and over absent ids, and a few
//!    searches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use store::config::FsyncPolicy;
use store::traces::{
    AttrValue, Resource, ResourceSpans, Span, SpanBatch, SpanId, SpanKind, StatusCode, TraceId,
    TraceQuery, TraceStore, TraceStoreOptions, TracesAppender, TracesQuerier,
};

const SPANS_PER_TRACE: u64 = 10;
const TRACES_PER_BATCH: u64 = 50;
const APPENDERS: usize = 8;
const SERVICES: [&str; 5] = ["frontend", "checkout", "payments", "inventory", "shipping"];

/// SplitMix64: deterministic and fast, so generation stays cheap.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn trace_id(n: u64) -> TraceId {
    let mut b = [0u8; 16];
    let mut r = Rng(n);
    b[..8].copy_from_slice(&r.next().to_le_bytes());
    b[8..].copy_from_slice(&(r.next() | 1).to_le_bytes());
    TraceId(b)
}

fn resources() -> Vec<Arc<Resource>> {
    SERVICES
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let attrs = vec![
                ("service.name", s.to_string()),
                ("service.version", format!("1.{i}.7")),
                ("host.name", format!("{s}-7d9f8b6c5-x{i}k2p")),
                ("k8s.namespace.name", "shop-production".to_string()),
                ("telemetry.sdk.language", "python".to_string()),
            ];
            Arc::new(Resource {
                service_name: s.to_string(),
                attributes: attrs
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), AttrValue::Str(v)))
                    .collect(),
            })
        })
        .collect()
}

/// Ten attributes of about 50 bytes, varied like real traffic (ids, urls, statements).
fn attributes(rng: &mut Rng, service: usize) -> Vec<(String, AttrValue)> {
    let order = rng.below(1_000_000);
    let user = rng.below(100_000);
    let s = |v: String| AttrValue::Str(v);
    vec![
        (
            "http.method".into(),
            s(["GET", "POST", "PUT"][rng.below(3) as usize].into()),
        ),
        (
            "http.url".into(),
            s(format!(
                "https://shop.example.com/api/v1/orders/{order}?page={}",
                rng.below(20)
            )),
        ),
        (
            "http.user_agent".into(),
            s(format!(
                "Mozilla/5.0 (X11; Linux x86_64) Chrome/{}.0.{}",
                100 + rng.below(30),
                rng.below(9999)
            )),
        ),
        (
            "http.status_code".into(),
            AttrValue::Int([200, 200, 200, 201, 404, 500][rng.below(6) as usize]),
        ),
        (
            "net.peer.name".into(),
            s(format!(
                "{}-{}.shop-production.svc.cluster.local",
                SERVICES[service],
                rng.below(8)
            )),
        ),
        (
            "enduser.id".into(),
            s(format!(
                "user-{user:08}-{:012x}",
                rng.next() & 0xffff_ffff_ffff
            )),
        ),
        (
            "session.id".into(),
            s(format!(
                "{:016x}-{:016x}-{:04x}",
                rng.next(),
                rng.next(),
                rng.below(0xffff)
            )),
        ),
        (
            "db.statement".into(),
            s(format!(
                "SELECT id, status, total FROM orders WHERE customer_id = {user} LIMIT 50"
            )),
        ),
        (
            "thread.name".into(),
            s(format!(
                "worker-pool-{}-thread-{}",
                rng.below(4),
                rng.below(64)
            )),
        ),
        (
            "request.id".into(),
            s(format!(
                "req-{:032x}",
                u128::from(rng.next()) << 64 | u128::from(rng.next())
            )),
        ),
    ]
}

const OPERATIONS: [&str; 10] = [
    "GET /api/v1/orders",
    "POST /api/v1/checkout",
    "CheckoutService/PlaceOrder",
    "PaymentService/Charge",
    "SELECT orders",
    "InventoryService/Reserve",
    "ShippingService/Quote",
    "render checkout",
    "cache get",
    "publish order.created",
];

/// Batch `b`: traces `b * TRACES_PER_BATCH ..`, spans grouped by service resource.
fn make_batch(b: u64, t0: u64, res: &[Arc<Resource>]) -> SpanBatch {
    let mut rng = Rng(b.wrapping_mul(7919) ^ 0x5eed);
    let mut groups: Vec<Vec<Span>> = vec![Vec::new(); res.len()];
    for t in 0..TRACES_PER_BATCH {
        let n = b * TRACES_PER_BATCH + t;
        let id = trace_id(n);
        let start = t0 + n * 1_000_000;
        let fail = rng.below(20) == 0;
        for k in 0..SPANS_PER_TRACE {
            let service = (k as usize * res.len()) / SPANS_PER_TRACE as usize;
            let mut span_id = [0u8; 8];
            span_id.copy_from_slice(&(rng.next() | 1).to_le_bytes());
            let s_start = start + k * 2_000_000;
            groups[service].push(Span {
                trace_id: id,
                span_id: SpanId(span_id),
                parent_span_id: (k > 0).then_some(SpanId([k as u8; 8])),
                name: OPERATIONS[k as usize].into(),
                kind: if k % 2 == 0 {
                    SpanKind::Server
                } else {
                    SpanKind::Client
                },
                start_unix_nano: s_start,
                end_unix_nano: s_start + 1_000_000 + rng.below(50_000_000),
                attributes: attributes(&mut rng, service),
                status_code: if fail && k == 3 {
                    StatusCode::Error
                } else {
                    StatusCode::Unset
                },
                scope_name: "opentelemetry.instrumentation.requests".into(),
                scope_version: "0.45b0".into(),
                ..Default::default()
            });
        }
    }
    SpanBatch {
        resource_spans: res
            .iter()
            .zip(groups)
            .map(|(r, spans)| ResourceSpans {
                resource: r.clone(),
                spans,
            })
            .collect(),
    }
}

/// CPU seconds (user + system, all threads) of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // fields after the parenthesised command name; utime and stime are the 12th and 13th
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn append_all(
    store: &Arc<TraceStore>,
    batches: Vec<SpanBatch>,
) -> Result<(), Box<dyn std::error::Error>> {
    let queue = Arc::new(parking_lot::Mutex::new(batches));
    let mut tasks = Vec::new();
    for _ in 0..APPENDERS {
        let store = store.clone();
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(b) = queue.lock().pop() else {
                    return Ok::<_, store::StoreError>(());
                };
                loop {
                    match store.append_spans(b.clone()).await {
                        Ok(_) => break,
                        Err(store::StoreError::Overloaded(_)) => {
                            tokio::time::sleep(Duration::from_millis(5)).await
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let append_spans = env_u64("LOOKOUT_BENCH_SPANS", 1_000_000);
    let stored_spans = env_u64("LOOKOUT_BENCH_STORED", 10_000_000).max(append_spans);
    let spans_per_batch = SPANS_PER_TRACE * TRACES_PER_BATCH;
    let dir =
        tempfile::tempdir_in(std::env::var("LOOKOUT_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()))?;
    let res = resources();
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64
        - 3_600_000_000_000;

    // 1. append, fsync always
    let n_batches = append_spans / spans_per_batch;
    let gen_started = Instant::now();
    let batches: Vec<SpanBatch> = (0..n_batches).map(|b| make_batch(b, t0, &res)).collect();
    let sample = {
        let mut enc = 0usize;
        for s in &batches[0].resource_spans[0].spans {
            enc += s
                .attributes
                .iter()
                .map(|(k, v)| k.len() + v.to_text().len())
                .sum::<usize>();
        }
        enc / batches[0].resource_spans[0].spans.len()
    };
    println!(
        "generated {} spans in {:.1} s (attribute text about {sample} bytes a span)",
        n_batches * spans_per_batch,
        gen_started.elapsed().as_secs_f64()
    );
    let mut o = TraceStoreOptions::new(dir.path());
    o.fsync = FsyncPolicy::Always;
    let store = TraceStore::open(o.clone())?;
    let bg = store.spawn_background();
    let cpu0 = cpu_seconds();
    let wall0 = Instant::now();
    append_all(&store, batches).await?;
    let wall_append = wall0.elapsed();
    store.flush().await?;
    let wall = wall0.elapsed();
    let cpu = cpu_seconds() - cpu0;
    let n = (n_batches * spans_per_batch) as f64;
    println!(
        "append, fsync always, {APPENDERS} appenders, batches of {spans_per_batch}: {n} spans in {:.2} s wall ({:.2} s with the final flush), {:.2} CPU-s \
         = {:.0} spans/s wall, {:.0} spans per CPU-second (WAL, head, flushes to segments)",
        wall_append.as_secs_f64(),
        wall.as_secs_f64(),
        cpu,
        n / wall.as_secs_f64(),
        n / cpu.max(1e-9),
    );
    store.close().await?;
    bg.await?;
    drop(store);

    // 2. fill
    o.fsync = FsyncPolicy::Never;
    let store = TraceStore::open(o.clone())?;
    let bg = store.spawn_background();
    let total_batches = stored_spans / spans_per_batch;
    let fill0 = Instant::now();
    let cpu0 = cpu_seconds();
    let mut b = n_batches;
    while b < total_batches {
        let end = (b + 200).min(total_batches);
        let chunk: Vec<SpanBatch> = (b..end).map(|i| make_batch(i, t0, &res)).collect();
        append_all(&store, chunk).await?;
        b = end;
    }
    store.flush().await?;
    let filled = ((total_batches - n_batches) * spans_per_batch) as f64;
    let st = store.stats();
    println!(
        "fill, fsync never: {filled} more spans in {:.1} s ({:.1} CPU-s including generation); stored {} spans in {} segments, {:.0} MB on disk ({:.0} bytes a span)",
        fill0.elapsed().as_secs_f64(),
        cpu_seconds() - cpu0,
        st.segment_spans + st.head_spans,
        st.segments,
        st.segment_bytes as f64 / 1e6,
        st.segment_bytes as f64 / st.segment_spans.max(1) as f64,
    );

    // 3. lookups: reopen first so nothing is warm in the store's memory
    store.close().await?;
    bg.await?;
    drop(store);
    let open0 = Instant::now();
    let store = TraceStore::open(o)?;
    println!(
        "reopen with {} segments: {:.0} ms",
        store.stats().segments,
        ms(open0.elapsed())
    );
    let traces = total_batches * TRACES_PER_BATCH;
    let mut rng = Rng(42);
    let mut hits = Vec::new();
    for _ in 0..2000 {
        let n = rng.below(traces);
        let started = Instant::now();
        let spans = store.trace(trace_id(n))?;
        hits.push(started.elapsed());
        if spans.len() != SPANS_PER_TRACE as usize {
            return Err(format!("trace {n}: {} spans", spans.len()).into());
        }
    }
    let mut misses = Vec::new();
    for i in 0..2000 {
        let started = Instant::now();
        let spans = store.trace(trace_id(traces + 1_000_000 + i))?;
        misses.push(started.elapsed());
        if !spans.is_empty() {
            return Err("absent trace found".into());
        }
    }
    hits.sort();
    misses.sort();
    println!(
        "trace by id over {} stored spans: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (2000 random traces); absent ids p50 {:.3} ms, p99 {:.3} ms",
        traces * SPANS_PER_TRACE,
        ms(percentile(&hits, 0.5)),
        ms(percentile(&hits, 0.99)),
        ms(*hits.last().unwrap_or(&Duration::ZERO)),
        ms(percentile(&misses, 0.5)),
        ms(percentile(&misses, 0.99)),
    );
    let searches: Vec<(&str, TraceQuery)> = vec![
        (
            "newest 20",
            TraceQuery {
                limit: 20,
                ..Default::default()
            },
        ),
        (
            "service=payments operation=PaymentService/Charge (no such pair)",
            TraceQuery {
                service: Some("payments".into()),
                operation: Some("PaymentService/Charge".into()),
                limit: 20,
                ..Default::default()
            },
        ),
        (
            "service=checkout operation=PaymentService/Charge",
            TraceQuery {
                service: Some("checkout".into()),
                operation: Some("PaymentService/Charge".into()),
                limit: 20,
                ..Default::default()
            },
        ),
        (
            "error=true",
            TraceQuery {
                error: Some(true),
                limit: 20,
                ..Default::default()
            },
        ),
        (
            "min_duration=50ms service=frontend",
            TraceQuery {
                service: Some("frontend".into()),
                min_duration_nanos: Some(50_000_000),
                limit: 20,
                ..Default::default()
            },
        ),
        (
            "tag http.status_code=500 in a 1 minute window",
            TraceQuery {
                tags: vec![("http.status_code".into(), "500".into())],
                start_unix_nano: t0 + 600_000_000_000,
                end_unix_nano: t0 + 660_000_000_000,
                limit: 20,
                ..Default::default()
            },
        ),
    ];
    for (what, q) in searches {
        let started = Instant::now();
        let got = store.search(&q)?;
        println!(
            "search {what}: {} traces in {:.1} ms",
            got.len(),
            ms(started.elapsed())
        );
    }
    store.close().await?;
    Ok(())
}
