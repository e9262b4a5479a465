//! The AVX2 integer sums of Q4_0's integer-ranked search (`int_search.rs`):
//! sixteen elements to a vector, four candidates at a time, the sums of each
//! exact, so equal to the portable ones.

use super::int_rank::{Integers, MAX_CANDIDATES};
use super::int_search::{CANDIDATES, Ranked, STEPS, Scores, Sums2};
use super::int_search_iq4_nl as iq4_nl;
use super::int_search_q4_1 as q4_1;
use super::scalar::{self, QK};
use super::simd_x86;
use std::arch::x86_64::*;

/// The kernels take the candidates four at a time, in 32 lanes of keys.
const _: () = assert!(CANDIDATES % 4 == 0 && CANDIDATES <= 32);
const _: () = assert!(q4_1::CANDIDATES % 4 == 0 && iq4_nl::CANDIDATES % 4 == 0);

/// The AVX2 integer sums.
pub(super) struct Avx2;

impl Integers for Avx2 {
    #[inline(always)]
    fn integers(v: &[f32; QK], k: f32) -> [i16; QK] {
        let mut out = [0i16; QK];
        // SAFETY: only reached from the searches' AVX2 entry points, whose
        // callers detected AVX2; the loads read v[8c..8c+8], c < 4, the stores write
        // out[16h..16h+16], h < 2.
        unsafe {
            let (k, full) = (_mm256_set1_ps(k), _mm256_set1_ps(32767.0));
            let least = _mm256_sub_ps(_mm256_setzero_ps(), full);
            let mut ints = [_mm256_setzero_si256(); 4];
            for (c, int) in ints.iter_mut().enumerate() {
                let t = _mm256_mul_ps(_mm256_loadu_ps(v.as_ptr().add(8 * c)), k);
                // Rounds half to even (the default rounding mode).
                *int = _mm256_cvtps_epi32(_mm256_max_ps(_mm256_min_ps(t, full), least));
            }
            for h in 0..2 {
                let packed = _mm256_packs_epi32(ints[2 * h], ints[2 * h + 1]);
                let ordered = _mm256_permute4x64_epi64::<0b11_01_10_00>(packed);
                _mm256_storeu_si256(out.as_mut_ptr().add(16 * h).cast(), ordered);
            }
        }
        out
    }

    #[inline(always)]
    fn best_two_keys(keys: &[u32; MAX_CANDIDATES]) -> [usize; 2] {
        // SAFETY: only reached from the searches' AVX2 entry points, whose
        // callers detected AVX2; the loads read 8 u32 at 8·g ≤ 24 of 32.
        unsafe {
            let mut v = [_mm256_setzero_si256(); 4];
            for (g, v) in v.iter_mut().enumerate() {
                *v = _mm256_loadu_si256(keys.as_ptr().add(8 * g).cast());
            }
            let first = largest_key(v);
            let f = _mm256_set1_epi32(first as i32);
            for v in v.iter_mut() {
                *v = _mm256_andnot_si256(_mm256_cmpeq_epi32(*v, f), *v);
            }
            let second = largest_key(v);
            [31 - (first & 31) as usize, 31 - (second & 31) as usize]
        }
    }
}

impl Scores for Avx2 {
    #[inline(always)]
    fn best_two([pa, pb]: &Sums2) -> [usize; 2] {
        // SAFETY: only reached from `q4_0_search`, whose callers detected
        // AVX2; the loads read 8 i32 at 8·g ≤ 24 of arrays of 32.
        unsafe {
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let mut keys = [_mm256_setzero_si256(); 4];
            for (g, key) in keys.iter_mut().enumerate() {
                let a = _mm256_cvtepi32_ps(_mm256_loadu_si256(pa.as_ptr().add(8 * g).cast()));
                let bi = _mm256_loadu_si256(pb.as_ptr().add(8 * g).cast());
                let rank = _mm256_div_ps(_mm256_mul_ps(a, a), _mm256_cvtepi32_ps(bi));
                let some = _mm256_cmpgt_epi32(bi, _mm256_setzero_si256());
                let bits = _mm256_and_si256(_mm256_castps_si256(rank), some);
                let index = _mm256_sub_epi32(_mm256_set1_epi32(31 - 8 * g as i32), lanes);
                let k = _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(!31)), index);
                // The padding (c ≥ CANDIDATES) ranks below every candidate.
                let real =
                    _mm256_cmpgt_epi32(_mm256_set1_epi32(CANDIDATES as i32 - 8 * g as i32), lanes);
                *key = _mm256_and_si256(k, real);
            }
            let first = largest_key(keys);
            let f = _mm256_set1_epi32(first as i32);
            for key in keys.iter_mut() {
                *key = _mm256_andnot_si256(_mm256_cmpeq_epi32(*key, f), *key);
            }
            let second = largest_key(keys);
            [31 - (first & 31) as usize, 31 - (second & 31) as usize]
        }
    }

    #[inline(always)]
    fn scores(ranked: &Ranked) -> Sums2 {
        match &ranked.q {
            None => scores_of::<false>(ranked, &ranked.u),
            Some(q) => scores_of::<true>(ranked, q),
        }
    }
}

