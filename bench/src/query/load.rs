//! Loading the fleet data set into one server through remote write, in time order.
//!
//! A generator thread renders one window at a time (see [`crate::fleet`]) a couple of
//! windows ahead; the window's requests go out over several connections, and the next
//! window starts only when every request of this one is answered. Each series appears once
//! per window, so samples of a series always arrive in time order, as the servers require.
//!
//! Lookout persists its head to a block every `flush_interval` of *wall* time (2 h by
//! default); loading 24 h of data in minutes would otherwise leave it all in one head flush.
//! To reach the state a Lookout that ran through those 24 h would be in, the loader restarts
//! Lookout (SIGTERM flushes the head to a block) whenever the data crosses a 2 h boundary,
//! so its blocks cover the same 2 h ranges Prometheus's head compaction produces; Lookout's
//! own background compaction then merges them as it would.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{BenchError, Result};
use crate::fleet::{Fleet, FleetParams, Window};
use crate::send::{self, SendStats};
use crate::servers::{self, Binaries, ServerHandle, ServerKind};

/// Prometheus's default block range, the flush boundary emulated for Lookout.
pub const BLOCK_MS: i64 = 2 * 3600 * 1000;

#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    pub server: String,
    pub samples_sent: u64,
    pub send: SendStats,
    pub windows: u64,
    pub wall_secs: f64,
    /// Server CPU from the first request to the last answer, every restart included.
    pub cpu_secs: f64,
    pub samples_per_wall_sec: f64,
    pub samples_per_cpu_sec: f64,
    /// Restarts that emulated the periodic head flush (Lookout only).
    pub restarts: u32,
    /// Wall time spent stopping (flushing) and starting again.
    pub restart_secs: f64,
    /// The server's own ingest counter at the end (since its last restart for Lookout).
    pub server_reported_samples: Option<f64>,
}

/// Starts a generator thread that renders every window of `params` into a bounded channel.
fn spawn_generator(
    params: &FleetParams,
    start_ms: i64,
) -> Result<tokio::sync::mpsc::Receiver<Result<Window>>> {
    let mut fleet = Fleet::new(params, start_ms)?;
    // two windows ahead: enough to hide generation behind sending, little memory
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    std::thread::Builder::new()
        .name("fleet-generator".into())
        .spawn(move || loop {
            match fleet.next_window() {
                Ok(Some(w)) => {
                    if tx.blocking_send(Ok(w)).is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        })
        .map_err(|e| BenchError::io("spawning the generator thread", e))?;
    Ok(rx)
}

/// Restarts a server on its data directory and returns the old process's final CPU seconds.
async fn restart(
    h: &mut ServerHandle,
    dir: &Path,
    bins: &Binaries,
    client: &reqwest::Client,
) -> Result<f64> {
    let cpu = h.stop(Duration::from_secs(900)).await?;
    *h = ServerHandle::start_in(h.kind, dir, bins)?;
    h.wait_ready(client, Duration::from_secs(600)).await?;
    Ok(cpu)
}

/// Sends the whole data set to `h` (restarting Lookout at 2 h data boundaries) and reports
/// what it took. `dir` is the server's directory (holding `data/`), for restarts.
pub async fn load(
    h: &mut ServerHandle,
    dir: &Path,
    bins: &Binaries,
    params: &FleetParams,
    start_ms: i64,
    connections: usize,
    client: &reqwest::Client,
) -> Result<LoadReport> {
    let kind = h.kind;
    let mut rx = spawn_generator(params, start_ms)?;
    let write = send::write_client(&h.write_url(), connections)?;
    let started = Instant::now();
    let mut cpu_done = 0.0;
    let mut cpu_base = h.cpu_secs()?;
    let mut total = SendStats::default();
    let mut windows = 0u64;
    let mut restarts = 0u32;
    let mut restart_secs = 0.0;
    let mut last_block: Option<i64> = None;
    let mut last_log = Instant::now();
    while let Some(w) = rx.recv().await {
        let w = w?;
        let block = w.min_ts.div_euclid(BLOCK_MS);
        if kind == ServerKind::Lookout && last_block.is_some_and(|b| b < block) {
            let t = Instant::now();
            cpu_done += restart(h, dir, bins, client).await? - cpu_base;
            cpu_base = 0.0;
            restarts += 1;
            restart_secs += t.elapsed().as_secs_f64();
        }
        last_block = Some(block);
        let url = h.write_url();
        let st = send::send_batch(
            &write,
            &url,
            Arc::new(w.requests),
            Arc::new(w.samples),
            connections,
        )
        .await?;
        if st.samples_rejected > 0 {
            tracing::error!(
                server = kind.name(),
                window = w.index,
                rejected = st.samples_rejected,
                first_error = st.first_error.as_deref().unwrap_or(""),
                "samples rejected while loading"
            );
        }
        total.merge(st);
        windows += 1;
        if last_log.elapsed() > Duration::from_secs(30) {
            last_log = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            let pct = 100.0 * windows as f64 / params.windows() as f64;
            let eta = secs * (100.0 - pct) / pct.max(0.01);
            tracing::info!(
                server = kind.name(),
                window = windows,
                of = params.windows(),
                samples = total.samples_ok,
                rate = (total.samples_ok as f64 / secs) as u64,
                eta_secs = eta as u64,
                "loading"
            );
        }
    }
    let wall_secs = started.elapsed().as_secs_f64();
    let cpu_secs = cpu_done + h.cpu_secs()? - cpu_base;
    total.elapsed_secs = wall_secs;
    let server_reported_samples = servers::server_reported_samples(h, client).await;
    let sent = total.samples_ok + total.samples_rejected;
    Ok(LoadReport {
        server: kind.name().into(),
        samples_sent: sent,
        windows,
        wall_secs,
        cpu_secs,
        samples_per_wall_sec: total.samples_ok as f64 / wall_secs.max(1e-9),
        samples_per_cpu_sec: total.samples_ok as f64 / cpu_secs.max(1e-9),
        restarts,
        restart_secs,
        server_reported_samples,
        send: total,
    })
}
