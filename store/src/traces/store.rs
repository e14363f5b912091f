//! The trace store: WAL + in-memory head + immutable segments.
//!
//! Write path ([`TraceStore::append_spans`]): the batch is encoded once into a WAL payload;
//! the WAL write is awaited (durable per the fsync policy, group commit across appenders);
//! then the payload's bytes go into the head, indexed by trace. An append holds the read
//! side of the *flush gate* from before its WAL write until its spans are in the head, and a
//! flush rotates the WAL and swaps the head under the write side, so every span of the
//! frozen head is in a WAL segment up to the rotated one and every later span in a later
//! segment.
//!
//! Flush: the frozen head stays queryable while it is written to a segment (temp file,
//! fsync, rename) that records the rotated WAL segment id (`wal_upto`); the segment is
//! loaded, the frozen head dropped, and the WAL segments up to `wal_upto` deleted. At open,
//! WAL segments up to the largest `wal_upto` of the loaded segments are skipped, so a crash
//! between the rename and the WAL deletion neither loses nor duplicates spans. A flush that
//! fails leaves its frozen head in memory (queryable, still in the WAL); the next flush
//! writes it first, so segments are always written in WAL order.
//!
//! Read path: a trace id is looked up in the head(s) by hash and in each segment through its
//! Bloom filter and trace index. Search walks the head(s) and the segments' column blocks
//! newest first, stops once no older block can change the newest `limit` traces, then
//! merges each result's partial summaries from every source.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::Notify;

use crate::config::{FsyncPolicy, WalOptions};
use crate::error::{Result, StoreError};
use crate::fsutil::sync_dir;
use crate::traces::head::Head;
use crate::traces::metrics;
use crate::traces::model::{SpanBatch, SpanKind, StoredSpan, TraceId};
use crate::traces::payload;
use crate::traces::query::{Candidates, Filter, Partial};
use crate::traces::segment::{self, PageCache, Segment};
use crate::traces::{SpanAppendReport, TraceQuery, TraceSummary, TracesAppender, TracesQuerier};
use crate::wal::{SegmentId, Wal};

mod archive;

const MAX_PENDING_APPENDS: usize = 4096;
/// In-memory spans (head plus heads being flushed) beyond this many times
/// `max_head_bytes` refuse appends as overloaded: flushes are not keeping up.
const MEMORY_LIMIT_FACTOR: u64 = 3;
/// Retention runs at most this often from the background task.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// Options the trace store is opened with.
#[derive(Clone, Debug)]
pub struct TraceStoreOptions {
    /// Root of the store: `wal/` and `segments/` live below it.
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    /// Segments whose newest span ended longer ago than this are deleted.
    pub retention: Duration,
    /// The head is flushed to a segment once it is this old...
    pub flush_interval: Duration,
    /// ...or holds this many bytes. Appends are refused (overloaded) while more than three
    /// times this waits in memory.
    pub max_head_bytes: u64,
    /// WAL segment size.
    pub wal_segment_bytes: u64,
    /// Where segments go once `retention` (the warm window) is over; `None` deletes them.
    pub archive: Option<crate::config::ArchiveTier>,
}

impl TraceStoreOptions {
    /// Defaults for a store rooted at `dir`: fsync on every append, 7 days retention, flush
    /// every 10 minutes or at 256 MiB.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        TraceStoreOptions {
            dir: dir.into(),
            fsync: FsyncPolicy::Always,
            retention: Duration::from_secs(7 * 24 * 3600),
            flush_interval: Duration::from_secs(600),
            max_head_bytes: 256 * 1024 * 1024,
            wal_segment_bytes: 128 * 1024 * 1024,
            archive: None,
        }
    }
}

/// Size and shape of the store, for `/metrics` and status endpoints.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceStoreStats {
    /// Spans in memory (head and heads being flushed).
    pub head_spans: u64,
    pub head_bytes: u64,
    pub segments: u64,
    pub segment_spans: u64,
    pub segment_bytes: u64,
    pub wal_bytes: u64,
}

/// A head taken out of service by a flush, waiting to become a segment.
#[derive(Clone)]
struct Frozen {
    head: Arc<RwLock<Head>>,
    wal_upto: SegmentId,
}

