//! `nyxq bench-vk-matmul [--quick] [--compat] [--no-backward] [--variants all|SUFFIX,...] [--model FILE]
//! [--shapes RxC,...] [--tokens 1,2,4,8,512,2048] [--formats F,...]
//! [--json FILE] [--iterations N]`: the Vulkan matmul (Y = X·Wᵀ, and dX =
//! dY·W unless --no-backward) per format, shape and token count on
//! device-resident data (GPU timestamps): GFLOP/s, the weights' GB/s as a
//! share of the copy kernel's, and up to 8 tokens the speed against the
//! matrix-vector product of the same shape, all from the same run. The
//! shapes are the projections of `--model` (config/models/char-model.json,
//! the Nyx character model of hidden 512, by default) and 4096×14336. Every
//! product's first and last tokens are checked against FP64 within the
//! bound of the kernel that ran; a violation (or a product that fails to
//! run) fails the command. With --variants, the other variants of each
//! product that the device runs and whose names end with one of the
//! suffixes (`all`: every one) are timed and checked after the chosen one
//! (the fast ones not chosen, and the measurement-only ones of a build with
//! NYXQ_SHADER_EXPERIMENTS=1). Rows are printed as they are measured, with
//! a line of the seconds since the start before each format and direction.
//! With
//! NYXQ_VK_PIPELINE_STATS=1, also the driver's compile statistics of each
//! kernel that ran.

mod measure;

use crate::bench_vk::print_pipeline_statistics;
use crate::bench_vk_matvec::{cell, gbps_cell};
use measure::{Measurement, Report, Settings};
use nyxq::context::{BackendPreference, Context, ContextSettings};
use nyxq::format::{Format, VulkanFamily};
use nyxq::plan::{Model, Role};
use nyxq::vk::shaders::Op;

/// The model whose projections are benchmarked unless --model names another.
const DEFAULT_MODEL: &str = "config/models/char-model.json";
/// The large shape: an MLP projection of a 7B model.
const LARGE_SHAPE: (usize, usize) = (4096, 14336);
const TOKENS: [u64; 6] = [1, 2, 4, 8, 512, 2048];
/// Small enough for lavapipe in CI.
const QUICK_SHAPES: [(usize, usize); 2] = [(96, 64), (70, 160)];
const QUICK_TOKENS: [u64; 3] = [1, 8, 70];

struct Options {
    quick: bool,
    compat: bool,
    backward: bool,
    variants: Option<Vec<String>>,
    model: String,
    shapes: Option<Vec<(usize, usize)>>,
    tokens: Option<Vec<u64>>,
    formats: Option<Vec<Format>>,
    json: Option<String>,
    iterations: Option<usize>,
}

/// A comma-separated list of `parse`'s values, or an error naming `what`.
fn list<T>(
    text: Option<&String>,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, String> {
    let text = text.ok_or_else(|| format!("{what} needs a list"))?;
    text.split(',')
        .map(|item| parse(item.trim()))
        .collect::<Option<Vec<T>>>()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{what}: '{text}' is not a list of the values it takes"))
}

fn shape(text: &str) -> Option<(usize, usize)> {
    let (rows, cols) = text.split_once('x')?;
    let (rows, cols) = (rows.parse().ok()?, cols.parse().ok()?);
    (rows > 0 && cols > 0 && cols % 32 == 0).then_some((rows, cols))
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        quick: false,
        compat: false,
        backward: true,
        variants: None,
        model: DEFAULT_MODEL.to_string(),
        shapes: None,
        tokens: None,
        formats: None,
        json: None,
        iterations: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => o.quick = true,
            "--compat" => o.compat = true,
            "--no-backward" => o.backward = false,
            "--variants" => {
                o.variants = Some(list(it.next(), "--variants (all or name suffixes)", |v| {
                    (!v.is_empty()).then(|| v.to_string())
                })?)
            }
            "--model" => o.model = it.next().ok_or("--model needs a file")?.clone(),
            "--shapes" => {
                o.shapes = Some(list(
                    it.next(),
                    "--shapes (ROWSxCOLS, COLS a multiple of 32)",
                    shape,
                )?)
            }
            "--tokens" => {
                o.tokens = Some(list(it.next(), "--tokens", |t| {
                    t.parse::<u64>()
                        .ok()
                        .filter(|&t| (1..=1 << 20).contains(&t))
                })?)
            }
            "--formats" => {
                o.formats = Some(list(it.next(), "--formats", |f| {
                    Format::from_name(f)
                        .ok()
                        .filter(|f| f.spec().vulkan.has(VulkanFamily::Matmul))
                })?)
            }
            "--json" => o.json = Some(it.next().ok_or("--json needs a file")?.clone()),
            "--iterations" => {
                o.iterations = Some(
                    it.next()
                        .and_then(|v| v.parse().ok())
                        .ok_or("--iterations needs a number")?,
                )
            }
            other => return Err(format!("bench-vk-matmul: unknown option '{other}'")),
        }
    }
    Ok(o)
}

/// The (rows, cols) of the model's projections (attention, MLP and output
/// weights, whose rows are whole blocks), distinct, in the model's order.
fn model_shapes(path: &str) -> Result<Vec<(usize, usize)>, String> {
    let model = Model::load(std::path::Path::new(path)).map_err(|e| format!("{path}: {e}"))?;
    let mut shapes = Vec::new();
    for t in &model.tensors {
        let projection = matches!(t.role, Role::Attention | Role::Mlp | Role::Output);
        if let [rows, cols] = t.shape[..]
            && projection
            && cols % 32 == 0
            && !shapes.contains(&(rows, cols))
        {
            shapes.push((rows, cols));
        }
    }
    Ok(shapes)
}

