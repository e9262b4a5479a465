//! The job graph of submit-and-wait work: dispatches of element-sized
//! (Convert family) kernels recorded into nyxq's own command buffer, with a
//! barrier before a job only where it depends on an earlier one, so that
//! independent jobs (the chunks of one tensor) overlap on the device.

use super::device::Device;
use super::dispatch::{self, Binding, Dispatch, compute_barrier, element_groups};
use super::error::vk_err;
use super::family::{ConvertPush, Family};
use super::pipelines::Pipelines;
use super::shaders::KernelId;
use super::submit::Queue;
use crate::error::{Error, Result};
use ash::vk;
use parking_lot::Mutex;
use std::sync::Arc;

/// Most descriptor sets one submission uses (one per job).
const SETS_PER_SUBMIT: u32 = 64;

/// One dispatch of an element-sized kernel for [`Jobs::submit`].
#[derive(Debug, Clone, Copy)]
pub struct Job {
    pub kernel: KernelId,
    pub src: Binding,
    pub dst: Binding,
    pub push: ConvertPush,
}

impl Job {
    /// Whether this job must wait for `earlier` (recorded before it): it
    /// reads or writes bytes `earlier` writes, or writes bytes `earlier`
    /// reads. Independent jobs (the chunks of one tensor) get no barrier
    /// between them, as in the recorder, so their dispatches overlap.
    fn depends_on(&self, earlier: &Job) -> bool {
        overlap(self.src, earlier.dst)
            || overlap(self.dst, earlier.dst)
            || overlap(self.dst, earlier.src)
    }
}

/// Whether two (buffer, offset, size) ranges share a byte.
fn overlap(a: Binding, b: Binding) -> bool {
    a.0 == b.0 && a.1 < b.1.saturating_add(b.2) && b.1 < a.1.saturating_add(a.2)
}

/// The descriptor pool of submitted jobs, reset before each submission.
pub struct Jobs {
    device: Arc<Device>,
    sets: Mutex<vk::DescriptorPool>,
}

impl Jobs {
    /// A pool of [`SETS_PER_SUBMIT`] Convert-family sets.
    pub fn new(device: &Arc<Device>) -> Result<Jobs> {
        let sizes = [vk::DescriptorPoolSize::default()
            .ty(vk::DescriptorType::STORAGE_BUFFER)
            .descriptor_count(Family::Convert.bindings() * SETS_PER_SUBMIT)];
        // SAFETY: a live device; the info lives across the call.
        let pool = unsafe {
            device.device.create_descriptor_pool(
                &vk::DescriptorPoolCreateInfo::default()
                    .max_sets(SETS_PER_SUBMIT)
                    .pool_sizes(&sizes),
                None,
            )
        }
        .map_err(|e| vk_err("vkCreateDescriptorPool", e))?;
        Ok(Jobs {
            device: device.clone(),
            sets: Mutex::new(pool),
        })
    }

    /// Records `jobs` in submissions of at most [`SETS_PER_SUBMIT`], each
    /// submitted and waited on. With `timed` (at most that many jobs),
    /// returns the GPU seconds of the one submission.
    pub fn submit(
        &self,
        queue: &Queue,
        pipelines: &Pipelines,
        jobs: &[Job],
        timed: bool,
    ) -> Result<Option<f64>> {
        if timed && jobs.len() > SETS_PER_SUBMIT as usize {
            return Err(Error::invalid("too many jobs to time in one submission"));
        }
        let pool = self.sets.lock();
        let d = &self.device.device;
        let mut seconds = None;
        for batch in jobs.chunks(SETS_PER_SUBMIT as usize) {
            // SAFETY: the previous submission finished (it was waited on), and
            // the lock keeps other submissions from the pool.
            unsafe { d.reset_descriptor_pool(*pool, vk::DescriptorPoolResetFlags::empty()) }
                .map_err(|e| vk_err("vkResetDescriptorPool", e))?;
            let layouts = vec![pipelines.set_layout(Family::Convert); batch.len()];
            // SAFETY: the pool and layout are live; the pool has room for a batch.
            let sets = unsafe {
                d.allocate_descriptor_sets(
                    &vk::DescriptorSetAllocateInfo::default()
                        .descriptor_pool(*pool)
                        .set_layouts(&layouts),
                )
            }
            .map_err(|e| vk_err("vkAllocateDescriptorSets", e))?;
            seconds = queue.submit(timed, |cmd| {
                // SAFETY: cmd is recording; the jobs' buffers are live for this
                // call (the caller's contract) and the sets are fresh.
                unsafe { self.record(pipelines, cmd, batch, &sets) }
            })?;
        }
        Ok(seconds)
    }

    /// Records `batch`, a barrier before each job that depends on one since
    /// the last barrier, and a barrier at the end that makes the writes
    /// visible to the host too.
    ///
    /// # Safety
    /// `cmd` is recording; the buffers are live and hold the ranges; `sets`
    /// (one per job) are unused.
    unsafe fn record(
        &self,
        pipelines: &Pipelines,
        cmd: vk::CommandBuffer,
        batch: &[Job],
        sets: &[vk::DescriptorSet],
    ) -> Result<()> {
        let d = &self.device.device;
        let mut since_barrier = 0;
        for (i, (job, &set)) in batch.iter().zip(sets).enumerate() {
            if batch[since_barrier..i]
                .iter()
                .any(|earlier| job.depends_on(earlier))
            {
                // SAFETY: recording.
                unsafe { compute_barrier(d, cmd) };
                since_barrier = i;
            }
            let dispatch = Dispatch {
                kernel: job.kernel,
                specialization: &[],
                set,
                bindings: &[job.src, job.dst],
                push: job.push,
                groups: element_groups(job.kernel, job.push.n_elements)?,
            };
            // SAFETY: per this function's contract.
            unsafe { dispatch::record(&self.device, pipelines, cmd, &dispatch) }?;
        }
        // SAFETY: recording.
        unsafe { compute_barrier(d, cmd) };
        Ok(())
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        // SAFETY: every submission was waited on, so no set of the pool is
        // in use; the pool was made from this device.
        unsafe {
            self.device
                .device
                .destroy_descriptor_pool(*self.sets.get_mut(), None)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ash::vk::Handle;

    fn job(src: (u64, u64, u64), dst: (u64, u64, u64)) -> Job {
        let range = |(b, o, s): (u64, u64, u64)| (vk::Buffer::from_raw(b), o, s);
        Job {
            kernel: KernelId::COPY_F32_F32,
            src: range(src),
            dst: range(dst),
            push: ConvertPush::default(),
        }
    }

    #[test]
    fn chunks_of_one_tensor_are_independent() {
        // Consecutive chunks: disjoint input and output ranges.
        let first = job((1, 0, 64), (2, 0, 256));
        let second = job((1, 64, 64), (2, 256, 256));
        assert!(!second.depends_on(&first));
        // Two jobs reading the same input are independent too.
        assert!(!job((1, 0, 64), (3, 0, 4)).depends_on(&first));
    }

    #[test]
    fn a_job_waits_for_what_it_reads_overwrites_or_clobbers() {
        let first = job((1, 0, 64), (2, 0, 256));
        // Reads the earlier output (its last byte).
        assert!(job((2, 255, 4), (3, 0, 4)).depends_on(&first));
        // Writes over the earlier output.
        assert!(job((4, 0, 4), (2, 100, 4)).depends_on(&first));
        // Writes over the earlier input.
        assert!(job((4, 0, 4), (1, 60, 8)).depends_on(&first));
        // Adjacent ranges share no byte.
        assert!(!job((2, 256, 4), (1, 64, 4)).depends_on(&first));
    }
}
