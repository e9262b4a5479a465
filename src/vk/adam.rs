//! Adam(W) with its state on the device: nyxq's buffers hold the moments
//! (FP32 or 8-bit blocks, the bytes of the host's [`crate::train::adam`])
//! and a small control buffer (the step count, the bias corrections of the
//! current step, whether it applies, the 8-bit decode tables); a step is
//! recorded into the caller's command buffer over the caller's f32 weights
//! and gradients.
//!
//! A recorded step is a one-invocation dispatch that reads the found flag of
//! the unscale-and-check and, unless it is set, counts the step and writes
//! its bias corrections (shaders/adam_count.comp); a barrier; then one
//! dispatch per chunk of the state (shaders/adam.comp, adam_q8.comp), which
//! return at once on a skipped step. So a skipped step changes nothing and
//! costs the host nothing.

use super::dispatch::{Dispatch, compute_barrier, element_groups};
use super::engine::Engine;
use super::family::AdamPush;
use super::memory::{Buffer, MAX_ALLOCATION};
use super::ranges::{BufferRange, check_range, checked_count};
use super::recorder::Ticket;
use super::shaders::KernelId;
use crate::error::{Error, Result};
use crate::train::adam::{AdamSettings, STATE_BLOCK, StateLayout, check_learning_rate};
use crate::train::adam_math::{
    SIGNED_BOUNDS, SIGNED_DECODE, UNSIGNED_BOUNDS, UNSIGNED_DECODE, code_bounds,
};
use crate::train::checkpoint::{self, AdamImage, Section};
use ash::vk;
use std::sync::Arc;

/// The control words (shaders/adam_common.glsl names them alike).
const CONTROL_STEPS: usize = 0;
/// Two f32 whose fma shows whether the device's fma rounds once: x = 1 +
/// 2^-12, z = -(1 + 2^-11); fma(x, x, z) is 2^-24, and 0 rounded twice.
const FMA_PROBE: usize = 4;
const FMA_PROBE_WORDS: [u32; 2] = [0x3f80_0800, 0xbf80_1000];
const SIGNED_TABLE: usize = 64;
const UNSIGNED_TABLE: usize = 320;
/// The codes' rounding boundaries (crate::train::adam_math::code_bounds).
const SIGNED_BOUNDS_AT: usize = 576;
const UNSIGNED_BOUNDS_AT: usize = SIGNED_BOUNDS_AT + SIGNED_BOUNDS;
const CONTROL_WORDS: usize = 1024;
const _: () = assert!(UNSIGNED_BOUNDS_AT + UNSIGNED_BOUNDS <= CONTROL_WORDS);
const CONTROL_BYTES: u64 = 4 * CONTROL_WORDS as u64;
/// Most elements per dispatch (64 MiB of f32 weights).
const MAX_CHUNK: usize = 1 << 24;
/// Most bytes of one staging buffer.
const STAGING_BYTES: usize = 64 << 20;

/// The state of the elements one dispatch updates, in its own buffer.
struct StateChunk {
    buffer: Buffer,
    /// Index of its first element in the tensor (a multiple of 256).
    first: usize,
    len: usize,
    /// Words of the buffer where m, v, the m scales and the v scales start.
    at: [u32; 4],
}

/// Where each part of `len` elements' state starts, in words, and the
/// words in all.
fn state_words(layout: StateLayout, len: usize) -> ([u32; 4], usize) {
    match layout {
        StateLayout::Fp32 => ([0, len as u32, 0, 0], 2 * len),
        StateLayout::Int8Blocks => {
            let codes = len.div_ceil(4);
            let blocks = len.div_ceil(STATE_BLOCK);
            let at = [0, codes, 2 * codes, 2 * codes + blocks].map(|w| w as u32);
            (at, 2 * codes + 2 * blocks)
        }
    }
}

