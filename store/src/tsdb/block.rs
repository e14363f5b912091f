//! Immutable on-disk blocks (format in `docs/format/tsdb.md`).
//!
//! A block is a directory `blocks/<id>/` with three files:
//! * `chunks`: zstd-compressed pages, each holding the re-encoded Gorilla chunks of
//!   consecutive series (a series's chunks are cut hourly once they hold 120 samples);
//! * `index`: the symbol table, the series (labels as symbol ids plus chunk references) in
//!   label order, and the page table, ending in a CRC-32;
//! * `meta.json`: time range, counts, format version, and the WAL segment the block covers.
//!
//! The postings are rebuilt from the series when the block is loaded, which keeps the file
//! format small and simple; loading costs one pass over the series.
//!
//! Writing goes to `blocks/.tmp-<id>/`, every file is fsynced, the directory is renamed into
//! place and `blocks/` fsynced, so a crash leaves either a whole block or a temp directory
//! that the next open deletes.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::chunk::{self, XorAppender};
use super::head::FrozenSeries;
use super::index::{
    hash_labels, labels_equal, resolve_labels, FxHashMap, IndexReader, MemIndex, MemPostings,
    SymLabels, SymbolTable,
};
use super::wal_records::{put_uvarint, put_varint, Reader};
use crate::contract::ReadCache;
use crate::error::{Result, StoreError};
use crate::fsutil::sync_dir;
use crate::model::{Labels, Sample};

pub const FORMAT_VERSION: u32 = 1;
const INDEX_MAGIC: &[u8; 4] = b"LKTI";
/// Raw bytes gathered before a page is compressed: big enough for zstd to find the
/// redundancy between neighbouring series, small enough that a query decompresses little.
const PAGE_RAW_BYTES: usize = 64 * 1024;
const ZSTD_LEVEL: i32 = 3;

/// `meta.json` of a block.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BlockMeta {
    pub version: u32,
    pub id: String,
    /// Inclusive time range of the samples, in ms.
    pub min_time: i64,
    pub max_time: i64,
    pub num_series: u64,
    pub num_samples: u64,
    pub num_chunks: u64,
    /// Every WAL record in segments with id <= this is contained in this block (or an
    /// earlier one): replay skips them.
    pub wal_segment_upto: u64,
    /// Bytes of the three files.
    pub size_bytes: u64,
    /// Ids of the blocks this one was compacted from (empty for a head flush). At open, a
    /// block listed here is a leftover of an interrupted compaction and is deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compacted_from: Vec<String>,
}

#[derive(Clone, Copy, Debug)]
struct ChunkMeta {
    /// [`chunk::ENCODING_XOR`] or [`chunk::ENCODING_DECIMAL`].
    encoding: u8,
    mint: i64,
    maxt: i64,
    page: u32,
    offset: u32,
    len: u32,
}

#[derive(Clone, Copy, Debug)]
struct PageMeta {
    file_offset: u64,
    compressed_len: u32,
    raw_len: u32,
}

/// A series being written: label symbol pairs, chunk references, last value bits.
type PendingSeries = (Vec<(u32, u32)>, Vec<ChunkMeta>, u64);

struct BlockSeries {
    labels: SymLabels,
    chunks: Box<[ChunkMeta]>,
    /// Bits of the newest sample's value: lets a series recreated in the head after a
    /// restart tell an identical re-send (duplicate) from a conflicting one.
    last_value: u64,
}

/// A loaded block: its index in memory, its chunks read from disk on demand.
pub struct Block {
    pub meta: BlockMeta,
    pub dir: PathBuf,
    index: MemIndex,
    series: Vec<BlockSeries>,
    by_hash: FxHashMap<u64, Vec<u32>>,
    pages: Vec<PageMeta>,
    chunks_file: File,
}

impl IndexReader for Block {
    fn symbols(&self) -> &SymbolTable {
        &self.index.symbols
    }
    fn postings(&self) -> &MemPostings {
        &self.index.postings
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| StoreError::io(path, e))?;
    f.write_all(bytes).map_err(|e| StoreError::io(path, e))?;
    f.sync_all().map_err(|e| StoreError::io(path, e))
}

