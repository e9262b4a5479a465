//! AVX2 + F16C kernels for nearest-rounding quantize and for dequantize,
//! chosen at run time when the CPU has both. They give the same bytes as the
//! portable kernels in `scalar.rs` (tests compare them on edge cases and random
//! data): the same operations in the same order, each exactly rounded in f32
//! (no fused multiply-add), and the block-level scalars (amax, scale, its
//! reciprocal) computed exactly as the portable code does. C's roundf is the
//! one operation computed another way: [`round_half_away_small`], equal to it
//! on the values it is given.
//!
//! DESIGN.md keeps `unsafe` to `src/ffi` and `src/vk`; intrinsics are the one
//! reasoned exception: every intrinsic call is `unsafe`, and each block below
//! says why it is sound (the CPU features were detected before any is called,
//! and every load and store stays inside a slice whose length was checked).

use super::kquant::{
    AFFINE_SUBS, Affine, Q4K, Q5K, Q6_LEVELS, Q6_SUBS, affine_scales_of, pack_scales, q6_scales_of,
};
use super::scalar::{self, QK};
use crate::format::Format;
use std::arch::x86_64::*;

/// Whether this CPU runs these kernels (AVX2 and F16C, detected at run time).
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c")
}

/// A nearest-rounding quantize kernel of one format: whole blocks of clean
/// input (finite, in range).
///
/// # Safety
/// AVX2 and F16C present; `dst.len()` is the format's size of `src.len()`.
pub type Quantize = unsafe fn(&[f32], &mut [u8]);

/// A dequantize kernel of one format: whole blocks.
///
/// # Safety
/// AVX2 and F16C present; `dst.len()` is the element count of `src`'s blocks.
pub type Dequantize = unsafe fn(&[u8], &mut [f32]);

/// Runs `kernel` (the format's, from the kernel table) where this CPU has
/// AVX2 and F16C; false where it has not or the format has no SIMD kernel.
pub fn quantize(kernel: Option<Quantize>, format: Format, src: &[f32], dst: &mut [u8]) -> bool {
    let Some(kernel) = kernel.filter(|_| available()) else {
        return false;
    };
    assert_eq!(
        format.size_of(src.len()).ok(),
        Some(dst.len()),
        "callers pass matching sizes"
    );
    // SAFETY: AVX2 and F16C were detected; the sizes match (asserted), which
    // is all the kernel's contract asks.
    unsafe { kernel(src, dst) };
    true
}

/// Runs `kernel` as [`quantize`] does.
pub fn dequantize(kernel: Option<Dequantize>, format: Format, src: &[u8], dst: &mut [f32]) -> bool {
    let Some(kernel) = kernel.filter(|_| available()) else {
        return false;
    };
    assert_eq!(
        format.count_in(src.len()).ok(),
        Some(dst.len()),
        "callers pass matching sizes"
    );
    // SAFETY: as in quantize: features detected, sizes asserted.
    unsafe { kernel(src, dst) };
    true
}

/// Largest lane of a vector.
#[target_feature(enable = "avx2")]
fn horizontal_max(v: __m256) -> f32 {
    let half = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let quarter = _mm_max_ps(half, _mm_movehl_ps(half, half));
    let one = _mm_max_ss(quarter, _mm_shuffle_ps(quarter, quarter, 1));
    _mm_cvtss_f32(one)
}

#[target_feature(enable = "avx2")]
fn horizontal_min(v: __m256) -> f32 {
    let half = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let quarter = _mm_min_ps(half, _mm_movehl_ps(half, half));
    let one = _mm_min_ss(quarter, _mm_shuffle_ps(quarter, quarter, 1));
    _mm_cvtss_f32(one)
}

/// The four vectors of a 32-element block.
///
/// # Safety
/// `x` must hold at least 32 elements.
#[target_feature(enable = "avx2")]
unsafe fn load_block(x: &[f32]) -> [__m256; 4] {
    debug_assert!(x.len() >= QK);
    let p = x.as_ptr();
    // SAFETY: x has at least 32 elements (caller's contract); loadu has no alignment need.
    unsafe {
        [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ]
    }
}

#[target_feature(enable = "avx2")]
fn abs(v: __m256) -> __m256 {
    _mm256_andnot_ps(_mm256_set1_ps(-0.0), v)
}

