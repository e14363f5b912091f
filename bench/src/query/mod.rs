//! `lookout-bench query`: range-query latency of Lookout against Prometheus on the same data.
//!
//! Flow: [`load`] streams the seeded fleet ([`crate::fleet`]) into a fresh Lookout and a
//! fresh Prometheus (both running), and writes `dataset.json` once both accepted everything;
//! then both servers are restarted on their data directories, which is also where
//! `--reuse-data` starts, [`state`] waits for their background compaction to finish and
//! records what each holds, [`cases`] times every dashboard query over every range,
//! [`compare`] checks the answers agree, and [`report`] prints the table and writes JSON.

mod cases;
mod compare;
pub mod load;
mod report;
mod state;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use crate::error::{BenchError, Result};
use crate::fleet::{FleetParams, JOBS};
use crate::now_ms;
use crate::servers::{Binaries, ServerHandle, ServerKind};
use report::{Dataset, QueryResults};

#[derive(Args, Clone, Debug)]
pub struct QueryArgs {
    /// Check the harness in about a minute: 2 jobs x 10 instances (2,080 series) over 2 h,
    /// ranges 30m and 2h, 5 runs, its own work dir (overrides the size flags).
    #[arg(long)]
    quick: bool,
    /// Query the data already loaded in --work-dir instead of loading it again (the servers
    /// are started on it; the data set is read from its `dataset.json`).
    #[arg(long)]
    reuse_data: bool,
    /// Load the data and stop (no queries).
    #[arg(long, conflicts_with = "reuse_data")]
    load_only: bool,
    /// Services (`job` values), at most 10.
    #[arg(long, default_value_t = 10)]
    jobs: usize,
    /// Instances per service; each exposes 104 series.
    #[arg(long, default_value_t = 100)]
    instances_per_job: usize,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Scrapes per load window (each series carries this many samples per request).
    #[arg(long, default_value_t = 60)]
    window_steps: usize,
    #[arg(long, default_value_t = 500)]
    series_per_request: usize,
    /// Concurrent remote-write connections while loading.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Ranges and steps, `RANGE:STEP,...`, each ending at the end of the data.
    #[arg(long, default_value = "1h:15s,6h:1m,24h:5m")]
    ranges: String,
    /// Most timed runs per query and server.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Fewest timed runs per query and server, whatever the budget.
    #[arg(long, default_value_t = 5)]
    min_runs: usize,
    /// Wall-time budget for a case's timed runs (both servers); fewer runs (not under
    /// --min-runs) when a warm-up shows they would not fit.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    case_budget: Duration,
    #[arg(long, default_value_t = 1)]
    warmups: usize,
    /// After each case's timed runs, one untimed `stats=all` request per server; the
    /// server's own timing breakdown goes into the JSON (Prometheus has one; Lookout once
    /// its API reports stats).
    #[arg(long)]
    stats: bool,
    /// Only queries whose name contains one of these (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// How long a server must be idle, its block directory unchanged, before querying.
    #[arg(long, default_value = "75s", value_parser = humantime::parse_duration)]
    settle: Duration,
    #[arg(long, default_value = "/usr/bin/prometheus")]
    prometheus_bin: PathBuf,
    #[arg(long, default_value = "target/release/lookout")]
    lookout_bin: PathBuf,
    /// Where the servers' directories and `dataset.json` live (kept for --reuse-data).
    #[arg(long, default_value = "target/bench-query")]
    work_dir: PathBuf,
    #[arg(long, default_value = "bench/results/query-latest.json")]
    results: PathBuf,
}

impl QueryArgs {
    fn apply_quick(&mut self) {
        if self.quick {
            self.jobs = 2;
            self.instances_per_job = 10;
            self.duration = Duration::from_secs(2 * 3600);
            self.ranges = "30m:15s,2h:1m".into();
            self.runs = 5;
            self.min_runs = 3;
            self.settle = Duration::from_secs(20);
            if self.work_dir == Path::new("target/bench-query") {
                self.work_dir = "target/bench-query-quick".into();
            }
            if self.results == Path::new("bench/results/query-latest.json") {
                self.results = "target/bench-query-quick/results.json".into();
            }
        }
    }

    fn params(&self) -> FleetParams {
        FleetParams {
            jobs: self.jobs,
            instances_per_job: self.instances_per_job,
            interval_ms: self.interval.as_millis() as i64,
            duration_ms: self.duration.as_millis() as i64,
            window_steps: self.window_steps,
            series_per_request: self.series_per_request,
            seed: self.seed,
        }
    }
}

