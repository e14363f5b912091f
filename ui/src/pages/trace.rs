//! Trace view `/traces/:trace_id`: the waterfall of one trace from `/api/v1/traces/{id}`.
//!
//! Spans form a collapsible tree (see [`super::waterfall`] for how unordered spans, missing
//! parents and skewed clocks are handled); each bar sits on the trace's time axis in its
//! service's colour, error spans are marked. Clicking a span opens its details (attributes,
//! resource attributes, events, links, status) and links to its log records. The open spans
//! are in the URL (`span=<id>,<id>`), so a link to a span can be shared; folded subtrees are
//! a local view state.

use std::collections::HashSet;
use std::sync::Arc;

use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};
use leptos_router::NavigateOptions;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::fetch::{enc, Api};
use crate::format;
use crate::i18n::tr;
use crate::pages::waterfall::{
    axis_ticks, bar, build_tree, depth_of, offset_pct, service_color, visible_rows, Node, SpanRef,
};
use crate::pages::ErrorBox;
use crate::time::{query_url, range_link, tick};

/// `/api/v1/traces/{id}`'s `data`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceData {
    pub trace_id: String,
    #[serde(default)]
    pub root_service: String,
    #[serde(default)]
    pub root_operation: String,
    pub start_time_unix_nano: String,
    pub end_time_unix_nano: String,
    pub duration_nanos: u64,
    pub span_count: usize,
    pub error_count: usize,
    #[serde(default)]
    pub services: Vec<String>,
    pub spans: Vec<SpanData>,
    /// The trace's log records in the log API (absent when Lookout keeps no logs).
    #[serde(default)]
    pub logs_url: Option<String>,
    /// How many there are; `None` when the log store could not count them.
    #[serde(default)]
    pub log_count: Option<u64>,
}

/// One span of a trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpanData {
    pub span_id: String,
    #[serde(default)]
    pub parent_span_id: Option<String>,
    #[serde(default)]
    pub trace_state: String,
    pub service: String,
    pub name: String,
    #[serde(default)]
    pub kind: String,
    pub start_time_unix_nano: String,
    pub end_time_unix_nano: String,
    pub duration_nanos: u64,
    pub status: Status,
    #[serde(default)]
    pub attributes: Attrs,
    #[serde(default)]
    pub events: Vec<EventData>,
    #[serde(default)]
    pub links: Vec<LinkData>,
    #[serde(default)]
    pub resource_attributes: Attrs,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default)]
    pub dropped_attributes_count: u32,
    #[serde(default)]
    pub dropped_events_count: u32,
    #[serde(default)]
    pub dropped_links_count: u32,
}

impl SpanData {
    fn start(&self) -> u64 {
        nanos(&self.start_time_unix_nano)
    }
    fn end(&self) -> u64 {
        nanos(&self.end_time_unix_nano)
    }
    fn is_error(&self) -> bool {
        self.status.code == "error"
    }
}

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Scope {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventData {
    pub time_unix_nano: String,
    pub name: String,
    #[serde(default)]
    pub attributes: Attrs,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkData {
    pub trace_id: String,
    pub span_id: String,
    #[serde(default)]
    pub trace_state: String,
    #[serde(default)]
    pub attributes: Attrs,
}

/// Attributes in the order the API sent them (a JSON object), each value as text: strings as
/// they are, everything else as JSON (`500`, `true`, `["a","b"]`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Attrs(pub Vec<(String, String)>);

impl Serialize for Attrs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Attrs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AttrsVisitor;
        impl<'de> Visitor<'de> for AttrsVisitor {
            type Value = Attrs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of attributes")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attrs, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    let text = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    out.push((k, text));
                }
                Ok(Attrs(out))
            }
        }
        deserializer.deserialize_map(AttrsVisitor)
    }
}

/// Unix nanoseconds as the API writes them (a string); 0 when unreadable.
fn nanos(text: &str) -> u64 {
    text.parse().unwrap_or(0)
}

