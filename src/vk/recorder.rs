//! The descriptor sets of dispatches recorded into the caller's command
//! buffers (DESIGN.md, "Vulkan handoff", way 1), and their tickets.
//!
//! Each recorded call gets a ticket. The descriptor sets it used stay allocated
//! until the caller says that the work of that ticket (and of every earlier
//! one) has completed ([`Recorder::release`]), or until a timeline semaphore
//! the caller named for that ticket alone reaches its value
//! ([`Recorder::release_when`], checked by [`Recorder::poll`]); then they go
//! back to their pool.
//! Pools are only created while unreleased sets fill the existing ones, so a
//! caller that releases as it goes never grows nyxq's memory, however many
//! dispatches it records.
//!
//! A ticket may also hold a scratch buffer (the `_dot_pre` matrix-vector
//! product's x, rounded by a dispatch before the product): it is the
//! ticket's until the ticket is released, then a spare that a later ticket
//! reuses when it is large enough. At most [`SPARE_SCRATCH`] spares are
//! kept (the largest); the others are destroyed at release.

use super::error::vk_err;
use super::memory::Buffer;
use crate::error::{Error, ErrorKind, Result};
use ash::vk;
use parking_lot::Mutex;
use std::collections::VecDeque;

/// Names the dispatches of one recording call, for [`Recorder::release`].
pub type Ticket = u64;

/// Descriptor sets per pool; every set has at most [`BINDINGS_PER_SET`] storage buffers.
const SETS_PER_POOL: u32 = 256;
/// Storage-buffer bindings of the largest set layout nyxq records with.
pub const BINDINGS_PER_SET: u32 = 5;
const _: () = {
    let families = super::family::Family::ALL;
    let mut i = 0;
    while i < families.len() {
        assert!(families[i].bindings() <= BINDINGS_PER_SET);
        i += 1;
    }
};
/// Unreleased sets beyond this are refused: the caller forgot to release.
pub const MAX_UNRELEASED: usize = 1 << 16;
/// Released scratch buffers kept for later tickets.
pub const SPARE_SCRATCH: usize = 4;

/// The descriptor pools of recorded dispatches and the sets still in use.
pub struct Recorder {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    pools: Vec<Pool>,
    /// (ticket, pool index, set) in allocation order. Tickets of concurrent
    /// recordings may interleave; release stops at the first newer ticket,
    /// so such sets are freed by a later release, never too early.
    in_use: VecDeque<(Ticket, usize, vk::DescriptorSet)>,
    /// The buffers each unreleased ticket binds (a buffer once per ticket),
    /// so destroying a buffer that pending work may use can be refused.
    bound: Vec<(Ticket, vk::Buffer)>,
    /// Tickets to release once a timeline semaphore reaches a value.
    pending: Vec<PendingRelease>,
    /// Scratch buffers: held by an unreleased ticket, or spare (None).
    scratch: Vec<(Option<Ticket>, Buffer)>,
    last_ticket: Ticket,
}

/// A ticket released once `semaphore` reaches `value`.
#[derive(Clone, Copy)]
struct PendingRelease {
    ticket: Ticket,
    semaphore: vk::Semaphore,
    value: u64,
}

struct Pool {
    pool: vk::DescriptorPool,
    used: u32,
}

/// How many pools, unreleased sets and scratch buffers a recorder holds
/// (for tests and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecorderUsage {
    pub pools: usize,
    pub unreleased_sets: usize,
    pub last_ticket: Ticket,
    /// Scratch buffers held by unreleased tickets.
    pub held_scratch: usize,
    /// Released scratch buffers kept for later tickets.
    pub spare_scratch: usize,
    /// Bytes of every scratch buffer, held or spare.
    pub scratch_bytes: u64,
}

impl Recorder {
    /// A recorder with no pools yet.
    pub fn new() -> Recorder {
        Recorder {
            state: Mutex::new(State::default()),
        }
    }

    /// A new ticket for one recording call.
    pub fn next_ticket(&self) -> Ticket {
        let mut state = self.state.lock();
        state.last_ticket += 1;
        state.last_ticket
    }

