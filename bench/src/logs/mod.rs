//! `lookout-bench logs`: log ingest and indexing throughput (raw bytes per CPU-second of the
//! server), stored size against raw, and search latency, against the real `lookout serve`,
//! with two peers over the same corpus in the same run: `zstd -3` (the size floor) and a plain
//! tantivy indexer (the throughput reference).
//!
//! Flow:
//! 1. [`corpus`] plans the time step from a sample, so the corpus covers `--hours`;
//! 2. pass 1, the peers: chunk by chunk the corpus is generated (counting what the searches
//!    need in its tally), streamed through [`floor`] on its own thread and indexed by
//!    [`peer`]; CPU of each from `/proc`;
//! 3. Lookout starts on free ports with an empty data dir and its defaults (fsync on every
//!    batch); pass 2 regenerates the same corpus chunk by chunk, [`otlp`] encodes each chunk
//!    as requests of about 1,000 records and [`ingest`] posts them to `/v1/logs` over several
//!    connections while the server's CPU is read around each chunk;
//! 4. after the last acknowledgement, the histogram over all time is polled until it counts
//!    every acknowledged record (that CPU counts), then the server is left to finish its
//!    background work; the size of `<data>/logs/` is read at both points;
//! 5. [`search`] times term, phrase and trace-id queries and checks every answer;
//! 6. SIGTERM, the data dir is measured again, [`report`] prints the table and writes JSON;
//!    the data is deleted unless `--keep`.
//!
//! [`threads`] attributes the server's CPU to its threads for "where the time goes".

pub mod archive;
mod corpus;
mod floor;
mod ingest;
mod otlp;
mod peer;
mod report;
mod search;
mod threads;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use crate::error::{BenchError, Result};
use crate::procstat;
use crate::servers::{Binaries, ServerHandle, ServerKind};
use corpus::{Chunk, CorpusStats, Generator, Tally};
use report::{ChunkRun, DirSizes, LoadSummary, LogsResults, Peers};

#[derive(Args, Clone, Debug)]
pub struct LogsArgs {
    /// Check the harness in a minute or two: 200 MB raw over 3 hours in 40 MB chunks (its
    /// own work dir and results file).
    #[arg(long)]
    quick: bool,
    /// Raw corpus size, MB (10^6 bytes); the issue asks for at least 5 GB.
    #[arg(long, default_value_t = 5_500)]
    raw_mb: u64,
    /// Generated (and encoded) at a time, then sent while the server's CPU is measured, MB.
    #[arg(long, default_value_t = 128)]
    chunk_mb: u64,
    /// Hours of record time the corpus covers (Lookout partitions by hour).
    #[arg(long, default_value_t = 6)]
    hours: u64,
    /// Records per OTLP request.
    #[arg(long, default_value_t = otlp::DEFAULT_BATCH)]
    batch: usize,
    /// Concurrent OTLP/HTTP connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Timed queries of each kind (common term, rare term, phrase, trace id).
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// `limit` of every query.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Distinct queries of each kind whose total is checked against the histogram.
    #[arg(long, default_value_t = 10)]
    total_checks: usize,
    /// Memory budget of the tantivy peer's writer, MB.
    #[arg(long, default_value_t = 256)]
    peer_memory_mb: usize,
    /// Skip the zstd floor and the tantivy peer (the corpus is still generated once for
    /// the tally the searches need).
    #[arg(long)]
    no_peers: bool,
    /// Seconds to wait for the last acknowledged record to become searchable.
    #[arg(long, default_value_t = 600)]
    searchable_timeout: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value = "target/release/lookout")]
    lookout_bin: PathBuf,
    /// Config file for `lookout serve --config` (default: none, Lookout's defaults).
    #[arg(long)]
    lookout_config: Option<PathBuf>,
    /// Scratch directory for the server's data dir and log and the peer's index.
    #[arg(long, default_value = "target/bench-logs")]
    work_dir: PathBuf,
    /// Keep the server's data dir and the peer's index after the run.
    #[arg(long)]
    keep: bool,
    #[arg(long, default_value = "bench/results/logs-latest.json")]
    results: PathBuf,
}

const MB: u64 = 1_000_000;

