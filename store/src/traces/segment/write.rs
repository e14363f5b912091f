//! Writing a segment from a frozen head: pages in time order, then the trace index, the
//! search columns, the error list, the meta and the footer; temp file, fsync, rename.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::*;
use crate::error::Result;
use crate::fsutil::sync_dir;
use crate::traces::bloom::Bloom;
use crate::traces::head::{Head, HeadSpan};
use crate::traces::query::Partial;
use crate::tsdb::wal_records::put_str;

struct FileWriter {
    out: BufWriter<File>,
    path: PathBuf,
    pos: u64,
    zstd: zstd::bulk::Compressor<'static>,
}

impl FileWriter {
    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.out
            .write_all(b)
            .map_err(|e| StoreError::io(&self.path, e))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn section(&mut self, raw: &[u8]) -> Result<Section> {
        let compressed = self
            .zstd
            .compress(raw)
            .map_err(|e| StoreError::io(&self.path, e))?;
        let s = Section {
            offset: self.pos,
            clen: u32::try_from(compressed.len())
                .map_err(|_| corrupt(&self.path, "section over 4 GiB"))?,
            raw_len: u32::try_from(raw.len())
                .map_err(|_| corrupt(&self.path, "section over 4 GiB"))?,
            crc: crc32fast::hash(&compressed),
        };
        self.write(&compressed)?;
        Ok(s)
    }
}

/// A span's search fields, as written to the column blocks.
struct Row {
    trace_id: TraceId,
    start: u64,
    duration: u64,
    service: u32,
    name: u32,
    kind: SpanKind,
    page: u32,
    offset: u32,
}

/// A trace's partial summary with strings as the head's symbols.
fn sym_partial(p: &Partial, head: &Head) -> SymPartial {
    let sym = |s: &str| head.syms.lookup(s).unwrap_or(0);
    SymPartial {
        span_count: p.span_count,
        error_count: p.error_count,
        min_start: p.min_start,
        max_end: p.max_end,
        root: p
            .root
            .as_ref()
            .map(|n| (n.start, sym(&n.service), sym(&n.operation))),
        earliest: p
            .earliest
            .as_ref()
            .map(|n| (sym(&n.service), sym(&n.operation)))
            .unwrap_or((0, 0)),
        services: p.services.iter().map(|s| sym(s)).collect(),
    }
}

/// Writes the frozen `head` as segment `id` in `dir` (temp file, fsync, rename, directory
/// fsync) and returns its path. `wal_upto`: every WAL segment up to it is contained in this
/// segment or an earlier one. Blocking.
pub fn write_segment(dir: &Path, id: u64, head: &Head, wal_upto: u64) -> Result<PathBuf> {
    let final_path = dir.join(file_name(id));
    let tmp_path = dir.join(format!("{TMP_PREFIX}{}", file_name(id)));
    let file = File::create(&tmp_path).map_err(|e| StoreError::io(&tmp_path, e))?;
    let mut w = FileWriter {
        out: BufWriter::with_capacity(1 << 20, file),
        path: tmp_path.clone(),
        pos: 0,
        zstd: zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(|e| StoreError::io(&tmp_path, e))?,
    };
    let result = write_body(&mut w, head, wal_upto);
    let result = result.and_then(|()| {
        let file = w
            .out
            .into_inner()
            .map_err(|e| StoreError::io(&tmp_path, e.into_error()))?;
        file.sync_all().map_err(|e| StoreError::io(&tmp_path, e))
    });
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp_path);
        return Err(e);
    }
    fs::rename(&tmp_path, &final_path).map_err(|e| StoreError::io(&final_path, e))?;
    sync_dir(dir)?;
    Ok(final_path)
}

