//! Hardware descriptions through the C ABI: built-in profiles, profile
//! files, and what a context runs on.

use super::context::NyxqContext;
use super::guard::guard;
use super::status::NyxqStatus;
use super::strings::NYXQ_NAME_LEN;
use super::{copy_to_c_array, handle, ptr};
use crate::error::Error;
use crate::plan::Hardware;
use std::ffi::c_char;
use std::path::Path;

/// What the planner knows about a machine. Fill it with nyxq_hardware_profile,
/// nyxq_hardware_load or nyxq_hardware_detect, then change what you need.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NyxqHardware {
    /// sizeof(NyxqHardware) as the caller compiled it.
    pub struct_size: usize,
    /// Size of the device-local memory the model may live in.
    pub device_local_bytes: u64,
    /// What the process may use now (VK_EXT_memory_budget); 0 = device_local_bytes.
    pub device_budget_bytes: u64,
    /// Host memory tensors may be offloaded to.
    pub host_bytes: u64,
    /// Largest single allocation; 0 = no limit.
    pub max_allocation_bytes: u64,
    /// Nonzero: device memory is system RAM (integrated GPU).
    pub unified_memory: u8,
    /// Nonzero: FP16 arithmetic in shaders.
    pub fp16_arithmetic: u8,
    /// Nonzero: accelerated 8-bit integer dot products.
    pub int8_dot: u8,
    /// Nonzero: 16-bit storage buffers.
    pub storage_16bit: u8,
    /// Nonzero: 8-bit storage buffers.
    pub storage_8bit: u8,
    /// Nonzero: no GPU; device memory is host memory.
    pub cpu_only: u8,
    /// The profile's name, NUL-terminated.
    pub name: [c_char; NYXQ_NAME_LEN],
}

impl Default for NyxqHardware {
    fn default() -> Self {
        NyxqHardware {
            struct_size: size_of::<NyxqHardware>(),
            device_local_bytes: 0,
            device_budget_bytes: 0,
            host_bytes: 0,
            max_allocation_bytes: 0,
            unified_memory: 0,
            fp16_arithmetic: 0,
            int8_dot: 0,
            storage_16bit: 0,
            storage_8bit: 0,
            cpu_only: 0,
            name: [0; NYXQ_NAME_LEN],
        }
    }
}

impl From<&Hardware> for NyxqHardware {
    fn from(hw: &Hardware) -> Self {
        let mut c = NyxqHardware {
            device_local_bytes: hw.device_local_bytes,
            device_budget_bytes: hw.device_budget_bytes,
            host_bytes: hw.host_bytes,
            max_allocation_bytes: hw.max_allocation_bytes,
            unified_memory: hw.unified_memory.into(),
            fp16_arithmetic: hw.fp16_arithmetic.into(),
            int8_dot: hw.int8_dot.into(),
            storage_16bit: hw.storage_16bit.into(),
            storage_8bit: hw.storage_8bit.into(),
            cpu_only: hw.cpu_only.into(),
            ..NyxqHardware::default()
        };
        copy_to_c_array(&hw.name, &mut c.name);
        c
    }
}

/// The Hardware a caller's NyxqHardware describes (no description, no sources).
pub(crate) fn hardware_from_c(c: &NyxqHardware) -> Hardware {
    let name_bytes: Vec<u8> = c
        .name
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as u8)
        .collect();
    Hardware {
        name: String::from_utf8_lossy(&name_bytes).into_owned(),
        description: String::new(),
        device_local_bytes: c.device_local_bytes,
        device_budget_bytes: c.device_budget_bytes,
        host_bytes: c.host_bytes,
        max_allocation_bytes: c.max_allocation_bytes,
        unified_memory: c.unified_memory != 0,
        fp16_arithmetic: c.fp16_arithmetic != 0,
        int8_dot: c.int8_dot != 0,
        storage_16bit: c.storage_16bit != 0,
        storage_8bit: c.storage_8bit != 0,
        cpu_only: c.cpu_only != 0,
        sources: Vec::new(),
    }
}

// Layouts the C++ tests assert too (cpp_tests/test_plan.cpp).
const _: () = assert!(size_of::<NyxqHardware>() == 112);

/// Number of built-in hardware profiles.
///
/// Errors: NYXQ_ERROR_NULL_POINTER. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_hardware_profile_count(count_out: *mut usize) -> NyxqStatus {
    guard(|| {
        let out = ptr::out(count_out, "count_out")?;
        // SAFETY: count_out checked non-NULL.
        unsafe { out.write(Hardware::profile_names().len()) };
        Ok(())
    })
}

/// Fills `*hardware_out` with the built-in profile number `index`
/// (0..nyxq_hardware_profile_count()); its name is in `name`.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_ARGUMENT (index past the end).
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_hardware_profile_at(
    index: usize,
    hardware_out: *mut NyxqHardware,
) -> NyxqStatus {
    guard(|| {
        let out = ptr::out(hardware_out, "hardware_out")?;
        let names = Hardware::profile_names();
        let name = names.get(index).ok_or_else(|| {
            Error::invalid(format!(
                "profile index {index} is past the {} profiles",
                names.len()
            ))
        })?;
        let hw = Hardware::profile(name)?;
        // SAFETY: hardware_out checked non-NULL.
        unsafe { out.write(NyxqHardware::from(&hw)) };
        Ok(())
    })
}

/// Fills `*hardware_out` with the built-in profile named `name`
/// ("intel-iris-xe-7gb", "amd-rx580-8gb", "nvidia-h200-141gb", "cpu-only").
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_ARGUMENT (unknown name). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_hardware_profile(
    name: *const c_char,
    hardware_out: *mut NyxqHardware,
) -> NyxqStatus {
    guard(|| {
        // SAFETY: the caller passes a NUL-terminated string.
        let name = unsafe { ptr::string(name, "name") }?;
        let out = ptr::out(hardware_out, "hardware_out")?;
        let hw = Hardware::profile(name)?;
        // SAFETY: hardware_out checked non-NULL.
        unsafe { out.write(NyxqHardware::from(&hw)) };
        Ok(())
    })
}

/// Reads a hardware profile file (JSON, like the files in config/profiles/).
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_IO, NYXQ_ERROR_CONFIG,
/// NYXQ_ERROR_OUT_OF_MEMORY (the file's bytes). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_hardware_load(
    path: *const c_char,
    hardware_out: *mut NyxqHardware,
) -> NyxqStatus {
    guard(|| {
        // SAFETY: the caller passes a NUL-terminated string.
        let path = unsafe { ptr::string(path, "path") }?;
        let out = ptr::out(hardware_out, "hardware_out")?;
        let hw = Hardware::load(Path::new(path))?;
        // SAFETY: hardware_out checked non-NULL.
        unsafe { out.write(NyxqHardware::from(&hw)) };
        Ok(())
    })
}

/// Fills `*hardware_out` with what the context runs on (for the CPU backend:
/// host memory from /proc/meminfo).
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_UNSUPPORTED (memory cannot be read). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_hardware_detect(
    ctx: *const NyxqContext,
    hardware_out: *mut NyxqHardware,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        let out = ptr::out(hardware_out, "hardware_out")?;
        let hw = context.hardware()?;
        // SAFETY: hardware_out checked non-NULL.
        unsafe { out.write(NyxqHardware::from(&hw)) };
        Ok(())
    })
}
