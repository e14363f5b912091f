//! Services: every service with request rate (and its sparkline), success rate coloured against
//! a threshold, error rate and p50/p95/p99 latency, from `/api/v1/services`. Sorting is in the
//! URL (`sort`, `dir`), so the table sorts without wasm and a sorted link can be shared;
//! `slo` (default 0.99) is the success-rate threshold.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};

use crate::chart::Sparkline;
use crate::fetch::{enc, Api};
use crate::format;
use crate::i18n::tr;
use crate::pages::{sort_headers, sort_order, Empty, ErrorBox, SortColumn, RED_SORT_COLUMNS};
use crate::promql::{parse_value, range_query};
use crate::time::{auto_step, now_secs, range_link, tick, TimeRange};

/// One row of `/api/v1/services` (and of `/api/v1/services/{s}/operations`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Red {
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
    pub p50: Option<f64>,
    #[serde(default)]
    pub p95: Option<f64>,
    #[serde(default)]
    pub p99: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceRow {
    pub service: String,
    #[serde(flatten)]
    pub red: Red,
}

/// The span kinds that are a service's requests, as the RED API counts them.
pub const REQUEST_KINDS: &str = "SPAN_KIND_SERVER|SPAN_KIND_CONSUMER";

/// Everything the page shows for one range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct ServicesData {
    rows: Vec<ServiceRow>,
    /// Request rate over time per service.
    sparks: BTreeMap<String, Vec<(f64, f64)>>,
}

async fn load(api: Api, range: TimeRange) -> Result<ServicesData, String> {
    let (start, end) = range.resolve(now_secs());
    let rows: Vec<ServiceRow> = api
        .get_data(&format!("/api/v1/services?start={start:.3}&end={end:.3}"))
        .await?;
    let step = auto_step(end - start, 30.0);
    let expr = format!(
        "sum by (service) (rate(traces_spanmetrics_calls_total{{span_kind=~\"{REQUEST_KINDS}\"}}[{}s]))",
        step.max(60.0)
    );
    // sparklines are decoration: the table still shows when their query fails
    let sparks = range_query(&api, &expr, start, end, step)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let name = m.metric.get("service").cloned().unwrap_or_default();
            let pts = m.values.iter().map(|(t, v)| (*t, parse_value(v))).collect();
            (name, pts)
        })
        .collect();
    Ok(ServicesData { rows, sparks })
}

/// Sort keys of the table, as they appear in the URL.
fn columns() -> Vec<SortColumn> {
    let mut columns = vec![
        SortColumn::text("name", "Service", "服务"),
        SortColumn::number("rate", "Requests", "请求率"),
    ];
    columns.extend(RED_SORT_COLUMNS);
    columns
}

fn sort_rows(rows: &mut [ServiceRow], key: &str, desc: bool) {
    let num = |r: &ServiceRow| -> f64 {
        let v = match key {
            "rate" => r.red.request_rate,
            "success" => r.red.success_rate,
            "errors" => r.red.error_rate,
            "p50" => r.red.p50,
            "p95" => r.red.p95,
            "p99" => r.red.p99,
            _ => None,
        };
        // services without a value sort last either way
        v.unwrap_or(if desc {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        })
    };
    rows.sort_by(|a, b| {
        let ord = if key == "name" {
            a.service.cmp(&b.service)
        } else {
            num(a).total_cmp(&num(b))
        };
        if desc {
            ord.reverse()
        } else {
            ord
        }
    });
}

/// The CSS class of a success rate against the threshold.
pub fn health_class(success: Option<f64>, slo: f64) -> &'static str {
    match success {
        None => "health-none",
        Some(s) if s >= slo => "health-ok",
        Some(s) if s >= slo - (1.0 - slo) * 4.0 => "health-warn",
        Some(_) => "health-bad",
    }
}

/// The `slo` of the URL: a success-rate threshold in (0, 1), 0.99 when absent or invalid.
pub fn slo_of(q: &leptos_router::params::ParamsMap) -> f64 {
    q.get("slo")
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0 && *s < 1.0)
        .unwrap_or(0.99)
}

fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

#[component]
pub fn ServicesPage() -> impl IntoView {
    let api = Api::current();
    let query = use_query_map();
    let data = Resource::new(
        move || (query.with(TimeRange::from_query), tick()),
        move |(range, _)| load(api.clone(), range),
    );
    let view_of = move |d: ServicesData| {
        let (sort, desc, slo) = query.with(|q| {
            let (sort, desc) = sort_order(&columns(), q, "rate");
            (sort, desc, slo_of(q))
        });
        let mut rows = d.rows;
        if rows.is_empty() {
            return view! {
                <Empty text=tr(
                    "No services in this time range. Send traces over OTLP to see them here.",
                    "该时间范围内没有服务。通过 OTLP 发送链路数据后会显示在这里。",
                )/>
            }
            .into_any();
        }
        sort_rows(&mut rows, &sort, desc);
        let headers = sort_headers(&columns(), &sort, desc);
        let body = rows
            .into_iter()
            .map(|r| {
                let spark = d.sparks.get(&r.service).cloned().unwrap_or_default();
                let href = range_link(&format!("/services/{}", enc(&r.service)), &[]);
                let health = health_class(r.red.success_rate, slo);
                view! {
                    <tr>
                        <td><a href=href class="service-link">{r.service.clone()}</a></td>
                        <td class="num">
                            <Sparkline points=spark/>
                            {opt(r.red.request_rate, format::rate)}
                        </td>
                        <td class=format!("num {health}")>{opt(r.red.success_rate, format::percent)}</td>
                        <td class="num">{opt(r.red.error_rate, format::rate)}</td>
                        <td class="num">{opt(r.red.p50, format::duration_secs)}</td>
                        <td class="num">{opt(r.red.p95, format::duration_secs)}</td>
                        <td class="num">{opt(r.red.p99, format::duration_secs)}</td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <table class="grid-table services">
                <thead><tr>{headers}</tr></thead>
                <tbody>{body}</tbody>
            </table>
        }
        .into_any()
    };
    view! {
        <section class="panel">
            <h1>{tr("Services", "服务")}</h1>
            <Transition fallback=|| view! { <div class="loading">"…"</div> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(d) => view_of(d),
                        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, rate: Option<f64>) -> ServiceRow {
        ServiceRow {
            service: name.into(),
            red: Red {
                request_rate: rate,
                ..Default::default()
            },
        }
    }

    #[test]
    fn rows_sort_by_number_with_missing_values_last() {
        let mut rows = vec![row("a", Some(1.0)), row("b", None), row("c", Some(5.0))];
        sort_rows(&mut rows, "rate", true);
        let names: Vec<&str> = rows.iter().map(|r| r.service.as_str()).collect();
        assert_eq!(names, ["c", "a", "b"]);
        sort_rows(&mut rows, "rate", false);
        let names: Vec<&str> = rows.iter().map(|r| r.service.as_str()).collect();
        assert_eq!(names, ["a", "c", "b"]);
        sort_rows(&mut rows, "name", false);
        assert_eq!(rows[0].service, "a");
    }

    #[test]
    fn health_against_the_threshold() {
        assert_eq!(health_class(Some(0.995), 0.99), "health-ok");
        assert_eq!(health_class(Some(0.96), 0.99), "health-warn");
        assert_eq!(health_class(Some(0.5), 0.99), "health-bad");
        assert_eq!(health_class(None, 0.99), "health-none");
    }
}
