//! The record of every delivery attempt (`GET /api/v1/notifications`): kept in memory for
//! reading, newest last, and persisted in the `attempts` tree of the state database under
//! big-endian (time ms, sequence) keys so key order is time order; the last 10,000 survive.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::state::{StateDb, StateError, StateTree};

/// How many attempts are kept (in memory and on disk).
pub const KEEP: usize = 10_000;

/// How far the on-disk tree may grow past [`KEEP`] before it is trimmed (trimming per
/// insert would scan the tree every time).
const TRIM_SLACK: usize = 500;

/// What one attempt came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    /// Failed transiently; another attempt follows.
    Retrying,
    /// Failed for good (permanent failure, or retries exhausted).
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Retrying => "retrying",
            Outcome::Failed => "failed",
        }
    }
}

/// One delivery attempt of one notification through one integration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub receiver: String,
    /// The integration within its receiver, e.g. `dingtalk[0]`.
    pub integration: String,
    /// `dingtalk`, `wecom`, `email` or `webhook`.
    pub kind: String,
    /// When the attempt ended, RFC 3339 (UTC, milliseconds).
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub time_ms: Option<i64>,
    pub outcome: Outcome,
    /// 1-based number of this attempt for this notification.
    pub attempt: u32,
    pub status_code: Option<u16>,
    pub errcode: Option<i64>,
    pub errmsg: Option<String>,
    pub group_key: String,
    /// Alerts in the notification.
    pub alerts: usize,
    /// Messages the platform accepted in this attempt.
    pub messages: usize,
    /// Whether the notification went out merged with others into one digest.
    pub digest: bool,
}

/// Formats Unix milliseconds as RFC 3339 with milliseconds (`2006-01-02T15:04:05.000Z`);
/// times before the epoch print as the epoch.
pub fn rfc3339_ms(ms: i64) -> String {
    store::timefmt::format_rfc3339_millis(ms.max(0))
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The attempts log.
pub struct AttemptLog {
    tree: StateTree,
    inner: Mutex<Inner>,
}

struct Inner {
    recent: VecDeque<Attempt>,
    on_disk: usize,
    last_key: (i64, u64),
}

impl AttemptLog {
    /// Opens the `attempts` tree and loads the last [`KEEP`] attempts.
    pub fn open(db: &StateDb) -> Result<Self, StateError> {
        let tree = db.tree("attempts")?;
        let entries: Vec<(Vec<u8>, Attempt)> = tree.entries()?;
        let on_disk = entries.len();
        let last_key = entries
            .last()
            .map_or((0, 0), |(k, _)| decode_key(k).unwrap_or((0, 0)));
        let skip = entries.len().saturating_sub(KEEP);
        let recent = entries.into_iter().skip(skip).map(|(_, a)| a).collect();
        Ok(AttemptLog {
            tree,
            inner: Mutex::new(Inner {
                recent,
                on_disk,
                last_key,
            }),
        })
    }

    /// Appends an attempt (its `time_ms` set by the caller) and persists it. A failing
    /// database is logged, not fatal: delivery goes on.
    pub fn record(&self, attempt: Attempt) {
        let mut inner = self.inner.lock();
        let ms = attempt.time_ms.unwrap_or_else(now_ms);
        // keys strictly increase even when the clock steps back
        let key = if ms > inner.last_key.0 {
            (ms, 0)
        } else {
            (inner.last_key.0, inner.last_key.1 + 1)
        };
        inner.last_key = key;
        match self.tree.put(&encode_key(key), &attempt) {
            Ok(()) => inner.on_disk += 1,
            Err(e) => tracing::warn!(error = %e, "persisting a notification attempt failed"),
        }
        if inner.on_disk > KEEP + TRIM_SLACK {
            match self.tree.remove_oldest(inner.on_disk - KEEP) {
                Ok(()) => inner.on_disk = KEEP,
                Err(e) => tracing::warn!(error = %e, "trimming the notification attempts failed"),
            }
        }
        inner.recent.push_back(attempt);
        while inner.recent.len() > KEEP {
            inner.recent.pop_front();
        }
    }

    /// The newest `limit` attempts (of `receiver` when given), newest first.
    pub fn list(&self, receiver: Option<&str>, limit: usize) -> Vec<Attempt> {
        let inner = self.inner.lock();
        inner
            .recent
            .iter()
            .rev()
            .filter(|a| receiver.is_none_or(|r| a.receiver == r))
            .take(limit)
            .cloned()
            .collect()
    }
}

fn encode_key((ms, seq): (i64, u64)) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(ms.max(0) as u64).to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn decode_key(k: &[u8]) -> Option<(i64, u64)> {
    let ms = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
    let seq = u64::from_be_bytes(k.get(8..16)?.try_into().ok()?);
    Some((ms as i64, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(receiver: &str, ms: i64, n: u32) -> Attempt {
        Attempt {
            receiver: receiver.into(),
            integration: "dingtalk[0]".into(),
            kind: "dingtalk".into(),
            time: rfc3339_ms(ms),
            time_ms: Some(ms),
            outcome: Outcome::Success,
            attempt: n,
            status_code: Some(200),
            errcode: Some(0),
            errmsg: None,
            group_key: "g".into(),
            alerts: 1,
            messages: 1,
            digest: false,
        }
    }

    #[test]
    fn newest_first_filtered_and_read_back_from_the_tree() {
        let db = StateDb::temporary().unwrap();
        let log = AttemptLog::open(&db).unwrap();
        log.record(attempt("a", 1_000, 1));
        log.record(attempt("b", 1_000, 2)); // same millisecond: the sequence orders it
        log.record(attempt("a", 3_000, 3));
        let all = log.list(None, 10);
        assert_eq!(
            all.iter().map(|a| a.attempt).collect::<Vec<_>>(),
            vec![3, 2, 1]
        );
        assert_eq!(log.list(Some("a"), 1)[0].attempt, 3);
        assert_eq!(log.list(Some("b"), 10).len(), 1);
        // what a restart loads: the tree, in key (time, sequence) order
        let reopened = AttemptLog::open(&db).unwrap();
        assert_eq!(reopened.list(None, 10), all);
        assert_eq!(all[0].time, "1970-01-01T00:00:03.000Z");
        // the next key continues after the loaded ones
        reopened.record(attempt("a", 500, 4));
        assert_eq!(reopened.list(None, 1)[0].attempt, 4);
        assert_eq!(
            AttemptLog::open(&db).unwrap().list(None, 1)[0].attempt,
            4,
            "a clock stepping back still sorts last"
        );
    }

    #[test]
    fn keeps_the_last_ten_thousand() {
        let db = StateDb::temporary().unwrap();
        let log = AttemptLog::open(&db).unwrap();
        for i in 0..(KEEP + TRIM_SLACK + 10) {
            log.record(attempt("a", i as i64, i as u32));
        }
        let all = log.list(None, usize::MAX);
        assert_eq!(all.len(), KEEP);
        assert_eq!(all[0].attempt as usize, KEEP + TRIM_SLACK + 9);
        let reopened = AttemptLog::open(&db).unwrap();
        assert_eq!(reopened.list(None, usize::MAX).len(), KEEP);
        assert_eq!(reopened.list(None, 1)[0].attempt, all[0].attempt);
    }
}
