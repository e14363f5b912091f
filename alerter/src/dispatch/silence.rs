//! Silences as Alertmanager 0.25 keeps them: pending until `startsAt`, active until `endsAt`,
//! then expired and kept five days before they are garbage-collected. An update keeps the
//! id while Alertmanager's `canUpdate` allows it (same matchers; an active silence keeps
//! its start), otherwise the old silence is expired and a new id is returned. Every change
//! is written to the `silences` tree of the state database.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::api_types::{
    GettableSilence, Matcher, PostableSilence, SilenceState, SilenceStatus, Timestamp,
};
use super::matchers::{all_match, Matcher as LabelMatcher};
use super::Clock;
use crate::model::LabelSet;
use crate::state::{StateDb, StateError, StateTree};

/// How long expired silences are kept (Alertmanager's `--data.retention`, 120h).
pub const RETENTION: Duration = Duration::from_secs(5 * 24 * 3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error("silence not found")]
    NotFound,
    #[error("silence already expired")]
    AlreadyExpired,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredSilence {
    id: String,
    matchers: Vec<Matcher>,
    starts_at_ms: i64,
    ends_at_ms: i64,
    updated_at_ms: i64,
    created_by: String,
    comment: String,
}

#[derive(Clone, Debug)]
struct Silence {
    stored: StoredSilence,
    compiled: Vec<LabelMatcher>,
}

impl Silence {
    fn state(&self, now_ms: i64) -> SilenceState {
        state_at(self.stored.starts_at_ms, self.stored.ends_at_ms, now_ms)
    }

    fn gettable(&self, now_ms: i64) -> GettableSilence {
        let s = &self.stored;
        GettableSilence {
            id: s.id.clone(),
            status: SilenceStatus {
                state: self.state(now_ms),
            },
            updated_at: Timestamp(s.updated_at_ms),
            matchers: s.matchers.clone(),
            starts_at: Timestamp(s.starts_at_ms),
            ends_at: Timestamp(s.ends_at_ms),
            created_by: s.created_by.clone(),
            comment: s.comment.clone(),
        }
    }
}

fn state_at(starts: i64, ends: i64, now: i64) -> SilenceState {
    if ends <= now {
        SilenceState::Expired
    } else if starts <= now {
        SilenceState::Active
    } else {
        SilenceState::Pending
    }
}

/// Alertmanager's `validateSilence` over the matchers: compiled, or why not.
fn compile(matchers: &[Matcher]) -> Result<Vec<LabelMatcher>, String> {
    if matchers.is_empty() {
        return Err("at least one matcher required".into());
    }
    let mut out = Vec::new();
    for (i, m) in matchers.iter().enumerate() {
        out.push(
            m.to_label_matcher()
                .map_err(|e| format!("invalid label matcher {i}: {e}"))?,
        );
    }
    if out.iter().all(|m| m.matches("")) {
        return Err("at least one matcher must not match the empty string".into());
    }
    Ok(out)
}

fn new_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The silences, in memory and in the `silences` tree.
pub struct Silences {
    tree: StateTree,
    clock: Clock,
    by_id: RwLock<HashMap<String, Silence>>,
}

impl Silences {
    /// Loads the persisted silences.
    pub fn open(db: &StateDb, clock: Clock) -> Result<Self, StateError> {
        let tree = db.tree("silences")?;
        let mut by_id = HashMap::new();
        for (_, stored) in tree.entries::<StoredSilence>()? {
            match compile(&stored.matchers) {
                Ok(compiled) => {
                    by_id.insert(stored.id.clone(), Silence { stored, compiled });
                }
                Err(e) => tracing::warn!(id = %stored.id, error = %e, "skipping a stored silence"),
            }
        }
        Ok(Silences {
            tree,
            clock,
            by_id: RwLock::new(by_id),
        })
    }

