//! Store-level tests: append/select, ordering policy, limits, flush, restart, retention.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::{FsyncPolicy, Limits};
use crate::contract::MatchOp;
use crate::model::{stale_nan, RawMetricBatch, STALE_NAN_BITS};

fn opts(dir: &Path) -> MetricsStoreOptions {
    let mut o = MetricsStoreOptions::new(dir);
    o.fsync = FsyncPolicy::Always;
    o
}

/// Opens the store in `dir`. A test that drops a store to simulate a kill leaves its
/// background threads releasing sled's lock a moment later, which a killed process would not:
/// wait for that instead of failing.
fn open_store(dir: &Path) -> Arc<MetricsStore> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match MetricsStore::open(opts(dir)) {
            Ok(store) => return store,
            Err(e) if Instant::now() < deadline && e.to_string().contains("lock") => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("opening the store: {e}"),
        }
    }
}

fn series(name: &str, job: &str, samples: &[(i64, f64)]) -> crate::model::Series {
    crate::model::Series {
        labels: Labels::from_pairs([("__name__", name), ("job", job)]),
        samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
    }
}

fn batch(series: Vec<crate::model::Series>) -> MetricBatch {
    MetricBatch {
        series,
        metadata: Vec::new(),
    }
}

fn eq(name: &str, value: &str) -> LabelMatcher {
    LabelMatcher::new(name, MatchOp::Equal, value).unwrap()
}

/// A base time inside the default age window, aligned for readable offsets.
fn base() -> i64 {
    (now_ms() - 3_600_000) / 1000 * 1000
}

fn all_samples(store: &MetricsStore, name: &str) -> Vec<Series> {
    store
        .select(&[eq("__name__", name)], i64::MIN, i64::MAX)
        .unwrap()
}

#[tokio::test]
async fn append_select_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let t0 = base();
    let mut b = batch(vec![
        series(
            "up",
            "api",
            &[(t0, 1.0), (t0 + 10_000, 0.0), (t0 + 20_000, stale_nan())],
        ),
        series("up", "db", &[(t0, 1.0)]),
        series("http_requests_total", "api", &[(t0, 5.0)]),
    ]);
    b.metadata.push(MetricMetadata {
        metric_family: "up".into(),
        metric_type: MetricType::Gauge,
        help: "target up".into(),
        unit: String::new(),
    });
    let r = store.append(b).await.unwrap();
    assert_eq!(r.accepted_samples, 5);
    assert_eq!(r.rejected_total(), 0);

    let got = all_samples(&store, "up");
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].labels,
        Labels::from_pairs([("__name__", "up"), ("job", "api")])
    );
    assert_eq!(got[0].samples.len(), 3);
    assert_eq!(got[0].samples[2].value.to_bits(), STALE_NAN_BITS);
    let got = store
        .select(&[eq("job", "api")], t0 + 5_000, t0 + 10_000)
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].samples, vec![Sample::new(t0 + 10_000, 0.0)]);
    let ne = LabelMatcher::new("job", MatchOp::NotEqual, "api").unwrap();
    assert_eq!(store.select(&[ne], i64::MIN, i64::MAX).unwrap().len(), 1);

    assert_eq!(
        store.label_names(&[], i64::MIN, i64::MAX).unwrap(),
        vec!["__name__", "job"]
    );
    assert_eq!(
        store.label_values("job", &[], i64::MIN, i64::MAX).unwrap(),
        vec!["api", "db"]
    );
    assert_eq!(
        store
            .label_values(
                "job",
                &[vec![eq("__name__", "http_requests_total")]],
                i64::MIN,
                i64::MAX
            )
            .unwrap(),
        vec!["api"]
    );
    assert_eq!(
        store
            .series(&[vec![eq("__name__", "up")]], i64::MIN, i64::MAX)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(store.series(&[], t0 + 15_000, i64::MAX).unwrap().len(), 1);
    let md = store.metadata().unwrap();
    assert_eq!(md.len(), 1);
    assert_eq!(md[0].help, "target up");
    let s = store.stats();
    assert_eq!((s.series, s.head_samples), (3, 5));
    store.close().await.unwrap();
}

#[tokio::test]
async fn ordering_policy_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let t0 = base();
    store
        .append(batch(vec![series("m", "a", &[(t0, 1.0), (t0 + 10, 2.0)])]))
        .await
        .unwrap();
    let r = store
        .append(batch(vec![series(
            "m",
            "a",
            &[
                (t0 + 5, 9.0),
                (t0 + 10, 2.0),
                (t0 + 10, 3.0),
                (t0 + 20, 4.0),
                (t0 + 15, 1.0),
            ],
        )]))
        .await
        .unwrap();
    assert_eq!(r.accepted_samples, 1);
    assert_eq!(r.duplicate_samples, 1);
    assert_eq!(r.rejected_samples.get(&RejectReason::OutOfOrder), Some(&2));
    assert_eq!(
        r.rejected_samples.get(&RejectReason::DuplicateTimestamp),
        Some(&1)
    );
    assert!(
        r.first_rejection
            .as_deref()
            .is_some_and(|m| m.contains("m{job=\"a\"}")),
        "{r:?}"
    );
    let got = all_samples(&store, "m");
    let ts: Vec<i64> = got[0].samples.iter().map(|s| s.timestamp_ms - t0).collect();
    assert_eq!(ts, vec![0, 10, 20]);
    store.close().await.unwrap();
}

