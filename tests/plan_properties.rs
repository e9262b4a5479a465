//! Property tests: over random models, budgets and policies, a plan never
//! exceeds its budgets, never puts a tensor below the accuracy threshold when a
//! feasible alternative exists, and is deterministic.

use nyxq::format::{ALL_FORMATS, QUANTIZED_FORMATS};
use nyxq::plan::{Hardware, Model, Plan, Policy, Role, TensorDesc};
use nyxq::{ErrorKind, Format};
use proptest::prelude::*;

const ROLES: [Role; 7] = [
    Role::Embedding,
    Role::Attention,
    Role::Mlp,
    Role::Output,
    Role::Norm,
    Role::Bias,
    Role::Other,
];

fn arb_model() -> impl Strategy<Value = Model> {
    prop::collection::vec(
        (
            0..7usize,
            1..512usize,
            1..64usize,
            prop::option::of(0.0..8.0f64),
        ),
        1..60,
    )
    .prop_map(|specs| {
        let tensors = specs
            .into_iter()
            .enumerate()
            .map(|(i, (role, rows, blocks, sens))| {
                let role = ROLES[role];
                let cols = if i % 7 == 3 {
                    blocks * 32 + 1
                } else {
                    blocks * 32
                };
                let mut t = TensorDesc::new(&format!("t{i}"), role, &[rows, cols]).unwrap();
                t.sensitivity = sens;
                t
            })
            .collect();
        Model::new("random", tensors).unwrap()
    })
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    (
        1u32..1 << ALL_FORMATS.len(),
        5.0..70.0f64,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(mask, snr, training, offload, prefer_device, adaptive)| {
            let mut p = Policy {
                min_snr_db: snr,
                training,
                allow_host_offload: offload,
                prefer_device,
                adaptive,
                ..Policy::default()
            };
            p.set_allowed_mask(mask).unwrap();
            p
        })
}

fn hardware(device_kib: u64, host_kib: u64, fp16: bool) -> Hardware {
    let mut hw = Hardware::profile("amd-rx580-8gb").unwrap();
    hw.device_local_bytes = device_kib << 10;
    hw.host_bytes = host_kib << 10;
    hw.max_allocation_bytes = 0;
    hw.fp16_arithmetic = fp16;
    hw
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn plans_fit_meet_the_threshold_and_are_deterministic(
        model in arb_model(),
        policy in arb_policy(),
        device_kib in 1u64..200_000,
        host_kib in 0u64..100_000,
        fp16 in any::<bool>(),
    ) {
        let hw = hardware(device_kib, host_kib, fp16);
        match Plan::solve(&model, &hw, &policy) {
            Ok(plan) => {
                prop_assert!(plan.device_bytes <= plan.budget.device);
                prop_assert!(plan.host_bytes <= plan.budget.host);
                for (e, t) in plan.entries.iter().zip(&model.tensors) {
                    // Below the threshold only when no usable allowed format
                    // meets it (F32 is not in the chain without fallback_to_fp32).
                    if e.snr_db < policy.min_snr_db {
                        prop_assert!(!policy.fallback_to_fp32, "{} {:?} {}", e.name, e.format, e.snr_db);
                        for f in QUANTIZED_FORMATS {
                            let usable = policy.allows(f) && t.fits_blocks(f) && (f != Format::F16 || fp16);
                            prop_assert!(!usable || nyxq::plan::estimated_snr_db(f, t.role) < policy.min_snr_db,
                                "{} keeps {:?} below threshold though {:?} meets it", e.name, e.format, f);
                        }
                    }
                    prop_assert!(e.format == Format::F32 || policy.allows(e.format));
                    if !fp16 { prop_assert!(e.format != Format::F16); }
                }
                let again = Plan::solve(&model, &hw, &policy).unwrap();
                prop_assert_eq!(&plan.entries, &again.entries);
                // Replanning to a random smaller budget fits it or says by how much it cannot.
                let target = plan.device_bytes / 2;
                match plan.replan(target) {
                    Ok(p) => prop_assert!(p.device_bytes <= target && p.host_bytes <= p.budget.host),
                    Err(e) => {
                        let short = matches!(e.kind(), ErrorKind::InfeasiblePlan { shortfall } if shortfall > 0);
                        prop_assert!(short, "{}", e);
                    }
                }
            }
            Err(e) => {
                let is_shortfall = matches!(e.kind(), ErrorKind::InfeasiblePlan { shortfall } if shortfall > 0);
                prop_assert!(is_shortfall, "{}", e);
                // Infeasible means even the smallest admissible formats overflow
                // the device when nothing may be offloaded.
                if policy.allow_host_offload && host_kib > 0 { return Ok(()); }
                let min_bytes: u64 = model.tensors.iter().map(|t| {
                    let extra = |f: Format| policy.training_extra(t.numel(), f != Format::F32);
                    let mut best = t.bytes_in(Format::F32).unwrap() + extra(Format::F32);
                    if !t.role.keeps_f32() && policy.adaptive {
                        for f in QUANTIZED_FORMATS {
                            let ok = policy.allows(f) && (f != Format::F16 || fp16)
                                && nyxq::plan::estimated_snr_db(f, t.role) >= policy.min_snr_db;
                            if let (true, Some(b)) = (ok, t.bytes_in(f)) { best = best.min(b + extra(f)); }
                        }
                    }
                    best
                }).sum();
                prop_assert!(!policy.adaptive || min_bytes > plan_budget(&hw, &policy, &model));
            }
        }
    }
}

/// The device budget the planner uses (recomputed for the infeasibility check).
fn plan_budget(hw: &Hardware, policy: &Policy, model: &Model) -> u64 {
    let avail = hw.device_available();
    let fp32: u64 = model
        .tensors
        .iter()
        .map(|t| 4 * t.numel() + policy.training_extra(t.numel(), false))
        .sum();
    let mut b = avail - policy.safety_margin(avail) - policy.activation_reserve(avail);
    if policy.max_fraction_of_fp32 < 1.0 {
        b = b.min((fp32 as f64 * policy.max_fraction_of_fp32) as u64);
    }
    b
}
