//! The derived series: their keys, the cumulative values kept per key, how a key and its values
//! become Prometheus series (names and labels as Tempo's metrics-generator writes them), and
//! the way back from stored series to keys and values when counters are restored.
//!
//! Per span-metrics key `(service, span_name, span_kind, status_code)`:
//! `traces_spanmetrics_calls_total` and the histogram `traces_spanmetrics_latency_bucket{le}`
//! / `_sum` / `_count` in seconds. Per service-graph edge `(client, server, connection_type)`:
//! `traces_service_graph_request_total`, `..._request_failed_total` (written from the edge's
//! first request on, so `failed / total` has both sides) and the histograms
//! `..._request_server_seconds_*` and `..._request_client_seconds_*`. `span_kind` and
//! `status_code` are OTLP's enum names (`SPAN_KIND_SERVER`, `STATUS_CODE_ERROR`); a direct
//! client-server edge has no `connection_type` label (Tempo writes it empty).

use std::collections::HashMap;

use store::model::{stale_nan, METRIC_NAME_LABEL};
use store::traces::{SpanKind, StatusCode};
use store::{Label, Labels, MetricMetadata, MetricType, Sample, Series};

pub const CALLS_TOTAL: &str = "traces_spanmetrics_calls_total";
pub const LATENCY: &str = "traces_spanmetrics_latency";
pub const REQUEST_TOTAL: &str = "traces_service_graph_request_total";
pub const REQUEST_FAILED_TOTAL: &str = "traces_service_graph_request_failed_total";
pub const REQUEST_SERVER_SECONDS: &str = "traces_service_graph_request_server_seconds";
pub const REQUEST_CLIENT_SECONDS: &str = "traces_service_graph_request_client_seconds";

/// The client node of edges into a root server span: someone outside the traces (Tempo's name).
pub const USER_NODE: &str = "user";

/// How a service-graph edge was found (Tempo's `connection_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Connection {
    /// A client span and its server child: no label.
    Direct,
    /// A client span to a database.
    Database,
    /// A producer span and its consumer child, or an expired producer span naming its peer.
    MessagingSystem,
    /// One half only: an uninstrumented peer, or `user` calling a root server span.
    VirtualNode,
}

impl Connection {
    pub fn label(self) -> &'static str {
        match self {
            Connection::Direct => "",
            Connection::Database => "database",
            Connection::MessagingSystem => "messaging_system",
            Connection::VirtualNode => "virtual_node",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Connection::Direct,
            Connection::Database,
            Connection::MessagingSystem,
            Connection::VirtualNode,
        ]
        .into_iter()
        .find(|c| c.label() == text)
    }
}

/// A span-metrics series key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanKey {
    pub service: String,
    pub span_name: String,
    pub kind: SpanKind,
    pub status: StatusCode,
}

/// A service-graph edge.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EdgeKey {
    pub client: String,
    pub server: String,
    pub connection: Connection,
}

/// A cumulative histogram: `buckets[i]` counts observations `<= bounds[i]`, the last one
/// (`+Inf`) all of them.
#[derive(Clone, Debug, PartialEq)]
pub struct Hist {
    pub buckets: Vec<f64>,
    pub sum: f64,
    pub count: f64,
}

impl Hist {
    pub fn new(bounds: &[f64]) -> Self {
        Hist {
            buckets: vec![0.0; bounds.len() + 1],
            sum: 0.0,
            count: 0.0,
        }
    }

    pub fn observe(&mut self, bounds: &[f64], seconds: f64) {
        let first = bucket_index(bounds, seconds);
        for b in self.buckets.iter_mut().skip(first) {
            *b += 1.0;
        }
        self.sum += seconds;
        self.count += 1.0;
    }

    /// Adds a request's observations.
    pub fn merge(&mut self, local: &LocalHist) {
        let mut running = 0u64;
        for (b, n) in self.buckets.iter_mut().zip(&local.per_bucket) {
            running += n;
            *b += running as f64;
        }
        self.sum += local.sum;
        self.count += local.count as f64;
    }
}

/// The first bucket an observation falls in (`bounds.len()` is `+Inf`).
fn bucket_index(bounds: &[f64], v: f64) -> usize {
    // NaN (not possible from durations) would land in +Inf
    bounds.partition_point(|b| *b < v)
}

