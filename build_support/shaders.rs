//! The one table of shader variants, and their compilation. Every variant
//! (`<op>_<in>_<out>[_<variant>]`, the name of its Rust `KernelId` constant,
//! upper-cased, and of its pipeline) is compiled by glslc with
//! `--target-env=vulkan1.2 -Werror` and depfiles so an edited include
//! triggers a rebuild; any diagnostic fails the build. Writes
//! OUT_DIR/shaders.rs, which src/vk/shaders.rs includes: the `KernelId`
//! constants, each kernel's facts (SPIR-V, debug name, family, grid, the
//! device features its capabilities need, its push-constant bytes) and
//! which kernel does what.

#[path = "spirv.rs"]
pub mod spirv;
#[path = "spirv_cache.rs"]
pub mod spirv_cache;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The defines a fast variant adds to its compatible one.
type Defines = &'static [&'static str];
/// `_rte`: f32 -> f16 by the hardware conversion, declared
/// round-to-nearest-even (16-bit storage and float controls needed).
const RTE: Defines = &["HW_F16"];
/// `_rte` of a block format: 4 lanes of 8 values per invocation.
const RTE_LANES: Defines = &["HW_F16", "FOUR_LANES"];
/// `_rte` of a block format in f16 arithmetic (shaderFloat16), with the
/// input staged in shared memory. (Q4_1's fma can give f16 subnormals, so
/// its variant of this kind is `_rte_dp`, which declares DenormPreserve for
/// 16-bit floats; its `_rte` converts from f32 and loads directly.)
const RTE_F16_MATH: Defines = &["HW_F16", "FOUR_LANES", "F16_MATH", "STAGE_SHARED"];
/// `_s16`: Q8_0's 34-byte blocks stored as 16-bit halves straight from the
/// lanes (16-bit storage needed) instead of through shared memory.
const STORE16: Defines = &["STORE16"];

/// The GPU kernels of one format: adding a format's variants is adding its
/// entry to [`FORMATS`] (and its decoding to shaders/blocks.glsl).
pub struct FormatKernels {
    /// The format's name in variant names (`<in>`, `<out>`); upper-cased, its
    /// `FORMAT_*` define and its Rust `Format` variant.
    pub tag: &'static str,
    /// A block format: quantized a group of blocks per workgroup
    /// (shaders/block_group.glsl), dequantized in lanes of 8 values. The
    /// others dequantize in units of 4 values, 2 units per invocation
    /// (measured best; other counts with NYXQ_SHADER_EXPERIMENTS=1).
    pub block: bool,
    /// A K-quant (shaders/kquant.glsl): super-blocks of 256, quantized one
    /// per workgroup (shaders/kquant_group.glsl), dequantized in lanes of 8
    /// values; no fast variants yet.
    pub super_block: bool,
    /// Fast variants of `quantize_f32_<tag>`, fastest first: (suffix, defines).
    pub quantize_fast: &'static [(&'static str, Defines)],
    /// Fast variants of `dequantize_<tag>_f16`, fastest first.
    pub dequantize_f16_fast: &'static [(&'static str, Defines)],
    /// `matvec_<tag>_f32_dot` and `_dot_pre`: x rounded to int8, integer
    /// dot products.
    pub matvec_dot: bool,
}

/// Every format with GPU kernels (F32 has the copy kernel and the matvec ones).
pub const FORMATS: [FormatKernels; 10] = [
    FormatKernels {
        tag: "f16",
        block: false,
        super_block: false,
        quantize_fast: &[("_rte", RTE)],
        dequantize_f16_fast: &[],
        matvec_dot: false,
    },
    FormatKernels {
        tag: "bf16",
        block: false,
        super_block: false,
        quantize_fast: &[],
        dequantize_f16_fast: &[("_rte", RTE)],
        matvec_dot: false,
    },
    FormatKernels {
        tag: "q8_0",
        block: true,
        super_block: false,
        quantize_fast: &[("_s16", STORE16)],
        dequantize_f16_fast: &[("_rte", RTE_F16_MATH)],
        matvec_dot: true,
    },
    FormatKernels {
        tag: "q4_0",
        block: true,
        super_block: false,
        quantize_fast: &[],
        dequantize_f16_fast: &[("_rte", RTE_F16_MATH)],
        matvec_dot: true,
    },
    FormatKernels {
        tag: "q4_1",
        block: true,
        super_block: false,
        quantize_fast: &[],
        dequantize_f16_fast: &[("_rte_dp", RTE_F16_MATH), ("_rte", RTE_LANES)],
        matvec_dot: true,
    },
    FormatKernels {
        tag: "q5_0",
        block: true,
        super_block: false,
        quantize_fast: &[],
        dequantize_f16_fast: &[("_rte", RTE_F16_MATH)],
        matvec_dot: true,
    },
    FormatKernels {
        tag: "iq4_nl",
        block: true,
        super_block: false,
        quantize_fast: &[],
        // The hardware conversion of the f32 values (the levels are a table,
        // not the f16 arithmetic's biased bytes).
        dequantize_f16_fast: &[("_rte", RTE_LANES)],
        matvec_dot: true,
    },
    k_quant("q4_k"),
    k_quant("q5_k"),
    k_quant("q6_k"),
];

/// The kernels of a K-quant (Q4_K, Q5_K, Q6_K): the compatible conversions
/// and products (no integer-dot product).
const fn k_quant(tag: &'static str) -> FormatKernels {
    FormatKernels {
        tag,
        block: true,
        super_block: true,
        quantize_fast: &[],
        dequantize_f16_fast: &[],
        matvec_dot: false,
    }
}

/// The `FORMAT_*` define of the format `tag` ("FORMAT_Q4_0").
fn format_define(tag: &str) -> String {
    format!("FORMAT_{}", tag.to_uppercase())
}

