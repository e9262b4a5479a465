//! The kernel table the build generates from build_support/shaders.rs: one
//! [`KernelId`] per pipeline, each kernel's facts ([`Kernel`]: SPIR-V, debug
//! name, family, grid, the device features it needs), and which kernel does
//! what ([`op_kernels`], [`matvec_kernel`]). Dispatch code holds
//! `KernelId`s and indexes by them; a kernel's name is its debug name and its
//! name in reports.

use super::family::Family;
use crate::format::{Format, VulkanFamily};

/// Which kernel of a format: the jobs whose variant the self-test chooses
/// (the conversions of the Convert family and the products of the Matmul
/// family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Quantize,
    Dequantize,
    DequantizeF16,
    FakeQuantize,
    /// Y = X·Wᵀ (+ bias) for a batch of tokens.
    Matmul,
    /// dX = dY·W for a batch of tokens.
    MatmulTransposed,
}

impl Op {
    /// The conversions of a format, in the order the self-test and bench-vk
    /// run and report them.
    pub const CONVERSIONS: [Op; 4] = [
        Op::Quantize,
        Op::Dequantize,
        Op::DequantizeF16,
        Op::FakeQuantize,
    ];

    /// The products of a format, in the order the self-test and
    /// bench-vk-matmul run and report them.
    pub const PRODUCTS: [Op; 2] = [Op::Matmul, Op::MatmulTransposed];

    /// The family of kernels a format must have for this job.
    pub fn family(self) -> VulkanFamily {
        match self {
            Op::Quantize | Op::Dequantize | Op::DequantizeF16 | Op::FakeQuantize => {
                VulkanFamily::Conversions
            }
            Op::Matmul | Op::MatmulTransposed => VulkanFamily::Matmul,
        }
    }
}

/// Which shader a matrix-vector product runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatvecVariant {
    /// Forward, reduction with subgroupAdd.
    Subgroup,
    /// Forward, reduction through shared memory (no optional feature).
    Compat,
    /// Forward, the block formats only: x rounded to int8 per block in
    /// every workgroup, integer dot products (needs subgroup arithmetic and
    /// shaderIntegerDotProduct).
    Dot,
    /// As `Dot`, with x rounded once per product by `matvec_round_f32_q8`
    /// into a scratch buffer before it (the same bits as `Dot`).
    DotPre,
    /// The transposed product (one variant, no optional feature).
    Transposed,
}

/// One compiled kernel: an index into the build's table. The constants
/// (`KernelId::QUANTIZE_F32_Q4_0`, ...) are the variants' names upper-cased.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KernelId(u16);

/// What the build knows of a kernel.
#[derive(Debug)]
pub struct Kernel {
    /// `<op>_<in>_<out>[_<variant>]`: the pipeline's debug name.
    pub name: &'static str,
    /// `name`, NUL-terminated: the debug label around its dispatches.
    pub label: &'static std::ffi::CStr,
    pub spirv: &'static [u8],
    pub family: Family,
    /// How an element-sized kernel's grid is sized (None for the matvec
    /// kernels, whose module sizes their grids).
    pub grid: Option<Grid>,
    /// The optional device features its SPIR-V's capabilities need.
    pub needs: Needs,
    /// Bytes of its push-constant block, as its SPIR-V declares it.
    pub push_bytes: u32,
    /// Bytes of workgroup (shared) memory its SPIR-V declares.
    pub workgroup_bytes: u32,
    /// A matmul kernel's workgroup tile (compiled in as TILE_M and TILE_N:
    /// build_support/shaders.rs); 0 × 0 for the other kernels.
    pub matmul_tile: MatmulTile,
}

/// The tokens × outputs of a matmul kernel's workgroup: its grid is
/// ⌈tokens / `tokens`⌉ × ⌈outputs / `outputs`⌉ workgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulTile {
    pub tokens: u32,
    pub outputs: u32,
    /// The kernel reads X (dY) as rounded to f16 by
    /// [`KernelId::MATMUL_X_F16`] into a scratch buffer before it.
    pub x_f16: bool,
}

/// The workgroup memory every Vulkan device has: the least
/// maxComputeSharedMemorySize the specification allows (Table "Required
/// Limits"). A kernel within it runs on any device; one beyond it is a
/// fast variant that the engine offers only where the device has room.
pub const GUARANTEED_WORKGROUP_BYTES: u32 = 16384;