/// A request's observations before they are merged: per-bucket (not cumulative) counts, so
/// observing is a binary search and an increment.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalHist {
    pub per_bucket: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl LocalHist {
    pub fn new(bounds: &[f64]) -> Self {
        LocalHist {
            per_bucket: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, bounds: &[f64], seconds: f64) {
        if let Some(n) = self.per_bucket.get_mut(bucket_index(bounds, seconds)) {
            *n += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// The values of one span-metrics key.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanValues {
    pub calls: f64,
    pub latency: Hist,
}

/// The values of one edge.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeValues {
    pub total: f64,
    pub failed: f64,
    pub server: Hist,
    pub client: Hist,
}

/// A request's observations of one edge.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalEdge {
    pub total: u64,
    pub failed: u64,
    pub server: LocalHist,
    pub client: LocalHist,
}

impl LocalEdge {
    pub fn new(bounds: &[f64]) -> Self {
        LocalEdge {
            total: 0,
            failed: 0,
            server: LocalHist::new(bounds),
            client: LocalHist::new(bounds),
        }
    }

    pub fn observe(&mut self, bounds: &[f64], server_s: f64, client_s: f64, failed: bool) {
        self.total += 1;
        self.failed += u64::from(failed);
        self.server.observe(bounds, server_s);
        self.client.observe(bounds, client_s);
    }
}

impl EdgeValues {
    pub fn new(bounds: &[f64]) -> Self {
        EdgeValues {
            total: 0.0,
            failed: 0.0,
            server: Hist::new(bounds),
            client: Hist::new(bounds),
        }
    }

    pub fn merge(&mut self, local: &LocalEdge) {
        self.total += local.total as f64;
        self.failed += local.failed as f64;
        self.server.merge(&local.server);
        self.client.merge(&local.client);
    }
}

/// Bucket bounds as `le` values: shortest round-trip decimal, as Prometheus clients print them.
pub fn le_label(bound: f64) -> String {
    if bound == f64::INFINITY {
        "+Inf".to_string()
    } else {
        format!("{bound}")
    }
}

/// What a key writes in one flush.
pub enum Write<'a, V> {
    /// Its current values; `prior` (when given) one millisecond before them: a new key's
    /// zeros, or the values a key had before it went stale or before a restart, so the
    /// counts of this flush are an increase PromQL and the RED APIs see.
    Values { now: &'a V, prior: Option<&'a V> },
    /// A staleness marker on each of its series: the key went idle.
    Stale,
}

/// Builds the series of one flush.
pub struct SeriesWriter<'a> {
    pub timestamp_ms: i64,
    pub span_les: &'a [String],
    pub edge_les: &'a [String],
    pub out: Vec<Series>,
}

impl SeriesWriter<'_> {
    fn push<V>(
        &mut self,
        name: &str,
        base: &[Label],
        extra: Option<(&str, &str)>,
        write: &Write<'_, V>,
        value: impl Fn(&V) -> f64,
    ) {
        let mut labels = Vec::with_capacity(base.len() + 2);
        labels.push(Label::new(METRIC_NAME_LABEL, name));
        labels.extend(base.iter().cloned());
        if let Some((n, v)) = extra {
            labels.push(Label::new(n, v));
        }
        let samples = match write {
            Write::Stale => vec![Sample::new(self.timestamp_ms, stale_nan())],
            Write::Values { now, prior } => {
                let mut samples = Vec::with_capacity(2);
                if let Some(prior) = prior {
                    samples.push(Sample::new(
                        self.timestamp_ms.saturating_sub(1),
                        value(prior),
                    ));
                }
                samples.push(Sample::new(self.timestamp_ms, value(now)));
                samples
            }
        };
        self.out.push(Series {
            labels: Labels::new(labels),
            samples,
        });
    }

    fn hist<V>(
        &mut self,
        family: &str,
        base: &[Label],
        les: &[String],
        write: &Write<'_, V>,
        hist: fn(&V) -> &Hist,
    ) {
        let bucket = format!("{family}_bucket");
        for (i, le) in les.iter().enumerate() {
            self.push(&bucket, base, Some(("le", le)), write, |v| {
                hist(v).buckets.get(i).copied().unwrap_or(0.0)
            });
        }
        self.push(&format!("{family}_sum"), base, None, write, |v| hist(v).sum);
        self.push(&format!("{family}_count"), base, None, write, |v| {
            hist(v).count
        });
    }

    pub fn span(&mut self, key: &SpanKey, write: &Write<'_, SpanValues>) {
        let base = span_labels(key);
        self.push(CALLS_TOTAL, &base, None, write, |v| v.calls);
        let les = self.span_les;
        self.hist(LATENCY, &base, les, write, |v| &v.latency);
    }

    pub fn edge(&mut self, key: &EdgeKey, write: &Write<'_, EdgeValues>) {
        let base = edge_labels(key);
        self.push(REQUEST_TOTAL, &base, None, write, |v| v.total);
        self.push(REQUEST_FAILED_TOTAL, &base, None, write, |v| v.failed);
        let les = self.edge_les;
        self.hist(REQUEST_SERVER_SECONDS, &base, les, write, |v| &v.server);
        self.hist(REQUEST_CLIENT_SECONDS, &base, les, write, |v| &v.client);
    }
}

