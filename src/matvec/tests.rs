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

#[test]
fn the_kernel_name_says_which_row_kernels_run() {
    #[cfg(target_arch = "x86_64")]
    let simd = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c");
    #[cfg(not(target_arch = "x86_64"))]
    let simd = false;
    let expected = if simd { "avx2+fma+f16c" } else { "portable" };
    assert_eq!(cpu_kernels(), expected);
}

/// An empty matrix is an error whichever side is empty; inputs must have
/// exactly their length, and an output may be longer (the rest untouched).
#[test]
fn empty_matrices_and_long_inputs_are_errors_and_long_outputs_are_not() {
    let w = weights(Format::Q4_0, 4, 64, 1);
    let x = data(65, 1);
    let mut y = vec![7.0f32; 6];
    assert!(matvec(Format::Q4_0, &[], 0, 64, &x[..64], 1, None, &mut y, 1).is_err());
    assert!(matvec(Format::Q4_0, &[], 4, 0, &[], 1, None, &mut y, 1).is_err());
    assert!(matvec_transposed(Format::Q4_0, &[], 0, 64, &[], 1, &mut y, 1).is_err());
    assert!(matvec(Format::Q4_0, &w, 4, 64, &x, 1, None, &mut y, 1).is_err());
    let long_bias = [0.0f32; 5];
    assert!(
        matvec(
            Format::Q4_0,
            &w,
            4,
            64,
            &x[..64],
            1,
            Some(&long_bias),
            &mut y,
            1
        )
        .is_err()
    );
    assert!(matvec_transposed(Format::Q4_0, &w, 4, 64, &x[..5], 1, &mut y, 1).is_err());

    let mut exact = vec![0.0f32; 4];
    matvec(Format::Q4_0, &w, 4, 64, &x[..64], 1, None, &mut exact, 1).unwrap();
    matvec(Format::Q4_0, &w, 4, 64, &x[..64], 1, None, &mut y, 1).unwrap();
    assert_eq!(y[..4], exact[..]);
    assert_eq!(y[4..], [7.0, 7.0]);
    let mut exact = vec![0.0f32; 64];
    let mut long = vec![7.0f32; 66];
    matvec_transposed(Format::Q4_0, &w, 4, 64, &x[..4], 1, &mut exact, 1).unwrap();
    matvec_transposed(Format::Q4_0, &w, 4, 64, &x[..4], 1, &mut long, 1).unwrap();
    assert_eq!(long[..64], exact[..]);
    assert_eq!(long[64..], [7.0, 7.0]);
}

/// 1027×1056 weights are four threads' worth (MIN_WEIGHTS_PER_THREAD each):
/// W·x splits the rows unevenly (257, 257, 257, 256 with four threads; 343,
/// 343, 341 with three), xᵀ·W the 33 column blocks (9, 9, 9, 6 blocks; 11
/// each). Every split gives the single thread's result bit for bit.
#[test]
fn threads_split_rows_and_columns_without_changing_a_bit() {
    let (rows, cols, batch) = (1027, 1056, 3);
    assert_eq!(rows * cols / MIN_WEIGHTS_PER_THREAD, 4);
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    for format in [Format::F16, Format::Q8_0] {
        let w = weights(format, rows, cols, 11);
        let bias = data(rows, 12);
        let x = data(batch * cols, 13);
        let xt = data(batch * rows, 14);
        let mut one = vec![0.0f32; batch * rows];
        matvec(format, &w, rows, cols, &x, batch, Some(&bias), &mut one, 1).unwrap();
        let mut one_t = vec![0.0f32; batch * cols];
        matvec_transposed(format, &w, rows, cols, &xt, batch, &mut one_t, 1).unwrap();
        for threads in [3, 4, 64] {
            let mut y = vec![f32::NAN; batch * rows];
            matvec(
                format,
                &w,
                rows,
                cols,
                &x,
                batch,
                Some(&bias),
                &mut y,
                threads,
            )
            .unwrap();
            assert_eq!(bits(&y), bits(&one), "{format:?} W·x, {threads} threads");
            let mut yt = vec![f32::NAN; batch * cols];
            matvec_transposed(format, &w, rows, cols, &xt, batch, &mut yt, threads).unwrap();
            assert_eq!(
                bits(&yt),
                bits(&one_t),
                "{format:?} xᵀ·W, {threads} threads"
            );
        }
    }
}

