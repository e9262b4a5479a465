//! `nyxq formats [DIR]`: quantizes every tensor of a weight folder (raw f32 files
//! listed in DIR/tensors.tsv) into every format and prints what each costs and
//! keeps: bits per weight, memory against FP32, error, and throughput.

use nyxq::Format;
use nyxq::format::ALL_FORMATS;
use nyxq::quant::{self, QuantizeOptions, Rounding};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One tensor read from the folder.
struct WeightTensor {
    name: String,
    values: Vec<f32>,
}

fn read_tensors(dir: &Path) -> Result<Vec<WeightTensor>, String> {
    let listing = dir.join("tensors.tsv");
    let text = std::fs::read_to_string(&listing)
        .map_err(|e| format!("cannot read {}: {e}", listing.display()))?;
    let mut tensors = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let file = line.split('\t').next().unwrap_or_default();
        let path = dir.join(file);
        let values = nyxq::data::read_f32_file(&path)
            .map_err(|e| format!("{}:{}: {e}", listing.display(), line_no + 1))?;
        let name = short_name(file);
        tensors.push(WeightTensor { name, values });
    }
    if tensors.is_empty() {
        return Err(format!("{} lists no tensors", listing.display()));
    }
    Ok(tensors)
}

/// "minilm-l6-v2__encoder.layer.0.output.dense.weight.f32" -> "layer.0.output.dense".
fn short_name(file: &str) -> String {
    let name = file.trim_end_matches(".f32");
    let name = name.rsplit("__").next().unwrap_or(name);
    let name = name.strip_prefix("encoder.").unwrap_or(name);
    name.strip_suffix(".weight").unwrap_or(name).to_string()
}

/// Runs `f` until at least 50 ms have passed and returns the median time of one run.
fn time_median(mut f: impl FnMut()) -> Duration {
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 5 || (start.elapsed() < Duration::from_millis(50) && samples.len() < 1000)
    {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    samples.sort();
    samples[samples.len() / 2]
}

struct Row {
    label: String,
    format: Format,
    snr_db: f64,
    rmse: f64,
    worst_snr: (f64, String),
    quantize_gbs: f64,
    dequantize_gbs: f64,
}

fn measure(
    tensors: &[WeightTensor],
    format: Format,
    rounding: Rounding,
    label: &str,
    threads: usize,
) -> Result<Row, String> {
    let opts = QuantizeOptions {
        rounding,
        threads,
        ..Default::default()
    };
    let (mut signal, mut noise, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut worst = (f64::INFINITY, String::new());
    let (mut quant_time, mut dequant_time, mut bytes_f32) = (0.0f64, 0.0f64, 0usize);
    for t in tensors {
        let n = t.values.len();
        let mut packed = vec![0u8; format.size_of(n).map_err(|e| e.to_string())?];
        let mut restored = vec![0.0f32; n];
        quant::quantize(format, &t.values, &mut packed, &opts)
            .map_err(|e| format!("{}: {e}", t.name))?;
        quant::dequantize(format, &packed, &mut restored, threads).map_err(|e| e.to_string())?;
        let m = quant::measure(&t.values, &restored);
        if m.snr_db < worst.0 {
            worst = (m.snr_db, t.name.clone());
        }
        for (&x, &y) in t.values.iter().zip(&restored) {
            signal += f64::from(x) * f64::from(x);
            noise += (f64::from(x) - f64::from(y)).powi(2);
        }
        count += n;
        quant_time += time_median(|| {
            quant::quantize(format, &t.values, &mut packed, &opts).expect("quantized once already")
        })
        .as_secs_f64();
        dequant_time += time_median(|| {
            quant::dequantize(format, &packed, &mut restored, threads)
                .expect("dequantized once already")
        })
        .as_secs_f64();
        bytes_f32 += n * 4;
    }
    Ok(Row {
        label: label.to_string(),
        format,
        snr_db: if noise == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (signal / noise).log10()
        },
        rmse: (noise / count as f64).sqrt(),
        worst_snr: worst,
        quantize_gbs: bytes_f32 as f64 / quant_time / 1e9,
        dequantize_gbs: bytes_f32 as f64 / dequant_time / 1e9,
    })
}

fn default_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/weights"))
}

pub fn run(args: &[String]) -> Result<(), String> {
    let dir = args.first().map(PathBuf::from).unwrap_or_else(default_dir);
    let tensors = read_tensors(&dir)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let total: usize = tensors.iter().map(|t| t.values.len()).sum();
    println!(
        "nyxq {}: {} tensors, {} weights ({:.1} MB of FP32) from {}; {threads} threads\n",
        env!("CARGO_PKG_VERSION"),
        tensors.len(),
        total,
        total as f64 * 4.0 / 1e6,
        dir.display()
    );
    let mut rows = Vec::new();
    for format in ALL_FORMATS {
        rows.push(measure(
            &tensors,
            format,
            Rounding::Nearest,
            format.name(),
            threads,
        )?);
        if matches!(format, Format::Q4_0 | Format::Q4_1 | Format::Q8_0) {
            let label = format!("{} (err-min)", format.name());
            rows.push(measure(
                &tensors,
                format,
                Rounding::ErrorMinimising,
                &label,
                threads,
            )?);
        }
    }
    println!(
        "{:<16} {:>5} {:>9} {:>10} {:>9} {:>36} {:>8} {:>8}",
        "format", "bits", "vs FP32", "RMSE", "SNR dB", "worst tensor (SNR dB)", "quant", "dequant"
    );
    println!(
        "{:<16} {:>5} {:>9} {:>10} {:>9} {:>36} {:>8} {:>8}",
        "", "/wt", "memory", "", "", "", "GB/s", "GB/s"
    );
    for r in &rows {
        let worst = format!("{} {:.1}", r.worst_snr.1, r.worst_snr.0);
        println!(
            "{:<16} {:>5.1} {:>8.1}% {:>10.3e} {:>9.2} {:>36} {:>8.2} {:>8.2}",
            r.label,
            r.format.bits_per_weight(),
            100.0 * r.format.bits_per_weight() / 32.0,
            r.rmse,
            r.snr_db,
            worst,
            r.quantize_gbs,
            r.dequantize_gbs
        );
    }
    println!(
        "\nSNR = 10·log10(Σx²/Σ(x−x̂)²) over all tensors (inf = exact); GB/s counts FP32 bytes."
    );
    Ok(())
}
