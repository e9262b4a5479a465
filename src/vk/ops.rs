//! Submit-and-wait quantize, dequantize and fake-quantize of host data on the
//! device, split into dispatches so that no descriptor range exceeds
//! maxStorageBufferRange and no buffer exceeds the allocation limit.

use super::engine::Engine;
use super::family::ConvertPush;
use super::jobs::Job;
use super::memory::{Buffer, MAX_ALLOCATION};
use super::shaders::{KernelId, Op};
use crate::error::{Error, Result};
use crate::format::{Format, VulkanFamily};
use crate::quant::Rounding;

/// Elements per dispatch are a multiple of this (whole units of every kernel,
/// and output offsets aligned to minStorageBufferOffsetAlignment <= 256).
const CHUNK_QUANTUM: usize = 32 * 1024;
/// Upper bound of elements per dispatch (64 MiB of f32).
const MAX_CHUNK: usize = 1 << 24;

/// Elements per dispatch on this device.
pub fn chunk_elements(engine: &Engine, format: Format) -> usize {
    let range = u64::from(engine.device.info.max_storage_buffer_range).min(MAX_ALLOCATION);
    // The widest side of every kernel is the f32 side (4 bytes per element).
    let by_range = (range / 4) as usize;
    let n = by_range.min(MAX_CHUNK);
    let quantum = CHUNK_QUANTUM.max(format.block_size());
    (n / quantum * quantum).max(quantum)
}

/// `bytes` rounded up to whole 32-bit words (what a kernel binds).
pub fn words(bytes: usize) -> u64 {
    bytes.div_ceil(4) as u64 * 4
}

/// Runs `kernel` over `n` elements whose input is `src` bytes and output
/// `dst` bytes, chunk by chunk through mapped buffers.
#[allow(clippy::too_many_arguments)]
fn run(
    engine: &Engine,
    kernel: KernelId,
    format: Format,
    n: usize,
    src: &[u8],
    in_bytes_per: (usize, usize),
    dst: &mut [u8],
    out_bytes_per: (usize, usize),
    rounding: Rounding,
) -> Result<()> {
    format.require_vulkan(VulkanFamily::Conversions)?;
    let chunk = chunk_elements(engine, format);
    let size_of = bytes_for;
    let max_in = words(size_of(in_bytes_per, chunk.min(n)));
    let max_out = words(size_of(out_bytes_per, chunk.min(n)));
    let mut inb = Buffer::new(&engine.device, max_in, true)?;
    let mut outb = Buffer::new(&engine.device, max_out, true)?;
    let mut done = 0usize;
    while done < n {
        let k = chunk.min(n - done);
        let in_off = size_of(in_bytes_per, done);
        let in_len = size_of(in_bytes_per, k);
        let out_off = size_of(out_bytes_per, done);
        let out_len = size_of(out_bytes_per, k);
        inb.write(&src[in_off..in_off + in_len]);
        if out_len % 4 != 0 {
            // Partial last word: the kernel keeps the bytes outside the output.
            let mut tail = vec![0u8; out_len.div_ceil(4) * 4];
            tail[..out_len].copy_from_slice(&dst[out_off..out_off + out_len]);
            outb.write(&tail);
        }
        let job = Job {
            kernel,
            src: (inb.buffer, 0, words(in_len)),
            dst: (outb.buffer, 0, words(out_len)),
            push: ConvertPush::new(k, done as u64, rounding)?,
        };
        engine.submit_and_wait(&[job])?;
        outb.read(&mut dst[out_off..out_off + out_len]);
        done += k;
    }
    Ok(())
}

fn f32_bytes(src: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and any byte is a valid u8; the length is
    // the slice's size in bytes.
    unsafe { std::slice::from_raw_parts(src.as_ptr().cast::<u8>(), size_of_val(src)) }
}

fn f32_bytes_mut(dst: &mut [f32]) -> &mut [u8] {
    // SAFETY: as f32_bytes; every byte pattern is a valid f32.
    unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<u8>(), size_of_val(dst)) }
}