/// Elements per invocation and invocations per workgroup of a kernel, as the
/// build chose them and compiled them in (build_support/shaders.rs `grid`;
/// each shader checks them against its code at compile time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub per_invocation: u32,
    pub local_size: u32,
}

/// The optional features a kernel needs, read by the build from the
/// capabilities its SPIR-V declares. (The matvec variants' subgroup and
/// integer-dot needs are decided from the device's subgroup facts by
/// `MatvecChoice`, and the subgroups of 32 and the matrix shape the `_coop`
/// matmul kernels need by the device's query.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    /// storageBuffer16BitAccess: 16-bit loads and stores.
    pub storage_16bit: bool,
    /// shaderFloat16: f16 arithmetic.
    pub float16: bool,
    /// shaderRoundingModeRTEFloat16: RoundingModeRTE declared for f16.
    pub rounding_rte_f16: bool,
    /// shaderRoundingModeRTEFloat32: RoundingModeRTE declared for f32 (the
    /// Adam `_rte` variants).
    pub rounding_rte_f32: bool,
    /// shaderDenormPreserveFloat16: DenormPreserve declared for f16.
    pub denorm_preserve_f16: bool,
    /// shaderDenormPreserveFloat32: DenormPreserve declared for f32 (the
    /// Adam `_dp` variants).
    pub denorm_preserve_f32: bool,
    /// vulkanMemoryModel: the Vulkan memory model.
    pub vulkan_memory_model: bool,
    /// VK_KHR_cooperative_matrix (cooperativeMatrix): matrix units.
    pub cooperative_matrix: bool,
    /// Subgroup arithmetic in compute shaders (SPIR-V
    /// GroupNonUniformArithmetic: reductions across a subgroup), with
    /// subgroups of 4 to 128 invocations.
    pub subgroup_arithmetic: bool,
}

include!(concat!(env!("OUT_DIR"), "/shaders.rs"));

// Every kernel's push-constant block is its family's Rust twin, byte for byte
// in size (the build read the block from the SPIR-V), and every kernel that
// needs no optional feature (a compatible variant, which must run anywhere)
// fits the workgroup memory of any Vulkan device.
const _: () = {
    let mut i = 0;
    while i < KERNELS.len() {
        let k = &KERNELS[i];
        assert!(k.push_bytes == k.family.push_bytes());
        let needs_nothing = !(k.needs.storage_16bit
            || k.needs.float16
            || k.needs.rounding_rte_f16
            || k.needs.denorm_preserve_f16);
        assert!(
            !needs_nothing || k.workgroup_bytes <= GUARANTEED_WORKGROUP_BYTES,
            "a kernel that needs no optional feature takes more than the 16 KiB of \
             workgroup memory every Vulkan device has"
        );
        i += 1;
    }
};

impl KernelId {
    /// Every kernel, in table order.
    pub fn all() -> impl Iterator<Item = KernelId> {
        (0..KernelId::COUNT as u16).map(KernelId)
    }

    /// Its facts.
    pub fn kernel(self) -> &'static Kernel {
        &KERNELS[self.index()]
    }

    /// Its name (`quantize_f32_q4_0`).
    pub fn name(self) -> &'static str {
        self.kernel().name
    }

    /// Its position in the table (what per-kernel arrays are indexed by).
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The kernel named `name` (for settings and tests that name one).
    pub fn from_name(name: &str) -> Option<KernelId> {
        KernelId::all().find(|k| k.name() == name)
    }

    /// What kind of variant it is, from the features it needs, in words (for
    /// the context's report and `nyxq hwinfo`).
    pub fn describe(self) -> &'static str {
        let needs = self.kernel().needs;
        if needs.cooperative_matrix {
            "coop variant (cooperative matrices: f16 inputs, f32 sums)"
        } else if needs.denorm_preserve_f32 {
            "rte dp variant (f32 products and sums with subnormals preserved, round-to-nearest-even declared)"
        } else if needs.rounding_rte_f32 {
            "rte variant (f32 products and sums checked for exactness, round-to-nearest-even declared)"
        } else if needs.denorm_preserve_f16 {
            "rte variant (f16 arithmetic, round-to-nearest-even and f16 subnormals declared)"
        } else if needs.float16 {
            "rte variant (f16 arithmetic, round-to-nearest-even declared)"
        } else if needs.rounding_rte_f16 {
            "rte variant (hardware f16 conversion, round-to-nearest-even declared)"
        } else if needs.storage_16bit {
            "s16 variant (16-bit stores)"
        } else if self.kernel().family == Family::Matmul {
            "compat variant (f32 tiles in shared memory)"
        } else {
            "compat variant (32-bit words)"
        }
    }
}

