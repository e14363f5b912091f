//! The derived counters and the pending edges, behind one lock in [`super::Deriver`]. Pure
//! and synchronous (time is passed in), so every rule is unit-tested without a runtime.
//!
//! Flushes are numbered (epochs). Changes made by [`DeriveState::apply`] belong to the current
//! epoch; [`DeriveState::snapshot`] closes it, taking the changed series with their current
//! cumulative values. Once the snapshot of epoch `e` is stored, every change made in epochs
//! `<= e` is durable. A snapshot whose append failed is put back
//! ([`DeriveState::requeue`]): its series are marked changed again, and the next snapshot
//! (a later epoch) writes their then-current values, which include everything the failed one
//! had.
//!
//! Besides the changed keys, a snapshot takes (the *sweep*, run when something is due):
//! - every key active in the last `stale_after` and not written for `heartbeat` (less one
//!   `flush_interval`, since the next flush may be that much later): its unchanged values,
//!   so every series has a sample at least once per heartbeat;
//! - every key written since it was last active but idle for `stale_after`: a staleness
//!   marker on each of its series, after which it is written no more. Its values stay, so new
//!   spans continue its counters.
//!
//! A key that is not *live* (never written by this process: new, or restored at start; or
//! stale-marked) writes, in the flush of its first change, its values from before the change
//! one millisecond before the new ones: zeros for a new key, the counters it went quiet with
//! otherwise. So the first counts of a series, and those after a gap, are an increase between
//! two samples: `increase()` sees them, and a window count from the sample before `start`
//! (or from the window's first sample when there is none) is exact.
//!
//! Timestamps: one per snapshot, strictly later than the previous one (two milliseconds later
//! when a prior value is written), so every series' samples strictly increase.
//!
//! `Table` (one kind of key with these rules) and `FlushClock` (the timestamps, sweeps and
//! metadata of a set of tables) are also what the log-based metric (`crate::logs::metrics`)
//! keeps its counters in.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use store::MetricBatch;

use super::graph::{Half, Offer, PendingEdges, Side};
use super::prepare::Prepared;
use super::restore::Restored;
use super::series::{
    self, Connection, EdgeKey, EdgeValues, Hist, LocalEdge, Parsed, SeriesWriter, SpanKey,
    SpanValues, Write,
};
use super::DeriveConfig;
use crate::telemetry;

/// After a failed flush, the keys it had due are looked for again this much later.
const RETRY_SWEEP_MS: i64 = 500;

pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The flush bookkeeping of a set of tables: snapshot timestamps, when the next sweep is due,
/// whether the metric metadata went out.
pub(crate) struct FlushClock {
    /// The heartbeat window in ms, taken one flush interval early since the flush after this
    /// one may come that much later.
    heartbeat_ms: i64,
    stale_after_ms: i64,
    /// Timestamp of the last snapshot; the next is strictly later.
    last_timestamp_ms: i64,
    /// No key is due (heartbeat or marker) before this time: snapshots before it skip the
    /// sweep. A lower bound; `i64::MIN` sweeps at the next snapshot.
    next_sweep_ms: i64,
    metadata_sent: bool,
}

impl FlushClock {
    pub(crate) fn new(
        flush_interval: Duration,
        heartbeat: Duration,
        stale_after: Duration,
    ) -> Self {
        FlushClock {
            heartbeat_ms: ms(heartbeat).saturating_sub(ms(flush_interval)).max(1),
            stale_after_ms: ms(stale_after),
            last_timestamp_ms: i64::MIN,
            next_sweep_ms: i64::MAX,
            metadata_sent: false,
        }
    }

    /// When the next snapshot may have keys due without any change (the flusher wakes then).
    pub(crate) fn next_sweep_ms(&self) -> i64 {
        self.next_sweep_ms
    }

    /// The next snapshot's timestamp: `now_ms`, but strictly later than the last one (two
    /// milliseconds later when it writes a prior value, one millisecond before its own).
    pub(crate) fn timestamp(&mut self, now_ms: i64, any_prior: bool) -> i64 {
        let gap = if any_prior { 2 } else { 1 };
        let timestamp_ms = now_ms.max(self.last_timestamp_ms.saturating_add(gap));
        self.last_timestamp_ms = timestamp_ms;
        timestamp_ms
    }

