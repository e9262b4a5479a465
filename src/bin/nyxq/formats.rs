//! `nyxq formats INPUT... [--json]`: quantizes every tensor of a weight set (see
//! `weights.rs`) into every format and prints what each costs and keeps: bits
//! per weight, memory against FP32, error, and throughput.

use crate::UsageError;
use crate::weights::WeightSet;
use nyxq::Format;
use nyxq::format::ALL_FORMATS;
use nyxq::quant::{self, QuantizeOptions, Rounding};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub const USAGE: &str = "usage: nyxq formats DIR|MANIFEST.json|FILE.safetensors...";

/// "minilm-l6-v2/encoder.layer.0.output.dense.weight" -> "layer.0.output.dense".
fn short_name(name: &str) -> String {
    let name = name.rsplit('/').next().unwrap_or(name);
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

/// One line of the table: a format and rounding, summed over every tensor.
struct Row {
    label: String,
    format: Format,
    rounding: Rounding,
    signal: f64,
    noise: f64,
    count: usize,
    /// The tensor with the lowest SNR, and that SNR.
    worst: (f64, String),
    /// Each measured tensor's own SNR.
    tensor_snrs: Vec<f64>,
    quant_seconds: f64,
    dequant_seconds: f64,
    /// Tensors left out because the format cannot hold them (partial blocks).
    left_out: Vec<String>,
}

impl Row {
    fn new(format: Format, rounding: Rounding) -> Row {
        Row {
            label: match rounding {
                Rounding::ErrorMinimising => format!("{} (err-min)", format.name()),
                _ => format.name().to_string(),
            },
            format,
            rounding,
            signal: 0.0,
            noise: 0.0,
            count: 0,
            worst: (f64::INFINITY, String::new()),
            tensor_snrs: Vec::new(),
            quant_seconds: 0.0,
            dequant_seconds: 0.0,
            left_out: Vec::new(),
        }
    }

    /// Adds one tensor's error and timings.
    fn add(&mut self, name: &str, values: &[f32], threads: usize) -> Result<(), String> {
        let opts = QuantizeOptions {
            rounding: self.rounding,
            threads,
            ..Default::default()
        };
        let (format, n) = (self.format, values.len());
        if format.check_count(n).is_err() {
            self.left_out.push(name.to_string());
            return Ok(());
        }
        let size = format
            .size_of(n)
            .map_err(|e| format!("{name} in {}: {e}", format.name()))?;
        let mut packed = vec![0u8; size];
        let mut restored = vec![0.0f32; n];
        quant::quantize(format, values, &mut packed, &opts)
            .map_err(|e| format!("{name} in {}: {e}", format.name()))?;
        quant::dequantize(format, &packed, &mut restored, threads).map_err(|e| e.to_string())?;
        let m = quant::measure(values, &restored);
        if m.snr_db < self.worst.0 {
            self.worst = (m.snr_db, short_name(name));
        }
        self.tensor_snrs.push(m.snr_db);
        for (&x, &y) in values.iter().zip(&restored) {
            self.signal += f64::from(x) * f64::from(x);
            self.noise += (f64::from(x) - f64::from(y)).powi(2);
        }
        self.count += n;
        self.quant_seconds += time_median(|| {
            quant::quantize(format, values, &mut packed, &opts).expect("quantized once already")
        })
        .as_secs_f64();
        self.dequant_seconds += time_median(|| {
            quant::dequantize(format, &packed, &mut restored, threads)
                .expect("dequantized once already")
        })
        .as_secs_f64();
        Ok(())
    }

    /// SNR over every tensor together (inf = exact).
    fn snr_db(&self) -> f64 {
        if self.noise == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (self.signal / self.noise).log10()
        }
    }

    /// The median of the per-tensor SNRs (the mean of the middle two for an
    /// even count; NaN without a tensor).
    fn median_snr_db(&self) -> f64 {
        let mut snrs = self.tensor_snrs.clone();
        snrs.sort_by(f64::total_cmp);
        let mid = snrs.len() / 2;
        match snrs.len() {
            0 => f64::NAN,
            n if n % 2 == 0 => (snrs[mid - 1] + snrs[mid]) / 2.0,
            _ => snrs[mid],
        }
    }

    fn rmse(&self) -> f64 {
        (self.noise / self.count.max(1) as f64).sqrt()
    }

    /// Throughput in GB/s of FP32 bytes over `seconds`.
    fn gbs(&self, seconds: f64) -> f64 {
        self.count as f64 * 4.0 / seconds / 1e9
    }

    fn json(&self) -> serde_json::Value {
        let number = |x: f64| x.is_finite().then_some(x);
        serde_json::json!({
            "label": self.label,
            "format": self.format.name(),
            "rounding": match self.rounding {
                Rounding::ErrorMinimising => "error-minimising",
                _ => "nearest",
            },
            "bits_per_weight": self.format.bits_per_weight(),
            "fraction_of_fp32": self.format.bits_per_weight() / 32.0,
            "rmse": self.rmse(),
            "snr_db": number(self.snr_db()),
            "median_snr_db": number(self.median_snr_db()),
            "exact": self.count > 0 && self.noise == 0.0,
            "worst_tensor": self.worst.1,
            "worst_snr_db": number(self.worst.0),
            "quantize_gbs": self.gbs(self.quant_seconds),
            "dequantize_gbs": self.gbs(self.dequant_seconds),
            "left_out": self.left_out,
        })
    }
}

