//! Charts drawn by the UI as SVG: [`TimeChart`] (lines over time with axes, legend and hover
//! values), [`Sparkline`] and [`Bars`]. Each has a fixed height, so refreshing data never
//! moves the page; widths follow the container through the SVG `viewBox`.

use leptos::prelude::*;

use crate::format;

/// One line of a chart: `(unix seconds, value)` points in time order; gaps are NaN.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// How values are written on the axis and in tooltips.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Unit {
    #[default]
    Plain,
    /// Seconds, written as durations.
    Seconds,
    /// A 0..1 ratio, written as a percentage.
    Ratio,
    /// Per second.
    PerSecond,
}

impl Unit {
    pub fn fmt(self, v: f64) -> String {
        match self {
            Unit::Plain => format::si(v),
            Unit::Seconds => format::duration_secs(v),
            Unit::Ratio => format::percent(v),
            Unit::PerSecond => format::rate(v),
        }
    }
}

pub const PALETTE: [&str; 10] = [
    "#3274d9", "#e0752d", "#37872d", "#c4162a", "#8f3bb8", "#1f78c1", "#b877d9", "#70dbed",
    "#fade2a", "#5794f2",
];

const W: f64 = 800.0;
const H: f64 = 220.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

/// Round tick values from at or below `lo` to at or above `hi`, about `n` steps apart
/// (1-2-5 steps, whichever is nearest the ideal): the chart's value axis runs first to last.
pub fn value_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .min_by(|a, b| (a / raw).ln().abs().total_cmp(&(b / raw).ln().abs()))
        .unwrap_or(mag);
    let first = (lo / step).floor();
    let last = (hi / step).ceil();
    (0..=((last - first) as usize).min(50))
        .map(|i| {
            let v = (first + i as f64) * step;
            // 0.6000000000000001 -> 0.6: round to the step's decimals
            let scale = 10f64.powi((-step.log10().floor()).max(0.0) as i32 + 1);
            (v * scale).round() / scale
        })
        .collect()
}

/// Time ticks on round wall-clock boundaries (UTC), about `n` of them over `start..end`.
pub fn time_ticks(start: f64, end: f64, n: usize) -> Vec<f64> {
    const STEPS: [f64; 17] = [
        1.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
        10_800.0, 21_600.0, 43_200.0, 86_400.0,
    ];
    if !(start.is_finite() && end.is_finite()) || end <= start {
        return Vec::new();
    }
    let raw = (end - start) / n.max(1) as f64;
    let step = STEPS
        .iter()
        .copied()
        .find(|s| *s >= raw)
        .unwrap_or((raw / 86_400.0).ceil() * 86_400.0);
    let first = (start / step).ceil() * step;
    (0..)
        .map(|i| first + i as f64 * step)
        .take_while(|t| *t <= end)
        .take(50)
        .collect()
}

/// A tick label for time `t` on an axis spanning `span` seconds.
pub fn time_label(t: f64, span: f64) -> String {
    if span > 86_400.0 {
        format::month_day_clock(t)
    } else if span > 600.0 {
        format::clock(t)[..5].to_string()
    } else {
        format::clock(t)
    }
}

