//! The arithmetic of one Adam(W) step, written so that the CPU and the
//! Vulkan kernels (shaders/adam*.comp) give the same bits: every value is an
//! f32 rounded to nearest even after each operation, in the order written
//! here, with no fused multiply-add; subnormals are kept.
//!
//! Per step t (counted from 1, the steps actually applied):
//! `k1 = 1 / (1 − β1^t)`, `r2 = 1 / √(1 − β2^t)`, where β^t is
//! [`power`] (square-and-multiply, not `powi`, whose method is the
//! platform's). Per element, from (p, g, m, v):
//!
//! ```text
//! m' = β1·m + (1−β1)·g
//! v' = β2·v + ((1−β2)·g)·g
//! u  = m' / (√v' · r2 + ε)
//! p' = p − lr · (k1·u + λ·p)
//! ```
//!
//! which is Adam with the bias corrections applied as PyTorch applies them
//! (`√v̂ = √v' / √(1 − β2^t)`), and decoupled weight decay λ (AdamW).

use super::adam::AdamSettings;

/// β^t by square-and-multiply over the bits of t, lowest first: the
/// sequence of f32 products the device repeats.
pub fn power(beta: f32, t: u32) -> f32 {
    let mut result = 1.0f32;
    let mut square = beta;
    let mut bits = t;
    while bits != 0 {
        if bits & 1 != 0 {
            result *= square;
        }
        square *= square;
        bits >>= 1;
    }
    result
}

/// The bias-correction factors of step `t` (>= 1): (k1, r2).
pub fn bias_corrections(settings: &AdamSettings, t: u32) -> (f32, f32) {
    let c1 = 1.0 - power(settings.beta1, t);
    let c2 = 1.0 - power(settings.beta2, t);
    (1.0 / c1, 1.0 / c2.sqrt())
}

/// Everything one step's element update reads besides the element.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepScalars {
    pub lr: f32,
    pub beta1: f32,
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 1 / (1 − β1^t).
    pub k1: f32,
    /// 1 / √(1 − β2^t).
    pub r2: f32,
}

impl StepScalars {
    /// The scalars of step `t` (>= 1) at learning rate `lr`.
    pub fn new(settings: &AdamSettings, t: u32, lr: f32) -> StepScalars {
        let (k1, r2) = bias_corrections(settings, t);
        StepScalars {
            lr,
            beta1: settings.beta1,
            one_minus_beta1: 1.0 - settings.beta1,
            beta2: settings.beta2,
            one_minus_beta2: 1.0 - settings.beta2,
            eps: settings.eps,
            weight_decay: settings.weight_decay,
            k1,
            r2,
        }
    }
}

/// One element's step: (p, g, m, v) -> (p', m', v'), in the order of the
/// module's formula (the shaders' `adam_update` repeats it operation for
/// operation).
#[inline]
pub fn update(s: &StepScalars, p: f32, g: f32, m: f32, v: f32) -> (f32, f32, f32) {
    let m = s.beta1 * m + s.one_minus_beta1 * g;
    let v = s.beta2 * v + s.one_minus_beta2 * g * g;
    let u = m / (v.sqrt() * s.r2 + s.eps);
    let p = p - s.lr * (s.k1 * u + s.weight_decay * p);
    (p, m, v)
}

/// The decoded first moment of each code (indexed by the code's byte), as a
/// fraction of the block's absmax: r·|r| with r = q/127.
pub const SIGNED_DECODE: [f32; 256] = signed_decode_table();
/// The decoded second moment of each code, as a fraction of the block's
/// max: (r·r)·(r·r) with r = q/255.
pub const UNSIGNED_DECODE: [f32; 256] = unsigned_decode_table();

const fn signed_decode_table() -> [f32; 256] {
    let mut table = [0.0f32; 256];
    let mut byte = 0;
    while byte < 256 {
        let r = (byte as u8 as i8) as f32 / 127.0;
        table[byte] = r * r.abs();
        byte += 1;
    }
    table
}

