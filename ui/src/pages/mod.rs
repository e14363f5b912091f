//! One module per page. Each page reads the time range from the URL ([`crate::time`]), fetches
//! through [`crate::fetch::Api`] in a resource keyed by the URL and the refresh tick, and
//! renders inside a `Transition`, so a refresh swaps data without blanking the page.

pub mod alerts;
pub mod dashboards;
pub mod explore;
pub mod logs;
pub mod map;
pub mod map_layout;
pub mod service;
pub mod services;
pub mod trace;
pub mod traces;
pub mod waterfall;

use leptos::prelude::*;

use crate::i18n::tr;
use crate::time::with_query;

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(r) = use_context::<leptos_axum::ResponseOptions>() {
        r.set_status(axum::http::StatusCode::NOT_FOUND);
    }
    view! {
        <section class="panel">
            <h1>{tr("Page not found", "页面不存在")}</h1>
            <p><a href="/">{tr("Back to services", "返回服务列表")}</a></p>
        </section>
    }
}

/// An error box for a failed data request.
#[component]
pub fn ErrorBox(message: String) -> impl IntoView {
    view! { <div class="error" role="alert">{message}</div> }
}

/// A grey note for an empty result.
#[component]
pub fn Empty(text: &'static str) -> impl IntoView {
    view! { <div class="empty">{text}</div> }
}

/// A sortable table's column: its `sort` key, English and Chinese titles, and whether it
/// holds text (which reads best A to Z) rather than numbers (largest first).
#[derive(Clone, Copy)]
pub struct SortColumn {
    pub key: &'static str,
    pub en: &'static str,
    pub zh: &'static str,
    pub text: bool,
}

impl SortColumn {
    pub const fn text(key: &'static str, en: &'static str, zh: &'static str) -> Self {
        SortColumn {
            key,
            en,
            zh,
            text: true,
        }
    }

    pub const fn number(key: &'static str, en: &'static str, zh: &'static str) -> Self {
        SortColumn {
            key,
            en,
            zh,
            text: false,
        }
    }
}

/// A RED table's columns after its names and request rate: success and error rates and the
/// latency percentiles.
pub const RED_SORT_COLUMNS: [SortColumn; 5] = [
    SortColumn::number("success", "Success rate", "成功率"),
    SortColumn::number("errors", "Errors", "错误率"),
    SortColumn::number("p50", "p50", "p50"),
    SortColumn::number("p95", "p95", "p95"),
    SortColumn::number("p99", "p99", "p99"),
];

/// The `sort`/`dir` of a sortable table from the URL: `default` when absent, and the
/// direction the column reads best in when `dir` is absent.
pub fn sort_order(
    columns: &[SortColumn],
    q: &leptos_router::params::ParamsMap,
    default: &str,
) -> (String, bool) {
    let sort = q.get("sort").unwrap_or_else(|| default.to_string());
    let text = columns.iter().any(|c| c.key == sort && c.text);
    let desc = q.get("dir").map_or(!text, |d| d != "asc");
    (sort, desc)
}

/// The header cells of a sortable table: each title links to the table sorted by it. The
/// current column flips and shows its direction; another starts where it reads best.
pub fn sort_headers(columns: &[SortColumn], sort: &str, desc: bool) -> impl IntoView {
    columns
        .iter()
        .map(|&c| {
            let current = c.key == sort;
            let dir = match (current, desc) {
                (true, true) => "asc",
                (true, false) => "desc",
                (false, _) if c.text => "asc",
                (false, _) => "desc",
            };
            let href = with_query(&[("sort", Some(c.key.to_string())), ("dir", Some(dir.into()))]);
            let mark = match (current, desc) {
                (true, true) => " ▼",
                (true, false) => " ▲",
                _ => "",
            };
            let class = if c.text { "" } else { "num" };
            view! { <th class=class><a href=href class="sort">{tr(c.en, c.zh)}{mark}</a></th> }
        })
        .collect_view()
}
