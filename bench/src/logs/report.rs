//! Results of the log benchmark: the corpus, the peers, Lookout's ingest (per chunk and whole
//! load, to acknowledged, searchable and quiet), stored size, search latency per kind, the
//! issue's targets, the printed table and the JSON written to
//! `bench/results/logs-latest.json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::corpus::CorpusStats;
use super::floor::FloorResult;
use super::ingest::SendStats;
use super::peer::PeerResult;
use super::search::{Latency, SearchSummary};
use super::threads::ThreadCpu;
use super::LogsArgs;
use crate::procstat;
use crate::report::Machine;

/// The targets.
pub const TARGET_MB_PER_CPU_SEC: f64 = 15.0;
pub const TARGET_SIZE_RATIO: f64 = 0.15;
pub const TARGET_TERM_P99_MS: f64 = 100.0;
/// The targets are about a corpus of at least this many raw bytes.
pub const TARGET_MIN_RAW_BYTES: u64 = 5_000_000_000;

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

#[derive(Clone, Debug, Serialize)]
pub struct Peers {
    pub zstd: FloorResult,
    pub tantivy: PeerResult,
    /// Generating (and tallying) the corpus in the same pass, subtracted from the peer's CPU.
    pub generate_cpu_secs: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChunkRun {
    pub index: usize,
    pub lines: u64,
    pub raw_bytes: u64,
    pub records_ok: u64,
    /// Server CPU from the chunk's first request to its last answer.
    pub cpu_secs: f64,
    pub wall_secs: f64,
    pub mb_per_cpu_sec: f64,
    pub mb_per_wall_sec: f64,
    /// The harness's own CPU meanwhile (sending).
    pub own_cpu_secs: f64,
    /// The rest of the machine meanwhile (other processes).
    pub other_cpu_secs: f64,
}

impl ChunkRun {
    pub fn new(
        index: usize,
        lines: u64,
        raw_bytes: u64,
        st: &SendStats,
        cpu: f64,
        own: f64,
        machine: f64,
    ) -> Self {
        ChunkRun {
            index,
            lines,
            raw_bytes,
            records_ok: st.records_ok,
            cpu_secs: cpu,
            wall_secs: st.elapsed_secs,
            mb_per_cpu_sec: mb(st.raw_bytes_ok) / cpu.max(0.01),
            mb_per_wall_sec: mb(st.raw_bytes_ok) / st.elapsed_secs.max(1e-9),
            own_cpu_secs: own,
            other_cpu_secs: (machine - cpu - own).max(0.0),
        }
    }
}

pub struct LoadInputs<'a> {
    pub chunks: Vec<ChunkRun>,
    pub send: SendStats,
    pub request_latencies_ms: &'a [f64],
    pub acked_cpu_secs: f64,
    pub acked_wall_secs: f64,
    pub searchable_cpu_secs: f64,
    pub searchable_wait_secs: f64,
    pub searchable_polls: u64,
    pub counted: u64,
    pub quiet_cpu_secs: f64,
    pub quiet_wait_secs: f64,
    pub threads_to_searchable: Vec<ThreadCpu>,
    pub threads_after: Vec<ThreadCpu>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LoadSummary {
    /// **The headline**: raw MB acknowledged / server CPU from the first request until
    /// everything was searchable (generation gaps included).
    pub mb_per_cpu_sec: f64,
    /// Raw MB / server CPU until the last acknowledgement.
    pub mb_per_cpu_sec_to_acked: f64,
    /// Raw MB / server CPU until the server was quiet again (merges and the rest included).
    pub mb_per_cpu_sec_to_quiet: f64,
    pub median_chunk_mb_per_cpu_sec: Option<f64>,
    /// Raw MB / wall seconds spent sending.
    pub mb_per_wall_sec: f64,
    pub records_per_cpu_sec: f64,
    pub sending_wall_secs: f64,
    pub acked_cpu_secs: f64,
    pub acked_wall_secs: f64,
    pub searchable_cpu_secs: f64,
    /// From the last acknowledgement until the histogram counted every record.
    pub searchable_wait_secs: f64,
    pub searchable_polls: u64,
    pub counted: u64,
    pub quiet_cpu_secs: f64,
    pub quiet_wait_secs: f64,
    pub request_latency: Latency,
    pub other_cpu_secs: f64,
    pub own_cpu_secs: f64,
    /// Server CPU by thread group, first request to searchable, and searchable to quiet.
    pub threads_to_searchable: Vec<ThreadCpu>,
    pub threads_after: Vec<ThreadCpu>,
    pub send: SendStats,
    pub chunks: Vec<ChunkRun>,
}

impl LoadSummary {
    pub fn new(i: LoadInputs<'_>) -> Self {
        let raw = mb(i.send.raw_bytes_ok);
        let sending: f64 = i.chunks.iter().map(|c| c.wall_secs).sum();
        LoadSummary {
            mb_per_cpu_sec: raw / i.searchable_cpu_secs.max(0.01),
            mb_per_cpu_sec_to_acked: raw / i.acked_cpu_secs.max(0.01),
            mb_per_cpu_sec_to_quiet: raw / i.quiet_cpu_secs.max(0.01),
            median_chunk_mb_per_cpu_sec: median(
                i.chunks.iter().map(|c| c.mb_per_cpu_sec).collect(),
            ),
            mb_per_wall_sec: raw / sending.max(1e-9),
            records_per_cpu_sec: i.send.records_ok as f64 / i.searchable_cpu_secs.max(0.01),
            sending_wall_secs: sending,
            acked_cpu_secs: i.acked_cpu_secs,
            acked_wall_secs: i.acked_wall_secs,
            searchable_cpu_secs: i.searchable_cpu_secs,
            searchable_wait_secs: i.searchable_wait_secs,
            searchable_polls: i.searchable_polls,
            counted: i.counted,
            quiet_cpu_secs: i.quiet_cpu_secs,
            quiet_wait_secs: i.quiet_wait_secs,
            request_latency: Latency::of(i.request_latencies_ms),
            other_cpu_secs: i.chunks.iter().map(|c| c.other_cpu_secs).sum(),
            own_cpu_secs: i.chunks.iter().map(|c| c.own_cpu_secs).sum(),
            threads_to_searchable: i.threads_to_searchable,
            threads_after: i.threads_after,
            send: i.send,
            chunks: i.chunks,
        }
    }
}

pub fn median(mut v: Vec<f64>) -> Option<f64> {
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

/// Bytes on disk at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct DirSizes {
    /// Everything under `<data>/logs/`: indexes, doc stores, WAL.
    pub logs_bytes: u64,
    /// `logs_bytes` / raw bytes acknowledged.
    pub ratio: f64,
    pub raw_bytes: u64,
    /// Each entry of `logs/` and of `logs/<entry>/` one level down (partitions are summed
    /// under their parent with a count).
    pub breakdown: BTreeMap<String, u64>,
    pub partitions: usize,
    /// Bytes under `logs/` by file extension (tantivy's `idx` postings, `pos` positions,
    /// `term` dictionary, `store` documents, `fast` columns, `fieldnorm`; the WAL's files).
    pub by_extension: BTreeMap<String, u64>,
    pub data_dir_bytes: u64,
}

/// Adds the size of every file below `dir` to `out`, keyed by extension (or `(none)`).
pub fn sizes_by_extension(dir: &Path, out: &mut BTreeMap<String, u64>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        match e.metadata() {
            Ok(m) if m.is_dir() => sizes_by_extension(&p, out),
            Ok(m) if m.is_file() => {
                let ext = p
                    .extension()
                    .map(|x| x.to_string_lossy().to_string())
                    .unwrap_or_else(|| "(none)".into());
                *out.entry(ext).or_default() += m.len();
            }
            _ => {}
        }
    }
}

