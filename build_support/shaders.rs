//! Compiles shaders/*.comp to SPIR-V with glslc: one entry of VARIANTS per
//! pipeline (`<op>_<in>_<out>`, the same name as the Rust constant and the
//! pipeline's debug name), `--target-env=vulkan1.2 -Werror`, depfiles so an
//! edited include triggers a rebuild. Any diagnostic fails the build. Writes
//! OUT_DIR/shaders.rs, which src/vk/shaders.rs includes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const FORMATS: [&str; 5] = ["f16", "bf16", "q8_0", "q4_0", "q4_1"];
/// The formats with an integer-dot-product matvec (`_dot`).
const DOT_FORMATS: [&str; 3] = ["q8_0", "q4_0", "q4_1"];

/// (name, source file, defines)
fn variants() -> Vec<(String, &'static str, Vec<String>)> {
    let mut v = vec![
        ("copy_f32_f32".to_string(), "copy.comp", vec![]),
        ("unscale_f32".to_string(), "unscale.comp", vec![]),
    ];
    for f in FORMATS {
        let define = format!("FORMAT_{}", f.to_uppercase());
        v.push((
            format!("quantize_f32_{f}"),
            "quantize.comp",
            vec![define.clone()],
        ));
        // `_s16`: Q8_0's 34-byte blocks stored as 16-bit halves straight from
        // the lanes (16-bit storage needed) instead of through shared memory.
        if f == "q8_0" {
            v.push((
                format!("quantize_f32_{f}_s16"),
                "quantize.comp",
                vec![define.clone(), "STORE16".to_string()],
            ));
        }
        // F16/BF16 dequantize: units of 4 values per invocation (2 measured
        // best; experiments below).
        let units = if f.starts_with('q') {
            vec![]
        } else {
            vec!["UNITS=2u".to_string()]
        };
        v.push((
            format!("dequantize_{f}_f32"),
            "dequantize.comp",
            [vec![define.clone()], units.clone()].concat(),
        ));
        v.push((
            format!("dequantize_{f}_f16"),
            "dequantize.comp",
            [vec![define.clone(), "OUT_F16".to_string()], units.clone()].concat(),
        ));
        // `_rte` variants: f32 -> f16 by the hardware conversion, declared
        // round-to-nearest-even (16-bit storage and float controls needed).
        // The Q8_0 and Q4_0 ones compute in f16 (F16_MATH: shaderFloat16).
        // The block ones decode 4 lanes per invocation (FOUR_LANES).
        if f != "f16" {
            let mut defines = vec![define.clone(), "OUT_F16".to_string(), "HW_F16".to_string()];
            defines.extend(units.clone());
            // Block formats: 4 lanes of 8 values per invocation.
            if f.starts_with('q') {
                defines.push("FOUR_LANES".to_string());
            }
            // In f16 arithmetic, with the input staged in shared memory: the
            // Q8_0 and Q4_0 `_rte` variants, and Q4_1's `_rte_dp` (its fma
            // can give f16 subnormals, so it declares DenormPreserve for
            // 16-bit floats; Q4_1's `_rte` converts from f32 and loads
            // directly).
            let f16_math = ["F16_MATH".to_string(), "STAGE_SHARED".to_string()];
            if f == "q8_0" || f == "q4_0" {
                defines.extend(f16_math.clone());
            }
            if f == "q4_1" {
                let mut dp = defines.clone();
                dp.extend(f16_math);
                v.push((format!("dequantize_{f}_f16_rte_dp"), "dequantize.comp", dp));
            }
            v.push((
                format!("dequantize_{f}_f16_rte"),
                "dequantize.comp",
                defines,
            ));
        }
        v.push((
            format!("fake_quantize_f32_{f}"),
            "fake_quantize.comp",
            vec![define.clone()],
        ));
        // Measurement only (NYXQ_SHADER_EXPERIMENTS=1 at build time): other
        // unit counts of the F16/BF16 dequantize kernels, named `_u<N>`.
        if std::env::var_os("NYXQ_SHADER_EXPERIMENTS").is_some() && !f.starts_with('q') {
            for units in [1, 4, 8] {
                v.push((
                    format!("dequantize_{f}_f32_u{units}"),
                    "dequantize.comp",
                    vec![define.clone(), format!("UNITS={units}u")],
                ));
                v.push((
                    format!("dequantize_{f}_f16_u{units}"),
                    "dequantize.comp",
                    vec![
                        define.clone(),
                        "OUT_F16".to_string(),
                        format!("UNITS={units}u"),
                    ],
                ));
            }
        }
    }
    v.push((
        "quantize_f32_f16_rte".to_string(),
        "quantize.comp",
        vec!["FORMAT_F16".to_string(), "HW_F16".to_string()],
    ));
    for f in std::iter::once("f32").chain(FORMATS) {
        let define = format!("FORMAT_{}", f.to_uppercase());
        v.push((
            format!("matvec_{f}_f32"),
            "matvec.comp",
            vec![define.clone()],
        ));
        v.push((
            format!("matvec_{f}_f32_subgroup"),
            "matvec.comp",
            vec![define.clone(), "SUBGROUP".to_string()],
        ));
        v.push((format!("matvec_t_{f}_f32"), "matvec_t.comp", vec![define]));
    }
    for f in DOT_FORMATS {
        v.push((
            format!("matvec_{f}_f32_dot"),
            "matvec_dot.comp",
            vec![format!("FORMAT_{}", f.to_uppercase())],
        ));
    }
    v
}

