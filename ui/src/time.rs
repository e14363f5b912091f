//! The time range every page shares. It lives in the URL, so a pasted link shows the same view:
//! `start` and `end` (`now`, `now-1h`, Unix seconds or RFC 3339, as the alert links write
//! them) and `refresh` (`off`, `10s`, `1m`, ...). [`TimePicker`] edits them; pages read
//! [`TimeRange::from_query`] and resolve it against the clock when they fetch.

use leptos::prelude::*;
use leptos_router::hooks::{use_location, use_navigate, use_query_map};
use leptos_router::params::ParamsMap;

use crate::format;
use crate::i18n::tr;

/// The default window when the URL names none.
pub const DEFAULT_START: &str = "now-1h";

/// A time range as written in the URL, unresolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeRange {
    pub start: String,
    pub end: String,
}

impl TimeRange {
    /// The range in `query` (`start`, `end`), defaulting to the last hour.
    pub fn from_query(query: &ParamsMap) -> Self {
        let get = |k: &str, d: &str| {
            query
                .get(k)
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| d.to_string())
        };
        TimeRange {
            start: get("start", DEFAULT_START),
            end: get("end", "now"),
        }
    }

    /// `(start, end)` in Unix seconds as of `now`; an unreadable bound falls back to the
    /// default, and a reversed range is put in order.
    pub fn resolve(&self, now: f64) -> (f64, f64) {
        let end = parse_time(&self.end, now).unwrap_or(now);
        let start = parse_time(&self.start, now).unwrap_or(end - 3600.0);
        if start <= end {
            (start, end)
        } else {
            (end, start)
        }
    }

    /// A short label for the picker button: `Last 1h` or the absolute bounds.
    pub fn label(&self) -> String {
        if self.end == "now" {
            if let Some(d) = self.start.strip_prefix("now-") {
                return format!("{} {d}", tr("Last", "最近"));
            }
        }
        let now = now_secs();
        let (s, e) = self.resolve(now);
        format!("{} → {}", format::datetime(s), format::datetime(e))
    }
}

/// Seconds since the epoch on whichever side runs.
pub fn now_secs() -> f64 {
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    {
        js_sys::Date::now() / 1000.0
    }
    #[cfg(not(all(feature = "hydrate", not(feature = "ssr"))))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }
}

/// `now`, `now-15m`, `now+1h`, Unix seconds (`1700000000`, `1700000000.5`) or RFC 3339
/// (`2026-11-21T13:00:00Z`, `2026-11-21 13:00:00` taken as UTC).
pub fn parse_time(s: &str, now: f64) -> Option<f64> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("now") {
        if rest.is_empty() {
            return Some(now);
        }
        let (sign, d) = match rest.split_at(1) {
            ("-", d) => (-1.0, d),
            ("+", d) => (1.0, d),
            _ => return None,
        };
        return parse_duration(d).map(|d| now + sign * d);
    }
    if let Ok(v) = s.parse::<f64>() {
        return v.is_finite().then_some(v);
    }
    parse_rfc3339(s)
}

/// Prometheus-style durations: `30s`, `5m`, `1h30m`, `2d`, `1w`, `500ms`.
pub fn parse_duration(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            "y" => 31_536_000.0,
            _ => return None,
        };
        total += n * unit;
        rest = &rest[unit_len..];
    }
    Some(total)
}

fn parse_rfc3339(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        frac = format!("0.{}", &r[..n]).parse().ok()?;
        rest = &r[n..];
    }
    let offset = match rest {
        "" | "Z" | "z" => 0.0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let oh: f64 = o[1..3].parse().ok()?;
            let om: f64 = o[4..6].parse().ok()?;
            let v = oh * 3600.0 + om * 60.0;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let days = format::days_from_civil(i64::from(y), mo, d);
    Some(
        (days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(se)) as f64 + frac
            - offset,
    )
}