/// The largest of 32 unsigned keys.
#[inline(always)]
fn largest_key(k: [__m256i; 4]) -> u32 {
    // SAFETY: only reached from `q4_0_search`, whose callers detected AVX2.
    unsafe {
        let m = _mm256_max_epu32(_mm256_max_epu32(k[0], k[1]), _mm256_max_epu32(k[2], k[3]));
        let m = _mm256_max_epu32(m, _mm256_permute2x128_si256::<1>(m, m));
        let m = _mm256_max_epu32(m, _mm256_shuffle_epi32::<0b01_00_11_10>(m));
        let m = _mm256_max_epu32(m, _mm256_shuffle_epi32::<0b10_11_00_01>(m));
        _mm256_cvtsi256_si32(m) as u32
    }
}

/// Loads 32 i16 as two vectors.
#[inline(always)]
fn halves(v: &[i16; QK]) -> [__m256i; 2] {
    // SAFETY: only reached from `q4_0_search`, whose callers detected AVX2;
    // each load reads 16 i16 at 16·h < 32 of a 32-element array.
    unsafe {
        [
            _mm256_loadu_si256(v.as_ptr().cast()),
            _mm256_loadu_si256(v.as_ptr().add(16).cast()),
        ]
    }
}

/// The sums of every candidate; `WEIGHTED` multiplies `l²` by `q`.
#[inline(always)]
fn scores_of<const WEIGHTED: bool>(ranked: &Ranked, q: &[i16; QK]) -> Sums2 {
    let (u, p, q) = (halves(&ranked.u), halves(&ranked.p), halves(q));
    let mut out = [[0i32; 32]; 2];
    // SAFETY: only reached from `q4_0_search`, whose callers detected AVX2;
    // the two stores write 4 i32 each at 4·g < CANDIDATES of arrays of 32.
    unsafe {
        let (low, high) = (_mm256_set1_epi16(-8), _mm256_set1_epi16(7));
        for (g, steps) in STEPS.chunks_exact(4).enumerate() {
            let mut sums = [_mm256_setzero_si256(); 8];
            for (k, &step) in steps.iter().enumerate() {
                let s = _mm256_set1_epi16(step);
                for h in 0..2 {
                    let l =
                        _mm256_max_epi16(_mm256_min_epi16(_mm256_mulhrs_epi16(u[h], s), high), low);
                    let squares = if WEIGHTED {
                        _mm256_madd_epi16(_mm256_mullo_epi16(l, l), q[h])
                    } else {
                        _mm256_madd_epi16(l, l)
                    };
                    sums[k] = _mm256_add_epi32(sums[k], _mm256_madd_epi16(l, p[h]));
                    sums[4 + k] = _mm256_add_epi32(sums[4 + k], squares);
                }
            }
            // [a0 a1 a2 a3 | a0 a1 a2 a3] of partial sums and the same of
            // b, then the halves added: [a0 a1 a2 a3 | b0 b1 b2 b3].
            let pairs = [
                _mm256_hadd_epi32(sums[0], sums[1]),
                _mm256_hadd_epi32(sums[2], sums[3]),
                _mm256_hadd_epi32(sums[4], sums[5]),
                _mm256_hadd_epi32(sums[6], sums[7]),
            ];
            let (a, b) = (
                _mm256_hadd_epi32(pairs[0], pairs[1]),
                _mm256_hadd_epi32(pairs[2], pairs[3]),
            );
            let totals = _mm256_add_epi32(
                _mm256_permute2x128_si256::<0x20>(a, b),
                _mm256_permute2x128_si256::<0x31>(a, b),
            );
            _mm_storeu_si128(
                out[0].as_mut_ptr().add(4 * g).cast(),
                _mm256_castsi256_si128(totals),
            );
            _mm_storeu_si128(
                out[1].as_mut_ptr().add(4 * g).cast(),
                _mm256_extracti128_si256::<1>(totals),
            );
        }
    }
    out
}

