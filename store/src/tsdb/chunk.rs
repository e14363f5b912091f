//! Gorilla-compressed sample chunks, bit-compatible in layout with Prometheus's XOR chunk.
//!
//! Layout: a big-endian `u16` sample count, then a bit stream. The first sample is a zigzag
//! varint timestamp and the raw 64 value bits; the second a uvarint timestamp delta and an
//! XOR-encoded value; every later sample a delta-of-delta timestamp (`0`, `10`+14 bits,
//! `110`+17 bits, `1110`+20 bits, `1111`+64 bits) and an XOR-encoded value (`0` when equal,
//! `10` reusing the previous leading/trailing-zero window, `11` + 5 bits leading zeros +
//! 6 bits significant-bit count + the bits). Values are kept bit-exactly, so NaN payloads
//! and Prometheus's staleness marker survive a round trip.

use crate::model::Sample;

/// A chunk is cut after this many samples, as Prometheus does.
pub const MAX_SAMPLES_PER_CHUNK: u16 = 120;
/// ... or once it spans this much time, so one chunk never covers more than a block range.
pub const MAX_CHUNK_SPAN_MS: i64 = 2 * 3600 * 1000;

/// Appends bits to a byte vector, most significant bit first.
#[derive(Clone, Debug, Default)]
struct BitWriter {
    buf: Vec<u8>,
    /// Unused low bits of the last byte (0 when the last byte is full or there is none).
    free: u8,
}

impl BitWriter {
    fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.buf.push(0);
            self.free = 8;
        }
        self.free -= 1;
        if bit {
            if let Some(last) = self.buf.last_mut() {
                *last |= 1 << self.free;
            }
        }
    }

    /// Writes the low `n` bits of `v` (n <= 64), most significant first.
    fn write_bits(&mut self, v: u64, mut n: u8) {
        while n > 0 {
            if self.free == 0 {
                self.buf.push(0);
                self.free = 8;
            }
            let take = n.min(self.free);
            let shift = n - take;
            let mask = if take == 64 {
                u64::MAX
            } else {
                (1u64 << take) - 1
            };
            let bits = ((v >> shift) & mask) as u8;
            self.free -= take;
            if let Some(last) = self.buf.last_mut() {
                *last |= bits << self.free;
            }
            n -= take;
        }
    }

    fn write_byte(&mut self, b: u8) {
        self.write_bits(u64::from(b), 8);
    }

    fn write_uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.write_byte((v as u8) | 0x80);
            v >>= 7;
        }
        self.write_byte(v as u8);
    }

    fn write_varint(&mut self, v: i64) {
        self.write_uvarint(((v << 1) ^ (v >> 63)) as u64);
    }
}

