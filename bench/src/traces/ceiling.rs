//! The decode-only ceiling of trace ingest: the same request bytes the server gets, decoded
//! with `prost` and converted to the store's `SpanBatch` by the collector's own
//! [`convert_request`] (validation, normalisation, the span model), into a sink that only
//! counts. One thread, CPU from `/proc/thread-self/stat`. No HTTP, no WAL, no head, no
//! derived metrics: what a span costs when storing it costs nothing.

use collector::otlp::traces::convert::{convert_request, TraceLimits};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::Serialize;

use super::generate::Request;
use crate::error::{BenchError, Result};
use crate::procstat;

#[derive(Clone, Debug, Serialize)]
pub struct CeilingRun {
    pub spans: u64,
    pub cpu_secs: f64,
    pub spans_per_cpu_sec: f64,
}

/// Decodes and converts every request once; the spans the converter accepted.
pub fn decode_convert(requests: &[Request], limits: &TraceLimits) -> Result<u64> {
    let mut spans = 0u64;
    for r in requests {
        let req = ExportTraceServiceRequest::decode(r.body.as_ref())
            .map_err(|e| BenchError::Decode(format!("ExportTraceServiceRequest: {e}")))?;
        let converted = convert_request(req, limits)
            .map_err(|e| BenchError::Decode(format!("converting spans: {e}")))?;
        if converted.rejected_spans > 0 {
            return Err(BenchError::Decode(format!(
                "the converter rejected {} generated span(s): {}",
                converted.rejected_spans,
                converted.first_rejection.unwrap_or_default()
            )));
        }
        spans += converted.batch.span_count() as u64;
    }
    Ok(spans)
}

/// One timed pass over `requests` on this thread.
pub fn run(requests: &[Request]) -> Result<CeilingRun> {
    let limits = TraceLimits::default();
    let before = procstat::thread_cpu_secs()?;
    let spans = decode_convert(requests, &limits)?;
    let cpu_secs = procstat::thread_cpu_secs()? - before;
    Ok(CeilingRun {
        spans,
        cpu_secs,
        // /proc counts in 10 ms ticks: a pass is sized to last seconds, the floor only
        // guards a division by zero
        spans_per_cpu_sec: spans as f64 / cpu_secs.max(0.01),
    })
}

#[cfg(test)]
mod tests {
    use super::super::generate::Generator;
    use super::*;

    #[test]
    fn counts_every_generated_span() {
        let mut g = Generator::new(3, 128, 1_700_000_000_000_000_000, 1_000_000);
        let mut reqs = g.chunk(1_000);
        reqs.extend(g.finish());
        let r = run(&reqs).unwrap();
        assert_eq!(r.spans, g.stats.spans);
        assert!(r.spans_per_cpu_sec > 0.0);
    }

    #[test]
    fn garbage_is_a_decode_error() {
        let bad = Request {
            body: bytes::Bytes::from_static(b"\xff\xff\xff\xff\xff"),
            spans: 1,
        };
        let err = run(&[bad]).unwrap_err().to_string();
        assert!(err.contains("ExportTraceServiceRequest"), "{err}");
    }
}
