//! Device emulation: a physical device made to look like another one, within
//! what the device under it can do. Features are masked, limits lowered and
//! memory capped, so that variant selection, the self-test, dispatch
//! splitting, allocation chunking and the planner's hardware detection all
//! see the emulated device (NYXQ_VK_EMULATE names a device report; the report
//! is read by crate::device_report, above this layer).

use super::device::{self, DeviceInfo, DeviceType};
use super::instance::{Instance, Unavailable};
use ash::vk;

/// What an emulated device offers. `None` leaves the real device's fact as
/// it is (the report does not know it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Emulation {
    /// The report's name ("amd-rx580--mesa-radv-25"), shown in the device's
    /// facts.
    pub name: String,
    /// VK_MAKE_API_VERSION of the emulated driver.
    pub api_version: Option<u32>,
    pub max_storage_buffer_range: Option<u32>,
    pub max_allocation_bytes: Option<u64>,
    pub max_workgroup_count: Option<[u32; 3]>,
    /// maxComputeSharedMemorySize.
    pub max_workgroup_bytes: Option<u32>,
    pub subgroup_size: Option<u32>,
    pub shader_float16: Option<bool>,
    pub shader_int8: Option<bool>,
    pub storage_8bit: Option<bool>,
    pub storage_16bit: Option<bool>,
    pub denorm_preserve_f16: Option<bool>,
    pub rounding_rte_f16: Option<bool>,
    pub integer_dot_product: Option<bool>,
    pub integer_dot_accelerated: Option<bool>,
    /// VK_EXT_memory_budget is present.
    pub memory_budget: Option<bool>,
    /// The device-local memory of the emulated machine.
    pub device_local_bytes: Option<u64>,
    /// Device memory carved from system RAM (an integrated GPU).
    pub unified_memory: Option<bool>,
}

/// A fact the emulated device has and the device under it lacks: emulation
/// cannot add it, so the emulated device runs without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub fact: &'static str,
    pub emulated: String,
    pub real: String,
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: the report says {}, the device under it has {}",
            self.fact, self.emulated, self.real
        )
    }
}

/// A feature: the device has it only if both say so; a feature the report has
/// and the device lacks is a shortfall.
fn feature(fact: &'static str, real: &mut bool, emulated: Option<bool>, out: &mut Vec<Shortfall>) {
    let Some(emulated) = emulated else { return };
    if emulated && !*real {
        out.push(Shortfall {
            fact,
            emulated: "true".into(),
            real: "false".into(),
        });
    }
    *real &= emulated;
}

/// A limit: the lower of the two; a report above the device is a shortfall.
fn limit<T: Ord + Copy + std::fmt::Display>(
    fact: &'static str,
    real: &mut T,
    emulated: Option<T>,
    out: &mut Vec<Shortfall>,
) {
    let Some(emulated) = emulated else { return };
    if emulated > *real {
        out.push(Shortfall {
            fact,
            emulated: emulated.to_string(),
            real: real.to_string(),
        });
    }
    *real = (*real).min(emulated);
}

