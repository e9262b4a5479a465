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

/// The caller's Vulkan objects for nyxq_context_create_vulkan_borrowed.
///
/// Handles are opaque in this header so that it does not depend on the Vulkan
/// headers: dispatchable handles (VkInstance, VkPhysicalDevice, VkDevice,
/// VkQueue) are pointers in every Vulkan ABI and convert to `void *` without a
/// cast. `get_instance_proc_addr` needs the one documented cast:
/// `reinterpret_cast<void *>(vkGetInstanceProcAddr)` (C: `(void *)`).
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
        }
    }
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
/// `options` (NULL for defaults) gives log level, threads, validation is
/// ignored (the instance is yours). On failure *ctx_out is untouched.
///
/// Errors: NYXQ_ERROR_NULL_POINTER (handles, a handle in it, ctx_out),
/// NYXQ_ERROR_INVALID_ARGUMENT (struct_size, a queue family without compute),
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
        let h = unsafe {
            ptr::options(
                handles,
                std::mem::offset_of!(NyxqVulkanHandles, get_instance_proc_addr)
                    + size_of::<usize>(),
                "NyxqVulkanHandles",
            )
        }?;
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
