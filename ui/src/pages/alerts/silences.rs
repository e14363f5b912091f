//! The silences tab: active, pending and expired silences (matchers, how many alerts each
//! silences now, start, end, creator, comment), a form that creates one, and expiring.
//!
//! The form is prefilled from the URL (`new=1&matchers={a="b",...}&comment=&duration=`), so
//! an alert's "Silence" link opens it with the alert's labels as equality matchers. Creating
//! and expiring write through the API from the browser (`POST /api/v2/silences`, `DELETE
//! /api/v2/silence/{id}`), then the list reads again; a refused request shows the API's
//! message. The new silence is marked in the list (`silence=<id>`).

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_navigate, use_query_map};
use leptos_router::params::ParamsMap;

use super::matchers;
use super::model::{api_time, rfc3339, NewSilence, Silence, SilenceCreated};
use super::{time_cell, SilencesTab};
use crate::fetch::{enc, Api};
use crate::i18n::tr;
use crate::time::{now_secs, parse_duration, query_url, range_link, with_query};

/// The silence duration the form starts with.
pub const DEFAULT_DURATION: &str = "2h";

/// Where the creator's name is remembered between silences (browser storage).
#[cfg(all(feature = "hydrate", not(feature = "ssr")))]
const CREATOR_KEY: &str = "lookout.silence.creator";

/// What the form starts with, from the URL.
#[derive(Clone, Debug, PartialEq)]
pub struct Prefill {
    /// One matcher per line.
    pub matchers: String,
    pub duration: String,
    pub creator: String,
    pub comment: String,
}

impl Prefill {
    pub fn from_query(q: &ParamsMap) -> Self {
        let matchers = q.get("matchers").unwrap_or_default();
        // shown one per line; text that does not parse is shown as it is, to be fixed
        let matchers = match matchers::parse(&matchers) {
            Ok(list) => matchers::to_lines(&list),
            Err(_) => matchers,
        };
        Prefill {
            matchers,
            duration: q
                .get("duration")
                .filter(|d| !d.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_DURATION.into()),
            creator: q.get("creator").unwrap_or_default(),
            comment: q.get("comment").unwrap_or_default(),
        }
    }
}

/// The body of `POST /api/v2/silences` from the form's fields, starting at `now`; the error
/// names the field at fault.
pub fn build_silence(
    matchers_text: &str,
    duration: &str,
    creator: &str,
    comment: &str,
    now: f64,
) -> Result<NewSilence, String> {
    let list = matchers::parse(matchers_text)?;
    if list.is_empty() {
        return Err(tr(
            "A silence needs at least one matcher.",
            "静默至少需要一个匹配条件。",
        )
        .into());
    }
    // compiled here so a bad regex is caught before the request
    matchers::compile(list.clone())?;
    if list
        .iter()
        .all(|m| matchers::Compiled::new(m.clone()).is_ok_and(|c| c.matches(&Default::default())))
    {
        return Err(tr(
            "These matchers also match alerts without those labels (every alert): name one label value.",
            "这些匹配条件会匹配所有告警：请至少指定一个标签值。",
        )
        .into());
    }
    let secs = parse_duration(duration)
        .filter(|d| *d > 0.0)
        .ok_or_else(|| {
            format!(
                "{} {duration:?} ({})",
                tr("Bad duration", "时长无效"),
                tr("e.g. 30m, 2h, 1d", "例如 30m、2h、1d")
            )
        })?;
    if creator.trim().is_empty() {
        return Err(tr("Say who creates the silence.", "请填写创建者。").into());
    }
    if comment.trim().is_empty() {
        return Err(tr("Say why (comment).", "请填写静默原因（备注）。").into());
    }
    Ok(NewSilence {
        matchers: list,
        starts_at: rfc3339(now),
        ends_at: rfc3339(now + secs),
        created_by: creator.trim().to_string(),
        comment: comment.trim().to_string(),
    })
}

