//! The log sender: posts pre-encoded `ExportLogsServiceRequest`s to `POST /v1/logs`
//! (`application/x-protobuf`, uncompressed, the OTLP/HTTP exporters' default) over several
//! concurrent connections, each taking the next unsent request, like several collectors
//! exporting at once.
//!
//! Every answer is checked: a 200 must carry an `ExportLogsServiceResponse` without
//! rejected records (a partial success counts its records as rejected and keeps its
//! message); a record counts as ingested only once its request is acknowledged;
//! 429 and 5xx and connection errors are retried with exponential backoff, as the OTLP
//! exporters do; any other status is a rejected request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message;
use serde::Serialize;

use super::otlp::Request;
use crate::error::{BenchError, Result};

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const MAX_ATTEMPTS: u32 = 30;

#[derive(Clone, Debug, Default, Serialize)]
pub struct SendStats {
    pub requests_ok: u64,
    pub requests_rejected: u64,
    pub requests_failed: u64,
    /// Retried answers (429, 5xx, connection errors).
    pub retries: u64,
    pub records_ok: u64,
    /// Raw line bytes of the acknowledged records.
    pub raw_bytes_ok: u64,
    /// Records in rejected or failed requests, plus those a partial success refused.
    pub records_rejected: u64,
    /// 200 answers that carried a partial success (rejections or warnings).
    pub partial_successes: u64,
    pub first_error: Option<String>,
    /// Wall time of the send; merged stats add up (the chunks are sent one after another).
    pub elapsed_secs: f64,
    /// Client-side latency of each accepted request (last attempt), ms.
    #[serde(skip)]
    pub latencies_ms: Vec<f64>,
}

impl SendStats {
    pub fn merge(&mut self, o: SendStats) {
        self.requests_ok += o.requests_ok;
        self.requests_rejected += o.requests_rejected;
        self.requests_failed += o.requests_failed;
        self.retries += o.retries;
        self.records_ok += o.records_ok;
        self.raw_bytes_ok += o.raw_bytes_ok;
        self.records_rejected += o.records_rejected;
        self.partial_successes += o.partial_successes;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.elapsed_secs += o.elapsed_secs;
        self.latencies_ms.extend(o.latencies_ms);
    }

    /// Every request answered 200 and no record was refused.
    pub fn clean(&self) -> bool {
        self.requests_rejected == 0
            && self.requests_failed == 0
            && self.records_rejected == 0
            && self.partial_successes == 0
    }
}

enum Outcome {
    /// Accepted; the records a partial success refused and its message.
    Ok(u64, Option<String>),
    Rejected(String),
    Retry(String),
}

async fn post_once(client: &reqwest::Client, url: &str, r: &Request) -> Outcome {
    let resp = client
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("User-Agent", "lookout-bench/0.1 (OTLP/HTTP logs)")
        .body(r.body.clone())
        .send()
        .await;
    let resp = match resp {
        Ok(resp) => resp,
        Err(e) => return Outcome::Retry(format!("connection error: {e}")),
    };
    let status = resp.status();
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return Outcome::Retry(format!("reading the answer: {e}")),
    };
    if status.as_u16() == 200 {
        return match ExportLogsServiceResponse::decode(body.as_ref()) {
            Ok(answer) => match answer.partial_success {
                // an empty partial success is a full one
                Some(p) if p.rejected_log_records == 0 && p.error_message.is_empty() => {
                    Outcome::Ok(0, None)
                }
                Some(p) => Outcome::Ok(
                    u64::try_from(p.rejected_log_records).unwrap_or(0),
                    Some(p.error_message),
                ),
                None => Outcome::Ok(0, None),
            },
            Err(e) => Outcome::Rejected(format!(
                "200 with a body that is not an ExportLogsServiceResponse: {e}"
            )),
        };
    }
    let msg = format!(
        "HTTP {status}: {}",
        String::from_utf8_lossy(&body)
            .chars()
            .take(300)
            .collect::<String>()
    );
    if status.as_u16() == 429 || status.is_server_error() {
        Outcome::Retry(msg)
    } else {
        Outcome::Rejected(msg)
    }
}

