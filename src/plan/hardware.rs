//! Hardware: the memory and features a plan must respect, from a built-in
//! profile (data in config/profiles/), a profile file, or the host. A running
//! context describes its own device (crate::context::Context::hardware).

use super::sizes::parse_size;
use crate::error::{Error, ErrorKind, Result};
use crate::format::{Format, VulkanFamily};
use serde::{Deserialize, Deserializer, Serialize};
use std::path::Path;

/// Why a format stays off a GPU: nyxq cannot compute with it there.
const NO_VULKAN_KERNELS: &str = "nyxq has no Vulkan kernels for this format";

/// What the planner knows about a machine. The Vulkan backend fills one from
/// the physical device (heap sizes, VK_EXT_memory_budget, maxMemoryAllocationSize,
/// shaderFloat16, integer dot product, 8/16-bit storage); the CPU context fills
/// one from the host's memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    /// Profile name ("amd-rx580-8gb") or what detection found ("cpu (detected)").
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Size of the device-local heap(s) the model may live in.
    #[serde(deserialize_with = "size")]
    pub device_local_bytes: u64,
    /// What the driver says this process may use now (VK_EXT_memory_budget);
    /// 0 means the same as `device_local_bytes`.
    #[serde(default, deserialize_with = "size")]
    pub device_budget_bytes: u64,
    /// Host memory tensors may be offloaded to (outside the device heap).
    #[serde(deserialize_with = "size")]
    pub host_bytes: u64,
    /// Largest single allocation the driver reliably grants; 0 means no limit.
    #[serde(default, deserialize_with = "size")]
    pub max_allocation_bytes: u64,
    /// Device memory is carved from system RAM (integrated GPU).
    #[serde(default)]
    pub unified_memory: bool,
    /// FP16 arithmetic in shaders (shaderFloat16) at a useful rate.
    #[serde(default)]
    pub fp16_arithmetic: bool,
    /// Accelerated 8-bit integer dot products.
    #[serde(default)]
    pub int8_dot: bool,
    /// 16-bit storage buffer access.
    #[serde(default)]
    pub storage_16bit: bool,
    /// 8-bit storage buffer access.
    #[serde(default)]
    pub storage_8bit: bool,
    /// No GPU: "device" memory is host memory.
    #[serde(default)]
    pub cpu_only: bool,
    /// Where each fact comes from.
    #[serde(default)]
    pub sources: Vec<String>,
}

/// A size in a profile: a number of bytes, or a string such as "7 GiB" / "512 MiB".
fn size<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(b) => Ok(b),
        Size::Text(t) => parse_size(&t).map_err(serde::de::Error::custom),
    }
}

/// The built-in profiles, as data (config/profiles/*.json, compiled in).
const BUILT_IN: [(&str, &str); 4] = [
    (
        "intel-iris-xe-7gb",
        include_str!("../../config/profiles/intel-iris-xe-7gb.json"),
    ),
    (
        "amd-rx580-8gb",
        include_str!("../../config/profiles/amd-rx580-8gb.json"),
    ),
    (
        "nvidia-h200-141gb",
        include_str!("../../config/profiles/nvidia-h200-141gb.json"),
    ),
    (
        "cpu-only",
        include_str!("../../config/profiles/cpu-only.json"),
    ),
];

impl Hardware {
    /// Names of the built-in profiles.
    pub fn profile_names() -> Vec<&'static str> {
        BUILT_IN.iter().map(|(name, _)| *name).collect()
    }

    /// A built-in profile by name.
    pub fn profile(name: &str) -> Result<Hardware> {
        let (_, text) = BUILT_IN.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            Error::invalid(format!(
                "unknown hardware profile '{name}' (built in: {})",
                Hardware::profile_names().join(", ")
            ))
        })?;
        Hardware::from_json(text, &format!("config/profiles/{name}.json"))
    }

    /// Parses a profile; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Hardware> {
        let hw: Hardware = serde_json::from_str(text).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("{origin}:{}:{}: {e}", e.line(), e.column()),
            )
        })?;
        hw.check()
            .map_err(|e| Error::new(ErrorKind::Config, format!("{origin}: {e}")))?;
        Ok(hw)
    }

    /// Reads a profile file.
    pub fn load(path: &Path) -> Result<Hardware> {
        let text = super::model::read_text(path)?;
        Hardware::from_json(&text, &path.display().to_string())
    }

    /// Checks the facts are coherent.
    pub fn check(&self) -> Result<()> {
        if self.device_local_bytes == 0 {
            return Err(Error::invalid(format!(
                "hardware '{}': device_local_bytes is 0",
                self.name
            )));
        }
        if self.device_budget_bytes > self.device_local_bytes {
            return Err(Error::invalid(format!(
                "hardware '{}': device_budget_bytes {} exceeds device_local_bytes {}",
                self.name, self.device_budget_bytes, self.device_local_bytes
            )));
        }
        Ok(())
    }

    /// What the process may use on the device now.
    pub fn device_available(&self) -> u64 {
        match self.device_budget_bytes {
            0 => self.device_local_bytes,
            b => b,
        }
    }

    /// Whether tensors may be kept on the device in `format`, and if not, why.
    /// A device tensor needs its format's Vulkan matvec kernels (as
    /// `Tensor::migrate` does; F32 has them, though its conversions are the
    /// copy kernel).
    pub fn device_supports(&self, format: Format) -> std::result::Result<(), &'static str> {
        if !self.cpu_only && !format.spec().vulkan.has(VulkanFamily::Matvec) {
            return Err(NO_VULKAN_KERNELS);
        }
        match format {
            Format::F16 if !self.fp16_arithmetic && !self.cpu_only => {
                Err("the device has no FP16 arithmetic")
            }
            Format::F16 | Format::BF16 if !self.cpu_only && !self.storage_16bit => {
                Err("the device has no 16-bit storage")
            }
            _ => Ok(()),
        }
    }

    /// The host CPU as a device: memory from /proc/meminfo or sysconf.
    pub fn host_cpu() -> Result<Hardware> {
        let (bytes, source) = host_memory()?;
        Ok(Hardware {
            name: "cpu (detected)".to_string(),
            description: "the host CPU; device and host memory are the same RAM".to_string(),
            device_local_bytes: bytes,
            device_budget_bytes: 0,
            host_bytes: 0,
            max_allocation_bytes: 0,
            unified_memory: true,
            fp16_arithmetic: false,
            int8_dot: false,
            storage_16bit: true,
            storage_8bit: true,
            cpu_only: true,
            sources: vec![source],
        })
    }
}

