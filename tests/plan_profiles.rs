//! Plans for every built-in profile on the Nyx model shapes, with the character
//! each should have; the fallback chain, overrides, infeasibility and the
//! ladder; replanning under shrinking budgets.

use nyxq::config::QuantConfig;
use nyxq::device_report;
use nyxq::plan::{Hardware, Ladder, Model, Placement, Plan, Policy, Role, TensorDesc};
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

/// A config that names IQ4_NL (here for the MLP) makes it the chain's
/// 4.5-bit step: of the two same-size INT4 formats the planner keeps the
/// more accurate one, so no tensor is left in Q4_0.
#[test]
fn a_config_that_names_iq4_nl_plans_it_where_it_planned_int4() {
    let hw = Hardware::profile("intel-iris-xe-7gb").unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/hrm_config.txt");
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("\nmlp_precision = INT4\n", "\nmlp_precision = IQ4_NL\n");
    assert!(text.contains("\nmlp_precision = IQ4_NL\n"));
    let cfg = QuantConfig::parse(&text, "hrm_iq4_nl.txt").unwrap();
    let plan = Plan::create(&model("hrm-full"), &hw, &cfg.policy(true)).unwrap();
    assert_fits(&plan);
    let count = |f| plan.entries.iter().filter(|e| e.format == f).count();
    assert_eq!(count(Format::Q4_0), 0, "{}", plan.explain());
    assert!(count(Format::IQ4_NL) > 0, "{}", plan.explain());
    for e in plan.entries.iter().filter(|e| e.role == Role::Mlp) {
        assert_eq!(e.format, Format::IQ4_NL, "{}: {}", e.name, e.reason);
    }
}

