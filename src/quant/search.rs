//! Error-minimising rounding: for each block, try a grid of scales (and, for
//! Q4_1, offsets), refit each by weighted least squares for the quants it gives,
//! round the result to what f16 stores, and keep the candidate with the lowest
//! weighted squared error of the *stored* block. ggml's nearest-rounding block
//! is always one of the candidates, so no block is ever worse than nearest.

use super::scalar::{self, QK, f16_bits, f16_value};

/// What a block costs: Σ w·(x − x̂)² of its stored form.
pub(super) fn weighted_error(x: &[f32], w: &[f32], restored: &[f32]) -> f64 {
    x.iter()
        .zip(restored)
        .zip(w)
        .map(|((&a, &b), &w)| f64::from(w) * (f64::from(a) - f64::from(b)).powi(2))
        .sum()
}

/// Where the block `other` (its first `other.len()` bytes) leaves no more
/// weighted error than the block in `out`, compared exactly in f64, copies
/// it over `out`'s and says so: the fast searches' decision between two
/// scores too close for their f32 sums.
pub(super) fn keep_the_better(
    x: &[f32; QK],
    w: &[f32; QK],
    out: &mut [u8],
    other: &[u8],
    dequantize: fn(&[u8], &mut [f32]),
) -> bool {
    let (mut y, mut y_other) = ([0.0f32; QK], [0.0f32; QK]);
    dequantize(out, &mut y);
    dequantize(other, &mut y_other);
    let better = weighted_error(x, w, &y_other) <= weighted_error(x, w, &y);
    if better {
        out[..other.len()].copy_from_slice(other);
    }
    better
}

/// f16-rounds a scale.
fn stored(v: f32) -> f32 {
    f16_value(f16_bits(v))
}

/// Keeps the candidate block with the lowest error.
struct Best<const B: usize> {
    bytes: [u8; B],
    error: f64,
}

impl<const B: usize> Best<B> {
    fn offer(
        &mut self,
        x: &[f32],
        w: &[f32],
        candidate: &[u8; B],
        dequantize: fn(&[u8], &mut [f32]),
    ) {
        let mut restored = [0.0f32; QK];
        dequantize(candidate, &mut restored);
        let error = weighted_error(x, w, &restored);
        if error < self.error {
            self.error = error;
            self.bytes = *candidate;
        }
    }
}

/// Weighted least-squares scale for fixed integer levels `levels`: d = Σwxl / Σwl².
fn refit_scale(x: &[f32], w: &[f32], levels: &[f32; QK]) -> Option<f32> {
    let (mut sxl, mut sll) = (0.0f64, 0.0f64);
    for ((&v, &w), &l) in x.iter().zip(w).zip(levels) {
        sxl += f64::from(w) * f64::from(v) * f64::from(l);
        sll += f64::from(w) * f64::from(l) * f64::from(l);
    }
    (sll > 0.0).then(|| (sxl / sll) as f32)
}

/// Q8_0 with the lowest weighted error.
pub fn q8_0(x: &[f32], w: &[f32], out: &mut [u8]) {
    let mut best = Best {
        bytes: [0u8; 34],
        error: f64::INFINITY,
    };
    let mut candidate = [0u8; 34];
    scalar::q8_0_nearest(x, &mut candidate);
    best.offer(x, w, &candidate, scalar::q8_0_dequantize);
    let amax = scalar::absmax(x);
    if amax >= f32::MIN_POSITIVE {
        for step in 0..8 {
            let d = stored(amax / (127.0 - 0.5 * step as f32));
            scalar::q8_0_with_scale(x, d, &mut candidate);
            best.offer(x, w, &candidate, scalar::q8_0_dequantize);
            let levels: [f32; QK] = std::array::from_fn(|j| candidate[2 + j] as i8 as f32);
            if let Some(refit) = refit_scale(x, w, &levels) {
                scalar::q8_0_with_scale(x, stored(refit), &mut candidate);
                best.offer(x, w, &candidate, scalar::q8_0_dequantize);
            }
        }
    }
    out[..34].copy_from_slice(&best.bytes);
}

