//! Tests of the public kernels: contracts, round trips, threads, rounding modes.

use super::kquant;
use super::*;
use crate::ErrorKind;
use crate::format::{ALL_FORMATS, QUANTIZED_FORMATS};
use scalar::QK;

fn wave(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|i| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            0.7 * (i as f32 * 0.01).sin() + ((s >> 8) as f32 / 16_777_216.0 - 0.5) * 0.4
        })
        .collect()
}

fn round_trip(format: Format, x: &[f32], opts: &QuantizeOptions) -> Vec<f32> {
    let mut q = vec![0u8; format.size_of(x.len()).unwrap()];
    quantize(format, x, &mut q, opts).unwrap();
    let mut y = vec![0.0; x.len()];
    dequantize(format, &q, &mut y, 1).unwrap();
    y
}

#[test]
fn round_trips_stay_within_each_formats_bound_on_odd_sizes() {
    for n in [32usize, 64 * 1023, (1 << 20) + 32] {
        for format in ALL_FORMATS {
            // The K-quants take whole super-blocks: the next multiple of 256.
            let n = n.next_multiple_of(format.block_size());
            let x = wave(n, n as u32);
            let y = round_trip(format, &x, &QuantizeOptions::default());
            let bound = match format {
                Format::F32 => 0.0,
                Format::F16 => 1.0 / 2048.0,
                Format::BF16 => 1.0 / 256.0,
                // Half a step, plus the f16 rounding of the scale (2^-11
                // relative) times the largest level; Q4_0's and Q5_0's
                // positive ends clip a whole step short of the range (at 7/8
                // and 15/16 of it).
                Format::Q8_0 => (0.5 + 127.0 / 2048.0) / 127.0,
                Format::Q4_0 => 1.0 / 8.0 + 8.0 / 2048.0,
                Format::Q4_1 => 1.0 / 15.0 + 2.0 / 2048.0,
                Format::Q5_0 => 1.0 / 16.0 + 16.0 / 2048.0,
                // The indices are nearest for d0 = max/−127: half the widest
                // gap (12) or the clip past 113 (14) in units of d0; the
                // stored least-squares scale departs from d0 by at most
                // 12.3% (times a level of at most 127·d0 = amax), plus its
                // f16 rounding.
                Format::IQ4_NL => 14.0 / 127.0 + 0.123 * (1.0 + 1.0 / 2048.0) + 1.0 / 2048.0,
                // Of the super-block's largest magnitude (a sub-block's range
                // is at most twice it): half a step of the sub-block, plus
                // half a 6-bit step of its scale times the top level and of
                // its minimum (Q6_K: a whole step where +31 clips, and half
                // an 8-bit step of its scale).
                Format::Q4_K => 2.0 * (0.5 / 15.0 + 2.2 / 126.0),
                Format::Q5_K => 2.0 * (0.5 / 31.0 + 2.2 / 126.0),
                Format::Q6_K => 1.0 / 32.0 + 1.1 / 256.0,
            };
            let chunk = format.block_size().max(32);
            for (b, (xs, ys)) in x.chunks(chunk).zip(y.chunks(chunk)).enumerate() {
                let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                for (&a, &c) in xs.iter().zip(ys) {
                    let scale = if format.is_block() { amax } else { a.abs() };
                    // F16 subnormals have a fixed spacing of 2^-24.
                    let floor = if format == Format::F16 {
                        1.0 / 33_554_432.0
                    } else {
                        0.0
                    };
                    assert!(
                        (a - c).abs() <= bound * scale + floor,
                        "{format:?} n={n} block {b}: {a} -> {c}"
                    );
                }
            }
        }
    }
}

#[test]
fn errors_write_nothing() {
    for format in ALL_FORMATS {
        let n = 3 * format.block_size().max(32);
        let x = wave(n, 1);
        let needed = format.size_of(n).unwrap();
        let mut dst = vec![0xAAu8; needed];
        let err = quantize(
            format,
            &x,
            &mut dst[..needed - 1],
            &QuantizeOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BufferTooSmall { needed });
        let mut bad = x.clone();
        bad[50] = f32::NAN;
        let err = quantize(format, &bad, &mut dst, &QuantizeOptions::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NonFinite { index: 50 });
        assert!(dst.iter().all(|&b| b == 0xAA), "{format:?} wrote on error");
        let opts = QuantizeOptions {
            first_index: 1000,
            ..Default::default()
        };
        let err = quantize(format, &bad, &mut dst, &opts).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NonFinite { index: 1050 });
    }
    let x = wave(96, 1);
    assert!(
        quantize(
            Format::Q4_0,
            &x[..40],
            &mut [0u8; 100],
            &QuantizeOptions::default()
        )
        .is_err()
    );
}

