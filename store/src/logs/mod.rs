//! Logs: the record model, the contracts ingest and the query APIs program against, the
//! query language and the log store.
//!
//! * [`model`]: records, batches, severity ranges.
//! * [`LogsAppender`] / [`LogsQuerier`]: what the collector and the query APIs use.
//! * [`query`]: the query language (parse with positions in errors, evaluate against one
//!   record for live tail, compile to a tantivy query for the index).
//! * [`schema`]: the tantivy schema of a log partition and the body tokenizer's name.
//! * [`tokenizer`]: the body tokenizer (identifiers, paths, IPs, CJK).
//! * [`LogStore`] (`store`): WAL + time-partitioned tantivy indexes; implements both
//!   contracts.

pub mod model;
pub mod query;
pub mod schema;
mod store;
pub mod tokenizer;

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
pub use model::{LogBatch, LogRecord, Severity};
pub use query::{LogQuery, QueryError};
pub use store::{LogStore, LogStoreOptions, LogStoreStats};

/// What an append did with a batch: records are accepted whole or rejected with a reason
/// (the collector turns rejections into OTLP partial success).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogAppendReport {
    pub accepted_records: u64,
    pub rejected_records: u64,
    /// The first rejection's message, for the partial-success answer.
    pub first_rejection: Option<String>,
}

/// Appends records. On `Ok`, the accepted records are durable (in the WAL per the fsync
/// policy), have been sent to live-tail subscribers, and become searchable within the
/// store's commit interval (at most 2 seconds).
#[async_trait]
pub trait LogsAppender: Send + Sync + 'static {
    async fn append_logs(&self, batch: LogBatch) -> Result<LogAppendReport>;

    /// Whether an append now would be refused as a whole (the store closed, failed or
    /// overloaded), without appending anything: ingest asks before it spends CPU on
    /// decoding and converting a push that would only be refused. `Ok` does not promise the
    /// append succeeds. Appenders that cannot tell answer `Ok` (the default).
    fn check_accepting(&self) -> Result<()> {
        Ok(())
    }
}

/// Order of search results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    /// Newest first (the default, as Loki's `backward`).
    #[default]
    Backward,
    /// Oldest first.
    Forward,
}

/// A search: the records matching `query` with time in `[start, end]` (Unix ns, both
/// inclusive), the `limit` newest (or oldest, for [`Direction::Forward`]) in that order.
#[derive(Clone, Debug)]
pub struct LogSearch {
    pub query: LogQuery,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub limit: usize,
    pub direction: Direction,
}

/// Counts of matching records per `step` over `[start, end]`.
#[derive(Clone, Debug)]
pub struct HistogramRequest {
    pub query: LogQuery,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// Bucket width (ns, > 0). Bucket `i` covers `[start + i*step, start + (i+1)*step)`; the
    /// last bucket is cut at `end` (inclusive).
    pub step_nanos: u64,
}

/// One histogram bucket.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramBucket {
    pub start_unix_nano: u64,
    pub count: u64,
    /// Counts per severity range, indexed like [`Severity::ALL`].
    pub by_severity: [u64; 7],
}

/// The fields of matching records and their most frequent values.
#[derive(Clone, Debug)]
pub struct FieldsRequest {
    pub query: LogQuery,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// Values listed per field, most frequent first.
    pub top_values: usize,
    /// The newest this many matching records are sampled (0: a default of 10,000).
    pub sample: usize,
}

/// One field in a [`FieldsRequest`] answer. Names are as the query language writes them:
/// `service`, `severity`, `trace_id`, `span_id`, `attr.<key>` (log and resource attributes).
#[derive(Clone, Debug, PartialEq)]
pub struct FieldSummary {
    pub name: String,
    /// Sampled records that have the field.
    pub records: u64,
    /// Distinct values seen in the sample.
    pub distinct_values: u64,
    /// `(value, records)`, most frequent first, ties by value.
    pub top: Vec<(String, u64)>,
}

/// Reads logs back. Synchronous (reads disk): async callers use `spawn_blocking`.
/// The size of each tier of the log store, for `/api/v1/status/logs`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogTiers {
    /// The indexed partitions on local disk, and the WAL.
    pub warm: LogStoreStats,
    /// Files, bytes and records the archive manifest names (zero without an archive).
    pub archive_files: u64,
    pub archive_bytes: u64,
    pub archive_records: u64,
}

/// What a search read besides the local store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Archive (Parquet) files read.
    pub archive_files_read: usize,
}

pub trait LogsQuerier: Send + Sync {
    fn search(&self, search: &LogSearch) -> Result<Vec<LogRecord>>;

    /// [`LogsQuerier::search`], saying what it read. Queriers without an archive tier
    /// answer with empty stats (the default).
    fn search_with_stats(&self, search: &LogSearch) -> Result<(Vec<LogRecord>, SearchStats)> {
        Ok((self.search(search)?, SearchStats::default()))
    }

    /// The size of each tier; `None` for queriers that are not a store (the default).
    fn tiers(&self) -> Option<LogTiers> {
        None
    }

    /// One bucket per step from `start` to `end`, empty ones included.
    fn histogram(&self, request: &HistogramRequest) -> Result<Vec<HistogramBucket>>;

    /// Fields sorted by name.
    fn fields(&self, request: &FieldsRequest) -> Result<Vec<FieldSummary>>;

    /// Every batch acknowledged from now on, as appended (for live tail; callers filter
    /// with [`LogQuery::matches`]). A subscriber that falls behind loses the oldest
    /// batches and is told how many (tokio's `RecvError::Lagged`).
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<LogBatch>>;
}
