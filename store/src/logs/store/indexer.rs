//! The indexer: one dedicated thread that owns every partition's tantivy `IndexWriter`, adds
//! acknowledged records to them, commits (less often while it is behind), and closes (after
//! a final merge of the small segments, for partitions whose time is over) writers that went
//! idle. It never runs on the async runtime.
//!
//! Appends hand it chunks tagged with their WAL sequence number. Appends finish out of order,
//! so the indexer keeps a reorder buffer and indexes strictly in sequence order; a sequence
//! number whose WAL write failed arrives as a `Skip` (a [`Ticket`] dropped unsent sends it).
//! Indexing in order is what makes a commit's payload exact: after indexing every sequence up
//! to `s`, each writer holds all of its partition's records with sequence `<= s` and none
//! later, so committing it with payload `s` tells replay precisely what it holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use parking_lot::{Mutex, RwLock};
use tantivy::index::{SegmentId, SegmentMeta};
use tantivy::{FutureResult, IndexWriter, TantivyDocument};
use tokio::sync::oneshot;

use super::codec;
use super::merge;
use super::metrics;
use super::now_ns;
use super::partition::{self, aligned_start, tv, CommitPayload, Partition, NANOS_PER_SEC};
use crate::error::{Result, StoreError};
use crate::logs::model::LogBatch;
use crate::logs::schema::LogSchema;

/// A partition whose end is this far in the past is cold: before its writer closes, its
/// segments are merged into one.
const COLD_AFTER_NS: u64 = 60 * NANOS_PER_SEC;
/// How often idle writers and running merges are checked.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(1);
/// How often a put-off commit checks whether the backlog is gone.
const DEFERRED_COMMIT_CHECK: Duration = Duration::from_millis(100);

/// Acknowledged records on their way to the index.
pub(super) struct Chunk {
    /// The records as accepted (also what live-tail subscribers got).
    pub records: Arc<LogBatch>,
    /// What this chunk counts in the queue's memory bound.
    pub bytes: u64,
}

pub(super) enum Msg {
    Chunk {
        seq: u64,
        chunk: Box<Chunk>,
    },
    /// The sequence number was taken but its WAL write failed: nothing to index.
    Skip {
        seq: u64,
    },
    /// Commit every partition with uncommitted records; answers the sequence number every
    /// record up to which is now committed.
    Commit {
        done: oneshot::Sender<Result<u64>>,
    },
    /// Drop these partitions (retention): their writers are dropped uncommitted and they
    /// leave the partition map; the caller deletes the directories.
    Expire {
        starts: Vec<u64>,
        done: oneshot::Sender<Result<()>>,
    },
    /// Commit everything, close every writer and stop.
    Close {
        done: oneshot::Sender<Result<u64>>,
    },
}

/// State the store, the indexer and queries share.
pub(super) struct Shared {
    /// The `partitions/` directory.
    pub root: PathBuf,
    pub schema: LogSchema,
    pub span_secs: u64,
    pub retention_ns: u64,
    /// By start second.
    pub partitions: RwLock<BTreeMap<u64, Arc<Partition>>>,
    /// Bytes of chunks sent to the indexer and not yet indexed.
    pub queue_bytes: AtomicU64,
    /// Set when indexing or a commit failed: the store refuses appends from then on (the
    /// records stay in the WAL and are indexed by replay after a restart).
    pub failed: Mutex<Option<String>>,
    /// Set when the store is dropped without `close`: the indexer stops at once.
    pub abort: AtomicBool,
    /// Writers open (for stats).
    pub open_writers: AtomicU64,
    /// Every record with this sequence number or lower is committed (or was dropped with an
    /// expired partition): the WAL segments holding only such records may be deleted.
    pub committed_seq: AtomicU64,
}

impl Shared {
    /// Whether a partition ending at `end_ns` (exclusive) is past retention at `now`.
    pub fn expired(&self, end_ns: u64, now: u64) -> bool {
        end_ns <= now.saturating_sub(self.retention_ns)
    }

