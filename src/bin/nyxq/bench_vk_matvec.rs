//! `nyxq bench-vk-matvec [--quick] [--compat] [--no-transposed]
//! [--variant all|dot_pre|dot|f32|both] [--batches 1,2,4,8] [--json FILE]
//! [--iterations N]`: the Vulkan matrix-vector products (W·x, and xᵀ·W
//! unless --no-transposed) per format, shape and batch on device-resident
//! data (GPU timestamps), against the copy kernel measured in the same run.
//! W·x of the block formats runs in every arithmetic the device has (x
//! rounded once per product, `dot_pre`; x rounded in every workgroup, `dot`;
//! f32), unless --variant names some (`both`: `dot` and `f32`). Prints a
//! table with the variant that ran, then `dot_pre` beside `dot` (ratio to
//! the copy kernel, batch n over batch 1); `--json FILE` also writes the
//! numbers.

pub(crate) mod measure;

use measure::{Measurement, Report, Settings};
use nyxq::context::{BackendPreference, Context, ContextSettings};
use nyxq::format::Format;
use nyxq::vk::matvec::Arithmetic;
use nyxq::vk::shaders::MatvecVariant as Variant;

/// The shapes (rows, cols), and small ones for CI.
const SHAPES: [(usize, usize); 4] = [(4096, 4096), (8192, 8192), (16384, 16384), (11008, 4096)];
const QUICK_SHAPES: [(usize, usize); 2] = [(256, 256), (512, 1024)];

/// The arithmetics of the block formats' W·x, timed by default.
const ALL_ARITHMETICS: [Arithmetic; 3] = [
    Arithmetic::PreRounded,
    Arithmetic::IntegerDot,
    Arithmetic::F32,
];

struct Options {
    quick: bool,
    compat: bool,
    transposed: bool,
    json: Option<String>,
    iterations: Option<usize>,
    arithmetics: Vec<Arithmetic>,
    batches: Vec<u32>,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        quick: false,
        compat: false,
        transposed: true,
        json: None,
        iterations: None,
        arithmetics: ALL_ARITHMETICS.to_vec(),
        batches: vec![1, 8],
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => o.quick = true,
            "--compat" => o.compat = true,
            "--no-transposed" => o.transposed = false,
            "--variant" => {
                o.arithmetics = match it.next().map(String::as_str) {
                    Some("all") => ALL_ARITHMETICS.to_vec(),
                    Some("dot_pre") => vec![Arithmetic::PreRounded],
                    Some("f32") => vec![Arithmetic::F32],
                    Some("dot") => vec![Arithmetic::IntegerDot],
                    Some("both") => vec![Arithmetic::IntegerDot, Arithmetic::F32],
                    _ => return Err("--variant needs all, dot_pre, dot, f32 or both".to_string()),
                }
            }
            "--json" => o.json = Some(it.next().ok_or("--json needs a file")?.clone()),
            "--batches" => {
                let list = it.next().ok_or("--batches needs a list such as 1,2,4,8")?;
                o.batches = list
                    .split(',')
                    .map(|b| b.parse::<u32>().ok().filter(|b| (1..=8).contains(b)))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| format!("--batches: '{list}' is not a list of 1 to 8"))?;
            }
            "--iterations" => {
                o.iterations = Some(
                    it.next()
                        .and_then(|v| v.parse().ok())
                        .ok_or("--iterations needs a number")?,
                )
            }
            other => return Err(format!("bench-vk-matvec: unknown option '{other}'")),
        }
    }
    Ok(o)
}

/// Ratio of `m`'s time to the same shape and batch in `format`'s time
/// (how much faster `m` is), if measured.
fn speedup(report: &Report, m: &Measurement, format: Format) -> Option<f64> {
    report.find(m, format).map(|o| o.seconds / m.seconds)
}

fn product(m: &Measurement) -> &'static str {
    if m.transposed { "xT·W" } else { "W·x" }
}

fn variant(m: &Measurement) -> String {
    format!("{:?}", m.variant).to_lowercase()
}

pub(crate) fn cell(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.2}"))
}

/// GB/s with 3 significant digits (lavapipe is below 1, an H200 in the thousands).
pub(crate) fn gbps_cell(v: f64) -> String {
    let decimals = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.decimals$}")
}

fn print_table(report: &Report) {
    println!(
        "| product | format | variant | shape | batch | time (us) | weights GB/s | x copy | vs F32 | vs F16 | time / batch 1 |"
    );
    println!("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for m in &report.measurements {
        println!(
            "| {} | {} | {} | {}x{} | {} | {:.1} | {} | {:.2} | {} | {} | {} |",
            product(m),
            m.format.name(),
            variant(m),
            m.rows,
            m.cols,
            m.batch,
            m.seconds * 1e6,
            gbps_cell(m.gbps()),
            m.gbps() / report.copy_gbps,
            cell(speedup(report, m, Format::F32)),
            cell(speedup(report, m, Format::F16)),
            cell(report.batch_ratio(m)),
        );
    }
}

