//! The metrics time-series database.
//!
//! Files by concern:
//! * [`chunk`]: Gorilla (XOR) chunk encoding; [`index`]: interned labels, postings and
//!   matcher evaluation; [`head`]: in-memory series and the ordering check;
//!   `head_chunks`: the head's closed chunks on disk (`chunks_head/`);
//!   [`wal_records`]: WAL record encoding; [`commit`]: the thread that writes WAL records in
//!   apply order; [`block`]: immutable on-disk blocks; [`compact`]: merging small blocks
//!   into larger ones; [`validate`]: limits.
//!
//! Write path: [`MetricsAppender::append`] checks each series against the limits and each
//! sample against the age window, then, under the head lock, finds or creates each series,
//! applies the ordering policy below, appends accepted samples to the head and queues one WAL
//! payload for them; it returns once the commit thread reports the payload durable.
//! [`MetricsAppender::append_raw`] is the same path over a [`RawMetricBatch`]: a known
//! series is found by hashing and comparing its borrowed label text against the series'
//! one-buffer key, so only new series allocate.
//!
//! Ordering policy, per series: a sample older than the newest stored one is rejected as
//! `out_of_order`; one at the same timestamp with identical value bits is a duplicate,
//! counted and silently ignored; one at the same timestamp with a different value is
//! rejected as `duplicate_timestamp`. The newest timestamp survives flushes and restarts
//! (it is recovered from blocks when a series is recreated). Staleness markers are ordinary
//! values, stored bit-exactly.
//!
//! Accepted samples are visible to queries as soon as they are in the head, a moment before
//! the WAL write is durable; if that write fails, the append returns an error although the
//! samples remain in the head (and reach the next block).
//!
//! Flush: under the head lock, on a blocking thread (it walks every series), the head's
//! chunks are frozen (still queryable) and a WAL rotation is queued with a dump of every
//! live series; a block is written from the frozen
//! chunks in `spawn_blocking`, loaded, the frozen chunks dropped, and the WAL segments up to
//! the rotated one deleted. The block's `meta.json` names that segment, so after a crash
//! between block write and WAL deletion, replay skips those segments instead of
//! duplicating their samples.
//!
//! Read path: postings intersection over the head and every overlapping block, decoding
//! only chunks overlapping the range, merged per series by timestamp without duplicates.
//! Closed head chunks are located under the head lock and read from their file after it.
//! Archived hours (the cold tier, [`archive`]) are read from their Parquet files and merged
//! the same way, oldest source first.
//!
//! Tiers: blocks whose newest sample is older than `retention` (the warm window) move to the
//! archive when one is configured, else they are deleted; see [`archive`] for the move.

mod archive;
pub mod block;
pub mod chunk;
mod commit;
mod compact;
pub mod head;
mod head_chunks;
pub mod index;
mod metrics;
mod validate;
pub mod wal_records;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::RwLock;
use tokio::sync::{oneshot, Notify};

use crate::clock::{duration_ms, now_ms};
use crate::config::{MetricsStoreOptions, WalOptions};
use crate::contract::{
    AppendReport, LabelMatcher, LazySeries, MetricsAppender, MetricsQuerier, ReadCache,
    RejectReason, RollupAggregate, RollupSelection, SampleSource,
};
use crate::error::{Result, StoreError};
use crate::model::{
    Labels, MetricBatch, MetricMetadata, MetricType, RawMetricBatch, RawSeriesRef, Sample, Series,
};
use crate::wal::{SegmentId, Wal};
use block::Block;
use commit::{CommitQueue, Job};
use head::{Head, Verdict};
use index::{hash_label_run, hash_labels, postings_for_matchers, IndexReader};
use wal_records::{PayloadBuilder, RecordSink};

/// Size and shape of the store, for `/metrics` and status endpoints.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoreStats {
    pub series: u64,
    pub head_samples: u64,
    pub blocks: u64,
    pub wal_bytes: u64,
    pub block_bytes: u64,
    /// Approximate heap bytes of the head (series, chunks, index).
    pub head_bytes: u64,
    /// Samples in persisted blocks.
    pub block_samples: u64,
    /// The archive tier: files, bytes and samples its manifest names.
    pub archive_files: u64,
    pub archive_bytes: u64,
    pub archive_samples: u64,
    /// The rollups of archived samples (all resolutions): files, bytes.
    pub rollup_files: u64,
    pub rollup_bytes: u64,
}

const WAL_SEGMENT_BYTES: u64 = 128 * 1024 * 1024;
const MAX_PENDING_APPENDS: usize = 4096;
/// Series dump payloads at rotation are split at this size (the WAL caps records at 64 MiB).
const DUMP_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;
const META_TREE: &str = "metric_metadata";
const STATE_TREE: &str = "state";
const STATE_WAL_COVERED: &[u8] = b"wal_segment_covered";

pub struct MetricsStore {
    options: MetricsStoreOptions,
    /// `Arc` so that flush can take the lock on a blocking thread (see [`Self::with_head`]).
    head: Arc<RwLock<Head>>,
    blocks: Arc<RwLock<Vec<Arc<Block>>>>,
    wal: Arc<Wal>,
    commit: Arc<CommitQueue>,
    meta_db: sled::Db,
    metadata: RwLock<HashMap<String, MetricMetadata>>,
    flush_lock: tokio::sync::Mutex<()>,
    /// Serializes compaction and retention, the two that remove blocks.
    compact_lock: tokio::sync::Mutex<()>,
    closed: AtomicBool,
    shutdown: Notify,
    block_seq: AtomicU64,
    /// When the next move to the archive may be tried after a failure.
    archive_backoff: parking_lot::Mutex<crate::archive::Backoff>,
    /// Whether this process has swept the archive for files a crashed move left unnamed.
    archive_swept: AtomicBool,
}

