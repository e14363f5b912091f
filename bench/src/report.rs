//! Results: per-run measurements, medians over repeats, Lookout's ratios against the peers
//! and the targets, the printed table and the JSON written to `bench/results/`.

use std::path::Path;

use serde::Serialize;

use crate::error::{BenchError, Result};
use crate::generate::Manifest;
use crate::nullsink::NullSinkRun;
use crate::send::SendStats;
use crate::servers::Persisted;

/// Latency percentiles of a group of timed requests, ms.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Nearest-rank percentile of sorted values.
fn rank(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

impl Latency {
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        Latency {
            count: v.len(),
            p50_ms: rank(&v, 0.50),
            p90_ms: rank(&v, 0.90),
            p99_ms: rank(&v, 0.99),
            max_ms: v.last().copied().unwrap_or(0.0),
            mean_ms: if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            },
        }
    }
}

/// Writes `v` as pretty JSON to `path`, creating its parent directories.
pub fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| BenchError::io(parent, e))?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(v)?).map_err(|e| BenchError::io(path, e))
}

/// Median of finite values (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
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

#[derive(Clone, Debug, Serialize)]
pub struct NullSinkSummary {
    pub runs: Vec<NullSinkRun>,
    pub median_samples_per_cpu_sec: Option<f64>,
}

impl NullSinkSummary {
    pub fn new(runs: Vec<NullSinkRun>) -> Self {
        let median_samples_per_cpu_sec = median(
            &runs
                .iter()
                .map(|r| r.samples_per_cpu_sec)
                .collect::<Vec<_>>(),
        );
        NullSinkSummary {
            runs,
            median_samples_per_cpu_sec,
        }
    }
}