fn product(m: &Measurement) -> &'static str {
    if m.transposed { "dY·W" } else { "X·Wᵀ" }
}

fn print_header() {
    println!(
        "| product | format | kernel | shape | tokens | time (us) | GFLOP/s | weights GB/s / copy | vs matvec | check |"
    );
    println!("|---|---|---|---|---:|---:|---:|---:|---:|---|");
}

/// One row of the table; `copy_gbps` is the copy kernel's first measurement.
fn print_row(m: &Measurement, copy_gbps: f64) {
    println!(
        "| {} | {} | {} | {}x{} | {} | {:.1} | {} | {:.3} | {} | {} |",
        product(m),
        m.format.name(),
        m.kernel,
        m.rows,
        m.cols,
        m.tokens,
        m.seconds * 1e6,
        gbps_cell(m.gflops()),
        m.weights_gbps() / copy_gbps,
        cell(m.matvec_seconds.map(|s| s / m.seconds)),
        if m.violation.is_some() {
            "FAILED"
        } else {
            "ok"
        },
    );
}

fn json(report: &Report, device: &str) -> serde_json::Value {
    let rows: Vec<_> = report
        .measurements
        .iter()
        .map(|m| {
            serde_json::json!({
                "product": product(m),
                "format": m.format.name(),
                "kernel": m.kernel.name(),
                "rows": m.rows,
                "cols": m.cols,
                "tokens": m.tokens,
                "seconds": m.seconds,
                "gflops": m.gflops(),
                "weight_bytes": m.weight_bytes,
                "weights_gbps": m.weights_gbps(),
                "weights_ratio_to_copy": m.weights_gbps() / report.copy_gbps,
                "matvec_seconds": m.matvec_seconds,
                "violation": m.violation,
            })
        })
        .collect();
    serde_json::json!({
        "device": device,
        "copy_gbps": report.copy_gbps,
        "timing": "GPU timestamps, median",
        "results": rows,
    })
}

pub fn run(args: &[String]) -> Result<(), String> {
    let o = options(args)?;
    let shapes = match (&o.shapes, o.quick) {
        (Some(shapes), _) => shapes.clone(),
        (None, true) => QUICK_SHAPES.to_vec(),
        (None, false) => {
            let mut shapes = model_shapes(&o.model)?;
            shapes.push(LARGE_SHAPE);
            shapes
        }
    };
    let ctx = Context::new(&ContextSettings {
        backend: BackendPreference::Vulkan,
        vulkan_force_compat: o.compat,
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    let engine = ctx.vulkan().ok_or("no Vulkan device")?;
    let info = &engine.device.info;
    let device = format!("{} ({}, {})", info.name, info.driver_name, info.driver_info);
    let formats = o
        .formats
        .unwrap_or_else(|| Format::with_vulkan(VulkanFamily::Matmul).collect());
    let settings = Settings {
        shapes,
        tokens: o.tokens.unwrap_or_else(|| {
            if o.quick {
                QUICK_TOKENS.to_vec()
            } else {
                TOKENS.to_vec()
            }
        }),
        formats,
        iterations: o.iterations.unwrap_or(if o.quick { 3 } else { 20 }),
        copy_floats: if o.quick { 1 << 20 } else { 1 << 26 },
        backward: o.backward,
        variants: o.variants,
    };
    for &format in &settings.formats {
        for op in Op::PRODUCTS {
            if !ctx.vulkan_kernel_enabled(op, format) {
                return Err(format!(
                    "the {op:?} kernel of {} failed its self-test on this device (nyxq hwinfo says why)",
                    format.name()
                ));
            }
        }
    }
    println!(
        "device: {device}\nX, W, Y device-resident, no bias; median of {} runs (GPU timestamps); \
         GFLOP/s counts 2·rows·cols·tokens; vs matvec: the matvec's time over the matmul's \
         (above 1, the matmul is faster)\n",
        settings.iterations
    );
    print_header();
    let report = measure::run(engine, &settings, &mut print_row).map_err(|e| e.to_string())?;
    println!(
        "\ncopy kernel: {} GB/s (read + write; the \"/ copy\" column used its first \
         measurement)",
        gbps_cell(report.copy_gbps)
    );
    // With NYXQ_VK_PIPELINE_STATS=1: the driver's compile statistics per kernel.
    let mut kernels = Vec::new();
    for m in &report.measurements {
        if !kernels.contains(&m.kernel) {
            kernels.push(m.kernel);
            print_pipeline_statistics(engine, m.kernel);
        }
    }
    if let Some(path) = o.json {
        let text =
            serde_json::to_string_pretty(&json(&report, &device)).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("{path}: {e}"))?;
        println!("\nwrote {path}");
    }
    let failed: Vec<String> = report
        .measurements
        .iter()
        .filter_map(|m| {
            m.violation.as_ref().map(|why| {
                format!(
                    "{} {} {}x{} with {} tokens ({}): {why}",
                    product(m),
                    m.format.name(),
                    m.rows,
                    m.cols,
                    m.tokens,
                    m.kernel
                )
            })
        })
        .collect();
    if !failed.is_empty() {
        return Err(format!(
            "{} product(s) outside their bound:\n{}",
            failed.len(),
            failed.join("\n")
        ));
    }
    Ok(())
}
