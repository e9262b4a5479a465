//! Q4_0's error-minimising search with its candidates scored in 16-bit
//! integers. The candidate scales are those of the other searches (the
//! block's largest magnitude at or near either end level, 20 of them), but
//! each is ranked on integers, sixteen elements to a vector, by the error its
//! levels leave after a least-squares refit; only the best two and nearest
//! rounding are then evaluated in f32 as stored (`f32_scores.rs`), each
//! refitted once more.
//!
//! With `u = x·id₀` (`id₀` nearest rounding's inverse scale, so `u` lies in
//! [−8, 8]) held as `U = round(u·2¹⁰)`, a candidate `s = id/id₀` held as
//! `S = s·2⁵` gives the levels `l = clamp(⌊(U·S + 2¹⁴)/2¹⁵⌋, −8, 7)` (one
//! rounding multiply), and the candidate is ranked by `(Σ l·P)² / Σ l²·Q`, where
//! `P` and `Q` are the weighted block `w·x` and the weights `w`, each
//! rounded to 15 bits of its largest magnitude (with equal weights, `P = U`
//! and `Q = 1`). The sums are exact integers, so the AVX2 kernel and the
//! portable [`Portable`] give the same ranks, whatever their order of
//! addition; the rank is `a·a / b` in f32, elementwise, the same on either.
//!
//! Blocks the integers cannot hold (32767 over the largest weight or
//! weighted value beyond f32), like those beyond the f32 scoring's range,
//! take the reference search (`search.rs`).

use super::f32_scores::{self, Block, Sums, stored};
use super::int_rank::{self, FULL, Integers, MAX_CANDIDATES, all_equal, key, weighted_integers};
use super::scalar::{QK, inverse_scale};
use super::search;

/// The candidates a block ranks.
pub(super) const CANDIDATES: usize = 20;

/// The candidates' `S = s·2⁵`: the block's largest element on −8's side at
/// divisors `D` = 6.5 to 9.75 in steps of 0.25 (`s = D/8`, `S = 4D`), then
/// on 7's side at 6 to 8.5 in steps of 0.5 (`s = −D/8`).
pub(super) const STEPS: [i16; CANDIDATES] = [
    26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, -24, -26, -28, -30, -32, -34,
];

/// The block in the integers a candidate is ranked on.
pub(super) struct Ranked {
    /// `round(x·id₀·2¹⁰)`.
    pub u: [i16; QK],
    /// The weighted block (`U` itself without importance).
    pub p: [i16; QK],
    /// The weights, or None where all are equal.
    pub q: Option<[i16; QK]>,
}

/// `Σ l·P` and `Σ l²·Q` of each candidate, then zeros to 32 (whole vectors).
pub(super) type Sums2 = [[i32; 32]; 2];

/// The integer sums a candidate is ranked by.
pub(super) trait Scores: Integers {
    /// The two candidates whose levels leave the least error after a
    /// least-squares refit, as indices: the largest `a²/b` (0 where `b` is
    /// 0), the first among equals.
    #[inline(always)]
    fn best_two([a, b]: &Sums2) -> [usize; 2] {
        let mut keys = [0u32; MAX_CANDIDATES];
        for c in 0..CANDIDATES {
            let (a, b) = (a[c] as f32, b[c] as f32);
            keys[c] = key(if b > 0.0 { a * a / b } else { 0.0 }, c);
        }
        int_rank::best_two(&keys)
    }

    /// `Σ l·P` and `Σ l²·Q` of every candidate of [`STEPS`] (`Q = 1` where
    /// `ranked.q` is None).
    fn scores(ranked: &Ranked) -> Sums2;
}

/// The level of `U` under the candidate `S`: `U·S/2¹⁵ = u·s` rounded, half
/// up (what `_mm256_mulhrs_epi16` computes), within −8 to 7.
#[inline(always)]
pub(super) fn level(u: i16, step: i16) -> i32 {
    ((i32::from(u) * i32::from(step) + (1 << 14)) >> 15).clamp(-8, 7)
}

/// The portable sums, element by element.
pub(super) struct Portable;

impl Integers for Portable {}

impl Scores for Portable {
    fn scores(ranked: &Ranked) -> Sums2 {
        let mut sums = [[0i32; 32]; 2];
        for (c, &step) in STEPS.iter().enumerate() {
            for j in 0..QK {
                let l = level(ranked.u[j], step);
                sums[0][c] += l * i32::from(ranked.p[j]);
                sums[1][c] += l * l * ranked.q.map_or(1, |q| i32::from(q[j]));
            }
        }
        sums
    }
}

/// The block in integers for nearest rounding's inverse scale `id`, and the
/// factor that turns a candidate's `a / b` into its least-squares scale; None
/// where the weights' factors leave f32.
#[inline(always)]
fn ranked<R: Scores>(block: &Block, id: f32) -> Option<(Ranked, f32)> {
    let id1024 = id * 1024.0;
    let u = R::integers(block.x, id1024);
    if all_equal(block.w) {
        return Some((Ranked { u, p: u, q: None }, 1.0 / id1024));
    }
    let (p, q, to_scale) = weighted_integers::<R>(&block.wx, block.w, FULL)?;
    Some((Ranked { u, p, q: Some(q) }, to_scale))
}

