//! `nyxq validate` and `nyxq formats` on the committed weights (data/weights)
//! and on safetensors files written here from them: thresholds decide the exit
//! status, --json has every field per tensor and format, and every kind of bad
//! input is a message naming the file with exit status 2, never a panic. Each
//! run starts in a scratch folder, so nothing depends on the current directory.

use crate::cli_support::{Run, nyxq_in, scratch_dir};
use nyxq::format::ALL_FORMATS;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde_json::Value;
use std::path::{Path, PathBuf};

const WEIGHTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/weights");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/hrm_config.txt");
const LAYER_NORM: &str = "minilm-l6-v2__encoder.layer.0.output.LayerNorm.weight.f32";
const BIAS: &str = "minilm-l6-v2__encoder.layer.0.intermediate.dense.bias.f32";
const QUERY: &str = "minilm-l6-v2__encoder.layer.0.attention.self.query.weight.f32";

fn run(dir: &Path, args: &[&str]) -> Run {
    nyxq_in(dir, args, &[])
}

fn committed(file: &str) -> Vec<f32> {
    std::fs::read(Path::new(WEIGHTS).join(file))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr))
}

/// A usage or input error: status 2, the words expected, and no panic.
fn assert_input_error(run: &Run, words: &[&str]) {
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    for w in words {
        assert!(run.stderr.contains(w), "'{w}' missing from: {}", run.stderr);
    }
}