/// Elements per dispatch on `engine`'s device: whole blocks, and no binding
/// (the weights at 4 bytes, FP32 state at 8) beyond maxStorageBufferRange
/// or the allocation limit.
pub fn chunk_elements(engine: &Engine, layout: StateLayout) -> usize {
    let range = u64::from(engine.device.info.max_storage_buffer_range).min(MAX_ALLOCATION);
    let widest = match layout {
        StateLayout::Fp32 => 8,
        StateLayout::Int8Blocks => 4,
    };
    let n = ((range / widest) as usize).min(MAX_CHUNK);
    (n / STATE_BLOCK * STATE_BLOCK).max(STATE_BLOCK)
}

/// Refuses two ranges of one buffer that overlap, naming both.
fn check_apart(a: (&BufferRange, u64, &str), b: (&BufferRange, u64, &str)) -> Result<()> {
    let ((ra, la, na), (rb, lb, nb)) = (a, b);
    if ra.buffer == rb.buffer && ra.offset < rb.offset + lb && rb.offset < ra.offset + la {
        return Err(Error::invalid(format!(
            "{na} and {nb} overlap in the same buffer; use separate ranges"
        )));
    }
    Ok(())
}

/// The optimizer state of one parameter tensor on the device.
pub struct DeviceAdam {
    engine: Arc<Engine>,
    settings: AdamSettings,
    len: usize,
    layout: StateLayout,
    kernel: KernelId,
    control: Buffer,
    chunks: Vec<StateChunk>,
}

impl std::fmt::Debug for DeviceAdam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAdam")
            .field("len", &self.len)
            .field("layout", &self.layout)
            .field("kernel", &self.kernel)
            .finish_non_exhaustive()
    }
}

impl DeviceAdam {
    /// Zeroed state for `len` (>= 1) parameters in device-local memory
    /// (admitted against the budget and counted in the memory status),
    /// stepped by `kernel` (`adam_choice` picks it). Every buffer or none.
    pub fn new(
        engine: &Arc<Engine>,
        settings: AdamSettings,
        len: usize,
        kernel: KernelId,
    ) -> Result<DeviceAdam> {
        settings.check()?;
        if len == 0 {
            return Err(Error::invalid(
                "adam: a device optimizer needs at least one parameter",
            ));
        }
        let layout = StateLayout::of(settings.state, len);
        let chunk = chunk_elements(engine, layout);
        let mut chunks = Vec::with_capacity(len.div_ceil(chunk));
        let mut first = 0;
        while first < len {
            let k = chunk.min(len - first);
            let (at, words) = state_words(layout, k);
            chunks.push(StateChunk {
                buffer: Buffer::new(&engine.device, 4 * words as u64, false)?,
                first,
                len: k,
                at,
            });
            first += k;
        }
        let adam = DeviceAdam {
            engine: engine.clone(),
            settings,
            len,
            layout,
            kernel,
            control: Buffer::new(&engine.device, CONTROL_BYTES, false)?,
            chunks,
        };
        adam.zero_state()?;
        let mut control = vec![0u8; CONTROL_BYTES as usize];
        for (at, table) in [
            (SIGNED_TABLE, &SIGNED_DECODE),
            (UNSIGNED_TABLE, &UNSIGNED_DECODE),
        ] {
            for (word, value) in control[4 * at..].chunks_exact_mut(4).zip(table) {
                word.copy_from_slice(&value.to_le_bytes());
            }
        }
        let (signed_bounds, unsigned_bounds) = code_bounds();
        for (at, bounds) in [
            (SIGNED_BOUNDS_AT, &signed_bounds[..]),
            (UNSIGNED_BOUNDS_AT, &unsigned_bounds[..]),
        ] {
            for (word, value) in control[4 * at..].chunks_exact_mut(4).zip(bounds) {
                word.copy_from_slice(&value.to_le_bytes());
            }
        }
        for (word, value) in control[4 * FMA_PROBE..]
            .chunks_exact_mut(4)
            .zip(FMA_PROBE_WORDS)
        {
            word.copy_from_slice(&value.to_le_bytes());
        }
        adam.write(adam.control.buffer, 0, &control)?;
        Ok(adam)
    }

    /// Parameters this state is for.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a device optimizer has at least one parameter.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The settings it was made with.
    pub fn settings(&self) -> &AdamSettings {
        &self.settings
    }

