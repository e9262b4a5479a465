//! Storage formats: one descriptor per format, and the sizes, names and
//! checks every other module reads from it.
//!
//! [`FORMATS`] is the one table that describes a format: its name, C value,
//! the names the config accepts, block and byte sizes, exact magnitude limits,
//! the planner's error estimate, the Vulkan shader tag, and which CPU and
//! Vulkan kernels it has. Byte layouts are identical to ggml's, so data can be
//! checked bit for bit against ggml's reference quantizers and exported to GGUF.

use crate::error::{Error, Result};
use std::ffi::CStr;

/// A storage format. The discriminants are the values the C ABI uses
/// (append-only: a value is never reused or renumbered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i32)]
// ggml's names: Q4_K beside Q4_0.
#[allow(non_camel_case_types)]
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
    /// 32 values: `f16 d; u8 qh[4]; u8 qs[16]`; x = d*(q-16), the low four
    /// bits of q packed as Q4_0's, the fifth bit of element j in bit j of qh.
    Q5_0 = 6,
    /// 32 values: `f16 d; u8 qs[16]`; x = d·LEVELS[q] with ggml's 16
    /// non-linear levels (−127 … 113), q packed as Q4_0's.
    IQ4_NL = 7,
    /// Super-blocks of 256: `f16 d; f16 dmin; u8 scales[12]; u8 qs[128]`;
    /// eight sub-blocks of 32 with a 6-bit scale and a 6-bit minimum each;
    /// x = d·sc·q − dmin·m (ggml's Q4_K).
    Q4_K = 8,
    /// Super-blocks of 256: `f16 d; f16 dmin; u8 scales[12]; u8 qh[32];
    /// u8 qs[128]`; as Q4_K with a fifth bit per quant (ggml's Q5_K).
    Q5_K = 9,
    /// Super-blocks of 256: `u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d`;
    /// sixteen sub-blocks of 16 with an 8-bit scale each; x = d·sc·(q − 32)
    /// (ggml's Q6_K).
    Q6_K = 10,
}

/// Elements per block of the 32-element block formats.
pub const QK: usize = 32;

/// Elements per super-block of the K-quants (Q4_K, Q5_K, Q6_K).
pub const QK_K: usize = 256;

/// The magnitudes a format accepts: `|x| < below` is exactly the condition
/// for the stored value (or its block's f16 scale) to be finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MagnitudeLimits {
    /// The first magnitude that overflows (exclusive; +Inf for F32).
    pub below: f32,
    /// What saturation clamps to: the largest finite value the format keeps.
    pub saturate_to: f32,
}

/// The CPU kernels a format has beyond the portable quantize (nearest and
/// stochastic), dequantize and matvec every format has. The kernel table
/// (`crate::cpu_kernels`) holds them; a test checks that the two agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuKernelSet {
    /// Error-minimising rounding searches the block scale (block formats;
    /// elsewhere nearest rounding is already optimal and stands in).
    pub error_minimising: bool,
    /// AVX2 + F16C nearest-rounding quantize.
    pub simd_quantize: bool,
    /// AVX2 + F16C dequantize.
    pub simd_dequantize: bool,
    /// AVX2 + FMA + F16C row kernel of W·x in f32.
    pub simd_matvec: bool,
    /// W·x with x rounded to 8 bits per block and integer dot products (AVX2).
    pub integer_matvec: bool,
}

/// The Vulkan kernel families a format has (`build_support/shaders.rs`
/// compiles them; a test checks that the two agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VulkanKernelSet {
    /// `quantize_f32_<tag>`, `dequantize_<tag>_f32`, `dequantize_<tag>_f16`
    /// and `fake_quantize_f32_<tag>`.
    pub conversions: bool,
    /// `matvec_<tag>_f32`, its `_subgroup` variant and `matvec_t_<tag>_f32`.
    pub matvec: bool,
    /// `matvec_<tag>_f32_dot`, the integer-dot forward product.
    pub matvec_dot: bool,
    /// `matmul_<tag>_f32` and `matmul_t_<tag>_f32`, each with its `_coop`
    /// variant: the products of a batch of tokens.
    pub matmul: bool,
}

