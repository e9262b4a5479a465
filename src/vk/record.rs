//! Dispatches recorded into the caller's command buffer (DESIGN.md, "Vulkan
//! handoff", way 1): nyxq binds its pipeline, a descriptor set and push
//! constants and records `vkCmdDispatch`; it never submits and never waits.
//!
//! Each recorded call gets a ticket. The descriptor sets it used stay allocated
//! until the caller says that the work of that ticket (and of every earlier
//! one) has completed ([`Recorder::release`]); then they go back to their pool.
//! Pools are only created while unreleased sets fill the existing ones, so a
//! caller that releases as it goes never grows nyxq's memory, however many
//! dispatches it records.

use super::exec::{Engine, vk_err};
use super::ops::{self, Op};
use crate::error::{Error, ErrorKind, Result};
use crate::format::Format;
use crate::quant::Rounding;
use ash::vk;
use parking_lot::Mutex;
use std::collections::VecDeque;

/// Names the dispatches of one recording call, for [`Recorder::release`].
pub type Ticket = u64;

/// A range of a caller's buffer that a dispatch binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferRange {
    pub buffer: vk::Buffer,
    pub offset: u64,
    pub size: u64,
}

/// Descriptor sets per pool; every set has at most [`BINDINGS_PER_SET`] storage buffers.
const SETS_PER_POOL: u32 = 256;
/// Storage-buffer bindings of the largest set layout nyxq records with.
pub const BINDINGS_PER_SET: u32 = 4;
/// Unreleased sets beyond this are refused: the caller forgot to release.
pub const MAX_UNRELEASED: usize = 1 << 16;

/// The descriptor pools of recorded dispatches and the sets still in use.
pub struct Recorder {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    pools: Vec<Pool>,
    /// (ticket, pool index, set) in allocation order. Tickets of concurrent
    /// recordings may interleave; release stops at the first newer ticket,
    /// so such sets are freed by a later release, never too early.
    in_use: VecDeque<(Ticket, usize, vk::DescriptorSet)>,
    /// The buffers each unreleased ticket binds (a buffer once per ticket),
    /// so destroying a buffer that pending work may use can be refused.
    bound: Vec<(Ticket, vk::Buffer)>,
    last_ticket: Ticket,
}

struct Pool {
    pool: vk::DescriptorPool,
    used: u32,
}

/// How many pools and unreleased sets a recorder holds (for tests and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecorderUsage {
    pub pools: usize,
    pub unreleased_sets: usize,
    pub last_ticket: Ticket,
}

impl Recorder {
    /// A recorder with no pools yet.
    pub fn new() -> Recorder {
        Recorder {
            state: Mutex::new(State::default()),
        }
    }

    /// A new ticket for one recording call.
    pub fn next_ticket(&self) -> Ticket {
        let mut state = self.state.lock();
        state.last_ticket += 1;
        state.last_ticket
    }

    /// `count` descriptor sets of `layout` that stay allocated until `ticket`
    /// is released: all of them, or none (on failure the ones made are freed),
    /// so a recording call can fail before it records anything.
    pub fn allocate(
        &self,
        device: &ash::Device,
        layout: vk::DescriptorSetLayout,
        ticket: Ticket,
        count: usize,
    ) -> Result<Vec<vk::DescriptorSet>> {
        let mut state = self.state.lock();
        let mut sets = Vec::with_capacity(count);
        for _ in 0..count {
            match allocate_one(&mut state, device, layout, ticket) {
                Ok(set) => sets.push(set),
                Err(e) => {
                    free_newest(&mut state, device, sets.len());
                    return Err(e);
                }
            }
        }
        Ok(sets)
    }

