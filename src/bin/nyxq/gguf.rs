//! `nyxq gguf export|import|info`: GGUF files from safetensors (or a weight
//! folder), back to safetensors, and what a GGUF file holds.

use crate::UsageError;
use crate::weights::{TensorEntry, WeightSet};
use nyxq::Format;
use nyxq::gguf::writer::{self, TensorSource};
use nyxq::gguf::{GgufFile, Value, ggml_type, reader};
use nyxq::quant::{self, QuantizeOptions, Rounding};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub const USAGE: &str = "\
usage: nyxq gguf export INPUT... --out FILE.gguf [--format F] [--plan PLAN.json]
                        [--config FILE] [--error-minimising] [--meta KEY=VALUE]...
         quantize F32/F16/BF16 tensors (safetensors or a weight folder) into a GGUF file:
         each into --format (default F16) or the format PLAN.json (nyxq plan --json) gives it;
         a tensor whose rows are not whole blocks of its format is written in F16
       nyxq gguf import FILE.gguf [--out FILE.safetensors]
         dequantize every tensor: to an F32 safetensors file, or a summary without --out
       nyxq gguf info FILE.gguf [--json]
         the version, metadata, tensors, types and sizes of a GGUF file";

/// Runs `nyxq gguf SUBCOMMAND ...`: exit status 2 for bad arguments or
/// input that cannot be read, 1 when quantizing or writing fails.
pub fn run(args: &[String]) -> Result<ExitCode, UsageError> {
    let usage = || UsageError(USAGE.to_string());
    let (sub, rest) = args.split_first().ok_or_else(usage)?;
    let done = match sub.as_str() {
        "export" => export(rest)?,
        "import" => import(rest)?,
        "info" => info(rest).map(Ok)?,
        _ => return Err(usage()),
    };
    Ok(done.map_or_else(
        |message| {
            eprintln!("nyxq: {message}");
            ExitCode::FAILURE
        },
        |()| ExitCode::SUCCESS,
    ))
}

/// What a command that read its input gives: Ok, or the failure's message.
type Outcome = Result<(), String>;

/// Splits arguments into inputs and `--flag value` options.
fn options(args: &[String], flags: &[&str], switches: &[&str]) -> Result<Parsed, UsageError> {
    let mut parsed = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if switches.contains(&arg.as_str()) {
            parsed.switches.push(arg.clone());
        } else if flags.contains(&arg.as_str()) {
            let value = args
                .get(i + 1)
                .ok_or_else(|| UsageError(format!("{arg} needs a value\n{USAGE}")))?;
            parsed.values.push((arg.clone(), value.clone()));
            i += 1;
        } else if arg.starts_with("--") {
            return Err(UsageError(format!("unknown option {arg}\n{USAGE}")));
        } else {
            parsed.inputs.push(PathBuf::from(arg));
        }
        i += 1;
    }
    Ok(parsed)
}

#[derive(Default)]
struct Parsed {
    inputs: Vec<PathBuf>,
    values: Vec<(String, String)>,
    switches: Vec<String>,
}

impl Parsed {
    fn value(&self, flag: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(f, _)| f == flag)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, flag: &str) -> impl Iterator<Item = &str> {
        self.values
            .iter()
            .filter(move |(f, _)| f == flag)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, switch: &str) -> bool {
        self.switches.iter().any(|s| s == switch)
    }

    fn one_input(&self) -> Result<&Path, UsageError> {
        match self.inputs.as_slice() {
            [one] => Ok(one),
            _ => Err(UsageError(format!("give one GGUF file\n{USAGE}"))),
        }
    }
}

fn read_text(path: &str) -> Result<String, UsageError> {
    std::fs::read_to_string(path).map_err(|e| UsageError(format!("cannot read {path}: {e}")))
}

/// Worker threads for quantizing and dequantizing: every core.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A tensor of the weight set, quantized when the writer asks for its bytes.
struct Export<'a> {
    entry: &'a TensorEntry,
    format: Format,
    rounding: Rounding,
}

impl TensorSource for Export<'_> {
    fn name(&self) -> &str {
        &self.entry.name
    }

    fn shape(&self) -> &[usize] {
        &self.entry.shape
    }

    fn format(&self) -> Format {
        self.format
    }

    fn with_bytes(&self, sink: &mut dyn FnMut(&[u8]) -> nyxq::Result<()>) -> nyxq::Result<()> {
        let values = self.entry.load().map_err(nyxq::Error::invalid)?;
        let mut bytes = vec![0u8; self.format.size_of(values.len())?];
        let opts = QuantizeOptions {
            rounding: self.rounding,
            threads: threads(),
            ..QuantizeOptions::default()
        };
        quant::quantize(self.format, &values, &mut bytes, &opts).map_err(|e| {
            nyxq::Error::new(
                e.kind(),
                format!("tensor '{}': {}", self.entry.name, e.message()),
            )
        })?;
        sink(&bytes)
    }
}

