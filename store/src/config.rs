//! Options the store is opened with. The binary builds them from its YAML config
//! (`storage:` section), environment and flags.

use std::path::PathBuf;
use std::time::Duration;

/// When the WAL fsyncs relative to acknowledging a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync before every acknowledgement; concurrent writers share one fsync (group commit).
    Always,
    /// Acknowledge once written to the OS; fsync at this interval. A machine crash (not a
    /// process crash) may lose up to one interval.
    Interval(Duration),
    /// Never fsync explicitly (tests and benchmarks only).
    Never,
}

#[derive(Clone, Debug)]
pub struct WalOptions {
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    /// A segment is closed and a new one started past this size.
    pub segment_size_bytes: u64,
    /// Appends waiting for the WAL writer beyond this count are refused as overload.
    pub max_pending_appends: usize,
}

/// Per-series and per-sample limits applied at append; each rejection is reported by name.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub max_labels_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    /// Samples older than now minus this are rejected (`too_old`).
    pub max_sample_age: Duration,
    /// Samples newer than now plus this are rejected (`too_far_in_future`).
    pub max_future: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_labels_per_series: 64,
            max_label_name_length: 1024,
            max_label_value_length: 4096,
            max_sample_age: Duration::from_secs(7 * 24 * 3600),
            max_future: Duration::from_secs(10 * 60),
        }
    }
}

#[derive(Clone, Debug)]
pub struct MetricsStoreOptions {
    /// Root of the metrics store: `wal/`, `blocks/`, `meta.sled/` live below it.
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    pub limits: Limits,
    /// The in-memory head is persisted to an immutable block at this interval (and at
    /// shutdown), after which its WAL segments are deleted.
    pub flush_interval: Duration,
    /// Blocks whose newest sample is older than this leave the local store: moved to the
    /// archive when there is one, else deleted.
    pub retention: Duration,
    /// The cold tier, if any: where old blocks go and how long they stay there.
    pub archive: Option<ArchiveTier>,
}

/// The archive tier of one signal.
#[derive(Clone, Debug)]
pub struct ArchiveTier {
    pub archive: std::sync::Arc<crate::archive::Archive>,
    /// How long archived data is kept after it left the warm tier.
    pub keep_for: Duration,
}

impl MetricsStoreOptions {
    /// Defaults for a store rooted at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        MetricsStoreOptions {
            dir: dir.into(),
            fsync: FsyncPolicy::Always,
            limits: Limits::default(),
            flush_interval: Duration::from_secs(2 * 3600),
            retention: Duration::from_secs(15 * 24 * 3600),
            archive: None,
        }
    }
}
