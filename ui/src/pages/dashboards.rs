//! Dashboards: the list (`/dashboards`, with the problems of dashboard files that did not
//! load) and one dashboard (`/dashboards/:id`): its variables as selects whose values live in
//! the URL (`var-<name>=...`, as Grafana writes them; `$__all` is "All"), then its rows of
//! panels, each queried over the page's time range with the variables substituted. A panel
//! whose query fails shows its error in place; the others still show.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};
use leptos_router::params::ParamsMap;
use serde::{Deserialize, Serialize};

use crate::chart::{Series, Sparkline, TimeChart, Unit, PALETTE};
use crate::dashboards::model::{
    builtin_values, interpolate, parse_label_values, Dashboard, Panel, PanelType, UnitName,
    Variable, ALL_VALUE,
};
use crate::dashboards::{DashboardList, LoadedDashboard};
use crate::fetch::{enc, Api};
use crate::i18n::tr;
use crate::pages::explore::{table_rows, TableRow};
use crate::pages::ErrorBox;
use crate::promql::{instant_query, parse_value, range_query, series_name, to_series};
use crate::time::{auto_step, now_secs, range_link, tick, with_query, TimeRange};

/// The URL value of "All" (Grafana's spelling).
pub const ALL_PARAM: &str = "$__all";
/// Points a panel's lines aim for (panels are narrower than the explorer).
const PANEL_POINTS: f64 = 150.0;
/// Most series a panel draws.
const MAX_SERIES: usize = 50;

// ---- list ---------------------------------------------------------------------------------

#[component]
pub fn DashboardsPage() -> impl IntoView {
    let api = Api::current();
    let data = Resource::new(tick, move |_| {
        let api = api.clone();
        async move { api.get_data::<DashboardList>("/api/v1/dashboards").await }
    });
    let view_of = move |d: DashboardList| {
        let problems = (!d.errors.is_empty()).then(|| {
            view! {
                <div class="error dash-problems" role="alert">
                    <b>{tr("Dashboard files with problems:", "有问题的仪表盘文件：")}</b>
                    <ul>
                        {d.errors.iter().map(|e| view! { <li class="mono">{e.to_string()}</li> }).collect_view()}
                    </ul>
                </div>
            }
        });
        let rows = d
            .dashboards
            .into_iter()
            .map(|s| {
                let href = range_link(&format!("/dashboards/{}", enc(&s.id)), &[]);
                view! {
                    <tr>
                        <td><a class="dash-link" href=href>{s.title}</a></td>
                        <td class="muted">{s.description}</td>
                        <td>{s.tags.into_iter().map(|t| view! { <span class="badge">{t}</span> }).collect_view()}</td>
                        <td class="num">{s.panels}</td>
                        <td class="mono muted">{s.source}</td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            {problems}
            <table class="grid-table dash-list">
                <thead>
                    <tr>
                        <th>{tr("Dashboard", "仪表盘")}</th>
                        <th>{tr("Description", "说明")}</th>
                        <th>{tr("Tags", "标签")}</th>
                        <th class="num">{tr("Panels", "面板")}</th>
                        <th>{tr("Defined in", "定义于")}</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        }
    };
    view! {
        <section class="panel">
            <h1>{tr("Dashboards", "仪表盘")}</h1>
            <Transition fallback=|| view! { <div class="loading">"…"</div> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(d) => view_of(d).into_any(),
                        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                    }
                })}
            </Transition>
            <p class="muted dash-hint">
                {tr(
                    "Dashboards are YAML files: the built-in ones, and yours in the directory ui.dashboards_dir names (see docs/dashboards.md). They reload when the files change.",
                    "仪表盘定义在 YAML 文件中：内置的，以及 ui.dashboards_dir 目录中你自己的（见 docs/dashboards.md）。文件修改后自动重新加载。",
                )}
            </p>
        </section>
    }
}

// ---- one dashboard ------------------------------------------------------------------------

