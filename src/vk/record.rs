//! Dispatches recorded into the caller's command buffer (DESIGN.md, "Vulkan
//! handoff", way 1): the quantize family, the loss scaler's unscale and the
//! importance sums of activations. nyxq
//! binds its pipeline, a descriptor set and push constants and records
//! `vkCmdDispatch`, split where a range exceeds maxStorageBufferRange; it
//! never submits and never waits. Each call returns the ticket whose release
//! frees its descriptor sets ([`super::recorder::Recorder::release`]).

use super::dispatch::{Dispatch, compute_barrier, element_groups};
use super::engine::Engine;
use super::family::{ConvertPush, ImportancePush, UnscalePush};
use super::ops;
use super::ranges::{
    BufferRange, check_command_buffer, check_disjoint, check_range, checked_count,
};
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

/// Records `sums[c] += Σ_t x[t][c]²` over `tokens` rows of `cols` f32
/// activations in `x` (row-major) into the f32 `sums[0..cols]`, split by
/// tokens where `x` exceeds maxStorageBufferRange (with a barrier between
/// the dispatches, which add to the same sums). Returns the ticket.
///
/// # Safety
/// As [`record_kernel`].
pub unsafe fn record_importance(
    engine: &Engine,
    cmd: vk::CommandBuffer,
    x: &BufferRange,
    tokens: u64,
    cols: u64,
    sums: &BufferRange,
) -> Result<Ticket> {
    check_command_buffer(cmd)?;
    if tokens == 0 {
        return Err(Error::invalid("tokens is 0: nothing to record"));
    }
    let cols32 = u32::try_from(cols)
        .ok()
        .filter(|&c| c > 0)
        .ok_or_else(|| Error::invalid(format!("cols is {cols}: it must be 1 to 2^32 - 1")))?;
    let x_bytes = tokens
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(4))
        .ok_or_else(|| Error::overflow("tokens * cols * 4"))?;
    let sum_bytes = 4 * cols;
    let x_bound = check_range(&engine.device, x, x_bytes, "x")?;
    let sums_bound = check_range(&engine.device, sums, sum_bytes, "sums")?;
    check_disjoint(x, x_bound, sums, sums_bound)?;
    let info = &engine.device.info;
    let max_range = u64::from(info.max_storage_buffer_range);
    if sum_bytes > max_range {
        return Err(Error::unsupported(format!(
            "importance: {cols} sums ({sum_bytes} bytes) exceed the device's \
             maxStorageBufferRange ({max_range} bytes)"
        )));
    }
    let align = info.min_storage_offset_alignment.max(4);
    let plan = super::matmul::token_chunks(tokens, (cols, 0), max_range, align)?;
    let kernel = KernelId::IMPORTANCE_F32;
    let buffers = [x.buffer, sums.buffer];
    let (ticket, sets) = engine.reserve(kernel, &[], plan.len(), &buffers)?;
    for (i, (chunk, set)) in plan.iter().zip(sets).enumerate() {
        if i > 0 {
            // SAFETY: `cmd` is recording (this function's contract).
            unsafe { compute_barrier(&engine.device.device, cmd) };
        }
        let push = ImportancePush {
            cols: cols32,
            tokens: chunk.tokens as u32,
            x_first: chunk.x_first,
        };
        let dispatch = Dispatch {
            kernel,
            specialization: &[],
            set,
            bindings: &[
                (x.buffer, x.offset + chunk.x_bind.0, chunk.x_bind.1),
                (sums.buffer, sums.offset, sum_bytes),
            ],
            push,
            groups: element_groups(kernel, cols32)?,
        };
        // SAFETY: per this function's contract; ranges checked above.
        unsafe { engine.record(cmd, &dispatch) }?;
    }
    Ok(ticket)
}
