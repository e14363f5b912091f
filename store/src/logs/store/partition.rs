//! One partition: the tantivy index of the records whose time falls in one span of record
//! time, in `<dir>/partitions/<start-unix-seconds>/`.
//!
//! A partition is created in `.tmp-<start>/` (index created, first commit written with its
//! span in the payload), then renamed into place, so a directory with a plain number for a
//! name is always a complete index. Retention renames a partition to `.del-<start>/` before
//! deleting it. Open removes `.tmp-*` and `.del-*` leftovers of a crash.
//!
//! Every commit's payload records the highest WAL sequence number whose records for this
//! partition it contains (see [`super`] for why that number is exact).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tantivy::indexer::IndexWriterOptions;
use tantivy::schema::Schema;
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::{Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, TantivyDocument};

use crate::error::{Result, StoreError};
use crate::fsutil::sync_dir;
use crate::logs::model::LogRecord;
use crate::logs::query::index_fields;
use crate::logs::schema::LogSchema;
use crate::logs::tokenizer;

use super::codec;
use super::merge::PartitionMergePolicy;

pub(super) const NANOS_PER_SEC: u64 = 1_000_000_000;
const TMP_PREFIX: &str = ".tmp-";
/// A file in each partition naming this instance of it (its creation time, ns): a partition
/// re-created for a time range already archived (a longer warm window, a clock jump) is
/// another source for the archive than the one moved before.
const INSTANCE_FILE: &str = "lookout-instance";
const DEL_PREFIX: &str = ".del-";
/// Zstd level of the document store. Measured with `benches/logs.rs` (200 MB of ~280-byte
/// lines, 1 MiB blocks): levels 5 and 7 made a partition 4 % and 7 % smaller than level 3
/// but cost 15 to 25 % of the indexing throughput (zstd's lazy match finders, from level 5
/// up, are several times slower).
const DOCSTORE_ZSTD_LEVEL: i32 = 3;
/// Larger blocks compress log lines far better (they repeat across lines); a search fetches
/// its few newest records from one or two neighbouring blocks (about 1 ms to decompress).
/// 4 MiB blocks saved under 0.5 % of a partition over 1 MiB.
const DOCSTORE_BLOCK_BYTES: usize = 1024 * 1024;
/// Decompressed blocks each segment's store reader keeps.
const DOCSTORE_CACHE_BLOCKS: usize = 2;

/// Maps a tantivy error to the store's error, naming the partition.
pub(super) fn tv(path: &Path, e: tantivy::TantivyError) -> StoreError {
    use tantivy::TantivyError as T;
    match e {
        T::IoError(io) => StoreError::io(path, std::io::Error::new(io.kind(), io.to_string())),
        T::DataCorruption(_) | T::OpenReadError(_) | T::OpenDirectoryError(_) => {
            StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        }
        e => StoreError::Unavailable(format!("log index {}: {e}", path.display())),
    }
}

/// The index settings of every partition.
pub(super) fn settings() -> IndexSettings {
    IndexSettings {
        docstore_compression: Compressor::Zstd(ZstdCompressor {
            compression_level: Some(DOCSTORE_ZSTD_LEVEL),
        }),
        docstore_blocksize: DOCSTORE_BLOCK_BYTES,
        ..IndexSettings::default()
    }
}

/// What a commit's payload says (JSON in tantivy's `meta.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct CommitPayload {
    /// Every WAL record with this sequence number or lower that has records for this
    /// partition is in the commit, and no later one.
    pub seq: u64,
    /// The span of record time the partition covers, from its start.
    pub span_secs: u64,
}

impl CommitPayload {
    pub fn to_json(self) -> String {
        format!("{{\"seq\":{},\"span_secs\":{}}}", self.seq, self.span_secs)
    }
}

/// The first second of the partition of span `span_secs` holding `t_ns`.
pub(super) fn aligned_start(t_ns: u64, span_secs: u64) -> u64 {
    let secs = t_ns / NANOS_PER_SEC;
    secs - secs % span_secs.max(1)
}

pub(super) struct Partition {
    pub start_secs: u64,
    pub span_secs: u64,
    pub dir: PathBuf,
    pub index: Index,
    pub reader: IndexReader,
    /// The sequence number of the last commit's payload.
    pub committed_seq: AtomicU64,
    /// When this instance of the partition was created (ns; 0 for partitions from before
    /// instances were recorded).
    pub instance: u64,
}

