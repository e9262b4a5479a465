//! CPU quantization kernels: quantize, dequantize and fake-quantize for every
//! [`Format`], with three rounding modes, and the error metrics.
//!
//! Contract shared by every function here (the C ABI and the Vulkan twins rely on it):
//! - `dst` must hold at least the needed size; exactly that many elements/bytes
//!   are written, and on any error nothing at all is written.
//! - Input is checked for NaN/±Inf (and values out of the target format's range)
//!   before anything is written, unless [`NonFinite::Saturate`] is asked for.
//! - The result depends only on the input and the options, never on `threads`
//!   or on which SIMD path ran.

pub(crate) mod f32_scores;
pub(crate) mod int_rank;
pub(crate) mod int_search;
pub(crate) mod int_search_iq4_nl;
pub(crate) mod int_search_q4_1;
#[cfg(target_arch = "x86_64")]
mod int_search_x86;
pub mod kquant;
pub(crate) mod kquant_search;
pub mod limits;
pub mod metrics;
pub mod rng;
pub mod scalar;
pub(crate) mod search;
#[cfg(target_arch = "x86_64")]
pub(crate) mod simd_x86;

pub use metrics::{ErrorMetrics, measure};

use crate::cpu_kernels::CpuKernels;
use crate::error::{Error, Result};
use crate::format::{Format, QK_K};

/// The kernels nearest-rounding quantize and dequantize run on this CPU:
/// "avx2+f16c" when both were detected at run time, else "portable" (the same
/// bytes either way; for bug reports and benchmarks).
pub fn cpu_kernels() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if simd_x86::available() {
        return "avx2+f16c";
    }
    "portable"
}

/// How values are rounded to the target format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// Round to nearest, byte-identical with ggml's reference quantizers.
    Nearest,
    /// Search each block's scale for the lowest (importance-weighted) squared error.
    ErrorMinimising,
    /// Unbiased stochastic rounding; the same seed gives the same bytes.
    Stochastic { seed: u64 },
}

/// What to do with NaN, ±Inf and values beyond the target format's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonFinite {
    /// Report [`crate::ErrorKind::NonFinite`] with the first bad index; write nothing.
    Reject,
    /// NaN becomes 0; ±Inf and out-of-range values become the largest finite value.
    Saturate,
}

/// Options for [`quantize`] and [`fake_quantize`].
#[derive(Debug, Clone, Copy)]
pub struct QuantizeOptions<'a> {
    pub rounding: Rounding,
    pub non_finite: NonFinite,
    /// Per-column importance for [`Rounding::ErrorMinimising`]: element `i` of the
    /// input is weighted by `importance[(first_index + i) % importance.len()]`,
    /// so a slice is weighted as it is inside the whole tensor. Its length must
    /// be a positive multiple of the block size that divides the input length.
    pub importance: Option<&'a [f32]>,
    /// Worker threads; 1 runs on the calling thread only.
    pub threads: usize,
    /// Index of `src[0]` within the whole tensor, so that stochastic and
    /// error-minimising rounding of a slice give the same bytes as rounding the
    /// whole tensor, and a rejected element is reported by its index in the
    /// whole tensor. `first_index + src.len()` must not exceed `i64::MAX`.
    pub first_index: u64,
}

impl Default for QuantizeOptions<'_> {
    fn default() -> Self {
        QuantizeOptions {
            rounding: Rounding::Nearest,
            non_finite: NonFinite::Reject,
            importance: None,
            threads: 1,
            first_index: 0,
        }
    }
}

/// Inputs smaller than this per thread are not worth a thread.
const MIN_ELEMENTS_PER_THREAD: usize = 1 << 16;
/// Saturated input is clamped into a buffer of this many elements at a time.
const SATURATE_CHUNK: usize = 4096;

/// [`limits::check`] with the scan split over the threads the work will
/// use: each scans its part, and the first bad element of all is the one
/// reported (or saturation asked for), as a scan on one thread finds it.
fn check_range(format: Format, src: &[f32], opts: &QuantizeOptions) -> Result<bool> {
    let limit = limits::limit(format);
    let threads = opts
        .threads
        .max(1)
        .min(src.len() / MIN_ELEMENTS_PER_THREAD)
        .max(1);
    let first_bad = if threads == 1 {
        limits::first_out_of_range(src, limit)
    } else {
        let per_thread = src.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let scans: Vec<_> = src
                .chunks(per_thread)
                .enumerate()
                .map(|(k, part)| {
                    scope.spawn(move || {
                        limits::first_out_of_range(part, limit).map(|i| k * per_thread + i)
                    })
                })
                .collect();
            scans
                .into_iter()
                .filter_map(|scan| scan.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .min()
        })
    };
    match first_bad {
        None => Ok(false),
        // The scan from the bad element finds it first: the error (or the
        // saturation) is the one a whole scan gives, index and all.
        Some(i) => limits::check(
            format,
            &src[i..],
            opts.non_finite,
            opts.first_index + i as u64,
        ),
    }
}

