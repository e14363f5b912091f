//! Targets: from a `scrape_config` and its static targets to the labels and URL of each
//! target (Prometheus's `PopulateLabels`), and from one scrape's exposition to the batch that
//! is appended (label merging, `metric_relabel_configs`, report series, staleness).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use store::model::stale_nan;
use store::{Labels, MetricBatch, Sample, Series};

use super::config::ScrapeConfig;
use super::parse::{is_label_name, Exposition};
use super::relabel::{self, Rule};
use super::ScrapeGlobal;

/// Series Lookout adds for every scrape, as Prometheus does.
pub const REPORT_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// One scrape target, fully resolved.
#[derive(Debug)]
pub struct Target {
    pub job: String,
    /// Labels before `relabel_configs` (including the `__` ones).
    pub discovered_labels: Labels,
    /// Final target labels, attached to every scraped series.
    pub labels: Labels,
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub metric_relabel: Vec<Rule>,
    /// What besides the labels and URL decides how the target is scraped; a change restarts
    /// its loop.
    pub settings: String,
}

/// The effective interval and timeout of a job (Prometheus caps an unset timeout at the
/// interval).
pub fn interval_and_timeout(cfg: &ScrapeConfig, global: &ScrapeGlobal) -> (Duration, Duration) {
    let interval = cfg
        .scrape_interval
        .map(|d| d.0)
        .unwrap_or(global.scrape_interval);
    let timeout = match cfg.scrape_timeout {
        Some(t) => t.0,
        None => global.scrape_timeout.min(interval),
    };
    (interval, timeout)
}

/// The targets of one job. Targets dropped by relabelling are counted, not returned; every
/// problem (bad address, bad relabel rule) is returned at once.
pub fn targets_for(
    cfg: &ScrapeConfig,
    global: &ScrapeGlobal,
) -> Result<(Vec<Target>, usize), Vec<String>> {
    let mut errors = Vec::new();
    let rules = relabel::compile_all(&cfg.relabel_configs, "relabel_configs")
        .map_err(|e| errors.extend(e))
        .unwrap_or_default();
    let metric_rules = relabel::compile_all(&cfg.metric_relabel_configs, "metric_relabel_configs")
        .map_err(|e| errors.extend(e))
        .unwrap_or_default();
    if !matches!(cfg.scheme.as_str(), "http" | "https") {
        errors.push(format!(
            "unknown scheme {:?} (expected http or https)",
            cfg.scheme
        ));
    }
    if !cfg.metrics_path.starts_with('/') {
        errors.push(format!(
            "metrics_path {:?} must start with '/'",
            cfg.metrics_path
        ));
    }
    let (interval, timeout) = interval_and_timeout(cfg, global);
    let settings = format!(
        "{interval:?}|{timeout:?}|{}|{:?}|{:?}",
        cfg.honor_labels, cfg.honor_timestamps, cfg.metric_relabel_configs
    );

    let mut out = Vec::new();
    let mut dropped = 0;
    for (gi, group) in cfg.static_configs.iter().enumerate() {
        for name in group.labels.keys() {
            if !is_label_name(name) {
                errors.push(format!("static_configs[{gi}]: invalid label name {name:?}"));
            }
        }
        for address in &group.targets {
            if let Err(e) = check_address(address) {
                errors.push(format!("static_configs[{gi}]: target {address:?}: {e}"));
                continue;
            }
            let mut labels: Vec<(String, String)> = group
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut set_default = |name: &str, value: String| {
                if !labels.iter().any(|(n, v)| n == name && !v.is_empty()) {
                    labels.retain(|(n, _)| n != name);
                    labels.push((name.to_string(), value));
                }
            };
            set_default("__address__", address.clone());
            set_default("job", cfg.job_name.clone());
            set_default(
                "__scrape_interval__",
                store::duration::format_duration(interval),
            );
            set_default(
                "__scrape_timeout__",
                store::duration::format_duration(timeout),
            );
            set_default("__metrics_path__", cfg.metrics_path.clone());
            set_default("__scheme__", cfg.scheme.clone());
            for (k, v) in &cfg.params {
                if let Some(first) = v.first() {
                    labels.retain(|(n, _)| *n != format!("__param_{k}"));
                    labels.push((format!("__param_{k}"), first.clone()));
                }
            }
            let discovered = Labels::new(
                labels
                    .iter()
                    .map(|(n, v)| store::Label::new(n.as_str(), v.as_str()))
                    .collect(),
            );
            if !errors.is_empty() {
                continue;
            }
            let Some(relabelled) = relabel::process(&rules, labels) else {
                dropped += 1;
                continue;
            };
            match finish_target(cfg, relabelled) {
                Ok((labels, url)) => out.push(Target {
                    job: cfg.job_name.clone(),
                    discovered_labels: discovered,
                    labels,
                    url,
                    interval,
                    timeout,
                    honor_labels: cfg.honor_labels,
                    honor_timestamps: cfg.honor_timestamps.unwrap_or(true),
                    metric_relabel: metric_rules.clone(),
                    settings: settings.clone(),
                }),
                Err(e) => errors.push(format!(
                    "static_configs[{gi}]: target {address:?} after relabelling: {e}"
                )),
            }
        }
    }
    if errors.is_empty() {
        Ok((out, dropped))
    } else {
        Err(errors)
    }
}

