//! AVX2 + FMA + F16C row kernels. As in `quant::simd_x86`, intrinsics are the
//! reasoned exception to DESIGN.md's rule that only `src/ffi` and `src/vk`
//! hold `unsafe`: each block says why it is sound (features detected first,
//! every access inside a slice whose length was checked).

use super::row::{MAX_BATCH, Sums};
use crate::format::Format;
use crate::quant::simd_x86::{
    affine_k_super_block, f16_at, iq4_nl_levels, q5_0_levels, q6_k_super_block, widen_bytes,
    widen_signed_bytes,
};
use std::arch::x86_64::*;

pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// The f32 row kernel of one format (`row_dot_avx2` for its block decoder).
///
/// # Safety
/// AVX2, FMA and F16C present; cols % 32 == 0; `row` holds cols elements of
/// the format; x holds batch·cols floats; batch <= MAX_BATCH.
pub type RowDot = unsafe fn(&[u8], usize, &[f32], usize, &mut Sums);

/// The integer-dot row kernel of one format (`row_dot_int_avx2` for its
/// block decoder).
///
/// # Safety
/// As [`RowDot`], with `xq` made by [`quantize_x`] for batch·cols values.
pub type RowDotInt = unsafe fn(&[u8], usize, &QuantizedX, usize, &mut Sums);

/// Runs the format's f32 row kernel (from the kernel table); false when it
/// has none, the CPU lacks the features or the row length is not a multiple
/// of 32.
#[allow(clippy::too_many_arguments)]
pub fn row_dot(
    kernel: Option<RowDot>,
    format: Format,
    row: &[u8],
    cols: usize,
    x: &[f32],
    batch: usize,
    sums: &mut Sums,
) -> bool {
    let Some(kernel) = kernel.filter(|_| available() && cols % 32 == 0) else {
        return false;
    };
    assert!(
        batch <= MAX_BATCH
            && x.len() >= batch * cols
            && format.size_of(cols).ok() == Some(row.len())
    );
    // SAFETY: features detected; the kernel reads row[..] (its length matches
    // cols in this format, asserted) and x[..batch·cols] (asserted).
    unsafe { kernel(row, cols, x, batch, sums) };
    true
}

#[target_feature(enable = "avx2,fma")]
fn sum_lanes(v: __m256) -> f32 {
    let half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
    _mm_cvtss_f32(_mm_add_ss(quarter, _mm_shuffle_ps(quarter, quarter, 1)))
}

/// Where a format's runs of 32 weights lie in a row.
pub(crate) trait Layout {
    /// Bytes of 32 weights (one block of the block formats).
    const STRIDE: usize;
    /// Whether a block adds an offset m (x = d·q + m) to its levels, which
    /// are then unsigned; otherwise x = d·q.
    const OFFSET: bool;
}

/// A format's 32 weights in f32 registers, for the f32 row kernel.
pub(crate) trait F32Block: Layout {
    /// The 32 weights (as levels q) of `b` in four vectors, the scale d and
    /// the offset m (d = 1 and m = 0 for the per-element formats).
    ///
    /// # Safety
    /// AVX2, FMA and F16C present; `b` holds at least 32 weights.
    unsafe fn load(b: &[u8]) -> ([__m256; 4], f32, f32);
}

/// F32 weights.
pub(crate) struct F32Block32;
/// F16 weights.
pub(crate) struct F16Block32;
/// BF16 weights.
pub(crate) struct Bf16Block32;
/// Q8_0 blocks.
pub(crate) struct Q8_0Block;
/// Q4_0 blocks.
pub(crate) struct Q4_0Block;
/// Q4_1 blocks.
pub(crate) struct Q4_1Block;
/// Q5_0 blocks.
pub(crate) struct Q5_0Block;
/// IQ4_NL blocks.
pub(crate) struct Iq4NlBlock;

/// Implements [`Layout`] for each decoder: (type, format, offset).
macro_rules! layouts {
    ($(($block:ty, $format:expr, $offset:expr)),* $(,)?) => {
        $(impl Layout for $block {
            const STRIDE: usize = 32 / $format.block_size() * $format.block_bytes();
            const OFFSET: bool = $offset;
        })*
    };
}