/// One thread per MIN_WEIGHTS_PER_THREAD (2^18) weights, within what was asked
/// for (0 counts as 1) and the pieces there are.
#[test]
fn threads_follow_the_weights_the_request_and_the_pieces() {
    let m = MIN_WEIGHTS_PER_THREAD;
    assert_eq!(threads_for(8, 1027, 1056, 1027), 4, "1,084,512 weights");
    assert_eq!(threads_for(8, 1024, 1024, 1024), 4);
    assert_eq!(threads_for(8, 1023, 1024, 1023), 3, "just under 4·2^18");
    assert_eq!(threads_for(3, 1027, 1056, 1027), 3, "the request");
    assert_eq!(threads_for(0, 1027, 1056, 1027), 1, "0 asks for one");
    assert_eq!(threads_for(8, 300, 1024, 300), 1, "307,200 weights");
    assert_eq!(threads_for(8, 1, 32, 1), 1);
    assert_eq!(threads_for(8, 2, 4 * m, 2), 2, "the pieces");
    assert_eq!(threads_for(8, 4 * m, 2, 1), 1, "one column block");
    assert_eq!(threads_for(8, 16, 2 * m / 16, 16), 2);
}

/// x as the integer path sees it: each block of 32 rounded to levels of the
/// step max|x|/127 (the module's documentation).
fn rounded_to_8_bits(x: &[f32]) -> Vec<f64> {
    x.chunks(32)
        .flat_map(|block| {
            let step = block.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
            let inverse = if step > 0.0 { 1.0 / step } else { 0.0 };
            block
                .iter()
                .map(move |&v| f64::from((v * inverse).round()) * f64::from(step))
        })
        .collect()
}

/// Where the integer path applies (AVX2, a block format with an integer
/// kernel, finite x), W·x is the product with x rounded to 8 bits per block,
/// not the one with x itself; elsewhere it is the f32 product.
#[test]
fn the_integer_path_multiplies_x_rounded_to_8_bits_per_block() {
    #[cfg(target_arch = "x86_64")]
    let simd = simd_x86::available();
    #[cfg(not(target_arch = "x86_64"))]
    let simd = false;
    for format in ALL_FORMATS {
        // Three thirds of a row, each a whole number of x's 32-value blocks
        // and of the format's blocks: the thirds' largest magnitudes differ
        // (so do their steps), and the last is all zeros (step 0).
        let third = format.block_size().max(32);
        let (rows, cols) = (3, 3 * third);
        let mut x = data(cols, 31);
        x[third..2 * third].iter_mut().for_each(|v| *v *= 0.01);
        x[2 * third..].fill(0.0);
        let integer = simd && format.spec().cpu.integer_matvec;
        let w = weights(format, rows, cols, 32);
        let row_bytes = format.size_of(cols).unwrap();
        let mut y = vec![0.0f32; rows];
        matvec(format, &w, rows, cols, &x, 1, None, &mut y, 1).unwrap();
        let rounded = rounded_to_8_bits(&x);
        for r in 0..rows {
            let decoded = decode_row(format, &w[r * row_bytes..(r + 1) * row_bytes], cols);
            let product = |xs: &[f64]| -> (f64, f64) {
                decoded
                    .iter()
                    .zip(xs)
                    .fold((0.0, 0.0), |(sum, magnitude), ((dq, m), v)| {
                        (
                            sum + (dq + m) * v,
                            magnitude + (dq.abs() + m.abs()) * v.abs(),
                        )
                    })
            };
            let exact_x: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            let (with_x, magnitude) = product(&exact_x);
            let (with_rounded, rounded_magnitude) = product(&rounded);
            let got = f64::from(y[r]);
            let bound = (cols as f64 + 3.0) * U * magnitude.max(rounded_magnitude);
            let (expected, other) = if integer {
                (with_rounded, with_x)
            } else {
                (with_x, with_rounded)
            };
            assert!(
                (got - expected).abs() <= bound,
                "{format:?} row {r}: {got} vs {expected} (bound {bound})"
            );
            assert!(
                (got - other).abs() > bound,
                "{format:?} row {r}: {got} cannot tell {expected} from {other}"
            );
        }
    }
}

