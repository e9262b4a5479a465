//! Storage formats: block sizes, byte sizes, names and validation.
//!
//! Byte layouts are identical to ggml's (see DESIGN.md), so data can be checked
//! bit for bit against ggml's reference quantizers and exported to GGUF.

use crate::error::{Error, Result};

/// A storage format. The discriminants are the values the C ABI uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i32)]
pub enum Format {
    /// IEEE binary32.
    F32 = 0,
    /// IEEE binary16, round to nearest even.
    F16 = 1,
    /// The top 16 bits of binary32, round to nearest even, NaN kept NaN.
    BF16 = 2,
    /// 32 values: `f16 d; i8 qs[32]`; x = d*q.
    Q8_0 = 3,
    /// 32 values: `f16 d; u8 qs[16]`; x = d*(q-8).
    Q4_0 = 4,
    /// 32 values: `f16 d; f16 m; u8 qs[16]`; x = d*q + m.
    Q4_1 = 5,
}

/// Every format other than F32 (what quantizing produces), in order of
/// their C values.
pub const QUANTIZED_FORMATS: [Format; 5] = [
    Format::F16,
    Format::BF16,
    Format::Q8_0,
    Format::Q4_0,
    Format::Q4_1,
];

/// Every format, in order of their C values.
pub const ALL_FORMATS: [Format; 6] = [
    Format::F32,
    Format::F16,
    Format::BF16,
    Format::Q8_0,
    Format::Q4_0,
    Format::Q4_1,
];

/// Elements per block of the 32-element block formats.
pub const QK: usize = 32;

impl Format {
    /// The format with C value `value`, or an error naming the bad value.
    pub fn from_raw(value: i32) -> Result<Format> {
        ALL_FORMATS
            .iter()
            .copied()
            .find(|f| *f as i32 == value)
            .ok_or_else(|| Error::invalid(format!("unknown format value {value}")))
    }

    /// The format named `name` (case-insensitive; "q8_0", "int8" and "fp16" style names).
    pub fn from_name(name: &str) -> Result<Format> {
        let lower = name.trim().to_ascii_lowercase();
        let format = match lower.as_str() {
            "f32" | "fp32" | "float32" => Format::F32,
            "f16" | "fp16" | "float16" | "half" => Format::F16,
            "bf16" | "bfloat16" => Format::BF16,
            "q8_0" | "int8" => Format::Q8_0,
            "q4_0" | "int4" => Format::Q4_0,
            "q4_1" => Format::Q4_1,
            _ => return Err(Error::invalid(format!("unknown format name '{name}'"))),
        };
        Ok(format)
    }

