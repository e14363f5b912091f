//! The log store's side of the archive tier: moving partitions older than the warm window
//! into Parquet files (`archive::logs`), expiring archived files, and searching them.
//!
//! A partition is moved as one unit, in this order (failpoint names in brackets):
//! 1. everything acknowledged is committed (a WAL truncation: nothing for the partition
//!    can still be on its way to the indexer, and later records for its time are refused
//!    as older than the warm window);
//! 2. its records, sorted by service then time, are written to
//!    `logs/date=D/hour=H/part-<start>.parquet` and read back [`archive.logs.after_file`];
//! 3. the file is added to the manifest [`archive.logs.before_manifest`,
//!    `archive.logs.before_delete`];
//! 4. the partition leaves the store and its directory is deleted.
//!
//! Killed before 3, the file is unnamed and the partition still local: the next pass writes
//! it again under the same name. Killed after 3, the manifest names the partition: the next
//! pass deletes the local copy without writing again. Queries read an archived file only
//! when its partition is no longer local, so no record is ever answered twice.

use std::collections::HashSet;
use std::sync::Arc;

use super::partition::Partition;
use super::search::{self, TimeRange};
use super::{duration_ns, now_ns, task_failed, LogStore, Msg};
use crate::archive::logs::{read_logs, write_logs};
use crate::archive::{
    hour_path, ms_range, pass_with_backoff, telemetry, write_one, Archive, FileEntry,
};
use crate::config::ArchiveTier;
use crate::error::{Result, StoreError};
use crate::logs::schema::LogSchema;
use crate::logs::{Direction, HistogramBucket, LogQuery, LogRecord, LogSearch, Severity};

pub const SIGNAL: &str = "logs";

/// The archive path of the file made from the partition starting at `start_secs`, named by
/// its [`Partition::source`].
fn file_path(start_secs: u64, source: &str) -> String {
    hour_path(
        SIGNAL,
        i64::try_from(start_secs).unwrap_or(i64::MAX),
        source,
    )
}

/// Every record of a partition, sorted by service then time (the archive's order).
/// Blocking.
fn partition_records(p: &Arc<Partition>, schema: &LogSchema) -> Result<Vec<LogRecord>> {
    let all = LogQuery::all().to_tantivy(schema);
    let docs = usize::try_from(p.reader.searcher().num_docs()).unwrap_or(usize::MAX);
    let range = TimeRange::new(p.start_ns(), p.end_ns().saturating_sub(1))?;
    let mut records = search::search(
        std::slice::from_ref(p),
        schema,
        all.as_ref(),
        None,
        range,
        docs,
        Direction::Forward,
    )?;
    // stable: records of one service and time stay in arrival order
    records.sort_by(|a, b| a.service.cmp(&b.service));
    Ok(records)
}

impl LogStore {
    fn archive_tier(&self) -> Option<&ArchiveTier> {
        self.opts.archive.as_ref()
    }

