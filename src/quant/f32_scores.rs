//! The f32 scoring of Q4_0 blocks in the error-minimising search
//! (`int_search.rs`): for the levels `l = clamp(⌊x·id + 8.5⌋, 0, 15) − 8` a
//! scale `d` gives, the block's error is
//! `E(d) = Σw·x² − 2d·Σw·x·l + d²·Σw·l²`, so a candidate costs two sums, in
//! f32 lanes of eight, without packing or dequantizing; the sums also give
//! the least-squares refit `d* = Σw·x·l / Σw·l²`.
//!
//! The search's winner is compared with nearest rounding's block: where the
//! f32 scores differ by less than [`EXACT_BELOW`] of `Σw·x²` (twice their
//! worst rounding error) the two stored blocks' errors are compared in f64
//! as the reference search (`search.rs`) does, so no block is worse than
//! nearest. Blocks whose magnitudes or weights would leave f32's comfortable
//! range take the reference search.
//!
//! The AVX2 kernel (`simd_x86::SearchSums`) and the portable [`Portable`]
//! compute the sums with the same operations in the same order (lane `j`
//! adds elements j, j+8, j+16, j+24 in turn, then the lanes are added as
//! `((a0+a1)+(a4+a5)) + ((a2+a3)+(a6+a7))`, no fused multiply-add), so the
//! bytes are the same on either.

use super::scalar::{self, QK, f16_bits, f16_value};
use super::search;

/// Relative gap (to `Σw·x²`) below which the winner and nearest rounding are
/// compared exactly: twice the f32 scores' worst rounding error. Each score
/// `Σw·x² − 2d·a + d²·b` of a block no worse than nearest rounding (whose
/// error is at most `Σw·x²`, each element rounding to a level no farther
/// than itself from 0) has `Σ|w·x·d·l| ≤ 2Σw·x²` and `d²·b ≤ 4Σw·x²`; with
/// at most ten roundings (2⁻²⁴ each) on each term of a sum (its products
/// and additions) and three in the score, its error is below 5.5e-6 of
/// `Σw·x²`, so that of a difference of two below 1.1e-5.
const EXACT_BELOW: f32 = 2e-5;

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

    /// (Σ wx·l, Σ (w·l)·l) for Q4_0's levels `l` at each of `N` inverse
    /// scales (the AVX2 kernel interleaves them; each candidate's sums are
    /// the same as on its own: [`portable_q4_0`]'s operations).
    fn q4_0_n<const N: usize>(
        x: &[f32; QK],
        wx: &[f32; QK],
        w: &[f32; QK],
        ids: [f32; N],
    ) -> [(f32, f32); N];
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
    fn q4_0_n<const N: usize>(
        x: &[f32; QK],
        wx: &[f32; QK],
        w: &[f32; QK],
        ids: [f32; N],
    ) -> [(f32, f32); N] {
        ids.map(|id| portable_q4_0(x, wx, w, id))
    }
}

