//! The Adam rows of `nyxq bench-vk`: a recorded optimizer step (its count
//! dispatch, the barrier and the update) on device-resident weights,
//! gradients and state, for each state layout and each step kernel this
//! device can run (the candidates, the experiments, then the measurement
//! twins, whose results are not the host's), with the bytes
//! the step must move (weights read and written, gradients read, the
//! moments read and written).

use super::measure::{Row, median_seconds};
use nyxq::Result;
use nyxq::train::adam::{AdamSettings, STATE_BLOCK, StateFormat, StateLayout};
use nyxq::vk::Engine;
use nyxq::vk::adam::DeviceAdam;
use nyxq::vk::adam_choice::{candidates, experiments, measurement_twins};
use nyxq::vk::memory::Buffer;
use nyxq::vk::ranges::BufferRange;
use std::sync::Arc;

/// Bytes one step over `n` weights must move in `layout`.
pub fn bytes_moved(layout: StateLayout, n: u64) -> u64 {
    let weights = 4 * n + 4 * n + 4 * n; // read and write the weights, read the gradients
    let blocks = n.div_ceil(STATE_BLOCK as u64);
    weights
        + match layout {
            StateLayout::Fp32 => 16 * n, // m and v read and written
            StateLayout::Int8Blocks => 4 * n + 16 * blocks, // codes and scales read and written
        }
}

/// Rows for every step kernel of both layouts over `n` weights.
pub fn rows(engine: &Arc<Engine>, n: usize, iterations: usize) -> Result<Vec<Row>> {
    let bytes = 4 * n as u64;
    let mut staging = Buffer::new(&engine.device, bytes, true)?;
    let params = Buffer::new(&engine.device, bytes, false)?;
    let grads = Buffer::new(&engine.device, bytes, false)?;
    let values: Vec<u8> = (0..n)
        .flat_map(|i| ((((i * 2_654_435_761) % 1_000_003) as f32 - 500_000.0) * 1e-6).to_le_bytes())
        .collect();
    staging.write(&values);
    engine.copy(staging.buffer, params.buffer, bytes)?;
    engine.copy(staging.buffer, grads.buffer, bytes)?;
    drop(staging);
    let range = |b: &Buffer| BufferRange {
        buffer: b.buffer,
        offset: 0,
        size: bytes,
    };
    let (p, g) = (range(&params), range(&grads));
    let mut out = Vec::new();
    for state in [StateFormat::Fp32, StateFormat::Int8Blockwise] {
        let settings = AdamSettings {
            state,
            ..Default::default()
        };
        let layout = StateLayout::of(state, n);
        let kernels = candidates(layout)
            .iter()
            .chain(experiments(layout))
            .chain(measurement_twins(layout));
        for &kernel in kernels {
            if !engine.variant_supported(kernel) {
                continue;
            }
            let adam = DeviceAdam::new(engine, settings, n, kernel)?;
            let step = || -> Result<f64> {
                let mut ticket = 0;
                let seconds = engine.submit_recorded(true, |cmd| {
                    // SAFETY: nyxq's command buffer is recording on the
                    // engine's device; the buffers are live and hold the ranges.
                    ticket = unsafe { adam.record_step(cmd, 1e-4, (&p, &g), n as u64, None) }?;
                    Ok(())
                })?;
                engine.recorder().release(&engine.device.device, ticket)?;
                Ok(seconds.unwrap_or(0.0))
            };
            let seconds = median_seconds(iterations, step)?;
            out.push(Row {
                kernel,
                bytes_moved: bytes_moved(layout, n as u64),
                seconds,
                same_output: None,
            });
        }
    }
    Ok(out)
}
