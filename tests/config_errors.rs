//! The [quantization] parser: the shipped config, its mapping to a policy, and
//! every error case with file, line and reason.

use nyxq::config::{KEYS, QuantConfig};
use nyxq::{ErrorKind, Format};
use std::path::Path;

#[test]
fn the_shipped_config_parses_and_maps_to_a_policy() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/hrm_config.txt");
    let cfg = QuantConfig::load(Path::new(path)).unwrap();
    assert!(cfg.enabled);
    assert_eq!(cfg.precision_level, Format::Q4_0);
    assert_eq!(cfg.attention_precision, Some(Format::Q8_0));
    assert_eq!(cfg.ignored.len(), 5, "{:?}", cfg.ignored);
    let text = std::fs::read_to_string(path).unwrap();
    for key in KEYS {
        assert!(
            text.contains(&format!("\n{key} = ")),
            "hrm_config.txt documents {key}"
        );
    }
    let policy = cfg.policy(true);
    assert!((policy.min_snr_db - 19.97).abs() < 0.01);
    assert!(policy.training && !policy.master_weights);
    assert!(!policy.allows(Format::Q4_1));
    assert!((policy.max_fraction_of_fp32 - 0.5).abs() < 1e-12);
}

#[test]
fn other_sections_are_skipped_and_no_section_means_disabled() {
    let cfg = QuantConfig::parse("[model]\nwhatever = 3\n", "t.ini").unwrap();
    assert!(!cfg.enabled);
    assert_eq!(cfg.policy(false).allowed, vec![Format::F32]);
    let cfg = QuantConfig::parse(
        "[Quantization]\nenabled = yes ; inline\n# c\nprecision_level = int8\n[other]\nenabled = nonsense\n",
        "t.ini",
    )
    .unwrap();
    assert!(cfg.enabled);
    assert_eq!(cfg.precision_level, Format::Q8_0);
}

/// INT5 is Q5_0, and the chain offers it between INT4 and INT8: a floor of
/// INT4 allows it, one of INT5 starts there, one of INT8 rules it out.
#[test]
fn int5_is_q5_0_and_sits_between_int4_and_int8() {
    let policy = |level: &str| {
        let text = format!("[quantization]\nenabled = true\nprecision_level = {level}\n");
        QuantConfig::parse(&text, "t.ini").unwrap().policy(false)
    };
    let int5 = policy("INT5");
    assert_eq!(int5.default_format, Some(Format::Q5_0));
    assert!(int5.allows(Format::Q5_0) && int5.allows(Format::Q8_0));
    assert!(!int5.allows(Format::Q4_0) && !int5.allows(Format::Q4_1));
    assert!(policy("INT4").allows(Format::Q5_0));
    assert!(!policy("INT8").allows(Format::Q5_0));
}

/// The K-quants are precision names of their own (INT6 is Q6_K). A floor of
/// INT4 or INT5 lets the chain take Q5_K and Q6_K; Q4_K, like Q4_1, only
/// where a key names it, so INT4 stays Q4_0.
#[test]
fn the_k_quants_are_precisions_and_q4_k_is_allowed_only_where_named() {
    let config = |keys: &str| {
        let text = format!("[quantization]\nenabled = true\n{keys}");
        QuantConfig::parse(&text, "t.ini").unwrap()
    };
    let int4 = config("precision_level = INT4\n").policy(false);
    assert!(int4.allows(Format::Q5_K) && int4.allows(Format::Q6_K));
    assert!(!int4.allows(Format::Q4_K));
    assert_eq!(int4.default_format, Some(Format::Q4_0));
    assert!(
        config("precision_level = INT5\n")
            .policy(false)
            .allows(Format::Q6_K)
    );
    assert!(
        !config("precision_level = INT8\n")
            .policy(false)
            .allows(Format::Q6_K)
    );
    for (name, format) in [
        ("Q4_K", Format::Q4_K),
        ("q5_k", Format::Q5_K),
        ("Q6_K", Format::Q6_K),
        ("INT6", Format::Q6_K),
    ] {
        let cfg = config(&format!("precision_level = {name}\n"));
        assert_eq!(cfg.precision_level, format, "{name}");
        assert!(cfg.policy(false).allows(format), "{name}");
    }
    let named = config("precision_level = INT4\nattention_precision = Q4_K\n").policy(false);
    assert!(named.allows(Format::Q4_K) && named.allows(Format::Q4_0));
    // An unknown precision lists the K-quants among the accepted names.
    let err = QuantConfig::parse("[quantization]\nprecision_level = INT3\n", "t.ini").unwrap_err();
    assert!(
        err.message().contains("INT6") && err.message().contains("Q6_K"),
        "{}",
        err.message()
    );
}

