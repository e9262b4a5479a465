//! Q4_1's error-minimising search with its candidates ranked in 16-bit
//! integers (the scheme of Q4_0's `int_search.rs`, with a minimum beside
//! the scale). A candidate is a range `[lo, hi]` within the block's
//! `[min, max]` that the 16 levels span: 16 of the reference search's
//! ranges (`search.rs`), [`RANGES`]. Each is ranked on integers, sixteen
//! elements to a vector, by the error its levels leave after a
//! least-squares refit of scale and minimum; only the best two and nearest
//! rounding are then evaluated in f32 as stored, each refitted once more.
//!
//! With `t = (x − min)·15/(max − min)` (nearest rounding's levels before
//! rounding, in [0, 15]) held as `T = round(t·2¹¹)`, a range held as
//! `S = round(s·2¹³)`, `s = 15/(hi − lo)` in units of t, and
//! `C = round((½ − lo·s)·2⁸)` gives the levels
//! `l = clamp(⌊(⌊T·S/2¹⁶⌋ + C)/2⁸⌋, 0, 15)` (one high multiply, an add and
//! a shift). The rank is `a²/(b − c²/n)` with `a = Σ l·P`, `b = Σ l²·Q`,
//! `c = Σ l·Q`, `n = Σ Q`, where `P` is the weighted block less its
//! weighted mean and `Q` the weights, each rounded to 15 bits of its largest
//! (without importance `Q = 1`): the error a least-squares fit of `d·l + m`
//! removes. The sums are exact integers and the rank the same f32
//! operations on either, so the AVX2 kernels and the portable [`Portable`]
//! rank alike.
//!
//! The f32 evaluation ([`Scores::evaluate`]) computes each candidate's stored block
//! as the dequantizer does (`d·l + m`, f16 `d` and `m`) and its weighted
//! squared error `Σ w·(x − y)²` directly, lane by lane, so the score's
//! relative error is a few units of f32's last place; where the winner lies
//! within [`EXACT_BELOW`] of nearest rounding's score, the two stored
//! blocks' errors are compared in f64. Blocks outside the scoring's range
//! take the reference search.

use super::f32_scores::{lane_sum, stored};
use super::int_rank::{FULL, Integers, MAX_CANDIDATES, all_equal, key, largest, weighted_integers};
use super::scalar::{self, QK, inverse_scale, min_max};
use super::search;

/// The ranges a block ranks, `(lo, hi)` in units of nearest rounding's
/// step (the block spans 0 to 15): nearest rounding's, then the reference
/// search's with either end pulled in by 0.3·k or both by 0.15·k, k in
/// [`PULLS`].
const RANGES: [(f32, f32); CANDIDATES] = ranges();

/// The candidates a block ranks.
pub(super) const CANDIDATES: usize = 16;
const _: () = assert!(CANDIDATES <= MAX_CANDIDATES);

/// The reference search's `k` (of 0 to 15) the ranking keeps.
const PULLS: [f32; 5] = [1.0, 2.0, 3.0, 5.0, 8.0];

const fn ranges() -> [(f32, f32); CANDIDATES] {
    let mut out = [(0.0f32, 15.0f32); CANDIDATES];
    let mut k = 0;
    while k < PULLS.len() {
        let pull = 0.3 * PULLS[k];
        out[1 + 3 * k] = (pull, 15.0);
        out[2 + 3 * k] = (0.0, 15.0 - pull);
        out[3 + 3 * k] = (pull / 2.0, 15.0 - pull / 2.0);
        k += 1;
    }
    out
}

/// Rounds a value that lies within i16 to the nearest integer, half away
/// from zero (a const fn: the steps are constants).
const fn round_i16(v: f32) -> i16 {
    if v >= 0.0 {
        (v + 0.5) as i16
    } else {
        -((-v + 0.5) as i16)
    }
}

/// The ranges as the integers use them: `(S, C)` of each.
pub(super) const STEPS: [(i16, i16); CANDIDATES] = steps();

