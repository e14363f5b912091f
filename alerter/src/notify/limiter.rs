//! The per-robot rate limiter.
//!
//! DingTalk and WeCom robots accept 20 messages a minute; DingTalk mutes a robot for ten
//! minutes when that is exceeded. Each robot (keyed by its URL, shared across receivers and
//! config reloads) gets one [`Limiter`]: a rolling window of the send times of the last
//! `messages` messages the platform saw (failures included), and the batches waiting.
//!
//! A notification submitted while the window has a free slot for it (beyond the batches
//! already queued) starts a batch of its own and goes out alone. Once the window is
//! spoken for, it joins the last queued batch of its *class* instead: integrations sharing
//! a robot may be configured so that one rendering would be wrong for another (another
//! signing secret, keyword, message type or language), and those never share a message;
//! a notification with no batch of its class waiting starts one. Each batch's runner (one
//! task per batch) waits for the batches before it and for a free slot, then takes its
//! batch and sends everything in it as ONE message (a digest when it holds several),
//! taking one slot per message actually posted (a split message needs several, a retry
//! needs another). So under pressure everything due is merged rather than dropped, at
//! most one batch per class waits beyond the free slots, and the robot is never asked to
//! take more than its limit.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use super::RateLimit;

/// One robot's limiter. `T` is what is batched, `R` the outcome every member gets.
pub struct Limiter<T, R> {
    window: Mutex<Window>,
    pending: Mutex<Pending<T, R>>,
    /// Held by the batch that is sending: batches go out one after the other.
    sending: tokio::sync::Mutex<()>,
}

struct Window {
    messages: usize,
    per: Duration,
    sent: VecDeque<Instant>,
}

impl Window {
    fn prune(&mut self, now: Instant) {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.per)
        {
            self.sent.pop_front();
        }
    }

    /// How long until a slot is free (zero when one is).
    fn wait(&mut self, now: Instant) -> Duration {
        self.prune(now);
        if self.sent.len() < self.messages {
            return Duration::ZERO;
        }
        // the slot of the (len - messages + 1)-th oldest frees first; with a lowered
        // limit more than one may have to expire
        let idx = self.sent.len() - self.messages;
        (self.sent[idx] + self.per).saturating_duration_since(now)
    }
}

/// Batches waiting for their turn, oldest first.
struct Pending<T, R> {
    next_id: u64,
    batches: VecDeque<Batch<T, R>>,
}

struct Batch<T, R> {
    id: u64,
    /// Only items of one class share a batch.
    class: String,
    items: Vec<T>,
    done: watch::Receiver<Option<R>>,
}