/// Rows that are not whole runs of 32 (F32, F16, BF16: 1, 31, 33 columns)
/// take the portable kernel and still sum every column.
#[test]
fn rows_of_odd_lengths_sum_every_column() {
    for format in [Format::F32, Format::F16, Format::BF16] {
        for cols in [1, 31, 33, 65] {
            let rows = 3;
            let w = weights(format, rows, cols, cols as u64);
            let x = data(2 * cols, 7);
            let mut y = vec![0.0f32; 2 * rows];
            matvec(format, &w, rows, cols, &x, 2, None, &mut y, 1).unwrap();
            let row_bytes = format.size_of(cols).unwrap();
            for r in 0..rows {
                let decoded = decode_row(format, &w[r * row_bytes..(r + 1) * row_bytes], cols);
                for b in 0..2 {
                    let xs = &x[b * cols..(b + 1) * cols];
                    let exact: f64 = decoded
                        .iter()
                        .zip(xs)
                        .map(|((dq, _), v)| dq * f64::from(*v))
                        .sum();
                    let magnitude: f64 = decoded
                        .iter()
                        .zip(xs)
                        .map(|((dq, _), v)| (dq * f64::from(*v)).abs())
                        .sum();
                    let bound = (cols as f64 + 3.0) * U * magnitude;
                    let got = f64::from(y[b * rows + r]);
                    assert!(
                        (got - exact).abs() <= bound,
                        "{format:?} {cols} columns, row {r}, vector {b}: {got} vs {exact}"
                    );
                }
            }
        }
    }
}

/// Where the CPU has AVX2, FMA and F16C, F32, F16 and BF16 rows of whole runs
/// of 32 take the AVX2 kernel of the kernel table: W·x is its result bit for
/// bit, and not the portable kernel's (whose order of additions differs).
#[cfg(target_arch = "x86_64")]
#[test]
fn the_avx2_kernel_computes_the_f32_rows_where_the_cpu_has_it() {
    if !simd_x86::available() {
        assert_eq!(cpu_kernels(), "portable");
        return;
    }
    let (rows, cols) = (64, 1024);
    for format in [Format::F32, Format::F16, Format::BF16] {
        let w = weights(format, rows, cols, 41);
        let x = data(cols, 42);
        let mut y = vec![0.0f32; rows];
        matvec(format, &w, rows, cols, &x, 1, None, &mut y, 1).unwrap();
        let kernels = crate::cpu_kernels::CpuKernels::of(format);
        let row_bytes = format.size_of(cols).unwrap();
        let mut differs = false;
        for (r, &got) in y.iter().enumerate() {
            let row = &w[r * row_bytes..(r + 1) * row_bytes];
            let (mut simd, mut portable) = ([0.0f32; MAX_BATCH], [0.0f32; MAX_BATCH]);
            assert!(simd_x86::row_dot(
                kernels.simd.row_dot,
                format,
                row,
                cols,
                &x,
                1,
                &mut simd
            ));
            row::portable(format, kernels.dequantize, row, cols, &x, 1, &mut portable);
            assert_eq!(got.to_bits(), simd[0].to_bits(), "{format:?} row {r}");
            differs |= simd[0].to_bits() != portable[0].to_bits();
        }
        assert!(differs, "{format:?}: no row tells the kernels apart");
    }
}
/// The first output of a matmul (forward, or backward with `transposed`)
/// outside the documented bound against FP64 over independently decoded
/// weights: (n + 3)·2⁻²⁴·Σ|w·x|, plus the bias's rounding.
#[allow(clippy::too_many_arguments)]
fn matmul_violation(
    format: Format,
    w: &[u8],
    (rows, cols, tokens): (usize, usize, usize),
    transposed: bool,
    x: &[f32],
    bias: Option<&[f32]>,
    y: &[f32],
) -> Option<String> {
    let row_bytes = format.size_of(cols).unwrap();
    let decoded: Vec<Vec<(f64, f64)>> = (0..rows)
        .map(|r| decode_row(format, &w[r * row_bytes..(r + 1) * row_bytes], cols))
        .collect();
    let (outputs, n) = if transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    for t in 0..tokens {
        for o in 0..outputs {
            let (mut exact, mut magnitude) = (0.0f64, 0.0f64);
            for i in 0..n {
                let (dq, m) = if transposed {
                    decoded[i][o]
                } else {
                    decoded[o][i]
                };
                let xv = f64::from(x[t * n + i]);
                exact += (dq + m) * xv;
                magnitude += (dq.abs() + m.abs()) * xv.abs();
            }
            let b = bias.map_or(0.0, |b| f64::from(b[o]));
            let got = f64::from(y[t * outputs + o]);
            let bound = (n as f64 + 3.0) * U * magnitude + 2.0 * U * (exact.abs() + b.abs());
            if (got - b - exact).abs() > bound {
                return Some(format!(
                    "{format:?} {rows}x{cols} t{t} o{o}: {got} vs {} (bound {bound:e})",
                    exact + b
                ));
            }
        }
    }
    None
}