const fn steps() -> [(i16, i16); CANDIDATES] {
    let mut out = [(0i16, 0i16); CANDIDATES];
    let mut c = 0;
    while c < CANDIDATES {
        let (lo, hi) = RANGES[c];
        let s = 15.0 / (hi - lo);
        out[c] = (round_i16(s * 8192.0), round_i16((0.5 - lo * s) * 256.0));
        c += 1;
    }
    out
}

/// The block in the integers a candidate is ranked on.
pub(super) struct Ranked {
    /// `round(t·2¹¹)`.
    pub t: [i16; QK],
    /// The weighted block less its weighted mean.
    pub p: [i16; QK],
    /// The weights, or None where all are equal.
    pub q: Option<[i16; QK]>,
}

/// `Σ l·P`, `Σ l²·Q` and `Σ l·Q` of each candidate, then zeros to 32.
pub(super) type Sums3 = [[i32; MAX_CANDIDATES]; 3];

/// The level of `T` under the candidate `(S, C)`.
#[inline(always)]
pub(super) fn level(t: i16, (step, offset): (i16, i16)) -> i32 {
    ((((i32::from(t) * i32::from(step)) >> 16) + i32::from(offset)) >> 8).clamp(0, 15)
}

/// The integer sums a candidate is ranked by.
pub(super) trait Scores: Integers {
    /// `Σ l·P`, `Σ l²·Q` and `Σ l·Q` of every candidate of [`STEPS`]
    /// (`Q = 1` where `ranked.q` is None).
    fn scores(ranked: &Ranked) -> Sums3;

    /// `scalar::min_max`.
    #[inline(always)]
    fn min_max(x: &[f32; QK]) -> (f32, f32) {
        min_max(x)
    }

    /// `scalar::q4_1_with_scale`.
    #[inline(always)]
    fn with_scale(x: &[f32; QK], d: f32, m: f32, out: &mut [u8]) {
        scalar::q4_1_with_scale(x, d, m, out);
    }

    /// Each candidate's weighted squared error and, with `SUMS`, its
    /// levels' `Σ w·l`, `Σ w·l²` and `Σ w·(x − mean)·l`, in lanes of eight
    /// (lane `j` adds elements j, j+8, j+16, j+24 in turn, then
    /// [`lane_sum`]); the levels `clamp(⌊(x − m)·id + ½⌋, 0, 15)` with
    /// both bounds taken as `maxps`/`minps` do (the second where not
    /// beyond), the stored value `d·l + m` a product then a sum.
    #[inline(always)]
    fn evaluate<const SUMS: bool, const N: usize>(
        block: &Block,
        candidates: [Candidate; N],
    ) -> [[f32; 4]; N] {
        candidates.map(|c| {
            // sums[i][j]: sum i of lane j.
            let mut sums = [[0.0f32; 8]; 4];
            let [errors, levels, squares, products] = &mut sums;
            for k in 0..QK / 8 {
                let e = 8 * k;
                let (x, w, wc) = (&block.x[e..e + 8], &block.w[e..e + 8], &block.wc[e..e + 8]);
                for (j, error) in errors.iter_mut().enumerate() {
                    let t = ((x[j] - c.m_level) * c.id + 0.5).trunc();
                    let t = if t > 0.0 { t } else { 0.0 };
                    let l = if t < 15.0 { t } else { 15.0 };
                    let r = x[j] - (c.d * l + c.m);
                    *error += w[j] * r * r;
                    if SUMS {
                        let wl = w[j] * l;
                        levels[j] += wl;
                        squares[j] += wl * l;
                        products[j] += wc[j] * l;
                    }
                }
            }
            sums.map(|lanes| lane_sum(&lanes))
        })
    }
}

/// The portable sums, element by element.
pub(super) struct Portable;

impl Integers for Portable {}

impl Scores for Portable {
    #[inline(always)]
    fn scores(ranked: &Ranked) -> Sums3 {
        let mut sums = [[0i32; MAX_CANDIDATES]; 3];
        for (c, &step) in STEPS.iter().enumerate() {
            for j in 0..QK {
                let l = level(ranked.t[j], step);
                let q = ranked.q.map_or(1, |q| i32::from(q[j]));
                sums[0][c] += l * i32::from(ranked.p[j]);
                sums[1][c] += l * l * q;
                sums[2][c] += l * q;
            }
        }
        sums
    }
}

