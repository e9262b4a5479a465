//! The CPU kernel table: for each format, the entry points of its kernels,
//! which `quant` and `matvec` read instead of matching on the format.
//!
//! Every format has the portable kernels (nearest and stochastic rounding,
//! dequantize; the portable row product dequantizes with the latter). The
//! descriptor's [`CpuKernelSet`](crate::format::CpuKernelSet) says which of
//! the others it has, and a test checks the table against it. Fake-quantize
//! has no kernel of its own: it quantizes then dequantizes, chunk by chunk.
//! [`CpuKernels::of`] matches every format without a wildcard, so a new
//! format does not compile until its row is here.

use crate::format::{Format, QK, QK_K};
#[cfg(target_arch = "x86_64")]
use crate::matvec::simd_x86 as matvec_simd;
use crate::quant::kquant::{self, Q4K, Q5K};
#[cfg(target_arch = "x86_64")]
use crate::quant::simd_x86 as quant_simd;
use crate::quant::{int_search, int_search_iq4_nl, int_search_q4_1, kquant_search, scalar, search};

/// Quantizes whole blocks: (src, dst).
pub type Quantize = fn(&[f32], &mut [u8]);

/// Quantizes whole blocks stochastically: (src, dst, seed, first), element i
/// of src drawing the random numbers of index `first + i`.
pub type QuantizeStochastic = fn(&[f32], &mut [u8], u64, u64);

/// Quantizes one block with the least error under per-element weights: (x,
/// weights, out).
pub type Search = fn(&[f32], &[f32], &mut [u8]);

/// Dequantizes whole blocks: (src, dst).
pub type Dequantize = fn(&[u8], &mut [f32]);

/// The kernels of one format.
#[derive(Clone, Copy)]
pub struct CpuKernels {
    /// The format they are for.
    pub format: Format,
    /// Round to nearest (byte-identical with ggml's reference).
    pub nearest: Quantize,
    /// Stochastic rounding.
    pub stochastic: QuantizeStochastic,
    /// Error-minimising rounding; None where nearest rounding is already optimal.
    pub error_minimising: Option<Search>,
    /// Back to f32.
    pub dequantize: Dequantize,
    /// The AVX2 kernels, run where the CPU has the features.
    #[cfg(target_arch = "x86_64")]
    pub simd: SimdKernels,
}

/// A format's AVX2 kernels (each None where it has none).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub struct SimdKernels {
    /// Nearest-rounding quantize (AVX2 + F16C).
    pub nearest: Option<quant_simd::Quantize>,
    /// Dequantize (AVX2 + F16C).
    pub dequantize: Option<quant_simd::Dequantize>,
    /// The f32 row product (AVX2 + FMA + F16C).
    pub row_dot: Option<matvec_simd::RowDot>,
    /// The row product with x rounded to 8 bits and integer dot products.
    pub row_dot_int: Option<matvec_simd::RowDotInt>,
}

impl CpuKernels {
    /// The kernels of `format`.
    pub fn of(format: Format) -> &'static CpuKernels {
        match format {
            Format::F32 => &F32,
            Format::F16 => &F16,
            Format::BF16 => &BF16,
            Format::Q8_0 => &Q8_0,
            Format::Q4_0 => &Q4_0,
            Format::Q4_1 => &Q4_1,
            Format::Q5_0 => &Q5_0,
            Format::IQ4_NL => &IQ4_NL,
            Format::Q4_K => &Q4_K,
            Format::Q5_K => &Q5_K,
            Format::Q6_K => &Q6_K,
        }
    }
}

/// Runs a one-block kernel over every block (`N` elements, `B` bytes each)
/// of a slice.
fn blocks_of<const N: usize, const B: usize>(
    src: &[f32],
    dst: &mut [u8],
    kernel: impl Fn(&[f32], &mut [u8]),
) {
    for (x, out) in src.chunks_exact(N).zip(dst.chunks_exact_mut(B)) {
        kernel(x, out);
    }
}