/// A family of Vulkan kernels, as [`VulkanKernelSet`] lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VulkanFamily {
    /// Quantize, dequantize (to F32 and F16) and fake-quantize.
    Conversions,
    /// W·x and xᵀ·W.
    Matvec,
    /// The integer-dot W·x.
    MatvecDot,
    /// X·Wᵀ and dY·W for a batch of tokens.
    Matmul,
}

impl VulkanKernelSet {
    /// Whether the set holds `family`.
    pub fn has(&self, family: VulkanFamily) -> bool {
        match family {
            VulkanFamily::Conversions => self.conversions,
            VulkanFamily::Matvec => self.matvec,
            VulkanFamily::MatvecDot => self.matvec_dot,
            VulkanFamily::Matmul => self.matmul,
        }
    }
}

/// Everything nyxq knows about one format.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FormatSpec {
    /// The format; its row in [`FORMATS`] is its C value.
    pub format: Format,
    /// Canonical name ("Q4_0"), also what nyxq_format_info returns.
    pub name: &'static CStr,
    /// Other names the config and the CLI accept, lower case ("int4", "fp16").
    pub aliases: &'static [&'static str],
    /// The precision level the trainer's config speaks of ("INT4").
    pub precision_level: &'static CStr,
    /// Elements per block (1 for the per-element formats).
    pub block_size: usize,
    /// Bytes per block, scales included.
    pub block_bytes: usize,
    /// Storage bits per weight, scales included (`block_bytes * 8 / block_size`).
    pub bits_per_weight: f64,
    /// The magnitudes it holds (quant::limits checks input against them).
    pub limits: MagnitudeLimits,
    /// SNR in dB of nearest rounding on typical weights, for the planner when
    /// it has no data: measured on the MiniLM-L6 weights in data/weights
    /// (embeddings, attention and FFN matrices agree within 0.5 dB;
    /// tests/plan_measured.rs checks the estimates stay within 4 dB).
    pub estimated_snr_db: f64,
    /// Whether the planner's config policy may offer it.
    pub planned: bool,
    /// The suffix of its Vulkan shader variants ("q4_0").
    pub shader_tag: &'static str,
    /// Its CPU kernels beyond the portable ones.
    pub cpu: CpuKernelSet,
    /// Its Vulkan kernels.
    pub vulkan: VulkanKernelSet,
}

impl FormatSpec {
    /// The canonical name as a Rust string.
    pub fn name(&self) -> &'static str {
        self.name.to_str().expect("format names are ASCII")
    }

    /// The precision level as a Rust string.
    pub fn precision_level(&self) -> &'static str {
        self.precision_level
            .to_str()
            .expect("precision levels are ASCII")
    }
}

/// The first f32 that rounds to +Inf in binary16.
const F16_OVERFLOW: f32 = 65520.0;

/// What the 16-bit per-element formats have on the CPU.
const ELEMENT_CPU: CpuKernelSet = CpuKernelSet {
    error_minimising: false,
    simd_quantize: true,
    simd_dequantize: true,
    simd_matvec: true,
    integer_matvec: false,
};

/// What the block formats have on the CPU.
const BLOCK_CPU: CpuKernelSet = CpuKernelSet {
    error_minimising: true,
    simd_quantize: true,
    simd_dequantize: true,
    simd_matvec: true,
    integer_matvec: true,
};

/// What the K-quants have on the CPU: the search, and AVX2 nearest
/// quantize, dequantize and f32 row kernels (no integer-dot product).
const K_QUANT_CPU: CpuKernelSet = CpuKernelSet {
    error_minimising: true,
    simd_quantize: true,
    simd_dequantize: true,
    simd_matvec: true,
    integer_matvec: false,
};

/// Every Vulkan kernel family.
const ALL_VULKAN: VulkanKernelSet = VulkanKernelSet {
    conversions: true,
    matvec: true,
    matvec_dot: true,
    matmul: true,
};

/// The Vulkan kernels of F16 and BF16: no integer-dot product.
const ELEMENT_VULKAN: VulkanKernelSet = VulkanKernelSet {
    matvec_dot: false,
    ..ALL_VULKAN
};

