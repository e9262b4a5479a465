//! Format descriptions and sizes.

use super::guard::guard;
use super::ptr;
use super::status::NyxqStatus;
use crate::error::Error;
use crate::format::{FORMATS, Format};
use std::ffi::c_char;

/// Storage formats (DESIGN.md gives the byte layouts, identical to ggml's).
#[repr(i32)]
// ggml's names: Q4_K beside Q4_0.
#[allow(non_camel_case_types)]
pub enum NyxqFormat {
    /// IEEE binary32.
    NyxqFormatF32 = 0,
    /// IEEE binary16, round to nearest even.
    NyxqFormatF16 = 1,
    /// bfloat16: the top 16 bits of binary32, round to nearest even.
    NyxqFormatBf16 = 2,
    /// INT8 blocks of 32: f16 scale d, int8 q[32]; x = d*q (8.5 bits/weight).
    NyxqFormatQ8_0 = 3,
    /// INT4 blocks of 32: f16 d, 16 bytes of nibbles; x = d*(q-8) (4.5 bits/weight).
    NyxqFormatQ4_0 = 4,
    /// INT4 blocks of 32: f16 d, f16 m, 16 bytes of nibbles; x = d*q + m (5 bits/weight).
    NyxqFormatQ4_1 = 5,
    /// INT5 blocks of 32: f16 d, 4 bytes of fifth bits, 16 bytes of nibbles;
    /// x = d*(q-16) (5.5 bits/weight).
    NyxqFormatQ5_0 = 6,
    /// Non-linear INT4 blocks of 32 (ggml's IQ4_NL): f16 d, 16 bytes of
    /// nibbles; x = d*v[q] with v = {-127, -104, -83, -65, -49, -35, -22, -10,
    /// 1, 13, 25, 38, 53, 69, 89, 113} (4.5 bits/weight).
    NyxqFormatIq4Nl = 7,
    /// INT4 super-blocks of 256: f16 d, f16 dmin, 12 bytes of 6-bit sub-block
    /// scales and minimums, 128 bytes of nibbles; x = d*sc*q - dmin*m (4.5
    /// bits/weight; ggml's Q4_K). Element counts are multiples of 256.
    NyxqFormatQ4_K = 8,
    /// INT5 super-blocks of 256: as Q4_K with 32 bytes of fifth bits (5.5
    /// bits/weight; ggml's Q5_K).
    NyxqFormatQ5_K = 9,
    /// INT6 super-blocks of 256: 128 bytes of low nibbles, 64 of high bit
    /// pairs, 16 int8 sub-block scales, f16 d; x = d*sc*(q-32) (6.5625
    /// bits/weight; ggml's Q6_K).
    NyxqFormatQ6_K = 10,
}

/// The C value of each format: an exhaustive match, so a format without a
/// NyxqFormat value does not compile.
const fn c_value(format: Format) -> NyxqFormat {
    match format {
        Format::F32 => NyxqFormat::NyxqFormatF32,
        Format::F16 => NyxqFormat::NyxqFormatF16,
        Format::BF16 => NyxqFormat::NyxqFormatBf16,
        Format::Q8_0 => NyxqFormat::NyxqFormatQ8_0,
        Format::Q4_0 => NyxqFormat::NyxqFormatQ4_0,
        Format::Q4_1 => NyxqFormat::NyxqFormatQ4_1,
        Format::Q5_0 => NyxqFormat::NyxqFormatQ5_0,
        Format::IQ4_NL => NyxqFormat::NyxqFormatIq4Nl,
        Format::Q4_K => NyxqFormat::NyxqFormatQ4_K,
        Format::Q5_K => NyxqFormat::NyxqFormatQ5_K,
        Format::Q6_K => NyxqFormat::NyxqFormatQ6_K,
    }
}