async fn post_with_retry(client: &reqwest::Client, url: &str, r: &Request, st: &mut SendStats) {
    let records = u64::from(r.records);
    let mut backoff = MIN_BACKOFF;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let started = Instant::now();
        match post_once(client, url, r).await {
            Outcome::Ok(rejected, message) => {
                st.latencies_ms
                    .push(started.elapsed().as_secs_f64() * 1000.0);
                st.requests_ok += 1;
                let ok = records.saturating_sub(rejected);
                st.records_ok += ok;
                // a partly refused request's bytes are counted in proportion
                st.raw_bytes_ok += r.raw_bytes * ok / records.max(1);
                st.records_rejected += rejected.min(records);
                if let Some(m) = message {
                    st.partial_successes += 1;
                    st.first_error
                        .get_or_insert(format!("partial success ({rejected} rejected): {m}"));
                }
                return;
            }
            Outcome::Rejected(msg) => {
                st.requests_rejected += 1;
                st.records_rejected += records;
                st.first_error.get_or_insert(msg);
                return;
            }
            Outcome::Retry(msg) if attempt < MAX_ATTEMPTS => {
                st.retries += 1;
                tracing::debug!(error = %msg, attempt, "retrying log export");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Outcome::Retry(msg) => {
                st.requests_failed += 1;
                st.records_rejected += records;
                st.first_error
                    .get_or_insert(format!("gave up after {attempt} attempts: {msg}"));
                return;
            }
        }
    }
}

/// A client for `connections` concurrent exporters.
pub fn client(connections: usize) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| BenchError::Http {
            url: "-".into(),
            reason: format!("building the OTLP/HTTP client: {e}"),
        })
}

/// Sends every request over `connections` concurrent connections and waits for all answers.
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    requests: Arc<Vec<Request>>,
    connections: usize,
) -> Result<SendStats> {
    let next = Arc::new(AtomicUsize::new(0));
    let url: Arc<str> = Arc::from(url);
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections.max(1))
        .map(|_| {
            let (client, url, requests, next) =
                (client.clone(), url.clone(), requests.clone(), next.clone());
            tokio::spawn(async move {
                let mut st = SendStats::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(r) = requests.get(i) else { break };
                    post_with_retry(&client, &url, r, &mut st).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;
    use std::sync::atomic::AtomicU64;

    /// Answers 503 to every fourth request, 400 to bodies starting with `x`, a partial success
    /// rejecting one record to bodies starting with `p`, a plain 200 otherwise.
    async fn serve(accepted: Arc<AtomicU64>) -> String {
        use axum::{body::Bytes as B, http::StatusCode, routing::post, Router};
        let calls = Arc::new(AtomicU64::new(0));
        let app = Router::new().route(
            "/v1/logs",
            post(move |body: B| {
                let accepted = accepted.clone();
                let calls = calls.clone();
                async move {
                    if calls.fetch_add(1, Ordering::SeqCst) % 4 == 3 {
                        return (StatusCode::SERVICE_UNAVAILABLE, Vec::new());
                    }
                    if body.first() == Some(&b'x') {
                        return (StatusCode::BAD_REQUEST, b"bad".to_vec());
                    }
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let partial = (body.first() == Some(&b'p')).then(|| ExportLogsPartialSuccess {
                        rejected_log_records: 1,
                        error_message: "record 1: body over max_body_bytes".into(),
                    });
                    let answer = ExportLogsServiceResponse {
                        partial_success: partial,
                    };
                    (StatusCode::OK, answer.encode_to_vec())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/v1/logs")
    }

    fn req(body: &'static [u8], records: u32) -> Request {
        Request {
            body: bytes::Bytes::from_static(body),
            records,
            raw_bytes: u64::from(records) * 100,
        }
    }

    #[tokio::test]
    async fn checks_answers_and_retries() {
        let accepted = Arc::new(AtomicU64::new(0));
        let url = serve(accepted.clone()).await;
        let requests = vec![
            req(b"a", 10),
            req(b"x", 20),
            req(b"p", 30),
            req(b"b", 40),
            req(b"c", 50),
        ];
        let c = client(2).unwrap();
        let st = send(&c, &url, Arc::new(requests), 2).await.unwrap();
        assert_eq!(st.requests_ok, 4);
        assert_eq!(st.requests_rejected, 1);
        assert_eq!(st.records_ok, 10 + 29 + 40 + 50);
        assert_eq!(st.records_rejected, 20 + 1);
        // the partial success's request counts 29 of its 30 records' bytes
        assert_eq!(st.raw_bytes_ok, (10 + 29 + 40 + 50) * 100);
        assert_eq!(st.partial_successes, 1);
        assert!(st.retries >= 1);
        assert_eq!(st.latencies_ms.len(), 4);
        assert!(!st.clean());
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn clean_run_is_clean() {
        let url = serve(Arc::new(AtomicU64::new(0))).await;
        let c = client(1).unwrap();
        let st = send(&c, &url, Arc::new(vec![req(b"a", 5), req(b"b", 6)]), 1)
            .await
            .unwrap();
        assert!(st.clean(), "{st:?}");
        assert_eq!(st.records_ok, 11);
    }
}
