//! Physical device facts (what `nyxq_context_device_info` and `nyxq hwinfo`
//! report, and what shader variants are chosen from) and the logical device.

use super::features::{Declared, Feature, Features, Offered};
use super::instance::{API_VERSION, Instance, Unavailable};
use ash::vk;
use std::ffi::CStr;
use std::sync::Arc;

/// Kind of device, as Vulkan reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceType {
    Other,
    IntegratedGpu,
    DiscreteGpu,
    VirtualGpu,
    Cpu,
}

impl DeviceType {
    fn from_vk(t: vk::PhysicalDeviceType) -> Self {
        match t {
            vk::PhysicalDeviceType::INTEGRATED_GPU => DeviceType::IntegratedGpu,
            vk::PhysicalDeviceType::DISCRETE_GPU => DeviceType::DiscreteGpu,
            vk::PhysicalDeviceType::VIRTUAL_GPU => DeviceType::VirtualGpu,
            vk::PhysicalDeviceType::CPU => DeviceType::Cpu,
            _ => DeviceType::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DeviceType::Other => "other",
            DeviceType::IntegratedGpu => "integrated-gpu",
            DeviceType::DiscreteGpu => "discrete-gpu",
            DeviceType::VirtualGpu => "virtual-gpu",
            DeviceType::Cpu => "cpu",
        }
    }

    /// A real GPU (what AUTO looks for).
    pub fn is_gpu(self) -> bool {
        matches!(
            self,
            DeviceType::IntegratedGpu | DeviceType::DiscreteGpu | DeviceType::VirtualGpu
        )
    }

    /// Preference order for picking among devices (higher is better).
    fn rank(self) -> u32 {
        match self {
            DeviceType::DiscreteGpu => 4,
            DeviceType::IntegratedGpu => 3,
            DeviceType::VirtualGpu => 2,
            DeviceType::Other => 1,
            DeviceType::Cpu => 0,
        }
    }
}

/// Everything nyxq knows about a physical device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub index: u32,
    pub name: String,
    pub vendor_id: u32,
    pub device_id: u32,
    pub driver_name: String,
    pub driver_info: String,
    /// Raw driverVersion (vendor-specific encoding).
    pub driver_version: u32,
    /// Device API version (VK_MAKE_API_VERSION).
    pub api_version: u32,
    pub device_type: DeviceType,
    /// Sum of the DEVICE_LOCAL heaps.
    pub device_local_bytes: u64,
    /// Sum of VK_EXT_memory_budget budgets of the DEVICE_LOCAL heaps; None
    /// when the extension is missing.
    pub budget_bytes: Option<u64>,
    /// True when every heap is DEVICE_LOCAL (one shared pool, UMA or CPU).
    pub unified_memory: bool,
    pub max_allocation_bytes: u64,
    pub max_storage_buffer_range: u32,
    pub max_workgroup_count: [u32; 3],
    /// maxComputeSharedMemorySize: the workgroup memory one dispatch may use.
    pub max_workgroup_bytes: u32,
    pub min_storage_offset_alignment: u64,
    pub subgroup_size: u32,
    pub shader_float16: bool,
    pub shader_int8: bool,
    pub storage_8bit: bool,
    pub storage_16bit: bool,
    pub integer_dot_product: bool,
    /// integerDotProduct4x8BitPackedSignedAccelerated: the packed 8-bit dot
    /// product is a hardware instruction, not emulated by the compiler.
    pub integer_dot_accelerated: bool,
    /// Float controls (Vulkan 1.2): a shader may declare round-to-nearest-even
    /// for 16-bit (32-bit) floats, so conversions to f16 round as the CPU's.
    pub rounding_rte_f16: bool,
    pub rounding_rte_f32: bool,
    /// Float controls: f16 (f32) subnormals may be declared preserved.
    pub denorm_preserve_f16: bool,
    pub denorm_preserve_f32: bool,
    /// The first queue family with COMPUTE.
    pub compute_queue_family: Option<u32>,
    /// The device report these facts emulate (NYXQ_VK_EMULATE), if any.
    pub emulating: Option<String>,
    /// The emulated device's subgroup size, where it differs from
    /// `subgroup_size`: kernels still run with the device's own, but the
    /// choices that depend on it (the `_dot` matvec needs at most 32) follow
    /// the emulated one.
    pub emulated_subgroup_size: Option<u32>,
}

