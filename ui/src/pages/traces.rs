//! Trace search `/traces`: a GET form (service, operation, logfmt tags, duration bounds,
//! errors only, limit, order) whose values live in the URL with the time range, so the
//! alert messages' links (`/traces?service=<svc>&error=true&start=<unix>&end=<unix>`) open
//! exactly that search. Results come from `/api/v1/traces?...`: a duration scatter plot
//! (x = start time, y = duration, errors in red, a dot opens its trace) and a table, each
//! row linking to `/traces/<id>`.
//!
//! The form works without wasm (a plain GET to `/traces`); once hydrated, submitting it
//! navigates in place and leaves empty fields out of the URL.

use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_query_map};
use leptos_router::params::ParamsMap;
use serde::{Deserialize, Serialize};

use crate::fetch::{enc, Api};
use crate::format;
use crate::i18n::tr;
use crate::pages::trace::set_param;
use crate::pages::waterfall::{scatter, service_color, Dot, SCATTER_H, SCATTER_W};
use crate::pages::{Empty, ErrorBox};
use crate::time::{now_secs, query_url, range_link, tick, TimeRange};

/// Results a search asks for when the form names no limit (the API's default too).
pub const DEFAULT_LIMIT: usize = 20;

/// The search in the URL, as the form shows it.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Search {
    pub service: String,
    pub operation: String,
    /// logfmt `key=value` pairs.
    pub tags: String,
    pub min_duration: String,
    pub max_duration: String,
    pub error: bool,
    pub limit: String,
    /// Result order: [`ORDERS`].
    pub sort: String,
}

/// Result orders, as they appear in the URL (`sort`), the first being the default.
const ORDERS: [(&str, &str, &str); 5] = [
    ("recent", "Most recent", "最近"),
    ("longest", "Longest first", "耗时最长"),
    ("shortest", "Shortest first", "耗时最短"),
    ("spans", "Most spans", "Span 最多"),
    ("errors", "Most errors", "错误最多"),
];

impl Search {
    pub fn from_query(q: &ParamsMap) -> Self {
        let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
        Search {
            service: get("service"),
            operation: get("operation"),
            tags: get("tags"),
            min_duration: get("min_duration"),
            max_duration: get("max_duration"),
            error: matches!(
                get("error").to_ascii_lowercase().as_str(),
                "true" | "1" | "on"
            ),
            limit: get("limit"),
            sort: get("sort"),
        }
    }

    /// The `/api/v1/traces` request for `start..end` (Unix seconds): empty fields are left
    /// out, the API checks the rest (a bad duration or tag comes back as its message).
    pub fn api_path(&self, start: f64, end: f64) -> String {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in [
            ("service", &self.service),
            ("operation", &self.operation),
            ("tags", &self.tags),
            ("min_duration", &self.min_duration),
            ("max_duration", &self.max_duration),
        ] {
            if !v.is_empty() {
                pairs.push((k.into(), v.clone()));
            }
        }
        if self.error {
            pairs.push(("error".into(), "true".into()));
        }
        pairs.push(("start".into(), format!("{start:.3}")));
        pairs.push(("end".into(), format!("{end:.3}")));
        let limit = if self.limit.is_empty() {
            DEFAULT_LIMIT.to_string()
        } else {
            self.limit.clone()
        };
        pairs.push(("limit".into(), limit));
        query_url("/api/v1/traces", &pairs)
    }

    /// `pairs` (the current URL's query) with this search's fields: set when filled in,
    /// removed when empty; the time range and anything else are kept.
    pub fn apply_to(&self, pairs: &[(String, String)]) -> Vec<(String, String)> {
        let opt = |v: &str| (!v.is_empty()).then(|| v.to_string());
        let sort = opt(&self.sort).filter(|s| s != ORDERS[0].0);
        let mut out = pairs.to_vec();
        for (k, v) in [
            ("service", opt(&self.service)),
            ("operation", opt(&self.operation)),
            ("tags", opt(&self.tags)),
            ("min_duration", opt(&self.min_duration)),
            ("max_duration", opt(&self.max_duration)),
            ("error", self.error.then(|| "true".to_string())),
            ("limit", opt(&self.limit)),
            ("sort", sort),
        ] {
            out = set_param(&out, k, v);
        }
        out
    }