/// The two candidates whose levels leave the least error after a
/// least-squares refit of scale and minimum: the largest
/// `a²/(b − c²/n)` (0 where the denominator is not positive), the first
/// among equals.
#[inline(always)]
fn best_two<R: Scores>([a, b, c]: &Sums3, n: f32) -> [usize; 2] {
    let mut keys = [0u32; MAX_CANDIDATES];
    for k in 0..CANDIDATES {
        let (a, b, c) = (a[k] as f32, b[k] as f32, c[k] as f32);
        let spread = b - c * c / n;
        // Computed whatever the sign, then selected: the loop vectorizes.
        let rank = a * a / spread;
        keys[k] = key(if spread > 0.0 { rank } else { 0.0 }, k);
    }
    R::best_two_keys(&keys)
}

/// Relative gap (to nearest rounding's score) below which the winner and
/// nearest rounding are compared exactly. Each score is a sum of positive
/// terms `(w·r)·r`, `r = x − y` rounded once, four terms to a lane and
/// three levels of lane sums: at most nine roundings of 2⁻²⁴ each, so
/// below 6e-7 of itself, and a difference of two below 1.2e-6 of the
/// larger; [`TINY`] covers terms below f32's normal range.
const EXACT_BELOW: f32 = 2e-6;
const TINY: f32 = 1e-30;

/// The ranges the search handles: larger blocks leave the f16 minimum's
/// comfortable range; below 15 times f16's smallest normal, nearest
/// rounding's scale is an f16 subnormal, whose coarse steps the ranking
/// (which takes scales as continuous) does not see.
const RANGE: std::ops::RangeInclusive<f32> = 15.0 * 6.103_515_6e-5..=6e4;

/// A block the f32 evaluation handles.
pub(super) struct Block<'a> {
    pub x: &'a [f32; QK],
    pub w: &'a [f32; QK],
    /// `w·(x − mean)`, the weighted mean's residuals weighted.
    pub wc: [f32; QK],
    mean: f32,
    /// `1/Σ w` and `Σ w·(x − mean)`, the sums in lane order.
    inv_sw: f32,
    swc: f32,
    min: f32,
    max: f32,
}

/// A candidate's stored scale and minimum and the levels' inverse scale and
/// minimum (nearest rounding finds its levels with the unrounded ones).
#[derive(Clone, Copy)]
pub(super) struct Candidate {
    pub id: f32,
    pub m_level: f32,
    pub d: f32,
    pub m: f32,
}

impl Candidate {
    /// The candidate of a stored scale and minimum.
    #[inline(always)]
    fn stored(d: f32, m: f32) -> Self {
        let (d, m) = (stored(d), stored(m));
        Candidate {
            id: inverse_scale(d),
            m_level: m,
            d,
            m,
        }
    }
}

impl<'a> Block<'a> {
    /// The block, or None where it leaves the evaluation's range.
    #[inline(always)]
    fn of<R: Scores>(x: &'a [f32; QK], w: &'a [f32; QK]) -> Option<Self> {
        let (min, max) = R::min_max(x);
        if !(RANGE.contains(&(max - min)) && min.abs().max(max.abs()) <= *RANGE.end()) {
            return None;
        }
        let (mut sw, mut swx) = ([0.0f32; 8], [0.0f32; 8]);
        for k in 0..QK / 8 {
            for j in 0..8 {
                sw[j] += w[8 * k + j];
                swx[j] += w[8 * k + j] * x[8 * k + j];
            }
        }
        let sw = lane_sum(&sw);
        let mean = lane_sum(&swx) / sw;
        let mut wc = [0.0f32; QK];
        let (mut swc, mut energy) = ([0.0f32; 8], [0.0f32; 8]);
        for k in 0..QK / 8 {
            for j in 0..8 {
                let e = 8 * k + j;
                let centred = x[e] - mean;
                wc[e] = w[e] * centred;
                swc[j] += wc[e];
                energy[j] += wc[e] * centred;
            }
        }
        let energy = lane_sum(&energy);
        // Every candidate worth keeping has an error below nearest
        // rounding's, at most Σw·range²: finite where this is.
        let bound = sw * (max - min) * (max - min);
        (mean.is_finite() && energy >= TINY && bound.is_finite()).then_some(Block {
            x,
            w,
            wc,
            mean,
            inv_sw: 1.0 / sw,
            swc: lane_sum(&swc),
            min,
            max,
        })
    }

