//! `nyxq debug [--config FILE] [--json]`: one report to paste into a bug: the
//! build, the CPU and the kernels it runs, what `hwinfo` finds of Vulkan, the
//! config as the library parses it, and the environment variables that change
//! what nyxq does. Always exits 0 once its arguments are right: a missing
//! Vulkan loader or a bad config is something the report says.

use crate::UsageError;
use crate::hwinfo;
use nyxq::Format;
use nyxq::config::QuantConfig;
use serde_json::{Value, json};
use std::fmt::Write;
use std::path::PathBuf;

pub const USAGE: &str = "usage: nyxq debug [--config FILE] [--json]";

/// The variables nyxq reads at run time, with what each changes.
const NYXQ_VARIABLES: [(&str, &str); 10] = [
    (
        "NYXQ_LOG",
        "print nyxq's log to stderr with this filter (env_logger syntax), unless a log callback is set",
    ),
    (
        "NYXQ_VULKAN_LOADER",
        "Vulkan loader library opened instead of libvulkan.so.1",
    ),
    (
        "NYXQ_VK_VALIDATION",
        "1: turn on VK_LAYER_KHRONOS_validation",
    ),
    (
        "NYXQ_VK_FORCE_COMPAT",
        "1: run only the compatible shader variants",
    ),
    (
        "NYXQ_VK_FAIL_ALLOCATION",
        "N: fail the Nth device allocation (tests of the out-of-memory path)",
    ),
    (
        "NYXQ_VK_LOSE_DEVICE_AT",
        "N: report the Nth submission as VK_ERROR_DEVICE_LOST (tests of the recovery path)",
    ),
    (
        "NYXQ_VK_PIPELINE_STATS",
        "set: make pipelines with executable statistics (VK_KHR_pipeline_executable_properties), which nyxq bench-vk prints",
    ),
    (
        "NYXQ_VK_MATVEC_VARIANT",
        "f32, dot or auto: the arithmetic of the Vulkan matrix-vector kernels",
    ),
    (
        "NYXQ_VK_MATVEC_ROWS",
        "1 to 32: rows per workgroup of the forward matrix-vector kernels (tuning)",
    ),
    (
        "NYXQ_VK_MATVEC_SLOTS",
        "1, 2 or 4: row slots of the integer-dot matrix-vector kernel (tuning)",
    ),
];

/// Variables the build reads (build.rs): setting them now changes nothing.
const BUILD_VARIABLES: [&str; 3] = [
    "NYXQ_SHADER_EXPERIMENTS",
    "NYXQ_SPIRV_CACHE",
    "NYXQ_UPDATE_HEADER",
];

/// Variables of the Khronos Vulkan loader that change which drivers and
/// layers nyxq sees; any other VK_* variable set is listed too.
const LOADER_VARIABLES: [&str; 9] = [
    "VK_ICD_FILENAMES",
    "VK_DRIVER_FILES",
    "VK_ADD_DRIVER_FILES",
    "VK_LOADER_DRIVERS_SELECT",
    "VK_LOADER_DRIVERS_DISABLE",
    "VK_INSTANCE_LAYERS",
    "VK_LAYER_PATH",
    "VK_LOADER_LAYERS_ENABLE",
    "VK_LOADER_DEBUG",
];

fn parse_args(args: &[String]) -> Result<(Option<PathBuf>, bool), UsageError> {
    let (mut config, mut json) = (None, false);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--config" => {
                let path = it
                    .next()
                    .ok_or_else(|| UsageError(format!("--config needs a value\n{USAGE}")))?;
                config = Some(PathBuf::from(path));
            }
            other => return Err(UsageError(format!("unknown argument {other}\n{USAGE}"))),
        }
    }
    Ok((config, json))
}

fn build_json() -> Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "abi_version": nyxq::ffi::version::NYXQ_ABI_VERSION,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "features": enabled_features(),
        "target": format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
    })
}

/// The Cargo features this binary was built with.
fn enabled_features() -> Vec<&'static str> {
    let mut features = Vec::new();
    if cfg!(feature = "test-exports") {
        features.push("test-exports");
    }
    features
}