#[test]
fn the_fallback_chain_raises_formats_that_miss_the_threshold_and_says_why() {
    let hw = Hardware::profile("nvidia-h200-141gb").unwrap();
    let mut policy = Policy {
        min_snr_db: 30.0,
        default_format: Some(Format::Q4_0),
        ..Policy::default()
    };
    // INT4 → Q5_K → Q6_K (the rows are whole super-blocks, and the GPU has
    // the K-quants' kernels): each step up the chain says why.
    let qkv_of = |plan: &Plan| {
        plan.entries
            .iter()
            .find(|e| e.name.ends_with("qkv_proj.weight"))
            .unwrap()
            .clone()
    };
    let qkv = qkv_of(&Plan::create(&model("ultra-low"), &hw, &policy).unwrap());
    assert_eq!(qkv.format, Format::Q6_K);
    for step in [
        "Q4_0 SNR 21.1 dB < 30.0 dB threshold → Q5_K",
        "Q5_K SNR 28.2 dB < 30.0 dB threshold → Q6_K",
    ] {
        assert!(qkv.reason.contains(step), "{}", qkv.reason);
    }
    policy.min_snr_db = 25.0;
    let qkv = qkv_of(&Plan::create(&model("ultra-low"), &hw, &policy).unwrap());
    assert_eq!(qkv.format, Format::Q5_K);
    assert!(
        qkv.reason
            .contains("Q4_0 SNR 21.1 dB < 25.0 dB threshold → Q5_K"),
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

/// The chain climbs INT4 → Q5_K → Q6_K → INT8 for a tensor whose rows are
/// whole super-blocks of 256 and INT4 → Q5_0 → INT8 for one whose rows are
/// not (384), on the CPU and on a GPU (which has the K-quants' Vulkan
/// kernels).
#[test]
fn the_chain_takes_the_k_quants_where_rows_are_whole_super_blocks() {
    let model = Model::new(
        "m",
        vec![
            TensorDesc::new("wide", Role::Mlp, &[256, 512]).unwrap(),
            TensorDesc::new("narrow", Role::Mlp, &[256, 384]).unwrap(),
        ],
    )
    .unwrap();
    let plan_at = |hardware: &str, min_snr_db: f64| {
        let policy = Policy {
            min_snr_db,
            default_format: Some(Format::Q4_0),
            ..Policy::default()
        };
        Plan::create(&model, &Hardware::profile(hardware).unwrap(), &policy).unwrap()
    };
    let formats = |plan: &Plan| (plan.entries[0].format, plan.entries[1].format);
    let plan = plan_at("cpu-only", 25.0);
    assert_eq!(formats(&plan), (Format::Q5_K, Format::Q5_0));
    assert!(
        plan.entries[0]
            .reason
            .contains("Q4_0 SNR 21.1 dB < 25.0 dB threshold → Q5_K"),
        "{}",
        plan.entries[0].reason
    );
    let plan = plan_at("cpu-only", 30.0);
    assert_eq!(formats(&plan), (Format::Q6_K, Format::Q8_0));
    for step in [
        "Q4_0 SNR 21.1 dB < 30.0 dB threshold → Q5_K",
        "Q5_K SNR 28.2 dB < 30.0 dB threshold → Q6_K",
    ] {
        assert!(
            plan.entries[0].reason.contains(step),
            "{}",
            plan.entries[0].reason
        );
    }
    assert_eq!(
        formats(&plan_at("cpu-only", 40.0)),
        (Format::Q8_0, Format::Q8_0)
    );
    assert_eq!(
        formats(&plan_at("nvidia-h200-141gb", 25.0)),
        (Format::Q5_K, Format::Q5_0)
    );
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

/// The facts every config/devices/*.json records for its driver, each with
/// its source or, when no source was found, `"value": null` and what was
/// looked for under `"unknown"`.
const DEVICE_FACTS: [&str; 21] = [
    "api_version",
    "max_storage_buffer_range",
    "max_memory_allocation_size",
    "max_compute_work_group_count",
    "max_compute_work_group_size",
    "max_compute_work_group_invocations",
    "max_compute_shared_memory_size",
    "subgroup_size",
    "subgroup_size_range",
    "subgroup_operations",
    "shader_float16",
    "shader_int8",
    "storage_buffer_16bit_access",
    "storage_buffer_8bit_access",
    "shader_denorm_preserve_float16",
    "shader_rounding_mode_rte_float16",
    "shader_integer_dot_product",
    "integer_dot_4x8_packed_signed_accelerated",
    "cooperative_matrix",
    "memory_heaps",
    "memory_budget",
];

/// What a known value must look like for the facts an emulated device is
/// built from; the others (subgroup operations, cooperative matrix, memory
/// heaps) are descriptions.
#[derive(Clone, Copy)]
enum Shape {
    /// "1.3", "1.4".
    ApiVersion,
    Bytes,
    /// [x, y, z].
    Triple,
    /// [min, max].
    Range,
    Flag,
}

const FACT_SHAPES: [(&str, Shape); 17] = [
    ("api_version", Shape::ApiVersion),
    ("max_storage_buffer_range", Shape::Bytes),
    ("max_memory_allocation_size", Shape::Bytes),
    ("max_compute_work_group_count", Shape::Triple),
    ("max_compute_work_group_size", Shape::Triple),
    ("max_compute_work_group_invocations", Shape::Bytes),
    ("max_compute_shared_memory_size", Shape::Bytes),
    ("subgroup_size", Shape::Bytes),
    ("subgroup_size_range", Shape::Range),
    ("shader_float16", Shape::Flag),
    ("shader_int8", Shape::Flag),
    ("storage_buffer_16bit_access", Shape::Flag),
    ("storage_buffer_8bit_access", Shape::Flag),
    ("shader_denorm_preserve_float16", Shape::Flag),
    ("shader_rounding_mode_rte_float16", Shape::Flag),
    ("shader_integer_dot_product", Shape::Flag),
    ("integer_dot_4x8_packed_signed_accelerated", Shape::Flag),
];

fn has_shape(value: &serde_json::Value, shape: Shape) -> bool {
    let counts = |n: usize| {
        value
            .as_array()
            .is_some_and(|a| a.len() == n && a.iter().all(|v| v.as_u64().is_some_and(|x| x > 0)))
    };
    match shape {
        Shape::ApiVersion => value
            .as_str()
            .and_then(|v| v.strip_prefix("1."))
            .is_some_and(|minor| minor.parse::<u8>().is_ok()),
        Shape::Bytes => value.as_u64().is_some_and(|v| v > 0),
        Shape::Triple => counts(3),
        Shape::Range => counts(2) && value[0].as_u64() <= value[1].as_u64(),
        Shape::Flag => value.is_boolean(),
    }
}

/// One config/devices/<device>--<driver>.json.
struct DriverReport {
    file: String,
    profile: String,
    reference: bool,
    facts: serde_json::Map<String, serde_json::Value>,
}

impl DriverReport {
    /// A fact's value; None where it is unknown.
    fn value(&self, fact: &str) -> Option<&serde_json::Value> {
        Some(&self.facts[fact]["value"]).filter(|v| !v.is_null())
    }

    fn flag(&self, fact: &str) -> Option<bool> {
        self.value(fact).map(|v| {
            v.as_bool()
                .unwrap_or_else(|| panic!("{}: {fact} is not true, false or null", self.file))
        })
    }
}

fn driver_reports() -> Vec<DriverReport> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/devices");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(path).unwrap())
                    .unwrap_or_else(|e| panic!("{file}: {e}"));
            let text = |key: &str| {
                json[key]
                    .as_str()
                    .filter(|s| !s.trim().is_empty())
                    .unwrap_or_else(|| panic!("{file}: \"{key}\" must be a non-empty string"))
                    .to_string()
            };
            text("device");
            text("driver");
            DriverReport {
                profile: text("profile"),
                reference: json["reference"]
                    .as_bool()
                    .unwrap_or_else(|| panic!("{file}: \"reference\" must be true or false")),
                facts: json["facts"]
                    .as_object()
                    .unwrap_or_else(|| panic!("{file}: no \"facts\" object"))
                    .clone(),
                file,
            }
        })
        .collect()
}