/// The format of each tensor a plan (`nyxq plan --json`) lists.
fn plan_formats(text: &str, path: &str) -> Result<HashMap<String, Format>, UsageError> {
    let bad = |why: String| UsageError(format!("{path}: not a plan of nyxq plan --json: {why}"));
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let tensors = json["tensors"]
        .as_array()
        .ok_or_else(|| bad("no \"tensors\" list".into()))?;
    tensors
        .iter()
        .map(|t| {
            let name = t["name"]
                .as_str()
                .ok_or_else(|| bad("a tensor without a name".into()))?;
            let format = t["format"]
                .as_str()
                .ok_or_else(|| bad(format!("'{name}' has no format")))?;
            let format = Format::from_name(format).map_err(|e| bad(e.message().to_string()))?;
            Ok((name.to_string(), format))
        })
        .collect()
}

fn export(args: &[String]) -> Result<Outcome, UsageError> {
    let p = options(
        args,
        &["--out", "--format", "--plan", "--config", "--meta"],
        &["--error-minimising"],
    )?;
    let out = p
        .value("--out")
        .ok_or_else(|| UsageError(format!("--out FILE.gguf is required\n{USAGE}")))?;
    if p.inputs.is_empty() {
        return Err(UsageError(format!("no input\n{USAGE}")));
    }
    let default_format = match p.value("--format") {
        Some(name) => Format::from_name(name).map_err(|e| UsageError(e.message().to_string()))?,
        None => Format::F16,
    };
    let mut metadata: Vec<(String, Value)> = Vec::new();
    let planned = match p.value("--plan") {
        Some(path) => {
            let text = read_text(path)?;
            let formats = plan_formats(&text, path)?;
            metadata.push(("nyxq.plan".into(), Value::String(text)));
            formats
        }
        None => HashMap::new(),
    };
    if let Some(path) = p.value("--config") {
        metadata.push(("nyxq.config".into(), Value::String(read_text(path)?)));
    }
    for pair in p.all("--meta") {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| UsageError(format!("--meta {pair}: give KEY=VALUE")))?;
        metadata.push((key.to_string(), Value::String(value.to_string())));
    }
    let rounding = if p.has("--error-minimising") {
        Rounding::ErrorMinimising
    } else {
        Rounding::Nearest
    };
    let set = WeightSet::open(&p.inputs).map_err(UsageError)?;
    let exports: Vec<Export> = set
        .tensors
        .iter()
        .map(|entry| {
            let wanted = planned.get(&entry.name).copied().unwrap_or(default_format);
            let row = entry.shape.last().copied().unwrap_or(1);
            let format = if row % wanted.block_size() == 0 {
                wanted
            } else {
                Format::F16
            };
            Export {
                entry,
                format,
                rounding,
            }
        })
        .collect();
    let sources: Vec<&dyn TensorSource> = exports.iter().map(|e| e as &dyn TensorSource).collect();
    writer::check(&metadata, &sources).map_err(|e| UsageError(e.message().to_string()))?;
    let path = Path::new(out);
    if let Err(e) = writer::write_to_path(path, &metadata, &sources) {
        return Ok(Err(format!("{out}: {} (nothing written)", e.message())));
    }
    let mut counts: Vec<(Format, usize)> = Vec::new();
    for e in &exports {
        match counts.iter_mut().find(|(f, _)| *f == e.format) {
            Some((_, n)) => *n += 1,
            None => counts.push((e.format, 1)),
        }
    }
    let summary: Vec<String> = counts
        .iter()
        .map(|(f, n)| format!("{n} {}", f.name()))
        .collect();
    let fallbacks: Vec<&str> = exports
        .iter()
        .filter(|e| {
            e.format == Format::F16
                && planned
                    .get(&e.entry.name)
                    .copied()
                    .unwrap_or(default_format)
                    != Format::F16
        })
        .map(|e| e.entry.name.as_str())
        .collect();
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    println!(
        "{out}: {} tensors ({}), {bytes} bytes",
        exports.len(),
        summary.join(", ")
    );
    if !fallbacks.is_empty() {
        println!(
            "in F16, their rows not whole blocks of the format asked for: {}",
            fallbacks.join(", ")
        );
    }
    Ok(Ok(()))
}

fn open(path: &Path) -> Result<GgufFile, UsageError> {
    reader::read_file(path).map_err(|e| UsageError(e.message().to_string()))
}

