//! `nyxq validate INPUT... [--format F]... [--config FILE] [--min-snr DB] [--json]`:
//! quantizes every tensor of a weight set into each format asked for, restores
//! it, and checks the error against a threshold. Exit status 0 when every check
//! passes, 1 when one fails, 2 for bad arguments or unreadable input.

use crate::UsageError;
use crate::weights::{TensorEntry, WeightSet};
use nyxq::Format;
use nyxq::config::QuantConfig;
use nyxq::format::ALL_FORMATS;
use nyxq::quant::{self, ErrorMetrics, QuantizeOptions};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

pub const USAGE: &str = "usage: nyxq validate DIR|MANIFEST.json|FILE.safetensors... [--format F]... \
[--config FILE] [--min-snr DB] [--json]";

/// What a restored tensor must reach to pass.
#[derive(Debug, Clone)]
enum Threshold {
    /// `--min-snr`: one SNR for every format.
    MinSnr(f64),
    /// The config's `[quantization] accuracy_threshold`: the least cosine
    /// similarity, as the planner enforces it.
    Config { min_cosine: f64, origin: String },
    /// No threshold given: [`default_min_snr`] per format.
    Default,
}

/// The SNR each format must reach when no threshold is given: a few dB under
/// the worst tensor of the committed MiniLM weights (data/weights: F16 73,
/// BF16 55, Q8_0 43, Q4_0 19, Q4_1 22, Q5_0 25, IQ4_NL 21 dB), so a failure points at a tensor
/// that is harder to quantize than ordinary weights. F32 must be exact.
fn default_min_snr(format: Format) -> f64 {
    match format {
        Format::F32 => f64::INFINITY,
        Format::F16 => 60.0,
        Format::BF16 => 45.0,
        Format::Q8_0 => 35.0,
        Format::Q4_0 | Format::Q4_1 | Format::IQ4_NL => 15.0,
        Format::Q5_0 => 21.0,
        Format::Q4_K => 18.0,
        Format::Q5_K => 24.0,
        Format::Q6_K => 30.0,
    }
}

impl Threshold {
    /// (least SNR in dB, least cosine) for `format`; one of them is None.
    fn limits(&self, format: Format) -> (Option<f64>, Option<f64>) {
        match self {
            Threshold::MinSnr(db) => (Some(*db), None),
            Threshold::Config { min_cosine, .. } => (None, Some(*min_cosine)),
            Threshold::Default => (Some(default_min_snr(format)), None),
        }
    }

    fn passes(&self, format: Format, m: &ErrorMetrics) -> bool {
        let (snr, cosine) = self.limits(format);
        snr.is_none_or(|db| m.snr_db >= db) && cosine.is_none_or(|c| m.cosine >= c)
    }