#[test]
fn every_device_fact_has_a_source_or_says_what_was_looked_for() {
    let reports = driver_reports();
    assert!(
        reports.len() >= 2,
        "config/devices/ holds the driver reports"
    );
    for r in &reports {
        let names: Vec<&str> = r.facts.keys().map(String::as_str).collect();
        let mut expected = DEVICE_FACTS.to_vec();
        expected.sort_unstable();
        let mut got = names.clone();
        got.sort_unstable();
        assert_eq!(
            got, expected,
            "{}: the facts are exactly DEVICE_FACTS",
            r.file
        );
        for (name, fact) in &r.facts {
            let non_empty = |key: &str| fact[key].as_str().is_some_and(|s| !s.trim().is_empty());
            if fact["value"].is_null() {
                assert!(
                    non_empty("unknown"),
                    "{}: {name} is unknown but does not say what was looked for",
                    r.file
                );
            } else {
                assert!(non_empty("source"), "{}: {name} has no source", r.file);
                assert!(fact.get("unknown").is_none(), "{}: {name} is known", r.file);
            }
        }
        for (name, shape) in FACT_SHAPES {
            if let Some(value) = r.value(name) {
                assert!(
                    has_shape(value, shape),
                    "{}: {name} = {value} is not a concrete value of its kind",
                    r.file
                );
            }
        }
        // "amd-rx580-8gb" describes the device "amd-rx580".
        let device = r
            .profile
            .rsplit_once('-')
            .map_or(r.profile.as_str(), |(d, _)| d);
        assert!(
            r.file.starts_with(&format!("{device}--")),
            "{}: files are named <device>--<driver>.json after their profile's device",
            r.file
        );
    }
}

