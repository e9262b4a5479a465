//! The compiled shader variants (built by build_support/shaders.rs) and the
//! push-constant block they share.

/// A compiled shader variant (`<op>_<in>_<out>[_<kind>]`, also its pipeline's
/// debug name).
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    pub name: &'static str,
    pub spirv: &'static [u8],
    /// How a quantize/dequantize kernel's grid is sized (None for the
    /// matvec kernels, whose module sizes their grids).
    pub grid: Option<Grid>,
}

/// Elements per invocation and invocations per workgroup of a kernel, as the
/// build chose them and compiled them in (build_support/shaders.rs `grid`;
/// each shader checks them against its code at compile time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub per_invocation: u32,
    pub local_size: u32,
}

include!(concat!(env!("OUT_DIR"), "/shaders.rs"));

/// The variant `name`, if it exists.
pub fn variant(name: &str) -> Option<&'static Variant> {
    VARIANTS.iter().find(|v| v.name == name)
}

/// Rust twin of `Push` in shaders/common.glsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Push {
    pub n_elements: u32,
    pub stochastic: u32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub first_lo: u32,
    pub first_hi: u32,
    pub perturb: u32,
    pub pad1: u32,
}

const _: () = assert!(size_of::<Push>() == 32);
const _: () = assert!(size_of::<Push>() <= 128);

impl Push {
    pub fn bytes(&self) -> [u8; 32] {
        let words = [
            self.n_elements,
            self.stochastic,
            self.seed_lo,
            self.seed_hi,
            self.first_lo,
            self.first_hi,
            self.perturb,
            self.pad1,
        ];
        let mut out = [0u8; 32];
        for (chunk, w) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        out
    }
}

impl Push {
    /// The push constants of `unscale_f32` over `n` gradients: multiply by
    /// `inverse`, exactly in integers when it is 2^-k (k >= 0).
    pub fn unscale(n: u32, inverse: f32) -> Push {
        let bits = inverse.to_bits();
        let exponent = (bits >> 23) as i32 - 127;
        let pow2 = bits & 0x807f_ffff == 0 && (-126..=0).contains(&exponent);
        Push {
            n_elements: n,
            stochastic: bits,
            seed_lo: if pow2 { (-exponent) as u32 } else { 0 },
            seed_hi: u32::from(pow2),
            ..Push::default()
        }
    }
}

/// The SPIR-V of the variant `name`, if it exists.
pub fn spirv(name: &str) -> Option<&'static [u8]> {
    variant(name).map(|v| v.spirv)
}

/// SPIR-V capability: f16 arithmetic (the device needs shaderFloat16).
pub const CAPABILITY_FLOAT16: u32 = 9;
/// SPIR-V capability: 16-bit loads and stores of storage buffers (the
/// device needs storageBuffer16BitAccess).
pub const CAPABILITY_STORAGE_16BIT: u32 = 4433;
/// SPIR-V capability: the execution mode DenormPreserve (nyxq declares it
/// for 16-bit floats only: the device needs shaderDenormPreserveFloat16).
pub const CAPABILITY_DENORM_PRESERVE: u32 = 4464;
/// SPIR-V capability: the execution mode RoundingModeRTE (nyxq declares it
/// for 16-bit floats only: the device needs shaderRoundingModeRTEFloat16).
pub const CAPABILITY_ROUNDING_RTE: u32 = 4467;

/// The capabilities the SPIR-V of the variant `name` declares (none for an
/// unknown name).
pub fn capabilities(name: &str) -> Vec<u32> {
    const OP_CAPABILITY: u32 = 17;
    let Some(spirv) = spirv(name) else {
        return Vec::new();
    };
    let words: Vec<u32> = spirv
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    // After the 5-word header, instructions are (word count << 16 | opcode);
    // the capabilities come first.
    let mut out = Vec::new();
    let mut at = 5;
    while let Some(&first) = words.get(at) {
        let (count, opcode) = ((first >> 16) as usize, first & 0xffff);
        if opcode != OP_CAPABILITY || count < 2 {
            break;
        }
        out.extend(words.get(at + 1));
        at += count;
    }
    out
}

