//! Service detail (`/services/:service`): over the time range, charts of the service's request
//! and error rates, error percentage and latency quantiles (PromQL over the span metrics), its
//! operations (`/api/v1/services/{service}/operations`, sortable and filtered by span kind
//! through the URL: `sort`, `dir`, `kind`), its callers and callees from the service graph,
//! its recent error traces and its recent log records.

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};
use serde::{Deserialize, Serialize};

use crate::chart::{Series, TimeChart, Unit};
use crate::fetch::{enc, Api};
use crate::format;
use crate::i18n::tr;
use crate::pages::map::load_graph;
use crate::pages::services::{health_class, slo_of, Red, ServiceRow, REQUEST_KINDS};
use crate::pages::{sort_headers, sort_order, Empty, ErrorBox, SortColumn, RED_SORT_COLUMNS};
use crate::promql::{range_query, to_series};
use crate::time::{auto_step, now_secs, range_link, tick, with_query, TimeRange};

/// A string as a PromQL double-quoted literal.
pub fn promql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A value of the logs query language that matches exactly (quoted unless a plain word).
pub fn logs_value(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | '@'))
        && !matches!(v, "AND" | "OR" | "NOT");
    if plain {
        return v.to_string();
    }
    let mut out = String::from("\"");
    for c in v.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The PromQL of the charts: `(title key, expression, legend)` of requests, errors, the error
/// ratio and the three latency quantiles, over windows of `window` seconds.
pub fn chart_queries(service: &str, window: f64) -> [(&'static str, String); 6] {
    let sel = format!(
        "service={}, span_kind=~\"{REQUEST_KINDS}\"",
        promql_string(service)
    );
    let calls = format!("sum(rate(traces_spanmetrics_calls_total{{{sel}}}[{window}s]))");
    let errors = format!(
        "sum(rate(traces_spanmetrics_calls_total{{{sel}, status_code=\"STATUS_CODE_ERROR\"}}[{window}s]))"
    );
    let q = |p: f64| {
        format!(
            "histogram_quantile({p}, sum by (le) (rate(traces_spanmetrics_latency_bucket{{{sel}}}[{window}s])))"
        )
    };
    [
        ("requests", calls.clone()),
        // no error series yet means no errors: 0, not a gap
        ("errors", format!("({errors}) or ({calls} * 0)")),
        ("ratio", format!("(({errors}) or ({calls} * 0)) / {calls}")),
        ("p50", q(0.5)),
        ("p95", q(0.95)),
        ("p99", q(0.99)),
    ]
}

/// The chart data of one range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Charts {
    range: (f64, f64),
    step: f64,
    rates: Vec<Series>,
    ratio: Vec<Series>,
    latency: Vec<Series>,
}

async fn load_charts(api: Api, service: String, range: TimeRange) -> Result<Charts, String> {
    let (start, end) = range.resolve(now_secs());
    let step = auto_step(end - start, 120.0);
    let window = step.max(60.0);
    let mut rates = Vec::new();
    let mut ratio = Vec::new();
    let mut latency = Vec::new();
    for (key, expr) in chart_queries(&service, window) {
        let m = range_query(&api, &expr, start, end, step).await?;
        let name = match key {
            "requests" => tr("requests", "请求"),
            "errors" => tr("errors", "错误"),
            "ratio" => tr("error %", "错误率"),
            other => other,
        };
        let mut series = to_series(m, None);
        for s in &mut series {
            s.name = name.to_string();
        }
        match key {
            "requests" | "errors" => rates.extend(series),
            "ratio" => ratio.extend(series),
            _ => latency.extend(series),
        }
    }
    Ok(Charts {
        range: (start, end),
        step,
        rates,
        ratio,
        latency,
    })
}

/// One row of `/api/v1/services/{service}/operations`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperationRow {
    pub operation: String,
    pub kind: String,
    #[serde(flatten)]
    pub red: Red,
}