fn meta_err(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Metadata(format!("{what}: {e}"))
}

fn encode_metadata(m: &MetricMetadata) -> Vec<u8> {
    let v = serde_json::json!({ "type": m.metric_type.as_str(), "help": m.help, "unit": m.unit });
    v.to_string().into_bytes()
}

fn decode_metadata(family: &str, bytes: &[u8]) -> Option<MetricMetadata> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let metric_type = match v.get("type")?.as_str()? {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "gaugehistogram" => MetricType::GaugeHistogram,
        "summary" => MetricType::Summary,
        "info" => MetricType::Info,
        "stateset" => MetricType::StateSet,
        _ => MetricType::Unknown,
    };
    Some(MetricMetadata {
        metric_family: family.to_string(),
        metric_type,
        help: v.get("help")?.as_str()?.to_string(),
        unit: v.get("unit")?.as_str()?.to_string(),
    })
}

/// Loads every block under `dir`, deleting leftovers of interrupted writes and blocks
/// already replaced by a compacted block.
/// Deletes a block directory, renaming it first so a crash mid-delete never leaves a half
/// block that loads.
fn remove_block_dir(blocks_dir: &Path, b: &Block) -> Result<()> {
    let doomed = blocks_dir.join(format!(".del-{}", b.meta.id));
    std::fs::rename(&b.dir, &doomed).map_err(|e| StoreError::io(&b.dir, e))?;
    std::fs::remove_dir_all(&doomed).map_err(|e| StoreError::io(&doomed, e))
}

/// Deletes the local copy of blocks the archive manifest already names: a move killed
/// after its manifest step. Without a readable manifest nothing is deleted (the pass that
/// reads it later does the same).
fn finish_interrupted_moves(
    blocks_dir: &Path,
    archive: &crate::archive::Archive,
    blocks: &mut Vec<Arc<Block>>,
) -> Result<()> {
    let archived = archive.sources(archive::SIGNAL);
    let (moved, keep): (Vec<_>, Vec<_>) = std::mem::take(blocks)
        .into_iter()
        .partition(|b| archived.binary_search(&b.meta.id).is_ok());
    *blocks = keep;
    for b in &moved {
        remove_block_dir(blocks_dir, b)?;
        tracing::info!(block = %b.meta.id, "local copy of an archived block deleted (its move was interrupted)");
    }
    if !moved.is_empty() {
        crate::fsutil::sync_dir(blocks_dir)?;
    }
    Ok(())
}

fn load_blocks(dir: &Path) -> Result<Vec<Arc<Block>>> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let mut blocks = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") || name.starts_with(".del-") {
            tracing::warn!(path = %path.display(), "removing incomplete block directory");
            std::fs::remove_dir_all(&path).map_err(|e| StoreError::io(&path, e))?;
            continue;
        }
        if !path.is_dir() {
            continue;
        }
        // A damaged block refuses the start (as in Prometheus): dropping it silently would
        // lose its samples. A failed read for another reason (permissions) passes through.
        let block = Block::open(&path).map_err(|e| match e {
            StoreError::Corrupt { .. } => damaged_block(dir, &path, &name, &e),
            StoreError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                damaged_block(dir, &path, &name, &e)
            }
            e => e,
        })?;
        blocks.push(Arc::new(block));
    }
    blocks.sort_by(|a, b| a.meta.id.cmp(&b.meta.id));
    compact::remove_replaced(dir, blocks)
}

/// The error for a block that cannot be loaded, saying how to start without it.
fn damaged_block(dir: &Path, path: &Path, name: &str, e: &StoreError) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: format!(
            "block {name} cannot be loaded ({e}); the store does not start without it. \
             To start without its samples, move the directory out of {} \
             (e.g. `mv {} <somewhere outside the data directory>`) and restart",
            dir.display(),
            path.display()
        ),
    }
}

/// Replays WAL records into the head.
struct Replay<'a> {
    head: &'a mut Head,
    blocks: &'a [Arc<Block>],
    samples: u64,
    dropped: u64,
    unknown_refs: u64,
}

/// The newest sample of `labels` among blocks reaching past `since`, as the head's
/// ordering state for a series it (re)creates.
fn newest_in_blocks(blocks: &[Arc<Block>], labels: &Labels, since: i64) -> (i64, u64) {
    blocks
        .iter()
        .filter(|b| b.meta.max_time >= since)
        .filter_map(|b| b.series_newest(labels))
        .max_by_key(|&(t, _)| t)
        .unwrap_or((i64::MIN, 0))
}

impl RecordSink for Replay<'_> {
    fn series(&mut self, series_ref: u32, labels: Labels) {
        match self.head.labels_of(series_ref) {
            Some(existing) if existing == labels => {}
            Some(existing) => {
                tracing::warn!(series_ref, %existing, %labels, "wal series ref reused for other labels; keeping the first");
            }
            None => {
                let last_t = newest_in_blocks(self.blocks, &labels, i64::MIN);
                self.head
                    .create(Head::hash(&labels), &labels, last_t, Some(series_ref));
            }
        }
    }

    fn sample(&mut self, series_ref: u32, t: i64, v: f64) {
        if self.head.series(series_ref).is_none() {
            self.unknown_refs += 1;
            return;
        }
        match self.head.append(series_ref, t, v) {
            Verdict::Accept => self.samples += 1,
            _ => self.dropped += 1,
        }
    }
}

