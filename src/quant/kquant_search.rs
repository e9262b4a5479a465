//! Error-minimising rounding of the K-quants: per super-block, the stored
//! block with the least weighted squared error Σ w·(x − x̂)² this search
//! finds, nearest rounding's block included (so no super-block is ever
//! worse than nearest).
//!
//! Three steps, for Q4_K and Q5_K (Q6_K alike, with one signed scale per
//! sub-block of 16):
//! 1. Each sub-block's best real scale and minimum: a grid of scales around
//!    its range's (`(NMAX + r)/range`, r from −0.9 to 0.7) times four phases
//!    of the level grid, each refit by weighted least squares for the levels
//!    it gives, then up to three rounds of re-rounding and refitting.
//! 2. The super-block's f16 `d` and `dmin` and the 6-bit sub-scales: the
//!    error a sub-block gains when its scale and minimum move by (δs, δm) is,
//!    for fixed levels, the quadratic form a·δs² − 2b·δs·δm + c·δm² (a = Σwq²,
//!    b = Σwq, c = Σw), so a grid of (d, dmin) pairs is scored through it,
//!    each sub-scale rounded down or up, and the best pair refit by least
//!    squares on the same form.
//! 3. Each sub-block's 6-bit scale and minimum within one step of that
//!    choice, scored by the exact error of the re-rounded sub-block.

use super::kquant::{
    AFFINE_SUB, AFFINE_SUBS, Affine, AffineBlock, Q6_LEVELS, Q6_SUB, Q6_SUBS, Q6Block,
    SUB_SCALE_MAX, affine_dequantize, affine_nearest, half_up, q6_k_dequantize, q6_k_nearest,
    stored,
};
use super::scalar::{round_half_away, signed_max};
use super::search::weighted_error;
use crate::format::QK_K;

/// Whether `v` is above zero (false for NaN).
fn positive(v: f64) -> bool {
    v > 0.0
}

/// The weighted sums of a sub-block that every candidate shares.
struct Moments {
    w: f64,
    wx: f64,
    wxx: f64,
}

impl Moments {
    fn of(x: &[f32], w: &[f32]) -> Moments {
        let mut m = Moments {
            w: 0.0,
            wx: 0.0,
            wxx: 0.0,
        };
        for (&v, &w) in x.iter().zip(w) {
            let (v, w) = (f64::from(v), f64::from(w));
            m.w += w;
            m.wx += w * v;
            m.wxx += w * v * v;
        }
        m
    }
}

/// The weighted sums of a sub-block's levels: Σwq, Σwq², Σwxq.
#[derive(Clone, Copy, Default)]
struct LevelSums {
    q: f64,
    qq: f64,
    xq: f64,
}

/// The sums of the levels `level` gives each value, accumulated in f32 in
/// element order (they rank candidates; every choice is then re-scored).
#[inline(always)]
fn level_sums(x: &[f32], w: &[f32], level: impl Fn(f32) -> f32) -> LevelSums {
    let (mut q, mut qq, mut xq) = (0.0f32, 0.0f32, 0.0f32);
    for (&v, &w) in x.iter().zip(w) {
        let l = level(v);
        let wl = w * l;
        q += wl;
        qq += wl * l;
        xq += wl * v;
    }
    LevelSums {
        q: f64::from(q),
        qq: f64::from(qq),
        xq: f64::from(xq),
    }
}

// ------------------------------------------------------------ Q4_K and Q5_K

/// A sub-block's best real scale s and minimum m (x ≈ s·q − m, m ≥ 0), and
/// the curvature of its error around them for its levels.
#[derive(Clone, Copy)]
struct AffineFit {
    s: f64,
    m: f64,
    /// Σwq².
    a: f64,
    /// Σwq.
    b: f64,
    /// Σw.
    c: f64,
}

impl AffineFit {
    /// What moving the scale and minimum by (ds, dm) adds to the error.
    fn cost(&self, ds: f64, dm: f64) -> f64 {
        self.a * ds * ds - 2.0 * self.b * ds * dm + self.c * dm * dm
    }
}

