//! `lookout-bench`: feeds Lookout, Prometheus and VictoriaMetrics the same pre-generated,
//! seeded remote-write stream and compares samples ingested per CPU-second, on-disk bytes per
//! sample and peak RSS per active series; plus an in-process decode-only ceiling.
//!
//! Flow of `run`: [`generate`] writes the stream once (reused while fresh) -> [`nullsink`]
//! decodes a slice of it in-process -> for each server, [`servers`] starts it on free ports
//! with an empty data dir, [`send`] replays the stream, [`procstat`] reads CPU and VmHWM, the
//! server persists its own way and is stopped -> [`report`] prints the table and writes JSON.
//!
//! `query` ([`query`]) is the range-query latency benchmark: the [`fleet`] data set (24 h of
//! 100k dashboard-like series) loaded into Lookout and Prometheus, then the same dashboard
//! queries timed on both and their answers compared.
//!
//! `traces` ([`traces`]) measures trace ingest (spans stored per server CPU-second over
//! OTLP/HTTP, against an in-process decode-only ceiling) and trace-by-id lookup latency with
//! 10 million spans stored.
//!
//! `logs` ([`logs`]) measures log ingest and indexing (raw bytes per server CPU-second over
//! OTLP/HTTP), stored size against raw, and term, phrase and trace-id search latency over a
//! seeded corpus of at least 5 GB, beside `zstd -3` and a plain tantivy indexer of the same
//! corpus.
//!
//! `ui` ([`ui`]) measures the web UI with 50 services, 10k traces and 1M log lines stored:
//! server time of each page's server-rendered HTML and time to interactive in headless
//! Chromium.

// tests may unwrap: a panic there is the failure report
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod archive;
mod error;
mod fleet;
mod generate;
mod logs;
mod nullsink;
mod otlp_http;
mod procstat;
mod proto;
mod query;
mod report;
mod rng;
mod rules;
mod send;
mod servers;
mod traces;
mod ui;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::error::{BenchError, Result};
use crate::generate::GenParams;
use crate::servers::{Binaries, ServerKind};

/// The same allocator as the `lookout` binary, so the null sink's decode ceiling is measured
/// under the allocator the server really uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "lookout-bench",
    about = "Benchmarks: ingest (Lookout vs Prometheus vs VictoriaMetrics), range-query latency (Lookout vs Prometheus), trace ingest and lookup (Lookout), log ingest, size and search (Lookout vs zstd and tantivy), rule evaluation and alert latency (Lookout vs Prometheus)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate the remote-write stream files only.
    Generate(GenArgs),
    /// Generate (or reuse) the stream, run the null sink and every server, print the table.
    Run(RunArgs),
    /// Range-query latency: load 24 h of a 100k-series fleet into Lookout and Prometheus (or
    /// reuse it with --reuse-data), time dashboard queries on both, compare the answers.
    Query(query::QueryArgs),
    /// Trace ingest and lookup: 10M realistic spans over OTLP/HTTP into a fresh Lookout,
    /// spans stored per server CPU-second against the decode-only ceiling, then trace-by-id
    /// lookup latency (Lookout's and Jaeger's API) with every answer checked.
    Traces(traces::TracesArgs),
    /// Logs: a seeded corpus of realistic ~300-byte lines (5.5 GB) over OTLP/HTTP into a
    /// fresh Lookout, raw MB per server CPU-second until searchable, stored size against raw,
    /// term/phrase/trace-id search latency with every answer checked; zstd -3 and a plain
    /// tantivy indexer over the same corpus in the same run.
    Logs(logs::LogsArgs),
    /// The metrics archive tier, in process: the query benchmark's fleet appended to a
    /// store, flushed into 2 h blocks, every block moved to Parquet; warm and archive bytes
    /// per sample, the move's throughput, one selection read from each tier.
    Archive(archive::ArchiveArgs),
    /// The logs archive tier, in process: the logs corpus over two hours appended to a log
    /// store, every partition moved to Parquet; warm and archive bytes per raw byte beside
    /// zstd -3, the move's throughput, the same searches over each tier.
    LogsArchive(logs::archive::LogsArchiveArgs),
    /// The traces archive tier, in process: generated traces appended to a trace store,
    /// flushed into segments, every segment moved to Parquet; warm and archive bytes per
    /// span, the move's throughput, the same lookups and searches over each tier.
    TracesArchive(traces::archive::TracesArchiveArgs),
    /// Alerting rules: 1,000 rules at 15 s over 104k series in Lookout and Prometheus
    /// (their own last-evaluation durations, median of rounds), then Lookout's end-to-end
    /// latency from the remote write of a triggering sample to a fake DingTalk robot.
    Rules(rules::RulesArgs),
    /// Web UI: 50 services, 10k traces and 1M log lines loaded, then per page the server
    /// time of its HTML (median/p99 of 20) and the time to interactive in headless Chromium.
    Ui(ui::UiArgs),
}

