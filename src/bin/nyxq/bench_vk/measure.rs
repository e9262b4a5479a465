//! The measurements of `nyxq bench-vk`: GB/s of the copy kernel and of
//! every quantize/dequantize kernel on device-resident data, timed with GPU
//! timestamps (median of several runs).

use nyxq::Result;
use nyxq::format::{Format, VulkanFamily};
use nyxq::vk::Engine;
use nyxq::vk::family::ConvertPush;
use nyxq::vk::jobs::Job;
use nyxq::vk::memory::Buffer;
use nyxq::vk::ops::chunk_elements;
use nyxq::vk::shaders::{KernelId, Op, compatible_kernel, experimental_kernels, fast_kernels};

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub kernel: KernelId,
    pub bytes_moved: u64,
    pub seconds: f64,
    /// For a variant other than the first of its op and format: whether its
    /// output over the first CHECKED_ELEMENTS equals the first variant's.
    pub same_output: Option<bool>,
}

/// Elements over which each variant's output is compared with the first
/// variant's (8 Mi f32: several dispatches' worth of workgroups, small
/// enough to read back quickly).
const CHECKED_ELEMENTS: usize = 1 << 23;

impl Row {
    pub fn gbps(&self) -> f64 {
        self.bytes_moved as f64 / self.seconds / 1e9
    }
}

/// The jobs that run `kernel` over n elements between two buffers, split by
/// the device's limits.
#[allow(clippy::too_many_arguments)]
fn jobs(
    engine: &Engine,
    kernel: KernelId,
    format: Format,
    n: usize,
    src: &Buffer,
    src_per: (u64, u64),
    dst: &Buffer,
    dst_per: (u64, u64),
) -> Vec<Job> {
    let chunk = chunk_elements(engine, format);
    let at = |per: (u64, u64), k: usize| k as u64 / per.1 * per.0;
    let words = |b: u64| b.div_ceil(4) * 4;
    let mut out = Vec::new();
    let mut done = 0;
    while done < n {
        let k = chunk.min(n - done);
        out.push(Job {
            kernel,
            src: (src.buffer, at(src_per, done), words(at(src_per, k))),
            dst: (dst.buffer, at(dst_per, done), words(at(dst_per, k))),
            push: ConvertPush {
                n_elements: k as u32,
                first_lo: done as u32,
                ..Default::default()
            },
        });
        done += k;
    }
    out
}