/// The least-squares scale of a candidate's sums, f16-rounded (0 for none).
#[inline(always)]
fn refit_of([a, b]: &Sums2, c: usize, to_scale: f32) -> f32 {
    if b[c] > 0 {
        stored(a[c] as f32 / b[c] as f32 * to_scale)
    } else {
        0.0
    }
}

/// The f16-rounded least-squares scale of f32 sums (0 for none).
#[inline(always)]
fn refit((a, b): (f32, f32)) -> f32 {
    if b > 0.0 { stored(a / b) } else { 0.0 }
}

/// A block ready for its candidates: the f32 block, nearest rounding's
/// scale and inverse, the integers and the factor of [`ranked`].
struct Prepared<'a> {
    block: Block<'a>,
    d_nearest: f32,
    id_nearest: f32,
    ranked: Ranked,
    to_scale: f32,
}

/// The block as the search sees it, or None where the reference search
/// takes it.
#[inline(always)]
fn prepare<'a, R: Scores, S: Sums>(x: &'a [f32], w: &'a [f32]) -> Option<Prepared<'a>> {
    let (Ok(xs), Ok(ws)) = (<&[f32; QK]>::try_from(x), <&[f32; QK]>::try_from(w)) else {
        unreachable!("one block of 32");
    };
    let block = Block::of::<S>(xs, ws)?;
    let d_nearest = block.nearest_scale();
    let id_nearest = inverse_scale(d_nearest);
    let (ranked, to_scale) = ranked::<R>(&block, id_nearest)?;
    Some(Prepared {
        block,
        d_nearest,
        id_nearest,
        ranked,
        to_scale,
    })
}

/// The refit scales of the best two candidates.
#[inline(always)]
fn best_scales<R: Scores>(p: &Prepared) -> [f32; 2] {
    let sums = R::scores(&p.ranked);
    let [c1, c2] = R::best_two(&sums);
    [
        refit_of(&sums, c1, p.to_scale),
        refit_of(&sums, c2, p.to_scale),
    ]
}

/// Nearest rounding's score, and the best of the two scales and their
/// refits, each scored as stored.
#[inline(always)]
fn evaluate<S: Sums>(p: &Prepared, [first, second]: [f32; 2]) -> (f32, (f32, Option<f32>)) {
    let (block, (xs, ws)) = (&p.block, (p.block.x, p.block.w));
    let sums = S::q4_0_n(
        xs,
        &block.wx,
        ws,
        [p.id_nearest, inverse_scale(first), inverse_scale(second)],
    );
    let nearest = block.score(stored(p.d_nearest), sums[0]);
    let mut best = (nearest, None);
    // Each refitted once for the levels its scale gives.
    let refits = [refit(sums[1]), refit(sums[2])];
    let again = S::q4_0_n(
        xs,
        &block.wx,
        ws,
        [inverse_scale(refits[0]), inverse_scale(refits[1])],
    );
    for (d, sums) in [
        (first, sums[1]),
        (second, sums[2]),
        (refits[0], again[0]),
        (refits[1], again[1]),
    ] {
        let error = block.score(d, sums);
        if error < best.0 {
            best = (error, Some(d));
        }
    }
    (nearest, best)
}

/// Q4_0 with the lowest weighted error, the integer sums from `R` and the
/// f32 sums from `S`.
#[inline(always)]
pub(super) fn q4_0_with<R: Scores, S: Sums>(x: &[f32], w: &[f32], out: &mut [u8]) {
    let Some(p) = prepare::<R, S>(x, w) else {
        search::q4_0(x, w, out);
        return;
    };
    let scales = best_scales::<R>(&p);
    let (nearest, best) = evaluate::<S>(&p, scales);
    p.block.write::<S>(nearest, best, out);
}

/// Q4_0 with the lowest weighted error: the AVX2 kernels where the CPU has
/// them, else the portable ones (the same bytes).
pub fn q4_0(x: &[f32], w: &[f32], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if super::simd_x86::available() {
        // SAFETY: AVX2 and F16C were detected just above.
        unsafe { super::int_search_x86::q4_0_search(x, w, out) };
        return;
    }
    q4_0_with::<Portable, f32_scores::Portable>(x, w, out);
}