/// The value range to draw: the data's, widened to include 0 for non-negative data and
/// never empty.
fn y_range(series: &[Series]) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for s in series {
        for &(_, v) in &s.points {
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if lo >= 0.0 {
        lo = 0.0;
    }
    if hi <= lo {
        hi = lo + if lo == 0.0 { 1.0 } else { lo.abs() };
    }
    (lo, hi)
}

/// SVG path of one series: a new subpath after every gap (NaN or a jump longer than `gap`).
fn line_path(
    points: &[(f64, f64)],
    x: impl Fn(f64) -> f64,
    y: impl Fn(f64) -> f64,
    gap: f64,
) -> String {
    let mut d = String::new();
    let mut prev_t: Option<f64> = None;
    for &(t, v) in points {
        if !v.is_finite() {
            prev_t = None;
            continue;
        }
        let cmd = match prev_t {
            Some(p) if t - p <= gap => 'L',
            _ => 'M',
        };
        d.push_str(&format!("{cmd}{:.1},{:.1}", x(t), y(v)));
        prev_t = Some(t);
    }
    d
}

/// Lines over time with axes, a legend (click a name to hide or show it) and hover values.
#[component]
pub fn TimeChart(
    #[prop(into)] series: Signal<Vec<Series>>,
    /// Visible range, Unix seconds.
    #[prop(into)]
    range: Signal<(f64, f64)>,
    #[prop(optional)] unit: Unit,
    /// Step of the data, seconds: points further apart than two steps are not joined.
    #[prop(into, optional)]
    step: Option<Signal<f64>>,
) -> impl IntoView {
    let hidden = RwSignal::new(Vec::<String>::new());
    let hover = RwSignal::new(None::<f64>);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;

    let geometry = Memo::new(move |_| {
        let (start, end) = range.get();
        let span = (end - start).max(1e-9);
        let hidden = hidden.get();
        let visible: Vec<Series> = series
            .get()
            .into_iter()
            .filter(|s| !hidden.contains(&s.name))
            .collect();
        let (lo, hi) = y_range(&visible);
        let ticks = value_ticks(lo, hi, 4);
        let lo = ticks.first().copied().unwrap_or(lo).min(lo);
        let hi = ticks.last().copied().unwrap_or(hi).max(hi);
        (start, span, lo, hi, ticks)
    });
    let x_of = move |t: f64| {
        let (start, span, ..) = geometry.get();
        LEFT + (t - start) / span * plot_w
    };
    let y_of = move |v: f64| {
        let (_, _, lo, hi, _) = geometry.get();
        TOP + plot_h - (v - lo) / (hi - lo).max(1e-300) * plot_h
    };
    let gap = move || step.map_or(f64::INFINITY, |s| s.get() * 2.5);

    let on_move = move |ev: leptos::ev::MouseEvent| {
        let x = f64::from(ev.offset_x());
        #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
        let width = {
            use wasm_bindgen::JsCast;
            ev.current_target()
                .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
                .map(|e| e.get_bounding_client_rect().width())
                .unwrap_or(W)
        };
        #[cfg(not(all(feature = "hydrate", not(feature = "ssr"))))]
        let width = W;
        let vx = x / width.max(1.0) * W;
        let (start, span, ..) = geometry.get_untracked();
        if (LEFT..=W - RIGHT).contains(&vx) {
            hover.set(Some(start + (vx - LEFT) / plot_w * span));
        } else {
            hover.set(None);
        }
    };

    let tooltip = move || {
        let t = hover.get()?;
        let hidden = hidden.get();
        let rows: Vec<(usize, String, f64)> = series
            .get()
            .iter()
            .enumerate()
            .filter(|(_, s)| !hidden.contains(&s.name))
            .filter_map(|(i, s)| {
                let p = s
                    .points
                    .iter()
                    .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()))?;
                Some((i, s.name.clone(), p.1))
            })
            .take(12)
            .collect();
        let x = x_of(t);
        let left_side = x > W * 0.6;
        Some(view! {
            <line class="chart-hover" x1=x x2=x y1=TOP y2=TOP + plot_h/>
            <foreignObject
                x=if left_side { x - 250.0 } else { x + 8.0 }
                y=TOP
                width="240"
                height=plot_h
                class="chart-tip-wrap"
            >
                <div class="chart-tip">
                    <div class="chart-tip-time">{format::datetime(t)}</div>
                    {rows
                        .into_iter()
                        .map(|(i, name, v)| {
                            view! {
                                <div>
                                    <span class="swatch" style=format!("background:{}", PALETTE[i % PALETTE.len()])></span>
                                    {name}
                                    ": "
                                    <b>{unit.fmt(v)}</b>
                                </div>
                            }
                        })
                        .collect_view()}
                </div>
            </foreignObject>
        })
    };

    view! {
        <div class="chart">
            <svg
                viewBox=format!("0 0 {W} {H}")
                preserveAspectRatio="none"
                class="chart-svg"
                on:mousemove=on_move
                on:mouseleave=move |_| hover.set(None)
            >
                {move || {
                    let (start, span, _, _, ticks) = geometry.get();
                    let yt = ticks
                        .into_iter()
                        .map(|v| {
                            let y = y_of(v);
                            view! {
                                <line class="grid" x1=LEFT x2=W - RIGHT y1=y y2=y/>
                                <text class="axis" x=LEFT - 6.0 y=y + 4.0 text-anchor="end">{unit.fmt(v)}</text>
                            }
                        })
                        .collect_view();
                    let xt = time_ticks(start, start + span, 7)
                        .into_iter()
                        .map(|t| {
                            let x = x_of(t);
                            view! {
                                <line class="grid" x1=x x2=x y1=TOP y2=TOP + plot_h/>
                                <text class="axis" x=x y=H - 6.0 text-anchor="middle">{time_label(t, span)}</text>
                            }
                        })
                        .collect_view();
                    view! { {yt} {xt} }
                }}
                {move || {
                    let hidden = hidden.get();
                    series
                        .get()
                        .into_iter()
                        .enumerate()
                        .filter(|(_, s)| !hidden.contains(&s.name))
                        .map(|(i, s)| {
                            let d = line_path(&s.points, x_of, y_of, gap());
                            view! {
                                <path class="line" d=d stroke=PALETTE[i % PALETTE.len()] fill="none"/>
                            }
                        })
                        .collect_view()
                }}
                {tooltip}
            </svg>
            <div class="legend">
                {move || {
                    series
                        .get()
                        .into_iter()
                        .enumerate()
                        .map(|(i, s)| {
                            let name = s.name.clone();
                            let off = {
                                let name = name.clone();
                                move || hidden.get().contains(&name)
                            };
                            view! {
                                <button
                                    class="legend-item"
                                    class:off=off
                                    on:click=move |_| {
                                        hidden.update(|h| {
                                            if let Some(p) = h.iter().position(|n| *n == name) {
                                                h.remove(p);
                                            } else {
                                                h.push(name.clone());
                                            }
                                        })
                                    }
                                >
                                    <span class="swatch" style=format!("background:{}", PALETTE[i % PALETTE.len()])></span>
                                    {if s.name.is_empty() { "{}".to_string() } else { s.name.clone() }}
                                </button>
                            }
                        })
                        .collect_view()
                }}
            </div>
        </div>
    }
}

