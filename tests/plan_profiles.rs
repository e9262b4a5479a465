//! Plans for every built-in profile on the Nyx model shapes, with the character
//! each should have; the fallback chain, overrides, infeasibility and the
//! ladder; replanning under shrinking budgets.

use nyxq::config::QuantConfig;
use nyxq::plan::{Hardware, Ladder, Model, Placement, Plan, Policy, Role};
use nyxq::{ErrorKind, Format};
use std::path::Path;

const MODELS: [&str; 5] = [
    "hrm-full",
    "hrm-v1",
    "char-model",
    "memory-safe",
    "ultra-low",
];

fn model(name: &str) -> Model {
    let path = format!("{}/config/models/{name}.json", env!("CARGO_MANIFEST_DIR"));
    Model::load(Path::new(&path)).unwrap()
}

fn hrm_config() -> QuantConfig {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/hrm_config.txt");
    QuantConfig::load(Path::new(path)).unwrap()
}

fn assert_fits(plan: &Plan) {
    assert!(
        plan.device_bytes <= plan.budget.device,
        "{} on {}: device {} > budget {}",
        plan.model_name,
        plan.hardware_name,
        plan.device_bytes,
        plan.budget.device
    );
    assert!(plan.host_bytes <= plan.budget.host);
    let sum: u64 = plan.entries.iter().map(|e| e.bytes).sum();
    assert_eq!(sum, plan.device_bytes + plan.host_bytes);
    for e in &plan.entries {
        assert!(!e.reason.is_empty(), "{} has no reason", e.name);
        if matches!(e.role, Role::Norm | Role::Bias) {
            assert_eq!(e.format, Format::F32, "{} must stay F32", e.name);
        }
        assert!(e.snr_db >= plan.min_snr_db, "{} below threshold", e.name);
    }
}

#[test]
fn every_profile_plans_every_nyx_shape_within_budget() {
    for profile in Hardware::profile_names() {
        let hw = Hardware::profile(profile).unwrap();
        for name in MODELS {
            let m = model(name);
            for training in [false, true] {
                let policy = Policy {
                    training,
                    ..Policy::default()
                };
                let plan = Plan::create(&m, &hw, &policy)
                    .unwrap_or_else(|e| panic!("{name} on {profile}: {e}"));
                assert_fits(&plan);
                let with_config = Plan::create(&m, &hw, &hrm_config().policy(training))
                    .unwrap_or_else(|e| panic!("{name} on {profile} with the config: {e}"));
                assert_fits(&with_config);
            }
        }
    }
}

#[test]
fn rx580_never_chooses_fp16_and_caps_single_allocations() {
    let hw = Hardware::profile("amd-rx580-8gb").unwrap();
    let policy = Policy {
        min_snr_db: 50.0,
        default_format: Some(Format::Q8_0),
        ..Policy::default()
    };
    // 50 dB rules out Q8_0 (45.3 dB estimated); F16 is next on a device with
    // FP16 arithmetic; the RX 580 takes BF16 instead.
    let plan = Plan::create(&model("hrm-full"), &hw, &policy).unwrap();
    assert_fits(&plan);
    assert!(plan.entries.iter().all(|e| e.format != Format::F16));
    assert!(plan.notes.iter().any(|n| n.contains("no FP16 arithmetic")));
    assert!(plan.entries.iter().any(|e| e.format == Format::BF16));
    let h200 = Hardware::profile("nvidia-h200-141gb").unwrap();
    let plan = Plan::create(&model("hrm-full"), &h200, &policy).unwrap();
    assert!(plan.entries.iter().any(|e| e.format == Format::F16));
    // A 5 GiB embedding cannot be one allocation on the RX 580.
    let big = Model::new(
        "big",
        vec![nyxq::plan::TensorDesc::new("embed", Role::Embedding, &[1_400_000, 1024]).unwrap()],
    )
    .unwrap();
    let plan = Plan::create(&big, &hw, &Policy::default()).unwrap();
    let e = &plan.entries[0];
    assert!(e.weight_bytes <= hw.max_allocation_bytes || e.placement == Placement::Host);
    assert!(e.reason.contains("allocation"), "{}", e.reason);
}