/// Q4_0's integer-ranked search of one block on the AVX2 sums.
///
/// # Safety
/// AVX2 and F16C present.
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn q4_0_search(x: &[f32], w: &[f32], out: &mut [u8]) {
    super::int_search::q4_0_with::<Avx2, super::simd_x86::SearchSums>(x, w, out);
}

impl q4_1::Scores for Avx2 {
    #[inline(always)]
    fn scores(ranked: &q4_1::Ranked) -> q4_1::Sums3 {
        match &ranked.q {
            None => q4_1_scores::<false>(ranked, &[1; QK]),
            Some(q) => q4_1_scores::<true>(ranked, q),
        }
    }

    #[inline(always)]
    fn min_max(x: &[f32; QK]) -> (f32, f32) {
        // SAFETY: only reached from `q4_1_search`, whose callers detected AVX2.
        unsafe { simd_x86::q4_1_min_max(x) }
    }

    #[inline(always)]
    fn with_scale(x: &[f32; QK], d: f32, m: f32, out: &mut [u8]) {
        // SAFETY: only reached from `q4_1_search`, whose callers detected
        // AVX2 and F16C.
        unsafe { simd_x86::q4_1_with_scale(x, d, m, out) }
    }

    #[inline(always)]
    fn evaluate<const SUMS: bool, const N: usize>(
        block: &q4_1::Block,
        candidates: [q4_1::Candidate; N],
    ) -> [[f32; 4]; N] {
        // SAFETY: only reached from `q4_1_search`, whose callers detected
        // AVX2; every load reads 8 floats at 8·k < 32 of a 32-float array.
        unsafe {
            let (zero, half, top) = (
                _mm256_setzero_ps(),
                _mm256_set1_ps(0.5),
                _mm256_set1_ps(15.0),
            );
            let (mut id, mut m_level, mut d, mut m) = ([zero; N], [zero; N], [zero; N], [zero; N]);
            for (n, c) in candidates.iter().enumerate() {
                id[n] = _mm256_set1_ps(c.id);
                m_level[n] = _mm256_set1_ps(c.m_level);
                d[n] = _mm256_set1_ps(c.d);
                m[n] = _mm256_set1_ps(c.m);
            }
            let mut lanes = [[zero; 4]; N];
            for k in 0..QK / 8 {
                let x = _mm256_loadu_ps(block.x.as_ptr().add(8 * k));
                let w = _mm256_loadu_ps(block.w.as_ptr().add(8 * k));
                let wc = _mm256_loadu_ps(block.wc.as_ptr().add(8 * k));
                for n in 0..N {
                    let t = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(x, m_level[n]), id[n]), half);
                    let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(t);
                    let l = _mm256_min_ps(_mm256_max_ps(t, zero), top);
                    let r = _mm256_sub_ps(x, _mm256_add_ps(_mm256_mul_ps(d[n], l), m[n]));
                    let e = _mm256_mul_ps(_mm256_mul_ps(w, r), r);
                    lanes[n][0] = _mm256_add_ps(lanes[n][0], e);
                    if SUMS {
                        let wl = _mm256_mul_ps(w, l);
                        lanes[n][1] = _mm256_add_ps(lanes[n][1], wl);
                        lanes[n][2] = _mm256_add_ps(lanes[n][2], _mm256_mul_ps(wl, l));
                        lanes[n][3] = _mm256_add_ps(lanes[n][3], _mm256_mul_ps(wc, l));
                    }
                }
            }
            let mut out = [[0.0f32; 4]; N];
            for (o, l) in out.iter_mut().zip(&lanes) {
                *o = lane_sums(l);
            }
            out
        }
    }
}