#[derive(Args, Clone)]
struct GenArgs {
    /// Active series.
    #[arg(long, default_value_t = 20_000)]
    series: usize,
    /// Scrape interval of the generated data.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Time span of the data; over 3h so Prometheus compacts a block.
    #[arg(long, default_value = "3h10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Concurrent connections (the stream is sharded by series, one connection per shard).
    #[arg(long, default_value_t = 4)]
    shards: usize,
    /// One-sample TimeSeries entries per request.
    #[arg(long, default_value_t = 2000)]
    samples_per_request: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where the stream files go.
    #[arg(long, default_value = "target/bench-stream")]
    stream_dir: PathBuf,
}

impl GenArgs {
    fn params(&self) -> GenParams {
        GenParams {
            series: self.series,
            interval_ms: self.interval.as_millis() as i64,
            duration_ms: self.duration.as_millis() as i64,
            shards: self.shards,
            samples_per_request: self.samples_per_request,
            seed: self.seed,
        }
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    gen: GenArgs,
    /// Servers to run, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "prometheus,victoria-metrics,lookout"
    )]
    servers: Vec<ServerKind>,
    /// Full runs per server (the median is reported).
    #[arg(long, default_value_t = 1)]
    repeats: usize,
    /// Null-sink repeats (the median is reported).
    #[arg(long, default_value_t = 5)]
    null_sink_repeats: usize,
    /// Samples decoded per null-sink repeat.
    #[arg(long, default_value_t = 2_000_000)]
    null_sink_samples: u64,
    #[arg(long, default_value = "/usr/bin/prometheus")]
    prometheus_bin: PathBuf,
    #[arg(long, default_value = "/usr/bin/victoria-metrics")]
    victoria_metrics_bin: PathBuf,
    #[arg(long, default_value = "target/release/lookout")]
    lookout_bin: PathBuf,
    /// Config file for `lookout serve --config`.
    #[arg(long)]
    lookout_config: Option<PathBuf>,
    /// Scratch directory for the servers' data dirs and logs.
    #[arg(long, default_value = "target/bench-work")]
    work_dir: PathBuf,
    /// Keep the servers' data dirs after the run (for inspection).
    #[arg(long)]
    keep_data: bool,
    #[arg(long, default_value = "bench/results/latest.json")]
    results: PathBuf,
}

/// Wall-clock Unix milliseconds (every benchmark stamps its data and results with it).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Generate(g) => generate::generate(&g.stream_dir, &g.params(), now_ms()).map(|m| {
            println!(
                "generated {} samples of {} series in {} requests ({} bytes compressed) in {:.1}s",
                m.total_samples(),
                m.params.series,
                m.total_requests(),
                m.shards.iter().map(|s| s.compressed_bytes).sum::<u64>(),
                m.generate_secs
            );
        }),
        Cmd::Run(r) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(run(r)),
            Err(e) => Err(BenchError::io("tokio runtime", e)),
        },
        Cmd::Query(q) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(query::run(q)),
            Err(e) => Err(BenchError::io("tokio runtime", e)),
        },
        Cmd::Traces(t) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(traces::run(t)),
            Err(e) => Err(BenchError::io("tokio runtime", e)),
        },
        Cmd::Logs(l) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(logs::run(l)),
            Err(e) => Err(BenchError::io("tokio runtime", e)),
        },
        Cmd::Rules(r) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(rules::run(r)),
            Err(e) => Err(BenchError::io("tokio runtime", e)),
        },
        Cmd::Archive(a) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(archive::run(a)),
            Err(e) => Err(BenchError::io("tokio runtime", e)),
        },
        Cmd::LogsArchive(a) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(logs::archive::run(a)),
            Err(e) => Err(BenchError::io("tokio runtime", e)),
        },
        Cmd::TracesArchive(a) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(traces::archive::run(a)),
            Err(e) => Err(BenchError::io("tokio runtime", e)),
        },
        Cmd::Ui(u) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(ui::run(u)),
            Err(e) => Err(BenchError::io("tokio runtime", e)),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "benchmark failed");
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn load_streams(
    dir: &std::path::Path,
    m: &generate::Manifest,
) -> Result<Vec<Arc<send::ShardStream>>> {
    m.shards
        .iter()
        .map(|s| {
            let requests = generate::read_stream(&dir.join(&s.file))?;
            if requests.len() as u64 != s.requests {
                return Err(BenchError::CorruptStream {
                    path: dir.join(&s.file),
                    reason: format!("{} requests, manifest says {}", requests.len(), s.requests),
                });
            }
            Ok(Arc::new(send::ShardStream {
                requests,
                samples_per_request: m.params.samples_per_request as u64,
                samples: s.samples,
            }))
        })
        .collect()
}