    /// Nearest rounding's candidate.
    #[inline(always)]
    fn nearest(&self) -> Candidate {
        let d = (self.max - self.min) / 15.0;
        Candidate {
            id: inverse_scale(d),
            m_level: self.min,
            d: stored(d),
            m: stored(self.min),
        }
    }

    /// The least-squares scale and minimum of the levels whose sums
    /// (`Σ w·l`, `Σ w·l²`, `Σ w·(x − mean)·l`) are given, stored; None
    /// where the levels do not determine a positive scale.
    #[inline(always)]
    fn refit(&self, [_, sl, sll, slc]: [f32; 4]) -> Option<Candidate> {
        let spread = sll - sl * sl * self.inv_sw;
        let d = slc / spread;
        let m = self.mean + (self.swc - d * sl) * self.inv_sw;
        (d > 0.0 && d.is_finite() && m.is_finite()).then(|| Candidate::stored(d, m))
    }
}

/// The block in integers, and the factor that turns a candidate's
/// `a / (b − c²/n)` into its scale; None where the weights leave f32.
#[inline(always)]
fn ranked<R: Scores>(block: &Block, uniform: bool) -> Option<(Ranked, f32, f32)> {
    let range = block.max - block.min;
    let mut shifted = [0.0f32; QK];
    for (s, &v) in shifted.iter_mut().zip(block.x) {
        *s = v - block.min;
    }
    let t = R::integers(&shifted, 15.0 * 2048.0 / range);
    if uniform {
        // The weights are all w: P = w·(x − mean)·kp, Q = 1, n = 32.
        let kp = FULL / largest(&block.wc);
        let p = R::integers(&block.wc, kp);
        let to_scale = 1.0 / (kp * block.w[0]);
        return (kp.is_finite() && to_scale.is_normal()).then_some((
            Ranked { t, p, q: None },
            to_scale,
            QK as f32,
        ));
    }
    let (p, q, to_scale) = weighted_integers::<R>(&block.wc, block.w, FULL)?;
    let n: i32 = q.iter().map(|&v| i32::from(v)).sum();
    Some((Ranked { t, p, q: Some(q) }, to_scale, n as f32))
}

/// Q4_1 with the lowest weighted error, the integer sums from `R`.
#[inline(always)]
pub(super) fn q4_1_with<R: Scores>(x: &[f32], w: &[f32], out: &mut [u8]) {
    let (Ok(xs), Ok(ws)) = (<&[f32; QK]>::try_from(x), <&[f32; QK]>::try_from(w)) else {
        unreachable!("one block of 32");
    };
    let uniform = all_equal(ws);
    let Some((block, (ranked, to_scale, n))) =
        Block::of::<R>(xs, ws).and_then(|b| ranked::<R>(&b, uniform).map(|r| (b, r)))
    else {
        search::q4_1(x, w, out);
        return;
    };
    let sums = R::scores(&ranked);
    // Nearest rounding and the best two, then the refit of each.
    let nearest = block.nearest();
    let inv_n = 1.0 / n;
    let mut first = [nearest; 3];
    for (f, c) in first[1..].iter_mut().zip(best_two::<R>(&sums, n)) {
        let (a, b, c) = (sums[0][c] as f32, sums[1][c] as f32, sums[2][c] as f32);
        let spread = b - c * c * inv_n;
        let d = a * to_scale / spread;
        let m = block.mean - d * (c * inv_n);
        if d > 0.0 && d.is_finite() && m.is_finite() {
            *f = Candidate::stored(d, m);
        }
    }
    let scored = R::evaluate::<true, 3>(&block, first);
    let e_nearest = scored[0][0];
    let mut best = (e_nearest, None);
    let mut offer = |candidate: Candidate, error: f32| {
        if error < best.0 {
            best = (error, Some(candidate));
        }
    };
    for (c, s) in first.iter().zip(&scored).skip(1) {
        offer(*c, s[0]);
    }
    let refit = |k: usize| block.refit(scored[k]).unwrap_or(nearest);
    let again = [refit(0), refit(1), refit(2)];
    let rescored = R::evaluate::<false, 3>(&block, again);
    for (c, s) in again.iter().zip(&rescored) {
        offer(*c, s[0]);
    }
    write::<R>(&block, e_nearest, best, out);
}