// Every format's NyxqFormat value is its Rust discriminant (what format_arg
// reads back through the descriptor table).
const _: () = {
    let mut row = 0;
    while row < FORMATS.len() {
        let format = FORMATS[row].format;
        assert!(c_value(format) as i32 == format as i32);
        row += 1;
    }
};

/// A format's description (nyxq_format_info).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NyxqFormatInfo {
    /// Canonical name ("Q4_0"); static, never free it.
    pub name: *const c_char,
    /// Precision level ("FP32", "FP16", "BF16", "INT8", "INT4", "INT5",
    /// "INT6"); static.
    pub precision_level: *const c_char,
    /// Elements per block (1 for F32, F16, BF16; 256 for the K-quants).
    pub block_size: u32,
    /// Bytes per block, scales included.
    pub block_bytes: u32,
    /// Storage bits per weight, scales included.
    pub bits_per_weight: f64,
}

pub(crate) fn format_arg(format: i32) -> crate::Result<Format> {
    Format::from_raw(format)
}

/// Describes a format.
///
/// Errors: NYXQ_ERROR_INVALID_ARGUMENT (unknown format), NYXQ_ERROR_NULL_POINTER.
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_format_info(format: i32, info_out: *mut NyxqFormatInfo) -> NyxqStatus {
    guard(|| {
        let format = format_arg(format)?;
        let out = ptr::out(info_out, "info_out")?;
        let spec = format.spec();
        let info = NyxqFormatInfo {
            name: spec.name.as_ptr(),
            precision_level: spec.precision_level.as_ptr(),
            block_size: spec.block_size as u32,
            block_bytes: spec.block_bytes as u32,
            bits_per_weight: spec.bits_per_weight,
        };
        // SAFETY: info_out checked non-NULL; points to a NyxqFormatInfo per the contract.
        unsafe { out.write(info) };
        Ok(())
    })
}

/// Bytes that `n` elements take in `format`, scales included.
///
/// Errors: NYXQ_ERROR_INVALID_ARGUMENT (unknown format, or `n` not a multiple
/// of the block size; the message names the next valid count),
/// NYXQ_ERROR_SIZE_OVERFLOW (the bytes exceed PTRDIFF_MAX, the most one
/// object may take, or `n` is not a multiple of the block size and the next
/// multiple does not fit in size_t),
/// NYXQ_ERROR_NULL_POINTER. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_quantized_size(format: i32, n: usize, bytes_out: *mut usize) -> NyxqStatus {
    guard(|| {
        let format = format_arg(format)?;
        let out = ptr::out(bytes_out, "bytes_out")?;
        let bytes = format.size_of(n)?;
        // SAFETY: bytes_out checked non-NULL; points to a size_t per the contract.
        unsafe { out.write(bytes) };
        Ok(())
    })
}

/// Bytes of a device buffer range that holds `n` elements in `format`: the
/// nyxq_quantized_size rounded up to whole 32-bit words, which is what every
/// NyxqVkBufferRange of a recorded kernel must cover (Q4_0, Q4_1, Q5_0 and
/// IQ4_NL blocks are not a multiple of 4 bytes; a range of an odd number of
/// F16 or BF16 values neither).
///
/// Errors: NYXQ_ERROR_INVALID_ARGUMENT (unknown format, or `n` not a multiple
/// of the block size), NYXQ_ERROR_SIZE_OVERFLOW, NYXQ_ERROR_NULL_POINTER.
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_device_range_size(
    format: i32,
    n: usize,
    bytes_out: *mut usize,
) -> NyxqStatus {
    guard(|| {
        let format = format_arg(format)?;
        let out = ptr::out(bytes_out, "bytes_out")?;
        let bytes = format.size_of(n)?;
        let words = bytes
            .checked_next_multiple_of(4)
            .filter(|words| *words <= isize::MAX as usize)
            .ok_or_else(|| Error::overflow("the device range in 32-bit words"))?;
        // SAFETY: bytes_out checked non-NULL; points to a size_t per the contract.
        unsafe { out.write(words) };
        Ok(())
    })
}
