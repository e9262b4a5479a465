//! Replanning: a new plan for a new device budget that changes as few
//! tensors as possible.

use super::policy::Policy;
use super::sizes::human_bytes;
use super::solver::Solver;
use super::types::{Placement, Plan};
use crate::error::{Error, ErrorKind, Result};

impl Plan {
    /// A new plan for a new device budget (bytes the tensors may take on the
    /// device) that changes as few tensors as possible, listing the changes.
    ///
    /// Shrinking: the fewest tensors whose largest possible saving covers the
    /// deficit are picked (lowering within the threshold first; offloading when
    /// lowering cannot cover it), then raised back as far as the budget allows.
    /// Growing: offloaded tensors come back and lowered ones are raised, most
    /// error removed per byte first; every such change improves the plan.
    pub fn replan(&self, new_device_budget: u64) -> Result<Plan> {
        let mut budget = self.budget.clone();
        budget.device = new_device_budget;
        let state = &*self.state;
        let n = state.len();
        let mut s = Solver::at(
            state,
            &budget,
            self.positions.iter().map(|p| p.0).collect(),
            self.positions.iter().map(|p| p.1).collect(),
        );
        let old_pos = s.pos.clone();
        let old_place = s.place.clone();
        if s.device > budget.device {
            let deficit = s.device - budget.device;
            let movable: Vec<bool> = (0..n)
                .map(|i| !state[i].fixed && s.place[i] == Placement::Device)
                .collect();
            let lowest: Vec<usize> = (0..n)
                .map(|i| {
                    let hull = &state[i].hull;
                    (s.pos[i]..hull.len())
                        .take_while(|&k| hull[k].device_ok)
                        .last()
                        .unwrap_or(s.pos[i])
                })
                .collect();
            let saving: Vec<u64> = (0..n)
                .map(|i| state[i].hull[s.pos[i]].bytes - state[i].hull[lowest[i]].bytes)
                .collect();
            let mut by_saving: Vec<usize> =
                (0..n).filter(|&i| movable[i] && saving[i] > 0).collect();
            by_saving.sort_by_key(|&i| (std::cmp::Reverse(saving[i]), i));
            let total: u64 = by_saving.iter().map(|&i| saving[i]).sum();
            if total >= deficit || !self.allow_host || budget.host == 0 {
                let mut covered = 0;
                let mut picked = Vec::new();
                for &i in &by_saving {
                    if covered >= deficit {
                        break;
                    }
                    covered += saving[i];
                    picked.push(i);
                }
                let floors: Vec<usize> = s.pos.clone();
                for &i in &picked {
                    s.set_pos(i, lowest[i]);
                }
                s.raise(Some(&picked), Some(&floors));
            } else {
                // Lowering alone cannot cover the deficit: offload, fewest tensors first.
                let candidates: Vec<usize> = (0..n).filter(|&i| movable[i]).collect();
                s.offload(Some(&candidates));
                if s.device_over() > 0 {
                    s.reduce();
                }
            }
        } else {
            if self.prefer_device || !self.allow_host {
                let back: Vec<usize> = (0..n)
                    .filter(|&i| s.place[i] == Placement::Host && !state[i].fixed)
                    .collect();
                let mut back = back;
                back.sort_by_key(|&i| (state[i].hull[s.pos[i]].bytes, i));
                for i in back {
                    let c = &state[i].hull[s.pos[i]];
                    if c.device_ok && s.device + c.bytes <= budget.device {
                        s.set_place(i, Placement::Device);
                    }
                }
            }
            let movable: Vec<usize> = (0..n).filter(|&i| !state[i].fixed).collect();
            s.raise(Some(&movable), None);
        }
        let shortfall = s.shortfall();
        if shortfall > 0 {
            return Err(Error::new(
                ErrorKind::InfeasiblePlan { shortfall },
                format!(
                    "the plan cannot shrink to a device budget of {}: {} short",
                    human_bytes(budget.device),
                    human_bytes(shortfall)
                ),
            ));
        }
        let mut changes = Vec::new();
        let mut changed = vec![false; n];
        let mut why: Vec<String> = Vec::with_capacity(n);
        for i in 0..n {
            let old = &self.entries[i];
            let new = s.choice(i);
            let mut reason = old.reason.clone();
            if s.pos[i] != old_pos[i] || s.place[i] != old_place[i] {
                changed[i] = true;
                let line = format!(
                    "{}: {} {} → {} {} (replan from {} to {})",
                    old.name,
                    old.format.name(),
                    old.placement.name(),
                    new.format.name(),
                    s.place[i].name(),
                    human_bytes(self.budget.device),
                    human_bytes(budget.device)
                );
                reason.push_str(&format!(
                    "; replan: {} {} → {} {}",
                    old.format.name(),
                    old.placement.name(),
                    new.format.name(),
                    s.place[i].name()
                ));
                changes.push(line);
            }
            why.push(reason);
        }
        let mut notes = self.notes.clone();
        notes.retain(|n| !n.ends_with("offloaded to host memory"));
        if s.host > 0 {
            notes.push(format!("{} offloaded to host memory", human_bytes(s.host)));
        }
        let (pos, place) = (s.pos, s.place);
        let policy_flags = Policy {
            training: self.training,
            min_snr_db: self.min_snr_db,
            prefer_device: self.prefer_device,
            allow_host_offload: self.allow_host,
            ..Policy::default()
        };
        Ok(Plan::assemble(
            self.model_name.clone(),
            self.hardware_name.clone(),
            &policy_flags,
            self.state.clone(),
            budget,
            self.fp32_bytes,
            pos,
            place,
            why,
            notes,
            changes,
            Some(&changed),
        ))
    }