/// A format with a zero point and a signed scale (Q4_0, Q5_0): its levels
/// run from −ZERO to ZERO − 1, and nearest rounding puts the block's largest
/// magnitude on −ZERO. Constants, so each format's search calls its kernels
/// directly.
trait Symmetric {
    const ZERO: f32;
    const NEAREST: fn(&[f32], &mut [u8]);
    const WITH_SCALE: fn(&[f32], f32, &mut [u8]);
    const DEQUANTIZE: fn(&[u8], &mut [f32]);
}

struct Q4_0;
impl Symmetric for Q4_0 {
    const ZERO: f32 = 8.0;
    const NEAREST: fn(&[f32], &mut [u8]) = scalar::q4_0_nearest;
    const WITH_SCALE: fn(&[f32], f32, &mut [u8]) = scalar::q4_0_with_scale;
    const DEQUANTIZE: fn(&[u8], &mut [f32]) = scalar::q4_0_dequantize;
}

struct Q5_0;
impl Symmetric for Q5_0 {
    const ZERO: f32 = 16.0;
    const NEAREST: fn(&[f32], &mut [u8]) = scalar::q5_0_nearest;
    const WITH_SCALE: fn(&[f32], f32, &mut [u8]) = scalar::q5_0_with_scale;
    const DEQUANTIZE: fn(&[u8], &mut [f32]) = scalar::q5_0_dequantize;
}

/// The `F` block (`B` bytes) with the lowest weighted error.
fn symmetric<const B: usize, F: Symmetric>(x: &[f32], w: &[f32], out: &mut [u8]) {
    let mut best = Best {
        bytes: [0u8; B],
        error: f64::INFINITY,
    };
    let mut candidate = [0u8; B];
    F::NEAREST(x, &mut candidate);
    best.offer(x, w, &candidate, F::DEQUANTIZE);
    let max = scalar::signed_max(x);
    if max.abs() < f32::MIN_POSITIVE {
        out[..B].copy_from_slice(&best.bytes);
        return;
    }
    let mut levels = [0.0f32; QK];
    // The largest element on the −ZERO side (ggml's choice) or on the
    // ZERO − 1 side, with divisors from 1.5 below to 1.75 above those ends.
    for (sign, first_divisor) in [(-1.0f32, F::ZERO - 1.5), (1.0, F::ZERO - 2.5)] {
        for k in 0..14 {
            let d = stored(max / (sign * (first_divisor + 0.25 * k as f32)));
            F::WITH_SCALE(x, d, &mut candidate);
            best.offer(x, w, &candidate, F::DEQUANTIZE);
            let mut restored = [0.0f32; QK];
            F::DEQUANTIZE(&candidate, &mut restored);
            for (l, &r) in levels.iter_mut().zip(&restored) {
                *l = if d != 0.0 { (r / d).round() } else { 0.0 };
            }
            if let Some(refit) = refit_scale(x, w, &levels) {
                F::WITH_SCALE(x, stored(refit), &mut candidate);
                best.offer(x, w, &candidate, F::DEQUANTIZE);
            }
        }
    }
    out[..B].copy_from_slice(&best.bytes);
}

/// Q4_0 with the lowest weighted error.
pub fn q4_0(x: &[f32], w: &[f32], out: &mut [u8]) {
    symmetric::<18, Q4_0>(x, w, out);
}

/// Q5_0 with the lowest weighted error.
pub fn q5_0(x: &[f32], w: &[f32], out: &mut [u8]) {
    symmetric::<22, Q5_0>(x, w, out);
}