/// The lane sums of four vectors, each as `f32_scores::lane_sum` adds its
/// lanes: `((a0+a1)+(a4+a5)) + ((a2+a3)+(a6+a7))`.
#[inline(always)]
fn lane_sums(v: &[__m256; 4]) -> [f32; 4] {
    // SAFETY: only reached from the searches' AVX2 entry points; the store
    // writes the four floats of `out`.
    unsafe {
        // [a0+a1, a2+a3, b0+b1, b2+b3 | a4+a5, a6+a7, b4+b5, b6+b7]
        let ab = _mm256_hadd_ps(v[0], v[1]);
        let cd = _mm256_hadd_ps(v[2], v[3]);
        // [(a0+a1)+(a4+a5), (a2+a3)+(a6+a7), (b0+b1)+(b4+b5), ...]
        let ab = _mm_add_ps(_mm256_castps256_ps128(ab), _mm256_extractf128_ps::<1>(ab));
        let cd = _mm_add_ps(_mm256_castps256_ps128(cd), _mm256_extractf128_ps::<1>(cd));
        let mut out = [0.0f32; 4];
        _mm_storeu_ps(out.as_mut_ptr(), _mm_hadd_ps(ab, cd));
        out
    }
}

/// The four candidates' sums of `v` (each eight lanes of partial sums),
/// added up: `[v0 v1 v2 v3]`.
#[inline(always)]
fn four_totals(v: &[__m256i]) -> __m128i {
    // SAFETY: only reached from `q4_1_search`, whose callers detected AVX2.
    unsafe {
        let both = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
        _mm_add_epi32(
            _mm256_castsi256_si128(both),
            _mm256_extracti128_si256::<1>(both),
        )
    }
}

/// Q4_1's sums of every candidate; `WEIGHTED` multiplies by `q` (all ones
/// otherwise).
#[inline(always)]
fn q4_1_scores<const WEIGHTED: bool>(ranked: &q4_1::Ranked, q: &[i16; QK]) -> q4_1::Sums3 {
    let (t, p, q) = (halves(&ranked.t), halves(&ranked.p), halves(q));
    let mut out = [[0i32; MAX_CANDIDATES]; 3];
    // SAFETY: only reached from `q4_1_search`, whose callers detected AVX2;
    // the stores write 4 i32 each at 4·g < CANDIDATES of arrays of 32.
    unsafe {
        let (low, high) = (_mm256_setzero_si256(), _mm256_set1_epi16(15));
        for (g, steps) in q4_1::STEPS.chunks_exact(4).enumerate() {
            let mut sums = [_mm256_setzero_si256(); 12];
            for (k, &(step, offset)) in steps.iter().enumerate() {
                let (s, c) = (_mm256_set1_epi16(step), _mm256_set1_epi16(offset));
                for h in 0..2 {
                    let m = _mm256_add_epi16(_mm256_mulhi_epi16(t[h], s), c);
                    let l =
                        _mm256_max_epi16(_mm256_min_epi16(_mm256_srai_epi16::<8>(m), high), low);
                    let squares = if WEIGHTED {
                        _mm256_madd_epi16(_mm256_mullo_epi16(l, l), q[h])
                    } else {
                        _mm256_madd_epi16(l, l)
                    };
                    sums[k] = _mm256_add_epi32(sums[k], _mm256_madd_epi16(l, p[h]));
                    sums[4 + k] = _mm256_add_epi32(sums[4 + k], squares);
                    sums[8 + k] = _mm256_add_epi32(sums[8 + k], _mm256_madd_epi16(l, q[h]));
                }
            }
            for (i, row) in out.iter_mut().enumerate() {
                let totals = four_totals(&sums[4 * i..4 * i + 4]);
                _mm_storeu_si128(row.as_mut_ptr().add(4 * g).cast(), totals);
            }
        }
    }
    out
}

/// Q4_1's integer-ranked search of one block on the AVX2 sums.
///
/// # Safety
/// AVX2 and F16C present.
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn q4_1_search(x: &[f32], w: &[f32], out: &mut [u8]) {
    q4_1::q4_1_with::<Avx2>(x, w, out);
}