impl MetricsStore {
    /// Opens (creating if needed) the store: loads blocks, replays the WAL segments they do
    /// not cover into the head, and starts the commit thread. Blocking: call from
    /// `spawn_blocking` or before the runtime starts serving.
    pub fn open(options: MetricsStoreOptions) -> Result<Arc<MetricsStore>> {
        let dir = options.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let started = Instant::now();
        let meta_path = dir.join("meta.sled");
        let meta_db = sled::open(&meta_path)
            .map_err(|e| meta_err(&format!("opening {}", meta_path.display()), e))?;
        let mut metadata = HashMap::new();
        let tree = meta_db
            .open_tree(META_TREE)
            .map_err(|e| meta_err("opening metadata tree", e))?;
        for item in tree.iter() {
            let (k, v) = item.map_err(|e| meta_err("reading metadata", e))?;
            let family = String::from_utf8_lossy(&k).into_owned();
            if let Some(m) = decode_metadata(&family, &v) {
                metadata.insert(family, m);
            }
        }
        let state = meta_db
            .open_tree(STATE_TREE)
            .map_err(|e| meta_err("opening state tree", e))?;
        let sled_covered = state
            .get(STATE_WAL_COVERED)
            .map_err(|e| meta_err("reading wal state", e))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);

        let mut blocks = load_blocks(&dir.join("blocks"))?;
        if let Some(tier) = &options.archive {
            finish_interrupted_moves(&dir.join("blocks"), &tier.archive, &mut blocks)?;
        }
        let covered = blocks
            .iter()
            .map(|b| b.meta.wal_segment_upto)
            .max()
            .unwrap_or(0)
            .max(sled_covered);

        let mut head =
            Head::with_chunk_files(head_chunks::HeadChunks::open(&dir.join("chunks_head"))?);
        let mut replay = Replay {
            head: &mut head,
            blocks: &blocks,
            samples: 0,
            dropped: 0,
            unknown_refs: 0,
        };
        let wal_opts = WalOptions {
            dir: dir.join("wal"),
            fsync: options.fsync,
            segment_size_bytes: WAL_SEGMENT_BYTES,
            max_pending_appends: MAX_PENDING_APPENDS,
        };
        let wal_dir = dir.join("wal");
        // a segment with an undecodable record: the rest of it is skipped
        let mut skipping: Option<SegmentId> = None;
        let wal = Wal::open(wal_opts, |segment: SegmentId, payload: &[u8]| {
            if segment <= covered {
                return Ok(());
            }
            if skipping == Some(segment) {
                metrics::WAL_RECORDS_SKIPPED.inc();
                return Ok(());
            }
            if let Err(e) = wal_records::decode_payload(payload, &mut replay) {
                // The checksum held, so this is a writer bug or a format this build misreads,
                // not a torn write; refusing to start would keep every later sample offline.
                tracing::error!(
                    dir = %wal_dir.display(), segment, reason = %e,
                    "undecodable tsdb record in a wal segment; skipping the rest of the segment"
                );
                metrics::WAL_RECORDS_SKIPPED.inc();
                skipping = Some(segment);
            }
            Ok(())
        })?;
        let (replayed, dropped, unknown) = (replay.samples, replay.dropped, replay.unknown_refs);
        if unknown > 0 {
            tracing::warn!(
                samples = unknown,
                "wal samples for unknown series refs skipped"
            );
        }
        let wal = Arc::new(wal);
        if covered > 0 {
            wal.remove_segments_upto(covered)?;
        }

