//! The dashboard queries, the time ranges they run over, and timing them: every case runs a
//! warm-up on both servers (whose answers are compared), then timed runs alternating which
//! server goes first, each timed on the client from sending the request to the last byte of
//! the answer, with the server's CPU time over the same request read from `/proc`.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::compare::{self, Agreement};
use crate::error::{BenchError, Result};
use crate::procstat;
use crate::servers::ServerHandle;

#[derive(Clone, Debug, Serialize)]
pub struct QueryDef {
    pub name: &'static str,
    pub promql: String,
}

/// The queries a service dashboard over this fleet runs; `job` picks one service.
pub fn queries(job: &str) -> Vec<QueryDef> {
    let q = |name, promql: String| QueryDef { name, promql };
    vec![
        q(
            "rate",
            format!(r#"rate(http_requests_total{{job="{job}"}}[5m])"#),
        ),
        q(
            "sum_by_job",
            "sum by (job) (rate(http_requests_total[5m]))".to_string(),
        ),
        q(
            "sum_by_handler_code",
            format!(r#"sum by (handler, code) (rate(http_requests_total{{job="{job}"}}[5m]))"#),
        ),
        q(
            "histogram_quantile",
            "histogram_quantile(0.99, sum by (le, job) (rate(http_request_duration_seconds_bucket[5m])))"
                .to_string(),
        ),
        q(
            "topk",
            "topk(5, sum by (instance) (rate(http_requests_total[5m])))".to_string(),
        ),
        q(
            "avg_over_time",
            format!(r#"avg_over_time(process_resident_memory_bytes{{job="{job}"}}[5m])"#),
        ),
        q(
            "error_ratio",
            r#"sum by (job) (rate(http_requests_total{code=~"5.."}[5m])) / sum by (job) (rate(http_requests_total[5m]))"#
                .to_string(),
        ),
    ]
}

/// A time range ending at the data's end, with the step a dashboard would use for it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RangeDef {
    pub label: String,
    pub range_ms: i64,
    pub step_ms: i64,
}

/// Parses `1h:15s,6h:1m,24h:5m`.
pub fn parse_ranges(text: &str) -> Result<Vec<RangeDef>> {
    let bad = |reason: String| BenchError::BadParam {
        name: "ranges",
        value: text.to_string(),
        reason,
    };
    let dur = |s: &str| -> Result<i64> {
        humantime::parse_duration(s)
            .map(|d| d.as_millis() as i64)
            .map_err(|e| bad(format!("{s:?}: {e}")))
    };
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (range, step) = part
            .split_once(':')
            .ok_or_else(|| bad(format!("{part:?} is not RANGE:STEP")))?;
        let (range_ms, step_ms) = (dur(range)?, dur(step)?);
        if step_ms < 1000 || range_ms < step_ms {
            return Err(bad(format!(
                "{part:?}: the step must be at least 1s and at most the range"
            )));
        }
        if range_ms / step_ms > 11_000 {
            return Err(bad(format!(
                "{part:?}: over 11,000 steps, which both servers refuse"
            )));
        }
        out.push(RangeDef {
            label: range.to_string(),
            range_ms,
            step_ms,
        });
    }
    if out.is_empty() {
        return Err(bad("no range given".into()));
    }
    Ok(out)
}

impl RangeDef {
    /// `(start, end)` in ms: the end is the last step boundary at or before `data_end_ms`,
    /// as Grafana aligns a range to its step.
    pub fn window(&self, data_end_ms: i64) -> (i64, i64) {
        let end = data_end_ms.div_euclid(self.step_ms) * self.step_ms;
        (end - self.range_ms, end)
    }
}

/// One timed request.
#[derive(Clone, Debug, Serialize)]
pub struct Timing {
    pub secs: f64,
    pub server_cpu_secs: f64,
    pub bytes: usize,
}

/// Sends one range query and reads the whole answer.
pub async fn run_once(
    h: &mut ServerHandle,
    client: &reqwest::Client,
    promql: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    extra: &[(&str, &str)],
) -> Result<(Timing, Vec<u8>)> {
    let secs = |ms: i64| format!("{}", ms as f64 / 1000.0);
    let base = format!("{}/api/v1/query_range", h.base_url());
    let mut params = vec![
        ("query", promql.to_string()),
        ("start", secs(start_ms)),
        ("end", secs(end_ms)),
        ("step", secs(step_ms)),
    ];
    params.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let url = reqwest::Url::parse_with_params(&base, &params).map_err(|e| BenchError::Http {
        url: base.clone(),
        reason: format!("building the query URL: {e}"),
    })?;
    let cpu0 = h.cpu_secs()?;
    let started = Instant::now();
    let http = |reason: String| BenchError::Http {
        url: format!("{base}?query={promql}"),
        reason,
    };
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| http(e.to_string()))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| http(e.to_string()))?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu1 = h.cpu_secs()?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
        return Err(http(format!("HTTP {status}: {text}")));
    }
    Ok((
        Timing {
            secs: elapsed,
            server_cpu_secs: cpu1 - cpu0,
            bytes: body.len(),
        },
        body.to_vec(),
    ))
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerTimings {
    pub runs: Vec<Timing>,
    pub p50_secs: Option<f64>,
    pub p99_secs: Option<f64>,
    pub median_cpu_secs: Option<f64>,
    pub warmup_secs: Vec<f64>,
    /// Untimed `stats=all` request after the runs: the server's own breakdown, if it has one.
    pub stats: Option<serde_json::Value>,
    pub error: Option<String>,
}