/// The CPU features nyxq's kernels choose by, and a few neighbours, as detected now.
fn cpu_features() -> Vec<(&'static str, bool)> {
    #[cfg(target_arch = "x86_64")]
    {
        vec![
            ("sse4.2", is_x86_feature_detected!("sse4.2")),
            ("avx", is_x86_feature_detected!("avx")),
            ("avx2", is_x86_feature_detected!("avx2")),
            ("fma", is_x86_feature_detected!("fma")),
            ("f16c", is_x86_feature_detected!("f16c")),
            ("avx512f", is_x86_feature_detected!("avx512f")),
            ("avx512bw", is_x86_feature_detected!("avx512bw")),
            ("avx512vl", is_x86_feature_detected!("avx512vl")),
        ]
    }
    #[cfg(target_arch = "aarch64")]
    {
        vec![
            ("neon", std::arch::is_aarch64_feature_detected!("neon")),
            ("fp16", std::arch::is_aarch64_feature_detected!("fp16")),
            (
                "dotprod",
                std::arch::is_aarch64_feature_detected!("dotprod"),
            ),
        ]
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        Vec::new()
    }
}

/// The CPU's model name as Linux reports it.
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, name)| name.trim().to_string())
}

fn cpu_json() -> Value {
    json!({
        "model": cpu_model(),
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "features": cpu_features()
            .into_iter()
            .map(|(name, on)| (name.to_string(), Value::Bool(on)))
            .collect::<serde_json::Map<_, _>>(),
        "quantize_kernels": nyxq::quant::cpu_kernels(),
        "matvec_kernels": nyxq::matvec::cpu_kernels(),
    })
}

fn format_name(f: Option<Format>) -> Value {
    f.map_or(Value::Null, |f| json!(f.name()))
}

fn config_values(c: &QuantConfig) -> Value {
    json!({
        "enabled": c.enabled,
        "precision_level": c.precision_level.name(),
        "adaptive_precision": c.adaptive_precision,
        "memory_threshold_mb": c.memory_threshold_mb,
        "accuracy_threshold": c.accuracy_threshold,
        "fallback_to_fp32": c.fallback_to_fp32,
        "mixed_precision_enabled": c.mixed_precision_enabled,
        "attention_precision": format_name(c.attention_precision),
        "mlp_precision": format_name(c.mlp_precision),
        "embedding_precision": format_name(c.embedding_precision),
        "quantized_training_enabled": c.quantized_training_enabled,
        "gradient_precision": c.gradient_precision.name(),
        "weight_precision": format_name(c.weight_precision),
        "activation_precision": format_name(c.activation_precision),
        "quantization_evolution_enabled": c.quantization_evolution_enabled,
        "learning_in_quantized_state": c.learning_in_quantized_state,
        "self_modification_during_quantization": c.self_modification_during_quantization,
        "target_accuracy_preservation": c.target_accuracy_preservation,
        "memory_reduction_target": c.memory_reduction_target,
        "speedup_target": c.speedup_target,
    })
}

fn config_json(path: Option<&PathBuf>) -> Value {
    let Some(path) = path else {
        return Value::Null;
    };
    match QuantConfig::load(path) {
        Ok(c) => json!({
            "path": path.display().to_string(),
            "ok": true,
            "values": config_values(&c),
            "ignored": c.ignored,
            "warnings": c.warnings,
            "min_snr_db": c.policy(false).min_snr_db,
        }),
        Err(e) => json!({
            "path": path.display().to_string(),
            "ok": false,
            "error": e.to_string(),
        }),
    }
}

