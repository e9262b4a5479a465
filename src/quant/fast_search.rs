//! Fast error-minimising Q4_0. The same candidate scales as the reference
//! search in `search.rs` (nearest rounding's block and 28 f16 scales that put
//! the block's largest magnitude at or near either end level), but each
//! candidate is scored without packing or dequantizing: for the levels
//! `l = clamp(⌊x·id + 8.5⌋, 0, 15) − 8` a scale `d` gives
//! `E(d) = Σw·x² − 2d·Σw·x·l + d²·Σw·l²`, so two sums per candidate, in f32
//! lanes of eight. Each candidate's sums also give its least-squares refit
//! `d* = Σw·x·l / Σw·l²` and an upper bound of the refit's error (`E(d*)`
//! for the old levels; re-rounding for `d*` can only lower it); the refit
//! with the lowest bound is then evaluated exactly and refitted again while
//! its scale moves (at most three times).
//!
//! Ties between candidates go to the first in that order (strict `<` on the
//! f32 scores). The winner is compared with nearest rounding's block: where
//! the f32 scores differ by less than [`EXACT_BELOW`] of `Σw·x²` (far above
//! their rounding error) the two stored blocks' errors are compared in f64
//! as the reference does, so no block is worse than nearest. Blocks whose
//! magnitudes or weights would leave f32's comfortable range take the
//! reference search.
//!
//! The AVX2 kernel (`simd_x86::q4_0_sums`) and the portable [`Portable`]
//! compute the sums with the same operations in the same order (lane `j`
//! adds elements j, j+8, j+16, j+24 in turn, then the lanes are added as
//! `((a0+a1)+(a4+a5)) + ((a2+a3)+(a6+a7))`, no fused multiply-add), so the
//! bytes are the same on either.

use super::scalar::{self, QK, f16_bits, f16_value, inverse_scale};
use super::search;

/// Relative gap (to `Σw·x²`) below which the winner and nearest rounding are
/// compared exactly: the f32 scores' rounding error is below 1e-5 of it.
const EXACT_BELOW: f32 = 1e-4;

/// Grid scales a block tries besides nearest rounding's.
const GRID: usize = 28;

/// The magnitudes the f32 scoring handles: larger blocks would overflow f16
/// scales of the grid, smaller ones lose precision in `x²`.
const MAGNITUDES: std::ops::RangeInclusive<f32> = 1e-15..=6e4;

/// The two sums a Q4_0 candidate is scored by, and the block's other
/// kernels.
pub(super) trait Sums {
    /// `scalar::signed_max`.
    #[inline(always)]
    fn signed_max(x: &[f32; QK]) -> f32 {
        scalar::signed_max(x)
    }

    /// `scalar::q4_0_with_scale`.
    #[inline(always)]
    fn with_scale(x: &[f32; QK], d: f32, out: &mut [u8]) {
        scalar::q4_0_with_scale(x, d, out);
    }

    /// (Σ wx·l, Σ (w·l)·l) for Q4_0's levels `l` at the inverse scale `id`.
    fn q4_0(x: &[f32; QK], wx: &[f32; QK], w: &[f32; QK], id: f32) -> (f32, f32);

    /// [`Sums::q4_0`] of `N` inverse scales (the AVX2 kernel interleaves
    /// them; each candidate's sums are the same as on its own).
    #[inline(always)]
    fn q4_0_n<const N: usize>(
        x: &[f32; QK],
        wx: &[f32; QK],
        w: &[f32; QK],
        ids: [f32; N],
    ) -> [(f32, f32); N] {
        ids.map(|id| Self::q4_0(x, wx, w, id))
    }
}

/// Adds eight lanes as the AVX2 kernel's horizontal sum does.
#[inline(always)]
pub(super) fn lane_sum(a: &[f32; 8]) -> f32 {
    ((a[0] + a[1]) + (a[4] + a[5])) + ((a[2] + a[3]) + (a[6] + a[7]))
}

/// The portable sums, lane by lane.
pub(super) struct Portable;

impl Sums for Portable {
    #[inline(always)]
    fn q4_0(x: &[f32; QK], wx: &[f32; QK], w: &[f32; QK], id: f32) -> (f32, f32) {
        let (mut a, mut b) = ([0.0f32; 8], [0.0f32; 8]);
        for c in 0..QK / 8 {
            for j in 0..8 {
                let e = 8 * c + j;
                let l = (x[e] * id + 8.5).trunc().clamp(0.0, 15.0) - 8.0;
                a[j] += wx[e] * l;
                b[j] += w[e] * l * l;
            }
        }
        (lane_sum(&a), lane_sum(&b))
    }
}