/// What kind of variant `name` is, from the capabilities its SPIR-V
/// declares, in words (for the context's report and `nyxq hwinfo`).
pub fn describe_variant(name: &str) -> &'static str {
    let caps = capabilities(name);
    if caps.contains(&CAPABILITY_DENORM_PRESERVE) {
        "rte variant (f16 arithmetic, round-to-nearest-even and f16 subnormals declared)"
    } else if caps.contains(&CAPABILITY_FLOAT16) {
        "rte variant (f16 arithmetic, round-to-nearest-even declared)"
    } else if caps.contains(&CAPABILITY_ROUNDING_RTE) {
        "rte variant (hardware f16 conversion, round-to-nearest-even declared)"
    } else if caps.contains(&CAPABILITY_STORAGE_16BIT) {
        "s16 variant (16-bit stores)"
    } else {
        "compat variant (32-bit words)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_f16_arithmetic_variants_need_float16() {
        let float16 = |name| capabilities(name).contains(&CAPABILITY_FLOAT16);
        assert!(float16("dequantize_q8_0_f16_rte"));
        assert!(float16("dequantize_q4_0_f16_rte"));
        assert!(float16("dequantize_q4_1_f16_rte_dp"));
        // Q4_1's `_rte` rounds in f32, then converts; the others convert only.
        for name in [
            "dequantize_q4_1_f16_rte",
            "dequantize_bf16_f16_rte",
            "quantize_f32_f16_rte",
            "quantize_f32_q8_0_s16",
            "dequantize_q4_0_f16",
            "copy_f32_f32",
            "no_such_variant",
        ] {
            assert!(!float16(name), "{name}");
        }
    }

    #[test]
    fn the_fast_variants_and_only_they_need_16_bit_storage() {
        for (name, storage16) in [
            ("quantize_f32_q8_0_s16", true),
            ("quantize_f32_f16_rte", true),
            ("dequantize_q4_1_f16_rte", true),
            ("quantize_f32_q8_0", false),
            ("dequantize_q4_1_f16", false),
            ("fake_quantize_f32_q4_0", false),
        ] {
            let caps = capabilities(name);
            assert_eq!(
                caps.contains(&CAPABILITY_STORAGE_16BIT),
                storage16,
                "{name}"
            );
            // Every variant declares Shader (1).
            assert!(caps.contains(&1), "{name}");
        }
    }

    #[test]
    fn each_kind_of_variant_is_described_from_its_capabilities() {
        for (name, words) in [
            (
                "dequantize_q4_1_f16_rte_dp",
                "f16 arithmetic, round-to-nearest-even and f16 subnormals",
            ),
            (
                "dequantize_q4_0_f16_rte",
                "f16 arithmetic, round-to-nearest-even declared",
            ),
            ("dequantize_q4_1_f16_rte", "hardware f16 conversion"),
            ("quantize_f32_f16_rte", "hardware f16 conversion"),
            ("quantize_f32_q8_0_s16", "s16 variant (16-bit stores)"),
            ("quantize_f32_q8_0", "compat variant (32-bit words)"),
        ] {
            assert!(
                describe_variant(name).contains(words),
                "{name}: {}",
                describe_variant(name)
            );
        }
        // Subnormal preservation is declared by the Q4_1 `_rte_dp` variant only.
        let denorm = VARIANTS
            .iter()
            .filter(|v| capabilities(v.name).contains(&CAPABILITY_DENORM_PRESERVE))
            .map(|v| v.name)
            .collect::<Vec<_>>();
        assert_eq!(denorm, ["dequantize_q4_1_f16_rte_dp"]);
    }

    #[test]
    fn the_table_holds_each_kernels_grid() {
        let grid = |name| variant(name).and_then(|v| v.grid);
        let g = |per_invocation, local_size| {
            Some(Grid {
                per_invocation,
                local_size,
            })
        };
        assert_eq!(grid("copy_f32_f32"), g(4, 256));
        assert_eq!(grid("unscale_f32"), g(1, 256));
        assert_eq!(grid("quantize_f32_f16"), g(4, 256));
        assert_eq!(grid("quantize_f32_q4_0"), g(32, 64));
        assert_eq!(grid("fake_quantize_f32_q8_0"), g(32, 64));
        assert_eq!(grid("dequantize_f16_f32"), g(8, 256));
        assert_eq!(grid("dequantize_q8_0_f32"), g(8, 256));
        assert_eq!(grid("dequantize_q4_1_f16"), g(8, 256));
        for name in [
            "dequantize_q8_0_f16_rte",
            "dequantize_q4_1_f16_rte",
            "dequantize_q4_1_f16_rte_dp",
        ] {
            assert_eq!(grid(name), g(32, 256), "{name}");
        }
        assert_eq!(grid("matvec_q4_0_f32"), None);
        assert!(variant("no_such_variant").is_none());
    }
}
