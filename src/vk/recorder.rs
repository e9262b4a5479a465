//! The descriptor sets of dispatches recorded into the caller's command
//! buffers (DESIGN.md, "Vulkan handoff", way 1), and their tickets.
//!
//! Each recorded call gets a ticket. The descriptor sets it used stay allocated
//! until the caller says that the work of that ticket (and of every earlier
//! one) has completed ([`Recorder::release`]); then they go back to their pool.
//! Pools are only created while unreleased sets fill the existing ones, so a
//! caller that releases as it goes never grows nyxq's memory, however many
//! dispatches it records.

use super::error::vk_err;
use crate::error::{Error, ErrorKind, Result};
use ash::vk;
use parking_lot::Mutex;
use std::collections::VecDeque;

/// Names the dispatches of one recording call, for [`Recorder::release`].
pub type Ticket = u64;

/// Descriptor sets per pool; every set has at most [`BINDINGS_PER_SET`] storage buffers.
const SETS_PER_POOL: u32 = 256;
/// Storage-buffer bindings of the largest set layout nyxq records with.
pub const BINDINGS_PER_SET: u32 = 4;
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
    last_ticket: Ticket,
}

struct Pool {
    pool: vk::DescriptorPool,
    used: u32,
}

/// How many pools and unreleased sets a recorder holds (for tests and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecorderUsage {
    pub pools: usize,
    pub unreleased_sets: usize,
    pub last_ticket: Ticket,
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

    /// Frees the sets of `ticket` and of every earlier ticket. The caller
    /// promises that no pending command buffer uses them.
    pub fn release(&self, device: &ash::Device, ticket: Ticket) -> Result<()> {
        let mut state = self.state.lock();
        if ticket > state.last_ticket {
            return Err(Error::invalid(format!(
                "ticket {ticket} was never issued (the last one is {})",
                state.last_ticket
            )));
        }
        while state.in_use.front().is_some_and(|(t, _, _)| *t <= ticket) {
            let (_, index, set) = state.in_use.pop_front().expect("front exists");
            let pool = &mut state.pools[index];
            // SAFETY: the set came from this pool (created with FREE_DESCRIPTOR_SET)
            // and, per the caller's promise, no pending work uses it.
            unsafe { device.free_descriptor_sets(pool.pool, &[set]) }
                .map_err(|e| vk_err("vkFreeDescriptorSets", e))?;
            pool.used -= 1;
        }
        state.bound.retain(|(t, _)| *t > ticket);
        Ok(())
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
        RecorderUsage {
            pools: state.pools.len(),
            unreleased_sets: state.in_use.len(),
            last_ticket: state.last_ticket,
        }
    }

    /// Destroys every pool (and so every set).
    ///
    /// # Safety
    /// No pending work uses a set of this recorder.
    pub unsafe fn destroy(&mut self, device: &ash::Device) {
        let state = self.state.get_mut();
        for pool in state.pools.drain(..) {
            // SAFETY: per this function's contract; each pool is destroyed once.
            unsafe { device.destroy_descriptor_pool(pool.pool, None) };
        }
        state.in_use.clear();
        state.bound.clear();
    }
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
