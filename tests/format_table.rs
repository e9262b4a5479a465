//! The format descriptor table against what the build compiled: a format has
//! the shader variants of every Vulkan kernel family its descriptor declares,
//! and none of a family it does not declare.

use nyxq::ErrorKind;
use nyxq::format::{FORMATS, Format, VulkanFamily};
use nyxq::vk::shaders::KernelId;

/// Whether the build compiled a kernel named `name`.
fn compiled(name: &str) -> bool {
    KernelId::all().any(|k| k.name() == name)
}

/// The variant names of `family` for the format whose shader tag is `tag`.
fn variant_names(family: VulkanFamily, tag: &str) -> Vec<String> {
    match family {
        VulkanFamily::Conversions => vec![
            format!("quantize_f32_{tag}"),
            format!("dequantize_{tag}_f32"),
            format!("dequantize_{tag}_f16"),
            format!("fake_quantize_f32_{tag}"),
        ],
        VulkanFamily::Matvec => vec![
            format!("matvec_{tag}_f32"),
            format!("matvec_{tag}_f32_subgroup"),
            format!("matvec_t_{tag}_f32"),
        ],
        VulkanFamily::MatvecDot => vec![format!("matvec_{tag}_f32_dot")],
        VulkanFamily::Matmul => vec![
            format!("matmul_{tag}_f32"),
            format!("matmul_{tag}_f32_coop"),
            format!("matmul_t_{tag}_f32"),
            format!("matmul_t_{tag}_f32_coop"),
        ],
    }
}

#[test]
fn vulkan_kernel_families_match_the_compiled_variants() {
    let families = [
        VulkanFamily::Conversions,
        VulkanFamily::Matvec,
        VulkanFamily::MatvecDot,
        VulkanFamily::Matmul,
    ];
    for spec in &FORMATS {
        for family in families {
            let declared = spec.vulkan.has(family);
            for name in variant_names(family, spec.shader_tag) {
                assert_eq!(
                    compiled(&name),
                    declared,
                    "{}: {family:?} declared {declared}, variant {name}",
                    spec.name()
                );
            }
            let refusal = spec.format.require_vulkan(family);
            assert_eq!(refusal.is_ok(), declared, "{}", spec.name());
            if let Err(e) = refusal {
                assert_eq!(e.kind(), ErrorKind::Unsupported);
                assert!(e.message().contains(spec.name()), "{}", e.message());
            }
        }
        let listed = Format::with_vulkan(VulkanFamily::Matvec).any(|f| f == spec.format);
        assert_eq!(listed, spec.vulkan.matvec, "{}", spec.name());
    }
}