impl DeviceInfo {
    /// "major.minor.patch" of the device's API version.
    pub fn api_version_string(&self) -> String {
        format!(
            "{}.{}.{}",
            vk::api_version_major(self.api_version),
            vk::api_version_minor(self.api_version),
            vk::api_version_patch(self.api_version)
        )
    }

    /// A short name for the vendor ID.
    pub fn vendor_name(&self) -> &'static str {
        match self.vendor_id {
            0x10de => "NVIDIA",
            0x1002 => "AMD",
            0x8086 => "Intel",
            0x13b5 => "ARM",
            0x5143 => "Qualcomm",
            0x106b => "Apple",
            0x10005 => "Mesa",
            _ => "unknown",
        }
    }

    /// The optional features nyxq's kernels use that the device supports.
    pub fn supported_features(&self) -> Features {
        Features::NONE
            .with(Feature::Storage16Bit, self.storage_16bit)
            .with(Feature::Storage8Bit, self.storage_8bit)
            .with(Feature::Float16, self.shader_float16)
            .with(Feature::Int8, self.shader_int8)
            .with(Feature::IntegerDotProduct, self.integer_dot_product)
    }

    /// Why this device cannot run nyxq at all, if it cannot.
    pub fn unusable_reason(&self) -> Option<String> {
        if self.api_version < API_VERSION {
            return Some(format!(
                "device '{}' supports Vulkan {} only; nyxq needs 1.2",
                self.name,
                self.api_version_string()
            ));
        }
        if self.compute_queue_family.is_none() {
            return Some(format!("device '{}' has no compute queue", self.name));
        }
        None
    }
}

