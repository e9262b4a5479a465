//! A model's first plan: prepare every tensor, fit the budget, assemble.

use super::budget::Budget;
use super::hardware::Hardware;
use super::model::Model;
use super::policy::Policy;
use super::prepare::{Prepared, prepare};
use super::sizes::human_bytes;
use super::solver::Solver;
use super::types::Plan;
use crate::error::{Error, ErrorKind, Result};
use crate::format::ALL_FORMATS;
use std::sync::Arc;

/// Bytes per element of the largest candidate a tensor can have: F32 weights,
/// F32 gradients, FP32 Adam moments and an FP32 master copy (4 + 4 + 8 + 4).
const MAX_BYTES_PER_ELEMENT: u64 = 20;

/// Ok when every byte total the planner forms for `model` fits in 64 bits:
/// the sum over all tensors of the largest candidate is computed with checked
/// arithmetic, so no later sum can wrap around.
fn check_total_size(model: &Model) -> Result<()> {
    model
        .tensors
        .iter()
        .try_fold(0u64, |total, t| {
            t.numel()
                .checked_mul(MAX_BYTES_PER_ELEMENT)
                .and_then(|bytes| total.checked_add(bytes))
        })
        .map(|_| ())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::SizeOverflow,
                format!(
                    "model '{}': its {} tensors hold {} elements in all; their sizes in bytes overflow 64-bit arithmetic",
                    model.name,
                    model.tensors.len(),
                    model
                        .tensors
                        .iter()
                        .map(|t| u128::from(t.numel()))
                        .sum::<u128>()
                ),
            )
        })
}

impl Plan {
    /// Plans without consulting the ladder when nothing fits.
    pub fn solve(model: &Model, hw: &Hardware, policy: &Policy) -> Result<Plan> {
        policy.check()?;
        hw.check()?;
        model.check()?;
        check_total_size(model)?;
        let state: Vec<Prepared> = model
            .tensors
            .iter()
            .map(|t| prepare(t, hw, policy))
            .collect::<Result<_>>()?;
        let fp32_bytes: u64 = model
            .tensors
            .iter()
            .map(|t| 4 * t.numel() + policy.training_extra(t.numel(), false))
            .sum();
        let budget = Budget::new(hw, policy, model);
        let mut notes = policy.notes.clone();
        notes.extend(
            ALL_FORMATS
                .iter()
                .filter(|f| policy.allows(**f))
                .filter_map(|&f| {
                    hw.device_supports(f)
                        .err()
                        .map(|w| format!("{} not used: {w}", f.name()))
                }),
        );
        let state = Arc::new(state);
        let mut s = Solver::new(&state, &budget);
        if policy.prefer_device {
            s.reduce();
            if s.device_over() > 0 {
                s.offload(None);
            }
        } else {
            s.offload(None);
            s.reduce();
        }
        s.raise(None, None);
        let shortfall = s.shortfall();
        if shortfall > 0 {
            return Err(Error::new(
                ErrorKind::InfeasiblePlan { shortfall },
                format!(
                    "model '{}' does not fit {}: {} short (device budget {}, host budget {}, \
                     even with every tensor at its lowest format within {:.1} dB{})",
                    model.name,
                    hw.name,
                    human_bytes(shortfall),
                    human_bytes(budget.device),
                    human_bytes(budget.host),
                    policy.min_snr_db,
                    if budget.host > 0 {
                        " and offloaded"
                    } else {
                        ""
                    }
                ),
            ));
        }
        if s.host > 0 {
            notes.push(format!("{} offloaded to host memory", human_bytes(s.host)));
        }
        let why = s.reasons();
        let (pos, place) = (s.pos, s.place);
        Ok(Plan::assemble(
            model.name.clone(),
            hw.name.clone(),
            policy,
            state,
            budget,
            fp32_bytes,
            pos,
            place,
            why,
            notes,
            Vec::new(),
            None,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::{Role, TensorDesc};

    #[test]
    fn greedy_lowers_the_cheapest_error_per_byte_first() {
        // Two equal tensors but one twice as sensitive: under pressure the
        // less sensitive one is lowered first.
        let mut a = TensorDesc::new("a", Role::Mlp, &[1024, 1024]).unwrap();
        let mut b = TensorDesc::new("b", Role::Mlp, &[1024, 1024]).unwrap();
        a.sensitivity = Some(1.0);
        b.sensitivity = Some(2.0);
        let model = Model::new("m", vec![a, b]).unwrap();
        let mut hw = Hardware::profile("cpu-only").unwrap();
        hw.device_local_bytes = 7 << 20;
        let policy = Policy {
            safety_margin_bytes: Some(0),
            ..Policy::default()
        };
        let plan = Plan::solve(&model, &hw, &policy).unwrap();
        assert!(plan.device_bytes <= 7 << 20);
        let (fa, fb) = (plan.entries[0].format, plan.entries[1].format);
        assert!(fa.bits_per_weight() < fb.bits_per_weight(), "{fa:?} {fb:?}");
        assert_eq!(
            plan.entries[0].reason,
            "F32: the most accurate allowed format; lowered F32 → F16 (SNR 73.7 dB) to fit the \
             device budget"
        );
        assert_eq!(
            plan.entries[1].reason,
            "F32: the most accurate allowed format"
        );
    }

    #[test]
    fn the_fp32_yardstick_counts_weights_and_training_state() {
        let model = Model::new(
            "m",
            vec![
                TensorDesc::new("a", Role::Mlp, &[64, 32]).unwrap(),
                TensorDesc::new("b", Role::Attention, &[32, 32]).unwrap(),
            ],
        )
        .unwrap();
        let hw = Hardware::profile("nvidia-h200-141gb").unwrap();
        let plan = Plan::solve(&model, &hw, &Policy::default()).unwrap();
        assert_eq!(plan.fp32_bytes, 4 * (64 * 32 + 32 * 32));
        // Nothing on the host: no note says otherwise.
        assert_eq!(plan.host_bytes, 0);
        assert!(
            !plan.notes.iter().any(|n| n.contains("offloaded")),
            "{:?}",
            plan.notes
        );
        // Training: FP32 weights with an FP32 gradient and FP32 Adam moments
        // (no master copy: the weights are FP32), 16 bytes a parameter.
        let policy = Policy {
            training: true,
            optimizer_state: crate::plan::OptimizerState::Fp32,
            gradient_format: crate::format::Format::F32,
            master_weights: true,
            ..Policy::default()
        };
        let plan = Plan::solve(&model, &hw, &policy).unwrap();
        assert_eq!(plan.fp32_bytes, 16 * (64 * 32 + 32 * 32));
    }

    #[test]
    fn byte_totals_that_overflow_64_bits_are_an_error_not_a_wrap() {
        // 4096 tensors of 2^50 elements, each within the per-tensor limit:
        // 2^62 elements, 2^64 bytes in F32.
        let tensors = (0..4096)
            .map(|i| TensorDesc::new(&format!("t{i}"), Role::Mlp, &[1 << 20, 1 << 30]).unwrap())
            .collect();
        let model = Model::new("huge", tensors).unwrap();
        let hw = Hardware::profile("nvidia-h200-141gb").unwrap();
        let e = Plan::solve(&model, &hw, &Policy::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SizeOverflow, "{}", e.message());
        assert!(e.message().contains("overflow 64-bit"), "{}", e.message());
        assert!(
            e.message().contains(&(1u128 << 62).to_string()),
            "{}",
            e.message()
        );
    }
}
