//! The `Engine`: everything nyxq keeps for one device — the pipeline
//! registry, the queue and the job graph's sets, the recorder of the
//! caller's dispatches, the kernel variant in use per job and format, and
//! the matrix-vector choice — and the calls that use them together.

use super::device::Device;
use super::dispatch::{self, Dispatch};
use super::family::{Family, PushConstants};
use super::features::Feature;
use super::jobs::{Job, Jobs};
use super::matvec_choice::MatvecChoice;
use super::memory::Buffer;
use super::pipelines::Pipelines;
use super::recorder::{Recorder, Ticket};
use super::shaders::{KernelId, Op, compatible_kernel};
use super::submit::Queue;
use crate::error::{Error, Result};
use crate::format::Format;
use crate::train::adam::StateLayout;
use ash::vk;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// What nyxq keeps for one device. Its fields drop after [`Engine::drop`]
/// has destroyed the recorder's pools, in order: the pipelines and their
/// layouts, the job graph's pool, the queue's fence and command pool, and
/// last this engine's hold on the device.
pub struct Engine {
    pipelines: Pipelines,
    jobs: Jobs,
    queue: Queue,
    /// Descriptor sets of dispatches recorded into callers' command buffers.
    recorder: Recorder,
    /// The variant in use per kernel where it is not the compatible one
    /// (set by the self-test, which tests a variant before it is chosen).
    chosen: Mutex<HashMap<(Op, Format), KernelId>>,
    /// The Adam step kernel per state layout, chosen by its self-test at
    /// the first optimizer of that layout (src/vk/adam.rs).
    adam: Mutex<HashMap<StateLayout, KernelId>>,
    matvec: MatvecChoice,
    pub device: Arc<Device>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// The engine of `device`. `perturb` names a kernel whose output is
    /// deliberately corrupted (tests of the self-test; None otherwise).
    pub fn new(device: Arc<Device>, perturb: Option<String>) -> Result<Engine> {
        let perturbed = perturb
            .map(|name| {
                KernelId::from_name(&name)
                    .ok_or_else(|| Error::invalid(format!("no kernel is named {name}")))
            })
            .transpose()?;
        Ok(Engine {
            pipelines: Pipelines::new(&device, perturbed)?,
            jobs: Jobs::new(&device)?,
            queue: Queue::new(&device)?,
            recorder: Recorder::new(),
            chosen: Mutex::new(HashMap::new()),
            adam: Mutex::new(HashMap::new()),
            matvec: MatvecChoice::new(&device),
            device,
        })
    }

    /// The kernel in use for `op` on `format`: the compatible one until the
    /// self-test has passed another.
    pub fn kernel(&self, op: Op, format: Format) -> Result<KernelId> {
        if let Some(&kernel) = self.chosen.lock().get(&(op, format)) {
            return Ok(kernel);
        }
        compatible_kernel(op, format).ok_or_else(|| {
            Error::unsupported(format!("no Vulkan kernel does {op:?} on {}", format.name()))
        })
    }

    /// Uses `kernel` for `op` on `format` from now on.
    pub(crate) fn choose_kernel(&self, op: Op, format: Format, kernel: KernelId) {
        self.chosen.lock().insert((op, format), kernel);
    }

    /// The Adam step kernel chosen for `layout`, if its self-test ran.
    pub fn adam_kernel(&self, layout: StateLayout) -> Option<KernelId> {
        self.adam.lock().get(&layout).copied()
    }

    /// Uses `kernel` for Adam steps of `layout` from now on.
    pub(crate) fn choose_adam_kernel(&self, layout: StateLayout, kernel: KernelId) {
        self.adam.lock().insert(layout, kernel);
    }

