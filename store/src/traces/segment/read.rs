//! Reading a segment: footer and meta at open, then index blocks, pages and column blocks
//! on demand, each checked against its CRC.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::error::Result;
use crate::traces::bloom::Bloom;
use crate::traces::codec;
use crate::traces::model::{Resource, StoredSpan};
use crate::traces::query::{Candidates, Filter, Named, Partial};
use crate::tsdb::index::FxHashMap;

struct ColumnBlock {
    min_start: u64,
    max_start: u64,
    count: usize,
    section: Section,
}

struct IndexBlock {
    first: TraceId,
    count: usize,
    section: Section,
}

/// One operation of the segment: `(service, name, kind)` symbols and its start range.
type Op = (u32, u32, SpanKind, u64, u64);

/// A loaded segment: meta in memory, everything else read on demand.
pub struct Segment {
    pub id: u64,
    pub path: PathBuf,
    file: File,
    pub size_bytes: u64,
    pub span_count: u64,
    pub trace_count: u64,
    pub min_start: u64,
    pub max_start: u64,
    pub max_end: u64,
    /// Every WAL segment up to this one is contained in this segment or an earlier one.
    pub wal_upto: u64,
    syms: Vec<Arc<str>>,
    sym_ids: FxHashMap<Arc<str>, u32>,
    resources: Vec<Arc<Resource>>,
    ops: Vec<Op>,
    pages: Vec<Section>,
    index_blocks: Vec<IndexBlock>,
    column_blocks: Vec<ColumnBlock>,
    error_count: usize,
    errors: Section,
    bloom: Bloom,
}

/// A span's search fields read from a column block.
pub struct ColumnRow {
    pub trace_id: TraceId,
    pub start: u64,
    pub duration: u64,
    pub service: u32,
    pub name: u32,
    pub kind: SpanKind,
    pub page: u32,
    pub offset: u32,
}

/// Symbol ids of a search's service and operation in one segment.
#[derive(Clone, Copy, Debug)]
pub struct Resolved {
    service: Option<u32>,
    name: Option<u32>,
}

/// Pages decompressed during one search, bounded.
#[derive(Default)]
pub struct PageCache {
    pages: FxHashMap<(u64, u32), Arc<Vec<u8>>>,
}

const PAGE_CACHE_ENTRIES: usize = 32;

