//! Matrix-vector products and products of batches of tokens with
//! quantized weights through the C ABI.

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

/// The arrays of one product as slices: W's bytes, the input, an optional
/// bias and the output, which overlaps none of them (the inputs may overlap
/// each other).
struct Operands<'a> {
    w: &'a [u8],
    x: &'a [f32],
    bias: Option<&'a [f32]>,
    y: &'a mut [f32],
}

/// Borrows a product's arrays: `w` of `w.1` bytes, `x` of `x.1` floats,
/// `bias` of `bias.1` floats or NULL (none), `y` of `y.1` floats, each array
/// named in errors by its third field; a null array but `bias`, or `y`
/// overlapping another, is an error.
///
/// # Safety
/// Each non-null pointer holds its length of readable values (`y`: writable),
/// valid and not written by anyone else for `'a`.
unsafe fn operands<'a>(
    w: (*const c_void, usize),
    x: (*const f32, usize, &'static str),
    bias: (*const f32, usize),
    y: (*mut f32, usize, &'static str),
) -> Result<Operands<'a>, Error> {
    // SAFETY: the caller's contract: w.1 readable bytes at w.0.
    let w = unsafe { ptr::slice(w.0.cast::<u8>(), w.1, "w") }?;
    let x_name = x.2;
    // SAFETY: the caller's contract: x.1 readable floats at x.0.
    let x = unsafe { ptr::slice(x.0, x.1, x_name) }?;
    let bias = if bias.0.is_null() {
        None
    } else {
        // SAFETY: the caller's contract: bias.1 readable floats at bias.0.
        Some(unsafe { ptr::slice(bias.0, bias.1, "bias") }?)
    };
    ptr::check_disjoint((y.0, y.1, y.2), w, "w")?;
    ptr::check_disjoint((y.0, y.1, y.2), x, x_name)?;
    ptr::check_disjoint((y.0, y.1, y.2), bias.unwrap_or_default(), "bias")?;
    // SAFETY: the caller's contract: y.1 writable floats at y.0, disjoint
    // from the inputs (checked just above).
    let y = unsafe { ptr::slice_mut(y.0, y.1, y.2) }?;
    Ok(Operands { w, x, bias, y })
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
        // SAFETY: the C contract above: w_len readable bytes at w, x_len and
        // bias_len readable floats at x and bias (or NULL), y_len writable
        // floats at y.
        let Operands { w, x, bias, y } = unsafe {
            operands(
                (w, w_len),
                (x, x_len, "x"),
                (bias, bias_len),
                (y, y_len, "y"),
            )
        }?;
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
        // SAFETY: the C contract above: w_len readable bytes at w, x_len
        // readable floats at x, y_len writable floats at y.
        let Operands { w, x, y, .. } = unsafe {
            operands(
                (w, w_len),
                (x, x_len, "x"),
                (std::ptr::null(), 0),
                (y, y_len, "y"),
            )
        }?;
        matvec::matvec_transposed(format, w, rows, cols, x, batch, y, context.threads())
    })
}

/// Y = X·Wᵀ (+ bias) for `tokens` tokens (a layer's forward pass over a
/// batch): y[t·rows + r] = Σ_c x[t·cols + c]·W[r][c] + bias[r].
///
/// - `w`: the `rows`×`cols` matrix in `format` (any NyxqFormat), row-major,
///   each row whole blocks (what nyxq_quantize writes for the flattened
///   matrix), `w_len` bytes exactly.
/// - `x`: tokens·cols floats, token-major; `bias`: NULL or `rows` floats;
///   `y`: at least tokens·rows floats (only those are written).
///
/// W is dequantized to f32 once per panel of rows and chunk of 256 tokens,
/// then multiplied in f32 fused multiply-adds: against an FP64 product of
/// the dequantized weights the error is at most (cols + 3)·2⁻²⁴·Σ|w·x| per
/// output (the bias adds one rounding). For 1 to 8 tokens nyxq_matvec gives
/// the same product, faster on the block formats (docs/performance.md).
/// NaN/Inf in x propagate. Large products use the context's threads; the
/// result does not depend on their number.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (unknown format, empty matrix, rows not whole
/// blocks, tokens of 0, w_len/x_len/bias_len not what the shape needs, `y`
/// overlapping `w`, `x` or `bias`; the inputs may overlap each other),
/// NYXQ_ERROR_SIZE_OVERFLOW, NYXQ_ERROR_BUFFER_TOO_SMALL (y; needed length in
/// floats), NYXQ_ERROR_OUT_OF_MEMORY (the per-thread panels and outputs).
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_matmul(
    ctx: *const NyxqContext,
    format: i32,
    w: *const c_void,
    w_len: usize,
    rows: u64,
    cols: u64,
    x: *const f32,
    x_len: usize,
    tokens: u64,
    bias: *const f32,
    bias_len: usize,
    y: *mut f32,
    y_len: usize,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        let format = format_arg(format)?;
        let (rows, cols, tokens) = matmul_dims(rows, cols, tokens)?;
        // SAFETY: the C contract above: w_len readable bytes at w, x_len and
        // bias_len readable floats at x and bias (or NULL), y_len writable
        // floats at y.
        let Operands { w, x, bias, y } = unsafe {
            operands(
                (w, w_len),
                (x, x_len, "x"),
                (bias, bias_len),
                (y, y_len, "y"),
            )
        }?;
        matvec::matmul(format, w, rows, cols, x, tokens, bias, y, context.threads())
    })
}

/// dX = dY·W for `tokens` tokens (the backward pass of a quantized layer over
/// a batch): dx[t·cols + c] = Σ_r dy[t·rows + r]·W[r][c]. `dy`: tokens·rows
/// floats; `dx`: at least tokens·cols floats. Weights, errors and accuracy
/// as nyxq_matmul (the sum runs over rows: (rows + 3)·2⁻²⁴·Σ|w·x|; `dx`
/// overlapping `w` or `dy` is NYXQ_ERROR_INVALID_ARGUMENT). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_matmul_transposed(
    ctx: *const NyxqContext,
    format: i32,
    w: *const c_void,
    w_len: usize,
    rows: u64,
    cols: u64,
    dy: *const f32,
    dy_len: usize,
    tokens: u64,
    dx: *mut f32,
    dx_len: usize,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        let format = format_arg(format)?;
        let (rows, cols, tokens) = matmul_dims(rows, cols, tokens)?;
        // SAFETY: the C contract above: w_len readable bytes at w, dy_len
        // readable floats at dy, dx_len writable floats at dx.
        let Operands {
            w, x: dy, y: dx, ..
        } = unsafe {
            operands(
                (w, w_len),
                (dy, dy_len, "dy"),
                (std::ptr::null(), 0),
                (dx, dx_len, "dx"),
            )
        }?;
        matvec::matmul_transposed(format, w, rows, cols, dy, tokens, dx, context.threads())
    })
}

fn matmul_dims(rows: u64, cols: u64, tokens: u64) -> Result<(usize, usize, usize), Error> {
    let (rows, cols, _) = dims(rows, cols, 0)?;
    let tokens = usize::try_from(tokens).map_err(|_| Error::overflow("tokens"))?;
    Ok((rows, cols, tokens))
}