fn dataset_path(work: &Path) -> PathBuf {
    work.join("dataset.json")
}

/// Lookout's config for the benchmark: its defaults, except a retention long enough that
/// reusing the data days later does not find it deleted.
fn lookout_config(work: &Path) -> Result<PathBuf> {
    let path = work.join("lookout.yaml");
    std::fs::create_dir_all(work).map_err(|e| BenchError::io(work, e))?;
    std::fs::write(
        &path,
        "# written by lookout-bench query: defaults, but keep the benchmark data for reruns\nstorage:\n  metrics:\n    warm_for: 3650d\n",
    )
    .map_err(|e| BenchError::io(&path, e))?;
    Ok(path)
}

fn server_dir(work: &Path, kind: ServerKind) -> PathBuf {
    work.join(kind.name())
}

fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .map_err(|e| BenchError::Http {
            url: "-".into(),
            reason: format!("building client: {e}"),
        })
}

async fn start(
    kind: ServerKind,
    work: &Path,
    bins: &Binaries,
    client: &reqwest::Client,
) -> Result<ServerHandle> {
    let mut h = ServerHandle::start_in(kind, &server_dir(work, kind), bins)?;
    h.wait_ready(client, Duration::from_secs(900)).await?;
    Ok(h)
}

/// Loads the data set into fresh servers; returns the completed `dataset.json`.
async fn load_fresh(
    args: &QueryArgs,
    bins: &Binaries,
    client: &reqwest::Client,
) -> Result<Dataset> {
    let params = args.params();
    params.validate()?;
    for kind in [ServerKind::Lookout, ServerKind::Prometheus] {
        let dir = server_dir(&args.work_dir, kind);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| BenchError::io(&dir, e))?;
        }
    }
    let now = now_ms();
    let start_ms = params.aligned_start(now);
    let loaded_with = format!(
        "{} ({})",
        bins.lookout.display(),
        crate::servers::version_of(&bins.lookout, "--version")
    );
    let mut ds = Dataset::new(&params, start_ms, now, loaded_with);
    crate::report::write_json(&dataset_path(&args.work_dir), &ds)?;
    tracing::info!(
        series = ds.series,
        samples = ds.samples,
        windows = params.windows(),
        "loading the data set into lookout, then prometheus"
    );
    let mut lookout = start(ServerKind::Lookout, &args.work_dir, bins, client).await?;
    let mut prometheus = start(ServerKind::Prometheus, &args.work_dir, bins, client).await?;
    let started = std::time::Instant::now();
    let mut complete = true;
    for h in [&mut lookout, &mut prometheus] {
        let dir = server_dir(&args.work_dir, h.kind);
        let r = load::load(h, &dir, bins, &params, start_ms, args.connections, client).await?;
        tracing::info!(
            server = r.server,
            secs = r.wall_secs,
            cpu = r.cpu_secs,
            ok = r.send.samples_ok,
            rejected = r.send.samples_rejected,
            restarts = r.restarts,
            "loaded"
        );
        complete &= r.send.samples_rejected == 0 && r.send.samples_ok == ds.samples;
        if r.send.samples_rejected > 0 {
            tracing::error!(
                server = r.server,
                rejected = r.send.samples_rejected,
                first_error = r.send.first_error.as_deref().unwrap_or(""),
                "the server refused part of the data; its answers will differ"
            );
        }
        ds.add_load(&r);
    }
    ds.load_wall_secs = started.elapsed().as_secs_f64();
    ds.complete = complete;
    crate::report::write_json(&dataset_path(&args.work_dir), &ds)?;
    // stop both: the query phase starts them on their data, as --reuse-data does
    for h in [&mut lookout, &mut prometheus] {
        h.stop(Duration::from_secs(900)).await?;
    }
    if !complete {
        return Err(BenchError::Server {
            server: "load".into(),
            reason: "not every sample was accepted by both servers; see the log above".into(),
        });
    }
    Ok(ds)
}

fn read_dataset(work: &Path) -> Result<Dataset> {
    let path = dataset_path(work);
    let bytes = std::fs::read(&path).map_err(|e| BenchError::io(&path, e))?;
    let ds: Dataset = serde_json::from_slice(&bytes)?;
    if !ds.complete {
        return Err(BenchError::BadParam {
            name: "reuse-data",
            value: path.display().to_string(),
            reason: "the data set there was not completely loaded; run without --reuse-data".into(),
        });
    }
    for kind in [ServerKind::Lookout, ServerKind::Prometheus] {
        let d = server_dir(work, kind).join("data");
        if !d.is_dir() {
            return Err(BenchError::BadParam {
                name: "reuse-data",
                value: d.display().to_string(),
                reason: "data directory missing".into(),
            });
        }
    }
    Ok(ds)
}

