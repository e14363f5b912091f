//! Results of the trace benchmark: per-chunk and whole-load ingest figures, the ceiling and
//! the ratio to it, the store's size, lookup latencies, the targets, the printed table
//! and the JSON written to `bench/results/traces-latest.json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::ceiling::CeilingRun;
use super::generate::GenStats;
use super::ingest::SendStats;
use super::lookup::{Latency, LookupSummary};
use super::TracesArgs;
use crate::procstat;
use crate::report::Machine;

/// Issue 4's targets.
pub const TARGET_SPANS_PER_CPU_SEC: f64 = 50_000.0;
pub const TARGET_LOOKUP_P99_MS: f64 = 50.0;

#[derive(Clone, Debug, Serialize)]
pub struct CeilingSummary {
    pub runs: Vec<CeilingRun>,
    pub median_spans_per_cpu_sec: Option<f64>,
}

/// One chunk of the load: its spans sent with the server's CPU read before the first request
/// and after the last answer.
#[derive(Clone, Debug, Serialize)]
pub struct ChunkRun {
    pub index: usize,
    pub spans_sent: u64,
    pub spans_ok: u64,
    pub spans_rejected: u64,
    pub retries: u64,
    pub server_cpu_secs: f64,
    pub wall_secs: f64,
    pub spans_per_cpu_sec: f64,
    pub spans_per_wall_sec: f64,
    /// CPU of this harness (the sender) meanwhile.
    pub harness_cpu_secs: f64,
    /// CPU the rest of the machine used meanwhile (other work sharing the cores).
    pub other_cpu_secs: f64,
    pub request_latency: Latency,
}

impl ChunkRun {
    pub fn new(
        index: usize,
        spans: u64,
        st: &SendStats,
        server_cpu: f64,
        harness_cpu: f64,
        machine_busy: f64,
    ) -> Self {
        ChunkRun {
            index,
            spans_sent: spans,
            spans_ok: st.spans_ok,
            spans_rejected: st.spans_rejected,
            retries: st.retries,
            server_cpu_secs: server_cpu,
            wall_secs: st.elapsed_secs,
            spans_per_cpu_sec: st.spans_ok as f64 / server_cpu.max(0.01),
            spans_per_wall_sec: st.spans_ok as f64 / st.elapsed_secs.max(1e-9),
            harness_cpu_secs: harness_cpu,
            other_cpu_secs: (machine_busy - server_cpu - harness_cpu).max(0.0),
            request_latency: Latency::of(&st.latencies_ms),
        }
    }
}

pub struct LoadInputs<'a> {
    pub chunks: Vec<ChunkRun>,
    pub send: SendStats,
    pub request_latencies_ms: &'a [f64],
    pub cpu_secs: f64,
    pub wall_secs: f64,
    pub generate_secs: f64,
    pub server_appended_spans: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LoadSummary {
    pub spans_ok: u64,
    pub send: SendStats,
    /// Server CPU from before the first request to after the last answer, the gaps in which
    /// the next chunk was generated included (background flushes ran then too).
    pub cpu_secs: f64,
    /// The headline: spans stored per server CPU-second over the whole load.
    pub spans_per_cpu_sec: f64,
    /// Median over the chunks of their own spans per CPU-second.
    pub median_chunk_spans_per_cpu_sec: Option<f64>,
    /// Wall time spent sending (generation gaps excluded) and the rate over it.
    pub sending_wall_secs: f64,
    pub spans_per_wall_sec: f64,
    /// Wall time of the whole load, generation included.
    pub wall_secs: f64,
    pub generate_secs: f64,
    pub request_latency: Latency,
    /// `lookout_traces_spans_appended_total` after the load.
    pub server_appended_spans: Option<f64>,
    pub other_cpu_secs: f64,
    pub chunks: Vec<ChunkRun>,
}

impl LoadSummary {
    pub fn new(i: LoadInputs<'_>) -> Self {
        let sending: f64 = i.chunks.iter().map(|c| c.wall_secs).sum();
        LoadSummary {
            spans_ok: i.send.spans_ok,
            spans_per_cpu_sec: i.send.spans_ok as f64 / i.cpu_secs.max(0.01),
            median_chunk_spans_per_cpu_sec: super::median(
                i.chunks.iter().map(|c| c.spans_per_cpu_sec).collect(),
            ),
            sending_wall_secs: sending,
            spans_per_wall_sec: i.send.spans_ok as f64 / sending.max(1e-9),
            wall_secs: i.wall_secs,
            generate_secs: i.generate_secs,
            request_latency: Latency::of(i.request_latencies_ms),
            server_appended_spans: i.server_appended_spans,
            other_cpu_secs: i.chunks.iter().map(|c| c.other_cpu_secs).sum(),
            cpu_secs: i.cpu_secs,
            send: i.send,
            chunks: i.chunks,
        }
    }
}