    /// `count` descriptor sets of `layout` that stay allocated until `ticket`
    /// is released: all of them, or none (on failure the ones made are freed),
    /// so a recording call can fail before it records anything.
    pub fn allocate(
        &self,
        device: &ash::Device,
        layout: vk::DescriptorSetLayout,
        ticket: Ticket,
        count: usize,
    ) -> Result<Vec<vk::DescriptorSet>> {
        let mut state = self.state.lock();
        let mut sets = Vec::with_capacity(count);
        for _ in 0..count {
            match allocate_one(&mut state, device, layout, ticket) {
                Ok(set) => sets.push(set),
                Err(e) => {
                    free_newest(&mut state, device, sets.len());
                    return Err(e);
                }
            }
        }
        Ok(sets)
    }

    /// A scratch buffer of at least `bytes` that `ticket` holds until it is
    /// released: the smallest spare that is large enough, else one that
    /// `make` allocates (its error is returned, and nothing is held).
    pub fn take_scratch(
        &self,
        ticket: Ticket,
        bytes: u64,
        make: impl FnOnce() -> Result<Buffer>,
    ) -> Result<ash::vk::Buffer> {
        let mut state = self.state.lock();
        let spare = state
            .scratch
            .iter()
            .enumerate()
            .filter(|(_, (held, b))| held.is_none() && b.size >= bytes)
            .min_by_key(|(_, (_, b))| b.size)
            .map(|(i, _)| i);
        let index = match spare {
            Some(i) => i,
            None => {
                state.scratch.push((None, make()?));
                state.scratch.len() - 1
            }
        };
        let entry = &mut state.scratch[index];
        entry.0 = Some(ticket);
        Ok(entry.1.buffer)
    }

    /// Destroys every spare scratch buffer (released tickets' buffers: no
    /// pending work uses them), returning their bytes: memory back under
    /// pressure, and a known start for tests.
    pub fn drop_spare_scratch(&self) -> u64 {
        let mut state = self.state.lock();
        let bytes = state
            .scratch
            .iter()
            .filter(|(held, _)| held.is_none())
            .map(|(_, b)| b.size)
            .sum();
        state.scratch.retain(|(held, _)| held.is_some());
        bytes
    }

    /// Makes `ticket`'s scratch a spare again: for a recording call that
    /// failed after taking it (nothing recorded uses it).
    pub fn return_scratch(&self, ticket: Ticket) {
        let mut state = self.state.lock();
        spare_scratch_of(&mut state, |t| t == ticket);
    }

    /// Frees the sets of `ticket` and of every earlier ticket (those waiting
    /// for a semaphore too), and makes their scratch buffers spares. The
    /// caller promises that no pending command buffer uses them.
    pub fn release(&self, device: &ash::Device, ticket: Ticket) -> Result<()> {
        let mut state = self.state.lock();
        check_issued(&state, ticket)?;
        state.pending.retain(|p| p.ticket > ticket);
        free_tickets(&mut state, device, |t| t <= ticket)
    }

    /// Frees the sets of `ticket` alone once `semaphore` reaches `value`:
    /// checked now and by every later [`Recorder::poll`]. A later call for
    /// the same ticket replaces the semaphore and value; a ticket already
    /// released is left alone.
    ///
    /// # Safety
    /// `semaphore` is a timeline semaphore of `device` that stays alive
    /// until the ticket is released, and the caller's command buffers that
    /// use the ticket's sets complete before it reaches `value`.
    pub unsafe fn release_when(
        &self,
        device: &ash::Device,
        ticket: Ticket,
        semaphore: vk::Semaphore,
        value: u64,
    ) -> Result<()> {
        {
            let mut state = self.state.lock();
            check_issued(&state, ticket)?;
            if !state.in_use.iter().any(|(t, _, _)| *t == ticket) {
                return Ok(());
            }
            state.pending.retain(|p| p.ticket != ticket);
            state.pending.push(PendingRelease {
                ticket,
                semaphore,
                value,
            });
        }
        self.poll(device)
    }

    /// Frees the sets of every ticket whose semaphore has reached its value
    /// ([`Recorder::release_when`]).
    pub fn poll(&self, device: &ash::Device) -> Result<()> {
        let mut state = self.state.lock();
        if state.pending.is_empty() {
            return Ok(());
        }
        let mut reached_values: Vec<(vk::Semaphore, u64)> = Vec::new();
        let mut reached: Vec<Ticket> = Vec::new();
        for p in state.pending.clone() {
            let counter = match reached_values.iter().find(|(s, _)| *s == p.semaphore) {
                Some(&(_, counter)) => counter,
                None => {
                    // SAFETY: a timeline semaphore of this device, alive
                    // while its ticket is pending (release_when's contract).
                    let counter = unsafe { device.get_semaphore_counter_value(p.semaphore) }
                        .map_err(|e| vk_err("vkGetSemaphoreCounterValue", e))?;
                    reached_values.push((p.semaphore, counter));
                    counter
                }
            };
            if counter >= p.value {
                reached.push(p.ticket);
            }
        }
        reached.sort_unstable();
        let is_reached = |t: Ticket| reached.binary_search(&t).is_ok();
        state.pending.retain(|p| !is_reached(p.ticket));
        free_tickets(&mut state, device, is_reached)
    }