/// [`q4_0`] on the portable kernels whatever the CPU (tests compare the two).
#[cfg(test)]
pub(super) fn q4_0_portable(x: &[f32], w: &[f32], out: &mut [u8]) {
    q4_0_with::<Portable, f32_scores::Portable>(x, w, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::f32_scores::tests::{fast_search_tests, q4_0_kernels, the_reference_decides};
    use crate::quant::scalar;

    fast_search_tests! {
        format: crate::format::Format::Q4_0, kernels: q4_0_kernels(q4_0),
        simd: crate::quant::int_search_x86::q4_0_search, portable: q4_0_portable, real_stride: 1
    }

    #[test]
    fn near_ties_with_nearest_are_decided_exactly() {
        // A block nearest rounding represents exactly (levels −8..7 of 0.5):
        // every candidate ties or loses, and the exact comparison keeps
        // nearest's bytes.
        let x: [f32; QK] = std::array::from_fn(|j| 0.5 * ((j % 16) as f32 - 8.0));
        let (mut fast, mut near) = ([0u8; 18], [0u8; 18]);
        q4_0(&x, &[1.0; QK], &mut fast);
        scalar::q4_0_nearest(&x, &mut near);
        assert_eq!(fast, near);
    }

    #[test]
    fn ordinary_blocks_take_the_fast_search() {
        // The reference search is only the fallback: a block of moderate
        // values and weights is prepared for the integer ranking.
        let x: [f32; QK] = std::array::from_fn(|j| (j as f32 * 0.37).sin());
        let w: [f32; QK] = std::array::from_fn(|j| 1.0 + (j % 3) as f32);
        assert!(prepare::<Portable, f32_scores::Portable>(&x, &[1.0; QK]).is_some());
        assert!(prepare::<Portable, f32_scores::Portable>(&x, &w).is_some());
    }

    #[test]
    fn a_block_on_a_finer_grid_takes_a_divisor_above_eight() {
        // 31 values on the integers −7..7 and one at −9: nearest rounding's
        // scale 9/8 fits none of them, while the divisor 9 (candidate 10 of
        // the second group of eight) fits all but −9, which clamps to −8.
        // Both searches choose it (refitted: a scale just above 1), and the
        // AVX2 ranking names the same candidate as the portable one.
        let mut x: [f32; QK] = std::array::from_fn(|j| ((j * 5) % 15) as f32 - 7.0);
        x[QK / 2] = -9.0;
        let w = [1.0; QK];
        let (mut fast, mut portable) = ([0u8; 18], [0u8; 18]);
        q4_0(&x, &w, &mut fast);
        q4_0_portable(&x, &w, &mut portable);
        assert_eq!(fast, portable);
        let d = half::f16::from_le_bytes([portable[0], portable[1]]).to_f32();
        assert!((1.0..=1.02).contains(&d), "scale {d}; nearest's is 9/8");
    }

    #[test]
    fn weights_beyond_the_integers_take_the_reference_search() {
        // Weights so small that 32767 over the largest leaves f32: the
        // integers cannot hold them, and the reference search decides.
        let x: [f32; QK] = std::array::from_fn(|j| 5e4 * (j as f32 / 16.0 - 1.0));
        let w: [f32; QK] = std::array::from_fn(|j| 1e-39 * (1.0 + (j % 3) as f32));
        the_reference_decides(&q4_0_kernels(q4_0), &[(x, w)]);
    }

    #[test]
    fn the_candidates_are_the_documented_divisors() {
        // −8's side: D = 6.5 to 9.75 in steps of 0.25, S = 4D; 7's side:
        // D = 6 to 8.5 in steps of 0.5, S = −4D.
        let minus_eight = (0..14).map(|k| (4.0 * (6.5 + 0.25 * k as f32)) as i16);
        let seven = (0..6).map(|k| (-4.0 * (6.0 + 0.5 * k as f32)) as i16);
        let expected: Vec<i16> = minus_eight.chain(seven).collect();
        assert_eq!(STEPS.to_vec(), expected);
    }

    #[test]
    fn refits_are_the_stored_least_squares_scales() {
        // Σw·x·l = 3, Σw·l² = 2: the scale 1.5 (an f16); 1/3 rounds to f16.
        assert_eq!(refit((3.0, 2.0)), 1.5);
        assert_eq!(refit((1.0, 3.0)), stored(1.0 / 3.0));
        assert_eq!(refit((-5.0, 4.0)), -1.25);
        // No levels: no scale.
        assert_eq!(refit((1.0, 0.0)), 0.0);
        // The integer sums of candidate 1, in the block's units (×0.5).
        let mut sums: Sums2 = [[0; 32]; 2];
        (sums[0][1], sums[1][1]) = (6, 4);
        assert_eq!(refit_of(&sums, 1, 0.5), 0.75);
        assert_eq!(refit_of(&sums, 0, 0.5), 0.0);
    }

    #[test]
    fn levels_are_the_rounded_products() {
        // U·S/2¹⁵ = u·s, rounded half up, clamped: u = 3.5 (U = 3584) at
        // s = 1 (S = 32) is 4; at s = 26/32, 3.5·0.8125 = 2.84 is 3.
        assert_eq!(level(3584, 32), 4);
        assert_eq!(level(3584, 26), 3);
        assert_eq!(level(-8192, 39), -8);
        assert_eq!(level(8192, 39), 7);
        assert_eq!(level(-8192, -22), 6);
        assert_eq!(level(512, 32), 1);
        assert_eq!(level(511, 32), 0);
        assert_eq!(level(-512, 32), 0);
        assert_eq!(level(-513, 32), -1);
    }
}