impl Segment {
    /// Loads a segment's footer and meta. Any damage is a `Corrupt` error naming the file.
    pub fn open(id: u64, path: &Path) -> Result<Segment> {
        let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
        let size = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
        if size < HEADER_LEN + FOOTER_LEN {
            return Err(corrupt(
                path,
                format!("file of {size} bytes is too short to be a trace segment"),
            ));
        }
        let mut header = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut header, 0)
            .map_err(|e| StoreError::io(path, e))?;
        if header[..4] != MAGIC {
            return Err(corrupt(path, "not a trace segment (bad magic)"));
        }
        let mut footer = [0u8; FOOTER_LEN as usize];
        file.read_exact_at(&mut footer, size - FOOTER_LEN)
            .map_err(|e| StoreError::io(path, e))?;
        let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let version = le32(&footer[20..24]);
        if footer[24..28] != MAGIC {
            return Err(corrupt(
                path,
                "segment footer missing (bad magic): the file is truncated or damaged",
            ));
        }
        let header_version = le32(&header[4..8]);
        if version != VERSION || header_version != VERSION {
            return Err(corrupt(
                path,
                format!(
                    "segment format version {header_version}/{version} is not supported (this build reads {VERSION})"
                ),
            ));
        }
        let mut off = [0u8; 8];
        off.copy_from_slice(&footer[..8]);
        let meta_section = Section {
            offset: u64::from_le_bytes(off),
            clen: le32(&footer[8..12]),
            raw_len: le32(&footer[12..16]),
            crc: le32(&footer[16..20]),
        };
        let data_end = size - FOOTER_LEN;
        let meta = read_raw(&file, path, &meta_section, data_end, "meta")?;
        let seg = parse_meta(id, path, file, size, &meta).map_err(|e| rec(path, "meta", e))?;
        seg.check_sections(meta_section.offset)?;
        Ok(seg)
    }

    fn check_sections(&self, data_end: u64) -> Result<()> {
        let all = self
            .pages
            .iter()
            .chain(self.index_blocks.iter().map(|b| &b.section))
            .chain(self.column_blocks.iter().map(|b| &b.section))
            .chain(std::iter::once(&self.errors));
        for s in all {
            if s.offset < HEADER_LEN || s.offset.saturating_add(u64::from(s.clen)) > data_end {
                return Err(corrupt(
                    &self.path,
                    format!(
                        "section at {} of {} bytes lies outside the data area",
                        s.offset, s.clen
                    ),
                ));
            }
        }
        Ok(())
    }

    fn sym(&self, id: u32) -> Result<&str> {
        self.syms
            .get(id as usize)
            .map(|s| &**s)
            .ok_or_else(|| corrupt(&self.path, format!("string {id} out of range")))
    }

    fn read(&self, s: &Section, what: &str) -> Result<Vec<u8>> {
        read_raw(&self.file, &self.path, s, u64::MAX, what)
    }

    fn page(&self, page: u32, cache: &mut PageCache) -> Result<Arc<Vec<u8>>> {
        if let Some(p) = cache.pages.get(&(self.id, page)) {
            return Ok(p.clone());
        }
        let s = self
            .pages
            .get(page as usize)
            .ok_or_else(|| corrupt(&self.path, format!("page {page} out of range")))?;
        let raw = Arc::new(self.read(s, "span page")?);
        if cache.pages.len() >= PAGE_CACHE_ENTRIES {
            cache.pages.clear();
        }
        cache.pages.insert((self.id, page), raw.clone());
        Ok(raw)
    }

    fn find(&self, id: &TraceId) -> Result<Option<Entry>> {
        if !self.bloom.may_contain(id) {
            return Ok(None);
        }
        let i = self.index_blocks.partition_point(|b| b.first <= *id);
        let Some(block) = i.checked_sub(1).and_then(|i| self.index_blocks.get(i)) else {
            return Ok(None);
        };
        let raw = self.read(&block.section, "trace index block")?;
        let mut r = Reader::new(&raw);
        for _ in 0..block.count {
            let e = decode_entry(&mut r).map_err(|e| rec(&self.path, "trace index block", e))?;
            if e.trace_id == *id {
                return Ok(Some(e));
            }
            if e.trace_id > *id {
                break;
            }
        }
        Ok(None)
    }

    /// Appends every span of the trace held by this segment.
    pub fn trace_spans(&self, id: &TraceId, out: &mut Vec<StoredSpan>) -> Result<()> {
        let Some(e) = self.find(id)? else {
            return Ok(());
        };
        let mut cache = PageCache::default();
        let mut page = e.page;
        let mut offset = e.offset as usize;
        let mut left = e.len;
        while left > 0 {
            let raw = self.page(page, &mut cache)?;
            let mut r = Reader::new(raw.get(offset..).unwrap_or(&[]));
            if r.buf.is_empty() {
                return Err(corrupt(
                    &self.path,
                    format!("trace {id} runs past the end of page {page}"),
                ));
            }
            while !r.is_empty() && left > 0 {
                let before = r.pos;
                let stored = self.span_record(&mut r)?;
                if stored.span.trace_id != *id {
                    return Err(corrupt(
                        &self.path,
                        format!("trace index points at a span of another trace for {id}"),
                    ));
                }
                out.push(stored);
                left = left.saturating_sub((r.pos - before) as u64);
            }
            page += 1;
            offset = 0;
        }
        Ok(())
    }

    /// Decodes the span record at the reader's position.
    fn span_record(&self, r: &mut Reader<'_>) -> Result<StoredSpan> {
        let (res, bytes) = self.record_bytes(r)?;
        let span = codec::decode_span(bytes).map_err(|e| rec(&self.path, "span", e))?;
        Ok(StoredSpan {
            resource: res.clone(),
            span,
        })
    }

    fn record_bytes<'a>(&self, r: &mut Reader<'a>) -> Result<(&Arc<Resource>, &'a [u8])> {
        let err = |e| rec(&self.path, "span record", e);
        let res = r.uvarint().map_err(err)?;
        let len = r.uvarint().map_err(err)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let bytes = r.bytes(len).map_err(err)?;
        let res = self
            .resources
            .get(res as usize)
            .ok_or_else(|| corrupt(&self.path, format!("resource {res} out of range")))?;
        Ok((res, bytes))
    }

    /// The trace's summary fields over this segment's spans.
    pub fn partial(&self, id: &TraceId) -> Result<Option<Partial>> {
        let Some(e) = self.find(id)? else {
            return Ok(None);
        };
        let p = &e.partial;
        let mut services = BTreeSet::new();
        for &s in &p.services {
            services.insert(self.sym(s)?.to_string());
        }
        let root = match p.root {
            Some((start, svc, name)) => Some(Named {
                start,
                service: self.sym(svc)?.to_string(),
                operation: self.sym(name)?.to_string(),
            }),
            None => None,
        };
        Ok(Some(Partial {
            span_count: p.span_count,
            error_count: p.error_count,
            min_start: p.min_start,
            max_end: p.max_end,
            root,
            earliest: Some(Named {
                start: p.min_start,
                service: self.sym(p.earliest.0)?.to_string(),
                operation: self.sym(p.earliest.1)?.to_string(),
            }),
            services,
        }))
    }

    /// Adds the ids of this segment's traces with an error span.
    pub fn error_traces(&self, out: &mut HashSet<TraceId>) -> Result<()> {
        if self.error_count == 0 {
            return Ok(());
        }
        let raw = self.read(&self.errors, "error trace list")?;
        if self.error_count.checked_mul(16) != Some(raw.len()) {
            return Err(corrupt(&self.path, "error trace list has the wrong length"));
        }
        for c in raw.chunks_exact(16) {
            let mut id = [0u8; 16];
            id.copy_from_slice(c);
            out.insert(TraceId(id));
        }
        Ok(())
    }

    /// The search's service and operation as this segment's symbols; None when the segment
    /// cannot match (it has no such service or operation).
    pub fn resolve(&self, f: &Filter) -> Option<Resolved> {
        let lookup = |s: &Option<String>| match s {
            Some(s) => self.sym_ids.get(s.as_str()).copied().map(Some),
            None => Some(None),
        };
        let r = Resolved {
            service: lookup(&f.service)?,
            name: lookup(&f.operation)?,
        };
        // the operation table says whether any span can pass service, name, kind and time
        let possible = self.ops.iter().any(|&(svc, name, kind, lo, hi)| {
            r.service.is_none_or(|s| s == svc)
                && r.name.is_none_or(|n| n == name)
                && f.kind.is_none_or(|k| k == kind)
                && f.overlaps(lo, hi)
        });
        possible.then_some(r)
    }

    /// Column blocks that can hold spans starting in the filter's range, with their
    /// newest start.
    pub fn blocks_for(&self, f: &Filter) -> Vec<(usize, u64)> {
        if !f.overlaps(self.min_start, self.max_start) {
            return Vec::new();
        }
        self.column_blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| f.overlaps(b.min_start, b.max_start))
            .map(|(i, b)| (i, b.max_start))
            .collect()
    }

    fn column_rows(&self, block: usize) -> Result<Vec<ColumnRow>> {
        let b = self
            .column_blocks
            .get(block)
            .ok_or_else(|| corrupt(&self.path, format!("column block {block} out of range")))?;
        let raw = self.read(&b.section, "column block")?;
        let mut r = Reader::new(&raw);
        let mut rows = Vec::with_capacity(b.count);
        let err = |e| rec(&self.path, "column block", e);
        for _ in 0..b.count {
            let trace_id = read_id(&mut r).map_err(err)?;
            let start = b.min_start.wrapping_add(r.uvarint().map_err(err)?);
            let duration = r.uvarint().map_err(err)?;
            let service = read_u32v(&mut r).map_err(err)?;
            let name = read_u32v(&mut r).map_err(err)?;
            let k = r.u8().map_err(err)?;
            let kind = kind_of(k, &r).map_err(err)?;
            let page = read_u32v(&mut r).map_err(err)?;
            let offset = read_u32v(&mut r).map_err(err)?;
            rows.push(ColumnRow {
                trace_id,
                start,
                duration,
                service,
                name,
                kind,
                page,
                offset,
            });
        }
        Ok(rows)
    }

    /// Adds the traces with a span in column block `block` matching the filter.
    pub fn search_block(
        &self,
        block: usize,
        f: &Filter,
        resolved: Resolved,
        error_ok: &dyn Fn(&TraceId) -> bool,
        cache: &mut PageCache,
        out: &mut Candidates,
    ) -> Result<()> {
        let mut rows = self.column_rows(block)?;
        rows.retain(|r| {
            f.plain_match(r.start, r.duration, r.kind)
                && resolved.service.is_none_or(|s| s == r.service)
                && resolved.name.is_none_or(|n| n == r.name)
                && error_ok(&r.trace_id)
        });
        if f.tags.is_empty() {
            for r in &rows {
                out.add(r.trace_id, r.start);
            }
            return Ok(());
        }
        // tag filters decode spans: in page order, so each page is decompressed once
        rows.sort_unstable_by_key(|r| (r.page, r.offset));
        for row in &rows {
            let raw = self.page(row.page, cache)?;
            let mut r = Reader::new(raw.get(row.offset as usize..).unwrap_or(&[]));
            let (res, bytes) = self.record_bytes(&mut r)?;
            let attrs =
                codec::decode_span_attributes(bytes).map_err(|e| rec(&self.path, "span", e))?;
            if codec::tags_match(&attrs, res, &f.tags) {
                out.add(row.trace_id, row.start);
            }
        }
        Ok(())
    }

    /// Adds the services with spans starting in `[start, end]` (by operation ranges).
    pub fn services(&self, start: u64, end: u64, out: &mut BTreeSet<String>) -> Result<()> {
        for &(svc, _, _, lo, hi) in &self.ops {
            if lo <= end && hi >= start {
                out.insert(self.sym(svc)?.to_string());
            }
        }
        Ok(())
    }

    /// Adds the `(name, kind)` of `service`'s spans starting in `[start, end]`.
    pub fn operations(
        &self,
        service: &str,
        start: u64,
        end: u64,
        out: &mut BTreeSet<(String, SpanKind)>,
    ) -> Result<()> {
        let Some(&svc) = self.sym_ids.get(service) else {
            return Ok(());
        };
        for &(s, name, kind, lo, hi) in &self.ops {
            if s == svc && lo <= end && hi >= start {
                out.insert((self.sym(name)?.to_string(), kind));
            }
        }
        Ok(())
    }

    /// Calls `f` with every span of the segment, in page order.
    pub fn for_each_span(&self, mut f: impl FnMut(StoredSpan)) -> Result<()> {
        let mut cache = PageCache::default();
        for p in 0..self.pages.len() {
            let raw = self.page(p as u32, &mut cache)?;
            let mut r = Reader::new(&raw);
            while !r.is_empty() {
                f(self.span_record(&mut r)?);
            }
        }
        Ok(())
    }

    /// Reads and checks every section (pages, index, columns, errors) and decodes every
    /// span: a full verification, for tests and tools.
    pub fn verify(&self) -> Result<u64> {
        let mut spans = 0u64;
        self.for_each_span(|_| spans += 1)?;
        for b in &self.index_blocks {
            self.read(&b.section, "trace index block")?;
        }
        for i in 0..self.column_blocks.len() {
            self.column_rows(i)?;
        }
        let mut errs = HashSet::new();
        self.error_traces(&mut errs)?;
        if spans != self.span_count {
            return Err(corrupt(
                &self.path,
                format!("{spans} spans in pages, meta says {}", self.span_count),
            ));
        }
        Ok(spans)
    }
}