/// Everything a query reads, swapped atomically by flushes and retention.
struct Sources {
    head: Arc<RwLock<Head>>,
    /// Oldest first.
    frozen: Vec<Frozen>,
    /// By id (write order).
    segments: Vec<Arc<Segment>>,
}

/// A consistent view for one query.
struct Snapshot {
    heads: Vec<Arc<RwLock<Head>>>,
    segments: Vec<Arc<Segment>>,
}

pub struct TraceStore {
    opts: TraceStoreOptions,
    wal: Arc<Wal>,
    /// Appends hold the read side from WAL write to head insert; a flush's rotate-and-swap
    /// holds the write side.
    gate: Arc<tokio::sync::RwLock<()>>,
    sources: RwLock<Sources>,
    flush_lock: tokio::sync::Mutex<()>,
    closed: AtomicBool,
    shutdown: Notify,
    flush_wanted: Notify,
    next_segment: AtomicU64,
    /// Bytes of spans in memory: the head and frozen heads.
    mem_bytes: Arc<AtomicU64>,
    /// Average encoded span size seen, to size payload buffers once.
    span_size_hint: AtomicU64,
    archive_backoff: parking_lot::Mutex<crate::archive::Backoff>,
    /// Whether the archive has been swept of files a crashed move left unnamed.
    archive_swept: AtomicBool,
    archive_heads: parking_lot::Mutex<archive::HeadCache>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn task_failed(what: &str, e: tokio::task::JoinError) -> StoreError {
    StoreError::Unavailable(format!("{what} task failed: {e}"))
}

/// The error for a segment that cannot be loaded, saying how to start without it.
fn damaged_segment(dir: &Path, path: &Path, e: &StoreError) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: format!(
            "trace segment cannot be loaded ({e}); the store does not start without it. \
             To start without its spans, move the file out of {} \
             (e.g. `mv {} <somewhere outside the data directory>`) and restart",
            dir.display(),
            path.display()
        ),
    }
}

/// Loads every segment in `dir`, deleting leftovers of interrupted writes.
fn load_segments(dir: &Path) -> Result<Vec<Arc<Segment>>> {
    let mut segments = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    let mut removed = false;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if segment::is_temp_name(&name) {
            tracing::warn!(path = %path.display(), "removing incomplete trace segment");
            std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
            removed = true;
            continue;
        }
        let Some(id) = segment::parse_file_name(&name) else {
            continue;
        };
        let seg = Segment::open(id, &path).map_err(|e| match e {
            StoreError::Corrupt { .. } => damaged_segment(dir, &path, &e),
            e => e,
        })?;
        segments.push(Arc::new(seg));
    }
    if removed {
        sync_dir(dir)?;
    }
    segments.sort_by_key(|s| s.id);
    Ok(segments)
}

impl TraceStore {
    /// Opens (creating if needed) the store: loads the segments, replays the WAL segments
    /// they do not cover into the head. Blocking: call from `spawn_blocking` or before the
    /// runtime starts serving.
    pub fn open(opts: TraceStoreOptions) -> Result<Arc<TraceStore>> {
        let started = Instant::now();
        if opts.max_head_bytes == 0 || opts.flush_interval.is_zero() {
            return Err(StoreError::BadRequest(format!(
                "trace store needs a positive max_head_bytes and flush_interval (got {} bytes, {:?})",
                opts.max_head_bytes, opts.flush_interval
            )));
        }
        let seg_dir = opts.dir.join("segments");
        std::fs::create_dir_all(&seg_dir).map_err(|e| StoreError::io(&seg_dir, e))?;
        let segments = load_segments(&seg_dir)?;
        let covered = segments.iter().map(|s| s.wal_upto).max().unwrap_or(0);

        let mut head = Head::new();
        let (mut replayed, mut skipped) = (0usize, 0u64);
        let wal_dir = opts.dir.join("wal");
        let wal_opts = WalOptions {
            dir: wal_dir.clone(),
            fsync: opts.fsync,
            segment_size_bytes: opts.wal_segment_bytes,
            max_pending_appends: MAX_PENDING_APPENDS,
        };
        let wal = Wal::open(wal_opts, |wal_segment, record| {
            if wal_segment <= covered {
                return Ok(());
            }
            match head.insert_payload(Bytes::copy_from_slice(record)) {
                Ok(n) => replayed += n,
                Err(e) => {
                    // the checksum held, so this is a writer bug or a format this build
                    // misreads; payloads are self-contained, so only this one is lost
                    tracing::error!(
                        dir = %wal_dir.display(), segment = wal_segment, reason = %e,
                        "undecodable trace wal record; skipping it"
                    );
                    metrics::WAL_RECORDS_SKIPPED.inc();
                    skipped += 1;
                }
            }
            Ok(())
        })?;
        let wal = Arc::new(wal);
        if covered > 0 {
            wal.remove_segments_upto(covered)?;
        }
        let next_segment = segments.last().map(|s| s.id + 1).unwrap_or(1);
        tracing::info!(
            dir = %opts.dir.display(),
            segments = segments.len(),
            replayed_spans = replayed,
            skipped_records = skipped,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "trace store opened"
        );
        let mem = head.bytes();
        let store = TraceStore {
            opts,
            wal,
            gate: Arc::new(tokio::sync::RwLock::new(())),
            sources: RwLock::new(Sources {
                head: Arc::new(RwLock::new(head)),
                frozen: Vec::new(),
                segments,
            }),
            flush_lock: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
            shutdown: Notify::new(),
            flush_wanted: Notify::new(),
            next_segment: AtomicU64::new(next_segment),
            mem_bytes: Arc::new(AtomicU64::new(mem)),
            span_size_hint: AtomicU64::new(512),
            archive_backoff: parking_lot::Mutex::new(crate::archive::Backoff::default()),
            archive_swept: AtomicBool::new(false),
            archive_heads: parking_lot::Mutex::new(archive::HeadCache::default()),
        };
        store.update_gauges();
        Ok(Arc::new(store))
    }