/// Runs a one-block stochastic kernel over every block, each told the index
/// of its first element.
fn blocks_stochastic_of<const N: usize, const B: usize>(
    src: &[f32],
    dst: &mut [u8],
    seed: u64,
    first: u64,
    kernel: impl Fn(&[f32], &mut [u8], u64, u64),
) {
    for (b, (x, out)) in src.chunks_exact(N).zip(dst.chunks_exact_mut(B)).enumerate() {
        kernel(x, out, seed, first + (b * N) as u64);
    }
}

/// Runs a one-block dequantize kernel over every block.
fn blocks_back_of<const N: usize, const B: usize>(
    src: &[u8],
    dst: &mut [f32],
    kernel: impl Fn(&[u8], &mut [f32]),
) {
    for (block, y) in src.chunks_exact(B).zip(dst.chunks_exact_mut(N)) {
        kernel(block, y);
    }
}

/// [`blocks_of`] for the 32-element block formats.
fn blocks<const B: usize>(src: &[f32], dst: &mut [u8], kernel: impl Fn(&[f32], &mut [u8])) {
    blocks_of::<QK, B>(src, dst, kernel);
}

/// [`blocks_stochastic_of`] for the 32-element block formats.
fn blocks_stochastic<const B: usize>(
    src: &[f32],
    dst: &mut [u8],
    seed: u64,
    first: u64,
    kernel: impl Fn(&[f32], &mut [u8], u64, u64),
) {
    blocks_stochastic_of::<QK, B>(src, dst, seed, first, kernel);
}

/// [`blocks_back_of`] for the 32-element block formats.
fn blocks_back<const B: usize>(src: &[u8], dst: &mut [f32], kernel: impl Fn(&[u8], &mut [f32])) {
    blocks_back_of::<QK, B>(src, dst, kernel);
}

static F32: CpuKernels = CpuKernels {
    format: Format::F32,
    nearest: scalar::f32_store,
    // Every f32 is exact: nothing to round.
    stochastic: |src, dst, _, _| scalar::f32_store(src, dst),
    error_minimising: None,
    dequantize: scalar::f32_load,
    #[cfg(target_arch = "x86_64")]
    simd: SimdKernels {
        nearest: None,
        dequantize: None,
        row_dot: Some(matvec_simd::row_dot_avx2::<matvec_simd::F32Block32>),
        row_dot_int: None,
    },
};

static F16: CpuKernels = CpuKernels {
    format: Format::F16,
    nearest: scalar::f16_nearest,
    stochastic: scalar::f16_stochastic,
    error_minimising: None,
    dequantize: scalar::f16_dequantize,
    #[cfg(target_arch = "x86_64")]
    simd: SimdKernels {
        nearest: Some(quant_simd::f16_quantize),
        dequantize: Some(quant_simd::f16_dequantize),
        row_dot: Some(matvec_simd::row_dot_avx2::<matvec_simd::F16Block32>),
        row_dot_int: None,
    },
};

static BF16: CpuKernels = CpuKernels {
    format: Format::BF16,
    nearest: scalar::bf16_nearest,
    stochastic: scalar::bf16_stochastic,
    error_minimising: None,
    dequantize: scalar::bf16_dequantize,
    #[cfg(target_arch = "x86_64")]
    simd: SimdKernels {
        nearest: Some(quant_simd::bf16_quantize),
        dequantize: Some(quant_simd::bf16_dequantize),
        row_dot: Some(matvec_simd::row_dot_avx2::<matvec_simd::Bf16Block32>),
        row_dot_int: None,
    },
};

static Q8_0: CpuKernels = CpuKernels {
    format: Format::Q8_0,
    nearest: |src, dst| blocks::<{ Format::Q8_0.block_bytes() }>(src, dst, scalar::q8_0_nearest),
    stochastic: |src, dst, seed, first| {
        blocks_stochastic::<{ Format::Q8_0.block_bytes() }>(
            src,
            dst,
            seed,
            first,
            scalar::q8_0_stochastic,
        )
    },
    error_minimising: Some(search::q8_0),
    dequantize: |src, dst| {
        blocks_back::<{ Format::Q8_0.block_bytes() }>(src, dst, scalar::q8_0_dequantize)
    },
    #[cfg(target_arch = "x86_64")]
    simd: SimdKernels {
        nearest: Some(quant_simd::q8_0_quantize),
        dequantize: Some(quant_simd::q8_0_dequantize),
        row_dot: Some(matvec_simd::row_dot_avx2::<matvec_simd::Q8_0Block>),
        row_dot_int: Some(matvec_simd::row_dot_int_avx2::<matvec_simd::Q8_0Block>),
    },
};