/// The least-squares (s, m) of x ≈ s·q − m for fixed levels, with m ≥ 0
/// (a positive offset is not storable: it becomes 0 and s is refit alone),
/// and the error it leaves; None where the levels fix no positive scale.
fn fit_affine(mo: &Moments, l: &LevelSums) -> Option<(f64, f64, f64)> {
    let det = mo.w * l.qq - l.q * l.q;
    if !positive(det) {
        return None;
    }
    let mut s = (mo.w * l.xq - mo.wx * l.q) / det;
    let mut m = (l.q * l.xq - l.qq * mo.wx) / det;
    if m < 0.0 {
        m = 0.0;
        s = l.xq / l.qq;
    }
    if !positive(s) {
        return None;
    }
    // Σw(x − sq + m)², expanded.
    let error =
        mo.wxx - 2.0 * s * l.xq + 2.0 * m * mo.wx + s * s * l.qq - 2.0 * s * m * l.q + m * m * mo.w;
    Some((s, m, error))
}

/// Scale offsets r of the first step: (NMAX + r)/range.
const SCALE_STEPS: [f32; 9] = [-0.9, -0.7, -0.5, -0.3, -0.1, 0.1, 0.3, 0.5, 0.7];
/// Phases of the level grid tried at each scale.
const PHASES: [f32; 4] = [-0.5, -0.25, 0.0, 0.25];
/// Rounds of re-rounding and refitting the best candidate.
const REFIT_ROUNDS: usize = 3;

/// Step 1 for one sub-block.
fn fit_sub<F: Affine>(x: &[f32], w: &[f32]) -> AffineFit {
    let mo = Moments::of(x, w);
    let (mut lo, hi) = super::scalar::min_max(x);
    if lo > 0.0 {
        lo = 0.0;
    }
    let range = hi - lo;
    let start = LevelSums::default();
    let mut best = (
        f64::from(range / F::NMAX),
        -f64::from(lo),
        f64::INFINITY,
        start,
    );
    if !positive(f64::from(range)) {
        return AffineFit {
            s: 0.0,
            m: -f64::from(lo),
            a: 0.0,
            b: 0.0,
            c: mo.w,
        };
    }
    for r in SCALE_STEPS {
        let iscale = (F::NMAX + r) / range;
        for phase in PHASES {
            let l = level_sums(x, w, |v| {
                f32::from(half_up((v - lo) * iscale + phase, F::NMAX))
            });
            if let Some((s, m, e)) = fit_affine(&mo, &l) {
                if e < best.2 {
                    best = (s, m, e, l);
                }
            }
        }
    }
    for _ in 0..REFIT_ROUNDS {
        let (id, m) = (1.0 / best.0 as f32, best.1 as f32);
        let l = level_sums(x, w, |v| f32::from(half_up((v + m) * id, F::NMAX)));
        match fit_affine(&mo, &l) {
            Some((s, m, e)) if e < best.2 => best = (s, m, e, l),
            _ => break,
        }
    }
    let (s, m, error, l) = best;
    if !error.is_finite() {
        // No candidate fit (all weights zero, say): the range's scale, flat.
        return AffineFit {
            s,
            m,
            a: 0.0,
            b: 0.0,
            c: 0.0,
        };
    }
    AffineFit {
        s,
        m,
        a: l.qq,
        b: l.q,
        c: mo.w,
    }
}

/// Each sub-block's two candidate 6-bit steps and how far each moves it.
type StepPairs = [[(u8, f64); 2]; AFFINE_SUBS];

/// The two 6-bit steps around v/scale (rounded down, then up; v ≥ 0) and
/// how far each moves v, for step 2.
fn step_pair(v: f64, scale: f32) -> [(u8, f64); 2] {
    if !positive(f64::from(scale)) {
        return [(0, -v), (0, -v)];
    }
    let scale = f64::from(scale);
    // v ≥ 0: the saturating cast is the floor.
    let down = ((v / scale) as i32).clamp(0, SUB_SCALE_MAX as i32) as u8;
    let up = (down + 1).min(SUB_SCALE_MAX as u8);
    [
        (down, scale * f64::from(down) - v),
        (up, scale * f64::from(up) - v),
    ]
}

/// Step 2's score of one (d, dmin), given each sub-block's step pairs of
/// its scale against d and of its minimum against dmin: the sub-scales that
/// minimise each sub-block's quadratic cost, and their total.
fn score(
    fits: &[AffineFit; AFFINE_SUBS],
    scale_steps: &StepPairs,
    min_steps: &StepPairs,
) -> (f64, [u8; AFFINE_SUBS], [u8; AFFINE_SUBS]) {
    let (mut sc, mut m) = ([0u8; AFFINE_SUBS], [0u8; AFFINE_SUBS]);
    let mut total = 0.0;
    for (j, f) in fits.iter().enumerate() {
        let mut best = f64::INFINITY;
        for (ls, ds) in scale_steps[j] {
            for (lm, dm) in min_steps[j] {
                let cost = f.cost(ds, dm);
                if cost < best {
                    (best, sc[j], m[j]) = (cost, ls, lm);
                }
            }
        }
        total += best;
    }
    (total, sc, m)
}