layouts!(
    (F32Block32, Format::F32, false),
    (F16Block32, Format::F16, false),
    (Bf16Block32, Format::BF16, false),
    (Q8_0Block, Format::Q8_0, false),
    (Q4_0Block, Format::Q4_0, false),
    (Q4_1Block, Format::Q4_1, true),
    (Q5_0Block, Format::Q5_0, false),
    (Iq4NlBlock, Format::IQ4_NL, false),
);

impl F32Block for F32Block32 {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(b: &[u8]) -> ([__m256; 4], f32, f32) {
        let f = b.as_ptr().cast::<f32>();
        // SAFETY: b holds 32 floats (caller's contract); loadu has no alignment need.
        let v = unsafe {
            [
                _mm256_loadu_ps(f),
                _mm256_loadu_ps(f.add(8)),
                _mm256_loadu_ps(f.add(16)),
                _mm256_loadu_ps(f.add(24)),
            ]
        };
        (v, 1.0, 0.0)
    }
}

impl F32Block for F16Block32 {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(b: &[u8]) -> ([__m256; 4], f32, f32) {
        let p = b.as_ptr();
        // SAFETY: b holds 32 binary16 values (caller's contract).
        let h = |i: usize| unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.add(16 * i).cast())) };
        ([h(0), h(1), h(2), h(3)], 1.0, 0.0)
    }
}

impl F32Block for Bf16Block32 {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(b: &[u8]) -> ([__m256; 4], f32, f32) {
        let p = b.as_ptr();
        let h = |i: usize| {
            // SAFETY: b holds 32 bfloat16 values (caller's contract).
            let bits = unsafe { _mm_loadu_si128(p.add(16 * i).cast()) };
            _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16))
        };
        ([h(0), h(1), h(2), h(3)], 1.0, 0.0)
    }
}

impl F32Block for Q8_0Block {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(b: &[u8]) -> ([__m256; 4], f32, f32) {
        let p = b.as_ptr();
        let q = |i: usize| {
            // SAFETY: b holds a 34-byte block (caller's contract): 8 bytes at 2 + 8i.
            let bytes = unsafe { _mm_loadl_epi64(p.add(2 + 8 * i).cast()) };
            _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes))
        };
        ([q(0), q(1), q(2), q(3)], f16_at(b), 0.0)
    }
}

/// The 32 four-bit levels of 16 packed bytes, less `bias`, as floats.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn nibble_levels(packed: __m128i, bias: i32) -> [__m256; 4] {
    let mask = _mm_set1_epi8(0x0f);
    let low = _mm_and_si128(packed, mask);
    let high = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
    let bias = _mm256_set1_epi32(bias);
    let f = |v: __m128i| _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(v), bias));
    [
        f(low),
        f(_mm_srli_si128(low, 8)),
        f(high),
        f(_mm_srli_si128(high, 8)),
    ]
}

impl F32Block for Q4_0Block {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(b: &[u8]) -> ([__m256; 4], f32, f32) {
        // SAFETY: b holds an 18-byte block (caller's contract): 16 bytes at 2.
        let packed = unsafe { _mm_loadu_si128(b.as_ptr().add(2).cast()) };
        (nibble_levels(packed, 8), f16_at(b), 0.0)
    }
}

impl F32Block for Q4_1Block {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(b: &[u8]) -> ([__m256; 4], f32, f32) {
        // SAFETY: b holds a 20-byte block (caller's contract): 16 bytes at 4.
        let packed = unsafe { _mm_loadu_si128(b.as_ptr().add(4).cast()) };
        (nibble_levels(packed, 0), f16_at(b), f16_at(&b[2..]))
    }
}

impl F32Block for Q5_0Block {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(b: &[u8]) -> ([__m256; 4], f32, f32) {
        // SAFETY: b holds a 22-byte block (caller's contract).
        let levels = widen_bytes(unsafe { q5_0_levels(b) });
        let sixteen = _mm256_set1_epi32(16);
        let q = levels.map(|l| _mm256_cvtepi32_ps(_mm256_sub_epi32(l, sixteen)));
        (q, f16_at(b), 0.0)
    }
}

