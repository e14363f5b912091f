//! Block compaction: merges small adjacent blocks into larger ones, so the number of
//! loaded blocks (each keeps its series index in memory) and the fan-out of a query stay
//! bounded instead of growing by one block per flush.
//!
//! Policy (leveled, as in Prometheus): the ranges are 6 and 24 flush intervals (12 h and
//! 48 h by default), each capped at a tenth of the retention (so 12 h and 36 h with 15 days).
//! For each range R, smallest first, every block with samples, a span below R and its
//! `min_time` in the epoch-aligned window `[k*R, (k+1)*R)` belongs to that window, unless
//! it reaches past the window's end by R/4 or more. A window is compacted once it is
//! closed (some block's `max_time` reaches its end, so later flushes will not land in it)
//! and holds at least two such blocks. A merged block spans at most 1.25 R, so retention
//! (which deletes whole blocks) keeps data at most about an eighth of the retention longer.
//!
//! One merge: the sources' series are merged in label order (per series the samples are
//! merged by time; on an equal timestamp the earlier block wins, as in queries) and
//! re-encoded into hourly chunks (see `block.rs`), written to `blocks/.tmp-<id>/`,
//! fsynced, re-opened and checked (index checksum, every page decompressed, sample count),
//! renamed to `blocks/<id>/` and `blocks/` fsynced. Then, under the block list's write
//! lock, the sources are swapped for the merged block (a query holds either the sources or
//! the merged block, never both), and only then are the sources renamed to `.del-<id>` and
//! deleted.
//!
//! Crash safety: the merged block's `meta.json` lists its sources in `compacted_from`.
//! At open, `.tmp-*` and `.del-*` directories are deleted and so is every block listed by
//! a loaded block, after all remaining blocks opened successfully. So a kill before the
//! rename leaves the sources (and a temp dir that is deleted); a kill after it leaves the
//! merged block, whose sources are deleted at open whether all, some or none of them were
//! already gone. The merged block's `wal_segment_upto` is the largest of its sources'.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::block::{self, Block, BlockMeta, BlockWriter};
use super::{metrics, MetricsStore};
use crate::error::{Result, StoreError};
use crate::model::{Labels, Sample};

/// Compaction ranges in ms, smallest first, for a store flushing every `flush_interval`
/// and keeping data for `retention`.
pub fn ranges(flush_interval: Duration, retention: Duration) -> Vec<i64> {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let flush = ms(flush_interval).max(1);
    let cap = ms(retention) / 10;
    let mut out: Vec<i64> = Vec::new();
    for factor in [6, 24] {
        let r = flush.saturating_mul(factor).min(cap);
        if r > flush && out.last() != Some(&r) {
            out.push(r);
        }
    }
    out
}

/// Indices (into `metas`, in order) of the next blocks to merge, or nothing.
pub fn plan(metas: &[&BlockMeta], ranges: &[i64]) -> Vec<usize> {
    let Some(newest) = metas
        .iter()
        .filter(|m| m.num_samples > 0)
        .map(|m| m.max_time)
        .max()
    else {
        return Vec::new();
    };
    for &r in ranges {
        let mut windows: HashMap<i64, Vec<usize>> = HashMap::new();
        for (i, m) in metas.iter().enumerate() {
            if m.num_samples == 0 || m.max_time.saturating_sub(m.min_time) >= r {
                continue;
            }
            let w = m.min_time.div_euclid(r);
            let end = w.saturating_add(1).saturating_mul(r);
            if end > newest || m.max_time >= end.saturating_add(r / 4) {
                continue;
            }
            windows.entry(w).or_default().push(i);
        }
        let oldest = windows
            .into_iter()
            .filter(|(_, g)| g.len() >= 2)
            .min_by_key(|&(w, _)| w);
        if let Some((_, group)) = oldest {
            return group;
        }
    }
    Vec::new()
}

/// One source's position in the label-ordered merge.
struct Cursor<'a> {
    block: &'a Block,
    next: u32,
    current: Option<(u32, Labels)>,
}

impl Cursor<'_> {
    fn advance(&mut self) -> Result<()> {
        let prev = self.current.take();
        while self.next < self.block.num_series() {
            let id = self.next;
            self.next += 1;
            if let Some(labels) = self.block.labels_of(id) {
                if prev.as_ref().is_some_and(|(_, p)| *p >= labels) {
                    return Err(StoreError::Corrupt {
                        path: self.block.dir.join("index"),
                        reason: format!("series {id} ({labels}) is not in label order"),
                    });
                }
                self.current = Some((id, labels));
                break;
            }
        }
        Ok(())
    }
}

