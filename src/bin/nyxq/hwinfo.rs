//! `nyxq hwinfo [--json]`: every Vulkan device with its facts, then what a
//! default (AUTO) and an explicit Vulkan context choose, their kernel variants,
//! self-test results and the fallback in force.

use nyxq::context::{Backend, BackendPreference, Context, ContextSettings};
use nyxq::vk::DeviceInfo;
use nyxq::vk::budget::MemoryStatus;

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn device_json(d: &DeviceInfo) -> String {
    format!(
        "{{\"index\":{},\"name\":{},\"vendor\":{},\"vendor_id\":{},\"device_id\":{},\"type\":{},\"driver_name\":{},\"driver_info\":{},\"driver_version\":{},\"api_version\":{},\"device_local_bytes\":{},\"budget_bytes\":{},\"unified_memory\":{},\"max_allocation_bytes\":{},\"max_storage_buffer_range\":{},\"max_workgroup_bytes\":{},\"subgroup_size\":{},\"shader_float16\":{},\"shader_int8\":{},\"storage_8bit\":{},\"storage_16bit\":{},\"integer_dot_product\":{},\"integer_dot_accelerated\":{},\"rounding_rte_f16\":{},\"rounding_rte_f32\":{},\"denorm_preserve_f16\":{},\"denorm_preserve_f32\":{},\"emulating\":{},\"usable\":{}}}",
        d.index,
        json_str(&d.name),
        json_str(d.vendor_name()),
        d.vendor_id,
        d.device_id,
        json_str(d.device_type.name()),
        json_str(&d.driver_name),
        json_str(&d.driver_info),
        d.driver_version,
        json_str(&d.api_version_string()),
        d.device_local_bytes,
        d.budget_bytes.map_or("null".to_string(), |b| b.to_string()),
        d.unified_memory,
        d.max_allocation_bytes,
        d.max_storage_buffer_range,
        d.max_workgroup_bytes,
        d.subgroup_size,
        d.shader_float16,
        d.shader_int8,
        d.storage_8bit,
        d.storage_16bit,
        d.integer_dot_product,
        d.integer_dot_accelerated,
        d.rounding_rte_f16,
        d.rounding_rte_f32,
        d.denorm_preserve_f16,
        d.denorm_preserve_f32,
        d.emulating.as_deref().map_or("null".to_string(), json_str),
        d.unusable_reason()
            .map_or("true".to_string(), |r| json_str(&r)),
    )
}

fn device_text(d: &DeviceInfo) -> String {
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    format!(
        "device {}: {} ({}, {})\n  driver: {} {} (raw version {:#x}), Vulkan {}\n  memory: {:.2} GiB device-local{}, budget {}, max allocation {:.2} GiB, maxStorageBufferRange {:.2} GiB, workgroup memory {} KiB\n  subgroup {}; fp16 arith {}, int8 arith {}, 8-bit storage {}, 16-bit storage {}, integer dot product {}{}\n  float controls: round-to-nearest-even declarable for f16 {} / f32 {}, subnormals preservable f16 {} / f32 {}\n  usable: {}\n{}",
        d.index,
        d.name,
        d.vendor_name(),
        d.device_type.name(),
        d.driver_name,
        d.driver_info,
        d.driver_version,
        d.api_version_string(),
        gib(d.device_local_bytes),
        if d.unified_memory { " (unified)" } else { "" },
        d.budget_bytes
            .map_or("n/a (no VK_EXT_memory_budget)".to_string(), |b| format!(
                "{:.2} GiB",
                gib(b)
            )),
        gib(d.max_allocation_bytes),
        gib(u64::from(d.max_storage_buffer_range)),
        d.max_workgroup_bytes / 1024,
        d.subgroup_size,
        d.shader_float16,
        d.shader_int8,
        d.storage_8bit,
        d.storage_16bit,
        d.integer_dot_product,
        match (d.integer_dot_product, d.integer_dot_accelerated) {
            (true, true) => " (accelerated)",
            (true, false) => " (not accelerated)",
            _ => "",
        },
        d.rounding_rte_f16,
        d.rounding_rte_f32,
        d.denorm_preserve_f16,
        d.denorm_preserve_f32,
        d.unusable_reason().unwrap_or_else(|| "yes".to_string()),
        d.emulating.as_deref().map_or(String::new(), |r| format!(
            "  emulating: {r} (NYXQ_VK_EMULATE)\n"
        )),
    )
}

