//! The WAL's single writer thread and its group commit.
//!
//! Appenders only push a request onto a queue and wait for the answer. The writer takes the
//! whole queue at once, frames every record into one buffer, writes it with one `write_all`,
//! fsyncs once (per the policy) and then answers every request of the batch. Under load a
//! batch grows by itself, so fsyncs per record fall as concurrency rises.
//!
//! After an I/O error the whole batch is answered with that error and the segment is
//! abandoned; the next batch starts a fresh segment, so a full disk that frees up heals
//! without a restart. Bytes of a failed batch that did reach the abandoned segment are
//! either complete records (replayed: at-least-once, never lost) or a torn tail that replay
//! skips.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::config::FsyncPolicy;
use crate::error::{Result, StoreError};
use crate::fsutil::sync_dir;
use crate::wal::format;
use crate::wal::{SegmentId, Shared};

/// What appenders ask of the writer.
pub(crate) enum Request {
    Append {
        payload: Vec<u8>,
        done: oneshot::Sender<Result<SegmentId>>,
    },
    Rotate {
        done: oneshot::Sender<Result<SegmentId>>,
    },
    Close {
        done: oneshot::Sender<Result<()>>,
    },
}

/// An answer owed once the batch is durable.
enum Ack {
    Id(oneshot::Sender<Result<SegmentId>>, SegmentId),
    Unit(oneshot::Sender<Result<()>>),
}

impl Ack {
    fn send(self, err: Option<&StoreError>) {
        // A dropped receiver means the caller stopped waiting (its future was cancelled);
        // the record is still in the log, so there is nobody left to tell.
        match (self, err) {
            (Ack::Id(tx, id), None) => {
                let _ = tx.send(Ok(id));
            }
            (Ack::Id(tx, _), Some(e)) => {
                let _ = tx.send(Err(duplicate_error(e)));
            }
            (Ack::Unit(tx), None) => {
                let _ = tx.send(Ok(()));
            }
            (Ack::Unit(tx), Some(e)) => {
                let _ = tx.send(Err(duplicate_error(e)));
            }
        }
    }
}

/// StoreError is not Clone (io::Error is not); every waiter of a failed batch gets an
/// equivalent copy.
fn duplicate_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Io { path, source } => StoreError::Io {
            path: path.clone(),
            source: io::Error::new(source.kind(), source.to_string()),
        },
        other => StoreError::Unavailable(other.to_string()),
    }
}

