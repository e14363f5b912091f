//! `lookout-bench traces`: trace ingest (spans stored per CPU-second of the server) and
//! trace-by-id lookup latency, against the real `lookout serve`.
//!
//! Flow: [`generate`] makes the first chunk of seeded OTLP requests (protobuf, encoded before
//! anything is timed) -> [`ceiling`] decodes and converts a slice of it in-process (the
//! ceiling) -> Lookout starts on free ports with an empty data dir and its defaults (fsync on
//! every batch) -> chunk by chunk, [`ingest`] posts the requests to `/v1/traces` over several
//! connections while the server's CPU is read from `/proc` around each chunk, and the next
//! chunk is generated while the server idles -> [`lookup`] times trace-by-id lookups on both
//! APIs and checks every answer -> SIGTERM (the head is flushed) and the data dir is measured
//! -> [`report`] prints the table and writes JSON.

pub mod archive;
mod ceiling;
mod generate;
mod ingest;
mod lookup;
mod report;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::error::{BenchError, Result};
use crate::now_ms;
use crate::procstat;
use crate::servers::{self, Binaries, ServerHandle, ServerKind};
use generate::{Generator, Request};
use report::{ChunkRun, LoadSummary, StoreSummary, TracesResults};

#[derive(Args, Clone, Debug)]
pub struct TracesArgs {
    /// Check the harness in about a minute: 300,000 spans in chunks of 100,000, 300 lookups
    /// (its own work dir and results file).
    #[arg(long)]
    quick: bool,
    /// Spans to store before the lookups.
    #[arg(long, default_value_t = 10_000_000)]
    spans: u64,
    /// Spans generated (and encoded) at a time, then sent while the server's CPU is measured.
    #[arg(long, default_value_t = 1_000_000)]
    chunk_spans: u64,
    /// Spans per request (the SDK batch exporter's default).
    #[arg(long, default_value_t = generate::DEFAULT_BATCH_SPANS)]
    batch_spans: usize,
    /// Concurrent OTLP/HTTP connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Spans decoded per ceiling repeat (a prefix of the first chunk).
    #[arg(long, default_value_t = 500_000)]
    ceiling_spans: u64,
    #[arg(long, default_value_t = 5)]
    ceiling_repeats: usize,
    /// Trace-by-id lookups on `/api/v1/traces/{id}`.
    #[arg(long, default_value_t = 2_000)]
    lookups: usize,
    /// Of those ids, how many are also looked up on Jaeger's `/api/traces/{id}`.
    #[arg(long, default_value_t = 500)]
    jaeger_lookups: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value = "target/release/lookout")]
    lookout_bin: PathBuf,
    /// Config file for `lookout serve --config` (default: none, Lookout's defaults).
    #[arg(long)]
    lookout_config: Option<PathBuf>,
    /// Scratch directory for the server's data dir and log.
    #[arg(long, default_value = "target/bench-traces")]
    work_dir: PathBuf,
    /// Keep the data dir after the run.
    #[arg(long)]
    keep_data: bool,
    #[arg(long, default_value = "bench/results/traces-latest.json")]
    results: PathBuf,
}

impl TracesArgs {
    fn apply_quick(&mut self) {
        if !self.quick {
            return;
        }
        self.spans = 300_000;
        self.chunk_spans = 100_000;
        self.ceiling_spans = 100_000;
        self.lookups = 300;
        self.jaeger_lookups = 100;
        if self.work_dir == Path::new("target/bench-traces") {
            self.work_dir = "target/bench-traces-quick".into();
        }
        if self.results == Path::new("bench/results/traces-latest.json") {
            self.results = "target/bench-traces-quick/results.json".into();
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |name: &'static str, value: String, reason: &str| {
            Err(BenchError::BadParam {
                name,
                value,
                reason: reason.into(),
            })
        };
        if self.spans == 0 || self.chunk_spans == 0 {
            return bad(
                "spans/chunk-spans",
                format!("{}/{}", self.spans, self.chunk_spans),
                "must be positive",
            );
        }
        if self.batch_spans == 0 || self.batch_spans > 20_000 {
            return bad(
                "batch-spans",
                self.batch_spans.to_string(),
                "must be 1..=20000 (Lookout's default max_spans_per_request)",
            );
        }
        if self.connections == 0 {
            return bad("connections", "0".into(), "must be positive");
        }
        Ok(())
    }
}

/// Gap between trace starts: about what the server's rate gives in real time.
const TRACE_GAP_NANOS: u64 = 200_000;
/// Mean spans per trace (5..=30 uniform), to date the first trace.
const MEAN_SPANS_PER_TRACE: u64 = 17;