    fn persist(&self, s: &StoredSilence) {
        if let Err(e) = self.tree.put(s.id.as_bytes(), s) {
            tracing::error!(id = %s.id, error = %e, "persisting a silence failed");
        }
    }

    /// Silences whose matchers, read as labels, match every filter matcher, sorted as Alertmanager sorts them: active (ending soonest first), pending
    /// (starting soonest first), expired (most recently ended first).
    pub fn list(&self, filter: &[LabelMatcher]) -> Vec<GettableSilence> {
        let now = self.clock.now_ms();
        let mut out: Vec<GettableSilence> = self
            .by_id
            .read()
            .values()
            .filter(|s| {
                // As Alertmanager: the filter applies to the silence's matchers read as
                // labels (name -> value or pattern).
                let as_labels: LabelSet = s
                    .stored
                    .matchers
                    .iter()
                    .map(|m| (m.name.clone(), m.value.clone()))
                    .collect();
                all_match(filter, &as_labels)
            })
            .map(|s| s.gettable(now))
            .collect();
        out.sort_by(|a, b| {
            a.status
                .state
                .cmp(&b.status.state)
                .then_with(|| match a.status.state {
                    SilenceState::Active => a.ends_at.cmp(&b.ends_at),
                    SilenceState::Pending => a.starts_at.cmp(&b.starts_at),
                    SilenceState::Expired => b.ends_at.cmp(&a.ends_at),
                })
        });
        out
    }

    pub fn get(&self, id: &str) -> Option<GettableSilence> {
        let now = self.clock.now_ms();
        self.by_id.read().get(id).map(|s| s.gettable(now))
    }

    /// Creates or updates a silence and returns its id (a new id when the update could
    /// not be made in place). Errors say what is wrong, as Alertmanager's API does.
    pub fn upsert(&self, p: PostableSilence) -> Result<String, String> {
        let result = self.upsert_inner(p);
        self.refresh_gauge();
        result
    }

    fn upsert_inner(&self, p: PostableSilence) -> Result<String, String> {
        let now = self.clock.now_ms();
        let compiled = compile(&p.matchers)?;
        if p.ends_at.0 <= p.starts_at.0 {
            return Err("failed to create silence: start time must be before end time".into());
        }
        if p.ends_at.0 < now {
            return Err("failed to create silence: end time can't be in the past".into());
        }
        let mut by_id = self.by_id.write();
        let mut stored = StoredSilence {
            id: String::new(),
            matchers: p.matchers,
            starts_at_ms: p.starts_at.0,
            ends_at_ms: p.ends_at.0,
            updated_at_ms: now,
            created_by: p.created_by,
            comment: p.comment,
        };
        if let Some(id) = p.id.filter(|id| !id.is_empty()) {
            let Some(prev) = by_id.get_mut(&id) else {
                return Err(format!("silence {id} not found"));
            };
            if can_update(prev, &compiled, &stored, now) {
                stored.id = id.clone();
                prev.stored = stored;
                prev.compiled = compiled;
                self.persist(&prev.stored);
                return Ok(id);
            }
            if prev.state(now) != SilenceState::Expired {
                expire_in_place(prev, now);
                self.persist(&prev.stored);
            }
        }
        stored.id = new_id();
        stored.starts_at_ms = stored.starts_at_ms.max(now);
        let id = stored.id.clone();
        self.persist(&stored);
        by_id.insert(id.clone(), Silence { stored, compiled });
        Ok(id)
    }

    /// Expires a silence now (`DELETE /api/v2/silence/{id}`).
    pub fn expire(&self, id: &str) -> Result<(), SilenceError> {
        let result = self.expire_inner(id);
        self.refresh_gauge();
        result
    }

    fn expire_inner(&self, id: &str) -> Result<(), SilenceError> {
        let now = self.clock.now_ms();
        let mut by_id = self.by_id.write();
        let s = by_id.get_mut(id).ok_or(SilenceError::NotFound)?;
        if s.state(now) == SilenceState::Expired {
            return Err(SilenceError::AlreadyExpired);
        }
        expire_in_place(s, now);
        self.persist(&s.stored);
        Ok(())
    }