    /// Runs `sweep(ts, heartbeat, stale_after)` when keys may be due at `ts`; it returns when
    /// keys are next due.
    pub(crate) fn sweep_if_due(&mut self, ts: i64, sweep: impl FnOnce(i64, i64, i64) -> i64) {
        if ts >= self.next_sweep_ms {
            self.next_sweep_ms = sweep(ts, self.heartbeat_ms, self.stale_after_ms);
        }
    }

    /// Whether a snapshot carries the metric metadata: the first one that writes anything.
    pub(crate) fn with_metadata(&self, writes: bool) -> bool {
        writes && !self.metadata_sent
    }

    /// A snapshot was stored: `mark(heartbeat, stale_after)` marks its keys written and returns
    /// when they are next due.
    pub(crate) fn stored(&mut self, with_metadata: bool, mark: impl FnOnce(i64, i64) -> i64) {
        if with_metadata {
            self.metadata_sent = true;
        }
        let next = mark(self.heartbeat_ms, self.stale_after_ms);
        self.next_sweep_ms = self.next_sweep_ms.min(next);
    }

    /// A snapshot stamped `ts` was not stored; `had_due` says it had keys written for being
    /// due (heartbeats, markers), which the sweep finds again after [`RETRY_SWEEP_MS`].
    pub(crate) fn requeued(&mut self, ts: i64, had_due: bool) {
        if had_due {
            // not at once: a store refusing writes is retried at the flusher's idle pace
            let retry = ts.saturating_add(RETRY_SWEEP_MS);
            self.next_sweep_ms = self.next_sweep_ms.min(retry);
        }
    }

    /// A series was restored whose last sample is at `last_ms`: later snapshots are later.
    pub(crate) fn restored(&mut self, last_ms: i64) {
        self.last_timestamp_ms = self.last_timestamp_ms.max(last_ms);
    }

    /// The restore is done: the next snapshot sweeps, whatever is due.
    pub(crate) fn sweep_next(&mut self) {
        self.next_sweep_ms = i64::MIN;
    }
}

/// One key: its values and what was written of it.
pub(crate) struct Entry<K, V> {
    pub(crate) key: Arc<K>,
    pub(crate) values: V,
    /// Changed since the last snapshot.
    pub(crate) changed: bool,
    /// The values to write one millisecond before the current ones in the next write of a
    /// change (see the module docs).
    pub(crate) prior: Option<V>,
    /// Written by this process and not stale-marked since.
    pub(crate) live: bool,
    /// Time of the last write of a change (for a restored key: of its last stored value, or
    /// `i64::MIN` when it had gone stale); the key goes stale `stale_after` later.
    pub(crate) last_active_ms: i64,
    /// Time of the last write (values or markers; for a restored key its last sample).
    pub(crate) last_written_ms: i64,
}

/// Why a key is in a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Changed,
    Heartbeat,
    Stale,
}

/// A key in a snapshot.
pub(crate) struct Item<K, V> {
    pub(crate) key: Arc<K>,
    pub(crate) values: V,
    pub(crate) prior: Option<V>,
    pub(crate) index: usize,
    pub(crate) reason: Reason,
}

/// What the sweep found due, and when it is next due.
pub(crate) struct Sweep<K, V> {
    pub(crate) items: Vec<Item<K, V>>,
    pub(crate) next_due_ms: i64,
}

/// Keys of type `K`, with a list of those changed since the last snapshot.
pub(crate) struct Table<K, V> {
    pub(crate) index: HashMap<Arc<K>, usize>,
    pub(crate) entries: Vec<Entry<K, V>>,
    pub(crate) changed: Vec<usize>,
}

