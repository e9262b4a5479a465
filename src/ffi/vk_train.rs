//! Recording the loss scaler's unscale-and-check into the caller's command
//! buffer (the Vulkan twin of nyxq_loss_scaler_unscale_and_check); the header
//! lists it with the training calls, after the scaler it reads.

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
