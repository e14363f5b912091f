//! The trace store's side of the archive tier: moving segments older than the warm window
//! into Parquet files (`archive::traces`), expiring archived files, and reading them back.
//!
//! A segment is moved as one unit, in this order (failpoint names in brackets):
//! 1. its spans, sorted by service then start time, are written to
//!    `traces/date=D/hour=H/part-<segment>-<first start>.parquet` and read back
//!    [`archive.traces.after_file`];
//! 2. the file is added to the manifest [`archive.traces.before_manifest`,
//!    `archive.traces.before_delete`];
//! 3. the segment leaves the store and its file is deleted (after the WAL segments it
//!    covers, as retention does).
//!
//! Killed before 2, the file is unnamed and the segment still local: the next pass writes it
//! again. Killed after 2, the next pass deletes the local copy without writing again.
//! Queries read an archived file only when its segment is no longer local, so no span is
//! answered twice. Search reads the files overlapping its time range as heads (decoded once
//! and kept in a cache); a trace lookup reads every archived file's row groups whose bloom
//! filter may hold the trace.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;

use super::TraceStore;
use crate::archive::traces::{read_spans, write_spans, SpanFilter};
use crate::archive::{hour_path, ms_range, pass_with_backoff, telemetry, write_one, FileEntry};
use crate::config::ArchiveTier;
use crate::error::{Result, StoreError};
use crate::traces::head::Head;
use crate::traces::model::{ResourceSpans, SpanBatch, StoredSpan, TraceId};
use crate::traces::payload;
use crate::traces::segment::Segment;

pub const SIGNAL: &str = "traces";
/// Decoded archive files kept for searches (by their in-memory size).
const HEAD_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// The name the archive knows a segment by: its id and first span start (ids restart from 1
/// once every segment has moved away, the pair does not repeat).
fn source_of(seg: &Segment) -> String {
    format!("{}-{}", seg.id, seg.min_start)
}

fn file_path(seg: &Segment) -> String {
    let secs = i64::try_from(seg.min_start / 1_000_000_000).unwrap_or(0);
    hour_path(SIGNAL, secs, &source_of(seg))
}

/// A head holding `spans`, for the search code that reads heads.
fn head_of(spans: Vec<StoredSpan>) -> Result<Head> {
    let mut batch = SpanBatch::default();
    for s in spans {
        match batch.resource_spans.last_mut() {
            Some(rs) if Arc::ptr_eq(&rs.resource, &s.resource) => rs.spans.push(s.span),
            _ => batch.resource_spans.push(ResourceSpans {
                resource: s.resource,
                spans: vec![s.span],
            }),
        }
    }
    let encoded = payload::encode_batch(&batch, 512);
    if let Some(why) = encoded.first_rejection {
        return Err(StoreError::Unavailable(format!(
            "an archived span does not encode: {why}"
        )));
    }
    let mut head = Head::new();
    for p in encoded.payloads {
        head.insert_payload(Bytes::from(p)).map_err(|e| {
            StoreError::Unavailable(format!("an archived span does not decode: {e}"))
        })?;
    }
    Ok(head)
}

/// Archive files decoded into heads, evicted oldest first past [`HEAD_CACHE_BYTES`].
#[derive(Default)]
pub(super) struct HeadCache {
    heads: HashMap<String, Arc<RwLock<Head>>>,
    order: VecDeque<(String, u64)>,
    bytes: u64,
}

impl HeadCache {
    fn insert(&mut self, path: &str, head: Arc<RwLock<Head>>) {
        let bytes = head.read().bytes();
        if self.heads.insert(path.to_string(), head).is_some() {
            return;
        }
        self.order.push_back((path.to_string(), bytes));
        self.bytes += bytes;
        while self.bytes > HEAD_CACHE_BYTES && self.order.len() > 1 {
            if let Some((old, b)) = self.order.pop_front() {
                self.heads.remove(&old);
                self.bytes -= b;
            }
        }
    }
}

impl TraceStore {
    fn archive_tier(&self) -> Option<&ArchiveTier> {
        self.opts.archive.as_ref()
    }

    /// One pass of the tier mover, from the background loop: segments past the warm window
    /// move to the archive (or are deleted when there is no archive), then archived files
    /// past `archive_for` are deleted. A failed move is logged and counted, the segments stay
    /// local and searchable, and the next try waits (1 s doubling to 5 min).
    pub async fn move_old_data(&self) -> Result<usize> {
        let Some(tier) = self.archive_tier() else {
            return self.apply_retention().await;
        };
        pass_with_backoff(
            &self.archive_backoff,
            &tier.archive,
            SIGNAL,
            self.archive_pass(tier),
        )
        .await
    }

