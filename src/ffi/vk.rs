//! The Vulkan side of the C ABI: device facts of a context.

use super::context::NyxqContext;
use super::guard::guard;
use super::handle;
use super::status::NyxqStatus;
use super::{copy_to_c_array, ptr};
use crate::error::Error;
use crate::vk::DeviceType;
use std::ffi::{c_char, c_void};

/// Kind of Vulkan device (NyxqDeviceInfo.device_type), as Vulkan reports it.
#[repr(i32)]
pub enum NyxqDeviceType {
    NyxqDeviceTypeOther = 0,
    NyxqDeviceTypeIntegratedGpu = 1,
    NyxqDeviceTypeDiscreteGpu = 2,
    NyxqDeviceTypeVirtualGpu = 3,
    NyxqDeviceTypeCpu = 4,
}

/// Bytes of NyxqDeviceInfo.name, the NUL included (VK_MAX_PHYSICAL_DEVICE_NAME_SIZE).
pub const NYXQ_DEVICE_NAME_LEN: usize = 256;

/// Bytes of NyxqDeviceInfo.vendor_name, the NUL included.
pub const NYXQ_VENDOR_NAME_LEN: usize = 32;

/// Bytes of NyxqDeviceInfo.driver_name, the NUL included (VK_MAX_DRIVER_NAME_SIZE).
pub const NYXQ_DRIVER_NAME_LEN: usize = 256;

/// Bytes of NyxqDeviceInfo.driver_info, the NUL included (VK_MAX_DRIVER_INFO_SIZE).
pub const NYXQ_DRIVER_INFO_LEN: usize = 256;

/// Facts about the Vulkan device a context runs on (nyxq_context_device_info).
/// Flags are 1 (true) or 0 (false). Strings are NUL-terminated UTF-8.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NyxqDeviceInfo {
    /// VkPhysicalDeviceProperties.deviceName.
    pub name: [c_char; NYXQ_DEVICE_NAME_LEN],
    /// Vendor's name derived from vendor_id ("NVIDIA", "AMD", "Intel", "Mesa", "unknown").
    pub vendor_name: [c_char; NYXQ_VENDOR_NAME_LEN],
    /// PCI vendor ID (or Khronos vendor ID).
    pub vendor_id: u32,
    pub device_id: u32,
    /// VkPhysicalDeviceDriverProperties.driverName, e.g. "llvmpipe", "NVIDIA".
    pub driver_name: [c_char; NYXQ_DRIVER_NAME_LEN],
    /// VkPhysicalDeviceDriverProperties.driverInfo, e.g. "Mesa 22.3.6 (LLVM 15.0.6)".
    pub driver_info: [c_char; NYXQ_DRIVER_INFO_LEN],
    /// Raw driverVersion (the encoding is the vendor's).
    pub driver_version: u32,
    /// Device Vulkan API version (VK_MAKE_API_VERSION encoding).
    pub api_version: u32,
    /// A NyxqDeviceType value.
    pub device_type: i32,
    /// 1 when all memory heaps are device-local (one shared pool: UMA or CPU).
    pub unified_memory: u32,
    /// Total size of the device-local heaps, in bytes.
    pub device_local_bytes: u64,
    /// VK_EXT_memory_budget budget of the device-local heaps; 0 when
    /// has_memory_budget is 0.
    pub budget_bytes: u64,
    /// 1 when the device supports VK_EXT_memory_budget.
    pub has_memory_budget: u32,
    /// Subgroup size (VkPhysicalDeviceSubgroupProperties.subgroupSize).
    pub subgroup_size: u32,
    /// maxMemoryAllocationSize, in bytes.
    pub max_allocation_bytes: u64,
    /// maxStorageBufferRange, in bytes.
    pub max_storage_buffer_range: u64,
    /// shaderFloat16 (FP16 arithmetic).
    pub shader_float16: u32,
    /// shaderInt8 (INT8 arithmetic).
    pub shader_int8: u32,
    /// storageBuffer8BitAccess.
    pub storage_8bit: u32,
    /// storageBuffer16BitAccess.
    pub storage_16bit: u32,
    /// shaderIntegerDotProduct (Vulkan 1.3 or VK_KHR_shader_integer_dot_product).
    pub integer_dot_product: u32,
    /// 1 when only the compatible shader variants are used (forced by option
    /// or NYXQ_VK_FORCE_COMPAT=1).
    pub compat_forced: u32,
    /// Validation-layer errors counted so far (0 when validation is off).
    pub validation_errors: u32,
}

