//! The archive tier for traces, in process: the traces benchmark's generator (same shape and
//! seed) converted by the collector's OTLP decoder and appended to a `TraceStore` over two
//! hours, flushed into segments, then every segment moved to a local Parquet archive by the
//! store's own mover. Reported: warm (segment) and archive bytes per span beside the OTLP
//! protobuf size, the move's spans per CPU-second, and the same lookups and searches timed
//! over the warm tier and over the archive (answers checked equal).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use collector::otlp::traces::convert::convert_request;
use collector::otlp::traces::TraceLimits;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::Serialize;
use store::archive::{Archive, ArchiveLocation};
use store::config::{ArchiveTier, FsyncPolicy};
use store::traces::{
    TraceId, TraceQuery, TraceStore, TraceStoreOptions, TracesAppender, TracesQuerier,
};

use super::generate::Generator;
use crate::archive::store_err;
use crate::error::Result;
use crate::procstat;

#[derive(Args, Clone, Debug)]
pub struct TracesArchiveArgs {
    /// Spans generated over two hours of span time.
    #[arg(long, default_value_t = 300_000)]
    spans: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value = "target/bench-traces-archive")]
    work_dir: PathBuf,
    #[arg(long, default_value = "bench/results/traces-archive-latest.json")]
    results: PathBuf,
}

#[derive(Debug, Serialize)]
struct Timing {
    what: String,
    warm_ms: f64,
    archive_ms: f64,
}

#[derive(Debug, Serialize)]
struct TracesArchiveReport {
    spans: u64,
    protobuf_bytes_per_span: f64,
    warm_segments: u64,
    warm_bytes_per_span: f64,
    archive_files: u64,
    archive_bytes_per_span: f64,
    move_wall_secs: f64,
    move_cpu_secs: f64,
    move_spans_per_cpu_sec: f64,
    timings: Vec<Timing>,
}

fn open(
    args: &TracesArchiveArgs,
    archive: &Arc<Archive>,
    retention: Duration,
) -> Result<Arc<TraceStore>> {
    let mut o = TraceStoreOptions::new(args.work_dir.join("traces"));
    o.fsync = FsyncPolicy::Never;
    o.retention = retention;
    o.archive = Some(ArchiveTier {
        archive: Arc::clone(archive),
        keep_for: Duration::from_secs(86_400),
    });
    TraceStore::open(o).map_err(|e| store_err("opening the trace store", e))
}