/// IQ4_NL with the lowest weighted error: ggml's reference block, then
/// scales that put the block's largest magnitude at or near either end level
/// (−127, as ggml's search, or 113), each refitted for the levels it gives.
pub fn iq4_nl(x: &[f32], w: &[f32], out: &mut [u8]) {
    let mut best = Best {
        bytes: [0u8; 18],
        error: f64::INFINITY,
    };
    let mut candidate = [0u8; 18];
    scalar::iq4_nl_nearest(x, &mut candidate);
    best.offer(x, w, &candidate, scalar::iq4_nl_dequantize);
    let max = scalar::signed_max(x);
    if max.abs() < scalar::IQ4_NL_EPS {
        out[..18].copy_from_slice(&best.bytes);
        return;
    }
    let mut levels = [0.0f32; QK];
    for end in [-127.0f32, 113.0] {
        // From 7 levels' worth beyond the end to 7 inside it, in halves.
        for k in -14..=14 {
            let d = stored(max / (end + 0.5 * k as f32));
            scalar::iq4_nl_with_scale(x, d, &mut candidate);
            best.offer(x, w, &candidate, scalar::iq4_nl_dequantize);
            for (j, l) in levels.iter_mut().enumerate() {
                *l = scalar::iq4_nl_level(scalar::iq4_nl_index_of(&candidate, j));
            }
            if let Some(refit) = refit_scale(x, w, &levels) {
                scalar::iq4_nl_with_scale(x, stored(refit), &mut candidate);
                best.offer(x, w, &candidate, scalar::iq4_nl_dequantize);
            }
        }
    }
    out[..18].copy_from_slice(&best.bytes);
}

/// Weighted least squares for x ≈ d·q + m with fixed levels q.
fn refit_scale_offset(x: &[f32], w: &[f32], levels: &[f32; QK]) -> Option<(f32, f32)> {
    let (mut sw, mut sq, mut sqq, mut sx, mut sxq) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
    for ((&v, &w), &q) in x.iter().zip(w).zip(levels) {
        let (v, w, q) = (f64::from(v), f64::from(w), f64::from(q));
        sw += w;
        sq += w * q;
        sqq += w * q * q;
        sx += w * v;
        sxq += w * v * q;
    }
    let det = sw * sqq - sq * sq;
    if det.abs() < 1e-30 {
        return None;
    }
    let d = (sw * sxq - sq * sx) / det;
    let m = (sqq * sx - sq * sxq) / det;
    (d > 0.0).then_some((d as f32, m as f32))
}

