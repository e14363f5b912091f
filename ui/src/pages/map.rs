//! Service map: the call graph of `/api/v1/service-graph` over the time range, drawn as SVG
//! with the layered layout of [`super::map_layout`] (callers left, callees right).
//!
//! A node shows its name, request rate and success rate, coloured against the `slo` threshold
//! as on the services page; virtual nodes (databases, external hosts: no spans of their own)
//! are drawn as dashed pills. Edges are arrows labelled with their rate and error rate and
//! coloured by their success rate. Clicking a node opens `/services/<name>`; clicking an edge
//! selects it (`from`, `to`, `conn` in the URL) and a panel shows its numbers with a link to its
//! traces. Everything is a plain link, so it works before hydration and can be shared.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};

use crate::fetch::{enc, Api};
use crate::format;
use crate::i18n::tr;
use crate::pages::map_layout::{layout, Dims, Layout};
use crate::pages::services::{health_class, slo_of};
use crate::pages::{Empty, ErrorBox};
use crate::time::{now_secs, range_link, tick, with_query, TimeRange};

/// A node of `/api/v1/service-graph`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphNode {
    pub id: String,
    #[serde(default, rename = "virtual")]
    pub is_virtual: bool,
    #[serde(default)]
    pub request_rate: Option<f64>,
    #[serde(default)]
    pub error_rate: Option<f64>,
    #[serde(default)]
    pub success_rate: Option<f64>,
    #[serde(default)]
    pub p95: Option<f64>,
}

/// An edge of `/api/v1/service-graph`: `source` calls `target`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphEdge {
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub connection_type: String,
    #[serde(default)]
    pub request_rate: Option<f64>,
    #[serde(default)]
    pub error_rate: Option<f64>,
    #[serde(default)]
    pub success_rate: Option<f64>,
    #[serde(default)]
    pub requests: Option<f64>,
    #[serde(default)]
    pub errors: Option<f64>,
    #[serde(default)]
    pub p95: Option<f64>,
}

/// `data` of `/api/v1/service-graph`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Graph {
    #[serde(default)]
    pub nodes: Vec<GraphNode>,
    #[serde(default)]
    pub edges: Vec<GraphEdge>,
}

impl Graph {
    /// Every node named by an edge, even if the answer did not list it (as virtual).
    pub fn complete(mut self) -> Self {
        let known: std::collections::BTreeSet<String> =
            self.nodes.iter().map(|n| n.id.clone()).collect();
        let mut missing: Vec<String> = Vec::new();
        for e in &self.edges {
            for name in [&e.source, &e.target] {
                if !known.contains(name) && !missing.contains(name) {
                    missing.push(name.clone());
                }
            }
        }
        self.nodes.extend(missing.into_iter().map(|id| GraphNode {
            id,
            is_virtual: true,
            request_rate: None,
            error_rate: None,
            success_rate: None,
            p95: None,
        }));
        self
    }

    /// The layout of the graph: node indices as in `nodes`, edges as in `edges`.
    pub fn layout(&self, dims: &Dims) -> Layout {
        let index: BTreeMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let pairs: Vec<(usize, usize)> = self
            .edges
            .iter()
            .map(|e| {
                (
                    index.get(e.source.as_str()).copied().unwrap_or(usize::MAX),
                    index.get(e.target.as_str()).copied().unwrap_or(usize::MAX),
                )
            })
            .collect();
        layout(self.nodes.len(), &pairs, dims)
    }
}

pub async fn load_graph(api: &Api, start: f64, end: f64) -> Result<Graph, String> {
    api.get_data::<Graph>(&format!(
        "/api/v1/service-graph?start={start:.3}&end={end:.3}"
    ))
    .await
    .map(Graph::complete)
}

/// An SVG path through `points`: horizontal S-curves between consecutive points, so edges
/// leave and enter boxes level.
pub fn curve(points: &[(f64, f64)]) -> String {
    let mut d = String::new();
    for (i, &(x, y)) in points.iter().enumerate() {
        if i == 0 {
            d.push_str(&format!("M{x:.1},{y:.1}"));
        } else {
            let (px, py) = points[i - 1];
            let mx = (px + x) / 2.0;
            d.push_str(&format!(" C{mx:.1},{py:.1} {mx:.1},{y:.1} {x:.1},{y:.1}"));
        }
    }
    d
}

