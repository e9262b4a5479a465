//! AVX2 + FMA + F16C row kernels. As in `quant::simd_x86`, intrinsics are the
//! reasoned exception to DESIGN.md's rule that only `src/ffi` and `src/vk`
//! hold `unsafe`: each block says why it is sound (features detected first,
//! every access inside a slice whose length was checked).

use super::MAX_BATCH;
use crate::format::Format;
use crate::quant::simd_x86::f16_at;
use std::arch::x86_64::*;

pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// The SIMD row kernel; false when the CPU lacks the features or the row
/// length is not a multiple of 32.
pub fn row_dot(
    format: Format,
    row: &[u8],
    cols: usize,
    x: &[f32],
    batch: usize,
    sums: &mut [f32; MAX_BATCH],
) -> bool {
    if !available() || cols % 32 != 0 {
        return false;
    }
    assert!(
        batch <= MAX_BATCH
            && x.len() >= batch * cols
            && format.size_of(cols).ok() == Some(row.len())
    );
    // SAFETY: features detected; the kernel reads row[..] (its length matches
    // cols in this format, asserted) and x[..batch·cols] (asserted).
    unsafe { row_dot_avx2(format, row, cols, x, batch, sums) };
    true
}

#[target_feature(enable = "avx2,fma")]
fn sum_lanes(v: __m256) -> f32 {
    let half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
    _mm_cvtss_f32(_mm_add_ss(quarter, _mm_shuffle_ps(quarter, quarter, 1)))
}

/// Four vectors of one 32-weight block, as floats, and the block's scale and offset.
///
/// # Safety
/// AVX2 and F16C present; `row` holds block `k` of `format`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn block(format: Format, row: &[u8], k: usize) -> ([__m256; 4], f32, f32) {
    let bytes = format.block_bytes();
    let b = &row[k * bytes * if format.is_block() { 1 } else { 32 }..];
    let p = b.as_ptr();
    // SAFETY: b holds at least one 32-element block of the format (caller's contract).
    unsafe {
        match format {
            Format::F32 => {
                let f = p.cast::<f32>();
                (
                    [
                        _mm256_loadu_ps(f),
                        _mm256_loadu_ps(f.add(8)),
                        _mm256_loadu_ps(f.add(16)),
                        _mm256_loadu_ps(f.add(24)),
                    ],
                    1.0,
                    0.0,
                )
            }
            Format::F16 => {
                let h = |i: usize| _mm256_cvtph_ps(_mm_loadu_si128(p.add(16 * i).cast()));
                ([h(0), h(1), h(2), h(3)], 1.0, 0.0)
            }
            Format::BF16 => {
                let h = |i: usize| {
                    _mm256_castsi256_ps(_mm256_slli_epi32(
                        _mm256_cvtepu16_epi32(_mm_loadu_si128(p.add(16 * i).cast())),
                        16,
                    ))
                };
                ([h(0), h(1), h(2), h(3)], 1.0, 0.0)
            }
            Format::Q8_0 => {
                let d = f16_at(b);
                let q = |i: usize| {
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                        p.add(2 + 8 * i).cast(),
                    )))
                };
                ([q(0), q(1), q(2), q(3)], d, 0.0)
            }
            Format::Q4_0 | Format::Q4_1 => {
                let offset = if format == Format::Q4_0 { 2 } else { 4 };
                let d = f16_at(b);
                let m = if format == Format::Q4_1 {
                    f16_at(&b[2..])
                } else {
                    0.0
                };
                let packed = _mm_loadu_si128(p.add(offset).cast());
                let mask = _mm_set1_epi8(0x0f);
                let low = _mm_and_si128(packed, mask);
                let high = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
                let bias = _mm256_set1_epi32(if format == Format::Q4_0 { 8 } else { 0 });
                let f = |v: __m128i| {
                    _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(v), bias))
                };
                (
                    [
                        f(low),
                        f(_mm_srli_si128(low, 8)),
                        f(high),
                        f(_mm_srli_si128(high, 8)),
                    ],
                    d,
                    m,
                )
            }
        }
    }
}

