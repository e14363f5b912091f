//! `lookout-bench ui`: how fast the web UI answers with a realistic amount of data stored.
//!
//! Flow: Lookout starts on free ports with an empty data dir -> [`data`] generates 50 services'
//! traces (10,000) and 1,000,000 log lines spread over the last hour, sent over OTLP/HTTP ->
//! wait until every service is listed and every line is counted by the logs histogram ->
//! per page, the server-rendered HTML is fetched `--samples` times (time to its last byte, as
//! `curl` measures it, after two warm-ups), then loaded `--samples` times in headless Chromium
//! ([`cdp`]): navigation start to the app's hydration mark is the time to interactive ->
//! the table (median and p99) is printed and the JSON written.
//!
//! Targets (issue 7): services page and service map server-rendered in < 200 ms; every page
//! interactive in < 1 s.

mod cdp;
mod data;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use crate::error::{BenchError, Result};
use crate::now_ms;
use crate::otlp_http::{self, Export, Items};
use crate::servers::{Binaries, ServerHandle, ServerKind};
use data::{LogRequest, TraceRequest};

#[derive(Args, Clone, Debug)]
pub struct UiArgs {
    /// Check the harness in a minute: 10 services, 1,000 traces, 20,000 lines, 5 samples.
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value_t = 50)]
    services: usize,
    #[arg(long, default_value_t = 10_000)]
    traces: u64,
    #[arg(long, default_value_t = 1_000_000)]
    log_lines: u64,
    /// Timed loads per page, for the server time and for the time to interactive each.
    #[arg(long, default_value_t = 20)]
    samples: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value = "target/release/lookout")]
    lookout_bin: PathBuf,
    /// The browser (Debian's `chromium`).
    #[arg(long, default_value = "chromium")]
    chromium: String,
    #[arg(long, default_value = "target/bench-ui")]
    work_dir: PathBuf,
    #[arg(long)]
    keep_data: bool,
    #[arg(long, default_value = "bench/results/ui-latest.json")]
    results: PathBuf,
}

impl UiArgs {
    fn apply_quick(&mut self) {
        if self.quick {
            self.services = 10;
            self.traces = 1_000;
            self.log_lines = 20_000;
            self.samples = 5;
            if self.results == std::path::Path::new("bench/results/ui-latest.json") {
                self.results = "target/bench-ui/quick.json".into();
            }
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |name, value: String, reason: &str| {
            Err(BenchError::BadParam {
                name,
                value,
                reason: reason.into(),
            })
        };
        if self.services < 10 {
            return bad(
                "services",
                self.services.to_string(),
                "at least 10 (one tier)",
            );
        }
        if self.traces == 0 || self.samples == 0 {
            return bad(
                "traces/samples",
                format!("{}/{}", self.traces, self.samples),
                "must be positive",
            );
        }
        Ok(())
    }
}

/// Spans of the UI benchmark's trace requests.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Spans {
    pub spans_ok: u64,
    pub spans_rejected: u64,
}

impl Items for Spans {
    fn merge(&mut self, o: Self) {
        self.spans_ok += o.spans_ok;
        self.spans_rejected += o.spans_rejected;
    }
    fn rejected(&self) -> u64 {
        self.spans_rejected
    }
}

impl Export for TraceRequest {
    type Items = Spans;
    type Answer = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    const USER_AGENT: &'static str = "lookout-bench/0.1 (ui traces)";
    const ANSWER_NAME: &'static str = "ExportTraceServiceResponse";
    const SIGNAL: &'static str = "trace";
    fn body(&self) -> &bytes::Bytes {
        &self.body
    }
    fn partial(a: Self::Answer) -> Option<(u64, String)> {
        a.partial_success.map(|p| {
            (
                u64::try_from(p.rejected_spans).unwrap_or(0),
                p.error_message,
            )
        })
    }
    fn acknowledged(&self, c: &mut Spans, rejected: u64) {
        let n = u64::from(self.spans);
        c.spans_ok += n.saturating_sub(rejected);
        c.spans_rejected += rejected.min(n);
    }
    fn lost(&self, c: &mut Spans) {
        c.spans_rejected += u64::from(self.spans);
    }
}

/// Records of the UI benchmark's log requests.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Records {
    pub records_ok: u64,
    pub records_rejected: u64,
}

impl Items for Records {
    fn merge(&mut self, o: Self) {
        self.records_ok += o.records_ok;
        self.records_rejected += o.records_rejected;
    }
    fn rejected(&self) -> u64 {
        self.records_rejected
    }
}

