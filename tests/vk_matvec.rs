//! The Vulkan matrix-vector products (nyxq::vk::matvec) on lavapipe with the
//! validation layer on: every format, batch 1 and 8, forward (with and
//! without bias) and transposed, odd shapes, NaN/Inf in x, W over 128 MiB
//! (more than lavapipe's maxStorageBufferRange, so split by rows), and bad
//! arguments. Results are checked against an FP64 product of the dequantized
//! weights within the bound of src/matvec/mod.rs, (n + 3)·2⁻²⁴·Σ|w·x|, and
//! against the CPU kernel (nyxq::matvec). Q8_0, Q4_0 and Q4_1 run the
//! integer-dot variant (NYXQ_VK_MATVEC_VARIANT=dot; lavapipe has shaderIntegerDotProduct),
//! checked within its bound: the f32 bound plus x's rounding,
//! Σ_blocks (s/2)·Σ|w|. The main tests run once more with the f32 subgroup
//! variant (NYXQ_VK_MATVEC_VARIANT=f32), with the default choice (dot up to
//! batch 2, f32 above), with the compatible variant forced
//! (NYXQ_VK_FORCE_COMPAT=1), with 8 and 32 rows per workgroup
//! (NYXQ_VK_MATVEC_ROWS) and with 1 and 2 row slots (NYXQ_VK_MATVEC_SLOTS).

mod vk_support;

use nyxq::format::{Format, VulkanFamily};
use nyxq::quant::{self, QuantizeOptions};
use nyxq::vk::Engine;
use nyxq::vk::matvec::{
    self, Arithmetic, HostOperands, MatvecCall, MatvecChoice, Operands, run_on_host_data,
};
use nyxq::vk::ranges::BufferRange;
use nyxq::vk::shaders::MatvecVariant as Variant;
use vk_support::{device_context, device_env, device_test, run_in_child};

