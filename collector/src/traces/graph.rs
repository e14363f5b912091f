//! Service-graph pairing: the halves of an edge waiting for each other.
//!
//! A client (or producer) span is one half of an edge, keyed by `(trace id, its span id)`; a
//! server (or consumer) span is the other half, keyed by `(trace id, its parent span id)`. The
//! two may arrive in different requests, from different services, seconds apart. A half whose
//! partner is here completes the edge at once; otherwise it waits, for `edge_wait` at most,
//! and then expires (the caller decides what an expired half becomes).
//!
//! Memory is bounded: at most `max_pending` halves wait; a half arriving when the store is full
//! is dropped and counted by the caller. Halves expire in arrival order (one wait for all), so
//! a queue ordered by deadline finds them without scanning the map.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use store::traces::{SpanId, TraceId};

/// Which half of an edge a span is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// A client or producer span.
    Client,
    /// A server or consumer span.
    Server,
}

/// One half of an edge.
#[derive(Clone, Debug, PartialEq)]
pub struct Half {
    pub trace_id: TraceId,
    /// The client span's id: its own for a client half, its parent's for a server half.
    pub span_id: SpanId,
    pub side: Side,
    pub service: Arc<str>,
    pub seconds: f64,
    pub failed: bool,
    /// A producer or consumer span.
    pub messaging: bool,
    /// For a client half: the peer it names, the virtual node it becomes if no server answers.
    pub peer: Option<String>,
}

/// What [`PendingEdges::offer`] did with a half.
#[derive(Debug, PartialEq)]
pub enum Offer {
    /// The partner was waiting: the edge is complete.
    Paired { client: Half, server: Half },
    /// The half waits for its partner.
    Stored,
    /// The store is full: the half is dropped.
    Dropped,
}

struct Waiting {
    half: Half,
    /// Tells this entry from an earlier one of the same key in the expiry queue.
    generation: u64,
}

/// Halves waiting for their partner.
pub struct PendingEdges {
    waiting: HashMap<(TraceId, SpanId), Waiting>,
    /// `(deadline, key, generation)` in arrival order, so deadline order.
    queue: VecDeque<(Instant, (TraceId, SpanId), u64)>,
    next_generation: u64,
    max_pending: usize,
    wait: Duration,
}

impl PendingEdges {
    pub fn new(max_pending: usize, wait: Duration) -> Self {
        PendingEdges {
            waiting: HashMap::new(),
            queue: VecDeque::new(),
            next_generation: 0,
            max_pending,
            wait,
        }
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Pairs `half` with its waiting partner, or stores it to wait.
    pub fn offer(&mut self, half: Half, now: Instant) -> Offer {
        let key = (half.trace_id, half.span_id);
        let full = self.waiting.len() >= self.max_pending;
        match self.waiting.entry(key) {
            Entry::Occupied(mut e) => {
                if e.get().half.side == half.side {
                    // the same half again (a client's retry): the newest wins, the wait stays
                    e.get_mut().half = half;
                    return Offer::Stored;
                }
                let partner = e.remove().half;
                let (client, server) = match half.side {
                    Side::Client => (half, partner),
                    Side::Server => (partner, half),
                };
                Offer::Paired { client, server }
            }
            Entry::Vacant(e) => {
                if full {
                    return Offer::Dropped;
                }
                let generation = self.next_generation;
                self.next_generation += 1;
                e.insert(Waiting { half, generation });
                self.queue.push_back((now + self.wait, key, generation));
                self.compact();
                Offer::Stored
            }
        }
    }

    /// Removes and returns every half whose wait ended at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<Half> {
        let mut out = Vec::new();
        while let Some(&(deadline, key, generation)) = self.queue.front() {
            if deadline > now {
                break;
            }
            self.queue.pop_front();
            if let Entry::Occupied(e) = self.waiting.entry(key) {
                if e.get().generation == generation {
                    out.push(e.remove().half);
                }
            }
        }
        out
    }