/// What a variant does, in the names of the Rust types the generated table
/// refers to (`Op`, `MatvecVariant`, `Format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `Op::<op>` on the format `tag` (a conversion or a matmul); within one
    /// (op, format), the variants come fastest first and the compatible one
    /// (no optional feature) last, and the self-test chooses among them.
    Job { op: &'static str, tag: &'static str },
    /// A measurement-only variant of `Op::<op>` on `tag` (never chosen).
    Experiment { op: &'static str, tag: &'static str },
    /// `MatvecVariant::<variant>` on `tag`.
    Matvec {
        variant: &'static str,
        tag: &'static str,
    },
    /// A measurement-only twin of the 8-bit Adam step (never chosen).
    AdamTwin,
}

/// One pipeline: name, source file, defines and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// `<op>_<in>_<out>[_<variant>]`: the Rust constant (upper-cased) and
    /// the pipeline's debug name.
    pub name: String,
    pub file: &'static str,
    pub defines: Vec<String>,
    pub roles: Vec<Role>,
}

fn variant(name: String, file: &'static str, defines: &[&str], roles: &[Role]) -> Variant {
    Variant {
        name,
        file,
        defines: defines.iter().map(|d| d.to_string()).collect(),
        roles: roles.to_vec(),
    }
}

impl FormatKernels {
    /// Its quantize, dequantize (to f32 and f16) and fake-quantize variants.
    fn convert_variants(&self) -> Vec<Variant> {
        let tag = self.tag;
        let format = format_define(tag);
        let format = format.as_str();
        let units: &[&str] = if self.block { &[] } else { &["UNITS=2u"] };
        let mut v = Vec::new();
        let mut op = |op, name: String, base: &[&str], fast: &[(&str, Defines)]| {
            let role = [Role::Job { op, tag }];
            for (suffix, extra) in fast {
                let defines = [base, extra].concat();
                v.push(variant(
                    format!("{name}{suffix}"),
                    file_of(op),
                    &defines,
                    &role,
                ));
            }
            v.push(variant(name, file_of(op), base, &role));
        };
        op(
            "Quantize",
            format!("quantize_f32_{tag}"),
            &[format],
            self.quantize_fast,
        );
        op(
            "Dequantize",
            format!("dequantize_{tag}_f32"),
            &[&[format], units].concat(),
            &[],
        );
        op(
            "DequantizeF16",
            format!("dequantize_{tag}_f16"),
            &[&[format, "OUT_F16"], units].concat(),
            self.dequantize_f16_fast,
        );
        op(
            "FakeQuantize",
            format!("fake_quantize_f32_{tag}"),
            &[format],
            &[],
        );
        // Measurement only (NYXQ_SHADER_EXPERIMENTS=1 at build time): other
        // unit counts of the F16/BF16 dequantize kernels, named `_u<N>`.
        if std::env::var_os("NYXQ_SHADER_EXPERIMENTS").is_some() && !self.block {
            for n in [1, 4, 8] {
                let units = format!("UNITS={n}u");
                for (op, out, defines) in [
                    ("Dequantize", "f32", vec![format, &units]),
                    ("DequantizeF16", "f16", vec![format, "OUT_F16", &units]),
                ] {
                    let name = format!("dequantize_{tag}_{out}_u{n}");
                    let role = [Role::Experiment { op, tag }];
                    v.push(variant(name, "dequantize.comp", &defines, &role));
                }
            }
        }
        v
    }
}

/// The source of the kernels of `op`.
fn file_of(op: &str) -> &'static str {
    match op {
        "Quantize" => "quantize.comp",
        "Dequantize" | "DequantizeF16" => "dequantize.comp",
        _ => "fake_quantize.comp",
    }
}

/// The matrix-vector variants of `tag`: forward with a shared-memory
/// reduction (`Compat`), with subgroupAdd (`Subgroup`), with integer dot
/// products (where `dot`: `Dot`, which rounds x in every workgroup, and
/// `DotPre`, which reads x rounded once by `matvec_round_f32_q8`), and the
/// transposed product.
fn matvec_variants(tag: &'static str, dot: bool) -> Vec<Variant> {
    let format = format_define(tag);
    let role = |variant| [Role::Matvec { variant, tag }];
    let mut v = vec![
        variant(
            format!("matvec_{tag}_f32"),
            "matvec.comp",
            &[&format],
            &role("Compat"),
        ),
        variant(
            format!("matvec_{tag}_f32_subgroup"),
            "matvec.comp",
            &[&format, "SUBGROUP"],
            &role("Subgroup"),
        ),
        variant(
            format!("matvec_t_{tag}_f32"),
            "matvec_t.comp",
            &[&format],
            &role("Transposed"),
        ),
    ];
    if dot {
        v.push(variant(
            format!("matvec_{tag}_f32_dot"),
            "matvec_dot.comp",
            &[&format],
            &role("Dot"),
        ));
        v.push(variant(
            format!("matvec_{tag}_f32_dot_pre"),
            "matvec_dot.comp",
            &[&format, "PRE_ROUNDED"],
            &role("DotPre"),
        ));
    }
    v
}

/// The kernels written with GL_NV_cooperative_matrix, whose SPIR-V the
/// build rewrites into SPV_KHR_cooperative_matrix
/// (spirv::nv_to_khr_cooperative_matrix).
const NV_COOPERATIVE_MATRIX: &[&str] = &["matmul_coop128.comp", "matmul_coop.comp"];

/// The shape of a `matmul_coop128.comp` kernel: a workgroup's tile of
/// `tokens` × `outputs`, each subgroup's `frag_m` × `frag_n` accumulators of
/// 16 × 8, and how the slices are staged (`extra`: PACKED, STAGED,
/// TILE_K=<values of the sum a slice>, X_F16: X read as rounded to f16 by
/// matmul_x_f16.comp before).
struct CoopShape {
    suffix: &'static str,
    tokens: u32,
    outputs: u32,
    frag_m: u32,
    frag_n: u32,
    extra: &'static [&'static str],
}