fn dequantized(file: &GgufFile, index: usize) -> Result<Vec<f32>, UsageError> {
    let fail = |e: nyxq::Error| UsageError(e.message().to_string());
    let info = &file.tensors[index];
    let format = info.require_format().map_err(fail)?;
    let bytes = file.tensor_bytes(index).map_err(fail)?;
    let mut values = vec![0.0f32; info.numel()];
    quant::dequantize(format, bytes, &mut values, threads()).map_err(fail)?;
    Ok(values)
}

fn import(args: &[String]) -> Result<Outcome, UsageError> {
    let p = options(args, &["--out"], &[])?;
    let file = open(p.one_input()?)?;
    file.require_formats()
        .map_err(|e| UsageError(e.message().to_string()))?;
    let Some(out) = p.value("--out") else {
        println!(
            "{:<56} {:>9} {:>16} {:>12} {:>12}",
            "tensor", "type", "shape", "mean |x|", "rms"
        );
        for (i, info) in file.tensors.iter().enumerate() {
            let values = dequantized(&file, i)?;
            let n = values.len().max(1) as f64;
            let mean_abs = values.iter().map(|v| f64::from(v.abs())).sum::<f64>() / n;
            let rms = (values.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / n).sqrt();
            println!(
                "{:<56} {:>9} {:>16} {mean_abs:>12.6} {rms:>12.6}",
                info.name,
                ggml_type::describe(info.ggml_type),
                format!("{:?}", info.shape)
            );
        }
        return Ok(Ok(()));
    };
    let mut buffers = Vec::with_capacity(file.tensors.len());
    for i in 0..file.tensors.len() {
        let values = dequantized(&file, i)?;
        let mut bytes = Vec::with_capacity(values.len() * 4);
        for v in &values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        buffers.push(bytes);
    }
    let views = file
        .tensors
        .iter()
        .zip(&buffers)
        .map(|(info, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, info.shape.clone(), bytes)
                .map(|view| (info.name.clone(), view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| UsageError(format!("{out}: {e}")))?;
    let strings: HashMap<String, String> = file
        .metadata
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
        .collect();
    if let Err(e) = safetensors::tensor::serialize_to_file(views, Some(strings), Path::new(out)) {
        return Ok(Err(format!("cannot write {out}: {e}")));
    }
    println!("{out}: {} tensors in F32", file.tensors.len());
    Ok(Ok(()))
}

fn info(args: &[String]) -> Result<(), UsageError> {
    let p = options(args, &[], &["--json"])?;
    let path = p.one_input()?;
    let file = open(path)?;
    let total: usize = file.tensors.iter().filter_map(|t| t.byte_len).sum();
    if p.has("--json") {
        let metadata: serde_json::Map<String, serde_json::Value> = file
            .metadata
            .iter()
            .map(|(k, v)| {
                let text = serde_json::json!({
                    "type": v.value_type().spec().name,
                    "value": v.to_text(64),
                });
                (k.clone(), text)
            })
            .collect();
        let tensors: Vec<serde_json::Value> = file
            .tensors
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "ggml_type": t.ggml_type,
                    "type": ggml_type::by_id(t.ggml_type).map(|g| g.name),
                    "nyxq_format": t.format.map(Format::name),
                    "shape": t.shape,
                    "offset": t.offset,
                    "bytes": t.byte_len,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "file": path.display().to_string(),
            "version": file.version,
            "alignment": file.alignment,
            "file_bytes": file.file_len(),
            "tensor_bytes": total,
            "metadata": metadata,
            "tensors": tensors,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    println!(
        "{}: GGUF version {}, alignment {}, {} bytes, {} tensors ({total} bytes of tensor data)",
        path.display(),
        file.version,
        file.alignment,
        file.file_len(),
        file.tensors.len()
    );
    println!("metadata ({} keys):", file.metadata.len());
    for (key, value) in &file.metadata {
        let mut text = value.to_text(8).replace('\n', "\\n");
        if text.chars().count() > 100 {
            text = text.chars().take(100).collect::<String>() + "…";
        }
        println!("  {key} ({}) = {text}", value.value_type().spec().name);
    }
    println!(
        "{:<56} {:>18} {:>20} {:>12}",
        "tensor", "type", "shape", "bytes"
    );
    for t in &file.tensors {
        let kind = match t.format {
            Some(_) => ggml_type::describe(t.ggml_type),
            None => format!("{} (not nyxq)", ggml_type::describe(t.ggml_type)),
        };
        let bytes = t
            .byte_len
            .map_or_else(|| "?".to_string(), |b| b.to_string());
        println!(
            "{:<56} {kind:>18} {:>20} {bytes:>12}",
            t.name,
            format!("{:?}", t.shape)
        );
    }
    Ok(())
}