/// The prefix of `requests` holding at least `spans` spans.
fn prefix(requests: &[Request], spans: u64) -> &[Request] {
    let mut sum = 0u64;
    for (i, r) in requests.iter().enumerate() {
        sum += u64::from(r.spans);
        if sum >= spans {
            return &requests[..=i];
        }
    }
    requests
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Runs the whole benchmark; see the module docs.
pub async fn run(mut args: TracesArgs) -> Result<()> {
    args.apply_quick();
    args.check()?;
    let started_ms = now_ms();
    let load_avg_start = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();

    // spans dated so the newest end about now: well inside the 7-day retention
    let span_of_time = args.spans / MEAN_SPANS_PER_TRACE * TRACE_GAP_NANOS;
    let start_ns = (now_ms().max(0) as u64) * 1_000_000 - span_of_time - 60_000_000_000;
    let mut gen = Generator::new(args.seed, args.batch_spans, start_ns, TRACE_GAP_NANOS);
    let first = gen.chunk(args.chunk_spans.min(args.spans));
    tracing::info!(
        requests = first.len(),
        spans = gen.stats.spans,
        bytes_per_span = gen.stats.bytes_per_span(),
        secs = gen.stats.generate_secs,
        "first chunk generated"
    );

    // the ceiling, before the server exists, so nothing competes with it
    let slice = prefix(&first, args.ceiling_spans);
    let mut ceiling_runs = Vec::new();
    for i in 0..args.ceiling_repeats.max(1) {
        let r = ceiling::run(slice)?;
        tracing::info!(
            repeat = i,
            spans = r.spans,
            cpu_secs = r.cpu_secs,
            rate = r.spans_per_cpu_sec,
            "decode + convert ceiling"
        );
        ceiling_runs.push(r);
    }
    let ceiling = report::CeilingSummary {
        median_spans_per_cpu_sec: median(
            ceiling_runs.iter().map(|r| r.spans_per_cpu_sec).collect(),
        ),
        runs: ceiling_runs,
    };

    let bins = Binaries {
        prometheus: PathBuf::new(),
        victoria_metrics: PathBuf::new(),
        lookout: args.lookout_bin.clone(),
        lookout_config: args.lookout_config.clone(),
    };
    let mut h = ServerHandle::start(ServerKind::Lookout, &args.work_dir, &bins)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| BenchError::Http {
            url: "-".into(),
            reason: format!("building client: {e}"),
        })?;
    h.wait_ready(&http, Duration::from_secs(120)).await?;
    let otlp_url = h.otlp_http_url().ok_or_else(|| BenchError::Server {
        server: "lookout".into(),
        reason: "started without an OTLP/HTTP address".into(),
    })? + "/v1/traces";
    let idle_rss = h.peak_rss()?;
    let client = ingest::client(args.connections)?;

    let result = load_and_look_up(&args, &mut gen, first, &mut h, &client, &otlp_url, &http).await;
    let (load, store_live, lookups) = match result {
        Ok(v) => v,
        Err(e) => {
            // leave the log for the post-mortem; the handle's drop kills the server
            tracing::error!(log = %h.log.display(), "trace benchmark failed");
            return Err(e);
        }
    };
    let peak_rss = h.peak_rss()?;
    let cpu_before_stop = h.cpu_secs()?;
    let cpu_end = h.stop(Duration::from_secs(300)).await?;
    let store = StoreSummary::measure(&h.data_dir, store_live, load.spans_ok);
    let results = TracesResults::new(report::Inputs {
        started_ms,
        finished_ms: now_ms(),
        load_avg_start,
        args: &args,
        version: h.version.clone(),
        gen: gen.stats.clone(),
        ceiling,
        load,
        shutdown_cpu_secs: cpu_end - cpu_before_stop,
        idle_rss_bytes: idle_rss,
        peak_rss_bytes: peak_rss,
        store,
        lookups,
    });
    if !args.keep_data {
        if let Err(e) = std::fs::remove_dir_all(&h.data_dir) {
            tracing::warn!(dir = %h.data_dir.display(), error = %e, "could not remove the data dir");
        }
    }
    println!("{}", results.table());
    if let Some(parent) = args.results.parent() {
        std::fs::create_dir_all(parent).map_err(|e| BenchError::io(parent, e))?;
    }
    std::fs::write(&args.results, serde_json::to_vec_pretty(&results)?)
        .map_err(|e| BenchError::io(&args.results, e))?;
    println!("results written to {}", args.results.display());
    if !results.problems.is_empty() {
        return Err(BenchError::Server {
            server: "lookout".into(),
            reason: format!("the run is not clean: {}", results.problems.join("; ")),
        });
    }
    Ok(())
}

/// A Lookout gauge or counter from `/metrics` (summed over its label sets).
async fn lookout_metric(h: &ServerHandle, http: &reqwest::Client, name: &str) -> Option<f64> {
    let text = http
        .get(format!("{}/metrics", h.base_url()))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    servers::metric_sum(&text, name, "")
}

