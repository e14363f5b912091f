//! The in-memory head: every active series with its chunks since the last flush, the label
//! index over them, and the append path's ordering check.
//!
//! A series is found by a hash of its labels (no allocation for a known series) and refers
//! to its labels as interned symbol pairs. Its samples live in closed Gorilla chunks plus
//! one open chunk. At flush the chunks are *frozen* (moved aside, still queryable) while a
//! block is written from them; new samples keep going into fresh chunks.
//!
//! With chunk files ([`Head::with_chunk_files`]) a closed chunk's bytes go to
//! [`head_chunks`](super::head_chunks) and the series keeps a locator; reads copy the
//! locators under the lock and fetch the bytes outside it.

use std::borrow::Cow;
use std::sync::Arc;

use super::chunk::{self, Chunk, XorAppender};
use super::head_chunks::{ChunkData, ChunkFile, HeadChunks};
use super::index::{
    hash_labels, intern_labels, resolve_labels, series_key, series_key_equals, FxHashMap,
    IndexReader, MemPostings, SymLabels, SymbolTable,
};
use super::wal_records::PayloadBuilder;
use crate::error::{Result, StoreError};
use crate::model::{Labels, Sample};

/// A closed head chunk: its time range, sample count and where its bytes are (40 bytes;
/// one per closed chunk is the head's per-series cost besides the open chunk).
#[derive(Clone, Debug)]
pub struct HeadChunk {
    mint: i64,
    /// `maxt - mint`: a chunk is cut before it spans [`chunk::MAX_CHUNK_SPAN_MS`].
    span: u32,
    samples: u16,
    data: ChunkData,
}

impl HeadChunk {
    fn new(c: Chunk, files: Option<&HeadChunks>) -> HeadChunk {
        let samples = chunk_samples(&c.data);
        let span = u32::try_from(c.maxt.saturating_sub(c.mint)).unwrap_or(u32::MAX);
        let data = match files {
            Some(f) => f.store(c.data),
            None => ChunkData::Mem(c.data),
        };
        HeadChunk {
            mint: c.mint,
            span,
            samples,
            data,
        }
    }

    fn maxt(&self) -> i64 {
        self.mint.saturating_add(i64::from(self.span))
    }

    fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.maxt() >= mint && self.mint <= maxt
    }

    /// A reference readable without the head (the file handle or a copy of the bytes).
    fn to_ref(&self, files: Option<&HeadChunks>) -> ChunkRef {
        match &self.data {
            ChunkData::Mem(data) => ChunkRef::Owned(Chunk {
                mint: self.mint,
                maxt: self.maxt(),
                data: data.clone(),
            }),
            ChunkData::File { file, len, offset } => ChunkRef::File {
                file: files.and_then(|f| f.file(*file)).cloned(),
                generation: *file,
                offset: *offset,
                len: *len,
                samples: self.samples,
            },
        }
    }

    fn mem_bytes(&self) -> usize {
        match &self.data {
            ChunkData::Mem(d) => d.len(),
            ChunkData::File { .. } => 0,
        }
    }
}

/// Per-series ordering verdict for one sample (see the module docs of `tsdb`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Older than the newest stored sample.
    OutOfOrder,
    /// Same timestamp and identical value bits as the newest: ignored.
    Duplicate,
    /// Same timestamp as the newest, different value.
    DuplicateTimestamp,
}

pub struct MemSeries {
    pub labels: SymLabels,
    /// The label set as one buffer ([`series_key`]), for finding the series cheaply.
    key: Box<[u8]>,
    /// Closed chunks since the last freeze.
    chunks: Vec<HeadChunk>,
    /// The open chunk, if any sample arrived since the last cut.
    open: Option<Box<XorAppender>>,
    /// Chunks handed to a block being written; dropped once the block is loaded.
    frozen: Option<Arc<[HeadChunk]>>,
    /// Newest accepted timestamp ever (also across flushes and restarts), `i64::MIN` if none.
    last_t: i64,
    last_v: u64,
    /// Set by a freeze that found no samples since the previous one: the series has been
    /// idle for a whole flush interval and is dropped when the freeze is released.
    idle: bool,
}