#[tokio::test]
async fn limits_reject_by_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.limits = Limits {
        max_labels_per_series: 3,
        ..Limits::default()
    };
    let store = MetricsStore::open(o).unwrap();
    let now = now_ms();
    let too_many = crate::model::Series {
        labels: Labels::from_pairs([("__name__", "x"), ("a", "1"), ("b", "2"), ("c", "3")]),
        samples: vec![Sample::new(now, 1.0), Sample::new(now + 1, 1.0)],
    };
    let no_name = crate::model::Series {
        labels: Labels::from_pairs([("job", "x")]),
        samples: vec![Sample::new(now, 1.0)],
    };
    let r = store
        .append(batch(vec![
            too_many,
            no_name,
            series(
                "ok",
                "a",
                &[
                    (now - 8 * 24 * 3_600_000, 1.0),
                    (now, 1.0),
                    (now + 3_600_000, 1.0),
                ],
            ),
            series("bad-name", "a", &[(now, 1.0)]),
        ]))
        .await
        .unwrap();
    assert_eq!(r.accepted_samples, 1);
    assert_eq!(
        r.rejected_samples.get(&RejectReason::TooManyLabels),
        Some(&2)
    );
    assert_eq!(
        r.rejected_samples.get(&RejectReason::MissingMetricName),
        Some(&1)
    );
    assert_eq!(r.rejected_samples.get(&RejectReason::TooOld), Some(&1));
    assert_eq!(
        r.rejected_samples.get(&RejectReason::TooFarInFuture),
        Some(&1)
    );
    assert_eq!(
        r.rejected_samples.get(&RejectReason::InvalidLabelName),
        Some(&1)
    );
    assert!(r
        .first_rejection
        .as_deref()
        .is_some_and(|m| m.contains("max_labels_per_series (3)")));
    // rejected series never enter the head
    assert_eq!(store.stats().series, 1);
    store.close().await.unwrap();
}

#[tokio::test]
async fn flush_then_query_across_block_and_head() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let t0 = base();
    let first: Vec<(i64, f64)> = (0..300).map(|i| (t0 + i * 10_000, i as f64)).collect();
    store
        .append(batch(vec![
            series("m", "a", &first),
            series("m", "b", &first[..5]),
        ]))
        .await
        .unwrap();
    store.flush().await.unwrap();
    let s = store.stats();
    assert_eq!((s.blocks, s.block_samples, s.head_samples), (1, 305, 0));
    assert!(s.block_bytes > 0);
    let second: Vec<(i64, f64)> = (300..350).map(|i| (t0 + i * 10_000, i as f64)).collect();
    let r = store
        .append(batch(vec![series("m", "a", &second)]))
        .await
        .unwrap();
    assert_eq!(r.accepted_samples, 50);
    // order is still enforced against what went into the block
    let r = store
        .append(batch(vec![series(
            "m",
            "b",
            &[(t0, 7.0), (t0 + 40_000, 7.0), (t0 + 40_000, 4.0)],
        )]))
        .await
        .unwrap();
    assert_eq!(r.rejected_samples.get(&RejectReason::OutOfOrder), Some(&1));
    assert_eq!(
        r.rejected_samples.get(&RejectReason::DuplicateTimestamp),
        Some(&1)
    );
    assert_eq!(r.duplicate_samples, 1);

    let got = all_samples(&store, "m");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].samples.len(), 350);
    assert!(got[0]
        .samples
        .iter()
        .enumerate()
        .all(|(i, s)| s.value == i as f64));
    assert_eq!(got[1].samples.len(), 5);
    let mid = store
        .select(&[eq("job", "a")], t0 + 295 * 10_000, t0 + 304 * 10_000)
        .unwrap();
    assert_eq!(mid[0].samples.len(), 10);
    // lazy selection reads the same samples from block and head, through one bounded cache
    // shared by the series, as query code reads them
    for (mint, maxt) in [(i64::MIN, i64::MAX), (t0 + 295 * 10_000, t0 + 304 * 10_000)] {
        let eager = store.select(&[eq("__name__", "m")], mint, maxt).unwrap();
        let lazy = store
            .select_lazy(&[eq("__name__", "m")], mint, maxt)
            .unwrap();
        let mut cache = ReadCache::new();
        let mut buf = Vec::new();
        let read: Vec<Series> = lazy
            .iter()
            .map(|s| s.to_series(&mut cache, &mut buf).unwrap())
            .collect();
        assert_eq!(read, eager);
    }
    // the covered WAL segments are gone
    assert!(
        store.wal.segments().len() <= 2,
        "{:?}",
        store.wal.segments()
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn restart_without_close_keeps_acknowledged_samples() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = base();
    {
        let store = open_store(dir.path());
        for i in 0..20 {
            let r = store
                .append(batch(vec![
                    series("m", "a", &[(t0 + i * 1000, i as f64)]),
                    series("m", &format!("s{i}"), &[(t0, 1.0)]),
                ]))
                .await
                .unwrap();
            assert_eq!(r.accepted_samples, 2);
            if i == 10 {
                store.flush().await.unwrap();
            }
        }
        drop(store); // no close: as after a kill, only what is in the WAL and blocks survives
    }
    let store = open_store(dir.path());
    let got = store.select(&[eq("job", "a")], i64::MIN, i64::MAX).unwrap();
    assert_eq!(got[0].samples.len(), 20);
    assert!(got[0]
        .samples
        .iter()
        .enumerate()
        .all(|(i, s)| s.value == i as f64));
    assert_eq!(all_samples(&store, "m").len(), 21);
    // the newest timestamp survived the restart
    let r = store
        .append(batch(vec![
            series("m", "a", &[(t0, 5.0)]),
            series("m", "s3", &[(t0, 1.0)]),
        ]))
        .await
        .unwrap();
    assert_eq!(
        r.rejected_samples.get(&RejectReason::OutOfOrder),
        Some(&1),
        "{r:?}"
    );
    assert_eq!(r.duplicate_samples, 1);
    // a second restart after appending more still has everything
    store
        .append(batch(vec![series("m", "a", &[(t0 + 50_000, 50.0)])]))
        .await
        .unwrap();
    drop(store);
    let store = open_store(dir.path());
    let got = store.select(&[eq("job", "a")], i64::MIN, i64::MAX).unwrap();
    assert_eq!(got[0].samples.len(), 21);
    store.close().await.unwrap();
}