impl ServerTimings {
    pub fn finish(&mut self) {
        let t: Vec<f64> = self.runs.iter().map(|r| r.secs).collect();
        let c: Vec<f64> = self.runs.iter().map(|r| r.server_cpu_secs).collect();
        self.p50_secs = compare::percentile(&t, 0.5);
        self.p99_secs = compare::percentile(&t, 0.99);
        self.median_cpu_secs = compare::percentile(&c, 0.5);
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub query: String,
    pub promql: String,
    pub range: String,
    pub step_secs: f64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub runs: usize,
    pub lookout: ServerTimings,
    pub prometheus: ServerTimings,
    pub agreement: Option<Agreement>,
    /// Why the answers could not be compared (an error answer).
    pub agreement_error: Option<String>,
    pub p50_ratio: Option<f64>,
    pub p99_ratio: Option<f64>,
    /// CPU-seconds the rest of the machine (not the two servers, not this harness) used
    /// during the timed runs: other work competing for the 2 cores.
    pub other_cpu_secs: f64,
    pub wall_secs: f64,
}

pub struct CaseSpec<'a> {
    pub query: &'a QueryDef,
    pub range: &'a RangeDef,
    pub data_end_ms: i64,
    pub warmups: usize,
    pub max_runs: usize,
    pub min_runs: usize,
    /// Timed runs stop adding once both servers' estimated time for them exceeds this.
    pub budget: Duration,
    /// Ask each server for its own `stats=all` breakdown after the timed runs.
    pub stats: bool,
}

fn stats_of(body: &[u8]) -> Option<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("data")?.get("stats").cloned()
}