fn c_text(s: std::result::Result<&CStr, std::ffi::FromBytesUntilNulError>) -> String {
    s.map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether `pd` lists the device extension `name`.
fn has_extension(instance: &ash::Instance, pd: vk::PhysicalDevice, name: &CStr) -> bool {
    // SAFETY: pd was enumerated from this instance.
    unsafe { instance.enumerate_device_extension_properties(pd) }
        .unwrap_or_default()
        .iter()
        .any(|e| e.extension_name_as_c_str().ok() == Some(name))
}

/// Reads the facts of one physical device.
pub fn query(instance: &ash::Instance, pd: vk::PhysicalDevice, index: u32) -> DeviceInfo {
    // SAFETY: pd was enumerated from this instance.
    let basic = unsafe { instance.get_physical_device_properties(pd) };
    // SAFETY: as above.
    let extensions =
        unsafe { instance.enumerate_device_extension_properties(pd) }.unwrap_or_default();
    let has_ext = |name: &CStr| {
        extensions
            .iter()
            .any(|e| e.extension_name_as_c_str().ok() == Some(name))
    };
    let modern = basic.api_version >= API_VERSION;
    let has_budget = has_ext(ash::ext::memory_budget::NAME);
    let has_dot = vk::api_version_minor(basic.api_version) >= 3
        || has_ext(ash::khr::shader_integer_dot_product::NAME);

    let mut v11 = vk::PhysicalDeviceVulkan11Properties::default();
    let mut v12 = vk::PhysicalDeviceVulkan12Properties::default();
    let mut dot_props = vk::PhysicalDeviceShaderIntegerDotProductProperties::default();
    let mut props2 = vk::PhysicalDeviceProperties2::default();
    if modern {
        props2 = props2.push_next(&mut v11).push_next(&mut v12);
        if has_dot {
            props2 = props2.push_next(&mut dot_props);
        }
    }
    // SAFETY: the chained structs are Vulkan 1.2 core, which the device
    // supports, and the integer dot product's, chained only where it is core
    // (1.3) or its extension is listed.
    unsafe { instance.get_physical_device_properties2(pd, &mut props2) };
    let props = props2.properties;

    let mut f11 = vk::PhysicalDeviceVulkan11Features::default();
    let mut f12 = vk::PhysicalDeviceVulkan12Features::default();
    let mut fdot = vk::PhysicalDeviceShaderIntegerDotProductFeatures::default();
    let mut feats2 = vk::PhysicalDeviceFeatures2::default();
    if modern {
        feats2 = feats2.push_next(&mut f11).push_next(&mut f12);
        if has_dot {
            feats2 = feats2.push_next(&mut fdot);
        }
    }
    // SAFETY: the chained structs are supported (core 1.2, or the extension is listed).
    unsafe { instance.get_physical_device_features2(pd, &mut feats2) };
    let (storage_16bit, storage_8bit, f16, i8) = if modern {
        (
            f11.storage_buffer16_bit_access == vk::TRUE,
            f12.storage_buffer8_bit_access == vk::TRUE,
            f12.shader_float16 == vk::TRUE,
            f12.shader_int8 == vk::TRUE,
        )
    } else {
        (false, false, false, false)
    };
    let integer_dot_product = modern && has_dot && fdot.shader_integer_dot_product == vk::TRUE;
    let integer_dot_accelerated = integer_dot_product
        && dot_props.integer_dot_product4x8_bit_packed_signed_accelerated == vk::TRUE;

    let heaps = super::budget::read_heaps(instance, pd, has_budget);

    // SAFETY: pd was enumerated from this instance.
    let families = unsafe { instance.get_physical_device_queue_family_properties(pd) };
    let compute_queue_family = families
        .iter()
        .position(|f| f.queue_flags.contains(vk::QueueFlags::COMPUTE) && f.queue_count > 0)
        .map(|i| i as u32);

    DeviceInfo {
        index,
        name: c_text(props.device_name_as_c_str()),
        vendor_id: props.vendor_id,
        device_id: props.device_id,
        driver_name: if modern {
            c_text(v12.driver_name_as_c_str())
        } else {
            String::new()
        },
        driver_info: if modern {
            c_text(v12.driver_info_as_c_str())
        } else {
            String::new()
        },
        driver_version: props.driver_version,
        api_version: props.api_version,
        device_type: DeviceType::from_vk(props.device_type),
        device_local_bytes: heaps.device_local_bytes,
        budget_bytes: heaps.budget_bytes,
        unified_memory: heaps.unified_memory,
        max_allocation_bytes: if modern {
            v11.max_memory_allocation_size
        } else {
            1 << 30
        },
        max_storage_buffer_range: props.limits.max_storage_buffer_range,
        max_workgroup_count: props.limits.max_compute_work_group_count,
        max_workgroup_bytes: props.limits.max_compute_shared_memory_size,
        min_storage_offset_alignment: props.limits.min_storage_buffer_offset_alignment,
        subgroup_size: if modern { v11.subgroup_size } else { 1 },
        shader_float16: f16,
        shader_int8: i8,
        storage_8bit,
        storage_16bit,
        integer_dot_product,
        integer_dot_accelerated,
        rounding_rte_f16: modern && v12.shader_rounding_mode_rte_float16 == vk::TRUE,
        rounding_rte_f32: modern && v12.shader_rounding_mode_rte_float32 == vk::TRUE,
        denorm_preserve_f16: modern && v12.shader_denorm_preserve_float16 == vk::TRUE,
        denorm_preserve_f32: modern && v12.shader_denorm_preserve_float32 == vk::TRUE,
        compute_queue_family,
        emulating: None,
        emulated_subgroup_size: None,
    }
}

/// Every physical device the instance sees, with its facts.
pub fn enumerate(
    instance: &Instance,
) -> Result<Vec<(vk::PhysicalDevice, DeviceInfo)>, Unavailable> {
    // SAFETY: a live instance.
    let pds = unsafe { instance.instance.enumerate_physical_devices() }.map_err(|e| {
        Unavailable::NoDevice(format!(
            "no Vulkan device: vkEnumeratePhysicalDevices failed with {e}"
        ))
    })?;
    Ok(pds
        .into_iter()
        .enumerate()
        .map(|(i, pd)| (pd, query(&instance.instance, pd, i as u32)))
        .collect())
}

/// Which devices a context may pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// GPUs only (AUTO: the CPU backend beats a CPU Vulkan driver).
    GpuOnly,
    /// Any device, GPUs first (explicit VULKAN).
    Any,
}