        let meta_tree = tree.clone();
        let commit = CommitQueue::start(wal.clone(), MAX_PENDING_APPENDS, move |batch| {
            for m in batch {
                if let Err(e) = meta_tree.insert(m.metric_family.as_bytes(), encode_metadata(&m)) {
                    tracing::warn!(family = %m.metric_family, error = %e, "storing metric metadata failed");
                }
            }
        })?;
        tracing::info!(
            dir = %dir.display(),
            blocks = blocks.len(),
            series = head.num_series(),
            samples = replayed,
            dropped,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "metrics store opened"
        );
        let store = MetricsStore {
            options,
            head: Arc::new(RwLock::new(head)),
            blocks: Arc::new(RwLock::new(blocks)),
            wal,
            commit,
            meta_db,
            metadata: RwLock::new(metadata),
            flush_lock: tokio::sync::Mutex::new(()),
            compact_lock: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
            shutdown: Notify::new(),
            block_seq: AtomicU64::new(0),
            archive_backoff: parking_lot::Mutex::new(crate::archive::Backoff::default()),
            archive_swept: AtomicBool::new(false),
        };
        store.update_gauges();
        Ok(Arc::new(store))
    }

    fn blocks_dir(&self) -> PathBuf {
        self.options.dir.join("blocks")
    }

    fn update_gauges(&self) {
        let s = self.stats();
        metrics::HEAD_SERIES.set(s.series as i64);
        metrics::HEAD_SAMPLES.set(s.head_samples as i64);
        metrics::BLOCKS.set(s.blocks as i64);
        metrics::BLOCK_BYTES.set(s.block_bytes as i64);
    }

    /// Persists the head to a block and deletes the WAL segments it covered.
    pub async fn flush(&self) -> Result<()> {
        let _guard = self.flush_lock.lock().await;
        let started = Instant::now();
        let result = self.flush_locked().await;
        match &result {
            Ok(true) => {
                metrics::FLUSHES.with_label_values(&["ok"]).inc();
                metrics::FLUSH_DURATION.observe(started.elapsed().as_secs_f64());
            }
            Ok(false) => metrics::FLUSHES.with_label_values(&["empty"]).inc(),
            Err(e) => {
                metrics::FLUSHES.with_label_values(&["error"]).inc();
                tracing::error!(error = %e, "tsdb flush failed; head data stays in memory and wal");
            }
        }
        self.update_gauges();
        result.map(|_| ())
    }

    /// Runs `f` under the head write lock on a blocking thread: freezing, dumping,
    /// unfreezing and releasing each walk every series, which with a million series would
    /// stall the runtime worker (and every request it serves) for the whole walk.
    async fn with_head<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Head) -> T + Send + 'static,
    ) -> Result<T> {
        let head = Arc::clone(&self.head);
        tokio::task::spawn_blocking(move || f(&mut head.write()))
            .await
            .map_err(|e| StoreError::Unavailable(format!("{what} task failed: {e}")))
    }

    /// Puts the frozen chunks back into the head after a failed flush.
    async fn unfreeze(&self) {
        if let Err(e) = self.with_head("head unfreeze", Head::unfreeze).await {
            tracing::error!(error = %e, "returning frozen chunks to the head failed");
        }
    }

    /// Returns whether a block was written.
    async fn flush_locked(&self) -> Result<bool> {
        let commit = Arc::clone(&self.commit);
        let frozen = self
            .with_head("head freeze", move |head| {
                if head.num_samples() == 0 {
                    return Ok(None);
                }
                let frozen = head.freeze();
                let dump = head.series_dump(DUMP_PAYLOAD_BYTES);
                let (done, rx) = oneshot::channel();
                if let Err(e) = commit.push(Job::Rotate { dump, done }) {
                    head.unfreeze();
                    return Err(e);
                }
                Ok(Some((frozen, rx)))
            })
            .await??;
        let Some((frozen, rotated)) = frozen else {
            return Ok(false);
        };
        let rotated = match rotated.await {
            Ok(Ok(id)) => id,
            Ok(Err(e)) => {
                self.unfreeze().await;
                return Err(e);
            }
            Err(_) => {
                self.unfreeze().await;
                return Err(StoreError::Unavailable(
                    "tsdb commit thread stopped".to_string(),
                ));
            }
        };
        let seq = self.block_seq.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:013}-{:06}", now_ms(), seq % 1_000_000);
        let blocks_dir = self.blocks_dir();
        let written = tokio::task::spawn_blocking(move || -> Result<Block> {
            block::write_block(&blocks_dir, &id, &frozen, rotated)?;
            Block::open(&blocks_dir.join(&id))
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("block writer task failed: {e}")));
        let block = match written.and_then(|r| r) {
            Ok(b) => Arc::new(b),
            Err(e) => {
                self.unfreeze().await;
                return Err(e);
            }
        };
        tracing::info!(
            block = %block.meta.id,
            series = block.meta.num_series,
            samples = block.meta.num_samples,
            bytes = block.meta.size_bytes,
            wal_segment_upto = rotated,
            "head flushed to block"
        );
        let blocks = Arc::clone(&self.blocks);
        let removed = self
            .with_head("head release", move |head| {
                blocks.write().push(block);
                head.release_frozen()
            })
            .await?;
        if removed > 0 {
            tracing::debug!(series = removed, "idle series removed from head");
        }
        let wal = self.wal.clone();
        let db = self.meta_db.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let state = db
                .open_tree(STATE_TREE)
                .map_err(|e| meta_err("opening state tree", e))?;
            state
                .insert(STATE_WAL_COVERED, &rotated.to_be_bytes())
                .map_err(|e| meta_err("recording covered wal segment", e))?;
            db.flush().map_err(|e| meta_err("flushing metadata", e))?;
            wal.remove_segments_upto(rotated)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("wal cleanup task failed: {e}")))??;
        Ok(true)
    }

    /// Deletes blocks whose newest sample is older than the retention period (the store
    /// without an archive; with one, [`MetricsStore::move_old_data`] moves them instead).
    pub async fn apply_retention(&self) -> Result<usize> {
        let _guard = self.compact_lock.lock().await;
        let cutoff = now_ms().saturating_sub(duration_ms(self.options.retention));
        let expired: Vec<Arc<Block>> = self
            .blocks
            .read()
            .iter()
            .filter(|b| b.meta.num_samples > 0 && b.meta.max_time < cutoff)
            .cloned()
            .collect();
        let n = expired.len();
        if n == 0 {
            return Ok(0);
        }
        self.delete_blocks(expired, "deleted by retention").await?;
        self.update_gauges();
        Ok(n)
    }

    /// Takes blocks out of the queryable list, then deletes their directories. The caller
    /// holds `compact_lock`.
    async fn delete_blocks(&self, doomed: Vec<Arc<Block>>, why: &'static str) -> Result<()> {
        self.blocks
            .write()
            .retain(|b| !doomed.iter().any(|d| d.meta.id == b.meta.id));
        let blocks_dir = self.blocks_dir();
        tokio::task::spawn_blocking(move || {
            for b in &doomed {
                remove_block_dir(&blocks_dir, b)?;
                tracing::info!(block = %b.meta.id, max_time = b.meta.max_time, "block {why}");
            }
            crate::fsutil::sync_dir(&blocks_dir)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("block deletion task failed: {e}")))?
    }

    /// Periodic flush, retention and compaction until [`MetricsStore::close`].
    pub fn spawn_background(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let store = Arc::clone(self);
        tokio::spawn(async move {
            let tick = store
                .options
                .flush_interval
                .min(Duration::from_secs(60))
                .max(Duration::from_millis(10));
            let mut last_flush = Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(tick) => {}
                    _ = store.shutdown.notified() => break,
                }
                if store.closed.load(Ordering::Acquire) {
                    break;
                }
                if last_flush.elapsed() >= store.options.flush_interval {
                    last_flush = Instant::now();
                    // errors are logged and counted by flush; the data stays in the head
                    let _ = store.flush().await;
                }
                // errors are logged (and counted) by move_old_data; the blocks stay
                let _ = store.move_old_data().await;
                // errors are logged and counted by compact; the source blocks stay
                let _ = store.compact().await;
            }
        })
    }

    /// Flushes and stops background work. Appends after `close` fail as unavailable.
    pub async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.shutdown.notify_waiters();
        let flushed = self.flush().await;
        let commit = self.commit.clone();
        tokio::task::spawn_blocking(move || commit.stop_and_join())
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("stopping the commit thread failed: {e}"))
            })?;
        self.wal.close().await?;
        let db = self.meta_db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| StoreError::Unavailable(format!("metadata flush task failed: {e}")))?
            .map_err(|e| meta_err("flushing metadata", e))?;
        flushed
    }

    pub fn stats(&self) -> StoreStats {
        let (series, head_samples, head_bytes) = {
            let h = self.head.read();
            (
                h.num_series() as u64,
                h.num_samples(),
                h.heap_bytes() as u64,
            )
        };
        let (archive_files, archive_bytes, archive_samples) = self
            .options
            .archive
            .as_ref()
            .map(|t| t.archive.totals(archive::SIGNAL))
            .unwrap_or_default();
        let (rollup_files, rollup_bytes) = self.options.archive.as_ref().map_or((0, 0), |t| {
            archive::rollup_signals()
                .map(|signal| t.archive.totals(&signal))
                .fold((0, 0), |(f, b), (files, bytes, _)| (f + files, b + bytes))
        });
        let blocks = self.blocks.read();
        StoreStats {
            archive_files,
            archive_bytes,
            archive_samples,
            rollup_files,
            rollup_bytes,
            series,
            head_samples,
            blocks: blocks.len() as u64,
            wal_bytes: self.wal.size_bytes(),
            block_bytes: blocks.iter().map(|b| b.meta.size_bytes).sum(),
            head_bytes,
            block_samples: blocks.iter().map(|b| b.meta.num_samples).sum(),
        }
    }

    fn store_metadata(&self, batch: Vec<MetricMetadata>) {
        let changed: Vec<MetricMetadata> = {
            let known = self.metadata.read();
            batch
                .into_iter()
                .filter(|m| known.get(&m.metric_family) != Some(m))
                .collect()
        };
        if changed.is_empty() {
            return;
        }
        {
            let mut known = self.metadata.write();
            for m in &changed {
                known.insert(m.metric_family.clone(), m.clone());
            }
        }
        // best effort: metadata is advisory and re-sent by every scrape/push
        let _ = self.commit.push(Job::Metadata(changed));
    }
}

