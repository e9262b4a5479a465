//! The device and host budgets: what the tensors may take once the safety
//! margin, the activation reserve and the policy's caps are set aside.

use super::hardware::Hardware;
use super::model::Model;
use super::policy::Policy;

/// How the device budget was arrived at.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// What the hardware reports the process may use.
    pub device_available: u64,
    pub safety_margin: u64,
    pub activation_reserve: u64,
    /// A cap from the policy (memory_threshold_mb, memory_reduction_target); 0 = none.
    pub policy_cap: u64,
    /// What the tensors may take on the device.
    pub device: u64,
    /// What the tensors may take in host memory.
    pub host: u64,
}

impl Budget {
    /// Works out the budget for `model` on `hw` under `policy`.
    pub(super) fn new(hw: &Hardware, policy: &Policy, model: &Model) -> Budget {
        let fp32_weights: u64 = model.tensors.iter().map(|t| 4 * t.numel()).sum();
        let quantized_extras: u64 = model
            .tensors
            .iter()
            .map(|t| policy.training_extra(t.numel(), true))
            .sum();
        let available = hw.device_available();
        let margin = policy.safety_margin(available);
        let reserve = policy.activation_reserve(available);
        let mut device = available.saturating_sub(margin).saturating_sub(reserve);
        let mut cap = 0;
        if policy.device_cap_bytes > 0 {
            cap = policy.device_cap_bytes;
        }
        if policy.max_fraction_of_fp32 < 1.0 {
            let by_fraction =
                (fp32_weights as f64 * policy.max_fraction_of_fp32) as u64 + quantized_extras;
            cap = if cap == 0 {
                by_fraction
            } else {
                cap.min(by_fraction)
            };
        }
        if cap > 0 {
            device = device.min(cap);
        }
        Budget {
            device_available: available,
            safety_margin: margin,
            activation_reserve: reserve,
            policy_cap: cap,
            device,
            host: if policy.allow_host_offload && !hw.cpu_only {
                hw.host_bytes
            } else {
                0
            },
        }
    }
}
