//! Matrix-vector products on the device (the Vulkan twin of
//! [`crate::matvec`]): y = W·x (+ bias) and y = xᵀ·W for 1 to 8 vectors, W in
//! any nyxq format, x and y f32.
//!
//! The f32 kernels (shaders/matvec.comp, shaders/matvec_t.comp) read W as
//! 32-bit words and decode f16 with unpackHalf2x16, so they need no optional
//! device feature. The forward product has three variants: `_subgroup`
//! reduces with subgroupAdd (chosen where the device has subgroup arithmetic
//! in compute shaders), the plain one through shared memory (forced by
//! NYXQ_VK_FORCE_COMPAT=1 or the context option). Both dequantize weights
//! exactly and multiply them with x in f32 fused multiply-adds, so the bound
//! of the CPU's f32 path holds: `|y − y_ref| ≤ (n + 3)·2⁻²⁴·Σ|w·x|` against an
//! FP64 product of the dequantized weights, n the length of the sum — as long
//! as no product w·x is subnormal (GPUs flush those to zero: at most 2⁻¹²⁶
//! more per term).
//!
//! The integer-dot variants (shaders/matvec_dot.comp) are for the block
//! formats and are the default for them where the device has subgroup
//! arithmetic (subgroups of 4 to 32) and shaderIntegerDotProduct enabled
//! (nyxq's own device, or a borrowed one that declares it): in `_dot` each
//! workgroup rounds tiles of x to int8 per
//! block of 32 (scale `s = max|x|/127`, as the CPU's integer path) and
//! multiplies the packed 8-bit values with OpSDot, exactly in integers. Its
//! bound is the CPU integer path's: the f32 bound above plus
//! `Σ_blocks (s/2)·Σ|w|` (and blocks of x with max|x| < 2⁻¹¹⁹ count as zero).
//! Blocks of x holding NaN or ±Inf are multiplied in f32, so those propagate
//! as IEEE arithmetic says.
//!
//! The default of the two is `_dot_pre`: a dispatch of `matvec_round_f32_q8`
//! rounds x once per product, with `_dot`'s code, into a scratch buffer (40
//! bytes per block of x, [`rounded_x_bytes`]) that the ticket holds until it
//! is released; after a compute barrier the product reads it, in `_dot`'s
//! workgroup shape and order, so its outputs are `_dot`'s bits.
//! NYXQ_VK_MATVEC_VARIANT=dot runs `_dot` (x rounded in every workgroup),
//! =f32 the f32 `_subgroup` variant (or [`MatvecChoice::set_arithmetic`]),
//! for comparison. [`MatvecChoice`] decides the variant and the workgroup
//! shape.
//!
//! W larger than maxStorageBufferRange is split by rows into several
//! dispatches (the transposed product adds the chunks' sums into y, with a
//! barrier between them); x, bias and y must each fit one binding.

pub use super::matvec_choice::{
    Arithmetic, DOT_MAX_BATCH, MatvecChoice, PRE_ROUNDED_MAX_BATCH, PRE_ROUNDED_MIN_BATCH,
};

use super::dispatch::{Dispatch, compute_barrier};
use super::engine::Engine;
use super::family::MatvecPush;
use super::memory::Buffer;
use super::ranges::{BufferRange, check_command_buffer, check_disjoint, check_range};
use super::recorder::Ticket;
use super::shaders::{KernelId, MatvecVariant, matvec_kernel};
use crate::error::{Error, ErrorKind, Result};
use crate::format::{Format, VulkanFamily};
use ash::vk;

/// Most vectors one product takes (as the CPU kernel).
pub const MAX_BATCH: u32 = crate::matvec::MAX_BATCH as u32;
/// The kernel that rounds x for the `_dot_pre` products.
const ROUND_X: KernelId = KernelId::MATVEC_ROUND_F32_Q8;
/// Invocations per workgroup of [`ROUND_X`] (one block of x each).
const ROUND_X_GROUP: u64 = 128;
/// Bytes of x rounded to int8 per block of 32 values: the 32 values and
/// the (scale, sum) pair, two f32 (shaders/matvec_round.comp).
const ROUNDED_BLOCK_BYTES: u64 = 40;