    /// Ids of the active silences muting `labels` at `now_ms`, sorted.
    pub fn silenced_by(&self, labels: &LabelSet, now_ms: i64) -> Vec<String> {
        let mut ids: Vec<String> = self
            .by_id
            .read()
            .values()
            .filter(|s| s.state(now_ms) == SilenceState::Active && all_match(&s.compiled, labels))
            .map(|s| s.stored.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Drops silences that expired more than [`RETENTION`] ago; returns how many.
    pub fn gc(&self, now_ms: i64) -> usize {
        let cutoff = now_ms - RETENTION.as_millis() as i64;
        let mut by_id = self.by_id.write();
        let old: Vec<String> = by_id
            .values()
            .filter(|s| s.stored.ends_at_ms < cutoff)
            .map(|s| s.stored.id.clone())
            .collect();
        for id in &old {
            by_id.remove(id);
            if let Err(e) = self.tree.remove(id.as_bytes()) {
                tracing::error!(id = %id, error = %e, "removing an old silence failed");
            }
        }
        old.len()
    }

    /// Sets `lookout_silences{state}`.
    pub(crate) fn refresh_gauge(&self) {
        for (state, n) in self.counts(self.clock.now_ms()) {
            super::SILENCES
                .with_label_values(&[state.as_str()])
                .set(n as i64);
        }
    }

    /// (active, pending, expired) counts at `now_ms`.
    pub fn counts(&self, now_ms: i64) -> [(SilenceState, usize); 3] {
        let mut c = [0usize; 3];
        for s in self.by_id.read().values() {
            c[s.state(now_ms) as usize] += 1;
        }
        [
            (SilenceState::Active, c[0]),
            (SilenceState::Pending, c[1]),
            (SilenceState::Expired, c[2]),
        ]
    }
}

fn expire_in_place(s: &mut Silence, now: i64) {
    match s.state(now) {
        SilenceState::Active => s.stored.ends_at_ms = now,
        SilenceState::Pending => {
            s.stored.starts_at_ms = now;
            s.stored.ends_at_ms = now;
        }
        SilenceState::Expired => {}
    }
    s.stored.updated_at_ms = now;
}

/// Alertmanager's `canUpdate`: whether `next` may replace `prev` under the same id.
fn can_update(prev: &Silence, compiled: &[LabelMatcher], next: &StoredSilence, now: i64) -> bool {
    if prev.compiled != compiled {
        return false;
    }
    match prev.state(now) {
        SilenceState::Active => {
            next.starts_at_ms == prev.stored.starts_at_ms && next.ends_at_ms >= now
        }
        SilenceState::Pending => next.starts_at_ms >= now,
        SilenceState::Expired => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::label_set;

    fn m(name: &str, value: &str, is_regex: bool, is_equal: bool) -> Matcher {
        Matcher {
            name: name.into(),
            value: value.into(),
            is_regex,
            is_equal,
        }
    }

    fn post(id: Option<&str>, matchers: Vec<Matcher>, start: i64, end: i64) -> PostableSilence {
        PostableSilence {
            id: id.map(str::to_string),
            matchers,
            starts_at: Timestamp(start),
            ends_at: Timestamp(end),
            created_by: "me".into(),
            comment: "c".into(),
        }
    }

    #[test]
    fn validation_refuses_what_alertmanager_refuses() {
        let db = StateDb::temporary().unwrap();
        let s = Silences::open(&db, Clock::fixed(1_000_000)).unwrap();
        let now = 1_000_000;
        let err = |p| s.upsert(p).unwrap_err();
        assert!(err(post(None, vec![], now, now + 10)).contains("at least one matcher"));
        assert!(
            err(post(None, vec![m("a", "", false, true)], now, now + 10))
                .contains("must not match the empty string")
        );
        assert!(
            err(post(None, vec![m("a", ".*", true, true)], now, now + 10))
                .contains("must not match the empty string")
        );
        assert!(err(post(None, vec![m("a", "(", true, true)], now, now + 10)).contains("regular"));
        assert!(
            err(post(None, vec![m("1a", "x", false, true)], now, now + 10)).contains("label name")
        );
        assert!(err(post(
            None,
            vec![m("a", "b", false, true)],
            now + 10,
            now + 10
        ))
        .contains("before end"));
        assert!(err(post(
            None,
            vec![m("a", "b", false, true)],
            now - 100,
            now - 10
        ))
        .contains("past"));
        assert!(err(post(
            Some("nope"),
            vec![m("a", "b", false, true)],
            now,
            now + 10
        ))
        .contains("not found"));
        // A matcher that matches "" is fine next to one that does not.
        assert!(s
            .upsert(post(
                None,
                vec![m("a", "", false, true), m("b", "x", false, true)],
                now,
                now + 10
            ))
            .is_ok());
    }

    #[test]
    fn states_updates_expiry_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::fixed(1_000_000);
        let now = 1_000_000;
        let id;
        {
            let db = StateDb::open(dir.path()).unwrap();
            let s = Silences::open(&db, clock.clone()).unwrap();
            let ms = vec![m("team", "db", false, true)];
            id = s
                .upsert(post(None, ms.clone(), now - 50, now + 1000))
                .unwrap();
            let g = s.get(&id).unwrap();
            // A start in the past moves to now, as Alertmanager does for new silences.
            assert_eq!(g.starts_at, Timestamp(now));
            assert_eq!(g.status.state, SilenceState::Active);
            assert_eq!(
                s.silenced_by(&label_set(&[("team", "db")]), now),
                vec![id.clone()]
            );
            assert!(s
                .silenced_by(&label_set(&[("team", "web")]), now)
                .is_empty());
            // Same matchers, same start, later end: updated in place.
            assert_eq!(
                s.upsert(post(Some(&id), ms.clone(), now, now + 2000))
                    .unwrap(),
                id
            );
            // Changed matchers on an active silence: the old one expires, a new id.
            let id2 = s
                .upsert(post(
                    Some(&id),
                    vec![m("team", "web", false, true)],
                    now,
                    now + 2000,
                ))
                .unwrap();
            assert_ne!(id2, id);
            assert_eq!(s.get(&id).unwrap().status.state, SilenceState::Expired);
            // A pending one.
            let p = s.upsert(post(None, ms, now + 500, now + 900)).unwrap();
            assert_eq!(s.get(&p).unwrap().status.state, SilenceState::Pending);
            let listed: Vec<SilenceState> = s.list(&[]).iter().map(|g| g.status.state).collect();
            assert_eq!(
                listed,
                [
                    SilenceState::Active,
                    SilenceState::Pending,
                    SilenceState::Expired
                ]
            );
            assert_eq!(s.expire(&p), Ok(()));
            assert_eq!(s.expire(&p), Err(SilenceError::AlreadyExpired));
            assert_eq!(s.expire("zzz"), Err(SilenceError::NotFound));
            let filter = crate::dispatch::matchers::parse_matchers("team=web").unwrap();
            assert_eq!(s.list(&filter).len(), 1);
            let filter = crate::dispatch::matchers::parse_matchers("team=~\"d.*\"").unwrap();
            assert_eq!(s.list(&filter).len(), 2);
            db.flush().unwrap();
        }
        let db = StateDb::open(dir.path()).unwrap();
        let s = Silences::open(&db, clock).unwrap();
        assert_eq!(s.list(&[]).len(), 3);
        assert_eq!(s.get(&id).unwrap().status.state, SilenceState::Expired);
        assert_eq!(s.gc(now + RETENTION.as_millis() as i64 + 10_000), 3);
        assert!(s.list(&[]).is_empty());
    }
}
