//! The query benchmark's data set: a seeded fleet of HTTP services as a dashboard sees it,
//! generated on the fly one time window at a time (24 h of 100k series is 864 M samples, far
//! too much to keep in memory or to pre-write as one-sample requests).
//!
//! Shape: `jobs` services x `instances_per_job` instances; every target (`job`, `instance`,
//! `region`) exposes 104 series:
//! * `http_requests_total{handler, method, code}`: 5 handlers x 2 methods x 4 codes;
//! * `http_request_duration_seconds_bucket{handler, le}` with 10 `le` values (9 finite and
//!   `+Inf`), plus `_sum` and `_count` per handler: a real histogram (cumulative buckets, `+Inf`
//!   equal to `_count`, all monotonic);
//! * `up`, `go_goroutines`, `process_resident_memory_bytes` (gauges) and
//!   `process_cpu_seconds_total`.
//!
//! Every handler of a target is one "group" with its own seeded random stream that advances
//! once per scrape, so the values do not depend on how the time line is cut into windows.
//! All series of a target share one scrape timestamp: the step time plus a fixed per-target
//! offset within the interval.
//!
//! A window is `window_steps` scrapes of every series, rendered as remote-write requests of
//! `series_per_request` `TimeSeries`, each carrying the series' samples of that window in
//! time order.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};
use crate::proto;

pub const JOBS: &[&str] = &[
    "api-gateway",
    "checkout",
    "orders",
    "payments",
    "users",
    "inventory",
    "search",
    "cart",
    "shipping",
    "notifications",
];
pub const HANDLERS: &[&str] = &[
    "/api/v1/items",
    "/api/v1/orders",
    "/api/v1/users",
    "/healthz",
    "/metrics",
];
const METHODS: &[(&str, f64)] = &[("GET", 0.75), ("POST", 0.25)];
pub const CODES: &[(&str, f64)] = &[("200", 0.94), ("404", 0.04), ("500", 0.015), ("503", 0.005)];
const LE: &[(&str, f64)] = &[
    ("0.005", 0.005),
    ("0.01", 0.01),
    ("0.025", 0.025),
    ("0.05", 0.05),
    ("0.1", 0.1),
    ("0.25", 0.25),
    ("0.5", 0.5),
    ("1", 1.0),
    ("2.5", 2.5),
    ("+Inf", f64::INFINITY),
];
const REGIONS: &[&str] = &["cn-north-1", "cn-east-2", "ap-southeast-1"];

/// Series of one handler group: request cells, buckets, `_sum`, `_count`.
const HTTP_SERIES: usize = METHODS.len() * CODES.len() + LE.len() + 2;
/// Series of the process group.
const PROCESS_SERIES: usize = 4;
pub const SERIES_PER_TARGET: usize = HANDLERS.len() * HTTP_SERIES + PROCESS_SERIES;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetParams {
    pub jobs: usize,
    pub instances_per_job: usize,
    pub interval_ms: i64,
    pub duration_ms: i64,
    /// Scrapes per window (per request, each series carries this many samples).
    pub window_steps: usize,
    pub series_per_request: usize,
    pub seed: u64,
}

