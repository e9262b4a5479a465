//! Matrix-vector products with quantized weights: y = W·x (+ bias) for the
//! forward pass and y = xᵀ·W for the backward pass of a quantized layer.
//!
//! W is `[rows, cols]`, row-major, each row a whole number of the format's
//! blocks (the bytes `quant::quantize` writes for the flattened matrix). x holds
//! `batch` vectors (1 to 8).
//!
//! F32, F16 and BF16 weights (and every format where the integer path does not
//! apply) are converted in registers and multiplied with x in f32 fused
//! multiply-adds. Against an FP64 product of the *dequantized* weights:
//! `|y − y_ref| ≤ (n + 3)·2⁻²⁴·Σ|w·x|` with n the length of the sum (cols for
//! W·x, rows for xᵀ·W): a sum of n terms in any order errs by at most (n − 1)
//! roundings of its partial sums, a product is exact inside a fused
//! multiply-add, and a block's scale adds one rounding. The K-quants (Q4_K,
//! Q5_K, Q6_K) take this path: each super-block of 256 weights is decoded to
//! the dequantizer's floats, then multiplied.
//!
//! W·x with Q8_0, Q4_0, Q4_1 or Q5_0 weights (on AVX2, rows of whole blocks, finite
//! x) takes the integer path, as ggml does: each block of 32 values of x is
//! rounded to 8 bits with an f32 scale `s = max|x|/127`, and the block's dot
//! product is computed exactly in integers, then scaled. That adds at most
//! `Σ_blocks (s/2)·Σ|w|` (half a step of x per weight, times the block's weights)
//! to the bound above, and runs about twice as fast. The transposed product
//! xᵀ·W (the backward pass) always accumulates in f32.
//!
//! What separates y from the product with the original FP32 weights is the
//! quantization error itself (see `quant::measure`). NaN and ±Inf in x
//! propagate as IEEE arithmetic says (such x takes the f32 path): every output
//! that sums them is NaN or ±Inf.

mod kernels;
mod matmul;
mod row;
#[cfg(target_arch = "x86_64")]
pub(crate) mod simd_x86;

use crate::error::{Error, Result};
use crate::format::Format;

/// The row kernels of the CPU products on this CPU: "avx2+fma+f16c" when all
/// three were detected at run time, else "portable" (for bug reports and
/// benchmarks).
pub fn cpu_kernels() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if simd_x86::available() {
        return "avx2+fma+f16c";
    }
    "portable"
}

pub use matmul::{matmul, matmul_transposed};
pub use row::MAX_BATCH;

/// Rows (or column blocks) below this per thread are not worth a thread.
const MIN_WEIGHTS_PER_THREAD: usize = 1 << 18;

/// The threads a product of a `rows`×`cols` matrix split into `pieces`
/// (rows, or column blocks) runs on: as many as `requested` but at least one,
/// one per [`MIN_WEIGHTS_PER_THREAD`] weights, and no more than the pieces.
fn threads_for(requested: usize, rows: usize, cols: usize, pieces: usize) -> usize {
    requested
        .max(1)
        .min((rows * cols / MIN_WEIGHTS_PER_THREAD).max(1))
        .min(pieces)
}

/// Checks the shapes common to both products; returns the row stride in bytes.
fn check(format: Format, w: &[u8], rows: usize, cols: usize, batch: usize) -> Result<usize> {
    if !(1..=MAX_BATCH).contains(&batch) {
        return Err(Error::invalid(format!(
            "matvec: batch {batch} is outside 1..={MAX_BATCH}"
        )));
    }
    check_matrix("matvec", format, w, rows, cols)
}

/// Checks W: not empty, rows of whole blocks, exactly `w.len()` bytes;
/// returns the row stride in bytes. `op` names the product in messages.
fn check_matrix(op: &str, format: Format, w: &[u8], rows: usize, cols: usize) -> Result<usize> {
    if rows == 0 || cols == 0 {
        return Err(Error::invalid(format!(
            "{op}: a {rows}x{cols} matrix is empty"
        )));
    }
    let row_bytes = format
        .size_of(cols)
        .map_err(|e| Error::invalid(format!("{op}: rows of {cols}: {}", e.message())))?;
    let needed = row_bytes
        .checked_mul(rows)
        .ok_or_else(|| Error::overflow(&format!("{op} weights")))?;
    if w.len() != needed {
        return Err(Error::invalid(format!(
            "{op}: a {rows}x{cols} {} matrix has {needed} bytes, but {} were given",
            format.name(),
            w.len()
        )));
    }
    Ok(row_bytes)
}