impl F32Block for Iq4NlBlock {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(b: &[u8]) -> ([__m256; 4], f32, f32) {
        // SAFETY: b holds an 18-byte block (caller's contract).
        let levels = widen_signed_bytes(unsafe { iq4_nl_levels(b) });
        (levels.map(|l| _mm256_cvtepi32_ps(l)), f16_at(b), 0.0)
    }
}

/// The f32 row kernel of the format `B` decodes.
///
/// # Safety
/// As [`RowDot`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn row_dot_avx2<B: F32Block>(
    row: &[u8],
    cols: usize,
    x: &[f32],
    batch: usize,
    sums: &mut Sums,
) {
    let mut acc = [_mm256_setzero_ps(); MAX_BATCH];
    let blocks = cols / 32;
    for k in 0..blocks {
        // As in row_dot_int_avx2: keep DRAM busy 1 KiB ahead of the loads.
        _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().wrapping_add(k * B::STRIDE + 1024).cast());
        // SAFETY: k < cols/32 blocks, within row (caller's contract).
        let (w, d, m) = unsafe { B::load(&row[k * B::STRIDE..]) };
        let (vd, vm) = (_mm256_set1_ps(d), _mm256_set1_ps(m));
        for (b, a) in acc.iter_mut().enumerate().take(batch) {
            // SAFETY: b·cols + 32k + 32 <= batch·cols <= x.len().
            let xp = unsafe { x.as_ptr().add(b * cols + 32 * k) };
            // SAFETY: as above: four loads of 8 floats inside x.
            let xs = unsafe {
                [
                    _mm256_loadu_ps(xp),
                    _mm256_loadu_ps(xp.add(8)),
                    _mm256_loadu_ps(xp.add(16)),
                    _mm256_loadu_ps(xp.add(24)),
                ]
            };
            let dot = _mm256_add_ps(
                _mm256_fmadd_ps(w[1], xs[1], _mm256_mul_ps(w[0], xs[0])),
                _mm256_fmadd_ps(w[3], xs[3], _mm256_mul_ps(w[2], xs[2])),
            );
            *a = _mm256_fmadd_ps(vd, dot, *a);
            if B::OFFSET {
                let sum_x = _mm256_add_ps(_mm256_add_ps(xs[0], xs[1]), _mm256_add_ps(xs[2], xs[3]));
                *a = _mm256_fmadd_ps(vm, sum_x, *a);
            }
        }
    }
    for (s, a) in sums.iter_mut().zip(acc).take(batch) {
        *s = sum_lanes(a);
    }
}

/// x quantized to 8 bits per block of 32 (an f32 scale per block, so only the
/// rounding to 8 bits is lost), for the integer dot products of block formats.
pub struct QuantizedX {
    scales: Vec<f32>,
    sums: Vec<i32>,
    quants: Vec<i8>,
    blocks: usize,
}

/// Quantizes the `batch` vectors of x, or None where the integer path does not
/// apply (no AVX2, a row that is not whole blocks, or a non-finite x, whose
/// NaN/Inf the f32 path propagates).
pub fn quantize_x(x: &[f32], cols: usize, batch: usize) -> Option<QuantizedX> {
    if !available() || cols % 32 != 0 || !x[..batch * cols].iter().all(|v| v.is_finite()) {
        return None;
    }
    let blocks = cols / 32;
    let mut q = QuantizedX {
        scales: vec![0.0; batch * blocks],
        sums: vec![0; batch * blocks],
        quants: vec![0; batch * cols],
        blocks,
    };
    for (k, chunk) in x[..batch * cols].chunks_exact(32).enumerate() {
        let amax = chunk.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (j, &v) in chunk.iter().enumerate() {
            let level = (v * id).round().clamp(-127.0, 127.0) as i8;
            q.quants[32 * k + j] = level;
            sum += i32::from(level);
        }
        q.scales[k] = d;
        q.sums[k] = sum;
    }
    Some(q)
}

/// Runs the format's integer-dot row kernel (from the kernel table) against
/// quantized x.
pub fn row_dot_int(
    kernel: RowDotInt,
    format: Format,
    row: &[u8],
    cols: usize,
    xq: &QuantizedX,
    batch: usize,
    sums: &mut Sums,
) {
    assert!(batch <= MAX_BATCH && xq.blocks * 32 == cols && xq.quants.len() >= batch * cols);
    assert_eq!(format.size_of(cols).ok(), Some(row.len()));
    // SAFETY: quantize_x returned Some, so the features are present; the kernel
    // reads row[..] and xq's vectors within the lengths asserted above.
    unsafe { kernel(row, cols, xq, batch, sums) }
}