    fn segments_dir(&self) -> PathBuf {
        self.opts.dir.join("segments")
    }

    pub fn stats(&self) -> TraceStoreStats {
        let src = self.sources.read();
        let mut head_spans = src.head.read().num_spans() as u64;
        for f in &src.frozen {
            head_spans += f.head.read().num_spans() as u64;
        }
        TraceStoreStats {
            head_spans,
            head_bytes: self.mem_bytes.load(Ordering::Relaxed),
            segments: src.segments.len() as u64,
            segment_spans: src.segments.iter().map(|s| s.span_count).sum(),
            segment_bytes: src.segments.iter().map(|s| s.size_bytes).sum(),
            wal_bytes: self.wal.size_bytes(),
        }
    }

    fn update_gauges(&self) {
        let s = self.stats();
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        metrics::HEAD_SPANS.set(g(s.head_spans));
        metrics::HEAD_BYTES.set(g(s.head_bytes));
        metrics::SEGMENTS.set(g(s.segments));
        metrics::SEGMENT_SPANS.set(g(s.segment_spans));
        metrics::SEGMENT_BYTES.set(g(s.segment_bytes));
    }

    fn snapshot(&self) -> Snapshot {
        let src = self.sources.read();
        let mut heads: Vec<Arc<RwLock<Head>>> = src.frozen.iter().map(|f| f.head.clone()).collect();
        heads.push(src.head.clone());
        Snapshot {
            heads,
            segments: src.segments.clone(),
        }
    }

