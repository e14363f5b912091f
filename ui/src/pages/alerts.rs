//! Alerts: what is firing and pending, the rules and their health, silences, and the record
//! of every notification delivery, as four tabs of one page (`tab=alerts|rules|silences|
//! notifications` in the URL).
//!
//! * `alerts` (`list`): the rules' pending and firing alerts (`/api/v1/rules`) joined with
//!   Alertmanager's view of them (`/api/v2/alerts`: silenced, inhibited, receivers), plus
//!   alerts other Prometheus servers posted; labels, annotations, value, active since, links
//!   to the query and the service; `filter` (label matchers) and `state` narrow the list.
//! * `rules` (`rules`): groups with their rules, type, query, health, last error, last
//!   evaluation and evaluation time; `show=firing|pending|errors`.
//! * `silences` (`silences`): active, pending and expired silences with the alerts they
//!   silence, a form that creates one (prefilled from an alert: `new=1&matchers=...`), and
//!   expiring; these two write through `POST /api/v2/silences` and `DELETE
//!   /api/v2/silence/{id}` from the browser.
//! * `notifications` (`notifications`): delivery attempts in the time range, with the
//!   platform's error code and message (`receiver`, `outcome` narrow them).
//!
//! Every view is in the URL, so a link shows the same list. Relative times ("5m ago") are
//! computed from the moment the data was read, which travels with the data, so the
//! server-rendered page and the hydrated one show the same text.

mod list;
pub mod matchers;
pub mod model;
mod notifications;
mod rules;
mod silences;

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use leptos_router::params::ParamsMap;
use serde::{Deserialize, Serialize};

use crate::fetch::{enc, Api};
use crate::format;
use crate::i18n::tr;
use crate::pages::ErrorBox;
use crate::time::{now_secs, range_link, tick, TimeRange};
use model::{AlertRow, AmAlert, Attempt, RuleGroup, RulesData, Silence};

/// The page's tabs, as `tab=` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Alerts,
    Rules,
    Silences,
    Notifications,
}

impl Tab {
    const ALL: [Tab; 4] = [Tab::Alerts, Tab::Rules, Tab::Silences, Tab::Notifications];

    pub fn as_str(self) -> &'static str {
        match self {
            Tab::Alerts => "alerts",
            Tab::Rules => "rules",
            Tab::Silences => "silences",
            Tab::Notifications => "notifications",
        }
    }

    /// The tab of `tab=`; the alert list when absent or unknown.
    pub fn parse(s: Option<&str>) -> Tab {
        Tab::ALL
            .into_iter()
            .find(|t| Some(t.as_str()) == s)
            .unwrap_or(Tab::Alerts)
    }

    fn title(self) -> &'static str {
        match self {
            Tab::Alerts => tr("Alerts", "告警"),
            Tab::Rules => tr("Rules", "规则"),
            Tab::Silences => tr("Silences", "静默"),
            Tab::Notifications => tr("Notifications", "通知记录"),
        }
    }
}

/// What a fetch depends on: the tab, the time range (notifications), the receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Key {
    tab: Tab,
    range: TimeRange,
    receiver: Option<String>,
}

impl Key {
    fn from_query(q: &ParamsMap) -> Self {
        Key {
            tab: Tab::parse(q.get("tab").as_deref()),
            range: TimeRange::from_query(q),
            receiver: q.get("receiver").filter(|r| !r.trim().is_empty()),
        }
    }
}