/// Each sub-block's step pair of its scale (`scale` true) or minimum
/// against `by`.
fn step_pairs(fits: &[AffineFit; AFFINE_SUBS], by: f32, scale: bool) -> StepPairs {
    std::array::from_fn(|j| step_pair(if scale { fits[j].s } else { fits[j].m }, by))
}

/// Grid of step 2: d = largest/(63 − k/4) for k < 16, dmin likewise for k < 8.
const D_GRID: usize = 16;
const DMIN_GRID: usize = 8;
/// Least-squares refits of (d, dmin) after the grid.
const SUPER_REFITS: usize = 2;

/// Whether a stored super-block scale is usable (finite; f16 may overflow).
fn usable(v: f32) -> bool {
    v.is_finite() && v >= 0.0
}

/// A choice of step 2: super-block scales, sub-scales and their cost.
#[derive(Clone, Copy)]
struct SuperChoice {
    cost: f64,
    d: f32,
    dmin: f32,
    sc: [u8; AFFINE_SUBS],
    m: [u8; AFFINE_SUBS],
}

/// Keeps the cheapest of the choices offered.
struct Cheapest<'a> {
    fits: &'a [AffineFit; AFFINE_SUBS],
    best: Option<SuperChoice>,
}

impl Cheapest<'_> {
    /// Scores (d, dmin) from their step pairs; true when it is the cheapest
    /// so far.
    fn offer_steps(
        &mut self,
        (d, scale_steps): (f32, &StepPairs),
        (dmin, min_steps): (f32, &StepPairs),
    ) -> bool {
        let (cost, sc, m) = score(self.fits, scale_steps, min_steps);
        if self.best.is_some_and(|b| b.cost <= cost) {
            return false;
        }
        self.best = Some(SuperChoice {
            cost,
            d,
            dmin,
            sc,
            m,
        });
        true
    }

    /// Scores (d, dmin); true when it is the cheapest so far.
    fn offer(&mut self, d: f32, dmin: f32) -> bool {
        if !(usable(d) && usable(dmin)) {
            return false;
        }
        let scale_steps = step_pairs(self.fits, d, true);
        let min_steps = step_pairs(self.fits, dmin, false);
        self.offer_steps((d, &scale_steps), (dmin, &min_steps))
    }
}

/// Step 2: the super-block scales and the sub-scales.
fn super_scales(fits: &[AffineFit; AFFINE_SUBS]) -> Option<SuperChoice> {
    let largest = |v: fn(&AffineFit) -> f64| fits.iter().map(v).fold(0.0f64, f64::max);
    let (s_max, m_max) = (largest(|f| f.s), largest(|f| f.m));
    let mut cheapest = Cheapest { fits, best: None };
    let grid = |largest: f64, k: usize| {
        stored((largest / (f64::from(SUB_SCALE_MAX) - 0.25 * k as f64)) as f32)
    };
    let dmins: [(f32, StepPairs); DMIN_GRID] = std::array::from_fn(|k| {
        let dmin = grid(m_max, k);
        (dmin, step_pairs(fits, dmin, false))
    });
    for kd in 0..D_GRID {
        let d = grid(s_max, kd);
        if !usable(d) {
            continue;
        }
        let scale_steps = step_pairs(fits, d, true);
        for (dmin, min_steps) in &dmins {
            if usable(*dmin) {
                cheapest.offer_steps((d, &scale_steps), (*dmin, min_steps));
            }
        }
    }
    for _ in 0..SUPER_REFITS {
        let SuperChoice { sc, m, .. } = cheapest.best?;
        // Minimise Σ_j cost_j(d·sc_j − s_j, dmin·m_j − m_j) over (d, dmin).
        let (mut a11, mut a12, mut a22, mut b1, mut b2) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for ((f, &p), &q) in fits.iter().zip(&sc).zip(&m) {
            let (p, q) = (f64::from(p), f64::from(q));
            a11 += f.a * p * p;
            a12 -= f.b * p * q;
            a22 += f.c * q * q;
            b1 += f.a * p * f.s - f.b * p * f.m;
            b2 += f.c * q * f.m - f.b * q * f.s;
        }
        let det = a11 * a22 - a12 * a12;
        if !positive(det.abs()) {
            break;
        }
        let d = stored(((a22 * b1 - a12 * b2) / det) as f32);
        let dmin = stored(((a11 * b2 - a12 * b1) / det) as f32);
        if !cheapest.offer(d, dmin) {
            break;
        }
    }
    cheapest.best
}

