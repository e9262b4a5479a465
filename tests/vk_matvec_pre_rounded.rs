//! The `_dot_pre` matrix-vector products (x rounded to int8 once per
//! product by a dispatch before it, into a scratch buffer the ticket holds)
//! on lavapipe with the validation layer on: the same bits as `_dot` (which
//! rounds x in every workgroup) at every batch, odd ones included, on rows
//! of one and of several tiles of x, with NaN and ±Inf; the scratch held
//! until the ticket is released, then reused by later tickets; an
//! allocation refused by the budget with nothing recorded; and the
//! self-test's fallback when the rounding is wrong.

use crate::matvec_support::{
    bound, check_call, check_value, device_term, forward_call, range, reference, uniform, weights,
};
use crate::vk_support::env::{DEFAULT, Env};
use crate::vk_support::run_under;
use nyxq::ErrorKind;
use nyxq::format::{Format, VulkanFamily};
use nyxq::vk::Engine;
use nyxq::vk::matvec::{self, Arithmetic, HostOperands, MatvecCall, Operands};
use nyxq::vk::memory::Buffer;
use nyxq::vk::recorder::{SPARE_SCRATCH, Ticket};
use nyxq::vk::shaders::MatvecVariant as Variant;

/// y of `call` on the device under `arithmetic`.
fn run_with(
    engine: &Engine,
    arithmetic: Arithmetic,
    call: &MatvecCall,
    host: &HostOperands,
) -> Vec<f32> {
    engine.matvec().set_arithmetic(arithmetic);
    let mut y = vec![0f32; call.batch as usize * call.rows as usize];
    matvec::run_on_host_data(engine, call, host, &mut y).unwrap();
    engine.matvec().set_arithmetic(Arithmetic::Auto);
    y
}

