//! Traces: the span model, the contracts ingest and queries program against, and the trace
//! store.
//!
//! * [`model`]: spans, resources, ids, attribute values.
//! * [`TracesAppender`] / [`TracesQuerier`]: what the collector and the query APIs use.
//! * [`TraceStore`] (`store`): WAL + in-memory head + immutable segments; implements both.
//!
//! The store by file: `codec` (the binary span/resource encoding, written once at append),
//! `payload` (WAL records), `head` (spans since the last flush), `segment` (immutable
//! on-disk segments: span pages, trace index, search columns, Bloom filter), `bloom`,
//! `query` (search filter, candidates, partial summaries), `metrics`. Write path: encode ->
//! WAL (durable) -> head. Flush: head -> segment file -> WAL segments deleted. Read path:
//! head by hash, segments by Bloom filter + trace index; search by columns, newest first.
//! The on-disk format is specified in `docs/format/traces.md`.

mod bloom;
mod codec;
mod head;
mod metrics;
pub mod model;
mod payload;
mod query;
mod segment;
mod store;

pub use query::DEFAULT_SEARCH_LIMIT;
pub use store::{TraceStore, TraceStoreOptions, TraceStoreStats};

use async_trait::async_trait;

use crate::error::Result;
pub use model::{
    AttrValue, Attributes, Resource, ResourceSpans, Span, SpanBatch, SpanEvent, SpanId, SpanKind,
    SpanLink, StatusCode, StoredSpan, TraceId,
};

/// What an append did with a batch: spans are accepted whole or rejected with a reason (the
/// collector turns rejections into OTLP partial success).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpanAppendReport {
    pub accepted_spans: u64,
    pub rejected_spans: u64,
    /// The first rejection's message, for the partial-success answer.
    pub first_rejection: Option<String>,
}

/// Appends spans. On `Ok`, the accepted spans are durable (in the WAL per the fsync policy)
/// and visible to [`TracesQuerier`].
#[async_trait]
pub trait TracesAppender: Send + Sync + 'static {
    async fn append_spans(&self, batch: SpanBatch) -> Result<SpanAppendReport>;
}

/// A trace search. The span conditions (time, service, operation, kind, duration, tags) must
/// all hold on one span of the trace, as in Jaeger; `error` is about the whole trace. Tags
/// are looked up in the span's attributes, then in its resource's.
#[derive(Clone, Debug, Default)]
pub struct TraceQuery {
    /// Spans starting at or after this (Unix ns).
    pub start_unix_nano: u64,
    /// Spans starting at or before this (Unix ns); 0 means no upper bound.
    pub end_unix_nano: u64,
    pub service: Option<String>,
    /// Span name.
    pub operation: Option<String>,
    pub kind: Option<SpanKind>,
    /// Only traces with (`Some(true)`) / without (`Some(false)`) an error span.
    pub error: Option<bool>,
    /// Bounds on the matching span's duration.
    pub min_duration_nanos: Option<u64>,
    pub max_duration_nanos: Option<u64>,
    /// `key=value` pairs compared against [`AttrValue::to_text`].
    pub tags: Vec<(String, String)>,
    /// Most traces returned, newest first; 0 means [`DEFAULT_SEARCH_LIMIT`].
    pub limit: usize,
}

/// One trace in search results.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceSummary {
    pub trace_id: TraceId,
    /// Service and name of the root span; of the earliest span when the root has not arrived.
    pub root_service: String,
    pub root_operation: String,
    pub start_unix_nano: u64,
    /// From the earliest start to the latest end among the trace's spans.
    pub duration_nanos: u64,
    pub span_count: u64,
    /// Spans whose status is ERROR.
    pub error_count: u64,
    /// Services with spans in the trace, sorted.
    pub services: Vec<String>,
}

/// Reads traces back. Synchronous (may read disk): async callers use `spawn_blocking`.
/// The size of each tier of the trace store, for `/api/v1/status/traces`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceTiers {
    /// Hot (spans in memory and the WAL) and warm (segments) as the store counts them.
    pub local: TraceStoreStats,
    /// Files, bytes and spans the archive manifest names (zero without an archive).
    pub archive_files: u64,
    pub archive_bytes: u64,
    pub archive_spans: u64,
}

pub trait TracesQuerier: Send + Sync {
    /// Every stored span of the trace, ordered by start time; empty when unknown.
    fn trace(&self, id: TraceId) -> Result<Vec<StoredSpan>>;

    /// Traces with a span matching `query`, newest first, at most `query.limit`. The newest
    /// traces are chosen by their newest matching span and returned by trace start, newest
    /// first.
    fn search(&self, query: &TraceQuery) -> Result<Vec<TraceSummary>>;

    /// Services with spans starting in `[start, end]` (Unix ns), sorted.
    fn services(&self, start_unix_nano: u64, end_unix_nano: u64) -> Result<Vec<String>>;

    /// Distinct `(span name, kind)` of a service's spans starting in `[start, end]`, sorted.
    fn operations(
        &self,
        service: &str,
        start_unix_nano: u64,
        end_unix_nano: u64,
    ) -> Result<Vec<(String, SpanKind)>>;

    /// The size of each tier; `None` for queriers that are not a store (the default).
    fn tiers(&self) -> Option<TraceTiers> {
        None
    }
}