#[test]
fn huge_values_are_rejected_or_clamped_per_format() {
    for format in ALL_FORMATS {
        let limit = limits::limit(format);
        let n = format.block_size().max(64);
        let mut x = vec![0.5f32; n];
        if limit.is_finite() {
            x[33] = -limit;
            let mut dst = vec![0u8; format.size_of(n).unwrap()];
            let err = quantize(format, &x, &mut dst, &QuantizeOptions::default()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NonFinite { index: 33 }, "{format:?}");
        }
        x[33] = f32::NEG_INFINITY;
        x[34] = f32::NAN;
        let opts = QuantizeOptions {
            non_finite: NonFinite::Saturate,
            ..Default::default()
        };
        let y = round_trip(format, &x, &opts);
        assert!(y.iter().all(|v| v.is_finite()), "{format:?}");
        assert!(y[33] < -1000.0, "{format:?}: {}", y[33]);
        // NaN became 0, which IQ4_NL (no zero level) stores on its level
        // nearest 0: 1·d, about 1/113 of the block's largest magnitude.
        let zero_within = if format == Format::IQ4_NL { 1e-2 } else { 1e-3 };
        assert!(
            y[34].abs() < zero_within * limits::saturation_bound(format),
            "{format:?}: {}",
            y[34]
        );
    }
}

#[test]
fn subnormal_inputs_are_defined() {
    let sub = f32::from_bits(0x0012_0000); // a subnormal f32 that bfloat16 holds exactly
    // A block of subnormals is all zeros in the block formats, and 0 in F16.
    for format in ALL_FORMATS
        .into_iter()
        .filter(|f| f.is_block() || *f == Format::F16)
    {
        let y = round_trip(format, &[sub; 256], &QuantizeOptions::default());
        assert!(y.iter().all(|&v| v == 0.0), "{format:?}");
    }
    // BF16 and F32 keep them exactly; inside a normal block they quantize to 0.
    assert_eq!(
        round_trip(Format::BF16, &[sub; 32], &QuantizeOptions::default())[0],
        sub
    );
    let mut x = [sub; 32];
    x[0] = 1.0;
    let y = round_trip(Format::Q8_0, &x, &QuantizeOptions::default());
    assert_eq!(y[1], 0.0);
}

#[test]
fn threads_and_slices_do_not_change_the_bytes() {
    for format in ALL_FORMATS {
        let block = format.block_size().max(32);
        let n = (1 << 19) + 3 * block;
        let x = wave(n, 5);
        for rounding in [Rounding::Nearest, Rounding::Stochastic { seed: 99 }] {
            let bytes = |threads| {
                let mut q = vec![0u8; format.size_of(n).unwrap()];
                quantize(
                    format,
                    &x,
                    &mut q,
                    &QuantizeOptions {
                        rounding,
                        threads,
                        ..Default::default()
                    },
                )
                .unwrap();
                q
            };
            let one = bytes(1);
            assert_eq!(one, bytes(2), "{format:?} {rounding:?}");
            assert_eq!(one, bytes(5), "{format:?} {rounding:?}");
            // A slice quantized with its first_index equals the same range of the whole.
            let (from, to) = (block * 1000, block * 1500);
            let mut part = vec![0u8; format.size_of(to - from).unwrap()];
            let opts = QuantizeOptions {
                rounding,
                first_index: from as u64,
                ..Default::default()
            };
            quantize(format, &x[from..to], &mut part, &opts).unwrap();
            // The slice starts at a whole block, so its bytes are the whole
            // blocks before it.
            let start = format.size_of(from).unwrap();
            assert_eq!(
                start,
                from / format.block_size() * format.block_bytes(),
                "{format:?}"
            );
            assert_eq!(
                part,
                one[start..start + part.len()],
                "{format:?} {rounding:?}"
            );
        }
    }
}

/// Relative rounding of a normal f32 to f16 (round to nearest: half an ulp of 2^-10).
const F16_RELATIVE: f64 = 1.0 / 2048.0;

