//! Search latency and answer checks against the loaded server, over the whole time range of
//! the corpus, through `GET /api/v1/logs/query?limit=100` one request at a time on a
//! kept-alive connection; latency on the client from sending the request to the last byte.
//!
//! Four kinds of query, built from the corpus tally so the right answer is known:
//! * **common term**: a word of the message prose or the formats (`timeout`, `get`, `info`):
//!   hundreds to millions of matching lines;
//! * **rare term**: a coupon code word (a few to a few hundred lines) or a 10-digit order id
//!   (the 2 to 7 lines of one checkout);
//! * **phrase**: a static phrase (`"card declined by issuer"`, `"java.lang.IllegalStateException"`,
//!   `"余额不足"`) or a rare one (`"code <word> rejected"`);
//! * **trace id**: `trace_id:<hex>` of a trace known to exist (2 to 12 lines).
//!
//! Every answer is checked: HTTP 200, `min(limit, lines that match)` records, newest first,
//! inside the range, each body holding the term or phrase (tokenised as the index does) or
//! each record carrying the trace id. For a sample of distinct queries the total is checked
//! too: the histogram's count over the range equals the lines the corpus holds.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::corpus::{hex, tokens, Rng, Tally, COMMON_WORDS, STATIC_PHRASES};
use crate::error::{BenchError, Result};

/// Untimed queries before the timed ones (connection set-up, first page-ins).
const WARMUP: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    CommonTerm,
    RareTerm,
    Phrase,
    TraceId,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::CommonTerm,
        Kind::RareTerm,
        Kind::Phrase,
        Kind::TraceId,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::CommonTerm => "common term",
            Kind::RareTerm => "rare term",
            Kind::Phrase => "phrase",
            Kind::TraceId => "trace_id",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expect {
    /// Each body holds this token sequence (one token: a term).
    Tokens(Vec<String>),
    /// Each record carries this trace id (lower-case hex).
    Trace(String),
}

#[derive(Clone, Debug)]
pub struct Case {
    pub kind: Kind,
    pub query: String,
    pub expect: Expect,
    /// Lines of the corpus that match.
    pub total: u64,
}

fn token_seq(text: &str) -> Vec<String> {
    let mut v = Vec::new();
    tokens(text, |t| v.push(t.to_string()));
    v
}

/// `per_kind` queries of each kind (fewer when the corpus has fewer distinct candidates for
/// the rare kinds), shuffled together.
pub fn cases(tally: &Tally, per_kind: usize, seed: u64) -> Vec<Case> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let shuffle = |v: &mut Vec<usize>, rng: &mut Rng| {
        for i in (1..v.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    };
    // common terms: every word that occurs, in turn
    let mut common: Vec<usize> = (0..COMMON_WORDS.len())
        .filter(|&i| tally.common_word_lines(i) > 0)
        .collect();
    shuffle(&mut common, &mut rng);
    for k in 0..per_kind.min(common.len() * 1000) {
        let i = common[k % common.len()];
        out.push(Case {
            kind: Kind::CommonTerm,
            query: COMMON_WORDS[i].to_string(),
            expect: Expect::Tokens(vec![COMMON_WORDS[i].to_string()]),
            total: tally.common_word_lines(i),
        });
    }
    // rare terms: half coupon words, half order ids, distinct
    let mut rare: Vec<usize> = (0..tally.rare_words())
        .filter(|&i| tally.rare_word(i).1 > 0)
        .collect();
    shuffle(&mut rare, &mut rng);
    let half = per_kind / 2;
    let rare_words = half.min(rare.len());
    for &i in rare.iter().take(rare_words) {
        let (w, n) = tally.rare_word(i);
        out.push(Case {
            kind: Kind::RareTerm,
            query: w.to_string(),
            expect: Expect::Tokens(vec![w.to_string()]),
            total: n,
        });
    }
    for o in tally.orders.items.iter().take(per_kind - rare_words) {
        out.push(Case {
            kind: Kind::RareTerm,
            query: o.id.to_string(),
            expect: Expect::Tokens(vec![o.id.to_string()]),
            total: u64::from(o.lines),
        });
    }
    // phrases: half static (in turn), half `code <rare word> rejected` (distinct)
    let mut statics: Vec<usize> = (0..STATIC_PHRASES.len())
        .filter(|&i| tally.phrase_lines[i] > 0)
        .collect();
    shuffle(&mut statics, &mut rng);
    let rare_phrases = (per_kind - half).min(rare.len().saturating_sub(rare_words));
    for k in 0..(per_kind - rare_phrases).min(statics.len() * 1000) {
        let i = statics[k % statics.len()];
        let p = STATIC_PHRASES[i];
        out.push(Case {
            kind: Kind::Phrase,
            query: format!("\"{p}\""),
            expect: Expect::Tokens(token_seq(p)),
            total: tally.phrase_lines[i],
        });
    }
    for &i in rare.iter().skip(rare_words).take(rare_phrases) {
        let (w, n) = tally.rare_word(i);
        let p = format!("code {w} rejected");
        out.push(Case {
            kind: Kind::Phrase,
            expect: Expect::Tokens(token_seq(&p)),
            query: format!("\"{p}\""),
            total: n,
        });
    }
    // trace ids of finished traces
    for t in tally.traces.items.iter().take(per_kind) {
        let id = hex(&t.id);
        out.push(Case {
            kind: Kind::TraceId,
            query: format!("trace_id:{id}"),
            expect: Expect::Trace(id),
            total: u64::from(t.lines),
        });
    }
    for i in (1..out.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        out.swap(i, j);
    }
    out
}

