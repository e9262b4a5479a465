//! The solver: moves along the tensors' hulls until the plan fits.
//!
//! The problem is a multiple-choice knapsack: each tensor picks one of a few
//! (bytes, error) options, the sum of bytes must fit the device, and the sum of
//! sensitivity-weighted errors should be least. The planner solves its LP
//! relaxation greedily: each tensor's admissible options are reduced to their
//! lower convex hull, and moves along the hulls are taken in order of least
//! added error per byte saved (a heap), which is optimal up to the last move.
//! A final pass spends what the last move over-saved on raising tensors back.
//! Exact dynamic programming over bytes would not meet the 10 ms budget for
//! 10 000 tensors; the greedy is O(n log n). See docs/planning.md, "How the plan is made".

use super::budget::Budget;
use super::estimate::snr_text;
use super::model::Role;
use super::prepare::{Choice, Prepared};
use super::sizes::human_bytes;
use super::types::Placement;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A move down a tensor's hull, ordered by added error per byte saved.
#[derive(PartialEq)]
struct Step {
    slope: f64,
    tensor: usize,
}
impl Eq for Step {}
impl Ord for Step {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: the least slope (then lowest index) first.
        other
            .slope
            .total_cmp(&self.slope)
            .then(other.tensor.cmp(&self.tensor))
    }
}
impl PartialOrd for Step {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn slope(from: &Choice, to: &Choice) -> f64 {
    (to.werr - from.werr) / (from.bytes - to.bytes).max(1) as f64
}

/// The mutable part of planning: each tensor's hull position and placement.
pub(super) struct Solver<'a> {
    state: &'a [Prepared],
    pub(super) pos: Vec<usize>,
    pub(super) place: Vec<Placement>,
    /// Rare decisions in words (allocation limits); common ones are composed
    /// once at the end from the positions below, which keeps planning fast.
    why: Vec<Vec<String>>,
    /// Hull position before any lowering, and the lowest reached.
    entry_pos: Vec<usize>,
    deepest: Vec<usize>,
    /// Moved to host memory by `offload`.
    offloaded: Vec<bool>,
    pub(super) device: u64,
    pub(super) host: u64,
    budget: &'a Budget,
}

