//! The Vulkan matrix-vector products (nyxq::vk::matvec) on lavapipe with the
//! validation layer on: every format, batch 1 and 8, forward (with and
//! without bias) and transposed, odd shapes, NaN/Inf in x, W over 128 MiB
//! (more than lavapipe's maxStorageBufferRange, so split by rows), and bad
//! arguments. Results are checked against an FP64 product of the dequantized
//! weights within the bound of src/matvec/mod.rs, (n + 3)·2⁻²⁴·Σ|w·x|, and
//! against the CPU kernel (nyxq::matvec). Each test runs once more with the
//! compatible variant forced (NYXQ_VK_FORCE_COMPAT=1).

mod vk_support;

use nyxq::format::{ALL_FORMATS, Format};
use nyxq::quant::{self, QuantizeOptions};
use nyxq::vk::Engine;
use nyxq::vk::matvec::{self, HostOperands, MatvecCall, Operands, run_on_host_data};
use nyxq::vk::record::BufferRange;
use vk_support::{device_context, device_env, run_in_child};

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
    if call.transposed || !call.format.is_block() || x.iter().any(|v| !v.is_finite()) {
        return 0.0;
    }
    let cols = call.cols as usize;
    let xs = &x[b * cols..(b + 1) * cols];
    let ws = &w[o * cols..(o + 1) * cols];
    xs.chunks(32)
        .zip(ws.chunks(32))
        .map(|(xb, wb)| {
            let amax = xb.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
            let wsum: f64 = wb.iter().map(|v| f64::from(v.abs())).sum();
            amax / 127.0 / 2.0 * wsum * 1.01
        })
        .sum()
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
    let mut cpu = vec![0f32; batch * outputs];
    if call.transposed {
        nyxq::matvec::matvec_transposed(call.format, wq, rows, cols, x, batch, &mut cpu, 2)
            .unwrap();
    } else {
        nyxq::matvec::matvec(call.format, wq, rows, cols, x, batch, bias, &mut cpu, 2).unwrap();
    }
    let refs = reference(call, w, x, bias);
    for (i, r) in refs.iter().enumerate() {
        let what = format!("{call:?} output {i}");
        let tol = bound(n, r.magnitude);
        check_value(gpu[i], r, tol, &format!("GPU {what}"));
        let cpu_term = integer_path_term(call, w, x, i / outputs, i % outputs);
        let cpu_ref = Reference {
            value: f64::from(cpu[i]),
            magnitude: r.magnitude,
        };
        if r.value.is_finite() {
            check_value(
                gpu[i],
                &cpu_ref,
                2.0 * tol + cpu_term,
                &format!("GPU vs CPU {what}"),
            );
        } else {
            // src/matvec/mod.rs promises NaN or ±Inf here (its Q4_1 path
            // factors out the block minimum, which can turn an infinity into NaN).
            assert!(!cpu[i].is_finite(), "CPU {what}: {}", cpu[i]);
        }
    }
}

/// Every format × shape × batch × direction × bias.
fn every_format_and_shape(force_compat: bool) {
    let Some(ctx) = device_context(force_compat) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let pipelines = engine.matvec_pipelines().unwrap();
    println!(
        "subgroup variant supported: {}, forced compat: {force_compat}",
        pipelines.subgroup_supported()
    );
    for format in ALL_FORMATS {
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
                        compat: force_compat,
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

#[test]
fn every_format_and_shape_matches_the_references() {
    if run_in_child(
        "every_format_and_shape_matches_the_references",
        &device_env(),
    ) {
        return;
    }
    every_format_and_shape(false);
}

#[test]
fn compat_every_format_and_shape_matches_the_references() {
    let mut env = device_env();
    env.push(("NYXQ_VK_FORCE_COMPAT", "1".to_string()));
    if run_in_child("compat_every_format_and_shape_matches_the_references", &env) {
        return;
    }
    every_format_and_shape(true);
}

/// NaN and ±Inf in x propagate as IEEE arithmetic says.
fn non_finite_x(force_compat: bool) {
    let Some(ctx) = device_context(force_compat) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let (rows, cols, batch) = (9usize, 96usize, 8u32);
    for format in ALL_FORMATS {
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
                compat: force_compat,
            };
            check_call(engine, &call, &wq, &w, &x, None);
        }
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

#[test]
fn non_finite_x_propagates() {
    if run_in_child("non_finite_x_propagates", &device_env()) {
        return;
    }
    non_finite_x(false);
}

#[test]
fn compat_non_finite_x_propagates() {
    let mut env = device_env();
    env.push(("NYXQ_VK_FORCE_COMPAT", "1".to_string()));
    if run_in_child("compat_non_finite_x_propagates", &env) {
        return;
    }
    non_finite_x(true);
}

/// About 130 MiB of Q8_0 weights with rows of 4386 bytes (not a multiple of
/// 4): more than lavapipe's 128 MiB maxStorageBufferRange, so W is bound in
/// two chunks, the second starting mid-word. Forward and transposed.
#[test]
fn weights_over_128_mib_are_split_by_rows() {
    if run_in_child("weights_over_128_mib_are_split_by_rows", &device_env()) {
        return;
    }
    let Some(ctx) = device_context(false) else {
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
            compat: false,
        };
        check_call(engine, &call, &wq, &w, &x, None);
        println!("checked {rows}x{cols} Q8_0 transposed={transposed}");
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

fn range(b: &nyxq::vk::exec::Buffer, offset: u64, size: u64) -> BufferRange {
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
    if run_in_child("operands_at_offsets_inside_larger_buffers", &device_env()) {
        return;
    }
    let Some(ctx) = device_context(false) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let (rows, cols, batch) = (33usize, 64usize, 3u32);
    let format = Format::Q4_1;
    let (wq, w) = weights(format, rows, cols, 23);
    let x = uniform(batch as usize * cols, 29);
    let bias = uniform(rows, 31);
    let mut arena = nyxq::vk::exec::Buffer::new(&engine.device, 1 << 16, true).unwrap();
    let (w_at, x_at, b_at, y_at) = (256u64, 8192u64, 16384u64, 32768u64);
    let mut bytes = vec![0u8; 1 << 16];
    bytes[w_at as usize..w_at as usize + wq.len()].copy_from_slice(&wq);
    for (at, v) in [(x_at, &x), (b_at, &bias)] {
        for (i, f) in v.iter().enumerate() {
            bytes[at as usize + 4 * i..at as usize + 4 * i + 4].copy_from_slice(&f.to_le_bytes());
        }
    }
    arena.write(&bytes);
    let call = MatvecCall {
        format,
        rows: rows as u64,
        cols: cols as u64,
        batch,
        transposed: false,
        compat: ctx.force_compat(),
    };
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
        check_value(got, r, bound(cols, r.magnitude), &format!("output {i}"));
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// Every bad argument is refused with a clear message, and nothing is
/// recorded (no descriptor set stays allocated).
#[test]
fn bad_arguments_are_refused() {
    if run_in_child("bad_arguments_are_refused", &device_env()) {
        return;
    }
    let Some(ctx) = device_context(false) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let buf = nyxq::vk::exec::Buffer::new(&engine.device, 1 << 16, true).unwrap();
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