/// Packs four vectors of i32 in [-128, 127] into 32 bytes, in element order.
#[target_feature(enable = "avx2")]
fn pack_i8(q: [__m256i; 4]) -> __m256i {
    let lo = _mm256_packs_epi32(q[0], q[1]);
    let hi = _mm256_packs_epi32(q[2], q[3]);
    let bytes = _mm256_packs_epi16(lo, hi);
    // The packs interleave 128-bit lanes; restore element order.
    _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// Packs four vectors of i32 nibbles (elements 0..32) into 16 bytes: element j
/// in the low nibble of byte j, element j+16 in the high nibble.
#[target_feature(enable = "avx2")]
fn pack_nibbles(q: [__m256i; 4]) -> __m128i {
    let order = |v: __m256i| _mm256_permute4x64_epi64(v, 0b11_01_10_00);
    let low = order(_mm256_packs_epi32(q[0], q[1])); // elements 0..16 as i16, in order
    let high = order(_mm256_packs_epi32(q[2], q[3])); // elements 16..32
    let combined = _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
    _mm_packus_epi16(
        _mm256_castsi256_si128(combined),
        _mm256_extracti128_si256(combined, 1),
    )
}

/// Index of the first lane (0..32) of the block equal to `value`; 0 if none.
#[target_feature(enable = "avx2")]
fn first_equal(v: [__m256; 4], value: f32) -> usize {
    let target = _mm256_set1_ps(value);
    let mask = v.iter().enumerate().fold(0u32, |acc, (k, &lane)| {
        acc | ((_mm256_movemask_ps(_mm256_cmp_ps(lane, target, _CMP_EQ_OQ)) as u32) << (8 * k))
    });
    if mask == 0 {
        0
    } else {
        mask.trailing_zeros() as usize
    }
}

/// The length of the longest prefix of `src` made of whole blocks of 32 whose
/// elements are all in range (below `limit` in magnitude, not NaN), eight
/// lanes at a time; 0 when this CPU lacks AVX2. `limits` scans the rest.
pub fn in_range_prefix(src: &[f32], limit: f32) -> usize {
    if !is_x86_feature_detected!("avx2") {
        return 0;
    }
    // SAFETY: AVX2 was detected; the kernel reads src[..] only.
    unsafe { in_range_prefix_avx2(src, limit) }
}

/// # Safety
/// AVX2 present.
#[target_feature(enable = "avx2")]
unsafe fn in_range_prefix_avx2(src: &[f32], limit: f32) -> usize {
    let bound = _mm256_set1_ps(limit);
    let whole = src.len() / QK * QK;
    for i in (0..whole).step_by(QK) {
        // SAFETY: i + 32 <= src.len().
        let v = unsafe { load_block(&src[i..i + QK]) };
        // abs(x) < limit is false for NaN (ordered comparison).
        let ok = v.map(|v| _mm256_cmp_ps(abs(v), bound, _CMP_LT_OQ));
        let all = _mm256_and_ps(_mm256_and_ps(ok[0], ok[1]), _mm256_and_ps(ok[2], ok[3]));
        if _mm256_movemask_ps(all) != 0xff {
            return i;
        }
    }
    whole
}

/// binary16 bits (little endian at `bytes[0..2]`) to f32, in one instruction.
#[inline]
#[target_feature(enable = "f16c")]
pub(crate) fn f16_at(bytes: &[u8]) -> f32 {
    let bits = u16::from_le_bytes([bytes[0], bytes[1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

/// f32 to binary16 bits, round to nearest even (as `scalar::f16_bits`).
#[target_feature(enable = "f16c")]
fn f16_bits(value: f32) -> u16 {
    _mm_extract_epi16::<0>(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(value))) as u16
}

/// Writes the f16 bits of `value` at `out[0..2]`.
#[target_feature(enable = "f16c")]
fn put_f16(out: &mut [u8], value: f32) {
    out[..2].copy_from_slice(&f16_bits(value).to_le_bytes());
}

/// The largest magnitude of each of eight blocks, block k in lane k (as
/// eight [`horizontal_max`] calls: max is exact, so the order of the
/// comparisons does not change the result).
///
/// # Safety
/// `x` must hold at least 256 elements.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn absmax8(x: &[f32]) -> __m256 {
    debug_assert!(x.len() >= 8 * QK);
    let block_max: [__m256; 8] = std::array::from_fn(|k| {
        // SAFETY: block k's 32 elements lie inside x (caller's contract).
        let v = unsafe { load_block(&x[k * QK..]) };
        _mm256_max_ps(
            _mm256_max_ps(abs(v[0]), abs(v[1])),
            _mm256_max_ps(abs(v[2]), abs(v[3])),
        )
    });
    // Halve the lanes three times, pairing blocks: unpack (blocks 2i, 2i+1),
    // then shuffle (pairs of pairs), then the 128-bit halves.
    let pairs: [__m256; 4] = std::array::from_fn(|i| {
        let (a, b) = (block_max[2 * i], block_max[2 * i + 1]);
        _mm256_max_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b))
    });
    let quads: [__m256; 2] = std::array::from_fn(|i| {
        let (a, b) = (pairs[2 * i], pairs[2 * i + 1]);
        _mm256_max_ps(
            _mm256_shuffle_ps::<0x44>(a, b),
            _mm256_shuffle_ps::<0xee>(a, b),
        )
    });
    _mm256_max_ps(
        _mm256_permute2f128_ps::<0x20>(quads[0], quads[1]),
        _mm256_permute2f128_ps::<0x31>(quads[0], quads[1]),
    )
}

/// C's roundf of each lane as an i32, for |v| < 2^23: the truncation of
/// v + copysign(0.49999997, v). The sum rounds up to the next integer exactly
/// when the fraction of |v| is ½ or more, so this equals C's roundf
/// (`scalar::round_half_away`) in four operations instead of nine (with the
/// conversion). An exhaustive comparison over every f32 below 2^23 in
/// magnitude, both signs, found no difference; the test
/// `round_half_away_by_truncation_matches_c_roundf` keeps the floats around
/// every integer and half-integer to 257 and a sample of the rest.
#[inline]
#[target_feature(enable = "avx2")]
fn round_half_away_small(v: __m256) -> __m256i {
    let sign = _mm256_and_ps(v, _mm256_set1_ps(-0.0));
    let below_half = _mm256_or_ps(sign, _mm256_set1_ps(HALF_BELOW));
    _mm256_cvttps_epi32(_mm256_add_ps(v, below_half))
}

/// The largest f32 below ½ (0.49999997).
const HALF_BELOW: f32 = f32::from_bits(0x3eff_ffff);

/// # Safety
/// AVX2 and F16C present; `dst.len() == src.len() / 32 * 34`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn q8_0_quantize(src: &[f32], dst: &mut [u8]) {
    // Eight blocks at a time: their maxima reduce together, and their scales
    // d = amax/127, the reciprocals and the f16 conversions take one vector
    // instruction each instead of eight scalar ones (the same correctly
    // rounded operations, so the same bytes). |x·id| ≤ 127 (to a few ulps),
    // well inside round_half_away_small's domain.
    const GROUP: usize = 8;
    let grouped = src.len() / (GROUP * QK) * (GROUP * QK);
    let (src_grouped, src_rest) = src.split_at(grouped);
    let (dst_grouped, dst_rest) = dst.split_at_mut(grouped / QK * 34);
    for (x, out) in src_grouped
        .chunks_exact(GROUP * QK)
        .zip(dst_grouped.chunks_exact_mut(GROUP * 34))
    {
        // SAFETY: x holds exactly 256 elements.
        let amax = unsafe { absmax8(x) };
        let d = _mm256_div_ps(amax, _mm256_set1_ps(127.0));
        // inverse_scale: 1/d, or 0 where d is zero or subnormal (d >= 0 here).
        let normal = _mm256_cmp_ps(d, _mm256_set1_ps(f32::MIN_POSITIVE), _CMP_GE_OQ);
        let id = _mm256_and_ps(normal, _mm256_div_ps(_mm256_set1_ps(1.0), d));
        let (mut ids, mut d_bits) = ([0.0f32; GROUP], [0u16; GROUP]);
        // SAFETY: ids holds 8 floats and d_bits 8 u16 (16 bytes).
        unsafe {
            _mm256_storeu_ps(ids.as_mut_ptr(), id);
            _mm_storeu_si128(
                d_bits.as_mut_ptr().cast(),
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(d),
            );
        }
        for (k, (block, out)) in x.chunks_exact(QK).zip(out.chunks_exact_mut(34)).enumerate() {
            // SAFETY: block has exactly 32 elements.
            let v = unsafe { load_block(block) };
            let id = _mm256_set1_ps(ids[k]);
            let q = v.map(|v| round_half_away_small(_mm256_mul_ps(v, id)));
            out[..2].copy_from_slice(&d_bits[k].to_le_bytes());
            // SAFETY: out has 34 bytes; the store covers out[2..34].
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(2).cast(), pack_i8(q)) };
        }
    }
    for (x, out) in src_rest.chunks_exact(QK).zip(dst_rest.chunks_exact_mut(34)) {
        // SAFETY: x has exactly 32 elements.
        let v = unsafe { load_block(x) };
        let m = _mm256_max_ps(
            _mm256_max_ps(abs(v[0]), abs(v[1])),
            _mm256_max_ps(abs(v[2]), abs(v[3])),
        );
        let d = horizontal_max(m) / 127.0;
        let id = _mm256_set1_ps(scalar::inverse_scale(d));
        let q = v.map(|v| round_half_away_small(_mm256_mul_ps(v, id)));
        put_f16(out, d);
        // SAFETY: out has 34 bytes; the store covers out[2..34].
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(2).cast(), pack_i8(q)) };
    }
}

/// The scale and levels of a block `x` (loaded as `v`) in a format whose zero
/// point is `zero` among 2·zero levels (Q4_0, Q5_0), as `scalar` computes them:
/// d = max/−zero with ggml's max, q = min(2·zero − 1, ⌊x·id + zero + ½⌋).
#[inline]
#[target_feature(enable = "avx2")]
fn offset_levels(x: &[f32], v: [__m256; 4], zero: f32) -> (f32, [__m256i; 4]) {
    let d = signed_max(x, v) / -zero;
    (d, levels_of_scale(v, d, zero))
}

/// ggml's max of a block `x` (loaded as `v`): the first element of largest
/// magnitude, with its sign (+0 when all are zero), as `scalar::signed_max`.
#[inline]
#[target_feature(enable = "avx2")]
fn signed_max(x: &[f32], v: [__m256; 4]) -> f32 {
    let m = _mm256_max_ps(
        _mm256_max_ps(abs(v[0]), abs(v[1])),
        _mm256_max_ps(abs(v[2]), abs(v[3])),
    );
    let amax = horizontal_max(m);
    if amax == 0.0 {
        0.0
    } else {
        x[first_equal([abs(v[0]), abs(v[1]), abs(v[2]), abs(v[3])], amax)]
    }
}

/// The levels `min(2·zero − 1, ⌊x·id + zero + ½⌋)` of the scale `d`.
#[inline]
#[target_feature(enable = "avx2")]
fn levels_of_scale(v: [__m256; 4], d: f32, zero: f32) -> [__m256i; 4] {
    let id = _mm256_set1_ps(scalar::inverse_scale(d));
    let (half_up, top) = (_mm256_set1_ps(zero + 0.5), _mm256_set1_ps(2.0 * zero - 1.0));
    // A loop, not `map`: the searches call this per block, and the
    // closure would not be inlined.
    let mut q = [_mm256_setzero_si256(); 4];
    for (q, &v) in q.iter_mut().zip(&v) {
        let t = _mm256_round_ps(
            _mm256_add_ps(_mm256_mul_ps(v, id), half_up),
            _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC,
        );
        *q = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(t, _mm256_setzero_ps()), top));
    }
    q
}

/// # Safety
/// AVX2 and F16C present; `dst.len() == src.len() / 32 * 18`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn q4_0_quantize(src: &[f32], dst: &mut [u8]) {
    for (x, out) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(18)) {
        // SAFETY: x has exactly 32 elements.
        let v = unsafe { load_block(x) };
        let (d, q) = offset_levels(x, v, 8.0);
        put_f16(out, d);
        // SAFETY: out has 18 bytes; the store covers out[2..18].
        unsafe { _mm_storeu_si128(out.as_mut_ptr().add(2).cast(), pack_nibbles(q)) };
    }
}