    /// The most bytes each tensor could give up on the device by lowering its
    /// format within the threshold (0 for fixed or host tensors); a replan that
    /// only lowers needs at least as many changes as the largest of these take
    /// to cover its deficit.
    pub fn lowering_savings(&self) -> Vec<u64> {
        self.state
            .iter()
            .zip(&self.positions)
            .map(|(p, &(k, place))| {
                if p.fixed || place == Placement::Host {
                    return 0;
                }
                let last = (k..p.hull.len())
                    .take_while(|&j| p.hull[j].device_ok)
                    .last()
                    .unwrap_or(k);
                p.hull[k].bytes - p.hull[last].bytes
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::model::{Model, Role, TensorDesc};
    use crate::plan::test_plans::{offloading_plan, six_tensors};
    use crate::plan::{Hardware, Plan, Policy};

    #[test]
    fn shrinking_lowers_device_tensors_only() {
        use crate::format::Format;
        use crate::plan::Placement;
        let plan = offloading_plan(true);
        // The largest tensor does not fit at 40 dB and stays FP32 on the host.
        let on_host: Vec<_> = plan
            .entries
            .iter()
            .filter(|e| e.placement == Placement::Host)
            .map(|e| (e.name.clone(), e.format))
            .collect();
        assert_eq!(on_host, [("w5".to_string(), Format::F32)]);
        // A host tensor frees no device bytes by lowering; the others are
        // at their lowest format within 40 dB already.
        assert_eq!(plan.lowering_savings(), [0; 6]);
        // Lowered, then offloaded when lowering was not enough, then raised
        // back to FP32 on the host: every step is in its reason.
        assert_eq!(
            plan.entries[5].reason,
            "F32: the most accurate allowed format; lowered F32 → Q8_0 (SNR 45.3 dB) to fit the \
             device budget; offloaded to host memory: the device is full even at the lowest \
             admissible formats; raised back to F32 with the room left"
        );
        check_totals(&plan);
        let budget = plan.device_bytes * 3 / 4;
        let smaller = plan.replan(budget).unwrap();
        check_totals(&smaller);
        assert!(smaller.device_bytes <= budget);
        // What was on the host is untouched: lowering it frees no device bytes.
        let w5 = smaller.entries.iter().find(|e| e.name == "w5").unwrap();
        assert_eq!((w5.format, w5.placement), (Format::F32, Placement::Host));
    }

    /// The tensors on the host, by name.
    fn on_host(plan: &Plan) -> Vec<&str> {
        use crate::plan::Placement;
        plan.entries
            .iter()
            .filter(|e| e.placement == Placement::Host)
            .map(|e| e.name.as_str())
            .collect()
    }

    /// The plan's device and host totals are the sums of its entries'.
    fn check_totals(plan: &Plan) {
        use crate::plan::Placement;
        let on = |place| -> u64 {
            plan.entries
                .iter()
                .filter(|e| e.placement == place)
                .map(|e| e.bytes)
                .sum()
        };
        assert_eq!(plan.device_bytes, on(Placement::Device));
        assert_eq!(plan.host_bytes, on(Placement::Host));
    }

    fn offload_note(plan: &Plan) -> Option<&String> {
        plan.notes
            .iter()
            .find(|n| n.ends_with("offloaded to host memory"))
    }

    #[test]
    fn shrinking_lowers_rather_than_offloads_where_lowering_covers_it() {
        let plan = six_tensors(&Policy {
            min_snr_db: 20.0,
            allow_host_offload: true,
            device_cap_bytes: 3 << 20,
            ..Policy::default()
        });
        assert!(on_host(&plan).is_empty());
        let smaller = plan.replan(plan.device_bytes / 2).unwrap();
        check_totals(&smaller);
        assert!(on_host(&smaller).is_empty(), "{:?}", on_host(&smaller));
        assert!(smaller.device_bytes <= plan.device_bytes / 2);
    }

    #[test]
    fn growing_brings_host_tensors_back_smallest_first_where_they_fit() {
        let plan = offloading_plan(true);
        let smaller = plan.replan(plan.device_bytes * 3 / 4).unwrap();
        assert_eq!(on_host(&smaller), ["w4", "w5"]);
        let w4 = smaller.entries.iter().find(|e| e.name == "w4").unwrap();
        // Room for w4 (the smaller) but not w5: w4 comes back alone.
        let grown = smaller.replan(smaller.device_bytes + w4.bytes).unwrap();
        check_totals(&grown);
        assert_eq!(on_host(&grown), ["w5"]);
        assert!(grown.device_bytes <= smaller.device_bytes + w4.bytes);
        // Room for everything: nothing stays on the host, and the note goes.
        let all = smaller.replan(64 << 20).unwrap();
        assert!(on_host(&all).is_empty(), "{:?}", on_host(&all));
        // ... and every lowered tensor is raised back to FP32.
        assert!(
            all.entries
                .iter()
                .all(|e| e.format == crate::format::Format::F32)
        );
        assert!(offload_note(&smaller).is_some());
        assert_eq!(offload_note(&all), None);
        // Without prefer_device, host tensors stay where they are.
        let plan = offloading_plan(false);
        let smaller = plan.replan(plan.device_bytes * 3 / 4).unwrap();
        let hosted = on_host(&smaller);
        assert!(!hosted.is_empty());
        assert_eq!(on_host(&smaller.replan(64 << 20).unwrap()), hosted);
    }

    #[test]
    fn a_replanned_plan_keeps_the_policy_it_was_made_with() {
        let tensors = (0..4)
            .map(|i| TensorDesc::new(&format!("w{i}"), Role::Mlp, &[256, 256]).unwrap())
            .collect();
        let model = Model::new("m", tensors).unwrap();
        let hw = Hardware::profile("cpu-only").unwrap();
        let policy = Policy {
            training: true,
            min_snr_db: 12.5,
            prefer_device: false,
            allow_host_offload: false,
            ..Policy::default()
        };
        let plan = Plan::solve(&model, &hw, &policy).unwrap();
        let again = plan.replan(plan.budget.device).unwrap();
        assert!(again.training);
        assert_eq!(again.min_snr_db, 12.5);
        assert!(!again.prefer_device);
        assert!(!again.allow_host);
        assert_eq!(again.device_bytes, plan.device_bytes);
    }
}
