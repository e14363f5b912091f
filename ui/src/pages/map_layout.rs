//! Layered ("Sugiyama") layout of the service map, computed in Rust so the server-rendered
//! SVG and the hydrated one agree exactly.
//!
//! 1. Cycle breaking: a depth-first search from the nodes without callers (then from any node
//!    still unvisited) reverses its back edges, so the rest of the work sees a DAG.
//! 2. Layering: longest path from the callers: a node's layer is one more than its deepest
//!    caller's, so every edge points from a lower layer to a higher one.
//! 3. Edges spanning several layers get a placeholder ("dummy") in each layer they cross, so
//!    they are routed through free slots instead of through nodes.
//! 4. Crossing reduction: barycenter sweeps down and up the layers, keeping the order with the
//!    fewest crossings seen.
//! 5. Coordinates: layers are columns left to right (callers left, callees right), slots in a
//!    column are evenly spaced and the column is centred; the drawing grows with the graph.
//!
//! Nodes never overlap because each slot holds one node and slots are a full node apart.

use std::collections::BTreeSet;

/// Sizes of the drawing, in SVG user units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dims {
    pub node_w: f64,
    pub node_h: f64,
    /// Horizontal space between two columns (where edges and their labels go).
    pub col_gap: f64,
    /// Vertical space between two slots of a column.
    pub row_gap: f64,
    /// Margin around the drawing.
    pub margin: f64,
}

impl Default for Dims {
    fn default() -> Self {
        Dims {
            node_w: 170.0,
            node_h: 50.0,
            col_gap: 150.0,
            row_gap: 22.0,
            margin: 24.0,
        }
    }
}

/// Where a node is drawn: its layer (column) and the centre of its box.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodePos {
    pub layer: usize,
    pub x: f64,
    pub y: f64,
}

/// How an edge is drawn: the points from the caller's box to the callee's box (through the
/// slots of the layers it crosses), in the edge's own direction.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgePath {
    pub points: Vec<(f64, f64)>,
    /// The edge closes a cycle: it was reversed for layering and runs right to left.
    pub reversed: bool,
    /// A call of a node to itself (drawn as a loop by the caller; `points` is empty).
    pub self_loop: bool,
}

/// A computed layout: one [`NodePos`] per input node and one [`EdgePath`] per input edge,
/// in input order, and the size of the drawing.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub nodes: Vec<NodePos>,
    pub edges: Vec<EdgePath>,
    pub width: f64,
    pub height: f64,
    pub layers: usize,
}

