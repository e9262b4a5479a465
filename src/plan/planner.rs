//! The planner: a format and a placement for every tensor, with reasons.
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

use super::hardware::Hardware;
use super::model::{Model, Role, TensorDesc};
use super::policy::Policy;
use crate::error::{Error, ErrorKind, Result};
use crate::format::{ALL_FORMATS, Format};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

/// Where a tensor lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Device = 0,
    Host = 1,
}

impl Placement {
    pub fn name(self) -> &'static str {
        match self {
            Placement::Device => "device",
            Placement::Host => "host",
        }
    }
}

/// Where a tensor's expected error comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// F32: no error.
    Exact = 0,
    /// Quantized from the tensor's data and measured.
    Measured = 1,
    /// Estimated from the format and the role (no data given).
    Estimated = 2,
}

impl ErrorSource {
    pub fn name(self) -> &'static str {
        match self {
            ErrorSource::Exact => "exact",
            ErrorSource::Measured => "measured",
            ErrorSource::Estimated => "estimated",
        }
    }
}

/// SNR in dB a format is expected to give on weights of `role` without data:
/// round-to-nearest measured on the real MiniLM-L6 weights in
/// shared/data/weights (embeddings, attention and FFN matrices agree within
/// 0.5 dB; tests/plan_measured.rs checks the estimates stay within 4 dB), less
/// half a dB for the heavier-tailed embedding and output matrices.
pub fn estimated_snr_db(format: Format, role: Role) -> f64 {
    let base = match format {
        Format::F32 => return f64::INFINITY,
        Format::F16 => 73.7,
        Format::BF16 => 55.6,
        Format::Q8_0 => 45.3,
        Format::Q4_1 => 22.0,
        Format::Q4_0 => 21.1,
        Format::Q5_0 => 27.2,
    };
    match role {
        Role::Embedding | Role::Output => base - 0.5,
        _ => base,
    }
}

/// One way to store a tensor.
#[derive(Debug, Clone)]
struct Choice {
    format: Format,
    /// Bytes of the weights alone.
    weight_bytes: u64,
    /// Bytes with gradients and optimizer state (training).
    bytes: u64,
    snr_db: f64,
    /// sensitivity × noise power relative to the signal.
    werr: f64,
    /// The device grants one allocation of this size.
    device_ok: bool,
}

/// Everything about one tensor that does not change between replans.
#[derive(Debug)]
struct Prepared {
    name: String,
    role: Role,
    shape: Vec<usize>,
    source: ErrorSource,
    /// The start choice first, then cheaper admissible choices on the lower
    /// convex hull of (bytes, error), in order of bytes saved.
    hull: Vec<Choice>,
    /// Why the start choice is what it is.
    start_reason: String,
    /// Whether replans may move this tensor (false for norms, overrides).
    fixed: bool,
}

/// How the device budget was arrived at.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// What the hardware reports the process may use.
    pub device_available: u64,
    pub safety_margin: u64,
    pub activation_reserve: u64,
    /// A cap from the policy (memory_threshold_mb, memory_reduction_target); 0 = none.
    pub policy_cap: u64,
    /// What the tensors may take on the device.
    pub device: u64,
    /// What the tensors may take in host memory.
    pub host: u64,
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
    state: Arc<Vec<Prepared>>,
    positions: Vec<(usize, Placement)>,
    prefer_device: bool,
    allow_host: bool,
}

const MIB: f64 = (1u64 << 20) as f64;

