//! Unit tests of the log store's pieces: the codec, validation, overload, term queries
//! against the index, replay exactness and search order (with and without verification)
//! against a brute-force model.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::ops::Bound;

use tantivy::query::{Query, RangeQuery, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::Term;

use super::codec::{self, PayloadBuilder};
use super::*;
use crate::logs::{Direction, LogQuery, Severity};
use crate::traces::model::{SpanId, TraceId};

const SEC: u64 = 1_000_000_000;
const HOUR: u64 = 3600 * SEC;

fn record(n: u64, time: u64) -> LogRecord {
    LogRecord {
        time_unix_nano: time,
        observed_unix_nano: time + 5,
        severity_number: (n % 25) as u8,
        severity_text: if n.is_multiple_of(2) {
            "WARN".into()
        } else {
            String::new()
        },
        service: format!("svc-{}", n % 3),
        trace_id: n.is_multiple_of(2).then_some(TraceId([n as u8 | 1; 16])),
        span_id: n.is_multiple_of(3).then_some(SpanId([n as u8 | 1; 8])),
        body: format!("request {n} failed: timeout after {}ms", n * 7),
        resource: vec![("service.name".into(), format!("svc-{}", n % 3))],
        attributes: vec![("n".into(), n.to_string()), ("k".into(), "v".into())],
    }
}

fn opts(dir: &std::path::Path) -> LogStoreOptions {
    let mut o = LogStoreOptions::new(dir);
    o.fsync = FsyncPolicy::Never;
    o.commit_interval = Duration::from_millis(100);
    o.writer_memory_bytes = partition::MIN_WRITER_BYTES;
    o
}

#[test]
fn record_codec_round_trips() {
    for n in 0..50 {
        let mut r = record(n, 1_700_000_000 * SEC + n);
        if n == 7 {
            // observed before time, empty everything
            r.observed_unix_nano = 3;
            r.body.clear();
            r.resource.clear();
            r.attributes.clear();
            r.service.clear();
        }
        let mut buf = Vec::new();
        codec::encode_record(&mut buf, &r);
        assert!(buf.len() <= codec::encoded_len_hint(&r));
        assert_eq!(codec::decode_record(&buf).unwrap(), r);
        assert_eq!(codec::record_time(&buf).unwrap(), r.time_unix_nano);
        // the partition's form: stored part plus columns
        let (mut stored, mut source) = (Vec::new(), Vec::new());
        codec::encode_stored(&mut stored, &r);
        codec::encode_source(&mut source, &r);
        let source = codec::decode_source(&source).unwrap();
        let back =
            codec::decode_stored(&stored, r.time_unix_nano, r.severity_number, &source).unwrap();
        assert_eq!(back, r);
    }
}

#[test]
fn damaged_records_and_payloads_are_errors_not_panics() {
    let r = record(4, 1_700_000_000 * SEC);
    let mut buf = Vec::new();
    codec::encode_record(&mut buf, &r);
    for cut in 0..buf.len() {
        assert!(codec::decode_record(&buf[..cut]).is_err(), "prefix {cut}");
    }
    let mut long = buf.clone();
    long.push(0);
    assert!(codec::decode_record(&long).is_err());
    let mut v2 = buf.clone();
    v2[0] = 2;
    assert!(codec::decode_record(&v2).is_err());

    let (mut stored, mut source) = (Vec::new(), Vec::new());
    codec::encode_stored(&mut stored, &r);
    codec::encode_source(&mut source, &r);
    let src = codec::decode_source(&source).unwrap();
    for cut in 0..stored.len() {
        assert!(codec::decode_stored(&stored[..cut], 1, 9, &src).is_err());
    }
    for cut in 0..source.len() {
        assert!(codec::decode_source(&source[..cut]).is_err());
    }
    stored.push(0);
    assert!(codec::decode_stored(&stored, 1, 9, &src).is_err());
    source.push(0);
    assert!(codec::decode_source(&source).is_err());
    // a WAL record is not a stored part
    assert!(codec::decode_stored(&buf, 1, 9, &src).is_err());

    let mut b = PayloadBuilder::with_capacity(64);
    b.add(&r);
    b.add(&record(5, 1));
    let (payload, _) = b.finish(9);
    for cut in 0..payload.len() {
        assert!(
            codec::decode_payload(&payload[..cut]).is_err(),
            "prefix {cut}"
        );
    }
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..2000 {
        let mut p = payload.clone();
        let i = rng.random_range(0..p.len());
        p[i] = rng.random();
        // may decode (a byte inside a string) but must not panic
        if let Ok(d) = codec::decode_payload(&p) {
            for rec in d.records {
                let _ = codec::decode_record(rec);
            }
        }
    }
}

#[test]
fn payload_round_trips_with_its_sequence_number() {
    let records: Vec<LogRecord> = (0..300).map(|n| record(n, n * SEC)).collect();
    let mut b = PayloadBuilder::with_capacity(0);
    for r in &records {
        b.add(r);
    }
    let (payload, ranges) = b.finish(u64::MAX - 1);
    let d = codec::decode_payload(&payload).unwrap();
    assert_eq!(d.seq, u64::MAX - 1);
    assert_eq!(d.records.len(), 300);
    for ((bytes, range), r) in d.records.iter().zip(&ranges).zip(&records) {
        assert_eq!(*bytes, &payload[range.clone()]);
        assert_eq!(&codec::decode_record(bytes).unwrap(), r);
    }
}

#[test]
fn normalize_fills_times_and_names_rejections() {
    let o = LogStoreOptions::new("/nonexistent");
    let now = 1_800_000_000 * SEC;
    let mut r = record(1, 0);
    r.observed_unix_nano = 0;
    normalize(&mut r, now, &o).map_err(|r| r.message).unwrap();
    assert_eq!((r.time_unix_nano, r.observed_unix_nano), (now, now));
    let mut r = record(1, now);
    r.severity_number = 25;
    assert_eq!(normalize(&mut r, now, &o).err().unwrap().reason, "severity");
    let mut r = record(1, now - 8 * 24 * HOUR);
    assert_eq!(normalize(&mut r, now, &o).err().unwrap().reason, "too_old");
    let mut r = record(1, now + 2 * HOUR);
    assert_eq!(
        normalize(&mut r, now, &o).err().unwrap().reason,
        "too_far_in_future"
    );
    let mut r = record(1, now);
    r.body = "x".repeat(MAX_ENCODED_RECORD);
    assert_eq!(
        normalize(&mut r, now, &o).err().unwrap().reason,
        "too_large"
    );
}

#[test]
fn bad_options_are_all_reported() {
    let mut o = LogStoreOptions::new("/nonexistent");
    o.partition_span = Duration::from_millis(1500);
    o.max_open_writers = 0;
    o.writer_memory_bytes = 1;
    let msg = LogStore::open(o).err().unwrap().to_string();
    for want in ["partition_span", "max_open_writers", "writer_memory_bytes"] {
        assert!(msg.contains(want), "{msg}");
    }
}

fn now() -> u64 {
    now_ns()
}

async fn wait_searchable(store: &LogStore, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store.stats().records < n {
        assert!(
            std::time::Instant::now() < deadline,
            "records not searchable"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn appends_are_refused_before_the_wal_when_the_indexer_lags() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(opts(dir.path())).unwrap();
    let wal_before = store.wal.size_bytes();
    let limit = store.opts.max_indexer_queue_bytes;
    store.shared.queue_bytes.fetch_add(limit, Ordering::AcqRel);
    let err = store
        .append_logs(LogBatch {
            records: vec![record(1, now())],
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::Overloaded);
    assert_eq!(
        store.wal.size_bytes(),
        wal_before,
        "nothing reached the wal"
    );
    store.shared.queue_bytes.fetch_sub(limit, Ordering::AcqRel);
    store
        .append_logs(LogBatch {
            records: vec![record(1, now())],
        })
        .await
        .unwrap();
    wait_searchable(&store, 1).await;
    assert_eq!(store.shared.queue_bytes.load(Ordering::Acquire), 0);
    store.close().await.unwrap();
}

fn term_search(store: &LogStore, q: &dyn Query, limit: usize) -> Vec<LogRecord> {
    let range = TimeRange::new(0, u64::MAX).unwrap();
    search::search(
        &store.partitions(),
        &store.shared.schema,
        q,
        None,
        range,
        limit,
        Direction::Backward,
    )
    .unwrap()
}

#[tokio::test]
async fn indexed_fields_answer_term_queries() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(opts(dir.path())).unwrap();
    let t = now() - HOUR;
    let records: Vec<LogRecord> = (0..30).map(|n| record(n, t + n * SEC)).collect();
    store
        .append_logs(LogBatch {
            records: records.clone(),
        })
        .await
        .unwrap();
    wait_searchable(&store, 30).await;
    let s = &store.shared.schema;
    let term = |field, text: &str| {
        TermQuery::new(Term::from_field_text(field, text), IndexRecordOption::Basic)
    };

    let got = term_search(&store, &term(s.service, "svc-1"), 100);
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|r| r.service == "svc-1"));
    assert!(got
        .windows(2)
        .all(|w| w[0].time_unix_nano > w[1].time_unix_nano));

    let got = term_search(&store, &term(s.body, "request"), 5);
    let want: Vec<LogRecord> = records.iter().rev().take(5).cloned().collect();
    assert_eq!(got, want);

    let got = term_search(&store, &term(s.attr, "n=17"), 100);
    assert_eq!(got, vec![records[17].clone()]);
    let got = term_search(&store, &term(s.severity_text, "warn"), 100);
    assert_eq!(got.len(), 15);
    let hex = TraceId([4 | 1; 16]).to_string();
    let got = term_search(&store, &term(s.trace_id, &hex), 100);
    assert_eq!(got, vec![records[4].clone()]);
    // severity is a fast field only: a range query reads its column
    let sev = RangeQuery::new(
        Bound::Included(Term::from_field_u64(s.severity, 13)),
        Bound::Included(Term::from_field_u64(s.severity, 13)),
    );
    let got = term_search(&store, &sev, 100);
    assert_eq!(got, vec![records[13].clone()]);
    assert!(term_search(&store, &term(s.service, "nope"), 10).is_empty());
    store.close().await.unwrap();
}

#[tokio::test]
async fn replay_indexes_only_what_partitions_have_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    let t = now() - 3 * HOUR;
    {
        let store = LogStore::open(opts(dir.path())).unwrap();
        store
            .append_logs(LogBatch {
                records: (0..10).map(|n| record(n, t + n)).collect(),
            })
            .await
            .unwrap();
        wait_searchable(&store, 10).await;
        let seq = store.next_seq.load(Ordering::Acquire) - 1;
        let committed: Vec<u64> = store
            .partitions()
            .iter()
            .map(|p| p.committed_seq())
            .collect();
        assert_eq!(committed, vec![seq]);
        drop(store);
    }
    let store = LogStore::open(opts(dir.path())).unwrap();
    assert_eq!(store.stats().records, 10);
    assert_eq!(
        store.replayed_records(),
        0,
        "nothing re-indexed: the partition had committed it all"
    );
    drop(store);
    let store = LogStore::open(opts(dir.path())).unwrap();
    assert_eq!(store.stats().records, 10);
    store.close().await.unwrap();
}

