//! Submission to the device's compute queue: nyxq's own command buffer,
//! recorded, submitted and waited on under one lock, optionally between two
//! GPU timestamps; and buffer copies.

use super::device::Device;
use super::error::vk_err;
use crate::error::Result;
use ash::vk;
use parking_lot::Mutex;
use std::sync::Arc;

/// nyxq's command buffer and fence on the device's queue. Submissions are
/// serialised by its lock and each is waited on before the next begins.
pub struct Queue {
    device: Arc<Device>,
    state: Mutex<Submitter>,
}

struct Submitter {
    pool: vk::CommandPool,
    cmd: vk::CommandBuffer,
    fence: vk::Fence,
}

impl Queue {
    /// A command pool, its one command buffer and a fence.
    pub fn new(device: &Arc<Device>) -> Result<Queue> {
        let d = &device.device;
        // SAFETY: a live device; the queue family is the device's compute family.
        let pool = unsafe {
            d.create_command_pool(
                &vk::CommandPoolCreateInfo::default()
                    .queue_family_index(device.queue_family)
                    .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER),
                None,
            )
        }
        .map_err(|e| vk_err("vkCreateCommandPool", e))?;
        // From here on, Drop destroys what was made (the null fence too).
        let mut queue = Queue {
            device: device.clone(),
            state: Mutex::new(Submitter {
                pool,
                cmd: vk::CommandBuffer::null(),
                fence: vk::Fence::null(),
            }),
        };
        let state = queue.state.get_mut();
        // SAFETY: the pool was just created from this device.
        state.cmd = unsafe {
            d.allocate_command_buffers(
                &vk::CommandBufferAllocateInfo::default()
                    .command_pool(pool)
                    .level(vk::CommandBufferLevel::PRIMARY)
                    .command_buffer_count(1),
            )
        }
        .map_err(|e| vk_err("vkAllocateCommandBuffers", e))?[0];
        // SAFETY: a live device.
        state.fence = unsafe { d.create_fence(&vk::FenceCreateInfo::default(), None) }
            .map_err(|e| vk_err("vkCreateFence", e))?;
        Ok(queue)
    }

    /// Records with `record` into the command buffer, submits it and waits
    /// (serialised with every other submission). With `timed`, returns the
    /// GPU seconds between timestamps around what was recorded.
    pub fn submit(
        &self,
        timed: bool,
        record: impl FnOnce(vk::CommandBuffer) -> Result<()>,
    ) -> Result<Option<f64>> {
        if !timed {
            let sub = self.state.lock();
            return self.execute(&sub, None, record).map(|()| None);
        }
        gpu_seconds(&self.device, |pool| {
            let sub = self.state.lock();
            self.execute(&sub, Some(pool), record)
        })
        .map(Some)
    }

    /// Copies `size` bytes from (buffer, offset) `src` to `dst` and waits;
    /// the copy is visible to the host and to later GPU work.
    pub fn copy_region(
        &self,
        src: (vk::Buffer, u64),
        dst: (vk::Buffer, u64),
        size: u64,
    ) -> Result<()> {
        let d = &self.device.device;
        let region = vk::BufferCopy::default()
            .src_offset(src.1)
            .dst_offset(dst.1)
            .size(size);
        let barrier = vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
            .dst_access_mask(
                vk::AccessFlags::HOST_READ
                    | vk::AccessFlags::SHADER_READ
                    | vk::AccessFlags::SHADER_WRITE,
            );
        self.submit(false, |cmd| {
            // SAFETY: recording; the buffers are live and hold the ranges
            // (the caller's contract).
            unsafe {
                d.cmd_copy_buffer(cmd, src.0, dst.0, &[region]);
                d.cmd_pipeline_barrier(
                    cmd,
                    vk::PipelineStageFlags::TRANSFER,
                    vk::PipelineStageFlags::HOST | vk::PipelineStageFlags::COMPUTE_SHADER,
                    vk::DependencyFlags::empty(),
                    &[barrier],
                    &[],
                    &[],
                )
            };
            Ok(())
        })
        .map(|_| ())
    }

    /// Begins the command buffer, lets `record` fill it (between two
    /// timestamps when `timestamps` is given), submits it and waits. A lost
    /// device is refused up front, and a loss met here is remembered.
    fn execute(
        &self,
        sub: &Submitter,
        timestamps: Option<vk::QueryPool>,
        record: impl FnOnce(vk::CommandBuffer) -> Result<()>,
    ) -> Result<()> {
        self.device.check_lost()?;
        self.device
            .note_loss(record_submit_wait(&self.device, sub, timestamps, record))
    }
}