/// The exact weighted error of sub-block j of `block` once its levels are
/// re-rounded.
fn sub_error<F: Affine>(block: &mut AffineBlock, x: &[f32], w: &[f32], j: usize) -> f64 {
    block.round_sub::<F>(x, j);
    let (scale, min) = block.sub_scale(j);
    let sub = AFFINE_SUB * j..AFFINE_SUB * (j + 1);
    block.q[sub.clone()]
        .iter()
        .zip(&x[sub.clone()])
        .zip(&w[sub])
        .map(|((&q, &v), &w)| {
            let restored = scale * f32::from(q) - min;
            f64::from(w) * (f64::from(v) - f64::from(restored)).powi(2)
        })
        .sum()
}

/// Step 3: each sub-block's scale and minimum within one step, by exact error.
fn refine<F: Affine>(block: &mut AffineBlock, x: &[f32], w: &[f32]) {
    for j in 0..AFFINE_SUBS {
        let (sc0, m0) = (block.sc[j], block.m[j]);
        let mut best = (sub_error::<F>(block, x, w, j), sc0, m0);
        for sc in sc0.saturating_sub(1)..=(sc0 + 1).min(SUB_SCALE_MAX as u8) {
            for m in m0.saturating_sub(1)..=(m0 + 1).min(SUB_SCALE_MAX as u8) {
                if (sc, m) == (sc0, m0) {
                    continue;
                }
                (block.sc[j], block.m[j]) = (sc, m);
                let error = sub_error::<F>(block, x, w, j);
                if error < best.0 {
                    best = (error, sc, m);
                }
            }
        }
        (block.sc[j], block.m[j]) = (best.1, best.2);
        block.round_sub::<F>(x, j);
    }
}

/// Q4_K or Q5_K with the least weighted error: one super-block.
pub fn affine<F: Affine>(x: &[f32], w: &[f32], out: &mut [u8]) {
    affine_nearest::<F>(x, out);
    let mut restored = [0.0f32; QK_K];
    affine_dequantize::<F>(out, &mut restored);
    let nearest_error = weighted_error(x, w, &restored);
    let fits: [AffineFit; AFFINE_SUBS] = std::array::from_fn(|j| {
        let sub = AFFINE_SUB * j..AFFINE_SUB * (j + 1);
        fit_sub::<F>(&x[sub.clone()], &w[sub])
    });
    let Some(SuperChoice { d, dmin, sc, m, .. }) = super_scales(&fits) else {
        return;
    };
    let mut block = AffineBlock {
        d,
        dmin,
        sc,
        m,
        q: [0; QK_K],
    };
    refine::<F>(&mut block, x, w);
    let mut candidate = [0u8; 176];
    block.pack::<F>(&mut candidate);
    affine_dequantize::<F>(&candidate, &mut restored);
    let mut best_error = weighted_error(x, w, &restored);
    if best_error < nearest_error {
        out[..F::BYTES].copy_from_slice(&candidate[..F::BYTES]);
    } else {
        best_error = nearest_error;
    }
    for _ in 0..FINAL_REFITS {
        let Some((d, dmin)) = refit_super(&block, x, w) else {
            break;
        };
        let mut next = AffineBlock { d, dmin, ..block };
        refine::<F>(&mut next, x, w);
        next.pack::<F>(&mut candidate);
        affine_dequantize::<F>(&candidate, &mut restored);
        let error = weighted_error(x, w, &restored);
        if error >= best_error || error.is_nan() {
            break;
        }
        best_error = error;
        block = next;
        out[..F::BYTES].copy_from_slice(&candidate[..F::BYTES]);
    }
}

/// Exact least-squares refits of (d, dmin) for the final levels.
const FINAL_REFITS: usize = 2;