    /// Whether `kernel` can run here: the features its SPIR-V's capabilities
    /// need are enabled on the device (16-bit storage; f16 arithmetic; the
    /// Vulkan memory model; cooperative matrices, with the configuration and
    /// subgroup size the `_coop` kernels use) or reported by it
    /// (round-to-nearest-even declarable for f16 or f32, subnormal
    /// preservation for f16 or f32, subgroup arithmetic in compute shaders
    /// with subgroups of 4 to 128), and its workgroup memory fits
    /// maxComputeSharedMemorySize.
    pub fn variant_supported(&self, kernel: KernelId) -> bool {
        let needs = kernel.kernel().needs;
        let info = &self.device.info;
        let enabled = |feature| self.device.enabled.has(feature);
        [
            (needs.storage_16bit, enabled(Feature::Storage16Bit)),
            (needs.float16, enabled(Feature::Float16)),
            (needs.rounding_rte_f16, info.rounding_rte_f16),
            (needs.rounding_rte_f32, info.rounding_rte_f32),
            (needs.denorm_preserve_f16, info.denorm_preserve_f16),
            (needs.denorm_preserve_f32, info.denorm_preserve_f32),
            (
                needs.vulkan_memory_model,
                enabled(Feature::VulkanMemoryModel),
            ),
            (
                needs.cooperative_matrix,
                enabled(Feature::CooperativeMatrix) && info.cooperative_matmul_possible(),
            ),
            (
                needs.subgroup_arithmetic,
                self.matvec().subgroup_supported(),
            ),
        ]
        .iter()
        .all(|&(needed, have)| have || !needed)
            && kernel.kernel().workgroup_bytes <= info.max_workgroup_bytes
    }

    /// The kernel whose output is deliberately corrupted, if any (tests of
    /// the self-test).
    pub fn perturbed(&self) -> Option<KernelId> {
        self.pipelines.perturbed()
    }

    /// The descriptor-set layout of `family`'s kernels.
    pub fn set_layout(&self, family: Family) -> vk::DescriptorSetLayout {
        self.pipelines.set_layout(family)
    }

    /// The descriptor sets of dispatches recorded into callers' command buffers.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Releases the tickets whose timeline semaphore has reached its value
    /// ([`Recorder::poll`]); a device loss is remembered.
    pub fn poll_releases(&self) -> Result<()> {
        let polled = self.recorder.poll(&self.device.device);
        self.device.note_loss(polled)
    }

    /// [`Engine::poll_releases`] before a check of what is unreleased: a
    /// counter that cannot be read releases nothing, so the check stays on
    /// the safe side (and a device loss is remembered for later calls).
    pub fn poll_releases_before_a_check(&self) {
        if let Err(e) = self.poll_releases() {
            log::warn!("nyxq vulkan: timeline releases not checked: {e}");
        }
    }

    /// How matrix-vector products are run on this device.
    pub fn matvec(&self) -> &MatvecChoice {
        &self.matvec
    }

    /// The driver's compile statistics of `kernel` (register count, binary
    /// size and the like, as (name, value) pairs), where the device was made
    /// with NYXQ_VK_PIPELINE_STATS=1 and supports
    /// VK_KHR_pipeline_executable_properties; None otherwise.
    pub fn pipeline_statistics(&self, kernel: KernelId) -> Option<Vec<(String, String)>> {
        if !self.device.pipeline_statistics {
            return None;
        }
        let pipeline = self.pipelines.get(kernel, &[]).ok()?;
        super::device::pipeline_statistics(&self.device, pipeline.pipeline)
    }

    /// Everything a recording call can fail at, before its first command:
    /// the pipeline of `kernel` with `specialization`, a ticket and
    /// `dispatches` descriptor sets of its family, the ticket noted as
    /// binding `buffers`.
    pub(crate) fn reserve(
        &self,
        kernel: KernelId,
        specialization: &[u32],
        dispatches: usize,
        buffers: &[vk::Buffer],
    ) -> Result<(Ticket, Vec<vk::DescriptorSet>)> {
        self.poll_releases()?;
        self.pipelines.get(kernel, specialization)?;
        let ticket = self.recorder.next_ticket();
        let sets = self.recorder.allocate(
            &self.device.device,
            self.set_layout(kernel.kernel().family),
            ticket,
            dispatches,
        )?;
        self.recorder.note_buffers(ticket, buffers);
        Ok((ticket, sets))
    }