/// A query step that gives about `points` points over `range` seconds, rounded to a step
/// people read easily (1s, 5s, 15s, 30s, 1m, 5m, ...).
pub fn auto_step(range: f64, points: f64) -> f64 {
    const NICE: [f64; 14] = [
        1.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 10_800.0,
        21_600.0,
    ];
    let raw = (range / points.max(1.0)).max(1.0);
    NICE.iter()
        .copied()
        .find(|&n| n >= raw)
        .unwrap_or((raw / 86_400.0).ceil() * 86_400.0)
}

/// The refresh interval in the URL (`refresh=30s`), if auto-refresh is on.
pub fn refresh_secs(query: &ParamsMap) -> Option<f64> {
    query
        .get("refresh")
        .and_then(|r| parse_duration(&r))
        .filter(|&s| s >= 1.0)
}

/// A counter that auto-refresh bumps; pages put it in their resources' sources so they
/// refetch. Provided by the app once.
#[derive(Clone, Copy)]
pub struct RefreshTick(pub RwSignal<u64>);

/// Provides [`RefreshTick`] and, in the browser, bumps it every `refresh` interval.
pub fn provide_refresh() {
    let tick = RwSignal::new(0u64);
    provide_context(RefreshTick(tick));
    let query = use_query_map();
    Effect::new(move |prev: Option<Option<IntervalHandle>>| {
        if let Some(Some(h)) = prev {
            h.clear();
        }
        let every = query.with(refresh_secs)?;
        set_interval_with_handle(
            move || tick.update(|t| *t += 1),
            std::time::Duration::from_secs_f64(every),
        )
        .ok()
    });
}

/// The current refresh tick (0 when the app provided none).
pub fn tick() -> u64 {
    use_context::<RefreshTick>().map_or(0, |t| t.0.get())
}

/// The URL of the current page with `changes` applied to its query (`None` removes a key).
pub fn with_query(changes: &[(&str, Option<String>)]) -> String {
    let loc = use_location();
    let path = loc.pathname.get_untracked();
    let mut pairs: Vec<(String, String)> = use_query_map()
        .get_untracked()
        .into_iter()
        .filter(|(k, _)| !changes.iter().any(|(c, _)| c == k))
        .map(|(k, v)| (k.into_owned(), v))
        .collect();
    for (k, v) in changes {
        if let Some(v) = v {
            pairs.push((k.to_string(), v.clone()));
        }
    }
    query_url(&path, &pairs)
}

/// A link to `path` that keeps the current view's time range and refresh, plus `extra`.
pub fn range_link(path: &str, extra: &[(&str, String)]) -> String {
    let mut pairs: Vec<(String, String)> = use_query_map().with_untracked(|q| {
        ["start", "end", "refresh"]
            .iter()
            .filter_map(|k| q.get(k).map(|v| (k.to_string(), v)))
            .collect()
    });
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    query_url(path, &pairs)
}

/// `path?k=v&...` with values percent-encoded.
pub fn query_url(path: &str, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return path.to_string();
    }
    let q: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", crate::fetch::enc(k), crate::fetch::enc(v)))
        .collect();
    format!("{path}?{}", q.join("&"))
}

const PRESETS: [&str; 9] = ["5m", "15m", "1h", "3h", "6h", "12h", "24h", "2d", "7d"];
const REFRESHES: [&str; 6] = ["off", "5s", "10s", "30s", "1m", "5m"];

