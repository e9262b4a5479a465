//! The choice of a matrix-vector product's shader variant and workgroup
//! shape on one device: `auto`/`dot_pre`/`dot`/`f32` arithmetic, rows per
//! workgroup, the `_dot` kernels' row slots.

use crate::format::Format;
use crate::vk::device::Device;
use crate::vk::features::Feature;
use crate::vk::shaders::MatvecVariant;
use ash::vk;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

/// Most rows one workgroup of the f32 forward kernels handles (MAX_ROWS in
/// shaders/matvec.glsl).
const MAX_ROWS_PER_GROUP: u32 = 8;
/// Most rows one workgroup of the `_dot` kernel handles (MAX_DOT_ROWS in
/// shaders/matvec_dot.comp).
const MAX_DOT_ROWS_PER_GROUP: u32 = 32;
/// Largest subgroup the `_dot` kernel allows (a subgroup must lie inside
/// one of its row slots of 32 invocations).
const MAX_DOT_SUBGROUP: u32 = 32;

/// The arithmetic of the forward product on the block formats where the
/// device could run either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arithmetic {
    /// The default: `IntegerDot` for one vector; `PreRounded` for batches
    /// from [`PRE_ROUNDED_MIN_BATCH`] up to [`PRE_ROUNDED_MAX_BATCH`]
    /// (every batch) where the self-test passed `_dot_pre`; where it did
    /// not, `IntegerDot` up to [`DOT_MAX_BATCH`] and `F32` above (`_dot`
    /// rounds x once per workgroup, which for many vectors costs more than
    /// it saves; for one vector its rounding costs less than `_dot_pre`'s
    /// extra dispatch: measured on the H100 and H200, docs/performance.md).
    Auto,
    /// Weights dequantized to f32, f32 fused multiply-adds (`_subgroup`).
    F32,
    /// x rounded to int8 per block in every workgroup, integer dot
    /// products (`_dot`).
    IntegerDot,
    /// x rounded to int8 per block once per product by a dispatch before
    /// it, into a scratch buffer the ticket holds; integer dot products
    /// (`_dot_pre`; the same bits as `_dot`).
    PreRounded,
}

/// Largest batch `Arithmetic::Auto` runs with `_dot` where `_dot_pre`
/// cannot run.
pub const DOT_MAX_BATCH: u32 = 2;

/// Smallest batch `Arithmetic::Auto` runs with `_dot_pre`: one vector runs
/// `_dot`, as fast or faster on every shape measured on the H100 (up to
/// 0.89× `_dot_pre`'s time), without the rounding dispatch and its scratch.
pub const PRE_ROUNDED_MIN_BATCH: u32 = 2;

/// Largest batch `Arithmetic::Auto` runs with `_dot_pre`: every batch, since
/// the rounding of x no longer grows with the workgroups (a batch of 8
/// reads each block of W once, as a batch of 1 does). The forward matmul is
/// not routed to: up to 8 tokens the matvec is 6–20× faster
/// (docs/performance.md).
pub const PRE_ROUNDED_MAX_BATCH: u32 = 8;

impl Arithmetic {
    /// NYXQ_VK_MATVEC_VARIANT: `f32`, `dot`, `dot_pre`, or `auto` (the
    /// default, also for any other value).
    fn from_env() -> Arithmetic {
        match std::env::var("NYXQ_VK_MATVEC_VARIANT").as_deref() {
            Ok("f32") => Arithmetic::F32,
            Ok("dot") => Arithmetic::IntegerDot,
            Ok("dot_pre") => Arithmetic::PreRounded,
            _ => Arithmetic::Auto,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Arithmetic::Auto => 0,
            Arithmetic::F32 => 1,
            Arithmetic::IntegerDot => 2,
            Arithmetic::PreRounded => 3,
        }
    }