/// The new-silence form.
#[component]
pub fn NewSilence(prefill: Prefill, version: RwSignal<u64>) -> impl IntoView {
    let api = Api::current();
    let navigate = use_navigate();
    let query = use_query_map();
    let matchers_ref = NodeRef::<leptos::html::Textarea>::new();
    let duration_ref = NodeRef::<leptos::html::Input>::new();
    let creator_ref = NodeRef::<leptos::html::Input>::new();
    let comment_ref = NodeRef::<leptos::html::Textarea>::new();
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);

    // the last creator this browser used, when the URL names none
    Effect::new(move |_| {
        #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
        if let Some(input) = creator_ref.get() {
            if input.value().is_empty() {
                let saved = web_sys::window()
                    .and_then(|w| w.local_storage().ok().flatten())
                    .and_then(|s| s.get_item(CREATOR_KEY).ok().flatten());
                if let Some(v) = saved {
                    input.set_value(&v);
                }
            }
        }
    });

    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        let (Some(m), Some(d), Some(c), Some(cm)) = (
            matchers_ref.get_untracked(),
            duration_ref.get_untracked(),
            creator_ref.get_untracked(),
            comment_ref.get_untracked(),
        ) else {
            return;
        };
        let body = match build_silence(&m.value(), &d.value(), &c.value(), &cm.value(), now_secs())
        {
            Ok(b) => b,
            Err(e) => {
                error.set(Some(e));
                return;
            }
        };
        error.set(None);
        busy.set(true);
        // the list to show afterwards: this view without the form, the new silence marked
        let mut pairs: Vec<(String, String)> = query
            .get_untracked()
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v))
            .filter(|(k, _)| {
                ![
                    "new", "matchers", "comment", "duration", "creator", "silence",
                ]
                .contains(&k.as_str())
            })
            .collect();
        let api = api.clone();
        let navigate = navigate.clone();
        spawn_local(async move {
            match api
                .post_json::<_, SilenceCreated>("/api/v2/silences", &body)
                .await
            {
                Ok(created) => {
                    remember_creator(&body.created_by);
                    pairs.push(("silence".into(), created.silence_id));
                    busy.set(false);
                    version.update(|v| *v += 1);
                    navigate(&query_url("/alerts", &pairs), Default::default());
                }
                Err(e) => {
                    busy.set(false);
                    error.set(Some(format!(
                        "{}: {e}",
                        tr("The silence was not created", "静默未创建")
                    )));
                }
            }
        });
    };
    let cancel = with_query(&[
        ("new", None),
        ("matchers", None),
        ("comment", None),
        ("duration", None),
        ("creator", None),
    ]);
    view! {
        <form class="silence-form" method="get" action="/alerts" on:submit=submit>
            <h2>{tr("New silence", "新建静默")}</h2>
            <div class="silence-form-grid">
                <label class="silence-matchers">
                    <span>{tr("Matchers (one per line)", "匹配条件（每行一个）")}</span>
                    <textarea
                        name="matchers"
                        rows="5"
                        node_ref=matchers_ref
                        spellcheck="false"
                        placeholder="alertname=\"HighErrorRate\"\nservice=~\"pay.*\""
                    >
                        {prefill.matchers.clone()}
                    </textarea>
                </label>
                <div class="silence-fields">
                    <label>
                        <span>{tr("Duration", "时长")}</span>
                        <input name="duration" node_ref=duration_ref value=prefill.duration.clone() size="8"/>
                    </label>
                    <label>
                        <span>{tr("Created by", "创建者")}</span>
                        <input name="creator" node_ref=creator_ref value=prefill.creator.clone() autocomplete="username"/>
                    </label>
                    <label class="silence-comment">
                        <span>{tr("Comment", "备注")}</span>
                        <textarea name="comment" rows="2" node_ref=comment_ref>{prefill.comment.clone()}</textarea>
                    </label>
                </div>
            </div>
            {move || error.get().map(|e| view! { <div class="error" role="alert">{e}</div> })}
            <div class="silence-actions">
                <button type="submit" class="primary" disabled=move || busy.get()>
                    {tr("Create silence", "创建静默")}
                </button>
                <a class="button" href=cancel>{tr("Cancel", "取消")}</a>
            </div>
        </form>
    }
}

