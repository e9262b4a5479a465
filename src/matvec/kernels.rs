//! The per-row and per-column-strip kernels, portable and SIMD.

use crate::format::Format;
use crate::quant::{self, scalar};

/// Elements processed per step: one block of the block formats.
const CHUNK: usize = 32;

#[cfg(target_arch = "x86_64")]
pub use super::simd_x86::QuantizedX;

/// x quantized for the integer path (None: use the f32 path).
#[cfg(target_arch = "x86_64")]
pub fn quantize_x(x: &[f32], cols: usize, batch: usize) -> Option<QuantizedX> {
    super::simd_x86::quantize_x(x, cols, batch)
}

/// No integer path off x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub enum QuantizedX {}

/// No integer path off x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub fn quantize_x(_x: &[f32], _cols: usize, _batch: usize) -> Option<QuantizedX> {
    None
}

/// sums[b] = Σ_c row[c]·x[b·cols + c] for b < batch; with `xq` (x quantized
/// to 8 bits, block formats only) by integer dot products.
pub fn row_dot(
    format: Format,
    row: &[u8],
    cols: usize,
    x: &[f32],
    xq: Option<&QuantizedX>,
    batch: usize,
    sums: &mut [f32; super::MAX_BATCH],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(xq) = xq {
            return super::simd_x86::row_dot_int(format, row, cols, xq, batch, sums);
        }
        if super::simd_x86::row_dot(format, row, cols, x, batch, sums) {
            return;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = xq;
    row_dot_portable(format, row, cols, x, batch, sums);
}

/// The portable row kernel: dequantize 32 weights, then a dot per vector.
pub fn row_dot_portable(
    format: Format,
    row: &[u8],
    cols: usize,
    x: &[f32],
    batch: usize,
    sums: &mut [f32; super::MAX_BATCH],
) {
    sums.fill(0.0);
    let mut weights = [0.0f32; CHUNK];
    let mut start = 0;
    while start < cols {
        let len = CHUNK.min(cols - start);
        dequantize_chunk(format, row, start, &mut weights[..len]);
        for (b, sum) in sums.iter_mut().enumerate().take(batch) {
            let xs = &x[b * cols + start..b * cols + start + len];
            *sum += weights[..len]
                .iter()
                .zip(xs)
                .map(|(w, v)| w * v)
                .sum::<f32>();
        }
        start += len;
    }
}

/// Dequantizes elements [start, start + out.len()) of a row; `start` is a
/// multiple of 32 and, for block formats, the length is 32.
fn dequantize_chunk(format: Format, row: &[u8], start: usize, out: &mut [f32]) {
    let size = |n: usize| format.size_of(n).expect("whole blocks");
    let bytes = &row[size(start)..size(start + out.len())];
    match format {
        Format::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Format::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = scalar::f16_value(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        Format::BF16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = scalar::bf16_value(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        Format::Q8_0 => scalar::q8_0_dequantize(bytes, out),
        Format::Q4_0 => scalar::q4_0_dequantize(bytes, out),
        Format::Q4_1 => scalar::q4_1_dequantize(bytes, out),
    }
}

/// The columns `range` of xᵀ·W: out[b·width + i] = Σ_r x[b·rows + r]·W[r][range.start + i].
#[allow(clippy::too_many_arguments)]
pub fn columns_product(
    format: Format,
    w: &[u8],
    row_bytes: usize,
    rows: usize,
    cols: usize,
    range: std::ops::Range<usize>,
    x: &[f32],
    batch: usize,
) -> Vec<f32> {
    let width = range.len();
    let mut out = vec![0.0f32; batch * width];
    let mut weights = vec![0.0f32; width];
    let size = |n: usize| format.size_of(n).expect("whole blocks");
    let (from, to) = (size(range.start), size(range.end));
    debug_assert!(range.end <= cols);
    for r in 0..rows {
        let row = &w[r * row_bytes..(r + 1) * row_bytes];
        quant::dequantize(format, &row[from..to], &mut weights, 1)
            .expect("whole blocks of a checked matrix");
        for b in 0..batch {
            let a = x[b * rows + r];
            for (o, &wv) in out[b * width..(b + 1) * width].iter_mut().zip(&weights) {
                *o += a * wv;
            }
        }
    }
    out
}
