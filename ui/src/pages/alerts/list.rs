//! The alert list tab: pending and firing alerts with their labels (badges that narrow the
//! filter when clicked), annotations, value, since when, and links to the query behind the
//! alert, the service, and a silence (a new one prefilled with the alert's labels, or the
//! one already silencing it).

use leptos::prelude::*;
use leptos_router::components::Form;
use leptos_router::params::ParamsMap;

use super::matchers::{self, Matcher};
use super::model::{AlertRow, Condition};
use super::{ago, time_cell, toggle, AlertsData};
use crate::fetch::enc;
use crate::format;
use crate::i18n::tr;
use crate::pages::ErrorBox;
use crate::time::{query_url, range_link, with_query};

/// How far before an alert started its query link looks, so the chart shows the lead-up
/// (as the links in alert messages do).
const LEAD_UP_SECS: f64 = 1800.0;

/// `state=` of the list.
fn state_matches(state: Option<&str>, r: &AlertRow) -> bool {
    match state {
        Some("firing") => r.state == "firing" && !r.silenced() && !r.inhibited(),
        Some("pending") => r.state == "pending",
        Some("silenced") => r.silenced() || r.inhibited(),
        _ => true,
    }
}

/// The filter with one more matcher: what clicking a label badge shows. A filter that does
/// not parse is replaced.
pub fn add_to_filter(filter: &str, m: Matcher) -> String {
    let mut list = matchers::parse(filter).unwrap_or_default();
    if !list.contains(&m) {
        list.push(m);
    }
    matchers::to_filter(&list)
}