impl<'a> Solver<'a> {
    pub(super) fn at(
        state: &'a [Prepared],
        budget: &'a Budget,
        pos: Vec<usize>,
        place: Vec<Placement>,
    ) -> Solver<'a> {
        let n = state.len();
        let mut s = Solver {
            state,
            entry_pos: pos.clone(),
            deepest: pos.clone(),
            pos,
            place,
            why: vec![Vec::new(); n],
            offloaded: vec![false; n],
            device: 0,
            host: 0,
            budget,
        };
        s.recount();
        s
    }

    pub(super) fn new(state: &'a [Prepared], budget: &'a Budget) -> Solver<'a> {
        let n = state.len();
        let mut s = Solver::at(state, budget, vec![0; n], vec![Placement::Device; n]);
        for (i, p) in state.iter().enumerate() {
            if !p.hull[0].device_ok {
                match p.hull.iter().position(|c| c.device_ok) {
                    Some(k) => {
                        s.why[i].push(format!(
                            "{} would be one allocation of {}, over the device's allocation limit → {}",
                            p.hull[0].format.name(),
                            human_bytes(p.hull[0].weight_bytes),
                            p.hull[k].format.name()
                        ));
                        s.pos[i] = k;
                    }
                    None => {
                        s.why[i].push(format!(
                            "placed in host memory: even {} is one allocation over the device's limit",
                            p.hull[p.hull.len() - 1].format.name()
                        ));
                        s.place[i] = Placement::Host;
                    }
                }
            }
        }
        s.entry_pos = s.pos.clone();
        s.deepest = s.pos.clone();
        s.recount();
        s
    }

    /// Every tensor's decisions in words: its start, then what the solver did.
    pub(super) fn reasons(&self) -> Vec<String> {
        use std::fmt::Write;
        (0..self.state.len())
            .map(|i| {
                let p = &self.state[i];
                let mut text = p.start_reason.clone();
                for why in &self.why[i] {
                    text.push_str("; ");
                    text.push_str(why);
                }
                if self.deepest[i] > self.entry_pos[i] {
                    let (from, to) = (&p.hull[self.entry_pos[i]], &p.hull[self.deepest[i]]);
                    let _ = write!(
                        text,
                        "; lowered {} → {} ({}) to fit the device budget",
                        from.format.name(),
                        to.format.name(),
                        snr_text(to.snr_db)
                    );
                }
                if self.offloaded[i] && self.place[i] == Placement::Host {
                    text.push_str(if p.role == Role::Embedding {
                        "; offloaded to host memory: the device is full (embedding rows are gathered, so host placement costs least)"
                    } else {
                        "; offloaded to host memory: the device is full even at the lowest admissible formats"
                    });
                }
                if self.pos[i] < self.deepest[i] {
                    let _ = write!(
                        text,
                        "; raised back to {} with the room left",
                        p.hull[self.pos[i]].format.name()
                    );
                }
                text
            })
            .collect()
    }

    fn recount(&mut self) {
        self.device = 0;
        self.host = 0;
        for i in 0..self.state.len() {
            let b = self.choice(i).bytes;
            match self.place[i] {
                Placement::Device => self.device += b,
                Placement::Host => self.host += b,
            }
        }
    }

    pub(super) fn choice(&self, i: usize) -> &'a Choice {
        &self.state[i].hull[self.pos[i]]
    }

    pub(super) fn device_over(&self) -> u64 {
        self.device.saturating_sub(self.budget.device)
    }

    pub(super) fn set_pos(&mut self, i: usize, k: usize) {
        let (old, new) = (self.choice(i).bytes, self.state[i].hull[k].bytes);
        match self.place[i] {
            Placement::Device => self.device = self.device - old + new,
            Placement::Host => self.host = self.host - old + new,
        }
        self.pos[i] = k;
    }

    pub(super) fn set_place(&mut self, i: usize, place: Placement) {
        let b = self.choice(i).bytes;
        match self.place[i] {
            Placement::Device => self.device -= b,
            Placement::Host => self.host -= b,
        }
        match place {
            Placement::Device => self.device += b,
            Placement::Host => self.host += b,
        }
        self.place[i] = place;
    }

    /// Lowers device tensors along their hulls, least added error per byte first,
    /// until the device fits (or nothing is left to lower).
    pub(super) fn reduce(&mut self) {
        let mut heap = BinaryHeap::new();
        for i in 0..self.state.len() {
            self.push_step(&mut heap, i);
        }
        while self.device_over() > 0 {
            let Some(Step { tensor: i, .. }) = heap.pop() else {
                break;
            };
            let k = self.pos[i] + 1;
            self.set_pos(i, k);
            self.deepest[i] = self.deepest[i].max(k);
            self.push_step(&mut heap, i);
        }
    }

    fn push_step(&self, heap: &mut BinaryHeap<Step>, i: usize) {
        let hull = &self.state[i].hull;
        let k = self.pos[i];
        if self.place[i] == Placement::Device && k + 1 < hull.len() && hull[k + 1].device_ok {
            heap.push(Step {
                slope: slope(&hull[k], &hull[k + 1]),
                tensor: i,
            });
        }
    }

    /// Moves device tensors to host memory until the device fits: embeddings
    /// first (only the rows a batch uses are read, so host placement costs
    /// least), then the largest tensors (fewest moved).
    pub(super) fn offload(&mut self, candidates: Option<&[usize]>) {
        let mut order: Vec<usize> = match candidates {
            Some(c) => c.to_vec(),
            None => (0..self.state.len()).collect(),
        };
        order.retain(|&i| self.place[i] == Placement::Device);
        order.sort_by_key(|&i| {
            (
                self.state[i].role != Role::Embedding,
                std::cmp::Reverse(self.choice(i).bytes),
                i,
            )
        });
        let mut moved = Vec::new();
        for i in order {
            if self.device_over() == 0 {
                break;
            }
            let b = self.choice(i).bytes;
            if self.host + b > self.budget.host {
                continue;
            }
            self.set_place(i, Placement::Host);
            moved.push(i);
        }
        // Bring back, smallest first, what the device has room for after all.
        moved.sort_by_key(|&i| (self.choice(i).bytes, i));
        for &i in &moved {
            if self.device + self.choice(i).bytes <= self.budget.device {
                self.set_place(i, Placement::Device);
            } else {
                self.offloaded[i] = true;
            }
        }
    }

    /// Raises tensors back up their hulls while room is left: host tensors
    /// within the host budget, device tensors by most error removed per byte.
    /// Room only shrinks as tensors are raised, so a step that does not fit now
    /// never will: each candidate is looked at once (a heap, O(n log n)).
    pub(super) fn raise(&mut self, only: Option<&[usize]>, floor: Option<&[usize]>) {
        let set: Vec<usize> = match only {
            Some(s) => s.to_vec(),
            None => (0..self.state.len()).collect(),
        };
        let lowest = |i: usize| floor.map_or(0, |f| f[i]);
        let gain = |s: &Solver, i: usize| {
            let hull = &s.state[i].hull;
            let k = s.pos[i];
            // Negated so that the min-heap of Step yields the largest gain first.
            -slope(&hull[k - 1], &hull[k])
        };
        let mut heap = BinaryHeap::new();
        for &i in &set {
            if self.pos[i] > lowest(i) {
                heap.push(Step {
                    slope: gain(self, i),
                    tensor: i,
                });
            }
        }
        while let Some(Step { tensor: i, .. }) = heap.pop() {
            let k = self.pos[i];
            let (from, to) = (&self.state[i].hull[k], &self.state[i].hull[k - 1]);
            let extra = to.bytes - from.bytes;
            let room = match self.place[i] {
                Placement::Device => to.device_ok && self.device + extra <= self.budget.device,
                Placement::Host => self.host + extra <= self.budget.host,
            };
            if !room {
                continue;
            }
            self.set_pos(i, k - 1);
            if self.pos[i] > lowest(i) {
                heap.push(Step {
                    slope: gain(self, i),
                    tensor: i,
                });
            }
        }
    }

    pub(super) fn shortfall(&self) -> u64 {
        self.device_over() + self.host.saturating_sub(self.budget.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Format;

    fn choice(bytes: u64, werr: f64) -> Choice {
        Choice {
            format: Format::Q8_0,
            weight_bytes: bytes,
            bytes,
            snr_db: 30.0,
            werr,
            device_ok: true,
        }
    }

    /// An MLP tensor whose hull is `hull`, `device_ok` for each choice as
    /// given.
    fn tensor(name: &str, hull: Vec<Choice>) -> Prepared {
        Prepared {
            name: name.to_string(),
            role: Role::Mlp,
            shape: vec![1],
            source: super::super::estimate::ErrorSource::Estimated,
            hull,
            start_reason: "start".to_string(),
            fixed: false,
        }
    }

    fn budget(device: u64, host: u64) -> Budget {
        Budget {
            device_available: device,
            safety_margin: 0,
            activation_reserve: 0,
            policy_cap: 0,
            device,
            host,
        }
    }

    #[test]
    fn raising_host_tensors_keeps_the_host_total_and_its_budget() {
        // Two host tensors lowered to 600 bytes; the host has room to raise
        // one of them back to 1000, not both.
        let state = [
            tensor("a", vec![choice(1000, 0.0), choice(600, 1.0)]),
            tensor("b", vec![choice(1000, 0.0), choice(600, 2.0)]),
        ];
        let budget = budget(0, 1600);
        let mut s = Solver::at(&state, &budget, vec![1, 1], vec![Placement::Host; 2]);
        assert_eq!(s.host, 1200);
        s.raise(None, None);
        // The larger error is removed first: b goes back to 1000 bytes.
        assert_eq!(s.pos, vec![1, 0]);
        assert_eq!(s.host, 1600);
        assert_eq!(s.shortfall(), 0);
    }

    #[test]
    fn a_tensor_placed_on_the_host_from_the_start_is_not_called_offloaded() {
        // No choice fits one device allocation: the tensor starts in host
        // memory, which is not the device being full.
        let mut too_big = choice(1000, 0.0);
        too_big.device_ok = false;
        let state = [tensor("big", vec![too_big])];
        let budget = budget(1 << 20, 1 << 20);
        let s = Solver::new(&state, &budget);
        assert_eq!(s.place, vec![Placement::Host]);
        let reasons = s.reasons();
        assert!(
            reasons[0].contains("placed in host memory") && !reasons[0].contains("offloaded"),
            "{}",
            reasons[0]
        );
    }

    #[test]
    fn reducing_lowers_the_least_error_per_byte_first() {
        // 100 bytes over: lowering a costs 4.0 of error for 400 bytes, b
        // 0.5 for 400; b is lowered, a is not.
        let state = [
            tensor("a", vec![choice(1000, 0.0), choice(600, 4.0)]),
            tensor("b", vec![choice(1000, 0.0), choice(600, 0.5)]),
        ];
        let budget = budget(1900, 0);
        let mut s = Solver::new(&state, &budget);
        s.reduce();
        assert_eq!(s.pos, vec![0, 1]);
        assert_eq!(s.device, 1600);
    }

    #[test]
    fn reducing_never_steps_to_a_choice_the_device_cannot_hold() {
        let mut refused = choice(600, 0.5);
        refused.device_ok = false;
        let state = [tensor("a", vec![choice(1000, 0.0), refused])];
        let budget = budget(900, 0);
        let mut s = Solver::new(&state, &budget);
        s.reduce();
        assert_eq!(s.pos, vec![0]);
        assert_eq!(s.device_over(), 100);
    }

    #[test]
    fn offloading_fills_the_host_budget_exactly_and_never_past_it() {
        for (host, offloaded) in [(1000, true), (999, false)] {
            let state = [tensor("a", vec![choice(1000, 0.0)])];
            let budget = budget(500, host);
            let mut s = Solver::new(&state, &budget);
            s.offload(None);
            let place = if offloaded {
                Placement::Host
            } else {
                Placement::Device
            };
            assert_eq!(s.place, vec![place], "host budget {host}");
            assert!(s.host <= host);
        }
    }

    #[test]
    fn offloading_brings_back_what_fits_after_all() {
        // 150 bytes over: the embedding goes first (50), then the largest
        // (600); with the largest gone the embedding fits again and comes
        // back.
        let mut embedding = tensor("e", vec![choice(50, 0.0)]);
        embedding.role = Role::Embedding;
        let state = [
            embedding,
            tensor("a", vec![choice(600, 0.0)]),
            tensor("b", vec![choice(500, 0.0)]),
        ];
        let budget = budget(1000, 1 << 20);
        let mut s = Solver::new(&state, &budget);
        s.offload(None);
        assert_eq!(
            s.place,
            vec![Placement::Device, Placement::Host, Placement::Device]
        );
        assert_eq!((s.device, s.host), (550, 600));
        let reasons = s.reasons();
        assert!(!reasons[0].contains("offloaded"), "{}", reasons[0]);
        assert!(
            reasons[1].contains("offloaded to host memory"),
            "{}",
            reasons[1]
        );
    }

    #[test]
    fn the_shortfall_is_what_is_over_on_both_sides() {
        let state = [
            tensor("d", vec![choice(1000, 0.0)]),
            tensor("h", vec![choice(1000, 0.0)]),
        ];
        let budget = budget(900, 950);
        let s = Solver::at(
            &state,
            &budget,
            vec![0, 0],
            vec![Placement::Device, Placement::Host],
        );
        assert_eq!(s.shortfall(), 100 + 50);
    }

    #[test]
    fn a_steps_slope_is_the_error_it_adds_per_byte_it_saves() {
        assert_eq!(slope(&choice(1000, 0.5), &choice(600, 2.5)), 2.0 / 400.0);
        assert_eq!(slope(&choice(1000, 2.5), &choice(200, 0.5)), -2.0 / 800.0);
        // A step that saves nothing counts as saving one byte.
        assert_eq!(slope(&choice(600, 0.5), &choice(600, 1.5)), 1.0);
    }
}