/// # Safety
/// AVX2 and F16C present; `dst.len() == src.len() / 32 * 22`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn q5_0_quantize(src: &[f32], dst: &mut [u8]) {
    for (x, out) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(22)) {
        // SAFETY: x has exactly 32 elements.
        let v = unsafe { load_block(x) };
        let (d, q) = offset_levels(x, v, 16.0);
        put_f16(out, d);
        // Bit 4 of each level (0..31, one byte each in element order) moved
        // to the byte's top bit: the byte mask is qh.
        let fifth_bits = _mm256_movemask_epi8(_mm256_slli_epi16(pack_i8(q), 3)) as u32;
        out[2..6].copy_from_slice(&fifth_bits.to_le_bytes());
        let low = q.map(|v| _mm256_and_si256(v, _mm256_set1_epi32(0x0f)));
        // SAFETY: out has 22 bytes; the store covers out[6..22].
        unsafe { _mm_storeu_si128(out.as_mut_ptr().add(6).cast(), pack_nibbles(low)) };
    }
}

/// # Safety
/// AVX2 and F16C present; `dst.len() == src.len() / 32 * 20`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn q4_1_quantize(src: &[f32], dst: &mut [u8]) {
    for (x, out) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(20)) {
        let (lo, hi) = q4_1_min_max(x);
        q4_1_with_scale(x, (hi - lo) / 15.0, lo, out);
    }
}

/// The block's minimum and maximum as `scalar::min_max` finds them.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn q4_1_min_max(x: &[f32]) -> (f32, f32) {
    // SAFETY: x has 32 elements (every caller passes one block).
    let v = unsafe { load_block(x) };
    let mut hi = horizontal_max(_mm256_max_ps(
        _mm256_max_ps(v[0], v[1]),
        _mm256_max_ps(v[2], v[3]),
    ));
    let mut lo = horizontal_min(_mm256_min_ps(
        _mm256_min_ps(v[0], v[1]),
        _mm256_min_ps(v[2], v[3]),
    ));
    // A zero minimum or maximum takes the sign of the block's first zero, as
    // ggml's C loop does (the first element equal to it is kept); the vector
    // min/max would return either sign, and d = max − min can be −0.
    if lo == 0.0 || hi == 0.0 {
        let first_zero = x[x.iter().position(|&v| v == 0.0).unwrap_or(0)];
        if lo == 0.0 {
            lo = first_zero;
        }
        if hi == 0.0 {
            hi = first_zero;
        }
    }
    (lo, hi)
}

/// `scalar::q4_1_with_scale`: q = min(15, ⌊(x − m)·id + ½⌋), 0 below m.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn q4_1_with_scale(x: &[f32], d: f32, m: f32, out: &mut [u8]) {
    // SAFETY: x has 32 elements (every caller passes one block).
    let v = unsafe { load_block(x) };
    let id = _mm256_set1_ps(scalar::inverse_scale(d));
    let vlo = _mm256_set1_ps(m);
    // A loop, not `map`: the closure would not be inlined.
    let mut q = [_mm256_setzero_si256(); 4];
    for (q, &v) in q.iter_mut().zip(&v) {
        let t = _mm256_add_ps(
            _mm256_mul_ps(_mm256_sub_ps(v, vlo), id),
            _mm256_set1_ps(0.5),
        );
        let t = _mm256_round_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        *q = _mm256_cvtps_epi32(_mm256_min_ps(
            _mm256_max_ps(t, _mm256_setzero_ps()),
            _mm256_set1_ps(15.0),
        ));
    }
    put_f16(out, d);
    out[2..4].copy_from_slice(&f16_bits(m).to_le_bytes());
    // SAFETY: out has 20 bytes; the store covers out[4..20].
    unsafe { _mm_storeu_si128(out[..20].as_mut_ptr().add(4).cast(), pack_nibbles(q)) };
}

/// `scalar::iq4_nl_with_scale`: each element on the level nearest x/d.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn iq4_nl_with_scale(x: &[f32], d: f32, out: &mut [u8]) {
    // SAFETY: x has 32 elements (every caller passes one block).
    let v = unsafe { load_block(x) };
    let id = _mm256_set1_ps(scalar::inverse_scale(d));
    let mut q = [_mm256_setzero_si256(); 4];
    for (q, &v) in q.iter_mut().zip(&v) {
        *q = iq4_nl_indices(_mm256_mul_ps(v, id));
    }
    put_f16(out, d);
    // SAFETY: out has 18 bytes; the store covers out[2..18].
    unsafe { _mm_storeu_si128(out[..18].as_mut_ptr().add(2).cast(), pack_nibbles(q)) };
}

/// # Safety
/// AVX2 and F16C present; `dst.len() == 2 * src.len()`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn f16_quantize(src: &[f32], dst: &mut [u8]) {
    let whole = src.len() / 8 * 8;
    for i in (0..whole).step_by(8) {
        // SAFETY: i + 8 <= src.len() and 2 * (i + 8) <= dst.len().
        unsafe {
            let v = _mm256_loadu_ps(src.as_ptr().add(i));
            let h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
            _mm_storeu_si128(dst.as_mut_ptr().add(2 * i).cast(), h);
        }
    }
    for i in whole..src.len() {
        dst[2 * i..2 * i + 2].copy_from_slice(&scalar::f16_bits(src[i]).to_le_bytes());
    }
}

/// # Safety
/// AVX2 present; `dst.len() == 2 * src.len()`; no NaN in `src`.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn bf16_quantize(src: &[f32], dst: &mut [u8]) {
    let whole = src.len() / 16 * 16;
    let bias = _mm256_set1_epi32(0x7fff);
    let one = _mm256_set1_epi32(1);
    let round = |u: __m256i| {
        let lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
        _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, lsb)), 16)
    };
    for i in (0..whole).step_by(16) {
        // SAFETY: i + 16 <= src.len() and 2 * (i + 16) <= dst.len().
        unsafe {
            let a = round(_mm256_loadu_si256(src.as_ptr().add(i).cast()));
            let b = round(_mm256_loadu_si256(src.as_ptr().add(i + 8).cast()));
            let packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0b11_01_10_00);
            _mm256_storeu_si256(dst.as_mut_ptr().add(2 * i).cast(), packed);
        }
    }
    for i in whole..src.len() {
        dst[2 * i..2 * i + 2].copy_from_slice(&scalar::bf16_bits(src[i]).to_le_bytes());
    }
}

/// # Safety
/// AVX2 and F16C present; `src.len() == 2 * dst.len()`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn f16_dequantize(src: &[u8], dst: &mut [f32]) {
    let stream = streaming(dst);
    let whole = dst.len() / 8 * 8;
    for i in (0..whole).step_by(8) {
        // SAFETY: 2 * (i + 8) <= src.len() and i + 8 <= dst.len().
        unsafe {
            let h = _mm_loadu_si128(src.as_ptr().add(2 * i).cast());
            let v = _mm256_cvtph_ps(h);
            if stream {
                stream8(dst.as_mut_ptr().add(i), v);
            } else {
                _mm256_storeu_ps(dst.as_mut_ptr().add(i), v);
            }
        }
    }
    end_streaming(stream);
    for i in whole..dst.len() {
        dst[i] = scalar::f16_value(u16::from_le_bytes([src[2 * i], src[2 * i + 1]]));
    }
}

/// # Safety
/// AVX2 present; `src.len() == 2 * dst.len()`.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn bf16_dequantize(src: &[u8], dst: &mut [f32]) {
    let stream = streaming(dst);
    let whole = dst.len() / 8 * 8;
    for i in (0..whole).step_by(8) {
        // SAFETY: 2 * (i + 8) <= src.len() and i + 8 <= dst.len().
        unsafe {
            let h = _mm_loadu_si128(src.as_ptr().add(2 * i).cast());
            let wide = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
            if stream {
                stream8(dst.as_mut_ptr().add(i), _mm256_castsi256_ps(wide));
            } else {
                _mm256_storeu_si256(dst.as_mut_ptr().add(i).cast(), wide);
            }
        }
    }
    end_streaming(stream);
    for i in whole..dst.len() {
        dst[i] = scalar::bf16_value(u16::from_le_bytes([src[2 * i], src[2 * i + 1]]));
    }
}