impl CoopShape {
    /// The defines that compile it: its tile, fragments, workgroup size and
    /// staging.
    fn defines(&self) -> Vec<String> {
        let subgroups = self.tokens / (16 * self.frag_m) * (self.outputs / (8 * self.frag_n));
        let mut d = vec![
            format!("TILE_M={}u", self.tokens),
            format!("TILE_N={}u", self.outputs),
            format!("FRAG_M={}", self.frag_m),
            format!("FRAG_N={}", self.frag_n),
            format!("INVOCATIONS={}", 32 * subgroups),
        ];
        d.extend(self.extra.iter().map(|e| e.to_string()));
        d
    }
}

/// The `_coop128` kernel the self-test tries first.
const COOP128: CoopShape = CoopShape {
    suffix: "_coop128",
    tokens: 128,
    outputs: 128,
    frag_m: 4,
    frag_n: 4,
    extra: &[],
};

/// The shape the self-test tries before [`COOP128`] for every matmul: 16
/// subgroups of 32 × 32 (twice `_coop128`'s subgroups, half the accumulators
/// each), slices of 64 staged once, f16 pairs in 32-bit words, X rounded to
/// f16 once before it (half X's bytes). Faster than `_coop128` for every
/// format, forward and backward, on an NVIDIA H100 (1.6 to 2.8 times at 512
/// and 2048 tokens, docs/performance.md).
const COOP128_STAGED: CoopShape = CoopShape {
    suffix: "_coop128_sg16_k64_x16",
    frag_m: 2,
    extra: &["PACKED", "STAGED", "TILE_K=64u", "X_F16"],
    ..COOP128
};

/// The formats whose measurement-only matmul shapes are built: those the
/// issue's benchmark compares.
const COOP_EXPERIMENT_FORMATS: &[&str] = &["q4_0", "q8_0", "f16"];

/// Measurement-only shapes of matmul_coop128.comp (built with
/// NYXQ_SHADER_EXPERIMENTS=1 for the formats of [`COOP_EXPERIMENT_FORMATS`],
/// timed by bench-vk-matmul --variants, never chosen).
const COOP_EXPERIMENTS: &[CoopShape] = &[
    // `_coop128` with X rounded to f16 once before it (half X's bytes).
    CoopShape {
        suffix: "_coop128_x16",
        extra: &["X_F16"],
        ..COOP128
    },
    // 64 tokens × 128 outputs, 8 subgroups of 32 × 32: twice the workgroups.
    CoopShape {
        suffix: "_coop64x128_x16",
        tokens: 64,
        frag_m: 2,
        extra: &["PACKED", "X_F16"],
        ..COOP128
    },
    CoopShape {
        suffix: "_coop64x128_k64_x16",
        tokens: 64,
        frag_m: 2,
        extra: &["PACKED", "STAGED", "TILE_K=64u", "X_F16"],
        ..COOP128
    },
];

/// The matmul variants of `tag`, forward (`matmul_`) and backward
/// (`matmul_t_`): with cooperative matrices on tiles of 128
/// (`_coop128_sg16_k64_x16`, then `_coop128`) and of 64 (`_coop`), then
/// the compatible one; with
/// NYXQ_SHADER_EXPERIMENTS=1 also the measurement-only shapes of
/// [`COOP_EXPERIMENTS`].
fn matmul_variants(tag: &'static str) -> Vec<Variant> {
    let format = format_define(tag);
    let experiments = std::env::var_os("NYXQ_SHADER_EXPERIMENTS").is_some()
        && COOP_EXPERIMENT_FORMATS.contains(&tag);
    let mut v = Vec::new();
    for (op, prefix, direction) in [
        ("Matmul", "matmul", None),
        ("MatmulTransposed", "matmul_t", Some("TRANSPOSED")),
    ] {
        let defines: Vec<&str> = [format.as_str()].into_iter().chain(direction).collect();
        let role = [Role::Job { op, tag }];
        let name = format!("{prefix}_{tag}_f32");
        let coop = |shape: &CoopShape, roles: &[Role]| {
            let shaped = [
                defines.iter().map(|d| d.to_string()).collect(),
                shape.defines(),
            ]
            .concat();
            let shaped: Vec<&str> = shaped.iter().map(String::as_str).collect();
            variant(
                format!("{name}{}", shape.suffix),
                "matmul_coop128.comp",
                &shaped,
                roles,
            )
        };
        v.push(coop(&COOP128_STAGED, &role));
        v.push(coop(&COOP128, &role));
        v.push(variant(
            format!("{name}_coop"),
            "matmul_coop.comp",
            &defines,
            &role,
        ));
        v.push(variant(name.clone(), "matmul.comp", &defines, &role));
        if experiments {
            for shape in COOP_EXPERIMENTS {
                v.push(coop(shape, &[Role::Experiment { op, tag }]));
            }
        }
    }
    v
}