/// From relabelled labels to the public label set and the scrape URL.
fn finish_target(
    cfg: &ScrapeConfig,
    mut labels: Vec<(String, String)>,
) -> Result<(Labels, String), String> {
    let get = |labels: &[(String, String)], name: &str| {
        labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut address = get(&labels, "__address__")
        .ok_or_else(|| "no __address__ label left after relabelling".to_string())?;
    check_address(&address)?;
    let scheme = get(&labels, "__scheme__").unwrap_or_else(|| cfg.scheme.clone());
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        other => return Err(format!("unknown scheme {other:?} (expected http or https)")),
    };
    if !has_port(&address) {
        address = format!("{address}:{default_port}");
        labels.retain(|(n, _)| n != "__address__");
        labels.push(("__address__".into(), address.clone()));
    }
    let path = get(&labels, "__metrics_path__").unwrap_or_else(|| cfg.metrics_path.clone());
    let mut url = reqwest::Url::parse(&format!("{scheme}://{address}{path}"))
        .map_err(|e| format!("invalid scrape URL {scheme}://{address}{path}: {e}"))?;
    let mut params: BTreeMap<String, Vec<String>> = cfg.params.clone();
    for (name, value) in &labels {
        if let Some(p) = name.strip_prefix("__param_") {
            let slot = params.entry(p.to_string()).or_default();
            if slot.first() != Some(value) {
                if slot.is_empty() {
                    slot.push(value.clone());
                } else {
                    slot[0] = value.clone();
                }
            }
        }
    }
    if !params.is_empty() {
        let mut q = url.query_pairs_mut();
        for (k, vs) in &params {
            for v in vs {
                q.append_pair(k, v);
            }
        }
    }
    if get(&labels, "instance").is_none() {
        labels.push(("instance".into(), address));
    }
    labels.retain(|(n, _)| !n.starts_with("__"));
    let labels = Labels::new(
        labels
            .into_iter()
            .map(|(n, v)| store::Label { name: n, value: v })
            .collect(),
    );
    Ok((labels, url.to_string()))
}

/// `host:port`, `host`, `[v6]:port`: no scheme, path, query or credentials.
fn check_address(address: &str) -> Result<(), String> {
    if address.is_empty() {
        return Err("empty address".into());
    }
    if address.contains("://") {
        return Err("address must be host:port, without a scheme (set scheme instead)".into());
    }
    if address
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '@'))
    {
        return Err("address must be host:port, without path, query or credentials".into());
    }
    reqwest::Url::parse(&format!("http://{address}/"))
        .map_err(|e| format!("invalid address: {e}"))
        .and_then(|u| match u.host_str() {
            Some(h) if !h.is_empty() => Ok(()),
            _ => Err("address has no host".to_string()),
        })
}

fn has_port(address: &str) -> bool {
    match address.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => address.contains(':'),
    }
}

/// A deterministic position within the interval, so targets spread over it and keep their
/// phase across restarts (FNV-1a: stable across Rust versions, unlike `DefaultHasher`).
pub fn offset(target: &Target) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(target.url.as_bytes());
    for l in target.labels.iter() {
        eat(l.name.as_bytes());
        eat(&[0xff]);
        eat(l.value.as_bytes());
        eat(&[0xfe]);
    }
    let interval_ms = target.interval.as_millis().max(1) as u64;
    Duration::from_millis(h % interval_ms)
}

/// Health of a target, as `/api/v1/targets` names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TargetHealth {
    #[default]
    Unknown,
    Up,
    Down,
}

impl TargetHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetHealth::Unknown => "unknown",
            TargetHealth::Up => "up",
            TargetHealth::Down => "down",
        }
    }
}

/// What a target loop remembers between scrapes.
#[derive(Debug, Default)]
pub struct LoopState {
    /// Series of the last successful scrape that carry the scrape time (staleness candidates).
    pub prev: HashSet<Labels>,
    /// Timestamp of the newest sample written by this loop, so end-of-run markers come after it.
    pub last_ts: i64,
    pub last_scrape: Option<SystemTime>,
    pub last_duration: Option<Duration>,
    pub last_error: Option<String>,
    pub health: TargetHealth,
}

/// Counts from one scrape, for the report series.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScrapeCounts {
    pub scraped: usize,
    pub post_relabel: usize,
    pub added: usize,
    pub duplicates: usize,
}

