//! The measurements of `nyxq bench-vk-matvec`: W·x (and xᵀ·W) for
//! every format, shape and batch on device-resident data, timed with GPU timestamps (median
//! of several runs), next to the copy kernel's GB/s measured in the same run.
//! The block formats' W·x runs once per arithmetic asked for (f32, integer
//! dot products with x rounded in every workgroup, and with x rounded once
//! per product before it: the rounding dispatch and its barrier are inside
//! the timestamps) where the device has them.

use crate::bench_vk::measure::{copy_gbps, median_seconds};
use nyxq::Result;
use nyxq::format::{Format, VulkanFamily};
use nyxq::quant::{self, QuantizeOptions};
use nyxq::vk::Engine;
use nyxq::vk::matvec::{Arithmetic, MatvecCall, Operands, record_matvec, upload};
use nyxq::vk::memory::Buffer;
use nyxq::vk::ranges::BufferRange;
use nyxq::vk::shaders::MatvecVariant as Variant;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Settings {
    /// (rows, cols) of W; cols a multiple of 32.
    pub shapes: Vec<(usize, usize)>,
    pub batches: Vec<u32>,
    pub iterations: usize,
    /// f32 values the copy kernel moves (read and write).
    pub copy_floats: usize,
    /// Force the shared-memory reduction.
    pub compat: bool,
    /// Also time xᵀ·W (the backward pass).
    pub transposed: bool,
    /// The arithmetics W·x of the block formats is timed in, where the device
    /// runs them (the others have one).
    pub arithmetics: Vec<Arithmetic>,
}

/// One timed product.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub format: Format,
    pub rows: usize,
    pub cols: usize,
    pub batch: u32,
    /// xᵀ·W (the backward pass) instead of W·x.
    pub transposed: bool,
    /// The shader variant that ran.
    pub variant: Variant,
    pub seconds: f64,
    /// Bytes of W (what bounds the product's memory traffic).
    pub weight_bytes: u64,
}

impl Measurement {
    /// Weights read per second, in GB/s.
    pub fn gbps(&self) -> f64 {
        self.weight_bytes as f64 / self.seconds / 1e9
    }
}

/// The benchmark's results.
#[derive(Debug, Clone)]
pub struct Report {
    pub copy_gbps: f64,
    pub measurements: Vec<Measurement>,
}

impl Report {
    /// The measurement of `format` on the shape, batch and direction of `m`.
    pub fn find(&self, m: &Measurement, format: Format) -> Option<&Measurement> {
        self.measurements.iter().find(|o| {
            o.format == format
                && (o.rows, o.cols, o.batch, o.transposed)
                    == (m.rows, m.cols, m.batch, m.transposed)
        })
    }

    /// The measurement of `variant` on the format, shape, batch and
    /// direction of `m`.
    pub fn with_variant(&self, m: &Measurement, variant: Variant) -> Option<&Measurement> {
        self.measurements.iter().find(|o| {
            (o.format, o.rows, o.cols, o.batch, o.transposed, o.variant)
                == (m.format, m.rows, m.cols, m.batch, m.transposed, variant)
        })
    }

    /// Time of batch `batch` over batch 1 for the format, shape and variant
    /// of `m`.
    pub fn batch_ratio(&self, m: &Measurement) -> Option<f64> {
        let one = self.measurements.iter().find(|o| {
            (o.format, o.rows, o.cols, o.batch, o.transposed, o.variant)
                == (m.format, m.rows, m.cols, 1, m.transposed, m.variant)
        })?;
        Some(m.seconds / one.seconds)
    }
}

/// Deterministic weights in [-1, 1), made in parallel (the large shapes
/// have 2^28 of them).
pub(crate) fn weights(n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let per = n.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (t, part) in out.chunks_mut(per).enumerate() {
            scope.spawn(move || {
                let mut h = (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                for v in part {
                    h ^= h << 13;
                    h ^= h >> 7;
                    h ^= h << 17;
                    *v = (h >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
                }
            });
        }
    });
    out
}

fn range(buffer: &Buffer) -> BufferRange {
    BufferRange {
        buffer: buffer.buffer,
        offset: 0,
        size: buffer.size,
    }
}