async fn load(api: Api, id: String) -> Result<TraceData, String> {
    let id = id.trim().to_ascii_lowercase();
    if id.is_empty() {
        return Err(tr("No trace id in the address.", "地址中没有链路 ID。").to_string());
    }
    api.get_data(&format!("/api/v1/traces/{}", enc(&id))).await
}

/// The span ids of a `span` URL parameter.
pub fn split_ids(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `open` with `id` added or removed, as a `span` parameter (`None` when none is left open).
pub fn toggled(open: &[String], id: &str) -> Option<String> {
    let mut ids: Vec<&str> = open
        .iter()
        .map(String::as_str)
        .filter(|o| *o != id)
        .collect();
    if ids.len() == open.len() {
        ids.push(id);
    }
    (!ids.is_empty()).then(|| ids.join(","))
}

/// `pairs` (a URL's query) with `key` set to `value` (removed when `None`), other keys kept
/// in their order.
pub fn set_param(
    pairs: &[(String, String)],
    key: &str,
    value: Option<String>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = pairs.iter().filter(|(k, _)| k != key).cloned().collect();
    if let Some(v) = value {
        out.push((key.to_string(), v));
    }
    out
}

/// Seconds around a trace within which its log records are looked for, when the API does not
/// say (the API uses the same margin).
const LOGS_MARGIN_SECS: u64 = 60;

/// The log page's URL for a trace's (or one span's) records: the query and window of the
/// API's `logsUrl` when there is one, else `trace_id:<id>` around the trace's own times.
pub fn logs_link(
    logs_url: Option<&str>,
    trace_id: &str,
    span_id: Option<&str>,
    trace_start_nanos: u64,
    trace_end_nanos: u64,
) -> String {
    let from_api = |key: &str| -> Option<String> {
        let q = logs_url?.split_once('?')?.1;
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    };
    let mut query = from_api("query").unwrap_or_else(|| format!("trace_id:{trace_id}"));
    if let Some(span) = span_id {
        query = format!("{query} span_id:{span}");
    }
    let start = from_api("start").unwrap_or_else(|| {
        (trace_start_nanos / 1_000_000_000)
            .saturating_sub(LOGS_MARGIN_SECS)
            .to_string()
    });
    let end = from_api("end").unwrap_or_else(|| {
        (trace_end_nanos.div_ceil(1_000_000_000) + LOGS_MARGIN_SECS).to_string()
    });
    query_url(
        "/logs",
        &[
            ("query".into(), query),
            ("start".into(), start),
            ("end".into(), end),
        ],
    )
}

/// Indentation stops growing past this depth, so deep traces keep their names readable.
const MAX_INDENT_DEPTH: usize = 24;

/// What every row of one rendered trace shares.
struct Ctx {
    trace_id: String,
    spans: Vec<SpanData>,
    nodes: Vec<Node>,
    t0: u64,
    total: u64,
    t_end: u64,
    logs_url: Option<String>,
    /// The page's path and query, to build the rows' `span=` links.
    path: String,
    pairs: Vec<(String, String)>,
}

impl Ctx {
    fn span_link(&self, open: &[String], id: &str) -> String {
        query_url(
            &self.path,
            &set_param(&self.pairs, "span", toggled(open, id)),
        )
    }
}

#[component]
pub fn TracePage() -> impl IntoView {
    let api = Api::current();
    let params = use_params_map();
    let query = use_query_map();
    let data = Resource::new(
        move || {
            (
                params.with(|p| p.get("trace_id").unwrap_or_default()),
                tick(),
            )
        },
        move |(id, _)| load(api.clone(), id),
    );
    // folded subtrees (span ids); kept across refreshes of the same trace
    let collapsed = RwSignal::new(HashSet::<String>::new());
    let open = Memo::new(move |_| query.with(|q| split_ids(&q.get("span").unwrap_or_default())));
    view! {
        <Transition fallback=|| view! { <section class="panel"><div class="loading">"…"</div></section> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(t) => trace_view(t, collapsed, open).into_any(),
                    Err(e) => {
                        let id = params.with_untracked(|p| p.get("trace_id").unwrap_or_default());
                        view! {
                            <section class="panel">
                                <h1>{tr("Trace", "链路")} " " <code>{id}</code></h1>
                                <ErrorBox message=e/>
                                <p class="trace-hint">
                                    {tr(
                                        "A trace id is 32 hex characters. Traces older than the retention are gone.",
                                        "链路 ID 为 32 位十六进制字符；超过保留期的链路已被删除。",
                                    )}
                                    " "
                                    <a href=range_link("/traces", &[])>{tr("Search traces", "搜索链路")}</a>
                                </p>
                            </section>
                        }
                        .into_any()
                    }
                }
            })}
        </Transition>
    }
}

