//! Lookout's store: the signal model and everything that keeps and reads signals.
//!
//! Map:
//! * [`model`]: the metric signal model (labels, samples, series, batches) every ingest
//!   protocol converts into.
//! * [`contract`]: the small contracts the collector and query code program against:
//!   [`MetricsAppender`] (append a batch, durable on return) and [`MetricsQuerier`].
//! * [`wal`]: segmented, checksummed write-ahead log with group commit; replay on open.
//! * [`tsdb`]: the metrics time-series database. Write path: `append` -> validate against
//!   [`config::Limits`] -> WAL record -> in-memory head (Gorilla-compressed chunks, inverted
//!   label index). The head is persisted periodically to immutable blocks, then its WAL
//!   segments are deleted. Read path: postings intersection over head and blocks -> decode the
//!   chunks overlapping the range.
//! * [`promql`]: query evaluation over a [`MetricsQuerier`].
//! * [`traces`]: the span model, [`traces::TracesAppender`] / [`traces::TracesQuerier`], the
//!   trace store.
//! * [`logs`]: the log record model, [`logs::LogsAppender`] / [`logs::LogsQuerier`], the log
//!   query language, the body tokenizer and the tantivy schema of the log store.
//! * [`archive`]: the cold tier: Parquet files on a local directory or S3, their manifest,
//!   the archived metrics schema.
//! * [`duration`]: Prometheus duration syntax.
//! * [`timefmt`]: Gregorian calendar math, RFC 3339 formatting and parsing of Unix times.
//! * [`testing`]: an in-memory querier for tests of query code.

pub mod archive;
mod clock;
pub mod config;
pub mod contract;
pub mod duration;
pub mod error;
mod fsutil;
pub mod logs;
pub mod model;
pub mod promql;
pub mod testing;
pub mod timefmt;
pub mod traces;
pub mod tsdb;
pub mod wal;
mod zstd_pages;

pub use contract::{
    AppendReport, LabelMatcher, MatchOp, MetricsAppender, MetricsQuerier, RejectReason,
};
pub use error::{ErrorKind, Result, StoreError};
pub use model::{Label, Labels, MetricBatch, MetricMetadata, MetricType, Sample, Series};
pub use tsdb::MetricsStore;
