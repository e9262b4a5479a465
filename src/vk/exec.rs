//! Pipelines, buffers and submit-and-wait dispatch on a [`Device`].

use super::device::Device;
use super::ops::Op;
use super::shaders::{self, Push};
use crate::error::{Error, ErrorKind, Result};
use crate::format::Format;
use ash::vk;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// A Vulkan failure as a nyxq error (out-of-memory and device-lost keep their kinds).
pub(crate) fn vk_err(what: &str, e: vk::Result) -> Error {
    let kind = match e {
        vk::Result::ERROR_OUT_OF_DEVICE_MEMORY => ErrorKind::OutOfDeviceMemory,
        vk::Result::ERROR_OUT_OF_HOST_MEMORY => ErrorKind::OutOfMemory,
        vk::Result::ERROR_DEVICE_LOST => ErrorKind::DeviceLost,
        _ => ErrorKind::Vulkan,
    };
    Error::new(kind, format!("{what}: {e}"))
}

/// A descriptor set layout of `bindings` storage buffers (bindings 0..n) and
/// a pipeline layout of it with `push_size` bytes of push constants.
pub(crate) fn create_layouts(
    d: &ash::Device,
    bindings: u32,
    push_size: u32,
) -> Result<(vk::DescriptorSetLayout, vk::PipelineLayout)> {
    let bindings: Vec<_> = (0..bindings)
        .map(|b| {
            vk::DescriptorSetLayoutBinding::default()
                .binding(b)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::COMPUTE)
        })
        .collect();
    // SAFETY: a live device; the create info lives across the call.
    let set_layout = unsafe {
        d.create_descriptor_set_layout(
            &vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings),
            None,
        )
    }
    .map_err(|e| vk_err("vkCreateDescriptorSetLayout", e))?;
    let ranges = [vk::PushConstantRange::default()
        .stage_flags(vk::ShaderStageFlags::COMPUTE)
        .size(push_size)];
    let layouts = [set_layout];
    // SAFETY: as above.
    let layout = unsafe {
        d.create_pipeline_layout(
            &vk::PipelineLayoutCreateInfo::default()
                .set_layouts(&layouts)
                .push_constant_ranges(&ranges),
            None,
        )
    };
    match layout {
        Ok(layout) => Ok((set_layout, layout)),
        Err(e) => {
            // SAFETY: made above, used by nothing.
            unsafe { d.destroy_descriptor_set_layout(set_layout, None) };
            Err(vk_err("vkCreatePipelineLayout", e))
        }
    }
}

/// The compute pipeline of the SPIR-V `spv` (variant `name`) with `layout`;
/// `specialization[i]` is the u32 value of constant_id i.
pub(crate) fn create_pipeline(
    device: &Device,
    layout: vk::PipelineLayout,
    name: &str,
    spv: &[u8],
    specialization: &[u32],
) -> Result<vk::Pipeline> {
    let d = &device.device;
    let words = ash::util::read_spv(&mut std::io::Cursor::new(spv))
        .map_err(|e| Error::new(ErrorKind::Internal, format!("bad SPIR-V {name}: {e}")))?;
    // SAFETY: words is valid SPIR-V made by glslc at build time.
    let module = unsafe {
        d.create_shader_module(&vk::ShaderModuleCreateInfo::default().code(&words), None)
    }
    .map_err(|e| vk_err("vkCreateShaderModule", e))?;
    let entries: Vec<_> = (0..specialization.len() as u32)
        .map(|i| {
            vk::SpecializationMapEntry::default()
                .constant_id(i)
                .offset(4 * i)
                .size(4)
        })
        .collect();
    let data: Vec<u8> = specialization
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let spec = vk::SpecializationInfo::default()
        .map_entries(&entries)
        .data(&data);
    let stage = vk::PipelineShaderStageCreateInfo::default()
        .stage(vk::ShaderStageFlags::COMPUTE)
        .module(module)
        .name(c"main")
        .specialization_info(&spec);
    let flags = if device.pipeline_statistics {
        vk::PipelineCreateFlags::CAPTURE_STATISTICS_KHR
    } else {
        vk::PipelineCreateFlags::empty()
    };
    let info = vk::ComputePipelineCreateInfo::default()
        .flags(flags)
        .stage(stage)
        .layout(layout);
    // SAFETY: module and layout are live; the info lives across the call.
    let result = unsafe { d.create_compute_pipelines(vk::PipelineCache::null(), &[info], None) };
    // SAFETY: the module is no longer needed once the pipeline exists.
    unsafe { d.destroy_shader_module(module, None) };
    Ok(result.map_err(|(_, e)| vk_err("vkCreateComputePipelines", e))?[0])
}