/// IQ4_NL is a precision the config can name (by its name or `iq4nl`); it
/// is offered only where a key names it, and then, as the more accurate of
/// the two 4.5-bit formats, it is the chain's INT4 step.
#[test]
fn iq4_nl_is_offered_only_where_a_key_names_it() {
    let policy = |keys: &str| {
        let text = format!("[quantization]\nenabled = true\n{keys}");
        QuantConfig::parse(&text, "t.ini").unwrap().policy(false)
    };
    let plain = policy("precision_level = INT4\n");
    assert!(!plain.allows(Format::IQ4_NL));
    assert_eq!(plain.default_format, Some(Format::Q4_0));
    for name in ["IQ4_NL", "iq4_nl", "iq4nl"] {
        let named = policy(&format!(
            "precision_level = INT4\nweight_precision = {name}\n"
        ));
        assert!(named.allows(Format::IQ4_NL) && named.allows(Format::Q4_0));
        assert_eq!(named.default_format, Some(Format::IQ4_NL));
    }
    let floor = policy("precision_level = IQ4_NL\n");
    assert_eq!(floor.default_format, Some(Format::IQ4_NL));
    assert!(floor.allows(Format::Q5_0) && !floor.allows(Format::Q4_1));
    let attention = policy(
        "precision_level = INT4\nmixed_precision_enabled = true\nattention_precision = IQ4_NL\n",
    );
    assert!(attention.allows(Format::IQ4_NL));
}

fn error(text: &str) -> String {
    let e = QuantConfig::parse(text, "bad.ini").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    e.message().to_string()
}

#[test]
fn every_error_names_the_file_the_line_and_the_reason() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[quantization]\nenabled = true\nbogus = 1\n",
            "bad.ini:3:",
            "unknown key 'bogus'",
        ),
        (
            "[quantization]\nenabled = maybe\n",
            "bad.ini:2:",
            "not a boolean",
        ),
        (
            "[quantization]\nprecision_level = INT3\n",
            "bad.ini:2:",
            "not a precision",
        ),
        (
            "[quantization]\nenabled = true\nenabled = false\n",
            "bad.ini:3:",
            "duplicate key 'enabled' (first set on line 2)",
        ),
        (
            "[quantization]\naccuracy_threshold = 1.0\n",
            "bad.ini:2:",
            "exact reconstruction",
        ),
        (
            "[quantization]\naccuracy_threshold = 1.5\n",
            "bad.ini:2:",
            "outside (0, 1]",
        ),
        (
            "[quantization]\naccuracy_threshold = high\n",
            "bad.ini:2:",
            "not a number",
        ),
        (
            "[quantization]\nmemory_threshold_mb = -5\n",
            "bad.ini:2:",
            "whole number of MiB",
        ),
        (
            "[quantization]\nenabled = true\nprecision_level = INT8\nattention_precision = INT4\n",
            "bad.ini:4:",
            "below precision_level",
        ),
        (
            "[quantization]\nenabled = true\nprecision_level = INT8\nweight_precision = INT4\n",
            "bad.ini:4:",
            "below precision_level",
        ),
        (
            "[quantization]\nlearning_in_quantized_state = true\n",
            "bad.ini:2:",
            "needs quantized_training_enabled",
        ),
        (
            "[quantization]\nenabled = true\nprecision_level = INT8\nmemory_reduction_target = 0.9\n",
            "bad.ini:4:",
            "cannot be reached",
        ),
        (
            "[quantization]\nmemory_reduction_target = 1\n",
            "bad.ini:2:",
            "outside [0, 1)",
        ),
        (
            "[quantization]\ngradient_precision = INT8\n",
            "bad.ini:2:",
            "FP32, FP16 or BF16",
        ),
        (
            "[quantization]\nspeedup_target = 0\n",
            "bad.ini:2:",
            "positive factor",
        ),
        (
            "[quantization]\njust words\n",
            "bad.ini:2:",
            "not 'key = value'",
        ),
        (
            "[quantization\nenabled = true\n",
            "bad.ini:1:",
            "no closing ']'",
        ),
        ("[quantization]\nenabled =\n", "bad.ini:2:", "has no value"),
        (
            "[quantization]\nmemory_threshold_mb = 17592186044417\n",
            "bad.ini:2:",
            "more than the limit of 17592186044415 MiB",
        ),
        (
            "[quantization]\nmemory_threshold_mb = 17592186044416\n",
            "bad.ini:2:",
            "more than the limit of 17592186044415 MiB",
        ),
    ];
    for (text, location, reason) in cases {
        let m = error(text);
        assert!(m.starts_with(location), "{m}");
        assert!(m.contains(reason), "{m}");
    }
}