    /// How its moments are stored.
    pub fn layout(&self) -> StateLayout {
        self.layout
    }

    /// The step kernel it records.
    pub fn kernel(&self) -> KernelId {
        self.kernel
    }

    /// The engine whose device holds it.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Dispatches one recorded step makes: the count and one per chunk.
    pub fn dispatches(&self) -> usize {
        1 + self.chunks.len()
    }

    /// Bytes of optimizer state (the host's count for the same tensor) and
    /// what FP32 Adam would hold (8 per parameter).
    pub fn state_bytes(&self) -> (usize, usize) {
        let held = self.layout.bytes(self.len).unwrap_or(usize::MAX);
        (held, 8 * self.len)
    }

    fn buffers(&self) -> Vec<vk::Buffer> {
        std::iter::once(self.control.buffer)
            .chain(self.chunks.iter().map(|c| c.buffer.buffer))
            .collect()
    }

    /// Refuses (InvalidArgument) while unreleased recordings bind its
    /// buffers: `action` would change or free state that pending work uses.
    pub fn check_not_bound_by_recordings(&self, action: &str) -> Result<()> {
        self.engine.poll_releases_before_a_check();
        let recorder = self.engine.recorder();
        let tickets = recorder.unreleased_tickets_binding(&self.buffers());
        if tickets == 0 {
            return Ok(());
        }
        let last = recorder.usage().last_ticket;
        Err(Error::invalid(format!(
            "adam: {tickets} recorded ticket(s) not released bind its state, which command \
             buffers may still use: wait for the submissions that hold them, then call \
             nyxq_vk_release(ctx, {last}) before you {action}; nothing was changed"
        )))
    }

    /// The push constants of a dispatch over `n` elements whose state
    /// starts at the words `at`.
    fn push(&self, lr: f32, n: usize, use_found: bool, at: [u32; 4]) -> AdamPush {
        let s = &self.settings;
        AdamPush {
            n_elements: n as u32,
            lr: lr.to_bits(),
            beta1: s.beta1.to_bits(),
            one_minus_beta1: (1.0 - s.beta1).to_bits(),
            beta2: s.beta2.to_bits(),
            one_minus_beta2: (1.0 - s.beta2).to_bits(),
            eps: s.eps.to_bits(),
            weight_decay: s.weight_decay.to_bits(),
            use_found: u32::from(use_found),
            m_at: at[0],
            v_at: at[1],
            m_scale_at: at[2],
            v_scale_at: at[3],
        }
    }

