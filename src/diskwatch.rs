//! The data directory's disk: `lookout_disk_free_bytes` and `lookout_disk_size_bytes`, and
//! the built-in alert `LookoutDiskAlmostFull`.
//!
//! Lookout never deletes data to make room (an archive that cannot be reached keeps blocks
//! local until their upload is confirmed, so a long outage fills the disk). Instead, while
//! the free space is below `storage.disk_alert_free_ratio` of the disk, the alert is posted
//! to the alerter's dispatcher every check, as an external Prometheus posts its alerts, so it
//! goes through the configured routes, grouping, silences and receivers (DingTalk, WeCom,
//! email) like any other; it resolves on its own once the posts stop.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use alerter::dispatch::api_types::{PostableAlert, Timestamp};
use alerter::service::Alerter;
use prometheus::{register_int_gauge_vec, IntGaugeVec};

pub const ALERT_NAME: &str = "LookoutDiskAlmostFull";
/// How often the disk is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(15);
/// A posted alert stays firing this long without a new post (Prometheus uses 4 evaluation
/// intervals the same way).
const FIRING_FOR: Duration = Duration::from_secs(4 * 15);

static FREE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "lookout_disk_free_bytes",
        "Bytes free for Lookout on the disk of its data directory.",
        &["dir"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_disk_free_bytes: {e}"))
});
static SIZE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "lookout_disk_size_bytes",
        "Size of the disk of Lookout's data directory.",
        &["dir"]
    )
    .unwrap_or_else(|e| panic!("registering lookout_disk_size_bytes: {e}"))
});

/// Free bytes (for an unprivileged writer) and size of the file system holding `dir`.
pub fn disk_space(dir: &Path) -> std::io::Result<(u64, u64)> {
    let s = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok((
        s.f_bavail.saturating_mul(s.f_frsize),
        s.f_blocks.saturating_mul(s.f_frsize),
    ))
}

/// The alert for `dir` with `free` of `size` bytes left, firing until `ends_ms`.
fn alert(dir: &Path, free: u64, size: u64, min_free_ratio: f64, ends_ms: i64) -> PostableAlert {
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let used_percent = 100.0 * (1.0 - free as f64 / size.max(1) as f64);
    let labels = [
        ("alertname", ALERT_NAME.to_string()),
        ("severity", "critical".to_string()),
        ("dir", dir.display().to_string()),
    ];
    let annotations = [
        (
            "summary",
            format!(
                "Lookout's data disk is {used_percent:.1}% full: {:.1} GiB free of {:.1} GiB at {}",
                gib(free),
                gib(size),
                dir.display()
            ),
        ),
        (
            "description",
            format!(
                "Free space is below storage.disk_alert_free_ratio ({:.0}%). Lookout deletes \
                 nothing to make room: when the disk is full, writes fail and are not \
                 acknowledged. Free space, grow the disk, shorten warm_for, or check that the \
                 archive is reachable (lookout_archive_pending, lookout_archive_errors_total).",
                min_free_ratio * 100.0
            ),
        ),
    ];
    PostableAlert {
        labels: labels
            .map(|(k, v)| (k.to_string(), v))
            .into_iter()
            .collect(),
        annotations: annotations
            .map(|(k, v)| (k.to_string(), v))
            .into_iter()
            .collect(),
        starts_at: None,
        ends_at: Some(Timestamp(ends_ms)),
        generator_url: String::new(),
    }
}

/// Checks the disk of `dir` now and every [`CHECK_EVERY`] until `stop` turns true.
pub fn spawn(
    dir: PathBuf,
    min_free_ratio: f64,
    alerter: Arc<Alerter>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let label = dir.display().to_string();
        let mut low = false;
        loop {
            match disk_space(&dir) {
                Ok((free, size)) => {
                    FREE.with_label_values(&[&label]).set(free as i64);
                    SIZE.with_label_values(&[&label]).set(size as i64);
                    let below = (free as f64) < min_free_ratio * size as f64;
                    if below {
                        let ends =
                            alerter::notify::attempts::now_ms() + FIRING_FOR.as_millis() as i64;
                        let a = alert(&dir, free, size, min_free_ratio, ends);
                        if let Err(e) = alerter.dispatcher().post_alerts(vec![a]) {
                            tracing::error!(error = %e, "posting the disk alert failed");
                        }
                    }
                    if below != low {
                        if below {
                            tracing::error!(dir = %label, free_bytes = free, size_bytes = size,
                                min_free_ratio, "the data disk is almost full; alert {ALERT_NAME} fires");
                        } else {
                            tracing::info!(dir = %label, free_bytes = free, "the data disk has room again");
                        }
                        low = below;
                    }
                }
                Err(e) => {
                    tracing::warn!(dir = %label, error = %e, "reading the data disk's free space failed")
                }
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(CHECK_EVERY) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_of_a_directory_has_a_size_and_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let (free, size) = disk_space(dir.path()).unwrap();
        assert!(size > 0 && free <= size, "{free} of {size}");
        assert!(disk_space(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn the_alert_names_the_disk_and_what_to_do() {
        let a = alert(Path::new("/data"), 1 << 30, 10 << 30, 0.15, 123);
        assert_eq!(a.labels["alertname"], ALERT_NAME);
        assert_eq!(a.labels["dir"], "/data");
        assert_eq!(
            a.annotations["summary"],
            "Lookout's data disk is 90.0% full: 1.0 GiB free of 10.0 GiB at /data"
        );
        assert!(a.annotations["description"].contains("(15%)"));
        assert_eq!(a.ends_at, Some(Timestamp(123)));
        assert!(a.validate().is_ok());
    }
}