/// The range picker: relative presets, absolute bounds, auto-refresh. Every change is a
/// navigation to the same page with a new query, so the URL always holds the view.
#[component]
pub fn TimePicker() -> impl IntoView {
    let query = use_query_map();
    let range = Memo::new(move |_| query.with(TimeRange::from_query));
    let refresh =
        Memo::new(move |_| query.with(|q| q.get("refresh").unwrap_or_else(|| "off".into())));
    let navigate = use_navigate();
    let go = move |changes: Vec<(&'static str, Option<String>)>| {
        let url = with_query(&changes);
        navigate(&url, Default::default());
    };
    let start_input = NodeRef::<leptos::html::Input>::new();
    let end_input = NodeRef::<leptos::html::Input>::new();
    let go_abs = go.clone();
    let apply_absolute = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (Some(s), Some(e)) = (start_input.get(), end_input.get()) else {
            return;
        };
        go_abs(vec![("start", Some(s.value())), ("end", Some(e.value()))]);
    };
    let go_refresh = go.clone();
    view! {
        <div class="timepicker">
            <details class="tp-menu">
                <summary class="tp-button" title=move || tr("Time range", "时间范围")>
                    {move || range.get().label()}
                </summary>
                <div class="tp-panel">
                    <div class="tp-presets">
                        {PRESETS
                            .iter()
                            .map(|p| {
                                let go = go.clone();
                                let start = format!("now-{p}");
                                let href = {
                                    let start = start.clone();
                                    move || with_query(&[("start", Some(start.clone())), ("end", Some("now".into()))])
                                };
                                view! {
                                    <a
                                        class="tp-preset"
                                        href=href
                                        on:click=move |ev| {
                                            ev.prevent_default();
                                            go(vec![("start", Some(start.clone())), ("end", Some("now".into()))]);
                                        }
                                    >
                                        {format!("{} {p}", tr("Last", "最近"))}
                                    </a>
                                }
                            })
                            .collect_view()}
                    </div>
                    <form class="tp-absolute" method="get" on:submit=apply_absolute>
                        <label>
                            {move || tr("From", "开始")}
                            <input
                                name="start"
                                node_ref=start_input
                                value=move || range.get().start
                                prop:value=move || range.get().start
                            />
                        </label>
                        <label>
                            {move || tr("To", "结束")}
                            <input
                                name="end"
                                node_ref=end_input
                                value=move || range.get().end
                                prop:value=move || range.get().end
                            />
                        </label>
                        <button type="submit">{move || tr("Apply", "应用")}</button>
                    </form>
                </div>
            </details>
            <select
                class="tp-refresh"
                title=move || tr("Auto-refresh", "自动刷新")
                on:change=move |ev| {
                    let v = event_target_value(&ev);
                    go_refresh(vec![("refresh", (v != "off").then_some(v))]);
                }
            >
                {REFRESHES
                    .iter()
                    .map(|r| {
                        let r = *r;
                        view! {
                            <option value=r selected=move || refresh.get() == r>
                                {if r == "off" { tr("Refresh off", "不刷新").to_string() } else { format!("⟳ {r}") }}
                            </option>
                        }
                    })
                    .collect_view()}
            </select>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_prometheus_and_grafana_write_them() {
        let now = 1_795_279_205.0;
        assert_eq!(parse_time("now", now), Some(now));
        assert_eq!(parse_time("now-1h", now), Some(now - 3600.0));
        assert_eq!(parse_time("now-1h30m", now), Some(now - 5400.0));
        assert_eq!(parse_time("1700000000", now), Some(1_700_000_000.0));
        assert_eq!(parse_time("2026-11-21T16:40:05Z", now), Some(now));
        assert_eq!(parse_time("2026-11-21T18:40:05+02:00", now), Some(now));
        assert_eq!(parse_time("2026-11-21 16:40:05.5", now), Some(now + 0.5));
        assert_eq!(parse_time("yesterday", now), None);
        assert_eq!(parse_time("now-", now), None);
        assert_eq!(parse_time("now*2", now), None);
    }

    #[test]
    fn ranges_resolve_in_order_with_defaults() {
        let now = 10_000.0;
        let r = TimeRange {
            start: "now-5m".into(),
            end: "now".into(),
        };
        assert_eq!(r.resolve(now), (9_700.0, 10_000.0));
        let bad = TimeRange {
            start: "garbage".into(),
            end: "now".into(),
        };
        assert_eq!(bad.resolve(now), (6_400.0, 10_000.0));
        let reversed = TimeRange {
            start: "9000".into(),
            end: "8000".into(),
        };
        assert_eq!(reversed.resolve(now), (8_000.0, 9_000.0));
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(auto_step(3600.0, 240.0), 15.0);
        assert_eq!(auto_step(86_400.0, 240.0), 600.0);
        assert_eq!(auto_step(60.0, 240.0), 1.0);
        assert_eq!(auto_step(90.0 * 86_400.0, 240.0), 86_400.0);
        assert_eq!(parse_duration("1h30m"), Some(5400.0));
        assert_eq!(parse_duration("5x"), None);
    }
}