/// A format's 32 levels as bytes, for the integer-dot row kernel.
pub(crate) trait IntBlock: Layout {
    /// The 32 levels of `b` (i8, or u8 with an offset), the scale d and the
    /// offset m (0 without one).
    ///
    /// # Safety
    /// AVX2, FMA and F16C present; `b` holds one whole block.
    unsafe fn load(b: &[u8]) -> (__m256i, f32, f32);
}

/// The 32 four-bit levels of 16 packed bytes, in element order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn nibble_bytes(packed: __m128i) -> __m256i {
    let mask = _mm_set1_epi8(0x0f);
    let low = _mm_and_si128(packed, mask);
    let high = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
    _mm256_set_m128i(high, low)
}

impl IntBlock for Q8_0Block {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(b: &[u8]) -> (__m256i, f32, f32) {
        // SAFETY: b holds a 34-byte block (caller's contract): 32 bytes at 2.
        let q = unsafe { _mm256_loadu_si256(b.as_ptr().add(2).cast()) };
        (q, f16_at(b), 0.0)
    }
}

impl IntBlock for Q4_0Block {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(b: &[u8]) -> (__m256i, f32, f32) {
        // SAFETY: b holds an 18-byte block (caller's contract): 16 bytes at 2.
        let packed = unsafe { _mm_loadu_si128(b.as_ptr().add(2).cast()) };
        // Q4_0 stores q + 8: as signed levels −8..7 it takes Q8_0's path.
        let q = _mm256_sub_epi8(nibble_bytes(packed), _mm256_set1_epi8(8));
        (q, f16_at(b), 0.0)
    }
}

impl IntBlock for Q4_1Block {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(b: &[u8]) -> (__m256i, f32, f32) {
        // SAFETY: b holds a 20-byte block (caller's contract): 16 bytes at 4.
        let packed = unsafe { _mm_loadu_si128(b.as_ptr().add(4).cast()) };
        (nibble_bytes(packed), f16_at(b), f16_at(&b[2..]))
    }
}

impl IntBlock for Q5_0Block {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(b: &[u8]) -> (__m256i, f32, f32) {
        // SAFETY: b holds a 22-byte block (caller's contract).
        let levels = unsafe { q5_0_levels(b) };
        // Q5_0 stores q + 16: as signed levels −16..15 it takes Q8_0's path.
        let q = _mm256_sub_epi8(levels, _mm256_set1_epi8(16));
        (q, f16_at(b), 0.0)
    }
}

impl IntBlock for Iq4NlBlock {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(b: &[u8]) -> (__m256i, f32, f32) {
        // SAFETY: b holds an 18-byte block (caller's contract). The levels
        // are signed bytes (−127..113): Q8_0's path.
        (unsafe { iq4_nl_levels(b) }, f16_at(b), 0.0)
    }
}

/// The integer-dot row kernel of the format `B` decodes.
///
/// # Safety
/// As [`RowDotInt`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn row_dot_int_avx2<B: IntBlock>(
    row: &[u8],
    cols: usize,
    xq: &QuantizedX,
    batch: usize,
    sums: &mut Sums,
) {
    let blocks = cols / 32;
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); MAX_BATCH];
    let mut offsets = [0.0f32; MAX_BATCH];
    for k in 0..blocks {
        let b = &row[k * B::STRIDE..(k + 1) * B::STRIDE];
        // Ask for the weights 1 KiB ahead: the hardware prefetcher alone kept
        // only about 2.3 GB/s in flight from DRAM for this loop (measured at
        // 8192x8192). A prefetch never faults, even past the end of the row.
        _mm_prefetch::<_MM_HINT_T0>(b.as_ptr().wrapping_add(1024).cast());
        // SAFETY: b holds one whole block of the format.
        let (w, d, m) = unsafe { B::load(b) };
        for (v, a) in acc.iter_mut().enumerate().take(batch) {
            let slot = v * blocks + k;
            // SAFETY: slot·32 + 32 <= batch·cols <= quants.len().
            let x = unsafe { _mm256_loadu_si256(xq.quants.as_ptr().add(slot * 32).cast()) };
            // u8 × i8 products (|w| with x given w's sign, for signed weights)
            // summed in pairs (at most 2·127·127, no i16 saturation), then in
            // fours as i32: exact integers.
            let products = if B::OFFSET {
                _mm256_maddubs_epi16(w, x)
            } else {
                _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))
            };
            let dots = _mm256_madd_epi16(products, ones);
            let scale = d * xq.scales[slot];
            *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots), _mm256_set1_ps(scale), *a);
            // An offset adds m·Σx.
            if B::OFFSET {
                let sum_x = xq.sums[slot] as f32;
                offsets[v] += m * xq.scales[slot] * sum_x;
            }
        }
    }
    for ((s, a), o) in sums.iter_mut().zip(acc).zip(offsets).take(batch) {
        *s = sum_lanes(a) + o;
    }
}