/// Runs `submit` with a 2-query timestamp pool and returns the seconds
/// between its two timestamps.
fn gpu_seconds(device: &Device, submit: impl FnOnce(vk::QueryPool) -> Result<()>) -> Result<f64> {
    let d = &device.device;
    // SAFETY: a live device.
    let pool = unsafe {
        d.create_query_pool(
            &vk::QueryPoolCreateInfo::default()
                .query_type(vk::QueryType::TIMESTAMP)
                .query_count(2),
            None,
        )
    }
    .map_err(|e| vk_err("vkCreateQueryPool", e))?;
    let result = submit(pool);
    let mut stamps = [0u64; 2];
    // SAFETY: both queries were written by the finished submission.
    let got = unsafe {
        d.get_query_pool_results(
            pool,
            0,
            &mut stamps,
            vk::QueryResultFlags::TYPE_64 | vk::QueryResultFlags::WAIT,
        )
    };
    // SAFETY: the submission finished; the pool is unused now.
    unsafe { d.destroy_query_pool(pool, None) };
    result?;
    got.map_err(|e| vk_err("vkGetQueryPoolResults", e))?;
    // SAFETY: physical device of this instance.
    let period = unsafe {
        device
            .instance
            .instance
            .get_physical_device_properties(device.physical)
    }
    .limits
    .timestamp_period;
    Ok(stamps[1].wrapping_sub(stamps[0]) as f64 * f64::from(period) * 1e-9)
}

/// Begins `sub`'s command buffer, lets `record` fill it (between two
/// timestamps when `timestamps` is given), submits it and waits; the
/// caller holds the queue's lock.
fn record_submit_wait(
    device: &Device,
    sub: &Submitter,
    timestamps: Option<vk::QueryPool>,
    record: impl FnOnce(vk::CommandBuffer) -> Result<()>,
) -> Result<()> {
    let d = &device.device;
    // SAFETY: cmd is not pending (every submission is waited on under the
    // lock the caller holds); begin/record/end on one thread.
    unsafe {
        d.begin_command_buffer(
            sub.cmd,
            &vk::CommandBufferBeginInfo::default()
                .flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT),
        )
    }
    .map_err(|e| vk_err("vkBeginCommandBuffer", e))?;
    if let Some(pool) = timestamps {
        // SAFETY: recording; the pool has 2 queries.
        unsafe {
            d.cmd_reset_query_pool(sub.cmd, pool, 0, 2);
            d.cmd_write_timestamp(sub.cmd, vk::PipelineStageFlags::TOP_OF_PIPE, pool, 0);
        }
    }
    if let Err(e) = record(sub.cmd) {
        // SAFETY: recording began above. Ended unsubmitted, the buffer is
        // executable, which the next begin resets (a buffer left recording
        // could not be begun again).
        let _ = unsafe { d.end_command_buffer(sub.cmd) };
        return Err(e);
    }
    if let Some(pool) = timestamps {
        // SAFETY: recording.
        unsafe { d.cmd_write_timestamp(sub.cmd, vk::PipelineStageFlags::BOTTOM_OF_PIPE, pool, 1) };
    }
    // SAFETY: recording began above.
    unsafe { d.end_command_buffer(sub.cmd) }.map_err(|e| vk_err("vkEndCommandBuffer", e))?;
    let cmds = [sub.cmd];
    let submit = vk::SubmitInfo::default().command_buffers(&cmds);
    if let Some(fault) = device.submission_fault() {
        return Err(vk_err("vkQueueSubmit (fault injection)", fault));
    }
    // SAFETY: the queue belongs to this device; access is serialised by the lock.
    unsafe {
        d.queue_submit(device.queue, &[submit], sub.fence)
            .map_err(|e| vk_err("vkQueueSubmit", e))?;
        d.wait_for_fences(&[sub.fence], true, u64::MAX)
            .map_err(|e| vk_err("vkWaitForFences", e))?;
        d.reset_fences(&[sub.fence])
            .map_err(|e| vk_err("vkResetFences", e))?;
    }
    Ok(())
}

impl Drop for Queue {
    fn drop(&mut self) {
        let d = &self.device.device;
        let sub = self.state.get_mut();
        // SAFETY: every submission was waited on before `submit` returned, so
        // the fence and the command buffer are unused; destroying the pool
        // frees its command buffer. Null handles (a failed `new`) are accepted.
        unsafe {
            d.destroy_fence(sub.fence, None);
            d.destroy_command_pool(sub.pool, None);
        }
    }
}
