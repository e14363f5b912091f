//! `lookout-bench rules`: alerting-rule evaluation cost against Prometheus 2.42, and
//! Lookout's end-to-end alert latency.
//!
//! Evaluation: [`rulegen`] writes 1,000 rules (10 groups, one per service, at 15 s) over the
//! [`crate::fleet`] series (10 jobs x 100 instances x 104 = 104,000 series). Each server in
//! turn (never both at once: they would share the 2 cores) starts fresh with the rules (Lookout
//! from its config file; Prometheus is started by [`crate::servers`] without rules, then given
//! them with a SIGHUP reload), receives a backfill of the last `--backfill` of 15 s samples
//! with current timestamps through remote write, and keeps receiving one sample per series
//! per interval in real time while its own `*_rule_group_last_duration_seconds` are read
//! ([`exposition`]) after every complete evaluation round (every group evaluated again). The
//! first round after the backfill is a warm-up; the figure is the median over `--rounds`
//! rounds of the sum over groups. Each server's `/api/v1/rules` and `/api/v1/alerts` are read
//! at the end: the same rules healthy and the same alerts firing means the same work.
//!
//! Latency: [`latency`] measures remote write -> fake robot ([`robot`]) on a fresh Lookout
//! for each `--group-waits` value.

mod exposition;
mod latency;
mod report;
mod robot;
mod rulegen;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use crate::error::{BenchError, Result};
use crate::fleet::{Fleet, FleetParams};
use crate::send::{self, SendStats};
use crate::servers::{Binaries, ServerHandle, ServerKind};
use exposition::{Reading, RuleMetrics};
use report::{EvalRun, Round, RuleHealth, RulesResults};

#[derive(Args, Clone, Debug)]
pub struct RulesArgs {
    /// Check the harness in a few minutes: 2 jobs x 10 instances (2,080 series, 200 rules),
    /// 10m of backfill, 3 rounds, 5 latency trials with group_wait 0s (overrides those flags).
    #[arg(long)]
    quick: bool,
    /// Services (`job` values, one rule group each), at most 10.
    #[arg(long, default_value_t = 10)]
    jobs: usize,
    /// Instances per service; each exposes 104 series.
    #[arg(long, default_value_t = 100)]
    instances_per_job: usize,
    /// Scrape and rule evaluation interval.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Data written before measuring (rate windows are 5m; one rule uses offset 5m).
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    backfill: Duration,
    /// Evaluation rounds measured per server (after one warm-up round).
    #[arg(long, default_value_t = 8)]
    rounds: usize,
    /// Servers whose rule evaluation is measured, in order.
    #[arg(long, value_delimiter = ',', default_value = "prometheus,lookout")]
    servers: Vec<ServerKind>,
    /// Latency trials per group_wait (at most 17 a minute: the robot's rate limit).
    #[arg(long, default_value_t = 20)]
    latency_trials: usize,
    /// group_wait values for the latency runs.
    #[arg(long, value_delimiter = ',', default_value = "0s,1s", value_parser = humantime::parse_duration)]
    group_waits: Vec<Duration>,
    /// Evaluation interval of the latency runs.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    latency_interval: Duration,
    /// Only the evaluation benchmark.
    #[arg(long, conflicts_with = "latency_only")]
    eval_only: bool,
    /// Only the latency benchmark.
    #[arg(long)]
    latency_only: bool,
    #[arg(long, default_value_t = 500)]
    series_per_request: usize,
    #[arg(long, default_value_t = 4)]
    connections: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value = "/usr/bin/prometheus")]
    prometheus_bin: PathBuf,
    #[arg(long, default_value = "target/release/lookout")]
    lookout_bin: PathBuf,
    #[arg(long, default_value = "target/bench-rules")]
    work_dir: PathBuf,
    /// Keep the servers' directories after the run.
    #[arg(long)]
    keep_data: bool,
    #[arg(long, default_value = "bench/results/rules-latest.json")]
    results: PathBuf,
}