/// Bytes of the scratch buffer a `_dot_pre` product of `batch` vectors of
/// `cols` values holds until its ticket is released: 40 per block of 32
/// values of x, under a third of x's own bytes.
pub fn rounded_x_bytes(cols: u64, batch: u32) -> u64 {
    u64::from(batch) * (cols / 32) * ROUNDED_BLOCK_BYTES
}
/// Columns per workgroup of the transposed kernel.
const COLUMNS_PER_GROUP: u64 = 32;

/// One matrix-vector product: W is `rows`×`cols` in `format` (row-major,
/// rows of whole blocks), `batch` vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatvecCall {
    pub format: Format,
    pub rows: u64,
    pub cols: u64,
    pub batch: u32,
    /// y = xᵀ·W (the backward pass) instead of y = W·x.
    pub transposed: bool,
    /// Use the shared-memory reduction even where subgroups exist.
    pub compat: bool,
}

/// Byte sizes of a product's operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub row_bytes: u64,
    pub w: u64,
    pub x: u64,
    pub bias: u64,
    pub y: u64,
}

impl MatvecCall {
    /// Checks the shape and returns the operands' sizes in bytes.
    pub fn sizes(&self) -> Result<Sizes> {
        self.format.require_vulkan(VulkanFamily::Matvec)?;
        if self.rows == 0 || self.cols == 0 {
            return Err(Error::invalid(format!(
                "matvec: a {}x{} matrix is empty",
                self.rows, self.cols
            )));
        }
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return Err(Error::invalid(format!(
                "matvec: batch {} is outside 1..={MAX_BATCH}",
                self.batch
            )));
        }
        if self.rows > u64::from(u32::MAX) || self.cols > u64::from(u32::MAX) {
            return Err(Error::invalid(format!(
                "matvec: {}x{} exceeds the kernels' 32-bit row and column indices",
                self.rows, self.cols
            )));
        }
        let cols = usize::try_from(self.cols).map_err(|_| Error::overflow("cols"))?;
        let row_bytes = self
            .format
            .size_of(cols)
            .map_err(|e| Error::invalid(format!("matvec: rows of {cols}: {}", e.message())))?
            as u64;
        let w = row_bytes
            .checked_mul(self.rows)
            .ok_or_else(|| Error::overflow("matvec weights"))?;
        let floats = |n: u64| {
            n.checked_mul(4 * u64::from(self.batch))
                .ok_or_else(|| Error::overflow("matvec vectors"))
        };
        let (x, y) = if self.transposed {
            (floats(self.rows)?, floats(self.cols)?)
        } else {
            (floats(self.cols)?, floats(self.rows)?)
        };
        Ok(Sizes {
            row_bytes,
            w,
            x,
            bias: 4 * self.rows,
            y,
        })
    }
}

/// A run of rows of W that one dispatch binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Chunk {
    pub first_row: u64,
    pub rows: u64,
    /// Offset of the binding within the caller's W range (aligned).
    pub bind_offset: u64,
    pub bind_size: u64,
    /// Halfword within the binding where the first row starts.
    pub w_half: u32,
}

/// Splits W's rows so that no binding exceeds `max_range` bytes and every
/// binding offset is a multiple of `align`.
pub(super) fn chunks(rows: u64, row_bytes: u64, max_range: u64, align: u64) -> Result<Vec<Chunk>> {
    let per = max_range.saturating_sub(align) / row_bytes;
    if per == 0 {
        return Err(Error::unsupported(format!(
            "matvec: one row of W ({row_bytes} bytes) does not fit the device's \
             maxStorageBufferRange ({max_range} bytes)"
        )));
    }
    let mut out = Vec::new();
    let mut first = 0;
    while first < rows {
        let n = per.min(rows - first);
        let start = first * row_bytes;
        let bind_offset = start / align * align;
        let end = ((first + n) * row_bytes).div_ceil(4) * 4;
        out.push(Chunk {
            first_row: first,
            rows: n,
            bind_offset,
            bind_size: end - bind_offset,
            w_half: ((start - bind_offset) / 2) as u32,
        });
        first += n;
    }
    Ok(out)
}

/// A range that must fit one binding.
pub(super) fn check_binding(engine: &Engine, bytes: u64, what: &str) -> Result<()> {
    let max = u64::from(engine.device.info.max_storage_buffer_range);
    if bytes > max {
        return Err(Error::unsupported(format!(
            "{what} ({bytes} bytes) exceeds the device's maxStorageBufferRange ({max} bytes)"
        )));
    }
    Ok(())
}