/// The (d, dmin), f16-stored, that minimise the weighted error of x ≈
/// d·(sc_j·q) − dmin·m_j with the block's sub-scales and levels fixed.
fn refit_super(block: &AffineBlock, x: &[f32], w: &[f32]) -> Option<(f32, f32)> {
    let (mut aa, mut ab, mut bb, mut xa, mut xb) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
    for (e, ((&v, &w), &q)) in x.iter().zip(w).zip(&block.q).enumerate() {
        let j = e / AFFINE_SUB;
        let a = f64::from(block.sc[j]) * f64::from(q);
        let b = -f64::from(block.m[j]);
        let (v, w) = (f64::from(v), f64::from(w));
        aa += w * a * a;
        ab += w * a * b;
        bb += w * b * b;
        xa += w * v * a;
        xb += w * v * b;
    }
    let det = aa * bb - ab * ab;
    if !positive(det.abs()) {
        return None;
    }
    let d = stored(((bb * xa - ab * xb) / det) as f32);
    let dmin = stored(((aa * xb - ab * xa) / det) as f32);
    (usable(d) && usable(dmin)).then_some((d, dmin))
}

// ------------------------------------------------------------------- Q6_K

/// A Q6_K sub-block's best real (signed) scale and the curvature Σwq² of
/// its error around it.
#[derive(Clone, Copy)]
struct SignedFit {
    s: f64,
    a: f64,
}

/// Scale offsets of Q6_K's first step: the largest magnitude on level
/// −(32 + r) or +(31 + r).
const Q6_STEPS: [f32; 10] = [-0.9, -0.7, -0.5, -0.3, -0.1, 0.1, 0.3, 0.5, 0.7, 0.9];

/// Q6_K's step 1 for one sub-block of 16.
fn fit_signed(x: &[f32], w: &[f32]) -> SignedFit {
    let max = signed_max(x);
    if max.abs() < f32::MIN_POSITIVE {
        return SignedFit { s: 0.0, a: 0.0 };
    }
    let sums_for = |id: f32| {
        level_sums(x, w, |v| {
            round_half_away(v * id).clamp(Q6_LEVELS.0, Q6_LEVELS.1)
        })
    };
    // Σw(x − sq)² at s = Σwxq/Σwq² is Σwx² − (Σwxq)²/Σwq²: maximise the latter.
    let gain = |l: &LevelSums| {
        if l.qq > 0.0 {
            l.xq * l.xq / l.qq
        } else {
            f64::NEG_INFINITY
        }
    };
    let mut best = sums_for(Q6_LEVELS.0 / max);
    for r in Q6_STEPS {
        for id in [(Q6_LEVELS.0 - r) / max, (Q6_LEVELS.1 + r) / max] {
            let l = sums_for(id);
            if gain(&l) > gain(&best) {
                best = l;
            }
        }
    }
    for _ in 0..REFIT_ROUNDS {
        if !positive(best.qq) {
            break;
        }
        let l = sums_for((best.qq / best.xq) as f32);
        if gain(&l) > gain(&best) {
            best = l;
        } else {
            break;
        }
    }
    if !positive(best.qq) {
        return SignedFit { s: 0.0, a: 0.0 };
    }
    SignedFit {
        s: best.xq / best.qq,
        a: best.qq,
    }
}

/// The i8 sub-scale of a real scale against d, and its quadratic cost.
fn q6_step(f: &SignedFit, d: f32) -> (i8, f64) {
    if !positive(f64::from(d.abs())) {
        return (0, f.a * f.s * f.s);
    }
    // Clamped first, so the cast floors a value an i32 holds.
    let ratio = (f.s / f64::from(d)).clamp(-1024.0, 1024.0);
    let k = f64::from(ratio as i32)
        - if f64::from(ratio as i32) > ratio {
            1.0
        } else {
            0.0
        };
    let mut best = (0i8, f64::INFINITY);
    for step in [k, k + 1.0] {
        let step = step.clamp(-128.0, 127.0);
        let delta = f64::from(d) * step - f.s;
        let cost = f.a * delta * delta;
        if cost < best.1 {
            best = (step as i8, cost);
        }
    }
    best
}

/// Grid of Q6_K's step 2: d = largest/∓(128 − k/4) for k < 16.
const Q6_D_GRID: usize = 16;