impl Partition {
    pub fn start_ns(&self) -> u64 {
        self.start_secs.saturating_mul(NANOS_PER_SEC)
    }

    /// First nanosecond after the partition.
    pub fn end_ns(&self) -> u64 {
        self.start_secs
            .saturating_add(self.span_secs)
            .saturating_mul(NANOS_PER_SEC)
    }

    pub fn contains(&self, t_ns: u64) -> bool {
        t_ns >= self.start_ns() && t_ns < self.end_ns()
    }

    /// Whether any record in `[start, end]` (inclusive) can be in this partition.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        start < self.end_ns() && end >= self.start_ns()
    }

    pub fn committed_seq(&self) -> u64 {
        self.committed_seq.load(Ordering::Acquire)
    }

    /// The name the archive knows this partition by: its start and instance.
    pub fn source(&self) -> String {
        format!("{}-{}", self.start_secs, self.instance)
    }

    /// Creates the partition starting at `start_secs` under `root` (the `partitions/`
    /// directory) and opens it.
    pub fn create(
        root: &Path,
        schema: &LogSchema,
        start_secs: u64,
        span_secs: u64,
    ) -> Result<Partition> {
        let tmp = root.join(format!("{TMP_PREFIX}{start_secs}"));
        let dir = root.join(start_secs.to_string());
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        {
            let index = Index::builder()
                .schema(schema.schema.clone())
                .settings(settings())
                .create_in_dir(&tmp)
                .map_err(|e| tv(&tmp, e))?;
            tokenizer::register(&index);
            let mut writer: IndexWriter<TantivyDocument> = index
                .writer_with_options(writer_options(MIN_WRITER_BYTES))
                .map_err(|e| tv(&tmp, e))?;
            let mut commit = writer.prepare_commit().map_err(|e| tv(&tmp, e))?;
            commit.set_payload(&CommitPayload { seq: 0, span_secs }.to_json());
            commit.commit().map_err(|e| tv(&tmp, e))?;
            writer.wait_merging_threads().map_err(|e| tv(&tmp, e))?;
        }
        let instance = tmp.join(INSTANCE_FILE);
        let created = super::now_ns().max(1).to_string();
        std::fs::File::create(&instance)
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, created.as_bytes())?;
                f.sync_all()
            })
            .map_err(|e| StoreError::io(&instance, e))?;
        std::fs::rename(&tmp, &dir).map_err(|e| StoreError::io(&dir, e))?;
        sync_dir(root)?;
        tracing::info!(partition = start_secs, span_secs, "log partition created");
        Partition::open(&dir, start_secs, schema, span_secs)
    }

    /// Opens an existing partition directory.
    pub fn open(
        dir: &Path,
        start_secs: u64,
        schema: &LogSchema,
        default_span_secs: u64,
    ) -> Result<Partition> {
        let index = Index::open_in_dir(dir).map_err(|e| tv(dir, e))?;
        if !same_fields(&index.schema(), &schema.schema) {
            return Err(StoreError::Corrupt {
                path: dir.to_path_buf(),
                reason: "the partition was written with another log schema than this build's"
                    .to_string(),
            });
        }
        tokenizer::register(&index);
        let metas = index.load_metas().map_err(|e| tv(dir, e))?;
        let payload = metas
            .payload
            .as_deref()
            .and_then(|p| serde_json::from_str::<CommitPayload>(p).ok());
        let payload = match payload {
            Some(p) if p.span_secs > 0 => p,
            _ => {
                tracing::warn!(
                    dir = %dir.display(), payload = ?metas.payload,
                    "log partition has no valid commit payload; assuming nothing committed"
                );
                CommitPayload {
                    seq: 0,
                    span_secs: default_span_secs,
                }
            }
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .doc_store_cache_num_blocks(DOCSTORE_CACHE_BLOCKS)
            .try_into()
            .map_err(|e| tv(dir, e))?;
        let instance = std::fs::read_to_string(dir.join(INSTANCE_FILE))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        Ok(Partition {
            start_secs,
            span_secs: payload.span_secs,
            dir: dir.to_path_buf(),
            index,
            reader,
            committed_seq: AtomicU64::new(payload.seq),
            instance,
        })
    }

    /// An index writer with `memory_bytes` of indexing memory and the partition merge
    /// policy ([`PartitionMergePolicy`]).
    pub fn writer(&self, memory_bytes: usize) -> Result<IndexWriter<TantivyDocument>> {
        let writer = self
            .index
            .writer_with_options(writer_options(memory_bytes))
            .map_err(|e| tv(&self.dir, e))?;
        writer.set_merge_policy(Box::new(PartitionMergePolicy::default()));
        Ok(writer)
    }

    /// Bytes of the partition's files.
    pub fn disk_bytes(&self) -> u64 {
        dir_bytes(&self.dir)
    }
}

