//! What each store holds before it is queried: waiting until background work (Prometheus's
//! head compaction and block merges, Lookout's block compaction) has finished, then
//! describing the blocks and the head, so the report says which storage each query read.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::procstat;
use crate::servers::{metric_sum, ServerHandle, ServerKind};

#[derive(Clone, Debug, Serialize)]
pub struct BlockInfo {
    pub min_time_ms: i64,
    pub max_time_ms: i64,
    pub samples: u64,
    pub series: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StoreState {
    pub server: String,
    pub blocks: Vec<BlockInfo>,
    pub head_series: Option<f64>,
    pub head_samples: Option<f64>,
    /// Prometheus: the head's time range (from `/api/v1/status/tsdb`).
    pub head_min_time_ms: Option<i64>,
    pub head_max_time_ms: Option<i64>,
    pub data_dir_bytes: u64,
    pub rss_bytes: Option<u64>,
    /// Seconds waited for background work to finish.
    pub settle_secs: f64,
    pub summary: String,
}

#[derive(Deserialize)]
struct PromMeta {
    #[serde(rename = "minTime")]
    min_time: i64,
    #[serde(rename = "maxTime")]
    max_time: i64,
    stats: PromStats,
}

#[derive(Deserialize)]
struct PromStats {
    #[serde(rename = "numSamples", default)]
    num_samples: u64,
    #[serde(rename = "numSeries", default)]
    num_series: u64,
}

#[derive(Deserialize)]
struct LookoutMeta {
    min_time: i64,
    max_time: i64,
    num_samples: u64,
    num_series: u64,
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// Directories holding the server's blocks (Lookout keeps them below `metrics/blocks`).
fn block_parent(kind: ServerKind, data_dir: &Path) -> PathBuf {
    match kind {
        ServerKind::Lookout => data_dir.join("metrics").join("blocks"),
        _ => data_dir.to_path_buf(),
    }
}

/// Every complete block (a directory with a readable `meta.json`), oldest first.
pub fn blocks(kind: ServerKind, data_dir: &Path) -> Vec<BlockInfo> {
    let mut out: Vec<BlockInfo> = subdirs(&block_parent(kind, data_dir))
        .into_iter()
        .filter_map(|dir| {
            let meta = std::fs::read(dir.join("meta.json")).ok()?;
            let (min_time_ms, max_time_ms, samples, series) = match kind {
                ServerKind::Lookout => {
                    let m: LookoutMeta = serde_json::from_slice(&meta).ok()?;
                    (m.min_time, m.max_time, m.num_samples, m.num_series)
                }
                _ => {
                    let m: PromMeta = serde_json::from_slice(&meta).ok()?;
                    (
                        m.min_time,
                        m.max_time,
                        m.stats.num_samples,
                        m.stats.num_series,
                    )
                }
            };
            Some(BlockInfo {
                min_time_ms,
                max_time_ms,
                samples,
                series,
                bytes: procstat::dir_bytes(&dir),
            })
        })
        .collect();
    out.sort_by_key(|b| (b.min_time_ms, b.max_time_ms));
    out
}

/// Names of everything in the block directory (temporary and deleted-pending ones too),
/// which changes whenever a compaction starts or ends.
fn fingerprint(kind: ServerKind, data_dir: &Path) -> Vec<String> {
    subdirs(&block_parent(kind, data_dir))
        .iter()
        .map(|p| {
            let done = p.join("meta.json").exists();
            format!("{}:{done}", p.display())
        })
        .collect()
}

/// Waits until the server has been idle (under 0.2 CPU-seconds per 5 s) and its block
/// directory unchanged for `quiet`, or `max` passed; returns the seconds waited.
pub async fn settle(h: &mut ServerHandle, quiet: Duration, max: Duration) -> Result<f64> {
    let started = Instant::now();
    let poll = Duration::from_secs(5);
    let mut last = fingerprint(h.kind, &h.data_dir);
    let mut cpu = h.cpu_secs()?;
    let mut quiet_since = Instant::now();
    loop {
        tokio::time::sleep(poll).await;
        let now = fingerprint(h.kind, &h.data_dir);
        let c = h.cpu_secs()?;
        if now != last || c - cpu > 0.2 {
            quiet_since = Instant::now();
        }
        last = now;
        cpu = c;
        if quiet_since.elapsed() >= quiet {
            break;
        }
        if started.elapsed() >= max {
            tracing::warn!(
                server = h.kind.name(),
                secs = started.elapsed().as_secs(),
                "server still busy; querying anyway"
            );
            break;
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

#[derive(Deserialize)]
struct TsdbStatus {
    data: TsdbData,
}

#[derive(Deserialize)]
struct TsdbData {
    #[serde(rename = "headStats")]
    head_stats: HeadStats,
}

#[derive(Deserialize)]
struct HeadStats {
    #[serde(rename = "numSeries")]
    num_series: f64,
    #[serde(rename = "minTime")]
    min_time: i64,
    #[serde(rename = "maxTime")]
    max_time: i64,
}

fn fmt_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (h, m) = (secs.div_euclid(3600) % 24, secs.div_euclid(60) % 60);
    format!("{h:02}:{m:02}")
}

/// Describes what `h` holds now.
pub async fn describe(
    h: &mut ServerHandle,
    client: &reqwest::Client,
    settle_secs: f64,
) -> StoreState {
    let blocks = blocks(h.kind, &h.data_dir);
    let metrics = match client.get(format!("{}/metrics", h.base_url())).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let (mut head_series, head_samples) = match h.kind {
        ServerKind::Lookout => (
            metric_sum(&metrics, "lookout_tsdb_head_series", ""),
            metric_sum(&metrics, "lookout_tsdb_head_samples", ""),
        ),
        _ => (
            metric_sum(&metrics, "prometheus_tsdb_head_series", ""),
            None,
        ),
    };
    let (mut head_min, mut head_max) = (None, None);
    if h.kind == ServerKind::Prometheus {
        let url = format!("{}/api/v1/status/tsdb", h.base_url());
        if let Ok(r) = client.get(&url).send().await {
            if let Ok(s) = r.json::<TsdbStatus>().await {
                head_series = Some(s.data.head_stats.num_series);
                if s.data.head_stats.min_time <= s.data.head_stats.max_time {
                    head_min = Some(s.data.head_stats.min_time);
                    head_max = Some(s.data.head_stats.max_time);
                }
            }
        }
    }
    let ranges: Vec<String> = blocks
        .iter()
        .map(|b| {
            format!(
                "{}-{} ({:.1}h)",
                fmt_ms(b.min_time_ms),
                fmt_ms(b.max_time_ms),
                (b.max_time_ms - b.min_time_ms) as f64 / 3.6e6
            )
        })
        .collect();
    let head = match (h.kind, head_min, head_max, head_samples) {
        (_, Some(a), Some(b), _) => format!(
            "head {}-{} ({:.1}h)",
            fmt_ms(a),
            fmt_ms(b),
            (b - a) as f64 / 3.6e6
        ),
        (_, _, _, Some(n)) if n > 0.0 => format!("head {n} samples"),
        _ => "head empty".to_string(),
    };
    let summary = format!(
        "{} block(s) [{}] (UTC), {head}",
        blocks.len(),
        ranges.join(", ")
    );
    StoreState {
        server: h.kind.name().into(),
        head_series,
        head_samples,
        head_min_time_ms: head_min,
        head_max_time_ms: head_max,
        data_dir_bytes: procstat::dir_bytes(&h.data_dir),
        rss_bytes: procstat::rss_bytes(h.pid).ok(),
        settle_secs,
        summary,
        blocks,
    }
}