/// The rules that tie a built-in profile to its drivers' reports:
/// - each profile with reports has exactly one reference driver, and its
///   `sources` name every report file;
/// - a feature flag is true exactly when the reference driver reports the
///   feature and no other driver reports it missing (an unknown fact does not
///   veto: nyxq detects the device at run time, and its self-test disables any
///   variant that disagrees with the CPU): `fp16_arithmetic` from
///   shaderFloat16, `storage_16bit`/`storage_8bit` from the storage features,
///   `int8_dot` from shaderIntegerDotProduct together with the accelerated
///   4×8-bit packed signed property;
/// - `max_allocation_bytes` is the least reported maxMemoryAllocationSize;
///   where a driver's value is unknown, the profile must still cap allocations
///   (not 0).
#[test]
fn built_in_profiles_follow_their_drivers_reports() {
    let reports = driver_reports();
    let mut checked = 0;
    for profile in Hardware::profile_names() {
        let hw = Hardware::profile(profile).unwrap();
        let mine: Vec<&DriverReport> = reports.iter().filter(|r| r.profile == profile).collect();
        for r in &reports {
            assert!(
                Hardware::profile_names().contains(&r.profile.as_str()),
                "{}: profile '{}' is not built in",
                r.file,
                r.profile
            );
        }
        if mine.is_empty() {
            continue;
        }
        checked += 1;
        let reference: Vec<_> = mine.iter().filter(|r| r.reference).collect();
        assert_eq!(
            reference.len(),
            1,
            "{profile}: exactly one reference driver"
        );
        let reference = reference[0];
        let sources = hw.sources.join("\n");
        for r in &mine {
            let stem = r.file.trim_end_matches(".json");
            assert!(
                sources.contains(stem),
                "{profile}: sources do not cite {}",
                r.file
            );
        }

        let follows = |facts: &[&str]| {
            let reported = |r: &DriverReport| -> Option<bool> {
                facts
                    .iter()
                    .map(|f| r.flag(f))
                    .try_fold(true, |all, v| v.map(|v| all && v))
            };
            reported(reference) == Some(true) && mine.iter().all(|r| reported(r) != Some(false))
        };
        let flags = [
            (
                "fp16_arithmetic",
                hw.fp16_arithmetic,
                vec!["shader_float16"],
            ),
            (
                "storage_16bit",
                hw.storage_16bit,
                vec!["storage_buffer_16bit_access"],
            ),
            (
                "storage_8bit",
                hw.storage_8bit,
                vec!["storage_buffer_8bit_access"],
            ),
            (
                "int8_dot",
                hw.int8_dot,
                vec![
                    "shader_integer_dot_product",
                    "integer_dot_4x8_packed_signed_accelerated",
                ],
            ),
        ];
        for (name, value, facts) in flags {
            assert_eq!(
                value,
                follows(&facts),
                "{profile}: {name} does not follow {facts:?}"
            );
        }

        for r in &mine {
            match r.value("max_memory_allocation_size") {
                None => assert!(
                    hw.max_allocation_bytes > 0,
                    "{profile}: {} does not know the allocation limit, so the profile must cap it",
                    r.file
                ),
                Some(v) => {
                    let limit = v.as_u64().unwrap_or_else(|| {
                        panic!("{}: max_memory_allocation_size is bytes or null", r.file)
                    });
                    assert!(
                        hw.max_allocation_bytes > 0 && hw.max_allocation_bytes <= limit,
                        "{profile}: max_allocation_bytes {} vs {limit} in {}",
                        hw.max_allocation_bytes,
                        r.file
                    );
                }
            }
        }
        let least_known = mine
            .iter()
            .filter_map(|r| r.value("max_memory_allocation_size")?.as_u64())
            .min();
        assert_eq!(
            Some(hw.max_allocation_bytes),
            least_known,
            "{profile}: max_allocation_bytes is the least limit its drivers report"
        );
    }
    assert!(checked >= 2, "the Iris Xe and RX 580 profiles have reports");
}