/// Stores the 32 dequantized values of a block.
///
/// # Safety
/// `y` must hold at least 32 elements.
#[target_feature(enable = "avx2")]
unsafe fn store_block(y: &mut [f32], v: [__m256; 4], stream: bool) {
    debug_assert!(y.len() >= QK);
    let p = y.as_mut_ptr();
    // SAFETY: y has at least 32 elements (caller's contract); streaming stores
    // are used only when y is 16-byte aligned (`streaming` checked the start,
    // and blocks are 128 bytes apart).
    unsafe {
        if stream {
            for (k, lane) in v.iter().enumerate() {
                stream8(p.add(8 * k), *lane);
            }
        } else {
            _mm256_storeu_ps(p, v[0]);
            _mm256_storeu_ps(p.add(8), v[1]);
            _mm256_storeu_ps(p.add(16), v[2]);
            _mm256_storeu_ps(p.add(24), v[3]);
        }
    }
}

/// Outputs at least this large bypass the caches (non-temporal stores), as
/// memset does: the output would evict the input and is not read back soon,
/// and it saves the read-for-ownership of every line.
const STREAM_MIN_FLOATS: usize = 1 << 20;

/// Whether to stream the stores into `dst`: large and 16-byte aligned (what
/// malloc gives; the stores are 16 bytes wide so that suffices).
fn streaming(dst: &[f32]) -> bool {
    dst.len() >= STREAM_MIN_FLOATS && (dst.as_ptr() as usize) % 16 == 0
}

/// Stores 8 floats at `p` with two 16-byte non-temporal stores.
///
/// # Safety
/// `p` is 16-byte aligned and valid for 8 floats.
#[target_feature(enable = "avx2")]
unsafe fn stream8(p: *mut f32, v: __m256) {
    // SAFETY: p is 16-byte aligned and valid for 8 floats (caller's contract).
    unsafe {
        _mm_stream_ps(p, _mm256_castps256_ps128(v));
        _mm_stream_ps(p.add(4), _mm256_extractf128_ps(v, 1));
    }
}

/// Orders streamed stores before whatever the caller does next.
#[target_feature(enable = "avx2")]
fn end_streaming(stream: bool) {
    if stream {
        _mm_sfence();
    }
}

/// The 32 nibbles of a 4-bit block as four i32 vectors, in element order.
///
/// # Safety
/// `qs` must hold at least 16 bytes.
#[target_feature(enable = "avx2")]
unsafe fn nibbles(qs: &[u8]) -> [__m256i; 4] {
    // SAFETY: qs has at least 16 bytes (caller's contract).
    let bytes = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    let mask = _mm_set1_epi8(0x0f);
    let low = _mm_and_si128(bytes, mask);
    let high = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
    [
        _mm256_cvtepu8_epi32(low),
        _mm256_cvtepu8_epi32(_mm_srli_si128(low, 8)),
        _mm256_cvtepu8_epi32(high),
        _mm256_cvtepu8_epi32(_mm_srli_si128(high, 8)),
    ]
}

/// # Safety
/// AVX2 and F16C present; `dst.len() == src.len() / 34 * 32`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn q8_0_dequantize(src: &[u8], dst: &mut [f32]) {
    let stream = streaming(dst);
    for (block, y) in src.chunks_exact(34).zip(dst.chunks_exact_mut(QK)) {
        let d = _mm256_set1_ps(f16_at(block));
        // SAFETY: block has 34 bytes: the loads read block[2..34].
        let q = unsafe { _mm256_loadu_si256(block.as_ptr().add(2).cast()) };
        let lanes = [
            _mm256_cvtepi8_epi32(_mm256_castsi256_si128(q)),
            _mm256_cvtepi8_epi32(_mm_srli_si128(_mm256_castsi256_si128(q), 8)),
            _mm256_cvtepi8_epi32(_mm256_extracti128_si256(q, 1)),
            _mm256_cvtepi8_epi32(_mm_srli_si128(_mm256_extracti128_si256(q, 1), 8)),
        ];
        // SAFETY: y has exactly 32 elements.
        unsafe {
            store_block(
                y,
                lanes.map(|l| _mm256_mul_ps(d, _mm256_cvtepi32_ps(l))),
                stream,
            )
        };
    }
    end_streaming(stream);
}

/// # Safety
/// AVX2 and F16C present; `dst.len() == src.len() / 18 * 32`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn q4_0_dequantize(src: &[u8], dst: &mut [f32]) {
    let stream = streaming(dst);
    let eight = _mm256_set1_epi32(8);
    for (block, y) in src.chunks_exact(18).zip(dst.chunks_exact_mut(QK)) {
        let d = _mm256_set1_ps(f16_at(block));
        // SAFETY: block has 18 bytes: 16 bytes of nibbles from offset 2.
        let q = unsafe { nibbles(&block[2..18]) };
        // SAFETY: y has exactly 32 elements.
        unsafe {
            store_block(
                y,
                q.map(|l| _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(l, eight)))),
                stream,
            )
        };
    }
    end_streaming(stream);
}

/// The 32 levels (0..32) of a Q5_0 block as bytes, in element order: the
/// nibbles, with 0x10 added where the element's bit of `qh` is set.
///
/// # Safety
/// `block` must hold at least 22 bytes.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn q5_0_levels(block: &[u8]) -> __m256i {
    let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
    // Byte j of `spread` is byte j/8 of qh (each 128-bit lane holds qh's
    // four bytes); `select` keeps bit j%8 of it.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(qh as i32),
        _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        ),
    );
    let select = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
    let fifth = _mm256_and_si256(set, _mm256_set1_epi8(0x10));
    // SAFETY: block has 22 bytes: 16 bytes of nibbles from offset 6.
    let packed = unsafe { _mm_loadu_si128(block.as_ptr().add(6).cast()) };
    let mask = _mm_set1_epi8(0x0f);
    let low = _mm_and_si128(packed, mask);
    let high = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
    _mm256_or_si256(_mm256_set_m128i(high, low), fifth)
}

/// The 32 bytes of `v` (unsigned) as four i32 vectors, in order.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn widen_bytes(v: __m256i) -> [__m256i; 4] {
    let (low, high) = (_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    [
        _mm256_cvtepu8_epi32(low),
        _mm256_cvtepu8_epi32(_mm_srli_si128(low, 8)),
        _mm256_cvtepu8_epi32(high),
        _mm256_cvtepu8_epi32(_mm_srli_si128(high, 8)),
    ]
}

/// # Safety
/// AVX2 and F16C present; `dst.len() == src.len() / 22 * 32`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn q5_0_dequantize(src: &[u8], dst: &mut [f32]) {
    let stream = streaming(dst);
    let sixteen = _mm256_set1_epi32(16);
    for (block, y) in src.chunks_exact(22).zip(dst.chunks_exact_mut(QK)) {
        let d = _mm256_set1_ps(f16_at(block));
        // SAFETY: block has 22 bytes.
        let q = widen_bytes(unsafe { q5_0_levels(block) });
        // SAFETY: y has exactly 32 elements.
        unsafe {
            store_block(
                y,
                q.map(|l| _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(l, sixteen)))),
                stream,
            )
        };
    }
    end_streaming(stream);
}

/// # Safety
/// AVX2 and F16C present; `dst.len() == src.len() / 20 * 32`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn q4_1_dequantize(src: &[u8], dst: &mut [f32]) {
    let stream = streaming(dst);
    for (block, y) in src.chunks_exact(20).zip(dst.chunks_exact_mut(QK)) {
        let d = _mm256_set1_ps(f16_at(block));
        let m = _mm256_set1_ps(f16_at(&block[2..]));
        // SAFETY: block has 20 bytes: 16 bytes of nibbles from offset 4.
        let q = unsafe { nibbles(&block[4..20]) };
        // A product, then a sum, as the portable kernel (no fused multiply-add).
        // SAFETY: y has exactly 32 elements.
        unsafe {
            store_block(
                y,
                q.map(|l| _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(l)), m)),
                stream,
            )
        };
    }
    end_streaming(stream);
}