/// Writes the merge of `sources` (in block-list order) as block `id` into
/// `blocks/.tmp-<id>/`, fsyncs and verifies it. Returns the loaded block, still in the temp
/// directory. Blocking.
pub fn write_merged(blocks_dir: &Path, id: &str, sources: &[Arc<Block>]) -> Result<Block> {
    let mut cursors = Vec::with_capacity(sources.len());
    for b in sources {
        let mut c = Cursor {
            block: b,
            next: 0,
            current: None,
        };
        c.advance()?;
        cursors.push(c);
    }
    let mut caches: Vec<HashMap<u32, Arc<Vec<u8>>>> = vec![HashMap::new(); sources.len()];
    let mut w = BlockWriter::create(blocks_dir, id)?;
    let mut samples: Vec<Sample> = Vec::new();
    let mut written = 0u64;
    while let Some(labels) = cursors
        .iter()
        .filter_map(|c| c.current.as_ref().map(|(_, l)| l))
        .min()
        .cloned()
    {
        samples.clear();
        let mut parts = 0;
        for (c, cache) in cursors.iter_mut().zip(caches.iter_mut()) {
            let Some((sid, _)) = c.current.as_ref().filter(|(_, l)| *l == labels) else {
                continue;
            };
            let sid = *sid;
            if let Some(first) = c.block.first_page(sid) {
                cache.retain(|&p, _| p >= first);
            }
            c.block
                .samples(sid, i64::MIN, i64::MAX, cache, &mut samples)?;
            parts += 1;
            c.advance()?;
        }
        if parts > 1 {
            // stable: on an equal timestamp the earlier block's sample stays first and wins
            samples.sort_by_key(|s| s.timestamp_ms);
            samples.dedup_by_key(|s| s.timestamp_ms);
        }
        if samples.is_empty() {
            continue;
        }
        written += samples.len() as u64;
        w.add_series(
            labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
            &samples,
        )?;
    }
    let wal_segment_upto = sources
        .iter()
        .map(|b| b.meta.wal_segment_upto)
        .max()
        .unwrap_or(0);
    let from = sources.iter().map(|b| b.meta.id.clone()).collect();
    let (meta, tmp) = w.finish(wal_segment_upto, from)?;
    let merged = Block::open(&tmp)?;
    let check = |ok: bool, what: &str| -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(StoreError::Corrupt {
                path: tmp.clone(),
                reason: format!("compacted block does not read back: {what}"),
            })
        }
    };
    check(merged.meta == meta, "meta differs")?;
    check(meta.num_samples == written, "sample count differs")?;
    check(
        u64::from(merged.num_series()) == meta.num_series,
        "series count differs",
    )?;
    merged.verify_pages()?;
    Ok(merged)
}

/// Renames the verified block into place (the commit point of a compaction) and points it
/// at its final directory. Blocking.
pub fn publish(blocks_dir: &Path, mut merged: Block) -> Result<Block> {
    let id = merged.meta.id.clone();
    merged.dir = block::publish(blocks_dir, &merged.dir, &id)?;
    Ok(merged)
}

/// Deletes block directories: each is renamed to `.del-<id>` first, so a crash never leaves
/// a half-deleted block that would load. Blocking.
pub fn remove_blocks(blocks_dir: &Path, doomed: &[(String, PathBuf)]) -> Result<()> {
    for (id, dir) in doomed {
        let del = blocks_dir.join(format!(".del-{id}"));
        std::fs::rename(dir, &del).map_err(|e| StoreError::io(dir, e))?;
        std::fs::remove_dir_all(&del).map_err(|e| StoreError::io(&del, e))?;
    }
    crate::fsutil::sync_dir(blocks_dir)
}