#[tokio::test]
async fn crash_between_block_write_and_wal_removal_does_not_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = base();
    let wal_dir = dir.path().join("wal");
    let saved = dir.path().join("wal-saved");
    {
        let store = open_store(dir.path());
        let samples: Vec<(i64, f64)> = (0..100).map(|i| (t0 + i * 1000, i as f64)).collect();
        store
            .append(batch(vec![series("m", "a", &samples)]))
            .await
            .unwrap();
        std::fs::create_dir_all(&saved).unwrap();
        for e in std::fs::read_dir(&wal_dir).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), saved.join(e.file_name())).unwrap();
        }
        store.flush().await.unwrap();
        drop(store);
    }
    // put the deleted segments back and forget the sled record: the state right after the
    // block rename, before the WAL cleanup
    for e in std::fs::read_dir(&saved).unwrap() {
        let e = e.unwrap();
        let target = wal_dir.join(e.file_name());
        if !target.exists() {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
    {
        let db = sled::open(dir.path().join("meta.sled")).unwrap();
        db.open_tree(STATE_TREE)
            .unwrap()
            .remove(STATE_WAL_COVERED)
            .unwrap();
        db.flush().unwrap();
    }
    let store = open_store(dir.path());
    assert_eq!(
        store.stats().head_samples,
        0,
        "covered segments must not be replayed"
    );
    let got = all_samples(&store, "m");
    assert_eq!(got[0].samples.len(), 100);
    assert!(
        store.wal.segments().iter().all(|&s| s > 1),
        "{:?}",
        store.wal.segments()
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn retention_deletes_old_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.retention = Duration::from_secs(3600);
    let store = MetricsStore::open(o).unwrap();
    let old = now_ms() - 3 * 3_600_000;
    store
        .append(batch(vec![series("m", "old", &[(old, 1.0)])]))
        .await
        .unwrap();
    store.flush().await.unwrap();
    store
        .append(batch(vec![series("m", "new", &[(now_ms(), 1.0)])]))
        .await
        .unwrap();
    store.flush().await.unwrap();
    assert_eq!(store.stats().blocks, 2);
    assert_eq!(store.apply_retention().await.unwrap(), 1);
    assert_eq!(store.stats().blocks, 1);
    let got = all_samples(&store, "m");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].labels.get("job"), Some("new"));
    let left = std::fs::read_dir(dir.path().join("blocks"))
        .unwrap()
        .count();
    assert_eq!(left, 1);
    store.close().await.unwrap();
}

