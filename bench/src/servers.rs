//! Drivers for the servers under test: each starts on free ports with a fresh data directory,
//! is fed the stream, then brought to a persisted state the way that server persists, and
//! measured from `/proc` and its data directory.
//!
//! How "persisted" is made comparable:
//! * Prometheus: the stream spans more than 1.5 block ranges (3 h), so its head compacts the
//!   first aligned 2 h range into a block; bytes per sample = that block's size / the
//!   `numSamples` in its `meta.json` (index included, WAL and head chunks excluded).
//! * VictoriaMetrics: `/internal/force_flush`, wait until the data directory stops changing,
//!   then SIGTERM (1.79 writes its in-memory parts only then); bytes per sample =
//!   (`data` + `indexdb`) / samples accepted.
//! * Lookout: SIGTERM (flushes the head to blocks and exits); bytes per sample = the
//!   `blocks` directories / samples accepted; the whole data dir is reported too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};
use crate::procstat;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ServerKind {
    Prometheus,
    VictoriaMetrics,
    Lookout,
}

impl ServerKind {
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Prometheus => "prometheus",
            ServerKind::VictoriaMetrics => "victoria-metrics",
            ServerKind::Lookout => "lookout",
        }
    }
}

pub struct ServerHandle {
    pub kind: ServerKind,
    child: Option<Child>,
    pub pid: u32,
    pub port: u16,
    /// Lookout's OTLP/HTTP listener (`None` for the other servers).
    pub otlp_http_port: Option<u16>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub version: String,
}

fn free_port() -> Result<u16> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| BenchError::io("127.0.0.1:0", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| BenchError::io("127.0.0.1:0", e))
}

pub fn version_of(bin: &Path, flag: &str) -> String {
    Command::new(bin)
        .arg(flag)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .filter(|v| !v.is_empty())
        .or_else(|| package_version(bin))
        .unwrap_or_default()
}

/// The Debian package version owning `bin` (VictoriaMetrics 1.79 prints nothing for
/// `-version` in Debian's build).
fn package_version(bin: &Path) -> Option<String> {
    let pkg = bin.file_name()?.to_str()?;
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", pkg])
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !v.is_empty()).then(|| format!("{pkg} {v} (dpkg)"))
}

/// Where the binaries are; Lookout's comes from the release build.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub prometheus: PathBuf,
    pub victoria_metrics: PathBuf,
    pub lookout: PathBuf,
    /// Optional Lookout config file passed with `--config`.
    pub lookout_config: Option<PathBuf>,
}

