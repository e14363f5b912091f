//! `GET /api/v1/logs/tail?query=&start=&limit=`: live tail as server-sent events.
//!
//! The handler subscribes to acknowledged batches before anything else, so no record
//! acknowledged after the request arrived is missed. With `start`, the newest `limit`
//! stored matches since `start` are sent first, oldest first (as `tail -n` then `-f`). Then
//! every matching record of each new batch is an `event: log` whose data is the record's
//! JSON, as `/api/v1/logs/query` writes it. A subscriber that falls behind loses the oldest
//! batches and gets `event: dropped` with `{"dropped":<batches>}`. A comment line every
//! [`KEEP_ALIVE`] keeps proxies from closing an idle stream; the stream ends when the
//! server shuts down.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use store::logs::{Direction, LogBatch, LogQuery, LogRecord, LogSearch};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use super::json::RecordJson;
use super::params::{limit_param, now_nanos, query_param, time_nanos_param};
use super::LogsAppState;
use crate::error::ApiError;
use crate::handlers::blocking;
use crate::params::Params;

/// Interval of the keep-alive comments.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /api/v1/logs/tail`.
pub async fn tail(State(state): LogsAppState, params: Params) -> Result<Response, ApiError> {
    let query = query_param(&params)?;
    let limit = limit_param(&params)?;
    let start = time_nanos_param(&params, "start")?;
    let rx = state.logs.subscribe();
    let now = now_nanos();
    // Without `start` the search still runs (one record over an instant) so that a store
    // that cannot answer (still opening, failed) gives its error status here rather than a
    // 200 stream that never says anything.
    let search = LogSearch {
        query: query.clone(),
        start_unix_nano: start.unwrap_or(now).min(now),
        end_unix_nano: now,
        limit: if start.is_some() { limit } else { 1 },
        direction: Direction::Backward,
    };
    let logs = state.logs.clone();
    let mut backlog = blocking(move || Ok(logs.search(&search)?)).await?;
    if start.is_none() {
        backlog.clear();
    }
    backlog.reverse();
    let stream = TailStream::new(rx, query, backlog, state.shutdown.clone());
    Ok(Sse::new(stream.into_stream())
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// The state of one tail.
struct TailStream {
    rx: broadcast::Receiver<Arc<LogBatch>>,
    query: LogQuery,
    /// Events ready to go out.
    pending: VecDeque<Event>,
    /// The backlog, kept while batches that were already queued when it was read are
    /// received: their records may be in it too (acknowledged, then committed, before the
    /// search ran) and are not sent twice.
    backlog: Vec<LogRecord>,
    queued_batches: usize,
    shutdown: watch::Receiver<bool>,
}

impl TailStream {
    fn new(
        rx: broadcast::Receiver<Arc<LogBatch>>,
        query: LogQuery,
        backlog: Vec<LogRecord>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let queued_batches = if backlog.is_empty() { 0 } else { rx.len() };
        let pending = backlog.iter().map(log_event).collect();
        TailStream {
            rx,
            query,
            pending,
            backlog,
            queued_batches,
            shutdown,
        }
    }

    fn into_stream(self) -> impl futures::Stream<Item = Result<Event, Infallible>> + Send {
        futures::stream::unfold(self, |mut tail| async move {
            let event = tail.next_event().await?;
            Some((Ok(event), tail))
        })
    }

    /// The next event, or `None` when the stream ends (server shutdown, store closed).
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            let received = tokio::select! {
                biased;
                () = shutting_down(&mut self.shutdown) => return None,
                r = self.rx.recv() => r,
            };
            match received {
                Ok(batch) => self.take(&batch),
                Err(RecvError::Lagged(n)) => self.pending.push_back(
                    Event::default()
                        .event("dropped")
                        .data(format!("{{\"dropped\":{n}}}")),
                ),
                Err(RecvError::Closed) => return None,
            }
        }
    }

    fn take(&mut self, batch: &LogBatch) {
        let dedup = self.queued_batches > 0;
        for record in &batch.records {
            if self.query.matches(record) && !(dedup && self.backlog.contains(record)) {
                self.pending.push_back(log_event(record));
            }
        }
        if dedup {
            self.queued_batches -= 1;
            if self.queued_batches == 0 {
                self.backlog = Vec::new();
            }
        }
    }
}

fn log_event(record: &LogRecord) -> Event {
    // the record JSON has string keys only, so encoding cannot fail
    let data = serde_json::to_string(&RecordJson::new(record)).unwrap_or_default();
    Event::default().event("log").data(data)
}

/// Resolves once shutdown is signalled; never when the signal's sender is gone without
/// signalling (nothing can stop the stream then but the client or the store).
async fn shutting_down(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}