#[tokio::test]
async fn closed_store_refuses_appends_and_background_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.flush_interval = Duration::from_millis(20);
    let store = MetricsStore::open(o).unwrap();
    let bg = store.spawn_background();
    store
        .append(batch(vec![series("m", "a", &[(now_ms(), 1.0)])]))
        .await
        .unwrap();
    for _ in 0..100 {
        if store.stats().blocks > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.stats().blocks, 1, "background flush wrote a block");
    store.close().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), bg)
        .await
        .unwrap()
        .unwrap();
    let err = store
        .append(batch(vec![series("m", "a", &[(now_ms(), 1.0)])]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders_replay_in_apply_order() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = base();
    let store = open_store(dir.path());
    let mut tasks = Vec::new();
    for w in 0..8i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0;
            for i in 0..50i64 {
                // every writer hits the shared series; only increasing timestamps get in
                let t = t0 + i * 100 + w;
                let r = store
                    .append(batch(vec![
                        series("shared", "x", &[(t, w as f64)]),
                        series("own", &w.to_string(), &[(t, 1.0)]),
                    ]))
                    .await
                    .unwrap();
                accepted += r.accepted_samples;
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.unwrap();
    }
    let before: Vec<Series> = store.select(&[], i64::MIN, i64::MAX).unwrap();
    let total: usize = before.iter().map(|s| s.samples.len()).sum();
    assert_eq!(total as u64, accepted);
    drop(store);
    let store = open_store(dir.path());
    let after = store.select(&[], i64::MIN, i64::MAX).unwrap();
    assert_eq!(before, after);
    store.close().await.unwrap();
}

/// User + system CPU seconds of this process so far.
type RawInput<'a> = Vec<(Vec<(&'a str, &'a str)>, Vec<(i64, f64)>)>;

/// The same request as a [`MetricBatch`] (labels through `Labels::new`) and as a
/// [`RawMetricBatch`] (labels pushed as given).
fn both_forms(input: &RawInput<'_>) -> (MetricBatch, RawMetricBatch) {
    let mut raw = RawMetricBatch::default();
    let mut owned = MetricBatch::default();
    for (labels, samples) in input {
        for (n, v) in labels {
            raw.push_label_str(n, v).unwrap();
        }
        for &(t, v) in samples {
            raw.push_sample(Sample::new(t, v));
        }
        raw.finish_series().unwrap();
        if !samples.is_empty() {
            owned.series.push(Series {
                labels: Labels::from_pairs(labels.iter().copied()),
                samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
            });
        }
    }
    (owned, raw)
}

fn everything(store: &MetricsStore) -> Vec<(Labels, Vec<(i64, u64)>)> {
    let m = LabelMatcher::new("__name__", MatchOp::RegexMatch, ".+").unwrap();
    store
        .select(&[m], i64::MIN, i64::MAX)
        .unwrap()
        .into_iter()
        .map(|s| {
            let samples = s
                .samples
                .iter()
                .map(|x| (x.timestamp_ms, x.value.to_bits()))
                .collect();
            (s.labels, samples)
        })
        .collect()
}

#[tokio::test]
async fn append_raw_matches_append() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let limits = Limits {
        max_labels_per_series: 4,
        max_label_name_length: 12,
        max_label_value_length: 8,
        ..Limits::default()
    };
    let open = |d: &Path| {
        let mut o = opts(d);
        o.limits = limits.clone();
        MetricsStore::open(o).unwrap()
    };
    let (a, b) = (open(dir_a.path()), open(dir_b.path()));
    let now = now_ms();
    let old = now - 8 * 24 * 3_600_000;
    let stale = stale_nan();
    let long_value = "v".repeat(9);
    let requests: Vec<RawInput<'_>> = vec![
        vec![
            (
                vec![("__name__", "up"), ("job", "a")],
                vec![(now - 20, 1.0), (now - 10, 2.0)],
            ),
            // unsorted, duplicate name (last wins), empty value (dropped)
            (
                vec![("job", "x"), ("__name__", "m"), ("job", "b"), ("e", "")],
                vec![(now - 20, 1.0)],
            ),
            (vec![("__name__", "no_samples")], vec![]),
            (vec![("job", "no_name")], vec![(now, 1.0)]),
            (vec![("__name__", "bad-name")], vec![(now, 1.0)]),
            (
                vec![("__name__", "x"), ("bad.label", "1")],
                vec![(now, 1.0)],
            ),
            (
                vec![
                    ("__name__", "x"),
                    ("a", "1"),
                    ("b", "2"),
                    ("c", "3"),
                    ("d", "4"),
                ],
                vec![(now, 1.0), (now + 1, 1.0)],
            ),
            (
                vec![("__name__", "x"), ("much_too_long_name", "1")],
                vec![(now, 1.0)],
            ),
            (
                vec![("__name__", "x"), ("v", long_value.as_str())],
                vec![(now, 1.0)],
            ),
            (
                vec![("__name__", "aged")],
                vec![(old, 1.0), (now + 3_600_000, 1.0)],
            ),
            (
                vec![("__name__", "mixed")],
                vec![(old, 1.0), (now - 5, 3.0), (now + 3_600_000, 1.0)],
            ),
        ],
        vec![
            // known series: in order, out of order, duplicate, duplicate timestamp, stale
            (
                vec![("__name__", "up"), ("job", "a")],
                vec![
                    (now - 10, 2.0),
                    (now - 15, 1.0),
                    (now - 10, 5.0),
                    (now, stale),
                ],
            ),
            (
                vec![("job", "b"), ("__name__", "m")],
                vec![(now - 20, 1.0), (now - 1, 7.0)],
            ),
            (vec![("__name__", "mixed")], vec![(old, 1.0)]),
        ],
        vec![(
            vec![("__name__", "up"), ("job", "a")],
            vec![(now - 30, 1.0)],
        )],
    ];
    for (i, req) in requests.iter().enumerate() {
        let (owned, raw) = both_forms(req);
        let ra = a.append(owned.clone()).await.unwrap();
        let rb = b.append_raw(raw.clone()).await.unwrap();
        assert_eq!(ra, rb, "request {i}");
        // the default method (conversion) gives the same batch as the owned form
        let bits = |b: MetricBatch| -> Vec<(Labels, Vec<(i64, u64)>)> {
            b.series
                .into_iter()
                .map(|s| {
                    let v = s
                        .samples
                        .iter()
                        .map(|x| (x.timestamp_ms, x.value.to_bits()));
                    (s.labels, v.collect())
                })
                .collect()
        };
        assert_eq!(bits(raw.into_metric_batch()), bits(owned), "request {i}");
    }
    let stored = everything(&a);
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert_eq!(stored, everything(&b));
    assert_eq!(a.stats().series, b.stats().series);
    // what append_raw logged replays to the same head
    drop(b);
    let b = open(dir_b.path());
    assert_eq!(everything(&b), stored);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // fields after the command name start at "state" (field 3): utime is 14, stime 15
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Micro-benchmark, run by hand:
/// `cargo test --release -p lookout-store --lib bench_append -- --ignored --nocapture`.
/// 100k series (10 labels each), 10 s interval, value kinds as in `bench/`; `BENCH_SERIES`
/// and `BENCH_ROUNDS` (samples per series) change the size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_append() {
    use rand::{Rng, SeedableRng};
    let series_n: usize = std::env::var("BENCH_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rounds: i64 = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.fsync = FsyncPolicy::Never;
    let store = MetricsStore::open(o).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let labels: Vec<Labels> = (0..series_n)
        .map(|i| {
            let name = if i % 2 == 0 {
                "http_requests_total"
            } else {
                "process_resident_memory_bytes"
            };
            let inst = format!("10.1.{}.{}:9100", (i / 1000) % 256, i % 250);
            let pod = format!("api-{}-{:x}", i / 100, i * 7919);
            let method = ["GET", "POST", "PUT"][i % 3];
            let code = ["200", "404", "500", "503"][(i / 3) % 4];
            Labels::from_pairs([
                ("__name__", name),
                ("job", "api"),
                ("instance", &inst),
                ("pod", &pod),
                ("namespace", "prod"),
                ("cluster", "eu-1"),
                ("method", method),
                ("code", code),
                ("handler", &format!("/v1/h{}", i % 50)),
                ("service", &format!("svc-{}", i % 20)),
            ])
        })
        .collect();
    let mut values: Vec<f64> = (0..series_n)
        .map(|_| rng.random_range(0.0..1000.0f64).round())
        .collect();
    let start_t = now_ms() - rounds * 10_000 - 60_000;
    let rss0 = rss_bytes();
    let mut append_time = Duration::ZERO;
    let mut append_cpu = 0.0;
    let per_batch = 10_000;
    for round in 0..rounds {
        let t = start_t + round * 10_000;
        for chunk_start in (0..series_n).step_by(per_batch) {
            let end = (chunk_start + per_batch).min(series_n);
            let mut series = Vec::with_capacity(end - chunk_start);
            for i in chunk_start..end {
                // value kinds as in the bench generator: integer and 0.01 s counters, page-sized
                // byte gauges, full-precision float gauges, small integer gauges, constants
                let u: f64 = rng.random();
                let rate = 10f64.powi((i % 5) as i32 - 2);
                values[i] = match i % 6 {
                    0 => values[i] + (rate * 10.0 * (0.5 + u)).round(),
                    1 => ((values[i] + rate * 10.0 * (0.8 + 0.4 * u)) * 100.0).round() / 100.0,
                    2 => {
                        ((values[i] * (1.0 + 0.002 * (u - 0.5))) / 4096.0)
                            .round()
                            .max(1.0)
                            * 4096.0
                    }
                    3 => (values[i] * (1.0 + 0.2 * (u - 0.5))).max(1e-6),
                    4 => (values[i] + (u * 5.0).floor() - 2.0).max(1.0),
                    _ => values[i],
                };
                series.push(crate::model::Series {
                    labels: labels[i].clone(),
                    samples: vec![Sample::new(t + (i as i64 % 1000), values[i])],
                });
            }
            let b = batch(series);
            let started = Instant::now();
            let cpu = cpu_seconds();
            let r = store.append(b).await.unwrap();
            append_time += started.elapsed();
            append_cpu += cpu_seconds() - cpu;
            assert_eq!(r.accepted_samples as usize, end - chunk_start);
        }
    }
    let total = series_n as u64 * rounds as u64;
    let stats = store.stats();
    let rss1 = rss_bytes();
    println!(
        "appended {total} samples in {:.2}s wall, {:.2}s cpu: {:.0} samples/cpu-second \
         (includes dropping the batches' labels; fsync never)",
        append_time.as_secs_f64(),
        append_cpu,
        total as f64 / append_cpu.max(1e-9)
    );
    println!(
        "head: {} series, {:.0} bytes/series accounted, rss growth {:.0} bytes/series",
        stats.series,
        stats.head_bytes as f64 / stats.series as f64,
        rss1.saturating_sub(rss0) as f64 / stats.series as f64
    );
    let started = Instant::now();
    store.flush().await.unwrap();
    let stats = store.stats();
    println!(
        "flush {:.2}s: {} bytes for {} samples = {:.3} bytes/sample",
        started.elapsed().as_secs_f64(),
        stats.block_bytes,
        stats.block_samples,
        stats.block_bytes as f64 / stats.block_samples as f64
    );
    let started = Instant::now();
    let got = store
        .select(
            &[eq("code", "500"), eq("method", "GET")],
            i64::MIN,
            i64::MAX,
        )
        .unwrap();
    println!(
        "select {} series from the block in {:.3}s",
        got.len(),
        started.elapsed().as_secs_f64()
    );
    store.close().await.unwrap();
}