impl Drop for MetricsStore {
    /// Without `close` (a crash, a test simulating one): stop the commit thread so the WAL
    /// and sled are released; everything acknowledged is already durable.
    fn drop(&mut self) {
        self.commit.stop_and_join();
    }
}

/// One series of an append, in either batch form: the append path reads labels as borrowed
/// pairs (enough to find a known series) and builds owned [`Labels`] only for a new series
/// or a rejection message.
trait AppendSeries {
    fn pairs(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone;
    /// The pairs' names and values concatenated, if stored that way.
    fn run(&self) -> Option<&str>;
    fn labels(&self) -> Cow<'_, Labels>;
    fn samples(&self) -> &[Sample];
}

impl AppendSeries for Series {
    fn pairs(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone {
        self.labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
    }
    fn run(&self) -> Option<&str> {
        None
    }
    fn labels(&self) -> Cow<'_, Labels> {
        Cow::Borrowed(&self.labels)
    }
    fn samples(&self) -> &[Sample] {
        &self.samples
    }
}

impl AppendSeries for RawSeriesRef<'_> {
    fn pairs(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone {
        RawSeriesRef::labels(self)
    }
    fn run(&self) -> Option<&str> {
        self.label_run()
    }
    fn labels(&self) -> Cow<'_, Labels> {
        Cow::Owned(self.to_labels())
    }
    fn samples(&self) -> &[Sample] {
        self.samples
    }
}

fn reject_sample_age(
    report: &mut AppendReport,
    s: &impl AppendSeries,
    t: i64,
    min_t: i64,
    limits: &crate::config::Limits,
) {
    if t < min_t {
        report.reject(RejectReason::TooOld, 1, || {
            format!(
                "sample of {} at {t} ms is older than max_sample_age ({}s)",
                s.labels(),
                limits.max_sample_age.as_secs()
            )
        });
    } else {
        report.reject(RejectReason::TooFarInFuture, 1, || {
            format!(
                "sample of {} at {t} ms is more than max_future ({}s) ahead",
                s.labels(),
                limits.max_future.as_secs()
            )
        });
    }
}