const fn unsigned_decode_table() -> [f32; 256] {
    let mut table = [0.0f32; 256];
    let mut byte = 0;
    while byte < 256 {
        let r = byte as f32 / 255.0;
        let r2 = r * r;
        table[byte] = r2 * r2;
        byte += 1;
    }
    table
}

/// The magnitude of encode_signed's code of t = |m|·(1/absmax) before
/// saturation: round(127·√t).
fn signed_magnitude(t: f32) -> f32 {
    (127.0 * t.sqrt()).round()
}

/// encode_unsigned's code of t = v·(1/max) before saturation:
/// round(255·√√t).
fn unsigned_magnitude(t: f32) -> f32 {
    (255.0 * t.sqrt().sqrt()).round()
}

/// Words of [`code_bounds`]'s table for the first moment's codes.
pub const SIGNED_BOUNDS: usize = 130;
/// Words of [`code_bounds`]'s table for the second moment's codes.
pub const UNSIGNED_BOUNDS: usize = 257;

/// The codes' rounding boundaries on t (the product of a moment's
/// magnitude and its block's inverse), as f32 bits: entry j (1 ≤ j ≤ 128,
/// or 255 for the second moment) is the least finite t ≥ 0 whose
/// unsaturated code is j or more (+∞ where none is), entry 0 is 0 and the
/// last +∞. The code is monotone in t, so for finite t ≥ 0 it is the j with
/// entry j ≤ t < entry j + 1 (then saturated): the 8-bit kernels find it
/// from the FPU's estimate and two comparisons on the bits.
pub fn code_bounds() -> ([u32; SIGNED_BOUNDS], [u32; UNSIGNED_BOUNDS]) {
    let mut signed = [0u32; SIGNED_BOUNDS];
    let mut unsigned = [0u32; UNSIGNED_BOUNDS];
    fill_bounds(&mut signed, signed_magnitude);
    fill_bounds(&mut unsigned, unsigned_magnitude);
    (signed, unsigned)
}