    /// Frees the sets of `ticket` and of every earlier ticket. The caller
    /// promises that no pending command buffer uses them.
    pub fn release(&self, device: &ash::Device, ticket: Ticket) -> Result<()> {
        let mut state = self.state.lock();
        if ticket > state.last_ticket {
            return Err(Error::invalid(format!(
                "ticket {ticket} was never issued (the last one is {})",
                state.last_ticket
            )));
        }
        while state.in_use.front().is_some_and(|(t, _, _)| *t <= ticket) {
            let (_, index, set) = state.in_use.pop_front().expect("front exists");
            let pool = &mut state.pools[index];
            // SAFETY: the set came from this pool (created with FREE_DESCRIPTOR_SET)
            // and, per the caller's promise, no pending work uses it.
            unsafe { device.free_descriptor_sets(pool.pool, &[set]) }
                .map_err(|e| vk_err("vkFreeDescriptorSets", e))?;
            pool.used -= 1;
        }
        state.bound.retain(|(t, _)| *t > ticket);
        Ok(())
    }

    /// Notes that the dispatches of `ticket` bind `buffers`, until it is released.
    pub fn note_buffers(&self, ticket: Ticket, buffers: &[vk::Buffer]) {
        let mut state = self.state.lock();
        for &buffer in buffers {
            if !state.bound.contains(&(ticket, buffer)) {
                state.bound.push((ticket, buffer));
            }
        }
    }

    /// How many unreleased tickets hold descriptor sets: recorded work the
    /// caller has not released, which may still be pending on the device.
    pub fn unreleased_tickets(&self) -> usize {
        let state = self.state.lock();
        let mut tickets: Vec<Ticket> = state.in_use.iter().map(|(t, _, _)| *t).collect();
        tickets.sort_unstable();
        tickets.dedup();
        tickets.len()
    }

    /// How many unreleased tickets bind one of `buffers`.
    pub fn unreleased_tickets_binding(&self, buffers: &[vk::Buffer]) -> usize {
        let state = self.state.lock();
        let mut tickets: Vec<Ticket> = state
            .bound
            .iter()
            .filter(|(_, b)| buffers.contains(b))
            .map(|(t, _)| *t)
            .collect();
        tickets.sort_unstable();
        tickets.dedup();
        tickets.len()
    }

    /// Pools, unreleased sets and the last ticket, for tests and leak checks.
    pub fn usage(&self) -> RecorderUsage {
        let state = self.state.lock();
        RecorderUsage {
            pools: state.pools.len(),
            unreleased_sets: state.in_use.len(),
            last_ticket: state.last_ticket,
        }
    }

