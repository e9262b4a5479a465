//! The context: which backend a caller works with, and its settings.

use crate::config::QuantConfig;
use crate::error::{Error, Result};
use crate::logging::LogLevel;
use crate::plan::{Hardware, Policy};
use std::sync::Arc;

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

/// What a caller asks of a new context.
#[derive(Debug, Clone, Default)]
pub struct ContextSettings {
    pub backend: BackendPreference,
    /// Worker threads for large inputs; 0 means one per available core.
    pub threads: usize,
    pub log_level: LogLevel,
    /// The trainer's [quantization] config, whose policy the context's plans use.
    pub config: Option<QuantConfig>,
    /// Vulkan loader library to open instead of libvulkan.so.1.
    pub vulkan_loader: Option<String>,
    /// Turn on VK_LAYER_KHRONOS_validation (also NYXQ_VK_VALIDATION=1).
    pub vulkan_validation: bool,
    /// Use only the compatible shader variants (also NYXQ_VK_FORCE_COMPAT=1).
    pub vulkan_force_compat: bool,
    /// Make the device behave as the GPU of this device report
    /// (a built-in name such as "amd-rx580--amdvlk" or a file like
    /// config/devices/*.json; also NYXQ_VK_EMULATE), within what the
    /// device under it can do (crate::vk::emulation).
    pub vulkan_emulate: Option<String>,
    /// Test only: corrupt the output of this kernel variant (e.g.
    /// "quantize_f32_q8_0"), so the self-test must catch it and fall back.
    pub vulkan_perturb_kernel: Option<String>,
    /// Test only: make the Nth device allocation after the self-test fail with
    /// out-of-device-memory (also NYXQ_VK_FAIL_ALLOCATION=N).
    pub vulkan_fail_allocation: Option<u64>,
    /// Test only: make the Nth submission after the self-test report
    /// VK_ERROR_DEVICE_LOST (also NYXQ_VK_LOSE_DEVICE_AT=N).
    pub vulkan_lose_device_at: Option<u64>,
    /// When a device allocation fails, run on the CPU instead of reporting
    /// ErrorKind::OutOfDeviceMemory.
    pub vulkan_host_fallback: bool,
}