/// Every variant: one per pipeline.
pub fn variants() -> Vec<Variant> {
    let f32_op = |op| Role::Job { op, tag: "f32" };
    let mut v = vec![
        // F32 -> F32 of every op is a copy (also the benchmark's yardstick).
        variant(
            "copy_f32_f32".to_string(),
            "copy.comp",
            &[],
            &[
                f32_op("Quantize"),
                f32_op("Dequantize"),
                f32_op("FakeQuantize"),
            ],
        ),
        variant("unscale_f32".to_string(), "unscale.comp", &[], &[]),
        variant("importance_f32".to_string(), "importance.comp", &[], &[]),
        // Adam(W) steps: FP32 moments (`_f32`) and 8-bit blocks (`_q8`), each
        // with products and sums by the FPU where exact (`_rte`, declared
        // round-to-nearest-even for f32) and on the bits alone; and the step
        // count dispatched before them. Besides (src/vk/adam_choice.rs's
        // candidates and experiments): `_x4`, 4 elements per invocation;
        // `_hw` and `_fma`, division and square root on the FPU too,
        // corrected and checked on the integers or by fma residuals; `_dp`,
        // f32 subnormals declared preserved, so products and sums need no
        // check; `_lanes`, 8-bit state 4 elements per invocation with
        // subgroup reductions (`_fast_codes`: the codes from the FPU's roots
        // where clearly off a rounding boundary, as in every `_lanes`).
        variant(
            "adam_f32_f32_rte_dp_fma_x4".to_string(),
            "adam.comp",
            &[
                "RTE_F32",
                "DENORM_PRESERVE",
                "FMA_CHECK",
                "CHECKED",
                "ELEMENTS=4",
            ],
            &[],
        ),
        variant(
            "adam_f32_f32_rte_fma_x4".to_string(),
            "adam.comp",
            &["RTE_F32", "FMA_CHECK", "CHECKED", "ELEMENTS=4"],
            &[],
        ),
        variant(
            "adam_f32_f32_rte_dp_x4".to_string(),
            "adam.comp",
            &["RTE_F32", "DENORM_PRESERVE", "CHECKED", "ELEMENTS=4"],
            &[],
        ),
        variant(
            "adam_f32_f32_rte_hw_x4".to_string(),
            "adam.comp",
            &["RTE_F32", "CHECKED", "ELEMENTS=4"],
            &[],
        ),
        variant(
            "adam_f32_f32_rte_x4".to_string(),
            "adam.comp",
            &["RTE_F32", "ELEMENTS=4"],
            &[],
        ),
        variant(
            "adam_f32_f32_rte".to_string(),
            "adam.comp",
            &["RTE_F32"],
            &[],
        ),
        variant("adam_f32_f32".to_string(), "adam.comp", &[], &[]),
        // 8-bit `_wide`: 4 blocks per workgroup of 256, weights and
        // gradients as 16-byte vectors, the codes between their boundaries.
        variant(
            "adam_f32_q8_rte_fma_wide".to_string(),
            "adam_q8_wide.comp",
            &["RTE_F32", "FMA_CHECK"],
            &[],
        ),
        variant(
            "adam_f32_q8_rte_wide".to_string(),
            "adam_q8_wide.comp",
            &["RTE_F32"],
            &[],
        ),
        variant(
            "adam_f32_q8_rte_dp_fma_lanes".to_string(),
            "adam_q8_lanes.comp",
            &["RTE_F32", "DENORM_PRESERVE", "FMA_CHECK"],
            &[],
        ),
        variant(
            "adam_f32_q8_rte_fma_lanes".to_string(),
            "adam_q8_lanes.comp",
            &["RTE_F32", "FMA_CHECK"],
            &[],
        ),
        variant(
            "adam_f32_q8_rte_dp_lanes".to_string(),
            "adam_q8_lanes.comp",
            &["RTE_F32", "DENORM_PRESERVE"],
            &[],
        ),
        variant(
            "adam_f32_q8_rte_lanes_fast_codes".to_string(),
            "adam_q8_lanes.comp",
            &["RTE_F32"],
            &[],
        ),
        variant(
            "adam_f32_q8_rte".to_string(),
            "adam_q8.comp",
            &["RTE_F32"],
            &[],
        ),
        variant("adam_f32_q8".to_string(), "adam_q8.comp", &[], &[]),
        variant("adam_count".to_string(), "adam_count.comp", &[], &[]),
        // The tests' twins of the `_hw_x4` and `_lanes_fast_codes` kernels,
        // whose quotients and roots are skewed by up to two units in the
        // last place (the codes' roots by up to 32) and whose corrections
        // are miscounted two times in three: their results equal the host's
        // only if every check holds (tests/vk_adam.rs; never chosen).
        variant(
            "adam_f32_f32_rte_hw_x4_skewed".to_string(),
            "adam.comp",
            &["RTE_F32", "CHECKED", "ELEMENTS=4", "SKEWED_UNIT"],
            &[],
        ),
        // Measurement only: `_hw_x4` (and `_dp_x4`) writing, in place of a
        // weight it would redo on the bits, why (tests/vk_adam.rs
        // `probe_redone_on_the_bits`, run by hand).
        variant(
            "adam_f32_f32_rte_hw_x4_probe".to_string(),
            "adam.comp",
            &["RTE_F32", "CHECKED", "ELEMENTS=4", "PROBE"],
            &[],
        ),
        variant(
            "adam_f32_f32_rte_dp_x4_probe".to_string(),
            "adam.comp",
            &[
                "RTE_F32",
                "DENORM_PRESERVE",
                "CHECKED",
                "ELEMENTS=4",
                "PROBE",
            ],
            &[],
        ),
        // The `_dp` kernels' arithmetic without the declaration, for devices
        // that keep f32 subnormals without being asked (lavapipe) to test.
        variant(
            "adam_f32_f32_rte_dp_x4_undeclared".to_string(),
            "adam.comp",
            &["RTE_F32", "PLAIN_OPS", "CHECKED", "ELEMENTS=4"],
            &[],
        ),
        variant(
            "adam_f32_q8_rte_dp_lanes_undeclared".to_string(),
            "adam_q8_lanes.comp",
            &["RTE_F32", "PLAIN_OPS"],
            &[],
        ),
        variant(
            "adam_f32_f32_rte_fma_x4_skewed".to_string(),
            "adam.comp",
            &[
                "RTE_F32",
                "FMA_CHECK",
                "CHECKED",
                "ELEMENTS=4",
                "SKEWED_UNIT",
            ],
            &[],
        ),
        variant(
            "adam_f32_q8_rte_fma_lanes_skewed".to_string(),
            "adam_q8_lanes.comp",
            &["RTE_F32", "FMA_CHECK", "SKEWED_UNIT"],
            &[],
        ),
        variant(
            "adam_f32_f32_rte_fma_x4_probe".to_string(),
            "adam.comp",
            &["RTE_F32", "FMA_CHECK", "CHECKED", "ELEMENTS=4", "PROBE"],
            &[],
        ),
        variant(
            "adam_f32_q8_rte_lanes_skewed".to_string(),
            "adam_q8_lanes.comp",
            &["RTE_F32", "SKEWED_UNIT"],
            &[],
        ),
        variant(
            "adam_f32_q8_rte_fma_wide_skewed".to_string(),
            "adam_q8_wide.comp",
            &["RTE_F32", "FMA_CHECK", "SKEWED_UNIT"],
            &[],
        ),
        variant(
            "adam_f32_q8_rte_wide_skewed".to_string(),
            "adam_q8_wide.comp",
            &["RTE_F32", "SKEWED_UNIT"],
            &[],
        ),
    ];
    // Measurement only, built with NYXQ_SHADER_EXPERIMENTS=1 (`nyxq
    // bench-vk`, src/vk/adam_choice.rs `measurement_twins`; results not the
    // host's where a part is cut out): `_fma_wide` with the update, the codes or every part but the
    // loads and stores cut out, with the codes clearly off a rounding
    // boundary (`_fast_codes`), or with the tables read from the control
    // buffer (`_global_tables`), or with every operation by the
    // floating-point unit unchecked and the codes where clearly off a
    // rounding boundary (`_raw`: what the step would cost without exactness).
    let wide = ["RTE_F32", "FMA_CHECK"];
    let twins = std::env::var_os("NYXQ_SHADER_EXPERIMENTS").is_some();
    for (suffix, extra) in [
        ("cut_update", &["CUT_UPDATE"][..]),
        ("cut_codes", &["CUT_CODES"]),
        (
            "cut_all",
            &["CUT_UPDATE", "CUT_CODES", "CUT_REDUCE", "CUT_DECODE"],
        ),
        ("fast_codes", &["FAST_CODES"]),
        ("global_tables", &["GLOBAL_TABLES"]),
        ("raw", &["PLAIN_OPS", "RAW_UNIT", "FAST_CODES"]),
    ] {
        if twins {
            v.push(variant(
                format!("adam_f32_q8_rte_fma_wide_{suffix}"),
                "adam_q8_wide.comp",
                &[&wide[..], extra].concat(),
                &[Role::AdamTwin],
            ));
        }
    }
    v.extend([
        // X rounded to f16 once per product, before the matmul kernels
        // that read it so (X_F16).
        variant("matmul_x_f16".to_string(), "matmul_x_f16.comp", &[], &[]),
        // x rounded to int8 blocks once per product, before `_dot_pre`.
        variant(
            "matvec_round_f32_q8".to_string(),
            "matvec_round.comp",
            &[],
            &[],
        ),
    ]);
    for f in &FORMATS {
        v.extend(f.convert_variants());
    }
    v.extend(matvec_variants("f32", false));
    for f in &FORMATS {
        v.extend(matvec_variants(f.tag, f.matvec_dot));
    }
    v.extend(matmul_variants("f32"));
    for f in &FORMATS {
        v.extend(matmul_variants(f.tag));
    }
    v
}