/// `n` series of `per` samples 10 s apart from `t0`, full-precision float values (about
/// 9 bytes per sample in XOR), so head chunks fill the chunk file's write buffer quickly.
fn float_batch(n: usize, per: i64, t0: i64, from: i64) -> MetricBatch {
    let series = (0..n)
        .map(|s| crate::model::Series {
            labels: Labels::from_pairs([("__name__", "f"), ("job", &format!("j{s}"))]),
            samples: (from..from + per)
                .map(|i| Sample::new(t0 + i * 10_000, float_value(s, i)))
                .collect(),
        })
        .collect();
    batch(series)
}

fn float_value(s: usize, i: i64) -> f64 {
    ((s as f64) * 1.37 + (i as f64) * 0.71).sin() * 1e6
}

/// Every sample of the `f` series, checked against [`float_value`], exactly once each.
fn check_floats(store: &MetricsStore, n: usize, total: i64, t0: i64) {
    let got = all_samples(store, "f");
    assert_eq!(got.len(), n);
    for s in &got {
        let j: usize = s.labels.get("job").unwrap()[1..].parse().unwrap();
        assert_eq!(s.samples.len() as i64, total, "series j{j}");
        for (i, x) in s.samples.iter().enumerate() {
            assert_eq!(x.timestamp_ms, t0 + i as i64 * 10_000);
            assert_eq!(x.value.to_bits(), float_value(j, i as i64).to_bits());
        }
    }
}

fn chunk_files(dir: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = std::fs::read_dir(dir.join("chunks_head"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn closed_head_chunks_are_read_back_from_buffer_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let t0 = base() - 7_200_000;
    // 5 series x 300 samples: two closed chunks each, all still in the write buffer
    store.append(float_batch(5, 300, t0, 0)).await.unwrap();
    assert_eq!(chunk_files(dir.path()), vec![("00000001".to_string(), 0)]);
    assert!(store.head.read().chunk_file_bytes() > 0);
    check_floats(&store, 5, 300, t0);
    // enough closed chunks (about 1.1 MiB) to write the buffer out
    store.append(float_batch(200, 800, t0, 0)).await.unwrap();
    let files = chunk_files(dir.path());
    assert!(files[0].1 > 0, "{files:?}");
    check_floats(&store, 200, 800, t0);
    let part = store
        .select(&[eq("job", "j3")], t0 + 400_000, t0 + 2_000_000)
        .unwrap();
    assert_eq!(part[0].samples.len(), 161);
    store.close().await.unwrap();
}

#[tokio::test]
async fn head_chunk_files_survive_flush_restart_and_kill() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = base() - 7_200_000;
    {
        let store = open_store(dir.path());
        store.append(float_batch(200, 400, t0, 0)).await.unwrap();
        store.flush().await.unwrap();
        // the flushed generation's file is gone, the next one is in use
        assert_eq!(
            chunk_files(dir.path())
                .into_iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>(),
            vec!["00000002".to_string()]
        );
        store.append(float_batch(200, 400, t0, 400)).await.unwrap();
        check_floats(&store, 200, 800, t0);
        drop(store); // a kill: no close
    }
    let store = open_store(dir.path());
    // the stale file of the killed run was removed; replay wrote a new generation 1
    let names: Vec<String> = chunk_files(dir.path())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, vec!["00000001".to_string()]);
    check_floats(&store, 200, 800, t0);
    store.append(float_batch(200, 10, t0, 800)).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    let store = open_store(dir.path());
    check_floats(&store, 200, 810, t0);
    store.close().await.unwrap();
}

