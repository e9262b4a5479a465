//! The Vulkan matmul (nyxq::vk::matmul) against an FP64 product of the
//! dequantized weights on lavapipe with the validation layer on: every
//! format, forward (with and without bias) and backward, shapes that cut
//! every 64 × 64 × 32 tile (t, n, k not multiples of the tiles; k a multiple
//! of the block size), NaN and ±Inf in X, each within the bound of the
//! variant the self-test chose (`Bound::Compat`, or `Bound::Coop` where the
//! device has cooperative matrices); the CPU twin (nyxq::matvec::matmul)
//! within the same bound; a deliberately wrong kernel caught by the bound
//! and by the self-test; the cooperative-matrix variant wherever the device
//! has it (the test says so where it does not); and every other variant the
//! device runs, each within its own bound.

use crate::matvec_support::{uniform, weights};
use crate::vk_support::env::{
    DEFAULT, EMULATE_IRIS_XE_ANV, Env, FORCE_COMPAT, SMALL_BINDING_RANGE, SMALL_LIMITS,
};
use crate::vk_support::run_under;
use nyxq::format::{Format, VulkanFamily};
use nyxq::vk::Engine;
use nyxq::vk::matmul::{self, Bound, MatmulCall};
use nyxq::vk::matvec::HostOperands;
use nyxq::vk::shaders::{KernelId, Op, experimental_kernels, fast_kernels, op_kernels};

/// Fills what a kernel must not write.
const GUARD: u32 = 0x7fc0_dead;

/// Runs `call` on the device with `kernel`; returns Y, checked not to write
/// past its end.
fn run(
    engine: &Engine,
    call: &MatmulCall,
    (wq, x, bias): (&[u8], &[f32], Option<&[f32]>),
    kernel: KernelId,
) -> Vec<f32> {
    let outputs = if call.transposed {
        call.cols
    } else {
        call.rows
    };
    let len = (call.tokens * outputs) as usize;
    let mut y = vec![f32::from_bits(GUARD); len + 5];
    let host = HostOperands { w: wq, x, bias };
    matmul::run_on_host_data_with(engine, call, &host, &mut y, kernel).unwrap();
    assert!(
        y[len..].iter().all(|v| v.to_bits() == GUARD),
        "{call:?}: wrote past Y"
    );
    y.truncate(len);
    y
}

/// [`run`] with the engine's chosen variant.
fn run_chosen(
    engine: &Engine,
    call: &MatmulCall,
    operands: (&[u8], &[f32], Option<&[f32]>),
) -> Vec<f32> {
    let kernel = engine.kernel(call.op(), call.format).unwrap();
    run(engine, call, operands, kernel)
}

/// The CPU twin's result of `call`.
fn cpu(call: &MatmulCall, wq: &[u8], x: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (rows, cols, tokens) = (call.rows as usize, call.cols as usize, call.tokens as usize);
    let outputs = if call.transposed { cols } else { rows };
    let mut y = vec![0f32; tokens * outputs];
    if call.transposed {
        nyxq::matvec::matmul_transposed(call.format, wq, rows, cols, x, tokens, &mut y, 2)
    } else {
        nyxq::matvec::matmul(call.format, wq, rows, cols, x, tokens, bias, &mut y, 2)
    }
    .unwrap();
    y
}

/// Checks `call` on the device and on the CPU against FP64 within the
/// bound of the variant in use (the CPU: `Bound::Compat`).
fn check(engine: &Engine, call: &MatmulCall, seed: u64, with_bias: bool) {
    let kernel = engine.kernel(call.op(), call.format).unwrap();
    check_with(engine, call, (seed, with_bias), kernel);
}

/// As [`check`], with `kernel` on the device.
fn check_with(
    engine: &Engine,
    call: &MatmulCall,
    (seed, with_bias): (u64, bool),
    kernel: KernelId,
) {
    let (rows, cols, tokens) = (call.rows as usize, call.cols as usize, call.tokens as usize);
    let (wq, w) = weights(call.format, rows, cols, seed);
    let n = if call.transposed { rows } else { cols };
    let x = uniform(tokens * n, seed + 1);
    let bias = uniform(rows, seed + 2);
    let bias = with_bias.then_some(&bias[..]);
    let gpu = run(engine, call, (&wq, &x, bias), kernel);
    let found = matmul::first_violation(call, &w, &x, bias, &gpu, Bound::of(kernel));
    assert_eq!(found, None, "{kernel} {call:?}");
    let host = cpu(call, &wq, &x, bias);
    let found = matmul::first_violation(call, &w, &x, bias, &host, Bound::Compat);
    assert_eq!(found, None, "CPU {call:?}");
}

