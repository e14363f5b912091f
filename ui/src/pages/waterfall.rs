//! Layout of the trace pages, as pure functions: the waterfall's span tree (order, depth,
//! collapse), bar and tick positions on the trace's time axis, the search page's scatter
//! plot, and the colour of a service (the same on every trace page).
//!
//! Spans arrive in any order, some parents never arrive (a service that does not export, a
//! span still in flight) and services' clocks disagree, so the tree is built defensively:
//! a span whose parent is missing is shown at the root level (marked as an orphan), a cycle
//! of parent ids is broken at its earliest span, and a child that starts before its parent
//! or ends after it stays under its parent (marked as clock-skewed) with its bar where its
//! own times put it.

use std::collections::HashMap;

use crate::chart::{time_label, time_ticks, value_ticks, PALETTE};

/// What tree building needs to know of a span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanRef<'a> {
    pub id: &'a str,
    /// `None` for a root span.
    pub parent: Option<&'a str>,
    /// Unix nanoseconds.
    pub start: u64,
    pub end: u64,
}

/// One row of the waterfall, in display order (depth first, siblings by start time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Index of the span in the input.
    pub index: usize,
    /// 0 for the root level.
    pub depth: usize,
    /// Direct children shown under this span.
    pub children: usize,
    /// Every span of this span's subtree, itself excluded (what collapsing it hides).
    pub descendants: usize,
    /// The span names a parent that is not in the trace (or its parents form a cycle):
    /// it is shown at the root level.
    pub orphan: bool,
    /// The span starts before its parent or ends after it: the services' clocks disagree.
    pub skewed: bool,
}

/// The span tree of a trace in display order. Every input span appears exactly once.
pub fn build_tree(spans: &[SpanRef<'_>]) -> Vec<Node> {
    let n = spans.len();
    // the first span with an id is the one children attach to (ids are unique in a sane trace)
    let mut by_id: HashMap<&str, usize> = HashMap::with_capacity(n);
    for (i, s) in spans.iter().enumerate() {
        by_id.entry(s.id).or_insert(i);
    }
    let parent_of: Vec<Option<usize>> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.parent
                .and_then(|p| by_id.get(p).copied())
                .filter(|&p| p != i)
        })
        .collect();
    let sibling_order = |&a: &usize, &b: &usize| {
        spans[a]
            .start
            .cmp(&spans[b].start)
            .then_with(|| spans[a].id.cmp(spans[b].id))
            .then(a.cmp(&b))
    };
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, p) in parent_of.iter().enumerate() {
        if let Some(p) = p {
            children[*p].push(i);
        }
    }
    for c in &mut children {
        c.sort_by(sibling_order);
    }
    let mut roots: Vec<usize> = (0..n).filter(|&i| parent_of[i].is_none()).collect();
    roots.sort_by(sibling_order);

    let mut out: Vec<Node> = Vec::with_capacity(n);
    let mut visited = vec![false; n];
    let walk = |root: usize, out: &mut Vec<Node>, visited: &mut [bool]| {
        // an explicit stack: a trace may be thousands of spans deep
        let mut stack = vec![(root, 0usize)];
        visited[root] = true;
        while let Some((i, depth)) = stack.pop() {
            let kids: Vec<usize> = children[i]
                .iter()
                .copied()
                .filter(|&c| !visited[c])
                .collect();
            for &c in &kids {
                visited[c] = true;
            }
            let orphan = match parent_of[i] {
                None => spans[i].parent.is_some(),
                // the root of a broken cycle
                Some(_) => depth == 0,
            };
            let skewed = parent_of[i].is_some_and(|p| {
                depth > 0 && (spans[i].start < spans[p].start || spans[i].end > spans[p].end)
            });
            out.push(Node {
                index: i,
                depth,
                children: kids.len(),
                descendants: 0,
                orphan,
                skewed,
            });
            stack.extend(kids.into_iter().rev().map(|c| (c, depth + 1)));
        }
    };
    for &r in &roots {
        walk(r, &mut out, &mut visited);
    }
    // what is left hangs off a cycle of parent ids: break each at its earliest span
    loop {
        let next = (0..n)
            .filter(|&i| !visited[i])
            .min_by(|a, b| sibling_order(a, b));
        let Some(r) = next else { break };
        walk(r, &mut out, &mut visited);
    }
    fill_descendants(&mut out);
    out
}

/// A subtree is the run of rows after its root that are deeper than it.
fn fill_descendants(nodes: &mut [Node]) {
    // positions whose subtree is still open
    let mut open: Vec<usize> = Vec::new();
    for k in 0..nodes.len() {
        while let Some(&top) = open.last() {
            if nodes[top].depth >= nodes[k].depth {
                nodes[top].descendants = k - top - 1;
                open.pop();
            } else {
                break;
            }
        }
        open.push(k);
    }
    let end = nodes.len();
    for top in open {
        nodes[top].descendants = end - top - 1;
    }
}

