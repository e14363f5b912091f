//! Log store ingest throughput, size on disk and search latency. Plain `Instant` timing; run
//! with `cargo bench -p lookout-store --bench logs` (`LOOKOUT_BENCH_LS=1` also breaks
//! the partitions' bytes down by file kind, index component and field).
//!
//! 1. A seeded corpus of `LOOKOUT_BENCH_LOG_MB` (default 200) MB of log lines of about 280
//!    bytes (Spring-style HTTP access, SQL, upstream errors, Kafka consumer, payments, cache,
//!    Chinese text; ids, IPs, paths, durations; 8 services, weighted levels; half the lines
//!    carry a trace id shared by runs of 8 lines) with a small resource (service, host,
//!    namespace) per record, over six hours ending about an hour ago. Prints `zstd -3` of the
//!    lines and of the whole records (ids, times and resource too) as one stream: the floors.
//! 2. Append through `LogsAppender` by 4 concurrent tasks in batches of 1,000 (`fsync:
//!    never`: this measures indexing). Reports raw MB per wall second and per CPU-second of
//!    the whole process (encode, WAL, indexing, commits, merges).
//! 3. Size: index+store bytes over raw line bytes, once idle writers merged their cold
//!    partitions and closed.
//! 4. Search latency (p50/p99 over 50 runs, newest 100 over the whole range): a term, a
//!    phrase, a trace id, a field + severity query, a CJK word, a prefix and a suffix
//!    wildcard, a phrase no line has (every line with its words is verified and rejected);
//!    and histograms of a severity range (fast fields only) and of a phrase (every
//!    candidate verified).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use store::config::FsyncPolicy;
use store::logs::{
    Direction, HistogramRequest, LogBatch, LogQuery, LogRecord, LogSearch, LogStore,
    LogStoreOptions, LogsAppender, LogsQuerier,
};
use store::traces::{SpanId, TraceId};

const SERVICES: [&str; 8] = [
    "checkout",
    "cart",
    "payment",
    "auth",
    "inventory",
    "shipping",
    "frontend",
    "search",
];
const TABLES: [&str; 5] = ["orders", "order_items", "customers", "products", "payments"];
const RESOURCES: [&str; 6] = [
    "orders", "users", "products", "carts", "sessions", "invoices",
];
const BATCH: usize = 1000;
const APPENDERS: usize = 4;
const SEC: u64 = 1_000_000_000;

/// SplitMix64: deterministic and fast.
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

    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len() as u64) as usize]
    }

    fn hex(&mut self, bytes: usize) -> String {
        (0..bytes)
            .map(|_| format!("{:02x}", self.below(256)))
            .collect()
    }
}

fn level(r: &mut Rng) -> (u8, &'static str) {
    match r.below(100) {
        0..=69 => (9, "INFO"),
        70..=79 => (5, "DEBUG"),
        80..=91 => (13, "WARN"),
        92..=98 => (17, "ERROR"),
        _ => (21, "FATAL"),
    }
}