/// Bytes for humans: "1.25 GiB", "3.0 MiB", "512 B".
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * MIB {
        format!("{:.2} GiB", b / 1024.0 / MIB)
    } else if b >= MIB {
        format!("{:.1} MiB", b / MIB)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

fn snr_text(snr: f64) -> String {
    if snr.is_infinite() {
        "exact".to_string()
    } else {
        format!("SNR {snr:.1} dB")
    }
}

fn werr_of(weight: f64, snr_db: f64) -> f64 {
    if snr_db == f64::INFINITY {
        0.0
    } else {
        weight * 10f64.powf(-snr_db / 10.0)
    }
}

/// Why the hardware or the policy rules a format out for every tensor.
fn excluded(format: Format, hw: &Hardware, policy: &Policy) -> Option<String> {
    if !policy.allows(format) {
        return Some(format!("{} is not allowed by the policy", format.name()));
    }
    hw.device_supports(format)
        .err()
        .map(|why| format!("{} not used: {why}", format.name()))
}

fn prepare(t: &TensorDesc, hw: &Hardware, policy: &Policy) -> Result<Prepared> {
    let weight = t.weight();
    let max_alloc = hw.max_allocation_bytes;
    let choice = |format: Format| -> Option<Choice> {
        let weight_bytes = t.bytes_in(format)?;
        let snr_db = match (format, &t.measured_snr_db) {
            (Format::F32, _) => f64::INFINITY,
            (_, Some(m)) => m[format as usize],
            (_, None) => estimated_snr_db(format, t.role),
        };
        let bytes = weight_bytes + policy.training_extra(t.numel(), format != Format::F32);
        Some(Choice {
            format,
            weight_bytes,
            bytes,
            snr_db,
            werr: werr_of(weight, snr_db),
            device_ok: max_alloc == 0 || weight_bytes <= max_alloc,
        })
    };
    let source = if t.measured_snr_db.is_some() {
        ErrorSource::Measured
    } else {
        ErrorSource::Estimated
    };
    let mut reason = Vec::new();
    let fixed_choice = |format: Format, why: String| -> Result<Prepared> {
        let c = choice(format).ok_or_else(|| {
            Error::invalid(format!(
                "tensor '{}': {why}, but rows of {} are not whole {} blocks of {}",
                t.name,
                t.row_len(),
                format.name(),
                format.block_size()
            ))
        })?;
        Ok(Prepared {
            name: t.name.clone(),
            role: t.role,
            shape: t.shape.clone(),
            source: if format == Format::F32 {
                ErrorSource::Exact
            } else {
                source
            },
            hull: vec![c],
            start_reason: why,
            fixed: true,
        })
    };
    if t.role.keeps_f32() {
        return fixed_choice(Format::F32, "F32: norms and biases stay FP32".to_string());
    }
    if let Some(o) = policy.override_for(&t.name) {
        return fixed_choice(
            o.format,
            format!("{}: override '{}'", o.format.name(), o.text),
        );
    }
    // The fallback chain: usable formats from fewest to most bits; among equal
    // sizes the less accurate first, so the chain climbs INT4 → INT8 → FP16 → FP32.
    let mut chain: Vec<Choice> = ALL_FORMATS
        .iter()
        .copied()
        .filter(|&f| {
            (f == Format::F32 && policy.fallback_to_fp32)
                || (policy.allows(f) && hw.device_supports(f).is_ok())
        })
        .filter_map(choice)
        .collect();
    chain.sort_by(|a, b| {
        a.weight_bytes
            .cmp(&b.weight_bytes)
            .then(a.snr_db.total_cmp(&b.snr_db))
    });
    // Of two formats of one size keep the more accurate (F16 over BF16), unless
    // the policy prefers the other.
    let preferred = policy.preferred_for(t.role);
    chain.dedup_by(|later, earlier| {
        if later.weight_bytes != earlier.weight_bytes {
            return false;
        }
        if Some(earlier.format) == preferred {
            return true;
        }
        std::mem::swap(later, earlier);
        true
    });
    if chain.is_empty() {
        return Err(Error::invalid(format!(
            "tensor '{}': no allowed format stores rows of {}",
            t.name,
            t.row_len()
        )));
    }
    let mut at = match preferred {
        Some(p) => match chain.iter().position(|c| c.format == p) {
            Some(i) => {
                reason.push(format!("preferred {}", p.name()));
                i
            }
            None => {
                let bits = p.bits_per_weight();
                let i = chain
                    .iter()
                    .position(|c| c.format.bits_per_weight() >= bits)
                    .unwrap_or(chain.len() - 1);
                let why = if !t.fits_blocks(p) {
                    format!("rows of {} are not whole {} blocks", t.row_len(), p.name())
                } else {
                    excluded(p, hw, policy).unwrap_or_default()
                };
                reason.push(format!(
                    "preferred {} unavailable ({why}) → {}",
                    p.name(),
                    chain[i].format.name()
                ));
                i
            }
        },
        None => chain.len() - 1,
    };
    while chain[at].snr_db < policy.min_snr_db && at + 1 < chain.len() {
        let next = chain[at + 1..]
            .iter()
            .position(|c| {
                c.format.bits_per_weight() > chain[at].format.bits_per_weight()
                    || c.snr_db >= policy.min_snr_db
            })
            .map_or(chain.len() - 1, |i| at + 1 + i);
        reason.push(format!(
            "{} {} < {:.1} dB threshold → {}",
            chain[at].format.name(),
            snr_text(chain[at].snr_db),
            policy.min_snr_db,
            chain[next].format.name()
        ));
        at = next;
    }
    if chain[at].snr_db < policy.min_snr_db {
        reason.push(format!(
            "no allowed format reaches {:.1} dB and fallback_to_fp32 is off: keeps {} ({})",
            policy.min_snr_db,
            chain[at].format.name(),
            snr_text(chain[at].snr_db)
        ));
    }
    if reason.is_empty() {
        reason.push(format!(
            "{}: the most accurate allowed format",
            chain[at].format.name()
        ));
    }
    let start = chain[at].clone();
    let mut hull = vec![start.clone()];
    if policy.adaptive {
        let mut cheaper: Vec<&Choice> = chain[..at]
            .iter()
            .filter(|c| c.bytes < start.bytes && c.snr_db >= policy.min_snr_db)
            .collect();
        cheaper.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.werr.total_cmp(&b.werr)));
        cheaper.dedup_by(|b, a| a.bytes == b.bytes);
        for c in cheaper {
            // Keep the lower convex hull: drop points that lie on or above the
            // segment from their predecessor to the new point.
            while hull.len() >= 2 {
                let (o, a) = (&hull[hull.len() - 2], &hull[hull.len() - 1]);
                let (ax, ay) = ((o.bytes - a.bytes) as f64, a.werr - o.werr);
                let (bx, by) = ((o.bytes - c.bytes) as f64, c.werr - o.werr);
                if ax * by - ay * bx <= 0.0 {
                    hull.pop();
                } else {
                    break;
                }
            }
            hull.push(c.clone());
        }
    }
    Ok(Prepared {
        name: t.name.clone(),
        role: t.role,
        shape: t.shape.clone(),
        source: if start.format == Format::F32 && hull.len() == 1 {
            ErrorSource::Exact
        } else {
            source
        },
        hull,
        start_reason: reason.join("; "),
        fixed: false,
    })
}

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
struct Solver<'a> {
    state: &'a [Prepared],
    pos: Vec<usize>,
    place: Vec<Placement>,
    /// Rare decisions in words (allocation limits); common ones are composed
    /// once at the end from the positions below, which keeps planning fast.
    why: Vec<Vec<String>>,
    /// Hull position before any lowering, and the lowest reached.
    entry_pos: Vec<usize>,
    deepest: Vec<usize>,
    /// Moved to host memory by `offload`.
    offloaded: Vec<bool>,
    device: u64,
    host: u64,
    budget: &'a Budget,
}

