//! A plan for humans (a table and the reasons) and for programs (JSON).

use super::sizes::human_bytes;
use super::types::Plan;
use serde_json::{Value, json};
use std::fmt::Write;

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

impl Plan {
    /// The plan as a table with totals, notes and every decision's reason.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        let b = &self.budget;
        let _ = writeln!(
            out,
            "plan for '{}' on '{}' ({}), accuracy threshold {:.1} dB SNR",
            self.model_name,
            self.hardware_name,
            if self.training {
                "training"
            } else {
                "inference"
            },
            self.min_snr_db
        );
        let _ = writeln!(
            out,
            "device budget {} = {} available - {} safety margin - {} activation reserve{}; host budget {}",
            human_bytes(b.device),
            human_bytes(b.device_available),
            human_bytes(b.safety_margin),
            human_bytes(b.activation_reserve),
            if b.policy_cap > 0 {
                format!(", capped at {} by the policy", human_bytes(b.policy_cap))
            } else {
                String::new()
            },
            human_bytes(b.host)
        );
        let width = self
            .entries
            .iter()
            .map(|e| e.name.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = writeln!(
            out,
            "\n{:<width$}  {:<9}  {:<14}  {:<5}  {:<6}  {:>11}  {:>9}  source",
            "tensor", "role", "shape", "fmt", "place", "bytes", "SNR dB"
        );
        for e in &self.entries {
            let shape = e
                .shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join("x");
            let snr = if e.snr_db.is_infinite() {
                "exact".to_string()
            } else {
                format!("{:.1}", e.snr_db)
            };
            let _ = writeln!(
                out,
                "{:<width$}  {:<9}  {:<14}  {:<5}  {:<6}  {:>11}  {:>9}  {}{}",
                e.name,
                e.role.name(),
                shape,
                e.format.name(),
                e.placement.name(),
                human_bytes(e.bytes),
                snr,
                e.error_source.name(),
                if e.changed { "  (changed)" } else { "" }
            );
        }
        let mut formats: Vec<(&str, usize, u64)> = Vec::new();
        for e in &self.entries {
            match formats.iter_mut().find(|f| f.0 == e.format.name()) {
                Some(f) => {
                    f.1 += 1;
                    f.2 += e.weight_bytes;
                }
                None => formats.push((e.format.name(), 1, e.weight_bytes)),
            }
        }
        let _ = writeln!(
            out,
            "\ntotals: device {} of {} ({:.1}%), host {} of {}; FP32 would take {} ({:.1}% saved)",
            human_bytes(self.device_bytes),
            human_bytes(b.device),
            pct(self.device_bytes, b.device),
            human_bytes(self.host_bytes),
            human_bytes(b.host),
            human_bytes(self.fp32_bytes),
            100.0 - pct(self.device_bytes + self.host_bytes, self.fp32_bytes)
        );
        let mix: Vec<String> = formats
            .iter()
            .map(|(f, n, bytes)| format!("{f}: {n} tensors, {}", human_bytes(*bytes)))
            .collect();
        let _ = writeln!(out, "formats: {}", mix.join("; "));
        let _ = writeln!(out, "weighted error: {:.3e}", self.weighted_error);
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        if !self.changes.is_empty() {
            let _ = writeln!(out, "\nchanges ({}):", self.changes.len());
            for c in &self.changes {
                let _ = writeln!(out, "  {c}");
            }
        }
        let _ = writeln!(out, "\ndecisions:");
        for e in &self.entries {
            let _ = writeln!(out, "  {}: {}", e.name, e.reason);
        }
        out
    }

    /// The plan as a JSON value (the same facts as [`Plan::explain`]).
    pub fn to_json_value(&self) -> Value {
        let finite = |x: f64| if x.is_finite() { json!(x) } else { Value::Null };
        let entries: Vec<Value> = self
            .entries
            .iter()
            .map(|e| {
                json!({
                    "name": e.name,
                    "role": e.role.name(),
                    "shape": e.shape,
                    "format": e.format.name(),
                    "precision_level": e.format.precision_level(),
                    "placement": e.placement.name(),
                    "weight_bytes": e.weight_bytes,
                    "bytes": e.bytes,
                    "snr_db": finite(e.snr_db),
                    "error_source": e.error_source.name(),
                    "changed": e.changed,
                    "reason": e.reason,
                })
            })
            .collect();
        let b = &self.budget;
        json!({
            "model": self.model_name,
            "hardware": self.hardware_name,
            "mode": if self.training { "training" } else { "inference" },
            "min_snr_db": finite(self.min_snr_db),
            "budget": {
                "device_available": b.device_available,
                "safety_margin": b.safety_margin,
                "activation_reserve": b.activation_reserve,
                "policy_cap": b.policy_cap,
                "device": b.device,
                "host": b.host,
            },
            "totals": {
                "device_bytes": self.device_bytes,
                "host_bytes": self.host_bytes,
                "fp32_bytes": self.fp32_bytes,
                "weighted_error": self.weighted_error,
            },
            "notes": self.notes,
            "changes": self.changes,
            "tensors": entries,
        })
    }