/// The family of a kernel (its bindings and push-constant block): a Rust
/// `Family` variant.
pub fn family(file: &str) -> &'static str {
    match file {
        "unscale.comp" => "Unscale",
        "importance.comp" => "Importance",
        "adam.comp" | "adam_q8.comp" | "adam_q8_lanes.comp" | "adam_q8_wide.comp"
        | "adam_count.comp" => "Adam",
        "matvec.comp" | "matvec_t.comp" | "matvec_dot.comp" | "matvec_round.comp" => "Matvec",
        "matmul.comp" | "matmul_coop.comp" | "matmul_coop128.comp" | "matmul_x_f16.comp" => {
            "Matmul"
        }
        _ => "Convert",
    }
}

/// How a quantize/dequantize variant's grid is sized: the elements each
/// invocation handles and the invocations per workgroup (None for the matvec
/// kernels, whose module sizes their grids). Passed to glslc as
/// PER_INVOCATION and LOCAL_SIZE (shaders/grid.glsl: each kernel checks the
/// first against its code at compile time) and written into the table.
pub fn grid(file: &str, defines: &[String]) -> Option<(u32, u32)> {
    let has = |d: &str| defines.iter().any(|x| x == d);
    let format = FORMATS.iter().find(|f| has(&format_define(f.tag)));
    let block = format.is_some_and(|f| f.block);
    let super_block = format.is_some_and(|f| f.super_block);
    // 256 invocations (the H200 measured a launch-rate limit with groups of
    // 64 for one-pass kernels), except 64 for the block quantize and
    // fake-quantize kernels, whose barrier-separated steps need many
    // resident groups.
    let (per_invocation, local_size) = match file {
        "copy.comp" => (4, 256),
        "unscale.comp" => (1, 256),
        // A column per invocation, summing over the dispatch's tokens.
        "importance.comp" => (1, 256),
        // Adam: ELEMENTS per invocation (1 without the define); the 8-bit
        // state's workgroup is one block of 256
        // (crate::train::adam::STATE_BLOCK), 4 elements per invocation in
        // lanes.
        "adam.comp" => (elements(defines), 256),
        "adam_q8.comp" => (1, 256),
        "adam_q8_lanes.comp" => (4, 64),
        // 4 blocks of 256 per workgroup.
        "adam_q8_wide.comp" => (4, 256),
        "adam_count.comp" => (1, 1),
        // K-quants (shaders/kquant_group.glsl): a super-block of 256 per
        // workgroup, 8 values per invocation.
        "quantize.comp" | "fake_quantize.comp" if super_block => (8, 32),
        // Block kernels (shaders/block_group.glsl): 4 rounds of 8 values.
        "quantize.comp" | "fake_quantize.comp" if block => (32, 64),
        "quantize.comp" | "fake_quantize.comp" => (4, 256),
        // Block dequantize: lanes of 8 values, 4 per invocation with FOUR_LANES.
        "dequantize.comp" if block => (if has("FOUR_LANES") { 32 } else { 8 }, 256),
        "dequantize.comp" => {
            let units: u32 = defines
                .iter()
                .find_map(|d| d.strip_prefix("UNITS="))
                .and_then(|u| u.trim_end_matches('u').parse().ok())
                .expect("F16/BF16 dequantize variants set UNITS");
            (4 * units, 256)
        }
        _ => return None,
    };
    Some((per_invocation, local_size))
}

