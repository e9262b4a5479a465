//! Quantize, dequantize, fake-quantize and error metrics into caller buffers.

use super::context::NyxqContext;
use super::format::format_arg;
use super::guard::guard;
use super::status::NyxqStatus;
use super::{enum_value, handle, ptr};
use crate::error::{Error, Result};
use crate::format::Format;
use crate::quant::{self, ErrorMetrics, NonFinite, QuantizeOptions, Rounding};
use std::ffi::c_void;

/// Rounding modes (NyxqQuantizeOptions.rounding).
#[repr(i32)]
pub enum NyxqRounding {
    /// Round to nearest, byte-identical with ggml's reference quantizers (default).
    NyxqRoundingNearest = 0,
    /// Search each block's scale for the lowest squared error, weighted by
    /// NyxqQuantizeOptions.importance when given. Same as NEAREST for F16/BF16.
    NyxqRoundingErrorMinimising = 1,
    /// Unbiased stochastic rounding from NyxqQuantizeOptions.seed; the same seed
    /// gives the same bytes, on any thread count.
    NyxqRoundingStochastic = 2,
}

/// What happens to NaN, ±Inf and values beyond the target's range.
#[repr(i32)]
pub enum NyxqNonFinite {
    /// NYXQ_ERROR_NON_FINITE naming the first bad index; nothing written (default).
    NyxqNonFiniteReject = 0,
    /// NaN becomes 0; ±Inf and out-of-range values become the largest finite value.
    NyxqNonFiniteSaturate = 1,
}

/// Options for quantizing. NULL means all defaults. New fields are only ever appended.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NyxqQuantizeOptions {
    /// sizeof(NyxqQuantizeOptions) as the caller compiled it.
    pub struct_size: usize,
    /// A NyxqRounding value. Default NYXQ_ROUNDING_NEAREST.
    pub rounding: i32,
    /// A NyxqNonFinite value. Default NYXQ_NON_FINITE_REJECT.
    pub non_finite: i32,
    /// Seed for NYXQ_ROUNDING_STOCHASTIC.
    pub seed: u64,
    /// Index of src[0] within the whole tensor, so that quantizing a slice
    /// equals quantizing the whole: stochastic rounding draws element i's
    /// random number at first_index + i, error-minimising rounding weights it
    /// by importance[(first_index + i) % importance_len], and a rejected
    /// element is reported by nyxq_last_error_index() as first_index + i (its
    /// index in the whole tensor). first_index + n must not exceed INT64_MAX
    /// (NYXQ_ERROR_INVALID_ARGUMENT otherwise). Default 0.
    pub first_index: u64,
    /// Per-column importance for NYXQ_ROUNDING_ERROR_MINIMISING, or NULL: element
    /// i of src is weighted by importance[(first_index + i) % importance_len].
    /// importance_len must be a positive multiple of the block size that
    /// divides n. Read during the call only.
    pub importance: *const f32,
    /// Length of `importance` in floats.
    pub importance_len: usize,
}

impl Default for NyxqQuantizeOptions {
    fn default() -> Self {
        NyxqQuantizeOptions {
            struct_size: size_of::<NyxqQuantizeOptions>(),
            rounding: 0,
            non_finite: 0,
            seed: 0,
            first_index: 0,
            importance: std::ptr::null(),
            importance_len: 0,
        }
    }
}

/// Error metrics of a quantized tensor against its original (nyxq_quant_error).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NyxqErrorMetrics {
    /// Root mean squared error.
    pub rmse: f64,
    /// Largest absolute error.
    pub max_abs: f64,
    /// Signal-to-noise ratio in dB; +infinity when the error is zero.
    pub snr_db: f64,
    /// Cosine similarity (1 when both are all zero).
    pub cosine: f64,
}

impl From<ErrorMetrics> for NyxqErrorMetrics {
    fn from(m: ErrorMetrics) -> Self {
        NyxqErrorMetrics {
            rmse: m.rmse,
            max_abs: m.max_abs,
            snr_db: m.snr_db,
            cosine: m.cosine,
        }
    }
}

/// Fills `options_out` with the defaults: nearest rounding, NaN/Inf rejected,
/// seed 0, first_index 0, no importance, and struct_size set. Passing these is
/// the same as passing NULL; fill them first, then change the fields you need.
///
/// Errors: NYXQ_ERROR_NULL_POINTER. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_quantize_options_default(
    options_out: *mut NyxqQuantizeOptions,
) -> NyxqStatus {
    guard(|| {
        let out = ptr::out(options_out, "options_out")?;
        // SAFETY: the caller passes a pointer to a NyxqQuantizeOptions.
        unsafe { out.write(NyxqQuantizeOptions::default()) };
        Ok(())
    })
}

