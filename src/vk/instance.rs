//! The Vulkan loader and instance: loaded at run time (ash "loaded"), so a
//! machine with no libvulkan still runs nyxq on the CPU.

use ash::vk;
use std::ffi::{CStr, c_void};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Why Vulkan cannot be used, in words for the context's info and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// The loader library could not be opened.
    NoLoader(String),
    /// The loader found no driver (vkCreateInstance failed).
    NoDriver(String),
    /// Drivers loaded but enumerated no usable device.
    NoDevice(String),
    /// Validation was asked for and VK_LAYER_KHRONOS_validation is not
    /// installed: running without it would report zero errors unchecked.
    NoValidationLayer(String),
}

impl Unavailable {
    pub fn reason(&self) -> &str {
        match self {
            Unavailable::NoLoader(r)
            | Unavailable::NoDriver(r)
            | Unavailable::NoDevice(r)
            | Unavailable::NoValidationLayer(r) => r,
        }
    }
}

/// Settings that decide how the instance is made.
#[derive(Debug, Clone, Default)]
pub struct InstanceSettings {
    /// The loader library to open; None means the system's libvulkan.so.1
    /// (or NYXQ_VULKAN_LOADER when set).
    pub loader_path: Option<String>,
    /// Enable VK_LAYER_KHRONOS_validation with a messenger that counts errors;
    /// creating the instance fails when the layer is not installed.
    pub validation: bool,
}

/// Counts validation errors reported through the debug messenger.
#[derive(Debug, Default)]
pub struct ValidationCounter {
    errors: AtomicU32,
}

impl ValidationCounter {
    pub fn errors(&self) -> u32 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// An instance nyxq created and owns (destroyed in Drop).
pub struct Instance {
    pub entry: ash::Entry,
    pub instance: ash::Instance,
    debug: Option<(ash::ext::debug_utils::Instance, vk::DebugUtilsMessengerEXT)>,
    /// Boxed inside an Arc so its address (the messenger's user data) is stable.
    pub validation: Arc<ValidationCounter>,
    pub loader: String,
    /// VK_EXT_debug_utils is enabled on the instance (nyxq's own with
    /// validation; the caller's when it declares so): dispatches are
    /// labelled with their kernel's name.
    pub debug_utils: bool,
    /// The spec version of VK_LAYER_KHRONOS_validation where nyxq enabled
    /// it on its own instance (None otherwise).
    pub validation_layer_version: Option<u32>,
    /// False for the caller's instance (borrowed): never destroyed by nyxq.
    owned: bool,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("loader", &self.loader)
            .finish()
    }
}

/// The API version nyxq asks for and needs (Vulkan11/12 feature structs).
pub const API_VERSION: u32 = vk::API_VERSION_1_2;
const VALIDATION_LAYER: &CStr = c"VK_LAYER_KHRONOS_validation";

