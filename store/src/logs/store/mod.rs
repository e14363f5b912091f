//! The log store: a WAL plus time-partitioned tantivy indexes (format in
//! `docs/format/logs.md`).
//!
//! Write path ([`LogStore`] as [`LogsAppender`]): records are validated and encoded once
//! ([`codec`]) into WAL payloads of at most [`CHUNK_BYTES`], each under its own *sequence
//! number*; the WAL write is awaited (durable per the fsync policy); then each chunk goes to
//! the [`indexer`] thread and to live-tail subscribers, and the append is acknowledged. The
//! indexer adds records to the writer of their [`partition`] (one index per
//! `partition_span` of record time) and commits every `commit_interval`, reloading the
//! readers, so a record is searchable about one interval after its ack (while the indexer is
//! behind, commits are put off up to `max_commit_delay`, so segments are cut by the writer's
//! memory; the [`merge`] policy then rewrites a record a bounded number of times). Appends
//! are refused as overloaded before the WAL write while the indexer is too far behind, and
//! ingest asks ([`LogsAppender::check_accepting`]) before it decodes a push.
//!
//! Durability: every partition commit carries the highest sequence number it contains (exact
//! because the indexer indexes in sequence order). WAL truncation takes the *gate* (appends
//! hold its read side from taking a sequence number until their chunk is with the indexer)
//! and rotates the WAL; the WAL segments up to the rotated one are deleted once the indexer
//! has committed every sequence number they hold: in the background on its own commits
//! (so truncation never cuts segments short), on close and [`LogStore::truncate_wal`] by
//! asking it to commit. Replay at open re-indexes exactly the WAL records a partition has
//! not committed, so a crash at any point loses no acknowledged record and duplicates none.
//!
//! Read path ([`LogsQuerier`]): [`search`] over the partitions' committed segments, newest
//! (or oldest) first with early termination; exact histograms from fast fields; field
//! summaries over the newest matching records. A query with a phrase selects a superset in
//! the index (the body has no positions) and each candidate is checked against the query
//! on its decoded record. Retention deletes whole partitions.

mod archive;
mod codec;
mod indexer;
mod merge;
mod metrics;
mod partition;
mod search;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{broadcast, oneshot, Notify};

use crate::config::{FsyncPolicy, WalOptions};
use crate::error::{Result, StoreError};
use crate::logs::model::{LogBatch, LogRecord};
use crate::logs::schema::LogSchema;
use crate::logs::{
    FieldSummary, FieldsRequest, HistogramBucket, HistogramRequest, LogAppendReport, LogSearch,
    LogsAppender, LogsQuerier, SearchStats,
};
use crate::wal::{SegmentId, Wal, MAX_RECORD_BYTES};
use codec::PayloadBuilder;
use indexer::{Chunk, Indexer, IndexerOptions, Msg, Shared, Ticket};
use partition::{Partition, NANOS_PER_SEC};
use search::TimeRange;

/// Records are grouped into WAL payloads of about this size (a batch larger than this
/// becomes several payloads, each with its own sequence number).
pub const CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// The largest encoded record accepted (WAL records are bounded).
const MAX_ENCODED_RECORD: usize = (MAX_RECORD_BYTES as usize) / 2;
const MAX_PENDING_WAL_APPENDS: usize = 4096;
/// Batches kept for live-tail subscribers that fall behind.
const TAIL_CAPACITY: usize = 1024;
/// Retention runs at most this often from the background task.
const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// Covered WAL segments are deleted at least this often (sooner when the WAL outgrows a
/// segment).
const TRUNCATE_EVERY: Duration = Duration::from_secs(30);
/// A WAL of at least this many bytes is truncated once appends have stopped for
/// [`IDLE_TRUNCATE_AFTER`].
const IDLE_TRUNCATE_BYTES: u64 = 1024 * 1024;
const IDLE_TRUNCATE_AFTER: Duration = Duration::from_secs(2);
/// The gauges that read the disk are refreshed this often.
const GAUGES_EVERY: Duration = Duration::from_secs(10);