    fn limit(&self) -> usize {
        self.limit.parse().unwrap_or(DEFAULT_LIMIT)
    }
}

/// One result of `/api/v1/traces`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub trace_id: String,
    #[serde(default)]
    pub root_service: String,
    #[serde(default)]
    pub root_operation: String,
    pub start_time_unix_nano: String,
    pub duration_nanos: u64,
    pub span_count: u64,
    pub error_count: u64,
    #[serde(default)]
    pub services: Vec<String>,
}

impl Summary {
    fn start_secs(&self) -> f64 {
        self.start_time_unix_nano.parse::<u64>().unwrap_or(0) as f64 / 1e9
    }
    fn duration_secs(&self) -> f64 {
        self.duration_nanos as f64 / 1e9
    }
}

/// Sorts results in the order `key` names (unknown keys: most recent first).
pub fn sort_results(rows: &mut [Summary], key: &str) {
    let start = |s: &Summary| s.start_time_unix_nano.parse::<u64>().unwrap_or(0);
    match key {
        "longest" => rows.sort_by_key(|r| std::cmp::Reverse(r.duration_nanos)),
        "shortest" => rows.sort_by_key(|r| r.duration_nanos),
        "spans" => rows.sort_by_key(|r| std::cmp::Reverse(r.span_count)),
        "errors" => rows.sort_by(|a, b| {
            b.error_count
                .cmp(&a.error_count)
                .then(start(b).cmp(&start(a)))
        }),
        _ => rows.sort_by_key(|s| std::cmp::Reverse(start(s))),
    }
}

/// The form's choices: every service (all time, as Jaeger lists them) and the operations of
/// the chosen one. A failure leaves the lists empty: the form still works with typed values.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
struct Choices {
    services: Vec<String>,
    operations: Vec<String>,
}

async fn load_choices(api: Api, service: String) -> Choices {
    let services = api
        .get_data::<Vec<String>>("/api/services")
        .await
        .unwrap_or_default();
    let operations = if service.is_empty() {
        Vec::new()
    } else {
        api.get_data::<Vec<String>>(&format!("/api/services/{}/operations", enc(&service)))
            .await
            .unwrap_or_default()
    };
    Choices {
        services,
        operations,
    }
}

async fn load_results(api: Api, search: Search, range: TimeRange) -> Result<Vec<Summary>, String> {
    let (start, end) = range.resolve(now_secs());
    api.get_data(&search.api_path(start, end)).await
}

/// The current URL's query as pairs.
fn query_pairs(q: &ParamsMap) -> Vec<(String, String)> {
    q.clone()
        .into_iter()
        .map(|(k, v)| (k.into_owned(), v))
        .collect()
}

