//! The metrics store's side of the archive tier: moving blocks older than the warm window
//! into hourly Parquet files, expiring archived files, and reading them back for queries.
//!
//! A block is moved as one unit, in this order (each step's failpoint name in brackets):
//! 1. each hour the block spans is written to `metrics/date=D/hour=H/part-<block>.parquet`
//!    and each day to the rollup files `metrics-5m/date=D/part-<block>.parquet` and
//!    `metrics-1h/date=D/part-<block>.parquet`, each read back ([`Archive::put_verified`])
//!    [`archive.metrics.after_file`];
//! 2. all of the block's files are added to the manifest in one put
//!    [`archive.metrics.before_manifest`, `archive.metrics.before_delete`];
//! 3. the block leaves the in-memory list and its directory is deleted.
//!
//! Killed after 1, the files are unnamed and the block is still local: the next pass writes
//! them again under the same names. Killed after 2, the manifest names the block: the next
//! open (or pass) deletes the local copy without writing again. Queries during the move may
//! read a sample from both copies; the merge keeps one per timestamp.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use crate::archive::metrics::{
    read_rollups, read_series, ArchivedSeries, MetricsFileWriter, WrittenFile,
};
use crate::archive::rollup::{self, Rollup};
use crate::archive::{
    encode_blocking, failpoint, hour_path, pass_with_backoff, put_files, telemetry, Archive,
    FileEntry,
};
use crate::clock::{duration_ms, now_ms};
use crate::config::ArchiveTier;
use crate::contract::{LabelMatcher, RollupAggregate, ROLLUP_RESOLUTIONS_MS};
use crate::error::{Result, StoreError};
use crate::model::{Labels, Sample};
use crate::timefmt::DateTime;

use super::block::Block;
use super::MetricsStore;

pub const SIGNAL: &str = "metrics";
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The manifest signal (and top directory) of the rollups at `resolution_ms`.
pub fn rollup_signal(resolution_ms: i64) -> String {
    format!("{SIGNAL}-{}", rollup::resolution_name(resolution_ms))
}

/// Archived rollups per series, in time order.
pub(super) type RollupsBySeries = BTreeMap<Labels, Vec<Rollup>>;

/// The signals of the rollups, one per resolution.
pub fn rollup_signals() -> impl Iterator<Item = String> {
    ROLLUP_RESOLUTIONS_MS.iter().map(|&r| rollup_signal(r))
}

/// Every signal the metrics store writes: raw samples and each rollup resolution.
fn all_signals() -> Vec<String> {
    std::iter::once(SIGNAL.to_string())
        .chain(rollup_signals())
        .collect()
}

/// The archive path of the file holding hour `hour_start` of block `block_id`.
pub fn file_path(hour_start: i64, block_id: &str) -> String {
    hour_path(SIGNAL, hour_start.div_euclid(1000), block_id)
}

/// The archive path of the rollup file of `signal` for day `day_start` of block `block_id`.
pub fn rollup_file_path(signal: &str, day_start: i64, block_id: &str) -> String {
    let t = DateTime::from_unix_secs(day_start.div_euclid(1000));
    format!(
        "{signal}/date={:04}-{:02}-{:02}/part-{block_id}.parquet",
        t.year, t.month, t.day
    )
}

fn entry_for(signal: String, path: String, block: &Block, file: &WrittenFile) -> FileEntry {
    FileEntry {
        signal,
        path,
        source: block.meta.id.clone(),
        min_time: file.min_time,
        max_time: file.max_time,
        rows: file.rows,
        bytes: file.bytes.len() as u64,
        series: file.series,
    }
}

/// Calls `f` with the labels and samples in `[lo, hi]` of each series of `block` that has
/// any there, in label order (as the files want them). Blocking (decodes).
fn for_each_series(
    block: &Block,
    lo: i64,
    hi: i64,
    mut f: impl FnMut(&Labels, &[Sample]) -> Result<()>,
) -> Result<()> {
    let mut pages = HashMap::new();
    let mut samples: Vec<Sample> = Vec::new();
    for id in 0..block.num_series() {
        if !block.has_data(id, lo, hi) {
            continue;
        }
        // pages are written in series order: earlier ones are done with
        if let Some(first) = block.first_page(id) {
            pages.retain(|&p, _| p >= first);
        }
        samples.clear();
        block.samples(id, lo, hi, &mut pages, &mut samples)?;
        if let Some(labels) = block.labels_of(id) {
            f(&labels, &samples)?;
        }
    }
    Ok(())
}