impl iq4_nl::Scores for Avx2 {
    #[inline(always)]
    fn scores(ranked: &iq4_nl::Ranked) -> iq4_nl::Sums2 {
        match &ranked.q {
            None => iq4_nl_scores::<false>(ranked, &ranked.u),
            Some(q) => iq4_nl_scores::<true>(ranked, q),
        }
    }

    #[inline(always)]
    fn with_scale(x: &[f32; QK], d: f32, out: &mut [u8]) {
        // SAFETY: only reached from `iq4_nl_search`, whose callers detected
        // AVX2 and F16C.
        unsafe { simd_x86::iq4_nl_with_scale(x, d, out) }
    }

    #[inline(always)]
    fn signed_max(x: &[f32; QK]) -> f32 {
        <simd_x86::SearchSums as super::f32_scores::Sums>::signed_max(x)
    }

    #[inline(always)]
    fn indices(t: &[f32; 8]) -> [u8; 8] {
        let mut out = [0i32; 8];
        // SAFETY: only reached from `iq4_nl_search`, whose callers detected
        // AVX2; the load reads t's 8 floats, the store writes out's 8 ints.
        unsafe {
            let k = simd_x86::iq4_nl_indices(_mm256_loadu_ps(t.as_ptr()));
            _mm256_storeu_si256(out.as_mut_ptr().cast(), k);
        }
        let mut bytes = [0u8; 8];
        for (b, &k) in bytes.iter_mut().zip(&out) {
            *b = k as u8;
        }
        bytes
    }

    #[inline(always)]
    fn evaluate<const SUMS: bool, const N: usize>(
        block: &iq4_nl::Block,
        candidates: [(f32, f32); N],
    ) -> [[f32; 3]; N] {
        // SAFETY: only reached from `iq4_nl_search`, whose callers detected
        // AVX2; every load reads 8 floats at 8·k < 32 of a 32-float array.
        unsafe {
            let zero = _mm256_setzero_ps();
            let (mut id, mut d) = ([zero; N], [zero; N]);
            for (n, &(idn, dn)) in candidates.iter().enumerate() {
                id[n] = _mm256_set1_ps(idn);
                d[n] = _mm256_set1_ps(dn);
            }
            let mut lanes = [[zero; 4]; N];
            for k in 0..QK / 8 {
                let x = _mm256_loadu_ps(block.x.as_ptr().add(8 * k));
                let w = _mm256_loadu_ps(block.w.as_ptr().add(8 * k));
                let wx = _mm256_loadu_ps(block.wx.as_ptr().add(8 * k));
                for n in 0..N {
                    let index = simd_x86::iq4_nl_indices(_mm256_mul_ps(x, id[n]));
                    let v = simd_x86::iq4_nl_level_values(index);
                    let r = _mm256_sub_ps(x, _mm256_mul_ps(d[n], v));
                    let e = _mm256_mul_ps(_mm256_mul_ps(w, r), r);
                    lanes[n][0] = _mm256_add_ps(lanes[n][0], e);
                    if SUMS {
                        lanes[n][1] = _mm256_add_ps(lanes[n][1], _mm256_mul_ps(wx, v));
                        let wv = _mm256_mul_ps(w, v);
                        lanes[n][2] = _mm256_add_ps(lanes[n][2], _mm256_mul_ps(wv, v));
                    }
                }
            }
            let mut out = [[0.0f32; 3]; N];
            for (o, l) in out.iter_mut().zip(&lanes) {
                let [e, a, b, _] = lane_sums(l);
                *o = [e, a, b];
            }
            out
        }
    }
}

/// `simd_x86::IQ4_NL_RUN_BELOW` plus two (the index before the run's two
/// comparisons subtract).
const RUN_BELOW_PLUS_TWO: [i8; 16] = {
    let mut out = simd_x86::IQ4_NL_RUN_BELOW;
    let mut k = 0;
    while k < 16 {
        out[k] += 2;
        k += 1;
    }
    out
};

/// IQ4_NL's levels plus 128, as the bytes 1..=241.
const LEVELS_PLUS_128: [i8; 16] = {
    let mut out = [0i8; 16];
    let mut k = 0;
    while k < 16 {
        out[k] = (scalar::IQ4_NL_LEVELS[k] as i16 + 128) as u8 as i8;
        k += 1;
    }
    out
};