/// One re-encoded chunk: encoding, bytes, time range, sample count.
struct Encoded {
    encoding: u8,
    data: Vec<u8>,
    mint: i64,
    maxt: i64,
    samples: u64,
}

/// A cheap stand-in for the zstd-compressed size of a decimal chunk: its columns of
/// varints are mostly runs of equal bytes (regular timestamps, steady rates), which zstd
/// shrinks to almost nothing, while XOR bit streams barely compress at all.
fn compressed_estimate(data: &[u8]) -> usize {
    let changes = data.windows(2).filter(|w| w[0] != w[1]).count();
    changes + data.len() / 16 + 1
}

/// A block's chunks are cut at the first hour boundary (UTC) after they hold
/// [`CHUNK_MIN_SAMPLES`]: a query decodes a chunk from its start, so a chunk spanning a whole
/// compacted day made an hour's query at the end of the day decode the day. An hour of a
/// 10 s series is 360 samples; slower series get longer chunks, so the per-chunk header
/// and first sample stay small next to the samples.
const CHUNK_CUT_MS: i64 = 3_600_000;
const CHUNK_MIN_SAMPLES: usize = 120;

/// The parts of a series' samples that become its chunks in a block: cut as
/// [`CHUNK_CUT_MS`] says, and never over 65,535 samples (an XOR chunk's count is a u16).
fn chunk_parts(samples: &[Sample]) -> Vec<&[Sample]> {
    let mut parts = Vec::new();
    let mut start = 0;
    for i in 1..samples.len() {
        let len = i - start;
        let new_hour = samples[i].timestamp_ms.div_euclid(CHUNK_CUT_MS)
            != samples[i - 1].timestamp_ms.div_euclid(CHUNK_CUT_MS);
        if (len >= CHUNK_MIN_SAMPLES && new_hour) || len >= usize::from(u16::MAX) {
            parts.push(&samples[start..i]);
            start = i;
        }
    }
    if start < samples.len() {
        parts.push(&samples[start..]);
    }
    parts
}

/// Encodes a series' samples into chunks ([`chunk_parts`]), choosing per chunk the smaller
/// of the decimal and XOR encodings. Returns the chunks and the newest value's bits.
fn encode_samples(samples: &[Sample]) -> (Vec<Encoded>, u64) {
    let Some(last) = samples.last() else {
        return (Vec::new(), 0);
    };
    let chunks = chunk_parts(samples).into_iter().map(encode_chunk).collect();
    (chunks, last.value.to_bits())
}

/// One chunk: decimal when every value qualifies and its estimated compressed size beats
/// the XOR encoding, XOR otherwise.
fn encode_chunk(part: &[Sample]) -> Encoded {
    let mut a = XorAppender::new();
    for s in part {
        a.append(s.timestamp_ms, s.value);
    }
    let c = a.finish();
    let samples = part.len() as u64;
    if let Some(dec) = chunk::encode_decimal(part) {
        if compressed_estimate(&dec) < c.data.len() {
            return Encoded {
                encoding: chunk::ENCODING_DECIMAL,
                data: dec,
                mint: c.mint,
                maxt: c.maxt,
                samples,
            };
        }
    }
    Encoded {
        encoding: chunk::ENCODING_XOR,
        data: c.data.into_vec(),
        mint: c.mint,
        maxt: c.maxt,
        samples,
    }
}

/// Builds a block in `blocks/.tmp-<id>/`: series are added in label order, their chunks
/// are packed into pages streamed to the `chunks` file, and [`BlockWriter::finish`] writes
/// the index and `meta.json` and fsyncs everything. [`publish`] then renames the directory
/// into place.
pub struct BlockWriter {
    tmp: PathBuf,
    id: String,
    chunks: BufWriter<File>,
    chunks_len: u64,
    symbols: SymbolTable,
    series: Vec<PendingSeries>,
    pages: Vec<PageMeta>,
    raw: Vec<u8>,
    min_time: i64,
    max_time: i64,
    num_samples: u64,
    num_chunks: u64,
}

