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
//! The third, `_dot` (shaders/matvec_dot.comp), is for Q8_0, Q4_0 and Q4_1
//! and is the default for them where the device has subgroup arithmetic
//! (subgroups of 4 to 32) and shaderIntegerDotProduct enabled (nyxq's own
//! device; not a borrowed one): each workgroup rounds tiles of x to int8 per
//! block of 32 (scale `s = max|x|/127`, as the CPU's integer path) and
//! multiplies the packed 8-bit values with OpSDot, exactly in integers. Its
//! bound is the CPU integer path's: the f32 bound above plus
//! `Σ_blocks (s/2)·Σ|w|` (and blocks of x with max|x| < 2⁻¹¹⁹ count as zero).
//! Blocks of x holding NaN or ±Inf are multiplied in f32, so those propagate
//! as IEEE arithmetic says. NYXQ_VK_MATVEC_VARIANT=f32 (or
//! [`Pipelines::set_arithmetic`]) runs the f32 `_subgroup` variant instead,
//! for comparison.
//!
//! W larger than maxStorageBufferRange is split by rows into several
//! dispatches (the transposed product adds the chunks' sums into y, with a
//! barrier between them); x, bias and y must each fit one binding.

pub mod bench;

use super::device::Device;
use super::exec::{self, Buffer, Dispatch, Engine};
use super::ops::format_tag;
use super::record::{BufferRange, Ticket, check_disjoint, check_range};
use crate::error::{Error, ErrorKind, Result};
use crate::format::{Format, VulkanFamily};
use ash::vk;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// Most vectors one product takes (as the CPU kernel).
pub const MAX_BATCH: u32 = crate::matvec::MAX_BATCH as u32;
/// Most rows one workgroup of the f32 forward kernels handles (MAX_ROWS in
/// shaders/matvec.glsl).
const MAX_ROWS_PER_GROUP: u32 = 8;
/// Most rows one workgroup of the `_dot` kernel handles (MAX_DOT_ROWS in
/// shaders/matvec_dot.comp).
const MAX_DOT_ROWS_PER_GROUP: u32 = 32;
/// Largest subgroup the `_dot` kernel allows (a subgroup must lie inside
/// one of its row slots of 32 invocations).
const MAX_DOT_SUBGROUP: u32 = 32;
/// Columns per workgroup of the transposed kernel.
const COLUMNS_PER_GROUP: u64 = 32;
/// Bindings: W, x, bias, y.
const BINDINGS: u32 = 4;

/// Rust twin of `Push` in shaders/matvec.glsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatvecPush {
    pub rows: u32,
    pub cols: u32,
    pub row_first: u32,
    pub total_rows: u32,
    pub w_half: u32,
    pub row_halves: u32,
    pub has_bias: u32,
    pub accumulate: u32,
}

const _: () = assert!(size_of::<MatvecPush>() == 32);
const _: () = assert!(size_of::<MatvecPush>() <= 128);

impl MatvecPush {
    /// The bytes vkCmdPushConstants takes (little-endian u32 fields in order).
    pub fn to_bytes(self) -> Vec<u8> {
        [
            self.rows,
            self.cols,
            self.row_first,
            self.total_rows,
            self.w_half,
            self.row_halves,
            self.has_bias,
            self.accumulate,
        ]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
    }
}

/// Which shader a product runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Forward, reduction with subgroupAdd.
    Subgroup,
    /// Forward, reduction through shared memory (no optional feature).
    Compat,
    /// Forward, Q8_0/Q4_0/Q4_1 only: x rounded to int8 per block, integer
    /// dot products (needs subgroup arithmetic and shaderIntegerDotProduct).
    Dot,
    /// The transposed product (one variant, no optional feature).
    Transposed,
}

/// The arithmetic of the forward product on the block formats where the
/// device could run either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arithmetic {
    /// `IntegerDot` for batches up to [`DOT_MAX_BATCH`], `F32` above (the
    /// default): `_dot` rounds x once per workgroup, which for many vectors
    /// costs more than it saves (measured on the H200, docs/performance.md).
    Auto,
    /// Weights dequantized to f32, f32 fused multiply-adds (`_subgroup`).
    F32,
    /// x rounded to int8 per block, integer dot products (`_dot`).
    IntegerDot,
}