    /// Destroys every pool (and so every set).
    ///
    /// # Safety
    /// No pending work uses a set of this recorder.
    pub unsafe fn destroy(&mut self, device: &ash::Device) {
        let state = self.state.get_mut();
        for pool in state.pools.drain(..) {
            // SAFETY: per this function's contract; each pool is destroyed once.
            unsafe { device.destroy_descriptor_pool(pool.pool, None) };
        }
        state.in_use.clear();
        state.bound.clear();
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

/// One set for `ticket`, from a pool with room (a new pool when none has).
fn allocate_one(
    state: &mut State,
    device: &ash::Device,
    layout: vk::DescriptorSetLayout,
    ticket: Ticket,
) -> Result<vk::DescriptorSet> {
    if state.in_use.len() >= MAX_UNRELEASED {
        return Err(Error::new(
            ErrorKind::OutOfMemory,
            format!(
                "{MAX_UNRELEASED} recorded dispatches are unreleased: call nyxq_vk_release \
                 once the command buffers that hold them have completed"
            ),
        ));
    }
    let index = match state.pools.iter().position(|p| p.used < SETS_PER_POOL) {
        Some(i) => i,
        None => {
            state.pools.push(Pool {
                pool: new_pool(device)?,
                used: 0,
            });
            state.pools.len() - 1
        }
    };
    let layouts = [layout];
    // SAFETY: the pool and layout are live; the pool has room (used < SETS_PER_POOL
    // and every layout needs at most BINDINGS_PER_SET descriptors).
    let set = unsafe {
        device.allocate_descriptor_sets(
            &vk::DescriptorSetAllocateInfo::default()
                .descriptor_pool(state.pools[index].pool)
                .set_layouts(&layouts),
        )
    }
    .map_err(|e| vk_err("vkAllocateDescriptorSets", e))?[0];
    state.pools[index].used += 1;
    state.in_use.push_back((ticket, index, set));
    Ok(set)
}

/// Frees the `count` newest sets (never used by any command buffer).
fn free_newest(state: &mut State, device: &ash::Device, count: usize) {
    for _ in 0..count {
        let Some((_, index, set)) = state.in_use.pop_back() else {
            return;
        };
        let pool = &mut state.pools[index];
        // SAFETY: the set came from this pool and was never recorded.
        let _ = unsafe { device.free_descriptor_sets(pool.pool, &[set]) };
        pool.used -= 1;
    }
}

fn new_pool(device: &ash::Device) -> Result<vk::DescriptorPool> {
    let sizes = [vk::DescriptorPoolSize::default()
        .ty(vk::DescriptorType::STORAGE_BUFFER)
        .descriptor_count(BINDINGS_PER_SET * SETS_PER_POOL)];
    // SAFETY: a live device; the info lives across the call.
    unsafe {
        device.create_descriptor_pool(
            &vk::DescriptorPoolCreateInfo::default()
                .flags(vk::DescriptorPoolCreateFlags::FREE_DESCRIPTOR_SET)
                .max_sets(SETS_PER_POOL)
                .pool_sizes(&sizes),
            None,
        )
    }
    .map_err(|e| vk_err("vkCreateDescriptorPool", e))
}

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

/// Checks a range: aligned offset, no overflow, at least `needed` bytes,
/// inside the buffer's memory requirement, and returns `needed` rounded up to
/// whole 32-bit words (what the kernel binds).
///
/// The memory requirement's size is the tightest bound nyxq can read for a
/// buffer it did not create (the creation size is not queryable); it is at
/// least the creation size and may exceed it by alignment, so a range past
/// it is out of bounds for certain, and one inside it may still run past the
/// creation size (the validation layer reports that).
/// Nothing is recorded for a lost device: every recording call checks its
/// ranges first, so each refuses with the first loss's reason.
pub fn check_range(engine: &Engine, range: &BufferRange, needed: u64, what: &str) -> Result<u64> {
    engine.device.check_lost()?;
    if range.buffer == vk::Buffer::null() {
        return Err(Error::new(
            ErrorKind::NullPointer,
            format!("{what}.buffer is VK_NULL_HANDLE"),
        ));
    }
    let align = engine.device.info.min_storage_offset_alignment.max(4);
    if range.offset % align != 0 {
        return Err(Error::invalid(format!(
            "{what}.offset {} is not a multiple of the device's storage-buffer offset alignment {align}",
            range.offset
        )));
    }
    if range.offset.checked_add(range.size).is_none() {
        return Err(Error::overflow(&format!("{what}.offset + {what}.size")));
    }
    let bound = needed.div_ceil(4) * 4;
    Error::ensure_room(
        &format!("{what}.size (whole 32-bit words)"),
        "bytes",
        bound as usize,
        usize::try_from(range.size).unwrap_or(usize::MAX),
    )?;
    // SAFETY: the caller promises a live buffer of the engine's device
    // (record_kernel's contract); the query reads nothing else.
    let memory = unsafe {
        engine
            .device
            .device
            .get_buffer_memory_requirements(range.buffer)
    };
    if range.offset + range.size > memory.size {
        return Err(Error::invalid(format!(
            "{what} (VkBuffer {:#x}, offset {} + size {} = {} bytes) runs past the end of the \
             buffer, whose memory requirement is {} bytes",
            vk::Handle::as_raw(range.buffer),
            range.offset,
            range.size,
            range.offset + range.size,
            memory.size
        )));
    }
    Ok(bound)
}

/// Rejects two ranges of one buffer that overlap (the kernels read one and
/// write the other in parallel).
pub fn check_disjoint(a: &BufferRange, a_len: u64, b: &BufferRange, b_len: u64) -> Result<()> {
    let overlap =
        a.buffer == b.buffer && a.offset < b.offset + b_len && b.offset < a.offset + a_len;
    if overlap {
        return Err(Error::invalid(
            "src and dst overlap in the same buffer; use separate ranges",
        ));
    }
    Ok(())
}

/// The command buffer is a handle and `n` a positive count that fits usize.
fn checked_count(cmd: vk::CommandBuffer, n: u64) -> Result<usize> {
    if cmd == vk::CommandBuffer::null() {
        return Err(Error::new(
            ErrorKind::NullPointer,
            "command_buffer is VK_NULL_HANDLE",
        ));
    }
    if n == 0 {
        return Err(Error::invalid("n is 0: nothing to record"));
    }
    usize::try_from(n).map_err(|_| Error::overflow("n"))
}

/// The pipeline of `kernel`, a ticket and `dispatches` descriptor sets:
/// everything that can fail, before the first command is recorded. The
/// ticket is noted as binding `buffers`.
fn reserve(
    engine: &Engine,
    kernel: &str,
    dispatches: usize,
    buffers: &[vk::Buffer],
) -> Result<(Ticket, Vec<vk::DescriptorSet>)> {
    engine.pipeline(kernel)?;
    let recorder = engine.recorder();
    let ticket = recorder.next_ticket();
    let sets = recorder.allocate(
        &engine.device.device,
        engine.set_layout(),
        ticket,
        dispatches,
    )?;
    recorder.note_buffers(ticket, buffers);
    Ok((ticket, sets))
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
    format.check_count(n)?;
    if call.op == Op::DequantizeF16 && format == Format::F32 {
        return Err(Error::unsupported(
            "F32 -> F16 is a quantize to F16, not a dequantize",
        ));
    }
    let (in_per, out_per) = ops::sides(call.op, format);
    let in_bytes = ops::bytes_for(in_per, n) as u64;
    let out_bytes = ops::bytes_for(out_per, n) as u64;
    let in_bound = check_range(engine, src, in_bytes, "src")?;
    let out_bound = check_range(engine, dst, out_bytes, "dst")?;
    check_disjoint(src, in_bound, dst, out_bound)?;
    let kernel = engine.kernel(call.op, format);
    let chunk = ops::chunk_elements(engine, format);
    let (ticket, sets) = reserve(engine, kernel, n.div_ceil(chunk), &[src.buffer, dst.buffer])?;
    let mut done = 0usize;
    for set in sets {
        let k = chunk.min(n - done);
        let in_off = ops::bytes_for(in_per, done) as u64;
        let out_off = ops::bytes_for(out_per, done) as u64;
        let push = ops::push_for(k, call.first_index + done as u64, call.rounding)?;
        // SAFETY: per this function's contract; the ranges were checked to lie
        // inside what the caller declared, and the set is fresh.
        unsafe {
            engine.record(
                cmd,
                set,
                kernel,
                (
                    src.buffer,
                    src.offset + in_off,
                    ops::words(ops::bytes_for(in_per, k)),
                ),
                (
                    dst.buffer,
                    dst.offset + out_off,
                    ops::words(ops::bytes_for(out_per, k)),
                ),
                &push,
            )
        }?;
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
    let grad_bound = check_range(engine, grads, bytes, "grads")?;
    let found_bound = check_range(engine, found, 4, "found")?;
    check_disjoint(grads, grad_bound, found, found_bound)?;
    let chunk = ops::chunk_elements(engine, Format::F32);
    let (ticket, sets) = reserve(
        engine,
        "unscale_f32",
        n.div_ceil(chunk),
        &[grads.buffer, found.buffer],
    )?;
    let mut done = 0usize;
    for set in sets {
        let k = chunk.min(n - done);
        let push = super::shaders::Push::unscale(k as u32, inverse);
        // SAFETY: per this function's contract; ranges checked above.
        unsafe {
            engine.record(
                cmd,
                set,
                "unscale_f32",
                (grads.buffer, grads.offset + 4 * done as u64, 4 * k as u64),
                (found.buffer, found.offset, 4),
                &push,
            )
        }?;
        done += k;
    }
    Ok(ticket)
}