struct Segment {
    id: SegmentId,
    path: PathBuf,
    file: File,
    size: u64,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    current: Option<Segment>,
    next_id: SegmentId,
    /// Written since the last fsync.
    dirty: bool,
    last_sync: Instant,
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>, next_id: SegmentId) -> Self {
        Writer {
            shared,
            current: None,
            next_id,
            dirty: false,
            last_sync: Instant::now(),
            buf: Vec::new(),
        }
    }

    /// Creates the first segment. Called by `Wal::open` before the thread starts so that
    /// a WAL that cannot write fails to open instead of failing every append.
    pub(crate) fn start(&mut self) -> Result<()> {
        self.segment().map(|_| ())
    }

    /// The thread body: serve batches until a close request (or the `Wal` is dropped).
    pub(crate) fn run(mut self) {
        loop {
            let batch = self.next_batch();
            if batch.is_empty() {
                // Woken by the interval timer.
                if let Err(e) = self.sync() {
                    tracing::warn!(wal = %self.shared.name, error = %e, "interval fsync of the wal failed");
                    self.abandon_segment();
                }
                continue;
            }
            if self.process(batch) {
                break;
            }
        }
        self.shared.stopped();
        tracing::debug!(wal = %self.shared.name, "wal writer stopped");
    }

    /// Waits for requests; returns an empty batch when an interval fsync is due.
    fn next_batch(&mut self) -> Vec<Request> {
        let mut q = self.shared.queue.lock();
        loop {
            if !q.requests.is_empty() {
                return std::mem::take(&mut q.requests);
            }
            match self.shared.opts.fsync {
                FsyncPolicy::Interval(every) if self.dirty => {
                    let due = self.last_sync + every;
                    if Instant::now() >= due {
                        return Vec::new();
                    }
                    self.shared.wake.wait_until(&mut q, due);
                }
                _ => self.shared.wake.wait(&mut q),
            }
        }
    }

    /// Handles one batch; returns true when the writer must stop.
    fn process(&mut self, batch: Vec<Request>) -> bool {
        let mut acks = Vec::with_capacity(batch.len());
        let mut appends = 0usize;
        let mut requests = batch.into_iter();
        let mut stop = false;
        let mut failure = None;
        for request in requests.by_ref() {
            if matches!(request, Request::Append { .. }) {
                appends += 1;
            }
            match self.step(request, &mut acks) {
                Ok(true) => {
                    stop = true;
                    break;
                }
                Ok(false) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() && !stop {
            let force = matches!(self.shared.opts.fsync, FsyncPolicy::Always);
            if let Err(e) = self.commit(force) {
                failure = Some(e);
            }
        }
        if let Some(e) = &failure {
            tracing::error!(wal = %self.shared.name, error = %e, requests = acks.len(), "wal write failed; failing the batch");
            self.abandon_segment();
        } else {
            self.shared.metrics.appends.inc_by(appends as u64);
        }
        for ack in acks {
            ack.send(failure.as_ref());
        }
        // Requests left after a close or a failure were never attempted.
        for request in requests {
            match request {
                Request::Append { done, .. } => {
                    appends += 1;
                    let _ = done.send(Err(left_over_error(stop, failure.as_ref())));
                }
                Request::Rotate { done } => {
                    let _ = done.send(Err(left_over_error(stop, failure.as_ref())));
                }
                Request::Close { done } => {
                    let _ = done.send(Ok(()));
                }
            }
        }
        self.shared.finished_appends(appends);
        stop
    }

    /// Stages one request; returns true for a close.
    fn step(&mut self, request: Request, acks: &mut Vec<Ack>) -> Result<bool> {
        match request {
            Request::Append { payload, done } => {
                let id = match self.segment_for(format::framed_len(payload.len())) {
                    Ok(id) => id,
                    Err(e) => {
                        let _ = done.send(Err(duplicate_error(&e)));
                        return Err(e);
                    }
                };
                acks.push(Ack::Id(done, id));
                format::encode_record(&mut self.buf, &payload);
                Ok(false)
            }
            Request::Rotate { done } => {
                let closed = match self.segment() {
                    Ok(seg) => seg.id,
                    Err(e) => {
                        let _ = done.send(Err(duplicate_error(&e)));
                        return Err(e);
                    }
                };
                acks.push(Ack::Id(done, closed));
                self.roll(true)?;
                Ok(false)
            }
            Request::Close { done } => {
                acks.push(Ack::Unit(done));
                self.commit(true)?;
                Ok(true)
            }
        }
    }

    /// The segment a record of `framed` bytes goes into, rolling over when it would push the
    /// current one past `segment_size_bytes` (a segment with no records takes any record, so
    /// one larger than the limit still gets written).
    fn segment_for(&mut self, framed: u64) -> Result<SegmentId> {
        let limit = self.shared.opts.segment_size_bytes;
        let staged = self.buf.len() as u64;
        let seg = self.segment()?;
        let end = seg.size + staged;
        if end > format::SEGMENT_HEADER_LEN && end + framed > limit {
            let sync = !matches!(self.shared.opts.fsync, FsyncPolicy::Never);
            return self.roll(sync);
        }
        Ok(seg.id)
    }

    /// Writes the staged buffer and fsyncs when forced or when the interval is due.
    fn commit(&mut self, force_sync: bool) -> Result<()> {
        if !self.buf.is_empty() {
            let seg = match self.current.as_mut() {
                Some(seg) => seg,
                None => {
                    return Err(StoreError::Unavailable(
                        "wal has no open segment for staged records".to_string(),
                    ))
                }
            };
            seg.file
                .write_all(&self.buf)
                .map_err(|e| StoreError::io(&seg.path, e))?;
            seg.size += self.buf.len() as u64;
            self.dirty = true;
            self.buf.clear();
            let (id, size) = (seg.id, seg.size);
            self.shared.set_segment_size(id, size);
        }
        let interval_due = match self.shared.opts.fsync {
            FsyncPolicy::Interval(every) => self.last_sync.elapsed() >= every,
            _ => false,
        };
        if force_sync || interval_due {
            self.sync()?;
        }
        Ok(())
    }

    /// fsyncs the current segment if anything was written since the last fsync.
    fn sync(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if let Some(seg) = &self.current {
            let started = Instant::now();
            seg.file
                .sync_data()
                .map_err(|e| StoreError::io(&seg.path, e))?;
            self.shared.metrics.fsyncs.inc();
            self.shared
                .metrics
                .fsync_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Closes the current segment (writing what is staged, fsyncing unless told not to) and
    /// opens the next; returns the id of the new segment.
    fn roll(&mut self, sync: bool) -> Result<SegmentId> {
        self.commit(sync)?;
        self.current = None;
        Ok(self.segment()?.id)
    }

    /// The open segment, creating the next one if there is none.
    fn segment(&mut self) -> Result<&mut Segment> {
        if self.current.is_none() {
            let seg = self.create_segment()?;
            self.current = Some(seg);
        }
        match self.current.as_mut() {
            Some(seg) => Ok(seg),
            None => Err(StoreError::Unavailable(
                "wal segment vanished after creation".to_string(),
            )),
        }
    }

    fn create_segment(&mut self) -> Result<Segment> {
        let id = self.next_id;
        // Whatever happens below, this id is used up: a retry never meets a half-made file.
        self.next_id = id.checked_add(1).ok_or_else(|| StoreError::Corrupt {
            path: self.shared.dir.clone(),
            reason: "wal segment ids exhausted".to_string(),
        })?;
        let path = format::segment_path(&self.shared.dir, id);
        let io_err = |e| StoreError::io(&path, e);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err)?;
        file.write_all(&format::segment_header()).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        sync_dir(&self.shared.dir)?;
        self.shared.segment_created(id, format::SEGMENT_HEADER_LEN);
        self.dirty = false;
        tracing::debug!(wal = %self.shared.name, segment = id, "wal segment started");
        Ok(Segment {
            id,
            path,
            file,
            size: format::SEGMENT_HEADER_LEN,
        })
    }

    /// Drops the current segment after a failure; the next request starts a new one.
    fn abandon_segment(&mut self) {
        self.buf.clear();
        if let Some(seg) = self.current.take() {
            // Best effort: acknowledged records of earlier batches (interval policy) should
            // still reach the disk.
            let _ = seg.file.sync_data();
            if let Ok(meta) = seg.file.metadata() {
                self.shared.set_segment_size(seg.id, meta.len());
            }
        }
        self.dirty = false;
    }
}

fn left_over_error(stopped: bool, failure: Option<&StoreError>) -> StoreError {
    match failure {
        Some(e) if !stopped => duplicate_error(e),
        _ => StoreError::Unavailable("wal is closed".to_string()),
    }
}
