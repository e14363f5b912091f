//! Logs: search with the log query language (`query`, `limit`, `direction` and the time range
//! in the URL, so alert links like `/logs?query=<q>&start=<unix>&end=<unix>` open the same
//! view), a histogram of matches per severity from `/api/v1/logs/histogram` (drag across it
//! to zoom into that range), the records from `/api/v1/logs/query` (expand one for its
//! attributes, resource and ids; records with a trace link to the trace page), the fields of
//! the matches from `/api/v1/logs/fields` (a value click narrows the query) and live tail.
//!
//! Record bodies and attributes are user data: they go into the page as text nodes only.

pub mod query;
pub mod tail;

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_query_map};
use serde::{Deserialize, Serialize};

use crate::chart::{class_color, Bars};
use crate::fetch::{enc, Api};
use crate::i18n::tr;
use crate::pages::{Empty, ErrorBox};
use crate::time::{auto_step, now_secs, range_link, tick, TimeRange};
use query::{
    add_term, bars_of, caret_line, error_position, field_term, forward_of, limit_of, query_of,
    severity_class, short_time, url_with, Bucket, LIMITS, MAX_LIMIT, SEVERITIES,
};
use tail::LiveTail;

/// One record as `/api/v1/logs/query` (and each live-tail event) gives it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    #[serde(default)]
    pub time: String,
    #[serde(default)]
    pub time_unix_nano: String,
    #[serde(default)]
    pub observed_unix_nano: String,
    #[serde(default)]
    pub severity: String,
    #[serde(default)]
    pub severity_number: u8,
    #[serde(default)]
    pub severity_text: String,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub trace_id: Option<String>,
    #[serde(default)]
    pub span_id: Option<String>,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct QueryData {
    records: Vec<LogRecord>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct HistogramData {
    step_seconds: f64,
    buckets: Vec<Bucket>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct TopValue {
    value: String,
    count: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Field {
    name: String,
    records: u64,
    distinct_values: u64,
    top: Vec<TopValue>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct FieldsData {
    fields: Vec<Field>,
}

/// What the URL asks for, resolved against the clock at fetch time.
#[derive(Clone, Debug, PartialEq)]
struct Search {
    query: String,
    range: TimeRange,
    limit: usize,
    forward: bool,
}

impl Search {
    fn of(q: &leptos_router::params::ParamsMap) -> Self {
        Search {
            query: query_of(q),
            range: TimeRange::from_query(q),
            limit: limit_of(q),
            forward: forward_of(q),
        }
    }
}

/// The records and the window they were searched in (the histogram draws the same one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Records {
    records: Vec<LogRecord>,
    limit: usize,
}

async fn load_records(api: Api, s: Search) -> Result<Records, String> {
    let (start, end) = s.range.resolve(now_secs());
    let dir = if s.forward { "forward" } else { "backward" };
    let d: QueryData = api
        .get_data(&format!(
            "/api/v1/logs/query?query={}&start={start:.3}&end={end:.3}&limit={}&direction={dir}",
            enc(&s.query),
            s.limit
        ))
        .await?;
    Ok(Records {
        records: d.records,
        limit: s.limit,
    })
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Histogram {
    start: f64,
    end: f64,
    step: f64,
    buckets: Vec<Bucket>,
}

async fn load_histogram(api: Api, s: Search) -> Result<Histogram, String> {
    let (start, end) = s.range.resolve(now_secs());
    let step = auto_step(end - start, 80.0);
    let d: HistogramData = api
        .get_data(&format!(
            "/api/v1/logs/histogram?query={}&start={start:.3}&end={end:.3}&step={step}&by=severity",
            enc(&s.query)
        ))
        .await?;
    Ok(Histogram {
        start,
        end,
        step: d.step_seconds,
        buckets: d.buckets,
    })
}

async fn load_fields(api: Api, s: Search) -> Result<Vec<Field>, String> {
    let (start, end) = s.range.resolve(now_secs());
    let d: FieldsData = api
        .get_data(&format!(
            "/api/v1/logs/fields?query={}&start={start:.3}&end={end:.3}&top=5",
            enc(&s.query)
        ))
        .await?;
    Ok(d.fields)
}

/// User text for a text node: `None` for an empty string, whose text node the browser's
/// HTML parser would drop (hydration expects every text node the server wrote to be there).
fn text(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Whether an API error is about the query text (shown once, next to the box).
fn is_query_error(e: &str) -> bool {
    e.contains("\"query\"")
}

#[component]
pub fn LogsPage() -> AnyView {
    let api = Api::current();
    let params = use_query_map();
    let search = Memo::new(move |_| params.with(Search::of));
    let (a1, a2, a3) = (api.clone(), api.clone(), api);
    let records = Resource::new(
        move || (search.get(), tick()),
        move |(s, _)| load_records(a1.clone(), s),
    );
    let histogram = Resource::new(
        move || (search.get(), tick()),
        move |(s, _)| load_histogram(a2.clone(), s),
    );
    let fields = Resource::new(
        move || (search.get(), tick()),
        move |(s, _)| load_fields(a3.clone(), s),
    );
    let query_text = Signal::derive(move || search.with(|s| s.query.clone()));

    view! {
        <section class="panel logs-search">
            <h1>{tr("Logs", "日志")}</h1>
            <QueryBar/>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match records.await {
                        Err(e) if is_query_error(&e) => {
                            Some(view! { <QueryError message=e query=query_text.get_untracked()/> })
                        }
                        _ => None,
                    }
                })}
            </Transition>
            <LiveTail query=query_text/>
        </section>
        <section class="panel logs-histogram">
            <Transition fallback=|| view! { <div class="bars-placeholder"></div> }>
                {move || Suspend::new(async move {
                    match histogram.await {
                        Ok(h) => view! { <HistogramView h=h/> }.into_any(),
                        Err(e) if is_query_error(&e) => view! { <div class="bars-placeholder"></div> }.into_any(),
                        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
        <div class="logs-layout">
            <aside class="panel logs-fields">
                <h2>{tr("Fields", "字段")}</h2>
                <Transition fallback=|| view! { <div class="loading">"…"</div> }>
                    {move || Suspend::new(async move {
                        match fields.await {
                            Ok(f) => view! { <FieldList fields=f/> }.into_any(),
                            Err(e) if is_query_error(&e) => ().into_any(),
                            Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                        }
                    })}
                </Transition>
            </aside>
            <section class="panel logs-results">
                <Transition fallback=|| view! { <div class="loading">"…"</div> }>
                    {move || Suspend::new(async move {
                        match records.await {
                            Ok(r) => view! { <RecordList r=r/> }.into_any(),
                            Err(e) if is_query_error(&e) => view! {
                                <Empty text=tr("Fix the query to see records.", "请先修正查询语句。")/>
                            }.into_any(),
                            Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                        }
                    })}
                </Transition>
            </section>
        </div>
    }
    .into_any()
}

/// The query box, limit and direction: a GET form (it works before the wasm loads) that
/// navigates within the app once it has.
#[component]
fn QueryBar() -> AnyView {
    let params = use_query_map();
    let navigate = use_navigate();
    let input = NodeRef::<leptos::html::Input>::new();
    let limit_sel = NodeRef::<leptos::html::Select>::new();
    let dir_sel = NodeRef::<leptos::html::Select>::new();
    let current = Memo::new(move |_| params.with(|q| (query_of(q), limit_of(q), forward_of(q))));
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (Some(i), Some(l), Some(d)) = (input.get(), limit_sel.get(), dir_sel.get()) else {
            return;
        };
        let q = i.value().trim().to_string();
        let limit = l.value();
        let dir = d.value();
        let url = params.with_untracked(|p| {
            url_with(
                "/logs",
                p,
                &[
                    ("query", (!q.is_empty()).then_some(q)),
                    (
                        "limit",
                        (limit != query::DEFAULT_LIMIT.to_string()).then_some(limit),
                    ),
                    ("direction", (dir == "forward").then_some(dir)),
                ],
            )
        });
        navigate(&url, Default::default());
    };
    // the time range and refresh ride along as hidden fields of the GET form
    let hidden = move || {
        params.with(|q| {
            ["start", "end", "refresh"]
                .iter()
                .filter_map(|k| {
                    q.get(k)
                        .map(|v| view! { <input type="hidden" name=*k value=v/> })
                })
                .collect_view()
        })
    };
    view! {
        <form class="logs-query" method="get" action="/logs" on:submit=submit>
            {hidden}
            <input
                type="search"
                name="query"
                class="logs-query-input mono"
                node_ref=input
                placeholder=tr(
                    "service:checkout AND severity>=warn \"connection refused\"",
                    "service:checkout AND severity>=warn \"connection refused\"",
                )
                autocomplete="off"
                spellcheck="false"
                value=move || current.get().0
                prop:value=move || current.get().0
            />
            <select name="limit" node_ref=limit_sel title=tr("Most records shown", "最多显示条数")>
                {move || {
                    let limit = current.get().1;
                    let mut choices = LIMITS.to_vec();
                    if !choices.contains(&limit) {
                        choices.push(limit);
                        choices.sort_unstable();
                    }
                    choices
                        .into_iter()
                        .map(|n| view! { <option value=n.to_string() selected=n == limit>{n.to_string()}</option> })
                        .collect_view()
                }}
            </select>
            <select name="direction" node_ref=dir_sel title=tr("Order", "排序")>
                <option value="backward" selected=move || !current.get().2>{tr("Newest first", "最新在前")}</option>
                <option value="forward" selected=move || current.get().2>{tr("Oldest first", "最早在前")}</option>
            </select>
            <button type="submit" class="primary">{tr("Search", "查询")}</button>
            <details class="logs-help">
                <summary>"?"</summary>
                <div class="logs-help-body">
                    <code>"timeout"</code>" "<code>"\"connection refused\""</code>" "<code>"time*"</code>
                    " "<code>"service:checkout"</code>" "<code>"severity>=warn"</code>
                    " "<code>"attr.http.route:/api/*"</code>" "<code>"trace_id:…"</code>
                    " "<code>"a OR b"</code>" "<code>"NOT a"</code>" "<code>"-a"</code>" "<code>"(a OR b) c"</code>
                </div>
            </details>
        </form>
    }
    .into_any()
}

/// A query the API refused: its message and a caret under the position it names.
#[component]
fn QueryError(message: String, query: String) -> AnyView {
    let caret = error_position(&message).map(|p| {
        view! {
            <pre class="query-caret mono">{text(query.clone())}"\n"{caret_line(&query, p)}</pre>
        }
    });
    view! {
        <div class="error query-error" role="alert">
            <strong>{tr("Query error: ", "查询错误：")}</strong>
            {message}
            {caret}
        </div>
    }
    .into_any()
}

#[component]
fn HistogramView(h: Histogram) -> AnyView {
    let params = use_query_map();
    let navigate = StoredValue::new(use_navigate());
    let bars = bars_of(&h.buckets);
    let total: u64 = h.buckets.iter().map(|b| b.count).sum();
    let mut per_sev: Vec<(String, u64)> = SEVERITIES
        .iter()
        .map(|s| {
            let n = h
                .buckets
                .iter()
                .filter_map(|b| b.by_severity.get(*s))
                .sum::<u64>();
            (s.to_string(), n)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    per_sev.sort_by_key(|(s, _)| SEVERITIES.iter().position(|x| x == s));
    // a drag selects a range: the page zooms into it (a navigation, so Back zooms out)
    let on_select = Callback::new(move |(s, e): (f64, f64)| {
        let url = params.with_untracked(|p| {
            url_with(
                "/logs",
                p,
                &[
                    ("start", Some(format!("{s:.0}"))),
                    ("end", Some(format!("{e:.0}"))),
                ],
            )
        });
        navigate.with_value(|n| n(&url, Default::default()));
    });
    let legend = per_sev
        .into_iter()
        .enumerate()
        .map(|(i, (s, n))| {
            view! {
                <span class="logs-legend-item">
                    <span class="swatch" style=format!("background:{}", class_color(&s, i))></span>
                    {format!("{s} {n}")}
                </span>
            }
        })
        .collect_view();
    view! {
        <div class="logs-histogram-head">
            <span class="logs-total">
                {format!("{total} {}", tr("matching records", "条匹配的日志"))}
            </span>
            <span class="logs-legend">{legend}</span>
            <span class="logs-hint">{tr("drag to zoom", "拖动以缩放")}</span>
        </div>
        <Bars bars=bars range=(h.start, h.end) step=h.step on_select=on_select/>
    }
    .into_any()
}

#[component]
fn FieldList(fields: Vec<Field>) -> impl IntoView {
    if fields.is_empty() {
        return view! { <Empty text=tr("No fields.", "没有字段。")/> }.into_any();
    }
    let params = use_query_map();
    fields
        .into_iter()
        .map(|f| {
            let open = matches!(f.name.as_str(), "service" | "severity");
            let rows = f
                .top
                .iter()
                .map(|v| {
                    let share = if f.records > 0 {
                        v.count as f64 / f.records as f64 * 100.0
                    } else {
                        0.0
                    };
                    // the link narrows the query of the URL as it is when clicked, even
                    // while these values are still those of the previous search
                    let link = |negate: bool| {
                        field_term(&f.name, &v.value, negate).map(|t| {
                            move || {
                                params.with(|p| {
                                    let q = add_term(&query_of(p), &t);
                                    url_with("/logs", p, &[("query", Some(q))])
                                })
                            }
                        })
                    };
                    let value_view = match link(false) {
                        Some(href) => view! {
                            <a class="field-value mono" href=href title=tr("Show only these", "只看这些")>{text(v.value.clone())}</a>
                        }.into_any(),
                        None => view! { <span class="field-value mono">{text(v.value.clone())}</span> }.into_any(),
                    };
                    let exclude = link(true).map(|href| view! {
                        <a class="field-exclude" href=href title=tr("Leave these out", "排除这些")>"−"</a>
                    });
                    view! {
                        <li class="field-top">
                            <span class="field-bar" style=format!("width:{share:.1}%")></span>
                            {value_view}
                            <span class="field-count">{v.count.to_string()}</span>
                            {exclude}
                        </li>
                    }
                })
                .collect_view();
            view! {
                <details class="field" data-field=f.name.clone() open=open>
                    <summary>
                        <span class="field-name mono">{text(f.name.clone())}</span>
                        <span class="field-meta">{format!("{} · {}", f.distinct_values, f.records)}</span>
                    </summary>
                    <ul class="field-tops">{rows}</ul>
                </details>
            }
        })
        .collect_view()
        .into_any()
}

#[component]
fn RecordList(r: Records) -> impl IntoView {
    if r.records.is_empty() {
        return view! {
            <Empty text=tr(
                "No records match in this time range.",
                "该时间范围内没有匹配的日志。",
            )/>
        }
        .into_any();
    }
    let params = use_query_map();
    let n = r.records.len();
    let more = (n >= r.limit && r.limit < MAX_LIMIT).then(|| {
        let next = (r.limit * 5).min(MAX_LIMIT);
        let href =
            params.with_untracked(|p| url_with("/logs", p, &[("limit", Some(next.to_string()))]));
        view! { <a class="logs-more" href=href>{format!("{} {next}", tr("Show up to", "最多显示"))}</a> }
    });
    let rows = r
        .records
        .into_iter()
        .map(|rec| view! { <LogRow rec=rec/> })
        .collect_view();
    view! {
        <div class="logs-count">
            {format!("{n} {}", tr("records shown", "条日志"))}
            {(n >= r.limit).then(|| format!(" ({})", tr("limit reached", "已达上限")))}
        </div>
        <div class="log-list">{rows}</div>
        {more}
    }
    .into_any()
}

/// One record: a summary line (time, severity, service, body) that expands to everything
/// the record holds. A `<details>`, so it opens without the wasm too.
#[component]
pub fn LogRow(rec: LogRecord) -> AnyView {
    let sev = severity_class(&rec.severity);
    let sev_label = if rec.severity_text.is_empty() {
        rec.severity.to_uppercase()
    } else {
        rec.severity_text.clone()
    };
    let trace_href = rec.trace_id.as_ref().map(|t| format!("/traces/{}", enc(t)));
    let trace_link = trace_href.clone().map(|href| {
        view! { <a class="log-trace" href=href title=tr("Open the trace", "打开链路")>{tr("trace", "链路")}</a> }
    });
    let kv = |pairs: &BTreeMap<String, String>| {
        pairs
            .iter()
            .map(|(k, v)| {
                view! {
                    <tr><th class="mono">{text(k.clone())}</th><td class="mono">{text(v.clone())}</td></tr>
                }
            })
            .collect_view()
    };
    let attrs = (!rec.attributes.is_empty()).then(|| {
        let rows = kv(&rec.attributes);
        view! {
            <tr class="kv-group"><th colspan="2">{tr("Attributes", "属性")}</th></tr>
            {rows}
        }
    });
    let resource = (!rec.resource.is_empty()).then(|| {
        let rows = kv(&rec.resource);
        view! {
            <tr class="kv-group"><th colspan="2">{tr("Resource", "资源")}</th></tr>
            {rows}
        }
    });
    let trace_row = rec.trace_id.clone().map(|t| {
        let href = trace_href.clone().unwrap_or_default();
        view! { <tr><th>"trace_id"</th><td class="mono"><a href=href>{t}</a></td></tr> }
    });
    let span_row = rec
        .span_id
        .clone()
        .map(|s| view! { <tr><th>"span_id"</th><td class="mono">{s}</td></tr> });
    let observed = query::nanos_to_secs(&rec.observed_unix_nano)
        .filter(|s| *s > 0.0)
        .map(|s| {
            view! { <tr><th>{tr("Observed", "接收时间")}</th><td class="mono">{crate::format::datetime(s)}</td></tr> }
        });
    view! {
        <details class=format!("log-row {sev}")>
            <summary>
                <span class="log-time mono">{text(short_time(&rec.time))}</span>
                <span class=format!("log-sev {sev}")>{text(sev_label)}</span>
                <span class="log-service" title=rec.service.clone()>{text(rec.service.clone())}</span>
                <span class="log-body mono">{text(rec.body.clone())}</span>
                {trace_link}
            </summary>
            <div class="log-detail">
                // rows inside an explicit tbody: the HTML parser adds one otherwise, and the
                // hydrated DOM would no longer be the one the server wrote
                <table class="kv"><tbody>
                    <tr><th>{tr("Time", "时间")}</th><td class="mono">{rec.time.clone()}</td></tr>
                    {observed}
                    <tr>
                        <th>{tr("Severity", "级别")}</th>
                        <td class="mono">{format!("{} ({}, {})", rec.severity, rec.severity_number, rec.severity_text)}</td>
                    </tr>
                    <tr><th>{tr("Service", "服务")}</th><td class="mono">{text(rec.service.clone())}</td></tr>
                    {trace_row}
                    {span_row}
                    <tr><th>{tr("Body", "内容")}</th><td><pre class="log-full-body mono">{text(rec.body.clone())}</pre></td></tr>
                    {attrs}
                    {resource}
                </tbody></table>
            </div>
        </details>
    }
    .into_any()
}

/// A link to this page for `query` over the current range (used by other pages).
pub fn logs_link(query: &str) -> String {
    range_link("/logs", &[("query", query.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_decode_from_the_api_answer() {
        let json = r#"{"time":"2024-05-01T10:00:00.123456789Z","time_unix_nano":"1714557600123456789",
            "observed_unix_nano":"1714557600124000000","severity":"error","severity_number":17,
            "severity_text":"ERROR","service":"checkout","trace_id":"0af7651916cd43dd8448eb211c80319c",
            "span_id":null,"body":"<script>alert(1)</script>","attributes":{"order.id":"42"},
            "resource":{"service.name":"checkout"},
            "trace_url":"/api/v1/traces/0af7651916cd43dd8448eb211c80319c"}"#;
        let r: LogRecord = serde_json::from_str(json).expect("record");
        assert_eq!(r.severity_number, 17);
        assert_eq!(r.span_id, None);
        assert_eq!(r.attributes.get("order.id").map(String::as_str), Some("42"));
        assert_eq!(r.body, "<script>alert(1)</script>");
        let h: HistogramData = serde_json::from_str(
            r#"{"step_seconds":0.5,"buckets":[{"time":"x","time_unix_nano":"1","count":2,"by_severity":{"info":2}}]}"#,
        )
        .expect("histogram");
        assert_eq!(h.step_seconds, 0.5);
        assert_eq!(h.buckets[0].by_severity.get("info"), Some(&2));
    }

    #[test]
    fn query_errors_are_told_apart() {
        assert!(is_query_error(
            "invalid parameter \"query\": unknown field `x` at position 0"
        ));
        assert!(!is_query_error(
            "invalid parameter \"end\": end time must not be before start time"
        ));
    }
}