fn body(r: &mut Rng, service: &str, level: &str, ts: &str) -> String {
    let thread = r.below(200);
    match r.below(8) {
        0 | 1 => format!(
            "{ts} {level:5} 1 --- [http-nio-8080-exec-{thread}] c.e.shop.web.RequestLoggingFilter : request completed method={} uri=/api/v1/{}/{} status={} duration={}ms bytes={} user=user-{} client={} ua=\"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\"",
            r.pick(&["GET", "GET", "GET", "POST", "PUT", "DELETE"]),
            r.pick(&RESOURCES),
            r.below(100_000),
            r.pick(&["200", "200", "200", "200", "201", "204", "400", "404", "500", "503"]),
            r.below(1000),
            r.below(50_000),
            r.below(10_000),
            pool_ip(r),
        ),
        2 => {
            let table = r.pick(&TABLES);
            format!(
                "{ts} {level:5} 1 --- [db-pool-{}] o.h.engine.jdbc.spi.SqlStatementLogger : query finished table={table} rows={} elapsed={}ms sql=\"select t.id, t.status, t.total, t.updated_at from {table} t where t.tenant_id=? and t.id=? limit 100\" pool=HikariPool-1 connection={}",
                r.below(32),
                r.below(500),
                r.below(300),
                r.below(64),
            )
        }
        3 => {
            let peer = r.pick(&SERVICES);
            format!(
                "{ts} {level:5} 1 --- [http-nio-8080-exec-{thread}] c.e.shop.client.UpstreamClient : upstream call failed: connection refused to {peer}.prod.svc.cluster.local:8080 after {} retries (timeout={}ms) error=\"dial tcp {}:8080: connect: connection refused\" request_id={}",
                r.below(5),
                r.pick(&["1000", "2000", "5000"]),
                pool_ip(r),
                r.hex(8),
            )
        }
        4 => format!(
            "{ts} {level:5} 1 --- [kafka-consumer-{}] o.a.k.c.consumer.internals.Fetcher : [Consumer clientId=consumer-{service}-{}, groupId={service}-group] Fetch position FetchPosition{{offset={}, offsetEpoch=Optional.empty}} is out of range for partition orders-{}, resetting offset",
            r.below(8),
            r.below(16),
            r.below(10_000_000),
            r.below(32),
        ),
        5 => format!(
            "{ts} {level:5} 1 --- [payment-worker-{}] c.e.shop.payment.PaymentService : payment authorized order_id=ord_{} amount={}.{:02} currency={} card=**** **** **** {:04} merchant=m-{} risk_score=0.{:02} gateway=stripe latency={}ms",
            r.below(16),
            r.below(10_000_000),
            r.below(1000),
            r.below(100),
            r.pick(&["USD", "EUR", "CNY"]),
            r.below(10_000),
            r.below(500),
            r.below(100),
            r.below(900),
        ),
        6 => format!(
            "{ts} {level:5} 1 --- [http-nio-8080-exec-{thread}] c.e.shop.cache.SessionCache : cache miss key=session:user-{} ttl=3600s backend=redis://cache-{}.prod.svc.cluster.local:6379/0 fallback=database elapsed={}us hit_ratio=0.{:02}",
            r.below(10_000),
            r.below(3),
            r.below(20_000),
            r.below(100),
        ),
        _ => format!(
            "{ts} {level:5} 1 --- [http-nio-8080-exec-{thread}] c.e.shop.auth.LoginController : 用户 user-{} 登录成功，来源 IP {}，耗时 {} 毫秒，设备 Android {}.{}，渠道 应用商店，会话已创建并写入缓存",
            r.below(10_000),
            pool_ip(r),
            r.below(2000),
            r.below(15),
            r.below(10),
        ),
    }
}

/// Clients come from a pool of addresses, as they do.
fn pool_ip(r: &mut Rng) -> String {
    let n = r.below(500);
    format!("10.{}.{}.{}", n % 4, (n * 37) % 256, (n * 101) % 256)
}