impl<K: Hash + Eq, V: Clone> Table<K, V> {
    pub(crate) fn new() -> Self {
        Table {
            index: HashMap::new(),
            entries: Vec::new(),
            changed: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The current values of `key`.
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        let i = *self.index.get(key)?;
        self.entries.get(i).map(|e| &e.values)
    }

    /// The entry of `key`, created with `make` when there is room; `None` when there is not.
    pub(crate) fn entry(&mut self, key: K, room: bool, make: impl FnOnce() -> V) -> Option<usize> {
        if let Some(&i) = self.index.get(&key) {
            return Some(i);
        }
        if !room {
            return None;
        }
        let key = Arc::new(key);
        let i = self.entries.len();
        self.entries.push(Entry {
            key: key.clone(),
            values: make(),
            changed: false,
            prior: None,
            live: false,
            last_active_ms: i64::MIN,
            last_written_ms: i64::MIN,
        });
        self.index.insert(key, i);
        Some(i)
    }

    /// The values of entry `i`, marked changed; a key that is not live keeps its values from
    /// before the change as its prior.
    pub(crate) fn change(&mut self, i: usize) -> Option<&mut V> {
        let e = self.entries.get_mut(i)?;
        if !e.changed {
            e.changed = true;
            self.changed.push(i);
            if !e.live && e.prior.is_none() {
                e.prior = Some(e.values.clone());
            }
        }
        Some(&mut e.values)
    }

    /// Whether a changed key in the next snapshot writes a prior.
    pub(crate) fn any_prior(&self) -> bool {
        self.changed
            .iter()
            .any(|&i| self.entries.get(i).is_some_and(|e| e.prior.is_some()))
    }

    /// The changed entries, unmarked.
    pub(crate) fn take_changed(&mut self) -> Vec<Item<K, V>> {
        let mut out = Vec::with_capacity(self.changed.len());
        for i in std::mem::take(&mut self.changed) {
            if let Some(e) = self.entries.get_mut(i) {
                e.changed = false;
                out.push(Item {
                    key: e.key.clone(),
                    values: e.values.clone(),
                    prior: e.prior.take(),
                    index: i,
                    reason: Reason::Changed,
                });
            }
        }
        out
    }

    /// The unchanged keys due at `now`: heartbeats and staleness markers.
    pub(crate) fn sweep(&self, now: i64, heartbeat: i64, stale_after: i64) -> Sweep<K, V> {
        let mut items = Vec::new();
        let mut next_due_ms = i64::MAX;
        for (i, e) in self.entries.iter().enumerate() {
            if e.changed {
                continue;
            }
            let active =
                e.last_active_ms != i64::MIN && now.saturating_sub(e.last_active_ms) < stale_after;
            let reason = if e.live && !active {
                Reason::Stale
            } else if active && now >= e.last_written_ms.saturating_add(heartbeat) {
                Reason::Heartbeat
            } else {
                if active {
                    next_due_ms = next_due_ms
                        .min(e.last_written_ms.saturating_add(heartbeat))
                        .min(e.last_active_ms.saturating_add(stale_after));
                }
                continue;
            };
            items.push(Item {
                key: e.key.clone(),
                values: e.values.clone(),
                prior: None,
                index: i,
                reason,
            });
        }
        Sweep { items, next_due_ms }
    }

    /// The snapshot's items were stored at `ts`; returns when the keys are next due.
    pub(crate) fn stored(
        &mut self,
        items: &[Item<K, V>],
        ts: i64,
        heartbeat: i64,
        stale_after: i64,
    ) -> i64 {
        let mut next_due_ms = i64::MAX;
        for item in items {
            let Some(e) = self.entries.get_mut(item.index) else {
                continue;
            };
            e.last_written_ms = ts;
            match item.reason {
                Reason::Changed => {
                    e.live = true;
                    e.last_active_ms = ts;
                }
                Reason::Heartbeat => e.live = true,
                Reason::Stale => {
                    e.live = false;
                    // changed while the marker was being stored: that change's flush writes
                    // the values the key went stale with first
                    if e.changed && e.prior.is_none() {
                        e.prior = Some(item.values.clone());
                    }
                }
            }
            if item.reason != Reason::Stale {
                next_due_ms = next_due_ms
                    .min(ts.saturating_add(heartbeat))
                    .min(e.last_active_ms.saturating_add(stale_after));
            }
        }
        next_due_ms
    }

    /// The snapshot's items were not stored: changed keys are changed again (with their
    /// prior), the others are found again by the next sweep.
    pub(crate) fn requeue(&mut self, items: &[Item<K, V>]) {
        for item in items {
            if item.reason != Reason::Changed {
                continue;
            }
            let Some(e) = self.entries.get_mut(item.index) else {
                continue;
            };
            if !e.changed {
                e.changed = true;
                self.changed.push(item.index);
            }
            // the older prior is the one from before the failed flush's changes
            if item.prior.is_some() {
                e.prior = item.prior.clone();
            }
        }
    }

    /// Entry `i` was restored from `r`: active from its last stored value unless a staleness
    /// marker followed it. Returns its values, for the caller to set from `r`.
    pub(crate) fn restored(&mut self, i: usize, r: &Restored) -> Option<&mut V> {
        let e = self.entries.get_mut(i)?;
        let active = if r.stale {
            i64::MIN
        } else {
            r.value.timestamp_ms
        };
        e.last_active_ms = e.last_active_ms.max(active);
        e.last_written_ms = e.last_written_ms.max(r.last_ms);
        Some(&mut e.values)
    }
}

/// The keys of one epoch's flush, with their values at the snapshot.
pub struct Snapshot {
    pub epoch: u64,
    pub timestamp_ms: i64,
    spans: Vec<Item<SpanKey, SpanValues>>,
    edges: Vec<Item<EdgeKey, EdgeValues>>,
    with_metadata: bool,
}

fn write_of<'a, K, V>(item: &'a Item<K, V>) -> Write<'a, V> {
    match item.reason {
        Reason::Stale => Write::Stale,
        _ => Write::Values {
            now: &item.values,
            prior: item.prior.as_ref(),
        },
    }
}