/// Writes the rollups of `[day_start, day_start + 1d)` of every series in `block`, one file
/// per resolution of [`ROLLUP_RESOLUTIONS_MS`]. Blocking. Windows divide a day, so a
/// window never spans two files of one block.
fn encode_rollup_day(block: &Block, day_start: i64) -> Result<Vec<(FileEntry, bytes::Bytes)>> {
    let (lo, hi) = (day_start, day_start + DAY_MS - 1);
    let mut writers = ROLLUP_RESOLUTIONS_MS
        .iter()
        .map(|_| MetricsFileWriter::rollups())
        .collect::<Result<Vec<_>>>()?;
    let mut rollups = Vec::new();
    for_each_series(block, lo, hi, |labels, samples| {
        for (writer, &resolution) in writers.iter_mut().zip(&ROLLUP_RESOLUTIONS_MS) {
            rollups.clear();
            rollup::compute(samples, resolution, &mut rollups);
            writer.push_rollups(labels, &rollups)?;
        }
        Ok(())
    })?;
    let mut out = Vec::new();
    for (writer, &resolution) in writers.into_iter().zip(&ROLLUP_RESOLUTIONS_MS) {
        if let Some(file) = writer.finish()? {
            let signal = rollup_signal(resolution);
            let path = rollup_file_path(&signal, day_start, &block.meta.id);
            out.push((entry_for(signal, path, block, &file), file.bytes));
        }
    }
    Ok(out)
}

/// Writes the samples of `[hour_start, hour_start + 1h)` of every series in `block` into one
/// Parquet file. Blocking (decodes and compresses). `None` if the hour has no samples.
fn encode_hour(block: &Block, hour_start: i64) -> Result<Option<(FileEntry, bytes::Bytes)>> {
    let mut writer = MetricsFileWriter::new()?;
    for_each_series(
        block,
        hour_start,
        hour_start + HOUR_MS - 1,
        |labels, samples| writer.push_series(labels, samples),
    )?;
    let Some(file) = writer.finish()? else {
        return Ok(None);
    };
    let path = file_path(hour_start, &block.meta.id);
    Ok(Some((
        entry_for(SIGNAL.to_string(), path, block, &file),
        file.bytes,
    )))
}

impl MetricsStore {
    fn archive_tier(&self) -> Option<&ArchiveTier> {
        self.options.archive.as_ref()
    }

