//! The K-quants' portable kernels: ggml's super-block layouts (256 values),
//! their nearest and stochastic rounding, and dequantization
//! ([arithmetic](../../docs/quant.md#k-quants)).
//!
//! Q4_K and Q5_K are affine: eight sub-blocks of 32, each with a 6-bit scale
//! `sc` and a 6-bit minimum `m` under the super-block's f16 `d` and `dmin`,
//! x = (d·sc)·q − dmin·m with q in 0..=15 (Q4_K) or 0..=31 (Q5_K). Q6_K is
//! symmetric: sixteen sub-blocks of 16, each with an i8 scale under the f16
//! `d`, x = (d·sc)·(q − 32) with q in 0..=63. Every product of a dequantized
//! value is exact in f32 (at most 24 significant bits), so ggml's C, gguf-py
//! and nyxq give the same floats.
//!
//! Nearest rounding is nyxq's own (ggml's reference quantizers of these
//! formats already search): each sub-block's scale and minimum are those of
//! its range, the super-block scales are their maxima over 63 (Q6_K: the
//! largest sub-scale is −128 steps of `d`, as ggml has it), the 6-bit
//! sub-scales are rounded against the stored `d` and `dmin`, and each quant is
//! rounded against its stored sub-block scale.

use super::rng;
use super::scalar::{f16_bits, f16_value, inverse_scale, round_half_away, signed_max};
use crate::format::QK_K;

/// Elements of a Q4_K or Q5_K sub-block.
pub const AFFINE_SUB: usize = 32;
/// Sub-blocks of a Q4_K or Q5_K super-block.
pub const AFFINE_SUBS: usize = QK_K / AFFINE_SUB;
/// Elements of a Q6_K sub-block.
pub const Q6_SUB: usize = 16;
/// Sub-blocks of a Q6_K super-block.
pub const Q6_SUBS: usize = QK_K / Q6_SUB;
/// The largest 6-bit sub-block scale or minimum of Q4_K and Q5_K.
pub const SUB_SCALE_MAX: f32 = 63.0;

/// An f32 rounded to what f16 stores.
pub fn stored(v: f32) -> f32 {
    f16_value(f16_bits(v))
}

/// trunc(v + ½) clamped to 0..=top: round half up, for the non-negative
/// quantities of the affine formats. The cast truncates toward zero and
/// saturates, which is trunc then the clamp (NaN gives 0 either way) without
/// a libm call per value.
#[inline(always)]
pub fn half_up(v: f32, top: f32) -> u8 {
    ((v + 0.5) as i32).clamp(0, top as i32) as u8
}

/// ⌊v⌋ clamped to lo..=hi (lo ≤ 0 ≤ hi), without a libm call.
#[inline(always)]
pub fn floor_clamped(v: f32, lo: f32, hi: f32) -> i32 {
    let t = v as i32;
    let floor = if (t as f32) > v {
        t.saturating_sub(1)
    } else {
        t
    };
    floor.clamp(lo as i32, hi as i32)
}

fn put_f16(out: &mut [u8], v: f32) {
    out[..2].copy_from_slice(&f16_bits(v).to_le_bytes());
}

fn f16_at(bytes: &[u8]) -> f32 {
    f16_value(u16::from_le_bytes([bytes[0], bytes[1]]))
}

// ------------------------------------------------------------ Q4_K and Q5_K

/// One Q4_K or Q5_K super-block before packing: the stored super-block
/// scales, each sub-block's 6-bit scale and minimum, and the levels.
#[derive(Clone, Copy)]
pub struct AffineBlock {
    /// The super-block scale, as f16 stores it.
    pub d: f32,
    /// The super-block minimum's scale, as f16 stores it.
    pub dmin: f32,
    /// Each sub-block's scale, 0..=63.
    pub sc: [u8; AFFINE_SUBS],
    /// Each sub-block's minimum, 0..=63.
    pub m: [u8; AFFINE_SUBS],
    /// Each value's level, 0..=NMAX.
    pub q: [u8; QK_K],
}

/// The two affine K-quants: their top level and how they pack the levels.
pub trait Affine {
    /// The highest level (15 or 31).
    const NMAX: f32;
    /// Bytes per super-block.
    const BYTES: usize;
    /// Packs the levels into `out` (the bytes after the 16-byte header).
    fn pack_levels(q: &[u8; QK_K], out: &mut [u8]);
    /// Every level of a whole super-block's bytes, in element order.
    fn unpack_levels(block: &[u8]) -> [u8; QK_K];
}