impl FleetParams {
    pub fn validate(&self) -> Result<()> {
        let bad = |name, value: String, reason: &str| {
            Err(BenchError::BadParam {
                name,
                value,
                reason: reason.to_string(),
            })
        };
        if self.jobs == 0 || self.jobs > JOBS.len() {
            return bad(
                "jobs",
                self.jobs.to_string(),
                &format!("must be in 1..={}", JOBS.len()),
            );
        }
        if self.instances_per_job == 0 || self.instances_per_job > 65_536 {
            return bad(
                "instances-per-job",
                self.instances_per_job.to_string(),
                "must be in 1..=65536",
            );
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
        if self.window_steps == 0 {
            return bad("window-steps", "0".into(), "must be positive");
        }
        if self.series_per_request == 0 {
            return bad("series-per-request", "0".into(), "must be positive");
        }
        Ok(())
    }

    pub fn targets(&self) -> usize {
        self.jobs * self.instances_per_job
    }

    pub fn series(&self) -> usize {
        self.targets() * SERIES_PER_TARGET
    }

    pub fn steps(&self) -> u64 {
        (self.duration_ms / self.interval_ms) as u64
    }

    pub fn total_samples(&self) -> u64 {
        self.steps() * self.series() as u64
    }

    pub fn windows(&self) -> u64 {
        self.steps().div_ceil(self.window_steps as u64)
    }

    /// Length of one window in ms.
    pub fn window_ms(&self) -> i64 {
        self.window_steps as i64 * self.interval_ms
    }

    /// Start of the data: aligned to the window length (so windows start on round times and
    /// 2 h block boundaries fall between windows) and late enough that the data ends by now.
    pub fn aligned_start(&self, now_ms: i64) -> i64 {
        let w = self.window_ms().max(1);
        (now_ms - self.duration_ms).div_euclid(w) * w
    }
}

/// One window's requests (snappy-compressed `WriteRequest`s).
pub struct Window {
    pub index: u64,
    /// Timestamp range of the samples in it, inclusive.
    pub min_ts: i64,
    pub max_ts: i64,
    pub requests: Vec<Bytes>,
    /// Samples in each request.
    pub samples: Vec<u64>,
}

impl Window {
    #[cfg(test)]
    pub fn total_samples(&self) -> u64 {
        self.samples.iter().sum()
    }
}

enum GroupState {
    Http {
        /// Mean requests per second.
        rate: f64,
        /// Median latency in seconds.
        median_s: f64,
        cells: [f64; METHODS.len() * CODES.len()],
        buckets: [f64; LE.len()],
        sum: f64,
        count: f64,
    },
    Process {
        goroutines: f64,
        rss: f64,
        cpu: f64,
        cpu_rate: f64,
    },
}

struct Group {
    target: usize,
    /// Encoded labels of each series of the group, in value order.
    labels: Vec<Vec<u8>>,
    state: GroupState,
    rng: StdRng,
}

/// Logistic approximation of a log-normal latency CDF: the share of requests at or below `le`
/// seconds when the median is `median_s`.
fn latency_cdf(le: f64, median_s: f64) -> f64 {
    if le.is_infinite() {
        return 1.0;
    }
    1.0 / (1.0 + (-(le.ln() - median_s.ln()) / 0.6).exp())
}

impl Group {
    /// Advances one scrape and writes the group's values into `out` (one per series).
    fn step(&mut self, first: bool, interval_s: f64, out: &mut [f64]) {
        let rng = &mut self.rng;
        match &mut self.state {
            GroupState::Http {
                rate,
                median_s,
                cells,
                buckets,
                sum,
                count,
            } => {
                if !first {
                    let n = (*rate * interval_s * (0.7 + 0.6 * rng.random::<f64>())).round();
                    let mut i = 0;
                    for (_, wm) in METHODS {
                        for (_, wc) in CODES {
                            let u: f64 = rng.random();
                            cells[i] += (n * wm * wc * (0.5 + u)).round();
                            i += 1;
                        }
                    }
                    let shift = (0.3 * (rng.random::<f64>() - 0.5)).exp();
                    let m = *median_s * shift;
                    for (b, (_, le)) in buckets.iter_mut().zip(LE) {
                        // rounding a monotonic share keeps the buckets cumulative
                        *b += (n * latency_cdf(*le, m)).round();
                    }
                    *count += n;
                    *sum += n * m * 1.3;
                }
                let (c, rest) = out.split_at_mut(cells.len());
                c.copy_from_slice(cells);
                let (b, rest) = rest.split_at_mut(buckets.len());
                b.copy_from_slice(buckets);
                rest[0] = *sum;
                rest[1] = *count;
            }
            GroupState::Process {
                goroutines,
                rss,
                cpu,
                cpu_rate,
            } => {
                if !first {
                    let u: f64 = rng.random();
                    *goroutines = (*goroutines + (u * 5.0).floor() - 2.0).max(5.0);
                    let u: f64 = rng.random();
                    *rss = ((*rss * (1.0 + 0.004 * (u - 0.5))) / 4096.0)
                        .round()
                        .max(1.0)
                        * 4096.0;
                    let u: f64 = rng.random();
                    *cpu =
                        ((*cpu + *cpu_rate * interval_s * (0.8 + 0.4 * u)) * 100.0).round() / 100.0;
                }
                out[0] = 1.0;
                out[1] = *goroutines;
                out[2] = *rss;
                out[3] = *cpu;
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

fn encode(mut labels: Vec<(String, String)>) -> Vec<u8> {
    labels.sort();
    proto::encode_labels(&labels)
}

/// The generator: every group's state, advanced window by window.
pub struct Fleet {
    params: FleetParams,
    start_ms: i64,
    groups: Vec<Group>,
    /// Scrape offset of each target within the interval.
    offsets: Vec<i64>,
    next_window: u64,
    snappy: snap::raw::Encoder,
}

impl Fleet {
    pub fn new(params: &FleetParams, start_ms: i64) -> Result<Self> {
        params.validate()?;
        let mut groups = Vec::with_capacity(params.targets() * (HANDLERS.len() + 1));
        let mut offsets = Vec::with_capacity(params.targets());
        for (j, job) in JOBS.iter().enumerate().take(params.jobs) {
            for i in 0..params.instances_per_job {
                let t = offsets.len();
                let h = splitmix64(params.seed ^ splitmix64(t as u64 ^ 0x5eed));
                offsets.push(100 + (h % (params.interval_ms as u64 - 200)) as i64);
                let target = [
                    ("job".to_string(), job.to_string()),
                    (
                        "instance".to_string(),
                        format!("10.{j}.{}.{}:8080", i >> 8, i & 255),
                    ),
                    ("region".to_string(), REGIONS[i % REGIONS.len()].to_string()),
                ];
                let with = |name: &str, extra: &[(&str, &str)]| {
                    let mut l = target.to_vec();
                    l.push(("__name__".into(), name.into()));
                    l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                    encode(l)
                };
                for handler in HANDLERS {
                    let gi = groups.len() as u64;
                    let mut rng = StdRng::seed_from_u64(splitmix64(params.seed ^ splitmix64(gi)));
                    let mut labels = Vec::with_capacity(HTTP_SERIES);
                    for (method, _) in METHODS {
                        for (code, _) in CODES {
                            labels.push(with(
                                "http_requests_total",
                                &[("handler", handler), ("method", method), ("code", code)],
                            ));
                        }
                    }
                    for (le, _) in LE {
                        labels.push(with(
                            "http_request_duration_seconds_bucket",
                            &[("handler", handler), ("le", le)],
                        ));
                    }
                    labels.push(with(
                        "http_request_duration_seconds_sum",
                        &[("handler", handler)],
                    ));
                    labels.push(with(
                        "http_request_duration_seconds_count",
                        &[("handler", handler)],
                    ));
                    // log-uniform: most handlers are quiet, a few are hot
                    let rate = 10f64.powf(rng.random_range(-1.0..2.3));
                    let median_s = 10f64.powf(rng.random_range(-2.3..-0.5));
                    let mut cells = [0.0; METHODS.len() * CODES.len()];
                    for c in &mut cells {
                        *c = (rng.random::<f64>() * 1e5).round();
                    }
                    groups.push(Group {
                        target: t,
                        labels,
                        state: GroupState::Http {
                            rate,
                            median_s,
                            cells,
                            buckets: [0.0; LE.len()],
                            sum: 0.0,
                            count: 0.0,
                        },
                        rng,
                    });
                }
                let gi = groups.len() as u64;
                let mut rng = StdRng::seed_from_u64(splitmix64(params.seed ^ splitmix64(gi)));
                let labels = vec![
                    with("up", &[]),
                    with("go_goroutines", &[]),
                    with("process_resident_memory_bytes", &[]),
                    with("process_cpu_seconds_total", &[]),
                ];
                let state = GroupState::Process {
                    goroutines: (20.0 + rng.random::<f64>() * 200.0).round(),
                    rss: ((256.0 + rng.random::<f64>() * 1792.0) * 256.0).round() * 4096.0,
                    cpu: (rng.random::<f64>() * 1e5).round() / 100.0,
                    cpu_rate: rng.random_range(0.01..1.5),
                };
                groups.push(Group {
                    target: t,
                    labels,
                    state,
                    rng,
                });
            }
        }
        Ok(Fleet {
            params: params.clone(),
            start_ms,
            groups,
            offsets,
            next_window: 0,
            snappy: snap::raw::Encoder::new(),
        })
    }

    /// Timestamp of `step` for `target`.
    fn ts(&self, target: usize, step: u64) -> i64 {
        self.start_ms + step as i64 * self.params.interval_ms + self.offsets[target]
    }

    /// Renders the next window, or `None` after the last.
    pub fn next_window(&mut self) -> Result<Option<Window>> {
        let k = self.next_window;
        let steps = self.params.steps();
        let first_step = k * self.params.window_steps as u64;
        if first_step >= steps {
            return Ok(None);
        }
        self.next_window += 1;
        let last_step = (first_step + self.params.window_steps as u64).min(steps);
        let n_steps = (last_step - first_step) as usize;
        let interval_s = self.params.interval_ms as f64 / 1000.0;
        let mut window = Window {
            index: k,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            requests: Vec::new(),
            samples: Vec::new(),
        };
        let per_request = self.params.series_per_request;
        let mut body = Vec::with_capacity(per_request * (200 + 18 * n_steps));
        let mut in_body = 0usize;
        let mut values = vec![0.0f64; HTTP_SERIES.max(PROCESS_SERIES) * n_steps];
        let mut samples: Vec<(i64, f64)> = Vec::with_capacity(n_steps);
        let flush = |body: &mut Vec<u8>,
                     in_body: &mut usize,
                     window: &mut Window,
                     enc: &mut snap::raw::Encoder|
         -> Result<()> {
            let compressed = enc.compress_vec(body).map_err(|e| BenchError::BadParam {
                name: "series-per-request",
                value: per_request.to_string(),
                reason: format!("snappy compression failed: {e}"),
            })?;
            window.requests.push(Bytes::from(compressed));
            window.samples.push((*in_body * n_steps) as u64);
            body.clear();
            *in_body = 0;
            Ok(())
        };
        for gi in 0..self.groups.len() {
            let target = self.groups[gi].target;
            let width = self.groups[gi].labels.len();
            for s in 0..n_steps {
                let step = first_step + s as u64;
                let row = &mut values[s * width..(s + 1) * width];
                self.groups[gi].step(step == 0, interval_s, row);
            }
            window.min_ts = window.min_ts.min(self.ts(target, first_step));
            window.max_ts = window.max_ts.max(self.ts(target, last_step - 1));
            for si in 0..width {
                samples.clear();
                for s in 0..n_steps {
                    samples.push((
                        self.ts(target, first_step + s as u64),
                        values[s * width + si],
                    ));
                }
                proto::push_series_samples(&self.groups[gi].labels[si], &samples, &mut body);
                in_body += 1;
                if in_body == per_request {
                    flush(&mut body, &mut in_body, &mut window, &mut self.snappy)?;
                }
            }
        }
        if in_body > 0 {
            flush(&mut body, &mut in_body, &mut window, &mut self.snappy)?;
        }
        Ok(Some(window))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use store::Labels;

    fn small(window_steps: usize) -> FleetParams {
        FleetParams {
            jobs: 2,
            instances_per_job: 3,
            interval_ms: 10_000,
            duration_ms: 1_800_000,
            window_steps,
            series_per_request: 50,
            seed: 9,
        }
    }

    /// Every sample of the whole data set, per series.
    fn all_samples(p: &FleetParams) -> HashMap<Labels, Vec<(i64, f64)>> {
        let mut f = Fleet::new(p, 1_700_000_000_000).unwrap();
        let mut out: HashMap<Labels, Vec<(i64, f64)>> = HashMap::new();
        while let Some(w) = f.next_window().unwrap() {
            assert_eq!(w.requests.len(), w.samples.len());
            for req in &w.requests {
                for s in crate::proto::tests::decode(req).series {
                    for x in &s.samples {
                        assert!(x.timestamp_ms >= w.min_ts && x.timestamp_ms <= w.max_ts);
                    }
                    out.entry(s.labels)
                        .or_default()
                        .extend(s.samples.iter().map(|x| (x.timestamp_ms, x.value)));
                }
            }
        }
        out
    }

    #[test]
    fn values_do_not_depend_on_the_window_size() {
        let a = all_samples(&small(7));
        let b = all_samples(&small(60));
        assert_eq!(a.len(), small(7).series());
        assert_eq!(a.len(), 6 * SERIES_PER_TARGET);
        for (k, v) in &a {
            assert_eq!(v.len() as u64, small(7).steps());
            let w = &b[k];
            assert_eq!(v.len(), w.len());
            for (x, y) in v.iter().zip(w) {
                assert_eq!(x.0, y.0);
                assert_eq!(x.1.to_bits(), y.1.to_bits(), "{k}");
            }
        }
    }

    #[test]
    fn counters_and_histograms_are_consistent() {
        let all = all_samples(&small(60));
        let mut per_name: HashMap<String, usize> = HashMap::new();
        for (k, v) in &all {
            let name = k.metric_name().unwrap_or_default().to_string();
            let monotonic = name.ends_with("_total")
                || name.ends_with("_bucket")
                || name.ends_with("_count")
                || name.ends_with("_sum");
            *per_name.entry(name).or_default() += 1;
            for w in v.windows(2) {
                assert_eq!(w[1].0 - w[0].0, 10_000, "{k}: steps 10 s apart");
                if monotonic {
                    assert!(w[1].1 >= w[0].1, "{k} decreased");
                }
            }
        }
        assert_eq!(per_name["http_requests_total"], 6 * 5 * 8);
        assert_eq!(per_name["http_request_duration_seconds_bucket"], 6 * 5 * 10);
        assert_eq!(per_name["up"], 6);
        // per handler: buckets cumulative in le order, +Inf equal to _count at every step
        let one = |name: &str, le: Option<&str>| -> &Vec<(i64, f64)> {
            let found: Vec<_> = all
                .iter()
                .filter(|(k, _)| {
                    k.metric_name() == Some(name)
                        && k.get("instance") == Some("10.0.0.1:8080")
                        && k.get("handler") == Some("/api/v1/orders")
                        && k.get("le") == le
                })
                .collect();
            assert_eq!(found.len(), 1, "{name} {le:?}");
            found[0].1
        };
        let mut prev: Option<&Vec<(i64, f64)>> = None;
        for (le, _) in LE {
            let b = one("http_request_duration_seconds_bucket", Some(le));
            if let Some(p) = prev {
                for (x, y) in p.iter().zip(b) {
                    assert!(y.1 >= x.1, "bucket le={le} below a smaller le");
                }
            }
            prev = Some(b);
        }
        assert_eq!(prev, Some(one("http_request_duration_seconds_count", None)));
        assert!(
            one("http_request_duration_seconds_count", None)
                .last()
                .unwrap()
                .1
                > 0.0
        );
    }

    #[test]
    fn requests_respect_the_size_and_start_is_aligned() {
        let p = small(60);
        let now = 1_700_000_123_456;
        let start = p.aligned_start(now);
        assert_eq!(start % p.window_ms(), 0);
        assert!(start + p.duration_ms <= now);
        let mut f = Fleet::new(&p, start).unwrap();
        let w = f.next_window().unwrap().unwrap();
        assert!(w.samples.iter().all(|n| *n <= 50 * 60));
        assert_eq!(w.total_samples(), p.series() as u64 * 60);
        let mut n = 1;
        while f.next_window().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, p.windows());
    }

    #[test]
    fn bad_params_name_the_flag() {
        let mut p = small(10);
        p.jobs = 11;
        assert!(p.validate().unwrap_err().to_string().contains("jobs=11"));
        p.jobs = 1;
        p.window_steps = 0;
        assert!(Fleet::new(&p, 0).is_err());
    }
}