/// The tokens and outputs of a matmul kernel's workgroup tile: passed to
/// glslc as TILE_M and TILE_N (shaders/matmul.glsl) and written into the
/// table, whose Rust side sizes the grid with it. matmul_coop128.comp's
/// come from its variant's defines ([`CoopShape`]). None for the other
/// kernels.
pub fn matmul_tile(file: &str, defines: &[String]) -> Option<(u32, u32)> {
    let define = |name: &str| {
        defines.iter().find_map(|d| d.strip_prefix(name)).map(|n| {
            n.trim_end_matches('u')
                .parse()
                .expect("a tile in whole values")
        })
    };
    match file {
        "matmul.comp" | "matmul_coop.comp" => Some((64, 64)),
        "matmul_coop128.comp" => Some((
            define("TILE_M=").expect("a shape sets TILE_M"),
            define("TILE_N=").expect("a shape sets TILE_N"),
        )),
        _ => None,
    }
}

/// The elements per invocation of an Adam variant: its `ELEMENTS=<n>`
/// define, else 1.
fn elements(defines: &[String]) -> u32 {
    defines
        .iter()
        .find_map(|d| d.strip_prefix("ELEMENTS="))
        .map_or(1, |n| n.parse().expect("ELEMENTS=<n> with a whole n"))
}

/// glslc -O unrolls loops marked `[[unroll]]` itself and drops the
/// NoContraction decorations (`precise`) of the instructions it copies; the
/// driver may then fuse a multiply and an add that must round separately
/// (seen on NVIDIA: quants off by one at ties). The drivers unroll constant
/// loops on their own, keeping the decorations, so the attribute is refused.
pub fn refuse_unroll_attributes(shader_dir: &Path) {
    let entries = std::fs::read_dir(shader_dir).expect("shaders/ is readable");
    for entry in entries {
        let path = entry.expect("shaders/ is readable").path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.replace(' ', "").contains("[[unroll") {
            panic!(
                "{}: `[[unroll]]` is refused: glslc -O drops `precise` (NoContraction) \
                 from the loop bodies it unrolls",
                path.display()
            );
        }
    }
}

/// Compiles every variant into OUT_DIR/spv and writes the kernel table,
/// OUT_DIR/shaders.rs.
pub fn compile(crate_dir: &Path, out_dir: &Path) {
    let shader_dir = crate_dir.join("shaders");
    println!("cargo:rerun-if-changed=shaders");
    println!("cargo:rerun-if-changed=build_support/shaders.rs");
    println!("cargo:rerun-if-changed=build_support/spirv.rs");
    println!("cargo:rerun-if-changed=build_support/spirv_cache.rs");
    println!("cargo:rerun-if-env-changed=GLSLC");
    println!("cargo:rerun-if-env-changed=NYXQ_SHADER_EXPERIMENTS");
    println!("cargo:rerun-if-env-changed=NYXQ_SPIRV_CACHE");
    let glslc = std::env::var("GLSLC").unwrap_or_else(|_| "glslc".to_string());
    let spv_dir = out_dir.join("spv");
    std::fs::create_dir_all(&spv_dir).expect("OUT_DIR/spv is writable");
    refuse_unroll_attributes(&shader_dir);
    let variants = variants();
    let jobs = std::env::var("NUM_JOBS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(1);
    let cache = std::env::var_os("NYXQ_SPIRV_CACHE").map(PathBuf::from);
    let outputs = compile_all_cached(
        &glslc,
        &shader_dir,
        &spv_dir,
        &variants,
        jobs,
        cache.as_deref(),
    );
    let mut inputs = std::collections::BTreeSet::new();
    let mut compiled: Vec<(Variant, PathBuf)> = Vec::with_capacity(variants.len());
    for (v, (spv, depends_on)) in variants.into_iter().zip(outputs) {
        inputs.extend(depends_on);
        compiled.push((v, spv));
    }
    for path in inputs {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    std::fs::write(out_dir.join("shaders.rs"), kernel_table(&compiled))
        .expect("OUT_DIR is writable");
}

/// Compiles every variant on `jobs` threads (the build passes cargo's
/// `NUM_JOBS`, its `-j`): glslc runs once per variant, hundreds of
/// processes that would otherwise run one after the other. Returns each
/// variant's SPIR-V path and the files it was compiled from, in `variants`'
/// order whatever the threads' order; a glslc failure panics with its
/// diagnostics.
pub fn compile_all(
    glslc: &str,
    shader_dir: &Path,
    spv_dir: &Path,
    variants: &[Variant],
    jobs: usize,
) -> Vec<(PathBuf, Vec<PathBuf>)> {
    let jobs = jobs.clamp(1, variants.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut outputs: Vec<Option<(PathBuf, Vec<PathBuf>)>> = vec![None; variants.len()];
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(v) = variants.get(i) else { break };
                        done.push((i, compile_one(glslc, shader_dir, spv_dir, v)));
                    }
                    done
                })
            })
            .collect();
        for worker in workers {
            // A glslc failure panics in its worker with the diagnostics; the
            // build script fails with that panic.
            let done = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            for (i, output) in done {
                outputs[i] = Some(output);
            }
        }
    });
    outputs
        .into_iter()
        .map(|o| o.expect("every variant was compiled"))
        .collect()
}

/// As [`compile_all`], through the cache in the folder `cache`
/// (build_support/spirv_cache.rs) where one is given: the variants' SPIR-V
/// and depfiles are copied from it when an entry has them all for the same
/// inputs, and stored in it after compiling otherwise.
pub fn compile_all_cached(
    glslc: &str,
    shader_dir: &Path,
    spv_dir: &Path,
    variants: &[Variant],
    jobs: usize,
    cache: Option<&Path>,
) -> Vec<(PathBuf, Vec<PathBuf>)> {
    let Some(cache) = cache else {
        return compile_all(glslc, shader_dir, spv_dir, variants, jobs);
    };
    let key = cache_key(glslc, shader_dir, variants);
    let names: Vec<String> = variants.iter().map(|v| v.name.clone()).collect();
    if spirv_cache::restore(cache, key, spv_dir, &names) {
        return variants
            .iter()
            .map(|v| {
                let [spv, dep] = spirv_cache::files_of(spv_dir, &v.name);
                (spv, depfile_inputs(&dep))
            })
            .collect();
    }
    let outputs = compile_all(glslc, shader_dir, spv_dir, variants, jobs);
    spirv_cache::store(cache, key, spv_dir, &names);
    outputs
}