/// Rejects every sample of a series that has none inside the age window.
fn reject_age(
    report: &mut AppendReport,
    s: &impl AppendSeries,
    min_t: i64,
    limits: &crate::config::Limits,
) {
    for x in s.samples() {
        reject_sample_age(report, s, x.timestamp_ms, min_t, limits);
    }
}

/// Rough WAL bytes per accepted sample (ref delta, time delta, 8 value bytes), to size the
/// payload buffer once.
const PAYLOAD_BYTES_PER_SAMPLE: usize = 12;

impl MetricsStore {
    /// Refuses an append up front when the store is closed or the WAL queue is full.
    fn check_accepting(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(
                "metrics store is closed".to_string(),
            ));
        }
        if self.commit.is_full() {
            return Err(StoreError::Overloaded(format!(
                "{MAX_PENDING_APPENDS} metric appends already waiting for the wal"
            )));
        }
        Ok(())
    }

    /// The shared write path of both batch forms: limits and age checks, the ordering
    /// policy, head append and WAL enqueue under the head lock, then the wait for
    /// durability.
    async fn append_series<S: AppendSeries>(
        &self,
        series: &[S],
        metadata: Vec<MetricMetadata>,
    ) -> Result<AppendReport> {
        let limits = &self.options.limits;
        let now = now_ms();
        let min_t = now.saturating_sub(duration_ms(limits.max_sample_age));
        let max_t = now.saturating_add(duration_ms(limits.max_future));
        let mut report = AppendReport::default();
        // hashing outside the lock keeps the critical section short
        let hashes: Vec<u64> = series
            .iter()
            .map(|s| match s.run() {
                Some(run) => hash_label_run(run, s.pairs()),
                None => hash_labels(s.pairs()),
            })
            .collect();
        let sample_count: usize = series.iter().map(|s| s.samples().len()).sum();

        let mut payload =
            PayloadBuilder::with_capacity(sample_count.saturating_mul(PAYLOAD_BYTES_PER_SAMPLE));
        let (mut ooo, mut dup_ts) = (0u64, 0u64);
        let rx = {
            let mut head = self.head.write();
            let blocks = self.blocks.read();
            for (s, &hash) in series.iter().zip(&hashes) {
                let r = match head.get_ref_pairs(hash, s.pairs(), s.run()) {
                    Some(r) => r,
                    None => {
                        let labels = s.labels();
                        // a series in the head passed these checks when it was created
                        if let Err((reason, msg)) = validate::check_series(&labels, limits) {
                            report.reject(reason, s.samples().len() as u64, || msg);
                            continue;
                        }
                        if !s
                            .samples()
                            .iter()
                            .any(|x| (min_t..=max_t).contains(&x.timestamp_ms))
                        {
                            reject_age(&mut report, s, min_t, limits);
                            continue;
                        }
                        let newest = newest_in_blocks(&blocks, &labels, min_t);
                        let r = head.create(hash, &labels, newest, None);
                        payload.add_series(r, s.pairs());
                        r
                    }
                };
                for x in s.samples() {
                    if x.timestamp_ms < min_t || x.timestamp_ms > max_t {
                        reject_sample_age(&mut report, s, x.timestamp_ms, min_t, limits);
                        continue;
                    }
                    match head.append(r, x.timestamp_ms, x.value) {
                        Verdict::Accept => {
                            payload.add_sample(r, x.timestamp_ms, x.value);
                            report.accepted_samples += 1;
                        }
                        Verdict::Duplicate => {
                            // Logged again so this request's ack waits for a WAL write queued
                            // after the first copy's: that copy may not be durable yet (its
                            // request still waiting on fsync, or its WAL write failed). Replay
                            // drops the second copy as a duplicate.
                            payload.add_sample(r, x.timestamp_ms, x.value);
                            report.duplicate_samples += 1;
                        }
                        Verdict::OutOfOrder => {
                            ooo += 1;
                            report.reject(RejectReason::OutOfOrder, 1, || {
                                let newest = head.series(r).map(|m| m.newest()).unwrap_or(i64::MIN);
                                format!(
                                    "sample of {} at {} ms is older than its newest stored sample ({} ms)",
                                    s.labels(), x.timestamp_ms, newest
                                )
                            });
                        }
                        Verdict::DuplicateTimestamp => {
                            dup_ts += 1;
                            report.reject(RejectReason::DuplicateTimestamp, 1, || {
                                format!(
                                    "sample of {} at {} ms has a different value than the sample already stored at that time",
                                    s.labels(), x.timestamp_ms
                                )
                            });
                        }
                    }
                }
            }
            drop(blocks);
            if payload.is_empty() {
                None
            } else {
                let (done, rx) = oneshot::channel();
                self.commit.push(Job::Append {
                    payload: payload.finish(),
                    done,
                })?;
                Some(rx)
            }
        };
        metrics::SAMPLES_APPENDED.inc_by(report.accepted_samples);
        metrics::DUPLICATES.inc_by(report.duplicate_samples);
        metrics::OUT_OF_ORDER.inc_by(ooo + dup_ts);
        if !metadata.is_empty() {
            self.store_metadata(metadata);
        }
        if let Some(rx) = rx {
            rx.await
                .map_err(|_| StoreError::Unavailable("tsdb commit thread stopped".to_string()))??;
        }
        Ok(report)
    }
}

#[async_trait]
impl MetricsAppender for MetricsStore {
    async fn append(&self, batch: MetricBatch) -> Result<AppendReport> {
        self.check_accepting()?;
        self.append_series(&batch.series, batch.metadata).await
    }

