//! Matrix-vector products and products of batches of tokens with quantized
//! weights recorded into the caller's command buffer (the Vulkan twins of
//! nyxq_matvec, nyxq_matvec_transposed, nyxq_matmul and
//! nyxq_matmul_transposed).

use super::context::NyxqContext;
use super::format::format_arg;
use super::guard::guard;
use super::status::NyxqStatus;
use super::vk_cmd::{NyxqVkBufferRange, command_buffer_arg, optional_range, range_arg};
use super::{handle, ptr};
use crate::error::Result;
use crate::format::Format;
use crate::vk::matmul::{MatmulCall, record_matmul};
use crate::vk::matvec::{MatvecCall, Operands, record_matvec};
use std::ffi::c_void;

/// Checks the arguments, records the product, writes the ticket.
#[allow(clippy::too_many_arguments)]
fn record(
    ctx: *const NyxqContext,
    command_buffer: *mut c_void,
    format: i32,
    (rows, cols, batch): (u64, u64, u32),
    transposed: bool,
    w: *const NyxqVkBufferRange,
    x: *const NyxqVkBufferRange,
    bias: *const NyxqVkBufferRange,
    y: *const NyxqVkBufferRange,
    ticket_out: *mut u64,
) -> Result<()> {
    let context = handle::get(ctx)?;
    let cmd = command_buffer_arg(command_buffer)?;
    let format: Format = format_arg(format)?;
    let ops = Operands {
        w: range_arg(w, "w")?,
        x: range_arg(x, "x")?,
        bias: optional_range(bias),
        y: range_arg(y, "y")?,
    };
    let out = ptr::out(ticket_out, "ticket_out")?;
    let engine = context.vulkan_engine()?;
    let call = MatvecCall {
        format,
        rows,
        cols,
        batch,
        transposed,
        compat: context.force_compat(),
    };
    // SAFETY: the caller passes a command buffer of the context's device in
    // the recording state and live storage buffers holding the declared
    // ranges (the documented contract); the rest is checked by record_matvec.
    let ticket = unsafe { record_matvec(engine, cmd, &call, &ops) }?;
    // SAFETY: ticket_out checked non-NULL.
    unsafe { out.write(ticket) };
    Ok(())
}

/// Records y = W·x (+ bias) for `batch` vectors (1 to 8) into
/// `command_buffer`: y[b·rows + r] = Σ_c W[r][c]·x[b·cols + c] + bias[r].
///
/// - `w`: the `rows`×`cols` matrix in `format` (any NyxqFormat), row-major,
///   each row whole blocks: the bytes nyxq_quantize writes for the flattened
///   matrix, rows·row_bytes of them (the range rounded up to whole 32-bit words).
/// - `x`: batch·cols floats; `bias`: NULL (no bias) or `rows` floats; `y`:
///   batch·rows floats, not overlapping `w`, `x` or `bias`.
///
/// Each range's `offset` must be a multiple of minStorageBufferOffsetAlignment;
/// `x`, `bias` and `y` must each fit maxStorageBufferRange, and `w` is split
/// by rows into several dispatches when it does not; no range may end past
/// its buffer's memory requirement (NyxqVkBufferRange). Command buffer,
/// barriers, tickets and what nyxq cannot check as nyxq_vk_cmd_quantize: nyxq
/// binds its pipeline, descriptor set 0 and push constants, records no
/// barrier before or after, submits nothing.
///
/// Accuracy: weights are dequantized exactly and multiplied in f32 fused
/// multiply-adds, so against an FP64 product of the dequantized weights
/// |y − y_ref| ≤ (cols + 3)·2⁻²⁴·Σ|w·x| (subnormal products may be flushed to
/// zero by the GPU). NaN/Inf in x propagate. The subgroup variant is used
/// where the device has subgroup arithmetic, unless compat is forced. On a
/// device nyxq created with shaderIntegerDotProduct (not a borrowed one),
/// the block formats (Q8_0, Q4_0, Q4_1, Q5_0, IQ4_NL) use the integer-dot variant
/// instead: x is rounded to int8 per block of 32 with scale s = max|x|/127,
/// which adds at most
/// Σ_blocks (s/2)·Σ|w| to the bound (NYXQ_VK_MATVEC_VARIANT=f32 turns it off).
/// x is rounded once per product by a dispatch recorded before it (then a
/// compute barrier), into a device-local scratch buffer of 40 bytes per 32
/// values of x (batch·cols·1.25 bytes) that the ticket holds until it is
/// released; nyxq keeps up to 4 released ones for later products until the
/// context is destroyed (counted in nyxq_context_memory_status).
///
/// Errors: NYXQ_ERROR_NULL_POINTER (ctx, command_buffer, w, x, y, a buffer,
/// ticket_out), NYXQ_ERROR_INVALID_HANDLE, NYXQ_ERROR_INVALID_ARGUMENT (unknown
/// format, empty matrix, cols not whole blocks, batch outside 1..8, misaligned
/// offset, a range past its buffer, y overlapping an input), NYXQ_ERROR_BUFFER_TOO_SMALL (a range's
/// size; the needed bytes in nyxq_last_error_needed_len),
/// NYXQ_ERROR_SIZE_OVERFLOW, NYXQ_ERROR_UNSUPPORTED (a CPU context; x, bias, y
/// or one row of W over
/// maxStorageBufferRange), NYXQ_ERROR_OUT_OF_MEMORY
/// (65 536 recorded dispatches unreleased), NYXQ_ERROR_OUT_OF_DEVICE_MEMORY
/// (the scratch buffer of x's rounding: the budget or the driver refused
/// it), NYXQ_ERROR_VULKAN, NYXQ_ERROR_DEVICE_LOST (the device was lost, in
/// this call or before: create a new context). Nothing is recorded on
/// error. Thread-safe for distinct command buffers.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_vk_cmd_matvec(
    ctx: *mut NyxqContext,
    command_buffer: *mut c_void,
    format: i32,
    rows: u64,
    cols: u64,
    batch: u32,
    w: *const NyxqVkBufferRange,
    x: *const NyxqVkBufferRange,
    bias: *const NyxqVkBufferRange,
    y: *const NyxqVkBufferRange,
    ticket_out: *mut u64,
) -> NyxqStatus {
    guard(|| {
        record(
            ctx,
            command_buffer,
            format,
            (rows, cols, batch),
            false,
            w,
            x,
            bias,
            y,
            ticket_out,
        )
    })
}

