//! Products against an FP64 reference built from independently decoded weights.

use super::*;
use crate::format::ALL_FORMATS;
use crate::quant::{QuantizeOptions, quantize};
use half::f16;

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / 16_777_216.0 - 0.5) * 2.0
        })
        .collect()
}

/// Decodes one row straight from the layout in DESIGN.md, as (d·q, m) pairs:
/// the weight is their sum, and |d·q| + |m| bounds its rounding.
fn decode_row(format: Format, row: &[u8], cols: usize) -> Vec<(f64, f64)> {
    let h = |b: &[u8]| f64::from(f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32());
    // The 4-bit part of element j of a block whose nibbles start at `qs`:
    // the low nibble of byte j, or the high one of byte j − 16.
    let nibble = |qs: &[u8], j: usize| {
        if j < 16 { qs[j] & 15 } else { qs[j - 16] >> 4 }
    };
    (0..cols)
        .map(|c| match format {
            Format::F32 => (
                f64::from(f32::from_le_bytes(
                    row[4 * c..4 * c + 4].try_into().unwrap(),
                )),
                0.0,
            ),
            Format::F16 => (h(&row[2 * c..]), 0.0),
            Format::BF16 => (
                f64::from(f32::from_bits(
                    u32::from(u16::from_le_bytes([row[2 * c], row[2 * c + 1]])) << 16,
                )),
                0.0,
            ),
            Format::Q8_0 => {
                let b = &row[34 * (c / 32)..];
                (h(b) * f64::from(b[2 + c % 32] as i8), 0.0)
            }
            Format::Q4_0 | Format::Q4_1 => {
                let (size, offset) = if format == Format::Q4_0 {
                    (18, 2)
                } else {
                    (20, 4)
                };
                let b = &row[size * (c / 32)..];
                let nibble = nibble(&b[offset..], c % 32);
                if format == Format::Q4_0 {
                    (h(b) * (f64::from(nibble) - 8.0), 0.0)
                } else {
                    (h(b) * f64::from(nibble), h(&b[2..]))
                }
            }
            Format::Q5_0 => {
                let b = &row[22 * (c / 32)..];
                let j = c % 32;
                let nibble = nibble(&b[6..], j);
                let high = (u32::from_le_bytes([b[2], b[3], b[4], b[5]]) >> j) & 1;
                let level = u32::from(nibble) | high << 4;
                (h(b) * (f64::from(level) - 16.0), 0.0)
            }
            Format::IQ4_NL => {
                const LEVELS: [i8; 16] = [
                    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
                ];
                let b = &row[18 * (c / 32)..];
                let level = LEVELS[usize::from(nibble(&b[2..], c % 32))];
                (h(b) * f64::from(level), 0.0)
            }
            Format::Q4_K | Format::Q5_K => {
                // ggml's block_q4_K / block_q5_K: d, dmin, scales[12], (qh[32],) qs[128].
                let size = if format == Format::Q4_K { 144 } else { 176 };
                let b = &row[size * (c / 256)..];
                let (e, j) = (c % 256, c % 256 / 32);
                let s = &b[4..16];
                let (sc, m) = if j < 4 {
                    (s[j] & 63, s[j + 4] & 63)
                } else {
                    (
                        (s[j + 4] & 15) | (s[j - 4] >> 6) << 4,
                        (s[j + 4] >> 4) | (s[j] >> 6) << 4,
                    )
                };
                let qs = &b[size - 128..];
                let byte = qs[32 * (e / 64) + e % 32];
                let mut q = if e % 64 < 32 { byte & 15 } else { byte >> 4 };
                if format == Format::Q5_K {
                    q |= ((b[16 + e % 32] >> j) & 1) << 4;
                }
                (
                    h(b) * f64::from(sc) * f64::from(q),
                    -h(&b[2..]) * f64::from(m),
                )
            }
            Format::Q6_K => {
                // ggml's block_q6_K: ql[128], qh[64], scales[16], d.
                let b = &row[210 * (c / 256)..];
                let e = c % 256;
                let (half, k, l) = (e / 128, e % 128 / 32, e % 32);
                let low = b[64 * half + 32 * (k % 2) + l];
                let low = if k < 2 { low & 15 } else { low >> 4 };
                let high = (b[128 + 32 * half + l] >> (2 * k)) & 3;
                let q = i32::from(low | high << 4) - 32;
                let sc = b[192 + e / 16] as i8;
                (h(&b[208..]) * f64::from(sc) * f64::from(q), 0.0)
            }
        })
        .collect()
}