/// Reads bits written by [`BitWriter`].
struct BitReader<'a> {
    buf: &'a [u8],
    /// Position in bits.
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.buf.get(self.pos / 8)?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1 == 1;
        self.pos += 1;
        Some(bit)
    }

    fn read_bits(&mut self, mut n: u8) -> Option<u64> {
        let mut out = 0u64;
        while n > 0 {
            let byte = *self.buf.get(self.pos / 8)?;
            let avail = 8 - (self.pos % 8) as u8;
            let take = n.min(avail);
            let shift = avail - take;
            let bits = (u64::from(byte) >> shift) & ((1u64 << take) - 1);
            out = (out << take) | bits;
            self.pos += usize::from(take);
            n -= take;
        }
        Some(out)
    }

    fn read_uvarint(&mut self) -> Option<u64> {
        let mut out = 0u64;
        for i in 0..10 {
            let b = self.read_bits(8)?;
            out |= (b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some(out);
            }
        }
        None
    }

    fn read_varint(&mut self) -> Option<i64> {
        let u = self.read_uvarint()?;
        Some(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
}

/// An open chunk being appended to. Kept small: it is the per-series cost of the head.
#[derive(Clone, Debug, Default)]
pub struct XorAppender {
    bits: BitWriter,
    num: u16,
    mint: i64,
    t: i64,
    t_delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
}

impl XorAppender {
    pub fn new() -> Self {
        Self::with_capacity(32)
    }

    /// An appender whose buffer starts with room for `bytes` (at least the header), e.g.
    /// the size of the series' previous chunk, so it rarely grows past its final size.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut bits = BitWriter {
            buf: Vec::with_capacity(bytes.max(32)),
            free: 0,
        };
        bits.buf.extend_from_slice(&[0, 0]);
        XorAppender {
            bits,
            leading: 0xff,
            ..Default::default()
        }
    }

    pub fn num_samples(&self) -> u16 {
        self.num
    }

    pub fn mint(&self) -> i64 {
        self.mint
    }

    pub fn maxt(&self) -> i64 {
        self.t
    }

    /// Whether the next sample at `t` should go into a new chunk.
    pub fn is_full(&self, t: i64) -> bool {
        self.num >= MAX_SAMPLES_PER_CHUNK
            || (self.num > 0 && t.saturating_sub(self.mint) >= MAX_CHUNK_SPAN_MS)
    }

    /// Appends a sample; the caller keeps timestamps increasing.
    pub fn append(&mut self, t: i64, v: f64) {
        let vbits = v.to_bits();
        match self.num {
            0 => {
                self.bits.write_varint(t);
                self.bits.write_bits(vbits, 64);
                self.mint = t;
            }
            1 => {
                let delta = t.wrapping_sub(self.t);
                self.bits.write_uvarint(delta as u64);
                self.write_value(vbits);
                self.t_delta = delta;
            }
            _ => {
                let delta = t.wrapping_sub(self.t);
                let dod = delta.wrapping_sub(self.t_delta);
                if dod == 0 {
                    self.bits.write_bit(false);
                } else if (-8191..=8192).contains(&dod) {
                    self.bits.write_bits(0b10, 2);
                    self.bits.write_bits(dod as u64, 14);
                } else if (-65535..=65536).contains(&dod) {
                    self.bits.write_bits(0b110, 3);
                    self.bits.write_bits(dod as u64, 17);
                } else if (-524287..=524288).contains(&dod) {
                    self.bits.write_bits(0b1110, 4);
                    self.bits.write_bits(dod as u64, 20);
                } else {
                    self.bits.write_bits(0b1111, 4);
                    self.bits.write_bits(dod as u64, 64);
                }
                self.write_value(vbits);
                self.t_delta = delta;
            }
        }
        self.t = t;
        self.v = vbits;
        self.num += 1;
        let n = self.num.to_be_bytes();
        self.bits.buf[0] = n[0];
        self.bits.buf[1] = n[1];
    }

    fn write_value(&mut self, vbits: u64) {
        let x = vbits ^ self.v;
        if x == 0 {
            self.bits.write_bit(false);
            return;
        }
        self.bits.write_bit(true);
        let leading = (x.leading_zeros() as u8).min(31);
        let trailing = x.trailing_zeros() as u8;
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            self.bits.write_bit(false);
            let sig = 64 - self.leading - self.trailing;
            self.bits.write_bits(x >> self.trailing, sig);
        } else {
            self.leading = leading;
            self.trailing = trailing;
            self.bits.write_bit(true);
            self.bits.write_bits(u64::from(leading), 5);
            let sig = 64 - leading - trailing;
            // 64 significant bits do not fit in 6 bits; 0 stands for 64, as in Prometheus
            self.bits.write_bits(u64::from(sig & 63), 6);
            self.bits.write_bits(x >> trailing, sig);
        }
    }

    /// Bytes allocated for the encoded chunk.
    pub fn capacity(&self) -> usize {
        self.bits.buf.capacity()
    }

    /// The encoded bytes so far (a valid chunk at every point).
    pub fn bytes(&self) -> &[u8] {
        &self.bits.buf
    }

    /// Closes the chunk, releasing spare capacity.
    pub fn finish(self) -> Chunk {
        Chunk {
            mint: self.mint,
            maxt: self.t,
            data: self.bits.buf.into_boxed_slice(),
        }
    }
}

/// A closed, immutable chunk and its time range.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    pub mint: i64,
    pub maxt: i64,
    pub data: Box<[u8]>,
}

