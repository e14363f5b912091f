//! The archive tier for metrics, in process: the query benchmark's fleet (same generator,
//! same seed) appended to a `MetricsStore` through the remote-write decoder, flushed into
//! 2 h blocks as a running server would, then every block moved to a local Parquet archive
//! by the store's own mover. Reported: warm (block) and archive bytes per sample, the move's
//! samples per wall- and CPU-second, and one selection of all series read from the warm
//! tier and again from the archive (same answers checked).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use store::archive::{Archive, ArchiveLocation};
use store::config::{ArchiveTier, FsyncPolicy, MetricsStoreOptions};
use store::promql::{Engine, EngineOptions, QueryResult, Value};
use store::{LabelMatcher, MatchOp, MetricsAppender, MetricsQuerier, MetricsStore};

use crate::error::{BenchError, Result};
use crate::fleet::{Fleet, FleetParams};
use crate::now_ms;
use crate::procstat;
use crate::query::load::BLOCK_MS;

#[derive(Args, Clone, Debug)]
pub struct ArchiveArgs {
    /// Services (`job` values), at most 10.
    #[arg(long, default_value_t = 10)]
    jobs: usize,
    /// Instances per service; each exposes 104 series.
    #[arg(long, default_value_t = 100)]
    instances_per_job: usize,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
    #[arg(long, default_value = "6h", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value = "target/bench-archive")]
    work_dir: PathBuf,
    #[arg(long, default_value = "bench/results/archive-latest.json")]
    results: PathBuf,
    /// Only time the dashboard queries over the archive a previous run left in `work_dir`
    /// (prints them; writes no results file).
    #[arg(long)]
    queries_only: bool,
}

#[derive(Debug, Serialize)]
struct ArchiveReport {
    series: u64,
    samples: u64,
    duration_h: f64,
    load_wall_secs: f64,
    warm_blocks: u64,
    warm_bytes: u64,
    warm_bytes_per_sample: f64,
    archive_files: u64,
    archive_bytes: u64,
    archive_bytes_per_sample: f64,
    archive_over_warm: f64,
    move_wall_secs: f64,
    move_cpu_secs: f64,
    move_samples_per_wall_sec: f64,
    move_samples_per_cpu_sec: f64,
    /// Each selection over the whole range, from the warm tier, then from the archive.
    selects: Vec<SelectTiming>,
    /// Rollup (5 m and 1 h) files of the archived samples, bytes per raw sample.
    rollup_bytes: u64,
    rollup_bytes_per_sample: f64,
    /// Dashboard queries over the whole range, after the move.
    dashboards: Vec<DashboardTiming>,
}

/// A dashboard panel's range query over the whole archived range, as Grafana asks it (about
/// 250 points, `$__rate_interval` equal to the step): answered from rollups (what the engine
/// picks) and forced to raw samples.
#[derive(Debug, Serialize)]
struct DashboardTiming {
    query: String,
    step_s: i64,
    /// The resolution the engine read (`raw` when the query is too fine for rollups).
    resolution: String,
    series: u64,
    points: u64,
    /// Median of 3 runs each.
    rollup_ms: f64,
    raw_ms: f64,
    raw_over_rollup: f64,
    /// Median and largest relative difference of a point between the two answers.
    median_rel_diff: f64,
    max_rel_diff: f64,
    /// Where the largest difference is: the step's time after the first sample.
    max_rel_diff_after_data_start_s: i64,
}

#[derive(Debug, Serialize)]
struct SelectTiming {
    matchers: Vec<String>,
    series: u64,
    samples: u64,
    warm_ms: f64,
    /// First read: the files' bytes are fetched and cached, then decoded.
    archive_ms: f64,
}

fn matcher(name: &str, value: &str) -> Result<LabelMatcher> {
    LabelMatcher::new(name, MatchOp::Equal, value).map_err(|e| store_err("matcher", e))
}