/// The store as the server reports it after the load, before the lookups.
#[derive(Clone, Debug, Serialize)]
pub struct StoreLive {
    /// Acknowledged spans not in a segment: in memory (and the WAL).
    pub head_spans: u64,
    pub segments: Option<f64>,
    pub segment_spans: Option<f64>,
    pub segment_bytes: Option<f64>,
    pub data_dir_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StoreSummary {
    pub live: StoreLive,
    /// After SIGTERM (the head flushed to a segment): every top-level entry of the data dir
    /// and of `traces/`.
    pub data_dir_bytes: u64,
    pub breakdown: BTreeMap<String, u64>,
    pub traces_bytes: u64,
    pub traces_segments_bytes: u64,
    /// `traces/` after shutdown per span stored.
    pub bytes_per_span: f64,
    pub segment_bytes_per_span: f64,
}

impl StoreSummary {
    pub fn measure(data_dir: &Path, live: StoreLive, spans: u64) -> Self {
        let mut breakdown = BTreeMap::new();
        for (prefix, dir) in [
            ("", data_dir.to_path_buf()),
            ("traces/", data_dir.join("traces")),
        ] {
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    let p = e.path();
                    let bytes = if p.is_dir() {
                        procstat::dir_bytes(&p)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    };
                    breakdown.insert(
                        format!("{prefix}{}", e.file_name().to_string_lossy()),
                        bytes,
                    );
                }
            }
        }
        let traces = procstat::dir_bytes(&data_dir.join("traces"));
        let segments = procstat::dir_bytes(&data_dir.join("traces").join("segments"));
        StoreSummary {
            live,
            data_dir_bytes: procstat::dir_bytes(data_dir),
            breakdown,
            traces_bytes: traces,
            traces_segments_bytes: segments,
            bytes_per_span: traces as f64 / spans.max(1) as f64,
            segment_bytes_per_span: segments as f64 / spans.max(1) as f64,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Params {
    pub spans: u64,
    pub chunk_spans: u64,
    pub batch_spans: usize,
    pub connections: usize,
    pub seed: u64,
    pub ceiling_spans: u64,
    pub ceiling_repeats: usize,
    pub lookups: usize,
    pub jaeger_lookups: usize,
    pub transport: &'static str,
    pub server_config: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct DataShape {
    #[serde(flatten)]
    pub stats: GenStats,
    pub protobuf_bytes_per_span: f64,
    pub mean_spans_per_trace: f64,
    pub mean_attr_key_bytes: f64,
    pub mean_attr_value_bytes: f64,
    pub error_trace_fraction: f64,
    pub error_span_fraction: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub name: &'static str,
    pub target: String,
    pub value: Option<f64>,
    pub met: Option<bool>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TracesResults {
    pub benchmark: &'static str,
    pub started_unix_ms: i64,
    pub finished_unix_ms: i64,
    pub machine: Machine,
    /// `/proc/loadavg` at the start: other work on the machine.
    pub load_avg_start: String,
    pub params: Params,
    pub server_version: String,
    /// `git rev-parse --short HEAD` of the checkout the run was made from.
    pub git_commit: Option<String>,
    pub data: DataShape,
    pub ceiling: CeilingSummary,
    pub load: LoadSummary,
    /// Whole-load spans per CPU-second / the ceiling's.
    pub ratio_to_ceiling: Option<f64>,
    /// Server CPU from SIGTERM to exit (the head's final flush).
    pub shutdown_cpu_secs: f64,
    pub idle_peak_rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub store: StoreSummary,
    pub lookups: Vec<LookupSummary>,
    pub targets: Vec<Target>,
    /// Anything that makes the figures untrustworthy (refused spans, wrong answers).
    pub problems: Vec<String>,
}

pub struct Inputs<'a> {
    pub started_ms: i64,
    pub finished_ms: i64,
    pub load_avg_start: String,
    pub args: &'a TracesArgs,
    pub version: String,
    pub gen: GenStats,
    pub ceiling: CeilingSummary,
    pub load: LoadSummary,
    pub shutdown_cpu_secs: f64,
    pub idle_rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub store: StoreSummary,
    pub lookups: Vec<LookupSummary>,
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

impl TracesResults {
    pub fn new(i: Inputs<'_>) -> Self {
        let a = i.args;
        let g = &i.gen;
        let data = DataShape {
            protobuf_bytes_per_span: g.bytes_per_span(),
            mean_spans_per_trace: g.spans as f64 / g.traces.max(1) as f64,
            mean_attr_key_bytes: g.mean_attr_key_bytes(),
            mean_attr_value_bytes: g.mean_attr_value_bytes(),
            error_trace_fraction: g.error_traces as f64 / g.traces.max(1) as f64,
            error_span_fraction: g.error_spans as f64 / g.spans.max(1) as f64,
            stats: g.clone(),
        };
        let ratio = i
            .ceiling
            .median_spans_per_cpu_sec
            .filter(|c| *c > 0.0)
            .map(|c| i.load.spans_per_cpu_sec / c);
        let mut problems = Vec::new();
        let s = &i.load.send;
        if !s.clean() {
            problems.push(format!(
                "ingest not clean: {} request(s) rejected, {} failed, {} span(s) refused, {} partial success(es); first: {}",
                s.requests_rejected,
                s.requests_failed,
                s.spans_rejected,
                s.partial_successes,
                s.first_error.as_deref().unwrap_or("-")
            ));
        }
        if s.spans_ok != g.spans {
            problems.push(format!(
                "{} spans generated but {} acknowledged",
                g.spans, s.spans_ok
            ));
        }
        if let Some(n) = i.load.server_appended_spans {
            if n as u64 != s.spans_ok {
                problems.push(format!(
                    "the server counts {n} spans appended, the sender {} acknowledged",
                    s.spans_ok
                ));
            }
        }
        for l in &i.lookups {
            if l.failures > 0 {
                problems.push(format!(
                    "{}: {} wrong answer(s); first: {}",
                    l.api,
                    l.failures,
                    l.first_failure.as_deref().unwrap_or("-")
                ));
            }
        }
        let lookout_p99 = i.lookups.first().map(|l| l.all.p99_ms);
        let targets = vec![
            Target {
                name: "spans stored per server CPU-second (whole load)",
                target: format!(">= {TARGET_SPANS_PER_CPU_SEC}"),
                value: Some(i.load.spans_per_cpu_sec),
                met: Some(i.load.spans_per_cpu_sec >= TARGET_SPANS_PER_CPU_SEC),
            },
            Target {
                name: "trace-by-id lookup p99 (GET /api/v1/traces/{id})",
                target: format!("< {TARGET_LOOKUP_P99_MS} ms with >= 10M spans stored"),
                value: lookout_p99,
                // the target is about a store of 10M spans; a smaller run says nothing
                met: lookout_p99
                    .filter(|_| s.spans_ok >= 10_000_000)
                    .map(|p| p < TARGET_LOOKUP_P99_MS),
            },
        ];
        TracesResults {
            benchmark: "traces",
            started_unix_ms: i.started_ms,
            finished_unix_ms: i.finished_ms,
            machine: Machine::probe(),
            load_avg_start: i.load_avg_start,
            params: Params {
                spans: a.spans,
                chunk_spans: a.chunk_spans,
                batch_spans: a.batch_spans,
                connections: a.connections,
                seed: a.seed,
                ceiling_spans: a.ceiling_spans,
                ceiling_repeats: a.ceiling_repeats,
                lookups: a.lookups,
                jaeger_lookups: a.jaeger_lookups,
                transport: "OTLP/HTTP POST /v1/traces, application/x-protobuf, uncompressed",
                server_config: a
                    .lookout_config
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "defaults (fsync on every batch)".into()),
            },
            server_version: i.version,
            git_commit: git_commit(),
            data,
            ceiling: i.ceiling,
            ratio_to_ceiling: ratio,
            shutdown_cpu_secs: i.shutdown_cpu_secs,
            idle_peak_rss_bytes: i.idle_rss_bytes,
            peak_rss_bytes: i.peak_rss_bytes,
            store: i.store,
            lookups: i.lookups,
            targets,
            problems,
            load: i.load,
        }
    }

    /// The human-readable summary.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let d = &self.data;
        let l = &self.load;
        let mib = |b: f64| b / (1024.0 * 1024.0);
        let _ = writeln!(
            t,
            "\ntraces: {} spans in {} traces, {} requests of <= {} spans; {:.0} protobuf bytes/span, attributes {:.1}+{:.1} bytes (key+value), {:.1} % error traces",
            d.stats.spans,
            d.stats.traces,
            d.stats.requests,
            self.params.batch_spans,
            d.protobuf_bytes_per_span,
            d.mean_attr_key_bytes,
            d.mean_attr_value_bytes,
            d.error_trace_fraction * 100.0
        );
        let _ = writeln!(
            t,
            "machine: {} cpus ({}), load average at start {}\n",
            self.machine.nproc,
            self.machine.cpu_model.as_deref().unwrap_or("?"),
            self.load_avg_start
        );
        let _ = writeln!(t, "{:<52} {:>14}", "ingest", "value");
        let row = |t: &mut String, name: &str, v: String| {
            let _ = writeln!(t, "{name:<52} {v:>14}");
        };
        row(
            &mut t,
            "spans stored / server CPU-s (whole load)",
            format!("{:.0}", l.spans_per_cpu_sec),
        );
        row(
            &mut t,
            "  median of the chunks",
            l.median_chunk_spans_per_cpu_sec
                .map(|v| format!("{v:.0}"))
                .unwrap_or_else(|| "-".into()),
        );
        row(
            &mut t,
            "decode + convert ceiling (spans / CPU-s, 1 thread)",
            self.ceiling
                .median_spans_per_cpu_sec
                .map(|v| format!("{v:.0}"))
                .unwrap_or_else(|| "-".into()),
        );
        row(
            &mut t,
            "server / ceiling",
            self.ratio_to_ceiling
                .map(|r| format!("{:.1} %", r * 100.0))
                .unwrap_or_else(|| "-".into()),
        );
        row(
            &mut t,
            "spans / wall-s (sending)",
            format!("{:.0}", l.spans_per_wall_sec),
        );
        row(
            &mut t,
            "request latency p50 / p99 (ms)",
            format!(
                "{:.0} / {:.0}",
                l.request_latency.p50_ms, l.request_latency.p99_ms
            ),
        );
        row(
            &mut t,
            "server CPU-s (load) / other machine CPU-s",
            format!("{:.1} / {:.1}", l.cpu_secs, l.other_cpu_secs),
        );
        row(
            &mut t,
            "retries / rejected spans",
            format!("{} / {}", l.send.retries, l.send.spans_rejected),
        );
        row(
            &mut t,
            "peak RSS (MiB)",
            format!("{:.0}", mib(self.peak_rss_bytes as f64)),
        );
        let st = &self.store;
        row(
            &mut t,
            "at lookup time: spans in head / segments",
            format!(
                "{} / {}",
                st.live.head_spans,
                st.live
                    .segments
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into())
            ),
        );
        row(
            &mut t,
            "data dir after shutdown (MiB)",
            format!("{:.0}", mib(st.data_dir_bytes as f64)),
        );
        row(
            &mut t,
            "traces/ bytes per span (segments)",
            format!(
                "{:.0} ({:.0})",
                st.bytes_per_span, st.segment_bytes_per_span
            ),
        );
        let _ = writeln!(
            t,
            "\n{:<34} {:>6} {:>8} {:>8} {:>8} {:>8}",
            "lookups", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for lk in &self.lookups {
            let _ = writeln!(t, "{}", lk.api);
            for (name, x) in [
                ("  all", &lk.all),
                ("  head", &lk.head),
                ("  segment", &lk.segment),
                ("  mixed", &lk.mixed),
                ("  unknown id", &lk.unknown),
            ] {
                if x.count == 0 {
                    continue;
                }
                let _ = writeln!(
                    t,
                    "{name:<34} {:>6} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                    x.count, x.p50_ms, x.p90_ms, x.p99_ms, x.max_ms
                );
            }
            let _ = writeln!(t, "  wrong answers: {}", lk.failures);
        }
        let _ = writeln!(t, "\ntargets (issue 4)");
        for g in &self.targets {
            let _ = writeln!(
                t,
                "  {:<52} {:>10} {:<28} {}",
                g.name,
                g.value
                    .map(|v| format!("{v:.1}"))
                    .unwrap_or_else(|| "-".into()),
                g.target,
                match g.met {
                    Some(true) => "met",
                    Some(false) => "NOT met",
                    None => "n/a (fewer than 10M spans)",
                }
            );
        }
        for p in &self.problems {
            let _ = writeln!(t, "PROBLEM: {p}");
        }
        t
    }
}
