//! Context creation, destruction and info.

use super::guard::guard;
use super::handle::{self, Opaque};
use super::log::{NyxqLogLevel, log_level_arg};
use super::status::NyxqStatus;
use super::{copy_to_c_array, enum_value, ptr};
use crate::config::QuantConfig;
use crate::context::{BackendPreference, Context, ContextSettings};
use std::ffi::c_char;

/// A working context: the backend and its settings. Create with
/// nyxq_context_create, release with nyxq_context_destroy. A context may be
/// used from several threads at once.
pub struct NyxqContext {
    _opaque: [u8; 0],
}

impl Opaque for NyxqContext {
    type Inner = Context;
    const KIND: &'static str = "context";
}

/// Which backend a context should use (NyxqContextOptions.backend).
#[repr(i32)]
pub enum NyxqBackend {
    /// A GPU when one works, else the CPU (the default).
    NyxqBackendAuto = 0,
    /// The CPU only.
    NyxqBackendCpu = 1,
    /// Vulkan, or NYXQ_ERROR_UNSUPPORTED when it is not available.
    NyxqBackendVulkan = 2,
}

/// Options for nyxq_context_create. Fill with nyxq_context_options_default,
/// then change what you need. New fields are only ever appended.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NyxqContextOptions {
    /// sizeof(NyxqContextOptions) as the caller compiled it.
    pub struct_size: usize,
    /// A NyxqBackend value. Default NYXQ_BACKEND_AUTO.
    pub backend: i32,
    /// A NyxqLogLevel value: messages up to it go to stderr while this
    /// context lives, unless a log callback is set or NYXQ_LOG is (see
    /// NyxqLogLevel). Default NYXQ_LOG_OFF.
    pub log_level: i32,
    /// Worker threads for large inputs; 0 (the default) means one per core.
    pub thread_count: u32,
    /// NULL (the default), or the path of the trainer's INI config whose
    /// [quantization] section the context reads and validates at creation
    /// (errors as nyxq_config_load); its policy is then what
    /// nyxq_context_plan_policy returns. The string is read during the call only.
    pub config_path: *const c_char,
    /// Path of the Vulkan loader library to open instead of libvulkan.so.1
    /// (NUL-terminated UTF-8, read during the call only); NULL for the default.
    /// The environment variable NYXQ_VULKAN_LOADER does the same.
    pub vulkan_loader_path: *const c_char,
    /// Nonzero turns on VK_LAYER_KHRONOS_validation with a messenger that logs
    /// and counts errors (nyxq_context_device_info.validation_errors). Default 0;
    /// NYXQ_VK_VALIDATION=1 does the same. When the layer is not installed the
    /// Vulkan backend is unavailable (AUTO falls back to the CPU and says why
    /// in fallback_reason; VULKAN fails with NYXQ_ERROR_UNSUPPORTED).
    pub vulkan_validation: u32,
    /// Nonzero uses only the compatible shader variants (no 8/16-bit storage,
    /// no FP16/INT8 arithmetic). Default 0; NYXQ_VK_FORCE_COMPAT=1 does the same.
    pub vulkan_force_compat: u32,
    /// Nonzero lets a device allocation that fails (creating or migrating a
    /// DEVICE tensor, submit-and-wait work) fall back to host memory, logged;
    /// 0 (the default) reports NYXQ_ERROR_OUT_OF_DEVICE_MEMORY. Data stays
    /// intact either way.
    pub vulkan_host_fallback: u32,
    /// Fault injection for tests: nonzero makes the Nth device allocation
    /// after the context's creation fail as if the device were out of memory.
    /// Default 0 (off); NYXQ_VK_FAIL_ALLOCATION=N does the same.
    pub vulkan_fail_allocation: u64,
}