/// Available host memory and where the number came from.
pub fn host_memory() -> Result<(u64, String)> {
    if let Ok(text) = std::fs::read_to_string("/proc/meminfo") {
        let field = |key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
                .map(|kib| kib * 1024)
        };
        if let Some(bytes) = field("MemAvailable:") {
            return Ok((bytes, "/proc/meminfo MemAvailable".to_string()));
        }
        if let Some(bytes) = field("MemTotal:") {
            return Ok((bytes, "/proc/meminfo MemTotal".to_string()));
        }
    }
    Err(Error::new(
        ErrorKind::Unsupported,
        "cannot read host memory: /proc/meminfo is missing; pass a hardware profile",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_profile_loads() {
        for name in Hardware::profile_names() {
            let hw = Hardware::profile(name).unwrap();
            assert_eq!(hw.name, name);
            assert!(!hw.sources.is_empty(), "{name} names its sources");
        }
        assert!(Hardware::profile("nope").is_err());
    }

    #[test]
    fn the_cpu_context_detects_host_memory() {
        let hw = Hardware::host_cpu().unwrap();
        assert!(hw.device_local_bytes > 64 << 20);
        assert!(hw.cpu_only);
    }

    #[test]
    fn a_format_without_vulkan_kernels_stays_off_the_device() {
        let gpu = Hardware::profile_names()
            .into_iter()
            .map(|name| Hardware::profile(name).unwrap())
            .find(|hw| !hw.cpu_only)
            .expect("a GPU profile is built in");
        let cpu = Hardware::host_cpu().unwrap();
        for format in crate::format::ALL_FORMATS {
            let refused = gpu.device_supports(format) == Err(NO_VULKAN_KERNELS);
            assert_eq!(refused, !format.spec().vulkan.matvec, "{format:?}");
            assert!(cpu.device_supports(format).is_ok(), "{format:?}");
        }
        // F32's conversions are the copy kernel, not conversion kernels: it
        // still lives on the device.
        assert!(gpu.device_supports(Format::F32).is_ok());
    }

    fn gpu() -> Hardware {
        Hardware::profile_names()
            .into_iter()
            .map(|name| Hardware::profile(name).unwrap())
            .find(|hw| !hw.cpu_only && hw.fp16_arithmetic && hw.storage_16bit)
            .expect("a GPU profile with 16-bit storage and arithmetic is built in")
    }

    #[test]
    fn a_device_without_16_bit_storage_or_arithmetic_keeps_f16_and_bf16_off() {
        let mut hw = gpu();
        assert_eq!(hw.device_supports(Format::F16), Ok(()));
        assert_eq!(hw.device_supports(Format::BF16), Ok(()));
        hw.storage_16bit = false;
        assert_eq!(
            hw.device_supports(Format::BF16),
            Err("the device has no 16-bit storage")
        );
        assert_eq!(
            hw.device_supports(Format::F16),
            Err("the device has no 16-bit storage")
        );
        assert_eq!(hw.device_supports(Format::Q4_0), Ok(()));
        hw.storage_16bit = true;
        hw.fp16_arithmetic = false;
        assert_eq!(
            hw.device_supports(Format::F16),
            Err("the device has no FP16 arithmetic")
        );
        assert_eq!(hw.device_supports(Format::BF16), Ok(()));
        // The CPU as the device has neither flag and needs neither.
        let mut cpu = Hardware::host_cpu().unwrap();
        cpu.storage_16bit = false;
        cpu.fp16_arithmetic = false;
        assert_eq!(cpu.device_supports(Format::F16), Ok(()));
        assert_eq!(cpu.device_supports(Format::BF16), Ok(()));
    }

    #[test]
    fn a_budget_may_equal_the_device_memory_but_not_exceed_it() {
        let mut hw = gpu();
        hw.device_budget_bytes = hw.device_local_bytes;
        assert!(hw.check().is_ok());
        assert_eq!(hw.device_available(), hw.device_local_bytes);
        hw.device_budget_bytes = hw.device_local_bytes + 1;
        let e = hw.check().unwrap_err();
        assert!(
            e.message().contains("exceeds device_local_bytes"),
            "{}",
            e.message()
        );
        hw.device_budget_bytes = 0;
        assert!(hw.check().is_ok());
        hw.device_local_bytes = 0;
        let e = hw.check().unwrap_err();
        assert!(
            e.message().contains("device_local_bytes is 0"),
            "{}",
            e.message()
        );
    }
}
