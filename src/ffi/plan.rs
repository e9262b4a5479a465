//! Precision planning through the C ABI: models, hardware, policies, plans.

use super::context::NyxqContext;
use super::guard::guard;
use super::handle::{self, Opaque};
use super::status::NyxqStatus;
use super::{copy_to_c_array, enum_value, ptr};
use crate::error::{Error, ErrorKind, Result};
use crate::format::Format;
use crate::plan::model::check_tensor_count;
use crate::plan::{Hardware, Model, OptimizerState, Placement, Plan, Policy, Role, TensorDesc};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::ffi::{CString, c_char};
use std::path::Path;

/// Tensor roles (nyxq_model_add_tensor).
#[repr(i32)]
pub enum NyxqRole {
    NyxqRoleEmbedding = 0,
    NyxqRoleAttention = 1,
    NyxqRoleMlp = 2,
    /// The output projection (LM head).
    NyxqRoleOutput = 3,
    /// Norm weights: always F32.
    NyxqRoleNorm = 4,
    /// Biases: always F32.
    NyxqRoleBias = 5,
    NyxqRoleOther = 6,
}

/// Where a tensor lives: a plan's decision (NyxqPlanEntry.placement) and a
/// nyxq tensor's memory (nyxq_tensor_create_in, nyxq_tensor_migrate,
/// nyxq_tensor_placement), so a plan entry's placement can be passed on as is.
#[repr(i32)]
pub enum NyxqPlacement {
    /// Device-local memory of the Vulkan device (for a tensor:
    /// nyxq_tensor_vk_buffer gives its VkBuffers for the trainer's shaders).
    NyxqPlacementDevice = 0,
    /// Host memory (for a tensor: nyxq_tensor_data gives a view of its bytes).
    NyxqPlacementHost = 1,
}

/// How optimizer state is stored in training (NyxqPlanPolicy.optimizer_state).
#[repr(i32)]
pub enum NyxqOptimizerState {
    /// Adam moments in FP32: 8 bytes per parameter (default).
    NyxqOptimizerFp32 = 0,
    /// Adam moments in 8 bits with an FP32 scale per 256 values.
    NyxqOptimizerBlockwise8 = 1,
}

/// A model description being built (tensors, roles, shapes, measured errors).
/// Create with nyxq_model_create or nyxq_model_load, release with
/// nyxq_model_destroy. Calls may come from several threads; they are serialised.
pub struct NyxqModel {
    _opaque: [u8; 0],
}

impl Opaque for NyxqModel {
    type Inner = Mutex<Model>;
    const KIND: &'static str = "model";
}

/// A finished plan. Create with nyxq_plan_create or nyxq_plan_replan, release
/// with nyxq_plan_destroy. Immutable: any thread may read it at once.
pub struct NyxqPlan {
    _opaque: [u8; 0],
}

/// A plan and the C strings its entries point to.
pub(crate) struct PlanHandle {
    plan: Plan,
    names: Vec<CString>,
    reasons: Vec<CString>,
}

impl Opaque for NyxqPlan {
    type Inner = PlanHandle;
    const KIND: &'static str = "plan";
}

/// What the planner knows about a machine. Fill it with nyxq_hardware_profile,
/// nyxq_hardware_load or nyxq_hardware_detect, then change what you need.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NyxqHardware {
    /// sizeof(NyxqHardware) as the caller compiled it.
    pub struct_size: usize,
    /// Size of the device-local memory the model may live in.
    pub device_local_bytes: u64,
    /// What the process may use now (VK_EXT_memory_budget); 0 = device_local_bytes.
    pub device_budget_bytes: u64,
    /// Host memory tensors may be offloaded to.
    pub host_bytes: u64,
    /// Largest single allocation; 0 = no limit.
    pub max_allocation_bytes: u64,
    /// Nonzero: device memory is system RAM (integrated GPU).
    pub unified_memory: u8,
    /// Nonzero: FP16 arithmetic in shaders.
    pub fp16_arithmetic: u8,
    /// Nonzero: accelerated 8-bit integer dot products.
    pub int8_dot: u8,
    /// Nonzero: 16-bit storage buffers.
    pub storage_16bit: u8,
    /// Nonzero: 8-bit storage buffers.
    pub storage_8bit: u8,
    /// Nonzero: no GPU; device memory is host memory.
    pub cpu_only: u8,
    /// The profile's name, NUL-terminated.
    pub name: [c_char; 64],
}

