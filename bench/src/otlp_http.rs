//! The OTLP/HTTP sender shared by the logs and traces benchmarks: posts pre-encoded export
//! requests (`application/x-protobuf`, uncompressed, the OTLP/HTTP exporters' default) over
//! several concurrent connections, each taking the next unsent request, like several
//! exporters at once.
//!
//! Every answer is checked: a 200 must carry the signal's export response (a partial success
//! counts its items as rejected and keeps its message); an item counts as ingested only once
//! its request is acknowledged; 429 and 5xx and connection errors are retried with exponential
//! backoff, as the OTLP exporters do; any other status is a rejected request. What differs per
//! signal (the response type, what an item is, which counters it feeds) is the [`Export`] trait.

use std::fmt::Debug;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use serde::Serialize;

use crate::error::{BenchError, Result};

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const MAX_ATTEMPTS: u32 = 30;

/// One pre-encoded export request of a signal.
pub trait Export: Send + Sync + 'static {
    /// The signal's item counters (records, spans, ...).
    type Items: Items;
    /// The signal's `Export*ServiceResponse`.
    type Answer: Message + Default;
    const USER_AGENT: &'static str;
    /// The response type's name, for the error when a 200's body does not decode.
    const ANSWER_NAME: &'static str;
    /// "log", "trace": names the export in the retry log line.
    const SIGNAL: &'static str;

    fn body(&self) -> &Bytes;
    /// The partial success of an answer as (rejected items, message), `None` for a full success.
    fn partial(answer: Self::Answer) -> Option<(u64, String)>;
    /// Counts an acknowledged request of which a partial success refused `rejected` items.
    fn acknowledged(&self, items: &mut Self::Items, rejected: u64);
    /// Counts a rejected or failed request: all its items are lost.
    fn lost(&self, items: &mut Self::Items);
}

/// A signal's item counters, serialised among the request counters of [`SendStats`].
pub trait Items: Clone + Debug + Default + Serialize + Send + 'static {
    fn merge(&mut self, o: Self);
    /// Items refused so far (in rejected or failed requests or by partial successes).
    fn rejected(&self) -> u64;
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SendStats<I> {
    pub requests_ok: u64,
    pub requests_rejected: u64,
    pub requests_failed: u64,
    /// Retried answers (429, 5xx, connection errors).
    pub retries: u64,
    /// Flattened so the JSON keeps the signal's own names (`records_ok`, `spans_ok`, ...).
    #[serde(flatten)]
    pub items: I,
    /// 200 answers that carried a partial success (rejections or warnings).
    pub partial_successes: u64,
    pub first_error: Option<String>,
    /// Wall time of the send; merged stats add up (the chunks are sent one after another).
    pub elapsed_secs: f64,
    /// Client-side latency of each accepted request (last attempt), ms.
    #[serde(skip)]
    pub latencies_ms: Vec<f64>,
}

/// Reads the signal's counters as `stats.records_ok`, as the benchmarks did before the
/// sender was shared.
impl<I> Deref for SendStats<I> {
    type Target = I;
    fn deref(&self) -> &I {
        &self.items
    }
}

impl<I: Items> SendStats<I> {
    pub fn merge(&mut self, o: SendStats<I>) {
        self.requests_ok += o.requests_ok;
        self.requests_rejected += o.requests_rejected;
        self.requests_failed += o.requests_failed;
        self.retries += o.retries;
        self.items.merge(o.items);
        self.partial_successes += o.partial_successes;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.elapsed_secs += o.elapsed_secs;
        self.latencies_ms.extend(o.latencies_ms);
    }

    /// Every request answered 200 and no item was refused.
    pub fn clean(&self) -> bool {
        self.requests_rejected == 0
            && self.requests_failed == 0
            && self.items.rejected() == 0
            && self.partial_successes == 0
    }
}

enum Outcome {
    /// Accepted; the items a partial success refused and its message.
    Ok(u64, Option<String>),
    Rejected(String),
    Retry(String),
}

async fn post_once<E: Export>(client: &reqwest::Client, url: &str, r: &E) -> Outcome {
    let resp = client
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("User-Agent", E::USER_AGENT)
        .body(r.body().clone())
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
        return match E::Answer::decode(body.as_ref()) {
            Ok(answer) => match E::partial(answer) {
                Some((rejected, message)) => Outcome::Ok(rejected, Some(message)),
                None => Outcome::Ok(0, None),
            },
            Err(e) => Outcome::Rejected(format!(
                "200 with a body that is not an {}: {e}",
                E::ANSWER_NAME
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

async fn post_with_retry<E: Export>(
    client: &reqwest::Client,
    url: &str,
    r: &E,
    st: &mut SendStats<E::Items>,
) {
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
                r.acknowledged(&mut st.items, rejected);
                if let Some(m) = message {
                    st.partial_successes += 1;
                    st.first_error
                        .get_or_insert(format!("partial success ({rejected} rejected): {m}"));
                }
                return;
            }
            Outcome::Rejected(msg) => {
                st.requests_rejected += 1;
                r.lost(&mut st.items);
                st.first_error.get_or_insert(msg);
                return;
            }
            Outcome::Retry(msg) if attempt < MAX_ATTEMPTS => {
                st.retries += 1;
                tracing::debug!(error = %msg, attempt, "retrying {} export", E::SIGNAL);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Outcome::Retry(msg) => {
                st.requests_failed += 1;
                r.lost(&mut st.items);
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
pub async fn send<E: Export>(
    client: &reqwest::Client,
    url: &str,
    requests: Arc<Vec<E>>,
    connections: usize,
) -> Result<SendStats<E::Items>> {
    let next = Arc::new(AtomicUsize::new(0));
    let url: Arc<str> = Arc::from(url);
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections.max(1))
        .map(|_| {
            let (client, url, requests, next) =
                (client.clone(), url.clone(), requests.clone(), next.clone());
            tokio::spawn(async move {
                let mut st = SendStats::<E::Items>::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(r) = requests.get(i) else { break };
                    post_with_retry(&client, &url, r, &mut st).await;
                }
                st
            })
        })
        .collect();
    let mut total = SendStats::<E::Items>::default();
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

/// A stub OTLP/HTTP server for the signals' sender tests: answers 503 to every fourth request,
/// 400 to bodies starting with `x`, `partial` to bodies starting with `p`, a plain 200
/// otherwise; counts the accepted requests in `accepted`. Returns the URL of `path`.
#[cfg(test)]
pub async fn stub_server<A: Message + Clone + Default + Send + Sync + 'static>(
    path: &str,
    partial: A,
    accepted: Arc<std::sync::atomic::AtomicU64>,
) -> String {
    use axum::{body::Bytes as B, http::StatusCode, routing::post, Router};
    use std::sync::atomic::AtomicU64;
    let calls = Arc::new(AtomicU64::new(0));
    let app = Router::new().route(
        path,
        post(move |body: B| {
            let accepted = accepted.clone();
            let calls = calls.clone();
            let partial = partial.clone();
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) % 4 == 3 {
                    return (StatusCode::SERVICE_UNAVAILABLE, Vec::new());
                }
                if body.first() == Some(&b'x') {
                    return (StatusCode::BAD_REQUEST, b"bad".to_vec());
                }
                accepted.fetch_add(1, Ordering::SeqCst);
                let answer = if body.first() == Some(&b'p') {
                    partial
                } else {
                    A::default()
                };
                (StatusCode::OK, answer.encode_to_vec())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}{path}")
}