/// A failed store call, or a check of its results that failed.
pub(crate) fn store_err(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Server {
        server: "lookout store".into(),
        reason: format!("{what}: {e}"),
    }
}

pub async fn run(args: ArchiveArgs) -> Result<()> {
    let params = FleetParams {
        jobs: args.jobs,
        instances_per_job: args.instances_per_job,
        interval_ms: args.interval.as_millis() as i64,
        duration_ms: args.duration.as_millis() as i64,
        window_steps: 60,
        series_per_request: 500,
        seed: args.seed,
    };
    if !args.queries_only {
        let _ = std::fs::remove_dir_all(&args.work_dir);
    }
    std::fs::create_dir_all(&args.work_dir)
        .map_err(|e| BenchError::io(args.work_dir.display().to_string(), e))?;
    let archive = Archive::open(&ArchiveLocation::Local(args.work_dir.join("archive")))
        .map_err(|e| store_err("opening the archive", e))?;
    let mut options = MetricsStoreOptions::new(args.work_dir.join("metrics"));
    options.fsync = FsyncPolicy::Never;
    // everything is past this warm window; the mover only runs when called below
    options.retention = Duration::from_secs(1);
    options.limits.max_sample_age = args.duration + Duration::from_secs(3600);
    options.archive = Some(ArchiveTier {
        archive: archive.clone(),
        keep_for: Duration::from_secs(400 * 86_400),
    });
    let store = MetricsStore::open(options).map_err(|e| store_err("opening the store", e))?;
    if args.queries_only {
        let archived = archive.files("metrics", i64::MIN, i64::MAX);
        let start_ms = archived.iter().map(|f| f.min_time).min().unwrap_or(0);
        let end_ms = archived.iter().map(|f| f.max_time).max().unwrap_or(0);
        let dashboards = dashboard_queries(&store, start_ms, end_ms)?;
        println!("{}", serde_json::to_string_pretty(&dashboards)?);
        return store.close().await.map_err(|e| store_err("close", e));
    }

    let start_ms = params.aligned_start(now_ms());
    let mut fleet = Fleet::new(&params, start_ms)?;
    let loading = Instant::now();
    let mut next_flush = start_ms.div_euclid(BLOCK_MS) * BLOCK_MS + BLOCK_MS;
    let mut samples = 0u64;
    while let Some(window) = fleet.next_window()? {
        if window.min_ts >= next_flush {
            store.flush().await.map_err(|e| store_err("flush", e))?;
            next_flush += BLOCK_MS;
        }
        for body in &window.requests {
            let decoded = collector::remote_write::decode_raw(body, usize::MAX)
                .map_err(|e| BenchError::Decode(e.to_string()))?;
            let report = store
                .append_raw(decoded.batch)
                .await
                .map_err(|e| store_err("append", e))?;
            samples += report.accepted_samples;
        }
    }
    store.flush().await.map_err(|e| store_err("flush", e))?;
    let load_wall_secs = loading.elapsed().as_secs_f64();
    let warm = store.stats();
    tracing::info!(
        samples,
        blocks = warm.blocks,
        bytes = warm.block_bytes,
        "fleet loaded"
    );
    if warm.block_samples != samples {
        return Err(store_err(
            "load",
            format!(
                "{} samples in blocks, {samples} appended",
                warm.block_samples
            ),
        ));
    }

    // a dashboard's selection (one metric of one service) and a broad one (every series
    // of a service), over the whole range
    let selections = [
        vec![
            matcher("__name__", "http_requests_total")?,
            matcher("job", crate::fleet::JOBS[0])?,
        ],
        vec![matcher("job", crate::fleet::JOBS[0])?],
    ];
    let end_ms = start_ms + params.duration_ms;
    let timed_selects = |store: &MetricsStore| -> Result<Vec<(f64, Vec<store::Series>)>> {
        selections
            .iter()
            .map(|m| {
                let t = Instant::now();
                let got = store
                    .select(m, start_ms, end_ms)
                    .map_err(|e| store_err("select", e))?;
                Ok((t.elapsed().as_secs_f64() * 1000.0, got))
            })
            .collect()
    };
    let warm_answers = timed_selects(&store)?;

    let cpu_before = procstat::process_cpu_secs(std::process::id())?;
    let moving = Instant::now();
    let moved = store
        .move_old_data()
        .await
        .map_err(|e| store_err("move", e))?;
    let move_wall_secs = moving.elapsed().as_secs_f64();
    let move_cpu_secs = procstat::process_cpu_secs(std::process::id())? - cpu_before;
    let cold = store.stats();
    if moved as u64 != warm.blocks || cold.archive_samples != samples || cold.blocks != 0 {
        return Err(store_err(
            "move",
            format!(
                "moved {moved} of {} blocks; archive holds {} of {samples} samples",
                warm.blocks, cold.archive_samples
            ),
        ));
    }
    let archive_answers = timed_selects(&store)?;
    if archive_answers
        .iter()
        .map(|a| &a.1)
        .ne(warm_answers.iter().map(|a| &a.1))
    {
        return Err(store_err(
            "select",
            "archive answer differs from the warm one",
        ));
    }
    let selects = warm_answers
        .iter()
        .zip(&archive_answers)
        .zip(&selections)
        .map(|(((warm_ms, answer), (archive_ms, _)), m)| SelectTiming {
            matchers: m
                .iter()
                .map(|m| format!("{}=\"{}\"", m.name, m.value))
                .collect(),
            series: answer.len() as u64,
            samples: answer.iter().map(|s| s.samples.len() as u64).sum(),
            warm_ms: *warm_ms,
            archive_ms: *archive_ms,
        })
        .collect();
    let dashboards = dashboard_queries(&store, start_ms, end_ms)?;
    let report = ArchiveReport {
        series: params.series() as u64,
        samples,
        duration_h: params.duration_ms as f64 / 3_600_000.0,
        load_wall_secs,
        warm_blocks: warm.blocks,
        warm_bytes: warm.block_bytes,
        warm_bytes_per_sample: warm.block_bytes as f64 / samples as f64,
        archive_files: cold.archive_files,
        archive_bytes: cold.archive_bytes,
        archive_bytes_per_sample: cold.archive_bytes as f64 / samples as f64,
        archive_over_warm: cold.archive_bytes as f64 / warm.block_bytes as f64,
        move_wall_secs,
        move_cpu_secs,
        move_samples_per_wall_sec: samples as f64 / move_wall_secs,
        move_samples_per_cpu_sec: samples as f64 / move_cpu_secs,
        selects,
        rollup_bytes: cold.rollup_bytes,
        rollup_bytes_per_sample: cold.rollup_bytes as f64 / samples as f64,
        dashboards,
    };
    store.close().await.map_err(|e| store_err("close", e))?;
    crate::report::write_json(&args.results, &report)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// The dashboard panels timed over the archived range.
const DASHBOARD_QUERIES: [&str; 2] = [
    "sum by (job) (rate(http_requests_total[$r]))",
    "sum by (le) (rate(http_request_duration_seconds_bucket{job=\"api-gateway\"}[$r]))",
];

fn dashboard_queries(
    store: &Arc<MetricsStore>,
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<DashboardTiming>> {
    // Grafana's step for ~250 points, on a 5-minute boundary, and its $__rate_interval
    let step_ms = ((end_ms - start_ms) / 250 + 299_999).max(300_000) / 300_000 * 300_000;
    let first = start_ms.div_euclid(step_ms) * step_ms + step_ms;
    let querier: Arc<dyn MetricsQuerier> = store.clone();
    let rollups = Engine::new(querier, EngineOptions::default());
    let raw = Engine::new(Arc::new(RawOnly(store.clone())), EngineOptions::default());
    DASHBOARD_QUERIES
        .iter()
        .map(|q| {
            let query = q.replace("$r", &format!("{}s", step_ms / 1000));
            let timed = |engine: &Engine| -> Result<(f64, QueryResult)> {
                let mut runs = Vec::new();
                let mut last = None;
                for _ in 0..3 {
                    let t = Instant::now();
                    let r = engine
                        .range_query(&query, first, end_ms, step_ms, None)
                        .map_err(|e| store_err(&query, e))?;
                    runs.push(t.elapsed().as_secs_f64() * 1000.0);
                    last = Some(r);
                }
                runs.sort_by(f64::total_cmp);
                let result = last.ok_or_else(|| store_err(&query, "no run"))?;
                Ok((runs[1], result))
            };
            let (rollup_ms, from_rollups) = timed(&rollups)?;
            let (raw_ms, from_raw) = timed(&raw)?;
            let (Value::Matrix(a), Value::Matrix(b)) = (&from_rollups.value, &from_raw.value)
            else {
                return Err(store_err(&query, "not a matrix"));
            };
            let same_shape = a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| {
                    x.labels == y.labels
                        && x.samples.len() == y.samples.len()
                        && x.samples
                            .iter()
                            .zip(&y.samples)
                            .all(|(p, q)| p.timestamp_ms == q.timestamp_ms)
                });
            if !same_shape {
                return Err(store_err(
                    &query,
                    "rollup and raw answers have other series or steps",
                ));
            }
            // (relative difference, step time)
            let mut diffs: Vec<(f64, i64)> = a
                .iter()
                .zip(b)
                .flat_map(|(x, y)| x.samples.iter().zip(&y.samples))
                .map(|(p, q)| {
                    let d = (p.value - q.value).abs() / q.value.abs().max(f64::MIN_POSITIVE);
                    (d, p.timestamp_ms)
                })
                .collect();
            diffs.sort_by(|x, y| x.0.total_cmp(&y.0));
            let median_rel_diff = diffs.get(diffs.len() / 2).map_or(0.0, |d| d.0);
            let (max_rel_diff, max_at) = diffs.last().copied().unwrap_or((0.0, start_ms));
            Ok(DashboardTiming {
                query,
                step_s: step_ms / 1000,
                resolution: from_rollups
                    .stats
                    .rollup_resolution_ms
                    .map_or_else(|| "raw".into(), store::archive::rollup::resolution_name),
                series: a.len() as u64,
                points: a.iter().map(|s| s.samples.len() as u64).sum(),
                rollup_ms,
                raw_ms,
                raw_over_rollup: raw_ms / rollup_ms,
                median_rel_diff,
                max_rel_diff,
                max_rel_diff_after_data_start_s: (max_at - start_ms) / 1000,
            })
        })
        .collect()
}

/// The store with its rollups hidden: every query reads raw samples.
struct RawOnly(Arc<MetricsStore>);

impl MetricsQuerier for RawOnly {
    fn select(
        &self,
        m: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> store::Result<Vec<store::Series>> {
        self.0.select(m, mint, maxt)
    }
    fn select_lazy(
        &self,
        m: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> store::Result<Vec<store::contract::LazySeries>> {
        self.0.select_lazy(m, mint, maxt)
    }
    fn series(
        &self,
        sets: &[Vec<LabelMatcher>],
        mint: i64,
        maxt: i64,
    ) -> store::Result<Vec<store::Labels>> {
        self.0.series(sets, mint, maxt)
    }
    fn label_names(
        &self,
        sets: &[Vec<LabelMatcher>],
        mint: i64,
        maxt: i64,
    ) -> store::Result<Vec<String>> {
        self.0.label_names(sets, mint, maxt)
    }
    fn label_values(
        &self,
        name: &str,
        sets: &[Vec<LabelMatcher>],
        mint: i64,
        maxt: i64,
    ) -> store::Result<Vec<String>> {
        self.0.label_values(name, sets, mint, maxt)
    }
    fn metadata(&self) -> store::Result<Vec<store::MetricMetadata>> {
        self.0.metadata()
    }
}