/// Quantizes `src` into `format`, writing `format.size_of(src.len())` bytes of `dst`.
pub fn quantize(format: Format, src: &[f32], dst: &mut [u8], opts: &QuantizeOptions) -> Result<()> {
    let needed = format.size_of(src.len())?;
    Error::ensure_room("destination", "bytes", needed, dst.len())?;
    check_importance(format, src.len(), opts.importance)?;
    check_first_index(opts.first_index, src.len())?;
    let saturate = check_range(format, src, opts)?;
    let dst = &mut dst[..needed];
    let block = format.block_size();
    let bytes_per_block = format.block_bytes();
    split_work(
        src.len() / block,
        opts.threads,
        dst,
        bytes_per_block,
        |first_block, out| {
            let begin = first_block * block;
            let input = &src[begin..begin + out.len() / bytes_per_block * block];
            let first = opts.first_index + begin as u64;
            if saturate {
                quantize_saturated(format, input, out, opts, first);
            } else {
                quantize_clean(format, input, out, opts, first);
            }
        },
    );
    Ok(())
}

/// Dequantizes `src` (whole blocks of `format`) into `dst` as f32.
pub fn dequantize(format: Format, src: &[u8], dst: &mut [f32], threads: usize) -> Result<()> {
    let n = format.count_in(src.len())?;
    Error::ensure_room("destination", "floats", n, dst.len())?;
    let block = format.block_size();
    let bytes_per_block = format.block_bytes();
    split_work(
        n / block,
        threads,
        &mut dst[..n],
        block,
        |first_block, out| {
            let begin = first_block * bytes_per_block;
            let input = &src[begin..begin + out.len() / block * bytes_per_block];
            dequantize_range(format, input, out);
        },
    );
    Ok(())
}

/// Dequantizes `src` (whole blocks of `format`) into `dst` as IEEE binary16 bits
/// (each value rounded to nearest even from its f32 dequantization).
pub fn dequantize_to_f16(
    format: Format,
    src: &[u8],
    dst: &mut [u16],
    threads: usize,
) -> Result<()> {
    let n = format.count_in(src.len())?;
    Error::ensure_room("destination", "f16 values", n, dst.len())?;
    let block = format.block_size();
    let bytes_per_block = format.block_bytes();
    split_work(
        n / block,
        threads,
        &mut dst[..n],
        block,
        |first_block, out| {
            let begin = first_block * bytes_per_block;
            let mut values = [0.0f32; SATURATE_CHUNK];
            for (i, chunk) in out.chunks_mut(SATURATE_CHUNK).enumerate() {
                let from = begin + i * SATURATE_CHUNK / block * bytes_per_block;
                let input = &src[from..from + chunk.len() / block * bytes_per_block];
                dequantize_range(format, input, &mut values[..chunk.len()]);
                for (h, &v) in chunk.iter_mut().zip(&values) {
                    *h = scalar::f16_bits(v);
                }
            }
        },
    );
    Ok(())
}

/// Quantizes then dequantizes in one pass: `dst` receives what a round trip
/// through `format` gives, without the intermediate buffer.
pub fn fake_quantize(
    format: Format,
    src: &[f32],
    dst: &mut [f32],
    opts: &QuantizeOptions,
) -> Result<()> {
    format.check_count(src.len())?;
    Error::ensure_room("destination", "floats", src.len(), dst.len())?;
    check_importance(format, src.len(), opts.importance)?;
    check_first_index(opts.first_index, src.len())?;
    let saturate = check_range(format, src, opts)?;
    let block = format.block_size();
    let n = src.len();
    split_work(
        n / block,
        opts.threads,
        &mut dst[..n],
        block,
        |first_block, out| {
            let begin = first_block * block;
            let mut packed = [0u8; 4 * SATURATE_CHUNK];
            for (i, chunk) in out.chunks_mut(SATURATE_CHUNK).enumerate() {
                let from = begin + i * SATURATE_CHUNK;
                let input = &src[from..from + chunk.len()];
                let bytes = chunk.len() / block * format.block_bytes();
                let first = opts.first_index + from as u64;
                if saturate {
                    quantize_saturated(format, input, &mut packed[..bytes], opts, first);
                } else {
                    quantize_clean(format, input, &mut packed[..bytes], opts, first);
                }
                dequantize_range(format, &packed[..bytes], chunk);
            }
        },
    );
    Ok(())
}

/// Checks the importance vector of error-minimising rounding.
fn check_importance(format: Format, n: usize, importance: Option<&[f32]>) -> Result<()> {
    let Some(w) = importance else { return Ok(()) };
    let len = w.len();
    if len == 0 || len % format.block_size() != 0 || n % len != 0 {
        return Err(Error::invalid(format!(
            "importance has {len} values; it must be a positive multiple of the block size ({}) that divides the element count {n}",
            format.block_size()
        )));
    }
    if let Some(i) = w.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
        return Err(Error::invalid(format!(
            "importance[{i}] = {} is not a finite value >= 0",
            w[i]
        )));
    }
    Ok(())
}