/// One result of `/api/v1/traces`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceSummary {
    pub trace_id: String,
    #[serde(default)]
    pub root_service: String,
    #[serde(default)]
    pub root_operation: String,
    #[serde(default)]
    pub start_time_unix_nano: String,
    #[serde(default)]
    pub duration_nanos: u64,
    #[serde(default)]
    pub span_count: u64,
    #[serde(default)]
    pub error_count: u64,
}

/// One record of `/api/v1/logs/query`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub time: String,
    #[serde(default)]
    pub time_unix_nano: String,
    #[serde(default)]
    pub severity: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub trace_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct LogsData {
    records: Vec<LogLine>,
}

/// A caller or callee of the service, with the numbers of the edge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    pub name: String,
    pub is_virtual: bool,
    pub request_rate: Option<f64>,
    pub success_rate: Option<f64>,
}

/// Everything of the page but the charts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Details {
    summary: Option<Red>,
    operations: Vec<OperationRow>,
    /// An error of the operations request (the rest still shows).
    operations_error: Option<String>,
    upstream: Vec<Neighbour>,
    downstream: Vec<Neighbour>,
    graph_error: Option<String>,
    error_traces: Result<Vec<TraceSummary>, String>,
    logs: Result<Vec<LogLine>, String>,
}