/// The operands of a product in the caller's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operands {
    pub w: BufferRange,
    pub x: BufferRange,
    pub bias: Option<BufferRange>,
    pub y: BufferRange,
}

/// Checks every range of `ops` against `call`'s sizes and the device's
/// limits; returns the bound (whole-word) sizes of x, bias and y.
fn check_operands(engine: &Engine, call: &MatvecCall, ops: &Operands) -> Result<[u64; 3]> {
    let sizes = call.sizes()?;
    if call.transposed && ops.bias.is_some() {
        return Err(Error::invalid(
            "matvec: the transposed product has no bias (pass none)",
        ));
    }
    let device = &engine.device;
    let w = check_range(device, &ops.w, sizes.w, "w")?;
    let x = check_range(device, &ops.x, sizes.x, "x")?;
    let y = check_range(device, &ops.y, sizes.y, "y")?;
    check_binding(engine, x, "x")?;
    check_binding(engine, y, "y")?;
    check_disjoint(&ops.w, w, &ops.y, y)?;
    check_disjoint(&ops.x, x, &ops.y, y)?;
    let bias = match &ops.bias {
        Some(b) => {
            let bound = check_range(device, b, sizes.bias, "bias")?;
            check_binding(engine, bound, "bias")?;
            check_disjoint(b, bound, &ops.y, y)?;
            bound
        }
        None => 0,
    };
    Ok([x, bias, y])
}