fn span_labels(key: &SpanKey) -> Vec<Label> {
    vec![
        Label::new("service", key.service.as_str()),
        Label::new("span_name", key.span_name.as_str()),
        Label::new("span_kind", key.kind.otlp_name()),
        Label::new("status_code", key.status.otlp_name()),
    ]
}

fn edge_labels(key: &EdgeKey) -> Vec<Label> {
    vec![
        Label::new("client", key.client.as_str()),
        Label::new("server", key.server.as_str()),
        Label::new("connection_type", key.connection.label()),
    ]
}

/// Metadata of the derived families, sent with the first flush.
pub fn metadata() -> Vec<MetricMetadata> {
    let m = |family: &str, metric_type, help: &str, unit: &str| MetricMetadata {
        metric_family: family.to_string(),
        metric_type,
        help: help.to_string(),
        unit: unit.to_string(),
    };
    vec![
        m(
            CALLS_TOTAL,
            MetricType::Counter,
            "Spans received, derived from traces.",
            "",
        ),
        m(
            LATENCY,
            MetricType::Histogram,
            "Span durations, derived from traces.",
            "seconds",
        ),
        m(
            REQUEST_TOTAL,
            MetricType::Counter,
            "Requests between two services, derived from traces.",
            "",
        ),
        m(
            REQUEST_FAILED_TOTAL,
            MetricType::Counter,
            "Failed requests between two services, derived from traces.",
            "",
        ),
        m(
            REQUEST_SERVER_SECONDS,
            MetricType::Histogram,
            "Request durations seen by the server, derived from traces.",
            "seconds",
        ),
        m(
            REQUEST_CLIENT_SECONDS,
            MetricType::Histogram,
            "Request durations seen by the client, derived from traces.",
            "seconds",
        ),
    ]
}

/// Which value of a key a stored series holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Part {
    Calls,
    Total,
    Failed,
    /// `(histogram, bucket index)`; the index `bounds.len()` is `+Inf`.
    Bucket(HistPart, usize),
    Sum(HistPart),
    Count(HistPart),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HistPart {
    Latency,
    Server,
    Client,
}

/// A stored series understood as one value of a derived key.
#[derive(Clone, Debug, PartialEq)]
pub enum Parsed {
    Span(SpanKey, Part),
    Edge(EdgeKey, Part),
}

fn parse_status(text: &str) -> Option<StatusCode> {
    [StatusCode::Unset, StatusCode::Ok, StatusCode::Error]
        .into_iter()
        .find(|s| s.otlp_name() == text)
}