/// Chooses the best usable device, or says why there is none.
pub fn choose(
    devices: &[(vk::PhysicalDevice, DeviceInfo)],
    pick: Pick,
) -> Result<(vk::PhysicalDevice, DeviceInfo), Unavailable> {
    if devices.is_empty() {
        return Err(Unavailable::NoDevice(
            "no Vulkan device: the drivers enumerate no physical device".to_string(),
        ));
    }
    let mut rejected = Vec::new();
    let mut best: Option<&(vk::PhysicalDevice, DeviceInfo)> = None;
    for entry in devices {
        let info = &entry.1;
        if let Some(reason) = info.unusable_reason() {
            rejected.push(reason);
            continue;
        }
        if pick == Pick::GpuOnly && !info.device_type.is_gpu() {
            rejected.push(format!(
                "device '{}' is a {} device, slower than the CPU backend (ask for NYXQ_BACKEND_VULKAN to use it)",
                info.name,
                info.device_type.name()
            ));
            continue;
        }
        if best.is_none_or(|b| info.device_type.rank() > b.1.device_type.rank()) {
            best = Some(entry);
        }
    }
    best.cloned().ok_or_else(|| {
        Unavailable::NoDevice(format!("no usable Vulkan device: {}", rejected.join("; ")))
    })
}

/// A logical device with one compute queue. Owned (destroyed in Drop) or
/// borrowed from the caller (never destroyed).
pub struct Device {
    pub instance: Arc<Instance>,
    pub physical: vk::PhysicalDevice,
    pub device: ash::Device,
    pub queue: vk::Queue,
    pub queue_family: u32,
    pub info: DeviceInfo,
    /// The optional features enabled on the device, which the kernel
    /// variants may use (`_s16` and `_rte` need 16-bit storage, the f16
    /// `_rte` dequantize variants shaderFloat16, the matvec `_dot` variant
    /// shaderIntegerDotProduct).
    pub enabled: Features,
    /// Who chose `enabled`.
    pub features_origin: FeaturesOrigin,
    /// Labels around each recorded dispatch, naming its kernel, where
    /// VK_EXT_debug_utils is enabled on the instance.
    pub debug_labels: Option<ash::ext::debug_utils::Device>,
    /// Pipelines are made with their compile statistics captured
    /// (NYXQ_VK_PIPELINE_STATS=1 and VK_KHR_pipeline_executable_properties).
    pub pipeline_statistics: bool,
    /// Device allocations made so far (for fault injection).
    pub allocations: std::sync::atomic::AtomicU64,
    /// Fault injection: the Nth device allocation (1-based) fails with
    /// out-of-device-memory. 0 means never.
    pub fail_allocation: std::sync::atomic::AtomicU64,
    /// Submissions made so far (for fault injection).
    pub submissions: std::sync::atomic::AtomicU64,
    /// Fault injection: the Nth submission (1-based) reports
    /// VK_ERROR_DEVICE_LOST. 0 means never.
    pub lose_at_submission: std::sync::atomic::AtomicU64,
    /// The device-local bytes nyxq holds, a test's budget, and the admission
    /// of nyxq's device-local allocations against the budget.
    pub ledger: super::budget::Ledger,
    /// Why the device was lost, once a Vulkan call reported it: every later
    /// use of the device is refused with that reason.
    lost: parking_lot::Mutex<Option<String>>,
    /// False for the caller's device (borrowed): never destroyed by nyxq.
    owned: bool,
}