impl Export for LogRequest {
    type Items = Records;
    type Answer = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
    const USER_AGENT: &'static str = "lookout-bench/0.1 (ui logs)";
    const ANSWER_NAME: &'static str = "ExportLogsServiceResponse";
    const SIGNAL: &'static str = "log";
    fn body(&self) -> &bytes::Bytes {
        &self.body
    }
    fn partial(a: Self::Answer) -> Option<(u64, String)> {
        a.partial_success.map(|p| {
            (
                u64::try_from(p.rejected_log_records).unwrap_or(0),
                p.error_message,
            )
        })
    }
    fn acknowledged(&self, c: &mut Records, rejected: u64) {
        let n = u64::from(self.records);
        c.records_ok += n.saturating_sub(rejected);
        c.records_rejected += rejected.min(n);
    }
    fn lost(&self, c: &mut Records) {
        c.records_rejected += u64::from(self.records);
    }
}

/// Median and 99th percentile (nearest rank) of a sample, in ms.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Stat {
    pub median_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub fn stat(mut xs: Vec<f64>) -> Stat {
    xs.sort_by(f64::total_cmp);
    let rank = |q: f64| -> f64 {
        if xs.is_empty() {
            return f64::NAN;
        }
        let i = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len()) - 1;
        xs[i]
    };
    Stat {
        median_ms: rank(0.5),
        p99_ms: rank(0.99),
        max_ms: xs.last().copied().unwrap_or(f64::NAN),
    }
}

#[derive(Debug, Serialize)]
pub struct PageResult {
    pub name: String,
    pub path: String,
    pub html_bytes: usize,
    pub server: Stat,
    pub interactive: Stat,
    /// Time to the HTML's first byte inside the browser (navigation start based).
    pub browser_ttfb: Stat,
    /// Server-time target in ms, for the pages that have one.
    pub server_target_ms: Option<f64>,
    pub interactive_target_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct UiResults {
    pub started_unix_ms: i64,
    pub lookout_version: String,
    pub chromium_version: String,
    pub load_avg_start: String,
    pub services: usize,
    pub traces: u64,
    pub spans: u64,
    pub error_traces: u64,
    pub log_lines: u64,
    pub load_secs: f64,
    pub samples: usize,
    pub pages: Vec<PageResult>,
}

impl UiResults {
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} services, {} traces ({} spans), {} log lines; {} samples per page\n\n",
            self.services, self.traces, self.spans, self.log_lines, self.samples
        );
        s.push_str("| page | HTML | server p50 | server p99 | interactive p50 | interactive p99 | targets |\n");
        s.push_str("| --- | ---: | ---: | ---: | ---: | ---: | --- |\n");
        for p in &self.pages {
            let (sv, ti) = (p.server, p.interactive);
            let mut verdict = Vec::new();
            if let Some(t) = p.server_target_ms {
                verdict.push(format!(
                    "server < {t:.0} ms {}",
                    if sv.p99_ms < t {
                        "met"
                    } else if sv.median_ms < t {
                        "met at p50 only"
                    } else {
                        "MISSED"
                    }
                ));
            }
            let t = p.interactive_target_ms;
            verdict.push(format!(
                "interactive < {t:.0} ms {}",
                if ti.p99_ms < t {
                    "met"
                } else if ti.median_ms < t {
                    "met at p50 only"
                } else {
                    "MISSED"
                }
            ));
            s.push_str(&format!(
                "| {} (`{}`) | {:.0} KB | {:.1} ms | {:.1} ms | {:.0} ms | {:.0} ms | {} |\n",
                p.name,
                p.path,
                p.html_bytes as f64 / 1024.0,
                sv.median_ms,
                sv.p99_ms,
                ti.median_ms,
                ti.p99_ms,
                verdict.join("; ")
            ));
        }
        s
    }
}

fn http_err(url: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Http {
        url: url.into(),
        reason: e.to_string(),
    }
}

/// A page measured: what it is, where, its server-time target, and a text its HTML must hold
/// (so an empty or failing page is never what gets timed).
struct Page {
    name: &'static str,
    path: String,
    target_ms: Option<f64>,
    shows: String,
}

