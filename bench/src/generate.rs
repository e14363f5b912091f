//! The seeded data generator: a fleet of scrape targets exposing a realistic catalog of
//! series (node, HTTP and Go runtime metrics), rendered as Prometheus remote-write requests
//! and written once to per-shard stream files that every server is then fed from.
//!
//! Shape, chosen to resemble what a Prometheus sends when it forwards scrapes:
//! * each target (`job`, `instance`, `env`, `region`) exposes [`series_per_target`] series;
//!   counters increase (integer request counts, CPU seconds at 0.01 s resolution), gauges do a
//!   random walk (memory bytes in pages, load, GC quantiles at full precision), some are
//!   constant (`up`, `*_info`, start times);
//! * all series of a target share one scrape timestamp: a fixed per-target offset within the
//!   interval plus, on ~1 % of scrapes, up to ±100 ms of jitter;
//! * series are split over shards by index (Prometheus shards by series hash); each shard's
//!   stream is in time order and cut into requests of `samples_per_request` one-sample
//!   `TimeSeries` entries, which is how Prometheus's queue manager batches.
//!
//! Stream file format: repeated `[u32 little-endian length][snappy block]`, one request each.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};
use crate::proto;

/// Prometheus's default TSDB block range; the data is aligned to it so that Prometheus's
/// first compaction writes one full block.
pub const BLOCK_RANGE_MS: i64 = 2 * 3600 * 1000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenParams {
    pub series: usize,
    pub interval_ms: i64,
    pub duration_ms: i64,
    pub shards: usize,
    pub samples_per_request: usize,
    pub seed: u64,
}

impl GenParams {
    pub fn validate(&self) -> Result<()> {
        let bad = |name, value: String, reason: &str| {
            Err(BenchError::BadParam {
                name,
                value,
                reason: reason.to_string(),
            })
        };
        if self.series == 0 {
            return bad("series", self.series.to_string(), "must be positive");
        }
        if self.interval_ms < 1000 {
            return bad(
                "interval",
                format!("{}ms", self.interval_ms),
                "must be at least 1s",
            );
        }
        if self.duration_ms < self.interval_ms {
            return bad(
                "duration",
                format!("{}ms", self.duration_ms),
                "must cover one interval",
            );
        }
        if self.shards == 0 || self.shards > 256 {
            return bad("shards", self.shards.to_string(), "must be in 1..=256");
        }
        if self.samples_per_request == 0 {
            return bad(
                "samples-per-request",
                self.samples_per_request.to_string(),
                "must be positive",
            );
        }
        Ok(())
    }

    pub fn points_per_series(&self) -> u64 {
        (self.duration_ms / self.interval_ms) as u64
    }

    pub fn total_samples(&self) -> u64 {
        self.points_per_series() * self.series as u64
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardFile {
    pub file: String,
    pub requests: u64,
    pub samples: u64,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
}

/// Written last, so a stream directory without it is an unfinished generation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub params: GenParams,
    pub start_ms: i64,
    pub end_ms: i64,
    pub targets: usize,
    pub counters: usize,
    pub gauges: usize,
    pub constants: usize,
    pub shards: Vec<ShardFile>,
    pub generated_at_ms: i64,
    pub generate_secs: f64,
}

impl Manifest {
    pub fn total_samples(&self) -> u64 {
        self.shards.iter().map(|s| s.samples).sum()
    }
    pub fn total_requests(&self) -> u64 {
        self.shards.iter().map(|s| s.requests).sum()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    CounterInt,
    CounterSeconds,
    GaugeBytes,
    GaugeFloat,
    GaugeSmall,
    Constant,
}

struct Family {
    name: &'static str,
    kind: Kind,
    dims: &'static [(&'static str, &'static [&'static str])],
}

const HANDLERS: &[&str] = &["/api/v1/orders", "/api/v1/users", "/healthz"];
const DISKS: &[&str] = &["nvme0n1", "sda", "sdb"];