/// Reads a stored series back into a key and the value it holds. `None` for anything this
/// module would not have written (other labels, unknown bucket bounds...): such series are
/// left alone rather than guessed at.
pub fn parse_series(labels: &Labels, span_les: &[String], edge_les: &[String]) -> Option<Parsed> {
    let name = labels.metric_name()?;
    let mut map: HashMap<&str, &str> = HashMap::with_capacity(labels.len());
    for l in labels {
        map.insert(l.name.as_str(), l.value.as_str());
    }
    let bucket = |family: HistPart, les: &[String]| -> Option<Part> {
        let le = *map.get("le")?;
        let i = les.iter().position(|x| x == le)?;
        Some(Part::Bucket(family, i))
    };
    let span_part = match name {
        CALLS_TOTAL => Some(Part::Calls),
        "traces_spanmetrics_latency_bucket" => Some(bucket(HistPart::Latency, span_les)?),
        "traces_spanmetrics_latency_sum" => Some(Part::Sum(HistPart::Latency)),
        "traces_spanmetrics_latency_count" => Some(Part::Count(HistPart::Latency)),
        _ => None,
    };
    if let Some(part) = span_part {
        let allowed = [
            "__name__",
            "service",
            "span_name",
            "span_kind",
            "status_code",
            "le",
        ];
        if map.keys().any(|k| !allowed.contains(k)) {
            return None;
        }
        if !matches!(part, Part::Bucket(..)) && map.contains_key("le") {
            return None;
        }
        let key = SpanKey {
            service: map.get("service")?.to_string(),
            span_name: map.get("span_name").copied().unwrap_or("").to_string(),
            kind: SpanKind::parse(map.get("span_kind")?)?,
            status: parse_status(map.get("status_code")?)?,
        };
        return Some(Parsed::Span(key, part));
    }
    let edge_part = match name {
        REQUEST_TOTAL => Part::Total,
        REQUEST_FAILED_TOTAL => Part::Failed,
        "traces_service_graph_request_server_seconds_bucket" => bucket(HistPart::Server, edge_les)?,
        "traces_service_graph_request_server_seconds_sum" => Part::Sum(HistPart::Server),
        "traces_service_graph_request_server_seconds_count" => Part::Count(HistPart::Server),
        "traces_service_graph_request_client_seconds_bucket" => bucket(HistPart::Client, edge_les)?,
        "traces_service_graph_request_client_seconds_sum" => Part::Sum(HistPart::Client),
        "traces_service_graph_request_client_seconds_count" => Part::Count(HistPart::Client),
        _ => return None,
    };
    let allowed = ["__name__", "client", "server", "connection_type", "le"];
    if map.keys().any(|k| !allowed.contains(k)) {
        return None;
    }
    if !matches!(edge_part, Part::Bucket(..)) && map.contains_key("le") {
        return None;
    }
    let key = EdgeKey {
        client: map.get("client")?.to_string(),
        server: map.get("server")?.to_string(),
        connection: Connection::parse(map.get("connection_type").copied().unwrap_or(""))?,
    };
    Some(Parsed::Edge(key, edge_part))
}

/// Sets the value `part` of a span key to a restored `value`.
pub fn restore_span(v: &mut SpanValues, part: Part, value: f64) {
    match part {
        Part::Calls => v.calls = value,
        Part::Bucket(HistPart::Latency, i) => set(&mut v.latency.buckets, i, value),
        Part::Sum(HistPart::Latency) => v.latency.sum = value,
        Part::Count(HistPart::Latency) => v.latency.count = value,
        _ => {}
    }
}

/// Sets the value `part` of an edge to a restored `value`.
pub fn restore_edge(v: &mut EdgeValues, part: Part, value: f64) {
    match part {
        Part::Total => v.total = value,
        Part::Failed => v.failed = value,
        Part::Bucket(HistPart::Server, i) => set(&mut v.server.buckets, i, value),
        Part::Bucket(HistPart::Client, i) => set(&mut v.client.buckets, i, value),
        Part::Sum(HistPart::Server) => v.server.sum = value,
        Part::Sum(HistPart::Client) => v.client.sum = value,
        Part::Count(HistPart::Server) => v.server.count = value,
        Part::Count(HistPart::Client) => v.client.count = value,
        _ => {}
    }
}