fn pages(names: &[String], trace_id: &str) -> Vec<Page> {
    let r = "start=now-1h&end=now";
    let svc = &names[11 % names.len()];
    let page = |name, path: String, target_ms, shows: &str| Page {
        name,
        path,
        target_ms,
        shows: shows.to_string(),
    };
    vec![
        page("services", format!("/services?{r}"), Some(200.0), &names[0]),
        page("service map", format!("/map?{r}"), Some(200.0), &names[0]),
        page("service", format!("/services/{svc}?{r}"), None, "table class=\"grid-table operations"),
        page("traces", format!("/traces?{r}&service={svc}"), None, "class=\"trace-link\""),
        page("trace", format!("/traces/{trace_id}?{r}"), None, "wf-row wf-span"),
        // every line of the hour: the histogram counts 1M records, the newest 100 shown
        page("logs (all)", format!("/logs?{r}"), None, "handled GET"),
        page("logs (term)", format!("/logs?{r}&query=failed"), None, "failed to process"),
        page(
            "explore",
            format!("/explore?{r}&query=sum%20by%20(service)%20(rate(traces_spanmetrics_calls_total%5B5m%5D))"),
            None,
            &names[0],
        ),
        page("alerts", format!("/alerts?{r}"), None, "data-tab=\"rules\""),
        page("dashboards", format!("/dashboards?{r}"), None, "/dashboards/service-overview"),
    ]
}

async fn wait_loaded(
    http: &reqwest::Client,
    base: &str,
    services: usize,
    lines: u64,
    timeout: Duration,
) -> Result<()> {
    let started = Instant::now();
    let mut last = String::new();
    let start = (now_ms() / 1000) - 7200;
    let end = now_ms() / 1000 + 60;
    while started.elapsed() < timeout {
        let svc_url = format!("{base}/api/v1/services?start={start}&end={end}");
        let listed = match http.get(&svc_url).send().await {
            Ok(r) => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["data"].as_array().map(Vec::len))
                .unwrap_or(0),
            Err(_) => 0,
        };
        let hist_url = format!("{base}/api/v1/logs/histogram?start={start}&end={end}&step=600");
        let counted: u64 = match http.get(&hist_url).send().await {
            Ok(r) => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| {
                    v["data"]["buckets"]
                        .as_array()
                        .map(|b| b.iter().filter_map(|x| x["count"].as_u64()).sum())
                })
                .unwrap_or(0),
            Err(_) => 0,
        };
        if listed >= services && counted >= lines {
            return Ok(());
        }
        last = format!("{listed}/{services} services listed, {counted}/{lines} lines counted");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(BenchError::Server {
        server: "lookout".into(),
        reason: format!("data not queryable after {timeout:?}: {last}"),
    })
}

