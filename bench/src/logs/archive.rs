//! The archive tier for logs, in process: the logs benchmark's corpus (same generator and
//! seed) appended to a `LogStore` over two hours of record time, then every partition moved
//! to a local Parquet archive by the store's own mover. Reported: warm (index + doc store)
//! and archive bytes per raw byte beside `zstd -3` of the raw lines (the size floor), the
//! move's raw MB per CPU-second, and the same searches timed over the warm tier and again
//! over the archive (answers checked equal).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use store::archive::{Archive, ArchiveLocation};
use store::config::{ArchiveTier, FsyncPolicy};
use store::logs::{
    Direction, LogBatch, LogQuery, LogRecord, LogSearch, LogStore, LogStoreOptions, LogsAppender,
    LogsQuerier,
};
use store::traces::model::{SpanId, TraceId};

use super::corpus::{self, severity_text, Chunk, Generator, INSTANCES, SERVICES};
use super::floor;
use crate::archive::store_err;
use crate::error::{BenchError, Result};
use crate::procstat;

#[derive(Args, Clone, Debug)]
pub struct LogsArchiveArgs {
    /// Raw corpus bytes (MB, 10^6) spread over two hours of record time.
    #[arg(long, default_value_t = 200)]
    raw_mb: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value = "target/bench-logs-archive")]
    work_dir: PathBuf,
    #[arg(long, default_value = "bench/results/logs-archive-latest.json")]
    results: PathBuf,
}

#[derive(Debug, Serialize)]
struct SearchTiming {
    query: String,
    hits: usize,
    warm_ms: f64,
    archive_ms: f64,
    archive_files_read: usize,
}

#[derive(Debug, Serialize)]
struct LogsArchiveReport {
    records: u64,
    raw_bytes: u64,
    warm_bytes: u64,
    warm_bytes_per_raw_byte: f64,
    archive_files: u64,
    archive_bytes: u64,
    archive_bytes_per_raw_byte: f64,
    zstd3_bytes_per_raw_byte: f64,
    move_wall_secs: f64,
    move_cpu_secs: f64,
    move_raw_mb_per_cpu_sec: f64,
    searches: Vec<SearchTiming>,
}

fn records_of(chunk: &Chunk) -> Vec<LogRecord> {
    chunk
        .lines
        .iter()
        .map(|m| {
            let service = SERVICES[m.service as usize];
            LogRecord {
                time_unix_nano: m.time_unix_nano,
                observed_unix_nano: m.time_unix_nano + 3_000_000,
                severity_number: m.severity,
                severity_text: severity_text(m.severity).to_string(),
                service: service.to_string(),
                trace_id: m.has_trace().then_some(TraceId(m.trace_id)),
                span_id: m.has_trace().then_some(SpanId(m.span_id)),
                body: chunk.line(m).to_string(),
                resource: vec![
                    ("service.name".into(), service.into()),
                    (
                        "service.instance.id".into(),
                        format!("{service}-{}", m.instance % INSTANCES),
                    ),
                    ("deployment.environment.name".into(), "production".into()),
                ],
                attributes: Vec::new(),
            }
        })
        .collect()
}

fn open(
    args: &LogsArchiveArgs,
    archive: &Arc<Archive>,
    retention: Duration,
) -> Result<Arc<LogStore>> {
    let mut o = LogStoreOptions::new(args.work_dir.join("logs"));
    o.fsync = FsyncPolicy::Never;
    o.retention = retention;
    o.archive = Some(ArchiveTier {
        archive: Arc::clone(archive),
        keep_for: Duration::from_secs(86_400),
    });
    LogStore::open(o).map_err(|e| store_err("opening the log store", e))
}

/// Each query's answer (debug text, to compare tiers) and its time in ms: the median of 3.
fn time_searches(
    store: &LogStore,
    queries: &[String],
    start: u64,
    end: u64,
) -> Result<Vec<(String, usize, f64, usize)>> {
    let mut out = Vec::new();
    for q in queries {
        let search = LogSearch {
            query: LogQuery::parse(q).map_err(|e| store_err(q, e))?,
            start_unix_nano: start,
            end_unix_nano: end,
            limit: 100,
            direction: Direction::Backward,
        };
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..3 {
            let t = Instant::now();
            let r = store
                .search_with_stats(&search)
                .map_err(|e| store_err(q, e))?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            last = Some(r);
        }
        times.sort_by(f64::total_cmp);
        let (records, stats) = last.unwrap_or_default();
        out.push((
            format!("{records:?}"),
            records.len(),
            times[1],
            stats.archive_files_read,
        ));
    }
    Ok(out)
}