/// Why a chunk could not be decoded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("chunk truncated or malformed after {decoded} of {expected} samples")]
pub struct ChunkDecodeError {
    pub decoded: u16,
    pub expected: u16,
}

/// Decodes every sample of a chunk.
pub fn decode(data: &[u8]) -> Result<Vec<Sample>, ChunkDecodeError> {
    let mut out = Vec::new();
    decode_into(data, i64::MIN, i64::MAX, &mut out)?;
    Ok(out)
}

/// Decodes the samples of a chunk within `[mint, maxt]` into `out`.
pub fn decode_into(
    data: &[u8],
    mint: i64,
    maxt: i64,
    out: &mut Vec<Sample>,
) -> Result<(), ChunkDecodeError> {
    let expected = match data {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => {
            return Err(ChunkDecodeError {
                decoded: 0,
                expected: 0,
            })
        }
    };
    let mut r = BitReader {
        buf: &data[2..],
        pos: 0,
    };
    let mut t = 0i64;
    let mut t_delta = 0i64;
    let mut v = 0u64;
    let mut leading = 0u8;
    let mut trailing = 0u8;
    for i in 0..expected {
        let err = || ChunkDecodeError {
            decoded: i,
            expected,
        };
        match i {
            0 => {
                t = r.read_varint().ok_or_else(err)?;
                v = r.read_bits(64).ok_or_else(err)?;
            }
            _ => {
                if i == 1 {
                    t_delta = r.read_uvarint().ok_or_else(err)? as i64;
                } else {
                    let mut prefix = 0u8;
                    while prefix < 4 && r.read_bit().ok_or_else(err)? {
                        prefix += 1;
                    }
                    let width = match prefix {
                        0 => 0,
                        1 => 14,
                        2 => 17,
                        3 => 20,
                        _ => 64,
                    };
                    if width > 0 {
                        let raw = r.read_bits(width).ok_or_else(err)?;
                        // the ranges are asymmetric (-(2^(w-1)-1) ..= 2^(w-1)), as Prometheus's
                        let dod = if width == 64 || raw <= 1 << (width - 1) {
                            raw as i64
                        } else {
                            raw as i64 - (1i64 << width)
                        };
                        t_delta = t_delta.wrapping_add(dod);
                    }
                }
                t = t.wrapping_add(t_delta);
                if r.read_bit().ok_or_else(err)? {
                    if r.read_bit().ok_or_else(err)? {
                        leading = r.read_bits(5).ok_or_else(err)? as u8;
                        let mut sig = r.read_bits(6).ok_or_else(err)? as u8;
                        if sig == 0 {
                            sig = 64;
                        }
                        trailing = 64u8.checked_sub(leading + sig).ok_or_else(err)?;
                    }
                    let sig = 64 - leading - trailing;
                    let bits = r.read_bits(sig).ok_or_else(err)?;
                    v ^= bits << trailing;
                }
            }
        }
        if t > maxt {
            break;
        }
        if t >= mint {
            out.push(Sample {
                timestamp_ms: t,
                value: f64::from_bits(v),
            });
        }
    }
    Ok(())
}

/// Chunk encodings as recorded in a block's index.
pub const ENCODING_XOR: u8 = 0;
/// Byte-aligned decimal encoding used only in blocks (see [`encode_decimal`]).
pub const ENCODING_DECIMAL: u8 = 1;

/// Largest decimal exponent tried: values like `0.000000001` still qualify.
const MAX_DECIMAL_DIGITS: u32 = 9;
/// Integers up to 2^53 are exact in an f64.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

fn pow10(k: u32) -> f64 {
    10f64.powi(k as i32)
}