/// (Σ wx·l, Σ (w·l)·l) for Q4_0's levels `l` at the inverse scale `id`,
/// lane by lane (lane `j` adds elements j, j+8, j+16, j+24 in turn, then
/// [`lane_sum`]).
#[inline(always)]
fn portable_q4_0(x: &[f32; QK], wx: &[f32; QK], w: &[f32; QK], id: f32) -> (f32, f32) {
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
            search::keep_the_better(self.x, self.w, out, &near, scalar::q4_0_dequantize);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::quant::rng;

    /// Checks a fast search on every block of [`blocks`]: its weighted
    /// error never above nearest rounding's, and in total at most 1.001
    /// times the reference search's.
    pub(in crate::quant) fn never_worse_than_nearest_and_as_good_as_the_reference(k: &Kernels) {
        let (mut fast_total, mut reference_total) = (0.0, 0.0);
        for (b, x) in blocks().iter().enumerate() {
            let w = weights_of(b);
            let [near, found, refs] = k.run(x, &w);
            let e_fast = k.error_of(x, &w, &found);
            assert!(e_fast <= k.error_of(x, &w, &near), "block {b}");
            let scale = search::weighted_error(x, &w, &[0.0; QK]).max(f64::MIN_POSITIVE);
            fast_total += e_fast / scale;
            reference_total += k.error_of(x, &w, &refs) / scale;
        }
        assert!(
            fast_total <= reference_total * 1.001,
            "{fast_total} vs the reference's {reference_total}"
        );
    }

    /// The AVX2 search `simd` gives the portable one's bytes on every block
    /// of [`blocks`] (where the CPU has AVX2 and F16C).
    #[cfg(target_arch = "x86_64")]
    pub(in crate::quant) fn simd_and_portable_agree(
        bytes: usize,
        simd: unsafe fn(&[f32], &[f32], &mut [u8]),
        portable: crate::cpu_kernels::Search,
    ) {
        if crate::quant::simd_x86::available() {
            for (b, x) in blocks().iter().enumerate() {
                let w = weights_of(b);
                let (mut fast, mut plain) = ([0u8; 34], [0u8; 34]);
                // SAFETY: AVX2 and F16C were detected just above.
                unsafe { simd(x, &w, &mut fast[..bytes]) };
                portable(x, &w, &mut plain[..bytes]);
                assert_eq!(fast[..bytes], plain[..bytes], "block {b}");
            }
        }
    }

    /// The checks every integer-ranked search passes, as `#[test]`s of the
    /// module that invokes this: the AVX2 and portable kernels give the same
    /// bytes, no block is worse than nearest rounding's and the total is as
    /// good as the reference search's (random blocks, then every
    /// `real_stride`-th block of the real tensors, and with `every_block` an
    /// ignored test of every block), and threads do not change the bytes.
    macro_rules! fast_search_tests {
        (
            format: $format:expr, kernels: $kernels:expr,
            simd: $simd:path, portable: $portable:path, real_stride: $stride:expr
            $(, every_block: $every:ident)?
        ) => {
            #[test]
            #[cfg(target_arch = "x86_64")]
            fn avx2_and_portable_give_the_same_bytes() {
                $crate::quant::f32_scores::tests::simd_and_portable_agree($kernels.bytes, $simd, $portable);
            }

            #[test]
            fn never_worse_than_nearest_on_any_block_and_as_good_as_the_reference() {
                $crate::quant::f32_scores::tests::never_worse_than_nearest_and_as_good_as_the_reference(
                    &$kernels,
                );
            }

            #[test]
            fn as_good_as_the_reference_on_every_real_tensor() {
                $crate::quant::f32_scores::tests::as_good_as_the_reference_on($kernels, $stride);
            }

            $(
                /// Every block of every real tensor (minutes: `cargo test
                /// --release -- --ignored`).
                #[test]
                #[ignore]
                fn $every() {
                    $crate::quant::f32_scores::tests::as_good_as_the_reference_on($kernels, 1);
                }
            )?

            #[test]
            fn threads_do_not_change_the_bytes() {
                $crate::quant::f32_scores::tests::threads_do_not_change($format, $kernels.search);
            }
        };
    }
    pub(in crate::quant) use fast_search_tests;

    /// Blocks the fast search's integers cannot hold (`(x, w)` pairs): its
    /// bytes are the reference search's, never worse than nearest's.
    pub(in crate::quant) fn the_reference_decides(k: &Kernels, cases: &[([f32; QK], [f32; QK])]) {
        for (c, (x, w)) in cases.iter().enumerate() {
            let [near, fast, reference] = k.run(x, w);
            assert_eq!(fast, reference, "case {c}");
            assert!(
                k.error_of(x, w, &fast) <= k.error_of(x, w, &near),
                "case {c}"
            );
        }
    }

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

    #[test]
    fn ordinary_blocks_take_the_fast_scoring_with_their_energy() {
        // The lanes add in the AVX2 kernel's order: 1e8 + 1 is 1e8 in f32,
        // so these lanes sum to 2 in that order and to 1 from left to right.
        let lanes = [1e8, 1.0, 1.0, 0.0, -1e8, 0.0, 1.0, 0.0];
        assert_eq!(lane_sum(&lanes), ((1e8 + 1.0) + (-1e8 + 0.0)) + (1.0 + 1.0));
        assert_eq!(lane_sum(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]), 36.0);
        // A block of the real range: scored in f32, with Σw·x² as its energy.
        for (b, x) in blocks().iter().enumerate().take(64) {
            let w = weights_of(b);
            let block = Block::of::<Portable>(x, &w).expect("an ordinary block is scored in f32");
            let exact = search::weighted_error(x, &w, &[0.0; QK]);
            let relative = (f64::from(block.energy) - exact).abs() / exact;
            assert!(
                relative < 1e-5,
                "block {b}: {} against {exact}",
                block.energy
            );
        }
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

    /// The error-minimising quantization of `format` (whose search is
    /// `search`) gives the same bytes on one thread and on three, with and
    /// without importance, and each block those of the search on its own.
    pub(in crate::quant) fn threads_do_not_change(
        format: crate::format::Format,
        search: crate::cpu_kernels::Search,
    ) {
        use crate::quant::{QuantizeOptions, Rounding, quantize};
        // Whole rows of 384 (the importance's length), over 2¹⁸ values.
        let n = 384 * 683;
        let x: Vec<f32> = (0..n)
            .map(|i| (i as f32 * 0.37).sin() * (1.0 + (i % 97) as f32 * 0.1))
            .collect();
        let importance: Vec<f32> = (0..384).map(|j| 1.0 + (j % 13) as f32).collect();
        let block_bytes = format.block_bytes();
        for importance in [None, Some(&importance[..])] {
            let bytes = |threads| {
                let mut q = vec![0u8; format.size_of(n).unwrap()];
                let opts = QuantizeOptions {
                    rounding: Rounding::ErrorMinimising,
                    importance,
                    threads,
                    ..Default::default()
                };
                quantize(format, &x, &mut q, &opts).unwrap();
                q
            };
            let one = bytes(1);
            assert_eq!(one, bytes(3), "importance {}", importance.is_some());
            // Each block as the search gives it on its own.
            let w: Vec<f32> = (0..n)
                .map(|i| importance.map_or(1.0, |v| v[i % 384]))
                .collect();
            for (b, out) in one.chunks_exact(block_bytes).enumerate().step_by(61) {
                let mut alone = [0u8; 34];
                search(&x[b * QK..][..QK], &w[b * QK..][..QK], &mut alone);
                assert_eq!(out, &alone[..block_bytes], "block {b}");
            }
        }
    }

    /// A format's kernels as the shared checks use them.
    pub(in crate::quant) struct Kernels {
        pub bytes: usize,
        pub nearest: fn(&[f32], &mut [u8]),
        pub search: crate::cpu_kernels::Search,
        pub reference: crate::cpu_kernels::Search,
        pub dequantize: fn(&[u8], &mut [f32]),
    }

    impl Kernels {
        /// The block's bytes by nearest rounding, the search and the
        /// reference search (each in the first `bytes` of 34).
        pub fn run(&self, x: &[f32], w: &[f32]) -> [[u8; 34]; 3] {
            let mut out = [[0u8; 34]; 3];
            (self.nearest)(x, &mut out[0][..self.bytes]);
            (self.search)(x, w, &mut out[1][..self.bytes]);
            (self.reference)(x, w, &mut out[2][..self.bytes]);
            out
        }

        /// The weighted error of a block's bytes.
        pub fn error_of(&self, x: &[f32], w: &[f32], bytes: &[u8]) -> f64 {
            let mut y = [0.0f32; QK];
            (self.dequantize)(&bytes[..self.bytes], &mut y);
            search::weighted_error(x, w, &y)
        }
    }

    /// Q4_0's kernels with the search `search`.
    pub(in crate::quant) fn q4_0_kernels(search: crate::cpu_kernels::Search) -> Kernels {
        Kernels {
            bytes: 18,
            nearest: scalar::q4_0_nearest,
            search,
            reference: search::q4_0,
            dequantize: scalar::q4_0_dequantize,
        }
    }

    /// Every tensor of the committed weights and, where present, the shared
    /// ones: the search's SNR within 0.01 dB of the reference search's (or
    /// above) and its total error within 1.001 of it, with and without a
    /// per-column importance, and never worse than nearest on any block;
    /// every `stride`-th block of each tensor (1: all of them).
    pub(in crate::quant) fn as_good_as_the_reference_on(k: Kernels, stride: usize) {
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
                for (b, block) in x.chunks_exact(QK).enumerate().step_by(stride) {
                    // A per-column importance of a 384-wide matrix, 1 to 13.
                    let w: [f32; QK] = std::array::from_fn(|j| {
                        if importance {
                            1.0 + ((b * QK + j) % 384 % 13) as f32
                        } else {
                            1.0
                        }
                    });
                    let [near, fast, reference] = k.run(block, &w);
                    let e_fast = k.error_of(block, &w, &fast);
                    assert!(
                        e_fast <= k.error_of(block, &w, &near),
                        "{} block {b}",
                        path.display()
                    );
                    fast_error += e_fast;
                    reference_error += k.error_of(block, &w, &reference);
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
}
