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

/// The device reports compiled into the library (config/devices/), so that
/// an installed copy can emulate or plan for them by name.
const BUILT_IN: [(&str, &str); 7] = [
    (
        "amd-rx580--amd-windows",
        include_str!("../config/devices/amd-rx580--amd-windows.json"),
    ),
    (
        "amd-rx580--amdvlk",
        include_str!("../config/devices/amd-rx580--amdvlk.json"),
    ),
    (
        "amd-rx580--mesa-radv-22",
        include_str!("../config/devices/amd-rx580--mesa-radv-22.json"),
    ),
    (
        "amd-rx580--mesa-radv-25",
        include_str!("../config/devices/amd-rx580--mesa-radv-25.json"),
    ),
    (
        "intel-iris-xe--intel-windows",
        include_str!("../config/devices/intel-iris-xe--intel-windows.json"),
    ),
    (
        "intel-iris-xe--mesa-anv-22",
        include_str!("../config/devices/intel-iris-xe--mesa-anv-22.json"),
    ),
    (
        "intel-iris-xe--mesa-anv-25",
        include_str!("../config/devices/intel-iris-xe--mesa-anv-25.json"),
    ),
];

/// The names of the built-in device reports ("amd-rx580--amdvlk").
pub fn report_names() -> Vec<&'static str> {
    BUILT_IN.iter().map(|(name, _)| *name).collect()
}

/// A report's text and its origin (for errors): a built-in report by name,
/// or else the file at `name_or_path`.
fn report_text(name_or_path: &str) -> Result<(String, String)> {
    if let Some((name, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
        return Ok((text.to_string(), format!("config/devices/{name}.json")));
    }
    let text = crate::plan::model::read_text(Path::new(name_or_path)).map_err(|e| {
        Error::new(
            e.kind(),
            format!(
                "device report {}; built in: {}",
                e.message(),
                report_names().join(", ")
            ),
        )
    })?;
    Ok((text, name_or_path.to_string()))
}

fn parse_json(text: &str, origin: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("{origin}:{}:{}: {e}", e.line(), e.column()),
        )
    })
}

/// Parses a report and hands `read` its facts, its profile (which gives the
/// memory) and its name (the file's stem).
fn with_report<T>(
    text: &str,
    origin: &str,
    read: impl FnOnce(&Report, &Value, Hardware, String) -> Result<T>,
) -> Result<T> {
    let json = parse_json(text, origin)?;
    let facts = json["facts"]
        .as_object()
        .ok_or_else(|| Error::new(ErrorKind::Config, format!("{origin}: no \"facts\" object")))?;
    let report = Report { origin, facts };
    let profile = json["profile"]
        .as_str()
        .ok_or_else(|| report.error("no \"profile\" name".to_string()))?;
    let profile = Hardware::profile(profile).map_err(|e| report.error(e.message().to_string()))?;
    let name = Path::new(origin)
        .file_stem()
        .map_or_else(|| origin.to_string(), |s| s.to_string_lossy().into_owned());
    read(&report, &json, profile, name)
}

/// The emulation a report describes. `text` is the report's JSON, `origin`
/// its name in errors; its `profile` (a built-in profile name) gives the
/// device-local memory and whether it is unified. Where the report does not
/// know one of the planner's facts (the f16, 8/16-bit storage and
/// accelerated integer-dot flags, the allocation limit), the profile's
/// stands in, as in [`hardware_from_json`]: a flag the profile lacks is
/// masked, a limit it caps is lowered.
pub fn emulation_from_json(text: &str, origin: &str) -> Result<Emulation> {
    with_report(text, origin, |report, _, profile, name| {
        Ok(Emulation {
            name,
            api_version: report.api_version()?,
            max_storage_buffer_range: report.number("max_storage_buffer_range")?,
            max_allocation_bytes: report
                .number("max_memory_allocation_size")?
                .or(Some(profile.max_allocation_bytes).filter(|&b| b > 0)),
            max_workgroup_count: report.numbers3("max_compute_work_group_count")?,
            max_workgroup_bytes: report.number("max_compute_shared_memory_size")?,
            subgroup_size: report.number("subgroup_size")?,
            shader_float16: or_profile(report.flag("shader_float16")?, profile.fp16_arithmetic),
            shader_int8: report.flag("shader_int8")?,
            storage_8bit: or_profile(
                report.flag("storage_buffer_8bit_access")?,
                profile.storage_8bit,
            ),
            storage_16bit: or_profile(
                report.flag("storage_buffer_16bit_access")?,
                profile.storage_16bit,
            ),
            denorm_preserve_f16: report.flag("shader_denorm_preserve_float16")?,
            rounding_rte_f16: report.flag("shader_rounding_mode_rte_float16")?,
            integer_dot_product: report.flag("shader_integer_dot_product")?,
            integer_dot_accelerated: or_profile(
                report.flag("integer_dot_4x8_packed_signed_accelerated")?,
                profile.int8_dot,
            ),
            memory_budget: report.flag("memory_budget")?,
            device_local_bytes: Some(profile.device_local_bytes),
            unified_memory: Some(profile.unified_memory),
        })
    })
}

