//! The scrape manager: one task per target, started, kept, restarted or stopped when the
//! configuration is applied. A stopped target's series (and its `up`) get stale markers; a
//! target whose settings changed hands its state to the new loop so its series stay
//! continuous; shutdown stops every loop without markers, so a restart picks the series up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use store::error::error_chain;
use store::{Labels, MetricBatch, MetricsAppender};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::ScrapeConfig;
use super::parse;
use super::target::{self, SharedState, Target, TargetHealth};
use super::{ScrapeGlobal, TargetStatus};
use crate::telemetry;

/// Protocol name in self-metrics and logs.
pub const PROTOCOL: &str = "scrape";

const ACCEPT: &str = "text/plain;version=0.0.4;q=1,*/*;q=0.1";

/// Identity of a target: job, final labels and URL (as Prometheus hashes it).
type TargetKey = (String, Labels, String);

struct LoopHandle {
    target: Arc<Target>,
    state: SharedState,
    cancel: CancellationToken,
    stale_on_stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

struct Inner {
    sink: Arc<dyn MetricsAppender>,
    global: ScrapeGlobal,
    client: Result<reqwest::Client, String>,
    runtime: Option<tokio::runtime::Handle>,
    loops: Mutex<HashMap<TargetKey, LoopHandle>>,
    /// Loops told to stop that may still be writing their stale markers.
    stopping: Mutex<Vec<JoinHandle<()>>>,
}

/// Runs the scrape loops of the configured targets.
pub struct ScrapeManager {
    inner: Arc<Inner>,
}

impl ScrapeManager {
    pub fn new(sink: Arc<dyn MetricsAppender>, global: ScrapeGlobal) -> Self {
        let client = reqwest::Client::builder()
            .user_agent(concat!("Lookout/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the HTTP client failed: {}", error_chain(&e)));
        if let Err(e) = &client {
            tracing::error!(error = %e, "scrape manager cannot scrape");
        }
        ScrapeManager {
            inner: Arc::new(Inner {
                sink,
                global,
                client,
                runtime: tokio::runtime::Handle::try_current().ok(),
                loops: Mutex::new(HashMap::new()),
                stopping: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Makes the running loops match `configs`. Invalid jobs are logged and skipped (run
    /// [`super::validate`] first to report them to the user).
    pub fn apply(&self, configs: Vec<ScrapeConfig>) {
        let Some(runtime) = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.inner.runtime.clone())
        else {
            tracing::error!("scrape manager applied outside a tokio runtime; no targets started");
            return;
        };
        let mut desired: HashMap<TargetKey, Target> = HashMap::new();
        for cfg in &configs {
            match target::targets_for(cfg, &self.inner.global) {
                Ok((targets, dropped)) => {
                    tracing::debug!(job = %cfg.job_name, targets = targets.len(), dropped, "scrape job resolved");
                    for t in targets {
                        desired.insert((t.job.clone(), t.labels.clone(), t.url.clone()), t);
                    }
                }
                Err(errors) => {
                    for e in errors {
                        tracing::error!(job = %cfg.job_name, error = %e, "invalid scrape config; job skipped");
                    }
                }
            }
        }

        let mut loops = self.inner.loops.lock();
        let mut stopping = self.inner.stopping.lock();
        stopping.retain(|h| !h.is_finished());
        let existing: Vec<TargetKey> = loops.keys().cloned().collect();
        for key in existing {
            match desired.get(&key) {
                Some(t)
                    if loops
                        .get(&key)
                        .is_some_and(|l| l.target.settings == t.settings) =>
                {
                    desired.remove(&key);
                }
                Some(_) => {
                    // settings changed: restart, carrying the state over, without markers
                    if let Some(old) = loops.remove(&key) {
                        old.stale_on_stop.store(false, Ordering::SeqCst);
                        old.cancel.cancel();
                        stopping.push(old.task);
                        if let Some(t) = desired.remove(&key) {
                            let handle = self.start(&runtime, t, old.state);
                            loops.insert(key, handle);
                        }
                    }
                }
                None => {
                    if let Some(old) = loops.remove(&key) {
                        tracing::info!(job = %key.0, url = %without_query(&key.2), "scrape target removed");
                        old.stale_on_stop.store(true, Ordering::SeqCst);
                        old.cancel.cancel();
                        stopping.push(old.task);
                    }
                }
            }
        }
        for (key, t) in desired {
            tracing::info!(job = %key.0, url = %without_query(&key.2), "scrape target added");
            let handle = self.start(&runtime, t, SharedState::default());
            loops.insert(key, handle);
        }
    }

    fn start(
        &self,
        runtime: &tokio::runtime::Handle,
        target: Target,
        state: SharedState,
    ) -> LoopHandle {
        let target = Arc::new(target);
        let cancel = CancellationToken::new();
        let stale_on_stop = Arc::new(AtomicBool::new(false));
        let task = runtime.spawn(run_loop(
            Arc::clone(&self.inner),
            Arc::clone(&target),
            Arc::clone(&state),
            cancel.clone(),
            Arc::clone(&stale_on_stop),
        ));
        LoopHandle {
            target,
            state,
            cancel,
            stale_on_stop,
            task,
        }
    }

    /// Every active target with its last scrape.
    pub fn targets(&self) -> Vec<TargetStatus> {
        let loops = self.inner.loops.lock();
        let mut out: Vec<TargetStatus> = loops
            .values()
            .map(|l| {
                let s = l.state.lock();
                TargetStatus {
                    job: l.target.job.clone(),
                    discovered_labels: l.target.discovered_labels.clone(),
                    labels: l.target.labels.clone(),
                    scrape_url: l.target.url.clone(),
                    scrape_interval: l.target.interval,
                    scrape_timeout: l.target.timeout,
                    last_scrape: s.last_scrape,
                    last_scrape_duration: s.last_duration,
                    last_error: s.last_error.clone(),
                    health: s.health,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.job, &a.scrape_url, &a.labels).cmp(&(&b.job, &b.scrape_url, &b.labels))
        });
        out
    }

    /// Stops every loop (without stale markers: the series continue after a restart) and
    /// waits for them, including loops still finishing a removal.
    pub async fn shutdown(&self) {
        let handles: Vec<JoinHandle<()>> = {
            let mut loops = self.inner.loops.lock();
            let mut handles: Vec<JoinHandle<()>> = self.inner.stopping.lock().drain(..).collect();
            for (_, l) in loops.drain() {
                l.stale_on_stop.store(false, Ordering::SeqCst);
                l.cancel.cancel();
                handles.push(l.task);
            }
            handles
        };
        for h in handles {
            if let Err(e) = h.await {
                tracing::warn!(error = %e, "scrape loop ended abnormally");
            }
        }
    }
}

impl Drop for ScrapeManager {
    fn drop(&mut self) {
        for l in self.inner.loops.lock().values() {
            l.cancel.cancel();
        }
    }
}

async fn run_loop(
    inner: Arc<Inner>,
    target: Arc<Target>,
    state: SharedState,
    cancel: CancellationToken,
    stale_on_stop: Arc<AtomicBool>,
) {
    let interval = target.interval.max(Duration::from_millis(1));
    let interval_ms = interval.as_millis() as i64;
    let offset_ms = target::offset(&target).as_millis() as i64;
    let wait = (offset_ms - unix_ms().rem_euclid(interval_ms)).rem_euclid(interval_ms);
    let start = tokio::time::Instant::now() + Duration::from_millis(wait as u64);
    let mut ticker = tokio::time::interval_at(start, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let scrape_ts = unix_ms();
        let started = Instant::now();
        // only the fetch is abandoned on stop; processing and appending finish, so the
        // loop state always matches what was written
        let body = tokio::select! {
            _ = cancel.cancelled() => break,
            body = fetch(&inner, &target) => body,
        };
        let duration = started.elapsed();
        scrape_once(&inner, &target, &state, body, scrape_ts, duration).await;
    }
    if stale_on_stop.load(Ordering::SeqCst) {
        let batch = {
            let mut s = state.lock();
            target::end_of_run_batch(&target, &mut s, unix_ms())
        };
        append(&inner, &target, &state, batch).await;
    }
}

/// Parses, converts and appends one scrape's result.
async fn scrape_once(
    inner: &Arc<Inner>,
    target: &Arc<Target>,
    state: &SharedState,
    body: Result<String, String>,
    scrape_ts: i64,
    duration: Duration,
) {
    let (t, s) = (Arc::clone(target), Arc::clone(state));
    // parsing and relabelling a large exposition is CPU work: keep it off the runtime
    let built = tokio::task::spawn_blocking(move || {
        let result = body.and_then(|b| {
            parse::parse(&b).map_err(|e| format!("parsing the exposition failed: {e}"))
        });
        let error = result.as_ref().err().cloned();
        let mut st = s.lock();
        let (batch, counts) = target::build_batch(&t, result, scrape_ts, duration, &mut st);
        st.last_scrape = Some(UNIX_EPOCH + Duration::from_millis(scrape_ts.max(0) as u64));
        st.last_duration = Some(duration);
        st.health = if error.is_some() {
            TargetHealth::Down
        } else {
            TargetHealth::Up
        };
        st.last_error = error;
        (batch, counts)
    })
    .await;
    let (batch, counts) = match built {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(job = %target.job, url = %without_query(&target.url), error = %e, "scrape processing task failed");
            return;
        }
    };
    let failed = state.lock().last_error.clone();
    match &failed {
        Some(e) => {
            telemetry::REQUESTS
                .with_label_values(&[PROTOCOL, "failed"])
                .inc();
            tracing::debug!(job = %target.job, url = %without_query(&target.url), error = %e, "scrape failed");
        }
        None => {
            telemetry::REQUESTS
                .with_label_values(&[PROTOCOL, "ok"])
                .inc();
            if counts.duplicates > 0 {
                telemetry::record_rejected(PROTOCOL, "duplicate_series", counts.duplicates as u64);
                tracing::debug!(job = %target.job, url = %without_query(&target.url), duplicates = counts.duplicates, "scrape had duplicate series; first kept");
            }
        }
    }
    append(inner, target, state, batch).await;
}

async fn append(inner: &Inner, target: &Target, state: &SharedState, batch: MetricBatch) {
    match inner.sink.append(batch).await {
        Ok(report) => {
            telemetry::record_append(PROTOCOL, &report);
            if let Some(first) = &report.first_rejection {
                tracing::debug!(job = %target.job, url = %without_query(&target.url), rejected = report.rejected_total(), first = %first, "store rejected scraped samples");
            }
        }
        Err(e) => {
            tracing::warn!(job = %target.job, url = %without_query(&target.url), error = %e, "appending scraped samples failed");
            let mut s = state.lock();
            s.health = TargetHealth::Down;
            s.last_error = Some(format!("appending scraped samples failed: {e}"));
        }
    }
}

async fn fetch(inner: &Inner, target: &Target) -> Result<String, String> {
    let client = inner.client.as_ref().map_err(Clone::clone)?;
    let mut response = client
        .get(&target.url)
        .header(reqwest::header::ACCEPT, ACCEPT)
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            target.timeout.as_secs_f64().to_string(),
        )
        .timeout(target.timeout)
        .send()
        .await
        .map_err(|e| describe(e, target))?;
    if !response.status().is_success() {
        return Err(format!("server returned HTTP status {}", response.status()));
    }
    let limit = inner.global.max_body_bytes;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(e, target))? {
        if body.len() + chunk.len() > limit {
            return Err(format!("response body exceeds the limit of {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|e| format!("response body is not valid UTF-8: {e}"))
}

/// The scrape URL without its query string, for logs: `params` often carry API keys.
fn without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}

/// A scrape error for logs and the target status, without the URL (whose query may hold a
/// secret; the target is named by the log line's fields anyway).
fn describe(e: reqwest::Error, target: &Target) -> String {
    if e.is_timeout() {
        format!(
            "scrape timed out after {}",
            store::duration::format_duration(target.timeout)
        )
    } else {
        error_chain(&e.without_url())
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;

#[cfg(test)]
mod redaction_tests {
    use super::without_query;

    #[test]
    fn logged_urls_drop_the_query_string() {
        assert_eq!(
            without_query("http://h:9100/metrics?api_key=s3cret"),
            "http://h:9100/metrics"
        );
        assert_eq!(
            without_query("http://h:9100/metrics"),
            "http://h:9100/metrics"
        );
    }
}