    /// Keeps the queue bounded: entries of paired halves stay in it until their deadline, so
    /// when it grows well past what waits, drop those.
    fn compact(&mut self) {
        if self.queue.len() <= 2 * self.max_pending.max(1024) {
            return;
        }
        let waiting = &self.waiting;
        self.queue.retain(|(_, key, generation)| {
            waiting
                .get(key)
                .is_some_and(|w| w.generation == *generation)
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn half(span: u8, side: Side, service: &str) -> Half {
        Half {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([span; 8]),
            side,
            service: Arc::from(service),
            seconds: 0.5,
            failed: false,
            messaging: false,
            peer: None,
        }
    }

    #[test]
    fn halves_pair_in_either_order() {
        let now = Instant::now();
        let mut p = PendingEdges::new(10, Duration::from_secs(10));
        assert_eq!(p.offer(half(1, Side::Client, "a"), now), Offer::Stored);
        match p.offer(half(1, Side::Server, "b"), now) {
            Offer::Paired { client, server } => {
                assert_eq!(&*client.service, "a");
                assert_eq!(&*server.service, "b");
            }
            other => panic!("{other:?}"),
        }
        assert!(p.is_empty());
        assert_eq!(p.offer(half(2, Side::Server, "b"), now), Offer::Stored);
        assert!(matches!(
            p.offer(half(2, Side::Client, "a"), now),
            Offer::Paired { .. }
        ));
        // the paired halves' queue entries expire nothing
        assert!(p.expire(now + Duration::from_secs(11)).is_empty());
    }

    #[test]
    fn halves_expire_after_the_wait_in_order() {
        let t0 = Instant::now();
        let mut p = PendingEdges::new(10, Duration::from_secs(10));
        p.offer(half(1, Side::Client, "a"), t0);
        p.offer(half(2, Side::Server, "b"), t0 + Duration::from_secs(5));
        assert!(p.expire(t0 + Duration::from_secs(9)).is_empty());
        let first = p.expire(t0 + Duration::from_secs(10));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].side, Side::Client);
        let second = p.expire(t0 + Duration::from_secs(15));
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].side, Side::Server);
        assert!(p.is_empty());
    }

    #[test]
    fn a_repeated_half_replaces_the_waiting_one_and_keeps_its_deadline() {
        let t0 = Instant::now();
        let mut p = PendingEdges::new(10, Duration::from_secs(10));
        p.offer(half(1, Side::Client, "a"), t0);
        let mut again = half(1, Side::Client, "a");
        again.failed = true;
        p.offer(again, t0 + Duration::from_secs(3));
        assert_eq!(p.len(), 1);
        let expired = p.expire(t0 + Duration::from_secs(10));
        assert_eq!(expired.len(), 1);
        assert!(expired[0].failed);
    }

    #[test]
    fn a_full_store_drops_new_halves_but_still_pairs() {
        let now = Instant::now();
        let mut p = PendingEdges::new(2, Duration::from_secs(10));
        assert_eq!(p.offer(half(1, Side::Client, "a"), now), Offer::Stored);
        assert_eq!(p.offer(half(2, Side::Client, "a"), now), Offer::Stored);
        assert_eq!(p.offer(half(3, Side::Client, "a"), now), Offer::Dropped);
        assert_eq!(p.len(), 2);
        assert!(matches!(
            p.offer(half(1, Side::Server, "b"), now),
            Offer::Paired { .. }
        ));
        assert_eq!(p.offer(half(3, Side::Client, "a"), now), Offer::Stored);
    }

    #[test]
    fn the_queue_stays_bounded_under_constant_pairing() {
        let now = Instant::now();
        let mut p = PendingEdges::new(4, Duration::from_secs(10));
        for i in 0..10_000u32 {
            let mut c = half(0, Side::Client, "a");
            c.span_id = SpanId([(i % 251) as u8 + 1, (i / 251) as u8 + 1, 0, 0, 0, 0, 0, 1]);
            let mut s = c.clone();
            s.side = Side::Server;
            p.offer(c, now);
            assert!(matches!(p.offer(s, now), Offer::Paired { .. }));
        }
        assert!(p.queue.len() <= 2 * 1024 + 1, "{}", p.queue.len());
    }
}