/// Deterministic numbers in [-1, 1).
fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut h = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            (h >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// A rows×cols matrix in `format` (the CPU quantizer's bytes) and its
/// dequantized values.
fn weights(format: Format, rows: usize, cols: usize, seed: u64) -> (Vec<u8>, Vec<f32>) {
    let values = uniform(rows * cols, seed);
    let mut bytes = vec![0u8; format.size_of(rows * cols).unwrap()];
    quant::quantize(format, &values, &mut bytes, &QuantizeOptions::default()).unwrap();
    let mut deq = vec![0f32; rows * cols];
    quant::dequantize(format, &bytes, &mut deq, 1).unwrap();
    (bytes, deq)
}

/// W·x of a `rows`×`cols` matrix in `format` on `batch` vectors.
fn forward_call(format: Format, rows: usize, cols: usize, batch: u32, compat: bool) -> MatvecCall {
    MatvecCall {
        format,
        rows: rows as u64,
        cols: cols as u64,
        batch,
        transposed: false,
        compat,
    }
}

/// The FP64 product and Σ|w·x| of one output.
struct Reference {
    value: f64,
    magnitude: f64,
}

/// FP64 y = W·x (+ bias) or xᵀ·W over the dequantized weights.
fn reference(call: &MatvecCall, w: &[f32], x: &[f32], bias: Option<&[f32]>) -> Vec<Reference> {
    let (rows, cols, batch) = (call.rows as usize, call.cols as usize, call.batch as usize);
    let (outputs, n) = if call.transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let mut out = Vec::with_capacity(batch * outputs);
    for b in 0..batch {
        for o in 0..outputs {
            let mut value = 0.0f64;
            let mut magnitude = 0.0f64;
            for i in 0..n {
                let (wv, xv) = if call.transposed {
                    (w[i * cols + o], x[b * rows + i])
                } else {
                    (w[o * cols + i], x[b * cols + i])
                };
                let p = f64::from(wv) * f64::from(xv);
                value += p;
                magnitude += p.abs();
            }
            if let Some(bias) = bias {
                value += f64::from(bias[o]);
                magnitude += f64::from(bias[o]).abs();
            }
            out.push(Reference { value, magnitude });
        }
    }
    out
}

/// The documented bound of the f32 path for sums of n terms.
fn bound(n: usize, magnitude: f64) -> f64 {
    (n as f64 + 3.0) * 2f64.powi(-24) * magnitude
}

/// Checks one output against its reference: NaN where the reference is NaN,
/// the same infinity, else within `tolerance`.
fn check_value(got: f32, r: &Reference, tolerance: f64, what: &str) {
    if r.value.is_nan() {
        assert!(got.is_nan(), "{what}: {got}, expected NaN");
    } else if r.value.is_infinite() {
        assert_eq!(f64::from(got), r.value, "{what}");
    } else {
        let err = (f64::from(got) - r.value).abs();
        assert!(
            err <= tolerance,
            "{what}: {got} vs {} (error {err:e} > bound {tolerance:e})",
            r.value
        );
    }
}

/// The CPU kernel's extra error on its integer path (block formats, finite
/// x): Σ_blocks (max|x_blk|/127/2)·Σ|w_blk| for output `o` of vector `b`.
fn integer_path_term(call: &MatvecCall, w: &[f32], x: &[f32], b: usize, o: usize) -> f64 {
    if x.iter().any(|v| !v.is_finite()) {
        return 0.0;
    }
    rounding_term(call, w, x, b, o)
}

/// The extra error of rounding x to int8 per block (the CPU integer path
/// and the `_dot` variant) for output `o` of vector `b`: Σ over the finite
/// blocks of x (the others are multiplied in f32) of
/// (max|x_blk|/127/2)·Σ|w_blk|.
fn rounding_term(call: &MatvecCall, w: &[f32], x: &[f32], b: usize, o: usize) -> f64 {
    if call.transposed || !call.format.is_block() {
        return 0.0;
    }
    let cols = call.cols as usize;
    let xs = &x[b * cols..(b + 1) * cols];
    let ws = &w[o * cols..(o + 1) * cols];
    xs.chunks(32)
        .zip(ws.chunks(32))
        .filter(|(xb, _)| xb.iter().all(|v| v.is_finite()))
        .map(|(xb, wb)| {
            let amax = xb.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
            let wsum: f64 = wb.iter().map(|v| f64::from(v.abs())).sum();
            amax / 127.0 / 2.0 * wsum * 1.01
        })
        .sum()
}

/// The variant `call` runs on `engine`.
fn variant_of(engine: &Engine, call: &MatvecCall) -> Variant {
    if call.transposed {
        return Variant::Transposed;
    }
    engine
        .matvec()
        .forward_variant(call.compat, call.format, call.batch)
}

/// The device's extra error for output `o` of vector `b`: x's rounding
/// where `call` runs the `_dot` variant.
fn device_term(
    engine: &Engine,
    call: &MatvecCall,
    w: &[f32],
    x: &[f32],
    b: usize,
    o: usize,
) -> f64 {
    if variant_of(engine, call) == Variant::Dot {
        rounding_term(call, w, x, b, o)
    } else {
        0.0
    }
}

/// Runs `call` on the device and on the CPU kernel and checks both against
/// the FP64 reference.
fn check_call(
    engine: &Engine,
    call: &MatvecCall,
    wq: &[u8],
    w: &[f32],
    x: &[f32],
    bias: Option<&[f32]>,
) {
    let (rows, cols, batch) = (call.rows as usize, call.cols as usize, call.batch as usize);
    let outputs = if call.transposed { cols } else { rows };
    let n = if call.transposed { rows } else { cols };
    let mut gpu = vec![f32::from_bits(0x7fc0_dead); batch * outputs + 3];
    let host = HostOperands { w: wq, x, bias };
    run_on_host_data(engine, call, &host, &mut gpu).unwrap();
    assert!(
        gpu[batch * outputs..]
            .iter()
            .all(|v| v.to_bits() == 0x7fc0_dead),
        "{call:?}: wrote past y"
    );
    let variant = variant_of(engine, call);
    let mut cpu = vec![0f32; batch * outputs];
    if call.transposed {
        nyxq::matvec::matvec_transposed(call.format, wq, rows, cols, x, batch, &mut cpu, 2)
            .unwrap();
    } else {
        nyxq::matvec::matvec(call.format, wq, rows, cols, x, batch, bias, &mut cpu, 2).unwrap();
    }
    let refs = reference(call, w, x, bias);
    for (i, r) in refs.iter().enumerate() {
        let what = format!("{call:?} {variant:?} output {i}");
        let tol = bound(n, r.magnitude);
        let gpu_term = device_term(engine, call, w, x, i / outputs, i % outputs);
        check_value(gpu[i], r, tol + gpu_term, &format!("GPU {what}"));
        let cpu_term = integer_path_term(call, w, x, i / outputs, i % outputs);
        let cpu_ref = Reference {
            value: f64::from(cpu[i]),
            magnitude: r.magnitude,
        };
        if r.value.is_finite() {
            check_value(
                gpu[i],
                &cpu_ref,
                2.0 * tol + cpu_term + gpu_term,
                &format!("GPU vs CPU {what}"),
            );
        } else {
            // src/matvec/mod.rs promises NaN or ±Inf here (its Q4_1 path
            // factors out the block minimum, which can turn an infinity into NaN).
            assert!(!cpu[i].is_finite(), "CPU {what}: {}", cpu[i]);
        }
    }
}

/// The settings asked for through the environment are the ones the
/// choice uses: NYXQ_VK_FORCE_COMPAT=1 (or `force_compat`), the
/// arithmetic of NYXQ_VK_MATVEC_VARIANT and the forward variant it gives
/// Q4_0 at batch 8 (where the default picks f32), NYXQ_VK_MATVEC_ROWS
/// (capped at 8 for the f32 variants) and NYXQ_VK_MATVEC_SLOTS (the tests
/// ask only for slots that hold their rows, so none is raised).
fn assert_environment_settings_used(force_compat: bool, compat: bool, choice: &MatvecChoice) {
    let var = |key: &str| std::env::var(key).ok();
    if force_compat || var("NYXQ_VK_FORCE_COMPAT").as_deref() == Some("1") {
        assert!(compat, "compat variants asked for but not forced");
    }
    let arithmetic = match var("NYXQ_VK_MATVEC_VARIANT").as_deref() {
        Some("f32") => Arithmetic::F32,
        Some("dot") => Arithmetic::IntegerDot,
        _ => Arithmetic::Auto,
    };
    assert_eq!(choice.arithmetic(), arithmetic);
    let variant = choice.forward_variant(compat, Format::Q4_0, 8);
    if compat || !choice.subgroup_supported() {
        assert_eq!(variant, Variant::Compat);
    } else if arithmetic == Arithmetic::IntegerDot && choice.dot_supported() {
        assert_eq!(variant, Variant::Dot);
    } else {
        assert_eq!(variant, Variant::Subgroup);
    }
    if let Some(rows) = var("NYXQ_VK_MATVEC_ROWS") {
        let rows: u32 = rows.parse().unwrap();
        for batch in [1, 8] {
            let used = choice.rows_per_group(Variant::Dot, batch, Format::Q4_0, 4097);
            assert_eq!(used, rows, "_dot rows per group at batch {batch}");
            let used = choice.rows_per_group(Variant::Subgroup, batch, Format::Q4_0, 4097);
            assert_eq!(used, rows.min(8), "f32 rows per group at batch {batch}");
        }
        if let Some(slots) = var("NYXQ_VK_MATVEC_SLOTS") {
            let slots: u32 = slots.parse().unwrap();
            assert_eq!(choice.dot_slots(rows, 1), slots, "row slots at batch 1");
        }
    }
}

/// Every format × shape × batch × direction × bias.
fn every_format_and_shape(force_compat: bool) {
    let Some(ctx) = device_context(force_compat) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let choice = engine.matvec();
    assert_environment_settings_used(force_compat, ctx.force_compat(), choice);
    let q4 = choice.forward_variant(ctx.force_compat(), Format::Q4_0, 1);
    let rows = choice.rows_per_group(q4, 1, Format::Q4_0, 4097);
    println!(
        "subgroup variant supported: {}; dot variant supported: {}; forward variant used: {:?} (F16), {q4:?} (Q4_0); rows per group {}/{}, row slots {}",
        choice.subgroup_supported(),
        choice.dot_supported(),
        choice.forward_variant(ctx.force_compat(), Format::F16, 1),
        rows,
        choice.rows_per_group(q4, 8, Format::Q4_0, 4097),
        choice.dot_slots(rows, 1),
    );
    for format in Format::with_vulkan(VulkanFamily::Matvec) {
        let mut shapes = vec![
            (1, 32),
            (7, 96),
            (4097, 32),
            (7, 4128),
            (1, 4128),
            (4097, 96),
        ];
        if !format.is_block() {
            shapes.extend([(7, 1), (5, 33), (3, 4097)]);
        }
        for (rows, cols) in shapes {
            let (wq, w) = weights(format, rows, cols, (rows * 31 + cols) as u64);
            for batch in [1u32, 8] {
                for transposed in [false, true] {
                    let call = MatvecCall {
                        format,
                        rows: rows as u64,
                        cols: cols as u64,
                        batch,
                        transposed,
                        compat: ctx.force_compat(),
                    };
                    let n = if transposed { rows } else { cols };
                    let x = uniform(batch as usize * n, u64::from(batch) + 7);
                    check_call(engine, &call, &wq, &w, &x, None);
                    if !transposed {
                        let bias = uniform(rows, 99);
                        check_call(engine, &call, &wq, &w, &x, Some(&bias));
                    }
                }
            }
            println!("checked {format:?} {rows}x{cols}");
        }
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// Runs `body(compat)` in a child (the test `name`) with `extra` added to
/// the device environment; the parent checks the child.
fn in_child_with(name: &str, extra: &[(&'static str, &str)], compat: bool, body: fn(bool)) {
    let mut env = device_env();
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    if run_in_child(name, &env) {
        return;
    }
    body(compat);
}

/// Runs every_format_and_shape in a child with `extra` added to the device
/// environment.
fn every_format_and_shape_with(name: &str, extra: &[(&'static str, &str)], compat: bool) {
    in_child_with(name, extra, compat, every_format_and_shape);
}

/// The `_dot` variant at every batch (by default it runs up to batch
/// DOT_MAX_BATCH; NYXQ_VK_MATVEC_VARIANT=dot asks for it at any).
const DOT: (&str, &str) = ("NYXQ_VK_MATVEC_VARIANT", "dot");

#[test]
fn every_format_and_shape_matches_the_references() {
    every_format_and_shape_with(
        "every_format_and_shape_matches_the_references",
        &[DOT],
        false,
    );
}

/// The default choice (dot for small batches, f32 above).
#[test]
fn auto_every_format_and_shape_matches_the_references() {
    every_format_and_shape_with(
        "auto_every_format_and_shape_matches_the_references",
        &[],
        false,
    );
}

/// One row slot of 128 lanes (8 rows each): a `_dot` specialisation
/// (lavapipe's subgroups of 8 make 16 partial sums per output).
#[test]
fn one_row_slot_matches_the_references() {
    every_format_and_shape_with(
        "one_row_slot_matches_the_references",
        &[
            DOT,
            ("NYXQ_VK_MATVEC_ROWS", "8"),
            ("NYXQ_VK_MATVEC_SLOTS", "1"),
        ],
        false,
    );
}

/// Two row slots of 64 lanes (8 rows each).
#[test]
fn two_row_slots_match_the_references() {
    every_format_and_shape_with(
        "two_row_slots_match_the_references",
        &[
            DOT,
            ("NYXQ_VK_MATVEC_ROWS", "16"),
            ("NYXQ_VK_MATVEC_SLOTS", "2"),
        ],
        false,
    );
}

#[test]
fn f32_every_format_and_shape_matches_the_references() {
    every_format_and_shape_with(
        "f32_every_format_and_shape_matches_the_references",
        &[("NYXQ_VK_MATVEC_VARIANT", "f32")],
        false,
    );
}

#[test]
fn compat_every_format_and_shape_matches_the_references() {
    every_format_and_shape_with(
        "compat_every_format_and_shape_matches_the_references",
        &[("NYXQ_VK_FORCE_COMPAT", "1")],
        true,
    );
}

/// NYXQ_VK_MATVEC_ROWS=8: the largest specialisation (8 rows x 8 vectors =
/// 64 sums per workgroup: 4 rounds of the shared-memory reduction).
#[test]
fn eight_rows_per_group_match_the_references() {
    every_format_and_shape_with(
        "eight_rows_per_group_match_the_references",
        &[DOT, ("NYXQ_VK_MATVEC_ROWS", "8")],
        false,
    );
}

/// NYXQ_VK_MATVEC_ROWS=32: the largest `_dot` specialisation (8 rows per
/// row slot; the f32 variants take 8).
#[test]
fn thirty_two_rows_per_group_match_the_references() {
    every_format_and_shape_with(
        "thirty_two_rows_per_group_match_the_references",
        &[DOT, ("NYXQ_VK_MATVEC_ROWS", "32")],
        false,
    );
}

#[test]
fn compat_eight_rows_per_group_match_the_references() {
    every_format_and_shape_with(
        "compat_eight_rows_per_group_match_the_references",
        &[("NYXQ_VK_MATVEC_ROWS", "8"), ("NYXQ_VK_FORCE_COMPAT", "1")],
        true,
    );
}

/// NaN and ±Inf in x propagate as IEEE arithmetic says.
fn non_finite_x(force_compat: bool) {
    let Some(ctx) = device_context(force_compat) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let (rows, cols, batch) = (9usize, 96usize, 8u32);
    for format in Format::with_vulkan(VulkanFamily::Matvec) {
        let (wq, w) = weights(format, rows, cols, 5);
        for transposed in [false, true] {
            let n = if transposed { rows } else { cols };
            let mut x = uniform(batch as usize * n, 3);
            x[3] = f32::NAN;
            x[n + 5] = f32::INFINITY;
            x[2 * n + 1] = f32::NEG_INFINITY;
            x[3 * n + 2] = f32::INFINITY;
            x[3 * n + 4] = f32::NEG_INFINITY;
            let call = MatvecCall {
                format,
                rows: rows as u64,
                cols: cols as u64,
                batch,
                transposed,
                compat: ctx.force_compat(),
            };
            check_call(engine, &call, &wq, &w, &x, None);
        }
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

#[test]
fn non_finite_x_propagates() {
    in_child_with("non_finite_x_propagates", &[DOT], false, non_finite_x);
}

#[test]
fn f32_non_finite_x_propagates() {
    in_child_with(
        "f32_non_finite_x_propagates",
        &[("NYXQ_VK_MATVEC_VARIANT", "f32")],
        false,
        non_finite_x,
    );
}

#[test]
fn compat_non_finite_x_propagates() {
    in_child_with(
        "compat_non_finite_x_propagates",
        &[("NYXQ_VK_FORCE_COMPAT", "1")],
        true,
        non_finite_x,
    );
}

/// Without compat forced, Q8_0, Q4_0 and Q4_1 run the integer-dot variant
/// on lavapipe (it has subgroup arithmetic and shaderIntegerDotProduct);
/// F32/F16/BF16 the f32 subgroup one; NYXQ_VK_MATVEC_VARIANT's choice can be
/// changed at run time (the benchmark does).
#[test]
fn block_formats_choose_the_dot_variant() {
    let Some(ctx) = device_test("block_formats_choose_the_dot_variant") else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    assert!(
        engine.device.enabled_integer_dot,
        "lavapipe has shaderIntegerDotProduct"
    );
    let choice = engine.matvec();
    assert!(choice.dot_supported());
    assert_eq!(choice.arithmetic(), matvec::Arithmetic::Auto);
    for format in Format::with_vulkan(VulkanFamily::Matvec) {
        let dot = format.spec().vulkan.matvec_dot;
        for batch in 1..=8u32 {
            let expected = if dot && batch <= matvec::DOT_MAX_BATCH {
                Variant::Dot
            } else {
                Variant::Subgroup
            };
            assert_eq!(
                choice.forward_variant(false, format, batch),
                expected,
                "{format:?} batch {batch}"
            );
            assert_eq!(choice.forward_variant(true, format, batch), Variant::Compat);
            choice.set_arithmetic(matvec::Arithmetic::F32);
            assert_eq!(
                choice.forward_variant(false, format, batch),
                Variant::Subgroup
            );
            choice.set_arithmetic(matvec::Arithmetic::IntegerDot);
            let forced = if dot { Variant::Dot } else { Variant::Subgroup };
            assert_eq!(choice.forward_variant(false, format, batch), forced);
            choice.set_arithmetic(matvec::Arithmetic::Auto);
        }
    }
    // The report names what products of this context run (compat when
    // NYXQ_VK_FORCE_COMPAT=1 is set for the whole suite).
    let named = if ctx.force_compat() {
        "shared-memory variant"
    } else {
        "integer-dot variant"
    };
    assert!(
        ctx.vulkan_report().iter().any(|l| l.contains(named)),
        "{:?}",
        ctx.vulkan_report()
    );
}

/// Rows longer than one tile of x (256 blocks over all vectors: 8192
/// columns for 1 vector, 2720 for 3), so the `_dot` kernel rounds and
/// consumes x in several tiles; NaN and Inf in the later tiles.
#[test]
fn rows_longer_than_one_tile_of_x() {
    let Some(ctx) = device_test("rows_longer_than_one_tile_of_x") else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    engine
        .matvec()
        .set_arithmetic(matvec::Arithmetic::IntegerDot);
    let (rows, cols) = (37usize, 32 * 259);
    for format in [Format::Q8_0, Format::Q4_0, Format::Q4_1] {
        let (wq, w) = weights(format, rows, cols, 71);
        for batch in [1u32, 2, 3, 8] {
            let call = forward_call(format, rows, cols, batch, false);
            assert_eq!(
                engine.matvec().forward_variant(false, format, batch),
                Variant::Dot
            );
            let mut x = uniform(batch as usize * cols, 73);
            let bias = uniform(rows, 79);
            check_call(engine, &call, &wq, &w, &x, Some(&bias));
            x[cols - 5] = f32::NAN;
            x[(batch as usize - 1) * cols + 8200] = f32::INFINITY;
            check_call(engine, &call, &wq, &w, &x, None);
        }
        println!("checked {format:?} {rows}x{cols}");
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// Blocks of x whose largest value is near the top of the f32 range
/// (1/max|x| would be subnormal, which GPUs flush) or below 2⁻¹¹⁹ (counted
/// as zero) stay within the bound.
#[test]
fn extreme_magnitudes_of_x() {
    let Some(ctx) = device_test("extreme_magnitudes_of_x") else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let (rows, cols, batch) = (9usize, 128usize, 2u32);
    for format in [Format::Q8_0, Format::Q4_0, Format::Q4_1] {
        let (wq, w) = weights(format, rows, cols, 83);
        let mut x = uniform(batch as usize * cols, 89);
        // Large enough for a subnormal 1/max|x|, small enough for the CPU's
        // Q4_1 path (m·Σx) not to overflow.
        x[0] = 1e38;
        x[33] = -1.5e38;
        for v in &mut x[64..96] {
            *v *= 1e-37;
        }
        x[cols + 70] = 1.2e38;
        let call = forward_call(format, rows, cols, batch, ctx.force_compat());
        check_call(engine, &call, &wq, &w, &x, None);
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// About 130 MiB of Q8_0 weights with rows of 4386 bytes (not a multiple of
/// 4): more than lavapipe's 128 MiB maxStorageBufferRange, so W is bound in
/// two chunks, the second starting mid-word. Forward and transposed.
#[test]
fn weights_over_128_mib_are_split_by_rows() {
    let Some(ctx) = device_test("weights_over_128_mib_are_split_by_rows") else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let format = Format::Q8_0;
    let cols = 32 * 129;
    let row_bytes = format.size_of(cols).unwrap();
    let rows = (130usize << 20) / row_bytes + 1;
    assert!(
        (rows * row_bytes) as u64
            > u64::from(engine.device.info.max_storage_buffer_range).min(128 << 20)
    );
    // Random blocks made directly (quantizing 128M floats would take long):
    // scales 2^-9 to 2^-8, any int8 values.
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
    quant::dequantize(format, &wq, &mut w, 2).unwrap();
    for transposed in [false, true] {
        let n = if transposed { rows } else { cols };
        let x = uniform(n, 17);
        let call = MatvecCall {
            format,
            rows: rows as u64,
            cols: cols as u64,
            batch: 1,
            transposed,
            compat: ctx.force_compat(),
        };
        check_call(engine, &call, &wq, &w, &x, None);
        println!("checked {rows}x{cols} Q8_0 transposed={transposed}");
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// More than 65535 workgroups (lavapipe's maxComputeWorkGroupCount[0]): the
/// grid is 2-D. Forward: 140 000 rows; transposed: 65 600 column blocks.
#[test]
fn grids_over_65535_workgroups_are_two_dimensional() {
    let Some(ctx) = device_test("grids_over_65535_workgroups_are_two_dimensional") else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    for (format, rows, cols, transposed) in [
        (Format::F16, 140_000usize, 32usize, false),
        (Format::Q4_0, 2, 32 * 65_600, true),
    ] {
        let (wq, w) = weights(format, rows, cols, 61);
        let n = if transposed { rows } else { cols };
        let x = uniform(n, 67);
        let call = MatvecCall {
            format,
            rows: rows as u64,
            cols: cols as u64,
            batch: 1,
            transposed,
            compat: ctx.force_compat(),
        };
        check_call(engine, &call, &wq, &w, &x, None);
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

fn range(b: &nyxq::vk::memory::Buffer, offset: u64, size: u64) -> BufferRange {
    BufferRange {
        buffer: b.buffer,
        offset,
        size,
    }
}

/// Operands at offsets inside larger buffers (as a trainer's arena has
/// them) record and compute correctly.
#[test]
fn operands_at_offsets_inside_larger_buffers() {
    let Some(ctx) = device_test("operands_at_offsets_inside_larger_buffers") else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let (rows, cols, batch) = (33usize, 64usize, 3u32);
    let format = Format::Q4_1;
    let (wq, w) = weights(format, rows, cols, 23);
    let x = uniform(batch as usize * cols, 29);
    let bias = uniform(rows, 31);
    let mut arena = nyxq::vk::memory::Buffer::new(&engine.device, 1 << 16, true).unwrap();
    let (w_at, x_at, b_at, y_at) = (256u64, 8192u64, 16384u64, 32768u64);
    let mut bytes = vec![0u8; 1 << 16];
    bytes[w_at as usize..w_at as usize + wq.len()].copy_from_slice(&wq);
    for (at, v) in [(x_at, &x), (b_at, &bias)] {
        for (i, f) in v.iter().enumerate() {
            bytes[at as usize + 4 * i..at as usize + 4 * i + 4].copy_from_slice(&f.to_le_bytes());
        }
    }
    arena.write(&bytes);
    let call = forward_call(format, rows, cols, batch, ctx.force_compat());
    let sizes = call.sizes().unwrap();
    let ops = Operands {
        w: range(&arena, w_at, sizes.w.div_ceil(4) * 4),
        x: range(&arena, x_at, sizes.x),
        bias: Some(range(&arena, b_at, sizes.bias)),
        y: range(&arena, y_at, sizes.y),
    };
    let mut ticket = 0;
    engine
        .submit_recorded(false, |cmd| {
            // SAFETY: the engine's command buffer is recording; the arena is
            // a live storage buffer holding every range.
            ticket = unsafe { matvec::record_matvec(engine, cmd, &call, &ops) }?;
            Ok(())
        })
        .unwrap();
    engine
        .recorder()
        .release(&engine.device.device, ticket)
        .unwrap();
    let mut out = vec![0u8; 1 << 16];
    arena.read(&mut out);
    let refs = reference(&call, &w, &x, Some(&bias));
    for (i, r) in refs.iter().enumerate() {
        let at = y_at as usize + 4 * i;
        let got = f32::from_le_bytes(out[at..at + 4].try_into().unwrap());
        let term = device_term(engine, &call, &w, &x, i / rows, i % rows);
        check_value(
            got,
            r,
            bound(cols, r.magnitude) + term,
            &format!("output {i}"),
        );
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// Every bad argument is refused with a clear message, and nothing is
/// recorded (no descriptor set stays allocated).
#[test]
fn bad_arguments_are_refused() {
    let Some(ctx) = device_test("bad_arguments_are_refused") else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let buf = nyxq::vk::memory::Buffer::new(&engine.device, 1 << 16, true).unwrap();
    let call = MatvecCall {
        format: Format::Q4_0,
        rows: 16,
        cols: 64,
        batch: 2,
        transposed: false,
        compat: false,
    };
    let good = Operands {
        w: range(&buf, 0, 576),
        x: range(&buf, 1024, 512),
        bias: Some(range(&buf, 2048, 64)),
        y: range(&buf, 4096, 128),
    };
    let cases: Vec<(MatvecCall, Operands, &str)> = vec![
        (MatvecCall { rows: 0, ..call }, good, "empty"),
        (MatvecCall { batch: 9, ..call }, good, "batch 9"),
        (MatvecCall { cols: 48, ..call }, good, "multiple of"),
        (
            MatvecCall {
                rows: 1 << 33,
                ..call
            },
            good,
            "32-bit",
        ),
        (
            MatvecCall {
                transposed: true,
                ..call
            },
            good,
            "no bias",
        ),
        (
            call,
            Operands {
                w: range(&buf, 2, 576),
                ..good
            },
            "alignment",
        ),
        (
            call,
            Operands {
                w: range(&buf, 0, 572),
                ..good
            },
            "needed",
        ),
        (
            call,
            Operands {
                x: range(&buf, 1024, 508),
                ..good
            },
            "needed",
        ),
        (
            call,
            Operands {
                bias: Some(range(&buf, 2048, 60)),
                ..good
            },
            "needed",
        ),
        (
            call,
            Operands {
                y: range(&buf, 4096, 124),
                ..good
            },
            "needed",
        ),
        (
            call,
            Operands {
                y: range(&buf, 512, 128),
                ..good
            },
            "overlap",
        ),
        (
            call,
            Operands {
                y: range(&buf, 1024, 128),
                ..good
            },
            "overlap",
        ),
        (
            call,
            Operands {
                y: range(&buf, 2048, 128),
                ..good
            },
            "overlap",
        ),
        (
            call,
            Operands {
                x: BufferRange {
                    buffer: ash::vk::Buffer::null(),
                    ..good.x
                },
                ..good
            },
            "VK_NULL_HANDLE",
        ),
        (
            call,
            Operands {
                w: range(&buf, u64::MAX - 15, 576),
                ..good
            },
            "overflow",
        ),
    ];
    engine
        .submit_recorded(false, |cmd| {
            for (call, ops, expect) in &cases {
                // SAFETY: recording; every case is refused before recording.
                let err = unsafe { matvec::record_matvec(engine, cmd, call, ops) }.unwrap_err();
                assert!(err.message().contains(expect), "{expect}: {err}");
            }
            // SAFETY: as above.
            let err = unsafe {
                matvec::record_matvec(engine, ash::vk::CommandBuffer::null(), &call, &good)
            }
            .unwrap_err();
            assert!(err.message().contains("command_buffer"), "{err}");
            Ok(())
        })
        .unwrap();
    assert_eq!(engine.recorder().usage().unreleased_sets, 0);
    let mut y = vec![0f32; 4];
    let host = HostOperands {
        w: &[0u8; 576],
        x: &[0f32; 128],
        bias: None,
    };
    let err = run_on_host_data(engine, &call, &host, &mut y).unwrap_err();
    assert!(err.message().contains("y holds 4"), "{err}");
    let err = run_on_host_data(
        engine,
        &call,
        &HostOperands {
            w: &[0u8; 570],
            ..host
        },
        &mut y,
    )
    .unwrap_err();
    assert!(err.message().contains("w has 570"), "{err}");
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

mod c_abi {
    //! nyxq_vk_cmd_matvec and nyxq_vk_cmd_matvec_transposed through the C
    //! ABI, on a context that borrows the test context's device (so the
    //! test can make buffers and command buffers on it): results, and every
    //! error path with its status, ticket_out untouched and nothing recorded.

    use super::*;
    use ash::vk::Handle;
    use nyxq::ffi::NyxqStatus;
    use nyxq::ffi::context::{
        NyxqBackend, NyxqContext, NyxqContextOptions, nyxq_context_create, nyxq_context_destroy,
    };
    use nyxq::ffi::guard::{nyxq_last_error_message, nyxq_last_error_needed_len};
    use nyxq::ffi::vk::{NyxqVulkanHandles, nyxq_context_create_vulkan_borrowed};
    use nyxq::ffi::vk_cmd::{
        NyxqVkBufferRange, NyxqVkRecorderUsage, nyxq_vk_recorder_usage, nyxq_vk_release,
    };
    use nyxq::ffi::vk_matvec::{nyxq_vk_cmd_matvec, nyxq_vk_cmd_matvec_transposed};
    use std::ffi::{CStr, c_void};
    use std::ptr::{null, null_mut};

    fn borrowed_context(engine: &Engine) -> *mut NyxqContext {
        let device = &engine.device;
        let handles = NyxqVulkanHandles {
            instance: device.instance.instance.handle().as_raw() as *mut c_void,
            physical_device: device.physical.as_raw() as *mut c_void,
            device: device.device.handle().as_raw() as *mut c_void,
            queue_family: device.queue_family,
            queue: device.queue.as_raw() as *mut c_void,
            get_instance_proc_addr: device.instance.entry.static_fn().get_instance_proc_addr
                as *mut c_void,
            ..Default::default()
        };
        let mut ctx = null_mut();
        let status = nyxq_context_create_vulkan_borrowed(null(), &handles, &mut ctx);
        assert_eq!(status, NyxqStatus::NyxqOk);
        ctx
    }

    fn c_range(b: &nyxq::vk::memory::Buffer, offset: u64, size: u64) -> NyxqVkBufferRange {
        NyxqVkBufferRange {
            buffer: b.buffer.as_raw() as *mut c_void,
            offset,
            size,
        }
    }

    fn unreleased(ctx: *const NyxqContext) -> u64 {
        let mut usage = NyxqVkRecorderUsage::default();
        assert_eq!(nyxq_vk_recorder_usage(ctx, &mut usage), NyxqStatus::NyxqOk);
        usage.unreleased_sets
    }

    fn last_error() -> String {
        // SAFETY: nyxq returns a NUL-terminated string valid until the next call.
        unsafe { CStr::from_ptr(nyxq_last_error_message()) }
            .to_string_lossy()
            .into_owned()
    }

    const Q4_0: i32 = Format::Q4_0 as i32;

    /// The arguments of one call, changed one at a time by the error cases.
    #[derive(Clone, Copy)]
    struct Args {
        ctx: *mut NyxqContext,
        cmd: *mut c_void,
        format: i32,
        rows: u64,
        cols: u64,
        batch: u32,
        w: *const NyxqVkBufferRange,
        x: *const NyxqVkBufferRange,
        bias: *const NyxqVkBufferRange,
        y: *const NyxqVkBufferRange,
        ticket: *mut u64,
    }

    fn forward(a: &Args) -> NyxqStatus {
        nyxq_vk_cmd_matvec(
            a.ctx, a.cmd, a.format, a.rows, a.cols, a.batch, a.w, a.x, a.bias, a.y, a.ticket,
        )
    }

    fn transposed(a: &Args) -> NyxqStatus {
        nyxq_vk_cmd_matvec_transposed(
            a.ctx, a.cmd, a.format, a.rows, a.cols, a.batch, a.w, a.x, a.y, a.ticket,
        )
    }

    #[test]
    fn c_abi_records_products_and_checks_every_argument() {
        let Some(rust_ctx) = device_test("c_abi::c_abi_records_products_and_checks_every_argument")
        else {
            return;
        };
        let engine = rust_ctx.vulkan().unwrap();
        let ctx = borrowed_context(engine);
        let (rows, cols, batch) = (20usize, 64usize, 2u32);
        let (wq, w) = weights(Format::Q4_0, rows, cols, 41);
        let x = uniform(batch as usize * cols, 43);
        let xt = uniform(batch as usize * rows, 47);
        let bias = uniform(rows, 53);
        let mut arena = nyxq::vk::memory::Buffer::new(&engine.device, 1 << 16, true).unwrap();
        let mut bytes = vec![0u8; 1 << 16];
        bytes[..wq.len()].copy_from_slice(&wq);
        for (at, v) in [(1024usize, &x), (2048, &bias), (3072, &xt)] {
            for (i, f) in v.iter().enumerate() {
                bytes[at + 4 * i..at + 4 * i + 4].copy_from_slice(&f.to_le_bytes());
            }
        }
        arena.write(&bytes);
        let wr = c_range(&arena, 0, 720);
        let xr = c_range(&arena, 1024, 512);
        let br = c_range(&arena, 2048, 80);
        let xtr = c_range(&arena, 3072, 160);
        let yr = c_range(&arena, 4096, 160);
        let ytr = c_range(&arena, 8192, 512);
        let mut ticket = 0u64;
        let mut t2 = 0u64;
        engine
            .submit_recorded(false, |cmd| {
                let a = Args {
                    ctx,
                    cmd: cmd.as_raw() as *mut c_void,
                    format: Q4_0,
                    rows: rows as u64,
                    cols: cols as u64,
                    batch,
                    w: &wr,
                    x: &xr,
                    bias: &br,
                    y: &yr,
                    ticket: &mut ticket,
                };
                assert_eq!(forward(&a), NyxqStatus::NyxqOk, "{}", last_error());
                let t = Args {
                    x: &xtr,
                    bias: null(),
                    y: &ytr,
                    ticket: &mut t2,
                    ..a
                };
                assert_eq!(transposed(&t), NyxqStatus::NyxqOk, "{}", last_error());
                Ok(())
            })
            .unwrap();
        assert!(t2 > ticket && ticket > 0);
        assert_eq!(unreleased(ctx), 2);
        assert_eq!(nyxq_vk_release(ctx, t2), NyxqStatus::NyxqOk);
        assert_eq!(unreleased(ctx), 0);
        let mut out = vec![0u8; 1 << 16];
        arena.read(&mut out);
        let read = |at: usize| f32::from_le_bytes(out[at..at + 4].try_into().unwrap());
        for (transposed, at, xs, b) in [(false, 4096, &x, Some(&bias[..])), (true, 8192, &xt, None)]
        {
            let call = MatvecCall {
                format: Format::Q4_0,
                rows: rows as u64,
                cols: cols as u64,
                batch,
                transposed,
                compat: false,
            };
            let n = if transposed { rows } else { cols };
            for (i, r) in reference(&call, &w, xs, b).iter().enumerate() {
                check_value(
                    read(at + 4 * i),
                    r,
                    bound(n, r.magnitude),
                    &format!("C ABI {call:?} {i}"),
                );
            }
        }

        // Every error path: status, message, ticket untouched, nothing recorded.
        let mut cpu_ctx = null_mut();
        let options = NyxqContextOptions {
            backend: NyxqBackend::NyxqBackendCpu as i32,
            ..Default::default()
        };
        assert_eq!(
            nyxq_context_create(&options, &mut cpu_ctx),
            NyxqStatus::NyxqOk
        );
        let mut dead = null_mut();
        assert_eq!(nyxq_context_create(&options, &mut dead), NyxqStatus::NyxqOk);
        assert_eq!(nyxq_context_destroy(dead), NyxqStatus::NyxqOk);
        let null_buffer = NyxqVkBufferRange {
            buffer: null_mut(),
            ..wr
        };
        let misaligned = c_range(&arena, 2, 720);
        let short_w = c_range(&arena, 0, 716);
        let short_y = c_range(&arena, 4096, 156);
        let overlapping_y = c_range(&arena, 512, 512);
        use NyxqStatus::*;
        engine
            .submit_recorded(false, |cmd| {
                let mut untouched = 0xdead_u64;
                let good = Args {
                    ctx,
                    cmd: cmd.as_raw() as *mut c_void,
                    format: Q4_0,
                    rows: rows as u64,
                    cols: cols as u64,
                    batch,
                    w: &wr,
                    x: &xr,
                    bias: &br,
                    y: &yr,
                    ticket: &mut untouched,
                };
                let cases: Vec<(Args, NyxqStatus, &str)> = vec![
                    (
                        Args {
                            ctx: null_mut(),
                            ..good
                        },
                        NyxqErrorNullPointer,
                        "context handle is NULL",
                    ),
                    (
                        Args { ctx: dead, ..good },
                        NyxqErrorInvalidHandle,
                        "context",
                    ),
                    (
                        Args {
                            ctx: cpu_ctx,
                            ..good
                        },
                        NyxqErrorUnsupported,
                        "CPU",
                    ),
                    (
                        Args {
                            cmd: null_mut(),
                            ..good
                        },
                        NyxqErrorNullPointer,
                        "command_buffer",
                    ),
                    (
                        Args { format: 99, ..good },
                        NyxqErrorInvalidArgument,
                        "format",
                    ),
                    (
                        Args { w: null(), ..good },
                        NyxqErrorNullPointer,
                        "w is NULL",
                    ),
                    (
                        Args { x: null(), ..good },
                        NyxqErrorNullPointer,
                        "x is NULL",
                    ),
                    (
                        Args { y: null(), ..good },
                        NyxqErrorNullPointer,
                        "y is NULL",
                    ),
                    (
                        Args {
                            ticket: null_mut(),
                            ..good
                        },
                        NyxqErrorNullPointer,
                        "ticket_out",
                    ),
                    (Args { rows: 0, ..good }, NyxqErrorInvalidArgument, "empty"),
                    (
                        Args { cols: 48, ..good },
                        NyxqErrorInvalidArgument,
                        "multiple of",
                    ),
                    (
                        Args { batch: 0, ..good },
                        NyxqErrorInvalidArgument,
                        "batch 0",
                    ),
                    (
                        Args { batch: 9, ..good },
                        NyxqErrorInvalidArgument,
                        "batch 9",
                    ),
                    (
                        Args {
                            rows: u64::MAX,
                            ..good
                        },
                        NyxqErrorInvalidArgument,
                        "32-bit",
                    ),
                    (
                        Args {
                            w: &null_buffer,
                            ..good
                        },
                        NyxqErrorNullPointer,
                        "VK_NULL_HANDLE",
                    ),
                    (
                        Args {
                            w: &misaligned,
                            ..good
                        },
                        NyxqErrorInvalidArgument,
                        "alignment",
                    ),
                    (
                        Args {
                            w: &short_w,
                            ..good
                        },
                        NyxqErrorBufferTooSmall,
                        "needed",
                    ),
                    (
                        Args {
                            y: &short_y,
                            ..good
                        },
                        NyxqErrorBufferTooSmall,
                        "needed",
                    ),
                    (
                        Args {
                            y: &overlapping_y,
                            ..good
                        },
                        NyxqErrorInvalidArgument,
                        "overlap",
                    ),
                ];
                for (args, status, text) in &cases {
                    for (name, call) in [
                        ("forward", forward as fn(&Args) -> NyxqStatus),
                        ("transposed", transposed),
                    ] {
                        if name == "transposed" && std::ptr::eq(args.y, &short_y) {
                            continue; // the transposed y is batch·cols floats: another size
                        }
                        // The transposed product's x and y have other sizes.
                        let swap = |p, from: &NyxqVkBufferRange, to| {
                            if std::ptr::eq(p, from) { to } else { p }
                        };
                        let args = if name == "transposed" {
                            Args {
                                x: swap(args.x, &xr, &xtr),
                                y: swap(args.y, &yr, &ytr),
                                ..*args
                            }
                        } else {
                            *args
                        };
                        assert_eq!(call(&args), *status, "{name} {text}: {}", last_error());
                        assert!(
                            last_error().contains(text),
                            "{name} {text}: {}",
                            last_error()
                        );
                    }
                }
                let a = Args {
                    w: &short_w,
                    ..good
                };
                assert_eq!(forward(&a), NyxqErrorBufferTooSmall);
                assert_eq!(nyxq_last_error_needed_len(), 720);
                assert_eq!(untouched, 0xdead);
                Ok(())
            })
            .unwrap();
        assert_eq!(unreleased(ctx), 0);
        assert_eq!(nyxq_context_destroy(cpu_ctx), NyxqStatus::NyxqOk);
        assert_eq!(nyxq_context_destroy(ctx), NyxqStatus::NyxqOk);
        assert_eq!(rust_ctx.vulkan_validation_errors(), 0);
    }
}
