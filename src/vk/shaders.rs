//! The compiled shader variants (built by build_support/shaders.rs) and the
//! push-constant block they share.

include!(concat!(env!("OUT_DIR"), "/shaders.rs"));

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
    VARIANTS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
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

/// Units of 4 values one invocation of an F16/BF16 dequantize kernel decodes
/// (shaders/dequantize.comp's UNITS; experiment variants end in `_u<N>`).
pub(crate) const DEQUANTIZE_UNITS: u32 = 2;

/// How many elements one invocation handles, for sizing the grid.
pub fn elements_per_invocation(name: &str) -> u32 {
    if name.starts_with("unscale") {
        1
    } else if name.starts_with("dequantize") && is_block_kernel(name) {
        // Block dequantize: 8 values of one block (shaders/dequantize.comp),
        // 4 such lanes in the `_rte` variants (FOUR_LANES).
        if name.contains("_rte") { 32 } else { 8 }
    } else if name.starts_with("dequantize") {
        let units = name
            .rsplit_once("_u")
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(DEQUANTIZE_UNITS);
        4 * units
    } else if is_block_kernel(name) {
        // Block quantize and fake-quantize: each invocation holds 4 rounds
        // of 8 values (shaders/block_group.glsl).
        32
    } else {
        // copy and the F16/BF16 quantize kernels: 4 values per invocation.
        4
    }
}

/// local_size_x of the variant `name` (shaders/common.glsl's LOCAL_SIZE): 256
/// (the H200 measured a launch-rate limit with groups of 64 for one-pass
/// kernels), except 64 for the block quantize and fake-quantize kernels,
/// whose barrier-separated steps need many resident groups.
pub fn workgroup_size(name: &str) -> u32 {
    if is_block_kernel(name) && !name.starts_with("dequantize") {
        64
    } else {
        256
    }
}

/// Whether the variant `name` reads or writes a block format.
fn is_block_kernel(name: &str) -> bool {
    ["_q8_0", "_q4_0", "_q4_1"]
        .iter()
        .any(|tag| name.contains(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_f16_arithmetic_variants_need_float16() {
        let float16 = |name| capabilities(name).contains(&CAPABILITY_FLOAT16);
        assert!(float16("dequantize_q8_0_f16_rte"));
        assert!(float16("dequantize_q4_0_f16_rte"));
        // Q4_1 rounds in f32, then converts; the others convert only.
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
    fn block_dequantizers_take_8_values_per_invocation_and_32_in_rte() {
        for name in ["dequantize_q8_0_f32", "dequantize_q4_1_f16"] {
            assert_eq!(elements_per_invocation(name), 8, "{name}");
        }
        for name in ["dequantize_q8_0_f16_rte", "dequantize_q4_1_f16_rte"] {
            assert_eq!(elements_per_invocation(name), 32, "{name}");
        }
        assert_eq!(
            elements_per_invocation("dequantize_f16_f32"),
            4 * DEQUANTIZE_UNITS
        );
    }
}