    /// The plan as pretty-printed JSON (snr_db is null for exact F32 tensors).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.to_json_value()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Format;
    use crate::plan::Placement;
    use crate::plan::test_plans::offloading_plan;

    /// The shared plan with one tensor offloaded to the host.
    fn plan() -> Plan {
        offloading_plan(true)
    }

    #[test]
    fn percentages_are_of_the_whole_and_zero_without_one() {
        assert_eq!(pct(1, 4), 25.0);
        assert_eq!(pct(6, 3), 200.0);
        assert_eq!(pct(0, 5), 0.0);
        assert_eq!(pct(3, 0), 0.0);
    }

    #[test]
    fn the_table_states_the_totals_the_format_mix_and_every_reason() {
        let p = plan();
        assert!(p.host_bytes > 0 && p.device_bytes > 0);
        let text = p.explain();
        let line = |start: &str| {
            text.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no line '{start}' in\n{text}"))
                .to_string()
        };
        let used = p.device_bytes as f64 / p.budget.device as f64 * 100.0;
        let saved = (1.0 - (p.device_bytes + p.host_bytes) as f64 / p.fp32_bytes as f64) * 100.0;
        assert_eq!(
            line("totals:"),
            format!(
                "totals: device {} of {} ({used:.1}%), host {} of {}; FP32 would take {} ({saved:.1}% saved)",
                human_bytes(p.device_bytes),
                human_bytes(p.budget.device),
                human_bytes(p.host_bytes),
                human_bytes(p.budget.host),
                human_bytes(p.fp32_bytes),
            )
        );
        // The mix, in order of first appearance: each format's tensors and
        // weight bytes.
        let mut mix: Vec<(Format, usize, u64)> = Vec::new();
        for e in &p.entries {
            if !mix.iter().any(|m| m.0 == e.format) {
                let of: Vec<_> = p.entries.iter().filter(|f| f.format == e.format).collect();
                mix.push((e.format, of.len(), of.iter().map(|f| f.weight_bytes).sum()));
            }
        }
        assert!(mix.len() >= 2);
        let mix: Vec<String> = mix
            .iter()
            .map(|(f, n, b)| format!("{}: {n} tensors, {}", f.name(), human_bytes(*b)))
            .collect();
        assert_eq!(line("formats:"), format!("formats: {}", mix.join("; ")));
        assert_eq!(
            line("weighted error:"),
            format!("weighted error: {:.3e}", p.weighted_error)
        );
        for e in &p.entries {
            assert!(
                text.contains(&format!("\n  {}: {}\n", e.name, e.reason)),
                "{}",
                e.name
            );
        }
        assert!(
            text.contains(&format!(
                "\nnote: {} offloaded to host memory\n",
                human_bytes(p.host_bytes)
            )),
            "{text}"
        );
        assert!(!text.contains("(changed)") && !text.contains("changes ("));
        // A replan marks what it changed and lists the changes.
        let smaller = p.replan(p.device_bytes * 3 / 4).unwrap();
        let text = smaller.explain();
        let changed = smaller.entries.iter().filter(|e| e.changed).count();
        assert!(changed > 0);
        assert_eq!(text.matches("  (changed)").count(), changed);
        assert!(text.contains(&format!("\nchanges ({}):\n", smaller.changes.len())));
    }

    #[test]
    fn the_json_holds_the_same_facts() {
        let p = plan();
        let v = p.to_json_value();
        assert_eq!(v["model"], "m");
        assert_eq!(v["mode"], "inference");
        assert_eq!(v["min_snr_db"], 40.0);
        assert_eq!(v["budget"]["device"], p.budget.device);
        assert_eq!(v["budget"]["host"], p.budget.host);
        assert_eq!(v["totals"]["device_bytes"], p.device_bytes);
        assert_eq!(v["totals"]["host_bytes"], p.host_bytes);
        assert_eq!(v["totals"]["fp32_bytes"], p.fp32_bytes);
        let tensors = v["tensors"].as_array().unwrap();
        assert_eq!(tensors.len(), p.entries.len());
        for (t, e) in tensors.iter().zip(&p.entries) {
            assert_eq!(t["name"], e.name.as_str());
            assert_eq!(t["format"], e.format.name());
            assert_eq!(t["placement"], e.placement.name());
            assert_eq!(t["bytes"], e.bytes);
            // Exact FP32 has no finite SNR: null.
            if e.format == Format::F32 {
                assert!(t["snr_db"].is_null());
            } else {
                assert_eq!(t["snr_db"], e.snr_db);
            }
        }
        let host = p
            .entries
            .iter()
            .find(|e| e.placement == Placement::Host)
            .unwrap();
        assert_eq!(host.format, Format::F32);
        assert_eq!(serde_json::from_str::<Value>(&p.to_json()).unwrap(), v);
    }
}
