//! The sender: replays the pre-generated shard streams to a remote-write URL, one connection
//! per shard so each series' samples arrive in order (as Prometheus's shards do), retrying
//! 429/5xx and connection errors with exponential backoff. Other 4xx answers are counted as
//! rejected and not retried, as Prometheus does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::error::{BenchError, Result};

const MIN_BACKOFF: Duration = Duration::from_millis(30);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const MAX_ATTEMPTS: u32 = 30;

#[derive(Clone, Debug, Default, Serialize)]
pub struct SendStats {
    pub requests_ok: u64,
    pub requests_rejected: u64,
    pub requests_failed: u64,
    pub retries: u64,
    pub samples_ok: u64,
    pub samples_rejected: u64,
    pub first_error: Option<String>,
    pub elapsed_secs: f64,
}

impl SendStats {
    pub fn merge(&mut self, o: SendStats) {
        self.requests_ok += o.requests_ok;
        self.requests_rejected += o.requests_rejected;
        self.requests_failed += o.requests_failed;
        self.retries += o.retries;
        self.samples_ok += o.samples_ok;
        self.samples_rejected += o.samples_rejected;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

/// One shard's requests and the samples in each (all full but possibly the last).
pub struct ShardStream {
    pub requests: Vec<Bytes>,
    pub samples_per_request: u64,
    pub samples: u64,
}

enum Outcome {
    Ok,
    Rejected(String),
    Retry(String),
}

async fn post_once(client: &reqwest::Client, url: &str, body: Bytes) -> Outcome {
    let resp = client
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .header("User-Agent", "lookout-bench/0.1")
        .body(body)
        .send()
        .await;
    match resp {
        Err(e) => Outcome::Retry(format!("connection error: {e}")),
        Ok(r) => {
            let status = r.status();
            if status.is_success() {
                return Outcome::Ok;
            }
            let text = r.text().await.unwrap_or_default();
            let msg = format!("HTTP {status}: {}", text.trim());
            if status.as_u16() == 429 || status.is_server_error() {
                Outcome::Retry(msg)
            } else {
                Outcome::Rejected(msg)
            }
        }
    }
}

/// Posts one request, retrying 429/5xx and connection errors with exponential backoff;
/// records the outcome (and its samples) in `st`.
async fn post_with_retry(
    client: &reqwest::Client,
    url: &str,
    body: &Bytes,
    samples: u64,
    st: &mut SendStats,
) {
    let mut backoff = MIN_BACKOFF;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match post_once(client, url, body.clone()).await {
            Outcome::Ok => {
                st.requests_ok += 1;
                st.samples_ok += samples;
                return;
            }
            Outcome::Rejected(msg) => {
                st.requests_rejected += 1;
                st.samples_rejected += samples;
                st.first_error.get_or_insert(msg);
                return;
            }
            Outcome::Retry(msg) if attempt < MAX_ATTEMPTS => {
                st.retries += 1;
                tracing::debug!(url = %url, error = %msg, attempt, "retrying remote-write request");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Outcome::Retry(msg) => {
                st.requests_failed += 1;
                st.samples_rejected += samples;
                st.first_error
                    .get_or_insert(format!("gave up after {attempt} attempts: {msg}"));
                return;
            }
        }
    }
}

async fn send_shard(client: reqwest::Client, url: Arc<str>, shard: Arc<ShardStream>) -> SendStats {
    let mut st = SendStats::default();
    let last = shard.requests.len().saturating_sub(1);
    for (i, body) in shard.requests.iter().enumerate() {
        let samples = if i == last {
            shard.samples - shard.samples_per_request * last as u64
        } else {
            shard.samples_per_request
        };
        post_with_retry(&client, &url, body, samples, &mut st).await;
    }
    st
}

/// A client for `connections` concurrent remote-write connections to one server.
pub fn write_client(url: &str, connections: usize) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| BenchError::Http {
            url: url.to_string(),
            reason: format!("building client: {e}"),
        })
}