fn stat(label: &'static str, value: String, class: &'static str) -> AnyView {
    view! {
        <div class=format!("trace-stat {class}")>
            <span class="trace-stat-label">{label}</span>
            <span class="trace-stat-value">{value}</span>
        </div>
    }
    .into_any()
}

fn trace_view(
    t: TraceData,
    collapsed: RwSignal<HashSet<String>>,
    open: Memo<Vec<String>>,
) -> AnyView {
    let navigate = use_navigate();
    let query = use_query_map();
    let t0 = nanos(&t.start_time_unix_nano);
    let t_end = nanos(&t.end_time_unix_nano).max(t0);
    let total = t.duration_nanos.max(t_end - t0);
    let nodes = {
        let refs: Vec<SpanRef<'_>> = t
            .spans
            .iter()
            .map(|s| SpanRef {
                id: &s.span_id,
                parent: s.parent_span_id.as_deref(),
                start: s.start(),
                end: s.end(),
            })
            .collect();
        build_tree(&refs)
    };
    let depth = depth_of(&nodes);
    let (ticks, spacing) = axis_ticks(total);
    let pairs: Vec<(String, String)> = query.with_untracked(|q| {
        q.clone()
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v))
            .collect()
    });
    let ctx = Arc::new(Ctx {
        trace_id: t.trace_id.clone(),
        path: format!("/traces/{}", enc(&t.trace_id)),
        spans: t.spans,
        nodes,
        t0,
        total,
        t_end,
        logs_url: t.logs_url.clone(),
        pairs,
    });
    let foldable: Vec<String> = ctx
        .nodes
        .iter()
        .filter(|n| n.children > 0)
        .map(|n| ctx.spans[n.index].span_id.clone())
        .collect();
    let logs_href = logs_link(t.logs_url.as_deref(), &t.trace_id, None, t0, t_end);
    let logs_label = match t.log_count {
        Some(n) => format!("{} ({n})", tr("Logs of this trace", "本链路日志")),
        None => tr("Logs of this trace", "本链路日志").to_string(),
    };
    let service_chips = t
        .services
        .iter()
        .map(|s| {
            let href = range_link("/traces", &[("service", s.clone())]);
            view! {
                <a class="svc-chip" href=href style=format!("--svc:{}", service_color(s))>{s.clone()}</a>
            }
        })
        .collect_view();
    let axis = ticks
        .into_iter()
        .map(|(p, secs)| {
            view! { <span class="wf-tick" style=format!("left:{p:.4}%")>{format::duration_secs(secs)}</span> }
        })
        .collect_view();
    let rows_ctx = ctx.clone();
    let each = move || {
        collapsed
            .with(|c| visible_rows(&rows_ctx.nodes, |i| c.contains(&rows_ctx.spans[i].span_id)))
    };
    let row_ctx = ctx.clone();
    let row_nav = navigate.clone();
    let head = view! {
        <section class="panel trace-head">
            <div class="trace-title">
                <h1>
                    <span class="svc-chip" style=format!("--svc:{}", service_color(&t.root_service))>
                        {t.root_service.clone()}
                    </span>
                    " "
                    {t.root_operation.clone()}
                </h1>
                <code class="trace-id" title=tr("Trace id", "链路 ID")>{t.trace_id.clone()}</code>
            </div>
            <div class="trace-stats">
                {stat(tr("Started (UTC)", "开始 (UTC)"), format::datetime(t0 as f64 / 1e9), "")}
                {stat(tr("Duration", "耗时"), format::duration_secs(total as f64 / 1e9), "")}
                {stat(tr("Spans", "Span 数"), t.span_count.to_string(), "")}
                {stat(tr("Depth", "深度"), depth.to_string(), "")}
                {stat(tr("Services", "服务数"), t.services.len().to_string(), "")}
                {stat(
                    tr("Errors", "错误"),
                    t.error_count.to_string(),
                    if t.error_count > 0 { "bad" } else { "" },
                )}
            </div>
            <div class="trace-services">{service_chips}</div>
            <div class="toolbar trace-tools">
                <button type="button" on:click=move |_| collapsed.set(HashSet::new())>
                    {tr("Expand all", "全部展开")}
                </button>
                <button type="button" on:click=move |_| collapsed.set(foldable.iter().cloned().collect())>
                    {tr("Collapse all", "全部折叠")}
                </button>
                <a class="button" href=logs_href>{logs_label}</a>
                <a class="button" href=format!("/api/v1/traces/{}", enc(&t.trace_id)) rel="external">
                    "JSON"
                </a>
            </div>
        </section>
    }
    .into_any();
    view! {
        {head}
        <section class="panel wf" style=format!("--wf-tick:{spacing:.4}%")>
            <div class="wf-row wf-head">
                <div class="wf-name">{tr("Service · operation", "服务 · 操作")}</div>
                <div class="wf-timeline wf-axis">{axis}</div>
            </div>
            <For
                each=each
                key=|k| *k
                children=move |k| span_row(k, row_ctx.clone(), collapsed, open, row_nav.clone())
            />
        </section>
    }
    .into_any()
}

