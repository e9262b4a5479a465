//! Recording a matrix-vector product (nyxq::vk::matvec::record_matvec) into
//! a command buffer: operands at offsets inside one larger buffer, the
//! ticket that keeps the recording's sets until released, and every bad
//! argument refused with its reason and nothing recorded.

use crate::matvec_support::{
    bound, check_value, device_term, forward_call, range, reference, uniform, weights,
};
use crate::vk_support::env::{DEFAULT, Env, FORCE_COMPAT};
use crate::vk_support::run_under;
use nyxq::format::Format;
use nyxq::vk::matvec::{self, HostOperands, MatvecCall, Operands, run_on_host_data};
use nyxq::vk::ranges::BufferRange;

/// Operands at offsets inside larger buffers (as a trainer's arena has
/// them) record and compute correctly.
#[test]
fn operands_at_offsets_inside_larger_buffers() {
    let Some(ctx) = run_under(&[&DEFAULT, &FORCE_COMPAT]).and_then(Env::context) else {
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
    let Some(ctx) = run_under(&[&DEFAULT]).and_then(Env::context) else {
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