/// Converts C quantize options (NULL for defaults) into the library's.
///
/// # Safety
/// `options` is NULL or points to a NyxqQuantizeOptions of struct_size bytes whose
/// importance pointer (if any) is valid for importance_len floats for `'a`.
pub(crate) unsafe fn quantize_options<'a>(
    options: *const NyxqQuantizeOptions,
    threads: usize,
) -> Result<QuantizeOptions<'a>> {
    // SAFETY: per this function's contract.
    let raw = unsafe {
        ptr::options(
            options,
            size_of::<NyxqQuantizeOptions>(),
            "NyxqQuantizeOptions",
        )
    }?;
    let rounding = match raw.rounding {
        0 => Rounding::Nearest,
        1 => Rounding::ErrorMinimising,
        2 => Rounding::Stochastic { seed: raw.seed },
        other => {
            return Err(Error::invalid(format!(
                "unknown rounding value {other} (known: 0, 1, 2)"
            )));
        }
    };
    let non_finite = enum_value(
        raw.non_finite,
        &[(0, NonFinite::Reject), (1, NonFinite::Saturate)],
        "non_finite",
    )?;
    // SAFETY: per this function's contract.
    let importance =
        unsafe { ptr::slice(raw.importance, raw.importance_len, "options.importance") }?;
    Ok(QuantizeOptions {
        rounding,
        non_finite,
        importance: (!importance.is_empty()).then_some(importance),
        threads,
        first_index: raw.first_index,
    })
}

fn check_room(format: Format, n: usize, dst_len: usize) -> Result<usize> {
    let needed = format.size_of(n)?;
    Error::ensure_room("dst", "bytes", needed, dst_len)?;
    Ok(needed)
}

/// Quantizes `n` floats from `src` into `dst` in `format`, writing exactly
/// nyxq_quantized_size(format, n) bytes. Large inputs use the context's threads.
///
/// - `ctx`: a context (for threads and backend). `options`: NULL for defaults.
/// - `src`: `n` floats, read only during the call; (NULL, 0) is empty.
/// - `dst`: `dst_len` bytes; nothing is written on any error.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (unknown format/rounding, n not whole blocks, bad
/// importance length, first_index + n beyond INT64_MAX, `dst` overlapping
/// `src` or options->importance),
/// NYXQ_ERROR_SIZE_OVERFLOW (n's bytes do not fit in size_t),
/// NYXQ_ERROR_BUFFER_TOO_SMALL (see nyxq_last_error_needed_len),
/// NYXQ_ERROR_NON_FINITE (see nyxq_last_error_index, which counts from
/// first_index). Thread-safe: several threads may quantize through one
/// context at once.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_quantize(
    ctx: *const NyxqContext,
    format: i32,
    src: *const f32,
    n: usize,
    options: *const NyxqQuantizeOptions,
    dst: *mut c_void,
    dst_len: usize,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        let format = format_arg(format)?;
        // SAFETY: the caller passes n readable floats at src.
        let src = unsafe { ptr::slice(src, n, "src") }?;
        // SAFETY: the options contract is the caller's (see NyxqQuantizeOptions).
        let opts = unsafe { quantize_options(options, context.threads()) }?;
        let needed = check_room(format, n, dst_len)?;
        let dst = dst.cast::<u8>();
        ptr::check_disjoint((dst, needed, "dst"), src, "src")?;
        let importance = opts.importance.unwrap_or_default();
        ptr::check_disjoint((dst, needed, "dst"), importance, "options.importance")?;
        // SAFETY: the caller passes dst_len writable bytes at dst, disjoint from
        // the inputs (checked); we use `needed` <= dst_len.
        let dst = unsafe { ptr::slice_mut(dst, needed, "dst") }?;
        quant::quantize(format, src, dst, &opts)
    })
}