/// Lays out `n` nodes and `edges` (pairs of node indices, caller first). Edges naming a node
/// `>= n` are ignored (given no points).
pub fn layout(n: usize, edges: &[(usize, usize)], dims: &Dims) -> Layout {
    let valid = |&(a, b): &(usize, usize)| a < n && b < n;
    // 1. the DAG: distinct non-loop edges, back edges reversed
    let reversed = back_edges(n, edges);
    let mut dag: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (i, e) in edges.iter().enumerate() {
        if !valid(e) || e.0 == e.1 {
            continue;
        }
        dag.insert(if reversed[i] { (e.1, e.0) } else { *e });
    }
    // 2. longest-path layering in topological order (Kahn)
    let layer = longest_path_layers(n, &dag);
    let layers = layer.iter().copied().max().map_or(0, |m| m + 1);

    // 3. slots: real nodes, then a dummy per crossed layer of every long DAG edge
    let mut slot_layer: Vec<usize> = layer.clone();
    // chains[(a, b)] = slots from a to b, dummies included
    let mut chains: Vec<((usize, usize), Vec<usize>)> = Vec::new();
    for &(a, b) in &dag {
        let mut chain = vec![a];
        for l in layer[a] + 1..layer[b] {
            slot_layer.push(l);
            chain.push(slot_layer.len() - 1);
        }
        chain.push(b);
        chains.push(((a, b), chain));
    }
    let slots = slot_layer.len();
    // links between adjacent layers, as (upper slot, lower slot)
    let mut links: Vec<(usize, usize)> = Vec::new();
    for (_, chain) in &chains {
        links.extend(chain.windows(2).map(|w| (w[0], w[1])));
    }
    let mut order: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for (s, &l) in slot_layer.iter().enumerate() {
        order[l].push(s);
    }

    // 4. crossing reduction
    let order = reduce_crossings(order, &links, &slot_layer);

    // 5. coordinates
    let widest = order.iter().map(Vec::len).max().unwrap_or(0);
    let row = dims.node_h + dims.row_gap;
    let col = dims.node_w + dims.col_gap;
    let mut pos = vec![(0.0, 0.0); slots];
    for (l, members) in order.iter().enumerate() {
        let top = dims.margin + (widest - members.len()) as f64 * row / 2.0;
        for (i, &s) in members.iter().enumerate() {
            pos[s] = (
                dims.margin + l as f64 * col + dims.node_w / 2.0,
                top + i as f64 * row + dims.node_h / 2.0,
            );
        }
    }
    let nodes = (0..n)
        .map(|v| NodePos {
            layer: layer[v],
            x: pos[v].0,
            y: pos[v].1,
        })
        .collect();

    let half = dims.node_w / 2.0;
    let edge_paths = edges
        .iter()
        .enumerate()
        .map(|(i, e)| {
            if !valid(e) {
                return EdgePath {
                    points: Vec::new(),
                    reversed: false,
                    self_loop: false,
                };
            }
            if e.0 == e.1 {
                return EdgePath {
                    points: Vec::new(),
                    reversed: false,
                    self_loop: true,
                };
            }
            let key = if reversed[i] { (e.1, e.0) } else { *e };
            let chain = chains
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, c)| c.as_slice())
                .unwrap_or(&[]);
            // a reversed edge runs a little below the straight one between the same columns,
            // so a pair of calls both ways stays two lines
            let dy = if reversed[i] { dims.node_h / 4.0 } else { 0.0 };
            let mut points: Vec<(f64, f64)> = Vec::with_capacity(chain.len());
            for (k, &s) in chain.iter().enumerate() {
                let (x, y) = pos[s];
                if k == 0 {
                    points.push((x + half, y + dy));
                } else if k == chain.len() - 1 {
                    points.push((x - half, y + dy));
                } else {
                    // through the dummy's slot: in at its left, out at its right
                    points.push((x - half, y + dy));
                    points.push((x + half, y + dy));
                }
            }
            if reversed[i] {
                points.reverse();
            }
            EdgePath {
                points,
                reversed: reversed[i],
                self_loop: false,
            }
        })
        .collect();

    let width = if layers == 0 {
        2.0 * dims.margin
    } else {
        2.0 * dims.margin + layers as f64 * col - dims.col_gap
    };
    let height = if widest == 0 {
        2.0 * dims.margin
    } else {
        2.0 * dims.margin + widest as f64 * row - dims.row_gap
    };
    Layout {
        nodes,
        edges: edge_paths,
        width,
        height,
        layers,
    }
}

/// Which edges a depth-first search finds going back to a node on its path (they close a
/// cycle). Roots are tried in order: first nodes nobody calls, then the rest, so the natural
/// entry points (a gateway, `user`) come first and the cycle edges reversed are the ones back
/// towards them.
fn back_edges(n: usize, edges: &[(usize, usize)]) -> Vec<bool> {
    let mut out_edges: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
    let mut has_caller = vec![false; n];
    for (i, &(a, b)) in edges.iter().enumerate() {
        if a < n && b < n && a != b {
            out_edges[a].push((b, i));
            has_caller[b] = true;
        }
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; n];
    let mut back = vec![false; edges.len()];
    let roots = (0..n)
        .filter(|&v| !has_caller[v])
        .chain((0..n).filter(|&v| has_caller[v]));
    for root in roots {
        if mark[root] != Mark::New {
            continue;
        }
        // iterative DFS: (node, index of its next out edge); no recursion depth limit
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        mark[root] = Mark::OnPath;
        while let Some(&mut (v, ref mut next)) = stack.last_mut() {
            if let Some(&(w, i)) = out_edges[v].get(*next) {
                *next += 1;
                match mark[w] {
                    Mark::New => {
                        mark[w] = Mark::OnPath;
                        stack.push((w, 0));
                    }
                    Mark::OnPath => back[i] = true,
                    Mark::Done => {}
                }
            } else {
                mark[v] = Mark::Done;
                stack.pop();
            }
        }
    }
    back
}

/// The layer of each node: 0 for nodes without callers, else one more than the deepest
/// caller's. `dag` must be acyclic (then every node is reached in Kahn's order).
fn longest_path_layers(n: usize, dag: &BTreeSet<(usize, usize)>) -> Vec<usize> {
    let mut indegree = vec![0usize; n];
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in dag {
        indegree[b] += 1;
        succ[a].push(b);
    }
    let mut layer = vec![0usize; n];
    let mut ready: Vec<usize> = (0..n).filter(|&v| indegree[v] == 0).collect();
    while let Some(v) = ready.pop() {
        for &w in &succ[v] {
            layer[w] = layer[w].max(layer[v] + 1);
            indegree[w] -= 1;
            if indegree[w] == 0 {
                ready.push(w);
            }
        }
    }
    layer
}

