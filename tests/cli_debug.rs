//! `nyxq debug`: the report has every section, with and without a config (a
//! good one parsed key by key, a bad one's error with its line), exits 0 with
//! or without a Vulkan loader, and --json parses. Vulkan may or may not be
//! present; the tests take away the loader where they need it gone.

use crate::cli_support::{Run, nyxq_in, scratch_dir};
use serde_json::Value;

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/hrm_config.txt");
/// A loader path that cannot exist: Vulkan is unavailable for that run.
const NO_LOADER: (&str, &str) = ("NYXQ_VULKAN_LOADER", "/nonexistent/libvulkan.so.1");

fn json(run: &Run) -> Value {
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr))
}

#[test]
fn the_report_has_every_section_without_a_config() {
    let dir = scratch_dir("debug-text");
    let r = nyxq_in(&dir, &["debug"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for section in [
        "== nyxq",
        "C ABI 1",
        "== CPU",
        "kernels: quantize/dequantize",
        "== Vulkan",
        "context auto: backend",
        "== config",
        "none given",
        "== environment",
        "NYXQ_VULKAN_LOADER",
        "VK_ICD_FILENAMES",
    ] {
        assert!(
            r.stdout.contains(section),
            "'{section}' missing:\n{}",
            r.stdout
        );
    }
    assert!(
        r.stdout
            .contains(&format!("version {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        r.stdout
    );
}

#[test]
fn without_a_vulkan_loader_the_report_says_so_and_exits_0() {
    let dir = scratch_dir("debug-no-vulkan");
    let r = nyxq_in(&dir, &["debug"], &[NO_LOADER]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.contains("Vulkan unavailable: no Vulkan loader"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("NYXQ_VULKAN_LOADER=/nonexistent/libvulkan.so.1"),
        "{}",
        r.stdout
    );
    let report = json(&nyxq_in(&dir, &["debug", "--json"], &[NO_LOADER]));
    let vulkan = &report["vulkan"];
    assert_eq!(vulkan["devices"], serde_json::json!([]));
    assert!(
        vulkan["vulkan_error"]
            .as_str()
            .unwrap()
            .contains("no Vulkan loader")
    );
    assert_eq!(vulkan["contexts"][0]["backend"], "cpu");
}

#[test]
fn json_parses_with_the_build_cpu_and_environment() {
    let dir = scratch_dir("debug-json");
    let report = json(&nyxq_in(
        &dir,
        &["debug", "--json"],
        &[
            ("NYXQ_VK_MATVEC_VARIANT", "f32"),
            ("NYXQ_VK_FORSE_COMPAT", "1"),
        ],
    ));
    let build = &report["build"];
    assert_eq!(build["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(build["abi_version"], 1);
    assert!(["debug", "release"].contains(&build["profile"].as_str().unwrap()));
    assert!(build["features"].is_array());
    let cpu = &report["cpu"];
    assert!(cpu["threads"].as_u64().unwrap() >= 1);
    assert!(cpu["features"].is_object());
    for key in ["quantize_kernels", "matvec_kernels"] {
        let path = cpu[key].as_str().unwrap();
        assert!(path == "portable" || path.starts_with("avx2"), "{path}");
    }
    assert!(report["vulkan"]["contexts"].is_array());
    assert!(report["config"].is_null());
    let env = report["environment"].as_array().unwrap();
    let var = |name: &str| env.iter().find(|v| v["name"] == name).cloned();
    let variant = var("NYXQ_VK_MATVEC_VARIANT").unwrap();
    assert_eq!(variant["value"], "f32");
    assert!(!variant["effect"].as_str().unwrap().is_empty());
    assert!(var("NYXQ_VK_VALIDATION").is_some());
    // A misspelt variable is listed as one nyxq does not read.
    let typo = var("NYXQ_VK_FORSE_COMPAT").unwrap();
    assert!(
        typo["effect"].as_str().unwrap().contains("not read"),
        "{typo}"
    );
}

#[test]
fn a_good_config_is_listed_key_by_key() {
    let dir = scratch_dir("debug-config");
    let r = nyxq_in(&dir, &["debug", "--config", CONFIG], &[NO_LOADER]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("hrm_config.txt: parsed"), "{}", r.stdout);
    for key in [
        "accuracy_threshold = ",
        "precision_level = ",
        "speedup_target = ",
    ] {
        assert!(r.stdout.contains(key), "'{key}' missing:\n{}", r.stdout);
    }
    let report = json(&nyxq_in(
        &dir,
        &["debug", "--config", CONFIG, "--json"],
        &[NO_LOADER],
    ));
    let config = &report["config"];
    assert_eq!(config["ok"], true);
    assert!(config["values"]["accuracy_threshold"].as_f64().unwrap() > 0.0);
    assert!(config["min_snr_db"].as_f64().unwrap() > 0.0);
    assert!(config["ignored"].is_array());
}

/// The config's warnings are part of the report (the Nyx trainer's section
/// has six), in text and in JSON.
#[test]
fn a_configs_warnings_are_reported() {
    let dir = scratch_dir("debug-warnings");
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/nyx_trainer_quantization.ini"
    );
    let r = nyxq_in(&dir, &["debug", "--config", fixture], &[NO_LOADER]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout.matches("  warning: ").count(), 6, "{}", r.stdout);
    assert!(
        r.stdout.contains(":10: quantization is disabled"),
        "{}",
        r.stdout
    );
    let report = json(&nyxq_in(
        &dir,
        &["debug", "--config", fixture, "--json"],
        &[NO_LOADER],
    ));
    assert_eq!(report["config"]["warnings"].as_array().unwrap().len(), 6);
}

#[test]
fn a_bad_config_is_reported_with_its_line() {
    let dir = scratch_dir("debug-bad-config");
    let bad = dir.join("bad.txt");
    std::fs::write(
        &bad,
        "[other]\nx = 1\n[quantization]\nprecision_level = INT3\n",
    )
    .unwrap();
    let r = nyxq_in(&dir, &["debug", "--config", "bad.txt"], &[NO_LOADER]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout
            .contains("error: bad.txt:4: precision_level = INT3"),
        "{}",
        r.stdout
    );
    let report = json(&nyxq_in(
        &dir,
        &["debug", "--json", "--config", "missing.txt"],
        &[NO_LOADER],
    ));
    assert_eq!(report["config"]["ok"], false);
    assert!(
        report["config"]["error"]
            .as_str()
            .unwrap()
            .contains("missing.txt")
    );
}

#[test]
fn bad_arguments_are_usage_errors() {
    let dir = scratch_dir("debug-args");
    for args in [&["debug", "--verbose"][..], &["debug", "--config"]] {
        let r = nyxq_in(&dir, args, &[]);
        assert_eq!(r.code, Some(2), "{}", r.stdout);
        assert!(r.stderr.contains("usage: nyxq debug"), "{}", r.stderr);
    }
}

/// `--help` is an answer, not a usage error: the usage on stdout and exit 0,
/// for each of the tools that validate and report.
#[test]
fn help_prints_the_usage_and_exits_0() {
    let dir = scratch_dir("debug-help");
    for command in ["debug", "validate", "formats"] {
        for flag in ["--help", "-h"] {
            let r = nyxq_in(&dir, &[command, flag], &[]);
            assert_eq!(r.code, Some(0), "{command} {flag}: {}", r.stderr);
            assert!(
                r.stdout.contains(&format!("usage: nyxq {command}")),
                "{command} {flag}: {}",
                r.stdout
            );
        }
    }
}