/// Who chose a device's enabled features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeaturesOrigin {
    /// nyxq made the device and enabled each feature it supports.
    Nyxq,
    /// The caller's device: the features its declaration names.
    Declared,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").field("info", &self.info).finish()
    }
}

impl Device {
    /// Creates a device with one compute queue on `pd`, enabling the optional
    /// storage features and the integer dot product the fast variants use
    /// where the device has them.
    pub fn create(
        instance: Arc<Instance>,
        pd: vk::PhysicalDevice,
        info: DeviceInfo,
    ) -> Result<Device, Unavailable> {
        let family = info.compute_queue_family.ok_or_else(|| {
            Unavailable::NoDevice(format!("device '{}' has no compute queue", info.name))
        })?;
        let priorities = [1.0f32];
        let queues = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(family)
            .queue_priorities(&priorities)];
        let mut f11 = vk::PhysicalDeviceVulkan11Features::default()
            .storage_buffer16_bit_access(info.storage_16bit);
        let mut f12 = vk::PhysicalDeviceVulkan12Features::default()
            .storage_buffer8_bit_access(info.storage_8bit)
            .shader_int8(info.shader_int8)
            .shader_float16(info.shader_float16);
        // nyxq's instance asks for Vulkan 1.2, so the integer dot product
        // (core in 1.3) is enabled through its extension, where listed.
        let integer_dot = info.integer_dot_product
            && has_extension(
                &instance.instance,
                pd,
                ash::khr::shader_integer_dot_product::NAME,
            );
        let mut fdot = vk::PhysicalDeviceShaderIntegerDotProductFeatures::default()
            .shader_integer_dot_product(true);
        let mut features = vk::PhysicalDeviceFeatures2::default()
            .features(vk::PhysicalDeviceFeatures::default())
            .push_next(&mut f11)
            .push_next(&mut f12);
        if integer_dot {
            features = features.push_next(&mut fdot);
        }
        let statistics = std::env::var_os("NYXQ_VK_PIPELINE_STATS").is_some()
            && has_extension(
                &instance.instance,
                pd,
                ash::khr::pipeline_executable_properties::NAME,
            );
        let mut f_stats = vk::PhysicalDevicePipelineExecutablePropertiesFeaturesKHR::default()
            .pipeline_executable_info(true);
        let mut extensions = Vec::new();
        if integer_dot {
            extensions.push(ash::khr::shader_integer_dot_product::NAME.as_ptr());
        }
        if statistics {
            extensions.push(ash::khr::pipeline_executable_properties::NAME.as_ptr());
        }
        let mut create = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queues)
            .enabled_extension_names(&extensions)
            .push_next(&mut features);
        if statistics {
            create = create.push_next(&mut f_stats);
        }
        // SAFETY: pd belongs to instance; only features the device reports are enabled.
        let device =
            unsafe { instance.instance.create_device(pd, &create, None) }.map_err(|e| {
                Unavailable::NoDevice(format!("vkCreateDevice on '{}' failed with {e}", info.name))
            })?;
        // SAFETY: queue 0 of `family` was requested at creation.
        let queue = unsafe { device.get_device_queue(family, 0) };
        let debug_labels = instance
            .debug_utils
            .then(|| ash::ext::debug_utils::Device::new(&instance.instance, &device));
        Ok(Device {
            pipeline_statistics: statistics,
            owned: true,
            allocations: std::sync::atomic::AtomicU64::new(0),
            fail_allocation: std::sync::atomic::AtomicU64::new(0),
            submissions: std::sync::atomic::AtomicU64::new(0),
            lose_at_submission: std::sync::atomic::AtomicU64::new(0),
            lost: parking_lot::Mutex::new(None),
            ledger: super::budget::Ledger::default(),
            enabled: info
                .supported_features()
                .without(Feature::IntegerDotProduct)
                .with(Feature::IntegerDotProduct, integer_dot),
            features_origin: FeaturesOrigin::Nyxq,
            debug_labels,
            instance,
            physical: pd,
            device,
            queue,
            queue_family: family,
            info,
        })
    }
}