pub struct ServerRunInput {
    pub server: String,
    pub version: String,
    pub series: u64,
    pub sent: SendStats,
    pub server_reported_samples: Option<f64>,
    pub ingest_cpu_secs: f64,
    pub total_cpu_secs: f64,
    pub idle_peak_rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub persisted: Persisted,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServerRun {
    pub server: String,
    pub version: String,
    pub send: SendStats,
    pub server_reported_samples: Option<f64>,
    /// Server CPU while the stream was being sent.
    pub ingest_cpu_secs: f64,
    pub samples_per_cpu_sec: f64,
    /// Server CPU from the first request to process exit (persisting and shutdown included).
    pub total_cpu_secs: f64,
    pub samples_per_cpu_sec_incl_persist: f64,
    pub ingest_wall_secs: f64,
    pub idle_peak_rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub rss_bytes_per_series: f64,
    /// Peak RSS minus the RSS peak before any data arrived, per series.
    pub rss_bytes_per_series_above_idle: f64,
    pub persisted: Persisted,
    pub bytes_per_sample: Option<f64>,
}

impl ServerRun {
    pub fn new(i: ServerRunInput) -> Self {
        let ok = i.sent.samples_ok as f64;
        let persisted_samples = i.persisted.samples.unwrap_or(i.sent.samples_ok);
        let bytes_per_sample = (persisted_samples > 0 && i.persisted.bytes > 0)
            .then(|| i.persisted.bytes as f64 / persisted_samples as f64);
        ServerRun {
            server: i.server,
            version: i.version,
            server_reported_samples: i.server_reported_samples,
            samples_per_cpu_sec: ok / i.ingest_cpu_secs.max(0.01),
            samples_per_cpu_sec_incl_persist: ok / i.total_cpu_secs.max(0.01),
            ingest_cpu_secs: i.ingest_cpu_secs,
            total_cpu_secs: i.total_cpu_secs,
            ingest_wall_secs: i.sent.elapsed_secs,
            idle_peak_rss_bytes: i.idle_peak_rss_bytes,
            peak_rss_bytes: i.peak_rss_bytes,
            rss_bytes_per_series: i.peak_rss_bytes as f64 / i.series.max(1) as f64,
            rss_bytes_per_series_above_idle: i.peak_rss_bytes.saturating_sub(i.idle_peak_rss_bytes)
                as f64
                / i.series.max(1) as f64,
            persisted: i.persisted,
            bytes_per_sample,
            send: i.sent,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ServerSummary {
    pub server: String,
    pub runs: Vec<ServerRun>,
    pub failure: Option<String>,
    pub median_samples_per_cpu_sec: Option<f64>,
    pub median_samples_per_cpu_sec_incl_persist: Option<f64>,
    pub median_bytes_per_sample: Option<f64>,
    pub median_rss_bytes_per_series: Option<f64>,
    pub median_peak_rss_bytes: Option<f64>,
    pub median_data_dir_bytes: Option<f64>,
    pub median_ingest_wall_secs: Option<f64>,
}

impl ServerSummary {
    pub fn new(server: &str, runs: Vec<ServerRun>, failure: Option<String>) -> Self {
        let m = |f: &dyn Fn(&ServerRun) -> Option<f64>| {
            median(&runs.iter().filter_map(f).collect::<Vec<_>>())
        };
        ServerSummary {
            server: server.to_string(),
            median_samples_per_cpu_sec: m(&|r| Some(r.samples_per_cpu_sec)),
            median_samples_per_cpu_sec_incl_persist: m(&|r| {
                Some(r.samples_per_cpu_sec_incl_persist)
            }),
            median_bytes_per_sample: m(&|r| r.bytes_per_sample),
            median_rss_bytes_per_series: m(&|r| Some(r.rss_bytes_per_series)),
            median_peak_rss_bytes: m(&|r| Some(r.peak_rss_bytes as f64)),
            median_data_dir_bytes: m(&|r| Some(r.persisted.data_dir_bytes as f64)),
            median_ingest_wall_secs: m(&|r| Some(r.ingest_wall_secs)),
            runs,
            failure,
        }
    }

    /// Usable only when every sample was acknowledged; a lossy run would flatter the server.
    fn complete(&self) -> bool {
        !self.runs.is_empty() && self.runs.iter().all(|r| r.send.samples_rejected == 0)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    pub metric: String,
    pub against: String,
    pub lookout_over_peer: Option<f64>,
    pub target: String,
    pub met: Option<bool>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub mem_total_kb: Option<u64>,
    pub cpu_model: Option<String>,
    pub kernel: Option<String>,
}

impl Machine {
    pub fn probe() -> Self {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            nproc: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            mem_total_kb: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_string()),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub machine: Machine,
    pub stream: Manifest,
    pub null_sink: NullSinkSummary,
    pub servers: Vec<ServerSummary>,
    pub ratios: Vec<Ratio>,
}

impl Results {
    pub fn new(
        stream: Manifest,
        null_sink: NullSinkSummary,
        servers: Vec<ServerSummary>,
        started_at_ms: i64,
        finished_at_ms: i64,
    ) -> Self {
        let ratios = ratios(&servers);
        Results {
            started_at_ms,
            finished_at_ms,
            machine: Machine::probe(),
            stream,
            null_sink,
            servers,
            ratios,
        }
    }

    pub fn table(&self) -> String {
        let p = &self.stream.params;
        let mut out = format!(
            "stream: {} series, {}s interval, {} points/series, {} samples, {} requests of {} samples, {} connections, seed {}\n",
            p.series,
            p.interval_ms / 1000,
            p.points_per_series(),
            self.stream.total_samples(),
            self.stream.total_requests(),
            p.samples_per_request,
            p.shards,
            p.seed
        );
        out.push_str(&format!(
            "machine: {} cpus, {} MiB\n\n",
            self.machine.nproc,
            self.machine.mem_total_kb.unwrap_or(0) / 1024
        ));
        out.push_str(&format!(
            "{:<18} {:>14} {:>16} {:>12} {:>12} {:>14} {:>12} {:>9}\n",
            "server",
            "samples/cpu-s",
            "incl. persist",
            "bytes/sample",
            "peak RSS MiB",
            "RSS B/series",
            "data MiB",
            "wall s"
        ));
        let f = |v: Option<f64>, prec: usize| {
            v.map(|x| format!("{x:.prec$}"))
                .unwrap_or_else(|| "-".into())
        };
        out.push_str(&format!(
            "{:<18} {:>14} {:>16} {:>12} {:>12} {:>14} {:>12} {:>9}\n",
            "null sink (decode)",
            f(self.null_sink.median_samples_per_cpu_sec, 0),
            "-",
            "-",
            "-",
            "-",
            "-",
            "-"
        ));
        for s in &self.servers {
            let mib = |v: Option<f64>| v.map(|x| x / (1024.0 * 1024.0));
            out.push_str(&format!(
                "{:<18} {:>14} {:>16} {:>12} {:>12} {:>14} {:>12} {:>9}\n",
                s.server,
                f(s.median_samples_per_cpu_sec, 0),
                f(s.median_samples_per_cpu_sec_incl_persist, 0),
                f(s.median_bytes_per_sample, 3),
                f(mib(s.median_peak_rss_bytes), 1),
                f(s.median_rss_bytes_per_series, 0),
                f(mib(s.median_data_dir_bytes), 1),
                f(s.median_ingest_wall_secs, 1),
            ));
            if let Some(e) = &s.failure {
                out.push_str(&format!("  {} failed: {e}\n", s.server));
            }
            for r in &s.runs {
                if r.send.samples_rejected > 0 {
                    out.push_str(&format!(
                        "  {}: {} samples rejected/failed; first error: {}\n",
                        s.server,
                        r.send.samples_rejected,
                        r.send.first_error.as_deref().unwrap_or("-")
                    ));
                }
            }
        }
        if !self.ratios.is_empty() {
            out.push('\n');
        }
        for r in &self.ratios {
            out.push_str(&format!(
                "lookout/{:<17} {:<22} {:>8}  target {:<8} {}\n",
                r.against,
                r.metric,
                f(r.lookout_over_peer, 2),
                r.target,
                match r.met {
                    Some(true) => "met",
                    Some(false) => "NOT met",
                    None => "n/a",
                }
            ));
        }
        out
    }
}

fn ratios(servers: &[ServerSummary]) -> Vec<Ratio> {
    let find = |name: &str| servers.iter().find(|s| s.server == name && s.complete());
    let Some(lookout) = find("lookout") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut add = |metric: &str,
                   peer: &ServerSummary,
                   get: fn(&ServerSummary) -> Option<f64>,
                   target: f64,
                   at_least: bool| {
        let ratio = match (get(lookout), get(peer)) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        out.push(Ratio {
            metric: metric.to_string(),
            against: peer.server.clone(),
            lookout_over_peer: ratio,
            target: format!("{}{target}x", if at_least { ">=" } else { "<=" }),
            met: ratio.map(|r| if at_least { r >= target } else { r <= target }),
        });
    };
    if let Some(prom) = find("prometheus") {
        add(
            "samples/cpu-s",
            prom,
            |s| s.median_samples_per_cpu_sec,
            2.0,
            true,
        );
        add(
            "bytes/sample",
            prom,
            |s| s.median_bytes_per_sample,
            0.7,
            false,
        );
        add(
            "rss/series",
            prom,
            |s| s.median_rss_bytes_per_series,
            0.5,
            false,
        );
    }
    if let Some(vm) = find("victoria-metrics") {
        add(
            "samples/cpu-s",
            vm,
            |s| s.median_samples_per_cpu_sec,
            1.0,
            true,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        let l = Latency::of(&v);
        assert_eq!(l.p50_ms, 100.0);
        assert_eq!(l.p99_ms, 198.0);
        assert_eq!(l.max_ms, 200.0);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let l = Latency::of(&v);
        assert_eq!(l.p50_ms, 50.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(l.max_ms, 100.0);
        assert_eq!(Latency::of(&[]).count, 0);
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
    }

    fn run(server: &str, rate_cpu: f64, bytes: u64, rss: u64) -> ServerRun {
        let sent = SendStats {
            samples_ok: 1000,
            requests_ok: 1,
            ..Default::default()
        };
        ServerRun::new(ServerRunInput {
            server: server.into(),
            version: String::new(),
            series: 10,
            sent,
            server_reported_samples: None,
            ingest_cpu_secs: 1000.0 / rate_cpu,
            total_cpu_secs: 2000.0 / rate_cpu,
            idle_peak_rss_bytes: 0,
            peak_rss_bytes: rss,
            persisted: Persisted {
                bytes,
                ..Default::default()
            },
        })
    }

    #[test]
    fn ratios_against_targets() {
        let servers = vec![
            ServerSummary::new(
                "prometheus",
                vec![run("prometheus", 100.0, 2000, 1000)],
                None,
            ),
            ServerSummary::new(
                "victoria-metrics",
                vec![run("victoria-metrics", 300.0, 800, 500)],
                None,
            ),
            ServerSummary::new("lookout", vec![run("lookout", 250.0, 1000, 400)], None),
        ];
        let r = ratios(&servers);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].lookout_over_peer, Some(2.5));
        assert_eq!(r[0].met, Some(true));
        assert_eq!(r[1].lookout_over_peer, Some(0.5));
        assert_eq!(r[1].met, Some(true));
        assert_eq!(r[2].lookout_over_peer, Some(0.4));
        assert_eq!(r[3].met, Some(false));
        assert!(servers[0].median_bytes_per_sample == Some(2.0));
    }

    #[test]
    fn no_ratios_without_a_complete_lookout_run() {
        let servers = vec![
            ServerSummary::new(
                "prometheus",
                vec![run("prometheus", 100.0, 2000, 1000)],
                None,
            ),
            ServerSummary::new("lookout", vec![], Some("did not start".into())),
        ];
        assert!(ratios(&servers).is_empty());
    }
}