pub(crate) fn device_info_to_c(info: &crate::vk::DeviceInfo) -> NyxqDeviceInfo {
    let flag = |b: bool| u32::from(b);
    let mut out = NyxqDeviceInfo {
        name: [0; NYXQ_DEVICE_NAME_LEN],
        vendor_name: [0; NYXQ_VENDOR_NAME_LEN],
        vendor_id: info.vendor_id,
        device_id: info.device_id,
        driver_name: [0; NYXQ_DRIVER_NAME_LEN],
        driver_info: [0; NYXQ_DRIVER_INFO_LEN],
        driver_version: info.driver_version,
        api_version: info.api_version,
        device_type: match info.device_type {
            DeviceType::Other => NyxqDeviceType::NyxqDeviceTypeOther,
            DeviceType::IntegratedGpu => NyxqDeviceType::NyxqDeviceTypeIntegratedGpu,
            DeviceType::DiscreteGpu => NyxqDeviceType::NyxqDeviceTypeDiscreteGpu,
            DeviceType::VirtualGpu => NyxqDeviceType::NyxqDeviceTypeVirtualGpu,
            DeviceType::Cpu => NyxqDeviceType::NyxqDeviceTypeCpu,
        } as i32,
        unified_memory: flag(info.unified_memory),
        device_local_bytes: info.device_local_bytes,
        budget_bytes: info.budget_bytes.unwrap_or(0),
        has_memory_budget: flag(info.budget_bytes.is_some()),
        subgroup_size: info.subgroup_size,
        max_allocation_bytes: info.max_allocation_bytes,
        max_storage_buffer_range: u64::from(info.max_storage_buffer_range),
        shader_float16: flag(info.shader_float16),
        shader_int8: flag(info.shader_int8),
        storage_8bit: flag(info.storage_8bit),
        storage_16bit: flag(info.storage_16bit),
        integer_dot_product: flag(info.integer_dot_product),
        compat_forced: 0,
        validation_errors: 0,
    };
    copy_to_c_array(&info.name, &mut out.name);
    copy_to_c_array(info.vendor_name(), &mut out.vendor_name);
    copy_to_c_array(&info.driver_name, &mut out.driver_name);
    copy_to_c_array(&info.driver_info, &mut out.driver_info);
    out
}

/// Describes the Vulkan device a context runs on.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_UNSUPPORTED when the context runs on the CPU (nyxq_context_info
/// says why). *info_out is written only on success. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_context_device_info(
    ctx: *const NyxqContext,
    info_out: *mut NyxqDeviceInfo,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        let out = ptr::out(info_out, "info_out")?;
        let info = context.device_info().ok_or_else(|| {
            Error::unsupported("the context runs on the CPU; it has no Vulkan device")
        })?;
        let mut c = device_info_to_c(info);
        c.compat_forced = u32::from(context.force_compat());
        c.validation_errors = context.vulkan_validation_errors();
        // SAFETY: info_out checked non-NULL; points to a NyxqDeviceInfo per the contract.
        unsafe { out.write(c) };
        Ok(())
    })
}

/// The caller's Vulkan objects for nyxq_context_create_vulkan_borrowed, and
/// what it enabled on them.
///
/// Handles are opaque in this header so that it does not depend on the Vulkan
/// headers: dispatchable handles (VkInstance, VkPhysicalDevice, VkDevice,
/// VkQueue) are pointers in every Vulkan ABI and convert to `void *` without a
/// cast. `get_instance_proc_addr` needs the one documented cast:
/// `reinterpret_cast<void *>(vkGetInstanceProcAddr)` (C: `(void *)`).
///
/// Versioned by struct_size: a caller built against an older header (whose
/// struct ends at `get_instance_proc_addr`) declares nothing, and nyxq reads
/// no field past the struct_size it is given. Zero-initialise the struct
/// (`NyxqVulkanHandles h{}`) so that fields you do not set declare nothing.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NyxqVulkanHandles {
    /// sizeof(NyxqVulkanHandles) as the caller compiled it.
    pub struct_size: usize,
    /// VkInstance (created with VkApplicationInfo.apiVersion >= VK_API_VERSION_1_2;
    /// a lower one is refused with NYXQ_ERROR_UNSUPPORTED).
    pub instance: *mut c_void,
    /// VkPhysicalDevice of that instance.
    pub physical_device: *mut c_void,
    /// VkDevice created on that physical device.
    pub device: *mut c_void,
    /// Queue family of `queue`; must have VK_QUEUE_COMPUTE_BIT.
    pub queue_family: u32,
    /// VkQueue from vkGetDeviceQueue(device, queue_family, ...).
    pub queue: *mut c_void,
    /// PFN_vkGetInstanceProcAddr of the loader that made `instance`.
    pub get_instance_proc_addr: *mut c_void,
    /// The `pNext` chain you passed in VkDeviceCreateInfo (usually a
    /// VkPhysicalDeviceFeatures2 followed by VkPhysicalDeviceVulkan11Features,
    /// ...12Features, ...13Features), or NULL: nothing declared. nyxq walks it
    /// by sType and reads VkPhysicalDeviceVulkan11Features,
    /// VkPhysicalDeviceVulkan12Features, VkPhysicalDeviceVulkan13Features,
    /// VkPhysicalDevice16BitStorageFeatures, VkPhysicalDevice8BitStorageFeatures,
    /// VkPhysicalDeviceShaderFloat16Int8Features and
    /// VkPhysicalDeviceShaderIntegerDotProductFeatures; it skips every other
    /// structure, and reads only during the call. The fast kernel variants
    /// run where their features are declared: storageBuffer16BitAccess
    /// (`_s16`, `_rte`), shaderFloat16 (the f16 `_rte` dequantize
    /// variants), shaderIntegerDotProduct (matvec `_dot`).
    pub enabled_features: *const c_void,
    /// VkDeviceCreateInfo.ppEnabledExtensionNames (NULL when
    /// enabled_extension_count is 0). nyxq reads
    /// VK_KHR_shader_integer_dot_product and ignores the others.
    pub enabled_extensions: *const *const c_char,
    /// VkDeviceCreateInfo.enabledExtensionCount.
    pub enabled_extension_count: usize,
    /// VkInstanceCreateInfo.ppEnabledExtensionNames (NULL when
    /// enabled_instance_extension_count is 0). nyxq reads VK_EXT_debug_utils
    /// (each recorded dispatch is then labelled with its kernel's name) and
    /// ignores the others.
    pub enabled_instance_extensions: *const *const c_char,
    /// VkInstanceCreateInfo.enabledExtensionCount.
    pub enabled_instance_extension_count: usize,
}

