//! [`MemoQuerier`]: a querier that reads each distinct selection once.
//!
//! A rule group evaluates many queries at one instant, and real rule files select the same
//! series over and over (`rate(x{job="a"}[5m])` in the ratio, the recording rule and three
//! alerts). Wrapped around the store for one group evaluation, the memo answers a repeated
//! selection (same matchers, same time bounds) from the series it decoded the first time,
//! so index lookups, head snapshots and chunk decoding happen once per selection instead
//! of once per rule.
//!
//! Whoever writes between queries (a recording rule's output, read by later rules of the
//! same group) calls [`MemoQuerier::forget_matching`] with what was written, so no later
//! query reads a remembered selection those series belong to. What the memo holds is
//! bounded ([`MemoQuerier::MAX_HELD_SAMPLES`]); a selection that does not fit is read as
//! without the memo (lazily, a batch at a time, never decoded whole) and not remembered.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use parking_lot::Mutex;
use rayon::prelude::*;

use crate::contract::{
    LabelMatcher, LazySeries, MatchOp, MetricsQuerier, ReadCache, RollupAggregate, RollupSelection,
};
use crate::error::Result;
use crate::model::{Labels, MetricMetadata, Series};

/// Selections below this many series are decoded on the calling thread.
const PARALLEL_DECODE_MIN_SERIES: usize = 64;
/// Series decoded between two checks of the memo's room.
const DECODE_BATCH: usize = 1024;

/// See the module docs.
pub struct MemoQuerier {
    inner: Arc<dyn MetricsQuerier>,
    memo: Mutex<Memo>,
    max_held_samples: usize,
}

#[derive(Default)]
struct Memo {
    entries: HashMap<String, Remembered>,
    held_samples: usize,
}

struct Remembered {
    matchers: Vec<LabelMatcher>,
    series: Arc<[Series]>,
    samples: usize,
}

impl MemoQuerier {
    /// Most samples remembered at once (16 bytes each, plus the series' labels).
    pub const MAX_HELD_SAMPLES: usize = 4_000_000;

    pub fn new(inner: Arc<dyn MetricsQuerier>) -> Self {
        MemoQuerier {
            inner,
            memo: Mutex::new(Memo::default()),
            max_held_samples: Self::MAX_HELD_SAMPLES,
        }
    }

    /// Drops every remembered selection that any of `written` belongs to, so the next
    /// query reads it again and sees what was written.
    pub fn forget_matching(&self, written: &[Series]) {
        if written.is_empty() {
            return;
        }
        let mut memo = self.memo.lock();
        let mut freed = 0;
        memo.entries.retain(|_, r| {
            let stale = written
                .iter()
                .any(|s| r.matchers.iter().all(|m| m.matches_labels(&s.labels)));
            if stale {
                freed += r.samples;
            }
            !stale
        });
        memo.held_samples -= freed;
    }

    /// The selection's series: remembered, or read and remembered while the memo has room.
    /// A selection larger than the room left is never decoded whole: what was decoded
    /// before it overflowed is handed on in memory, the rest stays lazy (read a batch at a
    /// time by the evaluator, as without the memo), and nothing is remembered.
    fn selection(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<LazySeries>> {
        let key = memo_key(matchers, mint, maxt);
        if let Some(r) = self.memo.lock().entries.get(&key) {
            return Ok(shared(&r.series));
        }
        let room = self
            .max_held_samples
            .saturating_sub(self.memo.lock().held_samples);
        let mut lazy = self.inner.select_lazy(matchers, mint, maxt)?.into_iter();
        let mut decoded: Vec<Series> = Vec::new();
        let mut samples = 0usize;
        loop {
            let batch: Vec<LazySeries> = lazy.by_ref().take(DECODE_BATCH).collect();
            if batch.is_empty() {
                break;
            }
            let more = decode_batch(&batch)?;
            samples += more.iter().map(|s| s.samples.len()).sum::<usize>();
            decoded.extend(more);
            if samples > room {
                let mut out: Vec<LazySeries> =
                    decoded.into_iter().map(LazySeries::loaded).collect();
                out.extend(lazy);
                return Ok(out);
            }
        }
        let series: Arc<[Series]> = decoded.into();
        let mut memo = self.memo.lock();
        memo.held_samples += samples;
        let replaced = memo.entries.insert(
            key,
            Remembered {
                matchers: matchers.to_vec(),
                series: series.clone(),
                samples,
            },
        );
        // two threads may read the same selection at once; the later one replaces
        if let Some(r) = replaced {
            memo.held_samples -= r.samples;
        }
        Ok(shared(&series))
    }
}

/// Every series of a remembered selection, sharing its samples.
fn shared(series: &Arc<[Series]>) -> Vec<LazySeries> {
    (0..series.len())
        .map(|i| LazySeries::shared(series.clone(), i))
        .collect()
}

/// Matchers and bounds as one string; names and values are length-prefixed, so no two
/// different selections share a key whatever their labels contain.
fn memo_key(matchers: &[LabelMatcher], mint: i64, maxt: i64) -> String {
    let mut key = format!("{mint} {maxt}");
    for m in matchers {
        let op = match m.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::RegexMatch => "=~",
            MatchOp::RegexNoMatch => "!~",
        };
        let _ = write!(
            key,
            " {}:{}{op}{}:{}",
            m.name.len(),
            m.name,
            m.value.len(),
            m.value
        );
    }
    key
}

