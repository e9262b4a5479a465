//! Adam with its state on the device (the Vulkan twin of NyxqAdam): the
//! optimizer object, its step recorded into the caller's command buffer,
//! and its checkpoints. The header lists it with the training calls.

use super::context::NyxqContext;
use super::guard::guard;
use super::handle::{self, Opaque};
use super::ptr;
use super::status::NyxqStatus;
use super::train::{NyxqAdamOptions, adam_settings};
use super::vk_cmd::{NyxqVkBufferRange, command_buffer_arg, optional_range, range_arg};
use crate::error::Error;
use crate::vk::adam::DeviceAdam;
use crate::vk::adam_choice;
use parking_lot::Mutex;
use std::ffi::c_void;
use std::sync::Arc;

/// Adam's state for one parameter tensor in device memory of a Vulkan
/// context. Calls on one optimizer must not overlap (each takes its lock);
/// different optimizers may be used in parallel.
pub struct NyxqVkAdam {
    _opaque: [u8; 0],
}

impl Opaque for NyxqVkAdam {
    type Inner = Mutex<DeviceAdam>;
    const KIND: &'static str = "device adam optimizer";
}

/// Creates Adam state for a tensor of `n` (>= 1) FP32 parameters in the
/// device memory of `ctx`'s Vulkan device; `options` NULL means the
/// defaults, as nyxq_adam_create (the same 8-bit rule: tensors under 4096
/// elements keep FP32 state). Release with nyxq_vk_adam_destroy.
///
/// nyxq allocates the state (8 bytes per parameter for FP32 state, about 2
/// for 8-bit state, as on the host) and a 4096-byte control buffer in
/// device-local memory, admitted against the budget and counted in
/// nyxq_context_memory_status, and zeroes it. The first optimizer of each
/// state layout on a context also runs the step kernels' self-test (a few
/// steps next to the CPU's Adam) and keeps the fastest kernel whose bits
/// agree. Both submit to the context's queue and wait, as tensor uploads
/// do. The optimizer keeps the context's device alive.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (struct_size, betas outside [0, 1), eps <= 0,
/// negative weight decay, unknown state, n of 0), NYXQ_ERROR_UNSUPPORTED (a
/// CPU context, or no step kernel of the device agrees with the CPU),
/// NYXQ_ERROR_OUT_OF_DEVICE_MEMORY, NYXQ_ERROR_VULKAN, NYXQ_ERROR_DEVICE_LOST.
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_vk_adam_create(
    ctx: *mut NyxqContext,
    options: *const NyxqAdamOptions,
    n: u64,
    adam_out: *mut *mut NyxqVkAdam,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        let out = ptr::out(adam_out, "adam_out")?;
        // SAFETY: the caller's options contract (as nyxq_adam_create).
        let settings = unsafe { adam_settings(options) }?;
        let n = usize::try_from(n).map_err(|_| Error::overflow("n"))?;
        let engine = context.vulkan_engine()?;
        let adam = adam_choice::create(engine, settings, n, context.force_compat())?;
        // SAFETY: adam_out checked non-NULL.
        unsafe { out.write(handle::register::<NyxqVkAdam>(Mutex::new(adam))) };
        Ok(())
    })
}

/// Releases a device optimizer and its device memory. NULL is a no-op.
///
/// While unreleased tickets of recorded steps (nyxq_vk_cmd_adam_step) bind
/// its state, the call refuses with NYXQ_ERROR_INVALID_ARGUMENT and
/// destroys nothing: wait for those submissions, call nyxq_vk_release, then
/// destroy.
///
/// Errors: NYXQ_ERROR_INVALID_HANDLE, NYXQ_ERROR_INVALID_ARGUMENT (unreleased
/// recorded tickets bind its state). No other call may be using it.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_vk_adam_destroy(adam: *mut NyxqVkAdam) -> NyxqStatus {
    guard(|| {
        if adam.is_null() {
            return Ok(());
        }
        handle::get(adam)?
            .lock()
            .check_not_bound_by_recordings("destroy it")?;
        handle::unregister(adam)
    })
}