/// Percent-encodes a query parameter value (everything but RFC 3986 unreserved characters).
pub fn encode(value: &str) -> String {
    let mut s = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            s.push(b as char);
        } else {
            let _ = write!(s, "%{b:02X}");
        }
    }
    s
}

/// The time range of every query: whole Unix seconds around the corpus.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Range {
    pub start_s: u64,
    pub end_s: u64,
}

impl Range {
    pub fn around(first_ns: u64, last_ns: u64) -> Self {
        Range {
            start_s: first_ns / 1_000_000_000 - 1,
            end_s: last_ns / 1_000_000_000 + 2,
        }
    }

    fn contains(&self, ns: u64) -> bool {
        ns >= self.start_s * 1_000_000_000 && ns <= self.end_s * 1_000_000_000
    }
}

pub fn query_url(base: &str, q: &str, r: Range, limit: usize) -> String {
    format!(
        "{base}/api/v1/logs/query?query={}&start={}&end={}&limit={limit}",
        encode(q),
        r.start_s,
        r.end_s
    )
}

pub fn histogram_url(base: &str, q: &str, r: Range) -> String {
    // one bucket over the whole range
    format!(
        "{base}/api/v1/logs/histogram?query={}&start={}&end={}&step={}",
        encode(q),
        r.start_s,
        r.end_s,
        r.end_s - r.start_s
    )
}

fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(300).collect()
}