impl Default for NyxqVulkanHandles {
    fn default() -> Self {
        NyxqVulkanHandles {
            struct_size: size_of::<NyxqVulkanHandles>(),
            instance: std::ptr::null_mut(),
            physical_device: std::ptr::null_mut(),
            device: std::ptr::null_mut(),
            queue_family: 0,
            queue: std::ptr::null_mut(),
            get_instance_proc_addr: std::ptr::null_mut(),
            enabled_features: std::ptr::null(),
            enabled_extensions: std::ptr::null(),
            enabled_extension_count: 0,
            enabled_instance_extensions: std::ptr::null(),
            enabled_instance_extension_count: 0,
        }
    }
}

/// The bytes of NyxqVulkanHandles as the first header declared it (up to
/// `get_instance_proc_addr`): the smallest struct_size accepted.
const HANDLES_FIRST_SIZE: usize =
    std::mem::offset_of!(NyxqVulkanHandles, get_instance_proc_addr) + size_of::<usize>();

/// The extension names of `(names, count)`, each checked.
///
/// # Safety
/// As nyxq_context_create_vulkan_borrowed's contract for the two fields.
unsafe fn extension_names(
    names: *const *const c_char,
    count: usize,
    what: &str,
) -> crate::error::Result<Vec<String>> {
    // SAFETY: (NULL, 0) or `count` string pointers, per the contract.
    let names = unsafe { ptr::slice(names, count, what) }?;
    names
        .iter()
        .enumerate()
        // SAFETY: each a NUL-terminated string, per the contract.
        .map(|(i, &name)| unsafe { ptr::string(name, &format!("{what}[{i}]")) }.map(String::from))
        .collect()
}

/// What the caller declares it enabled (the fields after
/// `get_instance_proc_addr`).
///
/// # Safety
/// As nyxq_context_create_vulkan_borrowed's contract for those fields.
unsafe fn declared(h: &NyxqVulkanHandles) -> crate::error::Result<crate::vk::features::Declared> {
    Ok(crate::vk::features::Declared {
        // SAFETY: NULL or the caller's pNext chain, per the contract.
        features: unsafe { crate::vk::features::declared_in_chain(h.enabled_features) }?,
        // SAFETY: per the contract.
        device_extensions: unsafe {
            extension_names(
                h.enabled_extensions,
                h.enabled_extension_count,
                "handles->enabled_extensions",
            )
        }?,
        // SAFETY: per the contract.
        instance_extensions: unsafe {
            extension_names(
                h.enabled_instance_extensions,
                h.enabled_instance_extension_count,
                "handles->enabled_instance_extensions",
            )
        }?,
    })
}

