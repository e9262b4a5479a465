//! Which Adam step kernel a device runs: at the first device optimizer of
//! each state layout, each variant the device can run (fastest first, the
//! one on the bits alone last) takes a few steps over hard cases (zeros of
//! both signs, subnormal weights, gradients and moments, products that
//! underflow, huge weights and gradients, a skipped step) next to the CPU's
//! Adam; the first whose weights and state equal the CPU's bit for bit is
//! used. (The inputs make no NaN, whose payload may differ.)

use super::adam::DeviceAdam;
use super::engine::Engine;
use super::memory::Buffer;
use super::ranges::BufferRange;
use super::shaders::KernelId;
use crate::error::{Error, Result};
use crate::train::adam::{Adam, AdamSettings, MIN_8BIT_ELEMENTS, StateFormat, StateLayout};
use crate::train::checkpoint;
use std::sync::Arc;

/// The step kernels of `layout`, fastest first (measured on an NVIDIA
/// H100, docs/vulkan.md); the last, on the bits alone, runs anywhere.
pub fn candidates(layout: StateLayout) -> &'static [KernelId] {
    match layout {
        StateLayout::Fp32 => &[
            KernelId::ADAM_F32_F32_RTE_FMA_X4,
            KernelId::ADAM_F32_F32_RTE_HW_X4,
            KernelId::ADAM_F32_F32_RTE_X4,
            KernelId::ADAM_F32_F32_RTE,
            KernelId::ADAM_F32_F32,
        ],
        StateLayout::Int8Blocks => &[
            KernelId::ADAM_F32_Q8_RTE_FMA_WIDE,
            KernelId::ADAM_F32_Q8_RTE_WIDE,
            KernelId::ADAM_F32_Q8_RTE_FMA_LANES,
            KernelId::ADAM_F32_Q8_RTE_LANES_FAST_CODES,
            KernelId::ADAM_F32_Q8_RTE,
            KernelId::ADAM_F32_Q8,
        ],
    }
}

/// Step kernels of `layout` that give the same bits but are not yet
/// measured on a GPU (the `_dp` ones: the H100 has no
/// shaderDenormPreserveFloat32): never chosen, timed by `nyxq bench-vk`
/// and tested beside the candidates.
pub fn experiments(layout: StateLayout) -> &'static [KernelId] {
    match layout {
        StateLayout::Fp32 => &[
            KernelId::ADAM_F32_F32_RTE_DP_FMA_X4,
            KernelId::ADAM_F32_F32_RTE_DP_X4,
        ],
        StateLayout::Int8Blocks => &[
            KernelId::ADAM_F32_Q8_RTE_DP_FMA_LANES,
            KernelId::ADAM_F32_Q8_RTE_DP_LANES,
        ],
    }
}

/// Measurement only: twins of the 8-bit `_fma_wide` kernel with the
/// update, the codes, or every part but the loads and stores cut out
/// (their results are not the host's), with the codes where clearly off a
/// rounding boundary, with the tables read from the control buffer, or
/// with every operation by the floating-point unit unchecked (`_raw`).
/// `nyxq bench-vk` times them after the experiments. Built with
/// NYXQ_SHADER_EXPERIMENTS=1 only; none otherwise.
pub fn measurement_twins(layout: StateLayout) -> &'static [KernelId] {
    match layout {
        StateLayout::Fp32 => &[],
        StateLayout::Int8Blocks => super::shaders::adam_measurement_twins(),
    }
}

/// A device optimizer for `len` parameters, its kernel chosen (and tested
/// first, at the first optimizer of its layout on this engine); only the
/// kernel on the bits alone with `force_compat`.
pub fn create(
    engine: &Arc<Engine>,
    settings: AdamSettings,
    len: usize,
    force_compat: bool,
) -> Result<DeviceAdam> {
    settings.check()?;
    if len == 0 {
        return Err(Error::invalid(
            "adam: a device optimizer needs at least one parameter",
        ));
    }
    let layout = StateLayout::of(settings.state, len);
    let kernel = match engine.adam_kernel(layout) {
        Some(kernel) => kernel,
        None => choose(engine, layout, force_compat)?,
    };
    DeviceAdam::new(engine, settings, len, kernel)
}

/// Tests the candidates of `layout` and keeps the first that agrees.
fn choose(engine: &Arc<Engine>, layout: StateLayout, force_compat: bool) -> Result<KernelId> {
    let all = candidates(layout);
    let compat = all[all.len() - 1];
    let tried = all
        .iter()
        .copied()
        .filter(|&k| (k == compat || !force_compat) && engine.variant_supported(k));
    let mut failures = Vec::new();
    for kernel in tried {
        match disagreement(engine, layout, kernel)? {
            None => {
                log::debug!("nyxq vulkan self-test: {kernel} agrees with the CPU's Adam");
                engine.choose_adam_kernel(layout, kernel);
                return Ok(kernel);
            }
            Some(why) => {
                log::warn!("nyxq vulkan self-test: {kernel} DISABLED ({why})");
                failures.push(format!("{kernel}: {why}"));
            }
        }
    }
    Err(Error::unsupported(format!(
        "no Adam kernel of this device agrees with the CPU's Adam ({}); step on the host \
         (nyxq_adam_step)",
        failures.join("; ")
    )))
}