pub async fn run(mut args: UiArgs) -> Result<()> {
    args.apply_quick();
    args.check()?;
    std::fs::create_dir_all(&args.work_dir).map_err(|e| BenchError::io(&args.work_dir, e))?;
    let started_unix_ms = now_ms();
    let load_avg_start = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let names = data::service_names(args.services);
    let end_ns = (now_ms().max(0) as u64) * 1_000_000;
    let start_ns = end_ns - 3_600_000_000_000;
    let t = Instant::now();
    let set = data::traces(
        &names,
        args.traces,
        args.seed,
        start_ns,
        end_ns - 60_000_000_000,
    );
    tracing::info!(
        spans = set.spans,
        requests = set.requests.len(),
        secs = t.elapsed().as_secs_f64(),
        "traces generated"
    );
    let serving = set.with_server_spans.iter().filter(|b| **b).count();

    let bins = Binaries {
        prometheus: PathBuf::new(),
        victoria_metrics: PathBuf::new(),
        lookout: args.lookout_bin.clone(),
        lookout_config: None,
    };
    let mut h = ServerHandle::start(ServerKind::Lookout, &args.work_dir, &bins)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| http_err("-", e))?;
    h.wait_ready(&http, Duration::from_secs(120)).await?;
    let base = h.base_url();
    let otlp = h.otlp_http_url().ok_or_else(|| BenchError::Server {
        server: "lookout".into(),
        reason: "no OTLP/HTTP address".into(),
    })?;
    let result = measure(&args, &names, set, serving, &mut h, &http, &base, &otlp).await;
    let stopped = h.stop(Duration::from_secs(120)).await;
    let (mut results, load_secs) = result?;
    stopped?;
    results.started_unix_ms = started_unix_ms;
    results.load_avg_start = load_avg_start;
    results.load_secs = load_secs;
    results.lookout_version = h.version.clone();
    if !args.keep_data {
        let _ = std::fs::remove_dir_all(&h.data_dir);
    }
    println!("{}", results.table());
    if let Some(dir) = args.results.parent() {
        std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
    }
    std::fs::write(&args.results, serde_json::to_vec_pretty(&results)?)
        .map_err(|e| BenchError::io(&args.results, e))?;
    println!("results: {}", args.results.display());
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &UiArgs,
    names: &[String],
    set: data::TraceSet,
    serving: usize,
    h: &mut ServerHandle,
    http: &reqwest::Client,
    base: &str,
    otlp: &str,
) -> Result<(UiResults, f64)> {
    let load_started = Instant::now();
    let client = otlp_http::client(4)?;
    let sent = otlp_http::send(
        &client,
        &format!("{otlp}/v1/traces"),
        Arc::new(set.requests),
        4,
    )
    .await?;
    if !sent.clean() || sent.spans_ok != set.spans {
        return Err(BenchError::Server {
            server: "lookout".into(),
            reason: format!("traces not all accepted: {sent:?}"),
        });
    }
    let end_ns = (now_ms().max(0) as u64) * 1_000_000;
    let window = (end_ns - 3_600_000_000_000, end_ns - 30_000_000_000);
    let chunk = 100_000u64;
    let mut k = 0;
    while k < args.log_lines {
        let n = chunk.min(args.log_lines - k);
        let reqs = data::logs(
            names,
            &set.trace_ids,
            args.seed,
            k..k + n,
            args.log_lines,
            window,
        );
        let st = otlp_http::send(&client, &format!("{otlp}/v1/logs"), Arc::new(reqs), 4).await?;
        if !st.clean() || st.records_ok != n {
            return Err(BenchError::Server {
                server: "lookout".into(),
                reason: format!("log lines not all accepted: {st:?}"),
            });
        }
        h.cpu_secs()?; // fails if the server died
        k += n;
    }
    tracing::info!(
        secs = load_started.elapsed().as_secs_f64(),
        "data sent; waiting until queryable"
    );
    wait_loaded(
        http,
        base,
        serving,
        args.log_lines,
        Duration::from_secs(600),
    )
    .await?;
    let load_secs = load_started.elapsed().as_secs_f64();
    tracing::info!(load_secs, "data queryable");

    let trace_id: String = set.trace_ids[set.trace_ids.len() / 2]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut browser = cdp::Chromium::launch(&args.chromium, &args.work_dir, 1400, 900)?;
    let chromium_version = browser.version().unwrap_or_default();
    let mut out = Vec::new();
    let outcome: Result<()> = async {
        for Page {
            name,
            path,
            target_ms: target,
            shows,
        } in pages(names, &trace_id)
        {
            let name = name.to_string();
            let url = format!("{base}{path}");
            let mut server = Vec::new();
            let mut html_bytes = 0;
            for i in 0..args.samples + 2 {
                let t = Instant::now();
                let r = http
                    .get(&url)
                    .header("Accept", "text/html")
                    .send()
                    .await
                    .map_err(|e| http_err(&url, e))?;
                let status = r.status().as_u16();
                let body = r.bytes().await.map_err(|e| http_err(&url, e))?;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                html_bytes = body.len();
                if status != 200 {
                    return Err(http_err(&url, format!("HTTP {status}")));
                }
                if i == 0 && !String::from_utf8_lossy(&body).contains(&shows) {
                    return Err(http_err(
                        &url,
                        format!("the page does not show {shows:?}: it would time an empty page"),
                    ));
                }
                if i >= 2 {
                    server.push(ms);
                }
            }
            let mut tti = Vec::new();
            let mut ttfb = Vec::new();
            for _ in 0..args.samples {
                let l = browser.load(&url, Duration::from_secs(30))?;
                tti.push(l.interactive_ms);
                ttfb.push(l.ttfb_ms);
            }
            if !browser.errors.is_empty() {
                tracing::warn!(page = %name, errors = ?browser.errors, "console errors");
                browser.errors.clear();
            }
            let (s, t) = (stat(server), stat(tti));
            tracing::info!(page = %name, server_p50 = s.median_ms, tti_p50 = t.median_ms, "measured");
            out.push(PageResult {
                name,
                path,
                html_bytes,
                server: s,
                interactive: t,
                browser_ttfb: stat(ttfb),
                server_target_ms: target,
                interactive_target_ms: 1000.0,
            });
        }
        Ok(())
    }
    .await;
    browser.close();
    outcome?;
    Ok((
        UiResults {
            started_unix_ms: 0,
            lookout_version: String::new(),
            chromium_version,
            load_avg_start: String::new(),
            services: args.services,
            traces: set.traces,
            spans: set.spans,
            error_traces: set.error_traces,
            log_lines: args.log_lines,
            load_secs: 0.0,
            samples: args.samples,
            pages: out,
        },
        load_secs,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = stat((1..=100).map(f64::from).collect());
        assert_eq!(s.median_ms, 50.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        let s = stat(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.median_ms, s.p99_ms), (2.0, 3.0));
        assert!(stat(Vec::new()).median_ms.is_nan());
    }
}
