//! The inverted label index: interned label strings, sorted postings lists per label pair,
//! and the set algebra that turns label matchers into series ids.
//!
//! [`postings_for_matchers`] follows Prometheus's `PostingsForMatchers`: matchers that do not
//! match the empty string select the union of the postings of their matching values and are
//! intersected; matchers that do match the empty string (`a=""`, `a!="x"`, `a!~"x"`,
//! `a=~"x|"`) also select series lacking the label, so they subtract the postings of the
//! values they reject; with only such matchers the start set is every series.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::contract::{LabelMatcher, MatchOp};
use crate::model::{Label, Labels};

/// A fast non-cryptographic hasher (the Fx/rustc hash). Series keys are chosen by clients,
/// but a collision only costs a label comparison, never correctness.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(5) ^ w).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub type FxBuild = BuildHasherDefault<FxHasher>;
pub type FxHashMap<K, V> = HashMap<K, V, FxBuild>;

/// Hash of a label set, independent of how its strings are stored: the name and value
/// lengths, then every name and value byte as one stream. A label set whose text is
/// contiguous (a [`crate::model::RawMetricBatch`] series) hashes its text in one pass with
/// [`hash_label_run`], to the same value.
pub fn hash_labels<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut lens = FxHasher::default();
    let mut text = TextHasher::default();
    for (n, v) in labels {
        lens.add(((n.len() as u64) << 32) | v.len() as u64);
        text.write(n.as_bytes());
        text.write(v.as_bytes());
    }
    text.finish(lens.hash)
}

/// [`hash_labels`] of `pairs` when `run` is their names and values concatenated.
pub fn hash_label_run<'a>(run: &str, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut lens = FxHasher::default();
    for (n, v) in pairs {
        lens.add(((n.len() as u64) << 32) | v.len() as u64);
    }
    let mut text = TextHasher::default();
    text.write(run.as_bytes());
    text.finish(lens.hash)
}

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

#[inline]
fn le64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

/// A streaming wyhash-style hasher over 16-byte blocks: one 64x64->128 multiply per block,
/// and the same result however the input is split across `write` calls.
#[derive(Default)]
struct TextHasher {
    acc: u64,
    buf: [u8; 16],
    fill: usize,
    total: u64,
}

const TEXT_K1: u64 = 0xa076_1d64_78bd_642f;
const TEXT_K2: u64 = 0xe703_7ed1_a0b4_28db;

impl TextHasher {
    #[inline]
    fn block(&mut self, b: &[u8]) {
        self.acc = fold_mul(le64(b) ^ TEXT_K1, le64(&b[8..]) ^ self.acc ^ TEXT_K2);
    }

    #[inline]
    fn write(&mut self, mut b: &[u8]) {
        self.total += b.len() as u64;
        if self.fill > 0 {
            let take = (16 - self.fill).min(b.len());
            self.buf[self.fill..self.fill + take].copy_from_slice(&b[..take]);
            self.fill += take;
            b = &b[take..];
            if self.fill < 16 {
                return;
            }
            let buf = self.buf;
            self.block(&buf);
            self.fill = 0;
        }
        let mut blocks = b.chunks_exact(16);
        for c in &mut blocks {
            self.block(c);
        }
        let rest = blocks.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.fill = rest.len();
    }

    fn finish(mut self, lens: u64) -> u64 {
        self.buf[self.fill..].fill(0);
        let buf = self.buf;
        self.block(&buf);
        let x = fold_mul(self.acc ^ self.total ^ TEXT_K2, lens ^ TEXT_K1);
        // a final mix spreads the low bits hashbrown uses for bucket selection
        (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9)
    }
}