static Q4_0: CpuKernels = CpuKernels {
    format: Format::Q4_0,
    nearest: |src, dst| blocks::<{ Format::Q4_0.block_bytes() }>(src, dst, scalar::q4_0_nearest),
    stochastic: |src, dst, seed, first| {
        blocks_stochastic::<{ Format::Q4_0.block_bytes() }>(
            src,
            dst,
            seed,
            first,
            scalar::q4_0_stochastic,
        )
    },
    error_minimising: Some(int_search::q4_0),
    dequantize: |src, dst| {
        blocks_back::<{ Format::Q4_0.block_bytes() }>(src, dst, scalar::q4_0_dequantize)
    },
    #[cfg(target_arch = "x86_64")]
    simd: SimdKernels {
        nearest: Some(quant_simd::q4_0_quantize),
        dequantize: Some(quant_simd::q4_0_dequantize),
        row_dot: Some(matvec_simd::row_dot_avx2::<matvec_simd::Q4_0Block>),
        row_dot_int: Some(matvec_simd::row_dot_int_avx2::<matvec_simd::Q4_0Block>),
    },
};

static Q4_1: CpuKernels = CpuKernels {
    format: Format::Q4_1,
    nearest: |src, dst| blocks::<{ Format::Q4_1.block_bytes() }>(src, dst, scalar::q4_1_nearest),
    stochastic: |src, dst, seed, first| {
        blocks_stochastic::<{ Format::Q4_1.block_bytes() }>(
            src,
            dst,
            seed,
            first,
            scalar::q4_1_stochastic,
        )
    },
    error_minimising: Some(int_search_q4_1::q4_1),
    dequantize: |src, dst| {
        blocks_back::<{ Format::Q4_1.block_bytes() }>(src, dst, scalar::q4_1_dequantize)
    },
    #[cfg(target_arch = "x86_64")]
    simd: SimdKernels {
        nearest: Some(quant_simd::q4_1_quantize),
        dequantize: Some(quant_simd::q4_1_dequantize),
        row_dot: Some(matvec_simd::row_dot_avx2::<matvec_simd::Q4_1Block>),
        row_dot_int: Some(matvec_simd::row_dot_int_avx2::<matvec_simd::Q4_1Block>),
    },
};

static Q5_0: CpuKernels = CpuKernels {
    format: Format::Q5_0,
    nearest: |src, dst| blocks::<{ Format::Q5_0.block_bytes() }>(src, dst, scalar::q5_0_nearest),
    stochastic: |src, dst, seed, first| {
        blocks_stochastic::<{ Format::Q5_0.block_bytes() }>(
            src,
            dst,
            seed,
            first,
            scalar::q5_0_stochastic,
        )
    },
    error_minimising: Some(search::q5_0),
    dequantize: |src, dst| {
        blocks_back::<{ Format::Q5_0.block_bytes() }>(src, dst, scalar::q5_0_dequantize)
    },
    #[cfg(target_arch = "x86_64")]
    simd: SimdKernels {
        nearest: Some(quant_simd::q5_0_quantize),
        dequantize: Some(quant_simd::q5_0_dequantize),
        row_dot: Some(matvec_simd::row_dot_avx2::<matvec_simd::Q5_0Block>),
        row_dot_int: Some(matvec_simd::row_dot_int_avx2::<matvec_simd::Q5_0Block>),
    },
};

