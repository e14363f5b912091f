//! The log store end to end, through its public contracts: append, search (order, limit,
//! direction, time range), histogram, fields, live tail, near-real-time visibility,
//! restarts, crashes, retention and concurrent appends.

// helpers outside #[test] functions unwrap too: a failure there is a test failure
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use store::config::FsyncPolicy;
use store::logs::{
    Direction, FieldsRequest, HistogramRequest, LogBatch, LogQuery, LogRecord, LogSearch, LogStore,
    LogStoreOptions, LogsAppender, LogsQuerier, Severity,
};
use store::traces::{SpanId, TraceId};
use store::ErrorKind;

const SEC: u64 = 1_000_000_000;
const HOUR: u64 = 3600 * SEC;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn opts(dir: &Path) -> LogStoreOptions {
    let mut o = LogStoreOptions::new(dir);
    o.fsync = FsyncPolicy::Never;
    o.commit_interval = Duration::from_millis(200);
    o.writer_memory_bytes = 16 * 1024 * 1024;
    o
}

fn open(dir: &Path) -> Arc<LogStore> {
    LogStore::open(opts(dir)).unwrap()
}

/// A record whose body names it `n`, so results can be checked by number.
fn rec(n: u64, time: u64, service: &str, severity: u8) -> LogRecord {
    LogRecord {
        time_unix_nano: time,
        observed_unix_nano: time + 1000,
        severity_number: severity,
        severity_text: Severity::from_number(severity).as_str().to_uppercase(),
        service: service.to_string(),
        trace_id: None,
        span_id: None,
        body: format!("record {n} from {service} handled request"),
        resource: vec![
            ("service.name".to_string(), service.to_string()),
            ("host.name".to_string(), format!("host-{}", n % 3)),
        ],
        attributes: vec![("n".to_string(), n.to_string())],
    }
}

fn number(r: &LogRecord) -> u64 {
    r.attributes
        .iter()
        .find(|(k, _)| k == "n")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap()
}

fn all() -> LogQuery {
    LogQuery::parse("").unwrap()
}

fn search(
    store: &LogStore,
    start: u64,
    end: u64,
    limit: usize,
    direction: Direction,
) -> Vec<LogRecord> {
    store
        .search(&LogSearch {
            query: all(),
            start_unix_nano: start,
            end_unix_nano: end,
            limit,
            direction,
        })
        .unwrap()
}

fn everything(store: &LogStore) -> Vec<LogRecord> {
    search(store, 0, u64::MAX, 1_000_000, Direction::Forward)
}

/// Polls until `n` records are searchable; fails after 10 s.
async fn wait_for(store: &LogStore, n: usize) -> Vec<LogRecord> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = everything(store);
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every record number exactly once.
fn assert_exactly_once(records: &[LogRecord], expected: impl IntoIterator<Item = u64>) {
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for r in records {
        *counts.entry(number(r)).or_default() += 1;
    }
    let dups: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(dups.is_empty(), "duplicated records: {dups:?}");
    let mut want: Vec<u64> = expected.into_iter().collect();
    want.sort_unstable();
    let mut got: Vec<u64> = counts.into_keys().collect();
    got.sort_unstable();
    assert_eq!(got, want);
}

async fn append(store: &LogStore, records: Vec<LogRecord>) {
    let n = records.len() as u64;
    let report = store.append_logs(LogBatch { records }).await.unwrap();
    assert_eq!(report.accepted_records, n, "{report:?}");
}

#[tokio::test]
async fn round_trip_keeps_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let t = now_ns();
    let mut r = rec(1, t, "checkout", 17);
    r.trace_id = Some(TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap());
    r.span_id = Some(SpanId::from_hex("b7ad6b7169203331").unwrap());
    r.body = "数据库 connection failed: 10.0.0.1:5432 /api/v1/users\nsecond line".to_string();
    r.attributes
        .push(("http.route".to_string(), "/api/*".to_string()));
    append(&store, vec![r.clone()]).await;
    let got = wait_for(&store, 1).await;
    assert_eq!(got, vec![r]);
    store.close().await.unwrap();
}

