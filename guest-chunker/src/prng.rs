//! A small deterministic PRNG (SplitMix64) for stream ids and chunk data.
//!
//! Not cryptographic: ids only need to be distinct across runs and chunkers,
//! which 128 bits from a clock-seeded generator give with overwhelming
//! probability. A fixed seed makes a run reproducible.

/// SplitMix64 (Steele, Lea, Flood 2014): a 64-bit state advanced by a fixed
/// odd increment and mixed on output; passes BigCrush.
#[derive(Debug, Clone)]
pub struct Prng {
    state: u64,
}

impl Prng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Prng {
        Prng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform-enough index below `n` (`n` > 0), like Gazette's
    /// `prngInt(n)`: random bits modulo `n`.
    pub fn below(&mut self, n: usize) -> usize {
        // usize is 32 bits on wasm32 and 64 bits natively; reduce in u64.
        (self.next_u64() % n as u64) as usize
    }

    /// Fills `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence_and_different_seeds_differ() {
        let mut a = Prng::new(42);
        let mut b = Prng::new(42);
        let mut c = Prng::new(43);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn below_stays_in_range_and_reaches_every_value() {
        let mut prng = Prng::new(7);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let i = prng.below(5);
            assert!(i < 5);
            seen[i] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