    fn from_u8(v: u8) -> Arithmetic {
        match v {
            1 => Arithmetic::F32,
            2 => Arithmetic::IntegerDot,
            3 => Arithmetic::PreRounded,
            _ => Arithmetic::Auto,
        }
    }
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

/// How the matrix-vector products of one device are run: which variant,
/// how many rows per workgroup, how many row slots. Made from the device's
/// subgroup facts and the NYXQ_VK_MATVEC_* settings, read once.
pub struct MatvecChoice {
    subgroup: bool,
    /// Invocations per subgroup (1 where there is no subgroup arithmetic).
    subgroup_size: u32,
    /// The device can run the `_dot` variants.
    dot: bool,
    /// Why the self-test disabled `_dot_pre` (None: it passed, or has not
    /// run yet).
    pre_rounded_failure: Mutex<Option<String>>,
    /// [`Arithmetic`] of the block formats where the device runs both
    /// (NYXQ_VK_MATVEC_VARIANT, or [`MatvecChoice::set_arithmetic`]).
    arithmetic: AtomicU8,
    /// NYXQ_VK_MATVEC_ROWS, read once when the engine is made.
    tuned_rows: Option<u32>,
    /// NYXQ_VK_MATVEC_SLOTS, read once when the engine is made.
    tuned_slots: Option<u32>,
}

impl std::fmt::Debug for MatvecChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatvecChoice")
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

impl MatvecChoice {
    /// The choice on `device`, with the settings of the environment.
    pub fn new(device: &Device) -> MatvecChoice {
        let subgroup_size = subgroup_arithmetic_size(device);
        // An emulated device's subgroup size decides whether `_dot` may run,
        // as it would on that device.
        let dot_subgroup = device.info.emulated_subgroup_size.or(subgroup_size);
        MatvecChoice {
            subgroup: subgroup_size.is_some(),
            subgroup_size: subgroup_size.unwrap_or(1),
            dot: device.enabled.has(Feature::IntegerDotProduct)
                && subgroup_size.is_some()
                && dot_subgroup.is_some_and(|s| s <= MAX_DOT_SUBGROUP),
            pre_rounded_failure: Mutex::new(None),
            arithmetic: Arithmetic::from_env().as_u8().into(),
            tuned_rows: tuned_rows_per_group(),
            tuned_slots: tuned_slots(),
        }
    }

    /// Rows per workgroup of the forward `variant` for `batch` vectors of
    /// `format` in a matrix of `rows` rows, unless NYXQ_VK_MATVEC_ROWS (1 to
    /// 32; at most 8 for the f32 variants) was set when the engine was
    /// made. f32 variants, measured on the H200 (docs/performance.md): for 1-2 vectors, 4
    /// rows for the block formats (x, read once per step, serves more rows)
    /// and 2 for F32/F16/BF16 (more workgroups in flight); for more vectors,
    /// 8 rows, since loading x dominates. `_dot` rounds x once per workgroup,
    /// so it takes as many rows as leave [`DOT_MIN_GROUPS`] workgroups: 32, 16,
    /// 8, else 4. `_dot_pre` takes `_dot`'s rows (and slots), so that it
    /// sums in the same order and gives the same bits.
    pub fn rows_per_group(
        &self,
        variant: MatvecVariant,
        batch: u32,
        format: Format,
        rows: u64,
    ) -> u32 {
        if matches!(variant, MatvecVariant::Dot | MatvecVariant::DotPre) {
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

    /// Whether the device runs the `_dot` variant (the block formats).
    pub fn dot_supported(&self) -> bool {
        self.dot
    }

    /// Whether the device runs the `_dot_pre` variant: it runs `_dot`, and
    /// the self-test has not disabled `_dot_pre`.
    pub fn pre_rounded_supported(&self) -> bool {
        self.dot && self.pre_rounded_failure.lock().is_none()
    }

    /// Why the self-test disabled `_dot_pre`, if it did.
    pub fn pre_rounded_failure(&self) -> Option<String> {
        self.pre_rounded_failure.lock().clone()
    }

    /// Disables `_dot_pre` for products recorded from now on, saying why
    /// (the self-test, when its results disagree), or enables it again
    /// (None: the self-test, before it tests it).
    pub(crate) fn set_pre_rounded_failure(&self, why: Option<String>) {
        *self.pre_rounded_failure.lock() = why;
    }

    /// The arithmetic the block formats use where the device runs both.
    pub fn arithmetic(&self) -> Arithmetic {
        Arithmetic::from_u8(self.arithmetic.load(Relaxed))
    }

    /// Chooses the arithmetic of products recorded from now on (for
    /// benchmarks and tests; NYXQ_VK_MATVEC_VARIANT sets the initial one).
    pub fn set_arithmetic(&self, arithmetic: Arithmetic) {
        self.arithmetic.store(arithmetic.as_u8(), Relaxed);
    }

    /// The forward variant to use on `format` for `batch` vectors (`compat`
    /// forces the shared-memory one).
    pub fn forward_variant(&self, compat: bool, format: Format, batch: u32) -> MatvecVariant {
        if compat || !self.subgroup {
            return MatvecVariant::Compat;
        }
        let dot = format.spec().vulkan.matvec_dot && self.dot;
        let pre = dot && self.pre_rounded_supported();
        match self.arithmetic() {
            Arithmetic::Auto if dot && batch < PRE_ROUNDED_MIN_BATCH => MatvecVariant::Dot,
            Arithmetic::Auto if pre && batch <= PRE_ROUNDED_MAX_BATCH => MatvecVariant::DotPre,
            Arithmetic::Auto if dot && batch <= DOT_MAX_BATCH => MatvecVariant::Dot,
            Arithmetic::IntegerDot if dot => MatvecVariant::Dot,
            Arithmetic::PreRounded if pre => MatvecVariant::DotPre,
            Arithmetic::Auto
            | Arithmetic::F32
            | Arithmetic::IntegerDot
            | Arithmetic::PreRounded => MatvecVariant::Subgroup,
        }
    }
}