/// A variable as the page shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct VarState {
    name: String,
    caption: String,
    options: Vec<String>,
    include_all: bool,
    /// As in the URL ([`ALL_PARAM`] for "All").
    selected: String,
    error: Option<String>,
}

/// A log record as a logs panel shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct LogLine {
    #[serde(default)]
    time: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    trace_id: Option<String>,
}

#[derive(Deserialize)]
struct LogRecords {
    records: Vec<LogLine>,
}

/// One series of a stat panel: name, latest value, points.
type Stat = (String, f64, Vec<(f64, f64)>);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum PanelData {
    Lines(Vec<Series>),
    Stat(Vec<Stat>),
    Table(Vec<TableRow>),
    Bars(Vec<(String, f64)>),
    Logs(Vec<LogLine>),
    Error(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct PanelOut {
    /// The query with variables substituted (linked to the explorer or the logs page).
    query: String,
    data: PanelData,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct DashData {
    loaded: LoadedDashboard,
    start: f64,
    end: f64,
    step: f64,
    vars: Vec<VarState>,
    rows: Vec<Vec<PanelOut>>,
}

/// The `var-*` values of the URL.
fn var_params(q: &ParamsMap) -> BTreeMap<String, String> {
    q.clone()
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("var-").map(|n| (n.to_string(), v)))
        .collect()
}

/// The value a variable starts with: the URL's, else its default, else "All" when offered,
/// else its first option.
fn choose(v: &Variable, options: &[String], url: Option<&String>) -> String {
    if let Some(u) = url {
        return u.clone();
    }
    if let Some(d) = &v.default {
        return if d == ALL_VALUE && v.include_all {
            ALL_PARAM.into()
        } else {
            d.clone()
        };
    }
    if v.include_all {
        return ALL_PARAM.into();
    }
    options.first().cloned().unwrap_or_default()
}

/// What a selected value stands for in queries: "All" is the regex `.*`.
fn substitute(selected: &str) -> String {
    if selected == ALL_PARAM {
        ALL_VALUE.into()
    } else {
        selected.to_string()
    }
}

async fn variable_options(
    api: &Api,
    v: &Variable,
    values: &BTreeMap<String, String>,
    start: f64,
    end: f64,
) -> Result<Vec<String>, String> {
    let Some(q) = &v.query else {
        return Ok(v.values.clone());
    };
    let (selector, label) = parse_label_values(q)?;
    let mut path = format!(
        "/api/v1/label/{}/values?start={start:.3}&end={end:.3}",
        enc(&label)
    );
    if let Some(sel) = selector {
        path.push_str(&format!("&match[]={}", enc(&interpolate(&sel, values))));
    }
    api.get_data::<Vec<String>>(&path).await
}

fn last_finite(points: &[(f64, f64)]) -> f64 {
    points
        .iter()
        .rev()
        .map(|p| p.1)
        .find(|v| v.is_finite())
        .unwrap_or(f64::NAN)
}

async fn panel_data(
    api: &Api,
    p: &Panel,
    values: &BTreeMap<String, String>,
    (start, end, step): (f64, f64, f64),
) -> PanelOut {
    if p.kind == PanelType::Logs {
        let query = interpolate(p.logs_query.as_deref().unwrap_or_default(), values);
        let path = format!(
            "/api/v1/logs/query?query={}&start={start:.3}&end={end:.3}&limit={}",
            enc(&query),
            p.limit.unwrap_or(50).clamp(1, 500)
        );
        let data = match api.get_data::<LogRecords>(&path).await {
            Ok(r) => PanelData::Logs(r.records),
            Err(e) => PanelData::Error(e),
        };
        return PanelOut { query, data };
    }
    let query = interpolate(p.expr.as_deref().unwrap_or_default(), values);
    let legend = p.legend.as_deref();
    let data = match p.kind {
        PanelType::Timeseries | PanelType::Stat => {
            match range_query(api, &query, start, end, step).await {
                Err(e) => PanelData::Error(e),
                Ok(m) => {
                    let series = to_series(m.into_iter().take(MAX_SERIES).collect(), legend);
                    if p.kind == PanelType::Timeseries {
                        PanelData::Lines(series)
                    } else {
                        PanelData::Stat(
                            series
                                .into_iter()
                                .take(8)
                                .map(|s| (s.name.clone(), last_finite(&s.points), s.points))
                                .collect(),
                        )
                    }
                }
            }
        }
        PanelType::Table | PanelType::Bar => match instant_query(api, &query, end).await {
            Err(e) => PanelData::Error(e),
            Ok(r) => {
                let (_, rows) = table_rows(r);
                if p.kind == PanelType::Table {
                    PanelData::Table(rows)
                } else {
                    PanelData::Bars(
                        rows.into_iter()
                            .take(MAX_SERIES)
                            .map(|r| {
                                let name = legend
                                    .and_then(|l| r.labels.get(l).cloned())
                                    .unwrap_or_else(|| series_name(&r.labels));
                                (name, parse_value(&r.value))
                            })
                            .collect(),
                    )
                }
            }
        },
        PanelType::Logs => PanelData::Error("unreachable: logs handled above".into()),
    };
    PanelOut { query, data }
}

async fn load(
    api: Api,
    id: String,
    range: TimeRange,
    url_vars: BTreeMap<String, String>,
) -> Result<DashData, String> {
    let loaded: LoadedDashboard = api
        .get_data(&format!("/api/v1/dashboards/{}", enc(&id)))
        .await?;
    let (start, end) = range.resolve(now_secs());
    let step = auto_step(end - start, PANEL_POINTS);
    let mut values = builtin_values(step, end - start);
    let mut vars = Vec::new();
    for v in &loaded.dashboard.variables {
        let (options, error) = match variable_options(&api, v, &values, start, end).await {
            Ok(o) => (o, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let selected = choose(v, &options, url_vars.get(&v.name));
        values.insert(v.name.clone(), substitute(&selected));
        vars.push(VarState {
            name: v.name.clone(),
            caption: v.caption().to_string(),
            options,
            include_all: v.include_all,
            selected,
            error,
        });
    }
    let mut rows = Vec::new();
    for row in &loaded.dashboard.rows {
        let mut out = Vec::new();
        for p in &row.panels {
            out.push(panel_data(&api, p, &values, (start, end, step)).await);
        }
        rows.push(out);
    }
    Ok(DashData {
        loaded,
        start,
        end,
        step,
        vars,
        rows,
    })
}

fn chart_unit(u: UnitName) -> Unit {
    match u {
        UnitName::None | UnitName::Bytes => Unit::Plain,
        UnitName::Seconds => Unit::Seconds,
        UnitName::Ratio => Unit::Ratio,
        UnitName::PerSecond => Unit::PerSecond,
    }
}

/// `1.5 MiB`: bytes in binary multiples.
pub fn bytes(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = v.abs();
    let mut i = 0;
    while x >= 1024.0 && i < UNITS.len() - 1 {
        x /= 1024.0;
        i += 1;
    }
    let sign = if v < 0.0 { "-" } else { "" };
    if i == 0 || x >= 100.0 {
        format!("{sign}{x:.0} {}", UNITS[i])
    } else {
        format!("{sign}{x:.1} {}", UNITS[i])
    }
}

/// A value as the panel's unit writes it.
pub fn fmt_value(u: UnitName, v: f64) -> String {
    match u {
        UnitName::Bytes => bytes(v),
        other => chart_unit(other).fmt(v),
    }
}

/// The CSS flex of a panel: its width in twelfths, or an equal share.
fn panel_style(width: Option<u8>) -> String {
    match width {
        Some(w) => format!("flex: 0 0 calc({:.4}% - 12px)", f64::from(w) / 12.0 * 100.0),
        None => "flex: 1 1 0".into(),
    }
}

#[component]
pub fn DashboardPage() -> impl IntoView {
    let api = Api::current();
    let params = use_params_map();
    let query = use_query_map();
    let data = Resource::new(
        move || {
            (
                params.with(|p| p.get("id").unwrap_or_default()),
                query.with(TimeRange::from_query),
                query.with(var_params),
                tick(),
            )
        },
        move |(id, range, vars, _)| load(api.clone(), id, range, vars),
    );
    let navigate = use_navigate();
    let view_of = move |d: DashData| {
        let dash: Dashboard = d.loaded.dashboard;
        let range = (d.start, d.end);
        let step = d.step;
        let navigate = navigate.clone();
        let selects = d
            .vars
            .into_iter()
            .map(|v| {
                let navigate = navigate.clone();
                let key = format!("var-{}", v.name);
                let key2 = key.clone();
                let mut options: Vec<(String, String)> = Vec::new();
                if v.include_all {
                    options.push((ALL_PARAM.into(), tr("All", "全部").into()));
                }
                options.extend(v.options.iter().map(|o| (o.clone(), o.clone())));
                if !v.selected.is_empty() && !options.iter().any(|(o, _)| *o == v.selected) {
                    // a value from the URL that the data no longer has: still shown, chosen
                    options.push((v.selected.clone(), v.selected.clone()));
                }
                let empty = options.is_empty();
                let selected = v.selected.clone();
                view! {
                    <label class="dash-var">
                        <span>{v.caption}</span>
                        <select
                            name=key
                            on:change=move |ev| {
                                let url = with_query(&[(key2.as_str(), Some(event_target_value(&ev)))]);
                                navigate(&url, Default::default());
                            }
                        >
                            {empty.then(|| view! { <option value="">{tr("(no values)", "（无取值）")}</option> })}
                            {options
                                .into_iter()
                                .map(|(value, text)| {
                                    let sel = value == selected;
                                    view! { <option value=value selected=sel>{text}</option> }
                                })
                                .collect_view()}
                        </select>
                        {v.error.map(|e| view! { <span class="dash-var-error" title=e>"⚠"</span> })}
                    </label>
                }
            })
            .collect_view();
        let has_vars = !dash.variables.is_empty();
        let carried = query.with_untracked(|q| {
            ["start", "end", "refresh"]
                .iter()
                .filter_map(|k| q.get(k).map(|v| (k.to_string(), v)))
                .map(|(k, v)| view! { <input type="hidden" name=k value=v/> })
                .collect_view()
        });
        let rows = dash
            .rows
            .iter()
            .zip(d.rows)
            .map(|(row, outs)| {
                let panels = row
                    .panels
                    .iter()
                    .zip(outs)
                    .map(|(p, out)| panel_view(p.clone(), out, range, step))
                    .collect_view();
                view! {
                    <div class="dash-row">
                        {row.title.clone().map(|t| view! { <h2 class="dash-row-title">{t}</h2> })}
                        <div class="dash-panels">{panels}</div>
                    </div>
                }
            })
            .collect_view();
        view! {
            <div class="dash-head">
                <h1>{dash.title.clone()}</h1>
                <span class="muted">{dash.description.clone()}</span>
            </div>
            {has_vars.then(|| view! {
                <form class="dash-vars" method="get">
                    {selects}
                    {carried}
                    <noscript><button type="submit">{tr("Apply", "应用")}</button></noscript>
                </form>
            })}
            {rows}
            <div class="muted dash-source">{format!("{} {}", tr("Defined in", "定义于"), d.loaded.source)}</div>
        }
        .into_any()
    };
    view! {
        <section class="dashboard">
            <div class="dash-nav">
                <a href=move || { query.track(); range_link("/dashboards", &[]) }>
                    {tr("← All dashboards", "← 全部仪表盘")}
                </a>
            </div>
            <Transition fallback=|| view! { <div class="loading">"…"</div> }>
                {move || {
                    let view_of = view_of.clone();
                    Suspend::new(async move {
                        match data.await {
                            Ok(d) => view_of(d),
                            Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                        }
                    })
                }}
            </Transition>
        </section>
    }
}

/// One panel: title (linking to the explorer or the logs page with its query) and content.
fn panel_view(p: Panel, out: PanelOut, range: (f64, f64), step: f64) -> impl IntoView {
    let unit = p.unit;
    let link = if p.kind == PanelType::Logs {
        range_link("/logs", &[("query", out.query.clone())])
    } else {
        range_link("/explore", &[("query", out.query.clone())])
    };
    let body = match out.data {
        PanelData::Error(e) => view! { <ErrorBox message=e/> }.into_any(),
        PanelData::Lines(series) => {
            if series.is_empty() {
                view! { <div class="empty dash-nodata">{tr("No data", "无数据")}</div> }.into_any()
            } else {
                view! {
                    <TimeChart
                        series=Signal::derive(move || series.clone())
                        range=Signal::derive(move || range)
                        unit=chart_unit(unit)
                        step=Signal::derive(move || step)
                    />
                }
                .into_any()
            }
        }
        PanelData::Stat(stats) => {
            if stats.is_empty() {
                view! { <div class="stat-value muted">"-"</div> }.into_any()
            } else {
                let one = stats.len() == 1;
                stats
                    .into_iter()
                    .enumerate()
                    .map(|(i, (name, v, points))| {
                        view! {
                            <div class="stat">
                                <div class="stat-value">{fmt_value(unit, v)}</div>
                                {(!one).then(|| view! { <div class="stat-name mono">{name}</div> })}
                                <Sparkline points=points color=PALETTE[i % PALETTE.len()]/>
                            </div>
                        }
                    })
                    .collect_view()
                    .into_any()
            }
        }
        PanelData::Table(rows) => table(rows, unit).into_any(),
        PanelData::Bars(bars) => {
            let max = bars
                .iter()
                .map(|b| b.1)
                .filter(|v| v.is_finite())
                .fold(0.0, f64::max);
            if bars.is_empty() {
                view! { <div class="empty dash-nodata">{tr("No data", "无数据")}</div> }.into_any()
            } else {
                view! {
                    <div class="hbars">
                        {bars
                            .into_iter()
                            .enumerate()
                            .map(|(i, (name, v))| {
                                let pct = if max > 0.0 && v.is_finite() { (v / max * 100.0).max(0.0) } else { 0.0 };
                                view! {
                                    <div class="hbar">
                                        <span class="hbar-name mono" title=name.clone()>{name.clone()}</span>
                                        <span class="hbar-track">
                                            <span
                                                class="hbar-fill"
                                                style=format!("width:{pct:.1}%;background:{}", PALETTE[i % PALETTE.len()])
                                            ></span>
                                        </span>
                                        <span class="hbar-value">{fmt_value(unit, v)}</span>
                                    </div>
                                }
                            })
                            .collect_view()}
                    </div>
                }
                .into_any()
            }
        }
        PanelData::Logs(lines) => {
            if lines.is_empty() {
                view! { <div class="empty dash-nodata">{tr("No log records", "无日志")}</div> }
                    .into_any()
            } else {
                view! {
                    <div class="dash-logs">
                        {lines
                            .into_iter()
                            .map(|l| {
                                let time = l.time.get(11..23).unwrap_or(&l.time).to_string();
                                let trace = l.trace_id.map(|t| {
                                    let href = range_link(&format!("/traces/{}", enc(&t)), &[]);
                                    view! { <a class="dash-log-trace" href=href>{tr("trace", "链路")}</a> }
                                });
                                let class = format!("dash-log sev-{}", l.severity.to_lowercase());
                                view! {
                                    <div class=class>
                                        <span class="dash-log-time mono" title=l.time.clone()>{time}</span>
                                        <span class="dash-log-sev">{l.severity}</span>
                                        <span class="dash-log-svc">{l.service}</span>
                                        <span class="dash-log-body mono">{l.body}</span>
                                        {trace}
                                    </div>
                                }
                            })
                            .collect_view()}
                    </div>
                }
                .into_any()
            }
        }
    };
    let kind = match p.kind {
        PanelType::Timeseries => "timeseries",
        PanelType::Stat => "stat",
        PanelType::Table => "table",
        PanelType::Bar => "bar",
        PanelType::Logs => "logs",
    };
    view! {
        <div class=format!("panel dash-panel dash-{kind}") style=panel_style(p.width)>
            <div class="dash-panel-head">
                <span class="dash-panel-title" title=p.description.clone().unwrap_or_default()>{p.title.clone()}</span>
                <a class="dash-panel-link" href=link title=out.query>
                    {if p.kind == PanelType::Logs { tr("Logs ↗", "日志 ↗") } else { tr("Explore ↗", "查询 ↗") }}
                </a>
            </div>
            {body}
        </div>
    }
}

fn table(rows: Vec<TableRow>, unit: UnitName) -> impl IntoView {
    if rows.is_empty() {
        return view! { <div class="empty dash-nodata">{tr("No data", "无数据")}</div> }.into_any();
    }
    let mut cols: Vec<String> = Vec::new();
    for r in &rows {
        for k in r.labels.keys() {
            if k != "__name__" && !cols.contains(k) {
                cols.push(k.clone());
            }
        }
    }
    let body = rows
        .into_iter()
        .map(|r| {
            let cells = cols
                .iter()
                .map(|c| view! { <td>{r.labels.get(c).cloned().unwrap_or_default()}</td> })
                .collect_view();
            view! {
                <tr>
                    {cells}
                    <td class="num">{fmt_value(unit, parse_value(&r.value))}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="dash-table-wrap">
            <table class="grid-table">
                <thead>
                    <tr>
                        {cols.iter().map(|c| view! { <th>{c.clone()}</th> }).collect_view()}
                        <th class="num">{tr("value", "值")}</th>
                    </tr>
                </thead>
                <tbody>{body}</tbody>
            </table>
        </div>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(include_all: bool, default: Option<&str>) -> Variable {
        Variable {
            name: "service".into(),
            label: None,
            query: None,
            values: vec!["a".into(), "b".into()],
            include_all,
            default: default.map(Into::into),
        }
    }

    #[test]
    fn variable_values_come_from_the_url_then_the_default_then_all_or_the_first() {
        let opts = vec!["a".to_string(), "b".to_string()];
        let url = "b".to_string();
        assert_eq!(choose(&var(false, None), &opts, Some(&url)), "b");
        assert_eq!(choose(&var(false, Some("b")), &opts, None), "b");
        assert_eq!(choose(&var(true, None), &opts, None), ALL_PARAM);
        assert_eq!(choose(&var(true, Some(".*")), &opts, None), ALL_PARAM);
        assert_eq!(choose(&var(false, None), &opts, None), "a");
        assert_eq!(choose(&var(false, None), &[], None), "");
        assert_eq!(substitute(ALL_PARAM), ".*");
        assert_eq!(substitute("x"), "x");
    }

    #[test]
    fn url_variables_and_units() {
        let mut q = ParamsMap::new();
        q.insert("var-service", "checkout".to_string());
        q.insert("start", "now-1h".to_string());
        assert_eq!(
            var_params(&q),
            BTreeMap::from([("service".to_string(), "checkout".to_string())])
        );
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0 GiB");
        assert_eq!(fmt_value(UnitName::Ratio, 0.5), "50.0%");
        assert_eq!(panel_style(Some(6)), "flex: 0 0 calc(50.0000% - 12px)");
    }
}
