//! The notifications tab: every delivery attempt in the time range, newest first: when,
//! receiver, integration, outcome, attempt number, HTTP status, the platform's error code
//! (DingTalk's and WeCom's `errcode`) and message, alerts and messages sent, digests.
//! `receiver=` (asked of the API) and `outcome=success|retrying|failed` narrow the list.

use leptos::prelude::*;
use leptos_router::components::Form;
use leptos_router::params::ParamsMap;

use super::list::keep_params;
use super::model::{api_time, Attempt};
use super::{time_cell, toggle, NotificationsTab};
use crate::format;
use crate::i18n::tr;
use crate::time::with_query;

pub fn view(d: NotificationsTab, q: &ParamsMap) -> AnyView {
    let outcome = q.get("outcome");
    let receiver = q.get("receiver").unwrap_or_default();
    let count = |o: Option<&str>| {
        d.attempts
            .iter()
            .filter(|a| o.is_none_or(|o| a.outcome == o))
            .count()
    };
    let toggles = [
        (None, tr("All", "全部")),
        (Some("failed"), tr("Failed", "失败")),
        (Some("retrying"), tr("Retrying", "重试中")),
        (Some("success"), tr("Delivered", "成功")),
    ]
    .into_iter()
    .map(|(v, label)| {
        toggle(
            "outcome",
            v,
            outcome.as_deref(),
            format!("{label} {}", count(v)),
        )
    })
    .collect_view();
    let clear = (!receiver.is_empty()).then(|| {
        view! { <a class="button" href=with_query(&[("receiver", None)])>{tr("All receivers", "全部接收者")}</a> }
    });
    let hidden = keep_params(q, &["tab", "outcome", "start", "end", "refresh"]);
    let input_value = receiver.clone();
    let toolbar = view! {
        <div class="toolbar">
            <Form method="get" action="/alerts" attr:class="alerts-filter">
                {hidden}
                <input
                    type="search"
                    name="receiver"
                    value=input_value
                    placeholder=tr("receiver", "接收者")
                    aria-label=tr("Receiver", "接收者")
                />
                <button type="submit">{tr("Show", "查看")}</button>
                {clear}
            </Form>
            <div class="toggles">{toggles}</div>
        </div>
    };
    let now = d.now;
    let shown: Vec<Attempt> = d
        .attempts
        .into_iter()
        .filter(|a| outcome.as_deref().is_none_or(|o| a.outcome == o))
        .collect();
    let truncated = d.truncated.then(|| {
        view! {
            <div class="muted small">
                {tr(
                    "Only the newest attempts are listed; narrow the time range to see older ones.",
                    "只列出最新的发送记录；缩小时间范围可查看更早的记录。",
                )}
            </div>
        }
    });
    let body = if shown.is_empty() {
        view! {
            <div class="empty">
                {tr("No notifications in this time range.", "该时间范围内没有通知。")}
            </div>
        }
        .into_any()
    } else {
        let rows = shown.into_iter().map(|a| row(a, now)).collect_view();
        view! {
            <table class="grid-table notification-list">
                <thead>
                    <tr>
                        <th>{tr("Time", "时间")}</th>
                        <th>{tr("Receiver", "接收者")}</th>
                        <th>{tr("Integration", "渠道")}</th>
                        <th>{tr("Outcome", "结果")}</th>
                        <th class="num">{tr("Attempt", "次数")}</th>
                        <th class="num">"HTTP"</th>
                        <th class="num">"errcode"</th>
                        <th>{tr("Message", "信息")}</th>
                        <th class="num">{tr("Alerts", "告警")}</th>
                        <th class="num">{tr("Sent", "消息")}</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        }
        .into_any()
    };
    view! { {toolbar}{body}{truncated} }.into_any()
}

fn row(a: Attempt, now: f64) -> impl IntoView {
    let (class, text) = match a.outcome.as_str() {
        "success" => ("badge ok", tr("delivered", "成功")),
        "retrying" => ("badge warn", tr("retrying", "重试中")),
        _ => ("badge bad", tr("failed", "失败")),
    };
    let t = api_time(&a.time);
    let status_class = match a.status_code {
        Some(s) if (200..300).contains(&s) => "num",
        Some(_) => "num health-bad",
        None => "num muted",
    };
    let errcode_class = match a.errcode {
        Some(0) => "num",
        Some(_) => "num health-bad",
        None => "num muted",
    };
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    view! {
        <tr class=format!("notification-row outcome-{}", a.outcome) data-receiver=a.receiver.clone()>
            <td class="nowrap" title=t.map(|t| format!("{} UTC", format::datetime(t)))>
                {t.map(format::datetime).unwrap_or_else(|| a.time.clone())}
                <div class="muted small">{time_cell(t, now)}</div>
            </td>
            <td>{a.receiver.clone()}</td>
            <td class="mono">
                {a.integration.clone()}
                {a.digest.then(|| view! { <span class="badge" title=tr("merged with other notifications into one message", "与其他通知合并为一条消息")>{tr("digest", "合并")}</span> })}
            </td>
            <td><span class=class>{text}</span></td>
            <td class="num">{a.attempt}</td>
            <td class=status_class>{opt(a.status_code.map(|s| s.to_string()))}</td>
            <td class=errcode_class>{opt(a.errcode.map(|c| c.to_string()))}</td>
            <td class="errmsg">{a.errmsg.clone().unwrap_or_default()}</td>
            <td class="num">{a.alerts}</td>
            <td class="num">{a.messages}</td>
        </tr>
    }
}
