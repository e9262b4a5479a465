//! Recording nyxq's kernels into the caller's command buffer (DESIGN.md,
//! "Vulkan handoff", way 1), and releasing what those recordings hold.

use super::context::NyxqContext;
use super::format::format_arg;
use super::guard::guard;
use super::handle;
use super::ptr;
use super::quant::NyxqQuantizeOptions;
use super::status::NyxqStatus;
use crate::error::{Error, ErrorKind, Result};
use crate::format::Format;
use crate::quant::{NonFinite, Rounding};
use crate::vk::ranges::BufferRange;
use crate::vk::record::{self, KernelCall};
use crate::vk::shaders::Op;
use ash::vk::{self, Handle};
use std::ffi::c_void;

// Vulkan's non-dispatchable handles (VkBuffer) are pointers only on 64-bit
// platforms; nyxq's header passes them as `void *`.
const _: () = assert!(size_of::<*mut c_void>() == 8);

/// A range of one of the caller's VkBuffers.
///
/// `buffer` is a VkBuffer, passed as `void *`: on the 64-bit platforms nyxq
/// supports every Vulkan handle is a pointer, so a VkBuffer converts to
/// `void *` without a cast in C and C++. The buffer must have been created with
/// VK_BUFFER_USAGE_STORAGE_BUFFER_BIT on the context's VkDevice; `offset` must
/// be a multiple of minStorageBufferOffsetAlignment (and of 4), and `size`
/// must cover the kernel's bytes rounded up to whole 32-bit words.
///
/// Bounds: `offset + size` must not wrap around 2^64
/// (NYXQ_ERROR_SIZE_OVERFLOW) and must not exceed the `size` that
/// vkGetBufferMemoryRequirements reports for `buffer`
/// (NYXQ_ERROR_INVALID_ARGUMENT, naming the buffer, the range and that size).
/// That size is the tightest bound nyxq can read for a buffer it did not
/// create: it is at least the buffer's creation size and may exceed it by
/// alignment, so a range that ends between the two is not refused (the
/// validation layer reports it when the dispatch is recorded or submitted).
/// nyxq cannot check the buffer's usage flags, that the buffer belongs to the
/// context's VkDevice or is still alive; the validation layer reports those.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NyxqVkBufferRange {
    /// VkBuffer.
    pub buffer: *mut c_void,
    /// Byte offset of the range in the buffer.
    pub offset: u64,
    /// Bytes of the range.
    pub size: u64,
}

/// What a context's recorder holds (nyxq_vk_recorder_usage).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct NyxqVkRecorderUsage {
    /// Descriptor pools nyxq made for recorded dispatches (256 sets each).
    pub descriptor_pools: u64,
    /// Descriptor sets of recorded dispatches not yet released.
    pub unreleased_sets: u64,
    /// The last ticket handed out (0 before the first recording).
    pub last_ticket: u64,
}

/// The range at `range`, or None for NULL.
pub(crate) fn optional_range(range: *const NyxqVkBufferRange) -> Option<BufferRange> {
    if range.is_null() {
        return None;
    }
    // SAFETY: non-NULL, a NyxqVkBufferRange per the contract; read_unaligned
    // because C need not align it for Rust's view.
    let r = unsafe { range.read_unaligned() };
    Some(BufferRange {
        buffer: vk::Buffer::from_raw(r.buffer as u64),
        offset: r.offset,
        size: r.size,
    })
}

/// The range at `range`; NULL is NYXQ_ERROR_NULL_POINTER naming `what`.
pub(crate) fn range_arg(range: *const NyxqVkBufferRange, what: &str) -> Result<BufferRange> {
    optional_range(range)
        .ok_or_else(|| Error::new(ErrorKind::NullPointer, format!("{what} is NULL")))
}

/// The caller's VkCommandBuffer; NULL is NYXQ_ERROR_NULL_POINTER.
pub(crate) fn command_buffer_arg(cmd: *mut c_void) -> Result<vk::CommandBuffer> {
    if cmd.is_null() {
        return Err(Error::new(ErrorKind::NullPointer, "command_buffer is NULL"));
    }
    Ok(vk::CommandBuffer::from_raw(cmd as u64))
}