/// Q4_K: levels 0..=15.
pub struct Q4K;
/// Q5_K: levels 0..=31.
pub struct Q5K;

/// Q4_K's and Q5_K's low four bits: in 32-byte chunk c, element 64c + i in
/// the low nibble of byte i and element 64c + 32 + i in its high nibble.
fn pack_low_nibbles(q: &[u8; QK_K], qs: &mut [u8]) {
    for c in 0..QK_K / 64 {
        for i in 0..32 {
            qs[32 * c + i] = (q[64 * c + i] & 0x0f) | ((q[64 * c + 32 + i] & 0x0f) << 4);
        }
    }
}

/// The inverse of [`pack_low_nibbles`].
fn unpack_low_nibbles(qs: &[u8]) -> [u8; QK_K] {
    let mut q = [0u8; QK_K];
    for (levels, bytes) in q.chunks_exact_mut(64).zip(qs.chunks_exact(32)) {
        let (low, high) = levels.split_at_mut(32);
        for ((l, h), &byte) in low.iter_mut().zip(high).zip(bytes) {
            *l = byte & 0x0f;
            *h = byte >> 4;
        }
    }
    q
}

impl Affine for Q4K {
    const NMAX: f32 = 15.0;
    const BYTES: usize = 144;
    fn pack_levels(q: &[u8; QK_K], out: &mut [u8]) {
        pack_low_nibbles(q, &mut out[..128]);
    }
    fn unpack_levels(block: &[u8]) -> [u8; QK_K] {
        unpack_low_nibbles(&block[16..144])
    }
}

impl Affine for Q5K {
    const NMAX: f32 = 31.0;
    const BYTES: usize = 176;
    /// `qh[32]` then `qs[128]`: bit j of qh[i] is bit 4 of element 32j + i.
    fn pack_levels(q: &[u8; QK_K], out: &mut [u8]) {
        let (qh, qs) = out.split_at_mut(32);
        qh.fill(0);
        for (j, sub) in q.chunks_exact(AFFINE_SUB).enumerate() {
            for (h, &level) in qh.iter_mut().zip(sub) {
                *h |= (level >> 4) << j;
            }
        }
        pack_low_nibbles(q, &mut qs[..128]);
    }
    fn unpack_levels(block: &[u8]) -> [u8; QK_K] {
        let mut q = unpack_low_nibbles(&block[48..176]);
        let qh = &block[16..48];
        for (j, sub) in q.chunks_exact_mut(AFFINE_SUB).enumerate() {
            for (level, &h) in sub.iter_mut().zip(qh) {
                *level |= ((h >> j) & 1) << 4;
            }
        }
        q
    }
}

/// Packs the sub-block scales and minimums as ggml's get_scale_min_k4 reads
/// them: sub-blocks 0..4 in the low six bits of bytes j (scale) and j + 4
/// (minimum); sub-blocks 4..8 with their low four bits in byte j + 4 (scale
/// low, minimum high) and their top two bits in the top bits of bytes j − 4
/// (scale) and j (minimum).
pub fn pack_scales(sc: &[u8; AFFINE_SUBS], m: &[u8; AFFINE_SUBS]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..AFFINE_SUBS {
        if j < 4 {
            s[j] |= sc[j];
            s[j + 4] |= m[j];
        } else {
            s[j + 4] = (sc[j] & 0x0f) | ((m[j] & 0x0f) << 4);
            s[j - 4] |= (sc[j] >> 4) << 6;
            s[j] |= (m[j] >> 4) << 6;
        }
    }
    s
}

/// Sub-block j's scale and minimum from the 12 packed bytes.
pub fn scale_min(scales: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    }
}

impl AffineBlock {
    /// Writes the super-block's bytes.
    pub fn pack<F: Affine>(&self, out: &mut [u8]) {
        put_f16(&mut out[0..2], self.d);
        put_f16(&mut out[2..4], self.dmin);
        out[4..16].copy_from_slice(&pack_scales(&self.sc, &self.m));
        F::pack_levels(&self.q, &mut out[16..F::BYTES]);
    }

    /// Sub-block j's scale and minimum as the dequantizer applies them.
    pub fn sub_scale(&self, j: usize) -> (f32, f32) {
        (
            self.d * f32::from(self.sc[j]),
            self.dmin * f32::from(self.m[j]),
        )
    }