    async fn archive_pass(&self, tier: &ArchiveTier) -> Result<usize> {
        tier.archive.require_manifest().await?;
        let _guard = self.flush_lock.lock().await;
        let local: HashSet<String> = self
            .sources
            .read()
            .segments
            .iter()
            .map(|s| format!("part-{}.parquet", source_of(s)))
            .collect();
        tier.archive
            .sweep_once(&self.archive_swept, &[SIGNAL.to_string()], &local)
            .await;
        let retention = u64::try_from(self.opts.retention.as_nanos()).unwrap_or(u64::MAX);
        let now = super::now_ns();
        let old = self.expired_segments(now.saturating_sub(retention));
        telemetry::set_pending(SIGNAL, old.len());
        let mut moved = 0;
        for (i, seg) in old.iter().enumerate() {
            let s = Arc::clone(seg);
            write_one(&tier.archive, SIGNAL, &source_of(seg), move || {
                let mut spans = Vec::with_capacity(usize::try_from(s.span_count).unwrap_or(0));
                s.for_each_span(|span| spans.push(span))?;
                // stable: one service's spans of one start stay in segment order
                spans.sort_by(|a, b| {
                    (&a.resource.service_name, a.span.start_unix_nano)
                        .cmp(&(&b.resource.service_name, b.span.start_unix_nano))
                });
                Ok(write_spans(&spans)?.map(|file| {
                    let entry = FileEntry {
                        signal: SIGNAL.to_string(),
                        path: file_path(&s),
                        source: source_of(&s),
                        min_time: file.min_time,
                        max_time: file.max_time,
                        rows: file.rows,
                        bytes: file.bytes.len() as u64,
                        series: 0,
                    };
                    (entry, file.bytes)
                }))
            })
            .await?;
            self.remove_segments(vec![Arc::clone(seg)], "moved to the archive")
                .await?;
            telemetry::moved(SIGNAL);
            telemetry::set_pending(SIGNAL, old.len() - i - 1);
            moved += 1;
        }
        let keep =
            retention.saturating_add(u64::try_from(tier.keep_for.as_nanos()).unwrap_or(u64::MAX));
        let cutoff = ms_range(now.saturating_sub(keep), 0).0;
        tier.archive.expire(&[SIGNAL.to_string()], cutoff).await?;
        self.update_gauges();
        Ok(moved)
    }

    /// Archived files overlapping `[start_ns, end_ns]` whose segment is not among `local`,
    /// the segments a query's snapshot reads (taken before this call: a segment moved since
    /// is in the manifest already, so each span is read once, from one tier).
    fn archive_files(&self, local: &[Arc<Segment>], start_ns: u64, end_ns: u64) -> Vec<FileEntry> {
        let Some(tier) = self.archive_tier() else {
            return Vec::new();
        };
        let local: HashSet<String> = local.iter().map(|s| source_of(s)).collect();
        let (lo, hi) = ms_range(start_ns, end_ns);
        tier.archive
            .files(SIGNAL, lo, hi)
            .into_iter()
            .filter(|f| !local.contains(&f.source))
            .collect()
    }

    /// The archived files overlapping `[start_ns, end_ns]` as heads, for search. Blocking.
    pub(super) fn archived_heads(
        &self,
        local: &[Arc<Segment>],
        start_ns: u64,
        end_ns: u64,
    ) -> Result<Vec<Arc<RwLock<Head>>>> {
        let Some(tier) = self.archive_tier() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for f in self.archive_files(local, start_ns, end_ns) {
            if let Some(h) = self.archive_heads.lock().heads.get(&f.path) {
                out.push(Arc::clone(h));
                continue;
            }
            let bytes = tier.archive.read_blocking(&f.path)?;
            let mut spans = Vec::new();
            let all = SpanFilter {
                start_ns: 0,
                end_ns: u64::MAX,
                trace_id: None,
            };
            read_spans(bytes, all, &mut spans).map_err(|e| {
                StoreError::Unavailable(format!(
                    "archive {}: {}: {e}",
                    tier.archive.location(),
                    f.path
                ))
            })?;
            let head = Arc::new(RwLock::new(head_of(spans)?));
            self.archive_heads.lock().insert(&f.path, Arc::clone(&head));
            out.push(head);
        }
        Ok(out)
    }

    /// Appends the archived spans of trace `id`. Blocking.
    pub(super) fn archived_trace(
        &self,
        local: &[Arc<Segment>],
        id: TraceId,
        out: &mut Vec<StoredSpan>,
    ) -> Result<()> {
        let Some(tier) = self.archive_tier() else {
            return Ok(());
        };
        let filter = SpanFilter {
            start_ns: 0,
            end_ns: u64::MAX,
            trace_id: Some(id),
        };
        for f in self.archive_files(local, 0, u64::MAX) {
            // a file already decoded for search answers from memory
            let cached = self.archive_heads.lock().heads.get(&f.path).cloned();
            if let Some(h) = cached {
                h.read().trace_spans(&id, out).map_err(|e| {
                    StoreError::Unavailable(format!("archived span of {}: {e}", f.path))
                })?;
                continue;
            }
            let bytes = tier.archive.read_blocking(&f.path)?;
            read_spans(bytes, filter, out).map_err(|e| {
                StoreError::Unavailable(format!(
                    "archive {}: {}: {e}",
                    tier.archive.location(),
                    f.path
                ))
            })?;
        }
        Ok(())
    }
}
