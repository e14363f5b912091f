//! Prometheus remote-write 1.0 messages (`prompb`), hand-encoded for speed; decoding is the
//! collector's own ([`collector::remote_write::decode`]), so the tests check this encoder
//! against the real receiver. Field numbers follow Prometheus's `types.proto` /
//! `remote.proto`: WriteRequest{timeseries=1}, TimeSeries{labels=1, samples=2},
//! Label{name=1, value=2}, Sample{value=1, timestamp=2}.
//!
//! The generator writes millions of `TimeSeries`, each repeating its labels (as Prometheus
//! does, one sample per entry); encoding each series' labels once and splicing the bytes is
//! several times faster than building and cloning prost structs per sample.

use prost::encoding::{encode_key, encode_varint, WireType};

fn put_len_delimited(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// The `labels` fields of a `TimeSeries`, encoded once per series. Labels must already be
/// sorted by name, as remote-write requires.
pub fn encode_labels(labels: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut one = Vec::new();
    for (name, value) in labels {
        one.clear();
        put_len_delimited(1, name.as_bytes(), &mut one);
        put_len_delimited(2, value.as_bytes(), &mut one);
        put_len_delimited(1, &one, &mut out);
    }
    out
}

/// Appends one `TimeSeries` (pre-encoded labels plus one sample) to a `WriteRequest` body.
pub fn push_series(encoded_labels: &[u8], value: f64, timestamp_ms: i64, body: &mut Vec<u8>) {
    let mut sample = Vec::with_capacity(20);
    encode_key(1, WireType::SixtyFourBit, &mut sample);
    sample.extend_from_slice(&value.to_le_bytes());
    encode_key(2, WireType::Varint, &mut sample);
    // int64 is varint-encoded as its two's complement u64, as protobuf specifies
    encode_varint(timestamp_ms as u64, &mut sample);

    let mut ts = Vec::with_capacity(encoded_labels.len() + sample.len() + 2);
    ts.extend_from_slice(encoded_labels);
    put_len_delimited(2, &sample, &mut ts);
    put_len_delimited(1, &ts, body);
}

/// Appends one `TimeSeries` carrying several samples (remote-write 1.0 allows any number per
/// entry; the query benchmark's loader sends a window of samples per series this way).
pub fn push_series_samples(encoded_labels: &[u8], samples: &[(i64, f64)], body: &mut Vec<u8>) {
    use prost::encoding::encoded_len_varint;
    // Sample{value=1 (fixed64), timestamp=2 (varint)}
    let sample_len = |ts: i64| 1 + 8 + 1 + encoded_len_varint(ts as u64);
    let ts_len: usize = encoded_labels.len()
        + samples
            .iter()
            .map(|(t, _)| {
                let l = sample_len(*t);
                1 + encoded_len_varint(l as u64) + l
            })
            .sum::<usize>();
    encode_key(1, WireType::LengthDelimited, body);
    encode_varint(ts_len as u64, body);
    body.extend_from_slice(encoded_labels);
    for (t, v) in samples {
        encode_key(2, WireType::LengthDelimited, body);
        encode_varint(sample_len(*t) as u64, body);
        encode_key(1, WireType::SixtyFourBit, body);
        body.extend_from_slice(&v.to_le_bytes());
        encode_key(2, WireType::Varint, body);
        encode_varint(*t as u64, body);
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use store::{MetricBatch, Sample};

    /// Decodes a snappy body with the collector's receiver code.
    pub fn decode(compressed: &[u8]) -> MetricBatch {
        collector::remote_write::decode(compressed, 1 << 30)
            .unwrap()
            .batch
    }

    #[test]
    fn hand_encoding_decodes_with_the_collector() {
        let labels = vec![
            ("__name__".to_string(), "up".to_string()),
            ("job".to_string(), "node".to_string()),
        ];
        let enc = encode_labels(&labels);
        let mut body = Vec::new();
        push_series(&enc, 1.5, 1_700_000_000_123, &mut body);
        push_series(&enc, -2.0, -5, &mut body);
        let batch = decode(&snap::raw::Encoder::new().compress_vec(&body).unwrap());
        assert_eq!(batch.series.len(), 2);
        assert_eq!(batch.series[0].labels.get("job"), Some("node"));
        assert_eq!(
            batch.series[0].samples,
            vec![Sample::new(1_700_000_000_123, 1.5)]
        );
        assert_eq!(batch.series[1].samples, vec![Sample::new(-5, -2.0)]);
    }

    #[test]
    fn multi_sample_series_decode_with_the_collector() {
        let labels = vec![("__name__".to_string(), "x".to_string())];
        let enc = encode_labels(&labels);
        let mut body = Vec::new();
        let samples = [
            (1_700_000_000_000, 1.0),
            (1_700_000_010_000, f64::NAN),
            (5, -0.5),
        ];
        push_series_samples(&enc, &samples, &mut body);
        push_series_samples(&enc, &[], &mut body);
        push_series(&enc, 2.0, 7, &mut body);
        let batch = decode(&snap::raw::Encoder::new().compress_vec(&body).unwrap());
        // the entry without samples carries nothing, and the receiver drops it
        assert_eq!(batch.series.len(), 2);
        let got = &batch.series[0].samples;
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], Sample::new(1_700_000_000_000, 1.0));
        assert!(got[1].value.is_nan() && got[1].timestamp_ms == 1_700_000_010_000);
        assert_eq!(got[2], Sample::new(5, -0.5));
        assert_eq!(batch.series[1].samples, vec![Sample::new(7, 2.0)]);
    }
}
