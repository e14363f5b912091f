//! A hand-written reader for `prometheus.WriteRequest` (field numbers as in [`super::proto`])
//! that decodes straight into a [`RawMetricBatch`]: label names and values are validated as
//! UTF-8 and copied into the batch's one text buffer, samples into its one sample vector. No
//! per-label or per-series allocation, unlike decoding into prost messages.
//!
//! Exemplars and native histograms are checked for well-formed framing and skipped
//! (histograms are counted so the receiver can reject them with a reason); unknown fields are
//! skipped by wire type, as protobuf requires. Every malformed input (truncated varint,
//! length past the end, wrong wire type, invalid UTF-8) is an error naming what and where;
//! nothing here panics on input.

use store::model::{RawLabelError, RawMetricBatch};
use store::{MetricMetadata, Sample};

use super::proto::MetricKind;

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_I32: u8 = 5;

/// Nesting allowed when checking the framing of skipped messages (histograms have 2 levels).
const MAX_SKIP_DEPTH: u32 = 8;

/// Why a body is not a valid `WriteRequest`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Broken framing: `what` at byte `offset` of the decompressed body.
    #[error("{what} at byte {offset}")]
    Malformed { offset: usize, what: String },
    /// A label name or value that is not UTF-8.
    #[error("timeseries[{series}]: {what}")]
    Utf8 { series: usize, what: String },
}