/// Records y = xᵀ·W for `batch` vectors (the backward pass of a quantized
/// layer): y[b·cols + c] = Σ_r x[b·rows + r]·W[r][c]. `x`: batch·rows floats;
/// `y`: batch·cols floats. When `w` is split over several dispatches, nyxq
/// records a compute barrier between them (they add into y). Weights, ranges,
/// command buffer, tickets, accuracy (the sum runs over rows) and errors as
/// nyxq_vk_cmd_matvec.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_vk_cmd_matvec_transposed(
    ctx: *mut NyxqContext,
    command_buffer: *mut c_void,
    format: i32,
    rows: u64,
    cols: u64,
    batch: u32,
    w: *const NyxqVkBufferRange,
    x: *const NyxqVkBufferRange,
    y: *const NyxqVkBufferRange,
    ticket_out: *mut u64,
) -> NyxqStatus {
    guard(|| {
        record(
            ctx,
            command_buffer,
            format,
            (rows, cols, batch),
            true,
            w,
            x,
            std::ptr::null(),
            y,
            ticket_out,
        )
    })
}

/// Checks the arguments, records the matmul, writes the ticket.
#[allow(clippy::too_many_arguments)]
fn record_product(
    ctx: *const NyxqContext,
    command_buffer: *mut c_void,
    format: i32,
    (rows, cols, tokens): (u64, u64, u64),
    transposed: bool,
    w: *const NyxqVkBufferRange,
    x: (*const NyxqVkBufferRange, &str),
    bias: *const NyxqVkBufferRange,
    y: (*const NyxqVkBufferRange, &str),
    ticket_out: *mut u64,
) -> Result<()> {
    let context = handle::get(ctx)?;
    let cmd = command_buffer_arg(command_buffer)?;
    let format: Format = format_arg(format)?;
    let ops = Operands {
        w: range_arg(w, "w")?,
        x: range_arg(x.0, x.1)?,
        bias: optional_range(bias),
        y: range_arg(y.0, y.1)?,
    };
    let out = ptr::out(ticket_out, "ticket_out")?;
    let call = MatmulCall {
        format,
        rows,
        cols,
        tokens,
        transposed,
    };
    let engine = context.recording_engine(call.op(), format)?;
    // SAFETY: the caller passes a command buffer of the context's device in
    // the recording state and live storage buffers holding the declared
    // ranges (the documented contract); the rest is checked by record_matmul.
    let ticket = unsafe { record_matmul(engine, cmd, &call, &ops) }?;
    // SAFETY: ticket_out checked non-NULL.
    unsafe { out.write(ticket) };
    Ok(())
}

