//! The in-process ceiling: decode every pre-generated request (snappy, protobuf, conversion to
//! the store's [`MetricBatch`]) into a sink that only counts, and report samples per
//! CPU-second of the decoding thread. No network, no WAL, no index: what is left when
//! storage costs nothing.

use bytes::Bytes;
use prost::Message;
use serde::Serialize;
use store::{Label, Labels, MetricBatch, Sample, Series};

use crate::error::{BenchError, Result};
use crate::procstat;
use crate::proto;

/// Turns one snappy remote-write body into the store's signal model, the way the collector's
/// receiver does before calling the appender.
pub fn decode(body: &[u8]) -> Result<MetricBatch> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| BenchError::Decode(format!("snappy: {e}")))?;
    let req = proto::WriteRequest::decode(raw.as_slice()).map_err(|e| BenchError::Decode(format!("protobuf: {e}")))?;
    let series = req
        .timeseries
        .into_iter()
        .map(|ts| Series {
            labels: Labels::new(ts.labels.into_iter().map(|l| Label::new(l.name, l.value)).collect()),
            samples: ts.samples.into_iter().map(|s| Sample::new(s.timestamp, s.value)).collect(),
        })
        .collect();
    Ok(MetricBatch { series, metadata: Vec::new() })
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
            let batch = decode(body)?;
            samples += batch.sample_count() as u64;
        }
    }
    let cpu_secs = procstat::thread_cpu_secs()? - before;
    Ok(NullSinkRun { samples, cpu_secs, samples_per_cpu_sec: samples as f64 / cpu_secs.max(0.01) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_to_sorted_labels_and_counts() {
        let enc = proto::encode_labels(&[("__name__".into(), "up".into()), ("job".into(), "a".into())]);
        let mut body = Vec::new();
        proto::push_series(&enc, 1.0, 1000, &mut body);
        proto::push_series(&enc, 2.0, 2000, &mut body);
        let compressed = snap::raw::Encoder::new().compress_vec(&body).unwrap();
        let batch = decode(&compressed).unwrap();
        assert_eq!(batch.sample_count(), 2);
        assert_eq!(batch.series[1].labels.metric_name(), Some("up"));
        assert_eq!(batch.series[1].samples[0], Sample::new(2000, 2.0));
        let r = run(&[Bytes::from(compressed)], 3).unwrap();
        assert_eq!(r.samples, 6);
    }

    #[test]
    fn bad_snappy_is_a_decode_error() {
        let err = decode(b"\xff\xff\xff\xffnot snappy").unwrap_err().to_string();
        assert!(err.contains("snappy"), "{err}");
    }
}