#[test]
fn matmul_agrees_with_fp64_within_the_documented_bound() {
    for format in ALL_FORMATS {
        // Columns in 32s, scaled to whole super-blocks for the K-quants.
        let per_32 = format.block_size().max(32) / 32;
        let mut shapes = vec![(1, 32, 1), (7, 96, 9), (33, 64, 300), (130, 160, 5)];
        if !format.is_block() {
            // Sums not a multiple of 8 take the portable loop.
            shapes.extend([(5, 33, 6), (3, 7, 2)]);
        }
        for (rows, cols, tokens) in shapes {
            let cols = cols * per_32;
            let w = weights(format, rows, cols, (rows + cols) as u64);
            let x = data(tokens * cols, 5);
            let bias = data(rows, 9);
            let mut y = vec![f32::NAN; tokens * rows];
            matmul(format, &w, rows, cols, &x, tokens, Some(&bias), &mut y, 3).unwrap();
            let shape = (rows, cols, tokens);
            let found = matmul_violation(format, &w, shape, false, &x, Some(&bias), &y);
            assert_eq!(found, None);
            let mut one = vec![0.0; tokens * rows];
            matmul(format, &w, rows, cols, &x, tokens, Some(&bias), &mut one, 1).unwrap();
            assert_eq!(one, y, "{format:?}: threads changed the result");

            let dy = data(tokens * rows, 6);
            let mut dx = vec![f32::NAN; tokens * cols];
            matmul_transposed(format, &w, rows, cols, &dy, tokens, &mut dx, 3).unwrap();
            let found = matmul_violation(format, &w, shape, true, &dy, None, &dx);
            assert_eq!(found, None);
        }
    }
}

#[test]
fn the_matmul_bound_check_catches_a_wrong_result() {
    let (rows, cols, tokens) = (9, 64, 11);
    let w = weights(Format::Q4_0, rows, cols, 2);
    let x = data(tokens * cols, 3);
    let mut y = vec![0.0; tokens * rows];
    matmul(Format::Q4_0, &w, rows, cols, &x, tokens, None, &mut y, 1).unwrap();
    let shape = (rows, cols, tokens);
    assert_eq!(
        matmul_violation(Format::Q4_0, &w, shape, false, &x, None, &y),
        None
    );
    // One output off by 2⁻¹⁰ of itself: above the bound (about 2⁻¹⁸·Σ|w·x|
    // here), far below the quantization error a test against the FP32
    // weights would have to allow.
    let i = 5 * rows + 4;
    y[i] += y[i].abs() * 2f32.powi(-10) + 1e-30;
    let found = matmul_violation(Format::Q4_0, &w, shape, false, &x, None, &y);
    assert!(found.is_some_and(|m| m.contains("t5 o4")));
}

#[test]
fn matmul_propagates_nan_and_inf_and_matches_the_matvec_shape() {
    let (rows, tokens) = (4, 6);
    for format in ALL_FORMATS {
        let cols = format.block_size().max(64);
        let w = weights(format, rows, cols, 1);
        let mut x = data(tokens * cols, 2);
        x[cols + 17] = f32::NAN;
        x[3 * cols] = f32::INFINITY;
        let mut y = vec![0.0; tokens * rows];
        matmul(format, &w, rows, cols, &x, tokens, None, &mut y, 1).unwrap();
        for t in [1, 3] {
            let row = &y[t * rows..(t + 1) * rows];
            assert!(row.iter().all(|v| !v.is_finite()), "{format:?}: {row:?}");
        }
        assert!(y[..rows].iter().all(|v| v.is_finite()), "{format:?}");
    }
}

#[test]
fn bad_matmul_shapes_and_buffers_are_errors() {
    let w = weights(Format::Q4_0, 4, 64, 1);
    let x = data(3 * 64, 1);
    let mut y = vec![0.0; 12];
    let err = matmul(Format::Q4_0, &w, 4, 64, &x, 0, None, &mut y, 1).unwrap_err();
    assert!(err.message().contains("tokens is 0"), "{err}");
    assert!(matmul(Format::Q4_0, &w, 4, 48, &x, 3, None, &mut y, 1).is_err());
    assert!(matmul(Format::Q4_0, &w, 0, 64, &x, 3, None, &mut y, 1).is_err());
    assert!(matmul(Format::Q4_0, &w, 4, 64, &x[..191], 3, None, &mut y, 1).is_err());
    assert!(matmul(Format::Q4_0, &w, 4, 64, &x, 3, Some(&[0.0; 3]), &mut y, 1).is_err());
    let err = matmul(Format::Q4_0, &w, 4, 64, &x, 3, None, &mut y[..11], 1).unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::BufferTooSmall { needed: 12 });
    let err = matmul(Format::Q4_0, &w, 4, 64, &x, usize::MAX, None, &mut y, 1).unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::SizeOverflow);
    let dy = data(12, 2);
    let mut dx = vec![0.0; 3 * 64];
    assert!(matmul_transposed(Format::Q4_0, &w, 4, 64, &dy[..11], 3, &mut dx, 1).is_err());
    let err = matmul_transposed(Format::Q4_0, &w, 4, 64, &dy, 3, &mut dx[..100], 1).unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::BufferTooSmall { needed: 192 });
}