    /// The partition a record of time `t_ns` belongs to: an existing one containing it (the
    /// one starting last), or the start of a new one.
    pub fn route(&self, t_ns: u64) -> (u64, Option<Arc<Partition>>) {
        let secs = t_ns / NANOS_PER_SEC;
        let parts = self.partitions.read();
        if let Some(p) = parts
            .range(..=secs)
            .rev()
            .take(8)
            .map(|(_, p)| p)
            .find(|p| p.contains(t_ns))
        {
            return (p.start_secs, Some(p.clone()));
        }
        let start = aligned_start(t_ns, self.span_secs);
        // a partition of another span (the option changed) may already start there without
        // covering this time: start a new one at the record's own second instead
        if parts.contains_key(&start) {
            return (secs, None);
        }
        (start, None)
    }

    fn fail(&self, what: &str, e: &StoreError) {
        let msg = format!("{what}: {e}");
        tracing::error!(error = %e, "{what}; the log store refuses appends until restarted (the wal keeps every acknowledged record)");
        self.failed.lock().get_or_insert(msg);
    }
}

/// A taken sequence number. Dropped without [`Ticket::send`], it tells the indexer to skip
/// the number, so the reorder buffer never waits for it forever.
pub(super) struct Ticket {
    seq: u64,
    tx: Sender<Msg>,
    sent: bool,
}

impl Ticket {
    pub fn new(seq: u64, tx: Sender<Msg>) -> Ticket {
        Ticket {
            seq,
            tx,
            sent: false,
        }
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Hands the chunk to the indexer; fails when the indexer thread is gone.
    pub fn send(mut self, chunk: Chunk) -> std::result::Result<(), ()> {
        self.sent = true;
        self.tx
            .send(Msg::Chunk {
                seq: self.seq,
                chunk: Box::new(chunk),
            })
            .map_err(|_| ())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.sent {
            let _ = self.tx.send(Msg::Skip { seq: self.seq });
        }
    }
}

/// One open writer.
struct Slot {
    partition: Arc<Partition>,
    writer: IndexWriter<TantivyDocument>,
    /// Records added since the last commit.
    dirty: bool,
    last_write: Instant,
    /// A final merge in progress.
    merge: Option<FutureResult<Option<SegmentMeta>>>,
    /// The final merge ran (or was not needed).
    merged: bool,
}

pub(super) struct IndexerOptions {
    pub writer_bytes: usize,
    pub max_writers: usize,
    pub commit_interval: Duration,
    /// Commits are put off while this many bytes wait for the indexer...
    pub backlog_bytes: u64,
    /// ... for at most this long after the first uncommitted record.
    pub max_commit_delay: Duration,
    pub idle_close: Duration,
}

pub(super) struct Indexer {
    shared: Arc<Shared>,
    opts: IndexerOptions,
    /// The next sequence number to index.
    next_seq: u64,
    /// Chunks (or skips) that arrived ahead of `next_seq`.
    pending: BTreeMap<u64, Option<Box<Chunk>>>,
    writers: HashMap<u64, Slot>,
    /// When a commit is due (set by the first uncommitted record).
    commit_due: Option<Instant>,
    /// When the first uncommitted record was indexed.
    first_uncommitted: Option<Instant>,
    last_maintenance: Instant,
    /// Reused for each record's doc store encoding.
    doc_buf: Vec<u8>,
}

impl Indexer {
    pub fn new(shared: Arc<Shared>, opts: IndexerOptions, next_seq: u64) -> Indexer {
        Indexer {
            shared,
            opts,
            next_seq,
            pending: BTreeMap::new(),
            writers: HashMap::new(),
            commit_due: None,
            first_uncommitted: None,
            last_maintenance: Instant::now(),
            doc_buf: Vec::new(),
        }
    }

