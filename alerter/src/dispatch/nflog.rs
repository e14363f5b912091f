//! The notification log, as Alertmanager's `nflog`: per (group key, receiver, integration)
//! the firing and resolved alert fingerprints of the last notification and when it was
//! sent. Written through to the `nflog` tree so that after a restart a group that was
//! already notified is not notified again before its `repeat_interval`. Entries expire
//! after twice the longest `repeat_interval`.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::state::{StateDb, StateError, StateTree};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub group_key: String,
    pub receiver: String,
    pub integration: String,
    pub firing: BTreeSet<u64>,
    pub resolved: BTreeSet<u64>,
    pub timestamp_ms: i64,
    pub expires_at_ms: i64,
}

impl Entry {
    /// Alertmanager's `DedupStage.needsUpdate`: whether a notification with these firing
    /// and resolved sets is due, given the last one (`prev`).
    pub fn needs_update(
        prev: Option<&Entry>,
        firing: &BTreeSet<u64>,
        resolved: &BTreeSet<u64>,
        send_resolved: bool,
        repeat: Duration,
        now_ms: i64,
    ) -> bool {
        let Some(prev) = prev else {
            // Never notified: only when something fires.
            return !firing.is_empty();
        };
        if !firing.is_subset(&prev.firing) {
            return true;
        }
        if firing.is_empty() {
            // Everything resolved: notify (even without send_resolved, to clear the
            // firing set from the log) unless the receiver never heard of them.
            return !prev.firing.is_empty();
        }
        if send_resolved && !resolved.is_subset(&prev.resolved) {
            return true;
        }
        prev.timestamp_ms <= now_ms - repeat.as_millis() as i64
    }
}

/// The key of an entry, as the log and the per-key delivery locks use it.
pub(crate) fn key(group_key: &str, receiver: &str, integration: &str) -> String {
    format!("{group_key}\u{1f}{receiver}\u{1f}{integration}")
}

/// The notification log.
pub struct NotificationLog {
    tree: StateTree,
    entries: Mutex<HashMap<String, Entry>>,
    retention_ms: AtomicI64,
}

impl NotificationLog {
    pub fn open(db: &StateDb, retention: Duration) -> Result<Self, StateError> {
        let tree = db.tree("nflog")?;
        let entries = tree
            .entries::<Entry>()?
            .into_iter()
            .map(|(_, e)| (key(&e.group_key, &e.receiver, &e.integration), e))
            .collect();
        Ok(NotificationLog {
            tree,
            entries: Mutex::new(entries),
            retention_ms: AtomicI64::new(retention.as_millis() as i64),
        })
    }

    pub fn set_retention(&self, retention: Duration) {
        self.retention_ms
            .store(retention.as_millis() as i64, Ordering::Relaxed);
    }

    pub fn get(&self, group_key: &str, receiver: &str, integration: &str) -> Option<Entry> {
        self.entries
            .lock()
            .get(&key(group_key, receiver, integration))
            .cloned()
    }

    /// Records a notification (or a decision not to send one that still clears state).
    pub fn log(
        &self,
        group_key: &str,
        receiver: &str,
        integration: &str,
        firing: BTreeSet<u64>,
        resolved: BTreeSet<u64>,
        now_ms: i64,
    ) -> Result<(), StateError> {
        let e = Entry {
            group_key: group_key.to_string(),
            receiver: receiver.to_string(),
            integration: integration.to_string(),
            firing,
            resolved,
            timestamp_ms: now_ms,
            expires_at_ms: now_ms + self.retention_ms.load(Ordering::Relaxed),
        };
        let k = key(group_key, receiver, integration);
        self.tree.put(k.as_bytes(), &e)?;
        self.entries.lock().insert(k, e);
        Ok(())
    }

    /// Makes the entries logged so far durable: a crash right after a delivery must not
    /// deliver it again after the restart.
    pub async fn flush(&self) -> Result<(), StateError> {
        let tree = self.tree.clone();
        tokio::task::spawn_blocking(move || tree.flush())
            .await
            .map_err(|e| StateError {
                what: "nflog".into(),
                message: format!("flush task failed: {e}"),
            })?
    }

    /// Drops expired entries; returns how many.
    pub fn gc(&self, now_ms: i64) -> usize {
        let mut entries = self.entries.lock();
        let old: Vec<String> = entries
            .iter()
            .filter(|(_, e)| e.expires_at_ms < now_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &old {
            entries.remove(k);
            if let Err(e) = self.tree.remove(k.as_bytes()) {
                tracing::error!(error = %e, "removing an expired notification log entry failed");
            }
        }
        old.len()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn dedup_follows_alertmanager() {
        let repeat = Duration::from_secs(100);
        let e = |firing: &[u64], resolved: &[u64], ts: i64| Entry {
            group_key: "g".into(),
            receiver: "r".into(),
            integration: "i".into(),
            firing: set(firing),
            resolved: set(resolved),
            timestamp_ms: ts,
            expires_at_ms: i64::MAX,
        };
        // Whether a flush of these firing and resolved alerts at `now` is sent, after `prev`.
        let nu = |prev: Option<&Entry>,
                  firing: &[u64],
                  resolved: &[u64],
                  send_resolved: bool,
                  now: i64| {
            Entry::needs_update(
                prev,
                &set(firing),
                &set(resolved),
                send_resolved,
                repeat,
                now,
            )
        };
        assert!(nu(None, &[1], &[], true, 0));
        assert!(!nu(None, &[], &[1], true, 0));
        let both_firing = e(&[1, 2], &[], 0);
        let prev = Some(&both_firing);
        assert!(!nu(prev, &[1, 2], &[], true, 50_000));
        assert!(nu(prev, &[1, 2, 3], &[], true, 50_000));
        // One resolved: only with send_resolved before the repeat interval.
        assert!(nu(prev, &[1], &[2], true, 50_000));
        assert!(!nu(prev, &[1], &[2], false, 50_000));
        assert!(nu(prev, &[1], &[2], false, 100_000));
        // All resolved: always, unless nothing was firing before.
        assert!(nu(prev, &[], &[1, 2], false, 1));
        assert!(!nu(Some(&e(&[], &[1], 0)), &[], &[1, 2], true, 1));
    }

    #[test]
    fn entries_survive_a_reopen_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = StateDb::open(dir.path()).unwrap();
            let log = NotificationLog::open(&db, Duration::from_secs(10)).unwrap();
            log.log("g", "r", "dingtalk[0]", set(&[1]), set(&[]), 1000)
                .unwrap();
            db.flush().unwrap();
        }
        let db = StateDb::open(dir.path()).unwrap();
        let log = NotificationLog::open(&db, Duration::from_secs(10)).unwrap();
        let e = log.get("g", "r", "dingtalk[0]").unwrap();
        assert_eq!(
            (e.firing, e.timestamp_ms, e.expires_at_ms),
            (set(&[1]), 1000, 11_000)
        );
        assert_eq!(log.gc(11_000), 0);
        assert_eq!(log.gc(11_001), 1);
        assert!(log.is_empty());
        drop(log);
        let log = NotificationLog::open(&db, Duration::from_secs(10)).unwrap();
        assert!(log.is_empty());
    }
}
