//! The context: which backend a caller works with, and its settings.

use crate::error::{Error, Result};
use std::sync::{Arc, Once};

/// Which backend a context should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendPreference {
    /// A GPU when one works, else the CPU.
    #[default]
    Auto,
    /// The CPU only.
    Cpu,
    /// Vulkan, or an error.
    Vulkan,
}

/// The backend a context ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Cpu,
    Vulkan,
}

impl Backend {
    /// A short name for logs and info.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Vulkan => "vulkan",
        }
    }
}

/// Log verbosity nyxq installs a logger for (`Off` installs none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    #[default]
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// What a caller asks of a new context.
#[derive(Debug, Clone, Default)]
pub struct ContextSettings {
    pub backend: BackendPreference,
    /// Worker threads for large inputs; 0 means one per available core.
    pub threads: usize,
    pub log_level: LogLevel,
    /// Vulkan loader library to open instead of libvulkan.so.1.
    pub vulkan_loader: Option<String>,
    /// Turn on VK_LAYER_KHRONOS_validation (also NYXQ_VK_VALIDATION=1).
    pub vulkan_validation: bool,
    /// Use only the compatible shader variants (also NYXQ_VK_FORCE_COMPAT=1).
    pub vulkan_force_compat: bool,
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

/// A working context. Immutable after creation, so it is shared freely between
/// threads.
#[derive(Debug)]
pub struct Context {
    backend: Backend,
    threads: usize,
    fallback_reason: Option<String>,
    vulkan: Option<Arc<crate::vk::Engine>>,
    force_compat: bool,
}

impl Context {
    /// Creates a context as `settings` ask.
    pub fn new(settings: &ContextSettings) -> Result<Context> {
        install_logger(settings.log_level);
        let threads = match settings.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let vk_settings = crate::vk::InstanceSettings {
            loader_path: settings.vulkan_loader.clone(),
            validation: settings.vulkan_validation || env_flag("NYXQ_VK_VALIDATION"),
        };
        let force_compat = settings.vulkan_force_compat || env_flag("NYXQ_VK_FORCE_COMPAT");
        let (backend, fallback_reason, vulkan) = match settings.backend {
            BackendPreference::Cpu => (Backend::Cpu, None, None),
            BackendPreference::Auto => {
                match crate::vk::open_standalone(&vk_settings, crate::vk::Pick::GpuOnly) {
                    Ok(device) => match crate::vk::Engine::new(device) {
                        Ok(engine) => (Backend::Vulkan, None, Some(Arc::new(engine))),
                        Err(e) => (
                            Backend::Cpu,
                            Some(format!("Vulkan setup failed: {e}")),
                            None,
                        ),
                    },
                    Err(why) => (Backend::Cpu, Some(why.reason().to_string()), None),
                }
            }
            BackendPreference::Vulkan => {
                match crate::vk::open_standalone(&vk_settings, crate::vk::Pick::Any) {
                    Ok(device) => (
                        Backend::Vulkan,
                        None,
                        Some(Arc::new(crate::vk::Engine::new(device)?)),
                    ),
                    Err(why) => {
                        return Err(Error::unsupported(format!(
                            "the Vulkan backend is not available: {}",
                            why.reason()
                        )));
                    }
                }
            }
        };
        if let Some(engine) = &vulkan {
            let device = &engine.device;
            log::info!(
                "nyxq context: Vulkan device '{}' ({}, driver {} {}, API {})",
                device.info.name,
                device.info.device_type.name(),
                device.info.driver_name,
                device.info.driver_info,
                device.info.api_version_string()
            );
        }
        log::info!(
            "nyxq context: backend {}, {threads} threads",
            backend.name()
        );
        if let Some(reason) = &fallback_reason {
            log::info!("nyxq context: running on the CPU because {reason}");
        }
        Ok(Context {
            backend,
            threads,
            fallback_reason,
            vulkan,
            force_compat,
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Worker threads for large inputs.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The Vulkan engine (device, pipelines, queue), when the backend is Vulkan.
    pub fn vulkan(&self) -> Option<&Arc<crate::vk::Engine>> {
        self.vulkan.as_ref()
    }

    /// Facts about the Vulkan device in use.
    pub fn device_info(&self) -> Option<&crate::vk::DeviceInfo> {
        self.vulkan.as_ref().map(|e| &e.device.info)
    }

    /// Whether only the compatible shader variants may be used.
    pub fn force_compat(&self) -> bool {
        self.force_compat
    }

    /// Validation errors counted so far (0 when validation is off).
    pub fn vulkan_validation_errors(&self) -> u32 {
        self.vulkan
            .as_ref()
            .map_or(0, |e| e.device.instance.validation.errors())
    }

    /// Why AUTO settled on the CPU, when it did.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }
}

/// Installs env_logger (filter from `NYXQ_LOG`, else `level`) once per process,
/// and only when a caller asked for logging: the library lives in someone else's
/// process, and an application's own logger is left alone.
fn install_logger(level: LogLevel) {
    static INSTALL: Once = Once::new();
    let filter = match level {
        LogLevel::Off => return,
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    };
    INSTALL.call_once(|| {
        let env = env_logger::Env::new().filter("NYXQ_LOG");
        let _ = env_logger::Builder::new()
            .filter_module("nyxq", filter)
            .parse_env(env)
            .target(env_logger::Target::Stderr)
            .try_init();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vulkan_without_a_loader_is_unsupported_and_auto_falls_back() {
        let no_loader = Some("/nonexistent/libvulkan.so.1".to_string());
        let err = Context::new(&ContextSettings {
            backend: BackendPreference::Vulkan,
            vulkan_loader: no_loader.clone(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Unsupported);
        assert!(err.message().contains("no Vulkan loader"), "{err}");
        let ctx = Context::new(&ContextSettings {
            vulkan_loader: no_loader,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(ctx.backend(), Backend::Cpu);
        assert!(ctx.fallback_reason().unwrap().contains("no Vulkan loader"));
        assert!(ctx.threads() >= 1);
    }
}