/// The rounding of options a recorded kernel supports (nearest or stochastic,
/// rejecting non-finite input, no importance) and the first index.
///
/// # Safety
/// As quantize_options.
unsafe fn recorded_rounding(options: *const NyxqQuantizeOptions) -> Result<(Rounding, u64)> {
    // SAFETY: per this function's contract.
    let opts = unsafe { super::quant::quantize_options(options, 1) }?;
    if matches!(opts.rounding, Rounding::ErrorMinimising) || opts.importance.is_some() {
        return Err(Error::unsupported(
            "error-minimising rounding has no Vulkan kernel; quantize on the CPU (nyxq_quantize)",
        ));
    }
    if opts.non_finite != NonFinite::Reject {
        return Err(Error::unsupported(
            "NYXQ_NON_FINITE_SATURATE has no Vulkan kernel; quantize on the CPU (nyxq_quantize)",
        ));
    }
    Ok((opts.rounding, opts.first_index))
}

/// Records kernel `call` = (op, format, n) with the checked arguments.
fn record_call(
    ctx: *const NyxqContext,
    command_buffer: *mut c_void,
    call: (Op, Format, u64),
    src: *const NyxqVkBufferRange,
    dst: *const NyxqVkBufferRange,
    rounding: (Rounding, u64),
    ticket_out: *mut u64,
) -> Result<()> {
    let context = handle::get(ctx)?;
    let cmd = command_buffer_arg(command_buffer)?;
    let src = range_arg(src, "src")?;
    let dst = range_arg(dst, "dst")?;
    let out = ptr::out(ticket_out, "ticket_out")?;
    let (op, format, n) = call;
    let engine = context.recording_engine(op, format)?;
    let call = KernelCall {
        op,
        format,
        n,
        rounding: rounding.0,
        first_index: rounding.1,
    };
    // SAFETY: the caller passes a command buffer of the context's device in
    // the recording state and live storage buffers holding the declared ranges
    // (the documented contract); everything else was checked above or is
    // checked by record_kernel.
    let ticket = unsafe { record::record_kernel(engine, cmd, &call, &src, &dst) }?;
    // SAFETY: ticket_out checked non-NULL.
    unsafe { out.write(ticket) };
    Ok(())
}

