//! IQ4_NL's error-minimising search with its candidates ranked in 16-bit
//! integers (the scheme of Q4_0's `int_search.rs` with IQ4_NL's 16
//! non-linear levels). The candidate scales put the block's largest
//! magnitude at or near either end level (−127, as ggml's search does, or
//! 113), as the reference search's (`search.rs`) do, [`ENDS`]; each is ranked on
//! integers by the error its levels leave after a least-squares refit, and
//! only the best two, each refitted once more, and ggml's reference block
//! are evaluated in f32 as stored.
//!
//! With `u = x·id₀` (`id₀` the reference block's first inverse scale, so
//! `u` lies in [−127, 127]) held as `U = round(u·2⁸)`, a candidate
//! `s = id/id₀` held as `S = round(s·2¹³)` gives `T = ⌊(U·S + 2¹⁴)/2¹⁵⌋`,
//! `t = u·s` in units of 2⁻⁶ (one rounding multiply), and the level
//! `v = LEVELS[k]`, `k` the number of midpoints `M` with `T ≥ 64·M` (ggml's
//! rounding to the nearest level, ties up). The rank is `(Σ v·P)² / Σ v²·Q`,
//! `P` and `Q` the weighted block and the weights rounded to 15 and 11 bits
//! of their largest (without importance `P = U`, `Q = 1`); the sums are
//! exact integers, so the AVX2 kernel (which finds `k` with three 16-entry
//! lookups and two comparisons, as the nearest kernel does) and the
//! portable [`Portable`] rank alike.
//!
//! The evaluation ([`Scores::evaluate`]) finds each candidate's indices as
//! `iq4_nl_with_scale` does (ggml's reference block: its own indices) and
//! scores its stored block directly, `Σ w·(x − d·v)²` in lanes of
//! eight; where the winner lies within `EXACT_BELOW` of the reference
//! block's score, the two stored blocks' errors are compared in f64.

use super::f32_scores::{lane_sum, stored};
use super::int_rank::{Integers, MAX_CANDIDATES, all_equal, key, weighted_integers};
use super::scalar::{self, IQ4_NL_LEVELS, IQ4_NL_MIDPOINTS, QK, inverse_scale, signed_max};
use super::search;

/// The candidates a block ranks.
pub(super) const CANDIDATES: usize = 16;
const _: () = assert!(CANDIDATES <= MAX_CANDIDATES);

/// Where each candidate puts the block's largest element (`max/d`): from
/// 13 beyond the end level −127 to 7 inside it, and 9 to either side of
/// the other end, 113.
const ENDS: [f32; CANDIDATES] = [
    -140.0, -137.0, -134.0, -132.0, -130.0, -128.0, -126.0, -124.0, -122.0, -120.0, 104.0, 107.0,
    110.0, 113.0, 116.0, 119.0,
];

/// The candidates' `S = round(s·2¹³)`, `s = ENDS/−127`.
pub(super) const STEPS: [i16; CANDIDATES] = steps();

const fn steps() -> [i16; CANDIDATES] {
    let mut out = [0i16; CANDIDATES];
    let mut c = 0;
    while c < CANDIDATES {
        let s = ENDS[c] / -127.0 * 8192.0;
        out[c] = if s >= 0.0 {
            (s + 0.5) as i16
        } else {
            -((-s + 0.5) as i16)
        };
        c += 1;
    }
    out
}

/// The block in the integers a candidate is ranked on.
pub(super) struct Ranked {
    /// `round(x·id₀·2⁸)`.
    pub u: [i16; QK],
    /// The weighted block (`U` itself without importance).
    pub p: [i16; QK],
    /// The weights, or None where all are equal.
    pub q: Option<[i16; QK]>,
}

/// `Σ v·P` and `Σ v²·Q` of each candidate.
pub(super) type Sums2 = [[i32; MAX_CANDIDATES]; 2];

/// `T = u·s·2⁶` of `U` under the candidate `S` (what `_mm256_mulhrs_epi16`
/// computes).
#[inline(always)]
pub(super) fn scaled(u: i16, step: i16) -> i32 {
    (i32::from(u) * i32::from(step) + (1 << 14)) >> 15
}

/// The level nearest `t = T/64`, ties up.
#[inline(always)]
pub(super) fn level(t: i32) -> i32 {
    let k: usize = IQ4_NL_MIDPOINTS
        .iter()
        .map(|&m| usize::from(t >= (m * 64.0) as i32))
        .sum();
    i32::from(IQ4_NL_LEVELS[k])
}

/// The integer sums a candidate is ranked by.
pub(super) trait Scores: Integers {
    /// `Σ v·P` and `Σ v²·Q` of every candidate of [`STEPS`] (`Q = 1` where
    /// `ranked.q` is None).
    fn scores(ranked: &Ranked) -> Sums2;