/// Sends `requests` (with `samples[i]` samples in request `i`) over `connections` concurrent
/// connections, each taking the next unsent request, and waits for all to be answered. The
/// requests may arrive in any order, so no series may appear in two of them.
pub async fn send_batch(
    client: &reqwest::Client,
    url: &str,
    requests: Arc<Vec<Bytes>>,
    samples: Arc<Vec<u64>>,
    connections: usize,
) -> Result<SendStats> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url: Arc<str> = Arc::from(url);
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections.max(1))
        .map(|_| {
            let (client, url, requests, samples, next) = (
                client.clone(),
                url.clone(),
                requests.clone(),
                samples.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                let mut st = SendStats::default();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(body) = requests.get(i) else { break };
                    let n = samples.get(i).copied().unwrap_or(0);
                    post_with_retry(&client, &url, body, n, &mut st).await;
                }
                st
            })
        })
        .collect();
    let mut total = SendStats::default();
    for t in tasks {
        let st = t.await.map_err(|e| BenchError::Http {
            url: url.to_string(),
            reason: format!("sender task failed: {e}"),
        })?;
        total.merge(st);
    }
    total.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(total)
}

/// Sends every shard concurrently (one connection each) and waits for all of them.
pub async fn send_all(url: &str, shards: &[Arc<ShardStream>]) -> Result<SendStats> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(shards.len())
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| BenchError::Http {
            url: url.to_string(),
            reason: format!("building client: {e}"),
        })?;
    let url: Arc<str> = Arc::from(url);
    let started = Instant::now();
    let tasks: Vec<_> = shards
        .iter()
        .map(|s| tokio::spawn(send_shard(client.clone(), url.clone(), s.clone())))
        .collect();
    let mut total = SendStats::default();
    for t in tasks {
        let st = t.await.map_err(|e| BenchError::Http {
            url: url.to_string(),
            reason: format!("sender task failed: {e}"),
        })?;
        total.merge(st);
    }
    total.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A tiny HTTP server: answers 429 to every third request, 400 to bodies starting with
    /// `b'x'`, 204 otherwise, counting what it accepted.
    async fn serve(accepted: Arc<AtomicU64>) -> String {
        use axum::{body::Bytes as B, http::StatusCode, routing::post, Router};
        let calls = Arc::new(AtomicU64::new(0));
        let app = Router::new().route(
            "/api/v1/write",
            post(move |body: B| {
                let accepted = accepted.clone();
                let calls = calls.clone();
                async move {
                    if calls.fetch_add(1, Ordering::SeqCst) % 3 == 2 {
                        return StatusCode::TOO_MANY_REQUESTS;
                    }
                    if body.first() == Some(&b'x') {
                        return StatusCode::BAD_REQUEST;
                    }
                    accepted.fetch_add(1, Ordering::SeqCst);
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/api/v1/write")
    }

    #[tokio::test]
    async fn retries_429_and_counts_rejections() {
        let accepted = Arc::new(AtomicU64::new(0));
        let url = serve(accepted.clone()).await;
        let shard = Arc::new(ShardStream {
            requests: vec![
                Bytes::from_static(b"a"),
                Bytes::from_static(b"x"),
                Bytes::from_static(b"b"),
                Bytes::from_static(b"c"),
            ],
            samples_per_request: 10,
            samples: 35,
        });
        let st = send_all(&url, &[shard]).await.unwrap();
        assert_eq!(st.requests_ok, 3);
        assert_eq!(st.requests_rejected, 1);
        assert_eq!(st.samples_ok, 25);
        assert_eq!(st.samples_rejected, 10);
        assert!(st.retries >= 1);
        assert!(st.first_error.unwrap().contains("400"));
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn batch_sends_every_request_once_over_several_connections() {
        let accepted = Arc::new(AtomicU64::new(0));
        let url = serve(accepted.clone()).await;
        let client = write_client(&url, 3).unwrap();
        let requests: Vec<Bytes> = (0..10).map(|i| Bytes::from(vec![b'a' + i])).collect();
        let samples: Vec<u64> = (1..=10).collect();
        let st = send_batch(&client, &url, Arc::new(requests), Arc::new(samples), 3)
            .await
            .unwrap();
        // b'x' is never among a..j, so all ten are accepted after the 429 retries
        assert_eq!(st.requests_ok, 10);
        assert_eq!(st.samples_ok, 55);
        assert_eq!(st.samples_rejected, 0);
        assert_eq!(accepted.load(Ordering::SeqCst), 10);
    }
}
