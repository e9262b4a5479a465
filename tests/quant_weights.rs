//! On the real weights committed in data/weights: error-minimising rounding
//! beats nearest rounding's SNR for Q4_0, Q4_1, Q5_0 and IQ4_NL on every tensor, and
//! per-column importance lowers the weighted error it is given.

use nyxq::Format;
use nyxq::quant::{self, QuantizeOptions, Rounding};
use std::path::PathBuf;

/// Every tensor of the committed weights, sorted by file name. They are part
/// of the repository, so a missing folder is a failure, never a skip.
fn weights() -> Vec<(String, Vec<f32>)> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/weights"));
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the committed weights {} are missing: {e}", dir.display()));
    let mut tensors: Vec<(String, Vec<f32>)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "f32"))
        .map(|p| {
            let values = nyxq::data::read_f32_file(&p).unwrap();
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                values,
            )
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        tensors.len() >= 5,
        "{} holds {} tensors",
        dir.display(),
        tensors.len()
    );
    tensors
}

fn snr(format: Format, x: &[f32], rounding: Rounding) -> f64 {
    let mut q = vec![0u8; format.size_of(x.len()).unwrap()];
    let opts = QuantizeOptions {
        rounding,
        threads: 2,
        ..Default::default()
    };
    quant::quantize(format, x, &mut q, &opts).unwrap();
    let mut y = vec![0.0; x.len()];
    quant::dequantize(format, &q, &mut y, 2).unwrap();
    quant::measure(x, &y).snr_db
}

#[test]
fn error_minimising_beats_nearest_on_every_real_tensor() {
    let tensors = weights();
    let formats = [Format::Q4_0, Format::Q4_1, Format::Q5_0, Format::IQ4_NL];
    print!("{:<64}", "tensor");
    for format in formats {
        print!(" {:>8} {:>8}", format.name(), "err-min");
    }
    println!();
    for (name, x) in &tensors {
        print!("{name:<64}");
        for format in formats {
            let nearest = snr(format, x, Rounding::Nearest);
            let searched = snr(format, x, Rounding::ErrorMinimising);
            print!(" {nearest:>8.2} {searched:>8.2}");
            assert!(
                searched > nearest,
                "{name}: {} error-minimising {searched:.2} dB <= nearest {nearest:.2} dB",
                format.name()
            );
        }
        println!();
    }
}

#[test]
fn per_column_importance_lowers_the_weighted_error() {
    let tensors = weights();
    let (name, x) = tensors
        .iter()
        .find(|(n, _)| n.contains("attention.self.query"))
        .expect("the query weight is in data/weights");
    let cols = 384;
    // Weight every seventh column 20x, as activation statistics might (a weight
    // that is the same across a whole block cannot change that block's choice).
    let importance: Vec<f32> = (0..cols)
        .map(|c| if c % 7 == 0 { 20.0 } else { 1.0 })
        .collect();
    let weighted_error = |opts: &QuantizeOptions| {
        let mut q = vec![0u8; Format::Q4_0.size_of(x.len()).unwrap()];
        quant::quantize(Format::Q4_0, x, &mut q, opts).unwrap();
        let mut y = vec![0.0; x.len()];
        quant::dequantize(Format::Q4_0, &q, &mut y, 1).unwrap();
        x.iter()
            .zip(&y)
            .enumerate()
            .map(|(i, (a, b))| f64::from(importance[i % cols]) * f64::from(a - b).powi(2))
            .sum::<f64>()
    };
    let plain = weighted_error(&QuantizeOptions {
        rounding: Rounding::ErrorMinimising,
        ..Default::default()
    });
    let guided = weighted_error(&QuantizeOptions {
        rounding: Rounding::ErrorMinimising,
        importance: Some(&importance),
        ..Default::default()
    });
    println!("{name}: weighted error {plain:.4} unweighted search, {guided:.4} with importance");
    assert!(guided < plain);
}

/// The median of per-tensor SNRs (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

#[test]
fn k_quants_reach_their_accuracy_targets() {
    // (format, the median SNR in dB its best mode must reach). A tensor is
    // quantized flat, so it counts when its element count is whole
    // super-blocks (every matrix here; not the LayerNorm gain of 384).
    let targets = [
        (Format::Q4_K, 23.0),
        (Format::Q5_K, 28.0),
        (Format::Q6_K, 33.0),
    ];
    let tensors = weights();
    for (format, target) in targets {
        let mut snrs = Vec::new();
        let mut worst = (f64::INFINITY, String::new());
        println!("{}:", format.name());
        for (name, x) in tensors
            .iter()
            .filter(|(_, x)| format.check_count(x.len()).is_ok())
        {
            let nearest = snr(format, x, Rounding::Nearest);
            let searched = snr(format, x, Rounding::ErrorMinimising);
            println!("  {name:<64} nearest {nearest:>6.2} err-min {searched:>6.2}");
            assert!(
                searched > nearest,
                "{name}: {} error-minimising {searched:.2} dB <= nearest {nearest:.2} dB",
                format.name()
            );
            if searched < worst.0 {
                worst = (searched, name.clone());
            }
            snrs.push(searched);
        }
        let median = median(snrs);
        println!(
            "  median {median:.3} dB (target {target}), worst {:.2} dB ({})",
            worst.0, worst.1
        );
        assert!(
            median >= target,
            "{}: median {median:.2} dB is below the target {target} dB",
            format.name()
        );
    }
}