impl Device {
    /// Refuses with the first device-lost error once a Vulkan call met it:
    /// nothing more is submitted to or allocated on a lost device.
    pub(crate) fn check_lost(&self) -> crate::error::Result<()> {
        match &*self.lost.lock() {
            None => Ok(()),
            Some(reason) => Err(crate::error::Error::new(
                crate::error::ErrorKind::DeviceLost,
                format!("the Vulkan device was lost earlier ({reason}); create a new context"),
            )),
        }
    }

    /// Passes `result` on, and remembers a device-lost error as the device's
    /// state.
    pub(crate) fn note_loss<T>(&self, result: crate::error::Result<T>) -> crate::error::Result<T> {
        if let Err(e) = &result
            && e.kind() == crate::error::ErrorKind::DeviceLost
        {
            let mut lost = self.lost.lock();
            if lost.is_none() {
                log::error!("nyxq vulkan: {}", e.message());
                *lost = Some(e.message().to_string());
            }
        }
        result
    }

    /// Counts a submission and, under fault injection, reports the one chosen
    /// as lost.
    pub(crate) fn submission_fault(&self) -> Option<ash::vk::Result> {
        use std::sync::atomic::Ordering::Relaxed;
        let nth = self.submissions.fetch_add(1, Relaxed) + 1;
        (self.lose_at_submission.load(Relaxed) == nth).then_some(ash::vk::Result::ERROR_DEVICE_LOST)
    }
}

impl Device {
    /// Wraps the caller's device and compute queue. nyxq's kernels need Vulkan
    /// 1.2 and a compute queue, which is checked; their fast variants run
    /// where the features they need are `declared` (and supported, which is
    /// checked: [`Declared::enabled`]). Nothing borrowed is ever destroyed.
    ///
    /// # Safety
    /// `physical`, `device` and `queue` are live, belong to `instance`, the
    /// queue is of family `queue_family` on `device`, and all outlive the
    /// returned value. The caller does not submit to `queue` while nyxq does
    /// (nyxq serialises its own submissions), or passes a queue of its own.
    /// `declared` says what the caller enabled on `device` (and on
    /// `instance`, whose `debug_utils` says the same as `declared`).
    pub unsafe fn borrow(
        instance: Arc<Instance>,
        physical: vk::PhysicalDevice,
        device: vk::Device,
        queue_family: u32,
        queue: vk::Queue,
        declared: &Declared,
    ) -> crate::error::Result<Device> {
        // SAFETY: live handles of this instance, per the contract.
        unsafe { check_effective_version(&instance, physical, device) }?;
        let info = query(&instance.instance, physical, 0);
        if let Some(reason) = info.unusable_reason() {
            return Err(crate::error::Error::unsupported(reason));
        }
        // SAFETY: physical belongs to the instance, per the contract.
        let families = unsafe {
            instance
                .instance
                .get_physical_device_queue_family_properties(physical)
        };
        let compute = families
            .get(queue_family as usize)
            .is_some_and(|f| f.queue_flags.contains(vk::QueueFlags::COMPUTE));
        if !compute {
            return Err(crate::error::Error::invalid(format!(
                "queue family {queue_family} of '{}' has no COMPUTE capability",
                info.name
            )));
        }
        let enabled = declared.enabled(&Offered {
            device: &info.name,
            features: info.supported_features(),
            integer_dot_product_extension: has_extension(
                &instance.instance,
                physical,
                ash::khr::shader_integer_dot_product::NAME,
            ),
            // SAFETY: a live device of this instance, per the contract.
            vulkan_1_3: info.api_version >= vk::API_VERSION_1_3
                && unsafe { gives_command(&instance, device, c"vkCmdPipelineBarrier2") },
        })?;
        // SAFETY: a live device of this instance, per the contract.
        let labelled =
            declared.debug_utils() && unsafe { check_debug_labels(&instance, device, &info.name) }?;
        // SAFETY: a live device of this instance, per the contract.
        let device = unsafe { ash::Device::load(instance.instance.fp_v1_0(), device) };
        let debug_labels =
            labelled.then(|| ash::ext::debug_utils::Device::new(&instance.instance, &device));
        Ok(Device {
            pipeline_statistics: false,
            owned: false,
            allocations: std::sync::atomic::AtomicU64::new(0),
            fail_allocation: std::sync::atomic::AtomicU64::new(0),
            submissions: std::sync::atomic::AtomicU64::new(0),
            lose_at_submission: std::sync::atomic::AtomicU64::new(0),
            lost: parking_lot::Mutex::new(None),
            ledger: super::budget::Ledger::default(),
            enabled,
            features_origin: FeaturesOrigin::Declared,
            debug_labels,
            instance,
            physical,
            device,
            queue,
            queue_family,
            info,
        })
    }