/// Q6_K's step 2: d and the sub-scales.
fn q6_super_scale(fits: &[SignedFit; Q6_SUBS]) -> Option<(f32, [i8; Q6_SUBS])> {
    let largest = fits
        .iter()
        .fold(0.0f64, |m, f| if f.s.abs() > m.abs() { f.s } else { m });
    if largest == 0.0 {
        return None;
    }
    let score = |d: f32| {
        let mut sc = [0i8; Q6_SUBS];
        let mut total = 0.0;
        for (s, f) in sc.iter_mut().zip(fits) {
            let (step, cost) = q6_step(f, d);
            *s = step;
            total += cost;
        }
        (total, sc)
    };
    let mut best: Option<(f64, f32, [i8; Q6_SUBS])> = None;
    let offer = |d: f32, best: &mut Option<(f64, f32, [i8; Q6_SUBS])>| {
        if !d.is_finite() {
            return false;
        }
        let (total, sc) = score(d);
        if best.as_ref().is_none_or(|b| total < b.0) {
            *best = Some((total, d, sc));
            return true;
        }
        false
    };
    for k in 0..Q6_D_GRID {
        let k = 0.25 * k as f64;
        offer(stored((largest / -(128.0 - k)) as f32), &mut best);
        offer(stored((largest / (127.0 - k)) as f32), &mut best);
    }
    for _ in 0..SUPER_REFITS {
        let (_, _, sc) = best?;
        let (num, den) = fits.iter().zip(sc).fold((0.0, 0.0), |(n, d), (f, step)| {
            let step = f64::from(step);
            (n + f.a * step * f.s, d + f.a * step * step)
        });
        if !positive(den) || !offer(stored((num / den) as f32), &mut best) {
            break;
        }
    }
    best.map(|(_, d, sc)| (d, sc))
}

/// Q6_K with the least weighted error: one super-block.
pub fn q6_k(x: &[f32], w: &[f32], out: &mut [u8]) {
    q6_k_nearest(x, out);
    let mut restored = [0.0f32; QK_K];
    q6_k_dequantize(out, &mut restored);
    let nearest_error = weighted_error(x, w, &restored);
    let fits: [SignedFit; Q6_SUBS] = std::array::from_fn(|j| {
        let sub = Q6_SUB * j..Q6_SUB * (j + 1);
        fit_signed(&x[sub.clone()], &w[sub])
    });
    let Some((d, sc)) = q6_super_scale(&fits) else {
        return;
    };
    let mut block = Q6Block {
        d,
        sc,
        q: [0; QK_K],
    };
    // Step 3: each sub-scale within one step, by exact error.
    for (j, &start) in sc.iter().enumerate() {
        let sub = Q6_SUB * j..Q6_SUB * (j + 1);
        let error_of = |block: &mut Q6Block, step: i8| {
            block.sc[j] = step;
            block.round_sub(x, j);
            let scale = block.sub_scale(j);
            block.q[sub.clone()]
                .iter()
                .zip(&x[sub.clone()])
                .zip(&w[sub.clone()])
                .map(|((&q, &v), &w)| {
                    let restored = scale * f32::from(q as i8 - 32);
                    f64::from(w) * (f64::from(v) - f64::from(restored)).powi(2)
                })
                .sum::<f64>()
        };
        let mut best = (error_of(&mut block, start), start);
        for step in [start.saturating_sub(1), start.saturating_add(1)] {
            let error = error_of(&mut block, step);
            if error < best.0 {
                best = (error, step);
            }
        }
        block.sc[j] = best.1;
        block.round_sub(x, j);
    }
    let mut candidate = [0u8; 210];
    block.pack(&mut candidate);
    q6_k_dequantize(&candidate, &mut restored);
    if weighted_error(x, w, &restored) < nearest_error {
        out[..210].copy_from_slice(&candidate);
    }
}

#[cfg(test)]
mod tests {
    use super::super::kquant::{Q4K, Q5K};
    use super::*;