impl DirSizes {
    pub fn measure(data_dir: &Path, raw_bytes: u64) -> Self {
        let logs = data_dir.join("logs");
        let mut breakdown = BTreeMap::new();
        let mut partitions = 0;
        if let Ok(rd) = std::fs::read_dir(&logs) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let p = e.path();
                if p.is_dir() {
                    if name == "partitions" {
                        partitions = std::fs::read_dir(&p)
                            .map(|r| r.flatten().filter(|e| e.path().is_dir()).count())
                            .unwrap_or(0);
                    }
                    breakdown.insert(format!("{name}/"), procstat::dir_bytes(&p));
                } else {
                    breakdown.insert(name, e.metadata().map(|m| m.len()).unwrap_or(0));
                }
            }
        }
        let logs_bytes = procstat::dir_bytes(&logs);
        let mut by_extension = BTreeMap::new();
        sizes_by_extension(&logs, &mut by_extension);
        DirSizes {
            logs_bytes,
            ratio: logs_bytes as f64 / raw_bytes.max(1) as f64,
            raw_bytes,
            breakdown,
            partitions,
            by_extension,
            data_dir_bytes: procstat::dir_bytes(data_dir),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LiveSizes {
    pub at_searchable: DirSizes,
    /// After background work finished: **the stored-size headline**.
    pub at_quiet: DirSizes,
}

#[derive(Clone, Debug, Serialize)]
pub struct Params {
    pub raw_mb: u64,
    pub chunk_mb: u64,
    pub hours: u64,
    pub batch: usize,
    pub connections: usize,
    pub queries_per_kind: usize,
    pub limit: usize,
    pub total_checks: usize,
    pub peer_memory_mb: usize,
    pub seed: u64,
    pub transport: &'static str,
    pub server_config: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub name: &'static str,
    pub target: String,
    pub value: Option<f64>,
    pub met: Option<bool>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LogsResults {
    pub benchmark: &'static str,
    pub started_unix_ms: i64,
    pub finished_unix_ms: i64,
    pub machine: Machine,
    pub load_avg_start: String,
    pub params: Params,
    pub server_version: String,
    pub git_commit: Option<String>,
    pub corpus: CorpusStats,
    pub peers: Option<Peers>,
    pub load: LoadSummary,
    pub sizes: LiveSizes,
    /// After SIGTERM.
    pub after_shutdown: DirSizes,
    pub shutdown_cpu_secs: f64,
    pub idle_peak_rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub search: SearchSummary,
    /// Lookout's `lookout_logs_*` series when the server was quiet, before the searches.
    pub server_metrics: Vec<String>,
    /// Lookout's MB per CPU-second over the tantivy peer's.
    pub ratio_to_tantivy: Option<f64>,
    /// Lookout's stored bytes over zstd -3's.
    pub size_over_zstd: Option<f64>,
    pub targets: Vec<Target>,
    pub problems: Vec<String>,
}

pub struct Inputs<'a> {
    pub started_ms: i64,
    pub finished_ms: i64,
    pub load_avg_start: String,
    pub args: &'a LogsArgs,
    pub version: String,
    pub corpus: CorpusStats,
    pub peers: Option<Peers>,
    pub load: LoadSummary,
    pub sizes: LiveSizes,
    pub after_shutdown: DirSizes,
    pub shutdown_cpu_secs: f64,
    pub idle_rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub search: SearchSummary,
    pub server_metrics: Vec<String>,
    pub git_commit: Option<String>,
}

/// `git rev-parse --short HEAD`, with `-dirty` when tracked sources or manifests (what goes
/// into the binaries) differ from it; taken when the run starts (others may commit while it
/// runs).
pub fn git_commit() -> Option<String> {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("git").args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
        out.status.success().then_some(text)
    };
    let head = run(&["rev-parse", "--short", "HEAD"]).filter(|h| !h.is_empty())?;
    let dirty = run(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        "src/*",
        "*/src/*",
        "*Cargo.toml",
        "Cargo.lock",
    ])
    .map(|s| !s.is_empty())
    .unwrap_or(false);
    Some(if dirty { format!("{head}-dirty") } else { head })
}