/// The point where an edge's label goes: the middle of its middle segment.
pub fn label_point(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    if points.len() < 2 {
        return None;
    }
    let i = (points.len() - 1) / 2;
    let (a, b) = (points[i], points[i + 1]);
    Some(((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0))
}

/// A name cut to `max` characters with an ellipsis (the full name is in the tooltip).
pub fn shorten(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        name.to_string()
    } else {
        let mut s: String = name.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// The stroke width of an edge: 1.2 to 4.5 by its rate against the busiest edge's (log scale,
/// so quiet edges stay visible).
fn edge_width(rate: Option<f64>, max_rate: f64) -> f64 {
    match rate {
        Some(r) if r > 0.0 && max_rate > 0.0 => {
            let f = (1.0 + r).ln() / (1.0 + max_rate).ln().max(1e-9);
            1.2 + 3.3 * f.clamp(0.0, 1.0)
        }
        _ => 1.2,
    }
}

fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

/// The selected edge of the URL: `from`, `to` and `conn`.
#[derive(Clone, Debug, PartialEq)]
struct Selected {
    from: String,
    to: String,
    conn: String,
}

#[component]
pub fn MapPage() -> impl IntoView {
    let api = Api::current();
    let query = use_query_map();
    let data = Resource::new(
        move || (query.with(TimeRange::from_query), tick()),
        move |(range, _)| {
            let api = api.clone();
            async move {
                let (start, end) = range.resolve(now_secs());
                load_graph(&api, start, end).await
            }
        },
    );
    let view_of = move |g: Graph| {
        let (slo, selected) = query.with(|q| {
            let sel = match (q.get("from"), q.get("to")) {
                (Some(from), Some(to)) => Some(Selected {
                    from,
                    to,
                    conn: q.get("conn").unwrap_or_default(),
                }),
                _ => None,
            };
            (slo_of(q), sel)
        });
        if g.nodes.is_empty() {
            return view! {
                <Empty text=tr(
                    "No calls between services in this time range. Send traces whose spans call other services (client and server spans) to see the map.",
                    "该时间范围内没有服务间调用。发送包含跨服务调用（客户端与服务端 span）的链路数据后会显示拓扑。",
                )/>
            }
            .into_any();
        }
        let dims = Dims::default();
        let lay = g.layout(&dims);
        let max_rate = g
            .edges
            .iter()
            .filter_map(|e| e.request_rate)
            .fold(0.0, f64::max);
        let edges_view = g
            .edges
            .iter()
            .zip(lay.edges.iter())
            .map(|(e, p)| {
                let health = health_class(e.success_rate, slo);
                let width = edge_width(e.request_rate, max_rate);
                let d = if p.self_loop {
                    lay_self_loop(&g, &lay, &e.source, &dims)
                } else {
                    curve(&p.points)
                };
                let label_at = if p.self_loop {
                    lay_node(&g, &lay, &e.source)
                        .map(|(x, y)| (x, y - dims.node_h / 2.0 - 26.0))
                } else {
                    label_point(&p.points)
                };
                let is_sel = selected.as_ref().is_some_and(|s| {
                    s.from == e.source && s.to == e.target && s.conn == e.connection_type
                });
                let href = with_query(&[
                    ("from", Some(e.source.clone())),
                    ("to", Some(e.target.clone())),
                    ("conn", Some(e.connection_type.clone())),
                ]);
                let title = format!(
                    "{} → {}{}: {} · {} {}",
                    e.source,
                    e.target,
                    if e.connection_type.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", e.connection_type)
                    },
                    opt(e.request_rate, format::rate),
                    opt(e.error_rate, format::rate),
                    tr("errors", "错误"),
                );
                let label = format!(
                    "{} · {}",
                    opt(e.request_rate, format::rate),
                    opt(e.success_rate.map(|s| 1.0 - s), format::percent)
                );
                let class = format!(
                    "edge {health}{}{}",
                    if is_sel { " selected" } else { "" },
                    if p.reversed { " back" } else { "" }
                );
                view! {
                    <g class=class data-source=e.source.clone() data-target=e.target.clone()>
                        <a href=href>
                            <title>{title}</title>
                            <path class="edge-hit" d=d.clone()/>
                            <path
                                class="edge-line"
                                d=d
                                stroke-width=format!("{width:.2}")
                                marker-end=format!("url(#arrow-{})", marker_of(health))
                            />
                            {label_at.map(|(x, y)| view! {
                                <text class="edge-label" x=format!("{x:.1}") y=format!("{:.1}", y - 4.0) text-anchor="middle">{label.clone()}</text>
                            })}
                        </a>
                    </g>
                }
            })
            .collect_view();
        let nodes_view = g
            .nodes
            .iter()
            .zip(lay.nodes.iter())
            .map(|(n, p)| {
                let health = health_class(n.success_rate, slo);
                let (x0, y0) = (p.x - dims.node_w / 2.0, p.y - dims.node_h / 2.0);
                let name = shorten(&n.id, 22);
                let stats = format!(
                    "{} · {}",
                    opt(n.request_rate, format::rate),
                    opt(n.success_rate, format::percent)
                );
                let title = format!(
                    "{}{}\n{}: {}\n{}: {}\np95: {}",
                    n.id,
                    if n.is_virtual {
                        tr(" (not instrumented: database, external host…)", "（未接入：数据库、外部主机等）")
                    } else {
                        ""
                    },
                    tr("Requests", "请求率"),
                    opt(n.request_rate, format::rate),
                    tr("Success rate", "成功率"),
                    opt(n.success_rate, format::percent),
                    opt(n.p95, format::duration_secs),
                );
                let rx = if n.is_virtual { dims.node_h / 2.0 } else { 6.0 };
                let class = format!(
                    "node {health}{}",
                    if n.is_virtual { " virtual" } else { "" }
                );
                // a virtual node has no page of its own
                let href = (!n.is_virtual)
                    .then(|| range_link(&format!("/services/{}", enc(&n.id)), &[]));
                view! {
                    <g class=class data-node=n.id.clone()>
                        <a href=href>
                            <title>{title}</title>
                            <rect
                                x=format!("{x0:.1}")
                                y=format!("{y0:.1}")
                                width=dims.node_w
                                height=dims.node_h
                                rx=rx
                            />
                            <text class="node-name" x=format!("{:.1}", p.x) y=format!("{:.1}", p.y - 4.0) text-anchor="middle">{name}</text>
                            <text class="node-stats" x=format!("{:.1}", p.x) y=format!("{:.1}", p.y + 13.0) text-anchor="middle">{stats}</text>
                        </a>
                    </g>
                }
            })
            .collect_view();
        let detail = selected.and_then(|s| {
            g.edges
                .iter()
                .find(|e| e.source == s.from && e.target == s.to && e.connection_type == s.conn)
                .cloned()
        });
        let close = with_query(&[("from", None), ("to", None), ("conn", None)]);
        let detail_view = detail.map(|e| {
            let health = health_class(e.success_rate, slo);
            let traces = range_link("/traces", &[("service", e.source.clone())]);
            let errors = range_link(
                "/traces",
                &[("service", e.source.clone()), ("error", "true".into())],
            );
            view! {
                <aside class="panel edge-detail">
                    <div class="edge-detail-head">
                        <h2>{e.source.clone()}" → "{e.target.clone()}</h2>
                        <a class="close" href=close.clone() title=tr("Close", "关闭")>"×"</a>
                    </div>
                    <table class="kv"><tbody>
                        <tr><th>{tr("Connection", "连接类型")}</th><td>{if e.connection_type.is_empty() { "-".to_string() } else { e.connection_type.clone() }}</td></tr>
                        <tr><th>{tr("Requests", "请求率")}</th><td class="num">{opt(e.request_rate, format::rate)}</td></tr>
                        <tr><th>{tr("Errors", "错误率")}</th><td class="num">{opt(e.error_rate, format::rate)}</td></tr>
                        <tr><th>{tr("Success rate", "成功率")}</th><td class=format!("num {health}")>{opt(e.success_rate, format::percent)}</td></tr>
                        <tr><th>"p95"</th><td class="num">{opt(e.p95, format::duration_secs)}</td></tr>
                        <tr><th>{tr("Calls in range", "范围内调用数")}</th><td class="num">{opt(e.requests, format::si)}" / "{opt(e.errors, format::si)}" "{tr("failed", "失败")}</td></tr>
                    </tbody></table>
                    <p class="edge-links">
                        <a href=traces>{tr("Traces of ", "链路：")}{e.source.clone()}</a>
                        " · "
                        <a href=errors>{tr("Error traces", "错误链路")}</a>
                    </p>
                </aside>
            }
        });
        let (w, h) = (lay.width, lay.height);
        view! {
            <div class="map-wrap">
                <div class="map-scroll">
                    <svg
                        class="service-map"
                        width=format!("{w:.0}")
                        height=format!("{h:.0}")
                        viewBox=format!("0 0 {w:.0} {h:.0}")
                        role="img"
                    >
                        <defs>
                            {["ok", "warn", "bad", "none"].into_iter().map(|m| view! {
                                <marker
                                    id=format!("arrow-{m}")
                                    class=format!("arrow arrow-{m}")
                                    viewBox="0 0 10 10"
                                    refX="9"
                                    refY="5"
                                    markerWidth="7"
                                    markerHeight="7"
                                    markerUnits="userSpaceOnUse"
                                    orient="auto"
                                >
                                    <path d="M0,0 L10,5 L0,10 z"/>
                                </marker>
                            }).collect_view()}
                        </defs>
                        <g class="edges">{edges_view}</g>
                        <g class="nodes">{nodes_view}</g>
                    </svg>
                </div>
                {detail_view}
            </div>
        }
        .into_any()
    };
    view! {
        <section class="panel map-panel">
            <div class="map-head">
                <h1>{tr("Service map", "服务拓扑")}</h1>
                <span class="map-legend">
                    <span class="health-ok">"■ "{tr("healthy", "健康")}</span>
                    <span class="health-warn">"■ "{tr("degraded", "降级")}</span>
                    <span class="health-bad">"■ "{tr("failing", "故障")}</span>
                    <span class="legend-virtual">"▭ "{tr("not instrumented (database, external)", "未接入（数据库、外部服务）")}</span>
                </span>
            </div>
            <Transition fallback=|| view! { <div class="loading">"…"</div> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(g) => view_of(g),
                        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// The marker id suffix of a health class.
fn marker_of(health: &str) -> &'static str {
    match health {
        "health-ok" => "ok",
        "health-warn" => "warn",
        "health-bad" => "bad",
        _ => "none",
    }
}

fn lay_node(g: &Graph, lay: &Layout, id: &str) -> Option<(f64, f64)> {
    let i = g.nodes.iter().position(|n| n.id == id)?;
    lay.nodes.get(i).map(|p| (p.x, p.y))
}

/// A loop above a node for a service calling itself.
fn lay_self_loop(g: &Graph, lay: &Layout, id: &str, dims: &Dims) -> String {
    let Some((x, y)) = lay_node(g, lay, id) else {
        return String::new();
    };
    let top = y - dims.node_h / 2.0;
    format!(
        "M{:.1},{top:.1} C{:.1},{:.1} {:.1},{:.1} {:.1},{top:.1}",
        x - 20.0,
        x - 30.0,
        top - 30.0,
        x + 30.0,
        top - 30.0,
        x + 20.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_answers_decode_and_missing_nodes_are_added() {
        let g: Graph = serde_json::from_str(
            r#"{"nodes":[{"id":"api","virtual":false,"requestRate":2.0,"successRate":0.5,"errorRate":1.0,"requests":10,"errors":5,"p95":0.1}],
                "edges":[{"source":"api","target":"postgres","connectionType":"database","requestRate":1.0,"errorRate":0,"successRate":1,"requests":5,"errors":0,"p95":null}]}"#,
        )
        .unwrap();
        let g = g.complete();
        assert_eq!(g.nodes.len(), 2);
        assert!(g.nodes[1].is_virtual);
        let lay = g.layout(&Dims::default());
        assert!(lay.nodes[0].layer < lay.nodes[1].layer);
        assert_eq!(lay.edges[0].points.len(), 2);
    }

    #[test]
    fn paths_and_labels() {
        assert_eq!(
            curve(&[(0.0, 0.0), (10.0, 20.0)]),
            "M0.0,0.0 C5.0,0.0 5.0,20.0 10.0,20.0"
        );
        assert_eq!(label_point(&[(0.0, 0.0), (10.0, 20.0)]), Some((5.0, 10.0)));
        assert_eq!(label_point(&[(0.0, 0.0)]), None);
        assert_eq!(shorten("checkout", 22), "checkout");
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert!(edge_width(Some(100.0), 100.0) > edge_width(Some(1.0), 100.0));
        assert_eq!(edge_width(None, 5.0), 1.2);
    }
}