impl<T, R> Limiter<T, R>
where
    T: Send + 'static,
    R: Clone + Send + Sync + 'static,
{
    pub fn new(limit: RateLimit) -> Arc<Self> {
        Arc::new(Limiter {
            window: Mutex::new(Window {
                messages: limit.messages.max(1) as usize,
                per: limit.per.into(),
                sent: VecDeque::new(),
            }),
            pending: Mutex::new(Pending {
                next_id: 0,
                batches: VecDeque::new(),
            }),
            sending: tokio::sync::Mutex::new(()),
        })
    }

    /// Changes the limit (config reload); the window's history is kept.
    pub fn set_limit(&self, limit: RateLimit) {
        let mut w = self.window.lock();
        w.messages = limit.messages.max(1) as usize;
        w.per = limit.per.into();
    }

    /// Waits for a free slot and takes it: call once before every message posted.
    pub async fn slot(&self) {
        loop {
            let wait = {
                let mut w = self.window.lock();
                let now = Instant::now();
                let wait = w.wait(now);
                if wait.is_zero() {
                    w.sent.push_back(now);
                    return;
                }
                wait
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Moves the newest slot's time to now: call when the message's request has finished.
    /// The platform counts a message when it arrives, somewhere between taking the slot
    /// and the answer; counting from the answer keeps a slow first request from letting
    /// the next window start early in the platform's eyes.
    pub fn finish_slot(&self) {
        let mut w = self.window.lock();
        if let Some(last) = w.sent.back_mut() {
            *last = Instant::now();
        }
    }

    /// Waits until a slot is free without taking it.
    async fn room(&self) {
        loop {
            let wait = self.window.lock().wait(Instant::now());
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Messages sent in the current window.
    pub fn in_window(&self) -> usize {
        let mut w = self.window.lock();
        w.prune(Instant::now());
        w.sent.len()
    }

    /// Adds `item` to a batch and waits for that batch's outcome. A new batch (with `run`
    /// as its sender: it gets every item of the batch and must call [`Limiter::slot`]
    /// before, and [`Limiter::finish_slot`] after, each message it posts) is started while
    /// the window still has a free slot for it beyond the batches already waiting; once it
    /// has not, the item joins the last waiting batch of the same `class`, or starts one
    /// when none waits. `None` when the batch's runner died without an outcome.
    pub async fn submit<F, Fut>(self: &Arc<Self>, item: T, class: &str, run: F) -> Option<R>
    where
        F: FnOnce(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + Send + 'static,
    {
        let mut done = {
            let mut pending = self.pending.lock();
            let free = {
                let mut w = self.window.lock();
                w.prune(Instant::now());
                w.messages.saturating_sub(w.sent.len())
            };
            let queued = pending.batches.len();
            let joinable = if queued >= free {
                pending.batches.iter_mut().rev().find(|b| b.class == class)
            } else {
                None
            };
            match joinable {
                Some(batch) => {
                    batch.items.push(item);
                    batch.done.clone()
                }
                None => {
                    let (tx, rx) = watch::channel(None);
                    let id = pending.next_id;
                    pending.next_id += 1;
                    pending.batches.push_back(Batch {
                        id,
                        class: class.to_string(),
                        items: vec![item],
                        done: rx.clone(),
                    });
                    let this = Arc::clone(self);
                    tokio::spawn(async move {
                        // batches go out in order (tokio's mutex is fair)
                        let _sending = this.sending.lock().await;
                        this.room().await;
                        let items = {
                            let mut pending = this.pending.lock();
                            match pending.batches.iter().position(|b| b.id == id) {
                                Some(i) => {
                                    pending.batches.remove(i).map_or_else(Vec::new, |b| b.items)
                                }
                                None => Vec::new(),
                            }
                        };
                        let outcome = run(items).await;
                        let _ = tx.send(Some(outcome));
                    });
                    rx
                }
            }
        };
        let outcome = done.wait_for(Option::is_some).await.ok()?;
        outcome.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::duration::PromDuration;

    fn limit(messages: u32, secs: u64) -> RateLimit {
        RateLimit {
            messages,
            per: PromDuration::from_secs(secs),
        }
    }

    type Sent = Arc<Mutex<Vec<(Instant, Vec<u32>)>>>;

    /// Submits `item`; the batch sends `parts` messages, recording the batch per message.
    async fn submit(l: &Arc<Limiter<u32, usize>>, sent: &Sent, item: u32, parts: usize) -> usize {
        submit_in(l, sent, item, "c", parts).await
    }

    /// [`submit`] of an item of `class`.
    async fn submit_in(
        l: &Arc<Limiter<u32, usize>>,
        sent: &Sent,
        item: u32,
        class: &str,
        parts: usize,
    ) -> usize {
        let (l2, sent2) = (Arc::clone(l), Arc::clone(sent));
        l.submit(item, class, move |items: Vec<u32>| async move {
            for _ in 0..parts {
                l2.slot().await;
                sent2.lock().push((Instant::now(), items.clone()));
            }
            items.len()
        })
        .await
        .unwrap()
    }

    fn max_in_any_window(sent: &[(Instant, Vec<u32>)], per: Duration) -> usize {
        sent.iter()
            .map(|(t, _)| {
                sent.iter()
                    .filter(|(u, _)| *u >= *t && u.duration_since(*t) < per)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn under_the_limit_each_notification_goes_out_alone_at_once() {
        let l = Limiter::new(limit(3, 10));
        let sent: Sent = Arc::default();
        let start = Instant::now();
        for i in 0..3 {
            assert_eq!(submit(&l, &sent, i, 1).await, 1);
        }
        let sent = sent.lock();
        assert_eq!(sent.len(), 3);
        assert!(sent
            .iter()
            .all(|(t, _)| t.duration_since(start) < Duration::from_millis(1)));
        assert_eq!(
            sent.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
            vec![vec![0], vec![1], vec![2]]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn over_the_limit_waiting_notifications_become_one_digest() {
        let l = Limiter::new(limit(3, 10));
        let sent: Sent = Arc::default();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..10u32 {
            let (l, sent) = (Arc::clone(&l), Arc::clone(&sent));
            tasks.push(tokio::spawn(async move { submit(&l, &sent, i, 1).await }));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut sizes = Vec::new();
        for t in tasks {
            sizes.push(t.await.unwrap());
        }
        let sent = sent.lock();
        // three alone, then everything that waited went out as one digest when a slot freed
        assert_eq!(sent.len(), 4, "{sent:?}");
        assert_eq!(sent[3].1, (3..10).collect::<Vec<u32>>());
        assert_eq!(sent[3].0.duration_since(start), Duration::from_secs(10));
        // every waiting caller got the digest's outcome
        assert_eq!(sizes[3..], [7; 7]);
        assert!(max_in_any_window(&sent, Duration::from_secs(10)) <= 3);
        let mut all: Vec<u32> = sent.iter().flat_map(|(_, b)| b.clone()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn split_messages_take_one_slot_per_part_and_never_exceed_the_window() {
        let l = Limiter::new(limit(3, 10));
        let sent: Sent = Arc::default();
        let mut tasks = Vec::new();
        for i in 0..6u32 {
            let (l, sent) = (Arc::clone(&l), Arc::clone(&sent));
            tasks.push(tokio::spawn(async move { submit(&l, &sent, i, 2).await }));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        let sent = sent.lock();
        assert!(
            max_in_any_window(&sent, Duration::from_secs(10)) <= 3,
            "{sent:?}"
        );
        let mut all: Vec<u32> = sent.iter().flat_map(|(_, b)| b.clone()).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all, (0..6).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn simultaneous_notifications_fill_the_free_slots_then_merge() {
        let l = Limiter::new(limit(3, 10));
        let sent: Sent = Arc::default();
        let tasks: Vec<_> = (0..8u32)
            .map(|i| {
                let (l, sent) = (Arc::clone(&l), Arc::clone(&sent));
                tokio::spawn(async move { submit(&l, &sent, i, 1).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let sent = sent.lock();
        // two alone, the third slot takes everyone else at once: nobody waits a window
        assert_eq!(sent.len(), 3, "{sent:?}");
        assert_eq!(sent[0].1, vec![0]);
        assert_eq!(sent[1].1, vec![1]);
        assert_eq!(sent[2].1, (2..8).collect::<Vec<u32>>());
        assert!(sent.iter().all(|(t, _)| *t == sent[0].0));
    }

    #[tokio::test(start_paused = true)]
    async fn only_items_of_one_class_share_a_batch_and_each_batch_takes_its_slots() {
        let l = Limiter::new(limit(1, 10));
        let sent: Sent = Arc::default();
        let start = Instant::now();
        let tasks: Vec<_> = [
            (0u32, "a"),
            (1, "a"),
            (2, "b"),
            (3, "a"),
            (4, "b"),
            (5, "c"),
        ]
        .into_iter()
        .map(|(i, class)| {
            let (l, sent) = (Arc::clone(&l), Arc::clone(&sent));
            tokio::spawn(async move { submit_in(&l, &sent, i, class, 1).await })
        })
        .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let sent = sent.lock();
        // the one free slot is spoken for by the first batch, which everything of its
        // class joins; each other class waits in a batch of its own, in the order it came
        let batches: Vec<Vec<u32>> = sent.iter().map(|(_, b)| b.clone()).collect();
        assert_eq!(batches, vec![vec![0, 1, 3], vec![2, 4], vec![5]]);
        let at: Vec<Duration> = sent.iter().map(|(t, _)| t.duration_since(start)).collect();
        assert_eq!(
            at,
            [0, 10, 20].map(Duration::from_secs).to_vec(),
            "a slot each"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_counts_from_when_its_request_finished() {
        let l: Arc<Limiter<u32, usize>> = Limiter::new(limit(1, 10));
        let start = Instant::now();
        l.slot().await;
        tokio::time::sleep(Duration::from_secs(2)).await; // a slow request
        l.finish_slot();
        l.slot().await;
        assert_eq!(
            Instant::now().duration_since(start),
            Duration::from_secs(12)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lowered_limit_applies_to_the_existing_window() {
        let l = Limiter::new(limit(5, 10));
        let sent: Sent = Arc::default();
        for i in 0..4 {
            submit(&l, &sent, i, 1).await;
        }
        l.set_limit(limit(2, 10));
        let start = Instant::now();
        submit(&l, &sent, 9, 1).await;
        assert_eq!(
            Instant::now().duration_since(start),
            Duration::from_secs(10)
        );
        assert_eq!(l.in_window(), 1);
    }
}