    fn failed(&self) -> bool {
        self.shared.failed.lock().is_some()
    }

    fn failed_error(&self) -> StoreError {
        let msg = self.shared.failed.lock().clone().unwrap_or_default();
        StoreError::Unavailable(format!("log indexer failed earlier: {msg}"))
    }

    /// The thread's body: until `Close`, an abort, or every sender gone.
    pub fn run(mut self, rx: Receiver<Msg>) {
        loop {
            if self.shared.abort.load(Ordering::Acquire) {
                break;
            }
            let now = Instant::now();
            let mut wait = MAINTENANCE_EVERY.saturating_sub(now - self.last_maintenance);
            if let Some(due) = self.commit_due {
                wait = wait.min(due.saturating_duration_since(now));
            }
            match rx.recv_timeout(wait) {
                Ok(_) if self.shared.abort.load(Ordering::Acquire) => break,
                Ok(msg) => {
                    if !self.handle(msg) {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                // the store is gone without close: what is not committed is in the WAL
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.commit_due.is_some_and(|d| Instant::now() >= d) {
                if self.defer_commit() {
                    self.commit_due = Some(Instant::now() + DEFERRED_COMMIT_CHECK);
                } else {
                    // a failure is recorded in `shared.failed`
                    let _ = self.commit_all();
                }
            }
            if self.last_maintenance.elapsed() >= MAINTENANCE_EVERY {
                self.last_maintenance = Instant::now();
                self.maintain();
            }
        }
        tracing::debug!("log indexer stopped without close; uncommitted records stay in the wal");
    }

    /// Whether a due commit is put off: while the indexer is behind (at least
    /// `backlog_bytes` of acknowledged records wait for it), until the first uncommitted
    /// record has waited `max_commit_delay`. A commit cuts the segments being built, and
    /// under a backlog one-second commits made many small segments that merges then
    /// rewrote; put off, a segment is cut by the writer's memory budget instead. Records
    /// behind a backlog are late anyway: this adds at most the delay to their wait.
    fn defer_commit(&self) -> bool {
        self.shared.queue_bytes.load(Ordering::Relaxed) >= self.opts.backlog_bytes
            && self
                .first_uncommitted
                .is_some_and(|t| t.elapsed() < self.opts.max_commit_delay)
    }

    /// Returns false once the indexer must stop.
    fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Chunk { seq, chunk } => self.arrive(seq, Some(chunk)),
            Msg::Skip { seq } => self.arrive(seq, None),
            Msg::Commit { done } => {
                let r = self.commit_all();
                let _ = done.send(r);
            }
            Msg::Expire { starts, done } => {
                for s in &starts {
                    // uncommitted records of an expired partition are dropped with it
                    self.writers.remove(s);
                }
                {
                    let mut parts = self.shared.partitions.write();
                    for s in &starts {
                        parts.remove(s);
                    }
                }
                self.writers_changed();
                let _ = done.send(Ok(()));
            }
            Msg::Close { done } => {
                let r = self.close_all();
                let _ = done.send(r);
                return false;
            }
        }
        true
    }

    fn arrive(&mut self, seq: u64, chunk: Option<Box<Chunk>>) {
        if seq < self.next_seq {
            // cannot happen (numbers are taken once); never index anything twice
            tracing::error!(
                seq,
                next = self.next_seq,
                "log chunk with an old sequence number ignored"
            );
            if let Some(c) = chunk {
                self.release(&c);
            }
            return;
        }
        self.pending.insert(seq, chunk);
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() != self.next_seq {
                break;
            }
            let chunk = entry.remove();
            if let Some(c) = chunk {
                if !self.failed() {
                    if let Err(e) = self.index_chunk(self.next_seq, &c) {
                        self.shared.fail("indexing log records failed", &e);
                    }
                }
                self.release(&c);
            }
            self.next_seq += 1;
        }
    }