/// An 8×8 transpose: row i of the result holds element i of each row of `r`.
#[inline]
#[target_feature(enable = "avx2")]
fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let t = [
        _mm256_unpacklo_ps(r[0], r[1]),
        _mm256_unpackhi_ps(r[0], r[1]),
        _mm256_unpacklo_ps(r[2], r[3]),
        _mm256_unpackhi_ps(r[2], r[3]),
        _mm256_unpacklo_ps(r[4], r[5]),
        _mm256_unpackhi_ps(r[4], r[5]),
        _mm256_unpacklo_ps(r[6], r[7]),
        _mm256_unpackhi_ps(r[6], r[7]),
    ];
    let s = [
        _mm256_shuffle_ps::<0x44>(t[0], t[2]),
        _mm256_shuffle_ps::<0xee>(t[0], t[2]),
        _mm256_shuffle_ps::<0x44>(t[1], t[3]),
        _mm256_shuffle_ps::<0xee>(t[1], t[3]),
        _mm256_shuffle_ps::<0x44>(t[4], t[6]),
        _mm256_shuffle_ps::<0xee>(t[4], t[6]),
        _mm256_shuffle_ps::<0x44>(t[5], t[7]),
        _mm256_shuffle_ps::<0xee>(t[5], t[7]),
    ];
    [
        _mm256_permute2f128_ps::<0x20>(s[0], s[4]),
        _mm256_permute2f128_ps::<0x20>(s[1], s[5]),
        _mm256_permute2f128_ps::<0x20>(s[2], s[6]),
        _mm256_permute2f128_ps::<0x20>(s[3], s[7]),
        _mm256_permute2f128_ps::<0x31>(s[0], s[4]),
        _mm256_permute2f128_ps::<0x31>(s[1], s[5]),
        _mm256_permute2f128_ps::<0x31>(s[2], s[6]),
        _mm256_permute2f128_ps::<0x31>(s[3], s[7]),
    ]
}

/// Per run b of u = ⌊2t⌋ + 256 (32b ..= 32b + 31, see [`iq4_nl_indices`]):
/// the midpoints below it, and where in it the first and second of its own
/// lie (32: none).
pub(super) const IQ4_NL_RUN_BELOW: [i8; 16] =
    [0, 1, 1, 2, 3, 4, 5, 6, 8, 9, 11, 12, 13, 14, 14, 15];
pub(super) const IQ4_NL_RUN_FIRST: [i8; 16] =
    [25, 32, 5, 12, 14, 12, 7, 0, 14, 6, 27, 26, 30, 32, 10, 32];
pub(super) const IQ4_NL_RUN_SECOND: [i8; 16] = [
    32, 32, 32, 32, 32, 32, 32, 23, 32, 31, 32, 32, 32, 32, 32, 32,
];

/// IQ4_NL's index of each lane of `t` (`scalar::iq4_nl_index`, the number
/// of midpoints at or below t). Every midpoint m is a multiple of ½, so
/// t ≥ m exactly when u = ⌊2t⌋ + 256 ≥ 2m + 256; u (clamped to 0..=511,
/// which keeps every index) is exact, and each run of 32 values of u holds at
/// most two midpoints: the index is the run's count below it plus the two
/// comparisons, three 16-entry lookups (`pshufb`).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn iq4_nl_indices(t: __m256) -> __m256i {
    let table = |v: [i8; 16]| {
        _mm256_setr_epi8(
            v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13],
            v[14], v[15], v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11],
            v[12], v[13], v[14], v[15],
        )
    };
    let doubled = _mm256_cvtps_epi32(_mm256_floor_ps(_mm256_add_ps(t, t)));
    let u = _mm256_min_epi32(
        _mm256_max_epi32(
            _mm256_add_epi32(doubled, _mm256_set1_epi32(256)),
            _mm256_setzero_si256(),
        ),
        _mm256_set1_epi32(511),
    );
    // The run in byte 0 of each lane; 0x80 in the others makes pshufb zero them.
    let run = _mm256_or_si256(
        _mm256_srli_epi32::<5>(u),
        _mm256_set1_epi32(0x8080_8000_u32 as i32),
    );
    let within = _mm256_and_si256(u, _mm256_set1_epi32(31));
    let look = |v: [i8; 16]| _mm256_shuffle_epi8(table(v), run);
    // −1 where u lies before the run's first (second) midpoint.
    let before_first = _mm256_cmpgt_epi32(look(IQ4_NL_RUN_FIRST), within);
    let before_second = _mm256_cmpgt_epi32(look(IQ4_NL_RUN_SECOND), within);
    _mm256_add_epi32(
        _mm256_add_epi32(look(IQ4_NL_RUN_BELOW), _mm256_set1_epi32(2)),
        _mm256_add_epi32(before_first, before_second),
    )
}

/// IQ4_NL's level of each index lane (0..16) as f32: the table's byte
/// looked up with `pshufb` (the index's zero upper bytes pick the table's
/// first byte, which the shifts drop), sign-extended and converted.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn iq4_nl_level_values(index: __m256i) -> __m256 {
    let l = scalar::IQ4_NL_LEVELS;
    let table = _mm256_setr_epi8(
        l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7], l[8], l[9], l[10], l[11], l[12], l[13],
        l[14], l[15], l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7], l[8], l[9], l[10], l[11],
        l[12], l[13], l[14], l[15],
    );
    let byte = _mm256_shuffle_epi8(table, index);
    _mm256_cvtepi32_ps(_mm256_srai_epi32::<24>(_mm256_slli_epi32::<24>(byte)))
}

/// ggml's max of each lane's block, `v[j]` holding element j: the largest
/// magnitude, and the first element of that magnitude with its sign (any
/// element, for a lane whose magnitudes are all zero). Two trees of depth 5
/// instead of a chain of 32 comparisons and blends: max is exact, and the
/// selection keeps, of each pair, the earlier element where it has the
/// largest magnitude.
#[inline]
#[target_feature(enable = "avx2")]
fn first_signed_max(v: &[__m256; QK]) -> (__m256, __m256) {
    let magnitudes = v.map(|x| abs(x));
    let mut level = magnitudes;
    let mut n = QK;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            level[i] = _mm256_max_ps(level[2 * i], level[2 * i + 1]);
        }
    }
    let amax = level[0];
    let mut found = magnitudes.map(|m| _mm256_cmp_ps(m, amax, _CMP_EQ_OQ));
    let mut value = *v;
    let mut n = QK;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            let (early, late) = (2 * i, 2 * i + 1);
            value[i] = _mm256_blendv_ps(value[late], value[early], found[early]);
            found[i] = _mm256_or_ps(found[early], found[late]);
        }
    }
    (amax, value[0])
}