/// Panel rows one step of [`panel_dots`] multiplies.
const TILE_ROWS: usize = 3;
/// Tokens one step of [`panel_dots`] multiplies.
const TILE_TOKENS: usize = 4;

/// The 3×4 dot products of `rows` with `tokens` over `k` floats: 12
/// accumulators, 3 + 1 vectors loaded per 12 fused multiply-adds.
///
/// # Safety
/// AVX2 and FMA present; every pointer reads `k` floats; k % 8 == 0.
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_tile(
    rows: [*const f32; TILE_ROWS],
    tokens: [*const f32; TILE_TOKENS],
    k: usize,
) -> [[f32; TILE_TOKENS]; TILE_ROWS] {
    let mut acc = [[_mm256_setzero_ps(); TILE_TOKENS]; TILE_ROWS];
    let mut w = [_mm256_setzero_ps(); TILE_ROWS];
    for i in (0..k).step_by(8) {
        for (wv, row) in w.iter_mut().zip(rows) {
            // SAFETY: i + 8 <= k, and each row holds k floats (the contract).
            *wv = unsafe { _mm256_loadu_ps(row.add(i)) };
        }
        for (t, token) in tokens.iter().enumerate() {
            // SAFETY: as above, for the token's k floats.
            let x = unsafe { _mm256_loadu_ps(token.add(i)) };
            for (a, wv) in acc.iter_mut().zip(&w) {
                a[t] = _mm256_fmadd_ps(*wv, x, a[t]);
            }
        }
    }
    let mut dots = [[0.0f32; TILE_TOKENS]; TILE_ROWS];
    for (d, a) in dots.iter_mut().zip(&acc) {
        for (v, lanes) in d.iter_mut().zip(a) {
            *v = sum_lanes(*lanes);
        }
    }
    dots
}

/// out[t·out_stride + r] = Σ_i panel[r·k + i]·x[t·k + i] for r < rows and
/// t < tokens, in f32 fused multiply-adds; false (nothing written) where the
/// CPU lacks AVX2 and FMA or k is not a multiple of 8.
pub fn panel_dots(
    panel: &[f32],
    rows: usize,
    k: usize,
    x: &[f32],
    tokens: usize,
    out: &mut [f32],
    out_stride: usize,
) -> bool {
    if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) || k % 8 != 0 {
        return false;
    }
    assert!(rows > 0 && tokens > 0 && out_stride >= rows);
    assert!(panel.len() >= rows * k && x.len() >= tokens * k);
    assert!(out.len() >= (tokens - 1) * out_stride + rows);
    // Past the last row or token a tile repeats the last one (its results
    // are dropped), so every tile is whole.
    let row_at = |r: usize| panel[r.min(rows - 1) * k..].as_ptr();
    let token_at = |t: usize| x[t.min(tokens - 1) * k..].as_ptr();
    for t0 in (0..tokens).step_by(TILE_TOKENS) {
        let token_ptrs: [*const f32; TILE_TOKENS] = std::array::from_fn(|j| token_at(t0 + j));
        for r0 in (0..rows).step_by(TILE_ROWS) {
            let row_ptrs: [*const f32; TILE_ROWS] = std::array::from_fn(|i| row_at(r0 + i));
            // SAFETY: features detected and k % 8 == 0 above; each pointer
            // starts a whole row of the panel or of x (lengths asserted).
            let dots = unsafe { dots_tile(row_ptrs, token_ptrs, k) };
            for (i, row) in dots.iter().enumerate().take(rows - r0) {
                for (j, v) in row.iter().enumerate().take(tokens - t0) {
                    out[(t0 + j) * out_stride + r0 + i] = *v;
                }
            }
        }
    }
    true
}