/// f16-rounds a scale: within f16's normal range by rounding the f32 bits
/// to 11 significant bits, nearest even (what the conversion does there,
/// inlined: the search rounds about 60 scales a block), else by the
/// conversion itself.
#[inline(always)]
pub(super) fn stored(v: f32) -> f32 {
    if (F16_MIN_NORMAL..=F16_MAX).contains(&v.abs()) {
        let bits = v.to_bits();
        f32::from_bits((bits + 0x0fff + ((bits >> 13) & 1)) & !0x1fff)
    } else {
        f16_value(f16_bits(v))
    }
}

/// The smallest normal and the largest finite f16.
const F16_MIN_NORMAL: f32 = 6.103_515_6e-5;
const F16_MAX: f32 = 65504.0;

/// A block the f32 scoring handles: its values, weights, first element of
/// largest magnitude, weighted values and `Σw·x²`.
pub(super) struct Block<'a> {
    pub x: &'a [f32; QK],
    pub w: &'a [f32; QK],
    pub max: f32,
    pub wx: [f32; QK],
    pub energy: f32,
}

impl<'a> Block<'a> {
    /// The block, or None where its magnitudes or weights leave the f32
    /// scoring's range (the reference search's blocks).
    #[inline(always)]
    pub fn of<S: Sums>(x: &'a [f32; QK], w: &'a [f32; QK]) -> Option<Self> {
        let max = S::signed_max(x);
        let mut wx = [0.0f32; QK];
        let mut lanes = [0.0f32; 8];
        for c in 0..QK / 8 {
            for (j, lane) in lanes.iter_mut().enumerate() {
                let e = 8 * c + j;
                wx[e] = w[e] * x[e];
                *lane += wx[e] * x[e];
            }
        }
        let energy = lane_sum(&lanes);
        (MAGNITUDES.contains(&max.abs()) && energy.is_finite() && energy >= 1e-30).then_some(
            Block {
                x,
                w,
                max,
                wx,
                energy,
            },
        )
    }

    /// The error of the scale `d` for the levels whose sums are `(a, b)`:
    /// `Σw·x² − 2d·a + d²·b`.
    #[inline(always)]
    pub fn score(&self, d: f32, (a, b): (f32, f32)) -> f32 {
        self.energy - 2.0 * d * a + d * d * b
    }

    /// Nearest rounding's scale.
    #[inline(always)]
    pub fn nearest_scale(&self) -> f32 {
        self.max / -8.0
    }

    /// Writes the block of the scale `best.1` (levels nearest `x/d`), or
    /// nearest rounding's where none beat it (`nearest` its score); where the
    /// two scores lie within [`EXACT_BELOW`] of `Σw·x²`, the two stored
    /// blocks' errors decide, in f64.
    #[inline(always)]
    pub fn write<S: Sums>(&self, nearest: f32, best: (f32, Option<f32>), out: &mut [u8]) {
        let Some(d) = best.1 else {
            S::with_scale(self.x, self.nearest_scale(), out);
            return;
        };
        S::with_scale(self.x, d, out);
        if nearest - best.0 < EXACT_BELOW * self.energy {
            let mut near = [0u8; 18];
            S::with_scale(self.x, self.nearest_scale(), &mut near);
            let (mut y, mut y_near) = ([0.0f32; QK], [0.0f32; QK]);
            scalar::q4_0_dequantize(out, &mut y);
            scalar::q4_0_dequantize(&near, &mut y_near);
            if search::weighted_error(self.x, self.w, &y_near)
                <= search::weighted_error(self.x, self.w, &y)
            {
                out[..18].copy_from_slice(&near);
            }
        }
    }
}

