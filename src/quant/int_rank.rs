//! What the integer-ranked searches share (Q4_0's `int_search.rs`, Q4_1's
//! `int_search_q4_1.rs`, IQ4_NL's `int_search_iq4_nl.rs`): a block held as
//! 16-bit integers, its weights as integers, and the choice of the two
//! best-ranked candidates, the first among equals.

use super::scalar::QK;

/// The largest magnitude the integers hold.
pub(super) const FULL: f32 = 32767.0;

/// The most candidates a search ranks: a candidate's index fits the low
/// five bits of its key.
pub(super) const MAX_CANDIDATES: usize = 32;

/// The largest magnitude of `v` (as bits: for finite values their order is
/// the values', and an integer maximum vectorizes where an f32 one is a
/// chain of comparisons).
#[inline(always)]
pub(super) fn largest(v: &[f32; QK]) -> f32 {
    let mut m = 0u32;
    for &e in v {
        m = m.max(e.to_bits() & 0x7fff_ffff);
    }
    f32::from_bits(m)
}

/// Whether every weight of the block is the same (no importance, or an
/// importance constant over the block): the searches then rank on the block
/// alone, `Q = 1`.
#[inline(always)]
pub(super) fn all_equal(w: &[f32; QK]) -> bool {
    let mut equal = true;
    for &v in w {
        equal &= v == w[0];
    }
    equal
}

/// The weighted block `P` and the weights `Q` as integers, `P` rounded to
/// [`FULL`] of its largest magnitude and `Q` to `q_full` of its, and the
/// factor `kq/kp` that turns a ratio of sums in those units back into the
/// block's; None where the factors leave f32.
#[inline(always)]
pub(super) fn weighted_integers<R: Integers>(
    weighted: &[f32; QK],
    w: &[f32; QK],
    q_full: f32,
) -> Option<([i16; QK], [i16; QK], f32)> {
    let (kp, kq) = (FULL / largest(weighted), q_full / largest(w));
    let to_scale = kq / kp;
    if !(kp.is_finite() && kq.is_finite() && to_scale.is_normal()) {
        return None;
    }
    Some((R::integers(weighted, kp), R::integers(w, kq), to_scale))
}

/// The block's integer kernels that do not depend on the format.
pub(super) trait Integers {
    /// `round(v·k)` of each value (half to even), within ±32767.
    #[inline(always)]
    fn integers(v: &[f32; QK], k: f32) -> [i16; QK] {
        let mut out = [0i16; QK];
        for (o, &e) in out.iter_mut().zip(v) {
            *o = (e * k).clamp(-FULL, FULL).round_ties_even() as i16;
        }
        out
    }

    /// [`best_two`].
    #[inline(always)]
    fn best_two_keys(keys: &[u32; MAX_CANDIDATES]) -> [usize; 2] {
        best_two(keys)
    }
}

/// The key of candidate `c` of rank `rank` (non-negative, so its f32 bits
/// are ordered as integers): the rank's bits with the low five replaced by
/// `31 − c`, so that the largest key is the first of the largest ranks.
#[inline(always)]
pub(super) fn key(rank: f32, c: usize) -> u32 {
    (rank.to_bits() & !31) | (31 - c as u32)
}

/// The candidates of the largest two keys, as indices (two integer maxima).
#[inline(always)]
pub(super) fn best_two(keys: &[u32; MAX_CANDIDATES]) -> [usize; 2] {
    let mut first = 0u32;
    for &k in keys {
        first = first.max(k);
    }
    let mut second = 0u32;
    for &k in keys {
        second = second.max(if k == first { 0 } else { k });
    }
    [31 - (first & 31) as usize, 31 - (second & 31) as usize]
}