/// Dequantizes `src_len` bytes of `format` into `dst` as floats.
///
/// - `src`: whole blocks of `format`; `dst`: room for `dst_len` floats, of which
///   the first n = src_len / block_bytes * block_size are written.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (unknown format, src_len not whole blocks,
/// `dst` overlapping `src`),
/// NYXQ_ERROR_SIZE_OVERFLOW (src_len or dst_len beyond what an address
/// space holds), NYXQ_ERROR_BUFFER_TOO_SMALL (needed length in floats).
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_dequantize(
    ctx: *const NyxqContext,
    format: i32,
    src: *const c_void,
    src_len: usize,
    dst: *mut f32,
    dst_len: usize,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        let format = format_arg(format)?;
        // SAFETY: the caller passes src_len readable bytes at src.
        let src = unsafe { ptr::slice(src.cast::<u8>(), src_len, "src") }?;
        let n = format.count_in(src.len())?;
        // A dst_len no buffer can have is a caller's mistake, even where n fits.
        ptr::check_len::<f32>(dst_len, "dst")?;
        Error::ensure_room("dst", "floats", n, dst_len)?;
        ptr::check_disjoint((dst, n, "dst"), src, "src")?;
        // SAFETY: the caller passes dst_len writable floats at dst, disjoint from
        // src (checked); we use n <= dst_len.
        let dst = unsafe { ptr::slice_mut(dst, n, "dst") }?;
        quant::dequantize(format, src, dst, context.threads())
    })
}

/// Quantizes `n` floats to `format` and back in one pass, writing the round
/// trip's result into `dst` (quantization-aware training's forward weights).
/// `src` and `dst` may be the same buffer; any other overlap is
/// NYXQ_ERROR_INVALID_ARGUMENT. Options and errors as nyxq_quantize;
/// `dst_len` is in floats. When `src` and `dst` are the same buffer, `src` is
/// copied first, and NYXQ_ERROR_OUT_OF_MEMORY means the copy could not be
/// allocated (nothing written). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_fake_quantize(
    ctx: *const NyxqContext,
    format: i32,
    src: *const f32,
    n: usize,
    options: *const NyxqQuantizeOptions,
    dst: *mut f32,
    dst_len: usize,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        let format = format_arg(format)?;
        format.check_count(n)?;
        // SAFETY: the options contract is the caller's (see NyxqQuantizeOptions).
        let opts = unsafe { quantize_options(options, context.threads()) }?;
        Error::ensure_room("dst", "floats", n, dst_len)?;
        if n == 0 {
            return Ok(());
        }
        let importance = opts.importance.unwrap_or_default();
        ptr::check_disjoint((dst, n, "dst"), importance, "options.importance")?;
        if std::ptr::eq(src, dst) {
            // In place: quantize from a copy so src and dst never alias in Rust.
            // SAFETY: the caller passes n readable floats at src.
            let src = unsafe { ptr::slice(src, n, "src") }?;
            let copy = crate::alloc::copied(src, "in-place fake quantization's copy of src")?;
            // SAFETY: dst == src, n writable floats, disjoint from importance (checked).
            let dst = unsafe { ptr::slice_mut(dst, n, "dst") }?;
            return quant::fake_quantize(format, &copy, dst, &opts);
        }
        // SAFETY: the caller passes n readable floats at src.
        let src = unsafe { ptr::slice(src, n, "src") }?;
        ptr::check_disjoint((dst, n, "dst"), src, "src")?;
        // SAFETY: the caller passes dst_len >= n writable floats at dst, disjoint
        // from the inputs (checked; equal buffers are handled above).
        let dst = unsafe { ptr::slice_mut(dst, n, "dst") }?;
        quant::fake_quantize(format, src, dst, &opts)
    })
}

/// Measures how far `quantized` (whole blocks of `format`, `quantized_len` bytes,
/// holding exactly `n` elements) is from `original` (`n` floats).
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_ARGUMENT (unknown format,
/// lengths that disagree), NYXQ_ERROR_OUT_OF_MEMORY. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_quant_error(
    format: i32,
    original: *const f32,
    n: usize,
    quantized: *const c_void,
    quantized_len: usize,
    metrics_out: *mut NyxqErrorMetrics,
) -> NyxqStatus {
    guard(|| {
        let format = format_arg(format)?;
        // SAFETY: the caller passes n readable floats at original.
        let original = unsafe { ptr::slice(original, n, "original") }?;
        // SAFETY: the caller passes quantized_len readable bytes at quantized.
        let quantized = unsafe { ptr::slice(quantized.cast::<u8>(), quantized_len, "quantized") }?;
        let out = ptr::out(metrics_out, "metrics_out")?;
        let held = format.count_in(quantized.len())?;
        if held != n {
            return Err(Error::invalid(format!(
                "quantized holds {held} {} elements but original has {n}",
                format.name()
            )));
        }
        let mut reconstructed = crate::alloc::filled(n, 0.0, "dequantized copy")?;
        quant::dequantize(format, quantized, &mut reconstructed, 1)?;
        // SAFETY: metrics_out checked non-NULL; points to a NyxqErrorMetrics.
        unsafe { out.write(quant::measure(original, &reconstructed).into()) };
        Ok(())
    })
}