impl ServerHandle {
    /// Starts `kind` with an empty data directory in `work/<name>/`.
    pub fn start(kind: ServerKind, work: &Path, bins: &Binaries) -> Result<Self> {
        let dir = work.join(kind.name());
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| BenchError::io(&dir, e))?;
        }
        Self::start_in(kind, &dir, bins)
    }

    /// Starts `kind` on whatever `dir/data` holds (created if missing), logging to
    /// `dir/server.log` (appended, so restarts keep earlier output).
    pub fn start_in(kind: ServerKind, dir: &Path, bins: &Binaries) -> Result<Self> {
        let data_dir = dir.join("data");
        std::fs::create_dir_all(&data_dir).map_err(|e| BenchError::io(&data_dir, e))?;
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let otlp_http_port = match kind {
            ServerKind::Lookout => Some(free_port()?),
            _ => None,
        };
        let (bin, args, version): (&Path, Vec<String>, String) = match kind {
            ServerKind::Prometheus => {
                let cfg = dir.join("prometheus.yml");
                // no scrape jobs: the server stores only the benchmark stream
                std::fs::write(
                    &cfg,
                    "global:\n  scrape_interval: 10s\nscrape_configs: []\n",
                )
                .map_err(|e| BenchError::io(&cfg, e))?;
                (
                    &bins.prometheus,
                    vec![
                        format!("--config.file={}", cfg.display()),
                        format!("--storage.tsdb.path={}", data_dir.display()),
                        "--storage.tsdb.retention.time=100y".into(),
                        format!("--web.listen-address={addr}"),
                        "--web.enable-remote-write-receiver".into(),
                        "--log.level=warn".into(),
                    ],
                    version_of(&bins.prometheus, "--version"),
                )
            }
            ServerKind::VictoriaMetrics => (
                &bins.victoria_metrics,
                vec![
                    format!("-storageDataPath={}", data_dir.display()),
                    format!("-httpListenAddr={addr}"),
                    "-retentionPeriod=100y".into(),
                    "-loggerLevel=WARN".into(),
                ],
                version_of(&bins.victoria_metrics, "-version"),
            ),
            ServerKind::Lookout => {
                let mut args = vec!["serve".to_string()];
                if let Some(cfg) = &bins.lookout_config {
                    args.push(format!("--config={}", cfg.display()));
                }
                args.push(format!("--data-dir={}", data_dir.display()));
                args.push(format!("--http-addr={addr}"));
                args.push(format!("--otlp-grpc-addr=127.0.0.1:{}", free_port()?));
                if let Some(p) = otlp_http_port {
                    args.push(format!("--otlp-http-addr=127.0.0.1:{p}"));
                }
                (&bins.lookout, args, version_of(&bins.lookout, "--version"))
            }
        };
        let log = dir.join("server.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| BenchError::io(&log, e))?;
        let log_err = log_file.try_clone().map_err(|e| BenchError::io(&log, e))?;
        let command = format!("{} {}", bin.display(), args.join(" "));
        let mut cmd = Command::new(bin);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        if kind == ServerKind::Lookout {
            cmd.env(
                "RUST_LOG",
                std::env::var("LOOKOUT_BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        }
        let child = cmd.spawn().map_err(|source| BenchError::Spawn {
            server: kind.name().into(),
            command: command.clone(),
            source,
        })?;
        tracing::info!(server = kind.name(), pid = child.id(), %command, "started server");
        Ok(ServerHandle {
            kind,
            pid: child.id(),
            child: Some(child),
            port,
            otlp_http_port,
            data_dir,
            log,
            version,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Base URL of Lookout's OTLP/HTTP listener.
    pub fn otlp_http_url(&self) -> Option<String> {
        self.otlp_http_port.map(|p| format!("http://127.0.0.1:{p}"))
    }

    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.base_url())
    }

    fn ready_url(&self) -> String {
        match self.kind {
            ServerKind::VictoriaMetrics => format!("{}/health", self.base_url()),
            _ => format!("{}/-/ready", self.base_url()),
        }
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(BenchError::Exited {
                    server: self.kind.name().into(),
                    status: status.to_string(),
                    log: self.log.clone(),
                });
            }
        }
        Ok(())
    }

    pub async fn wait_ready(&mut self, client: &reqwest::Client, timeout: Duration) -> Result<()> {
        let url = self.ready_url();
        let started = Instant::now();
        let mut last = String::from("no answer yet");
        while started.elapsed() < timeout {
            self.check_alive()?;
            match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("HTTP {}", r.status()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(BenchError::NotReady {
            server: self.kind.name().into(),
            url,
            secs: timeout.as_secs(),
            last,
        })
    }

    pub fn cpu_secs(&mut self) -> Result<f64> {
        self.check_alive()?;
        procstat::process_cpu_secs(self.pid)
    }

    pub fn peak_rss(&mut self) -> Result<u64> {
        self.check_alive()?;
        procstat::peak_rss_bytes(self.pid)
    }

    /// SIGTERM, then wait for exit; returns the process's final CPU seconds, read from the
    /// zombie before it is reaped.
    pub async fn stop(&mut self, timeout: Duration) -> Result<f64> {
        let Some(mut child) = self.child.take() else {
            return Err(BenchError::Server {
                server: self.kind.name().into(),
                reason: "already stopped".into(),
            });
        };
        let pid = self.pid.to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|e| BenchError::io("kill", e))?;
        if !status.success() {
            return Err(BenchError::Server {
                server: self.kind.name().into(),
                reason: format!("kill -TERM {pid} failed: {status}"),
            });
        }
        let started = Instant::now();
        let mut last_cpu = 0.0;
        // the /proc entry vanishes only if someone else reaped the process
        while let Ok((cpu, zombie)) = procstat::process_cpu_and_zombie(self.pid) {
            last_cpu = cpu;
            if zombie {
                break;
            }
            if started.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                return Err(BenchError::Server {
                    server: self.kind.name().into(),
                    reason: format!(
                        "did not exit within {}s of SIGTERM; killed",
                        timeout.as_secs()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let status = child
            .wait()
            .map_err(|e| BenchError::io(format!("wait for pid {pid}"), e))?;
        tracing::info!(server = self.kind.name(), %status, cpu_secs = last_cpu, "server stopped");
        Ok(last_cpu)
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        // a failed run must not leave a server holding CPU for the next one
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a server has persisted, measured the server's own way (see the module docs).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Persisted {
    pub bytes: u64,
    /// Samples those bytes hold, when the server says (Prometheus block `meta.json`).
    pub samples: Option<u64>,
    pub data_dir_bytes: u64,
    pub breakdown: BTreeMap<String, u64>,
    pub note: String,
}

#[derive(Deserialize)]
struct BlockMeta {
    #[serde(rename = "minTime")]
    min_time: i64,
    #[serde(rename = "maxTime")]
    max_time: i64,
    stats: BlockStats,
}

#[derive(Deserialize)]
struct BlockStats {
    #[serde(rename = "numSamples", default)]
    num_samples: u64,
    #[serde(rename = "numSeries", default)]
    num_series: u64,
}

fn prometheus_blocks(data_dir: &Path) -> Vec<(PathBuf, BlockMeta)> {
    let Ok(rd) = std::fs::read_dir(data_dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let meta = std::fs::read(e.path().join("meta.json")).ok()?;
            Some((e.path(), serde_json::from_slice(&meta).ok()?))
        })
        .collect()
}

/// Waits for Prometheus's head compaction to write its first block, then measures it.
pub async fn persist_prometheus(h: &ServerHandle, timeout: Duration) -> Result<Persisted> {
    let started = Instant::now();
    loop {
        let blocks = prometheus_blocks(&h.data_dir);
        // a block dir appears with meta.json only once complete (written to a .tmp dir first)
        if !blocks.is_empty() {
            let mut p = Persisted::default();
            let mut samples = 0;
            let mut series = 0;
            let mut ranges = Vec::new();
            for (path, meta) in &blocks {
                p.bytes += procstat::dir_bytes(path);
                samples += meta.stats.num_samples;
                series += meta.stats.num_series;
                ranges.push(format!("{}..{}", meta.min_time, meta.max_time));
            }
            p.samples = Some(samples);
            p.data_dir_bytes = procstat::dir_bytes(&h.data_dir);
            p.breakdown.insert("blocks".into(), p.bytes);
            p.breakdown
                .insert("wal".into(), procstat::dir_bytes(&h.data_dir.join("wal")));
            p.breakdown.insert(
                "chunks_head".into(),
                procstat::dir_bytes(&h.data_dir.join("chunks_head")),
            );
            p.note = format!(
                "{} compacted block(s) [{}], {series} series; bytes = block dirs (chunks+index+meta), samples = meta.json numSamples",
                blocks.len(),
                ranges.join(", ")
            );
            return Ok(p);
        }
        if started.elapsed() > timeout {
            return Err(BenchError::Server {
                server: "prometheus".into(),
                reason: format!(
                    "no block compacted in {} within {}s (does the stream span more than 3h?)",
                    h.data_dir.display(),
                    timeout.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until `dir`'s size has not changed for `stable` polls (background merges settled).
async fn wait_stable(dir: &Path, stable: u32, max: Duration) -> u64 {
    let started = Instant::now();
    let mut last = procstat::dir_bytes(dir);
    let mut same = 0;
    while same < stable && started.elapsed() < max {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = procstat::dir_bytes(dir);
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

/// Asks VictoriaMetrics to flush (`/internal/force_flush`) and waits until its data directory
/// stops changing; the sizes are taken after its graceful shutdown, see [`persisted_victoria`].
pub async fn flush_victoria(h: &ServerHandle, client: &reqwest::Client) -> Result<()> {
    let url = format!("{}/internal/force_flush", h.base_url());
    let r = client
        .get(&url)
        .send()
        .await
        .map_err(|e| BenchError::Http {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    if !r.status().is_success() {
        return Err(BenchError::Http {
            url,
            reason: format!("HTTP {}", r.status()),
        });
    }
    wait_stable(&h.data_dir, 3, Duration::from_secs(60)).await;
    Ok(())
}

/// Measures VictoriaMetrics's storage after it exited: 1.79 keeps recent parts in memory even
/// after `force_flush` (measured here: the `data` dir was still empty), and writes them on
/// SIGTERM. `cache/` holds rebuildable caches and is excluded from bytes per sample.
pub fn persisted_victoria(data_dir: &Path, accepted: u64) -> Persisted {
    let data = procstat::dir_bytes(&data_dir.join("data"));
    let index = procstat::dir_bytes(&data_dir.join("indexdb"));
    let mut p = Persisted {
        bytes: data + index,
        samples: None,
        data_dir_bytes: procstat::dir_bytes(data_dir),
        ..Default::default()
    };
    p.breakdown.insert("data".into(), data);
    p.breakdown.insert("indexdb".into(), index);
    p.breakdown
        .insert("cache".into(), procstat::dir_bytes(&data_dir.join("cache")));
    p.note = format!(
        "force_flush, then sizes after graceful shutdown; bytes = data + indexdb (cache excluded), samples = {accepted} acknowledged"
    );
    p
}

/// Sums the sizes of every directory named `name` below `root`.
fn named_dirs_bytes(root: &Path, name: &str) -> u64 {
    let Ok(rd) = std::fs::read_dir(root) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| {
            if e.file_name() == name {
                procstat::dir_bytes(&e.path())
            } else {
                named_dirs_bytes(&e.path(), name)
            }
        })
        .sum()
}

#[derive(Deserialize)]
struct LookoutBlockMeta {
    num_samples: u64,
}

/// Samples recorded in the `meta.json` of every block below `root`, if any block has one.
fn lookout_block_samples(root: &Path) -> Option<u64> {
    let mut found = None;
    for e in std::fs::read_dir(root).ok()?.flatten() {
        let path = e.path();
        if !path.is_dir() {
            continue;
        }
        let meta = std::fs::read(path.join("meta.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<LookoutBlockMeta>(&b).ok());
        let n = match meta {
            Some(m) => Some(m.num_samples),
            None => lookout_block_samples(&path),
        };
        if let Some(n) = n {
            *found.get_or_insert(0) += n;
        }
    }
    found
}

/// Measures Lookout's data directory after its shutdown flush.
pub fn persisted_lookout(data_dir: &Path, accepted: u64) -> Persisted {
    let blocks = named_dirs_bytes(data_dir, "blocks");
    let total = procstat::dir_bytes(data_dir);
    let samples = lookout_block_samples(data_dir);
    let mut p = Persisted {
        bytes: blocks,
        samples,
        data_dir_bytes: total,
        ..Default::default()
    };
    p.breakdown.insert("blocks".into(), blocks);
    p.breakdown
        .insert("wal".into(), named_dirs_bytes(data_dir, "wal"));
    p.breakdown
        .insert("meta.sled".into(), named_dirs_bytes(data_dir, "meta.sled"));
    p.note = format!(
        "after SIGTERM flush; bytes = all `blocks` dirs, samples = blocks' meta.json num_samples ({}; {accepted} acknowledged); data dir total reported too",
        samples.map(|n| n.to_string()).unwrap_or_else(|| "absent".into())
    );
    p
}

/// Sum of a counter family in a Prometheus text exposition, over lines whose labels contain
/// `label_filter` (empty: all).
pub fn metric_sum(exposition: &str, name: &str, label_filter: &str) -> Option<f64> {
    let mut found = None;
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) || !rest.contains(label_filter) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// The samples a server itself reports having ingested, as a cross-check of the sender.
pub async fn server_reported_samples(h: &ServerHandle, client: &reqwest::Client) -> Option<f64> {
    let text = client
        .get(format!("{}/metrics", h.base_url()))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    match h.kind {
        ServerKind::Prometheus => {
            metric_sum(&text, "prometheus_tsdb_head_samples_appended_total", "")
        }
        ServerKind::VictoriaMetrics => {
            metric_sum(&text, "vm_rows_inserted_total", "promremotewrite")
        }
        ServerKind::Lookout => metric_sum(&text, "lookout_ingest_samples_total", ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_filters_by_name_and_label() {
        let text = "# HELP x\nvm_rows_inserted_total{type=\"promremotewrite\"} 10\nvm_rows_inserted_total{type=\"influx\"} 5\nvm_rows_inserted_total_other 7\n";
        assert_eq!(
            metric_sum(text, "vm_rows_inserted_total", "promremotewrite"),
            Some(10.0)
        );
        assert_eq!(metric_sum(text, "vm_rows_inserted_total", ""), Some(15.0));
        assert_eq!(metric_sum(text, "nope", ""), None);
    }

    #[test]
    fn lookout_blocks_found_at_any_depth() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("metrics/blocks/b1")).unwrap();
        std::fs::create_dir_all(d.path().join("metrics/wal")).unwrap();
        std::fs::write(d.path().join("metrics/blocks/b1/chunks"), [0u8; 100]).unwrap();
        std::fs::write(d.path().join("metrics/wal/000001"), [0u8; 7]).unwrap();
        let p = persisted_lookout(d.path(), 50);
        assert_eq!(p.bytes, 100);
        assert_eq!(p.samples, None);
        assert_eq!(p.data_dir_bytes, 107);
        std::fs::write(
            d.path().join("metrics/blocks/b1/meta.json"),
            r#"{"num_samples":40,"num_series":1}"#,
        )
        .unwrap();
        let p = persisted_lookout(d.path(), 50);
        assert_eq!(p.samples, Some(40));
        assert_eq!(p.breakdown["wal"], 7);
    }

    #[test]
    fn prometheus_block_meta_is_read() {
        let d = tempfile::tempdir().unwrap();
        let b = d.path().join("01ABC");
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("meta.json"), r#"{"ulid":"01ABC","minTime":0,"maxTime":7200000,"stats":{"numSamples":720,"numSeries":1,"numChunks":6},"version":1}"#).unwrap();
        let blocks = prometheus_blocks(d.path());
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].1.stats.num_samples, 720);
    }
}