/// A safetensors file of committed tensors: the query weight and the bias as
/// F32, the LayerNorm gain as F16 and as BF16, and an I64 tensor (skipped).
fn write_safetensors(path: &Path) {
    let query: Vec<u8> = committed(QUERY)
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let bias: Vec<u8> = committed(BIAS)
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let gain = committed(LAYER_NORM);
    let gain_f16: Vec<u8> = gain
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
        .collect();
    let gain_bf16: Vec<u8> = gain
        .iter()
        .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
        .collect();
    let ids: Vec<u8> = (0i64..512).flat_map(|v| v.to_le_bytes()).collect();
    let tensors = vec![
        (
            "query.weight",
            TensorView::new(Dtype::F32, vec![384, 384], &query).unwrap(),
        ),
        (
            "intermediate.bias",
            TensorView::new(Dtype::F32, vec![1536], &bias).unwrap(),
        ),
        (
            "layer_norm.f16",
            TensorView::new(Dtype::F16, vec![384], &gain_f16).unwrap(),
        ),
        (
            "layer_norm.bf16",
            TensorView::new(Dtype::BF16, vec![384], &gain_bf16).unwrap(),
        ),
        (
            "position_ids",
            TensorView::new(Dtype::I64, vec![1, 512], &ids).unwrap(),
        ),
    ];
    let bytes = safetensors::serialize(tensors, None).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Writes raw safetensors bytes: an 8-byte header length, the header, the data.
fn write_raw_safetensors(path: &Path, header: &str, data: &[u8]) {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

/// A weight folder with one tensor, `data` as its file and `shape` in the manifest.
fn write_folder(dir: &Path, shape: &str, data: &[u8]) -> PathBuf {
    let folder = dir.join("weights");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("w.f32"), data).unwrap();
    std::fs::write(
        folder.join("manifest.json"),
        format!(r#"{{"tensors": [{{"name": "w", "file": "w.f32", "shape": {shape}}}]}}"#),
    )
    .unwrap();
    folder
}

/// The formats of super-blocks of 256 (the K-quants), which hold no tensor
/// of 384 values.
fn k_quants() -> usize {
    ALL_FORMATS.iter().filter(|f| f.block_size() == 256).count()
}

#[test]
fn committed_weights_pass_a_low_threshold_and_the_defaults() {
    let dir = scratch_dir("validate-pass");
    for extra in [&["--min-snr", "10"][..], &[]] {
        let mut args = vec!["validate", WEIGHTS];
        args.extend_from_slice(extra);
        let r = run(&dir, &args);
        assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
        // Five tensors, every format; the LayerNorm gain (384 values) is not
        // whole super-blocks of the K-quants.
        let checks = 5 * ALL_FORMATS.len();
        let unsupported = k_quants();
        let summary = format!(
            "{checks} checks: {} passed, 0 failed, {unsupported} unsupported",
            checks - unsupported
        );
        assert!(r.stdout.contains(&summary), "{}", r.stdout);
        assert!(
            r.stdout
                .contains("minilm-l6-v2/encoder.layer.0.output.dense.weight"),
            "{}",
            r.stdout
        );
        for header in ["SNR dB", "max abs err", "cosine"] {
            assert!(r.stdout.contains(header), "{}", r.stdout);
        }
    }
}

#[test]
fn an_impossible_threshold_fails_with_status_1() {
    let dir = scratch_dir("validate-fail");
    let r = run(&dir, &["validate", WEIGHTS, "--min-snr", "200"]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("FAIL"), "{}", r.stdout);
    // F32 is exact, so it passes even 200 dB; every other format of the
    // five tensors fails, but for the K-quants of the LayerNorm gain.
    let failed = 5 * (ALL_FORMATS.len() - 1) - k_quants();
    let summary = format!("5 passed, {failed} failed");
    assert!(r.stdout.contains(&summary), "{}", r.stdout);
}

#[test]
fn json_has_every_field_per_tensor_and_format() {
    let dir = scratch_dir("validate-json");
    let r = run(
        &dir,
        &[
            "validate", WEIGHTS, "--format", "q8_0", "--format", "F32,Q4_0", "--json",
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let report = json(&r);
    assert_eq!(report["threshold"]["source"], "default");
    let tensors = report["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 5);
    for t in tensors {
        assert!(t["name"].as_str().unwrap().starts_with("minilm-l6-v2/"));
        assert_eq!(t["stored_as"], "F32");
        assert!(t["shape"].is_array() && t["elements"].as_u64().unwrap() > 0);
        let formats = t["formats"].as_array().unwrap();
        let names: Vec<&str> = formats
            .iter()
            .map(|f| f["format"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Q8_0", "F32", "Q4_0"]);
        for f in formats {
            assert_eq!(f["status"], "pass", "{f}");
            for key in ["snr_db", "max_abs_error", "rmse", "cosine", "min_snr_db"] {
                assert!(f.get(key).is_some(), "{key} missing: {f}");
            }
            if f["format"] == "F32" {
                // Exact: infinite SNR is null in JSON, and `exact` says why.
                assert!(f["snr_db"].is_null() && f["exact"] == true, "{f}");
                assert_eq!(f["max_abs_error"], 0.0);
            } else {
                assert!(f["snr_db"].as_f64().unwrap() > 15.0, "{f}");
                assert!(f["cosine"].as_f64().unwrap() > 0.99, "{f}");
                assert!(f["max_abs_error"].as_f64().unwrap() > 0.0, "{f}");
            }
        }
    }
    let summary = &report["summary"];
    assert_eq!(summary["checks"], 15);
    assert_eq!(summary["passed"], 15);
    assert_eq!(summary["pass"], true);
}

#[test]
fn the_configs_accuracy_threshold_is_the_least_cosine() {
    let dir = scratch_dir("validate-config");
    let r = run(
        &dir,
        &["validate", WEIGHTS, "--config", CONFIG, "--format", "q8_0"],
    );
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("accuracy_threshold"), "{}", r.stdout);
    let strict = dir.join("strict.txt");
    std::fs::write(&strict, "[quantization]\naccuracy_threshold = 0.999\n").unwrap();
    let r = run(
        &dir,
        &[
            "validate",
            WEIGHTS,
            "--config",
            strict.to_str().unwrap(),
            "--format",
            "Q4_0",
            "--json",
        ],
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let report = json(&r);
    assert_eq!(report["threshold"]["source"], "config");
    let first = &report["tensors"][0]["formats"][0];
    assert_eq!(first["min_cosine"], 0.999);
    assert_eq!(first["status"], "fail");
    // --min-snr wins over the config.
    let r = run(
        &dir,
        &[
            "validate",
            WEIGHTS,
            "--config",
            strict.to_str().unwrap(),
            "--min-snr",
            "10",
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.stdout);
}

#[test]
fn safetensors_f32_f16_and_bf16_are_read_and_other_types_skipped() {
    let dir = scratch_dir("validate-safetensors");
    let file = dir.join("model.safetensors");
    write_safetensors(&file);
    let r = run(
        &dir,
        &["validate", "model.safetensors", "--json", "--min-snr", "10"],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let report = json(&r);
    let tensors = report["tensors"].as_array().unwrap();
    // In the file's order (safetensors::serialize orders by type, then name).
    let mut stored: Vec<(&str, &str)> = tensors
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap(),
                t["stored_as"].as_str().unwrap(),
            )
        })
        .collect();
    stored.sort();
    assert_eq!(
        stored,
        [
            ("intermediate.bias", "F32"),
            ("layer_norm.bf16", "BF16"),
            ("layer_norm.f16", "F16"),
            ("query.weight", "F32"),
        ]
    );
    let skipped = report["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["name"], "position_ids");
    assert!(skipped[0]["reason"].as_str().unwrap().contains("I64"));
    // Values stored as F16 (or BF16) come back exactly from that format, so
    // the reader widened them without loss.
    let status = |tensor: &str, format: &str| {
        tensors.iter().find(|t| t["name"] == tensor).unwrap()["formats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["format"] == format)
            .unwrap()
            .clone()
    };
    assert_eq!(status("layer_norm.f16", "F16")["exact"], true);
    assert_eq!(status("layer_norm.bf16", "BF16")["exact"], true);
    assert_eq!(status("layer_norm.f16", "BF16")["exact"], false);
    // The F32 tensors read back as the committed files: same error as there.
    let from_folder = json(&run(
        &dir,
        &["validate", WEIGHTS, "--json", "--format", "Q4_0"],
    ));
    let folder_query = from_folder["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "minilm-l6-v2/encoder.layer.0.attention.self.query.weight")
        .unwrap()["formats"][0]["snr_db"]
        .clone();
    assert_eq!(status("query.weight", "Q4_0")["snr_db"], folder_query);
    // The human report names what was skipped.
    let r = run(
        &dir,
        &["validate", file.to_str().unwrap(), "--format", "F16"],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("skipped position_ids"), "{}", r.stdout);
}

#[test]
fn a_partial_block_is_unsupported_not_a_failure() {
    let dir = scratch_dir("validate-partial");
    let data: Vec<u8> = (0..33)
        .flat_map(|i| (i as f32 * 0.1).to_le_bytes())
        .collect();
    let folder = write_folder(&dir, "[33]", &data);
    let r = run(&dir, &["validate", folder.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let report = json(&r);
    let block_formats = ALL_FORMATS.iter().filter(|f| f.is_block()).count();
    assert_eq!(report["summary"]["unsupported"], block_formats);
    let q8 = &report["tensors"][0]["formats"][3];
    assert_eq!(q8["format"], "Q8_0");
    assert_eq!(q8["status"], "unsupported");
    assert!(q8["reason"].as_str().unwrap().contains("multiple of 32"));
    let r = run(&dir, &["formats", folder.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.contains("left out of the block formats' rows: w"),
        "{}",
        r.stdout
    );
}

#[test]
fn non_finite_weights_fail() {
    let dir = scratch_dir("validate-nan");
    let data: Vec<u8> = (0..32)
        .flat_map(|i| if i == 5 { f32::NAN } else { i as f32 }.to_le_bytes())
        .collect();
    let folder = write_folder(&dir, "[32]", &data);
    let r = run(
        &dir,
        &["validate", folder.to_str().unwrap(), "--format", "q8_0"],
    );
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("FAIL"), "{}", r.stdout);
}

#[test]
fn bad_arguments_are_usage_errors() {
    let dir = scratch_dir("validate-args");
    let cases: [(&[&str], &[&str]); 7] = [
        (&["validate"], &["no weight set given", "usage:"]),
        (
            &["validate", WEIGHTS, "--format", "q5_1"],
            &["unknown format 'q5_1'"],
        ),
        (
            &["validate", WEIGHTS, "--min-snr", "abc"],
            &["--min-snr 'abc'"],
        ),
        (
            &["validate", WEIGHTS, "--min-snr", "nan"],
            &["--min-snr 'nan'"],
        ),
        (
            &["validate", WEIGHTS, "--min-snr"],
            &["--min-snr needs a value"],
        ),
        (
            &["validate", WEIGHTS, "--frobnicate"],
            &["unknown option --frobnicate"],
        ),
        (
            &[
                "validate",
                WEIGHTS,
                "--config",
                "/nonexistent/hrm_config.txt",
            ],
            &["/nonexistent/hrm_config.txt"],
        ),
    ];
    for (args, words) in cases {
        assert_input_error(&run(&dir, args), words);
    }
    let bad_config = dir.join("bad.txt");
    std::fs::write(
        &bad_config,
        "[quantization]\nenabled = true\nprecison = INT4\n",
    )
    .unwrap();
    assert_input_error(
        &run(
            &dir,
            &[
                "validate",
                WEIGHTS,
                "--config",
                bad_config.to_str().unwrap(),
            ],
        ),
        &["bad.txt:3:", "unknown key 'precison'"],
    );
}

#[test]
fn unreadable_weight_sets_are_clear_errors() {
    let dir = scratch_dir("validate-inputs");
    let f32s = |n: usize| -> Vec<u8> { (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect() };

    assert_input_error(
        &run(&dir, &["validate", "missing.safetensors"]),
        &["missing.safetensors"],
    );
    assert_input_error(
        &run(&dir, &["validate", dir.to_str().unwrap()]),
        &["manifest.json"],
    );

    let bad_json = dir.join("bad.json");
    std::fs::write(&bad_json, r#"{"tensors": [{"name": "w", "file": }"#).unwrap();
    assert_input_error(
        &run(&dir, &["validate", bad_json.to_str().unwrap()]),
        &["bad.json", "not a weight manifest"],
    );

    let folder = write_folder(&dir, "[64]", &f32s(64));
    std::fs::remove_file(folder.join("w.f32")).unwrap();
    assert_input_error(
        &run(&dir, &["validate", folder.to_str().unwrap()]),
        &["manifest.json", "tensor 'w'", "w.f32"],
    );

    let folder = write_folder(&dir, "[8, 8]", &f32s(63));
    assert_input_error(
        &run(&dir, &["formats", folder.to_str().unwrap()]),
        &["tensor 'w'", "252 bytes", "needs 256"],
    );

    let good = dir.join("good.safetensors");
    write_safetensors(&good);
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    assert_input_error(
        &run(&dir, &["validate", truncated.to_str().unwrap()]),
        &["truncated.safetensors", "truncated"],
    );

    let short = dir.join("short.safetensors");
    std::fs::write(&short, [1u8, 2, 3]).unwrap();
    assert_input_error(
        &run(&dir, &["validate", short.to_str().unwrap()]),
        &["short.safetensors", "too short"],
    );

    let past_end = dir.join("past_end.safetensors");
    let mut bytes = 1000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&past_end, bytes).unwrap();
    assert_input_error(
        &run(&dir, &["validate", past_end.to_str().unwrap()]),
        &[
            "past_end.safetensors",
            "header length 1000 runs past the end",
        ],
    );

    let wrong_shape = dir.join("wrong_shape.safetensors");
    write_raw_safetensors(
        &wrong_shape,
        r#"{"w":{"dtype":"F32","shape":[4,4],"data_offsets":[0,60]}}"#,
        &f32s(15),
    );
    assert_input_error(
        &run(&dir, &["validate", wrong_shape.to_str().unwrap()]),
        &["wrong_shape.safetensors", "tensor 'w'", "[4, 4]"],
    );

    let not_json = dir.join("not_json.safetensors");
    write_raw_safetensors(&not_json, "{\"w\": [", &[]);
    assert_input_error(
        &run(&dir, &["validate", not_json.to_str().unwrap()]),
        &["not_json.safetensors", "invalid safetensors header"],
    );

    let only_ints = dir.join("ints.safetensors");
    write_raw_safetensors(
        &only_ints,
        r#"{"ids":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}"#,
        &[0; 8],
    );
    assert_input_error(
        &run(&dir, &["validate", only_ints.to_str().unwrap()]),
        &["ints.safetensors", "no F32, F16 or BF16 tensor"],
    );
}

#[test]
fn formats_reads_the_same_inputs_and_needs_one() {
    let dir = scratch_dir("formats");
    assert_input_error(&run(&dir, &["formats"]), &["no weight set given", "usage:"]);

    // A safetensors file of four of the committed tensors (149,760 weights):
    // every format's error-minimising search over the whole committed set
    // would cost most of this test's time and add nothing to what it checks.
    let file = dir.join("model.safetensors");
    write_safetensors(&file);
    let r = run(&dir, &["formats", "model.safetensors", "--json"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let report = json(&r);
    assert_eq!(report["tensors"], 4);
    assert_eq!(report["weights"], 384 * 384 + 1536 + 2 * 384);
    let labels: Vec<&str> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["label"].as_str().unwrap())
        .collect();
    // Every format, and error-minimising rounding beside each block format.
    let expected: Vec<String> = ALL_FORMATS
        .iter()
        .flat_map(|f| {
            let searched = f.is_block().then(|| format!("{} (err-min)", f.name()));
            std::iter::once(f.name().to_string()).chain(searched)
        })
        .collect();
    assert_eq!(labels, expected);
    for row in report["rows"].as_array().unwrap() {
        assert!(row["quantize_gbs"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["bits_per_weight"].as_f64().unwrap() >= 4.5, "{row}");
    }

    let r = run(&dir, &["formats", "model.safetensors"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("4 tensors"), "{}", r.stdout);
    assert!(r.stdout.contains("skipped position_ids"), "{}", r.stdout);
    assert!(r.stdout.contains("Q4_1 (err-min)"), "{}", r.stdout);
}