#[test]
fn a_missing_file_is_an_io_error() {
    let e = QuantConfig::load(Path::new("/nonexistent/hrm_config.txt")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
}

#[test]
fn the_user_guide_documents_every_key_by_the_parsers_name() {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/guide.md"))
        .expect("docs/guide.md exists");
    for key in KEYS {
        assert!(
            guide.contains(&format!("| `{key}` |")),
            "docs/guide.md has no table row for {key}"
        );
    }
}

/// The Nyx trainer's section as it ships (key=value, no spaces, quantization
/// off, per-role precisions with mixed precision off, accuracy_threshold=0.85)
/// loads: every tensor FP32, and what does not apply is a warning with its line.
#[test]
fn the_nyx_trainers_section_loads_as_written() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/nyx_trainer_quantization.ini"
    );
    let cfg = QuantConfig::load(Path::new(path)).unwrap();
    assert!(!cfg.enabled);
    assert!(!cfg.mixed_precision_enabled);
    assert_eq!(cfg.precision_level, Format::F32);
    assert_eq!(cfg.weight_precision, Some(Format::Q4_0));
    assert_eq!(cfg.memory_threshold_mb, 4096);
    assert_eq!(cfg.accuracy_threshold, 0.85);
    let expect = [
        (
            ":10: quantization is disabled",
            "every tensor is planned in FP32",
        ),
        (
            ":17: attention_precision = FP16 does not apply",
            "mixed_precision_enabled = false",
        ),
        (
            ":18: mlp_precision = INT8 does not apply",
            "mixed_precision_enabled = false",
        ),
        (
            ":19: embedding_precision = INT4 does not apply",
            "mixed_precision_enabled = false",
        ),
        (
            ":22: weight_precision = INT4 is below precision_level = FP32",
            "enabled = true",
        ),
        (":14: accuracy_threshold = 0.85", "SNR floor of 4.2 dB"),
    ];
    assert_eq!(cfg.warnings.len(), expect.len(), "{:#?}", cfg.warnings);
    for (at, what) in expect {
        assert!(
            cfg.warnings
                .iter()
                .any(|w| w.starts_with(path) && w.contains(at) && w.contains(what)),
            "no warning {at} ... {what} in {:#?}",
            cfg.warnings
        );
    }
    for training in [false, true] {
        let policy = cfg.policy(training);
        assert_eq!(policy.allowed, vec![Format::F32]);
        assert_eq!(policy.default_format, Some(Format::F32));
        assert_eq!(policy.device_cap_bytes, 4096 << 20);
        assert!(
            (policy.min_snr_db - 4.16).abs() < 0.01,
            "{}",
            policy.min_snr_db
        );
        assert_eq!(policy.notes, cfg.warnings);
    }
}