#[tokio::test]
async fn head_chunk_io_errors_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    // a file where the chunk directory should be: open fails cleanly
    std::fs::write(dir.path().join("chunks_head"), b"x").unwrap();
    assert!(matches!(
        MetricsStore::open(opts(dir.path())),
        Err(StoreError::Io { .. })
    ));
    std::fs::remove_file(dir.path().join("chunks_head")).unwrap();

    let store = open_store(dir.path());
    let t0 = base() - 7_200_000;
    store.append(float_batch(200, 800, t0, 0)).await.unwrap();
    // the written part of the file disappears under the head: queries fail, no panic
    let path = dir.path().join("chunks_head").join("00000001");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    let err = store
        .select(&[eq("__name__", "f")], i64::MIN, i64::MAX)
        .unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    // the flush cannot read them either: it fails and keeps the head
    assert!(store.flush().await.is_err());
    drop(store);
    // the WAL has everything: a restart rebuilds the head and the chunk file
    let store = open_store(dir.path());
    check_floats(&store, 200, 800, t0);
    store.close().await.unwrap();
}

/// An identical re-send must not be acknowledged ahead of the first copy's durability: it is
/// logged again (so its ack waits for a WAL write behind the first copy's), and replay keeps
/// the sample once.
#[tokio::test]
async fn duplicate_resends_are_logged_and_replayed_once() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = base();
    {
        let store = open_store(dir.path());
        store
            .append(batch(vec![series("m", "a", &[(t0, 1.0)])]))
            .await
            .unwrap();
        let wal_before = store.stats().wal_bytes;
        let r = store
            .append(batch(vec![series("m", "a", &[(t0, 1.0)])]))
            .await
            .unwrap();
        assert_eq!(r.duplicate_samples, 1);
        assert!(
            store.stats().wal_bytes > wal_before,
            "the duplicate was acknowledged without a WAL write"
        );
        drop(store); // a kill: no close
    }
    let store = open_store(dir.path());
    let got = store.select(&[eq("job", "a")], i64::MIN, i64::MAX).unwrap();
    assert_eq!(got[0].samples, vec![Sample::new(t0, 1.0)]);
    store.close().await.unwrap();
}

/// Freezing and dumping walk every series under the head write lock; that must happen on a
/// blocking thread, not on the runtime. Here another thread holds the head lock until the
/// test task tells it to let go: if flush took the lock on the (single) runtime thread, the
/// test task could never run to send that signal and the holder gives up by timeout.
#[tokio::test]
async fn flush_takes_the_head_lock_off_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let t0 = base();
    store
        .append(batch(vec![series("up", "api", &[(t0, 1.0)])]))
        .await
        .unwrap();

    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            let _head = store.head.write();
            locked_tx.send(()).unwrap();
            // true: released by the test task, which means the runtime kept running
            release_rx.recv_timeout(Duration::from_secs(5)).is_ok()
        })
    };
    locked_rx.recv().unwrap();
    let flushing = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.flush().await })
    };
    // lets the flush task run up to where it waits for the head lock
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = release_tx.send(());
    assert!(
        holder.join().unwrap(),
        "flush blocked the runtime thread waiting for the head lock"
    );
    flushing.await.unwrap().unwrap();
    assert_eq!(store.stats().blocks, 1);
    assert_eq!(all_samples(&store, "up")[0].samples.len(), 1);
}

/// A record that passed its checksum but does not decode must not keep the store from
/// opening: it and the rest of its segment are skipped and counted, earlier segments replay.
#[tokio::test]
async fn undecodable_wal_record_skips_the_rest_of_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = base();
    {
        let store = open_store(dir.path());
        store
            .append(batch(vec![series(
                "m",
                "a",
                &[(t0, 1.0), (t0 + 1000, 2.0)],
            )]))
            .await
            .unwrap();
        drop(store);
    }
    {
        let wal = Wal::open(
            WalOptions {
                dir: dir.path().join("wal"),
                fsync: FsyncPolicy::Always,
                segment_size_bytes: WAL_SEGMENT_BYTES,
                max_pending_appends: 16,
            },
            |_, _| Ok(()),
        )
        .unwrap();
        // a series record whose body is shorter than its length says
        wal.append(vec![1, 200, 1]).await.unwrap();
        let mut after = PayloadBuilder::default();
        after.add_series(7, [("__name__", "later"), ("job", "a")].into_iter());
        after.add_sample(7, t0, 3.0);
        wal.append(after.finish()).await.unwrap();
        wal.close().await.unwrap();
    }
    let skipped = metrics::WAL_RECORDS_SKIPPED.get();
    let store = open_store(dir.path());
    assert_eq!(metrics::WAL_RECORDS_SKIPPED.get() - skipped, 2);
    assert_eq!(all_samples(&store, "m")[0].samples.len(), 2);
    assert!(all_samples(&store, "later").is_empty());
    store
        .append(batch(vec![series("m", "a", &[(t0 + 2000, 3.0)])]))
        .await
        .unwrap();
    store.close().await.unwrap();
}

