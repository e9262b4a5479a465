//! The portable kernels: one function per format and rounding mode, block by
//! block. They define the exact arithmetic (docs/quant.md); the SIMD path and
//! the Vulkan kernels must give the same bytes.
//!
//! Block formats follow ggml's reference quantizers operation for operation, in
//! f32: `d = amax/127` (Q8_0), `d = max/−8` (Q4_0) and `d = max/−16` (Q5_0)
//! with `max` the first element of largest magnitude, `d = (max−min)/15`
//! (Q4_1); `id = 1/d`; Q8_0 rounds `x·id` half away from zero, Q4_0 truncates
//! `x·id + 8.5` and Q5_0 `x·id + 16.5`, capped at 15 and 31, Q4_1
//! `(x−min)·id + 0.5`, capped at 15. Scales are stored as f16, rounded to
//! nearest even. One case is defined where ggml's is not: when `|d|` is below
//! f32::MIN_POSITIVE (zero or subnormal, which only a block of magnitudes below
//! about 1.5e-36 gives), `id` is 0, so every quant is the zero point. GPUs flush
//! subnormals, and this keeps both sides equal.

use super::rng;
use half::f16;

/// Elements per block of the block formats.
pub const QK: usize = 32;

/// f32 to binary16 bits, round to nearest even (as numpy's astype(float16)).
pub fn f16_bits(x: f32) -> u16 {
    f16::from_f32(x).to_bits()
}

/// binary16 bits to f32 (exact).
pub fn f16_value(bits: u16) -> f32 {
    f16::from_bits(bits).to_f32()
}

/// f32 to bfloat16 bits as ggml does: NaN stays NaN (made quiet), otherwise
/// round to nearest even on the bit pattern (subnormals kept).
pub fn bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u as u64 + 0x7fff + ((u >> 16) & 1) as u64) >> 16) as u16
}

/// bfloat16 bits to f32 (exact).
pub fn bf16_value(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// F32 "quantize": the values' bytes, little endian.
pub fn f32_store(src: &[f32], dst: &mut [u8]) {
    for (o, &x) in dst.chunks_exact_mut(4).zip(src) {
        o.copy_from_slice(&x.to_le_bytes());
    }
}

/// F32 bytes back to values.
pub fn f32_load(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// F16, round to nearest even, every value.
pub fn f16_nearest(src: &[f32], dst: &mut [u8]) {
    for (o, &x) in dst.chunks_exact_mut(2).zip(src) {
        o.copy_from_slice(&f16_bits(x).to_le_bytes());
    }
}

/// F16 back to f32 (exact).
pub fn f16_dequantize(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *y = f16_value(u16::from_le_bytes([b[0], b[1]]));
    }
}

/// BF16, round to nearest even, every value.
pub fn bf16_nearest(src: &[f32], dst: &mut [u8]) {
    for (o, &x) in dst.chunks_exact_mut(2).zip(src) {
        o.copy_from_slice(&bf16_bits(x).to_le_bytes());
    }
}

/// BF16 back to f32 (exact).
pub fn bf16_dequantize(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *y = bf16_value(u16::from_le_bytes([b[0], b[1]]));
    }
}

/// C's roundf (half away from zero), in operations that are exact in f32:
/// `b = ⌊|v|⌋ + ⌊2(|v| − ⌊|v|⌋)⌋` with v's sign (what gguf-py does). From
/// 2^23 up every f32 is an integer (and NaN stays NaN): v itself. Below it
/// the floors of non-negative values are casts, not libm calls.
pub fn round_half_away(v: f32) -> f32 {
    let a = v.abs();
    if a >= 8_388_608.0 || a.is_nan() {
        return v;
    }
    let floor = (a as i32) as f32;
    let b = floor + ((2.0 * (a - floor)) as i32) as f32;
    if v < 0.0 { -b } else { b }
}

/// The reciprocal scale, or 0 for a zero or subnormal scale (see module docs).
pub fn inverse_scale(d: f32) -> f32 {
    if d.abs() >= f32::MIN_POSITIVE {
        1.0 / d
    } else {
        0.0
    }
}

// ---------------------------------------------------------------- F16 / BF16