impl Default for NyxqHardware {
    fn default() -> Self {
        NyxqHardware {
            struct_size: size_of::<NyxqHardware>(),
            device_local_bytes: 0,
            device_budget_bytes: 0,
            host_bytes: 0,
            max_allocation_bytes: 0,
            unified_memory: 0,
            fp16_arithmetic: 0,
            int8_dot: 0,
            storage_16bit: 0,
            storage_8bit: 0,
            cpu_only: 0,
            name: [0; 64],
        }
    }
}

impl From<&Hardware> for NyxqHardware {
    fn from(hw: &Hardware) -> Self {
        let mut c = NyxqHardware {
            device_local_bytes: hw.device_local_bytes,
            device_budget_bytes: hw.device_budget_bytes,
            host_bytes: hw.host_bytes,
            max_allocation_bytes: hw.max_allocation_bytes,
            unified_memory: hw.unified_memory.into(),
            fp16_arithmetic: hw.fp16_arithmetic.into(),
            int8_dot: hw.int8_dot.into(),
            storage_16bit: hw.storage_16bit.into(),
            storage_8bit: hw.storage_8bit.into(),
            cpu_only: hw.cpu_only.into(),
            ..NyxqHardware::default()
        };
        copy_to_c_array(&hw.name, &mut c.name);
        c
    }
}

fn hardware_from_c(c: &NyxqHardware) -> Hardware {
    let name_bytes: Vec<u8> = c
        .name
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as u8)
        .collect();
    Hardware {
        name: String::from_utf8_lossy(&name_bytes).into_owned(),
        description: String::new(),
        device_local_bytes: c.device_local_bytes,
        device_budget_bytes: c.device_budget_bytes,
        host_bytes: c.host_bytes,
        max_allocation_bytes: c.max_allocation_bytes,
        unified_memory: c.unified_memory != 0,
        fp16_arithmetic: c.fp16_arithmetic != 0,
        int8_dot: c.int8_dot != 0,
        storage_16bit: c.storage_16bit != 0,
        storage_8bit: c.storage_8bit != 0,
        cpu_only: c.cpu_only != 0,
        sources: Vec::new(),
    }
}

/// "No value" for the optional u64 fields of NyxqPlanPolicy.
pub const NYXQ_DEFAULT_BYTES: u64 = u64::MAX;

/// Planning policy. Fill with nyxq_plan_policy_default or nyxq_config_policy.
/// New fields are only ever appended.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NyxqPlanPolicy {
    /// sizeof(NyxqPlanPolicy) as the caller compiled it.
    pub struct_size: usize,
    /// Allowed formats: bit (1 << NyxqFormat). Default F32|F16|BF16|Q8_0|Q4_0.
    pub allowed_formats: u32,
    /// Least SNR of every tensor in dB. Default 20.
    pub min_snr_db: f64,
    /// Nonzero: training (gradients, optimizer state, activation reserve count).
    pub training: i32,
    /// A NyxqOptimizerState. Default FP32.
    pub optimizer_state: i32,
    /// NyxqFormat of gradients: F32, F16 or BF16. Default F32.
    pub gradient_format: i32,
    /// Nonzero: training keeps an FP32 master copy of quantized weights.
    pub master_weights: i32,
    /// Device bytes kept free; NYXQ_DEFAULT_BYTES = min(1 GiB, 10% of the device).
    pub safety_margin_bytes: u64,
    /// Device bytes kept for activations; NYXQ_DEFAULT_BYTES = 1/8 of the device
    /// (at most 1 GiB) in training, 0 in inference.
    pub activation_reserve_bytes: u64,
    /// Cap on the device bytes the plan may use; 0 = none.
    pub device_cap_bytes: u64,
    /// Cap on weight bytes as a fraction of FP32 weights, in (0, 1]. Default 1.
    pub max_fraction_of_fp32: f64,
    /// Nonzero (default): tensors may go to host memory when the device is full.
    pub allow_host_offload: i32,
    /// Nonzero (default): lower precision before offloading.
    pub prefer_device: i32,
    /// Nonzero (default): formats may go below the preferred ones to fit.
    pub adaptive: i32,
    /// Nonzero (default): F32 ends the fallback chain.
    pub fallback_to_fp32: i32,
    /// Preferred NyxqFormat for every role; -1 (default) = the most accurate allowed.
    pub default_format: i32,
    /// Preferred NyxqFormat per NyxqRole (index = role); -1 = default_format.
    pub role_formats: [i32; 7],
    /// Overrides "regex=format,regex=format" (llama.cpp's --tensor-type), or
    /// NULL. Read during nyxq_plan_create only.
    pub overrides: *const c_char,
}