impl Snapshot {
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.edges.is_empty()
    }

    /// How many keys the snapshot writes for `reason`.
    pub fn count(&self, reason: Reason) -> usize {
        self.spans.iter().filter(|i| i.reason == reason).count()
            + self.edges.iter().filter(|i| i.reason == reason).count()
    }

    /// The metric batch to append.
    pub fn to_batch(&self, span_les: &[String], edge_les: &[String]) -> MetricBatch {
        let mut w = SeriesWriter {
            timestamp_ms: self.timestamp_ms,
            span_les,
            edge_les,
            out: Vec::with_capacity(
                self.spans.len() * (span_les.len() + 3)
                    + self.edges.len() * 2 * (edge_les.len() + 3),
            ),
        };
        for item in &self.spans {
            w.span(&item.key, &write_of(item));
        }
        for item in &self.edges {
            w.edge(&item.key, &write_of(item));
        }
        MetricBatch {
            series: w.out,
            metadata: if self.with_metadata {
                series::metadata()
            } else {
                Vec::new()
            },
        }
    }
}

/// Counters, pending edges and the flush bookkeeping.
pub struct DeriveState {
    cfg: Arc<DeriveConfig>,
    spans: Table<SpanKey, SpanValues>,
    edges: Table<EdgeKey, EdgeValues>,
    pending: PendingEdges,
    /// The open epoch: changes made now are flushed by its snapshot.
    epoch: u64,
    clock: FlushClock,
}

impl DeriveState {
    pub fn new(cfg: Arc<DeriveConfig>) -> Self {
        let pending = PendingEdges::new(cfg.max_pending_edges, cfg.edge_wait);
        let clock = FlushClock::new(cfg.flush_interval, cfg.heartbeat, cfg.stale_after);
        DeriveState {
            cfg,
            spans: Table::new(),
            edges: Table::new(),
            pending,
            epoch: 1,
            clock,
        }
    }

    /// Keys held (span-metrics keys and edges).
    pub fn series_count(&self) -> usize {
        self.spans.len() + self.edges.len()
    }

    pub fn pending_edges(&self) -> usize {
        self.pending.len()
    }

    fn room(&self) -> bool {
        self.series_count() < self.cfg.max_series
    }

