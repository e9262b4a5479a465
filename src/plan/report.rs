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
