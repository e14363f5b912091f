//! Search plumbing shared by the head and the segments: the validated filter, the candidate
//! set, and partial trace summaries that merge across sources.
//!
//! A search runs in two steps. Every source (head, frozen head, segment column block) adds
//! the traces with a span passing the span-level conditions to [`Candidates`], keyed by the
//! newest matching span's start. The newest `limit` candidates then get their whole-trace
//! summary by merging the [`Partial`]s of every source holding spans of the trace.

use std::collections::{BTreeSet, HashMap};

use crate::error::{Result, StoreError};
use crate::traces::model::{SpanKind, TraceId};
use crate::traces::{TraceQuery, TraceSummary};

/// Results returned when a query asks for `limit == 0` (Jaeger's default).
pub const DEFAULT_SEARCH_LIMIT: usize = 20;

/// A [`TraceQuery`] checked and normalised.
#[derive(Clone, Debug)]
pub struct Filter {
    pub start: u64,
    pub end: u64,
    pub service: Option<String>,
    pub operation: Option<String>,
    pub kind: Option<SpanKind>,
    pub min_duration: u64,
    pub max_duration: u64,
    pub tags: Vec<(String, String)>,
    pub error: Option<bool>,
    pub limit: usize,
}

impl Filter {
    pub fn new(q: &TraceQuery) -> Result<Filter> {
        let end = if q.end_unix_nano == 0 {
            u64::MAX
        } else {
            q.end_unix_nano
        };
        if q.start_unix_nano > end {
            return Err(StoreError::BadRequest(format!(
                "trace search start {} is after its end {}",
                q.start_unix_nano, end
            )));
        }
        let min_duration = q.min_duration_nanos.unwrap_or(0);
        let max_duration = q.max_duration_nanos.unwrap_or(u64::MAX);
        if min_duration > max_duration {
            return Err(StoreError::BadRequest(format!(
                "trace search min_duration {min_duration} ns is above max_duration {max_duration} ns"
            )));
        }
        Ok(Filter {
            start: q.start_unix_nano,
            end,
            service: q.service.clone().filter(|s| !s.is_empty()),
            operation: q.operation.clone().filter(|s| !s.is_empty()),
            kind: q.kind,
            min_duration,
            max_duration,
            tags: q.tags.clone(),
            error: q.error,
            limit: if q.limit == 0 {
                DEFAULT_SEARCH_LIMIT
            } else {
                q.limit
            },
        })
    }

    /// Whether a source whose spans start within `[min, max]` can hold a match.
    pub fn overlaps(&self, min_start: u64, max_start: u64) -> bool {
        min_start <= self.end && max_start >= self.start
    }

    /// The span-level conditions that need no strings and no decoding.
    #[inline]
    pub fn plain_match(&self, start: u64, duration: u64, kind: SpanKind) -> bool {
        start >= self.start
            && start <= self.end
            && duration >= self.min_duration
            && duration <= self.max_duration
            && self.kind.is_none_or(|k| k == kind)
    }
}

/// Traces with a matching span, each with its newest matching span's start.
#[derive(Default)]
pub struct Candidates {
    pub newest: HashMap<TraceId, u64>,
    /// Bumped on every change, so callers recompute [`Candidates::kth_newest`] only then.
    pub changes: usize,
}

impl Candidates {
    #[inline]
    pub fn add(&mut self, id: TraceId, start: u64) {
        match self.newest.entry(id) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(start);
                self.changes += 1;
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                if *o.get() < start {
                    o.insert(start);
                    self.changes += 1;
                }
            }
        }
    }

    /// The `k`-th newest start among the candidates, once there are `k` of them: a source
    /// whose spans all start before it cannot change the newest `k`.
    pub fn kth_newest(&self, k: usize) -> Option<u64> {
        if k == 0 || self.newest.len() < k {
            return None;
        }
        let mut starts: Vec<u64> = self.newest.values().copied().collect();
        let (_, kth, _) = starts.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
        Some(*kth)
    }

    /// Candidates newest first (ties by trace id).
    pub fn sorted(self) -> Vec<(TraceId, u64)> {
        let mut v: Vec<(TraceId, u64)> = self.newest.into_iter().collect();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

/// A named span in a partial summary: the root, or the earliest span.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Named {
    pub start: u64,
    pub service: String,
    pub operation: String,
}

/// Summary fields of a trace over the spans one source holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Partial {
    pub span_count: u64,
    pub error_count: u64,
    pub min_start: u64,
    pub max_end: u64,
    /// The earliest root span (no parent).
    pub root: Option<Named>,
    pub earliest: Option<Named>,
    pub services: BTreeSet<String>,
}

fn keep_min(slot: &mut Option<Named>, cand: Named) {
    match slot {
        Some(cur) if *cur <= cand => {}
        _ => *slot = Some(cand),
    }
}