    /// The level index of each of eight `t = x·id` (`scalar::iq4_nl_index`).
    #[inline(always)]
    fn indices(t: &[f32; 8]) -> [u8; 8] {
        let mut out = [0u8; 8];
        for (o, &t) in out.iter_mut().zip(t) {
            *o = scalar::iq4_nl_index(t);
        }
        out
    }

    /// `scalar::signed_max`.
    #[inline(always)]
    fn signed_max(x: &[f32; QK]) -> f32 {
        signed_max(x)
    }

    /// `scalar::iq4_nl_with_scale`.
    #[inline(always)]
    fn with_scale(x: &[f32; QK], d: f32, out: &mut [u8]) {
        scalar::iq4_nl_with_scale(x, d, out);
    }

    /// Each candidate's weighted squared error and, with `SUMS`, its
    /// levels' `Σ w·x·v` and `Σ w·v²`, in lanes of eight (lane `j` adds
    /// elements j, j+8, j+16, j+24 in turn, then [`lane_sum`]); a candidate
    /// is `(id, d)`: the levels those of `x·id`, the values `d·v`.
    #[inline(always)]
    fn evaluate<const SUMS: bool, const N: usize>(
        block: &Block,
        candidates: [(f32, f32); N],
    ) -> [[f32; 3]; N] {
        let mut out = [[0.0f32; 3]; N];
        for (o, &(id, d)) in out.iter_mut().zip(&candidates) {
            // sums[i][j]: sum i of lane j.
            let mut sums = [[0.0f32; 8]; 3];
            let [errors, products, squares] = &mut sums;
            for k in 0..QK / 8 {
                let e = 8 * k;
                let (x, w, wx) = (&block.x[e..e + 8], &block.w[e..e + 8], &block.wx[e..e + 8]);
                let mut t = [0.0f32; 8];
                for (t, &x) in t.iter_mut().zip(x) {
                    *t = x * id;
                }
                let indices = Self::indices(&t);
                for (j, error) in errors.iter_mut().enumerate() {
                    let v = scalar::iq4_nl_level(indices[j]);
                    let r = x[j] - d * v;
                    *error += w[j] * r * r;
                    if SUMS {
                        products[j] += wx[j] * v;
                        squares[j] += w[j] * v * v;
                    }
                }
            }
            *o = sums.map(|lanes| lane_sum(&lanes));
        }
        out
    }
}

/// The portable sums, element by element.
pub(super) struct Portable;

impl Integers for Portable {}

impl Scores for Portable {
    #[inline(always)]
    fn scores(ranked: &Ranked) -> Sums2 {
        let mut sums = [[0i32; MAX_CANDIDATES]; 2];
        for (c, &step) in STEPS.iter().enumerate() {
            for j in 0..QK {
                let v = level(scaled(ranked.u[j], step));
                sums[0][c] += v * i32::from(ranked.p[j]);
                sums[1][c] += v * v * ranked.q.map_or(1, |q| i32::from(q[j]));
            }
        }
        sums
    }
}

/// The two candidates whose levels leave the least error after a
/// least-squares refit: the largest `a²/b`, the first among equals.
#[inline(always)]
fn best_two<R: Scores>([a, b]: &Sums2) -> [usize; 2] {
    let mut keys = [0u32; MAX_CANDIDATES];
    for c in 0..CANDIDATES {
        let (a, b) = (a[c] as f32, b[c] as f32);
        // Computed whatever the sign, then selected: the loop vectorizes.
        let rank = a * a / b;
        keys[c] = key(if b > 0.0 { rank } else { 0.0 }, c);
    }
    R::best_two_keys(&keys)
}

/// Relative gap (to the reference block's score) below which the winner
/// and the reference block are compared exactly: each score is a sum of
/// positive terms `(w·r)·r`, `r = x − d·v` rounded twice, four terms to a
/// lane and three levels of lane sums, so within 6e-7 of itself.
const EXACT_BELOW: f32 = 2e-6;
const TINY: f32 = 1e-30;

/// The largest magnitudes the search handles: from where every candidate
/// scale (at most `max/134`) is an f16 normal to where `w·x²` nears f32's
/// comfortable range.
const MAGNITUDES: std::ops::RangeInclusive<f32> = 134.0 * 6.103_515_6e-5..=6e4;

/// The weights' integers: 11 bits, so that `Σ v²·Q` (v² up to 127²) stays
/// within i32.
const WEIGHT_FULL: f32 = 2047.0;

/// A block the f32 evaluation handles.
pub(super) struct Block<'a> {
    pub x: &'a [f32; QK],
    pub w: &'a [f32; QK],
    pub wx: [f32; QK],
    max: f32,
}

