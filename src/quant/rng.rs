//! The counter-based random numbers of stochastic rounding.
//!
//! The number for element `i` is a pure function of `(seed, i)`, so the bytes do
//! not depend on how the input is split between threads or dispatches, and the
//! Vulkan kernels compute the same numbers. It uses only 32-bit integer
//! operations (xor, shifts, wrapping multiplication), which GLSL has everywhere:
//!
//! ```text
//! mix(h)   = h ^= h >> 16; h *= 0x7feb352d; h ^= h >> 15; h *= 0x846ca68b; h ^= h >> 16
//! r(s, i)  = mix(i_lo ^ mix(s_lo ^ mix(s_hi ^ mix(i_hi ^ 0x9e3779b9))))
//! ```
//!
//! `mix` is a bijection of u32 with good avalanche (the "lowbias32" constants),
//! so consecutive indices give unrelated numbers.

/// One round of the 32-bit integer mixer.
pub fn mix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^= h >> 16;
    h
}

/// The random 32 bits for element `index` under `seed`.
pub fn random_u32(seed: u64, index: u64) -> u32 {
    let (seed_lo, seed_hi) = (seed as u32, (seed >> 32) as u32);
    let (index_lo, index_hi) = (index as u32, (index >> 32) as u32);
    mix(index_lo ^ mix(seed_lo ^ mix(seed_hi ^ mix(index_hi ^ 0x9e37_79b9))))
}

/// A uniform number in [0, 1) with 24 random bits (exact in f32).
pub fn uniform(seed: u64, index: u64) -> f32 {
    (random_u32(seed, index) >> 8) as f32 * (1.0 / 16_777_216.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_numbers_cover_the_unit_interval_evenly() {
        let mut buckets = [0u32; 16];
        let n = 64_000u64;
        for i in 0..n {
            let u = uniform(42, i);
            assert!((0.0..1.0).contains(&u));
            buckets[(u * 16.0) as usize] += 1;
        }
        // Each bucket expects 4000; a 5-sigma band is about ±300.
        for b in buckets {
            assert!((3700..4300).contains(&b), "{buckets:?}");
        }
    }

    #[test]
    fn the_seed_and_both_index_halves_matter() {
        assert_ne!(random_u32(1, 5), random_u32(2, 5));
        assert_ne!(random_u32(1, 5), random_u32(1, 5 + (1 << 32)));
        assert_ne!(random_u32(1 << 32, 5), random_u32(0, 5));
        assert_eq!(random_u32(7, 9), random_u32(7, 9));
    }
}