    /// One pass of the tier mover, from the background loop: blocks past the warm window
    /// move to the archive (or are deleted when there is no archive), then archived files
    /// past `archive_for` are deleted. Failures are logged (failed moves also counted), the
    /// data stays where it is, and the next move waits (1 s doubling to 5 min).
    pub async fn move_old_data(&self) -> Result<usize> {
        let Some(tier) = self.archive_tier() else {
            let result = self.apply_retention().await;
            if let Err(e) = &result {
                tracing::error!(error = %e, "tsdb retention failed");
            }
            return result;
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
        let _guard = self.compact_lock.lock().await;
        tier.archive.require_manifest().await?;
        let local: HashSet<String> = self
            .blocks
            .read()
            .iter()
            .map(|b| format!("part-{}.parquet", b.meta.id))
            .collect();
        tier.archive
            .sweep_once(&self.archive_swept, &all_signals(), &local)
            .await;
        let cutoff = now_ms().saturating_sub(duration_ms(self.options.retention));
        let old: Vec<Arc<Block>> = self
            .blocks
            .read()
            .iter()
            .filter(|b| b.meta.max_time < cutoff)
            .cloned()
            .collect();
        let mut moved = 0;
        telemetry::set_pending(SIGNAL, old.len());
        for (i, block) in old.iter().enumerate() {
            if block.meta.num_samples > 0 && !tier.archive.has_source(SIGNAL, &block.meta.id) {
                let files = self.write_block_files(&tier.archive, block).await?;
                failpoint::hit("archive.metrics.before_manifest");
                tier.archive.edit_manifest(|m| m.add(files)).await?;
            }
            failpoint::hit("archive.metrics.before_delete");
            self.delete_blocks(vec![Arc::clone(block)], "moved to the archive")
                .await?;
            telemetry::moved(SIGNAL);
            telemetry::set_pending(SIGNAL, old.len() - i - 1);
            moved += 1;
        }
        self.expire_archive(tier).await?;
        self.update_gauges();
        Ok(moved)
    }

    /// Writes and verifies one file per hour of `block` and its rollup files per day;
    /// returns their manifest entries.
    pub(super) async fn write_block_files(
        &self,
        archive: &Archive,
        block: &Arc<Block>,
    ) -> Result<Vec<FileEntry>> {
        let started = Instant::now();
        let mut files = Vec::new();
        let mut hour = block.meta.min_time.div_euclid(HOUR_MS) * HOUR_MS;
        while hour <= block.meta.max_time {
            let b = Arc::clone(block);
            let encoded = encode_blocking(move || encode_hour(&b, hour)).await?;
            put_files(archive, SIGNAL, encoded, &mut files).await?;
            hour += HOUR_MS;
        }
        let mut day = block.meta.min_time.div_euclid(DAY_MS) * DAY_MS;
        while day <= block.meta.max_time {
            let b = Arc::clone(block);
            let encoded = encode_blocking(move || encode_rollup_day(&b, day)).await?;
            put_files(archive, SIGNAL, encoded, &mut files).await?;
            day += DAY_MS;
        }
        let (rows, bytes) = files
            .iter()
            .filter(|f| f.signal == SIGNAL)
            .fold((0, 0), |(r, b), f| (r + f.rows, b + f.bytes));
        tracing::info!(
            block = %block.meta.id, files = files.len(), samples = rows, bytes,
            bytes_per_sample = bytes as f64 / rows.max(1) as f64,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "block written to the archive"
        );
        Ok(files)
    }

    /// Deletes archived files whose newest sample left the warm window more than
    /// `archive_for` ago.
    async fn expire_archive(&self, tier: &ArchiveTier) -> Result<()> {
        let keep = duration_ms(self.options.retention).saturating_add(duration_ms(tier.keep_for));
        let cutoff = now_ms().saturating_sub(keep);
        tier.archive.expire(&all_signals(), cutoff).await
    }

    /// Archived series matching `matchers` with samples in `[mint, maxt]`, file by file
    /// (a series spanning files appears once per file). Blocking.
    pub(super) fn archived_series(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<ArchivedSeries>> {
        let Some(tier) = self.archive_tier() else {
            return Ok(Vec::new());
        };
        // files are independent: fetched and decoded on every core, kept in file order
        let files = tier.archive.files(SIGNAL, mint, maxt);
        self.read_archive_files(tier, &files, |bytes, out| {
            read_series(bytes, matchers, mint, maxt, out)
        })
    }

    /// Archived rollups at `resolution_ms` of the series matching `matchers` in
    /// `[mint, maxt]`, merged per series in time order, and the files read. `None` when no
    /// raw archive file overlaps the range or one of them has no rollups (it was archived
    /// before rollups existed). Blocking.
    pub(super) fn archived_rollups(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
        resolution_ms: i64,
        agg: RollupAggregate,
    ) -> Result<Option<(RollupsBySeries, usize)>> {
        let Some(tier) = self.archive_tier() else {
            return Ok(None);
        };
        let signal = rollup_signal(resolution_ms);
        let raw = tier.archive.files(SIGNAL, mint, maxt);
        if raw.is_empty()
            || !raw
                .iter()
                .all(|f| tier.archive.has_source(&signal, &f.source))
        {
            return Ok(None);
        }
        let files = tier.archive.files(&signal, mint, maxt);
        let per_file = self.read_archive_files(tier, &files, |bytes, out| {
            read_rollups(bytes, matchers, mint, maxt, agg, out)
        })?;
        let mut merged = RollupsBySeries::new();
        for (labels, rollups) in per_file {
            merged.entry(labels).or_default().extend(rollups);
        }
        for rollups in merged.values_mut() {
            rollups.sort_by_key(|r| r.timestamp_ms);
        }
        Ok(Some((merged, files.len())))
    }

    /// Reads `files` on every core with `read`, in file order.
    fn read_archive_files<R: Send>(
        &self,
        tier: &ArchiveTier,
        files: &[FileEntry],
        read: impl Fn(bytes::Bytes, &mut Vec<R>) -> Result<()> + Sync,
    ) -> Result<Vec<R>> {
        use rayon::prelude::*;
        let per_file: Vec<Vec<R>> = files
            .par_iter()
            .map(|f| {
                let bytes = tier.archive.read_blocking(&f.path)?;
                let mut out = Vec::new();
                read(bytes, &mut out).map_err(|e| {
                    StoreError::Unavailable(format!(
                        "archive {}: {}: {e}",
                        tier.archive.location(),
                        f.path
                    ))
                })?;
                Ok(out)
            })
            .collect::<Result<_>>()?;
        Ok(per_file.into_iter().flatten().collect())
    }

    /// Archive files a selection of `[mint, maxt]` reads.
    pub(super) fn archive_files_overlapping(&self, mint: i64, maxt: i64) -> usize {
        self.archive_tier()
            .map_or(0, |t| t.archive.files(SIGNAL, mint, maxt).len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_paths_are_hive_partitioned_by_utc_hour() {
        // 2026-11-21T13:00:00Z
        assert_eq!(
            file_path(1_763_730_000_000, "b1"),
            "metrics/date=2025-11-21/hour=13/part-b1.parquet"
        );
    }

    #[test]
    fn rollup_files_are_partitioned_by_utc_day() {
        assert_eq!(rollup_signal(300_000), "metrics-5m");
        assert_eq!(rollup_signal(3_600_000), "metrics-1h");
        assert_eq!(
            rollup_file_path("metrics-5m", 1_763_683_200_000, "b1"),
            "metrics-5m/date=2025-11-21/part-b1.parquet"
        );
        assert_eq!(all_signals(), ["metrics", "metrics-5m", "metrics-1h"]);
    }
}
