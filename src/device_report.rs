//! Device reports (config/devices/<device>--<driver>.json): what one driver
//! reports for one GPU, each fact with its source. A report turns into the
//! [`Emulation`] that makes a Vulkan device behave as that GPU
//! (NYXQ_VK_EMULATE); its profile (config/profiles/) gives the memory.

use crate::error::{Error, ErrorKind, Result};
use crate::plan::Hardware;
use crate::vk::Emulation;
use crate::vk::emulation::parse_api_version;
use serde_json::Value;
use std::path::Path;

/// The environment variable that names the report a context emulates.
pub const EMULATE_VAR: &str = "NYXQ_VK_EMULATE";

/// One report, read from its file.
struct Report<'a> {
    origin: &'a str,
    facts: &'a serde_json::Map<String, Value>,
}

impl Report<'_> {
    fn error(&self, message: String) -> Error {
        Error::new(ErrorKind::Config, format!("{}: {message}", self.origin))
    }

    /// A fact's value; None where the report does not know it (null).
    fn value(&self, fact: &str) -> Result<Option<&Value>> {
        let entry = self
            .facts
            .get(fact)
            .ok_or_else(|| self.error(format!("no fact \"{fact}\"")))?;
        Ok(Some(&entry["value"]).filter(|v| !v.is_null()))
    }

    fn flag(&self, fact: &str) -> Result<Option<bool>> {
        self.value(fact)?
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| self.error(format!("{fact} is {v}, not true, false or null")))
            })
            .transpose()
    }

    /// A number; a formula or text in its place is an error, since emulation
    /// needs the number itself.
    fn number<T: TryFrom<u64>>(&self, fact: &str) -> Result<Option<T>> {
        self.value(fact)?.map(|v| self.whole(fact, v)).transpose()
    }

    fn whole<T: TryFrom<u64>>(&self, fact: &str, v: &Value) -> Result<T> {
        v.as_u64().and_then(|n| T::try_from(n).ok()).ok_or_else(|| {
            self.error(format!(
                "{fact} is {v}, not a whole number in range: emulating a device needs the \
                     number the driver reports"
            ))
        })
    }

    fn numbers3(&self, fact: &str) -> Result<Option<[u32; 3]>> {
        let Some(v) = self.value(fact)? else {
            return Ok(None);
        };
        let items = v
            .as_array()
            .filter(|a| a.len() == 3)
            .ok_or_else(|| self.error(format!("{fact} is {v}, not three whole numbers")))?;
        Ok(Some([
            self.whole(fact, &items[0])?,
            self.whole(fact, &items[1])?,
            self.whole(fact, &items[2])?,
        ]))
    }

    fn api_version(&self) -> Result<Option<u32>> {
        self.value("api_version")?
            .map(|v| {
                v.as_str()
                    .and_then(parse_api_version)
                    .ok_or_else(|| self.error(format!("api_version is {v}, not \"1.x\"")))
            })
            .transpose()
    }
}

/// The emulation a report describes. `text` is the report's JSON, `origin`
/// its name in errors; its `profile` (a built-in profile name) gives the
/// device-local memory and whether it is unified.
pub fn emulation_from_json(text: &str, origin: &str) -> Result<Emulation> {
    let json: Value = serde_json::from_str(text).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("{origin}:{}:{}: {e}", e.line(), e.column()),
        )
    })?;
    let facts = json["facts"]
        .as_object()
        .ok_or_else(|| Error::new(ErrorKind::Config, format!("{origin}: no \"facts\" object")))?;
    let report = Report { origin, facts };
    let profile = json["profile"]
        .as_str()
        .ok_or_else(|| report.error("no \"profile\" name".to_string()))?;
    let hardware = Hardware::profile(profile).map_err(|e| report.error(e.message().to_string()))?;
    Ok(Emulation {
        name: Path::new(origin)
            .file_stem()
            .map_or_else(|| origin.to_string(), |s| s.to_string_lossy().into_owned()),
        api_version: report.api_version()?,
        max_storage_buffer_range: report.number("max_storage_buffer_range")?,
        max_allocation_bytes: report.number("max_memory_allocation_size")?,
        max_workgroup_count: report.numbers3("max_compute_work_group_count")?,
        subgroup_size: report.number("subgroup_size")?,
        shader_float16: report.flag("shader_float16")?,
        shader_int8: report.flag("shader_int8")?,
        storage_8bit: report.flag("storage_buffer_8bit_access")?,
        storage_16bit: report.flag("storage_buffer_16bit_access")?,
        denorm_preserve_f16: report.flag("shader_denorm_preserve_float16")?,
        rounding_rte_f16: report.flag("shader_rounding_mode_rte_float16")?,
        integer_dot_product: report.flag("shader_integer_dot_product")?,
        integer_dot_accelerated: report.flag("integer_dot_4x8_packed_signed_accelerated")?,
        memory_budget: report.flag("memory_budget")?,
        device_local_bytes: Some(hardware.device_local_bytes),
        unified_memory: Some(hardware.unified_memory),
    })
}

