//! Adam on the device against Adam on the host: many steps recorded into a
//! command buffer the test owns (as a trainer's would be), with both state
//! layouts, skipped steps, odd lengths and lengths past one dispatch's
//! workgroup count; the weights and the state equal the host's bit for bit.
//! And checkpoints: a device run saved, destroyed, loaded and continued
//! equals the uninterrupted one, and host and device load each other's.

use crate::vk_support::commands::Commands;
use crate::vk_support::env::{DEFAULT, Env, FORCE_COMPAT, SMALL_GRID_WIDTH, SMALL_LIMITS};
use crate::vk_support::run_under;
use nyxq::train::adam::{Adam, AdamSettings, MIN_8BIT_ELEMENTS, StateFormat, StateLayout};
use nyxq::train::checkpoint;
use nyxq::vk::Engine;
use nyxq::vk::adam::DeviceAdam;
use nyxq::vk::adam_choice;
use nyxq::vk::memory::Buffer;
use nyxq::vk::ranges::BufferRange;
use nyxq::vk::shaders::KernelId;
use std::sync::Arc;

fn settings(state: StateFormat) -> AdamSettings {
    AdamSettings {
        beta1: 0.85,
        beta2: 0.97,
        eps: 1e-7,
        weight_decay: 0.02,
        state,
    }
}

/// Element `i`'s starting weight: ordinary values, zeros of both signs,
/// subnormals, huge ones.
fn weight(i: usize) -> f32 {
    let ordinary = ((i * 29) % 97) as f32 * 0.03 - 1.4;
    match i % 23 {
        0 => 0.0,
        1 => -0.0,
        2 => f32::from_bits(0x0000_3000 + i as u32 % 1000),
        3 => ordinary * 1e25,
        _ => ordinary,
    }
}

/// Element `i`'s gradient at `step`: mostly ordinary, with gradients whose
/// squares underflow or are subnormal, subnormal gradients, zeros and huge
/// ones (whose squares overflow: an infinite second moment, and in 8-bit
/// state an infinite block scale whose zero codes decode to NaN, on both
/// sides); each block of 256 gets its own scale, so 8-bit blocks differ.
fn gradient(i: usize, step: usize) -> f32 {
    let sign = if (i * 7 + step) % 5 < 2 { -1.0 } else { 1.0 };
    let scale = [1.0, 1e-3, 30.0, 1e-12][(i / 256) % 4];
    let ordinary = ((i * 7919 + step * 104_729) % 2001) as f32 * 1e-3 - 1.0;
    match (i + step) % 19 {
        0 => 0.0,
        1 => sign * 1e-20,
        2 => sign * 2e-19,
        3 => sign * f32::from_bits(0x0000_0400 + (i as u32 % 3000)),
        4 => sign * 1e20,
        _ => ordinary * scale,
    }
}

/// Element `i`'s gradient at `step` without the special values: in 8-bit
/// state no block then holds a huge moment that sends every other code to
/// zero, so the codes spread over their range.
fn ordinary(i: usize, step: usize) -> f32 {
    let scale = [1.0, 1e-3, 30.0, 1e-12][(i / 256) % 4];
    (((i * 7919 + step * 104_729) % 2001) as f32 * 1e-3 - 1.0) * scale
}

/// The bits of each value, every NaN as one (a NaN's payload may differ
/// between the device and the host).
fn bits(values: &[f32]) -> Vec<u32> {
    values
        .iter()
        .map(|v| {
            if v.is_nan() {
                f32::NAN.to_bits()
            } else {
                v.to_bits()
            }
        })
        .collect()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The trainer's side of a device optimizer: its weights, gradients and
/// found flag in host-visible buffers, and its command buffer.
struct Trainer<'a> {
    commands: Commands<'a>,
    params: Buffer,
    grads: Buffer,
    found: Buffer,
    n: usize,
}