    /// The context report's lines on the device's features and labels.
    pub fn features_report(&self) -> [String; 2] {
        let names = self.enabled.names();
        let features = match (self.features_origin, names.is_empty()) {
            (FeaturesOrigin::Nyxq, true) => {
                "device features: none of those the fast variants use (nyxq's device)".to_string()
            }
            (FeaturesOrigin::Nyxq, false) => format!(
                "device features: {} (enabled by nyxq, each the device supports)",
                names.join(", ")
            ),
            (FeaturesOrigin::Declared, true) => "device features: none declared by the caller \
                 (the variants that need none run)"
                .to_string(),
            (FeaturesOrigin::Declared, false) => {
                format!(
                    "device features: {} (declared by the caller)",
                    names.join(", ")
                )
            }
        };
        let labels = match (self.debug_labels.is_some(), self.features_origin) {
            (true, _) => {
                "debug labels: each dispatch is labelled with its kernel's name (VK_EXT_debug_utils)"
            }
            (false, FeaturesOrigin::Nyxq) => {
                "debug labels: off (nyxq enables VK_EXT_debug_utils on its instance with validation)"
            }
            (false, FeaturesOrigin::Declared) => {
                "debug labels: off (VK_EXT_debug_utils is not declared enabled on the instance)"
            }
        };
        [features, labels.to_string()]
    }
}

/// Whether vkGetDeviceProcAddr gives `name` on `device`.
///
/// # Safety
/// `device` is live and belongs to `instance`.
unsafe fn gives_command(instance: &Instance, device: vk::Device, name: &CStr) -> bool {
    // SAFETY: per this function's contract; the name is NUL-terminated.
    unsafe { (instance.instance.fp_v1_0().get_device_proc_addr)(device, name.as_ptr()) }.is_some()
}

/// Checks that the label commands of VK_EXT_debug_utils, which the caller
/// declared enabled on its instance, exist (ash would otherwise call a stub
/// that panics); Ok(true) when they do. A loader may hand out the commands
/// when the extension is not enabled too, so the declaration decides.
///
/// # Safety
/// `device` is live and belongs to `instance`.
unsafe fn check_debug_labels(
    instance: &Instance,
    device: vk::Device,
    name: &str,
) -> crate::error::Result<bool> {
    for command in [
        c"vkCmdBeginDebugUtilsLabelEXT",
        c"vkCmdEndDebugUtilsLabelEXT",
    ] {
        // SAFETY: per this function's contract.
        if !unsafe { gives_command(instance, device, command) } {
            return Err(crate::error::Error::invalid(format!(
                "VK_EXT_debug_utils is declared enabled on the instance, but vkGetDeviceProcAddr \
                 gives no {} for '{name}': enable the extension on the instance, or do not \
                 declare it",
                command.to_string_lossy()
            )));
        }
    }
    Ok(true)
}

