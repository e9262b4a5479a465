//! The plan and its parts: where each tensor lives, one line per tensor, and
//! the totals.

use super::budget::Budget;
use super::estimate::ErrorSource;
use super::model::Role;
use super::policy::Policy;
use super::prepare::Prepared;
use crate::format::Format;
use std::sync::Arc;

/// Where a tensor lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Device = 0,
    Host = 1,
}

impl Placement {
    /// The placement as reports and JSON name it.
    pub fn name(self) -> &'static str {
        match self {
            Placement::Device => "device",
            Placement::Host => "host",
        }
    }
}

/// One tensor's line of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanEntry {
    pub name: String,
    pub role: Role,
    pub shape: Vec<usize>,
    pub format: Format,
    pub placement: Placement,
    /// Bytes of the weights, block scales included.
    pub weight_bytes: u64,
    /// Weights plus, in training, gradients and optimizer state.
    pub bytes: u64,
    /// Expected SNR in dB (+inf for F32).
    pub snr_db: f64,
    pub error_source: ErrorSource,
    /// Every decision about this tensor, in words.
    pub reason: String,
    /// Changed by the replan that made this plan.
    pub changed: bool,
}

/// A plan: every tensor's format and placement, the totals, the reasons.
#[derive(Debug, Clone)]
pub struct Plan {
    pub model_name: String,
    pub hardware_name: String,
    pub training: bool,
    pub min_snr_db: f64,
    pub entries: Vec<PlanEntry>,
    pub budget: Budget,
    pub device_bytes: u64,
    pub host_bytes: u64,
    /// What the model takes with every tensor in F32 (training extras included).
    pub fp32_bytes: u64,
    /// Σ sensitivity × relative noise power: the objective the planner minimised.
    pub weighted_error: f64,
    /// Plan-wide remarks (formats the hardware rules out, offloading, ...).
    pub notes: Vec<String>,
    /// What a replan changed, one line per tensor.
    pub changes: Vec<String>,
    pub(super) state: Arc<Vec<Prepared>>,
    pub(super) positions: Vec<(usize, Placement)>,
    pub(super) prefer_device: bool,
    pub(super) allow_host: bool,
}

impl Plan {
    #[allow(clippy::too_many_arguments)]
    /// A plan from the solver's positions and placements over `state`, with
    /// the totals summed and, after a replan, what `changed` marks.
    pub(super) fn assemble(
        model_name: String,
        hardware_name: String,
        policy: &Policy,
        state: Arc<Vec<Prepared>>,
        budget: Budget,
        fp32_bytes: u64,
        pos: Vec<usize>,
        place: Vec<Placement>,
        why: Vec<String>,
        notes: Vec<String>,
        changes: Vec<String>,
        changed: Option<&[bool]>,
    ) -> Plan {
        let mut entries = Vec::with_capacity(state.len());
        let (mut device_bytes, mut host_bytes, mut weighted_error) = (0, 0, 0.0);
        for ((i, p), reason) in state.iter().enumerate().zip(why) {
            let c = &p.hull[pos[i]];
            match place[i] {
                Placement::Device => device_bytes += c.bytes,
                Placement::Host => host_bytes += c.bytes,
            }
            weighted_error += c.werr;
            entries.push(PlanEntry {
                name: p.name.clone(),
                role: p.role,
                shape: p.shape.clone(),
                format: c.format,
                placement: place[i],
                weight_bytes: c.weight_bytes,
                bytes: c.bytes,
                snr_db: c.snr_db,
                error_source: if c.format == Format::F32 {
                    ErrorSource::Exact
                } else {
                    p.source
                },
                reason,
                changed: changed.is_some_and(|c| c[i]),
            });
        }
        Plan {
            model_name,
            hardware_name,
            training: policy.training,
            min_snr_db: policy.min_snr_db,
            entries,
            budget,
            device_bytes,
            host_bytes,
            fp32_bytes,
            weighted_error,
            notes,
            changes,
            state,
            positions: pos.into_iter().zip(place).collect(),
            prefer_device: policy.prefer_device,
            allow_host: policy.allow_host_offload,
        }
    }

    /// For tests and callers: how many tensors a replan changed.
    pub fn changed_count(&self) -> usize {
        self.entries.iter().filter(|e| e.changed).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::test_plans::offloading_plan;

    #[test]
    fn the_totals_are_the_sums_of_the_entries_on_each_side() {
        let plan = offloading_plan(true);
        let total = |place: Placement| -> u64 {
            plan.entries
                .iter()
                .filter(|e| e.placement == place)
                .map(|e| e.bytes)
                .sum()
        };
        assert!(plan.entries.iter().any(|e| e.placement == Placement::Host));
        assert_eq!(plan.host_bytes, total(Placement::Host));
        assert_eq!(plan.device_bytes, total(Placement::Device));
        assert!(plan.host_bytes > 0 && plan.device_bytes > 0);
        // Quantized tensors add their error; only F32 ones add none.
        assert!(plan.entries.iter().any(|e| e.format != Format::F32));
        assert!(plan.weighted_error > 0.0, "{}", plan.weighted_error);
    }

    #[test]
    fn placements_have_the_names_reports_use() {
        assert_eq!(Placement::Device.name(), "device");
        assert_eq!(Placement::Host.name(), "host");
    }
}