/// A K-quant's super-block of 256 weights, decoded by its AVX2 dequantizer,
/// for the f32 row kernel.
pub(crate) trait KBlock {
    /// Bytes per super-block.
    const BYTES: usize;
    /// The 256 weights of `b` (the dequantizer's floats).
    ///
    /// # Safety
    /// AVX2, FMA and F16C present; `b` holds a whole super-block.
    unsafe fn decode(b: &[u8], out: &mut [f32; 256]);
}

/// Q4_K super-blocks.
pub(crate) struct Q4KBlock;
/// Q5_K super-blocks.
pub(crate) struct Q5KBlock;
/// Q6_K super-blocks.
pub(crate) struct Q6KBlock;

impl KBlock for Q4KBlock {
    const BYTES: usize = Format::Q4_K.block_bytes();
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn decode(b: &[u8], out: &mut [f32; 256]) {
        // SAFETY: b holds a whole super-block (caller's contract), out 256 values.
        unsafe { affine_k_super_block(b, false, out, false) }
    }
}

impl KBlock for Q5KBlock {
    const BYTES: usize = Format::Q5_K.block_bytes();
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn decode(b: &[u8], out: &mut [f32; 256]) {
        // SAFETY: b holds a whole super-block (caller's contract), out 256 values.
        unsafe { affine_k_super_block(b, true, out, false) }
    }
}

impl KBlock for Q6KBlock {
    const BYTES: usize = Format::Q6_K.block_bytes();
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn decode(b: &[u8], out: &mut [f32; 256]) {
        // SAFETY: b holds a whole super-block (caller's contract), out 256 values.
        unsafe { q6_k_super_block(b, out, false) }
    }
}

/// The f32 row kernel of a K-quant: each super-block decoded to 256 weights
/// (the dequantizer's floats), then four chains of fused multiply-adds per
/// vector.
///
/// # Safety
/// As [`RowDot`], with `cols` whole super-blocks (the row's length in the
/// format, which `row_dot` asserts, says so).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn row_dot_k_avx2<B: KBlock>(
    row: &[u8],
    cols: usize,
    x: &[f32],
    batch: usize,
    sums: &mut Sums,
) {
    let mut acc = [_mm256_setzero_ps(); MAX_BATCH];
    let mut weights = [0.0f32; 256];
    for k in 0..cols / 256 {
        _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().wrapping_add((k + 2) * B::BYTES).cast());
        // SAFETY: super-block k lies within row (caller's contract).
        unsafe { B::decode(&row[k * B::BYTES..(k + 1) * B::BYTES], &mut weights) };
        let w = weights.as_ptr();
        for (b, a) in acc.iter_mut().enumerate().take(batch) {
            // SAFETY: b·cols + 256k + 256 <= batch·cols <= x.len().
            let xp = unsafe { x.as_ptr().add(b * cols + 256 * k) };
            let mut partial = [_mm256_setzero_ps(); 4];
            for v in (0..32).step_by(4) {
                for (i, p) in partial.iter_mut().enumerate() {
                    // SAFETY: 8 floats at 8(v + i) < 256 of weights and of x's super-block.
                    let (wv, xv) = unsafe {
                        (
                            _mm256_loadu_ps(w.add(8 * (v + i))),
                            _mm256_loadu_ps(xp.add(8 * (v + i))),
                        )
                    };
                    *p = _mm256_fmadd_ps(wv, xv, *p);
                }
            }
            let sum = _mm256_add_ps(
                _mm256_add_ps(partial[0], partial[1]),
                _mm256_add_ps(partial[2], partial[3]),
            );
            *a = _mm256_add_ps(*a, sum);
        }
    }
    for (s, a) in sums.iter_mut().zip(acc).take(batch) {
        *s = sum_lanes(a);
    }
}
