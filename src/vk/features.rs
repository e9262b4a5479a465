//! The optional device features nyxq's kernels use, and what a trainer
//! declares it enabled on the device it hands over: the feature structures
//! of its `VkDeviceCreateInfo.pNext` chain, read by `sType`, and the
//! extensions it enabled, checked against what the device supports.

use crate::error::{Error, Result};
use ash::vk;
use std::ffi::{CStr, c_void};
use std::mem::offset_of;

/// An optional device feature a kernel variant of nyxq needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// storageBuffer16BitAccess: 16-bit loads and stores (`_s16`, `_rte`).
    Storage16Bit,
    /// storageBuffer8BitAccess (no kernel needs it; reported).
    Storage8Bit,
    /// shaderFloat16: f16 arithmetic (the f16 `_rte` dequantize variants).
    Float16,
    /// shaderInt8 (no kernel needs it; reported).
    Int8,
    /// shaderIntegerDotProduct: the matvec `_dot` variant.
    IntegerDotProduct,
    /// vulkanMemoryModel: the matmul `_coop` variant (its SPIR-V declares
    /// the Vulkan memory model).
    VulkanMemoryModel,
    /// cooperativeMatrix (VK_KHR_cooperative_matrix): the matmul `_coop`
    /// variant.
    CooperativeMatrix,
}

impl Feature {
    /// Every feature, in the order reports list them.
    pub const ALL: [Feature; 7] = [
        Feature::Storage16Bit,
        Feature::Storage8Bit,
        Feature::Float16,
        Feature::Int8,
        Feature::IntegerDotProduct,
        Feature::VulkanMemoryModel,
        Feature::CooperativeMatrix,
    ];