/// Q4_0 with the lowest weighted error, the sums from `S`.
#[inline(always)]
pub(super) fn q4_0_with<S: Sums>(x: &[f32], w: &[f32], out: &mut [u8]) {
    let (Ok(xs), Ok(ws)) = (<&[f32; QK]>::try_from(x), <&[f32; QK]>::try_from(w)) else {
        unreachable!("one block of 32");
    };
    let Some(block) = Block::of::<S>(xs, ws) else {
        search::q4_0(x, w, out);
        return;
    };
    let (max, wx) = (block.max, &block.wx);
    let score = |d: f32, sums: (f32, f32)| block.score(d, sums);
    let d_nearest = block.nearest_scale();
    let nearest = score(
        stored(d_nearest),
        S::q4_0(xs, wx, ws, inverse_scale(d_nearest)),
    );
    let mut best = (nearest, None);
    let mut refit = (f32::INFINITY, 0.0f32);
    // The grid in the reference's order: the largest element on −8's side,
    // then on 7's, divisors from 1.5 below to 1.75 above those ends.
    let grid: [f32; GRID] = std::array::from_fn(|c| {
        let (sign, first_divisor) = if c < GRID / 2 {
            (-1.0f32, 6.5f32)
        } else {
            (1.0, 5.5)
        };
        stored(max / (sign * (first_divisor + 0.25 * (c % (GRID / 2)) as f32)))
    });
    let mut grid_sums = [(0.0f32, 0.0f32); GRID];
    for (sums, scales) in grid_sums.chunks_exact_mut(4).zip(grid.chunks_exact(4)) {
        let ids = std::array::from_fn(|i| inverse_scale(scales[i]));
        sums.copy_from_slice(&S::q4_0_n::<4>(xs, wx, ws, ids));
    }
    for (&d, &sums) in grid.iter().zip(&grid_sums) {
        let error = score(d, sums);
        if error < best.0 {
            best = (error, Some(d));
        }
        if sums.1 > 0.0 {
            let r = stored(sums.0 / sums.1);
            let bound = score(r, sums);
            if bound < refit.0 {
                refit = (bound, r);
            }
        }
    }
    let mut d = refit.1;
    for _ in 0..3 {
        if refit.0 == f32::INFINITY {
            break;
        }
        let sums = S::q4_0(xs, wx, ws, inverse_scale(d));
        let error = score(d, sums);
        if error < best.0 {
            best = (error, Some(d));
        }
        if sums.1 <= 0.0 {
            break;
        }
        let next = stored(sums.0 / sums.1);
        if next == d {
            break;
        }
        d = next;
    }
    block.write::<S>(nearest, best, out);
}

/// Q4_0 with the lowest weighted error: the AVX2 sums where the CPU has
/// them, else the portable ones (the same bytes). The reference of
/// `int_search`, whose blocks of extreme weights take [`q4_0_with`].
#[cfg(test)]
pub fn q4_0(x: &[f32], w: &[f32], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if super::simd_x86::available() {
        // SAFETY: AVX2 and F16C were detected just above.
        unsafe { super::simd_x86::q4_0_search(x, w, out) };
        return;
    }
    q4_0_with::<Portable>(x, w, out);
}