/// The stored least-squares scale of sums `(_, Σ w·x·v, Σ w·v²)`, or None.
#[inline(always)]
fn refit([_, a, b]: [f32; 3]) -> Option<f32> {
    let d = a / b;
    (b > 0.0 && d.is_finite() && d != 0.0).then(|| stored(d))
}

/// The block in integers for the inverse scale `id`, and the factor that
/// turns a candidate's `a / b` into its scale; None where the weights'
/// factors leave f32.
#[inline(always)]
fn ranked<R: Scores>(block: &Block, id: f32, uniform: bool) -> Option<(Ranked, f32)> {
    let k = id * 256.0;
    let u = R::integers(block.x, k);
    if uniform {
        return Some((Ranked { u, p: u, q: None }, 1.0 / k));
    }
    let (p, q, to_scale) = weighted_integers::<R>(&block.wx, block.w, WEIGHT_FULL)?;
    Some((Ranked { u, p, q: Some(q) }, to_scale))
}

/// The index of each element of `x` at the inverse scale `id`.
#[inline(always)]
fn indices<R: Scores>(x: &[f32; QK], id: f32) -> [u8; QK] {
    let mut q = [0u8; QK];
    for k in 0..QK / 8 {
        let mut t = [0.0f32; 8];
        for (j, t) in t.iter_mut().enumerate() {
            *t = x[8 * k + j] * id;
        }
        q[8 * k..8 * k + 8].copy_from_slice(&R::indices(&t));
    }
    q
}

/// The block, or None where the reference search takes it.
#[inline(always)]
fn block_of<'a>(x: &'a [f32; QK], w: &'a [f32; QK], max: f32) -> Option<Block<'a>> {
    let mut wx = [0.0f32; QK];
    let mut lanes = [0.0f32; 8];
    for k in 0..QK / 8 {
        for (j, lane) in lanes.iter_mut().enumerate() {
            let e = 8 * k + j;
            wx[e] = w[e] * x[e];
            *lane += wx[e] * x[e];
        }
    }
    let energy = lane_sum(&lanes);
    (MAGNITUDES.contains(&max.abs()) && energy.is_finite() && energy >= TINY).then_some(Block {
        x,
        w,
        wx,
        max,
    })
}

/// IQ4_NL with the lowest weighted error, the integer sums from `R`.
#[inline(always)]
pub(super) fn iq4_nl_with<R: Scores>(x: &[f32], w: &[f32], out: &mut [u8]) {
    let (Ok(xs), Ok(ws)) = (<&[f32; QK]>::try_from(x), <&[f32; QK]>::try_from(w)) else {
        unreachable!("one block of 32");
    };
    let uniform = all_equal(ws);
    let max = R::signed_max(xs);
    let id0 = inverse_scale(max / -127.0);
    let Some((block, (ranked, to_scale))) =
        block_of(xs, ws, max).and_then(|b| ranked::<R>(&b, id0, uniform).map(|r| (b, r)))
    else {
        search::iq4_nl(x, w, out);
        return;
    };
    // ggml's reference block: the indices at id₀, its own refit.
    let q0 = indices::<R>(xs, id0);
    let d_reference = stored(scalar::iq4_nl_refit(x, &q0, block.max.abs()));
    // The reference block (its own indices, q0) and the best two, then the
    // refit of each.
    let reference = (id0, d_reference);
    let mut first = [reference; 3];
    let sums = R::scores(&ranked);
    for (f, c) in first[1..].iter_mut().zip(best_two::<R>(&sums)) {
        let (a, b) = (sums[0][c] as f32, sums[1][c] as f32);
        let d = a / b * to_scale;
        if b > 0.0 && d.is_finite() && d != 0.0 {
            let d = stored(d);
            *f = (inverse_scale(d), d);
        }
    }
    let scored = R::evaluate::<true, 3>(&block, first);
    let e_reference = scored[0][0];
    // A duplicate of the reference ties with it and is never taken.
    let mut best = (e_reference, None);
    let mut offer = |(_, d): (f32, f32), error: f32| {
        if error < best.0 {
            best = (error, Some(d));
        }
    };
    for (&c, s) in first.iter().zip(&scored).skip(1) {
        offer(c, s[0]);
    }
    let again_of = |k: usize| refit(scored[k]).map_or(reference, |d| (inverse_scale(d), d));
    let again = [again_of(0), again_of(1), again_of(2)];
    let rescored = R::evaluate::<false, 3>(&block, again);
    for (&c, s) in again.iter().zip(&rescored) {
        offer(c, s[0]);
    }
    write::<R>(&block, e_reference, best, out);
}