impl ContextSettings {
    /// Worker threads: `threads`, or every core for 0.
    fn thread_count(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Whether only the compatible shader variants may run (the option or
    /// NYXQ_VK_FORCE_COMPAT=1).
    fn force_compat(&self) -> bool {
        self.vulkan_force_compat || env_flag("NYXQ_VK_FORCE_COMPAT")
    }
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
    config: Option<QuantConfig>,
    vulkan: Option<Arc<crate::vk::Engine>>,
    force_compat: bool,
    self_test: Vec<crate::vk::selftest::KernelResult>,
    host_fallback: bool,
    /// This context's log level counts while it lives (crate::logging).
    _log: crate::logging::ContextLevel,
}

impl Context {
    /// Creates a Vulkan context on a device the caller already wrapped (for
    /// example a borrowed one, crate::vk::Device::borrow). The self-test runs
    /// as for a device nyxq made.
    pub fn with_device(
        settings: &ContextSettings,
        device: Arc<crate::vk::Device>,
    ) -> Result<Context> {
        let log = crate::logging::ContextLevel::register(settings.log_level);
        let engine = Arc::new(crate::vk::Engine::new(
            device,
            settings.vulkan_perturb_kernel.clone(),
        )?);
        log::info!(
            "nyxq context: Vulkan device '{}' (borrowed or caller-made)",
            engine.device.info.name
        );
        let force_compat = settings.force_compat();
        let self_test = crate::vk::selftest::run(&engine, force_compat);
        if let Some(reason) = every_kernel_disabled(&self_test) {
            return Err(Error::unsupported(format!(
                "Vulkan device '{}': {reason}",
                engine.device.info.name
            )));
        }
        Ok(Context {
            backend: Backend::Vulkan,
            threads: settings.thread_count(),
            fallback_reason: None,
            config: settings.config.clone(),
            vulkan: Some(engine),
            force_compat,
            self_test,
            host_fallback: settings.vulkan_host_fallback,
            _log: log,
        })
    }

    /// Creates a context as `settings` ask.
    pub fn new(settings: &ContextSettings) -> Result<Context> {
        let log = crate::logging::ContextLevel::register(settings.log_level);
        let threads = settings.thread_count();
        let vk_settings = crate::vk::InstanceSettings {
            loader_path: settings.vulkan_loader.clone(),
            validation: settings.vulkan_validation || env_flag("NYXQ_VK_VALIDATION"),
        };
        let force_compat = settings.force_compat();
        let emulation = match settings.backend {
            BackendPreference::Cpu => None,
            _ => crate::device_report::requested_emulation(settings.vulkan_emulate.as_deref())?,
        };
        let emulation = emulation.as_ref();
        let (backend, fallback_reason, vulkan) = match settings.backend {
            BackendPreference::Cpu => (Backend::Cpu, None, None),
            BackendPreference::Auto => {
                match crate::vk::open_standalone(&vk_settings, crate::vk::Pick::GpuOnly, emulation)
                {
                    Ok(device) => {
                        match crate::vk::Engine::new(device, settings.vulkan_perturb_kernel.clone())
                        {
                            Ok(engine) => (Backend::Vulkan, None, Some(Arc::new(engine))),
                            Err(e) => (
                                Backend::Cpu,
                                Some(format!("Vulkan setup failed: {e}")),
                                None,
                            ),
                        }
                    }
                    Err(why) => (Backend::Cpu, Some(why.reason().to_string()), None),
                }
            }
            BackendPreference::Vulkan => {
                match crate::vk::open_standalone(&vk_settings, crate::vk::Pick::Any, emulation) {
                    Ok(device) => (
                        Backend::Vulkan,
                        None,
                        Some(Arc::new(crate::vk::Engine::new(
                            device,
                            settings.vulkan_perturb_kernel.clone(),
                        )?)),
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
        let self_test = vulkan
            .as_ref()
            .map(|engine| crate::vk::selftest::run(engine, force_compat))
            .unwrap_or_default();
        let (backend, fallback_reason, vulkan, self_test) = match every_kernel_disabled(&self_test)
        {
            None => (backend, fallback_reason, vulkan, self_test),
            Some(reason) if settings.backend == BackendPreference::Vulkan => {
                return Err(Error::unsupported(format!(
                    "the Vulkan backend is not available: {reason}"
                )));
            }
            Some(reason) => {
                log::info!("nyxq context: running on the CPU because {reason}");
                (Backend::Cpu, Some(reason), None, Vec::new())
            }
        };
        if let Some(engine) = &vulkan {
            let device = &engine.device;
            arm_fault(
                injected(settings.vulkan_fail_allocation, "NYXQ_VK_FAIL_ALLOCATION"),
                &device.allocations,
                &device.fail_allocation,
            );
            arm_fault(
                injected(settings.vulkan_lose_device_at, "NYXQ_VK_LOSE_DEVICE_AT"),
                &device.submissions,
                &device.lose_at_submission,
            );
        }
        Ok(Context {
            backend,
            threads,
            fallback_reason,
            config: settings.config.clone(),
            vulkan,
            force_compat,
            self_test,
            host_fallback: settings.vulkan_host_fallback,
            _log: log,
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

    /// The Vulkan engine (device, pipelines, queue), when the backend is Vulkan.
    pub fn vulkan(&self) -> Option<&Arc<crate::vk::Engine>> {
        self.vulkan.as_ref()
    }

    /// Facts about the Vulkan device in use.
    pub fn device_info(&self) -> Option<&crate::vk::DeviceInfo> {
        self.vulkan.as_ref().map(|e| &e.device.info)
    }

    /// Memory this context may use now and what it uses. Vulkan: the
    /// device-local heaps, the budget (the driver's from VK_EXT_memory_budget,
    /// read now; a test's; else the heaps' size), the driver's usage where
    /// known and nyxq's ledger. CPU: the host memory available (MemAvailable,
    /// as [`Context::hardware`]), with no usage counted against it (it is what
    /// is left once every process's memory is taken out).
    pub fn memory_status(&self) -> Result<crate::vk::budget::MemoryStatus> {
        let Some(engine) = &self.vulkan else {
            let (available, _) = crate::plan::hardware::host_memory()?;
            return Ok(crate::vk::budget::MemoryStatus {
                source: crate::vk::budget::BudgetSource::Host,
                device_local_bytes: available,
                budget_bytes: available,
                driver_usage_bytes: None,
                nyxq_bytes: 0,
                max_allocation_bytes: 0,
            });
        };
        Ok(crate::vk::memory::status(&engine.device))
    }

    /// Test only: makes the device's budget `bytes` (None: the driver's
    /// again), as [`Context::memory_status`] reports it and as nyxq's own
    /// device-local allocations are admitted against it. UNSUPPORTED on a
    /// CPU context, InvalidArgument for Some(0).
    pub fn inject_device_budget(&self, bytes: Option<u64>) -> Result<()> {
        let engine = self.vulkan_engine()?;
        if bytes == Some(0) {
            return Err(Error::invalid(
                "an injected device budget must be at least 1 byte",
            ));
        }
        engine.device.ledger.set_budget_override(bytes);
        Ok(())
    }

    /// What the planner should plan for on this context. For the CPU backend:
    /// host memory (MemAvailable from /proc/meminfo) serves as both device and
    /// host memory. For the Vulkan backend: the device's local memory, its
    /// budget now (the driver's from VK_EXT_memory_budget, or a test's;
    /// [`Context::memory_status`]), its allocation limit and feature flags,
    /// with host memory beside it.
    pub fn hardware(&self) -> Result<Hardware> {
        let Some(info) = self.device_info() else {
            return Hardware::host_cpu();
        };
        let memory = self.memory_status()?;
        let (host, source) = crate::plan::hardware::host_memory()?;
        Ok(Hardware {
            name: format!("{} (detected)", info.name),
            description: match &info.emulating {
                None => format!("Vulkan device {} ({})", info.name, info.driver_info),
                Some(report) => format!(
                    "Vulkan device {} ({}) emulating {report}",
                    info.name, info.driver_info
                ),
            },
            device_local_bytes: info.device_local_bytes,
            device_budget_bytes: if memory.source.enforced() {
                memory.budget_bytes
            } else {
                0
            },
            host_bytes: if info.unified_memory { 0 } else { host },
            max_allocation_bytes: info.max_allocation_bytes,
            unified_memory: info.unified_memory,
            fp16_arithmetic: info.shader_float16,
            int8_dot: info.integer_dot_accelerated,
            storage_16bit: info.storage_16bit,
            storage_8bit: info.storage_8bit,
            cpu_only: false,
            sources: vec!["the Vulkan device's properties".to_string(), source],
        })
    }

    /// The self-test result of every Vulkan kernel (empty on the CPU).
    pub fn self_test(&self) -> &[crate::vk::selftest::KernelResult] {
        &self.self_test
    }

    /// Whether the Vulkan kernel for `op` on `format` passed its self-test
    /// (false on the CPU backend: the CPU twin is used).
    pub fn vulkan_kernel_enabled(
        &self,
        op: crate::vk::shaders::Op,
        format: crate::format::Format,
    ) -> bool {
        self.vulkan.is_some()
            && self
                .self_test
                .iter()
                .any(|r| r.op == op && r.format == format && r.failure.is_none())
    }

    /// The engine to record the kernel `op` on `format` with: an error when the
    /// context runs on the CPU or when that kernel failed its self-test.
    pub fn recording_engine(
        &self,
        op: crate::vk::shaders::Op,
        format: crate::format::Format,
    ) -> Result<&Arc<crate::vk::Engine>> {
        let engine = self.vulkan_engine()?;
        format.require_vulkan(op.family())?;
        if !self.vulkan_kernel_enabled(op, format) {
            return Err(Error::unsupported(format!(
                "the Vulkan kernel {} is disabled on this device (it failed its self-test; \
                 nyxq_context_info and the log say why): use the CPU functions",
                engine.kernel(op, format)?
            )));
        }
        Ok(engine)
    }

    /// Refuses (InvalidArgument) while dispatches recorded through this
    /// context are unreleased: the caller's command buffers may still be
    /// pending on the device, and destroying the context would destroy the
    /// pipelines and descriptor sets they use.
    pub fn check_no_unreleased_recordings(&self) -> Result<()> {
        let Some(engine) = &self.vulkan else {
            return Ok(());
        };
        engine.poll_releases_before_a_check();
        let recorder = engine.recorder();
        let tickets = recorder.unreleased_tickets();
        if tickets == 0 {
            return Ok(());
        }
        let last = recorder.usage().last_ticket;
        Err(Error::invalid(format!(
            "the context has {tickets} recorded ticket(s) not released, which command buffers \
             may still use: wait for the submissions that hold them (fence or semaphore), then \
             call nyxq_vk_release(ctx, {last}) before destroying the context; nothing was destroyed"
        )))
    }

    /// The Vulkan engine, or UNSUPPORTED naming the CPU context (for the
    /// functions that need a device).
    pub fn vulkan_engine(&self) -> Result<&Arc<crate::vk::Engine>> {
        self.vulkan.as_ref().ok_or_else(|| {
            Error::unsupported("the context runs on the CPU; this needs a Vulkan context")
        })
    }

    /// The backend (with the device, or why AUTO fell back) on the first
    /// line, then [`Context::vulkan_report`]'s lines, indented.
    pub fn report(&self) -> String {
        let device = self
            .device_info()
            .map_or(String::new(), |d| format!(" on '{}'", d.name));
        let fallback = self
            .fallback_reason()
            .map_or(String::new(), |r| format!(" (fallback: {r})"));
        let mut text = format!("backend {}{device}{fallback}\n", self.backend().name());
        for line in self.vulkan_report() {
            text.push_str("  ");
            text.push_str(&line);
            text.push('\n');
        }
        text
    }

    /// One line per kernel: variant and self-test result, then the matvec
    /// variants, the device's enabled features (and who chose them) and
    /// whether dispatches carry debug labels, for info and hwinfo.
    pub fn vulkan_report(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .self_test
            .iter()
            .map(|r| {
                let variant = r.kernel.describe();
                let mut line = match &r.failure {
                    None => format!("{}: {variant}, self-test passed", r.kernel),
                    Some(why) => format!(
                        "{}: self-test FAILED ({why}); disabled, the CPU twin is used",
                        r.kernel
                    ),
                };
                if let Some((fast, why)) = &r.rejected {
                    line.push_str(&format!(" ({fast} failed its self-test: {why})"));
                }
                line
            })
            .collect();
        if let Some(engine) = &self.vulkan {
            lines.push(
                "unscale_f32: compat variant (32-bit words); checked by the GPU test suite, \
                 not by the self-test"
                    .to_string(),
            );
            lines.push(
                "importance_f32: compat variant (f32 sums per column); checked by the GPU test \
                 suite, not by the self-test"
                    .to_string(),
            );
            let p = engine.matvec();
            // A batch of 2: one vector runs `_dot` where `_dot_pre` runs.
            let batch = crate::vk::matvec::PRE_ROUNDED_MIN_BATCH;
            lines.push(
                match p.forward_variant(self.force_compat, crate::format::Format::Q4_0, batch) {
                    crate::vk::shaders::MatvecVariant::DotPre => format!(
                        "matvec W·x: integer-dot variant, x rounded once per product \
                         (`_dot_pre`: x rounded to int8 into a scratch buffer the ticket \
                         holds, OpSDot) for the block formats{}, subgroup variant \
                         (subgroupAdd) for the others; xᵀ·W: one variant",
                        if p.arithmetic() == crate::vk::matvec::Arithmetic::Auto {
                            format!(
                                " from {batch} to {} vectors (`_dot`, x rounded in every \
                                 workgroup, for one)",
                                crate::vk::matvec::PRE_ROUNDED_MAX_BATCH
                            )
                        } else {
                            String::new()
                        }
                    ),
                    crate::vk::shaders::MatvecVariant::Dot => format!(
                        "matvec W·x: integer-dot variant (x rounded to int8, OpSDot) for \
                         the block formats{}, subgroup variant (subgroupAdd) for the others; \
                         xᵀ·W: one variant{}",
                        if p.arithmetic() == crate::vk::matvec::Arithmetic::Auto {
                            format!(" up to {} vectors", crate::vk::matvec::DOT_MAX_BATCH)
                        } else {
                            String::new()
                        },
                        p.pre_rounded_failure()
                            .map(|why| format!("; `_dot_pre` DISABLED by the self-test ({why})"))
                            .unwrap_or_default()
                    ),
                    crate::vk::shaders::MatvecVariant::Subgroup => {
                        "matvec W·x: subgroup variant (subgroupAdd); xᵀ·W: one variant".to_string()
                    }
                    _ => format!(
                        "matvec W·x: shared-memory variant ({}); xᵀ·W: one variant",
                        if self.force_compat {
                            "compatible variants forced"
                        } else {
                            "no subgroup arithmetic on this device"
                        }
                    ),
                },
            );
            lines.extend(engine.device.features_report());
        }
        lines
    }

    /// Quantizes on the device when its kernel passed the self-test and the
    /// options have a Vulkan kernel (nearest or stochastic rounding, rejecting
    /// non-finite input), else on the CPU twin. The bytes are the same.
    pub fn quantize(
        &self,
        format: crate::format::Format,
        src: &[f32],
        dst: &mut [u8],
        opts: &crate::quant::QuantizeOptions,
    ) -> Result<()> {
        use crate::quant::{NonFinite, Rounding};
        let gpu_can = self.vulkan_kernel_enabled(crate::vk::shaders::Op::Quantize, format)
            && opts.non_finite == NonFinite::Reject
            && opts.first_index == 0
            && !matches!(opts.rounding, Rounding::ErrorMinimising)
            && !src.is_empty();
        if let (true, Some(engine)) = (gpu_can, &self.vulkan) {
            match crate::vk::ops::quantize(engine, format, src, dst, opts.rounding) {
                Err(e) if e.kind() == crate::ErrorKind::OutOfDeviceMemory && self.host_fallback => {
                    log::warn!("nyxq: {e}; quantizing on the CPU instead");
                }
                other => return other,
            }
        }
        crate::quant::quantize(format, src, dst, opts)
    }

    /// Whether a failed device allocation may fall back to host memory.
    pub fn host_fallback(&self) -> bool {
        self.host_fallback
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

/// Why no kernel can run on the device, when every kernel failed its
/// self-test (a context whose every kernel is disabled is refused, never
/// created with nothing to run).
fn every_kernel_disabled(self_test: &[crate::vk::selftest::KernelResult]) -> Option<String> {
    let first = self_test.first()?.failure.as_ref()?;
    if self_test.iter().any(|r| r.failure.is_none()) {
        return None;
    }
    Some(format!(
        "every Vulkan kernel failed its self-test ({} kernels; the first, {}: {first})",
        self_test.len(),
        self_test[0].kernel
    ))
}

/// Fault injection: the test setting, or else its environment variable.
fn injected(setting: Option<u64>, variable: &str) -> Option<u64> {
    setting.or_else(|| std::env::var(variable).ok().and_then(|v| v.parse().ok()))
}

/// Fault injection: makes `target` fire at the `nth` event counted by
/// `so_far` from now on (the self-test's events are not counted).
fn arm_fault(
    nth: Option<u64>,
    so_far: &std::sync::atomic::AtomicU64,
    target: &std::sync::atomic::AtomicU64,
) {
    use std::sync::atomic::Ordering::Relaxed;
    if let Some(nth) = nth {
        target.store(so_far.load(Relaxed) + nth, Relaxed);
    }
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

    #[test]
    fn a_cpu_context_reports_host_memory_and_takes_no_device_budget() {
        let ctx = Context::new(&ContextSettings {
            backend: BackendPreference::Cpu,
            ..Default::default()
        })
        .unwrap();
        let status = ctx.memory_status().unwrap();
        assert_eq!(status.source, crate::vk::budget::BudgetSource::Host);
        assert!(status.budget_bytes > 0);
        assert_eq!(status.device_local_bytes, status.budget_bytes);
        assert_eq!((status.nyxq_bytes, status.usage_bytes()), (0, 0));
        assert_eq!(status.available_bytes(), status.budget_bytes);
        assert_eq!(status.driver_usage_bytes, None);
        let err = ctx.inject_device_budget(Some(1)).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Unsupported);
    }
}