    /// One pass of the tier mover, from the background loop: partitions past the warm
    /// window move to the archive (or are deleted when there is no archive), then archived
    /// files past `archive_for` are deleted. A failed move is logged and counted, the
    /// partitions stay local and searchable, and the next try waits (1 s doubling to 5 min).
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
        let _m = self.maintenance.lock().await;
        let local: HashSet<String> = self
            .partitions()
            .iter()
            .map(|p| format!("part-{}.parquet", p.source()))
            .collect();
        tier.archive
            .sweep_once(&self.archive_swept, &[SIGNAL.to_string()], &local)
            .await;
        let now = now_ns();
        let mut old: Vec<Arc<Partition>> = self
            .partitions()
            .into_iter()
            .filter(|p| self.shared.expired(p.end_ns(), now))
            .collect();
        old.sort_by_key(|p| p.start_secs);
        telemetry::set_pending(SIGNAL, old.len());
        if !old.is_empty() {
            // everything acknowledged is with the indexer and committed before a partition
            // is read
            self.truncate_wal_locked().await?;
        }
        let mut moved = 0;
        for (i, p) in old.iter().enumerate() {
            let part = Arc::clone(p);
            let shared = Arc::clone(&self.shared);
            write_one(&tier.archive, SIGNAL, &p.source(), move || {
                let records = partition_records(&part, &shared.schema)?;
                Ok(write_logs(&records)?.map(|file| {
                    let entry = FileEntry {
                        signal: SIGNAL.to_string(),
                        path: file_path(part.start_secs, &part.source()),
                        source: part.source(),
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
            self.remove_partitions(vec![p.start_secs], "moved to the archive")
                .await?;
            telemetry::moved(SIGNAL);
            telemetry::set_pending(SIGNAL, old.len() - i - 1);
            moved += 1;
        }
        let keep = duration_ns(self.opts.retention).saturating_add(duration_ns(tier.keep_for));
        let cutoff = ms_range(now.saturating_sub(keep), 0).0;
        tier.archive.expire(&[SIGNAL.to_string()], cutoff).await?;
        Ok(moved)
    }

    /// Takes partitions out of the store (the indexer drops their writers) and deletes
    /// their directories. Searches holding a partition keep reading through open files.
    pub(super) async fn remove_partitions(
        &self,
        starts: Vec<u64>,
        why: &'static str,
    ) -> Result<()> {
        let expired = starts.clone();
        self.request(|done| Msg::Expire {
            starts: expired,
            done,
        })
        .await?;
        let root = self.shared.root.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            for start in starts {
                super::partition::delete_dir(&root, start)?;
                super::metrics::PARTITIONS_DELETED.inc();
                tracing::info!(partition = start, why, "log partition deleted");
            }
            Ok(())
        })
        .await
        .map_err(|e| task_failed("log partition removal", e))?
    }

    /// Archived files overlapping `[start_ns, end_ns]` whose partition is not among
    /// `local`, the partitions a query's snapshot reads (taken before this call: a partition
    /// moved since is in the manifest already, so each record is read once, from one tier).
    pub(super) fn archive_files(
        &self,
        local: &[Arc<Partition>],
        start_ns: u64,
        end_ns: u64,
    ) -> Vec<FileEntry> {
        let Some(tier) = self.archive_tier() else {
            return Vec::new();
        };
        let (lo, hi) = ms_range(start_ns, end_ns);
        let local: HashSet<String> = local.iter().map(|p| p.source()).collect();
        tier.archive
            .files(SIGNAL, lo, hi)
            .into_iter()
            .filter(|f| !local.contains(&f.source))
            .collect()
    }

    fn read_archived(
        &self,
        archive: &Archive,
        file: &FileEntry,
        range: TimeRange,
        query: &LogQuery,
        out: &mut Vec<LogRecord>,
    ) -> Result<()> {
        let bytes = archive.read_blocking(&file.path)?;
        read_logs(bytes, range.start, range.end, &|r| query.matches(r), out).map_err(|e| {
            StoreError::Unavailable(format!(
                "archive {}: {}: {e}",
                archive.location(),
                file.path
            ))
        })
    }

    /// The best `limit` archived records for `s` (newest first, or oldest first forward),
    /// and the files read. Files are read best first and reading stops once no file left
    /// can hold a better record. Blocking.
    pub(super) fn search_archive(
        &self,
        s: &LogSearch,
        range: TimeRange,
        files: Vec<FileEntry>,
    ) -> Result<(Vec<LogRecord>, usize)> {
        let Some(tier) = self.archive_tier() else {
            return Ok((Vec::new(), 0));
        };
        let mut files = files;
        match s.direction {
            Direction::Backward => files.sort_by_key(|f| std::cmp::Reverse(f.max_time)),
            Direction::Forward => files.sort_by_key(|f| f.min_time),
        }
        let mut best: Vec<LogRecord> = Vec::new();
        let mut read = 0;
        for f in &files {
            if best.len() >= s.limit {
                let worst = best.last().map_or(0, |r| ms_range(r.time_unix_nano, 0).0);
                let hopeless = match s.direction {
                    Direction::Backward => f.max_time < worst,
                    Direction::Forward => f.min_time > worst,
                };
                if hopeless {
                    break;
                }
            }
            self.read_archived(&tier.archive, f, range, &s.query, &mut best)?;
            read += 1;
            sort_best(&mut best, s.direction);
            best.truncate(s.limit);
        }
        Ok((best, read))
    }

    /// Adds the matching archived records of `files` to `buckets` (which start at
    /// `range.start`, `step` apart). Blocking.
    pub(super) fn count_archive(
        &self,
        query: &LogQuery,
        range: TimeRange,
        step: u64,
        files: &[FileEntry],
        buckets: &mut [HistogramBucket],
    ) -> Result<()> {
        let Some(tier) = self.archive_tier() else {
            return Ok(());
        };
        let mut records = Vec::new();
        for f in files {
            records.clear();
            self.read_archived(&tier.archive, f, range, query, &mut records)?;
            for r in &records {
                let i = ((r.time_unix_nano - range.start) / step) as usize;
                if let Some(b) = buckets.get_mut(i) {
                    b.count += 1;
                    b.by_severity[Severity::from_number(r.severity_number) as usize] += 1;
                }
            }
        }
        Ok(())
    }
}

/// Best first: newest first backward, oldest first forward (stable for equal times).
pub(super) fn sort_best(records: &mut [LogRecord], direction: Direction) {
    match direction {
        Direction::Backward => records.sort_by_key(|r| std::cmp::Reverse(r.time_unix_nano)),
        Direction::Forward => records.sort_by_key(|r| r.time_unix_nano),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_paths_are_hive_partitioned_by_utc_hour() {
        assert_eq!(
            file_path(1_763_730_000, "1763730000-17"),
            "logs/date=2025-11-21/hour=13/part-1763730000-17.parquet"
        );
        assert_eq!(ms_range(1_500_000, 2_000_001), (1, 3));
    }
}
