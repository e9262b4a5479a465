//! The benchmark commands refuse bad options with a reason, before they look
//! for a device; `bench-vk` times every kernel (and the Adam steps) on the
//! test device and checks the extra variants it times against the one in use.

use crate::cli_support::{nyxq, nyxq_with_env};
use nyxq::format::{Format, VulkanFamily};
use nyxq::vk::shaders::{Op, compatible_kernel};

/// `nyxq bench-vk` on 1 MiB: a row for the copy kernel and for every
/// quantize/dequantize kernel, and every extra variant timed (the compatible
/// one beside an `_rte` one) wrote the same bytes as the one in use.
#[test]
fn bench_vk_times_every_kernel_and_its_extra_variants_agree() {
    let (ok, out, err) = nyxq_with_env(&["bench-vk", "1", "1"], &crate::vk_support::device_env());
    if !ok && err.contains("Vulkan backend is not available") {
        crate::vk_support::skip_missing(&err);
        return;
    }
    assert!(ok, "{err}");
    assert!(out.contains("| copy_f32_f32 |"), "{out}");
    for format in Format::with_vulkan(VulkanFamily::Conversions) {
        for op in Op::CONVERSIONS {
            let kernel = compatible_kernel(op, format).expect("every quantized format has kernels");
            assert!(out.contains(&format!("| {kernel} |")), "{kernel}: {out}");
        }
    }
    // The Adam steps of both state layouts, in the kernel on the bits at least.
    for kernel in ["adam_f32_f32", "adam_f32_q8"] {
        assert!(
            out.contains(&format!("| {kernel} |")) || out.contains(&format!("| {kernel}_rte |")),
            "{kernel}: {out}"
        );
    }
    assert!(!out.contains("DIFFERENT"), "{out}");
}

/// `nyxq bench-vk MIB ITER ROWS` takes `adam` (the copy kernel and the
/// Adam steps alone) and refuses any other rows.
#[test]
fn bench_vk_refuses_unknown_rows() {
    let (ok, _, err) = nyxq(&["bench-vk", "1", "1", "matmul"]);
    assert!(
        !ok && err.contains("unknown rows \"matmul\": the only choice is adam"),
        "{err}"
    );
}

#[test]
fn bench_vk_matvec_refuses_bad_options() {
    for (args, reason) in [
        (&["--batches", "0,9"][..], "is not a list of 1 to 8"),
        (&["--batches", "1,x"][..], "is not a list of 1 to 8"),
        (&["--batches"][..], "--batches needs a list"),
        (
            &["--variant", "fast"][..],
            "--variant needs all, dot_pre, dot, f32 or both",
        ),
        (&["--json"][..], "--json needs a file"),
        (&["--iterations", "many"][..], "--iterations needs a number"),
        (&["--frobnicate"][..], "unknown option '--frobnicate'"),
    ] {
        let mut all = vec!["bench-vk-matvec"];
        all.extend_from_slice(args);
        let (ok, _, err) = nyxq(&all);
        assert!(!ok && err.contains(reason), "{args:?}: {err}");
    }
}

#[test]
fn bench_vk_matmul_refuses_bad_options() {
    for (args, reason) in [
        (
            &["--variants"][..],
            "--variants (all or name suffixes) needs a list",
        ),
        (
            &["--variants", "_x16,"][..],
            "is not a list of the values it takes",
        ),
        (&["--shapes", "64x33"][..], "COLS a multiple of 32"),
        (
            &["--tokens", "0"][..],
            "is not a list of the values it takes",
        ),
        (&["--frobnicate"][..], "unknown option '--frobnicate'"),
    ] {
        let mut all = vec!["bench-vk-matmul"];
        all.extend_from_slice(args);
        let (ok, _, err) = nyxq(&all);
        assert!(!ok && err.contains(reason), "{args:?}: {err}");
    }
}