    fn writers_changed(&self) {
        let n = self.writers.len() as u64;
        self.shared.open_writers.store(n, Ordering::Relaxed);
        metrics::OPEN_WRITERS.set(n as i64);
    }

    fn release(&self, c: &Chunk) {
        let left = self
            .shared
            .queue_bytes
            .fetch_sub(c.bytes, Ordering::AcqRel)
            .saturating_sub(c.bytes);
        metrics::QUEUE_BYTES.set(i64::try_from(left).unwrap_or(i64::MAX));
    }

    fn index_chunk(&mut self, seq: u64, c: &Chunk) -> Result<()> {
        let shared = self.shared.clone();
        let now = now_ns();
        let mut groups: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        let mut last: Option<(u64, Arc<Partition>)> = None;
        for (i, rec) in c.records.records.iter().enumerate() {
            let t = rec.time_unix_nano;
            let start = match &last {
                Some((_, p)) if p.contains(t) => p.start_secs,
                _ => {
                    let (start, p) = self.shared.route(t);
                    if let Some(p) = p {
                        last = Some((start, p));
                    }
                    start
                }
            };
            groups.entry(start).or_default().push(i);
        }
        let mut remaining: BTreeSet<u64> = groups.keys().copied().collect();
        let mut buf = std::mem::take(&mut self.doc_buf);
        for (start, idxs) in groups {
            remaining.remove(&start);
            let end = start
                .saturating_add(self.shared.span_secs)
                .saturating_mul(NANOS_PER_SEC);
            let known_end = self
                .shared
                .partitions
                .read()
                .get(&start)
                .map(|p| p.end_ns());
            if self.shared.expired(known_end.unwrap_or(end), now) {
                metrics::RECORDS_EXPIRED.inc_by(idxs.len() as u64);
                continue;
            }
            // partitions this chunk still has records for are complete only up to seq - 1
            let slot = self.slot(start, seq, &remaining)?;
            for i in &idxs {
                let rec = &c.records.records[*i];
                let doc = partition::build_doc(&shared.schema, rec, &mut buf);
                slot.writer
                    .add_document(doc)
                    .map_err(|e| tv(&slot.partition.dir, e))?;
            }
            slot.dirty = true;
            slot.last_write = Instant::now();
            metrics::RECORDS_INDEXED.inc_by(idxs.len() as u64);
        }
        self.doc_buf = buf;
        if self.commit_due.is_none() {
            self.commit_due = Some(Instant::now() + self.opts.commit_interval);
            self.first_uncommitted = Some(Instant::now());
        }
        Ok(())
    }

    /// The open writer of partition `start`, creating the partition and opening the writer
    /// as needed. Opening beyond `max_writers` first closes the least recently written one,
    /// committed with the payload its contents allow: `seq` when it holds all of its records
    /// of the chunk being indexed, `seq - 1` when `remaining` says some are still to come.
    fn slot(&mut self, start: u64, seq: u64, remaining: &BTreeSet<u64>) -> Result<&mut Slot> {
        if !self.writers.contains_key(&start) {
            while self.writers.len() >= self.opts.max_writers.max(1) {
                let Some(victim) = self
                    .writers
                    .iter()
                    .min_by_key(|(_, s)| (s.dirty, s.last_write))
                    .map(|(k, _)| *k)
                else {
                    break;
                };
                let complete = if remaining.contains(&victim) {
                    seq - 1
                } else {
                    seq
                };
                self.close_writer(victim, complete)?;
            }
            let existing = self.shared.partitions.read().get(&start).cloned();
            let partition = match existing {
                Some(p) => p,
                None => {
                    let p = Arc::new(Partition::create(
                        &self.shared.root,
                        &self.shared.schema,
                        start,
                        self.shared.span_secs,
                    )?);
                    let n = {
                        let mut parts = self.shared.partitions.write();
                        parts.insert(start, p.clone());
                        parts.len()
                    };
                    metrics::PARTITIONS.set(n as i64);
                    p
                }
            };
            let writer = partition.writer(self.opts.writer_bytes)?;
            self.writers.insert(
                start,
                Slot {
                    partition,
                    writer,
                    dirty: false,
                    last_write: Instant::now(),
                    merge: None,
                    merged: false,
                },
            );
            self.writers_changed();
        }
        self.writers
            .get_mut(&start)
            .ok_or_else(|| StoreError::Unavailable("log writer vanished".to_string()))
    }