fn u16_bytes_mut(dst: &mut [u16]) -> &mut [u8] {
    // SAFETY: as f32_bytes; every byte pattern is a valid u16.
    unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<u8>(), size_of_val(dst)) }
}

fn ratio(format: Format) -> (usize, usize) {
    (format.block_bytes(), format.block_size())
}

/// Bytes of `k` elements on a side that stores `per.0` bytes per `per.1` elements.
pub fn bytes_for(per: (usize, usize), k: usize) -> usize {
    k / per.1 * per.0 + (k % per.1) * per.0 / per.1
}

/// (input, output) bytes per elements of `op` on `format` (for the
/// products: of the weights, and of the f32 results).
pub fn sides(op: Op, format: Format) -> ((usize, usize), (usize, usize)) {
    match op {
        Op::Quantize => ((4, 1), ratio(format)),
        Op::Dequantize | Op::Matmul | Op::MatmulTransposed => (ratio(format), (4, 1)),
        Op::DequantizeF16 => (ratio(format), (2, 1)),
        Op::FakeQuantize => ((4, 1), (4, 1)),
    }
}

/// Checks the input like the CPU twin (non-finite and out-of-range values are
/// rejected; saturation runs on the CPU).
fn check_input(format: Format, src: &[f32]) -> Result<()> {
    format.check_count(src.len())?;
    crate::quant::limits::check(format, src, crate::quant::NonFinite::Reject, 0).map(|_| ())
}

/// Quantizes `src` into `dst` (`format.size_of(n)` bytes) on the device.
pub fn quantize(
    engine: &Engine,
    format: Format,
    src: &[f32],
    dst: &mut [u8],
    rounding: Rounding,
) -> Result<()> {
    check_input(format, src)?;
    let needed = format.size_of(src.len())?;
    Error::ensure_room("destination", "bytes", needed, dst.len())?;
    run(
        engine,
        engine.kernel(Op::Quantize, format)?,
        format,
        src.len(),
        f32_bytes(src),
        (4, 1),
        &mut dst[..needed],
        ratio(format),
        rounding,
    )
}

/// Dequantizes whole blocks of `format` in `src` into `dst` as f32.
pub fn dequantize(engine: &Engine, format: Format, src: &[u8], dst: &mut [f32]) -> Result<()> {
    let n = format.count_in(src.len())?;
    Error::ensure_room("destination", "floats", n, dst.len())?;
    run(
        engine,
        engine.kernel(Op::Dequantize, format)?,
        format,
        n,
        src,
        ratio(format),
        f32_bytes_mut(&mut dst[..n]),
        (4, 1),
        Rounding::Nearest,
    )
}

/// Dequantizes whole blocks of `format` into binary16 bits.
pub fn dequantize_to_f16(
    engine: &Engine,
    format: Format,
    src: &[u8],
    dst: &mut [u16],
) -> Result<()> {
    let n = format.count_in(src.len())?;
    Error::ensure_room("destination", "f16 values", n, dst.len())?;
    if format == Format::F32 {
        return Err(Error::unsupported("F32 -> F16 is a quantize to F16"));
    }
    run(
        engine,
        engine.kernel(Op::DequantizeF16, format)?,
        format,
        n,
        src,
        ratio(format),
        u16_bytes_mut(&mut dst[..n]),
        (2, 1),
        Rounding::Nearest,
    )
}

/// Quantize-then-dequantize in one pass on the device.
pub fn fake_quantize(
    engine: &Engine,
    format: Format,
    src: &[f32],
    dst: &mut [f32],
    rounding: Rounding,
) -> Result<()> {
    check_input(format, src)?;
    Error::ensure_room("destination", "floats", src.len(), dst.len())?;
    let n = src.len();
    run(
        engine,
        engine.kernel(Op::FakeQuantize, format)?,
        format,
        n,
        f32_bytes(src),
        (4, 1),
        f32_bytes_mut(&mut dst[..n]),
        (4, 1),
        rounding,
    )
}