/// A series' label set as one buffer: `u32 LE count`, then `count x (u32 LE name length,
/// u32 LE value length)`, then every name and value concatenated. Comparing an incoming
/// label set against it touches one allocation instead of a symbol per string.
pub fn series_key<'a>(
    pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)> + Clone,
) -> Box<[u8]> {
    let text: usize = pairs.clone().map(|(n, v)| n.len() + v.len()).sum();
    let mut key = Vec::with_capacity(4 + 8 * pairs.len() + text);
    key.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (n, v) in pairs.clone() {
        key.extend_from_slice(&(n.len() as u32).to_le_bytes());
        key.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (n, v) in pairs {
        key.extend_from_slice(n.as_bytes());
        key.extend_from_slice(v.as_bytes());
    }
    key.into_boxed_slice()
}

/// Whether `key` (from [`series_key`]) holds exactly `pairs`; `run`, when given, is the
/// pairs' names and values concatenated, compared in one go.
pub fn series_key_equals<'a>(
    key: &[u8],
    pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)> + Clone,
    run: Option<&str>,
) -> bool {
    let u32_at = |i: usize| {
        key.get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = pairs.len();
    if u32_at(0) != Some(count) {
        return false;
    }
    let text_start = 4 + 8 * count;
    let mut text_len = 0;
    for (i, (n, v)) in pairs.clone().enumerate() {
        if u32_at(4 + 8 * i) != Some(n.len()) || u32_at(8 + 8 * i) != Some(v.len()) {
            return false;
        }
        text_len += n.len() + v.len();
    }
    let Some(text) = key.get(text_start..) else {
        return false;
    };
    if text.len() != text_len {
        return false;
    }
    match run {
        Some(run) => run.as_bytes() == text,
        None => {
            let mut at = 0;
            pairs.into_iter().all(|(n, v)| {
                let ok = &text[at..at + n.len()] == n.as_bytes()
                    && &text[at + n.len()..at + n.len() + v.len()] == v.as_bytes();
                at += n.len() + v.len();
                ok
            })
        }
    }
}

/// Interned strings: each distinct label name or value is stored once and referred to by a
/// `u32`, which is what keeps per-series memory small.
#[derive(Default, Debug)]
pub struct SymbolTable {
    ids: FxHashMap<Arc<str>, u32>,
    strings: Vec<Arc<str>>,
}

impl SymbolTable {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strings.len() as u32;
        let a: Arc<str> = Arc::from(s);
        self.strings.push(a.clone());
        self.ids.insert(a, id);
        id
    }

    /// The shared string for `id` (empty for an unknown id).
    pub fn get_arc(&self, id: u32) -> Arc<str> {
        self.strings
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }

    pub fn lookup(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    /// The string for `id`; empty for an unknown id (never produced by this table).
    pub fn get(&self, id: u32) -> &str {
        self.strings.get(id as usize).map(|s| &**s).unwrap_or("")
    }

    pub fn len(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }

    /// Approximate heap bytes, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.strings
            .iter()
            .map(|s| s.len() + 16 + 8 + 24)
            .sum::<usize>()
    }
}

/// A label set as interned `(name, value)` symbol pairs, sorted by name.
pub type SymLabels = Box<[(u32, u32)]>;

pub fn intern_labels(symbols: &mut SymbolTable, labels: &Labels) -> SymLabels {
    labels
        .iter()
        .map(|l| (symbols.intern(&l.name), symbols.intern(&l.value)))
        .collect()
}

pub fn resolve_labels(symbols: &SymbolTable, labels: &[(u32, u32)]) -> Labels {
    Labels::new(
        labels
            .iter()
            .map(|&(n, v)| Label::new(symbols.get(n), symbols.get(v)))
            .collect(),
    )
}

/// Whether interned `sym` equals `labels` without allocating.
pub fn labels_equal(symbols: &SymbolTable, sym: &[(u32, u32)], labels: &Labels) -> bool {
    labels_equal_pairs(
        symbols,
        sym,
        labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
    )
}