impl MemSeries {
    pub fn verdict(&self, t: i64, v: f64) -> Verdict {
        if t > self.last_t {
            Verdict::Accept
        } else if t < self.last_t {
            Verdict::OutOfOrder
        } else if v.to_bits() == self.last_v {
            Verdict::Duplicate
        } else {
            Verdict::DuplicateTimestamp
        }
    }

    /// Newest accepted timestamp (`i64::MIN` if none).
    pub fn newest(&self) -> i64 {
        self.last_t
    }

    /// Appends a sample that passed [`MemSeries::verdict`], cutting the open chunk when full.
    fn append(&mut self, t: i64, v: f64, files: Option<&HeadChunks>) {
        let mut capacity = 0;
        if let Some(open) = &self.open {
            if open.is_full(t) {
                if let Some(full) = self.open.take() {
                    let c = full.finish();
                    // the next chunk of a series is usually about as large as the last
                    capacity = c.data.len() + c.data.len() / 16;
                    if self.chunks.len() == self.chunks.capacity() {
                        // grow by a quarter, not double: a locator list lives as long as
                        // the series, and growing happens once per 120 samples
                        self.chunks.reserve_exact((self.chunks.len() / 4).max(2));
                    }
                    self.chunks.push(HeadChunk::new(c, files));
                }
            }
        }
        self.open
            .get_or_insert_with(|| Box::new(XorAppender::with_capacity(capacity)))
            .append(t, v);
        self.last_t = t;
        self.last_v = v.to_bits();
        self.idle = false;
    }

    fn has_data(&self) -> bool {
        self.open.is_some() || !self.chunks.is_empty() || self.frozen.is_some()
    }

    /// Closes the open chunk and returns every chunk (frozen ones not included).
    fn take_chunks(&mut self, files: Option<&HeadChunks>) -> Vec<HeadChunk> {
        let mut chunks = std::mem::take(&mut self.chunks);
        if let Some(open) = self.open.take() {
            chunks.push(HeadChunk::new(open.finish(), files));
        }
        chunks
    }

    fn heap_bytes(&self) -> usize {
        let size = std::mem::size_of::<HeadChunk>();
        let closed: usize = self.chunks.iter().map(HeadChunk::mem_bytes).sum();
        let frozen: usize = self
            .frozen
            .as_ref()
            .map(|f| f.iter().map(|c| c.mem_bytes() + size).sum())
            .unwrap_or(0);
        let open = self.open.as_ref().map(|o| o.capacity() + 64).unwrap_or(0);
        self.labels.len() * 8
            + self.key.len()
            + closed
            + frozen
            + open
            + self.chunks.capacity() * size
    }
}

/// A series' chunk data copied out under the read lock, decoded outside it.
pub struct SeriesSnapshot {
    pub labels: Labels,
    pub chunks: Vec<ChunkRef>,
}

/// A chunk copied from the head (open chunk, or one kept in memory) or a place in a head
/// chunk file, read when decoded.
#[derive(Clone)]
pub enum ChunkRef {
    Owned(Chunk),
    File {
        /// `None` if the head no longer had the file (never expected; reads fail).
        file: Option<Arc<ChunkFile>>,
        generation: u32,
        offset: u64,
        len: u32,
        /// The chunk's sample count, checked against the header read back.
        samples: u16,
    },
}

impl ChunkRef {
    /// The chunk's bytes, read from its file if needed.
    pub fn bytes(&self) -> Result<Cow<'_, [u8]>> {
        match self {
            ChunkRef::Owned(c) => Ok(Cow::Borrowed(&c.data)),
            ChunkRef::File {
                file: Some(f),
                offset,
                len,
                samples,
                ..
            } => {
                let bytes = f.read(*offset, *len)?;
                if chunk_samples(&bytes) != *samples {
                    return Err(StoreError::Corrupt {
                        path: f.path().to_path_buf(),
                        reason: format!(
                            "head chunk at {offset}+{len} has {} samples, expected {samples}",
                            chunk_samples(&bytes)
                        ),
                    });
                }
                Ok(Cow::Owned(bytes))
            }
            ChunkRef::File {
                file: None,
                generation,
                ..
            } => Err(StoreError::Unavailable(format!(
                "head chunk file generation {generation} is gone"
            ))),
        }
    }
}