    /// As [`Engine::reserve`] for dispatches of several kernels of one
    /// family (each pipeline made first), with a device-local scratch
    /// buffer of at least `scratch_bytes` that the ticket holds until it is
    /// released ([`Recorder::take_scratch`]). A failed allocation (the
    /// budget, the driver, a lost device: remembered) is returned with
    /// nothing held.
    pub(crate) fn reserve_with_scratch(
        &self,
        kernels: &[(KernelId, &[u32])],
        dispatches: usize,
        buffers: &[vk::Buffer],
        scratch_bytes: u64,
    ) -> Result<(Ticket, Vec<vk::DescriptorSet>, vk::Buffer)> {
        let Some(&(first, _)) = kernels.first() else {
            return Err(Error::new(
                crate::error::ErrorKind::Internal,
                "a reservation names no kernel",
            ));
        };
        self.poll_releases()?;
        for &(kernel, specialization) in kernels {
            self.pipelines.get(kernel, specialization)?;
        }
        let ticket = self.recorder.next_ticket();
        let scratch = self.recorder.take_scratch(ticket, scratch_bytes, || {
            self.device
                .note_loss(Buffer::new(&self.device, scratch_bytes, false))
        })?;
        let sets = self.recorder.allocate(
            &self.device.device,
            self.set_layout(first.kernel().family),
            ticket,
            dispatches,
        );
        let sets = match sets {
            Ok(sets) => sets,
            Err(e) => {
                self.recorder.return_scratch(ticket);
                return Err(e);
            }
        };
        self.recorder.note_buffers(ticket, buffers);
        Ok((ticket, sets, scratch))
    }

    /// Records `dispatch` into `cmd` (the one recording path,
    /// [`dispatch::record`]).
    ///
    /// # Safety
    /// As [`dispatch::record`].
    pub(crate) unsafe fn record<P: PushConstants>(
        &self,
        cmd: vk::CommandBuffer,
        dispatch: &Dispatch<P>,
    ) -> Result<()> {
        // SAFETY: per this function's contract.
        unsafe { dispatch::record(&self.device, &self.pipelines, cmd, dispatch) }
    }

    /// Records `jobs` in one command buffer (more where they need more
    /// descriptor sets than one submission has), with a barrier before a job
    /// only where it depends on an earlier one, submits and waits.
    /// Serialised with every other submission.
    pub fn submit_and_wait(&self, jobs: &[Job]) -> Result<()> {
        self.jobs
            .submit(&self.queue, &self.pipelines, jobs, false)
            .map(|_| ())
    }

    /// Like submit_and_wait for at most 64 jobs, timed on the GPU with
    /// timestamps around them; returns seconds.
    pub fn timed(&self, jobs: &[Job]) -> Result<f64> {
        let seconds = self.jobs.submit(&self.queue, &self.pipelines, jobs, true)?;
        Ok(seconds.unwrap_or(0.0))
    }

    /// Records with `record` into the engine's own command buffer, submits
    /// it and waits (serialised with every other submission). With `timed`,
    /// returns the GPU seconds between timestamps around what was recorded.
    pub fn submit_recorded(
        &self,
        timed: bool,
        record: impl FnOnce(vk::CommandBuffer) -> Result<()>,
    ) -> Result<Option<f64>> {
        self.queue.submit(timed, record)
    }

    /// Copies the first `size` bytes of `src` to `dst` and waits.
    pub fn copy(&self, src: vk::Buffer, dst: vk::Buffer, size: u64) -> Result<()> {
        self.queue.copy_region((src, 0), (dst, 0), size)
    }

    /// The engine's queue (submissions, copies).
    pub fn queue(&self) -> &Queue {
        &self.queue
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: every submission was waited on before it returned, and the
        // caller's command buffers with recorded nyxq dispatches completed
        // before the context was destroyed (nyxq_context_destroy's contract),
        // so no set of the recorder is in use (no device-wide wait: on a
        // borrowed device that would need the caller's queues).
        unsafe { self.recorder.destroy(&self.device.device) };
    }
}