pub async fn run(args: LogsArchiveArgs) -> Result<()> {
    let _ = std::fs::remove_dir_all(&args.work_dir);
    let archive = Archive::open(&ArchiveLocation::Local(args.work_dir.join("archive")))
        .map_err(|e| store_err("opening the archive", e))?;
    let raw_target = args.raw_mb * 1_000_000;
    let span_ns: u64 = 2 * 3_600 * 1_000_000_000;
    let now = crate::now_ms() as u64 * 1_000_000;
    // two hours ending three hours ago: within a day's warm window, out of an hour's
    let start = now - 5 * 3_600 * 1_000_000_000;
    let lines = raw_target as f64 / corpus::sample_mean_line_bytes(args.seed, 20_000);
    let step = (span_ns as f64 / lines) as u64;
    let mut generator = Generator::new(args.seed, start, step, false);

    let store = open(&args, &archive, Duration::from_secs(86_400))?;
    let (mut raw_bytes, mut records) = (0u64, 0u64);
    // zstd -3 of the same lines, on a thread of its own (not counted in the move's CPU)
    let floor = floor::FloorThread::start()?;
    let mut trace_id = None;
    while raw_bytes < raw_target {
        let chunk = generator.chunk((raw_target - raw_bytes).min(16_000_000));
        raw_bytes += chunk.raw_bytes();
        let batch = records_of(&chunk);
        records += batch.len() as u64;
        if trace_id.is_none() {
            trace_id = batch.iter().rev().find_map(|r| r.trace_id);
        }
        for part in batch.chunks(5_000) {
            // the indexer refuses appends while it is behind: wait for it as a client would
            loop {
                let appended = store
                    .append_logs(LogBatch {
                        records: part.to_vec(),
                    })
                    .await;
                match appended {
                    Ok(_) => break,
                    Err(e) if e.kind() == store::ErrorKind::Overloaded => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Err(e) => return Err(store_err("appending", e)),
                }
            }
        }
        floor.feed(Arc::new(chunk))?;
    }
    let floor = floor.finish()?;
    store
        .truncate_wal()
        .await
        .map_err(|e| store_err("committing", e))?;
    let warm_bytes = store.stats().disk_bytes;
    let trace_hex = trace_id.map(|t| t.to_string()).unwrap_or_default();
    let queries = vec![
        "timeout".to_string(),
        "service:checkout AND severity>=error".to_string(),
        format!("trace_id:{trace_hex}"),
        "\"connection reset\"".to_string(),
    ];
    let end = start + span_ns + 3_600 * 1_000_000_000;
    let warm = time_searches(&store, &queries, start, end)?;
    store.close().await.map_err(|e| store_err("closing", e))?;
    drop(store);

    // an hour's warm window: every partition is due
    let store = open(&args, &archive, Duration::from_secs(3_600))?;
    let cpu_before = procstat::process_cpu_secs(std::process::id())?;
    let t = Instant::now();
    store
        .move_old_data()
        .await
        .map_err(|e| store_err("moving", e))?;
    let move_wall_secs = t.elapsed().as_secs_f64();
    let move_cpu_secs = procstat::process_cpu_secs(std::process::id())? - cpu_before;
    if store.stats().partitions != 0 {
        return Err(store_err("moving", "partitions left after the move"));
    }
    let (archive_files, archive_bytes, archived_rows) = archive.totals("logs");
    if archived_rows != records {
        return Err(store_err(
            "moving",
            format!("{archived_rows} rows archived, {records} records appended"),
        ));
    }
    let cold = time_searches(&store, &queries, start, end)?;
    let mut searches = Vec::new();
    for (q, (w, c)) in queries.iter().zip(warm.into_iter().zip(cold)) {
        if w.0 != c.0 {
            return Err(store_err(
                q,
                "the archive answers differently from the warm tier",
            ));
        }
        searches.push(SearchTiming {
            query: q.clone(),
            hits: w.1,
            warm_ms: w.2,
            archive_ms: c.2,
            archive_files_read: c.3,
        });
    }
    store.close().await.map_err(|e| store_err("closing", e))?;
    let raw = raw_bytes as f64;
    let report = LogsArchiveReport {
        records,
        raw_bytes,
        warm_bytes,
        warm_bytes_per_raw_byte: warm_bytes as f64 / raw,
        archive_files,
        archive_bytes,
        archive_bytes_per_raw_byte: archive_bytes as f64 / raw,
        zstd3_bytes_per_raw_byte: floor.ratio,
        move_wall_secs,
        move_cpu_secs,
        move_raw_mb_per_cpu_sec: raw / 1e6 / move_cpu_secs,
        searches,
    };
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(dir) = args.results.parent() {
        std::fs::create_dir_all(dir).map_err(|e| BenchError::io("results dir", e))?;
    }
    std::fs::write(&args.results, text).map_err(|e| BenchError::io("results", e))?;
    Ok(())
}