/// Positions in `nodes` of the rows to show when the spans for which `collapsed(index)`
/// holds have their subtrees folded away.
pub fn visible_rows(nodes: &[Node], collapsed: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut out = Vec::with_capacity(nodes.len());
    let mut hide_below: Option<usize> = None;
    for (k, node) in nodes.iter().enumerate() {
        if let Some(d) = hide_below {
            if node.depth > d {
                continue;
            }
            hide_below = None;
        }
        out.push(k);
        if node.children > 0 && collapsed(node.index) {
            hide_below = Some(node.depth);
        }
    }
    out
}

/// The deepest level of the tree plus one (1 for a single span).
pub fn depth_of(nodes: &[Node]) -> usize {
    nodes.iter().map(|n| n.depth + 1).max().unwrap_or(0)
}

/// A bar on the trace's time axis: `(left, width)` in percent of the trace's duration, both
/// within 0..=100 whatever the span's times (a skewed span is cut at the axis' ends).
pub fn bar(start: u64, end: u64, trace_start: u64, trace_nanos: u64) -> (f64, f64) {
    if trace_nanos == 0 {
        return (0.0, 100.0);
    }
    let pct = |t: u64| {
        let off = t.saturating_sub(trace_start) as f64;
        (off / trace_nanos as f64 * 100.0).clamp(0.0, 100.0)
    };
    let left = pct(start);
    let right = pct(end.max(start));
    (left, right - left)
}

/// Where a point in time sits on the trace's axis, in percent (clamped to the axis).
pub fn offset_pct(t: u64, trace_start: u64, trace_nanos: u64) -> f64 {
    bar(t, t, trace_start, trace_nanos).0
}

/// Ticks of the trace's axis: evenly spaced round durations from 0 up to its length, as
/// `(percent, seconds)`, and the spacing between two ticks in percent.
pub fn axis_ticks(trace_nanos: u64) -> (Vec<(f64, f64)>, f64) {
    let total = trace_nanos as f64 / 1e9;
    if total <= 0.0 {
        return (vec![(0.0, 0.0)], 100.0);
    }
    let ticks: Vec<(f64, f64)> = value_ticks(0.0, total, 5)
        .into_iter()
        .filter(|&t| t >= 0.0 && t <= total * 1.000_001)
        .map(|t| (t / total * 100.0, t))
        .collect();
    let spacing = match ticks.as_slice() {
        [a, b, ..] => b.0 - a.0,
        _ => 100.0,
    };
    (ticks, spacing)
}

/// Services' colours: a service keeps its colour on every trace page. Red is left out: it
/// marks errors.
pub fn service_color(service: &str) -> &'static str {
    const ERROR_RED: &str = "#c4162a";
    let colors: Vec<&'static str> = PALETTE
        .iter()
        .copied()
        .filter(|c| *c != ERROR_RED)
        .collect();
    // FNV-1a: stable across builds and platforms, unlike the std hasher
    let mut h: u32 = 0x811c_9dc5;
    for b in service.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    colors[h as usize % colors.len()]
}

/// A search result as the scatter plot needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Dot {
    /// Start, Unix seconds.
    pub t: f64,
    /// Duration, seconds.
    pub duration: f64,
    pub spans: u64,
    pub error: bool,
}

/// The scatter plot's geometry: dot positions in a `0..1000 x 0..100` plot (y grows
/// downwards), and the axis labels as `(percent along the axis, label)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Scatter {
    /// `(x, y, radius in px)` per input dot, in input order.
    pub points: Vec<(f64, f64, f64)>,
    /// x labels, percent from the left.
    pub x_ticks: Vec<(f64, String)>,
    /// y labels (durations, seconds), percent from the top.
    pub y_ticks: Vec<(f64, f64)>,
}

pub const SCATTER_W: f64 = 1000.0;
pub const SCATTER_H: f64 = 100.0;