impl Default for NyxqContextOptions {
    fn default() -> Self {
        NyxqContextOptions {
            struct_size: size_of::<NyxqContextOptions>(),
            backend: NyxqBackend::NyxqBackendAuto as i32,
            log_level: NyxqLogLevel::NyxqLogOff as i32,
            thread_count: 0,
            config_path: std::ptr::null(),
            vulkan_loader_path: std::ptr::null(),
            vulkan_validation: 0,
            vulkan_force_compat: 0,
            vulkan_host_fallback: 0,
            vulkan_fail_allocation: 0,
        }
    }
}

/// Bytes of NyxqContextInfo.backend_name, the terminating NUL included.
pub const NYXQ_BACKEND_NAME_LEN: usize = 32;

/// Bytes of NyxqContextInfo.fallback_reason, the terminating NUL included.
pub const NYXQ_FALLBACK_REASON_LEN: usize = 256;

/// What a context is running on (nyxq_context_info).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NyxqContextInfo {
    /// The NyxqBackend in use (never AUTO).
    pub backend: i32,
    /// Worker threads used for large inputs.
    pub thread_count: u32,
    /// The backend's name, NUL-terminated ("cpu", ...).
    pub backend_name: [c_char; NYXQ_BACKEND_NAME_LEN],
    /// Why AUTO fell back to the CPU; empty when it did not.
    pub fallback_reason: [c_char; NYXQ_FALLBACK_REASON_LEN],
}

/// The size of the first published NyxqContextOptions (up to thread_count):
/// callers compiled against it keep working, and the later fields take their
/// defaults.
const FIRST_OPTIONS_SIZE: usize = std::mem::offset_of!(NyxqContextOptions, thread_count) + 4;

/// The settings that `options` (NULL for defaults) ask for.
///
/// # Safety
/// `options` is NULL or points to struct_size readable bytes of a NyxqContextOptions.
pub(crate) unsafe fn settings_from(
    options: *const NyxqContextOptions,
) -> crate::Result<ContextSettings> {
    // SAFETY: NULL or a NyxqContextOptions of struct_size bytes, per the contract.
    let options = unsafe { ptr::options(options, FIRST_OPTIONS_SIZE, "NyxqContextOptions") }?;
    let backend = enum_value(
        options.backend,
        &[
            (NyxqBackend::NyxqBackendAuto as i32, BackendPreference::Auto),
            (NyxqBackend::NyxqBackendCpu as i32, BackendPreference::Cpu),
            (
                NyxqBackend::NyxqBackendVulkan as i32,
                BackendPreference::Vulkan,
            ),
        ],
        "backend",
    )?;
    let log_level = log_level_arg(options.log_level)?;
    let vulkan_loader = if options.vulkan_loader_path.is_null() {
        None
    } else {
        // SAFETY: non-NULL, a NUL-terminated string per the contract.
        Some(unsafe { ptr::string(options.vulkan_loader_path, "vulkan_loader_path") }?.to_string())
    };
    let config = if options.config_path.is_null() {
        None
    } else {
        // SAFETY: a NUL-terminated string, per the field's contract.
        let path = unsafe { ptr::string(options.config_path, "options.config_path") }?;
        Some(QuantConfig::load(std::path::Path::new(path))?)
    };
    let settings = ContextSettings {
        backend,
        threads: options.thread_count as usize,
        log_level,
        config,
        vulkan_loader,
        vulkan_validation: options.vulkan_validation != 0,
        vulkan_force_compat: options.vulkan_force_compat != 0,
        vulkan_emulate: None,
        vulkan_perturb_kernel: None,
        vulkan_fail_allocation: (options.vulkan_fail_allocation != 0)
            .then_some(options.vulkan_fail_allocation),
        vulkan_lose_device_at: None,
        vulkan_host_fallback: options.vulkan_host_fallback != 0,
    };
    Ok(settings)
}