/// One dispatch to record: pipeline, layout, a fresh set whose bindings
/// 0.. are `ranges` (buffer, offset, range), push-constant bytes and a count
/// of workgroups (laid out as a 2-D grid within the device's limits).
pub(crate) struct Dispatch<'a> {
    pub pipeline: vk::Pipeline,
    pub layout: vk::PipelineLayout,
    pub set: vk::DescriptorSet,
    pub ranges: &'a [(vk::Buffer, u64, u64)],
    pub push: &'a [u8],
    pub groups: u32,
}

/// Writes the set of `dispatch` and records bind, push constants and
/// dispatch into `cmd`.
///
/// # Safety
/// `cmd` is recording; the buffers are live and the ranges lie inside them;
/// the set is not used by pending work.
pub(crate) unsafe fn record_dispatch(device: &Device, cmd: vk::CommandBuffer, dispatch: &Dispatch) {
    let d = &device.device;
    let infos: Vec<[vk::DescriptorBufferInfo; 1]> = dispatch
        .ranges
        .iter()
        .map(|&(b, o, r)| {
            [vk::DescriptorBufferInfo::default()
                .buffer(b)
                .offset(o)
                .range(r)]
        })
        .collect();
    let writes: Vec<_> = infos
        .iter()
        .enumerate()
        .map(|(i, info)| {
            vk::WriteDescriptorSet::default()
                .dst_set(dispatch.set)
                .dst_binding(i as u32)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .buffer_info(info)
        })
        .collect();
    let groups = dispatch.groups.max(1);
    let max_x = device.info.max_workgroup_count[0].min(65535);
    let gx = groups.min(max_x);
    let gy = groups.div_ceil(gx);
    // SAFETY: per this function's contract.
    unsafe {
        d.update_descriptor_sets(&writes, &[]);
        d.cmd_bind_pipeline(cmd, vk::PipelineBindPoint::COMPUTE, dispatch.pipeline);
        d.cmd_bind_descriptor_sets(
            cmd,
            vk::PipelineBindPoint::COMPUTE,
            dispatch.layout,
            0,
            &[dispatch.set],
            &[],
        );
        d.cmd_push_constants(
            cmd,
            dispatch.layout,
            vk::ShaderStageFlags::COMPUTE,
            0,
            dispatch.push,
        );
        d.cmd_dispatch(cmd, gx, gy, 1);
    }
}

/// Records a barrier from compute-shader writes to later compute-shader
/// reads and writes and to host reads.
///
/// # Safety
/// `cmd` is recording.
pub(crate) unsafe fn compute_barrier(d: &ash::Device, cmd: vk::CommandBuffer) {
    let barrier = vk::MemoryBarrier::default()
        .src_access_mask(vk::AccessFlags::SHADER_WRITE)
        .dst_access_mask(
            vk::AccessFlags::SHADER_READ
                | vk::AccessFlags::SHADER_WRITE
                | vk::AccessFlags::HOST_READ,
        );
    // SAFETY: per this function's contract.
    unsafe {
        d.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::COMPUTE_SHADER,
            vk::PipelineStageFlags::COMPUTE_SHADER | vk::PipelineStageFlags::HOST,
            vk::DependencyFlags::empty(),
            &[barrier],
            &[],
            &[],
        )
    };
}

