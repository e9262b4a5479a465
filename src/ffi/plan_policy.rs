//! Planning policies through the C ABI: NyxqPlanPolicy and its conversion.

use super::guard::guard;
use super::model::NYXQ_ROLE_COUNT;
use super::status::NyxqStatus;
use super::{enum_value, ptr};
use crate::error::Result;
use crate::format::Format;
use crate::plan::{OptimizerState, Policy};
use std::ffi::c_char;

/// How optimizer state is stored in training (NyxqPlanPolicy.optimizer_state).
#[repr(i32)]
pub enum NyxqOptimizerState {
    /// Adam moments in FP32: 8 bytes per parameter (default).
    NyxqOptimizerFp32 = 0,
    /// Adam moments in 8 bits with an FP32 scale per 256 values.
    NyxqOptimizerBlockwise8 = 1,
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
    /// Allowed formats: bit (1 << NyxqFormat). Default F32|F16|BF16|Q8_0|Q5_0|Q4_0.
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
    pub role_formats: [i32; NYXQ_ROLE_COUNT],
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
    pub(crate) unsafe fn into_policy(self) -> Result<Policy> {
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

/// The NyxqPlanPolicy C receives for `p` (overrides NULL).
pub(crate) fn policy_to_c(p: &Policy) -> NyxqPlanPolicy {
    NyxqPlanPolicy::from_policy(p)
}

// Layouts the C++ tests assert too (cpp_tests/test_plan.cpp).
const _: () = assert!(std::mem::offset_of!(NyxqPlanPolicy, struct_size) == 0);

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