/// A 16-byte table in both 128-bit lanes, for `pshufb`.
#[inline(always)]
fn table(v: [i8; 16]) -> __m256i {
    // SAFETY: only reached from the searches' AVX2 entry points; the load
    // reads v's 16 bytes.
    unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(v.as_ptr().cast())) }
}

/// IQ4_NL's sums of every candidate: each candidate's `T` in 16-bit lanes,
/// its index from the runs of `⌊2t⌋` (`simd_x86::iq4_nl_indices` in 16
/// bits: three lookups and two comparisons), its level from a fourth
/// lookup; `WEIGHTED` multiplies `v²` by `q`.
#[inline(always)]
fn iq4_nl_scores<const WEIGHTED: bool>(ranked: &iq4_nl::Ranked, q: &[i16; QK]) -> iq4_nl::Sums2 {
    let (u, p, q) = (halves(&ranked.u), halves(&ranked.p), halves(q));
    let mut out = [[0i32; MAX_CANDIDATES]; 2];
    // SAFETY: only reached from `iq4_nl_search`, whose callers detected
    // AVX2; the stores write 4 i32 each at 4·g < CANDIDATES of arrays of 32.
    unsafe {
        let below = table(RUN_BELOW_PLUS_TWO);
        let (first, second) = (
            table(simd_x86::IQ4_NL_RUN_FIRST),
            table(simd_x86::IQ4_NL_RUN_SECOND),
        );
        let levels = table(LEVELS_PLUS_128);
        // A high byte of 0x80 makes pshufb zero it: 16-bit lookups.
        let high = _mm256_set1_epi16(0x8000u16 as i16);
        let (bias, top, runs) = (
            _mm256_set1_epi16(256),
            _mm256_set1_epi16(511),
            _mm256_set1_epi16(31),
        );
        let (zero, level_bias) = (_mm256_setzero_si256(), _mm256_set1_epi16(128));
        for (g, steps) in iq4_nl::STEPS.chunks_exact(4).enumerate() {
            let mut sums = [_mm256_setzero_si256(); 8];
            for (k, &step) in steps.iter().enumerate() {
                let s = _mm256_set1_epi16(step);
                for h in 0..2 {
                    let t = _mm256_mulhrs_epi16(u[h], s);
                    let doubled = _mm256_add_epi16(_mm256_srai_epi16::<5>(t), bias);
                    let doubled = _mm256_min_epi16(_mm256_max_epi16(doubled, zero), top);
                    let run = _mm256_or_si256(_mm256_srli_epi16::<5>(doubled), high);
                    let within = _mm256_and_si256(doubled, runs);
                    let index = _mm256_add_epi16(
                        _mm256_shuffle_epi8(below, run),
                        _mm256_add_epi16(
                            _mm256_cmpgt_epi16(_mm256_shuffle_epi8(first, run), within),
                            _mm256_cmpgt_epi16(_mm256_shuffle_epi8(second, run), within),
                        ),
                    );
                    let v = _mm256_sub_epi16(
                        _mm256_shuffle_epi8(levels, _mm256_or_si256(index, high)),
                        level_bias,
                    );
                    let squares = if WEIGHTED {
                        _mm256_madd_epi16(_mm256_mullo_epi16(v, v), q[h])
                    } else {
                        _mm256_madd_epi16(v, v)
                    };
                    sums[k] = _mm256_add_epi32(sums[k], _mm256_madd_epi16(v, p[h]));
                    sums[4 + k] = _mm256_add_epi32(sums[4 + k], squares);
                }
            }
            for (i, row) in out.iter_mut().enumerate() {
                let totals = four_totals(&sums[4 * i..4 * i + 4]);
                _mm_storeu_si128(row.as_mut_ptr().add(4 * g).cast(), totals);
            }
        }
    }
    out
}

/// IQ4_NL's integer-ranked search of one block on the AVX2 sums.
///
/// # Safety
/// AVX2 and F16C present.
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn iq4_nl_search(x: &[f32], w: &[f32], out: &mut [u8]) {
    iq4_nl::iq4_nl_with::<Avx2>(x, w, out);
}
