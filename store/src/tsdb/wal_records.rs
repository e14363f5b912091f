//! Binary encoding of the TSDB's WAL records (see `docs/format/tsdb.md`).
//!
//! One WAL payload holds one or more records, each `type: u8, body_len: uvarint, body`:
//! * `1` series: `count`, then per series `ref: uvarint, n: uvarint, n x (name, value)` with
//!   strings as `len: uvarint, bytes`. Written the first time a series is seen, and again for
//!   every live series when the WAL is rotated at flush, so a segment never needs an older one.
//! * `2` samples: `count, base_t: varint`, then per sample `ref delta: varint` (from the
//!   previous sample's ref), `t - base_t: varint`, `value: u64 LE` (bit-exact).
//!
//! Unknown record types are skipped by length, so newer writers stay readable.

use crate::model::{Label, Labels};

pub const RECORD_SERIES: u8 = 1;
pub const RECORD_SAMPLES: u8 = 2;

/// Why a payload could not be decoded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed wal record at byte {offset}: {what}")]
pub struct RecordError {
    pub offset: usize,
    pub what: &'static str,
}

pub fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

pub fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// Reads the primitives written by the `put_*` functions.
pub struct Reader<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// An error at the current position.
    pub fn err(&self, what: &'static str) -> RecordError {
        RecordError {
            offset: self.pos,
            what,
        }
    }

    /// A count read from the input, checked against the bytes left (every item takes at
    /// least one byte) so a corrupt count cannot reserve gigabytes.
    pub fn count(&mut self) -> Result<usize, RecordError> {
        let n = self.uvarint()?;
        let left = self.buf.len().saturating_sub(self.pos) as u64;
        if n > left {
            return Err(self.err("count larger than the bytes left"));
        }
        Ok(n as usize)
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn u8(&mut self) -> Result<u8, RecordError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.err("unexpected end"))?;
        self.pos += 1;
        Ok(b)
    }

    pub fn uvarint(&mut self) -> Result<u64, RecordError> {
        let mut out = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            out |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(out);
            }
        }
        Err(self.err("varint too long"))
    }

    pub fn varint(&mut self) -> Result<i64, RecordError> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    pub fn u64_le(&mut self) -> Result<u64, RecordError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| self.err("length past end"))?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    pub fn str(&mut self) -> Result<&'a str, RecordError> {
        let n = self.uvarint()? as usize;
        let b = self.bytes(n)?;
        std::str::from_utf8(b).map_err(|_| self.err("invalid utf-8 in string"))
    }
}

/// Builds one WAL payload.
#[derive(Default)]
pub struct PayloadBuilder {
    buf: Vec<u8>,
    series_body: Vec<u8>,
    series_count: u64,
    samples_body: Vec<u8>,
    samples_count: u64,
    base_t: Option<i64>,
    last_ref: i64,
}

impl PayloadBuilder {
    /// A builder whose samples record has room for `sample_bytes` without growing.
    pub fn with_capacity(sample_bytes: usize) -> Self {
        PayloadBuilder {
            samples_body: Vec::with_capacity(sample_bytes),
            ..Default::default()
        }
    }

    pub fn add_series<'a>(
        &mut self,
        series_ref: u32,
        labels: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    ) {
        put_uvarint(&mut self.series_body, u64::from(series_ref));
        put_uvarint(&mut self.series_body, labels.len() as u64);
        for (n, v) in labels {
            put_str(&mut self.series_body, n);
            put_str(&mut self.series_body, v);
        }
        self.series_count += 1;
    }

    pub fn add_sample(&mut self, series_ref: u32, t: i64, v: f64) {
        let base = *self.base_t.get_or_insert(t);
        put_varint(
            &mut self.samples_body,
            i64::from(series_ref) - self.last_ref,
        );
        self.last_ref = i64::from(series_ref);
        put_varint(&mut self.samples_body, t.wrapping_sub(base));
        self.samples_body
            .extend_from_slice(&v.to_bits().to_le_bytes());
        self.samples_count += 1;
    }

    pub fn samples(&self) -> u64 {
        self.samples_count
    }

    pub fn is_empty(&self) -> bool {
        self.series_count == 0 && self.samples_count == 0
    }

    /// The payload: the series record (if any) first, so replay knows every ref it meets.
    pub fn finish(mut self) -> Vec<u8> {
        if self.series_count > 0 {
            let mut head = Vec::with_capacity(10);
            put_uvarint(&mut head, self.series_count);
            self.buf.push(RECORD_SERIES);
            put_uvarint(&mut self.buf, (head.len() + self.series_body.len()) as u64);
            self.buf.extend_from_slice(&head);
            self.buf.extend_from_slice(&self.series_body);
        }
        if self.samples_count > 0 {
            let mut head = Vec::with_capacity(20);
            put_uvarint(&mut head, self.samples_count);
            put_varint(&mut head, self.base_t.unwrap_or(0));
            self.buf.push(RECORD_SAMPLES);
            put_uvarint(&mut self.buf, (head.len() + self.samples_body.len()) as u64);
            self.buf.extend_from_slice(&head);
            self.buf.extend_from_slice(&self.samples_body);
        }
        self.buf
    }
}

