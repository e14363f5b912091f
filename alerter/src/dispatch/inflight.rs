//! Deliveries in flight: each integration's part of a flush (a `Job` in [`super::group`])
//! runs in its own task, and two things must know about those tasks.
//!
//! * Exclusion per notification-log key (group key, receiver, integration): a reload stops
//!   the old groups while one of their jobs may be mid-delivery, and the new group for the
//!   same key flushes `group_wait` later. Had it read the log before the old job wrote it,
//!   it would send the same notification again. Holding a per-key lock across read log ->
//!   deliver -> write log makes the new job wait for the old one and find it logged.
//! * Shutdown: the group tasks end at once, but a delivery already sent must finish and be
//!   logged before the state is flushed, or it is cut off, or re-sent after the restart.
//!   [`Deliveries::wait_idle`] waits for them, up to a bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, OwnedMutexGuard};

type KeyLock = Arc<tokio::sync::Mutex<()>>;

/// The deliveries of one dispatcher.
#[derive(Default)]
pub(crate) struct Deliveries {
    /// One lock per nflog key that some job holds or waits for; pruned when the last of
    /// them lets go, so the map stays as small as the deliveries under way.
    locks: Mutex<HashMap<String, KeyLock>>,
    /// The deliveries not finished yet, by id: what each is, for the shutdown log.
    running: Mutex<HashMap<u64, String>>,
    next_id: AtomicU64,
    /// Woken when `running` becomes empty.
    idle: Notify,
}

impl Deliveries {
    /// Counts a delivery as in flight until the returned guard drops. Taken before its
    /// task is spawned, so a shutdown right after the spawn still waits for it.
    pub fn start(self: &Arc<Self>, what: String) -> Running {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.running.lock().insert(id, what);
        Running {
            deliveries: self.clone(),
            id,
        }
    }

    /// Waits until no delivery is in flight, at most `bound`; returns what was still in
    /// flight when the bound ran out (empty when all finished).
    pub async fn wait_idle(&self, bound: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            // Created before the check: `notify_waiters` reaches a `Notified` from its
            // creation on, so an end between the check and the await is not missed.
            let idle = self.idle.notified();
            if self.running.lock().is_empty() {
                return Vec::new();
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                let mut left: Vec<String> = self.running.lock().values().cloned().collect();
                left.sort();
                return left;
            }
        }
    }

    /// Takes the lock of one nflog key, waiting while another job holds it.
    pub async fn lock(self: &Arc<Self>, key: String) -> KeyGuard {
        let lock = self.locks.lock().entry(key.clone()).or_default().clone();
        let guard = lock.lock_owned().await;
        KeyGuard {
            deliveries: self.clone(),
            key,
            guard: Some(guard),
        }
    }

    #[cfg(test)]
    pub fn locked_keys(&self) -> usize {
        self.locks.lock().len()
    }
}

/// A delivery in flight, counted until dropped (finished, failed, or its task dropped).
pub(crate) struct Running {
    deliveries: Arc<Deliveries>,
    id: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = self.deliveries.running.lock();
        running.remove(&self.id);
        if running.is_empty() {
            self.deliveries.idle.notify_waiters();
        }
    }
}

/// The lock of one nflog key; released, and the key's entry pruned when nobody else holds
/// or waits for it, on drop.
pub(crate) struct KeyGuard {
    deliveries: Arc<Deliveries>,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        // Release first, so that the count below sees only the map and any waiters.
        drop(self.guard.take());
        let mut locks = self.deliveries.locks.lock();
        // A waiter clones the Arc under this same map lock before it waits, so a count of
        // one (the map's own) means nobody holds or waits for this key.
        if locks
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_key_is_exclusive_and_its_entry_goes_with_the_last_holder() {
        let d = Arc::new(Deliveries::default());
        let first = d.lock("k".into()).await;
        let other = d.lock("other".into()).await;
        let d2 = d.clone();
        let waiter = tokio::spawn(async move {
            let _g = d2.lock("k".into()).await;
            tokio::time::Instant::now()
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            !waiter.is_finished(),
            "the second holder waits for the first"
        );
        let released = tokio::time::Instant::now();
        drop(first);
        assert_eq!(waiter.await.unwrap(), released);
        assert_eq!(d.locked_keys(), 1, "only `other` is still held");
        drop(other);
        assert_eq!(d.locked_keys(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_idle_ends_with_the_last_delivery_or_at_the_bound() {
        let d = Arc::new(Deliveries::default());
        assert!(d.wait_idle(Duration::from_secs(10)).await.is_empty());
        let a = d.start("a".into());
        let b = d.start("b".into());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(a);
        });
        let t0 = tokio::time::Instant::now();
        assert_eq!(d.wait_idle(Duration::from_secs(10)).await, ["b"]);
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(b);
        });
        let t0 = tokio::time::Instant::now();
        assert!(d.wait_idle(Duration::from_secs(10)).await.is_empty());
        assert_eq!(t0.elapsed(), Duration::from_secs(3));
    }
}