/// How a quantize/dequantize variant's grid is sized: the elements each
/// invocation handles and the invocations per workgroup (None for the matvec
/// kernels, whose module sizes their grids). Passed to glslc as
/// PER_INVOCATION and LOCAL_SIZE (shaders/grid.glsl: each kernel checks the
/// first against its code at compile time) and written into the table.
pub fn grid(file: &str, defines: &[String]) -> Option<(u32, u32)> {
    let has = |d: &str| defines.iter().any(|x| x == d);
    let block = ["FORMAT_Q8_0", "FORMAT_Q4_0", "FORMAT_Q4_1"]
        .iter()
        .any(|d| has(d));
    // 256 invocations (the H200 measured a launch-rate limit with groups of
    // 64 for one-pass kernels), except 64 for the block quantize and
    // fake-quantize kernels, whose barrier-separated steps need many
    // resident groups.
    let (per_invocation, local_size) = match file {
        "copy.comp" => (4, 256),
        "unscale.comp" => (1, 256),
        // Block kernels (shaders/block_group.glsl): 4 rounds of 8 values.
        "quantize.comp" | "fake_quantize.comp" if block => (32, 64),
        "quantize.comp" | "fake_quantize.comp" => (4, 256),
        // Block dequantize: lanes of 8 values, 4 per invocation with FOUR_LANES.
        "dequantize.comp" if block => (if has("FOUR_LANES") { 32 } else { 8 }, 256),
        "dequantize.comp" => {
            let units: u32 = defines
                .iter()
                .find_map(|d| d.strip_prefix("UNITS="))
                .and_then(|u| u.trim_end_matches('u').parse().ok())
                .expect("F16/BF16 dequantize variants set UNITS");
            (4 * units, 256)
        }
        _ => return None,
    };
    Some((per_invocation, local_size))
}

/// glslc -O unrolls loops marked `[[unroll]]` itself and drops the
/// NoContraction decorations (`precise`) of the instructions it copies; the
/// driver may then fuse a multiply and an add that must round separately
/// (seen on NVIDIA: quants off by one at ties). The drivers unroll constant
/// loops on their own, keeping the decorations, so the attribute is refused.
pub fn refuse_unroll_attributes(shader_dir: &Path) {
    let entries = std::fs::read_dir(shader_dir).expect("shaders/ is readable");
    for entry in entries {
        let path = entry.expect("shaders/ is readable").path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.replace(' ', "").contains("[[unroll") {
            panic!(
                "{}: `[[unroll]]` is refused: glslc -O drops `precise` (NoContraction) \
                 from the loop bodies it unrolls",
                path.display()
            );
        }
    }
}

pub fn compile(crate_dir: &Path, out_dir: &Path) {
    let shader_dir = crate_dir.join("shaders");
    println!("cargo:rerun-if-changed=shaders");
    println!("cargo:rerun-if-changed=build_support/shaders.rs");
    println!("cargo:rerun-if-env-changed=GLSLC");
    println!("cargo:rerun-if-env-changed=NYXQ_SHADER_EXPERIMENTS");
    let glslc = std::env::var("GLSLC").unwrap_or_else(|_| "glslc".to_string());
    let spv_dir = out_dir.join("spv");
    std::fs::create_dir_all(&spv_dir).expect("OUT_DIR/spv is writable");
    let mut table =
        String::from("/// Every compiled shader variant.\npub const VARIANTS: &[Variant] = &[\n");
    refuse_unroll_attributes(&shader_dir);
    for (name, file, defines) in variants() {
        let source = shader_dir.join(file);
        let spv = spv_dir.join(format!("{name}.spv"));
        let dep = spv_dir.join(format!("{name}.d"));
        let mut cmd = Command::new(&glslc);
        cmd.arg("--target-env=vulkan1.2")
            .arg("-Werror")
            .arg("-O")
            .arg("-MD")
            .arg("-MF")
            .arg(&dep);
        for d in &defines {
            cmd.arg(format!("-D{d}"));
        }
        let grid = grid(file, &defines);
        if let Some((per_invocation, local_size)) = grid {
            cmd.arg(format!("-DPER_INVOCATION={per_invocation}u"));
            cmd.arg(format!("-DLOCAL_SIZE={local_size}"));
        }
        cmd.arg(&source).arg("-o").arg(&spv);
        let output = cmd.output().unwrap_or_else(|e| {
            panic!(
                "cannot run {glslc} ({e}): nyxq compiles its Vulkan shaders at build time; \
                 run scripts/bootstrap.sh (installs glslc) or set GLSLC to its path"
            )
        });
        let diagnostics = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !output.status.success() || !diagnostics.trim().is_empty() {
            panic!(
                "glslc failed on {name} ({}):\n{diagnostics}",
                source.display()
            );
        }
        for path in depfile_inputs(&dep) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
        let grid = match grid {
            Some((per_invocation, local_size)) => {
                format!(
                    "Some(Grid {{ per_invocation: {per_invocation}, local_size: {local_size} }})"
                )
            }
            None => "None".to_string(),
        };
        writeln!(
            table,
            "    Variant {{ name: {name:?}, spirv: include_bytes!({:?}), grid: {grid} }},",
            spv.display().to_string()
        )
        .expect("writing to a String");
    }
    table.push_str("];\n");
    std::fs::write(out_dir.join("shaders.rs"), table).expect("OUT_DIR is writable");
}

/// The inputs a Makefile-style depfile names (after the first ':').
fn depfile_inputs(dep: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(dep).unwrap_or_default();
    let Some((_, inputs)) = text.split_once(": ") else {
        return Vec::new();
    };
    inputs
        .replace("\\\n", " ")
        .split_whitespace()
        .map(PathBuf::from)
        .collect()
}