static IQ4_NL: CpuKernels = CpuKernels {
    format: Format::IQ4_NL,
    nearest: |src, dst| {
        blocks::<{ Format::IQ4_NL.block_bytes() }>(src, dst, scalar::iq4_nl_nearest)
    },
    stochastic: |src, dst, seed, first| {
        blocks_stochastic::<{ Format::IQ4_NL.block_bytes() }>(
            src,
            dst,
            seed,
            first,
            scalar::iq4_nl_stochastic,
        )
    },
    error_minimising: Some(int_search_iq4_nl::iq4_nl),
    dequantize: |src, dst| {
        blocks_back::<{ Format::IQ4_NL.block_bytes() }>(src, dst, scalar::iq4_nl_dequantize)
    },
    #[cfg(target_arch = "x86_64")]
    simd: SimdKernels {
        nearest: Some(quant_simd::iq4_nl_quantize),
        dequantize: Some(quant_simd::iq4_nl_dequantize),
        row_dot: Some(matvec_simd::row_dot_avx2::<matvec_simd::Iq4NlBlock>),
        row_dot_int: Some(matvec_simd::row_dot_int_avx2::<matvec_simd::Iq4NlBlock>),
    },
};

static Q4_K: CpuKernels = CpuKernels {
    format: Format::Q4_K,
    nearest: |src, dst| {
        blocks_of::<QK_K, { Format::Q4_K.block_bytes() }>(src, dst, kquant::affine_nearest::<Q4K>)
    },
    stochastic: |src, dst, seed, first| {
        blocks_stochastic_of::<QK_K, { Format::Q4_K.block_bytes() }>(
            src,
            dst,
            seed,
            first,
            kquant::affine_stochastic::<Q4K>,
        )
    },
    error_minimising: Some(kquant_search::affine::<Q4K>),
    dequantize: |src, dst| {
        blocks_back_of::<QK_K, { Format::Q4_K.block_bytes() }>(
            src,
            dst,
            kquant::affine_dequantize::<Q4K>,
        )
    },
    #[cfg(target_arch = "x86_64")]
    simd: SimdKernels {
        nearest: Some(quant_simd::q4_k_quantize),
        dequantize: Some(quant_simd::q4_k_dequantize),
        row_dot: Some(matvec_simd::row_dot_k_avx2::<matvec_simd::Q4KBlock>),
        row_dot_int: None,
    },
};

static Q5_K: CpuKernels = CpuKernels {
    format: Format::Q5_K,
    nearest: |src, dst| {
        blocks_of::<QK_K, { Format::Q5_K.block_bytes() }>(src, dst, kquant::affine_nearest::<Q5K>)
    },
    stochastic: |src, dst, seed, first| {
        blocks_stochastic_of::<QK_K, { Format::Q5_K.block_bytes() }>(
            src,
            dst,
            seed,
            first,
            kquant::affine_stochastic::<Q5K>,
        )
    },
    error_minimising: Some(kquant_search::affine::<Q5K>),
    dequantize: |src, dst| {
        blocks_back_of::<QK_K, { Format::Q5_K.block_bytes() }>(
            src,
            dst,
            kquant::affine_dequantize::<Q5K>,
        )
    },
    #[cfg(target_arch = "x86_64")]
    simd: SimdKernels {
        nearest: Some(quant_simd::q5_k_quantize),
        dequantize: Some(quant_simd::q5_k_dequantize),
        row_dot: Some(matvec_simd::row_dot_k_avx2::<matvec_simd::Q5KBlock>),
        row_dot_int: None,
    },
};