    /// Merges a request's observations and pairs its halves; returns the epoch whose flush
    /// makes them durable.
    pub fn apply(&mut self, prepared: Prepared, now: Instant) -> u64 {
        let mut dropped_series = 0u64;
        for (key, local) in prepared.spans {
            let bounds = &self.cfg.spanmetrics_buckets;
            let room = self.room();
            let Some(i) = self.spans.entry(key, room, || SpanValues {
                calls: 0.0,
                latency: Hist::new(bounds),
            }) else {
                dropped_series += local.count;
                continue;
            };
            if let Some(v) = self.spans.change(i) {
                v.calls += local.count as f64;
                v.latency.merge(&local);
            }
        }
        for (key, local) in prepared.edges {
            if !self.add_edge(key, &local) {
                dropped_series += local.total;
            }
        }
        let mut dropped_halves = 0u64;
        for half in prepared.halves {
            match self.pending.offer(half, now) {
                Offer::Paired { client, server } => {
                    let connection = if client.messaging || server.messaging {
                        Connection::MessagingSystem
                    } else {
                        Connection::Direct
                    };
                    let key = EdgeKey {
                        client: client.service.to_string(),
                        server: server.service.to_string(),
                        connection,
                    };
                    let mut local = LocalEdge::new(&self.cfg.service_graph_buckets);
                    local.observe(
                        &self.cfg.service_graph_buckets,
                        server.seconds,
                        client.seconds,
                        client.failed || server.failed,
                    );
                    if !self.add_edge(key, &local) {
                        dropped_series += 1;
                    }
                }
                Offer::Stored => {}
                Offer::Dropped => dropped_halves += 1,
            }
        }
        if dropped_series > 0 {
            telemetry::DERIVED_SERIES_DROPPED.inc_by(dropped_series);
        }
        if dropped_halves > 0 {
            telemetry::SERVICE_GRAPH_DROPPED_SPANS.inc_by(dropped_halves);
        }
        self.epoch
    }

    /// Adds an edge's observations; false when there was no room for a new edge.
    fn add_edge(&mut self, key: EdgeKey, local: &LocalEdge) -> bool {
        let bounds = &self.cfg.service_graph_buckets;
        let room = self.room();
        let Some(i) = self.edges.entry(key, room, || EdgeValues::new(bounds)) else {
            return false;
        };
        if let Some(v) = self.edges.change(i) {
            v.merge(local);
        }
        true
    }

    /// Expires halves whose wait is over: a client half naming a peer becomes an edge to that
    /// virtual node (`messaging_system` for a producer, `virtual_node` otherwise), both
    /// histograms observing its duration; anything else is only counted.
    pub fn expire(&mut self, now: Instant) {
        for half in self.pending.expire(now) {
            self.expired(half);
        }
    }

    fn expired(&mut self, half: Half) {
        let side = match half.side {
            Side::Client => "client",
            Side::Server => "server",
        };
        let peer = match (&half.side, half.peer) {
            (Side::Client, Some(peer)) => peer,
            _ => {
                telemetry::SERVICE_GRAPH_EXPIRED_EDGES
                    .with_label_values(&[side, "unpaired"])
                    .inc();
                return;
            }
        };
        telemetry::SERVICE_GRAPH_EXPIRED_EDGES
            .with_label_values(&[side, "virtual_node"])
            .inc();
        let key = EdgeKey {
            client: half.service.to_string(),
            server: peer,
            connection: if half.messaging {
                Connection::MessagingSystem
            } else {
                Connection::VirtualNode
            },
        };
        let bounds = &self.cfg.service_graph_buckets;
        let mut local = LocalEdge::new(bounds);
        local.observe(bounds, half.seconds, half.seconds, half.failed);
        if !self.add_edge(key, &local) {
            telemetry::DERIVED_SERIES_DROPPED.inc();
        }
    }

    /// When the next snapshot may have keys due without any change (the flusher wakes then).
    pub fn next_sweep_ms(&self) -> i64 {
        self.clock.next_sweep_ms()
    }