    fn source(&self) -> &'static str {
        match self {
            Threshold::MinSnr(_) => "min-snr",
            Threshold::Config { .. } => "config",
            Threshold::Default => "default",
        }
    }

    fn describe(&self) -> String {
        match self {
            Threshold::MinSnr(db) => format!("SNR >= {db} dB (--min-snr)"),
            Threshold::Config { min_cosine, origin } => {
                format!("cosine >= {min_cosine} (accuracy_threshold of {origin})")
            }
            Threshold::Default => format!(
                "default SNR per format: {}",
                ALL_FORMATS
                    .iter()
                    .map(|f| match default_min_snr(*f) {
                        db if db.is_infinite() => format!("{} exact", f.name()),
                        db => format!("{} >= {db} dB", f.name()),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

struct Options {
    inputs: Vec<PathBuf>,
    formats: Vec<Format>,
    threshold: Threshold,
    json: bool,
}

fn parse_args(args: &[String]) -> Result<Options, UsageError> {
    let usage = |reason: String| UsageError(format!("{reason}\n{USAGE}"));
    let mut inputs = Vec::new();
    let mut formats = Vec::new();
    let (mut config, mut min_snr, mut json) = (None, None, false);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| usage(format!("{flag} needs a value")))
        };
        match arg.as_str() {
            "--json" => json = true,
            "--format" => {
                for name in value("--format")?.split(',') {
                    let format = Format::from_name(name).map_err(|_| {
                        usage(format!(
                            "unknown format '{name}' (known: {})",
                            ALL_FORMATS.map(Format::name).join(", ")
                        ))
                    })?;
                    if !formats.contains(&format) {
                        formats.push(format);
                    }
                }
            }
            "--config" => config = Some(PathBuf::from(value("--config")?)),
            "--min-snr" => {
                let text = value("--min-snr")?;
                let db: f64 = text
                    .parse()
                    .ok()
                    .filter(|db: &f64| db.is_finite())
                    .ok_or_else(|| usage(format!("--min-snr '{text}' is not a number of dB")))?;
                min_snr = Some(db);
            }
            flag if flag.starts_with("--") => return Err(usage(format!("unknown option {flag}"))),
            input => inputs.push(PathBuf::from(input)),
        }
    }
    if inputs.is_empty() {
        return Err(usage("no weight set given".to_string()));
    }
    if formats.is_empty() {
        formats = ALL_FORMATS.to_vec();
    }
    let threshold = match (min_snr, config) {
        (Some(db), _) => Threshold::MinSnr(db),
        (None, Some(path)) => {
            let cfg = QuantConfig::load(&path).map_err(|e| UsageError(e.to_string()))?;
            Threshold::Config {
                min_cosine: cfg.accuracy_threshold,
                origin: cfg.origin,
            }
        }
        (None, None) => Threshold::Default,
    };
    Ok(Options {
        inputs,
        formats,
        threshold,
        json,
    })
}

/// The result of one tensor in one format.
enum Outcome {
    Measured {
        metrics: ErrorMetrics,
        pass: bool,
    },
    /// The format cannot hold this tensor (a partial block): not a failure.
    Unsupported(String),
    /// Quantizing refused the values (NaN, ±Inf, out of range): a failure.
    Refused(String),
}

fn check(
    values: &[f32],
    format: Format,
    threshold: &Threshold,
    threads: usize,
) -> Result<Outcome, String> {
    if let Err(e) = format.check_count(values.len()) {
        return Ok(Outcome::Unsupported(e.message().to_string()));
    }
    let mut packed = vec![0u8; format.size_of(values.len()).map_err(|e| e.to_string())?];
    let opts = QuantizeOptions {
        threads,
        ..Default::default()
    };
    if let Err(e) = quant::quantize(format, values, &mut packed, &opts) {
        return Ok(Outcome::Refused(e.to_string()));
    }
    let mut restored = vec![0.0f32; values.len()];
    quant::dequantize(format, &packed, &mut restored, threads).map_err(|e| e.to_string())?;
    let metrics = quant::measure(values, &restored);
    Ok(Outcome::Measured {
        metrics,
        pass: threshold.passes(format, &metrics),
    })
}

/// A finite number, or null (JSON has no infinity; `exact` tells an infinite SNR).
fn number(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

fn outcome_json(format: Format, threshold: &Threshold, outcome: &Outcome) -> Value {
    let (min_snr, min_cosine) = threshold.limits(format);
    let mut row = json!({
        "format": format.name(),
        "min_snr_db": min_snr.map_or(Value::Null, number),
        "exact_required": min_snr == Some(f64::INFINITY),
        "min_cosine": min_cosine,
    });
    let fields = match outcome {
        Outcome::Measured { metrics, pass } => json!({
            "status": if *pass { "pass" } else { "fail" },
            "snr_db": number(metrics.snr_db),
            "exact": metrics.rmse == 0.0,
            "max_abs_error": number(metrics.max_abs),
            "rmse": number(metrics.rmse),
            "cosine": number(metrics.cosine),
            "reason": null,
        }),
        Outcome::Unsupported(why) => json!({"status": "unsupported", "reason": why}),
        Outcome::Refused(why) => json!({"status": "fail", "reason": why}),
    };
    if let (Some(row), Value::Object(fields)) = (row.as_object_mut(), fields) {
        row.extend(fields);
    }
    row
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Measured { metrics: m, pass } => format!(
            "{:>8} {:>12.3e} {:>10.6}  {}",
            if m.snr_db.is_infinite() && m.snr_db > 0.0 {
                "inf".to_string()
            } else {
                format!("{:.2}", m.snr_db)
            },
            m.max_abs,
            m.cosine,
            if *pass { "pass" } else { "FAIL" }
        ),
        Outcome::Unsupported(why) => format!("{:>33}  unsupported: {why}", "-"),
        Outcome::Refused(why) => format!("{:>33}  FAIL: {why}", "-"),
    }
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    unsupported: usize,
}

impl Tally {
    fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Measured { pass: true, .. } => self.passed += 1,
            Outcome::Measured { pass: false, .. } | Outcome::Refused(_) => self.failed += 1,
            Outcome::Unsupported(_) => self.unsupported += 1,
        }
    }
}