static Q6_K: CpuKernels = CpuKernels {
    format: Format::Q6_K,
    nearest: |src, dst| {
        blocks_of::<QK_K, { Format::Q6_K.block_bytes() }>(src, dst, kquant::q6_k_nearest)
    },
    stochastic: |src, dst, seed, first| {
        blocks_stochastic_of::<QK_K, { Format::Q6_K.block_bytes() }>(
            src,
            dst,
            seed,
            first,
            kquant::q6_k_stochastic,
        )
    },
    error_minimising: Some(kquant_search::q6_k),
    dequantize: |src, dst| {
        blocks_back_of::<QK_K, { Format::Q6_K.block_bytes() }>(src, dst, kquant::q6_k_dequantize)
    },
    #[cfg(target_arch = "x86_64")]
    simd: SimdKernels {
        nearest: Some(quant_simd::q6_k_quantize),
        dequantize: Some(quant_simd::q6_k_dequantize),
        row_dot: Some(matvec_simd::row_dot_k_avx2::<matvec_simd::Q6KBlock>),
        row_dot_int: None,
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{ALL_FORMATS, FORMATS};

    #[test]
    fn every_format_has_the_kernels_its_descriptor_declares() {
        for spec in &FORMATS {
            let kernels = CpuKernels::of(spec.format);
            assert_eq!(kernels.format, spec.format);
            let declared = spec.cpu;
            assert_eq!(
                kernels.error_minimising.is_some(),
                declared.error_minimising,
                "{:?}",
                spec.format
            );
            #[cfg(target_arch = "x86_64")]
            {
                let simd = kernels.simd;
                let have = [
                    simd.nearest.is_some(),
                    simd.dequantize.is_some(),
                    simd.row_dot.is_some(),
                    simd.row_dot_int.is_some(),
                ];
                let want = [
                    declared.simd_quantize,
                    declared.simd_dequantize,
                    declared.simd_matvec,
                    declared.integer_matvec,
                ];
                assert_eq!(have, want, "{:?}: SIMD kernels", spec.format);
            }
        }
    }

    #[test]
    fn every_kernel_round_trips_a_block() {
        let x: Vec<f32> = (0..2 * QK_K).map(|i| (i as f32 * 0.37).sin()).collect();
        for format in ALL_FORMATS {
            let kernels = CpuKernels::of(format);
            let size = format.size_of(x.len()).unwrap();
            let (mut near, mut random) = (vec![0u8; size], vec![0u8; size]);
            (kernels.nearest)(&x, &mut near);
            (kernels.stochastic)(&x, &mut random, 7, 0);
            for bytes in [&near, &random] {
                let mut y = vec![0.0f32; x.len()];
                (kernels.dequantize)(bytes, &mut y);
                for (a, b) in x.iter().zip(&y) {
                    assert!((a - b).abs() < 0.2, "{format:?}: {a} -> {b}");
                }
            }
        }
    }

    /// Edge cases then random data: ties, zeros of both signs, negative
    /// maxima, equal values, subnormals, values near each format's limit.
    fn inputs() -> Vec<Vec<f32>> {
        let mut s = 12345u32;
        let mut next = || {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / 16_777_216.0 - 0.5
        };
        let random: Vec<f32> = (0..32 * 512).map(|_| next() * 3.0).collect();
        let ties: Vec<f32> = (0..32 * 64)
            .map(|i| ((i % 255) as f32 - 127.0) / 2.0)
            .collect();
        let mut zeros = vec![0.0f32; 32 * 4];
        zeros[32..64].fill(-0.0);
        zeros[70] = -0.0;
        zeros[71] = 0.5;
        zeros[100] = -0.0;
        zeros[101] = 2.0;
        zeros[5] = -0.0; // block 0: all zeros, +0 first, a -0 later (Q4_1's d must be +0)
        let mut edges = vec![0.25f32; 32 * 4];
        edges[0..32].fill(f32::from_bits(0x0040_0000)); // subnormals
        edges[40] = -3.0; // negative max
        edges[64..96]
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = if i % 2 == 0 { 1e4 } else { -1e4 });
        edges[127] = 65000.0;
        let tail: Vec<f32> = (0..32 * 3 + 8).map(|i| i as f32 * 0.37 - 20.0).collect();
        // The edge blocks again inside whole groups of eight (Q8_0 computes the
        // scales of eight blocks at once, and its last partial group alone).
        let grouped_edges = [zeros.clone(), edges.clone(), random[..32 * 8].to_vec()].concat();
        // Whole super-blocks of the K-quants: zeros of both signs, a
        // constant negative, one all positive (its minimum capped at 0),
        // subnormals beside normal values, exact half-levels, a sub-block
        // far smaller than the others, values near the K-quants' limit.
        let mut k_edges = vec![0.0f32; 256 * 8];
        k_edges[..256].iter_mut().step_by(3).for_each(|v| *v = -0.0);
        k_edges[256..512].fill(-0.75);
        k_edges[512..768]
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = 0.5 + (i % 7) as f32);
        k_edges[768..1024]
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| {
                *v = if i % 2 == 0 {
                    f32::from_bits(0x0040_0000)
                } else {
                    (i % 5) as f32 - 2.0
                }
            });
        k_edges[1024..1280]
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = ((i % 31) as f32 - 15.5) * 0.25);
        k_edges[1280..1536]
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = if i < 32 { 1e-3 * next() } else { 40.0 * next() });
        k_edges[1536..1792]
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = if i % 37 == 0 { -4.0e6 } else { 3.9e6 * next() });
        k_edges[1792..].copy_from_slice(&random[..256]);
        // Eight blocks (one group of the eight-lane kernels), each with its
        // largest magnitude twice, with opposite signs, at positions that
        // differ per block (ggml's max is the first of them, sign included).
        let tied_maxima: Vec<f32> = (0..8usize)
            .flat_map(|b| {
                let (first, second) = ((b * 7) % 32, (b * 7 + 1 + b * 3) % 32);
                let sign = if b % 2 == 0 { 1.0 } else { -1.0 };
                (0..32).map(move |j| match j {
                    _ if j == first.min(second) => 5.0 * sign,
                    _ if j == first.max(second) => -5.0 * sign,
                    _ => (j as f32 - 15.5) * 0.25,
                })
            })
            .collect();
        vec![
            random,
            ties,
            zeros,
            edges,
            tail,
            grouped_edges,
            k_edges,
            tied_maxima,
        ]
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_dequantize_equals_portable_on_any_bytes() {
        if !quant_simd::available() {
            eprintln!("skipped: this CPU has no AVX2/F16C");
            return;
        }
        // Random bytes: scales of every exponent, Inf and NaN among them.
        let mut s = 0x9e37_79b9u32;
        let bytes: Vec<u8> = (0..210 * 144 * 4)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 24) as u8
            })
            .collect();
        for format in ALL_FORMATS {
            let kernels = CpuKernels::of(format);
            let len = bytes.len() / format.block_bytes() * format.block_bytes();
            let n = format.count_in(len).unwrap();
            let (mut portable, mut simd) = (vec![0.0f32; n], vec![0.0f32; n]);
            (kernels.dequantize)(&bytes[..len], &mut portable);
            if quant_simd::dequantize(kernels.simd.dequantize, format, &bytes[..len], &mut simd) {
                // NaN's sign and payload are not specified (the fuzz
                // reference compares NaN as NaN too); every other value is
                // the same bits.
                for (i, (a, b)) in portable.iter().zip(&simd).enumerate() {
                    let same = a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
                    assert!(same, "{format:?} value {i}: {a} vs {b}");
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_equals_portable_byte_for_byte() {
        if !quant_simd::available() {
            eprintln!("skipped: this CPU has no AVX2/F16C");
            return;
        }
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for x in inputs() {
            for format in ALL_FORMATS {
                if format.check_count(x.len()).is_err() {
                    continue;
                }
                let kernels = CpuKernels::of(format);
                let size = format.size_of(x.len()).unwrap();
                let (mut portable, mut simd) = (vec![0u8; size], vec![0u8; size]);
                (kernels.nearest)(&x, &mut portable);
                if quant_simd::quantize(kernels.simd.nearest, format, &x, &mut simd) {
                    assert_eq!(portable, simd, "{format:?} quantize");
                }
                let (mut y_portable, mut y_simd) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
                (kernels.dequantize)(&portable, &mut y_portable);
                if quant_simd::dequantize(kernels.simd.dequantize, format, &portable, &mut y_simd) {
                    assert_eq!(bits(&y_portable), bits(&y_simd), "{format:?} dequantize");
                }
            }
        }
    }
}