#[test]
fn the_built_in_reports_are_the_files_in_config_devices() {
    let files: Vec<String> = driver_reports()
        .iter()
        .map(|r| r.file.trim_end_matches(".json").to_string())
        .collect();
    let mut built_in = device_report::report_names();
    built_in.sort();
    assert_eq!(
        built_in, files,
        "src/device_report.rs BUILT_IN lists every report"
    );
}

/// A report's planning facts (what `nyxq plan --hardware <report>` plans
/// with, and what `Context::hardware` reads from the device it emulates):
/// each flag is the report's fact where it knows it (`int8_dot` needs both
/// integer-dot facts), the profile's where it does not, and the sources
/// say which facts came from the profile; the memory is the profile's.
#[test]
fn a_reports_planning_facts_are_its_own_and_its_profiles_memory() {
    for r in driver_reports() {
        let name = r.file.trim_end_matches(".json");
        let hw = device_report::load_hardware(name).unwrap();
        let profile = Hardware::profile(&r.profile).unwrap();
        assert_eq!(hw.name, name);
        let from_profile = hw
            .sources
            .iter()
            .find(|s| s.starts_with("unknown in the report"))
            .cloned()
            .unwrap_or_default();
        let flags = [
            (
                "fp16_arithmetic",
                hw.fp16_arithmetic,
                profile.fp16_arithmetic,
                vec!["shader_float16"],
            ),
            (
                "storage_16bit",
                hw.storage_16bit,
                profile.storage_16bit,
                vec!["storage_buffer_16bit_access"],
            ),
            (
                "storage_8bit",
                hw.storage_8bit,
                profile.storage_8bit,
                vec!["storage_buffer_8bit_access"],
            ),
            (
                "int8_dot",
                hw.int8_dot,
                profile.int8_dot,
                vec![
                    "shader_integer_dot_product",
                    "integer_dot_4x8_packed_signed_accelerated",
                ],
            ),
        ];
        for (field, value, profile_value, facts) in flags {
            let known: Vec<Option<bool>> = facts.iter().map(|f| r.flag(f)).collect();
            let expected = if known.contains(&Some(false)) {
                false
            } else if known.contains(&None) {
                assert!(
                    from_profile.contains(field),
                    "{name}: {field} is unknown: {from_profile}"
                );
                profile_value
            } else {
                true
            };
            assert_eq!(value, expected, "{name}: {field} from {facts:?}");
        }
        match r
            .value("max_memory_allocation_size")
            .and_then(|v| v.as_u64())
        {
            Some(limit) => assert_eq!(hw.max_allocation_bytes, limit, "{name}"),
            None => {
                assert_eq!(
                    hw.max_allocation_bytes, profile.max_allocation_bytes,
                    "{name}"
                );
                assert!(from_profile.contains("max_allocation_bytes"), "{name}");
            }
        }
        assert_eq!(hw.device_local_bytes, profile.device_local_bytes, "{name}");
        assert_eq!(hw.host_bytes, profile.host_bytes, "{name}");
        assert_eq!(hw.unified_memory, profile.unified_memory, "{name}");
        assert!(
            hw.description.contains(" with "),
            "{name}: {}",
            hw.description
        );
    }
}

#[test]
fn hardware_is_named_by_profile_report_or_file_and_unknown_names_list_both() {
    assert_eq!(
        device_report::hardware("amd-rx580-8gb").unwrap().name,
        "amd-rx580-8gb"
    );
    assert_eq!(
        device_report::hardware("amd-rx580--amdvlk").unwrap().name,
        "amd-rx580--amdvlk"
    );
    let dir = env!("CARGO_MANIFEST_DIR");
    let report = format!("{dir}/config/devices/intel-iris-xe--mesa-anv-22.json");
    assert_eq!(
        device_report::hardware(&report).unwrap(),
        device_report::load_hardware(&report).unwrap()
    );
    let profile = format!("{dir}/config/profiles/cpu-only.json");
    assert_eq!(
        device_report::hardware(&profile).unwrap(),
        Hardware::profile("cpu-only").unwrap()
    );
    let e = device_report::hardware("rx-580").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    for listed in ["amd-rx580-8gb", "amd-rx580--amdvlk"] {
        assert!(e.message().contains(listed), "{}", e.message());
    }
}