/// Reads the report at `path`.
pub fn load_emulation(path: &Path) -> Result<Emulation> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("device report {}: {e}", path.display()),
        )
    })?;
    emulation_from_json(&text, &path.display().to_string())
}

/// The emulation NYXQ_VK_EMULATE (or `path`, which takes precedence) asks
/// for; None when neither names a report.
pub fn requested_emulation(path: Option<&str>) -> Result<Option<Emulation>> {
    let path = match path {
        Some(p) => p.to_string(),
        None => match std::env::var(EMULATE_VAR) {
            Ok(p) if !p.is_empty() => p,
            _ => return Ok(None),
        },
    };
    load_emulation(Path::new(&path)).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(facts: &str) -> String {
        let mut all: serde_json::Map<String, Value> = [
            "api_version",
            "max_storage_buffer_range",
            "max_memory_allocation_size",
            "max_compute_work_group_count",
            "subgroup_size",
            "shader_float16",
            "shader_int8",
            "storage_buffer_8bit_access",
            "storage_buffer_16bit_access",
            "shader_denorm_preserve_float16",
            "shader_rounding_mode_rte_float16",
            "shader_integer_dot_product",
            "integer_dot_4x8_packed_signed_accelerated",
            "memory_budget",
        ]
        .iter()
        .map(|f| (f.to_string(), serde_json::json!({"value": null})))
        .collect();
        let given: serde_json::Map<String, Value> = serde_json::from_str(facts).unwrap();
        for (k, v) in given {
            all.insert(k, serde_json::json!({ "value": v }));
        }
        serde_json::json!({"profile": "amd-rx580-8gb", "facts": all}).to_string()
    }

    #[test]
    fn a_report_becomes_its_emulation() {
        let e = emulation_from_json(
            &report(
                r#"{"api_version": "1.3", "max_storage_buffer_range": 4294967295,
                    "max_compute_work_group_count": [4294967295, 65535, 65535],
                    "shader_float16": false, "memory_budget": true}"#,
            ),
            "config/devices/x--y.json",
        )
        .unwrap();
        assert_eq!(e.name, "x--y");
        assert_eq!(e.api_version, parse_api_version("1.3"));
        assert_eq!(e.max_storage_buffer_range, Some(u32::MAX));
        assert_eq!(e.max_workgroup_count, Some([u32::MAX, 65535, 65535]));
        assert_eq!(e.shader_float16, Some(false));
        assert_eq!(e.shader_int8, None, "null stays unknown");
        assert_eq!(e.memory_budget, Some(true));
        assert_eq!(e.device_local_bytes, Some(8 << 30), "from amd-rx580-8gb");
        assert_eq!(e.unified_memory, Some(false));
    }

    #[test]
    fn a_formula_or_wrong_type_is_refused_naming_the_fact() {
        for (facts, named) in [
            (
                r#"{"max_storage_buffer_range": "min(a, b)"}"#,
                "max_storage_buffer_range",
            ),
            (
                r#"{"max_storage_buffer_range": 4294967296}"#,
                "max_storage_buffer_range",
            ),
            (r#"{"shader_float16": "yes"}"#, "shader_float16"),
            (r#"{"api_version": 1.3}"#, "api_version"),
            (
                r#"{"max_compute_work_group_count": [1, 2]}"#,
                "max_compute_work_group_count",
            ),
        ] {
            let e = emulation_from_json(&report(facts), "r.json").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            assert!(e.message().starts_with("r.json: "), "{}", e.message());
            assert!(e.message().contains(named), "{}", e.message());
        }
    }

    #[test]
    fn broken_files_say_where() {
        let e = emulation_from_json("{\"facts\": 3", "r.json").unwrap_err();
        assert!(e.message().starts_with("r.json:1:"), "{}", e.message());
        let e = emulation_from_json(r#"{"profile": "nope", "facts": {}}"#, "r.json").unwrap_err();
        assert!(e.message().contains("nope"), "{}", e.message());
        let e = load_emulation(Path::new("/nonexistent/report.json")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
    }

    #[test]
    fn every_committed_report_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/devices");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            load_emulation(&path).unwrap_or_else(|e| panic!("{}", e.message()));
        }
    }
}