#[test]
fn iris_xe_training_fits_with_an_int4_int8_mixture_and_a_margin() {
    let hw = Hardware::profile("intel-iris-xe-7gb").unwrap();
    let plan = Plan::create(&model("hrm-full"), &hw, &hrm_config().policy(true)).unwrap();
    assert_fits(&plan);
    let count = |f| plan.entries.iter().filter(|e| e.format == f).count();
    assert!(
        count(Format::Q4_0) > 0 && count(Format::Q8_0) > 0,
        "{}",
        plan.explain()
    );
    assert!(plan.budget.safety_margin > 0);
    assert!(plan.device_bytes + plan.budget.safety_margin <= hw.device_local_bytes);
    assert_eq!(plan.host_bytes, 0, "{}", plan.explain());
}

#[test]
fn the_fallback_chain_raises_formats_that_miss_the_threshold_and_says_why() {
    let hw = Hardware::profile("nvidia-h200-141gb").unwrap();
    let mut policy = Policy {
        min_snr_db: 30.0,
        default_format: Some(Format::Q4_0),
        ..Policy::default()
    };
    let plan = Plan::create(&model("ultra-low"), &hw, &policy).unwrap();
    let qkv = plan
        .entries
        .iter()
        .find(|e| e.name.ends_with("qkv_proj.weight"))
        .unwrap();
    assert_eq!(qkv.format, Format::Q8_0);
    assert!(
        qkv.reason
            .contains("Q4_0 SNR 21.1 dB < 30.0 dB threshold → Q8_0"),
        "{}",
        qkv.reason
    );
    policy.min_snr_db = 60.0;
    let plan = Plan::create(&model("ultra-low"), &hw, &policy).unwrap();
    assert!(
        plan.entries
            .iter()
            .filter(|e| !matches!(e.role, Role::Norm | Role::Bias))
            .all(|e| e.format == Format::F16)
    );
    policy.min_snr_db = 80.0;
    let plan = Plan::create(&model("ultra-low"), &hw, &policy).unwrap();
    assert!(plan.entries.iter().all(|e| e.format == Format::F32));
}

#[test]
fn overrides_pin_formats_by_name_pattern() {
    let hw = Hardware::profile("nvidia-h200-141gb").unwrap();
    let policy = Policy {
        overrides: Policy::parse_overrides(r"lm_head\..*=q8_0,o_proj=q4_0").unwrap(),
        ..Policy::default()
    };
    let plan = Plan::create(&model("ultra-low"), &hw, &policy).unwrap();
    for e in &plan.entries {
        if e.name.starts_with("lm_head") {
            assert_eq!(e.format, Format::Q8_0);
        } else if e.name.contains("o_proj") {
            assert_eq!(e.format, Format::Q4_0);
            assert!(e.reason.contains("override 'o_proj=q4_0'"));
        } else {
            assert_eq!(e.format, Format::F32);
        }
    }
}

fn tiny_gpu(device_mib: u64, host_mib: u64) -> Hardware {
    let mut hw = Hardware::profile("amd-rx580-8gb").unwrap();
    hw.name = format!("tiny-{device_mib}");
    hw.device_local_bytes = device_mib << 20;
    hw.host_bytes = host_mib << 20;
    hw
}

#[test]
fn offload_goes_to_host_when_even_int4_does_not_fit() {
    let hw = tiny_gpu(100, 4096);
    let plan = Plan::create(&model("hrm-full"), &hw, &Policy::default()).unwrap();
    assert_fits(&plan);
    let emb = &plan.entries[0];
    assert_eq!(emb.placement, Placement::Host, "{}", plan.explain());
    assert!(emb.reason.contains("offloaded to host"), "{}", emb.reason);
}

