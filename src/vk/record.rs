//! Dispatches recorded into the caller's command buffer (DESIGN.md, "Vulkan
//! handoff", way 1): the quantize family and the loss scaler's unscale. nyxq
//! binds its pipeline, a descriptor set and push constants and records
//! `vkCmdDispatch`, split where a range exceeds maxStorageBufferRange; it
//! never submits and never waits. Each call returns the ticket whose release
//! frees its descriptor sets ([`super::recorder::Recorder::release`]).

use super::dispatch::{Dispatch, element_groups};
use super::engine::Engine;
use super::family::{ConvertPush, UnscalePush};
use super::ops;
use super::ranges::{BufferRange, check_disjoint, check_range, checked_count};
use super::recorder::Ticket;
use super::shaders::{KernelId, Op};
use crate::error::{Error, ErrorKind, Result};
use crate::format::{Format, VulkanFamily};
use crate::quant::Rounding;
use ash::vk;

/// What one recorded kernel call does.
#[derive(Debug, Clone, Copy)]
pub struct KernelCall {
    pub op: Op,
    pub format: Format,
    /// Elements (values of the f32 side).
    pub n: u64,
    pub rounding: Rounding,
    /// Index of the first element within the whole tensor (stochastic rounding).
    pub first_index: u64,
}

/// Records `call` reading `src` and writing `dst` into `cmd`, split into
/// dispatches that respect maxStorageBufferRange. Returns the ticket.
///
/// # Safety
/// `cmd` is a primary or secondary command buffer of the engine's device in
/// the recording state, outside a render pass; the buffers are live buffers
/// of that device with STORAGE_BUFFER usage and hold the given ranges.
pub unsafe fn record_kernel(
    engine: &Engine,
    cmd: vk::CommandBuffer,
    call: &KernelCall,
    src: &BufferRange,
    dst: &BufferRange,
) -> Result<Ticket> {
    let n = checked_count(cmd, call.n)?;
    let format = call.format;
    if call.op.family() != VulkanFamily::Conversions {
        return Err(Error::new(
            ErrorKind::Internal,
            format!(
                "{:?} is not a conversion: record it with its own call",
                call.op
            ),
        ));
    }
    format.check_count(n)?;
    if call.op == Op::DequantizeF16 && format == Format::F32 {
        return Err(Error::unsupported(
            "F32 -> F16 is a quantize to F16, not a dequantize",
        ));
    }
    let (in_per, out_per) = ops::sides(call.op, format);
    let in_bytes = ops::bytes_for(in_per, n) as u64;
    let out_bytes = ops::bytes_for(out_per, n) as u64;
    let in_bound = check_range(&engine.device, src, in_bytes, "src")?;
    let out_bound = check_range(&engine.device, dst, out_bytes, "dst")?;
    check_disjoint(src, in_bound, dst, out_bound)?;
    let kernel = engine.kernel(call.op, format)?;
    let chunk = ops::chunk_elements(engine, format);
    let buffers = [src.buffer, dst.buffer];
    let (ticket, sets) = engine.reserve(kernel, &[], n.div_ceil(chunk), &buffers)?;
    let mut done = 0usize;
    for set in sets {
        let k = chunk.min(n - done);
        let in_off = ops::bytes_for(in_per, done) as u64;
        let out_off = ops::bytes_for(out_per, done) as u64;
        let in_len = ops::words(ops::bytes_for(in_per, k));
        let out_len = ops::words(ops::bytes_for(out_per, k));
        let push = ConvertPush::new(k, call.first_index + done as u64, call.rounding)?;
        let dispatch = Dispatch {
            kernel,
            specialization: &[],
            set,
            bindings: &[
                (src.buffer, src.offset + in_off, in_len),
                (dst.buffer, dst.offset + out_off, out_len),
            ],
            push,
            groups: element_groups(kernel, push.n_elements)?,
        };
        // SAFETY: per this function's contract; the ranges were checked to lie
        // inside what the caller declared, and the set is fresh.
        unsafe { engine.record(cmd, &dispatch) }?;
        done += k;
    }
    Ok(ticket)
}

/// Records the loss scaler's unscale-and-check over `n` f32 gradients in
/// `grads` (in place: multiplied by `inverse`) that ORs 1 into the u32 at
/// `found` when a result is NaN or ±Inf. Returns the ticket.
///
/// # Safety
/// As [`record_kernel`].
pub unsafe fn record_unscale(
    engine: &Engine,
    cmd: vk::CommandBuffer,
    grads: &BufferRange,
    n: u64,
    found: &BufferRange,
    inverse: f32,
) -> Result<Ticket> {
    let n = checked_count(cmd, n)?;
    let bytes = (n as u64)
        .checked_mul(4)
        .ok_or_else(|| Error::overflow("n * 4"))?;
    let grad_bound = check_range(&engine.device, grads, bytes, "grads")?;
    let found_bound = check_range(&engine.device, found, 4, "found")?;
    check_disjoint(grads, grad_bound, found, found_bound)?;
    let kernel = KernelId::UNSCALE_F32;
    let chunk = ops::chunk_elements(engine, Format::F32);
    let buffers = [grads.buffer, found.buffer];
    let (ticket, sets) = engine.reserve(kernel, &[], n.div_ceil(chunk), &buffers)?;
    let mut done = 0usize;
    for set in sets {
        let k = chunk.min(n - done);
        let push = UnscalePush::new(k as u32, inverse);
        let dispatch = Dispatch {
            kernel,
            specialization: &[],
            set,
            bindings: &[
                (grads.buffer, grads.offset + 4 * done as u64, 4 * k as u64),
                (found.buffer, found.offset, 4),
            ],
            push,
            groups: element_groups(kernel, push.n_elements)?,
        };
        // SAFETY: per this function's contract; ranges checked above.
        unsafe { engine.record(cmd, &dispatch) }?;
        done += k;
    }
    Ok(ticket)
}