impl<'a> Trainer<'a> {
    fn new(engine: &'a Arc<Engine>, params: &[f32]) -> Self {
        let bytes = 4 * params.len() as u64;
        let mut trainer = Trainer {
            commands: Commands::new(engine),
            params: Buffer::new(&engine.device, bytes, true).unwrap(),
            grads: Buffer::new(&engine.device, bytes, true).unwrap(),
            found: Buffer::new(&engine.device, 4, true).unwrap(),
            n: params.len(),
        };
        trainer.params.write(&f32_bytes(params));
        trainer
    }

    fn range(b: &Buffer, size: u64) -> BufferRange {
        BufferRange {
            buffer: b.buffer,
            offset: 0,
            size,
        }
    }

    /// One step: writes the gradients and the found flag, records the step,
    /// submits and waits.
    fn step(&mut self, adam: &DeviceAdam, lr: f32, grads: &[f32], skip: bool) {
        self.grads.write(&f32_bytes(grads));
        self.found.write(&u32::from(skip).to_le_bytes());
        self.commands.begin();
        let ticket = self.record(adam, lr);
        self.commands.submit_wait_and_release(ticket);
    }

    fn record(&self, adam: &DeviceAdam, lr: f32) -> u64 {
        let bytes = 4 * self.n as u64;
        let ranges = (
            &Self::range(&self.params, bytes),
            &Self::range(&self.grads, bytes),
        );
        let found = Self::range(&self.found, 4);
        // SAFETY: the test's command buffer is recording on the engine's
        // device; the buffers are live and hold the ranges.
        unsafe { adam.record_step(self.commands.cmd, lr, ranges, self.n as u64, Some(&found)) }
            .unwrap()
    }