/// Options the log store is opened with.
#[derive(Clone, Debug)]
pub struct LogStoreOptions {
    /// Root of the store: `wal/` and `partitions/` live below it.
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    /// Partitions whose end is older than this are deleted; records older than this are
    /// refused at append.
    pub retention: Duration,
    /// Records newer than now plus this are refused at append.
    pub max_future: Duration,
    /// Indexed records are committed (made searchable) this often.
    pub commit_interval: Duration,
    /// While the indexer is behind (an eighth of `max_indexer_queue_bytes` waits for it),
    /// commits are put off up to this long after the first uncommitted record, so that
    /// segments are cut by the writer's memory instead of the clock (fewer, larger segments
    /// for merges to rewrite). Under a normal load the indexer is not behind and records are
    /// searchable within about `commit_interval`.
    pub max_commit_delay: Duration,
    /// Record time covered by one partition (whole seconds, at least one).
    pub partition_span: Duration,
    /// Indexing memory of each open partition writer (at least 15 MB, tantivy's minimum).
    pub writer_memory_bytes: usize,
    /// A partition writer that received nothing for this long is closed, after merging the
    /// partition's small segments into one if its time is over.
    pub writer_idle_close: Duration,
    /// Partition writers open at once (late records for older partitions open more; the
    /// least recently written is closed first).
    pub max_open_writers: usize,
    /// Bytes of acknowledged records waiting for the indexer beyond which appends are
    /// refused as overloaded.
    pub max_indexer_queue_bytes: u64,
    /// WAL segment size.
    pub wal_segment_bytes: u64,
    /// Where partitions go once `retention` (the warm window) is over; `None` deletes them.
    pub archive: Option<crate::config::ArchiveTier>,
}

impl LogStoreOptions {
    /// Defaults for a store rooted at `dir`: fsync on every append, 7 days retention, commits
    /// every second (put off up to 10 s while the indexer is behind), one-hour partitions,
    /// 128 MB writers (at most 3 open), 128 MB of queue.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LogStoreOptions {
            dir: dir.into(),
            fsync: FsyncPolicy::Always,
            retention: Duration::from_secs(7 * 24 * 3600),
            max_future: Duration::from_secs(3600),
            commit_interval: Duration::from_secs(1),
            max_commit_delay: Duration::from_secs(10),
            partition_span: Duration::from_secs(3600),
            writer_memory_bytes: 128 * 1024 * 1024,
            writer_idle_close: Duration::from_secs(60),
            max_open_writers: 3,
            max_indexer_queue_bytes: 128 * 1024 * 1024,
            wal_segment_bytes: 64 * 1024 * 1024,
            archive: None,
        }
    }

    fn validate(&self) -> Result<()> {
        let mut errors = Vec::new();
        if self.partition_span.as_secs() == 0 || self.partition_span.subsec_nanos() != 0 {
            errors.push(format!(
                "partition_span must be a whole number of seconds, at least 1 (got {:?})",
                self.partition_span
            ));
        }
        if self.commit_interval.is_zero() {
            errors.push("commit_interval must be positive".to_string());
        }
        if self.retention.is_zero() {
            errors.push("retention must be positive".to_string());
        }
        if self.writer_memory_bytes < partition::MIN_WRITER_BYTES {
            errors.push(format!(
                "writer_memory_bytes must be at least {} (got {})",
                partition::MIN_WRITER_BYTES,
                self.writer_memory_bytes
            ));
        }
        if self.max_open_writers == 0 {
            errors.push("max_open_writers must be at least 1".to_string());
        }
        if self.max_indexer_queue_bytes == 0 {
            errors.push("max_indexer_queue_bytes must be positive".to_string());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(StoreError::BadRequest(format!(
                "invalid log store options: {}",
                errors.join("; ")
            )))
        }
    }
}

/// Size and shape of the store, for `/metrics` and status endpoints.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogStoreStats {
    pub partitions: u64,
    /// Committed (searchable) records.
    pub records: u64,
    /// Bytes of the partitions' files (index and document store).
    pub disk_bytes: u64,
    pub wal_bytes: u64,
    /// Bytes of acknowledged records waiting for the indexer.
    pub indexer_queue_bytes: u64,
    /// Partition writers open.
    pub open_writers: u64,
}

pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn task_failed(what: &str, e: tokio::task::JoinError) -> StoreError {
    StoreError::Unavailable(format!("{what} task failed: {e}"))
}

fn indexer_gone() -> StoreError {
    StoreError::Unavailable("log indexer stopped".to_string())
}

