//! Which row kernel runs: the format's SIMD kernels from the kernel table
//! where the CPU has the features, else the portable one; and the
//! column-strip kernel of the transposed product.

use super::row::{self, Sums};
use crate::cpu_kernels::CpuKernels;
use crate::format::Format;
use crate::quant;

#[cfg(target_arch = "x86_64")]
pub use super::simd_x86::QuantizedX;

/// x quantized for the integer path, when the format has an integer-dot
/// kernel and the CPU and x allow it (None: use the f32 path).
#[cfg(target_arch = "x86_64")]
pub fn quantize_x(format: Format, x: &[f32], cols: usize, batch: usize) -> Option<QuantizedX> {
    CpuKernels::of(format).simd.row_dot_int?;
    super::simd_x86::quantize_x(x, cols, batch)
}

/// No integer path off x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub enum QuantizedX {}

/// No integer path off x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub fn quantize_x(_format: Format, _x: &[f32], _cols: usize, _batch: usize) -> Option<QuantizedX> {
    None
}

/// sums[b] = Σ_c row[c]·x[b·cols + c] for b < batch; with `xq` (x quantized
/// by [`quantize_x`] for this format) by integer dot products.
pub fn row_dot(
    format: Format,
    row: &[u8],
    cols: usize,
    x: &[f32],
    xq: Option<&QuantizedX>,
    batch: usize,
    sums: &mut Sums,
) {
    let kernels = CpuKernels::of(format);
    #[cfg(target_arch = "x86_64")]
    {
        use super::simd_x86;
        if let Some(xq) = xq {
            let kernel = kernels
                .simd
                .row_dot_int
                .expect("quantize_x gives x only to formats with an integer kernel");
            return simd_x86::row_dot_int(kernel, format, row, cols, xq, batch, sums);
        }
        if simd_x86::row_dot(kernels.simd.row_dot, format, row, cols, x, batch, sums) {
            return;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = xq;
    row::portable(format, kernels.dequantize, row, cols, x, batch, sums);
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