/// [`q4_0`] on the portable sums whatever the CPU (tests compare the two).
#[cfg(test)]
pub(super) fn q4_0_portable(x: &[f32], w: &[f32], out: &mut [u8]) {
    q4_0_with::<Portable>(x, w, out);
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::quant::rng;

    /// Blocks that stress the search: random spreads, constant and tiny
    /// blocks, ties of magnitude, the fallback's magnitudes.
    pub(in crate::quant) fn blocks() -> Vec<[f32; QK]> {
        let mut out: Vec<[f32; QK]> = (0..2000u64)
            .map(|b| {
                let spread = [1.0f32, 1e-3, 30.0, 1e-7][b as usize % 4];
                std::array::from_fn(|j| {
                    let u = rng::uniform(b, j as u64) - 0.5;
                    // Heavy tails in every fourth block.
                    if b % 8 == 3 {
                        spread * u * u * u * 8.0
                    } else {
                        spread * u
                    }
                })
            })
            .collect();
        out.push([0.0; QK]);
        out.push([0.25; QK]);
        out.push(std::array::from_fn(|j| if j % 2 == 0 { 1.0 } else { -1.0 }));
        out.push(std::array::from_fn(|j| j as f32 - 16.0));
        // Beyond the f32 scoring's range (the reference search's blocks),
        // still within Q4_0's.
        out.push(std::array::from_fn(|j| (j as f32 - 16.0) * 5e3));
        out.push(std::array::from_fn(|j| (j as f32 - 16.0) * 1e-20));
        out
    }

    pub(in crate::quant) fn weights_of(b: usize) -> [f32; QK] {
        std::array::from_fn(|j| match b % 3 {
            0 => 1.0,
            1 => 0.01 + rng::uniform(b as u64 + 7, j as u64) * 10.0,
            _ => {
                if j < 8 {
                    100.0
                } else {
                    1.0
                }
            }
        })
    }

    pub(in crate::quant) fn error_of(x: &[f32], w: &[f32], bytes: &[u8]) -> f64 {
        let mut y = [0.0f32; QK];
        scalar::q4_0_dequantize(bytes, &mut y);
        search::weighted_error(x, w, &y)
    }

    #[test]
    fn avx2_and_portable_give_the_same_bytes() {
        #[cfg(target_arch = "x86_64")]
        if crate::quant::simd_x86::available() {
            for (b, x) in blocks().iter().enumerate() {
                let w = weights_of(b);
                let (mut simd, mut portable) = ([0u8; 18], [0u8; 18]);
                // SAFETY: AVX2 and F16C were detected just above.
                unsafe { crate::quant::simd_x86::q4_0_search(x, &w, &mut simd) };
                q4_0_portable(x, &w, &mut portable);
                assert_eq!(simd, portable, "block {b}");
            }
        }
    }

    #[test]
    fn never_worse_than_nearest_on_any_block_and_as_good_as_the_reference() {
        let (mut fast_total, mut reference_total) = (0.0, 0.0);
        for (b, x) in blocks().iter().enumerate() {
            let w = weights_of(b);
            let (mut near, mut fast, mut reference) = ([0u8; 18], [0u8; 18], [0u8; 18]);
            scalar::q4_0_nearest(x, &mut near);
            q4_0(x, &w, &mut fast);
            search::q4_0(x, &w, &mut reference);
            let e_fast = error_of(x, &w, &fast);
            assert!(e_fast <= error_of(x, &w, &near), "block {b}");
            let scale = search::weighted_error(x, &w, &[0.0; QK]).max(f64::MIN_POSITIVE);
            fast_total += e_fast / scale;
            reference_total += error_of(x, &w, &reference) / scale;
        }
        assert!(
            fast_total <= reference_total * 1.001,
            "{fast_total} vs the reference's {reference_total}"
        );
    }

    #[test]
    fn stored_rounds_as_the_f16_conversion() {
        let mut v = 1e-9f32;
        while v < 1e6 {
            for x in [v, -v, f32::from_bits(v.to_bits() + 0x1000), v * 1.000_122] {
                assert_eq!(stored(x).to_bits(), f16_value(f16_bits(x)).to_bits(), "{x}");
            }
            v *= 1.001;
        }
        for x in [
            F16_MIN_NORMAL,
            F16_MAX,
            65519.0,
            65520.0,
            2049.0,
            2051.0,
            0.0,
            -0.0,
        ] {
            assert_eq!(stored(x).to_bits(), f16_value(f16_bits(x)).to_bits(), "{x}");
        }
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
        assert_eq!(error_of(&x, &[1.0; QK], &fast), 0.0);
    }

    /// Every tensor of the committed weights and, where present, the shared
    /// ones: `search`'s SNR within 0.01 dB of the reference search's (or
    /// above) and its total error within 1.001 of it, with and without a
    /// per-column importance, and never worse than nearest on any block.
    pub(in crate::quant) fn as_good_as_the_reference_on(search: crate::cpu_kernels::Search) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files: Vec<_> = [
            root.join("data/weights"),
            root.join("../shared/data/weights"),
        ]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "f32"))
        .collect();
        files.sort();
        assert!(files.len() >= 5, "the committed weights are missing");
        for path in files {
            let x = crate::data::read_f32_file(&path).unwrap();
            let x = &x[..x.len() / QK * QK];
            for importance in [false, true] {
                let (mut fast_error, mut reference_error, mut energy) = (0.0, 0.0, 0.0);
                for (b, block) in x.chunks_exact(QK).enumerate() {
                    // A per-column importance of a 384-wide matrix, 1 to 13.
                    let w: [f32; QK] = std::array::from_fn(|j| {
                        if importance {
                            1.0 + ((b * QK + j) % 384 % 13) as f32
                        } else {
                            1.0
                        }
                    });
                    let (mut near, mut fast, mut reference) = ([0u8; 18], [0u8; 18], [0u8; 18]);
                    scalar::q4_0_nearest(block, &mut near);
                    search(block, &w, &mut fast);
                    search::q4_0(block, &w, &mut reference);
                    let e_fast = error_of(block, &w, &fast);
                    assert!(
                        e_fast <= error_of(block, &w, &near),
                        "{} block {b}",
                        path.display()
                    );
                    fast_error += e_fast;
                    reference_error += error_of(block, &w, &reference);
                    energy += search::weighted_error(block, &w, &[0.0; QK]);
                }
                let snr = |e: f64| 10.0 * (energy / e).log10();
                println!(
                    "{} importance {importance}: fast {:.4} dB, reference {:.4} dB",
                    path.file_name().unwrap().to_string_lossy(),
                    snr(fast_error),
                    snr(reference_error)
                );
                assert!(
                    fast_error <= reference_error * 1.001
                        && snr(fast_error) >= snr(reference_error) - 0.01,
                    "{} (importance {importance}): {:.4} dB vs the reference's {:.4}",
                    path.display(),
                    snr(fast_error),
                    snr(reference_error)
                );
            }
        }
    }

    #[test]
    fn as_good_as_the_reference_on_every_real_tensor() {
        as_good_as_the_reference_on(q4_0);
    }
}
