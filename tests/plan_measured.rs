//! Planning from measured error on the real weights committed in data/weights: the
//! fallback chain (INT4 → Q5_0 → INT8 → ...) acts on measured SNRs, and the
//! estimates used without data are close to what real weights measure.

use nyxq::Format;
use nyxq::plan::{ErrorSource, Hardware, Model, Plan, Policy, Role, TensorDesc, estimated_snr_db};
use std::path::Path;

const WEIGHTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/weights");

fn role_of(name: &str) -> Role {
    if name.contains("embeddings") {
        Role::Embedding
    } else if name.contains("attention") {
        Role::Attention
    } else if name.contains("LayerNorm") {
        Role::Norm
    } else if name.contains("bias") {
        Role::Bias
    } else {
        Role::Mlp
    }
}

/// The committed tensors with their data measured. They are part of the
/// repository, so a missing manifest is a failure, never a skip.
fn measured_model() -> Model {
    let manifest = Path::new(WEIGHTS).join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| {
        panic!(
            "the committed weights {} are missing: {e}",
            manifest.display()
        )
    });
    let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut tensors = Vec::new();
    for t in manifest["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let data = nyxq::data::read_f32_file(&Path::new(WEIGHTS).join(t["file"].as_str().unwrap()))
            .unwrap();
        let mut desc = TensorDesc::new(name, role_of(name), &shape).unwrap();
        desc.measure(&data, 2).unwrap();
        tensors.push(desc);
    }
    Model::new("minilm-dev", tensors).unwrap()
}

#[test]
fn measured_errors_drive_the_fallback_chain() {
    let model = measured_model();
    let mut q4: Vec<f64> = Vec::new();
    for t in &model.tensors {
        let snr = t.measured_snr_db.unwrap();
        let at = |f: Format| snr[f as usize];
        println!(
            "{:<70} Q4_0 {:>5.1}  IQ4_NL {:>5.1}  Q4_1 {:>5.1}  Q5_0 {:>5.1}  Q8_0 {:>5.1}  BF16 {:>5.1}  F16 {:>5.1}  (estimates {:.1} / {:.1} / {:.1})",
            t.name,
            at(Format::Q4_0),
            at(Format::IQ4_NL),
            at(Format::Q4_1),
            at(Format::Q5_0),
            at(Format::Q8_0),
            at(Format::BF16),
            at(Format::F16),
            estimated_snr_db(Format::Q4_0, t.role),
            estimated_snr_db(Format::Q5_0, t.role),
            estimated_snr_db(Format::Q8_0, t.role)
        );
        if t.row_len() % 32 == 0 {
            assert!(at(Format::Q4_0) < at(Format::Q5_0));
            assert!(at(Format::Q5_0) < at(Format::Q8_0));
            assert!(at(Format::Q8_0) < at(Format::F16));
            q4.push(at(Format::Q4_0));
            // The estimates used without data are within 4 dB of real weights.
            if !t.role.keeps_f32() {
                for f in [Format::Q4_0, Format::IQ4_NL, Format::Q5_0, Format::Q8_0] {
                    assert!((at(f) - estimated_snr_db(f, t.role)).abs() < 4.0, "{f:?}");
                }
            }
        }
        assert!(at(Format::BF16) < at(Format::F16));
    }
    q4.sort_by(f64::total_cmp);
    let threshold = q4[q4.len() / 2];
    let policy = Policy {
        min_snr_db: threshold,
        default_format: Some(Format::Q4_0),
        ..Policy::default()
    };
    let plan = Plan::create(
        &model,
        &Hardware::profile("intel-iris-xe-7gb").unwrap(),
        &policy,
    )
    .unwrap();
    let (mut kept, mut raised) = (0, 0);
    for (e, t) in plan.entries.iter().zip(&model.tensors) {
        if t.role.keeps_f32() {
            continue;
        }
        let snr = t.measured_snr_db.unwrap();
        let (q4_snr, q5_snr) = (snr[Format::Q4_0 as usize], snr[Format::Q5_0 as usize]);
        assert_eq!(e.error_source, ErrorSource::Measured);
        if q4_snr >= threshold {
            assert_eq!(e.format, Format::Q4_0, "{}", e.reason);
            kept += 1;
        } else {
            // One step up the chain: Q5_0, or Q8_0 where Q5_0 misses too.
            let expected = if q5_snr >= threshold {
                Format::Q5_0
            } else {
                Format::Q8_0
            };
            assert_eq!(e.format, expected, "{}", e.reason);
            assert!(
                e.reason.contains(&format!(
                    "Q4_0 SNR {q4_snr:.1} dB < {threshold:.1} dB threshold → Q5_0"
                )),
                "{}",
                e.reason
            );
            raised += 1;
        }
    }
    assert!(kept > 0 && raised > 0);
}
