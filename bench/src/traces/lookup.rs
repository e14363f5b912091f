//! Trace-by-id lookups against the loaded server: `GET /api/v1/traces/{id}` (Lookout's API)
//! and `GET /api/traces/{id}` (Jaeger's), one request at a time over a kept-alive connection,
//! latency measured on the client from sending the request to the last byte of the answer.
//!
//! The ids are drawn (seeded) from what was sent, by where their spans should be when the
//! lookups run: **head** (every span sent after the last head flush), **segment** (every span
//! flushed to segment files), **mixed** (some of each), and a few **unknown** ids never sent.
//! Where a trace is comes from the server's `lookout_traces_head_spans` gauge: the newest
//! requests holding that many spans are in the head; traces within `MARGIN_REQUESTS` of that
//! boundary are left out, since concurrent connections reorder requests a little.
//!
//! Every answer is checked: a known id must answer 200 with exactly the spans that were sent
//! (the span count and the spans listed), an unknown id 404.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::generate::{Generator, Rng, TraceRecord};
use crate::error::{BenchError, Result};

/// Requests on either side of the head boundary whose traces are not classified.
const MARGIN_REQUESTS: u32 = 64;
/// Untimed lookups before the timed ones (connection set-up, first page-ins).
const WARMUP: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    Head,
    Segment,
    Mixed,
    Unknown,
}

