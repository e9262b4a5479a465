//! Matrix-vector products with quantized weights through the C ABI.

use super::context::NyxqContext;
use super::format::format_arg;
use super::guard::guard;
use super::status::NyxqStatus;
use super::{handle, ptr};
use crate::error::Error;
use crate::matvec;
use std::ffi::c_void;

fn dims(rows: u64, cols: u64, batch: u32) -> Result<(usize, usize, usize), Error> {
    let rows = usize::try_from(rows).map_err(|_| Error::overflow("rows"))?;
    let cols = usize::try_from(cols).map_err(|_| Error::overflow("cols"))?;
    Ok((rows, cols, batch as usize))
}

/// y = W·x (+ bias) for `batch` vectors (1 to 8): y[b·rows + r] =
/// Σ_c W[r][c]·x[b·cols + c] + bias[r].
///
/// - `w`: the `rows`×`cols` matrix in `format`, row-major, each row whole blocks
///   (what nyxq_quantize writes for the flattened matrix), `w_len` bytes exactly.
/// - `x`: batch·cols floats; `bias`: NULL or `rows` floats; `y`: at least
///   batch·rows floats (only those are written).
///
/// F32/F16/BF16 weights accumulate in f32 with fused multiply-adds: against an
/// FP64 product of the dequantized weights the error is at most
/// (cols + 3)·2⁻²⁴·Σ|w·x|. Q8_0/Q4_0/Q4_1/Q5_0/IQ4_NL weights use integer dot products with
/// x rounded to 8 bits per block of 32 (as ggml does), which adds at most half
/// a step of x's block scale times Σ|w| per block (docs/performance.md, "Matrix-vector products (CPU)").
/// NaN/Inf in x propagate. Large matrices use the context's threads.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (unknown format, empty matrix, rows not whole
/// blocks, batch outside 1..8, w_len/x_len/bias_len not what the shape needs,
/// `y` overlapping `w`, `x` or `bias`; the inputs may overlap each other),
/// NYXQ_ERROR_SIZE_OVERFLOW, NYXQ_ERROR_BUFFER_TOO_SMALL (y; needed length in
/// floats). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_matvec(
    ctx: *const NyxqContext,
    format: i32,
    w: *const c_void,
    w_len: usize,
    rows: u64,
    cols: u64,
    x: *const f32,
    x_len: usize,
    batch: u32,
    bias: *const f32,
    bias_len: usize,
    y: *mut f32,
    y_len: usize,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        let format = format_arg(format)?;
        let (rows, cols, batch) = dims(rows, cols, batch)?;
        // SAFETY: the caller passes w_len readable bytes at w.
        let w = unsafe { ptr::slice(w.cast::<u8>(), w_len, "w") }?;
        // SAFETY: the caller passes x_len readable floats at x.
        let x = unsafe { ptr::slice(x, x_len, "x") }?;
        let bias = if bias.is_null() {
            None
        } else {
            // SAFETY: the caller passes bias_len readable floats at bias.
            Some(unsafe { ptr::slice(bias, bias_len, "bias") }?)
        };
        ptr::check_disjoint((y, y_len, "y"), w, "w")?;
        ptr::check_disjoint((y, y_len, "y"), x, "x")?;
        ptr::check_disjoint((y, y_len, "y"), bias.unwrap_or_default(), "bias")?;
        // SAFETY: the caller passes y_len writable floats at y, disjoint from the inputs (checked).
        let y = unsafe { ptr::slice_mut(y, y_len, "y") }?;
        matvec::matvec(format, w, rows, cols, x, batch, bias, y, context.threads())
    })
}

/// y = xᵀ·W for `batch` vectors (the backward pass of a quantized layer):
/// y[b·cols + c] = Σ_r x[b·rows + r]·W[r][c]. `x`: batch·rows floats; `y`: at
/// least batch·cols floats. Weights, errors and accuracy as nyxq_matvec (the
/// sum runs over rows; `y` overlapping `w` or `x` is NYXQ_ERROR_INVALID_ARGUMENT).
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_matvec_transposed(
    ctx: *const NyxqContext,
    format: i32,
    w: *const c_void,
    w_len: usize,
    rows: u64,
    cols: u64,
    x: *const f32,
    x_len: usize,
    batch: u32,
    y: *mut f32,
    y_len: usize,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        let format = format_arg(format)?;
        let (rows, cols, batch) = dims(rows, cols, batch)?;
        // SAFETY: the caller passes w_len readable bytes at w.
        let w = unsafe { ptr::slice(w.cast::<u8>(), w_len, "w") }?;
        // SAFETY: the caller passes x_len readable floats at x.
        let x = unsafe { ptr::slice(x, x_len, "x") }?;
        ptr::check_disjoint((y, y_len, "y"), w, "w")?;
        ptr::check_disjoint((y, y_len, "y"), x, "x")?;
        // SAFETY: the caller passes y_len writable floats at y, disjoint from the inputs (checked).
        let y = unsafe { ptr::slice_mut(y, y_len, "y") }?;
        matvec::matvec_transposed(format, w, rows, cols, x, batch, y, context.threads())
    })
}