/// One writer at a time: a chunk with records for three partitions evicts writers in the
/// middle of the chunk, committing each with the payload its contents allow.
#[tokio::test]
async fn evicting_writers_mid_chunk_keeps_replay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.max_open_writers = 1;
    let t = now() - 5 * HOUR;
    let records: Vec<LogRecord> = (0..60).map(|n| record(n, t + (n % 3) * HOUR + n)).collect();
    {
        let store = LogStore::open(o.clone()).unwrap();
        for chunk in records.chunks(20) {
            store
                .append_logs(LogBatch {
                    records: chunk.to_vec(),
                })
                .await
                .unwrap();
        }
        wait_searchable(&store, 1).await;
        drop(store);
    }
    for _ in 0..2 {
        let store = LogStore::open(o.clone()).unwrap();
        assert_eq!(store.stats().partitions, 3);
        let mut got = term_search(&store, &tantivy::query::AllQuery, 1000);
        got.sort_by_key(|r| r.time_unix_nano);
        let mut want = records.clone();
        want.sort_by_key(|r| r.time_unix_nano);
        assert_eq!(got, want);
        drop(store);
    }
}

/// Many small appends (many segments per partition, out of time order) against a model:
/// order, limits, ranges and histograms, for queries the index answers exactly and for
/// phrases it over-selects (verified record by record).
#[tokio::test]
async fn search_matches_a_brute_force_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.commit_interval = Duration::from_millis(20);
    let store = LogStore::open(o).unwrap();
    let base = now() - 4 * HOUR;
    let mut rng = StdRng::seed_from_u64(42);
    let mut all = Vec::new();
    for b in 0..40u64 {
        let records: Vec<LogRecord> = (0..25u64)
            .map(|i| {
                let n = b * 25 + i;
                // a few identical times too
                let t = base + rng.random_range(0..3 * HOUR) / 1000 * 1000;
                record(n, t)
            })
            .collect();
        all.extend(records.clone());
        store.append_logs(LogBatch { records }).await.unwrap();
        if b % 8 == 0 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    wait_searchable(&store, all.len() as u64).await;
    // bodies are "request {n} failed: timeout after {7n}ms": the phrases below select
    // (through the token conjunction) candidates that verification must sort out, some
    // of them every record
    let queries: Vec<LogQuery> = [
        "",
        "service:svc-1",
        "\"timeout after\"",
        "\"after timeout\"",
        "\"request 7\" OR \"request 70\" OR \"request 700\"",
        "NOT \"failed timeout\"",
        "NOT \"timeout failed\" severity>=warn",
        "-\"request 3\" service:svc-2",
    ]
    .iter()
    .map(|q| LogQuery::parse(q).unwrap())
    .collect();
    for round in 0..240 {
        let a = base + rng.random_range(0..3 * HOUR);
        let b = base + rng.random_range(0..3 * HOUR);
        let range = TimeRange::new(a.min(b), a.max(b)).unwrap();
        let limit = rng.random_range(1..120);
        let direction = if round % 2 == 0 {
            Direction::Backward
        } else {
            Direction::Forward
        };
        let query = &queries[round % queries.len()];
        let q = query.to_tantivy(&store.shared.schema);
        let verify = query.needs_verification().then_some(query);
        let got = search::search(
            &store.partitions(),
            &store.shared.schema,
            q.as_ref(),
            verify,
            range,
            limit,
            direction,
        )
        .unwrap();
        let mut want: Vec<&LogRecord> = all
            .iter()
            .filter(|r| r.time_unix_nano >= range.start && r.time_unix_nano <= range.end)
            .filter(|r| query.matches(r))
            .collect();
        want.sort_by_key(|r| r.time_unix_nano);
        if direction == Direction::Backward {
            want.reverse();
        }
        let got_times: Vec<u64> = got.iter().map(|r| r.time_unix_nano).collect();
        let want_times: Vec<u64> = want.iter().take(limit).map(|r| r.time_unix_nano).collect();
        let what = format!("round {round}, {:?}", query.source());
        assert_eq!(got_times, want_times, "{what}");
        assert!(got.iter().all(|r| query.matches(r)), "{what}");
        // histogram over the same range: exact counts
        let step = (range.end - range.start) / 7 + 1;
        let buckets = search::histogram(
            &store.partitions(),
            &store.shared.schema,
            q.as_ref(),
            verify,
            range,
            step,
        )
        .unwrap();
        let total: u64 = buckets.iter().map(|b| b.count).sum();
        assert_eq!(total, want.len() as u64, "{what}");
        let sev: u64 = want
            .iter()
            .filter(|r| Severity::from_number(r.severity_number) == Severity::Warn)
            .count() as u64;
        let got_sev: u64 = buckets
            .iter()
            .map(|b| b.by_severity[Severity::Warn as usize])
            .sum();
        assert_eq!(got_sev, sev, "{what}");
    }
    // every record comes back whole: stored part, columns and source
    let mut got = term_search(&store, &tantivy::query::AllQuery, all.len());
    got.sort_by_key(|r| (r.time_unix_nano, r.body.clone()));
    let mut want = all.clone();
    want.sort_by_key(|r| (r.time_unix_nano, r.body.clone()));
    assert_eq!(got, want);
    store.close().await.unwrap();
}