fn environment_json() -> Value {
    let mut vars: Vec<Value> = NYXQ_VARIABLES
        .iter()
        .map(|(name, effect)| json!({"name": name, "value": std::env::var(name).ok(), "effect": effect}))
        .collect();
    vars.extend(LOADER_VARIABLES.iter().map(|name| {
        json!({"name": name, "value": std::env::var(name).ok(), "effect": "read by the Vulkan loader"})
    }));
    // Set variables nyxq does not know: a misspelt NYXQ_* is a common cause of
    // "the setting does nothing".
    let mut others: Vec<(String, String)> = std::env::vars()
        .filter(|(name, _)| {
            (name.starts_with("NYXQ_") && !NYXQ_VARIABLES.iter().any(|(n, _)| n == name))
                || (name.starts_with("VK_") && !LOADER_VARIABLES.contains(&name.as_str()))
        })
        .collect();
    others.sort();
    vars.extend(others.into_iter().map(|(name, value)| {
        let effect = if BUILD_VARIABLES.contains(&name.as_str()) {
            "read when nyxq is built, not at run time"
        } else if name.starts_with("NYXQ_") {
            "not read by nyxq at run time (misspelt?)"
        } else {
            "read by the Vulkan loader or a layer, if at all"
        };
        json!({"name": name, "value": value, "effect": effect})
    }));
    Value::Array(vars)
}

fn text(report: &Value, vulkan_text: &str) -> String {
    let mut out = String::new();
    let b = &report["build"];
    let features =
        b["features"]
            .as_array()
            .filter(|f| !f.is_empty())
            .map_or("none".to_string(), |f| {
                f.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            });
    let _ = writeln!(
        out,
        "== nyxq\nversion {}, C ABI {}, {} build, features: {features}, target {}",
        b["version"].as_str().unwrap_or_default(),
        b["abi_version"],
        b["profile"].as_str().unwrap_or_default(),
        b["target"].as_str().unwrap_or_default()
    );
    let c = &report["cpu"];
    let detected: Vec<String> = c["features"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} {}", if v == true { "yes" } else { "no" }))
                .collect()
        })
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "\n== CPU\n{}, {} threads\nfeatures: {}\nkernels: quantize/dequantize {}, matvec {}",
        c["model"].as_str().unwrap_or("model unknown"),
        c["threads"],
        detected.join(", "),
        c["quantize_kernels"].as_str().unwrap_or_default(),
        c["matvec_kernels"].as_str().unwrap_or_default()
    );
    let _ = write!(out, "\n== Vulkan\n{vulkan_text}");
    let _ = writeln!(out, "\n== config");
    let cfg = &report["config"];
    if cfg.is_null() {
        let _ = writeln!(out, "none given (--config FILE)");
    } else if cfg["ok"] == true {
        let _ = writeln!(
            out,
            "{}: parsed; [quantization] as nyxq reads it:",
            cfg["path"].as_str().unwrap_or_default()
        );
        for key in nyxq::config::KEYS {
            let value = &cfg["values"][key];
            let shown = value.as_str().map_or(value.to_string(), str::to_string);
            let _ = writeln!(out, "  {key} = {shown}");
        }
        let _ = writeln!(
            out,
            "  (least SNR the planner enforces: {:.2} dB)",
            cfg["min_snr_db"].as_f64().unwrap_or(f64::NAN)
        );
        for warning in cfg["warnings"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  warning: {}", warning.as_str().unwrap_or_default());
        }
        for why in cfg["ignored"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  ignored: {}", why.as_str().unwrap_or_default());
        }
    } else {
        let _ = writeln!(out, "error: {}", cfg["error"].as_str().unwrap_or_default());
    }
    let _ = writeln!(out, "\n== environment");
    for v in report["environment"].as_array().into_iter().flatten() {
        let value = v["value"]
            .as_str()
            .map_or(" (unset)".to_string(), |s| format!("={s}"));
        let _ = writeln!(
            out,
            "{}{value}: {}",
            v["name"].as_str().unwrap_or_default(),
            v["effect"].as_str().unwrap_or_default()
        );
    }
    out
}

pub fn run(args: &[String]) -> Result<(), UsageError> {
    let (config, json_out) = parse_args(args)?;
    let vulkan = hwinfo::gather();
    let vulkan_json: Value = serde_json::from_str(&vulkan.json).unwrap_or_else(
        |e| json!({"error": format!("hwinfo's report is not JSON: {e}"), "text": vulkan.text}),
    );
    let report = json!({
        "build": build_json(),
        "cpu": cpu_json(),
        "vulkan": vulkan_json,
        "config": config_json(config.as_ref()),
        "environment": environment_json(),
    });
    if json_out {
        println!("{report:#}");
    } else {
        print!("{}", text(&report, &vulkan.text));
    }
    Ok(())
}