/// A record the store refuses: metric label and message.
struct Rejection {
    reason: &'static str,
    message: String,
}

/// Checks one record and fills what the store derives (time from the observed time, the
/// observed time from now).
fn normalize(rec: &mut LogRecord, now: u64, opts: &LogStoreOptions) -> Result<(), Rejection> {
    if rec.severity_number > 24 {
        return Err(Rejection {
            reason: "severity",
            message: format!(
                "severity number {} is out of range (0 to 24)",
                rec.severity_number
            ),
        });
    }
    if rec.observed_unix_nano == 0 {
        rec.observed_unix_nano = now;
    }
    if rec.time_unix_nano == 0 {
        rec.time_unix_nano = rec.observed_unix_nano;
    }
    let t = rec.time_unix_nano;
    if t < now.saturating_sub(duration_ns(opts.retention)) {
        return Err(Rejection {
            reason: "too_old",
            message: format!(
                "record time {t} is older than the log retention of {}s",
                opts.retention.as_secs()
            ),
        });
    }
    if t > now.saturating_add(duration_ns(opts.max_future)) {
        return Err(Rejection {
            reason: "too_far_in_future",
            message: format!(
                "record time {t} is more than {}s in the future",
                opts.max_future.as_secs()
            ),
        });
    }
    let size = codec::encoded_len_hint(rec);
    if size > MAX_ENCODED_RECORD {
        return Err(Rejection {
            reason: "too_large",
            message: format!(
                "record of about {size} bytes exceeds the store's limit of {MAX_ENCODED_RECORD} bytes"
            ),
        });
    }
    Ok(())
}

/// A chunk ready for the WAL.
struct Outgoing {
    ticket: Ticket,
    payload: Vec<u8>,
    records: Vec<LogRecord>,
}

/// What an append task holds until its chunks are with the indexer. Field order matters:
/// tickets drop (sending their skips) before the gate is released.
struct InFlight {
    chunks: Vec<Outgoing>,
    _gate: tokio::sync::OwnedRwLockReadGuard<()>,
}

pub struct LogStore {
    opts: LogStoreOptions,
    shared: Arc<Shared>,
    wal: Arc<Wal>,
    tx: mpsc::Sender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The next WAL sequence number.
    next_seq: AtomicU64,
    /// Appends hold the read side from taking a sequence number until their chunks are with
    /// the indexer; WAL truncation and close take the write side.
    gate: Arc<tokio::sync::RwLock<()>>,
    tail: broadcast::Sender<Arc<LogBatch>>,
    closed: AtomicBool,
    shutdown: Notify,
    /// Serialises truncation, retention and close.
    maintenance: tokio::sync::Mutex<()>,
    /// Appends since the last WAL truncation.
    appended: AtomicU64,
    /// When the last append was acknowledged (ns since the epoch).
    last_append_ns: AtomicU64,
    /// A background WAL rotation whose segments wait for the indexer's commits: every
    /// sequence number in them is at most `.0`, and `.1` is the last of them.
    wal_rotated: Mutex<Option<(u64, SegmentId)>>,
    /// Records re-indexed from the WAL at open.
    replayed: u64,
    archive_backoff: Mutex<crate::archive::Backoff>,
    /// Whether the archive has been swept of files a crashed move left unnamed.
    archive_swept: AtomicBool,
}

