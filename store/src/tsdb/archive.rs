//! The metrics store's side of the archive tier: moving blocks older than the warm window
//! into hourly Parquet files, expiring archived files, and reading them back for queries.
//!
//! A block is moved as one unit, in this order (each step's failpoint name in brackets):
//! 1. each hour the block spans is written to `metrics/date=D/hour=H/part-<block>.parquet`
//!    and read back ([`Archive::put_verified`]) [`archive.metrics.after_file`];
//! 2. all of the block's files are added to the manifest in one put
//!    [`archive.metrics.before_manifest`, `archive.metrics.before_delete`];
//! 3. the block leaves the in-memory list and its directory is deleted.
//!
//! Killed after 1, the files are unnamed and the block is still local: the next pass writes
//! them again under the same names. Killed after 2, the manifest names the block: the next
//! open (or pass) deletes the local copy without writing again. Queries during the move may
//! read a sample from both copies; the merge keeps one per timestamp.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::archive::metrics::{read_series, ArchivedSeries, MetricsFileWriter};
use crate::archive::{failpoint, telemetry, Archive, FileEntry};
use crate::clock::{duration_ms, now_ms};
use crate::config::ArchiveTier;
use crate::contract::LabelMatcher;
use crate::error::{Result, StoreError};
use crate::model::Sample;
use crate::timefmt::DateTime;

use super::block::Block;
use super::MetricsStore;

pub const SIGNAL: &str = "metrics";
const HOUR_MS: i64 = 3_600_000;

/// When the next move may be tried after failures: doubling from 1 s up to 5 minutes.
#[derive(Debug)]
pub(super) struct Backoff {
    next_try: Instant,
    delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next_try: Instant::now(),
            delay: Duration::ZERO,
        }
    }
}

impl Backoff {
    fn failed(&mut self) -> Duration {
        self.delay = (self.delay * 2).clamp(Duration::from_secs(1), Duration::from_secs(300));
        self.next_try = Instant::now() + self.delay;
        self.delay
    }

    fn succeeded(&mut self) {
        *self = Backoff::default();
    }
}

/// The archive path of the file holding hour `hour_start` of block `block_id`.
pub fn file_path(hour_start: i64, block_id: &str) -> String {
    let t = DateTime::from_unix_secs(hour_start.div_euclid(1000));
    format!(
        "{SIGNAL}/date={:04}-{:02}-{:02}/hour={:02}/part-{block_id}.parquet",
        t.year, t.month, t.day, t.hour
    )
}