/// A small line without axes, for tables.
#[component]
pub fn Sparkline(
    points: Vec<(f64, f64)>,
    #[prop(optional)] color: Option<&'static str>,
) -> impl IntoView {
    const SW: f64 = 100.0;
    const SH: f64 = 24.0;
    let finite: Vec<(f64, f64)> = points.into_iter().filter(|p| p.1.is_finite()).collect();
    let d = if finite.len() < 2 {
        String::new()
    } else {
        let (t0, t1) = (finite[0].0, finite[finite.len() - 1].0);
        let lo = finite
            .iter()
            .map(|p| p.1)
            .fold(f64::INFINITY, f64::min)
            .min(0.0);
        let hi = finite.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let hi = if hi <= lo { lo + 1.0 } else { hi };
        line_path(
            &finite,
            |t| (t - t0) / (t1 - t0).max(1e-9) * SW,
            |v| SH - 1.0 - (v - lo) / (hi - lo) * (SH - 2.0),
            f64::INFINITY,
        )
    };
    view! {
        <svg class="sparkline" viewBox=format!("0 0 {SW} {SH}") preserveAspectRatio="none">
            <path d=d stroke=color.unwrap_or(PALETTE[0]) fill="none"/>
        </svg>
    }
}

/// One bar of [`Bars`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bar {
    pub t: f64,
    /// `(class, count)` stacked bottom-up.
    pub parts: Vec<(String, f64)>,
}

/// Colour of a bar class (log severities get their usual colours).
pub fn class_color(class: &str, i: usize) -> &'static str {
    match class {
        "fatal" | "FATAL" => "#8b0000",
        "error" | "ERROR" => "#c4162a",
        "warn" | "WARN" | "warning" => "#e0a82d",
        "info" | "INFO" => "#3274d9",
        "debug" | "DEBUG" => "#8e8e8e",
        "trace" | "TRACE" => "#b0b0b0",
        _ => PALETTE[i % PALETTE.len()],
    }
}