/// The shapes: (rows, cols, tokens). Tiles are 64 tokens × 64 outputs × 32
/// values of the sum; the per-element formats add sums that are not whole
/// blocks, the K-quants rows of 1 to 3 super-blocks.
fn shapes(format: Format) -> Vec<(u64, u64, u64)> {
    if format.block_size() == 256 {
        return vec![(1, 256, 1), (37, 768, 19), (65, 256, 130), (130, 512, 67)];
    }
    let mut shapes = vec![(1, 32, 1), (37, 96, 19), (65, 64, 130), (130, 160, 67)];
    if !format.is_block() {
        shapes.extend([(5, 33, 3), (3, 7, 70), (70, 1, 2)]);
    }
    shapes
}

/// Every format × shape × direction × bias, with the engine's choice and
/// with the compatible kernels forced.
#[test]
fn every_format_and_odd_shape_is_within_the_bound() {
    let Some(row) = run_under(&[&DEFAULT, &FORCE_COMPAT, &EMULATE_IRIS_XE_ANV]) else {
        return;
    };
    let Some(ctx) = row.context() else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    for format in Format::with_vulkan(VulkanFamily::Matmul) {
        for (rows, cols, tokens) in shapes(format) {
            for transposed in [false, true] {
                let call = MatmulCall {
                    format,
                    rows,
                    cols,
                    tokens,
                    transposed,
                };
                check(engine, &call, rows * 7 + cols, false);
                if !transposed {
                    check(engine, &call, rows * 11 + tokens, true);
                }
            }
        }
        println!(
            "checked {format:?} with {} and {}",
            engine.kernel(Op::Matmul, format).unwrap(),
            engine.kernel(Op::MatmulTransposed, format).unwrap()
        );
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// NaN and ±Inf in X (and dY) propagate into the outputs whose sums take
/// them, and leave the others finite.
#[test]
fn non_finite_inputs_propagate() {
    let Some(ctx) = run_under(&[&DEFAULT, &FORCE_COMPAT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let (rows, tokens) = (9u64, 5u64);
    for format in Format::with_vulkan(VulkanFamily::Matmul) {
        let cols = format.block_size().max(64) as u64;
        let (wq, w) = weights(format, rows as usize, cols as usize, 5);
        for transposed in [false, true] {
            let n = if transposed { rows } else { cols } as usize;
            let mut x = uniform(tokens as usize * n, 3);
            x[n + 3] = f32::NAN;
            x[3 * n + 1] = f32::INFINITY;
            let call = MatmulCall {
                format,
                rows,
                cols,
                tokens,
                transposed,
            };
            let y = run_chosen(engine, &call, (&wq, &x, None));
            let kernel = engine.kernel(call.op(), format).unwrap();
            let found = matmul::first_violation(&call, &w, &x, None, &y, Bound::of(kernel));
            assert_eq!(found, None, "{kernel} {call:?}");
            let outputs = y.len() / tokens as usize;
            assert!(y[..outputs].iter().all(|v| v.is_finite()), "{kernel}");
            assert!(
                y[outputs..2 * outputs].iter().all(|v| v.is_nan()),
                "{kernel}"
            );
        }
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// A kernel made to write 2·v + 1 into its first output: the bound check
/// finds that output, and the self-test disables the kernel (recording it
/// is then refused) while the other direction keeps its own.
#[test]
fn a_wrong_kernel_fails_the_bound_and_the_self_test() {
    let Some(row) = run_under(&[&FORCE_COMPAT]) else {
        return;
    };
    let settings = nyxq::context::ContextSettings {
        vulkan_perturb_kernel: Some("matmul_q4_0_f32".to_string()),
        vulkan_force_compat: row.force_compat(),
        ..crate::vk_support::device_settings()
    };
    let Some(ctx) = crate::vk_support::context_with(settings) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let result = ctx
        .self_test()
        .iter()
        .find(|r| r.op == Op::Matmul && r.format == Format::Q4_0)
        .expect("the self-test ran the Q4_0 matmul");
    let why = result.failure.as_deref().expect("the self-test caught it");
    assert!(why.contains("token 0 output 0"), "{why}");
    assert!(!ctx.vulkan_kernel_enabled(Op::Matmul, Format::Q4_0));
    assert!(ctx.vulkan_kernel_enabled(Op::MatmulTransposed, Format::Q4_0));
    assert!(ctx.vulkan_kernel_enabled(Op::Matmul, Format::Q8_0));
    let err = ctx.recording_engine(Op::Matmul, Format::Q4_0).unwrap_err();
    assert_eq!(err.kind(), nyxq::ErrorKind::Unsupported, "{err}");
    // The same kernel on another shape: the bound check names the output.
    let call = MatmulCall {
        format: Format::Q4_0,
        rows: 70,
        cols: 64,
        tokens: 3,
        transposed: false,
    };
    let (wq, w) = weights(Format::Q4_0, 70, 64, 9);
    let x = uniform(3 * 64, 10);
    let y = run_chosen(engine, &call, (&wq, &x, None));
    let found = matmul::first_violation(&call, &w, &x, None, &y, Bound::Compat);
    assert!(found.is_some_and(|m| m.starts_with("token 0 output 0:")));
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// Where the device has cooperative matrices with the `_coop` kernels'
/// configuration, the self-test chooses the fastest cooperative-matrix
/// variant the device can run (`_coop128` where its 44 KiB of workgroup
/// memory fit) for every format and direction and it meets its bound on a
/// product of whole and cut tiles; elsewhere (lavapipe) the test says
/// that the device lacks them and checks the compatible kernel is chosen.
#[test]
fn the_cooperative_matrix_variant_runs_where_the_device_has_it() {
    let Some(ctx) = run_under(&[&DEFAULT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let info = &engine.device.info;
    let enabled = engine
        .device
        .enabled
        .has(nyxq::vk::features::Feature::CooperativeMatrix);
    let coop = info.cooperative_matmul_possible() && enabled;
    if !coop {
        println!(
            "NOTE: '{}' runs no cooperative-matrix matmul (VK_KHR_cooperative_matrix with \
             cooperativeMatrix: {}; 16x8x16 f16 x f16 + f32 at subgroup scope: {}; subgroup \
             size {}; shaderFloat16 {}; vulkanMemoryModel with device scope {}; enabled on the \
             device: {enabled}, which a validation layer older than 1.3.255 prevents): the \
             compatible kernels are checked",
            info.name,
            info.cooperative_matrix,
            info.cooperative_matrix_matmul_shape,
            info.subgroup_size,
            info.shader_float16,
            info.vulkan_memory_model
        );
    }
    for format in Format::with_vulkan(VulkanFamily::Matmul) {
        for op in Op::PRODUCTS {
            let kernel = engine.kernel(op, format).unwrap();
            assert_eq!(Bound::of(kernel) == Bound::Coop, coop, "{kernel}");
            assert!(ctx.vulkan_kernel_enabled(op, format), "{kernel}");
            // The fastest variant the device can run passed the self-test.
            let fastest = fast_kernels(op, format)
                .iter()
                .copied()
                .find(|&k| engine.variant_supported(k));
            if let (true, Some(fastest)) = (coop, fastest) {
                let rejected = ctx
                    .self_test()
                    .iter()
                    .find(|r| r.op == op && r.format == format)
                    .and_then(|r| r.rejected.clone());
                assert_eq!(kernel, fastest, "the self-test rejected it: {rejected:?}");
            }
            // Whole tiles of 64 and of 128 and cut ones in every direction
            // (whole super-blocks for the K-quants).
            let call = MatmulCall {
                format,
                rows: 260,
                cols: 320u64.next_multiple_of(format.block_size() as u64),
                tokens: 257,
                transposed: op == Op::MatmulTransposed,
            };
            check(engine, &call, 21, !call.transposed);
        }
        println!(
            "checked {format:?} with {} and {}",
            engine.kernel(Op::Matmul, format).unwrap(),
            engine.kernel(Op::MatmulTransposed, format).unwrap()
        );
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// Every variant of every product that the device runs (the fast ones the
/// self-test did not choose and, in a build with NYXQ_SHADER_EXPERIMENTS=1,
/// the measurement-only ones) meets its bound on a product of whole and cut
/// tiles of 64 and 128 (X rounded to f16 before the kernels that read it
/// so); recording a kernel of another product is refused. On lavapipe only
/// the compatible kernels run.
#[test]
fn every_variant_the_device_runs_is_within_its_bound() {
    let Some(ctx) = run_under(&[&DEFAULT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let mut ran = Vec::new();
    for format in [Format::Q4_0, Format::Q8_0, Format::F16, Format::Q4_K] {
        for op in Op::PRODUCTS {
            let call = MatmulCall {
                format,
                rows: 260,
                cols: 320u64.next_multiple_of(format.block_size() as u64),
                tokens: 257,
                transposed: op == Op::MatmulTransposed,
            };
            let variants = op_kernels(op, format)
                .iter()
                .chain(experimental_kernels(op, format));
            for &kernel in variants {
                if engine.variant_supported(kernel) {
                    check_with(engine, &call, (5, !call.transposed), kernel);
                    ran.push(kernel.name());
                }
            }
        }
    }
    println!("checked {}", ran.join(", "));
    let call = MatmulCall {
        format: Format::Q8_0,
        rows: 4,
        cols: 32,
        tokens: 1,
        transposed: false,
    };
    let (wq, _) = weights(Format::Q8_0, 4, 32, 1);
    let x = uniform(32, 2);
    let host = HostOperands {
        w: &wq,
        x: &x,
        bias: None,
    };
    let mut y = vec![0f32; 4];
    let other = engine.kernel(Op::MatmulTransposed, Format::Q8_0).unwrap();
    let err = matmul::run_on_host_data_with(engine, &call, &host, &mut y, other).unwrap_err();
    assert_eq!(err.kind(), nyxq::ErrorKind::Unsupported, "{err}");
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// Operands larger than the binding range (4 MiB, the test device with
/// the small limits of tests/fixtures/small-limits.json): X of 300 tokens ×
/// 4128 values (4.95 MB) is split by tokens, and W of 2 MiB more than the
/// range, Q8_0 rows of 4386 bytes (not a multiple of 4), by rows for the
/// backward product, whose chunks add into dX.
#[test]
fn products_past_the_binding_limit_are_split() {
    let Some(ctx) = run_under(&[&SMALL_LIMITS]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let limit = u64::from(engine.device.info.max_storage_buffer_range);
    assert_eq!(limit, SMALL_BINDING_RANGE, "the small limits apply");
    let format = Format::Q8_0;
    let cols = 32 * 129;
    let row_bytes = format.size_of(cols).unwrap();
    // Forward: X past the limit.
    let (rows, tokens) = (3usize, 300usize);
    assert!((4 * tokens * cols) as u64 > limit);
    let (wq, w) = weights(format, rows, cols, 31);
    let x = uniform(tokens * cols, 32);
    let call = MatmulCall {
        format,
        rows: rows as u64,
        cols: cols as u64,
        tokens: tokens as u64,
        transposed: false,
    };
    let y = run_chosen(engine, &call, (&wq, &x, None));
    let kernel = engine.kernel(Op::Matmul, format).unwrap();
    assert_eq!(
        matmul::first_violation(&call, &w, &x, None, &y, Bound::of(kernel)),
        None
    );
    // Backward: W past the limit. Random blocks made directly (quicker than
    // quantizing floats): scales 2^-9 to 2^-8, any int8 values.
    let rows = (limit as usize + (2 << 20)) / row_bytes + 1;
    assert!((rows * row_bytes) as u64 > limit);
    let mut wq = vec![0u8; rows * row_bytes];
    let noise = uniform(wq.len() / 4 + 1, 11);
    for (i, block) in wq.chunks_exact_mut(34).enumerate() {
        let r = noise[i % noise.len()].to_bits();
        block[..2].copy_from_slice(&(0x1800u16 | (r & 0x3ff) as u16).to_le_bytes());
        for (j, q) in block[2..].iter_mut().enumerate() {
            *q = (noise[(i * 7 + j) % noise.len()] * 127.0) as i8 as u8;
        }
    }
    let mut w = vec![0f32; rows * cols];
    nyxq::quant::dequantize(format, &wq, &mut w, 2).unwrap();
    let tokens = 3;
    let dy = uniform(tokens * rows, 33);
    let call = MatmulCall {
        format,
        rows: rows as u64,
        cols: cols as u64,
        tokens: tokens as u64,
        transposed: true,
    };
    let dx = run_chosen(engine, &call, (&wq, &dy, None));
    let kernel = engine.kernel(Op::MatmulTransposed, format).unwrap();
    assert_eq!(
        matmul::first_violation(&call, &w, &dy, None, &dx, Bound::of(kernel)),
        None
    );
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}