impl Default for NyxqPlanPolicy {
    fn default() -> Self {
        NyxqPlanPolicy::from_policy(&Policy::default())
    }
}

impl NyxqPlanPolicy {
    fn from_policy(p: &Policy) -> Self {
        let fmt = |f: Option<Format>| f.map_or(-1, |f| f as i32);
        NyxqPlanPolicy {
            struct_size: size_of::<NyxqPlanPolicy>(),
            allowed_formats: p.allowed_mask(),
            min_snr_db: p.min_snr_db,
            training: p.training.into(),
            optimizer_state: match p.optimizer_state {
                OptimizerState::Fp32 => 0,
                OptimizerState::Blockwise8 => 1,
            },
            gradient_format: p.gradient_format as i32,
            master_weights: p.master_weights.into(),
            safety_margin_bytes: p.safety_margin_bytes.unwrap_or(NYXQ_DEFAULT_BYTES),
            activation_reserve_bytes: p.activation_reserve_bytes.unwrap_or(NYXQ_DEFAULT_BYTES),
            device_cap_bytes: p.device_cap_bytes,
            max_fraction_of_fp32: p.max_fraction_of_fp32,
            allow_host_offload: p.allow_host_offload.into(),
            prefer_device: p.prefer_device.into(),
            adaptive: p.adaptive.into(),
            fallback_to_fp32: p.fallback_to_fp32.into(),
            default_format: fmt(p.default_format),
            role_formats: p.role_formats.map(fmt),
            overrides: std::ptr::null(),
        }
    }

    /// # Safety
    /// `overrides` is NULL or a NUL-terminated string valid during the call.
    unsafe fn into_policy(self) -> Result<Policy> {
        let fmt = |v: i32| -> Result<Option<Format>> {
            if v == -1 {
                Ok(None)
            } else {
                Format::from_raw(v).map(Some)
            }
        };
        let mut p = Policy {
            min_snr_db: self.min_snr_db,
            training: self.training != 0,
            optimizer_state: enum_value(
                self.optimizer_state,
                &[(0, OptimizerState::Fp32), (1, OptimizerState::Blockwise8)],
                "optimizer_state",
            )?,
            gradient_format: Format::from_raw(self.gradient_format)?,
            master_weights: self.master_weights != 0,
            safety_margin_bytes: (self.safety_margin_bytes != NYXQ_DEFAULT_BYTES)
                .then_some(self.safety_margin_bytes),
            activation_reserve_bytes: (self.activation_reserve_bytes != NYXQ_DEFAULT_BYTES)
                .then_some(self.activation_reserve_bytes),
            device_cap_bytes: self.device_cap_bytes,
            max_fraction_of_fp32: self.max_fraction_of_fp32,
            allow_host_offload: self.allow_host_offload != 0,
            prefer_device: self.prefer_device != 0,
            adaptive: self.adaptive != 0,
            fallback_to_fp32: self.fallback_to_fp32 != 0,
            default_format: fmt(self.default_format)?,
            ..Policy::default()
        };
        p.set_allowed_mask(self.allowed_formats)?;
        for (slot, &raw) in p.role_formats.iter_mut().zip(&self.role_formats) {
            *slot = fmt(raw)?;
        }
        if !self.overrides.is_null() {
            // SAFETY: per this function's contract.
            let text = unsafe { ptr::string(self.overrides, "policy.overrides") }?;
            p.overrides = Policy::parse_overrides(text)?;
        }
        p.check()?;
        Ok(p)
    }
}

pub(crate) fn policy_to_c(p: &Policy) -> NyxqPlanPolicy {
    NyxqPlanPolicy::from_policy(p)
}