    /// Records one step at learning rate `lr` over the `n` f32 weights in
    /// `params` (updated in place) and gradients in `grads`; skipped on the
    /// device when the u32 at `found` is nonzero. Returns the ticket.
    ///
    /// # Safety
    /// `cmd` is a command buffer of the engine's device in the recording
    /// state, outside a render pass; the buffers are live storage buffers of
    /// that device holding the given ranges.
    pub unsafe fn record_step(
        &self,
        cmd: vk::CommandBuffer,
        lr: f32,
        (params, grads): (&BufferRange, &BufferRange),
        n: u64,
        found: Option<&BufferRange>,
    ) -> Result<Ticket> {
        let n = checked_count(cmd, n)?;
        if n != self.len {
            return Err(Error::invalid(format!(
                "adam: the optimizer is for {} parameters, not {n}",
                self.len
            )));
        }
        check_learning_rate(lr)?;
        let device = &self.engine.device;
        let bytes = (n as u64)
            .checked_mul(4)
            .ok_or_else(|| Error::overflow("n * 4"))?;
        let params_len = check_range(device, params, bytes, "params")?;
        let grads_len = check_range(device, grads, bytes, "grads")?;
        check_apart((params, params_len, "params"), (grads, grads_len, "grads"))?;
        let mut buffers = vec![params.buffer, grads.buffer];
        if let Some(f) = found {
            check_range(device, f, 4, "found")?;
            check_apart((f, 4, "found"), (params, params_len, "params"))?;
            check_apart((f, 4, "found"), (grads, grads_len, "grads"))?;
            buffers.push(f.buffer);
        }
        buffers.extend(self.buffers());
        let (ticket, sets) = self
            .engine
            .reserve(self.kernel, &[], self.dispatches(), &buffers)?;
        let control = (self.control.buffer, 0, CONTROL_BYTES);
        let flag = found.map_or(control, |f| (f.buffer, f.offset, 4));
        let count = Dispatch {
            kernel: KernelId::ADAM_COUNT,
            specialization: &[],
            set: sets[0],
            bindings: &[flag, control, control, control],
            push: self.push(lr, 1, found.is_some(), [0; 4]),
            groups: 1,
        };
        // SAFETY: per this function's contract; the ranges were checked
        // above and the set is fresh.
        unsafe { self.engine.record(cmd, &count) }?;
        // SAFETY: `cmd` is recording (the contract).
        unsafe { compute_barrier(&device.device, cmd) };
        for (chunk, &set) in self.chunks.iter().zip(&sets[1..]) {
            let first = 4 * chunk.first as u64;
            let len = 4 * chunk.len as u64;
            let push = self.push(lr, chunk.len, false, chunk.at);
            let dispatch = Dispatch {
                kernel: self.kernel,
                specialization: &[],
                set,
                bindings: &[
                    (params.buffer, params.offset + first, len),
                    (grads.buffer, grads.offset + first, len),
                    control,
                    (chunk.buffer.buffer, 0, chunk.buffer.size),
                ],
                push,
                groups: element_groups(self.kernel, push.n_elements)?,
            };
            // SAFETY: as above.
            unsafe { self.engine.record(cmd, &dispatch) }?;
        }
        Ok(ticket)
    }

    /// Zeroes the moments and the control words (every submission waited).
    fn zero_state(&self) -> Result<()> {
        let d = &self.engine.device.device;
        let targets: Vec<vk::Buffer> = self.buffers();
        self.engine
            .queue()
            .submit(false, |cmd| {
                for &buffer in &targets {
                    // SAFETY: recording; nyxq's own live buffers, used by no
                    // other work (they were just made).
                    unsafe { d.cmd_fill_buffer(cmd, buffer, 0, vk::WHOLE_SIZE, 0) };
                }
                let barrier = vk::MemoryBarrier::default()
                    .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
                    .dst_access_mask(
                        vk::AccessFlags::TRANSFER_WRITE
                            | vk::AccessFlags::SHADER_READ
                            | vk::AccessFlags::SHADER_WRITE,
                    );
                // SAFETY: recording.
                unsafe {
                    d.cmd_pipeline_barrier(
                        cmd,
                        vk::PipelineStageFlags::TRANSFER,
                        vk::PipelineStageFlags::TRANSFER | vk::PipelineStageFlags::COMPUTE_SHADER,
                        vk::DependencyFlags::empty(),
                        &[barrier],
                        &[],
                        &[],
                    )
                };
                Ok(())
            })
            .map(|_| ())
    }

    fn staging(&self, bytes: usize) -> Result<Buffer> {
        let size = bytes.clamp(4, STAGING_BYTES).div_ceil(4) * 4;
        Buffer::new(&self.engine.device, size as u64, true)
    }

    /// Copies `data` to `buffer` at byte `offset` through staging memory.
    fn write(&self, buffer: vk::Buffer, offset: u64, data: &[u8]) -> Result<()> {
        let mut staging = self.staging(data.len())?;
        let piece = staging.size as usize;
        for (i, part) in data.chunks(piece).enumerate() {
            staging.write(part);
            let at = offset + (i * piece) as u64;
            self.engine.queue().copy_region(
                (staging.buffer, 0),
                (buffer, at),
                part.len() as u64,
            )?;
        }
        Ok(())
    }