/// The f16-stored scale of a block quantized by stochastic rounding (the
/// same scale as nearest rounding), and the f32 scale it rounds.
fn block_scale(format: Format, block: &[f32]) -> (f64, f64) {
    let d = match format {
        Format::Q8_0 => scalar::absmax(block) / 127.0,
        Format::Q4_0 => scalar::signed_max(block) / -8.0,
        Format::Q5_0 => scalar::signed_max(block) / -16.0,
        Format::IQ4_NL => scalar::signed_max(block) / -127.0,
        Format::Q4_1 => {
            let (lo, hi) = block
                .iter()
                .fold((f32::MAX, -f32::MAX), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            (hi - lo) / 15.0
        }
        Format::F32 | Format::F16 | Format::BF16 | Format::Q4_K | Format::Q5_K | Format::Q6_K => {
            unreachable!("{format:?} has no block scale")
        }
    };
    let stored = scalar::f16_value(scalar::f16_bits(d));
    (f64::from(stored), f64::from(d))
}

/// The highest level of a format whose levels stop one short of its zero
/// point on the positive side (x/d beyond it clips), if it is one.
fn clip_level(format: Format) -> Option<f64> {
    match format {
        Format::Q4_0 => Some(7.0),
        Format::Q5_0 => Some(15.0),
        Format::IQ4_NL => Some(113.0),
        Format::F32
        | Format::F16
        | Format::BF16
        | Format::Q8_0
        | Format::Q4_1
        | Format::Q4_K
        | Format::Q5_K
        | Format::Q6_K => None,
    }
}

/// The lowest value, the step and the highest value that element e of a
/// K-quant super-block (its bytes) can take.
fn k_levels(format: Format, block: &[u8], e: usize) -> (f64, f64, f64) {
    let f16_at = |b: &[u8]| f64::from(scalar::f16_value(u16::from_le_bytes([b[0], b[1]])));
    match format {
        Format::Q4_K | Format::Q5_K => {
            let (sc, m) = kquant::scale_min(&block[4..16], e / 32);
            let (step, min) = (
                f16_at(block) * f64::from(sc),
                f16_at(&block[2..]) * f64::from(m),
            );
            let top = if format == Format::Q4_K { 15.0 } else { 31.0 };
            (-min, step, top * step - min)
        }
        Format::Q6_K => {
            let step = f16_at(&block[208..]) * f64::from(block[192 + e / 16] as i8);
            let (a, b) = (-32.0 * step, 31.0 * step);
            (a.min(b), step.abs(), a.max(b))
        }
        _ => unreachable!("{format:?} is not a K-quant"),
    }
}

/// The distance between the two levels around x/d = t, in units of d: 1
/// for the uniform formats, IQ4_NL's gap there.
fn level_gap(format: Format, t: f64) -> f64 {
    if format != Format::IQ4_NL {
        return 1.0;
    }
    let levels = scalar::IQ4_NL_LEVELS.map(f64::from);
    levels
        .windows(2)
        .find(|w| t < w[1])
        .map_or(levels[15] - levels[14], |w| w[1] - w[0])
}

#[test]
fn stochastic_rounding_is_unbiased() {
    // Each rounding picks one of the two levels around the value, one step s
    // apart, so it errs by less than s with variance at most s²/4: the mean of
    // R rounds has a standard deviation of at most s/(2·sqrt(R)); allow 6 of
    // those. The block formats also carry the bias of the stored scale: the
    // quants are unbiased for x/d, dequantized with d's f16 rounding
    // (relative 2^-11), and Q4_1 adds the f16 rounding of its minimum.
    // Nearest rounding errs by up to s/2 and fails this.
    let rounds = 400u64;
    let x = wave(256, 3);
    for format in QUANTIZED_FORMATS {
        let mut mean = vec![0.0f64; x.len()];
        for seed in 0..rounds {
            let y = round_trip(
                format,
                &x,
                &QuantizeOptions {
                    rounding: Rounding::Stochastic { seed },
                    ..Default::default()
                },
            );
            for (m, v) in mean.iter_mut().zip(&y) {
                *m += f64::from(*v) / rounds as f64;
            }
        }
        let sigmas = 6.0 / (2.0 * (rounds as f64).sqrt());
        let nearest = {
            let mut q = vec![0u8; format.size_of(x.len()).unwrap()];
            quantize(format, &x, &mut q, &QuantizeOptions::default()).unwrap();
            q
        };
        for (b, (xs, ms)) in x.chunks(QK).zip(mean.chunks(QK)).enumerate() {
            for (j, (&a, &m)) in xs.iter().zip(ms).enumerate() {
                let a64 = f64::from(a);
                let (step, bias) = match format {
                    // Nearest rounding's stored sub-block scales, which the
                    // dequantizer applies too: no bias from them. Beyond
                    // the levels' ends (the 6-bit scales round) every
                    // rounding clips.
                    Format::Q4_K | Format::Q5_K | Format::Q6_K => {
                        let (low, step, high) = k_levels(format, &nearest, QK * b + j);
                        if a64 < low || a64 > high {
                            let clip = if a64 < low { low } else { high };
                            assert!(
                                (m - clip).abs() <= 1e-6 * step,
                                "{format:?} block {b} [{j}] mean {m} vs the clip level {clip}"
                            );
                            continue;
                        }
                        (step, 0.0)
                    }
                    Format::F32 => unreachable!("F32 is not quantized"),
                    // One ulp at |a| (a is normal here) and no bias.
                    Format::F16 => (a64.abs() / 1024.0, 0.0),
                    Format::BF16 => (a64.abs() / 128.0, 0.0),
                    Format::Q8_0 | Format::Q4_0 | Format::Q5_0 | Format::IQ4_NL => {
                        let (s, d) = block_scale(format, xs);
                        if let Some(top) = clip_level(format).filter(|top| a64 / d > *top) {
                            // Beyond the highest level every rounding clips to it.
                            let clip = top * s;
                            assert!(
                                (m - clip).abs() <= 1e-9 * clip.abs(),
                                "{format:?} block {b} [{j}] mean {m} vs the clip level {clip}"
                            );
                            continue;
                        }
                        (
                            s.abs() * level_gap(format, a64 / d),
                            a64.abs() * F16_RELATIVE,
                        )
                    }
                    Format::Q4_1 => {
                        let (s, _) = block_scale(format, xs);
                        let min = f64::from(xs.iter().fold(f32::MAX, |lo, &v| lo.min(v)));
                        (s, ((a64 - min).abs() + min.abs()) * F16_RELATIVE)
                    }
                };
                // The f32 products that make the levels err by a few 2^-24 of them.
                let tolerance = sigmas * step + bias + 1e-5 * step + 1e-7;
                assert!(
                    (m - a64).abs() <= tolerance,
                    "{format:?} block {b} [{j}] mean {m} vs {a} (tol {tolerance}, step {step})"
                );
            }
        }
    }
}

#[test]
fn f16_stochastic_rounding_is_unbiased_among_subnormals_and_below() {
    // 50.33 and 0.33 steps of binary16's smallest subnormal (2⁻²⁴): inside
    // its subnormal range, where fewer mantissa bits are kept, and below
    // it. 4096 elements draw 4096 roundings; their mean is the value within
    // six standard deviations (each rounding is one of two values a step
    // apart: σ ≤ step/2/√4096). Nearest rounding is a third of a step off.
    let step = 2f64.powi(-24);
    for steps in [50.33, 0.33] {
        let x = vec![(steps * step) as f32; 4096];
        let opts = QuantizeOptions {
            rounding: Rounding::Stochastic { seed: 3 },
            ..Default::default()
        };
        let mut y = vec![0.0f32; x.len()];
        fake_quantize(Format::F16, &x, &mut y, &opts).unwrap();
        let mean = y.iter().map(|&v| f64::from(v)).sum::<f64>() / y.len() as f64;
        let bound = 6.0 * step / 2.0 / 64.0;
        assert!(
            (mean - f64::from(x[0])).abs() <= bound,
            "{steps} steps: mean {mean:e}, value {:e}",
            x[0]
        );
    }
}

#[test]
fn each_element_draws_its_own_stochastic_rounding() {
    // A super-block whose first element is 0 and second 1, the rest
    // between two levels of every format (0.45 for the block formats, 1/3
    // for F16 and BF16). Each element draws its own uniform number
    // (rng::uniform at its own index), so the middle values of the first
    // 32 split between the two levels; one draw shared by a block would
    // round them all the same way in every call.
    for format in QUANTIZED_FORMATS {
        let middle = if format.block_size() == 1 {
            1.0 / 3.0
        } else {
            0.45
        };
        let mut x = vec![middle; 256];
        x[0] = 0.0;
        x[1] = 1.0;
        let split = (0..4).any(|seed| {
            let opts = QuantizeOptions {
                rounding: Rounding::Stochastic { seed },
                ..Default::default()
            };
            let mut y = vec![0.0f32; x.len()];
            fake_quantize(format, &x, &mut y, &opts).unwrap();
            y[2..32].iter().any(|&v| v != y[2])
        });
        assert!(split, "{format:?}");
    }
}

#[test]
fn stochastic_rounding_depends_on_the_seed_only() {
    let x = wave(4096, 8);
    let run = |seed| {
        let mut q = vec![0u8; Format::Q4_0.size_of(x.len()).unwrap()];
        quantize(
            Format::Q4_0,
            &x,
            &mut q,
            &QuantizeOptions {
                rounding: Rounding::Stochastic { seed },
                ..Default::default()
            },
        )
        .unwrap();
        q
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn importance_is_validated() {
    let x = wave(128, 2);
    let mut q = vec![0u8; Format::Q4_0.size_of(128).unwrap()];
    for bad in [vec![1.0f32; 48], vec![1.0f32; 96], vec![]] {
        let opts = QuantizeOptions {
            rounding: Rounding::ErrorMinimising,
            importance: Some(&bad),
            ..Default::default()
        };
        assert_eq!(
            quantize(Format::Q4_0, &x, &mut q, &opts)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidArgument
        );
    }
    let negative = vec![-1.0f32; 64];
    let opts = QuantizeOptions {
        rounding: Rounding::ErrorMinimising,
        importance: Some(&negative),
        ..Default::default()
    };
    assert!(quantize(Format::Q4_0, &x, &mut q, &opts).is_err());
    let fine = vec![1.0f32; 64];
    let opts = QuantizeOptions {
        rounding: Rounding::ErrorMinimising,
        importance: Some(&fine),
        ..Default::default()
    };
    quantize(Format::Q4_0, &x, &mut q, &opts).unwrap();
}

#[test]
fn fake_quantize_equals_the_round_trip() {
    // Three threads take a share each only from 3·2¹⁶ values
    // (MIN_ELEMENTS_PER_THREAD): each share then starts at a block other
    // than the first and spans many of the fused pass's chunks.
    for format in ALL_FORMATS {
        for (rounding, threads) in [
            (Rounding::Nearest, 1),
            (Rounding::Nearest, 3),
            (Rounding::Stochastic { seed: 5 }, 1),
            (Rounding::Stochastic { seed: 5 }, 3),
            (Rounding::ErrorMinimising, 1),
        ] {
            let n: usize = if threads == 1 {
                8192 + 64
            } else {
                (3 << 16) + 64
            };
            let x = wave(n.next_multiple_of(format.block_size()), 4);
            let opts = QuantizeOptions {
                rounding,
                threads,
                ..Default::default()
            };
            let mut fused = vec![0.0f32; x.len()];
            fake_quantize(format, &x, &mut fused, &opts).unwrap();
            let one_thread = QuantizeOptions { threads: 1, ..opts };
            assert!(
                fused == round_trip(format, &x, &one_thread),
                "{format:?} {rounding:?} on {threads} threads"
            );
        }
    }
}

#[test]
fn dequantize_to_f16_rounds_each_value() {
    // On one thread, and on three, which take a share each only from 3·2¹⁶
    // values (MIN_ELEMENTS_PER_THREAD): each share then starts at a block
    // other than the first.
    for (n, threads) in [(4096, 2), ((3 << 16) + 256, 3)] {
        let x = wave(n, 6);
        for format in ALL_FORMATS {
            let mut q = vec![0u8; format.size_of(x.len()).unwrap()];
            quantize(format, &x, &mut q, &QuantizeOptions::default()).unwrap();
            let mut y = vec![0.0f32; x.len()];
            dequantize(format, &q, &mut y, 1).unwrap();
            let mut h = vec![0u16; x.len()];
            dequantize_to_f16(format, &q, &mut h, threads).unwrap();
            assert!(
                h.iter().zip(&y).all(|(&h, &v)| h == scalar::f16_bits(v)),
                "{format:?} on {threads} threads"
            );
        }
    }
}

/// Squared error Σ w·(x − x̂)² of `x` quantized to `format` with `opts`.
fn weighted_squared_error(format: Format, x: &[f32], w: &[f32], opts: &QuantizeOptions) -> f64 {
    let y = round_trip(format, x, opts);
    x.iter()
        .zip(&y)
        .enumerate()
        .map(|(i, (&a, &b))| f64::from(w[i % w.len()]) * (f64::from(a) - f64::from(b)).powi(2))
        .sum()
}

#[test]
fn q8_0_stochastic_rounding_splits_between_the_two_levels() {
    // A block whose largest magnitude is 127 has the exact scale d = 1, so
    // 10.25 lies a quarter of the way from level 10 to 11, and −10.75 three
    // quarters of the way from −10 to −11. Each rounding is one of the two
    // levels; over n roundings the mean has a standard deviation of
    // sqrt(p(1−p)/n) (p = 1/4); allow 6 of those. Nearest rounding always
    // gives 10 and −11, a quarter step off, and fails.
    let mut x = [10.25f32; QK];
    x[0] = 127.0;
    x[QK / 2..].fill(-10.75);
    let seeds = 200u64;
    let nearest = {
        let mut q = [0u8; 34];
        quantize(Format::Q8_0, &x, &mut q, &QuantizeOptions::default()).unwrap();
        q
    };
    assert_eq!(u16::from_le_bytes([nearest[0], nearest[1]]), 0x3c00); // d = 1.0
    let (mut sum_up, mut sum_down, mut differs) = (0.0f64, 0.0f64, false);
    for seed in 0..seeds {
        let mut q = [0u8; 34];
        let opts = QuantizeOptions {
            rounding: Rounding::Stochastic { seed },
            ..Default::default()
        };
        quantize(Format::Q8_0, &x, &mut q, &opts).unwrap();
        assert_eq!(q[..3], nearest[..3], "the scale and the exact 127 stay");
        differs |= q != nearest;
        for (j, &byte) in q[3..].iter().enumerate() {
            let level = byte as i8;
            if j + 1 < QK / 2 {
                assert!(
                    [10, 11].contains(&level),
                    "seed {seed} [{}]: {level}",
                    j + 1
                );
                sum_up += f64::from(level);
            } else {
                assert!(
                    [-11, -10].contains(&level),
                    "seed {seed} [{}]: {level}",
                    j + 1
                );
                sum_down += f64::from(level);
            }
        }
    }
    assert!(
        differs,
        "stochastic rounding gave nearest's bytes for every seed"
    );
    for (sum, count, value) in [
        (sum_up, (QK / 2 - 1) as u64 * seeds, 10.25),
        (sum_down, (QK / 2) as u64 * seeds, -10.75),
    ] {
        let n = count as f64;
        let tolerance = 6.0 * (0.25f64 * 0.75 / n).sqrt();
        let mean = sum / n;
        assert!(
            (mean - value).abs() <= tolerance,
            "mean {mean} vs {value} (tol {tolerance})"
        );
    }
}

#[test]
fn q8_0_error_minimising_beats_nearest_where_another_scale_is_exact() {
    // Integers from −126 to 126: nearest's scale 126/127 (f16 0.9921875) puts
    // most of them between levels, while the scale 1, which the search tries
    // (amax/126), represents every one exactly; a search that keeps the
    // lowest error must end strictly below nearest.
    let x: Vec<f32> = (0..QK * 8)
        .map(|i| match i % QK {
            0 => 126.0,
            _ => ((i * 37) % 253) as f32 - 126.0,
        })
        .collect();
    assert!(x.chunks(QK).all(|b| scalar::absmax(b) == 126.0));
    let ones = [1.0f32; QK];
    let nearest = weighted_squared_error(Format::Q8_0, &x, &ones, &QuantizeOptions::default());
    let searched = weighted_squared_error(
        Format::Q8_0,
        &x,
        &ones,
        &QuantizeOptions {
            rounding: Rounding::ErrorMinimising,
            ..Default::default()
        },
    );
    assert!(nearest > 0.0);
    assert!(searched < nearest, "{searched} vs nearest {nearest}");
    assert_eq!(searched, 0.0);

    // On smooth data with noise each block is never worse, and in total better.
    let x = wave(QK * 64, 11);
    let (mut near_total, mut best_total) = (0.0, 0.0);
    for block in x.chunks(QK) {
        let near = weighted_squared_error(Format::Q8_0, block, &ones, &QuantizeOptions::default());
        let best = weighted_squared_error(
            Format::Q8_0,
            block,
            &ones,
            &QuantizeOptions {
                rounding: Rounding::ErrorMinimising,
                ..Default::default()
            },
        );
        assert!(best <= near, "{best} vs nearest {near}");
        near_total += near;
        best_total += best;
    }
    assert!(
        best_total < near_total,
        "{best_total} vs nearest {near_total}"
    );
}

#[test]
fn q4_1_importance_lowers_the_weighted_error() {
    // Importance 100 on the first 8 columns of every block: the search that is
    // told so ends with a strictly lower weighted error than the one that
    // weighs every column alike (it trades the unimportant columns' error for
    // the important ones').
    let x = wave(QK * 64, 21);
    let mut importance = [1.0f32; QK];
    importance[..8].fill(100.0);
    let plain = weighted_squared_error(
        Format::Q4_1,
        &x,
        &importance,
        &QuantizeOptions {
            rounding: Rounding::ErrorMinimising,
            ..Default::default()
        },
    );
    let weighted = weighted_squared_error(
        Format::Q4_1,
        &x,
        &importance,
        &QuantizeOptions {
            rounding: Rounding::ErrorMinimising,
            importance: Some(&importance),
            ..Default::default()
        },
    );
    assert!(weighted < plain, "{weighted} vs unweighted {plain}");
}

/// Blocks whose values are exact ties after scaling: in each, the largest
/// magnitude is 127·2^e (so the Q8_0 scale d = 2^e is exact), and the others
/// are (k + 1/2)·2^e. Eleven blocks: a group of eight for the SIMD path's
/// grouped scales, then three alone.
fn q8_0_ties() -> Vec<f32> {
    (0..11)
        .flat_map(|b: i32| {
            let d = 2.0f32.powi(b % 4 - 2);
            (0..QK as i32).map(move |j| {
                let level = if j == (b * 5) % QK as i32 {
                    if b % 2 == 0 { 127.0 } else { -127.0 }
                } else {
                    let k = (j * 9 + b * 13) % 253 - 126; // −126..=126
                    k as f32 + if k < 0 { -0.5 } else { 0.5 }
                };
                level * d
            })
        })
        .collect()
}

#[test]
fn q8_0_ties_round_away_from_zero_on_every_path() {
    // ggml rounds x·id half away from zero (C's roundf). The portable kernel
    // must give that; the AVX2/F16C kernel must give the same bytes where the
    // CPU has those features (elsewhere it does not exist and only the
    // portable result is checked). Q4_0 and Q4_1 truncate x·id + 8.5 and
    // (x − min)·id + 0.5, so these ties test their SIMD path's rule too.
    let x = q8_0_ties();
    let mut portable = vec![0u8; Format::Q8_0.size_of(x.len()).unwrap()];
    (CpuKernels::of(Format::Q8_0).nearest)(&x, &mut portable);
    for (b, (xs, block)) in x.chunks(QK).zip(portable.chunks(34)).enumerate() {
        let d = scalar::absmax(xs) / 127.0;
        assert_eq!(
            scalar::f16_value(u16::from_le_bytes([block[0], block[1]])),
            d
        );
        for (j, (&v, &q)) in xs.iter().zip(&block[2..]).enumerate() {
            let t = v / d; // exact: d is a power of two
            let away = t.signum() * (t.abs() + 0.5).floor();
            assert_eq!(q as i8 as f32, away, "block {b} [{j}]: {t}");
        }
    }
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c") {
        // The K-quants take the ties padded to whole super-blocks.
        for format in ALL_FORMATS.into_iter().filter(|f| f.is_block()) {
            let mut x = x.clone();
            x.resize(x.len().next_multiple_of(format.block_size()), 0.25);
            let kernels = CpuKernels::of(format);
            let size = format.size_of(x.len()).unwrap();
            let (mut portable, mut simd) = (vec![0u8; size], vec![0u8; size]);
            (kernels.nearest)(&x, &mut portable);
            if simd_x86::quantize(kernels.simd.nearest, format, &x, &mut simd) {
                assert_eq!(portable, simd, "{format:?}");
            }
        }
    }
}

#[test]
fn importance_follows_first_index_even_off_block_boundaries() {
    // The fuzzer's case: n = 32, 32 importance values, first_index = 1 (once a
    // panic on slicing past the end of the importance vector).
    for format in QUANTIZED_FORMATS {
        let n = format.block_size().max(32);
        let x = wave(n, 8);
        let importance: Vec<f32> = (0..n).map(|i| 1.0 + i as f32).collect();
        let opts = |first_index| QuantizeOptions {
            rounding: Rounding::ErrorMinimising,
            importance: Some(&importance),
            first_index,
            ..Default::default()
        };
        let mut q = vec![0u8; format.size_of(n).unwrap()];
        quantize(format, &x, &mut q, &opts(1)).unwrap();
        let mut y = vec![0.0f32; n];
        fake_quantize(format, &x, &mut y, &opts(1)).unwrap();
        // Element i is weighted by importance[(first_index + i) % len]: with
        // first_index = n + 5 it is the rotation by 5.
        let rotated: Vec<f32> = (0..n).map(|i| importance[(i + 5) % n]).collect();
        let mut a = vec![0u8; q.len()];
        let mut b = vec![0u8; q.len()];
        quantize(format, &x, &mut a, &opts(n as u64 + 5)).unwrap();
        let by_hand = QuantizeOptions {
            importance: Some(&rotated),
            ..opts(0)
        };
        quantize(format, &x, &mut b, &by_hand).unwrap();
        assert_eq!(a, b, "{format:?}");
    }
}

#[test]
fn first_index_past_i64_max_is_rejected_and_indices_do_not_wrap() {
    let x = vec![1.0f32; 32];
    let mut q = vec![0u8; Format::Q8_0.size_of(32).unwrap()];
    for first_index in [u64::MAX, i64::MAX as u64 - 31] {
        let opts = QuantizeOptions {
            rounding: Rounding::Stochastic { seed: 1 },
            first_index,
            ..Default::default()
        };
        let e = quantize(Format::Q8_0, &x, &mut q, &opts).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("i64::MAX"), "{}", e.message());
    }
    // The largest allowed first_index reports the bad element's index in
    // the whole tensor.
    let mut bad = vec![1.0f32; 32];
    bad[3] = f32::NAN;
    let first_index = i64::MAX as u64 - 32;
    let opts = QuantizeOptions {
        first_index,
        ..Default::default()
    };
    let e = quantize(Format::Q8_0, &bad, &mut q, &opts).unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::NonFinite {
            index: (first_index + 3) as usize
        }
    );
}

