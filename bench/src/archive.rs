//! The archive tier for metrics, in process: the query benchmark's fleet (same generator,
//! same seed) appended to a `MetricsStore` through the remote-write decoder, flushed into
//! 2 h blocks as a running server would, then every block moved to a local Parquet archive
//! by the store's own mover. Reported: warm (block) and archive bytes per sample, the move's
//! samples per wall- and CPU-second, and one selection of all series read from the warm
//! tier and again from the archive (same answers checked).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use store::archive::{Archive, ArchiveLocation};
use store::config::{ArchiveTier, FsyncPolicy, MetricsStoreOptions};
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
fn store_err(what: &str, e: impl std::fmt::Display) -> BenchError {
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
    let _ = std::fs::remove_dir_all(&args.work_dir);
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
        archive,
        keep_for: Duration::from_secs(400 * 86_400),
    });
    let store = MetricsStore::open(options).map_err(|e| store_err("opening the store", e))?;

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
    };
    store.close().await.map_err(|e| store_err("close", e))?;
    crate::report::write_json(&args.results, &report)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