/// The Vulkan kernels of the K-quants: no integer-dot product.
const K_QUANT_VULKAN: VulkanKernelSet = ELEMENT_VULKAN;

/// Every format, in order of their C values.
pub static FORMATS: [FormatSpec; 11] = [
    FormatSpec {
        format: Format::F32,
        name: c"F32",
        aliases: &["fp32", "float32"],
        precision_level: c"FP32",
        block_size: 1,
        block_bytes: 4,
        bits_per_weight: 32.0,
        limits: MagnitudeLimits {
            below: f32::INFINITY,
            saturate_to: f32::MAX,
        },
        estimated_snr_db: f64::INFINITY,
        planned: true,
        shader_tag: "f32",
        // A copy: nothing to search, and no SIMD quantize or dequantize
        // (the portable copy is already memcpy).
        cpu: CpuKernelSet {
            simd_quantize: false,
            simd_dequantize: false,
            ..ELEMENT_CPU
        },
        // Converting F32 to F32 is the copy kernel, not a conversion.
        vulkan: VulkanKernelSet {
            conversions: false,
            ..ELEMENT_VULKAN
        },
    },
    FormatSpec {
        format: Format::F16,
        name: c"F16",
        aliases: &["fp16", "float16", "half"],
        precision_level: c"FP16",
        block_size: 1,
        block_bytes: 2,
        bits_per_weight: 16.0,
        limits: MagnitudeLimits {
            below: F16_OVERFLOW,
            saturate_to: 65504.0,
        },
        estimated_snr_db: 73.7,
        planned: true,
        shader_tag: "f16",
        cpu: ELEMENT_CPU,
        vulkan: ELEMENT_VULKAN,
    },
    FormatSpec {
        format: Format::BF16,
        name: c"BF16",
        aliases: &["bfloat16"],
        precision_level: c"BF16",
        block_size: 1,
        block_bytes: 2,
        bits_per_weight: 16.0,
        // The first value that rounds to +Inf in bfloat16, and the largest finite one.
        limits: MagnitudeLimits {
            below: f32::from_bits(0x7f7f_8000),
            saturate_to: f32::from_bits(0x7f7f_0000),
        },
        estimated_snr_db: 55.6,
        planned: true,
        shader_tag: "bf16",
        cpu: ELEMENT_CPU,
        vulkan: ELEMENT_VULKAN,
    },
    FormatSpec {
        format: Format::Q8_0,
        name: c"Q8_0",
        aliases: &["int8"],
        precision_level: c"INT8",
        block_size: QK,
        block_bytes: 34,
        bits_per_weight: 8.5,
        // The smallest a with fl(a/127) >= 65520 (8321040), so that the
        // scale d = amax/127 is finite in f16; the f32 below it.
        limits: MagnitudeLimits {
            below: f32::from_bits(0x4afd_f020),
            saturate_to: f32::from_bits(0x4afd_f01f),
        },
        estimated_snr_db: 45.3,
        planned: true,
        shader_tag: "q8_0",
        cpu: BLOCK_CPU,
        vulkan: ALL_VULKAN,
    },
    FormatSpec {
        format: Format::Q4_0,
        name: c"Q4_0",
        aliases: &["int4"],
        precision_level: c"INT4",
        block_size: QK,
        block_bytes: 18,
        bits_per_weight: 4.5,
        // d = max/-8 must be finite in f16: 8 * 65520 = 524160 (exact), and
        // the f32 below it.
        limits: MagnitudeLimits {
            below: 8.0 * F16_OVERFLOW,
            saturate_to: f32::from_bits(0x48ff_efff),
        },
        estimated_snr_db: 21.1,
        planned: true,
        shader_tag: "q4_0",
        cpu: BLOCK_CPU,
        vulkan: ALL_VULKAN,
    },
    FormatSpec {
        format: Format::Q4_1,
        name: c"Q4_1",
        aliases: &[],
        precision_level: c"INT4",
        block_size: QK,
        block_bytes: 20,
        bits_per_weight: 5.0,
        // The block minimum m is stored in f16 (and then d = (max-min)/15 is
        // finite too).
        limits: MagnitudeLimits {
            below: F16_OVERFLOW,
            saturate_to: 65504.0,
        },
        estimated_snr_db: 22.0,
        planned: true,
        shader_tag: "q4_1",
        cpu: BLOCK_CPU,
        vulkan: ALL_VULKAN,
    },
    FormatSpec {
        format: Format::Q5_0,
        name: c"Q5_0",
        aliases: &["int5"],
        precision_level: c"INT5",
        block_size: QK,
        block_bytes: 22,
        bits_per_weight: 5.5,
        // d = max/-16 must be finite in f16: 16 * 65520 = 1048320 (exact),
        // and the f32 below it.
        limits: MagnitudeLimits {
            below: 16.0 * F16_OVERFLOW,
            saturate_to: f32::from_bits(0x497f_efff),
        },
        estimated_snr_db: 27.2,
        planned: true,
        shader_tag: "q5_0",
        cpu: BLOCK_CPU,
        vulkan: ALL_VULKAN,
    },
    FormatSpec {
        format: Format::IQ4_NL,
        name: c"IQ4_NL",
        aliases: &["iq4nl"],
        precision_level: c"INT4",
        block_size: QK,
        block_bytes: 18,
        bits_per_weight: 4.5,
        // The stored scale is a least-squares fit, at most about
        // 1.1221·amax/127: in the block of −a and 31 values just below
        // 101/127·a (on the level 89 beside the −127 of the maximum). The
        // first a whose f16 scale is +Inf there, and the f32 below it.
        limits: MagnitudeLimits {
            below: f32::from_bits(IQ4_NL_BELOW_BITS),
            saturate_to: f32::from_bits(IQ4_NL_BELOW_BITS - 1),
        },
        estimated_snr_db: 22.0,
        planned: true,
        shader_tag: "iq4_nl",
        cpu: BLOCK_CPU,
        vulkan: ALL_VULKAN,
    },
    FormatSpec {
        format: Format::Q4_K,
        name: c"Q4_K",
        aliases: &[],
        precision_level: c"INT4",
        block_size: QK_K,
        block_bytes: 144,
        bits_per_weight: 4.5,
        // dmin = max(−min)/63 must be finite in f16: 63 · 65520 = 4127760
        // (exact), and the f32 below it. The scale d is finite below it too.
        limits: K_AFFINE_LIMITS,
        estimated_snr_db: 22.0,
        planned: true,
        shader_tag: "q4_k",
        cpu: K_QUANT_CPU,
        vulkan: K_QUANT_VULKAN,
    },
    FormatSpec {
        format: Format::Q5_K,
        name: c"Q5_K",
        aliases: &[],
        precision_level: c"INT5",
        block_size: QK_K,
        block_bytes: 176,
        bits_per_weight: 5.5,
        // As Q4_K.
        limits: K_AFFINE_LIMITS,
        estimated_snr_db: 28.2,
        planned: true,
        shader_tag: "q5_k",
        cpu: K_QUANT_CPU,
        vulkan: K_QUANT_VULKAN,
    },
    FormatSpec {
        format: Format::Q6_K,
        name: c"Q6_K",
        aliases: &["int6"],
        precision_level: c"INT6",
        block_size: QK_K,
        block_bytes: 210,
        bits_per_weight: 6.5625,
        // d = max/(−32·−128) = max/4096 must be finite in f16: 4096 · 65520
        // = 268369920 (exact), and the f32 below it.
        limits: MagnitudeLimits {
            below: 4096.0 * F16_OVERFLOW,
            saturate_to: f32::from_bits(0x4d7f_efff),
        },
        estimated_snr_db: 34.3,
        planned: true,
        shader_tag: "q6_k",
        cpu: K_QUANT_CPU,
        vulkan: K_QUANT_VULKAN,
    },
];