/// Fills `bounds` (see [`code_bounds`]) for the monotone `magnitude`.
fn fill_bounds(bounds: &mut [u32], magnitude: fn(f32) -> f32) {
    const INFINITY: u32 = 0x7f80_0000;
    let last = bounds.len() - 1;
    bounds[last] = INFINITY;
    for (j, bound) in bounds.iter_mut().enumerate().take(last).skip(1) {
        // The least bits in [0, INFINITY] whose magnitude reaches j.
        let (mut lo, mut hi) = (0u32, INFINITY);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if magnitude(f32::from_bits(mid)) >= j as f32 {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        *bound = lo;
    }
}

/// Decodes a block of first-moment codes with scale `absmax`.
pub fn decode_signed(codes: &[i8], absmax: f32, out: &mut [f32]) {
    for (o, &q) in out.iter_mut().zip(codes) {
        *o = absmax * SIGNED_DECODE[q as u8 as usize];
    }
}

/// Encodes a block of first moments: returns the scale (the largest |m|,
/// NaN ignored) and writes q = round(127·√(|m|·(1/absmax))) with m's sign.
pub fn encode_signed(values: &[f32], codes: &mut [i8]) -> f32 {
    let absmax = values.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let inverse = if absmax > 0.0 { 1.0 / absmax } else { 0.0 };
    for (q, &v) in codes.iter_mut().zip(values) {
        *q = (127.0 * (v.abs() * inverse).sqrt()).round().copysign(v) as i8;
    }
    absmax
}

/// Decodes a block of second-moment codes with scale `max`.
pub fn decode_unsigned(codes: &[u8], max: f32, out: &mut [f32]) {
    for (o, &q) in out.iter_mut().zip(codes) {
        *o = max * UNSIGNED_DECODE[q as usize];
    }
}

/// Encodes a block of second moments: returns the scale (the largest v, NaN
/// ignored) and writes q = round(255·(v·(1/max))^¼) (two square roots).
pub fn encode_unsigned(values: &[f32], codes: &mut [u8]) -> f32 {
    let max = values.iter().fold(0.0f32, |a, &v| a.max(v));
    let inverse = if max > 0.0 { 1.0 / max } else { 0.0 };
    for (q, &v) in codes.iter_mut().zip(values) {
        *q = (255.0 * (v * inverse).sqrt().sqrt()).round() as u8;
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_multiplies_the_squares_of_the_set_bits() {
        assert_eq!(power(0.9, 0), 1.0);
        assert_eq!(power(0.9, 1), 0.9);
        assert_eq!(power(0.5, 10), 1.0 / 1024.0);
        // 13 = 1 + 4 + 8: b·b⁴·b⁸ with b⁴ = (b²)², b⁸ = (b⁴)².
        let b = 0.999f32;
        let b4 = (b * b) * (b * b);
        let b8 = b4 * b4;
        assert_eq!(power(b, 13), (b * b4) * b8);
        assert_eq!(power(0.0, 3), 0.0);
        // Far past any training run, the power underflows and the
        // correction is exactly 1.
        assert_eq!(power(0.9, u32::MAX), 0.0);
    }

    #[test]
    fn bias_corrections_are_those_of_adam() {
        let s = AdamSettings::default();
        let (k1, r2) = bias_corrections(&s, 1);
        assert_eq!(k1, 1.0 / (1.0 - 0.9f32));
        assert_eq!(r2, 1.0 / (1.0 - 0.999f32).sqrt());
        let (k1, r2) = bias_corrections(&s, 100_000);
        assert_eq!((k1, r2), (1.0, 1.0));
    }

    /// The code found between two bounds is the encoders' code, at and
    /// around every bound and over a spread of t (subnormal, 1, above 1).
    #[test]
    fn code_bounds_give_the_encoders_codes() {
        let (signed, unsigned) = code_bounds();
        let code = |bounds: &[u32], t: f32| {
            let bits = t.to_bits();
            (0..bounds.len() - 1)
                .find(|&j| bounds[j] <= bits && bits < bounds[j + 1])
                .unwrap() as f32
        };
        let mut ts: Vec<f32> = (0..20_000).map(|i| i as f32 / 16_000.0).collect();
        ts.extend([f32::from_bits(1), 1e-38, 1.0, 1.004, 1.02, 3.0, f32::MAX]);
        for &b in signed.iter().chain(&unsigned) {
            ts.extend([b.saturating_sub(1), b, b + 1].map(f32::from_bits));
        }
        for t in ts.into_iter().filter(|t| t.is_finite()) {
            assert_eq!(
                code(&signed, t).min(127.0),
                signed_magnitude(t).min(127.0),
                "{t:e}"
            );
            assert_eq!(
                code(&signed, t).min(128.0),
                signed_magnitude(t).min(128.0),
                "{t:e}"
            );
            assert_eq!(
                code(&unsigned, t).min(255.0),
                unsigned_magnitude(t).min(255.0),
                "{t:e}"
            );
        }
    }

    #[test]
    fn decode_tables_follow_the_companding_rules() {
        assert_eq!(SIGNED_DECODE[0], 0.0);
        assert_eq!(SIGNED_DECODE[127], 1.0);
        let r = 64.0f32 / 127.0;
        assert_eq!(SIGNED_DECODE[64], r * r);
        assert_eq!(SIGNED_DECODE[(-64i8) as u8 as usize], -(r * r));
        let r = -128.0f32 / 127.0;
        assert_eq!(SIGNED_DECODE[0x80], r * r.abs());
        assert_eq!(UNSIGNED_DECODE[255], 1.0);
        let r = 128.0f32 / 255.0;
        assert_eq!(UNSIGNED_DECODE[128], (r * r) * (r * r));
    }
}