/// Records `call` on `ops` into `cmd`: one dispatch per chunk of W's rows
/// (forward chunks write disjoint rows of y; transposed chunks add into y,
/// with a compute barrier between them). The `_dot_pre` variant records
/// before them the rounding of x into a scratch buffer, and a compute
/// barrier. Returns the ticket whose release
/// ([`super::recorder::Recorder::release`]) frees the descriptor sets and
/// makes the scratch buffer a spare.
///
/// Records no barrier before the first dispatch or after the last: the
/// caller orders its writes of W, x and bias before, and its reads of y after.
///
/// # Safety
/// `cmd` is a command buffer of the engine's device in the recording state,
/// outside a render pass; the buffers are live buffers of that device with
/// STORAGE_BUFFER usage and hold the given ranges.
pub unsafe fn record_matvec(
    engine: &Engine,
    cmd: vk::CommandBuffer,
    call: &MatvecCall,
    ops: &Operands,
) -> Result<Ticket> {
    check_command_buffer(cmd)?;
    let [x_size, bias_size, y_size] = check_operands(engine, call, ops)?;
    let sizes = call.sizes()?;
    let info = &engine.device.info;
    let align = info.min_storage_offset_alignment.max(4);
    let plan = chunks(
        call.rows,
        sizes.row_bytes,
        u64::from(info.max_storage_buffer_range),
        align,
    )?;
    let choice = engine.matvec();
    let (variant, rows_per) = if call.transposed {
        (MatvecVariant::Transposed, 1)
    } else {
        let variant = choice.forward_variant(call.compat, call.format, call.batch);
        (
            variant,
            choice.rows_per_group(variant, call.batch, call.format, call.rows),
        )
    };
    let kernel = matvec_kernel(variant, call.format).ok_or_else(|| {
        Error::new(
            ErrorKind::Internal,
            format!("no {variant:?} matvec kernel for {}", call.format.name()),
        )
    })?;
    // Constant ids 0, 1, 2: BATCH, NUM_ROWS (shaders/matvec.glsl), SLOTS
    // (shaders/matvec_dot.comp; the other kernels ignore it).
    let specialization = [call.batch, rows_per, choice.dot_slots(rows_per, call.batch)];
    let bound: Vec<vk::Buffer> = [Some(ops.w), Some(ops.x), ops.bias, Some(ops.y)]
        .iter()
        .flatten()
        .map(|r| r.buffer)
        .collect();
    let x = (ops.x.buffer, ops.x.offset, x_size);
    let y = (ops.y.buffer, ops.y.offset, y_size);
    let bias = ops.bias.map_or(x, |b| (b.buffer, b.offset, bias_size));
    let first_w = |chunk: &Chunk| {
        (
            ops.w.buffer,
            ops.w.offset + chunk.bind_offset,
            chunk.bind_size,
        )
    };
    let (ticket, mut sets, rounded_x) = if variant == MatvecVariant::DotPre {
        let bytes = rounded_x_bytes(call.cols, call.batch);
        let round = [call.batch];
        let kernels = [(ROUND_X, &round[..]), (kernel, &specialization[..])];
        let (ticket, sets, scratch) =
            engine.reserve_with_scratch(&kernels, plan.len() + 1, &bound, bytes)?;
        (ticket, sets.into_iter(), (scratch, 0, bytes))
    } else {
        let (ticket, sets) = engine.reserve(kernel, &specialization, plan.len(), &bound)?;
        (ticket, sets.into_iter(), x)
    };
    if variant == MatvecVariant::DotPre {
        let jobs = u64::from(call.batch) * (call.cols / 32);
        let dispatch = Dispatch {
            kernel: ROUND_X,
            specialization: &[call.batch],
            set: sets
                .next()
                .ok_or_else(|| Error::new(ErrorKind::Internal, "no set"))?,
            bindings: &[first_w(&plan[0]), x, bias, y, rounded_x],
            push: MatvecPush {
                cols: call.cols as u32,
                ..MatvecPush::default()
            },
            groups: jobs.div_ceil(ROUND_X_GROUP) as u32,
        };
        // SAFETY: per this function's contract; x was checked to lie in
        // the caller's range, the scratch is the ticket's, the set fresh.
        unsafe { engine.record(cmd, &dispatch) }?;
        // SAFETY: cmd is recording (this function's contract).
        unsafe { compute_barrier(&engine.device.device, cmd) };
    }
    for (i, (chunk, set)) in plan.iter().zip(sets).enumerate() {
        let push = MatvecPush {
            rows: chunk.rows as u32,
            cols: call.cols as u32,
            row_first: chunk.first_row as u32,
            total_rows: call.rows as u32,
            w_half: chunk.w_half,
            row_halves: (sizes.row_bytes / 2) as u32,
            has_bias: u32::from(ops.bias.is_some()),
            accumulate: u32::from(i > 0),
        };
        let groups = if call.transposed {
            call.cols.div_ceil(COLUMNS_PER_GROUP)
        } else {
            chunk.rows.div_ceil(u64::from(rows_per))
        };
        let dispatch = Dispatch {
            kernel,
            specialization: &specialization,
            set,
            bindings: &[first_w(chunk), x, bias, y, rounded_x],
            push,
            groups: groups as u32,
        };
        if call.transposed && i > 0 {
            // SAFETY: cmd is recording (this function's contract).
            unsafe { compute_barrier(&engine.device.device, cmd) };
        }
        // SAFETY: per this function's contract; the ranges were checked to
        // lie inside the caller's, and the set is fresh.
        unsafe { engine.record(cmd, &dispatch) }?;
    }
    Ok(ticket)
}

/// Host data of a product, for [`run_on_host_data`].
#[derive(Debug, Clone, Copy)]
pub struct HostOperands<'a> {
    pub w: &'a [u8],
    pub x: &'a [f32],
    pub bias: Option<&'a [f32]>,
}

fn float_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|f| f.to_le_bytes()).collect()
}

/// A device-local buffer holding `bytes` (through a staging copy).
pub fn upload(engine: &Engine, bytes: &[u8]) -> Result<Buffer> {
    let size = (bytes.len() as u64).div_ceil(4) * 4;
    let mut staging = Buffer::new(&engine.device, size, true)?;
    staging.write(bytes);
    let buffer = Buffer::new(&engine.device, size, false)?;
    engine.copy(staging.buffer, buffer.buffer, size)?;
    Ok(buffer)
}

fn whole(buffer: &Buffer, size: u64) -> BufferRange {
    BufferRange {
        buffer: buffer.buffer,
        offset: 0,
        size: size.div_ceil(4) * 4,
    }
}

/// Uploads `host`, runs `call` on the device (submit and wait) and writes
/// the results to `y` (at least the product's batch·(rows or cols) floats;
/// only those are written). For tests and tools: a trainer records
/// [`record_matvec`] on its own device-resident buffers instead.
pub fn run_on_host_data(
    engine: &Engine,
    call: &MatvecCall,
    host: &HostOperands,
    y: &mut [f32],
) -> Result<()> {
    let sizes = call.sizes()?;
    run_recorded(engine, &sizes, host, y, |cmd, ops| {
        // SAFETY: the engine's command buffer is recording; the buffers are
        // nyxq's own, alive until after the wait, and hold the ranges.
        unsafe { record_matvec(engine, cmd, call, ops) }
    })
}