/// Runs one case on both servers.
pub async fn run_case(
    spec: &CaseSpec<'_>,
    lookout: &mut ServerHandle,
    prometheus: &mut ServerHandle,
    client: &reqwest::Client,
) -> Result<CaseResult> {
    let (start, end) = spec.range.window(spec.data_end_ms);
    let step = spec.range.step_ms;
    let promql = spec.query.promql.as_str();
    let case_started = Instant::now();
    let mut lt = ServerTimings::default();
    let mut pt = ServerTimings::default();
    let (mut l_body, mut p_body) = (None, None);
    for _ in 0..spec.warmups.max(1) {
        match run_once(lookout, client, promql, start, end, step, &[]).await {
            Ok((t, b)) => {
                lt.warmup_secs.push(t.secs);
                l_body = Some(b);
            }
            Err(e) => lt.error = Some(e.to_string()),
        }
        match run_once(prometheus, client, promql, start, end, step, &[]).await {
            Ok((t, b)) => {
                pt.warmup_secs.push(t.secs);
                p_body = Some(b);
            }
            Err(e) => pt.error = Some(e.to_string()),
        }
    }
    let (agreement, agreement_error) = match (&l_body, &p_body) {
        (Some(l), Some(p)) => match (compare::parse_matrix(l), compare::parse_matrix(p)) {
            (Ok(l), Ok(p)) => (Some(compare::compare(&l, &p)), None),
            (Err(e), _) => (None, Some(format!("Lookout's answer: {e}"))),
            (_, Err(e)) => (None, Some(format!("Prometheus's answer: {e}"))),
        },
        _ => (None, Some("a server answered with an error".into())),
    };
    drop((l_body, p_body));
    // how many timed runs fit the budget, judged by the warm-up
    let per_run = lt.warmup_secs.last().copied().unwrap_or(0.0)
        + pt.warmup_secs.last().copied().unwrap_or(0.0);
    let runs = if per_run > 0.0 {
        ((spec.budget.as_secs_f64() / per_run) as usize).clamp(spec.min_runs, spec.max_runs)
    } else {
        spec.max_runs
    };
    let machine0 = procstat::machine_busy_secs()?;
    let (mut servers_cpu, mut own_cpu) = (0.0, 0.0);
    let self_pid = std::process::id();
    for i in 0..runs {
        if lt.error.is_some() && pt.error.is_some() {
            break;
        }
        for turn in 0..2 {
            // alternate who goes first, so neither always runs right after the other
            let lookout_turn = (i + turn) % 2 == 0;
            let (h, t) = if lookout_turn {
                (&mut *lookout, &mut lt)
            } else {
                (&mut *prometheus, &mut pt)
            };
            if t.error.is_some() {
                continue;
            }
            let own0 = procstat::process_cpu_secs(self_pid)?;
            match run_once(h, client, promql, start, end, step, &[]).await {
                Ok((timing, _)) => {
                    servers_cpu += timing.server_cpu_secs;
                    t.runs.push(timing);
                }
                Err(e) => t.error = Some(e.to_string()),
            }
            own_cpu += procstat::process_cpu_secs(self_pid)? - own0;
        }
    }
    let other_cpu_secs =
        (procstat::machine_busy_secs()? - machine0 - servers_cpu - own_cpu).max(0.0);
    for (h, t) in [(&mut *lookout, &mut lt), (&mut *prometheus, &mut pt)] {
        t.finish();
        if spec.stats && t.error.is_none() {
            if let Ok((_, b)) =
                run_once(h, client, promql, start, end, step, &[("stats", "all")]).await
            {
                t.stats = stats_of(&b);
            }
        }
    }
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    Ok(CaseResult {
        query: spec.query.name.to_string(),
        promql: promql.to_string(),
        range: spec.range.label.clone(),
        step_secs: step as f64 / 1000.0,
        start_ms: start,
        end_ms: end,
        runs,
        p50_ratio: ratio(lt.p50_secs, pt.p50_secs),
        p99_ratio: ratio(lt.p99_secs, pt.p99_secs),
        lookout: lt,
        prometheus: pt,
        agreement,
        agreement_error,
        other_cpu_secs,
        wall_secs: case_started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_align_to_the_step() {
        let r = parse_ranges("1h:15s, 24h:5m").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].range_ms, r[0].step_ms), (3_600_000, 15_000));
        assert_eq!(r[1].label, "24h");
        let (s, e) = r[1].window(1_700_000_123_456);
        assert_eq!(e % 300_000, 0);
        assert!(e <= 1_700_000_123_456 && 1_700_000_123_456 - e < 300_000);
        assert_eq!(e - s, 86_400_000);
    }

    #[test]
    fn bad_ranges_are_refused() {
        for bad in ["", "1h", "1h:0s", "1m:1h", "1h:xs", "30d:1s"] {
            let err = parse_ranges(bad).unwrap_err().to_string();
            assert!(err.contains("ranges="), "{bad}: {err}");
        }
    }

    #[test]
    fn queries_name_the_job() {
        let q = queries("checkout");
        assert_eq!(q.len(), 7);
        assert!(q.iter().any(|q| q.promql.contains(r#"job="checkout""#)));
        for q in &q {
            assert!(
                store::promql::parse(&q.promql).is_ok(),
                "{} does not parse",
                q.promql
            );
        }
    }
}