#[test]
fn infeasible_plans_report_the_shortfall_and_the_largest_fitting_rung() {
    let hw = tiny_gpu(200, 0);
    let policy = Policy {
        training: true,
        ..Policy::default()
    };
    let err = Plan::create(&model("hrm-full"), &hw, &policy).unwrap_err();
    let ErrorKind::InfeasiblePlan { shortfall } = err.kind() else {
        panic!("{err}");
    };
    assert!(shortfall > 0);
    assert!(
        err.message().contains("largest ladder shape that fits"),
        "{}",
        err.message()
    );
    let ladder = Ladder::built_in().unwrap();
    let rec = ladder.recommend(&hw, &policy).unwrap().unwrap();
    assert!(err.message().contains(&rec.rung.name));
    // It is the largest: every larger rung is infeasible.
    let at = ladder
        .rungs
        .iter()
        .position(|r| r.name == rec.rung.name)
        .unwrap();
    for larger in &ladder.rungs[..at] {
        let m = Model::from_transformer(&larger.name, &larger.shape).unwrap();
        assert!(
            Plan::solve(&m, &hw, &policy).is_err(),
            "{} fits too",
            larger.name
        );
    }
    // Nothing fits a device smaller than the ultra-low shape.
    let none = tiny_gpu(8, 0);
    assert!(ladder.recommend(&none, &policy).unwrap().is_none());
    let smallest = ladder.rungs.last().unwrap();
    assert_eq!(
        (
            smallest.shape.hidden,
            smallest.shape.layers(),
            smallest.shape.vocab
        ),
        (256, 2, 10_000)
    );
}

#[test]
fn replan_shrinks_step_by_step_with_the_fewest_changes() {
    let hw = tiny_gpu(4096, 0);
    let policy = Policy {
        allow_host_offload: false,
        ..Policy::default()
    };
    let mut plan = Plan::create(&model("hrm-v1"), &hw, &policy).unwrap();
    let mut budget = plan.device_bytes;
    let mut steps = 0;
    loop {
        budget = budget * 9 / 10;
        let savings = plan.lowering_savings();
        let deficit = plan.device_bytes.saturating_sub(budget);
        let next = match plan.replan(budget) {
            Ok(p) => p,
            Err(e) => {
                assert!(matches!(e.kind(), ErrorKind::InfeasiblePlan { .. }), "{e}");
                assert!(savings.iter().sum::<u64>() < deficit);
                break;
            }
        };
        assert!(next.device_bytes <= budget);
        let mut sorted = savings.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let mut covered = 0;
        let minimal = sorted
            .iter()
            .take_while(|s| {
                let before = covered;
                covered += **s;
                before < deficit
            })
            .count();
        assert_eq!(
            next.changed_count(),
            minimal,
            "step {steps}: budget {budget}"
        );
        assert_eq!(next.changes.len(), minimal);
        plan = next;
        steps += 1;
    }
    assert!(steps >= 3, "the budget shrank only {steps} times");
    // Growing back restores precision.
    let grown = plan.replan(4 << 30).unwrap();
    assert!(grown.weighted_error <= plan.weighted_error);
    assert!(grown.device_bytes <= 4 << 30);
}

#[test]
fn a_hand_written_model_file_plans() {
    let text = r#"{
        "name": "mine",
        "tensors": [
            {"name": "tok", "role": "embedding", "shape": [1000, 64]},
            {"name": "w1", "role": "mlp", "shape": [256, 64], "sensitivity": 4.0},
            {"name": "odd", "role": "other", "shape": [10, 100]},
            {"name": "b1", "role": "bias", "shape": [256]}
        ]
    }"#;
    let m = Model::from_json(text, "mine.json").unwrap();
    let plan = Plan::create(
        &m,
        &Hardware::profile("cpu-only").unwrap(),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(plan.entries.len(), 4);
    let json: serde_json::Value = serde_json::from_str(&plan.to_json()).unwrap();
    assert_eq!(
        json["tensors"][2]["format"], "F32",
        "rows of 100 are not whole blocks"
    );
    assert!(plan.explain().contains("decisions:"));
}
