//! Metrics explorer (`/explore`): PromQL queries over the page's time range, drawn as lines
//! (`tab=graph`, a range query per expression) or listed as a table (`tab=table`, an instant
//! query at the range's end). The whole view is in the URL: `query`, `query2`, ... (up to
//! [`MAX_QUERIES`]), `step` (a duration; automatic when absent), `tab`, and the range, so the
//! links in alert messages (`/explore?query=<expr>&start=<unix>&end=<unix>`) open the
//! expression over the alert's time. A query that fails shows the engine's own error, worded
//! as Prometheus words it.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use leptos_router::params::ParamsMap;
use serde::{Deserialize, Serialize};

use crate::chart::{Series, TimeChart};
use crate::fetch::Api;
use crate::i18n::tr;
use crate::pages::{Empty, ErrorBox};
use crate::promql::{instant_query, parse_value, range_query, to_series, QueryResult};
use crate::time::{auto_step, now_secs, parse_duration, tick, with_query, TimeRange};

/// Most expressions on the page at once.
pub const MAX_QUERIES: usize = 6;
/// Most series drawn per expression; the rest are counted, not drawn.
const MAX_SERIES: usize = 100;
/// Points a graph aims for when the URL names no step.
const TARGET_POINTS: f64 = 240.0;

/// The URL key of the `i`-th expression: `query`, `query2`, `query3`, ...
pub fn query_key(i: usize) -> String {
    if i == 0 {
        "query".into()
    } else {
        format!("query{}", i + 1)
    }
}

/// A, B, C, ...: how the page names its expressions.
pub fn letter(i: usize) -> char {
    char::from(b'A' + (i % 26) as u8)
}

/// The expressions in the URL, in order, including empty ones (a just-added box). Gaps
/// (`query` and `query3` without `query2`) close up.
pub fn queries_of(q: &ParamsMap) -> Vec<String> {
    let mut out: Vec<String> = (0..MAX_QUERIES)
        .filter_map(|i| q.get(&query_key(i)))
        .collect();
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tab {
    Graph,
    Table,
}

fn tab_of(q: &ParamsMap) -> Tab {
    match q.get("tab").as_deref() {
        Some("table") => Tab::Table,
        _ => Tab::Graph,
    }
}

/// The step in seconds: the URL's when it reads as a duration or a number of seconds, else one
/// giving about [`TARGET_POINTS`] points.
fn step_of(q: &ParamsMap, range: f64) -> f64 {
    q.get("step")
        .and_then(|s| parse_duration(&s).or_else(|| s.trim().parse::<f64>().ok()))
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or_else(|| auto_step(range, TARGET_POINTS))
}

#[derive(Clone, Debug, PartialEq)]
struct Key {
    queries: Vec<String>,
    range: TimeRange,
    step: Option<String>,
    tab: Tab,
}

/// One row of the table view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableRow {
    pub labels: BTreeMap<String, String>,
    pub value: String,
}