/// The bits of IQ4_NL's magnitude limit (see its row of [`FORMATS`]).
const IQ4_NL_BELOW_BITS: u32 = 0x4ae2_4bf7;

/// The magnitudes Q4_K and Q5_K hold: their f16 `dmin` is the largest
/// sub-block minimum over 63.
const K_AFFINE_LIMITS: MagnitudeLimits = MagnitudeLimits {
    below: 63.0 * F16_OVERFLOW,
    saturate_to: f32::from_bits(0x4a7b_f03f),
};

// Row i of FORMATS describes the format whose C value is i.
const _: () = {
    let mut i = 0;
    while i < FORMATS.len() {
        assert!(FORMATS[i].format as usize == i);
        i += 1;
    }
};

/// Every format, in order of their C values.
pub const ALL_FORMATS: [Format; FORMATS.len()] = {
    let mut all = [Format::F32; FORMATS.len()];
    let mut i = 0;
    while i < FORMATS.len() {
        all[i] = FORMATS[i].format;
        i += 1;
    }
    all
};

/// The names a precision key accepts, for messages: the precision levels,
/// then the formats ("FP32, FP16, BF16, INT8, INT4, INT5, INT6, or a format:
/// F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, IQ4_NL, Q4_K, Q5_K, Q6_K").
pub fn accepted_names() -> String {
    let mut levels: Vec<&str> = Vec::new();
    for spec in &FORMATS {
        if !levels.contains(&spec.precision_level()) {
            levels.push(spec.precision_level());
        }
    }
    let names: Vec<&str> = FORMATS.iter().map(FormatSpec::name).collect();
    format!("{}, or a format: {}", levels.join(", "), names.join(", "))
}