/// The test's settings: every term of the update shows.
fn test_settings(layout: StateLayout) -> AdamSettings {
    AdamSettings {
        beta1: 0.8,
        beta2: 0.95,
        eps: 1e-6,
        weight_decay: 0.01,
        state: match layout {
            StateLayout::Fp32 => StateFormat::Fp32,
            StateLayout::Int8Blocks => StateFormat::Int8Blockwise,
        },
    }
}

/// Element `i`'s weight and its gradient at `step`: a block of each hard
/// case, the rest ordinary values.
fn hard_case(i: usize, step: usize) -> (f32, f32) {
    let sign = if (i + step) % 3 == 0 { -1.0 } else { 1.0 };
    let ordinary = ((i * 37 + step * 11) % 101) as f32 * 0.02 - 1.0;
    match (i / 16) % 8 {
        0 => (if i % 2 == 0 { 0.0 } else { -0.0 }, 0.0),
        1 => (ordinary, sign * f32::from_bits(0x0000_0100 + i as u32 * 7)),
        2 => (f32::from_bits(0x0000_4000 + i as u32), sign * 1e-20),
        3 => (ordinary, sign * 3e-19 * (1 + i % 5) as f32),
        4 => (1e-38 * sign, sign * 1e-30),
        5 => (ordinary * 1e30, sign * 1e18),
        _ => (ordinary, sign * ordinary * 0.1),
    }
}

/// Runs three steps (the second skipped by the found flag) with `kernel`
/// and on the CPU; None when the weights and the state agree bit for bit,
/// else where they differ.
fn disagreement(
    engine: &Arc<Engine>,
    layout: StateLayout,
    kernel: KernelId,
) -> Result<Option<String>> {
    let len = match layout {
        StateLayout::Fp32 => 301,
        StateLayout::Int8Blocks => MIN_8BIT_ELEMENTS + 301,
    };
    let settings = test_settings(layout);
    let device_adam = DeviceAdam::new(engine, settings, len, kernel)?;
    let mut host = Adam::new(settings, len)?;
    let mut params: Vec<f32> = (0..len).map(|i| hard_case(i, 0).0).collect();
    let bytes = 4 * len as u64;
    let mut device_params = Buffer::new(&engine.device, bytes, true)?;
    let mut grads = Buffer::new(&engine.device, bytes, true)?;
    let mut found = Buffer::new(&engine.device, 4, true)?;
    device_params.write(&f32_bytes(&params));
    let range = |b: &Buffer, size| BufferRange {
        buffer: b.buffer,
        offset: 0,
        size,
    };
    for step in 1..=3 {
        let g: Vec<f32> = (0..len).map(|i| hard_case(i, step).1).collect();
        let skipped = step == 2;
        let lr = 0.01 * step as f32;
        grads.write(&f32_bytes(&g));
        found.write(&u32::from(skipped).to_le_bytes());
        let ranges = (&range(&device_params, bytes), &range(&grads, bytes));
        let flag = range(&found, 4);
        let mut ticket = 0;
        engine.submit_recorded(false, |cmd| {
            // SAFETY: nyxq's command buffer is recording on the engine's
            // device; the buffers are nyxq's, live, and hold the ranges.
            ticket = unsafe { device_adam.record_step(cmd, lr, ranges, len as u64, Some(&flag)) }?;
            Ok(())
        })?;
        engine.recorder().release(&engine.device.device, ticket)?;
        if !skipped {
            host.step(lr, &mut params, &g)?;
        }
    }
    let mut gpu = vec![0u8; bytes as usize];
    device_params.read(&mut gpu);
    let weight =
        |i: usize| f32::from_le_bytes([gpu[4 * i], gpu[4 * i + 1], gpu[4 * i + 2], gpu[4 * i + 3]]);
    let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    if let Some(i) = (0..len).find(|&i| !same(weight(i), params[i])) {
        return Ok(Some(format!(
            "weight {i} is {:e}, the CPU's Adam gives {:e}",
            weight(i),
            params[i]
        )));
    }
    let mut want = vec![0u8; checkpoint::adam_len(&checkpoint::host_image(&host))?];
    checkpoint::save_host_adam(&host, &mut want)?;
    let mut got = vec![0u8; want.len()];
    device_adam.save(&mut got)?;
    Ok(got
        .iter()
        .zip(&want)
        .position(|(a, b)| a != b)
        .map(|at| format!("state byte {at} of its checkpoint differs from the CPU's")))
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