/// What [`Head::freeze`] hands to the block writer.
pub struct FrozenSeries {
    pub labels: Vec<(Arc<str>, Arc<str>)>,
    pub chunks: Vec<ChunkRef>,
}

impl FrozenSeries {
    /// Decodes every chunk into one time-ordered list.
    pub fn samples(&self) -> Result<Vec<Sample>> {
        let mut out = Vec::new();
        for c in &self.chunks {
            let bytes = c.bytes()?;
            chunk::decode_into(&bytes, i64::MIN, i64::MAX, &mut out).map_err(|e| {
                StoreError::Corrupt {
                    path: "head".into(),
                    reason: format!("head chunk for block: {e}"),
                }
            })?;
        }
        Ok(out)
    }
}

#[derive(Default)]
pub struct Head {
    pub symbols: SymbolTable,
    pub postings: MemPostings,
    series: FxHashMap<u32, MemSeries>,
    /// First series per label hash; rare collisions go to `collisions`.
    by_hash: FxHashMap<u64, u32>,
    collisions: FxHashMap<u64, Vec<u32>>,
    next_ref: u32,
    /// Samples in unfrozen chunks.
    samples: u64,
    /// Where closed chunks go; `None` keeps them in memory.
    chunk_files: Option<HeadChunks>,
}

impl IndexReader for Head {
    fn symbols(&self) -> &SymbolTable {
        &self.symbols
    }
    fn postings(&self) -> &MemPostings {
        &self.postings
    }
}

impl Head {
    /// A head writing its closed chunks to `files`.
    pub fn with_chunk_files(files: HeadChunks) -> Head {
        Head {
            chunk_files: Some(files),
            ..Head::default()
        }
    }

    /// Bytes in head chunk files.
    pub fn chunk_file_bytes(&self) -> u64 {
        self.chunk_files.as_ref().map_or(0, HeadChunks::bytes)
    }

    pub fn num_series(&self) -> usize {
        self.series.len()
    }

    pub fn num_samples(&self) -> u64 {
        self.samples
    }

    /// The ref the next created series will get; replay raises it past every ref it saw.
    pub fn reserve_refs_from(&mut self, next: u32) {
        self.next_ref = self.next_ref.max(next);
    }

    pub fn get_ref(&self, hash: u64, labels: &Labels) -> Option<u32> {
        self.get_ref_pairs(
            hash,
            labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
            None,
        )
    }