/// # Safety
/// AVX2 and F16C present; `dst.len() == src.len() / 32 * 18`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn iq4_nl_quantize(src: &[f32], dst: &mut [u8]) {
    // Eight blocks at a time, one per lane: the reference quantizer's
    // sequential sums (element order) become eight independent vertical sums,
    // with the same f32 operations in the same order as `scalar`.
    const GROUP: usize = 8;
    let grouped = src.len() / (GROUP * QK) * (GROUP * QK);
    let (src_grouped, src_rest) = src.split_at(grouped);
    let (dst_grouped, dst_rest) = dst.split_at_mut(grouped / QK * 18);
    for (x, out) in src_grouped
        .chunks_exact(GROUP * QK)
        .zip(dst_grouped.chunks_exact_mut(GROUP * 18))
    {
        // v[j] holds element j of the eight blocks.
        let mut v = [_mm256_setzero_ps(); QK];
        for k in 0..QK / 8 {
            let rows: [__m256; GROUP] = std::array::from_fn(|b| {
                // SAFETY: b·32 + 8k + 8 <= 256 = x.len().
                unsafe { _mm256_loadu_ps(x.as_ptr().add(b * QK + 8 * k)) }
            });
            v[8 * k..8 * k + 8].copy_from_slice(&transpose8(rows));
        }
        let (amax, max) = first_signed_max(&v);
        let small = _mm256_cmp_ps(amax, _mm256_set1_ps(scalar::IQ4_NL_EPS), _CMP_LT_OQ);
        // 1/d0 with d0 = max/−127 (normal wherever the block is not small);
        // 0 for the small blocks, whose elements then all take index 8.
        let d0 = _mm256_div_ps(max, _mm256_set1_ps(-127.0));
        let id = _mm256_andnot_ps(small, _mm256_div_ps(_mm256_set1_ps(1.0), d0));
        // scalar::iq4_nl_sum_scale of each lane.
        let e = _mm256_srli_epi32::<23>(_mm256_castps_si256(amax));
        let up = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_sub_epi32(
            _mm256_set1_epi32(254),
            e,
        )));
        let down = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e));
        let (mut sumqx, mut sumq2) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut index = [_mm256_setzero_si256(); QK];
        for (xj, ij) in v.iter().zip(index.iter_mut()) {
            *ij = iq4_nl_indices(_mm256_mul_ps(*xj, id));
            let level = iq4_nl_level_values(*ij);
            let xs = _mm256_mul_ps(*xj, up);
            let wq = _mm256_mul_ps(_mm256_mul_ps(xs, xs), level);
            sumqx = _mm256_add_ps(sumqx, _mm256_mul_ps(wq, xs));
            sumq2 = _mm256_add_ps(sumq2, _mm256_mul_ps(wq, level));
        }
        let fitted = _mm256_mul_ps(_mm256_div_ps(sumqx, sumq2), down);
        let positive = _mm256_cmp_ps(sumq2, _mm256_setzero_ps(), _CMP_GT_OQ);
        let d = _mm256_andnot_ps(small, _mm256_and_ps(positive, fitted));
        let mut d_bits = [0u16; GROUP];
        // SAFETY: d_bits holds 8 u16 (16 bytes).
        unsafe {
            _mm_storeu_si128(
                d_bits.as_mut_ptr().cast(),
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(d),
            )
        };
        // Byte j of a block: index j low, index j + 16 high; four bytes to a
        // word, word g of each lane's block in w[g].
        let byte = |j: usize| _mm256_or_si256(index[j], _mm256_slli_epi32::<4>(index[j + 16]));
        let w: [__m256i; 4] = std::array::from_fn(|g| {
            let b = |t: usize| byte(4 * g + t);
            _mm256_or_si256(
                _mm256_or_si256(b(0), _mm256_slli_epi32::<8>(b(1))),
                _mm256_or_si256(_mm256_slli_epi32::<16>(b(2)), _mm256_slli_epi32::<24>(b(3))),
            )
        });
        // A 4×4 transpose in each 128-bit lane: rows[k] holds the 16 quant
        // bytes of block k (low lane) and block k + 4 (high lane).
        let (t0, t1) = (
            _mm256_unpacklo_epi32(w[0], w[1]),
            _mm256_unpackhi_epi32(w[0], w[1]),
        );
        let (t2, t3) = (
            _mm256_unpacklo_epi32(w[2], w[3]),
            _mm256_unpackhi_epi32(w[2], w[3]),
        );
        let rows = [
            _mm256_unpacklo_epi64(t0, t2),
            _mm256_unpackhi_epi64(t0, t2),
            _mm256_unpacklo_epi64(t1, t3),
            _mm256_unpackhi_epi64(t1, t3),
        ];
        for (b, block) in out.chunks_exact_mut(18).enumerate() {
            block[..2].copy_from_slice(&d_bits[b].to_le_bytes());
            let row = rows[b % 4];
            let half = if b < 4 {
                _mm256_castsi256_si128(row)
            } else {
                _mm256_extracti128_si256::<1>(row)
            };
            // SAFETY: block has 18 bytes; the store covers block[2..18].
            unsafe { _mm_storeu_si128(block.as_mut_ptr().add(2).cast(), half) };
        }
    }
    for (x, out) in src_rest.chunks_exact(QK).zip(dst_rest.chunks_exact_mut(18)) {
        scalar::iq4_nl_nearest(x, out);
    }
}

/// The 32 levels of an IQ4_NL block as signed bytes, in element order: the
/// nibbles looked up in the level table (one `pshufb` per 16).
///
/// # Safety
/// `block` must hold at least 18 bytes.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn iq4_nl_levels(block: &[u8]) -> __m256i {
    let l = scalar::IQ4_NL_LEVELS;
    let table = _mm_setr_epi8(
        l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7], l[8], l[9], l[10], l[11], l[12], l[13],
        l[14], l[15],
    );
    // SAFETY: block has 18 bytes: 16 bytes of nibbles from offset 2.
    let packed = unsafe { _mm_loadu_si128(block.as_ptr().add(2).cast()) };
    let mask = _mm_set1_epi8(0x0f);
    let low = _mm_and_si128(packed, mask);
    let high = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
    _mm256_set_m128i(_mm_shuffle_epi8(table, high), _mm_shuffle_epi8(table, low))
}

/// The 32 bytes of `v` (signed) as four i32 vectors, in order.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn widen_signed_bytes(v: __m256i) -> [__m256i; 4] {
    let (low, high) = (_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    [
        _mm256_cvtepi8_epi32(low),
        _mm256_cvtepi8_epi32(_mm_srli_si128(low, 8)),
        _mm256_cvtepi8_epi32(high),
        _mm256_cvtepi8_epi32(_mm_srli_si128(high, 8)),
    ]
}

/// # Safety
/// AVX2 and F16C present; `dst.len() == src.len() / 18 * 32`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn iq4_nl_dequantize(src: &[u8], dst: &mut [f32]) {
    let stream = streaming(dst);
    for (block, y) in src.chunks_exact(18).zip(dst.chunks_exact_mut(QK)) {
        let d = _mm256_set1_ps(f16_at(block));
        // SAFETY: block has 18 bytes.
        let q = widen_signed_bytes(unsafe { iq4_nl_levels(block) });
        // SAFETY: y has exactly 32 elements.
        unsafe {
            store_block(
                y,
                q.map(|l| _mm256_mul_ps(d, _mm256_cvtepi32_ps(l))),
                stream,
            )
        };
    }
    end_streaming(stream);
}

// ---------------------------------------------------------------- K-quants

/// Decodes one Q4_K (`fifth_bits` false, 144 bytes) or Q5_K (true, 176
/// bytes) super-block into 256 values: per sub-block j the scale d·sc and
/// minimum dmin·m in scalar f32 (as the portable kernel), then
/// (d·sc)·q − dmin·m, a product and a difference in the portable order.
///
/// # Safety
/// AVX2 and F16C present; `block` holds the whole super-block; `y` holds at
/// least 256 values.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn affine_k_super_block(
    block: &[u8],
    fifth_bits: bool,
    y: &mut [f32],
    stream: bool,
) {
    let (d, dmin) = (f16_at(block), f16_at(&block[2..]));
    let qs_at = if fifth_bits { 48 } else { 16 };
    let mask = _mm256_set1_epi8(0x0f);
    let one = _mm256_set1_epi8(1);
    let qh = if fifth_bits {
        // SAFETY: a Q5_K super-block holds qh at bytes 16..48.
        Some(unsafe { _mm256_loadu_si256(block.as_ptr().add(16).cast()) })
    } else {
        None
    };
    for c in 0..4 {
        // SAFETY: 32 bytes of quants at qs_at + 32c, inside the super-block.
        let bytes = unsafe { _mm256_loadu_si256(block.as_ptr().add(qs_at + 32 * c).cast()) };
        let mut runs = [
            _mm256_and_si256(bytes, mask),
            _mm256_and_si256(_mm256_srli_epi16(bytes, 4), mask),
        ];
        if let Some(qh) = qh {
            // Bit j of qh[i] is the fifth bit of element 32j + i: shifted
            // within 16-bit lanes, each byte's bit 0 is its own bit j.
            for (h, run) in runs.iter_mut().enumerate() {
                let bit = _mm256_srl_epi16(qh, _mm_cvtsi32_si128((2 * c + h) as i32));
                *run = _mm256_or_si256(*run, _mm256_slli_epi16(_mm256_and_si256(bit, one), 4));
            }
        }
        for (h, run) in runs.into_iter().enumerate() {
            let j = 2 * c + h;
            let (sc, m) = super::kquant::scale_min(&block[4..16], j);
            let scale = _mm256_set1_ps(d * f32::from(sc));
            let min = _mm256_set1_ps(dmin * f32::from(m));
            let values = widen_bytes(run)
                .map(|q| _mm256_sub_ps(_mm256_mul_ps(scale, _mm256_cvtepi32_ps(q)), min));
            // SAFETY: y holds 256 values (caller's contract); 32 at 32j.
            unsafe { store_block(&mut y[32 * j..], values, stream) };
        }
    }
}