impl LogStore {
    /// Opens (creating if needed) the store: opens the partitions, replays the WAL records
    /// they have not committed, starts the indexer thread. Blocking: call from
    /// `spawn_blocking` or before the runtime starts serving.
    pub fn open(opts: LogStoreOptions) -> Result<Arc<LogStore>> {
        let started = Instant::now();
        opts.validate()?;
        let span_secs = opts.partition_span.as_secs();
        let schema = LogSchema::new();
        let root = opts.dir.join("partitions");
        let parts = partition::load_all(&root, &schema, span_secs)?;
        let mut max_seq = parts.iter().map(|p| p.committed_seq()).max().unwrap_or(0);
        let shared = Arc::new(Shared {
            root,
            schema,
            span_secs,
            retention_ns: duration_ns(opts.retention),
            partitions: RwLock::new(
                parts
                    .into_iter()
                    .map(|p| (p.start_secs, Arc::new(p)))
                    .collect(),
            ),
            queue_bytes: AtomicU64::new(0),
            failed: Mutex::new(None),
            abort: AtomicBool::new(false),
            open_writers: AtomicU64::new(0),
            committed_seq: AtomicU64::new(0),
        });

        // Replay: keep every WAL record its partition has not committed, grouped by
        // partition (the WAL holds about one truncation interval of records).
        let now = now_ns();
        let mut groups: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
        let (mut skipped, mut expired, mut covered) = (0u64, 0u64, 0u64);
        let wal_dir = opts.dir.join("wal");
        let wal_opts = WalOptions {
            dir: wal_dir.clone(),
            fsync: opts.fsync,
            segment_size_bytes: opts.wal_segment_bytes,
            max_pending_appends: MAX_PENDING_WAL_APPENDS,
        };
        let wal = Wal::open(wal_opts, |segment, bytes| {
            let payload = match codec::decode_payload(bytes) {
                Ok(p) => p,
                Err(e) => {
                    // the checksum held, so this is a writer bug or a format this build
                    // misreads; payloads are self-contained, so only this one is lost
                    tracing::error!(dir = %wal_dir.display(), segment, reason = %e, "undecodable log wal record; skipping it");
                    metrics::WAL_RECORDS_SKIPPED.inc();
                    skipped += 1;
                    return Ok(());
                }
            };
            max_seq = max_seq.max(payload.seq);
            for rec in payload.records {
                let t = match codec::record_time(rec) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!(segment, reason = %e, "undecodable log record in the wal; skipping it");
                        metrics::WAL_RECORDS_SKIPPED.inc();
                        skipped += 1;
                        continue;
                    }
                };
                let (start, existing) = shared.route(t);
                let (end, committed) = match &existing {
                    Some(p) => (p.end_ns(), p.committed_seq()),
                    None => (
                        start
                            .saturating_add(span_secs)
                            .saturating_mul(NANOS_PER_SEC),
                        0,
                    ),
                };
                if shared.expired(end, now) {
                    expired += 1;
                } else if payload.seq <= committed {
                    covered += 1;
                } else {
                    groups.entry(start).or_default().push(rec.to_vec());
                }
            }
            Ok(())
        })?;
        let wal = Arc::new(wal);
        let pending: usize = groups.values().map(Vec::len).sum();
        let touched = groups.len();
        let replayed = indexer::index_replayed(&shared, groups, max_seq, opts.writer_memory_bytes)?;
        // every record in the replayed segments is now committed, expired or undecodable
        wal.remove_segments_upto(u64::MAX)?;
        shared.committed_seq.store(max_seq, Ordering::Release);
        metrics::RECORDS_EXPIRED.inc_by(expired);
        tracing::info!(
            dir = %opts.dir.display(),
            partitions = shared.partitions.read().len(),
            replayed_records = replayed,
            replayed_partitions = touched,
            already_committed = covered,
            expired_records = expired,
            skipped_records = skipped,
            pending_records = pending,
            next_seq = max_seq + 1,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "log store opened"
        );

        let (tx, rx) = mpsc::channel();
        let indexer = Indexer::new(
            shared.clone(),
            IndexerOptions {
                writer_bytes: opts.writer_memory_bytes,
                max_writers: opts.max_open_writers,
                commit_interval: opts.commit_interval,
                backlog_bytes: (opts.max_indexer_queue_bytes / 8).max(1),
                max_commit_delay: opts.max_commit_delay,
                idle_close: opts.writer_idle_close,
            },
            max_seq + 1,
        );
        let thread = std::thread::Builder::new()
            .name("log-indexer".to_string())
            .spawn(move || indexer.run(rx))
            .map_err(|e| StoreError::io(&opts.dir, e))?;
        let (tail, _) = broadcast::channel(TAIL_CAPACITY);
        let store = LogStore {
            opts,
            shared,
            wal,
            tx,
            thread: Mutex::new(Some(thread)),
            next_seq: AtomicU64::new(max_seq + 1),
            gate: Arc::new(tokio::sync::RwLock::new(())),
            tail,
            closed: AtomicBool::new(false),
            shutdown: Notify::new(),
            maintenance: tokio::sync::Mutex::new(()),
            appended: AtomicU64::new(0),
            last_append_ns: AtomicU64::new(0),
            wal_rotated: Mutex::new(None),
            replayed,
            archive_backoff: Mutex::new(crate::archive::Backoff::default()),
            archive_swept: AtomicBool::new(false),
        };
        store.update_gauges();
        Ok(Arc::new(store))
    }

    /// Records the WAL replay at open had to index (those no partition had committed).
    pub fn replayed_records(&self) -> u64 {
        self.replayed
    }

    fn partitions(&self) -> Vec<Arc<Partition>> {
        self.shared.partitions.read().values().cloned().collect()
    }

    pub fn stats(&self) -> LogStoreStats {
        let parts = self.partitions();
        LogStoreStats {
            partitions: parts.len() as u64,
            records: parts.iter().map(|p| p.reader.searcher().num_docs()).sum(),
            disk_bytes: parts.iter().map(|p| p.disk_bytes()).sum(),
            wal_bytes: self.wal.size_bytes(),
            indexer_queue_bytes: self.shared.queue_bytes.load(Ordering::Relaxed),
            open_writers: self.shared.open_writers.load(Ordering::Relaxed),
        }
    }

    fn update_gauges(&self) {
        let s = self.stats();
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        metrics::PARTITIONS.set(g(s.partitions));
        metrics::RECORDS.set(g(s.records));
        metrics::DISK_BYTES.set(g(s.disk_bytes));
        metrics::QUEUE_BYTES.set(g(s.indexer_queue_bytes));
    }

    fn check_accepting(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("log store is closed".to_string()));
        }
        if let Some(msg) = self.shared.failed.lock().as_ref() {
            return Err(StoreError::Unavailable(format!(
                "log indexing failed ({msg}); restart Lookout to index from the wal"
            )));
        }
        let queued = self.shared.queue_bytes.load(Ordering::Relaxed);
        let limit = self.opts.max_indexer_queue_bytes;
        if queued >= limit {
            metrics::OVERLOADED.inc();
            return Err(StoreError::Overloaded(format!(
                "{queued} bytes of log records wait for the indexer (limit {limit})"
            )));
        }
        Ok(())
    }

    async fn append(&self, batch: LogBatch) -> Result<LogAppendReport> {
        self.check_accepting()?;
        let started = Instant::now();
        let now = now_ns();
        let mut report = LogAppendReport::default();
        // validate and encode into chunks before taking sequence numbers
        let mut chunks: Vec<(PayloadBuilder, Vec<LogRecord>)> = Vec::new();
        for mut rec in batch.records {
            if let Err(r) = normalize(&mut rec, now, &self.opts) {
                report.rejected_records += 1;
                metrics::RECORDS_REJECTED
                    .with_label_values(&[r.reason])
                    .inc();
                report.first_rejection.get_or_insert(r.message);
                continue;
            }
            let hint = codec::encoded_len_hint(&rec);
            let start_new = match chunks.last() {
                None => true,
                Some((b, _)) => b.len() + hint > CHUNK_BYTES,
            };
            if start_new {
                chunks.push((PayloadBuilder::with_capacity(hint.max(4096)), Vec::new()));
            }
            if let Some((b, recs)) = chunks.last_mut() {
                b.add(&rec);
                recs.push(rec);
            }
            report.accepted_records += 1;
        }
        if chunks.is_empty() {
            return Ok(report);
        }

        let gate = self.gate.clone().read_owned().await;
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("log store is closed".to_string()));
        }
        let chunks: Vec<Outgoing> = chunks
            .into_iter()
            .map(|(b, records)| {
                let ticket = Ticket::new(
                    self.next_seq.fetch_add(1, Ordering::AcqRel),
                    self.tx.clone(),
                );
                let (payload, _) = b.finish(ticket.seq());
                Outgoing {
                    ticket,
                    payload,
                    records,
                }
            })
            .collect();
        let flight = InFlight {
            chunks,
            _gate: gate,
        };
        let wal = self.wal.clone();
        let tail = self.tail.clone();
        let shared = self.shared.clone();
        // A task of its own, so that a caller that stops waiting (a client gone) cannot
        // leave a logged chunk out of the index.
        let task = tokio::spawn(async move {
            let InFlight { mut chunks, _gate } = flight;
            let encoded: Vec<u64> = chunks.iter().map(|c| c.payload.len() as u64).collect();
            // the indexer works from the records (re-encoded for the doc store), so the
            // payloads go to the WAL without a copy
            let results = futures::future::join_all(
                chunks
                    .iter_mut()
                    .map(|c| wal.append(std::mem::take(&mut c.payload))),
            )
            .await;
            let mut first_err = None;
            for ((c, r), encoded) in chunks.into_iter().zip(results).zip(encoded) {
                if let Err(e) = r {
                    // the ticket drops unsent: the indexer skips its number
                    first_err.get_or_insert(e);
                    continue;
                }
                let n = c.records.len() as u64;
                // the decoded records, roughly: their strings and vectors take about
                // twice their encoded size, plus a fixed part each
                let bytes = 2 * encoded + 128 * n;
                let records = Arc::new(LogBatch { records: c.records });
                let queued = shared.queue_bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
                metrics::QUEUE_BYTES.set(i64::try_from(queued).unwrap_or(i64::MAX));
                let chunk = Chunk {
                    records: records.clone(),
                    bytes,
                };
                if c.ticket.send(chunk).is_err() {
                    shared.queue_bytes.fetch_sub(bytes, Ordering::AcqRel);
                    first_err.get_or_insert_with(indexer_gone);
                }
                metrics::RECORDS_APPENDED.inc_by(n);
                metrics::BYTES_APPENDED.inc_by(encoded);
                // no subscriber is not an error
                let _ = tail.send(records);
            }
            first_err
        });
        let first_err = task.await.map_err(|e| task_failed("log append", e))?;
        self.appended.fetch_add(1, Ordering::Relaxed);
        self.last_append_ns.store(now_ns(), Ordering::Relaxed);
        metrics::DURATION
            .with_label_values(&["append"])
            .observe(started.elapsed().as_secs_f64());
        match first_err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    async fn request<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Msg) -> Result<T> {
        let (done, rx) = oneshot::channel();
        self.tx.send(make(done)).map_err(|_| indexer_gone())?;
        rx.await.unwrap_or_else(|_| Err(indexer_gone()))
    }

    /// Commits everything indexed so far and deletes the WAL segments that holds. Runs from
    /// the background task; public for tests and tools.
    pub async fn truncate_wal(&self) -> Result<()> {
        let _m = self.maintenance.lock().await;
        self.truncate_wal_locked().await
    }

    async fn truncate_wal_locked(&self) -> Result<()> {
        let started = Instant::now();
        let (upto_seq, rotated) = {
            let _gate = self.gate.write().await;
            let upto = self.next_seq.load(Ordering::Acquire) - 1;
            (upto, self.wal.rotate().await?)
        };
        self.appended.store(0, Ordering::Relaxed);
        let committed = self.request(|done| Msg::Commit { done }).await?;
        if committed < upto_seq {
            return Err(StoreError::Unavailable(format!(
                "log indexer committed up to sequence {committed}, expected {upto_seq}; wal kept"
            )));
        }
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || wal.remove_segments_upto(rotated))
            .await
            .map_err(|e| task_failed("log wal cleanup", e))??;
        // an earlier background rotation is covered too
        *self.wal_rotated.lock() = None;
        metrics::DURATION
            .with_label_values(&["wal_truncate"])
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// The background's WAL truncation, in two steps that never force a commit (a forced
    /// commit cuts the segments being built; see [`LogStoreOptions::max_commit_delay`]):
    /// rotate the WAL, remembering the highest sequence number before the rotation; then,
    /// on a later call, once the indexer's own commits cover that number, delete the
    /// segments up to the rotation. Returns whether segments were deleted.
    async fn truncate_wal_lazily(&self, rotate: bool) -> Result<bool> {
        let _m = self.maintenance.lock().await;
        let rotated = *self.wal_rotated.lock();
        match rotated {
            Some((upto, segment)) => {
                if self.shared.committed_seq.load(Ordering::Acquire) < upto {
                    return Ok(false);
                }
                let started = Instant::now();
                let wal = self.wal.clone();
                tokio::task::spawn_blocking(move || wal.remove_segments_upto(segment))
                    .await
                    .map_err(|e| task_failed("log wal cleanup", e))??;
                *self.wal_rotated.lock() = None;
                metrics::DURATION
                    .with_label_values(&["wal_truncate"])
                    .observe(started.elapsed().as_secs_f64());
                Ok(true)
            }
            None if rotate => {
                let (upto, segment) = {
                    let _gate = self.gate.write().await;
                    let upto = self.next_seq.load(Ordering::Acquire) - 1;
                    (upto, self.wal.rotate().await?)
                };
                self.appended.store(0, Ordering::Relaxed);
                *self.wal_rotated.lock() = Some((upto, segment));
                Ok(false)
            }
            None => Ok(false),
        }
    }

    /// Deletes partitions whose end is older than now minus the retention; returns how many.
    pub async fn apply_retention(&self) -> Result<usize> {
        let _m = self.maintenance.lock().await;
        let started = Instant::now();
        let now = now_ns();
        let expired: Vec<u64> = self
            .partitions()
            .iter()
            .filter(|p| self.shared.expired(p.end_ns(), now))
            .map(|p| p.start_secs)
            .collect();
        if expired.is_empty() {
            return Ok(0);
        }
        let n = expired.len();
        self.remove_partitions(expired, "retention").await?;
        metrics::DURATION
            .with_label_values(&["retention"])
            .observe(started.elapsed().as_secs_f64());
        Ok(n)
    }

    /// WAL truncation, retention and gauges until [`LogStore::close`]. (Commits, idle writers
    /// and merges are the indexer thread's own.)
    pub fn spawn_background(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let store = Arc::clone(self);
        tokio::spawn(async move {
            let tick = Duration::from_secs(1);
            let mut last_truncate = Instant::now();
            let mut last_retention: Option<Instant> = None;
            let mut last_gauges = Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(tick) => {}
                    _ = store.shutdown.notified() => break,
                }
                if store.closed.load(Ordering::Acquire) {
                    break;
                }
                let wal_bytes = store.wal.size_bytes();
                let appended = store.appended.load(Ordering::Relaxed) > 0;
                let wal_full = wal_bytes >= store.opts.wal_segment_bytes;
                let due = last_truncate.elapsed() >= TRUNCATE_EVERY && appended;
                // a burst that ended leaves no large WAL behind for long
                let idle = appended
                    && wal_bytes >= IDLE_TRUNCATE_BYTES
                    && now_ns().saturating_sub(store.last_append_ns.load(Ordering::Relaxed))
                        >= duration_ns(IDLE_TRUNCATE_AFTER);
                let rotate = wal_full || due || idle;
                if rotate {
                    last_truncate = Instant::now();
                }
                if let Err(e) = store.truncate_wal_lazily(rotate).await {
                    tracing::error!(error = %e, "log wal truncation failed; the wal keeps growing");
                }
                // small partitions (tests, short warm windows) move as soon as they are due
                let every = RETENTION_EVERY.min(store.opts.partition_span);
                if last_retention.is_none_or(|t| t.elapsed() >= every) {
                    last_retention = Some(Instant::now());
                    if let Err(e) = store.move_old_data().await {
                        tracing::error!(error = %e, "log retention failed");
                    }
                }
                if last_gauges.elapsed() >= GAUGES_EVERY {
                    last_gauges = Instant::now();
                    let s = store.clone();
                    let _ = tokio::task::spawn_blocking(move || s.update_gauges()).await;
                }
            }
        })
    }

    /// Commits everything, stops the indexer and closes the WAL; appends afterwards fail as
    /// unavailable.
    pub async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.shutdown.notify_waiters();
        let _m = self.maintenance.lock().await;
        // no append is between its sequence number and the indexer after this
        let rotated = {
            let _gate = self.gate.write().await;
            self.wal.rotate().await
        };
        let committed = self.request(|done| Msg::Close { done }).await;
        let thread = self.thread.lock().take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        if let (Ok(_), Ok(r)) = (&committed, &rotated) {
            let wal = self.wal.clone();
            let r = *r;
            tokio::task::spawn_blocking(move || wal.remove_segments_upto(r))
                .await
                .map_err(|e| task_failed("log wal cleanup", e))??;
        }
        self.wal.close().await?;
        committed.map(|_| ())
    }

    fn snapshot_query(&self) -> (Vec<Arc<Partition>>, &LogSchema) {
        (self.partitions(), &self.shared.schema)
    }

    /// Local partitions first, then the archived files whose partition is no longer local,
    /// merged best first.
    fn search_inner(&self, s: &LogSearch) -> Result<(Vec<LogRecord>, SearchStats)> {
        let range = TimeRange::new(s.start_unix_nano, s.end_unix_nano)?;
        let (parts, schema) = self.snapshot_query();
        let files = self.archive_files(&parts, range.start, range.end);
        let query = s.query.to_tantivy(schema);
        let verify = s.query.needs_verification().then_some(&s.query);
        let mut records = search::search(
            &parts,
            schema,
            query.as_ref(),
            verify,
            range,
            s.limit,
            s.direction,
        )?;
        if files.is_empty() || s.limit == 0 {
            return Ok((records, SearchStats::default()));
        }
        let (archived, read) = self.search_archive(s, range, files)?;
        records.extend(archived);
        archive::sort_best(&mut records, s.direction);
        records.truncate(s.limit);
        Ok((
            records,
            SearchStats {
                archive_files_read: read,
            },
        ))
    }

    fn histogram_inner(&self, r: &HistogramRequest) -> Result<Vec<HistogramBucket>> {
        let range = TimeRange::new(r.start_unix_nano, r.end_unix_nano)?;
        search::bucket_count(range, r.step_nanos)?;
        let (parts, schema) = self.snapshot_query();
        let files = self.archive_files(&parts, range.start, range.end);
        let query = r.query.to_tantivy(schema);
        let verify = r.query.needs_verification().then_some(&r.query);
        let mut buckets =
            search::histogram(&parts, schema, query.as_ref(), verify, range, r.step_nanos)?;
        self.count_archive(&r.query, range, r.step_nanos, &files, &mut buckets)?;
        Ok(buckets)
    }

    fn fields_inner(&self, r: &FieldsRequest) -> Result<Vec<FieldSummary>> {
        let sample = match r.sample {
            0 => search::DEFAULT_FIELD_SAMPLE,
            n => n.min(search::MAX_FIELD_SAMPLE),
        };
        let (records, _) = self.search_inner(&LogSearch {
            query: r.query.clone(),
            start_unix_nano: r.start_unix_nano,
            end_unix_nano: r.end_unix_nano,
            limit: sample,
            direction: crate::logs::Direction::Backward,
        })?;
        Ok(search::summarize_fields(&records, r.top_values))
    }
}