/// What one expression gave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Outcome {
    /// Nothing asked (an empty box).
    Blank,
    Error(String),
    /// Graph: the series (at most [`MAX_SERIES`]) and how many there were.
    Lines(Vec<Series>, usize),
    /// Table: `resultType` and rows.
    Rows(String, Vec<TableRow>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct ExploreData {
    start: f64,
    end: f64,
    step: f64,
    graph: bool,
    outcomes: Vec<(String, Outcome)>,
}

/// An instant-query answer as table rows: vectors by series, a matrix (a range selector) by
/// series with its samples, scalars and strings as one row.
pub fn table_rows(r: QueryResult) -> (String, Vec<TableRow>) {
    match r {
        QueryResult::Vector(v) => (
            "vector".into(),
            v.into_iter()
                .map(|e| TableRow {
                    labels: e.metric,
                    value: e.value.1,
                })
                .collect(),
        ),
        QueryResult::Matrix(m) => (
            "matrix".into(),
            m.into_iter()
                .map(|e| TableRow {
                    labels: e.metric,
                    value: e
                        .values
                        .iter()
                        .map(|(t, v)| format!("{v} @{t}"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                })
                .collect(),
        ),
        QueryResult::Scalar((_, v)) => (
            "scalar".into(),
            vec![TableRow {
                labels: BTreeMap::new(),
                value: v,
            }],
        ),
        QueryResult::String((_, v)) => (
            "string".into(),
            vec![TableRow {
                labels: BTreeMap::new(),
                value: v,
            }],
        ),
    }
}

async fn load(api: Api, key: Key) -> Result<ExploreData, String> {
    let (start, end) = key.range.resolve(now_secs());
    let step = {
        let mut q = ParamsMap::new();
        if let Some(s) = &key.step {
            q.insert("step", s.clone());
        }
        step_of(&q, end - start)
    };
    let several = key.queries.iter().filter(|q| !q.trim().is_empty()).count() > 1;
    let mut outcomes = Vec::new();
    for (i, expr) in key.queries.iter().enumerate() {
        let outcome = if expr.trim().is_empty() {
            Outcome::Blank
        } else if key.tab == Tab::Graph {
            match range_query(&api, expr, start, end, step).await {
                Err(e) => Outcome::Error(e),
                Ok(m) => {
                    let total = m.len();
                    let mut series = to_series(m.into_iter().take(MAX_SERIES).collect(), None);
                    if several {
                        // the legend says which expression a line is from
                        for s in &mut series {
                            s.name = format!("{}: {}", letter(i), s.name);
                        }
                    }
                    Outcome::Lines(series, total)
                }
            }
        } else {
            match instant_query(&api, expr, end).await {
                Err(e) => Outcome::Error(e),
                Ok(r) => {
                    let (kind, rows) = table_rows(r);
                    Outcome::Rows(kind, rows)
                }
            }
        };
        outcomes.push((expr.clone(), outcome));
    }
    Ok(ExploreData {
        start,
        end,
        step,
        graph: key.tab == Tab::Graph,
        outcomes,
    })
}

/// Hidden inputs that carry the range and view through a GET form.
fn carried(q: &ParamsMap, keys: &[&str]) -> impl IntoView {
    keys.iter()
        .filter_map(|k| q.get(k).map(|v| (k.to_string(), v)))
        .map(|(k, v)| view! { <input type="hidden" name=k value=v/> })
        .collect_view()
}

#[component]
pub fn ExplorePage() -> impl IntoView {
    let api = Api::current();
    let query = use_query_map();
    let data = Resource::new(
        move || {
            (
                query.with(|q| Key {
                    queries: queries_of(q),
                    range: TimeRange::from_query(q),
                    step: q.get("step").filter(|s| !s.trim().is_empty()),
                    tab: tab_of(q),
                }),
                tick(),
            )
        },
        move |(key, _)| load(api.clone(), key),
    );
    let names_api = Api::current();
    let names = Resource::new(
        || (),
        move |_| {
            let api = names_api.clone();
            async move {
                api.get_data::<Vec<String>>("/api/v1/label/__name__/values")
                    .await
                    .unwrap_or_default()
            }
        },
    );

    let form = move || {
        query.with(|q| {
            let queries = queries_of(q);
            let n = queries.len();
            let boxes = queries
                .into_iter()
                .enumerate()
                .map(|(i, text)| {
                    // removing box i: the later ones move up one
                    let remove = (n > 1).then(|| {
                        let mut changes: Vec<(String, Option<String>)> = Vec::new();
                        let current = queries_of(q);
                        for j in i..n {
                            changes.push((query_key(j), current.get(j + 1).cloned()));
                        }
                        let changes: Vec<(&str, Option<String>)> =
                            changes.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                        let href = with_query(&changes);
                        view! {
                            <a class="explore-remove" href=href title=tr("Remove this query", "移除此查询")>"✕"</a>
                        }
                    });
                    view! {
                        <div class="explore-query">
                            <span class="explore-letter">{letter(i).to_string()}</span>
                            <textarea
                                name=query_key(i)
                                rows="2"
                                spellcheck="false"
                                placeholder=tr(
                                    "PromQL, e.g. sum by (job) (rate(http_requests_total[5m]))",
                                    "PromQL，例如 sum by (job) (rate(http_requests_total[5m]))",
                                )
                                prop:value=text.clone()
                            >
                                {text.clone()}
                            </textarea>
                            {remove}
                        </div>
                    }
                })
                .collect_view();
            let add = (n < MAX_QUERIES).then(|| {
                let mut changes: Vec<(String, Option<String>)> = queries_of(q)
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (query_key(i), Some(v)))
                    .collect();
                changes.push((query_key(n), Some(String::new())));
                let changes: Vec<(&str, Option<String>)> =
                    changes.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                let href = with_query(&changes);
                view! { <a class="button" href=href>{tr("+ Add query", "+ 添加查询")}</a> }
            });
            let step = q.get("step").unwrap_or_default();
            view! {
                <form class="explore-form" method="get" action="/explore">
                    {boxes}
                    {carried(q, &["start", "end", "refresh", "tab"])}
                    <div class="explore-controls">
                        <button type="submit" class="primary">{tr("Run query", "执行查询")}</button>
                        {add}
                        <label class="explore-step">
                            {tr("Step", "步长")}
                            <input
                                name="step"
                                size="6"
                                value=step.clone()
                                prop:value=step
                                placeholder=tr("auto", "自动")
                            />
                        </label>
                    </div>
                </form>
            }
        })
    };

    let metric_picker = move || {
        query.with(|q| {
            view! {
                <form class="explore-metrics" method="get" action="/explore">
                    <input
                        name="query"
                        list="metric-names"
                        placeholder=tr("Browse metric names…", "浏览指标名…")
                        autocomplete="off"
                    />
                    {carried(q, &["start", "end", "refresh", "tab", "step"])}
                    <button type="submit">{tr("Show", "查看")}</button>
                </form>
            }
        })
    };

    let tabs = move || {
        let current = query.with(tab_of);
        [
            (Tab::Graph, "graph", "Graph", "图表"),
            (Tab::Table, "table", "Table", "表格"),
        ]
        .into_iter()
        .map(|(t, key, en, zh)| {
            let href = with_query(&[("tab", Some(key.to_string()))]);
            let class = if t == current { "tab active" } else { "tab" };
            view! { <a class=class href=href>{tr(en, zh)}</a> }
        })
        .collect_view()
    };

    let results = move |d: ExploreData| {
        let several = d.outcomes.len() > 1;
        let range = (d.start, d.end);
        let step = d.step;
        let mut lines: Vec<Series> = Vec::new();
        let mut notes = Vec::new();
        let mut tables = Vec::new();
        let mut any = false;
        for (i, (expr, outcome)) in d.outcomes.into_iter().enumerate() {
            let who = if several {
                format!("{}: ", letter(i))
            } else {
                String::new()
            };
            match outcome {
                Outcome::Blank => {}
                Outcome::Error(e) => {
                    any = true;
                    notes.push(view! { <ErrorBox message=format!("{who}{e}")/> }.into_any());
                }
                Outcome::Lines(series, total) => {
                    any = true;
                    if total > series.len() {
                        notes.push(
                            view! {
                                <div class="explore-note">
                                    {format!(
                                        "{who}{} {} {total} {}",
                                        tr("showing the first", "仅显示前"),
                                        series.len(),
                                        tr("series of", "条序列，共"),
                                    )}
                                </div>
                            }
                            .into_any(),
                        );
                    } else if series.is_empty() {
                        notes.push(
                            view! {
                                <div class="explore-note">
                                    {format!("{who}{}", tr("no data in this time range", "该时间范围内没有数据"))}
                                </div>
                            }
                            .into_any(),
                        );
                    }
                    lines.extend(series);
                }
                Outcome::Rows(kind, rows) => {
                    any = true;
                    tables.push(table_view(who, expr, kind, rows).into_any());
                }
            }
        }
        if !any {
            return view! {
                <Empty text=tr(
                    "Write a PromQL expression and run it, or pick a metric name.",
                    "输入 PromQL 表达式并执行，或选择一个指标名。",
                )/>
            }
            .into_any();
        }
        let chart = d.graph.then(|| {
            let n = lines.len();
            view! {
                <div class="explore-meta">
                    {format!("{n} {} · {} {}s", tr("series", "条序列"), tr("step", "步长"), step)}
                </div>
                <TimeChart
                    series=Signal::derive(move || lines.clone())
                    range=Signal::derive(move || range)
                    step=Signal::derive(move || step)
                />
            }
        });
        view! { {notes} {chart} {tables} }.into_any()
    };

    view! {
        <section class="panel explore">
            <h1>{tr("Metrics explorer", "指标查询")}</h1>
            {form}
            <div class="explore-bar">
                <div class="tabs">{tabs}</div>
                {metric_picker}
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        let names = names.await;
                        view! {
                            <datalist id="metric-names">
                                {names.into_iter().map(|n| view! { <option value=n/> }).collect_view()}
                            </datalist>
                        }
                    })}
                </Transition>
            </div>
            <div class="explore-results">
                <Transition fallback=|| view! { <div class="loading explore-loading">"…"</div> }>
                    {move || Suspend::new(async move {
                        match data.await {
                            Ok(d) => results(d),
                            Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                        }
                    })}
                </Transition>
            </div>
        </section>
    }
}

