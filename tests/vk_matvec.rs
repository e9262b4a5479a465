//! The Vulkan matrix-vector products (nyxq::vk::matvec) against their
//! references on lavapipe with the validation layer on: every format, batch
//! 1 and 8, forward (with and without bias) and transposed, odd shapes,
//! rows longer than one tile of x, NaN/Inf and extreme magnitudes in x.
//! Results are checked against an FP64 product of the dequantized weights
//! within the bound of src/matvec/mod.rs, (n + 3)·2⁻²⁴·Σ|w·x|, and against
//! the CPU kernel (nyxq::matvec). Where the integer-dot variant runs (the
//! block formats; lavapipe has shaderIntegerDotProduct) the bound adds x's
//! rounding, Σ_blocks (s/2)·Σ|w|. The shapes run under every matvec row of
//! the environment table: `_dot` at every batch, the default choice
//! (`_dot` for one vector, `_dot_pre`, x rounded once per product, for 8), the f32
//! subgroup variant, the compatible variant forced, 8 and 32 rows per
//! workgroup and 1 and 2 row slots; each row's choice is checked to be the
//! one the engine made.

use crate::matvec_support::{assert_row_chosen, check_call, forward_call, uniform, weights};
use crate::vk_support::env::{
    DEFAULT, EMULATE_IRIS_XE_ANV, EMULATE_RX580_RADV, Env, FORCE_COMPAT, FORCE_COMPAT_EIGHT_ROWS,
    MATVEC_DOT, MATVEC_EIGHT_ROWS, MATVEC_F32, MATVEC_ONE_ROW_SLOT, MATVEC_THIRTY_TWO_ROWS,
    MATVEC_TWO_ROW_SLOTS,
};
use crate::vk_support::run_under;
use nyxq::format::{Format, VulkanFamily};
use nyxq::vk::matvec::{self, MatvecCall};
use nyxq::vk::shaders::MatvecVariant as Variant;

/// Whether `row` changes only the block formats' forward kernel (their
/// arithmetic, or the `_dot` kernel's rows and row slots): F32, F16 and
/// BF16 then run as under DEFAULT or MATVEC_EIGHT_ROWS (the f32 kernels'
/// rows stop at 8).
fn changes_only_block_formats(row: &Env) -> bool {
    [
        &MATVEC_DOT,
        &MATVEC_F32,
        &MATVEC_ONE_ROW_SLOT,
        &MATVEC_TWO_ROW_SLOTS,
        &MATVEC_THIRTY_TWO_ROWS,
    ]
    .iter()
    .any(|r| r.name == row.name)
}

/// Every format × shape × batch × direction × bias, under every row that
/// changes the matvec kernel or its specialisation. The transposed product
/// has one kernel whatever the row's arithmetic, rows, slots or device
/// report (src/vk/matvec.rs), so it runs under DEFAULT and FORCE_COMPAT
/// only; rows that change only the block formats run only those.
#[test]
fn every_format_and_shape_matches_the_references() {
    let Some(row) = run_under(&[
        &MATVEC_DOT,
        &DEFAULT,
        &MATVEC_ONE_ROW_SLOT,
        &MATVEC_TWO_ROW_SLOTS,
        &MATVEC_F32,
        &FORCE_COMPAT,
        &MATVEC_EIGHT_ROWS,
        &MATVEC_THIRTY_TWO_ROWS,
        &FORCE_COMPAT_EIGHT_ROWS,
        &EMULATE_RX580_RADV,
        &EMULATE_IRIS_XE_ANV,
    ]) else {
        return;
    };
    let Some(ctx) = row.context() else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let choice = engine.matvec();
    assert_row_chosen(row, ctx.force_compat(), choice);
    let q4 = choice.forward_variant(ctx.force_compat(), Format::Q4_0, 1);
    let rows = choice.rows_per_group(q4, 1, Format::Q4_0, 2561);
    println!(
        "subgroup variant supported: {}; dot variant supported: {}; forward variant used: {:?} (F16), {q4:?} (Q4_0); rows per group {}/{}, row slots {}",
        choice.subgroup_supported(),
        choice.dot_supported(),
        choice.forward_variant(ctx.force_compat(), Format::F16, 1),
        rows,
        choice.rows_per_group(q4, 8, Format::Q4_0, 2561),
        choice.dot_slots(rows, 1),
    );
    let transposed_too = [&DEFAULT, &FORCE_COMPAT].iter().any(|r| r.name == row.name);
    let formats = Format::with_vulkan(VulkanFamily::Matvec)
        .filter(|f| f.is_block() || !changes_only_block_formats(row));
    // Tall matrices: 2561 rows, where the engine chooses 8 rows per `_dot`
    // workgroup itself (it takes fewer below 2560) and the last workgroup
    // is partial; under a row that sets the rows per workgroup, 257
    // (8·32 + 1), which leaves a partial last group at every setting, in a
    // tenth of lavapipe's time.
    let tall = if row.matvec_rows().is_some() {
        257
    } else {
        2561
    };
    for format in formats {
        // Rows of 1, 3 and 129 blocks of 32 values (longer than one tile of
        // x); a K-quant's rounded up to whole super-blocks of 256 (1, 1 and
        // 17 of them).
        let unit = format.block_size().max(32);
        let cols = |blocks: usize| (32 * blocks).div_ceil(unit) * unit;
        let mut shapes = vec![
            (1, cols(1)),
            (7, cols(3)),
            (tall, cols(1)),
            (7, cols(129)),
            (1, cols(129)),
            (tall, cols(3)),
        ];
        shapes.dedup();
        if !format.is_block() {
            shapes.extend([(7, 1), (5, 33), (3, 4097)]);
        }
        for (rows, cols) in shapes {
            let (wq, w) = weights(format, rows, cols, (rows * 31 + cols) as u64);
            for batch in [1u32, 8] {
                for transposed in [false, true] {
                    if transposed && !transposed_too {
                        continue;
                    }
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

/// NaN and ±Inf in x propagate as IEEE arithmetic says, in each matvec
/// variant.
#[test]
fn non_finite_x_propagates() {
    let Some(ctx) = run_under(&[&MATVEC_DOT, &MATVEC_F32, &FORCE_COMPAT]).and_then(Env::context)
    else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let (rows, batch) = (9usize, 8u32);
    for format in Format::with_vulkan(VulkanFamily::Matvec) {
        let cols = 3 * format.block_size().max(32);
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

/// Rows longer than one tile of x (256 blocks over all vectors: 8192
/// columns for 1 vector, 2720 for 3), so the `_dot` kernel rounds and
/// consumes x in several tiles; NaN and Inf in the later tiles.
#[test]
fn rows_longer_than_one_tile_of_x() {
    let Some(ctx) = run_under(&[&DEFAULT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    engine
        .matvec()
        .set_arithmetic(matvec::Arithmetic::IntegerDot);
    let (rows, cols) = (37usize, 32 * 259);
    for format in Format::with_vulkan(VulkanFamily::MatvecDot) {
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
    let Some(ctx) = run_under(&[&DEFAULT, &FORCE_COMPAT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let (rows, cols, batch) = (9usize, 128usize, 2u32);
    for format in Format::with_vulkan(VulkanFamily::MatvecDot) {
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