pub async fn run(mut args: QueryArgs) -> Result<()> {
    args.apply_quick();
    let started_at_ms = now_ms();
    let ranges = cases::parse_ranges(&args.ranges)?;
    let bins = Binaries {
        prometheus: args.prometheus_bin.clone(),
        // not used by this subcommand
        victoria_metrics: PathBuf::from("/usr/bin/victoria-metrics"),
        lookout: args.lookout_bin.clone(),
        lookout_config: Some(lookout_config(&args.work_dir)?),
    };
    let client = client()?;
    let dataset = if args.reuse_data {
        read_dataset(&args.work_dir)?
    } else {
        load_fresh(&args, &bins, &client).await?
    };
    if args.load_only {
        println!(
            "loaded {} samples of {} series in {:.0}s into {}",
            dataset.samples,
            dataset.series,
            dataset.load_wall_secs,
            args.work_dir.display()
        );
        return Ok(());
    }

    let mut lookout = start(ServerKind::Lookout, &args.work_dir, &bins, &client).await?;
    let mut prometheus = start(ServerKind::Prometheus, &args.work_dir, &bins, &client).await?;
    let mut states = Vec::new();
    for h in [&mut lookout, &mut prometheus] {
        tracing::info!(
            server = h.kind.name(),
            "waiting for background work to settle"
        );
        let secs = state::settle(h, args.settle, Duration::from_secs(1800)).await?;
        states.push(state::describe(h, &client, secs).await);
    }
    // Lookout settled first; make sure it stayed idle while Prometheus compacted
    let secs = state::settle(
        &mut lookout,
        Duration::from_secs(10),
        Duration::from_secs(600),
    )
    .await?;
    states[0] = state::describe(&mut lookout, &client, states[0].settle_secs + secs).await;
    for s in &states {
        tracing::info!(server = s.server, state = s.summary, "store state");
    }

    let job = JOBS[1.min(dataset.params.jobs - 1)];
    let queries: Vec<_> = cases::queries(job)
        .into_iter()
        .filter(|q| args.only.is_empty() || args.only.iter().any(|o| q.name.contains(o.as_str())))
        .collect();
    let data_end_ms = dataset.end_ms;
    let mut results = Vec::new();
    for range in &ranges {
        for q in &queries {
            let spec = cases::CaseSpec {
                query: q,
                range,
                data_end_ms,
                warmups: args.warmups,
                max_runs: args.runs.max(1),
                min_runs: args.min_runs.clamp(1, args.runs.max(1)),
                budget: args.case_budget,
                stats: args.stats,
            };
            let c = cases::run_case(&spec, &mut lookout, &mut prometheus, &client).await?;
            tracing::info!(
                query = c.query,
                range = c.range,
                runs = c.runs,
                lookout_p50_ms = c.lookout.p50_secs.map(|s| (s * 1000.0) as u64),
                prometheus_p50_ms = c.prometheus.p50_secs.map(|s| (s * 1000.0) as u64),
                p99_ratio = c.p99_ratio,
                agree = c.agreement.as_ref().map(|a| a.ok()),
                "case done"
            );
            if let Some(a) = c.agreement.as_ref().filter(|a| !a.ok()) {
                tracing::error!(query = c.query, range = c.range, mismatches = a.mismatches, examples = ?a.examples, "ANSWERS DIFFER");
            }
            results.push(c);
        }
    }
    let mut out = QueryResults {
        started_at_ms,
        finished_at_ms: now_ms(),
        machine: crate::report::Machine::probe(),
        lookout_bin: args.lookout_bin.display().to_string(),
        lookout_version: lookout.version.clone(),
        prometheus_version: prometheus.version.clone(),
        reused_data: args.reuse_data,
        dataset,
        states,
        cases: results,
        mismatched_cases: Vec::new(),
        failed_cases: Vec::new(),
        target_missed: Vec::new(),
    };
    out.summarize();
    for h in [&mut lookout, &mut prometheus] {
        h.stop(Duration::from_secs(900)).await?;
    }
    println!("{}", out.table());
    crate::report::write_json(&args.results, &out)?;
    println!("results written to {}", args.results.display());
    println!(
        "data kept in {}; query it again with: bench/run.sh query --reuse-data{}",
        args.work_dir.display(),
        if args.quick { " --quick" } else { "" }
    );
    Ok(())
}