/// Everything the variants' SPIR-V depends on: glslc and its version, the
/// shader folder (its path, which the depfiles name, and every file's name
/// and bytes), each variant's name, source and arguments, and the rewriting
/// of the cooperative-matrix SPIR-V (build_support/spirv.rs).
fn cache_key(glslc: &str, shader_dir: &Path, variants: &[Variant]) -> spirv_cache::Key {
    let mut key = spirv_cache::Key::new();
    let version = Command::new(glslc)
        .arg("--version")
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    key.add(glslc.as_bytes());
    key.add(&version);
    key.add(shader_dir.as_os_str().as_encoded_bytes());
    let mut files: Vec<PathBuf> = std::fs::read_dir(shader_dir)
        .expect("shaders/ is readable")
        .map(|e| e.expect("shaders/ is readable").path())
        .collect();
    files.sort();
    for file in files {
        key.add(file.as_os_str().as_encoded_bytes());
        key.add(&std::fs::read(&file).unwrap_or_default());
    }
    key.add(include_str!("spirv.rs").as_bytes());
    for v in variants {
        key.add(v.name.as_bytes());
        key.add(v.file.as_bytes());
        key.add(&[u8::from(NV_COOPERATIVE_MATRIX.contains(&v.file))]);
        for arg in glslc_arguments(v) {
            key.add(arg.as_bytes());
        }
    }
    key
}

/// glslc's options for `v`, but for its input, output and depfile.
fn glslc_arguments(v: &Variant) -> Vec<String> {
    let mut args: Vec<String> = ["--target-env=vulkan1.2", "-Werror", "-O"]
        .map(String::from)
        .to_vec();
    args.extend(v.defines.iter().map(|d| format!("-D{d}")));
    if let Some((per_invocation, local_size)) = grid(v.file, &v.defines) {
        args.push(format!("-DPER_INVOCATION={per_invocation}u"));
        args.push(format!("-DLOCAL_SIZE={local_size}"));
    }
    if let (Some((tokens, outputs)), false) = (
        matmul_tile(v.file, &v.defines),
        v.file == "matmul_coop128.comp",
    ) {
        args.push(format!("-DTILE_M={tokens}u"));
        args.push(format!("-DTILE_N={outputs}u"));
    }
    args
}

/// Compiles `v` with glslc into `spv_dir`, failing the build on any
/// diagnostic, and returns the SPIR-V's path and the files glslc read.
fn compile_one(
    glslc: &str,
    shader_dir: &Path,
    spv_dir: &Path,
    v: &Variant,
) -> (PathBuf, Vec<PathBuf>) {
    let source = shader_dir.join(v.file);
    let [spv, dep] = spirv_cache::files_of(spv_dir, &v.name);
    let mut cmd = Command::new(glslc);
    cmd.args(glslc_arguments(v))
        .arg("-MD")
        .arg("-MF")
        .arg(&dep)
        .arg(&source)
        .arg("-o")
        .arg(&spv);
    let output = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {glslc} ({e}): nyxq compiles its Vulkan shaders at build time; \
             run scripts/bootstrap.sh (installs glslc) or set GLSLC to its path"
        )
    });
    let diagnostics = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() || !diagnostics.trim().is_empty() {
        panic!(
            "glslc failed on {} ({}):\n{diagnostics}",
            v.name,
            source.display()
        );
    }
    if NV_COOPERATIVE_MATRIX.contains(&v.file) {
        let nv = std::fs::read(&spv).expect("the SPIR-V glslc wrote is readable");
        std::fs::write(&spv, spirv::nv_to_khr_cooperative_matrix(&nv))
            .expect("OUT_DIR/spv is writable");
    }
    (spv, depfile_inputs(&dep))
}