pub fn run(args: &[String]) -> Result<(), UsageError> {
    let json = args.iter().any(|a| a == "--json");
    if let Some(flag) = args.iter().find(|a| a.starts_with('-') && *a != "--json") {
        return Err(UsageError(format!("unknown option {flag}\n{USAGE}")));
    }
    let inputs: Vec<PathBuf> = args
        .iter()
        .filter(|a| *a != "--json")
        .map(PathBuf::from)
        .collect();
    if inputs.is_empty() {
        return Err(UsageError(format!("no weight set given\n{USAGE}")));
    }
    let set = WeightSet::open(&inputs).map_err(UsageError)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = Vec::new();
    for format in ALL_FORMATS {
        rows.push(Row::new(format, Rounding::Nearest));
        if format.is_block() {
            rows.push(Row::new(format, Rounding::ErrorMinimising));
        }
    }
    // One tensor in memory at a time, every row measured on it.
    for tensor in &set.tensors {
        let values = tensor.load().map_err(UsageError)?;
        for row in &mut rows {
            row.add(&tensor.name, &values, threads)
                .map_err(UsageError)?;
        }
    }
    let total = set.total_elements();
    let sources: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    if json {
        let report = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "inputs": sources,
            "tensors": set.tensors.len(),
            "weights": total,
            "threads": threads,
            "skipped": set.skipped.iter().map(|s| serde_json::json!({
                "name": s.name,
                "file": s.file.display().to_string(),
                "reason": s.reason,
            })).collect::<Vec<_>>(),
            "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
        });
        println!("{report:#}");
        return Ok(());
    }
    println!(
        "nyxq {}: {} tensors, {} weights ({:.1} MB of FP32) from {}; {threads} threads",
        env!("CARGO_PKG_VERSION"),
        set.tensors.len(),
        total,
        total as f64 * 4.0 / 1e6,
        sources.join(", ")
    );
    for s in &set.skipped {
        println!("skipped {} in {}: {}", s.name, s.file.display(), s.reason);
    }
    println!();
    println!(
        "{:<16} {:>5} {:>9} {:>10} {:>9} {:>7} {:>36} {:>8} {:>8}",
        "format",
        "bits",
        "vs FP32",
        "RMSE",
        "SNR dB",
        "median",
        "worst tensor (SNR dB)",
        "quant",
        "dequant"
    );
    println!(
        "{:<16} {:>5} {:>9} {:>10} {:>9} {:>7} {:>36} {:>8} {:>8}",
        "", "/wt", "memory", "", "", "", "", "GB/s", "GB/s"
    );
    for r in &rows {
        let worst = format!("{} {:.1}", r.worst.1, r.worst.0);
        println!(
            "{:<16} {:>5.1} {:>8.1}% {:>10.3e} {:>9.2} {:>7.2} {:>36} {:>8.2} {:>8.2}",
            r.label,
            r.format.bits_per_weight(),
            100.0 * r.format.bits_per_weight() / 32.0,
            r.rmse(),
            r.snr_db(),
            r.median_snr_db(),
            worst,
            r.gbs(r.quant_seconds),
            r.gbs(r.dequant_seconds)
        );
    }
    // One line per block size that left tensors out: the 32-element block
    // formats', then the K-quants' super-blocks of 256.
    for (block, whose) in [(32, "the block formats'"), (256, "the K-quants'")] {
        if let Some(row) = rows
            .iter()
            .find(|r| r.format.block_size() == block && !r.left_out.is_empty())
        {
            println!(
                "\nNot whole blocks of {block}, so left out of {whose} rows: {}",
                row.left_out.join(", ")
            );
        }
    }
    println!(
        "\nSNR = 10·log10(Σx²/Σ(x−x̂)²) over all tensors (inf = exact); median = the \
         median of the tensors' own SNRs; GB/s counts FP32 bytes."
    );
    Ok(())
}
