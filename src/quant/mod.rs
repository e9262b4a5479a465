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

pub mod metrics;

pub use metrics::{ErrorMetrics, measure};

use crate::error::Result;
use crate::format::Format;

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
    /// input is weighted by `importance[i % importance.len()]`. Its length must be
    /// a positive multiple of the block size that divides the input length.
    pub importance: Option<&'a [f32]>,
    /// Worker threads; 1 runs on the calling thread only.
    pub threads: usize,
    /// Index of `src[0]` within the whole tensor, so that stochastic rounding of a
    /// slice gives the same bytes as rounding the whole tensor.
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

/// Quantizes `src` into `format`, writing `format.size_of(src.len())` bytes of `dst`.
pub fn quantize(format: Format, src: &[f32], dst: &mut [u8], opts: &QuantizeOptions) -> Result<()> {
    let _ = (format, src, dst, opts);
    todo!("quant helper")
}

/// Dequantizes `src` (whole blocks of `format`) into `dst` as f32.
pub fn dequantize(format: Format, src: &[u8], dst: &mut [f32], threads: usize) -> Result<()> {
    let _ = (format, src, dst, threads);
    todo!("quant helper")
}

/// Dequantizes `src` (whole blocks of `format`) into `dst` as IEEE binary16 bits.
pub fn dequantize_to_f16(
    format: Format,
    src: &[u8],
    dst: &mut [u16],
    threads: usize,
) -> Result<()> {
    let _ = (format, src, dst, threads);
    todo!("quant helper")
}

/// Quantizes then dequantizes in one pass: `dst` receives what a round trip
/// through `format` gives, without the intermediate buffer.
pub fn fake_quantize(
    format: Format,
    src: &[f32],
    dst: &mut [f32],
    opts: &QuantizeOptions,
) -> Result<()> {
    let _ = (format, src, dst, opts);
    todo!("quant helper")
}