/// A context's memory status: the budget, its source, the usage and nyxq's
/// own device bytes (`nyxq_context_memory_status`).
fn memory_json(m: &MemoryStatus) -> String {
    format!(
        "{{\"source\":{},\"budget_bytes\":{},\"usage_bytes\":{},\"driver_usage_bytes\":{},\"nyxq_bytes\":{},\"available_bytes\":{}}}",
        json_str(m.source.key()),
        m.budget_bytes,
        m.usage_bytes(),
        m.driver_usage_bytes
            .map_or("null".to_string(), |b| b.to_string()),
        m.nyxq_bytes,
        m.available_bytes(),
    )
}

fn context_summary(pref: BackendPreference) -> (String, String) {
    let label = match pref {
        BackendPreference::Auto => "auto",
        BackendPreference::Vulkan => "vulkan",
        BackendPreference::Cpu => "cpu",
    };
    match Context::new(&ContextSettings {
        backend: pref,
        ..Default::default()
    }) {
        Ok(ctx) => {
            let device = ctx
                .device_info()
                .map(|d| d.name.clone())
                .unwrap_or_default();
            let report = ctx.vulkan_report();
            let memory = ctx.memory_status();
            let text = format!(
                "context {label}: backend {}{}{}\n  memory: {}\n{}",
                ctx.backend().name(),
                if ctx.backend() == Backend::Vulkan {
                    format!(" on '{device}'")
                } else {
                    String::new()
                },
                ctx.fallback_reason()
                    .map_or(String::new(), |r| format!(" (fallback: {r})")),
                memory
                    .as_ref()
                    .map_or_else(|e| format!("unknown ({e})"), |m| m.describe()),
                report
                    .iter()
                    .map(|l| format!("  {l}\n"))
                    .collect::<String>()
            );
            let json = format!(
                "{{\"request\":{},\"backend\":{},\"device\":{},\"fallback_reason\":{},\"memory\":{},\"kernels\":[{}]}}",
                json_str(label),
                json_str(ctx.backend().name()),
                json_str(&device),
                ctx.fallback_reason().map_or("null".to_string(), json_str),
                memory.as_ref().map_or("null".to_string(), memory_json),
                report
                    .iter()
                    .map(|l| json_str(l))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            (text, json)
        }
        Err(e) => (
            format!("context {label}: error: {e}\n"),
            format!(
                "{{\"request\":{},\"error\":{}}}",
                json_str(label),
                json_str(&e.to_string())
            ),
        ),
    }
}

/// What `hwinfo` reports, as text and as JSON: every Vulkan device (or why
/// Vulkan is unavailable) and what an AUTO and a Vulkan context choose.
pub struct Report {
    pub text: String,
    pub json: String,
}

/// Looks at the Vulkan devices and opens the two contexts.
pub fn gather() -> Report {
    let devices = match nyxq::device_report::requested_emulation(None) {
        Ok(emulation) => nyxq::vk::list_devices(&Default::default(), emulation.as_ref()),
        Err(e) => Err(nyxq::vk::Unavailable::NoDevice(e.to_string())),
    };
    let contexts = [BackendPreference::Auto, BackendPreference::Vulkan].map(context_summary);
    let devices_json = match &devices {
        Ok(list) => format!(
            "[{}]",
            list.iter().map(device_json).collect::<Vec<_>>().join(",")
        ),
        Err(_) => "[]".to_string(),
    };
    let error = devices
        .as_ref()
        .err()
        .map_or("null".to_string(), |e| json_str(e.reason()));
    let json = format!(
        "{{\"devices\":{devices_json},\"vulkan_error\":{error},\"contexts\":[{}]}}",
        contexts
            .iter()
            .map(|c| c.1.clone())
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut text = match &devices {
        Ok(list) if list.is_empty() => "no Vulkan device\n".to_string(),
        Ok(list) => list.iter().map(device_text).collect(),
        Err(e) => format!("Vulkan unavailable: {}\n", e.reason()),
    };
    text.push('\n');
    contexts.iter().for_each(|c| text.push_str(&c.0));
    Report { text, json }
}

pub fn run(args: &[String]) -> Result<(), String> {
    let report = gather();
    if args.iter().any(|a| a == "--json") {
        println!("{}", report.json);
    } else {
        print!("{}", report.text);
    }
    Ok(())
}