/// Times one product: each run is one submission with timestamps around
/// the recorded dispatches; the descriptor sets are released after it.
fn time_product(
    engine: &Engine,
    call: &MatvecCall,
    ops: &Operands,
    iterations: usize,
) -> Result<f64> {
    median_seconds(iterations, || {
        let mut ticket = None;
        let seconds = engine.submit_recorded(true, |cmd| {
            // SAFETY: the engine's command buffer is recording; the buffers
            // are live device buffers holding the ranges.
            ticket = Some(unsafe { record_matvec(engine, cmd, call, ops) }?);
            Ok(())
        });
        if let Some(t) = ticket {
            engine.recorder().release(&engine.device.device, t)?;
        }
        Ok(seconds?.unwrap_or(0.0))
    })
}

/// Measures every format on every shape and batch of `settings`.
pub fn run(engine: &Engine, settings: &Settings) -> Result<Report> {
    let choice = engine.matvec();
    let before = choice.arithmetic();
    let report = measure(engine, settings);
    choice.set_arithmetic(before);
    report
}

/// The variants W·x of `format` runs in under `settings`: (arithmetic to
/// set, variant it gives), one per distinct variant.
fn forward_variants(
    engine: &Engine,
    settings: &Settings,
    format: Format,
) -> Vec<(Arithmetic, Variant)> {
    let choice = engine.matvec();
    let mut out: Vec<(Arithmetic, Variant)> = Vec::new();
    for &a in &settings.arithmetics {
        choice.set_arithmetic(a);
        let v = choice.forward_variant(settings.compat, format, 1);
        if out.iter().all(|(_, o)| *o != v) {
            out.push((a, v));
        }
    }
    out
}

fn measure(engine: &Engine, settings: &Settings) -> Result<Report> {
    let choice = engine.matvec();
    // The copy kernel first (its second of warm-up raises the GPU clocks)
    // and again last; the faster of the two is the yardstick, so a clock
    // change during the run cannot flatter the ratios.
    let copy_first = copy_gbps(engine, settings.copy_floats, settings.iterations)?;
    let max_batch = settings.batches.iter().copied().max().unwrap_or(1);
    let mut measurements = Vec::new();
    for &(rows, cols) in &settings.shapes {
        let values = weights(rows * cols);
        // Big enough for both directions.
        let vector_bytes = 4 * (max_batch as usize * rows.max(cols)) as u64;
        let x_values: Vec<u8> = weights(vector_bytes as usize / 4)
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let x = upload(engine, &x_values)?;
        let y = Buffer::new(&engine.device, vector_bytes, false)?;
        for format in Format::with_vulkan(VulkanFamily::Matvec) {
            let mut bytes = vec![0u8; format.size_of(values.len())?];
            let opts = QuantizeOptions {
                threads: std::thread::available_parallelism().map_or(1, |t| t.get()),
                ..Default::default()
            };
            quant::quantize(format, &values, &mut bytes, &opts)?;
            let w = upload(engine, &bytes)?;
            drop(bytes);
            let directions: &[bool] = if settings.transposed {
                &[false, true]
            } else {
                &[false]
            };
            let forward = forward_variants(engine, settings, format);
            // (direction, batch, (arithmetic, variant)) of every timed product.
            let mut runs = Vec::new();
            for &transposed in directions {
                let variants = if transposed {
                    vec![(Arithmetic::F32, Variant::Transposed)]
                } else {
                    forward.clone()
                };
                for &batch in &settings.batches {
                    runs.extend(variants.iter().map(|&v| (transposed, batch, v)));
                }
            }
            for (transposed, batch, (arithmetic, variant)) in runs {
                choice.set_arithmetic(arithmetic);
                let call = MatvecCall {
                    format,
                    rows: rows as u64,
                    cols: cols as u64,
                    batch,
                    transposed,
                    compat: settings.compat,
                };
                let ops = Operands {
                    w: range(&w),
                    x: range(&x),
                    bias: None,
                    y: range(&y),
                };
                let seconds = time_product(engine, &call, &ops, settings.iterations)?;
                measurements.push(Measurement {
                    format,
                    rows,
                    cols,
                    batch,
                    transposed,
                    variant,
                    seconds,
                    weight_bytes: call.sizes()?.w,
                });
            }
        }
    }
    let copy_last = copy_gbps(engine, settings.copy_floats, settings.iterations)?;
    Ok(Report {
        copy_gbps: copy_first.max(copy_last),
        measurements,
    })
}