/// Writes the block of the candidate `best.1`, or nearest rounding's where
/// none beat it; where the two scores lie within [`EXACT_BELOW`], the two
/// stored blocks' errors decide, in f64.
#[inline(always)]
fn write<R: Scores>(block: &Block, e_nearest: f32, best: (f32, Option<Candidate>), out: &mut [u8]) {
    let Some(c) = best.1 else {
        R::with_scale(block.x, (block.max - block.min) / 15.0, block.min, out);
        return;
    };
    R::with_scale(block.x, c.d, c.m, out);
    if e_nearest - best.0 < EXACT_BELOW * e_nearest + TINY {
        let mut near = [0u8; 20];
        scalar::q4_1_nearest(block.x, &mut near);
        if search::keep_the_better(block.x, block.w, out, &near, scalar::q4_1_dequantize) {
            return;
        }
    }
    // A zero minimum keeps the sign nearest rounding gives it (the sign of
    // the block's first zero), as the reference search stores it.
    if block.min == 0.0 && c.m == 0.0 {
        out[2..4].copy_from_slice(&scalar::f16_bits(block.min).to_le_bytes());
    }
}

/// Q4_1 with the lowest weighted error: the AVX2 kernels where the CPU has
/// them, else the portable ones (the same bytes).
pub fn q4_1(x: &[f32], w: &[f32], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if super::simd_x86::available() {
        // SAFETY: AVX2 and F16C were detected just above.
        unsafe { super::int_search_x86::q4_1_search(x, w, out) };
        return;
    }
    q4_1_with::<Portable>(x, w, out);
}