/// Writes the default options, with struct_size set, into *options_out.
///
/// Errors: NYXQ_ERROR_NULL_POINTER. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_context_options_default(options_out: *mut NyxqContextOptions) -> NyxqStatus {
    guard(|| {
        let out = ptr::out(options_out, "options_out")?;
        // SAFETY: the caller passes a pointer to a NyxqContextOptions.
        unsafe { out.write(NyxqContextOptions::default()) };
        Ok(())
    })
}

/// Creates a context. `options` may be NULL for the defaults (AUTO backend, all
/// cores, no logging). On success *ctx_out receives a handle to release with
/// nyxq_context_destroy; on failure it is untouched.
///
/// Errors: NYXQ_ERROR_NULL_POINTER (ctx_out), NYXQ_ERROR_INVALID_ARGUMENT
/// (struct_size too small, unknown backend or log level), NYXQ_ERROR_UNSUPPORTED
/// (a backend this build or machine lacks). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_context_create(
    options: *const NyxqContextOptions,
    ctx_out: *mut *mut NyxqContext,
) -> NyxqStatus {
    guard(|| {
        let out = ptr::out(ctx_out, "ctx_out")?;
        // SAFETY: NULL or a NyxqContextOptions of struct_size bytes, per the contract.
        let settings = unsafe { settings_from(options) }?;
        let context = Context::new(&settings)?;
        // SAFETY: ctx_out was checked non-NULL; the caller passes a valid pointer.
        unsafe { out.write(handle::register::<NyxqContext>(context)) };
        Ok(())
    })
}

/// Releases a context. NULL is a no-op. Tensors made from it stay usable (they
/// keep what they need alive). Do not use the handle afterwards; if you do,
/// calls report NYXQ_ERROR_INVALID_HANDLE.
///
/// Recorded work: while tickets of dispatches recorded through `ctx`
/// (nyxq_vk_cmd_*) are unreleased, the call refuses with
/// NYXQ_ERROR_INVALID_ARGUMENT, destroys nothing, and the message says how
/// many tickets are outstanding; the context stays alive and usable. Wait for
/// the submissions holding those command buffers (fence or semaphore), call
/// nyxq_vk_release(ctx, last ticket), then destroy. nyxq cannot see whether a
/// released ticket's command buffer is still pending: releasing early is the
/// caller's error, which the validation layer reports as
/// VUID-vkDestroyPipeline-pipeline-00765 or
/// VUID-vkDestroyDescriptorPool-descriptorPool-00303.
///
/// Errors: NYXQ_ERROR_INVALID_HANDLE, NYXQ_ERROR_INVALID_ARGUMENT (unreleased
/// recorded tickets). Thread-safe, but no other call may be using `ctx` at the
/// same time.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_context_destroy(ctx: *mut NyxqContext) -> NyxqStatus {
    guard(|| {
        if ctx.is_null() {
            return Ok(());
        }
        handle::get(ctx)?.check_no_unreleased_recordings()?;
        handle::unregister(ctx)
    })
}

/// Describes the backend a context is running on.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_context_info(
    ctx: *const NyxqContext,
    info_out: *mut NyxqContextInfo,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        let out = ptr::out(info_out, "info_out")?;
        let mut info = NyxqContextInfo {
            backend: match context.backend() {
                crate::context::Backend::Cpu => NyxqBackend::NyxqBackendCpu as i32,
                crate::context::Backend::Vulkan => NyxqBackend::NyxqBackendVulkan as i32,
            },
            thread_count: u32::try_from(context.threads()).unwrap_or(u32::MAX),
            backend_name: [0; NYXQ_BACKEND_NAME_LEN],
            fallback_reason: [0; NYXQ_FALLBACK_REASON_LEN],
        };
        copy_to_c_array(context.backend().name(), &mut info.backend_name);
        copy_to_c_array(
            context.fallback_reason().unwrap_or(""),
            &mut info.fallback_reason,
        );
        // SAFETY: info_out checked non-NULL; points to a NyxqContextInfo per the contract.
        unsafe { out.write(info) };
        Ok(())
    })
}
