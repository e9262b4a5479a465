//! Tests of the public kernels: contracts, round trips, threads, rounding modes.

use super::*;
use crate::ErrorKind;
use crate::format::{ALL_FORMATS, QUANTIZED_FORMATS};

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
    for n in [32, 64 * 1023, (1 << 20) + 32] {
        let x = wave(n, n as u32);
        for format in ALL_FORMATS {
            let y = round_trip(format, &x, &QuantizeOptions::default());
            let bound = match format {
                Format::F32 => 0.0,
                Format::F16 => 1.0 / 2048.0,
                Format::BF16 => 1.0 / 256.0,
                // Half a step, plus the f16 rounding of the scale (2^-11
                // relative) times the largest level; Q4_0's positive end clips
                // at 7/8 of the range.
                Format::Q8_0 => (0.5 + 127.0 / 2048.0) / 127.0,
                Format::Q4_0 => 1.0 / 8.0 + 8.0 / 2048.0,
                Format::Q4_1 => 1.0 / 15.0 + 2.0 / 2048.0,
            };
            for (b, (xs, ys)) in x.chunks(32).zip(y.chunks(32)).enumerate() {
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
    let x = wave(96, 1);
    for format in ALL_FORMATS {
        let needed = format.size_of(96).unwrap();
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
        let mut x = vec![0.5f32; 64];
        if limit.is_finite() {
            x[33] = -limit;
            let mut dst = vec![0u8; format.size_of(64).unwrap()];
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
        assert!(
            y[34].abs() < 1e-3 * limits::saturation_bound(format),
            "{format:?}"
        );
    }
}

#[test]
fn subnormal_inputs_are_defined() {
    let sub = f32::from_bits(0x0012_0000); // a subnormal f32 that bfloat16 holds exactly
    // A block of subnormals is all zeros in the block formats, and 0 in F16.
    for format in [Format::Q8_0, Format::Q4_0, Format::Q4_1, Format::F16] {
        let y = round_trip(format, &[sub; 32], &QuantizeOptions::default());
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
    let n = (1 << 19) + 96;
    let x = wave(n, 5);
    for format in ALL_FORMATS {
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
            let (from, to) = (32 * 1000, 32 * 1500);
            let mut part = vec![0u8; format.size_of(to - from).unwrap()];
            let opts = QuantizeOptions {
                rounding,
                first_index: from as u64,
                ..Default::default()
            };
            quantize(format, &x[from..to], &mut part, &opts).unwrap();
            let per = format.block_bytes() / format.block_size().min(format.block_bytes());
            let _ = per;
            let start = format.size_of(from).unwrap();
            assert_eq!(
                part,
                one[start..start + part.len()],
                "{format:?} {rounding:?}"
            );
        }
    }
}

#[test]
fn stochastic_rounding_is_unbiased() {
    // The mean of many independent roundings converges to the input: with R
    // rounds, each error is at most one step s, so the mean's standard
    // deviation is at most s/(2·sqrt(R)); allow 6 of those.
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
        let nearest = round_trip(format, &x, &QuantizeOptions::default());
        for (i, (&m, &a)) in mean.iter().zip(&x).enumerate() {
            // One quantization step is at most twice the nearest-rounding error bound.
            let step = match format {
                Format::F16 => a.abs() as f64 / 1024.0,
                Format::BF16 => a.abs() as f64 / 128.0,
                _ => 2.0 * (f64::from(a) - f64::from(nearest[i])).abs().max(0.7 / 7.0),
            };
            let tolerance = 6.0 * step / (2.0 * (rounds as f64).sqrt()) + 1e-7;
            assert!(
                (m - f64::from(a)).abs() <= tolerance,
                "{format:?} [{i}] mean {m} vs {a} (tol {tolerance})"
            );
        }
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
    let x = wave(8192 + 64, 4);
    for format in ALL_FORMATS {
        for rounding in [
            Rounding::Nearest,
            Rounding::Stochastic { seed: 5 },
            Rounding::ErrorMinimising,
        ] {
            let opts = QuantizeOptions {
                rounding,
                ..Default::default()
            };
            let mut fused = vec![0.0f32; x.len()];
            fake_quantize(format, &x, &mut fused, &opts).unwrap();
            assert_eq!(
                fused,
                round_trip(format, &x, &opts),
                "{format:?} {rounding:?}"
            );
        }
    }
}

#[test]
fn dequantize_to_f16_rounds_each_value() {
    let x = wave(4096, 6);
    for format in ALL_FORMATS {
        let mut q = vec![0u8; format.size_of(x.len()).unwrap()];
        quantize(format, &x, &mut q, &QuantizeOptions::default()).unwrap();
        let mut y = vec![0.0f32; x.len()];
        dequantize(format, &q, &mut y, 1).unwrap();
        let mut h = vec![0u16; x.len()];
        dequantize_to_f16(format, &q, &mut h, 2).unwrap();
        assert!(
            h.iter().zip(&y).all(|(&h, &v)| h == scalar::f16_bits(v)),
            "{format:?}"
        );
    }
}

#[test]
fn importance_follows_first_index_even_off_block_boundaries() {
    // The fuzzer's case: n = 32, 32 importance values, first_index = 1 (once a
    // panic on slicing past the end of the importance vector).
    let x = wave(32, 8);
    let importance: Vec<f32> = (0..32).map(|i| 1.0 + i as f32).collect();
    for format in QUANTIZED_FORMATS {
        let opts = |first_index| QuantizeOptions {
            rounding: Rounding::ErrorMinimising,
            importance: Some(&importance),
            first_index,
            ..Default::default()
        };
        let mut q = vec![0u8; format.size_of(32).unwrap()];
        quantize(format, &x, &mut q, &opts(1)).unwrap();
        let mut y = vec![0.0f32; 32];
        fake_quantize(format, &x, &mut y, &opts(1)).unwrap();
        // Element i is weighted by importance[(first_index + i) % len]: with
        // first_index = 32 + 5 it is the rotation by 5.
        let rotated: Vec<f32> = (0..32).map(|i| importance[(i + 5) % 32]).collect();
        let mut a = vec![0u8; q.len()];
        let mut b = vec![0u8; q.len()];
        quantize(format, &x, &mut a, &opts(37)).unwrap();
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