/// Q4_1 with the lowest weighted error.
pub fn q4_1(x: &[f32], w: &[f32], out: &mut [u8]) {
    let mut best = Best {
        bytes: [0u8; 20],
        error: f64::INFINITY,
    };
    let mut candidate = [0u8; 20];
    scalar::q4_1_nearest(x, &mut candidate);
    best.offer(x, w, &candidate, scalar::q4_1_dequantize);
    let (min, max) = scalar::min_max(x);
    let range = max - min;
    if range < f32::MIN_POSITIVE {
        out[..20].copy_from_slice(&best.bytes);
        return;
    }
    let mut levels = [0.0f32; QK];
    for k in 0..16 {
        // Shrink the range from either end: the extremes then clip, the bulk gains resolution.
        let shrink = range * 0.02 * k as f32;
        for (lo, hi) in [
            (min + shrink, max),
            (min, max - shrink),
            (min + shrink / 2.0, max - shrink / 2.0),
        ] {
            let (d, m) = (stored((hi - lo) / 15.0), stored(lo));
            scalar::q4_1_with_scale(x, d, m, &mut candidate);
            best.offer(x, w, &candidate, scalar::q4_1_dequantize);
            for (j, l) in levels.iter_mut().enumerate() {
                let byte = candidate[4 + j % (QK / 2)];
                *l = if j < QK / 2 { byte & 0x0f } else { byte >> 4 } as f32;
            }
            if let Some((d, m)) = refit_scale_offset(x, w, &levels) {
                scalar::q4_1_with_scale(x, stored(d), stored(m), &mut candidate);
                best.offer(x, w, &candidate, scalar::q4_1_dequantize);
            }
        }
    }
    // A zero offset is stored with the sign nearest rounding gives it (the
    // sign of the block's first zero), whatever arithmetic produced it.
    if min == 0.0 && f16_value(u16::from_le_bytes([best.bytes[2], best.bytes[3]])) == 0.0 {
        best.bytes[2..4].copy_from_slice(&scalar::f16_bits(min).to_le_bytes());
    }
    out[..20].copy_from_slice(&best.bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(seed: u32) -> [f32; QK] {
        let mut s = seed;
        std::array::from_fn(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((s >> 8) as f32 / 16_777_216.0 - 0.5) * 2.0
        })
    }

    fn error_of(x: &[f32], w: &[f32], bytes: &[u8], deq: fn(&[u8], &mut [f32])) -> f64 {
        let mut y = [0.0f32; QK];
        deq(bytes, &mut y);
        weighted_error(x, w, &y)
    }

    /// Nearest rounding, the search and the dequantizer of a format.
    type Kernels = (
        fn(&[f32], &mut [u8]),
        fn(&[f32], &[f32], &mut [u8]),
        fn(&[u8], &mut [f32]),
    );

    #[test]
    fn never_worse_than_nearest_and_better_in_total() {
        let ones = [1.0f32; QK];
        let ramp: [f32; QK] = std::array::from_fn(|j| 1.0 + (j % 7) as f32);
        // (name, kernels, the total error the search reaches over nearest
        // rounding's with equal weights and with the ramp, as measured when
        // written: the search is deterministic, so a weakened step fails,
        // and a better one passes)
        let formats: [(&str, Kernels, [f64; 2]); 5] = [
            (
                "Q8_0",
                (scalar::q8_0_nearest, q8_0, scalar::q8_0_dequantize),
                [0.7809279315767711, 0.7520222662751926],
            ),
            (
                "Q4_0",
                (scalar::q4_0_nearest, q4_0, scalar::q4_0_dequantize),
                [0.826449102787711, 0.8016361197543076],
            ),
            (
                "Q4_1",
                (scalar::q4_1_nearest, q4_1, scalar::q4_1_dequantize),
                [0.7754687786479059, 0.7312105883224729],
            ),
            (
                "Q5_0",
                (scalar::q5_0_nearest, q5_0, scalar::q5_0_dequantize),
                [0.8140245796595758, 0.795437885374429],
            ),
            (
                "IQ4_NL",
                (scalar::iq4_nl_nearest, iq4_nl, scalar::iq4_nl_dequantize),
                [0.8522607296623828, 0.8226692138704289],
            ),
        ];
        for (name, (nearest, search, dequantize), most) in formats {
            for (w, most) in [ones, ramp].iter().zip(most) {
                let (mut near_total, mut best_total) = (0.0, 0.0);
                for seed in 0..200 {
                    let x = block(seed);
                    let (mut near, mut best) = ([0u8; 34], [0u8; 34]);
                    nearest(&x, &mut near);
                    search(&x, w, &mut best);
                    let (e_near, e_best) = (
                        error_of(&x, w, &near, dequantize),
                        error_of(&x, w, &best, dequantize),
                    );
                    assert!(e_best <= e_near, "{name} block {seed}");
                    near_total += e_near;
                    best_total += e_best;
                }
                let ratio = best_total / near_total;
                assert!(
                    ratio <= most * (1.0 + 1e-9),
                    "{name}: {ratio} of nearest's error, at most {most}"
                );
            }
        }
    }

    #[test]
    fn importance_steers_the_error_to_unimportant_columns() {
        let x = block(7);
        let mut w = [1.0f32; QK];
        for v in w.iter_mut().take(8) {
            *v = 100.0;
        }
        let (mut plain, mut weighted) = ([0u8; 20], [0u8; 20]);
        q4_1(&x, &[1.0; QK], &mut plain);
        q4_1(&x, &w, &mut weighted);
        let mut y = [0.0f32; QK];
        scalar::q4_1_dequantize(&plain, &mut y);
        let e_plain = weighted_error(&x, &w, &y);
        scalar::q4_1_dequantize(&weighted, &mut y);
        let e_weighted = weighted_error(&x, &w, &y);
        // Weighing the first 8 columns 100 times must move the choice: the
        // unweighted best spreads the error evenly, so a search that ignored
        // the importance would tie here.
        assert!(e_weighted < e_plain, "{e_weighted} vs unweighted {e_plain}");
    }
}
