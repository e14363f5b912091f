//! File-system helpers shared by the WAL and the TSDB.

use std::fs::File;
use std::path::Path;

use crate::error::{Result, StoreError};

/// fsyncs a directory so that file creations, renames and deletions in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}