/// 1056×512 weights are two threads' worth (MIN_WEIGHTS_PER_THREAD each):
/// the matmul splits the panels of outputs between them (17 panels of 64
/// rows forward, 16 of 32 columns backward), and 260 tokens are two chunks
/// (TOKEN_CHUNK and 4). Every split gives the single thread's result bit
/// for bit, the bias added once to each output.
#[test]
fn matmul_threads_split_panels_without_changing_a_bit() {
    let (rows, cols, tokens) = (1056, 512, 260);
    assert_eq!(rows * cols / MIN_WEIGHTS_PER_THREAD, 2);
    assert!(tokens > matmul::TOKEN_CHUNK);
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    let format = Format::Q8_0;
    let w = weights(format, rows, cols, 31);
    let x = data(tokens * cols, 32);
    let bias = data(rows, 33);
    let dy = data(tokens * rows, 34);
    let mut one = vec![0.0f32; tokens * rows];
    matmul(format, &w, rows, cols, &x, tokens, Some(&bias), &mut one, 1).unwrap();
    let mut one_t = vec![0.0f32; tokens * cols];
    matmul_transposed(format, &w, rows, cols, &dy, tokens, &mut one_t, 1).unwrap();
    // Without the bias, each output is the biased one less its bias.
    let mut unbiased = vec![0.0f32; tokens * rows];
    matmul(format, &w, rows, cols, &x, tokens, None, &mut unbiased, 2).unwrap();
    for (i, (&b, &u)) in one.iter().zip(&unbiased).enumerate() {
        assert_eq!(b, u + bias[i % rows], "output {i}");
    }
    for threads in [2, 5] {
        let mut y = vec![f32::NAN; tokens * rows];
        matmul(
            format,
            &w,
            rows,
            cols,
            &x,
            tokens,
            Some(&bias),
            &mut y,
            threads,
        )
        .unwrap();
        assert_eq!(bits(&y), bits(&one), "X·Wᵀ, {threads} threads");
        let mut dx = vec![f32::NAN; tokens * cols];
        matmul_transposed(format, &w, rows, cols, &dy, tokens, &mut dx, threads).unwrap();
        assert_eq!(bits(&dx), bits(&one_t), "dY·W, {threads} threads");
    }
}

/// Where the CPU has AVX2 and FMA, the matmul's panels are multiplied by
/// the AVX2 tiles (3 outputs × 4 tokens): F32 weights (dequantized as
/// they are) give exactly the tiles' sums, which the portable loop's
/// order of addition does not.
#[test]
fn the_avx2_tiles_compute_the_matmul_where_the_cpu_has_them() {
    let (rows, cols, tokens) = (7, 256, 5);
    let w = weights(Format::F32, rows, cols, 51);
    let x = data(tokens * cols, 52);
    let mut y = vec![0.0f32; tokens * rows];
    matmul(Format::F32, &w, rows, cols, &x, tokens, None, &mut y, 1).unwrap();
    let panel: Vec<f32> = w
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let mut tiles = vec![0.0f32; tokens * rows];
    if !simd_x86::panel_dots(&panel, rows, cols, &x, tokens, &mut tiles, rows) {
        assert!(!(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")));
        return;
    }
    assert_eq!(y, tiles);
    let portable: Vec<f32> = (0..tokens * rows)
        .map(|i| {
            let (t, r) = (i / rows, i % rows);
            let ws = &panel[r * cols..(r + 1) * cols];
            let xs = &x[t * cols..(t + 1) * cols];
            ws.iter().zip(xs).map(|(w, v)| w * v).sum::<f32>()
        })
        .collect();
    assert_ne!(
        y, portable,
        "no output tells the tiles from the portable loop"
    );
}