/// One tensor's line of a plan (nyxq_plan_entries).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NyxqPlanEntry {
    /// The tensor's name; valid until the plan is destroyed.
    pub name: *const c_char,
    /// Its NyxqRole.
    pub role: i32,
    /// Its NyxqFormat.
    pub format: i32,
    /// Its NyxqPlacement.
    pub placement: i32,
    /// 1 when the replan that made this plan changed it.
    pub changed: i32,
    /// Bytes of the weights, block scales included.
    pub weight_bytes: u64,
    /// Weights plus, in training, gradients and optimizer state.
    pub bytes: u64,
    /// Expected SNR in dB; +infinity for F32.
    pub snr_db: f64,
    /// 0 exact (F32), 1 measured from data, 2 estimated.
    pub error_source: i32,
    /// Every decision about the tensor in words; valid until the plan is destroyed.
    pub reason: *const c_char,
}

/// A plan's totals (nyxq_plan_summary).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NyxqPlanSummary {
    pub tensor_count: usize,
    /// Tensors the replan that made this plan changed (0 for nyxq_plan_create).
    pub changed_count: usize,
    pub device_bytes: u64,
    pub host_bytes: u64,
    /// What the tensors may take on the device (after margin and reserve).
    pub device_budget: u64,
    pub host_budget: u64,
    pub safety_margin: u64,
    pub activation_reserve: u64,
    /// What every tensor in F32 would take.
    pub fp32_bytes: u64,
    /// Σ sensitivity × relative noise power.
    pub weighted_error: f64,
}

// Layouts the C++ tests assert too (cpp_tests/test_plan.cpp).
const _: () = assert!(size_of::<NyxqPlanEntry>() == 64);
const _: () = assert!(std::mem::offset_of!(NyxqPlanEntry, weight_bytes) == 24);
const _: () = assert!(size_of::<NyxqHardware>() == 112);
const _: () = assert!(std::mem::offset_of!(NyxqPlanPolicy, struct_size) == 0);

/// Whether a model fits, and what to do when it does not (nyxq_plan_feasibility).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NyxqPlanFeasibility {
    /// 1 when a plan fits.
    pub feasible: i32,
    /// 1 when `recommended_*` name a ladder shape that fits (only when infeasible).
    pub has_recommendation: i32,
    /// Bytes missing (0 when feasible).
    pub shortfall_bytes: u64,
    /// The largest shape of the model ladder that fits: hidden size,
    pub recommended_hidden: u64,
    /// total transformer blocks,
    pub recommended_layers: u64,
    /// vocabulary,
    pub recommended_vocab: u64,
    /// and its name, NUL-terminated.
    pub recommended_name: [c_char; 64],
}

fn role_arg(role: i32) -> Result<Role> {
    Role::from_raw(role)
}

/// Creates an empty model named `name` (UTF-8, copied).
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_ARGUMENT (not UTF-8). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_model_create(
    name: *const c_char,
    model_out: *mut *mut NyxqModel,
) -> NyxqStatus {
    guard(|| {
        // SAFETY: the caller passes a NUL-terminated string.
        let name = unsafe { ptr::string(name, "name") }?;
        let out = ptr::out(model_out, "model_out")?;
        let model = Model {
            name: name.to_string(),
            description: String::new(),
            tensors: Vec::new(),
        };
        // SAFETY: model_out checked non-NULL.
        unsafe { out.write(handle::register::<NyxqModel>(Mutex::new(model))) };
        Ok(())
    })
}

/// Reads a JSON model description (docs/planning.md, "Describing a model") from `path`.
///
/// The description is checked against the limits of docs/planning.md
/// (at most 65536 tensors, 10000 transformer blocks, 2^30 for `hidden`,
/// `vocab` and `hidden * mlp_expansion`, 2^50 elements per tensor) before
/// anything is generated from it.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_IO (unreadable), NYXQ_ERROR_CONFIG
/// (bad content, a limit exceeded: file, line, column and reason in the
/// message), NYXQ_ERROR_OUT_OF_MEMORY. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_model_load(
    path: *const c_char,
    model_out: *mut *mut NyxqModel,
) -> NyxqStatus {
    guard(|| {
        // SAFETY: the caller passes a NUL-terminated string.
        let path = unsafe { ptr::string(path, "path") }?;
        let out = ptr::out(model_out, "model_out")?;
        let model = Model::load(Path::new(path))?;
        // SAFETY: model_out checked non-NULL.
        unsafe { out.write(handle::register::<NyxqModel>(Mutex::new(model))) };
        Ok(())
    })
}

