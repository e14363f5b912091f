//! The in-process ceiling: decode pre-generated requests with the collector's remote-write
//! code (snappy, protobuf, conversion to the store's `MetricBatch`) into a sink that only counts, and report samples per
//! CPU-second of the decoding thread. No network, no WAL, no index: what is left when
//! storage costs nothing.

use bytes::Bytes;
use serde::Serialize;

use crate::error::{BenchError, Result};
use crate::procstat;

/// Turns one snappy remote-write body into the store's signal model with the collector's
/// receiver code (what `POST /api/v1/write` runs before calling the appender); returns the
/// sample count, which is all the sink keeps.
pub fn decode_count(body: &[u8]) -> Result<u64> {
    let limit = collector::IngestLimits::default().max_request_body_bytes;
    let decoded = collector::remote_write::decode(body, limit)
        .map_err(|e| BenchError::Decode(e.to_string()))?;
    Ok(decoded.batch.sample_count() as u64)
}

#[derive(Clone, Debug, Serialize)]
pub struct NullSinkRun {
    pub samples: u64,
    pub cpu_secs: f64,
    pub samples_per_cpu_sec: f64,
}

/// Decodes every request `passes` times on this thread (enough passes that the run lasts
/// well beyond the 10 ms tick resolution of `/proc` CPU accounting).
pub fn run(requests: &[Bytes], passes: usize) -> Result<NullSinkRun> {
    let before = procstat::thread_cpu_secs()?;
    let mut samples = 0u64;
    for _ in 0..passes {
        for body in requests {
            samples += decode_count(body)?;
        }
    }
    let cpu_secs = procstat::thread_cpu_secs()? - before;
    Ok(NullSinkRun {
        samples,
        cpu_secs,
        samples_per_cpu_sec: samples as f64 / cpu_secs.max(0.01),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;

    #[test]
    fn decodes_and_counts() {
        let enc =
            proto::encode_labels(&[("__name__".into(), "up".into()), ("job".into(), "a".into())]);
        let mut body = Vec::new();
        proto::push_series(&enc, 1.0, 1000, &mut body);
        proto::push_series(&enc, 2.0, 2000, &mut body);
        let compressed = snap::raw::Encoder::new().compress_vec(&body).unwrap();
        assert_eq!(decode_count(&compressed).unwrap(), 2);
        let r = run(&[Bytes::from(compressed)], 3).unwrap();
        assert_eq!(r.samples, 6);
        assert!(r.samples_per_cpu_sec > 0.0);
    }

    #[test]
    fn bad_snappy_is_a_decode_error() {
        let err = decode_count(b"\xff\xff\xff\xffnot snappy")
            .unwrap_err()
            .to_string();
        assert!(err.contains("snappy"), "{err}");
    }
}