/// [`q4_1`] on the portable kernels whatever the CPU (tests compare the two).
#[cfg(test)]
pub(super) fn q4_1_portable(x: &[f32], w: &[f32], out: &mut [u8]) {
    q4_1_with::<Portable>(x, w, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::f32_scores::tests::{Kernels, fast_search_tests, the_reference_decides};

    fast_search_tests! {
        format: crate::format::Format::Q4_1, kernels: kernels(),
        simd: crate::quant::int_search_x86::q4_1_search, portable: q4_1_portable, real_stride: 16,
        every_block: as_good_as_the_reference_on_every_block_of_every_real_tensor
    }

    #[test]
    fn a_block_whose_minimum_is_zero_keeps_the_minimum_it_chose() {
        // The 0 weighs almost nothing, the rest lie from 5.1 to 8.1: the
        // search pulls the range's lower end in, to a minimum far from 0,
        // and must store that minimum (only a zero minimum takes the sign
        // of the block's zero).
        let x: [f32; QK] = std::array::from_fn(|j| if j == 0 { 0.0 } else { 5.0 + 0.1 * j as f32 });
        let mut w = [1.0f32; QK];
        w[0] = 1e-3;
        let error = |bytes: &[u8]| -> f64 {
            let mut y = [0.0f32; QK];
            scalar::q4_1_dequantize(bytes, &mut y);
            (0..QK)
                .map(|j| f64::from(w[j]) * f64::from(x[j] - y[j]).powi(2))
                .sum()
        };
        let (mut fast, mut near) = ([0u8; 20], [0u8; 20]);
        q4_1(&x, &w, &mut fast);
        scalar::q4_1_nearest(&x, &mut near);
        let m = half::f16::from_le_bytes([fast[2], fast[3]]).to_f32();
        assert!(m > 1.0, "minimum {m}");
        assert!(
            error(&fast) < error(&near),
            "{} >= {}",
            error(&fast),
            error(&near)
        );
    }

    #[test]
    fn ordinary_blocks_take_the_fast_search() {
        // The reference search is only the fallback: blocks of moderate
        // values, one with its minimum exactly 0, are the search's own.
        let wave: [f32; QK] = std::array::from_fn(|j| (j as f32 * 0.37).sin());
        let from_zero: [f32; QK] = std::array::from_fn(|j| (j % 7) as f32 * 0.25);
        let w: [f32; QK] = std::array::from_fn(|j| 1.0 + (j % 3) as f32);
        for x in [&wave, &from_zero] {
            for w in [&[1.0; QK], &w] {
                assert!(Block::of::<Portable>(x, w).is_some(), "{x:?}");
            }
        }
    }

    #[test]
    fn near_ties_with_nearest_are_decided_exactly() {
        // A block nearest rounding represents exactly (levels 0..15 of 0.5
        // from −2): every candidate ties or loses, and the exact
        // comparison keeps nearest's bytes.
        let x: [f32; QK] = std::array::from_fn(|j| 0.5 * (j % 16) as f32 - 2.0);
        let (mut fast, mut near) = ([0u8; 20], [0u8; 20]);
        q4_1(&x, &[1.0; QK], &mut fast);
        scalar::q4_1_nearest(&x, &mut near);
        assert_eq!(fast, near);
    }

    #[test]
    fn blocks_beyond_the_integers_and_the_f16_steps_take_the_reference_search() {
        // Weights so small that 32767 over the largest leaves f32, and a
        // range whose nearest scale is an f16 subnormal: the reference
        // search decides both.
        let wide: [f32; QK] = std::array::from_fn(|j| 5e3 * (j as f32 / 16.0 - 1.0));
        let tiny_w: [f32; QK] = std::array::from_fn(|j| 1e-39 * (1.0 + (j % 3) as f32));
        let narrow: [f32; QK] = std::array::from_fn(|j| 1e-4 * (j as f32 / 16.0 - 1.0));
        the_reference_decides(&kernels(), &[(wide, tiny_w), (narrow, [1.0; QK])]);
    }

    #[test]
    fn blocks_without_energy_to_rank_take_the_reference_search() {
        // Candidates are ranked by the weighted energy about the block's
        // mean: a constant block has none, and a block of ordinary values
        // with weights of 1e-36 has less than 1e-30 (TINY), though its
        // weighted range is finite. Neither is the search's.
        let wave: [f32; QK] = std::array::from_fn(|j| (j as f32 * 0.37).sin());
        for (x, w) in [([3.0f32; QK], [1.0f32; QK]), (wave, [1e-36; QK])] {
            assert!(Block::of::<Portable>(&x, &w).is_none(), "{x:?} {w:?}");
        }
    }

    #[test]
    fn levels_are_the_shifted_high_products() {
        // Nearest rounding's range (0, 15): S = 2¹³, C = 2⁷, so the level
        // of t = T/2¹¹ is ⌊t + ½⌋; t = 2.5 (T = 5120) is 3, 2.499 is 2.
        assert_eq!(STEPS[0], (8192, 128));
        assert_eq!(level(5120, STEPS[0]), 3);
        assert_eq!(level(5118, STEPS[0]), 2);
        assert_eq!(level(30720, STEPS[0]), 15);
        assert_eq!(level(0, STEPS[0]), 0);
        // Pulled in from below by 0.3: levels below the range clip to 0.
        let (s, c) = STEPS[1];
        assert_eq!(level(0, (s, c)), 0);
        assert_eq!(level(30720, (s, c)), 15);
    }

    fn kernels() -> Kernels {
        Kernels {
            bytes: 20,
            nearest: scalar::q4_1_nearest,
            search: q4_1,
            reference: search::q4_1,
            dequantize: scalar::q4_1_dequantize,
        }
    }
}