    /// Notes that the dispatches of `ticket` bind `buffers`, until it is
    /// released. Called once per ticket (by the recording call that drew
    /// it), so a buffer can repeat only within `buffers`: the check looks
    /// there and not through every unreleased ticket's buffers, so that
    /// recording n dispatches between releases costs O(n), not O(n²).
    pub fn note_buffers(&self, ticket: Ticket, buffers: &[vk::Buffer]) {
        let mut state = self.state.lock();
        for (i, &buffer) in buffers.iter().enumerate() {
            if !buffers[..i].contains(&buffer) {
                state.bound.push((ticket, buffer));
            }
        }
    }

    /// How many unreleased tickets hold descriptor sets: recorded work the
    /// caller has not released, which may still be pending on the device.
    pub fn unreleased_tickets(&self) -> usize {
        let state = self.state.lock();
        let mut tickets: Vec<Ticket> = state.in_use.iter().map(|(t, _, _)| *t).collect();
        tickets.sort_unstable();
        tickets.dedup();
        tickets.len()
    }

    /// How many unreleased tickets bind one of `buffers`.
    pub fn unreleased_tickets_binding(&self, buffers: &[vk::Buffer]) -> usize {
        let state = self.state.lock();
        let mut tickets: Vec<Ticket> = state
            .bound
            .iter()
            .filter(|(_, b)| buffers.contains(b))
            .map(|(t, _)| *t)
            .collect();
        tickets.sort_unstable();
        tickets.dedup();
        tickets.len()
    }

    /// Pools, unreleased sets and the last ticket, for tests and leak checks.
    pub fn usage(&self) -> RecorderUsage {
        let state = self.state.lock();
        let held = |s: &&(Option<Ticket>, Buffer)| s.0.is_some();
        RecorderUsage {
            pools: state.pools.len(),
            unreleased_sets: state.in_use.len(),
            last_ticket: state.last_ticket,
            held_scratch: state.scratch.iter().filter(held).count(),
            spare_scratch: state.scratch.iter().filter(|s| !held(s)).count(),
            scratch_bytes: state.scratch.iter().map(|(_, b)| b.size).sum(),
        }
    }

    /// Destroys every pool (and so every set) and every scratch buffer.
    ///
    /// # Safety
    /// No pending work uses a set or a scratch buffer of this recorder.
    pub unsafe fn destroy(&mut self, device: &ash::Device) {
        let state = self.state.get_mut();
        for pool in state.pools.drain(..) {
            // SAFETY: per this function's contract; each pool is destroyed once.
            unsafe { device.destroy_descriptor_pool(pool.pool, None) };
        }
        state.in_use.clear();
        state.bound.clear();
        state.pending.clear();
        state.scratch.clear();
    }
}

/// Makes the scratch buffers of the tickets `released` picks spares, and
/// destroys the smallest spares beyond [`SPARE_SCRATCH`].
fn spare_scratch_of(state: &mut State, released: impl Fn(Ticket) -> bool) {
    for entry in &mut state.scratch {
        if entry.0.is_some_and(&released) {
            entry.0 = None;
        }
    }
    let spares = state.scratch.iter().filter(|s| s.0.is_none()).count();
    if spares > SPARE_SCRATCH {
        // Held buffers first, then spares from the largest down; the
        // smallest spares past SPARE_SCRATCH are dropped (destroyed: no
        // pending work uses them, by the caller's promise).
        state
            .scratch
            .sort_by_key(|(held, b)| (held.is_none(), std::cmp::Reverse(b.size)));
        let held = state.scratch.len() - spares;
        state.scratch.truncate(held + SPARE_SCRATCH);
    }
}

/// Refuses a ticket that was never issued.
fn check_issued(state: &State, ticket: Ticket) -> Result<()> {
    if ticket > state.last_ticket {
        return Err(Error::invalid(format!(
            "ticket {ticket} was never issued (the last one is {})",
            state.last_ticket
        )));
    }
    Ok(())
}

