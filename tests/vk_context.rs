//! Context creation on Vulkan: lavapipe explicitly, AUTO's choice, and the
//! three ways Vulkan can be missing (no loader, no driver, no device).

use crate::vk_support::env::{
    DEFAULT, EMULATED, FORCE_COMPAT, INTEL_ICD, LAVAPIPE, LAVAPIPE_WITHOUT_LAYERS, NO_DEVICE,
    NO_DRIVER, NO_LOADER,
};
use crate::vk_support::{LAVAPIPE_ICD, run_alone_under, run_under};
use nyxq::context::{Backend, BackendPreference, Context, ContextSettings};

fn settings(backend: BackendPreference) -> ContextSettings {
    ContextSettings {
        backend,
        threads: 1,
        vulkan_validation: true,
        ..Default::default()
    }
}

#[test]
fn explicit_vulkan_on_lavapipe_reports_the_device() {
    if run_under(&[&LAVAPIPE]).is_none() {
        return;
    }
    if !std::path::Path::new(LAVAPIPE_ICD).exists() {
        crate::vk_support::skip_missing(&format!("lavapipe is not installed ({LAVAPIPE_ICD})"));
        return;
    }
    let ctx = Context::new(&settings(BackendPreference::Vulkan)).expect("lavapipe device");
    assert_eq!(ctx.backend(), Backend::Vulkan);
    let info = ctx.device_info().unwrap();
    assert!(info.name.contains("llvmpipe"), "{info:?}");
    assert_eq!(info.device_type, nyxq::vk::DeviceType::Cpu);
    assert_eq!(info.driver_name, "llvmpipe");
    assert!(info.api_version >= ash_api_1_2());
    assert!(info.max_storage_buffer_range >= 1 << 27);
    assert!(info.subgroup_size >= 1);
    assert!(info.device_local_bytes > 0);
    assert!(info.unified_memory);
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// Validation asked for where the layer is not installed is refused, not run
/// unchecked: VULKAN fails with the reason, AUTO falls back and says why.
#[test]
fn validation_asked_without_the_layer_is_refused() {
    // lavapipe pinned, but without NYXQ_VK_VALIDATION: only the settings ask.
    if run_under(&[&LAVAPIPE_WITHOUT_LAYERS]).is_none() {
        return;
    }
    if !std::path::Path::new(LAVAPIPE_ICD).exists() {
        crate::vk_support::skip_missing(&format!("lavapipe is not installed ({LAVAPIPE_ICD})"));
        return;
    }
    let err = Context::new(&settings(BackendPreference::Vulkan)).unwrap_err();
    assert_eq!(err.kind(), nyxq::ErrorKind::Unsupported);
    assert!(
        err.message()
            .contains("VK_LAYER_KHRONOS_validation is not installed"),
        "{err}"
    );
    let ctx = Context::new(&settings(BackendPreference::Auto)).unwrap();
    assert_eq!(ctx.backend(), Backend::Cpu);
    let reason = ctx.fallback_reason().unwrap();
    assert!(
        reason.contains("VK_LAYER_KHRONOS_validation is not installed"),
        "{reason}"
    );
    let without = Context::new(&ContextSettings {
        vulkan_validation: false,
        ..settings(BackendPreference::Vulkan)
    })
    .expect("lavapipe without validation");
    assert_eq!(without.backend(), Backend::Vulkan);
}

fn ash_api_1_2() -> u32 {
    (1 << 22) | (2 << 12)
}

#[test]
fn auto_skips_a_cpu_vulkan_device_and_says_why() {
    if run_under(&[&LAVAPIPE]).is_none() {
        return;
    }
    // Which reason AUTO must give depends on whether lavapipe runs here:
    // explicit VULKAN (which accepts a CPU device) tells.
    if let Err(e) = Context::new(&settings(BackendPreference::Vulkan)) {
        crate::vk_support::skip_missing(&format!("lavapipe does not run here: {e}"));
        return;
    }
    let ctx = Context::new(&settings(BackendPreference::Auto)).unwrap();
    assert_eq!(ctx.backend(), Backend::Cpu);
    let reason = ctx.fallback_reason().unwrap();
    assert!(
        reason.contains("is a cpu device, slower than the CPU backend"),
        "{reason}"
    );
}

#[test]
fn no_loader_falls_back_or_fails_with_the_reason() {
    if run_under(&[&NO_LOADER]).is_none() {
        return;
    }
    let ctx = Context::new(&settings(BackendPreference::Auto)).unwrap();
    assert_eq!(ctx.backend(), Backend::Cpu);
    assert!(ctx.fallback_reason().unwrap().contains("no Vulkan loader"));
    let err = Context::new(&settings(BackendPreference::Vulkan)).unwrap_err();
    assert_eq!(err.kind(), nyxq::ErrorKind::Unsupported);
    assert!(err.message().contains("no Vulkan loader"), "{err}");
}

#[test]
fn no_driver_falls_back_or_fails_with_the_reason() {
    if run_under(&[&NO_DRIVER]).is_none() {
        return;
    }
    let ctx = Context::new(&settings(BackendPreference::Auto)).unwrap();
    assert_eq!(ctx.backend(), Backend::Cpu);
    let reason = ctx.fallback_reason().unwrap().to_string();
    let err = Context::new(&settings(BackendPreference::Vulkan)).unwrap_err();
    assert_eq!(err.kind(), nyxq::ErrorKind::Unsupported);
    if reason.contains("no Vulkan loader") {
        crate::vk_support::skip_missing(&format!("no Vulkan loader on this machine: {reason}"));
        return;
    }
    assert!(reason.contains("no Vulkan driver"), "{reason}");
    assert!(err.message().contains("no Vulkan driver"), "{err}");
}

/// A driver whose hardware is absent (Intel's ANV manifest on a machine with no
/// Intel GPU) loads and enumerates no device.
#[test]
fn no_device_falls_back_or_fails_with_the_reason() {
    if run_under(&[&NO_DEVICE]).is_none() {
        return;
    }
    if !std::path::Path::new(INTEL_ICD).exists()
        || std::path::Path::new("/dev/dri/renderD128").exists()
    {
        println!("SKIP: needs {INTEL_ICD} and no render node");
        return;
    }
    let ctx = Context::new(&settings(BackendPreference::Auto)).unwrap();
    assert_eq!(ctx.backend(), Backend::Cpu);
    let reason = ctx.fallback_reason().unwrap().to_string();
    if reason.contains("no Vulkan loader") {
        crate::vk_support::skip_missing(&format!("no Vulkan loader on this machine: {reason}"));
        return;
    }
    // The driver loads but finds no hardware: it enumerates nothing, or its
    // enumeration fails (ANV here: VK_ERROR_INITIALIZATION_FAILED); there is
    // never a device that is then rejected ("no usable Vulkan device").
    assert!(reason.contains("no Vulkan device"), "{reason}");
    let err = Context::new(&settings(BackendPreference::Vulkan)).unwrap_err();
    assert!(err.message().contains("device"), "{err}");
}

#[test]
fn self_test_passes_every_kernel_on_the_device() {
    let Some(row) = run_under(&[&DEFAULT, &FORCE_COMPAT]) else {
        return;
    };
    let Some(ctx) = row.context() else {
        return;
    };
    // Every conversion of every format with conversion kernels and every
    // product of every format with matmul kernels, once.
    use nyxq::format::{Format, VulkanFamily};
    use nyxq::vk::shaders::Op;
    let kernels = Format::with_vulkan(VulkanFamily::Conversions).count() * Op::CONVERSIONS.len()
        + Format::with_vulkan(VulkanFamily::Matmul).count() * Op::PRODUCTS.len();
    assert_eq!(ctx.self_test().len(), kernels);
    for r in ctx.self_test() {
        assert_eq!(r.failure, None, "{}", r.kernel);
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// Under each emulated device report the context's device has the report's
/// features (where the device under it has them too), its lower limits and
/// its memory; only the kernel variants those features allow run, every one
/// passes its self-test, and the planner's detected hardware is the same
/// device.
#[test]
fn an_emulated_device_has_the_reports_facts_and_only_the_kernels_they_allow() {
    let Some(row) = run_under(&EMULATED) else {
        return;
    };
    let Some(ctx) = row.context() else {
        return;
    };
    let path = row
        .emulated_report()
        .expect("an emulation row names its report");
    let report = nyxq::device_report::load_emulation(path).unwrap();
    let info = ctx.device_info().expect("a Vulkan context");
    let at_most = |have: bool, report: Option<bool>| report.is_none_or(|r| r || !have);
    assert!(at_most(info.shader_float16, report.shader_float16));
    assert!(at_most(info.shader_int8, report.shader_int8));
    assert!(at_most(info.storage_8bit, report.storage_8bit));
    assert!(at_most(info.storage_16bit, report.storage_16bit));
    assert!(at_most(info.rounding_rte_f16, report.rounding_rte_f16));
    assert!(at_most(
        info.denorm_preserve_f16,
        report.denorm_preserve_f16
    ));
    assert!(at_most(
        info.integer_dot_product,
        report.integer_dot_product
    ));
    assert!(at_most(
        info.integer_dot_accelerated,
        report.integer_dot_accelerated
    ));
    let limit = |have: u64, report: Option<u64>| report.is_none_or(|r| have <= r);
    assert!(limit(
        info.max_storage_buffer_range.into(),
        report.max_storage_buffer_range.map(u64::from)
    ));
    assert!(limit(
        info.max_allocation_bytes,
        report.max_allocation_bytes
    ));
    assert!(limit(info.device_local_bytes, report.device_local_bytes));
    assert!(limit(
        info.max_workgroup_bytes.into(),
        report.max_workgroup_bytes.map(u64::from)
    ));
    if let Some(count) = report.max_workgroup_count {
        for (have, most) in info.max_workgroup_count.iter().zip(count) {
            assert!(*have <= most);
        }
    }
    assert_eq!(Some(info.unified_memory), report.unified_memory);
    let engine = ctx.vulkan_engine().unwrap();
    for r in ctx.self_test() {
        assert_eq!(r.failure, None, "{} under {}", r.kernel, row.name);
        assert!(
            engine.variant_supported(r.kernel),
            "{} runs without the features it needs under {}",
            r.kernel,
            row.name
        );
    }
    if report.shader_float16 == Some(false) {
        assert!(
            ctx.self_test()
                .iter()
                .all(|r| !r.kernel.kernel().needs.float16),
            "no f16-arithmetic variant without shaderFloat16"
        );
    }
    let hardware = ctx.hardware().unwrap();
    assert_eq!(hardware.device_local_bytes, info.device_local_bytes);
    assert_eq!(hardware.int8_dot, info.integer_dot_accelerated);
    assert_eq!(hardware.fp16_arithmetic, info.shader_float16);
    assert!(
        hardware
            .description
            .ends_with(&format!("emulating {}", info.emulating.as_deref().unwrap()))
    );
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// The kernels a context chose: each conversion's variant and the forward
/// matvec's variant for each block format and batch.
fn kernel_choice(ctx: &Context) -> Vec<String> {
    use nyxq::format::{Format, VulkanFamily};
    let mut choice: Vec<String> = ctx
        .self_test()
        .iter()
        .filter(|r| r.failure.is_none())
        .map(|r| r.kernel.to_string())
        .collect();
    let matvec = ctx.vulkan_engine().unwrap().matvec();
    for format in Format::with_vulkan(VulkanFamily::Matvec) {
        for batch in [1, 2, 8] {
            let variant = matvec.forward_variant(ctx.force_compat(), format, batch);
            choice.push(format!("matvec {format:?} x{batch}: {variant:?}"));
        }
    }
    choice
}

/// `nyxq plan --hardware detect` on a device emulating a report plans with
/// that report's facts (`device_report::load_hardware`, what
/// `nyxq plan --hardware <report>` uses), within what the device under it
/// has: each flag is the report's and the device's, the allocation limit
/// and the device memory the lesser of the two. Every built-in report, by
/// name; and each chooses its kernels as one of the emulation rows the GPU
/// suite runs under does, so the suite covers every report's kernels.
#[test]
fn emulated_detection_plans_with_the_reports_facts() {
    if run_under(&[&DEFAULT]).is_none() {
        return;
    }
    let Some(real) = vulkan_context(settings(BackendPreference::Vulkan)) else {
        return;
    };
    let real = real.hardware().unwrap();
    let mut choices: Vec<(&str, Vec<String>)> = Vec::new();
    for name in nyxq::device_report::report_names() {
        let facts = nyxq::device_report::load_hardware(name).unwrap();
        let ctx = Context::new(&ContextSettings {
            vulkan_emulate: Some(name.to_string()),
            ..settings(BackendPreference::Vulkan)
        })
        .unwrap_or_else(|e| panic!("emulating {name}: {e}"));
        let detected = ctx.hardware().unwrap();
        let flags = |hw: &nyxq::plan::Hardware| {
            [
                hw.fp16_arithmetic,
                hw.int8_dot,
                hw.storage_16bit,
                hw.storage_8bit,
            ]
        };
        let both: Vec<bool> = flags(&facts)
            .iter()
            .zip(flags(&real))
            .map(|(fact, device)| *fact && device)
            .collect();
        assert_eq!(
            flags(&detected).to_vec(),
            both,
            "{name}: fp16, int8 dot, 16-bit and 8-bit storage"
        );
        let least = |fact: u64, device: u64| match (fact, device) {
            (0, d) => d,
            (f, 0) => f,
            (f, d) => f.min(d),
        };
        assert_eq!(
            detected.max_allocation_bytes,
            least(facts.max_allocation_bytes, real.max_allocation_bytes),
            "{name}"
        );
        assert_eq!(
            detected.device_local_bytes,
            facts.device_local_bytes.min(real.device_local_bytes),
            "{name}"
        );
        assert_eq!(detected.unified_memory, facts.unified_memory, "{name}");
        assert!(
            detected.description.ends_with(&format!("emulating {name}")),
            "{}",
            detected.description
        );
        assert_eq!(ctx.vulkan_validation_errors(), 0, "{name}");
        choices.push((name, kernel_choice(&ctx)));
    }
    let suite_runs: Vec<&Vec<String>> = EMULATED
        .iter()
        .map(|row| {
            let report = std::path::Path::new(row.emulated_report().unwrap())
                .file_stem()
                .unwrap()
                .to_str()
                .unwrap();
            &choices.iter().find(|(name, _)| *name == report).unwrap().1
        })
        .collect();
    for (name, choice) in &choices {
        assert!(
            suite_runs.contains(&choice),
            "{name} chooses kernels no emulation row of the suite runs: add a row for it \
             (tests/vk_support/env.rs EMULATED, cpp_tests/CMakeLists.txt): {choice:?}"
        );
    }
}

/// A report that cannot be read, or whose facts are not numbers, fails the
/// context with a message naming the file; nothing falls back silently.
#[test]
fn an_unreadable_or_vague_device_report_fails_the_context() {
    if run_under(&[&DEFAULT]).is_none() {
        return;
    }
    let vague = std::env::temp_dir().join(format!("nyxq-vague-report-{}.json", std::process::id()));
    let mut report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("config/devices/amd-rx580--mesa-radv-25.json").unwrap(),
    )
    .unwrap();
    report["facts"]["max_storage_buffer_range"]["value"] = "min(heap, 4 GiB)".into();
    std::fs::write(&vague, report.to_string()).unwrap();
    for (path, kind, says) in [
        (
            "/nonexistent/report.json".to_string(),
            nyxq::error::ErrorKind::Io,
            "/nonexistent/report.json",
        ),
        (
            vague.display().to_string(),
            nyxq::error::ErrorKind::Config,
            "max_storage_buffer_range",
        ),
    ] {
        for backend in [BackendPreference::Auto, BackendPreference::Vulkan] {
            let e = Context::new(&ContextSettings {
                vulkan_emulate: Some(path.clone()),
                ..settings(backend)
            })
            .unwrap_err();
            assert_eq!(e.kind(), kind, "{e}");
            assert!(e.message().contains(says), "{e}");
        }
    }
    std::fs::remove_file(&vague).unwrap();
}

/// A second context on the same device in the same process takes the first
/// one's self-test verdicts without running a kernel (no submission at
/// all), and gets the same results; a context whose verdicts would differ
/// (a perturbed kernel, the compatible kernels forced) runs its own.
#[test]
fn a_second_context_on_the_device_reuses_the_self_tests_verdicts() {
    // Alone: an earlier test's contexts in a shared child would have left
    // their verdicts for this one's first context.
    if run_alone_under(&[&DEFAULT]).is_none() {
        return;
    }
    use nyxq::format::Format;
    use nyxq::vk::shaders::Op;
    use std::sync::atomic::Ordering::Relaxed;
    let made = |settings: ContextSettings| {
        let ctx = Context::new(&settings).expect("a Vulkan context on the test device");
        let submitted = ctx.vulkan().unwrap().device.submissions.load(Relaxed);
        (ctx, submitted)
    };
    let (first, first_submitted) = made(settings(BackendPreference::Vulkan));
    assert!(first_submitted > 0, "the first context ran the self-test");
    let (second, second_submitted) = made(settings(BackendPreference::Vulkan));
    assert_eq!(second_submitted, 0, "the second context ran no kernel");
    assert_eq!(second.self_test(), first.self_test());
    assert_eq!(second.vulkan_report(), first.vulkan_report());
    assert!(second.vulkan_kernel_enabled(Op::Quantize, Format::Q4_0));

    let (perturbed, perturbed_submitted) = made(ContextSettings {
        vulkan_perturb_kernel: Some("quantize_f32_q4_0".to_string()),
        ..settings(BackendPreference::Vulkan)
    });
    assert!(perturbed_submitted > 0);
    assert!(!perturbed.vulkan_kernel_enabled(Op::Quantize, Format::Q4_0));
    let (compat, compat_submitted) = made(ContextSettings {
        vulkan_force_compat: true,
        ..settings(BackendPreference::Vulkan)
    });
    assert!(compat_submitted > 0);
    assert_ne!(compat.self_test(), first.self_test());
    // The verdicts taken do not leak between keys.
    let (third, third_submitted) = made(settings(BackendPreference::Vulkan));
    assert_eq!(third_submitted, 0);
    assert!(third.vulkan_kernel_enabled(Op::Quantize, Format::Q4_0));
    assert_eq!(third.self_test(), first.self_test());
}

/// A kernel corrupted on purpose is caught by the self-test, disabled, and the
/// context's quantize then gives the CPU twin's bytes.
#[test]
fn a_disagreeing_kernel_is_disabled_and_the_cpu_twin_used() {
    if run_under(&[&DEFAULT]).is_none() {
        return;
    }
    let ctx = match Context::new(&ContextSettings {
        vulkan_perturb_kernel: Some("quantize_f32_q4_0".to_string()),
        ..settings(BackendPreference::Vulkan)
    }) {
        Ok(ctx) => ctx,
        Err(e) => {
            crate::vk_support::skip_missing(&format!("no Vulkan device: {e}"));
            return;
        }
    };
    use nyxq::format::Format;
    use nyxq::vk::shaders::Op;
    // (Q4_0's quantizer has no fast variant: the compatible one is the last.)
    assert!(!ctx.vulkan_kernel_enabled(Op::Quantize, Format::Q4_0));
    assert!(ctx.vulkan_kernel_enabled(Op::Quantize, Format::Q8_0));
    assert!(ctx.vulkan_kernel_enabled(Op::Dequantize, Format::Q4_0));
    let report = ctx.vulkan_report().join("\n");
    assert!(
        report.contains("quantize_f32_q4_0: self-test FAILED"),
        "{report}"
    );
    let x: Vec<f32> = (0..64).map(|i| i as f32 * 0.25 - 8.0).collect();
    let mut cpu = vec![0u8; 36];
    nyxq::quant::quantize(Format::Q4_0, &x, &mut cpu, &Default::default()).unwrap();
    let mut via_ctx = vec![0u8; 36];
    ctx.quantize(Format::Q4_0, &x, &mut via_ctx, &Default::default())
        .unwrap();
    assert_eq!(cpu, via_ctx);
    // The kernel really is wrong: called directly it differs.
    let mut direct = vec![0u8; 36];
    nyxq::vk::ops::quantize(
        ctx.vulkan().unwrap(),
        Format::Q4_0,
        &x,
        &mut direct,
        nyxq::quant::Rounding::Nearest,
    )
    .unwrap();
    assert_ne!(cpu, direct);
}

/// A Vulkan context whose self-test sees the kernel `name` write a wrong bit
/// (None, after a SKIP line, where no device exists).
fn context_perturbing(name: &str) -> Option<Context> {
    vulkan_context(ContextSettings {
        vulkan_perturb_kernel: Some(name.to_string()),
        ..settings(BackendPreference::Vulkan)
    })
}

/// A context with `settings` on the Vulkan device, or None (through
/// skip_missing) where no device exists.
fn vulkan_context(settings: ContextSettings) -> Option<Context> {
    match Context::new(&settings) {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            crate::vk_support::skip_missing(&format!("no Vulkan device: {e}"));
            None
        }
    }
}

/// 256 values and the CPU's Q4_0 bytes of them: what the fault-injection
/// tests expect from a device that works.
fn q4_0_reference() -> (Vec<f32>, Vec<u8>) {
    use nyxq::format::Format;
    let x: Vec<f32> = (0..256).map(|i| i as f32 * 0.125 - 16.0).collect();
    let mut q = vec![0u8; Format::Q4_0.size_of(256).unwrap()];
    nyxq::quant::quantize(Format::Q4_0, &x, &mut q, &Default::default()).unwrap();
    (x, q)
}

/// Where a kernel has two fast variants (Q4_1 -> F16: `_rte_dp` in f16
/// arithmetic, `_rte` by the hardware conversion), the first disagreeing
/// falls back to the second, not to the compatible one. Runs where the device
/// can run both (the H200; lavapipe cannot declare f16 subnormals kept).
#[test]
fn a_disagreeing_fast_variant_falls_back_to_the_next_fast_one() {
    if run_under(&[&DEFAULT]).is_none() {
        return;
    }
    use nyxq::format::Format;
    use nyxq::vk::shaders::{KernelId, Op};
    let Some(ctx) = context_perturbing("dequantize_q4_1_f16_rte_dp") else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let both = [
        KernelId::DEQUANTIZE_Q4_1_F16_RTE_DP,
        KernelId::DEQUANTIZE_Q4_1_F16_RTE,
    ];
    if ctx.force_compat() || !both.iter().all(|&k| engine.variant_supported(k)) {
        println!("SKIP: the device cannot run both fast Q4_1 -> F16 variants");
        return;
    }
    assert_eq!(
        engine.kernel(Op::DequantizeF16, Format::Q4_1).unwrap(),
        KernelId::DEQUANTIZE_Q4_1_F16_RTE
    );
    let report = ctx.vulkan_report().join("\n");
    assert!(
        report.contains(
            "dequantize_q4_1_f16_rte: rte variant (hardware f16 conversion, \
             round-to-nearest-even declared), self-test passed \
             (dequantize_q4_1_f16_rte_dp failed its self-test: dequantize to f16: byte 0"
        ),
        "{report}"
    );
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// A faster variant that disagrees with the CPU is dropped for the compatible
/// variant of the same kernel (not for the CPU), and the report says so.
#[test]
fn a_disagreeing_fast_variant_falls_back_to_the_compatible_one() {
    if run_under(&[&DEFAULT, &FORCE_COMPAT]).is_none() {
        return;
    }
    use nyxq::format::Format;
    use nyxq::vk::shaders::{KernelId, Op};
    let Some(ctx) = context_perturbing("dequantize_q4_0_f16_rte") else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    if ctx.force_compat() || !engine.variant_supported(KernelId::DEQUANTIZE_Q4_0_F16_RTE) {
        // Only the compatible variants run (under the forced-compatible row,
        // or on a device without them).
        assert_eq!(
            engine.kernel(Op::DequantizeF16, Format::Q8_0).unwrap(),
            KernelId::DEQUANTIZE_Q8_0_F16
        );
        println!("SKIP: the _rte variants do not run here");
        return;
    }
    assert_eq!(
        engine.kernel(Op::DequantizeF16, Format::Q4_0).unwrap(),
        KernelId::DEQUANTIZE_Q4_0_F16
    );
    assert!(ctx.vulkan_kernel_enabled(Op::DequantizeF16, Format::Q4_0));
    assert_eq!(
        engine.kernel(Op::DequantizeF16, Format::Q8_0).unwrap(),
        KernelId::DEQUANTIZE_Q8_0_F16_RTE
    );
    let report = ctx.vulkan_report().join("\n");
    assert!(
        report.contains(
            "dequantize_q4_0_f16: compat variant (32-bit words), self-test passed \
             (dequantize_q4_0_f16_rte failed its self-test: dequantize to f16: byte 0"
        ),
        "{report}"
    );
    let x: Vec<f32> = (0..64).map(|i| i as f32 * 0.25 - 8.0).collect();
    let mut q = vec![0u8; 36];
    nyxq::quant::quantize(Format::Q4_0, &x, &mut q, &Default::default()).unwrap();
    let mut cpu = vec![0u16; 64];
    nyxq::quant::dequantize_to_f16(Format::Q4_0, &q, &mut cpu, 1).unwrap();
    let mut gpu = vec![0u16; 64];
    nyxq::vk::ops::dequantize_to_f16(engine, Format::Q4_0, &q, &mut gpu).unwrap();
    assert_eq!(cpu, gpu);
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// Fault injection: the first device allocation after the self-test fails.
/// Without host fallback that is OutOfDeviceMemory and the output is untouched;
/// with it, the CPU gives the right bytes.
#[test]
fn a_failed_device_allocation_is_reported_or_falls_back_to_the_host() {
    if run_under(&[&DEFAULT]).is_none() {
        return;
    }
    use nyxq::format::Format;
    let (x, expected) = q4_0_reference();
    for host_fallback in [false, true] {
        let Some(ctx) = vulkan_context(ContextSettings {
            vulkan_fail_allocation: Some(1),
            vulkan_host_fallback: host_fallback,
            ..settings(BackendPreference::Vulkan)
        }) else {
            return;
        };
        let mut out = vec![0x77u8; expected.len()];
        let result = ctx.quantize(Format::Q4_0, &x, &mut out, &Default::default());
        if host_fallback {
            result.unwrap();
            assert_eq!(out, expected);
        } else {
            assert_eq!(
                result.unwrap_err().kind(),
                nyxq::ErrorKind::OutOfDeviceMemory
            );
            assert!(out.iter().all(|&b| b == 0x77));
            // The next call allocates again and succeeds.
            ctx.quantize(Format::Q4_0, &x, &mut out, &Default::default())
                .unwrap();
            assert_eq!(out, expected);
        }
        assert_eq!(ctx.vulkan_validation_errors(), 0);
    }
}

/// Fault injection fails a buffer's allocation after its VkBuffer and its
/// VkDeviceMemory exist (where vkBindBufferMemory would fail): both are
/// freed. The validation layer reports every object still alive when the
/// device is destroyed, so it counts no error once the context is gone.
#[test]
fn a_failed_buffer_allocation_frees_what_it_made() {
    if run_under(&[&DEFAULT]).is_none() {
        return;
    }
    use nyxq::vk::memory::Buffer;
    for host_visible in [false, true] {
        let Some(ctx) = vulkan_context(ContextSettings {
            vulkan_fail_allocation: Some(1),
            ..settings(BackendPreference::Vulkan)
        }) else {
            return;
        };
        let device = ctx.vulkan().unwrap().device.clone();
        let validation = device.instance.validation.clone();
        let err = Buffer::new(&device, 4096, host_visible)
            .err()
            .expect("the first allocation fails");
        assert_eq!(err.kind(), nyxq::ErrorKind::OutOfDeviceMemory, "{err}");
        assert!(err.message().contains("fault injection"), "{err}");
        drop(Buffer::new(&device, 4096, host_visible).unwrap());
        drop(device);
        drop(ctx);
        assert_eq!(validation.errors(), 0, "host_visible {host_visible}");
    }
}

/// Fault injection: the first submission after the self-test reports
/// VK_ERROR_DEVICE_LOST. That call and every later one on the context fail
/// with DeviceLost (the later ones naming the first loss) and write nothing;
/// a new context on the same driver works and gives the CPU's bytes.
#[test]
fn a_lost_device_stays_lost_and_a_new_context_works() {
    if run_under(&[&DEFAULT]).is_none() {
        return;
    }
    use nyxq::format::Format;
    let (x, expected) = q4_0_reference();
    let Some(lost) = vulkan_context(ContextSettings {
        vulkan_lose_device_at: Some(1),
        ..settings(BackendPreference::Vulkan)
    }) else {
        return;
    };
    let mut out = vec![0x77u8; expected.len()];
    let first = lost
        .quantize(Format::Q4_0, &x, &mut out, &Default::default())
        .unwrap_err();
    assert_eq!(first.kind(), nyxq::ErrorKind::DeviceLost, "{first}");
    assert!(first.message().contains("vkQueueSubmit"), "{first}");
    for _ in 0..2 {
        let again = lost
            .quantize(Format::Q4_0, &x, &mut out, &Default::default())
            .unwrap_err();
        assert_eq!(again.kind(), nyxq::ErrorKind::DeviceLost, "{again}");
        assert!(again.message().contains("lost earlier"), "{again}");
    }
    assert!(out.iter().all(|&b| b == 0x77), "nothing written");
    drop(lost);
    let fresh = Context::new(&settings(BackendPreference::Vulkan)).unwrap();
    fresh
        .quantize(Format::Q4_0, &x, &mut out, &Default::default())
        .unwrap();
    assert_eq!(out, expected);
    assert_eq!(fresh.vulkan_validation_errors(), 0);
}

/// A context borrowing the device of `own` (as a trainer hands over its
/// device), declaring the features of the chain at `chain` and the listed
/// extensions, through the same conversion the C ABI makes.
fn borrow_own_device(
    own: &Context,
    chain: *const std::ffi::c_void,
    device_extensions: &[&std::ffi::CStr],
    instance_extensions: &[&std::ffi::CStr],
) -> nyxq::Result<Context> {
    use nyxq::vk::borrowed::{BorrowedHandles, borrow};
    use nyxq::vk::features::{Declared, declared_in_chain};
    let names = |list: &[&std::ffi::CStr]| {
        list.iter()
            .map(|e| e.to_str().unwrap().to_string())
            .collect()
    };
    let device = &own.vulkan().unwrap().device;
    let handles = BorrowedHandles {
        get_instance_proc_addr: device.instance.entry.static_fn().get_instance_proc_addr,
        instance: device.instance.instance.handle(),
        physical_device: device.physical,
        device: device.device.handle(),
        queue_family: device.queue_family,
        queue: device.queue,
        declared: Declared {
            // SAFETY: the caller's chain of ash structures, alive across the call.
            features: unsafe { declared_in_chain(chain) }?,
            device_extensions: names(device_extensions),
            instance_extensions: names(instance_extensions),
        },
    };
    // SAFETY: `own` keeps the instance, device and queue alive for longer
    // than the borrowed context (each test drops it first).
    let borrowed = unsafe { borrow(&handles) }?;
    Context::with_device(&settings(BackendPreference::Vulkan), borrowed)
}

/// What a kernel wrote, named.
type Output = (String, Vec<u8>);

/// The bytes every conversion kernel gives for a large input of odd block
/// count on `ctx`'s device, and with `products` those of each matrix
/// format's product (through the variant the context chose).
fn kernel_outputs(ctx: &Context, products: bool) -> Vec<Output> {
    use nyxq::format::{Format, VulkanFamily};
    use nyxq::quant::Rounding;
    use nyxq::vk::{matvec, ops};
    let engine = ctx.vulkan().unwrap();
    // 129 blocks of 32 (a K-quant's super-blocks of 256).
    let x: Vec<f32> = (0..256 * 129)
        .map(|i| (i as f32 * 0.37).sin() * 3.0 + 1e-3)
        .collect();
    let floats = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
    let mut out = Vec::new();
    for format in Format::with_vulkan(VulkanFamily::Conversions) {
        let n = 129 * format.block_size().max(32);
        let x = &x[..n];
        let mut q = vec![0u8; format.size_of(n).unwrap()];
        ops::quantize(engine, format, x, &mut q, Rounding::Stochastic { seed: 7 }).unwrap();
        ops::quantize(engine, format, x, &mut q, Rounding::Nearest).unwrap();
        let mut back = vec![0f32; n];
        ops::dequantize(engine, format, &q, &mut back).unwrap();
        let mut half = vec![0u16; n];
        if ops::dequantize_to_f16(engine, format, &q, &mut half).is_ok() {
            let bytes = half.iter().flat_map(|h| h.to_le_bytes()).collect();
            out.push((format!("dequantize {} to f16", format.name()), bytes));
        }
        let mut fake = vec![0f32; n];
        ops::fake_quantize(engine, format, x, &mut fake, Rounding::Nearest).unwrap();
        out.extend([
            (format!("quantize {}", format.name()), q),
            (format!("dequantize {}", format.name()), floats(&back)),
            (format!("fake-quantize {}", format.name()), floats(&fake)),
        ]);
    }
    let (rows, cols) = (33u64, 256u64);
    for format in Format::with_vulkan(VulkanFamily::Matvec).filter(|_| products) {
        let w_values: Vec<f32> = (0..rows * cols)
            .map(|i| ((i % 61) as f32 - 30.0) * 0.05)
            .collect();
        let mut w = vec![0u8; format.size_of(w_values.len()).unwrap()];
        nyxq::quant::quantize(format, &w_values, &mut w, &Default::default()).unwrap();
        let call = matvec::MatvecCall {
            format,
            rows,
            cols,
            batch: 1,
            transposed: false,
            compat: false,
        };
        let mut y = vec![0f32; rows as usize];
        let host = matvec::HostOperands {
            w: &w,
            x: &x[..cols as usize],
            bias: None,
        };
        matvec::run_on_host_data(engine, &call, &host, &mut y).unwrap();
        out.push((format!("matvec {}", format.name()), floats(&y)));
    }
    out
}

/// Fails naming the first output that differs.
fn assert_same_outputs(got: &[Output], expected: &[Output]) {
    assert_eq!(got.len(), expected.len());
    for ((name, a), (_, b)) in got.iter().zip(expected) {
        let first = a.iter().zip(b).position(|(x, y)| x != y);
        assert!(
            a.len() == b.len() && first.is_none(),
            "{name}: byte {first:?} differs"
        );
    }
}

/// Every kernel's variant as the context chose it, and the matvec line.
fn kernel_choices(ctx: &Context) -> Vec<String> {
    ctx.vulkan_report()
        .into_iter()
        .filter(|l| !l.starts_with("device features:") && !l.starts_with("debug labels:"))
        .collect()
}

/// A borrowed device whose caller declares the features nyxq enables on its
/// own device runs the same kernel variants, with the same bytes, as nyxq's
/// device; its dispatches carry debug labels, and validation stays clean.
#[test]
fn a_borrowed_device_declaring_nyxqs_features_runs_the_same_kernels() {
    use ash::vk;
    use nyxq::vk::features::Feature;
    if run_under(&[&DEFAULT]).is_none() {
        return;
    }
    let Some(own) = vulkan_context(settings(BackendPreference::Vulkan)) else {
        return;
    };
    let enabled = own.vulkan().unwrap().device.enabled;
    let on = |f| enabled.has(f);
    // The chain a trainer passes to vkCreateDevice, with nyxq's features.
    let mut f11 = vk::PhysicalDeviceVulkan11Features::default()
        .storage_buffer16_bit_access(on(Feature::Storage16Bit));
    let mut f12 = vk::PhysicalDeviceVulkan12Features::default()
        .storage_buffer8_bit_access(on(Feature::Storage8Bit))
        .shader_float16(on(Feature::Float16))
        .shader_int8(on(Feature::Int8));
    let mut dot = vk::PhysicalDeviceShaderIntegerDotProductFeatures::default()
        .shader_integer_dot_product(on(Feature::IntegerDotProduct));
    let chain = vk::PhysicalDeviceFeatures2::default()
        .push_next(&mut f11)
        .push_next(&mut f12)
        .push_next(&mut dot);
    let dot_extension: &[&std::ffi::CStr] = if on(Feature::IntegerDotProduct) {
        &[ash::khr::shader_integer_dot_product::NAME]
    } else {
        &[]
    };
    let borrowed = borrow_own_device(
        &own,
        (&raw const chain).cast(),
        dot_extension,
        &[ash::ext::debug_utils::NAME],
    )
    .expect("borrowing with nyxq's features");
    let device = &borrowed.vulkan().unwrap().device;
    assert_eq!(device.enabled, enabled);
    assert!(device.debug_labels.is_some(), "VK_EXT_debug_utils declared");
    if own.device_info().unwrap().name.contains("llvmpipe") {
        // lavapipe has each: the test compares the fast variants.
        for feature in [
            Feature::Storage16Bit,
            Feature::Float16,
            Feature::IntegerDotProduct,
        ] {
            assert!(enabled.has(feature), "{feature:?}");
        }
    }
    assert_eq!(kernel_choices(&borrowed), kernel_choices(&own));
    let report = borrowed.vulkan_report().join("\n");
    assert!(report.contains("(declared by the caller)"), "{report}");
    assert!(
        report.contains("debug labels: each dispatch is labelled"),
        "{report}"
    );
    assert!(
        own.vulkan_report()
            .iter()
            .any(|l| l.contains("(enabled by nyxq")),
        "{:?}",
        own.vulkan_report()
    );
    assert_same_outputs(
        &kernel_outputs(&borrowed, true),
        &kernel_outputs(&own, true),
    );
    drop(borrowed);
    assert_eq!(own.vulkan_validation_errors(), 0);
}

/// Without a declaration a borrowed device runs only the variants that need
/// no optional feature, with the same bytes; a declaration the device cannot
/// honour, or a chain that loops, is refused with the reason.
#[test]
fn a_borrowed_device_without_declarations_runs_the_compatible_kernels() {
    use ash::vk;
    use nyxq::vk::shaders::{MatvecVariant, compatible_kernel};
    if run_under(&[&DEFAULT]).is_none() {
        return;
    }
    let Some(own) = vulkan_context(settings(BackendPreference::Vulkan)) else {
        return;
    };
    let plain = borrow_own_device(&own, std::ptr::null(), &[], &[]).expect("borrowing");
    let engine = plain.vulkan().unwrap();
    assert_eq!(engine.device.enabled, nyxq::vk::features::Features::NONE);
    assert!(engine.device.debug_labels.is_none());
    for r in plain.self_test() {
        assert_eq!(
            Some(r.kernel),
            compatible_kernel(r.op, r.format),
            "{}",
            r.kernel
        );
        assert_eq!(r.failure, None);
    }
    for batch in [1, 8] {
        let variant = engine
            .matvec()
            .forward_variant(false, nyxq::format::Format::Q4_0, batch);
        assert!(
            !matches!(variant, MatvecVariant::Dot | MatvecVariant::DotPre),
            "{variant:?}"
        );
    }
    let report = plain.vulkan_report().join("\n");
    assert!(
        report.contains("device features: none declared by the caller"),
        "{report}"
    );
    assert!(report.contains("debug labels: off"), "{report}");
    // The conversions give the CPU twin's bytes whatever the variant (the
    // products' `_dot` variant rounds x to int8: other bytes, by design).
    assert_same_outputs(&kernel_outputs(&plain, false), &kernel_outputs(&own, false));
    drop(plain);

    // shaderIntegerDotProduct without its extension on a device that does
    // not give Vulkan 1.3 commands to this 1.2 instance.
    let mut dot = vk::PhysicalDeviceShaderIntegerDotProductFeatures::default()
        .shader_integer_dot_product(true);
    let chain = vk::PhysicalDeviceFeatures2::default().push_next(&mut dot);
    if own.device_info().unwrap().integer_dot_product {
        let err = borrow_own_device(&own, (&raw const chain).cast(), &[], &[]).unwrap_err();
        assert_eq!(err.kind(), nyxq::ErrorKind::InvalidArgument, "{err}");
        assert!(
            err.message()
                .contains("shaderIntegerDotProduct is declared"),
            "{err}"
        );
    }
    let mut pair = [vk::PhysicalDeviceFeatures2::default(); 2];
    let second = (&raw mut pair[1]).cast();
    pair[0].p_next = second;
    let first = (&raw mut pair[0]).cast();
    pair[1].p_next = first;
    let err = borrow_own_device(&own, (&raw const pair[0]).cast(), &[], &[]).unwrap_err();
    assert_eq!(err.kind(), nyxq::ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains("chain loops"), "{err}");
    assert_eq!(own.vulkan_validation_errors(), 0);
}