    /// The fast path: known series are found from the batch's borrowed labels, so only new
    /// series allocate.
    async fn append_raw(&self, mut batch: RawMetricBatch) -> Result<AppendReport> {
        self.check_accepting()?;
        let metadata = std::mem::take(&mut batch.metadata);
        let series: Vec<RawSeriesRef<'_>> = batch.iter().collect();
        self.append_series(&series, metadata).await
    }
}

/// Merges per-source sample lists (oldest source first) into one time-ordered list; on equal
/// timestamps the earlier source wins.
fn merge_samples(mut parts: Vec<Vec<Sample>>) -> Vec<Sample> {
    if parts.len() == 1 {
        return parts.pop().unwrap_or_default();
    }
    let mut all: Vec<Sample> = parts.into_iter().flatten().collect();
    all.sort_by_key(|s| s.timestamp_ms);
    all.dedup_by_key(|s| s.timestamp_ms);
    all
}

/// Where one lazily selected series' samples live: archive files (read at selection),
/// any blocks and the head.
enum LazyPart {
    Archived(Vec<Sample>),
    Block(Arc<Block>, u32),
    Head(head::SeriesSnapshot),
}

struct LazySamples {
    parts: Vec<LazyPart>,
    mint: i64,
    maxt: i64,
}

impl SampleSource for LazySamples {
    fn load(&self, cache: &mut ReadCache, out: &mut Vec<Sample>) -> Result<()> {
        let mut decoded = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            let mut samples = Vec::new();
            match part {
                LazyPart::Archived(s) => samples.clone_from(s),
                LazyPart::Block(b, id) => {
                    let key = Arc::as_ptr(b) as usize;
                    b.samples_cached(*id, self.mint, self.maxt, key, cache, &mut samples)?;
                }
                LazyPart::Head(s) => samples = head::decode_snapshot(s, self.mint, self.maxt)?,
            }
            if !samples.is_empty() {
                decoded.push(samples);
            }
        }
        out.extend(merge_samples(decoded));
        Ok(())
    }
}

/// A series read from rollups: its archived windows, then the local samples newer than
/// the last of them, as the synthetic series of `agg` (`archive::rollup::synthesize`).
struct SynthesizedSamples {
    windows: Vec<crate::archive::rollup::Rollup>,
    local: Option<LazySamples>,
    agg: RollupAggregate,
}

impl SampleSource for SynthesizedSamples {
    fn load(&self, cache: &mut ReadCache, out: &mut Vec<Sample>) -> Result<()> {
        let mut raw = Vec::new();
        if let Some(local) = &self.local {
            local.load(cache, &mut raw)?;
        }
        // local samples the rollups already cover are left out (a block seen in both tiers
        // during its move)
        let covered = self.windows.last().map_or(i64::MIN, |r| r.timestamp_ms);
        let newer = raw.partition_point(|s| s.timestamp_ms <= covered);
        out.extend(crate::archive::rollup::synthesize(
            &self.windows,
            &raw[newer..],
            self.agg,
        ));
        Ok(())
    }
}

impl MetricsStore {
    fn overlapping_blocks(&self, mint: i64, maxt: i64) -> Vec<Arc<Block>> {
        self.blocks
            .read()
            .iter()
            .filter(|b| b.overlaps(mint, maxt))
            .cloned()
            .collect()
    }

    fn series_labels(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
        out: &mut BTreeSet<Labels>,
    ) -> Result<()> {
        {
            let head = self.head.read();
            let refs = postings_for_matchers(&*head, matchers);
            out.extend(head.labels_in_range(&refs, mint, maxt));
        }
        for b in self.overlapping_blocks(mint, maxt) {
            for id in postings_for_matchers(&*b, matchers) {
                if b.has_data(id, mint, maxt) {
                    if let Some(l) = b.labels_of(id) {
                        out.insert(l);
                    }
                }
            }
        }
        out.extend(
            self.archived_series(matchers, mint, maxt)?
                .into_iter()
                .map(|(l, _)| l),
        );
        Ok(())
    }