/// Reads a batch of series' samples, on both cores when there are many.
fn decode_batch(lazy: &[LazySeries]) -> Result<Vec<Series>> {
    let decode = |(cache, buf): &mut (ReadCache, Vec<_>), s: &LazySeries| s.to_series(cache, buf);
    if lazy.len() < PARALLEL_DECODE_MIN_SERIES {
        let mut scratch = (ReadCache::new(), Vec::new());
        return lazy.iter().map(|s| decode(&mut scratch, s)).collect();
    }
    lazy.par_iter()
        .map_init(|| (ReadCache::new(), Vec::new()), decode)
        .collect()
}

impl MetricsQuerier for MemoQuerier {
    fn select(&self, matchers: &[LabelMatcher], mint: i64, maxt: i64) -> Result<Vec<Series>> {
        let mut cache = ReadCache::new();
        let mut buf = Vec::new();
        self.selection(matchers, mint, maxt)?
            .iter()
            .map(|s| s.to_series(&mut cache, &mut buf))
            .collect()
    }

    fn select_lazy(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<LazySeries>> {
        self.selection(matchers, mint, maxt)
    }

    fn series(&self, sets: &[Vec<LabelMatcher>], mint: i64, maxt: i64) -> Result<Vec<Labels>> {
        self.inner.series(sets, mint, maxt)
    }

    fn label_names(&self, sets: &[Vec<LabelMatcher>], mint: i64, maxt: i64) -> Result<Vec<String>> {
        self.inner.label_names(sets, mint, maxt)
    }

    fn label_values(
        &self,
        name: &str,
        sets: &[Vec<LabelMatcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        self.inner.label_values(name, sets, mint, maxt)
    }

    fn select_rollup(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
        resolution_ms: i64,
        agg: RollupAggregate,
    ) -> Result<Option<RollupSelection>> {
        self.inner
            .select_rollup(matchers, mint, maxt, resolution_ms, agg)
    }

    fn archive_files(&self, mint: i64, maxt: i64) -> usize {
        self.inner.archive_files(mint, maxt)
    }

    fn metadata(&self) -> Result<Vec<MetricMetadata>> {
        self.inner.metadata()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::model::Sample;
    use crate::testing::MemQuerier;

    /// A querier that counts the selections that reach it.
    struct Counting {
        inner: MemQuerier,
        selects: AtomicUsize,
    }

    impl MetricsQuerier for Counting {
        fn select(&self, m: &[LabelMatcher], mint: i64, maxt: i64) -> Result<Vec<Series>> {
            self.selects.fetch_add(1, Ordering::SeqCst);
            self.inner.select(m, mint, maxt)
        }
        fn series(&self, s: &[Vec<LabelMatcher>], a: i64, b: i64) -> Result<Vec<Labels>> {
            self.inner.series(s, a, b)
        }
        fn label_names(&self, s: &[Vec<LabelMatcher>], a: i64, b: i64) -> Result<Vec<String>> {
            self.inner.label_names(s, a, b)
        }
        fn label_values(
            &self,
            n: &str,
            s: &[Vec<LabelMatcher>],
            a: i64,
            b: i64,
        ) -> Result<Vec<String>> {
            self.inner.label_values(n, s, a, b)
        }
        fn metadata(&self) -> Result<Vec<MetricMetadata>> {
            self.inner.metadata()
        }
    }

    fn series(name: &str, job: &str, samples: &[(i64, f64)]) -> Series {
        Series {
            labels: Labels::from_pairs([("__name__", name), ("job", job)]),
            samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
        }
    }

    fn counting(series: &[Series]) -> Arc<Counting> {
        let mut inner = MemQuerier::default();
        for s in series {
            inner.series.insert(s.labels.clone(), s.samples.clone());
        }
        Arc::new(Counting {
            inner,
            selects: AtomicUsize::new(0),
        })
    }

    fn eq(name: &str, value: &str) -> LabelMatcher {
        LabelMatcher::new(name, MatchOp::Equal, value).unwrap()
    }

    fn load(memo: &MemoQuerier, m: &[LabelMatcher], mint: i64, maxt: i64) -> Vec<Series> {
        let mut cache = ReadCache::new();
        let mut buf = Vec::new();
        memo.select_lazy(m, mint, maxt)
            .unwrap()
            .iter()
            .map(|s| s.to_series(&mut cache, &mut buf).unwrap())
            .collect()
    }

    #[test]
    fn a_repeated_selection_is_read_once_and_answers_the_same() {
        let data = [
            series("up", "a", &[(0, 1.0), (15, 1.0)]),
            series("up", "b", &[(0, 0.0)]),
        ];
        let store = counting(&data);
        let memo = MemoQuerier::new(store.clone());
        let up = [eq("__name__", "up")];
        let first = load(&memo, &up, 0, 30);
        assert_eq!(first, data.to_vec());
        assert_eq!(load(&memo, &up, 0, 30), first);
        assert_eq!(memo.select(&up, 0, 30).unwrap(), first);
        assert_eq!(store.selects.load(Ordering::SeqCst), 1);
        // other bounds or other matchers are other selections
        assert_eq!(
            load(&memo, &up, 10, 30),
            vec![series("up", "a", &[(15, 1.0)])]
        );
        assert_eq!(load(&memo, &[eq("job", "b")], 0, 30), vec![data[1].clone()]);
        assert_eq!(store.selects.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn writing_a_series_forgets_only_the_selections_it_belongs_to() {
        let store = counting(&[
            series("up", "a", &[(0, 1.0)]),
            series("x", "a", &[(0, 2.0)]),
        ]);
        let memo = MemoQuerier::new(store.clone());
        let up = [eq("__name__", "up")];
        let x = [eq("__name__", "x")];
        load(&memo, &up, 0, 30);
        load(&memo, &x, 0, 30);
        memo.forget_matching(&[series("up", "c", &[(0, 1.0)])]);
        load(&memo, &up, 0, 30);
        load(&memo, &x, 0, 30);
        assert_eq!(
            store.selects.load(Ordering::SeqCst),
            3,
            "only `up` is read again"
        );
    }

    #[test]
    fn selections_past_the_bound_are_read_every_time() {
        let big: Vec<(i64, f64)> = (0..10).map(|i| (i, 1.0)).collect();
        let store = counting(&[series("up", "a", &big)]);
        let memo = MemoQuerier {
            max_held_samples: 9,
            ..MemoQuerier::new(store.clone())
        };
        let up = [eq("__name__", "up")];
        assert_eq!(load(&memo, &up, 0, 30)[0].samples.len(), 10);
        assert_eq!(load(&memo, &up, 0, 30)[0].samples.len(), 10);
        assert_eq!(store.selects.load(Ordering::SeqCst), 2);
        assert_eq!(memo.memo.lock().held_samples, 0);
        // a selection of several decode batches overflowing after the first: every series
        // still comes back, in order, with its samples
        let many: Vec<Series> = (0..2 * DECODE_BATCH + 5)
            .map(|i| series("m", &format!("{i:05}"), &[(0, i as f64), (1, 1.0)]))
            .collect();
        let memo = MemoQuerier {
            max_held_samples: 100,
            ..MemoQuerier::new(counting(&many))
        };
        let m = [eq("__name__", "m")];
        assert_eq!(load(&memo, &m, 0, 30), many);
        assert_eq!(memo.select(&m, 0, 30).unwrap(), many);
        assert_eq!(memo.memo.lock().held_samples, 0);
    }
}