    /// The canonical name: "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1".
    pub fn name(self) -> &'static str {
        match self {
            Format::F32 => "F32",
            Format::F16 => "F16",
            Format::BF16 => "BF16",
            Format::Q8_0 => "Q8_0",
            Format::Q4_0 => "Q4_0",
            Format::Q4_1 => "Q4_1",
        }
    }

    /// Elements per block (1 for the scalar formats).
    pub fn block_size(self) -> usize {
        match self {
            Format::F32 | Format::F16 | Format::BF16 => 1,
            Format::Q8_0 | Format::Q4_0 | Format::Q4_1 => QK,
        }
    }

    /// Bytes per block, scales included.
    pub fn block_bytes(self) -> usize {
        match self {
            Format::F32 => 4,
            Format::F16 | Format::BF16 => 2,
            Format::Q8_0 => 34,
            Format::Q4_0 => 18,
            Format::Q4_1 => 20,
        }
    }

    /// Storage bits per weight, scales included.
    pub fn bits_per_weight(self) -> f64 {
        self.block_bytes() as f64 * 8.0 / self.block_size() as f64
    }

    /// The precision level the trainer's config speaks of.
    pub fn precision_level(self) -> &'static str {
        match self {
            Format::F32 => "FP32",
            Format::F16 => "FP16",
            Format::BF16 => "BF16",
            Format::Q8_0 => "INT8",
            Format::Q4_0 | Format::Q4_1 => "INT4",
        }
    }

    /// Whether this is a block format with per-block scales.
    pub fn is_block(self) -> bool {
        self.block_size() > 1
    }

    /// Checks that `n` elements can be stored (a whole number of blocks).
    pub fn check_count(self, n: usize) -> Result<()> {
        let block = self.block_size();
        if n % block != 0 {
            let Some(padded) = n.div_ceil(block).checked_mul(block) else {
                return Err(Error::new(
                    crate::error::ErrorKind::SizeOverflow,
                    format!(
                        "{} stores whole blocks of {block} elements; {n} is not a multiple of \
                         {block} and too large to pad (the next multiple overflows size_t)",
                        self.name()
                    ),
                ));
            };
            return Err(Error::invalid(format!(
                "{} stores whole blocks of {block} elements; {n} is not a multiple of {block} \
                 (pad the row to {padded} elements)",
                self.name()
            )));
        }
        Ok(())
    }

    /// Bytes needed for `n` elements, checked for whole blocks and overflow.
    pub fn size_of(self, n: usize) -> Result<usize> {
        self.check_count(n)?;
        (n / self.block_size())
            .checked_mul(self.block_bytes())
            .filter(|bytes| *bytes <= isize::MAX as usize)
            .ok_or_else(|| Error::overflow(&format!("{n} elements of {}", self.name())))
    }

    /// Elements stored in `bytes` bytes, or an error when `bytes` is not whole blocks.
    pub fn count_in(self, bytes: usize) -> Result<usize> {
        let block_bytes = self.block_bytes();
        if bytes % block_bytes != 0 {
            return Err(Error::invalid(format!(
                "{bytes} bytes is not a whole number of {} blocks ({block_bytes} bytes each)",
                self.name()
            )));
        }
        (bytes / block_bytes)
            .checked_mul(self.block_size())
            .ok_or_else(|| Error::overflow("element count"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values_round_trip_and_unknown_values_are_rejected() {
        for f in ALL_FORMATS {
            assert_eq!(Format::from_raw(f as i32).unwrap(), f);
            assert_eq!(Format::from_name(f.name()).unwrap(), f);
        }
        assert!(Format::from_raw(6).is_err());
        assert!(Format::from_raw(-1).is_err());
        assert!(Format::from_name("q5_k").is_err());
    }

    #[test]
    fn sizes_match_the_design_table() {
        let expect = [
            (Format::F32, 4, 32.0),
            (Format::F16, 2, 16.0),
            (Format::BF16, 2, 16.0),
            (Format::Q8_0, 34, 8.5),
            (Format::Q4_0, 18, 4.5),
            (Format::Q4_1, 20, 5.0),
        ];
        for (f, bytes, bits) in expect {
            assert_eq!(f.block_bytes(), bytes);
            assert_eq!(f.bits_per_weight(), bits);
        }
        assert_eq!(Format::Q4_0.size_of(64).unwrap(), 36);
        assert_eq!(Format::Q4_0.count_in(36).unwrap(), 64);
        assert!(Format::Q4_0.count_in(35).is_err());
    }

    #[test]
    fn partial_blocks_and_overflow_are_errors() {
        let err = Format::Q8_0.size_of(33).unwrap_err();
        assert!(
            err.message().contains("not a multiple of 32"),
            "{}",
            err.message()
        );
        let err = Format::F32.size_of(usize::MAX).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::SizeOverflow);
        assert!(Format::Q8_0.size_of(usize::MAX - 31).is_err());
    }

    #[test]
    fn a_count_too_large_to_pad_says_so_instead_of_wrapping() {
        let err = Format::Q4_0.size_of(usize::MAX - 2).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::SizeOverflow);
        assert!(
            err.message().contains("too large to pad"),
            "{}",
            err.message()
        );
        assert!(
            !err.message().contains("pad the row to 0"),
            "{}",
            err.message()
        );
    }
}
