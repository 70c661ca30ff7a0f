//! A bloom filter per table (pure): `hash_count` probes by double hashing of a 64-bit key hash.

/// FNV-1a over the key, finished with a SplitMix64 mix: deterministic across runs and machines.
pub fn hash(key: &[u8]) -> u64 {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in key {
        state ^= u64::from(byte);
        state = state.wrapping_mul(0x0000_0100_0000_01b3);
    }
    state = (state ^ (state >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    state = (state ^ (state >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    state ^ (state >> 31)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bloom {
    hash_count: u32,
    bits: Vec<u8>,
}

impl Bloom {
    /// A filter for `hashes` with about `bits_per_key` bits each.
    pub fn build(hashes: &[u64], bits_per_key: u32) -> Bloom {
        let bit_count = (hashes.len() as u64 * u64::from(bits_per_key)).max(64);
        let mut bloom = Bloom {
            // k = ln 2 · bits per key minimises false positives.
            hash_count: ((f64::from(bits_per_key) * 0.69) as u32).clamp(1, 30),
            bits: vec![0; bit_count.div_ceil(8) as usize],
        };
        for &hash in hashes {
            bloom.probe(hash, |bits, bit| {
                bits[bit / 8] |= 1 << (bit % 8);
                true
            });
        }
        bloom
    }

    fn probe(&mut self, hash: u64, mut visit: impl FnMut(&mut [u8], usize) -> bool) -> bool {
        let bit_count = self.bits.len() as u64 * 8;
        let (mut probe, step) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        for _ in 0..self.hash_count {
            if !visit(&mut self.bits, (probe % bit_count) as usize) {
                return false;
            }
            probe = probe.wrapping_add(step);
        }
        true
    }

    /// False means the key is certainly absent.
    pub fn may_contain(&self, hash: u64) -> bool {
        let bit_count = self.bits.len() as u64 * 8;
        if bit_count == 0 {
            return true;
        }
        let (mut probe, step) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        for _ in 0..self.hash_count {
            let bit = (probe % bit_count) as usize;
            if self.bits[bit / 8] & (1 << (bit % 8)) == 0 {
                return false;
            }
            probe = probe.wrapping_add(step);
        }
        true
    }

    /// `[hash_count u32][bits]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.hash_count.to_le_bytes().to_vec();
        out.extend_from_slice(&self.bits);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Bloom, &'static str> {
        if bytes.len() < 4 {
            return Err("bloom block too short");
        }
        let hash_count = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        if hash_count == 0 || hash_count > 30 {
            return Err("bloom hash count out of range");
        }
        Ok(Bloom { hash_count, bits: bytes[4..].to_vec() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let keys: Vec<u64> = (0u32..10_000).map(|i| hash(&i.to_le_bytes())).collect();
        let bloom = Bloom::decode(&Bloom::build(&keys, 10).encode()).unwrap();
        assert!(keys.iter().all(|&key| bloom.may_contain(key)));
        let false_positives =
            (10_000u32..20_000).filter(|i| bloom.may_contain(hash(&i.to_le_bytes()))).count();
        assert!(false_positives < 300, "{false_positives} false positives in 10000");
    }
}