/// The median of `iterations` GPU times that `timed` returns, after at least
/// 2 untimed runs and 0.2 s of them.
pub fn median_seconds(iterations: usize, mut timed: impl FnMut() -> Result<f64>) -> Result<f64> {
    // At least 2 untimed runs and a fifth of a second of them: the GPU's
    // clocks fall while the host prepares the next case, and ramp up again
    // only under load.
    let warm = std::time::Instant::now();
    let mut untimed = 0;
    while untimed < 2 || warm.elapsed().as_secs_f64() < 0.2 {
        timed()?;
        untimed += 1;
    }
    let mut t = (0..iterations.max(1))
        .map(|_| timed())
        .collect::<Result<Vec<f64>>>()?;
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// The bandwidth yardstick: the copy kernel.
const COPY: KernelId = KernelId::COPY_F32_F32;

/// The jobs of the copy kernel over `n` f32 from `src` to `dst`.
fn copy_jobs(engine: &Engine, n: usize, src: &Buffer, dst: &Buffer) -> Vec<Job> {
    let f32_per = (4u64, 1u64);
    jobs(engine, COPY, Format::F32, n, src, f32_per, dst, f32_per)
}

/// Runs `jobs` for a second: GPU clocks ramp up under load, so what is
/// timed next is not timed at idle clocks.
pub fn warm_up(engine: &Engine, jobs: &[Job]) -> Result<()> {
    let warm = std::time::Instant::now();
    while warm.elapsed().as_secs_f64() < 1.0 {
        engine.submit_and_wait(jobs)?;
    }
    Ok(())
}

/// The variants of `op` on `format` to time: the one in use, then the
/// compatible one where that differs, then the others this device can run
/// (a fast one not chosen, measurement-only `_u<N>` ones built with
/// NYXQ_SHADER_EXPERIMENTS=1).
fn variants(engine: &Engine, op: Op, format: Format) -> Result<Vec<KernelId>> {
    let mut out = vec![engine.kernel(op, format)?];
    let others = compatible_kernel(op, format)
        .into_iter()
        .chain(fast_kernels(op, format).iter().copied())
        .chain(experimental_kernels(op, format).iter().copied());
    for kernel in others {
        // A fast variant (`_rte`, `_s16`) needs features the device may not
        // have.
        if !out.contains(&kernel) && engine.variant_supported(kernel) {
            out.push(kernel);
        }
    }
    Ok(out)
}

/// GB/s (read + write) of the copy kernel over `n` f32 in two fresh device
/// buffers, after a second of warm-up.
pub fn copy_gbps(engine: &Engine, n: usize, iterations: usize) -> Result<f64> {
    let src = Buffer::new(&engine.device, 4 * n as u64, false)?;
    let dst = Buffer::new(&engine.device, 4 * n as u64, false)?;
    let jobs = copy_jobs(engine, n, &src, &dst);
    warm_up(engine, &jobs)?;
    let seconds = median_seconds(iterations, || engine.timed(&jobs))?;
    Ok(8.0 * n as f64 / seconds / 1e9)
}

/// The copy kernel's row over `n` f32 in two fresh device buffers, after a
/// second of warm-up.
pub fn copy_row(engine: &Engine, n: usize, iterations: usize) -> Result<Row> {
    let gbps = copy_gbps(engine, n, iterations)?;
    let bytes_moved = 8 * n as u64;
    Ok(Row {
        kernel: COPY,
        bytes_moved,
        seconds: bytes_moved as f64 / gbps / 1e9,
        same_output: None,
    })
}

/// Benchmarks on `n` f32 elements (a multiple of 32); `iterations` timed
/// runs after at least 0.2 s of untimed runs per kernel.
pub fn run(engine: &Engine, n: usize, iterations: usize) -> Result<Vec<Row>> {
    let bytes = (n * 4) as u64;
    let f32_per = (4u64, 1u64);
    let mut staging = Buffer::new(&engine.device, bytes, true)?;
    let data: Vec<u8> = (0..n)
        .flat_map(|i| ((((i * 2_654_435_761) % 1_000_003) as f32 - 500_000.0) * 1e-4).to_le_bytes())
        .collect();
    staging.write(&data);
    drop(data);
    let src = Buffer::new(&engine.device, bytes, false)?;
    let dst = Buffer::new(&engine.device, bytes, false)?;
    engine.copy(staging.buffer, src.buffer, bytes)?;
    drop(staging);
    let time = |jobs: &[Job]| median_seconds(iterations, || engine.timed(jobs));
    let copy_jobs = copy_jobs(engine, n, &src, &dst);
    warm_up(engine, &copy_jobs)?;
    let copy_first = time(&copy_jobs)?;
    let mut rows = vec![Row {
        kernel: COPY,
        bytes_moved: 2 * bytes,
        seconds: copy_first,
        same_output: None,
    }];
    let checked = n.min(CHECKED_ELEMENTS);
    let readback = Buffer::new(&engine.device, 4 * checked as u64, true)?;
    for format in Format::with_vulkan(VulkanFamily::Conversions) {
        let qbytes = format.size_of(n)? as u64;
        let q = Buffer::new(&engine.device, qbytes.div_ceil(4) * 4, false)?;
        let qper = (format.block_bytes() as u64, format.block_size() as u64);
        for op in Op::CONVERSIONS {
            let (from, from_per, to, to_per, bytes_moved) = match op {
                Op::Quantize => (&src, f32_per, &q, qper, bytes + qbytes),
                Op::Dequantize => (&q, qper, &dst, f32_per, bytes + qbytes),
                Op::DequantizeF16 => (&q, qper, &dst, (2, 1), bytes / 2 + qbytes),
                Op::FakeQuantize => (&src, f32_per, &dst, f32_per, 2 * bytes),
                // Not conversions: `nyxq bench-vk-matmul` times them.
                Op::Matmul | Op::MatmulTransposed => continue,
            };
            let mut first_output = None;
            for k in variants(engine, op, format)? {
                let seconds = time(&jobs(engine, k, format, n, from, from_per, to, to_per))?;
                // The output over the first `checked` elements, with the
                // destination overwritten by the input first, so that bytes a
                // variant fails to write show.
                let out_bytes = (checked as u64).div_ceil(to_per.1) * to_per.0;
                engine.copy(src.buffer, to.buffer, out_bytes.div_ceil(4) * 4)?;
                engine.submit_and_wait(&jobs(
                    engine, k, format, checked, from, from_per, to, to_per,
                ))?;
                engine.copy(to.buffer, readback.buffer, out_bytes)?;
                let output = readback.mapped()[..out_bytes as usize].to_vec();
                let same_output = first_output.as_ref().map(|first| *first == output);
                first_output.get_or_insert(output);
                rows.push(Row {
                    kernel: k,
                    bytes_moved,
                    seconds,
                    same_output,
                });
            }
        }
    }
    // The yardstick is the faster of the copies timed first and last, so a
    // clock change during the run cannot flatter the ratios.
    let copy_last = time(&copy_jobs)?;
    rows[0].seconds = copy_first.min(copy_last);
    Ok(rows)
}