fn check_len(what: &str, have: usize, needed: usize, output: bool) -> Result<()> {
    if have == needed || (output && have > needed) {
        return Ok(());
    }
    if output {
        return Err(Error::buffer_too_small(what, "floats", needed, have));
    }
    Err(Error::invalid(format!(
        "{what} has {have} floats; it must have {needed}"
    )))
}

/// y[b][r] = Σ_c W[r][c]·x[b][c] (+ bias[r]) for b < batch.
#[allow(clippy::too_many_arguments)]
pub fn matvec(
    format: Format,
    w: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    batch: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
    threads: usize,
) -> Result<()> {
    let row_bytes = check(format, w, rows, cols, batch)?;
    check_len("x", x.len(), batch * cols, false)?;
    if let Some(b) = bias {
        check_len("bias", b.len(), rows, false)?;
    }
    check_len("y", y.len(), batch * rows, true)?;
    let threads = threads_for(threads, rows, cols, rows);
    // Each thread computes whole rows into its own buffer (y is batch-major, so
    // a row range is not contiguous in y), then the rows are scattered into y.
    let per_thread = rows.div_ceil(threads);
    let xq = kernels::quantize_x(format, x, cols, batch);
    let xq = xq.as_ref();
    let results: Vec<Vec<f32>> = if threads == 1 {
        vec![rows_product(
            format,
            w,
            row_bytes,
            0..rows,
            cols,
            x,
            xq,
            batch,
        )]
    } else {
        let catching = crate::quiet_panic::is_catching();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let range = (t * per_thread).min(rows)..((t + 1) * per_thread).min(rows);
                    scope.spawn(move || {
                        crate::quiet_panic::inherit(catching, || {
                            rows_product(format, w, row_bytes, range, cols, x, xq, batch)
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
    for (t, part) in results.iter().enumerate() {
        let first = t * per_thread;
        let count = part.len() / batch;
        for b in 0..batch {
            for i in 0..count {
                let r = first + i;
                let add = bias.map_or(0.0, |bias| bias[r]);
                y[b * rows + r] = part[i * batch + b] + add;
            }
        }
    }
    Ok(())
}

/// The products of rows `range`, row-major: out[i·batch + b] for row first+i.
#[allow(clippy::too_many_arguments)]
fn rows_product(
    format: Format,
    w: &[u8],
    row_bytes: usize,
    range: std::ops::Range<usize>,
    cols: usize,
    x: &[f32],
    xq: Option<&kernels::QuantizedX>,
    batch: usize,
) -> Vec<f32> {
    let mut out = vec![0.0f32; range.len() * batch];
    let mut sums = [0.0f32; MAX_BATCH];
    for (i, r) in range.enumerate() {
        let row = &w[r * row_bytes..(r + 1) * row_bytes];
        kernels::row_dot(format, row, cols, x, xq, batch, &mut sums);
        out[i * batch..(i + 1) * batch].copy_from_slice(&sums[..batch]);
    }
    out
}

/// y[b][c] = Σ_r x[b][r]·W[r][c] for b < batch (the backward pass's product).
#[allow(clippy::too_many_arguments)]
pub fn matvec_transposed(
    format: Format,
    w: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    batch: usize,
    y: &mut [f32],
    threads: usize,
) -> Result<()> {
    let row_bytes = check(format, w, rows, cols, batch)?;
    check_len("x", x.len(), batch * rows, false)?;
    check_len("y", y.len(), batch * cols, true)?;
    let block = format.block_size().max(32);
    let column_blocks = cols.div_ceil(block);
    let threads = threads_for(threads, rows, cols, column_blocks);
    let per_thread = column_blocks.div_ceil(threads) * block;
    let parts: Vec<(usize, Vec<f32>)> = if threads == 1 {
        vec![(
            0,
            kernels::columns_product(format, w, row_bytes, rows, cols, 0..cols, x, batch),
        )]
    } else {
        let catching = crate::quiet_panic::is_catching();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let range = (t * per_thread).min(cols)..((t + 1) * per_thread).min(cols);
                    let start = range.start;
                    scope.spawn(move || {
                        crate::quiet_panic::inherit(catching, || {
                            (
                                start,
                                kernels::columns_product(
                                    format, w, row_bytes, rows, cols, range, x, batch,
                                ),
                            )
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
    for (start, part) in parts {
        let width = part.len() / batch;
        for b in 0..batch {
            y[b * cols + start..b * cols + start + width]
                .copy_from_slice(&part[b * width..(b + 1) * width]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