unsafe extern "system" fn count_messages(
    severity: vk::DebugUtilsMessageSeverityFlagsEXT,
    _types: vk::DebugUtilsMessageTypeFlagsEXT,
    data: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>,
    user: *mut c_void,
) -> vk::Bool32 {
    // SAFETY: the loader passes a valid callback data struct (or NULL) whose
    // p_message is NULL or a NUL-terminated string, valid for this call.
    let message = unsafe {
        data.as_ref()
            .filter(|d| !d.p_message.is_null())
            .map(|d| CStr::from_ptr(d.p_message).to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    if severity.contains(vk::DebugUtilsMessageSeverityFlagsEXT::ERROR) {
        // SAFETY: user data is the ValidationCounter inside the Instance's Arc,
        // which outlives the messenger (destroyed first in Drop).
        let counter = unsafe { &*(user as *const ValidationCounter) };
        counter.errors.fetch_add(1, Ordering::Relaxed);
        log::error!("vulkan validation: {message}");
    } else if severity.contains(vk::DebugUtilsMessageSeverityFlagsEXT::WARNING) {
        log::warn!("vulkan validation: {message}");
    }
    vk::FALSE
}

impl Instance {
    /// Opens the loader and creates an instance.
    pub fn new(settings: &InstanceSettings) -> Result<Instance, Unavailable> {
        let loader = settings
            .loader_path
            .clone()
            .or_else(|| std::env::var("NYXQ_VULKAN_LOADER").ok())
            .unwrap_or_else(|| "libvulkan.so.1".to_string());
        // SAFETY: opening the Khronos loader runs its initialisers; a library
        // at that path is trusted by the caller who named it.
        let entry = unsafe { ash::Entry::load_from(&loader) }.map_err(|e| {
            Unavailable::NoLoader(format!("no Vulkan loader: cannot open {loader}: {e}"))
        })?;
        // SAFETY: entry holds valid global function pointers.
        let layers = unsafe { entry.enumerate_instance_layer_properties() }.unwrap_or_default();
        let validation_layer = layers
            .iter()
            .find(|l| l.layer_name_as_c_str().ok() == Some(VALIDATION_LAYER));
        if settings.validation && validation_layer.is_none() {
            return Err(Unavailable::NoValidationLayer(
                "Vulkan validation was asked for but VK_LAYER_KHRONOS_validation is not \
                 installed (Debian/Ubuntu: vulkan-validationlayers)"
                    .to_string(),
            ));
        }
        let validation = settings.validation;
        let app = vk::ApplicationInfo::default()
            .application_name(c"nyxq")
            .engine_name(c"nyxq")
            .api_version(API_VERSION);
        let layer_ptrs = if validation {
            vec![VALIDATION_LAYER.as_ptr()]
        } else {
            vec![]
        };
        let ext_ptrs = if validation {
            vec![ash::ext::debug_utils::NAME.as_ptr()]
        } else {
            vec![]
        };
        let counter = Arc::new(ValidationCounter::default());
        let mut messenger_info = vk::DebugUtilsMessengerCreateInfoEXT::default()
            .message_severity(
                vk::DebugUtilsMessageSeverityFlagsEXT::ERROR
                    | vk::DebugUtilsMessageSeverityFlagsEXT::WARNING,
            )
            .message_type(
                vk::DebugUtilsMessageTypeFlagsEXT::GENERAL
                    | vk::DebugUtilsMessageTypeFlagsEXT::VALIDATION
                    | vk::DebugUtilsMessageTypeFlagsEXT::PERFORMANCE,
            )
            .pfn_user_callback(Some(count_messages))
            .user_data(Arc::as_ptr(&counter) as *mut c_void);
        let mut create = vk::InstanceCreateInfo::default()
            .application_info(&app)
            .enabled_layer_names(&layer_ptrs)
            .enabled_extension_names(&ext_ptrs);
        if validation {
            create = create.push_next(&mut messenger_info);
        }
        // SAFETY: create info and everything it points to live across the call.
        let instance = unsafe { entry.create_instance(&create, None) }.map_err(|e| {
            Unavailable::NoDriver(format!(
                "no Vulkan driver: vkCreateInstance failed with {e} (loader {loader})"
            ))
        })?;
        let debug = if validation {
            let utils = ash::ext::debug_utils::Instance::new(&entry, &instance);
            // SAFETY: the instance was created with VK_EXT_debug_utils enabled.
            match unsafe { utils.create_debug_utils_messenger(&messenger_info, None) } {
                Ok(m) => Some((utils, m)),
                Err(e) => {
                    log::warn!("nyxq vulkan: no debug messenger: {e}");
                    None
                }
            }
        } else {
            None
        };
        Ok(Instance {
            entry,
            instance,
            debug,
            validation: counter,
            loader,
            debug_utils: validation,
            validation_layer_version: validation_layer
                .filter(|_| validation)
                .map(|l| l.spec_version),
            owned: true,
        })
    }

    /// Wraps the caller's instance; nyxq loads its function pointers through
    /// `get_instance_proc_addr` and never destroys it. `debug_utils` says
    /// that the caller enabled VK_EXT_debug_utils on it.
    ///
    /// # Safety
    /// `instance` is a live VkInstance made through the loader that
    /// `get_instance_proc_addr` belongs to, and outlives the returned value.
    pub unsafe fn borrow(
        get_instance_proc_addr: vk::PFN_vkGetInstanceProcAddr,
        instance: vk::Instance,
        debug_utils: bool,
    ) -> Instance {
        let static_fn = ash::StaticFn {
            get_instance_proc_addr,
        };
        // SAFETY: the caller's vkGetInstanceProcAddr, per the contract.
        let entry = unsafe { ash::Entry::from_static_fn(static_fn.clone()) };
        // SAFETY: a live instance of that loader, per the contract.
        let instance = unsafe { ash::Instance::load(&static_fn, instance) };
        Instance {
            entry,
            instance,
            debug: None,
            validation: Arc::new(ValidationCounter::default()),
            loader: "borrowed".to_string(),
            debug_utils,
            validation_layer_version: None,
            owned: false,
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        if let Some((utils, messenger)) = self.debug.take() {
            // SAFETY: the messenger was created from this instance and is unused now.
            unsafe { utils.destroy_debug_utils_messenger(messenger, None) };
        }
        // SAFETY: nyxq created this instance; every child object was destroyed
        // before (the Device holds an Arc to the Instance).
        unsafe { self.instance.destroy_instance(None) };
    }
}