/// One row of the docs' table of plans on each device report: the device
/// budget for training under the default policy, the 16-bit step (weights held to half their FP32 bytes), the
/// allocation cap, and each Nyx shape's device bytes under the trainer's
/// config.
fn report_plan_row(hw: &Hardware) -> String {
    let config = hrm_config();
    let mib = |bytes: u64| format!("{:.0}", bytes as f64 / (1u64 << 20) as f64);
    let training = Policy {
        training: true,
        ..Policy::default()
    };
    let training = Plan::create(&model("hrm-full"), hw, &training).unwrap();
    let half = Policy {
        max_fraction_of_fp32: 0.5,
        allowed: [Format::F32, Format::F16, Format::BF16]
            .into_iter()
            .collect(),
        ..Policy::default()
    };
    let half = Plan::create(&model("hrm-full"), hw, &half).unwrap();
    let sixteen: std::collections::BTreeSet<&str> = half
        .entries
        .iter()
        .filter(|e| e.format != Format::F32)
        .map(|e| e.format.name())
        .collect();
    let mut cells = vec![
        format!("`{}`", hw.name),
        mib(training.budget.device),
        sixteen.into_iter().collect::<Vec<_>>().join(", "),
        if hw.max_allocation_bytes == 0 {
            "none".to_string()
        } else {
            mib(hw.max_allocation_bytes)
        },
    ];
    for name in MODELS {
        let plan = Plan::create(&model(name), hw, &config.policy(true))
            .unwrap_or_else(|e| panic!("{name} on {}: {e}", hw.name));
        assert_fits(&plan);
        let offloaded = plan.entries.iter().any(|e| e.placement == Placement::Host);
        cells.push(format!(
            "{}{}",
            mib(plan.device_bytes),
            if offloaded { " + host" } else { "" }
        ));
    }
    format!("| {} |", cells.join(" | "))
}

/// docs/hardware.md's table of plans on each report is what the planner
/// gives now; NYXQ_UPDATE_DOCS=1 rewrites it.
#[test]
fn the_docs_table_of_plans_on_each_report_is_current() {
    let mut rows = vec![
        format!(
            "| hardware | training budget (MiB) | 16-bit step | single allocation (MiB) | {} |",
            MODELS.map(|m| format!("`{m}` (MiB)")).join(" | ")
        ),
        format!("|{}", "---|".repeat(4 + MODELS.len())),
    ];
    for name in ["intel-iris-xe-7gb", "amd-rx580-8gb"] {
        rows.push(report_plan_row(&Hardware::profile(name).unwrap()));
    }
    for name in device_report::report_names() {
        rows.push(report_plan_row(
            &device_report::load_hardware(name).unwrap(),
        ));
    }
    let table = rows.join("\n");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/hardware.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let (open, close) = ("<!-- report-plans -->\n", "\n<!-- /report-plans -->");
    let start = text
        .find(open)
        .expect("docs/hardware.md has <!-- report-plans -->")
        + open.len();
    let end = start + text[start..].find(close).expect("<!-- /report-plans -->");
    if std::env::var("NYXQ_UPDATE_DOCS").as_deref() == Ok("1") {
        std::fs::write(&path, format!("{}{table}{}", &text[..start], &text[end..])).unwrap();
    } else {
        assert_eq!(
            text[start..end],
            table,
            "docs/hardware.md's plans on each report are stale: NYXQ_UPDATE_DOCS=1 cargo test --test plan_profiles rewrites them"
        );
    }
}