    /// Closes the open epoch: the changed keys, the keys due at `now_ms` (see the module
    /// docs), and a timestamp later than any before.
    pub fn snapshot(&mut self, now_ms: i64) -> Snapshot {
        let epoch = self.epoch;
        self.epoch += 1;
        let any_prior = self.spans.any_prior() || self.edges.any_prior();
        let timestamp_ms = self.clock.timestamp(now_ms, any_prior);
        let mut spans = self.spans.take_changed();
        let mut edges = self.edges.take_changed();
        self.clock
            .sweep_if_due(timestamp_ms, |ts, heartbeat, stale_after| {
                let s = self.spans.sweep(ts, heartbeat, stale_after);
                let e = self.edges.sweep(ts, heartbeat, stale_after);
                spans.extend(s.items);
                edges.extend(e.items);
                s.next_due_ms.min(e.next_due_ms)
            });
        let with_metadata = self
            .clock
            .with_metadata(!spans.is_empty() || !edges.is_empty());
        Snapshot {
            epoch,
            timestamp_ms,
            spans,
            edges,
            with_metadata,
        }
    }

    /// The snapshot was stored.
    pub fn stored(&mut self, snapshot: &Snapshot) {
        let ts = snapshot.timestamp_ms;
        self.clock
            .stored(snapshot.with_metadata, |heartbeat, stale_after| {
                let s = self
                    .spans
                    .stored(&snapshot.spans, ts, heartbeat, stale_after);
                let e = self
                    .edges
                    .stored(&snapshot.edges, ts, heartbeat, stale_after);
                s.min(e)
            });
    }

    /// The snapshot was not stored: its changes are written by the next one, and the keys it
    /// had due are due again.
    pub fn requeue(&mut self, snapshot: &Snapshot) {
        self.spans.requeue(&snapshot.spans);
        self.edges.requeue(&snapshot.edges);
        let had_due = snapshot
            .spans
            .iter()
            .map(|i| i.reason)
            .chain(snapshot.edges.iter().map(|i| i.reason))
            .any(|r| r != Reason::Changed);
        self.clock.requeued(snapshot.timestamp_ms, had_due);
    }

    /// Loads the last stored value of derived series (from [`super::restore`]), so counters
    /// continue where the previous process left them. Keys past `max_series` are not loaded;
    /// series this module would not have written are ignored. A key is active (written again
    /// by heartbeats until it goes stale) from its last stored value, unless a staleness marker
    /// followed it. Returns the keys loaded.
    pub fn restore(&mut self, stored: Vec<Restored>) -> usize {
        let span_les = self.cfg.span_les();
        let edge_les = self.cfg.edge_les();
        let before = self.series_count();
        for r in stored {
            self.clock.restored(r.last_ms);
            let Some(parsed) = series::parse_series(&r.labels, &span_les, &edge_les) else {
                continue;
            };
            let room = self.room();
            match parsed {
                Parsed::Span(key, part) => {
                    let bounds = &self.cfg.spanmetrics_buckets;
                    let make = || SpanValues {
                        calls: 0.0,
                        latency: Hist::new(bounds),
                    };
                    let Some(i) = self.spans.entry(key, room, make) else {
                        continue;
                    };
                    if let Some(values) = self.spans.restored(i, &r) {
                        series::restore_span(values, part, r.value.value);
                    }
                }
                Parsed::Edge(key, part) => {
                    let bounds = &self.cfg.service_graph_buckets;
                    let Some(i) = self.edges.entry(key, room, || EdgeValues::new(bounds)) else {
                        continue;
                    };
                    if let Some(values) = self.edges.restored(i, &r) {
                        series::restore_edge(values, part, r.value.value);
                    }
                }
            }
        }
        self.clock.sweep_next();
        self.series_count() - before
    }

    /// The current values of a span-metrics key (tests and debugging).
    pub fn span_values(&self, key: &SpanKey) -> Option<&SpanValues> {
        self.spans.get(key)
    }

    /// The current values of an edge (tests and debugging).
    pub fn edge_values(&self, key: &EdgeKey) -> Option<&EdgeValues> {
        self.edges.get(key)
    }
}