/// The warnings reach the plan: a plan made from the config carries them as notes.
#[test]
fn config_warnings_become_plan_notes() {
    use nyxq::plan::{Hardware, Model, Plan, Role, TensorDesc};
    let cfg = QuantConfig::parse(
        "[quantization]\nenabled=true\nprecision_level=INT4\nmixed_precision_enabled=false\nmlp_precision=INT8\n",
        "t.ini",
    )
    .unwrap();
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    assert!(cfg.warnings[0].starts_with("t.ini:5: mlp_precision = INT8 does not apply"));
    let model = Model::new(
        "m",
        vec![TensorDesc::new("w", Role::Mlp, &[256, 256]).unwrap()],
    )
    .unwrap();
    let plan = Plan::create(
        &model,
        &Hardware::profile("cpu-only").unwrap(),
        &cfg.policy(false),
    )
    .unwrap();
    assert!(plan.notes.contains(&cfg.warnings[0]), "{:?}", plan.notes);
    assert!(
        plan.explain()
            .contains("mlp_precision = INT8 does not apply")
    );
}

/// A section that applies fully and asks for a real floor has no warnings.
#[test]
fn a_consistent_section_has_no_warnings() {
    let cfg = QuantConfig::parse(
        "[quantization]\nenabled = true\nprecision_level = INT4\naccuracy_threshold = 0.99\nattention_precision = INT8\n",
        "t.ini",
    )
    .unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
}

#[test]
fn the_largest_memory_threshold_is_a_cap_in_bytes() {
    let cfg = QuantConfig::parse(
        "[quantization]\nenabled = true\nmemory_threshold_mb = 17592186044415\n",
        "max.ini",
    )
    .unwrap();
    assert_eq!(cfg.policy(false).device_cap_bytes, 17592186044415 << 20);
}

#[test]
fn a_byte_order_mark_before_the_section_is_skipped() {
    let cfg = QuantConfig::parse_bytes(
        b"\xEF\xBB\xBF[quantization]\nenabled = true\nprecision_level = INT4\n",
        "bom.ini",
    )
    .unwrap();
    assert!(cfg.enabled);
    assert_eq!(cfg.precision_level, Format::Q4_0);
}

#[test]
fn non_utf8_is_tolerated_outside_the_section_and_an_error_inside_it() {
    let elsewhere =
        b"[model]\nname = caf\xE9\n# r\xE9sum\xE9\n[quantization]\nenabled = true # \xFF\n";
    let cfg = QuantConfig::parse_bytes(elsewhere, "latin1.ini").unwrap();
    assert!(cfg.enabled);
    let inside = b"[quantization]\nenabled = true\nprecision_level = INT\xFF\n";
    let e = QuantConfig::parse_bytes(inside, "latin1.ini").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().starts_with("latin1.ini:3: "), "{}", e.message());
    assert!(e.message().contains("not valid UTF-8"), "{}", e.message());
}