const CATALOG: &[Family] = &[
    Family {
        name: "up",
        kind: Kind::Constant,
        dims: &[],
    },
    Family {
        name: "build_info",
        kind: Kind::Constant,
        dims: &[("version", &["1.4.2"])],
    },
    Family {
        name: "process_start_time_seconds",
        kind: Kind::Constant,
        dims: &[],
    },
    Family {
        name: "node_memory_MemTotal_bytes",
        kind: Kind::Constant,
        dims: &[],
    },
    Family {
        name: "node_cpu_seconds_total",
        kind: Kind::CounterSeconds,
        dims: &[
            ("cpu", &["0", "1", "2", "3"]),
            ("mode", &["idle", "iowait", "system", "user"]),
        ],
    },
    Family {
        name: "http_requests_total",
        kind: Kind::CounterInt,
        dims: &[
            ("code", &["200", "404", "500"]),
            ("handler", HANDLERS),
            ("method", &["GET", "POST"]),
        ],
    },
    Family {
        name: "http_request_duration_seconds_bucket",
        kind: Kind::CounterInt,
        dims: &[
            ("handler", HANDLERS),
            ("le", &["0.05", "0.1", "0.25", "0.5", "1", "+Inf"]),
        ],
    },
    Family {
        name: "http_request_duration_seconds_sum",
        kind: Kind::CounterSeconds,
        dims: &[("handler", HANDLERS)],
    },
    Family {
        name: "http_request_duration_seconds_count",
        kind: Kind::CounterInt,
        dims: &[("handler", HANDLERS)],
    },
    Family {
        name: "node_network_receive_bytes_total",
        kind: Kind::CounterInt,
        dims: &[("device", &["eth0", "lo"])],
    },
    Family {
        name: "node_network_transmit_bytes_total",
        kind: Kind::CounterInt,
        dims: &[("device", &["eth0", "lo"])],
    },
    Family {
        name: "node_disk_read_bytes_total",
        kind: Kind::CounterInt,
        dims: &[("device", DISKS)],
    },
    Family {
        name: "node_disk_io_time_seconds_total",
        kind: Kind::CounterSeconds,
        dims: &[("device", DISKS)],
    },
    Family {
        name: "node_memory_MemAvailable_bytes",
        kind: Kind::GaugeBytes,
        dims: &[],
    },
    Family {
        name: "process_resident_memory_bytes",
        kind: Kind::GaugeBytes,
        dims: &[],
    },
    Family {
        name: "node_filesystem_avail_bytes",
        kind: Kind::GaugeBytes,
        dims: &[("device", DISKS), ("fstype", &["ext4"])],
    },
    Family {
        name: "node_load1",
        kind: Kind::GaugeFloat,
        dims: &[],
    },
    Family {
        name: "go_gc_duration_seconds",
        kind: Kind::GaugeFloat,
        dims: &[("quantile", &["0", "0.25", "0.5", "0.75", "1"])],
    },
    Family {
        name: "go_goroutines",
        kind: Kind::GaugeSmall,
        dims: &[],
    },
    Family {
        name: "process_open_fds",
        kind: Kind::GaugeSmall,
        dims: &[],
    },
];

const JOBS: &[&str] = &[
    "node",
    "api-gateway",
    "orders",
    "payments",
    "users",
    "inventory",
    "search",
    "mailer",
];
const ENVS: &[&str] = &["prod", "prod", "prod", "staging"];
const REGIONS: &[&str] = &["cn-north-1", "cn-east-2", "ap-southeast-1"];

/// One target's series: (family index, its dimension labels), in catalog order.
fn target_template() -> Vec<(usize, Vec<(&'static str, &'static str)>)> {
    let mut out = Vec::new();
    for (fi, fam) in CATALOG.iter().enumerate() {
        let mut combos: Vec<Vec<(&'static str, &'static str)>> = vec![Vec::new()];
        for (dim, values) in fam.dims {
            let mut next = Vec::with_capacity(combos.len() * values.len());
            for c in &combos {
                for v in *values {
                    let mut c2 = c.clone();
                    c2.push((*dim, *v));
                    next.push(c2);
                }
            }
            combos = next;
        }
        out.extend(combos.into_iter().map(|c| (fi, c)));
    }
    out
}

/// A generated series: its encoded labels, target and evolving value.
struct SeriesState {
    labels: Vec<u8>,
    target: usize,
    kind: Kind,
    value: f64,
    /// Counters: mean increase per second. Gauges: relative step size.
    param: f64,
    rng: StdRng,
}