impl RulesArgs {
    fn apply_quick(&mut self) {
        if self.quick {
            self.jobs = 2;
            self.instances_per_job = 10;
            self.backfill = Duration::from_secs(600);
            self.rounds = 3;
            self.latency_trials = 5;
            self.group_waits = vec![Duration::ZERO];
            if self.work_dir == Path::new("target/bench-rules") {
                self.work_dir = "target/bench-rules-quick".into();
            }
            if self.results == Path::new("bench/results/rules-latest.json") {
                self.results = "target/bench-rules-quick/results.json".into();
            }
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |name, value: String, reason: &str| {
            Err(BenchError::BadParam {
                name,
                value,
                reason: reason.into(),
            })
        };
        if self.rounds == 0 {
            return bad("rounds", "0".into(), "must be positive");
        }
        if self.interval < Duration::from_secs(1) || self.interval.subsec_millis() != 0 {
            return bad(
                "interval",
                format!("{:?}", self.interval),
                "must be whole seconds, at least 1s",
            );
        }
        if self.backfill < Duration::from_secs(600) {
            return bad(
                "backfill",
                format!("{:?}", self.backfill),
                "must be at least 10m (5m rate windows and a 5m offset)",
            );
        }
        if self.latency_interval < Duration::from_millis(100) {
            return bad(
                "latency-interval",
                format!("{:?}", self.latency_interval),
                "must be at least 100ms",
            );
        }
        Ok(())
    }

    /// The fleet covering the backfill and the measurement (plus margin), one step per window
    /// so the live part can be sent as its time comes.
    fn fleet_params(&self) -> FleetParams {
        let interval_ms = self.interval.as_millis() as i64;
        let live_ms = (self.rounds as i64 + 8) * interval_ms + 120_000;
        FleetParams {
            jobs: self.jobs,
            instances_per_job: self.instances_per_job,
            interval_ms,
            duration_ms: self.backfill.as_millis() as i64 + live_ms,
            window_steps: 1,
            series_per_request: self.series_per_request,
            seed: self.seed,
        }
    }
}

/// An HTTP client whose requests give up after `timeout`.
fn client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| BenchError::Http {
            url: "-".into(),
            reason: format!("building client: {e}"),
        })
}

async fn get_text(client: &reqwest::Client, url: &str) -> Result<String> {
    let r = client.get(url).send().await.map_err(|e| BenchError::Http {
        url: url.into(),
        reason: e.to_string(),
    })?;
    let status = r.status();
    let text = r.text().await.map_err(|e| BenchError::Http {
        url: url.into(),
        reason: e.to_string(),
    })?;
    if !status.is_success() {
        return Err(BenchError::Http {
            url: url.into(),
            reason: format!(
                "HTTP {status}: {}",
                text.chars().take(300).collect::<String>()
            ),
        });
    }
    Ok(text)
}

/// Rules and alerts as the server reports them (`/api/v1/rules`, `/api/v1/alerts`).
async fn rule_health(h: &ServerHandle, client: &reqwest::Client) -> Result<RuleHealth> {
    let base = h.base_url();
    let rules: serde_json::Value =
        serde_json::from_str(&get_text(client, &format!("{base}/api/v1/rules")).await?)?;
    let mut out = RuleHealth::default();
    for g in rules["data"]["groups"].as_array().into_iter().flatten() {
        out.groups += 1;
        for r in g["rules"].as_array().into_iter().flatten() {
            out.rules += 1;
            if r["health"].as_str() != Some("ok") {
                out.unhealthy += 1;
                if out.first_error.is_none() {
                    out.first_error = Some(format!(
                        "{}: {} ({})",
                        r["name"].as_str().unwrap_or("?"),
                        r["lastError"].as_str().unwrap_or(""),
                        r["health"].as_str().unwrap_or("no health")
                    ));
                }
            }
        }
    }
    let alerts: serde_json::Value =
        serde_json::from_str(&get_text(client, &format!("{base}/api/v1/alerts")).await?)?;
    for a in alerts["data"]["alerts"].as_array().into_iter().flatten() {
        let name = a["labels"]["alertname"].as_str().unwrap_or("?").to_string();
        let state = a["state"].as_str().unwrap_or("?");
        match state {
            "firing" => out.alerts_firing += 1,
            "pending" => out.alerts_pending += 1,
            _ => {}
        }
        *out.by_alert.entry(format!("{name} {state}")).or_insert(0) += 1;
    }
    Ok(out)
}