    /// Copies `out.len()` bytes of `buffer` from byte `offset` into `out`.
    fn read(&self, buffer: vk::Buffer, offset: u64, out: &mut [u8]) -> Result<()> {
        let staging = self.staging(out.len())?;
        let piece = staging.size as usize;
        for (i, part) in out.chunks_mut(piece).enumerate() {
            let at = offset + (i * piece) as u64;
            self.engine.queue().copy_region(
                (buffer, at),
                (staging.buffer, 0),
                part.len() as u64,
            )?;
            staging.read(part);
        }
        Ok(())
    }

    /// Steps applied so far, read from the device.
    pub fn steps(&self) -> Result<u32> {
        let mut word = [0u8; 4];
        self.read(self.control.buffer, 4 * CONTROL_STEPS as u64, &mut word)?;
        Ok(u32::from_le_bytes(word))
    }

    /// Where `section` of `chunk` lies: (byte in the chunk's buffer, byte
    /// in the checkpoint's section, bytes).
    fn region(&self, chunk: &StateChunk, section: Section) -> (u64, usize, usize) {
        let word = |i: usize| 4 * u64::from(chunk.at[i]);
        let blocks = chunk.len.div_ceil(STATE_BLOCK);
        let first_block = chunk.first / STATE_BLOCK;
        match (self.layout, section) {
            (StateLayout::Fp32, Section::M) => (word(0), 4 * chunk.first, 4 * chunk.len),
            (StateLayout::Fp32, Section::V) => (word(1), 4 * chunk.first, 4 * chunk.len),
            (StateLayout::Int8Blocks, Section::M) => (word(0), chunk.first, chunk.len),
            (StateLayout::Int8Blocks, Section::V) => (word(1), chunk.first, chunk.len),
            (StateLayout::Int8Blocks, Section::MScale) => (word(2), 4 * first_block, 4 * blocks),
            (StateLayout::Int8Blocks, Section::VScale) => (word(3), 4 * first_block, 4 * blocks),
            (StateLayout::Fp32, Section::MScale | Section::VScale) => (0, 0, 0),
        }
    }

    /// What a checkpoint of it describes besides the moments.
    fn image(&self, steps: u32) -> AdamImage {
        AdamImage {
            settings: self.settings,
            len: self.len,
            steps,
            layout: self.layout,
        }
    }

    /// Bytes of its checkpoint (the host Adam's for the same tensor).
    pub fn checkpoint_len(&self) -> Result<usize> {
        checkpoint::adam_len(&self.image(0))
    }

    /// Writes its checkpoint (crate::train::checkpoint, the bytes a host Adam
    /// with this state would write) to the start of `out`; returns its
    /// length. Refused while unreleased recordings bind its state.
    pub fn save(&self, out: &mut [u8]) -> Result<usize> {
        self.check_not_bound_by_recordings("save it")?;
        let image = self.image(self.steps()?);
        checkpoint::save_adam(&image, out, |section, bytes| {
            for chunk in &self.chunks {
                let (at, into, len) = self.region(chunk, section);
                self.read(chunk.buffer.buffer, at, &mut bytes[into..into + len])?;
            }
            Ok(())
        })
    }

    /// Loads a checkpoint made with the same settings and parameter count
    /// (by a host or a device Adam). Refused while unreleased recordings
    /// bind its state; the checkpoint is checked whole before anything is
    /// written, but a Vulkan failure while writing leaves the state partly
    /// loaded (the error says so).
    pub fn load(&self, bytes: &[u8]) -> Result<()> {
        self.check_not_bound_by_recordings("load into it")?;
        let (steps, sections) = checkpoint::read_adam(&self.image(0), bytes)?;
        let written = (|| {
            for (section, part) in sections {
                for chunk in &self.chunks {
                    let (at, from, len) = self.region(chunk, section);
                    self.write(chunk.buffer.buffer, at, &part[from..from + len])?;
                }
            }
            self.write(
                self.control.buffer,
                4 * CONTROL_STEPS as u64,
                &steps.to_le_bytes(),
            )
        })();
        written.map_err(|e| {
            Error::new(
                e.kind(),
                format!(
                    "{} (the optimizer's state is partly loaded: load again)",
                    e.message()
                ),
            )
        })
    }
}