#[test]
fn a_range_check_on_several_threads_reports_the_first_bad_element() {
    // Four threads' worth (each scans a quarter): bad elements in the second
    // and last quarters, the first one the error names, with first_index
    // added; saturation sees them too.
    let n = 4 * 65_536;
    let mut x = vec![0.5f32; n];
    x[n / 4 + 77] = f32::INFINITY;
    x[n - 5] = f32::NAN;
    let mut q = vec![0u8; Format::Q8_0.size_of(n).unwrap()];
    let opts = QuantizeOptions {
        threads: 4,
        first_index: 1000,
        ..Default::default()
    };
    let e = quantize(Format::Q8_0, &x, &mut q, &opts).unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::NonFinite {
            index: 1000 + n / 4 + 77
        }
    );
    assert!(q.iter().all(|&b| b == 0), "nothing written");
    let mut y = vec![0.0f32; n];
    let e = fake_quantize(Format::Q8_0, &x, &mut y, &opts).unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::NonFinite {
            index: 1000 + n / 4 + 77
        }
    );
    let saturating = QuantizeOptions {
        non_finite: NonFinite::Saturate,
        ..opts
    };
    let one_thread = QuantizeOptions {
        threads: 1,
        ..saturating
    };
    let mut q1 = vec![0u8; q.len()];
    quantize(Format::Q8_0, &x, &mut q, &saturating).unwrap();
    quantize(Format::Q8_0, &x, &mut q1, &one_thread).unwrap();
    assert_eq!(q, q1);
}

