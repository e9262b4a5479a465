//! The one recording path of every kernel: write a fresh descriptor set,
//! bind the kernel's pipeline and the set, push the constants of its family,
//! dispatch, inside a debug label naming the kernel where the instance has
//! VK_EXT_debug_utils. And the barrier between dependent dispatches.

use super::device::Device;
use super::family::PushConstants;
use super::pipelines::Pipelines;
use super::shaders::KernelId;
use crate::error::{Error, ErrorKind, Result};
use ash::vk;

/// A range a dispatch binds: (buffer, offset, bytes).
pub type Binding = (vk::Buffer, u64, u64);

/// One dispatch to record.
#[derive(Debug, Clone, Copy)]
pub struct Dispatch<'a, P: PushConstants> {
    pub kernel: KernelId,
    /// Values of its specialization constants (constant_id 0, 1, ...;
    /// empty for the defaults).
    pub specialization: &'a [u32],
    /// A set of the kernel's family's layout, unused by pending work.
    pub set: vk::DescriptorSet,
    /// Bindings 0.. of the set.
    pub bindings: &'a [Binding],
    pub push: P,
    /// Workgroups, laid out as a 2-D grid within the device's limits.
    pub groups: u32,
}

/// Workgroups of a dispatch of the element-sized `kernel` over `n`
/// elements, or an internal error for a kernel not sized by its element
/// count (the matvec ones).
pub fn element_groups(kernel: KernelId, n: u32) -> Result<u32> {
    let grid = kernel.kernel().grid.ok_or_else(|| {
        Error::new(
            ErrorKind::Internal,
            format!("{kernel} is not sized by its element count"),
        )
    })?;
    Ok(grid.groups(n))
}

/// Records `dispatch` into `cmd`: its pipeline (made on first use), its set
/// written with its bindings, its push constants, its workgroups.
///
/// # Safety
/// `cmd` is recording, outside a render pass; the buffers are live and the
/// ranges lie inside them; the set is not used by pending work.
pub unsafe fn record<P: PushConstants>(
    device: &Device,
    pipelines: &Pipelines,
    cmd: vk::CommandBuffer,
    dispatch: &Dispatch<P>,
) -> Result<()> {
    let kernel = dispatch.kernel;
    if kernel.kernel().family != P::FAMILY {
        return Err(Error::new(
            ErrorKind::Internal,
            format!(
                "{kernel} does not take the push constants of {:?}",
                P::FAMILY
            ),
        ));
    }
    let pipeline = pipelines.get(kernel, dispatch.specialization)?;
    let d = &device.device;
    let infos: Vec<[vk::DescriptorBufferInfo; 1]> = dispatch
        .bindings
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
    let label = vk::DebugUtilsLabelEXT::default().label_name(kernel.kernel().label);
    if let Some(labels) = &device.debug_labels {
        // SAFETY: `cmd` is recording (the contract); VK_EXT_debug_utils is
        // enabled on the instance (the device holds `debug_labels` only then).
        unsafe { labels.cmd_begin_debug_utils_label(cmd, &label) };
    }
    // SAFETY: per this function's contract; the pipeline and its layout are
    // live (the registry keeps them until the engine is dropped).
    unsafe {
        d.update_descriptor_sets(&writes, &[]);
        d.cmd_bind_pipeline(cmd, vk::PipelineBindPoint::COMPUTE, pipeline.pipeline);
        d.cmd_bind_descriptor_sets(
            cmd,
            vk::PipelineBindPoint::COMPUTE,
            pipeline.layout,
            0,
            &[dispatch.set],
            &[],
        );
        d.cmd_push_constants(
            cmd,
            pipeline.layout,
            vk::ShaderStageFlags::COMPUTE,
            0,
            &dispatch.push.bytes(),
        );
        d.cmd_dispatch(cmd, gx, gy, 1);
    }
    if let Some(labels) = &device.debug_labels {
        // SAFETY: as above; closes the label begun above in the same
        // command buffer.
        unsafe { labels.cmd_end_debug_utils_label(cmd) };
    }
    Ok(())
}

/// Records a barrier from compute-shader writes to later compute-shader
/// reads and writes and to host reads.
///
/// # Safety
/// `cmd` is recording.
pub unsafe fn compute_barrier(d: &ash::Device, cmd: vk::CommandBuffer) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_element_sized_kernels_have_element_groups() {
        assert_eq!(
            element_groups(KernelId::DEQUANTIZE_Q4_0_F16_RTE, 32 * 256 + 1).unwrap(),
            2
        );
        let err = element_groups(KernelId::MATVEC_Q4_0_F32, 1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(
            err.to_string().contains("not sized by its element count"),
            "{err}"
        );
    }
}