    fn check_accepting(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("trace store is closed".to_string()));
        }
        let mem = self.mem_bytes.load(Ordering::Relaxed);
        let limit = self.opts.max_head_bytes.saturating_mul(MEMORY_LIMIT_FACTOR);
        if mem >= limit {
            metrics::OVERLOADED.inc();
            self.flush_wanted.notify_one();
            return Err(StoreError::Overloaded(format!(
                "{mem} bytes of spans wait in memory for a flush (limit {limit})"
            )));
        }
        Ok(())
    }

    async fn append(&self, batch: SpanBatch) -> Result<SpanAppendReport> {
        self.check_accepting()?;
        let started = Instant::now();
        let hint = self.span_size_hint.load(Ordering::Relaxed) as usize;
        let enc = payload::encode_batch(&batch, hint);
        drop(batch);
        let report = SpanAppendReport {
            accepted_spans: enc.accepted,
            rejected_spans: enc.rejected,
            first_rejection: enc.first_rejection,
        };
        metrics::SPANS_REJECTED.inc_by(enc.rejected);
        if enc.payloads.is_empty() {
            return Ok(report);
        }
        let total: usize = enc.payloads.iter().map(Vec::len).sum();
        if let Some(avg) = (total as u64).checked_div(enc.accepted) {
            self.span_size_hint
                .store(avg.clamp(64, 64 * 1024), Ordering::Relaxed);
        }
        let gate = self.gate.clone().read_owned().await;
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("trace store is closed".to_string()));
        }
        // The head Arc cannot change while the gate is held.
        let head = self.sources.read().head.clone();
        let wal = self.wal.clone();
        let mem = self.mem_bytes.clone();
        // A task of its own, so that a caller that stops waiting (a client gone) cannot
        // leave a logged payload out of the head: once in the WAL, the spans are visible
        // and reach the next segment with the rest.
        let task = tokio::spawn(async move {
            let _gate = gate;
            let kept: Vec<Bytes> = enc
                .payloads
                .iter()
                .map(|p| Bytes::copy_from_slice(p))
                .collect();
            let results = if enc.payloads.len() == 1 {
                let mut p = enc.payloads;
                vec![wal.append(p.remove(0)).await]
            } else {
                futures::future::join_all(enc.payloads.into_iter().map(|p| wal.append(p))).await
            };
            let mut first_err = None;
            let mut h = head.write();
            let before = h.bytes();
            let mut added = 0usize;
            for (bytes, r) in kept.into_iter().zip(results) {
                match r {
                    // durable, so visible, even if a sibling payload failed: a restart
                    // would replay it anyway
                    Ok(_) => match h.insert_payload(bytes) {
                        Ok(n) => added += n,
                        Err(e) => {
                            tracing::error!(reason = %e, "a trace payload just encoded does not parse; spans dropped");
                            first_err.get_or_insert(StoreError::Unavailable(format!(
                                "trace payload did not parse after encoding: {e}"
                            )));
                        }
                    },
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            let after = h.bytes();
            mem.fetch_add(after.saturating_sub(before), Ordering::Relaxed);
            metrics::SPANS_APPENDED.inc_by(added as u64);
            (after, first_err)
        });
        let (head_bytes, first_err) = task.await.map_err(|e| task_failed("trace append", e))?;
        if head_bytes >= self.opts.max_head_bytes {
            self.flush_wanted.notify_one();
        }
        metrics::DURATION
            .with_label_values(&["append"])
            .observe(started.elapsed().as_secs_f64());
        match first_err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Writes the head (and any head a failed flush left behind) to segments and deletes
    /// the WAL segments they cover.
    pub async fn flush(&self) -> Result<()> {
        let _guard = self.flush_lock.lock().await;
        let started = Instant::now();
        let result = self.flush_locked().await;
        match &result {
            Ok(true) => {
                metrics::FLUSHES.with_label_values(&["ok"]).inc();
                metrics::DURATION
                    .with_label_values(&["flush"])
                    .observe(started.elapsed().as_secs_f64());
            }
            Ok(false) => metrics::FLUSHES.with_label_values(&["empty"]).inc(),
            Err(e) => {
                metrics::FLUSHES.with_label_values(&["error"]).inc();
                tracing::error!(error = %e, "trace flush failed; spans stay in memory and wal");
            }
        }
        self.update_gauges();
        result.map(|_| ())
    }

    /// Returns whether anything was written.
    async fn flush_locked(&self) -> Result<bool> {
        let mut wrote = self.persist_frozen().await?;
        {
            let _gate = self.gate.write().await;
            let head = self.sources.read().head.clone();
            if head.read().is_empty() {
                return Ok(wrote);
            }
            let rotated = self.wal.rotate().await?;
            let mut src = self.sources.write();
            let old = std::mem::replace(&mut src.head, Arc::new(RwLock::new(Head::new())));
            src.frozen.push(Frozen {
                head: old,
                wal_upto: rotated,
            });
        }
        wrote |= self.persist_frozen().await?;
        Ok(wrote)
    }

    /// Writes every frozen head to a segment, oldest first; stops at the first failure.
    async fn persist_frozen(&self) -> Result<bool> {
        let mut wrote = false;
        loop {
            let Some(frozen) = self.sources.read().frozen.first().cloned() else {
                return Ok(wrote);
            };
            let id = self.next_segment.fetch_add(1, Ordering::Relaxed);
            let dir = self.segments_dir();
            let head = frozen.head.clone();
            let upto = frozen.wal_upto;
            let seg = tokio::task::spawn_blocking(move || -> Result<Segment> {
                let path = segment::write_segment(&dir, id, &head.read(), upto)?;
                Segment::open(id, &path).inspect_err(|_| {
                    // a segment this build cannot read back must not stay: the retry writes
                    // the same spans again under another id
                    let _ = std::fs::remove_file(&path);
                    let _ = sync_dir(&dir);
                })
            })
            .await
            .map_err(|e| task_failed("trace segment writer", e))??;
            let bytes = frozen.head.read().bytes();
            tracing::info!(
                segment = seg.id,
                spans = seg.span_count,
                traces = seg.trace_count,
                bytes = seg.size_bytes,
                wal_segment_upto = upto,
                "trace head flushed to segment"
            );
            {
                let mut src = self.sources.write();
                src.segments.push(Arc::new(seg));
                src.frozen.remove(0);
            }
            self.mem_bytes.fetch_sub(
                bytes.min(self.mem_bytes.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            wrote = true;
            let wal = self.wal.clone();
            tokio::task::spawn_blocking(move || wal.remove_segments_upto(upto))
                .await
                .map_err(|e| task_failed("trace wal cleanup", e))??;
        }
    }

    /// Deletes segments whose newest span ended before now minus the retention; returns how
    /// many.
    pub async fn apply_retention(&self) -> Result<usize> {
        let _guard = self.flush_lock.lock().await;
        let started = Instant::now();
        let retention = u64::try_from(self.opts.retention.as_nanos()).unwrap_or(u64::MAX);
        let expired = self.expired_segments(now_ns().saturating_sub(retention));
        if expired.is_empty() {
            return Ok(0);
        }
        let n = expired.len();
        self.remove_segments(expired, "retention").await?;
        metrics::DURATION
            .with_label_values(&["retention"])
            .observe(started.elapsed().as_secs_f64());
        self.update_gauges();
        Ok(n)
    }

    /// Segments whose newest span ended before `cutoff_ns`, oldest first.
    fn expired_segments(&self, cutoff_ns: u64) -> Vec<Arc<Segment>> {
        self.sources
            .read()
            .segments
            .iter()
            .filter(|s| s.max_end < cutoff_ns)
            .cloned()
            .collect()
    }

    /// Takes segments out of the store and deletes their files. Call with the flush lock
    /// held.
    async fn remove_segments(&self, expired: Vec<Arc<Segment>>, why: &'static str) -> Result<()> {
        // The WAL segments these cover must be gone before they are, or a restart would
        // replay their spans.
        let covered = self
            .sources
            .read()
            .segments
            .iter()
            .map(|s| s.wal_upto)
            .max()
            .unwrap_or(0);
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || wal.remove_segments_upto(covered))
            .await
            .map_err(|e| task_failed("trace wal cleanup", e))??;
        {
            let mut src = self.sources.write();
            src.segments
                .retain(|s| !expired.iter().any(|x| x.id == s.id));
        }
        let dir = self.segments_dir();
        tokio::task::spawn_blocking(move || -> Result<()> {
            for s in expired {
                // readers holding the segment keep reading through their open handle
                std::fs::remove_file(&s.path).map_err(|e| StoreError::io(&s.path, e))?;
                metrics::SEGMENTS_DELETED.inc();
                tracing::info!(
                    segment = s.id,
                    max_end = s.max_end,
                    why,
                    "trace segment deleted"
                );
            }
            sync_dir(&dir)
        })
        .await
        .map_err(|e| task_failed("trace segment removal", e))?
    }

    /// Periodic flush (by age and size) and retention until [`TraceStore::close`].
    pub fn spawn_background(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let store = Arc::clone(self);
        tokio::spawn(async move {
            let tick = store
                .opts
                .flush_interval
                .min(Duration::from_secs(30))
                .max(Duration::from_millis(10));
            let mut last_retention: Option<Instant> = None;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(tick) => {}
                    _ = store.flush_wanted.notified() => {}
                    _ = store.shutdown.notified() => break,
                }
                if store.closed.load(Ordering::Acquire) {
                    break;
                }
                let (age, bytes, empty, pending) = {
                    let src = store.sources.read();
                    let h = src.head.read();
                    (
                        h.created().elapsed(),
                        h.bytes(),
                        h.is_empty(),
                        !src.frozen.is_empty(),
                    )
                };
                let due = !empty
                    && (age >= store.opts.flush_interval || bytes >= store.opts.max_head_bytes);
                if due || pending {
                    // errors are logged and counted by flush; the spans stay in memory
                    let _ = store.flush().await;
                }
                // the head gauges move with every append: refresh them on each tick, not
                // only at flushes
                store.update_gauges();
                // short flush intervals (tests, small setups) move segments as soon as due
                let every = RETENTION_EVERY.min(store.opts.flush_interval);
                if last_retention.is_none_or(|t| t.elapsed() >= every) {
                    last_retention = Some(Instant::now());
                    if let Err(e) = store.move_old_data().await {
                        tracing::error!(error = %e, "trace retention failed");
                    }
                }
            }
        })
    }

    /// Flushes and stops; appends afterwards fail as unavailable.
    pub async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.shutdown.notify_waiters();
        let flushed = self.flush().await;
        self.wal.close().await?;
        flushed
    }

    /// The whole trace's summary, merged over every source.
    fn summary(&self, snap: &Snapshot, id: &TraceId) -> Result<Option<TraceSummary>> {
        let mut whole = Partial::default();
        for seg in &snap.segments {
            if let Some(p) = seg.partial(id)? {
                whole.merge(p);
            }
        }
        for h in &snap.heads {
            if let Some(p) = h.read().partial(id) {
                whole.merge(p);
            }
        }
        if whole.span_count == 0 {
            return Ok(None);
        }
        Ok(Some(whole.into_summary(*id)))
    }

    /// Traces with an error span, over every source (the trace-level error condition).
    fn error_traces(&self, snap: &Snapshot) -> Result<HashSet<TraceId>> {
        let mut out = HashSet::new();
        for seg in &snap.segments {
            seg.error_traces(&mut out)?;
        }
        for h in &snap.heads {
            out.extend(h.read().error_traces.iter().copied());
        }
        Ok(out)
    }

    /// A snapshot with the archived files overlapping `[start_ns, end_ns]` as heads.
    fn snapshot_with_archive(&self, start_ns: u64, end_ns: u64) -> Result<Snapshot> {
        let mut snap = self.snapshot();
        let archived = self.archived_heads(&snap.segments, start_ns, end_ns)?;
        snap.heads.extend(archived);
        Ok(snap)
    }

    fn search_inner(&self, q: &TraceQuery) -> Result<Vec<TraceSummary>> {
        let f = Filter::new(q)?;
        let end = if q.end_unix_nano == 0 {
            u64::MAX
        } else {
            q.end_unix_nano
        };
        let snap = self.snapshot_with_archive(q.start_unix_nano, end)?;
        let errors = match f.error {
            Some(_) => Some(self.error_traces(&snap)?),
            None => None,
        };
        let error_ok = |id: &TraceId| match (&errors, f.error) {
            (Some(set), Some(want)) => set.contains(id) == want,
            _ => true,
        };
        // every unit of work with the newest span start it can hold
        enum Unit<'a> {
            Head(&'a Arc<RwLock<Head>>),
            Block(&'a Arc<Segment>, usize, segment::Resolved),
        }
        let mut units: Vec<(u64, Unit<'_>)> = Vec::new();
        for h in &snap.heads {
            let max = h.read().max_start;
            units.push((max, Unit::Head(h)));
        }
        for seg in &snap.segments {
            let Some(resolved) = seg.resolve(&f) else {
                continue;
            };
            for (block, max) in seg.blocks_for(&f) {
                units.push((max, Unit::Block(seg, block, resolved)));
            }
        }
        units.sort_by_key(|u| std::cmp::Reverse(u.0));
        let mut cands = Candidates::default();
        let mut cache = PageCache::default();
        // the k-th newest start, recomputed only when a unit added candidates
        let mut kth: Option<u64> = None;
        let mut seen = 0usize;
        for (max, unit) in units {
            if cands.changes != seen {
                seen = cands.changes;
                kth = cands.kth_newest(f.limit);
            }
            if kth.is_some_and(|kth| max < kth) {
                break;
            }
            match unit {
                Unit::Head(h) => {
                    h.read()
                        .search(&f, &error_ok, &mut cands)
                        .map_err(|e| StoreError::Corrupt {
                            path: self.opts.dir.join("wal"),
                            reason: format!("span in memory does not decode: {e}"),
                        })?
                }
                Unit::Block(seg, block, resolved) => {
                    seg.search_block(block, &f, resolved, &error_ok, &mut cache, &mut cands)?
                }
            }
        }
        let mut out = Vec::with_capacity(f.limit);
        for (id, _) in cands.sorted().into_iter().take(f.limit) {
            if let Some(s) = self.summary(&snap, &id)? {
                out.push(s);
            }
        }
        out.sort_by(|a, b| {
            b.start_unix_nano
                .cmp(&a.start_unix_nano)
                .then(a.trace_id.cmp(&b.trace_id))
        });
        Ok(out)
    }

    /// Reads back every section of every segment and decodes every span; returns the
    /// number of spans checked. Slow (a full read): for tests and maintenance tools.
    pub fn verify_segments(&self) -> Result<u64> {
        let segments = self.sources.read().segments.clone();
        let mut n = 0;
        for s in segments {
            n += s.verify()?;
        }
        Ok(n)
    }

    fn trace_inner(&self, id: TraceId) -> Result<Vec<StoredSpan>> {
        let snap = self.snapshot();
        let mut out = Vec::new();
        for seg in &snap.segments {
            seg.trace_spans(&id, &mut out)?;
        }
        for h in &snap.heads {
            h.read()
                .trace_spans(&id, &mut out)
                .map_err(|e| StoreError::Corrupt {
                    path: self.opts.dir.join("wal"),
                    reason: format!("span in memory does not decode: {e}"),
                })?;
        }
        self.archived_trace(&snap.segments, id, &mut out)?;
        out.sort_by(|a, b| {
            (a.span.start_unix_nano, a.span.span_id).cmp(&(b.span.start_unix_nano, b.span.span_id))
        });
        // a batch re-sent after a failed (but partly logged) append is stored twice
        out.dedup_by(|a, b| a.span == b.span && a.resource == b.resource);
        Ok(out)
    }
}

#[async_trait]
impl TracesAppender for TraceStore {
    async fn append_spans(&self, batch: SpanBatch) -> Result<SpanAppendReport> {
        self.append(batch).await
    }
}

impl TracesQuerier for TraceStore {
    fn tiers(&self) -> Option<crate::traces::TraceTiers> {
        let (archive_files, archive_bytes, archive_spans) = self
            .opts
            .archive
            .as_ref()
            .map(|t| t.archive.totals(archive::SIGNAL))
            .unwrap_or_default();
        Some(crate::traces::TraceTiers {
            local: self.stats(),
            archive_files,
            archive_bytes,
            archive_spans,
        })
    }

    fn trace(&self, id: TraceId) -> Result<Vec<StoredSpan>> {
        let started = Instant::now();
        let r = self.trace_inner(id);
        metrics::DURATION
            .with_label_values(&["trace"])
            .observe(started.elapsed().as_secs_f64());
        r
    }

    fn search(&self, query: &TraceQuery) -> Result<Vec<TraceSummary>> {
        let started = Instant::now();
        let r = self.search_inner(query);
        metrics::DURATION
            .with_label_values(&["search"])
            .observe(started.elapsed().as_secs_f64());
        r
    }

    fn services(&self, start_unix_nano: u64, end_unix_nano: u64) -> Result<Vec<String>> {
        let snap = self.snapshot_with_archive(start_unix_nano, end_unix_nano)?;
        let mut out = BTreeSet::new();
        for seg in &snap.segments {
            seg.services(start_unix_nano, end_unix_nano, &mut out)?;
        }
        for h in &snap.heads {
            h.read().services(start_unix_nano, end_unix_nano, &mut out);
        }
        Ok(out.into_iter().collect())
    }

    fn operations(
        &self,
        service: &str,
        start_unix_nano: u64,
        end_unix_nano: u64,
    ) -> Result<Vec<(String, SpanKind)>> {
        let snap = self.snapshot_with_archive(start_unix_nano, end_unix_nano)?;
        let mut out = BTreeSet::new();
        for seg in &snap.segments {
            seg.operations(service, start_unix_nano, end_unix_nano, &mut out)?;
        }
        for h in &snap.heads {
            h.read()
                .operations(service, start_unix_nano, end_unix_nano, &mut out);
        }
        Ok(out.into_iter().collect())
    }
}