/// Debug text of each answer (to compare tiers) and its median time of 3, in ms.
fn timed(
    store: &TraceStore,
    lookups: &[TraceId],
    searches: &[TraceQuery],
) -> Result<Vec<(String, String, f64)>> {
    let mut out = Vec::new();
    let mut run = |what: String, f: &dyn Fn() -> Result<String>| -> Result<()> {
        let mut times = Vec::new();
        let mut answer = String::new();
        for _ in 0..3 {
            let t = Instant::now();
            answer = f()?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        out.push((what, answer, times[1]));
        Ok(())
    };
    for id in lookups {
        run(format!("trace {id}"), &|| {
            Ok(format!(
                "{:?}",
                store.trace(*id).map_err(|e| store_err("lookup", e))?
            ))
        })?;
    }
    for q in searches {
        run(
            format!("search service={:?} error={:?}", q.service, q.error),
            &|| {
                Ok(format!(
                    "{:?}",
                    store.search(q).map_err(|e| store_err("search", e))?
                ))
            },
        )?;
    }
    Ok(out)
}

pub async fn run(args: TracesArchiveArgs) -> Result<()> {
    let _ = std::fs::remove_dir_all(&args.work_dir);
    let archive = Archive::open(&ArchiveLocation::Local(args.work_dir.join("archive")))
        .map_err(|e| store_err("opening the archive", e))?;
    let now = crate::now_ms() as u64 * 1_000_000;
    let start = now - 5 * 3_600 * 1_000_000_000;
    // about 12 spans per trace: traces evenly over two hours
    let gap = 2 * 3_600 * 1_000_000_000 / (args.spans / 12).max(1);
    let mut generator = Generator::new(args.seed, 512, start, gap);
    let store = open(&args, &archive, Duration::from_secs(86_400))?;
    let limits = TraceLimits::default();
    let mut lookups: Vec<TraceId> = Vec::new();
    let mut appended = 0u64;
    let mut done = false;
    let mut chunks = 0u64;
    while !done {
        let requests = if generator.stats.spans < args.spans {
            generator.chunk(50_000)
        } else {
            done = true;
            generator.finish()
        };
        for r in requests {
            let req = ExportTraceServiceRequest::decode(r.body)
                .map_err(|e| store_err("decoding a generated request", e))?;
            let converted =
                convert_request(req, &limits).map_err(|e| store_err("converting", e))?;
            if lookups.len() < 5 {
                let first = converted.batch.resource_spans.first();
                if let Some(s) = first
                    .and_then(|rs| rs.spans.first())
                    .filter(|s| !lookups.contains(&s.trace_id))
                {
                    lookups.push(s.trace_id);
                }
            }
            let report = store
                .append_spans(converted.batch)
                .await
                .map_err(|e| store_err("appending", e))?;
            appended += report.accepted_spans;
        }
        // a segment about every 250,000 spans, as size-triggered flushes would cut them
        chunks += 1;
        if chunks.is_multiple_of(5) {
            store.flush().await.map_err(|e| store_err("flushing", e))?;
        }
    }
    store.flush().await.map_err(|e| store_err("flushing", e))?;
    let stats = store.stats();
    let searches = vec![
        TraceQuery {
            start_unix_nano: start,
            limit: 20,
            ..Default::default()
        },
        TraceQuery {
            start_unix_nano: start,
            service: Some("checkout".into()),
            error: Some(true),
            limit: 20,
            ..Default::default()
        },
    ];
    let warm = timed(&store, &lookups, &searches)?;
    store.close().await.map_err(|e| store_err("closing", e))?;
    drop(store);

    let store = open(&args, &archive, Duration::from_secs(3_600))?;
    let cpu_before = procstat::process_cpu_secs(std::process::id())?;
    let t = Instant::now();
    store
        .move_old_data()
        .await
        .map_err(|e| store_err("moving", e))?;
    let move_wall_secs = t.elapsed().as_secs_f64();
    let move_cpu_secs = procstat::process_cpu_secs(std::process::id())? - cpu_before;
    let (archive_files, archive_bytes, rows) = archive.totals("traces");
    if rows != appended || store.stats().segments != 0 {
        return Err(store_err(
            "moving",
            format!("{rows} spans archived of {appended}"),
        ));
    }
    let cold = timed(&store, &lookups, &searches)?;
    let mut timings = Vec::new();
    for (w, c) in warm.into_iter().zip(cold) {
        if w.1 != c.1 {
            return Err(store_err(
                &w.0,
                "the archive answers differently from the warm tier",
            ));
        }
        timings.push(Timing {
            what: w.0,
            warm_ms: w.2,
            archive_ms: c.2,
        });
    }
    store.close().await.map_err(|e| store_err("closing", e))?;
    let spans = appended as f64;
    let report = TracesArchiveReport {
        spans: appended,
        protobuf_bytes_per_span: generator.stats.bytes_per_span(),
        warm_segments: stats.segments,
        warm_bytes_per_span: stats.segment_bytes as f64 / spans,
        archive_files,
        archive_bytes_per_span: archive_bytes as f64 / spans,
        move_wall_secs,
        move_cpu_secs,
        move_spans_per_cpu_sec: spans / move_cpu_secs,
        timings,
    };
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(dir) = args.results.parent() {
        std::fs::create_dir_all(dir).map_err(|e| crate::error::BenchError::io("results dir", e))?;
    }
    std::fs::write(&args.results, text).map_err(|e| crate::error::BenchError::io("results", e))?;
    Ok(())
}