impl Partial {
    pub fn add_span(
        &mut self,
        start: u64,
        end: u64,
        is_root: bool,
        is_error: bool,
        service: &str,
        operation: &str,
    ) {
        if self.span_count == 0 {
            self.min_start = start;
            self.max_end = end;
        } else {
            self.min_start = self.min_start.min(start);
            self.max_end = self.max_end.max(end);
        }
        self.span_count += 1;
        self.error_count += u64::from(is_error);
        if !self.services.contains(service) {
            self.services.insert(service.to_string());
        }
        let named = || Named {
            start,
            service: service.to_string(),
            operation: operation.to_string(),
        };
        if is_root {
            keep_min(&mut self.root, named());
        }
        if self
            .earliest
            .as_ref()
            .is_none_or(|e| (start, service, operation) < (e.start, &e.service, &e.operation))
        {
            self.earliest = Some(named());
        }
    }

    pub fn merge(&mut self, other: Partial) {
        if other.span_count == 0 {
            return;
        }
        if self.span_count == 0 {
            *self = other;
            return;
        }
        self.span_count += other.span_count;
        self.error_count += other.error_count;
        self.min_start = self.min_start.min(other.min_start);
        self.max_end = self.max_end.max(other.max_end);
        if let Some(r) = other.root {
            keep_min(&mut self.root, r);
        }
        if let Some(e) = other.earliest {
            keep_min(&mut self.earliest, e);
        }
        self.services.extend(other.services);
    }

    pub fn into_summary(self, trace_id: TraceId) -> TraceSummary {
        let named = self.root.or(self.earliest).unwrap_or(Named {
            start: self.min_start,
            service: String::new(),
            operation: String::new(),
        });
        TraceSummary {
            trace_id,
            root_service: named.service,
            root_operation: named.operation,
            start_unix_nano: self.min_start,
            duration_nanos: self.max_end.saturating_sub(self.min_start),
            span_count: self.span_count,
            error_count: self.error_count,
            services: self.services.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_defaults_and_errors() {
        let f = Filter::new(&TraceQuery::default()).unwrap();
        assert_eq!(
            (f.start, f.end, f.limit),
            (0, u64::MAX, DEFAULT_SEARCH_LIMIT)
        );
        assert!(f.plain_match(5, 1, SpanKind::Server));
        let bad = TraceQuery {
            start_unix_nano: 10,
            end_unix_nano: 5,
            ..Default::default()
        };
        assert!(matches!(Filter::new(&bad), Err(StoreError::BadRequest(_))));
        let bad = TraceQuery {
            min_duration_nanos: Some(10),
            max_duration_nanos: Some(5),
            ..Default::default()
        };
        assert!(matches!(Filter::new(&bad), Err(StoreError::BadRequest(_))));
        let q = TraceQuery {
            start_unix_nano: 100,
            end_unix_nano: 200,
            kind: Some(SpanKind::Client),
            min_duration_nanos: Some(10),
            max_duration_nanos: Some(20),
            service: Some(String::new()),
            ..Default::default()
        };
        let f = Filter::new(&q).unwrap();
        assert_eq!(f.service, None);
        assert!(f.plain_match(100, 10, SpanKind::Client));
        assert!(f.plain_match(200, 20, SpanKind::Client));
        assert!(!f.plain_match(99, 10, SpanKind::Client));
        assert!(!f.plain_match(201, 10, SpanKind::Client));
        assert!(!f.plain_match(150, 9, SpanKind::Client));
        assert!(!f.plain_match(150, 21, SpanKind::Client));
        assert!(!f.plain_match(150, 15, SpanKind::Server));
        assert!(f.overlaps(50, 100) && f.overlaps(200, 300) && !f.overlaps(201, 300));
    }

    #[test]
    fn candidates_keep_the_newest_match_and_find_the_kth() {
        let mut c = Candidates::default();
        let id = |b| TraceId([b; 16]);
        c.add(id(1), 10);
        c.add(id(1), 30);
        c.add(id(1), 20);
        c.add(id(2), 25);
        c.add(id(3), 5);
        assert_eq!(c.kth_newest(1), Some(30));
        assert_eq!(c.kth_newest(2), Some(25));
        assert_eq!(c.kth_newest(3), Some(5));
        assert_eq!(c.kth_newest(4), None);
        let sorted = c.sorted();
        assert_eq!(sorted, vec![(id(1), 30), (id(2), 25), (id(3), 5)]);
    }

    #[test]
    fn partials_merge_into_the_whole_trace() {
        let mut a = Partial::default();
        a.add_span(200, 260, false, true, "checkout", "charge");
        a.add_span(150, 300, false, false, "checkout", "POST /checkout");
        let mut b = Partial::default();
        b.add_span(100, 400, true, false, "frontend", "GET /");
        b.add_span(120, 130, false, true, "frontend", "render");
        let mut whole = Partial::default();
        whole.merge(a.clone());
        whole.merge(b);
        let s = whole.into_summary(TraceId([1; 16]));
        assert_eq!(s.root_service, "frontend");
        assert_eq!(s.root_operation, "GET /");
        assert_eq!((s.start_unix_nano, s.duration_nanos), (100, 300));
        assert_eq!((s.span_count, s.error_count), (4, 2));
        assert_eq!(s.services, vec!["checkout", "frontend"]);
        // no root yet: the earliest span names the trace
        let s = a.into_summary(TraceId([1; 16]));
        assert_eq!(
            (s.root_service.as_str(), s.root_operation.as_str()),
            ("checkout", "POST /checkout")
        );
    }
}