/// Writes the samples of `[hour_start, hour_start + 1h)` of every series in `block` into one
/// Parquet file. Blocking (decodes and compresses). `None` if the hour has no samples.
fn encode_hour(block: &Block, hour_start: i64) -> Result<Option<(FileEntry, bytes::Bytes)>> {
    let (lo, hi) = (hour_start, hour_start + HOUR_MS - 1);
    let mut writer = MetricsFileWriter::new()?;
    let mut pages = HashMap::new();
    let mut samples: Vec<Sample> = Vec::new();
    // series ids are in label order, as the file wants them
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
            writer.push_series(&labels, &samples)?;
        }
    }
    let Some(file) = writer.finish()? else {
        return Ok(None);
    };
    let entry = FileEntry {
        signal: SIGNAL.to_string(),
        path: file_path(hour_start, &block.meta.id),
        source: block.meta.id.clone(),
        min_time: file.min_time,
        max_time: file.max_time,
        rows: file.rows,
        bytes: file.bytes.len() as u64,
        series: file.series,
    };
    Ok(Some((entry, file.bytes)))
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
        if Instant::now() < self.archive_backoff.lock().next_try {
            return Ok(0);
        }
        let result = self.archive_pass(tier).await;
        match &result {
            Ok(_) => self.archive_backoff.lock().succeeded(),
            Err(e) => {
                telemetry::move_failed();
                let wait = self.archive_backoff.lock().failed();
                tracing::error!(archive = %tier.archive.location(), error = %e,
                    retry_in_s = wait.as_secs(), "moving metrics to the archive failed; the blocks stay local");
            }
        }
        result
    }

    async fn archive_pass(&self, tier: &ArchiveTier) -> Result<usize> {
        let _guard = self.compact_lock.lock().await;
        if !tier.archive.ensure_manifest().await {
            return Err(StoreError::Unavailable(format!(
                "archive {}: manifest not readable",
                tier.archive.location()
            )));
        }
        if !self
            .archive_swept
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            if let Err(e) = self.sweep_unnamed_files(&tier.archive).await {
                tracing::warn!(error = %e, "sweeping unnamed archive files failed");
                self.archive_swept
                    .store(false, std::sync::atomic::Ordering::Release);
            }
        }
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

    /// Writes and verifies one file per hour of `block`; returns their manifest entries.
    pub(super) async fn write_block_files(
        &self,
        archive: &Archive,
        block: &Arc<Block>,
    ) -> Result<Vec<FileEntry>> {
        let started = Instant::now();
        let first_hour = block.meta.min_time.div_euclid(HOUR_MS) * HOUR_MS;
        let mut files = Vec::new();
        let mut hour = first_hour;
        while hour <= block.meta.max_time {
            let b = Arc::clone(block);
            let encoded = tokio::task::spawn_blocking(move || encode_hour(&b, hour))
                .await
                .map_err(|e| {
                    StoreError::Unavailable(format!("archive encoder task failed: {e}"))
                })??;
            if let Some((entry, bytes)) = encoded {
                archive.put_verified(&entry.path, bytes).await?;
                failpoint::hit("archive.metrics.after_file");
                files.push(entry);
            }
            hour += HOUR_MS;
        }
        let (rows, bytes) = files
            .iter()
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
    /// `archive_for` ago: the manifest first, then the objects.
    async fn expire_archive(&self, tier: &ArchiveTier) -> Result<()> {
        let keep = duration_ms(self.options.retention).saturating_add(duration_ms(tier.keep_for));
        let cutoff = now_ms().saturating_sub(keep);
        let expired: Vec<String> = tier
            .archive
            .files(SIGNAL, i64::MIN, cutoff)
            .into_iter()
            .filter(|f| f.max_time < cutoff)
            .map(|f| f.path)
            .collect();
        if expired.is_empty() {
            return Ok(());
        }
        let remove = expired.clone();
        tier.archive.edit_manifest(|m| m.remove(&remove)).await?;
        failpoint::hit("archive.metrics.before_expire_delete");
        tracing::info!(
            files = expired.len(),
            "archived metric files deleted by retention"
        );
        tier.archive.delete(expired).await
    }

    /// Deletes files under `metrics/` that the manifest does not name and no local block
    /// will write again: what a move or an expiry killed half-way left behind.
    async fn sweep_unnamed_files(&self, archive: &Archive) -> Result<()> {
        let named: std::collections::HashSet<String> = archive
            .files(SIGNAL, i64::MIN, i64::MAX)
            .into_iter()
            .map(|f| f.path)
            .collect();
        let local: Vec<String> = self
            .blocks
            .read()
            .iter()
            .map(|b| b.meta.id.clone())
            .collect();
        let unnamed: Vec<String> = archive
            .list(SIGNAL)
            .await?
            .into_iter()
            .filter(|p| !named.contains(p))
            .filter(|p| {
                !local
                    .iter()
                    .any(|id| p.ends_with(&format!("part-{id}.parquet")))
            })
            .collect();
        if !unnamed.is_empty() {
            tracing::info!(
                files = unnamed.len(),
                "deleting archive files no manifest entry names"
            );
            archive.delete(unnamed).await?;
        }
        Ok(())
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
        use rayon::prelude::*;
        let per_file: Vec<Vec<ArchivedSeries>> = tier
            .archive
            .files(SIGNAL, mint, maxt)
            .par_iter()
            .map(|f| {
                let bytes = tier.archive.read_blocking(&f.path)?;
                let mut out = Vec::new();
                read_series(bytes, matchers, mint, maxt, &mut out).map_err(|e| {
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
    fn backoff_doubles_and_resets() {
        let mut b = Backoff::default();
        assert_eq!(b.failed(), Duration::from_secs(1));
        assert_eq!(b.failed(), Duration::from_secs(2));
        for _ in 0..20 {
            b.failed();
        }
        assert_eq!(b.delay, Duration::from_secs(300));
        b.succeeded();
        assert!(b.next_try <= Instant::now());
    }
}