impl Emulation {
    /// Makes `info` the emulated device's facts, as far as the device under
    /// it allows. Returns the facts it could not emulate. The subgroup size is
    /// the hardware's and is never changed: a different one is a shortfall.
    pub fn apply(&self, info: &mut DeviceInfo) -> Vec<Shortfall> {
        let mut out = Vec::new();
        if let Some(version) = self.api_version {
            if version > info.api_version {
                out.push(Shortfall {
                    fact: "apiVersion",
                    emulated: info_version(version),
                    real: info.api_version_string(),
                });
            }
            info.api_version = info.api_version.min(version);
        }
        limit(
            "maxStorageBufferRange",
            &mut info.max_storage_buffer_range,
            self.max_storage_buffer_range,
            &mut out,
        );
        limit(
            "maxMemoryAllocationSize",
            &mut info.max_allocation_bytes,
            self.max_allocation_bytes,
            &mut out,
        );
        limit(
            "maxComputeSharedMemorySize",
            &mut info.max_workgroup_bytes,
            self.max_workgroup_bytes,
            &mut out,
        );
        if let Some(count) = self.max_workgroup_count {
            for (axis, (real, emulated)) in
                info.max_workgroup_count.iter_mut().zip(count).enumerate()
            {
                const AXES: [&str; 3] = [
                    "maxComputeWorkGroupCount[0]",
                    "maxComputeWorkGroupCount[1]",
                    "maxComputeWorkGroupCount[2]",
                ];
                limit(AXES[axis], real, Some(emulated), &mut out);
            }
        }
        if let Some(size) = self.subgroup_size.filter(|&s| s != info.subgroup_size) {
            out.push(Shortfall {
                fact: "subgroupSize",
                emulated: size.to_string(),
                real: info.subgroup_size.to_string(),
            });
            info.emulated_subgroup_size = Some(size);
        }
        feature(
            "shaderFloat16",
            &mut info.shader_float16,
            self.shader_float16,
            &mut out,
        );
        feature(
            "shaderInt8",
            &mut info.shader_int8,
            self.shader_int8,
            &mut out,
        );
        feature(
            "storageBuffer8BitAccess",
            &mut info.storage_8bit,
            self.storage_8bit,
            &mut out,
        );
        feature(
            "storageBuffer16BitAccess",
            &mut info.storage_16bit,
            self.storage_16bit,
            &mut out,
        );
        feature(
            "shaderDenormPreserveFloat16",
            &mut info.denorm_preserve_f16,
            self.denorm_preserve_f16,
            &mut out,
        );
        feature(
            "shaderRoundingModeRTEFloat16",
            &mut info.rounding_rte_f16,
            self.rounding_rte_f16,
            &mut out,
        );
        feature(
            "shaderIntegerDotProduct",
            &mut info.integer_dot_product,
            self.integer_dot_product,
            &mut out,
        );
        feature(
            "integerDotProduct4x8BitPackedSignedAccelerated",
            &mut info.integer_dot_accelerated,
            self.integer_dot_accelerated,
            &mut out,
        );
        info.integer_dot_accelerated &= info.integer_dot_product;
        if let Some(bytes) = self.device_local_bytes {
            limit(
                "device-local memory",
                &mut info.device_local_bytes,
                Some(bytes),
                &mut out,
            );
            info.budget_bytes = info.budget_bytes.map(|b| b.min(bytes));
        }
        match self.memory_budget {
            Some(false) => info.budget_bytes = None,
            Some(true) if info.budget_bytes.is_none() => out.push(Shortfall {
                fact: "VK_EXT_memory_budget",
                emulated: "present".into(),
                real: "absent".into(),
            }),
            _ => {}
        }
        if let Some(unified) = self.unified_memory {
            info.unified_memory = unified;
            info.device_type = if unified {
                DeviceType::IntegratedGpu
            } else {
                DeviceType::DiscreteGpu
            };
        }
        info.emulating = Some(self.name.clone());
        out
    }
}

/// Every physical device the instance sees, with its facts: those of the
/// emulated device where `emulation` is given (what it cannot emulate is
/// logged at INFO).
pub fn enumerate(
    instance: &Instance,
    emulation: Option<&Emulation>,
) -> Result<Vec<(vk::PhysicalDevice, DeviceInfo)>, Unavailable> {
    let mut devices = device::enumerate(instance)?;
    if let Some(emulation) = emulation {
        for (_, info) in &mut devices {
            for shortfall in emulation.apply(info) {
                log::info!(
                    "nyxq vulkan: '{}' cannot emulate {} fully: {shortfall}",
                    info.name,
                    emulation.name
                );
            }
        }
    }
    Ok(devices)
}

/// "major.minor.patch" of a VK_MAKE_API_VERSION value.
fn info_version(version: u32) -> String {
    format!(
        "{}.{}.{}",
        vk::api_version_major(version),
        vk::api_version_minor(version),
        vk::api_version_patch(version)
    )
}