fn remember_creator(_creator: &str) {
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    if let Some(s) = web_sys::window().and_then(|w| w.local_storage().ok().flatten()) {
        // storage may be full or off: the form then just starts empty next time
        let _ = s.set_item(CREATOR_KEY, _creator);
    }
}

/// Expires a silence after a second click (it stops muting at once).
#[component]
fn ExpireButton(id: String, version: RwSignal<u64>) -> impl IntoView {
    let api = Api::current();
    let confirming = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let expire = move || {
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        let api = api.clone();
        let path = format!("/api/v2/silence/{}", enc(&id));
        spawn_local(async move {
            let r = api.delete(&path).await;
            busy.set(false);
            confirming.set(false);
            match r {
                Ok(()) => {
                    error.set(None);
                    version.update(|v| *v += 1);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        {move || {
            if confirming.get() {
                let expire = expire.clone();
                view! {
                    <span class="confirm">
                        <button
                            type="button"
                            class="small danger expire-confirm"
                            disabled=move || busy.get()
                            on:click=move |_| expire()
                        >
                            {tr("Expire now", "立即失效")}
                        </button>
                        <button type="button" class="small" on:click=move |_| confirming.set(false)>
                            {tr("Keep", "保留")}
                        </button>
                    </span>
                }
                .into_any()
            } else {
                view! {
                    <button type="button" class="small expire" on:click=move |_| confirming.set(true)>
                        {tr("Expire", "使失效")}
                    </button>
                }
                .into_any()
            }
        }}
        {move || error.get().map(|e| view! { <div class="error" role="alert">{e}</div> })}
    }
}

/// Expired silences listed (newest first).
const EXPIRED_SHOWN: usize = 50;

pub fn view(d: SilencesTab, q: &ParamsMap, version: RwSignal<u64>) -> AnyView {
    let marked = q.get("silence");
    let creating = q.get("new").is_some();
    let new_link = (!creating).then(|| {
        let href = with_query(&[("new", Some("1".into()))]);
        view! { <a class="button primary" href=href>{tr("New silence", "新建静默")}</a> }
    });
    let now = d.now;
    let section = |state: &'static str, title: &'static str, limit: usize| {
        let list: Vec<&Silence> = d
            .silences
            .iter()
            .filter(|s| s.status.state == state)
            .collect();
        let total = list.len();
        let rows = list
            .into_iter()
            .take(limit)
            .map(|s| {
                silence_row(
                    s,
                    d.silenced.get(&s.id).copied().unwrap_or(0),
                    now,
                    marked.as_deref(),
                    version,
                )
            })
            .collect_view();
        let body = if total == 0 {
            view! { <div class="empty">{tr("None.", "无。")}</div> }.into_any()
        } else {
            view! {
                <table class="grid-table silence-list">
                    <thead>
                        <tr>
                            <th>{tr("Matchers", "匹配条件")}</th>
                            <th class="num">{tr("Alerts", "告警")}</th>
                            <th>{tr("Starts", "开始")}</th>
                            <th>{tr("Ends", "结束")}</th>
                            <th>{tr("Created by", "创建者")}</th>
                            <th>{tr("Comment", "备注")}</th>
                            <th></th>
                        </tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            }
            .into_any()
        };
        let more = (total > limit).then(|| {
            view! { <div class="muted small">{format!("{} {}", total - limit, tr("older not shown", "条更早的未显示"))}</div> }
        });
        view! {
            <div class=format!("silence-section silences-{state}")>
                <h2>{title}" "<span class="muted">{total}</span></h2>
                {body}
                {more}
            </div>
        }
    };
    view! {
        <div class="toolbar">{new_link}</div>
        {section("active", tr("Active", "生效中"), usize::MAX)}
        {section("pending", tr("Pending", "未开始"), usize::MAX)}
        {section("expired", tr("Expired", "已失效"), EXPIRED_SHOWN)}
    }
    .into_any()
}

fn silence_row(
    s: &Silence,
    silenced: usize,
    now: f64,
    marked: Option<&str>,
    version: RwSignal<u64>,
) -> impl IntoView {
    let matchers = s
        .matchers
        .iter()
        .map(|m| view! { <span class="badge mono">{m.to_string()}</span> })
        .collect_view();
    let alerts_href = range_link(
        "/alerts",
        &[
            ("filter", matchers::to_filter(&s.matchers)),
            ("state", "silenced".into()),
        ],
    );
    let action = if s.status.state == "expired" {
        let href = range_link(
            "/alerts",
            &[
                ("tab", "silences".into()),
                ("new", "1".into()),
                ("matchers", matchers::to_filter(&s.matchers)),
                ("comment", s.comment.clone()),
            ],
        );
        view! { <a class="button small" href=href>{tr("Recreate", "重新创建")}</a> }.into_any()
    } else {
        view! { <ExpireButton id=s.id.clone() version/> }.into_any()
    };
    let class = if marked == Some(s.id.as_str()) {
        "silence-row marked"
    } else {
        "silence-row"
    };
    view! {
        <tr class=class id=format!("silence-{}", s.id) data-silence-id=s.id.clone() data-state=s.status.state.clone()>
            <td class="labels">{matchers}<div class="muted small mono">{s.id.clone()}</div></td>
            <td class="num">
                {if silenced > 0 {
                    view! { <a href=alerts_href>{silenced}</a> }.into_any()
                } else {
                    view! { <span class="muted">"0"</span> }.into_any()
                }}
            </td>
            <td>{time_cell(api_time(&s.starts_at), now)}</td>
            <td>{time_cell(api_time(&s.ends_at), now)}</td>
            <td>{s.created_by.clone()}</td>
            <td class="silence-comment-cell">{s.comment.clone()}</td>
            <td class="silence-action">{action}</td>
        </tr>
    }
}

#[cfg(test)]
mod tests {
    use super::matchers::Matcher;
    use super::*;

    #[test]
    fn a_silence_from_the_form() {
        let now = 1_795_279_205.0;
        let s = build_silence(
            "alertname=\"HighErrors\"\nservice=\"pay\"",
            "2h",
            " ana ",
            "deploying a fix",
            now,
        )
        .unwrap();
        assert_eq!(
            s.matchers,
            [
                Matcher::equal("alertname", "HighErrors"),
                Matcher::equal("service", "pay")
            ]
        );
        assert_eq!(s.starts_at, "2026-11-21T16:40:05.000Z");
        assert_eq!(s.ends_at, "2026-11-21T18:40:05.000Z");
        assert_eq!(s.created_by, "ana");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["createdBy"], "ana");
        assert_eq!(json["matchers"][0]["isRegex"], false);
    }

    #[test]
    fn bad_forms_say_what_is_wrong() {
        let now = 0.0;
        let err =
            |m: &str, d: &str, c: &str, cm: &str| build_silence(m, d, c, cm, now).unwrap_err();
        assert!(err("", "2h", "a", "b").contains("at least one matcher"));
        assert!(err("a=\"b", "2h", "a", "b").contains("missing trailing double quote"));
        assert!(err("a=~\"(\"", "2h", "a", "b").contains("invalid regular expression"));
        assert!(err("a=~\".*\"", "2h", "a", "b").contains("every alert"));
        assert!(err("a=\"b\"", "soon", "a", "b").contains("Bad duration"));
        assert!(err("a=\"b\"", "0s", "a", "b").contains("Bad duration"));
        assert!(err("a=\"b\"", "1h", " ", "b").contains("who"));
        assert!(err("a=\"b\"", "1h", "a", "").contains("why"));
    }

    #[test]
    fn prefill_shows_one_matcher_per_line() {
        let q = ParamsMap::from_iter([(
            "matchers".to_string(),
            r#"{alertname="X", service="pay"}"#.to_string(),
        )]);
        let p = Prefill::from_query(&q);
        assert_eq!(p.matchers, "alertname=\"X\"\nservice=\"pay\"");
        assert_eq!(p.duration, DEFAULT_DURATION);
    }
}