    /// Commits every writer with uncommitted records; returns the sequence number up to
    /// which everything is committed.
    fn commit_all(&mut self) -> Result<u64> {
        if self.failed() {
            return Err(self.failed_error());
        }
        let seq = self.next_seq - 1;
        let dirty: Vec<u64> = self
            .writers
            .iter()
            .filter(|(_, s)| s.dirty)
            .map(|(k, _)| *k)
            .collect();
        for start in dirty {
            if let Some(slot) = self.writers.get_mut(&start) {
                if let Err(e) = commit_slot(slot, seq) {
                    self.shared.fail("committing a log partition failed", &e);
                    return Err(e);
                }
            }
        }
        self.commit_due = None;
        self.first_uncommitted = None;
        self.shared.committed_seq.fetch_max(seq, Ordering::AcqRel);
        Ok(seq)
    }

    /// Commits the writer if needed (payload `complete`) and closes it.
    fn close_writer(&mut self, start: u64, complete: u64) -> Result<()> {
        let Some(mut slot) = self.writers.remove(&start) else {
            return Ok(());
        };
        self.writers_changed();
        if slot.dirty {
            if let Err(e) = commit_slot(&mut slot, complete) {
                self.shared.fail("committing a log partition failed", &e);
                return Err(e);
            }
        }
        let dir = slot.partition.dir.clone();
        slot.writer
            .wait_merging_threads()
            .map_err(|e| tv(&dir, e))?;
        // merges may have replaced segments since the last reload
        slot.partition.reader.reload().map_err(|e| tv(&dir, e))?;
        tracing::debug!(partition = start, "log partition writer closed");
        Ok(())
    }

