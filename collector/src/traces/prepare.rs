//! One request's share of the derived metrics, computed without any lock (on the blocking pool,
//! with decoding and conversion): span metrics aggregated per key, edges that are complete on
//! their own, and the halves that need pairing.
//!
//! Edges complete on their own:
//! - a client span to a database (`db.system`, `db.system.name`, `db.name`, `db.namespace`):
//!   databases send no server spans, so the edge goes at once to a node named as
//!   [`classify::database_node`] says, `connection_type="database"`, both histograms observing
//!   the client span's duration;
//! - a server or consumer span with no parent: nobody traced the caller, so the edge comes from
//!   the virtual node `user` (as Tempo names it), `connection_type="virtual_node"`, both
//!   histograms observing the server span's duration.
//!
//! Label values (service and span names, node names) longer than `max_label_value_bytes` are
//! cut on a character boundary, so every key fits the metrics store's label limits.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use store::traces::{SpanBatch, SpanKind, StatusCode};

use super::classify;
use super::graph::{Half, Side};
use super::series::{Connection, EdgeKey, LocalEdge, LocalHist, SpanKey, USER_NODE};
use super::DeriveConfig;

/// A request's derived observations, ready to merge under the lock.
#[derive(Debug, Default)]
pub struct Prepared {
    pub(crate) spans: Vec<(SpanKey, LocalHist)>,
    pub(crate) edges: Vec<(EdgeKey, LocalEdge)>,
    pub(crate) halves: Vec<Half>,
}

impl Prepared {
    /// Spans observed.
    pub fn span_count(&self) -> u64 {
        self.spans.iter().map(|(_, h)| h.count).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.edges.is_empty() && self.halves.is_empty()
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
pub(crate) fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while cut > 0 && !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

fn clip_cow(s: Cow<'_, str>, max: usize) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(clip(b, max)),
        Cow::Owned(o) => Cow::Owned(clip(&o, max).to_string()),
    }
}

/// Computes a batch's derived observations.
pub fn prepare(batch: &SpanBatch, cfg: &DeriveConfig) -> Prepared {
    let max = cfg.max_label_value_bytes;
    let span_bounds = &cfg.spanmetrics_buckets;
    let edge_bounds = &cfg.service_graph_buckets;
    let mut spans: HashMap<(&str, &str, SpanKind, StatusCode), LocalHist> = HashMap::new();
    let mut edges: HashMap<(&str, Cow<'_, str>, Connection), LocalEdge> = HashMap::new();
    let mut halves = Vec::new();
    for rs in &batch.resource_spans {
        let service = clip(&rs.resource.service_name, max);
        let mut service_arc: Option<Arc<str>> = None;
        for span in &rs.spans {
            let failed = classify::is_error(span);
            let status = if failed {
                StatusCode::Error
            } else {
                span.status_code
            };
            let seconds = span.duration_nanos() as f64 / 1e9;
            spans
                .entry((service, clip(&span.name, max), span.kind, status))
                .or_insert_with(|| LocalHist::new(span_bounds))
                .observe(span_bounds, seconds);
            let side = match span.kind {
                SpanKind::Client | SpanKind::Producer => Side::Client,
                SpanKind::Server | SpanKind::Consumer => Side::Server,
                SpanKind::Internal | SpanKind::Unspecified => continue,
            };
            if side == Side::Client && span.kind == SpanKind::Client {
                if let Some(db) = classify::database_node(&span.attributes) {
                    edges
                        .entry((service, clip_cow(db, max), Connection::Database))
                        .or_insert_with(|| LocalEdge::new(edge_bounds))
                        .observe(edge_bounds, seconds, seconds, failed);
                    continue;
                }
            }
            let messaging = matches!(span.kind, SpanKind::Producer | SpanKind::Consumer);
            let span_id = match side {
                Side::Client => span.span_id,
                Side::Server => match span.parent_span_id {
                    Some(parent) => parent,
                    None => {
                        edges
                            .entry((USER_NODE, Cow::Borrowed(service), Connection::VirtualNode))
                            .or_insert_with(|| LocalEdge::new(edge_bounds))
                            .observe(edge_bounds, seconds, seconds, failed);
                        continue;
                    }
                },
            };
            let service = service_arc
                .get_or_insert_with(|| Arc::from(service))
                .clone();
            let peer = match side {
                Side::Client => {
                    classify::peer_node(&span.attributes).map(|p| clip_cow(p, max).into_owned())
                }
                Side::Server => None,
            };
            halves.push(Half {
                trace_id: span.trace_id,
                span_id,
                side,
                service,
                seconds,
                failed,
                messaging,
                peer,
            });
        }
    }
    Prepared {
        spans: spans
            .into_iter()
            .map(|((service, name, kind, status), h)| {
                (
                    SpanKey {
                        service: service.to_string(),
                        span_name: name.to_string(),
                        kind,
                        status,
                    },
                    h,
                )
            })
            .collect(),
        edges: edges
            .into_iter()
            .map(|((client, server, connection), e)| {
                (
                    EdgeKey {
                        client: client.to_string(),
                        server: server.into_owned(),
                        connection,
                    },
                    e,
                )
            })
            .collect(),
        halves,
    }
}