/// Creates a Vulkan context on the caller's instance, device and queue
/// (borrowed). nyxq loads its function pointers through
/// `handles->get_instance_proc_addr`, checks that the instance and the device
/// give Vulkan 1.2 (the instance created with apiVersion VK_API_VERSION_1_2
/// or higher: nyxq's shaders are SPIR-V 1.5 and it reads the Vulkan 1.1 and
/// 1.2 properties and features) and that `queue_family` has
/// compute, runs the kernel self-test, and never destroys anything it
/// borrowed: destroy the context before your device. A context is never
/// created with every kernel disabled: when every kernel fails its self-test
/// the call fails with the reason.
///
/// Queue use: nyxq submits to `queue` only inside its own calls, serialised by
/// a lock; do not submit to the same queue from another thread during a nyxq
/// call, or pass a queue of your own. Every nyxq submission is waited on
/// before the call returns.
///
/// Features: the fast kernel variants run where the features they need are
/// declared in `enabled_features` (and the device supports them, which is
/// checked); with nothing declared only the variants that need no optional
/// feature run (same bytes, slower). nyxq reads what you declare and cannot
/// see what vkCreateDevice really enabled: declaring a feature you did not
/// enable makes nyxq run kernels the device was not created for (the
/// validation layer reports it when the pipelines are made). Likewise
/// declare VK_EXT_debug_utils only when the instance was created with it.
/// nyxq_context_report lists the features in use and each kernel's variant.
///
/// `options` (NULL for defaults) gives log level, threads, validation is
/// ignored (the instance is yours). On failure *ctx_out is untouched.
///
/// Errors: NYXQ_ERROR_NULL_POINTER (handles, a handle in it, ctx_out;
/// enabled_extensions or enabled_instance_extensions NULL with a count
/// above 0, or an extension name in them NULL),
/// NYXQ_ERROR_INVALID_ARGUMENT (struct_size, a queue family without compute;
/// a declared feature or VK_KHR_shader_integer_dot_product that the device
/// does not support, shaderIntegerDotProduct declared without that
/// extension on a device below Vulkan 1.3, VK_EXT_debug_utils declared but
/// its label commands not found; an extension name not UTF-8; a feature
/// chain that loops, holds more than 64 structures, or holds a feature
/// structure twice, each named in the message),
/// NYXQ_ERROR_UNSUPPORTED (an instance created with an apiVersion below 1.2 or
/// a device below Vulkan 1.2, the message naming the versions and the fix;
/// every kernel failing its self-test), NYXQ_ERROR_VULKAN.
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_context_create_vulkan_borrowed(
    options: *const super::context::NyxqContextOptions,
    handles: *const NyxqVulkanHandles,
    ctx_out: *mut *mut NyxqContext,
) -> NyxqStatus {
    guard(|| {
        let out = ptr::out(ctx_out, "ctx_out")?;
        if handles.is_null() {
            return Err(Error::new(crate::ErrorKind::NullPointer, "handles is NULL"));
        }
        // SAFETY: non-NULL, a NyxqVulkanHandles of struct_size bytes per the contract.
        let h = unsafe { ptr::options(handles, HANDLES_FIRST_SIZE, "NyxqVulkanHandles") }?;
        for (p, what) in [
            (h.instance, "handles->instance"),
            (h.physical_device, "handles->physical_device"),
            (h.device, "handles->device"),
            (h.queue, "handles->queue"),
            (h.get_instance_proc_addr, "handles->get_instance_proc_addr"),
        ] {
            if p.is_null() {
                return Err(Error::new(
                    crate::ErrorKind::NullPointer,
                    format!("{what} is NULL"),
                ));
            }
        }
        use ash::vk::Handle;
        // SAFETY: the caller passes vkGetInstanceProcAddr (non-NULL, checked)
        // as a data pointer; on every platform Vulkan supports, function and
        // data pointers have the same size and representation.
        let gipa: ash::vk::PFN_vkGetInstanceProcAddr = unsafe {
            std::mem::transmute::<*mut c_void, ash::vk::PFN_vkGetInstanceProcAddr>(
                h.get_instance_proc_addr,
            )
        };
        let borrowed = crate::vk::borrowed::BorrowedHandles {
            get_instance_proc_addr: gipa,
            instance: ash::vk::Instance::from_raw(h.instance as u64),
            physical_device: ash::vk::PhysicalDevice::from_raw(h.physical_device as u64),
            device: ash::vk::Device::from_raw(h.device as u64),
            queue_family: h.queue_family,
            queue: ash::vk::Queue::from_raw(h.queue as u64),
            // SAFETY: the declaration fields per the contract (beyond
            // struct_size they are NULL/0 from the defaults).
            declared: unsafe { declared(&h) }?,
        };
        // SAFETY: NULL or a NyxqContextOptions per the contract.
        let settings = unsafe { super::context::settings_from(options) }?;
        // SAFETY: the caller guarantees the handles are live, belong together
        // and outlive the context (documented above).
        let device = unsafe { crate::vk::borrowed::borrow(&borrowed) }?;
        let context = crate::context::Context::with_device(&settings, device)?;
        // SAFETY: ctx_out checked non-NULL.
        unsafe { out.write(handle::register::<NyxqContext>(context)) };
        Ok(())
    })
}