/// Adds a tensor: `name` (UTF-8, copied, unique in the model), a NyxqRole,
/// `rank` dimensions at `shape` (outermost first), `sensitivity` (< 0 for the
/// role's default; NaN and +infinity are rejected), and optionally its FP32 data (`data_len` floats, exactly
/// the element count, or NULL/0). Data is read only during the call: the error
/// of every format is measured from it then and only the measurements are kept.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (unknown role, bad shape, duplicate name,
/// data_len not the element count, the model already holds 65536 tensors),
/// NYXQ_ERROR_SIZE_OVERFLOW (more than 2^50 elements, or a dimension beyond
/// size_t), NYXQ_ERROR_NON_FINITE (NaN/Inf in data), NYXQ_ERROR_OUT_OF_MEMORY.
/// Thread-safe (calls on one model are serialised).
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_model_add_tensor(
    model: *const NyxqModel,
    name: *const c_char,
    role: i32,
    shape: *const u64,
    rank: usize,
    sensitivity: f64,
    data: *const f32,
    data_len: usize,
) -> NyxqStatus {
    guard(|| {
        let model = handle::get(model)?;
        // SAFETY: the caller passes a NUL-terminated string.
        let name = unsafe { ptr::string(name, "name") }?;
        let role = role_arg(role)?;
        if rank == 0 || rank > crate::tensor::MAX_RANK {
            return Err(Error::invalid(format!("rank {rank} is outside 1..=8")));
        }
        // SAFETY: the caller passes `rank` u64s at shape.
        let dims = unsafe { ptr::slice(shape, rank, "shape") }?;
        let dims: Vec<usize> = dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| Error::overflow("shape dimension")))
            .collect::<Result<_>>()?;
        // SAFETY: the caller passes data_len floats at data (or NULL, 0).
        let data = unsafe { ptr::slice(data, data_len, "data") }?;
        let mut tensor = TensorDesc::new(name, role, &dims)?;
        if sensitivity.is_nan() || sensitivity == f64::INFINITY {
            return Err(Error::invalid(format!(
                "sensitivity {sensitivity} must be finite (or negative for the role's default)"
            )));
        }
        if sensitivity >= 0.0 {
            tensor.sensitivity = Some(sensitivity);
        }
        if !data.is_empty() {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            tensor.measure(data, threads)?;
        }
        let mut model = model.lock();
        if model.tensors.iter().any(|t| t.name == tensor.name) {
            return Err(Error::invalid(format!(
                "tensor '{name}' is already in the model"
            )));
        }
        check_tensor_count(&model.name, model.tensors.len() + 1)?;
        crate::alloc::reserve(&mut model.tensors, 1, "model tensors")?;
        model.tensors.push(tensor);
        Ok(())
    })
}

/// Releases a model. NULL is a no-op. Plans made from it stay valid.
///
/// Errors: NYXQ_ERROR_INVALID_HANDLE. No other call may be using the model.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_model_destroy(model: *mut NyxqModel) -> NyxqStatus {
    guard(|| handle::unregister(model))
}

/// Number of built-in hardware profiles.
///
/// Errors: NYXQ_ERROR_NULL_POINTER. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_hardware_profile_count(count_out: *mut usize) -> NyxqStatus {
    guard(|| {
        let out = ptr::out(count_out, "count_out")?;
        // SAFETY: count_out checked non-NULL.
        unsafe { out.write(Hardware::profile_names().len()) };
        Ok(())
    })
}

/// Fills `*hardware_out` with the built-in profile number `index`
/// (0..nyxq_hardware_profile_count()); its name is in `name`.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_ARGUMENT (index past the end).
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_hardware_profile_at(
    index: usize,
    hardware_out: *mut NyxqHardware,
) -> NyxqStatus {
    guard(|| {
        let out = ptr::out(hardware_out, "hardware_out")?;
        let names = Hardware::profile_names();
        let name = names.get(index).ok_or_else(|| {
            Error::invalid(format!(
                "profile index {index} is past the {} profiles",
                names.len()
            ))
        })?;
        let hw = Hardware::profile(name)?;
        // SAFETY: hardware_out checked non-NULL.
        unsafe { out.write(NyxqHardware::from(&hw)) };
        Ok(())
    })
}