/// Frees the sets of the tickets `released` picks, and forgets the buffers
/// they bind. Stops at the first failure, keeping what it did not free.
fn free_tickets(
    state: &mut State,
    device: &ash::Device,
    released: impl Fn(Ticket) -> bool,
) -> Result<()> {
    let State {
        pools,
        in_use,
        bound,
        ..
    } = state;
    let mut result = Ok(());
    let mut kept = VecDeque::with_capacity(in_use.len());
    // Tickets picked but kept after a failure (their buffers stay noted).
    let mut unfreed: Vec<Ticket> = Vec::new();
    for (ticket, index, set) in in_use.drain(..) {
        if !released(ticket) {
            kept.push_back((ticket, index, set));
            continue;
        }
        if result.is_err() {
            unfreed.push(ticket);
            kept.push_back((ticket, index, set));
            continue;
        }
        let pool = &mut pools[index];
        // SAFETY: the set came from this pool (created with FREE_DESCRIPTOR_SET)
        // and, per the caller's promise, no pending work uses it.
        match unsafe { device.free_descriptor_sets(pool.pool, &[set]) } {
            Ok(()) => pool.used -= 1,
            Err(e) => {
                result = Err(vk_err("vkFreeDescriptorSets", e));
                unfreed.push(ticket);
                kept.push_back((ticket, index, set));
            }
        }
    }
    *in_use = kept;
    bound.retain(|(t, _)| !released(*t) || unfreed.contains(t));
    spare_scratch_of(state, |t| released(t) && !unfreed.contains(&t));
    result
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

/// One set for `ticket`, from a pool with room (a new pool when none has).
fn allocate_one(
    state: &mut State,
    device: &ash::Device,
    layout: vk::DescriptorSetLayout,
    ticket: Ticket,
) -> Result<vk::DescriptorSet> {
    if state.in_use.len() >= MAX_UNRELEASED {
        return Err(Error::new(
            ErrorKind::OutOfMemory,
            format!(
                "{MAX_UNRELEASED} recorded dispatches are unreleased: call nyxq_vk_release \
                 once the command buffers that hold them have completed"
            ),
        ));
    }
    let index = match state.pools.iter().position(|p| p.used < SETS_PER_POOL) {
        Some(i) => i,
        None => {
            state.pools.push(Pool {
                pool: new_pool(device)?,
                used: 0,
            });
            state.pools.len() - 1
        }
    };
    let layouts = [layout];
    // SAFETY: the pool and layout are live; the pool has room (used < SETS_PER_POOL
    // and every layout needs at most BINDINGS_PER_SET descriptors).
    let set = unsafe {
        device.allocate_descriptor_sets(
            &vk::DescriptorSetAllocateInfo::default()
                .descriptor_pool(state.pools[index].pool)
                .set_layouts(&layouts),
        )
    }
    .map_err(|e| vk_err("vkAllocateDescriptorSets", e))?[0];
    state.pools[index].used += 1;
    state.in_use.push_back((ticket, index, set));
    Ok(set)
}

/// Frees the `count` newest sets (never used by any command buffer).
fn free_newest(state: &mut State, device: &ash::Device, count: usize) {
    for _ in 0..count {
        let Some((_, index, set)) = state.in_use.pop_back() else {
            return;
        };
        let pool = &mut state.pools[index];
        // SAFETY: the set came from this pool and was never recorded.
        let _ = unsafe { device.free_descriptor_sets(pool.pool, &[set]) };
        pool.used -= 1;
    }
}

fn new_pool(device: &ash::Device) -> Result<vk::DescriptorPool> {
    let sizes = [vk::DescriptorPoolSize::default()
        .ty(vk::DescriptorType::STORAGE_BUFFER)
        .descriptor_count(BINDINGS_PER_SET * SETS_PER_POOL)];
    // SAFETY: a live device; the info lives across the call.
    unsafe {
        device.create_descriptor_pool(
            &vk::DescriptorPoolCreateInfo::default()
                .flags(vk::DescriptorPoolCreateFlags::FREE_DESCRIPTOR_SET)
                .max_sets(SETS_PER_POOL)
                .pool_sizes(&sizes),
            None,
        )
    }
    .map_err(|e| vk_err("vkCreateDescriptorPool", e))
}
