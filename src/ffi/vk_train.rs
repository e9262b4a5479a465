//! Recording the training helpers' kernels into the caller's command buffer:
//! the loss scaler's unscale-and-check (the Vulkan twin of
//! nyxq_loss_scaler_unscale_and_check) and the importance sums of a layer's
//! activations (the device side of nyxq_importance_add); the header lists
//! them with the training calls.

use super::context::NyxqContext;
use super::guard::guard;
use super::handle;
use super::ptr;
use super::status::NyxqStatus;
use super::train::NyxqLossScaler;
use super::vk_cmd::{NyxqVkBufferRange, command_buffer_arg, range_arg};
use crate::vk::record;
use std::ffi::c_void;

/// Records the loss scaler's unscale-and-check over `n` f32 gradients in the
/// caller's buffer `grads`, in place: each is multiplied by 1/scale (the
/// scaler's current scale), and the uint32_t at `found` gets 1 ORed into it
/// when a result is NaN or ±Inf. Zero `found` before the step (for example with
/// vkCmdFillBuffer) and let every gradient buffer of the step OR into it; after
/// the command buffer completed, pass its value to
/// nyxq_loss_scaler_report_non_finite, then call nyxq_loss_scaler_update.
///
/// The bytes equal nyxq_loss_scaler_unscale_and_check's whenever the scale is a
/// power of two not below 1 (the default scaler's always is: 65536, x2, x0.5,
/// floor 1), subnormal results included; with another scale, a result or
/// input below 2^-126 may be flushed to zero by the GPU.
/// Command buffer, ranges, tickets and what nyxq cannot check as
/// nyxq_vk_cmd_quantize; `found` needs 4 bytes at an aligned offset, outside
/// `grads`.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE (ctx, scaler),
/// NYXQ_ERROR_INVALID_ARGUMENT (n of 0, misaligned offset, a range past the
/// buffer's memory requirement, overlapping ranges), NYXQ_ERROR_BUFFER_TOO_SMALL, NYXQ_ERROR_SIZE_OVERFLOW,
/// NYXQ_ERROR_UNSUPPORTED (a CPU context), NYXQ_ERROR_OUT_OF_MEMORY (65 536
/// recorded dispatches unreleased), NYXQ_ERROR_VULKAN,
/// NYXQ_ERROR_DEVICE_LOST (the device was lost, in this call or before:
/// create a new context). Nothing is recorded on
/// error. Thread-safe for distinct command buffers.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_vk_cmd_unscale_and_check(
    ctx: *mut NyxqContext,
    scaler: *const NyxqLossScaler,
    command_buffer: *mut c_void,
    grads: *const NyxqVkBufferRange,
    n: u64,
    found: *const NyxqVkBufferRange,
    ticket_out: *mut u64,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        let scaler = handle::get(scaler)?;
        let cmd = command_buffer_arg(command_buffer)?;
        let grads = range_arg(grads, "grads")?;
        let found = range_arg(found, "found")?;
        let out = ptr::out(ticket_out, "ticket_out")?;
        let engine = context.vulkan_engine()?;
        let inverse = scaler.lock().inverse();
        // SAFETY: as in record_call: the caller's command buffer is recording
        // on the context's device and the buffers hold the declared ranges.
        let ticket = unsafe { record::record_unscale(engine, cmd, &grads, n, &found, inverse) }?;
        // SAFETY: ticket_out checked non-NULL.
        unsafe { out.write(ticket) };
        Ok(())
    })
}

/// Records `sums[c] += Σ_t x[t][c]²` for the `tokens` × `cols` f32
/// activations at `x` (one layer's input, row-major: token t's column c at
/// float t * cols + c) into the `cols` f32 sums at `sums`, a buffer of the
/// caller's: the device side of nyxq_importance_add, for activations that
/// never leave the GPU. Zero `sums` before the first recording (for example
/// with vkCmdFillBuffer) and let every batch add to it; then, after the
/// command buffer completed, read the sums back and pass them with the
/// total token count to nyxq_importance_add_sums, and zero them again.
///
/// Each column's tokens are summed in order in f32 and added once per
/// dispatch (one dispatch unless `x` exceeds maxStorageBufferRange; then a
/// barrier separates the dispatches). The sums are within
/// (tokens + 1) · 2^-23 of the host's f64 sums, relatively
/// (test: `VkHandoff.ImportanceSumsMatchTheHost`); NaN or ±Inf in `x`
/// is not checked on the device and makes its column's sum non-finite,
/// which nyxq_importance_add_sums then refuses. Command buffer, ranges,
/// tickets and what nyxq cannot check as nyxq_vk_cmd_quantize; `x` and
/// `sums` must not overlap.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (tokens or cols of 0, cols beyond 2^32 - 1,
/// misaligned offset, a range past the buffer's memory requirement,
/// overlapping ranges), NYXQ_ERROR_BUFFER_TOO_SMALL (a range's size),
/// NYXQ_ERROR_SIZE_OVERFLOW (tokens * cols * 4), NYXQ_ERROR_UNSUPPORTED (a
/// CPU context, sums beyond maxStorageBufferRange), NYXQ_ERROR_OUT_OF_MEMORY
/// (65 536 recorded dispatches unreleased), NYXQ_ERROR_VULKAN,
/// NYXQ_ERROR_DEVICE_LOST (the device was lost, in this call or before:
/// create a new context). Nothing is recorded on error. Thread-safe for
/// distinct command buffers.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_vk_cmd_importance_add(
    ctx: *mut NyxqContext,
    command_buffer: *mut c_void,
    x: *const NyxqVkBufferRange,
    tokens: u64,
    cols: u64,
    sums: *const NyxqVkBufferRange,
    ticket_out: *mut u64,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        let cmd = command_buffer_arg(command_buffer)?;
        let x = range_arg(x, "x")?;
        let sums = range_arg(sums, "sums")?;
        let out = ptr::out(ticket_out, "ticket_out")?;
        let engine = context.vulkan_engine()?;
        // SAFETY: as in record_call: the caller's command buffer is recording
        // on the context's device and the buffers hold the declared ranges.
        let ticket = unsafe { record::record_importance(engine, cmd, &x, tokens, cols, &sums) }?;
        // SAFETY: ticket_out checked non-NULL.
        unsafe { out.write(ticket) };
        Ok(())
    })
}