/// Reads a section, checks its CRC and decompresses it.
fn read_raw(file: &File, path: &Path, s: &Section, limit: u64, what: &str) -> Result<Vec<u8>> {
    let end = s.offset.saturating_add(u64::from(s.clen));
    if end > limit || u64::from(s.raw_len) > MAX_SECTION_RAW {
        return Err(corrupt(
            path,
            format!("{what} section at {} has impossible bounds", s.offset),
        ));
    }
    let mut compressed = vec![0u8; s.clen as usize];
    file.read_exact_at(&mut compressed, s.offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            corrupt(
                path,
                format!("{what} at {} runs past the end of the file", s.offset),
            )
        } else {
            StoreError::io(path, e)
        }
    })?;
    if crc32fast::hash(&compressed) != s.crc {
        return Err(corrupt(
            path,
            format!("{what} at {} fails its checksum", s.offset),
        ));
    }
    let raw = crate::zstd_pages::decompress(&compressed, s.raw_len as usize).map_err(|e| {
        corrupt(
            path,
            format!("{what} at {} does not decompress: {e}", s.offset),
        )
    })?;
    if raw.len() != s.raw_len as usize {
        return Err(corrupt(
            path,
            format!(
                "{what} at {} decompresses to {} bytes, expected {}",
                s.offset,
                raw.len(),
                s.raw_len
            ),
        ));
    }
    Ok(raw)
}