fn run_null_sink(
    streams: &[Arc<send::ShardStream>],
    args: &RunArgs,
) -> Result<report::NullSinkSummary> {
    // a prefix of every shard, so the slice has the same mix of series as the whole stream
    let mut subset = Vec::new();
    let per_shard = args.null_sink_samples / streams.len().max(1) as u64;
    for s in streams {
        let n = (per_shard / s.samples_per_request.max(1)).max(1) as usize;
        subset.extend(s.requests.iter().take(n).cloned());
    }
    let mut runs = Vec::new();
    for i in 0..args.null_sink_repeats.max(1) {
        let r = nullsink::run(&subset, 1)?;
        tracing::info!(
            repeat = i,
            samples = r.samples,
            cpu_secs = r.cpu_secs,
            rate = r.samples_per_cpu_sec,
            "null sink"
        );
        runs.push(r);
    }
    Ok(report::NullSinkSummary::new(runs))
}

async fn run_server(
    kind: ServerKind,
    args: &RunArgs,
    bins: &Binaries,
    streams: &[Arc<send::ShardStream>],
    manifest: &generate::Manifest,
    client: &reqwest::Client,
) -> Result<report::ServerRun> {
    let mut h = servers::ServerHandle::start(kind, &args.work_dir, bins)?;
    h.wait_ready(client, Duration::from_secs(120)).await?;
    let idle_rss = h.peak_rss()?;
    let cpu0 = h.cpu_secs()?;
    let sent = send::send_all(&h.write_url(), streams).await?;
    let cpu1 = h.cpu_secs()?;
    tracing::info!(
        server = kind.name(),
        ok = sent.samples_ok,
        rejected = sent.samples_rejected,
        secs = sent.elapsed_secs,
        cpu = cpu1 - cpu0,
        "stream sent"
    );
    let reported = servers::server_reported_samples(&h, client).await;
    let prometheus_block = match kind {
        ServerKind::Prometheus => {
            Some(servers::persist_prometheus(&h, Duration::from_secs(300)).await?)
        }
        ServerKind::VictoriaMetrics => {
            servers::flush_victoria(&h, client).await?;
            None
        }
        ServerKind::Lookout => None,
    };
    let peak_rss = h.peak_rss()?;
    let cpu_end = h.stop(Duration::from_secs(300)).await?;
    let persisted = match (kind, prometheus_block) {
        (ServerKind::Prometheus, Some(mut p)) => {
            p.data_dir_bytes = procstat::dir_bytes(&h.data_dir);
            p
        }
        (ServerKind::VictoriaMetrics, _) => {
            servers::persisted_victoria(&h.data_dir, sent.samples_ok)
        }
        _ => servers::persisted_lookout(&h.data_dir, sent.samples_ok),
    };
    let run = report::ServerRun::new(report::ServerRunInput {
        server: kind.name().to_string(),
        version: h.version.clone(),
        series: manifest.params.series as u64,
        sent,
        server_reported_samples: reported,
        ingest_cpu_secs: cpu1 - cpu0,
        total_cpu_secs: cpu_end - cpu0,
        idle_peak_rss_bytes: idle_rss,
        peak_rss_bytes: peak_rss,
        persisted,
    });
    if !args.keep_data {
        let dir = args.work_dir.join(kind.name()).join("data");
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove server data dir");
        }
    }
    Ok(run)
}

async fn run(args: RunArgs) -> Result<()> {
    let started_ms = now_ms();
    let params = args.gen.params();
    let stream_dir = args.gen.stream_dir.clone();
    let manifest =
        tokio::task::spawn_blocking(move || generate::generate(&stream_dir, &params, now_ms()))
            .await
            .map_err(|e| BenchError::Decode(format!("generator task failed: {e}")))??;
    tracing::info!(
        samples = manifest.total_samples(),
        requests = manifest.total_requests(),
        secs = manifest.generate_secs,
        "stream ready"
    );
    let streams = load_streams(&args.gen.stream_dir, &manifest)?;

    let null_sink = run_null_sink(&streams, &args)?;

    let bins = Binaries {
        prometheus: args.prometheus_bin.clone(),
        victoria_metrics: args.victoria_metrics_bin.clone(),
        lookout: args.lookout_bin.clone(),
        lookout_config: args.lookout_config.clone(),
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| BenchError::Http {
            url: "-".into(),
            reason: format!("building client: {e}"),
        })?;
    let mut results = Vec::new();
    for kind in &args.servers {
        let mut runs = Vec::new();
        let mut failure = None;
        for i in 0..args.repeats.max(1) {
            tracing::info!(server = kind.name(), repeat = i, "running server");
            match run_server(*kind, &args, &bins, &streams, &manifest, &client).await {
                Ok(r) => runs.push(r),
                Err(e) => {
                    tracing::error!(server = kind.name(), error = %e, "server run failed");
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        results.push(report::ServerSummary::new(kind.name(), runs, failure));
    }

    let out = report::Results::new(manifest, null_sink, results, started_ms, now_ms());
    println!("{}", out.table());
    if let Some(parent) = args.results.parent() {
        std::fs::create_dir_all(parent).map_err(|e| BenchError::io(parent, e))?;
    }
    std::fs::write(&args.results, serde_json::to_vec_pretty(&out)?)
        .map_err(|e| BenchError::io(&args.results, e))?;
    println!("results written to {}", args.results.display());
    Ok(())
}