impl LogsArgs {
    fn apply_quick(&mut self) {
        if !self.quick {
            return;
        }
        self.raw_mb = 200;
        self.chunk_mb = 40;
        self.hours = 3;
        if self.work_dir == Path::new("target/bench-logs") {
            self.work_dir = "target/bench-logs-quick".into();
        }
        if self.results == Path::new("bench/results/logs-latest.json") {
            self.results = "target/bench-logs-quick/results.json".into();
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
        if self.raw_mb == 0 || self.chunk_mb == 0 || self.chunk_mb > 2_000 {
            return bad(
                "raw-mb/chunk-mb",
                format!("{}/{}", self.raw_mb, self.chunk_mb),
                "must be positive, chunks at most 2000 MB",
            );
        }
        if self.hours == 0 || self.hours > 24 * 6 {
            return bad(
                "hours",
                self.hours.to_string(),
                "must be 1..=144 (inside Lookout's 7-day retention)",
            );
        }
        if self.batch == 0 || self.batch > 50_000 {
            return bad("batch", self.batch.to_string(), "must be 1..=50000");
        }
        if self.connections == 0 {
            return bad("connections", "0".into(), "must be positive");
        }
        if self.limit == 0 || self.limit > 5_000 {
            return bad(
                "limit",
                self.limit.to_string(),
                "must be 1..=5000 (the API's maximum)",
            );
        }
        if self.peer_memory_mb < 16 {
            return bad(
                "peer-memory-mb",
                self.peer_memory_mb.to_string(),
                "tantivy needs at least 15 MB per writer thread",
            );
        }
        Ok(())
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Where the corpus starts and how far apart its lines are.
#[derive(Clone, Copy, Debug)]
struct Plan {
    start_ns: u64,
    step_ns: u64,
}

fn plan(args: &LogsArgs) -> Plan {
    let mean = corpus::sample_mean_line_bytes(args.seed, 20_000).max(50.0);
    let lines = (args.raw_mb * MB) as f64 / mean;
    let span_ns = args.hours * 3600 * 1_000_000_000;
    // the last line lands about 10 minutes before now: inside retention, never in the future
    let start_ns = now_ns() - span_ns - 600 * 1_000_000_000;
    Plan {
        start_ns,
        step_ns: ((span_ns as f64 / lines) as u64).max(1),
    }
}

/// What the first pass produced.
struct FirstPass {
    tally: Tally,
    stats: CorpusStats,
    peers: Option<Peers>,
}

/// Pass 1: generate the corpus once for the tally, through the zstd floor and the tantivy
/// peer unless `--no-peers`. Runs on a blocking thread.
fn first_pass(args: &LogsArgs, p: Plan) -> Result<FirstPass> {
    let mut gen = Generator::new(args.seed, p.start_ns, p.step_ns, true);
    let target = args.raw_mb * MB;
    let chunk = args.chunk_mb * MB;
    let mut peers = if args.no_peers {
        None
    } else {
        let dir = args.work_dir.join("tantivy-peer");
        Some((
            floor::FloorThread::start()?,
            peer::Peer::create(&dir, args.peer_memory_mb * 1024 * 1024)?,
        ))
    };
    let self_pid = std::process::id();
    let cpu0 = procstat::process_cpu_secs(self_pid)?;
    let wall0 = Instant::now();
    let mut gen_cpu = 0.0;
    let mut done = false;
    while !done {
        let g0 = procstat::thread_cpu_secs()?;
        let c = if gen.stats.raw_bytes >= target {
            done = true;
            gen.finish()
        } else {
            gen.chunk(chunk.min(target - gen.stats.raw_bytes))
        };
        gen_cpu += procstat::thread_cpu_secs()? - g0;
        if let Some((f, pr)) = peers.as_mut() {
            let c = Arc::new(c);
            f.feed(c.clone())?;
            pr.add_chunk(&c)?;
        }
        tracing::info!(
            raw_mb = gen.stats.raw_bytes / MB,
            lines = gen.stats.lines,
            "pass 1 (tally{}): chunk done",
            if args.no_peers { "" } else { ", zstd, tantivy" }
        );
    }
    let tally = gen
        .tally
        .take()
        .ok_or_else(|| BenchError::Decode("no tally kept".into()))?;
    let stats = gen.stats.clone();
    let peers = match peers {
        None => None,
        Some((f, pr)) => {
            let floor = f.finish()?;
            // words the default tokenizer splits as Lookout's does
            let expect: Vec<(String, u64)> = ["timeout", "declined", "get", "info", "deadlock"]
                .iter()
                .filter_map(|w| {
                    corpus::COMMON_WORDS
                        .iter()
                        .position(|x| x == w)
                        .map(|i| (w.to_string(), tally.common_word_lines(i)))
                })
                .collect();
            let mut peer = pr.finish(&expect)?;
            let cpu = procstat::process_cpu_secs(self_pid)? - cpu0;
            peer.cpu_secs = (cpu - gen_cpu - floor.cpu_secs).max(0.0);
            peer.mb_per_cpu_sec = peer.raw_bytes as f64 / 1e6 / peer.cpu_secs.max(0.01);
            tracing::info!(
                zstd_ratio = floor.ratio,
                zstd_mb_per_cpu_sec = floor.mb_per_cpu_sec,
                tantivy_mb_per_cpu_sec = peer.mb_per_cpu_sec,
                tantivy_ratio = peer.ratio,
                generate_cpu_secs = gen_cpu,
                wall_secs = wall0.elapsed().as_secs_f64(),
                "peers done"
            );
            if !args.keep {
                let dir = args.work_dir.join("tantivy-peer");
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove the peer index");
                }
            }
            Some(Peers {
                zstd: floor,
                tantivy: peer,
                generate_cpu_secs: gen_cpu,
            })
        }
    };
    Ok(FirstPass {
        tally,
        stats,
        peers,
    })
}

/// Runs the whole benchmark; see the module docs.
pub async fn run(mut args: LogsArgs) -> Result<()> {
    args.apply_quick();
    args.check()?;
    let started_ms = (now_ns() / 1_000_000) as i64;
    let git_commit = report::git_commit();
    let load_avg_start = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    std::fs::create_dir_all(&args.work_dir).map_err(|e| BenchError::io(&args.work_dir, e))?;
    // the shared target dir may be rebuilt while the corpus is generated: the run uses a
    // copy of the binary taken now, so the server is the build the run started with
    let bin = args.work_dir.join("lookout-under-test");
    std::fs::copy(&args.lookout_bin, &bin).map_err(|e| BenchError::io(&args.lookout_bin, e))?;
    let p = plan(&args);
    tracing::info!(
        raw_mb = args.raw_mb,
        hours = args.hours,
        step_ns = p.step_ns,
        "corpus planned"
    );

    let a = args.clone();
    let first = tokio::task::spawn_blocking(move || first_pass(&a, p))
        .await
        .map_err(|e| BenchError::Decode(format!("first pass task failed: {e}")))??;
    let cases = search::cases(&first.tally, args.queries, args.seed ^ 0x5ea4c4);
    tracing::info!(
        lines = first.stats.lines,
        raw_bytes = first.stats.raw_bytes,
        cases = cases.len(),
        "corpus tallied"
    );

    let bins = Binaries {
        prometheus: PathBuf::new(),
        victoria_metrics: PathBuf::new(),
        lookout: bin.clone(),
        lookout_config: args.lookout_config.clone(),
    };
    let mut h = ServerHandle::start(ServerKind::Lookout, &args.work_dir, &bins)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| BenchError::Http {
            url: "-".into(),
            reason: format!("building client: {e}"),
        })?;
    h.wait_ready(&http, Duration::from_secs(120)).await?;
    let otlp_url = h.otlp_http_url().ok_or_else(|| BenchError::Server {
        server: "lookout".into(),
        reason: "started without an OTLP/HTTP address".into(),
    })? + "/v1/logs";
    let idle_rss = h.peak_rss()?;

    let outcome = load_and_search(&args, p, &first, &cases, &mut h, &otlp_url, &http).await;
    let (load, sizes, searches, metrics) = match outcome {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(log = %h.log.display(), "log benchmark failed");
            return Err(e);
        }
    };
    let peak_rss = h.peak_rss()?;
    let cpu_before_stop = h.cpu_secs()?;
    let cpu_end = h.stop(Duration::from_secs(300)).await?;
    let after_shutdown = DirSizes::measure(&h.data_dir, load.send.raw_bytes_ok);
    let results = LogsResults::new(report::Inputs {
        started_ms,
        finished_ms: (now_ns() / 1_000_000) as i64,
        load_avg_start,
        args: &args,
        version: h.version.clone(),
        corpus: first.stats.clone(),
        peers: first.peers,
        load,
        sizes,
        after_shutdown,
        shutdown_cpu_secs: cpu_end - cpu_before_stop,
        idle_rss_bytes: idle_rss,
        peak_rss_bytes: peak_rss,
        search: searches,
        server_metrics: metrics,
        git_commit,
    });
    let _ = std::fs::remove_file(&bin);
    if !args.keep {
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

/// Lookout's own `lookout_logs_*` series from `/metrics` (comment lines left out).
async fn logs_metrics(h: &ServerHandle, http: &reqwest::Client) -> Vec<String> {
    let Ok(resp) = http.get(format!("{}/metrics", h.base_url())).send().await else {
        return Vec::new();
    };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("lookout_logs_") || l.starts_with("lookout_log_records_total"))
        .map(str::to_string)
        .collect()
}

/// Samples the server's threads now and returns every reading so far.
fn seen_threads(sampler: &std::sync::Mutex<threads::Sampler>) -> Result<threads::Snapshot> {
    let mut s = sampler.lock().map_err(|_| BenchError::Proc {
        pid: 0,
        what: "task",
        reason: "the thread sampler panicked".into(),
    })?;
    s.sample()?;
    Ok(s.seen())
}

/// Generates the next chunk of pass 2 and encodes it, on a blocking thread.
async fn next_requests(
    mut gen: Generator,
    raw_bytes: Option<u64>,
    batch: usize,
) -> Result<(Generator, Vec<otlp::Request>, u64, u64)> {
    tokio::task::spawn_blocking(move || {
        let c: Chunk = match raw_bytes {
            Some(n) => gen.chunk(n),
            None => gen.finish(),
        };
        let reqs = otlp::encode(&c, batch);
        let (lines, raw) = (c.lines.len() as u64, c.raw_bytes());
        (gen, reqs, lines, raw)
    })
    .await
    .map_err(|e| BenchError::Decode(format!("generator task failed: {e}")))
}

type LoadOutcome = (
    LoadSummary,
    report::LiveSizes,
    search::SearchSummary,
    Vec<String>,
);

async fn load_and_search(
    args: &LogsArgs,
    p: Plan,
    first: &FirstPass,
    cases: &[search::Case],
    h: &mut ServerHandle,
    otlp_url: &str,
    http: &reqwest::Client,
) -> Result<LoadOutcome> {
    let self_pid = std::process::id();
    let client = ingest::client(args.connections)?;
    let target = args.raw_mb * MB;
    let chunk = args.chunk_mb * MB;
    let mut gen = Generator::new(args.seed, p.start_ns, p.step_ns, false);
    let mut chunks = Vec::new();
    let mut total = ingest::SendStats::default();
    let mut latencies = Vec::new();
    let sampler = Arc::new(std::sync::Mutex::new(threads::Sampler::start(h.pid)?));
    let threads0 = seen_threads(&sampler)?;
    let sampling = tokio::spawn({
        let sampler = sampler.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Ok(mut s) = sampler.lock() {
                    // the server may be gone at the end; the readings so far stay
                    let _ = s.sample();
                }
            }
        }
    });
    let load_cpu0 = h.cpu_secs()?;
    let load_wall0 = Instant::now();
    let mut generated_raw = 0u64;
    let mut generated_lines = 0u64;
    let mut done = false;
    while !done {
        let want = if generated_raw >= target {
            done = true;
            None
        } else {
            Some(chunk.min(target - generated_raw))
        };
        let (g, requests, lines, raw) = next_requests(gen, want, args.batch).await?;
        gen = g;
        generated_raw += raw;
        generated_lines += lines;
        if requests.is_empty() {
            continue;
        }
        let requests = Arc::new(requests);
        let machine0 = procstat::machine_busy_secs()?;
        let own0 = procstat::process_cpu_secs(self_pid)?;
        let cpu0 = h.cpu_secs()?;
        let mut st = ingest::send(&client, otlp_url, requests.clone(), args.connections).await?;
        let cpu = h.cpu_secs()? - cpu0;
        let own = procstat::process_cpu_secs(self_pid)? - own0;
        let machine = procstat::machine_busy_secs()? - machine0;
        let run = ChunkRun::new(chunks.len(), lines, raw, &st, cpu, own, machine);
        latencies.append(&mut st.latencies_ms);
        tracing::info!(
            chunk = run.index,
            records_ok = st.records_ok,
            rejected = st.records_rejected,
            retries = st.retries,
            cpu_secs = cpu,
            mb_per_cpu_sec = run.mb_per_cpu_sec,
            mb_per_sec = run.mb_per_wall_sec,
            other_cpu_secs = run.other_cpu_secs,
            "chunk sent"
        );
        if !st.clean() {
            tracing::warn!(first_error = ?st.first_error, "chunk not accepted cleanly");
        }
        total.merge(st);
        chunks.push(run);
    }
    let acked_cpu = h.cpu_secs()? - load_cpu0;
    let acked_wall = load_wall0.elapsed().as_secs_f64();
    if generated_lines != first.stats.lines || generated_raw != first.stats.raw_bytes {
        return Err(BenchError::Decode(format!(
            "pass 2 generated {generated_lines} lines / {generated_raw} bytes, pass 1 {} / {}: the generator is not deterministic",
            first.stats.lines, first.stats.raw_bytes
        )));
    }

    // searchable: the histogram over everything counts every acknowledged record
    let range = search::Range::around(first.stats.first_unix_nano, first.stats.last_unix_nano);
    let wait0 = Instant::now();
    let mut counted = 0;
    let mut polls = 0u64;
    loop {
        polls += 1;
        match search::count(http, &h.base_url(), "", range).await {
            Ok(n) => counted = n,
            Err(e) => tracing::debug!(error = %e, "histogram not answered yet"),
        }
        if counted >= total.records_ok {
            break;
        }
        if wait0.elapsed() > Duration::from_secs(args.searchable_timeout) {
            return Err(BenchError::Server {
                server: "lookout".into(),
                reason: format!(
                    "{counted} of {} acknowledged records searchable after {}s",
                    total.records_ok, args.searchable_timeout
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let searchable_secs = wait0.elapsed().as_secs_f64();
    let searchable_cpu = h.cpu_secs()? - load_cpu0;
    let threads1 = seen_threads(&sampler)?;
    let at_searchable = DirSizes::measure(&h.data_dir, total.raw_bytes_ok);
    tracing::info!(
        counted,
        searchable_secs,
        cpu_secs = searchable_cpu,
        logs_bytes = at_searchable.logs_bytes,
        "everything searchable"
    );

    // then let background work (merges, WAL trimming) finish: CPU quiet for two seconds
    let quiet0 = Instant::now();
    let mut last = h.cpu_secs()?;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = h.cpu_secs()?;
        let busy = now - last;
        last = now;
        if busy < 0.05 || quiet0.elapsed() > Duration::from_secs(600) {
            break;
        }
    }
    let quiet_cpu = h.cpu_secs()? - load_cpu0;
    let threads2 = seen_threads(&sampler)?;
    sampling.abort();
    let at_quiet = DirSizes::measure(&h.data_dir, total.raw_bytes_ok);
    let metrics = logs_metrics(h, http).await;

    let load = LoadSummary::new(report::LoadInputs {
        chunks,
        send: total,
        request_latencies_ms: &latencies,
        acked_cpu_secs: acked_cpu,
        acked_wall_secs: acked_wall,
        searchable_cpu_secs: searchable_cpu,
        searchable_wait_secs: searchable_secs,
        searchable_polls: polls,
        counted,
        quiet_cpu_secs: quiet_cpu,
        quiet_wait_secs: quiet0.elapsed().as_secs_f64(),
        threads_to_searchable: threads::diff(&threads0, &threads1),
        threads_after: threads::diff(&threads1, &threads2),
    });
    tracing::info!(
        mb_per_cpu_sec = load.mb_per_cpu_sec,
        logs_ratio = at_quiet.ratio,
        "load done, searching"
    );
    let searches = search::run(&h.base_url(), cases, range, args.limit, args.total_checks).await?;
    for k in &searches.kinds {
        tracing::info!(
            kind = k.name,
            p50_ms = k.latency.p50_ms,
            p99_ms = k.latency.p99_ms,
            failures = k.failures,
            "searches done"
        );
    }
    let sizes = report::LiveSizes {
        at_searchable,
        at_quiet,
    };
    Ok((load, sizes, searches, metrics))
}
