//! Which matrix-vector kernel the engine chooses on lavapipe: the
//! integer-dot variant for the block formats (x rounded in every workgroup
//! for one vector, once per product for 2 to 8), the f32 subgroup variant
//! otherwise, the
//! compatible one when forced, the arithmetic chosen at run time, and the
//! fallback where the self-test disabled `_dot_pre`.

use crate::vk_support::env::{DEFAULT, Env, FORCE_COMPAT};
use crate::vk_support::run_under;
use nyxq::format::{Format, VulkanFamily};
use nyxq::vk::matvec;
use nyxq::vk::shaders::MatvecVariant as Variant;

/// Without compat forced, the block formats run the integer-dot variant,
/// `_dot` for one vector and `_dot_pre` (x rounded once per product) for 2
/// to 8, on lavapipe
/// (it has subgroup arithmetic and shaderIntegerDotProduct, and the
/// self-test passed `_dot_pre`); F32/F16/BF16 the f32 subgroup one;
/// NYXQ_VK_MATVEC_VARIANT's choice can be changed at run time (the
/// benchmark does).
#[test]
fn block_formats_choose_the_dot_variant() {
    let Some(ctx) = run_under(&[&DEFAULT, &FORCE_COMPAT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    assert!(
        engine
            .device
            .enabled
            .has(nyxq::vk::features::Feature::IntegerDotProduct),
        "lavapipe has shaderIntegerDotProduct"
    );
    let choice = engine.matvec();
    assert!(choice.dot_supported());
    assert_eq!(choice.pre_rounded_failure(), None);
    assert!(choice.pre_rounded_supported());
    assert_eq!(choice.arithmetic(), matvec::Arithmetic::Auto);
    assert_eq!(matvec::PRE_ROUNDED_MIN_BATCH, 2);
    assert_eq!(matvec::PRE_ROUNDED_MAX_BATCH, matvec::MAX_BATCH);
    for format in Format::with_vulkan(VulkanFamily::Matvec) {
        let dot = format.spec().vulkan.matvec_dot;
        for batch in 1..=8u32 {
            let expected = match batch {
                _ if !dot => Variant::Subgroup,
                1 => Variant::Dot,
                _ => Variant::DotPre,
            };
            assert_eq!(
                choice.forward_variant(false, format, batch),
                expected,
                "{format:?} batch {batch}"
            );
            assert_eq!(choice.forward_variant(true, format, batch), Variant::Compat);
            choice.set_arithmetic(matvec::Arithmetic::F32);
            assert_eq!(
                choice.forward_variant(false, format, batch),
                Variant::Subgroup
            );
            choice.set_arithmetic(matvec::Arithmetic::IntegerDot);
            let forced = if dot { Variant::Dot } else { Variant::Subgroup };
            assert_eq!(choice.forward_variant(false, format, batch), forced);
            choice.set_arithmetic(matvec::Arithmetic::PreRounded);
            let forced = if dot {
                Variant::DotPre
            } else {
                Variant::Subgroup
            };
            assert_eq!(choice.forward_variant(false, format, batch), forced);
            choice.set_arithmetic(matvec::Arithmetic::Auto);
        }
    }
    // The report names what products of this context run (compat under the
    // forced-compatible row).
    let named = if ctx.force_compat() {
        "shared-memory variant"
    } else {
        "x rounded once per product"
    };
    assert!(
        ctx.vulkan_report().iter().any(|l| l.contains(named)),
        "{:?}",
        ctx.vulkan_report()
    );
}