#[test]
fn load_reads_bytes_and_reports_bad_utf8_with_file_and_line() {
    let dir = std::env::temp_dir().join(format!("nyxq-config-utf8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.ini");
    std::fs::write(&path, b"\xEF\xBB\xBF[quantization]\n\nenabled = \xC3\n").unwrap();
    let e = QuantConfig::load(&path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.message().starts_with(&format!("{}:3: ", path.display())),
        "{}",
        e.message()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn parse(text: &str) -> nyxq::Result<QuantConfig> {
    QuantConfig::parse(text, "t.ini")
}

/// The ranges of docs/guide.md's table, edges included: accuracy_threshold in
/// (0, 1), target_accuracy_preservation in (0, 1], memory_reduction_target in
/// [0, 1); NaN and the infinities are outside every range.
#[test]
fn fractions_take_exactly_their_documented_ranges() {
    let outside = [
        ("accuracy_threshold", "0", "outside (0, 1]"),
        ("accuracy_threshold", "-0.5", "outside (0, 1]"),
        ("accuracy_threshold", "NaN", "outside (0, 1]"),
        ("target_accuracy_preservation", "0", "outside (0, 1]"),
        ("target_accuracy_preservation", "1.01", "outside (0, 1]"),
        ("target_accuracy_preservation", "inf", "outside (0, 1]"),
        ("memory_reduction_target", "-0.1", "outside [0, 1)"),
        ("memory_reduction_target", "-inf", "outside [0, 1)"),
        ("memory_reduction_target", "1", "outside [0, 1)"),
    ];
    for (key, value, reason) in outside {
        let m = error(&format!("[quantization]\n{key} = {value}\n"));
        assert!(m.starts_with("bad.ini:2:"), "{m}");
        assert!(m.contains(reason), "{key} = {value}: {m}");
    }
    let cfg = parse(
        "[quantization]\naccuracy_threshold = 0.5\ntarget_accuracy_preservation = 1\nmemory_reduction_target = 0\n",
    )
    .unwrap();
    assert_eq!(cfg.accuracy_threshold, 0.5);
    assert_eq!(cfg.target_accuracy_preservation, 1.0);
    assert_eq!(cfg.memory_reduction_target, 0.0);
    let cfg = parse("[quantization]\nmemory_reduction_target = 0.999\n").unwrap();
    assert_eq!(cfg.memory_reduction_target, 0.999);
}

/// Weights at precision_level p take at least bits(p)/32 of their FP32 bytes,
/// so a target t is reachable while 1 − t >= bits(p)/32, equality included:
/// FP16 reaches 0.5 exactly, INT4 (Q4_0, 4.5/32 = 0.140625) reaches
/// 0.859375 = 1 − 0.140625 but not 0.86.
#[test]
fn a_memory_target_is_reachable_up_to_the_floor_formats_share_exactly() {
    let section = |level: &str, target: &str| {
        format!(
            "[quantization]\nenabled = true\nprecision_level = {level}\nmemory_reduction_target = {target}\n"
        )
    };
    let fp16 = parse(&section("FP16", "0.5")).unwrap();
    assert_eq!(fp16.policy(false).max_fraction_of_fp32, 0.5);
    let int4 = parse(&section("INT4", "0.859375")).unwrap();
    assert_eq!(int4.policy(false).max_fraction_of_fp32, 0.140625);
    let m = error(&section("INT4", "0.86"));
    assert!(m.starts_with("bad.ini:4:"), "{m}");
    assert!(m.contains("at least 14.1% of FP32"), "{m}");
    let m = error(&section("FP16", "0.51"));
    assert!(m.contains("at least 50.0% of FP32"), "{m}");
}

/// With enabled = false a precision below precision_level is a warning and one
/// at or above it is nothing; per-role keys count while mixed precision is on.
#[test]
fn below_floor_precisions_warn_only_while_disabled() {
    let cfg = parse(
        "[quantization]\nenabled = false\nprecision_level = INT8\nattention_precision = INT4\nmlp_precision = INT8\nembedding_precision = FP16\nweight_precision = BF16\n",
    )
    .unwrap();
    assert_eq!(cfg.warnings.len(), 2, "{:#?}", cfg.warnings);
    assert!(cfg.warnings[0].starts_with("t.ini:2: quantization is disabled"));
    assert!(
        cfg.warnings[1].starts_with(
            "t.ini:4: attention_precision = INT4 is below precision_level = INT8; it would be an error with enabled = true"
        ),
        "{}",
        cfg.warnings[1]
    );
    let cfg =
        parse("[quantization]\nenabled = false\nprecision_level = INT8\nweight_precision = INT4\n")
            .unwrap();
    assert_eq!(cfg.warnings.len(), 2, "{:#?}", cfg.warnings);
    assert!(cfg.warnings[1].starts_with("t.ini:4: weight_precision = INT4 is below"));
    // Enabled, the same keys at or above the floor load with no warning.
    let cfg = parse(
        "[quantization]\nenabled = true\nprecision_level = INT8\nattention_precision = INT8\nmlp_precision = INT8\nembedding_precision = FP16\nweight_precision = BF16\n",
    )
    .unwrap();
    assert!(cfg.warnings.is_empty(), "{:#?}", cfg.warnings);
}

/// Every key that applies reaches the policy, in inference and in training.
#[test]
fn the_policy_carries_every_key_that_applies() {
    use nyxq::plan::model::ALL_ROLES;
    use nyxq::plan::{OptimizerState, Role};
    let cfg = parse(
        "[quantization]\nenabled = true\nprecision_level = INT4\nadaptive_precision = false\n\
         memory_threshold_mb = 100\naccuracy_threshold = 0.999\nfallback_to_fp32 = false\n\
         attention_precision = INT8\nmlp_precision = Q4_1\nembedding_precision = FP16\n\
         weight_precision = INT5\nquantized_training_enabled = true\ngradient_precision = BF16\n\
         memory_reduction_target = 0.25\n",
    )
    .unwrap();
    let a: f64 = 0.999;
    let floor_db = 10.0 * (a * a / (1.0 - a * a)).log10();
    for training in [false, true] {
        let p = cfg.policy(training);
        assert_eq!(p.training, training);
        for f in [
            Format::F32,
            Format::F16,
            Format::BF16,
            Format::Q8_0,
            Format::Q5_0,
            Format::Q4_0,
            // Allowed because mlp_precision names it.
            Format::Q4_1,
        ] {
            assert!(p.allows(f), "{f:?} in {:?}", p.allowed);
        }
        assert_eq!(p.default_format, Some(Format::Q5_0));
        for (i, role) in ALL_ROLES.iter().enumerate() {
            let expected = match role {
                Role::Attention => Some(Format::Q8_0),
                Role::Mlp => Some(Format::Q4_1),
                Role::Embedding => Some(Format::F16),
                _ => None,
            };
            assert_eq!(p.role_formats[i], expected, "{role:?}");
        }
        assert!(!p.adaptive && !p.fallback_to_fp32);
        assert_eq!(p.max_fraction_of_fp32, 0.75);
        assert_eq!(p.device_cap_bytes, 100 << 20);
        assert_eq!(p.gradient_format, Format::BF16);
        assert!((p.min_snr_db - floor_db).abs() < 1e-9, "{}", p.min_snr_db);
        assert_eq!(
            p.master_weights, training,
            "no learning in the quantized state"
        );
        let state = if training {
            OptimizerState::Blockwise8
        } else {
            OptimizerState::Fp32
        };
        assert_eq!(p.optimizer_state, state);
    }
    // Mixed precision off: the per-role keys do not reach the policy.
    let cfg = parse(
        "[quantization]\nenabled = true\nmixed_precision_enabled = false\nattention_precision = INT8\n",
    )
    .unwrap();
    assert_eq!(cfg.policy(false).role_formats, [None; 7]);
}

/// Without quantized training, training keeps every weight F32 (with Adam in
/// FP32) while inference from the same config is quantized.
#[test]
fn training_without_quantized_training_plans_fp32() {
    let cfg = parse(
        "[quantization]\nenabled = true\nprecision_level = INT4\nquantized_training_enabled = false\n",
    )
    .unwrap();
    let training = cfg.policy(true);
    assert_eq!(training.allowed, vec![Format::F32]);
    assert_eq!(training.default_format, Some(Format::F32));
    assert!(!training.adaptive);
    assert!(training.master_weights);
    assert_eq!(training.optimizer_state, nyxq::plan::OptimizerState::Fp32);
    let inference = cfg.policy(false);
    assert!(inference.allows(Format::Q4_0) && !inference.allows(Format::Q4_1));
    assert_eq!(inference.default_format, Some(Format::Q4_0));
    assert!(inference.adaptive);
}

/// A `#` or `;` starts a comment only at the start of a line or after
/// whitespace: glued to a value it is part of the value.
#[test]
fn a_comment_sign_inside_a_value_is_not_a_comment() {
    for (line, reason) in [
        ("speedup_target = 2; x", "not a number"),
        ("enabled = true#x", "not a boolean"),
        ("speedup_target = 2;", "not a number"),
    ] {
        let m = error(&format!("[quantization]\n{line}\n"));
        assert!(m.starts_with("bad.ini:2:"), "{m}");
        assert!(m.contains(reason), "{line}: {m}");
    }
    let cfg = parse("[quantization]\n;c\nspeedup_target = 2\t; x\nenabled = on\t#x\n").unwrap();
    assert_eq!(cfg.speedup_target, 2.0);
    assert!(cfg.enabled);
}