#[test]
fn q4_1_stores_the_minimums_sign_as_nearest_does_in_every_rounding() {
    let m_bits = |q: &[u8]| u16::from_le_bytes([q[2], q[3]]);
    let mut blocks = Vec::new();
    for first in [-0.0f32, 0.0] {
        // A block on an exact grid from 0: every rounding keeps m = ±0.
        let mut x: Vec<f32> = (0..32).map(|j| (j % 16) as f32 * 0.125).collect();
        x[0] = first;
        x[16] = -first;
        blocks.push(x);
    }
    blocks.push(vec![-0.0f32; 32]);
    for x in &blocks {
        let mut nearest = vec![0u8; 20];
        quantize(Format::Q4_1, x, &mut nearest, &QuantizeOptions::default()).unwrap();
        for rounding in [Rounding::ErrorMinimising, Rounding::Stochastic { seed: 4 }] {
            let mut q = vec![0u8; 20];
            let opts = QuantizeOptions {
                rounding,
                ..Default::default()
            };
            quantize(Format::Q4_1, x, &mut q, &opts).unwrap();
            assert_eq!(m_bits(&q), m_bits(&nearest), "{rounding:?} {:?}", &x[..4]);
        }
    }
}

#[test]
fn the_cpu_kernels_are_named_as_detected() {
    #[cfg(target_arch = "x86_64")]
    let expected = if super::simd_x86::available() {
        "avx2+f16c"
    } else {
        "portable"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let expected = "portable";
    assert_eq!(super::cpu_kernels(), expected);
}