impl SeriesState {
    fn advance(&mut self, interval_s: f64) {
        let u: f64 = self.rng.random();
        match self.kind {
            Kind::Constant => {}
            Kind::CounterInt => self.value += (self.param * interval_s * (0.5 + u)).round(),
            Kind::CounterSeconds => {
                let inc = self.param * interval_s * (0.8 + 0.4 * u);
                self.value = ((self.value + inc) * 100.0).round() / 100.0;
            }
            Kind::GaugeBytes => {
                let step = self.value * self.param * (u - 0.5);
                self.value = ((self.value + step) / 4096.0).round().max(1.0) * 4096.0;
            }
            Kind::GaugeFloat => {
                self.value = (self.value * (1.0 + self.param * (u - 0.5))).max(1e-6);
            }
            Kind::GaugeSmall => {
                let step = (u * 5.0).floor() - 2.0;
                self.value = (self.value + step).max(1.0);
            }
        }
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn build_series(params: &GenParams) -> (Vec<SeriesState>, usize) {
    let template = target_template();
    let per_target = template.len();
    let targets = params.series.div_ceil(per_target);
    let mut out = Vec::with_capacity(params.series);
    'outer: for t in 0..targets {
        let job = JOBS[t % JOBS.len()];
        let instance = format!("10.{}.{}.{}:9100", (t >> 16) & 255, (t >> 8) & 255, t & 255);
        let env = ENVS[(t / JOBS.len()) % ENVS.len()];
        let region = REGIONS[(t / 7) % REGIONS.len()];
        for (fi, dims) in &template {
            if out.len() == params.series {
                break 'outer;
            }
            let fam = &CATALOG[*fi];
            let mut labels: Vec<(String, String)> = vec![
                ("__name__".into(), fam.name.into()),
                ("env".into(), env.into()),
                ("instance".into(), instance.clone()),
                ("job".into(), job.into()),
                ("region".into(), region.into()),
            ];
            labels.extend(dims.iter().map(|(n, v)| (n.to_string(), v.to_string())));
            labels.sort();
            let idx = out.len() as u64;
            let mut rng = StdRng::seed_from_u64(splitmix64(params.seed ^ splitmix64(idx)));
            let u: f64 = rng.random();
            let (value, param) = match fam.kind {
                Kind::Constant => match fam.name {
                    "process_start_time_seconds" => (1.7e9 + (u * 1e6).round(), 0.0),
                    "node_memory_MemTotal_bytes" => {
                        (((8 + (u * 4.0) as u64 * 8) << 30) as f64, 0.0)
                    }
                    _ => (1.0, 0.0),
                },
                // log-uniform rates: most series are quiet, a few are hot
                Kind::CounterInt => ((u * 1e6).round(), 10f64.powf(rng.random_range(-2.0..3.0))),
                Kind::CounterSeconds => ((u * 1e5).round() / 100.0, rng.random_range(0.001..1.0)),
                Kind::GaugeBytes => (
                    (((1u64 << 30) as f64) * (1.0 + 7.0 * u) / 4096.0).round() * 4096.0,
                    0.002,
                ),
                Kind::GaugeFloat => (0.05 + u * 2.0, 0.2),
                Kind::GaugeSmall => ((20.0 + u * 200.0).round(), 0.0),
            };
            out.push(SeriesState {
                labels: proto::encode_labels(&labels),
                target: t,
                kind: fam.kind,
                value,
                param,
                rng,
            });
        }
    }
    (out, targets)
}

/// Scrape offset of a target within the interval, plus jitter on ~1 % of its scrapes; kept
/// within ±100 ms of the offset so per-series timestamps stay strictly increasing.
fn scrape_ts(seed: u64, start_ms: i64, interval_ms: i64, target: usize, step: u64) -> i64 {
    let h = splitmix64(seed ^ splitmix64(target as u64 ^ 0x5eed));
    let offset = 100 + (h % (interval_ms as u64 - 200)) as i64;
    let j = splitmix64(h ^ step);
    let jitter = if j.is_multiple_of(100) {
        ((j >> 8) % 201) as i64 - 100
    } else {
        0
    };
    start_ms + step as i64 * interval_ms + offset + jitter
}

/// Start of the data: the latest block-range boundary from which `duration` still ends before
/// now, so the stream is recent (every server accepts it) and Prometheus's first compaction
/// covers a full block.
pub fn aligned_start(now_ms: i64, duration_ms: i64) -> i64 {
    let latest = now_ms - duration_ms - 60_000;
    latest.div_euclid(BLOCK_RANGE_MS) * BLOCK_RANGE_MS
}

fn write_shard(
    path: &Path,
    series: &mut [&mut SeriesState],
    params: &GenParams,
    start_ms: i64,
) -> Result<ShardFile> {
    let file = File::create(path).map_err(|e| BenchError::io(path, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut enc = snap::raw::Encoder::new();
    let mut body = Vec::with_capacity(params.samples_per_request * 200);
    let mut in_body = 0usize;
    let mut stats = ShardFile {
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        requests: 0,
        samples: 0,
        compressed_bytes: 0,
        uncompressed_bytes: 0,
    };
    let interval_s = params.interval_ms as f64 / 1000.0;
    let mut flush = |body: &mut Vec<u8>, n: usize, stats: &mut ShardFile| -> Result<()> {
        let compressed = enc
            .compress_vec(body)
            .map_err(|e| BenchError::CorruptStream {
                path: path.to_path_buf(),
                reason: format!("snappy compression failed: {e}"),
            })?;
        let len = u32::try_from(compressed.len()).map_err(|_| BenchError::BadParam {
            name: "samples-per-request",
            value: params.samples_per_request.to_string(),
            reason: "a request exceeds 4 GiB".into(),
        })?;
        w.write_all(&len.to_le_bytes())
            .map_err(|e| BenchError::io(path, e))?;
        w.write_all(&compressed)
            .map_err(|e| BenchError::io(path, e))?;
        stats.requests += 1;
        stats.samples += n as u64;
        stats.compressed_bytes += compressed.len() as u64 + 4;
        stats.uncompressed_bytes += body.len() as u64;
        body.clear();
        Ok(())
    };
    for step in 0..params.points_per_series() {
        for s in series.iter_mut() {
            if step > 0 {
                s.advance(interval_s);
            }
            let ts = scrape_ts(params.seed, start_ms, params.interval_ms, s.target, step);
            proto::push_series(&s.labels, s.value, ts, &mut body);
            in_body += 1;
            if in_body == params.samples_per_request {
                flush(&mut body, in_body, &mut stats)?;
                in_body = 0;
            }
        }
    }
    if in_body > 0 {
        flush(&mut body, in_body, &mut stats)?;
    }
    w.flush().map_err(|e| BenchError::io(path, e))?;
    Ok(stats)
}

/// Generates the stream into `dir` unless a manifest for the same parameters, recent enough
/// for every server's age limit, is already there.
pub fn generate(dir: &Path, params: &GenParams, now_ms: i64) -> Result<Manifest> {
    params.validate()?;
    if let Some(m) = load_manifest(dir)? {
        let fresh = now_ms - m.end_ms < 24 * 3600 * 1000;
        if m.params == *params && fresh {
            tracing::info!(dir = %dir.display(), samples = m.total_samples(), "reusing generated stream");
            return Ok(m);
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
    let manifest_path = dir.join("manifest.json");
    if manifest_path.exists() {
        std::fs::remove_file(&manifest_path).map_err(|e| BenchError::io(&manifest_path, e))?;
    }
    let started = std::time::Instant::now();
    let start_ms = aligned_start(now_ms, params.duration_ms);
    let (mut series, targets) = build_series(params);
    let count = |k: &[Kind]| series.iter().filter(|s| k.contains(&s.kind)).count();
    let counters = count(&[Kind::CounterInt, Kind::CounterSeconds]);
    let gauges = count(&[Kind::GaugeBytes, Kind::GaugeFloat, Kind::GaugeSmall]);
    let constants = count(&[Kind::Constant]);

    let mut per_shard: Vec<Vec<&mut SeriesState>> =
        (0..params.shards).map(|_| Vec::new()).collect();
    for (i, s) in series.iter_mut().enumerate() {
        per_shard[i % params.shards].push(s);
    }
    let paths: Vec<PathBuf> = (0..params.shards)
        .map(|k| dir.join(format!("shard-{k:03}.bin")))
        .collect();
    let results: Vec<Result<ShardFile>> = std::thread::scope(|scope| {
        let handles: Vec<_> = per_shard
            .iter_mut()
            .zip(&paths)
            .map(|(shard, path)| scope.spawn(move || write_shard(path, shard, params, start_ms)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(BenchError::CorruptStream {
                        path: dir.to_path_buf(),
                        reason: "a generator thread panicked".into(),
                    })
                })
            })
            .collect()
    });
    let shards = results.into_iter().collect::<Result<Vec<_>>>()?;
    let written: u64 = shards.iter().map(|s| s.samples).sum();
    if written != params.total_samples() {
        return Err(BenchError::CorruptStream {
            path: dir.to_path_buf(),
            reason: format!(
                "wrote {written} samples, expected {}",
                params.total_samples()
            ),
        });
    }
    let manifest = Manifest {
        params: params.clone(),
        start_ms,
        end_ms: start_ms + params.duration_ms,
        targets,
        counters,
        gauges,
        constants,
        shards,
        generated_at_ms: now_ms,
        generate_secs: started.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_vec_pretty(&manifest)?;
    std::fs::write(&manifest_path, json).map_err(|e| BenchError::io(&manifest_path, e))?;
    Ok(manifest)
}

pub fn load_manifest(dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join("manifest.json");
    match std::fs::read(&path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BenchError::io(path, e)),
    }
}

/// Reads one shard's stream file into its requests (snappy-compressed bodies).
pub fn read_stream(path: &Path) -> Result<Vec<bytes::Bytes>> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(|e| BenchError::io(path, e))?;
    let data = bytes::Bytes::from(data);
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let header = data
            .get(pos..pos + 4)
            .ok_or_else(|| BenchError::CorruptStream {
                path: path.to_path_buf(),
                reason: format!("truncated length header at byte {pos}"),
            })?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let end = pos + 4 + len;
        if end > data.len() {
            return Err(BenchError::CorruptStream {
                path: path.to_path_buf(),
                reason: format!(
                    "request at byte {pos} claims {len} bytes past the end of the file"
                ),
            });
        }
        out.push(data.slice(pos + 4..end));
        pos = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> GenParams {
        GenParams {
            series: 250,
            interval_ms: 10_000,
            duration_ms: 600_000,
            shards: 3,
            samples_per_request: 100,
            seed: 7,
        }
    }

    fn decode_all(dir: &Path, m: &Manifest) -> Vec<store::MetricBatch> {
        let mut out = Vec::new();
        for s in &m.shards {
            for req in read_stream(&dir.join(&s.file)).unwrap() {
                out.push(proto::tests::decode(&req));
            }
        }
        out
    }

    #[test]
    fn stream_has_every_sample_in_time_order_per_series() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_700_000_000_000;
        let m = generate(dir.path(), &small(), now).unwrap();
        assert_eq!(m.total_samples(), small().total_samples());
        assert!(m.end_ms < now);
        assert_eq!(m.start_ms % BLOCK_RANGE_MS, 0);
        let mut last: std::collections::HashMap<store::Labels, (i64, f64)> = Default::default();
        let mut n = 0;
        for batch in decode_all(dir.path(), &m) {
            assert!(batch.series.len() <= 100);
            for ts in batch.series {
                n += 1;
                let name = ts.labels.metric_name().unwrap_or("").to_string();
                let s = ts.samples[0];
                assert!(s.timestamp_ms >= m.start_ms && s.timestamp_ms < m.end_ms);
                if let Some((t, v)) = last.get(&ts.labels) {
                    assert!(s.timestamp_ms - t > 9_000 && s.timestamp_ms - t < 11_000);
                    if name.ends_with("_total") {
                        assert!(s.value >= *v, "counter {name} went down");
                    }
                }
                last.insert(ts.labels, (s.timestamp_ms, s.value));
            }
        }
        assert_eq!(n, small().total_samples());
        assert_eq!(last.len(), 250);
    }

    #[test]
    fn same_seed_same_bytes_and_reuse() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let now = 1_700_000_000_000;
        let ma = generate(a.path(), &small(), now).unwrap();
        let mb = generate(b.path(), &small(), now).unwrap();
        for (x, y) in ma.shards.iter().zip(&mb.shards) {
            let fa = std::fs::read(a.path().join(&x.file)).unwrap();
            let fb = std::fs::read(b.path().join(&y.file)).unwrap();
            assert_eq!(fa, fb);
        }
        let again = generate(a.path(), &small(), now + 1000).unwrap();
        assert_eq!(again.generated_at_ms, now, "an existing stream is reused");
    }

    #[test]
    fn truncated_stream_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.bin");
        std::fs::write(&p, [10u8, 0, 0, 0, 1, 2]).unwrap();
        let err = read_stream(&p).unwrap_err().to_string();
        assert!(err.contains("past the end"), "{err}");
    }

    #[test]
    fn bad_params_name_the_flag() {
        let mut p = small();
        p.shards = 0;
        assert!(p.validate().unwrap_err().to_string().contains("shards=0"));
    }
}