#[tokio::test]
async fn newest_first_with_limit_across_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // at the start of an hour, so the 90 s of records per hour never cross into a fourth
    // partition (the test failed when run in the last 90 s before a full hour)
    let base = (now_ns() - 5 * HOUR) / HOUR * HOUR;
    // 3 partitions (hours), appended out of time order
    let mut records = Vec::new();
    for n in 0..90u64 {
        let hour = (n * 7) % 3;
        records.push(rec(n, base + hour * HOUR + n * SEC, "svc", 9));
    }
    append(&store, records.clone()).await;
    wait_for(&store, 90).await;
    assert_eq!(store.stats().partitions, 3);
    assert_eq!(store.stats().records, 90);

    let mut by_time = records.clone();
    by_time.sort_by_key(|r| std::cmp::Reverse(r.time_unix_nano));
    let got = search(&store, 0, u64::MAX, 10, Direction::Backward);
    assert_eq!(got, by_time[..10].to_vec());
    let got = search(&store, 0, u64::MAX, 45, Direction::Backward);
    assert_eq!(got, by_time[..45].to_vec());

    by_time.reverse();
    let got = search(&store, 0, u64::MAX, 10, Direction::Forward);
    assert_eq!(got, by_time[..10].to_vec());
    let got = search(&store, 0, u64::MAX, 1000, Direction::Forward);
    assert_eq!(got, by_time);

    // inclusive time range cutting through partitions
    let (lo, hi) = (by_time[20].time_unix_nano, by_time[70].time_unix_nano);
    let got = search(&store, lo, hi, 1000, Direction::Forward);
    assert_eq!(got, by_time[20..=70].to_vec());
    let got = search(&store, lo, hi, 5, Direction::Backward);
    let want: Vec<LogRecord> = by_time[66..=70].iter().rev().cloned().collect();
    assert_eq!(got, want);
    assert!(search(&store, hi + 1, hi + 2, 10, Direction::Backward).is_empty());
    let err = store
        .search(&LogSearch {
            query: all(),
            start_unix_nano: 10,
            end_unix_nano: 5,
            limit: 10,
            direction: Direction::Backward,
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    store.close().await.unwrap();
}

#[tokio::test]
async fn histogram_counts_equal_what_was_appended() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let start = (now_ns() - 2 * HOUR) / SEC * SEC;
    let mut records = Vec::new();
    let mut want = [[0u64; 7]; 12];
    for n in 0..600u64 {
        // 10-minute buckets over 2 hours, the 5th bucket left empty
        let bucket = (n * 5) % 12;
        if bucket == 4 {
            continue;
        }
        let sev = [0u8, 3, 9, 13, 17, 21][(n % 6) as usize];
        let t = start + bucket * 600 * SEC + (n % 600) * SEC;
        records.push(rec(n, t, "svc", sev));
        want[bucket as usize][Severity::from_number(sev) as usize] += 1;
    }
    let total = records.len();
    append(&store, records).await;
    wait_for(&store, total).await;
    let end = start + 2 * HOUR - 1;
    let buckets = store
        .histogram(&HistogramRequest {
            query: all(),
            start_unix_nano: start,
            end_unix_nano: end,
            step_nanos: 600 * SEC,
        })
        .unwrap();
    assert_eq!(buckets.len(), 12);
    for (i, b) in buckets.iter().enumerate() {
        assert_eq!(b.start_unix_nano, start + i as u64 * 600 * SEC);
        assert_eq!(b.by_severity, want[i], "bucket {i}");
        assert_eq!(b.count, want[i].iter().sum::<u64>(), "bucket {i}");
    }
    assert_eq!(buckets[4].count, 0);
    assert_eq!(buckets.iter().map(|b| b.count).sum::<u64>(), total as u64);

    // a range ending inside a bucket cuts it; step 0 and too many buckets are refused
    let b = store
        .histogram(&HistogramRequest {
            query: all(),
            start_unix_nano: start,
            end_unix_nano: start + 600 * SEC,
            step_nanos: 600 * SEC,
        })
        .unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].count, want[0].iter().sum::<u64>());
    for step in [0, 1] {
        let err = store
            .histogram(&HistogramRequest {
                query: all(),
                start_unix_nano: start,
                end_unix_nano: end,
                step_nanos: step,
            })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadRequest);
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn fields_list_values_of_the_newest_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let t = now_ns() - HOUR / 2;
    let mut records = Vec::new();
    for n in 0..30u64 {
        let service = if n % 3 == 0 { "checkout" } else { "cart" };
        let mut r = rec(n, t + n * SEC, service, 9);
        if n < 4 {
            r.trace_id = Some(TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap());
        }
        records.push(r);
    }
    append(&store, records).await;
    wait_for(&store, 30).await;
    let fields = store
        .fields(&FieldsRequest {
            query: all(),
            start_unix_nano: 0,
            end_unix_nano: u64::MAX,
            top_values: 2,
            sample: 0,
        })
        .unwrap();
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "attr.host.name",
            "attr.n",
            "attr.service.name",
            "service",
            "severity",
            "severity_text",
            "trace_id"
        ]
    );
    let service = &fields[3];
    assert_eq!(service.records, 30);
    assert_eq!(service.distinct_values, 2);
    assert_eq!(
        service.top,
        vec![("cart".to_string(), 20), ("checkout".to_string(), 10)]
    );
    let n = &fields[1];
    assert_eq!((n.records, n.distinct_values, n.top.len()), (30, 30, 2));
    let trace = &fields[6];
    assert_eq!(trace.records, 4);
    assert_eq!(fields[4].top, vec![("info".to_string(), 30)]);

    // the sample is the newest records
    let fields = store
        .fields(&FieldsRequest {
            query: all(),
            start_unix_nano: 0,
            end_unix_nano: u64::MAX,
            top_values: 10,
            sample: 5,
        })
        .unwrap();
    let n = fields.iter().find(|f| f.name == "attr.n").unwrap();
    let mut values: Vec<&str> = n.top.iter().map(|(v, _)| v.as_str()).collect();
    values.sort_unstable();
    assert_eq!(values, ["25", "26", "27", "28", "29"]);
    store.close().await.unwrap();
}

