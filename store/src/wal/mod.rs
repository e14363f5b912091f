//! Segmented, checksummed write-ahead log with group commit.
//!
//! Write path: [`Wal::append`] queues the payload and waits; one writer thread
//! ([`writer`]) drains the queue, frames every record ([`format`]), writes them with one
//! call, fsyncs once per the [`FsyncPolicy`](crate::config::FsyncPolicy), then acknowledges
//! all of them. Segments roll over past `segment_size_bytes` or on [`Wal::rotate`]; the
//! owner deletes segments whose data it has persisted elsewhere with
//! [`Wal::remove_segments_upto`].
//!
//! Read path: only at [`Wal::open`] ([`replay`]), which hands every valid record to the
//! caller in order and cuts a torn tail. Appends after open go to a new segment, never after
//! a cut tail. The on-disk format is specified in `docs/format/wal.md`.

mod format;
mod metrics;
mod replay;
mod writer;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use crate::config::WalOptions;
use crate::error::{Result, StoreError};
use crate::fsutil::sync_dir;
use metrics::WalMetrics;
use writer::{Request, Writer};

pub use format::MAX_RECORD_BYTES;

/// Segment ids grow by one per segment, starting at 1; a higher id holds later records.
pub type SegmentId = u64;

/// A write-ahead log in one directory. `Send + Sync`; share it as `Arc<Wal>`.
pub struct Wal {
    shared: Arc<Shared>,
}

/// State shared between the [`Wal`] handle and its writer thread.
pub(crate) struct Shared {
    dir: PathBuf,
    name: String,
    opts: WalOptions,
    queue: Mutex<Queue>,
    wake: Condvar,
    files: Mutex<Files>,
    metrics: WalMetrics,
}

#[derive(Default)]
struct Queue {
    requests: Vec<Request>,
    /// Appends queued or being written, not yet answered.
    pending_appends: usize,
    /// A close was requested: new appends are refused.
    closing: bool,
    /// The writer thread has exited.
    stopped: bool,
}

/// The segment files on disk and their sizes.
#[derive(Default)]
struct Files {
    sizes: BTreeMap<SegmentId, u64>,
    /// The segment the writer appends to; never deleted.
    active: Option<SegmentId>,
}

impl Shared {
    fn segment_created(&self, id: SegmentId, size: u64) {
        let mut files = self.files.lock();
        files.sizes.insert(id, size);
        files.active = Some(id);
        self.metrics
            .bytes
            .set(saturating_i64(files.sizes.values().sum()));
    }

    fn set_segment_size(&self, id: SegmentId, size: u64) {
        let mut files = self.files.lock();
        if let Some(s) = files.sizes.get_mut(&id) {
            *s = size;
        }
        self.metrics
            .bytes
            .set(saturating_i64(files.sizes.values().sum()));
    }

    fn finished_appends(&self, n: usize) {
        let mut q = self.queue.lock();
        q.pending_appends = q.pending_appends.saturating_sub(n);
    }

    /// Called by the writer on exit: answers whatever is still queued.
    fn stopped(&self) {
        let left = {
            let mut q = self.queue.lock();
            q.stopped = true;
            q.closing = true;
            q.pending_appends = 0;
            std::mem::take(&mut q.requests)
        };
        for request in left {
            match request {
                Request::Append { done, .. } | Request::Rotate { done } => {
                    let _ = done.send(Err(closed_error()));
                }
                Request::Close { done } => {
                    let _ = done.send(Ok(()));
                }
            }
        }
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn closed_error() -> StoreError {
    StoreError::Unavailable("wal is closed".to_string())
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("wal writer stopped before answering".to_string())
}

impl Wal {
    /// Opens the WAL in `opts.dir` (creating it), first replaying every valid record of every
    /// existing segment in order through `on_record(segment_id, payload)`.
    ///
    /// A torn or corrupt tail in the last segment is logged and truncated away; corruption
    /// in an earlier segment is logged and counted, and the rest of that segment skipped. If
    /// `on_record` fails, open stops and returns its error. Appends then go to a new
    /// segment. Blocking: call from `spawn_blocking` or before serving.
    pub fn open(
        opts: WalOptions,
        on_record: impl FnMut(SegmentId, &[u8]) -> Result<()>,
    ) -> Result<Wal> {
        let dir = opts.dir.clone();
        fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let name = metrics::wal_name(&dir);
        let metrics = WalMetrics::new(&name);
        let sizes = replay::replay(&dir, &metrics, on_record)?;
        let next_id = match sizes.keys().next_back() {
            Some(last) => last.checked_add(1).ok_or_else(|| StoreError::Corrupt {
                path: dir.clone(),
                reason: format!("segment id {last} leaves no room for another segment"),
            })?,
            None => 1,
        };
        metrics.bytes.set(saturating_i64(sizes.values().sum()));
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            name: name.clone(),
            opts,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            files: Mutex::new(Files {
                sizes,
                active: None,
            }),
            metrics,
        });
        let mut writer = Writer::new(Arc::clone(&shared), next_id);
        writer.start()?;
        std::thread::Builder::new()
            .name(format!("wal-{name}"))
            .spawn(move || writer.run())
            .map_err(|e| StoreError::io(&dir, e))?;
        tracing::info!(wal = %name, dir = %dir.display(), segment = next_id, "wal opened");
        Ok(Wal { shared })
    }