/// At open: drops and deletes every block that a loaded block lists in `compacted_from`
/// (leftovers of a compaction interrupted after its commit point). Blocking.
pub fn remove_replaced(blocks_dir: &Path, blocks: Vec<Arc<Block>>) -> Result<Vec<Arc<Block>>> {
    let replaced: std::collections::HashSet<&str> = blocks
        .iter()
        .flat_map(|b| b.meta.compacted_from.iter().map(String::as_str))
        .collect();
    if replaced.is_empty() {
        return Ok(blocks);
    }
    let (doomed, keep): (Vec<_>, Vec<_>) = blocks
        .iter()
        .partition(|b| replaced.contains(b.meta.id.as_str()));
    let doomed: Vec<(String, PathBuf)> = doomed
        .into_iter()
        .map(|b| {
            tracing::warn!(block = %b.meta.id, path = %b.dir.display(), "removing block already replaced by a compacted block");
            (b.meta.id.clone(), b.dir.clone())
        })
        .collect();
    let keep: Vec<Arc<Block>> = keep.into_iter().cloned().collect();
    drop(blocks);
    if !doomed.is_empty() {
        remove_blocks(blocks_dir, &doomed)?;
    }
    Ok(keep)
}

impl MetricsStore {
    /// Merges small adjacent blocks (policy in this module's docs) until nothing is left to
    /// merge. Returns the number of source blocks merged away. The work runs in
    /// `spawn_blocking`; the background task calls this after retention.
    pub async fn compact(&self) -> Result<usize> {
        let _guard = self.compact_lock.lock().await;
        let ranges = ranges(self.options.flush_interval, self.options.retention);
        let mut merged = 0;
        while !self.closed.load(Ordering::Acquire) {
            let sources: Vec<Arc<Block>> = {
                let blocks = self.blocks.read();
                let metas: Vec<&BlockMeta> = blocks.iter().map(|b| &b.meta).collect();
                plan(&metas, &ranges)
                    .into_iter()
                    .filter_map(|i| blocks.get(i).cloned())
                    .collect()
            };
            if sources.len() < 2 {
                break;
            }
            let started = Instant::now();
            match self.merge_once(&sources).await {
                Ok(()) => {
                    metrics::COMPACTIONS.with_label_values(&["ok"]).inc();
                    metrics::COMPACTION_DURATION.observe(started.elapsed().as_secs_f64());
                    merged += sources.len();
                }
                Err(e) => {
                    metrics::COMPACTIONS.with_label_values(&["error"]).inc();
                    tracing::error!(error = %e, sources = sources.len(), "tsdb compaction failed; source blocks kept");
                    return Err(e);
                }
            }
        }
        if merged > 0 {
            self.update_gauges();
        }
        Ok(merged)
    }

    async fn merge_once(&self, sources: &[Arc<Block>]) -> Result<()> {
        let seq = self.block_seq.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:013}-{:06}", super::now_ms(), seq % 1_000_000);
        let blocks_dir = self.blocks_dir();
        let srcs = sources.to_vec();
        let dir = blocks_dir.clone();
        let merged = tokio::task::spawn_blocking(move || -> Result<Block> {
            let b = write_merged(&dir, &id, &srcs)?;
            publish(&dir, b)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("compaction task failed: {e}")))??;
        tracing::info!(
            block = %merged.meta.id,
            sources = sources.len(),
            min_time = merged.meta.min_time,
            max_time = merged.meta.max_time,
            series = merged.meta.num_series,
            samples = merged.meta.num_samples,
            bytes = merged.meta.size_bytes,
            source_bytes = sources.iter().map(|b| b.meta.size_bytes).sum::<u64>(),
            "blocks compacted"
        );
        {
            let mut blocks = self.blocks.write();
            blocks.retain(|b| !sources.iter().any(|s| Arc::ptr_eq(s, b)));
            blocks.push(Arc::new(merged));
            blocks.sort_by(|a, b| a.meta.id.cmp(&b.meta.id));
        }
        let doomed: Vec<(String, PathBuf)> = sources
            .iter()
            .map(|b| (b.meta.id.clone(), b.dir.clone()))
            .collect();
        // queries still holding a source keep reading it through its open file
        tokio::task::spawn_blocking(move || remove_blocks(&blocks_dir, &doomed))
            .await
            .map_err(|e| StoreError::Unavailable(format!("block removal task failed: {e}")))?
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::MetricsStoreOptions;
    use crate::contract::{LabelMatcher, MatchOp, MetricsQuerier};
    use crate::model::Series;
    use crate::tsdb::head::Head;

    const H: i64 = 3_600_000;
    /// Start of an epoch-aligned 36 h window (the largest range with default options).
    const T0: i64 = 1_699_963_200_000;