impl LogsResults {
    pub fn new(i: Inputs<'_>) -> Self {
        let a = i.args;
        let c = &i.corpus;
        let s = &i.load.send;
        let mut problems = Vec::new();
        if !s.clean() {
            problems.push(format!(
                "ingest not clean: {} request(s) rejected, {} failed, {} record(s) refused, {} partial success(es); first: {}",
                s.requests_rejected,
                s.requests_failed,
                s.records_rejected,
                s.partial_successes,
                s.first_error.as_deref().unwrap_or("-")
            ));
        }
        if s.records_ok != c.lines {
            problems.push(format!(
                "{} lines generated but {} acknowledged",
                c.lines, s.records_ok
            ));
        }
        if i.load.counted != s.records_ok {
            problems.push(format!(
                "the histogram counts {} records, {} were acknowledged",
                i.load.counted, s.records_ok
            ));
        }
        for k in &i.search.kinds {
            if k.failures > 0 || k.total_mismatches > 0 {
                problems.push(format!(
                    "{}: {} wrong answer(s), {} wrong total(s); first: {}",
                    k.name,
                    k.failures,
                    k.total_mismatches,
                    k.first_failure.as_deref().unwrap_or("-")
                ));
            }
        }
        let big = s.raw_bytes_ok >= TARGET_MIN_RAW_BYTES;
        let ratio = i.sizes.at_quiet.ratio;
        let term_p99 = i.search.terms.p99_ms;
        let targets = vec![
            Target {
                name: "raw MB ingested and indexed per server CPU-second",
                target: format!(">= {TARGET_MB_PER_CPU_SEC}"),
                value: Some(i.load.mb_per_cpu_sec),
                met: big.then_some(i.load.mb_per_cpu_sec >= TARGET_MB_PER_CPU_SEC),
            },
            Target {
                name: "stored bytes (logs/) / raw bytes",
                target: format!("<= {TARGET_SIZE_RATIO}"),
                value: Some(ratio),
                met: big.then_some(ratio <= TARGET_SIZE_RATIO),
            },
            Target {
                name: "term search p99 (ms)",
                target: format!("< {TARGET_TERM_P99_MS}"),
                value: Some(term_p99),
                met: big.then_some(term_p99 < TARGET_TERM_P99_MS),
            },
        ];
        let ratio_to_tantivy = i
            .peers
            .as_ref()
            .map(|p| p.tantivy.mb_per_cpu_sec)
            .filter(|v| *v > 0.0)
            .map(|v| i.load.mb_per_cpu_sec / v);
        let size_over_zstd = i
            .peers
            .as_ref()
            .map(|p| p.zstd.compressed_bytes)
            .filter(|v| *v > 0)
            .map(|v| i.sizes.at_quiet.logs_bytes as f64 / v as f64);
        LogsResults {
            benchmark: "logs",
            started_unix_ms: i.started_ms,
            finished_unix_ms: i.finished_ms,
            machine: Machine::probe(),
            load_avg_start: i.load_avg_start,
            params: Params {
                raw_mb: a.raw_mb,
                chunk_mb: a.chunk_mb,
                hours: a.hours,
                batch: a.batch,
                connections: a.connections,
                queries_per_kind: a.queries,
                limit: a.limit,
                total_checks: a.total_checks,
                peer_memory_mb: a.peer_memory_mb,
                seed: a.seed,
                transport: "OTLP/HTTP POST /v1/logs, application/x-protobuf, uncompressed",
                server_config: a
                    .lookout_config
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "defaults (fsync on every batch)".into()),
            },
            server_version: i.version,
            git_commit: i.git_commit,
            corpus: i.corpus,
            peers: i.peers,
            load: i.load,
            sizes: i.sizes,
            after_shutdown: i.after_shutdown,
            shutdown_cpu_secs: i.shutdown_cpu_secs,
            idle_peak_rss_bytes: i.idle_rss_bytes,
            peak_rss_bytes: i.peak_rss_bytes,
            search: i.search,
            server_metrics: i.server_metrics,
            ratio_to_tantivy,
            size_over_zstd,
            targets,
            problems,
        }
    }

    /// The human-readable summary.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let c = &self.corpus;
        let frac = |n: u64| n as f64 / c.lines.max(1) as f64 * 100.0;
        let _ = writeln!(
            t,
            "\nlogs: {} lines, {:.1} MB raw ({:.0} bytes a line) over {:.1} h; {:.1} % in traces, {:.1} % JSON, {:.1} % logfmt, {:.1} % CJK",
            c.lines,
            mb(c.raw_bytes),
            c.mean_line_bytes(),
            (c.last_unix_nano - c.first_unix_nano) as f64 / 3.6e12,
            frac(c.trace_lines),
            frac(c.json_lines),
            frac(c.logfmt_lines),
            frac(c.cjk_lines)
        );
        let _ = writeln!(
            t,
            "machine: {} cpus ({}), load average at start {}\n",
            self.machine.nproc,
            self.machine.cpu_model.as_deref().unwrap_or("?"),
            self.load_avg_start
        );
        let row = |t: &mut String, name: &str, v: String| {
            let _ = writeln!(t, "{name:<58} {v:>16}");
        };
        let l = &self.load;
        let _ = writeln!(t, "{:<58} {:>16}", "ingest (raw MB = 10^6 bytes)", "value");
        row(
            &mut t,
            "Lookout: raw MB / server CPU-s (first request -> searchable)",
            format!("{:.2}", l.mb_per_cpu_sec),
        );
        row(
            &mut t,
            "  to the last ack / to quiet",
            format!(
                "{:.2} / {:.2}",
                l.mb_per_cpu_sec_to_acked, l.mb_per_cpu_sec_to_quiet
            ),
        );
        row(
            &mut t,
            "  median of the chunks (while sending)",
            l.median_chunk_mb_per_cpu_sec
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "-".into()),
        );
        row(
            &mut t,
            "  server CPU-s: to ack / searchable / quiet",
            format!(
                "{:.1} / {:.1} / {:.1}",
                l.acked_cpu_secs, l.searchable_cpu_secs, l.quiet_cpu_secs
            ),
        );
        row(
            &mut t,
            "  raw MB / wall-s (sending); records / CPU-s",
            format!("{:.1}; {:.0}", l.mb_per_wall_sec, l.records_per_cpu_sec),
        );
        row(
            &mut t,
            "  last ack -> searchable (s)",
            format!("{:.1}", l.searchable_wait_secs),
        );
        row(
            &mut t,
            "  request latency p50 / p99 (ms)",
            format!(
                "{:.0} / {:.0}",
                l.request_latency.p50_ms, l.request_latency.p99_ms
            ),
        );
        row(
            &mut t,
            "  retries / rejected records / other machine CPU-s",
            format!(
                "{} / {} / {:.1}",
                l.send.retries, l.send.records_rejected, l.other_cpu_secs
            ),
        );
        if let Some(p) = &self.peers {
            row(
                &mut t,
                "tantivy peer: raw MB / CPU-s (in-process)",
                format!("{:.2}", p.tantivy.mb_per_cpu_sec),
            );
            row(
                &mut t,
                "zstd -3: raw MB / CPU-s",
                format!("{:.1}", p.zstd.mb_per_cpu_sec),
            );
            row(
                &mut t,
                "Lookout / tantivy peer",
                self.ratio_to_tantivy
                    .map(|r| format!("{:.1} %", r * 100.0))
                    .unwrap_or_else(|| "-".into()),
            );
        }
        let _ = writeln!(t, "\n{:<58} {:>16}", "size (bytes / raw bytes)", "ratio");
        let s = &self.sizes;
        row(
            &mut t,
            "Lookout logs/ when quiet (index + store + WAL)",
            format!(
                "{:.4} ({:.0} MB)",
                s.at_quiet.ratio,
                mb(s.at_quiet.logs_bytes)
            ),
        );
        row(
            &mut t,
            "  when searchable / after shutdown",
            format!(
                "{:.4} / {:.4}",
                s.at_searchable.ratio, self.after_shutdown.ratio
            ),
        );
        row(&mut t, "  partitions", s.at_quiet.partitions.to_string());
        for (ext, bytes) in &s.at_quiet.by_extension {
            if *bytes * 200 >= s.at_quiet.logs_bytes {
                row(
                    &mut t,
                    &format!("  .{ext} files"),
                    format!(
                        "{:.4} ({:.0} MB)",
                        *bytes as f64 / s.at_quiet.raw_bytes.max(1) as f64,
                        mb(*bytes)
                    ),
                );
            }
        }
        if let Some(p) = &self.peers {
            row(
                &mut t,
                "zstd -3 of the raw corpus (floor)",
                format!(
                    "{:.4} ({:.0} MB)",
                    p.zstd.ratio,
                    mb(p.zstd.compressed_bytes)
                ),
            );
            row(
                &mut t,
                "tantivy peer index (stored body)",
                format!(
                    "{:.4} ({:.0} MB)",
                    p.tantivy.ratio,
                    mb(p.tantivy.index_bytes)
                ),
            );
        }
        row(
            &mut t,
            "peak RSS (MiB)",
            format!("{:.0}", self.peak_rss_bytes as f64 / 1048576.0),
        );
        let _ = writeln!(
            t,
            "\n{:<24} {:>5} {:>9} {:>8} {:>8} {:>8} {:>8}  wrong",
            format!("search (limit {})", self.search.limit),
            "n",
            "lines",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms"
        );
        for k in &self.search.kinds {
            let _ = writeln!(
                t,
                "{:<24} {:>5} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {}",
                k.name,
                k.latency.count,
                k.matching_lines_median,
                k.latency.p50_ms,
                k.latency.p90_ms,
                k.latency.p99_ms,
                k.latency.max_ms,
                k.failures + k.total_mismatches
            );
        }
        let tm = &self.search.terms;
        let _ = writeln!(
            t,
            "{:<24} {:>5} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            "all terms", tm.count, "", tm.p50_ms, tm.p90_ms, tm.p99_ms, tm.max_ms
        );
        if !self.load.threads_to_searchable.is_empty() {
            let _ = writeln!(t, "\nserver CPU by thread, first request -> searchable");
            for th in self.load.threads_to_searchable.iter().take(10) {
                let _ = writeln!(
                    t,
                    "  {:<30} {:>3} threads {:>9.1} s",
                    th.name, th.threads, th.cpu_secs
                );
            }
        }
        let _ = writeln!(t, "\ntargets (issue 5)");
        for g in &self.targets {
            let _ = writeln!(
                t,
                "  {:<52} {:>10} {:<10} {}",
                g.name,
                g.value
                    .map(|v| format!("{v:.3}"))
                    .unwrap_or_else(|| "-".into()),
                g.target,
                match g.met {
                    Some(true) => "met",
                    Some(false) => "NOT met",
                    None => "n/a (less than 5 GB raw)",
                }
            );
        }
        for p in &self.problems {
            let _ = writeln!(t, "PROBLEM: {p}");
        }
        t
    }
}
