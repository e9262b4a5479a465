//! Matrix-vector products larger than one binding or one grid dimension
//! allows: W over the device's maxStorageBufferRange (split by rows) and
//! more workgroups than the grid's first axis takes (a 2-D grid), with the
//! default and the compatible kernels, checked against the FP64 reference
//! and the CPU; the split product with x rounded once (`_dot_pre`) gives
//! the bits of `_dot` at an odd batch. The device is the test device with
//! the small limits of tests/fixtures/small-limits.json (4 MiB bindings,
//! 1024 workgroups an axis), so megabytes exercise what would take
//! hundreds of them at lavapipe's real limits; the code splits at whatever
//! the device reports.

use crate::matvec_support::{check_call, uniform, weights};
use crate::vk_support::env::{
    Env, SMALL_BINDING_RANGE, SMALL_GRID_WIDTH, SMALL_LIMITS, SMALL_LIMITS_FORCE_COMPAT,
};
use crate::vk_support::run_under;
use nyxq::format::Format;
use nyxq::quant;
use nyxq::vk::matvec::{self, Arithmetic, HostOperands, MatvecCall};
use nyxq::vk::shaders::MatvecVariant;

/// Q8_0 weights of 2 MiB more than the binding range, with rows of 4386
/// bytes (not a multiple of 4), so W is bound in two chunks, the second
/// starting mid-word. Forward and transposed; forward at 3 vectors runs
/// `_dot_pre` (one rounding of x for both chunks), whose outputs are
/// `_dot`'s bits.
#[test]
fn weights_past_the_binding_range_are_split_by_rows() {
    let Some(ctx) = run_under(&[&SMALL_LIMITS, &SMALL_LIMITS_FORCE_COMPAT]).and_then(Env::context)
    else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let limit = u64::from(engine.device.info.max_storage_buffer_range);
    assert_eq!(limit, SMALL_BINDING_RANGE, "the small limits apply");
    let format = Format::Q8_0;
    let cols = 32 * 129;
    let row_bytes = format.size_of(cols).unwrap();
    let rows = (limit as usize + (2 << 20)) / row_bytes + 1;
    assert!((rows * row_bytes) as u64 > limit);
    // Random blocks made directly (quicker than quantizing floats):
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
    if !ctx.force_compat() {
        let choice = engine.matvec();
        assert_eq!(
            choice.forward_variant(false, format, 3),
            MatvecVariant::DotPre
        );
        let call = MatvecCall {
            format,
            rows: rows as u64,
            cols: cols as u64,
            batch: 3,
            transposed: false,
            compat: false,
        };
        let x = uniform(3 * cols, 19);
        let host = HostOperands {
            w: &wq,
            x: &x,
            bias: None,
        };
        let mut pre = vec![0f32; 3 * rows];
        let mut dot = vec![0f32; 3 * rows];
        matvec::run_on_host_data(engine, &call, &host, &mut pre).unwrap();
        choice.set_arithmetic(Arithmetic::IntegerDot);
        matvec::run_on_host_data(engine, &call, &host, &mut dot).unwrap();
        choice.set_arithmetic(Arithmetic::Auto);
        let differ = pre
            .iter()
            .zip(&dot)
            .position(|(p, d)| p.to_bits() != d.to_bits());
        assert_eq!(differ, None, "_dot_pre and _dot differ");
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// More workgroups than the grid's first axis takes (1024 under the small
/// limits): the grid is 2-D. Forward: 16 385 rows (over 2048 workgroups at
/// the most rows a workgroup takes, 8); transposed: 2100 workgroups of 32
/// columns.
#[test]
fn grids_past_the_first_axis_are_two_dimensional() {
    let Some(ctx) = run_under(&[&SMALL_LIMITS, &SMALL_LIMITS_FORCE_COMPAT]).and_then(Env::context)
    else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    for (format, rows, cols, transposed) in [
        (Format::F16, 16_385usize, 32usize, false),
        (Format::Q4_0, 2, 32 * 2100, true),
    ] {
        assert_eq!(
            u64::from(engine.device.info.max_workgroup_count[0]),
            SMALL_GRID_WIDTH
        );
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