/// Checks one answer; `Ok(records returned)` or what is wrong.
pub fn check(
    case: &Case,
    status: u16,
    body: &[u8],
    r: Range,
    limit: usize,
) -> std::result::Result<usize, String> {
    let q = &case.query;
    if status != 200 {
        return Err(format!("{q}: HTTP {status}: {}", excerpt(body)));
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("{q}: the answer is not JSON: {e}"))?;
    if v["status"] != "success" {
        return Err(format!("{q}: status {} in {}", v["status"], excerpt(body)));
    }
    let records = v["data"]["records"]
        .as_array()
        .ok_or_else(|| format!("{q}: no data.records array in {}", excerpt(body)))?;
    let want = case.total.min(limit as u64) as usize;
    if records.len() != want {
        return Err(format!(
            "{q}: {} records returned, expected {want} ({} lines match, limit {limit})",
            records.len(),
            case.total
        ));
    }
    let mut prev = u64::MAX;
    for (i, rec) in records.iter().enumerate() {
        let t: u64 = rec["time_unix_nano"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{q}: record {i} has no time_unix_nano string"))?;
        if !r.contains(t) {
            return Err(format!("{q}: record {i} at {t} ns is outside the range"));
        }
        if t > prev {
            return Err(format!("{q}: record {i} is newer than the one before it"));
        }
        prev = t;
        match &case.expect {
            Expect::Tokens(seq) => {
                let body = rec["body"]
                    .as_str()
                    .ok_or_else(|| format!("{q}: record {i} has no body string"))?;
                let toks = token_seq(body);
                if !toks.windows(seq.len()).any(|w| w == seq.as_slice()) {
                    return Err(format!("{q}: record {i} does not match: {body}"));
                }
            }
            Expect::Trace(id) => {
                if rec["trace_id"].as_str() != Some(id.as_str()) {
                    return Err(format!("{q}: record {i} has trace_id {}", rec["trace_id"]));
                }
            }
        }
    }
    Ok(records.len())
}

/// Sum of a histogram answer's bucket counts.
pub fn histogram_total(body: &[u8]) -> std::result::Result<u64, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("histogram answer is not JSON: {e}"))?;
    let buckets = v["data"]["buckets"]
        .as_array()
        .ok_or_else(|| format!("no data.buckets in the histogram answer {}", excerpt(body)))?;
    buckets
        .iter()
        .map(|b| {
            b["count"]
                .as_u64()
                .ok_or_else(|| format!("bucket without a count: {b}"))
        })
        .sum()
}

