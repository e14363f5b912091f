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

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Instant;

use store::{MetricBatch, Sample};

use super::graph::{Half, Offer, PendingEdges, Side};
use super::prepare::Prepared;
use super::series::{
    self, Connection, EdgeKey, EdgeValues, Hist, LocalEdge, Parsed, SeriesWriter, SpanKey,
    SpanValues,
};
use super::DeriveConfig;
use crate::telemetry;

/// Series keyed by `K`, with a list of those changed since the last snapshot.
struct Table<K, V> {
    index: HashMap<Arc<K>, usize>,
    entries: Vec<(Arc<K>, V, bool)>,
    changed: Vec<usize>,
}

impl<K: Hash + Eq, V: Clone> Table<K, V> {
    fn new() -> Self {
        Table {
            index: HashMap::new(),
            entries: Vec::new(),
            changed: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry of `key`, created with `make` when there is room; `None` when there is not.
    fn entry(&mut self, key: K, room: bool, make: impl FnOnce() -> V) -> Option<usize> {
        if let Some(&i) = self.index.get(&key) {
            return Some(i);
        }
        if !room {
            return None;
        }
        let key = Arc::new(key);
        let i = self.entries.len();
        self.entries.push((key.clone(), make(), false));
        self.index.insert(key, i);
        Some(i)
    }

    /// The value of entry `i`, marked changed.
    fn change(&mut self, i: usize) -> Option<&mut V> {
        let (_, value, changed) = self.entries.get_mut(i)?;
        if !*changed {
            *changed = true;
            self.changed.push(i);
        }
        Some(value)
    }

    /// The changed entries (key, value, index), unmarked.
    fn take_changed(&mut self) -> Vec<(Arc<K>, V, usize)> {
        let mut out = Vec::with_capacity(self.changed.len());
        for i in std::mem::take(&mut self.changed) {
            if let Some((key, value, changed)) = self.entries.get_mut(i) {
                *changed = false;
                out.push((key.clone(), value.clone(), i));
            }
        }
        out
    }

    fn mark(&mut self, i: usize) {
        let _ = self.change(i);
    }
}

/// The changed series of one epoch, with their values at the snapshot.
pub struct Snapshot {
    pub epoch: u64,
    pub timestamp_ms: i64,
    spans: Vec<(Arc<SpanKey>, SpanValues, usize)>,
    edges: Vec<(Arc<EdgeKey>, EdgeValues, usize)>,
    with_metadata: bool,
}

impl Snapshot {
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.edges.is_empty()
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
        for (key, values, _) in &self.spans {
            w.span(key, values);
        }
        for (key, values, _) in &self.edges {
            w.edge(key, values);
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
    /// Timestamp of the last snapshot; the next is strictly later.
    last_timestamp_ms: i64,
    metadata_sent: bool,
}

impl DeriveState {
    pub fn new(cfg: Arc<DeriveConfig>) -> Self {
        let pending = PendingEdges::new(cfg.max_pending_edges, cfg.edge_wait);
        DeriveState {
            cfg,
            spans: Table::new(),
            edges: Table::new(),
            pending,
            epoch: 1,
            last_timestamp_ms: i64::MIN,
            metadata_sent: false,
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

    /// Closes the open epoch: the changed series and a timestamp later than any before.
    pub fn snapshot(&mut self, now_ms: i64) -> Snapshot {
        let epoch = self.epoch;
        self.epoch += 1;
        let timestamp_ms = now_ms.max(self.last_timestamp_ms.saturating_add(1));
        self.last_timestamp_ms = timestamp_ms;
        let spans = self.spans.take_changed();
        let edges = self.edges.take_changed();
        let changed = !spans.is_empty() || !edges.is_empty();
        let with_metadata = changed && !self.metadata_sent;
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
        if snapshot.with_metadata {
            self.metadata_sent = true;
        }
    }

    /// The snapshot was not stored: its series are written again by the next one.
    pub fn requeue(&mut self, snapshot: &Snapshot) {
        for (_, _, i) in &snapshot.spans {
            self.spans.mark(*i);
        }
        for (_, _, i) in &snapshot.edges {
            self.edges.mark(*i);
        }
    }

    /// Loads the last stored value of derived series (from [`super::restore`]), so counters
    /// continue where the previous process left them. Keys past `max_series` are not loaded;
    /// series this module would not have written are ignored. Returns the keys loaded.
    pub fn restore(&mut self, stored: Vec<(store::Labels, Sample)>) -> usize {
        let span_les = self.cfg.span_les();
        let edge_les = self.cfg.edge_les();
        let before = self.series_count();
        for (labels, sample) in stored {
            self.last_timestamp_ms = self.last_timestamp_ms.max(sample.timestamp_ms);
            let Some(parsed) = series::parse_series(&labels, &span_les, &edge_les) else {
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
                    if let Some(i) = self.spans.entry(key, room, make) {
                        if let Some((_, v, _)) = self.spans.entries.get_mut(i) {
                            series::restore_span(v, part, sample.value);
                        }
                    }
                }
                Parsed::Edge(key, part) => {
                    let bounds = &self.cfg.service_graph_buckets;
                    if let Some(i) = self.edges.entry(key, room, || EdgeValues::new(bounds)) {
                        if let Some((_, v, _)) = self.edges.entries.get_mut(i) {
                            series::restore_edge(v, part, sample.value);
                        }
                    }
                }
            }
        }
        self.series_count() - before
    }

    /// The current values of a span-metrics key (tests and debugging).
    pub fn span_values(&self, key: &SpanKey) -> Option<&SpanValues> {
        let i = *self.spans.index.get(key)?;
        self.spans.entries.get(i).map(|(_, v, _)| v)
    }

    /// The current values of an edge (tests and debugging).
    pub fn edge_values(&self, key: &EdgeKey) -> Option<&EdgeValues> {
        let i = *self.edges.index.get(key)?;
        self.edges.entries.get(i).map(|(_, v, _)| v)
    }
}