    /// Sets the levels of sub-block j by nearest rounding against its stored
    /// scale and minimum.
    pub fn round_sub<F: Affine>(&mut self, x: &[f32], j: usize) {
        let (scale, min) = self.sub_scale(j);
        let id = inverse_scale(scale);
        let sub = AFFINE_SUB * j;
        for (q, &v) in self.q[sub..sub + AFFINE_SUB]
            .iter_mut()
            .zip(&x[sub..sub + AFFINE_SUB])
        {
            *q = half_up((v + min) * id, F::NMAX);
        }
    }
}

/// Each sub-block's scale and minimum from its range (the minimum capped at
/// 0 from above, as the format only subtracts), and the super-block scales
/// with the 6-bit sub-scales rounded against them.
fn affine_scales<F: Affine>(x: &[f32]) -> AffineBlock {
    affine_scales_of::<F>(std::array::from_fn(|j| {
        super::scalar::min_max(&x[AFFINE_SUB * j..AFFINE_SUB * (j + 1)])
    }))
}

/// [`affine_scales`] from each sub-block's (minimum, maximum), however found
/// (the sign of a zero minimum or maximum changes nothing).
pub(crate) fn affine_scales_of<F: Affine>(ranges: [(f32, f32); AFFINE_SUBS]) -> AffineBlock {
    let mut scale = [0.0f32; AFFINE_SUBS];
    let mut min = [0.0f32; AFFINE_SUBS];
    for (j, (mut lo, hi)) in ranges.into_iter().enumerate() {
        if lo > 0.0 {
            lo = 0.0;
        }
        scale[j] = (hi - lo) / F::NMAX;
        min[j] = -lo;
    }
    let largest = |v: &[f32]| v.iter().fold(0.0f32, |a, &b| if b > a { b } else { a });
    let d = stored(largest(&scale) / SUB_SCALE_MAX);
    let dmin = stored(largest(&min) / SUB_SCALE_MAX);
    let (id, idmin) = (inverse_scale(d), inverse_scale(dmin));
    AffineBlock {
        d,
        dmin,
        sc: scale.map(|s| half_up(s * id, SUB_SCALE_MAX)),
        m: min.map(|m| half_up(m * idmin, SUB_SCALE_MAX)),
        q: [0; QK_K],
    }
}

/// Q4_K or Q5_K, round to nearest: one super-block of 256 values.
pub fn affine_nearest<F: Affine>(x: &[f32], out: &mut [u8]) {
    let mut block = affine_scales::<F>(x);
    for j in 0..AFFINE_SUBS {
        block.round_sub::<F>(x, j);
    }
    block.pack::<F>(out);
}

/// Q4_K or Q5_K, stochastic: nearest rounding's scales, then
/// q = ⌊(x + min)·id + u⌋ in 0..=NMAX.
pub fn affine_stochastic<F: Affine>(x: &[f32], out: &mut [u8], seed: u64, first: u64) {
    let mut block = affine_scales::<F>(x);
    for j in 0..AFFINE_SUBS {
        let (scale, min) = block.sub_scale(j);
        let id = inverse_scale(scale);
        let sub = AFFINE_SUB * j;
        for (i, (q, &v)) in block.q[sub..sub + AFFINE_SUB]
            .iter_mut()
            .zip(&x[sub..sub + AFFINE_SUB])
            .enumerate()
        {
            let u = rng::uniform(seed, first + (sub + i) as u64);
            *q = floor_clamped((v + min) * id + u, 0.0, F::NMAX) as u8;
        }
    }
    block.pack::<F>(out);
}

/// Dequantizes one Q4_K or Q5_K super-block: x = (d·sc)·q − dmin·m.
pub fn affine_dequantize<F: Affine>(block: &[u8], out: &mut [f32]) {
    let (d, dmin) = (f16_at(&block[0..2]), f16_at(&block[2..4]));
    let levels = F::unpack_levels(block);
    for (j, (y, q)) in out
        .chunks_exact_mut(AFFINE_SUB)
        .zip(levels.chunks_exact(AFFINE_SUB))
        .enumerate()
    {
        let (sc, m) = scale_min(&block[4..16], j);
        let (scale, min) = (d * f32::from(sc), dmin * f32::from(m));
        for (y, &q) in y.iter_mut().zip(q) {
            *y = scale * f32::from(q) - min;
        }
    }
}

// ------------------------------------------------------------------- Q6_K

