//! The commit thread: the one writer of the TSDB's WAL records.
//!
//! Appenders apply their samples to the head and enqueue the matching WAL payload while
//! holding the head lock, so the queue order is the apply order for every series, and
//! replay reproduces the head exactly. This thread drains the queue, concatenates what it
//! found into one WAL append (group commit on top of the WAL's own), waits for durability
//! and answers every waiter. Rotation requests travel through the same queue, so "appended
//! before the rotation" means "in a segment up to the rotated id".

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use crate::error::{Result, StoreError};
use crate::model::MetricMetadata;
use crate::wal::{SegmentId, Wal};

/// Bytes concatenated into one WAL record at most (the WAL allows 64 MiB).
const MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;

pub enum Job {
    Append {
        payload: Vec<u8>,
        done: oneshot::Sender<Result<()>>,
    },
    /// Closes the current segment, then writes `dump` (every live series) first into the new
    /// one, so segments after the rotated one never need an older segment at replay.
    Rotate {
        dump: Vec<Vec<u8>>,
        done: oneshot::Sender<Result<SegmentId>>,
    },
    Metadata(Vec<MetricMetadata>),
    Stop {
        done: oneshot::Sender<()>,
    },
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    stopped: bool,
}

pub struct CommitQueue {
    queue: Mutex<Queue>,
    wake: Condvar,
    max_pending: usize,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl CommitQueue {
    /// Starts the commit thread writing to `wal`; `on_metadata` persists metadata updates.
    pub fn start(
        wal: Arc<Wal>,
        max_pending: usize,
        on_metadata: impl FnMut(Vec<MetricMetadata>) + Send + 'static,
    ) -> Result<Arc<CommitQueue>> {
        let q = Arc::new(CommitQueue {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            max_pending,
            thread: Mutex::new(None),
        });
        let thread_q = q.clone();
        let dir = wal.dir().to_path_buf();
        let handle = std::thread::Builder::new()
            .name("tsdb-commit".to_string())
            .spawn(move || thread_q.run(&wal, on_metadata))
            .map_err(|e| StoreError::io(dir, e))?;
        *q.thread.lock() = Some(handle);
        Ok(q)
    }

    /// Stops the thread after it answered everything queued, and waits for it to exit (and
    /// so release the WAL and the metadata database). Blocks for at most one WAL write.
    pub fn stop_and_join(&self) {
        let (done, _rx) = oneshot::channel();
        let _ = self.push(Job::Stop { done });
        if let Some(handle) = self.thread.lock().take() {
            if handle.join().is_err() {
                tracing::error!("tsdb commit thread panicked");
            }
        }
    }

    /// Whether another append would exceed the queue bound.
    pub fn is_full(&self) -> bool {
        self.queue.lock().jobs.len() >= self.max_pending
    }

    /// Queues a job; fails once the thread stopped.
    pub fn push(&self, job: Job) -> Result<()> {
        let mut q = self.queue.lock();
        if q.stopped {
            return Err(StoreError::Unavailable(
                "metrics store is closed".to_string(),
            ));
        }
        q.jobs.push_back(job);
        drop(q);
        self.wake.notify_one();
        Ok(())
    }

    fn run(&self, wal: &Wal, mut on_metadata: impl FnMut(Vec<MetricMetadata>)) {
        loop {
            let jobs: Vec<Job> = {
                let mut q = self.queue.lock();
                while q.jobs.is_empty() {
                    self.wake.wait(&mut q);
                }
                q.jobs.drain(..).collect()
            };
            let mut group: Vec<u8> = Vec::new();
            let mut waiters: Vec<oneshot::Sender<Result<()>>> = Vec::new();
            for job in jobs {
                match job {
                    Job::Append { payload, done } => {
                        if !group.is_empty() && group.len() + payload.len() > MAX_GROUP_BYTES {
                            write_group(wal, &mut group, &mut waiters);
                        }
                        group.extend_from_slice(&payload);
                        waiters.push(done);
                    }
                    Job::Rotate { dump, done } => {
                        write_group(wal, &mut group, &mut waiters);
                        let _ = done.send(rotate(wal, dump));
                    }
                    Job::Metadata(m) => {
                        write_group(wal, &mut group, &mut waiters);
                        on_metadata(m);
                    }
                    Job::Stop { done } => {
                        write_group(wal, &mut group, &mut waiters);
                        let rest: Vec<Job> = {
                            let mut q = self.queue.lock();
                            q.stopped = true;
                            q.jobs.drain(..).collect()
                        };
                        for job in rest {
                            refuse(job);
                        }
                        let _ = done.send(());
                        return;
                    }
                }
            }
            write_group(wal, &mut group, &mut waiters);
        }
    }
}

fn refuse(job: Job) {
    let err = || StoreError::Unavailable("metrics store is closed".to_string());
    match job {
        Job::Append { done, .. } => {
            let _ = done.send(Err(err()));
        }
        Job::Rotate { done, .. } => {
            let _ = done.send(Err(err()));
        }
        Job::Metadata(_) => {}
        Job::Stop { done } => {
            let _ = done.send(());
        }
    }
}

fn write_group(wal: &Wal, group: &mut Vec<u8>, waiters: &mut Vec<oneshot::Sender<Result<()>>>) {
    if waiters.is_empty() {
        return;
    }
    let result = wal.append_blocking(std::mem::take(group));
    match result {
        Ok(_) => {
            for w in waiters.drain(..) {
                let _ = w.send(Ok(()));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, appends = waiters.len(), "tsdb wal append failed");
            let msg = e.to_string();
            let kind = e.kind();
            for w in waiters.drain(..) {
                let err = match kind {
                    crate::ErrorKind::Overloaded => StoreError::Overloaded(msg.clone()),
                    _ => StoreError::Unavailable(format!("wal append failed: {msg}")),
                };
                let _ = w.send(Err(err));
            }
        }
    }
}

fn rotate(wal: &Wal, dump: Vec<Vec<u8>>) -> Result<SegmentId> {
    let id = futures::executor::block_on(wal.rotate())?;
    for payload in dump {
        wal.append_blocking(payload)?;
    }
    Ok(id)
}
