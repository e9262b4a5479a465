//! The measurements of `nyxq bench-vk-matmul`: Y = X·Wᵀ (and dX = dY·W)
//! for every format, shape and token count on device-resident data, timed
//! with GPU timestamps (median of several runs), next to the copy kernel's
//! GB/s and, up to 8 tokens, the matrix-vector product of the same shape,
//! both measured in the same run. Each timed product's first and last
//! tokens are then read back and checked against FP64 within the bound of
//! the kernel that ran.

use crate::bench_vk::measure::{copy_gbps, median_seconds};
use crate::bench_vk_matvec::measure::weights;
use nyxq::Result;
use nyxq::format::Format;
use nyxq::quant::{self, QuantizeOptions};
use nyxq::vk::Engine;
use nyxq::vk::matmul::{Bound, MatmulCall, first_violation, record_matmul_with};
use nyxq::vk::matvec::{MatvecCall, Operands, record_matvec, upload};
use nyxq::vk::memory::Buffer;
use nyxq::vk::ranges::BufferRange;
use nyxq::vk::recorder::Ticket;
use nyxq::vk::shaders::{KernelId, experimental_kernels, op_kernels};

/// What to measure.
#[derive(Debug, Clone)]
pub struct Settings {
    /// (rows, cols) of W; cols a multiple of 32.
    pub shapes: Vec<(usize, usize)>,
    pub tokens: Vec<u64>,
    pub formats: Vec<Format>,
    pub iterations: usize,
    /// f32 values the copy kernel moves (read and write).
    pub copy_floats: usize,
    /// Also time dX = dY·W (the backward pass).
    pub backward: bool,
    /// Also time the other variants of the product the device runs (the
    /// fast ones not chosen, the measurement-only ones), after the chosen
    /// one: those whose names end with one of these suffixes (`None`: no
    /// other; "all" matches every one).
    pub variants: Option<Vec<String>>,
}

/// One timed product.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub format: Format,
    pub rows: usize,
    pub cols: usize,
    pub tokens: u64,
    /// dX = dY·W instead of Y = X·Wᵀ.
    pub transposed: bool,
    /// The kernel that ran (the self-test's choice, or with
    /// `Settings::variants` another variant).
    pub kernel: KernelId,
    pub seconds: f64,
    /// Bytes of W.
    pub weight_bytes: u64,
    /// The matrix-vector product of the same shape and direction with
    /// `tokens` vectors (up to 8), in the same run.
    pub matvec_seconds: Option<f64>,
    /// Why the first or last token's outputs are outside the kernel's bound,
    /// if they are.
    pub violation: Option<String>,
}

impl Measurement {
    /// Multiply-adds counted twice, per second, in GFLOP/s.
    pub fn gflops(&self) -> f64 {
        2.0 * (self.rows * self.cols) as f64 * self.tokens as f64 / self.seconds / 1e9
    }

    /// Weights read per second, in GB/s (once per product).
    pub fn weights_gbps(&self) -> f64 {
        self.weight_bytes as f64 / self.seconds / 1e9
    }
}

/// The benchmark's results.
#[derive(Debug, Clone)]
pub struct Report {
    pub copy_gbps: f64,
    pub measurements: Vec<Measurement>,
}

fn range(buffer: &Buffer) -> BufferRange {
    BufferRange {
        buffer: buffer.buffer,
        offset: 0,
        size: buffer.size,
    }
}

/// Times what `record` records: each run is one submission with timestamps
/// around it; the descriptor sets are released after it.
fn time_recorded(
    engine: &Engine,
    iterations: usize,
    record: impl Fn(ash::vk::CommandBuffer) -> Result<Ticket>,
) -> Result<f64> {
    median_seconds(iterations, || {
        let mut ticket = None;
        let seconds = engine.submit_recorded(true, |cmd| {
            ticket = Some(record(cmd)?);
            Ok(())
        });
        if let Some(t) = ticket {
            engine.recorder().release(&engine.device.device, t)?;
        }
        Ok(seconds?.unwrap_or(0.0))
    })
}