    fn opts(dir: &Path) -> MetricsStoreOptions {
        MetricsStoreOptions::new(dir)
    }

    fn meta(id: &str, min: i64, max: i64) -> BlockMeta {
        BlockMeta {
            version: 1,
            id: id.into(),
            min_time: min,
            max_time: max,
            num_series: 1,
            num_samples: 1,
            num_chunks: 1,
            wal_segment_upto: 0,
            size_bytes: 0,
            compacted_from: Vec::new(),
        }
    }

    /// Series `i` of a block: present in blocks where `(i + block) % 3 != 0`, so series
    /// sets overlap partially; values mix integer counters, decimals and floats.
    fn write(dir: &Path, id: &str, block: i64, from: i64, to: i64, upto: u64) {
        let mut h = Head::default();
        for i in 0..60i64 {
            if (i + block) % 3 == 0 {
                continue;
            }
            let l = Labels::from_pairs([
                ("__name__", if i % 2 == 0 { "a_total" } else { "b" }),
                ("instance", &format!("i{i}")),
            ]);
            let r = h.create(Head::hash(&l), &l, (i64::MIN, 0), None);
            let mut t = from + i * 7;
            while t <= to {
                let v = match i % 3 {
                    0 => (t / 1000) as f64,
                    1 => (t % 997) as f64 / 100.0,
                    _ => (t as f64).sqrt(),
                };
                h.append(r, t, v);
                t += 15_000;
            }
        }
        block::write_block(dir, id, &h.freeze(), upto).unwrap();
    }

    /// Six 2 h blocks, one at 12-14 h, one at 36 h (which closes the 36 h window).
    fn write_day(blocks: &Path) {
        std::fs::create_dir_all(blocks).unwrap();
        for b in 0..6 {
            let from = T0 + b * 2 * H;
            write(
                blocks,
                &format!("000000000000{b}-000000"),
                b,
                from,
                from + 2 * H - 1,
                1,
            );
        }
        write(
            blocks,
            "0000000000006-000000",
            6,
            T0 + 12 * H,
            T0 + 14 * H,
            2,
        );
        write(
            blocks,
            "0000000000007-000000",
            7,
            T0 + 36 * H,
            T0 + 37 * H,
            3,
        );
    }

    /// Query results with values as bits (staleness markers are NaN, which `==` refuses).
    type Bits = Vec<(Labels, Vec<(i64, u64)>)>;

    fn bits(series: Vec<Series>) -> Bits {
        series
            .into_iter()
            .map(|s| {
                let v = s
                    .samples
                    .iter()
                    .map(|x| (x.timestamp_ms, x.value.to_bits()));
                (s.labels, v.collect())
            })
            .collect()
    }

    fn queries(store: &MetricsStore) -> Vec<Bits> {
        let all = LabelMatcher::new("__name__", MatchOp::RegexMatch, ".+").unwrap();
        let a = LabelMatcher::new("__name__", MatchOp::Equal, "a_total").unwrap();
        let one = LabelMatcher::new("instance", MatchOp::Equal, "i7").unwrap();
        let mut out = Vec::new();
        for m in [vec![all], vec![a], vec![one]] {
            for (from, to) in [
                (i64::MIN, i64::MAX),
                (T0, T0 + 2 * H),
                (T0 + 2 * H - 5_000, T0 + 2 * H + 5_000),
                (T0 + 5 * H, T0 + 13 * H),
                (T0 + 13 * H, T0 + 40 * H),
            ] {
                out.push(bits(store.select(&m, from, to).unwrap()));
            }
        }
        out
    }