fn tensor_json(t: &TensorEntry, rows: Vec<Value>) -> Value {
    json!({
        "name": t.name,
        "file": t.file.display().to_string(),
        "stored_as": t.stored.name(),
        "shape": t.shape,
        "elements": t.elements(),
        "formats": rows,
    })
}

pub fn run(args: &[String]) -> Result<ExitCode, UsageError> {
    let opts = parse_args(args)?;
    let set = WeightSet::open(&opts.inputs).map_err(UsageError)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let name_width = set
        .tensors
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(0)
        .max(6);
    if !opts.json {
        println!(
            "nyxq validate: {} tensors, {} weights; threshold: {}",
            set.tensors.len(),
            set.total_elements(),
            opts.threshold.describe()
        );
        for s in &set.skipped {
            println!("skipped {} in {}: {}", s.name, s.file.display(), s.reason);
        }
        println!(
            "\n{:<name_width$} {:<6} {:>8} {:>12} {:>10}  result",
            "tensor", "format", "SNR dB", "max abs err", "cosine"
        );
    }
    let mut tally = Tally::default();
    let mut tensors_json = Vec::new();
    for tensor in &set.tensors {
        let values = tensor.load().map_err(UsageError)?;
        let mut rows = Vec::new();
        for &format in &opts.formats {
            let outcome = check(&values, format, &opts.threshold, threads)
                .map_err(|e| UsageError(format!("{}: {e}", tensor.name)))?;
            tally.add(&outcome);
            if opts.json {
                rows.push(outcome_json(format, &opts.threshold, &outcome));
            } else {
                println!(
                    "{:<name_width$} {:<6} {}",
                    tensor.name,
                    format.name(),
                    outcome_text(&outcome)
                );
            }
        }
        if opts.json {
            tensors_json.push(tensor_json(tensor, rows));
        }
    }
    let all_pass = tally.failed == 0;
    if opts.json {
        let report = json!({
            "inputs": opts.inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "threshold": {
                "source": opts.threshold.source(),
                "description": opts.threshold.describe(),
            },
            "skipped": set.skipped.iter().map(|s| json!({
                "name": s.name,
                "file": s.file.display().to_string(),
                "reason": s.reason,
            })).collect::<Vec<_>>(),
            "tensors": tensors_json,
            "summary": {
                "checks": tally.passed + tally.failed + tally.unsupported,
                "passed": tally.passed,
                "failed": tally.failed,
                "unsupported": tally.unsupported,
                "pass": all_pass,
            },
        });
        println!("{report:#}");
    } else {
        println!(
            "\n{} checks: {} passed, {} failed, {} unsupported: {}",
            tally.passed + tally.failed + tally.unsupported,
            tally.passed,
            tally.failed,
            tally.unsupported,
            if all_pass { "PASS" } else { "FAIL" }
        );
    }
    Ok(if all_pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