#[tokio::test]
async fn searchable_within_two_seconds_of_the_ack() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.commit_interval = Duration::from_secs(1);
    let store = LogStore::open(o).unwrap();
    let bg = store.spawn_background();
    for round in 0..3u64 {
        let t = now_ns();
        append(&store, vec![rec(round, t, "svc", 9)]).await;
        let acked = Instant::now();
        loop {
            let got = search(&store, t, t, 10, Direction::Backward);
            if !got.is_empty() {
                assert_eq!(number(&got[0]), round);
                break;
            }
            assert!(
                acked.elapsed() < Duration::from_secs(2),
                "record not searchable 2 s after its ack"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    store.close().await.unwrap();
    bg.await.unwrap();
}

/// While the indexer is behind, commits are put off, but never beyond `max_commit_delay`
/// after the first uncommitted record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_delays_commits_at_most_max_commit_delay() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.commit_interval = Duration::from_millis(100);
    o.max_commit_delay = Duration::from_millis(800);
    // any queued chunk counts as a backlog (an eighth of the limit is one byte)
    o.max_indexer_queue_bytes = 8;
    let store = LogStore::open(o).unwrap();
    let t = now_ns() - HOUR;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pump = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 1_000u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let records = (n..n + 200).map(|i| rec(i, t + i, "pump", 9)).collect();
                // refusals (the queue limit is tiny) are expected: retry
                if store.append_logs(LogBatch { records }).await.is_ok() {
                    n += 200;
                }
                tokio::task::yield_now().await;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    for round in 0..3u64 {
        let t0 = t - SEC;
        loop {
            match store
                .append_logs(LogBatch {
                    records: vec![rec(round, t0 + round, "probe", 9)],
                })
                .await
            {
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Overloaded => {
                    tokio::time::sleep(Duration::from_millis(1)).await
                }
                Err(e) => panic!("{e}"),
            }
        }
        let acked = Instant::now();
        while search(&store, t0 + round, t0 + round, 1, Direction::Backward).is_empty() {
            assert!(
                acked.elapsed() < Duration::from_secs(3),
                "record not searchable 3 s after its ack with max_commit_delay 0.8 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let pumped = pump.await.unwrap();
    let expected: Vec<u64> = (0..3).chain(1_000..pumped).collect();
    let got = wait_for(&store, expected.len()).await;
    assert_exactly_once(&got, expected);
    store.close().await.unwrap();
}

/// The background truncation deletes WAL segments only once the indexer committed what
/// they hold, without asking it to commit; a crash afterwards loses nothing.
#[tokio::test]
async fn background_wal_truncation_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_ns() - HOUR;
    let segment = 16 * 1024;
    {
        let mut o = opts(dir.path());
        o.wal_segment_bytes = segment;
        let store = LogStore::open(o).unwrap();
        let bg = store.spawn_background();
        for b in 0..20u64 {
            append(
                &store,
                (b * 50..(b + 1) * 50)
                    .map(|n| rec(n, t + n * 1000, "a", 9))
                    .collect(),
            )
            .await;
        }
        assert_exactly_once(&wait_for(&store, 1000).await, 0..1000);
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.stats().wal_bytes >= segment {
            assert!(
                Instant::now() < deadline,
                "wal not truncated: {} bytes",
                store.stats().wal_bytes
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // acknowledged after the truncation, then a crash (no close)
        append(
            &store,
            (1000..1100).map(|n| rec(n, t + n * 1000, "a", 9)).collect(),
        )
        .await;
        bg.abort();
        let _ = bg.await;
        drop(store);
    }
    let store = open(dir.path());
    assert_exactly_once(&everything(&store), 0..1100);
    store.close().await.unwrap();
}

#[tokio::test]
async fn tail_subscribers_get_batches_acknowledged_after_subscribing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let t = now_ns();
    append(&store, vec![rec(1, t, "svc", 9)]).await;
    let mut rx = store.subscribe();
    let mut bad = rec(3, t, "svc", 9);
    bad.severity_number = 30;
    let report = store
        .append_logs(LogBatch {
            records: vec![rec(2, t, "svc", 9), bad],
        })
        .await
        .unwrap();
    assert_eq!((report.accepted_records, report.rejected_records), (1, 1));
    let batch = rx.recv().await.unwrap();
    assert_eq!(batch.records.len(), 1);
    assert_eq!(number(&batch.records[0]), 2);
    assert!(rx.try_recv().is_err());
    store.close().await.unwrap();
}

#[tokio::test]
async fn invalid_records_are_rejected_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now = now_ns();
    let mut no_time = rec(1, 0, "svc", 9);
    no_time.observed_unix_nano = now;
    let mut severe = rec(2, now, "svc", 9);
    severe.severity_number = 25;
    let old = rec(3, now - 8 * 24 * HOUR, "svc", 9);
    let future = rec(4, now + 2 * HOUR, "svc", 9);
    let ok = rec(5, now, "svc", 24);
    let report = store
        .append_logs(LogBatch {
            records: vec![no_time, severe, old, future, ok],
        })
        .await
        .unwrap();
    assert_eq!((report.accepted_records, report.rejected_records), (2, 3));
    let msg = report.first_rejection.unwrap();
    assert!(msg.contains("severity number 25"), "{msg}");
    let got = wait_for(&store, 2).await;
    assert_exactly_once(&got, [1, 5]);
    let r1 = got.iter().find(|r| number(r) == 1).unwrap();
    assert_eq!(r1.time_unix_nano, now, "time 0 takes the observed time");
    // an empty batch, or one with nothing valid, is fine
    let report = store.append_logs(LogBatch::default()).await.unwrap();
    assert_eq!(report.accepted_records, 0);
    store.close().await.unwrap();
}

#[tokio::test]
async fn reopen_after_close_keeps_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_ns() - HOUR;
    {
        let store = open(dir.path());
        append(
            &store,
            (0..50).map(|n| rec(n, t + n * SEC, "a", 9)).collect(),
        )
        .await;
        store.close().await.unwrap();
        assert!(store
            .append_logs(LogBatch {
                records: vec![rec(99, t, "a", 9)]
            })
            .await
            .is_err());
    }
    let store = open(dir.path());
    // committed at close: searchable at once
    assert_exactly_once(&everything(&store), 0..50);
    append(
        &store,
        (50..60).map(|n| rec(n, t + n * SEC, "a", 9)).collect(),
    )
    .await;
    wait_for(&store, 60).await;
    store.close().await.unwrap();
    drop(store);
    let store = open(dir.path());
    assert_exactly_once(&everything(&store), 0..60);
    assert!(
        store.stats().wal_bytes <= 64,
        "replayed wal segments are deleted"
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn crash_without_close_keeps_every_acknowledged_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_ns() - 3 * HOUR;
    {
        let store = open(dir.path());
        // committed and still in the wal
        append(
            &store,
            (0..40).map(|n| rec(n, t + n * SEC, "a", 9)).collect(),
        )
        .await;
        wait_for(&store, 40).await;
        // committed, wal truncated
        append(
            &store,
            (40..60)
                .map(|n| rec(n, t + HOUR + n * SEC, "a", 9))
                .collect(),
        )
        .await;
        store.truncate_wal().await.unwrap();
        // acknowledged, maybe not indexed, across two partitions
        append(
            &store,
            (60..100)
                .map(|n| rec(n, t + (n % 2) * 2 * HOUR + n * SEC, "a", 9))
                .collect(),
        )
        .await;
        drop(store);
    }
    // a torn frame at the end of the last wal segment, as a crash mid-write leaves
    let wal = dir.path().join("wal");
    let mut segs: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(segs.last().unwrap())
        .unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(f);

    let store = open(dir.path());
    assert_exactly_once(&everything(&store), 0..100);
    // and again, after a crash right after replay
    drop(store);
    let store = open(dir.path());
    assert_exactly_once(&everything(&store), 0..100);
    append(&store, vec![rec(100, t, "a", 9)]).await;
    drop(store);
    let store = open(dir.path());
    assert_exactly_once(&everything(&store), 0..101);
    store.close().await.unwrap();
}

#[tokio::test]
async fn retention_drops_whole_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ns();
    {
        let store = open(dir.path());
        append(
            &store,
            vec![rec(1, now - 5 * HOUR, "a", 9), rec(2, now, "a", 9)],
        )
        .await;
        wait_for(&store, 2).await;
        // an acknowledged but uncommitted record of the old partition is in the wal
        append(&store, vec![rec(3, now - 5 * HOUR + SEC, "a", 9)]).await;
        drop(store);
    }
    let mut o = opts(dir.path());
    o.retention = Duration::from_secs(2 * 3600);
    let store = LogStore::open(o).unwrap();
    assert_eq!(store.apply_retention().await.unwrap(), 1);
    assert_eq!(store.stats().partitions, 1);
    assert_exactly_once(&everything(&store), [2]);
    let report = store
        .append_logs(LogBatch {
            records: vec![rec(4, now - 3 * HOUR, "a", 9)],
        })
        .await
        .unwrap();
    assert_eq!(report.rejected_records, 1);
    assert!(report.first_rejection.unwrap().contains("retention"));
    store.close().await.unwrap();
    drop(store);
    let entries: Vec<String> = std::fs::read_dir(dir.path().join("partitions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_all_land_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let bg = store.spawn_background();
    let t = now_ns() - 2 * HOUR;
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..25u64 {
                let records = (0..20u64)
                    .map(|i| {
                        let n = w * 10_000 + b * 100 + i;
                        rec(n, t + (n % 7) * HOUR / 3 + i, "c", 9)
                    })
                    .collect();
                append(&store, records).await;
                if b == 12 && w == 0 {
                    store.truncate_wal().await.unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let expected: Vec<u64> = (0..8u64)
        .flat_map(|w| {
            (0..25u64).flat_map(move |b| (0..20u64).map(move |i| w * 10_000 + b * 100 + i))
        })
        .collect();
    let got = wait_for(&store, expected.len()).await;
    assert_exactly_once(&got, expected.iter().copied());
    bg.abort();
    let _ = bg.await;
    drop(store);
    let store = open(dir.path());
    assert_exactly_once(&everything(&store), expected);
    store.close().await.unwrap();
}

/// The query language against the index: what the store indexes is what queries find, and
/// the index answers as the per-record matcher (live tail) does.
#[tokio::test]
async fn query_language_finds_what_the_matcher_finds() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let t = now_ns() - HOUR;
    let trace = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
    let mut records = Vec::new();
    let bodies = [
        "connection refused to db-1 10.0.0.1:5432",
        "GET /api/v1/users/42 completed in 12ms",
        "数据库连接超时，请稍后重试",
        "timeout waiting for upstream payment-svc",
        "user login ok",
        "Connection Refused again (retry 3)",
    ];
    for n in 0..60u64 {
        let service = ["checkout", "cart", "payment svc"][(n % 3) as usize];
        let sev = [5u8, 9, 13, 17, 21][(n % 5) as usize];
        let mut r = rec(n, t + n * SEC, service, sev);
        r.body = format!("{} #{n}", bodies[(n % 6) as usize]);
        if n % 4 == 0 {
            r.trace_id = Some(trace);
        }
        r.attributes
            .push(("http.route".to_string(), format!("/api/v{}/orders", n % 2)));
        records.push(r);
    }
    append(&store, records.clone()).await;
    wait_for(&store, records.len()).await;
    let queries = [
        "refused",
        "\"connection refused\"",
        "\"refused connection\"",
        "10.0.0.1",
        "/api/v1/users",
        "数据库",
        "timeout*",
        "service:checkout",
        "service:\"payment svc\"",
        "service:check*",
        "severity>=error",
        "level:warn",
        "severity<info",
        "trace_id:0af7651916cd43dd8448eb211c80319c",
        "attr.http.route:/api/v1/*",
        "attr.host.name:host-1 AND NOT refused",
        "-service:cart (timeout OR login)",
        "body:ok",
        "",
        // phrases: the index over-selects, the store verifies
        "NOT \"connection refused\"",
        "\"refused connection\" OR timeout",
        "-10.0.0.1 severity>=warn",
        "\"refused again\" OR (数据库 -service:cart)",
    ];
    for q in queries {
        let query = LogQuery::parse(q).unwrap();
        let got = store
            .search(&LogSearch {
                query: query.clone(),
                start_unix_nano: 0,
                end_unix_nano: u64::MAX,
                limit: 1000,
                direction: Direction::Backward,
            })
            .unwrap();
        let mut want: Vec<LogRecord> = records
            .iter()
            .filter(|r| query.matches(r))
            .cloned()
            .collect();
        want.reverse();
        assert!(
            !want.is_empty() || q == "\"refused connection\"",
            "{q:?} matches nothing"
        );
        assert_eq!(got, want, "{q:?}");
        // a small limit, both ways
        for direction in [Direction::Backward, Direction::Forward] {
            let few = store
                .search(&LogSearch {
                    query: query.clone(),
                    start_unix_nano: 0,
                    end_unix_nano: u64::MAX,
                    limit: 3,
                    direction,
                })
                .unwrap();
            let mut expect = want.clone();
            if direction == Direction::Forward {
                expect.reverse();
            }
            expect.truncate(3);
            assert_eq!(few, expect, "{q:?} {direction:?}");
        }
        let hist = store
            .histogram(&HistogramRequest {
                query: query.clone(),
                start_unix_nano: t,
                end_unix_nano: t + HOUR,
                step_nanos: 60 * SEC,
            })
            .unwrap();
        assert_eq!(
            hist.iter().map(|b| b.count).sum::<u64>(),
            want.len() as u64,
            "{q:?}"
        );
    }
    store.close().await.unwrap();
}

/// A phrase whose words are in most lines but in the phrase's order only in a few older
/// ones: search, histogram and fields answer from the few, however many newer candidates
/// the index returns first.
#[tokio::test]
async fn phrases_skip_newer_lines_that_only_have_the_words() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let t = now_ns() - HOUR;
    let mut records = Vec::new();
    for n in 0..300u64 {
        let mut r = rec(n, t + n * SEC, if n % 2 == 0 { "a" } else { "b" }, 9);
        // ten real matches among the oldest hundred, the newer lines have the words reversed
        r.body = if n < 100 && n % 10 == 0 {
            format!("disk full on /var/lib #{n}")
        } else {
            format!("full disk warning for /var/lib #{n}")
        };
        records.push(r);
    }
    append(&store, records).await;
    wait_for(&store, 300).await;
    let query = LogQuery::parse("\"disk full\" /var/lib").unwrap();
    assert!(query.needs_verification());
    let got = store
        .search(&LogSearch {
            query: query.clone(),
            start_unix_nano: 0,
            end_unix_nano: u64::MAX,
            limit: 4,
            direction: Direction::Backward,
        })
        .unwrap();
    assert_eq!(got.iter().map(number).collect::<Vec<_>>(), [90, 80, 70, 60]);
    let hist = store
        .histogram(&HistogramRequest {
            query: query.clone(),
            start_unix_nano: t,
            end_unix_nano: t + 300 * SEC,
            step_nanos: 50 * SEC,
        })
        .unwrap();
    let counts: Vec<u64> = hist.iter().map(|b| b.count).collect();
    assert_eq!(counts, [5, 5, 0, 0, 0, 0, 0]);
    let fields = store
        .fields(&FieldsRequest {
            query,
            start_unix_nano: 0,
            end_unix_nano: u64::MAX,
            top_values: 5,
            sample: 0,
        })
        .unwrap();
    let service = fields.iter().find(|f| f.name == "service").unwrap();
    assert_eq!(service.records, 10);
    assert_eq!(service.top, vec![("a".to_string(), 10)]);
    store.close().await.unwrap();
}