/// The alert list as read at `now`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertsData {
    pub now: f64,
    pub rows: Vec<AlertRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RulesTab {
    pub now: f64,
    pub groups: Vec<RuleGroup>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SilencesTab {
    pub now: f64,
    pub silences: Vec<Silence>,
    /// Alerts each silence silences now, by silence id.
    pub silenced: BTreeMap<String, usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotificationsTab {
    pub now: f64,
    /// Attempts in the time range, newest first.
    pub attempts: Vec<Attempt>,
    /// Whether the API's answer reached its limit inside the range (older ones not shown).
    pub truncated: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum TabData {
    Alerts(AlertsData),
    Rules(RulesTab),
    Silences(SilencesTab),
    Notifications(NotificationsTab),
}

/// Attempts read for the notifications tab (then cut to the time range).
const ATTEMPTS_LIMIT: usize = 1000;

async fn load(api: Api, key: Key) -> Result<TabData, String> {
    let now = now_secs();
    Ok(match key.tab {
        Tab::Alerts => {
            let rules: RulesData = api.get_data("/api/v1/rules?type=alert").await?;
            let am: Vec<AmAlert> = api.get_json("/api/v2/alerts").await?;
            TabData::Alerts(AlertsData {
                now,
                rows: model::merge_alerts(&rules.groups, &am, now),
            })
        }
        Tab::Rules => {
            let rules: RulesData = api.get_data("/api/v1/rules").await?;
            TabData::Rules(RulesTab {
                now,
                groups: rules.groups,
            })
        }
        Tab::Silences => {
            let mut silences: Vec<Silence> = api.get_json("/api/v2/silences").await?;
            let am: Vec<AmAlert> = api.get_json("/api/v2/alerts").await?;
            // active and pending by when they end, soonest first; expired newest first
            silences.sort_by(|a, b| {
                let end = |s: &Silence| model::api_time(&s.ends_at).unwrap_or(0.0);
                match (a.status.state == "expired", b.status.state == "expired") {
                    (false, false) => end(a).total_cmp(&end(b)),
                    (true, true) => end(b).total_cmp(&end(a)),
                    (x, y) => x.cmp(&y),
                }
            });
            TabData::Silences(SilencesTab {
                now,
                silences,
                silenced: model::silenced_counts(&am),
            })
        }
        Tab::Notifications => {
            let (start, end) = key.range.resolve(now);
            let mut path = format!("/api/v1/notifications?limit={ATTEMPTS_LIMIT}");
            if let Some(r) = &key.receiver {
                path.push_str(&format!("&receiver={}", enc(r)));
            }
            let all: Vec<Attempt> = api.get_data(&path).await?;
            let oldest_read = all.last().and_then(|a| model::api_time(&a.time));
            let truncated = all.len() >= ATTEMPTS_LIMIT && oldest_read.is_some_and(|t| t > start);
            let attempts = all
                .into_iter()
                .filter(|a| model::api_time(&a.time).is_some_and(|t| t >= start && t <= end))
                .collect();
            TabData::Notifications(NotificationsTab {
                now,
                attempts,
                truncated,
            })
        }
    })
}

/// `5m ago` / `in 5m`, from the data's own time.
pub(crate) fn ago(t: f64, now: f64) -> String {
    let (span, past) = model::relative(t, now);
    if past {
        format!("{span} {}", tr("ago", "前"))
    } else {
        format!("{} {span}", tr("in", "还有"))
    }
}

/// A time as `<time>`: relative text, the absolute UTC time on hover.
pub(crate) fn time_cell(t: Option<f64>, now: f64) -> AnyView {
    match t {
        Some(t) => view! {
            <time datetime=model::rfc3339(t) title=format!("{} UTC", format::datetime(t))>
                {ago(t, now)}
            </time>
        }
        .into_any(),
        None => view! { <span class="muted">{tr("never", "从未")}</span> }.into_any(),
    }
}

#[component]
pub fn AlertsPage() -> impl IntoView {
    let api = Api::current();
    let query = use_query_map();
    // bumped after the page created or expired a silence, so the lists read again
    let version = RwSignal::new(0u64);
    let data = Resource::new(
        move || (query.with(Key::from_query), tick(), version.get()),
        move |(key, _, _)| load(api.clone(), key),
    );
    let tab = Memo::new(move |_| query.with(|q| Tab::parse(q.get("tab").as_deref())));
    let tabs = move || {
        query.track();
        let current = tab.get();
        Tab::ALL
            .into_iter()
            .map(|t| {
                let href = range_link("/alerts", &[("tab", t.as_str().to_string())]);
                let class = if t == current {
                    "alerts-tab active"
                } else {
                    "alerts-tab"
                };
                view! { <a href=href class=class data-tab=t.as_str()>{t.title()}</a> }
            })
            .collect_view()
    };
    let new_silence = move || {
        query.with(|q| {
            (Tab::parse(q.get("tab").as_deref()) == Tab::Silences && q.get("new").is_some())
                .then(|| silences::Prefill::from_query(q))
        })
    };
    view! {
        <section class="panel alerts-page">
            <div class="alerts-head">
                <h1>{tr("Alerts", "告警")}</h1>
                <nav class="alerts-tabs">{tabs}</nav>
            </div>
            {move || new_silence().map(|prefill| view! { <silences::NewSilence prefill version/> })}
            <Transition fallback=|| view! { <div class="loading">"…"</div> }>
                {move || {
                    let params = query.get();
                    Suspend::new(async move {
                        match data.await {
                            Ok(TabData::Alerts(d)) => list::view(d, &params),
                            Ok(TabData::Rules(d)) => rules::view(d, &params),
                            Ok(TabData::Silences(d)) => silences::view(d, &params, version),
                            Ok(TabData::Notifications(d)) => notifications::view(d, &params),
                            Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                        }
                    })
                }}
            </Transition>
        </section>
    }
}

/// A filter toggle: a link setting `param` to `value` (`None`: the default), marked when
/// it is the current one.
pub(crate) fn toggle(
    param: &'static str,
    value: Option<&'static str>,
    current: Option<&str>,
    label: String,
) -> impl IntoView {
    let href = crate::time::with_query(&[(param, value.map(str::to_string))]);
    let class = if value == current {
        "toggle active"
    } else {
        "toggle"
    };
    view! { <a href=href class=class>{label}</a> }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabs_parse_with_the_list_as_default() {
        assert_eq!(Tab::parse(Some("silences")), Tab::Silences);
        assert_eq!(Tab::parse(Some("notifications")), Tab::Notifications);
        assert_eq!(Tab::parse(Some("nope")), Tab::Alerts);
        assert_eq!(Tab::parse(None), Tab::Alerts);
        for t in Tab::ALL {
            assert_eq!(Tab::parse(Some(t.as_str())), t);
        }
    }
}