/// Records the quantization of `n` floats (F32, at `src`) to `format` (at
/// `dst`) into `command_buffer`; the bytes equal nyxq_quantize's.
///
/// `command_buffer` is a VkCommandBuffer (passed as `void *`, no cast needed)
/// allocated from the context's VkDevice, in the recording state, outside a
/// render pass. nyxq binds a compute pipeline, descriptor set 0 and push
/// constants (rebind yours afterwards) and records its dispatches; it records
/// no barrier, submits nothing and waits for nothing. Put a barrier before
/// (your writes of `src` -> shader reads) and after (shader writes of `dst` ->
/// your reads), as for any compute dispatch.
///
/// `options` (NULL for defaults): NEAREST or STOCHASTIC rounding with `seed`
/// and `first_index`. The values are not read at record time, so they are not
/// checked: NaN, ±Inf or values beyond the format's range give unspecified
/// bytes there (nyxq_quantize checks them on the host).
///
/// On success *ticket_out names this recording; the descriptor sets it uses
/// stay allocated until nyxq_vk_release(ctx, ticket) or a later ticket. While
/// a ticket is unreleased, nyxq_context_destroy refuses, and so do
/// nyxq_tensor_destroy and the move to the host of a DEVICE tensor whose
/// buffers it binds.
///
/// What nyxq checks: the handles, the format, `n`, each range's alignment,
/// size and bounds (NyxqVkBufferRange), overlap. What it cannot check, and
/// the validation layer reports: that `command_buffer` belongs to the
/// context's VkDevice and is in the recording state outside a render pass,
/// the buffers' usage flags and device, the barriers around the dispatch.
/// Breaking those is undefined behaviour in Vulkan, not an nyxq error.
///
/// Errors: NYXQ_ERROR_NULL_POINTER (ctx, command_buffer, src, dst, a buffer,
/// ticket_out), NYXQ_ERROR_INVALID_HANDLE, NYXQ_ERROR_INVALID_ARGUMENT
/// (unknown format, n of 0 or not whole blocks, misaligned offset, a range
/// past the buffer's memory requirement, overlapping src and dst),
/// NYXQ_ERROR_BUFFER_TOO_SMALL (a range's size; the
/// needed bytes in nyxq_last_error_needed_len), NYXQ_ERROR_SIZE_OVERFLOW,
/// NYXQ_ERROR_UNSUPPORTED (a CPU context, a kernel disabled by its
/// self-test, error-minimising rounding, saturation), NYXQ_ERROR_OUT_OF_MEMORY
/// (65 536 recorded dispatches unreleased), NYXQ_ERROR_VULKAN,
/// NYXQ_ERROR_DEVICE_LOST (the device was lost, in this call or before:
/// create a new context). Nothing is recorded on
/// error. Thread-safe for distinct command buffers (Vulkan requires external
/// synchronisation of one command buffer).
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_vk_cmd_quantize(
    ctx: *mut NyxqContext,
    command_buffer: *mut c_void,
    format: i32,
    n: u64,
    src: *const NyxqVkBufferRange,
    dst: *const NyxqVkBufferRange,
    options: *const NyxqQuantizeOptions,
    ticket_out: *mut u64,
) -> NyxqStatus {
    guard(|| {
        // SAFETY: the options contract is the caller's (see NyxqQuantizeOptions).
        let rounding = unsafe { recorded_rounding(options) }?;
        let call = (Op::Quantize, format_arg(format)?, n);
        record_call(ctx, command_buffer, call, src, dst, rounding, ticket_out)
    })
}

/// Records the dequantization of `n` values of `format` (at `src`) into
/// `out_format` (NYXQ_FORMAT_F32, or NYXQ_FORMAT_F16 for binary16 bits) at
/// `dst`. The values equal nyxq_dequantize's (F16: those floats rounded to
/// nearest even). Command buffer, ranges, tickets and errors as
/// nyxq_vk_cmd_quantize; NYXQ_ERROR_UNSUPPORTED also for F32 -> F16 (that is a
/// quantize) and for an `out_format` other than F32 and F16.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_vk_cmd_dequantize(
    ctx: *mut NyxqContext,
    command_buffer: *mut c_void,
    format: i32,
    n: u64,
    src: *const NyxqVkBufferRange,
    dst: *const NyxqVkBufferRange,
    out_format: i32,
    ticket_out: *mut u64,
) -> NyxqStatus {
    guard(|| {
        let format = format_arg(format)?;
        let op = match format_arg(out_format)? {
            Format::F32 => Op::Dequantize,
            Format::F16 => Op::DequantizeF16,
            other => {
                return Err(Error::unsupported(format!(
                    "out_format {} has no dequantize kernel (F32 or F16)",
                    other.name()
                )));
            }
        };
        record_call(
            ctx,
            command_buffer,
            (op, format, n),
            src,
            dst,
            (Rounding::Nearest, 0),
            ticket_out,
        )
    })
}

/// Records quantize-then-dequantize of `n` floats (at `src`) through `format`
/// into floats at `dst` (quantization-aware training's forward weights, equal
/// to nyxq_fake_quantize's). `src` and `dst` must not overlap. Options,
/// command buffer, tickets and errors as nyxq_vk_cmd_quantize.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_vk_cmd_fake_quantize(
    ctx: *mut NyxqContext,
    command_buffer: *mut c_void,
    format: i32,
    n: u64,
    src: *const NyxqVkBufferRange,
    dst: *const NyxqVkBufferRange,
    options: *const NyxqQuantizeOptions,
    ticket_out: *mut u64,
) -> NyxqStatus {
    guard(|| {
        // SAFETY: the options contract is the caller's (see NyxqQuantizeOptions).
        let rounding = unsafe { recorded_rounding(options) }?;
        let call = (Op::FakeQuantize, format_arg(format)?, n);
        record_call(ctx, command_buffer, call, src, dst, rounding, ticket_out)
    })
}