/// Reorders each layer by barycenter sweeps (down, then up, repeatedly) and returns the
/// order with the fewest crossings met.
fn reduce_crossings(
    mut order: Vec<Vec<usize>>,
    links: &[(usize, usize)],
    slot_layer: &[usize],
) -> Vec<Vec<usize>> {
    let slots = slot_layer.len();
    const SWEEPS: usize = 12;
    let mut up: Vec<Vec<usize>> = vec![Vec::new(); slots];
    let mut down: Vec<Vec<usize>> = vec![Vec::new(); slots];
    for &(a, b) in links {
        down[a].push(b);
        up[b].push(a);
    }
    let mut index = vec![0usize; slots];
    let reindex = |order: &[Vec<usize>], index: &mut [usize]| {
        for layer in order {
            for (i, &s) in layer.iter().enumerate() {
                index[s] = i;
            }
        }
    };
    reindex(&order, &mut index);
    let mut best = order.clone();
    let mut best_crossings = crossings(links, slot_layer, &index);
    for sweep in 0..SWEEPS {
        let downward = sweep % 2 == 0;
        let layer_ids: Vec<usize> = if downward {
            (1..order.len()).collect()
        } else {
            (0..order.len().saturating_sub(1)).rev().collect()
        };
        for l in layer_ids {
            let neighbours = if downward { &up } else { &down };
            // a slot without neighbours on that side keeps its place as its barycenter
            let mut keyed: Vec<(f64, usize, usize)> = order[l]
                .iter()
                .enumerate()
                .map(|(i, &s)| {
                    let ns = &neighbours[s];
                    let bary = if ns.is_empty() {
                        i as f64
                    } else {
                        ns.iter().map(|&m| index[m] as f64).sum::<f64>() / ns.len() as f64
                    };
                    (bary, i, s)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            order[l] = keyed.into_iter().map(|k| k.2).collect();
            for (i, &s) in order[l].iter().enumerate() {
                index[s] = i;
            }
        }
        let c = crossings(links, slot_layer, &index);
        if c < best_crossings {
            best_crossings = c;
            best = order.clone();
        }
    }
    best
}

/// Crossings between adjacent layers: pairs of links of the same gap whose ends are in
/// opposite orders. Links always join a layer to the next, so their upper ends' layer names
/// the gap.
fn crossings(links: &[(usize, usize)], slot_layer: &[usize], index: &[usize]) -> usize {
    let mut total = 0;
    for (i, &(a1, b1)) in links.iter().enumerate() {
        for &(a2, b2) in &links[i + 1..] {
            if slot_layer[a1] == slot_layer[a2]
                && ((index[a1] < index[a2] && index[b1] > index[b2])
                    || (index[a1] > index[a2] && index[b1] < index[b2]))
            {
                total += 1;
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random graph shaped like a microservice system: a gateway,
    /// a few tiers of services, calls mostly downwards plus some back calls (cycles).
    fn generated(n: usize, seed: u64) -> Vec<(usize, usize)> {
        let mut x = seed;
        let mut rnd = move |m: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m as u64) as usize
        };
        let mut edges = Vec::new();
        for v in 1..n {
            // every service has a caller before it, and some a second one
            edges.push((rnd(v), v));
            if rnd(3) == 0 {
                edges.push((rnd(v), v));
            }
        }
        for _ in 0..n / 8 {
            let a = rnd(n);
            let b = rnd(n);
            edges.push((a, b)); // anything: loops, back calls, duplicates
        }
        edges
    }

    fn overlaps(a: &NodePos, b: &NodePos, d: &Dims) -> bool {
        (a.x - b.x).abs() < d.node_w && (a.y - b.y).abs() < d.node_h
    }

    #[test]
    fn forty_services_never_overlap_and_fit_the_drawing() {
        let d = Dims::default();
        for seed in [1, 7, 42, 1234, 99_991] {
            let edges = generated(40, seed);
            let l = layout(40, &edges, &d);
            assert_eq!(l.nodes.len(), 40);
            for i in 0..40 {
                let a = &l.nodes[i];
                assert!(a.x - d.node_w / 2.0 >= 0.0 && a.x + d.node_w / 2.0 <= l.width);
                assert!(a.y - d.node_h / 2.0 >= 0.0 && a.y + d.node_h / 2.0 <= l.height);
                for j in i + 1..40 {
                    assert!(
                        !overlaps(a, &l.nodes[j], &d),
                        "seed {seed}: nodes {i} and {j} overlap: {a:?} {:?}",
                        l.nodes[j]
                    );
                }
            }
        }
    }

    #[test]
    fn edges_go_between_layers_in_order() {
        let d = Dims::default();
        let edges = generated(40, 42);
        let l = layout(40, &edges, &d);
        for (i, &(a, b)) in edges.iter().enumerate() {
            let p = &l.edges[i];
            if a == b {
                assert!(p.self_loop && p.points.is_empty());
                continue;
            }
            let (la, lb) = (l.nodes[a].layer, l.nodes[b].layer);
            if p.reversed {
                assert!(
                    la > lb,
                    "reversed edge {a}->{b} must run back: {la} -> {lb}"
                );
            } else {
                assert!(la < lb, "edge {a}->{b} must run forward: {la} -> {lb}");
            }
            // the path starts at the caller's box and ends at the callee's, and moves
            // monotonically from column to column
            let first = p.points[0];
            let last = p.points[p.points.len() - 1];
            assert!((first.0 - l.nodes[a].x).abs() <= d.node_w / 2.0 + 1e-9);
            assert!((last.0 - l.nodes[b].x).abs() <= d.node_w / 2.0 + 1e-9);
            let xs: Vec<f64> = p.points.iter().map(|q| q.0).collect();
            let monotonic = if p.reversed {
                xs.windows(2).all(|w| w[0] >= w[1])
            } else {
                xs.windows(2).all(|w| w[0] <= w[1])
            };
            assert!(monotonic, "edge {a}->{b}: {xs:?}");
        }
    }

    #[test]
    fn long_edges_pass_through_free_slots_not_nodes() {
        // 0 -> 1 -> 2 -> 3 and 0 -> 3 skipping two layers
        let d = Dims::default();
        let edges = [(0, 1), (1, 2), (2, 3), (0, 3)];
        let l = layout(4, &edges, &d);
        assert_eq!(
            l.nodes.iter().map(|n| n.layer).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        let long = &l.edges[3];
        // start, in and out of each of the two dummies, end
        assert_eq!(long.points.len(), 6);
        for &(x, y) in &long.points[1..5] {
            for n in &l.nodes[1..3] {
                let inside =
                    (x - n.x).abs() < d.node_w / 2.0 - 1e-9 && (y - n.y).abs() < d.node_h / 2.0;
                assert!(!inside, "point {x},{y} inside node {n:?}");
            }
        }
    }

    #[test]
    fn cycles_are_broken_and_every_node_is_placed() {
        let d = Dims::default();
        // a -> b -> c -> a, and c -> c, and a two-way pair d <-> e
        let edges = [(0, 1), (1, 2), (2, 0), (2, 2), (3, 4), (4, 3)];
        let l = layout(5, &edges, &d);
        assert_eq!(l.edges.iter().filter(|e| e.reversed).count(), 2);
        assert!(l.edges[3].self_loop);
        let layers: BTreeSet<usize> = l.nodes[..3].iter().map(|n| n.layer).collect();
        assert_eq!(layers.len(), 3, "the 3-cycle is spread over 3 layers");
        assert_ne!(l.nodes[3].layer, l.nodes[4].layer);
        for i in 0..5 {
            for j in i + 1..5 {
                assert!(!overlaps(&l.nodes[i], &l.nodes[j], &d));
            }
        }
    }

    #[test]
    fn crossings_are_reduced() {
        // two callers each calling "their" two callees, listed so the input order crosses
        let edges = [(0, 3), (0, 5), (1, 2), (1, 4)];
        let l = layout(6, &edges, &Dims::default());
        let y = |v: usize| l.nodes[v].y;
        // 0's callees are both above or both below 1's
        let zero_above = y(0) < y(1);
        assert_eq!(y(3).max(y(5)) < y(2).min(y(4)), zero_above);
    }

    #[test]
    fn empty_and_bad_input() {
        let l = layout(0, &[], &Dims::default());
        assert_eq!((l.nodes.len(), l.layers), (0, 0));
        assert!(l.width > 0.0 && l.height > 0.0);
        let l = layout(2, &[(0, 7)], &Dims::default());
        assert!(l.edges[0].points.is_empty());
        assert_eq!(l.nodes.len(), 2);
    }
}
