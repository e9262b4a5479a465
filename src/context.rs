//! The context: which backend a caller works with, and its settings.

use crate::config::QuantConfig;
use crate::error::{Error, Result};
use crate::plan::Policy;
use std::sync::Once;

/// Which backend a context should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendPreference {
    /// A GPU when one works, else the CPU.
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
}

impl Backend {
    /// A short name for logs and info.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
        }
    }
}

/// Log verbosity nyxq installs a logger for (`Off` installs none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// What a caller asks of a new context.
#[derive(Debug, Clone)]
pub struct ContextSettings {
    pub backend: BackendPreference,
    /// Worker threads for large inputs; 0 means one per available core.
    pub threads: usize,
    pub log_level: LogLevel,
    /// The trainer's [quantization] config, whose policy the context's plans use.
    pub config: Option<QuantConfig>,
}

impl Default for ContextSettings {
    fn default() -> Self {
        ContextSettings {
            backend: BackendPreference::Auto,
            threads: 0,
            log_level: LogLevel::Off,
            config: None,
        }
    }
}

/// A working context. Immutable after creation, so it is shared freely between
/// threads.
#[derive(Debug)]
pub struct Context {
    backend: Backend,
    threads: usize,
    fallback_reason: Option<String>,
    config: Option<QuantConfig>,
}

impl Context {
    /// Creates a context as `settings` ask.
    pub fn new(settings: &ContextSettings) -> Result<Context> {
        install_logger(settings.log_level);
        let threads = match settings.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (backend, fallback_reason) = match settings.backend {
            BackendPreference::Cpu => (Backend::Cpu, None),
            BackendPreference::Auto => (
                Backend::Cpu,
                Some("this build has no GPU backend yet".to_string()),
            ),
            BackendPreference::Vulkan => {
                return Err(Error::unsupported(
                    "the Vulkan backend is not available in this build; ask for NYXQ_BACKEND_AUTO or NYXQ_BACKEND_CPU",
                ));
            }
        };
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
            config: settings.config.clone(),
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

    /// The planning policy of the context's config (the defaults without one).
    pub fn plan_policy(&self, training: bool) -> Policy {
        self.config
            .as_ref()
            .map_or_else(Policy::default, |c| c.policy(training))
    }

    /// The [quantization] config the context was created with, if any.
    pub fn config(&self) -> Option<&QuantConfig> {
        self.config.as_ref()
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
    fn vulkan_is_unsupported_until_it_exists_and_auto_falls_back() {
        let err = Context::new(&ContextSettings {
            backend: BackendPreference::Vulkan,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Unsupported);
        let ctx = Context::new(&ContextSettings::default()).unwrap();
        assert_eq!(ctx.backend(), Backend::Cpu);
        assert!(ctx.fallback_reason().is_some());
        assert!(ctx.threads() >= 1);
    }
}