/// One Q6_K super-block before packing.
#[derive(Clone, Copy)]
pub struct Q6Block {
    /// The super-block scale, as f16 stores it.
    pub d: f32,
    /// Each sub-block's scale, −128..=127.
    pub sc: [i8; Q6_SUBS],
    /// Each value's level, 0..=63 (the value is level − 32).
    pub q: [u8; QK_K],
}

/// Q6_K's lowest and highest signed level.
pub const Q6_LEVELS: (f32, f32) = (-32.0, 31.0);

impl Q6Block {
    /// Writes the 210 bytes: for each half h of 128 values, ql[64h..64h+64]
    /// holds the low four bits (element 128h + 32k + l in the low nibble of
    /// ql[64h + 32(k % 2) + l] for k < 2, the high nibble for k ≥ 2) and
    /// qh[32h..32h+32] the top two (bits 2k of qh[32h + l]); then the
    /// sixteen scales and d.
    pub fn pack(&self, out: &mut [u8]) {
        let (ql, rest) = out.split_at_mut(128);
        let (qh, rest) = rest.split_at_mut(64);
        for h in 0..2 {
            for l in 0..32 {
                let q = |k: usize| self.q[128 * h + 32 * k + l];
                ql[64 * h + l] = (q(0) & 0x0f) | ((q(2) & 0x0f) << 4);
                ql[64 * h + 32 + l] = (q(1) & 0x0f) | ((q(3) & 0x0f) << 4);
                qh[32 * h + l] =
                    (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
            }
        }
        for (s, &sc) in rest[..Q6_SUBS].iter_mut().zip(&self.sc) {
            *s = sc as u8;
        }
        put_f16(&mut rest[Q6_SUBS..Q6_SUBS + 2], self.d);
    }

    /// Sub-block j's scale as the dequantizer applies it.
    pub fn sub_scale(&self, j: usize) -> f32 {
        self.d * f32::from(self.sc[j])
    }

    /// Sets the levels of sub-block j by nearest rounding (half away from
    /// zero) against its stored scale.
    pub fn round_sub(&mut self, x: &[f32], j: usize) {
        let id = inverse_scale(self.sub_scale(j));
        let sub = Q6_SUB * j;
        for (q, &v) in self.q[sub..sub + Q6_SUB]
            .iter_mut()
            .zip(&x[sub..sub + Q6_SUB])
        {
            *q = (round_half_away(v * id).clamp(Q6_LEVELS.0, Q6_LEVELS.1) + 32.0) as u8;
        }
    }
}

/// Every level (0..=63) of a Q6_K super-block's bytes, in element order.
pub fn q6_levels(block: &[u8]) -> [u8; QK_K] {
    let mut q = [0u8; QK_K];
    let (ql, qh) = (&block[..128], &block[128..192]);
    for ((levels, ql), qh) in q
        .chunks_exact_mut(128)
        .zip(ql.chunks_exact(64))
        .zip(qh.chunks_exact(32))
    {
        for (k, run) in levels.chunks_exact_mut(32).enumerate() {
            let low = &ql[32 * (k % 2)..32 * (k % 2) + 32];
            for ((level, &byte), &high) in run.iter_mut().zip(low).zip(qh) {
                let nibble = if k < 2 { byte & 0x0f } else { byte >> 4 };
                *level = nibble | (((high >> (2 * k)) & 3) << 4);
            }
        }
    }
    q
}

/// Each sub-block's scale puts its largest magnitude on level −32 (as Q4_0
/// does with −8); `d` puts the largest of those on −128 steps, and the
/// sub-scales are rounded against the stored `d`, capped at 127.
fn q6_scales(x: &[f32]) -> Q6Block {
    q6_scales_of(std::array::from_fn(|j| {
        signed_max(&x[Q6_SUB * j..Q6_SUB * (j + 1)])
    }))
}

/// [`q6_scales`] from each sub-block's first element of largest magnitude
/// (0 for a sub-block of zeros).
pub(crate) fn q6_scales_of(maxima: [f32; Q6_SUBS]) -> Q6Block {
    let scale = maxima.map(|max| max / Q6_LEVELS.0);
    let d = stored(signed_max(&scale) / -128.0);
    let id = inverse_scale(d);
    Q6Block {
        d,
        sc: scale.map(|s| round_half_away(s * id).clamp(-128.0, 127.0) as i8),
        q: [0; QK_K],
    }
}

/// Q6_K, round to nearest: one super-block of 256 values.
pub fn q6_k_nearest(x: &[f32], out: &mut [u8]) {
    let mut block = q6_scales(x);
    for j in 0..Q6_SUBS {
        block.round_sub(x, j);
    }
    block.pack(out);
}

/// Q6_K, stochastic: nearest rounding's scales, then q = ⌊x·id + u⌋ in
/// −32..=31.
pub fn q6_k_stochastic(x: &[f32], out: &mut [u8], seed: u64, first: u64) {
    let mut block = q6_scales(x);
    for j in 0..Q6_SUBS {
        let id = inverse_scale(block.sub_scale(j));
        let sub = Q6_SUB * j;
        for (i, (q, &v)) in block.q[sub..sub + Q6_SUB]
            .iter_mut()
            .zip(&x[sub..sub + Q6_SUB])
            .enumerate()
        {
            let u = rng::uniform(seed, first + (sub + i) as u64);
            let level = floor_clamped(v * id + u, Q6_LEVELS.0, Q6_LEVELS.1);
            *q = (level + 32) as u8;
        }
    }
    block.pack(out);
}

/// Dequantizes one Q6_K super-block: x = (d·sc)·(q − 32).
pub fn q6_k_dequantize(block: &[u8], out: &mut [f32]) {
    let d = f16_at(&block[208..210]);
    let levels = q6_levels(block);
    for ((y, q), &sc) in out
        .chunks_exact_mut(Q6_SUB)
        .zip(levels.chunks_exact(Q6_SUB))
        .zip(&block[192..208])
    {
        let scale = d * f32::from(sc as i8);
        for (y, &q) in y.iter_mut().zip(q) {
            *y = scale * f32::from(q as i8 - 32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(f: impl Fn(usize) -> f32) -> Vec<f32> {
        (0..QK_K).map(f).collect()
    }

    #[test]
    fn scales_pack_as_get_scale_min_k4_reads_them() {
        let sc = [1, 63, 17, 40, 33, 62, 5, 48];
        let m = [63, 0, 21, 7, 59, 16, 32, 47];
        let packed = pack_scales(&sc, &m);
        for j in 0..AFFINE_SUBS {
            assert_eq!(scale_min(&packed, j), (sc[j], m[j]), "sub-block {j}");
        }
        // Sub-block 4's low bits share byte 8; its top bits sit in bytes 0 and 4.
        assert_eq!(packed[8], (33 & 0x0f) | ((59 & 0x0f) << 4));
        assert_eq!(packed[0] >> 6, 33 >> 4);
        assert_eq!(packed[4] >> 6, 59 >> 4);
    }

    #[test]
    fn levels_land_where_ggml_puts_them() {
        let mut block = AffineBlock {
            d: 1.0,
            dmin: 0.0,
            sc: [1; AFFINE_SUBS],
            m: [0; AFFINE_SUBS],
            q: [0; QK_K],
        };
        for (e, q) in block.q.iter_mut().enumerate() {
            *q = (e * 7 % 32) as u8;
        }
        let mut q5 = [0u8; 176];
        block.pack::<Q5K>(&mut q5);
        let mut q4 = [0u8; 144];
        let q4_levels = block.q.map(|q| q & 0x0f);
        AffineBlock {
            q: q4_levels,
            ..block
        }
        .pack::<Q4K>(&mut q4);
        assert_eq!(Q5K::unpack_levels(&q5), block.q, "Q5_K");
        assert_eq!(Q4K::unpack_levels(&q4), q4_levels, "Q4_K");
        // Element 32 is the high nibble of byte 0 of the quants.
        assert_eq!(q4[16] >> 4, q4_levels[32]);
        // Element 33's fifth bit is bit 1 of qh[1].
        assert_eq!((q5[16 + 1] >> 1) & 1, block.q[33] >> 4);

        let mut q6 = Q6Block {
            d: 1.0,
            sc: [1; Q6_SUBS],
            q: [0; QK_K],
        };
        for (e, q) in q6.q.iter_mut().enumerate() {
            *q = (e * 11 % 64) as u8;
        }
        let mut bytes = [0u8; 210];
        q6.pack(&mut bytes);
        assert_eq!(q6_levels(&bytes), q6.q, "Q6_K");
        // Element 64 is the high nibble of ql[0]; element 96's top bits are bits 6-7 of qh[0].
        assert_eq!(bytes[0] >> 4, q6.q[64] & 0x0f);
        assert_eq!(bytes[128] >> 6, q6.q[96] >> 4);
    }

    #[test]
    fn nearest_round_trips_within_a_step() {
        // Sub-block ranges grow eightfold across the super-block, so the
        // 6-bit (8-bit) rounding of the small sub-blocks' scales counts.
        let x = ramp(|i| ((i as f32) * 0.37).sin() * (1.0 + (i / 32) as f32));
        let range = |v: &[f32]| {
            let (lo, hi) = super::super::scalar::min_max(v);
            hi - lo.min(0.0)
        };
        let whole = range(&x);
        // (format, its bound: `own` of a sub-block's range, `shared` of the
        // super-block's) — half a step, or a whole one where Q6_K clips at
        // +31, plus half a step of d (dmin) times the top level.
        let check = |deq: &[f32], size: usize, own: f32, shared: f32, name: &str| {
            for (sub, (xs, ys)) in x.chunks(size).zip(deq.chunks(size)).enumerate() {
                let bound = own * range(xs) + shared * whole;
                for (a, b) in xs.iter().zip(ys) {
                    assert!((a - b).abs() <= bound, "{name} sub-block {sub}: {a} -> {b}");
                }
            }
        };
        let mut y = vec![0.0f32; QK_K];
        let mut q4 = [0u8; 144];
        affine_nearest::<Q4K>(&x, &mut q4);
        affine_dequantize::<Q4K>(&q4, &mut y);
        check(&y, AFFINE_SUB, 0.5 / 15.0, 2.2 / 126.0, "Q4_K");
        let mut q5 = [0u8; 176];
        affine_nearest::<Q5K>(&x, &mut q5);
        affine_dequantize::<Q5K>(&q5, &mut y);
        check(&y, AFFINE_SUB, 0.5 / 31.0, 2.2 / 126.0, "Q5_K");
        let mut q6 = [0u8; 210];
        q6_k_nearest(&x, &mut q6);
        q6_k_dequantize(&q6, &mut y);
        check(&y, Q6_SUB, 1.0 / 32.0, 1.1 / 256.0, "Q6_K");
    }

    #[test]
    fn a_known_q4_k_super_block() {
        // Sub-block j holds 0..=15 times (j + 1) less 8 (j + 1): its scale is
        // j + 1 and its minimum 8 (j + 1), so d = 8/63 and dmin = 64/63, and
        // the largest scale and minimum take 63 steps.
        let x = ramp(|e| ((e % 16) as f32 - 8.0) * (e / 32 + 1) as f32);
        let mut out = [0u8; 144];
        affine_nearest::<Q4K>(&x, &mut out);
        assert_eq!(f16_at(&out[0..2]), stored(8.0 / 63.0));
        assert_eq!(f16_at(&out[2..4]), stored(64.0 / 63.0));
        let (sc, m) = scale_min(&out[4..16], 7);
        assert_eq!((sc, m), (63, 63));
        let (sc, m) = scale_min(&out[4..16], 0);
        assert_eq!((sc, m), (8, 8)); // 1/(8/63) = 7.875 -> 8
        let levels = Q4K::unpack_levels(&out);
        for (e, &level) in levels.iter().enumerate() {
            assert_eq!(level, (e % 16) as u8, "element {e}");
        }
    }

    #[test]
    fn zero_and_constant_super_blocks() {
        let mut y = vec![1.0f32; QK_K];
        for x in [
            vec![0.0f32; QK_K],
            vec![-0.0f32; QK_K],
            vec![f32::from_bits(5); QK_K],
        ] {
            let mut q4 = [0xffu8; 144];
            affine_nearest::<Q4K>(&x, &mut q4);
            affine_dequantize::<Q4K>(&q4, &mut y);
            assert!(y.iter().all(|&v| v == 0.0), "Q4_K");
            let mut q6 = [0xffu8; 210];
            q6_k_nearest(&x, &mut q6);
            q6_k_dequantize(&q6, &mut y);
            assert!(y.iter().all(|&v| v == 0.0), "Q6_K");
        }
        // A negative constant is all minimum; a positive one all top level.
        for c in [-0.75f32, 0.75] {
            let x = vec![c; QK_K];
            let mut q5 = [0u8; 176];
            affine_nearest::<Q5K>(&x, &mut q5);
            affine_dequantize::<Q5K>(&q5, &mut y);
            assert!(
                y.iter().all(|&v| (v - c).abs() < 1e-3),
                "Q5_K {c}: {}",
                y[0]
            );
        }
    }
}