    fn matching_labels(
        &self,
        sets: &[Vec<LabelMatcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<BTreeSet<Labels>> {
        let mut out = BTreeSet::new();
        if sets.is_empty() {
            self.series_labels(&[], mint, maxt, &mut out)?;
        }
        for set in sets {
            self.series_labels(set, mint, maxt, &mut out)?;
        }
        Ok(out)
    }
}

fn index_label_names(idx: &impl IndexReader, out: &mut BTreeSet<String>) {
    for n in idx.postings().names() {
        out.insert(idx.symbols().get(n).to_string());
    }
}

fn index_label_values(idx: &impl IndexReader, name: &str, out: &mut BTreeSet<String>) {
    if let Some(n) = idx.symbols().lookup(name) {
        for (v, _) in idx.postings().values(n) {
            out.insert(idx.symbols().get(v).to_string());
        }
    }
}

impl MetricsStore {
    /// The matching series in `[mint, maxt]` and where their samples are (archive if
    /// `with_archive`, blocks, the head), to be read when loaded.
    fn lazy_parts(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
        with_archive: bool,
    ) -> Result<BTreeMap<Labels, LazySamples>> {
        // the head is snapshotted now (its chunks keep changing); blocks are immutable and
        // read when the series is loaded
        let snaps = {
            let head = self.head.read();
            let refs = postings_for_matchers(&*head, matchers);
            head.snapshot(&refs, mint, maxt)
        };
        let mut parts: BTreeMap<Labels, Vec<LazyPart>> = BTreeMap::new();
        if with_archive {
            for (labels, samples) in self.archived_series(matchers, mint, maxt)? {
                parts
                    .entry(labels)
                    .or_default()
                    .push(LazyPart::Archived(samples));
            }
        }
        for b in self.overlapping_blocks(mint, maxt) {
            for id in postings_for_matchers(&*b, matchers) {
                if !b.has_data(id, mint, maxt) {
                    continue;
                }
                if let Some(l) = b.labels_of(id) {
                    parts
                        .entry(l)
                        .or_default()
                        .push(LazyPart::Block(b.clone(), id));
                }
            }
        }
        for s in snaps {
            parts
                .entry(s.labels.clone())
                .or_default()
                .push(LazyPart::Head(s));
        }
        Ok(parts
            .into_iter()
            .map(|(labels, parts)| (labels, LazySamples { parts, mint, maxt }))
            .collect())
    }
}

impl MetricsQuerier for MetricsStore {
    fn select(&self, matchers: &[LabelMatcher], mint: i64, maxt: i64) -> Result<Vec<Series>> {
        let snaps = {
            let head = self.head.read();
            let refs = postings_for_matchers(&*head, matchers);
            head.snapshot(&refs, mint, maxt)
        };
        let mut parts: BTreeMap<Labels, Vec<Vec<Sample>>> = BTreeMap::new();
        for (labels, samples) in self.archived_series(matchers, mint, maxt)? {
            parts.entry(labels).or_default().push(samples);
        }
        for b in self.overlapping_blocks(mint, maxt) {
            let mut pages = HashMap::new();
            for id in postings_for_matchers(&*b, matchers) {
                if !b.has_data(id, mint, maxt) {
                    continue;
                }
                let mut samples = Vec::new();
                b.samples(id, mint, maxt, &mut pages, &mut samples)?;
                if let (false, Some(l)) = (samples.is_empty(), b.labels_of(id)) {
                    parts.entry(l).or_default().push(samples);
                }
            }
        }
        for s in snaps {
            let samples = head::decode_snapshot(&s, mint, maxt)?;
            if !samples.is_empty() {
                parts.entry(s.labels).or_default().push(samples);
            }
        }
        Ok(parts
            .into_iter()
            .map(|(labels, p)| Series {
                labels,
                samples: merge_samples(p),
            })
            .collect())
    }

    fn select_rollup(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
        resolution_ms: i64,
        agg: RollupAggregate,
    ) -> Result<Option<RollupSelection>> {
        let Some((mut rollups, files)) =
            self.archived_rollups(matchers, mint, maxt, resolution_ms, agg)?
        else {
            return Ok(None);
        };
        let mut local = self.lazy_parts(matchers, mint, maxt, false)?;
        let labels: BTreeSet<Labels> = rollups.keys().chain(local.keys()).cloned().collect();
        let series = labels
            .into_iter()
            .map(|labels| {
                let source = SynthesizedSamples {
                    windows: rollups.remove(&labels).unwrap_or_default(),
                    local: local.remove(&labels),
                    agg,
                };
                LazySeries::deferred(labels, Box::new(source))
            })
            .collect();
        Ok(Some(RollupSelection { series, files }))
    }

    fn select_lazy(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<LazySeries>> {
        Ok(self
            .lazy_parts(matchers, mint, maxt, true)?
            .into_iter()
            .map(|(labels, local)| LazySeries::deferred(labels, Box::new(local)))
            .collect())
    }

    fn series(&self, sets: &[Vec<LabelMatcher>], mint: i64, maxt: i64) -> Result<Vec<Labels>> {
        Ok(self
            .matching_labels(sets, mint, maxt)?
            .into_iter()
            .collect())
    }

    fn label_names(&self, sets: &[Vec<LabelMatcher>], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let mut names = BTreeSet::new();
        if sets.is_empty() {
            // without matchers the index answers directly, as Prometheus does for the head
            index_label_names(&*self.head.read(), &mut names);
            for b in self.overlapping_blocks(mint, maxt) {
                index_label_names(&*b, &mut names);
            }
            for (l, _) in self.archived_series(&[], mint, maxt)? {
                names.extend(l.iter().map(|x| x.name.clone()));
            }
        } else {
            for l in self.matching_labels(sets, mint, maxt)? {
                names.extend(l.iter().map(|x| x.name.clone()));
            }
        }
        Ok(names.into_iter().collect())
    }

    fn label_values(
        &self,
        name: &str,
        sets: &[Vec<LabelMatcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let mut values = BTreeSet::new();
        if sets.is_empty() {
            index_label_values(&*self.head.read(), name, &mut values);
            for b in self.overlapping_blocks(mint, maxt) {
                index_label_values(&*b, name, &mut values);
            }
            for (l, _) in self.archived_series(&[], mint, maxt)? {
                values.extend(l.get(name).map(str::to_string));
            }
        } else {
            for l in self.matching_labels(sets, mint, maxt)? {
                if let Some(v) = l.get(name) {
                    values.insert(v.to_string());
                }
            }
        }
        Ok(values.into_iter().collect())
    }

    fn archive_files(&self, mint: i64, maxt: i64) -> usize {
        self.archive_files_overlapping(mint, maxt)
    }

    fn storage_stats(&self) -> Option<StoreStats> {
        Some(self.stats())
    }

    fn metadata(&self) -> Result<Vec<MetricMetadata>> {
        let mut out: Vec<MetricMetadata> = self.metadata.read().values().cloned().collect();
        out.sort_by(|a, b| a.metric_family.cmp(&b.metric_family));
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