/// A decoded request: the batch plus native histogram samples seen (not stored) and a
/// description of the first series carrying them.
#[derive(Debug, Default)]
pub struct RawDecoded {
    pub batch: RawMetricBatch,
    pub histogram_samples: u64,
    pub first_histogram_series: Option<String>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the whole body, for error positions.
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    fn err(&self, what: impl Into<String>) -> WireError {
        WireError::Malformed {
            offset: self.base + self.pos,
            what: what.into(),
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, WireError> {
        // one-byte varints (keys, short lengths) are by far the most common
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_slow()
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, WireError> {
        let mut out = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            out |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(out);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    #[inline]
    fn fixed64(&mut self) -> Result<u64, WireError> {
        let b = self.bytes(8, "fixed64")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    #[inline]
    fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], WireError> {
        match self.pos.checked_add(n).filter(|&e| e <= self.buf.len()) {
            Some(end) => {
                let b = &self.buf[self.pos..end];
                self.pos = end;
                Ok(b)
            }
            None => Err(self.err(format!(
                "{what} of {n} bytes runs past the end of its message ({} bytes left)",
                self.buf.len() - self.pos
            ))),
        }
    }

    /// A length-delimited field's contents, as a reader positioned in the whole body.
    #[inline]
    fn len_delimited(&mut self, what: &str) -> Result<Reader<'a>, WireError> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| self.err(format!("{what} length {n} too large")))?;
        let base = self.base + self.pos;
        Ok(Reader::new(self.bytes(n, what)?, base))
    }

    /// A field key: (field number, wire type).
    #[inline]
    fn key(&mut self) -> Result<(u64, u8), WireError> {
        let start = self.pos;
        let k = self.varint()?;
        let field = k >> 3;
        if field == 0 {
            self.pos = start;
            return Err(self.err("field number 0"));
        }
        Ok((field, (k & 7) as u8))
    }

    /// Skips a field of an unknown or ignored number by its wire type.
    fn skip(&mut self, wire: u8) -> Result<(), WireError> {
        match wire {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_I64 => self.bytes(8, "fixed64").map(drop),
            WIRE_LEN => self.len_delimited("field").map(drop),
            WIRE_I32 => self.bytes(4, "fixed32").map(drop),
            other => Err(self.err(format!("unsupported wire type {other}"))),
        }
    }

    /// Walks a whole message checking only its framing: any length-delimited field may be a
    /// nested message or a string, so a nested one that does not parse is accepted as bytes.
    fn check_framing(&mut self, depth: u32) -> Result<(), WireError> {
        while !self.at_end() {
            let (_, wire) = self.key()?;
            if wire == WIRE_LEN && depth < MAX_SKIP_DEPTH {
                let mut inner = self.len_delimited("field")?;
                // strings and packed scalars are not messages; only framing errors at this
                // level are errors
                let _ = inner.check_framing(depth + 1);
            } else {
                self.skip(wire)?;
            }
        }
        Ok(())
    }

    fn expect(&self, wire: u8, expected: u8, field: &str) -> Result<(), WireError> {
        if wire == expected {
            Ok(())
        } else {
            let name = |w: u8| match w {
                WIRE_VARINT => "varint",
                WIRE_I64 => "fixed64",
                WIRE_LEN => "length-delimited",
                WIRE_I32 => "fixed32",
                _ => "unsupported",
            };
            Err(self.err(format!(
                "field {field} has wire type {wire} ({}), expected {expected} ({})",
                name(wire),
                name(expected)
            )))
        }
    }
}

/// Reusable per-request scratch: the label slices of the series being decoded.
type LabelSlices<'a> = Vec<(&'a [u8], &'a [u8])>;

/// Decodes a decompressed `WriteRequest` body.
pub fn decode_write_request(body: &[u8]) -> Result<RawDecoded, WireError> {
    // a one-sample series with ten labels is about 170 bytes on the wire
    let est_series = body.len() / 128 + 1;
    let mut out = RawDecoded {
        batch: RawMetricBatch::with_capacity(est_series, est_series, body.len() / 2),
        ..RawDecoded::default()
    };
    let mut labels: LabelSlices<'_> = Vec::with_capacity(16);
    let mut r = Reader::new(body, 0);
    let mut index = 0usize;
    while !r.at_end() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect(wire, WIRE_LEN, "WriteRequest.timeseries")?;
                let ts = r.len_delimited("timeseries")?;
                decode_series(ts, index, &mut labels, &mut out)?;
                index += 1;
            }
            3 => {
                r.expect(wire, WIRE_LEN, "WriteRequest.metadata")?;
                let m = r.len_delimited("metadata")?;
                out.batch.metadata.push(decode_metadata(m)?);
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(out)
}

fn decode_series<'a>(
    mut r: Reader<'a>,
    index: usize,
    labels: &mut LabelSlices<'a>,
    out: &mut RawDecoded,
) -> Result<(), WireError> {
    labels.clear();
    let mut histograms = 0u64;
    let mut samples = 0usize;
    let result = (|| {
        while !r.at_end() {
            let (field, wire) = r.key()?;
            match field {
                1 => {
                    r.expect(wire, WIRE_LEN, "TimeSeries.labels")?;
                    let l = r.len_delimited("label")?;
                    labels.push(decode_label(l)?);
                }
                2 => {
                    r.expect(wire, WIRE_LEN, "TimeSeries.samples")?;
                    let s = r.len_delimited("sample")?;
                    out.batch.push_sample(decode_sample(s)?);
                    samples += 1;
                }
                3 | 4 => {
                    r.expect(wire, WIRE_LEN, "TimeSeries.exemplars/histograms")?;
                    r.len_delimited("message")?.check_framing(0)?;
                    if field == 4 {
                        histograms += 1;
                    }
                }
                _ => r.skip(wire)?,
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        out.batch.discard_series();
        return Err(e);
    }
    if histograms > 0 {
        out.histogram_samples += histograms;
        if out.first_histogram_series.is_none() {
            out.first_histogram_series = Some(describe_series(index, labels));
        }
    }
    if samples == 0 {
        out.batch.discard_series();
        return Ok(());
    }
    for &(name, value) in labels.iter() {
        if let Err(e) = out.batch.push_label(name, value) {
            out.batch.discard_series();
            return Err(WireError::Utf8 {
                series: index,
                what: e.to_string(),
            });
        }
    }
    if let Err(e) = out.batch.finish_series() {
        let what = match e {
            RawLabelError::NameNotUtf8 { label } => {
                let name = labels.get(label).map(|l| l.0).unwrap_or_default();
                format!(
                    "label name {:?} is not valid UTF-8",
                    String::from_utf8_lossy(name)
                )
            }
            RawLabelError::ValueNotUtf8 { label } => {
                let (name, value) = labels.get(label).copied().unwrap_or_default();
                format!(
                    "value {:?} of label {:?} is not valid UTF-8",
                    String::from_utf8_lossy(value),
                    String::from_utf8_lossy(name)
                )
            }
            RawLabelError::TooLarge => e.to_string(),
        };
        return Err(WireError::Utf8 {
            series: index,
            what,
        });
    }
    Ok(())
}

#[inline]
fn decode_label<'a>(mut r: Reader<'a>) -> Result<(&'a [u8], &'a [u8]), WireError> {
    let (mut name, mut value): (&[u8], &[u8]) = (&[], &[]);
    while !r.at_end() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect(wire, WIRE_LEN, "Label.name")?;
                name = r.len_delimited("label name")?.buf;
            }
            2 => {
                r.expect(wire, WIRE_LEN, "Label.value")?;
                value = r.len_delimited("label value")?.buf;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok((name, value))
}

#[inline]
fn decode_sample(mut r: Reader<'_>) -> Result<Sample, WireError> {
    let (mut value, mut timestamp) = (0f64, 0i64);
    while !r.at_end() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect(wire, WIRE_I64, "Sample.value")?;
                value = f64::from_bits(r.fixed64()?);
            }
            2 => {
                r.expect(wire, WIRE_VARINT, "Sample.timestamp")?;
                // int64: two's complement in a 10-byte varint for negatives
                timestamp = r.varint()? as i64;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(Sample::new(timestamp, value))
}

fn decode_metadata(mut r: Reader<'_>) -> Result<MetricMetadata, WireError> {
    let mut kind = 0i32;
    let (mut family, mut help, mut unit) = (String::new(), String::new(), String::new());
    while !r.at_end() {
        let (field, wire) = r.key()?;
        let target = match field {
            1 => {
                r.expect(wire, WIRE_VARINT, "MetricMetadata.type")?;
                // enums are int32 on the wire: truncation as protobuf specifies
                kind = r.varint()? as i32;
                continue;
            }
            2 => &mut family,
            4 => &mut help,
            5 => &mut unit,
            _ => {
                r.skip(wire)?;
                continue;
            }
        };
        r.expect(wire, WIRE_LEN, "MetricMetadata string")?;
        let s = r.len_delimited("metadata string")?;
        let offset = s.base;
        *target = std::str::from_utf8(s.buf)
            .map_err(|_| WireError::Malformed {
                offset,
                what: "metadata string is not valid UTF-8".to_string(),
            })?
            .to_string();
    }
    Ok(MetricMetadata {
        metric_type: MetricKind::to_store(kind),
        metric_family: family,
        help,
        unit,
    })
}

fn describe_series(index: usize, labels: &[(&[u8], &[u8])]) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(n, v)| {
            format!(
                "{}={:?}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v)
            )
        })
        .collect();
    format!("timeseries[{index}] {{{}}}", pairs.join(", "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use prost::Message as _;

    use super::super::proto::{self, WriteRequest};
    use super::*;

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> proto::TimeSeries {
        proto::TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| proto::Label::new(*n, *v))
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| proto::Sample { value, timestamp })
                .collect(),
            exemplars: vec![],
            histograms: vec![],
        }
    }

    fn varied_request() -> WriteRequest {
        let mut with_extras = series(&[("__name__", "h"), ("le", "1")], &[(5, 1.0)]);
        with_extras.exemplars.push(proto::Exemplar {
            labels: vec![proto::Label::new("trace_id", "abc")],
            value: 1.0,
            timestamp: 5,
        });
        let mut only_hist = series(&[("__name__", "latency"), ("job", "x")], &[]);
        only_hist.histograms.push(proto::Histogram {
            count_int: 3,
            sum: 1.5,
            positive_spans: vec![proto::BucketSpan {
                offset: -1,
                length: 2,
            }],
            positive_deltas: vec![1, -2],
            timestamp: 9,
            ..Default::default()
        });
        WriteRequest {
            timeseries: vec![
                series(
                    &[("__name__", "up"), ("job", "node"), ("instance", "a:1")],
                    &[(1_700_000_000_000, 1.0), (1_700_000_010_000, f64::NAN)],
                ),
                // unsorted, a duplicate name (last wins) and an empty value (dropped)
                series(
                    &[
                        ("z", "1"),
                        ("__name__", "m"),
                        ("a", "x"),
                        ("z", "2"),
                        ("e", ""),
                    ],
                    &[(-5, -0.0), (i64::MIN, store::model::stale_nan())],
                ),
                series(&[("__name__", "no_samples")], &[]),
                with_extras,
                only_hist,
                series(&[], &[(1, 2.0)]),
                series(&[("__name__", "ünï"), ("k", "välue")], &[(i64::MAX, 1e300)]),
            ],
            metadata: vec![
                proto::MetricMetadata {
                    r#type: proto::MetricKind::Counter as i32,
                    metric_family_name: "up".into(),
                    help: "help ✓".into(),
                    unit: "".into(),
                },
                proto::MetricMetadata {
                    r#type: 99,
                    metric_family_name: "x".into(),
                    help: "".into(),
                    unit: "s".into(),
                },
            ],
        }
    }

    fn bits(b: &store::MetricBatch) -> Vec<(String, Vec<(i64, u64)>)> {
        b.series
            .iter()
            .map(|s| {
                (
                    format!("{:?}", s.labels),
                    s.samples
                        .iter()
                        .map(|x| (x.timestamp_ms, x.value.to_bits()))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn same_result_as_prost_decoding() {
        let req = varied_request();
        let body = req.encode_to_vec();
        let raw = decode_write_request(&body).unwrap();
        let via_prost = super::super::convert(WriteRequest::decode(&body[..]).unwrap()).unwrap();
        assert_eq!(raw.histogram_samples, via_prost.histogram_samples);
        assert_eq!(raw.first_histogram_series, via_prost.first_histogram_series);
        let batch = raw.batch.into_metric_batch();
        assert_eq!(bits(&batch), bits(&via_prost.batch));
        assert_eq!(batch.metadata, via_prost.batch.metadata);
        assert_eq!(
            batch.series[1].labels,
            store::Labels::from_pairs([("__name__", "m"), ("a", "x"), ("z", "2")])
        );
        assert_eq!(batch.series.len(), 5, "series without samples are dropped");
    }

    #[test]
    fn unknown_fields_are_skipped() {
        let mut body = WriteRequest {
            timeseries: vec![series(&[("__name__", "up")], &[(1, 1.0)])],
            metadata: vec![],
        }
        .encode_to_vec();
        // field 15 varint, field 14 fixed32, field 13 fixed64, field 12 bytes
        body.extend_from_slice(&[15 << 3, 0x96, 0x01]);
        body.extend_from_slice(&[(14 << 3) | 5, 1, 2, 3, 4]);
        body.extend_from_slice(&[(13 << 3) | 1, 1, 2, 3, 4, 5, 6, 7, 8]);
        body.extend_from_slice(&[(12 << 3) | 2, 2, 0xff, 0xfe]);
        let raw = decode_write_request(&body).unwrap();
        assert_eq!(raw.batch.sample_count(), 1);
    }

    fn malformed(body: &[u8]) -> String {
        let e = decode_write_request(body).unwrap_err();
        assert!(matches!(e, WireError::Malformed { .. }), "{e:?}");
        e.to_string()
    }

    #[test]
    fn malformed_input_is_a_clear_error() {
        // truncated varint key and length
        assert!(malformed(&[0x80]).contains("truncated varint"));
        assert!(malformed(&[0x0a, 0x80]).contains("truncated varint"));
        // eleven-byte varint
        assert!(
            malformed(&[0x78, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1])
                .contains("longer than 10 bytes")
        );
        // timeseries length past the end
        let m = malformed(&[0x0a, 0x05, 0x0a]);
        assert!(
            m.contains("runs past the end") && m.contains("byte 2"),
            "{m}"
        );
        // label value length past the end of the label message
        let m = malformed(&[0x0a, 0x06, 0x0a, 0x04, 0x0a, 0x05, b'a', b'b']);
        assert!(m.contains("label name of 5 bytes runs past the end"), "{m}");
        // timeseries as a varint
        let m = malformed(&[0x08, 0x01]);
        assert!(m.contains("WriteRequest.timeseries has wire type 0"), "{m}");
        // sample value as a varint
        let m = malformed(&[0x0a, 0x04, 0x12, 0x02, 0x08, 0x01]);
        assert!(m.contains("Sample.value has wire type 0"), "{m}");
        // field number 0, groups
        assert!(malformed(&[0x00]).contains("field number 0"));
        assert!(malformed(&[0x4b]).contains("unsupported wire type 3"));
        // invalid UTF-8 in metadata strings
        let m = malformed(&[0x1a, 0x03, 0x12, 0x01, 0xff]);
        assert!(m.contains("not valid UTF-8"), "{m}");
    }

    #[test]
    fn invalid_utf8_labels_name_the_series_and_label() {
        let mut req = WriteRequest {
            timeseries: vec![
                series(&[("__name__", "ok")], &[(1, 1.0)]),
                series(&[("__name__", "up")], &[(1, 1.0)]),
            ],
            metadata: vec![],
        };
        req.timeseries[1]
            .labels
            .push(proto::Label::new("job", vec![0xff, b'x']));
        let e = decode_write_request(&req.encode_to_vec()).unwrap_err();
        let m = e.to_string();
        assert!(
            matches!(e, WireError::Utf8 { series: 1, .. })
                && m.contains("value")
                && m.contains("\"job\""),
            "{m}"
        );
        req.timeseries[1].labels[1] = proto::Label::new(vec![0xc3], "x");
        let m = decode_write_request(&req.encode_to_vec())
            .unwrap_err()
            .to_string();
        assert!(m.contains("timeseries[1]: label name"), "{m}");
        // a series without float samples is not stored, so its labels are not checked (as
        // before): only its histograms are counted
        req.timeseries[1].samples.clear();
        assert_eq!(
            decode_write_request(&req.encode_to_vec())
                .unwrap()
                .batch
                .len(),
            1
        );
    }

    #[test]
    fn every_truncation_and_corruption_is_handled_without_panic() {
        let body = varied_request().encode_to_vec();
        for n in 0..body.len() {
            let _ = decode_write_request(&body[..n]);
        }
        let mut x = 0x9e37_79b9_u32;
        for i in 0..body.len() {
            let mut b = body.clone();
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            b[i] = x as u8;
            let _ = decode_write_request(&b);
        }
    }
}