/// Every format with integer-dot kernels, batches 1 to 8, rows of one tile
/// of x and of several (259 blocks: two tiles at batch 1, 10 at batch 8,
/// the last one partial at the odd batches), with and without bias, NaN
/// and ±Inf in later tiles: `_dot_pre` gives `_dot`'s bits, and meets the
/// references' bound.
#[test]
fn pre_rounded_products_give_the_bits_of_dot() {
    let Some(ctx) = run_under(&[&DEFAULT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    assert!(engine.matvec().pre_rounded_supported());
    for format in Format::with_vulkan(VulkanFamily::MatvecDot) {
        for (rows, cols) in [(1usize, 32usize), (7, 96), (37, 32 * 259), (4097, 64)] {
            let (wq, w) = weights(format, rows, cols, (rows + cols) as u64);
            let bias = uniform(rows, 5);
            for batch in 1..=8u32 {
                let call = forward_call(format, rows, cols, batch, false);
                // `auto` runs `_dot` for one vector; run_with asks for each.
                let auto = if batch < matvec::PRE_ROUNDED_MIN_BATCH {
                    Variant::Dot
                } else {
                    Variant::DotPre
                };
                assert_eq!(engine.matvec().forward_variant(false, format, batch), auto);
                let mut x = uniform(batch as usize * cols, u64::from(batch) + 3);
                if cols > 8192 {
                    x[cols - 5] = f32::NAN;
                    x[(batch as usize - 1) * cols + 8200] = f32::INFINITY;
                    x[(batch as usize - 1) * cols + 100] = f32::NEG_INFINITY;
                }
                let host = HostOperands {
                    w: &wq,
                    x: &x,
                    bias: Some(&bias),
                };
                let pre = run_with(engine, Arithmetic::PreRounded, &call, &host);
                let dot = run_with(engine, Arithmetic::IntegerDot, &call, &host);
                for (i, (p, d)) in pre.iter().zip(&dot).enumerate() {
                    assert_eq!(
                        p.to_bits(),
                        d.to_bits(),
                        "{format:?} {rows}x{cols} batch {batch} output {i}: {p} vs {d}"
                    );
                }
                if cols <= 96 {
                    check_call(engine, &call, &wq, &w, &x, Some(&bias));
                }
            }
            println!("checked {format:?} {rows}x{cols}");
        }
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// The operands of one product in a host-visible arena, and y read back.
struct Arena {
    buffer: Buffer,
    ops: Operands,
}

impl Arena {
    fn new(engine: &Engine, call: &MatvecCall, wq: &[u8], x: &[f32]) -> Arena {
        let sizes = call.sizes().unwrap();
        let (w_at, x_at, y_at) = (0u64, 1u64 << 16, 1u64 << 17);
        let mut buffer = Buffer::new(&engine.device, 1 << 18, true).unwrap();
        let mut bytes = vec![0u8; 1 << 18];
        bytes[..wq.len()].copy_from_slice(wq);
        for (i, f) in x.iter().enumerate() {
            let at = x_at as usize + 4 * i;
            bytes[at..at + 4].copy_from_slice(&f.to_le_bytes());
        }
        buffer.write(&bytes);
        let ops = Operands {
            w: range(&buffer, w_at, sizes.w.div_ceil(4) * 4),
            x: range(&buffer, x_at, sizes.x),
            bias: None,
            y: range(&buffer, y_at, sizes.y),
        };
        Arena { buffer, ops }
    }

    fn y(&self, n: usize) -> Vec<f32> {
        let mut out = vec![0u8; 1 << 18];
        self.buffer.read(&mut out);
        let at = self.ops.y.offset as usize;
        out[at..at + 4 * n]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }
}

/// Records `call` on `arena` (submitted and waited for), returning the
/// ticket, unreleased.
fn record(engine: &Engine, call: &MatvecCall, arena: &Arena) -> nyxq::Result<Ticket> {
    let mut ticket = None;
    engine.submit_recorded(false, |cmd| {
        // SAFETY: the engine's command buffer is recording; the arena is a
        // live storage buffer holding every range.
        ticket = Some(unsafe { matvec::record_matvec(engine, cmd, call, &arena.ops) }?);
        Ok(())
    })?;
    Ok(ticket.expect("recorded"))
}

/// Checks y in `arena` against the FP64 reference within `_dot_pre`'s bound.
fn check_y(engine: &Engine, call: &MatvecCall, arena: &Arena, w: &[f32], x: &[f32]) {
    let rows = call.rows as usize;
    let y = arena.y(call.batch as usize * rows);
    for (i, r) in reference(call, w, x, None).iter().enumerate() {
        let term = device_term(engine, call, w, x, i / rows, i % rows);
        let tol = bound(call.cols as usize, r.magnitude) + term;
        check_value(y[i], r, tol, &format!("{call:?} output {i}"));
    }
}

/// Each unreleased ticket holds its own scratch; releasing a ticket (and
/// every earlier one) makes theirs spares, which later tickets reuse when
/// large enough, giving correct results; a ticket released again changes
/// nothing; at most SPARE_SCRATCH spares stay.
#[test]
fn scratch_is_held_until_release_and_reused_across_tickets() {
    let Some(ctx) = run_under(&[&DEFAULT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let recorder = engine.recorder();
    // The self-test's products, where this process ran it, left spares:
    // start without them.
    recorder.drop_spare_scratch();
    let start = recorder.usage();
    assert_eq!((start.held_scratch, start.spare_scratch), (0, 0));
    let format = Format::Q4_0;
    let (rows, cols) = (19usize, 32 * 7);
    let (wq, w) = weights(format, rows, cols, 41);
    let arena_of = |batch: u32| {
        let call = forward_call(format, rows, cols, batch, false);
        let x = uniform(batch as usize * cols, u64::from(batch) + 43);
        (call, Arena::new(engine, &call, &wq, &x), x)
    };
    // Asserts the held and spare scratch buffers; returns their bytes.
    let scratch = |held: usize, spare: usize| {
        let usage = recorder.usage();
        assert_eq!((usage.held_scratch, usage.spare_scratch), (held, spare));
        usage.scratch_bytes
    };
    let (b8, b3) = (
        matvec::rounded_x_bytes(cols as u64, 8),
        matvec::rounded_x_bytes(cols as u64, 3),
    );
    let (big_call, big, big_x) = arena_of(8);
    let (odd_call, odd, odd_x) = arena_of(3);
    let t1 = record(engine, &big_call, &big).unwrap();
    let t2 = record(engine, &odd_call, &odd).unwrap();
    assert_eq!(scratch(2, 0), b8 + b3);
    check_y(engine, &big_call, &big, &w, &big_x);
    check_y(engine, &odd_call, &odd, &w, &odd_x);

    // Releasing t1 frees its scratch alone; t2 keeps its own.
    recorder.release(&engine.device.device, t1).unwrap();
    scratch(1, 1);
    // A released ticket released again changes nothing.
    recorder.release(&engine.device.device, t1).unwrap();
    scratch(1, 1);

    // A smaller product (2 vectors: `auto` runs `_dot`, no scratch, for
    // one) reuses the spare of batch 8: no new buffer.
    let (one_call, one, one_x) = arena_of(matvec::PRE_ROUNDED_MIN_BATCH);
    let t3 = record(engine, &one_call, &one).unwrap();
    assert_eq!(scratch(2, 0), b8 + b3);
    check_y(engine, &one_call, &one, &w, &one_x);

    // The batch-8 product again, after its scratch went to t3: a new
    // buffer, and still the right results.
    let t4 = record(engine, &big_call, &big).unwrap();
    assert_eq!(scratch(3, 0), 2 * b8 + b3);
    check_y(engine, &big_call, &big, &w, &big_x);
    for t in [t2, t3, t4] {
        recorder.release(&engine.device.device, t).unwrap();
    }
    scratch(0, 3);

    // More concurrent tickets than spares: released, SPARE_SCRATCH stay,
    // the largest.
    let mut tickets = Vec::new();
    for _ in 0..SPARE_SCRATCH + 2 {
        tickets.push(record(engine, &big_call, &big).unwrap());
    }
    // The two spares of batch 8 reused, the rest new; batch 3's left.
    scratch(SPARE_SCRATCH + 2, 1);
    recorder
        .release(&engine.device.device, *tickets.last().unwrap())
        .unwrap();
    assert_eq!(scratch(0, SPARE_SCRATCH), SPARE_SCRATCH as u64 * b8);
    check_y(engine, &big_call, &big, &w, &big_x);
    assert_eq!(recorder.usage().unreleased_sets, 0);
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// A scratch the budget refuses fails the recording with
/// OutOfDeviceMemory, nothing recorded or held; under the same budget a
/// spare left by an earlier ticket is reused, so recording succeeds.
#[test]
fn a_refused_scratch_records_nothing_and_a_spare_is_reused() {
    let Some(ctx) = run_under(&[&DEFAULT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let recorder = engine.recorder();
    let (rows, cols, batch) = (9usize, 32 * 5, 5u32);
    let format = Format::Q8_0;
    let (wq, w) = weights(format, rows, cols, 47);
    let call = forward_call(format, rows, cols, batch, false);
    let x = uniform(batch as usize * cols, 53);
    let arena = Arena::new(engine, &call, &wq, &x);
    recorder.drop_spare_scratch();
    ctx.inject_device_budget(Some(1)).unwrap();
    let err = record(engine, &call, &arena).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfDeviceMemory, "{err}");
    let usage = recorder.usage();
    assert_eq!(
        (
            usage.unreleased_sets,
            usage.held_scratch,
            usage.spare_scratch
        ),
        (0, 0, 0)
    );
    ctx.inject_device_budget(None).unwrap();
    let ticket = record(engine, &call, &arena).unwrap();
    recorder.release(&engine.device.device, ticket).unwrap();
    ctx.inject_device_budget(Some(1)).unwrap();
    let ticket = record(engine, &call, &arena).unwrap();
    check_y(engine, &call, &arena, &w, &x);
    recorder.release(&engine.device.device, ticket).unwrap();
    ctx.inject_device_budget(None).unwrap();
    assert_eq!(recorder.usage().spare_scratch, 1);
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// A rounding kernel made wrong (it rounds the first vector alone): the
/// self-test disables `_dot_pre`, says why in the report, and the products
/// run as before it existed (`_dot` up to DOT_MAX_BATCH, f32 above), still
/// correct.
#[test]
fn a_wrong_rounding_disables_pre_rounded_products() {
    let Some(_row) = run_under(&[&DEFAULT]) else {
        return;
    };
    let settings = nyxq::context::ContextSettings {
        vulkan_perturb_kernel: Some("matvec_round_f32_q8".to_string()),
        ..crate::vk_support::device_settings()
    };
    let Some(ctx) = crate::vk_support::context_with(settings) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let choice = engine.matvec();
    let why = choice
        .pre_rounded_failure()
        .expect("the self-test caught it");
    assert!(
        why.contains("_dot_pre") && why.contains("`_dot` gives"),
        "{why}"
    );
    assert!(!choice.pre_rounded_supported());
    let report = ctx.vulkan_report().join("\n");
    assert!(report.contains("`_dot_pre` DISABLED"), "{report}");
    for batch in 1..=8u32 {
        let expected = if batch <= matvec::DOT_MAX_BATCH {
            Variant::Dot
        } else {
            Variant::Subgroup
        };
        assert_eq!(choice.forward_variant(false, Format::Q4_0, batch), expected);
    }
    choice.set_arithmetic(Arithmetic::PreRounded);
    assert_eq!(
        choice.forward_variant(false, Format::Q4_0, 1),
        Variant::Subgroup
    );
    choice.set_arithmetic(Arithmetic::Auto);
    let (wq, w) = weights(Format::Q4_0, 7, 96, 59);
    for batch in [1u32, 3] {
        let x = uniform(batch as usize * 96, 61);
        check_call(
            engine,
            &forward_call(Format::Q4_0, 7, 96, batch, false),
            &wq,
            &w,
            &x,
            None,
        );
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}
