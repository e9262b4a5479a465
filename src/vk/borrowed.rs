//! The trainer's own Vulkan objects handed to nyxq (DESIGN.md, "Vulkan
//! handoff"): nyxq loads function pointers through the caller's
//! vkGetInstanceProcAddr, checks the device, and never destroys what it borrowed.

use super::device::Device;
use super::features::Declared;
use super::instance::Instance;
use crate::error::Result;
use ash::vk;
use std::sync::Arc;

/// The caller's handles, and what it enabled on them.
#[derive(Debug, Clone)]
pub struct BorrowedHandles {
    pub get_instance_proc_addr: vk::PFN_vkGetInstanceProcAddr,
    pub instance: vk::Instance,
    pub physical_device: vk::PhysicalDevice,
    pub device: vk::Device,
    pub queue_family: u32,
    pub queue: vk::Queue,
    /// The features and extensions the caller enabled.
    pub declared: Declared,
}

/// Wraps the caller's objects as a nyxq [`Device`].
///
/// # Safety
/// Every handle is live, they belong together (instance -> physical device ->
/// device -> queue of `queue_family`), `get_instance_proc_addr` is the loader's
/// that made the instance, and all outlive every nyxq object made from the
/// result. The caller does not submit to `queue` while a nyxq call is running
/// (nyxq serialises its own submissions), or passes a queue of its own.
/// `declared` is what the caller enabled on the instance and the device.
pub unsafe fn borrow(handles: &BorrowedHandles) -> Result<Arc<Device>> {
    // SAFETY: per this function's contract.
    let instance = Arc::new(unsafe {
        Instance::borrow(
            handles.get_instance_proc_addr,
            handles.instance,
            handles.declared.debug_utils(),
        )
    });
    // SAFETY: per this function's contract.
    let device = unsafe {
        Device::borrow(
            instance,
            handles.physical_device,
            handles.device,
            handles.queue_family,
            handles.queue,
            &handles.declared,
        )
    }?;
    Ok(Arc::new(device))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Context, ContextSettings};
    use crate::format::Format;

    /// Makes an instance, device and queue the way a trainer does, hands them
    /// over, quantizes through nyxq, drops nyxq, and checks the objects still
    /// work (nyxq destroyed nothing) before destroying them itself.
    #[test]
    fn a_borrowed_device_runs_the_kernels_and_is_not_destroyed() {
        // SAFETY: loading the system loader.
        let Ok(entry) = (unsafe { ash::Entry::load() }) else {
            println!("SKIP: no Vulkan loader");
            return;
        };
        let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_2);
        // SAFETY: a valid create info.
        let Ok(instance) = (unsafe {
            entry.create_instance(
                &vk::InstanceCreateInfo::default().application_info(&app),
                None,
            )
        }) else {
            println!("SKIP: no Vulkan driver");
            return;
        };
        // SAFETY: a live instance.
        let pds = unsafe { instance.enumerate_physical_devices() }.unwrap_or_default();
        let chosen = pds.iter().find_map(|&pd| {
            // SAFETY: pd from this instance.
            let families = unsafe { instance.get_physical_device_queue_family_properties(pd) };
            families
                .iter()
                .position(|f| f.queue_flags.contains(vk::QueueFlags::COMPUTE))
                .map(|i| (pd, i as u32))
        });
        let Some((pd, family)) = chosen else {
            println!("SKIP: no Vulkan device");
            // SAFETY: our own instance, unused now.
            unsafe { instance.destroy_instance(None) };
            return;
        };
        let priorities = [1.0f32];
        let queues = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(family)
            .queue_priorities(&priorities)];
        // SAFETY: pd belongs to instance; no optional features.
        let device = unsafe {
            instance.create_device(
                pd,
                &vk::DeviceCreateInfo::default().queue_create_infos(&queues),
                None,
            )
        }
        .expect("vkCreateDevice");
        // SAFETY: queue 0 of `family` exists.
        let queue = unsafe { device.get_device_queue(family, 0) };
        let handles = BorrowedHandles {
            get_instance_proc_addr: entry.static_fn().get_instance_proc_addr,
            instance: instance.handle(),
            physical_device: pd,
            device: device.handle(),
            queue_family: family,
            queue,
            declared: Declared::default(),
        };
        {
            // SAFETY: the handles above are live and outlive this block.
            let borrowed = unsafe { borrow(&handles) }.expect("borrow");
            let ctx = Context::with_device(&ContextSettings::default(), borrowed).unwrap();
            let failed: Vec<_> = ctx
                .self_test()
                .iter()
                .filter(|r| r.failure.is_some())
                .collect();
            assert!(failed.is_empty(), "{failed:?}");
            let x: Vec<f32> = (0..4096).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
            let mut cpu = vec![0u8; Format::Q8_0.size_of(x.len()).unwrap()];
            crate::quant::quantize(Format::Q8_0, &x, &mut cpu, &Default::default()).unwrap();
            let mut gpu = vec![0u8; cpu.len()];
            super::super::ops::quantize(
                ctx.vulkan().unwrap(),
                Format::Q8_0,
                &x,
                &mut gpu,
                crate::quant::Rounding::Nearest,
            )
            .unwrap();
            assert_eq!(cpu, gpu);
        }
        // SAFETY: nyxq is gone; the device and instance are still ours and
        // must still work: waiting idle on a destroyed device would fail.
        unsafe {
            device.device_wait_idle().expect("the device survived nyxq");
            device.destroy_device(None);
            instance.destroy_instance(None);
        }
    }
}