/// W·x with x rounded once per product (`dot_pre`) beside x rounded in
/// every workgroup (`dot`) on the same format, shape and batch: each one's
/// time, ratio to the copy kernel's bandwidth and time over its batch 1,
/// and how much faster `dot_pre` is.
fn print_pre_rounded_comparison(report: &Report) {
    let pairs: Vec<_> = report
        .measurements
        .iter()
        .filter(|m| m.variant == Variant::DotPre)
        .filter_map(|m| report.with_variant(m, Variant::Dot).map(|d| (m, d)))
        .collect();
    if pairs.is_empty() {
        return;
    }
    println!(
        "
W·x, x rounded once per product (dot_pre) beside x rounded in every workgroup (dot):
"
    );
    println!(
        "| format | shape | batch | dot_pre (us) | dot_pre x copy | dot_pre / batch 1 | dot (us) | dot x copy | dot / batch 1 | dot / dot_pre |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (pre, dot) in pairs {
        println!(
            "| {} | {}x{} | {} | {:.1} | {:.2} | {} | {:.1} | {:.2} | {} | {:.2} |",
            pre.format.name(),
            pre.rows,
            pre.cols,
            pre.batch,
            pre.seconds * 1e6,
            pre.gbps() / report.copy_gbps,
            cell(report.batch_ratio(pre)),
            dot.seconds * 1e6,
            dot.gbps() / report.copy_gbps,
            cell(report.batch_ratio(dot)),
            dot.seconds / pre.seconds,
        );
    }
}

fn json(report: &Report, device: &str, variants: &str) -> serde_json::Value {
    let rows: Vec<_> = report
        .measurements
        .iter()
        .map(|m| {
            serde_json::json!({
                "product": product(m),
                "format": m.format.name(),
                "variant": variant(m),
                "rows": m.rows,
                "cols": m.cols,
                "batch": m.batch,
                "seconds": m.seconds,
                "weight_bytes": m.weight_bytes,
                "weights_gbps": m.gbps(),
                "ratio_to_copy": m.gbps() / report.copy_gbps,
                "speedup_vs_f32": speedup(report, m, Format::F32),
                "speedup_vs_f16": speedup(report, m, Format::F16),
                "time_over_batch1": report.batch_ratio(m),
            })
        })
        .collect();
    serde_json::json!({
        "device": device,
        "variants": variants,
        "copy_gbps": report.copy_gbps,
        "timing": "GPU timestamps, median",
        "results": rows,
    })
}

pub fn run(args: &[String]) -> Result<(), String> {
    let o = options(args)?;
    let ctx = Context::new(&ContextSettings {
        backend: BackendPreference::Vulkan,
        vulkan_force_compat: o.compat,
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    let engine = ctx.vulkan().ok_or("no Vulkan device")?;
    let info = &engine.device.info;
    let device = format!("{} ({}, {})", info.name, info.driver_name, info.driver_info);
    let choice = engine.matvec();
    let compat = ctx.force_compat();
    let variants = format!(
        "F32/F16/BF16 {:?}; block formats {}",
        choice.forward_variant(compat, Format::F16, 1),
        if !compat && choice.pre_rounded_supported() {
            "DotPre, Dot or Subgroup (see the table)"
        } else if !compat && choice.dot_supported() {
            "Dot or Subgroup (see the table; DotPre disabled by the self-test)"
        } else if compat {
            "Compat"
        } else {
            "Subgroup (no integer dot product on this device)"
        }
    );
    let settings = Settings {
        shapes: if o.quick {
            QUICK_SHAPES.to_vec()
        } else {
            SHAPES.to_vec()
        },
        batches: o.batches,
        iterations: o.iterations.unwrap_or(if o.quick { 3 } else { 20 }),
        copy_floats: if o.quick { 1 << 20 } else { 1 << 26 },
        compat,
        transposed: o.transposed,
        arithmetics: o.arithmetics,
    };
    println!("device: {device}; forward variants: {variants}");
    let rows = |v, batch, format, height| choice.rows_per_group(v, batch, format, height);
    let dot_rows = rows(Variant::Dot, 1, Format::Q4_0, 16384);
    println!(
        "W·x, x and y f32, W device-resident; median of {} runs (GPU timestamps); rows per workgroup: f32 variants {} (batch 1, block formats) / {} (batch 1, F32/F16/BF16) / {} (batch 8); dot variant {} / {} / {} / {} for 16384 / 8192 / 4096 / 11008 rows, {} row slots (batch 1), dot_pre the same; by default W·x runs dot for one vector and dot_pre from {} to {} (where the self-test disabled dot_pre, dot up to batch {})\n",
        settings.iterations,
        rows(Variant::Subgroup, 1, Format::Q4_0, 0),
        rows(Variant::Subgroup, 1, Format::F16, 0),
        rows(Variant::Subgroup, 8, Format::Q4_0, 0),
        dot_rows,
        rows(Variant::Dot, 1, Format::Q4_0, 8192),
        rows(Variant::Dot, 1, Format::Q4_0, 4096),
        rows(Variant::Dot, 1, Format::Q4_0, 11008),
        choice.dot_slots(dot_rows, 1),
        nyxq::vk::matvec::PRE_ROUNDED_MIN_BATCH,
        nyxq::vk::matvec::PRE_ROUNDED_MAX_BATCH,
        nyxq::vk::matvec::DOT_MAX_BATCH,
    );
    let report = measure::run(engine, &settings).map_err(|e| e.to_string())?;
    println!(
        "copy kernel: {} GB/s (read + write)\n",
        gbps_cell(report.copy_gbps)
    );
    print_table(&report);
    print_pre_rounded_comparison(&report);
    if let Some(path) = o.json {
        let text = serde_json::to_string_pretty(&json(&report, &device, &variants))
            .map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("{path}: {e}"))?;
        println!("\nwrote {path}");
    }
    Ok(())
}