fn write_body(w: &mut FileWriter, head: &Head, wal_upto: u64) -> Result<()> {
    let mut header = Vec::with_capacity(8);
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    w.write(&header)?;

    // traces in order of their first start, so pages (and the column blocks that point
    // into them) follow time
    let mut traces: Vec<(u64, TraceId, Vec<&HeadSpan>)> = head
        .traces
        .iter()
        .map(|(id, idxs)| {
            let mut spans: Vec<&HeadSpan> = idxs.iter().map(|&i| &head.spans[i as usize]).collect();
            spans.sort_by_key(|s| s.start);
            let first = spans.first().map(|s| s.start).unwrap_or(0);
            (first, *id, spans)
        })
        .collect();
    traces.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));

    let mut pages: Vec<Section> = Vec::new();
    let mut raw: Vec<u8> = Vec::with_capacity(PAGE_RAW_BYTES * 2);
    let mut rows: Vec<Row> = Vec::with_capacity(head.spans.len());
    let mut entries: Vec<Entry> = Vec::with_capacity(traces.len());
    let mut bloom = Bloom::with_capacity(traces.len());
    for (_, id, spans) in &traces {
        let trace_bytes: usize = spans.iter().map(|s| s.len as usize + 10).sum();
        if !raw.is_empty() && raw.len() + trace_bytes > PAGE_RAW_BYTES {
            pages.push(w.section(&raw)?);
            raw.clear();
        }
        let page = pages.len() as u32;
        let offset = raw.len() as u32;
        let mut len = 0u64;
        for s in spans {
            if raw.len() >= PAGE_RAW_MAX_BYTES {
                pages.push(w.section(&raw)?);
                raw.clear();
            }
            let before = raw.len();
            rows.push(Row {
                trace_id: *id,
                start: s.start,
                duration: s.duration(),
                service: head.service_of(s),
                name: s.name,
                kind: s.kind,
                page: pages.len() as u32,
                offset: before as u32,
            });
            let bytes = head.span_bytes(s);
            put_uvarint(&mut raw, u64::from(s.resource));
            put_uvarint(&mut raw, bytes.len() as u64);
            raw.extend_from_slice(bytes);
            len += (raw.len() - before) as u64;
        }
        let partial = head.partial(id).unwrap_or_default();
        entries.push(Entry {
            trace_id: *id,
            page,
            offset,
            len,
            partial: sym_partial(&partial, head),
        });
        bloom.insert(id);
    }
    if !raw.is_empty() {
        pages.push(w.section(&raw)?);
    }
    drop(traces);

    entries.sort_unstable_by_key(|e| e.trace_id);
    let mut index_blocks = Vec::new();
    let mut buf = Vec::new();
    for chunk in entries.chunks(INDEX_BLOCK_TRACES) {
        buf.clear();
        for e in chunk {
            encode_entry(&mut buf, e);
        }
        let s = w.section(&buf)?;
        index_blocks.push((chunk[0].trace_id, chunk.len(), s));
    }
    let error_ids: Vec<TraceId> = entries
        .iter()
        .filter(|e| e.partial.error_count > 0)
        .map(|e| e.trace_id)
        .collect();

    rows.sort_unstable_by_key(|r| r.start);
    let mut column_blocks = Vec::new();
    for chunk in rows.chunks(COLUMN_BLOCK_SPANS) {
        buf.clear();
        let min = chunk[0].start;
        let max = chunk[chunk.len() - 1].start;
        for r in chunk {
            buf.extend_from_slice(&r.trace_id.0);
            put_uvarint(&mut buf, r.start - min);
            put_uvarint(&mut buf, r.duration);
            put_uvarint(&mut buf, u64::from(r.service));
            put_uvarint(&mut buf, u64::from(r.name));
            buf.push(r.kind as u8);
            put_uvarint(&mut buf, u64::from(r.page));
            put_uvarint(&mut buf, u64::from(r.offset));
        }
        let s = w.section(&buf)?;
        column_blocks.push((min, max, chunk.len(), s));
    }

    buf.clear();
    for id in &error_ids {
        buf.extend_from_slice(&id.0);
    }
    let errors = w.section(&buf)?;

    let mut meta = Vec::new();
    put_uvarint(&mut meta, head.num_spans() as u64);
    put_uvarint(&mut meta, entries.len() as u64);
    put_uvarint(&mut meta, head.min_start);
    put_uvarint(&mut meta, head.max_start);
    put_uvarint(&mut meta, head.max_end);
    put_uvarint(&mut meta, wal_upto);
    put_uvarint(&mut meta, head.syms.len() as u64);
    for i in 0..head.syms.len() {
        put_str(&mut meta, head.syms.get(i as u32));
    }
    put_uvarint(&mut meta, head.resources.len() as u64);
    for r in &head.resources {
        put_uvarint(&mut meta, r.encoded.len() as u64);
        meta.extend_from_slice(&r.encoded);
    }
    let mut ops: Vec<_> = head.ops.iter().collect();
    ops.sort_unstable_by_key(|(k, _)| **k);
    put_uvarint(&mut meta, ops.len() as u64);
    for (&(svc, name, kind), &(lo, hi)) in ops {
        put_uvarint(&mut meta, u64::from(svc));
        put_uvarint(&mut meta, u64::from(name));
        meta.push(kind as u8);
        put_uvarint(&mut meta, lo);
        put_uvarint(&mut meta, hi);
    }
    put_uvarint(&mut meta, pages.len() as u64);
    for p in &pages {
        put_section(&mut meta, p);
    }
    put_uvarint(&mut meta, index_blocks.len() as u64);
    for (first, n, s) in &index_blocks {
        meta.extend_from_slice(&first.0);
        put_uvarint(&mut meta, *n as u64);
        put_section(&mut meta, s);
    }
    put_uvarint(&mut meta, column_blocks.len() as u64);
    for (min, max, n, s) in &column_blocks {
        put_uvarint(&mut meta, *min);
        put_uvarint(&mut meta, *max);
        put_uvarint(&mut meta, *n as u64);
        put_section(&mut meta, s);
    }
    put_uvarint(&mut meta, error_ids.len() as u64);
    put_section(&mut meta, &errors);
    put_uvarint(&mut meta, u64::from(bloom.hashes));
    put_uvarint(&mut meta, bloom.words.len() as u64);
    for word in &bloom.words {
        meta.extend_from_slice(&word.to_le_bytes());
    }
    let meta_section = w.section(&meta)?;

    let mut footer = Vec::with_capacity(FOOTER_LEN as usize);
    footer.extend_from_slice(&meta_section.offset.to_le_bytes());
    footer.extend_from_slice(&meta_section.clen.to_le_bytes());
    footer.extend_from_slice(&meta_section.raw_len.to_le_bytes());
    footer.extend_from_slice(&meta_section.crc.to_le_bytes());
    footer.extend_from_slice(&VERSION.to_le_bytes());
    footer.extend_from_slice(&MAGIC);
    w.write(&footer)
}