/// Tantivy's smallest indexing memory per writer thread (`MEMORY_BUDGET_NUM_BYTES_MIN`,
/// not exported).
pub(super) const MIN_WRITER_BYTES: usize = 15_000_000;

/// One indexing thread (the machine's other cores serve ingest and queries) and one merge
/// thread per writer.
fn writer_options(memory_bytes: usize) -> IndexWriterOptions {
    IndexWriterOptions::builder()
        .memory_budget_per_thread(memory_bytes.max(MIN_WRITER_BYTES))
        .num_worker_threads(1)
        .num_merge_threads(1)
        .build()
}

/// Schemas equal field by field (names, types and options).
fn same_fields(a: &Schema, b: &Schema) -> bool {
    let fa: Vec<_> = a.fields().map(|(_, e)| e).collect();
    let fb: Vec<_> = b.fields().map(|(_, e)| e).collect();
    fa == fb
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Opens every partition under `root`, removing leftovers of interrupted creations and
/// deletions. Sorted by start.
pub(super) fn load_all(root: &Path, schema: &LogSchema, span_secs: u64) -> Result<Vec<Partition>> {
    std::fs::create_dir_all(root).map_err(|e| StoreError::io(root, e))?;
    let mut out = Vec::new();
    let mut removed = false;
    let entries = std::fs::read_dir(root).map_err(|e| StoreError::io(root, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(root, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with(TMP_PREFIX) || name.starts_with(DEL_PREFIX) {
            tracing::warn!(path = %path.display(), "removing a log partition left half created or half deleted");
            std::fs::remove_dir_all(&path).map_err(|e| StoreError::io(&path, e))?;
            removed = true;
            continue;
        }
        let Some(start) = name.parse::<u64>().ok().filter(|_| path.is_dir()) else {
            tracing::warn!(path = %path.display(), "ignoring unexpected entry among log partitions");
            continue;
        };
        let p = Partition::open(&path, start, schema, span_secs).map_err(|e| match e {
            StoreError::Corrupt { .. } => StoreError::Corrupt {
                path: path.clone(),
                reason: format!(
                    "log partition cannot be opened ({e}); the store does not start without it. \
                     To start without its records, move the directory out of {} \
                     (e.g. `mv {} <somewhere outside the data directory>`) and restart",
                    root.display(),
                    path.display()
                ),
            },
            e => e,
        })?;
        out.push(p);
    }
    if removed {
        sync_dir(root)?;
    }
    out.sort_by_key(|p| p.start_secs);
    Ok(out)
}

/// Deletes a partition directory: renamed aside first so a crash midway leaves a name that
/// open cleans up, never a half-deleted index.
pub(super) fn delete_dir(root: &Path, start_secs: u64) -> Result<()> {
    let dir = root.join(start_secs.to_string());
    let aside = root.join(format!("{DEL_PREFIX}{start_secs}"));
    std::fs::rename(&dir, &aside).map_err(|e| StoreError::io(&dir, e))?;
    sync_dir(root)?;
    std::fs::remove_dir_all(&aside).map_err(|e| StoreError::io(&aside, e))?;
    sync_dir(root)
}

/// The tantivy document of one record: the searchable fields exactly as the query
/// language expects them ([`index_fields`]), its source ([`codec::encode_source`]) and its
/// stored part ([`codec::encode_stored`]). `buf` is scratch space.
pub(super) fn build_doc(schema: &LogSchema, rec: &LogRecord, buf: &mut Vec<u8>) -> TantivyDocument {
    let mut doc = TantivyDocument::new();
    index_fields(schema, rec, &mut doc);
    buf.clear();
    codec::encode_source(buf, rec);
    doc.add_bytes(schema.source, buf.as_slice());
    buf.clear();
    codec::encode_stored(buf, rec);
    doc.add_bytes(schema.record, buf.as_slice());
    doc
}