/// Writes the block of the scale `best.1`, or the reference block where
/// none beat it; where the two scores lie within [`EXACT_BELOW`], the two
/// stored blocks' errors decide, in f64.
#[inline(always)]
fn write<R: Scores>(block: &Block, e_reference: f32, best: (f32, Option<f32>), out: &mut [u8]) {
    let Some(d) = best.1 else {
        scalar::iq4_nl_nearest(block.x, out);
        return;
    };
    R::with_scale(block.x, d, out);
    if e_reference - best.0 < EXACT_BELOW * e_reference + TINY {
        let mut reference = [0u8; 18];
        scalar::iq4_nl_nearest(block.x, &mut reference);
        search::keep_the_better(block.x, block.w, out, &reference, scalar::iq4_nl_dequantize);
    }
}

/// IQ4_NL with the lowest weighted error: the AVX2 kernels where the CPU
/// has them, else the portable ones (the same bytes).
pub fn iq4_nl(x: &[f32], w: &[f32], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if super::simd_x86::available() {
        // SAFETY: AVX2 and F16C were detected just above.
        unsafe { super::int_search_x86::iq4_nl_search(x, w, out) };
        return;
    }
    iq4_nl_with::<Portable>(x, w, out);
}

/// [`iq4_nl`] on the portable kernels whatever the CPU (tests compare the
/// two).
#[cfg(test)]
pub(super) fn iq4_nl_portable(x: &[f32], w: &[f32], out: &mut [u8]) {
    iq4_nl_with::<Portable>(x, w, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::f32_scores::tests::{Kernels, fast_search_tests, the_reference_decides};

    fast_search_tests! {
        format: crate::format::Format::IQ4_NL, kernels: kernels(),
        simd: crate::quant::int_search_x86::iq4_nl_search, portable: iq4_nl_portable,
        real_stride: 16,
        every_block: as_good_as_the_reference_on_every_block_of_every_real_tensor
    }

    #[test]
    fn blocks_beyond_the_integers_and_the_f16_steps_take_the_reference_search() {
        // Weights so small that 32767 over the largest leaves f32, and a
        // block whose scales would be f16 subnormals: the reference search
        // decides both.
        let wide: [f32; QK] = std::array::from_fn(|j| 5e3 * (j as f32 / 16.0 - 1.0));
        let tiny_w: [f32; QK] = std::array::from_fn(|j| 1e-39 * (1.0 + (j % 3) as f32));
        let small: [f32; QK] = std::array::from_fn(|j| 1e-3 * (j as f32 / 16.0 - 1.0));
        the_reference_decides(&kernels(), &[(wide, tiny_w), (small, [1.0; QK])]);
    }

    fn kernels() -> Kernels {
        Kernels {
            bytes: 18,
            nearest: scalar::iq4_nl_nearest,
            search: iq4_nl,
            reference: search::iq4_nl,
            dequantize: scalar::iq4_nl_dequantize,
        }
    }

    #[test]
    fn ordinary_blocks_take_the_fast_search() {
        // The reference search is only the fallback: a block of moderate
        // values and weights is the search's own.
        let x: [f32; QK] = std::array::from_fn(|j| (j as f32 * 0.37).sin());
        let w: [f32; QK] = std::array::from_fn(|j| 1.0 + (j % 3) as f32);
        let max = x
            .iter()
            .copied()
            .fold(0.0f32, |m, v| if v.abs() > m.abs() { v } else { m });
        for w in [&[1.0; QK], &w] {
            assert!(block_of(&x, w, max).is_some());
        }
    }

    #[test]
    fn indices_and_refits_are_those_of_the_scale_given() {
        let x: [f32; QK] = std::array::from_fn(|j| (j as f32 - 15.5) * 0.37);
        let id = 1.0 / 0.05;
        let q = indices::<Portable>(&x, id);
        for j in 0..QK {
            assert_eq!(q[j], scalar::iq4_nl_index(x[j] * id), "element {j}");
        }
        // Σw·x·v = 3, Σw·v² = 2: the least-squares scale 1.5; none without
        // levels.
        assert_eq!(refit([0.0, 3.0, 2.0]), Some(1.5));
        assert_eq!(refit([0.0, 1.0, 3.0]), Some(stored(1.0 / 3.0)));
        assert_eq!(refit([0.0, 1.0, 0.0]), None);
        assert_eq!(refit([0.0, 0.0, 2.0]), None);
    }

    #[test]
    fn levels_are_those_of_the_nearest_index() {
        for t in -9000..9000 {
            let expected = scalar::iq4_nl_level(scalar::iq4_nl_index(t as f32 / 64.0));
            assert_eq!(level(t) as f32, expected, "{t}");
        }
    }
}