/// Refuses a device whose effective API version (the lower of the instance's
/// VkApplicationInfo.apiVersion and the device's) is below 1.2. The instance's
/// apiVersion cannot be read back from a VkInstance, so this asks the device
/// for a Vulkan 1.2 command: loaders and drivers return NULL for commands
/// above the effective version. Checked before anything chains Vulkan 1.2
/// structures, which would be invalid usage on such an instance.
///
/// # Safety
/// `physical` and `device` are live and belong to `instance`.
unsafe fn check_effective_version(
    instance: &Instance,
    physical: vk::PhysicalDevice,
    device: vk::Device,
) -> crate::error::Result<()> {
    // SAFETY: a live device of this instance, per the contract.
    if unsafe { gives_command(instance, device, c"vkGetSemaphoreCounterValue") } {
        return Ok(());
    }
    // SAFETY: physical belongs to the instance; a Vulkan 1.0 query.
    let props = unsafe { instance.instance.get_physical_device_properties(physical) };
    Err(crate::error::Error::unsupported(format!(
        "the instance was created with VkApplicationInfo.apiVersion below 1.2 (1.0 or 1.1: \
         the device '{}' supports {}.{} but vkGetDeviceProcAddr returns no Vulkan 1.2 command); \
         nyxq needs Vulkan 1.2 (its shaders are SPIR-V 1.5, and it reads the Vulkan 1.1 and 1.2 \
         properties and features): create the instance with apiVersion = VK_API_VERSION_1_2 \
         or higher",
        c_text(props.device_name_as_c_str()),
        vk::api_version_major(props.api_version),
        vk::api_version_minor(props.api_version),
    )))
}

/// The compile statistics of every executable of `pipeline` (a device made
/// with `pipeline_statistics`), as (name, value) pairs.
pub fn pipeline_statistics(
    device: &Device,
    pipeline: vk::Pipeline,
) -> Option<Vec<(String, String)>> {
    let ext = ash::khr::pipeline_executable_properties::Device::new(
        &device.instance.instance,
        &device.device,
    );
    let info = vk::PipelineInfoKHR::default().pipeline(pipeline);
    // SAFETY: the extension and its feature are enabled on this device, and
    // the pipeline was made from it with CAPTURE_STATISTICS.
    let count = unsafe { ext.get_pipeline_executable_properties(&info) }
        .ok()?
        .len();
    let mut out = Vec::new();
    for index in 0..count as u32 {
        let exe = vk::PipelineExecutableInfoKHR::default()
            .pipeline(pipeline)
            .executable_index(index);
        // SAFETY: as above; index < the executable count.
        let stats = unsafe { ext.get_pipeline_executable_statistics(&exe) }.ok()?;
        for s in &stats {
            let name = c_text(s.name_as_c_str());
            // SAFETY: the union member read is the one `format` names.
            let value = unsafe {
                match s.format {
                    vk::PipelineExecutableStatisticFormatKHR::BOOL32 => s.value.b32.to_string(),
                    vk::PipelineExecutableStatisticFormatKHR::INT64 => s.value.i64.to_string(),
                    vk::PipelineExecutableStatisticFormatKHR::UINT64 => s.value.u64.to_string(),
                    _ => s.value.f64.to_string(),
                }
            };
            out.push((name, value));
        }
    }
    Some(out)
}

impl Drop for Device {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        // SAFETY: nyxq created this device; waiting idle makes every object
        // made from it unused, and those objects were dropped before (they
        // hold an Arc to this Device).
        unsafe {
            let _ = self.device.device_wait_idle();
            self.device.destroy_device(None);
        }
    }
}