/// Pipelines (made on first use), their layout, and the submission state of
/// one device. Submissions are serialised by `queue_lock`.
pub struct Engine {
    pub device: Arc<Device>,
    set_layout: vk::DescriptorSetLayout,
    pub layout: vk::PipelineLayout,
    pipelines: Mutex<HashMap<&'static str, vk::Pipeline>>,
    /// Test only: the kernel whose output is deliberately corrupted.
    perturb: Option<String>,
    queue_lock: Mutex<Submitter>,
    /// Descriptor sets of dispatches recorded into callers' command buffers.
    recorder: super::record::Recorder,
    /// The matrix-vector pipelines and their layouts, made on first use.
    matvec: Mutex<Option<Arc<super::matvec::Pipelines>>>,
    /// The variant in use per kernel where it is not the compatible one
    /// (set by the self-test, which tests a variant before it is chosen).
    chosen: Mutex<HashMap<(Op, Format), &'static str>>,
}

struct Submitter {
    pool: vk::CommandPool,
    cmd: vk::CommandBuffer,
    fence: vk::Fence,
    descriptors: vk::DescriptorPool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// Most descriptor sets one submission uses (one per chunk).
const SETS_PER_SUBMIT: u32 = 64;

impl Engine {
    pub fn new(device: Arc<Device>, perturb: Option<String>) -> Result<Engine> {
        let d = &device.device;
        let (set_layout, layout) = create_layouts(d, 2, size_of::<Push>() as u32)?;
        // SAFETY: as above; the queue family is the device's compute family.
        let pool = unsafe {
            d.create_command_pool(
                &vk::CommandPoolCreateInfo::default()
                    .queue_family_index(device.queue_family)
                    .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER),
                None,
            )
        }
        .map_err(|e| vk_err("vkCreateCommandPool", e))?;
        // SAFETY: pool was just created from this device.
        let cmd = unsafe {
            d.allocate_command_buffers(
                &vk::CommandBufferAllocateInfo::default()
                    .command_pool(pool)
                    .level(vk::CommandBufferLevel::PRIMARY)
                    .command_buffer_count(1),
            )
        }
        .map_err(|e| vk_err("vkAllocateCommandBuffers", e))?[0];
        // SAFETY: a live device.
        let fence = unsafe { d.create_fence(&vk::FenceCreateInfo::default(), None) }
            .map_err(|e| vk_err("vkCreateFence", e))?;
        let sizes = [vk::DescriptorPoolSize::default()
            .ty(vk::DescriptorType::STORAGE_BUFFER)
            .descriptor_count(2 * SETS_PER_SUBMIT)];
        // SAFETY: a live device.
        let descriptors = unsafe {
            d.create_descriptor_pool(
                &vk::DescriptorPoolCreateInfo::default()
                    .max_sets(SETS_PER_SUBMIT)
                    .pool_sizes(&sizes),
                None,
            )
        }
        .map_err(|e| vk_err("vkCreateDescriptorPool", e))?;
        Ok(Engine {
            device,
            set_layout,
            layout,
            pipelines: Mutex::new(HashMap::new()),
            perturb,
            queue_lock: Mutex::new(Submitter {
                pool,
                cmd,
                fence,
                descriptors,
            }),
            recorder: super::record::Recorder::new(),
            matvec: Mutex::new(None),
            chosen: Mutex::new(HashMap::new()),
        })
    }

