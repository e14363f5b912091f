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
        let mut bits = BitWriter {
            buf: Vec::with_capacity(32),
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