impl Drop for LogStore {
    /// Dropped without `close` (a crash, in tests): the indexer stops at once without
    /// committing, as a killed process would; the WAL keeps every acknowledged record.
    fn drop(&mut self) {
        self.shared.abort.store(true, Ordering::Release);
        if let Some(t) = self.thread.lock().take() {
            // wakes the thread if it waits for a message
            let (done, _rx) = oneshot::channel();
            let _ = self.tx.send(Msg::Commit { done });
            let _ = t.join();
        }
    }
}

fn timed<T>(op: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let r = f();
    metrics::DURATION
        .with_label_values(&[op])
        .observe(started.elapsed().as_secs_f64());
    r
}

#[async_trait]
impl LogsAppender for LogStore {
    async fn append_logs(&self, batch: LogBatch) -> Result<LogAppendReport> {
        self.append(batch).await
    }

    fn check_accepting(&self) -> Result<()> {
        LogStore::check_accepting(self)
    }
}

impl LogsQuerier for LogStore {
    fn search(&self, search: &LogSearch) -> Result<Vec<LogRecord>> {
        Ok(self.search_with_stats(search)?.0)
    }

    fn search_with_stats(&self, search: &LogSearch) -> Result<(Vec<LogRecord>, SearchStats)> {
        timed("search", || self.search_inner(search))
    }

    fn tiers(&self) -> Option<crate::logs::LogTiers> {
        let (archive_files, archive_bytes, archive_records) = self
            .opts
            .archive
            .as_ref()
            .map(|t| t.archive.totals(archive::SIGNAL))
            .unwrap_or_default();
        Some(crate::logs::LogTiers {
            warm: self.stats(),
            archive_files,
            archive_bytes,
            archive_records,
        })
    }

    fn histogram(&self, request: &HistogramRequest) -> Result<Vec<HistogramBucket>> {
        timed("histogram", || self.histogram_inner(request))
    }

    fn fields(&self, request: &FieldsRequest) -> Result<Vec<FieldSummary>> {
        timed("fields", || self.fields_inner(request))
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<LogBatch>> {
        self.tail.subscribe()
    }
}