/// A damaged block still refuses the start, with an error naming the block directory and
/// how to start without it.
#[tokio::test]
async fn damaged_block_refuses_open_and_says_how_to_move_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_store(dir.path());
        store
            .append(batch(vec![series("m", "a", &[(base(), 1.0)])]))
            .await
            .unwrap();
        store.close().await.unwrap();
    }
    let block_dir = std::fs::read_dir(dir.path().join("blocks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let index = block_dir.join("index");
    let mut bytes = std::fs::read(&index).unwrap();
    bytes[6] ^= 0xff;
    std::fs::write(&index, bytes).unwrap();
    let err = MetricsStore::open(opts(dir.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(&block_dir.display().to_string()), "{err}");
    assert!(err.contains("index checksum mismatch"), "{err}");
    assert!(err.contains("mv "), "{err}");
}

// ---- the archive tier ----------------------------------------------------------------

fn archive_opts(dir: &Path, keep_for: Duration) -> MetricsStoreOptions {
    let archive =
        crate::archive::Archive::open(&crate::archive::ArchiveLocation::Local(dir.join("archive")))
            .unwrap();
    let mut o = opts(&dir.join("metrics"));
    o.retention = Duration::from_secs(3600);
    o.archive = Some(crate::config::ArchiveTier { archive, keep_for });
    o
}

/// Two series with a sample a minute from 5 h to 2 h ago (one block, past the 1 h warm
/// window), and one recent sample in a second block.
async fn old_and_new_blocks(store: &MetricsStore) -> i64 {
    let start = (now_ms() - 5 * 3_600_000) / 60_000 * 60_000;
    for job in ["a", "b"] {
        let samples: Vec<(i64, f64)> = (0..180)
            .map(|i| {
                (
                    start + i * 60_000,
                    i as f64 + if job == "a" { 0.5 } else { 0.0 },
                )
            })
            .collect();
        store
            .append(batch(vec![series("m", job, &samples)]))
            .await
            .unwrap();
    }
    store.flush().await.unwrap();
    store
        .append(batch(vec![series("m", "a", &[(now_ms(), 7.0)])]))
        .await
        .unwrap();
    store.flush().await.unwrap();
    start
}

fn archive_files_on_disk(dir: &Path) -> Vec<String> {
    fn walk(p: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() {
                walk(&e, out);
            } else if e.extension().is_some_and(|x| x == "parquet") {
                out.push(e.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    let archive = dir.join("archive");
    if archive.exists() {
        walk(&archive, &mut out);
    }
    out.sort();
    out
}

#[tokio::test]
async fn old_blocks_move_to_the_archive_and_queries_read_them_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetricsStore::open(archive_opts(dir.path(), Duration::from_secs(86_400))).unwrap();
    let start = old_and_new_blocks(&store).await;
    let before = all_samples(&store, "m");
    let before_b = store
        .select(&[eq("job", "b")], start + 3_600_000, start + 7_200_000)
        .unwrap();
    let names_before = store.label_values("job", &[], i64::MIN, i64::MAX).unwrap();
    assert_eq!(store.archive_files(i64::MIN, i64::MAX), 0);

    assert_eq!(store.move_old_data().await.unwrap(), 1);
    let stats = store.stats();
    assert_eq!(stats.blocks, 1);
    // 180 minutes from a minute boundary span 3 or 4 UTC hours: one file each
    assert!((3..=4).contains(&stats.archive_files), "{stats:?}");
    assert_eq!(stats.archive_samples, 360);
    // the rollups: one file per resolution and UTC day
    assert!((2..=4).contains(&stats.rollup_files), "{stats:?}");
    let on_disk = archive_files_on_disk(dir.path());
    assert_eq!(
        on_disk.len() as u64,
        stats.archive_files + stats.rollup_files
    );
    assert!(on_disk.iter().any(|p| p.contains("/metrics/date=")));
    assert!(on_disk.iter().any(|p| p.contains("/metrics-5m/date=")));

    assert_eq!(all_samples(&store, "m"), before);
    assert_eq!(
        store
            .select(&[eq("job", "b")], start + 3_600_000, start + 7_200_000)
            .unwrap(),
        before_b
    );
    assert_eq!(
        store.label_values("job", &[], i64::MIN, i64::MAX).unwrap(),
        names_before
    );
    assert_eq!(
        store
            .series(&[vec![eq("job", "b")]], i64::MIN, i64::MAX)
            .unwrap()
            .len(),
        1
    );
    let lazy = store
        .select_lazy(&[eq("__name__", "m")], i64::MIN, i64::MAX)
        .unwrap();
    let mut cache = ReadCache::new();
    for (l, s) in lazy.into_iter().zip(&before) {
        assert_eq!(l.labels, s.labels);
        let mut buf = Vec::new();
        assert_eq!(l.load(&mut cache, &mut buf).unwrap(), s.samples.as_slice());
    }
    assert!(store.archive_files(start, start + 60_000) >= 1);
    assert_eq!(store.archive_files(now_ms() - 60_000, now_ms()), 0);

    // a second pass has nothing to do; a restart reads the same
    assert_eq!(store.move_old_data().await.unwrap(), 0);
    store.close().await.unwrap();
    drop(store);
    let store = MetricsStore::open(archive_opts(dir.path(), Duration::from_secs(86_400))).unwrap();
    assert_eq!(all_samples(&store, "m"), before);
    store.close().await.unwrap();
}

/// A store with an archive, an old block (the first) and a new one, and what it holds.
async fn store_with_old_block(
    dir: &Path,
) -> (
    Arc<MetricsStore>,
    Vec<Series>,
    crate::config::ArchiveTier,
    Arc<Block>,
) {
    let store = MetricsStore::open(archive_opts(dir, Duration::from_secs(86_400))).unwrap();
    old_and_new_blocks(&store).await;
    let before = all_samples(&store, "m");
    let tier = store.options.archive.clone().unwrap();
    let old = store.blocks.read()[0].clone();
    (store, before, tier, old)
}

#[tokio::test]
async fn a_move_killed_after_its_manifest_step_is_finished_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (store, before, tier, old) = store_with_old_block(dir.path()).await;
    let files = store.write_block_files(&tier.archive, &old).await.unwrap();
    tier.archive.edit_manifest(|m| m.add(files)).await.unwrap();
    // both copies are visible now: queries still show each sample once
    assert_eq!(all_samples(&store, "m"), before);
    drop(store); // the kill: no close, the block stays on disk

    let store = open_archive_store_retrying(dir.path());
    assert_eq!(
        store.stats().blocks,
        1,
        "the archived block's local copy is gone"
    );
    assert!(!dir
        .path()
        .join("metrics/blocks")
        .join(&old.meta.id)
        .exists());
    assert_eq!(all_samples(&store, "m"), before);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_move_killed_before_its_manifest_step_is_redone_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let (store, before, tier, old) = store_with_old_block(dir.path()).await;
    let written = store.write_block_files(&tier.archive, &old).await.unwrap();
    // an unnamed file of a block that no longer exists: a sweep deletes it
    tier.archive
        .put_verified(
            "metrics/date=2000-01-01/hour=00/part-gone.parquet",
            bytes::Bytes::from_static(b"x"),
        )
        .await
        .unwrap();
    drop(store);

    let store = open_archive_store_retrying(dir.path());
    assert_eq!(
        store.stats().blocks,
        2,
        "unnamed files do not count: the block stays"
    );
    assert_eq!(store.stats().archive_files, 0);
    assert_eq!(all_samples(&store, "m"), before);
    assert_eq!(store.move_old_data().await.unwrap(), 1);
    let on_disk = archive_files_on_disk(dir.path());
    assert_eq!(
        on_disk.len(),
        written.len(),
        "same names, written again: {on_disk:?}"
    );
    assert_eq!(all_samples(&store, "m"), before);
    store.close().await.unwrap();
}

/// A rollup selection's series, loaded, and the files it read.
fn loaded(selection: crate::contract::RollupSelection) -> (Vec<Series>, usize) {
    let mut cache = ReadCache::new();
    let mut buf = Vec::new();
    let series = selection
        .series
        .iter()
        .map(|s| s.to_series(&mut cache, &mut buf).unwrap())
        .collect();
    (series, selection.files)
}

#[tokio::test]
async fn coarse_selections_read_rollups_of_archived_data_then_raw_samples() {
    use crate::contract::RollupAggregate as Agg;
    let dir = tempfile::tempdir().unwrap();
    let store = MetricsStore::open(archive_opts(dir.path(), Duration::from_secs(86_400))).unwrap();
    let start = old_and_new_blocks(&store).await;
    let name = [eq("__name__", "m")];
    let select = |agg, res| {
        store
            .select_rollup(&name, i64::MIN, i64::MAX, res, agg)
            .unwrap()
            .map(loaded)
    };
    assert!(
        select(Agg::Count, 300_000).is_none(),
        "nothing archived: raw samples answer"
    );
    assert_eq!(store.move_old_data().await.unwrap(), 1);

    let (counts, files) = select(Agg::Count, 300_000).unwrap();
    assert!(files >= 1);
    let [a, b] = counts.as_slice() else {
        panic!("{counts:?}")
    };
    // a sample a minute for 180 minutes from a 5-minute boundary: 36 windows of 5, then
    // job a's one recent sample (not archived) as a window of one
    let start_window = start % 300_000 == 0;
    let total = |s: &Series| s.samples.iter().map(|p| p.value).sum::<f64>();
    assert_eq!((total(a), total(b)), (181.0, 180.0));
    if start_window {
        assert_eq!(b.samples.len(), 36);
        assert!(b.samples.iter().all(|p| p.value == 5.0));
        // each point stands at its window's last sample
        assert_eq!(b.samples[0].timestamp_ms, start + 4 * 60_000);
    }
    // b counts 0, 1, ..., 179; a counts 0.5 ... 179.5, then restarts at 7 (a reset)
    let counter = select(Agg::Counter, 300_000).unwrap().0;
    let last = |s: &Series| s.samples.last().unwrap().value;
    assert_eq!((last(&counter[0]), last(&counter[1])), (179.5 + 7.0, 179.0));
    assert!(counter[0]
        .samples
        .windows(2)
        .all(|w| w[1].value >= w[0].value));
    let max = select(Agg::Max, 3_600_000).unwrap().0;
    assert_eq!(last(&max[1]), 179.0);
    assert_eq!(
        max[0].samples.last().unwrap().value,
        7.0,
        "then the raw sample"
    );
    // a range with nothing archived has no rollups to read
    assert!(store
        .select_rollup(&name, now_ms() - 60_000, now_ms(), 300_000, Agg::Sum)
        .unwrap()
        .is_none());

    // and rollups survive a restart
    store.close().await.unwrap();
    drop(store);
    let store = MetricsStore::open(archive_opts(dir.path(), Duration::from_secs(86_400))).unwrap();
    let again = store
        .select_rollup(&name, i64::MIN, i64::MAX, 300_000, Agg::Count)
        .unwrap()
        .map(loaded)
        .unwrap();
    assert_eq!(again.0, counts);
    store.close().await.unwrap();
}

fn open_archive_store_retrying(dir: &Path) -> Arc<MetricsStore> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match MetricsStore::open(archive_opts(dir, Duration::from_secs(86_400))) {
            Ok(store) => return store,
            Err(e) if Instant::now() < deadline && e.to_string().contains("lock") => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("opening the store: {e}"),
        }
    }
}

#[tokio::test]
async fn archived_files_past_archive_for_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    // warm 1 h + archive 1 h: the block, newest sample 2 h ago, goes in and out at once
    let store = MetricsStore::open(archive_opts(dir.path(), Duration::from_secs(3600))).unwrap();
    old_and_new_blocks(&store).await;
    assert_eq!(store.move_old_data().await.unwrap(), 1);
    assert_eq!(store.stats().archive_files, 0);
    assert!(archive_files_on_disk(dir.path()).is_empty());
    let left = all_samples(&store, "m");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].samples.len(), 1);
    store.close().await.unwrap();
}