/// Bytes of optimizer state held on the device (*bytes_out, the host
/// optimizer's count for the same tensor, without the 4096-byte control
/// buffer) and what FP32 Adam would hold (*fp32_bytes_out, 8 per parameter).
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_vk_adam_state_bytes(
    adam: *const NyxqVkAdam,
    bytes_out: *mut usize,
    fp32_bytes_out: *mut usize,
) -> NyxqStatus {
    guard(|| {
        let a = handle::get(adam)?;
        let held_out = ptr::out(bytes_out, "bytes_out")?;
        let fp32_out = ptr::out(fp32_bytes_out, "fp32_bytes_out")?;
        let (held, fp32) = a.lock().state_bytes();
        // SAFETY: both out-pointers checked non-NULL.
        unsafe {
            held_out.write(held);
            fp32_out.write(fp32);
        }
        Ok(())
    })
}

/// Records one Adam(W) step of `adam` at learning rate `lr` into
/// `command_buffer`: the `n` f32 master weights at `params` are updated in
/// place from the `n` f32 gradients at `grads` (the caller's buffers, or a
/// DEVICE F32 tensor's, nyxq_tensor_vk_buffer), and the moments in nyxq's
/// buffers. The bits of the weights and the state equal those
/// nyxq_adam_step gives for the same inputs, for every input whose results
/// are not NaN (a NaN may have another payload).
///
/// `found` (may be NULL: the step always applies) is the uint32_t flag that
/// nyxq_vk_cmd_unscale_and_check ORs into: when it is nonzero as the step
/// runs, the step is skipped on the device and changes nothing, neither the
/// weights nor the state nor the step count. The host does not wait for the
/// flag: read it when the command buffer has completed and pass it to
/// nyxq_loss_scaler_report_non_finite before nyxq_loss_scaler_update, as
/// for any step (docs/vulkan.md, "Adam on the device").
///
/// nyxq records a one-invocation dispatch that counts the step, a pipeline
/// barrier (compute-shader writes to compute-shader reads), and one dispatch
/// per 16 Mi weights (fewer where maxStorageBufferRange is smaller). Put a
/// barrier before (your writes of `params`, `grads` and `found` -> shader
/// reads) and after (shader writes of `params` -> your reads), as for any
/// compute dispatch; two steps of one optimizer in one command buffer need
/// a compute-to-compute barrier between them. Command buffer, ranges,
/// tickets and what nyxq cannot check as nyxq_vk_cmd_quantize; `params`,
/// `grads` and `found` must not overlap, and `found` needs 4 bytes.
///
/// Errors: NYXQ_ERROR_NULL_POINTER (ctx, adam, command_buffer, params,
/// grads, a buffer, ticket_out), NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (n other than the optimizer's, lr negative or
/// not finite, an optimizer of another context, misaligned offset, a range
/// past the buffer's memory requirement, overlapping ranges),
/// NYXQ_ERROR_BUFFER_TOO_SMALL (a range's size; the needed bytes in
/// nyxq_last_error_needed_len), NYXQ_ERROR_SIZE_OVERFLOW,
/// NYXQ_ERROR_UNSUPPORTED (a CPU context), NYXQ_ERROR_OUT_OF_MEMORY (65 536
/// recorded dispatches unreleased), NYXQ_ERROR_VULKAN,
/// NYXQ_ERROR_DEVICE_LOST (the device was lost, in this call or before:
/// create a new context). Nothing is recorded
/// on error. Thread-safe for distinct command buffers and optimizers.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_vk_cmd_adam_step(
    ctx: *mut NyxqContext,
    adam: *mut NyxqVkAdam,
    command_buffer: *mut c_void,
    lr: f32,
    params: *const NyxqVkBufferRange,
    grads: *const NyxqVkBufferRange,
    n: u64,
    found: *const NyxqVkBufferRange,
    ticket_out: *mut u64,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        let adam = handle::get(adam)?;
        let cmd = command_buffer_arg(command_buffer)?;
        let params = range_arg(params, "params")?;
        let grads = range_arg(grads, "grads")?;
        let found = optional_range(found);
        let out = ptr::out(ticket_out, "ticket_out")?;
        let engine = context.vulkan_engine()?;
        let adam = adam.lock();
        if !Arc::ptr_eq(engine, adam.engine()) {
            return Err(Error::invalid(
                "the optimizer belongs to another context: record its steps through the \
                 context it was created on",
            ));
        }
        // SAFETY: the caller's command buffer is recording on the context's
        // device and the buffers hold the declared ranges (the documented
        // contract, as nyxq_vk_cmd_quantize's).
        let ticket = unsafe { adam.record_step(cmd, lr, (&params, &grads), n, found.as_ref()) }?;
        // SAFETY: ticket_out checked non-NULL.
        unsafe { out.write(ticket) };
        Ok(())
    })
}