    /// Smooth data with noise and a few outliers, as weights have.
    fn super_block(seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        (0..QK_K)
            .map(|i| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = (s >> 8) as f32 / 16_777_216.0 - 0.5;
                let outlier = if s % 97 == 0 { 4.0 } else { 1.0 };
                (0.3 * (i as f32 * 0.05 + seed as f32).sin() + noise)
                    * outlier
                    * (1 + i / 64) as f32
            })
            .collect()
    }

    /// Nearest rounding, the search and the dequantizer of a K-quant.
    type Kernels = (
        fn(&[f32], &mut [u8]),
        fn(&[f32], &[f32], &mut [u8]),
        fn(&[u8], &mut [f32]),
    );

    const FORMATS: [(&str, Kernels); 3] = [
        (
            "Q4_K",
            (
                affine_nearest::<Q4K>,
                affine::<Q4K>,
                affine_dequantize::<Q4K>,
            ),
        ),
        (
            "Q5_K",
            (
                affine_nearest::<Q5K>,
                affine::<Q5K>,
                affine_dequantize::<Q5K>,
            ),
        ),
        ("Q6_K", (q6_k_nearest, q6_k, q6_k_dequantize)),
    ];

    fn error_of(x: &[f32], w: &[f32], bytes: &[u8], dequantize: fn(&[u8], &mut [f32])) -> f64 {
        let mut y = [0.0f32; QK_K];
        dequantize(bytes, &mut y);
        weighted_error(x, w, &y)
    }

    #[test]
    fn never_worse_than_nearest_on_any_super_block_and_better_in_total() {
        let ones = [1.0f32; QK_K];
        let ramp: Vec<f32> = (0..QK_K).map(|i| 1.0 + (i % 7) as f32).collect();
        // The total error over nearest rounding's that the search reaches
        // on these super-blocks (equal weights, then the ramp), as measured
        // when written: the search is deterministic f64 arithmetic, so any
        // step made weaker (even the super-block refit, which gains 1e-4 of
        // the error here) fails; a better search passes and may lower them.
        let most = [
            [0.772_168_721_351_709_6, 0.736_531_632_751_923_6],
            [0.805_934_266_857_992, 0.763_265_160_472_641_5],
            [0.830_277_360_716_961_5, 0.804_657_965_144_497_9],
        ]
        .map(|pair| pair.map(|r: f64| r * (1.0 + 1e-9)));
        for ((name, (nearest, search, dequantize)), most) in FORMATS.into_iter().zip(most) {
            for (w, most) in [&ones[..], &ramp[..]].into_iter().zip(most) {
                let (mut near_total, mut best_total) = (0.0, 0.0);
                for seed in 0..100 {
                    let x = super_block(seed);
                    let (mut near, mut best) = ([0u8; 210], [0u8; 210]);
                    nearest(&x, &mut near);
                    search(&x, w, &mut best);
                    let e_near = error_of(&x, w, &near, dequantize);
                    let e_best = error_of(&x, w, &best, dequantize);
                    assert!(
                        e_best <= e_near,
                        "{name} super-block {seed}: {e_best} > {e_near}"
                    );
                    near_total += e_near;
                    best_total += e_best;
                }
                let ratio = best_total / near_total;
                assert!(
                    ratio <= most,
                    "{name}: {ratio} of nearest's error, at most {most}"
                );
            }
        }
    }

    #[test]
    fn super_blocks_of_positive_values_gain_over_nearest() {
        // Sub-blocks whose values all lie in [1, 2): the fit starts from a
        // minimum of 0 (a K-quant's stored minimum is subtracted and never
        // negative) and reaches this share of nearest rounding's total error,
        // as measured when written (deterministic f64 arithmetic); started
        // from the sub-blocks' own least value the search gains nothing.
        let ones = [1.0f32; QK_K];
        let most =
            [0.911_810_752_718_128_4, 0.912_052_829_559_923_5].map(|r: f64| r * (1.0 + 1e-9));
        for ((name, (nearest, search, dequantize)), most) in FORMATS.into_iter().zip(most) {
            let (mut near_total, mut best_total) = (0.0, 0.0);
            for seed in 0..100u64 {
                let x: Vec<f32> = (0..QK_K as u64)
                    .map(|i| 1.0 + ((i * 2_654_435_761 + seed * 97) % 1000) as f32 / 1000.0)
                    .collect();
                let (mut near, mut best) = ([0u8; 210], [0u8; 210]);
                nearest(&x, &mut near);
                search(&x, &ones, &mut best);
                near_total += error_of(&x, &ones, &near, dequantize);
                best_total += error_of(&x, &ones, &best, dequantize);
            }
            let ratio = best_total / near_total;
            assert!(
                ratio <= most,
                "{name}: {ratio} of nearest's error, at most {most}"
            );
        }
    }

    #[test]
    fn an_affine_fit_with_a_positive_offset_refits_the_scale_alone() {
        // x = 0.1·q + 1 on levels 0..15: the unconstrained fit is s = 0.1,
        // m = −1, but a positive offset is not storable: m = 0 and s is the
        // least-squares scale of q alone, Σxq/Σq².
        let q: Vec<f32> = (0..16).map(|k| k as f32).collect();
        let x: Vec<f32> = q.iter().map(|&k| 0.1 * k + 1.0).collect();
        let w = [1.0f32; 16];
        let sums = level_sums(&x, &w, |v| ((v - 1.0) / 0.1).round());
        let (s, m, error) = fit_affine(&Moments::of(&x, &w), &sums).unwrap();
        let (sxq, sqq): (f64, f64) = x.iter().zip(&q).fold((0.0, 0.0), |(a, b), (&x, &q)| {
            (a + f64::from(x * q), b + f64::from(q * q))
        });
        assert_eq!(m, 0.0);
        assert!((s - sxq / sqq).abs() < 1e-6 * s, "{s}");
        let direct: f64 = x
            .iter()
            .zip(&q)
            .map(|(&x, &q)| (f64::from(x) - s * f64::from(q)).powi(2))
            .sum();
        assert!(
            (error - direct).abs() < 1e-6 * direct,
            "{error} against {direct}"
        );
        // A zero offset fits exactly.
        let x0: Vec<f32> = q.iter().map(|&k| 0.1 * k).collect();
        let sums = level_sums(&x0, &w, |v| (v / 0.1).round());
        let (s, m, _) = fit_affine(&Moments::of(&x0, &w), &sums).unwrap();
        assert!((s - 0.1).abs() < 1e-6 && m.abs() < 1e-6, "{s} {m}");
    }

    #[test]
    fn importance_steers_the_error_to_unimportant_columns() {
        for (name, (_, search, dequantize)) in FORMATS {
            let (mut plain_total, mut weighted_total) = (0.0, 0.0);
            for seed in 0..20 {
                let x = super_block(seed);
                let w: Vec<f32> = (0..QK_K)
                    .map(|i| if i % 8 == 3 { 50.0 } else { 1.0 })
                    .collect();
                let (mut plain, mut weighted) = ([0u8; 210], [0u8; 210]);
                search(&x, &[1.0; QK_K], &mut plain);
                search(&x, &w, &mut weighted);
                plain_total += error_of(&x, &w, &plain, dequantize);
                weighted_total += error_of(&x, &w, &weighted, dequantize);
            }
            assert!(
                weighted_total < plain_total,
                "{name}: {weighted_total} vs unweighted {plain_total}"
            );
        }
    }

    #[test]
    fn degenerate_super_blocks_keep_nearest() {
        let zero_weights = [0.0f32; QK_K];
        for (name, (nearest, search, _)) in FORMATS {
            for x in [
                vec![0.0f32; QK_K],
                vec![-2.5f32; QK_K],
                vec![f32::from_bits(7); QK_K],
                super_block(3),
            ] {
                let (mut near, mut best) = ([0u8; 210], [0u8; 210]);
                nearest(&x, &mut near);
                // Zero weights make every candidate cost 0: nearest stays.
                search(&x, &zero_weights, &mut best);
                assert_eq!(near, best, "{name} with zero weights");
            }
            // A constant super-block is exact in nearest rounding already
            // (to the f16 rounding of its minimum) and stays finite.
            let x = vec![-2.5f32; QK_K];
            let mut best = [0u8; 210];
            search(&x, &[1.0; QK_K], &mut best);
            assert!(best.iter().any(|&b| b != 0), "{name}");
        }
    }

    #[test]
    fn the_largest_magnitudes_stay_finite() {
        for (name, (_, search, dequantize), limit) in [
            (FORMATS[0].0, FORMATS[0].1, 63.0 * 65520.0f32),
            (FORMATS[1].0, FORMATS[1].1, 63.0 * 65520.0),
            (FORMATS[2].0, FORMATS[2].1, 4096.0 * 65520.0),
        ] {
            let below = f32::from_bits(limit.to_bits() - 1);
            let mut x = super_block(5);
            x[17] = -below;
            x[200] = below;
            let mut out = [0u8; 210];
            search(&x, &[1.0; QK_K], &mut out);
            let mut y = [0.0f32; QK_K];
            dequantize(&out, &mut y);
            assert!(y.iter().all(|v| v.is_finite()), "{name}");
            assert!((y[17] + below).abs() < 1e-2 * below, "{name}: {}", y[17]);
        }
    }
}