    /// The member's name in Vulkan's feature structures.
    pub fn vk_name(self) -> &'static str {
        match self {
            Feature::Storage16Bit => "storageBuffer16BitAccess",
            Feature::Storage8Bit => "storageBuffer8BitAccess",
            Feature::Float16 => "shaderFloat16",
            Feature::Int8 => "shaderInt8",
            Feature::IntegerDotProduct => "shaderIntegerDotProduct",
            Feature::VulkanMemoryModel => "vulkanMemoryModel",
            Feature::CooperativeMatrix => "cooperativeMatrix",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of [`Feature`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features(u8);

impl Features {
    /// No feature.
    pub const NONE: Features = Features(0);

    /// Whether `feature` is in the set.
    pub fn has(self, feature: Feature) -> bool {
        self.0 & feature.bit() != 0
    }

    /// The set with `feature` added where `on`.
    pub fn with(self, feature: Feature, on: bool) -> Features {
        if on {
            Features(self.0 | feature.bit())
        } else {
            self
        }
    }

    /// The set without `feature`.
    pub fn without(self, feature: Feature) -> Features {
        Features(self.0 & !feature.bit())
    }

    /// Its features' Vulkan names, in [`Feature::ALL`] order.
    pub fn names(self) -> Vec<&'static str> {
        Feature::ALL
            .into_iter()
            .filter(|&f| self.has(f))
            .map(Feature::vk_name)
            .collect()
    }
}

/// A feature structure nyxq reads from a chain: its `sType`, its name, and
/// the offset of each member that names a [`Feature`] (each a `VkBool32`).
struct Structure {
    s_type: vk::StructureType,
    name: &'static str,
    members: &'static [(usize, Feature)],
}

/// The feature structures nyxq reads, core and extension alike; any other
/// `sType` in a chain is skipped.
const STRUCTURES: [Structure; 9] = [
    Structure {
        s_type: vk::StructureType::PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
        name: "VkPhysicalDeviceVulkan11Features",
        members: &[(
            offset_of!(
                vk::PhysicalDeviceVulkan11Features<'static>,
                storage_buffer16_bit_access
            ),
            Feature::Storage16Bit,
        )],
    },
    Structure {
        s_type: vk::StructureType::PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
        name: "VkPhysicalDeviceVulkan12Features",
        members: &[
            (
                offset_of!(
                    vk::PhysicalDeviceVulkan12Features<'static>,
                    storage_buffer8_bit_access
                ),
                Feature::Storage8Bit,
            ),
            (
                offset_of!(vk::PhysicalDeviceVulkan12Features<'static>, shader_float16),
                Feature::Float16,
            ),
            (
                offset_of!(vk::PhysicalDeviceVulkan12Features<'static>, shader_int8),
                Feature::Int8,
            ),
            (
                offset_of!(
                    vk::PhysicalDeviceVulkan12Features<'static>,
                    vulkan_memory_model
                ),
                Feature::VulkanMemoryModel,
            ),
        ],
    },
    Structure {
        s_type: vk::StructureType::PHYSICAL_DEVICE_VULKAN_1_3_FEATURES,
        name: "VkPhysicalDeviceVulkan13Features",
        members: &[(
            offset_of!(
                vk::PhysicalDeviceVulkan13Features<'static>,
                shader_integer_dot_product
            ),
            Feature::IntegerDotProduct,
        )],
    },
    Structure {
        s_type: vk::StructureType::PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
        name: "VkPhysicalDevice16BitStorageFeatures",
        members: &[(
            offset_of!(
                vk::PhysicalDevice16BitStorageFeatures<'static>,
                storage_buffer16_bit_access
            ),
            Feature::Storage16Bit,
        )],
    },
    Structure {
        s_type: vk::StructureType::PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES,
        name: "VkPhysicalDevice8BitStorageFeatures",
        members: &[(
            offset_of!(
                vk::PhysicalDevice8BitStorageFeatures<'static>,
                storage_buffer8_bit_access
            ),
            Feature::Storage8Bit,
        )],
    },
    Structure {
        s_type: vk::StructureType::PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES,
        name: "VkPhysicalDeviceShaderFloat16Int8Features",
        members: &[
            (
                offset_of!(
                    vk::PhysicalDeviceShaderFloat16Int8Features<'static>,
                    shader_float16
                ),
                Feature::Float16,
            ),
            (
                offset_of!(
                    vk::PhysicalDeviceShaderFloat16Int8Features<'static>,
                    shader_int8
                ),
                Feature::Int8,
            ),
        ],
    },
    Structure {
        s_type: vk::StructureType::PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES,
        name: "VkPhysicalDeviceShaderIntegerDotProductFeatures",
        members: &[(
            offset_of!(
                vk::PhysicalDeviceShaderIntegerDotProductFeatures<'static>,
                shader_integer_dot_product
            ),
            Feature::IntegerDotProduct,
        )],
    },
    Structure {
        s_type: vk::StructureType::PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES,
        name: "VkPhysicalDeviceVulkanMemoryModelFeatures",
        members: &[(
            offset_of!(
                vk::PhysicalDeviceVulkanMemoryModelFeatures<'static>,
                vulkan_memory_model
            ),
            Feature::VulkanMemoryModel,
        )],
    },
    Structure {
        s_type: vk::StructureType::PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR,
        name: "VkPhysicalDeviceCooperativeMatrixFeaturesKHR",
        members: &[(
            offset_of!(
                vk::PhysicalDeviceCooperativeMatrixFeaturesKHR<'static>,
                cooperative_matrix
            ),
            Feature::CooperativeMatrix,
        )],
    },
];

/// The most structures a declared chain may hold. A loop through the
/// structures walked is found and named; a chain that runs on (a loop
/// longer than this, or a corrupt pointer) stops here.
pub const MAX_CHAIN_LENGTH: usize = 64;

/// The device extension the `_dot` variant needs on a Vulkan 1.2 device (core
/// in 1.3).
pub const INTEGER_DOT_PRODUCT_EXTENSION: &CStr = ash::khr::shader_integer_dot_product::NAME;

/// The device extension the matmul `_coop` variant needs (never core).
pub const COOPERATIVE_MATRIX_EXTENSION: &CStr = ash::khr::cooperative_matrix::NAME;

/// The instance extension whose labels name nyxq's dispatches.
pub const DEBUG_UTILS_EXTENSION: &CStr = ash::ext::debug_utils::NAME;

/// The features a chain of structures declares enabled: every [`Feature`]
/// member of a known structure that is not `VK_FALSE`.
///
/// Fails with an invalid-argument error when the chain revisits a structure
/// (a loop), holds more than [`MAX_CHAIN_LENGTH`] structures, or holds a
/// known structure twice (which `vkCreateDevice` does not allow either).
///
/// # Safety
/// `chain` is NULL or points to a Vulkan structure that begins with `sType`
/// and `pNext`, whose `pNext` is NULL or points to another such structure,
/// and so on; every structure of a known `sType` is that whole structure.
pub unsafe fn declared_in_chain(chain: *const c_void) -> Result<Features> {
    let mut walked: Vec<*const c_void> = Vec::with_capacity(MAX_CHAIN_LENGTH);
    let mut known: Vec<vk::StructureType> = Vec::new();
    let mut features = Features::NONE;
    let mut at = chain;
    while !at.is_null() {
        if let Some(first) = walked.iter().position(|&p| p == at) {
            return Err(Error::invalid(format!(
                "the declared feature chain loops: structure {} points back to structure {first} \
                 (counting from 0)",
                walked.len() - 1
            )));
        }
        if walked.len() == MAX_CHAIN_LENGTH {
            return Err(Error::invalid(format!(
                "the declared feature chain holds more than {MAX_CHAIN_LENGTH} structures (a loop \
                 through more structures, or a pNext that was not set?)"
            )));
        }
        walked.push(at);
        // SAFETY: a structure of the chain, per the contract: it begins with
        // sType and pNext (VkBaseInStructure); read unaligned, as C may place
        // it anywhere.
        let base = unsafe { at.cast::<vk::BaseInStructure<'_>>().read_unaligned() };
        if let Some(structure) = STRUCTURES.iter().find(|s| s.s_type == base.s_type) {
            if known.contains(&structure.s_type) {
                return Err(Error::invalid(format!(
                    "the declared feature chain holds {} twice",
                    structure.name
                )));
            }
            known.push(structure.s_type);
            for &(offset, feature) in structure.members {
                // SAFETY: the sType says the whole structure is there (the
                // contract), and `offset` is a VkBool32 member's offset in it.
                let value = unsafe {
                    at.cast::<u8>()
                        .add(offset)
                        .cast::<vk::Bool32>()
                        .read_unaligned()
                };
                features = features.with(feature, value != vk::FALSE);
            }
        }
        at = base.p_next.cast();
    }
    Ok(features)
}

/// What a trainer says it enabled on the device and instance it hands over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    /// The features of its chain ([`declared_in_chain`]).
    pub features: Features,
    /// VkDeviceCreateInfo.ppEnabledExtensionNames.
    pub device_extensions: Vec<String>,
    /// VkInstanceCreateInfo.ppEnabledExtensionNames.
    pub instance_extensions: Vec<String>,
}

/// What the device offers, for [`Declared::enabled`].
#[derive(Debug, Clone, Copy)]
pub struct Offered<'a> {
    /// The device's name, for messages.
    pub device: &'a str,
    /// The features it supports.
    pub features: Features,
    /// Whether it lists VK_KHR_shader_integer_dot_product.
    pub integer_dot_product_extension: bool,
    /// Whether it lists VK_KHR_cooperative_matrix.
    pub cooperative_matrix_extension: bool,
    /// Whether the device gives Vulkan 1.3 commands (the instance's and the
    /// device's versions are both 1.3 or higher).
    pub vulkan_1_3: bool,
}

impl Declared {
    fn declares(list: &[String], name: &CStr) -> bool {
        list.iter().any(|e| e.as_bytes() == name.to_bytes())
    }

    /// Whether VK_EXT_debug_utils is declared enabled on the instance.
    pub fn debug_utils(&self) -> bool {
        Self::declares(&self.instance_extensions, DEBUG_UTILS_EXTENSION)
    }

    /// The features nyxq may use on the device: the declared ones, once each
    /// is checked. A declared feature or extension that the device does not
    /// support, shaderIntegerDotProduct declared on a device without
    /// Vulkan 1.3 and without VK_KHR_shader_integer_dot_product declared, or
    /// cooperativeMatrix declared without VK_KHR_cooperative_matrix, is an
    /// invalid-argument error naming it: the declaration does not describe a
    /// device that vkCreateDevice could have made.
    pub fn enabled(&self, offered: &Offered<'_>) -> Result<Features> {
        let unsupported: Vec<&str> = Feature::ALL
            .into_iter()
            .filter(|&f| self.features.has(f) && !offered.features.has(f))
            .map(Feature::vk_name)
            .collect();
        if !unsupported.is_empty() {
            return Err(Error::invalid(format!(
                "the declared features include {}, which '{}' does not support; declare only \
                 the features passed to vkCreateDevice",
                unsupported.join(", "),
                offered.device
            )));
        }
        let dot_extension = Self::declares(&self.device_extensions, INTEGER_DOT_PRODUCT_EXTENSION);
        if dot_extension && !offered.integer_dot_product_extension {
            return Err(Error::invalid(format!(
                "the declared device extensions include {}, which '{}' does not list",
                INTEGER_DOT_PRODUCT_EXTENSION.to_string_lossy(),
                offered.device
            )));
        }
        let coop_extension = Self::declares(&self.device_extensions, COOPERATIVE_MATRIX_EXTENSION);
        if coop_extension && !offered.cooperative_matrix_extension {
            return Err(Error::invalid(format!(
                "the declared device extensions include {}, which '{}' does not list",
                COOPERATIVE_MATRIX_EXTENSION.to_string_lossy(),
                offered.device
            )));
        }
        if self.features.has(Feature::CooperativeMatrix) && !coop_extension {
            return Err(Error::invalid(format!(
                "cooperativeMatrix is declared, but {} is not among the declared device \
                 extensions: declare the extension the device was created with",
                COOPERATIVE_MATRIX_EXTENSION.to_string_lossy()
            )));
        }
        if self.features.has(Feature::IntegerDotProduct) && !dot_extension && !offered.vulkan_1_3 {
            return Err(Error::invalid(format!(
                "shaderIntegerDotProduct is declared, but {} is not among the declared device \
                 extensions and '{}' does not give Vulkan 1.3 here: declare the extension the \
                 device was created with",
                INTEGER_DOT_PRODUCT_EXTENSION.to_string_lossy(),
                offered.device
            )));
        }
        Ok(self.features)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn walk<T>(head: &T) -> Result<Features> {
        // SAFETY: a chain of ash structures built by the test, alive here.
        unsafe { declared_in_chain((head as *const T).cast()) }
    }

    #[test]
    fn known_structures_are_read_and_unknown_ones_skipped() {
        let mut f11 =
            vk::PhysicalDeviceVulkan11Features::default().storage_buffer16_bit_access(true);
        let mut unknown =
            vk::PhysicalDeviceRobustness2FeaturesEXT::default().robust_buffer_access2(true);
        let mut float16 =
            vk::PhysicalDeviceShaderFloat16Int8Features::default().shader_float16(true);
        let mut dot = vk::PhysicalDeviceShaderIntegerDotProductFeatures::default()
            .shader_integer_dot_product(false);
        let head = vk::PhysicalDeviceFeatures2::default()
            .push_next(&mut f11)
            .push_next(&mut unknown)
            .push_next(&mut float16)
            .push_next(&mut dot);
        let features = walk(&head).unwrap();
        assert_eq!(
            features.names(),
            ["storageBuffer16BitAccess", "shaderFloat16"]
        );
        assert_eq!(
            walk(&vk::PhysicalDeviceFeatures2::default()).unwrap(),
            Features::NONE
        );
        // SAFETY: NULL is the empty chain.
        let empty = unsafe { declared_in_chain(std::ptr::null()) };
        assert_eq!(empty.unwrap(), Features::NONE);
    }

    #[test]
    fn every_feature_is_read_from_its_core_structure() {
        let mut f11 =
            vk::PhysicalDeviceVulkan11Features::default().storage_buffer16_bit_access(true);
        let mut f12 = vk::PhysicalDeviceVulkan12Features::default()
            .storage_buffer8_bit_access(true)
            .shader_float16(true)
            .shader_int8(true)
            .vulkan_memory_model(true);
        let mut f13 =
            vk::PhysicalDeviceVulkan13Features::default().shader_integer_dot_product(true);
        // Never core: its extension's structure.
        let mut coop =
            vk::PhysicalDeviceCooperativeMatrixFeaturesKHR::default().cooperative_matrix(true);
        let head = vk::PhysicalDeviceFeatures2::default()
            .push_next(&mut f11)
            .push_next(&mut f12)
            .push_next(&mut f13)
            .push_next(&mut coop);
        let features = walk(&head).unwrap();
        assert!(
            Feature::ALL.into_iter().all(|f| features.has(f)),
            "{features:?}"
        );
    }

    #[test]
    fn loops_long_chains_and_repeats_are_refused() {
        let mut pair = [vk::PhysicalDeviceFeatures2::default(); 2];
        let second = (&raw mut pair[1]).cast();
        pair[0].p_next = second;
        let first = (&raw mut pair[0]).cast();
        pair[1].p_next = first;
        let err = walk(&pair[0]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(
            err.to_string()
                .contains("loops: structure 1 points back to structure 0"),
            "{err}"
        );

        let mut long: Vec<vk::PhysicalDeviceFeatures2> = (0..=MAX_CHAIN_LENGTH)
            .map(|_| vk::PhysicalDeviceFeatures2::default())
            .collect();
        for i in (0..long.len() - 1).rev() {
            let next = (&raw mut long[i + 1]).cast();
            long[i].p_next = next;
        }
        let err = walk(&long[0]).unwrap_err();
        assert!(err.to_string().contains("more than 64 structures"), "{err}");
        long[MAX_CHAIN_LENGTH - 1].p_next = std::ptr::null_mut();
        assert_eq!(walk(&long[0]).unwrap(), Features::NONE);

        let mut twice = vk::PhysicalDeviceVulkan11Features::default();
        let once = vk::PhysicalDeviceVulkan11Features::default();
        twice.p_next = (&raw const once).cast_mut().cast();
        let err = walk(&twice).unwrap_err();
        assert!(
            err.to_string()
                .contains("holds VkPhysicalDeviceVulkan11Features twice"),
            "{err}"
        );
    }

    fn offered(features: Features, extension: bool, vulkan_1_3: bool) -> Offered<'static> {
        Offered {
            device: "test device",
            features,
            integer_dot_product_extension: extension,
            cooperative_matrix_extension: extension,
            vulkan_1_3,
        }
    }

    #[test]
    fn declarations_are_checked_against_the_device() {
        let all = Feature::ALL
            .into_iter()
            .fold(Features::NONE, |s, f| s.with(f, true));
        let dot_extension = INTEGER_DOT_PRODUCT_EXTENSION.to_str().unwrap().to_string();
        let coop_extension = COOPERATIVE_MATRIX_EXTENSION.to_str().unwrap().to_string();
        let declared = Declared {
            features: all,
            device_extensions: vec![dot_extension.clone(), coop_extension.clone()],
            instance_extensions: vec![],
        };
        assert_eq!(declared.enabled(&offered(all, true, false)).unwrap(), all);

        let without_coop = Declared {
            device_extensions: vec![dot_extension.clone()],
            ..declared.clone()
        };
        let err = without_coop
            .enabled(&offered(all, true, false))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("cooperativeMatrix is declared, but VK_KHR_cooperative_matrix"),
            "{err}"
        );

        let err = declared
            .enabled(&offered(all.without(Feature::Float16), true, false))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(
            err.to_string()
                .contains("include shaderFloat16, which 'test device'"),
            "{err}"
        );

        let err = declared.enabled(&offered(all, false, true)).unwrap_err();
        assert!(
            err.to_string()
                .contains("VK_KHR_shader_integer_dot_product, which"),
            "{err}"
        );

        let unlisted = Offered {
            cooperative_matrix_extension: false,
            ..offered(all, true, false)
        };
        let err = declared.enabled(&unlisted).unwrap_err();
        assert!(
            err.to_string()
                .contains("VK_KHR_cooperative_matrix, which 'test device' does not list"),
            "{err}"
        );

        let no_coop = all.without(Feature::CooperativeMatrix);
        let core = Declared {
            features: no_coop,
            device_extensions: vec![],
            ..declared.clone()
        };
        assert_eq!(core.enabled(&offered(all, false, true)).unwrap(), no_coop);
        let err = core.enabled(&offered(all, true, false)).unwrap_err();
        assert!(
            err.to_string().contains("does not give Vulkan 1.3"),
            "{err}"
        );

        assert_eq!(
            Declared::default()
                .enabled(&offered(Features::NONE, false, false))
                .unwrap(),
            Features::NONE
        );
        assert!(!declared.debug_utils());
        let labelled = Declared {
            instance_extensions: vec!["VK_KHR_surface".into(), "VK_EXT_debug_utils".into()],
            ..Declared::default()
        };
        assert!(labelled.debug_utils());
    }
}