/// The values of `y` (device-local) from float `first`, `n` of them.
fn read_floats(engine: &Engine, y: &Buffer, first: usize, n: usize) -> Result<Vec<f32>> {
    let bytes = 4 * (first + n) as u64;
    let readback = Buffer::new(&engine.device, bytes.div_ceil(4) * 4, true)?;
    engine.copy(y.buffer, readback.buffer, bytes)?;
    Ok(readback.mapped()[4 * first..4 * (first + n)]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// The device's operands of one shape: W in one format, X, Y, and X on the
/// host (for the checks).
struct Resident<'a> {
    w: &'a Buffer,
    x: &'a Buffer,
    y: &'a Buffer,
    x_host: &'a [f32],
    /// W dequantized (for the checks), rows × cols.
    w_values: &'a [f32],
    /// The same transposed, cols × rows: the backward product's check reads
    /// it as a forward one, row by row (W's columns are far apart in memory).
    w_columns: &'a [f32],
}

/// The kernels to time for `call`: the chosen one, then the others of its
/// product that the device runs and `variants` names.
fn kernels_to_time(
    engine: &Engine,
    call: &MatmulCall,
    variants: Option<&[String]>,
) -> Result<Vec<KernelId>> {
    let (op, format) = (call.op(), call.format);
    let mut out = vec![engine.kernel(op, format)?];
    let named = |kernel: KernelId| {
        variants.is_some_and(|v| {
            v.iter()
                .any(|s| s == "all" || kernel.name().ends_with(s.as_str()))
        })
    };
    let others = op_kernels(op, format)
        .iter()
        .chain(experimental_kernels(op, format));
    for &kernel in others {
        if !out.contains(&kernel) && named(kernel) && engine.variant_supported(kernel) {
            out.push(kernel);
        }
    }
    Ok(out)
}

/// Times `call` with `kernel` (and, for the chosen kernel, the matvec of
/// its shape up to 8 tokens), then checks its first and last tokens
/// against FP64.
fn measure_one(
    engine: &Engine,
    settings: &Settings,
    call: &MatmulCall,
    on: &Resident,
    kernel: KernelId,
) -> Result<Measurement> {
    let ops = Operands {
        w: range(on.w),
        x: range(on.x),
        bias: None,
        y: range(on.y),
    };
    let seconds = time_recorded(engine, settings.iterations, |cmd| {
        // SAFETY: the engine's command buffer is recording; the buffers are
        // live device buffers holding the ranges.
        unsafe { record_matmul_with(engine, cmd, call, &ops, kernel) }
    })?;
    let chosen = engine.kernel(call.op(), call.format)? == kernel;
    let matvec_seconds = if call.tokens <= 8 && chosen {
        let matvec = MatvecCall {
            format: call.format,
            rows: call.rows,
            cols: call.cols,
            batch: call.tokens as u32,
            transposed: call.transposed,
            compat: false,
        };
        Some(time_recorded(engine, settings.iterations, |cmd| {
            // SAFETY: as above.
            unsafe { record_matvec(engine, cmd, &matvec, &ops) }
        })?)
    } else {
        None
    };
    // The matvec wrote Y last: run the matmul once more before reading it.
    time_recorded(engine, 1, |cmd| {
        // SAFETY: as above.
        unsafe { record_matmul_with(engine, cmd, call, &ops, kernel) }
    })?;
    let (n, outputs) = if call.transposed {
        (call.rows as usize, call.cols as usize)
    } else {
        (call.cols as usize, call.rows as usize)
    };
    // The backward product of one token, dX = dY·W, is the forward one of
    // Wᵀ: checked as such on the transposed copy.
    let (one_token, w) = if call.transposed {
        let forward = MatmulCall {
            rows: call.cols,
            cols: call.rows,
            tokens: 1,
            transposed: false,
            ..*call
        };
        (forward, on.w_columns)
    } else {
        (MatmulCall { tokens: 1, ..*call }, on.w_values)
    };
    let mut violation = None;
    for t in [0, call.tokens as usize - 1] {
        let y = read_floats(engine, on.y, t * outputs, outputs)?;
        let x = &on.x_host[t * n..(t + 1) * n];
        let found = first_violation(&one_token, w, x, None, &y, Bound::of(kernel));
        violation = violation.or(found.map(|m| format!("token {t} of the product: {m}")));
    }
    Ok(Measurement {
        format: call.format,
        rows: call.rows as usize,
        cols: call.cols as usize,
        tokens: call.tokens,
        transposed: call.transposed,
        kernel,
        seconds,
        weight_bytes: call.sizes()?.w,
        matvec_seconds,
        violation,
    })
}

/// Measures every format on every shape and token count of `settings`,
/// handing each measurement to `each` as it is made (with the copy
/// kernel's first GB/s) and printing a line with the seconds since the
/// start before each format and direction.
pub fn run(
    engine: &Engine,
    settings: &Settings,
    each: &mut dyn FnMut(&Measurement, f64),
) -> Result<Report> {
    let start = std::time::Instant::now();
    // The copy kernel first (its second of warm-up raises the GPU clocks)
    // and again last; the faster of the two is the yardstick.
    let copy_first = copy_gbps(engine, settings.copy_floats, settings.iterations)?;
    let most = settings.tokens.iter().copied().max().unwrap_or(1) as usize;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let mut measurements = Vec::new();
    for &(rows, cols) in &settings.shapes {
        let values = weights(rows * cols);
        let x_host = weights(most * rows.max(cols));
        let x_bytes: Vec<u8> = x_host.iter().flat_map(|v| v.to_le_bytes()).collect();
        let x = upload(engine, &x_bytes)?;
        drop(x_bytes);
        let y = Buffer::new(&engine.device, 4 * (most * rows.max(cols)) as u64, false)?;
        for &format in &settings.formats {
            if cols % format.block_size() != 0 {
                // A K-quant's rows are whole super-blocks of 256 (the quick
                // shapes' are not): no such matrix to time.
                continue;
            }
            let mut bytes = vec![0u8; format.size_of(values.len())?];
            let opts = QuantizeOptions {
                threads,
                ..Default::default()
            };
            quant::quantize(format, &values, &mut bytes, &opts)?;
            let mut w_values = vec![0f32; values.len()];
            quant::dequantize(format, &bytes, &mut w_values, threads)?;
            let w_columns = if settings.backward {
                let mut t = vec![0f32; values.len()];
                for (r, row) in w_values.chunks_exact(cols).enumerate() {
                    for (c, &v) in row.iter().enumerate() {
                        t[c * rows + r] = v;
                    }
                }
                t
            } else {
                Vec::new()
            };
            let w = upload(engine, &bytes)?;
            drop(bytes);
            let on = Resident {
                w: &w,
                x: &x,
                y: &y,
                x_host: &x_host,
                w_values: &w_values,
                w_columns: &w_columns,
            };
            let directions: &[bool] = if settings.backward {
                &[false, true]
            } else {
                &[false]
            };
            for &transposed in directions {
                println!(
                    "# {} {}x{} {}: {:.1} s after the start",
                    format.name(),
                    rows,
                    cols,
                    if transposed { "dY·W" } else { "X·Wᵀ" },
                    start.elapsed().as_secs_f64()
                );
                for &tokens in &settings.tokens {
                    let call = MatmulCall {
                        format,
                        rows: rows as u64,
                        cols: cols as u64,
                        tokens,
                        transposed,
                    };
                    let variants = settings.variants.as_deref();
                    for kernel in kernels_to_time(engine, &call, variants)? {
                        let measured = match measure_one(engine, settings, &call, &on, kernel) {
                            Ok(m) => m,
                            // A product that fails to run is reported (and
                            // fails the command), not fatal: the others are
                            // still timed and the table printed.
                            Err(e) => Measurement {
                                format,
                                rows,
                                cols,
                                tokens,
                                transposed,
                                kernel,
                                seconds: f64::NAN,
                                weight_bytes: call.sizes()?.w,
                                matvec_seconds: None,
                                violation: Some(format!("failed to run: {e}")),
                            },
                        };
                        each(&measured, copy_first);
                        measurements.push(measured);
                    }
                }
            }
        }
    }
    let copy_last = copy_gbps(engine, settings.copy_floats, settings.iterations)?;
    Ok(Report {
        copy_gbps: copy_first.max(copy_last),
        measurements,
    })
}