/// Every format other than F32 (what quantizing produces), in order of
/// their C values.
pub const QUANTIZED_FORMATS: [Format; FORMATS.len() - 1] = {
    let mut quantized = [Format::F32; FORMATS.len() - 1];
    let mut i = 0;
    while i < quantized.len() {
        quantized[i] = FORMATS[i + 1].format;
        i += 1;
    }
    quantized
};

impl Format {
    /// The format's descriptor.
    pub const fn spec(self) -> &'static FormatSpec {
        &FORMATS[self as usize]
    }

    /// The format with C value `value`, or an error naming the bad value.
    pub fn from_raw(value: i32) -> Result<Format> {
        usize::try_from(value)
            .ok()
            .and_then(|row| FORMATS.get(row))
            .map(|spec| spec.format)
            .ok_or_else(|| Error::invalid(format!("unknown format value {value}")))
    }

    /// The format named `name`: its canonical name or one of its aliases,
    /// case-insensitive ("q8_0", "int8", "fp16").
    pub fn from_name(name: &str) -> Result<Format> {
        let wanted = name.trim();
        FORMATS
            .iter()
            .find(|spec| {
                spec.name().eq_ignore_ascii_case(wanted)
                    || spec.aliases.iter().any(|a| a.eq_ignore_ascii_case(wanted))
            })
            .map(|spec| spec.format)
            .ok_or_else(|| Error::invalid(format!("unknown format name '{name}'")))
    }

    /// The canonical name: "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1",
    /// "Q5_0", "IQ4_NL", "Q4_K", "Q5_K", "Q6_K".
    pub fn name(self) -> &'static str {
        self.spec().name()
    }

    /// Elements per block (1 for the per-element formats).
    pub const fn block_size(self) -> usize {
        self.spec().block_size
    }

    /// Bytes per block, scales included.
    pub const fn block_bytes(self) -> usize {
        self.spec().block_bytes
    }

    /// Storage bits per weight, scales included.
    pub fn bits_per_weight(self) -> f64 {
        self.spec().bits_per_weight
    }

    /// The precision level the trainer's config speaks of.
    pub fn precision_level(self) -> &'static str {
        self.spec().precision_level()
    }

    /// Ok when the Vulkan backend has the `family` kernels of this format,
    /// else an Unsupported error that says so (the Vulkan entry points call
    /// it first, so a format without kernels never reaches a shader lookup).
    pub fn require_vulkan(self, family: VulkanFamily) -> Result<()> {
        if self.spec().vulkan.has(family) {
            return Ok(());
        }
        let what = match family {
            VulkanFamily::Conversions => "quantize/dequantize",
            VulkanFamily::Matvec => "matvec",
            VulkanFamily::MatvecDot => "integer-dot matvec",
            VulkanFamily::Matmul => "matmul",
        };
        Err(Error::unsupported(format!(
            "{} has no Vulkan {what} kernel: use the CPU functions (and host tensors) for it",
            self.name()
        )))
    }

    /// Every format with the Vulkan `family` kernels, in order of C values.
    pub fn with_vulkan(family: VulkanFamily) -> impl Iterator<Item = Format> {
        ALL_FORMATS
            .into_iter()
            .filter(move |f| f.spec().vulkan.has(family))
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
    fn the_table_is_coherent() {
        let mut names = std::collections::HashSet::new();
        for (row, spec) in FORMATS.iter().enumerate() {
            let f = spec.format;
            // C values are the rows: distinct and dense from 0.
            assert_eq!(f as usize, row);
            assert_eq!(Format::from_raw(f as i32).unwrap(), f);
            assert_eq!(f.spec(), spec);
            // Sizes agree with one another.
            assert_eq!(
                spec.bits_per_weight,
                (spec.block_bytes * 8) as f64 / spec.block_size as f64,
                "{f:?}"
            );
            assert!([1, QK, QK_K].contains(&spec.block_size), "{f:?}");
            assert_eq!(f.is_block(), spec.cpu.error_minimising, "{f:?}");
            // Every name and alias finds its format, in any case, and no
            // name belongs to two formats.
            for name in std::iter::once(spec.name()).chain(spec.aliases.iter().copied()) {
                assert!(names.insert(name.to_ascii_lowercase()), "{name} twice");
                assert_eq!(Format::from_name(name).unwrap(), f);
                assert_eq!(Format::from_name(&name.to_ascii_uppercase()).unwrap(), f);
                assert_eq!(Format::from_name(&name.to_ascii_lowercase()).unwrap(), f);
            }
            assert_eq!(spec.shader_tag, spec.name().to_ascii_lowercase());
            let limits = spec.limits;
            assert!(limits.saturate_to < limits.below, "{f:?}");
            assert!(limits.saturate_to.is_finite(), "{f:?}");
            assert_eq!(spec.estimated_snr_db.is_infinite(), f == Format::F32);
        }
        for level in accepted_names()
            .split(", or a format: ")
            .next()
            .unwrap()
            .split(", ")
        {
            assert!(Format::from_name(level).is_ok(), "{level} does not parse");
        }
        assert_eq!(ALL_FORMATS.len(), FORMATS.len());
        assert_eq!(QUANTIZED_FORMATS, ALL_FORMATS[1..]);
        assert!(Format::from_raw(FORMATS.len() as i32).is_err());
        assert!(Format::from_raw(-1).is_err());
        assert!(Format::from_name("q5_1").is_err());
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
            (Format::Q5_0, 22, 5.5),
            (Format::IQ4_NL, 18, 4.5),
            (Format::Q4_K, 144, 4.5),
            (Format::Q5_K, 176, 5.5),
            (Format::Q6_K, 210, 6.5625),
        ];
        for (f, bytes, bits) in expect {
            assert_eq!(f.block_bytes(), bytes);
            assert_eq!(f.bits_per_weight(), bits);
        }
        assert_eq!(Format::Q4_0.size_of(64).unwrap(), 36);
        assert_eq!(Format::Q4_0.count_in(36).unwrap(), 64);
        assert!(Format::Q4_0.count_in(35).is_err());
        assert_eq!(Format::Q5_0.size_of(64).unwrap(), 44);
        assert_eq!(Format::Q4_K.size_of(512).unwrap(), 288);
        assert_eq!(Format::Q6_K.count_in(420).unwrap(), 512);
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
        // A MiniLM row of 384 is not whole super-blocks; the flattened
        // 384x384 matrix (576 super-blocks) is.
        let err = Format::Q4_K.size_of(384).unwrap_err();
        assert!(
            err.message().contains("not a multiple of 256") && err.message().contains("512"),
            "{}",
            err.message()
        );
        assert_eq!(Format::Q4_K.size_of(384 * 384).unwrap(), 576 * 144);
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