    /// Appends one record and resolves once it is durable per the fsync policy; returns the
    /// segment it went into. Refused at once with `Overloaded` when more than
    /// `max_pending_appends` appends are waiting, and with `Unavailable` after `close`.
    pub async fn append(&self, payload: Vec<u8>) -> Result<SegmentId> {
        let rx = self.enqueue_append(payload)?;
        rx.await.unwrap_or_else(|_| Err(writer_gone()))
    }

    /// [`Wal::append`] for callers on a plain thread (not inside an async task: it blocks).
    pub fn append_blocking(&self, payload: Vec<u8>) -> Result<SegmentId> {
        let rx = self.enqueue_append(payload)?;
        futures::executor::block_on(rx).unwrap_or_else(|_| Err(writer_gone()))
    }

    fn enqueue_append(&self, payload: Vec<u8>) -> Result<oneshot::Receiver<Result<SegmentId>>> {
        if payload.is_empty() {
            return Err(StoreError::BadRequest(
                "wal record payload is empty".to_string(),
            ));
        }
        if payload.len() as u64 > MAX_RECORD_BYTES {
            return Err(StoreError::BadRequest(format!(
                "wal record of {} bytes exceeds the limit of {MAX_RECORD_BYTES} bytes",
                payload.len()
            )));
        }
        let (done, rx) = oneshot::channel();
        let mut q = self.shared.queue.lock();
        if q.closing {
            return Err(closed_error());
        }
        let limit = self.shared.opts.max_pending_appends.max(1);
        if q.pending_appends >= limit {
            return Err(StoreError::Overloaded(format!(
                "{} wal appends already waiting (limit {limit})",
                q.pending_appends
            )));
        }
        q.pending_appends += 1;
        q.requests.push(Request::Append { payload, done });
        drop(q);
        self.shared.wake.notify_one();
        Ok(rx)
    }

    /// Closes the current segment (fsynced) and starts a new one; returns the id of the
    /// segment just closed. Every record appended before this returns is in a segment <= that
    /// id; every later one in a greater id.
    pub async fn rotate(&self) -> Result<SegmentId> {
        let (done, rx) = oneshot::channel();
        {
            let mut q = self.shared.queue.lock();
            if q.closing {
                return Err(closed_error());
            }
            q.requests.push(Request::Rotate { done });
        }
        self.shared.wake.notify_one();
        rx.await.unwrap_or_else(|_| Err(writer_gone()))
    }

    /// Deletes every segment with id <= `upto` except the active one, then fsyncs the
    /// directory. Blocking (file deletions): fine from a flush task's `spawn_blocking`.
    pub fn remove_segments_upto(&self, upto: SegmentId) -> Result<()> {
        let victims: Vec<(SegmentId, u64)> = {
            let mut files = self.shared.files.lock();
            let active = files.active;
            let ids: Vec<SegmentId> = files
                .sizes
                .range(..=upto)
                .map(|(id, _)| *id)
                .filter(|id| Some(*id) != active)
                .collect();
            ids.into_iter()
                .filter_map(|id| files.sizes.remove(&id).map(|s| (id, s)))
                .collect()
        };
        if victims.is_empty() {
            return Ok(());
        }
        let mut first_error = None;
        let mut failed = Vec::new();
        for (id, size) in victims {
            let path = format::segment_path(&self.shared.dir, id);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    failed.push((id, size));
                    first_error.get_or_insert(StoreError::io(&path, e));
                }
            }
        }
        {
            let mut files = self.shared.files.lock();
            files.sizes.extend(failed);
            self.shared
                .metrics
                .bytes
                .set(saturating_i64(files.sizes.values().sum()));
        }
        sync_dir(&self.shared.dir)?;
        match first_error {
            Some(e) => Err(e),
            None => {
                tracing::debug!(wal = %self.shared.name, upto, "wal segments removed");
                Ok(())
            }
        }
    }

    /// Writes and fsyncs everything pending, then stops the writer. Idempotent.
    pub async fn close(&self) -> Result<()> {
        let (done, rx) = oneshot::channel();
        {
            let mut q = self.shared.queue.lock();
            if q.stopped {
                return Ok(());
            }
            q.closing = true;
            q.requests.push(Request::Close { done });
        }
        self.shared.wake.notify_one();
        rx.await.unwrap_or(Ok(()))
    }

    /// Total bytes of all segment files on disk.
    pub fn size_bytes(&self) -> u64 {
        self.shared.files.lock().sizes.values().sum()
    }

    /// Ids of the segments on disk, ascending.
    pub fn segments(&self) -> Vec<SegmentId> {
        self.shared.files.lock().sizes.keys().copied().collect()
    }

    /// The directory this WAL lives in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

impl Drop for Wal {
    /// Stops the writer thread (after it writes and fsyncs what is queued) when the WAL is
    /// dropped without `close`, so no thread or file handle outlives it.
    fn drop(&mut self) {
        let mut q = self.shared.queue.lock();
        if q.stopped {
            return;
        }
        q.closing = true;
        let (done, _ignored) = oneshot::channel();
        q.requests.push(Request::Close { done });
        drop(q);
        self.shared.wake.notify_one();
    }
}

#[cfg(test)]
mod tests;