impl<'a> Solver<'a> {
    fn at(
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

    fn new(state: &'a [Prepared], budget: &'a Budget) -> Solver<'a> {
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
    fn reasons(&self) -> Vec<String> {
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

    fn choice(&self, i: usize) -> &'a Choice {
        &self.state[i].hull[self.pos[i]]
    }

    fn device_over(&self) -> u64 {
        self.device.saturating_sub(self.budget.device)
    }

    fn set_pos(&mut self, i: usize, k: usize) {
        let (old, new) = (self.choice(i).bytes, self.state[i].hull[k].bytes);
        match self.place[i] {
            Placement::Device => self.device = self.device - old + new,
            Placement::Host => self.host = self.host - old + new,
        }
        self.pos[i] = k;
    }

    fn set_place(&mut self, i: usize, place: Placement) {
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
    fn reduce(&mut self) {
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
    fn offload(&mut self, candidates: Option<&[usize]>) {
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
    fn raise(&mut self, only: Option<&[usize]>, floor: Option<&[usize]>) {
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

    fn shortfall(&self) -> u64 {
        self.device_over() + self.host.saturating_sub(self.budget.host)
    }
}

/// Bytes per element of the largest candidate a tensor can have: F32 weights,
/// F32 gradients, FP32 Adam moments and an FP32 master copy (4 + 4 + 8 + 4).
const MAX_BYTES_PER_ELEMENT: u64 = 20;

/// Ok when every byte total the planner forms for `model` fits in 64 bits:
/// the sum over all tensors of the largest candidate is computed with checked
/// arithmetic, so no later sum can wrap around.
fn check_total_size(model: &Model) -> Result<()> {
    model
        .tensors
        .iter()
        .try_fold(0u64, |total, t| {
            t.numel()
                .checked_mul(MAX_BYTES_PER_ELEMENT)
                .and_then(|bytes| total.checked_add(bytes))
        })
        .map(|_| ())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::SizeOverflow,
                format!(
                    "model '{}': its {} tensors hold {} elements in all; their sizes in bytes overflow 64-bit arithmetic",
                    model.name,
                    model.tensors.len(),
                    model
                        .tensors
                        .iter()
                        .map(|t| u128::from(t.numel()))
                        .sum::<u128>()
                ),
            )
        })
}

/// Works out the budget for `model` on `hw` under `policy`.
fn budget(hw: &Hardware, policy: &Policy, model: &Model) -> Budget {
    let fp32_weights: u64 = model.tensors.iter().map(|t| 4 * t.numel()).sum();
    let quantized_extras: u64 = model
        .tensors
        .iter()
        .map(|t| policy.training_extra(t.numel(), true))
        .sum();
    let available = hw.device_available();
    let margin = policy.safety_margin(available);
    let reserve = policy.activation_reserve(available);
    let mut device = available.saturating_sub(margin).saturating_sub(reserve);
    let mut cap = 0;
    if policy.device_cap_bytes > 0 {
        cap = policy.device_cap_bytes;
    }
    if policy.max_fraction_of_fp32 < 1.0 {
        let by_fraction =
            (fp32_weights as f64 * policy.max_fraction_of_fp32) as u64 + quantized_extras;
        cap = if cap == 0 {
            by_fraction
        } else {
            cap.min(by_fraction)
        };
    }
    if cap > 0 {
        device = device.min(cap);
    }
    Budget {
        device_available: available,
        safety_margin: margin,
        activation_reserve: reserve,
        policy_cap: cap,
        device,
        host: if policy.allow_host_offload && !hw.cpu_only {
            hw.host_bytes
        } else {
            0
        },
    }
}

impl Plan {
    /// Plans `model` for `hw` under `policy`. When nothing fits, the error is
    /// [`ErrorKind::InfeasiblePlan`] with the shortfall, and its message names
    /// the largest shape of the built-in ladder that does fit.
    pub fn create(model: &Model, hw: &Hardware, policy: &Policy) -> Result<Plan> {
        match Plan::solve(model, hw, policy) {
            Err(e) if matches!(e.kind(), ErrorKind::InfeasiblePlan { .. }) => {
                let advice =
                    match super::ladder::Ladder::built_in().and_then(|l| l.recommend(hw, policy)) {
                        Ok(Some(r)) => format!("; {}", r.describe()),
                        Ok(None) => {
                            "; not even the smallest shape of the model ladder fits".to_string()
                        }
                        Err(l) => format!("; the model ladder could not be consulted: {l}"),
                    };
                Err(Error::new(e.kind(), format!("{}{advice}", e.message())))
            }
            other => other,
        }
    }

    /// Plans without consulting the ladder when nothing fits.
    pub fn solve(model: &Model, hw: &Hardware, policy: &Policy) -> Result<Plan> {
        policy.check()?;
        hw.check()?;
        model.check()?;
        check_total_size(model)?;
        let state: Vec<Prepared> = model
            .tensors
            .iter()
            .map(|t| prepare(t, hw, policy))
            .collect::<Result<_>>()?;
        let fp32_bytes: u64 = model
            .tensors
            .iter()
            .map(|t| 4 * t.numel() + policy.training_extra(t.numel(), false))
            .sum();
        let budget = budget(hw, policy, model);
        let mut notes = policy.notes.clone();
        notes.extend(
            ALL_FORMATS
                .iter()
                .filter(|f| policy.allows(**f))
                .filter_map(|&f| {
                    hw.device_supports(f)
                        .err()
                        .map(|w| format!("{} not used: {w}", f.name()))
                }),
        );
        let state = Arc::new(state);
        let mut s = Solver::new(&state, &budget);
        if policy.prefer_device {
            s.reduce();
            if s.device_over() > 0 {
                s.offload(None);
            }
        } else {
            s.offload(None);
            s.reduce();
        }
        s.raise(None, None);
        let shortfall = s.shortfall();
        if shortfall > 0 {
            return Err(Error::new(
                ErrorKind::InfeasiblePlan { shortfall },
                format!(
                    "model '{}' does not fit {}: {} short (device budget {}, host budget {}, \
                     even with every tensor at its lowest format within {:.1} dB{})",
                    model.name,
                    hw.name,
                    human_bytes(shortfall),
                    human_bytes(budget.device),
                    human_bytes(budget.host),
                    policy.min_snr_db,
                    if budget.host > 0 {
                        " and offloaded"
                    } else {
                        ""
                    }
                ),
            ));
        }
        if s.host > 0 {
            notes.push(format!("{} offloaded to host memory", human_bytes(s.host)));
        }
        let why = s.reasons();
        let (pos, place) = (s.pos, s.place);
        Ok(Plan::assemble(
            model.name.clone(),
            hw.name.clone(),
            policy,
            state,
            budget,
            fp32_bytes,
            pos,
            place,
            why,
            notes,
            Vec::new(),
            None,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
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

    /// For tests and callers: how many tensors a replan changed.
    pub fn changed_count(&self) -> usize {
        self.entries.iter().filter(|e| e.changed).count()
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
    use super::*;

    fn hull_formats(snr: [f64; ALL_FORMATS.len()]) -> Vec<Format> {
        let mut t = TensorDesc::new("w", Role::Mlp, &[64, 64]).unwrap();
        t.measured_snr_db = Some(snr);
        let policy = Policy {
            min_snr_db: 10.0,
            allowed: vec![Format::F32, Format::Q8_0, Format::Q4_0],
            ..Policy::default()
        };
        let hw = Hardware::profile("nvidia-h200-141gb").unwrap();
        let p = prepare(&t, &hw, &policy).unwrap();
        p.hull.iter().map(|c| c.format).collect()
    }

    #[test]
    fn the_hull_keeps_convex_options_and_drops_dominated_ones() {
        let inf = f64::INFINITY;
        assert_eq!(
            hull_formats([inf, 70.0, 55.0, 45.0, 21.0, 22.0, 27.0]),
            [Format::F32, Format::Q8_0, Format::Q4_0]
        );
        // A Q8_0 worse than Q4_0 is never worth its extra bytes.
        assert_eq!(
            hull_formats([inf, 70.0, 55.0, 20.0, 21.0, 22.0, 27.0]),
            [Format::F32, Format::Q4_0]
        );
    }

    #[test]
    fn greedy_lowers_the_cheapest_error_per_byte_first() {
        // Two equal tensors but one twice as sensitive: under pressure the
        // less sensitive one is lowered first.
        let mut a = TensorDesc::new("a", Role::Mlp, &[1024, 1024]).unwrap();
        let mut b = TensorDesc::new("b", Role::Mlp, &[1024, 1024]).unwrap();
        a.sensitivity = Some(1.0);
        b.sensitivity = Some(2.0);
        let model = Model::new("m", vec![a, b]).unwrap();
        let mut hw = Hardware::profile("cpu-only").unwrap();
        hw.device_local_bytes = 7 << 20;
        let policy = Policy {
            safety_margin_bytes: Some(0),
            ..Policy::default()
        };
        let plan = Plan::solve(&model, &hw, &policy).unwrap();
        assert!(plan.device_bytes <= 7 << 20);
        let (fa, fb) = (plan.entries[0].format, plan.entries[1].format);
        assert!(
            fa.bits_per_weight() <= fb.bits_per_weight(),
            "{fa:?} {fb:?}"
        );
        assert!(fa.bits_per_weight() < 32.0);
    }

    #[test]
    fn byte_totals_that_overflow_64_bits_are_an_error_not_a_wrap() {
        // 4096 tensors of 2^50 elements, each within the per-tensor limit:
        // 2^62 elements, 2^64 bytes in F32.
        let tensors = (0..4096)
            .map(|i| TensorDesc::new(&format!("t{i}"), Role::Mlp, &[1 << 20, 1 << 30]).unwrap())
            .collect();
        let model = Model::new("huge", tensors).unwrap();
        let hw = Hardware::profile("nvidia-h200-141gb").unwrap();
        let e = Plan::solve(&model, &hw, &Policy::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SizeOverflow, "{}", e.message());
        assert!(e.message().contains("overflow 64-bit"), "{}", e.message());
        assert!(
            e.message().contains(&(1u128 << 62).to_string()),
            "{}",
            e.message()
        );
    }
}