/// Ok when every element's index in the whole tensor, `first_index + i`,
/// fits in an `i64` (what nyxq_last_error_index reports).
pub fn check_first_index(first_index: u64, n: usize) -> Result<()> {
    if first_index
        .checked_add(n as u64)
        .is_none_or(|end| end > i64::MAX as u64)
    {
        return Err(Error::invalid(format!(
            "first_index {first_index} + {n} elements is more than the limit of {} (i64::MAX)",
            i64::MAX
        )));
    }
    Ok(())
}

/// Runs `work(first_unit, output_slice)` over `units` units of `out` (each
/// `unit_len` long), split on unit boundaries over up to `threads` threads.
fn split_work<T: Send>(
    units: usize,
    threads: usize,
    out: &mut [T],
    unit_len: usize,
    work: impl Fn(usize, &mut [T]) + Sync,
) {
    let elements = out.len();
    let threads = threads
        .max(1)
        .min(elements / MIN_ELEMENTS_PER_THREAD)
        .max(1);
    if threads == 1 || units < 2 {
        work(0, out);
        return;
    }
    let per_thread = units.div_ceil(threads);
    // A worker's panic is re-raised here with its own message, and stays as
    // quiet as it would have been on this thread.
    let catching = crate::quiet_panic::is_catching();
    std::thread::scope(|scope| {
        let mut rest = out;
        let mut first_unit = 0;
        let work = &work;
        let mut workers = Vec::new();
        while !rest.is_empty() {
            let take = (per_thread * unit_len).min(rest.len());
            let (mine, others) = rest.split_at_mut(take);
            let start = first_unit;
            if others.is_empty() {
                work(start, mine);
            } else {
                workers
                    .push(scope.spawn(move || {
                        crate::quiet_panic::inherit(catching, || work(start, mine))
                    }));
            }
            rest = others;
            first_unit += per_thread;
        }
        for worker in workers {
            if let Err(payload) = worker.join() {
                std::panic::resume_unwind(payload);
            }
        }
    });
}

/// Quantizes input already known to be in range.
fn quantize_clean(format: Format, src: &[f32], dst: &mut [u8], opts: &QuantizeOptions, first: u64) {
    let kernels = CpuKernels::of(format);
    match (opts.rounding, kernels.error_minimising) {
        (Rounding::Stochastic { seed }, _) => (kernels.stochastic)(src, dst, seed, first),
        (Rounding::ErrorMinimising, Some(search)) => {
            quantize_error_minimising(format, search, src, dst, opts.importance, first)
        }
        // Without a search (a per-element format), nearest is optimal.
        (Rounding::Nearest | Rounding::ErrorMinimising, _) => quantize_nearest(kernels, src, dst),
    }
}

/// Quantizes input that needs clamping, a bounded chunk at a time.
fn quantize_saturated(
    format: Format,
    src: &[f32],
    dst: &mut [u8],
    opts: &QuantizeOptions,
    first: u64,
) {
    let bound = limits::saturation_bound(format);
    let bytes_per_chunk = format
        .size_of(SATURATE_CHUNK)
        .expect("a whole number of blocks");
    let mut clamped = [0.0f32; SATURATE_CHUNK];
    for (i, (input, output)) in src
        .chunks(SATURATE_CHUNK)
        .zip(dst.chunks_mut(bytes_per_chunk))
        .enumerate()
    {
        limits::saturate_into(input, &mut clamped, bound);
        quantize_clean(
            format,
            &clamped[..input.len()],
            output,
            opts,
            first + (i * SATURATE_CHUNK) as u64,
        );
    }
}

/// Nearest rounding: the format's SIMD kernel where the CPU runs it, else the
/// portable one (the same bytes).
fn quantize_nearest(kernels: &CpuKernels, src: &[f32], dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if simd_x86::quantize(kernels.simd.nearest, kernels.format, src, dst) {
        return;
    }
    (kernels.nearest)(src, dst);
}

fn quantize_error_minimising(
    format: Format,
    search: crate::cpu_kernels::Search,
    src: &[f32],
    dst: &mut [u8],
    importance: Option<&[f32]>,
    first: u64,
) {
    let (block, bytes) = (format.block_size(), format.block_bytes());
    let mut buffer = [1.0f32; QK_K];
    let weights = &mut buffer[..block];
    for (b, (x, out)) in src
        .chunks_exact(block)
        .zip(dst.chunks_exact_mut(bytes))
        .enumerate()
    {
        if let Some(w) = importance {
            // The block may start anywhere in `w` (first_index need not be a
            // multiple of the block size) and so wrap around its end.
            let start = (first + (b * block) as u64) % w.len() as u64;
            for (j, weight) in weights.iter_mut().enumerate() {
                *weight = w[(start as usize + j) % w.len()];
            }
        }
        search(x, weights, out);
    }
}

/// Dequantizes with the format's SIMD kernel where the CPU runs it, else the
/// portable one (the same values).
fn dequantize_range(format: Format, src: &[u8], dst: &mut [f32]) {
    let kernels = CpuKernels::of(format);
    #[cfg(target_arch = "x86_64")]
    if simd_x86::dequantize(kernels.simd.dequantize, format, src, dst) {
        return;
    }
    (kernels.dequantize)(src, dst);
}

#[cfg(test)]
mod tests;