async fn load_and_look_up(
    args: &TracesArgs,
    gen: &mut Generator,
    first: Vec<Request>,
    h: &mut ServerHandle,
    client: &reqwest::Client,
    otlp_url: &str,
    http: &reqwest::Client,
) -> Result<(LoadSummary, report::StoreLive, Vec<lookup::LookupSummary>)> {
    let self_pid = std::process::id();
    let mut chunks = Vec::new();
    let mut request_spans: Vec<u32> = Vec::new();
    let mut total = ingest::SendStats::default();
    let mut latencies = Vec::new();
    let mut next = Some(first);
    let mut generated = gen.stats.spans;
    let load_cpu0 = h.cpu_secs()?;
    let load_wall0 = std::time::Instant::now();
    while let Some(mut requests) = next.take() {
        let last = generated >= args.spans;
        if last {
            requests.extend(gen.finish());
        }
        request_spans.extend(requests.iter().map(|r| r.spans));
        let spans: u64 = requests.iter().map(|r| u64::from(r.spans)).sum();
        let requests = Arc::new(requests);
        let machine0 = procstat::machine_busy_secs()?;
        let own0 = procstat::process_cpu_secs(self_pid)?;
        let cpu0 = h.cpu_secs()?;
        let mut st = ingest::send(client, otlp_url, requests.clone(), args.connections).await?;
        let cpu = h.cpu_secs()? - cpu0;
        let own = procstat::process_cpu_secs(self_pid)? - own0;
        let machine = procstat::machine_busy_secs()? - machine0;
        drop(requests);
        let run = ChunkRun::new(chunks.len(), spans, &st, cpu, own, machine);
        latencies.append(&mut st.latencies_ms);
        tracing::info!(
            chunk = run.index,
            spans_ok = st.spans_ok,
            rejected = st.spans_rejected,
            retries = st.retries,
            cpu_secs = cpu,
            spans_per_cpu_sec = run.spans_per_cpu_sec,
            spans_per_sec = run.spans_per_wall_sec,
            other_cpu_secs = run.other_cpu_secs,
            "chunk sent"
        );
        if !st.clean() {
            tracing::warn!(first_error = ?st.first_error, "chunk not accepted cleanly");
        }
        total.merge(st);
        chunks.push(run);
        if !last {
            // generated while the server idles; its background work in this gap still counts
            // in the load's total CPU
            let want = args.chunk_spans.min(args.spans - generated);
            next = Some(gen.chunk(want));
            generated = gen.stats.spans;
        }
    }
    let load_cpu = h.cpu_secs()? - load_cpu0;
    let load_wall = load_wall0.elapsed().as_secs_f64();
    let appended = lookout_metric(h, http, "lookout_traces_spans_appended_total").await;
    let load = LoadSummary::new(report::LoadInputs {
        chunks,
        send: total,
        request_latencies_ms: &latencies,
        cpu_secs: load_cpu,
        wall_secs: load_wall,
        generate_secs: gen.stats.generate_secs,
        server_appended_spans: appended,
    });

    // the segment gauges change only when a flush or retention finishes (the head gauges
    // only then too, so they are stale after appends): wait until a flush the last appends
    // started has finished, then the head holds every acknowledged span not in a segment
    let mut segment_spans = lookout_metric(h, http, "lookout_traces_segment_spans").await;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = lookout_metric(h, http, "lookout_traces_segment_spans").await;
        let settled = now == segment_spans;
        segment_spans = now;
        if settled {
            break;
        }
    }
    let in_segments = segment_spans.unwrap_or(0.0).max(0.0) as u64;
    let head_spans = load.spans_ok.saturating_sub(in_segments);
    let live = report::StoreLive {
        head_spans,
        segments: lookout_metric(h, http, "lookout_traces_segments").await,
        segment_spans,
        segment_bytes: lookout_metric(h, http, "lookout_traces_segment_bytes").await,
        data_dir_bytes: procstat::dir_bytes(&h.data_dir),
    };
    let boundary = lookup::head_boundary(&request_spans, head_spans);
    let targets = lookup::pick_targets(&gen.records, boundary, args.lookups, args.seed ^ 0x10c4);
    tracing::info!(
        head_spans,
        boundary,
        requests = request_spans.len(),
        targets = targets.len(),
        "looking traces up"
    );
    let base = h.base_url();
    let mut lookups = vec![lookup::run(lookup::Api::Lookout, &base, &targets).await?];
    let jaeger = &targets[..args.jaeger_lookups.min(targets.len())];
    if !jaeger.is_empty() {
        lookups.push(lookup::run(lookup::Api::Jaeger, &base, jaeger).await?);
    }
    for l in &lookups {
        tracing::info!(
            api = l.api,
            p50_ms = l.all.p50_ms,
            p99_ms = l.all.p99_ms,
            max_ms = l.all.max_ms,
            failures = l.failures,
            "lookups done"
        );
    }
    Ok((load, live, lookups))
}