/// Records Y = X·Wᵀ (+ bias) for `tokens` tokens (a layer's forward pass
/// over a batch) into `command_buffer`:
/// y[t·rows + r] = Σ_c x[t·cols + c]·W[r][c] + bias[r].
///
/// - `w`: the `rows`×`cols` matrix in `format` (any NyxqFormat), row-major,
///   each row whole blocks: the bytes nyxq_quantize writes for the flattened
///   matrix, rows·row_bytes of them (the range rounded up to whole 32-bit words).
/// - `x`: tokens·cols floats, token-major; `bias`: NULL (no bias) or `rows`
///   floats; `y`: tokens·rows floats, not overlapping `w`, `x` or `bias`.
///
/// Each range's `offset` must be a multiple of minStorageBufferOffsetAlignment,
/// and no range may end past its buffer's memory requirement
/// (NyxqVkBufferRange). `w` is split by rows and `x` and `y` by tokens into
/// several dispatches where they exceed maxStorageBufferRange; `bias`, one
/// row of `w` and one token's values must each fit it. Command buffer,
/// barriers, tickets and what nyxq cannot check as nyxq_vk_cmd_quantize:
/// nyxq binds its pipeline, descriptor set 0 and push constants, records no
/// barrier before or after, submits nothing.
///
/// The kernel is the one the context's self-test chose (nyxq_context_report
/// names it): on a device with VK_KHR_cooperative_matrix (16×8×16, f16
/// inputs and f32 results at subgroup scope, subgroups of 32) enabled with
/// shaderFloat16 and vulkanMemoryModel, the `_coop128` variant (or `_coop`
/// where it does not fit), which rounds W and X to f16 and sums in f32 on
/// the matrix units: against an FP64
/// product of the dequantized weights |y − y_ref| ≤
/// (2⁻⁹ + (cols + 12)·2⁻²³)·Σ|w·x| + 2⁻²³·Σ(|w| + |x|), for magnitudes below
/// 65520 (larger ones become ±Inf).
/// Elsewhere, or with compat forced, the compatible variant: f32 tiles,
/// fused multiply-adds, |y − y_ref| ≤ (cols + 3)·2⁻²⁴·Σ|w·x| (subnormal
/// products may be flushed to zero). The bias adds one rounding. NaN/Inf in
/// x propagate.
///
/// Errors: NYXQ_ERROR_NULL_POINTER (ctx, command_buffer, w, x, y, a buffer,
/// ticket_out), NYXQ_ERROR_INVALID_HANDLE, NYXQ_ERROR_INVALID_ARGUMENT (unknown
/// format, empty matrix, cols not whole blocks, tokens of 0, rows, cols or
/// tokens above 2³²−1, misaligned offset, a range past its buffer, y
/// overlapping an input), NYXQ_ERROR_BUFFER_TOO_SMALL (a range's size; the
/// needed bytes in nyxq_last_error_needed_len), NYXQ_ERROR_SIZE_OVERFLOW,
/// NYXQ_ERROR_UNSUPPORTED (a CPU context; a kernel disabled by its
/// self-test; bias, one row of W or one token's values over
/// maxStorageBufferRange), NYXQ_ERROR_OUT_OF_MEMORY (65 536 recorded
/// dispatches unreleased), NYXQ_ERROR_VULKAN,
/// NYXQ_ERROR_DEVICE_LOST (the device was lost, in this call or before:
/// create a new context). Nothing is recorded on error.
/// Thread-safe for distinct command buffers.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_vk_cmd_matmul(
    ctx: *mut NyxqContext,
    command_buffer: *mut c_void,
    format: i32,
    rows: u64,
    cols: u64,
    tokens: u64,
    w: *const NyxqVkBufferRange,
    x: *const NyxqVkBufferRange,
    bias: *const NyxqVkBufferRange,
    y: *const NyxqVkBufferRange,
    ticket_out: *mut u64,
) -> NyxqStatus {
    guard(|| {
        record_product(
            ctx,
            command_buffer,
            format,
            (rows, cols, tokens),
            false,
            w,
            (x, "x"),
            bias,
            (y, "y"),
            ticket_out,
        )
    })
}

/// Records dX = dY·W for `tokens` tokens (the backward pass of a quantized
/// layer over a batch): dx[t·cols + c] = Σ_r dy[t·rows + r]·W[r][c]. `dy`:
/// tokens·rows floats; `dx`: tokens·cols floats. When `w` is split over
/// several dispatches, nyxq records a compute barrier between its chunks
/// (they add into dx). Weights, ranges, command buffer, tickets, kernels,
/// accuracy (the sum runs over rows) and errors as nyxq_vk_cmd_matmul.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_vk_cmd_matmul_transposed(
    ctx: *mut NyxqContext,
    command_buffer: *mut c_void,
    format: i32,
    rows: u64,
    cols: u64,
    tokens: u64,
    w: *const NyxqVkBufferRange,
    dy: *const NyxqVkBufferRange,
    dx: *const NyxqVkBufferRange,
    ticket_out: *mut u64,
) -> NyxqStatus {
    guard(|| {
        record_product(
            ctx,
            command_buffer,
            format,
            (rows, cols, tokens),
            true,
            w,
            (dy, "dy"),
            std::ptr::null(),
            (dx, "dx"),
            ticket_out,
        )
    })
}