/// Decodes one Q6_K super-block (210 bytes) into 256 values: per sub-block
/// of 16 the scale d·sc in scalar f32, then (d·sc)·(q − 32).
///
/// # Safety
/// AVX2 and F16C present; `block` holds 210 bytes; `y` at least 256 values.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn q6_k_super_block(block: &[u8], y: &mut [f32], stream: bool) {
    let d = f16_at(&block[208..]);
    let (low4, low2) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(3));
    let thirty_two = _mm256_set1_epi32(32);
    for h in 0..2 {
        // SAFETY: ql[64h..64h+64] and qh[32h..32h+32] lie inside the 210 bytes.
        let (ql0, ql1, qh) = unsafe {
            let p = block.as_ptr();
            (
                _mm256_loadu_si256(p.add(64 * h).cast()),
                _mm256_loadu_si256(p.add(64 * h + 32).cast()),
                _mm256_loadu_si256(p.add(128 + 32 * h).cast()),
            )
        };
        let high = |k: i32| {
            let bits = _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * k));
            _mm256_slli_epi16(_mm256_and_si256(bits, low2), 4)
        };
        let runs = [
            _mm256_or_si256(_mm256_and_si256(ql0, low4), high(0)),
            _mm256_or_si256(_mm256_and_si256(ql1, low4), high(1)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), high(2)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4), high(3)),
        ];
        for (k, run) in runs.into_iter().enumerate() {
            let first = 128 * h + 32 * k;
            let scale = |j: usize| _mm256_set1_ps(d * f32::from(block[192 + j] as i8));
            let (a, b) = (scale(first / 16), scale(first / 16 + 1));
            let levels = widen_bytes(run);
            let values: [__m256; 4] = std::array::from_fn(|v| {
                let q = _mm256_cvtepi32_ps(_mm256_sub_epi32(levels[v], thirty_two));
                _mm256_mul_ps(if v < 2 { a } else { b }, q)
            });
            // SAFETY: y holds 256 values (caller's contract); 32 at `first`.
            unsafe { store_block(&mut y[first..], values, stream) };
        }
    }
}

/// # Safety
/// AVX2 and F16C present; `dst.len() == src.len() / 144 * 256`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn q4_k_dequantize(src: &[u8], dst: &mut [f32]) {
    let stream = streaming(dst);
    for (block, y) in src.chunks_exact(144).zip(dst.chunks_exact_mut(256)) {
        // SAFETY: a whole super-block and 256 values.
        unsafe { affine_k_super_block(block, false, y, stream) };
    }
    end_streaming(stream);
}

/// # Safety
/// AVX2 and F16C present; `dst.len() == src.len() / 176 * 256`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn q5_k_dequantize(src: &[u8], dst: &mut [f32]) {
    let stream = streaming(dst);
    for (block, y) in src.chunks_exact(176).zip(dst.chunks_exact_mut(256)) {
        // SAFETY: a whole super-block and 256 values.
        unsafe { affine_k_super_block(block, true, y, stream) };
    }
    end_streaming(stream);
}

/// # Safety
/// AVX2 and F16C present; `dst.len() == src.len() / 210 * 256`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn q6_k_dequantize(src: &[u8], dst: &mut [f32]) {
    let stream = streaming(dst);
    for (block, y) in src.chunks_exact(210).zip(dst.chunks_exact_mut(256)) {
        // SAFETY: a whole super-block and 256 values.
        unsafe { q6_k_super_block(block, y, stream) };
    }
    end_streaming(stream);
}

/// The 32 levels of one Q4_K/Q5_K sub-block (loaded as `v`) against its
/// stored scale and minimum, as bytes in element order: as
/// `AffineBlock::round_sub`, trunc((x + min)·id + ½) clamped to 0..=top
/// (clamped as floats first, so the truncating conversion is the cast).
#[inline]
#[target_feature(enable = "avx2")]
fn affine_k_levels(v: [__m256; 4], scale: f32, min: f32, top: f32) -> __m256i {
    let id = _mm256_set1_ps(scalar::inverse_scale(scale));
    let (min, half, top) = (
        _mm256_set1_ps(min),
        _mm256_set1_ps(0.5),
        _mm256_set1_ps(top),
    );
    pack_i8(v.map(|v| {
        let t = _mm256_add_ps(_mm256_mul_ps(_mm256_add_ps(v, min), id), half);
        _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(t, _mm256_setzero_ps()), top))
    }))
}

/// Q4_K (`fifth_bits` false) or Q5_K nearest rounding: each sub-block's
/// range in registers, the super-block's scales as the portable kernel
/// computes them from those ranges, the levels in registers and packed.
///
/// # Safety
/// AVX2 and F16C present; `dst.len() == src.len() / 256 * BYTES`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn affine_k_quantize<F: Affine>(src: &[f32], dst: &mut [u8], fifth_bits: bool) {
    let low4 = _mm256_set1_epi8(0x0f);
    for (x, out) in src.chunks_exact(256).zip(dst.chunks_exact_mut(F::BYTES)) {
        // SAFETY: x has 256 elements: eight blocks of 32.
        let v: [[__m256; 4]; AFFINE_SUBS] =
            std::array::from_fn(|j| unsafe { load_block(&x[32 * j..32 * j + 32]) });
        let ranges = v.map(|v| {
            let lo = _mm256_min_ps(_mm256_min_ps(v[0], v[1]), _mm256_min_ps(v[2], v[3]));
            let hi = _mm256_max_ps(_mm256_max_ps(v[0], v[1]), _mm256_max_ps(v[2], v[3]));
            (horizontal_min(lo), horizontal_max(hi))
        });
        let block = affine_scales_of::<F>(ranges);
        let levels: [__m256i; AFFINE_SUBS] = std::array::from_fn(|j| {
            let (scale, min) = block.sub_scale(j);
            affine_k_levels(v[j], scale, min, F::NMAX)
        });
        put_f16(&mut out[0..2], block.d);
        put_f16(&mut out[2..4], block.dmin);
        out[4..16].copy_from_slice(&pack_scales(&block.sc, &block.m));
        let qs_at = if fifth_bits { 48 } else { 16 };
        if fifth_bits {
            // Bit j of qh[i] is bit 4 of element 32j + i.
            let one = _mm256_set1_epi8(1);
            let qh = levels
                .iter()
                .enumerate()
                .fold(_mm256_setzero_si256(), |qh, (j, &l)| {
                    let bit = _mm256_and_si256(_mm256_srli_epi16(l, 4), one);
                    _mm256_or_si256(qh, _mm256_sll_epi16(bit, _mm_cvtsi32_si128(j as i32)))
                });
            // SAFETY: out has 176 bytes: qh at 16..48.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(16).cast(), qh) };
        }
        for c in 0..4 {
            let low = _mm256_and_si256(levels[2 * c], low4);
            let high = _mm256_slli_epi16(_mm256_and_si256(levels[2 * c + 1], low4), 4);
            // SAFETY: 32 bytes at qs_at + 32c < BYTES.
            unsafe {
                _mm256_storeu_si256(
                    out.as_mut_ptr().add(qs_at + 32 * c).cast(),
                    _mm256_or_si256(low, high),
                )
            };
        }
    }
}

/// # Safety
/// AVX2 and F16C present; `dst.len() == src.len() / 256 * 144`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn q4_k_quantize(src: &[f32], dst: &mut [u8]) {
    // SAFETY: the caller's contract is this function's.
    unsafe { affine_k_quantize::<Q4K>(src, dst, false) }
}

/// # Safety
/// AVX2 and F16C present; `dst.len() == src.len() / 256 * 176`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn q5_k_quantize(src: &[f32], dst: &mut [u8]) {
    // SAFETY: the caller's contract is this function's.
    unsafe { affine_k_quantize::<Q5K>(src, dst, true) }
}