/// Uploads `host` (operands of `sizes`), records a product with `record`
/// on them into the engine's command buffer, submits, waits and writes the
/// results to `y` (at least sizes.y / 4 floats; only those are written).
pub(super) fn run_recorded(
    engine: &Engine,
    sizes: &Sizes,
    host: &HostOperands,
    y: &mut [f32],
    record: impl FnOnce(vk::CommandBuffer, &Operands) -> Result<Ticket>,
) -> Result<()> {
    let expect = |what: &str, have: usize, needed: u64| {
        if have as u64 != needed {
            return Err(Error::invalid(format!(
                "{what} has {have} bytes; the shape needs {needed}"
            )));
        }
        Ok(())
    };
    expect("w", host.w.len(), sizes.w)?;
    expect("x", 4 * host.x.len(), sizes.x)?;
    if let Some(b) = host.bias {
        expect("bias", 4 * b.len(), sizes.bias)?;
    }
    let outputs = (sizes.y / 4) as usize;
    Error::ensure_room("y", "floats", outputs, y.len())?;
    let w = upload(engine, host.w)?;
    let x = upload(engine, &float_bytes(host.x))?;
    let bias = host
        .bias
        .map(|b| upload(engine, &float_bytes(b)))
        .transpose()?;
    let out = Buffer::new(&engine.device, sizes.y, true)?;
    let ops = Operands {
        w: whole(&w, sizes.w),
        x: whole(&x, sizes.x),
        bias: bias.as_ref().map(|b| whole(b, sizes.bias)),
        y: whole(&out, sizes.y),
    };
    let mut ticket = None;
    let submitted = engine.submit_recorded(false, |cmd| {
        ticket = Some(record(cmd, &ops)?);
        // SAFETY: recording.
        unsafe { compute_barrier(&engine.device.device, cmd) };
        Ok(())
    });
    if let Some(t) = ticket {
        engine.recorder().release(&engine.device.device, t)?;
    }
    submitted?;
    let mut bytes = vec![0u8; sizes.y as usize];
    out.read(&mut bytes);
    for (v, b) in y[..outputs].iter_mut().zip(bytes.chunks_exact(4)) {
        *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_once_within_the_range() {
        for (rows, row_bytes, max, align) in [
            (1u64, 18u64, 1u64 << 27, 16u64),
            (4097, 34 * 129, 1 << 20, 16),
            (1000, 2 * 33, 4096, 64),
            (7, 4 * 7, 64, 16),
        ] {
            let plan = chunks(rows, row_bytes, max, align).unwrap();
            let mut next = 0;
            for c in &plan {
                assert_eq!(c.first_row, next);
                assert_eq!(c.bind_offset % align, 0);
                assert!(c.bind_size <= max, "{c:?}");
                assert_eq!(
                    c.bind_offset + 2 * u64::from(c.w_half),
                    c.first_row * row_bytes
                );
                assert!(c.bind_offset + c.bind_size >= (c.first_row + c.rows) * row_bytes);
                next += c.rows;
            }
            assert_eq!(next, rows);
        }
        assert!(chunks(3, 4096, 4096, 16).is_err());
    }

    #[test]
    fn sizes_follow_the_shape() {
        let call = MatvecCall {
            format: Format::Q4_0,
            rows: 7,
            cols: 96,
            batch: 8,
            transposed: false,
            compat: false,
        };
        let s = call.sizes().unwrap();
        assert_eq!(
            (s.row_bytes, s.w, s.x, s.y, s.bias),
            (54, 378, 3072, 224, 28)
        );
        let t = MatvecCall {
            transposed: true,
            ..call
        }
        .sizes()
        .unwrap();
        assert_eq!((t.x, t.y), (224, 3072));
        for bad in [
            MatvecCall { rows: 0, ..call },
            MatvecCall { cols: 33, ..call },
            MatvecCall { batch: 9, ..call },
            MatvecCall { batch: 0, ..call },
        ] {
            assert!(bad.sizes().is_err(), "{bad:?}");
        }
    }
}