/// F16 stochastic rounding: `r` picks between the two binary16 neighbours of
/// `x` with probabilities that make the result unbiased. f32 subnormals count
/// as zero; a result beyond 65504 is clamped to ±65504.
pub fn f16_bits_stochastic(x: f32, r: u32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let magnitude = bits & 0x7fff_ffff;
    let exponent = (magnitude >> 23) as i32 - 127;
    if magnitude < 0x0080_0000 {
        return sign;
    }
    let rounded = if exponent < -24 {
        // Below the smallest subnormal: 0 or 2^-24, up with probability |x|·2^24
        // (dropping bits would reach into the exponent here).
        let up = ((r >> 8) as f32) < f32::from_bits(magnitude) * 16_777_216.0 * 16_777_216.0;
        if up { 0x3380_0000 } else { 0 }
    } else {
        // Drop the bits below the binary16 precision at this magnitude (10
        // mantissa bits for normals, fewer for binary16 subnormals), adding
        // random bits first so the carry happens with the right probability.
        let dropped = if exponent >= -14 {
            13
        } else {
            13 + (-14 - exponent) as u32
        };
        let mask = (1u32 << dropped) - 1;
        (magnitude + (r & mask)) & !mask
    };
    let value = f32::from_bits(rounded).min(65504.0);
    sign | f16_bits(value)
}

/// BF16 stochastic rounding: add 16 random bits below the kept ones, truncate.
/// A carry past the largest finite bfloat16 is clamped to it.
pub fn bf16_bits_stochastic(x: f32, r: u32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let magnitude = bits & 0x7fff_ffff;
    let rounded = ((magnitude + (r & 0xffff)) >> 16).min(0x7f7f) as u16;
    sign | rounded
}

/// F16 stochastic rounding of every value; value i draws the random bits of
/// element `first + i`.
pub fn f16_stochastic(src: &[f32], dst: &mut [u8], seed: u64, first: u64) {
    for (i, (o, &x)) in dst.chunks_exact_mut(2).zip(src).enumerate() {
        let r = rng::random_u32(seed, first + i as u64);
        o.copy_from_slice(&f16_bits_stochastic(x, r).to_le_bytes());
    }
}

/// BF16 stochastic rounding of every value, as [`f16_stochastic`].
pub fn bf16_stochastic(src: &[f32], dst: &mut [u8], seed: u64, first: u64) {
    for (i, (o, &x)) in dst.chunks_exact_mut(2).zip(src).enumerate() {
        let r = rng::random_u32(seed, first + i as u64);
        o.copy_from_slice(&bf16_bits_stochastic(x, r).to_le_bytes());
    }
}

// ---------------------------------------------------------------- Q8_0