fn parse_meta(
    id: u64,
    path: &Path,
    file: File,
    size: u64,
    meta: &[u8],
) -> Result<Segment, RecordError> {
    let mut r = Reader::new(meta);
    let span_count = r.uvarint()?;
    let trace_count = r.uvarint()?;
    let min_start = r.uvarint()?;
    let max_start = r.uvarint()?;
    let max_end = r.uvarint()?;
    let wal_upto = r.uvarint()?;
    let n = read_count(&mut r)?;
    let mut syms = Vec::with_capacity(n);
    let mut sym_ids = FxHashMap::default();
    for i in 0..n {
        let s: Arc<str> = Arc::from(r.str()?);
        sym_ids.insert(s.clone(), i as u32);
        syms.push(s);
    }
    let n = read_count(&mut r)?;
    let mut resources = Vec::with_capacity(n);
    for _ in 0..n {
        let len = read_count(&mut r)?;
        let bytes = r.bytes(len)?;
        let res = codec::decode_resource(bytes)?;
        resources.push(Arc::new(res));
    }
    let n = read_count(&mut r)?;
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        let svc = read_u32v(&mut r)?;
        let name = read_u32v(&mut r)?;
        let k = r.u8()?;
        let kind = kind_of(k, &r)?;
        let lo = r.uvarint()?;
        let hi = r.uvarint()?;
        if svc as usize >= syms.len() || name as usize >= syms.len() {
            return Err(RecordError {
                offset: r.pos,
                what: "operation names a string out of range",
            });
        }
        ops.push((svc, name, kind, lo, hi));
    }
    let n = read_count(&mut r)?;
    let mut pages = Vec::with_capacity(n);
    for _ in 0..n {
        pages.push(read_section(&mut r)?);
    }
    let n = read_count(&mut r)?;
    let mut index_blocks = Vec::with_capacity(n);
    for _ in 0..n {
        let first = read_id(&mut r)?;
        let count = read_u32v(&mut r)? as usize;
        let section = read_section(&mut r)?;
        index_blocks.push(IndexBlock {
            first,
            count,
            section,
        });
    }
    let n = read_count(&mut r)?;
    let mut column_blocks = Vec::with_capacity(n);
    for _ in 0..n {
        let min_start = r.uvarint()?;
        let max_start = r.uvarint()?;
        let count = read_u32v(&mut r)? as usize;
        let section = read_section(&mut r)?;
        column_blocks.push(ColumnBlock {
            min_start,
            max_start,
            count,
            section,
        });
    }
    let error_count = r.uvarint()? as usize;
    let errors = read_section(&mut r)?;
    let hashes = read_u32v(&mut r)?;
    let words = read_count(&mut r)?;
    let mut bloom_words = Vec::with_capacity(words);
    for _ in 0..words {
        bloom_words.push(r.u64_le()?);
    }
    if !r.is_empty() {
        return Err(RecordError {
            offset: r.pos,
            what: "trailing bytes after the meta",
        });
    }
    if hashes == 0 || hashes > 64 {
        return Err(RecordError {
            offset: r.pos,
            what: "bloom filter hash count out of range",
        });
    }
    Ok(Segment {
        id,
        path: path.to_path_buf(),
        file,
        size_bytes: size,
        span_count,
        trace_count,
        min_start,
        max_start,
        max_end,
        wal_upto,
        syms,
        sym_ids,
        resources,
        ops,
        pages,
        index_blocks,
        column_blocks,
        error_count,
        errors,
        bloom: Bloom {
            words: bloom_words,
            hashes,
        },
    })
}