/// A report's flag, or where it does not know it, the profile's: a profile
/// without the feature masks it (Some(false)), one with it leaves the device
/// as it is (None).
fn or_profile(fact: Option<bool>, profile_has: bool) -> Option<bool> {
    fact.or((!profile_has).then_some(false))
}

/// The planner's facts (which [`crate::context::Context::hardware`] reads
/// from a running device) as one driver's report states them: the feature
/// flags and the allocation limit from the report, the memory from its
/// profile. A fact the report does not know is taken from the profile, and
/// `sources` says which.
pub fn hardware_from_json(text: &str, origin: &str) -> Result<Hardware> {
    with_report(text, origin, |report, json, profile, name| {
        let mut unknown = Vec::new();
        let mut flag = |field: &'static str, facts: &[&str], fallback: bool| -> Result<bool> {
            let mut known = true;
            for fact in facts {
                match report.flag(fact)? {
                    Some(false) => return Ok(false),
                    Some(true) => {}
                    None => known = false,
                }
            }
            if !known {
                unknown.push(field);
            }
            Ok(known || fallback)
        };
        let fp16_arithmetic = flag(
            "fp16_arithmetic",
            &["shader_float16"],
            profile.fp16_arithmetic,
        )?;
        let storage_16bit = flag(
            "storage_16bit",
            &["storage_buffer_16bit_access"],
            profile.storage_16bit,
        )?;
        let storage_8bit = flag(
            "storage_8bit",
            &["storage_buffer_8bit_access"],
            profile.storage_8bit,
        )?;
        let int8_dot = flag(
            "int8_dot",
            &[
                "shader_integer_dot_product",
                "integer_dot_4x8_packed_signed_accelerated",
            ],
            profile.int8_dot,
        )?;
        let max_allocation_bytes = match report.number::<u64>("max_memory_allocation_size")? {
            Some(bytes) => bytes,
            None => {
                unknown.push("max_allocation_bytes");
                profile.max_allocation_bytes
            }
        };
        let text_of = |key: &str| json[key].as_str().unwrap_or("?").to_string();
        let mut sources = vec![
            format!("device facts: {origin}"),
            format!(
                "memory: the profile {} (device {} bytes, host {} bytes)",
                profile.name, profile.device_local_bytes, profile.host_bytes
            ),
        ];
        if !unknown.is_empty() {
            sources.push(format!(
                "unknown in the report, taken from the profile {}: {}",
                profile.name,
                unknown.join(", ")
            ));
        }
        Ok(Hardware {
            name,
            description: format!("{} with {}", text_of("device"), text_of("driver")),
            device_local_bytes: profile.device_local_bytes,
            device_budget_bytes: 0,
            host_bytes: profile.host_bytes,
            max_allocation_bytes,
            unified_memory: profile.unified_memory,
            fp16_arithmetic,
            int8_dot,
            storage_16bit,
            storage_8bit,
            cpu_only: false,
            sources,
        })
    })
}

/// The emulation of a built-in report by name, or of the report file at
/// `name_or_path`.
pub fn load_emulation(name_or_path: &str) -> Result<Emulation> {
    let (text, origin) = report_text(name_or_path)?;
    emulation_from_json(&text, &origin)
}

/// The planner's facts of a built-in report by name, or of the report file
/// at `name_or_path` ([`hardware_from_json`]).
pub fn load_hardware(name_or_path: &str) -> Result<Hardware> {
    let (text, origin) = report_text(name_or_path)?;
    hardware_from_json(&text, &origin)
}