/// Absolute maximum of a block.
pub fn absmax(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// Q8_0, round to nearest (ggml's quantize_row_q8_0_ref).
pub fn q8_0_nearest(x: &[f32], out: &mut [u8]) {
    let d = absmax(x) / 127.0;
    let id = inverse_scale(d);
    out[..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    for (q, &v) in out[2..34].iter_mut().zip(x) {
        *q = round_half_away(v * id) as i8 as u8;
    }
}

/// Q8_0, stochastic: the nearest scale, then ⌊x·id + u⌋ in [−127, 127].
pub fn q8_0_stochastic(x: &[f32], out: &mut [u8], seed: u64, first: u64) {
    let d = absmax(x) / 127.0;
    let id = inverse_scale(d);
    out[..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    for (j, (q, &v)) in out[2..34].iter_mut().zip(x).enumerate() {
        let u = rng::uniform(seed, first + j as u64);
        *q = (v * id + u).floor().clamp(-127.0, 127.0) as i8 as u8;
    }
}

/// Q8_0 with a given scale `d` (already representable in f16): quants only.
pub fn q8_0_with_scale(x: &[f32], d: f32, out: &mut [u8]) {
    let id = inverse_scale(d);
    out[..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    for (q, &v) in out[2..34].iter_mut().zip(x) {
        *q = round_half_away(v * id).clamp(-127.0, 127.0) as i8 as u8;
    }
}

/// Dequantizes one Q8_0 block: x = d·q.
pub fn q8_0_dequantize(block: &[u8], out: &mut [f32]) {
    let d = f16_value(u16::from_le_bytes([block[0], block[1]]));
    for (y, &q) in out.iter_mut().zip(&block[2..34]) {
        *y = d * (q as i8) as f32;
    }
}

// ---------------------------------------------------------------- Q4_0

/// The first element of largest magnitude (ggml's `max` with its sign).
pub fn signed_max(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// Packs 32 four-bit quants: element j in the low nibble of byte j, element
/// j+16 in the high nibble.
#[inline(always)]
fn pack_nibbles(q: &[u8; QK], out: &mut [u8]) {
    for j in 0..QK / 2 {
        out[j] = q[j] | (q[j + QK / 2] << 4);
    }
}

fn unpack_nibble(qs: &[u8], j: usize) -> u8 {
    if j < QK / 2 {
        qs[j] & 0x0f
    } else {
        qs[j - QK / 2] >> 4
    }
}

/// The levels of a format whose zero point is `zero` (8 for Q4_0, 16 for
/// Q5_0) among 2·zero levels: q = min(2·zero − 1, ⌊x·id + zero + ½⌋).
#[inline(always)]
fn offset_levels(x: &[f32], d: f32, zero: f32) -> [u8; QK] {
    let id = inverse_scale(d);
    let (half_up, top) = (zero + 0.5, 2.0 * zero - 1.0);
    let mut q = [0u8; QK];
    for (qj, &v) in q.iter_mut().zip(x) {
        *qj = (v * id + half_up).trunc().clamp(0.0, top) as u8;
    }
    q
}

/// Stochastic [`offset_levels`]: q = ⌊x·id + zero + u⌋ in [0, 2·zero − 1].
#[inline(always)]
fn offset_levels_stochastic(x: &[f32], d: f32, zero: f32, seed: u64, first: u64) -> [u8; QK] {
    let id = inverse_scale(d);
    let top = 2.0 * zero - 1.0;
    let mut q = [0u8; QK];
    for (j, (qj, &v)) in q.iter_mut().zip(x).enumerate() {
        let u = rng::uniform(seed, first + j as u64);
        *qj = (v * id + zero + u).floor().clamp(0.0, top) as u8;
    }
    q
}

/// Q4_0, round to nearest (ggml's quantize_row_q4_0_ref).
pub fn q4_0_nearest(x: &[f32], out: &mut [u8]) {
    let max = signed_max(x);
    let d = max / -8.0;
    q4_0_with_scale(x, d, out);
}

/// Q4_0 with the scale `d`: q = min(15, ⌊x·id + 8.5⌋). Inlined, so that
/// the searches' AVX2 functions vectorize it.
#[inline(always)]
pub fn q4_0_with_scale(x: &[f32], d: f32, out: &mut [u8]) {
    let q = offset_levels(x, d, 8.0);
    out[..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    pack_nibbles(&q, &mut out[2..18]);
}

/// Q4_0, stochastic: the nearest scale, then q = ⌊x·id + 8 + u⌋ in [0, 15].
pub fn q4_0_stochastic(x: &[f32], out: &mut [u8], seed: u64, first: u64) {
    let d = signed_max(x) / -8.0;
    let q = offset_levels_stochastic(x, d, 8.0, seed, first);
    out[..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    pack_nibbles(&q, &mut out[2..18]);
}

/// Dequantizes one Q4_0 block: x = d·(q − 8).
pub fn q4_0_dequantize(block: &[u8], out: &mut [f32]) {
    let d = f16_value(u16::from_le_bytes([block[0], block[1]]));
    for (j, y) in out.iter_mut().enumerate().take(QK) {
        *y = d * (unpack_nibble(&block[2..18], j) as i32 - 8) as f32;
    }
}

// ---------------------------------------------------------------- Q5_0

/// Packs 32 five-bit quants as ggml does: bit 4 of element j in bit j of the
/// little-endian u32 `qh` (bytes 0..4), the low four bits as Q4_0 packs them
/// (bytes 4..20).
fn pack_q5(q: &[u8; QK], out: &mut [u8]) {
    let qh = q
        .iter()
        .enumerate()
        .fold(0u32, |qh, (j, &v)| qh | (u32::from(v >> 4) << j));
    out[..4].copy_from_slice(&qh.to_le_bytes());
    pack_nibbles(&q.map(|v| v & 0x0f), &mut out[4..20]);
}

/// Q5_0, round to nearest (ggml's quantize_row_q5_0_ref).
pub fn q5_0_nearest(x: &[f32], out: &mut [u8]) {
    let max = signed_max(x);
    let d = max / -16.0;
    q5_0_with_scale(x, d, out);
}

/// Q5_0 with the scale `d`: q = min(31, ⌊x·id + 16.5⌋).
pub fn q5_0_with_scale(x: &[f32], d: f32, out: &mut [u8]) {
    let q = offset_levels(x, d, 16.0);
    out[..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    pack_q5(&q, &mut out[2..22]);
}

/// Q5_0, stochastic: the nearest scale, then q = ⌊x·id + 16 + u⌋ in [0, 31].
pub fn q5_0_stochastic(x: &[f32], out: &mut [u8], seed: u64, first: u64) {
    let d = signed_max(x) / -16.0;
    let q = offset_levels_stochastic(x, d, 16.0, seed, first);
    out[..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    pack_q5(&q, &mut out[2..22]);
}

/// The level (0..32) of element `j` of a Q5_0 block.
pub fn q5_0_level(block: &[u8], j: usize) -> u8 {
    let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
    unpack_nibble(&block[6..22], j) | (((qh >> j) & 1) as u8) << 4
}

/// Dequantizes one Q5_0 block: x = d·(q − 16).
pub fn q5_0_dequantize(block: &[u8], out: &mut [f32]) {
    let d = f16_value(u16::from_le_bytes([block[0], block[1]]));
    for (j, y) in out.iter_mut().enumerate().take(QK) {
        *y = d * (q5_0_level(block, j) as i32 - 16) as f32;
    }
}

// ---------------------------------------------------------------- Q4_1

/// The block's minimum and maximum as ggml finds them (`v < min`, `v > max`
/// from ±FLT_MAX): among equal values the first wins, so −0 and +0 keep the
/// sign of the one met first. `f32::min` leaves that choice unspecified.
pub(crate) fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter().fold((f32::MAX, -f32::MAX), |(lo, hi), &v| {
        (if v < lo { v } else { lo }, if v > hi { v } else { hi })
    })
}

/// Q4_1, round to nearest (ggml's quantize_row_q4_1_ref).
pub fn q4_1_nearest(x: &[f32], out: &mut [u8]) {
    let (min, max) = min_max(x);
    q4_1_with_scale(x, (max - min) / 15.0, min, out);
}

/// Q4_1 with scale `d` and offset `m`: q = min(15, ⌊(x − m)·id + 0.5⌋), and
/// 0 below m.
pub fn q4_1_with_scale(x: &[f32], d: f32, m: f32, out: &mut [u8]) {
    let id = inverse_scale(d);
    let mut q = [0u8; QK];
    for (qj, &v) in q.iter_mut().zip(x) {
        *qj = ((v - m) * id + 0.5).trunc().clamp(0.0, 15.0) as u8;
    }
    out[..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    out[2..4].copy_from_slice(&f16_bits(m).to_le_bytes());
    pack_nibbles(&q, &mut out[4..20]);
}

/// Q4_1, stochastic: the nearest scale and minimum, then q = ⌊(x − min)·id + u⌋.
pub fn q4_1_stochastic(x: &[f32], out: &mut [u8], seed: u64, first: u64) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = inverse_scale(d);
    let mut q = [0u8; QK];
    for (j, (qj, &v)) in q.iter_mut().zip(x).enumerate() {
        let u = rng::uniform(seed, first + j as u64);
        *qj = ((v - min) * id + u).floor().clamp(0.0, 15.0) as u8;
    }
    out[..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    out[2..4].copy_from_slice(&f16_bits(min).to_le_bytes());
    pack_nibbles(&q, &mut out[4..20]);
}

/// Dequantizes one Q4_1 block: x = d·q + m (a product, then a sum: no FMA).
pub fn q4_1_dequantize(block: &[u8], out: &mut [f32]) {
    let d = f16_value(u16::from_le_bytes([block[0], block[1]]));
    let m = f16_value(u16::from_le_bytes([block[2], block[3]]));
    for (j, y) in out.iter_mut().enumerate().take(QK) {
        *y = d * unpack_nibble(&block[4..20], j) as f32 + m;
    }
}

// ---------------------------------------------------------------- IQ4_NL

/// IQ4_NL's 16 levels (ggml's `kvalues_iq4nl`): element j is d·LEVELS[q].
pub const IQ4_NL_LEVELS: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// The midpoints between neighbouring levels (all exact in f32).
pub const IQ4_NL_MIDPOINTS: [f32; 15] = [
    -115.5, -93.5, -74.0, -57.0, -42.0, -28.5, -16.0, -4.5, 7.0, 19.0, 31.5, 45.5, 61.0, 79.0,
    101.0,
];

/// Blocks whose largest magnitude is below this have the scale 0 (ggml's
/// `GROUP_MAX_EPS`).
pub const IQ4_NL_EPS: f32 = 1e-15;

/// The index of the level nearest `t`, ties to the upper one: the number of
/// midpoints at or below `t`. This is ggml's `best_index_int8`, whose
/// comparison `t − lo < hi − t` is exact wherever it is close (near a
/// midpoint both differences are exact in f32).
#[inline(always)]
pub fn iq4_nl_index(t: f32) -> u8 {
    IQ4_NL_MIDPOINTS.iter().map(|&m| u8::from(t >= m)).sum()
}

/// The level of index `q` as f32.
#[inline(always)]
pub fn iq4_nl_level(q: u8) -> f32 {
    f32::from(IQ4_NL_LEVELS[usize::from(q & 0x0f)])
}

/// The power of two that brings `amax` (normal) into [1, 2), and its
/// inverse: the least-squares sums of [`iq4_nl_nearest`] are taken on the
/// block times the first, so that no term of a normal block's sums is
/// subnormal where it matters (GPUs flush subnormals), and the scale found
/// is multiplied by the second. Both are exact.
#[inline(always)]
pub fn iq4_nl_sum_scale(amax: f32) -> (f32, f32) {
    let e = amax.to_bits() >> 23;
    (f32::from_bits((254 - e) << 23), f32::from_bits(e << 23))
}

/// The least-squares scale of ggml's reference quantizer for the indices
/// `q`, with weights x²: Σ(x²·v)·x / Σ(x²·v)·v over the block in element
/// order (v = the level of q), on the block scaled by [`iq4_nl_sum_scale`].
pub fn iq4_nl_refit(x: &[f32], q: &[u8; QK], amax: f32) -> f32 {
    let (up, down) = iq4_nl_sum_scale(amax);
    let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
    for (&v, &qj) in x.iter().zip(q) {
        let xs = v * up;
        let level = iq4_nl_level(qj);
        let wq = xs * xs * level;
        sumqx += wq * xs;
        sumq2 += wq * level;
    }
    if sumq2 > 0.0 {
        sumqx / sumq2 * down
    } else {
        0.0
    }
}

/// Packs 32 indices and the f16 bits of the scale `d` into an IQ4_NL block.
fn pack_iq4_nl(d: f32, q: &[u8; QK], out: &mut [u8]) {
    out[..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    pack_nibbles(q, &mut out[2..18]);
}

/// IQ4_NL, ggml's reference quantizer (quantize_row_iq4_nl_ref): with
/// d₀ = max/−127 the indices are those of the levels nearest x/d₀, and the
/// stored scale is the least-squares one for them (weights x²,
/// [`iq4_nl_refit`]). A block whose largest magnitude is below
/// [`IQ4_NL_EPS`] stores d = +0 and the index of the level nearest 0 (8).
pub fn iq4_nl_nearest(x: &[f32], out: &mut [u8]) {
    let max = signed_max(x);
    let amax = max.abs();
    if amax < IQ4_NL_EPS {
        pack_iq4_nl(0.0, &[8; QK], out);
        return;
    }
    let id = inverse_scale(max / -127.0);
    let q: [u8; QK] = std::array::from_fn(|j| iq4_nl_index(x[j] * id));
    pack_iq4_nl(iq4_nl_refit(x, &q, amax), &q, out);
}

/// IQ4_NL with the scale `d`: each element on the level nearest x/d.
pub fn iq4_nl_with_scale(x: &[f32], d: f32, out: &mut [u8]) {
    let id = inverse_scale(d);
    let q: [u8; QK] = std::array::from_fn(|j| iq4_nl_index(x[j] * id));
    pack_iq4_nl(d, &q, out);
}

/// The index of the stochastic rounding of `t` between its two neighbouring
/// levels lo ≤ t < hi: the upper one when u·(hi − lo) < t − lo, so with
/// probability (t − lo)/(hi − lo); below the first level 0 (then t − lo < 0),
/// from the last 15.
#[inline(always)]
pub fn iq4_nl_index_stochastic(t: f32, u: f32) -> u8 {
    if t >= f32::from(IQ4_NL_LEVELS[15]) {
        return 15;
    }
    // The number of levels after the first at or below t: lo's index.
    let k = IQ4_NL_LEVELS[1..]
        .iter()
        .map(|&l| u8::from(t >= f32::from(l)))
        .sum::<u8>();
    let (lo, hi) = (iq4_nl_level(k), iq4_nl_level(k + 1));
    k + u8::from(u * (hi - lo) < t - lo)
}

/// IQ4_NL, stochastic: d = max/−127 (ggml's first scale), each element
/// rounded to one of the two levels around x·id with probabilities that make
/// it unbiased.
pub fn iq4_nl_stochastic(x: &[f32], out: &mut [u8], seed: u64, first: u64) {
    let d = signed_max(x) / -127.0;
    let id = inverse_scale(d);
    let q: [u8; QK] = std::array::from_fn(|j| {
        iq4_nl_index_stochastic(x[j] * id, rng::uniform(seed, first + j as u64))
    });
    pack_iq4_nl(d, &q, out);
}

/// The index (0..16) of element `j` of an IQ4_NL block.
pub fn iq4_nl_index_of(block: &[u8], j: usize) -> u8 {
    unpack_nibble(&block[2..18], j)
}

/// Dequantizes one IQ4_NL block: x = d·LEVELS[q].
pub fn iq4_nl_dequantize(block: &[u8], out: &mut [f32]) {
    let d = f16_value(u16::from_le_bytes([block[0], block[1]]));
    for (j, y) in out.iter_mut().enumerate().take(QK) {
        *y = d * iq4_nl_level(iq4_nl_index_of(block, j));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_half_away_matches_c_roundf() {
        for v in [
            0.5f32,
            1.5,
            2.5,
            -0.5,
            -2.5,
            0.49999997,
            -0.49999997,
            126.5,
            3.0,
            -0.0,
            8388607.5,
            8388608.0,
            -16777217.0,
            3.0e38,
            f32::INFINITY,
        ] {
            assert_eq!(round_half_away(v), v.round(), "{v}");
        }
        assert!(round_half_away(f32::NAN).is_nan());
        // The floors as casts give the bits the floor-based definition gives,
        // on every exponent.
        let by_floors = |v: f32| {
            let a = v.abs();
            let floor = a.floor();
            let b = floor + (2.0 * (a - floor)).floor();
            if v < 0.0 { -b } else { b }
        };
        let mut s = 0x1234_5678u32;
        for _ in 0..1_000_000 {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let v = f32::from_bits(s);
            if v.is_nan() {
                continue;
            }
            assert_eq!(
                round_half_away(v).to_bits(),
                by_floors(v).to_bits(),
                "{v:e}"
            );
        }
    }

    #[test]
    fn bf16_rounds_to_nearest_even_and_keeps_nan_and_subnormals() {
        assert_eq!(bf16_bits(1.0), 0x3f80);
        assert_eq!(bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80); // tie to even (down)
        assert_eq!(bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82); // tie to even (up)
        assert_eq!(bf16_bits(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(bf16_bits(f32::from_bits(0x0000_1234)), 0x0000); // tiny subnormal
        assert_eq!(bf16_bits(f32::from_bits(0x0012_3456)), 0x0012); // subnormal kept
        assert!(bf16_value(bf16_bits(f32::NAN)).is_nan());
        assert_eq!(bf16_bits(f32::from_bits(0x7f7f_8000)), 0x7f80); // overflows to Inf
    }

    #[test]
    fn known_q8_0_block() {
        let mut x = [0.0f32; 32];
        x[0] = 1.27;
        x[1] = -0.635;
        x[2] = 0.005;
        let mut out = [0u8; 34];
        q8_0_nearest(&x, &mut out);
        let d = f16_value(u16::from_le_bytes([out[0], out[1]]));
        assert!((d - 0.01).abs() < 1e-5);
        assert_eq!(out[2] as i8, 127);
        assert_eq!(out[3] as i8, -64); // -63.5 rounds away from zero
        assert_eq!(out[4] as i8, 1); // 0.5 rounds away from zero
    }

    #[test]
    fn known_q4_0_and_q4_1_blocks() {
        let x: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect(); // -16..=15, max |x| = -16
        let mut out = [0u8; 18];
        q4_0_nearest(&x, &mut out);
        assert_eq!(f16_value(u16::from_le_bytes([out[0], out[1]])), 2.0);
        assert_eq!(out[2] & 0x0f, 0); // -16/2 + 8 = 0
        assert_eq!(out[2] >> 4, 8); // element 16 is 0 -> 8
        let mut y = [0.0f32; 32];
        q4_0_dequantize(&out, &mut y);
        assert_eq!(y[0], -16.0);
        assert_eq!(y[31], 14.0); // 15/2 + 8 = 15.5 -> trunc(16.0) capped at 15 -> 14

        let mut out = [0u8; 20];
        q4_1_nearest(&x, &mut out);
        let mut y = [0.0f32; 32];
        q4_1_dequantize(&out, &mut y);
        assert_eq!(y[0], -16.0);
        // d = 31/15 is stored as the f16 2.0664062, so the top level is 14.996.
        assert!((y[31] - 15.0).abs() < 0.01, "{}", y[31]);
    }

    #[test]
    fn known_q5_0_block() {
        // -16..=15: the max magnitude is -16, so d = 1 and q = x + 16.
        let x: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
        let mut out = [0u8; 22];
        q5_0_nearest(&x, &mut out);
        assert_eq!(f16_value(u16::from_le_bytes([out[0], out[1]])), 1.0);
        // Levels 0..=31 in order: bit 4 is set for elements 16..32.
        assert_eq!(
            u32::from_le_bytes([out[2], out[3], out[4], out[5]]),
            0xffff_0000
        );
        assert_eq!(out[6], 0x00); // elements 0 and 16: levels 0 and 16
        assert_eq!(out[21], 0xff); // elements 15 and 31: levels 15 and 31
        for j in 0..32 {
            assert_eq!(q5_0_level(&out, j), j as u8);
        }
        let mut y = [0.0f32; 32];
        q5_0_dequantize(&out, &mut y);
        assert_eq!(&y[..], &x[..]);
        // A positive max: d = -max/16, and the +16 level clips to 15.
        let x: Vec<f32> = (0..32)
            .map(|i| if i == 3 { 3.2 } else { 0.1 * i as f32 - 1.0 })
            .collect();
        q5_0_nearest(&x, &mut out);
        q5_0_dequantize(&out, &mut y);
        assert_eq!(q5_0_level(&out, 3), 0); // 3.2·(-16/3.2) + 16.5 = 0.5 -> 0
        assert!((y[3] - 3.2).abs() < 1e-3, "{}", y[3]);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= 0.1 + 1e-3, "{a} -> {b}");
        }
    }

    /// ggml's best_index_int8 over IQ4_NL's levels, as written there: a
    /// binary search, then the nearer neighbour by `t − lo < hi − t`.
    fn ggml_best_index(t: f32) -> u8 {
        let v = IQ4_NL_LEVELS.map(f32::from);
        if t <= v[0] {
            return 0;
        }
        if t >= v[15] {
            return 15;
        }
        let (mut lo, mut hi) = (0, 15);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if t < v[mid] {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        if t - v[lo] < v[hi] - t {
            lo as u8
        } else {
            hi as u8
        }
    }

    #[test]
    fn iq4_nl_index_is_ggmls_best_index() {
        // Around every midpoint and level, a few thousand neighbouring
        // floats each (an exhaustive run over every f32 in [−200, 200]
        // agreed too), and a spread of values across the range.
        let mut probes: Vec<f32> = Vec::new();
        for c in IQ4_NL_MIDPOINTS
            .iter()
            .copied()
            .chain(IQ4_NL_LEVELS.map(f32::from))
            .chain([0.0, 128.0, -128.0])
        {
            for k in -2000i32..=2000 {
                probes.push(f32::from_bits((c.to_bits() as i32 + k) as u32));
                probes.push(c + k as f32 * 1e-3);
            }
        }
        probes.extend((0..100_000).map(|i| i as f32 * 0.00257 - 129.0));
        // (NaN never reaches a quantizer: the input check rejects it.)
        for t in probes.into_iter().filter(|t| !t.is_nan()) {
            assert_eq!(iq4_nl_index(t), ggml_best_index(t), "{t:e}");
        }
    }

    #[test]
    fn iq4_nl_matches_ggmls_reference_bytes() {
        // x_j = ((37j + 11) mod 97 − 48)/13, x_5 = 3.9, x_40 = −7.5; the
        // expected bytes are those of ggml's quantize_row_iq4_nl_ref
        // (ggml-quants.c, compiled with -ffp-contract=off).
        let mut x: Vec<f32> = (0..64)
            .map(|j| ((j * 37 + 11) % 97 - 48) as f32 / 13.0)
            .collect();
        x[5] = 3.9;
        x[40] = -7.5;
        let ggml: [u8; 36] = [
            0xc5, 0xa7, 0xde, 0x68, 0x02, 0xbc, 0x35, 0xe0, 0x8a, 0x13, 0xce, 0x57, 0xf1, 0xab,
            0x34, 0xdf, 0x79, 0x12, 0x79, 0x2b, 0x76, 0xba, 0x54, 0x98, 0xcb, 0x65, 0xa9, 0x4d,
            0x80, 0xcb, 0x54, 0x98, 0x3c, 0x76, 0xba, 0x43,
        ];
        let mut out = [0u8; 36];
        for (block, o) in x.chunks(QK).zip(out.chunks_mut(18)) {
            iq4_nl_nearest(block, o);
        }
        assert_eq!(out, ggml);
    }

    #[test]
    fn iq4_nl_block_on_its_levels_is_exact() {
        // Levels times 2^-7 in a shuffled order, −127 first: the indices
        // are the levels' and the least-squares scale is exactly 2^-7 (each
        // term of Σx³v is 2^-7 times its term of Σx²v², exactly).
        let c = 1.0 / 128.0;
        let x: Vec<f32> = (0..QK)
            .map(|j| c * iq4_nl_level(if j == 0 { 0 } else { ((j * 7) % 16) as u8 }))
            .collect();
        let mut out = [0u8; 18];
        iq4_nl_nearest(&x, &mut out);
        assert_eq!(f16_value(u16::from_le_bytes([out[0], out[1]])), c);
        for (j, &v) in x.iter().enumerate() {
            assert_eq!(c * iq4_nl_level(iq4_nl_index_of(&out, j)), v, "[{j}]");
        }
        let mut y = [0.0f32; QK];
        iq4_nl_dequantize(&out, &mut y);
        assert_eq!(&y[..], &x[..]);
        // The scale is what the ends make it: the negated block has d = −c.
        let negated: Vec<f32> = x.iter().map(|v| -v).collect();
        iq4_nl_nearest(&negated, &mut out);
        assert_eq!(f16_value(u16::from_le_bytes([out[0], out[1]])), -c);
    }

    #[test]
    fn iq4_nl_stochastic_picks_one_of_the_two_levels_around() {
        for t in [
            -127.0f32, -126.5, -4.5, 0.0, 0.999, 1.0, 6.0, 100.0, 112.9, 113.0, 126.0,
        ] {
            let lo = IQ4_NL_LEVELS
                .iter()
                .rposition(|&l| f32::from(l) <= t)
                .unwrap_or(0) as u8;
            let hi = (lo + 1).min(15);
            let mut ups = 0;
            for r in 0..4096u32 {
                let u = (r.wrapping_mul(0x9e37_79b9) >> 8) as f32 / 16_777_216.0;
                let q = iq4_nl_index_stochastic(t, u);
                assert!(q == lo || q == hi, "{t}: {q} not {lo} or {hi}");
                ups += usize::from(q == hi && hi != lo);
            }
            // Up with probability (t − lo)/(hi − lo): within 6 sigmas.
            let p = if hi == lo || t >= 113.0 {
                0.0
            } else {
                f64::from(t - iq4_nl_level(lo)) / f64::from(iq4_nl_level(hi) - iq4_nl_level(lo))
            };
            let sigma = (p * (1.0 - p) * 4096.0).sqrt();
            assert!(
                (ups as f64 - p * 4096.0).abs() <= 6.0 * sigma + 1.0,
                "{t}: {ups} ups, expected {}",
                p * 4096.0
            );
        }
    }

    #[test]
    fn zero_and_subnormal_blocks_are_the_zero_point() {
        let tiny = [f32::from_bits(1); 32];
        let mut out = [0xffu8; 34];
        q8_0_nearest(&tiny, &mut out);
        assert!(out.iter().all(|&b| b == 0));
        let mut out = [0xffu8; 18];
        q4_0_nearest(&[0.0; 32], &mut out);
        assert_eq!(u16::from_le_bytes([out[0], out[1]]), 0x8000); // -0.0, as ggml's C
        q4_0_nearest(&[-0.0; 32], &mut out);
        // Still -0.0 as ggml's C (its max starts at +0.0); gguf-py gives +0.0 here.
        assert_eq!(u16::from_le_bytes([out[0], out[1]]), 0x8000);
        assert!(out[2..].iter().all(|&b| b == 0x88));
        let mut out = [0xffu8; 22];
        q5_0_nearest(&[f32::from_bits(3); 32], &mut out);
        assert!(out[..2].iter().all(|&b| b == 0x80 || b == 0)); // d is ±0 in f16
        assert_eq!(&out[2..6], &[0xff; 4]); // every level is 16: bit 4 set
        assert!(out[6..].iter().all(|&b| b == 0));
        // IQ4_NL has no zero level: d = +0 and the index of the level
        // nearest 0 (8, level 1), below ggml's 1e-15 as well.
        for tiny in [0.0, -0.0, 9e-16, f32::from_bits(5)] {
            let mut out = [0xffu8; 18];
            iq4_nl_nearest(&[tiny; 32], &mut out);
            assert_eq!(&out[..2], &[0, 0]);
            assert!(out[2..].iter().all(|&b| b == 0x88), "{tiny:e}");
        }
        let mut out = [0xffu8; 20];
        q4_1_nearest(&[3.0; 32], &mut out);
        let mut y = [0.0f32; 32];
        q4_1_dequantize(&out, &mut y);
        assert!(y.iter().all(|&v| v == 3.0));
    }

    #[test]
    fn f16_stochastic_picks_a_neighbour() {
        let x = 1.0f32 + 1.0 / 4096.0; // between 1 and 1 + 2^-10, a quarter of the way
        let (lo, hi) = (f16_bits(1.0), f16_bits(1.0 + 1.0 / 1024.0));
        let ups = (0..4096u32)
            .filter(|&r| f16_bits_stochastic(x, r.wrapping_mul(0x9e37_79b9)) == hi)
            .count();
        assert!((0..4096u32).all(|r| [lo, hi].contains(&f16_bits_stochastic(x, r))));
        assert!((900..1150).contains(&ups), "{ups}");
        assert_eq!(f16_bits_stochastic(1.0, 0xffff_ffff), lo); // representable values stay
        assert_eq!(f16_bits_stochastic(-2.0, 0x1234_5678), f16_bits(-2.0));
        assert_eq!(f16_bits_stochastic(65519.0, 0xffff_ffff), f16_bits(65504.0));
        // Between 2^-25 and 2^-24: 0 or the smallest subnormal, never 2^-23.
        let tiny = f32::from_bits(0x3358_0000); // 1.6875·2^-25
        assert!(
            (0..4096u32)
                .all(|r| [0, 1].contains(&f16_bits_stochastic(tiny, r.wrapping_mul(0x9e37_79b9))))
        );
    }
}