#[component]
pub fn TracesPage() -> impl IntoView {
    let api = Api::current();
    let query = use_query_map();
    let search = Memo::new(move |_| query.with(Search::from_query));
    // a trace id typed into the lookup box: the plain GET form lands here with `trace_id`
    #[cfg(feature = "ssr")]
    if let Some(id) = query.with_untracked(|q| q.get("trace_id")) {
        let id = id.trim().to_ascii_lowercase();
        if !id.is_empty() {
            leptos_axum::redirect(&format!("/traces/{}", enc(&id)));
        }
    }
    // bumped by every submit, so searching again refreshes even when the URL stays the same
    let searches = RwSignal::new(0u64);
    let choices_api = api.clone();
    let choices = Resource::new(
        move || search.with(|s| s.service.clone()),
        move |svc| load_choices(choices_api.clone(), svc),
    );
    let results = Resource::new(
        move || {
            (
                search.get(),
                query.with(TimeRange::from_query),
                tick(),
                searches.get(),
            )
        },
        move |(s, range, _, _)| load_results(api.clone(), s, range),
    );
    let navigate = use_navigate();
    view! {
        <section class="panel traces-search">
            <h1>{tr("Traces", "链路")}</h1>
            <Transition fallback=|| view! { <div class="loading">"…"</div> }>
                {
                    let navigate = navigate.clone();
                    move || {
                        let navigate = navigate.clone();
                        Suspend::new(async move {
                            let c = choices.await;
                            search_form(search.get_untracked(), c, query, searches, navigate)
                        })
                    }
                }
            </Transition>
        </section>
        <section class="panel traces-results">
            <Transition fallback=|| view! { <div class="loading">"…"</div> }>
                {move || Suspend::new(async move {
                    match results.await {
                        Ok(rows) => results_view(rows, &search.get_untracked()).into_any(),
                        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

fn search_form<N>(
    s: Search,
    c: Choices,
    query: Memo<ParamsMap>,
    searches: RwSignal<u64>,
    navigate: N,
) -> AnyView
where
    N: Fn(&str, leptos_router::NavigateOptions) + Clone + 'static,
{
    use leptos::html;
    let service_ref = NodeRef::<html::Select>::new();
    let operation_ref = NodeRef::<html::Input>::new();
    let tags_ref = NodeRef::<html::Input>::new();
    let min_ref = NodeRef::<html::Input>::new();
    let max_ref = NodeRef::<html::Input>::new();
    let error_ref = NodeRef::<html::Input>::new();
    let limit_ref = NodeRef::<html::Input>::new();
    let sort_ref = NodeRef::<html::Select>::new();
    let id_ref = NodeRef::<html::Input>::new();

    let submit_nav = navigate.clone();
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let text = |r: NodeRef<html::Input>| r.get().map(|e| e.value().trim().to_string());
        let chosen = |r: NodeRef<html::Select>| r.get().map(|e| e.value());
        let form = Search {
            service: chosen(service_ref).unwrap_or_default(),
            operation: text(operation_ref).unwrap_or_default(),
            tags: text(tags_ref).unwrap_or_default(),
            min_duration: text(min_ref).unwrap_or_default(),
            max_duration: text(max_ref).unwrap_or_default(),
            error: error_ref.get().is_some_and(|e| e.checked()),
            limit: text(limit_ref).unwrap_or_default(),
            sort: chosen(sort_ref).unwrap_or_default(),
        };
        let pairs = form.apply_to(&query.with_untracked(query_pairs));
        searches.update(|n| *n += 1);
        submit_nav(&query_url("/traces", &pairs), Default::default());
    };
    let on_lookup = move |ev: leptos::ev::SubmitEvent| {
        let Some(id) = id_ref.get().map(|e| e.value().trim().to_ascii_lowercase()) else {
            return;
        };
        ev.prevent_default();
        if !id.is_empty() {
            navigate(&format!("/traces/{}", enc(&id)), Default::default());
        }
    };

    // the URL's service is offered even when the list does not have it (yet)
    let mut services = c.services;
    if !s.service.is_empty() && !services.contains(&s.service) {
        services.insert(0, s.service.clone());
    }
    let service_options = services
        .into_iter()
        .map(|name| {
            let selected = name == s.service;
            view! { <option value=name.clone() selected=selected>{name.clone()}</option> }
        })
        .collect_view();
    let operation_options = c
        .operations
        .into_iter()
        .map(|op| view! { <option value=op></option> })
        .collect_view();
    let sort_options = ORDERS
        .iter()
        .map(|(key, en, zh)| {
            let selected = s.sort == *key || (s.sort.is_empty() && *key == ORDERS[0].0);
            view! { <option value=*key selected=selected>{tr(en, zh)}</option> }
        })
        .collect_view();
    // the time range rides along with a plain GET submit
    let hidden = query.with_untracked(|q| {
        ["start", "end", "refresh"]
            .iter()
            .filter_map(|k| q.get(k).map(|v| (*k, v)))
            .map(|(k, v)| view! { <input type="hidden" name=k value=v/> })
            .collect_view()
    });
    let clear = range_link("/traces", &[]);
    view! {
        <form class="trace-form" method="get" action="/traces" on:submit=on_submit>
            <label>
                <span>{tr("Service", "服务")}</span>
                <select name="service" node_ref=service_ref>
                    <option value="" selected=s.service.is_empty()>{tr("All services", "全部服务")}</option>
                    {service_options}
                </select>
            </label>
            <label>
                <span>{tr("Operation", "操作")}</span>
                <input
                    type="text"
                    name="operation"
                    list="trace-operations"
                    value=s.operation.clone()
                    placeholder=tr("any", "任意")
                    node_ref=operation_ref
                />
                <datalist id="trace-operations">{operation_options}</datalist>
            </label>
            <label class="wide">
                <span>{tr("Tags (logfmt)", "标签 (logfmt)")}</span>
                <input
                    type="text"
                    name="tags"
                    value=s.tags.clone()
                    placeholder="http.status_code=500 db.system=postgresql"
                    node_ref=tags_ref
                />
            </label>
            <label class="short">
                <span>{tr("Min duration", "最短耗时")}</span>
                <input type="text" name="min_duration" value=s.min_duration.clone() placeholder="100ms" node_ref=min_ref/>
            </label>
            <label class="short">
                <span>{tr("Max duration", "最长耗时")}</span>
                <input type="text" name="max_duration" value=s.max_duration.clone() placeholder="5s" node_ref=max_ref/>
            </label>
            <label class="short">
                <span>{tr("Limit", "数量")}</span>
                <input
                    type="number"
                    name="limit"
                    min="1"
                    max="5000"
                    value=s.limit.clone()
                    placeholder=DEFAULT_LIMIT.to_string()
                    node_ref=limit_ref
                />
            </label>
            <label>
                <span>{tr("Order", "排序")}</span>
                <select name="sort" node_ref=sort_ref>{sort_options}</select>
            </label>
            <label class="check">
                <input type="checkbox" name="error" value="true" checked=s.error node_ref=error_ref/>
                <span>{tr("Errors only", "仅错误")}</span>
            </label>
            {hidden}
            <div class="trace-form-buttons">
                <button type="submit" class="primary">{tr("Search", "搜索")}</button>
                <a class="button" href=clear>{tr("Clear", "清空")}</a>
            </div>
        </form>
        <form class="trace-lookup" method="get" action="/traces" on:submit=on_lookup>
            <input
                type="text"
                name="trace_id"
                placeholder=tr("Open a trace by id", "按链路 ID 打开")
                node_ref=id_ref
                size="36"
            />
            <button type="submit">{tr("Open", "打开")}</button>
        </form>
    }
    .into_any()
}

fn results_view(mut rows: Vec<Summary>, s: &Search) -> AnyView {
    if rows.is_empty() {
        return view! {
            <Empty text=tr(
                "No traces match. Widen the time range or loosen the filters.",
                "没有匹配的链路。请扩大时间范围或放宽筛选条件。",
            )/>
        }
        .into_any();
    }
    sort_results(&mut rows, &s.sort);
    let n = rows.len();
    let errors = rows.iter().filter(|r| r.error_count > 0).count();
    let capped = (n >= s.limit()).then(|| {
        view! {
            <span class="muted">
                {tr(
                    " · the newest matches only: raise the limit to see more",
                    " · 仅显示最新的匹配结果，提高数量上限可查看更多",
                )}
            </span>
        }
    });
    let max_dur = rows
        .iter()
        .map(|r| r.duration_nanos)
        .max()
        .unwrap_or(1)
        .max(1);
    let body = rows
        .iter()
        .map(|r| {
            let href = range_link(&format!("/traces/{}", enc(&r.trace_id)), &[]);
            let chips = r
                .services
                .iter()
                .take(6)
                .map(|svc| {
                    view! { <span class="svc-chip small" style=format!("--svc:{}", service_color(svc))>{svc.clone()}</span> }
                })
                .collect_view();
            let more = (r.services.len() > 6).then(|| format!("+{}", r.services.len() - 6));
            let pct = r.duration_nanos as f64 / max_dur as f64 * 100.0;
            let short_id: String = r.trace_id.chars().take(16).collect();
            let has_errors = r.error_count > 0;
            view! {
                <tr class=if has_errors { "has-error" } else { "" }>
                    <td class="trace-cell">
                        <a href=href.clone() class="trace-link">
                            <span class="svc-chip" style=format!("--svc:{}", service_color(&r.root_service))>
                                {r.root_service.clone()}
                            </span>
                            " "
                            <span class="trace-op">{r.root_operation.clone()}</span>
                        </a>
                        <a href=href class="trace-id mono" title=r.trace_id.clone()>{short_id}</a>
                    </td>
                    <td class="labels">{chips}{more}</td>
                    <td class="num">{r.span_count}</td>
                    <td class="num">
                        {if r.error_count > 0 {
                            view! { <span class="badge bad">{r.error_count}</span> }.into_any()
                        } else {
                            view! { <span class="muted">"0"</span> }.into_any()
                        }}
                    </td>
                    <td class="num dur-cell">
                        <span class="dur-bar" style=format!("width:{pct:.1}%")></span>
                        <span class="dur-text">{format::duration_secs(r.duration_secs())}</span>
                    </td>
                    <td class="num">{format::datetime(r.start_secs())}</td>
                </tr>
            }
            .into_any()
        })
        .collect_view();
    view! {
        <div class="traces-summary">
            <b>{n}</b>
            {tr(" traces", " 条链路")}
            {(errors > 0).then(|| view! { <span class="bad">{format!(" · {errors} ")}{tr("with errors", "含错误")}</span> })}
            {capped}
        </div>
        {scatter_view(&rows)}
        <table class="grid-table trace-results">
            <thead>
                <tr>
                    <th>{tr("Trace", "链路")}</th>
                    <th>{tr("Services", "服务")}</th>
                    <th class="num">{tr("Spans", "Span 数")}</th>
                    <th class="num">{tr("Errors", "错误")}</th>
                    <th class="num">{tr("Duration", "耗时")}</th>
                    <th class="num">{tr("Started (UTC)", "开始 (UTC)")}</th>
                </tr>
            </thead>
            <tbody>{body}</tbody>
        </table>
    }
    .into_any()
}

/// The duration scatter plot: HTML axis labels around an SVG plot (the plot stretches to the
/// panel's width; the dots are zero-length round-capped strokes that stay round).
fn scatter_view(rows: &[Summary]) -> AnyView {
    let navigate = use_navigate();
    let dots: Vec<Dot> = rows
        .iter()
        .map(|r| Dot {
            t: r.start_secs(),
            duration: r.duration_secs(),
            spans: r.span_count,
            error: r.error_count > 0,
        })
        .collect();
    let geo = scatter(&dots);
    let y_labels = geo
        .y_ticks
        .iter()
        .map(|(p, v)| view! { <span style=format!("top:{p:.2}%")>{format::duration_secs(*v)}</span> })
        .collect_view();
    let grid = geo
        .y_ticks
        .iter()
        .map(|(p, _)| {
            let y = p / 100.0 * SCATTER_H;
            view! { <line class="grid" x1="0" x2=SCATTER_W y1=y y2=y/> }
        })
        .collect_view();
    let x_labels = geo
        .x_ticks
        .iter()
        .map(|(p, label)| view! { <span style=format!("left:{p:.2}%")>{label.clone()}</span> })
        .collect_view();
    // errors drawn last, on top
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| dots[i].error);
    let points = order
        .into_iter()
        .map(|i| {
            let r = &rows[i];
            let (x, y, radius) = geo.points[i];
            let href = range_link(&format!("/traces/{}", enc(&r.trace_id)), &[]);
            let go_href = href.clone();
            let navigate = navigate.clone();
            let tip = format!(
                "{}: {} · {} · {} {} · {}",
                r.root_service,
                r.root_operation,
                format::duration_secs(r.duration_secs()),
                r.span_count,
                tr("spans", "个 span"),
                format::datetime(r.start_secs()),
            );
            let class = if dots[i].error { "dot err" } else { "dot" };
            view! {
                <g class=class>
                    <a
                        href=href
                        on:click=move |ev: leptos::ev::MouseEvent| {
                            if ev.ctrl_key() || ev.meta_key() || ev.shift_key() || ev.button() != 0 {
                                return;
                            }
                            ev.prevent_default();
                            navigate(&go_href, Default::default());
                        }
                    >
                        <path d=format!("M{x:.2},{y:.2}h0") stroke-width=format!("{:.1}", radius * 2.0)>
                            <title>{tip}</title>
                        </path>
                    </a>
                </g>
            }
        })
        .collect_view();
    view! {
        <div class="scatter">
            <div class="scatter-y">{y_labels}</div>
            <div class="scatter-plot">
                <svg viewBox=format!("0 0 {SCATTER_W} {SCATTER_H}") preserveAspectRatio="none">
                    {grid}
                    {points}
                </svg>
            </div>
            <div></div>
            <div class="scatter-x">{x_labels}</div>
        </div>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> ParamsMap {
        let mut q = ParamsMap::new();
        for (k, v) in pairs {
            q.insert(k.to_string(), v.to_string());
        }
        q
    }

    #[test]
    fn the_alert_link_is_the_search_it_names() {
        let q = query(&[
            ("service", "pay ments"),
            ("error", "true"),
            ("start", "8200"),
            ("end", "12001"),
        ]);
        let s = Search::from_query(&q);
        assert_eq!(s.service, "pay ments");
        assert!(s.error);
        assert_eq!(s.operation, "");
        let range = TimeRange::from_query(&q);
        let (start, end) = range.resolve(99_999.0);
        assert_eq!(
            s.api_path(start, end),
            "/api/v1/traces?service=pay%20ments&error=true&start=8200.000&end=12001.000&limit=20"
        );
    }

    #[test]
    fn every_field_reaches_the_api_and_empty_ones_do_not() {
        let s = Search {
            service: "checkout".into(),
            operation: "POST /pay".into(),
            tags: "http.status_code=500 a=\"b c\"".into(),
            min_duration: "100ms".into(),
            max_duration: "2s".into(),
            error: false,
            limit: "50".into(),
            sort: "longest".into(),
        };
        assert_eq!(
            s.api_path(1.0, 2.0),
            "/api/v1/traces?service=checkout&operation=POST%20%2Fpay\
             &tags=http.status_code%3D500%20a%3D%22b%20c%22&min_duration=100ms\
             &max_duration=2s&start=1.000&end=2.000&limit=50"
        );
        assert_eq!(
            Search::default().api_path(1.0, 2.0),
            "/api/v1/traces?start=1.000&end=2.000&limit=20"
        );
    }

    #[test]
    fn a_submitted_form_keeps_the_range_and_drops_empty_fields() {
        let current = vec![
            ("start".to_string(), "now-6h".to_string()),
            ("service".to_string(), "old".to_string()),
            ("tags".to_string(), "a=b".to_string()),
            ("refresh".to_string(), "30s".to_string()),
        ];
        let form = Search {
            service: "new".into(),
            error: true,
            sort: "recent".into(),
            ..Default::default()
        };
        let pairs = form.apply_to(&current);
        assert_eq!(
            query_url("/traces", &pairs),
            "/traces?start=now-6h&refresh=30s&service=new&error=true"
        );
    }

    fn summary(id: &str, start: u64, dur: u64, spans: u64, errors: u64) -> Summary {
        Summary {
            trace_id: id.into(),
            root_service: "s".into(),
            root_operation: "op".into(),
            start_time_unix_nano: start.to_string(),
            duration_nanos: dur,
            span_count: spans,
            error_count: errors,
            services: vec!["s".into()],
        }
    }

    #[test]
    fn results_sort_in_the_chosen_order() {
        let mut rows = vec![
            summary("a", 10, 300, 2, 0),
            summary("b", 30, 100, 9, 1),
            summary("c", 20, 200, 5, 1),
        ];
        let ids = |rows: &[Summary]| rows.iter().map(|r| r.trace_id.clone()).collect::<Vec<_>>();
        sort_results(&mut rows, "");
        assert_eq!(ids(&rows), ["b", "c", "a"]);
        sort_results(&mut rows, "longest");
        assert_eq!(ids(&rows), ["a", "c", "b"]);
        sort_results(&mut rows, "shortest");
        assert_eq!(ids(&rows), ["b", "c", "a"]);
        sort_results(&mut rows, "spans");
        assert_eq!(ids(&rows), ["b", "c", "a"]);
        sort_results(&mut rows, "errors");
        assert_eq!(ids(&rows), ["b", "c", "a"]);
    }
}