/// "1.3" as VK_MAKE_API_VERSION(0, 1, 3, 0); None for anything else.
pub fn parse_api_version(text: &str) -> Option<u32> {
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    if parts.next().is_some() {
        return None;
    }
    Some(vk::make_api_version(0, major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lavapipe_like() -> DeviceInfo {
        DeviceInfo {
            index: 0,
            name: "llvmpipe".into(),
            vendor_id: 0x10005,
            device_id: 0,
            driver_name: "llvmpipe".into(),
            driver_info: String::new(),
            driver_version: 0,
            api_version: vk::make_api_version(0, 1, 3, 0),
            device_type: DeviceType::Cpu,
            device_local_bytes: 16 << 30,
            budget_bytes: Some(15 << 30),
            unified_memory: true,
            max_allocation_bytes: 1 << 31,
            max_storage_buffer_range: u32::MAX,
            max_workgroup_count: [65535; 3],
            min_storage_offset_alignment: 16,
            subgroup_size: 8,
            shader_float16: true,
            shader_int8: true,
            storage_8bit: true,
            storage_16bit: true,
            integer_dot_product: true,
            integer_dot_accelerated: false,
            rounding_rte_f16: true,
            rounding_rte_f32: true,
            denorm_preserve_f16: true,
            denorm_preserve_f32: true,
            max_workgroup_bytes: 65536,
            compute_queue_family: Some(0),
            emulating: None,
            emulated_subgroup_size: None,
        }
    }

    #[test]
    fn features_are_masked_and_limits_lowered() {
        let mut info = lavapipe_like();
        let emulation = Emulation {
            name: "report".into(),
            shader_float16: Some(false),
            rounding_rte_f16: Some(false),
            max_storage_buffer_range: Some(1 << 30),
            max_workgroup_count: Some([u32::MAX, 1024, 65535]),
            max_workgroup_bytes: Some(32768),
            device_local_bytes: Some(8 << 30),
            unified_memory: Some(false),
            ..Default::default()
        };
        let shortfalls = emulation.apply(&mut info);
        assert!(!info.shader_float16 && !info.rounding_rte_f16);
        assert!(info.shader_int8 && info.storage_16bit, "unknown facts stay");
        assert_eq!(info.max_storage_buffer_range, 1 << 30);
        assert_eq!(info.max_workgroup_count, [65535, 1024, 65535]);
        assert_eq!(info.max_workgroup_bytes, 32768);
        assert_eq!(info.device_local_bytes, 8 << 30);
        assert_eq!(info.budget_bytes, Some(8 << 30));
        assert_eq!(info.device_type, DeviceType::DiscreteGpu);
        assert!(!info.unified_memory);
        assert_eq!(info.emulating.as_deref(), Some("report"));
        // u32::MAX workgroups on axis 0: more than the device has.
        assert_eq!(shortfalls.len(), 1, "{shortfalls:?}");
        assert_eq!(shortfalls[0].fact, "maxComputeWorkGroupCount[0]");
    }

    #[test]
    fn what_the_device_lacks_is_a_shortfall_and_stays_off() {
        let mut info = lavapipe_like();
        info.storage_8bit = false;
        info.budget_bytes = None;
        let emulation = Emulation {
            name: "report".into(),
            storage_8bit: Some(true),
            integer_dot_accelerated: Some(true),
            subgroup_size: Some(64),
            memory_budget: Some(true),
            api_version: parse_api_version("1.4"),
            ..Default::default()
        };
        let shortfalls = emulation.apply(&mut info);
        let facts: Vec<_> = shortfalls.iter().map(|s| s.fact).collect();
        assert_eq!(
            facts,
            [
                "apiVersion",
                "subgroupSize",
                "storageBuffer8BitAccess",
                "integerDotProduct4x8BitPackedSignedAccelerated",
                "VK_EXT_memory_budget"
            ]
        );
        assert!(!info.storage_8bit && !info.integer_dot_accelerated);
        assert_eq!(info.subgroup_size, 8);
        assert_eq!(info.emulated_subgroup_size, Some(64));
        assert_eq!(info.api_version, vk::make_api_version(0, 1, 3, 0));
        assert!(shortfalls[1].to_string().contains("the report says 64"));
        assert_eq!(
            shortfalls[0].to_string(),
            "apiVersion: the report says 1.4.0, the device under it has 1.3.0"
        );
    }

    #[test]
    fn an_older_api_version_makes_the_device_unusable_as_it_would_be() {
        let mut info = lavapipe_like();
        let emulation = Emulation {
            name: "old".into(),
            api_version: parse_api_version("1.1"),
            memory_budget: Some(false),
            ..Default::default()
        };
        assert!(emulation.apply(&mut info).is_empty());
        assert_eq!(info.budget_bytes, None);
        assert!(info.unusable_reason().unwrap().contains("1.1.0"));
    }

    #[test]
    fn api_versions_parse_as_written_in_reports() {
        assert_eq!(
            parse_api_version("1.3"),
            Some(vk::make_api_version(0, 1, 3, 0))
        );
        assert_eq!(
            parse_api_version("1.2.198"),
            Some(vk::make_api_version(0, 1, 2, 198))
        );
        for bad in ["", "1", "1.x", "1.2.3.4", "v1.3"] {
            assert_eq!(parse_api_version(bad), None, "{bad}");
        }
    }
}
