//! What each format can hold: NaN/±Inf and values that would overflow the
//! format (or its f16 block scale) are found before anything is written, or
//! clamped when the caller asks to saturate.
//!
//! Each format has an exclusive magnitude limit `L`: an input is accepted when
//! `|x| < L`, which is exactly the condition for its result (or its block's
//! f16 scale) to be finite:
//!
//! | format | L | why |
//! |---|---|---|
//! | F32  | +Inf | any finite value |
//! | F16  | 65520 | the first value that rounds to +Inf in binary16 |
//! | BF16 | 0x7f7f8000 as f32 (≈3.3895e38) | the first value that rounds to +Inf in bfloat16 |
//! | Q8_0 | smallest a with fl(a/127) ≥ 65520 (≈8.32e6) | the scale d = amax/127 must be finite in f16 |
//! | Q4_0 | 8·65520 = 524160 | d = max/−8 must be finite in f16 |
//! | Q4_1 | 65520 | the block minimum m is stored in f16 (and then d = (max−min)/15 is finite too) |
//!
//! Saturation maps NaN to 0 and clamps every value to the largest f32 below `L`.

use crate::error::{Error, ErrorKind, Result};
use crate::format::Format;
use crate::quant::NonFinite;
use std::sync::OnceLock;

/// First f32 that rounds to +Inf in binary16.
const F16_LIMIT: f32 = 65520.0;

fn q8_0_limit() -> f32 {
    static LIMIT: OnceLock<f32> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        // Binary search over the bit patterns of positive floats: fl(a/127) is
        // monotonic in a, so there is one smallest a with fl(a/127) >= 65520.
        let (mut lo, mut hi) = (F16_LIMIT.to_bits(), (F16_LIMIT * 128.0).to_bits());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if f32::from_bits(mid) / 127.0 >= F16_LIMIT {
                hi = mid
            } else {
                lo = mid + 1
            }
        }
        f32::from_bits(lo)
    })
}

/// The exclusive magnitude limit of `format` (see the module table).
pub fn limit(format: Format) -> f32 {
    match format {
        Format::F32 => f32::INFINITY,
        Format::F16 | Format::Q4_1 => F16_LIMIT,
        Format::BF16 => f32::from_bits(0x7f7f_8000),
        Format::Q8_0 => q8_0_limit(),
        Format::Q4_0 => 8.0 * F16_LIMIT,
    }
}

/// The value saturation clamps to: the largest finite f32 below the limit.
pub fn saturation_bound(format: Format) -> f32 {
    match format {
        Format::F32 => f32::MAX,
        Format::BF16 => f32::from_bits(0x7f7f_0000),
        Format::F16 | Format::Q4_1 => 65504.0,
        other => f32::from_bits(limit(other).to_bits() - 1),
    }
}

/// Whether `x` is accepted: below the limit in magnitude (false for NaN).
fn in_range(x: f32, limit: f32) -> bool {
    x.abs() < limit
}

/// The index of the first element that is NaN or not below the limit.
pub fn first_out_of_range(src: &[f32], limit: f32) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        return super::simd_x86::first_out_of_range(src, limit);
    }
    first_out_of_range_portable(src, limit)
}

/// The portable range check (the SIMD one must agree with it).
pub fn first_out_of_range_portable(src: &[f32], limit: f32) -> Option<usize> {
    // Chunked so the common case (all fine) is a tight, vectorisable loop.
    const CHUNK: usize = 256;
    for (c, chunk) in src.chunks(CHUNK).enumerate() {
        let fine = chunk.iter().fold(true, |ok, &x| ok & in_range(x, limit));
        if !fine {
            let i = chunk
                .iter()
                .position(|&x| !in_range(x, limit))
                .expect("a bad element exists");
            return Some(c * CHUNK + i);
        }
    }
    None
}

/// Checks `src` for `format` under the caller's non-finite policy. Returns
/// whether the input must be saturated chunk by chunk before quantizing.
pub fn check(format: Format, src: &[f32], policy: NonFinite, first_index: u64) -> Result<bool> {
    let limit = limit(format);
    let Some(i) = first_out_of_range(src, limit) else {
        return Ok(false);
    };
    match policy {
        NonFinite::Saturate => Ok(true),
        NonFinite::Reject => {
            let x = src[i];
            let reason = if x.is_finite() {
                format!(
                    "{x:e} is beyond what {} can hold (|x| must be below {limit:e})",
                    format.name()
                )
            } else {
                format!("{x} is not finite")
            };
            // Callers keep first_index + len within i64::MAX (check_first_index).
            let index = usize::try_from(first_index.saturating_add(i as u64)).unwrap_or(usize::MAX);
            Err(Error::new(
                ErrorKind::NonFinite { index },
                format!(
                    "input element {index}: {reason}; nothing was written (ask for saturation to clamp instead)"
                ),
            ))
        }
    }
}

/// Writes `src` into `dst` with NaN as 0 and every value clamped to ±`bound`.
pub fn saturate_into(src: &[f32], dst: &mut [f32], bound: f32) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = if x.is_nan() {
            0.0
        } else {
            x.clamp(-bound, bound)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    #[test]
    fn limits_are_the_first_values_that_overflow() {
        assert!(f16::from_f32(65519.996).is_finite());
        assert!(f16::from_f32(65520.0).is_infinite());
        let q8 = limit(Format::Q8_0);
        assert!(f16::from_f32(q8 / 127.0).is_infinite());
        assert!(f16::from_f32(f32::from_bits(q8.to_bits() - 1) / 127.0).is_finite());
        assert!(f16::from_f32(-limit(Format::Q4_0) / -8.0).is_infinite());
        for format in crate::format::ALL_FORMATS {
            let b = saturation_bound(format);
            assert!(b < limit(format) && b.is_finite(), "{format:?}");
        }
    }

    #[test]
    fn the_first_bad_index_is_found_in_any_chunk() {
        let mut x = vec![1.0f32; 1000];
        assert_eq!(first_out_of_range(&x, 2.0), None);
        x[700] = f32::NAN;
        x[900] = f32::INFINITY;
        assert_eq!(first_out_of_range(&x, 2.0), Some(700));
        x[3] = -2.0;
        assert_eq!(first_out_of_range(&x, 2.0), Some(3));
        assert_eq!(first_out_of_range_portable(&x, 2.0), Some(3));
        x[3] = 1.0;
        assert_eq!(first_out_of_range_portable(&x, 2.0), Some(700));
        x[700] = 1.0;
        x[995] = 2.5; // in the tail past the last whole chunk of 32
        assert_eq!(first_out_of_range(&x, 2.0), Some(900));
        x[900] = 1.0;
        assert_eq!(first_out_of_range(&x, 2.0), Some(995));
    }
}