/// Shapes whose rows are whole blocks of `format`.
fn shapes(format: Format) -> &'static [(usize, usize)] {
    if format.block_size() == crate::format::QK_K {
        &[(1, 256), (7, 768), (257, 256), (5, 4352), (33, 512)]
    } else {
        &[(1, 32), (7, 96), (4097, 32), (5, 4128), (33, 64)]
    }
}

fn weights(format: Format, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let values = data(rows * cols, seed);
    let mut w = vec![0u8; format.size_of(rows * cols).unwrap()];
    quantize(format, &values, &mut w, &QuantizeOptions::default()).unwrap();
    w
}

const U: f64 = 1.0 / 16_777_216.0;

/// What quantizing x to 8 bits per block of 32 may add for the formats with
/// an integer path: half a step of x's block scale times Σ|w| of the block.
fn x_quantization_bound(format: Format, row: &[(f64, f64)], x: &[f32]) -> f64 {
    if !format.spec().cpu.integer_matvec {
        return 0.0;
    }
    row.chunks(32)
        .zip(x.chunks(32))
        .map(|(w, xs)| {
            let step = f64::from(xs.iter().fold(0.0f32, |m, v| m.max(v.abs()))) / 127.0;
            0.500_01 * step * w.iter().map(|(dq, m)| (dq + m).abs()).sum::<f64>()
        })
        .sum()
}