/// Hidden inputs that carry the rest of the view through a GET form.
pub(super) fn keep_params(q: &ParamsMap, keep: &[&'static str]) -> AnyView {
    keep.iter()
        .filter_map(|k| q.get(k).map(|v| (*k, v)))
        .map(|(k, v)| view! { <input type="hidden" name=k value=v/> })
        .collect_view()
        .into_any()
}

pub fn view(d: AlertsData, q: &ParamsMap) -> AnyView {
    let filter_text = q.get("filter").unwrap_or_default();
    let state = q.get("state");
    let (rows, filter_error) = match matchers::parse(&filter_text).and_then(matchers::compile) {
        Ok(ms) => (
            d.rows
                .into_iter()
                .filter(|r| matchers::all_match(&ms, &r.labels))
                .collect::<Vec<_>>(),
            None,
        ),
        Err(e) => (
            d.rows,
            Some(format!("{}: {e}", tr("Filter not applied", "过滤条件无效"))),
        ),
    };
    let count = |s: Option<&str>| rows.iter().filter(|r| state_matches(s, r)).count();
    let counts = [
        (None, tr("All", "全部"), count(None)),
        (
            Some("firing"),
            tr("Firing", "触发中"),
            count(Some("firing")),
        ),
        (
            Some("pending"),
            tr("Pending", "待定"),
            count(Some("pending")),
        ),
        (
            Some("silenced"),
            tr("Silenced", "已静默"),
            count(Some("silenced")),
        ),
    ];
    let toggles = counts
        .into_iter()
        .map(|(v, label, n)| toggle("state", v, state.as_deref(), format!("{label} {n}")))
        .collect_view();
    let shown: Vec<AlertRow> = rows
        .into_iter()
        .filter(|r| state_matches(state.as_deref(), r))
        .collect();
    let now = d.now;
    let clear = (!filter_text.is_empty()).then(|| {
        view! { <a class="button" href=with_query(&[("filter", None)])>{tr("Clear", "清除")}</a> }
    });
    let hidden = keep_params(q, &["tab", "state", "start", "end", "refresh"]);
    let input_value = filter_text.clone();
    let toolbar = view! {
        <div class="toolbar alerts-toolbar">
            <Form method="get" action="/alerts" attr:class="alerts-filter">
                {hidden}
                <input
                    type="search"
                    name="filter"
                    class="mono"
                    value=input_value
                    placeholder=r#"{service="payments", severity=~"page|critical"}"#
                    aria-label=tr("Filter by label matchers", "按标签匹配过滤")
                />
                <button type="submit">{tr("Filter", "过滤")}</button>
                {clear}
            </Form>
            <div class="toggles">{toggles}</div>
        </div>
    };
    let body = if shown.is_empty() {
        let text = if filter_text.is_empty() && state.is_none() {
            tr(
                "No alerts are firing or pending.",
                "当前没有触发中或待定的告警。",
            )
        } else {
            tr("No alerts match.", "没有匹配的告警。")
        };
        view! { <div class="empty">{text}</div> }.into_any()
    } else {
        let rows = shown
            .into_iter()
            .map(|r| row(r, now, &filter_text))
            .collect_view();
        view! {
            <table class="grid-table alert-list">
                <thead>
                    <tr>
                        <th>{tr("State", "状态")}</th>
                        <th>{tr("Alert", "告警")}</th>
                        <th>{tr("Labels", "标签")}</th>
                        <th class="num">{tr("Value", "值")}</th>
                        <th>{tr("Active since", "开始于")}</th>
                        <th>{tr("Links", "链接")}</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        }
        .into_any()
    };
    view! {
        {toolbar}
        {filter_error.map(|e| view! { <ErrorBox message=e/> })}
        {body}
    }
    .into_any()
}

/// Annotations worth a line of their own, in this order; the rest go under "more".
const HEADLINE_ANNOTATIONS: [&str; 3] = ["summary", "description", "message"];

fn row(r: AlertRow, now: f64, filter: &str) -> impl IntoView {
    let state_class = if r.state == "firing" {
        "badge bad"
    } else {
        "badge warn"
    };
    let state_text = if r.state == "firing" {
        tr("firing", "触发中")
    } else {
        tr("pending", "待定")
    };
    let silenced = r.silenced_by.first().map(|id| {
        let href = format!(
            "{}#silence-{}",
            range_link(
                "/alerts",
                &[("tab", "silences".into()), ("silence", id.clone())]
            ),
            enc(id)
        );
        view! { <a class="badge muted-badge silenced" href=href title=r.silenced_by.join(", ")>{tr("silenced", "已静默")}</a> }
    });
    let inhibited = r.inhibited().then(|| {
        view! { <span class="badge muted-badge" title=r.inhibited_by.join(", ")>{tr("inhibited", "已抑制")}</span> }
    });
    let labels = r
        .labels
        .iter()
        .filter(|(k, _)| *k != "alertname")
        .map(|(k, v)| {
            let href = with_query(&[("filter", Some(add_to_filter(filter, Matcher::equal(k, v))))]);
            view! {
                <a class="badge" href=href title=tr("Filter by this label", "按此标签过滤")>
                    {format!("{k}={v}")}
                </a>
            }
        })
        .collect_view();
    let headline = HEADLINE_ANNOTATIONS
        .iter()
        .filter_map(|k| r.annotations.get(*k).map(|v| (*k, v.clone())))
        .map(|(k, v)| view! { <div class=format!("annotation {k}")>{v}</div> })
        .collect_view();
    let more: Vec<(String, String)> = r
        .annotations
        .iter()
        .filter(|(k, _)| !HEADLINE_ANNOTATIONS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let more = (!more.is_empty()).then(|| {
        let items = more
            .into_iter()
            .map(|(k, v)| view! { <div><span class="muted">{k}": "</span>{annotation_value(v)}</div> })
            .collect_view();
        view! {
            <details class="annotations-more">
                <summary>{tr("annotations", "注解")}</summary>
                {items}
            </details>
        }
    });
    let origin = match (&r.rule, r.external) {
        (Some(rule), _) => view! { <div class="muted small">{rule.clone()}</div> }.into_any(),
        (None, true) => view! {
            <div class="muted small" title=tr("Posted to /api/v2/alerts by another Prometheus", "由其他 Prometheus 推送到 /api/v2/alerts")>
                {tr("external", "外部")}
                {(!r.receivers.is_empty()).then(|| format!(" → {}", r.receivers.join(", ")))}
            </div>
        }
        .into_any(),
        (None, false) => ().into_any(),
    };
    let value = r.value.clone().map(|raw| {
        let short = super::model::short_value(&raw);
        view! { <span title=raw>{short}</span> }
    });
    let links = links(&r);
    let silence_link = (!r.silenced()).then(|| {
        let href = range_link(
            "/alerts",
            &[
                ("tab", "silences".into()),
                ("new", "1".into()),
                (
                    "matchers",
                    matchers::to_filter(&matchers::from_labels(&r.labels)),
                ),
            ],
        );
        view! { <a class="button small silence-link" href=href>{tr("Silence", "静默")}</a> }
    });
    let since_title = r
        .since
        .map(|t| format!("{} ({})", format::datetime(t), ago(t, now)));
    view! {
        <tr class=format!("alert-row state-{}", r.state) data-alertname=r.alertname().to_string()>
            <td class="alert-state">
                <span class=state_class>{state_text}</span>
                {silenced}
                {inhibited}
            </td>
            <td class="alert-name">
                <strong>{r.alertname().to_string()}</strong>
                {origin}
                {headline}
                {more}
            </td>
            <td class="labels">{labels}</td>
            <td class="num">{value}</td>
            <td class="since" title=since_title>{time_cell(r.since, now)}</td>
            <td class="alert-links">{links}{silence_link}</td>
        </tr>
    }
}

/// An annotation value: a link when it is an http(s) URL (runbooks, dashboards), else text.
fn annotation_value(v: String) -> AnyView {
    if v.starts_with("https://") || v.starts_with("http://") {
        let href = v.clone();
        view! { <a href=href rel="noopener noreferrer" target="_blank">{v}</a> }.into_any()
    } else {
        view! { <span>{v}</span> }.into_any()
    }
}

fn links(r: &AlertRow) -> impl IntoView {
    // the window from a while before the alert started until now
    let window = |since: Option<f64>| -> Vec<(String, String)> {
        match since {
            Some(t) => vec![
                ("start".into(), format!("{}", (t - LEAD_UP_SECS).floor())),
                ("end".into(), "now".into()),
            ],
            None => Vec::new(),
        }
    };
    let query = r.condition.as_ref().map(|c| {
        let (path, q, label) = match c {
            Condition::PromQl(q) => ("/explore", q, tr("Query", "查询")),
            Condition::Logs(q) => ("/logs", q, tr("Logs", "日志")),
        };
        let mut pairs = vec![("query".to_string(), q.clone())];
        pairs.extend(window(r.since));
        view! { <a class="button small" href=query_url(path, &pairs) title=q.clone()>{label}</a> }
    });
    let service = r.service().map(|svc| {
        let href = range_link(&format!("/services/{}", enc(svc)), &[]);
        view! { <a class="button small" href=href title=svc.to_string()>{tr("Service", "服务")}</a> }
    });
    view! { {query}{service} }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clicked_label_narrows_the_filter() {
        let m = Matcher::equal("service", "pay");
        assert_eq!(add_to_filter("", m.clone()), r#"{service="pay"}"#);
        assert_eq!(
            add_to_filter(r#"severity=~"page|crit""#, m.clone()),
            r#"{severity=~"page|crit", service="pay"}"#
        );
        // already there: unchanged; unparsable: replaced
        assert_eq!(
            add_to_filter(r#"{service="pay"}"#, m.clone()),
            r#"{service="pay"}"#
        );
        assert_eq!(add_to_filter("not a matcher", m), r#"{service="pay"}"#);
    }
}
