//! The shader build's own checks (build_support/shaders.rs, compiled into
//! build.rs), included here so that their error paths run as tests.

#[allow(dead_code)]
#[path = "../build_support/shaders.rs"]
mod shaders;

use std::path::{Path, PathBuf};

/// The shader compiler the build uses: GLSLC, or glslc on the PATH.
fn glslc() -> String {
    std::env::var("GLSLC").unwrap_or_else(|_| "glslc".to_string())
}

/// The message of a panic the build code raised with `panic!` and a format.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .expect("a formatted message")
        .clone()
}

/// A fresh directory under the system's temporary one.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nyxq-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_unroll_attribute_is_refused_with_the_reason() {
    let dir = scratch_dir("unroll");
    std::fs::write(
        dir.join("bad.comp"),
        "void main() {\n    [[ unroll ]] for (uint i = 0u; i < 4u; ++i) {}\n}\n",
    )
    .unwrap();
    let refused = std::panic::catch_unwind(|| shaders::refuse_unroll_attributes(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    let message = panic_message(refused.expect_err("the attribute must be refused"));
    assert!(message.contains("bad.comp"), "{message}");
    assert!(message.contains("precise"), "{message}");
}

/// A variant of `file` in a scratch shader folder, without defines.
fn plain_variant(name: &str, file: &'static str) -> shaders::Variant {
    shaders::Variant {
        name: name.to_string(),
        file,
        defines: Vec::new(),
        roles: Vec::new(),
    }
}

#[test]
fn threads_compile_every_variant_in_order_and_a_failure_names_its_variant() {
    let glslc = glslc();
    let dir = scratch_dir("compile-all");
    let spv = dir.join("spv");
    std::fs::create_dir_all(&spv).unwrap();
    std::fs::write(
        dir.join("good.comp"),
        "#version 450\nlayout(local_size_x = 1) in;\nvoid main() {}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("bad.comp"),
        "#version 450\nvoid main() { nope; }\n",
    )
    .unwrap();
    let good: Vec<_> = (0..5)
        .map(|i| plain_variant(&format!("good_{i}"), "good.comp"))
        .collect();
    let outputs = shaders::compile_all(&glslc, &dir, &spv, &good, 3);
    for (i, (path, inputs)) in outputs.iter().enumerate() {
        assert_eq!(path, &spv.join(format!("good_{i}.spv")));
        assert!(path.exists());
        assert!(
            inputs.iter().any(|p| p.ends_with("good.comp")),
            "{inputs:?}"
        );
    }
    let mut mixed = good;
    mixed.insert(2, plain_variant("broken", "bad.comp"));
    let failed = std::panic::catch_unwind(|| shaders::compile_all(&glslc, &dir, &spv, &mixed, 3));
    let _ = std::fs::remove_dir_all(&dir);
    let message = panic_message(failed.expect_err("a glslc failure fails the build"));
    assert!(message.contains("glslc failed on broken"), "{message}");
    assert!(message.contains("nope"), "{message}");
}

#[test]
fn the_shipped_shaders_have_no_unroll_attribute() {
    shaders::refuse_unroll_attributes(&Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders"));
}

fn strings(defines: &[&str]) -> Vec<String> {
    defines.iter().map(|d| d.to_string()).collect()
}

#[test]
fn the_build_decides_each_kernels_grid_from_its_defines() {
    let grid = |file, defines: &[&str]| shaders::grid(file, &strings(defines));
    assert_eq!(grid("dequantize.comp", &["FORMAT_Q8_0"]), Some((8, 256)));
    assert_eq!(
        grid("dequantize.comp", &["FORMAT_Q4_1", "FOUR_LANES"]),
        Some((32, 256))
    );
    assert_eq!(
        grid("dequantize.comp", &["FORMAT_BF16", "UNITS=4u"]),
        Some((16, 256))
    );
    assert_eq!(grid("quantize.comp", &["FORMAT_Q4_0"]), Some((32, 64)));
    assert_eq!(grid("fake_quantize.comp", &["FORMAT_Q5_0"]), Some((32, 64)));
    assert_eq!(grid("fake_quantize.comp", &["FORMAT_F16"]), Some((4, 256)));
    assert_eq!(grid("matvec.comp", &["FORMAT_Q4_0"]), None);
    assert_eq!(grid("adam.comp", &["RTE_F32"]), Some((1, 256)));
    assert_eq!(
        grid("adam.comp", &["CHECKED", "ELEMENTS=4"]),
        Some((4, 256))
    );
    assert_eq!(grid("adam_q8_lanes.comp", &["RTE_F32"]), Some((4, 64)));
    // F16/BF16 dequantize must name its units.
    assert!(std::panic::catch_unwind(|| grid("dequantize.comp", &["FORMAT_F16"])).is_err());
}

/// A matmul kernel's tile: 64 × 64 for the compatible and `_coop` kernels,
/// the variant's TILE_M × TILE_N for the shapes of matmul_coop128.comp
/// (which must name both); none for the other kernels.
#[test]
fn the_build_reads_a_matmul_kernels_tile_from_its_defines() {
    let tile = |file, defines: &[&str]| shaders::matmul_tile(file, &strings(defines));
    assert_eq!(tile("matmul.comp", &["FORMAT_Q4_0"]), Some((64, 64)));
    assert_eq!(tile("matmul_coop.comp", &["TRANSPOSED"]), Some((64, 64)));
    assert_eq!(
        tile(
            "matmul_coop128.comp",
            &["TILE_M=64u", "TILE_N=128u", "X_F16"]
        ),
        Some((64, 128))
    );
    assert_eq!(tile("matmul_x_f16.comp", &[]), None);
    assert!(std::panic::catch_unwind(|| tile("matmul_coop128.comp", &["TILE_N=128u"])).is_err());
}

/// A table that disagrees with a kernel's code fails the shader build: the
/// kernel's GRID_CHECK (shaders/grid.glsl) stops glslc.
#[test]
fn a_grid_the_kernel_does_not_handle_fails_to_compile() {
    let glslc = glslc();
    let shader = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders/dequantize.comp");
    let dir = scratch_dir("grid");
    let compile = |per_invocation: u32| {
        std::process::Command::new(&glslc)
            .args([
                "--target-env=vulkan1.2",
                "-DFORMAT_Q8_0",
                "-DFOUR_LANES",
                "-DLOCAL_SIZE=256",
            ])
            .arg(format!("-DPER_INVOCATION={per_invocation}u"))
            .arg(&shader)
            .arg("-o")
            .arg(dir.join("out.spv"))
            .output()
            .expect("glslc runs (scripts/bootstrap.sh installs it)")
    };
    let right = compile(32);
    let wrong = compile(8);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(right.status.success(), "{right:?}");
    assert!(!wrong.status.success());
    let message = String::from_utf8_lossy(&wrong.stderr);
    assert!(message.contains("dequantize.comp"), "{message}");
    assert!(message.contains("array size"), "{message}");
}

/// `source` compiled by glslc -O in a scratch folder `name`, and what the
/// build reads from it.
fn compiled_facts(name: &str, source: &str) -> shaders::spirv::Facts {
    let glslc = glslc();
    let dir = scratch_dir(name);
    let path = dir.join("kernel.comp");
    std::fs::write(&path, source).unwrap();
    let spv = dir.join("kernel.spv");
    let compiled = std::process::Command::new(&glslc)
        .args(["--target-env=vulkan1.2", "-O"])
        .arg(&path)
        .arg("-o")
        .arg(&spv)
        .output()
        .expect("glslc runs (scripts/bootstrap.sh installs it)");
    assert!(compiled.status.success(), "{compiled:?}");
    let facts = shaders::spirv::read(&std::fs::read(&spv).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    facts
}

/// The build reads a kernel's workgroup memory from its SPIR-V: every
/// `shared` variable at its natural size (scalars, vectors, arrays, structs),
/// and nothing else (storage buffers, private arrays).
#[test]
fn the_build_reads_a_kernels_workgroup_memory() {
    let facts = compiled_facts(
        "workgroup",
        "#version 450\n\
         layout(local_size_x = 64) in;\n\
         layout(std430, binding = 0) buffer Out { float out_[]; };\n\
         struct Pair { uint key; float value[2]; };\n\
         shared vec4 tiles[16];\n\
         shared float sums[3];\n\
         shared Pair pairs[2];\n\
         void main() {\n\
             float private_[8];\n\
             private_[gl_LocalInvocationID.x % 8u] = 1.0;\n\
             uint i = gl_LocalInvocationID.x;\n\
             tiles[i % 16u] = vec4(i);\n\
             sums[i % 3u] = float(i);\n\
             pairs[i % 2u].value[0] = private_[i % 8u];\n\
             barrier();\n\
             out_[i] = tiles[(i + 1u) % 16u].x + sums[(i + 1u) % 3u] + pairs[(i + 1u) % 2u].value[0];\n\
         }\n",
    );
    assert_eq!(facts.workgroup_bytes, 16 * 16 + 3 * 4 + 2 * (4 + 2 * 4));
    assert_eq!(facts.push_bytes, 0);
}

/// The build reads which float widths a kernel declares round-to-nearest-even
/// and subnormal preservation for (the device features it then needs).
#[test]
fn the_build_reads_the_declared_float_controls() {
    let facts = compiled_facts(
        "float_controls",
        "#version 450\n\
         #extension GL_EXT_spirv_intrinsics : require\n\
         spirv_execution_mode(capabilities = [4467], 4462, 32);\n\
         spirv_execution_mode(capabilities = [4464], 4459, 32);\n\
         layout(local_size_x = 64) in;\n\
         layout(std430, binding = 0) buffer Out { float out_[]; };\n\
         void main() { out_[gl_LocalInvocationID.x] *= 3.0; }\n",
    );
    assert_eq!(facts.rounding_rte_widths, [32]);
    assert_eq!(facts.denorm_preserve_widths, [32]);
}

/// A glslc that notes each of its calls in `log` and runs the real one.
fn logging_glslc(dir: &Path, log: &Path) -> String {
    let real = glslc();
    let script = dir.join("glslc-logging");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script.display().to_string()
}

/// The glslc calls that compiled a shader (not `--version`) since the last.
fn compiles_logged(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let _ = std::fs::remove_file(log);
    text.lines().filter(|l| l.contains(".comp")).count()
}

#[test]
fn the_spirv_cache_restores_what_it_stored_and_misses_on_any_change() {
    let dir = scratch_dir("spirv-cache");
    let log = dir.join("glslc.log");
    let glslc = logging_glslc(&dir, &log);
    let shader_dir = dir.join("shaders");
    let cache = dir.join("cache");
    std::fs::create_dir_all(&shader_dir).unwrap();
    let write_shader = |value: u32| {
        std::fs::write(
            shader_dir.join("good.comp"),
            format!(
                "#version 450\nlayout(local_size_x = 1) in;\n\
                 layout(set = 0, binding = 0) buffer B {{ uint v[]; }};\n\
                 void main() {{ v[0] = {value}u; }}\n"
            ),
        )
        .unwrap();
    };
    write_shader(1);
    let variants: Vec<_> = (0..3)
        .map(|i| plain_variant(&format!("good_{i}"), "good.comp"))
        .collect();
    let build = |name: &str, variants: &[shaders::Variant]| {
        let spv = dir.join(name);
        std::fs::create_dir_all(&spv).unwrap();
        let outputs =
            shaders::compile_all_cached(&glslc, &shader_dir, &spv, variants, 2, Some(&cache));
        let bytes: Vec<Vec<u8>> = outputs
            .iter()
            .map(|(p, _)| std::fs::read(p).unwrap())
            .collect();
        for (path, inputs) in &outputs {
            assert!(path.starts_with(&spv), "{path:?}");
            assert!(
                inputs.iter().any(|p| p.ends_with("good.comp")),
                "{inputs:?}"
            );
        }
        bytes
    };
    // The first build compiles and stores; the second, into another folder
    // as clippy's build script run is, restores the same bytes with no glslc.
    let first = build("first", &variants);
    assert_eq!(compiles_logged(&log), 3);
    let entries: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let [first_entry] = &entries[..] else {
        panic!("one entry after one build: {entries:?}")
    };
    let second = build("second", &variants);
    assert_eq!(compiles_logged(&log), 0);
    assert_eq!(first, second);
    // A changed define, then a changed shader, compile again.
    let mut defined = variants.clone();
    defined[1].defines.push("EXTRA=1".to_string());
    build("defined", &defined);
    assert_eq!(compiles_logged(&log), 3);
    write_shader(2);
    let edited = build("edited", &variants);
    assert_eq!(compiles_logged(&log), 3);
    assert_ne!(edited, first);
    // A partial entry (a file gone) is a miss, not half a build.
    write_shader(1);
    std::fs::remove_file(first_entry.join("good_2.d")).unwrap();
    assert_eq!(build("partial", &variants), first);
    assert_eq!(compiles_logged(&log), 3);
    assert_eq!(build("repaired", &variants), first);
    assert_eq!(compiles_logged(&log), 0);
    // The cache keeps its newest entries only.
    for value in 3..10 {
        write_shader(value);
        build("many", &variants);
    }
    let kept = std::fs::read_dir(&cache).unwrap().count();
    compiles_logged(&log);
    // A cache that cannot be written (a file where its folder should be)
    // leaves the build its compiled shaders, and stays as it was.
    let blocked = dir.join("blocked");
    std::fs::write(&blocked, "not a folder").unwrap();
    let spv = dir.join("uncached");
    std::fs::create_dir_all(&spv).unwrap();
    let outputs =
        shaders::compile_all_cached(&glslc, &shader_dir, &spv, &variants, 2, Some(&blocked));
    let uncached: Vec<Vec<u8>> = outputs
        .iter()
        .map(|(p, _)| std::fs::read(p).unwrap())
        .collect();
    let still_a_file = std::fs::read_to_string(&blocked).unwrap();
    let compiled = compiles_logged(&log);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(kept, shaders::spirv_cache::KEPT_ENTRIES);
    assert_eq!(compiled, 3);
    assert_eq!(uncached.len(), 3);
    assert_eq!(still_a_file, "not a folder");
}