/// Bytes of the device optimizer's checkpoint (nyxq_vk_adam_save), equal to
/// nyxq_adam_save_size for a host optimizer of the same options and size.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_vk_adam_save_size(
    adam: *const NyxqVkAdam,
    size_out: *mut usize,
) -> NyxqStatus {
    guard(|| {
        let a = handle::get(adam)?;
        let out = ptr::out(size_out, "size_out")?;
        let len = a.lock().checkpoint_len()?;
        // SAFETY: size_out checked non-NULL.
        unsafe { out.write(len) };
        Ok(())
    })
}

/// Copies the device optimizer's state to the host and writes it into the
/// first nyxq_vk_adam_save_size bytes of `dst`: the bytes nyxq_adam_save
/// writes for a host optimizer with the same state, so either loads the
/// other's. Submits copies to the context's queue and waits. The command
/// buffers holding its recorded steps must have completed and their tickets
/// been released.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_BUFFER_TOO_SMALL (the needed bytes in
/// nyxq_last_error_needed_len), NYXQ_ERROR_INVALID_ARGUMENT (unreleased
/// recorded tickets bind its state), NYXQ_ERROR_OUT_OF_DEVICE_MEMORY (staging
/// memory), NYXQ_ERROR_VULKAN, NYXQ_ERROR_DEVICE_LOST.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_vk_adam_save(
    adam: *const NyxqVkAdam,
    dst: *mut u8,
    dst_len: usize,
) -> NyxqStatus {
    guard(|| {
        let a = handle::get(adam)?;
        // SAFETY: the caller passes dst_len writable bytes at dst.
        let dst = unsafe { ptr::slice_mut(dst, dst_len, "dst") }?;
        let a = a.lock();
        Error::ensure_room("dst", "bytes", a.checkpoint_len()?, dst.len())?;
        a.save(dst).map(|_| ())
    })
}

/// Loads a checkpoint written by nyxq_vk_adam_save or nyxq_adam_save into
/// the device optimizer, which must have the same options and parameter
/// count: later recorded steps give the bits the saved optimizer would
/// have given. The bytes are checked whole before anything is written;
/// submits copies to the context's queue and waits. Refused while
/// unreleased recorded tickets bind its state.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (not an nyxq checkpoint, another version,
/// another kind of object, truncated or trailing bytes, a checksum that does
/// not match, options or a parameter count that differ, unreleased recorded
/// tickets; nothing changes), NYXQ_ERROR_OUT_OF_DEVICE_MEMORY (staging
/// memory), NYXQ_ERROR_VULKAN, NYXQ_ERROR_DEVICE_LOST (after these the state
/// may be partly loaded: load again).
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_vk_adam_load(
    adam: *mut NyxqVkAdam,
    src: *const u8,
    src_len: usize,
) -> NyxqStatus {
    guard(|| {
        let a = handle::get(adam)?;
        // SAFETY: the caller passes src_len readable bytes at src.
        let src = unsafe { ptr::slice(src, src_len, "src") }?;
        a.lock().load(src)
    })
}