impl BlockWriter {
    /// Starts a block `id` in `blocks_dir/.tmp-<id>/`, replacing a leftover of that name.
    pub fn create(blocks_dir: &Path, id: &str) -> Result<BlockWriter> {
        let tmp = blocks_dir.join(format!(".tmp-{id}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        }
        fs::create_dir_all(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        let path = tmp.join("chunks");
        let file = File::create(&path).map_err(|e| StoreError::io(&path, e))?;
        Ok(BlockWriter {
            tmp,
            id: id.to_string(),
            chunks: BufWriter::with_capacity(1 << 20, file),
            chunks_len: 0,
            symbols: SymbolTable::default(),
            series: Vec::new(),
            pages: Vec::new(),
            raw: Vec::with_capacity(PAGE_RAW_BYTES * 2),
            min_time: i64::MAX,
            max_time: i64::MIN,
            num_samples: 0,
            num_chunks: 0,
        })
    }

    /// The temporary directory the block is written to.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Adds one series (labels sorted by name, samples in time order, series in label
    /// order across calls).
    pub fn add_series<'a>(
        &mut self,
        labels: impl Iterator<Item = (&'a str, &'a str)>,
        samples: &[Sample],
    ) -> Result<()> {
        let labels: Vec<(u32, u32)> = labels
            .map(|(n, v)| (self.symbols.intern(n), self.symbols.intern(v)))
            .collect();
        let mut metas = Vec::new();
        let (chunks, last_value) = encode_samples(samples);
        for c in chunks {
            self.num_samples += c.samples;
            self.num_chunks += 1;
            self.min_time = self.min_time.min(c.mint);
            self.max_time = self.max_time.max(c.maxt);
            metas.push(ChunkMeta {
                encoding: c.encoding,
                mint: c.mint,
                maxt: c.maxt,
                page: self.pages.len() as u32,
                offset: self.raw.len() as u32,
                len: c.data.len() as u32,
            });
            self.raw.extend_from_slice(&c.data);
        }
        if self.raw.len() >= PAGE_RAW_BYTES {
            self.flush_page()?;
        }
        self.series.push((labels, metas, last_value));
        Ok(())
    }

    fn flush_page(&mut self) -> Result<()> {
        if self.raw.is_empty() {
            return Ok(());
        }
        let path = self.tmp.join("chunks");
        let compressed =
            zstd::bulk::compress(&self.raw, ZSTD_LEVEL).map_err(|e| StoreError::io(&path, e))?;
        self.pages.push(PageMeta {
            file_offset: self.chunks_len,
            compressed_len: compressed.len() as u32,
            raw_len: self.raw.len() as u32,
        });
        self.chunks
            .write_all(&compressed)
            .map_err(|e| StoreError::io(&path, e))?;
        self.chunks_len += compressed.len() as u64;
        self.raw.clear();
        Ok(())
    }

    /// Writes the index and `meta.json` and fsyncs the files and the directory. Returns the
    /// meta and the temporary directory, which [`publish`] moves into place.
    pub fn finish(
        mut self,
        wal_segment_upto: u64,
        compacted_from: Vec<String>,
    ) -> Result<(BlockMeta, PathBuf)> {
        self.flush_page()?;
        let chunks_path = self.tmp.join("chunks");
        let file = self
            .chunks
            .into_inner()
            .map_err(|e| StoreError::io(&chunks_path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| StoreError::io(&chunks_path, e))?;
        let tmp = self.tmp;

        let mut index = Vec::new();
        index.extend_from_slice(INDEX_MAGIC);
        put_uvarint(&mut index, u64::from(FORMAT_VERSION));
        put_uvarint(&mut index, self.symbols.len() as u64);
        for id in 0..self.symbols.len() as u32 {
            super::wal_records::put_str(&mut index, self.symbols.get(id));
        }
        put_uvarint(&mut index, self.series.len() as u64);
        for (labels, metas, last_value) in &self.series {
            put_uvarint(&mut index, labels.len() as u64);
            for &(n, v) in labels {
                put_uvarint(&mut index, u64::from(n));
                put_uvarint(&mut index, u64::from(v));
            }
            put_uvarint(&mut index, metas.len() as u64);
            for m in metas {
                index.push(m.encoding);
                put_varint(&mut index, m.mint);
                put_uvarint(&mut index, m.maxt.wrapping_sub(m.mint) as u64);
                put_uvarint(&mut index, u64::from(m.page));
                put_uvarint(&mut index, u64::from(m.offset));
                put_uvarint(&mut index, u64::from(m.len));
            }
            index.extend_from_slice(&last_value.to_le_bytes());
        }
        put_uvarint(&mut index, self.pages.len() as u64);
        for p in &self.pages {
            put_uvarint(&mut index, p.file_offset);
            put_uvarint(&mut index, u64::from(p.compressed_len));
            put_uvarint(&mut index, u64::from(p.raw_len));
        }
        let crc = crc32fast::hash(&index);
        index.extend_from_slice(&crc.to_be_bytes());

        let (min_time, max_time) = if self.num_samples == 0 {
            (0, 0)
        } else {
            (self.min_time, self.max_time)
        };
        let mut meta = BlockMeta {
            version: FORMAT_VERSION,
            id: self.id,
            min_time,
            max_time,
            num_series: self.series.len() as u64,
            num_samples: self.num_samples,
            num_chunks: self.num_chunks,
            wal_segment_upto,
            size_bytes: 0,
            compacted_from,
        };
        write_file(&tmp.join("index"), &index)?;
        let meta_path = tmp.join("meta.json");
        let mut meta_json = serde_json::to_vec_pretty(&meta)
            .map_err(|e| corrupt(&meta_path, format!("encoding meta: {e}")))?;
        meta.size_bytes = self.chunks_len + (index.len() + meta_json.len()) as u64;
        meta_json = serde_json::to_vec_pretty(&meta)
            .map_err(|e| corrupt(&meta_path, format!("encoding meta: {e}")))?;
        write_file(&meta_path, &meta_json)?;
        sync_dir(&tmp)?;
        Ok((meta, tmp))
    }
}

/// Moves a finished block from `tmp` to `blocks_dir/<id>` and fsyncs `blocks_dir`, the
/// step that makes the block exist for the next open.
pub fn publish(blocks_dir: &Path, tmp: &Path, id: &str) -> Result<PathBuf> {
    let final_dir = blocks_dir.join(id);
    fs::rename(tmp, &final_dir).map_err(|e| StoreError::io(&final_dir, e))?;
    sync_dir(blocks_dir)?;
    Ok(final_dir)
}

/// Writes a block from frozen head series into `blocks_dir` and returns its meta.
/// Blocking: run in `spawn_blocking`.
pub fn write_block(
    blocks_dir: &Path,
    id: &str,
    series: &[FrozenSeries],
    wal_segment_upto: u64,
) -> Result<BlockMeta> {
    let mut order: Vec<usize> = (0..series.len()).collect();
    order.sort_by(|&a, &b| series[a].labels.cmp(&series[b].labels));
    let mut w = BlockWriter::create(blocks_dir, id)?;
    for &i in &order {
        let s = &series[i];
        let samples = s.samples()?;
        w.add_series(s.labels.iter().map(|(n, v)| (&**n, &**v)), &samples)?;
    }
    let (meta, tmp) = w.finish(wal_segment_upto, Vec::new())?;
    publish(blocks_dir, &tmp, id)?;
    Ok(meta)
}

fn read_u32(r: &mut Reader<'_>, path: &Path, what: &str) -> Result<u32> {
    let v = r
        .uvarint()
        .map_err(|e| corrupt(path, format!("{what}: {e}")))?;
    u32::try_from(v).map_err(|_| corrupt(path, format!("{what} {v} out of range")))
}

impl Block {
    /// Loads a block directory. Blocking.
    pub fn open(dir: &Path) -> Result<Block> {
        let meta_path = dir.join("meta.json");
        let meta_bytes = fs::read(&meta_path).map_err(|e| StoreError::io(&meta_path, e))?;
        let meta: BlockMeta = serde_json::from_slice(&meta_bytes)
            .map_err(|e| corrupt(&meta_path, format!("invalid block meta: {e}")))?;
        if meta.version != FORMAT_VERSION {
            return Err(corrupt(
                &meta_path,
                format!(
                    "block format version {} is not supported (this build reads {FORMAT_VERSION})",
                    meta.version
                ),
            ));
        }
        let index_path = dir.join("index");
        let bytes = fs::read(&index_path).map_err(|e| StoreError::io(&index_path, e))?;
        let p = index_path.as_path();
        if bytes.len() < 8 || &bytes[..4] != INDEX_MAGIC {
            return Err(corrupt(p, "missing index magic"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let want = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32fast::hash(body) != want {
            return Err(corrupt(p, "index checksum mismatch"));
        }
        let mut r = Reader::new(&body[4..]);
        let version = read_u32(&mut r, p, "index version")?;
        if version != FORMAT_VERSION {
            return Err(corrupt(
                p,
                format!("index version {version} is not supported"),
            ));
        }
        let mut index = MemIndex::default();
        let nsym = read_u32(&mut r, p, "symbol count")?;
        for _ in 0..nsym {
            let s = r.str().map_err(|e| corrupt(p, format!("symbol: {e}")))?;
            index.symbols.intern(s);
        }
        let nseries = read_u32(&mut r, p, "series count")?;
        let mut series = Vec::with_capacity((nseries as usize).min(1 << 20));
        let mut by_hash: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
        let mut pages_seen = 0u32;
        for id in 0..nseries {
            let nl = read_u32(&mut r, p, "label count")?;
            let mut labels = Vec::with_capacity((nl as usize).min(256));
            for _ in 0..nl {
                let n = read_u32(&mut r, p, "label name")?;
                let v = read_u32(&mut r, p, "label value")?;
                if n >= nsym || v >= nsym {
                    return Err(corrupt(p, format!("series {id} refers to unknown symbol")));
                }
                labels.push((n, v));
            }
            let nc = read_u32(&mut r, p, "chunk count")?;
            let mut chunks = Vec::with_capacity((nc as usize).min(4096));
            for _ in 0..nc {
                let encoding = r
                    .u8()
                    .map_err(|e| corrupt(p, format!("chunk encoding: {e}")))?;
                if encoding > chunk::ENCODING_DECIMAL {
                    return Err(corrupt(
                        p,
                        format!("series {id} has a chunk of unknown encoding {encoding}"),
                    ));
                }
                let mint = r
                    .varint()
                    .map_err(|e| corrupt(p, format!("chunk mint: {e}")))?;
                let span = r
                    .uvarint()
                    .map_err(|e| corrupt(p, format!("chunk span: {e}")))?;
                let page = read_u32(&mut r, p, "chunk page")?;
                let offset = read_u32(&mut r, p, "chunk offset")?;
                let len = read_u32(&mut r, p, "chunk length")?;
                pages_seen = pages_seen.max(page.saturating_add(1));
                chunks.push(ChunkMeta {
                    encoding,
                    mint,
                    maxt: mint.wrapping_add(span as i64),
                    page,
                    offset,
                    len,
                });
            }
            let last_value = r
                .u64_le()
                .map_err(|e| corrupt(p, format!("last value: {e}")))?;
            let labels: SymLabels = labels.into();
            index.postings.add(id, &labels);
            let hash = hash_labels(
                labels
                    .iter()
                    .map(|&(n, v)| (index.symbols.get(n), index.symbols.get(v))),
            );
            by_hash.entry(hash).or_default().push(id);
            series.push(BlockSeries {
                labels,
                chunks: chunks.into(),
                last_value,
            });
        }
        let npages = read_u32(&mut r, p, "page count")?;
        if npages < pages_seen {
            return Err(corrupt(
                p,
                format!("chunks refer to page {pages_seen} of {npages}"),
            ));
        }
        let mut pages = Vec::with_capacity((npages as usize).min(1 << 16));
        for _ in 0..npages {
            let file_offset = r
                .uvarint()
                .map_err(|e| corrupt(p, format!("page offset: {e}")))?;
            let compressed_len = read_u32(&mut r, p, "page length")?;
            let raw_len = read_u32(&mut r, p, "page raw length")?;
            pages.push(PageMeta {
                file_offset,
                compressed_len,
                raw_len,
            });
        }
        let chunks_path = dir.join("chunks");
        let chunks_file = File::open(&chunks_path).map_err(|e| StoreError::io(&chunks_path, e))?;
        Ok(Block {
            meta,
            dir: dir.to_path_buf(),
            index,
            series,
            by_hash,
            pages,
            chunks_file,
        })
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.meta.num_samples > 0 && self.meta.max_time >= mint && self.meta.min_time <= maxt
    }

    /// Local id of the series with exactly `labels`.
    fn find(&self, labels: &Labels) -> Option<u32> {
        let hash = hash_labels(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
        self.by_hash.get(&hash)?.iter().copied().find(|&id| {
            self.series
                .get(id as usize)
                .is_some_and(|s| labels_equal(&self.index.symbols, &s.labels, labels))
        })
    }

    /// Newest sample (timestamp, value bits) of the series with `labels` in this block.
    pub fn series_newest(&self, labels: &Labels) -> Option<(i64, u64)> {
        let id = self.find(labels)?;
        let s = self.series.get(id as usize)?;
        Some((s.chunks.last()?.maxt, s.last_value))
    }

    pub fn labels_of(&self, id: u32) -> Option<Labels> {
        self.series
            .get(id as usize)
            .map(|s| resolve_labels(&self.index.symbols, &s.labels))
    }

    /// Whether series `id` has a chunk overlapping `[mint, maxt]`.
    pub fn has_data(&self, id: u32, mint: i64, maxt: i64) -> bool {
        self.series
            .get(id as usize)
            .is_some_and(|s| s.chunks.iter().any(|c| c.maxt >= mint && c.mint <= maxt))
    }

    fn read_page(&self, page: u32) -> Result<Vec<u8>> {
        let path = self.dir.join("chunks");
        let pm = self
            .pages
            .get(page as usize)
            .ok_or_else(|| corrupt(&path, format!("page {page} does not exist")))?;
        let mut buf = vec![0u8; pm.compressed_len as usize];
        self.chunks_file
            .read_exact_at(&mut buf, pm.file_offset)
            .map_err(|e| StoreError::io(&path, e))?;
        let raw = crate::zstd_pages::decompress(&buf, pm.raw_len as usize)
            .map_err(|e| corrupt(&path, format!("page {page} does not decompress: {e}")))?;
        if raw.len() != pm.raw_len as usize {
            return Err(corrupt(
                &path,
                format!(
                    "page {page} has {} bytes, index says {}",
                    raw.len(),
                    pm.raw_len
                ),
            ));
        }
        Ok(raw)
    }

    /// Samples of series `id` within `[mint, maxt]`, in time order. `pages` caches
    /// decompressed pages for the duration of one query.
    pub fn samples(
        &self,
        id: u32,
        mint: i64,
        maxt: i64,
        pages: &mut HashMap<u32, Arc<Vec<u8>>>,
        out: &mut Vec<Sample>,
    ) -> Result<()> {
        self.samples_with(id, mint, maxt, out, &mut |page| match pages.get(&page) {
            Some(p) => Ok(p.clone()),
            None => {
                let p = Arc::new(self.read_page(page)?);
                pages.insert(page, p.clone());
                Ok(p)
            }
        })
    }

    /// [`Block::samples`] with pages kept in a reader's bounded [`ReadCache`], keyed by
    /// `cache_key` (unique among the blocks the reader holds).
    pub fn samples_cached(
        &self,
        id: u32,
        mint: i64,
        maxt: i64,
        cache_key: usize,
        cache: &mut ReadCache,
        out: &mut Vec<Sample>,
    ) -> Result<()> {
        self.samples_with(id, mint, maxt, out, &mut |page| {
            cache.page(cache_key, page, || self.read_page(page))
        })
    }

    fn samples_with(
        &self,
        id: u32,
        mint: i64,
        maxt: i64,
        out: &mut Vec<Sample>,
        page_of: &mut dyn FnMut(u32) -> Result<Arc<Vec<u8>>>,
    ) -> Result<()> {
        let Some(s) = self.series.get(id as usize) else {
            return Ok(());
        };
        let path = self.dir.join("chunks");
        for c in s.chunks.iter().filter(|c| c.maxt >= mint && c.mint <= maxt) {
            let page = page_of(c.page)?;
            let start = c.offset as usize;
            let data = start
                .checked_add(c.len as usize)
                .and_then(|end| page.get(start..end))
                .ok_or_else(|| {
                    corrupt(
                        &path,
                        format!("chunk at {start}+{} is past page {}", c.len, c.page),
                    )
                })?;
            chunk::decode_encoded_into(c.encoding, data, mint, maxt, out)
                .map_err(|e| corrupt(&path, format!("series {id}: {e}")))?;
        }
        Ok(())
    }

    /// Number of series; their local ids are `0..num_series()`.
    pub fn num_series(&self) -> u32 {
        self.series.len() as u32
    }

    /// The first page holding a chunk of series `id`. Pages are written in series order, so
    /// a reader going through the series in order no longer needs earlier pages.
    pub fn first_page(&self, id: u32) -> Option<u32> {
        self.series
            .get(id as usize)
            .and_then(|s| s.chunks.first())
            .map(|c| c.page)
    }

    /// Reads and decompresses every page and checks each chunk reference lies inside its
    /// page: a check that the `chunks` file matches the index.
    pub fn verify_pages(&self) -> Result<()> {
        let path = self.dir.join("chunks");
        let mut sizes = Vec::with_capacity(self.pages.len());
        for page in 0..self.pages.len() as u32 {
            sizes.push(self.read_page(page)?.len());
        }
        for (id, s) in self.series.iter().enumerate() {
            for c in s.chunks.iter() {
                let end = u64::from(c.offset) + u64::from(c.len);
                let size = sizes.get(c.page as usize).copied().unwrap_or(0) as u64;
                if end > size {
                    return Err(corrupt(
                        &path,
                        format!("series {id}: chunk ends at {end}, past page {}", c.page),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Approximate heap bytes of the loaded index, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        let series: usize = self
            .series
            .iter()
            .map(|s| s.labels.len() * 8 + s.chunks.len() * 32 + 32)
            .sum();
        series
            + self.index.symbols.heap_bytes()
            + self.index.postings.heap_bytes()
            + self.by_hash.len() * 40
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::contract::{LabelMatcher, MatchOp};
    use crate::model::{stale_nan, STALE_NAN_BITS};
    use crate::tsdb::head::Head;
    use crate::tsdb::index::postings_for_matchers;

    pub(crate) fn sample_head() -> Head {
        let mut h = Head::default();
        for job in ["api", "db", "web"] {
            for inst in 0..5 {
                let l = Labels::from_pairs([
                    ("__name__", "http_requests_total"),
                    ("job", job),
                    ("instance", &format!("10.0.0.{inst}:9100")),
                ]);
                let r = h.create(Head::hash(&l), &l, (i64::MIN, 0), None);
                for i in 0..400 {
                    h.append(r, 1_700_000_000_000 + i * 10_000, (i * inst) as f64);
                }
                // a stale marker (NaN) keeps even instances' last chunk XOR-encoded; the
                // rest is decimal
                if inst % 2 == 0 {
                    h.append(r, 1_700_000_000_000 + 400 * 10_000, stale_nan());
                }
            }
        }
        h
    }

    #[test]
    fn write_then_load_and_query() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = sample_head();
        let frozen = h.freeze();
        let meta = write_block(dir.path(), "b1", &frozen, 7).unwrap();
        assert_eq!(meta.num_series, 15);
        assert_eq!(meta.num_samples, 15 * 400 + 9);
        // 22:13:20 to 23:20 UTC: cut at 23:00, after 280 samples
        assert_eq!(meta.num_chunks, 30);
        assert_eq!(meta.wal_segment_upto, 7);
        let b = Block::open(&dir.path().join("b1")).unwrap();
        assert_eq!(b.meta, meta);
        let m = LabelMatcher::new("job", MatchOp::Equal, "db").unwrap();
        let ids = postings_for_matchers(&b, &[m]);
        assert_eq!(ids.len(), 5);
        let mut cache = HashMap::new();
        let mut out = Vec::new();
        b.samples(
            ids[2],
            1_700_000_000_000,
            1_700_000_000_000 + 100 * 10_000,
            &mut cache,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 101);
        assert_eq!(out[100].value, 200.0);
        // a window across the cut reads both chunks
        out.clear();
        let cut = 1_700_002_800_000;
        b.samples(ids[2], cut - 30_000, cut + 20_000, &mut cache, &mut out)
            .unwrap();
        let times: Vec<i64> = out.iter().map(|s| s.timestamp_ms).collect();
        assert_eq!(
            times,
            (-3..=2).map(|i| cut + i * 10_000).collect::<Vec<_>>()
        );
        out.clear();
        b.samples(ids[2], i64::MIN, i64::MAX, &mut cache, &mut out)
            .unwrap();
        assert_eq!(out.last().map(|s| s.value.to_bits()), Some(STALE_NAN_BITS));
        let labels = b.labels_of(ids[0]).unwrap();
        assert_eq!(
            b.series_newest(&labels),
            Some((1_700_000_000_000 + 400 * 10_000, STALE_NAN_BITS))
        );
        // series are stored in label order
        let all: Vec<Labels> = (0..15).filter_map(|i| b.labels_of(i)).collect();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(all, sorted);
        assert!(b.overlaps(0, 1_700_000_000_000));
        assert!(!b.overlaps(0, 1_600_000_000_000));
    }

    #[test]
    fn chunks_are_cut_at_hours_once_they_hold_enough_samples() {
        let series = |start: i64, step: i64, n: i64| -> Vec<Sample> {
            (0..n)
                .map(|i| Sample::new(start + i * step, i as f64))
                .collect()
        };
        let hour = CHUNK_CUT_MS;
        let lens = |s: &[Sample]| chunk_parts(s).iter().map(|p| p.len()).collect::<Vec<_>>();
        // 10 s from 00:30: the first part ends at 01:00 only if it has 120 samples (it has
        // 180), then one part per hour
        assert_eq!(
            lens(&series(hour / 2, 10_000, 1080)),
            vec![180, 360, 360, 180]
        );
        // 60 s: an hour is 60 samples, so parts run to the first hour boundary past 120
        assert_eq!(lens(&series(0, 60_000, 300)), vec![120, 120, 60]);
        // never over 65,535 samples, whatever the span
        assert_eq!(lens(&series(0, 1, 70_000)), vec![65_535, 4_465]);
        assert!(chunk_parts(&[]).is_empty());
        assert_eq!(lens(&series(0, 10_000, 1)), vec![1]);
    }

    #[test]
    fn corrupt_index_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = sample_head();
        write_block(dir.path(), "b1", &h.freeze(), 1).unwrap();
        let idx = dir.path().join("b1/index");
        let mut bytes = fs::read(&idx).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(&idx, &bytes).unwrap();
        let err = Block::open(&dir.path().join("b1")).err().unwrap();
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    /// The committed fixture (written by format version 1) must keep loading.
    #[test]
    fn fixture_block_still_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/tsdb/block-v1");
        let b = Block::open(&dir).unwrap();
        assert_eq!(b.meta.num_series, 15);
        assert_eq!(b.meta.num_samples, 15 * 400 + 9);
        let m = LabelMatcher::new("instance", MatchOp::RegexMatch, "10.0.0.3:.*").unwrap();
        let ids = postings_for_matchers(&b, &[m]);
        assert_eq!(ids.len(), 3);
        let mut out = Vec::new();
        b.samples(ids[0], i64::MIN, i64::MAX, &mut HashMap::new(), &mut out)
            .unwrap();
        assert_eq!(out.len(), 400);
        assert_eq!(
            b.series[ids[0] as usize].chunks[0].encoding,
            chunk::ENCODING_DECIMAL
        );
        assert_eq!(out[10], Sample::new(1_700_000_000_000 + 100_000, 30.0));
        let m = LabelMatcher::new("instance", MatchOp::Equal, "10.0.0.4:9100").unwrap();
        let ids = postings_for_matchers(&b, &[m]);
        assert_eq!(
            b.series[ids[0] as usize].chunks[0].encoding,
            chunk::ENCODING_XOR
        );
        out.clear();
        b.samples(ids[0], i64::MIN, i64::MAX, &mut HashMap::new(), &mut out)
            .unwrap();
        assert_eq!(out.len(), 401);
        assert_eq!(out[400].value.to_bits(), STALE_NAN_BITS);
    }

    /// Regenerates the fixture: `cargo test -p lookout-store regenerate_fixture -- --ignored`.
    #[test]
    #[ignore]
    fn regenerate_fixture() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/tsdb");
        fs::create_dir_all(&dir).unwrap();
        let _ = fs::remove_dir_all(dir.join("block-v1"));
        let mut h = sample_head();
        write_block(&dir, "block-v1", &h.freeze(), 3).unwrap();
    }
}
