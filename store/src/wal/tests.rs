//! Behaviour tests of the WAL against real files in a temporary directory.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::FsyncPolicy;

fn options(dir: &Path, fsync: FsyncPolicy) -> WalOptions {
    WalOptions {
        dir: dir.to_path_buf(),
        fsync,
        segment_size_bytes: 64 * 1024 * 1024,
        max_pending_appends: 10_000,
    }
}

/// Opens the WAL and returns it with every replayed record.
fn open_collect(opts: WalOptions) -> (Wal, Vec<(SegmentId, Vec<u8>)>) {
    let mut records = Vec::new();
    let wal = match Wal::open(opts, |id, p| {
        records.push((id, p.to_vec()));
        Ok(())
    }) {
        Ok(wal) => wal,
        Err(e) => panic!("opening the wal failed: {e}"),
    };
    (wal, records)
}

fn payloads(records: &[(SegmentId, Vec<u8>)]) -> Vec<Vec<u8>> {
    records.iter().map(|(_, p)| p.clone()).collect()
}

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("creating a temporary directory failed: {e}"),
    }
}

fn ok<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("wal operation failed: {e}"))
}

fn seg_file(dir: &Path, id: SegmentId) -> std::path::PathBuf {
    format::segment_path(dir, id)
}

fn disk_bytes(dir: &Path) -> u64 {
    ok(replay::list_segments(dir))
        .iter()
        .map(|id| {
            fs::metadata(seg_file(dir, *id))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum()
}

#[tokio::test]
async fn round_trip_replays_every_record_in_order() {
    let dir = tempdir();
    let (wal, replayed) = open_collect(options(dir.path(), FsyncPolicy::Always));
    assert!(replayed.is_empty());
    assert_eq!(ok(wal.append(b"one".to_vec()).await), 1);
    assert_eq!(ok(wal.append(b"two".to_vec()).await), 1);
    assert_eq!(ok(wal.append(vec![7u8; 100_000]).await), 1);
    assert_eq!(wal.size_bytes(), disk_bytes(dir.path()));
    ok(wal.close().await);
    drop(wal);

    let (wal, replayed) = open_collect(options(dir.path(), FsyncPolicy::Always));
    assert_eq!(
        replayed,
        vec![
            (1, b"one".to_vec()),
            (1, b"two".to_vec()),
            (1, vec![7u8; 100_000])
        ]
    );
    // Appends after a reopen go to a new segment.
    assert_eq!(ok(wal.append(b"three".to_vec()).await), 2);
    assert_eq!(wal.segments(), vec![1, 2]);
    ok(wal.close().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_under_concurrency_acks_everything_durably() {
    let dir = tempdir();
    let (wal, _) = open_collect(options(dir.path(), FsyncPolicy::Always));
    let wal = Arc::new(wal);
    let mut tasks = Vec::new();
    for t in 0..32u32 {
        let wal = Arc::clone(&wal);
        tasks.push(tokio::spawn(async move {
            for i in 0..25u32 {
                let payload = format!("task {t} record {i}").into_bytes();
                wal.append(payload).await?;
            }
            Ok::<_, StoreError>(())
        }));
    }
    for task in tasks {
        match task.await {
            Ok(r) => ok(r),
            Err(e) => panic!("append task panicked: {e}"),
        }
    }
    let appends = wal.shared.metrics.appends.get();
    let fsyncs = wal.shared.metrics.fsyncs.get();
    assert_eq!(appends, 800);
    assert!(
        fsyncs >= 1 && fsyncs <= appends,
        "fsyncs {fsyncs} for {appends} appends"
    );
    ok(wal.close().await);
    drop(wal);

    let (_wal, replayed) = open_collect(options(dir.path(), FsyncPolicy::Always));
    let mut got: Vec<String> = replayed
        .iter()
        .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
        .collect();
    got.sort();
    let mut want: Vec<String> = (0..32)
        .flat_map(|t| (0..25).map(move |i| format!("task {t} record {i}")))
        .collect();
    want.sort();
    assert_eq!(got, want);
    // Per task, records replay in the order they were acknowledged.
    for t in 0..32 {
        let prefix = format!("task {t} ");
        let seq: Vec<u32> = replayed
            .iter()
            .filter_map(|(_, p)| {
                let s = String::from_utf8_lossy(p);
                s.strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_prefix("record "))
                    .and_then(|n| n.parse().ok())
            })
            .collect();
        assert_eq!(seq, (0..25).collect::<Vec<_>>(), "task {t}");
    }
}

/// Writes three records into segment 1, lets `damage` spoil the file, and checks that replay
/// keeps the records before the damage, cuts the rest, and that the WAL works afterwards.
async fn check_torn_tail(damage: impl FnOnce(&Path), survivors: usize) {
    let dir = tempdir();
    let records: Vec<Vec<u8>> = vec![b"alpha".to_vec(), b"bravo".to_vec(), b"charlie".to_vec()];
    {
        let (wal, _) = open_collect(options(dir.path(), FsyncPolicy::Always));
        for r in &records {
            ok(wal.append(r.clone()).await);
        }
        ok(wal.close().await);
    }
    damage(&seg_file(dir.path(), 1));

    let (wal, replayed) = open_collect(options(dir.path(), FsyncPolicy::Always));
    assert_eq!(payloads(&replayed), records[..survivors].to_vec());
    assert_eq!(wal.shared.metrics.corruptions.get(), 1);
    assert_eq!(ok(wal.append(b"delta".to_vec()).await), 2);
    ok(wal.close().await);
    drop(wal);

    let (wal, replayed) = open_collect(options(dir.path(), FsyncPolicy::Always));
    let mut want = records[..survivors].to_vec();
    want.push(b"delta".to_vec());
    assert_eq!(payloads(&replayed), want);
    // The tail was cut the first time: nothing new to report.
    assert_eq!(wal.shared.metrics.corruptions.get(), 1);
    ok(wal.close().await);
}

#[tokio::test]
async fn torn_tail_truncated_mid_record() {
    check_torn_tail(
        |path| {
            let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let f = OpenOptions::new().write(true).open(path);
            ok(f.and_then(|f| f.set_len(len - 3))
                .map_err(|e| StoreError::io(path, e)));
        },
        2,
    )
    .await;
}

#[tokio::test]
async fn torn_tail_garbage_appended() {
    check_torn_tail(
        |path| {
            let f = OpenOptions::new().append(true).open(path);
            ok(
                f.and_then(|mut f| f.write_all(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7]))
                    .map_err(|e| StoreError::io(path, e)),
            );
        },
        3,
    )
    .await;
}

#[tokio::test]
async fn torn_tail_flipped_byte() {
    check_torn_tail(
        |path| {
            let mut bytes = ok(fs::read(path).map_err(|e| StoreError::io(path, e)));
            // Inside "bravo"'s payload: header, then "alpha" framed, then bravo's header.
            let at = (format::SEGMENT_HEADER_LEN + format::framed_len(5) + 8 + 2) as usize;
            bytes[at] ^= 0x01;
            ok(fs::write(path, bytes).map_err(|e| StoreError::io(path, e)));
        },
        1,
    )
    .await;
}

#[tokio::test]
async fn corruption_in_an_earlier_segment_skips_only_that_segment() {
    let dir = tempdir();
    {
        let (wal, _) = open_collect(options(dir.path(), FsyncPolicy::Always));
        ok(wal.append(b"a".to_vec()).await);
        ok(wal.append(b"b".to_vec()).await);
        assert_eq!(ok(wal.rotate().await), 1);
        ok(wal.append(b"c".to_vec()).await);
        ok(wal.close().await);
    }
    let path = seg_file(dir.path(), 1);
    let mut bytes = ok(fs::read(&path).map_err(|e| StoreError::io(&path, e)));
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    ok(fs::write(&path, bytes).map_err(|e| StoreError::io(&path, e)));

    let (wal, replayed) = open_collect(options(dir.path(), FsyncPolicy::Always));
    assert_eq!(replayed, vec![(1, b"a".to_vec()), (2, b"c".to_vec())]);
    assert_eq!(wal.shared.metrics.corruptions.get(), 1);
    ok(wal.close().await);
}

#[tokio::test]
async fn empty_and_header_only_last_segments_from_a_crashed_rotation() {
    let dir = tempdir();
    {
        let (wal, _) = open_collect(options(dir.path(), FsyncPolicy::Always));
        ok(wal.append(b"kept".to_vec()).await);
        ok(wal.close().await);
    }
    // Open created segment 2 as header-only; a crash mid-rotation leaves an empty segment 3.
    {
        let (wal, replayed) = open_collect(options(dir.path(), FsyncPolicy::Always));
        assert_eq!(payloads(&replayed), vec![b"kept".to_vec()]);
        ok(wal.close().await);
    }
    let empty = seg_file(dir.path(), 3);
    ok(fs::write(&empty, b"").map_err(|e| StoreError::io(&empty, e)));

    let (wal, replayed) = open_collect(options(dir.path(), FsyncPolicy::Always));
    assert_eq!(payloads(&replayed), vec![b"kept".to_vec()]);
    assert_eq!(wal.shared.metrics.corruptions.get(), 1);
    assert_eq!(ok(wal.append(b"after".to_vec()).await), 3);
    assert_eq!(wal.segments(), vec![1, 2, 3]);
    ok(wal.close().await);
}

#[tokio::test]
async fn rotate_and_remove_segments() {
    let dir = tempdir();
    let (wal, _) = open_collect(options(dir.path(), FsyncPolicy::Never));
    assert_eq!(ok(wal.append(b"first".to_vec()).await), 1);
    assert_eq!(ok(wal.rotate().await), 1);
    assert_eq!(ok(wal.append(b"second".to_vec()).await), 2);
    assert_eq!(ok(wal.rotate().await), 2);
    assert_eq!(ok(wal.append(b"third".to_vec()).await), 3);
    assert_eq!(wal.segments(), vec![1, 2, 3]);

    ok(wal.remove_segments_upto(1));
    assert_eq!(wal.segments(), vec![2, 3]);
    assert!(!seg_file(dir.path(), 1).exists());
    // The active segment survives any bound.
    ok(wal.remove_segments_upto(u64::MAX));
    assert_eq!(wal.segments(), vec![3]);
    assert_eq!(wal.size_bytes(), disk_bytes(dir.path()));
    ok(wal.close().await);
    drop(wal);

    let (_wal, replayed) = open_collect(options(dir.path(), FsyncPolicy::Never));
    assert_eq!(replayed, vec![(3, b"third".to_vec())]);
}

#[tokio::test]
async fn segments_roll_over_by_size() {
    let dir = tempdir();
    let mut opts = options(dir.path(), FsyncPolicy::Always);
    opts.segment_size_bytes = 100;
    let (wal, _) = open_collect(opts.clone());
    let mut ids = Vec::new();
    for i in 0..10u8 {
        ids.push(ok(wal.append(vec![i; 40]).await));
    }
    // 8 header + 48 per record: one record per segment fits under 100 bytes.
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    // A record bigger than a segment still goes in (alone).
    assert_eq!(ok(wal.append(vec![0xaa; 500]).await), 11);
    ok(wal.close().await);
    drop(wal);

    let (_wal, replayed) = open_collect(opts);
    let mut want: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 40]).collect();
    want.push(vec![0xaa; 500]);
    assert_eq!(payloads(&replayed), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_at_once() {
    let dir = tempdir();
    let mut opts = options(dir.path(), FsyncPolicy::Always);
    opts.max_pending_appends = 4;
    let (wal, _) = open_collect(opts);
    let wal = Arc::new(wal);
    // Holding the file table stalls the writer before it can answer anything.
    let stall = wal.shared.files.lock();
    let mut waiting = Vec::new();
    for i in 0..4u8 {
        waiting.push(ok(wal.enqueue_append(vec![i])));
    }
    match wal.enqueue_append(vec![9]) {
        Err(StoreError::Overloaded(msg)) => assert!(msg.contains("limit 4"), "{msg}"),
        Err(e) => panic!("expected overload, got {e}"),
        Ok(_) => panic!("expected overload, the append was queued"),
    }
    drop(stall);
    for rx in waiting {
        match rx.await {
            Ok(r) => assert_eq!(ok(r), 1),
            Err(e) => panic!("writer dropped an append: {e}"),
        }
    }
    // Capacity is back once the writer answered.
    ok(wal.append(vec![10]).await);
    ok(wal.close().await);
}

#[tokio::test]
async fn closed_wal_refuses_work_and_close_is_idempotent() {
    let dir = tempdir();
    let (wal, _) = open_collect(options(
        dir.path(),
        FsyncPolicy::Interval(Duration::from_secs(60)),
    ));
    ok(wal.append(b"before close".to_vec()).await);
    ok(wal.close().await);
    ok(wal.close().await);
    assert!(matches!(
        wal.append(b"late".to_vec()).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        wal.rotate().await,
        Err(StoreError::Unavailable(_))
    ));
    drop(wal);
    let (_wal, replayed) = open_collect(options(dir.path(), FsyncPolicy::Never));
    assert_eq!(payloads(&replayed), vec![b"before close".to_vec()]);
}

#[tokio::test]
async fn bad_payloads_are_rejected() {
    let dir = tempdir();
    let (wal, _) = open_collect(options(dir.path(), FsyncPolicy::Never));
    assert!(matches!(
        wal.append(Vec::new()).await,
        Err(StoreError::BadRequest(_))
    ));
    let huge = vec![0u8; MAX_RECORD_BYTES as usize + 1];
    assert!(matches!(
        wal.append(huge).await,
        Err(StoreError::BadRequest(_))
    ));
    ok(wal.close().await);
}

#[tokio::test]
async fn interval_policy_fsyncs_on_a_timer() {
    let dir = tempdir();
    let (wal, _) = open_collect(options(
        dir.path(),
        FsyncPolicy::Interval(Duration::from_millis(20)),
    ));
    ok(wal.append(b"x".to_vec()).await);
    let mut synced = false;
    for _ in 0..100 {
        if wal.shared.metrics.fsyncs.get() >= 1 {
            synced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(synced, "no fsync within a second under a 20ms interval");
    ok(wal.close().await);
}

#[test]
fn append_blocking_from_plain_threads() {
    let dir = tempdir();
    let (wal, _) = open_collect(options(dir.path(), FsyncPolicy::Always));
    let wal = Arc::new(wal);
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                (0..10u8)
                    .map(|i| wal.append_blocking(vec![t, i]))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        match t.join() {
            Ok(results) => results.into_iter().for_each(|r| assert_eq!(ok(r), 1)),
            Err(_) => panic!("appending thread panicked"),
        }
    }
    drop(wal);
    // Drop without close still flushes what was acknowledged.
    let (_wal, replayed) = open_collect(options(dir.path(), FsyncPolicy::Always));
    assert_eq!(replayed.len(), 40);
}

#[test]
fn replay_error_stops_open() {
    let dir = tempdir();
    {
        let wal = ok(Wal::open(
            options(dir.path(), FsyncPolicy::Always),
            |_, _| Ok(()),
        ));
        ok(wal.append_blocking(b"poison".to_vec()));
    }
    let result = Wal::open(options(dir.path(), FsyncPolicy::Always), |_, p| {
        Err(StoreError::Corrupt {
            path: "record".into(),
            reason: String::from_utf8_lossy(p).into_owned(),
        })
    });
    match result {
        Err(StoreError::Corrupt { reason, .. }) => assert_eq!(reason, "poison"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("open succeeded although on_record failed"),
    }
}

#[test]
fn newer_segment_version_is_refused_not_cut() {
    let dir = tempdir();
    let path = seg_file(dir.path(), 1);
    let mut bytes = b"LKWL".to_vec();
    bytes.extend_from_slice(&2u32.to_le_bytes());
    bytes.extend_from_slice(b"future records");
    ok(fs::write(&path, &bytes).map_err(|e| StoreError::io(&path, e)));
    match Wal::open(options(dir.path(), FsyncPolicy::Always), |_, _| Ok(())) {
        Err(StoreError::Corrupt { reason, .. }) => {
            assert!(reason.contains("version 2"), "{reason}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a segment of an unknown version"),
    }
    assert_eq!(fs::read(&path).ok(), Some(bytes));
}

#[test]
fn stray_files_are_ignored() {
    let dir = tempdir();
    let stray = dir.path().join("notes.txt");
    ok(fs::write(&stray, b"hello").map_err(|e| StoreError::io(&stray, e)));
    let (wal, replayed) = open_collect(options(dir.path(), FsyncPolicy::Always));
    assert!(replayed.is_empty());
    assert_eq!(wal.segments(), vec![1]);
    assert!(stray.exists());
}

/// `store/testdata/wal/v1/` holds a segment written by the version-1 format; it must keep
/// reading exactly. Its bytes were produced independently of this code (`make_golden.py` next to it).
#[test]
fn version_1_golden_segment_still_reads() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/wal/v1");
    let dir = tempdir();
    for id in ok(replay::list_segments(&golden)) {
        let from = seg_file(&golden, id);
        let to = seg_file(dir.path(), id);
        ok(fs::copy(&from, &to)
            .map(|_| ())
            .map_err(|e| StoreError::io(&from, e)));
    }
    let (wal, replayed) = open_collect(options(dir.path(), FsyncPolicy::Always));
    let mut want = vec![
        b"lookout".to_vec(),
        b"write-ahead log".to_vec(),
        (0..=255u8).collect(),
    ];
    want.push(vec![b'x'; 1000]);
    assert_eq!(payloads(&replayed), want);
    assert!(replayed.iter().all(|(id, _)| *id == 1));
    assert_eq!(wal.shared.metrics.corruptions.get(), 0);
}
