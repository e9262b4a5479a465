//! Plans through the C ABI: create, check feasibility, replan, read, explain.

use super::guard::guard;
use super::handle::{self, Opaque};
use super::hardware::{NyxqHardware, hardware_from_c};
use super::model::NyxqModel;
use super::plan_policy::NyxqPlanPolicy;
use super::status::NyxqStatus;
use super::strings::NYXQ_NAME_LEN;
use super::strings::give_string;
use super::{copy_to_c_array, ptr};
use crate::error::{Error, ErrorKind, Result};
use crate::plan::{Hardware, Placement, Plan, Policy};
use std::ffi::{CString, c_char};

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
    pub recommended_name: [c_char; NYXQ_NAME_LEN],
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
        let model = model.lock().model.clone();
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
        let model = model.lock().model.clone();
        let mut result = NyxqPlanFeasibility {
            feasible: 1,
            has_recommendation: 0,
            shortfall_bytes: 0,
            recommended_hidden: 0,
            recommended_layers: 0,
            recommended_vocab: 0,
            recommended_name: [0; NYXQ_NAME_LEN],
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