    /// The shader variant in use for `op` on `format`: the compatible one
    /// until the self-test has passed another.
    pub fn kernel(&self, op: Op, format: Format) -> &'static str {
        self.chosen
            .lock()
            .get(&(op, format))
            .copied()
            .unwrap_or_else(|| super::ops::kernel_name(op, format))
    }

    /// Uses the variant `name` for `op` on `format` from now on.
    pub(crate) fn choose_kernel(&self, op: Op, format: Format, name: &'static str) {
        self.chosen.lock().insert((op, format), name);
    }

    /// Whether the variant `name` can run here: the features behind the
    /// capabilities its SPIR-V declares are enabled on the device (16-bit
    /// storage; f16 arithmetic) or reported by it (round-to-nearest-even and
    /// subnormal preservation declarable for f16, the only width nyxq
    /// declares them for).
    pub fn variant_supported(&self, name: &str) -> bool {
        let caps = shaders::capabilities(name);
        let info = &self.device.info;
        [
            (shaders::CAPABILITY_STORAGE_16BIT, self.device.enabled_16bit),
            (shaders::CAPABILITY_FLOAT16, self.device.enabled_float16),
            (shaders::CAPABILITY_ROUNDING_RTE, info.rounding_rte_f16),
            (
                shaders::CAPABILITY_DENORM_PRESERVE,
                info.denorm_preserve_f16,
            ),
        ]
        .iter()
        .all(|&(cap, have)| have || !caps.contains(&cap))
    }

    /// The set layout every quantize/dequantize kernel binds (src, dst).
    pub fn set_layout(&self) -> vk::DescriptorSetLayout {
        self.set_layout
    }

    /// The descriptor sets of dispatches recorded into callers' command buffers.
    pub fn recorder(&self) -> &super::record::Recorder {
        &self.recorder
    }

    /// The matrix-vector pipelines (their own layouts), made on first use.
    pub fn matvec_pipelines(&self) -> Result<Arc<super::matvec::Pipelines>> {
        let mut slot = self.matvec.lock();
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let made = Arc::new(super::matvec::Pipelines::new(&self.device)?);
        *slot = Some(made.clone());
        Ok(made)
    }

    /// The pipeline of variant `name`, created on first use.
    pub fn pipeline(&self, name: &str) -> Result<vk::Pipeline> {
        self.pipeline_of(known_variant(name)?)
    }

    fn pipeline_of(&self, variant: &'static shaders::Variant) -> Result<vk::Pipeline> {
        let mut map = self.pipelines.lock();
        if let Some(p) = map.get(variant.name) {
            return Ok(*p);
        }
        let pipeline =
            create_pipeline(&self.device, self.layout, variant.name, variant.spirv, &[])?;
        map.insert(variant.name, pipeline);
        Ok(pipeline)
    }

    /// The driver's compile statistics of the variant `name` (register
    /// count, binary size and the like, as (name, value) pairs), where the
    /// device was made with NYXQ_VK_PIPELINE_STATS=1 and supports
    /// VK_KHR_pipeline_executable_properties; None otherwise.
    pub fn pipeline_statistics(&self, name: &str) -> Option<Vec<(String, String)>> {
        if !self.device.pipeline_statistics {
            return None;
        }
        let pipeline = self.pipeline(name).ok()?;
        super::device::pipeline_statistics(&self.device, pipeline)
    }

    /// Records one dispatch of `name` over `n_elements`, reading `src` and
    /// writing `dst` (buffer, offset, range), into `cmd` with `set`.
    ///
    /// # Safety
    /// `cmd` is recording; the buffers are live and the ranges lie inside them.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn record(
        &self,
        cmd: vk::CommandBuffer,
        set: vk::DescriptorSet,
        name: &str,
        src: (vk::Buffer, u64, u64),
        dst: (vk::Buffer, u64, u64),
        push: &Push,
    ) -> Result<()> {
        let (variant, grid) = sized_variant(name)?;
        let pipeline = self.pipeline_of(variant)?;
        let mut push = *push;
        if self.perturb.as_deref() == Some(name) {
            push.perturb = 1;
        }
        let invocations = push.n_elements.div_ceil(grid.per_invocation);
        let groups = invocations.div_ceil(grid.local_size).max(1);
        let dispatch = Dispatch {
            pipeline,
            layout: self.layout,
            set,
            ranges: &[src, dst],
            push: &push.bytes(),
            groups,
        };
        // SAFETY: per this function's contract; set is unused by pending work.
        unsafe { record_dispatch(&self.device, cmd, &dispatch) };
        Ok(())
    }

    /// Allocates `count` descriptor sets from `pool`.
    fn sets(&self, pool: vk::DescriptorPool, count: u32) -> Result<Vec<vk::DescriptorSet>> {
        let layouts = vec![self.set_layout; count as usize];
        // SAFETY: pool and layout are live; the pool has room (reset before each submit).
        unsafe {
            self.device.device.allocate_descriptor_sets(
                &vk::DescriptorSetAllocateInfo::default()
                    .descriptor_pool(pool)
                    .set_layouts(&layouts),
            )
        }
        .map_err(|e| vk_err("vkAllocateDescriptorSets", e))
    }

    /// Records the dispatches `jobs` (variant, src, dst, push) in one command
    /// buffer, with a barrier before a job only where it depends on an
    /// earlier one (`Job::depends_on`), submits it and waits. Serialised with
    /// every other submission.
    pub fn submit_and_wait(&self, jobs: &[Job]) -> Result<()> {
        self.submit_inner(jobs, None).map(|_| ())
    }

    /// Like submit_and_wait for at most 64 jobs, timed on the GPU with
    /// timestamps around them; returns seconds.
    pub fn timed(&self, jobs: &[Job]) -> Result<f64> {
        self.time_with(|pool| self.submit_inner(jobs, Some(pool)))
    }

    /// Records with `record` into the engine's own command buffer, submits
    /// it and waits (serialised with every other submission). With `timed`,
    /// returns the GPU seconds between timestamps around what was recorded.
    pub fn submit_recorded(
        &self,
        timed: bool,
        record: impl FnOnce(vk::CommandBuffer) -> Result<()>,
    ) -> Result<Option<f64>> {
        if !timed {
            let sub = self.queue_lock.lock();
            return self.execute(&sub, None, record).map(|()| None);
        }
        self.time_with(|pool| {
            let sub = self.queue_lock.lock();
            self.execute(&sub, Some(pool), record)
        })
        .map(Some)
    }

    /// Runs `submit` with a 2-query timestamp pool and returns the seconds
    /// between its two timestamps.
    fn time_with(&self, submit: impl FnOnce(vk::QueryPool) -> Result<()>) -> Result<f64> {
        let d = &self.device.device;
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
            self.device
                .instance
                .instance
                .get_physical_device_properties(self.device.physical)
        }
        .limits
        .timestamp_period;
        Ok(stamps[1].wrapping_sub(stamps[0]) as f64 * f64::from(period) * 1e-9)
    }

    /// Begins the engine's command buffer, lets `record` fill it (between
    /// two timestamps when `timestamps` is given), submits it and waits. A
    /// lost device is refused up front, and a loss met here is remembered.
    fn execute(
        &self,
        sub: &Submitter,
        timestamps: Option<vk::QueryPool>,
        record: impl FnOnce(vk::CommandBuffer) -> Result<()>,
    ) -> Result<()> {
        self.device.check_lost()?;
        self.device
            .note_loss(self.record_submit_wait(sub, timestamps, record))
    }

    fn record_submit_wait(
        &self,
        sub: &Submitter,
        timestamps: Option<vk::QueryPool>,
        record: impl FnOnce(vk::CommandBuffer) -> Result<()>,
    ) -> Result<()> {
        let d = &self.device.device;
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
        record(sub.cmd)?;
        if let Some(pool) = timestamps {
            // SAFETY: recording.
            unsafe {
                d.cmd_write_timestamp(sub.cmd, vk::PipelineStageFlags::BOTTOM_OF_PIPE, pool, 1)
            };
        }
        // SAFETY: recording began above.
        unsafe { d.end_command_buffer(sub.cmd) }.map_err(|e| vk_err("vkEndCommandBuffer", e))?;
        let cmds = [sub.cmd];
        let submit = vk::SubmitInfo::default().command_buffers(&cmds);
        if let Some(fault) = self.device.submission_fault() {
            return Err(vk_err("vkQueueSubmit (fault injection)", fault));
        }
        // SAFETY: the queue belongs to this device; access is serialised by queue_lock.
        unsafe {
            d.queue_submit(self.device.queue, &[submit], sub.fence)
                .map_err(|e| vk_err("vkQueueSubmit", e))?;
            d.wait_for_fences(&[sub.fence], true, u64::MAX)
                .map_err(|e| vk_err("vkWaitForFences", e))?;
            d.reset_fences(&[sub.fence])
                .map_err(|e| vk_err("vkResetFences", e))?;
        }
        Ok(())
    }

    /// Copies `size` bytes between buffers on the queue and waits.
    pub fn copy(&self, src: vk::Buffer, dst: vk::Buffer, size: u64) -> Result<()> {
        self.copy_region((src, 0), (dst, 0), size)
    }

    /// Copies `size` bytes from (buffer, offset) `src` to `dst` on the queue
    /// and waits; the copy is visible to the host and to later GPU work.
    pub fn copy_region(
        &self,
        src: (vk::Buffer, u64),
        dst: (vk::Buffer, u64),
        size: u64,
    ) -> Result<()> {
        let sub = self.queue_lock.lock();
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
        self.execute(&sub, None, |cmd| {
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
    }

    fn submit_inner(&self, jobs: &[Job], timestamps: Option<vk::QueryPool>) -> Result<()> {
        if timestamps.is_some() && jobs.len() > SETS_PER_SUBMIT as usize {
            return Err(Error::invalid("too many jobs to time in one submission"));
        }
        let sub = self.queue_lock.lock();
        let d = &self.device.device;
        for batch in jobs.chunks(SETS_PER_SUBMIT as usize) {
            // SAFETY: the previous submission finished (we waited on its fence).
            unsafe {
                d.reset_descriptor_pool(sub.descriptors, vk::DescriptorPoolResetFlags::empty())
            }
            .map_err(|e| vk_err("vkResetDescriptorPool", e))?;
            let sets = self.sets(sub.descriptors, batch.len() as u32)?;
            self.execute(&sub, timestamps, |cmd| {
                let mut since_barrier = 0;
                for (i, (job, set)) in batch.iter().zip(sets).enumerate() {
                    if batch[since_barrier..i]
                        .iter()
                        .any(|earlier| job.depends_on(earlier))
                    {
                        // SAFETY: recording.
                        unsafe { compute_barrier(d, cmd) };
                        since_barrier = i;
                    }
                    // SAFETY: recording; the job's buffers are live for this call.
                    unsafe { self.record(cmd, set, job.kernel, job.src, job.dst, &job.push) }?;
                }
                // SAFETY: recording. (Makes the writes visible to the host too.)
                unsafe { compute_barrier(d, cmd) };
                Ok(())
            })?;
        }
        Ok(())
    }
}

/// One dispatch for [`Engine::submit_and_wait`].
#[derive(Debug, Clone, Copy)]
pub struct Job {
    pub kernel: &'static str,
    pub src: (vk::Buffer, u64, u64),
    pub dst: (vk::Buffer, u64, u64),
    pub push: Push,
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

/// The variant `name`, or an internal error (nyxq names only variants it built).
fn known_variant(name: &str) -> Result<&'static shaders::Variant> {
    shaders::variant(name)
        .ok_or_else(|| Error::new(ErrorKind::Internal, format!("no shader variant {name}")))
}

/// The variant `name` and its grid, or an internal error for a kernel that
/// is not sized by its element count (the matvec ones).
fn sized_variant(name: &str) -> Result<(&'static shaders::Variant, shaders::Grid)> {
    let variant = known_variant(name)?;
    let grid = variant.grid.ok_or_else(|| {
        Error::new(
            ErrorKind::Internal,
            format!("{name} is not sized by its element count"),
        )
    })?;
    Ok((variant, grid))
}

/// Whether two (buffer, offset, size) ranges share a byte.
fn overlap(a: (vk::Buffer, u64, u64), b: (vk::Buffer, u64, u64)) -> bool {
    a.0 == b.0 && a.1 < b.1.saturating_add(b.2) && b.1 < a.1.saturating_add(a.2)
}

impl Drop for Engine {
    fn drop(&mut self) {
        let d = &self.device.device;
        let sub = self.queue_lock.get_mut();
        // SAFETY: every submission was waited on before submit_and_wait
        // returned, so the objects below are unused (no device-wide wait: on a
        // borrowed device that would need the caller's queues), and the
        // caller's command buffers with recorded nyxq dispatches completed
        // before the context was destroyed (nyxq_context_destroy's contract);
        // each was created from this device and is destroyed once.
        unsafe {
            for (_, p) in self.pipelines.get_mut().drain() {
                d.destroy_pipeline(p, None);
            }
            d.destroy_descriptor_pool(sub.descriptors, None);
            self.recorder.destroy(d);
            d.destroy_fence(sub.fence, None);
            d.destroy_command_pool(sub.pool, None);
            d.destroy_pipeline_layout(self.layout, None);
            d.destroy_descriptor_set_layout(self.set_layout, None);
        }
    }
}

/// A buffer with its own memory (one allocation per buffer, never above
/// 1 GiB or the device's maxMemoryAllocationSize).
pub struct Buffer {
    device: Arc<Device>,
    pub buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    pub size: u64,
    mapped: Option<*mut u8>,
}

// SAFETY: the mapped pointer is only dereferenced through &mut self or by
// callers holding exclusive access to the buffer; Vulkan handles are plain values.
unsafe impl Send for Buffer {}
// SAFETY: as above; shared references never write through `mapped`.
unsafe impl Sync for Buffer {}

/// Largest single allocation nyxq makes.
pub const MAX_ALLOCATION: u64 = 1 << 30;

impl Buffer {
    /// A storage buffer of `size` bytes; `host_visible` asks for mapped memory.
    pub fn new(device: &Arc<Device>, size: u64, host_visible: bool) -> Result<Buffer> {
        let limit = MAX_ALLOCATION.min(device.info.max_allocation_bytes);
        if size > limit {
            return Err(Error::new(
                ErrorKind::OutOfDeviceMemory,
                format!("a buffer of {size} bytes exceeds the allocation limit {limit}"),
            ));
        }
        device.check_lost()?;
        let nth = device
            .allocations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if device
            .fail_allocation
            .load(std::sync::atomic::Ordering::Relaxed)
            == nth
        {
            return Err(Error::new(
                ErrorKind::OutOfDeviceMemory,
                format!("device allocation {nth} of {size} bytes failed (fault injection)"),
            ));
        }
        let d = &device.device;
        let size = size.max(4);
        // SAFETY: a live device; the info lives across the call.
        let buffer = unsafe {
            d.create_buffer(
                &vk::BufferCreateInfo::default()
                    .size(size)
                    .usage(
                        vk::BufferUsageFlags::STORAGE_BUFFER
                            | vk::BufferUsageFlags::TRANSFER_SRC
                            | vk::BufferUsageFlags::TRANSFER_DST,
                    )
                    .sharing_mode(vk::SharingMode::EXCLUSIVE),
                None,
            )
        }
        .map_err(|e| vk_err("vkCreateBuffer", e))?;
        // SAFETY: buffer was just created.
        let req = unsafe { d.get_buffer_memory_requirements(buffer) };
        // SAFETY: physical device of this instance.
        let props = unsafe {
            device
                .instance
                .instance
                .get_physical_device_memory_properties(device.physical)
        };
        let wanted = if host_visible {
            vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT
        } else {
            vk::MemoryPropertyFlags::DEVICE_LOCAL
        };
        let type_index = (0..props.memory_type_count).find(|&i| {
            req.memory_type_bits & (1 << i) != 0
                && props.memory_types[i as usize]
                    .property_flags
                    .contains(wanted)
        });
        let Some(type_index) = type_index else {
            // SAFETY: unused buffer.
            unsafe { d.destroy_buffer(buffer, None) };
            return Err(Error::new(ErrorKind::Vulkan, "no suitable memory type"));
        };
        // SAFETY: a valid allocation info for this device.
        let memory = unsafe {
            d.allocate_memory(
                &vk::MemoryAllocateInfo::default()
                    .allocation_size(req.size)
                    .memory_type_index(type_index),
                None,
            )
        };
        let memory = match memory {
            Ok(m) => m,
            Err(e) => {
                // SAFETY: unused buffer.
                unsafe { d.destroy_buffer(buffer, None) };
                return Err(vk_err("vkAllocateMemory", e));
            }
        };
        // SAFETY: memory is fresh and large enough for the buffer.
        unsafe { d.bind_buffer_memory(buffer, memory, 0) }
            .map_err(|e| vk_err("vkBindBufferMemory", e))?;
        let mapped = if host_visible {
            // SAFETY: host-visible memory, mapped once for the buffer's life.
            let p = unsafe { d.map_memory(memory, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty()) }
                .map_err(|e| vk_err("vkMapMemory", e))?;
            Some(p.cast::<u8>())
        } else {
            None
        };
        Ok(Buffer {
            device: device.clone(),
            buffer,
            memory,
            size,
            mapped,
        })
    }

    /// Copies `data` to the start of a mapped buffer.
    pub fn write(&mut self, data: &[u8]) {
        let p = self.mapped.expect("write needs a host-visible buffer");
        assert!(data.len() as u64 <= self.size);
        // SAFETY: p maps `size` bytes; no GPU work uses the buffer now (the
        // caller waited), and &mut self excludes other host access.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
    }

    /// The whole mapped memory, for producing bytes in place.
    pub fn mapped_mut(&mut self) -> &mut [u8] {
        let p = self.mapped.expect("mapped_mut needs a host-visible buffer");
        // SAFETY: p maps `size` bytes; no GPU work uses the buffer now (every
        // submission is waited on), and &mut self excludes other host access.
        unsafe { std::slice::from_raw_parts_mut(p, self.size as usize) }
    }

    /// The whole mapped memory, for reading results in place.
    pub fn mapped(&self) -> &[u8] {
        let p = self.mapped.expect("mapped needs a host-visible buffer");
        // SAFETY: p maps `size` bytes; GPU writes finished (fence waited) and
        // the memory is coherent; shared access only reads.
        unsafe { std::slice::from_raw_parts(p, self.size as usize) }
    }

    /// Copies the first `out.len()` bytes of a mapped buffer into `out`.
    pub fn read(&self, out: &mut [u8]) {
        let p = self.mapped.expect("read needs a host-visible buffer");
        assert!(out.len() as u64 <= self.size);
        // SAFETY: p maps `size` bytes; GPU writes finished (fence waited) and
        // the memory is coherent.
        unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), out.len()) };
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let d = &self.device.device;
        // SAFETY: no pending work uses the buffer (submissions are waited on
        // before buffers are dropped); destroy the buffer, then free its memory.
        unsafe {
            d.destroy_buffer(self.buffer, None);
            d.free_memory(self.memory, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ash::vk::Handle;

    fn job(src: (u64, u64, u64), dst: (u64, u64, u64)) -> Job {
        let range = |(b, o, s): (u64, u64, u64)| (vk::Buffer::from_raw(b), o, s);
        Job {
            kernel: "copy_f32_f32",
            src: range(src),
            dst: range(dst),
            push: Push::default(),
        }
    }

    #[test]
    fn only_built_element_sized_variants_can_be_recorded() {
        let (variant, grid) = sized_variant("dequantize_q4_0_f16_rte").unwrap();
        assert_eq!(variant.name, "dequantize_q4_0_f16_rte");
        assert_eq!(grid.per_invocation, 32);
        for (name, why) in [
            ("no_such_variant", "no shader variant no_such_variant"),
            ("matvec_q4_0_f32", "not sized by its element count"),
        ] {
            let err = sized_variant(name).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Internal, "{name}");
            assert!(err.to_string().contains(why), "{err}");
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