/// The table view of one expression: one column per label, then the value.
fn table_view(who: String, expr: String, kind: String, rows: Vec<TableRow>) -> impl IntoView {
    let mut cols: Vec<String> = Vec::new();
    for r in &rows {
        for k in r.labels.keys() {
            if k != "__name__" && !cols.contains(k) {
                cols.push(k.clone());
            }
        }
    }
    let count = rows.len();
    let body = rows
        .into_iter()
        .map(|r| {
            let name = r.labels.get("__name__").cloned().unwrap_or_default();
            let cells = cols
                .iter()
                .map(|c| view! { <td>{r.labels.get(c).cloned().unwrap_or_default()}</td> })
                .collect_view();
            let shown = match kind.as_str() {
                "vector" | "scalar" => crate::format::si(parse_value(&r.value)),
                _ => String::new(),
            };
            view! {
                <tr>
                    <td class="mono">{name}</td>
                    {cells}
                    <td class="num mono" title=shown>{r.value}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="explore-table">
            <div class="explore-meta">
                {format!("{who}{count} {} ({kind}) · ", tr("results", "条结果"))}
                <code>{expr}</code>
            </div>
            <table class="grid-table">
                <thead>
                    <tr>
                        <th>{tr("metric", "指标")}</th>
                        {cols.iter().map(|c| view! { <th>{c.clone()}</th> }).collect_view()}
                        <th class="num">{tr("value", "值")}</th>
                    </tr>
                </thead>
                <tbody>{body}</tbody>
            </table>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> ParamsMap {
        let mut q = ParamsMap::new();
        for (k, v) in pairs {
            q.insert(k.to_string(), v.to_string());
        }
        q
    }

    #[test]
    fn queries_come_in_url_order_and_close_up() {
        assert_eq!(queries_of(&params(&[])), [""]);
        assert_eq!(
            queries_of(&params(&[("query3", "c"), ("query", "a")])),
            ["a", "c"]
        );
        assert_eq!(query_key(0), "query");
        assert_eq!(query_key(2), "query3");
        assert_eq!(letter(1), 'B');
    }

    #[test]
    fn steps_from_the_url_or_automatic() {
        assert_eq!(step_of(&params(&[("step", "1m")]), 3600.0), 60.0);
        assert_eq!(step_of(&params(&[("step", "30")]), 3600.0), 30.0);
        assert_eq!(step_of(&params(&[("step", "-5")]), 3600.0), 15.0);
        assert_eq!(step_of(&params(&[]), 3600.0), 15.0);
    }

    #[test]
    fn instant_answers_become_rows() {
        let r: QueryResult = serde_json::from_str(
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1,"1"]}]}"#,
        )
        .unwrap();
        let (kind, rows) = table_rows(r);
        assert_eq!(kind, "vector");
        assert_eq!(rows[0].labels["job"], "a");
        assert_eq!(rows[0].value, "1");
        let r: QueryResult =
            serde_json::from_str(r#"{"resultType":"scalar","result":[1,"2.5"]}"#).unwrap();
        assert_eq!(table_rows(r).1[0].value, "2.5");
        let r: QueryResult = serde_json::from_str(
            r#"{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"],[2,"3"]]}]}"#,
        )
        .unwrap();
        assert_eq!(table_rows(r).1[0].value, "1 @1\n3 @2");
    }
}
