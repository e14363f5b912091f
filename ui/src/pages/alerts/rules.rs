//! The rules tab: every group (file, interval, last evaluation and how long it took) and its
//! rules with type, query (linked to the metrics explorer or the log search), state, health,
//! last error, last evaluation and evaluation time. `show=firing|pending|errors` narrows
//! the rules.

use leptos::prelude::*;
use leptos_router::params::ParamsMap;

use super::model::{api_time, span, Rule, RuleGroup};
use super::{time_cell, toggle, RulesTab};
use crate::format;
use crate::i18n::tr;
use crate::time::range_link;

fn unhealthy(r: &Rule) -> bool {
    r.health == "err" || !r.last_error.is_empty()
}

fn shown(show: Option<&str>, r: &Rule) -> bool {
    match show {
        Some("firing") => r.state.as_deref() == Some("firing"),
        Some("pending") => r.state.as_deref() == Some("pending"),
        Some("errors") => unhealthy(r),
        _ => true,
    }
}

pub fn view(d: RulesTab, q: &ParamsMap) -> AnyView {
    if d.groups.is_empty() {
        return view! {
            <div class="empty">
                {tr(
                    "No rule groups loaded. List rule files under rule_files in the config.",
                    "没有加载规则组。请在配置的 rule_files 中列出规则文件。",
                )}
            </div>
        }
        .into_any();
    }
    let show = q.get("show");
    let (toggles, summary) = {
        let all: Vec<&Rule> = d.groups.iter().flat_map(|g| &g.rules).collect();
        let count = |s: Option<&str>| all.iter().filter(|r| shown(s, r)).count();
        let toggles = [
            (None, tr("All", "全部")),
            (Some("firing"), tr("Firing", "触发中")),
            (Some("pending"), tr("Pending", "待定")),
            (Some("errors"), tr("Errors", "出错")),
        ]
        .into_iter()
        .map(|(v, label)| toggle("show", v, show.as_deref(), format!("{label} {}", count(v))))
        .collect_view();
        let summary = format!(
            "{} {} · {} {}",
            d.groups.len(),
            tr("groups", "个规则组"),
            all.len(),
            tr("rules", "条规则"),
        );
        (toggles, summary)
    };
    let now = d.now;
    let groups = d
        .groups
        .into_iter()
        .filter_map(|g| group(g, show.as_deref(), now))
        .collect_view();
    view! {
        <div class="toolbar">
            <span class="muted">{summary}</span>
            <div class="toggles">{toggles}</div>
        </div>
        {groups}
    }
    .into_any()
}

/// One group, or nothing when `show` leaves none of its rules.
fn group(g: RuleGroup, show: Option<&str>, now: f64) -> Option<AnyView> {
    let rules: Vec<Rule> = g.rules.into_iter().filter(|r| shown(show, r)).collect();
    if rules.is_empty() && show.is_some() {
        return None;
    }
    let rows = rules.into_iter().map(|r| rule_row(r, now)).collect_view();
    Some(
        view! {
            <div class="rule-group" data-group=g.name.clone()>
                <h2>
                    {g.name.clone()}
                    <span class="rule-group-meta muted">
                        <span class="mono">{g.file}</span>
                        " · "
                        {tr("every", "每")}
                        " "
                        {span(g.interval)}
                        " · "
                        {tr("evaluated", "评估于")}
                        " "
                        {time_cell(api_time(&g.last_evaluation), now)}
                        " · "
                        {tr("took", "耗时")}
                        " "
                        {format::duration_secs(g.evaluation_time)}
                    </span>
                </h2>
                <table class="grid-table rule-list">
                    <thead>
                        <tr>
                            <th>{tr("Type", "类型")}</th>
                            <th>{tr("Rule", "规则")}</th>
                            <th>{tr("Query", "查询")}</th>
                            <th>{tr("State", "状态")}</th>
                            <th>{tr("Health", "健康")}</th>
                            <th>{tr("Last evaluation", "上次评估")}</th>
                            <th class="num">{tr("Took", "耗时")}</th>
                        </tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        }
        .into_any(),
    )
}

fn rule_row(r: Rule, now: f64) -> impl IntoView {
    let alerting = r.kind == "alerting";
    let kind = if alerting {
        view! { <span class="badge">{tr("alert", "告警")}</span> }
    } else {
        view! { <span class="badge">{tr("record", "记录")}</span> }
    };
    let (path, text) = match &r.logs_expr {
        Some(l) => ("/logs", l.query.clone()),
        None => ("/explore", r.query.clone()),
    };
    let query_href = range_link(path, &[("query", text.clone())]);
    let logs_detail = r.logs_expr.as_ref().map(|l| {
        format!(
            "{} > {} / {}",
            tr("count", "计数"),
            crate::format::si(l.threshold),
            span(l.window)
        )
    });
    let details = {
        let mut parts = Vec::new();
        if r.duration > 0.0 {
            parts.push(format!("for {}", span(r.duration)));
        }
        if r.keep_firing_for > 0.0 {
            parts.push(format!("keep_firing_for {}", span(r.keep_firing_for)));
        }
        parts.join(" · ")
    };
    let labels = r
        .labels
        .iter()
        .map(|(k, v)| view! { <span class="badge">{format!("{k}={v}")}</span> })
        .collect_view();
    let state = r.state.clone().filter(|_| alerting).map(|s| {
        let class = match s.as_str() {
            "firing" => "badge bad",
            "pending" => "badge warn",
            _ => "badge ok",
        };
        let n = r.alerts.len();
        let text = match s.as_str() {
            "firing" => tr("firing", "触发中"),
            "pending" => tr("pending", "待定"),
            _ => tr("inactive", "未触发"),
        };
        view! {
            <span class=class>{text}</span>
            {(n > 0).then(|| view! { <span class="muted small">{format!(" ×{n}")}</span> })}
        }
    });
    let health_class = match r.health.as_str() {
        "ok" => "badge ok",
        "err" => "badge bad",
        _ => "badge",
    };
    let health_text = match r.health.as_str() {
        "ok" => tr("ok", "正常"),
        "err" => tr("error", "错误"),
        _ => tr("unknown", "未知"),
    };
    let last_error = (!r.last_error.is_empty())
        .then(|| view! { <div class="rule-error">{r.last_error.clone()}</div> });
    view! {
        <tr class=if unhealthy(&r) { "rule-row unhealthy" } else { "rule-row" } data-rule=r.name.clone()>
            <td>{kind}</td>
            <td class="rule-name">
                <strong>{r.name.clone()}</strong>
                {(!details.is_empty()).then(|| view! { <div class="muted small">{details.clone()}</div> })}
                <div class="labels">{labels}</div>
            </td>
            <td class="rule-query">
                <a class="mono" href=query_href>{text}</a>
                {logs_detail.map(|t| view! { <div class="muted small">{t}</div> })}
            </td>
            <td>{state}</td>
            <td>
                <span class=health_class>{health_text}</span>
                {last_error}
            </td>
            <td>{time_cell(api_time(&r.last_evaluation), now)}</td>
            <td class="num">{format::duration_secs(r.evaluation_time)}</td>
        </tr>
    }
}