/// What a payload holds, handed out record by record during replay.
pub trait RecordSink {
    fn series(&mut self, series_ref: u32, labels: Labels);
    fn sample(&mut self, series_ref: u32, t: i64, v: f64);
}

/// Decodes every record of `payload` into `sink`.
pub fn decode_payload(payload: &[u8], sink: &mut impl RecordSink) -> Result<(), RecordError> {
    let mut r = Reader::new(payload);
    while !r.is_empty() {
        let typ = r.u8()?;
        let len = r.uvarint()? as usize;
        let body = r.bytes(len)?;
        let mut b = Reader::new(body);
        let to_ref = |x: i64, b: &Reader<'_>| {
            u32::try_from(x).map_err(|_| RecordError {
                offset: b.pos,
                what: "series ref out of range",
            })
        };
        match typ {
            RECORD_SERIES => {
                let n = b.uvarint()?;
                for _ in 0..n {
                    let series_ref = to_ref(b.uvarint()? as i64, &b)?;
                    let nl = b.uvarint()? as usize;
                    let mut labels = Vec::with_capacity(nl.min(256));
                    for _ in 0..nl {
                        let name = b.str()?;
                        let value = b.str()?;
                        labels.push(Label::new(name, value));
                    }
                    sink.series(series_ref, Labels::new(labels));
                }
            }
            RECORD_SAMPLES => {
                let n = b.uvarint()?;
                let base = b.varint()?;
                let mut last_ref = 0i64;
                for _ in 0..n {
                    last_ref = last_ref.wrapping_add(b.varint()?);
                    let series_ref = to_ref(last_ref, &b)?;
                    let t = base.wrapping_add(b.varint()?);
                    let v = f64::from_bits(b.u64_le()?);
                    sink.sample(series_ref, t, v);
                }
            }
            _ => {} // a newer record type: skipped by its length
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::STALE_NAN_BITS;

    #[derive(Default)]
    struct Collect {
        series: Vec<(u32, Labels)>,
        samples: Vec<(u32, i64, u64)>,
    }

    impl RecordSink for Collect {
        fn series(&mut self, r: u32, l: Labels) {
            self.series.push((r, l));
        }
        fn sample(&mut self, r: u32, t: i64, v: f64) {
            self.samples.push((r, t, v.to_bits()));
        }
    }

    #[test]
    fn payload_round_trip() {
        let mut b = PayloadBuilder::default();
        b.add_series(7, [("__name__", "up"), ("job", "x")].into_iter());
        b.add_sample(7, 1_700_000_000_000, 1.0);
        b.add_sample(3, 1_699_999_000_000, f64::from_bits(STALE_NAN_BITS));
        b.add_sample(u32::MAX, i64::MIN, -0.0);
        let payload = b.finish();
        let mut c = Collect::default();
        decode_payload(&payload, &mut c).unwrap();
        assert_eq!(
            c.series,
            vec![(7, Labels::from_pairs([("__name__", "up"), ("job", "x")]))]
        );
        assert_eq!(
            c.samples,
            vec![
                (7, 1_700_000_000_000, 1.0f64.to_bits()),
                (3, 1_699_999_000_000, STALE_NAN_BITS),
                (u32::MAX, i64::MIN, (-0.0f64).to_bits())
            ]
        );
        // compact: a sample costs a few varint bytes plus the 8 value bytes
        let mut b = PayloadBuilder::default();
        for i in 0..1000 {
            b.add_sample(i, 1_700_000_000_000 + i64::from(i % 3), 1.0);
        }
        assert!(b.finish().len() < 1000 * 11);
    }

    #[test]
    fn truncated_and_unknown_records() {
        let mut b = PayloadBuilder::default();
        b.add_sample(1, 10, 2.0);
        let payload = b.finish();
        let mut c = Collect::default();
        assert!(decode_payload(&payload[..payload.len() - 1], &mut c).is_err());
        let mut with_unknown = vec![99u8, 2, 0xaa, 0xbb];
        with_unknown.extend_from_slice(&payload);
        let mut c = Collect::default();
        decode_payload(&with_unknown, &mut c).unwrap();
        assert_eq!(c.samples, vec![(1, 10, 2.0f64.to_bits())]);
    }
}