    /// [`Head::get_ref`] over borrowed label pairs (sorted and unique), no allocation; `run`,
    /// when given, is their names and values concatenated.
    pub fn get_ref_pairs<'a>(
        &self,
        hash: u64,
        pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)> + Clone,
        run: Option<&str>,
    ) -> Option<u32> {
        let first = *self.by_hash.get(&hash)?;
        if self
            .series
            .get(&first)
            .is_some_and(|s| series_key_equals(&s.key, pairs.clone(), run))
        {
            return Some(first);
        }
        self.collisions.get(&hash)?.iter().copied().find(|r| {
            self.series
                .get(r)
                .is_some_and(|s| series_key_equals(&s.key, pairs.clone(), run))
        })
    }

    pub fn hash(labels: &Labels) -> u64 {
        hash_labels(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
    }

    /// Creates a series; `newest` carries its newest sample (timestamp, value bits) from
    /// blocks, or `(i64::MIN, 0)`. `with_ref` is used by replay to recreate a series under
    /// its logged ref.
    pub fn create(
        &mut self,
        hash: u64,
        labels: &Labels,
        newest: (i64, u64),
        with_ref: Option<u32>,
    ) -> u32 {
        let (last_t, last_v) = newest;
        let r = with_ref.unwrap_or(self.next_ref);
        self.next_ref = self.next_ref.max(r.saturating_add(1));
        let sym = intern_labels(&mut self.symbols, labels);
        self.postings.add(r, &sym);
        self.series.insert(
            r,
            MemSeries {
                labels: sym,
                key: series_key(labels.iter().map(|l| (l.name.as_str(), l.value.as_str()))),
                chunks: Vec::new(),
                open: None,
                frozen: None,
                last_t,
                last_v,
                idle: false,
            },
        );
        match self.by_hash.entry(hash) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(r);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collisions.entry(hash).or_default().push(r);
            }
        }
        r
    }

    pub fn series(&self, r: u32) -> Option<&MemSeries> {
        self.series.get(&r)
    }

    /// Checks and, if accepted, appends. Unknown refs are out of order by definition: a
    /// series is always created before its samples are appended.
    pub fn append(&mut self, r: u32, t: i64, v: f64) -> Verdict {
        let Some(s) = self.series.get_mut(&r) else {
            return Verdict::OutOfOrder;
        };
        let verdict = s.verdict(t, v);
        if verdict == Verdict::Accept {
            s.append(t, v, self.chunk_files.as_ref());
            self.samples += 1;
        }
        verdict
    }

    /// Label pairs of series `r`, resolved.
    pub fn labels_of(&self, r: u32) -> Option<Labels> {
        self.series
            .get(&r)
            .map(|s| resolve_labels(&self.symbols, &s.labels))
    }

    /// Series records for every live series, split into payloads of about `max_bytes`: the
    /// dump written first into a new WAL segment at rotation.
    pub fn series_dump(&self, max_bytes: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut builder = PayloadBuilder::default();
        let mut size = 0usize;
        for (r, s) in &self.series {
            let labels = s
                .labels
                .iter()
                .map(|&(n, v)| (self.symbols.get(n), self.symbols.get(v)));
            size += s
                .labels
                .iter()
                .map(|&(n, v)| self.symbols.get(n).len() + self.symbols.get(v).len() + 2)
                .sum::<usize>()
                + 6;
            builder.add_series(*r, labels);
            if size >= max_bytes {
                out.push(std::mem::take(&mut builder).finish());
                size = 0;
            }
        }
        if !builder.is_empty() {
            out.push(builder.finish());
        }
        out
    }

    /// Moves every series' chunks aside (still queryable) and returns them for a block.
    /// Series with nothing new are skipped.
    pub fn freeze(&mut self) -> Vec<FrozenSeries> {
        let mut out = Vec::new();
        let files = self.chunk_files.as_ref();
        for s in self.series.values_mut() {
            let chunks = s.take_chunks(files);
            if chunks.is_empty() {
                s.idle = true;
                continue;
            }
            let refs = chunks.iter().map(|c| c.to_ref(files)).collect();
            s.frozen = Some(chunks.into());
            let labels = s
                .labels
                .iter()
                .map(|&(n, v)| (self.symbols.get_arc(n), self.symbols.get_arc(v)))
                .collect();
            out.push(FrozenSeries {
                labels,
                chunks: refs,
            });
        }
        if let Some(f) = self.chunk_files.as_mut() {
            f.rotate();
        }
        self.samples = 0;
        out
    }

    /// Undoes [`Head::freeze`] after a failed block write: frozen chunks go back in front of
    /// the chunks appended since, so the next flush retries them.
    pub fn unfreeze(&mut self) {
        for s in self.series.values_mut() {
            if let Some(frozen) = s.frozen.take() {
                self.samples += frozen.iter().map(|c| u64::from(c.samples)).sum::<u64>();
                let mut chunks = frozen.to_vec();
                chunks.append(&mut s.chunks);
                s.chunks = chunks;
            }
        }
    }

    /// Drops the frozen chunks (now in a block) and removes series idle for a whole flush
    /// interval; their newest sample stays known through the blocks.
    pub fn release_frozen(&mut self) -> usize {
        let mut dead = Vec::new();
        for (r, s) in self.series.iter_mut() {
            s.frozen = None;
            if s.idle && !s.has_data() {
                dead.push(*r);
            }
        }
        dead.sort_unstable();
        for r in &dead {
            if let Some(s) = self.series.remove(r) {
                let hash = hash_labels(
                    s.labels
                        .iter()
                        .map(|&(n, v)| (self.symbols.get(n), self.symbols.get(v))),
                );
                if self.by_hash.get(&hash) == Some(r) {
                    self.by_hash.remove(&hash);
                    if let Some(mut others) = self.collisions.remove(&hash) {
                        if let Some(first) = others.pop() {
                            self.by_hash.insert(hash, first);
                            if !others.is_empty() {
                                self.collisions.insert(hash, others);
                            }
                        }
                    }
                } else if let Some(others) = self.collisions.get_mut(&hash) {
                    others.retain(|x| x != r);
                    if others.is_empty() {
                        self.collisions.remove(&hash);
                    }
                }
            }
        }
        self.postings.remove(&dead);
        if let Some(f) = self.chunk_files.as_mut() {
            f.release_old();
        }
        dead.len()
    }

    /// Copies out the chunks overlapping `[mint, maxt]` of the given series.
    pub fn snapshot(&self, refs: &[u32], mint: i64, maxt: i64) -> Vec<SeriesSnapshot> {
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            let Some(s) = self.series.get(r) else {
                continue;
            };
            let files = self.chunk_files.as_ref();
            let chunks: Vec<ChunkRef> = s
                .frozen
                .iter()
                .flat_map(|f| f.iter())
                .chain(s.chunks.iter())
                .filter(|c| c.overlaps(mint, maxt))
                .map(|c| c.to_ref(files))
                .collect();
            let mut chunks = chunks;
            if let Some(o) = &s.open {
                if o.num_samples() > 0 && o.maxt() >= mint && o.mint() <= maxt {
                    chunks.push(ChunkRef::Owned(Chunk {
                        mint: o.mint(),
                        maxt: o.maxt(),
                        data: o.bytes().into(),
                    }));
                }
            }
            if chunks.is_empty() {
                continue;
            }
            out.push(SeriesSnapshot {
                labels: resolve_labels(&self.symbols, &s.labels),
                chunks,
            });
        }
        out
    }

    /// Labels of the given series that have samples in `[mint, maxt]`.
    pub fn labels_in_range(&self, refs: &[u32], mint: i64, maxt: i64) -> Vec<Labels> {
        refs.iter()
            .filter_map(|r| self.series.get(r))
            .filter(|s| {
                s.frozen
                    .iter()
                    .flat_map(|f| f.iter())
                    .chain(s.chunks.iter())
                    .any(|c| c.overlaps(mint, maxt))
                    || s.open.as_ref().is_some_and(|o| {
                        o.num_samples() > 0 && o.maxt() >= mint && o.mint() <= maxt
                    })
            })
            .map(|s| resolve_labels(&self.symbols, &s.labels))
            .collect()
    }

    /// Approximate heap bytes of the head, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        let series: usize = self.series.values().map(|s| s.heap_bytes() + 80).sum();
        series + self.symbols.heap_bytes() + self.postings.heap_bytes() + self.by_hash.len() * 16
    }
}