/// Turns one scrape into the batch to append, updating `state.prev`. `result` is the parsed
/// exposition or the reason the scrape failed.
pub fn build_batch(
    target: &Target,
    result: Result<Exposition, String>,
    scrape_ts: i64,
    duration: Duration,
    state: &mut LoopState,
) -> (MetricBatch, ScrapeCounts) {
    let mut batch = MetricBatch::default();
    let mut counts = ScrapeCounts::default();
    let ok = result.is_ok();
    let mut current: HashSet<Labels> = HashSet::new();
    if let Ok(exposition) = result {
        counts.scraped = exposition.samples.len();
        let mut seen_explicit: HashSet<Labels> = HashSet::new();
        batch
            .series
            .reserve(exposition.samples.len() + REPORT_SERIES.len());
        for sample in exposition.samples {
            let mut labels = Vec::with_capacity(sample.labels.len() + target.labels.len() + 1);
            labels.push((store::model::METRIC_NAME_LABEL.to_string(), sample.name));
            labels.extend(sample.labels);
            merge_target_labels(&mut labels, &target.labels, target.honor_labels);
            let Some(labels) = relabel::process(&target.metric_relabel, labels) else {
                continue;
            };
            let labels = Labels::new(
                labels
                    .into_iter()
                    .map(|(name, value)| store::Label { name, value })
                    .collect(),
            );
            if labels.metric_name().is_none() {
                continue;
            }
            let explicit = sample.timestamp_ms.filter(|_| target.honor_timestamps);
            let fresh = match explicit {
                // explicit timestamps are the exporter's business: no staleness for them
                Some(_) => seen_explicit.insert(labels.clone()),
                None => current.insert(labels.clone()),
            };
            if !fresh {
                counts.duplicates += 1;
                continue;
            }
            counts.post_relabel += 1;
            let ts = explicit.unwrap_or(scrape_ts);
            batch.series.push(Series {
                labels,
                samples: vec![Sample::new(ts, sample.value)],
            });
        }
        counts.added = current.iter().filter(|l| !state.prev.contains(*l)).count();
        batch.metadata = exposition.metadata;
    }
    for gone in state.prev.iter().filter(|l| !current.contains(*l)) {
        batch.series.push(Series {
            labels: gone.clone(),
            samples: vec![Sample::new(scrape_ts, stale_nan())],
        });
    }
    state.prev = current;
    let values = [
        if ok { 1.0 } else { 0.0 },
        duration.as_secs_f64(),
        counts.scraped as f64,
        counts.post_relabel as f64,
        counts.added as f64,
    ];
    for (name, value) in REPORT_SERIES.iter().zip(values) {
        batch.series.push(Series {
            labels: report_labels(target, name),
            samples: vec![Sample::new(scrape_ts, value)],
        });
    }
    state.last_ts = state.last_ts.max(scrape_ts);
    (batch, counts)
}

/// Stale markers for everything a loop wrote: its series and its report series.
pub fn end_of_run_batch(target: &Target, state: &mut LoopState, now_ms: i64) -> MetricBatch {
    let ts = now_ms.max(state.last_ts + 1);
    let mut batch = MetricBatch::default();
    for labels in state.prev.drain() {
        batch.series.push(Series {
            labels,
            samples: vec![Sample::new(ts, stale_nan())],
        });
    }
    for name in REPORT_SERIES {
        batch.series.push(Series {
            labels: report_labels(target, name),
            samples: vec![Sample::new(ts, stale_nan())],
        });
    }
    state.last_ts = ts;
    batch
}

fn report_labels(target: &Target, name: &str) -> Labels {
    let mut l = target.labels.as_slice().to_vec();
    l.push(store::Label::new(store::model::METRIC_NAME_LABEL, name));
    Labels::new(l)
}

/// Attaches target labels to a scraped series. With `honor_labels` the scraped value wins;
/// without it the target's does, and a conflicting scraped label is kept as
/// `exported_<name>` (prefixed again while that name is taken too).
fn merge_target_labels(labels: &mut Vec<(String, String)>, target: &Labels, honor_labels: bool) {
    for tl in target.iter() {
        let existing = labels
            .iter()
            .position(|(n, v)| *n == tl.name && !v.is_empty());
        match (existing, honor_labels) {
            (Some(_), true) => {}
            (Some(i), false) => {
                let scraped = std::mem::replace(&mut labels[i].1, tl.value.clone());
                let mut new_name = format!("exported_{}", tl.name);
                while labels.iter().any(|(n, v)| *n == new_name && !v.is_empty())
                    || target.get(&new_name).is_some()
                {
                    new_name = format!("exported_{new_name}");
                }
                labels.push((new_name, scraped));
            }
            (None, _) => {
                labels.retain(|(n, _)| *n != tl.name);
                labels.push((tl.name.clone(), tl.value.clone()));
            }
        }
    }
}

/// A shared handle to a target's loop state.
pub type SharedState = Arc<parking_lot::Mutex<LoopState>>;