/// Largest batch `Arithmetic::Auto` runs with `_dot`.
pub const DOT_MAX_BATCH: u32 = 2;

impl Arithmetic {
    /// NYXQ_VK_MATVEC_VARIANT: `f32`, `dot`, or `auto` (the default, also for
    /// any other value).
    fn from_env() -> Arithmetic {
        match std::env::var("NYXQ_VK_MATVEC_VARIANT").as_deref() {
            Ok("f32") => Arithmetic::F32,
            Ok("dot") => Arithmetic::IntegerDot,
            _ => Arithmetic::Auto,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Arithmetic::Auto => 0,
            Arithmetic::F32 => 1,
            Arithmetic::IntegerDot => 2,
        }
    }

    fn from_u8(v: u8) -> Arithmetic {
        match v {
            1 => Arithmetic::F32,
            2 => Arithmetic::IntegerDot,
            _ => Arithmetic::Auto,
        }
    }
}

/// The shader variant name of `variant` on `format` (`Dot` exists for
/// Q8_0, Q4_0 and Q4_1 only, as [`Pipelines::forward_variant`] chooses it).
pub fn kernel_name(variant: Variant, format: Format) -> &'static str {
    let tag = format_tag(format);
    let wanted = match variant {
        Variant::Subgroup => format!("matvec_{tag}_f32_subgroup"),
        Variant::Compat => format!("matvec_{tag}_f32"),
        Variant::Dot => format!("matvec_{tag}_f32_dot"),
        Variant::Transposed => format!("matvec_t_{tag}_f32"),
    };
    super::shaders::variant(&wanted)
        .map(|v| v.name)
        .expect("build_support/shaders.rs makes every matvec variant")
}