/// Q6_K nearest rounding: each sub-block's first element of largest
/// magnitude found in registers, the scales as the portable kernel computes
/// them from those, the levels in registers (C's roundf, clamped) and packed.
///
/// # Safety
/// AVX2 and F16C present; `dst.len() == src.len() / 256 * 210`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn q6_k_quantize(src: &[f32], dst: &mut [u8]) {
    let (low4, low2) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(3));
    let (lowest, highest) = (_mm256_set1_ps(Q6_LEVELS.0), _mm256_set1_ps(Q6_LEVELS.1));
    let thirty_two = _mm256_set1_epi32(32);
    for (x, out) in src.chunks_exact(256).zip(dst.chunks_exact_mut(210)) {
        // SAFETY: x has 256 elements: eight blocks of 32.
        let v: [[__m256; 4]; 8] =
            std::array::from_fn(|r| unsafe { load_block(&x[32 * r..32 * r + 32]) });
        // The first element of largest magnitude of each sub-block of 16
        // (two vectors), with its sign.
        let maxima: [f32; Q6_SUBS] = std::array::from_fn(|j| {
            let pair = [v[j / 2][2 * (j % 2)], v[j / 2][2 * (j % 2) + 1]];
            let amax = horizontal_max(_mm256_max_ps(abs(pair[0]), abs(pair[1])));
            if amax == 0.0 {
                return 0.0;
            }
            let target = _mm256_set1_ps(amax);
            let mask = pair.iter().enumerate().fold(0u32, |acc, (k, &lane)| {
                acc | ((_mm256_movemask_ps(_mm256_cmp_ps(abs(lane), target, _CMP_EQ_OQ)) as u32)
                    << (8 * k))
            });
            x[16 * j + mask.trailing_zeros() as usize]
        });
        let block = q6_scales_of(maxima);
        let levels: [__m256i; 8] = std::array::from_fn(|r| {
            let ids = [2 * r, 2 * r + 1]
                .map(|j| _mm256_set1_ps(scalar::inverse_scale(block.sub_scale(j))));
            pack_i8(std::array::from_fn(|k| {
                // Clamping before rounding gives the same levels as after
                // (the bounds are integers, rounding is monotonic), and puts
                // t inside round_half_away_small's domain.
                let t = _mm256_mul_ps(v[r][k], ids[k / 2]);
                let t = _mm256_min_ps(_mm256_max_ps(t, lowest), highest);
                _mm256_add_epi32(round_half_away_small(t), thirty_two)
            }))
        });
        for h in 0..2 {
            let run = |k: usize| levels[4 * h + k];
            let ql0 = _mm256_or_si256(
                _mm256_and_si256(run(0), low4),
                _mm256_slli_epi16(_mm256_and_si256(run(2), low4), 4),
            );
            let ql1 = _mm256_or_si256(
                _mm256_and_si256(run(1), low4),
                _mm256_slli_epi16(_mm256_and_si256(run(3), low4), 4),
            );
            let high = |k: usize| {
                let bits = _mm256_and_si256(_mm256_srli_epi16(run(k), 4), low2);
                _mm256_sll_epi16(bits, _mm_cvtsi32_si128(2 * k as i32))
            };
            let qh = _mm256_or_si256(
                _mm256_or_si256(high(0), high(1)),
                _mm256_or_si256(high(2), high(3)),
            );
            // SAFETY: ql[64h..64h+64] and qh[32h..32h+32] lie inside the 210 bytes.
            unsafe {
                let p = out.as_mut_ptr();
                _mm256_storeu_si256(p.add(64 * h).cast(), ql0);
                _mm256_storeu_si256(p.add(64 * h + 32).cast(), ql1);
                _mm256_storeu_si256(p.add(128 + 32 * h).cast(), qh);
            }
        }
        for (o, &sc) in out[192..208].iter_mut().zip(&block.sc) {
            *o = sc as u8;
        }
        put_f16(&mut out[208..210], block.d);
    }
}

/// The AVX2 sums of Q4_0's search (`f32_scores.rs`): the portable
/// sums' operations in the same order, eight lanes at once.
pub(super) struct SearchSums;

impl super::f32_scores::Sums for SearchSums {
    #[inline(always)]
    fn signed_max(x: &[f32; QK]) -> f32 {
        // SAFETY: only reached from the searches' AVX2 functions, whose
        // callers detected AVX2; x has 32 elements.
        unsafe { signed_max(x, load_block(x)) }
    }

    #[inline(always)]
    fn with_scale(x: &[f32; QK], d: f32, out: &mut [u8]) {
        // SAFETY: as above (AVX2 and F16C); the store covers out[2..18] of
        // the block's 18 bytes.
        unsafe {
            let q = levels_of_scale(load_block(x), d, 8.0);
            put_f16(out, d);
            _mm_storeu_si128(out[..18].as_mut_ptr().add(2).cast(), pack_nibbles(q));
        }
    }

    #[inline(always)]
    fn q4_0_n<const N: usize>(
        x: &[f32; QK],
        wx: &[f32; QK],
        w: &[f32; QK],
        ids: [f32; N],
    ) -> [(f32, f32); N] {
        search_sums(x, wx, w, ids)
    }
}

/// The sums of `N` candidates, interleaved so that their dependency chains
/// overlap; each candidate's operations are those of the portable sums.
#[inline(always)]
fn search_sums<const N: usize>(
    x: &[f32; QK],
    wx: &[f32; QK],
    w: &[f32; QK],
    ids: [f32; N],
) -> [(f32, f32); N] {
    // SAFETY: only reached from `int_search_x86::q4_0_search`, whose callers
    // detected AVX2; every load reads 8 floats at 8·c < 32 of a 32-float array.
    unsafe {
        let mut vids = [_mm256_setzero_ps(); N];
        for (v, &id) in vids.iter_mut().zip(&ids) {
            *v = _mm256_set1_ps(id);
        }
        let half_up = _mm256_set1_ps(8.5);
        let (zero, top, eight) = (
            _mm256_setzero_ps(),
            _mm256_set1_ps(15.0),
            _mm256_set1_ps(8.0),
        );
        let (mut a, mut b) = ([zero; N], [zero; N]);
        for c in 0..QK / 8 {
            let xv = _mm256_loadu_ps(x.as_ptr().add(8 * c));
            let wxv = _mm256_loadu_ps(wx.as_ptr().add(8 * c));
            let wv = _mm256_loadu_ps(w.as_ptr().add(8 * c));
            for n in 0..N {
                let t = _mm256_add_ps(_mm256_mul_ps(xv, vids[n]), half_up);
                let q = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(t);
                let l = _mm256_sub_ps(_mm256_min_ps(_mm256_max_ps(q, zero), top), eight);
                a[n] = _mm256_add_ps(a[n], _mm256_mul_ps(wxv, l));
                b[n] = _mm256_add_ps(b[n], _mm256_mul_ps(_mm256_mul_ps(wv, l), l));
            }
        }
        let mut out = [(0.0f32, 0.0f32); N];
        for (n, o) in out.iter_mut().enumerate() {
            // [a0+a1, a2+a3, b0+b1, b2+b3 | a4+a5, a6+a7, b4+b5, b6+b7]
            let pairs = _mm256_hadd_ps(a[n], b[n]);
            let halves = _mm_add_ps(
                _mm256_castps256_ps128(pairs),
                _mm256_extractf128_ps(pairs, 1),
            );
            let sums = _mm_hadd_ps(halves, halves);
            *o = (
                _mm_cvtss_f32(sums),
                _mm_cvtss_f32(_mm_shuffle_ps(sums, sums, 1)),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_half_away_by_truncation_matches_c_roundf() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX2/F16C");
            return;
        }
        // The 64 floats on either side of every integer and half-integer up
        // to 257 (where the sum's rounding decides), every 1009th f32 below
        // 2^23, and the negatives of all.
        let mut probes: Vec<f32> = (0..=514)
            .flat_map(|k| {
                let c = (k as f32 / 2.0).to_bits() as i64;
                (-64i64..=64).map(move |step| f32::from_bits((c + step).max(0) as u32))
            })
            .chain((0..0x4b00_0000u32).step_by(1009).map(f32::from_bits))
            .collect();
        probes.extend(probes.clone().iter().map(|v| -v));
        lanes_agree(&probes, round_half_away_small, |v| {
            scalar::round_half_away(v) as i32
        });
    }

    /// Checks an eight-lane kernel against its scalar twin on every probe
    /// (whole vectors of them; AVX2 detected by the caller).
    fn lanes_agree(probes: &[f32], kernel: unsafe fn(__m256) -> __m256i, twin: fn(f32) -> i32) {
        for chunk in probes.chunks_exact(8) {
            // SAFETY: the caller detected AVX2; the load reads the chunk's 8
            // floats and the store writes 8 ints into `got`.
            let got = unsafe {
                let mut got = [0i32; 8];
                let v = kernel(_mm256_loadu_ps(chunk.as_ptr()));
                _mm256_storeu_si256(got.as_mut_ptr().cast(), v);
                got
            };
            for (&t, &g) in chunk.iter().zip(&got) {
                assert_eq!(g, twin(t), "{t:e}");
            }
        }
    }

    #[test]
    fn iq4_nl_indices_are_the_portable_ones() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX2/F16C");
            return;
        }
        // Every half-integer from −140 to 140 (each midpoint among them),
        // the floats just around each, and a spread between.
        let mut probes: Vec<f32> = Vec::new();
        for k in -280i32..=280 {
            let c = k as f32 / 2.0;
            for step in -3i32..=3 {
                probes.push(f32::from_bits((c.to_bits() as i32 + step) as u32));
            }
        }
        probes.extend((0..50_000).map(|i| i as f32 * 0.0061 - 150.0));
        probes.retain(|t| t.is_finite());
        lanes_agree(&probes, iq4_nl_indices, |t| {
            i32::from(scalar::iq4_nl_index(t))
        });
    }
}