impl Place {
    pub fn name(self) -> &'static str {
        match self {
            Place::Head => "head",
            Place::Segment => "segment",
            Place::Mixed => "mixed",
            Place::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Target {
    pub id: String,
    /// Spans sent for it; 0 for an unknown id.
    pub spans: u16,
    pub place: Place,
}

/// The first request index whose spans (with all later ones) make up the head, given the
/// server's head span count.
pub fn head_boundary(requests: &[u32], head_spans: u64) -> u32 {
    let mut sum = 0u64;
    for (i, n) in requests.iter().enumerate().rev() {
        if sum >= head_spans {
            return i as u32 + 1;
        }
        sum += u64::from(*n);
    }
    0
}

/// Where a trace's spans are, given the head boundary.
pub fn place_of(rec: &TraceRecord, boundary: u32) -> Option<Place> {
    let lo = boundary.saturating_sub(MARGIN_REQUESTS);
    let hi = boundary.saturating_add(MARGIN_REQUESTS);
    if rec.last_request < lo {
        Some(Place::Segment)
    } else if rec.first_request >= hi {
        Some(Place::Head)
    } else if rec.first_request < lo && rec.last_request >= hi {
        Some(Place::Mixed)
    } else {
        None
    }
}

/// `n` lookup targets: about 30 % head, 5 % mixed, 1 % unknown (at least 5), the rest segment;
/// a kind short of traces leaves its share to the others. Shuffled.
pub fn pick_targets(records: &[TraceRecord], boundary: u32, n: usize, seed: u64) -> Vec<Target> {
    let mut by_place: [Vec<&TraceRecord>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for r in records {
        match place_of(r, boundary) {
            Some(Place::Head) => by_place[0].push(r),
            Some(Place::Segment) => by_place[1].push(r),
            Some(Place::Mixed) => by_place[2].push(r),
            _ => {}
        }
    }
    let mut rng = Rng::new(seed);
    let unknown = (n / 100).max(5).min(n);
    let known = n - unknown;
    let (h, s, m) = (by_place[0].len(), by_place[1].len(), by_place[2].len());
    let mut head = (n * 30 / 100).min(h);
    let mut mixed = (n * 5 / 100).min(m);
    let segment = known.saturating_sub(head + mixed).min(s);
    head = known.saturating_sub(segment + mixed).min(h);
    mixed = known.saturating_sub(segment + head).min(m);
    let mut out = Vec::with_capacity(n);
    for (pool, want, place) in [
        (&by_place[0], head, Place::Head),
        (&by_place[1], segment, Place::Segment),
        (&by_place[2], mixed, Place::Mixed),
    ] {
        // sampling with replacement would time the same (cached) trace twice: draw distinct
        let mut taken = std::collections::HashSet::new();
        while taken.len() < want {
            taken.insert(rng.below(pool.len() as u64) as usize);
        }
        let mut taken: Vec<usize> = taken.into_iter().collect();
        taken.sort_unstable();
        for i in taken {
            out.push(Target {
                id: Generator::hex(&pool[i].id),
                spans: pool[i].spans,
                place,
            });
        }
    }
    for _ in 0..unknown {
        let mut id = [0u8; 16];
        // a different stream than the generator's: these ids were never sent
        id[..8].copy_from_slice(&(rng.next_u64() ^ 0x5555_5555_5555_5555).to_be_bytes());
        id[8..].copy_from_slice(&(rng.next_u64() | 1).to_be_bytes());
        out.push(Target {
            id: Generator::hex(&id),
            spans: 0,
            place: Place::Unknown,
        });
    }
    // shuffle, so head and segment lookups interleave
    for i in (1..out.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        out.swap(i, j);
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `GET /api/v1/traces/{id}`
    Lookout,
    /// `GET /api/traces/{id}`
    Jaeger,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Api::Lookout => "GET /api/v1/traces/{id}",
            Api::Jaeger => "GET /api/traces/{id} (Jaeger)",
        }
    }

    fn url(self, base: &str, id: &str) -> String {
        match self {
            Api::Lookout => format!("{base}/api/v1/traces/{id}"),
            Api::Jaeger => format!("{base}/api/traces/{id}"),
        }
    }

    /// Checks an answer against what was sent; `Err` says what is wrong.
    fn check(self, status: u16, body: &[u8], t: &Target) -> std::result::Result<(), String> {
        if t.place == Place::Unknown {
            return match status {
                404 => Ok(()),
                s => Err(format!("unknown id {}: HTTP {s}, expected 404", t.id)),
            };
        }
        if status != 200 {
            return Err(format!(
                "trace {} ({}): HTTP {status}: {}",
                t.id,
                t.place.name(),
                String::from_utf8_lossy(body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| format!("trace {}: the answer is not JSON: {e}", t.id))?;
        let (count, listed) = match self {
            Api::Lookout => (
                v["data"]["spanCount"].as_u64(),
                v["data"]["spans"].as_array().map(Vec::len),
            ),
            Api::Jaeger => {
                let n = v["data"][0]["spans"].as_array().map(Vec::len);
                (n.map(|n| n as u64), n)
            }
        };
        let want = u64::from(t.spans);
        if count != Some(want) || listed.map(|n| n as u64) != Some(want) {
            return Err(format!(
                "trace {} ({}): {count:?} spans counted, {listed:?} listed, {want} sent",
                t.id,
                t.place.name()
            ));
        }
        Ok(())
    }
}

pub use crate::report::Latency;

#[derive(Clone, Debug, Serialize)]
pub struct LookupSummary {
    pub api: &'static str,
    /// Every timed lookup, known and unknown ids.
    pub all: Latency,
    pub head: Latency,
    pub segment: Latency,
    pub mixed: Latency,
    pub unknown: Latency,
    pub spans_returned: u64,
    pub failures: u64,
    pub first_failure: Option<String>,
}

/// Times one lookup per target, one after another.
pub async fn run(api: Api, base: &str, targets: &[Target]) -> Result<LookupSummary> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| BenchError::Http {
            url: base.to_string(),
            reason: format!("building the lookup client: {e}"),
        })?;
    for t in targets.iter().take(WARMUP) {
        let _ = get(&client, &api.url(base, &t.id)).await?;
    }
    let mut lat: Vec<(Place, f64)> = Vec::with_capacity(targets.len());
    let mut failures = 0u64;
    let mut first_failure = None;
    let mut spans_returned = 0u64;
    for t in targets {
        let url = api.url(base, &t.id);
        let started = Instant::now();
        let (status, body) = get(&client, &url).await?;
        lat.push((t.place, started.elapsed().as_secs_f64() * 1000.0));
        match api.check(status, &body, t) {
            Ok(()) => spans_returned += u64::from(t.spans),
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "trace lookup answer does not match what was sent");
                first_failure.get_or_insert(e);
            }
        }
    }
    let of = |p: Option<Place>| {
        let v: Vec<f64> = lat
            .iter()
            .filter(|(q, _)| p.is_none_or(|p| p == *q))
            .map(|(_, ms)| *ms)
            .collect();
        Latency::of(&v)
    };
    Ok(LookupSummary {
        api: api.name(),
        all: of(None),
        head: of(Some(Place::Head)),
        segment: of(Some(Place::Segment)),
        mixed: of(Some(Place::Mixed)),
        unknown: of(Some(Place::Unknown)),
        spans_returned,
        failures,
        first_failure,
    })
}

async fn get(client: &reqwest::Client, url: &str) -> Result<(u16, bytes::Bytes)> {
    let err = |reason: String| BenchError::Http {
        url: url.to_string(),
        reason,
    };
    let r = client
        .get(url)
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    let status = r.status().as_u16();
    let body = r.bytes().await.map_err(|e| err(e.to_string()))?;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(first: u32, last: u32, n: u8) -> TraceRecord {
        TraceRecord {
            id: [n; 16],
            spans: 5,
            first_request: first,
            last_request: last,
        }
    }

    #[test]
    fn boundary_counts_spans_from_the_end() {
        let spans = [512, 512, 512, 100];
        assert_eq!(head_boundary(&spans, 0), 4);
        assert_eq!(head_boundary(&spans, 100), 3);
        assert_eq!(head_boundary(&spans, 612), 2);
        assert_eq!(head_boundary(&spans, 10_000), 0);
    }

    #[test]
    fn places_leave_the_margin_out() {
        let b = 1_000;
        assert_eq!(place_of(&rec(10, 900, 1), b), Some(Place::Segment));
        assert_eq!(place_of(&rec(1_100, 1_200, 1), b), Some(Place::Head));
        assert_eq!(place_of(&rec(900, 1_100, 1), b), Some(Place::Mixed));
        assert_eq!(place_of(&rec(990, 1_010, 1), b), None);
        // no head at all: everything before the boundary is in segments
        assert_eq!(place_of(&rec(10, 20, 1), 5_000), Some(Place::Segment));
    }

    #[test]
    fn targets_mix_places_and_unknown_ids() {
        let mut records = Vec::new();
        for i in 0..2_000u32 {
            let mut r = rec(i, i + 1, 0);
            r.id[..4].copy_from_slice(&i.to_be_bytes());
            r.id[15] = 1;
            records.push(r);
        }
        let t = pick_targets(&records, 1_500, 200, 9);
        let count = |p| t.iter().filter(|x| x.place == p).count();
        assert_eq!(count(Place::Head), 60);
        assert_eq!(count(Place::Unknown), 5);
        assert_eq!(count(Place::Segment), 200 - 60 - 5);
        // no segments yet: the head takes their share
        let t = pick_targets(&records, 0, 200, 9);
        assert_eq!(t.iter().filter(|x| x.place == Place::Head).count(), 195);
        let ids: std::collections::HashSet<_> = t.iter().map(|x| x.id.clone()).collect();
        assert_eq!(ids.len(), t.len(), "ids are distinct");
        assert!(t
            .iter()
            .filter(|x| x.place == Place::Unknown)
            .all(|x| x.spans == 0 && x.id.len() == 32));
    }

    #[test]
    fn answers_are_checked_against_what_was_sent() {
        let t = Target {
            id: "ab".repeat(16),
            spans: 2,
            place: Place::Segment,
        };
        let good = br#"{"status":"success","data":{"spanCount":2,"spans":[{},{}]}}"#;
        assert!(Api::Lookout.check(200, good, &t).is_ok());
        let short = br#"{"status":"success","data":{"spanCount":1,"spans":[{}]}}"#;
        assert!(Api::Lookout
            .check(200, short, &t)
            .unwrap_err()
            .contains("2 sent"));
        let jaeger = br#"{"data":[{"traceID":"ab","spans":[{},{}]}]}"#;
        assert!(Api::Jaeger.check(200, jaeger, &t).is_ok());
        assert!(Api::Jaeger.check(404, b"{}", &t).is_err());
        let unknown = Target {
            place: Place::Unknown,
            spans: 0,
            ..t
        };
        assert!(Api::Lookout.check(404, b"{}", &unknown).is_ok());
        assert!(Api::Lookout.check(200, good, &unknown).is_err());
    }
}