fn set(buckets: &mut [f64], i: usize, value: f64) {
    if let Some(b) = buckets.get_mut(i) {
        *b = value;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const BOUNDS: [f64; 3] = [0.1, 0.2, 0.4];

    #[test]
    fn observations_land_in_le_buckets_inclusively() {
        let mut h = Hist::new(&BOUNDS);
        for v in [0.05, 0.1, 0.15, 0.4, 3.0] {
            h.observe(&BOUNDS, v);
        }
        assert_eq!(h.buckets, vec![2.0, 3.0, 4.0, 5.0]);
        assert_eq!(h.count, 5.0);
        assert!((h.sum - 3.7).abs() < 1e-9);

        let mut local = LocalHist::new(&BOUNDS);
        for v in [0.05, 0.1, 0.15, 0.4, 3.0] {
            local.observe(&BOUNDS, v);
        }
        let mut merged = Hist::new(&BOUNDS);
        merged.merge(&local);
        assert_eq!(merged, h);
    }

    #[test]
    fn written_series_parse_back_to_their_key() {
        let les: Vec<String> = BOUNDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .map(le_label)
            .collect();
        let mut w = SeriesWriter {
            timestamp_ms: 5,
            span_les: &les,
            edge_les: &les,
            out: Vec::new(),
        };
        let span = SpanKey {
            service: "checkout".into(),
            span_name: "GET /cart".into(),
            kind: SpanKind::Server,
            status: StatusCode::Error,
        };
        let edge = EdgeKey {
            client: "frontend".into(),
            server: "checkout".into(),
            connection: Connection::Direct,
        };
        let mut sv = SpanValues {
            calls: 3.0,
            latency: Hist::new(&BOUNDS),
        };
        sv.latency.observe(&BOUNDS, 0.15);
        w.span(
            &span,
            &Write::Values {
                now: &sv,
                prior: None,
            },
        );
        w.edge(
            &edge,
            &Write::Values {
                now: &EdgeValues::new(&BOUNDS),
                prior: None,
            },
        );
        // 1 + 4 buckets + sum + count; 2 + 2 * 6
        assert_eq!(w.out.len(), 7 + 14);
        let calls = &w.out[0];
        assert_eq!(
            calls.labels.to_string(),
            "traces_spanmetrics_calls_total{service=\"checkout\", span_kind=\"SPAN_KIND_SERVER\", \
             span_name=\"GET /cart\", status_code=\"STATUS_CODE_ERROR\"}"
        );
        assert!(w.out.iter().any(|s| s.labels.to_string()
            == "traces_service_graph_request_total{client=\"frontend\", server=\"checkout\"}"));
        for s in &w.out {
            let parsed = parse_series(&s.labels, &les, &les).unwrap();
            match parsed {
                Parsed::Span(k, _) => assert_eq!(k, span),
                Parsed::Edge(k, _) => assert_eq!(k, edge),
            }
        }
        let bucket = w
            .out
            .iter()
            .find(|s| s.labels.get("le") == Some("0.2") && s.labels.get("service").is_some())
            .unwrap();
        assert_eq!(
            parse_series(&bucket.labels, &les, &les),
            Some(Parsed::Span(
                span.clone(),
                Part::Bucket(HistPart::Latency, 1)
            ))
        );
    }

    #[test]
    fn foreign_series_are_not_parsed() {
        let les = vec!["+Inf".to_string()];
        for text in [
            vec![
                ("__name__", "traces_spanmetrics_calls_total"),
                ("service", "a"),
            ],
            vec![
                ("__name__", "traces_spanmetrics_calls_total"),
                ("service", "a"),
                ("span_kind", "SPAN_KIND_SERVER"),
                ("status_code", "STATUS_CODE_OK"),
                ("job", "tempo"),
            ],
            vec![
                ("__name__", "traces_spanmetrics_latency_bucket"),
                ("service", "a"),
                ("span_kind", "SPAN_KIND_SERVER"),
                ("status_code", "STATUS_CODE_OK"),
                ("le", "0.5"),
            ],
            vec![
                ("__name__", "traces_service_graph_request_total"),
                ("client", "a"),
            ],
            vec![
                ("__name__", "traces_service_graph_request_total"),
                ("client", "a"),
                ("server", "b"),
                ("connection_type", "teleport"),
            ],
        ] {
            let labels = Labels::from_pairs(text.clone());
            assert_eq!(parse_series(&labels, &les, &les), None, "{text:?}");
        }
    }
}