fn span_row<N>(
    k: usize,
    ctx: Arc<Ctx>,
    collapsed: RwSignal<HashSet<String>>,
    open: Memo<Vec<String>>,
    navigate: N,
) -> AnyView
where
    N: Fn(&str, NavigateOptions) + Clone + 'static,
{
    let node = ctx.nodes[k].clone();
    let s = &ctx.spans[node.index];
    let id = s.span_id.clone();
    let (left, width) = bar(s.start(), s.end(), ctx.t0, ctx.total);
    let color = service_color(&s.service);
    let error = s.is_error();
    let indent = node.depth.min(MAX_INDENT_DEPTH) * 14;

    let fold_id = id.clone();
    let is_folded = move || collapsed.with(|c| c.contains(&fold_id));
    let toggle = (node.children > 0).then(|| {
        let id = id.clone();
        let folded = is_folded.clone();
        let folded_title = is_folded.clone();
        let folded_mark = is_folded.clone();
        let hidden = node.descendants;
        view! {
            <button
                type="button"
                class="wf-toggle"
                title=move || if folded_title() { tr("Expand", "展开") } else { tr("Collapse", "折叠") }
                on:click=move |ev| {
                    ev.stop_propagation();
                    collapsed.update(|c| {
                        if !c.remove(&id) {
                            c.insert(id.clone());
                        }
                    });
                }
            >
                {move || if folded_mark() { "▸" } else { "▾" }}
            </button>
            {move || folded().then(|| view! { <span class="wf-hidden">{format!("+{hidden}")}</span> })}
        }
        .into_any()
    });

    let open_id = id.clone();
    let is_open = move || open.with(|o| o.contains(&open_id));
    let link_ctx = ctx.clone();
    let link_id = id.clone();
    let href = move || {
        let url = open.with(|o| link_ctx.span_link(o, &link_id));
        format!("{url}#span-{link_id}")
    };
    let go_ctx = ctx.clone();
    let go_id = id.clone();
    let go = move |ev: leptos::ev::MouseEvent| {
        if ev.ctrl_key() || ev.meta_key() || ev.shift_key() || ev.button() != 0 {
            return;
        }
        ev.prevent_default();
        let url = open.with_untracked(|o| go_ctx.span_link(o, &go_id));
        navigate(
            &url,
            NavigateOptions {
                replace: true,
                scroll: false,
                ..Default::default()
            },
        );
    };
    let go_bar = go.clone();

    let events = s
        .events
        .iter()
        .map(|e| {
            let p = offset_pct(nanos(&e.time_unix_nano), ctx.t0, ctx.total);
            view! { <span class="wf-event" style=format!("left:{p:.4}%") title=e.name.clone()></span> }
        })
        .collect_view();
    let dur = format::duration_secs(s.duration_nanos as f64 / 1e9);
    // the label goes after the bar, or before it when the bar ends near the right edge
    let label_style = if left + width > 78.0 {
        format!("right:{:.4}%", 100.0 - left)
    } else {
        format!("left:{:.4}%", left + width)
    };
    let mut class = String::from("wf-row wf-span");
    if error {
        class.push_str(" wf-error");
    }
    let detail_ctx = ctx.clone();
    let row_open = is_open.clone();
    view! {
        <div class=class class:open=row_open id=format!("span-{id}")>
            <div class="wf-name" style=format!("padding-left:{}px", indent + 4)>
                {toggle}
                <span class="svc-chip" style=format!("--svc:{color}")>{s.service.clone()}</span>
                <a class="wf-op" href=href on:click=go title=s.name.clone()>{s.name.clone()}</a>
                {error.then(|| view! { <span class="wf-flag err" title=tr("Error", "错误")>"!"</span> })}
                {node.orphan.then(|| view! {
                    <span class="wf-flag" title=tr("Parent span not in this trace", "父 span 不在本链路中")>"⤴"</span>
                })}
                {node.skewed.then(|| view! {
                    <span class="wf-flag" title=tr("Outside its parent's time: clock skew?", "超出父 span 的时间范围：时钟偏差？")>"⏱"</span>
                })}
            </div>
            <div class="wf-timeline" on:click=go_bar>
                <div class="wf-bar" style=format!("left:{left:.4}%;width:{width:.4}%;--svc:{color}")></div>
                {events}
                <span class="wf-dur" style=label_style>{dur}</span>
            </div>
        </div>
        {move || is_open().then(|| span_details(&detail_ctx, node.index))}
    }
    .into_any()
}