/// Samples in a chunk, from its header.
pub fn chunk_samples(data: &[u8]) -> u16 {
    match data {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

/// Decodes a snapshot's chunks within `[mint, maxt]`, in time order; reading a chunk from
/// its file can fail.
pub fn decode_snapshot(s: &SeriesSnapshot, mint: i64, maxt: i64) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    for c in &s.chunks {
        let bytes = c.bytes()?;
        chunk::decode_into(&bytes, mint, maxt, &mut out).map_err(|e| StoreError::Corrupt {
            path: "head".into(),
            reason: format!("series {}: {e}", s.labels),
        })?;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::stale_nan;

    fn labels(job: &str) -> Labels {
        Labels::from_pairs([("__name__", "up"), ("job", job)])
    }

    #[test]
    fn ordering_policy() {
        let mut h = Head::default();
        let l = labels("a");
        let hash = Head::hash(&l);
        assert_eq!(h.get_ref(hash, &l), None);
        let r = h.create(hash, &l, (i64::MIN, 0), None);
        assert_eq!(h.get_ref(hash, &l), Some(r));
        assert_eq!(h.append(r, 10, 1.0), Verdict::Accept);
        assert_eq!(h.append(r, 20, 2.0), Verdict::Accept);
        assert_eq!(h.append(r, 15, 2.0), Verdict::OutOfOrder);
        assert_eq!(h.append(r, 20, 2.0), Verdict::Duplicate);
        assert_eq!(h.append(r, 20, 3.0), Verdict::DuplicateTimestamp);
        assert_eq!(h.append(r, 30, stale_nan()), Verdict::Accept);
        assert_eq!(h.append(r, 30, stale_nan()), Verdict::Duplicate);
        assert_eq!(h.append(r + 1, 40, 1.0), Verdict::OutOfOrder);
        assert_eq!(h.num_samples(), 3);
    }

    #[test]
    fn chunks_are_cut_and_frozen_data_stays_queryable() {
        let mut h = Head::default();
        let l = labels("a");
        let r = h.create(Head::hash(&l), &l, (i64::MIN, 0), None);
        for i in 0..300 {
            assert_eq!(h.append(r, i * 1000, i as f64), Verdict::Accept);
        }
        let frozen = h.freeze();
        assert_eq!(frozen.len(), 1);
        assert_eq!(frozen[0].chunks.len(), 3);
        assert_eq!(h.append(r, 300_000, 300.0), Verdict::Accept);
        let snap = h.snapshot(&[r], 0, i64::MAX);
        let samples = decode_snapshot(&snap[0], 0, i64::MAX).unwrap();
        assert_eq!(samples.len(), 301);
        assert!(samples
            .windows(2)
            .all(|w| w[0].timestamp_ms < w[1].timestamp_ms));
        // order is kept across the freeze
        assert_eq!(h.append(r, 299_000, 1.0), Verdict::OutOfOrder);
        assert_eq!(h.release_frozen(), 0);
        assert_eq!(
            decode_snapshot(&h.snapshot(&[r], 0, i64::MAX)[0], 0, i64::MAX)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn idle_series_are_dropped_after_release() {
        let mut h = Head::default();
        let (a, b) = (labels("a"), labels("b"));
        let ra = h.create(Head::hash(&a), &a, (i64::MIN, 0), None);
        let rb = h.create(Head::hash(&b), &b, (i64::MIN, 0), None);
        h.append(ra, 1, 1.0);
        h.append(rb, 1, 1.0);
        h.freeze();
        h.append(rb, 2, 1.0);
        // both had samples in the interval just frozen
        assert_eq!(h.release_frozen(), 0);
        h.freeze();
        assert_eq!(h.release_frozen(), 1, "a was idle for a whole interval");
        assert_eq!(h.get_ref(Head::hash(&a), &a), None);
        assert_eq!(h.get_ref(Head::hash(&b), &b), Some(rb));
        assert_eq!(h.postings.all(), &[rb]);
        assert_eq!(h.labels_of(rb), Some(b));
    }

    #[test]
    fn hash_collisions_are_resolved_by_labels() {
        let mut h = Head::default();
        let (a, b) = (labels("a"), labels("b"));
        let ra = h.create(42, &a, (i64::MIN, 0), None);
        let rb = h.create(42, &b, (i64::MIN, 0), None);
        assert_eq!(h.get_ref(42, &a), Some(ra));
        assert_eq!(h.get_ref(42, &b), Some(rb));
        assert_eq!(h.append(rb, 1, 1.0), Verdict::Accept);
        assert_eq!(h.labels_in_range(&[ra, rb], 0, 10), vec![b]);
    }

    #[test]
    fn chunks_stay_in_memory_when_the_chunk_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Head::with_chunk_files(HeadChunks::failing(dir.path()).unwrap());
        let l = labels("a");
        let r = h.create(Head::hash(&l), &l, (i64::MIN, 0), None);
        for i in 0..1000 {
            assert_eq!(h.append(r, i * 1000, i as f64), Verdict::Accept);
        }
        let snap = h.snapshot(&[r], 0, i64::MAX);
        assert_eq!(decode_snapshot(&snap[0], 0, i64::MAX).unwrap().len(), 1000);
        let frozen = h.freeze();
        assert_eq!(frozen[0].samples().unwrap().len(), 1000);
        h.unfreeze();
        assert_eq!(h.num_samples(), 1000);
    }
}
