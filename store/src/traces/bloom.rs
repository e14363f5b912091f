//! A Bloom filter over trace ids: a trace-id lookup skips, without reading the disk, every
//! segment that does not hold the trace (about 1% false positives at 10 bits per trace).
//!
//! Trace ids are usually random, but some tracers leave the upper half zero (64-bit ids), so
//! both halves go through SplitMix64 before use. The hashing is part of the segment format
//! (`docs/format/traces.md`); changing it needs a new format version.

use crate::traces::model::TraceId;

/// Hash functions per key.
pub const HASHES: u32 = 7;
/// Filter bits per trace.
pub const BITS_PER_KEY: usize = 10;

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The two base hashes of a trace id (double hashing derives the rest).
fn base_hashes(id: &TraceId) -> (u64, u64) {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&id.0[..8]);
    hi.copy_from_slice(&id.0[8..]);
    let h1 = splitmix64(u64::from_le_bytes(lo) ^ splitmix64(u64::from_le_bytes(hi)));
    let h2 = splitmix64(h1 ^ 0x9e37_79b9_7f4a_7c15) | 1;
    (h1, h2)
}

#[derive(Clone, Debug, PartialEq)]
pub struct Bloom {
    pub words: Vec<u64>,
    pub hashes: u32,
}

impl Bloom {
    /// An empty filter sized for `keys` trace ids.
    pub fn with_capacity(keys: usize) -> Bloom {
        let bits = (keys.saturating_mul(BITS_PER_KEY)).max(64);
        Bloom {
            words: vec![0; bits.div_ceil(64)],
            hashes: HASHES,
        }
    }

    fn bits(&self) -> u64 {
        self.words.len() as u64 * 64
    }

    pub fn insert(&mut self, id: &TraceId) {
        let m = self.bits();
        if m == 0 {
            return;
        }
        let (h1, h2) = base_hashes(id);
        for i in 0..u64::from(self.hashes) {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % m;
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// False means the id is certainly absent.
    pub fn may_contain(&self, id: &TraceId) -> bool {
        let m = self.bits();
        if m == 0 {
            return true;
        }
        let (h1, h2) = base_hashes(id);
        (0..u64::from(self.hashes)).all(|i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % m;
            self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64, upper_zero: bool) -> TraceId {
        let mut b = [0u8; 16];
        b[8..].copy_from_slice(&n.to_le_bytes());
        if !upper_zero {
            b[..8].copy_from_slice(&n.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        TraceId(b)
    }

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        for upper_zero in [false, true] {
            let mut b = Bloom::with_capacity(10_000);
            for n in 0..10_000 {
                b.insert(&id(n, upper_zero));
            }
            assert!((0..10_000).all(|n| b.may_contain(&id(n, upper_zero))));
            let fp = (10_000..110_000)
                .filter(|&n| b.may_contain(&id(n, upper_zero)))
                .count();
            assert!(fp < 2_000, "{fp} false positives in 100k");
        }
    }

    #[test]
    fn empty_filter_holds_nothing() {
        let b = Bloom::with_capacity(0);
        assert!(!b.may_contain(&id(1, false)));
    }
}