/// Fills `*hardware_out` with the built-in profile named `name`
/// ("intel-iris-xe-7gb", "amd-rx580-8gb", "nvidia-h200-141gb", "cpu-only").
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_ARGUMENT (unknown name). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_hardware_profile(
    name: *const c_char,
    hardware_out: *mut NyxqHardware,
) -> NyxqStatus {
    guard(|| {
        // SAFETY: the caller passes a NUL-terminated string.
        let name = unsafe { ptr::string(name, "name") }?;
        let out = ptr::out(hardware_out, "hardware_out")?;
        let hw = Hardware::profile(name)?;
        // SAFETY: hardware_out checked non-NULL.
        unsafe { out.write(NyxqHardware::from(&hw)) };
        Ok(())
    })
}

/// Reads a hardware profile file (JSON, like the files in config/profiles/).
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_IO, NYXQ_ERROR_CONFIG. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_hardware_load(
    path: *const c_char,
    hardware_out: *mut NyxqHardware,
) -> NyxqStatus {
    guard(|| {
        // SAFETY: the caller passes a NUL-terminated string.
        let path = unsafe { ptr::string(path, "path") }?;
        let out = ptr::out(hardware_out, "hardware_out")?;
        let hw = Hardware::load(Path::new(path))?;
        // SAFETY: hardware_out checked non-NULL.
        unsafe { out.write(NyxqHardware::from(&hw)) };
        Ok(())
    })
}

/// Fills `*hardware_out` with what the context runs on (for the CPU backend:
/// host memory from /proc/meminfo).
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_UNSUPPORTED (memory cannot be read). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_hardware_detect(
    ctx: *const NyxqContext,
    hardware_out: *mut NyxqHardware,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        let out = ptr::out(hardware_out, "hardware_out")?;
        let hw = Hardware::detect(&context)?;
        // SAFETY: hardware_out checked non-NULL.
        unsafe { out.write(NyxqHardware::from(&hw)) };
        Ok(())
    })
}

/// Writes the default planning policy (struct_size set) into *policy_out.
///
/// Errors: NYXQ_ERROR_NULL_POINTER. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_plan_policy_default(policy_out: *mut NyxqPlanPolicy) -> NyxqStatus {
    guard(|| {
        let out = ptr::out(policy_out, "policy_out")?;
        // SAFETY: policy_out checked non-NULL.
        unsafe { out.write(NyxqPlanPolicy::default()) };
        Ok(())
    })
}

fn wrap_plan(plan: Plan) -> Result<*mut NyxqPlan> {
    let c = |s: &str| {
        CString::new(s.replace('\0', " "))
            .map_err(|_| Error::new(ErrorKind::Internal, "NUL in a string"))
    };
    let names = plan
        .entries
        .iter()
        .map(|e| c(&e.name))
        .collect::<Result<_>>()?;
    let reasons = plan
        .entries
        .iter()
        .map(|e| c(&e.reason))
        .collect::<Result<_>>()?;
    Ok(handle::register::<NyxqPlan>(PlanHandle {
        plan,
        names,
        reasons,
    }))
}