/// Vertical bars over time (counts per step), stacked by class (severity), with a
/// drag-to-select callback giving the selected `(start, end)`.
#[component]
pub fn Bars(
    #[prop(into)] bars: Signal<Vec<Bar>>,
    #[prop(into)] range: Signal<(f64, f64)>,
    #[prop(into)] step: Signal<f64>,
    /// Called with the `(start, end)` a drag selected.
    #[prop(optional)]
    on_select: Option<Callback<(f64, f64)>>,
) -> impl IntoView {
    const BH: f64 = 120.0;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = BH - TOP - BOTTOM;
    let drag = RwSignal::new(None::<(f64, f64)>);
    let t_of = move |ev: &leptos::ev::MouseEvent| {
        let x = f64::from(ev.offset_x());
        #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
        let width = {
            use wasm_bindgen::JsCast;
            ev.current_target()
                .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
                .map(|e| e.get_bounding_client_rect().width())
                .unwrap_or(W)
        };
        #[cfg(not(all(feature = "hydrate", not(feature = "ssr"))))]
        let width = W;
        let (start, end) = range.get_untracked();
        let vx = (x / width.max(1.0) * W).clamp(LEFT, W - RIGHT);
        start + (vx - LEFT) / plot_w * (end - start)
    };
    let x_of = move |t: f64| {
        let (start, end) = range.get();
        LEFT + (t - start) / (end - start).max(1e-9) * plot_w
    };
    view! {
        <svg
            class="bars-svg"
            viewBox=format!("0 0 {W} {BH}")
            preserveAspectRatio="none"
            on:mousedown=move |ev| {
                let t = t_of(&ev);
                drag.set(Some((t, t)));
            }
            on:mousemove=move |ev| {
                if let Some((a, _)) = drag.get_untracked() {
                    drag.set(Some((a, t_of(&ev))));
                }
            }
            on:mouseup=move |_| {
                if let Some((a, b)) = drag.get_untracked() {
                    drag.set(None);
                    let (s, e) = if a < b { (a, b) } else { (b, a) };
                    if e - s >= step.get_untracked() {
                        if let Some(cb) = on_select {
                            cb.run((s.floor(), e.ceil()));
                        }
                    }
                }
            }
        >
            {move || {
                let bars = bars.get();
                let max = bars
                    .iter()
                    .map(|b| b.parts.iter().map(|p| p.1).sum::<f64>())
                    .fold(0.0, f64::max)
                    .max(1.0);
                let ticks = value_ticks(0.0, max, 2);
                let max = ticks.last().copied().unwrap_or(max).max(max);
                let (start, end) = range.get();
                let span = end - start;
                let bw = (step.get() / span.max(1e-9) * plot_w * 0.85).max(1.0);
                let classes: Vec<String> = {
                    let mut c: Vec<String> = Vec::new();
                    for b in &bars {
                        for (k, _) in &b.parts {
                            if !c.contains(k) {
                                c.push(k.clone());
                            }
                        }
                    }
                    c
                };
                let y_of = move |v: f64| TOP + plot_h - v / max * plot_h;
                let grid = ticks
                    .into_iter()
                    .map(|v| {
                        view! {
                            <line class="grid" x1=LEFT x2=W - RIGHT y1=y_of(v) y2=y_of(v)/>
                            <text class="axis" x=LEFT - 6.0 y=y_of(v) + 4.0 text-anchor="end">{format::si(v)}</text>
                        }
                    })
                    .collect_view();
                let xt = time_ticks(start, end, 7)
                    .into_iter()
                    .map(|t| {
                        view! {
                            <text class="axis" x=x_of(t) y=BH - 6.0 text-anchor="middle">{time_label(t, span)}</text>
                        }
                    })
                    .collect_view();
                let rects = bars
                    .iter()
                    .flat_map(|b| {
                        let mut acc = 0.0;
                        let x = x_of(b.t);
                        b.parts
                            .iter()
                            .map(|(k, v)| {
                                let i = classes.iter().position(|c| c == k).unwrap_or(0);
                                let y0 = y_of(acc);
                                acc += v;
                                let y1 = y_of(acc);
                                view! {
                                    <rect x=x y=y1 width=bw height=(y0 - y1).max(0.0) fill=class_color(k, i)>
                                        <title>{format!("{} {k}: {v}", format::datetime(b.t))}</title>
                                    </rect>
                                }
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect_view();
                view! { {grid} {xt} {rects} }
            }}
            {move || {
                drag.get()
                    .map(|(a, b)| {
                        let (x1, x2) = (x_of(a.min(b)), x_of(a.max(b)));
                        view! { <rect class="drag" x=x1 y=TOP width=(x2 - x1).max(1.0) height=plot_h/> }
                    })
            }}
        </svg>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_ticks_are_round_and_cover_the_range() {
        assert_eq!(
            value_ticks(0.0, 10.0, 5),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        assert_eq!(
            value_ticks(0.0, 0.95, 4),
            vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
        );
        assert_eq!(
            value_ticks(-3.0, 7.0, 4),
            vec![-4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0]
        );
        assert_eq!(value_ticks(5.0, 5.0, 4), vec![5.0]);
    }

    #[test]
    fn time_ticks_fall_on_round_clock_times() {
        let t = time_ticks(1000.0, 4600.0, 6);
        assert_eq!(t, vec![1200.0, 1800.0, 2400.0, 3000.0, 3600.0, 4200.0]);
        assert_eq!(time_label(3600.0, 3600.0), "01:00");
        assert!(time_ticks(10.0, 5.0, 6).is_empty());
    }

    #[test]
    fn gaps_split_lines() {
        let pts = [
            (0.0, 1.0),
            (10.0, 2.0),
            (20.0, f64::NAN),
            (30.0, 3.0),
            (100.0, 4.0),
        ];
        let d = line_path(&pts, |t| t, |v| v, 25.0);
        assert_eq!(d, "M0.0,1.0L10.0,2.0M30.0,3.0M100.0,4.0");
    }
}
