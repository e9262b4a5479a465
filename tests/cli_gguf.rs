//! `nyxq gguf export|import|info` on the committed weights and on files
//! written here: formats by flag and by plan, metadata kept, values back
//! within the format's error, and bad input a message with exit status 2
//! (a failed quantization 1, with no file left), never a panic.

use crate::cli_support::{Run, nyxq_in, scratch_dir};
use serde_json::Value;
use std::path::Path;

const WEIGHTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/weights");
const QUERY: &str = "minilm-l6-v2/encoder.layer.0.attention.self.query.weight";
const DENSE: &str = "minilm-l6-v2/encoder.layer.0.output.dense.weight";
const NORM: &str = "minilm-l6-v2/encoder.layer.0.output.LayerNorm.weight";

fn run(dir: &Path, args: &[&str]) -> Run {
    nyxq_in(dir, args, &[])
}

fn ok(run: Run) -> Run {
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    run
}

fn info(dir: &Path, file: &str) -> Value {
    let run = ok(run(dir, &["gguf", "info", file, "--json"]));
    serde_json::from_str(&run.stdout).unwrap()
}

fn tensor<'a>(info: &'a Value, name: &str) -> &'a Value {
    info["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing from {info}"))
}

fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn export_info_and_import_round_trip_the_weights() {
    let dir = scratch_dir("gguf_round_trip");
    std::fs::write(dir.join("config.ini"), "[quantization]\n").unwrap();
    let out = ok(run(
        &dir,
        &[
            "gguf",
            "export",
            WEIGHTS,
            "--out",
            "w.gguf",
            "--format",
            "q8_0",
            "--config",
            "config.ini",
            "--meta",
            "general.name=minilm",
        ],
    ));
    assert!(out.stdout.contains("5 tensors (5 Q8_0)"), "{}", out.stdout);
    let doc = info(&dir, "w.gguf");
    assert_eq!(doc["version"], 3);
    assert_eq!(doc["metadata"]["general.name"]["value"], "minilm");
    assert_eq!(doc["metadata"]["nyxq.config"]["value"], "[quantization]\n");
    let query = tensor(&doc, QUERY);
    assert_eq!(query["type"], "Q8_0");
    assert_eq!(query["ggml_type"], 8);
    assert_eq!(query["shape"], serde_json::json!([384, 384]));
    assert_eq!(query["bytes"], 384 * 384 / 32 * 34);

    ok(run(
        &dir,
        &["gguf", "import", "w.gguf", "--out", "w.safetensors"],
    ));
    let bytes = std::fs::read(dir.join("w.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), 5);
    let back = st.tensor(QUERY).unwrap();
    assert_eq!(back.dtype(), safetensors::Dtype::F32);
    assert_eq!(back.shape(), &[384, 384]);
    let original = f32_values(
        &std::fs::read(
            Path::new(WEIGHTS)
                .join("minilm-l6-v2__encoder.layer.0.attention.self.query.weight.f32"),
        )
        .unwrap(),
    );
    let (signal, noise) = original
        .iter()
        .zip(f32_values(back.data()))
        .fold((0.0f64, 0.0f64), |(s, n), (&a, b)| {
            (s + f64::from(a).powi(2), n + f64::from(a - b).powi(2))
        });
    let snr = 10.0 * (signal / noise).log10();
    assert!(snr > 40.0, "Q8_0 through GGUF and back: {snr} dB");

    // The summary, and the safetensors file exported again.
    let summary = ok(run(&dir, &["gguf", "import", "w.gguf"]));
    assert!(summary.stdout.contains(QUERY) && summary.stdout.contains("Q8_0 (8)"));
    let again = ok(run(
        &dir,
        &[
            "gguf",
            "export",
            "w.safetensors",
            "--out",
            "again.gguf",
            "--format",
            "bf16",
        ],
    ));
    assert!(again.stdout.contains("5 BF16"), "{}", again.stdout);
    let text = ok(run(&dir, &["gguf", "info", "again.gguf"]));
    assert!(text.stdout.contains("GGUF version 3") && text.stdout.contains("BF16 (30)"));
}

#[test]
fn a_plan_chooses_each_format_and_is_kept() {
    let dir = scratch_dir("gguf_plan");
    let plan = serde_json::json!({"tensors": [
        {"name": DENSE, "format": "Q4_K"},
        {"name": QUERY, "format": "Q4_K"},
        {"name": NORM, "format": "F32"},
    ]});
    std::fs::write(dir.join("plan.json"), plan.to_string()).unwrap();
    let out = ok(run(
        &dir,
        &[
            "gguf",
            "export",
            WEIGHTS,
            "--out",
            "p.gguf",
            "--plan",
            "plan.json",
            "--format",
            "q8_0",
        ],
    ));
    // Rows of 384 are not whole super-blocks of 256: the query falls back to F16.
    assert!(
        out.stdout.contains(QUERY) && out.stdout.contains("in F16"),
        "{}",
        out.stdout
    );
    let doc = info(&dir, "p.gguf");
    assert_eq!(tensor(&doc, DENSE)["type"], "Q4_K");
    assert_eq!(tensor(&doc, QUERY)["type"], "F16");
    assert_eq!(tensor(&doc, NORM)["type"], "F32");
    assert_eq!(
        tensor(&doc, "minilm-l6-v2/embeddings.position_embeddings.weight")["type"],
        "Q8_0"
    );
    assert_eq!(doc["metadata"]["nyxq.plan"]["value"], plan.to_string());

    // The error-minimising search gives other bytes of the same size.
    ok(run(
        &dir,
        &[
            "gguf", "export", WEIGHTS, "--out", "n.gguf", "--format", "q4_0",
        ],
    ));
    ok(run(
        &dir,
        &[
            "gguf",
            "export",
            WEIGHTS,
            "--out",
            "e.gguf",
            "--format",
            "q4_0",
            "--error-minimising",
        ],
    ));
    let (nearest, searched) = (
        std::fs::read(dir.join("n.gguf")).unwrap(),
        std::fs::read(dir.join("e.gguf")).unwrap(),
    );
    assert_eq!(nearest.len(), searched.len());
    assert_ne!(nearest, searched);
}

#[test]
fn bad_input_is_a_message_and_failed_quantization_leaves_no_file() {
    let dir = scratch_dir("gguf_errors");
    std::fs::write(dir.join("not.gguf"), b"GGUX and more bytes than that").unwrap();
    for (args, words) in [
        (vec!["gguf", "info", "not.gguf"], "not a GGUF file"),
        (vec!["gguf", "info", "missing.gguf"], "cannot read"),
        (vec!["gguf", "import", "not.gguf"], "not a GGUF file"),
        (
            vec![
                "gguf", "export", WEIGHTS, "--out", "x.gguf", "--format", "q9",
            ],
            "unknown format name",
        ),
        (vec!["gguf", "export", WEIGHTS], "--out"),
        (
            vec![
                "gguf", "export", WEIGHTS, "--out", "x.gguf", "--plan", "not.gguf",
            ],
            "not a plan",
        ),
        (vec!["gguf", "frobnicate"], "usage"),
    ] {
        let r = run(&dir, &args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(words), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
    // A NaN cannot be quantized: status 1, and the partial file is removed.
    let nan: Vec<u8> = [1.0f32, f32::NAN]
        .iter()
        .cycle()
        .take(64)
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 32], &nan).unwrap();
    safetensors::tensor::serialize_to_file([("w", view)], None, &dir.join("nan.safetensors"))
        .unwrap();
    let r = run(
        &dir,
        &[
            "gguf",
            "export",
            "nan.safetensors",
            "--out",
            "nan.gguf",
            "--format",
            "q8_0",
        ],
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("tensor 'w'"), "{}", r.stderr);
    assert!(!dir.join("nan.gguf").exists());
}