    fn params(&self) -> Vec<f32> {
        let mut out = vec![0u8; 4 * self.n];
        self.params.read(&mut out);
        out.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

fn host_checkpoint(adam: &Adam) -> Vec<u8> {
    let mut bytes = vec![0u8; checkpoint::adam_len(&checkpoint::host_image(adam)).unwrap()];
    checkpoint::save_host_adam(adam, &mut bytes).unwrap();
    bytes
}

fn device_checkpoint(adam: &DeviceAdam) -> Vec<u8> {
    let mut bytes = vec![0u8; adam.checkpoint_len().unwrap()];
    adam.save(&mut bytes).unwrap();
    bytes
}

/// A device optimizer chosen by the self-test: the compatible kernel with
/// NYXQ_VK_FORCE_COMPAT, else the fastest candidate the device runs (each
/// passes its self-test on the devices the tests run on).
fn chosen(ctx: &nyxq::context::Context, s: AdamSettings, n: usize) -> DeviceAdam {
    let engine = ctx.vulkan().unwrap();
    let adam = adam_choice::create(engine, s, n, ctx.force_compat()).unwrap();
    let candidates = adam_choice::candidates(adam.layout());
    let expected = if ctx.force_compat() {
        candidates[candidates.len() - 1]
    } else {
        let runs = |&&k: &&KernelId| engine.variant_supported(k);
        *candidates.iter().find(runs).unwrap()
    };
    assert_eq!(adam.kernel(), expected, "the self-test's choice");
    adam
}

/// `steps` steps (every third skipped) with the chosen kernel and, with
/// `every_kernel`, with each other candidate and experiment the device runs (and each also
/// with ordinary gradients), against the host from the same start; the
/// weights are compared after every step, the state at the end.
fn compare_runs(
    ctx: &nyxq::context::Context,
    state: StateFormat,
    n: usize,
    steps: usize,
    every_kernel: bool,
) {
    let engine = ctx.vulkan().unwrap();
    let s = settings(state);
    let first = chosen(ctx, s, n);
    let chosen_kernel = first.kernel();
    compare_run(engine, &first, steps, gradient);
    let layout = first.layout();
    let others = adam_choice::candidates(layout)
        .iter()
        .chain(adam_choice::experiments(layout))
        .copied()
        .filter(|&k| every_kernel && !ctx.force_compat() && k != chosen_kernel)
        .filter(|&k| engine.variant_supported(k));
    for kernel in others {
        let fresh = || DeviceAdam::new(engine, s, n, kernel).unwrap();
        compare_run(engine, &fresh(), steps, gradient);
        compare_run(engine, &fresh(), steps, ordinary);
    }
    if every_kernel {
        compare_run(engine, &chosen(ctx, s, n), steps, ordinary);
    }
}

fn compare_run(
    engine: &Arc<Engine>,
    adam: &DeviceAdam,
    steps: usize,
    gradient: fn(usize, usize) -> f32,
) {
    let (n, s, kernel) = (adam.len(), *adam.settings(), adam.kernel());
    let mut host = Adam::new(s, n).unwrap();
    let mut params: Vec<f32> = (0..n).map(weight).collect();
    let mut trainer = Trainer::new(engine, &params);
    for step in 1..=steps {
        let g: Vec<f32> = (0..n).map(|i| gradient(i, step)).collect();
        let skip = step % 3 == 0;
        let lr = 1e-3 * (1 + step % 4) as f32;
        trainer.step(adam, lr, &g, skip);
        if !skip {
            host.step(lr, &mut params, &g).unwrap();
        }
        let (device, host) = (bits(&trainer.params()), bits(&params));
        if let Some(i) = (0..n).find(|&i| device[i] != host[i]) {
            panic!(
                "{kernel} n {n}, step {step}: weight {i} is {:e} on the device, {:e} on the host",
                f32::from_bits(device[i]),
                params[i]
            );
        }
    }
    assert_eq!(adam.steps().unwrap(), host.steps());
    assert!(
        device_checkpoint(adam) == host_checkpoint(&host),
        "{kernel} n {n}: the state differs from the host's"
    );
}

#[test]
fn device_steps_equal_the_host_bit_for_bit() {
    let Some(ctx) = run_under(&[&DEFAULT, &FORCE_COMPAT]).and_then(Env::context) else {
        return;
    };
    for (state, n) in [
        (StateFormat::Fp32, 1),
        (StateFormat::Fp32, 33),
        (StateFormat::Fp32, 4097),
        (StateFormat::Int8Blockwise, 255),
        (StateFormat::Int8Blockwise, MIN_8BIT_ELEMENTS),
        (StateFormat::Int8Blockwise, 3 * MIN_8BIT_ELEMENTS + 257),
    ] {
        compare_runs(&ctx, state, n, 7, true);
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// The `_hw_x4` and `_lanes_fast_codes` kernels' twins, whose quotients and
/// roots are off by up to two units in the last place (the codes' roots by
/// up to 32) and whose corrections are miscounted two times in three, still
/// equal the host: the corrections mend and the checks catch every wrong
/// result (the device's own unit may be exact, as lavapipe's is, and then
/// never exercises them).
#[test]
fn checks_catch_a_skewed_unit() {
    let Some(ctx) = run_under(&[&DEFAULT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let q8 = 3 * MIN_8BIT_ELEMENTS + 257;
    for (state, n, kernel) in [
        (
            StateFormat::Fp32,
            4097,
            KernelId::ADAM_F32_F32_RTE_HW_X4_SKEWED,
        ),
        (
            StateFormat::Fp32,
            4097,
            KernelId::ADAM_F32_F32_RTE_FMA_X4_SKEWED,
        ),
        (
            StateFormat::Int8Blockwise,
            q8,
            KernelId::ADAM_F32_Q8_RTE_LANES_SKEWED,
        ),
        (
            StateFormat::Int8Blockwise,
            q8,
            KernelId::ADAM_F32_Q8_RTE_FMA_LANES_SKEWED,
        ),
        (
            StateFormat::Int8Blockwise,
            q8,
            KernelId::ADAM_F32_Q8_RTE_FMA_WIDE_SKEWED,
        ),
        (
            StateFormat::Int8Blockwise,
            q8,
            KernelId::ADAM_F32_Q8_RTE_WIDE_SKEWED,
        ),
    ] {
        if engine.variant_supported(kernel) {
            let s = settings(state);
            let adam = DeviceAdam::new(engine, s, n, kernel).unwrap();
            compare_run(engine, &adam, 7, gradient);
            compare_run(
                engine,
                &DeviceAdam::new(engine, s, n, kernel).unwrap(),
                7,
                ordinary,
            );
        }
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// The `_dp` kernels' arithmetic (products and sums unchecked, which is
/// exact only where f32 subnormals are kept) without the declaration, on a
/// device that keeps them unasked (lavapipe): equal to the host, with
/// subnormal weights, gradients and moments.
#[test]
fn dp_arithmetic_equals_the_host_where_subnormals_are_kept() {
    let Some(ctx) = run_under(&[&DEFAULT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    for (state, n, kernel) in [
        (
            StateFormat::Fp32,
            4097,
            KernelId::ADAM_F32_F32_RTE_DP_X4_UNDECLARED,
        ),
        (
            StateFormat::Int8Blockwise,
            3 * MIN_8BIT_ELEMENTS + 257,
            KernelId::ADAM_F32_Q8_RTE_DP_LANES_UNDECLARED,
        ),
    ] {
        if engine.variant_supported(kernel) {
            let s = settings(state);
            for g in [gradient, ordinary] {
                compare_run(
                    engine,
                    &DeviceAdam::new(engine, s, n, kernel).unwrap(),
                    7,
                    g,
                );
            }
        }
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// Measurement, with NYXQ_ADAM_PROBE=1 (`probe --nocapture`): how many
/// weights of 2^20 the `_hw_x4` and `_dp_x4` kernels redo on the bits per
/// step, with the bench's gradients, and why (the probe twins write the
/// reason in place of the weight: division bits 0-3 range/far/remainder/
/// binade, root bits 4-7 likewise, none of them: a product or sum; the
/// units the division and the root were off by, plus 4, in bits 24-27 and
/// 28-31).
#[test]
fn probe_redone_on_the_bits() {
    if std::env::var_os("NYXQ_ADAM_PROBE").is_none() {
        return;
    }
    let Some(ctx) = run_under(&[&DEFAULT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let n = 1 << 20;
    let bench =
        |i: usize, _step: usize| (((i * 2_654_435_761) % 1_000_003) as f32 - 500_000.0) * 1e-6;
    for kernel in [
        KernelId::ADAM_F32_F32_RTE_HW_X4_PROBE,
        KernelId::ADAM_F32_F32_RTE_DP_X4_PROBE,
        KernelId::ADAM_F32_F32_RTE_FMA_X4_PROBE,
    ] {
        if !engine.variant_supported(kernel) {
            eprintln!("probe {kernel}: not supported here");
            continue;
        }
        let s = AdamSettings::default();
        let adam = DeviceAdam::new(engine, s, n, kernel).unwrap();
        let start: Vec<f32> = (0..n).map(|i| bench(i, 0)).collect();
        let mut trainer = Trainer::new(engine, &start);
        for step in 1..=4 {
            let g: Vec<f32> = (0..n).map(|i| bench(i, step)).collect();
            trainer.step(&adam, 1e-4, &g, false);
            let marked: Vec<u32> = bits(&trainer.params())
                .into_iter()
                .filter(|b| b & 0x00ff_fe00 == 0x2b5a << 9)
                .collect();
            let mut reasons = std::collections::BTreeMap::new();
            for b in &marked {
                *reasons.entry(b & 0xff).or_insert(0usize) += 1;
            }
            let mut deltas = std::collections::BTreeMap::new();
            for b in &marked {
                *deltas.entry(b >> 24).or_insert(0usize) += 1;
            }
            eprintln!(
                "probe {kernel} step {step}: {} of {n} redone; reasons {reasons:?}; \
                 div/root units+4 {deltas:?}",
                marked.len()
            );
            trainer.params.write(&f32_bytes(&start));
        }
    }
}

/// A length past one dispatch's state: each chunk's state fills the
/// binding range of the test device with the small limits
/// (tests/fixtures/small-limits.json, 4 MiB), its workgroups are more than
/// the grid's first axis takes (a 2-D grid; for the 8-bit kernels, a block
/// per workgroup), and the rest are further dispatches.
#[test]
fn lengths_past_one_dispatch_are_split_and_two_dimensional() {
    let Some(ctx) = run_under(&[&SMALL_LIMITS]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let n = (1 << 20) + 300;
    for state in [StateFormat::Fp32, StateFormat::Int8Blockwise] {
        let layout = StateLayout::of(state, n);
        let chunk = nyxq::vk::adam::chunk_elements(engine, layout);
        assert!(
            chunk as u64 / 256 > SMALL_GRID_WIDTH && chunk < n,
            "{layout:?}: chunks of {chunk}"
        );
        compare_runs(&ctx, state, n, 2, false);
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// Two steps recorded in one command buffer, a barrier between them, equal
/// two host steps: the count of the second reads what the first wrote.
#[test]
fn steps_recorded_together_count_in_order() {
    let Some(ctx) = run_under(&[&DEFAULT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let n = 300;
    let s = settings(StateFormat::Fp32);
    let adam = adam_choice::create(engine, s, n, false).unwrap();
    let mut host = Adam::new(s, n).unwrap();
    let mut params: Vec<f32> = (0..n).map(weight).collect();
    let mut trainer = Trainer::new(engine, &params);
    let g: Vec<f32> = (0..n).map(|i| gradient(i, 1)).collect();
    trainer.grads.write(&f32_bytes(&g));
    trainer.found.write(&0u32.to_le_bytes());
    trainer.commands.begin();
    trainer.record(&adam, 0.01);
    trainer.commands.compute_barrier();
    let ticket = trainer.record(&adam, 0.02);
    trainer.commands.submit_wait_and_release(ticket);
    host.step(0.01, &mut params, &g).unwrap();
    host.step(0.02, &mut params, &g).unwrap();
    assert_eq!(bits(&trainer.params()), bits(&params));
    assert_eq!(adam.steps().unwrap(), 2);
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// N steps equal k steps, save, destroy, a new optimizer, load and N - k
/// steps; a device checkpoint loads into a host optimizer and the reverse.
#[test]
fn checkpoints_continue_bit_for_bit() {
    let Some(ctx) = run_under(&[&DEFAULT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    for (state, n) in [
        (StateFormat::Fp32, 77),
        (StateFormat::Int8Blockwise, MIN_8BIT_ELEMENTS + 77),
    ] {
        let s = settings(state);
        let start: Vec<f32> = (0..n).map(weight).collect();
        let grads = |step| (0..n).map(|i| gradient(i, step)).collect::<Vec<f32>>();
        // Step 3 is skipped; the checkpoint is taken after it.
        let run =
            |trainer: &mut Trainer, adam: &DeviceAdam, steps: std::ops::RangeInclusive<usize>| {
                for step in steps {
                    trainer.step(adam, 0.01, &grads(step), step == 3);
                }
            };
        let whole = adam_choice::create(engine, s, n, false).unwrap();
        let mut whole_trainer = Trainer::new(engine, &start);
        run(&mut whole_trainer, &whole, 1..=6);

        let first = adam_choice::create(engine, s, n, false).unwrap();
        let mut trainer = Trainer::new(engine, &start);
        run(&mut trainer, &first, 1..=3);
        let saved = device_checkpoint(&first);
        drop(first);
        let second = adam_choice::create(engine, s, n, false).unwrap();
        second.load(&saved).unwrap();
        assert_eq!(second.steps().unwrap(), 2);
        run(&mut trainer, &second, 4..=6);
        assert_eq!(bits(&trainer.params()), bits(&whole_trainer.params()));
        assert!(device_checkpoint(&second) == device_checkpoint(&whole));

        // The host continues a device checkpoint, and the device a host one.
        let mut host = Adam::new(s, n).unwrap();
        checkpoint::load_host_adam(&mut host, &saved).unwrap();
        let mut params = {
            let mut t = Trainer::new(engine, &start);
            run(
                &mut t,
                &adam_choice::create(engine, s, n, false).unwrap(),
                1..=3,
            );
            t.params()
        };
        for step in 4..=6 {
            host.step(0.01, &mut params, &grads(step)).unwrap();
        }
        assert_eq!(bits(&params), bits(&whole_trainer.params()));
        let third = adam_choice::create(engine, s, n, false).unwrap();
        third.load(&host_checkpoint(&host)).unwrap();
        assert!(device_checkpoint(&third) == device_checkpoint(&whole));
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// A skipped step changes nothing; a step's arguments are checked before
/// anything is recorded; the state cannot be saved, loaded or dropped from
/// under an unreleased recording; device memory is counted.
#[test]
fn skips_refusals_and_memory() {
    let Some(ctx) = run_under(&[&DEFAULT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let n = MIN_8BIT_ELEMENTS + 5;
    let held_before = ctx.memory_status().unwrap().nyxq_bytes;
    let adam = adam_choice::create(engine, settings(StateFormat::Int8Blockwise), n, false).unwrap();
    let (state_bytes, fp32) = adam.state_bytes();
    assert_eq!(state_bytes, 2 * n + 8 * n.div_ceil(256));
    assert!((state_bytes as f64) <= 0.26 * fp32 as f64);
    let held = ctx.memory_status().unwrap().nyxq_bytes - held_before;
    assert!(held >= state_bytes as u64 + 4096, "{held} bytes counted");

    let start: Vec<f32> = (0..n).map(weight).collect();
    let mut trainer = Trainer::new(engine, &start);
    let empty = device_checkpoint(&adam);
    let g: Vec<f32> = (0..n).map(|i| gradient(i, 1)).collect();
    trainer.step(&adam, 0.5, &g, true);
    assert_eq!(bits(&trainer.params()), bits(&start));
    assert!(
        device_checkpoint(&adam) == empty,
        "a skipped step changes nothing"
    );

    let bytes = 4 * n as u64;
    let p = Trainer::range(&trainer.params, bytes);
    let gr = Trainer::range(&trainer.grads, bytes);
    let cmd = trainer.commands.cmd;
    trainer.commands.begin();
    let refused = |lr: f32, ranges: (&BufferRange, &BufferRange), n: u64| {
        // SAFETY: the command buffer is recording; the buffers are live and
        // hold the ranges; every call is refused before it records.
        unsafe { adam.record_step(cmd, lr, ranges, n, None) }.unwrap_err()
    };
    assert!(
        refused(0.1, (&p, &gr), n as u64 - 1)
            .message()
            .contains("not")
    );
    assert!(
        refused(f32::NAN, (&p, &gr), n as u64)
            .message()
            .contains("learning rate")
    );
    assert!(
        refused(-1.0, (&p, &gr), n as u64)
            .message()
            .contains("learning rate")
    );
    assert!(
        refused(0.1, (&p, &p), n as u64)
            .message()
            .contains("params and grads overlap")
    );
    // SAFETY: as above.
    let ticket = unsafe { adam.record_step(cmd, 0.1, (&p, &gr), n as u64, None) }.unwrap();
    let mut out = vec![0u8; adam.checkpoint_len().unwrap()];
    assert!(
        adam.save(&mut out)
            .unwrap_err()
            .message()
            .contains("nyxq_vk_release")
    );
    assert!(
        adam.load(&empty)
            .unwrap_err()
            .message()
            .contains("nyxq_vk_release")
    );
    assert!(adam.check_not_bound_by_recordings("destroy it").is_err());
    trainer.commands.submit_wait_and_release(ticket);
    adam.check_not_bound_by_recordings("destroy it").unwrap();
    assert_eq!(adam.steps().unwrap(), 1);
    let before_drop = ctx.memory_status().unwrap().nyxq_bytes;
    drop(adam);
    assert_eq!(before_drop - ctx.memory_status().unwrap().nyxq_bytes, held);
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}