/// The Rust of the kernel table (included by src/vk/shaders.rs): a
/// `KernelId` constant per variant, each kernel's facts, and which kernel
/// does what.
pub fn kernel_table(compiled: &[(Variant, PathBuf)]) -> String {
    let mut ids = String::new();
    let mut kernels = String::new();
    for (index, (v, spv)) in compiled.iter().enumerate() {
        let bytes = std::fs::read(spv).expect("the SPIR-V glslc wrote is readable");
        let facts = spirv::read(&bytes);
        let has = |capability| facts.capabilities.contains(&capability);
        let grid = match grid(v.file, &v.defines) {
            Some((per_invocation, local_size)) => format!(
                "Some(Grid {{ per_invocation: {per_invocation}, local_size: {local_size} }})"
            ),
            None => "None".to_string(),
        };
        let out = &mut ids;
        writeln!(out, "    /// `{}` (shaders/{}).", v.name, v.file).expect("a String");
        writeln!(
            out,
            "    pub const {}: KernelId = KernelId({index});",
            v.name.to_uppercase()
        )
        .expect("a String");
        writeln!(
            kernels,
            "    Kernel {{ name: {:?}, label: c{:?}, spirv: include_bytes!({:?}), \
             family: Family::{}, grid: {grid}, needs: Needs {{ storage_16bit: {}, \
             float16: {}, rounding_rte_f16: {}, rounding_rte_f32: {}, denorm_preserve_f16: {}, \
             denorm_preserve_f32: {}, vulkan_memory_model: {}, cooperative_matrix: {}, \
             subgroup_arithmetic: {} }}, \
             push_bytes: {}, workgroup_bytes: {}, matmul_tile: MatmulTile {{ tokens: {}, \
             outputs: {}, x_f16: {} }} }},",
            v.name,
            v.name,
            spv.display().to_string(),
            family(v.file),
            has(spirv::CAPABILITY_STORAGE_16BIT),
            has(spirv::CAPABILITY_FLOAT16),
            has(spirv::CAPABILITY_ROUNDING_RTE) && facts.rounding_rte_widths.contains(&16),
            has(spirv::CAPABILITY_ROUNDING_RTE) && facts.rounding_rte_widths.contains(&32),
            has(spirv::CAPABILITY_DENORM_PRESERVE) && facts.denorm_preserve_widths.contains(&16),
            has(spirv::CAPABILITY_DENORM_PRESERVE) && facts.denorm_preserve_widths.contains(&32),
            has(spirv::CAPABILITY_VULKAN_MEMORY_MODEL),
            has(spirv::CAPABILITY_COOPERATIVE_MATRIX),
            has(spirv::CAPABILITY_GROUP_NON_UNIFORM_ARITHMETIC),
            facts.push_bytes,
            facts.workgroup_bytes,
            matmul_tile(v.file, &v.defines).unwrap_or((0, 0)).0,
            matmul_tile(v.file, &v.defines).unwrap_or((0, 0)).1,
            v.defines.iter().any(|d| d == "X_F16"),
        )
        .expect("a String");
    }
    let count = compiled.len();
    // The table is a static: one copy in the binary (a const array this
    // large would be inlined where it is used, and clippy refuses it).
    let mut table = format!(
        "impl KernelId {{\n{ids}    /// The number of kernels.\n    pub const COUNT: usize = {count};\n}}\n\n\
         /// Every kernel's facts, indexed by [`KernelId`].\n\
         static KERNELS: [Kernel; KernelId::COUNT] = [\n{kernels}];\n\n"
    );
    let variants: Vec<&Variant> = compiled.iter().map(|(v, _)| v).collect();
    let op_key = |op: &str, tag: &str| format!("(Op::{op}, Format::{})", tag.to_uppercase());
    let list = |ids: &[String]| format!("&[{}]", ids.join(", "));
    let convert = roles(&variants, |role| match role {
        Role::Job { op, tag } => Some(op_key(op, tag)),
        _ => None,
    });
    let experiments = roles(&variants, |role| match role {
        Role::Experiment { op, tag } => Some(op_key(op, tag)),
        _ => None,
    });
    let matvec = roles(&variants, |role| match role {
        Role::Matvec { variant, tag } => Some(format!(
            "(MatvecVariant::{variant}, Format::{})",
            tag.to_uppercase()
        )),
        _ => None,
    });
    table.push_str(&lookup(
        "The kernels that do `op` on `format`, fastest first; the last is the compatible \
         one (no optional feature). Empty where no kernel does.",
        "op_kernels(op: Op, format: Format) -> &'static [KernelId]",
        ("(op, format)", &convert),
        (list, "&[]"),
    ));
    table.push_str(&lookup(
        "The measurement-only variants of `op` on `format` (built with \
         NYXQ_SHADER_EXPERIMENTS=1; none otherwise).",
        "experimental_kernels(op: Op, format: Format) -> &'static [KernelId]",
        ("(op, format)", &experiments),
        (list, "&[]"),
    ));
    let twins: Vec<String> = variants
        .iter()
        .filter(|v| v.roles.contains(&Role::AdamTwin))
        .map(|v| format!("KernelId::{}", v.name.to_uppercase()))
        .collect();
    writeln!(
        table,
        "/// The measurement-only twins of the 8-bit Adam step (built with \
         NYXQ_SHADER_EXPERIMENTS=1; none otherwise).\n\
         pub fn adam_measurement_twins() -> &'static [KernelId] {{\n    {}\n}}\n",
        list(&twins)
    )
    .expect("a String");
    table.push_str(&lookup(
        "The matrix-vector kernel `variant` on `format`, if built.",
        "matvec_kernel(variant: MatvecVariant, format: Format) -> Option<KernelId>",
        ("(variant, format)", &matvec),
        (|ids| format!("Some({})", ids.join(", ")), "None"),
    ));
    table
}

/// (match pattern, kernel constants in table order) for each key that
/// `key` gives a role, in order of first appearance.
fn roles(
    variants: &[&Variant],
    key: impl Fn(&Role) -> Option<String>,
) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for v in variants {
        for k in v.roles.iter().filter_map(&key) {
            let id = format!("KernelId::{}", v.name.to_uppercase());
            match out.iter_mut().find(|(pattern, _)| *pattern == k) {
                Some((_, ids)) => ids.push(id),
                None => out.push((k, vec![id])),
            }
        }
    }
    out
}

/// A lookup function: `doc`, `signature`, and a match on the scrutinee
/// with an arm per (pattern, kernels) of `arms`, whose value `value` makes,
/// and `otherwise` for the rest.
fn lookup(
    doc: &str,
    signature: &str,
    (scrutinee, arms): (&str, &[(String, Vec<String>)]),
    (value, otherwise): (impl Fn(&[String]) -> String, &str),
) -> String {
    let mut text = format!("/// {doc}\npub fn {signature} {{\n");
    if arms.is_empty() {
        writeln!(text, "    let _ = {scrutinee};\n    {otherwise}\n}}\n").expect("a String");
        return text;
    }
    writeln!(text, "    match {scrutinee} {{").expect("a String");
    for (pattern, ids) in arms {
        writeln!(text, "        {pattern} => {},", value(ids)).expect("a String");
    }
    writeln!(text, "        _ => {otherwise},\n    }}\n}}\n").expect("a String");
    text
}

/// The inputs a Makefile-style depfile names (after the first ':').
fn depfile_inputs(dep: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(dep).unwrap_or_default();
    let Some((_, inputs)) = text.split_once(": ") else {
        return Vec::new();
    };
    inputs
        .replace("\\\n", " ")
        .split_whitespace()
        .map(PathBuf::from)
        .collect()
}