async fn load_details(api: Api, service: String, range: TimeRange) -> Result<Details, String> {
    let (start, end) = range.resolve(now_secs());
    let svc = enc(&service);
    let window = format!("start={start:.3}&end={end:.3}");
    let services: Vec<ServiceRow> = api.get_data(&format!("/api/v1/services?{window}")).await?;
    let summary = services
        .into_iter()
        .find(|r| r.service == service)
        .map(|r| r.red);
    let (operations, operations_error) = match api
        .get_data::<Vec<OperationRow>>(&format!("/api/v1/services/{svc}/operations?{window}"))
        .await
    {
        Ok(o) => (o, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let (upstream, downstream, graph_error) = match load_graph(&api, start, end).await {
        Ok(g) => {
            let virt = |name: &str| g.nodes.iter().any(|n| n.id == name && n.is_virtual);
            let mut up = Vec::new();
            let mut down = Vec::new();
            for e in &g.edges {
                if e.target == service {
                    up.push(Neighbour {
                        name: e.source.clone(),
                        is_virtual: virt(&e.source),
                        request_rate: e.request_rate,
                        success_rate: e.success_rate,
                    });
                }
                if e.source == service {
                    down.push(Neighbour {
                        name: e.target.clone(),
                        is_virtual: virt(&e.target),
                        request_rate: e.request_rate,
                        success_rate: e.success_rate,
                    });
                }
            }
            (up, down, None)
        }
        Err(e) => (Vec::new(), Vec::new(), Some(e)),
    };
    let error_traces = api
        .get_data::<Vec<TraceSummary>>(&format!(
            "/api/v1/traces?service={svc}&error=true&{window}&limit=20"
        ))
        .await;
    let logs_query = format!("service:{}", logs_value(&service));
    let logs = api
        .get_data::<LogsData>(&format!(
            "/api/v1/logs/query?query={}&{window}&limit=50",
            enc(&logs_query)
        ))
        .await
        .map(|d| d.records);
    Ok(Details {
        summary,
        operations,
        operations_error,
        upstream,
        downstream,
        graph_error,
        error_traces,
        logs,
    })
}

/// Sort keys of the operations table, as they appear in the URL.
fn columns() -> Vec<SortColumn> {
    let mut columns = vec![
        SortColumn::text("name", "Operation", "操作"),
        SortColumn::text("kind", "Kind", "类型"),
        SortColumn::number("rate", "Rate", "调用率"),
    ];
    columns.extend(RED_SORT_COLUMNS);
    columns.push(SortColumn::number("count", "Calls", "调用数"));
    columns
}

/// The span kinds the operations table filters by, in the order of its tabs.
const KINDS: [(&str, &str, &str); 5] = [
    ("server", "Server", "服务端"),
    ("consumer", "Consumer", "消费者"),
    ("client", "Client", "客户端"),
    ("producer", "Producer", "生产者"),
    ("internal", "Internal", "内部"),
];

pub fn sort_operations(rows: &mut [OperationRow], key: &str, desc: bool) {
    let num = |r: &OperationRow| -> f64 {
        let v = match key {
            "rate" => r.red.request_rate,
            "success" => r.red.success_rate,
            "errors" => r.red.error_rate,
            "p50" => r.red.p50,
            "p95" => r.red.p95,
            "p99" => r.red.p99,
            "count" => r.red.requests,
            _ => None,
        };
        // rows without a value sort last either way
        v.unwrap_or(if desc {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        })
    };
    rows.sort_by(|a, b| {
        let ord = match key {
            "name" => a.operation.cmp(&b.operation).then(a.kind.cmp(&b.kind)),
            "kind" => a.kind.cmp(&b.kind).then(a.operation.cmp(&b.operation)),
            _ => num(a)
                .total_cmp(&num(b))
                .then_with(|| b.operation.cmp(&a.operation)),
        };
        if desc {
            ord.reverse()
        } else {
            ord
        }
    });
}

fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

/// `2026-11-21 16:40:05` of Unix nanoseconds written as a decimal string.
fn nanos_time(nanos: &str) -> String {
    nanos
        .parse::<u128>()
        .map(|n| format::datetime(n as f64 / 1e9))
        .unwrap_or_else(|_| "-".into())
}

/// `16:40:05.123` of an RFC 3339 time (`2026-11-21T16:40:05.123456789Z`), else the text.
fn log_time(rfc3339: &str) -> String {
    match rfc3339.split_once('T') {
        Some((_, t)) => t.trim_end_matches('Z').chars().take(12).collect(),
        None => rfc3339.to_string(),
    }
}

/// One chart in its panel (type-erased: nested chart types overflow the compiler's limits).
fn chart_panel(
    title: &'static str,
    series: Vec<Series>,
    range: (f64, f64),
    unit: Unit,
    step: f64,
) -> AnyView {
    view! {
        <div class="panel">
            <h2>{title}</h2>
            <TimeChart series=series range=range unit=unit step=Signal::derive(move || step)/>
        </div>
    }
    .into_any()
}

#[component]
pub fn ServicePage() -> impl IntoView {
    let api = Api::current();
    let params = use_params_map();
    let query = use_query_map();
    let service = Memo::new(move |_| params.with(|p| p.get("service").unwrap_or_default()));
    let api2 = api.clone();
    let charts = Resource::new(
        move || (service.get(), query.with(TimeRange::from_query), tick()),
        move |(s, range, _)| load_charts(api.clone(), s, range),
    );
    let details = Resource::new(
        move || (service.get(), query.with(TimeRange::from_query), tick()),
        move |(s, range, _)| load_details(api2.clone(), s, range),
    );

    let links = move || {
        let s = service.get();
        query.track();
        let traces = range_link("/traces", &[("service", s.clone())]);
        let errors = range_link(
            "/traces",
            &[("service", s.clone()), ("error", "true".into())],
        );
        let logs = range_link("/logs", &[("query", format!("service:{}", logs_value(&s)))]);
        let map = range_link("/map", &[]);
        view! {
            <nav class="svc-links">
                <a href=traces>{tr("Traces", "链路")}</a>
                <a href=errors>{tr("Error traces", "错误链路")}</a>
                <a href=logs>{tr("Logs", "日志")}</a>
                <a href=map>{tr("Service map", "服务拓扑")}</a>
            </nav>
        }
    };

    let chart_view = move |c: Charts| {
        let (range, step) = (c.range, c.step);
        view! {
            <div class="row svc-charts">
                {chart_panel(tr("Requests and errors", "请求与错误"), c.rates, range, Unit::PerSecond, step)}
                {chart_panel(tr("Error percentage", "错误百分比"), c.ratio, range, Unit::Ratio, step)}
                {chart_panel(tr("Latency", "延迟"), c.latency, range, Unit::Seconds, step)}
            </div>
        }
    };

    let details_view = move |d: Details| {
        let slo = query.with(slo_of);
        let s = service.get_untracked();
        let summary = d.summary.clone().unwrap_or_default();
        let health = health_class(summary.success_rate, slo);
        let tiles = view! {
            <div class="svc-tiles">
                <div class="tile"><span class="tile-label">{tr("Requests", "请求率")}</span><span class="tile-value">{opt(summary.request_rate, format::rate)}</span></div>
                <div class="tile"><span class="tile-label">{tr("Success rate", "成功率")}</span><span class=format!("tile-value {health}")>{opt(summary.success_rate, format::percent)}</span></div>
                <div class="tile"><span class="tile-label">{tr("Errors", "错误率")}</span><span class="tile-value">{opt(summary.error_rate, format::rate)}</span></div>
                <div class="tile"><span class="tile-label">"p50"</span><span class="tile-value">{opt(summary.p50, format::duration_secs)}</span></div>
                <div class="tile"><span class="tile-label">"p95"</span><span class="tile-value">{opt(summary.p95, format::duration_secs)}</span></div>
                <div class="tile"><span class="tile-label">"p99"</span><span class="tile-value">{opt(summary.p99, format::duration_secs)}</span></div>
            </div>
        };
        let neighbours = {
            let list = |items: Vec<Neighbour>, empty: &'static str| {
                if items.is_empty() {
                    return view! { <span class="muted">{empty}</span> }.into_any();
                }
                items
                    .into_iter()
                    .map(|n| {
                        let h = health_class(n.success_rate, slo);
                        let stats = format!(
                            "{} · {}",
                            opt(n.request_rate, format::rate),
                            opt(n.success_rate, format::percent)
                        );
                        if n.is_virtual {
                            view! {
                                <span class="neighbour virtual" title=tr("not instrumented", "未接入")>
                                    {n.name}<span class=format!("nstats {h}")>{stats}</span>
                                </span>
                            }
                            .into_any()
                        } else {
                            let href = range_link(&format!("/services/{}", enc(&n.name)), &[]);
                            view! {
                                <a class="neighbour" href=href>
                                    {n.name}<span class=format!("nstats {h}")>{stats}</span>
                                </a>
                            }
                            .into_any()
                        }
                    })
                    .collect_view()
                    .into_any()
            };
            view! {
                <div class="svc-neighbours">
                    <div>
                        <h2>{tr("Called by", "上游（调用方）")}</h2>
                        <div class="neighbour-list upstream">{list(d.upstream, tr("no callers seen", "未发现调用方"))}</div>
                    </div>
                    <div>
                        <h2>{tr("Calls", "下游（被调用）")}</h2>
                        <div class="neighbour-list downstream">{list(d.downstream, tr("no calls seen", "未发现下游调用"))}</div>
                    </div>
                    {d.graph_error.map(|e| view! { <ErrorBox message=e/> })}
                </div>
            }
        };

        // operations: kind tabs, then the sorted table
        let (sort, desc, kind) = query.with(|q| {
            let (sort, desc) = sort_order(&columns(), q, "rate");
            (sort, desc, q.get("kind").unwrap_or_default())
        });
        let count_of = |k: &str| d.operations.iter().filter(|o| o.kind == k).count();
        let mut tabs = vec![(
            String::new(),
            tr("All", "全部").to_string(),
            d.operations.len(),
        )];
        for (k, en, zh) in KINDS {
            let n = count_of(k);
            if n > 0 || kind == k {
                tabs.push((k.to_string(), tr(en, zh).to_string(), n));
            }
        }
        let tabs_view = tabs
            .into_iter()
            .map(|(k, label, n)| {
                let class = if k == kind {
                    "kind-tab active"
                } else {
                    "kind-tab"
                };
                let href = with_query(&[("kind", (!k.is_empty()).then_some(k))]);
                view! { <a class=class href=href>{label}" "<span class="count">{n}</span></a> }
            })
            .collect_view();
        let mut ops: Vec<OperationRow> = d
            .operations
            .iter()
            .filter(|o| kind.is_empty() || o.kind == kind)
            .cloned()
            .collect();
        sort_operations(&mut ops, &sort, desc);
        let headers = sort_headers(&columns(), &sort, desc);
        let ops_body = if ops.is_empty() {
            view! {
                <tr><td colspan="9" class="empty">{tr("No operations in this time range.", "该时间范围内没有操作。")}</td></tr>
            }
            .into_any()
        } else {
            ops.into_iter()
                .map(|o| {
                    let h = health_class(o.red.success_rate, slo);
                    let href = range_link(
                        "/traces",
                        &[("service", s.clone()), ("operation", o.operation.clone())],
                    );
                    view! {
                        <tr>
                            <td><a href=href class="op-link">{o.operation.clone()}</a></td>
                            <td><span class="badge">{o.kind.clone()}</span></td>
                            <td class="num">{opt(o.red.request_rate, format::rate)}</td>
                            <td class=format!("num {h}")>{opt(o.red.success_rate, format::percent)}</td>
                            <td class="num">{opt(o.red.error_rate, format::rate)}</td>
                            <td class="num">{opt(o.red.p50, format::duration_secs)}</td>
                            <td class="num">{opt(o.red.p95, format::duration_secs)}</td>
                            <td class="num">{opt(o.red.p99, format::duration_secs)}</td>
                            <td class="num">{opt(o.red.requests, format::si)}</td>
                        </tr>
                    }
                })
                .collect_view()
                .into_any()
        };

        let traces_view = match d.error_traces {
            Err(e) => view! { <ErrorBox message=e/> }.into_any(),
            Ok(t) if t.is_empty() => view! {
                <Empty text=tr("No error traces in this time range.", "该时间范围内没有错误链路。")/>
            }
            .into_any(),
            Ok(t) => {
                let rows = t
                    .into_iter()
                    .map(|t| {
                        let href = range_link(&format!("/traces/{}", enc(&t.trace_id)), &[]);
                        let short: String = t.trace_id.chars().take(16).collect();
                        view! {
                            <tr>
                                <td class="mono">{nanos_time(&t.start_time_unix_nano)}</td>
                                <td><a href=href class="trace-link mono" title=t.trace_id.clone()>{short}</a></td>
                                <td>{t.root_service}": "{t.root_operation}</td>
                                <td class="num">{format::duration_secs(t.duration_nanos as f64 / 1e9)}</td>
                                <td class="num">{t.span_count}</td>
                                <td class="num health-bad">{t.error_count}</td>
                            </tr>
                        }
                    })
                    .collect_view();
                view! {
                    <table class="grid-table svc-traces">
                        <thead><tr>
                            <th>{tr("Start", "开始时间")}</th>
                            <th>{tr("Trace", "链路")}</th>
                            <th>{tr("Root", "入口")}</th>
                            <th class="num">{tr("Duration", "耗时")}</th>
                            <th class="num">{tr("Spans", "Span 数")}</th>
                            <th class="num">{tr("Errors", "错误")}</th>
                        </tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                }
                .into_any()
            }
        };

        let logs_view = match d.logs {
            Err(e) => view! { <ErrorBox message=e/> }.into_any(),
            Ok(l) if l.is_empty() => view! {
                <Empty text=tr("No log records of this service in this time range.", "该时间范围内没有此服务的日志。")/>
            }
            .into_any(),
            Ok(l) => {
                let rows = l
                    .into_iter()
                    .map(|r| {
                        let sev = r.severity.to_ascii_lowercase();
                        let trace = r.trace_id.clone().filter(|t| !t.is_empty()).map(|t| {
                            let href = range_link(&format!("/traces/{}", enc(&t)), &[]);
                            view! { <a href=href class="log-trace" title=t.clone()>{tr("trace", "链路")}</a> }
                        });
                        view! {
                            <tr>
                                <td class="mono log-time" title=r.time.clone()>{log_time(&r.time)}</td>
                                <td><span class=format!("sev sev-{sev}")>{r.severity.clone()}</span></td>
                                <td class="log-body">{r.body.clone()}</td>
                                <td>{trace}</td>
                            </tr>
                        }
                    })
                    .collect_view();
                view! {
                    <table class="grid-table svc-logs">
                        <thead><tr>
                            <th>{tr("Time", "时间")}</th>
                            <th>{tr("Severity", "级别")}</th>
                            <th>{tr("Message", "内容")}</th>
                            <th></th>
                        </tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                }
                .into_any()
            }
        };
        let logs_link = range_link("/logs", &[("query", format!("service:{}", logs_value(&s)))]);
        let traces_link = range_link(
            "/traces",
            &[("service", s.clone()), ("error", "true".into())],
        );
        view! {
            <section class="panel">
                {tiles}
                {neighbours}
            </section>
            <section class="panel">
                <h2>{tr("Operations", "操作")}</h2>
                <div class="kind-tabs">{tabs_view}</div>
                {d.operations_error.map(|e| view! { <ErrorBox message=e/> })}
                <table class="grid-table operations">
                    <thead><tr>{headers}</tr></thead>
                    <tbody>{ops_body}</tbody>
                </table>
            </section>
            <div class="row">
                <section class="panel">
                    <h2>
                        {tr("Recent error traces", "最近的错误链路")}
                        <a class="more" href=traces_link>{tr("all traces →", "全部链路 →")}</a>
                    </h2>
                    {traces_view}
                </section>
                <section class="panel">
                    <h2>
                        {tr("Recent logs", "最近日志")}
                        <a class="more" href=logs_link>{tr("open in logs →", "在日志中打开 →")}</a>
                    </h2>
                    {logs_view}
                </section>
            </div>
        }
        .into_any()
    };

    view! {
        <div class="service-page">
            <section class="panel svc-head">
                <div class="crumbs">
                    <a href=move || { query.track(); range_link("/services", &[]) }>{tr("Services", "服务")}</a>
                    " / "
                </div>
                <h1>{move || service.get()}</h1>
                {links}
            </section>
            <Transition fallback=|| view! { <div class="row svc-charts loading">"…"</div> }>
                {move || Suspend::new(async move {
                    match charts.await {
                        Ok(c) => chart_view(c).into_any(),
                        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                    }
                })}
            </Transition>
            <Transition fallback=|| view! { <div class="loading">"…"</div> }>
                {move || Suspend::new(async move {
                    match details.await {
                        Ok(d) => details_view(d),
                        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, kind: &str, rate: Option<f64>) -> OperationRow {
        OperationRow {
            operation: name.into(),
            kind: kind.into(),
            red: Red {
                request_rate: rate,
                ..Default::default()
            },
        }
    }

    #[test]
    fn operations_sort_by_column_with_missing_last() {
        let mut rows = vec![
            op("GET /a", "server", Some(1.0)),
            op("SELECT", "client", None),
            op("GET /b", "server", Some(3.0)),
        ];
        sort_operations(&mut rows, "rate", true);
        let names: Vec<&str> = rows.iter().map(|r| r.operation.as_str()).collect();
        assert_eq!(names, ["GET /b", "GET /a", "SELECT"]);
        sort_operations(&mut rows, "rate", false);
        assert_eq!(rows[0].operation, "GET /a");
        assert_eq!(rows[2].operation, "SELECT");
        sort_operations(&mut rows, "kind", false);
        assert_eq!(rows[0].kind, "client");
        sort_operations(&mut rows, "name", false);
        assert_eq!(rows[0].operation, "GET /a");
    }

    #[test]
    fn names_are_quoted_for_promql_and_logs() {
        assert_eq!(promql_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(logs_value("checkout"), "checkout");
        assert_eq!(logs_value("my svc"), "\"my svc\"");
        assert_eq!(logs_value("a*"), "\"a*\"");
        assert_eq!(logs_value("OR"), "\"OR\"");
        let q = chart_queries("front\"end", 60.0);
        assert!(q[0].1.contains(r#"service="front\"end""#));
        assert!(q[4].1.starts_with(
            "histogram_quantile(0.95, sum by (le) (rate(traces_spanmetrics_latency_bucket{"
        ));
    }

    #[test]
    fn times_of_rows() {
        assert_eq!(nanos_time("1795279205000000000"), "2026-11-21 16:40:05");
        assert_eq!(nanos_time("x"), "-");
        assert_eq!(log_time("2026-11-21T16:40:05.123456789Z"), "16:40:05.123");
    }
}