    fn close_all(&mut self) -> Result<u64> {
        let seq = self.commit_all()?;
        let starts: Vec<u64> = self.writers.keys().copied().collect();
        let mut first_err = None;
        for s in starts {
            if let Err(e) = self.close_writer(s, seq) {
                tracing::error!(partition = s, error = %e, "closing a log writer failed");
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(seq),
        }
    }

    /// Finishes merges, starts the final merge of cold idle partitions, closes idle writers.
    fn maintain(&mut self) {
        let now = now_ns();
        let mut to_close = Vec::new();
        for (start, slot) in self.writers.iter_mut() {
            if let Some(fut) = slot.merge.as_mut() {
                let Some(result) = fut.now_or_never() else {
                    continue;
                };
                slot.merge = None;
                slot.merged = true;
                match result {
                    Ok(_) => {
                        tracing::info!(partition = start, "cold log partition merged");
                        if let Err(e) = slot.partition.reader.reload() {
                            tracing::warn!(partition = start, error = %e, "log reader reload after merge failed");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(partition = start, error = %e, "merging a cold log partition failed; it stays in several segments")
                    }
                }
            }
            if slot.dirty || slot.last_write.elapsed() < self.opts.idle_close {
                continue;
            }
            let cold = now >= slot.partition.end_ns().saturating_add(COLD_AFTER_NS);
            if cold && !slot.merged {
                slot.merged = true;
                let ids = final_merge_segments(&slot.partition);
                if ids.len() > 1 {
                    tracing::info!(
                        partition = start,
                        segments = ids.len(),
                        "merging the small segments of a cold log partition"
                    );
                    slot.merge = Some(slot.writer.merge(&ids));
                    continue;
                }
            }
            to_close.push(*start);
        }
        for start in to_close {
            let complete = self.next_seq - 1;
            if let Err(e) = self.close_writer(start, complete) {
                tracing::warn!(partition = start, error = %e, "closing an idle log writer failed");
            }
        }
    }
}

/// The segments a cold partition's final merge merges into one: those under
/// [`merge::SMALL_SEGMENT_DOCS`] documents (what commits cut short at the end of the
/// partition's time, or a light load's whole partition). Large segments stay as they are:
/// merging them would rewrite the whole partition once more for a few dozen segments less
/// (see [`merge`]).
fn final_merge_segments(partition: &Partition) -> Vec<SegmentId> {
    let metas = match partition.index.searchable_segment_metas() {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(partition = partition.start_secs, error = %e, "listing the segments of a cold log partition failed");
            return Vec::new();
        }
    };
    metas
        .iter()
        .filter(|m| m.num_docs() < merge::SMALL_SEGMENT_DOCS)
        .map(|m| m.id())
        .collect()
}

fn commit_slot(slot: &mut Slot, seq: u64) -> Result<()> {
    let started = Instant::now();
    let dir = slot.partition.dir.clone();
    let r = (|| -> Result<()> {
        let mut commit = slot.writer.prepare_commit().map_err(|e| tv(&dir, e))?;
        commit.set_payload(
            &CommitPayload {
                seq,
                span_secs: slot.partition.span_secs,
            }
            .to_json(),
        );
        commit.commit().map_err(|e| tv(&dir, e))?;
        slot.partition.committed_seq.store(seq, Ordering::Release);
        slot.dirty = false;
        slot.partition.reader.reload().map_err(|e| tv(&dir, e))
    })();
    metrics::COMMITS
        .with_label_values(&[if r.is_ok() { "ok" } else { "error" }])
        .inc();
    metrics::DURATION
        .with_label_values(&["commit"])
        .observe(started.elapsed().as_secs_f64());
    r
}

/// Indexes records replayed from the WAL at open, partition by partition, each committed
/// with payload `seq` (the highest sequence number in the WAL): every record of the
/// partition up to it is then in the index, those committed before and those replayed.
/// Returns how many records were indexed.
pub(super) fn index_replayed(
    shared: &Shared,
    groups: BTreeMap<u64, Vec<Vec<u8>>>,
    seq: u64,
    writer_bytes: usize,
) -> Result<u64> {
    let mut indexed = 0u64;
    let mut buf = Vec::new();
    for (start, records) in groups {
        let existing = shared.partitions.read().get(&start).cloned();
        let partition = match existing {
            Some(p) => p,
            None => {
                let p = Arc::new(Partition::create(
                    &shared.root,
                    &shared.schema,
                    start,
                    shared.span_secs,
                )?);
                shared.partitions.write().insert(start, p.clone());
                p
            }
        };
        let writer = partition.writer(writer_bytes)?;
        for bytes in &records {
            let rec = match codec::decode_record(bytes) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(partition = start, reason = %e, "undecodable log record in the wal; skipping it");
                    metrics::WAL_RECORDS_SKIPPED.inc();
                    continue;
                }
            };
            let doc = partition::build_doc(&shared.schema, &rec, &mut buf);
            writer
                .add_document(doc)
                .map_err(|e| tv(&partition.dir, e))?;
            indexed += 1;
        }
        let mut slot = Slot {
            partition: partition.clone(),
            writer,
            dirty: true,
            last_write: Instant::now(),
            merge: None,
            merged: false,
        };
        commit_slot(&mut slot, seq)?;
        slot.writer
            .wait_merging_threads()
            .map_err(|e| tv(&partition.dir, e))?;
        partition
            .reader
            .reload()
            .map_err(|e| tv(&partition.dir, e))?;
        metrics::RECORDS_INDEXED.inc_by(records.len() as u64);
    }
    Ok(indexed)
}