fn attr_table(attrs: &Attrs) -> AnyView {
    if attrs.0.is_empty() {
        return view! { <div class="empty small">{tr("none", "无")}</div> }.into_any();
    }
    let rows = attrs
        .0
        .iter()
        .map(|(k, v)| view! { <tr><th>{k.clone()}</th><td>{v.clone()}</td></tr> })
        .collect_view();
    view! { <table class="kv"><tbody>{rows}</tbody></table> }.into_any()
}

fn span_details(ctx: &Ctx, index: usize) -> AnyView {
    let s = &ctx.spans[index];
    let start = s.start();
    let offset = start.saturating_sub(ctx.t0) as f64 / 1e9;
    let status = if s.status.message.is_empty() {
        s.status.code.clone()
    } else {
        format!("{}: {}", s.status.code, s.status.message)
    };
    let logs_href = logs_link(
        ctx.logs_url.as_deref(),
        &ctx.trace_id,
        Some(&s.span_id),
        ctx.t0,
        ctx.t_end,
    );
    let parent = s.parent_span_id.clone().unwrap_or_else(|| "-".into());
    let scope = format!("{} {}", s.scope.name, s.scope.version)
        .trim()
        .to_string();
    let dropped = [
        (s.dropped_attributes_count, tr("attributes", "属性")),
        (s.dropped_events_count, tr("events", "事件")),
        (s.dropped_links_count, tr("links", "链接")),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect::<Vec<_>>()
    .join(", ");
    let events = if s.events.is_empty() {
        view! { <div class="empty small">{tr("none", "无")}</div> }.into_any()
    } else {
        let rows = s
            .events
            .iter()
            .map(|e| {
                let t = nanos(&e.time_unix_nano);
                let rel = t.saturating_sub(ctx.t0) as f64 / 1e9;
                let attrs = e
                    .attributes
                    .0
                    .iter()
                    .map(|(k, v)| view! { <span class="badge mono">{format!("{k}={v}")}</span> })
                    .collect_view();
                view! {
                    <tr>
                        <td class="num" title=format::datetime(t as f64 / 1e9)>{format!("+{}", format::duration_secs(rel))}</td>
                        <td class="ev-name">{e.name.clone()}</td>
                        <td class="labels">{attrs}</td>
                    </tr>
                }
            })
            .collect_view();
        view! { <table class="kv events"><tbody>{rows}</tbody></table> }.into_any()
    };
    let links = if s.links.is_empty() {
        view! { <div class="empty small">{tr("none", "无")}</div> }.into_any()
    } else {
        let rows = s
            .links
            .iter()
            .map(|l| {
                let href = query_url(
                    &format!("/traces/{}", enc(&l.trace_id)),
                    &[("span".into(), l.span_id.clone())],
                );
                let attrs = l
                    .attributes
                    .0
                    .iter()
                    .map(|(k, v)| view! { <span class="badge mono">{format!("{k}={v}")}</span> })
                    .collect_view();
                view! {
                    <tr>
                        <td><a class="mono" href=href>{format!("{} / {}", l.trace_id, l.span_id)}</a></td>
                        <td class="labels">{attrs}</td>
                    </tr>
                }
            })
            .collect_view();
        view! { <table class="kv"><tbody>{rows}</tbody></table> }.into_any()
    };
    view! {
        <div class="wf-detail">
            <div class="wf-detail-head">
                <table class="kv meta">
                    <tbody>
                        <tr><th>{tr("Span id", "Span ID")}</th><td class="mono">{s.span_id.clone()}</td></tr>
                        <tr><th>{tr("Parent", "父 span")}</th><td class="mono">{parent}</td></tr>
                        <tr><th>{tr("Kind", "类型")}</th><td>{s.kind.clone()}</td></tr>
                        <tr>
                            <th>{tr("Start", "开始")}</th>
                            <td>{format!("+{} · {}", format::duration_secs(offset), format::datetime(start as f64 / 1e9))}</td>
                        </tr>
                        <tr><th>{tr("Duration", "耗时")}</th><td>{format::duration_secs(s.duration_nanos as f64 / 1e9)}</td></tr>
                        <tr>
                            <th>{tr("Status", "状态")}</th>
                            <td class=if s.is_error() { "status-error" } else { "" }>{status}</td>
                        </tr>
                        {(!scope.is_empty()).then(|| view! { <tr><th>{tr("Scope", "插桩库")}</th><td>{scope}</td></tr> })}
                        {(!s.trace_state.is_empty()).then(|| view! {
                            <tr><th>{tr("Trace state", "Trace state")}</th><td class="mono">{s.trace_state.clone()}</td></tr>
                        })}
                        {(!dropped.is_empty()).then(|| view! { <tr><th>{tr("Dropped", "已丢弃")}</th><td>{dropped}</td></tr> })}
                    </tbody>
                </table>
                <div class="wf-detail-links">
                    <a class="button" href=logs_href>{tr("Logs of this span", "本 span 日志")}</a>
                </div>
            </div>
            <div class="wf-detail-body">
                <div>
                    <h3>{tr("Attributes", "属性")}</h3>
                    {attr_table(&s.attributes)}
                </div>
                <div>
                    <h3>{tr("Events", "事件")}</h3>
                    {events}
                    <h3>{tr("Links", "链接")}</h3>
                    {links}
                </div>
                <div>
                    <h3>{tr("Resource", "资源属性")}</h3>
                    {attr_table(&s.resource_attributes)}
                </div>
            </div>
        </div>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_answer_decodes_with_attributes_in_order() {
        let json = r#"{
            "traceId": "0af7651916cd43dd8448eb211c80319c", "rootService": "frontend",
            "rootOperation": "GET /", "startTimeUnixNano": "1700000000000000000",
            "endTimeUnixNano": "1700000000250000000", "durationNanos": 250000000,
            "spanCount": 1, "errorCount": 1, "services": ["frontend"],
            "spans": [{
                "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "00f067aa0ba902b7",
                "parentSpanId": null, "traceState": "", "service": "frontend", "name": "GET /",
                "kind": "server", "startTimeUnixNano": "1700000000000000000",
                "endTimeUnixNano": "1700000000250000000", "durationNanos": 250000000,
                "status": {"code": "error", "message": "boom"},
                "attributes": {"z": "<script>", "a": 500, "ok": true, "list": ["x", 1]},
                "events": [{"timeUnixNano": "1700000000100000000", "name": "exception",
                            "attributes": {"exception.type": "ValueError"}}],
                "links": [], "resourceAttributes": {"service.name": "frontend"},
                "scope": {"name": "e2e", "version": "1"},
                "droppedAttributesCount": 0, "droppedEventsCount": 0, "droppedLinksCount": 0
            }],
            "logsUrl": "/api/v1/logs/query?query=trace_id:0af7651916cd43dd8448eb211c80319c&start=1699999940&end=1700000061",
            "logCount": 3
        }"#;
        let t: TraceData = serde_json::from_str(json).expect("decodes");
        let attrs = &t.spans[0].attributes.0;
        let keys: Vec<&str> = attrs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "ok", "list"]);
        assert_eq!(attrs[0].1, "<script>");
        assert_eq!(attrs[1].1, "500");
        assert_eq!(attrs[3].1, r#"["x",1]"#);
        assert!(t.spans[0].is_error());
        assert_eq!(t.log_count, Some(3));
        // the resource state round-trips through its own serialization unchanged
        let again: TraceData =
            serde_json::from_str(&serde_json::to_string(&t).expect("encodes")).expect("decodes");
        assert_eq!(again, t);
    }

    #[test]
    fn open_spans_toggle_in_the_url() {
        let open = split_ids("a, b,,c");
        assert_eq!(open, ["a", "b", "c"]);
        assert_eq!(toggled(&open, "b").as_deref(), Some("a,c"));
        assert_eq!(toggled(&open, "d").as_deref(), Some("a,b,c,d"));
        assert_eq!(toggled(&["a".to_string()], "a"), None);
        let pairs = vec![
            ("span".to_string(), "a".to_string()),
            ("start".to_string(), "now-1h".to_string()),
        ];
        assert_eq!(
            set_param(&pairs, "span", Some("a,b".into())),
            [
                ("start".to_string(), "now-1h".to_string()),
                ("span".to_string(), "a,b".to_string())
            ]
        );
        assert_eq!(set_param(&pairs, "span", None).len(), 1);
    }

    #[test]
    fn log_links_use_the_api_window_or_the_trace_times() {
        let id = "0af7651916cd43dd8448eb211c80319c";
        let api = format!("/api/v1/logs/query?query=trace_id:{id}&start=100&end=300");
        assert_eq!(
            logs_link(Some(&api), id, None, 0, 0),
            format!("/logs?query=trace_id%3A{id}&start=100&end=300")
        );
        assert_eq!(
            logs_link(Some(&api), id, Some("00f067aa0ba902b7"), 0, 0),
            format!("/logs?query=trace_id%3A{id}%20span_id%3A00f067aa0ba902b7&start=100&end=300")
        );
        assert_eq!(
            logs_link(None, id, None, 200_500_000_000, 201_000_000_001),
            format!("/logs?query=trace_id%3A{id}&start=140&end=262")
        );
    }
}