/// Hardware to plan for, by any of the names a user gives it: a built-in
/// profile, a built-in device report, or a file holding either (a file with
/// a `facts` object is a device report, any other a profile).
pub fn hardware(name_or_path: &str) -> Result<Hardware> {
    if Hardware::profile_names().contains(&name_or_path) {
        return Hardware::profile(name_or_path);
    }
    if report_names().contains(&name_or_path) {
        return load_hardware(name_or_path);
    }
    if !Path::new(name_or_path).exists() {
        return Err(Error::invalid(format!(
            "unknown hardware '{name_or_path}': not a file, a built-in profile ({}) or a \
             built-in device report ({})",
            Hardware::profile_names().join(", "),
            report_names().join(", ")
        )));
    }
    let text = crate::plan::model::read_text(Path::new(name_or_path))?;
    if parse_json(&text, name_or_path)?.get("facts").is_some() {
        hardware_from_json(&text, name_or_path)
    } else {
        Hardware::from_json(&text, name_or_path)
    }
}

/// The emulation NYXQ_VK_EMULATE (or `name_or_path`, which takes
/// precedence) asks for, a built-in report's name or a report file; None
/// when neither names one.
pub fn requested_emulation(name_or_path: Option<&str>) -> Result<Option<Emulation>> {
    let chosen = match name_or_path {
        Some(p) => p.to_string(),
        None => match std::env::var(EMULATE_VAR) {
            Ok(p) if !p.is_empty() => p,
            _ => return Ok(None),
        },
    };
    load_emulation(&chosen).map(Some)
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
            "max_compute_shared_memory_size",
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
                    "max_compute_shared_memory_size": 32768,
                    "shader_float16": false, "memory_budget": true}"#,
            ),
            "config/devices/x--y.json",
        )
        .unwrap();
        assert_eq!(e.name, "x--y");
        assert_eq!(e.api_version, parse_api_version("1.3"));
        assert_eq!(e.max_storage_buffer_range, Some(u32::MAX));
        assert_eq!(e.max_workgroup_count, Some([u32::MAX, 65535, 65535]));
        assert_eq!(e.max_workgroup_bytes, Some(32768));
        assert_eq!(e.shader_float16, Some(false));
        assert_eq!(e.shader_int8, None, "null stays unknown");
        assert_eq!(e.memory_budget, Some(true));
        assert_eq!(e.device_local_bytes, Some(8 << 30), "from amd-rx580-8gb");
        assert_eq!(e.unified_memory, Some(false));
    }

    /// Where a report does not know a planner's fact, its profile's stands
    /// in, for the emulation and the planning facts alike.
    #[test]
    fn unknown_planner_facts_take_the_profiles() {
        let text = report("{}");
        let e = emulation_from_json(&text, "r.json").unwrap();
        assert_eq!(
            e.shader_float16,
            Some(false),
            "the RX 580 profile has no f16"
        );
        assert_eq!(e.integer_dot_accelerated, Some(false));
        assert_eq!(e.storage_16bit, None, "the profile has it: not masked");
        assert_eq!(e.storage_8bit, None);
        assert_eq!(e.max_allocation_bytes, Some(2 << 30));
        assert_eq!(e.shader_int8, None, "not a planner's fact: stays unknown");
        let hw = hardware_from_json(&text, "r.json").unwrap();
        assert!(!hw.fp16_arithmetic && !hw.int8_dot && hw.storage_16bit && hw.storage_8bit);
        assert_eq!(hw.max_allocation_bytes, 2 << 30);
        let from_profile = hw.sources.last().unwrap();
        for field in [
            "fp16_arithmetic",
            "storage_16bit",
            "storage_8bit",
            "int8_dot",
            "max_allocation_bytes",
        ] {
            assert!(from_profile.contains(field), "{from_profile}");
        }
        let known = report(r#"{"shader_float16": true, "max_memory_allocation_size": 4096}"#);
        let e = emulation_from_json(&known, "r.json").unwrap();
        assert_eq!(e.shader_float16, Some(true), "a known fact wins");
        assert_eq!(e.max_allocation_bytes, Some(4096));
        let hw = hardware_from_json(&known, "r.json").unwrap();
        assert!(hw.fp16_arithmetic);
        assert_eq!(hw.max_allocation_bytes, 4096);
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
        let e = load_emulation("/nonexistent/report.json").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
    }

    #[test]
    fn every_committed_report_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/devices");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let path = path.to_str().unwrap();
            load_emulation(path).unwrap_or_else(|e| panic!("{}", e.message()));
            load_hardware(path).unwrap_or_else(|e| panic!("{}", e.message()));
        }
    }
}
