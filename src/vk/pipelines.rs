//! The pipeline registry of one device: a descriptor-set layout and a
//! pipeline layout per kernel family, and every kernel's pipelines, made on
//! first use and found by [`KernelId`] (an array index), one per set of
//! specialization constants.

use super::device::Device;
use super::error::vk_err;
use super::family::Family;
use super::shaders::KernelId;
use crate::error::{Error, ErrorKind, Result};
use ash::vk;
use parking_lot::Mutex;
use std::sync::Arc;

/// A pipeline ready to bind: the pipeline and the layout of its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pipeline {
    pub pipeline: vk::Pipeline,
    pub layout: vk::PipelineLayout,
}

/// The layouts of one family.
struct Layouts {
    set: vk::DescriptorSetLayout,
    pipeline: vk::PipelineLayout,
}

/// The pipelines made of one kernel, each with the values of its
/// specialization constants.
type Specialized = Mutex<Vec<(Vec<u32>, vk::Pipeline)>>;

/// Test only: the value of constant_id 0 (`PERTURB`, shaders/common.glsl
/// and shaders/matmul.glsl) in the pipeline of the kernel whose output is
/// deliberately corrupted (the self-tested families take no other
/// specialization constant). For `matvec_round_f32_q8` it is BATCH: the
/// rounding then covers the first vector alone.
const PERTURB: [u32; 1] = [1];

/// Every pipeline of one device.
pub struct Pipelines {
    device: Arc<Device>,
    /// Indexed by [`Family::index`].
    layouts: Vec<Layouts>,
    /// Indexed by [`KernelId::index`].
    made: Vec<Specialized>,
    /// Test only: the kernel made with `PERTURB` set, which flips bit 0 of
    /// its output word 0 (the self-test must catch it).
    perturbed: Option<KernelId>,
}

impl std::fmt::Debug for Pipelines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipelines")
            .field("perturbed", &self.perturbed)
            .finish_non_exhaustive()
    }
}

impl Pipelines {
    /// The kernel whose output is deliberately corrupted, if any (tests of
    /// the self-test).
    pub fn perturbed(&self) -> Option<KernelId> {
        self.perturbed
    }

    /// The layouts of every family; pipelines are made on first use.
    /// `perturbed` names a Convert or Matmul kernel, or the rounding of x
    /// before `_dot_pre`, to corrupt (tests of the self-test).
    pub fn new(device: &Arc<Device>, perturbed: Option<KernelId>) -> Result<Pipelines> {
        if let Some(kernel) = perturbed
            && !matches!(kernel.kernel().family, Family::Convert | Family::Matmul)
            && kernel != KernelId::MATVEC_ROUND_F32_Q8
        {
            return Err(Error::invalid(format!(
                "{kernel} cannot be perturbed: only the self-tested kernels can"
            )));
        }
        let mut pipelines = Pipelines {
            device: device.clone(),
            layouts: Vec::new(),
            made: KernelId::all().map(|_| Mutex::new(Vec::new())).collect(),
            perturbed,
        };
        for family in Family::ALL {
            // On failure, Drop destroys the layouts already made.
            let (set, pipeline) =
                create_layouts(&device.device, family.bindings(), family.push_bytes())?;
            pipelines.layouts.push(Layouts { set, pipeline });
        }
        Ok(pipelines)
    }

    /// The descriptor-set layout of `family`.
    pub fn set_layout(&self, family: Family) -> vk::DescriptorSetLayout {
        self.layouts[family.index()].set
    }

    /// The pipeline of `kernel` with `specialization[i]` as the u32 value of
    /// constant_id i, made on first use.
    pub fn get(&self, kernel: KernelId, specialization: &[u32]) -> Result<Pipeline> {
        let specialization = if self.perturbed == Some(kernel) {
            &PERTURB
        } else {
            specialization
        };
        let layout = self.layouts[kernel.kernel().family.index()].pipeline;
        let mut made = self.made[kernel.index()].lock();
        if let Some((_, pipeline)) = made.iter().find(|(s, _)| s == specialization) {
            return Ok(Pipeline {
                pipeline: *pipeline,
                layout,
            });
        }
        let pipeline = create_pipeline(&self.device, layout, kernel, specialization)?;
        made.push((specialization.to_vec(), pipeline));
        Ok(Pipeline { pipeline, layout })
    }
}

impl Drop for Pipelines {
    fn drop(&mut self) {
        let d = &self.device.device;
        // SAFETY: the Engine that owns the registry is being dropped, after
        // every submission was waited on and (nyxq_context_destroy's
        // contract) every caller's command buffer with recorded dispatches
        // completed; each object was made from this device and is destroyed
        // once.
        unsafe {
            for made in &mut self.made {
                for (_, pipeline) in made.get_mut().drain(..) {
                    d.destroy_pipeline(pipeline, None);
                }
            }
            for layouts in self.layouts.drain(..) {
                d.destroy_pipeline_layout(layouts.pipeline, None);
                d.destroy_descriptor_set_layout(layouts.set, None);
            }
        }
    }
}

/// A descriptor set layout of `bindings` storage buffers (bindings 0..n) and
/// a pipeline layout of it with `push_size` bytes of push constants.
fn create_layouts(
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

/// The compute pipeline of `kernel` with `layout`; `specialization[i]` is the
/// u32 value of constant_id i.
fn create_pipeline(
    device: &Device,
    layout: vk::PipelineLayout,
    kernel: KernelId,
    specialization: &[u32],
) -> Result<vk::Pipeline> {
    let d = &device.device;
    let words = ash::util::read_spv(&mut std::io::Cursor::new(kernel.kernel().spirv))
        .map_err(|e| Error::new(ErrorKind::Internal, format!("bad SPIR-V {kernel}: {e}")))?;
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
