//! A small, fast, seedable generator (xoshiro256++). Every consumer of randomness owns one, seeded
//! by the runtime, so a simulation seed fixes every random draw of every node.

/// xoshiro256++ (Blackman and Vigna): 256 bits of state, passes BigCrush, a few ns per draw.
#[derive(Clone, Debug)]
pub struct Rng {
    state: [u64; 4],
}

impl Rng {
    /// A generator whose whole output is fixed by `seed`.
    pub fn with_seed(seed: u64) -> Rng {
        // SplitMix64 spreads one word of seed over the four words of state, as the authors advise.
        let mut mix = seed;
        let mut state = [0u64; 4];
        for word in &mut state {
            mix = mix.wrapping_add(0x9e37_79b9_7f4a_7c15);
            *word = splitmix64(mix);
        }
        Rng { state }
    }

    pub fn next_u64(&mut self) -> u64 {
        let [s0, s1, s2, s3] = &mut self.state;
        let result = s0.wrapping_add(*s3).rotate_left(23).wrapping_add(*s0);
        let t = *s1 << 17;
        *s2 ^= *s0;
        *s3 ^= *s1;
        *s1 ^= *s2;
        *s0 ^= *s3;
        *s2 ^= t;
        *s3 = s3.rotate_left(45);
        result
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `0..bound` (Lemire's multiply-shift; the bias is below 2^-32 for the bounds used
    /// here and does not matter for simulation). `bound` must be non-zero.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "Rng::below(0)");
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// Uniform in `low..=high`.
    pub fn range_inclusive(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "empty range {low}..={high}");
        match (high - low).checked_add(1) {
            Some(span) => low + self.below(span),
            None => self.next_u64(),
        }
    }

    /// Uniform in [0, 1).
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `probability` (clamped to [0, 1]).
    pub fn chance(&mut self, probability: f64) -> bool {
        probability > 0.0 && self.unit_f64() < probability
    }

    /// A uniformly chosen index into a collection of `len` elements. `len` must be non-zero.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    pub fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for last in (1..items.len()).rev() {
            let pick = self.index(last + 1);
            items.swap(last, pick);
        }
    }

    /// An independent generator, for handing randomness to a sub-component.
    pub fn fork(&mut self) -> Rng {
        Rng::with_seed(self.next_u64())
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let mut a = Rng::with_seed(7);
        let mut b = Rng::with_seed(7);
        let mut c = Rng::with_seed(8);
        let stream_a: Vec<u64> = (0..16).map(|_| a.next_u64()).collect();
        let stream_b: Vec<u64> = (0..16).map(|_| b.next_u64()).collect();
        let stream_c: Vec<u64> = (0..16).map(|_| c.next_u64()).collect();
        assert_eq!(stream_a, stream_b);
        assert_ne!(stream_a, stream_c);
    }

    #[test]
    fn below_stays_in_bounds_and_covers_them() {
        let mut rng = Rng::with_seed(1);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let value = rng.below(10);
            assert!(value < 10);
            seen[value as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(rng.range_inclusive(5, 5), 5);
        let _full_range = rng.range_inclusive(0, u64::MAX); // Must not overflow.
    }

    #[test]
    fn unit_and_chance_are_in_range() {
        let mut rng = Rng::with_seed(2);
        let hits = (0..10_000).filter(|_| rng.chance(0.25)).count();
        assert!((2000..3000).contains(&hits), "{hits}");
        assert!(!rng.chance(0.0));
        assert!((0..100).all(|_| (0.0..1.0).contains(&rng.unit_f64())));
    }
}