pub async fn get(client: &reqwest::Client, url: &str) -> Result<(u16, bytes::Bytes)> {
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

/// Records matching `query` over the range, as the histogram counts them.
pub async fn count(client: &reqwest::Client, base: &str, query: &str, r: Range) -> Result<u64> {
    let url = histogram_url(base, query, r);
    let (status, body) = get(client, &url).await?;
    if status != 200 {
        return Err(BenchError::Http {
            url,
            reason: format!("HTTP {status}: {}", excerpt(&body)),
        });
    }
    histogram_total(&body).map_err(|reason| BenchError::Http { url, reason })
}

pub use crate::report::Latency;

#[derive(Clone, Debug, Serialize)]
pub struct KindSummary {
    pub kind: Kind,
    pub name: &'static str,
    pub latency: Latency,
    /// Distinct queries, and lines matching (min / median / max).
    pub distinct_queries: usize,
    pub matching_lines_min: u64,
    pub matching_lines_median: u64,
    pub matching_lines_max: u64,
    pub records_returned: u64,
    pub failures: u64,
    pub first_failure: Option<String>,
    /// Distinct queries whose histogram total was compared with the corpus, and mismatches.
    pub totals_checked: usize,
    pub total_mismatches: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SearchSummary {
    pub limit: usize,
    pub range: Range,
    pub kinds: Vec<KindSummary>,
    /// Common and rare terms together (the issue's "term search").
    pub terms: Latency,
    pub all: Latency,
    pub examples: Vec<(String, String)>,
}

/// Times every case, checks every answer, then checks up to `total_checks` distinct queries
/// of each kind against the histogram.
pub async fn run(
    base: &str,
    cases: &[Case],
    r: Range,
    limit: usize,
    total_checks: usize,
) -> Result<SearchSummary> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| BenchError::Http {
            url: base.to_string(),
            reason: format!("building the search client: {e}"),
        })?;
    for c in cases.iter().take(WARMUP) {
        let _ = get(&client, &query_url(base, &c.query, r, limit)).await?;
    }
    let mut timed: Vec<(Kind, f64)> = Vec::with_capacity(cases.len());
    let mut per_kind: Vec<(u64, u64, Option<String>)> = vec![(0, 0, None); Kind::ALL.len()];
    for c in cases {
        let url = query_url(base, &c.query, r, limit);
        let started = Instant::now();
        let (status, body) = get(&client, &url).await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        timed.push((c.kind, ms));
        let k = &mut per_kind[c.kind as usize];
        match check(c, status, &body, r, limit) {
            Ok(n) => k.0 += n as u64,
            Err(e) => {
                k.1 += 1;
                tracing::warn!(error = %e, "search answer does not match the corpus");
                k.2.get_or_insert(e);
            }
        }
    }
    let mut kinds = Vec::new();
    for kind in Kind::ALL {
        let mine: Vec<&Case> = cases.iter().filter(|c| c.kind == kind).collect();
        let ms: Vec<f64> = timed
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, m)| *m)
            .collect();
        let mut distinct: Vec<&Case> = Vec::new();
        for c in &mine {
            if !distinct.iter().any(|d| d.query == c.query) {
                distinct.push(c);
            }
        }
        let mut totals: Vec<u64> = distinct.iter().map(|c| c.total).collect();
        totals.sort_unstable();
        let mut mismatches = 0;
        let mut first = per_kind[kind as usize].2.clone();
        let checked = distinct.len().min(total_checks);
        for c in distinct.iter().take(checked) {
            let n = count(&client, base, &c.query, r).await?;
            if n != c.total {
                mismatches += 1;
                let e = format!(
                    "{}: the histogram counts {n}, the corpus has {} lines",
                    c.query, c.total
                );
                tracing::warn!(error = %e, "histogram total does not match the corpus");
                first.get_or_insert(e);
            }
        }
        let (returned, failures, _) = per_kind[kind as usize].clone();
        kinds.push(KindSummary {
            kind,
            name: kind.name(),
            latency: Latency::of(&ms),
            distinct_queries: distinct.len(),
            matching_lines_min: totals.first().copied().unwrap_or(0),
            matching_lines_median: totals.get(totals.len() / 2).copied().unwrap_or(0),
            matching_lines_max: totals.last().copied().unwrap_or(0),
            records_returned: returned,
            failures,
            first_failure: first,
            totals_checked: checked,
            total_mismatches: mismatches,
        });
    }
    let terms: Vec<f64> = timed
        .iter()
        .filter(|(k, _)| matches!(k, Kind::CommonTerm | Kind::RareTerm))
        .map(|(_, m)| *m)
        .collect();
    let all: Vec<f64> = timed.iter().map(|(_, m)| *m).collect();
    let mut examples = Vec::new();
    for kind in Kind::ALL {
        for c in cases.iter().filter(|c| c.kind == kind).take(3) {
            examples.push((kind.name().to_string(), c.query.clone()));
        }
    }
    Ok(SearchSummary {
        limit,
        range: r,
        kinds,
        terms: Latency::of(&terms),
        all: Latency::of(&all),
        examples,
    })
}

#[cfg(test)]
mod tests {
    use super::super::corpus::Generator;
    use super::*;

    fn tally() -> Tally {
        let mut g = Generator::new(9, 1_763_700_000_000_000_000, 1_000_000, true);
        let _ = g.chunk(40_000_000);
        let _ = g.finish();
        g.tally.take().unwrap()
    }

    #[test]
    fn cases_cover_every_kind() {
        let t = tally();
        let cs = cases(&t, 200, 1);
        for k in Kind::ALL {
            let n = cs.iter().filter(|c| c.kind == k).count();
            assert_eq!(n, 200, "{k:?}");
        }
        assert!(cs.iter().all(|c| c.total > 0));
        let rare: std::collections::HashSet<_> = cs
            .iter()
            .filter(|c| c.kind == Kind::RareTerm)
            .map(|c| c.query.clone())
            .collect();
        assert_eq!(rare.len(), 200, "rare terms are distinct");
        assert!(cs.iter().any(|c| c.query == "\"余额不足\""));
        assert!(cs
            .iter()
            .any(|c| c.kind == Kind::Phrase && c.query.starts_with("\"code ")));
        assert!(cs.iter().any(|c| c.kind == Kind::RareTerm
            && c.query.len() == 10
            && c.query.bytes().all(|b| b.is_ascii_digit())));
        // seeded
        let again = cases(&t, 200, 1);
        assert_eq!(
            cs.iter().map(|c| &c.query).collect::<Vec<_>>(),
            again.iter().map(|c| &c.query).collect::<Vec<_>>()
        );
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(encode("trace_id:ab"), "trace_id%3Aab");
        assert_eq!(encode("\"a b\""), "%22a%20b%22");
        assert_eq!(encode("余"), "%E4%BD%99");
    }