/// Tells nyxq that every command buffer holding recordings up to and
/// including `ticket` has completed (or will never be submitted): their
/// descriptor sets return to nyxq's pools for later recordings. Call it after
/// your fence or timeline wait; passing the last ticket you received releases
/// everything. Releasing an already released ticket again is a no-op.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (a ticket never issued), NYXQ_ERROR_UNSUPPORTED
/// (a CPU context). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_vk_release(ctx: *mut NyxqContext, ticket: u64) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        let engine = context.vulkan_engine()?;
        engine.recorder().release(&engine.device.device, ticket)
    })
}

/// Releases the descriptor sets of `ticket` alone once `semaphore` has
/// reached `value`: for command buffers in flight on several queues, or
/// completing out of order, where "this ticket and every earlier one"
/// (nyxq_vk_release) does not hold. `semaphore` is a VkSemaphore of type
/// VK_SEMAPHORE_TYPE_TIMELINE on the context's device, as `void *` (the
/// cast `reinterpret_cast<void *>(semaphore)`, C: `(void *)`), which your
/// submission of the command buffer holding the ticket signals with `value`
/// (or more) when it completes.
///
/// nyxq checks the semaphore's counter (vkGetSemaphoreCounterValue) now and
/// at every later recording, nyxq_vk_recorder_usage, tensor destroy or
/// migration, and nyxq_context_destroy, and releases the tickets whose
/// semaphore has reached its value; it never waits. Keep the semaphore alive
/// until the ticket is released (nyxq_vk_recorder_usage then no longer
/// counts its sets; nyxq_vk_release of the ticket releases it at once). A
/// later call for the same ticket replaces its semaphore and value; a
/// released ticket is left alone; nyxq_vk_release(ctx, t) releases every
/// ticket up to t, waiting ones too. nyxq cannot check that the semaphore is
/// a timeline one: a binary semaphore is invalid usage, which the validation
/// layer reports (VUID-vkGetSemaphoreCounterValue-semaphore-03255).
///
/// Errors: NYXQ_ERROR_NULL_POINTER (ctx, semaphore), NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (a ticket never issued), NYXQ_ERROR_UNSUPPORTED
/// (a CPU context), NYXQ_ERROR_DEVICE_LOST (reading a counter reported the
/// device lost). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_vk_release_when(
    ctx: *mut NyxqContext,
    ticket: u64,
    semaphore: *mut c_void,
    value: u64,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        if semaphore.is_null() {
            return Err(Error::new(ErrorKind::NullPointer, "semaphore is NULL"));
        }
        let engine = context.vulkan_engine()?;
        let semaphore = ash::vk::Semaphore::from_raw(semaphore as u64);
        // SAFETY: a timeline semaphore of the context's device that lives
        // until the ticket is released, signalled after the ticket's command
        // buffers complete: the documented contract.
        let registered = unsafe {
            engine
                .recorder()
                .release_when(&engine.device.device, ticket, semaphore, value)
        };
        engine.device.note_loss(registered)
    })
}

/// What the context's recorder holds: descriptor pools, unreleased sets and
/// the last ticket (for leak checks: pools stay constant when you release).
/// Tickets whose semaphore (nyxq_vk_release_when) has reached its value are
/// released first.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_UNSUPPORTED (a CPU context). *usage_out is written only on
/// success. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_vk_recorder_usage(
    ctx: *const NyxqContext,
    usage_out: *mut NyxqVkRecorderUsage,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        let out = ptr::out(usage_out, "usage_out")?;
        let engine = context.vulkan_engine()?;
        engine.poll_releases_before_a_check();
        let usage = engine.recorder().usage();
        // SAFETY: usage_out checked non-NULL.
        unsafe {
            out.write(NyxqVkRecorderUsage {
                descriptor_pools: usage.pools as u64,
                unreleased_sets: usage.unreleased_sets as u64,
                last_ticket: usage.last_ticket,
            })
        };
        Ok(())
    })
}