/// Plans `model` for `hardware` (NULL: detected from a CPU context, i.e. host
/// memory) under `policy` (NULL: defaults). On success *plan_out receives a
/// plan to release with nyxq_plan_destroy.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (bad policy: struct_size, formats, overrides),
/// NYXQ_ERROR_INFEASIBLE_PLAN (nothing fits: the message gives the shortfall in
/// bytes and the largest shape of the model ladder that fits),
/// NYXQ_ERROR_SIZE_OVERFLOW (the model's byte totals overflow 64 bits).
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_plan_create(
    model: *const NyxqModel,
    hardware: *const NyxqHardware,
    policy: *const NyxqPlanPolicy,
    plan_out: *mut *mut NyxqPlan,
) -> NyxqStatus {
    guard(|| {
        let model = handle::get(model)?;
        let out = ptr::out(plan_out, "plan_out")?;
        // SAFETY: NULL or valid structs of struct_size bytes, per the contract.
        let (hw, policy) = unsafe { plan_inputs(hardware, policy) }?;
        let model = model.lock().clone();
        let plan = Plan::create(&model, &hw, &policy)?;
        let handle = wrap_plan(plan)?;
        // SAFETY: plan_out checked non-NULL.
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Checks whether `model` fits `hardware` under `policy` (NULLs as for
/// nyxq_plan_create) without keeping a plan. When it does not, *result_out
/// gets the shortfall and the largest shape of the built-in model ladder
/// (config/ladder.json) whose plan fits under the same hardware and policy.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (bad policy), NYXQ_ERROR_SIZE_OVERFLOW (the
/// model's byte totals overflow 64 bits). Infeasibility is a result here, not
/// an error. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_plan_feasibility(
    model: *const NyxqModel,
    hardware: *const NyxqHardware,
    policy: *const NyxqPlanPolicy,
    result_out: *mut NyxqPlanFeasibility,
) -> NyxqStatus {
    guard(|| {
        let model = handle::get(model)?;
        let out = ptr::out(result_out, "result_out")?;
        // SAFETY: NULL or valid structs of struct_size bytes, per the contract.
        let (hw, policy) = unsafe { plan_inputs(hardware, policy) }?;
        let model = model.lock().clone();
        let mut result = NyxqPlanFeasibility {
            feasible: 1,
            has_recommendation: 0,
            shortfall_bytes: 0,
            recommended_hidden: 0,
            recommended_layers: 0,
            recommended_vocab: 0,
            recommended_name: [0; 64],
        };
        match Plan::solve(&model, &hw, &policy) {
            Ok(_) => {}
            Err(e) => {
                let ErrorKind::InfeasiblePlan { shortfall } = e.kind() else {
                    return Err(e);
                };
                result.feasible = 0;
                result.shortfall_bytes = shortfall;
                if let Some(r) = crate::plan::Ladder::built_in()?.recommend(&hw, &policy)? {
                    result.has_recommendation = 1;
                    result.recommended_hidden = r.rung.shape.hidden as u64;
                    result.recommended_layers = r.rung.shape.layers() as u64;
                    result.recommended_vocab = r.rung.shape.vocab as u64;
                    copy_to_c_array(&r.rung.name, &mut result.recommended_name);
                }
            }
        }
        // SAFETY: result_out checked non-NULL.
        unsafe { out.write(result) };
        Ok(())
    })
}

/// The hardware and policy C passed (NULL: the host CPU; the defaults).
///
/// # Safety
/// Each pointer is NULL or points to its struct of struct_size bytes; the
/// policy's overrides string is NULL or valid during the call.
unsafe fn plan_inputs(
    hardware: *const NyxqHardware,
    policy: *const NyxqPlanPolicy,
) -> Result<(Hardware, Policy)> {
    let hw = if hardware.is_null() {
        Hardware::host_cpu()?
    } else {
        // SAFETY: per this function's contract.
        let c = unsafe { ptr::options(hardware, size_of::<NyxqHardware>(), "NyxqHardware") }?;
        hardware_from_c(&c)
    };
    // SAFETY: per this function's contract.
    let raw = unsafe { ptr::options(policy, size_of::<NyxqPlanPolicy>(), "NyxqPlanPolicy") }?;
    // SAFETY: per this function's contract.
    let policy = unsafe { raw.into_policy() }?;
    Ok((hw, policy))
}

/// A new plan that fits `new_device_budget` bytes (what the tensors may take
/// on the device, margin and reserve already subtracted) with the fewest
/// tensors changed; entries changed have `changed` = 1 and the summary counts
/// them. The old plan is unchanged.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INFEASIBLE_PLAN (the message gives the shortfall). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_plan_replan(
    plan: *const NyxqPlan,
    new_device_budget: u64,
    plan_out: *mut *mut NyxqPlan,
) -> NyxqStatus {
    guard(|| {
        let plan = handle::get(plan)?;
        let out = ptr::out(plan_out, "plan_out")?;
        let handle = wrap_plan(plan.plan.replan(new_device_budget)?)?;
        // SAFETY: plan_out checked non-NULL.
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Releases a plan. NULL is a no-op. Entry strings become invalid.
///
/// Errors: NYXQ_ERROR_INVALID_HANDLE. No other call may be using the plan.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_plan_destroy(plan: *mut NyxqPlan) -> NyxqStatus {
    guard(|| handle::unregister(plan))
}

/// The plan's totals.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_plan_summary(
    plan: *const NyxqPlan,
    summary_out: *mut NyxqPlanSummary,
) -> NyxqStatus {
    guard(|| {
        let h = handle::get(plan)?;
        let out = ptr::out(summary_out, "summary_out")?;
        let p = &h.plan;
        let summary = NyxqPlanSummary {
            tensor_count: p.entries.len(),
            changed_count: p.changed_count(),
            device_bytes: p.device_bytes,
            host_bytes: p.host_bytes,
            device_budget: p.budget.device,
            host_budget: p.budget.host,
            safety_margin: p.budget.safety_margin,
            activation_reserve: p.budget.activation_reserve,
            fp32_bytes: p.fp32_bytes,
            weighted_error: p.weighted_error,
        };
        // SAFETY: summary_out checked non-NULL.
        unsafe { out.write(summary) };
        Ok(())
    })
}

/// Copies the plan's entries, in model order, into `entries` (room for
/// `entries_len`, at least the tensor count). String pointers stay valid until
/// the plan is destroyed.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_BUFFER_TOO_SMALL (nyxq_last_error_needed_len = tensor count). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_plan_entries(
    plan: *const NyxqPlan,
    entries: *mut NyxqPlanEntry,
    entries_len: usize,
) -> NyxqStatus {
    guard(|| {
        let h = handle::get(plan)?;
        let n = h.plan.entries.len();
        if entries_len < n {
            return Err(Error::buffer_too_small(
                "entries",
                "entries",
                n,
                entries_len,
            ));
        }
        // SAFETY: the caller passes entries_len >= n writable entries.
        let dst = unsafe { ptr::slice_mut(entries, n, "entries") }?;
        for (i, (slot, e)) in dst.iter_mut().zip(&h.plan.entries).enumerate() {
            *slot = NyxqPlanEntry {
                name: h.names[i].as_ptr(),
                role: e.role as i32,
                format: e.format as i32,
                placement: match e.placement {
                    Placement::Device => 0,
                    Placement::Host => 1,
                },
                changed: e.changed.into(),
                weight_bytes: e.weight_bytes,
                bytes: e.bytes,
                snr_db: e.snr_db,
                error_source: e.error_source as i32,
                reason: h.reasons[i].as_ptr(),
            };
        }
        Ok(())
    })
}

/// Strings handed to C, by address, until nyxq_string_destroy.
static STRINGS: Mutex<BTreeMap<usize, CString>> = Mutex::new(BTreeMap::new());

/// Strings handed to C and not yet released.
pub(crate) fn live_strings() -> usize {
    STRINGS.lock().len()
}

pub(crate) fn give_string(text: &str) -> *mut c_char {
    let c = CString::new(text.replace('\0', " ")).unwrap_or_default();
    let p = c.as_ptr() as *mut c_char;
    STRINGS.lock().insert(p as usize, c);
    p
}

/// The plan as text: a table of tensors, totals, notes and every decision's
/// reason. *text_out receives a NUL-terminated string to release with
/// nyxq_string_destroy.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_plan_explain(
    plan: *const NyxqPlan,
    text_out: *mut *mut c_char,
) -> NyxqStatus {
    guard(|| {
        let h = handle::get(plan)?;
        let out = ptr::out(text_out, "text_out")?;
        // SAFETY: text_out checked non-NULL.
        unsafe { out.write(give_string(&h.plan.explain())) };
        Ok(())
    })
}

/// The plan as JSON (docs/planning.md, "Reading a plan"). *json_out receives a
/// NUL-terminated string to release with nyxq_string_destroy.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_plan_to_json(
    plan: *const NyxqPlan,
    json_out: *mut *mut c_char,
) -> NyxqStatus {
    guard(|| {
        let h = handle::get(plan)?;
        let out = ptr::out(json_out, "json_out")?;
        // SAFETY: json_out checked non-NULL.
        unsafe { out.write(give_string(&h.plan.to_json())) };
        Ok(())
    })
}

/// Releases a string nyxq returned (nyxq_plan_explain, nyxq_plan_to_json).
/// NULL is a no-op. A pointer nyxq did not return, or returned and already
/// released, is NYXQ_ERROR_INVALID_ARGUMENT and is not touched.
///
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_string_destroy(text: *mut c_char) -> NyxqStatus {
    guard(|| {
        if text.is_null() {
            return Ok(());
        }
        STRINGS
            .lock()
            .remove(&(text as usize))
            .map(drop)
            .ok_or_else(|| {
                Error::invalid("the string was not returned by nyxq, or was already released")
            })
    })
}
