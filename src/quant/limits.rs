//! What each format can hold: NaN/±Inf and values that would overflow the
//! format (or its f16 block scale) are found before anything is written, or
//! clamped when the caller asks to saturate.
//!
//! Each format has an exclusive magnitude limit `L` (its descriptor's
//! [`MagnitudeLimits`](crate::format::MagnitudeLimits)): an input is accepted
//! when `|x| < L`, which is exactly the condition for its result (or its
//! block's f16 scale) to be finite:
//!
//! | format | L | why |
//! |---|---|---|
//! | F32  | +Inf | any finite value |
//! | F16  | 65520 | the first value that rounds to +Inf in binary16 |
//! | BF16 | 0x7f7f8000 as f32 (≈3.3895e38) | the first value that rounds to +Inf in bfloat16 |
//! | Q8_0 | smallest a with fl(a/127) ≥ 65520 (8321040) | the scale d = amax/127 must be finite in f16 |
//! | Q4_0 | 8·65520 = 524160 | d = max/−8 must be finite in f16 |
//! | Q4_1 | 65520 | the block minimum m is stored in f16 (and then d = (max−min)/15 is finite too) |
//! | Q5_0 | 16·65520 = 1048320 | d = max/−16 must be finite in f16 |
//! | IQ4_NL | 0x4ae24bf7 as f32 (≈7415291.5) | the stored least-squares scale is largest, about 1.1221·amax/127, for −amax beside 31 values just below 101/127·amax: the first amax whose f16 scale overflows there (below it every block's is finite) |
//!
//! Saturation maps NaN to 0 and clamps every value to the largest value the
//! format keeps below `L`.

use crate::error::{Error, ErrorKind, Result};
use crate::format::Format;
use crate::quant::NonFinite;

/// The exclusive magnitude limit of `format` (see the module table).
pub fn limit(format: Format) -> f32 {
    format.spec().limits.below
}

/// The value saturation clamps to: the largest finite value below the limit
/// that the format keeps.
pub fn saturation_bound(format: Format) -> f32 {
    format.spec().limits.saturate_to
}

/// Whether `x` is accepted: below the limit in magnitude (false for NaN).
fn in_range(x: f32, limit: f32) -> bool {
    x.abs() < limit
}

/// The index of the first element that is NaN or not below the limit.
pub fn first_out_of_range(src: &[f32], limit: f32) -> Option<usize> {
    // The AVX2 scan skips the whole blocks of 32 that are all in range; the
    // portable scan finds the element in what is left.
    #[cfg(target_arch = "x86_64")]
    let start = super::simd_x86::in_range_prefix(src, limit);
    #[cfg(not(target_arch = "x86_64"))]
    let start = 0;
    first_out_of_range_portable(&src[start..], limit).map(|i| start + i)
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

    /// The f32 just below `x` (x positive and finite).
    fn below(x: f32) -> f32 {
        f32::from_bits(x.to_bits() - 1)
    }

    #[test]
    fn limits_are_the_first_values_that_overflow() {
        assert!(f16::from_f32(below(65520.0)).is_finite());
        assert!(f16::from_f32(65520.0).is_infinite());
        assert_eq!(limit(Format::F16), 65520.0);
        assert_eq!(limit(Format::Q4_1), 65520.0);
        assert_eq!(crate::quant::scalar::bf16_bits(limit(Format::BF16)), 0x7f80);
        assert_eq!(
            crate::quant::scalar::bf16_bits(below(limit(Format::BF16))),
            0x7f7f
        );
        // Each block format's scale: finite just below the limit, +Inf at it.
        let scale_divisors = [
            (Format::Q8_0, 127.0f32),
            (Format::Q4_0, -8.0),
            (Format::Q5_0, -16.0),
        ];
        for (format, divisor) in scale_divisors {
            let l = limit(format);
            assert!(f16::from_f32(l / divisor).is_infinite(), "{format:?}");
            assert!(f16::from_f32(below(l) / divisor).is_finite(), "{format:?}");
            assert_eq!(saturation_bound(format), below(l), "{format:?}");
        }
        // IQ4_NL's worst block: finite just below the limit, +Inf at it.
        let worst = |a: f32| {
            let id = 1.0 / (-a / -127.0);
            let mut v = 101.0 / 127.0 * a;
            while v * id >= 101.0 {
                v = below(v);
            }
            while f32::from_bits(v.to_bits() + 1) * id < 101.0 {
                v = f32::from_bits(v.to_bits() + 1);
            }
            let mut x = [v; 32];
            x[0] = -a;
            let mut out = [0u8; 18];
            crate::quant::scalar::iq4_nl_nearest(&x, &mut out);
            f16::from_bits(u16::from_le_bytes([out[0], out[1]]))
        };
        let l = limit(Format::IQ4_NL);
        assert!(worst(l).is_infinite());
        assert!(worst(below(l)).is_finite());
        assert_eq!(saturation_bound(Format::IQ4_NL), below(l));
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