    fn block_dirs(blocks: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(blocks)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn ranges_follow_flush_interval_and_retention() {
        let d = |h: u64| Duration::from_secs(h * 3600);
        assert_eq!(ranges(d(2), d(15 * 24)), vec![12 * H, 36 * H]);
        assert_eq!(ranges(d(2), d(30 * 24)), vec![12 * H, 48 * H]);
        assert_eq!(ranges(d(2), d(24)), vec![(24 * H) / 10]);
        assert!(ranges(d(2), d(10)).is_empty());
    }

    #[test]
    fn plan_waits_for_closed_windows_and_bounds_spans() {
        let r = [12 * H, 36 * H];
        let a = meta("a", T0, T0 + 2 * H);
        let b = meta("b", T0 + 2 * H, T0 + 4 * H);
        let straddle = meta("c", T0 + 11 * H, T0 + 13 * H);
        let later = meta("d", T0 + 13 * H, T0 + 14 * H);
        // the 12 h window is still open: nothing reaches its end
        assert!(plan(&[&a, &b], &r).is_empty());
        // a block reaching past the end closes it; the straddler belongs to it by min_time
        assert_eq!(plan(&[&a, &b, &straddle, &later], &r), vec![0, 1, 2]);
        // a block reaching too far past the window is left alone
        let long = meta("e", T0 + 11 * H, T0 + 16 * H);
        assert_eq!(plan(&[&a, &b, &long, &later], &r), vec![0, 1]);
        // a block already as large as the range is not merged at that level
        let big = meta("f", T0, T0 + 12 * H);
        assert!(plan(&[&big, &later], &r[..1]).is_empty());
    }

    #[tokio::test]
    async fn merging_keeps_every_query_result() {
        let dir = tempfile::tempdir().unwrap();
        write_day(&dir.path().join("blocks"));
        let store = MetricsStore::open(opts(dir.path())).unwrap();
        let before = queries(&store);
        let samples = store.stats().block_samples;
        assert_eq!(store.stats().blocks, 8);
        assert_eq!(store.compact().await.unwrap(), 8);
        // 6 x 2 h -> 12 h; that plus the 12-14 h block -> 36 h; the newest block stays
        assert_eq!(store.stats().blocks, 2);
        assert_eq!(store.stats().block_samples, samples);
        assert_eq!(queries(&store), before);
        let merged = store.blocks.read()[1].meta.clone();
        assert_eq!(merged.compacted_from.len(), 2);
        assert_eq!(merged.wal_segment_upto, 2);
        assert!(merged.min_time >= T0 && merged.min_time < T0 + H);
        assert_eq!(store.compact().await.unwrap(), 0);
        drop(store);
        assert_eq!(block_dirs(&dir.path().join("blocks")).len(), 2);
        let store = MetricsStore::open(opts(dir.path())).unwrap();
        assert_eq!(queries(&store), before);
        assert_eq!(store.stats().block_samples, samples);
    }

    /// The newest sample per series (the head's ordering state) survives a merge.
    #[tokio::test]
    async fn newest_sample_per_series_survives() {
        let dir = tempfile::tempdir().unwrap();
        write_day(&dir.path().join("blocks"));
        let store = MetricsStore::open(opts(dir.path())).unwrap();
        let labels: Vec<Labels> = queries(&store)[0].iter().map(|s| s.0.clone()).collect();
        let newest = |s: &MetricsStore| -> Vec<(i64, u64)> {
            let blocks = s.blocks.read();
            labels
                .iter()
                .map(|l| super::super::newest_in_blocks(&blocks, l, i64::MIN))
                .collect()
        };
        let before = newest(&store);
        store.compact().await.unwrap();
        assert_eq!(newest(&store), before);
    }

    fn open_blocks(blocks: &Path, ids: &[&str]) -> Vec<Arc<Block>> {
        ids.iter()
            .map(|id| Arc::new(Block::open(&blocks.join(id)).unwrap()))
            .collect()
    }

    /// A kill at each step of a merge of the six 2 h blocks, then a restart.
    #[tokio::test]
    async fn crash_at_each_step_keeps_samples_exactly_once() {
        let ids = [
            "0000000000000-000000",
            "0000000000001-000000",
            "0000000000002-000000",
            "0000000000003-000000",
            "0000000000004-000000",
            "0000000000005-000000",
        ];
        for step in 0..4 {
            let dir = tempfile::tempdir().unwrap();
            let blocks = dir.path().join("blocks");
            write_day(&blocks);
            let (want, want_samples) = {
                let store = MetricsStore::open(opts(dir.path())).unwrap();
                (queries(&store), store.stats().block_samples)
            };
            let sources = open_blocks(&blocks, &ids);
            let merged = write_merged(&blocks, "0000000000009-000000", &sources).unwrap();
            let mut left = 8;
            if step >= 1 {
                publish(&blocks, merged).unwrap();
                left = 3;
            }
            if step >= 2 {
                // sources partly deleted: one gone, one mid-delete
                remove_blocks(&blocks, &[(ids[0].into(), blocks.join(ids[0]))]).unwrap();
                std::fs::rename(blocks.join(ids[1]), blocks.join(format!(".del-{}", ids[1])))
                    .unwrap();
            }
            if step >= 3 {
                let rest: Vec<(String, PathBuf)> = ids[2..]
                    .iter()
                    .map(|id| (id.to_string(), blocks.join(id)))
                    .collect();
                remove_blocks(&blocks, &rest).unwrap();
            }
            drop(sources);
            let store = MetricsStore::open(opts(dir.path())).unwrap();
            assert_eq!(store.stats().blocks, left, "step {step}");
            assert_eq!(store.stats().block_samples, want_samples, "step {step}");
            assert_eq!(queries(&store), want, "step {step}");
            assert_eq!(block_dirs(&blocks).len() as u64, left, "step {step}");
            // and compaction still completes afterwards
            store.compact().await.unwrap();
            assert_eq!(store.stats().blocks, 2, "step {step}");
            assert_eq!(queries(&store), want, "step {step}");
        }
    }

    #[tokio::test]
    async fn retention_deletes_merged_blocks() {
        let dir = tempfile::tempdir().unwrap();
        write_day(&dir.path().join("blocks"));
        let store = MetricsStore::open(opts(dir.path())).unwrap();
        store.compact().await.unwrap();
        assert_eq!(store.stats().blocks, 2);
        // the data is from 2023, far older than the 15 day retention
        assert_eq!(store.apply_retention().await.unwrap(), 2);
        assert_eq!(store.stats().blocks, 0);
        assert!(block_dirs(&dir.path().join("blocks")).is_empty());
    }

    #[tokio::test]
    async fn fixture_block_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let blocks = dir.path().join("blocks");
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/tsdb/block-v1");
        std::fs::create_dir_all(blocks.join("block-v1")).unwrap();
        for f in ["meta.json", "index", "chunks"] {
            std::fs::copy(fixture.join(f), blocks.join("block-v1").join(f)).unwrap();
        }
        // the fixture is 1_700_000_000_000 ..= +4000 s, inside the 12 h window ending
        // 1_700_006_400_000; add a later block in that window and one that closes it
        write(&blocks, "zz-1", 1, 1_700_004_010_000, 1_700_006_000_000, 1);
        write(&blocks, "zz-2", 2, 1_700_010_000_000, 1_700_011_000_000, 1);
        let store = MetricsStore::open(opts(dir.path())).unwrap();
        let all = LabelMatcher::new("__name__", MatchOp::RegexMatch, ".+").unwrap();
        let before = bits(
            store
                .select(std::slice::from_ref(&all), i64::MIN, i64::MAX)
                .unwrap(),
        );
        let samples = store.stats().block_samples;
        assert_eq!(store.compact().await.unwrap(), 2);
        assert_eq!(store.stats().blocks, 2);
        assert_eq!(store.stats().block_samples, samples);
        let after = bits(store.select(&[all], i64::MIN, i64::MAX).unwrap());
        assert_eq!(after, before);
        assert_eq!(
            after.iter().map(|s| s.1.len()).sum::<usize>() as u64,
            samples
        );
        let merged = store.blocks.read()[0].meta.clone();
        assert_eq!(
            merged.compacted_from,
            vec!["block-v1".to_string(), "zz-1".into()]
        );
        assert_eq!(merged.wal_segment_upto, 3);
    }

    /// Size of six 2 h blocks against their merge (re-encoded into the same hourly
    /// chunks, so about the same size): `cargo test -p lookout-store compaction_size --
    /// --nocapture` prints the numbers.
    #[test]
    fn compaction_size() {
        let dir = tempfile::tempdir().unwrap();
        let blocks = dir.path().join("blocks");
        write_day(&blocks);
        let ids: Vec<String> = (0..6).map(|b| format!("000000000000{b}-000000")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let sources = open_blocks(&blocks, &refs);
        let merged = write_merged(&blocks, "m", &sources).unwrap();
        let before: u64 = sources.iter().map(|b| b.meta.size_bytes).sum();
        let samples: u64 = sources.iter().map(|b| b.meta.num_samples).sum();
        assert_eq!(merged.meta.num_samples, samples);
        println!(
            "6 blocks: {before} bytes, merged: {} bytes ({:.2} -> {:.2} bytes/sample)",
            merged.meta.size_bytes,
            before as f64 / samples as f64,
            merged.meta.size_bytes as f64 / samples as f64
        );
        assert!(merged.meta.size_bytes * 100 < before * 102);
    }
}