fn make_record(r: &mut Rng, n: u64, t: u64) -> LogRecord {
    let service = r.pick(&SERVICES);
    let (sev, text) = level(r);
    let secs = t / SEC;
    let ts = format!(
        "2026-01-01T{:02}:{:02}:{:02}.{:03}Z",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        (t / 1_000_000) % 1000
    );
    let body = body(r, service, text, &ts);
    // half the lines carry a trace id, shared by runs of 8 lines (the logs of one request)
    let traced = r.below(2) == 0;
    let run = n / 8 + 1;
    let mut tid = [0u8; 16];
    tid[..8].copy_from_slice(&Rng(run).next().to_le_bytes());
    tid[8..].copy_from_slice(&(Rng(!run).next() | 1).to_le_bytes());
    LogRecord {
        time_unix_nano: t,
        observed_unix_nano: t + r.below(5_000_000),
        severity_number: sev,
        severity_text: text.to_string(),
        service: service.to_string(),
        trace_id: traced.then_some(TraceId(tid)),
        span_id: traced.then(|| SpanId((Rng(n / 2).next() | 1).to_le_bytes())),
        body,
        resource: vec![
            ("service.name".to_string(), service.to_string()),
            (
                "host.name".to_string(),
                format!("{service}-7d9f8b6c5-{}", r.below(4)),
            ),
            ("k8s.namespace.name".to_string(), "prod".to_string()),
        ],
        attributes: Vec::new(),
    }
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // fields after the parenthesised command name; utime and stime are the 12th and 13th
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Bytes of every partition by file kind, then by index component and field, as fractions of
/// the raw line bytes.
fn space_usage(root: &std::path::Path, raw: u64) -> Result<(), Box<dyn std::error::Error>> {
    let mut by_ext: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_part: BTreeMap<String, u64> = BTreeMap::new();
    for entry in std::fs::read_dir(root)? {
        let p = entry?.path();
        for f in std::fs::read_dir(&p)? {
            let f = f?;
            let name = f.file_name().to_string_lossy().into_owned();
            let ext = name.rsplit('.').next().unwrap_or("").to_string();
            *by_ext.entry(ext).or_default() += f.metadata()?.len();
        }
        let usage = tantivy::Index::open_in_dir(&p)?
            .reader()?
            .searcher()
            .space_usage()?;
        for seg in usage.segments() {
            let parts = [
                ("termdict", seg.termdict()),
                ("postings", seg.postings()),
                ("positions", seg.positions()),
                ("fieldnorms", seg.fieldnorms()),
                ("fast", seg.fast_fields()),
            ];
            for (what, per_field) in parts {
                for f in per_field.fields() {
                    *by_part
                        .entry(format!("{what} {}", f.field_name()))
                        .or_default() += f.total().get_bytes();
                }
            }
            *by_part.entry("store".to_string()).or_default() += seg.store().total().get_bytes();
        }
    }
    let frac = |b: u64| format!("{:.4}", b as f64 / raw as f64);
    let files: Vec<String> = by_ext
        .iter()
        .map(|(k, v)| format!("{k} {}", frac(*v)))
        .collect();
    println!("  files by kind (of raw): {}", files.join(", "));
    for (k, v) in by_part.iter().filter(|(_, v)| **v > 0) {
        println!("  {k}: {:.2} MB ({} of raw)", *v as f64 / 1e6, frac(*v));
    }
    Ok(())
}

fn percentile(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = env_u64("LOOKOUT_BENCH_LOG_MB", 200) * 1_000_000;
    let dir =
        tempfile::tempdir_in(std::env::var("LOOKOUT_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()))?;

    // 1. corpus
    let gen_started = Instant::now();
    let mut rng = Rng(20_260_101);
    let mut batches: Vec<LogBatch> = Vec::new();
    let mut raw = 0u64;
    let mut lines = 0u64;
    let mut cur = Vec::with_capacity(BATCH);
    // times are in order; the line count is known only at the end, so they are spread over
    // the range by an estimate and the range is then set from the last one
    let estimate = target / 300 + 1;
    let start = now_ns() - 7 * 3600 * SEC;
    let step = 6 * 3600 * SEC / estimate;
    let mut sample_trace = None;
    while raw < target {
        let rec = make_record(&mut rng, lines, start + lines * step);
        raw += rec.body.len() as u64;
        lines += 1;
        if lines == estimate / 2 {
            sample_trace = rec.trace_id;
        }
        cur.push(rec);
        if cur.len() == BATCH {
            batches.push(LogBatch {
                records: std::mem::take(&mut cur),
            });
        }
    }
    if !cur.is_empty() {
        batches.push(LogBatch { records: cur });
    }
    let end = start + lines * step;
    let joined: Vec<u8> = batches
        .iter()
        .flat_map(|b| b.records.iter())
        .flat_map(|r| r.body.bytes().chain(std::iter::once(b'\n')))
        .collect();
    let zstd_started = Instant::now();
    let zstd3 = zstd::encode_all(&joined[..], 3)?.len();
    let zstd_secs = zstd_started.elapsed().as_secs_f64();
    drop(joined);
    println!(
        "corpus: {lines} lines, {:.1} MB raw, {:.0} bytes a line, generated in {:.1} s; zstd -3 of the lines: {:.1} MB ({:.3} of raw, {:.0} MB/s)",
        raw as f64 / 1e6,
        raw as f64 / lines as f64,
        gen_started.elapsed().as_secs_f64(),
        zstd3 as f64 / 1e6,
        zstd3 as f64 / raw as f64,
        raw as f64 / 1e6 / zstd_secs,
    );
    // the floor of what the store keeps: every record's fields (ids, times, resource too),
    // compressed as one stream
    let mut enc: Vec<u8> = Vec::new();
    for r in batches.iter().flat_map(|b| b.records.iter()) {
        enc.extend_from_slice(&r.time_unix_nano.to_le_bytes());
        enc.extend_from_slice(&((r.observed_unix_nano - r.time_unix_nano) as u32).to_le_bytes());
        enc.push(r.severity_number);
        enc.extend_from_slice(r.severity_text.as_bytes());
        enc.extend_from_slice(r.service.as_bytes());
        for id in r.trace_id.iter() {
            enc.extend_from_slice(&id.0);
        }
        for id in r.span_id.iter() {
            enc.extend_from_slice(&id.0);
        }
        enc.extend_from_slice(r.body.as_bytes());
        for (k, v) in &r.resource {
            enc.extend_from_slice(k.as_bytes());
            enc.extend_from_slice(v.as_bytes());
        }
    }
    let floor = zstd::encode_all(&enc[..], 3)?.len();
    drop(enc);
    println!(
        "whole records (body, ids, times, resource) as one zstd -3 stream: {:.3} of raw",
        floor as f64 / raw as f64
    );

    // 2. append
    let mut o = LogStoreOptions::new(dir.path());
    o.fsync = FsyncPolicy::Never;
    o.writer_idle_close = Duration::from_secs(2);
    let store = LogStore::open(o)?;
    let bg = store.spawn_background();
    let queue = Arc::new(parking_lot::Mutex::new(batches));
    let cpu0 = cpu_seconds();
    let wall0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..APPENDERS {
        let store = store.clone();
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(batch) = queue.lock().pop() else {
                    break;
                };
                loop {
                    match store.append_logs(batch.clone()).await {
                        Ok(r) => {
                            assert_eq!(r.rejected_records, 0, "{:?}", r.first_rejection);
                            break;
                        }
                        Err(e) if e.kind() == store::ErrorKind::Overloaded => {
                            tokio::time::sleep(Duration::from_millis(5)).await
                        }
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let wall_append = wall0.elapsed();
    let mut last_print = Instant::now();
    while store.stats().records < lines {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if last_print.elapsed() > Duration::from_secs(5) {
            last_print = Instant::now();
            eprintln!("waiting for the indexer: {:?}", store.stats());
        }
    }
    let wall = wall0.elapsed();
    let cpu = cpu_seconds() - cpu0;
    let mb = raw as f64 / 1e6;
    println!(
        "append, fsync never, {APPENDERS} appenders, batches of {BATCH}: {:.2} s to ack, {:.2} s until all searchable, {:.1} CPU-s = {:.1} MB/s wall, {:.1} MB per CPU-second",
        wall_append.as_secs_f64(),
        wall.as_secs_f64(),
        cpu,
        mb / wall.as_secs_f64(),
        mb / cpu.max(1e-9),
    );
    let before = store.stats();

    // 3. size, once idle writers merged and closed
    let merge_started = Instant::now();
    while store.stats().open_writers > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = store.stats();
    println!(
        "index+store: {:.1} MB when all searchable ({:.3} of raw), {:.1} MB after the final merges ({:.3} of raw; zstd -3 of the lines {:.3}), {} partitions, merges took {:.1} s",
        before.disk_bytes as f64 / 1e6,
        before.disk_bytes as f64 / raw as f64,
        after.disk_bytes as f64 / 1e6,
        after.disk_bytes as f64 / raw as f64,
        zstd3 as f64 / raw as f64,
        after.partitions,
        merge_started.elapsed().as_secs_f64(),
    );
    if std::env::var("LOOKOUT_BENCH_LS").is_ok() {
        space_usage(&dir.path().join("partitions"), raw)?;
    }

    // 4. search latency
    let trace = sample_trace.map(|t| t.to_string()).unwrap_or_default();
    let queries = [
        "timeout".to_string(),
        "\"connection refused\"".to_string(),
        format!("trace_id:{trace}"),
        "service:checkout severity>=error".to_string(),
        "登录成功".to_string(),
        "refus*".to_string(),
        "*fused".to_string(),
        // the worst case of verification: both words in an eighth of the lines, the phrase
        // in none, so every candidate is decoded and rejected
        "\"refused connection\"".to_string(),
    ];
    for q in &queries {
        let query = LogQuery::parse(q)?;
        let mut times = Vec::new();
        let mut hits = 0;
        for _ in 0..50 {
            let t = Instant::now();
            hits = store
                .search(&LogSearch {
                    query: query.clone(),
                    start_unix_nano: start,
                    end_unix_nano: end,
                    limit: 100,
                    direction: Direction::Backward,
                })?
                .len();
            times.push(t.elapsed());
        }
        println!(
            "search {q:?}: {hits} hits, p50 {:.2} ms, p99 {:.2} ms",
            percentile(&mut times, 0.5),
            percentile(&mut times, 0.99)
        );
    }
    for (q, runs) in [("severity>=warn", 10), ("\"connection refused\"", 3)] {
        let query = LogQuery::parse(q)?;
        let mut times = Vec::new();
        let mut total = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let buckets = store.histogram(&HistogramRequest {
                query: query.clone(),
                start_unix_nano: start,
                end_unix_nano: end,
                step_nanos: (end - start) / 60,
            })?;
            times.push(t.elapsed());
            total = buckets.iter().map(|b| b.count).sum::<u64>();
        }
        println!(
            "histogram {q:?}, 61 buckets over 6 h: {total} records, p50 {:.1} ms, p99 {:.1} ms",
            percentile(&mut times, 0.5),
            percentile(&mut times, 0.99)
        );
    }
    store.close().await?;
    bg.await?;
    Ok(())
}