/// [`labels_equal`] over borrowed label pairs (sorted and unique, as in [`Labels`]).
pub fn labels_equal_pairs<'a>(
    symbols: &SymbolTable,
    sym: &[(u32, u32)],
    pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) -> bool {
    sym.len() == pairs.len()
        && sym
            .iter()
            .zip(pairs)
            .all(|(&(n, v), (name, value))| symbols.get(n) == name && symbols.get(v) == value)
}

/// Postings per label name and value, over series ids that are added in increasing order.
#[derive(Default, Debug)]
pub struct MemPostings {
    by_name: FxHashMap<u32, FxHashMap<u32, Vec<u32>>>,
    all: Vec<u32>,
}

impl MemPostings {
    /// Adds series `id`; ids must be added in increasing order so lists stay sorted.
    pub fn add(&mut self, id: u32, labels: &[(u32, u32)]) {
        for &(n, v) in labels {
            push_sorted(self.by_name.entry(n).or_default().entry(v).or_default(), id);
        }
        push_sorted(&mut self.all, id);
    }

    /// Removes the given series ids (sorted).
    pub fn remove(&mut self, ids: &[u32]) {
        if ids.is_empty() {
            return;
        }
        // binary search per element: lists are many and short, `ids` may be long
        let dead = |x: &u32| ids.binary_search(x).is_ok();
        for values in self.by_name.values_mut() {
            for list in values.values_mut() {
                list.retain(|x| !dead(x));
            }
            values.retain(|_, l| !l.is_empty());
        }
        self.by_name.retain(|_, v| !v.is_empty());
        self.all.retain(|x| !dead(x));
    }

    pub fn all(&self) -> &[u32] {
        &self.all
    }

    pub fn get(&self, name: u32, value: u32) -> &[u32] {
        self.by_name
            .get(&name)
            .and_then(|v| v.get(&value))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn values(&self, name: u32) -> impl Iterator<Item = (u32, &[u32])> {
        self.by_name
            .get(&name)
            .into_iter()
            .flat_map(|m| m.iter().map(|(v, l)| (*v, l.as_slice())))
    }

    pub fn names(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_name.keys().copied()
    }

    pub fn heap_bytes(&self) -> usize {
        let lists: usize = self
            .by_name
            .values()
            .map(|m| m.values().map(|l| l.capacity() * 4 + 40).sum::<usize>() + 48)
            .sum();
        lists + self.all.capacity() * 4
    }
}

fn push_sorted(list: &mut Vec<u32>, id: u32) {
    match list.last() {
        Some(&last) if last >= id => {
            if let Err(pos) = list.binary_search(&id) {
                list.insert(pos, id);
            }
        }
        _ => list.push(id),
    }
}

/// An index that [`postings_for_matchers`] can evaluate against.
pub trait IndexReader {
    fn symbols(&self) -> &SymbolTable;
    fn postings(&self) -> &MemPostings;
}

/// Sorted ids of the series matching every matcher.
pub fn postings_for_matchers(index: &impl IndexReader, matchers: &[LabelMatcher]) -> Vec<u32> {
    let symbols = index.symbols();
    let postings = index.postings();
    let mut result: Option<Vec<u32>> = None;
    let mut to_subtract: Vec<Vec<u32>> = Vec::new();
    for m in matchers {
        let name = symbols.lookup(&m.name);
        if m.matches_empty() {
            // selects series without the label too: remove those whose value is rejected
            let Some(name) = name else { continue };
            let rejected: Vec<&[u32]> = postings
                .values(name)
                .filter(|&(v, _)| !m.matches(symbols.get(v)))
                .map(|(_, l)| l)
                .collect();
            if !rejected.is_empty() {
                to_subtract.push(union(&rejected));
            }
        } else {
            let selected = match (name, m.op) {
                (None, _) => Vec::new(),
                (Some(n), MatchOp::Equal) => match symbols.lookup(&m.value) {
                    Some(v) => postings.get(n, v).to_vec(),
                    None => Vec::new(),
                },
                (Some(n), _) => {
                    let lists: Vec<&[u32]> = postings
                        .values(n)
                        .filter(|&(v, _)| m.matches(symbols.get(v)))
                        .map(|(_, l)| l)
                        .collect();
                    union(&lists)
                }
            };
            result = Some(match result {
                None => selected,
                Some(r) => intersect(&r, &selected),
            });
            if result.as_ref().is_some_and(Vec::is_empty) {
                return Vec::new();
            }
        }
    }
    let mut out = result.unwrap_or_else(|| postings.all().to_vec());
    for s in &to_subtract {
        out = subtract(&out, s);
    }
    out
}

/// Intersection of two sorted lists.
pub fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Sorted, deduplicated union of sorted lists.
pub fn union(lists: &[&[u32]]) -> Vec<u32> {
    match lists {
        [] => Vec::new(),
        [one] => one.to_vec(),
        _ => {
            let mut out: Vec<u32> = Vec::with_capacity(lists.iter().map(|l| l.len()).sum());
            for l in lists {
                out.extend_from_slice(l);
            }
            out.sort_unstable();
            out.dedup();
            out
        }
    }
}

/// Elements of sorted `a` not in sorted `b`.
pub fn subtract(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len());
    let mut j = 0;
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j >= b.len() || b[j] != x {
            out.push(x);
        }
    }
    out
}