/// Gives Prometheus (started without rules by [`ServerHandle`]) the rule file: rewrite its
/// config and reload it with SIGHUP.
fn reload_prometheus_with_rules(
    h: &ServerHandle,
    dir: &Path,
    rules: &Path,
    interval_s: u64,
) -> Result<()> {
    let cfg = dir.join("prometheus.yml");
    let abs = std::fs::canonicalize(rules).map_err(|e| BenchError::io(rules, e))?;
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: {interval_s}s\n  evaluation_interval: {interval_s}s\nrule_files:\n  - '{}'\nscrape_configs: []\n",
            abs.display()
        ),
    )
    .map_err(|e| BenchError::io(&cfg, e))?;
    let status = Command::new("kill")
        .args(["-HUP", &h.pid.to_string()])
        .status()
        .map_err(|e| BenchError::io("kill", e))?;
    if !status.success() {
        return Err(BenchError::Server {
            server: "prometheus".into(),
            reason: format!("kill -HUP {} failed: {status}", h.pid),
        });
    }
    Ok(())
}

/// Waits until the server lists `groups` rule groups.
async fn wait_rules_loaded(
    h: &ServerHandle,
    client: &reqwest::Client,
    groups: usize,
) -> Result<()> {
    let started = Instant::now();
    let mut last = String::from("no answer");
    while started.elapsed() < Duration::from_secs(120) {
        match rule_health(h, client).await {
            Ok(r) if r.groups == groups => return Ok(()),
            Ok(r) => last = format!("{} groups of {groups}", r.groups),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(BenchError::Server {
        server: h.kind.name().into(),
        reason: format!("rules not loaded within 120s: {last}"),
    })
}

/// Sends the fleet: every window whose samples are in the past at once (the backfill), then
/// each later window as soon as its last sample's time has come, until the fleet ends or
/// `stop` is set. `backfilled` gets the backfill's samples and seconds when it is done.
async fn feed(
    mut fleet: Fleet,
    url: String,
    connections: usize,
    backfilled: tokio::sync::oneshot::Sender<(u64, f64)>,
    stop: Arc<AtomicBool>,
) -> Result<SendStats> {
    let client = send::write_client(&url, connections)?;
    let started = Instant::now();
    let mut total = SendStats::default();
    let mut backfilled = Some(backfilled);
    while !stop.load(Ordering::Relaxed) {
        let Some(w) = tokio::task::block_in_place(|| fleet.next_window())? else {
            break;
        };
        loop {
            let wait = w.max_ts - crate::now_ms();
            if wait <= 0 || stop.load(Ordering::Relaxed) {
                break;
            }
            if let Some(tx) = backfilled.take() {
                let _ = tx.send((total.samples_ok, started.elapsed().as_secs_f64()));
            }
            tokio::time::sleep(Duration::from_millis(wait.min(1000) as u64)).await;
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let st = send::send_batch(
            &client,
            &url,
            Arc::new(w.requests),
            Arc::new(w.samples),
            connections,
        )
        .await?;
        if st.samples_rejected > 0 {
            return Err(BenchError::Server {
                server: url.clone(),
                reason: format!(
                    "{} samples rejected: {}",
                    st.samples_rejected,
                    st.first_error.unwrap_or_default()
                ),
            });
        }
        total.merge(st);
    }
    if let Some(tx) = backfilled.take() {
        let _ = tx.send((total.samples_ok, started.elapsed().as_secs_f64()));
    }
    Ok(total)
}

async fn read_metrics(
    h: &ServerHandle,
    client: &reqwest::Client,
    m: RuleMetrics,
) -> Result<Reading> {
    let text = get_text(client, &format!("{}/metrics", h.base_url())).await?;
    Ok(Reading::parse(&text, m))
}

/// Measures one server's rule evaluation; the server is stopped before returning.
async fn eval_server(
    kind: ServerKind,
    args: &RulesArgs,
    bins: &Binaries,
    client: &reqwest::Client,
) -> Result<EvalRun> {
    let params = args.fleet_params();
    params.validate()?;
    let interval_s = args.interval.as_secs();
    let set = rulegen::generate(args.jobs, interval_s);
    let dir = args.work_dir.join(kind.name());
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| BenchError::io(&dir, e))?;
    }
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir).map_err(|e| BenchError::io(&rules_dir, e))?;
    let rules = rules_dir.join("bench.yaml");
    std::fs::write(&rules, &set.yaml).map_err(|e| BenchError::io(&rules, e))?;
    let lookout_cfg = dir.join("lookout.yaml");
    std::fs::write(
        &lookout_cfg,
        format!("# written by lookout-bench rules\nglobal:\n  evaluation_interval: {interval_s}s\nrule_files: [rules/bench.yaml]\n"),
    )
    .map_err(|e| BenchError::io(&lookout_cfg, e))?;
    let bins = Binaries {
        lookout_config: Some(lookout_cfg),
        ..bins.clone()
    };
    let mut h = ServerHandle::start_in(kind, &dir, &bins)?;
    h.wait_ready(client, Duration::from_secs(120)).await?;
    if kind == ServerKind::Prometheus {
        reload_prometheus_with_rules(&h, &dir, &rules, interval_s)?;
    }
    wait_rules_loaded(&h, client, set.groups).await?;
    let metrics = match kind {
        ServerKind::Lookout => exposition::LOOKOUT,
        _ => exposition::PROMETHEUS,
    };

    let now = crate::now_ms();
    let start_ms =
        params.aligned_start(now + params.duration_ms - args.backfill.as_millis() as i64);
    let fleet = Fleet::new(&params, start_ms)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let feeder = tokio::spawn(feed(
        fleet,
        h.write_url(),
        args.connections,
        tx,
        stop.clone(),
    ));
    tracing::info!(
        server = kind.name(),
        series = params.series(),
        rules = set.rules,
        "backfilling"
    );
    let (backfill_samples, backfill_secs) = match rx.await {
        Ok(v) => v,
        Err(_) => {
            // the feeder ended without reporting: its error says why
            let e = feeder.await.map_err(|e| BenchError::Server {
                server: kind.name().into(),
                reason: format!("feeder task failed: {e}"),
            })?;
            return Err(e.err().unwrap_or_else(|| BenchError::Server {
                server: kind.name().into(),
                reason: "the feeder stopped before the backfill was done".into(),
            }));
        }
    };
    tracing::info!(
        server = kind.name(),
        samples = backfill_samples,
        secs = backfill_secs,
        "backfilled; measuring"
    );

    let measure = async {
        let started = Instant::now();
        let mut prev = read_metrics(&h, client, metrics).await?;
        let mut rounds: Vec<Round> = Vec::new();
        let mut warmed_up = false;
        let mut cpu_start = 0.0;
        let mut busy_start = 0.0;
        // (server CPU, everyone else's CPU) from the warm-up round to the last round
        let mut window = (0.0, 0.0);
        let deadline = Duration::from_secs(60 + 3 * interval_s * (args.rounds as u64 + 1));
        // Prometheus evaluates an overrunning group again at once, so rounds can come faster
        // than the interval; measuring for a fixed time as well keeps the alert counts read
        // at the end comparable (the same `for` clocks have run out on both servers)
        let min_elapsed = Duration::from_secs(interval_s * (args.rounds as u64 + 1));
        while rounds.len() < args.rounds || started.elapsed() < min_elapsed {
            if started.elapsed() > deadline {
                return Err(BenchError::Server {
                    server: kind.name().into(),
                    reason: format!(
                        "only {} complete evaluation rounds in {}s (is every group evaluating? {} groups seen)",
                        rounds.len(),
                        deadline.as_secs(),
                        prev.evaluations.len()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let r = read_metrics(&h, client, metrics).await?;
            if !r.all_advanced_since(&prev, set.groups) {
                continue;
            }
            if rounds.len() >= args.rounds {
                prev = r;
                continue;
            }
            if !warmed_up {
                warmed_up = true;
                cpu_start = procstat_cpu(&mut h)?;
                busy_start = crate::procstat::machine_busy_secs()?;
            } else {
                let round = Round {
                    at_secs: started.elapsed().as_secs_f64(),
                    total_secs: r.total_duration(),
                    max_group_secs: r.durations.values().copied().fold(0.0, f64::max),
                };
                tracing::info!(server = kind.name(), round = rounds.len(), sum_ms = (round.total_secs * 1000.0) as u64, "evaluation round");
                rounds.push(round);
                if rounds.len() == args.rounds {
                    let cpu = procstat_cpu(&mut h)? - cpu_start;
                    let busy = crate::procstat::machine_busy_secs()? - busy_start;
                    window = (cpu, busy - cpu);
                }
            }
            prev = r;
        }
        let (cpu, others) = window;
        Ok((rounds, cpu, others))
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    let fed = feeder.await.map_err(|e| BenchError::Server {
        server: kind.name().into(),
        reason: format!("feeder task failed: {e}"),
    })?;
    let health = rule_health(&h, client).await;
    h.stop(Duration::from_secs(300)).await?;
    if !args.keep_data {
        let data = dir.join("data");
        if let Err(e) = std::fs::remove_dir_all(&data) {
            tracing::warn!(dir = %data.display(), error = %e, "could not remove the data dir");
        }
    }
    let (rounds, cpu, others) = measure?;
    fed?;
    let health = health?;
    let mut run = EvalRun {
        server: kind.name().into(),
        version: h.version.clone(),
        series: params.series() as u64,
        rules: set.rules,
        groups: set.groups,
        interval_secs: interval_s,
        backfill_samples,
        backfill_secs,
        cpu_secs_per_round: (!rounds.is_empty()).then(|| cpu / rounds.len() as f64),
        other_cpu_secs_per_round: (!rounds.is_empty())
            .then(|| others.max(0.0) / rounds.len() as f64),
        rounds,
        median_total_secs: None,
        median_max_group_secs: None,
        health,
        error: None,
    };
    run.summarize();
    Ok(run)
}

fn procstat_cpu(h: &mut ServerHandle) -> Result<f64> {
    h.cpu_secs()
}

pub async fn run(mut args: RulesArgs) -> Result<()> {
    args.apply_quick();
    args.validate()?;
    let started_at_ms = crate::now_ms();
    let bins = Binaries {
        prometheus: args.prometheus_bin.clone(),
        // not used by this subcommand
        victoria_metrics: PathBuf::from("/usr/bin/victoria-metrics"),
        lookout: args.lookout_bin.clone(),
        lookout_config: None,
    };
    let client = client(Duration::from_secs(60))?;
    let mut eval = Vec::new();
    if !args.latency_only {
        for kind in args.servers.clone() {
            if kind == ServerKind::VictoriaMetrics {
                return Err(BenchError::BadParam {
                    name: "servers",
                    value: kind.name().into(),
                    reason: "VictoriaMetrics evaluates no rules (vmalert is separate)".into(),
                });
            }
            tracing::info!(server = kind.name(), "rule evaluation");
            match eval_server(kind, &args, &bins, &client).await {
                Ok(r) => {
                    if r.health.unhealthy > 0 {
                        tracing::error!(
                            server = kind.name(),
                            unhealthy = r.health.unhealthy,
                            first = r.health.first_error.as_deref().unwrap_or(""),
                            "rules failing: the figures are not comparable"
                        );
                    }
                    eval.push(r);
                }
                Err(e) => {
                    tracing::error!(server = kind.name(), error = %e, "rule evaluation failed");
                    let mut r = EvalRun {
                        server: kind.name().into(),
                        version: crate::servers::version_of(
                            if kind == ServerKind::Lookout {
                                &bins.lookout
                            } else {
                                &bins.prometheus
                            },
                            "--version",
                        ),
                        series: args.fleet_params().series() as u64,
                        rules: 0,
                        groups: 0,
                        interval_secs: args.interval.as_secs(),
                        backfill_samples: 0,
                        backfill_secs: 0.0,
                        rounds: Vec::new(),
                        median_total_secs: None,
                        median_max_group_secs: None,
                        cpu_secs_per_round: None,
                        other_cpu_secs_per_round: None,
                        health: RuleHealth::default(),
                        error: Some(e.to_string()),
                    };
                    r.summarize();
                    eval.push(r);
                }
            }
        }
    }
    let mut latency_runs = Vec::new();
    let mut latency_error = None;
    if !args.eval_only {
        for (i, gw) in args.group_waits.iter().enumerate() {
            tracing::info!(
                group_wait_ms = gw.as_millis() as u64,
                trials = args.latency_trials,
                "end-to-end latency"
            );
            match latency::run(
                &args.work_dir,
                &bins,
                args.latency_trials,
                args.latency_interval,
                *gw,
                args.seed + i as u64,
            )
            .await
            {
                Ok(r) => latency_runs.push(r),
                Err(e) => {
                    tracing::error!(error = %e, "latency run failed");
                    latency_error = Some(e);
                    break;
                }
            }
        }
    }
    let mut out = RulesResults {
        started_at_ms,
        finished_at_ms: crate::now_ms(),
        machine: crate::report::Machine::probe(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        eval,
        eval_ratio: None,
        latency: latency_runs,
    };
    out.summarize();
    println!("{}", out.table());
    crate::report::write_json(&args.results, &out)?;
    println!("results written to {}", args.results.display());
    let eval_failed = out.eval.iter().find_map(|e| e.error.clone());
    match (latency_error, eval_failed) {
        (Some(e), _) => Err(e),
        (None, Some(msg)) => Err(BenchError::Server {
            server: "rules".into(),
            reason: msg,
        }),
        (None, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: RulesArgs,
    }

    fn parse(argv: &[&str]) -> RulesArgs {
        let mut v = vec!["rules"];
        v.extend_from_slice(argv);
        Cli::try_parse_from(v).unwrap().args
    }

    #[test]
    fn defaults_are_the_issue_s_benchmark() {
        let a = parse(&[]);
        a.validate().unwrap();
        let p = a.fleet_params();
        assert_eq!(p.series(), 104_000);
        assert_eq!(p.interval_ms, 15_000);
        assert_eq!(rulegen::generate(a.jobs, 15).rules, 1000);
        assert_eq!(a.group_waits, vec![Duration::ZERO, Duration::from_secs(1)]);
        // the data covers the backfill and the measurement with margin
        let live = p.duration_ms - a.backfill.as_millis() as i64;
        assert!(live > (a.rounds as i64 + 2) * 15_000, "{live}");
    }

    #[test]
    fn quick_shrinks_everything() {
        let mut a = parse(&["--quick"]);
        a.apply_quick();
        a.validate().unwrap();
        assert_eq!(a.fleet_params().series(), 2_080);
        assert_eq!(rulegen::generate(a.jobs, 15).rules, 200);
        assert_eq!(a.work_dir, Path::new("target/bench-rules-quick"));
    }

    #[test]
    fn bad_parameters_are_named() {
        let e = parse(&["--rounds", "0"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("rounds"), "{e}");
        let e = parse(&["--backfill", "5m"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("backfill"), "{e}");
        let e = parse(&["--interval", "1500ms"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("interval"), "{e}");
    }

    /// The feeder sends the past at once and reports the backfill before the first window
    /// still in the future; stopping it ends it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn feeder_backfills_then_waits_for_live_windows() {
        use std::sync::atomic::AtomicU64;
        let received = Arc::new(AtomicU64::new(0));
        let r2 = received.clone();
        let app = axum::Router::new().route(
            "/api/v1/write",
            axum::routing::post(move |body: axum::body::Bytes| {
                let r = r2.clone();
                async move {
                    r.fetch_add(body.len() as u64, Ordering::Relaxed);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let params = FleetParams {
            jobs: 1,
            instances_per_job: 2,
            interval_ms: 15_000,
            duration_ms: 15 * 60_000,
            window_steps: 1,
            series_per_request: 100,
            seed: 1,
        };
        // ten minutes in the past, five in the future
        let start = params.aligned_start(crate::now_ms() + 5 * 60_000);
        let fleet = Fleet::new(&params, start).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(feed(
            fleet,
            format!("http://{addr}/api/v1/write"),
            2,
            tx,
            stop.clone(),
        ));
        let (samples, _) = rx.await.unwrap();
        // 2 targets x 104 series, one sample per window, ~40 past windows (+-1 for alignment)
        let per_window = 2 * 104;
        assert!(samples % per_window == 0, "{samples}");
        let windows = samples / per_window;
        assert!((39..=41).contains(&windows), "{windows} windows backfilled");
        assert!(received.load(Ordering::Relaxed) > 0);
        stop.store(true, Ordering::Relaxed);
        let st = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        // at most the one window that came due while the test ran
        assert!(
            (samples..=samples + per_window).contains(&st.samples_ok),
            "{} sent, {samples} backfilled",
            st.samples_ok
        );
    }
}