/// The fewest decimal digits `k` with `v == round(v * 10^k) / 10^k` bit-exactly.
fn decimal_digits(v: f64) -> Option<u32> {
    if !v.is_finite() {
        return None;
    }
    (0..=MAX_DECIMAL_DIGITS).find(|&k| {
        let p = pow10(k);
        let m = (v * p).round();
        m.abs() <= MAX_EXACT && (m / p).to_bits() == v.to_bits()
    })
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Encodes samples whose values are all short decimals (counters, rounded gauges, byte
/// counts) as integers: `uvarint n, varint t0, varint m0, u8 k, uvarint g`, then `n - 1`
/// timestamp entries (the first delta, then delta-of-deltas, zigzag varints), then `n - 1`
/// value entries `(m[i] - m[i-1]) / g` (zigzag varints), where `value = m / 10^k` and `g` is
/// the gcd of the mantissa deltas. Columns of small varints compress far better under the
/// block's zstd than XOR bit streams. `None` when a value does not qualify (NaN, infinities,
/// full-precision floats) or the samples are empty.
pub fn encode_decimal(samples: &[Sample]) -> Option<Vec<u8>> {
    use super::wal_records::{put_uvarint, put_varint};
    let first = samples.first()?;
    let mut k = 0;
    for s in samples {
        k = k.max(decimal_digits(s.value)?);
    }
    let p = pow10(k);
    let mut mantissas = Vec::with_capacity(samples.len());
    for s in samples {
        let m = (s.value * p).round();
        // checked through the integer, as decoding does: this also turns away -0.0
        if m.abs() > MAX_EXACT || ((m as i64) as f64 / p).to_bits() != s.value.to_bits() {
            return None;
        }
        mantissas.push(m as i64);
    }
    let g = mantissas
        .windows(2)
        .fold(0u64, |g, w| gcd(g, w[1].wrapping_sub(w[0]).unsigned_abs()));
    let g = g.max(1);
    let mut out = Vec::with_capacity(samples.len() * 2 + 16);
    put_uvarint(&mut out, samples.len() as u64);
    put_varint(&mut out, first.timestamp_ms);
    put_varint(&mut out, mantissas[0]);
    out.push(k as u8);
    put_uvarint(&mut out, g);
    let mut prev_delta = 0i64;
    for w in samples.windows(2) {
        let delta = w[1].timestamp_ms.wrapping_sub(w[0].timestamp_ms);
        put_varint(&mut out, delta.wrapping_sub(prev_delta));
        prev_delta = delta;
    }
    for w in mantissas.windows(2) {
        put_varint(&mut out, w[1].wrapping_sub(w[0]) / g as i64);
    }
    Some(out)
}

/// An unsigned LEB128 varint at `*pos` (at most 10 bytes), advancing `pos`; `None` when
/// the input ends first or the varint is too long. One-byte varints, by far the most
/// common in a decimal chunk's columns, take the first branch.
#[inline(always)]
fn uvarint_at(data: &[u8], pos: &mut usize) -> Option<u64> {
    let b = *data.get(*pos)?;
    *pos += 1;
    if b < 0x80 {
        return Some(u64::from(b));
    }
    let mut out = u64::from(b & 0x7f);
    for shift in (7..70).step_by(7) {
        let b = *data.get(*pos)?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(out);
        }
    }
    None
}

#[inline(always)]
fn varint_at(data: &[u8], pos: &mut usize) -> Option<i64> {
    let u = uvarint_at(data, pos)?;
    Some(((u >> 1) as i64) ^ -((u & 1) as i64))
}

/// Decodes a decimal chunk (see [`encode_decimal`]) within `[mint, maxt]`. The value column
/// starts where the timestamp column's `n - 1` varints end, found by counting their last
/// bytes; both columns are then read side by side, stopping at `maxt`, with nothing
/// buffered in between.
fn decode_decimal_into(
    data: &[u8],
    mint: i64,
    maxt: i64,
    out: &mut Vec<Sample>,
) -> Result<(), ChunkDecodeError> {
    let err = |decoded: usize, expected: u64| ChunkDecodeError {
        decoded: u16::try_from(decoded).unwrap_or(u16::MAX),
        expected: u16::try_from(expected).unwrap_or(u16::MAX),
    };
    let mut pos = 0;
    let n = uvarint_at(data, &mut pos).ok_or_else(|| err(0, 0))?;
    let header = |pos: &mut usize| -> Option<(i64, i64, u32, i64)> {
        let t0 = varint_at(data, pos)?;
        let m0 = varint_at(data, pos)?;
        let k = u32::from(*data.get(*pos)?);
        *pos += 1;
        let g = uvarint_at(data, pos)? as i64;
        Some((t0, m0, k, g))
    };
    let (t0, m0, k, g) = header(&mut pos).ok_or_else(|| err(0, n))?;
    if k > MAX_DECIMAL_DIGITS || n == 0 {
        return Err(err(0, n));
    }
    let count = usize::try_from(n).map_err(|_| err(0, n))?;
    // each later sample needs at least two bytes: reject impossible counts early
    if count.saturating_sub(1).saturating_mul(2) > data.len() {
        return Err(err(0, n));
    }
    let mut tpos = pos;
    let mut vpos = pos;
    let mut ends = 0;
    while ends < count - 1 {
        let b = *data.get(vpos).ok_or_else(|| err(0, n))?;
        vpos += 1;
        ends += usize::from(b < 0x80);
    }
    let p = pow10(k);
    let (mut t, mut delta, mut m) = (t0, 0i64, m0);
    for i in 0..count {
        if i > 0 {
            let dod = varint_at(data, &mut tpos).ok_or_else(|| err(i, n))?;
            let dm = varint_at(data, &mut vpos).ok_or_else(|| err(i, n))?;
            delta = delta.wrapping_add(dod);
            t = t.wrapping_add(delta);
            m = m.wrapping_add(dm.wrapping_mul(g));
        }
        if t > maxt {
            break;
        }
        if t >= mint {
            out.push(Sample {
                timestamp_ms: t,
                value: m as f64 / p,
            });
        }
    }
    Ok(())
}

/// Decodes a chunk of either encoding within `[mint, maxt]` into `out`.
pub fn decode_encoded_into(
    encoding: u8,
    data: &[u8],
    mint: i64,
    maxt: i64,
    out: &mut Vec<Sample>,
) -> Result<(), ChunkDecodeError> {
    match encoding {
        ENCODING_XOR => decode_into(data, mint, maxt, out),
        ENCODING_DECIMAL => decode_decimal_into(data, mint, maxt, out),
        _ => Err(ChunkDecodeError {
            decoded: 0,
            expected: 0,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::{stale_nan, STALE_NAN_BITS};

    fn round_trip(samples: &[(i64, f64)]) {
        let mut a = XorAppender::new();
        for &(t, v) in samples {
            a.append(t, v);
        }
        let got = decode(a.bytes()).unwrap();
        assert_eq!(got.len(), samples.len());
        for (g, &(t, v)) in got.iter().zip(samples) {
            assert_eq!(g.timestamp_ms, t);
            assert_eq!(g.value.to_bits(), v.to_bits(), "value at {t}");
        }
        let c = a.finish();
        assert_eq!(decode(&c.data).unwrap().len(), samples.len());
    }

    #[test]
    fn regular_counter_round_trips_compactly() {
        let samples: Vec<(i64, f64)> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 10_000, (i * 3) as f64))
            .collect();
        round_trip(&samples);
        let mut a = XorAppender::new();
        for &(t, v) in &samples {
            a.append(t, v);
        }
        // regular timestamps cost one bit; small integer increments a couple of bytes
        assert!(a.bytes().len() < 120 * 3, "{} bytes", a.bytes().len());
    }

    #[test]
    fn special_values_are_bit_exact() {
        let weird_nan = f64::from_bits(0x7ff8_0000_dead_beef);
        round_trip(&[
            (1, f64::NAN),
            (2, stale_nan()),
            (3, f64::INFINITY),
            (4, f64::NEG_INFINITY),
            (5, -0.0),
            (6, 0.0),
            (7, weird_nan),
            (8, f64::MIN_POSITIVE),
            (9, f64::MAX),
        ]);
        let mut a = XorAppender::new();
        a.append(10, 1.0);
        a.append(20, stale_nan());
        let got = decode(a.bytes()).unwrap();
        assert_eq!(got[1].value.to_bits(), STALE_NAN_BITS);
    }

    #[test]
    fn irregular_intervals_and_large_deltas() {
        let mut samples = vec![(-5_000, 1.5), (0, 2.5), (1, 3.5), (8_194, 4.0)];
        let mut t = 8_194i64;
        for step in [65_000i64, 65_600, 524_000, 600_000, 1 << 40, 3, 7, 1 << 50] {
            t += step;
            samples.push((t, step as f64 * 0.25));
        }
        round_trip(&samples);
        round_trip(&[(i64::MIN / 4, 1.0), (0, 2.0), (i64::MAX / 4, 3.0)]);
    }

    #[test]
    fn random_values_round_trip() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut t = 0i64;
        let samples: Vec<(i64, f64)> = (0..500)
            .map(|_| {
                t += rng.random_range(1..100_000);
                (t, f64::from_bits(rng.random()))
            })
            .collect();
        round_trip(&samples);
    }

    #[test]
    fn range_decoding_and_corruption() {
        let mut a = XorAppender::new();
        for i in 0..10 {
            a.append(i * 10, i as f64);
        }
        let mut out = Vec::new();
        decode_into(a.bytes(), 25, 55, &mut out).unwrap();
        assert_eq!(
            out.iter().map(|s| s.timestamp_ms).collect::<Vec<_>>(),
            vec![30, 40, 50]
        );
        let bytes = a.bytes();
        let err = decode(&bytes[..bytes.len() / 2]).unwrap_err();
        assert_eq!(err.expected, 10);
        assert!(decode(&[]).is_err());
    }

    #[test]
    fn decimal_encoding_round_trips_and_declines() {
        let samples: Vec<Sample> = (0..720)
            .map(|i| {
                Sample::new(
                    1_700_000_000_000 + i * 10_000 + (i % 7),
                    ((i * 37) as f64 * 0.01 * 100.0).round() / 100.0 + 0.25,
                )
            })
            .collect();
        let enc = encode_decimal(&samples).unwrap();
        let mut out = Vec::new();
        decode_encoded_into(ENCODING_DECIMAL, &enc, i64::MIN, i64::MAX, &mut out).unwrap();
        assert_eq!(out.len(), samples.len());
        for (a, b) in out.iter().zip(&samples) {
            assert_eq!(
                (a.timestamp_ms, a.value.to_bits()),
                (b.timestamp_ms, b.value.to_bits())
            );
        }
        // a window in the middle: the columns are read side by side up to its end
        let (from, to) = (samples[100].timestamp_ms, samples[130].timestamp_ms);
        out.clear();
        decode_encoded_into(ENCODING_DECIMAL, &enc, from, to, &mut out).unwrap();
        assert_eq!(out, samples[100..=130].to_vec());
        // multiples of 4096 share a gcd and stay exact; negative values and -0.0
        let bytes: Vec<Sample> = [4096.0, 8192.0, 4096.0 * 1000.0, -4096.0, 0.0]
            .iter()
            .enumerate()
            .map(|(i, &v)| Sample::new(i as i64, v))
            .collect();
        let enc = encode_decimal(&bytes).unwrap();
        out.clear();
        decode_encoded_into(ENCODING_DECIMAL, &enc, 1, 3, &mut out).unwrap();
        assert_eq!(out, bytes[1..4].to_vec());
        assert!(encode_decimal(&[Sample::new(0, -0.0)]).is_none());
        assert!(encode_decimal(&[Sample::new(0, 1.0), Sample::new(1, f64::NAN)]).is_none());
        assert!(encode_decimal(&[Sample::new(0, 0.1 + 0.2)]).is_none());
        assert!(encode_decimal(&[]).is_none());
        assert!(decode_encoded_into(
            ENCODING_DECIMAL,
            &enc[..enc.len() - 1],
            i64::MIN,
            i64::MAX,
            &mut out
        )
        .is_err());
        assert!(decode_encoded_into(9, &enc, i64::MIN, i64::MAX, &mut out).is_err());
    }

    #[test]
    fn cut_policy() {
        let mut a = XorAppender::new();
        assert!(!a.is_full(0));
        a.append(0, 1.0);
        assert!(a.is_full(MAX_CHUNK_SPAN_MS));
        for i in 1..MAX_SAMPLES_PER_CHUNK {
            a.append(i64::from(i), 1.0);
        }
        assert!(a.is_full(1_000));
    }
}