/// Version 1 bytes, written once: later builds must keep reading them.
#[test]
fn version_1_record_and_payload_still_decode() {
    let record: &[u8] = &[
        1, // version
        0x80, 0x94, 0xeb, 0xdc, 0x03, // time 1_000_000_000 (uvarint)
        0x0a, // observed - time = 5 (zigzag)
        17,   // severity
        5, b'E', b'R', b'R', b'O', b'R', // severity text
        2, b'a', b'b', // service
        3,    // flags: trace and span id
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, // trace id
        1, 2, 3, 4, 5, 6, 7, 8, // span id
        2, b'h', b'i', // body
        1, 1, b'k', 1, b'v', // resource
        0,    // attributes
    ];
    let r = codec::decode_record(record).unwrap();
    assert_eq!(
        r,
        LogRecord {
            time_unix_nano: 1_000_000_000,
            observed_unix_nano: 1_000_000_005,
            severity_number: 17,
            severity_text: "ERROR".into(),
            service: "ab".into(),
            trace_id: Some(TraceId([
                1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16
            ])),
            span_id: Some(SpanId([1, 2, 3, 4, 5, 6, 7, 8])),
            body: "hi".into(),
            resource: vec![("k".into(), "v".into())],
            attributes: vec![],
        }
    );
    let mut again = Vec::new();
    codec::encode_record(&mut again, &r);
    assert_eq!(again, record, "the encoder still writes version 1");
    let mut payload = vec![1u8, 7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, record.len() as u8];
    payload.extend_from_slice(record);
    let p = codec::decode_payload(&payload).unwrap();
    assert_eq!((p.seq, p.records.len()), (7, 1));
    assert_eq!(p.records[0], record);
    let commit: partition::CommitPayload =
        serde_json::from_str(r#"{"seq":42,"span_secs":3600}"#).unwrap();
    assert_eq!(
        commit,
        partition::CommitPayload {
            seq: 42,
            span_secs: 3600
        }
    );
    assert_eq!(commit.to_json(), r#"{"seq":42,"span_secs":3600}"#);
}

/// A partition's stored part (version 2) and source bytes, written once: later builds must
/// keep reading them.
#[test]
fn version_2_stored_part_and_source_still_decode() {
    let stored: &[u8] = &[
        2,    // version
        0x0a, // observed - time = 5 (zigzag)
        5, b'E', b'R', b'R', b'O', b'R', // severity text
        1,    // flags: trace id
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, // trace id
        2, b'h', b'i', // body
        1, 1, b'a', 1, b'b', // attributes
    ];
    let source: &[u8] = &[
        2, b'a', b'b', // service
        1, 1, b'k', 1, b'v', // resource
    ];
    let src = codec::decode_source(source).unwrap();
    let r = codec::decode_stored(stored, 1_000_000_000, 17, &src).unwrap();
    let want = LogRecord {
        time_unix_nano: 1_000_000_000,
        observed_unix_nano: 1_000_000_005,
        severity_number: 17,
        severity_text: "ERROR".into(),
        service: "ab".into(),
        trace_id: Some(TraceId([
            1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
        ])),
        span_id: None,
        body: "hi".into(),
        resource: vec![("k".into(), "v".into())],
        attributes: vec![("a".into(), "b".into())],
    };
    assert_eq!(r, want);
    let (mut s, mut o) = (Vec::new(), Vec::new());
    codec::encode_stored(&mut s, &want);
    codec::encode_source(&mut o, &want);
    assert_eq!((s.as_slice(), o.as_slice()), (stored, source));
}

/// What the tier test compares before and after the move: searches both ways, a field
/// query with a phrase (verified on the record), a histogram and field summaries.
fn answers(store: &LogStore, start: u64, end: u64) -> Vec<String> {
    let search = |q: &str, limit: usize, direction: Direction| {
        let s = LogSearch {
            query: LogQuery::parse(q).unwrap(),
            start_unix_nano: start,
            end_unix_nano: end,
            limit,
            direction,
        };
        format!("{:?}", store.search(&s).unwrap())
    };
    let histogram = store
        .histogram(&HistogramRequest {
            query: LogQuery::parse("severity>=warn").unwrap(),
            start_unix_nano: start,
            end_unix_nano: end,
            step_nanos: SEC / 4,
        })
        .unwrap();
    let fields = store
        .fields(&FieldsRequest {
            query: LogQuery::all(),
            start_unix_nano: start,
            end_unix_nano: end,
            top_values: 5,
            sample: 0,
        })
        .unwrap();
    vec![
        search("*", 1000, Direction::Backward),
        search("*", 7, Direction::Backward),
        search("*", 7, Direction::Forward),
        search(
            "service:svc-1 AND \"failed: timeout\"",
            1000,
            Direction::Backward,
        ),
        search("attr.n:12 OR attr.n:13", 1000, Direction::Forward),
        format!("{histogram:?}"),
        format!("{fields:?}"),
    ]
}

#[tokio::test]
async fn partitions_past_the_warm_window_move_to_the_archive_and_answer_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let archive = crate::archive::Archive::open(&crate::archive::ArchiveLocation::Local(
        dir.path().join("archive"),
    ))
    .unwrap();
    // a warm window of `retention` seconds, one-second partitions
    let reopen = |retention: u64| {
        let mut o = opts(&dir.path().join("logs"));
        o.retention = Duration::from_secs(retention);
        o.partition_span = Duration::from_secs(1);
        o.archive = Some(crate::config::ArchiveTier {
            archive: archive.clone(),
            keep_for: Duration::from_secs(3600),
        });
        LogStore::open(o).unwrap()
    };
    let store = reopen(3);
    // 40 records over the last two seconds: two or three partitions
    let t0 = now() - 2 * SEC;
    let records: Vec<LogRecord> = (0..40).map(|n| record(n, t0 + n * (SEC / 20))).collect();
    store
        .append_logs(LogBatch {
            records: records.clone(),
        })
        .await
        .unwrap();
    wait_searchable(&store, 40).await;
    let (start, end) = (t0 - SEC, t0 + 3 * SEC);
    let before = answers(&store, start, end);
    assert!(before[0].contains("request 39 "), "{}", before[0]);

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while store.stats().partitions > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "partitions never moved"
        );
        store.move_old_data().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let files = archive.files(archive::SIGNAL, i64::MIN, i64::MAX);
    assert!(!files.is_empty());
    assert_eq!(files.iter().map(|f| f.rows).sum::<u64>(), 40);
    assert_eq!(
        answers(&store, start, end),
        before,
        "the archive answers as the index did"
    );
    let (_, stats) = store
        .search_with_stats(&LogSearch {
            query: LogQuery::all(),
            start_unix_nano: start,
            end_unix_nano: end,
            limit: 1,
            direction: Direction::Backward,
        })
        .unwrap();
    assert_eq!(
        stats.archive_files_read, 1,
        "a newest-first search of one record reads one file"
    );

    // reopened, the archive still answers (the local partitions are gone)
    store.close().await.unwrap();
    drop(store);
    let store = reopen(3);
    assert_eq!(store.stats().partitions, 0);
    assert_eq!(answers(&store, start, end), before);
    store.close().await.unwrap();
    drop(store);

    // A longer warm window takes a late record for an archived hour: its partition is a new
    // instance, read beside the archived file, and archived as a file of its own.
    let all = |store: &LogStore| {
        store
            .search(&LogSearch {
                query: LogQuery::all(),
                start_unix_nano: start,
                end_unix_nano: end,
                limit: 1000,
                direction: Direction::Forward,
            })
            .unwrap()
    };
    let store = reopen(3600);
    let late = record(1000, t0 + 1);
    store
        .append_logs(LogBatch {
            records: vec![late.clone()],
        })
        .await
        .unwrap();
    wait_searchable(&store, 1).await;
    let mut want = records.clone();
    want.insert(1, late);
    assert_eq!(
        all(&store),
        want,
        "the local partition and the archived file both answer"
    );
    store.close().await.unwrap();
    drop(store);
    let store = reopen(3);
    assert_eq!(store.move_old_data().await.unwrap(), 1);
    assert_eq!(
        archive.files(archive::SIGNAL, i64::MIN, i64::MAX).len(),
        files.len() + 1
    );
    assert_eq!(all(&store), want);
    store.close().await.unwrap();
}