impl std::fmt::Debug for KernelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for KernelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Grid {
    /// Workgroups of a dispatch over `n` elements (at least 1).
    pub fn groups(self, n: u32) -> u32 {
        n.div_ceil(self.per_invocation)
            .div_ceil(self.local_size)
            .max(1)
    }
}

/// The compatible kernel of `op` on `format` (32-bit words and integer
/// arithmetic only: no optional feature), if one exists.
pub fn compatible_kernel(op: Op, format: Format) -> Option<KernelId> {
    op_kernels(op, format).last().copied()
}

/// The fast variants of `op` on `format`, fastest first (none for most
/// kernels): `_rte_dp` (Q4_1 -> F16 in f16 arithmetic, f16 subnormals
/// preserved), `_rte` (f16 results by the hardware conversion or f16
/// arithmetic, declared round-to-nearest-even), `_s16` (Q8_0 quantize:
/// 16-bit stores), `_coop` (matmul with cooperative matrices). Each needs
/// optional features (`Engine::variant_supported`).
pub fn fast_kernels(op: Op, format: Format) -> &'static [KernelId] {
    op_kernels(op, format)
        .split_last()
        .map_or(&[], |(_, fast)| fast)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_f16_arithmetic_variants_need_float16() {
        // The conversions: the f16 `_rte` dequantizers; the products: every
        // `_coop` kernel (below) and the rounding of X to f16 before some.
        let float16: Vec<&str> = KernelId::all()
            .filter(|k| k.kernel().needs.float16 && !k.kernel().needs.cooperative_matrix)
            .map(KernelId::name)
            .collect();
        assert_eq!(
            float16,
            [
                "matmul_x_f16",
                "dequantize_q8_0_f16_rte",
                "dequantize_q4_0_f16_rte",
                "dequantize_q4_1_f16_rte_dp",
                "dequantize_q5_0_f16_rte"
            ]
        );
    }

    #[test]
    fn the_subgroup_reductions_and_only_they_need_subgroup_arithmetic() {
        // Read from each kernel's SPIR-V: the matrix-vector `_subgroup` and
        // `_dot` variants and the 8-bit Adam kernels that reduce a block in
        // a subgroup (all but the twin that cuts every reduction out).
        for kernel in KernelId::all() {
            let name = kernel.name();
            let reduces = (name.starts_with("matvec_")
                && (name.ends_with("_subgroup") || name.contains("_dot")))
                || (name.starts_with("adam_f32_q8_")
                    && (name.contains("_wide") || name.contains("_lanes"))
                    && !name.ends_with("_cut_all"));
            assert_eq!(
                kernel.kernel().needs.subgroup_arithmetic,
                reduces,
                "{kernel}"
            );
        }
    }

    #[test]
    fn the_coop_kernels_and_only_they_need_cooperative_matrices() {
        for kernel in KernelId::all() {
            let needs = kernel.kernel().needs;
            let coop = kernel.name().contains("_coop");
            assert_eq!(needs.cooperative_matrix, coop, "{kernel}");
            assert_eq!(needs.vulkan_memory_model, coop, "{kernel}");
            if coop {
                assert!(needs.float16 && !needs.storage_16bit, "{kernel}");
                assert_eq!(kernel.kernel().family, Family::Matmul, "{kernel}");
            }
        }
        // Every matmul tries the staged shape, then `_coop128`, then `_coop`.
        for format in crate::format::ALL_FORMATS {
            for (op, prefix) in [(Op::Matmul, "matmul"), (Op::MatmulTransposed, "matmul_t")] {
                let base = format!("{prefix}_{}_f32", format.name().to_lowercase());
                let names: Vec<&str> = fast_kernels(op, format).iter().map(|k| k.name()).collect();
                let expected = [
                    format!("{base}_coop128_sg16_k64_x16"),
                    format!("{base}_coop128"),
                    format!("{base}_coop"),
                ];
                assert_eq!(names, expected, "{op:?} {}", format.name());
            }
        }
        assert_eq!(
            compatible_kernel(Op::Matmul, Format::F32),
            Some(KernelId::MATMUL_F32_F32)
        );
    }

    #[test]
    fn matmul_kernels_and_only_they_have_a_tile() {
        for kernel in KernelId::all() {
            let k = kernel.kernel();
            let name = kernel.name();
            let tile = (k.matmul_tile.tokens, k.matmul_tile.outputs);
            let expected = match k.family {
                _ if kernel == KernelId::MATMUL_X_F16 => (0, 0),
                Family::Matmul if name.ends_with("_coop128") => (128, 128),
                // The other shapes of matmul_coop128.comp name their tile
                // where it is not 128 × 128.
                Family::Matmul if name.contains("_coop64x128") => (64, 128),
                Family::Matmul if name.contains("_coop128_") => (128, 128),
                Family::Matmul => (64, 64),
                _ => (0, 0),
            };
            assert_eq!(tile, expected, "{kernel}");
            let x_f16 = name.ends_with("_x16");
            assert_eq!(k.matmul_tile.x_f16, x_f16, "{kernel}");
        }
    }

    #[test]
    fn the_fast_variants_and_only_they_need_16_bit_storage() {
        for (kernel, storage16) in [
            (KernelId::QUANTIZE_F32_Q8_0_S16, true),
            (KernelId::QUANTIZE_F32_F16_RTE, true),
            (KernelId::DEQUANTIZE_Q4_1_F16_RTE, true),
            (KernelId::QUANTIZE_F32_Q8_0, false),
            (KernelId::DEQUANTIZE_Q4_1_F16, false),
            (KernelId::FAKE_QUANTIZE_F32_Q4_0, false),
        ] {
            assert_eq!(kernel.kernel().needs.storage_16bit, storage16, "{kernel}");
        }
        for op in Op::CONVERSIONS.into_iter().chain(Op::PRODUCTS) {
            for format in crate::format::ALL_FORMATS {
                if let Some(compatible) = compatible_kernel(op, format) {
                    assert_eq!(compatible.kernel().needs, Needs::default(), "{compatible}");
                }
            }
        }
    }

    #[test]
    fn each_kind_of_variant_is_described_from_its_needs() {
        for (kernel, words) in [
            (
                KernelId::DEQUANTIZE_Q4_1_F16_RTE_DP,
                "f16 arithmetic, round-to-nearest-even and f16 subnormals",
            ),
            (
                KernelId::DEQUANTIZE_Q4_0_F16_RTE,
                "f16 arithmetic, round-to-nearest-even declared",
            ),
            (KernelId::DEQUANTIZE_Q4_1_F16_RTE, "hardware f16 conversion"),
            (
                KernelId::DEQUANTIZE_IQ4_NL_F16_RTE,
                "hardware f16 conversion",
            ),
            (KernelId::QUANTIZE_F32_F16_RTE, "hardware f16 conversion"),
            (
                KernelId::QUANTIZE_F32_Q8_0_S16,
                "s16 variant (16-bit stores)",
            ),
            (KernelId::QUANTIZE_F32_Q8_0, "compat variant (32-bit words)"),
        ] {
            assert!(
                kernel.describe().contains(words),
                "{kernel}: {}",
                kernel.describe()
            );
        }
        // Subnormal preservation is declared for f16 by the Q4_1 `_rte_dp`
        // variant only.
        let denorm: Vec<KernelId> = KernelId::all()
            .filter(|k| k.kernel().needs.denorm_preserve_f16)
            .collect();
        assert_eq!(denorm, [KernelId::DEQUANTIZE_Q4_1_F16_RTE_DP]);
        // For f32, by the Adam `_dp` kernels (and the probe twin of one).
        let denorm32: Vec<KernelId> = KernelId::all()
            .filter(|k| k.kernel().needs.denorm_preserve_f32)
            .collect();
        assert_eq!(
            denorm32,
            [
                KernelId::ADAM_F32_F32_RTE_DP_FMA_X4,
                KernelId::ADAM_F32_F32_RTE_DP_X4,
                KernelId::ADAM_F32_Q8_RTE_DP_FMA_LANES,
                KernelId::ADAM_F32_Q8_RTE_DP_LANES,
                KernelId::ADAM_F32_F32_RTE_DP_X4_PROBE,
            ]
        );
    }

    #[test]
    fn the_table_holds_each_kernels_grid() {
        let grid = |kernel: KernelId| kernel.kernel().grid;
        let g = |per_invocation, local_size| {
            Some(Grid {
                per_invocation,
                local_size,
            })
        };
        assert_eq!(grid(KernelId::COPY_F32_F32), g(4, 256));
        assert_eq!(grid(KernelId::UNSCALE_F32), g(1, 256));
        assert_eq!(grid(KernelId::IMPORTANCE_F32), g(1, 256));
        assert_eq!(grid(KernelId::QUANTIZE_F32_F16), g(4, 256));
        assert_eq!(grid(KernelId::QUANTIZE_F32_Q4_0), g(32, 64));
        assert_eq!(grid(KernelId::QUANTIZE_F32_Q5_0), g(32, 64));
        assert_eq!(grid(KernelId::FAKE_QUANTIZE_F32_Q8_0), g(32, 64));
        assert_eq!(grid(KernelId::DEQUANTIZE_F16_F32), g(8, 256));
        assert_eq!(grid(KernelId::DEQUANTIZE_Q8_0_F32), g(8, 256));
        assert_eq!(grid(KernelId::DEQUANTIZE_Q4_1_F16), g(8, 256));
        for kernel in [
            KernelId::DEQUANTIZE_Q8_0_F16_RTE,
            KernelId::DEQUANTIZE_Q4_1_F16_RTE,
            KernelId::DEQUANTIZE_Q4_1_F16_RTE_DP,
            KernelId::DEQUANTIZE_Q5_0_F16_RTE,
            KernelId::DEQUANTIZE_IQ4_NL_F16_RTE,
        ] {
            assert_eq!(grid(kernel), g(32, 256), "{kernel}");
        }
        assert_eq!(grid(KernelId::MATVEC_Q4_0_F32), None);
        assert_eq!(g(32, 64).unwrap().groups(0), 1);
        assert_eq!(g(32, 64).unwrap().groups(32 * 64 + 1), 2);
    }

    #[test]
    fn names_and_ids_agree() {
        for kernel in KernelId::all() {
            assert_eq!(KernelId::from_name(kernel.name()), Some(kernel));
            assert_eq!(kernel.kernel().label.to_str(), Ok(kernel.name()));
        }
        assert_eq!(KernelId::from_name("no_such_variant"), None);
    }

    #[test]
    fn fast_variants_come_fastest_first() {
        assert_eq!(
            fast_kernels(Op::DequantizeF16, Format::Q4_1),
            [
                KernelId::DEQUANTIZE_Q4_1_F16_RTE_DP,
                KernelId::DEQUANTIZE_Q4_1_F16_RTE
            ]
        );
        assert_eq!(
            fast_kernels(Op::Quantize, Format::Q8_0),
            [KernelId::QUANTIZE_F32_Q8_0_S16]
        );
        assert!(fast_kernels(Op::Dequantize, Format::Q4_0).is_empty());
        assert_eq!(
            compatible_kernel(Op::Quantize, Format::F32),
            Some(KernelId::COPY_F32_F32)
        );
        assert_eq!(compatible_kernel(Op::DequantizeF16, Format::F32), None);
    }

    #[test]
    fn every_matvec_variant_has_its_kernel() {
        use crate::format::VulkanFamily;
        for format in Format::with_vulkan(VulkanFamily::Matvec) {
            for variant in [
                MatvecVariant::Subgroup,
                MatvecVariant::Compat,
                MatvecVariant::Transposed,
            ] {
                let kernel = matvec_kernel(variant, format).expect("built");
                assert_eq!(kernel.kernel().family, Family::Matvec);
            }
            let dot = format.spec().vulkan.matvec_dot;
            assert_eq!(matvec_kernel(MatvecVariant::Dot, format).is_some(), dot);
            assert_eq!(matvec_kernel(MatvecVariant::DotPre, format).is_some(), dot);
        }
        assert_eq!(
            KernelId::MATVEC_ROUND_F32_Q8.kernel().family,
            Family::Matvec
        );
    }
}