/// A self-contained index over a fixed set of series: used by blocks, and by tests.
#[derive(Default, Debug)]
pub struct MemIndex {
    pub symbols: SymbolTable,
    pub postings: MemPostings,
}

impl IndexReader for MemIndex {
    fn symbols(&self) -> &SymbolTable {
        &self.symbols
    }
    fn postings(&self) -> &MemPostings {
        &self.postings
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn index() -> (MemIndex, Vec<Labels>) {
        let sets = vec![
            Labels::from_pairs([("__name__", "up"), ("job", "api"), ("env", "prod")]),
            Labels::from_pairs([("__name__", "up"), ("job", "db")]),
            Labels::from_pairs([("__name__", "up"), ("job", "api"), ("env", "dev")]),
            Labels::from_pairs([("__name__", "http_requests_total"), ("job", "api")]),
        ];
        let mut idx = MemIndex::default();
        for (i, l) in sets.iter().enumerate() {
            let sym = intern_labels(&mut idx.symbols, l);
            idx.postings.add(i as u32, &sym);
        }
        (idx, sets)
    }

    fn q(idx: &MemIndex, ms: &[(&str, MatchOp, &str)]) -> Vec<u32> {
        let ms: Vec<LabelMatcher> = ms
            .iter()
            .map(|(n, op, v)| LabelMatcher::new(*n, *op, *v).unwrap())
            .collect();
        postings_for_matchers(idx, &ms)
    }

    #[test]
    fn all_four_matcher_kinds() {
        let (idx, _) = index();
        use MatchOp::*;
        assert_eq!(q(&idx, &[("__name__", Equal, "up")]), vec![0, 1, 2]);
        assert_eq!(
            q(&idx, &[("__name__", Equal, "up"), ("job", NotEqual, "api")]),
            vec![1]
        );
        assert_eq!(q(&idx, &[("job", RegexMatch, "a.*|d.")]), vec![0, 1, 2, 3]);
        assert_eq!(
            q(
                &idx,
                &[("__name__", Equal, "up"), ("job", RegexNoMatch, "a.*")]
            ),
            vec![1]
        );
        assert_eq!(q(&idx, &[("__name__", Equal, "nope")]), Vec::<u32>::new());
        assert_eq!(q(&idx, &[("nolabel", RegexMatch, ".+")]), Vec::<u32>::new());
    }

    #[test]
    fn matchers_matching_the_empty_string() {
        let (idx, _) = index();
        use MatchOp::*;
        // env="" selects series without env
        assert_eq!(q(&idx, &[("env", Equal, "")]), vec![1, 3]);
        // env!="prod" includes series lacking env
        assert_eq!(q(&idx, &[("env", NotEqual, "prod")]), vec![1, 2, 3]);
        // env=~"dev|" : dev or absent
        assert_eq!(q(&idx, &[("env", RegexMatch, "dev|")]), vec![1, 2, 3]);
        // env!~".+" : absent only
        assert_eq!(q(&idx, &[("env", RegexNoMatch, ".+")]), vec![1, 3]);
        // a label nobody has: = "" matches all, != "x" matches all
        assert_eq!(q(&idx, &[("zone", Equal, "")]), vec![0, 1, 2, 3]);
        assert_eq!(
            q(&idx, &[("__name__", Equal, "up"), ("zone", NotEqual, "x")]),
            vec![0, 1, 2]
        );
        // .* matches everything including absent
        assert_eq!(q(&idx, &[("env", RegexMatch, ".*")]), vec![0, 1, 2, 3]);
    }

    #[test]
    fn label_hash_and_key_see_the_split_not_only_the_bytes() {
        let long = "a-much-longer-value-spanning-several-16-byte-blocks";
        let pairs = [("__name__", "up"), ("instance", long), ("job", "x")];
        let run: String = pairs.iter().flat_map(|(n, v)| [*n, *v]).collect();
        assert_eq!(hash_labels(pairs), hash_label_run(&run, pairs));
        // same bytes, different split: different hash and unequal keys
        let other = [("__name__", "u"), ("pinstance", long), ("job", "x")];
        assert_ne!(hash_labels(pairs), hash_labels(other));
        let key = series_key(pairs.into_iter());
        assert!(series_key_equals(&key, pairs.into_iter(), None));
        assert!(series_key_equals(&key, pairs.into_iter(), Some(&run)));
        assert!(!series_key_equals(&key, other.into_iter(), None));
        assert!(!series_key_equals(&key, other.into_iter(), Some(&run)));
        assert!(!series_key_equals(&key, pairs[..2].iter().copied(), None));
        let changed = [("__name__", "up"), ("instance", long), ("job", "y")];
        assert!(!series_key_equals(&key, changed.into_iter(), None));
        let empty = series_key(std::iter::empty());
        assert!(series_key_equals(&empty, std::iter::empty(), None));
        assert!(!series_key_equals(&empty, pairs.into_iter(), None));
    }

    #[test]
    fn set_algebra() {
        assert_eq!(intersect(&[1, 3, 5, 7], &[3, 4, 5, 8]), vec![3, 5]);
        assert_eq!(union(&[&[1, 4], &[2, 4, 9], &[]]), vec![1, 2, 4, 9]);
        assert_eq!(subtract(&[1, 2, 3, 4], &[2, 4, 6]), vec![1, 3]);
        let mut l = vec![1, 5];
        push_sorted(&mut l, 3);
        push_sorted(&mut l, 5);
        assert_eq!(l, vec![1, 3, 5]);
    }

    #[test]
    fn remove_and_label_equality() {
        let (mut idx, sets) = index();
        idx.postings.remove(&[0, 2]);
        assert_eq!(q(&idx, &[("__name__", MatchOp::Equal, "up")]), vec![1]);
        assert_eq!(idx.postings.all(), &[1, 3]);
        let sym = intern_labels(&mut idx.symbols, &sets[1]);
        assert!(labels_equal(&idx.symbols, &sym, &sets[1]));
        assert!(!labels_equal(&idx.symbols, &sym, &sets[0]));
        assert_eq!(resolve_labels(&idx.symbols, &sym), sets[1]);
        assert_eq!(
            hash_labels(sets[1].iter().map(|l| (l.name.as_str(), l.value.as_str()))),
            hash_labels([("__name__", "up"), ("job", "db")])
        );
    }
}