/// Lays out the scatter plot: x from the earliest to the latest start (widened by 5% a side,
/// and to at least a second), y from 0 to the longest duration rounded up to a tick; dots are
/// larger for traces with more spans.
pub fn scatter(dots: &[Dot]) -> Scatter {
    let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
    let (mut lo, mut hi) = dots
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), d| {
            (l.min(finite(d.t)), h.max(finite(d.t)))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(0.5);
    let (lo, hi) = (lo - pad, hi + pad);
    let max_dur = dots.iter().map(|d| finite(d.duration)).fold(0.0, f64::max);
    let ticks = value_ticks(0.0, if max_dur > 0.0 { max_dur } else { 1e-3 }, 4);
    let top = ticks
        .last()
        .copied()
        .unwrap_or(max_dur)
        .max(max_dur)
        .max(1e-9);
    let max_spans = dots.iter().map(|d| d.spans).max().unwrap_or(1).max(1) as f64;
    let points = dots
        .iter()
        .map(|d| {
            let x = (finite(d.t) - lo) / (hi - lo) * SCATTER_W;
            let y = SCATTER_H - finite(d.duration).max(0.0) / top * SCATTER_H;
            // area grows with the span count: radius 3..9 px
            let r = 3.0 + 6.0 * ((d.spans.max(1) as f64).sqrt() / max_spans.sqrt());
            (x, y, r)
        })
        .collect();
    let span = hi - lo;
    let x_ticks = time_ticks(lo, hi, 6)
        .into_iter()
        .map(|t| ((t - lo) / span * 100.0, time_label(t, span)))
        .collect();
    let y_ticks = ticks
        .into_iter()
        .map(|v| (100.0 - v / top * 100.0, v))
        .collect();
    Scatter {
        points,
        x_ticks,
        y_ticks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span<'a>(id: &'a str, parent: Option<&'a str>, start: u64, end: u64) -> SpanRef<'a> {
        SpanRef {
            id,
            parent,
            start,
            end,
        }
    }

    /// `(id, depth)` of each row in display order.
    fn shape(spans: &[SpanRef<'_>], nodes: &[Node]) -> Vec<(String, usize)> {
        nodes
            .iter()
            .map(|n| (spans[n.index].id.to_string(), n.depth))
            .collect()
    }

    fn rows(v: &[(&str, usize)]) -> Vec<(String, usize)> {
        v.iter().map(|(s, d)| (s.to_string(), *d)).collect()
    }

    #[test]
    fn unordered_input_comes_out_depth_first_by_start_time() {
        let spans = [
            span("c2", Some("b"), 40, 50),
            span("b", Some("a"), 10, 60),
            span("c1", Some("b"), 20, 30),
            span("a", None, 0, 100),
            span("d", Some("a"), 70, 90),
        ];
        let nodes = build_tree(&spans);
        assert_eq!(
            shape(&spans, &nodes),
            rows(&[("a", 0), ("b", 1), ("c1", 2), ("c2", 2), ("d", 1)])
        );
        let a = &nodes[0];
        assert_eq!(
            (a.children, a.descendants, a.orphan, a.skewed),
            (2, 4, false, false)
        );
        let b = &nodes[1];
        assert_eq!((b.children, b.descendants), (2, 2));
        assert_eq!((nodes[4].children, nodes[4].descendants), (0, 0));
        assert_eq!(depth_of(&nodes), 3);
    }

    #[test]
    fn spans_with_missing_parents_go_to_the_root_level() {
        let spans = [
            span("x", Some("gone"), 5, 8),
            span("root", None, 0, 10),
            span("y", Some("x"), 6, 7),
            span("z", Some("also-gone"), 1, 2),
        ];
        let nodes = build_tree(&spans);
        // roots by start time; each orphan keeps its own subtree
        assert_eq!(
            shape(&spans, &nodes),
            rows(&[("root", 0), ("z", 0), ("x", 0), ("y", 1)])
        );
        let orphans: Vec<bool> = nodes.iter().map(|n| n.orphan).collect();
        assert_eq!(orphans, [false, true, true, false]);
        // a trace with no root at all still shows every span
        let headless = [span("p", Some("q"), 3, 4), span("q2", Some("q"), 1, 2)];
        let nodes = build_tree(&headless);
        assert_eq!(shape(&headless, &nodes), rows(&[("q2", 0), ("p", 0)]));
    }

    #[test]
    fn clock_skewed_children_stay_under_their_parent() {
        // the child's clock is 50 ns behind: it starts before its parent and is still its child
        let spans = [
            span("server", Some("client"), 50, 200),
            span("client", None, 100, 180),
            span("late", Some("client"), 170, 400),
        ];
        let nodes = build_tree(&spans);
        assert_eq!(
            shape(&spans, &nodes),
            rows(&[("client", 0), ("server", 1), ("late", 1)])
        );
        let skew: Vec<bool> = nodes.iter().map(|n| n.skewed).collect();
        assert_eq!(skew, [false, true, true]);
        // the bars stay on the axis that spans every span
        let (t0, t1) = (50, 400);
        for s in &spans {
            let (left, width) = bar(s.start, s.end, t0, t1 - t0);
            assert!(left >= 0.0 && width >= 0.0 && left + width <= 100.0 + 1e-9);
        }
        assert_eq!(bar(50, 200, 50, 350), (0.0, 150.0 / 350.0 * 100.0));
        // a span outside the axis (or ending before it starts) is clamped, never negative
        assert_eq!(bar(10, 20, 50, 350), (0.0, 0.0));
        assert_eq!(bar(300, 100, 50, 350).1, 0.0);
        assert_eq!(bar(0, 0, 0, 0), (0.0, 100.0));
    }

    #[test]
    fn cycles_and_duplicates_never_lose_or_repeat_a_span() {
        let spans = [
            span("a", Some("b"), 10, 20),
            span("b", Some("a"), 5, 30),
            span("self", Some("self"), 1, 2),
            span("dup", None, 3, 4),
            span("dup", None, 3, 4),
            span("kid", Some("dup"), 3, 4),
        ];
        let nodes = build_tree(&spans);
        let mut seen: Vec<usize> = nodes.iter().map(|n| n.index).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..spans.len()).collect::<Vec<_>>());
        assert_eq!(
            shape(&spans, &nodes),
            rows(&[
                ("self", 0),
                ("dup", 0),
                ("kid", 1),
                ("dup", 0),
                ("b", 0),
                ("a", 1)
            ])
        );
        // the cycle is broken at its earliest span, shown as an orphan
        assert!(nodes[4].orphan && nodes[0].orphan);
    }

    #[test]
    fn deep_traces_do_not_overflow_the_stack() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("s{i}")).collect();
        let spans: Vec<SpanRef<'_>> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                span(
                    id,
                    i.checked_sub(1).map(|p| ids[p].as_str()),
                    i as u64,
                    1_000_000,
                )
            })
            .collect();
        let nodes = build_tree(&spans);
        assert_eq!(nodes.len(), 20_000);
        assert_eq!(nodes[0].descendants, 19_999);
        assert_eq!(depth_of(&nodes), 20_000);
    }

    #[test]
    fn collapsing_hides_the_subtree_only() {
        let spans = [
            span("a", None, 0, 100),
            span("b", Some("a"), 10, 60),
            span("c", Some("b"), 20, 30),
            span("d", Some("a"), 70, 90),
            span("e", None, 95, 99),
        ];
        let nodes = build_tree(&spans);
        let all = visible_rows(&nodes, |_| false);
        assert_eq!(all, [0, 1, 2, 3, 4]);
        // collapse b (input index 1): c is hidden, d and e stay
        assert_eq!(visible_rows(&nodes, |i| i == 1), [0, 1, 3, 4]);
        // collapse a: only the roots
        assert_eq!(visible_rows(&nodes, |i| i == 0 || i == 1), [0, 4]);
        // collapsing a leaf hides nothing
        assert_eq!(visible_rows(&nodes, |i| i == 2), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn axis_ticks_are_evenly_spaced_round_durations() {
        let (ticks, spacing) = axis_ticks(47_000_000); // 47 ms
        let secs: Vec<f64> = ticks.iter().map(|t| t.1).collect();
        assert_eq!(secs, [0.0, 0.01, 0.02, 0.03, 0.04]);
        assert!((spacing - 0.01 / 0.047 * 100.0).abs() < 1e-9);
        assert!(ticks.iter().all(|t| t.0 <= 100.0));
        assert_eq!(axis_ticks(0), (vec![(0.0, 0.0)], 100.0));
        assert_eq!(offset_pct(150, 100, 200), 25.0);
    }

    #[test]
    fn services_keep_a_colour_that_is_not_the_error_red() {
        assert_eq!(service_color("checkout"), service_color("checkout"));
        for name in ["a", "b", "checkout", "payments", "frontend", "", "服务"] {
            assert_ne!(service_color(name), "#c4162a");
        }
    }

    #[test]
    fn scatter_fits_every_dot_in_the_plot() {
        let dots = [
            Dot {
                t: 1000.0,
                duration: 0.2,
                spans: 1,
                error: false,
            },
            Dot {
                t: 1060.0,
                duration: 0.05,
                spans: 100,
                error: true,
            },
        ];
        let s = scatter(&dots);
        for &(x, y, r) in &s.points {
            assert!((0.0..=SCATTER_W).contains(&x), "{x}");
            assert!((0.0..=SCATTER_H).contains(&y), "{y}");
            assert!((3.0..=9.0).contains(&r), "{r}");
        }
        // the longest trace is at the top tick (0.2 s is a round tick), the later one right
        assert_eq!(s.points[0].1, 0.0);
        assert!(s.points[1].0 > s.points[0].0);
        assert!(s.points[1].2 > s.points[0].2);
        assert_eq!(s.y_ticks.first().map(|t| t.0), Some(100.0));
        assert!(!s.x_ticks.is_empty());
        // one dot, or none, still lays out
        assert_eq!(scatter(&dots[..1]).points.len(), 1);
        assert!(scatter(&[]).points.is_empty());
    }
}