/// # Safety
/// AVX2, FMA and F16C present; cols % 32 == 0; row holds cols elements of
/// `format`; x holds batch·cols floats; batch <= MAX_BATCH.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn row_dot_avx2(
    format: Format,
    row: &[u8],
    cols: usize,
    x: &[f32],
    batch: usize,
    sums: &mut [f32; MAX_BATCH],
) {
    let mut acc = [_mm256_setzero_ps(); MAX_BATCH];
    let blocks = cols / 32;
    let with_offset = format == Format::Q4_1;
    for k in 0..blocks {
        // As in row_dot_int_avx2: keep DRAM busy 1 KiB ahead of the loads.
        let block_bytes = format.block_bytes() * if format.is_block() { 1 } else { 32 };
        _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().wrapping_add(k * block_bytes + 1024).cast());
        // SAFETY: k < cols/32 blocks, within row (caller's contract).
        let (w, d, m) = unsafe { block(format, row, k) };
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
            if with_offset {
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

/// The integer-dot row kernel for Q8_0, Q4_0 and Q4_1 against quantized x.
pub fn row_dot_int(
    format: Format,
    row: &[u8],
    cols: usize,
    xq: &QuantizedX,
    batch: usize,
    sums: &mut [f32; MAX_BATCH],
) {
    assert!(
        format.is_block()
            && batch <= MAX_BATCH
            && xq.blocks * 32 == cols
            && xq.quants.len() >= batch * cols
    );
    assert_eq!(format.size_of(cols).ok(), Some(row.len()));
    // SAFETY: quantize_x returned Some, so the features are present; the kernel
    // reads row[..] and xq's vectors within the lengths asserted above.
    unsafe { row_dot_int_avx2(format, row, cols, xq, batch, sums) }
}

/// # Safety
/// AVX2, FMA and F16C present; lengths as `row_dot_int` asserts.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn row_dot_int_avx2(
    format: Format,
    row: &[u8],
    cols: usize,
    xq: &QuantizedX,
    batch: usize,
    sums: &mut [f32; MAX_BATCH],
) {
    let blocks = cols / 32;
    let bytes = format.block_bytes();
    let ones = _mm256_set1_epi16(1);
    let mask = _mm_set1_epi8(0x0f);
    let mut acc = [_mm256_setzero_ps(); MAX_BATCH];
    let mut offsets = [0.0f32; MAX_BATCH];
    for k in 0..blocks {
        let b = &row[k * bytes..(k + 1) * bytes];
        // Ask for the weights 1 KiB ahead: the hardware prefetcher alone kept
        // only about 2.3 GB/s in flight from DRAM for this loop (measured at
        // 8192x8192). A prefetch never faults, even past the end of the row.
        _mm_prefetch::<_MM_HINT_T0>(b.as_ptr().wrapping_add(1024).cast());
        let d = f16_at(b);
        // The weights as 32 bytes: i8 for Q8_0 and Q4_0 (−8..7), u8 0..15 for Q4_1.
        // SAFETY: b holds one whole block of the format.
        let w = unsafe {
            match format {
                Format::Q8_0 => _mm256_loadu_si256(b.as_ptr().add(2).cast()),
                _ => {
                    let packed = _mm_loadu_si128(
                        b.as_ptr()
                            .add(if format == Format::Q4_0 { 2 } else { 4 })
                            .cast(),
                    );
                    let low = _mm_and_si128(packed, mask);
                    let high = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
                    let nibbles = _mm256_set_m128i(high, low);
                    // Q4_0 stores q + 8: as signed levels −8..7 it takes Q8_0's path.
                    if format == Format::Q4_0 {
                        _mm256_sub_epi8(nibbles, _mm256_set1_epi8(8))
                    } else {
                        nibbles
                    }
                }
            }
        };
        let m = if format == Format::Q4_1 {
            f16_at(&b[2..])
        } else {
            0.0
        };
        for (v, a) in acc.iter_mut().enumerate().take(batch) {
            let slot = v * blocks + k;
            // SAFETY: slot·32 + 32 <= batch·cols <= quants.len().
            let x = unsafe { _mm256_loadu_si256(xq.quants.as_ptr().add(slot * 32).cast()) };
            // u8 × i8 products (|w| with x given w's sign, for signed weights)
            // summed in pairs (at most 2·127·127, no i16 saturation), then in
            // fours as i32: exact integers.
            let products = if format == Format::Q4_1 {
                _mm256_maddubs_epi16(w, x)
            } else {
                _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))
            };
            let dots = _mm256_madd_epi16(products, ones);
            let scale = d * xq.scales[slot];
            *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots), _mm256_set1_ps(scale), *a);
            let sum_x = xq.sums[slot] as f32;
            // Q4_1 adds its offset m·Σx.
            if format == Format::Q4_1 {
                offsets[v] += m * xq.scales[slot] * sum_x;
            }
        }
    }
    for ((s, a), o) in sums.iter_mut().zip(acc).zip(offsets).take(batch) {
        *s = sum_lanes(a) + o;
    }
}
