//! A command pool, command buffer and fence of the test's own on nyxq's
//! device, as a trainer's would be: the recording tests record nyxq's
//! kernels into it, submit and wait.

use ash::vk;
use nyxq::vk::Engine;

/// The test's own command pool, command buffer and fence on nyxq's device.
pub struct Commands<'a> {
    pub engine: &'a Engine,
    pool: vk::CommandPool,
    pub cmd: vk::CommandBuffer,
    fence: vk::Fence,
}

impl<'a> Commands<'a> {
    pub fn new(engine: &'a Engine) -> Self {
        let d = &engine.device.device;
        // SAFETY: a live device; its compute queue family.
        let pool = unsafe {
            d.create_command_pool(
                &vk::CommandPoolCreateInfo::default()
                    .queue_family_index(engine.device.queue_family)
                    .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER),
                None,
            )
        }
        .unwrap();
        // SAFETY: the pool was just made.
        let cmd = unsafe {
            d.allocate_command_buffers(
                &vk::CommandBufferAllocateInfo::default()
                    .command_pool(pool)
                    .command_buffer_count(1),
            )
        }
        .unwrap()[0];
        // SAFETY: a live device.
        let fence = unsafe { d.create_fence(&vk::FenceCreateInfo::default(), None) }.unwrap();
        Commands {
            engine,
            pool,
            cmd,
            fence,
        }
    }

    pub fn begin(&self) {
        // SAFETY: the command buffer is idle (every submit is waited on).
        unsafe {
            self.engine
                .device
                .device
                .begin_command_buffer(self.cmd, &vk::CommandBufferBeginInfo::default())
        }
        .unwrap();
    }

    /// A barrier from compute writes to compute reads and writes (what a
    /// trainer records between two steps of one optimizer).
    pub fn compute_barrier(&self) {
        let barrier = vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::SHADER_WRITE)
            .dst_access_mask(vk::AccessFlags::SHADER_READ | vk::AccessFlags::SHADER_WRITE);
        // SAFETY: recording.
        unsafe {
            self.engine.device.device.cmd_pipeline_barrier(
                self.cmd,
                vk::PipelineStageFlags::COMPUTE_SHADER,
                vk::PipelineStageFlags::COMPUTE_SHADER,
                vk::DependencyFlags::empty(),
                &[barrier],
                &[],
                &[],
            )
        };
    }

    /// Ends, submits with a barrier to host reads, waits.
    pub fn submit_and_wait(&self) {
        let d = &self.engine.device.device;
        let barrier = vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::SHADER_WRITE)
            .dst_access_mask(vk::AccessFlags::HOST_READ);
        // SAFETY: recording; the queue is nyxq's, used by no nyxq call meanwhile.
        unsafe {
            d.cmd_pipeline_barrier(
                self.cmd,
                vk::PipelineStageFlags::COMPUTE_SHADER,
                vk::PipelineStageFlags::HOST,
                vk::DependencyFlags::empty(),
                &[barrier],
                &[],
                &[],
            );
            d.end_command_buffer(self.cmd).unwrap();
            let cmds = [self.cmd];
            d.queue_submit(
                self.engine.device.queue,
                &[vk::SubmitInfo::default().command_buffers(&cmds)],
                self.fence,
            )
            .unwrap();
            d.wait_for_fences(&[self.fence], true, u64::MAX).unwrap();
            d.reset_fences(&[self.fence]).unwrap();
        }
    }

    /// [`Commands::submit_and_wait`], then releases the recordings up to `ticket`.
    pub fn submit_wait_and_release(&self, ticket: u64) {
        self.submit_and_wait();
        let d = &self.engine.device.device;
        self.engine.recorder().release(d, ticket).unwrap();
    }
}

impl Drop for Commands<'_> {
    fn drop(&mut self) {
        let d = &self.engine.device.device;
        // SAFETY: all work was waited on; our own objects.
        unsafe {
            d.destroy_fence(self.fence, None);
            d.destroy_command_pool(self.pool, None);
        }
    }
}