    fn case(expect: Expect, total: u64) -> Case {
        Case {
            kind: Kind::CommonTerm,
            query: "q".into(),
            expect,
            total,
        }
    }

    #[test]
    fn answers_are_checked() {
        let r = Range {
            start_s: 100,
            end_s: 200,
        };
        let rec = |t: u64, body: &str, trace: Option<&str>| serde_json::json!({"time_unix_nano": t.to_string(), "body": body, "trace_id": trace});
        let answer = |recs: Vec<serde_json::Value>| {
            serde_json::to_vec(&serde_json::json!({"status":"success","data":{"records":recs}}))
                .unwrap()
        };
        let term = case(Expect::Tokens(vec!["timeout".into()]), 2);
        let good = answer(vec![
            rec(150_000_000_000, "upstream timeout", None),
            rec(120_000_000_000, "a Timeout, again", None),
        ]);
        assert_eq!(check(&term, 200, &good, r, 100), Ok(2));
        // too few, wrong order, outside the range, not matching, HTTP error
        let one = answer(vec![rec(150_000_000_000, "upstream timeout", None)]);
        assert!(check(&term, 200, &one, r, 100)
            .unwrap_err()
            .contains("expected 2"));
        let order = answer(vec![
            rec(120_000_000_000, "timeout", None),
            rec(150_000_000_000, "timeout", None),
        ]);
        assert!(check(&term, 200, &order, r, 100)
            .unwrap_err()
            .contains("newer"));
        let outside = answer(vec![
            rec(250_000_000_000, "timeout", None),
            rec(150_000_000_000, "timeout", None),
        ]);
        assert!(check(&term, 200, &outside, r, 100)
            .unwrap_err()
            .contains("outside"));
        let wrong = answer(vec![
            rec(150_000_000_000, "timeouts", None),
            rec(120_000_000_000, "timeout", None),
        ]);
        assert!(check(&term, 200, &wrong, r, 100)
            .unwrap_err()
            .contains("does not match"));
        assert!(check(&term, 400, b"{}", r, 100)
            .unwrap_err()
            .contains("HTTP 400"));
        // the limit caps what is expected
        assert_eq!(check(&term, 200, &one, r, 1), Ok(1));
        // phrases need adjacency
        let phrase = case(Expect::Tokens(vec!["card".into(), "declined".into()]), 1);
        let adj = answer(vec![rec(
            150_000_000_000,
            "msg=\"card declined by issuer\"",
            None,
        )]);
        assert_eq!(check(&phrase, 200, &adj, r, 100), Ok(1));
        let apart = answer(vec![rec(150_000_000_000, "card was declined", None)]);
        assert!(check(&phrase, 200, &apart, r, 100).is_err());
        // trace ids
        let tr = case(Expect::Trace("ab".repeat(16)), 1);
        let hit = answer(vec![rec(150_000_000_000, "x", Some(&"ab".repeat(16)))]);
        assert_eq!(check(&tr, 200, &hit, r, 100), Ok(1));
        let miss = answer(vec![rec(150_000_000_000, "x", Some(&"cd".repeat(16)))]);
        assert!(check(&tr, 200, &miss, r, 100).is_err());
    }

    #[test]
    fn histogram_totals_add_buckets() {
        let b = br#"{"status":"success","data":{"step_seconds":60,"buckets":[{"count":3},{"count":4}]}}"#;
        assert_eq!(histogram_total(b), Ok(7));
        assert!(histogram_total(b"{}").is_err());
    }
}
