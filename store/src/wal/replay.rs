//! Replay at open: reads every segment in order, hands each valid record to the caller, and
//! repairs what a crash can leave behind.
//!
//! * Damage in the last segment is a torn tail (the process or machine died mid-write): the
//!   file is truncated to the last good record so the next open is clean.
//! * Damage in an earlier segment cannot come from a torn write under `fsync: always` (a
//!   segment is fsynced before the next one is created), so it is counted as corruption, the
//!   rest of that segment is skipped, and replay goes on with the next one.
//! * A last segment too short to hold its header is what a crash during rotation leaves; it
//!   holds no records and is deleted.
//! * A segment of an unknown (newer) version stops the open with an error rather than being
//!   cut: it is data this build cannot read, not damage.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::BufReader;
use std::path::Path;

use crate::error::{Result, StoreError};
use crate::fsutil::sync_dir;
use crate::wal::format::{self, Damage, Header, Next, SegmentReader};
use crate::wal::metrics::WalMetrics;
use crate::wal::SegmentId;

const READ_BUFFER_BYTES: usize = 1 << 20;

/// Ids of the segment files in `dir`, ascending; other files are ignored.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentId>> {
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        if let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(format::parse_segment_file_name)
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Replays every segment in `dir` through `on_record`; returns the segments left on disk
/// with their sizes.
pub fn replay(
    dir: &Path,
    metrics: &WalMetrics,
    mut on_record: impl FnMut(SegmentId, &[u8]) -> Result<()>,
) -> Result<BTreeMap<SegmentId, u64>> {
    let ids = list_segments(dir)?;
    let mut sizes = BTreeMap::new();
    let mut dir_changed = false;
    for (i, &id) in ids.iter().enumerate() {
        let is_last = i + 1 == ids.len();
        let path = format::segment_path(dir, id);
        match replay_segment(&path, id, is_last, metrics, &mut on_record)? {
            Some(size) => {
                sizes.insert(id, size);
            }
            None => {
                fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
                dir_changed = true;
            }
        }
    }
    if dir_changed {
        sync_dir(dir)?;
    }
    Ok(sizes)
}

/// Replays one segment; returns its size after any repair, or None if it should be deleted.
fn replay_segment(
    path: &Path,
    id: SegmentId,
    is_last: bool,
    metrics: &WalMetrics,
    on_record: &mut impl FnMut(SegmentId, &[u8]) -> Result<()>,
) -> Result<Option<u64>> {
    let io_err = |e| StoreError::io(path, e);
    let file = File::open(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let mut reader =
        SegmentReader::new(BufReader::with_capacity(READ_BUFFER_BYTES, file), file_len);
    match reader.read_header().map_err(io_err)? {
        Header::Ok => {}
        Header::UnsupportedVersion(v) => {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: format!(
                    "segment version {v} is not supported by this build (it reads version {})",
                    format::VERSION
                ),
            });
        }
        Header::Damaged(Damage::ShortHeader) if is_last => {
            tracing::warn!(
                file = %path.display(), size = file_len,
                "wal segment shorter than its header, left by a crash during rotation; deleting it"
            );
            metrics.corruptions.inc();
            return Ok(None);
        }
        Header::Damaged(damage) => {
            // Not ours to cut: keep the file as evidence; it holds nothing we can read and
            // goes away with the next remove_segments_upto past it.
            tracing::warn!(
                file = %path.display(), offset = 0, reason = %damage,
                "wal segment header unreadable; skipping the segment"
            );
            metrics.corruptions.inc();
            return Ok(Some(file_len));
        }
    }
    loop {
        match reader.next_record().map_err(io_err)? {
            Next::Record => on_record(id, reader.payload())?,
            Next::End => return Ok(Some(file_len)),
            Next::Damaged { offset, damage } => {
                metrics.corruptions.inc();
                if is_last {
                    tracing::warn!(
                        file = %path.display(), offset, reason = %damage,
                        "torn or corrupt wal tail; truncating it away"
                    );
                    let file = OpenOptions::new().write(true).open(path).map_err(io_err)?;
                    file.set_len(offset).map_err(io_err)?;
                    file.sync_all().map_err(io_err)?;
                    return Ok(Some(offset));
                }
                tracing::warn!(
                    file = %path.display(), offset, reason = %damage,
                    "corrupt record in a closed wal segment; skipping the rest of the segment"
                );
                return Ok(Some(file_len));
            }
        }
    }
}