/// NYXQ_VK_MATVEC_ROWS (1 to 32), when set: the rows per workgroup of the
/// forward kernels for every batch, for tuning with the benchmark (the f32
/// kernels take at most 8).
fn tuned_rows_per_group() -> Option<u32> {
    std::env::var("NYXQ_VK_MATVEC_ROWS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|r| (1..=MAX_DOT_ROWS_PER_GROUP).contains(r))
}

/// NYXQ_VK_MATVEC_SLOTS (1, 2 or 4), when set: the row slots of the `_dot`
/// kernel's workgroup, for tuning (raised where the rows would not fit).
fn tuned_slots() -> Option<u32> {
    std::env::var("NYXQ_VK_MATVEC_SLOTS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|s| [1, 2, 4].contains(s))
}

/// Workgroups the `_dot` kernel wants at least, when choosing its rows per
/// workgroup (a few per multiprocessor on large GPUs; measured on the H200).
const DOT_MIN_GROUPS: u64 = 320;
/// Rows one lane of the `_dot` kernel keeps (shaders/matvec_dot.comp).
const DOT_MAX_SLOT_ROWS: u32 = 8;
/// Floats of the `_dot` kernel's shared memory that hold partial sums.
const DOT_PARTIAL_SUMS: u32 = 2048;
/// Row slots of the `_dot` kernel unless NYXQ_VK_MATVEC_SLOTS says otherwise.
const DOT_DEFAULT_SLOTS: u32 = 4;

/// A specialised pipeline: variant name, batch, rows per workgroup, row slots.
type PipelineKey = (&'static str, u32, u32, u32);

/// The layouts and pipelines of the matrix-vector kernels on one device
/// (4 storage-buffer bindings and [`MatvecPush`], unlike the Engine's
/// 2-binding layout). Pipelines are specialised by batch and rows per group.
pub struct Pipelines {
    device: Arc<Device>,
    set_layout: vk::DescriptorSetLayout,
    layout: vk::PipelineLayout,
    cache: Mutex<HashMap<PipelineKey, vk::Pipeline>>,
    subgroup: bool,
    /// Invocations per subgroup (1 where there is no subgroup arithmetic).
    subgroup_size: u32,
    /// The device can run the `_dot` variant.
    dot: bool,
    /// [`Arithmetic`] of the block formats where the device runs both
    /// (NYXQ_VK_MATVEC_VARIANT, or [`Pipelines::set_arithmetic`]).
    arithmetic: std::sync::atomic::AtomicU8,
    /// NYXQ_VK_MATVEC_ROWS, read once when the pipelines are made.
    tuned_rows: Option<u32>,
    /// NYXQ_VK_MATVEC_SLOTS, read once when the pipelines are made.
    tuned_slots: Option<u32>,
}

impl std::fmt::Debug for Pipelines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipelines")
            .field("subgroup", &self.subgroup)
            .field("dot", &self.dot)
            .finish_non_exhaustive()
    }
}

/// The subgroup size of compute shaders of `device` where they have
/// subgroup arithmetic with subgroups of 4 to 128 invocations (what the
/// `_subgroup` variant assumes).
fn subgroup_arithmetic_size(device: &Device) -> Option<u32> {
    let mut sub = vk::PhysicalDeviceSubgroupProperties::default();
    let mut props = vk::PhysicalDeviceProperties2::default().push_next(&mut sub);
    // SAFETY: the physical device belongs to the instance; the chained struct
    // is Vulkan 1.1 core, and nyxq requires 1.2.
    unsafe {
        device
            .instance
            .instance
            .get_physical_device_properties2(device.physical, &mut props)
    };
    let ops = vk::SubgroupFeatureFlags::BASIC | vk::SubgroupFeatureFlags::ARITHMETIC;
    (sub.supported_stages.contains(vk::ShaderStageFlags::COMPUTE)
        && sub.supported_operations.contains(ops)
        && (4..=128).contains(&sub.subgroup_size))
    .then_some(sub.subgroup_size)
}

impl Pipelines {
    /// The layouts; pipelines are made on first use.
    pub fn new(device: &Arc<Device>) -> Result<Pipelines> {
        let (set_layout, layout) =
            exec::create_layouts(&device.device, BINDINGS, size_of::<MatvecPush>() as u32)?;
        let subgroup_size = subgroup_arithmetic_size(device);
        Ok(Pipelines {
            device: device.clone(),
            set_layout,
            layout,
            cache: Mutex::new(HashMap::new()),
            subgroup: subgroup_size.is_some(),
            subgroup_size: subgroup_size.unwrap_or(1),
            dot: device.enabled_integer_dot && subgroup_size.is_some_and(|s| s <= MAX_DOT_SUBGROUP),
            arithmetic: Arithmetic::from_env().as_u8().into(),
            tuned_rows: tuned_rows_per_group(),
            tuned_slots: tuned_slots(),
        })
    }

    /// Rows per workgroup of the forward `variant` for `batch` vectors of
    /// `format` in a matrix of `rows` rows, unless NYXQ_VK_MATVEC_ROWS (1 to
    /// 32; at most 8 for the f32 variants) was set when the pipelines were
    /// made. f32 variants, measured on the H200 (docs/performance.md): for 1-2 vectors, 4
    /// rows for the block formats (x, read once per step, serves more rows)
    /// and 2 for F32/F16/BF16 (more workgroups in flight); for more vectors,
    /// 8 rows, since loading x dominates. `_dot` rounds x once per workgroup,
    /// so it takes as many rows as leave [`DOT_MIN_GROUPS`] workgroups: 32, 16,
    /// 8, else 4.
    pub fn rows_per_group(&self, variant: Variant, batch: u32, format: Format, rows: u64) -> u32 {
        if variant == Variant::Dot {
            return self.tuned_rows.unwrap_or_else(|| {
                [32u32, 16, 8]
                    .into_iter()
                    .find(|&r| rows / u64::from(r) >= DOT_MIN_GROUPS)
                    .unwrap_or(4)
            });
        }
        self.tuned_rows.map_or(
            match (batch <= 2, format.block_size() > 1) {
                (true, true) => 4,
                (true, false) => 2,
                (false, _) => 8,
            },
            |r| r.min(MAX_ROWS_PER_GROUP),
        )
    }

    /// Row slots of the `_dot` workgroup for `rows_per` rows and `batch`
    /// vectors: NYXQ_VK_MATVEC_SLOTS or 4, raised until a slot keeps at most
    /// 8 rows and the partial sums fit the kernel's shared memory.
    pub fn dot_slots(&self, rows_per: u32, batch: u32) -> u32 {
        let wanted = self.tuned_slots.unwrap_or(DOT_DEFAULT_SLOTS);
        let lanes = |slots: u32| 128 / slots;
        [1u32, 2, 4]
            .into_iter()
            .filter(|&s| s >= wanted)
            .find(|&s| {
                rows_per.div_ceil(s) <= DOT_MAX_SLOT_ROWS
                    && rows_per * batch * (lanes(s) / self.subgroup_size).max(1) <= DOT_PARTIAL_SUMS
            })
            .unwrap_or(4)
    }

    /// Whether the device runs the `_subgroup` variant.
    pub fn subgroup_supported(&self) -> bool {
        self.subgroup
    }

    /// Whether the device runs the `_dot` variant (Q8_0, Q4_0, Q4_1).
    pub fn dot_supported(&self) -> bool {
        self.dot
    }

    /// The arithmetic the block formats use where the device runs both.
    pub fn arithmetic(&self) -> Arithmetic {
        Arithmetic::from_u8(self.arithmetic.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Chooses the arithmetic of products recorded from now on (for
    /// benchmarks and tests; NYXQ_VK_MATVEC_VARIANT sets the initial one).
    pub fn set_arithmetic(&self, arithmetic: Arithmetic) {
        self.arithmetic
            .store(arithmetic.as_u8(), std::sync::atomic::Ordering::Relaxed);
    }

    /// The forward variant to use on `format` for `batch` vectors (`compat`
    /// forces the shared-memory one).
    pub fn forward_variant(&self, compat: bool, format: Format, batch: u32) -> Variant {
        let block = matches!(format, Format::Q8_0 | Format::Q4_0 | Format::Q4_1);
        let dot = match self.arithmetic() {
            Arithmetic::Auto => batch <= DOT_MAX_BATCH,
            Arithmetic::F32 => false,
            Arithmetic::IntegerDot => true,
        };
        if compat || !self.subgroup {
            Variant::Compat
        } else if block && self.dot && dot {
            Variant::Dot
        } else {
            Variant::Subgroup
        }
    }

    /// The pipeline of `name` specialised for `batch` vectors, `rows` rows
    /// per workgroup and (`_dot` only; the other kernels ignore it) `slots`.
    fn pipeline(
        &self,
        name: &'static str,
        batch: u32,
        rows: u32,
        slots: u32,
    ) -> Result<vk::Pipeline> {
        let mut cache = self.cache.lock();
        if let Some(p) = cache.get(&(name, batch, rows, slots)) {
            return Ok(*p);
        }
        let spv = super::shaders::spirv(name)
            .ok_or_else(|| Error::new(ErrorKind::Internal, format!("no shader variant {name}")))?;
        let p = exec::create_pipeline(&self.device, self.layout, name, spv, &[batch, rows, slots])?;
        cache.insert((name, batch, rows, slots), p);
        Ok(p)
    }
}

impl Drop for Pipelines {
    fn drop(&mut self) {
        let d = &self.device.device;
        // SAFETY: the Engine that owns these is being dropped, after every
        // submission was waited on and (the context's contract) every
        // caller's command buffer with recorded products completed; each
        // object was made from this device and is destroyed once.
        unsafe {
            for (_, p) in self.cache.get_mut().drain() {
                d.destroy_pipeline(p, None);
            }
            d.destroy_pipeline_layout(self.layout, None);
            d.destroy_descriptor_set_layout(self.set_layout, None);
        }
    }
}

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
struct Chunk {
    first_row: u64,
    rows: u64,
    /// Offset of the binding within the caller's W range (aligned).
    bind_offset: u64,
    bind_size: u64,
    /// Halfword within the binding where the first row starts.
    w_half: u32,
}

/// Splits W's rows so that no binding exceeds `max_range` bytes and every
/// binding offset is a multiple of `align`.
fn chunks(rows: u64, row_bytes: u64, max_range: u64, align: u64) -> Result<Vec<Chunk>> {
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
fn check_binding(engine: &Engine, bytes: u64, what: &str) -> Result<()> {
    let max = u64::from(engine.device.info.max_storage_buffer_range);
    if bytes > max {
        return Err(Error::unsupported(format!(
            "matvec: {what} ({bytes} bytes) exceeds the device's maxStorageBufferRange ({max} bytes)"
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
    let w = check_range(engine, &ops.w, sizes.w, "w")?;
    let x = check_range(engine, &ops.x, sizes.x, "x")?;
    let y = check_range(engine, &ops.y, sizes.y, "y")?;
    check_binding(engine, x, "x")?;
    check_binding(engine, y, "y")?;
    check_disjoint(&ops.w, w, &ops.y, y)?;
    check_disjoint(&ops.x, x, &ops.y, y)?;
    let bias = match &ops.bias {
        Some(b) => {
            let bound = check_range(engine, b, sizes.bias, "bias")?;
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
/// with a compute barrier between them). Returns the ticket whose release
/// ([`super::record::Recorder::release`]) frees the descriptor sets.
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
    if cmd == vk::CommandBuffer::null() {
        return Err(Error::new(
            ErrorKind::NullPointer,
            "command_buffer is VK_NULL_HANDLE",
        ));
    }
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
    let pipelines = engine.matvec_pipelines()?;
    let (variant, rows_per) = if call.transposed {
        (Variant::Transposed, 1)
    } else {
        let variant = pipelines.forward_variant(call.compat, call.format, call.batch);
        (
            variant,
            pipelines.rows_per_group(variant, call.batch, call.format, call.rows),
        )
    };
    let slots = pipelines.dot_slots(rows_per, call.batch);
    let pipeline = pipelines.pipeline(
        kernel_name(variant, call.format),
        call.batch,
        rows_per,
        slots,
    )?;
    let recorder = engine.recorder();
    let ticket = recorder.next_ticket();
    let sets = recorder.allocate(
        &engine.device.device,
        pipelines.set_layout,
        ticket,
        plan.len(),
    )?;
    let bound: Vec<vk::Buffer> = [Some(ops.w), Some(ops.x), ops.bias, Some(ops.y)]
        .iter()
        .flatten()
        .map(|r| r.buffer)
        .collect();
    recorder.note_buffers(ticket, &bound);
    let x = (ops.x.buffer, ops.x.offset, x_size);
    let y = (ops.y.buffer, ops.y.offset, y_size);
    let bias = ops.bias.map_or(x, |b| (b.buffer, b.offset, bias_size));
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
        let w = (
            ops.w.buffer,
            ops.w.offset + chunk.bind_offset,
            chunk.bind_size,
        );
        let dispatch = Dispatch {
            pipeline,
            layout: pipelines.layout,
            set,
            ranges: &[w, x, bias, y],
            push: &push.to_bytes(),
            groups: groups as u32,
        };
        if call.transposed && i > 0 {
            // SAFETY: cmd is recording (this function's contract).
            unsafe { exec::compute_barrier(&engine.device.device, cmd) };
        }
        // SAFETY: per this function's contract; the ranges were checked to
        // lie inside the caller's, and the set is fresh.
        unsafe { exec::record_dispatch(&engine.device, cmd, &dispatch) };
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
pub(crate) fn upload(engine: &Engine, bytes: &[u8]) -> Result<Buffer> {
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
    let expect = |what: &str, have: usize, needed: u64| {
        if have as u64 != needed {
            return Err(Error::invalid(format!(
                "matvec: {what} has {have} bytes; the shape needs {needed}"
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
        // SAFETY: the engine's command buffer is recording; the buffers are
        // nyxq's own, alive until after the wait, and hold the ranges.
        ticket = Some(unsafe { record_matvec(engine, cmd, call, &ops) }?);
        // SAFETY: recording.
        unsafe { exec::compute_barrier(&engine.device.device, cmd) };
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

    #[test]
    fn push_bytes_are_the_fields_in_order() {
        let p = MatvecPush {
            rows: 1,
            accumulate: 0x0102_0304,
            ..Default::default()
        };
        let b = p.to_bytes();
        assert_eq!(b.len(), 32);
        assert_eq!(&b[..4], &[1, 0, 0, 0]);
        assert_eq!(&b[28..], &[4, 3, 2, 1]);
    }
}