#[test]
fn products_agree_with_fp64_within_the_documented_bound() {
    for format in ALL_FORMATS {
        for &(rows, cols) in shapes(format) {
            for batch in [1, 3, 8] {
                let w = weights(format, rows, cols, (rows * cols) as u64);
                let row_bytes = format.size_of(cols).unwrap();
                let decoded: Vec<Vec<(f64, f64)>> = (0..rows)
                    .map(|r| decode_row(format, &w[r * row_bytes..(r + 1) * row_bytes], cols))
                    .collect();
                let bias = data(rows, 9);
                let x = data(batch * cols, 5);
                let mut y = vec![f32::NAN; batch * rows];
                matvec(format, &w, rows, cols, &x, batch, Some(&bias), &mut y, 2).unwrap();
                for b in 0..batch {
                    for r in 0..rows {
                        let (mut exact, mut magnitude) = (0.0f64, 0.0f64);
                        for c in 0..cols {
                            let (dq, m) = decoded[r][c];
                            let xv = f64::from(x[b * cols + c]);
                            exact += (dq + m) * xv;
                            magnitude += (dq.abs() + m.abs()) * xv.abs();
                        }
                        let got = f64::from(y[b * rows + r]) - f64::from(bias[r]);
                        let bound = (cols as f64 + 3.0) * U * magnitude
                            + 2.0 * U * (exact.abs() + f64::from(bias[r]).abs())
                            + x_quantization_bound(
                                format,
                                &decoded[r],
                                &x[b * cols..(b + 1) * cols],
                            );
                        assert!(
                            (got - exact).abs() <= bound,
                            "{format:?} {rows}x{cols} b{b} r{r}: {got} vs {exact} (bound {bound})"
                        );
                    }
                }
                // The transposed product: y[b][c] = Σ_r x[b][r]·W[r][c].
                let xt = data(batch * rows, 6);
                let mut yt = vec![f32::NAN; batch * cols];
                matvec_transposed(format, &w, rows, cols, &xt, batch, &mut yt, 2).unwrap();
                for b in 0..batch {
                    for c in 0..cols {
                        let (mut exact, mut magnitude) = (0.0f64, 0.0f64);
                        for r in 0..rows {
                            let (dq, m) = decoded[r][c];
                            let xv = f64::from(xt[b * rows + r]);
                            exact += (dq + m) * xv;
                            magnitude += (dq.abs() + m.abs()) * xv.abs();
                        }
                        let bound = (rows as f64 + 3.0) * U * magnitude;
                        let got = f64::from(yt[b * cols + c]);
                        assert!(
                            (got - exact).abs() <= bound,
                            "{format:?} T {rows}x{cols} b{b} c{c}: {got} vs {exact}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn simd_and_portable_rows_agree_within_the_bound_and_threads_do_not_matter() {
    let (rows, cols) = (300, 1024);
    for format in ALL_FORMATS {
        let w = weights(format, rows, cols, 3);
        let x = data(2 * cols, 4);
        let (mut one, mut many) = (vec![0.0; 2 * rows], vec![0.0; 2 * rows]);
        matvec(format, &w, rows, cols, &x, 2, None, &mut one, 1).unwrap();
        matvec(format, &w, rows, cols, &x, 2, None, &mut many, 4).unwrap();
        assert_eq!(one, many, "{format:?}: threads changed the result");
        let row_bytes = format.size_of(cols).unwrap();
        let mut sums = [0.0f32; MAX_BATCH];
        let dequantize = crate::cpu_kernels::CpuKernels::of(format).dequantize;
        row::portable(format, dequantize, &w[..row_bytes], cols, &x, 2, &mut sums);
        let decoded = decode_row(format, &w[..row_bytes], cols);
        let magnitude: f64 = decoded
            .iter()
            .zip(&x)
            .map(|((dq, m), v)| (dq.abs() + m.abs()) * f64::from(v.abs()))
            .sum();
        let bound = 2.0 * (cols as f64 + 3.0) * U * magnitude
            + x_quantization_bound(format, &decoded, &x[..cols]);
        assert!(f64::from((sums[0] - one[0]).abs()) <= bound, "{format:?}");
    }
}

#[test]
fn nan_and_inf_in_x_propagate() {
    let (rows, cols) = (4, 256);
    for format in ALL_FORMATS {
        let w = weights(format, rows, cols, 1);
        for bad in [f32::NAN, f32::INFINITY] {
            let mut x = data(cols, 2);
            x[17] = bad;
            let mut y = vec![0.0; rows];
            matvec(format, &w, rows, cols, &x, 1, None, &mut y, 1).unwrap();
            assert!(y.iter().all(|v| !v.is_finite()), "{format:?} {bad}: {y:?}");
        }
    }
}

#[test]
fn bad_shapes_and_buffers_are_errors() {
    let w = weights(Format::Q4_0, 4, 64, 1);
    let x = data(64, 1);
    let mut y = vec![0.0; 4];
    assert!(matvec(Format::Q4_0, &w, 4, 64, &x, 0, None, &mut y, 1).is_err());
    assert!(matvec(Format::Q4_0, &w, 4, 64, &x, 9, None, &mut y, 1).is_err());
    assert!(matvec(Format::Q4_0, &w, 4, 48, &x, 1, None, &mut y, 1).is_err());
    assert!(matvec(Format::Q4_0, &w, 5, 64, &x, 1, None, &mut y, 1).is_err());
    assert!(matvec(Format::Q4_0, &w, 4, 64, &x[..63], 1, None, &mut y, 1).is_err());
    assert!(matvec(Format::Q4_0, &w, 4, 64, &x, 1, Some(&[0.0; 3]), &mut y, 1).is_err());
    let err = matvec(Format::Q4_0, &w, 4, 64, &x, 1, None, &mut y[..3], 1).unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::BufferTooSmall { needed: 4 });
    assert!(matvec_transposed(Format::Q4_0, &w, 4, 64, &x[..4], 1, &mut y, 1).is_err());
}
